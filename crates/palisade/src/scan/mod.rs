//! `palisade scan`: finds the MCP servers that clients on this machine are configured to
//! run, checks their configurations, and — only after showing each exact command and
//! getting consent, or with `--yes` — starts the stdio ones inside the sandbox and
//! connects to the HTTP ones to inspect what they offer (OWASP MCP04/MCP05/MCP09;
//! LOC-02, OBS-02).

mod discover;
mod probe;
mod report;
mod wrap;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use discover::{Server, Transport};
use palisade_inspect::{Category, Inspector, Verdict};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Client configuration files to scan besides the known locations (Claude
    /// Desktop, Claude Code, VS Code, Cursor, Windsurf, Zed).
    paths: Vec<PathBuf>,
    /// Only the files given, not the known locations.
    #[arg(long)]
    only: bool,
    /// Start stdio servers (sandboxed) and connect to HTTP ones without asking.
    #[arg(long)]
    yes: bool,
    /// Start and connect to nothing: check the configurations alone.
    #[arg(long)]
    no_connect: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// A gateway configuration whose pins the listed tools are compared with (by
    /// upstream name).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A path scanned stdio servers may read beneath (besides the system's).
    #[arg(long = "read")]
    read: Vec<PathBuf>,
    /// Give scanned stdio servers the host's network (for example to let `npx`
    /// download their package).
    #[arg(long)]
    host_network: bool,
    /// Seconds to wait for each server.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Rewrite each scanned file so that its stdio servers run through
    /// `palisade sandbox run` (keeps a backup; running it again changes nothing).
    #[arg(long)]
    wrap: bool,
}

/// How bad a finding is (SARIF levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Note,
    Warning,
    Error,
}

/// One finding of the scan.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Finding {
    pub(crate) rule: String,
    pub(crate) level: Level,
    pub(crate) server: String,
    pub(crate) client: String,
    pub(crate) file: PathBuf,
    pub(crate) message: String,
}

/// What happened to one server.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Outcome {
    pub(crate) server: String,
    pub(crate) client: String,
    pub(crate) file: PathBuf,
    pub(crate) transport: &'static str,
    pub(crate) launch: String,
    /// `listed`, `skipped (…)`, `failed: …`, `needs authentication`.
    pub(crate) status: String,
    pub(crate) tools: Vec<String>,
    pub(crate) prompts: usize,
    pub(crate) resources: usize,
}

/// The rules the scan itself reports (besides the detectors' rule IDs).
pub(crate) const RULES: &[(&str, &str)] = &[
    (
        "launch-risk",
        "A launch command that runs with privileges, pipes a download into a shell, removes files forcibly or names credential paths (LOC-02)",
    ),
    (
        "unpinned-package",
        "A package run without a pinned version: a new release runs unreviewed",
    ),
    (
        "secret-in-config",
        "A credential written into a client configuration file",
    ),
    ("plain-http", "A remote server reached over plain HTTP"),
    (
        "remote-without-auth",
        "A remote server that answers without any credential",
    ),
    (
        "tool-poisoning",
        "A tool definition that the detectors judge poisoned",
    ),
    (
        "injection-in-metadata",
        "Server instructions, a prompt or a resource description that the detectors judge an injection",
    ),
    (
        "name-collision",
        "The same tool name offered by more than one server (shadowing)",
    ),
    (
        "pin-mismatch",
        "A tool that differs from the version approved in the gateway's pins",
    ),
    ("not-pinned", "A tool the gateway has no approved pin for"),
    (
        "unreachable",
        "A server that could not be started or reached, so it was not inspected",
    ),
    (
        "unreadable-config",
        "A client configuration file that is not valid JSON",
    ),
];

fn loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

struct Scan {
    inspector: Inspector,
    findings: Vec<Finding>,
}

impl Scan {
    fn add(&mut self, s: &Server, rule: &str, level: Level, message: String) {
        self.findings.push(Finding {
            rule: rule.to_owned(),
            level,
            server: s.name.clone(),
            client: s.client.clone(),
            file: s.file.clone(),
            message,
        });
    }

    /// Checks that need no connection.
    fn configuration(&mut self, s: &Server) {
        let mut values: Vec<(String, String)> = Vec::new();
        match &s.transport {
            Transport::Stdio { command, args, env } => {
                for risk in palisade_sandbox::launch_risks(command, args) {
                    let rule = if risk.contains("pinned version") {
                        "unpinned-package"
                    } else {
                        "launch-risk"
                    };
                    self.add(
                        s,
                        rule,
                        Level::Warning,
                        format!("the launch command {risk}"),
                    );
                }
                values.extend(env.iter().map(|(k, v)| (format!("env {k}"), v.clone())));
                values.extend(
                    args.iter()
                        .enumerate()
                        .map(|(i, a)| (format!("argument {}", i + 1), a.clone())),
                );
            }
            Transport::Http { url, headers } => {
                if url.starts_with("http://") && !loopback(url) {
                    self.add(s, "plain-http", Level::Error, format!("{url} is plain HTTP to a remote host: tokens and results travel unencrypted"));
                }
                values.extend(
                    headers
                        .iter()
                        .map(|(k, v)| (format!("header {k}"), v.clone())),
                );
                values.push(("url".into(), url.clone()));
            }
        }
        for (place, value) in values {
            let report = self.inspector.inspect_text(&value);
            for f in report
                .findings
                .iter()
                .filter(|f| f.category == Category::Secret)
            {
                let shown: String = value.chars().take(4).collect();
                self.add(
                    s,
                    "secret-in-config",
                    Level::Error,
                    format!("{place} holds {} ({}): `{shown}…` is written in the file; keep it in a secret store or the environment", f.reason, f.rule),
                );
            }
        }
    }

    /// Checks of what a server lists.
    fn listing(
        &mut self,
        s: &Server,
        l: &probe::Listing,
        pins: Option<&BTreeMap<(String, String), String>>,
    ) {
        for tool in &l.tools {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or("?");
            let r = self.inspector.inspect_tool(tool);
            if r.verdict == Verdict::Malicious {
                let rules: Vec<String> = r
                    .findings
                    .iter()
                    .map(|f| format!("{} ({})", f.rule, f.reason))
                    .collect();
                self.add(
                    s,
                    "tool-poisoning",
                    Level::Error,
                    format!("tool `{name}` (score {:.2}): {}", r.score, rules.join("; ")),
                );
            }
            if let Some(pins) = pins {
                match pins.get(&(s.name.clone(), name.to_owned())) {
                    Some(h) if *h == palisade_gateway::pin_hash(tool) => {}
                    Some(_) => self.add(
                        s,
                        "pin-mismatch",
                        Level::Error,
                        format!(
                            "tool `{name}` differs from the version approved in the gateway's pins"
                        ),
                    ),
                    None => self.add(
                        s,
                        "not-pinned",
                        Level::Note,
                        format!("tool `{name}` has no approved pin in the gateway"),
                    ),
                }
            }
        }
        let mut texts: Vec<(String, String)> = Vec::new();
        if let Some(i) = &l.instructions {
            texts.push(("server instructions".into(), i.clone()));
        }
        for (kind, items) in [("prompt", &l.prompts), ("resource", &l.resources)] {
            for item in items {
                let name = item
                    .get("name")
                    .or_else(|| item.get("uri"))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                if let Some(d) = item.get("description").and_then(Value::as_str) {
                    texts.push((format!("{kind} `{name}`"), d.to_owned()));
                }
            }
        }
        for (place, text) in texts {
            let r = self.inspector.inspect_text(&text);
            if r.verdict == Verdict::Malicious {
                let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
                self.add(
                    s,
                    "injection-in-metadata",
                    Level::Error,
                    format!("{place}: {}", rules.join(", ")),
                );
            }
        }
    }
}

/// Asks on the terminal whether to start or connect to `s`.
fn consent(s: &Server, n: usize, total: usize) -> bool {
    let verb = match s.transport {
        Transport::Stdio { .. } => "start this server inside the sandbox",
        Transport::Http { .. } => "connect to this server",
    };
    // A client's configuration may come with a cloned repository: what it names is
    // shown with whatever would act on the terminal written out, so that the launch
    // line consented to is the one that runs.
    let asked = format!(
        "[{n}/{total}] {} ({}, {}):\n      {}\n      {verb}? [y/N] ",
        s.name,
        s.client,
        s.file.display(),
        s.shown()
    );
    eprint!("{}", crate::terminal::shown(&asked));
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}

/// The approved pins of a gateway's store: (upstream, tool) → hash.
async fn approved_pins(config: &Path) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let config = crate::load(config)?;
    let store = palisade_store::SqliteStore::open(&config.data_dir).await?;
    let pins = store.pin_list(false).await?;
    store.close().await;
    Ok(pins
        .into_iter()
        .filter(|p| p.kind == "tool" && p.status == "approved")
        .map(|p| ((p.upstream, p.name), p.hash))
        .collect())
}

pub(crate) fn run(a: &Args) -> ExitCode {
    match scan(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade scan: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn scan(a: &Args) -> anyhow::Result<ExitCode> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cwd = std::env::current_dir()?;
    let mut sources: Vec<discover::Source> = a
        .paths
        .iter()
        .map(|p| discover::Source {
            client: "given".into(),
            path: p.clone(),
        })
        .collect();
    if !a.only {
        sources.extend(discover::known_sources(&home, &cwd));
    }
    let mut scan = Scan {
        inspector: Inspector::builtin(),
        findings: Vec::new(),
    };
    let mut servers: Vec<Server> = Vec::new();
    let mut files = Vec::new();
    for src in &sources {
        match discover::read_json(&src.path) {
            Ok(doc) => {
                files.push(src.path.clone());
                servers.extend(discover::servers(src, &doc));
            }
            Err(e) if src.client == "given" => anyhow::bail!("{e}"),
            Err(e) => scan.findings.push(Finding {
                rule: "unreadable-config".into(),
                level: Level::Warning,
                server: String::new(),
                client: src.client.clone(),
                file: src.path.clone(),
                message: e,
            }),
        }
    }
    for s in &servers {
        scan.configuration(s);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pins = match &a.config {
        Some(c) => Some(rt.block_on(approved_pins(c))?),
        None => None,
    };
    let launcher = std::env::current_exe()?;
    let interactive = std::io::stdin().is_terminal();
    let mut outcomes = Vec::new();
    let total = servers.len();
    let mut offered: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, s) in servers.iter().enumerate() {
        let mut o = Outcome {
            server: s.name.clone(),
            client: s.client.clone(),
            file: s.file.clone(),
            transport: match s.transport {
                Transport::Stdio { .. } => "stdio",
                Transport::Http { .. } => "http",
            },
            launch: s.shown(),
            status: String::new(),
            tools: Vec::new(),
            prompts: 0,
            resources: 0,
        };
        let go = if a.no_connect {
            o.status = "not started (--no-connect)".into();
            false
        } else if a.yes {
            true
        } else if interactive {
            let yes = consent(s, i + 1, total);
            if !yes {
                o.status = "skipped (declined)".into();
            }
            yes
        } else {
            o.status = "skipped (no consent: run on a terminal, or with --yes)".into();
            false
        };
        if go {
            if a.format == Format::Text && std::io::stderr().is_terminal() {
                eprintln!(
                    "[{}/{total}] scanning {} …",
                    i + 1,
                    crate::terminal::shown(&s.name)
                );
            }
            let timeout = Duration::from_secs(a.timeout.max(1));
            let result = match &s.transport {
                Transport::Stdio { command, args, env } => {
                    rt.block_on(stdio(a, &launcher, command, args, env, timeout))
                }
                Transport::Http { url, headers } => {
                    match rt.block_on(probe::http(url, headers, timeout)) {
                        Ok(probe::Remote::NeedsAuth) => {
                            o.status = "needs authentication (401)".into();
                            Ok(None)
                        }
                        Ok(probe::Remote::Listed {
                            listing,
                            without_credentials,
                        }) => {
                            if without_credentials && !loopback(url) {
                                scan.add(
                                    s,
                                    "remote-without-auth",
                                    Level::Error,
                                    format!(
                                        "{url} answered initialize and lists without any credential"
                                    ),
                                );
                            }
                            Ok(Some(listing))
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(Some(l)) => {
                    o.status = "listed".into();
                    o.tools = l
                        .tools
                        .iter()
                        .filter_map(|t| t.get("name").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect();
                    o.prompts = l.prompts.len();
                    o.resources = l.resources.len();
                    for t in &o.tools {
                        offered.entry(t.clone()).or_default().push(s.name.clone());
                    }
                    scan.listing(s, &l, pins.as_ref());
                }
                Ok(None) => {}
                Err(e) => {
                    o.status = "failed".into();
                    scan.add(s, "unreachable", Level::Warning, e);
                }
            }
        }
        outcomes.push(o);
    }
    for (tool, by) in &offered {
        if by.len() > 1 {
            let names = by.join(", ");
            if let Some(s) = servers.iter().find(|s| s.name == by[1]) {
                scan.add(
                    s,
                    "name-collision",
                    Level::Warning,
                    format!("tool `{tool}` is offered by {names}: one can shadow the other"),
                );
            }
        }
    }
    let wrapped = if a.wrap {
        wrap::wrap(&files, &launcher, a)?
    } else {
        Vec::new()
    };
    let out = match a.format {
        Format::Text => report::text(&files, &outcomes, &scan.findings, &wrapped),
        Format::Json => report::json(&files, &outcomes, &scan.findings, &wrapped),
        Format::Sarif => report::sarif(&scan.findings),
    };
    // Names, messages and errors come from the scanned servers and their
    // configurations; JSON and SARIF escape what they must themselves.
    match a.format {
        Format::Text => print!("{}", crate::terminal::shown(&out)),
        Format::Json | Format::Sarif => print!("{out}"),
    }
    Ok(if scan.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Starts one stdio server in the scan's sandbox profile and lists it.
async fn stdio(
    a: &Args,
    launcher: &Path,
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Option<probe::Listing>, String> {
    let mut env = env.clone();
    if !env.contains_key("PATH") {
        env.insert(
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        );
    }
    let spec = palisade_config::StdioSpec {
        command: PathBuf::from(command),
        args: args.to_vec(),
        env: env.clone(),
        cwd: None,
        rlimits: palisade_config::StdioLimits::default(),
        sandbox: None,
    };
    let program = palisade_gateway::resolve_program(&spec)?;
    let profile = palisade_sandbox::Profile {
        read: a.read.clone(),
        write: Vec::new(),
        network: if a.host_network {
            palisade_sandbox::Network::Host
        } else {
            palisade_sandbox::Network::None
        },
        syscalls: None,
        rlimits: palisade_sandbox::Rlimits {
            processes: Some(256),
            ..palisade_sandbox::Rlimits::default()
        },
        accept_weaker: Default::default(),
    };
    probe::stdio(launcher, &profile, &program, args, &env, timeout)
        .await
        .map(Some)
}
