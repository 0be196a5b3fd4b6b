use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::{Config, ConfigError, Env, Limits, Upstream, interpolate};

mod audit;
mod upstream;

use audit::RawAudit;
use upstream::RawUpstream;

/// The configuration file as written: unknown keys are refused, strings are not yet
/// interpolated. Build a [`Config`] from it with [`RawConfig::build`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default, rename = "upstream")]
    upstreams: Vec<RawUpstream>,
    auth: Option<RawAuth>,
    vault: Option<RawVault>,
    dangerous: Option<RawDangerous>,
    inspection: Option<RawInspection>,
    pinning: Option<RawPinning>,
    audit: Option<RawAudit>,
    admin: Option<RawAdmin>,
    alerts: Option<RawAlerts>,
    policy: Option<RawPolicy>,
    tracing: Option<RawTracing>,
    #[serde(skip)]
    origin: String,
    #[serde(skip)]
    text: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    listen: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    data_dir: Option<Spanned<String>>,
    #[serde(default)]
    allowed_origins: Vec<Spanned<String>>,
    #[serde(default)]
    allowed_hosts: Vec<Spanned<String>>,
    namespace: Option<Spanned<bool>>,
    workers: Option<Spanned<u64>>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
    reload_interval: Option<Spanned<String>>,
}

/// Settings that weaken a protection; each one is named for what it gives up.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDangerous {
    #[serde(default)]
    plaintext_listener: Option<Spanned<bool>>,
    #[serde(default)]
    no_audit_log: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracing {
    otlp_url: Spanned<String>,
    sample_ratio: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    file: Spanned<String>,
    reload_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    webhook: Spanned<String>,
    secret: Spanned<String>,
    auth_failures: Option<Spanned<u64>>,
    auth_window: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_request_bytes: Option<Spanned<u64>>,
    max_response_bytes: Option<Spanned<u64>>,
    max_sessions: Option<Spanned<u64>>,
    request_timeout: Option<Spanned<String>>,
    max_request_timeout: Option<Spanned<String>>,
    session_idle_timeout: Option<Spanned<String>>,
    session_max_lifetime: Option<Spanned<String>>,
    replay_buffer_events: Option<Spanned<u64>>,
    upstream_queue: Option<Spanned<u64>>,
    max_in_flight_per_session: Option<Spanned<u64>>,
    sampling_tool_rounds: Option<Spanned<u64>>,
    shutdown_grace: Option<Spanned<String>>,
    max_concurrent_per_principal: Option<Spanned<u64>>,
    max_sessions_per_principal: Option<Spanned<u64>>,
    rate: Option<RawRate>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRate {
    global: Option<Spanned<String>>,
    per_principal: Option<Spanned<String>>,
    per_tool: Option<Spanned<String>>,
    per_client: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    key_file: Option<Spanned<String>>,
    key_env: Option<Spanned<String>>,
    #[serde(default)]
    previous_key_files: Vec<Spanned<String>>,
}

/// Headers the gateway sets itself on upstream requests; a credential cannot replace them.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    public_url: Spanned<String>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
    leeway: Option<Spanned<String>>,
    claims: Option<Spanned<String>>,
    #[serde(default)]
    roles_claims: Vec<Spanned<String>>,
    #[serde(default)]
    groups_claims: Vec<Spanned<String>>,
    #[serde(default, rename = "issuer")]
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: Spanned<String>,
    jwks_uri: Option<Spanned<String>>,
    require_at_jwt: Option<bool>,
    introspection_endpoint: Option<Spanned<String>>,
    introspection_client_id: Option<Spanned<String>>,
    introspection_client_secret: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawTransport {
    Stdio,
    StreamableHttp,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPinning {
    mode: Option<crate::PinMode>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInspection {
    enabled: Option<bool>,
    rules: Option<Spanned<String>>,
    external: Option<RawExternal>,
    #[serde(flatten)]
    actions: RawActions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExternal {
    kind: crate::ExternalKind,
    url: Spanned<String>,
    secret: Option<Spanned<String>>,
    header: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    on_error: crate::OnExternalError,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawActions {
    injection: Option<crate::OnInjection>,
    secrets: Option<crate::OnData>,
    pii: Option<crate::OnData>,
    hidden: Option<crate::OnHidden>,
    tools: Option<crate::OnTool>,
    output_schema: Option<crate::OnOutputSchema>,
}

impl RawActions {
    fn over(self, base: crate::InspectionActions) -> crate::InspectionActions {
        crate::InspectionActions {
            injection: self.injection.unwrap_or(base.injection),
            secrets: self.secrets.unwrap_or(base.secrets),
            pii: self.pii.unwrap_or(base.pii),
            hidden: self.hidden.unwrap_or(base.hidden),
            tools: self.tools.unwrap_or(base.tools),
            output_schema: self.output_schema.unwrap_or(base.output_schema),
        }
    }
}

/// Context for building: where we are, to name lines in errors.
struct Ctx<'a, E> {
    origin: &'a str,
    text: &'a str,
    env: &'a E,
}

impl<E: Env> Ctx<'_, E> {
    fn at<T>(&self, v: &Spanned<T>, key: &str, msg: impl std::fmt::Display) -> ConfigError {
        let line = self.text[..v.span().start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        ConfigError::new(
            &format!("{}:{line}", self.origin),
            format!("`{key}`: {msg}"),
        )
    }

    /// OAuth scope tokens: non-empty, no spaces or quotes.
    fn scopes(&self, list: &[Spanned<String>], key: &str) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for sc in list {
            let v = self.string(sc, key)?;
            if v.is_empty() || v.contains([' ', '"', '\\']) {
                return Err(self.at(sc, key, format!("`{v}` is not a scope")));
            }
            out.push(v);
        }
        Ok(out)
    }

    fn string(&self, v: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        interpolate(v.get_ref(), self.env).map_err(|e| self.at(v, key, e))
    }

    fn duration(
        &self,
        v: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let s = self.string(v, key)?;
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            self.at(
                v,
                key,
                format!("not a duration like \"30s\" or \"5m\": {e}"),
            )
        })?;
        if d.is_zero() || d > max {
            return Err(self.at(v, key, format!("must be between 1ms and {max:?}")));
        }
        Ok(d)
    }

    /// A rate like `"100/s"`, `"600/m"` or `"5000/h"`.
    fn rate(
        &self,
        v: Option<&Spanned<String>>,
        key: &str,
    ) -> Result<Option<crate::Rate>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        let s = self.string(v, key)?;
        let parsed = s.trim().split_once('/').and_then(|(n, unit)| {
            let count: u32 = n.trim().parse().ok().filter(|&n| n > 0 && n <= 1_000_000)?;
            let period = match unit.trim() {
                "s" => Duration::from_secs(1),
                "m" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                _ => return None,
            };
            Some(crate::Rate { count, period })
        });
        parsed.map(Some).ok_or_else(|| {
            self.at(
                v,
                key,
                format!("`{s}` is not a rate like \"100/s\", \"600/m\" or \"5000/h\""),
            )
        })
    }

    fn count(
        &self,
        v: Option<&Spanned<u64>>,
        key: &str,
        default: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = usize::try_from(*v.get_ref()).unwrap_or(usize::MAX);
        if n == 0 || n > max {
            return Err(self.at(v, key, format!("must be between 1 and {max}")));
        }
        Ok(n)
    }
}

const KIB: usize = 1024;
/// Sessions one principal may hold when `[auth]` is on and the operator set no bound:
/// far more than any client opens, far fewer than `max_sessions`.
const DEFAULT_SESSIONS_PER_PRINCIPAL: usize = 100;
/// More serving threads than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;
const MIB: usize = 1024 * KIB;

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn normalise_origin(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let (scheme, rest) = s.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '@'])
    {
        return None;
    }
    Some(format!("{scheme}://{rest}"))
}

/// Splits `http[s]://host[:port]/…` into (scheme, host).
fn url_scheme_host(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        &authority[..v6.find(']')? + 2]
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    Some((scheme, host))
}

/// https anywhere, http only to a loopback host; no credentials in the URL.
fn check_http_url<E: Env>(
    cx: &Ctx<'_, E>,
    v: &Spanned<String>,
    key: &str,
) -> Result<String, ConfigError> {
    let url = cx.string(v, key)?;
    match url_scheme_host(&url) {
        Some(("https", _)) => Ok(url),
        Some(("http", host)) if is_loopback_host(host) => Ok(url),
        Some(("http", _)) => Err(cx.at(
            v,
            key,
            format!("`{url}`: plain http is allowed only to loopback hosts; use https"),
        )),
        _ => Err(cx.at(
            v,
            key,
            format!("`{url}` is not an http(s) URL without credentials"),
        )),
    }
}

impl RawConfig {
    /// Stage 1: parses TOML text read from `origin` (a path, for messages). Unknown
    /// keys and type errors name the file, line and key.
    pub fn parse(origin: &str, text: &str) -> Result<Self, ConfigError> {
        let mut raw: Self =
            toml::from_str(text).map_err(|e| ConfigError::new(origin, e.to_string()))?;
        raw.origin = origin.to_owned();
        raw.text = text.to_owned();
        Ok(raw)
    }

    /// Stage 2: interpolates and validates into a [`Config`].
    pub fn build(&self, env: &impl Env) -> Result<Config, ConfigError> {
        let cx = Ctx {
            origin: &self.origin,
            text: &self.text,
            env,
        };
        let g = &self.gateway;

        let listen = match &g.listen {
            Some(v) => {
                let s = cx.string(v, "gateway.listen")?;
                let addr: SocketAddr = s.trim().parse().map_err(|_| {
                    cx.at(
                        v,
                        "gateway.listen",
                        format!("`{s}` is not an address like 127.0.0.1:8787"),
                    )
                })?;
                addr
            }
            None => SocketAddr::from(([127, 0, 0, 1], 8787)),
        };

        let endpoint = match &g.endpoint {
            Some(v) => {
                let s = cx.string(v, "gateway.endpoint")?;
                let ok = s.starts_with('/')
                    && s.len() > 1
                    && !s.contains(['?', '#', ' '])
                    && !s.starts_with("/.well-known")
                    && s != "/healthz";
                if !ok {
                    return Err(cx.at(v, "gateway.endpoint", "must be a path like /mcp"));
                }
                s.trim_end_matches('/').to_owned()
            }
            None => "/mcp".to_owned(),
        };

        let data_dir = match &g.data_dir {
            Some(v) => {
                let s = cx.string(v, "gateway.data_dir")?;
                if s.trim().is_empty() {
                    return Err(cx.at(v, "gateway.data_dir", "must not be empty"));
                }
                PathBuf::from(s)
            }
            None => PathBuf::from(".palisade"),
        };

        let mut allowed_origins = Vec::new();
        for v in &g.allowed_origins {
            let s = cx.string(v, "gateway.allowed_origins")?;
            let o = normalise_origin(&s).ok_or_else(|| {
                cx.at(
                    v,
                    "gateway.allowed_origins",
                    format!("`{s}` is not an origin like https://app.example.com"),
                )
            })?;
            allowed_origins.push(o);
        }
        let mut allowed_hosts = Vec::new();
        for v in &g.allowed_hosts {
            let s = cx.string(v, "gateway.allowed_hosts")?.to_ascii_lowercase();
            if s.is_empty() || s.contains(['/', '@', ' ']) {
                return Err(cx.at(v, "gateway.allowed_hosts", format!("`{s}` is not a host")));
            }
            allowed_hosts.push(s);
        }

        let l = &self.limits;
        let max_request_timeout = cx.duration(
            l.max_request_timeout.as_ref(),
            "limits.max_request_timeout",
            Duration::from_secs(600),
            Duration::from_secs(24 * 3600),
        )?;
        let limits = Limits {
            max_request_bytes: cx.count(
                l.max_request_bytes.as_ref(),
                "limits.max_request_bytes",
                4 * MIB,
                256 * MIB,
            )?,
            max_response_bytes: cx.count(
                l.max_response_bytes.as_ref(),
                "limits.max_response_bytes",
                16 * MIB,
                256 * MIB,
            )?,
            max_sessions: cx.count(
                l.max_sessions.as_ref(),
                "limits.max_sessions",
                10_000,
                1_000_000,
            )?,
            request_timeout: cx.duration(
                l.request_timeout.as_ref(),
                "limits.request_timeout",
                Duration::from_secs(120),
                max_request_timeout,
            )?,
            max_request_timeout,
            session_idle_timeout: cx.duration(
                l.session_idle_timeout.as_ref(),
                "limits.session_idle_timeout",
                Duration::from_secs(30 * 60),
                Duration::from_secs(7 * 24 * 3600),
            )?,
            session_max_lifetime: cx.duration(
                l.session_max_lifetime.as_ref(),
                "limits.session_max_lifetime",
                Duration::from_secs(24 * 3600),
                Duration::from_secs(30 * 24 * 3600),
            )?,
            replay_buffer_events: cx.count(
                l.replay_buffer_events.as_ref(),
                "limits.replay_buffer_events",
                256,
                65_536,
            )?,
            upstream_queue: cx.count(
                l.upstream_queue.as_ref(),
                "limits.upstream_queue",
                256,
                65_536,
            )?,
            max_in_flight_per_session: cx.count(
                l.max_in_flight_per_session.as_ref(),
                "limits.max_in_flight_per_session",
                64,
                65_536,
            )?,
            sampling_tool_rounds: cx.count(
                l.sampling_tool_rounds.as_ref(),
                "limits.sampling_tool_rounds",
                32,
                10_000,
            )?,
            shutdown_grace: cx.duration(
                l.shutdown_grace.as_ref(),
                "limits.shutdown_grace",
                Duration::from_secs(10),
                Duration::from_secs(600),
            )?,
            rate: {
                let r = l.rate.as_ref();
                crate::RateLimits {
                    global: cx.rate(r.and_then(|r| r.global.as_ref()), "limits.rate.global")?,
                    per_principal: cx.rate(
                        r.and_then(|r| r.per_principal.as_ref()),
                        "limits.rate.per_principal",
                    )?,
                    per_tool: cx
                        .rate(r.and_then(|r| r.per_tool.as_ref()), "limits.rate.per_tool")?,
                    per_client: cx.rate(
                        r.and_then(|r| r.per_client.as_ref()),
                        "limits.rate.per_client",
                    )?,
                }
            },
            max_concurrent_per_principal: l
                .max_concurrent_per_principal
                .as_ref()
                .map(|v| cx.count(Some(v), "limits.max_concurrent_per_principal", 0, 1_000_000))
                .transpose()?,
            // With `[auth]`, one caller may not hold every session; without it every
            // session is the local user's, and `max_sessions` alone bounds them.
            max_sessions_per_principal: match &l.max_sessions_per_principal {
                Some(v) => {
                    Some(cx.count(Some(v), "limits.max_sessions_per_principal", 0, 1_000_000)?)
                }
                None if self.auth.is_some() => Some(DEFAULT_SESSIONS_PER_PRINCIPAL),
                None => None,
            },
        };

        let raw_inspection = self.inspection.as_ref();
        let base_actions = raw_inspection.map_or(crate::InspectionActions::default(), |i| {
            i.actions.over(crate::InspectionActions::default())
        });
        let inspection = crate::Inspection {
            enabled: raw_inspection.and_then(|i| i.enabled).unwrap_or(true),
            rules: match raw_inspection.and_then(|i| i.rules.as_ref()) {
                None => None,
                Some(r) => Some(PathBuf::from(cx.string(r, "inspection.rules")?)),
            },
            actions: base_actions,
            external: match raw_inspection.and_then(|i| i.external.as_ref()) {
                None => None,
                Some(e) => {
                    if e.secret.is_some() && self.vault.is_none() {
                        return Err(cx.at(
                            &e.url,
                            "inspection.external",
                            "a secret needs a [vault] section",
                        ));
                    }
                    let header = match &e.header {
                        Some(h) => cx
                            .string(h, "inspection.external.header")?
                            .to_ascii_lowercase(),
                        None => match e.kind {
                            crate::ExternalKind::PromptShields => {
                                "ocp-apim-subscription-key".to_owned()
                            }
                            crate::ExternalKind::Webhook => "authorization".to_owned(),
                        },
                    };
                    if header.is_empty()
                        || !header
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        || RESERVED_HEADERS.contains(&header.as_str())
                    {
                        return Err(ConfigError::new(
                            cx.origin,
                            format!("inspection.external.header: `{header}` cannot carry a key"),
                        ));
                    }
                    Some(crate::External {
                        kind: e.kind,
                        url: check_http_url(&cx, &e.url, "inspection.external.url")?,
                        secret: e
                            .secret
                            .as_ref()
                            .map(|v| cx.string(v, "inspection.external.secret"))
                            .transpose()?,
                        header,
                        timeout: cx.duration(
                            e.timeout.as_ref(),
                            "inspection.external.timeout",
                            Duration::from_secs(2),
                            Duration::from_secs(30),
                        )?,
                        on_error: e.on_error,
                    })
                }
            },
        };
        let mut upstreams: Vec<Upstream> = Vec::new();
        for u in &self.upstreams {
            let built = self.build_upstream(&cx, u, &upstreams, &limits, base_actions)?;
            upstreams.push(built);
        }
        if upstreams.is_empty() {
            return Err(ConfigError::new(
                &self.origin,
                "no upstreams: add at least one [[upstream]] table",
            ));
        }
        let auth = match &self.auth {
            None => None,
            Some(a) => {
                let public_url = check_http_url(&cx, &a.public_url, "auth.public_url")?
                    .trim_end_matches('/')
                    .to_owned();
                if public_url
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.contains(['/', '?', '#']))
                {
                    return Err(cx.at(
                        &a.public_url,
                        "auth.public_url",
                        "must be scheme://host[:port] without a path",
                    ));
                }
                let mut scopes = Vec::new();
                for s in &a.scopes {
                    let v = cx.string(s, "auth.scopes")?;
                    let bad = v.is_empty()
                        || v.contains([' ', '"', '\\'])
                        || ["*", "all", "full-access", "full_access"]
                            .contains(&v.to_ascii_lowercase().as_str());
                    if bad {
                        return Err(cx.at(
                            s,
                            "auth.scopes",
                            format!("`{v}` is not a minimal scope (AUTH-04)"),
                        ));
                    }
                    scopes.push(v);
                }
                let leeway = cx.duration(
                    a.leeway.as_ref(),
                    "auth.leeway",
                    Duration::from_secs(30),
                    Duration::from_secs(300),
                )?;
                let claims_preset = match &a.claims {
                    Some(v) => {
                        let p = cx.string(v, "auth.claims")?;
                        let ok = matches!(p.as_str(), "none" | "entra-id" | "keycloak" | "okta")
                            || p.strip_prefix("auth0:")
                                .is_some_and(|ns| ns.starts_with("https://"));
                        if !ok {
                            return Err(cx.at(
                                v,
                                "auth.claims",
                                "one of none, entra-id, keycloak, okta, auth0:<https namespace>",
                            ));
                        }
                        p
                    }
                    None => "none".to_owned(),
                };
                let roles_claims = a
                    .roles_claims
                    .iter()
                    .map(|v| cx.string(v, "auth.roles_claims"))
                    .collect::<Result<_, _>>()?;
                let groups_claims = a
                    .groups_claims
                    .iter()
                    .map(|v| cx.string(v, "auth.groups_claims"))
                    .collect::<Result<_, _>>()?;
                let mut issuers = Vec::new();
                for i in &a.issuers {
                    let issuer = check_http_url(&cx, &i.issuer, "auth.issuer.issuer")?;
                    let jwks_uri = i
                        .jwks_uri
                        .as_ref()
                        .map(|j| check_http_url(&cx, j, "auth.issuer.jwks_uri"))
                        .transpose()?;
                    let introspection = match (
                        &i.introspection_endpoint,
                        &i.introspection_client_id,
                        &i.introspection_client_secret,
                    ) {
                        (None, None, None) => None,
                        (Some(e), Some(id), Some(secret)) => Some(crate::Introspection {
                            endpoint: check_http_url(&cx, e, "auth.issuer.introspection_endpoint")?,
                            client_id: cx.string(id, "auth.issuer.introspection_client_id")?,
                            client_secret: cx
                                .string(secret, "auth.issuer.introspection_client_secret")?,
                        }),
                        _ => {
                            return Err(cx.at(
                                &i.issuer,
                                "auth.issuer",
                                "introspection needs introspection_endpoint, introspection_client_id and introspection_client_secret",
                            ));
                        }
                    };
                    issuers.push(crate::AuthIssuer {
                        issuer,
                        jwks_uri,
                        require_at_jwt: i.require_at_jwt.unwrap_or(true),
                        introspection,
                    });
                }
                if issuers.iter().filter(|i| i.introspection.is_some()).count() > 1 {
                    // An opaque token names no issuer: sending it to several would
                    // leak it to servers that did not issue it.
                    return Err(cx.at(
                        &a.public_url,
                        "auth.issuer",
                        "at most one issuer may use introspection",
                    ));
                }
                if issuers.is_empty() {
                    return Err(cx.at(
                        &a.public_url,
                        "auth.issuer",
                        "add at least one [[auth.issuer]]",
                    ));
                }
                Some(crate::Auth {
                    public_url,
                    scopes,
                    leeway,
                    claims_preset,
                    roles_claims,
                    groups_claims,
                    issuers,
                })
            }
        };

        let vault = match &self.vault {
            None => None,
            Some(v) => Some(crate::VaultKeys {
                current: match (&v.key_file, &v.key_env) {
                    (Some(f), None) => {
                        crate::KeySource::File(PathBuf::from(cx.string(f, "vault.key_file")?))
                    }
                    (None, Some(e)) => {
                        let name = cx.string(e, "vault.key_env")?;
                        let ok = name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
                            && name
                                .bytes()
                                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                        if !ok {
                            return Err(cx.at(
                                e,
                                "vault.key_env",
                                format!("`{name}` is not an environment variable name like PALISADE_VAULT_KEY"),
                            ));
                        }
                        crate::KeySource::Env(name)
                    }
                    _ => {
                        return Err(ConfigError::new(
                            cx.origin,
                            "[vault] needs exactly one of `key_file` and `key_env`",
                        ));
                    }
                },
                previous_key_files: v
                    .previous_key_files
                    .iter()
                    .map(|p| cx.string(p, "vault.previous_key_files").map(PathBuf::from))
                    .collect::<Result<_, _>>()?,
            }),
        };

        let tls = match &g.tls {
            None => None,
            Some(t) => {
                let path = |v: &Spanned<String>, key: &str| -> Result<PathBuf, ConfigError> {
                    let s = cx.string(v, key)?;
                    if s.trim().is_empty() {
                        return Err(cx.at(v, key, "must name a PEM file"));
                    }
                    Ok(PathBuf::from(s))
                };
                Some(crate::Tls {
                    cert: path(&t.cert, "gateway.tls.cert")?,
                    key: path(&t.key, "gateway.tls.key")?,
                    reload_interval: cx.duration(
                        t.reload_interval.as_ref(),
                        "gateway.tls.reload_interval",
                        Duration::from_secs(30),
                        Duration::from_secs(24 * 3600),
                    )?,
                })
            }
        };
        let plaintext_listener = self
            .dangerous
            .as_ref()
            .and_then(|d| d.plaintext_listener.as_ref());
        // Architecture Invariant: authentication may be off only on a loopback bind,
        // and a listener reachable from other machines speaks TLS unless the operator
        // says, in [dangerous], that a TLS-terminating proxy stands in front (TR-04).
        if !listen.ip().is_loopback() {
            let at = |msg: String| match &g.listen {
                Some(v) => cx.at(v, "gateway.listen", msg),
                None => ConfigError::new(cx.origin, msg),
            };
            if auth.is_none() {
                return Err(at(format!(
                    "`{listen}` is not a loopback address; authentication may be off only on \
                     127.0.0.1 or [::1] (add an [auth] section)"
                )));
            }
            if tls.is_none() && !plaintext_listener.is_some_and(|v| *v.get_ref()) {
                return Err(at(format!(
                    "`{listen}` is not a loopback address and [gateway.tls] is not set; tokens \
                     would cross the network in clear (set [gateway.tls], or \
                     [dangerous] plaintext_listener = true behind a TLS-terminating proxy)"
                )));
            }
        }
        let dangerous = crate::Dangerous {
            plaintext_listener: plaintext_listener.is_some_and(|v| *v.get_ref())
                && !listen.ip().is_loopback()
                && tls.is_none(),
        };

        let namespace = match &g.namespace {
            Some(v) if !*v.get_ref() && upstreams.len() > 1 => {
                return Err(cx.at(
                    v,
                    "gateway.namespace",
                    "may be false only with a single upstream, so that no upstream can shadow another's tools",
                ));
            }
            Some(v) => *v.get_ref(),
            None => true,
        };

        let workers = match &g.workers {
            None => None,
            Some(v) => Some(cx.count(Some(v), "gateway.workers", 1, MAX_WORKERS)?),
        };

        let no_audit = self
            .dangerous
            .as_ref()
            .and_then(|d| d.no_audit_log.as_ref())
            .is_some_and(|v| *v.get_ref());
        let audit = if no_audit {
            if self.audit.is_some() {
                return Err(ConfigError::new(
                    cx.origin,
                    "[audit] is set but [dangerous] no_audit_log = true switches it off; remove one",
                ));
            }
            None
        } else {
            Some(self.build_audit(&cx, &data_dir)?)
        };

        let admin = match &self.admin {
            None => None,
            Some(a) => {
                let s = cx.string(&a.listen, "admin.listen")?;
                let addr: SocketAddr = s.trim().parse().map_err(|_| {
                    cx.at(
                        &a.listen,
                        "admin.listen",
                        format!("`{s}` is not an address like 127.0.0.1:9464"),
                    )
                })?;
                if !addr.ip().is_loopback() {
                    return Err(cx.at(
                        &a.listen,
                        "admin.listen",
                        "the admin listener has no authentication of its own: bind it to a loopback address",
                    ));
                }
                if addr == listen && addr.port() != 0 {
                    return Err(cx.at(
                        &a.listen,
                        "admin.listen",
                        "must differ from gateway.listen",
                    ));
                }
                Some(crate::Admin { listen: addr })
            }
        };

        let alerts = match &self.alerts {
            None => None,
            Some(a) => {
                if self.vault.is_none() {
                    return Err(cx.at(
                        &a.secret,
                        "alerts.secret",
                        "the signing secret lives in the vault: add a [vault] section",
                    ));
                }
                Some(crate::Alerts {
                    webhook: check_http_url(&cx, &a.webhook, "alerts.webhook")?,
                    secret: cx.string(&a.secret, "alerts.secret")?,
                    auth_failures: cx.count(
                        a.auth_failures.as_ref(),
                        "alerts.auth_failures",
                        10,
                        1_000_000,
                    )?,
                    auth_window: cx.duration(
                        a.auth_window.as_ref(),
                        "alerts.auth_window",
                        Duration::from_secs(60),
                        Duration::from_secs(24 * 3600),
                    )?,
                })
            }
        };

        let policy = match &self.policy {
            None if auth.is_some() => {
                return Err(ConfigError::new(
                    cx.origin,
                    "[auth] needs a [policy] file: without one a remote gateway would either \
                     allow every authenticated caller everything or deny everything (see \
                     examples/policies/)",
                ));
            }
            None => None,
            Some(p) => {
                let file = cx.string(&p.file, "policy.file")?;
                if file.trim().is_empty() {
                    return Err(cx.at(&p.file, "policy.file", "is empty"));
                }
                Some(crate::Policy {
                    file: PathBuf::from(file),
                    reload_interval: cx.duration(
                        p.reload_interval.as_ref(),
                        "policy.reload_interval",
                        Duration::from_secs(2),
                        Duration::from_secs(3600),
                    )?,
                })
            }
        };

        let tracing = match &self.tracing {
            None => None,
            Some(t) => {
                if let Some(v) = &t.sample_ratio
                    && !(0.0..=1.0).contains(v.get_ref())
                {
                    return Err(cx.at(v, "tracing.sample_ratio", "must be between 0 and 1"));
                }
                let sample_ratio = t.sample_ratio.as_ref().map_or(1.0, |v| *v.get_ref());
                Some(crate::Tracing {
                    otlp_url: check_http_url(&cx, &t.otlp_url, "tracing.otlp_url")?,
                    sample_ratio,
                })
            }
        };

        Ok(Config {
            tracing,
            policy,
            alerts,
            admin,
            listen,
            endpoint,
            data_dir,
            allowed_origins,
            allowed_hosts,
            namespace,
            workers,
            limits,
            upstreams,
            auth,
            vault,
            tls,
            dangerous,
            inspection,
            audit,
            source_sha256: String::new(),
        })
    }
}
