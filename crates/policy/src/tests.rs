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
    context: Value,
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
        },
        context,
    }
}

fn ctx(scopes: &[&str], verdict: &str) -> Value {
    json!({"scopes": scopes, "time": 1_800_000_000_i64, "verdict": verdict})
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
            ctx(&[], "clean"),
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
            ctx(&["tools:admin"], "clean"),
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
            ctx(&["tools:admin"], "clean"),
        ))
        .unwrap();
    assert!(d.allow && d.policies == vec!["admins-use-high-risk".to_owned()]);
    assert!(
        !p.decide(&query(
            &admin,
            &none,
            "tools/call",
            "high",
            ctx(&[], "clean")
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
            ctx(&[], "flagged"),
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
            ctx(&[], "clean")
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
