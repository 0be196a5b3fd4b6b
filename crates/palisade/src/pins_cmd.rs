//! `palisade pins`: review and decide on pinned tool and prompt definitions (FEAT-02).
//! Works on the store of the gateway that the same configuration starts, while that
//! gateway runs; its next `tools/list` sees the decision.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use palisade_store::SqliteStore;
use palisade_store::pins::Pin;

/// `palisade pins …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PinsCommand {
    /// List pinned definitions and their status.
    List {
        /// The configuration file (its data_dir holds the pins).
        #[arg(long, short)]
        config: PathBuf,
        /// Only those waiting for a decision.
        #[arg(long)]
        pending: bool,
    },
    /// Show what changed: each pending definition against the approved one.
    Diff {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The upstream's name.
        upstream: String,
        /// One tool or prompt (its name at the upstream); all pending ones otherwise.
        name: Option<String>,
    },
    /// Approve the pending definition of a tool or prompt.
    Approve(Decision),
    /// Reject the pending definitions of a tool or prompt (they stay hidden).
    Reject(Decision),
}

/// Which pending definition, and who decides.
#[derive(Debug, clap::Args)]
pub(crate) struct Decision {
    /// The configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// The upstream's name.
    upstream: String,
    /// The tool or prompt (its name at the upstream).
    name: String,
    /// A prefix of the definition's hash, when several versions are pending.
    #[arg(long)]
    hash: Option<String>,
    /// Who decides, as recorded beside the system account that ran the command; the
    /// login name by default.
    #[arg(long)]
    by: Option<String>,
}

pub(crate) fn run(
    cmd: PinsCommand,
    load: impl Fn(&std::path::Path) -> Result<palisade_config::Config>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config_path = match &cmd {
            PinsCommand::List { config, .. } | PinsCommand::Diff { config, .. } => config,
            PinsCommand::Approve(d) | PinsCommand::Reject(d) => &d.config,
        };
        let config = load(config_path)?;
        let store = SqliteStore::open(&config.data_dir)
            .await
            .context("cannot open the pin store")?;
        // What the upstreams wrote (names, URIs, definitions, notes) is printed with
        // whatever would act on the terminal written out.
        let mut out = String::new();
        let result = match cmd {
            PinsCommand::List { pending, .. } => list(&store, pending, &mut out).await,
            PinsCommand::Diff { upstream, name, .. } => {
                diff(&store, &upstream, name.as_deref(), &mut out).await
            }
            PinsCommand::Approve(d) => decide(&store, d, true).await,
            PinsCommand::Reject(d) => decide(&store, d, false).await,
        };
        print!("{}", crate::terminal::shown(&out));
        store.close().await;
        result
    })
}

/// Writes the pins (or the pending ones) to `out`.
async fn list(store: &SqliteStore, pending: bool, out: &mut String) -> Result<()> {
    let pins = store.pin_list(pending).await?;
    if pins.is_empty() {
        writeln!(
            out,
            "{}",
            if pending {
                "nothing pending"
            } else {
                "no pins yet"
            }
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<7} {:<32} {:<11} {:<13} {:<20} decided by",
        "upstream", "kind", "name", "status", "hash", "first seen"
    )?;
    for p in pins {
        writeln!(
            out,
            "{:<16} {:<7} {:<32} {:<11} {:<13} {:<20} {}{}",
            p.upstream,
            p.kind,
            p.name,
            p.status,
            &p.hash[..12.min(p.hash.len())],
            time(p.first_seen),
            p.decided_by.as_deref().unwrap_or("-"),
            p.decided_at
                .map(|t| format!(" at {}", time(t)))
                .unwrap_or_default()
        )?;
        if let Some(n) = p.note.filter(|_| p.status == "pending") {
            writeln!(out, "{:<16} {n}", "")?;
        }
    }
    Ok(())
}

/// Writes each pending definition's difference from the approved one to `out`.
async fn diff(
    store: &SqliteStore,
    upstream: &str,
    name: Option<&str>,
    out: &mut String,
) -> Result<()> {
    let versions = store.pin_versions(upstream, name).await?;
    let pending: Vec<&Pin> = versions.iter().filter(|p| p.status == "pending").collect();
    if pending.is_empty() {
        writeln!(
            out,
            "nothing pending for {upstream}{}",
            name.map(|n| format!("/{n}")).unwrap_or_default()
        )?;
        return Ok(());
    }
    for p in pending {
        let approved = versions
            .iter()
            .find(|a| a.kind == p.kind && a.name == p.name && a.status == "approved");
        writeln!(
            out,
            "{} {}/{} pending {} (first seen {})",
            p.kind,
            p.upstream,
            p.name,
            &p.hash[..12.min(p.hash.len())],
            time(p.first_seen)
        )?;
        if let Some(n) = &p.note {
            writeln!(out, "  {n}")?;
        }
        let new = pretty(&p.definition);
        match approved {
            None => {
                writeln!(out, "  new (no approved version):")?;
                for line in new.lines() {
                    writeln!(out, "  + {line}")?;
                }
            }
            Some(a) => {
                let old = pretty(&a.definition);
                let d = similar::TextDiff::from_lines(&old, &new);
                write!(
                    out,
                    "{}",
                    d.unified_diff().context_radius(3).header(
                        &format!("approved {}", &a.hash[..12.min(a.hash.len())]),
                        &format!("pending {}", &p.hash[..12.min(p.hash.len())])
                    )
                )?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

async fn decide(store: &SqliteStore, d: Decision, approve: bool) -> Result<()> {
    let by = actor(d.by.clone());
    let n = store
        .pin_decide(&d.upstream, &d.name, d.hash.as_deref(), approve, &by, now())
        .await?;
    anyhow::ensure!(
        n > 0,
        "nothing {} for {}/{}",
        if approve {
            "pending"
        } else {
            "pending or approved"
        },
        d.upstream,
        d.name
    );
    store
        .admin_record(
            now(),
            &by,
            if approve {
                "pins.approve"
            } else {
                "pins.reject"
            },
            &format!(
                "{}/{}{}",
                d.upstream,
                d.name,
                d.hash
                    .as_deref()
                    .map_or_else(String::new, |h| format!(" (hash {h}…)"))
            ),
        )
        .await?;
    let done = format!(
        "{} {n} definition(s) of {}/{} as {by}",
        if approve { "approved" } else { "rejected" },
        d.upstream,
        d.name
    );
    println!("{}", crate::terminal::shown(&done));
    Ok(())
}

fn pretty(definition: &str) -> String {
    serde_json::from_str::<serde_json::Value>(definition)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| definition.to_owned())
        + "\n"
}

/// Who a CLI action is recorded as: the name given with `--by`, else the login name
/// from the environment — both only claims — followed by the account the system ran
/// the command as, which the person running it cannot choose: `alice (uid:1000)`.
pub(crate) fn actor(claimed: Option<String>) -> String {
    // The account as the gateway names a local caller: `uid:<n>`.
    let local = palisade_gateway::Principal::local_user();
    let uid = local.subject();
    let claimed = claimed
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|c| !c.is_empty() && *c != uid);
    match claimed {
        Some(name) => format!("{name} ({uid})"),
        None => uid.to_owned(),
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM:SS`.
fn time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
