//! The detectors against the public labelled corpora in `../shared/corpora/` (read by
//! path, never copied). These are floors that catch regressions, not the figures we
//! report: `bench/src/bin/inspect-eval.rs` measures those, on tuned and held-out halves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "tests"
)]

use std::path::PathBuf;

use palisade_inspect::{Category, Inspector, Verdict};
use serde_json::{Value, json};

fn corpus(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpora")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the corpora come with every checkout)",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// (recall, false-positive rate)
fn rates(pairs: &[(bool, bool)]) -> (f64, f64) {
    let tp = pairs.iter().filter(|(p, a)| *p && *a).count() as f64;
    let pos = pairs.iter().filter(|(_, a)| *a).count() as f64;
    let fp = pairs.iter().filter(|(p, a)| *p && !*a).count() as f64;
    let neg = pairs.iter().filter(|(_, a)| !*a).count() as f64;
    (tp / pos.max(1.0), fp / neg.max(1.0))
}

#[test]
fn mcp03_tool_poisoning_is_found_and_real_tools_pass() {
    let ins = Inspector::builtin();
    let pairs: Vec<(bool, bool)> = corpus("tools-poisoning.jsonl")
        .iter()
        .map(|r| {
            let tool = json!({"name": s(r, "name"), "description": s(r, "description"),
                              "inputSchema": r.get("inputSchema").cloned().unwrap_or(Value::Null)});
            (
                ins.inspect_tool(&tool).verdict == Verdict::Malicious,
                s(r, "label") == "malicious",
            )
        })
        .collect();
    let (recall, fpr) = rates(&pairs);
    assert!(recall >= 0.95, "tool-poisoning recall {recall:.3}");
    assert!(fpr <= 0.01, "false positives on benign tools {fpr:.3}");
}

#[test]
fn injected_tool_outputs_are_found_and_benign_outputs_pass() {
    let ins = Inspector::builtin();
    for (file, min_recall, max_fpr) in [
        // About 40% of AgentDojo's malicious rows carry no injected text at all (the
        // injection vector is absent from that output), which caps recall near 0.6.
        ("texts-agentdojo.jsonl", 0.58, 0.0),
        ("texts-garak.jsonl", 0.93, 0.05),
        ("payloads-agentdojo.jsonl", 0.95, 0.0),
    ] {
        let pairs: Vec<(bool, bool)> = corpus(file)
            .iter()
            .map(|r| {
                (
                    ins.inspect_text(s(r, "text")).verdict == Verdict::Malicious,
                    s(r, "label") == "malicious",
                )
            })
            .collect();
        let (recall, fpr) = rates(&pairs);
        assert!(recall >= min_recall, "{file}: recall {recall:.3}");
        assert!(fpr <= max_fpr, "{file}: false positives {fpr:.3}");
    }
}

#[test]
fn secrets_and_pii_never_make_a_verdict_by_themselves() {
    let ins = Inspector::builtin();
    for r in corpus("pii-sentences.jsonl") {
        let rep = ins.inspect_text(s(&r, "text"));
        assert_eq!(rep.verdict, Verdict::Benign, "{}", s(&r, "id"));
    }
    let found = corpus("secrets-samples.jsonl")
        .iter()
        .filter(|r| s(r, "label") == "malicious_secret")
        .filter(|r| ins.inspect_text(s(r, "text")).has(Category::Secret))
        .count();
    assert!(found >= 40, "secrets found: {found}");
}
