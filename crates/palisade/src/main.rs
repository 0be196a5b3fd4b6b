//! `palisade`: a security gateway for the Model Context Protocol.

#![forbid(unsafe_code)]

mod audit_cmd;
mod inspect_cmd;
mod pins_cmd;
mod policy_cmd;
mod scan;
mod terminal;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use palisade_config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "A security gateway for the Model Context Protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage the credential vault (secrets the gateway presents to upstreams).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Run the bundled demo MCP server on stdin/stdout (used by the quickstart).
    DemoServer {
        /// Also offer tools that try to get out of a sandbox (for sandbox tests).
        #[arg(long)]
        probes: bool,
    },
    /// Review and decide on pinned tool and prompt definitions.
    Pins {
        #[command(subcommand)]
        command: pins_cmd::PinsCommand,
    },
    /// Inspect tool definitions or text for poisoning, injection, secrets and PII.
    /// Exit code: 0 clean, 1 findings, 2 error.
    Inspect(inspect_cmd::Args),
    /// Check Cedar policies and decide requests offline, as the gateway would.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Find the MCP servers that clients on this machine run, check their
    /// configurations, and (with consent) inspect what they offer.
    /// Exit code: 0 clean, 1 findings, 2 error.
    Scan(scan::Args),
    /// The sandbox of stdio servers: what this kernel offers, and running a server
    /// inside it.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SandboxCommand {
    /// Show which containment mechanisms this kernel offers and, with a config,
    /// whether each stdio upstream's sandbox can be set up and what its launch risks.
    Check {
        /// A configuration file whose stdio upstreams to check.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run PROGRAM on stdin/stdout inside the sandbox (what `palisade scan --wrap`
    /// puts in client configurations): only the system's runtime paths and the given
    /// ones, no network unless asked, never root.
    Run {
        /// A path the program may read and execute beneath.
        #[arg(long)]
        read: Vec<PathBuf>,
        /// A path the program may also write beneath.
        #[arg(long)]
        write: Vec<PathBuf>,
        /// `none` (default) or `host`.
        #[arg(long, default_value = "none")]
        network: String,
        /// A mechanism to run without where the kernel lacks it (landlock,
        /// namespaces, seccomp).
        #[arg(long)]
        accept_weaker: Vec<String>,
        /// The program (looked up on PATH).
        program: PathBuf,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run PROGRAM inside a sandbox (used by the gateway for each stdio upstream).
    #[command(hide = true)]
    Exec {
        /// The sandbox profile (JSON).
        #[arg(long)]
        profile: String,
        /// The program, resolved.
        program: PathBuf,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Print a new random vault key (64 hex characters) for a key file.
    NewKey,
    /// Store a secret; the value is read from standard input, never from arguments.
    Set {
        /// The secret's name.
        name: String,
        /// The configuration file (its [vault] keys and data_dir).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List secrets: names, sealing key IDs and times, never values.
    List {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Re-encrypt every secret with the current key (vault.key_file); the keys in
    /// vault.previous_key_files open the old ones.
    RotateKey {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without starting anything, and print the
    /// effective configuration.
    Check {
        /// The configuration file (TOML).
        file: PathBuf,
    },
}

/// The environment for `${VAR}` interpolation: the process environment, plus
/// `PALISADE_EXE` (this binary) unless the environment sets it.
fn env_lookup(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) if name == "PALISADE_EXE" => std::env::current_exe()
            .ok()
            .map(|p| p.display().to_string()),
        Err(_) => None,
    }
}

fn load(path: &Path) -> Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Config::from_toml(path, &text, &env_lookup)?)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PALISADE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PALISADE_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let format = if json {
        terminal::LogFormat::Json
    } else {
        terminal::LogFormat::Text { colours: ansi }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(terminal::LogLines::new(std::io::stderr, format));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}

fn secrets(command: SecretsCommand) -> Result<()> {
    use std::io::Read;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match command {
        SecretsCommand::NewKey => {
            let key = palisade_gateway::Kek::generate_text()?;
            println!("{}", key.as_str());
        }
        SecretsCommand::Set { name, config } => {
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            anyhow::ensure!(
                valid,
                "secret names are 1-128 characters of A-Z, a-z, 0-9, '-', '_' and '.'"
            );
            let config = load(&config)?;
            let mut value = zeroize_vec();
            std::io::stdin().read_to_end(&mut value)?;
            while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                value.pop();
            }
            anyhow::ensure!(
                !value.is_empty(),
                "the secret is empty (pipe it on standard input)"
            );
            let secret = palisade_gateway::Secret::new(std::mem::take(&mut value));
            rt.block_on(async {
                let vault = palisade_gateway::open_vault(&config).await?;
                vault.set(&name, &secret).await?;
                admin_action(&config, "secrets.set", &name).await
            })?;
            println!("stored secret `{name}`");
        }
        SecretsCommand::List { config } => {
            let config = load(&config)?;
            let list = rt.block_on(async {
                let vault = palisade_gateway::open_vault(&config).await?;
                anyhow::Ok(vault.list().await?)
            })?;
            for s in list {
                println!("{}\tkey {}\tupdated {}", s.name, s.key_id, s.updated_at);
            }
        }
        SecretsCommand::RotateKey { config } => {
            let config = load(&config)?;
            let n = rt.block_on(async {
                let vault = palisade_gateway::open_vault(&config).await?;
                let n = vault.rotate().await?;
                admin_action(&config, "secrets.rotate-key", &format!("{n} secret(s)")).await?;
                anyhow::Ok(n)
            })?;
            println!("re-encrypted {n} secret(s) with the current key");
        }
    }
    Ok(())
}

/// Queues an admin action for the gateway's audit log (it cannot be appended here:
/// the log has one writer, the gateway).
pub(crate) async fn admin_action(
    config: &palisade_config::Config,
    action: &str,
    detail: &str,
) -> Result<()> {
    let store = palisade_store::SqliteStore::open(&config.data_dir).await?;
    store
        .admin_record(pins_cmd::now(), &pins_cmd::actor(None), action, detail)
        .await?;
    store.close().await;
    Ok(())
}

/// `palisade sandbox check`: exit 0 when every sandbox can be set up, 1 when one
/// cannot (or a launch is risky), 2 on error.
fn sandbox_check(config: Option<&Path>) -> Result<std::process::ExitCode> {
    let support = palisade_sandbox::Support::probe_here();
    println!("kernel: {support}");
    for (m, why) in support.missing() {
        println!("  missing {}: {why}", m.name());
    }
    println!(
        "seccomp deny-list: {}",
        palisade_sandbox::denied_names()
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some(file) = config else {
        return Ok(std::process::ExitCode::SUCCESS);
    };
    let config = load(file)?;
    let mut findings = 0;
    for u in &config.upstreams {
        let palisade_config::Transport::Stdio(sp) = &u.transport else {
            continue;
        };
        let profile = palisade_gateway::sandbox_profile(sp);
        match &profile {
            None => {
                findings += 1;
                println!(
                    "{}: runs WITHOUT a sandbox ([upstream.dangerous] sandbox = \"off\")",
                    u.name
                );
            }
            Some(p) => {
                let mut problems = p.refusals(&support);
                if let Err(e) = p.validate() {
                    problems.push(e);
                }
                if problems.is_empty() {
                    println!("{}: sandbox can be set up", u.name);
                } else {
                    findings += 1;
                    for why in problems {
                        println!("{}: cannot start: {why}", u.name);
                    }
                }
            }
        }
        for risk in palisade_sandbox::launch_risks(&sp.command.to_string_lossy(), &sp.args) {
            findings += 1;
            println!("{}: LOC-02: the launch command {risk}", u.name);
        }
    }
    Ok(if findings == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// A buffer for a secret read from stdin; the vault's `Secret` zeroes it on drop.
fn zeroize_vec() -> Vec<u8> {
    Vec::with_capacity(256)
}

fn main() -> Result<std::process::ExitCode> {
    let cli = Cli::parse();
    // The launcher must stay single-threaded: nothing else runs before it.
    if let Command::Sandbox {
        command:
            SandboxCommand::Exec {
                profile,
                program,
                args,
            },
    } = &cli.command
    {
        let profile = palisade_sandbox::Profile::from_arg(profile).map_err(anyhow::Error::msg)?;
        palisade_sandbox::exec(&profile, program, args);
    }
    if let Command::Sandbox {
        command:
            SandboxCommand::Run {
                read,
                write,
                network,
                accept_weaker,
                program,
                args,
            },
    } = &cli.command
    {
        let network = match network.as_str() {
            "none" => palisade_sandbox::Network::None,
            "host" => palisade_sandbox::Network::Host,
            other => anyhow::bail!("--network {other}: \"none\" or \"host\""),
        };
        let mut accepted = std::collections::BTreeSet::new();
        for m in accept_weaker {
            accepted.insert(palisade_sandbox::Mechanism::from_name(m).with_context(|| {
                format!("--accept-weaker {m}: landlock, namespaces or seccomp")
            })?);
        }
        let spec = palisade_config::StdioSpec {
            command: program.clone(),
            args: Vec::new(),
            env: std::collections::BTreeMap::new(),
            cwd: None,
            rlimits: palisade_config::StdioLimits::default(),
            sandbox: None,
        };
        let resolved = palisade_gateway::resolve_program(&spec).map_err(anyhow::Error::msg)?;
        let profile = palisade_sandbox::Profile {
            read: read.clone(),
            write: write.clone(),
            network,
            syscalls: None,
            rlimits: palisade_sandbox::Rlimits {
                processes: Some(256),
                ..palisade_sandbox::Rlimits::default()
            },
            accept_weaker: accepted,
        };
        palisade_sandbox::exec(&profile, &resolved, args);
    }
    if let Command::Scan(a) = &cli.command {
        return Ok(scan::run(a));
    }
    if let Command::Sandbox {
        command: SandboxCommand::Check { config },
    } = &cli.command
    {
        return sandbox_check(config.as_deref());
    }
    if let Command::Inspect(a) = &cli.command {
        return Ok(inspect_cmd::run(
            a.kind,
            a.format,
            a.rules.as_deref(),
            &a.input,
        ));
    }
    if let Command::Policy { command } = &cli.command {
        return Ok(policy_cmd::run(command, load));
    }
    if let Command::Audit { command } = &cli.command {
        return Ok(audit_cmd::run(command, load));
    }
    run(cli).map(|()| std::process::ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let config = load(&file)?;
            if let Some(tls) = &config.tls {
                palisade_gateway::check_tls(tls)?;
            }
            let policy = match &config.policy {
                Some(p) => {
                    let text = std::fs::read_to_string(&p.file)
                        .with_context(|| format!("policy file {}", p.file.display()))?;
                    let set = palisade_policy::Policies::parse(&text)
                        .with_context(|| format!("policy file {}", p.file.display()))?;
                    format!(
                        "policy check: {} policies valid; step-up scopes {:?}; {} held for approval\n",
                        set.len(),
                        set.step_up_scopes(),
                        set.approvals()
                    )
                }
                None => String::new(),
            };
            println!("{}: ok\n{}{policy}", file.display(), config.summary());
            for u in &config.upstreams {
                if let palisade_config::Transport::Stdio(sp) = &u.transport {
                    for risk in
                        palisade_sandbox::launch_risks(&sp.command.to_string_lossy(), &sp.args)
                    {
                        println!("warning: {}: LOC-02: the launch command {risk}", u.name);
                    }
                }
            }
            Ok(())
        }
        Command::Secrets { command } => secrets(command),
        Command::DemoServer { probes } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(palisade_demo_server::run_with(probes))?;
            Ok(())
        }
        Command::Serve { config } => {
            init_tracing();
            let config = load(&config)?;
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            // Setup, timers and sinks; the calls are served on threads of their own,
            // one per core, each with its own single-threaded runtime.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(palisade_gateway::run(config, shutdown_signal(), |addr| {
                println!("palisade: listening on {scheme}://{addr}");
            }))?;
            Ok(())
        }
        Command::Inspect(_)
        | Command::Audit { .. }
        | Command::Policy { .. }
        | Command::Sandbox { .. }
        | Command::Scan(_) => Ok(()),
        Command::Pins { command } => pins_cmd::run(command, load),
    }
}
