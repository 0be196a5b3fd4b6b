//! Rule packs: versioned TOML files of detection rules that operators can extend or
//! replace without rebuilding. The built-in pack is `rules/default.toml`.
//!
//! Each rule is a regular expression with optional literal triggers. All triggers of
//! a pack go into one Aho-Corasick automaton, matched ASCII case-insensitively and
//! with a space in a trigger standing for any run of whitespace, so a text is scanned
//! once, and only the rules whose triggers occur run their expression, and only around
//! where their triggers occur. A rule's triggers are completed at load with the
//! literal strings its pattern requires (`literals`), so that every text the pattern
//! matches holds one wherever the pattern allows it. Rules without triggers run on
//! every text of their scope, after one combined automaton has said which of them can
//! match.
//!
//! Patterns are byte-oriented and ASCII (`\w`, `\s`, `\b` and case folding are
//! ASCII): the text has been normalised, so look-alikes are already ASCII, and ASCII
//! classes keep the regex engine on its fast automata.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use crate::pattern::{
    Screen, build, build_set, fold_like_text, forward_nfa, lowercase_literals, relax,
};
use crate::reach::{Reach, Walks, merge};
use crate::triggers::{Folded, Triggers, fold_trigger, is_space};
use regex_automata::meta::Regex;
use regex_automata::util::primitives::PatternID;
use regex_automata::{Input, PatternSet};
use serde::Deserialize;

use crate::{Category, Scope, Severity, validate};

/// The pack compiled into the binary.
pub const BUILTIN: &str = include_str!("../rules/default.toml");

/// At most this many findings per attack rule and window.
const MAX_PER_RULE: usize = 16;
/// At most this many findings per secret or PII rule and window; the last covers the
/// rest of the window.
const MAX_DATA_PER_RULE: usize = 1024;
/// Beyond this many separate windows, a rule runs on the whole text.
const MAX_WINDOWS: usize = 256;

/// A rule pack that does not load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Not TOML, or not the rule-pack shape.
    #[error("rule pack: {0}")]
    Parse(String),
    /// A rule that cannot be compiled or is inconsistent.
    #[error("rule {id}: {message}")]
    Rule {
        /// The rule's ID.
        id: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    format: u32,
    version: String,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    category: Category,
    severity: Severity,
    reason: String,
    pattern: String,
    #[serde(default)]
    scope: Vec<Scope>,
    #[serde(default)]
    triggers: Vec<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    min_entropy: Option<f32>,
    #[serde(default)]
    validate: Option<Validator>,
    #[serde(default)]
    case_sensitive: bool,
    /// Instead of triggers: run only near runs of at least this many digits (single
    /// separators such as space, dash, dot and parentheses allowed inside a run).
    #[serde(default)]
    digits: Option<usize>,
    /// Severity in tool metadata and parameter names, when it differs.
    #[serde(default)]
    tool_severity: Option<Severity>,
    /// A match is dropped when this pattern matches the text just before it in the
    /// same sentence (negation, or a description of the attack rather than the attack).
    #[serde(default)]
    unless_before: Option<String>,
    /// `false`: a finding of this rule in untrusted text never asks the text model for
    /// a second opinion (for rules that also fire on ordinary code and documentation,
    /// where a second weak signal should not convict; decision 0015).
    #[serde(default = "yes")]
    text_second_opinion: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Validator {
    Luhn,
    Iban,
    UsSsn,
}

struct Rule {
    id: String,
    category: Category,
    severity: Severity,
    reason: String,
    scopes: BTreeSet<Scope>,
    /// The pattern compiled. A rule with a screen ([`Rule::relaxed`], or the set of
    /// the rules without triggers) builds it on the first text its screen passes (most
    /// texts never do, and its automata are most of a large pattern's memory), a rule
    /// that reads tool metadata only when first woken; the rest at load.
    regex: OnceLock<Regex>,
    /// The pattern with its long counted repetitions made unbounded: it matches
    /// wherever the rule can, and stays on the fast automata. Where it does not match,
    /// the rule's own pattern is not run.
    relaxed: Option<Screen>,
    /// Matched against the ASCII-lowercased text (the pattern's letters lowercased),
    /// so that the regex engine's literal prefilters apply.
    folded: bool,
    group: Option<String>,
    min_entropy: Option<f32>,
    validate: Option<Validator>,
    digits: Option<usize>,
    tool_severity: Option<Severity>,
    unless_before: Option<Regex>,
    text_second_opinion: bool,
    /// Its triggers include a set derived from its pattern: every text the pattern
    /// matches holds one of them.
    complete: bool,
    /// The pattern as compiled.
    pattern: String,
    /// Where it runs when a trigger wakes it.
    reach: Reach,
}

/// How far back `unless_before` looks.
const UNLESS_REACH: usize = 100;

/// A compiled rule pack.
pub struct RulePack {
    version: String,
    threshold: f32,
    rules: Vec<Rule>,
    /// The triggers of the rules that read untrusted text (most of the traffic), and
    /// apart those of the rules that read tool metadata only: a text is scanned with
    /// the first alone, so tool-only rules cost it nothing; metadata with both.
    text_wake: Option<Wake>,
    meta_wake: Option<Wake>,
    /// Rules without triggers, and one automaton that tells which of them can match.
    always: Vec<usize>,
    always_set: Option<Regex>,
}

impl fmt::Debug for RulePack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulePack")
            .field("version", &self.version)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// One trigger automaton and, for each of its triggers, the rules it wakes.
struct Wake {
    ac: Triggers,
    woken_by: Vec<Vec<usize>>,
}

impl Wake {
    fn new(triggers: &[String], woken_by: Vec<Vec<usize>>) -> Result<Option<Self>, RuleError> {
        if triggers.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            ac: Triggers::new(triggers).map_err(RuleError::Parse)?,
            woken_by,
        }))
    }
}

/// One rule's match, before it becomes a finding.
#[derive(Debug, Clone)]
pub(crate) struct RuleMatch<'p> {
    pub(crate) id: &'p str,
    pub(crate) category: Category,
    pub(crate) severity: Severity,
    pub(crate) reason: &'p str,
    pub(crate) span: std::ops::Range<usize>,
}

impl RulePack {
    /// The built-in pack.
    pub fn builtin() -> Result<Self, RuleError> {
        Self::from_toml(BUILTIN)
    }

    /// Loads a pack. A pack with `extends = "builtin"` adds its rules to the built-in
    /// ones (a rule with the same ID replaces the built-in rule) and may `disable`
    /// built-in rules by ID; otherwise it stands alone.
    pub fn from_toml(text: &str) -> Result<Self, RuleError> {
        let raw: RawPack = toml::from_str(text).map_err(|e| RuleError::Parse(e.to_string()))?;
        if raw.format != 1 {
            return Err(RuleError::Parse(format!(
                "format {} is not supported (1 is)",
                raw.format
            )));
        }
        let (mut rules, base_threshold, version) = match raw.extends.as_deref() {
            None => (Vec::new(), None, raw.version.clone()),
            Some("builtin") => {
                let base: RawPack =
                    toml::from_str(BUILTIN).map_err(|e| RuleError::Parse(e.to_string()))?;
                (
                    base.rules,
                    base.threshold,
                    format!("{}+{}", base.version, raw.version),
                )
            }
            Some(other) => {
                return Err(RuleError::Parse(format!(
                    "extends = \"{other}\": only \"builtin\" can be extended"
                )));
            }
        };
        for id in &raw.disable {
            let before = rules.len();
            rules.retain(|r| &r.id != id);
            if rules.len() == before {
                return Err(RuleError::Rule {
                    id: id.clone(),
                    message: "disabled, but there is no such rule".into(),
                });
            }
        }
        for r in raw.rules {
            rules.retain(|b| b.id != r.id);
            rules.push(r);
        }
        let threshold = raw.threshold.or(base_threshold).unwrap_or(0.69);
        if !(0.0..=1.0).contains(&threshold) || threshold == 0.0 {
            return Err(RuleError::Parse("threshold must be in (0, 1]".into()));
        }
        Self::compile(version, threshold, rules)
    }

    fn compile(version: String, threshold: f32, raw: Vec<RawRule>) -> Result<Self, RuleError> {
        let mut ids = BTreeSet::new();
        let mut rules = Vec::with_capacity(raw.len());
        // Triggers of rules that read text, and of rules that read metadata only.
        let mut text_triggers: (Vec<String>, Vec<Vec<usize>>) = (Vec::new(), Vec::new());
        let mut meta_triggers: (Vec<String>, Vec<Vec<usize>>) = (Vec::new(), Vec::new());
        let mut always = Vec::new();
        for (idx, r) in raw.into_iter().enumerate() {
            let bad = |message: String| RuleError::Rule {
                id: r.id.clone(),
                message,
            };
            let id_ok = !r.id.is_empty()
                && r.id.len() <= 64
                && r.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !id_ok {
                return Err(bad("IDs are [A-Za-z0-9_-]{1,64}".into()));
            }
            if !ids.insert(r.id.clone()) {
                return Err(bad("the ID appears twice".into()));
            }
            let folded = !r.case_sensitive;
            let written = fold_like_text(&r.pattern);
            let pattern = if folded {
                lowercase_literals(&written).map_err(|e| bad(format!("pattern: {e}")))?
            } else {
                written.into_owned()
            };
            let relaxed = relax(&pattern).map_err(|e| bad(format!("pattern: {e}")))?;
            // Built now: the rules that run on the data path unscreened. Built when
            // first needed: a rule with a screen (its own, or — for the rules without
            // triggers — the set of them) when the screen first passes, and a rule that
            // reads tool metadata only (inspected once per definition change, never on
            // the data path) when first woken. Those are compiled to their forward NFA
            // now, where a pattern too large for the limit or a missing group is
            // found, so that a pack that loads does not fail later.
            let scopes: BTreeSet<Scope> = if r.scope.is_empty() {
                [Scope::Text, Scope::Tool].into_iter().collect()
            } else {
                r.scope.iter().copied().collect()
            };
            let regex = OnceLock::new();
            let metadata_only = !scopes.contains(&Scope::Text);
            let screened = relaxed.is_some() || (r.triggers.is_empty() && r.digits.is_none());
            let later = screened || metadata_only;
            let groups = if !later {
                let built = build(&pattern, 1 << 24).map_err(|e| bad(format!("pattern: {e}")))?;
                let groups = built.group_info().clone();
                let _ = regex.set(built);
                groups
            } else {
                forward_nfa(&pattern, 1 << 24)
                    .map_err(|e| bad(format!("pattern: {e}")))?
                    .group_info()
                    .clone()
            };
            if let Some(g) = &r.group
                && groups
                    .to_index(regex_automata::PatternID::ZERO, g)
                    .is_none()
            {
                return Err(bad(format!("the pattern has no group named `{g}`")));
            }
            let unless_before = match &r.unless_before {
                None => None,
                Some(u) => Some(
                    lowercase_literals(&fold_like_text(u))
                        .and_then(|u| build(&u, 1 << 22))
                        .map_err(|e| bad(format!("unless_before: {e}")))?,
                ),
            };
            // A rule's own triggers, and those its pattern gives (which make them
            // complete: every text the pattern matches holds one).
            let derived = if r.triggers.is_empty() {
                None
            } else {
                let own: Vec<String> = r.triggers.iter().map(|t| fold_trigger(t)).collect();
                crate::literals::derive(&pattern, &own)
            };
            let complete = derived.is_some();
            let reach = Reach::of(&pattern, complete, r.digits.is_some());
            let (triggers, woken_by) = if scopes.contains(&Scope::Text) {
                (&mut text_triggers.0, &mut text_triggers.1)
            } else {
                (&mut meta_triggers.0, &mut meta_triggers.1)
            };
            for t in r.triggers.iter().chain(derived.iter().flatten()) {
                let key = fold_trigger(t);
                if key.trim().is_empty() || !t.is_ascii() {
                    return Err(bad(format!(
                        "trigger `{t}` must be ASCII with a character other than whitespace"
                    )));
                }
                match triggers.iter().position(|x| *x == key) {
                    Some(p) if woken_by[p].contains(&idx) => {}
                    Some(p) => woken_by[p].push(idx),
                    None => {
                        triggers.push(key);
                        woken_by.push(vec![idx]);
                    }
                }
            }
            match (r.triggers.is_empty(), r.digits) {
                (false, Some(_)) => {
                    return Err(bad("`triggers` and `digits` exclude each other".into()));
                }
                (_, Some(0)) => return Err(bad("`digits` must be at least 1".into())),
                (true, None) => always.push(idx),
                _ => {}
            }
            rules.push(Rule {
                id: r.id,
                category: r.category,
                severity: r.severity,
                reason: r.reason,
                scopes,
                regex,
                relaxed,
                folded,
                group: r.group,
                min_entropy: r.min_entropy,
                validate: r.validate,
                digits: r.digits,
                tool_severity: r.tool_severity,
                text_second_opinion: r.text_second_opinion,
                unless_before,
                complete,
                pattern,
                reach,
            });
        }
        // The scan reports every occurrence of every trigger, overlapping ones too, so
        // each trigger wakes exactly its own rules.
        let text_wake = Wake::new(&text_triggers.0, text_triggers.1)?;
        let meta_wake = Wake::new(&meta_triggers.0, meta_triggers.1)?;
        let always_set = if always.is_empty() {
            None
        } else {
            let patterns: Vec<&str> = always.iter().map(|&i| rules[i].pattern.as_str()).collect();
            Some(build_set(&patterns, 1 << 24).map_err(RuleError::Parse)?)
        };
        Ok(Self {
            version,
            threshold,
            rules,
            text_wake,
            meta_wake,
            always,
            always_set,
        })
    }

    /// The pack's version (with the built-in version when it extends it).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The score at or above which a text or tool is malicious.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// How many rules the pack has.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules woken by triggers for which no set of strings their pattern requires
    /// was found: a text such a rule's pattern matches without holding one of the
    /// triggers its author listed is not seen. (None in the built-in pack.)
    pub fn partial_triggers(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(i, r)| !r.complete && r.digits.is_none() && !self.always.contains(i))
            .map(|(_, r)| r.id.as_str())
    }

    /// The rules woken by triggers whose matches may reach arbitrarily far whatever
    /// the text holds (parts repeated without bound that together can match every
    /// byte, such as `[^\n]*`): once woken, such a rule runs on the whole text rather
    /// than near its trigger. Sound, and slower on long texts; a bound
    /// (`[^\n]{0,200}`) restores the window.
    pub fn whole_text_rules(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                r.reach == Reach::Whole && r.digits.is_none() && !self.always.contains(i)
            })
            .map(|(_, r)| r.id.as_str())
    }

    /// How many distinct triggers the pack's automata hold (the rules' own and those
    /// derived from their patterns).
    pub fn trigger_count(&self) -> usize {
        [&self.text_wake, &self.meta_wake]
            .into_iter()
            .flatten()
            .map(|w| w.ac.len())
            .sum()
    }

    /// Whether a finding of rule `id` in untrusted text may ask the text model for a
    /// second opinion (true for checks that are not rules of the pack).
    pub fn text_second_opinion(&self, id: &str) -> bool {
        self.rules
            .iter()
            .find(|r| r.id == id)
            .is_none_or(|r| r.text_second_opinion)
    }

    /// Heap bytes held by the pack's compiled automata: each rule's (with its
    /// screening copy and `unless_before`), by rule ID, largest first, and the
    /// trigger automata and the set of trigger-less rules as `(triggers)` and
    /// `(always)`. What the pack adds to a gateway's idle memory.
    pub fn memory_usage(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .rules
            .iter()
            .map(|r| {
                let own = r.regex.get().map_or(0, Regex::memory_usage)
                    + r.relaxed.as_ref().map_or(0, Screen::memory_usage)
                    + r.unless_before.as_ref().map_or(0, Regex::memory_usage);
                (r.id.clone(), own)
            })
            .collect();
        let triggers = [&self.text_wake, &self.meta_wake]
            .into_iter()
            .flatten()
            .map(|w| w.ac.memory_usage())
            .sum();
        out.push(("(triggers)".into(), triggers));
        let always = self.always_set.as_ref().map_or(0, Regex::memory_usage);
        out.push(("(always)".into(), always));
        out.sort_by_key(|x| std::cmp::Reverse(x.1));
        out
    }

    /// Whether the pack has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Time spent by each rule over `texts` (as if every rule were woken), slowest
    /// first; for tuning packs.
    pub fn profile(&self, texts: &[&str]) -> Vec<(String, std::time::Duration)> {
        let mut out: Vec<_> = self
            .rules
            .iter()
            .map(|rule| {
                let t = std::time::Instant::now();
                let mut sink = Vec::new();
                for x in texts {
                    rule.run(x, x, 0..x.len(), Scope::Text, &mut sink);
                    sink.clear();
                }
                (rule.id.clone(), t.elapsed())
            })
            .collect();
        if let Some(Wake { ac, woken_by }) = &self.text_wake {
            // The trigger scan alone, on folded texts, fastest of five passes.
            let folded: Vec<Vec<u8>> = texts
                .iter()
                .map(|x| Folded::new(x.as_bytes()).bytes)
                .collect();
            let mut hits = Vec::new();
            let mut n = 0;
            let mut best = std::time::Duration::MAX;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                n = 0;
                for x in &folded {
                    hits.clear();
                    ac.find_all(x, &mut hits);
                    n += hits.len();
                }
                best = best.min(t.elapsed());
            }
            out.push((format!("(trigger scan, {n} hits)"), best));
            let mut per: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
            for x in &folded {
                hits.clear();
                ac.find_all(x, &mut hits);
                for h in &hits {
                    *per.entry(h.pattern).or_default() += 1;
                }
            }
            let mut per: Vec<_> = per.into_iter().collect();
            per.sort_by_key(|p| std::cmp::Reverse(p.1));
            for (pat, hits) in per.into_iter().take(15) {
                let rules: Vec<&str> = woken_by[pat]
                    .iter()
                    .map(|&r| self.rules[r].id.as_str())
                    .collect();
                let text = String::from_utf8_lossy(ac.pattern(pat));
                out.push((
                    format!("(trigger {text:?}: {hits} hits, wakes {rules:?})"),
                    std::time::Duration::ZERO,
                ));
            }
        }
        out.sort_by_key(|x| std::cmp::Reverse(x.1));
        out
    }

    /// Runs every rule of `scope` whose triggers occur in `text`.
    pub(crate) fn scan<'p>(&'p self, text: &str, scope: Scope, out: &mut Vec<RuleMatch<'p>>) {
        let wanted = |rule: &Rule| rule.scopes.contains(&scope);
        let mut woken = vec![false; self.rules.len()];
        // The folded rules run on a lowercase copy; the triggers on the text folded
        // (lowercase, each run of whitespace one space), where windows are measured too,
        // so that a long run of whitespace does not push a rule's words out of reach.
        let lower = text.to_ascii_lowercase();
        // Where each woken rule runs; `None` for the whole text (a rule whose matches
        // may reach anywhere, so many windows that the whole is cheaper, or walks past
        // their budget).
        let mut windows: Vec<Option<Vec<(usize, usize)>>> =
            vec![Some(Vec::new()); self.rules.len()];
        // Text wakes text rules only; metadata wakes the rest too.
        let wakes = [
            self.text_wake.as_ref(),
            self.meta_wake.as_ref().filter(|_| scope != Scope::Text),
        ];
        if wakes.iter().any(Option::is_some) {
            let folded = Folded::new(text.as_bytes());
            let mut hits = Vec::new();
            let mut walks = vec![Walks::default(); self.rules.len()];
            let f = &folded.bytes;
            for wake in wakes.into_iter().flatten() {
                hits.clear();
                wake.ac.find_all(f, &mut hits);
                for m in &hits {
                    for &r in &wake.woken_by[m.pattern] {
                        let rule = &self.rules[r];
                        // A rule already running on the whole text is woken already.
                        if !wanted(rule) || windows[r].is_none() {
                            continue;
                        }
                        let Some((lo, hi)) = rule.reach.window(m, f, &mut walks[r]) else {
                            continue;
                        };
                        woken[r] = true;
                        if walks[r].spent(f.len()) {
                            windows[r] = None;
                            continue;
                        }
                        let Some(w) = &mut windows[r] else { continue };
                        let (start, end) =
                            (folded.original(lo), folded.original(hi).min(text.len()));
                        let n = w.len();
                        match w.last_mut() {
                            // Hits come nearly in order: most windows extend the last one.
                            Some(last) if last.1 >= start && start >= last.0 => {
                                last.1 = last.1.max(end);
                            }
                            _ if n >= MAX_WINDOWS => windows[r] = None,
                            _ => w.push((start, end)),
                        }
                    }
                }
            }
            for w in windows.iter_mut().flatten() {
                merge(w);
            }
        }
        for &r in &self.always {
            windows[r] = None;
        }
        let in_scope: Vec<usize> = self
            .always
            .iter()
            .copied()
            .filter(|&r| wanted(&self.rules[r]))
            .collect();
        if !in_scope.is_empty()
            && let Some(set) = &self.always_set
        {
            // Trigger-less rules are all case-sensitive or folded alike per rule; the
            // set runs on the text as given, and each rule that can match re-runs on
            // the text it expects.
            // The set's patterns are the rules' own: folded ones expect lowercase.
            if set.is_match(lower.as_bytes()) || set.is_match(text.as_bytes()) {
                let matches = |hay: &str| {
                    let mut hits = PatternSet::new(set.pattern_len());
                    set.which_overlapping_matches(&Input::new(hay), &mut hits);
                    hits
                };
                let (hits, raw_hits) = (matches(&lower), matches(text));
                for (k, &r) in self.always.iter().enumerate() {
                    let k = PatternID::new(k).unwrap_or(PatternID::MAX);
                    let hit = if self.rules[r].folded {
                        hits.contains(k)
                    } else {
                        raw_hits.contains(k)
                    };
                    if hit && in_scope.contains(&r) {
                        woken[r] = true;
                    }
                }
            }
        }
        // Digit rules: near runs of digits only.
        let mut runs: Option<Vec<(usize, usize, usize)>> = None;
        for (r, rule) in self.rules.iter().enumerate() {
            let Some(min) = rule.digits else { continue };
            if !wanted(rule) {
                continue;
            }
            let runs = runs.get_or_insert_with(|| digit_runs(text));
            let mut w: Vec<(usize, usize)> = Vec::new();
            for &(a, b, n) in runs.iter() {
                if n < min {
                    continue;
                }
                // As far as a match can reach from the run (or the whole text).
                let reach = match rule.reach {
                    Reach::Near(reach) => reach,
                    _ => text.len(),
                };
                let (a, b) = (a.saturating_sub(reach), (b + reach).min(text.len()));
                match w.last_mut() {
                    Some(last) if last.1 >= a => last.1 = last.1.max(b),
                    _ => w.push((a, b)),
                }
            }
            if !w.is_empty() {
                woken[r] = true;
                windows[r] = Some(w);
            }
        }
        for ((rule, w), win) in self.rules.iter().zip(woken).zip(windows) {
            if !w || !wanted(rule) {
                continue;
            }
            let hay = if rule.folded { lower.as_str() } else { text };
            let whole = [(0, text.len())];
            let ws = match &win {
                Some(ws) if !ws.is_empty() => ws.as_slice(),
                _ => &whole,
            };
            for &(mut a, mut b) in ws {
                while !text.is_char_boundary(a) {
                    a -= 1;
                }
                while !text.is_char_boundary(b) {
                    b += 1;
                }
                // Searched in place, so that `\b`, `^` and `$` see the bytes around.
                let screened_out = rule
                    .relaxed
                    .as_ref()
                    .is_some_and(|r| !r.may_match(Input::new(hay).range(a..b)));
                if !screened_out {
                    rule.run(hay, text, a..b, scope, out);
                }
            }
        }
    }
}

/// The first ASCII digit at or after `from`. A word without a byte in `'0'..='9'` is
/// skipped whole by an exact range test.
fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    use crate::words::{between, find_from};
    find_from(
        b,
        from,
        |x| between(x, b'0', b'9') != 0,
        |c| c.is_ascii_digit(),
    )
}

/// Runs of digits, allowing single separators (whitespace, `-`, `.`, `/`, `(`, `)`)
/// between them: (start, end, number of digits).
fn digit_runs(text: &str) -> Vec<(usize, usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(next) = next_digit(b, i) {
        i = next;
        let start = i;
        let mut end = i;
        let mut n = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                n += 1;
                i += 1;
                end = i;
            } else if (matches!(b[i], b'-' | b'.' | b'/' | b'(' | b')') || is_space(b[i]))
                && b.get(i + 1)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'(')
            {
                i += 1;
            } else {
                break;
            }
        }
        out.push((start, end, n));
    }
    out
}

impl Rule {
    /// The compiled pattern, built on first use where the rule is not built at load.
    /// `None` only if that build failed, which the check at load all but rules out:
    /// the pattern's forward NFA was compiled then under the same limit (its reverse
    /// NFA, which the build adds, mirrors it).
    fn exact(&self) -> Option<&Regex> {
        if let Some(r) = self.regex.get() {
            return Some(r);
        }
        let built = build(&self.pattern, 1 << 24).ok()?;
        Some(self.regex.get_or_init(|| built))
    }

    /// Runs on `range` of `hay` (the text, lowercased for folded rules: same length
    /// and boundaries); spans and checks use `text`.
    fn run<'p>(
        &'p self,
        hay: &str,
        text: &str,
        range: std::ops::Range<usize>,
        scope: Scope,
        out: &mut Vec<RuleMatch<'p>>,
    ) {
        let mut n = 0;
        let end = range.end;
        let severity = match (scope, self.tool_severity) {
            (Scope::Tool | Scope::Param, Some(s)) => s,
            _ => self.severity,
        };
        let mut accept = |span: std::ops::Range<usize>| -> bool {
            // Byte-level patterns can end inside a multi-byte character: widen to
            // character boundaries.
            let mut span = span;
            while !text.is_char_boundary(span.start) {
                span.start -= 1;
            }
            while !text.is_char_boundary(span.end) {
                span.end += 1;
            }
            let s = &text[span.clone()];
            let ok = self
                .min_entropy
                .is_none_or(|min| validate::entropy(s) >= min)
                && (self.category != Category::Secret || !validate::placeholder(s))
                && match self.validate {
                    None => true,
                    Some(Validator::Luhn) => validate::luhn(s),
                    Some(Validator::Iban) => validate::iban(s),
                    Some(Validator::UsSsn) => validate::us_ssn(s),
                };
            let negated = self.unless_before.as_ref().is_some_and(|u| {
                let mut from = span.start.saturating_sub(UNLESS_REACH);
                while !hay.is_char_boundary(from) {
                    from += 1;
                }
                let before = &hay[from..span.start];
                let sentence = before
                    .rfind(['.', '!', '?', '\n'])
                    .map_or(before, |i| &before[i + 1..]);
                u.is_match(sentence.as_bytes())
            });
            if ok && !negated {
                out.push(RuleMatch {
                    id: &self.id,
                    category: self.category,
                    severity,
                    reason: &self.reason,
                    span,
                });
                n += 1;
            }
            if self.category.is_attack() {
                // One decides the verdict.
                return n >= MAX_PER_RULE;
            }
            // Each secret or piece of PII found is one redacted: all are reported, up
            // to a bound that keeps a text packed with them from costing more memory
            // than a few times its size; the last one reported then covers the rest
            // of the window, which is redacted unread.
            if n >= MAX_DATA_PER_RULE {
                if let Some(last) = out.last_mut() {
                    last.span.end = last.span.end.max(end);
                }
                return true;
            }
            false
        };
        let Some(regex) = self.exact() else {
            // Fail closed: the window counts as matched.
            accept(range);
            return;
        };
        let input = Input::new(hay).range(range);
        match &self.group {
            None => {
                for m in regex.find_iter(input) {
                    if accept(m.range()) {
                        return;
                    }
                }
            }
            Some(g) => {
                for c in regex.captures_iter(input) {
                    if let Some(m) = c.get_group_by_name(g)
                        && accept(m.range())
                    {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_next_digit_is_the_first_digit(
            b in proptest::collection::vec(any::<u8>(), 0..64),
            from in 0usize..70,
        ) {
            let want = b
                .get(from..)
                .and_then(|r| r.iter().position(u8::is_ascii_digit))
                .map(|p| from + p);
            prop_assert_eq!(super::next_digit(&b, from), want);
        }
    }
}

#[cfg(test)]
mod coverage {
    //! Triggers and windows only decide where a rule's pattern runs; they must never
    //! keep it from finding what it matches, nor cut a match short (a secret found in
    //! part is redacted in part). Samples include runs of a thousand bytes and more
    //! where the pattern allows them.
    #![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

    use regex_syntax::hir::{Class, Hir, HirKind};

    use super::*;

    /// A small deterministic generator (xorshift), so that a failure repeats.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            usize::try_from(self.0 % n.max(1) as u64).unwrap()
        }
    }

    /// Printable ASCII and every ASCII whitespace byte: what the generator may write.
    fn writable(b: u8) -> bool {
        (0x09..=0x0d).contains(&b) || (0x20..0x7f).contains(&b)
    }

    /// A random text the pattern may match (assertions are not enforced: the rule's
    /// own pattern judges each sample afterwards).
    fn sample(h: &Hir, rng: &mut Rng, out: &mut Vec<u8>) {
        match h.kind() {
            HirKind::Literal(l) => out.extend_from_slice(&l.0),
            HirKind::Class(Class::Bytes(c)) => {
                let bytes: Vec<u8> = c
                    .ranges()
                    .iter()
                    .flat_map(|r| r.start()..=r.end())
                    .filter(|&b| writable(b))
                    .collect();
                if !bytes.is_empty() {
                    out.push(bytes[rng.below(bytes.len())]);
                }
            }
            HirKind::Class(Class::Unicode(c)) => {
                let chars: Vec<char> = c
                    .ranges()
                    .iter()
                    .flat_map(|r| r.start()..=r.end().min('\u{7f}'))
                    .filter(|&ch| u8::try_from(ch).is_ok_and(writable))
                    .collect();
                if !chars.is_empty() {
                    let mut buf = [0; 4];
                    out.extend_from_slice(
                        chars[rng.below(chars.len())]
                            .encode_utf8(&mut buf)
                            .as_bytes(),
                    );
                }
            }
            HirKind::Repetition(r) => {
                // Runs get long now and then: whitespace runs are what evasions use, and
                // a long run of anything else reaches past where a window would end.
                let extra = match rng.below(16) {
                    0 | 1 => 40,
                    2 if out.len() < 1024 => 1200,
                    _ => 3,
                };
                let max = r.max.map_or(r.min as usize + extra, |m| m as usize);
                let n = r.min as usize + rng.below(max - r.min as usize + 1);
                for _ in 0..n {
                    sample(&r.sub, rng, out);
                }
            }
            HirKind::Capture(c) => sample(&c.sub, rng, out),
            HirKind::Concat(v) => v.iter().for_each(|x| sample(x, rng, out)),
            HirKind::Alternation(v) => sample(&v[rng.below(v.len())], rng, out),
            HirKind::Empty | HirKind::Look(_) => {}
        }
    }

    /// Whether `s` holds `n` digits in a row (single separators allowed).
    fn has_run(s: &str, n: usize) -> bool {
        digit_runs(s).iter().any(|&(_, _, k)| k >= n)
    }

    /// FEAT-07: for every built-in rule, texts its pattern matches and that hold one of
    /// its triggers — with any whitespace between the words, long runs of it, line
    /// breaks, and long runs of whatever the pattern repeats without bound — are found
    /// by the scan, and every byte the pattern matches in the whole text is inside a
    /// finding; for rules whose triggers include a set derived from the pattern, for
    /// rules without triggers and for digit rules (numbers split by any whitespace),
    /// every sample the pattern matches is. (For a rule whose set could not be
    /// derived — none in the built-in pack — texts the pattern matches without any of
    /// the rule's hand-written triggers are counted.)
    #[test]
    fn feat_07_the_scan_finds_what_a_rule_matches_whole() {
        let pack = RulePack::builtin().unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut failures = Vec::new();
        let mut exercised = 0;
        for (r, rule) in pack.rules.iter().enumerate() {
            let hir = crate::literals::parse(&rule.pattern).unwrap();
            let scope = *rule.scopes.iter().next().unwrap();
            let own: Vec<&[u8]> = [&pack.text_wake, &pack.meta_wake]
                .into_iter()
                .flatten()
                .flat_map(|w| {
                    (0..w.woken_by.len())
                        .filter(move |&t| w.woken_by[t].contains(&r))
                        .map(|t| w.ac.pattern(t))
                })
                .collect();
            let (mut matched, mut unwoken) = (0, 0);
            for _ in 0..300 {
                let mut bytes = Vec::new();
                sample(&hir, &mut rng, &mut bytes);
                let Ok(s) = String::from_utf8(bytes) else {
                    continue;
                };
                // Letters as the pattern has them, for case-sensitive rules; mixed
                // case otherwise.
                let s = if rule.folded && rng.below(2) == 0 {
                    s.to_ascii_uppercase()
                } else {
                    s
                };
                let text = format!("Some words here.\n{s}\nAnd more words after.");
                let lower = text.to_ascii_lowercase();
                // What a reader sees of the words: each run of whitespace one space.
                let folded = lower
                    .split(|c: char| c.is_ascii_whitespace() || c == '\u{b}')
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into_bytes();
                let has_trigger = own.iter().any(|t| folded.windows(t.len()).any(|w| w == *t));
                let mut want = Vec::new();
                rule.run(
                    if rule.folded { &lower } else { &text },
                    &text,
                    0..text.len(),
                    scope,
                    &mut want,
                );
                if want.is_empty() {
                    continue;
                }
                let woken = pack.always.contains(&r) || has_trigger || rule.complete;
                // Digit rules are woken by runs of digits instead. The IBAN rule's run of
                // eight is in every national format (the bank or account number); the
                // generator's strings with letters all through are not IBANs.
                if !woken && rule.digits.is_none() || (rule.id == "PII-IBAN" && !has_run(&s, 8)) {
                    unwoken += 1;
                    continue;
                }
                matched += 1;
                let mut got = Vec::new();
                pack.scan(&text, scope, &mut got);
                // Found, and found whole: redaction covers every byte the rule's
                // pattern matches over the whole text.
                let covered = |i: usize| got.iter().any(|m| m.id == rule.id && m.span.contains(&i));
                if let Some(w) = want.iter().find(|w| !w.span.clone().all(covered)) {
                    failures.push(format!("{}: {:?} of {s:?}", rule.id, w.span.clone()));
                    break;
                }
            }
            eprintln!(
                "{:<28} {matched:>4} found, {unwoken:>4} without a trigger{}",
                rule.id,
                if rule.complete { " (derived)" } else { "" }
            );
            if matched >= 10 {
                exercised += 1;
            }
        }
        // Digit rules, and rules whose samples rarely pass their own checks, aside.
        assert!(exercised >= 60, "only {exercised} rules exercised");
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
