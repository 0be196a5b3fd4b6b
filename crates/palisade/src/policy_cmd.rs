//! `palisade policy`: check a Cedar policy file against the Palisade schema, and ask
//! it one question offline. Exit codes: `check` 0 valid, 1 invalid, 2 error; `test`
//! 0 allow, 1 deny, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use palisade_policy::{Caller, Facts, Kind, Policies, Query, Target};

/// `palisade policy …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy file against the Palisade schema.
    Check {
        /// The Cedar policy file.
        file: PathBuf,
    },
    /// Print the shipped Cedar schema that policies are validated against.
    Schema,
    /// Decide one request offline and print the policies that decided it.
    Test(Box<TestArgs>),
}

/// One request, described on the command line.
#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// The Cedar policy file (with `--config`, by default the config's).
    file: Option<PathBuf>,
    /// A gateway config: its policy file, and the `risk` and `data_class` it gives the
    /// upstream and tool (`[upstream.tools."glob"]`), as the gateway would; the
    /// attribute flags below override them.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// The caller's subject.
    #[arg(long)]
    principal: String,
    /// The caller's issuer (`local` is the local user when auth is off).
    #[arg(long, default_value = "local")]
    issuer: String,
    /// A role of the caller (repeatable).
    #[arg(long)]
    role: Vec<String>,
    /// A group of the caller (repeatable).
    #[arg(long)]
    group: Vec<String>,
    /// `tools/call`, `tools/list`, `prompts/get`, `prompts/list`, `resources/read`,
    /// `resources/list`.
    #[arg(long)]
    action: String,
    /// The namespaced tool or prompt (`files__read`), or the resource URI.
    #[arg(long)]
    resource: String,
    /// The upstream; by default the part of the name before `__`.
    #[arg(long)]
    upstream: Option<String>,
    /// The tool's, prompt's or resource's risk attribute (default: the config's, else
    /// `normal`).
    #[arg(long)]
    risk: Option<String>,
    /// Its data class attribute (default: the config's, else `unclassified`).
    #[arg(long)]
    data_class: Option<String>,
    /// The upstream's risk attribute (default: the config's, else `normal`).
    #[arg(long)]
    upstream_risk: Option<String>,
    /// The upstream's data class attribute (default: the config's, else
    /// `unclassified`).
    #[arg(long)]
    upstream_data_class: Option<String>,
    /// Context as JSON: `scopes`, `time`, `verdict`, `client`, `address`, `called`,
    /// `session_seconds`; missing keys are `[]`, now, `"clean"`, `""`, `""`, `[]`, 0.
    #[arg(long)]
    context: Option<String>,
}

/// `--context`, as JSON.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Context {
    #[serde(default)]
    scopes: Vec<String>,
    time: Option<i64>,
    #[serde(default = "clean")]
    verdict: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    called: Vec<String>,
    #[serde(default)]
    session_seconds: i64,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            scopes: Vec::new(),
            time: None,
            verdict: clean(),
            client: String::new(),
            address: String::new(),
            called: Vec::new(),
            session_seconds: 0,
        }
    }
}

fn clean() -> String {
    "clean".to_owned()
}

pub(crate) fn run(
    command: &PolicyCommand,
    load_config: impl Fn(&std::path::Path) -> anyhow::Result<palisade_config::Config>,
) -> ExitCode {
    match command {
        PolicyCommand::Schema => {
            print!("{}", palisade_policy::SCHEMA);
            ExitCode::SUCCESS
        }
        PolicyCommand::Check { file } => match load(file) {
            Ok(Ok(p)) => {
                println!("{}: valid: {} policies", file.display(), p.len());
                if p.is_empty() {
                    println!("  an empty policy set denies everything");
                }
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                println!("{}: INVALID: {e}", file.display());
                ExitCode::from(1)
            }
            Err(code) => code,
        },
        PolicyCommand::Test(a) => test(a, load_config),
    }
}

fn load(file: &PathBuf) -> Result<Result<Policies, palisade_policy::PolicyError>, ExitCode> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Policies::parse(&text)),
        Err(e) => {
            eprintln!("palisade policy: {}: {e}", file.display());
            Err(ExitCode::from(2))
        }
    }
}

fn test(
    a: &TestArgs,
    load_config: impl Fn(&std::path::Path) -> anyhow::Result<palisade_config::Config>,
) -> ExitCode {
    let config = match a.config.as_deref().map(load_config).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("palisade policy test: {e:#}");
            return ExitCode::from(2);
        }
    };
    let Some(file) = a.file.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.policy.as_ref())
            .map(|p| p.file.clone())
    }) else {
        eprintln!("palisade policy test: no policy file: name one, or a --config with [policy]");
        return ExitCode::from(2);
    };
    let policies = match load(&file) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            eprintln!("palisade policy test: {}: {e}", file.display());
            return ExitCode::from(2);
        }
        Err(code) => return code,
    };
    let kind = match a.action.split('/').next() {
        Some("tools") => Kind::Tool,
        Some("prompts") => Kind::Prompt,
        Some("resources") => Kind::Resource,
        _ => {
            eprintln!("palisade policy test: `{}` is not an MCP action", a.action);
            return ExitCode::from(2);
        }
    };
    let namespaced = config.as_ref().is_none_or(|c| c.namespace);
    let upstream = a.upstream.clone().unwrap_or_else(|| match &config {
        // Without namespacing, the gateway has one upstream.
        Some(c) if !c.namespace => c
            .upstreams
            .first()
            .map(|u| u.name.clone())
            .unwrap_or_default(),
        _ => a
            .resource
            .split_once("__")
            .map_or_else(String::new, |(u, _)| u.to_owned()),
    });
    // The upstream's own name for the tool or prompt.
    let local = if namespaced {
        a.resource
            .strip_prefix(&format!("{upstream}__"))
            .unwrap_or(&a.resource)
    } else {
        &a.resource
    };
    let configured = match &config {
        None => None,
        Some(c) => match c.upstreams.iter().find(|u| u.name == upstream) {
            Some(u) => Some(u),
            None => {
                eprintln!("palisade policy test: the config has no upstream `{upstream}`");
                return ExitCode::from(2);
            }
        },
    };
    let (upstream_risk, upstream_class) = configured.map_or(("normal", "unclassified"), |u| {
        u.attributes_for(palisade_config::Item::Upstream)
    });
    let item = match kind {
        Kind::Tool => palisade_config::Item::Tool(local),
        Kind::Prompt => palisade_config::Item::Prompt(local),
        Kind::Resource => palisade_config::Item::Resource(&a.resource),
    };
    let (risk, class) =
        configured.map_or((upstream_risk, upstream_class), |u| u.attributes_for(item));
    let risk = a.risk.as_deref().unwrap_or(risk);
    let class = a.data_class.as_deref().unwrap_or(class);
    let upstream_risk = a.upstream_risk.as_deref().unwrap_or(upstream_risk);
    let upstream_class = a.upstream_data_class.as_deref().unwrap_or(upstream_class);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let context = match &a.context {
        None => Context::default(),
        Some(c) => match serde_json::from_str::<Context>(c) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("palisade policy test: --context: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let q = Query {
        caller: Caller {
            issuer: &a.issuer,
            subject: &a.principal,
            roles: &a.role,
            groups: &a.group,
        },
        action: &a.action,
        target: Target {
            kind,
            upstream: &upstream,
            name: &a.resource,
            risk,
            data_class: class,
            upstream_risk,
            upstream_data_class: upstream_class,
        },
        context: Facts {
            scopes: &context.scopes,
            time: context.time.unwrap_or(now),
            verdict: &context.verdict,
            client: &context.client,
            address: &context.address,
            called: &context.called,
            session_seconds: context.session_seconds,
        },
    };
    match policies.decide(&q) {
        Ok(d) => {
            let verdict = if d.allow { "ALLOW" } else { "DENY" };
            if d.policies.is_empty() {
                println!("{verdict} (no policy permits it: denied by default)");
            } else {
                println!("{verdict} by {}", d.policies.join(", "));
            }
            for e in &d.errors {
                println!("  error (that policy did not apply): {e}");
            }
            if d.approval {
                println!("  held until a person approves it (@approval)");
            }
            if !d.allow
                && let Ok(Some(scope)) = policies.step_up(&q)
            {
                println!("  a token with scope `{scope}` would be allowed (@step_up)");
            }
            if d.allow {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("palisade policy test: {e}");
            ExitCode::from(2)
        }
    }
}
