//! The scan's output: a readable table, JSON, or SARIF 2.1.0.

use std::path::PathBuf;

use serde_json::json;

use super::{Finding, Level, Outcome, RULES};

fn level(l: Level) -> &'static str {
    match l {
        Level::Note => "note",
        Level::Warning => "warning",
        Level::Error => "error",
    }
}

pub(super) fn text(
    files: &[PathBuf],
    outcomes: &[Outcome],
    findings: &[Finding],
    wrapped: &[String],
) -> String {
    let mut s = format!(
        "palisade scan: {} configuration file(s), {} server(s)\n",
        files.len(),
        outcomes.len()
    );
    for f in files {
        s.push_str(&format!("  {}\n", f.display()));
    }
    if !outcomes.is_empty() {
        let w = outcomes
            .iter()
            .map(|o| o.server.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let c = outcomes
            .iter()
            .map(|o| o.client.len())
            .max()
            .unwrap_or(6)
            .max(6);
        s.push_str(&format!(
            "\n{:<w$}  {:<c$}  {:<9}  {:>5}  STATUS\n",
            "SERVER", "CLIENT", "TRANSPORT", "TOOLS"
        ));
        for o in outcomes {
            let tools = if o.status == "listed" {
                o.tools.len().to_string()
            } else {
                "-".into()
            };
            s.push_str(&format!(
                "{:<w$}  {:<c$}  {:<9}  {:>5}  {}\n",
                o.server, o.client, o.transport, tools, o.status
            ));
            s.push_str(&format!("{:<w$}  {}\n", "", o.launch));
        }
    }
    if findings.is_empty() {
        s.push_str("\nno findings\n");
    } else {
        let mut sorted: Vec<&Finding> = findings.iter().collect();
        sorted.sort_by(|a, b| b.level.cmp(&a.level).then_with(|| a.server.cmp(&b.server)));
        s.push_str(&format!("\n{} finding(s)\n", findings.len()));
        for f in sorted {
            let who = if f.server.is_empty() {
                f.file.display().to_string()
            } else {
                format!("{} ({})", f.server, f.client)
            };
            s.push_str(&format!(
                "{:<7}  {:<21}  {who}: {}\n",
                level(f.level),
                f.rule,
                f.message
            ));
        }
    }
    for w in wrapped {
        s.push_str(&format!("{w}\n"));
    }
    s
}

pub(super) fn json(
    files: &[PathBuf],
    outcomes: &[Outcome],
    findings: &[Finding],
    wrapped: &[String],
) -> String {
    let v = json!({
        "files": files,
        "servers": outcomes,
        "findings": findings,
        "wrapped": wrapped,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

/// SARIF 2.1.0: one run, the scan's own rules plus the detector rules that fired.
pub(super) fn sarif(findings: &[Finding]) -> String {
    let mut rules: Vec<serde_json::Value> = RULES
        .iter()
        .map(|(id, text)| json!({ "id": id, "shortDescription": { "text": text } }))
        .collect();
    let known: std::collections::BTreeSet<&str> = RULES.iter().map(|(id, _)| *id).collect();
    let mut extra: Vec<&str> = findings
        .iter()
        .map(|f| f.rule.as_str())
        .filter(|r| !known.contains(r))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    rules.extend(extra.into_iter().map(|id| json!({ "id": id })));
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let mut text = f.message.clone();
            if !f.server.is_empty() {
                text = format!("{} ({}): {text}", f.server, f.client);
            }
            json!({
                "ruleId": f.rule,
                "level": level(f.level),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": format!("file://{}", f.file.display()) } },
                    "logicalLocations": [{ "name": f.server, "kind": "module" }]
                }]
            })
        })
        .collect();
    let v = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "palisade scan",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/palisade-mcp/palisade",
                "rules": rules,
            }},
            "results": results,
        }]
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}
