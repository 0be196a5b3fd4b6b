//! Black-box tests of policy enforcement (AUTH-20, AUTH-12, FEAT-06, FEAT-08): the
//! real binary with Cedar policies, tokens from the in-test OpenID provider, and
//! recording upstreams.

#![allow(
    clippy::disallowed_methods,
    reason = "tests read small bodies from a gateway they started"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod common;

use std::time::Duration;

use common::idp::*;
use common::*;
use serde_json::{Value, json};

/// A gateway with OAuth, the policy text written to a file beside its config, and
/// one recording upstream per name.
struct Setup {
    idp: Idp,
    recs: Vec<Recorder>,
    gw: Gateway,
    aud: String,
    policy: std::path::PathBuf,
}

async fn setup(names: &[&str], policy: &str, extra: &str) -> Setup {
    let idp = Idp::start().await;
    let mut recs = Vec::new();
    let mut upstreams = String::new();
    for n in names {
        let (rec, url) = start_recorder().await;
        rec.extra_tools.lock().unwrap().push(json!({
            "name": "delete_all", "description": "Deletes every record.",
            "inputSchema": {"type": "object"}
        }));
        upstreams.push_str(&http_upstream(n, &url));
        upstreams.push_str("[upstream.tools.\"delete_*\"]\nrisk = \"high\"\n");
        recs.push(rec);
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.cedar");
    std::fs::write(&file, policy).unwrap();
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
         [policy]\nfile = \"{}\"\n{extra}\n\
         [auth]\npublic_url = \"{base}\"\nscopes = [\"mcp:tools\"]\nroles_claims = [\"roles\"]\n\
         groups_claims = [\"groups\"]\n[[auth.issuer]]\nissuer = \"{}\"\n{upstreams}",
        dir.path().join("data").display(),
        file.display(),
        idp.issuer,
    );
    let path = dir.path().join("palisade.toml");
    std::fs::write(&path, config).unwrap();
    let gw = Gateway::spawn(dir, &path, &[]);
    gw.ready().await;
    Setup {
        idp,
        recs,
        gw,
        aud: format!("{base}/mcp"),
        policy: file,
    }
}

impl Setup {
    fn token(&self, sub: &str, scope: &str, roles: &[&str], groups: &[&str]) -> String {
        let mut c = self.idp.claims(&self.aud, sub);
        c["scope"] = json!(scope);
        c["roles"] = json!(roles);
        c["groups"] = json!(groups);
        self.idp.token_with(&c)
    }

    /// A session for a caller with `token`, declaring `capabilities`.
    async fn session(&self, token: &str, capabilities: Value) -> Client {
        self.opened(token, capabilities).await.0
    }

    /// [`Setup::session`], and the answer to its `initialize`.
    async fn opened(&self, token: &str, capabilities: Value) -> (Client, Value) {
        let http = reqwest::Client::builder()
            .default_headers(
                [(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {token}").parse().unwrap(),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .unwrap();
        let mut c = self.gw.client_with(http);
        let mut init = init_body(0);
        init["params"]["capabilities"] = capabilities;
        let answer = c.initialize_with(init).await;
        (c, answer)
    }

    /// The events of the audit log so far.
    fn audit(&self) -> Vec<Value> {
        self.gw.audit_events()
    }

    /// Waits until the audit log has an event matching `f`.
    async fn audited(&self, f: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            if let Some(r) = self.audit().into_iter().find(|r| f(r)) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no such audit record in {:#?}", self.audit());
    }
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

async fn tools(c: &Client) -> Vec<String> {
    names(
        &c.request(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
            .await,
    )
}

const PER_TEAM: &str = "per-team.cedar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_20_feat_06_per_team_lists_are_filtered_and_forbidden_calls_look_unknown() {
    let policy = std::fs::read_to_string(format!(
        "{}/../../examples/policies/{PER_TEAM}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let s = setup(&["crm", "billing", "search"], &policy, "").await;
    let alice = s
        .session(&s.token("alice", "mcp:tools", &[], &["team-a"]), json!({}))
        .await;

    // Alice (team-a) sees crm and search, nothing of billing.
    let seen = tools(&alice).await;
    assert!(seen.iter().any(|t| t == "crm__echo"), "{seen:?}");
    assert!(seen.iter().any(|t| t == "search__echo"), "{seen:?}");
    assert!(!seen.iter().any(|t| t.starts_with("billing__")), "{seen:?}");
    let list = s
        .audited(|r| r["type"] == "list" && r["method"] == "tools/list")
        .await;
    assert!(list["denied"].as_u64().unwrap() > 0, "{list}");
    assert_eq!(list["client"], "test-client");
    // OBS-01: which items, and that no forbid but the default decided it.
    let denied_items: Vec<&str> = list["denied_items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(denied_items.contains(&"billing__echo"), "{list}");
    assert!(
        denied_items.iter().all(|n| n.starts_with("billing__")),
        "{list}"
    );
    assert!(list.get("denied_by").is_none(), "denied by default: {list}");

    // A call she may make goes through, and its record names the permit.
    let ok = alice.call(2, "crm__echo", json!({"x": 1})).await;
    assert!(ok.get("result").is_some(), "{ok}");
    let r = s
        .audited(|r| r["type"] == "call" && r["target"] == "crm__echo")
        .await;
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["policies"], json!(["team-a-uses-crm"]));
    assert_eq!(r["client"], "test-client", "the OAuth client is recorded");

    // A forbidden tool answers exactly as a tool that does not exist.
    let forbidden = alice.call(3, "billing__echo", json!({})).await;
    let missing = alice.call(3, "billing__no_such_tool", json!({})).await;
    assert_eq!(
        forbidden, missing,
        "nothing reveals that billing__echo exists"
    );
    assert_eq!(forbidden["error"]["code"], -32602);
    assert!(
        s.recs[1]
            .bodies()
            .iter()
            .all(|b| b["method"] != "tools/call"),
        "never forwarded"
    );
    let r = s
        .audited(|r| r["type"] == "call" && r["target"] == "billing__echo")
        .await;
    assert_eq!(r["decision"], "deny");
    assert_eq!(r["reason"], "policy");

    // Bob of team-b sees billing, not crm; a caller in no team sees only search.
    let bob = s
        .session(&s.token("bob", "mcp:tools", &[], &["team-b"]), json!({}))
        .await;
    let seen = tools(&bob).await;
    assert!(
        seen.iter().any(|t| t.starts_with("billing__"))
            && !seen.iter().any(|t| t.starts_with("crm__"))
    );
    let nobody = s
        .session(&s.token("carol", "mcp:tools", &[], &[]), json!({}))
        .await;
    assert!(
        tools(&nobody)
            .await
            .iter()
            .all(|t| t.starts_with("search__"))
    );
}

/// OBS-01: a list's record names what the policy kept out and the forbid that did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_01_a_lists_record_names_what_a_forbid_kept_out() {
    let policy = r#"
@id("everyone-everything")
permit(principal, action, resource);

@id("no-listing-of-high-risk")
forbid(principal, action == Palisade::Action::"tools/list", resource)
when { resource.risk == "high" };
"#;
    let s = setup(&["crm"], policy, "").await;
    let alice = s
        .session(&s.token("alice", "mcp:tools", &[], &[]), json!({}))
        .await;
    let seen = tools(&alice).await;
    assert!(seen.contains(&"crm__echo".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"crm__delete_all".to_owned()), "{seen:?}");
    let list = s
        .audited(|r| r["type"] == "list" && r["method"] == "tools/list")
        .await;
    assert_eq!(list["denied"], 1, "{list}");
    assert_eq!(list["denied_items"], json!(["crm__delete_all"]));
    assert_eq!(list["denied_by"], json!(["no-listing-of-high-risk"]));
}

const STEP_UP: &str = r#"
@id("list-everything")
permit(principal, action == Palisade::Action::"tools/list", resource);

@id("call-normal-tools")
permit(principal, action == Palisade::Action::"tools/call", resource)
when { resource.risk == "normal" };

@id("admins-call-high-risk-tools")
@step_up("tools:admin")
permit(principal in Palisade::Role::"admin", action == Palisade::Action::"tools/call", resource)
when { resource.risk == "high" && context.scopes.contains("tools:admin") };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_12_a_scope_the_policy_needs_is_asked_for_with_insufficient_scope() {
    let s = setup(&["files"], STEP_UP, "").await;
    let admin = s.token("root", "mcp:tools", &["admin"], &[]);
    let c = s.session(&admin, json!({})).await;
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":5,"method":"tools/call",
                      "params":{"name":"files__delete_all","arguments":{}}}))
        .await;
    assert_eq!(r.status(), 403);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("tools:admin"),
        "{challenge}"
    );
    assert!(
        challenge.contains("mcp:tools"),
        "keeps the granted scopes (AUTH-13): {challenge}"
    );
    assert!(
        s.recs[0]
            .bodies()
            .iter()
            .all(|b| b["method"] != "tools/call")
    );

    // With the scope: allowed. Without the role, the scope does not help, and no
    // step-up is offered (a scope would not change the answer).
    let stepped = s.token("root", "mcp:tools tools:admin", &["admin"], &[]);
    let c = s.session(&stepped, json!({})).await;
    let ok = c.call(6, "files__delete_all", json!({})).await;
    assert!(ok.get("result").is_some(), "{ok}");
    let plain = s.token("eve", "mcp:tools", &[], &[]);
    let c = s.session(&plain, json!({})).await;
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
                      "params":{"name":"files__delete_all","arguments":{}}}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(body_json(r).await["error"]["code"], -32602);
}

const APPROVAL: &str = r#"
@id("list-everything")
permit(principal, action == Palisade::Action::"tools/list", resource);

@id("call-normal-tools")
permit(principal, action == Palisade::Action::"tools/call", resource)
when { resource.risk == "normal" };

@id("high-risk-needs-approval")
@approval("required")
permit(principal, action == Palisade::Action::"tools/call", resource)
when { resource.risk == "high" };
"#;

/// Posts a call whose answer streams, answers the gateway's elicitation with
/// `answer`, and returns (the elicitation request, the call's final response).
async fn call_answering(c: &Client, id: i64, tool: &str, answer: Value) -> (Value, Value) {
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                      "params":{"name":tool,"arguments":{"everything": true}}}))
        .await;
    assert_eq!(r.status(), 200);
    let mut r = r;
    let mut text = String::new();
    let mut ask = None;
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .unwrap()
            .unwrap();
        let Some(chunk) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&chunk));
        if ask.is_none()
            && let Some(m) = sse_messages(&text)
                .into_iter()
                .find(|m| m["method"] == "elicitation/create")
        {
            let reply = json!({"jsonrpc":"2.0","id":m["id"],"result":answer});
            assert_eq!(c.post(&reply).await.status(), 202);
            ask = Some(m);
        }
    }
    let last = sse_messages(&text).into_iter().last().unwrap();
    (ask.unwrap_or(Value::Null), last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feat_08_high_risk_calls_wait_for_a_person_through_elicitation() {
    let s = setup(&["files"], APPROVAL, "").await;
    let token = s.token("alice", "mcp:tools", &[], &[]);
    let c = s
        .session(&token, json!({"elicitation": {"form": {}}}))
        .await;

    // Approved: the call goes through, and the record says who approved it.
    let (ask, done) = call_answering(
        &c,
        10,
        "files__delete_all",
        json!({"action": "accept", "content": {"approve": true}}),
    )
    .await;
    let message = ask["params"]["message"].as_str().unwrap();
    assert!(
        message.contains("files__delete_all") && message.contains("high-risk-needs-approval"),
        "{message}"
    );
    assert_eq!(
        ask["params"]["requestedSchema"]["properties"]["approve"]["type"],
        "boolean"
    );
    assert!(done.get("result").is_some(), "{done}");
    assert_eq!(calls_made(&s.recs[0]), 1);
    let r = s
        .audited(|r| {
            r["type"] == "call" && r["decision"] == "allow" && r["target"] == "files__delete_all"
        })
        .await;
    assert!(r["approved_by"].as_str().unwrap().contains("alice"), "{r}");

    // Declined: refused with -32014, never forwarded.
    let (_, done) = call_answering(&c, 11, "files__delete_all", json!({"action": "decline"})).await;
    assert_eq!(done["error"]["code"], -32014, "{done}");
    let (_, done) = call_answering(
        &c,
        12,
        "files__delete_all",
        json!({"action": "accept", "content": {"approve": false}}),
    )
    .await;
    assert_eq!(done["error"]["code"], -32014, "{done}");
    assert_eq!(calls_made(&s.recs[0]), 1, "declined calls are not made");
    s.audited(|r| r["type"] == "call" && r["reason"] == "approval declined")
        .await;

    // Calls the policy does not hold pass without asking.
    let plain = c.call(13, "files__echo", json!({})).await;
    assert!(plain.get("result").is_some(), "{plain}");

    // A client that cannot be asked is refused, clearly.
    let blind = s.session(&token, json!({})).await;
    let r = blind.call(14, "files__delete_all", json!({})).await;
    assert_eq!(r["error"]["code"], -32014);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("elicitation"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_20_policy_reloads_atomically_and_a_broken_edit_keeps_the_last_good() {
    let s = setup(&["files"], ALLOW_ALL, "reload_interval = \"1h\"\n").await;
    let token = s.token("alice", "mcp:tools", &[], &[]);
    let c = s.session(&token, json!({})).await;
    assert!(echo_works(&c, 1).await);

    // A broken edit: refused on SIGHUP, recorded, and the last good policy stays.
    std::fs::write(&s.policy, "permit(principal, action, resource").unwrap();
    hangup(&s.gw);
    let refused = s
        .audited(|r| r["type"] == "policy" && r["outcome"] == "refused")
        .await;
    assert_eq!(refused["trigger"], "sighup");
    assert!(
        refused["error"].as_str().unwrap().contains("parse"),
        "{refused}"
    );
    assert!(echo_works(&c, 2).await);

    // A good edit takes effect at once: only echo may be called now.
    std::fs::write(
        &s.policy,
        "@id(\"echo-only\")\npermit(principal, action in [Palisade::Action::\"tools/call\", \
         Palisade::Action::\"tools/list\"], resource) when { resource.name == \"files__echo\" };\n",
    )
    .unwrap();
    hangup(&s.gw);
    s.audited(|r| r["type"] == "policy" && r["outcome"] == "reloaded")
        .await;
    assert!(echo_works(&c, 3).await);
    assert_eq!(
        c.call(4, "files__sum", json!({"a": 1, "b": 2})).await["error"]["code"],
        -32602
    );
    assert_eq!(tools(&c).await, vec!["files__echo".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_20_a_changed_policy_file_is_picked_up_without_a_signal() {
    let s = setup(&["files"], ALLOW_ALL, "reload_interval = \"1s\"\n").await;
    let token = s.token("alice", "mcp:tools", &[], &[]);
    let c = s.session(&token, json!({})).await;
    assert!(echo_works(&c, 1).await);
    std::fs::write(&s.policy, "// nothing is permitted\n").unwrap();
    let r = s
        .audited(|r| r["type"] == "policy" && r["outcome"] == "reloaded")
        .await;
    assert_eq!(r["trigger"], "change");
    assert_eq!(r["policies"], 0);
    assert_eq!(
        c.call(2, "files__echo", json!({})).await["error"]["code"],
        -32602
    );
    assert!(
        tools(&c).await.is_empty(),
        "an empty policy set denies everything"
    );
}

const ALLOW_ALL: &str = "@id(\"all\")\npermit(principal, action, resource);\n";

/// Whether `files__echo` can be called.
async fn echo_works(c: &Client, id: i64) -> bool {
    c.call(id, "files__echo", json!({}))
        .await
        .get("result")
        .is_some()
}

/// How many `tools/call` requests reached the upstream.
fn calls_made(rec: &Recorder) -> usize {
    rec.bodies()
        .iter()
        .filter(|b| b["method"] == "tools/call")
        .count()
}

fn hangup(gw: &Gateway) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn auth_20_a_policy_that_does_not_validate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.cedar");
    std::fs::write(
        &policy,
        "permit(principal, action == Palisade::Action::\"tools/delete\", resource);",
    )
    .unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[policy]\nfile = \"{}\"\n\
             [auth]\npublic_url = \"http://127.0.0.1:9\"\n[[auth.issuer]]\nissuer = \"http://127.0.0.1:9\"\n\
             [[upstream]]\nname = \"up\"\ntransport = \"streamable-http\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
            dir.path().join("data").display(),
            policy.display()
        ),
    )
    .unwrap();
    let out = cli(&["serve"], &config, None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy") && err.contains("tools/delete"),
        "{err}"
    );
    // And without any policy file, the config itself is refused.
    let text = std::fs::read_to_string(&config).unwrap();
    let table = format!("[policy]\nfile = \"{}\"\n", policy.display());
    assert!(text.contains(&table));
    std::fs::write(&config, text.replace(&table, "")).unwrap();
    let out = config_check(&config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[auth] needs a [policy] file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_rate_limits_count_each_oauth_client_apart() {
    let s = setup(
        &["files"],
        ALLOW_ALL,
        // Each session's initialize counts: two sessions and two calls.
        "[limits.rate]\nper_client = \"4/m\"\n",
    )
    .await;
    let token = |sub: &str, client: &str| {
        let mut c = s.idp.claims(&s.aud, sub);
        c["client_id"] = json!(client);
        s.idp.token_with(&c)
    };
    // Two users of one client share its budget.
    let a1 = s.session(&token("alice", "ide"), json!({})).await;
    let a2 = s.session(&token("bob", "ide"), json!({})).await;
    assert!(echo_works(&a1, 1).await);
    assert!(echo_works(&a2, 2).await);
    let over = a1
        .post(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
                      "params":{"name":"files__echo","arguments":{}}}))
        .await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().get("retry-after").is_some());
    assert_eq!(body_json(over).await["error"]["code"], -32013);
    // Another client is not affected.
    let b = s.session(&token("alice", "chat"), json!({})).await;
    assert!(echo_works(&b, 4).await);
    s.audited(|r| r["type"] == "call" && r["reason"] == "rate limit (per client)")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feat_02_a_tool_the_upstream_never_listed_is_not_called() {
    let s = setup(&["files"], ALLOW_ALL, "").await;
    let c = s
        .session(&s.token("alice", "mcp:tools", &[], &[]), json!({}))
        .await;
    // No list yet: the gateway lists for the session, then calls what was listed…
    assert!(echo_works(&c, 1).await);
    // …and answers a name the upstream did not list as unknown, without calling it:
    // a hidden tool was never pinned nor inspected.
    let hidden = c.call(2, "files__hidden_admin", json!({})).await;
    assert_eq!(hidden["error"]["code"], -32602, "{hidden}");
    assert_eq!(calls_made(&s.recs[0]), 1);
    let r = s
        .audited(|r| r["type"] == "call" && r["target"] == "files__hidden_admin")
        .await;
    assert_eq!(r["reason"], "not listed by the upstream");
}

const NO_SEND_AFTER_READ: &str = r#"
@id("all")
permit(principal, action, resource);

@id("no-echo-after-sum")
forbid(principal, action == Palisade::Action::"tools/call", resource)
when { resource.name == "files__echo" && context.called.contains("files__sum") };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feat_06_policies_see_what_the_session_already_used() {
    // A toxic flow: once a session has used one tool (read secrets), another (send
    // mail) is forbidden for the rest of that session.
    let s = setup(&["files"], NO_SEND_AFTER_READ, "").await;
    let token = s.token("alice", "mcp:tools", &[], &[]);
    let c = s.session(&token, json!({})).await;
    assert!(echo_works(&c, 1).await, "allowed before");
    let sum = c.call(2, "files__sum", json!({"a": 1, "b": 2})).await;
    assert!(sum.get("result").is_some(), "{sum}");
    assert!(!echo_works(&c, 3).await, "forbidden after the other tool");
    let r = s
        .audited(|r| r["type"] == "call" && r["decision"] == "deny" && r["target"] == "files__echo")
        .await;
    assert_eq!(r["policies"], json!(["no-echo-after-sum"]));
    // Another session starts clean.
    let fresh = s.session(&token, json!({})).await;
    assert!(echo_works(&fresh, 4).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_07_each_caller_is_offered_only_capabilities_the_policy_could_let_them_use() {
    let policy = r#"
        @id("eng-tools")
        permit(principal in Palisade::Group::"eng",
               action in [Palisade::Action::"tools/list", Palisade::Action::"tools/call"], resource);
        @id("admins-read")
        permit(principal in Palisade::Role::"admin",
               action in [Palisade::Action::"resources/list", Palisade::Action::"resources/read"], resource);"#;
    let s = setup(&["files"], policy, "").await;
    *s.recs[0].resources.lock().unwrap() =
        Some(vec![json!({"uri": "file:///notes.txt", "name": "notes"})]);
    let offered = |answer: &Value| {
        let mut caps: Vec<String> = answer["result"]["capabilities"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        caps.sort();
        caps
    };
    let cases = [
        ("alice", &[][..], &["eng"][..], &["tools"][..]),
        ("carol", &["admin"], &[], &["completions", "resources"]),
        (
            "erin",
            &["admin"],
            &["eng"],
            &["completions", "resources", "tools"],
        ),
        ("dave", &[], &[], &[]),
    ];
    for (who, roles, groups, expected) in cases {
        let (c, answer) = s
            .opened(&s.token(who, "mcp:tools", roles, groups), json!({}))
            .await;
        assert_eq!(offered(&answer), expected, "LIFE-07: {who}: {answer}");
        // What is left out is a method this session does not have.
        let list = c
            .request(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .await;
        if expected.contains(&"tools") {
            assert!(!names(&list).is_empty(), "{who}: {list}");
        } else {
            assert_eq!(list["error"]["code"], -32601, "LIFE-07: {who}: {list}");
        }
    }
    // The operator can see why a client was offered less.
    let logs = s.gw.logs();
    assert!(
        logs.lines().any(|l| l.contains("are not offered")
            && l.contains("dave")
            && l.contains("tools")
            && l.contains("resources")),
        "{logs}"
    );
}

/// FEAT-06: resources carry the attributes the config gives them
/// (`[upstream.resources."<uri glob>"]`, else the upstream's), and a policy reads them
/// as it reads a tool's: a forbid on `restricted` data keeps those URIs out of lists
/// and reads, and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feat_06_resources_carry_their_configured_attributes() {
    let (rec, url) = start_recorder().await;
    *rec.resources.lock().unwrap() = Some(vec![
        json!({"uri": "file:///hr/salaries.csv", "name": "salaries.csv"}),
        json!({"uri": "file:///docs/handbook.md", "name": "handbook.md"}),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.cedar");
    std::fs::write(
        &policy,
        r#"
@id("local-user-uses-everything")
permit(principal, action, resource);

@id("no-restricted-data")
forbid(principal, action in [Palisade::Action::"resources/read", Palisade::Action::"resources/list"], resource)
when { resource.data_class == "restricted" };
"#,
    )
    .unwrap();
    let gw = Gateway::start(
        &format!("[policy]\nfile = \"{}\"\n", policy.display()),
        &format!(
            "{}[upstream.resources.\"file:///hr/*\"]\ndata_class = \"restricted\"\n",
            http_upstream("rec", &url)
        ),
    );
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    let list = c
        .request(&json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}))
        .await;
    let uris: Vec<&str> = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert_eq!(uris, vec!["file:///docs/handbook.md"], "{list}");
    let read = |id: i64, uri: &str| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "resources/read",
                          "params": {"uri": uri}});
        let c = &c;
        async move { c.request(&body).await }
    };
    let ok = read(2, "file:///docs/handbook.md").await;
    assert!(ok.get("result").is_some(), "{ok}");
    let refused = read(3, "file:///hr/salaries.csv").await;
    assert!(refused.get("error").is_some(), "{refused}");
    assert_eq!(
        rec.methods()
            .iter()
            .filter(|m| *m == "resources/read")
            .count(),
        1,
        "the restricted read never reached the upstream"
    );
}
