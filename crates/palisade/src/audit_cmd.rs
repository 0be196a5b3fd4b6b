//! `palisade audit verify`: checks an audit log's hash chain and the signatures of
//! its checkpoints, and names the first record that does not hold (OBS-01).
//! Exit code: 0 valid, 1 invalid, 2 error.
//!
//! `palisade audit hash-arguments`: the keyed hash a call record carries for given
//! arguments, to tell whether a record is of them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use palisade_audit::key::{public_key_path, read_public_key};
use palisade_config::Config;

/// `palisade audit …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify a log file: every record's hash, the chain, and each checkpoint's
    /// signature. Exit code: 0 valid, 1 invalid, 2 error.
    Verify {
        /// The log file; by default the one the configuration writes.
        file: Option<PathBuf>,
        /// A trusted public key (hex, as written in `<signing key>.pub`); repeat it
        /// for keys used before a rotation.
        #[arg(long)]
        pubkey: Vec<PathBuf>,
        /// The gateway's configuration: its log file, and its signing key's public
        /// half when no --pubkey is given.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also require the file to be closed: to end with the checkpoint the gateway
        /// signs when it finishes a file (rotation, shutdown). A rotated file always
        /// is; a file cut short anywhere — signed checkpoints included — is not.
        #[arg(long)]
        closed: bool,
    },
    /// Print the hash a call record carries for these arguments
    /// (`arguments_hmac_sha256`: HMAC-SHA256 of their canonical JSON under the
    /// gateway's argument hash key), to tell whether a record is of them.
    HashArguments {
        /// The arguments as JSON (`{"path":"/etc/hosts"}`), or `-` to read them from
        /// standard input.
        arguments: String,
        /// The gateway's configuration: where its argument hash key is.
        #[arg(long, short)]
        config: PathBuf,
    },
}

pub(crate) fn run(
    command: &AuditCommand,
    load: impl Fn(&Path) -> anyhow::Result<Config>,
) -> ExitCode {
    match command {
        AuditCommand::Verify {
            file,
            pubkey,
            config,
            closed,
        } => verify(file.as_ref(), pubkey, config.as_deref(), *closed, load),
        AuditCommand::HashArguments { arguments, config } => {
            match hash_arguments(arguments, config, load) {
                Ok(mac) => {
                    println!("{mac}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("palisade audit hash-arguments: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn hash_arguments(
    arguments: &str,
    config: &Path,
    load: impl Fn(&Path) -> anyhow::Result<Config>,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let text = if arguments == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        arguments.to_owned()
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).context("the arguments are not JSON")?;
    let audit = load(config)?
        .audit
        .context("the configuration has no audit log ([dangerous] no_audit_log)")?;
    // Never created here: a new key would hash to nothing any record carries.
    let key = palisade_audit::key::HashKey::load(&audit.hash_key)?;
    Ok(palisade_gateway::arguments_mac(&key, &value))
}

fn verify(
    file: Option<&PathBuf>,
    pubkey: &[PathBuf],
    config: Option<&Path>,
    closed: bool,
    load: impl Fn(&Path) -> anyhow::Result<Config>,
) -> ExitCode {
    let audit = match config.map(&load).transpose() {
        Ok(c) => c.and_then(|c| c.audit),
        Err(e) => {
            eprintln!("palisade audit verify: {e:#}");
            return ExitCode::from(2);
        }
    };
    let Some(file) = file
        .cloned()
        .or_else(|| audit.as_ref().map(|a| a.path.clone()))
    else {
        eprintln!("palisade audit verify: name a log file, or a configuration with --config");
        return ExitCode::from(2);
    };
    let mut key_files = pubkey.to_vec();
    if key_files.is_empty()
        && let Some(a) = &audit
    {
        key_files.push(public_key_path(&a.signing_key));
    }
    let mut keys = Vec::new();
    for k in &key_files {
        match read_public_key(k) {
            Ok(k) => keys.push(k),
            Err(e) => {
                eprintln!("palisade audit verify: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let f = match std::fs::File::open(&file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("palisade audit verify: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match palisade_audit::chain::verify(std::io::BufReader::new(f), &keys) {
        Ok(s) => {
            println!(
                "{}: valid: {} records (seq {}..{}), {} signed checkpoints by key {}",
                file.display(),
                s.records,
                s.first_seq,
                s.last_seq,
                s.checkpoints,
                s.keys.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            if keys.is_empty() {
                println!(
                    "  signatures were checked against the keys the log names itself: pass --pubkey \
                     (or --config) to require the gateway's own key"
                );
            }
            if s.closed {
                println!("  closed: it ends with the checkpoint that finished it");
            } else {
                if s.unsigned_tail > 0 {
                    println!(
                        "  the last {} records are chained but not yet signed (the next checkpoint signs them)",
                        s.unsigned_tail
                    );
                }
                // A chain read alone cannot show that its end was cut: say so, and give
                // the head to compare with a copy kept elsewhere.
                println!(
                    "  open: it does not end with the checkpoint that finishes a file — it is being \
                     written, its gateway stopped abruptly, or its end was cut; its head is seq {} \
                     hash {}: compare it with the records your SIEM received",
                    s.last_seq, s.last_hash
                );
                if closed {
                    println!("{}: INVALID: not closed (--closed)", file.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(b) => {
            println!("{}: INVALID at {b}", file.display());
            ExitCode::from(1)
        }
    }
}
