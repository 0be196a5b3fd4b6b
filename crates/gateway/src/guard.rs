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
    /// The upstream a message comes from (upstream → client).
    pub(crate) upstream: Option<usize>,
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
        // 2-5 run in the router, which must resolve the target first: authorization by
        //    policy (authz.rs, deny by default), the routing checks (quarantine, listed
        //    names, arguments), approval, and the audit record (ARCHITECTURE.md, "Guard
        //    order"). The router comes last: it picks the upstream and remaps IDs.
        Ok(msg)
    }

    /// Upstream → client, for requests and notifications an upstream sends.
    pub(crate) fn outbound(&self, msg: Message, cx: &Exchange<'_>) -> Result<Message, Denial> {
        // 1. Capabilities: an upstream may ask the client only for what the client
        //    declared (LIFE-03).
        let msg = run(client_capability(&msg, cx), msg)?;
        // 2. Elicitation may not ask for secrets, and its URLs carry no credentials
        //    (FEAT-09, FEAT-11).
        let msg = run(elicitation(&msg), msg)?;
        // 3. A URL elicitation's completion goes only to the client that was asked to
        //    open it (FEAT-12); the ones it is asked to open are remembered.
        let msg = run(elicitation_complete(&msg, cx), msg)?;
        if let Some(idx) = cx.upstream
            && msg.method() == Some("elicitation/create")
            && msg.param_str("mode").as_deref() == Some("url")
            && let Some(id) = msg.param_str("elicitationId")
        {
            cx.session.note_elicitation(idx, &id);
        }
        // Definitions and answers are inspected by the router (see ARCHITECTURE.md).
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
    if !cx.session.client_has(needed) {
        return Verdict::Deny(Denial {
            code: ErrorCode::MethodNotFound,
            public: "the client did not declare this capability",
        });
    }
    let params: Value = msg.params().unwrap_or(Value::Null);
    let refusal = match needed {
        "elicitation" => elicitation_mode(&params, cx.session),
        "sampling" => sampling_features(&params, cx.session),
        _ => None,
    };
    match refusal {
        Some(public) => {
            tracing::warn!(
                reason = public,
                "refused a server request the client cannot take"
            );
            Verdict::Deny(Denial {
                code: ErrorCode::InvalidParams,
                public,
            })
        }
        None => Verdict::Allow,
    }
}

/// FEAT-10: an elicitation only in a mode the client declared (`elicitation: {}`
/// declares form mode, as before modes existed); in URL mode, with an http(s) URL and
/// an `elicitationId`.
fn elicitation_mode(params: &Value, session: &Session) -> Option<&'static str> {
    let mode = params.get("mode").map_or(Some("form"), Value::as_str);
    let declared = |m: &str| {
        session.client_declared(&["elicitation", m])
            || (m == "form"
                && session
                    .client_capabilities
                    .get("elicitation")
                    .and_then(Value::as_object)
                    .is_some_and(serde_json::Map::is_empty))
    };
    match mode {
        Some(m @ ("form" | "url")) if !declared(m) => {
            Some("the client did not declare this elicitation mode")
        }
        Some("form") => None,
        Some("url") => url_elicitation_problem(params),
        _ => Some("unknown elicitation mode"),
    }
}

/// What is wrong with a URL-mode elicitation (FEAT-10): its `url` not an absolute
/// http(s) URL, or no `elicitationId`.
fn url_elicitation_problem(e: &Value) -> Option<&'static str> {
    let url_ok = e
        .get("url")
        .and_then(Value::as_str)
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    let id_ok = e
        .get("elicitationId")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty());
    match (url_ok, id_ok) {
        (false, _) => Some("a URL elicitation needs an http(s) url"),
        (_, false) => Some("a URL elicitation needs an elicitationId"),
        _ => None,
    }
}

/// FEAT-13: sampling with tools only if the client declared `sampling.tools`; a
/// request to include context (`thisServer`, `allServers`) only if it declared
/// `sampling.context`.
fn sampling_features(params: &Value, session: &Session) -> Option<&'static str> {
    if samples_with_tools(params) && !session.client_declared(&["sampling", "tools"]) {
        return Some("the client did not declare sampling with tools");
    }
    let context = params.get("includeContext").and_then(Value::as_str);
    if matches!(context, Some("thisServer" | "allServers"))
        && !session.client_declared(&["sampling", "context"])
    {
        return Some("the client did not declare sampling with context");
    }
    None
}

/// Whether the params of a `sampling/createMessage` offer the model tools (`tools` or
/// `toolChoice`): one round of a tool loop (FEAT-13).
pub(crate) fn samples_with_tools(params: &Value) -> bool {
    ["tools", "toolChoice"]
        .iter()
        .any(|k| params.get(k).is_some_and(|v| !v.is_null()))
}

/// FEAT-12: `notifications/elicitation/complete` only for a URL elicitation this
/// upstream asked this client to open.
fn elicitation_complete(msg: &Message, cx: &Exchange<'_>) -> Verdict {
    if msg.method() != Some("notifications/elicitation/complete") {
        return Verdict::Allow;
    }
    let asked = cx
        .upstream
        .zip(msg.param_str("elicitationId"))
        .is_some_and(|(idx, id)| cx.session.was_asked(idx, &id));
    if asked {
        Verdict::Allow
    } else {
        tracing::warn!(
            "dropped the completion of an elicitation this client was not asked to open (FEAT-12)"
        );
        Verdict::Deny(Denial {
            code: ErrorCode::InvalidParams,
            public: "no such elicitation",
        })
    }
}

/// The JSON-RPC code of an error that asks the client to open URL elicitations
/// first (`URLElicitationRequiredError`).
const URL_ELICITATION_REQUIRED: f64 = -32042.0;

/// FEAT-10, FEAT-11: an upstream's `-32042` error to a client request carries only URL
/// elicitations, each with an http(s) URL without credentials and an
/// `elicitationId`, and goes only to a client that declared URL elicitation. Such an
/// error that does not is replaced by this one (same ID); `None` for every other
/// message.
pub(crate) fn url_elicitation_error(
    msg: &Message,
    session: &Session,
    idx: usize,
) -> Option<Message> {
    if msg.kind() != palisade_wire::Kind::ErrorResponse {
        return None;
    }
    let v = msg.to_value().ok()?;
    let error = v.get("error")?;
    // As a number, however written (`-32042.0` and `-3.2042e4` are the same code to a
    // client whose numbers are doubles).
    if error.get("code").and_then(Value::as_f64) != Some(URL_ELICITATION_REQUIRED) {
        return None;
    }
    let elicitations = error
        .get("data")
        .and_then(|d| d.get("elicitations"))
        .and_then(Value::as_array);
    let problem = if session.client_declared(&["elicitation", "url"]) {
        match elicitations {
            Some(list) if !list.is_empty() => list.iter().find_map(|e| {
                if e.get("mode").and_then(Value::as_str) != Some("url") {
                    Some("an elicitation in it is not in URL mode")
                } else if e
                    .get("url")
                    .and_then(Value::as_str)
                    .is_some_and(url_carries_credentials)
                {
                    Some("an elicitation URL in it carries credentials")
                } else {
                    url_elicitation_problem(e)
                }
            }),
            _ => Some("it lists no elicitations"),
        }
    } else {
        Some("the client did not declare URL elicitation")
    };
    let Some(problem) = problem else {
        for e in elicitations.into_iter().flatten() {
            if let Some(id) = e.get("elicitationId").and_then(Value::as_str) {
                session.note_elicitation(idx, id);
            }
        }
        return None;
    };
    tracing::warn!(
        reason = problem,
        "replaced an upstream's URL-elicitation-required error (FEAT-10)"
    );
    Some(Message::error(
        msg.id(),
        ErrorCode::InternalError,
        "The upstream asked for a URL elicitation the gateway does not pass on",
    ))
}

/// Words that name a secret a form must not collect (FEAT-09): credentials, payment
/// data and one-time codes. Matched as whole words (or plurals) against every name
/// and string of the form, read as words (see `words`).
const SECRET_WORDS: [&str; 38] = [
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pin code",
    "api key",
    "apikey",
    "access key",
    "secret",
    "token",
    "credential",
    "private key",
    "seed phrase",
    "mnemonic",
    "recovery phrase",
    "credit card",
    "card number",
    "cvv",
    "cvc",
    "security code",
    "ssn",
    "social security",
    "one time code",
    "2fa code",
    "passwort",
    "kennwort",
    "mot de passe",
    "contrasena",
    "senha",
    "verification code",
    "authenticator",
    "auth code",
    "ssh key",
    "id rsa",
    "secret key",
    "personal access token",
    "recovery code",
    "backup code",
];

/// FEAT-09 / FEAT-11: an `elicitation/create` in form mode must not ask for secrets;
/// in URL mode its URL must carry no credentials.
fn elicitation(msg: &Message) -> Verdict {
    if msg.method() != Some("elicitation/create") {
        return Verdict::Allow;
    }
    let params: Value = msg.params().unwrap_or(Value::Null);
    if params.get("mode").and_then(Value::as_str) == Some("url") {
        let url = params
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return if url_carries_credentials(url) {
            tracing::warn!("refused an elicitation URL that carries credentials (FEAT-11)");
            Verdict::Deny(Denial {
                code: ErrorCode::InvalidParams,
                public: "elicitation URLs must not carry credentials",
            })
        } else {
            if url.starts_with("http://") {
                tracing::warn!("an elicitation URL is plain http (FEAT-11)");
            }
            Verdict::Allow
        };
    }
    let Some(schema) = params.get("requestedSchema") else {
        return Verdict::Allow;
    };
    // Every name and every string of the form, at any depth (nested objects,
    // `oneOf` titles, descriptions), read as words: camelCase split, `_` `-` `.` as
    // spaces, NFKC and look-alike letters folded, hidden characters removed.
    let (mut labels, mut prose) = (String::new(), String::new());
    schema_words(schema, "", &mut labels, &mut prose);
    let asks = names_secret(&labels) || names_secret(&prose) || short_name(&labels);
    // A form with a free-text field whose message asks for a secret ("type your
    // GitHub password below", field `answer`) collects it all the same.
    let asks = asks
        || (has_free_text(schema)
            && names_secret(&words(
                params
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )));
    if asks {
        tracing::warn!("refused an elicitation that asks for a secret (FEAT-09)");
        return Verdict::Deny(Denial {
            code: ErrorCode::InvalidParams,
            public: "elicitation must not ask for passwords, keys, tokens or payment data",
        });
    }
    Verdict::Allow
}

/// Short names of secrets, matched as whole words only.
const SECRET_SHORT: [&str; 14] = [
    "pwd", "pw", "pass", "otp", "totp", "mfa", "pin", "cvv", "cvc", "ssn", "2fa", "pan", "pat",
    "sk",
];

/// Secrets whose names are unambiguous inside a longer word (`newpassword`,
/// `password1`, `clientsecret`, `accesstoken`): matched within each word.
const SECRET_STEMS: [&str; 14] = [
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "clientsecret",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "bearertoken",
    "credential",
];

/// Whether `words` (as [`words`] gives them) name a secret: a phrase of
/// [`SECRET_WORDS`] as whole words (or its plural), or a word holding one of
/// [`SECRET_STEMS`].
fn names_secret(words: &str) -> bool {
    let padded = format!(
        " {} ",
        words.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    SECRET_WORDS
        .iter()
        .any(|w| padded.contains(&format!(" {w} ")) || padded.contains(&format!(" {w}s ")))
        || words
            .split_whitespace()
            .any(|w| SECRET_STEMS.iter().any(|stem| w.contains(stem)))
}

/// Whether `labels` hold a short name of a secret as a word of its own (`pwd`,
/// `otp`): as a field's name or title, not in a sentence that may say what not to
/// enter.
fn short_name(labels: &str) -> bool {
    labels.split_whitespace().any(|w| SECRET_SHORT.contains(&w))
}

/// `s` as lowercase words: look-alikes and full-width letters folded, hidden
/// characters removed, camelCase split, punctuation read as spaces.
fn words(s: &str) -> String {
    let n = palisade_inspect::normalize(s);
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev_lower = false;
    for c in n.text().chars() {
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else {
            out.push(' ');
        }
    }
    // A word spelled out letter by letter (`P-a-s-s-w-o-r-d`) is read as the word.
    let mut merged: Vec<String> = Vec::new();
    let mut run = String::new();
    for w in out.split_whitespace() {
        if w.chars().count() == 1 {
            run.push_str(w);
            continue;
        }
        if !run.is_empty() {
            merged.push(std::mem::take(&mut run));
        }
        merged.push(w.to_owned());
    }
    if !run.is_empty() {
        merged.push(run);
    }
    merged.join(" ")
}

/// The words of every property name and string in a form's schema: names, titles
/// and values into `labels`, descriptions (sentences, which may say what *not* to
/// enter) into `prose`.
fn schema_words(v: &Value, key: &str, labels: &mut String, prose: &mut String) {
    match v {
        Value::String(s) => {
            let out = if key == "description" { prose } else { labels };
            out.push(' ');
            out.push_str(&words(s));
            out.push(' ');
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| schema_words(i, key, labels, prose)),
        Value::Object(map) => {
            for (k, item) in map {
                if k == "type" {
                    continue;
                }
                if let (true, Value::Object(props)) = (k == "properties", item) {
                    for name in props.keys() {
                        labels.push(' ');
                        labels.push_str(&words(name));
                        labels.push(' ');
                    }
                }
                schema_words(item, k, labels, prose);
            }
        }
        _ => {}
    }
}

/// Whether a form has a field that takes any text (a string that is not a choice,
/// a date, an address or a URI).
fn has_free_text(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            let choice = ["enum", "oneOf", "anyOf", "const"]
                .iter()
                .any(|k| map.contains_key(*k));
            let format = map.get("format").and_then(Value::as_str);
            (map.get("type").and_then(Value::as_str) == Some("string")
                && !choice
                && !matches!(format, Some("date" | "date-time" | "email" | "uri")))
                || map.values().any(has_free_text)
        }
        Value::Array(items) => items.iter().any(has_free_text),
        _ => false,
    }
}

fn url_carries_credentials(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let authority = lower.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    authority.contains('@')
        || lower.split(['?', '&', '#']).skip(1).any(|kv| {
            let key = kv.split('=').next().unwrap_or("");
            matches!(
                key,
                "token"
                    | "access_token"
                    | "id_token"
                    | "code"
                    | "password"
                    | "secret"
                    | "api_key"
                    | "apikey"
                    | "key"
                    | "session"
                    | "sessionid"
                    | "auth"
            )
        })
}

#[cfg(test)]
mod elicitation_tests {
    use serde_json::json;

    use super::*;

    fn ask(params: Value) -> Message {
        Message::request(&palisade_wire::Id::Number(1), "elicitation/create", &params)
    }

    #[test]
    fn feat_09_forms_may_not_ask_for_secrets() {
        for (name, extra) in [
            ("password", json!({})),
            ("api_key", json!({})),
            ("github-token", json!({})),
            ("answer", json!({"description": "Your credit card number"})),
            ("x", json!({"title": "Seed phrase"})),
            ("privateKey", json!({})),
            ("cardNumber", json!({})),
            ("securityCode", json!({})),
            ("pwd", json!({})),
            ("otp", json!({})),
            ("mfa", json!({})),
            ("pass\u{ad}word", json!({})),
            ("p\u{430}ssword", json!({})),
            (
                "choice",
                json!({"oneOf": [{"const": "a", "title": "Your password"}]}),
            ),
            ("password1", json!({})),
            ("newpassword", json!({})),
            ("clientsecret", json!({})),
            ("accesstoken", json!({})),
            ("x", json!({"title": "Password2"})),
            ("passwort", json!({})),
            ("x", json!({"title": "Kennwort"})),
            (
                "x",
                json!({"title": "Verification code from your authenticator app"}),
            ),
            ("x", json!({"title": "GitHub PAT"})),
            ("x", json!({"title": "OpenAI key (sk-...)"})),
            ("x", json!({"title": "P-a-s-s-w-o-r-d"})),
            ("x", json!({"title": "SSH key (contents of id_rsa)"})),
        ] {
            let mut prop = json!({"type": "string"});
            if let (Some(p), Some(e)) = (prop.as_object_mut(), extra.as_object()) {
                p.extend(e.clone());
            }
            let m = ask(
                json!({"message": "?", "requestedSchema": {"type": "object", "properties": {name: prop}}}),
            );
            assert!(matches!(elicitation(&m), Verdict::Deny(_)), "{name}");
        }
        // Nested, and asked for in the message with a free-text field.
        let nested = ask(
            json!({"message": "?", "requestedSchema": {"type": "object", "properties": {
            "login": {"type": "object", "properties": {"password": {"type": "string"}}}}}}),
        );
        assert!(matches!(elicitation(&nested), Verdict::Deny(_)));
        let by_message = ask(
            json!({"message": "Type your GitHub password below", "requestedSchema": {"type": "object", "properties": {
            "answer": {"type": "string"}}}}),
        );
        assert!(matches!(elicitation(&by_message), Verdict::Deny(_)));
        let ok = ask(
            json!({"message": "?", "requestedSchema": {"type": "object", "properties": {
            "name": {"type": "string"}, "age": {"type": "number"}, "tokenizer": {"type": "string", "enum": ["bpe"]}}}}),
        );
        assert!(matches!(elicitation(&ok), Verdict::Allow));
        // A description saying what not to enter (the reference server's form) asks
        // for nothing.
        let warned = ask(
            json!({"message": "?", "requestedSchema": {"type": "object", "properties": {
            "n": {"type": "integer", "description": "Your favorite integer (do not give us your phone number, pin, or other sensitive info)"}}}}),
        );
        assert!(matches!(elicitation(&warned), Verdict::Allow));
        // A message about a password with only a yes/no answer collects no secret.
        let confirm = ask(
            json!({"message": "Reset your password now?", "requestedSchema": {"type": "object", "properties": {
            "ok": {"type": "boolean"}}}}),
        );
        assert!(matches!(elicitation(&confirm), Verdict::Allow));
    }

    #[test]
    fn feat_11_elicitation_urls_carry_no_credentials() {
        for url in [
            "https://example.com/connect?token=abc",
            "https://user:pw@example.com/",
            "https://example.com/cb?state=1&access_token=x",
        ] {
            let m = ask(json!({"mode": "url", "url": url, "message": "go", "elicitationId": "1"}));
            assert!(matches!(elicitation(&m), Verdict::Deny(_)), "{url}");
        }
        let m = ask(
            json!({"mode": "url", "url": "https://example.com/connect?state=1", "message": "go", "elicitationId": "1"}),
        );
        assert!(matches!(elicitation(&m), Verdict::Allow));
    }
}
