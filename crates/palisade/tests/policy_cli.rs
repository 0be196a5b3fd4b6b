//! Black-box tests of `palisade policy check|test|schema` and of the example policies
//! (AUTH-20, FEAT-06): every example validates against the shipped schema, and
//! decisions name the policies that made them.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "tests: a failure is a test failure"
)]

mod common;

use std::path::Path;

use common::BIN;

fn palisade(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn every_example_policy_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "cedar") {
            let (code, out) = palisade(&["policy", "check", path.to_str().unwrap()]);
            assert_eq!(code, 0, "{out}");
            assert!(out.contains("valid"), "{out}");
            n += 1;
        }
    }
    assert!(n >= 3, "examples found: {n}");
}

/// `palisade policy test FILE --action tools/call --principal WHO --resource NAME …`
fn decide(file: &str, who: &str, resource: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "policy",
        "test",
        file,
        "--action",
        "tools/call",
        "--principal",
        who,
        "--resource",
        resource,
    ];
    args.extend_from_slice(extra);
    palisade(&args)
}

#[test]
fn auth_20_policy_test_answers_with_the_deciding_policies() {
    let p = example("read-only-by-default.cedar");
    let (code, out) = decide(&p, "alice", "files__read", &["--risk", "read"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ALLOW by call-read-only-tools"), "{out}");

    // Read-only by default: a tool nobody marked, as much as one marked high.
    for risk in [&[][..], &["--risk", "high"][..]] {
        let (code, out) = decide(&p, "alice", "files__delete", risk);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("DENY") && out.contains("denied by default"),
            "{out}"
        );
    }
    let admin = [
        "--risk",
        "high",
        "--role",
        "admin",
        "--context",
        r#"{"scopes": ["tools:admin"]}"#,
    ];
    let (code, out) = decide(&p, "alice", "files__delete", &admin);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ALLOW by admins-call-other-tools"), "{out}");

    let t = example("per-team.cedar");
    let (code, out) = decide(&t, "bob", "crm__export", &["--group", "team-b"]);
    assert_eq!(code, 1, "another team's upstream: {out}");
    let (code, out) = decide(&t, "bob", "billing__invoice", &["--group", "team-b"]);
    assert_eq!(code, 0, "its own: {out}");
    assert!(out.contains("team-b-uses-billing"), "{out}");
}

#[test]
fn feat_08_auth_12_policy_test_shows_approvals_and_step_ups() {
    let p = example("high-risk-needs-approval.cedar");
    let (code, out) = decide(&p, "alice", "files__delete", &["--risk", "high"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("a token with scope `tools:write` would be allowed"),
        "{out}"
    );
    let write = [
        "--risk",
        "high",
        "--context",
        r#"{"scopes": ["tools:write"]}"#,
    ];
    let (code, out) = decide(&p, "alice", "files__delete", &write);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ALLOW by high-risk-tools-need-approval")
            && out.contains("held until a person approves it"),
        "{out}"
    );
    let (code, out) = decide(&p, "alice", "files__read", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("held"), "{out}");
    let (code, out) = decide(
        &p,
        "alice",
        "files__read",
        &["--context", r#"{"scope": []}"#],
    );
    assert_eq!(code, 2, "a misspelt context key is an error: {out}");
}

#[test]
fn an_invalid_policy_is_named_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit(principal, action == Palisade::Action::\"tools/call\", resource) when { resource.owner == \"me\" };\n",
    )
    .unwrap();
    let (code, out) = palisade(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID") && out.contains("owner"), "{out}");
    let (code, out) = palisade(&["policy", "check", "/nonexistent.cedar"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = palisade(&["policy", "schema"]);
    assert_eq!(code, 0);
    assert!(out.contains("namespace Palisade"));
}

/// `policy test --config`: the config's policy file and the attributes it gives the
/// upstream and each tool, as the gateway would; a flag still overrides.
#[test]
fn feat_06_policy_test_reads_attributes_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[policy]\nfile = \"{}\"\n\
             [[upstream]]\nname = \"files\"\ntransport = \"stdio\"\ncommand = \"/bin/cat\"\n\
             [upstream.tools.\"read_*\"]\nrisk = \"read\"\n\
             [upstream.tools.\"delete_*\"]\nrisk = \"high\"\n",
            example("read-only-by-default.cedar")
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let ask = |resource: &str, extra: &[&str]| {
        let mut args = vec![
            "policy",
            "test",
            "--config",
            cfg,
            "--action",
            "tools/call",
            "--principal",
            "alice",
            "--resource",
            resource,
        ];
        args.extend_from_slice(extra);
        palisade(&args)
    };
    let (code, out) = ask("files__read_file", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ALLOW by call-read-only-tools"), "{out}");
    for resource in ["files__delete_all", "files__write_file"] {
        let (code, out) = ask(resource, &[]);
        assert_eq!(code, 1, "{resource}: {out}");
    }
    let (code, out) = ask("files__read_file", &["--risk", "high"]);
    assert_eq!(code, 1, "the flag overrides the config: {out}");
    let (code, out) = ask("other__read_file", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no upstream `other`"), "{out}");
}
