//! Routing: which upstream a request is for — by the namespaced name of a tool or
//! prompt, by the URI of a resource (the session's lists, learnt once when unknown),
//! or by what a completion completes — and the upstream's own name for it.

use std::sync::Arc;

use palisade_wire::{ErrorCode, Id, Message};
use serde_json::{Value, json};

use super::{Router, error, has_cap};
use crate::principal::Caller;
use crate::session::Session;

impl Router {
    /// The upstream a routed request is for, resolved the way the router will route it
    /// (names, then the session's resource index, refreshed once when unknown).
    pub(crate) async fn target(&self, session: &Arc<Session>, msg: &Message) -> Option<usize> {
        let method = msg.method()?;
        let params: Value = msg.params().ok()?;
        match method {
            "tools/call" | "prompts/get" => self
                .split_name(params.get("name")?.as_str()?)
                .map(|(i, _)| i),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.route_by_uri(session, params.get("uri")?.as_str()?)
                    .await
            }
            "completion/complete" => {
                let r = params.get("ref")?;
                match r.get("type")?.as_str()? {
                    "ref/prompt" => self.split_name(r.get("name")?.as_str()?).map(|(i, _)| i),
                    _ => self.route_by_uri(session, r.get("uri")?.as_str()?).await,
                }
            }
            _ => None,
        }
    }

    /// Splits `<upstream>__<name>`; `None` for names of no configured upstream.
    pub(super) fn split_name<'a>(&self, name: &'a str) -> Option<(usize, &'a str)> {
        if !self.namespace {
            return Some((0, name));
        }
        let (prefix, rest) = name.split_once("__")?;
        let idx = self.names.iter().position(|n| n == prefix)?;
        (!rest.is_empty()).then_some((idx, rest))
    }

    pub(super) fn prefixed(&self, idx: usize, name: &str) -> String {
        if self.namespace {
            format!("{}__{name}", self.names[idx])
        } else {
            name.to_owned()
        }
    }

    /// `tools/call` and `prompts/get`: find the upstream by the namespaced name and
    /// rewrite the name to the upstream's own.
    pub(super) fn route_by_name(&self, msg: &Message) -> Result<(usize, Message), Box<Message>> {
        let id = msg.id().cloned().unwrap_or(Id::Number(0));
        let unknown = || {
            Box::new(error(
                &id,
                ErrorCode::InvalidParams,
                "Unknown tool or prompt",
            ))
        };
        let name = msg.param_str("name").ok_or_else(|| {
            Box::new(error(
                &id,
                ErrorCode::InvalidParams,
                "params.name is required",
            ))
        })?;
        let (idx, local) = self.split_name(&name).ok_or_else(unknown)?;
        if !self.namespace {
            return Ok((idx, msg.clone()));
        }
        // Splice the upstream's own name into the original bytes: one shallow parse of
        // params instead of a full parse and re-serialisation.
        let rewritten = msg.with_param_str("name", local).ok_or_else(unknown)?;
        Ok((idx, rewritten))
    }

    /// `completion/complete`: route by the prompt or resource it completes for, which
    /// the caller must be allowed to get or read.
    pub(super) async fn route_completion(
        &self,
        session: &Arc<Session>,
        caller: &Caller,
        msg: &Message,
    ) -> (Result<(usize, Message), Box<Message>>, String) {
        let id = msg.id().cloned().unwrap_or(Id::Number(0));
        let bad = || {
            Box::new(error(
                &id,
                ErrorCode::InvalidParams,
                "Invalid completion reference",
            ))
        };
        let Ok(mut v) = msg.to_value() else {
            return (Err(bad()), String::new());
        };
        let Some(r) = v
            .get_mut("params")
            .and_then(|p| p.get_mut("ref"))
            .and_then(Value::as_object_mut)
        else {
            return (Err(bad()), String::new());
        };
        let name = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        match r.get("type").and_then(Value::as_str) {
            // The prompt must be one the caller may get, listed to this session and
            // not held, like `prompts/get`; a refusal looks like a bad reference.
            Some("ref/prompt") => {
                let Some(name) = name("name") else {
                    return (Err(bad()), String::new());
                };
                let Some((idx, local)) = self.split_name(&name) else {
                    return (Err(bad()), name);
                };
                let local = local.to_owned();
                if !self
                    .rule_named(session, caller, "prompts/get", idx, &local, &name)
                    .allow
                    || !self.offered(session, idx, "prompts/get", &name).await
                {
                    return (Err(bad()), name);
                }
                if let Some((held, _)) = self.name_held(session, idx, "prompts/get", &id, &name) {
                    return (Err(Box::new(held)), name);
                }
                r.insert("name".into(), json!(local));
                match Message::from_value(&Value::Object(v)) {
                    Ok(m) => (Ok((idx, m)), name),
                    Err(_) => (Err(bad()), name),
                }
            }
            // The resource: a canonical URI the caller may read and that is not held.
            Some("ref/resource") => {
                let Some(uri) = name("uri") else {
                    return (Err(bad()), String::new());
                };
                if super::authorization::template_not_canonical(&uri).is_some() {
                    return (Err(bad()), uri);
                }
                let Some(idx) = self.route_by_uri(session, &uri).await else {
                    return (Err(bad()), uri);
                };
                if !self.rule_resource(session, caller, idx, &uri).allow {
                    return (Err(bad()), uri);
                }
                if let Some(reason) = self.resource_held(idx, &uri) {
                    let held = Message::error(
                        Some(&id),
                        ErrorCode::Withheld,
                        &format!("This resource is quarantined: {reason}"),
                    );
                    return (Err(Box::new(held)), uri);
                }
                (Ok((idx, msg.clone())), uri)
            }
            _ => (Err(bad()), String::new()),
        }
    }

    /// The upstream that serves `uri`: from this session's lists, refreshed once when
    /// unknown; the only resource upstream if there is one.
    pub(super) async fn route_by_uri(&self, session: &Arc<Session>, uri: &str) -> Option<usize> {
        let owners: Vec<usize> = session
            .links
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.as_ref()
                    .is_some_and(|l| has_cap(&l.capabilities(), "resources"))
            })
            .map(|(i, _)| i)
            .collect();
        let learn = || async {
            for method in ["resources/list", "resources/templates/list"] {
                let probe = Message::request(&Id::Number(0), method, &json!({}));
                let _ = self.list(session, None, &probe, method).await;
            }
        };
        if owners.len() == 1 {
            // One owner needs no routing, but its resources must have been admitted
            // (inspected, pinned, held) before any is read.
            if !session.resource_index.lock().ok()?.learned {
                learn().await;
            }
            return owners.first().copied();
        }
        if let Some(i) = session.resource_index.lock().ok()?.lookup(uri) {
            return Some(i);
        }
        // Unknown: learn the lists, then look again.
        learn().await;
        session.resource_index.lock().ok()?.lookup(uri)
    }
}
