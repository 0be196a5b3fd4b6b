//! `palisade inspect`: the detectors as a command for pipelines.
//!
//! Reads tool definitions (a `tools/list` result or response, a single tool, or JSONL
//! of tools, each with an optional `id`) or text (plain, or JSONL of `{"id","text"}`)
//! from a file or standard input, and prints one verdict per input, as text or as
//! JSON lines. Exit code: 0 clean, 1 findings, 2 error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use palisade_inspect::{Inspector, Report, RulePack, Verdict};
use serde_json::{Value, json};

/// What the input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Tool definitions.
    Tools,
    /// Untrusted text: tool results, resources, prompts.
    Text,
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Text,
    /// One JSON object per input, per line.
    Json,
}

/// Reads at most this much input.
const MAX_INPUT: u64 = 256 * 1024 * 1024;

pub(crate) fn run(kind: Kind, format: Format, rules: Option<&Path>, input: &Path) -> ExitCode {
    match inspect(kind, format, rules, input) {
        Ok(true) => ExitCode::from(1),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade inspect: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether anything was found.
fn inspect(kind: Kind, format: Format, rules: Option<&Path>, input: &Path) -> Result<bool> {
    let inspector = match rules {
        None => Inspector::builtin(),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let pack = RulePack::from_toml(&text)?;
            for id in pack.partial_triggers() {
                eprintln!(
                    "palisade inspect: rule {id}: no strings its pattern requires were found \
                     to complete its triggers; a text its pattern matches without one of them \
                     is not seen"
                );
            }
            let whole: Vec<&str> = pack.whole_text_rules().collect();
            if !whole.is_empty() {
                eprintln!(
                    "palisade inspect: note: {} run on the whole text once woken (a match \
                     may reach any distance from its trigger); bound their repetitions to \
                     keep them near their triggers",
                    whole.join(", ")
                );
            }
            Inspector::new(pack)
        }
    };
    let mut text = String::new();
    if input == Path::new("-") {
        std::io::stdin()
            .take(MAX_INPUT)
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(input)
            .with_context(|| format!("cannot read {}", input.display()))?
            .take(MAX_INPUT)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", input.display()))?;
    }
    let items = match kind {
        Kind::Tools => tools(&text)?,
        Kind::Text => texts(&text)?,
    };
    let mut out = std::io::stdout().lock();
    let mut any = false;
    for (id, item) in items {
        let report = match &item {
            Item::Tool(t) => inspector.inspect_tool(t),
            Item::Text(t) => inspector.inspect_text(t),
        };
        any |= !report.findings.is_empty();
        match format {
            Format::Json => {
                let line = json!({
                    "id": id,
                    "verdict": report.verdict,
                    "score": report.score,
                    "findings": report.findings,
                });
                writeln!(out, "{line}")?;
            }
            Format::Text => print_human(&mut out, &id, &report)?,
        }
    }
    out.flush()?;
    Ok(any)
}

enum Item {
    Tool(Value),
    Text(String),
}

fn tools(text: &str) -> Result<Vec<(String, Item)>> {
    let label = |i: usize, t: &Value| -> String {
        t.get("id")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| Some(v.to_string()))
            })
            .or_else(|| t.get("name").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("#{i}"))
    };
    // One JSON document: a response, a result, a tool list, or one tool.
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let list = v
            .pointer("/result/tools")
            .or_else(|| v.get("tools"))
            .and_then(Value::as_array)
            .cloned()
            .or_else(|| v.as_array().cloned());
        let list = match list {
            Some(l) => l,
            None if v.get("name").is_some() => vec![v],
            None => bail!("no tools: expected a tools/list result, a tool, or JSONL of tools"),
        };
        return Ok(list
            .into_iter()
            .enumerate()
            .map(|(i, t)| (label(i, &t), Item::Tool(t)))
            .collect());
    }
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let t: Value = serde_json::from_str(line)
            .with_context(|| format!("line {}: not a JSON tool", i + 1))?;
        if !t.is_object() {
            bail!("line {}: not a JSON object", i + 1);
        }
        out.push((label(i, &t), Item::Tool(t)));
    }
    Ok(out)
}

fn texts(text: &str) -> Result<Vec<(String, Item)>> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let parsed: Option<Vec<Value>> = (!lines.is_empty())
        .then(|| {
            lines
                .iter()
                .map(|l| {
                    serde_json::from_str::<Value>(l)
                        .ok()
                        .filter(|v| v.get("text").is_some_and(Value::is_string))
                })
                .collect()
        })
        .flatten();
    match parsed {
        Some(rows) => Ok(rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let id = r.get("id").map_or_else(
                    || format!("#{i}"),
                    |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                );
                let t = r
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                (id, Item::Text(t))
            })
            .collect()),
        None => Ok(vec![("-".to_owned(), Item::Text(text.to_owned()))]),
    }
}

fn print_human(out: &mut impl Write, id: &str, r: &Report) -> std::io::Result<()> {
    let verdict = match r.verdict {
        Verdict::Malicious => "MALICIOUS",
        Verdict::Benign if r.findings.is_empty() => "clean",
        Verdict::Benign => "benign, with findings",
    };
    // The ids and the locations (a definition's property names) are the input's.
    let id = crate::terminal::shown(id);
    writeln!(out, "{id}: {verdict} (score {:.2})", r.score)?;
    for f in &r.findings {
        let sev = serde_json::to_value(f.severity).unwrap_or_default();
        let cat = serde_json::to_value(f.category).unwrap_or_default();
        writeln!(
            out,
            "  {:<8} {:<24} {:<13} {} [{}..{}]: {}",
            sev.as_str().unwrap_or("?"),
            f.rule,
            cat.as_str().unwrap_or("?"),
            crate::terminal::shown(&f.location),
            f.span.0,
            f.span.1,
            f.reason
        )?;
    }
    Ok(())
}

/// The CLI arguments of `palisade inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What the input holds.
    #[arg(long, value_enum)]
    pub(crate) kind: Kind,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: Format,
    /// A rule pack to use instead of the built-in one (it may extend it).
    #[arg(long)]
    pub(crate) rules: Option<PathBuf>,
    /// The input file, or - for standard input.
    pub(crate) input: PathBuf,
}
