//! Measures the detectors on the public labelled corpora (`../shared/corpora/` by
//! default): precision, recall, F1 and false-positive rate per corpus, each on two
//! halves split by a hash of the row ID (`tune` and `held-out`), and throughput in
//! MB/s on one core.
//!
//! `cargo run -p palisade-bench --release --bin inspect-eval [-- CORPORA_DIR]`

#![allow(
    clippy::cast_precision_loss,
    clippy::print_stdout,
    reason = "a report printer over small counts"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use palisade_inspect::{Category, Inspector, Verdict};
use serde_json::{Value, json};

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u32,
    fp: u32,
    tn: u32,
    fn_: u32,
}

impl Counts {
    fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, false) => self.tn += 1,
            (false, true) => self.fn_ += 1,
        }
    }

    fn line(&self) -> String {
        let p = ratio(self.tp, self.tp + self.fp);
        let r = ratio(self.tp, self.tp + self.fn_);
        let f1 = match (p, r) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            _ => None,
        };
        let fpr = ratio(self.fp, self.fp + self.tn);
        format!(
            "P {} R {} F1 {} FPR {}  (tp {} fp {} tn {} fn {})",
            fmt(p),
            fmt(r),
            fmt(f1),
            fmt(fpr),
            self.tp,
            self.fp,
            self.tn,
            self.fn_
        )
    }
}

fn ratio(a: u32, b: u32) -> Option<f64> {
    (b > 0).then(|| f64::from(a) / f64::from(b))
}

fn fmt(x: Option<f64>) -> String {
    x.map_or_else(|| "  -  ".to_owned(), |v| format!("{v:.3}"))
}

/// FNV-1a of the ID: even → tune, odd → held-out. Stable across runs and machines.
fn held_out(id: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 2 == 1
}

fn rows(dir: &Path, file: &str) -> Result<Vec<Value>> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{file}: bad JSON line")))
        .collect()
}

/// The definition a labelled tool row describes (its name, description and schema).
fn tool_of(r: &Value) -> Value {
    json!({"name": s(r, "name"), "description": s(r, "description"),
           "inputSchema": r.get("inputSchema").cloned().unwrap_or(Value::Null)})
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

struct Split {
    tune: Counts,
    held: Counts,
}

impl Split {
    fn new() -> Self {
        Self {
            tune: Counts::default(),
            held: Counts::default(),
        }
    }

    fn add(&mut self, id: &str, predicted: bool, actual: bool) {
        if held_out(id) {
            self.held.add(predicted, actual);
        } else {
            self.tune.add(predicted, actual);
        }
    }

    fn print(&self, name: &str) {
        let mut all = self.tune;
        all.tp += self.held.tp;
        all.fp += self.held.fp;
        all.tn += self.held.tn;
        all.fn_ += self.held.fn_;
        println!("{name}");
        println!("  tune      {}", self.tune.line());
        println!("  held-out  {}", self.held.line());
        println!("  all       {}", all.line());
    }
}

fn main() -> Result<()> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("../shared/corpora"), PathBuf::from);
    let verbose = std::env::var_os("EVAL_VERBOSE").is_some();
    let started = Instant::now();
    let ins = match std::env::var_os("EVAL_RULES") {
        Some(p) => Inspector::new(palisade_inspect::RulePack::from_toml(
            &std::fs::read_to_string(&p).context("EVAL_RULES")?,
        )?),
        None => Inspector::builtin(),
    };
    let build = started.elapsed();
    println!(
        "rule pack {} ({} rules, {} triggers), compiled in {:.0} ms\n",
        ins.pack().version(),
        ins.pack().len(),
        ins.pack().trigger_count(),
        build.as_secs_f64() * 1000.0
    );
    let miss = |what: &str, id: &str, extra: String| {
        if verbose {
            println!("    {what} {id} {extra}");
        }
    };
    let miss_report = |rep: &palisade_inspect::Report, actual: bool, id: &str| {
        let fired: Vec<_> = rep.attacks().map(|f| f.rule.as_str()).collect();
        miss(
            if actual { "FN" } else { "FP" },
            id,
            format!("{} {fired:?}", rep.score),
        );
    };

    // Tool definitions: malicious = poisoned.
    let mut tools = Split::new();
    for r in rows(&dir, "tools-poisoning.jsonl")? {
        let tool = tool_of(&r);
        let rep = ins.inspect_tool(&tool);
        let actual = s(&r, "label") == "malicious";
        let predicted = rep.verdict == Verdict::Malicious;
        tools.add(s(&r, "id"), predicted, actual);
        if predicted != actual {
            miss_report(&rep, actual, s(&r, "id"));
        }
    }
    tools.print("tools-poisoning.jsonl (tool definitions; malicious = poisoned)");

    // Texts: malicious = injected.
    for file in [
        "texts-agentdojo.jsonl",
        "texts-garak.jsonl",
        "payloads-agentdojo.jsonl",
        "regression-atr.jsonl",
    ] {
        let mut split = Split::new();
        let mut per_family: BTreeMap<String, Counts> = BTreeMap::new();
        for r in rows(&dir, file)? {
            let rep = ins.inspect_text(s(&r, "text"));
            let actual = s(&r, "label").starts_with("malicious");
            let predicted = rep.verdict == Verdict::Malicious;
            split.add(s(&r, "id"), predicted, actual);
            let fam = ["attack", "family", "category"]
                .iter()
                .map(|k| s(&r, k))
                .find(|v| !v.is_empty())
                .unwrap_or("-");
            per_family
                .entry(format!("{fam}/{}", s(&r, "label")))
                .or_default()
                .add(predicted, actual);
            if predicted != actual {
                miss_report(&rep, actual, s(&r, "id"));
            }
        }
        split.print(file);
        if verbose || file != "regression-atr.jsonl" {
            for (fam, c) in &per_family {
                let n = c.tp + c.fp + c.tn + c.fn_;
                println!(
                    "    {fam:<44} n {n:>5}  flagged {:>5.1}%",
                    f64::from(c.tp + c.fp) * 100.0 / f64::from(n.max(1))
                );
            }
        }
    }

    // Secrets: any secret finding.
    let mut secrets = Split::new();
    for r in rows(&dir, "secrets-samples.jsonl")? {
        let rep = ins.inspect_text(s(&r, "text"));
        let actual = s(&r, "label") == "malicious_secret";
        let predicted = rep.has(Category::Secret);
        secrets.add(s(&r, "id"), predicted, actual);
        if predicted != actual {
            miss(
                if actual { "FN" } else { "FP" },
                s(&r, "id"),
                s(&r, "rule").to_owned(),
            );
        }
    }
    secrets.print("secrets-samples.jsonl (any secret finding)");

    // PII: recall per pattern-detectable type (span overlap), and rows without PII.
    let detectable = [
        "CREDIT_CARD",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
    ];
    let mut per_type: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut none_rows = Counts::default();
    for r in rows(&dir, "pii-sentences.jsonl")? {
        let text = s(&r, "text");
        let rep = ins.inspect_text(text);
        let pii: Vec<(usize, usize)> = rep
            .findings
            .iter()
            .filter(|f| f.category == Category::Pii)
            .map(|f| f.span)
            .collect();
        // Spans in the corpus count characters; ours count bytes.
        let byte_at = |c: u64| {
            text.char_indices()
                .nth(usize::try_from(c).unwrap_or(usize::MAX))
                .map_or(text.len(), |(b, _)| b)
        };
        let spans = r
            .get("spans")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut any_detectable = false;
        for sp in &spans {
            let ty = s(sp, "type");
            let Some(ty) = detectable.iter().find(|d| **d == ty) else {
                continue;
            };
            any_detectable = true;
            let (a, b) = (
                byte_at(sp["start"].as_u64().unwrap_or(0)),
                byte_at(sp["end"].as_u64().unwrap_or(0)),
            );
            let hit = pii.iter().any(|&(x, y)| x < b && a < y);
            let e = per_type.entry(ty).or_default();
            e.1 += 1;
            if hit {
                e.0 += 1;
            } else {
                miss("FN", s(&r, "id"), format!("{ty} {:?}", &text[a..b]));
            }
        }
        if s(&r, "label") == "none" || !any_detectable {
            none_rows.add(!pii.is_empty(), false);
        }
    }
    println!("pii-sentences.jsonl (recall per type, by span overlap)");
    for (ty, (hit, n)) in &per_type {
        println!(
            "  {ty:<14} {hit}/{n} = {:.3}",
            f64::from(*hit) / f64::from((*n).max(1))
        );
    }
    println!(
        "  rows without pattern-detectable PII that got a PII finding: {}/{}",
        none_rows.fp,
        none_rows.fp + none_rows.tn
    );

    // The project's own sets (bench/own-sets/README.md): written blind to the rules,
    // by authors other than the public corpora's; some tuned on, some held out.
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("own-sets");
    println!("\nown sets (bench/own-sets)");
    for (file, role) in [
        ("tools-A.jsonl", "tuned"),
        ("tools-B.jsonl", "tuned"),
        ("tools-G.jsonl", "tuned"),
        ("tools-J.jsonl", "tuned"),
        ("tools-E.jsonl", "held out"),
        ("tools-K.jsonl", "held out"),
        ("texts-C.jsonl", "tuned"),
        ("texts-H.jsonl", "tuned"),
        ("texts-L.jsonl", "tuned"),
        ("texts-D.jsonl", "held out"),
        ("texts-F.jsonl", "held out"),
        ("texts-M.jsonl", "held out"),
    ] {
        let mut counts = Counts::default();
        for r in rows(&own, file)? {
            let rep = if file.starts_with("tools") {
                ins.inspect_tool(&tool_of(&r))
            } else {
                ins.inspect_text(s(&r, "text"))
            };
            let actual = s(&r, "label") == "malicious";
            let predicted = rep.verdict == Verdict::Malicious;
            counts.add(predicted, actual);
            if predicted != actual {
                miss_report(&rep, actual, s(&r, "id"));
            }
        }
        println!("  {file:<14} {role:<9} {}", counts.line());
    }

    // Throughput, one core: every text of the text corpora, inspected whole.
    let mut corpus = Vec::new();
    for file in ["texts-agentdojo.jsonl", "texts-garak.jsonl"] {
        for r in rows(&dir, file)? {
            corpus.push(s(&r, "text").to_owned());
        }
    }
    let benign: Vec<String> = rows(&dir, "texts-agentdojo.jsonl")?
        .iter()
        .chain(rows(&dir, "texts-garak.jsonl")?.iter())
        .filter(|r| s(r, "label") == "benign")
        .map(|r| s(r, "text").to_owned())
        .collect();
    // The same texts joined into 64 KiB chunks: tool results of that size, so the
    // per-call cost is amortised and the rule pass itself is measured.
    let chunks = |texts: &[String]| -> Vec<String> {
        let mut out = vec![String::new()];
        for t in texts {
            if out.last().is_some_and(|c| c.len() > 64 * 1024) {
                out.push(String::new());
            }
            if let Some(c) = out.last_mut() {
                c.push_str(t);
                c.push('\n');
            }
        }
        out
    };
    let corpus_chunks = chunks(&corpus);
    let benign_chunks = chunks(&benign);
    let only = std::env::var("EVAL_THROUGHPUT_ONLY").ok();
    let mut sets: Vec<(String, Vec<String>)> = vec![
        ("all texts".into(), corpus),
        ("benign texts".into(), benign),
        ("all texts in 64 KiB chunks".into(), corpus_chunks),
        ("benign texts in 64 KiB chunks".into(), benign_chunks),
    ];
    // Files of the operator's own (EVAL_FILES=a:b): ordinary traffic, in 64 KiB chunks.
    for f in std::env::var("EVAL_FILES").unwrap_or_default().split(':') {
        if f.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(f)?).into_owned();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        sets.push((format!("{f} in 64 KiB chunks"), chunks(&lines)));
    }
    for (name, texts) in &sets {
        let name = name.as_str();
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let bytes: usize = texts.iter().map(String::len).sum();
        if std::env::var_os("EVAL_PROFILE").is_some() {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            for (id, t) in ins.pack().profile(&refs).iter().take(200) {
                println!("  {id:<32} {:>8.1} ms", t.as_secs_f64() * 1000.0);
            }
        }
        if verbose {
            let mut freq: BTreeMap<String, usize> = BTreeMap::new();
            for x in texts {
                for f in ins.inspect_text(x).findings {
                    *freq.entry(f.rule).or_default() += 1;
                }
            }
            println!("  findings by rule on {name}: {freq:?}");
        }
        let t = Instant::now();
        let mut total = 0usize;
        let mut sink = 0usize;
        while t.elapsed() < Duration::from_secs(2) {
            for x in texts {
                sink += ins.inspect_text(x).findings.len();
            }
            total += bytes;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "throughput ({name}, {} texts, {:.1} MB): {:.0} MB/s on one core ({sink} findings)",
            texts.len(),
            bytes as f64 / 1e6,
            total as f64 / 1e6 / secs
        );
    }
    Ok(())
}
