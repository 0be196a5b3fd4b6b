//! The guard chains: ordered, transport-agnostic checks on MCP messages.
//!
//! A guard looks at one message and returns a [`Verdict`]: allow it, rewrite it, or
//! deny it with a [`Denial`] that carries a public JSON-RPC code and message. The
//! original bytes travel on unless a guard rewrites them.
//!
//! The order of the guards is a security property and lives here, in
//! [`GuardChain::inbound`] and [`GuardChain::outbound`], and nowhere else. Later
//! guards (authorization, argument inspection, tool pinning, output inspection,
//! audit) slot into these two functions; see ARCHITECTURE.md#guard-order.

use palisade_wire::{ErrorCode, Message};
use serde_json::Value;

use crate::session::Session;

/// What one guard decided about one message.
#[must_use]
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Forward the message as it is.
    Allow,
    /// Forward this instead.
    #[allow(dead_code, reason = "used by the inspection guards that follow")]
    Rewrite(Message),
    /// Stop; the peer receives the denial as a JSON-RPC error.
    Deny(Denial),
}

/// A refusal of one message.
#[derive(Debug, Clone)]
pub(crate) struct Denial {
    pub(crate) code: ErrorCode,
    /// Safe to show the peer.
    pub(crate) public: &'static str,
}

/// The facts a guard may use about the exchange.
pub(crate) struct Exchange<'a> {
    pub(crate) session: &'a Session,
    /// The capabilities the gateway advertised to this client.
    pub(crate) advertised: &'a Value,
}

/// The ordered guards.
#[derive(Debug, Default)]
pub(crate) struct GuardChain;

impl GuardChain {
    /// Client → upstream, for requests inside a session.
    pub(crate) fn inbound(&self, msg: Message, cx: &Exchange<'_>) -> Result<Message, Denial> {
        // 1. Lifecycle: one initialize per session, and only features the gateway
        //    advertised may be used (LIFE-01, LIFE-03). First, because nothing else
        //    should spend effort on a message the protocol forbids.
        let msg = run(lifecycle(&msg, cx), msg)?;
        // 2. (next) authorization by policy, default deny.
        // 3. (next) argument validation and inspection.
        // The router comes last: it picks the upstream and remaps IDs.
        Ok(msg)
    }

    /// Upstream → client, for requests and notifications an upstream sends.
    pub(crate) fn outbound(&self, msg: Message, cx: &Exchange<'_>) -> Result<Message, Denial> {
        // 1. Capabilities: an upstream may ask the client only for what the client
        //    declared (LIFE-03).
        let msg = run(client_capability(&msg, cx), msg)?;
        // 2. (next) tool pinning, poisoning / injection / secret scanning, list
        //    filtering by policy.
        Ok(msg)
    }
}

fn run(v: Verdict, msg: Message) -> Result<Message, Denial> {
    match v {
        Verdict::Allow => Ok(msg),
        Verdict::Rewrite(m) => Ok(m),
        Verdict::Deny(d) => Err(d),
    }
}

/// The capability a client method needs the gateway to have advertised.
fn needed_server_capability(method: &str) -> Option<&'static str> {
    let (family, _) = method.split_once('/')?;
    match family {
        "tools" => Some("tools"),
        "prompts" => Some("prompts"),
        "resources" => Some("resources"),
        "completion" => Some("completions"),
        "logging" => Some("logging"),
        _ => None,
    }
}

fn lifecycle(msg: &Message, cx: &Exchange<'_>) -> Verdict {
    let Some(method) = msg.method() else {
        return Verdict::Allow;
    };
    if method == "initialize" {
        return Verdict::Deny(Denial {
            code: ErrorCode::InvalidRequest,
            public: "the session is already initialized",
        });
    }
    if let Some(cap) = needed_server_capability(method)
        && cx.advertised.get(cap).is_none_or(Value::is_null)
    {
        return Verdict::Deny(Denial {
            code: ErrorCode::MethodNotFound,
            public: "Method not found",
        });
    }
    Verdict::Allow
}

fn client_capability(msg: &Message, cx: &Exchange<'_>) -> Verdict {
    let needed = match msg.method() {
        Some("sampling/createMessage") => "sampling",
        Some("elicitation/create") => "elicitation",
        Some("roots/list") => "roots",
        _ => return Verdict::Allow,
    };
    if cx.session.client_has(needed) {
        Verdict::Allow
    } else {
        Verdict::Deny(Denial {
            code: ErrorCode::MethodNotFound,
            public: "the client did not declare this capability",
        })
    }
}
