//! Stage 2 for one `[[upstream]]` table: name, transport, timeouts, scopes, the
//! gateway's credential for it, inspection, argument checks and pinning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Ctx, RESERVED_HEADERS, RawActions, RawConfig, RawTransport, check_http_url, is_loopback_host,
    url_scheme_host,
};
use crate::{ConfigError, Env, HttpSpec, Limits, StdioSpec, Transport, Upstream};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    secret: Spanned<String>,
    #[serde(default)]
    header: Option<Spanned<String>>,
    #[serde(default)]
    prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientCredentials {
    token_endpoint: Spanned<String>,
    client_id: Spanned<String>,
    client_secret: Spanned<String>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenExchange {
    token_endpoint: Spanned<String>,
    client_id: Spanned<String>,
    client_secret: Spanned<String>,
    #[serde(default)]
    audience: Option<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    name: Spanned<String>,
    transport: Spanned<RawTransport>,
    command: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    cwd: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    max_concurrent: Option<Spanned<u64>>,
    #[serde(default)]
    tool_timeouts: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    required_scopes: Vec<Spanned<String>>,
    credential: Option<RawCredential>,
    client_credentials: Option<RawClientCredentials>,
    token_exchange: Option<RawTokenExchange>,
    inspection: Option<RawActions>,
    pinning: Option<crate::PinMode>,
    argument_checks: Option<RawArgumentChecks>,
    risk: Option<Spanned<String>>,
    data_class: Option<Spanned<String>>,
    #[serde(default)]
    tools: BTreeMap<String, RawAttributes>,
    #[serde(default)]
    prompts: BTreeMap<String, RawItemAttributes>,
    #[serde(default)]
    resources: BTreeMap<String, RawItemAttributes>,
    rlimits: Option<RawRlimits>,
    sandbox: Option<RawSandbox>,
    dangerous: Option<RawUpstreamDangerous>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRlimits {
    memory: Option<Spanned<String>>,
    cpu_time: Option<Spanned<String>>,
    open_files: Option<Spanned<u64>>,
    processes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    #[serde(default)]
    read: Vec<Spanned<String>>,
    #[serde(default)]
    write: Vec<Spanned<String>>,
    network: Option<Spanned<String>>,
    #[serde(default)]
    allow_hosts: Vec<Spanned<String>>,
    syscalls: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    accept_weaker: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamDangerous {
    sandbox: Option<Spanned<String>>,
}

/// Processes and threads a sandboxed server may have when its config names no limit.
const DEFAULT_PROCESSES: u64 = 256;

/// `512MiB`, `2GiB`, `65536KiB` or a plain number of bytes.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `[upstream.prompts."glob"]`, `[upstream.resources."uri glob"]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawItemAttributes {
    risk: Option<Spanned<String>>,
    data_class: Option<Spanned<String>>,
}

/// A resource URI glob: 1–1024 bytes, no whitespace or control character.
fn is_uri_glob(g: &str) -> bool {
    !g.is_empty() && g.len() <= 1024 && !g.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAttributes {
    risk: Option<Spanned<String>>,
    data_class: Option<Spanned<String>>,
    inspection: Option<super::RawActions>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawArgumentChecks {
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    commands: Vec<Spanned<String>>,
    #[serde(default)]
    urls: Vec<Spanned<String>>,
    #[serde(default)]
    resolve_names: bool,
}

/// A tool name at the upstream, or a glob over them (`*` matches any run).
fn is_tool_glob(g: &str) -> bool {
    !g.is_empty()
        && g.len() <= 128
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'*'))
}

impl RawConfig {
    /// Validates one upstream table; `upstreams` are the ones before it.
    pub(super) fn build_upstream<E: Env>(
        &self,
        cx: &Ctx<'_, E>,
        u: &RawUpstream,
        upstreams: &[Upstream],
        limits: &Limits,
        base_actions: crate::InspectionActions,
    ) -> Result<Upstream, ConfigError> {
        let name = cx.string(&u.name, "upstream.name")?;
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(cx.at(
                &u.name,
                "upstream.name",
                format!("`{name}` must be 1-32 characters of A-Z, a-z, 0-9 and -"),
            ));
        }
        if upstreams.iter().any(|o| o.name.eq_ignore_ascii_case(&name)) {
            return Err(cx.at(&u.name, "upstream.name", format!("`{name}` is used twice")));
        }
        let key = |k: &str| format!("upstream.{name}.{k}");
        let transport = match *u.transport.get_ref() {
            RawTransport::Stdio => {
                if let Some(url) = &u.url {
                    return Err(cx.at(url, &key("url"), "not allowed with transport = \"stdio\""));
                }
                let Some(cmd) = &u.command else {
                    return Err(cx.at(
                        &u.transport,
                        &key("command"),
                        "a stdio upstream needs `command`",
                    ));
                };
                let command = cx.string(cmd, &key("command"))?;
                if command.trim().is_empty() {
                    return Err(cx.at(cmd, &key("command"), "must not be empty"));
                }
                let args = u
                    .args
                    .iter()
                    .map(|a| cx.string(a, &key("args")))
                    .collect::<Result<_, _>>()?;
                let mut env = BTreeMap::new();
                for (k, v) in &u.env {
                    let valid = !k.is_empty() && !k.contains(['=', '\0']);
                    if !valid {
                        return Err(cx.at(v, &key("env"), format!("`{k}` is not a variable name")));
                    }
                    env.insert(k.clone(), cx.string(v, &key(&format!("env.{k}")))?);
                }
                let cwd = u
                    .cwd
                    .as_ref()
                    .map(|c| cx.string(c, &key("cwd")).map(PathBuf::from))
                    .transpose()?;
                let rlimits = match &u.rlimits {
                    None => crate::StdioLimits::default(),
                    Some(r) => crate::StdioLimits {
                        memory_bytes: match &r.memory {
                            None => None,
                            Some(m) => {
                                let text = cx.string(m, &key("rlimits.memory"))?;
                                match parse_size(&text) {
                                    Some(b) if b >= 1 << 20 => Some(b),
                                    _ => {
                                        return Err(cx.at(
                                            m,
                                            &key("rlimits.memory"),
                                            format!("`{text}` is not a size of at least 1MiB, like 512MiB or 2GiB"),
                                        ));
                                    }
                                }
                            }
                        },
                        cpu_time: r
                            .cpu_time
                            .as_ref()
                            .map(|v| {
                                cx.duration(
                                    Some(v),
                                    &key("rlimits.cpu_time"),
                                    Duration::from_secs(1),
                                    Duration::from_secs(365 * 24 * 3600),
                                )
                            })
                            .transpose()?,
                        open_files: r
                            .open_files
                            .as_ref()
                            .map(|v| {
                                cx.count(Some(v), &key("rlimits.open_files"), 0, 1 << 20)
                                    .map(|n| n as u64)
                            })
                            .transpose()?,
                        processes: r
                            .processes
                            .as_ref()
                            .map(|v| {
                                cx.count(Some(v), &key("rlimits.processes"), 0, 1 << 22)
                                    .map(|n| n as u64)
                            })
                            .transpose()?,
                    },
                };
                let sandbox = cx.sandbox(u, &name)?;
                let mut rlimits = rlimits;
                if sandbox.is_some() && rlimits.processes.is_none() {
                    rlimits.processes = Some(DEFAULT_PROCESSES);
                }
                Transport::Stdio(StdioSpec {
                    command: PathBuf::from(command),
                    args,
                    env,
                    cwd,
                    rlimits,
                    sandbox,
                })
            }
            RawTransport::StreamableHttp => {
                for (present, k) in [
                    (u.command.is_some(), "command"),
                    (!u.args.is_empty(), "args"),
                    (!u.env.is_empty(), "env"),
                    (u.cwd.is_some(), "cwd"),
                    (u.rlimits.is_some(), "rlimits"),
                    (u.sandbox.is_some(), "sandbox"),
                    (u.dangerous.is_some(), "dangerous"),
                ] {
                    if present {
                        return Err(cx.at(
                            &u.transport,
                            &key(k),
                            "not allowed with transport = \"streamable-http\"",
                        ));
                    }
                }
                let Some(url_v) = &u.url else {
                    return Err(cx.at(
                        &u.transport,
                        &key("url"),
                        "a streamable-http upstream needs `url`",
                    ));
                };
                let url = cx.string(url_v, &key("url"))?;
                match url_scheme_host(&url) {
                    Some(("https", _)) => {}
                    Some(("http", host)) if is_loopback_host(host) => {}
                    Some(("http", _)) => {
                        return Err(cx.at(
                            url_v,
                            &key("url"),
                            format!(
                                "`{url}`: plain http is allowed only to loopback hosts; use https"
                            ),
                        ));
                    }
                    _ => {
                        return Err(cx.at(
                            url_v,
                            &key("url"),
                            format!("`{url}` is not an http(s) URL without credentials"),
                        ));
                    }
                }
                Transport::Http(HttpSpec { url })
            }
        };
        let request_timeout = u
            .request_timeout
            .as_ref()
            .map(|v| {
                cx.duration(
                    Some(v),
                    &key("request_timeout"),
                    limits.request_timeout,
                    limits.max_request_timeout,
                )
            })
            .transpose()?;
        let mut tool_timeouts = Vec::new();
        for (glob, v) in &u.tool_timeouts {
            if !is_tool_glob(glob) {
                return Err(cx.at(
                    v,
                    &key("tool_timeouts"),
                    format!("`{glob}` is not a tool name or a glob like search_*"),
                ));
            }
            let d = cx.duration(
                Some(v),
                &key("tool_timeouts"),
                limits.request_timeout,
                limits.max_request_timeout,
            )?;
            tool_timeouts.push((glob.clone(), d));
        }
        // The most specific (longest) pattern first, so that "search_slow" beats "search_*".
        tool_timeouts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let max_concurrent = u
            .max_concurrent
            .as_ref()
            .map(|v| cx.count(Some(v), &key("max_concurrent"), 0, 1_000_000))
            .transpose()?;
        let mut required_scopes = Vec::new();
        for sc in &u.required_scopes {
            if self.auth.is_none() {
                return Err(cx.at(sc, &key("required_scopes"), "needs an [auth] section"));
            }
            let v = cx.string(sc, &key("required_scopes"))?;
            if v.is_empty() || v.contains([' ', '"', '\\']) {
                return Err(cx.at(sc, &key("required_scopes"), format!("`{v}` is not a scope")));
            }
            required_scopes.push(v);
        }
        let credential = match &u.credential {
            None => None,
            Some(c) => {
                if !matches!(transport, Transport::Http(_)) {
                    return Err(cx.at(
                        &c.secret,
                        &key("credential"),
                        "only Streamable HTTP upstreams take a credential header",
                    ));
                }
                if self.vault.is_none() {
                    return Err(cx.at(&c.secret, &key("credential"), "needs a [vault] section"));
                }
                let secret = cx.string(&c.secret, &key("credential.secret"))?;
                let header = match &c.header {
                    Some(h) => cx
                        .string(h, &key("credential.header"))?
                        .to_ascii_lowercase(),
                    None => "authorization".to_owned(),
                };
                let valid = !header.is_empty()
                    && header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !RESERVED_HEADERS.contains(&header.as_str());
                if !valid {
                    return Err(cx.at(
                        &c.secret,
                        &key("credential.header"),
                        format!("`{header}` cannot carry a credential"),
                    ));
                }
                let prefix = match &c.prefix {
                    Some(p) => cx.string(p, &key("credential.prefix"))?,
                    None if header == "authorization" => "Bearer ".to_owned(),
                    None => String::new(),
                };
                Some(crate::Credential {
                    secret,
                    header,
                    prefix,
                })
            }
        };
        let client_credentials = match &u.client_credentials {
            None => None,
            Some(c) => {
                if !matches!(transport, Transport::Http(_)) || credential.is_some() {
                    return Err(cx.at(
                        &c.token_endpoint,
                        &key("client_credentials"),
                        "only for Streamable HTTP upstreams, and not together with `credential`",
                    ));
                }
                if self.vault.is_none() {
                    return Err(cx.at(
                        &c.client_secret,
                        &key("client_credentials"),
                        "needs a [vault] section",
                    ));
                }
                let scopes = cx.scopes(&c.scopes, &key("client_credentials.scopes"))?;
                Some(crate::ClientCredentials {
                    token_endpoint: check_http_url(
                        cx,
                        &c.token_endpoint,
                        &key("client_credentials.token_endpoint"),
                    )?,
                    client_id: cx.string(&c.client_id, &key("client_credentials.client_id"))?,
                    client_secret: cx
                        .string(&c.client_secret, &key("client_credentials.client_secret"))?,
                    scopes,
                })
            }
        };
        let token_exchange = match &u.token_exchange {
            None => None,
            Some(c) => {
                if !matches!(transport, Transport::Http(_))
                    || credential.is_some()
                    || client_credentials.is_some()
                {
                    return Err(cx.at(
                        &c.token_endpoint,
                        &key("token_exchange"),
                        "only for Streamable HTTP upstreams, and not together with \
                         `credential` or `client_credentials`",
                    ));
                }
                if self.auth.is_none() {
                    return Err(cx.at(
                        &c.token_endpoint,
                        &key("token_exchange"),
                        "needs an [auth] section: it exchanges the caller's access token",
                    ));
                }
                if self.vault.is_none() {
                    return Err(cx.at(
                        &c.client_secret,
                        &key("token_exchange"),
                        "needs a [vault] section",
                    ));
                }
                let audience = match &c.audience {
                    None => None,
                    Some(a) => {
                        let v = cx.string(a, &key("token_exchange.audience"))?;
                        if v.trim().is_empty() {
                            return Err(cx.at(
                                a,
                                &key("token_exchange.audience"),
                                "must not be empty",
                            ));
                        }
                        Some(v)
                    }
                };
                Some(crate::TokenExchange {
                    token_endpoint: check_http_url(
                        cx,
                        &c.token_endpoint,
                        &key("token_exchange.token_endpoint"),
                    )?,
                    client_id: cx.string(&c.client_id, &key("token_exchange.client_id"))?,
                    client_secret: cx
                        .string(&c.client_secret, &key("token_exchange.client_secret"))?,
                    audience,
                    scopes: cx.scopes(&c.scopes, &key("token_exchange.scopes"))?,
                })
            }
        };
        let argument_checks = match &u.argument_checks {
            None => crate::ArgumentChecks::default(),
            Some(a) => {
                let globs =
                    |list: &[Spanned<String>], key: &str| -> Result<Vec<String>, ConfigError> {
                        list.iter()
                            .map(|v| {
                                let g = cx.string(v, key)?;
                                if is_tool_glob(&g) {
                                    Ok(g)
                                } else {
                                    Err(cx.at(
                                        v,
                                        key,
                                        format!("`{g}` is not a tool name or a glob like read_*"),
                                    ))
                                }
                            })
                            .collect()
                    };
                crate::ArgumentChecks {
                    paths: globs(&a.paths, &key("argument_checks.paths"))?,
                    commands: globs(&a.commands, &key("argument_checks.commands"))?,
                    urls: globs(&a.urls, &key("argument_checks.urls"))?,
                    resolve_names: a.resolve_names,
                }
            }
        };
        let attribute =
            |v: Option<&Spanned<String>>, k: &str| -> Result<Option<String>, ConfigError> {
                let Some(v) = v else { return Ok(None) };
                let s = cx.string(v, &key(k))?;
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
                if !ok {
                    return Err(cx.at(
                        v,
                        &key(k),
                        format!("`{s}` must be 1-64 characters of A-Z, a-z, 0-9, _ - . :"),
                    ));
                }
                Ok(Some(s))
            };
        let attributes = crate::Attributes {
            risk: attribute(u.risk.as_ref(), "risk")?,
            data_class: attribute(u.data_class.as_ref(), "data_class")?,
        };
        // The attributes of one `[upstream.<what>."glob"]` table, at `at`.
        let attributes_at = |risk: Option<&Spanned<String>>,
                             class: Option<&Spanned<String>>,
                             at: &str|
         -> Result<crate::Attributes, ConfigError> {
            Ok(crate::Attributes {
                risk: attribute(risk, &format!("{at}.risk"))?,
                data_class: attribute(class, &format!("{at}.data_class"))?,
            })
        };
        let upstream_actions = u.inspection.map_or(base_actions, |a| a.over(base_actions));
        let mut tool_attributes = Vec::new();
        let mut tool_inspection = Vec::new();
        for (glob, a) in &u.tools {
            if !is_tool_glob(glob) {
                return Err(cx.at(
                    &u.name,
                    &key("tools"),
                    format!("`{glob}` is not a tool name or a glob like delete_*"),
                ));
            }
            // A table that sets only inspection actions gives the tool no attributes:
            // it must not hide a broader glob's.
            if a.risk.is_some() || a.data_class.is_some() {
                tool_attributes.push((
                    glob.clone(),
                    attributes_at(
                        a.risk.as_ref(),
                        a.data_class.as_ref(),
                        &format!("tools.{glob}"),
                    )?,
                ));
            }
            if let Some(actions) = a.inspection {
                tool_inspection.push((glob.clone(), actions.over(upstream_actions)));
            }
        }
        tool_attributes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let item_attributes = |table: &BTreeMap<String, RawItemAttributes>,
                               what: &str,
                               valid: fn(&str) -> bool,
                               shape: &str|
         -> Result<Vec<(String, crate::Attributes)>, ConfigError> {
            let mut out = Vec::new();
            for (glob, a) in table {
                if !valid(glob) {
                    return Err(cx.at(&u.name, &key(what), format!("`{glob}` is not {shape}")));
                }
                out.push((
                    glob.clone(),
                    attributes_at(
                        a.risk.as_ref(),
                        a.data_class.as_ref(),
                        &format!("{what}.{glob}"),
                    )?,
                ));
            }
            out.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
            Ok(out)
        };
        let prompt_attributes = item_attributes(
            &u.prompts,
            "prompts",
            is_tool_glob,
            "a prompt name or a glob like review_*",
        )?;
        let resource_attributes = item_attributes(
            &u.resources,
            "resources",
            is_uri_glob,
            "a URI or a glob like file:///srv/hr/*",
        )?;
        tool_inspection.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(Upstream {
            attributes,
            tool_attributes,
            prompt_attributes,
            resource_attributes,
            name,
            transport,
            request_timeout,
            max_concurrent,
            tool_timeouts,
            required_scopes,
            credential,
            client_credentials,
            token_exchange,
            inspection: upstream_actions,
            tool_inspection,
            argument_checks,
            pinning: u
                .pinning
                .or_else(|| self.pinning.as_ref().and_then(|p| p.mode))
                .unwrap_or_default(),
        })
    }
}

impl<E: Env> Ctx<'_, E> {
    /// A stdio upstream's sandbox: on unless `[upstream.dangerous] sandbox = "off"`.
    fn sandbox(
        &self,
        u: &RawUpstream,
        name: &str,
    ) -> Result<Option<Box<crate::SandboxSpec>>, ConfigError> {
        let key = |k: &str| format!("upstream.{name}.{k}");
        if let Some(d) = &u.dangerous
            && let Some(off) = &d.sandbox
        {
            let v = self.string(off, &key("dangerous.sandbox"))?;
            if v != "off" {
                return Err(self.at(off, &key("dangerous.sandbox"), "the only value is \"off\""));
            }
            if u.sandbox.is_some() {
                return Err(self.at(
                    off,
                    &key("dangerous.sandbox"),
                    "the sandbox is switched off here but configured in [upstream.sandbox]; remove one",
                ));
            }
            return Ok(None);
        }
        let default = RawSandbox::default();
        let s = u.sandbox.as_ref().unwrap_or(&default);
        let paths = |list: &[Spanned<String>], k: &str| -> Result<Vec<PathBuf>, ConfigError> {
            list.iter()
                .map(|p| {
                    let v = self.string(p, &key(k))?;
                    if !Path::new(&v).is_absolute() {
                        return Err(self.at(p, &key(k), format!("`{v}` is not an absolute path")));
                    }
                    Ok(PathBuf::from(v))
                })
                .collect()
        };
        let network = match &s.network {
            None => "none".to_owned(),
            Some(n) => self.string(n, &key("sandbox.network"))?,
        };
        let host_network = match network.as_str() {
            "none" | "proxy" => false,
            "host" => true,
            other => {
                let at = s.network.as_ref().unwrap_or(&u.name);
                return Err(self.at(
                    at,
                    &key("sandbox.network"),
                    format!("`{other}` is not \"none\", \"proxy\" or \"host\""),
                ));
            }
        };
        let mut allow_hosts = Vec::new();
        for h in &s.allow_hosts {
            let v = self.string(h, &key("sandbox.allow_hosts"))?;
            allow_hosts.push(
                crate::EgressHost::parse(&v)
                    .map_err(|e| self.at(h, &key("sandbox.allow_hosts"), e))?,
            );
        }
        if (network == "proxy") == allow_hosts.is_empty() {
            let at = s.network.as_ref().unwrap_or(&u.name);
            return Err(self.at(
                at,
                &key("sandbox.allow_hosts"),
                "`network = \"proxy\"` and a non-empty `allow_hosts` go together",
            ));
        }
        let syscalls = match &s.syscalls {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for c in list {
                    let v = self.string(c, &key("sandbox.syscalls"))?;
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(self.at(
                            c,
                            &key("sandbox.syscalls"),
                            format!("`{v}` is not a system call name"),
                        ));
                    }
                    out.push(v);
                }
                if out.is_empty() {
                    return Err(self.at(
                        &u.transport,
                        &key("sandbox.syscalls"),
                        "an empty allowlist would stop the server at once; leave it out for the deny-list alone",
                    ));
                }
                Some(out)
            }
        };
        let mut accept_weaker = Vec::new();
        for a in &s.accept_weaker {
            let v = self.string(a, &key("sandbox.accept_weaker"))?;
            if !crate::SANDBOX_MECHANISMS.contains(&v.as_str()) {
                return Err(self.at(
                    a,
                    &key("sandbox.accept_weaker"),
                    format!("`{v}` is not one of {:?}", crate::SANDBOX_MECHANISMS),
                ));
            }
            if v == "namespaces" && !host_network {
                return Err(self.at(
                    a,
                    &key("sandbox.accept_weaker"),
                    "without namespaces there is no network wall: accept their absence only with network = \"host\"",
                ));
            }
            accept_weaker.push(v);
        }
        Ok(Some(Box::new(crate::SandboxSpec {
            read: paths(&s.read, "sandbox.read")?,
            write: paths(&s.write, "sandbox.write")?,
            host_network,
            allow_hosts,
            syscalls,
            accept_weaker,
        })))
    }
}
