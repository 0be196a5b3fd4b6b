//! The typed audit events. Each names who, what and the decision; none carries a
//! token, a secret or a raw argument value (arguments appear as a SHA-256 unless the
//! operator opted a tool in).

use serde::{Deserialize, Serialize};

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed to proceed.
    Allow,
    /// Refused.
    Deny,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The gateway started writing this log (after a start or a file rotation).
    Start {
        /// The gateway's version.
        version: String,
        /// SHA-256 of the configuration file it runs, hex.
        config_sha256: String,
        /// The ID of the key call records hash arguments under from here on
        /// ([`crate::key::HashKey::id`]): a key replaced or lost and made anew shows
        /// here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hash_key_id: Option<String>,
    },
    /// The gateway is stopping.
    Stop,
    /// A signed checkpoint: `signature` is Ed25519 over the chain head before this
    /// record (see [`crate::chain::checkpoint_message`]).
    Checkpoint {
        /// SHA-256 of the public key, hex, first 16 characters.
        key_id: String,
        /// The raw 32-byte Ed25519 public key, hex.
        public_key: String,
        /// Whether this checkpoint opens a file (signed, so that a file whose first
        /// records were cut away cannot pass for a rotated one).
        opens_file: bool,
        /// Whether this checkpoint closes a file the writer finished (signed, so that
        /// a file cut short cannot pass for a finished one).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        closes_file: bool,
        /// The signature, hex.
        signature: String,
    },
    /// An authentication attempt with a bearer token (never the token itself).
    Auth {
        /// Allowed, or denied.
        decision: Decision,
        /// The principal, when the token was valid.
        #[serde(skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
        /// The OAuth client, when the token names one.
        #[serde(skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// The peer address.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// Why it was denied (an RFC 6750 error code and a short reason).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A session was opened.
    SessionOpen {
        /// A reference to the session: a prefix of the SHA-256 of its ID, never the ID.
        session: String,
        /// Who opened it.
        principal: String,
        /// The MCP protocol version agreed.
        protocol: String,
    },
    /// A session ended.
    SessionClose {
        /// The session reference.
        session: String,
        /// Whose it was.
        principal: String,
        /// Why: `deleted`, `idle`, `lifetime`, `shutdown`.
        reason: String,
    },
    /// A list was answered: how much of it the principal was offered.
    List {
        /// The session reference.
        session: String,
        /// Who asked.
        principal: String,
        /// The OAuth client the caller's token was issued to, when it names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// `tools/list`, `prompts/list`, …
        method: String,
        /// Items offered.
        offered: usize,
        /// Items withheld (quarantined, failed inspection, invalid).
        withheld: usize,
        /// Items the policy does not let this principal use.
        #[serde(default)]
        denied: usize,
        /// Which (the names the client would have seen; resources by URI without
        /// query or userinfo), the first 100.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        denied_items: Vec<String>,
        /// The policies that denied them: the forbids that applied (none: denied by
        /// default, no permit applied).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        denied_by: Vec<String>,
    },
    /// A call, prompt or read was decided.
    Call {
        /// The session reference.
        session: String,
        /// Who called.
        principal: String,
        /// The OAuth client the caller's token was issued to, when it names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// `tools/call`, `prompts/get`, `resources/read`, …
        method: String,
        /// The upstream it goes to, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        upstream: Option<String>,
        /// The tool or prompt name (namespaced), or the resource URI.
        target: String,
        /// HMAC-SHA256 of the canonical JSON arguments under the gateway's argument
        /// hash key ([`crate::key::HashKey`]), hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments_hmac_sha256: Option<String>,
        /// The arguments themselves, only for tools the operator opted in.
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments: Option<serde_json::Value>,
        /// Allowed to reach the upstream, or refused.
        decision: Decision,
        /// What decided a refusal (a quarantine, a schema, an argument check, the
        /// policy).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The Cedar policies that decided it: the permits that allowed it or the
        /// forbids that denied it (empty: denied by default, or decided before the
        /// policy was asked).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        policies: Vec<String>,
        /// Who approved it, for calls held for approval (FEAT-08).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approved_by: Option<String>,
    },
    /// Inspection found something in an upstream's answer or definitions.
    Finding {
        /// The upstream.
        upstream: String,
        /// The tool, prompt or resource concerned.
        subject: String,
        /// Where: the method of the answer, or `definition`.
        location: String,
        /// The rules that fired.
        rules: Vec<String>,
        /// What the gateway did: `block`, `spotlight`, `redact`, `strip`, `flag`.
        action: String,
        /// The highest severity among the findings (`low` … `critical`; absent in
        /// records of earlier builds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<String>,
    },
    /// The policy file was loaded, or a reload was refused (the last good set stays).
    Policy {
        /// `loaded` (at start), `reloaded`, or `refused`.
        outcome: String,
        /// The file, or `embedded` for local mode's default.
        source: String,
        /// SHA-256 of the file's text, hex.
        sha256: String,
        /// Policies in force after the event.
        policies: usize,
        /// Why a reload was refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// What triggered it: `start`, `change`, `sighup`.
        trigger: String,
    },
    /// An admin action done with the CLI (secrets, pin approvals), recorded when the
    /// gateway drains the store's queue.
    Admin {
        /// `secrets.set`, `secrets.rotate-key`, `pins.approve`, `pins.reject`.
        action: String,
        /// Who did it (the OS login, or `--by`).
        by: String,
        /// On what (a secret's name, never its value; a pin; a count).
        detail: String,
        /// Unix seconds when it was done.
        at: i64,
    },
    /// A pinned definition changed state.
    Pin {
        /// The upstream.
        upstream: String,
        /// `tool`, `prompt`, `resource`, `resource-template`, `instructions`.
        kind: String,
        /// The item.
        name: String,
        /// SHA-256 of its canonical definition, hex.
        hash: String,
        /// `pinned` (trusted on first use), `quarantined`, `rejected`.
        status: String,
        /// Why, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A sandboxed stdio server asked its egress proxy for a tunnel
    /// (`network = "proxy"`).
    Egress {
        /// The upstream whose server asked.
        upstream: String,
        /// `host:port` as asked (clipped), or empty when the request named none.
        target: String,
        /// Opened, or refused.
        decision: Decision,
        /// Why it was refused.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The addresses the name resolved to, which the tunnel goes to (for an
        /// allowed tunnel: what a name pointed at then, against DNS rebinding).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        addresses: Vec<String>,
    },
    /// Refusals past the log's budget for one source and reason in one window:
    /// counted, not recorded one by one (a flood of refusals cannot grow the log
    /// without bound or push its history out through rotation).
    RefusalsCounted {
        /// `auth` (authentication refused) or `call` (a message refused by a limit).
        of: String,
        /// For `auth`, the peer's address (an IPv6 peer by its /64); for `call`, the
        /// principal; `others` for the sources past those counted apart.
        source: String,
        /// The refusals' reason.
        reason: String,
        /// How many were not recorded.
        count: u64,
        /// The window they fell in, seconds.
        window_seconds: u64,
    },
}

impl Event {
    /// The event's type name, as written in the `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Stop => "stop",
            Self::Checkpoint { .. } => "checkpoint",
            Self::Auth { .. } => "auth",
            Self::SessionOpen { .. } => "session_open",
            Self::SessionClose { .. } => "session_close",
            Self::List { .. } => "list",
            Self::Call { .. } => "call",
            Self::Finding { .. } => "finding",
            Self::Pin { .. } => "pin",
            Self::Policy { .. } => "policy",
            Self::Admin { .. } => "admin",
            Self::Egress { .. } => "egress",
            Self::RefusalsCounted { .. } => "refusals_counted",
        }
    }
}
