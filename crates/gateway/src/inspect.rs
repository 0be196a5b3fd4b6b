//! Inspection of what upstreams say: tool results, resources and prompts on the way
//! to the client, and tool definitions in `tools/list`.
//!
//! Per upstream, the configured actions decide: an injection blocks the answer (or
//! spotlights its text, or flags it), secrets are redacted, hidden text is stripped,
//! and a poisoned tool is hidden from the list and refused when called. Findings are
//! logged by rule ID, category and location — never the text that matched.

use std::sync::Arc;

use palisade_config::{InspectionActions, OnData, OnHidden, OnInjection, OnTool};
use palisade_inspect::{Category, Inspector, Report, Severity, Verdict};
use palisade_wire::{ErrorCode, Message};
use serde_json::{Value, json};

/// The marker that replaces whitespace in spotlighted text (U+02C6, modifier
/// letter circumflex: rare in data, visible to a model).
const DATAMARK: char = '\u{2c6}';

/// The inspector and each upstream's actions.
#[derive(Debug)]
pub(crate) struct Inspection {
    inspector: Arc<Inspector>,
    actions: Vec<InspectionActions>,
    external: Option<crate::external::ExternalDetector>,
    /// Verdicts on definitions by the hash of their canonical JSON: an unchanged
    /// definition is inspected (and its findings logged) once, not on every list.
    verdicts: std::sync::Mutex<std::collections::HashMap<String, Option<Vec<String>>>>,
    audit: Arc<crate::audit::Auditor>,
    /// Upstream names, for audit records.
    names: Vec<String>,
}

/// Definition verdicts kept; beyond this the cache starts over.
const MAX_VERDICTS: usize = 10_000;

/// What one answer became.
pub(crate) enum Outcome {
    /// Unchanged.
    Pass,
    /// Rewritten (redacted, stripped, spotlighted or annotated).
    Rewrite(Message),
    /// Withheld: the client gets this error instead.
    Withhold(Message),
}

impl Inspection {
    pub(crate) fn new(
        inspector: Inspector,
        actions: Vec<InspectionActions>,
        external: Option<crate::external::ExternalDetector>,
        audit: Arc<crate::audit::Auditor>,
        names: Vec<String>,
    ) -> Self {
        Self {
            inspector: Arc::new(inspector),
            actions,
            external,
            verdicts: std::sync::Mutex::new(std::collections::HashMap::new()),
            audit,
            names,
        }
    }

    fn finding(
        &self,
        idx: usize,
        subject: &str,
        location: &str,
        rules: Vec<String>,
        action: &str,
    ) -> palisade_audit::Event {
        palisade_audit::Event::Finding {
            upstream: self.names.get(idx).cloned().unwrap_or_default(),
            subject: subject.to_owned(),
            location: location.to_owned(),
            rules,
            action: action.to_owned(),
        }
    }

    /// Records what inspection did to an answer; `false` when the record could not
    /// be written and the answer must not leave (fail-closed).
    async fn record(
        &self,
        idx: usize,
        method: &str,
        subject: &str,
        rules: Vec<String>,
        action: &str,
    ) -> bool {
        self.audit
            .decide(self.finding(idx, subject, method, rules, action))
            .await
            .is_ok()
    }

    fn actions(&self, idx: usize) -> InspectionActions {
        self.actions.get(idx).copied().unwrap_or_default()
    }

    /// Inspects the answer to `method` from upstream `idx` about `subject` (the tool,
    /// resource or prompt, as the client named it).
    pub(crate) async fn answer(
        &self,
        idx: usize,
        method: &str,
        subject: &str,
        msg: &Message,
    ) -> Outcome {
        if !msg.is_response() {
            return Outcome::Pass;
        }
        let Ok(mut v) = msg.to_value() else {
            return Outcome::Pass;
        };
        let Some(result) = v.get_mut("result") else {
            return Outcome::Pass;
        };
        let a = self.actions(idx);
        let mut texts: Vec<(String, &mut String)> = Vec::new();
        collect_texts(method, result, &mut texts);
        if texts.is_empty() {
            return Outcome::Pass;
        }

        let mut changed = false;
        let mut flagged: Vec<Value> = Vec::new();
        let mut withhold: Vec<String> = Vec::new();
        let mut reports: Vec<(usize, Report)> = Vec::with_capacity(texts.len());
        for (i, (_, text)) in texts.iter().enumerate() {
            let r = self.inspector.inspect_text(text);
            if !r.findings.is_empty() {
                reports.push((i, r));
            }
        }
        let mut found: Vec<String> = reports
            .iter()
            .flat_map(|(_, r)| r.findings.iter().map(|f| f.rule.clone()))
            .collect();
        let mut malicious = reports.iter().any(|(_, r)| r.verdict == Verdict::Malicious);
        // A second opinion on what the rules let through.
        let mut external_rules: Vec<String> = Vec::new();
        if !malicious && let Some(ext) = &self.external {
            let all: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
            match ext.check(&all, subject).await {
                Ok(false) => {}
                Ok(true) => {
                    tracing::warn!(upstream = idx, %subject, method, "the external detector found an attack");
                    malicious = true;
                    external_rules.push("EXT-DETECTOR".into());
                }
                Err(e) => match ext.on_error {
                    palisade_config::OnExternalError::FailClosed => {
                        tracing::warn!(upstream = idx, %subject, error = %e, "external detector failed: answer withheld (fail-closed)");
                        withhold.push("EXT-UNAVAILABLE".into());
                    }
                    palisade_config::OnExternalError::FailOpen => {
                        tracing::warn!(upstream = idx, %subject, error = %e, "external detector failed: answer passed unchecked by it (fail-open)");
                    }
                },
            }
        }

        for (i, report) in &reports {
            let (location, text) = &mut texts[*i];
            log_findings(idx, subject, location, report);
            let rules = |cat: &dyn Fn(Category) -> bool| -> Vec<String> {
                let mut ids: Vec<String> = report
                    .findings
                    .iter()
                    .filter(|f| cat(f.category))
                    .map(|f| f.rule.clone())
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            };
            let secret_rules = rules(&|c| c == Category::Secret);
            let pii_rules = rules(&|c| c == Category::Pii);
            let hidden_rules = rules(&|c| c == Category::HiddenText);
            // Secrets and PII: redact, block or flag.
            let mut redact_cats = Vec::new();
            for (found, action, cat) in [
                (&secret_rules, a.secrets, Category::Secret),
                (&pii_rules, a.pii, Category::Pii),
            ] {
                if found.is_empty() {
                    continue;
                }
                match action {
                    OnData::Redact => redact_cats.push(cat),
                    OnData::Block => withhold.extend(found.iter().cloned()),
                    OnData::Flag => flagged.push(json!({"location": location, "rules": found})),
                    OnData::Off => {}
                }
            }
            if !redact_cats.is_empty() {
                let only = Report {
                    verdict: report.verdict,
                    score: report.score,
                    findings: report
                        .findings
                        .iter()
                        .filter(|f| redact_cats.contains(&f.category))
                        .cloned()
                        .collect(),
                };
                **text = palisade_inspect::redact(text, &only, "text");
                changed = true;
            }
            if !hidden_rules.is_empty() {
                match a.hidden {
                    OnHidden::Strip => {
                        **text = palisade_inspect::strip_hidden(text);
                        changed = true;
                    }
                    OnHidden::Flag => {
                        flagged.push(json!({"location": location, "rules": hidden_rules}));
                    }
                }
            }
        }

        let external_found = external_rules.clone();
        if malicious {
            let attack_rules: Vec<String> = {
                let mut ids: Vec<String> = reports
                    .iter()
                    .flat_map(|(_, r)| r.attacks().map(|f| f.rule.clone()))
                    .chain(external_rules)
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            };
            match a.injection {
                OnInjection::Block => withhold.extend(attack_rules),
                OnInjection::Spotlight => {
                    for (_, text) in &mut texts {
                        **text = palisade_inspect::spotlight(text, subject, DATAMARK);
                    }
                    changed = true;
                }
                OnInjection::Flag => {
                    flagged.push(json!({"verdict": "malicious", "rules": attack_rules}))
                }
            }
        }

        let id = msg.id().cloned();
        let unrecorded = || {
            Outcome::Withhold(Message::error(
                id.as_ref(),
                ErrorCode::InternalError,
                "The audit log cannot record what inspection found, so the answer is withheld",
            ))
        };
        if !withhold.is_empty() {
            withhold.sort();
            withhold.dedup();
            tracing::warn!(upstream = idx, %subject, method, rules = ?withhold, "withheld an upstream answer (inspection)");
            // A withheld answer stays withheld whether or not it could be recorded.
            let _ = self
                .record(idx, method, subject, withhold.clone(), "block")
                .await;
            return Outcome::Withhold(Message::error_with_data(
                id.as_ref(),
                ErrorCode::Withheld,
                "The gateway withheld this answer: inspection found content it does not pass on",
                Some(json!({ "rules": withhold })),
            ));
        }
        drop(texts);
        found.extend(external_found);
        if !found.is_empty() {
            found.sort();
            found.dedup();
            let action = if changed { "rewrite" } else { "flag" };
            if !self.record(idx, method, subject, found, action).await {
                return unrecorded();
            }
        }
        if !flagged.is_empty() {
            if let Some(obj) = result.as_object_mut() {
                let meta = obj.entry("_meta").or_insert_with(|| json!({}));
                if let Some(m) = meta.as_object_mut() {
                    m.insert("palisade/inspection".into(), Value::Array(flagged));
                }
            }
            changed = true;
        }
        if !changed {
            return Outcome::Pass;
        }
        match Message::from_value(&Value::Object(v)) {
            Ok(m) => Outcome::Rewrite(m),
            Err(_) => Outcome::Withhold(Message::error(
                id.as_ref(),
                ErrorCode::InternalError,
                "the gateway could not re-encode an inspected answer",
            )),
        }
    }

    /// Inspects one tool or prompt definition of upstream `idx`. Returns the rules
    /// that make it malicious, if they do (logged, never the text).
    /// `hash` is the hash of the item's canonical form (`pins::canonical`).
    pub(crate) fn check_definition(
        &self,
        idx: usize,
        kind: &str,
        item: &Value,
        hash: &str,
    ) -> Option<Vec<String>> {
        let lock = || self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = lock().get(hash) {
            return v.clone();
        }
        let verdict = self.inspect_definition(idx, kind, item);
        let mut cache = lock();
        if cache.len() >= MAX_VERDICTS {
            cache.clear();
        }
        cache.insert(hash.to_owned(), verdict.clone());
        verdict
    }

    fn inspect_definition(&self, idx: usize, kind: &str, item: &Value) -> Option<Vec<String>> {
        let report = self.inspector.inspect_tool(item);
        if report.verdict != Verdict::Malicious {
            return None;
        }
        let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
        log_findings(idx, name, kind, &report);
        let mut rules: Vec<String> = report.attacks().map(|f| f.rule.clone()).collect();
        rules.sort();
        rules.dedup();
        let action = if self.blocks_definitions(idx) {
            "block"
        } else {
            "flag"
        };
        self.audit.note(self.finding(
            idx,
            name,
            &format!("{kind} definition"),
            rules.clone(),
            action,
        ));
        Some(rules)
    }

    /// Whether a definition that failed inspection is hidden (`tools = "block"`).
    pub(crate) fn blocks_definitions(&self, idx: usize) -> bool {
        self.actions(idx).tools == OnTool::Block
    }
}

fn log_findings(idx: usize, subject: &str, location: &str, report: &Report) {
    for f in &report.findings {
        let level_high = f.severity >= Severity::High;
        if level_high {
            tracing::warn!(upstream = idx, %subject, %location, rule = %f.rule, category = ?f.category, severity = ?f.severity, "inspection finding");
        } else {
            tracing::info!(upstream = idx, %subject, %location, rule = %f.rule, category = ?f.category, severity = ?f.severity, "inspection finding");
        }
    }
}

/// The text a model will read in an answer: tool result content and structured
/// content, resource contents, prompt messages.
fn collect_texts<'a>(method: &str, result: &'a mut Value, out: &mut Vec<(String, &'a mut String)>) {
    match method {
        "tools/call" => {
            let Some(obj) = result.as_object_mut() else {
                return;
            };
            for (k, v) in obj.iter_mut() {
                match k.as_str() {
                    "content" => content_texts(v, "content", out),
                    "structuredContent" => all_strings(v, "structuredContent", out),
                    _ => {}
                }
            }
        }
        "resources/read" => {
            if let Some(Value::Array(items)) = result.get_mut("contents") {
                for (i, item) in items.iter_mut().enumerate() {
                    if let Some(Value::String(t)) = item.get_mut("text") {
                        out.push((format!("contents[{i}].text"), t));
                    }
                }
            }
        }
        "prompts/get" => {
            let Some(obj) = result.as_object_mut() else {
                return;
            };
            for (k, v) in obj.iter_mut() {
                match (k.as_str(), v) {
                    ("description", Value::String(t)) => out.push(("description".into(), t)),
                    ("messages", Value::Array(msgs)) => {
                        for (i, m) in msgs.iter_mut().enumerate() {
                            if let Some(c) = m.get_mut("content") {
                                content_texts(c, &format!("messages[{i}].content"), out);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Text of MCP content blocks: `text`, and the text of embedded resources.
fn content_texts<'a>(v: &'a mut Value, path: &str, out: &mut Vec<(String, &'a mut String)>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                content_texts(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(block) => {
            for (k, v) in block.iter_mut() {
                match (k.as_str(), v) {
                    ("text", Value::String(t)) => out.push((format!("{path}.text"), t)),
                    ("resource", r @ Value::Object(_)) => {
                        if let Some(Value::String(t)) = r.get_mut("text") {
                            out.push((format!("{path}.resource.text"), t));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn all_strings<'a>(v: &'a mut Value, path: &str, out: &mut Vec<(String, &'a mut String)>) {
    match v {
        Value::String(s) => out.push((path.to_owned(), s)),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                all_strings(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                all_strings(item, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}
