//! Palisade's detectors: offline, deterministic, no network and no model download.
//!
//! An [`Inspector`] holds a compiled [`RulePack`]. [`Inspector::inspect_text`] looks
//! at untrusted text (tool results, resources, prompts) and
//! [`Inspector::inspect_tool`] at a tool definition (every string of it, its
//! parameter names, its name). Both normalise first ([`normalize`]), so hidden and
//! look-alike text is seen the way a model reads it, and return a [`Report`]: the
//! findings, each with rule ID, category, severity, location, span and a short
//! reason, a score in [0, 1] and a verdict.
//!
//! `malicious` means injection or poisoning. Secrets and PII are findings of their own
//! and never make a verdict malicious by themselves; [`redact`] replaces them.

#![forbid(unsafe_code)]

mod literals;
mod model;
pub mod normalize;
mod pattern;
mod reach;
pub mod rules;
mod triggers;
mod validate;
mod words;

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use normalize::{Hidden, HiddenKind, Normalized, normalize};
pub use rules::{RuleError, RulePack};

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Instructions aimed at the model inside data: overrides, fake system messages,
    /// task hijacking.
    Injection,
    /// Tool metadata that manipulates the model: hidden directives, secrecy toward
    /// the user, consent bypass.
    Poisoning,
    /// Moving data out: sensitive files, covert parameters, sending data elsewhere.
    Exfiltration,
    /// One tool's metadata steering another tool or server.
    Shadowing,
    /// Claims of, or requests for, privileges beyond the tool's purpose.
    Privilege,
    /// Text a reader does not see: tag characters, zero-width, bidi, terminal escapes.
    HiddenText,
    /// A tool name outside the allowed alphabet, mixed-script or confusable (FEAT-03).
    Name,
    /// Credentials: keys, tokens, private keys, passwords.
    Secret,
    /// Personal data: e-mail, phone, card numbers, IBANs, national IDs.
    Pii,
}

impl Category {
    /// Whether findings of this category count toward a malicious verdict.
    pub fn is_attack(self) -> bool {
        !matches!(self, Self::Secret | Self::Pii)
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth a note; never decisive alone.
    Low,
    /// Suspicious; two different ones make a verdict.
    Medium,
    /// Malicious on its own.
    High,
    /// Malicious on its own, beyond doubt.
    Critical,
}

impl Severity {
    /// The name rule packs and records use: `low`, `medium`, `high`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    fn weight(self) -> f32 {
        match self {
            Self::Low => 0.2,
            Self::Medium => 0.45,
            Self::High => 0.8,
            Self::Critical => 0.95,
        }
    }
}

/// Where a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Untrusted content: tool results, resources, prompts, free text.
    Text,
    /// Strings of tool metadata: descriptions, titles, schema text, annotations.
    Tool,
    /// Parameter names of a tool's input schema.
    Param,
}

/// The verdict on one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Injection or poisoning.
    Malicious,
    /// Nothing that reaches the threshold.
    Benign,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's ID, e.g. `INJ-OVERRIDE`, or a built-in check such as `HID-TAG`.
    pub rule: String,
    /// What it is about.
    pub category: Category,
    /// How bad.
    pub severity: Severity,
    /// Which string: `text`, `description`, `inputSchema.properties.path.description`, …
    pub location: String,
    /// Byte span in that string as given (before normalisation).
    pub span: (usize, usize),
    /// Why, in a few words.
    pub reason: String,
}

/// What inspecting one input found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Malicious when the score reaches the pack's threshold.
    pub verdict: Verdict,
    /// 1 − Π(1 − weight) over the distinct attack rules that fired.
    pub score: f32,
    /// Every finding, in order of location and position.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether any finding has `category`.
    pub fn has(&self, category: Category) -> bool {
        self.findings.iter().any(|f| f.category == category)
    }

    /// The findings of attack categories (not secrets or PII).
    pub fn attacks(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.category.is_attack())
    }
}

/// The detectors with one rule pack.
#[derive(Debug)]
pub struct Inspector {
    pack: RulePack,
    /// Second opinions for tool definitions and for text (decision 0015).
    tools_model: model::Linear,
    texts_model: model::Linear,
}

/// Which model is asked: the one for tool definitions, or the one for text.
enum Asked {
    Tool,
    Text,
}

/// The probability at which a model's opinion counts as a medium finding.
const MODEL_AGREES_AT: f32 = 0.5;

/// A tool name must be `[A-Za-z0-9_.-]{1,128}` (FEAT-03).
pub fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Inspector {
    /// With the built-in rule pack.
    pub fn builtin() -> Self {
        match RulePack::builtin() {
            Ok(pack) => Self::new(pack),
            // The built-in pack is tested; an error here is a build defect.
            Err(e) => unreachable!("the built-in rule pack does not load: {e}"),
        }
    }

    /// With a pack of the operator's.
    pub fn new(pack: RulePack) -> Self {
        Self {
            pack,
            tools_model: model::Linear::tools(),
            texts_model: model::Linear::texts(),
        }
    }

    /// The rule pack in use.
    pub fn pack(&self) -> &RulePack {
        &self.pack
    }

    /// Inspects untrusted text (a tool result, resource, prompt).
    pub fn inspect_text(&self, text: &str) -> Report {
        let mut findings = Vec::new();
        self.scan_string(text, Scope::Text, "text", &mut findings);
        let report = self.report(findings);
        self.second_opinion(
            report,
            Asked::Text,
            |findings| around(text, findings),
            |f| self.pack.text_second_opinion(&f.rule),
        )
    }

    /// Inspects one string as the rules of `scope` read it: a string of a definition
    /// as [`Inspector::inspect_tool`] reads it (`Scope::Tool`, or `Scope::Param` for
    /// a parameter name), to act on what it found there.
    pub fn inspect_in(&self, text: &str, scope: Scope) -> Report {
        let mut findings = Vec::new();
        if scope == Scope::Param {
            self.scan_param(text, "text", &mut findings);
        } else {
            self.scan_string(text, scope, "text", &mut findings);
        }
        self.report(findings)
    }

    /// A parameter name: the parameter rules, and the secrets and personal data any
    /// string of a definition is read for (a key made of a credential is still one).
    fn scan_param(&self, name: &str, location: &str, findings: &mut Vec<Finding>) {
        self.scan_string(name, Scope::Param, location, findings);
        let mut data = Vec::new();
        self.scan_string(name, Scope::Tool, location, &mut data);
        findings.extend(
            data.into_iter()
                .filter(|f| matches!(f.category, Category::Secret | Category::Pii)),
        );
    }

    /// Inspects a tool definition: every string in it, its parameter names and its
    /// name.
    pub fn inspect_tool(&self, tool: &Value) -> Report {
        let mut findings = Vec::new();
        if let Some(name) = tool.get("name").and_then(Value::as_str) {
            name_findings(name, &mut findings);
            self.scan_string(name, Scope::Tool, "name", &mut findings);
        }
        if let Some(obj) = tool.as_object() {
            for (k, v) in obj {
                if k == "name" {
                    continue;
                }
                self.walk(v, k, &mut findings);
            }
        }
        let report = self.report(findings);
        // The model learnt tools (name, description, input schema); a prompt, a
        // resource or server instructions are not asked about.
        if tool.get("inputSchema").is_none() {
            return report;
        }
        self.second_opinion(
            report,
            Asked::Tool,
            |_| {
                let mut strings = Vec::new();
                for key in ["name", "description", "inputSchema"] {
                    if let Some(v) = tool.get(key) {
                        all_strings(v, &mut strings);
                    }
                }
                strings
            },
            |_| true,
        )
    }

    /// Asks `model` about an input the rules found something of medium severity in,
    /// but not enough to decide; where it agrees, its opinion is one more medium
    /// finding (over the whole input), and the two decide together.
    fn second_opinion<'a>(
        &self,
        report: Report,
        asked: Asked,
        strings: impl FnOnce(&[&Finding]) -> Vec<&'a str>,
        may_ask: impl Fn(&Finding) -> bool,
    ) -> Report {
        if report.verdict == Verdict::Malicious {
            return report;
        }
        // The findings that may ask: attacks of medium severity or worse, of rules
        // that do not also fire on ordinary text.
        let asking: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.category.is_attack() && f.severity >= Severity::Medium && may_ask(f))
            .collect();
        if asking.is_empty() {
            return report;
        }
        let (model, rule, category, location) = match asked {
            Asked::Tool => (
                &self.tools_model,
                "CLS-TOOL",
                Category::Poisoning,
                "definition",
            ),
            Asked::Text => (&self.texts_model, "CLS-TEXT", Category::Injection, "text"),
        };
        // The finding covers what the rules found (the stretch the model was asked
        // about), not the whole input: prose around it is spotlighted, not withheld.
        let span = asking.iter().fold((usize::MAX, 0), |(a, b), f| {
            (a.min(f.span.0), b.max(f.span.1))
        });
        let p = model.probability(strings(&asking));
        if p < MODEL_AGREES_AT {
            return report;
        }
        let mut findings = report.findings;
        findings.push(Finding {
            rule: rule.to_owned(),
            category,
            severity: Severity::Medium,
            location: location.to_owned(),
            span,
            reason: format!(
                "the statistical model reads it as an attack too (p = {:.2})",
                p
            ),
        });
        self.report(findings)
    }

    fn walk(&self, v: &Value, path: &str, findings: &mut Vec<Finding>) {
        match v {
            Value::String(s) => self.scan_string(s, Scope::Tool, path, findings),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, &format!("{path}[{i}]"), findings);
                }
            }
            Value::Object(map) => {
                let is_properties = path.ends_with("properties");
                for (k, item) in map {
                    let here = format!("{path}.{k}");
                    // Every key is text a client may hand the model (`$defs`, `_meta`,
                    // annotations): parameter names as parameters, the rest as metadata.
                    if is_properties {
                        self.scan_param(k, &here, findings);
                    } else {
                        self.scan_string(k, Scope::Tool, &here, findings);
                    }
                    self.walk(item, &here, findings);
                }
            }
            _ => {}
        }
    }

    fn scan_string(&self, s: &str, scope: Scope, location: &str, findings: &mut Vec<Finding>) {
        let n = normalize(s);
        for h in &n.hidden {
            if let Some(f) = hidden_finding(h, scope, location) {
                findings.push(f);
            }
        }
        let mut matches = Vec::new();
        // Every rule runs on the normalised text, its spans mapped back to the
        // original (each covering the original characters of what it matched): a
        // secret split by invisible characters, which stripping would join again in
        // the answer, is found and redacted whole.
        self.pack.scan(n.text(), scope, &mut matches);
        if n.changed() {
            for m in &mut matches {
                m.span = n.original_span(m.span.clone());
            }
        }
        findings.extend(matches.into_iter().map(|m| Finding {
            rule: m.id.to_owned(),
            category: m.category,
            severity: m.severity,
            location: location.to_owned(),
            span: (m.span.start, m.span.end),
            reason: m.reason.to_owned(),
        }));
    }

    fn report(&self, mut findings: Vec<Finding>) -> Report {
        findings.sort_by(|a, b| (&a.location, a.span).cmp(&(&b.location, b.span)));
        findings.dedup();
        let mut best: std::collections::BTreeMap<&str, f32> = std::collections::BTreeMap::new();
        for f in findings.iter().filter(|f| f.category.is_attack()) {
            let w = f.severity.weight();
            let e = best.entry(f.rule.as_str()).or_insert(0.0);
            *e = e.max(w);
        }
        let benign: f32 = best.values().map(|w| 1.0 - w).product();
        let score = ((1.0 - benign) * 1000.0).round() / 1000.0;
        let verdict = if score >= self.pack.threshold() {
            Verdict::Malicious
        } else {
            Verdict::Benign
        };
        Report {
            verdict,
            score,
            findings,
        }
    }
}

/// How far either side of a finding the text model reads: about the length of the
/// texts it was trained on, so that a long text is judged where the rules saw
/// something, and a 64 KiB answer costs no more than a few kilobytes.
const MODEL_REACH: usize = 2048;

/// The stretches of `text` within [`MODEL_REACH`] of `findings`.
fn around<'a>(text: &'a str, findings: &[&Finding]) -> Vec<&'a str> {
    let mut spans: Vec<(usize, usize)> = findings
        .iter()
        .map(|f| {
            (
                f.span.0.saturating_sub(MODEL_REACH),
                f.span.1.saturating_add(MODEL_REACH).min(text.len()),
            )
        })
        .collect();
    reach::merge(&mut spans);
    spans
        .into_iter()
        .map(|(mut a, mut b)| {
            while !text.is_char_boundary(a) {
                a -= 1;
            }
            while !text.is_char_boundary(b) {
                b += 1;
            }
            &text[a..b]
        })
        .collect()
}

/// Every string of a definition's part, object keys included, as the training script
/// reads the name, description and input schema of a tool.
fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|x| all_strings(x, out)),
        Value::Object(map) => {
            for (k, x) in map {
                out.push(k);
                all_strings(x, out);
            }
        }
        _ => {}
    }
}

fn hidden_finding(h: &Hidden, scope: Scope, location: &str) -> Option<Finding> {
    use HiddenKind as K;
    let in_metadata = scope != Scope::Text;
    let (rule, severity, reason) = match h.kind {
        K::TagCharacters => (
            "HID-TAG",
            Severity::Critical,
            "Unicode tag characters: invisible text that models read",
        ),
        K::VariationSelectors => (
            "HID-VS",
            Severity::High,
            "a run of variation selectors: invisible encoded data",
        ),
        K::BidiControl if in_metadata => (
            "HID-BIDI",
            Severity::High,
            "bidirectional controls reorder what a reviewer sees",
        ),
        K::BidiControl => (
            "HID-BIDI",
            Severity::Medium,
            "bidirectional controls reorder what a reader sees",
        ),
        K::ZeroWidth if in_metadata => (
            "HID-ZW",
            Severity::High,
            "zero-width characters in tool metadata",
        ),
        K::ZeroWidth => (
            "HID-ZW",
            Severity::Low,
            "zero-width characters split words from the reader's view",
        ),
        K::TerminalControl if in_metadata => (
            "HID-ANSI",
            Severity::High,
            "terminal control sequences in tool metadata",
        ),
        K::TerminalControl => (
            "HID-ANSI",
            Severity::Medium,
            "terminal control sequences can hide or rewrite displayed text",
        ),
        K::TerminalColour if in_metadata => (
            "HID-ANSI-COLOUR",
            Severity::Medium,
            "terminal colour sequences in tool metadata",
        ),
        // Colour in a result is common, but the model reads the escapes and a person
        // may not see what they colour (foreground on its own background): low, so
        // that `hidden = "strip"` removes them.
        K::TerminalColour => (
            "HID-ANSI-COLOUR",
            Severity::Low,
            "terminal colour sequences: text a reader may not see",
        ),
    };
    Some(Finding {
        rule: rule.to_owned(),
        category: Category::HiddenText,
        severity,
        location: location.to_owned(),
        span: (h.span.start, h.span.end),
        reason: reason.to_owned(),
    })
}

fn name_findings(name: &str, findings: &mut Vec<Finding>) {
    use unicode_security::MixedScript as _;
    let whole = (0, name.len());
    let mut push = |rule: &str, severity: Severity, reason: &str| {
        findings.push(Finding {
            rule: rule.to_owned(),
            category: Category::Name,
            severity,
            location: "name".to_owned(),
            span: whole,
            reason: reason.to_owned(),
        });
    };
    if !valid_tool_name(name) {
        push(
            "NAME-CHARSET",
            Severity::Medium,
            "tool names are [A-Za-z0-9_.-]{1,128}",
        );
    }
    if !name.is_ascii() {
        if !name.is_single_script() {
            push(
                "NAME-MIXED-SCRIPT",
                Severity::High,
                "the name mixes scripts, as look-alike names do",
            );
        }
        let skeleton: String = unicode_security::skeleton(name).collect();
        if skeleton.is_ascii() {
            push(
                "NAME-CONFUSABLE",
                Severity::High,
                "the name looks like an ASCII name but is not",
            );
        }
    }
}

/// Replaces every secret and PII finding of `report` at `location` in `text` with
/// `[REDACTED:<rule>]`. Overlapping spans are merged.
pub fn redact(text: &str, report: &Report, location: &str) -> String {
    let mut spans: Vec<(Range<usize>, &str)> = report
        .findings
        .iter()
        .filter(|f| !f.category.is_attack() && f.location == location)
        .filter(|f| {
            f.span.0 < f.span.1
                && text.is_char_boundary(f.span.0)
                && text.is_char_boundary(f.span.1)
        })
        .map(|f| (f.span.0..f.span.1.min(text.len()), f.rule.as_str()))
        .collect();
    spans.sort_by_key(|(r, _)| (r.start, std::cmp::Reverse(r.end)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (r, rule) in spans {
        if r.end <= at {
            continue;
        }
        let start = r.start.max(at);
        out.push_str(&text[at..start]);
        out.push_str("[REDACTED:");
        out.push_str(rule);
        out.push(']');
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` without the hidden stretches `normalize` found (tag characters,
/// zero-width, bidi controls, variation-selector runs, terminal escapes).
pub fn strip_hidden(text: &str) -> String {
    let n = normalize(text);
    if n.hidden.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for h in &n.hidden {
        out.push_str(&text[at..h.span.start]);
        at = h.span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Spotlighting with datamarking: untrusted text wrapped in delimiters that name its
/// source, with every whitespace run replaced by a marker, so that a model can tell
/// data from instructions. `marker` should be a character unlikely in the data;
/// `boundary` a value the source cannot know (random per answer), which both
/// delimiters carry, so that the data cannot close them early: a forged closing
/// delimiter in the data lacks it.
pub fn spotlight(text: &str, source: &str, marker: char, boundary: &str) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    out.push_str("<<untrusted-data-");
    out.push_str(boundary);
    out.push_str(" source=\"");
    out.extend(source.chars().filter(|c| *c != '"' && !c.is_control()));
    out.push_str("\" marker=\"");
    out.push(marker);
    out.push_str("\">>\n");
    let mut in_space = false;
    for c in strip_hidden(text).chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(marker);
            }
            in_space = true;
            if c == '\n' {
                out.push('\n');
            }
        } else {
            in_space = false;
            out.push(c);
        }
    }
    out.push_str("\n<</untrusted-data-");
    out.push_str(boundary);
    out.push_str(">>");
    out
}

#[cfg(test)]
mod tests;
