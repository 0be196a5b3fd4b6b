//! `palisade scan --wrap`: rewrites client configuration files so that each stdio server
//! runs through `palisade sandbox run`. The original is kept beside the file (once: a
//! second run neither rewraps a server nor replaces the backup).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Args;
use super::discover::{self, Source, Transport};

/// The argument that marks a wrapped server.
const MARK: [&str; 2] = ["sandbox", "run"];

fn is_wrapped(command: &str, args: &[String]) -> bool {
    Path::new(command)
        .file_name()
        .is_some_and(|n| n == "palisade")
        && args.len() >= 2
        && args[0] == MARK[0]
        && args[1] == MARK[1]
}

/// The backup's path: `<file>.palisade-backup`.
pub(super) fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".palisade-backup");
    PathBuf::from(name)
}

/// Wraps every stdio server of `files`; one line per change.
pub(super) fn wrap(files: &[PathBuf], launcher: &Path, a: &Args) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for file in files {
        let mut doc = discover::read_json(file).map_err(anyhow::Error::msg)?;
        let src = Source {
            client: "given".into(),
            path: file.clone(),
        };
        let mut changed = 0;
        for s in discover::servers(&src, &doc) {
            let Transport::Stdio { command, args, .. } = &s.transport else {
                continue;
            };
            if is_wrapped(command, args) {
                continue;
            }
            let mut new_args: Vec<String> = MARK.iter().map(|m| (*m).to_owned()).collect();
            for r in &a.read {
                new_args.push("--read".into());
                new_args.push(r.display().to_string());
            }
            if a.host_network {
                new_args.extend(["--network".into(), "host".into()]);
            }
            new_args.push("--".into());
            new_args.push(command.clone());
            new_args.extend(args.iter().cloned());
            let Some(entry) = pointer_mut(&mut doc, &s.pointer) else {
                continue;
            };
            let launcher = Value::String(launcher.display().to_string());
            let args = Value::Array(new_args.into_iter().map(Value::String).collect());
            match entry.get_mut("command") {
                // Zed: "command": { "path", "args" }.
                Some(Value::Object(cmd)) => {
                    cmd.insert("path".into(), launcher);
                    cmd.insert("args".into(), args);
                }
                _ => {
                    if let Some(obj) = entry.as_object_mut() {
                        obj.insert("command".into(), launcher);
                        obj.insert("args".into(), args);
                    }
                }
            }
            changed += 1;
            out.push(format!("wrapped {} in {}", s.name, file.display()));
        }
        if changed > 0 {
            let backup = backup_path(file);
            if !backup.exists() {
                std::fs::copy(file, &backup)?;
                out.push(format!("kept the original as {}", backup.display()));
            }
            let text = serde_json::to_string_pretty(&doc)?;
            let tmp = {
                let mut t = file.as_os_str().to_owned();
                t.push(".palisade-tmp");
                PathBuf::from(t)
            };
            // Created with the original's mode: it may hold credentials.
            let mode = std::fs::metadata(file).map_or(0o600, |m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777
            });
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().write(true).create_new(true),
                mode,
            )
            .open(&tmp)?;
            std::io::Write::write_all(&mut f, format!("{text}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, file)?;
        }
    }
    Ok(out)
}

fn pointer_mut<'a>(doc: &'a mut Value, keys: &[String]) -> Option<&'a mut Value> {
    let mut v = doc;
    for k in keys {
        v = v.get_mut(k)?;
    }
    Some(v)
}
