//! Authorization in the router: the policy's ruling on each call, read, prompt,
//! completion and listed item (through `authz.rs`), the check that a called name was
//! listed to the session, the scope a denied request could step up to (AUTH-12), and
//! the approval of calls the policy holds (FEAT-08).

use std::sync::Arc;

use palisade_wire::{ErrorCode, Id, Message};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{APPROVAL_TIMEOUT, Call, Router};
use crate::authz::Subject;
use crate::principal::Caller;
use crate::session::Session;
use crate::upstream::Sink;

/// What the policy said about a call.
pub(super) struct Ruling {
    pub(super) allow: bool,
    /// The policies that decided it (permits that allowed it, forbids that denied it).
    pub(super) policies: Vec<String>,
    /// Held for a person's approval (FEAT-08).
    pub(super) approval: bool,
}

impl Router {
    /// What the policy decides about a tool or prompt (by `method`: `tools/*` or
    /// `prompts/*`) of upstream `idx`, named `local` there and `full` by the client.
    fn named<'a>(&self, method: &str, idx: usize, local: &'a str, full: &'a str) -> Subject<'a> {
        let (kind, k) = if method.starts_with("prompts/") {
            (palisade_policy::Kind::Prompt, "prompt")
        } else {
            (palisade_policy::Kind::Tool, "tool")
        };
        Subject {
            kind,
            upstream: idx,
            local,
            name: full,
            verdict: self.verdict(idx, k, local),
        }
    }

    /// What the policy decides about resource (or template, by `kind`) `uri` of
    /// upstream `idx`.
    fn resource<'a>(&self, idx: usize, kind: &'static str, uri: &'a str) -> Subject<'a> {
        Subject {
            kind: palisade_policy::Kind::Resource,
            upstream: idx,
            local: uri,
            name: uri,
            verdict: self.verdict(idx, kind, uri),
        }
    }

    fn rule(&self, session: &Session, caller: &Caller, action: &str, s: &Subject<'_>) -> Ruling {
        let d = self.authz.decide(caller, session, action, s);
        Ruling {
            allow: d.allow,
            policies: d.policies,
            approval: d.approval,
        }
    }

    /// The policy's ruling on `caller`'s `method` (`tools/call`, `prompts/get`) on
    /// upstream `idx`'s `local` item, which the client names `full`.
    pub(super) fn rule_named(
        &self,
        session: &Session,
        caller: &Caller,
        method: &str,
        idx: usize,
        local: &str,
        full: &str,
    ) -> Ruling {
        self.rule(
            session,
            caller,
            method,
            &self.named(method, idx, local, full),
        )
    }

    /// The policy's ruling on reading `uri` of upstream `idx` (subscribing counts as
    /// reading).
    /// A URI with a query is decided twice, as itself and without its query, and
    /// allowed only if both are: many servers ignore a query they do not expect, so
    /// a policy that forbids `file:///x` must forbid `file:///x?anything` too.
    pub(super) fn rule_resource(
        &self,
        session: &Session,
        caller: &Caller,
        idx: usize,
        uri: &str,
    ) -> Ruling {
        let rule = |u: &str| {
            self.rule(
                session,
                caller,
                "resources/read",
                &self.resource(idx, "resource", u),
            )
        };
        let whole = rule(uri);
        match uri_base(uri) {
            Some(base) if whole.allow => {
                let without = rule(base);
                if without.allow { whole } else { without }
            }
            _ => whole,
        }
    }

    /// Whether upstream `idx` listed the tool or prompt the client names `full` to
    /// this session. A session that never listed them lists them once now. A name the
    /// upstream did not list — a hidden tool, never pinned nor inspected — is not
    /// called, and is answered as unknown, like a name the policy denies.
    pub(super) async fn offered(
        &self,
        session: &Arc<Session>,
        idx: usize,
        method: &str,
        full: &str,
    ) -> bool {
        let Some((_, local)) = self.split_name(full) else {
            return false;
        };
        let (kind, list) = if method == "prompts/get" {
            ("prompt", "prompts/list")
        } else {
            ("tool", "tools/list")
        };
        let known = |s: &Session| {
            s.listed
                .lock()
                .ok()
                .and_then(|l| l.get(&(idx, kind)).map(|names| names.contains_key(local)))
        };
        if let Some(yes) = known(session) {
            return yes;
        }
        let probe = Message::request(&Id::Number(0), list, &json!({}));
        let _ = self.list(session, None, &probe, list).await;
        known(session).unwrap_or(false)
    }

    /// `flagged` when the item's definition had findings the operator lets through.
    pub(super) fn verdict(&self, idx: usize, kind: &'static str, name: &str) -> &'static str {
        if self.flagged.overflowed(idx) || self.flagged.get(idx, kind, name).is_some() {
            "flagged"
        } else {
            "clean"
        }
    }

    /// For AUTH-12: the scope `caller`'s token lacks for `msg`, when the policy
    /// denies it now and a `@step_up` permit would allow it with that scope.
    pub(crate) async fn step_up(
        &self,
        session: &Arc<Session>,
        caller: &Caller,
        msg: &Message,
    ) -> Option<String> {
        let method = msg.method()?;
        let (action, target) = match method {
            "tools/call" | "prompts/get" => (method, msg.param_str("name")?),
            "resources/read" | "resources/subscribe" => ("resources/read", msg.param_str("uri")?),
            _ => return None,
        };
        let (idx, local) = if action == "resources/read" {
            (self.route_by_uri(session, &target).await?, target.as_str())
        } else {
            self.split_name(&target)?
        };
        let s = if action == "resources/read" {
            self.resource(idx, "resource", &target)
        } else {
            self.named(action, idx, local, &target)
        };
        if self.authz.decide(caller, session, action, &s).allow {
            return None;
        }
        self.authz.step_up(caller, session, action, &s)
    }

    /// FEAT-08: asks the person at the client, through elicitation, whether `call`
    /// may go ahead. `Ok` names who approved; `Err` is the refusal and its reason.
    pub(super) async fn approve(
        &self,
        session: &Arc<Session>,
        call: &Call<'_>,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Result<String, (Message, &'static str)> {
        let id = call.msg.id();
        let refuse = |text: &str, reason: &'static str| {
            (Message::error(id, ErrorCode::NotApproved, text), reason)
        };
        if !session.client_has("elicitation") {
            return Err(refuse(
                "This call needs a person's approval, and this client cannot ask for it \
                 (it did not declare the elicitation capability)",
                "approval unavailable",
            ));
        }
        let Some((ask_id, answer)) = session.ask() else {
            return Err(refuse(
                "Too many approvals are waiting in this session",
                "approval unavailable",
            ));
        };
        let mut arguments = call
            .params
            .and_then(|p| p.get("arguments"))
            .map(Value::to_string)
            .unwrap_or_default();
        // What is not shown cannot be approved knowingly: a long argument list is cut,
        // and the person is told how much of it they do not see.
        if arguments.len() > APPROVAL_SHOWN {
            let whole = arguments.len();
            let mut cut = APPROVAL_SHOWN;
            while !arguments.is_char_boundary(cut) {
                cut -= 1;
            }
            arguments.truncate(cut);
            arguments.push_str(&format!(
                "… [NOT SHOWN: the last {} of {whole} bytes of the arguments — decline unless you know what they hold]",
                whole - cut
            ));
        }
        let what = match call.method {
            "tools/call" => "call the tool",
            "prompts/get" => "get the prompt",
            _ => "read the resource",
        };
        let message = format!(
            "Palisade: the policy ({}) asks a person to approve this. Allow {} to {what} \
             `{}`{}{}?",
            call.policies.join(", "),
            session.principal.subject(),
            call.target,
            call.upstream
                .and_then(|i| self.names.get(i))
                .map_or_else(String::new, |u| format!(" on upstream `{u}`")),
            if arguments.is_empty() {
                String::new()
            } else {
                format!(" with arguments {arguments}")
            },
        );
        let request = Message::request(
            &ask_id,
            "elicitation/create",
            &json!({
                "message": message,
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "approve": {
                            "type": "boolean",
                            "title": "Approve",
                            "description": "Allow this one request",
                        }
                    },
                    "required": ["approve"],
                },
            }),
        );
        if sink.send(request).await.is_err() {
            return Err(refuse(
                "The approval could not be asked",
                "approval unavailable",
            ));
        }
        let answer = tokio::select! {
            a = answer => a.ok(),
            () = tokio::time::sleep(APPROVAL_TIMEOUT) => None,
            () = cancel.cancelled() => None,
            () = session.closed().cancelled() => None,
        };
        let Some(answer) = answer else {
            return Err(refuse(
                "The call was not approved in time",
                "approval timed out",
            ));
        };
        let result: Value = answer
            .to_value()
            .ok()
            .and_then(|mut v| v.get_mut("result").map(Value::take))
            .unwrap_or(Value::Null);
        let accepted = result.get("action").and_then(Value::as_str) == Some("accept")
            && result.get("content").and_then(|c| c.get("approve")) == Some(&json!(true));
        if accepted {
            Ok(format!(
                "{} (elicitation)",
                crate::audit::who(&session.principal)
            ))
        } else {
            Err(refuse("The call was not approved", "approval declined"))
        }
    }

    /// Whether the policy lets `caller` see one listed item (everything, for the
    /// router's own probes); `Err` with the forbids that denied it (none: denied by
    /// default).
    pub(super) fn offer(
        &self,
        session: &Session,
        caller: Option<&Caller>,
        idx: usize,
        kind: &'static str,
        local: &str,
        full: &str,
    ) -> Result<(), Vec<String>> {
        let Some(caller) = caller else { return Ok(()) };
        let (action, s) = match kind {
            "tool" => ("tools/list", self.named("tools/list", idx, local, full)),
            "prompt" => ("prompts/list", self.named("prompts/list", idx, local, full)),
            _ => ("resources/list", self.resource(idx, kind, local)),
        };
        let d = self.authz.decide(caller, session, action, &s);
        if d.allow { Ok(()) } else { Err(d.policies) }
    }
}

/// The bytes of a call's arguments an approval request shows.
const APPROVAL_SHOWN: usize = 2000;

/// Why a resource URI is refused before any decision, if it is: one that another
/// reader could take for a different URI than the string the policy and the
/// quarantine compare. A URI must already be in the form the WHATWG URL parser gives
/// it (lowercase scheme and host, no `.` or `..` segments), with no fragment, no empty
/// segment, no percent-encoded unreserved character and no lowercase percent-encoding
/// — the forms an upstream may read as the same resource as another string.
pub(crate) fn uri_not_canonical(uri: &str) -> Option<String> {
    let Ok(parsed) = reqwest::Url::parse(uri) else {
        return Some("not a URI".into());
    };
    if parsed.as_str() != uri {
        return Some(format!(
            "not in canonical form (as {}); use the URI as listed",
            parsed.as_str()
        ));
    }
    if parsed.fragment().is_some() {
        return Some("a resource URI carries no fragment".into());
    }
    if parsed.query() == Some("") {
        return Some("an empty query".into());
    }
    if !parsed.cannot_be_a_base() && parsed.path().contains("//") {
        return Some("an empty path segment".into());
    }
    let b = uri.as_bytes();
    for (i, _) in uri.match_indices('%') {
        let hex = b.get(i + 1..i + 3).unwrap_or_default();
        let byte = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match byte {
            // Only what may not stand as itself is encoded: controls, space, `"`, `#`,
            // `%`, `/`, `<`, `>`, `?`, `[`, `\`, `]`, `^`, `` ` ``, `{`, `|`, `}`, and
            // bytes of non-ASCII characters. `%28` for `(` reads as `(` to many servers.
            Some(c)
                if c.is_ascii_graphic()
                    && !matches!(
                        c,
                        b'"' | b'#'
                            | b'%'
                            | b'/'
                            | b'<'
                            | b'>'
                            | b'?'
                            | b'['
                            | b'\\'
                            | b']'
                            | b'^'
                            | b'`'
                            | b'{'
                            | b'|'
                            | b'}'
                    ) =>
            {
                return Some("a percent-encoded character that needs none".into());
            }
            Some(_) if hex.iter().any(u8::is_ascii_lowercase) => {
                return Some("lowercase percent-encoding".into());
            }
            Some(_) => {}
            None => return Some("a malformed percent-encoding".into()),
        }
    }
    None
}

/// `uri` without its query, when it has one.
pub(crate) fn uri_base(uri: &str) -> Option<&str> {
    uri.split_once('?').map(|(base, _)| base)
}

/// [`uri_not_canonical`] for a URI or a URI template (RFC 6570, as completion
/// references name them): each `{…}` expression is read as a plain segment.
pub(crate) fn template_not_canonical(template: &str) -> Option<String> {
    let mut plain = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| c + open) else {
            return Some("an unclosed template expression".into());
        };
        plain.push_str(&rest[..open]);
        plain.push('x');
        rest = &rest[close + 1..];
    }
    plain.push_str(rest);
    uri_not_canonical(&plain)
}

#[cfg(test)]
mod uri_tests {
    use super::uri_not_canonical;

    #[test]
    fn auth_20_resource_uris_are_compared_only_in_canonical_form() {
        for ok in [
            "file:///data/a.txt",
            "demo://resource/static/document/architecture.md",
            "https://example.com/a%20b?x=1",
            "urn:example:thing",
            "file:///data/a%2Fb",
            "file:///data/report%20(1).txt",
        ] {
            assert_eq!(uri_not_canonical(ok), None, "{ok}");
        }
        for bad in [
            "demo://resource/static/document/./architecture.md",
            "DEMO://resource/static/document/architecture.md",
            "demo://resource/static/x/../document/architecture.md",
            "file:///data/./a.txt",
            "file:///data//a.txt",
            "file:///data/a.txt#x",
            "file:///data/a.txt?",
            "file:///data/%61.txt",
            "file:///data/%2e%2e/secret",
            "file:///data/report%20%281%29.txt",
            "file:///data/report%20(1%29.txt",
            "FILE:///data/a.txt",
            "file:///data/a%2fb",
            "file:///data/a%zz",
            "https://EXAMPLE.com/a",
            "not a uri",
        ] {
            assert!(uri_not_canonical(bad).is_some(), "{bad}");
        }
        assert_eq!(
            super::template_not_canonical("demo://resource/dynamic/text/{resourceId}"),
            None
        );
        assert!(super::template_not_canonical("demo://resource/./text/{id}").is_some());
        assert!(super::template_not_canonical("demo://resource/./text/{id").is_some());
    }
}
