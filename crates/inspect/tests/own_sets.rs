//! The detectors against the project's own sets in `bench/own-sets/` (written blind to
//! the rules; see its README). Floors that catch regressions on what the rules were
//! written for (the tuned sets) and on what they were not (the held-out ones), which
//! are set a little under the figures measured when the held-out sets were first
//! read; BENCHMARKS.md records the figures themselves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "tests"
)]

use std::path::PathBuf;

use palisade_inspect::{Inspector, Verdict};
use serde_json::{Value, json};

fn set(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench/own-sets")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// (recall, false-positive rate) of the verdicts on the named sets.
fn rates(ins: &Inspector, names: &[&str]) -> (f64, f64) {
    let (mut tp, mut pos, mut fp, mut neg) = (0.0, 0.0, 0.0, 0.0);
    for name in names {
        for r in set(name) {
            let report = if name.starts_with("tools") {
                ins.inspect_tool(&json!({"name": s(&r, "name"), "description": s(&r, "description"),
                                         "inputSchema": r.get("inputSchema").cloned().unwrap_or(Value::Null)}))
            } else {
                ins.inspect_text(s(&r, "text"))
            };
            let predicted = report.verdict == Verdict::Malicious;
            if s(&r, "label") == "malicious" {
                pos += 1.0;
                tp += f64::from(u8::from(predicted));
            } else {
                neg += 1.0;
                fp += f64::from(u8::from(predicted));
            }
        }
    }
    (tp / pos, fp / neg)
}

/// MCP03 / FEAT-01..04: poisoned definitions in wording the public corpora do not use.
#[test]
fn mcp03_poisoned_tools_of_our_own_sets_are_found_and_honest_ones_pass() {
    let ins = Inspector::builtin();
    let (recall, fpr) = rates(&ins, &["tools-A.jsonl", "tools-B.jsonl"]);
    assert!(recall >= 0.9, "tuned tool sets: recall {recall:.3}");
    assert!(fpr <= 0.02, "tuned tool sets: false positives {fpr:.3}");
    let (recall, fpr) = rates(&ins, &["tools-G.jsonl", "tools-J.jsonl"]);
    assert!(
        recall >= 0.85,
        "filter-aware tuned tool sets: recall {recall:.3}"
    );
    assert!(
        fpr <= 0.03,
        "filter-aware tuned tool set: false positives {fpr:.3}"
    );
    let (recall, fpr) = rates(&ins, &["tools-E.jsonl", "tools-K.jsonl"]);
    assert!(recall >= 0.4, "held-out tool sets: recall {recall:.3}");
    assert!(fpr <= 0.04, "held-out tool sets: false positives {fpr:.3}");
}

/// FEAT-07 / OWASP MCP06: injections planted in tool outputs of our own sets.
#[test]
fn feat_07_injected_outputs_of_our_own_sets_are_found() {
    let ins = Inspector::builtin();
    let (recall, fpr) = rates(&ins, &["texts-C.jsonl"]);
    assert!(recall >= 0.9, "tuned text set: recall {recall:.3}");
    assert!(fpr <= 0.1, "tuned text set: false positives {fpr:.3}");
    let (recall, fpr) = rates(&ins, &["texts-H.jsonl"]);
    assert!(
        recall >= 0.5,
        "filter-aware tuned text set: recall {recall:.3}"
    );
    assert!(
        fpr <= 0.07,
        "filter-aware tuned text set: false positives {fpr:.3}"
    );
    let (recall, fpr) = rates(&ins, &["texts-L.jsonl"]);
    assert!(recall >= 0.9, "tuned text set L: recall {recall:.3}");
    // Its honest texts that quote attacks stay flagged (decision in BENCHMARKS.md).
    assert!(fpr <= 0.11, "tuned text set L: false positives {fpr:.3}");
    // Pack 2026.11.6 raised D and F from 0.45 to 0.63 and their false positives from
    // 7 to 8 of 130 (a hidden element beside a note to automated readers).
    let (recall, fpr) = rates(&ins, &["texts-D.jsonl", "texts-F.jsonl"]);
    assert!(recall >= 0.6, "held-out text sets: recall {recall:.3}");
    assert!(fpr <= 0.065, "held-out text sets: false positives {fpr:.3}");
    let (recall, fpr) = rates(&ins, &["texts-M.jsonl"]);
    assert!(recall >= 0.3, "held-out text set M: recall {recall:.3}");
    assert!(fpr <= 0.03, "held-out text set M: false positives {fpr:.3}");
}
