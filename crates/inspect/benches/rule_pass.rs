//! The rule pass (`Inspector::inspect_text`, `Inspector::inspect_tool`) on text of
//! several kinds, in bytes per second on one core.
//!
//! Ordinary text is this repository's own: Rust source and Markdown, compiled in, so
//! the figures need nothing but the checkout. Attack-dense text is read by path from
//! the public corpora beside the checkout (`../shared/corpora`) when they are there.
//!
//! ```sh
//! cargo bench -p palisade-inspect --bench rule_pass
//! ```

#![allow(missing_docs, reason = "a benchmark binary")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_inspect::Inspector;

/// The first `n` bytes of `parts` joined, cut at a character boundary.
fn joined(parts: &[&str], n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        for p in parts {
            s.push_str(p);
            s.push('\n');
        }
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

const SOURCE: [&str; 6] = [
    include_str!("../src/rules.rs"),
    include_str!("../src/normalize.rs"),
    include_str!("../src/triggers.rs"),
    include_str!("../src/lib.rs"),
    include_str!("../src/literals.rs"),
    include_str!("../src/reach.rs"),
];

const MARKDOWN: [&str; 3] = [
    include_str!("../../../README.md"),
    include_str!("../../../ARCHITECTURE.md"),
    include_str!("../../../BENCHMARKS.md"),
];

/// The malicious texts of a corpus file beside the checkout, joined; `None` without
/// the corpora.
fn corpus(file: &str, n: usize) -> Option<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpora/");
    let text = std::fs::read_to_string(format!("{path}{file}")).ok()?;
    let rows: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["label"] == "malicious")
        .filter_map(|r| r["text"].as_str().map(str::to_owned))
        .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    (!refs.is_empty()).then(|| joined(&refs, n))
}

fn texts(c: &mut Criterion) {
    let ins = Inspector::builtin();
    let mut inputs: Vec<(&str, String)> = vec![
        // The load harness's tool result.
        ("4 KiB, one letter repeated", "x".repeat(4096)),
        ("4 KiB Markdown", joined(&MARKDOWN, 4096)),
        ("64 KiB Markdown", joined(&MARKDOWN, 64 * 1024)),
        ("64 KiB Rust source", joined(&SOURCE, 64 * 1024)),
    ];
    if let Some(t) = corpus("texts-garak.jsonl", 64 * 1024) {
        inputs.push(("64 KiB injected documents (garak)", t));
    }
    if let Some(t) = corpus("texts-agentdojo.jsonl", 64 * 1024) {
        inputs.push(("64 KiB injected tool outputs (AgentDojo)", t));
    }
    let mut g = c.benchmark_group("inspect_text");
    for (name, text) in &inputs {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*name, |b| b.iter(|| ins.inspect_text(black_box(text))));
    }
    g.finish();
}

fn tools(c: &mut Criterion) {
    let ins = Inspector::builtin();
    // An ordinary tool definition, as a `tools/list` result carries it.
    let tool = serde_json::json!({
        "name": "search_issues",
        "title": "Search issues",
        "description": "Searches the issues of a repository by text, label and state. \
            Returns at most `limit` issues, newest first, each with its number, title, \
            state, labels and the first lines of its body.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "repository": {"type": "string", "description": "owner/name"},
                "query": {"type": "string", "description": "Words to look for in titles and bodies"},
                "labels": {"type": "array", "items": {"type": "string"}},
                "state": {"type": "string", "enum": ["open", "closed", "all"]},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100}
            },
            "required": ["repository", "query"]
        },
        "annotations": {"readOnlyHint": true, "openWorldHint": true}
    });
    let bytes = serde_json::to_vec(&tool).map_or(0, |v| v.len());
    let mut g = c.benchmark_group("inspect_tool");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("ordinary tool definition", |b| {
        b.iter(|| ins.inspect_tool(black_box(&tool)))
    });
    g.finish();
}

criterion_group!(benches, texts, tools);
criterion_main!(benches);
