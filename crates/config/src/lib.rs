//! Palisade configuration, in two stages (as ripgrep's low/high args):
//!
//! 1. [`RawConfig`]: the TOML file as written, deserialised with unknown keys refused
//!    (the error names the file, line and key). Strings still hold `${VAR}` text.
//! 2. [`Config`]: built from the raw config and an injected environment lookup; every
//!    string is interpolated, every value validated, and the invariants below hold by
//!    construction. Nothing starts until this stage succeeds.
//!
//! Invariants of a [`Config`]:
//! - the listener is on a loopback address, since no authentication is configured
//!   (authentication may be off only on a loopback bind);
//! - upstream names are unique and cannot contain the namespace separator `__`;
//! - namespacing is off only with exactly one upstream (FEAT-03);
//! - every limit is positive and bounded.
//!
//! This crate is pure: it reads no files and no process environment itself.

#![forbid(unsafe_code)]

mod egress;
mod interpolate;
mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use egress::EgressHost;
pub use interpolate::{InterpolationError, interpolate};
pub use raw::RawConfig;

/// An environment lookup, injected so that tests never touch the process environment.
pub trait Env: Fn(&str) -> Option<String> {}
impl<F: Fn(&str) -> Option<String>> Env for F {}

/// A configuration that cannot be used; the message names where and why.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    origin: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(origin: &str, message: impl Into<String>) -> Self {
        Self {
            origin: origin.to_owned(),
            message: message.into(),
        }
    }
}

/// The validated configuration of one gateway.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address the gateway listens on: loopback, or any address with
    /// authentication and TLS (or `dangerous.plaintext_listener`).
    pub listen: SocketAddr,
    /// The MCP endpoint path, e.g. `/mcp`.
    pub endpoint: String,
    /// Where the gateway keeps its state.
    pub data_dir: PathBuf,
    /// Origins allowed to call the gateway (TR-02), normalised to
    /// `scheme://host[:port]` in lower case. Requests without `Origin` are allowed.
    pub allowed_origins: Vec<String>,
    /// `Host` values allowed besides the loopback names (TR-03), lower case.
    pub allowed_hosts: Vec<String>,
    /// Whether tool and prompt names are namespaced `<upstream>__<name>` (FEAT-03).
    pub namespace: bool,
    /// Serving threads, each a single-threaded runtime accepting from the listening
    /// socket; `None` means one per available core.
    pub workers: Option<usize>,
    /// Bounds on bodies, queues, sessions and time.
    pub limits: Limits,
    /// The upstream MCP servers, in configuration order.
    pub upstreams: Vec<Upstream>,
    /// The OAuth 2.1 resource server; `None` means authentication is off, which is
    /// allowed only on a loopback bind.
    pub auth: Option<Auth>,
    /// The credential vault's keys, if configured.
    pub vault: Option<VaultKeys>,
    /// The TLS listener's certificate and key; `None` serves plain HTTP.
    pub tls: Option<Tls>,
    /// Protections the operator switched off, by name.
    pub dangerous: Dangerous,
    /// Inspection of upstream answers and tool definitions.
    pub inspection: Inspection,
    /// The audit log; `None` only with `[dangerous] no_audit_log = true`.
    pub audit: Option<Audit>,
    /// SHA-256 of the configuration text, hex (recorded when the gateway starts).
    pub source_sha256: String,
    /// The admin listener (`/metrics`), if configured.
    pub admin: Option<Admin>,
    /// Alerts to a webhook, if configured.
    pub alerts: Option<Alerts>,
    /// OpenTelemetry traces, if configured.
    pub tracing: Option<Tracing>,
    /// Where the Cedar policies come from. `None` only without `[auth]`: the gateway
    /// then permits the local user everything (see [`Policy`]).
    pub policy: Option<Policy>,
}

/// OpenTelemetry traces: a span per client request and per upstream request, W3C
/// Trace Context propagated from the client through the gateway to HTTP upstreams,
/// exported by OTLP/HTTP (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// The collector's traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_url: String,
    /// The share of requests without a sampled parent that are traced (0 to 1); a
    /// parent's decision is followed.
    pub sample_ratio: f64,
}

/// The Cedar policy file that decides who may list and use what (AUTH-20, FEAT-06).
/// Required with `[auth]`; without it (local mode) the embedded default permits the
/// local user everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The policy file (Cedar syntax), read at start and re-read when it changes.
    pub file: PathBuf,
    /// How often the file is checked for changes (SIGHUP re-reads it at once).
    pub reload_interval: Duration,
}

/// Operator-set attributes of an upstream or tool, seen by policies as `risk` and
/// `data_class`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// E.g. `normal` (the default), `high`.
    pub risk: Option<String>,
    /// E.g. `unclassified` (the default), `internal`, `restricted`.
    pub data_class: Option<String>,
}

impl Upstream {
    /// The `risk` and `data_class` policies see for `item` of this upstream: each from
    /// the first `[upstream.tools|prompts|resources."glob"]` entry that matches it,
    /// else the upstream's, else `normal` and `unclassified`. The gateway and
    /// `palisade policy test --config` both ask this.
    pub fn attributes_for(&self, item: Item<'_>) -> (&str, &str) {
        let mut risk = self.attributes.risk.as_deref().unwrap_or("normal");
        let mut class = self
            .attributes
            .data_class
            .as_deref()
            .unwrap_or("unclassified");
        let (table, name) = match item {
            Item::Upstream => (&[][..], ""),
            Item::Tool(n) => (&self.tool_attributes[..], n),
            Item::Prompt(n) => (&self.prompt_attributes[..], n),
            Item::Resource(n) => (&self.resource_attributes[..], n),
        };
        if let Some((_, a)) = table.iter().find(|(g, _)| glob_match(g, name)) {
            risk = a.risk.as_deref().unwrap_or(risk);
            class = a.data_class.as_deref().unwrap_or(class);
        }
        (risk, class)
    }
}

/// Whether `name` matches a glob where `*` stands for any run of characters (tool
/// globs in the config: attributes, actions, timeouts, argument checks).
pub fn glob_match(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// Alerts, POSTed to a webhook with an HMAC-SHA256 signature: inspection blocks,
/// pin drift, refused policy reloads, and bursts of authentication failures.
#[derive(Debug, Clone)]
pub struct Alerts {
    /// Where (https, or http on loopback).
    pub webhook: String,
    /// The vault secret that keys the HMAC.
    pub secret: String,
    /// Authentication failures within `auth_window` that raise an alert.
    pub auth_failures: usize,
    /// The window for `auth_failures`.
    pub auth_window: Duration,
}

/// The admin listener: a second, loopback-only HTTP listener for `/metrics`.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Where it listens (a loopback address).
    pub listen: SocketAddr,
}

/// The hash-chained, signed audit log (OBS-01).
#[derive(Debug, Clone)]
pub struct Audit {
    /// The log file (default `<data_dir>/audit.jsonl`).
    pub path: PathBuf,
    /// The Ed25519 checkpoint key, created at first start if missing (default
    /// `<data_dir>/audit-signing.key`; its public key is written beside it, `.pub`).
    pub signing_key: PathBuf,
    /// The key call records hash their arguments under (HMAC-SHA256), created at
    /// first start if missing (default `<data_dir>/audit-hash.key`, 32 bytes, 0600).
    pub hash_key: PathBuf,
    /// When the file is synced.
    pub fsync: AuditFsync,
    /// A signed checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or this long after the first unsigned one.
    pub checkpoint_interval: Duration,
    /// Rotation size.
    pub max_file_bytes: u64,
    /// Rotated files kept; 0 keeps every file.
    pub keep_files: usize,
    /// What the gateway does when a record cannot be written.
    pub on_failure: OnAuditFailure,
    /// Namespaced tool names (or globs) whose raw arguments are recorded; every
    /// other call records only their keyed hash (see `hash_key`).
    pub include_arguments: Vec<String>,
    /// Where copies of the records go as they are written (the file stays the
    /// record of truth).
    pub sinks: Vec<AuditSink>,
}

/// A copy of the audit records, sent as they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSink {
    /// Where.
    pub kind: AuditSinkKind,
    /// As written, or mapped to OCSF.
    pub format: AuditFormat,
}

/// Where an audit sink sends records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSinkKind {
    /// Standard output, one JSON document per line.
    Stdout,
    /// Syslog (RFC 5424) over TCP with octet counting (RFC 6587), in TLS (RFC 5425)
    /// unless `tls` is false, which only a loopback address allows.
    Syslog {
        /// `host:port`.
        address: String,
        /// The host part, for the TLS name.
        host: String,
        /// Whether to speak TLS.
        tls: bool,
        /// Trust only this CA bundle (PEM) instead of the platform's roots.
        ca_file: Option<PathBuf>,
    },
    /// OpenTelemetry logs over OTLP/HTTP (JSON), to https (or http on loopback).
    Otlp {
        /// The collector's logs endpoint, e.g. `https://collector:4318/v1/logs`.
        url: String,
    },
}

/// How records are shaped for a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditFormat {
    /// The record exactly as in the file (hash and chain included).
    #[default]
    Record,
    /// An OCSF event (Authentication, API Activity, Detection Finding, …) with the
    /// record under `unmapped`.
    Ocsf,
}

/// When the audit file is synced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFsync {
    /// Before each batch of records is acknowledged.
    Always,
    /// At most this long after a write (records are acknowledged once written).
    Interval(Duration),
    /// Left to the operating system.
    Never,
}

/// What happens to requests when the audit log cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnAuditFailure {
    /// Refuse every decision that cannot be recorded.
    #[default]
    FailClosed,
    /// Go on, and log an error for each record lost.
    FailOpen,
}

/// The listener's certificate chain and private key, both PEM files, reloaded without a
/// restart when they change (checked every `reload_interval`, and on SIGHUP).
#[derive(Debug, Clone)]
pub struct Tls {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are checked for a change.
    pub reload_interval: Duration,
}

/// Protections switched off in `[dangerous]`; every flag is false by default and only
/// set where it changes something.
#[derive(Debug, Clone, Default)]
pub struct Dangerous {
    /// A non-loopback listener without TLS: tokens cross the network in clear unless a
    /// TLS-terminating proxy stands in front.
    pub plaintext_listener: bool,
}

/// Where the vault's key-encryption keys are (64 hex characters each).
#[derive(Debug, Clone)]
pub struct VaultKeys {
    /// The current key: seals new secrets.
    pub current: KeySource,
    /// Earlier keys, still able to open secrets during a rotation.
    pub previous_key_files: Vec<PathBuf>,
}

/// Where the current key-encryption key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file (mode 0600 is the operator's job).
    File(PathBuf),
    /// An environment variable of the gateway process, e.g. set by a secret manager.
    Env(String),
}

/// The gateway's own credential for an upstream, injected as a header (AUTH-16).
#[derive(Debug, Clone)]
pub struct Credential {
    /// The vault secret's name.
    pub secret: String,
    /// The header it goes in (lower case).
    pub header: String,
    /// Text before the secret, e.g. `Bearer `.
    pub prefix: String,
}

/// OAuth 2.1 resource-server settings.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The gateway's public base URL (`scheme://host[:port]`, no trailing slash); the
    /// canonical MCP URI, and the required token audience, is this plus `endpoint`.
    pub public_url: String,
    /// The minimal scopes advertised in the metadata and challenges.
    pub scopes: Vec<String>,
    /// Allowed clock skew for `exp`/`nbf`.
    pub leeway: Duration,
    /// Claim-path preset: `none`, `entra-id`, `keycloak`, `okta` or `auth0:<namespace>`.
    pub claims_preset: String,
    /// Extra claims holding roles (JSON Pointer if starting with `/`).
    pub roles_claims: Vec<String>,
    /// Extra claims holding groups.
    pub groups_claims: Vec<String>,
    /// Trusted token issuers.
    pub issuers: Vec<AuthIssuer>,
}

/// One trusted authorization server.
#[derive(Debug, Clone)]
pub struct AuthIssuer {
    /// The exact `iss` value (https, or http on a loopback host).
    pub issuer: String,
    /// The JWKS URL; found by OIDC / RFC 8414 discovery when absent.
    pub jwks_uri: Option<String>,
    /// Require `typ: at+jwt` (RFC 9068).
    pub require_at_jwt: bool,
    /// RFC 7662 introspection for opaque (non-JWT) tokens, if configured.
    pub introspection: Option<Introspection>,
}

/// Where and as whom the gateway introspects opaque tokens (RFC 7662).
#[derive(Clone)]
pub struct Introspection {
    /// The introspection endpoint (https, or http on loopback).
    pub endpoint: String,
    /// The gateway's client ID at the authorization server.
    pub client_id: String,
    /// Its client secret (from the environment; never printed).
    pub client_secret: String,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Bounds; every queue and buffer in the gateway takes its size from here.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest client request body, in bytes; larger → 413.
    pub max_request_bytes: usize,
    /// Largest single message from an upstream, in bytes.
    pub max_response_bytes: usize,
    /// Most live sessions; beyond → 503 on `initialize`.
    pub max_sessions: usize,
    /// Most live sessions one principal holds; beyond → 429 on `initialize`. `None`:
    /// only `max_sessions` bounds them (the default without `[auth]`, where every
    /// session is the local user's).
    pub max_sessions_per_principal: Option<usize>,
    /// Default per-request timeout toward upstreams (LIFE-06).
    pub request_timeout: Duration,
    /// Hard cap on any request's life, whatever progress arrives (LIFE-06).
    pub max_request_timeout: Duration,
    /// A session unused this long is closed (SESS-07).
    pub session_idle_timeout: Duration,
    /// A session older than this is closed, used or not (SESS-07).
    pub session_max_lifetime: Duration,
    /// Events kept per client SSE stream for `Last-Event-ID` resumption.
    pub replay_buffer_events: usize,
    /// Messages queued toward one upstream before senders wait.
    pub upstream_queue: usize,
    /// Requests in flight per session; beyond → an error.
    pub max_in_flight_per_session: usize,
    /// Sampling requests with tools (rounds of a tool loop through the client's model)
    /// one client request may lead to; each further one is refused to the upstream
    /// (FEAT-13).
    pub sampling_tool_rounds: usize,
    /// Time given to in-flight requests on shutdown before they are cut.
    pub shutdown_grace: Duration,
    /// Request rates (GCRA); each `None` when not limited.
    pub rate: RateLimits,
    /// Requests one principal may have in flight across all its sessions; beyond → 429.
    pub max_concurrent_per_principal: Option<usize>,
}

/// Request-rate limits (GCRA): a sustained rate with a burst of the same size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// All requests to the gateway together.
    pub global: Option<Rate>,
    /// Each principal's requests.
    pub per_principal: Option<Rate>,
    /// Calls to each tool (by namespaced name), all principals together.
    pub per_tool: Option<Rate>,
    /// Requests by each OAuth client (the token's `client_id` or `azp`), all its users
    /// together; tokens without a client count as one client.
    pub per_client: Option<Rate>,
}

/// `count` requests per `period`, with a burst of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (and at once).
    pub count: u32,
    /// The period: a second, a minute or an hour.
    pub period: Duration,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// One upstream MCP server.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its name: `[A-Za-z0-9-]{1,32}`, unique; the namespace prefix of its tools.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Requests in flight to this upstream at most; beyond → 429.
    pub max_concurrent: Option<usize>,
    /// Per-tool timeouts (tool name or glob at the upstream → timeout), overriding
    /// `request_timeout`; the longest matching pattern wins.
    pub tool_timeouts: Vec<(String, Duration)>,
    /// Per-request timeout for this upstream, overriding the default.
    pub request_timeout: Option<Duration>,
    /// Scopes a token must carry to use this upstream (needs `[auth]`); a token
    /// without them gets 403 `insufficient_scope` (AUTH-12).
    pub required_scopes: Vec<String>,
    /// The gateway's credential for a Streamable HTTP upstream, from the vault.
    pub credential: Option<Credential>,
    /// Or: short-lived tokens the gateway obtains for this upstream by OAuth client
    /// credentials, with `resource` = the upstream's URL (AUTH-16, BCP-03).
    pub client_credentials: Option<ClientCredentials>,
    /// Or: a token for this upstream obtained per caller by exchanging the caller's own
    /// access token at the authorization server (RFC 8693); needs `[auth]`.
    pub token_exchange: Option<TokenExchange>,
    /// What inspection does with this upstream's answers and tools.
    pub inspection: InspectionActions,
    /// Per-tool actions (tool name or glob at the upstream → the actions for the
    /// answers and definition of a tool it matches: the table's over the upstream's),
    /// longest pattern first; a tool takes the first match's, else the upstream's.
    pub tool_inspection: Vec<(String, InspectionActions)>,
    /// How this upstream's tool and prompt definitions are pinned (FEAT-02).
    pub pinning: PinMode,
    /// Tools whose arguments get extra checks (OBS-04).
    pub argument_checks: ArgumentChecks,
    /// The upstream's own attributes for policies.
    pub attributes: Attributes,
    /// Per-tool attributes (tool name or glob at the upstream → attributes), longest
    /// pattern first; a tool takes the first match's values, then the upstream's.
    pub tool_attributes: Vec<(String, Attributes)>,
    /// Per-prompt attributes (prompt name or glob at the upstream), as for tools.
    pub prompt_attributes: Vec<(String, Attributes)>,
    /// Per-resource attributes (URI or URI glob), as for tools.
    pub resource_attributes: Vec<(String, Attributes)>,
}

/// What a policy is asked about, for [`Upstream::attributes_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// The upstream itself.
    Upstream,
    /// A tool, by the upstream's own name for it.
    Tool(&'a str),
    /// A prompt, by the upstream's own name for it.
    Prompt(&'a str),
    /// A resource, by URI.
    Resource(&'a str),
}

/// Tools (by upstream-local name, `*` as a wildcard) whose string arguments are
/// checked before forwarding (OBS-04).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgumentChecks {
    /// Arguments are file paths: no `..` segments, NUL or control characters.
    pub paths: Vec<String>,
    /// Arguments reach a shell: no metacharacters.
    pub commands: Vec<String>,
    /// Arguments are URLs: no loopback, private, link-local or metadata targets.
    pub urls: Vec<String>,
    /// The host names of those URLs are resolved too, and a name that resolves to such
    /// a target, or does not resolve, is refused.
    pub resolve_names: bool,
}

/// How definitions are pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinMode {
    /// Trust on first use: a new item is pinned at first sight (unless it fails
    /// inspection); a changed one is quarantined until approved.
    #[default]
    Tofu,
    /// Every new or changed item is quarantined until approved.
    Strict,
    /// No pinning.
    Off,
}

/// Inspection of upstream answers and tool definitions.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Off only when the operator says so.
    pub enabled: bool,
    /// A rule pack to use instead of the built-in one (it may extend it).
    pub rules: Option<PathBuf>,
    /// The defaults for every upstream.
    pub actions: InspectionActions,
    /// An external detector asked about answers the rules pass, if configured.
    pub external: Option<External>,
}

/// An external prompt-injection detector, asked over HTTPS about every answer that the
/// built-in rules let through.
#[derive(Debug, Clone)]
pub struct External {
    /// The request and response shape.
    pub kind: ExternalKind,
    /// Where to send it (https, or http on loopback).
    pub url: String,
    /// The vault secret sent as the key, if any.
    pub secret: Option<String>,
    /// The header that carries it (lower case).
    pub header: String,
    /// How long to wait.
    pub timeout: Duration,
    /// What an error or a timeout means.
    pub on_error: OnExternalError,
}

/// The external detector's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExternalKind {
    /// Azure AI Content Safety Prompt Shields (`text:shieldPrompt`): the answer's texts
    /// as `documents`, `attackDetected` in `documentsAnalysis`.
    PromptShields,
    /// A generic webhook: `{"texts": [...], "source": "..."}` in, `{"malicious": bool}` out.
    Webhook,
}

/// What happens when the external detector fails or does not answer in time. There
/// is no default: the operator chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnExternalError {
    /// The answer is withheld.
    FailClosed,
    /// The answer passes, and the failure is logged.
    FailOpen,
}

/// What to do with what inspection finds; the defaults protect without configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InspectionActions {
    /// Prompt injection in a tool result, resource or prompt.
    pub injection: OnInjection,
    /// Secrets in an answer.
    pub secrets: OnData,
    /// Personal data in an answer.
    pub pii: OnData,
    /// Hidden text (tag characters, zero-width, bidi, terminal escapes) in an answer.
    pub hidden: OnHidden,
    /// A poisoned tool definition.
    pub tools: OnTool,
    /// A tool result whose `structuredContent` does not match the tool's
    /// `outputSchema` (FEAT-05).
    pub output_schema: OnOutputSchema,
}

impl Default for InspectionActions {
    fn default() -> Self {
        Self {
            injection: OnInjection::Block,
            secrets: OnData::Redact,
            pii: OnData::Flag,
            hidden: OnHidden::Strip,
            tools: OnTool::Block,
            output_schema: OnOutputSchema::Block,
        }
    }
}

/// What happens to an answer that carries an injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnInjection {
    /// The client gets an error instead of the answer.
    Block,
    /// The answer's text is wrapped in delimiters with datamarking.
    Spotlight,
    /// The answer passes, annotated in `_meta`, and an alert is logged.
    Flag,
}

/// What happens to secrets or personal data in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnData {
    /// Replaced by `[REDACTED:<rule>]`.
    Redact,
    /// The client gets an error instead of the answer.
    Block,
    /// Passed, annotated and logged.
    Flag,
    /// Not looked for.
    Off,
}

/// What happens to hidden text in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnHidden {
    /// Removed.
    Strip,
    /// Passed, annotated and logged.
    Flag,
}

/// What happens to a poisoned tool definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTool {
    /// Hidden from `tools/list`, and calls to it are refused.
    Block,
    /// Listed, and an alert is logged.
    Flag,
}

/// What happens to a tool result that does not match the tool's output schema: its
/// `structuredContent` missing, not an object, or not valid against `outputSchema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOutputSchema {
    /// The client gets an error instead of the result.
    Block,
    /// The result passes, annotated in `_meta`, and the mismatch is logged.
    Flag,
}

/// RFC 8693 token exchange toward one upstream: the gateway, authenticated as itself,
/// trades the caller's access token for one whose audience is the upstream.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    /// The authorization server's token endpoint (https, or http on loopback).
    pub token_endpoint: String,
    /// The gateway's client ID there.
    pub client_id: String,
    /// The vault secret holding the client secret.
    pub client_secret: String,
    /// The `audience` to ask for, when the server names upstreams that way; the
    /// `resource` is always the upstream's URL.
    pub audience: Option<String>,
    /// Minimal scopes to ask for.
    pub scopes: Vec<String>,
}

/// The OAuth client-credentials grant the gateway uses toward one upstream.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The authorization server's token endpoint (https, or http on loopback).
    pub token_endpoint: String,
    /// The gateway's client ID there.
    pub client_id: String,
    /// The vault secret holding the client secret.
    pub client_secret: String,
    /// Minimal scopes to ask for.
    pub scopes: Vec<String>,
}

/// How the gateway reaches an upstream.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio(StdioSpec),
    /// A Streamable HTTP endpoint.
    Http(HttpSpec),
}

/// A stdio upstream's launch.
#[derive(Debug, Clone)]
pub struct StdioSpec {
    /// The executable.
    pub command: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The only environment variables the child receives (LOC-05).
    pub env: BTreeMap<String, String>,
    /// The working directory, if set.
    pub cwd: Option<PathBuf>,
    /// Resource limits the child starts with.
    pub rlimits: StdioLimits,
    /// Its sandbox; `None` only when `[upstream.dangerous] sandbox = "off"`.
    pub sandbox: Option<Box<SandboxSpec>>,
}

/// The names `accept_weaker` takes: containment mechanisms the kernel may lack.
pub const SANDBOX_MECHANISMS: [&str; 3] = ["landlock", "namespaces", "seccomp"];

/// What a sandboxed stdio server may do (`[upstream.sandbox]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Paths it may read and execute beneath, besides the system's runtime paths.
    pub read: Vec<PathBuf>,
    /// Paths it may also write beneath.
    pub write: Vec<PathBuf>,
    /// The host's network instead of none.
    pub host_network: bool,
    /// With `network = "proxy"`: the only destinations, reached through the
    /// gateway's egress proxy (empty otherwise).
    pub allow_hosts: Vec<EgressHost>,
    /// A strict allowlist of system calls, when set.
    pub syscalls: Option<Vec<String>>,
    /// Mechanisms (of [`SANDBOX_MECHANISMS`]) it may run without where the kernel
    /// lacks them.
    pub accept_weaker: Vec<String>,
}

/// Resource limits of a stdio child (rlimits, set between fork and exec).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StdioLimits {
    /// Bytes of data segment and private writable memory.
    pub memory_bytes: Option<u64>,
    /// CPU time.
    pub cpu_time: Option<Duration>,
    /// Open file descriptors.
    pub open_files: Option<u64>,
    /// Processes and threads (counted within the sandbox's user namespace).
    pub processes: Option<u64>,
}

/// A Streamable HTTP upstream.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The upstream's MCP endpoint URL (https, or http on loopback).
    pub url: String,
}

impl Config {
    /// Parses and validates `text`, read from `path`; `env` supplies `${VAR}` values.
    pub fn from_toml(path: &Path, text: &str, env: &impl Env) -> Result<Self, ConfigError> {
        let mut c = RawConfig::parse(&path.display().to_string(), text)?.build(env)?;
        c.source_sha256 = {
            use sha2::Digest;
            sha2::Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        Ok(c)
    }

    /// How many serving threads the gateway runs: `workers`, or one per core this
    /// process may use (affinity and cgroup quota included).
    pub fn serving_workers(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// A one-screen summary of the effective configuration, for `config check`.
    pub fn summary(&self) -> String {
        let l = &self.limits;
        let mut s = format!(
            "listen: {}://{}{}{}\ndata_dir: {}\nworkers: {}{}\nnamespace tools: {}\nallowed origins: {:?}\n\
             limits: request {} B, upstream message {} B, sessions {}, timeout {:?} (cap {:?}), \
             idle {:?}, lifetime {:?}, replay {} events, queue {}, in-flight/session {}, \
             sampling tool rounds/request {}\n",
            if self.tls.is_some() { "https" } else { "http" },
            self.listen,
            self.endpoint,
            if self.dangerous.plaintext_listener {
                " (DANGEROUS: plaintext on a non-loopback address)"
            } else {
                ""
            },
            self.data_dir.display(),
            self.serving_workers(),
            if self.workers.is_none() {
                " (one per available core)"
            } else {
                ""
            },
            self.namespace,
            self.allowed_origins,
            l.max_request_bytes,
            l.max_response_bytes,
            l.max_sessions,
            l.request_timeout,
            l.max_request_timeout,
            l.session_idle_timeout,
            l.session_max_lifetime,
            l.replay_buffer_events,
            l.upstream_queue,
            l.max_in_flight_per_session,
            l.sampling_tool_rounds,
        );
        if let Some(a) = &self.admin {
            s.push_str(&format!("admin: http://{}/metrics\n", a.listen));
        }
        if let Some(a) = &self.alerts {
            s.push_str(&format!(
                "alerts: {} (HMAC with vault secret `{}`), on blocks, pin drift, refused policy reloads, {} authentication failures within {:?}\n",
                a.webhook, a.secret, a.auth_failures, a.auth_window
            ));
        }
        if let Some(t) = &self.tracing {
            s.push_str(&format!(
                "tracing: OTLP to {}, sampling {} of untraced requests\n",
                t.otlp_url, t.sample_ratio
            ));
        }
        match &self.policy {
            Some(p) => s.push_str(&format!(
                "policy: {} (re-read when it changes, checked every {:?}, and on SIGHUP)\n",
                p.file.display(),
                p.reload_interval
            )),
            None => s.push_str(
                "policy: embedded default for local mode: the local user may use everything\n",
            ),
        }
        let rate = |r: Option<Rate>| r.map_or_else(|| "off".to_owned(), |r| r.to_string());
        s.push_str(&format!(
            "rate limits: global {}, per principal {}, per client {}, per tool {}; in flight per principal {}; sessions per principal {}\n",
            rate(l.rate.global),
            rate(l.rate.per_principal),
            rate(l.rate.per_client),
            rate(l.rate.per_tool),
            l.max_concurrent_per_principal
                .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
            l.max_sessions_per_principal
                .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
        ));
        let i = &self.inspection;
        if i.enabled {
            s.push_str(&format!(
                "inspection: on, rules {}, {}\n",
                i.rules
                    .as_ref()
                    .map_or_else(|| "built-in".to_owned(), |p| p.display().to_string()),
                actions(&i.actions)
            ));
            if let Some(e) = &i.external {
                s.push_str(&format!(
                    "inspection external: {:?} at {}, timeout {:?}, {:?}\n",
                    e.kind, e.url, e.timeout, e.on_error
                ));
            }
        } else {
            s.push_str("inspection: OFF\n");
        }
        match &self.audit {
            Some(a) => s.push_str(
                &(format!(
                    "audit: {} (signed by {}, arguments hashed under {}), fsync {}, \
                 checkpoint every {} records or {:?}, rotate at {} B keeping {}, {}{}\n",
                    a.path.display(),
                    a.signing_key.display(),
                    a.hash_key.display(),
                    match a.fsync {
                        AuditFsync::Always => "always".to_owned(),
                        AuditFsync::Never => "never".to_owned(),
                        AuditFsync::Interval(d) => format!("every {d:?}"),
                    },
                    a.checkpoint_every,
                    a.checkpoint_interval,
                    a.max_file_bytes,
                    if a.keep_files == 0 {
                        "all".to_owned()
                    } else {
                        a.keep_files.to_string()
                    },
                    match a.on_failure {
                        OnAuditFailure::FailClosed => "fail-closed",
                        OnAuditFailure::FailOpen => "fail-open",
                    },
                    if a.include_arguments.is_empty() {
                        String::new()
                    } else {
                        format!(", raw arguments of {:?}", a.include_arguments)
                    }
                ) + &a
                    .sinks
                    .iter()
                    .map(|k| {
                        let to = match &k.kind {
                            AuditSinkKind::Stdout => "stdout".to_owned(),
                            AuditSinkKind::Syslog { address, tls, .. } => {
                                format!(
                                    "syslog {address}{}",
                                    if *tls { " (TLS)" } else { " (plain, loopback)" }
                                )
                            }
                            AuditSinkKind::Otlp { url } => format!("otlp {url}"),
                        };
                        format!("audit sink: {to}, {:?}\n", k.format).to_lowercase()
                    })
                    .collect::<String>()),
            ),
            None => s.push_str("audit: OFF (DANGEROUS: [dangerous] no_audit_log)\n"),
        }
        s.push_str("upstreams:\n");
        for u in &self.upstreams {
            if i.enabled && u.inspection != i.actions {
                s.push_str(&format!(
                    "  {} inspection: {}\n",
                    u.name,
                    actions(&u.inspection)
                ));
            }
            s.push_str(&format!(
                "  {} pinning: {}\n",
                u.name,
                format!("{:?}", u.pinning).to_lowercase()
            ));
            let attrs = |a: &Attributes| {
                format!(
                    "risk {}, data_class {}",
                    a.risk.as_deref().unwrap_or("-"),
                    a.data_class.as_deref().unwrap_or("-")
                )
            };
            if u.attributes != Attributes::default() {
                s.push_str(&format!(
                    "  {} attributes: {}\n",
                    u.name,
                    attrs(&u.attributes)
                ));
            }
            for (g, a) in u.tool_inspection.iter().filter(|_| i.enabled) {
                s.push_str(&format!(
                    "  {} tool inspection: {g}: {}\n",
                    u.name,
                    actions(a)
                ));
            }
            for (what, table) in [
                ("tool", &u.tool_attributes),
                ("prompt", &u.prompt_attributes),
                ("resource", &u.resource_attributes),
            ] {
                for (g, a) in table {
                    s.push_str(&format!(
                        "  {} {what} attributes: {g}: {}\n",
                        u.name,
                        attrs(a)
                    ));
                }
            }
            if let Some(n) = u.max_concurrent {
                s.push_str(&format!("  {} in flight at most: {n}\n", u.name));
            }
            for (g, d) in &u.tool_timeouts {
                s.push_str(&format!("  {} tool timeout: {g} {d:?}\n", u.name));
            }
            match &u.transport {
                Transport::Stdio(sp) => {
                    s.push_str(&format!(
                        "  {} (stdio): {} {:?}, env: {:?}\n",
                        u.name,
                        sp.command.display(),
                        sp.args,
                        sp.env.keys().collect::<Vec<_>>()
                    ));
                    let r = &sp.rlimits;
                    if *r != StdioLimits::default() {
                        let or_inherited =
                            |v: Option<String>| v.unwrap_or_else(|| "inherited".into());
                        s.push_str(&format!(
                            "  {} rlimits: memory {}, cpu {}, open files {}, processes {}\n",
                            u.name,
                            or_inherited(r.memory_bytes.map(|b| format!("{b} B"))),
                            or_inherited(r.cpu_time.map(|d| format!("{d:?}"))),
                            or_inherited(r.open_files.map(|n| n.to_string())),
                            or_inherited(r.processes.map(|n| n.to_string())),
                        ));
                    }
                    match &sp.sandbox {
                        None => s.push_str(&format!(
                            "  {} sandbox: OFF ([upstream.dangerous] sandbox = \"off\")\n",
                            u.name
                        )),
                        Some(b) => s.push_str(&format!(
                            "  {} sandbox: read {:?}, write {:?}, network {}, syscalls {}, accepts without {:?}\n",
                            u.name,
                            b.read,
                            b.write,
                            if b.host_network {
                                "host".to_owned()
                            } else if b.allow_hosts.is_empty() {
                                "none".to_owned()
                            } else {
                                format!(
                                    "proxy to {:?}",
                                    b.allow_hosts
                                        .iter()
                                        .map(|h| format!("{}:{}", h.host, h.port))
                                        .collect::<Vec<_>>()
                                )
                            },
                            match &b.syscalls {
                                Some(l) => format!("{} allowed (strict)", l.len()),
                                None => "deny-list".into(),
                            },
                            b.accept_weaker,
                        )),
                    }
                }
                Transport::Http(h) => {
                    let credential = match (&u.credential, &u.client_credentials, &u.token_exchange)
                    {
                        (Some(c), _, _) => {
                            format!(", credential: vault secret `{}` in {}", c.secret, c.header)
                        }
                        (_, Some(c), _) => {
                            format!(", credential: client credentials at {}", c.token_endpoint)
                        }
                        (_, _, Some(t)) => {
                            format!(", credential: token exchange at {}", t.token_endpoint)
                        }
                        _ => String::new(),
                    };
                    s.push_str(&format!(
                        "  {} (streamable http): {}{credential}\n",
                        u.name, h.url
                    ));
                }
            }
        }
        s
    }
}

fn actions(a: &InspectionActions) -> String {
    format!(
        "injection {:?}, secrets {:?}, pii {:?}, hidden {:?}, tools {:?}, output_schema {:?}",
        a.injection, a.secrets, a.pii, a.hidden, a.tools, a.output_schema
    )
    .to_lowercase()
}

#[cfg(test)]
mod tests;
