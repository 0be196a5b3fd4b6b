#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

use super::*;

const POLICY: &str = r#"
@id("read-only-by-default")
permit(principal, action in [Palisade::Action::"tools/list", Palisade::Action::"tools/call"], resource)
when { resource.risk == "normal" };

@id("admins-use-high-risk")
permit(principal in Palisade::Role::"admin", action == Palisade::Action::"tools/call", resource)
when { resource.risk == "high" && context.scopes.contains("tools:admin") };

@id("no-flagged-answers-for-finance")
forbid(principal in Palisade::Group::"finance", action, resource)
when { context.verdict == "flagged" };
"#;

fn query<'a>(
    roles: &'a [String],
    groups: &'a [String],
    action: &'a str,
    risk: &'a str,
    c: &'a Ctx,
) -> Query<'a> {
    Query {
        caller: Caller {
            issuer: "https://idp.example",
            subject: "alice",
            roles,
            groups,
        },
        action,
        target: Target {
            kind: Kind::Tool,
            upstream: "files",
            name: "files__delete",
            risk,
            data_class: "unclassified",
            upstream_risk: "normal",
            upstream_data_class: "unclassified",
        },
        context: Facts {
            scopes: &c.scopes,
            time: 1_800_000_000,
            verdict: c.verdict,
            client: "",
            address: "",
            called: &[],
            session_seconds: 0,
        },
    }
}

struct Ctx {
    scopes: Vec<String>,
    verdict: &'static str,
}

fn ctx(scopes: &[&str], verdict: &'static str) -> Ctx {
    Ctx {
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        verdict,
    }
}

#[test]
fn feat_06_decisions_name_the_policies_that_made_them() {
    let p = Policies::parse(POLICY).unwrap();
    assert_eq!(p.len(), 3);
    let none: Vec<String> = Vec::new();
    let d = p
        .decide(&query(
            &none,
            &none,
            "tools/call",
            "normal",
            &ctx(&[], "clean"),
        ))
        .unwrap();
    assert!(d.allow);
    assert_eq!(d.policies, vec!["read-only-by-default".to_owned()]);

    // High risk: denied by default…
    let d = p
        .decide(&query(
            &none,
            &none,
            "tools/call",
            "high",
            &ctx(&["tools:admin"], "clean"),
        ))
        .unwrap();
    assert!(!d.allow);
    assert!(d.policies.is_empty(), "deny by default names no policy");
    // …allowed for an admin with the scope, and not without it.
    let admin = vec!["admin".to_owned()];
    let d = p
        .decide(&query(
            &admin,
            &none,
            "tools/call",
            "high",
            &ctx(&["tools:admin"], "clean"),
        ))
        .unwrap();
    assert!(d.allow && d.policies == vec!["admins-use-high-risk".to_owned()]);
    assert!(
        !p.decide(&query(
            &admin,
            &none,
            "tools/call",
            "high",
            &ctx(&[], "clean")
        ))
        .unwrap()
        .allow
    );

    // A forbid wins over a permit.
    let finance = vec!["finance".to_owned()];
    let d = p
        .decide(&query(
            &none,
            &finance,
            "tools/call",
            "normal",
            &ctx(&[], "flagged"),
        ))
        .unwrap();
    assert!(!d.allow);
    assert_eq!(
        d.policies,
        vec!["no-flagged-answers-for-finance".to_owned()]
    );
}

#[test]
fn auth_20_an_empty_policy_denies_everything() {
    let p = Policies::parse("").unwrap();
    assert!(p.is_empty());
    let none: Vec<String> = Vec::new();
    assert!(
        !p.decide(&query(
            &none,
            &none,
            "tools/list",
            "normal",
            &ctx(&[], "clean")
        ))
        .unwrap()
        .allow
    );
}

#[test]
fn policies_that_do_not_fit_the_schema_are_refused() {
    for (text, why) in [
        ("permit(principal, action, resource", "parse"),
        (
            r#"permit(principal, action == Palisade::Action::"tools/delete", resource);"#,
            "validate",
        ),
        (
            r#"permit(principal, action == Palisade::Action::"tools/call", resource) when { resource.owner == "x" };"#,
            "validate",
        ),
        (
            r#"permit(principal, action == Palisade::Action::"tools/call", resource) when { context.scopes == 3 };"#,
            "validate",
        ),
    ] {
        let e = Policies::parse(text).unwrap_err().to_string();
        assert!(e.contains(why), "{text}: {e}");
    }
}

const APPROVAL: &str = r#"
@id("call-normal")
permit(principal, action == Palisade::Action::"tools/call", resource)
when { resource.risk == "normal" };

@id("high-risk-with-approval")
@approval("required")
@step_up("tools:admin")
permit(principal, action == Palisade::Action::"tools/call", resource)
when { resource.risk == "high" && context.scopes.contains("tools:admin") };
"#;

#[test]
fn feat_08_approval_and_auth_12_step_up_come_from_annotations() {
    let p = Policies::parse(APPROVAL).unwrap();
    assert_eq!(p.step_up_scopes(), ["tools:admin".to_owned()]);
    assert_eq!(p.approvals(), 1);
    let none: Vec<String> = Vec::new();
    let d = p
        .decide(&query(
            &none,
            &none,
            "tools/call",
            "normal",
            &ctx(&[], "clean"),
        ))
        .unwrap();
    assert!(d.allow && !d.approval);
    // High risk without the scope: denied, and the scope to step up to is named.
    let q = ctx(&["mcp:tools"], "clean");
    let high = query(&none, &none, "tools/call", "high", &q);
    assert!(!p.decide(&high).unwrap().allow);
    assert_eq!(p.step_up(&high).unwrap().as_deref(), Some("tools:admin"));
    // With it: allowed, but held for approval.
    let d = p
        .decide(&query(
            &none,
            &none,
            "tools/call",
            "high",
            &ctx(&["tools:admin"], "clean"),
        ))
        .unwrap();
    assert!(d.allow && d.approval, "{d:?}");
    // A denial no scope can lift names no step-up.
    let list = query(&none, &none, "tools/list", "normal", &q);
    assert_eq!(p.step_up(&list).unwrap(), None);
}

#[test]
fn misspelt_annotations_are_refused() {
    for text in [
        r#"@approval("yes") permit(principal, action, resource);"#,
        r#"@approval("required") forbid(principal, action, resource);"#,
        r#"@step_up("two scopes") permit(principal, action, resource);"#,
        r#"@step_up("") permit(principal, action, resource);"#,
    ] {
        let e = Policies::parse(text).unwrap_err().to_string();
        assert!(e.contains("validate"), "{text}: {e}");
    }
}

#[test]
fn upstream_attributes_and_context_facts_reach_policies() {
    let p = Policies::parse(
        r#"permit(principal, action, resource)
           when { resource in Palisade::Upstream::"files"
                  && context.client == "ide" && context.address == "127.0.0.1" };
           forbid(principal, action, resource in Palisade::Upstream::"files")
           when { context.time > 1900000000 };"#,
    )
    .unwrap();
    let none: Vec<String> = Vec::new();
    let c = ctx(&[], "clean");
    let mut q = query(&none, &none, "tools/call", "normal", &c);
    assert!(!p.decide(&q).unwrap().allow, "no client");
    q.context.client = "ide";
    q.context.address = "127.0.0.1";
    assert!(p.decide(&q).unwrap().allow);
    q.context.time = 1_900_000_001;
    assert!(!p.decide(&q).unwrap().allow, "forbidden after that time");
}

#[test]
fn cache_keys_cannot_be_forged_by_names() {
    let none: Vec<String> = Vec::new();
    let c = ctx(&[], "clean");
    let a = query(&none, &none, "tools/call", "high", &c);
    let mut b = a.clone();
    b.target.name = "files__delete5:high";
    let mut a2 = a.clone();
    a2.target.name = "files__delete";
    a2.target.risk = "5:high";
    assert_ne!(cache_key(&b), cache_key(&a2));
    let roles = vec!["a".to_owned()];
    let mut r = a.clone();
    r.caller.roles = &roles;
    let mut g = a.clone();
    g.caller.groups = &roles;
    assert_ne!(cache_key(&r), cache_key(&g), "a role is not a group");
}

#[test]
fn cached_entities_follow_the_caller_and_target() {
    // The same tool decided for an admin, then for someone else: the second decision
    // must not reuse the first caller's roles.
    let p = Policies::parse(POLICY).unwrap();
    let admin = vec!["admin".to_owned()];
    let none: Vec<String> = Vec::new();
    let c = ctx(&["tools:admin"], "clean");
    assert!(
        p.decide(&query(&admin, &none, "tools/call", "high", &c))
            .unwrap()
            .allow
    );
    assert!(
        !p.decide(&query(&none, &none, "tools/call", "high", &c))
            .unwrap()
            .allow
    );
    assert!(
        p.decide(&query(&admin, &none, "tools/call", "high", &c))
            .unwrap()
            .allow
    );
}

#[test]
fn the_context_attributes_policies_read_are_known() {
    let p = Policies::parse(POLICY).unwrap();
    assert!(!p.reads.all);
    let mut attrs: Vec<&str> = p.reads.attrs.iter().map(String::as_str).collect();
    attrs.sort_unstable();
    assert_eq!(attrs, ["scopes", "verdict"]);
    let none = Policies::parse(LOCAL).unwrap();
    assert_eq!(none.reads, ContextReads::default());
    let has = Policies::parse(
        r#"permit(principal, action, resource) when { context has client && context.time > 0 };"#,
    )
    .unwrap();
    let mut attrs: Vec<&str> = has.reads.attrs.iter().map(String::as_str).collect();
    attrs.sort_unstable();
    assert_eq!(attrs, ["client", "time"]);
    // `context` used whole: every attribute counts.
    let whole =
        Policies::parse(r#"permit(principal, action, resource) when { context == context };"#)
            .unwrap();
    assert!(whole.reads.all);
}

const LOCAL: &str = r#"permit(principal, action, resource) when { principal.issuer == "local" };"#;

#[test]
fn remembered_decisions_are_the_decisions_cedar_makes() {
    // Every combination of the facts below, asked in two orders: the answer through
    // the decision cache equals Cedar's own every time.
    let time_policy = r#"
        permit(principal, action, resource) when { context.time < 1900000000 };
        forbid(principal in Palisade::Role::"admin", action, resource)
        when { context.called.contains("files__send") && context.client == "ide" };"#;
    for text in [POLICY, time_policy, LOCAL] {
        let p = Policies::parse(text).unwrap();
        let admin = vec!["admin".to_owned()];
        let finance = vec!["finance".to_owned()];
        let none: Vec<String> = Vec::new();
        let called = vec!["files__send".to_owned()];
        let mut asked = Vec::new();
        for roles in [&admin, &none] {
            for groups in [&finance, &none] {
                for scopes in [&["tools:admin"][..], &[]] {
                    for verdict in ["clean", "flagged"] {
                        for risk in ["normal", "high"] {
                            for time in [1_800_000_000, 1_900_000_001] {
                                for client in ["ide", ""] {
                                    for was_called in [&called, &none] {
                                        asked.push((
                                            roles, groups, scopes, verdict, risk, time, client,
                                            was_called,
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let order: Vec<_> = asked.iter().chain(asked.iter().rev()).collect();
        for (roles, groups, scopes, verdict, risk, time, client, was_called) in order {
            let c = ctx(scopes, verdict);
            let mut q = query(roles, groups, "tools/call", risk, &c);
            q.context.time = *time;
            q.context.client = client;
            q.context.called = was_called;
            let cedar = p.evaluate(&q, cache_key(&q)).unwrap();
            assert_eq!(p.decide(&q).unwrap(), cedar, "{text}: {q:?}");
        }
    }
}

#[test]
fn decisions_are_remembered_by_what_the_policies_read_only() {
    let p = Policies::parse(POLICY).unwrap();
    let none: Vec<String> = Vec::new();
    let c = ctx(&[], "clean");
    let mut q = query(&none, &none, "tools/call", "normal", &c);
    for t in 0..100 {
        q.context.time = 1_800_000_000 + t;
        q.context.session_seconds = t;
        assert!(p.decide(&q).unwrap().allow);
    }
    assert_eq!(p.decisions.0.lock().unwrap().len(), 1, "time is not read");
    let flagged = ctx(&[], "flagged");
    let f = query(&none, &none, "tools/call", "normal", &flagged);
    assert!(p.decide(&f).unwrap().allow);
    assert_eq!(
        p.decisions.0.lock().unwrap().len(),
        2,
        "the verdict is read"
    );
}

#[test]
fn life_07_an_action_is_ruled_out_only_when_no_permit_could_apply() {
    let text = r#"
        @id("eng-prompts")
        permit(principal in Palisade::Group::"eng", action == Palisade::Action::"prompts/list", resource);
        @id("admin-resources")
        permit(principal is Palisade::User in Palisade::Role::"admin",
               action in [Palisade::Action::"resources/list", Palisade::Action::"resources/read"], resource)
        when { context.scopes.contains("files:read") };
        @id("bob-tools")
        permit(principal == Palisade::User::"https://idp.example|bob",
               action in [Palisade::Action::"tools/list", Palisade::Action::"tools/call"], resource);
        @id("no-tools-for-eng")
        forbid(principal in Palisade::Group::"eng", action, resource);"#;
    let p = Policies::parse(text).unwrap();
    let who = |subject: &'static str, roles: &'static [&str], groups: &'static [&str]| {
        (
            subject,
            roles.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>(),
            groups.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>(),
        )
    };
    let callers = [
        who("alice", &[], &[]),
        who("alice", &[], &["eng"]),
        who("alice", &["admin"], &[]),
        who("bob", &[], &[]),
        who("bob", &[], &["eng"]),
    ];
    let could = |(subject, roles, groups): &(&str, Vec<String>, Vec<String>), action: &str| {
        let c = Caller {
            issuer: "https://idp.example",
            subject,
            roles,
            groups,
        };
        p.could_permit(&c, action)
    };
    let expect = [
        // tools/list, prompts/list, resources/list
        (false, false, false),
        (false, true, false),
        (false, false, true),
        (true, false, false),
        // Forbids are not read: bob in eng is denied every tool, yet not ruled out.
        (true, true, false),
    ];
    for (c, (tools, prompts, resources)) in callers.iter().zip(expect) {
        assert_eq!(could(c, "tools/list"), tools, "LIFE-07: {c:?}");
        assert_eq!(could(c, "prompts/list"), prompts, "LIFE-07: {c:?}");
        assert_eq!(could(c, "resources/list"), resources, "LIFE-07: {c:?}");
    }
    // Never ruled out when Cedar would allow: every decision that allows, over
    // callers, actions, targets and scopes, has `could_permit` true.
    for text in [text, POLICY, LOCAL] {
        let p = Policies::parse(text).unwrap();
        for c in &callers {
            for action in [
                "tools/list",
                "tools/call",
                "prompts/list",
                "prompts/get",
                "resources/list",
                "resources/read",
            ] {
                for kind in [Kind::Tool, Kind::Prompt, Kind::Resource] {
                    for scopes in [&["files:read", "tools:admin"][..], &[]] {
                        for risk in ["normal", "high"] {
                            let x = ctx(scopes, "clean");
                            let mut q = query(&c.1, &c.2, action, risk, &x);
                            q.caller.subject = c.0;
                            q.target.kind = kind;
                            if p.decide(&q).unwrap().allow {
                                assert!(p.could_permit(&q.caller, action), "{text}: {q:?}");
                            }
                        }
                    }
                }
            }
        }
    }
}
