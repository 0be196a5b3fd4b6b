//! Stage 2 for `[audit]` and its `[[audit.sink]]` tables: where the log lives, its
//! durability and checkpoints, and the copies for a SIEM.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, MIB, RawConfig, check_http_url, is_loopback_host};
use crate::{ConfigError, Env};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    path: Option<Spanned<String>>,
    signing_key: Option<Spanned<String>>,
    hash_key: Option<Spanned<String>>,
    fsync: Option<Spanned<String>>,
    checkpoint_every: Option<Spanned<u64>>,
    checkpoint_interval: Option<Spanned<String>>,
    max_file_bytes: Option<Spanned<u64>>,
    keep_files: Option<Spanned<u64>>,
    on_failure: Option<crate::OnAuditFailure>,
    #[serde(default)]
    include_arguments: Vec<Spanned<String>>,
    #[serde(default, rename = "sink")]
    sinks: Vec<RawSink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: Spanned<String>,
    format: Option<crate::AuditFormat>,
    address: Option<Spanned<String>>,
    tls: Option<bool>,
    ca_file: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
}

impl RawConfig {
    fn build_sink(
        &self,
        cx: &Ctx<'_, impl Env>,
        k: &RawSink,
    ) -> Result<crate::AuditSink, ConfigError> {
        let kind = cx.string(&k.kind, "audit.sink.kind")?;
        let only = |present: bool, key: &str| -> Result<(), ConfigError> {
            if present {
                return Err(cx.at(
                    &k.kind,
                    "audit.sink",
                    format!("`{key}` does not apply to a {kind} sink"),
                ));
            }
            Ok(())
        };
        let target = match kind.as_str() {
            "stdout" => {
                only(k.address.is_some(), "address")?;
                only(k.url.is_some(), "url")?;
                only(k.tls.is_some(), "tls")?;
                only(k.ca_file.is_some(), "ca_file")?;
                crate::AuditSinkKind::Stdout
            }
            "syslog" => {
                only(k.url.is_some(), "url")?;
                let Some(a) = &k.address else {
                    return Err(cx.at(
                        &k.kind,
                        "audit.sink",
                        "a syslog sink needs `address = \"host:port\"`",
                    ));
                };
                let address = cx.string(a, "audit.sink.address")?;
                let host = match address.rsplit_once(':') {
                    Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                        h.trim_start_matches('[').trim_end_matches(']').to_owned()
                    }
                    _ => {
                        return Err(cx.at(
                            a,
                            "audit.sink.address",
                            format!("`{address}` is not host:port"),
                        ));
                    }
                };
                let tls = k.tls.unwrap_or(true);
                if !tls && !is_loopback_host(&host) {
                    return Err(cx.at(
                        a,
                        "audit.sink.address",
                        "syslog without TLS is allowed only to a loopback address: audit records would cross the network in clear",
                    ));
                }
                if !tls && k.ca_file.is_some() {
                    return Err(cx.at(a, "audit.sink.ca_file", "applies only with tls = true"));
                }
                crate::AuditSinkKind::Syslog {
                    address,
                    host,
                    tls,
                    ca_file: k
                        .ca_file
                        .as_ref()
                        .map(|c| cx.string(c, "audit.sink.ca_file").map(PathBuf::from))
                        .transpose()?,
                }
            }
            "otlp" => {
                only(k.address.is_some(), "address")?;
                only(k.tls.is_some(), "tls")?;
                only(k.ca_file.is_some(), "ca_file")?;
                let Some(u) = &k.url else {
                    return Err(cx.at(
                        &k.kind,
                        "audit.sink",
                        "an otlp sink needs `url` (e.g. https://collector:4318/v1/logs)",
                    ));
                };
                crate::AuditSinkKind::Otlp {
                    url: check_http_url(cx, u, "audit.sink.url")?,
                }
            }
            other => {
                return Err(cx.at(
                    &k.kind,
                    "audit.sink.kind",
                    format!("`{other}`: one of stdout, syslog, otlp"),
                ));
            }
        };
        Ok(crate::AuditSink {
            kind: target,
            format: k.format.unwrap_or_default(),
        })
    }

    pub(super) fn build_audit(
        &self,
        cx: &Ctx<'_, impl Env>,
        data_dir: &std::path::Path,
    ) -> Result<crate::Audit, ConfigError> {
        let d = RawAudit::default();
        let a = self.audit.as_ref().unwrap_or(&d);
        let path = |v: Option<&Spanned<String>>, key: &str, default: &str| match v {
            Some(v) => {
                let s = cx.string(v, key)?;
                if s.trim().is_empty() {
                    return Err(cx.at(v, key, "must not be empty"));
                }
                Ok(PathBuf::from(s))
            }
            None => Ok(data_dir.join(default)),
        };
        let fsync = match &a.fsync {
            None => crate::AuditFsync::Interval(Duration::from_secs(1)),
            Some(v) => match cx.string(v, "audit.fsync")?.trim() {
                "always" => crate::AuditFsync::Always,
                "never" => crate::AuditFsync::Never,
                _ => crate::AuditFsync::Interval(
                    cx.duration(
                        Some(v),
                        "audit.fsync",
                        Duration::from_secs(1),
                        Duration::from_secs(60),
                    )
                    .map_err(|_| {
                        cx.at(
                            v,
                            "audit.fsync",
                            "one of \"always\", \"never\", or an interval like \"1s\"",
                        )
                    })?,
                ),
            },
        };
        let mut include_arguments = Vec::new();
        for g in &a.include_arguments {
            let v = cx.string(g, "audit.include_arguments")?;
            if v.is_empty() || v.len() > 300 || v.contains(char::is_whitespace) {
                return Err(cx.at(
                    g,
                    "audit.include_arguments",
                    format!("`{v}` is not a tool name or a glob like files__read_*"),
                ));
            }
            include_arguments.push(v);
        }
        let mut sinks = Vec::new();
        for k in &a.sinks {
            sinks.push(self.build_sink(cx, k)?);
        }
        Ok(crate::Audit {
            sinks,
            path: path(a.path.as_ref(), "audit.path", "audit.jsonl")?,
            signing_key: path(
                a.signing_key.as_ref(),
                "audit.signing_key",
                "audit-signing.key",
            )?,
            hash_key: path(a.hash_key.as_ref(), "audit.hash_key", "audit-hash.key")?,
            fsync,
            checkpoint_every: cx.count(
                a.checkpoint_every.as_ref(),
                "audit.checkpoint_every",
                1000,
                1_000_000,
            )? as u64,
            checkpoint_interval: cx.duration(
                a.checkpoint_interval.as_ref(),
                "audit.checkpoint_interval",
                Duration::from_secs(60),
                Duration::from_secs(24 * 3600),
            )?,
            max_file_bytes: cx.count(
                a.max_file_bytes.as_ref(),
                "audit.max_file_bytes",
                100 * MIB,
                1 << 40,
            )? as u64,
            keep_files: match &a.keep_files {
                Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
                None => 10,
            },
            on_failure: a.on_failure.unwrap_or_default(),
            include_arguments,
        })
    }
}
