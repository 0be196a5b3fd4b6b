use std::collections::HashMap;
use std::path::Path;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn load(text: &str, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new("test.toml"), text, &env(e))
}

const MIN: &str = r#"
[[upstream]]
name = "demo"
transport = "stdio"
command = "/bin/cat"
"#;

#[test]
fn defaults_are_safe() {
    let c = load(MIN, &[]).unwrap();
    assert!(c.listen.ip().is_loopback());
    assert_eq!(c.endpoint, "/mcp");
    assert!(c.namespace);
    assert!(c.allowed_origins.is_empty());
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let text = "[gateway]\nlisten = \"127.0.0.1:1\"\nlistne = \"x\"\n";
    let err = load(text, &[]).unwrap_err().to_string();
    assert!(err.starts_with("test.toml"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("listne"), "{err}");
    let text = format!("{MIN}colour = \"red\"\n");
    let err = load(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("colour") && err.contains("line 6"), "{err}");
}

#[test]
fn interpolation_with_defaults() {
    let e = env(&[("A", "x"), ("EMPTY", "")]);
    assert_eq!(interpolate("${A}-${B:-y}", &e).unwrap(), "x-y");
    assert_eq!(interpolate("${EMPTY:-d}", &e).unwrap(), "d");
    assert_eq!(interpolate("${EMPTY}", &e).unwrap(), "");
    assert_eq!(interpolate("$${A} $A", &e).unwrap(), "${A} $A");
    assert_eq!(interpolate("${A:-}", &e).unwrap(), "x");
    assert!(matches!(interpolate("${B}", &e), Err(InterpolationError::Unset(n)) if n == "B"));
    assert!(interpolate("${A", &e).is_err());
    assert!(interpolate("${1A}", &e).is_err());
    // Values are not re-scanned.
    let e = env(&[("A", "${B}")]);
    assert_eq!(interpolate("${A}", &e).unwrap(), "${B}");
}

#[test]
fn unset_variables_name_the_key_and_line() {
    let text =
        "[[upstream]]\nname = \"up\"\ntransport = \"streamable-http\"\nurl = \"${UPSTREAM_URL}\"\n";
    let err = load(text, &[]).unwrap_err().to_string();
    assert!(
        err.contains("test.toml:4") && err.contains("UPSTREAM_URL"),
        "{err}"
    );
    let c = load(text, &[("UPSTREAM_URL", "http://127.0.0.1:9/mcp")]).unwrap();
    assert!(
        matches!(&c.upstreams[0].transport, Transport::Http(h) if h.url == "http://127.0.0.1:9/mcp")
    );
}

#[test]
fn tr_04_non_loopback_listen_is_refused_without_auth() {
    let text = format!("[gateway]\nlisten = \"0.0.0.0:8787\"\n{MIN}");
    let err = load(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("loopback") && err.contains("[auth]"), "{err}");
    // TLS does not stand in for authentication.
    let text = format!(
        "[gateway]\nlisten = \"0.0.0.0:8787\"\n[gateway.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{MIN}"
    );
    assert!(load(&text, &[]).unwrap_err().to_string().contains("[auth]"));
}

const POLICY: &str = "[policy]\nfile = \"policy.cedar\"\n";

const AUTH: &str = r#"
[policy]
file = "policy.cedar"

[auth]
public_url = "https://mcp.example.com"
[[auth.issuer]]
issuer = "https://idp.example.com"
"#;

#[test]
fn tr_04_non_loopback_listen_needs_tls_or_a_dangerous_opt_out() {
    let bare = format!("[gateway]\nlisten = \"0.0.0.0:8443\"\n{AUTH}{MIN}");
    let err = load(&bare, &[]).unwrap_err().to_string();
    assert!(
        err.contains("test.toml:2") && err.contains("gateway.tls") && err.contains("dangerous"),
        "{err}"
    );

    let tls = format!(
        "[gateway]\nlisten = \"0.0.0.0:8443\"\n[gateway.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{AUTH}{MIN}"
    );
    let c = load(&tls, &[]).unwrap();
    let t = c.tls.as_ref().unwrap();
    assert_eq!(t.cert, Path::new("c.pem"));
    assert_eq!(t.reload_interval, std::time::Duration::from_secs(30));
    assert!(!c.dangerous.plaintext_listener);
    assert!(
        c.summary()
            .starts_with("listen: https://0.0.0.0:8443/mcp\n"),
        "{}",
        c.summary()
    );

    let opted_out = format!("{bare}\n[dangerous]\nplaintext_listener = true\n");
    let c = load(&opted_out, &[]).unwrap();
    assert!(c.dangerous.plaintext_listener && c.tls.is_none());
    assert!(c.summary().contains("DANGEROUS"), "{}", c.summary());
    let no = format!("{bare}\n[dangerous]\nplaintext_listener = false\n");
    assert!(load(&no, &[]).is_err());

    // On loopback the flag changes nothing and is not reported as in force.
    let local = format!("{AUTH}{MIN}\n[dangerous]\nplaintext_listener = true\n");
    assert!(!load(&local, &[]).unwrap().dangerous.plaintext_listener);
    // Unknown keys in the new sections are refused like everywhere else.
    let typo = format!("{MIN}\n[dangerous]\nplaintext = true\n");
    assert!(load(&typo, &[]).is_err());
    let typo = format!("[gateway.tls]\ncert = \"c\"\nkey = \"k\"\nreload = \"1s\"\n{MIN}");
    assert!(load(&typo, &[]).is_err());
    let empty = format!("[gateway.tls]\ncert = \"\"\nkey = \"k\"\n{MIN}");
    assert!(load(&empty, &[]).unwrap_err().to_string().contains("PEM"));
}

#[test]
fn feat_03_namespace_off_needs_a_single_upstream() {
    let two = format!(
        "[gateway]\nnamespace = false\n{MIN}{}",
        MIN.replace("demo", "other")
    );
    assert!(
        load(&two, &[])
            .unwrap_err()
            .to_string()
            .contains("single upstream")
    );
    let one = format!("[gateway]\nnamespace = false\n{MIN}");
    assert!(!load(&one, &[]).unwrap().namespace);
    let dup = format!("{MIN}{MIN}");
    assert!(load(&dup, &[]).unwrap_err().to_string().contains("twice"));
    let bad = MIN.replace("\"demo\"", "\"a__b\"");
    assert!(
        load(&bad, &[]).is_err(),
        "the separator cannot appear in a name"
    );
}

#[test]
fn transports_take_only_their_own_keys() {
    let t = "[[upstream]]\nname = \"x\"\ntransport = \"stdio\"\ncommand = \"c\"\nurl = \"https://a/mcp\"\n";
    assert!(load(t, &[]).unwrap_err().to_string().contains("url"));
    let t = "[[upstream]]\nname = \"x\"\ntransport = \"streamable-http\"\nurl = \"http://example.com/mcp\"\n";
    assert!(load(t, &[]).unwrap_err().to_string().contains("loopback"));
    let t = "[[upstream]]\nname = \"x\"\ntransport = \"streamable-http\"\nurl = \"https://user:pw@example.com/mcp\"\n";
    assert!(load(t, &[]).is_err());
    let t = "[[upstream]]\nname = \"x\"\ntransport = \"carrier-pigeon\"\n";
    assert!(load(t, &[]).is_err());
    assert!(
        load("", &[])
            .unwrap_err()
            .to_string()
            .contains("no upstreams")
    );
}

#[test]
fn limits_are_bounded() {
    let t = format!("[limits]\nmax_request_bytes = 0\n{MIN}");
    assert!(load(&t, &[]).is_err());
    let t = format!("[limits]\nrequest_timeout = \"soon\"\n{MIN}");
    assert!(load(&t, &[]).unwrap_err().to_string().contains("duration"));
    let t = format!("[limits]\nrequest_timeout = \"2h\"\nmax_request_timeout = \"1h\"\n{MIN}");
    assert!(load(&t, &[]).is_err(), "the timeout cannot exceed its cap");
    let t = format!("[limits]\nrequest_timeout = \"5s\"\n{MIN}");
    assert_eq!(
        load(&t, &[]).unwrap().limits.request_timeout,
        std::time::Duration::from_secs(5)
    );
    // FEAT-13: tool loops through the client's model are bounded per request.
    let c = load(MIN, &[]).unwrap();
    assert_eq!(c.limits.sampling_tool_rounds, 32);
    assert!(
        c.summary().contains("sampling tool rounds/request 32"),
        "{}",
        c.summary()
    );
    let t = format!("[limits]\nsampling_tool_rounds = 100\n{MIN}");
    assert_eq!(load(&t, &[]).unwrap().limits.sampling_tool_rounds, 100);
    let t = format!("[limits]\nsampling_tool_rounds = 0\n{MIN}");
    assert!(load(&t, &[]).is_err(), "a loop gets at least one round");
}

#[test]
fn serving_threads_are_one_per_core_unless_configured() {
    let c = load(MIN, &[]).unwrap();
    assert_eq!(c.workers, None);
    assert_eq!(
        c.serving_workers(),
        std::thread::available_parallelism().unwrap().get()
    );
    assert!(c.summary().contains("(one per available core)"));
    let c = load(&format!("[gateway]\nworkers = 3\n{MIN}"), &[]).unwrap();
    assert_eq!(c.serving_workers(), 3);
    assert!(c.summary().contains("\nworkers: 3\n"), "{}", c.summary());
    for bad in ["0", "100000"] {
        let err = load(&format!("[gateway]\nworkers = {bad}\n{MIN}"), &[]).unwrap_err();
        assert!(err.to_string().contains("gateway.workers"), "{err}");
    }
}

#[test]
fn origins_are_normalised_and_checked() {
    let t = format!("[gateway]\nallowed_origins = [\"HTTP://LocalHost:6274\"]\n{MIN}");
    assert_eq!(
        load(&t, &[]).unwrap().allowed_origins,
        vec!["http://localhost:6274"]
    );
    let t = format!("[gateway]\nallowed_origins = [\"*\"]\n{MIN}");
    assert!(load(&t, &[]).is_err());
}

#[test]
fn shipped_examples_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let e = env(&[
        ("UPSTREAM_URL", "http://127.0.0.1:3001/mcp"),
        ("PALISADE_EXE", "/usr/bin/palisade"),
        ("OIDC_ISSUER", "http://127.0.0.1:9000"),
        ("PUBLIC_URL", "http://127.0.0.1:8787"),
    ]);
    let mut n = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            Config::from_toml(&path, &text, &e).unwrap_or_else(|err| panic!("{err}"));
            n += 1;
        }
    }
    assert!(
        n >= 2,
        "examples/quickstart.toml and examples/http-upstream.toml"
    );
}

#[test]
fn auth_section_is_validated() {
    let base = format!(
        "{MIN}{POLICY}[auth]\npublic_url = \"https://gw.example.com/\"\nscopes = [\"mcp:tools\"]\nclaims = \"keycloak\"\n[[auth.issuer]]\nissuer = \"https://idp.example.com/realms/x\"\n"
    );
    let c = load(&base, &[]).unwrap();
    let a = c.auth.unwrap();
    assert_eq!(a.public_url, "https://gw.example.com");
    assert_eq!(a.claims_preset, "keycloak");
    assert!(a.issuers[0].require_at_jwt);
    assert!(
        load(&base.replace("mcp:tools", "*"), &[])
            .unwrap_err()
            .to_string()
            .contains("AUTH-04")
    );
    assert!(
        load(
            &base.replace("https://idp.example.com", "http://idp.example.com"),
            &[]
        )
        .is_err(),
        "SSRF-01: http only to loopback"
    );
    assert!(
        load(
            &base.replace("https://idp.example.com", "http://127.0.0.1:9000"),
            &[]
        )
        .is_ok()
    );
    assert!(
        load(
            &base.replace("https://gw.example.com/", "https://gw.example.com/base"),
            &[]
        )
        .is_err()
    );
    assert!(load(&base.replace("keycloak", "magic"), &[]).is_err());
    let no_issuer = format!("{MIN}{POLICY}[auth]\npublic_url = \"https://gw.example.com\"\n");
    assert!(
        load(&no_issuer, &[])
            .unwrap_err()
            .to_string()
            .contains("auth.issuer")
    );
}

#[test]
fn required_scopes_need_auth() {
    let t = format!("{MIN}required_scopes = [\"files:write\"]\n");
    assert!(load(&t, &[]).unwrap_err().to_string().contains("[auth]"));
}

#[test]
fn introspection_needs_all_three_keys_and_one_issuer() {
    let base = format!(
        "{MIN}{POLICY}[auth]\npublic_url = \"https://gw.example.com\"\n[[auth.issuer]]\nissuer = \"https://idp.example.com\"\n"
    );
    let full = format!(
        "{base}introspection_endpoint = \"https://idp.example.com/introspect\"\nintrospection_client_id = \"gw\"\nintrospection_client_secret = \"${{S}}\"\n"
    );
    let c = load(&full, &[("S", "s3cret")]).unwrap();
    let a = c.auth.unwrap();
    assert!(
        !format!("{a:?}").contains("s3cret"),
        "the secret never prints"
    );
    let partial =
        format!("{base}introspection_endpoint = \"https://idp.example.com/introspect\"\n");
    assert!(
        load(&partial, &[])
            .unwrap_err()
            .to_string()
            .contains("introspection")
    );
    let two = format!(
        "{full}[[auth.issuer]]\nissuer = \"https://idp2.example.com\"\nintrospection_endpoint = \"https://idp2.example.com/i\"\nintrospection_client_id = \"gw\"\nintrospection_client_secret = \"x\"\n"
    );
    assert!(
        load(&two, &[("S", "s")])
            .unwrap_err()
            .to_string()
            .contains("at most one")
    );
}

#[test]
fn auth_16_token_exchange_needs_auth_vault_and_http() {
    let up = "[[upstream]]\nname = \"api\"\ntransport = \"streamable-http\"\nurl = \"https://api.example.com/mcp\"\n\
              [upstream.token_exchange]\ntoken_endpoint = \"https://idp.example.com/token\"\n\
              client_id = \"palisade\"\nclient_secret = \"idp-secret\"\n";
    let vault = "[vault]\nkey_file = \"k\"\n";
    let err = load(&format!("{up}{vault}"), &[]).unwrap_err().to_string();
    assert!(
        err.contains("[auth]") && err.contains("test.toml:6"),
        "{err}"
    );
    let err = load(&format!("{up}{AUTH}"), &[]).unwrap_err().to_string();
    assert!(err.contains("[vault]"), "{err}");

    let c = load(
        &format!("{up}audience = \"api\"\nscopes = [\"read\"]\n{AUTH}{vault}"),
        &[],
    )
    .unwrap();
    let t = c.upstreams[0].token_exchange.as_ref().unwrap();
    assert_eq!(t.token_endpoint, "https://idp.example.com/token");
    assert_eq!(t.audience.as_deref(), Some("api"));
    assert_eq!(t.scopes, ["read"]);
    assert!(
        c.summary()
            .contains("token exchange at https://idp.example.com/token")
    );

    // One credential per upstream; plain http only to loopback; scopes are tokens.
    let both = format!(
        "{up}{AUTH}{vault}[upstream.client_credentials]\ntoken_endpoint = \"https://idp.example.com/token\"\n\
         client_id = \"p\"\nclient_secret = \"s\"\n"
    );
    assert!(
        load(&both, &[])
            .unwrap_err()
            .to_string()
            .contains("not together")
    );
    let plain = up.replace(
        "https://idp.example.com/token",
        "http://idp.example.com/token",
    );
    assert!(
        load(&format!("{plain}{AUTH}{vault}"), &[])
            .unwrap_err()
            .to_string()
            .contains("loopback")
    );
    let bad_scope = format!("{up}scopes = [\"a b\"]\n{AUTH}{vault}");
    assert!(
        load(&bad_scope, &[])
            .unwrap_err()
            .to_string()
            .contains("not a scope")
    );
    let typo = format!("{up}audiences = \"x\"\n{AUTH}{vault}");
    assert!(load(&typo, &[]).is_err());
}

#[test]
fn the_vault_key_comes_from_exactly_one_place() {
    let c = load(
        &format!("{MIN}[vault]\nkey_env = \"PALISADE_VAULT_KEY\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.vault.unwrap().current,
        crate::KeySource::Env("PALISADE_VAULT_KEY".into())
    );
    let c = load(&format!("{MIN}[vault]\nkey_file = \"/k\"\n"), &[]).unwrap();
    assert_eq!(
        c.vault.unwrap().current,
        crate::KeySource::File("/k".into())
    );
    for bad in [
        "[vault]\n",
        "[vault]\nkey_file = \"/k\"\nkey_env = \"K\"\n",
        "[vault]\nkey_env = \"lower\"\n",
        "[vault]\nkey_env = \"1ABC\"\n",
        "[vault]\nkey_env = \"\"\n",
    ] {
        assert!(load(&format!("{MIN}{bad}"), &[]).is_err(), "{bad}");
    }
}

#[test]
fn inspection_protects_by_default_and_is_set_per_upstream() {
    let c = load(MIN, &[]).unwrap();
    assert!(c.inspection.enabled);
    let d = crate::InspectionActions::default();
    assert_eq!(d.injection, crate::OnInjection::Block);
    assert_eq!(d.secrets, crate::OnData::Redact);
    assert_eq!(d.output_schema, crate::OnOutputSchema::Block, "FEAT-05");
    assert_eq!(c.upstreams[0].inspection, d);
    assert!(
        c.summary()
            .contains("inspection: on, rules built-in, injection block"),
        "{}",
        c.summary()
    );

    let t = format!(
        "[inspection]\ninjection = \"spotlight\"\npii = \"redact\"\n{MIN}inspection = {{ secrets = \"block\", output_schema = \"flag\" }}\n"
    );
    let c = load(&t, &[]).unwrap();
    let a = c.upstreams[0].inspection;
    assert_eq!(
        a.injection,
        crate::OnInjection::Spotlight,
        "global default applies"
    );
    assert_eq!(a.pii, crate::OnData::Redact);
    assert_eq!(a.secrets, crate::OnData::Block, "the upstream overrides");
    assert_eq!(a.output_schema, crate::OnOutputSchema::Flag);
    assert!(
        c.summary()
            .contains("demo inspection: injection spotlight, secrets block"),
        "{}",
        c.summary()
    );

    for bad in [
        "[inspection]\ninjection = \"ignore\"\n",
        "[inspection]\nunknown = 1\n",
        "[inspection]\noutput_schema = \"redact\"\n",
    ] {
        assert!(load(&format!("{bad}{MIN}"), &[]).is_err(), "{bad}");
    }
    let off = load(&format!("[inspection]\nenabled = false\n{MIN}"), &[]).unwrap();
    assert!(off.summary().contains("inspection: OFF"));
}

#[test]
fn feat_02_pinning_defaults_to_tofu_and_is_set_per_upstream() {
    let c = load(MIN, &[]).unwrap();
    assert_eq!(c.upstreams[0].pinning, crate::PinMode::Tofu);
    assert!(
        c.summary().contains("demo pinning: tofu"),
        "{}",
        c.summary()
    );
    let t = format!(
        "[pinning]\nmode = \"strict\"\n{MIN}{}",
        MIN.replace("demo", "other") + "pinning = \"off\"\n"
    );
    let c = load(&t, &[]).unwrap();
    assert_eq!(c.upstreams[0].pinning, crate::PinMode::Strict);
    assert_eq!(c.upstreams[1].pinning, crate::PinMode::Off);
    assert!(load(&format!("[pinning]\nmode = \"lax\"\n{MIN}"), &[]).is_err());
}

#[test]
fn an_external_detector_needs_an_explicit_failure_choice() {
    let ext = "[inspection.external]\nkind = \"prompt-shields\"\nurl = \"https://cs.example.com/contentsafety/text:shieldPrompt?api-version=2024-09-01\"\n";
    assert!(
        load(&format!("{ext}{MIN}"), &[]).is_err(),
        "on_error has no default"
    );
    let c = load(&format!("{ext}on_error = \"fail-closed\"\n{MIN}"), &[]).unwrap();
    let e = c.inspection.external.as_ref().unwrap();
    assert_eq!(e.header, "ocp-apim-subscription-key");
    assert_eq!(e.timeout, std::time::Duration::from_secs(2));
    assert!(
        c.summary().contains("inspection external: PromptShields"),
        "{}",
        c.summary()
    );
    let secret = format!("{ext}on_error = \"fail-open\"\nsecret = \"k\"\n{MIN}");
    assert!(
        load(&secret, &[])
            .unwrap_err()
            .to_string()
            .contains("[vault]")
    );
    let plain = format!(
        "{}on_error = \"fail-open\"\n{MIN}",
        ext.replace("https://cs.example.com", "http://cs.example.com")
    );
    assert!(
        load(&plain, &[])
            .unwrap_err()
            .to_string()
            .contains("loopback")
    );
}

#[test]
fn obs_01_the_audit_log_is_on_by_default_and_off_only_as_a_dangerous_setting() {
    let c = load(MIN, &[]).unwrap();
    let a = c.audit.as_ref().unwrap();
    assert_eq!(a.path, Path::new(".palisade/audit.jsonl"));
    assert_eq!(a.signing_key, Path::new(".palisade/audit-signing.key"));
    assert_eq!(a.on_failure, OnAuditFailure::FailClosed);
    assert_eq!(
        a.fsync,
        AuditFsync::Interval(std::time::Duration::from_secs(1))
    );
    assert!(c.summary().contains("audit: .palisade/audit.jsonl"));
    assert_eq!(c.source_sha256.len(), 64);

    let off = load(&format!("[dangerous]\nno_audit_log = true\n{MIN}"), &[]).unwrap();
    assert!(off.audit.is_none());
    assert!(off.summary().contains("audit: OFF (DANGEROUS"));
    let both = format!("[dangerous]\nno_audit_log = true\n[audit]\nfsync = \"always\"\n{MIN}");
    assert!(
        load(&both, &[]).is_err(),
        "contradictory settings are refused"
    );

    let c = load(
        &format!("[audit]\nfsync = \"always\"\non_failure = \"fail-open\"\n{MIN}"),
        &[],
    )
    .unwrap();
    let a = c.audit.unwrap();
    assert_eq!(
        (a.fsync, a.on_failure),
        (AuditFsync::Always, OnAuditFailure::FailOpen)
    );
    assert!(load(&format!("[audit]\nfsync = \"sometimes\"\n{MIN}"), &[]).is_err());
}

#[test]
fn obs_01_audit_sinks_are_checked() {
    let sink = |body: &str| load(&format!("[audit]\n[[audit.sink]]\n{body}\n{MIN}"), &[]);
    let ok = sink("kind = \"syslog\"\naddress = \"siem.example:6514\"\nformat = \"ocsf\"").unwrap();
    assert_eq!(
        ok.audit.unwrap().sinks,
        vec![AuditSink {
            kind: AuditSinkKind::Syslog {
                address: "siem.example:6514".into(),
                host: "siem.example".into(),
                tls: true,
                ca_file: None
            },
            format: AuditFormat::Ocsf
        }]
    );
    for (body, why) in [
        (
            "kind = \"syslog\"\naddress = \"siem.example:514\"\ntls = false",
            "loopback",
        ),
        ("kind = \"syslog\"", "address"),
        ("kind = \"syslog\"\naddress = \"siem.example\"", "host:port"),
        (
            "kind = \"otlp\"\nurl = \"http://collector.example:4318/v1/logs\"",
            "https",
        ),
        ("kind = \"stdout\"\nurl = \"https://x\"", "does not apply"),
        ("kind = \"kafka\"", "one of stdout, syslog, otlp"),
    ] {
        let err = sink(body).unwrap_err().to_string();
        assert!(err.contains(why), "{body}: {err}");
    }
    assert!(sink("kind = \"syslog\"\naddress = \"127.0.0.1:514\"\ntls = false").is_ok());
    assert!(sink("kind = \"otlp\"\nurl = \"http://127.0.0.1:4318/v1/logs\"").is_ok());
}

#[test]
fn auth_20_auth_needs_a_policy_file_and_local_mode_embeds_one() {
    let without = AUTH.replace("[policy]\nfile = \"policy.cedar\"\n", "");
    let err = load(&format!("{without}{MIN}"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[policy]"), "{err}");
    let c = load(&format!("{AUTH}{MIN}"), &[]).unwrap();
    let p = c.policy.as_ref().unwrap();
    assert_eq!(p.file, Path::new("policy.cedar"));
    assert_eq!(p.reload_interval, std::time::Duration::from_secs(2));
    assert!(
        c.summary().contains("policy: policy.cedar"),
        "{}",
        c.summary()
    );
    let local = load(MIN, &[]).unwrap();
    assert!(local.policy.is_none());
    assert!(local.summary().contains("local user may use everything"));
    assert!(load(&format!("{MIN}[policy]\nfile = \"\"\n"), &[]).is_err());
    assert!(
        load(
            &format!("{MIN}[policy]\nfile = \"p\"\nreload = true\n"),
            &[]
        )
        .is_err()
    );
}

#[test]
fn feat_06_upstream_and_tool_attributes_for_policies() {
    let t = format!(
        "{MIN}risk = \"high\"\ndata_class = \"internal\"\n\
         [upstream.tools.\"delete_*\"]\nrisk = \"critical\"\n\
         [upstream.tools.\"delete_all\"]\ndata_class = \"restricted\"\n"
    );
    let c = load(&t, &[]).unwrap();
    let u = &c.upstreams[0];
    assert_eq!(u.attributes.risk.as_deref(), Some("high"));
    assert_eq!(u.attributes.data_class.as_deref(), Some("internal"));
    // Longest pattern first.
    assert_eq!(u.tool_attributes[0].0, "delete_all");
    assert_eq!(u.tool_attributes[1].1.risk.as_deref(), Some("critical"));
    assert!(
        c.summary()
            .contains("demo tool attributes: delete_*: risk critical, data_class -")
    );
    assert!(load(&format!("{MIN}risk = \"very high\"\n"), &[]).is_err());
    assert!(
        load(
            &format!("{MIN}[upstream.tools.\"a/b\"]\nrisk = \"x\"\n"),
            &[]
        )
        .is_err()
    );
    assert!(load(&format!("{MIN}[upstream.tools.x]\nowner = \"x\"\n"), &[]).is_err());
}

#[test]
fn feat_06_prompts_and_resources_take_attributes_too() {
    let t = format!(
        "{MIN}data_class = \"internal\"\n\
         [upstream.prompts.\"admin_*\"]\nrisk = \"high\"\n\
         [upstream.resources.\"file:///hr/*\"]\ndata_class = \"restricted\"\n\
         [upstream.resources.\"file:///hr/public/*\"]\ndata_class = \"public\"\n"
    );
    let c = load(&t, &[]).unwrap();
    let u = &c.upstreams[0];
    assert_eq!(
        u.attributes_for(Item::Prompt("admin_reset")),
        ("high", "internal")
    );
    assert_eq!(
        u.attributes_for(Item::Prompt("summary")),
        ("normal", "internal")
    );
    // The longest pattern first.
    assert_eq!(
        u.attributes_for(Item::Resource("file:///hr/public/holidays.md")),
        ("normal", "public")
    );
    assert_eq!(
        u.attributes_for(Item::Resource("file:///hr/salaries.csv")),
        ("normal", "restricted")
    );
    // A tool of the same name is not a prompt.
    assert_eq!(
        u.attributes_for(Item::Tool("admin_reset")),
        ("normal", "internal")
    );
    assert!(
        c.summary()
            .contains("demo resource attributes: file:///hr/*: risk -, data_class restricted")
    );
    for bad in [
        "[upstream.resources.\"file:///a b\"]\nrisk = \"x\"\n",
        "[upstream.prompts.\"a/b\"]\nrisk = \"x\"\n",
        "[upstream.prompts.x]\ninspection = { injection = \"flag\" }\n",
    ] {
        assert!(load(&format!("{MIN}{bad}"), &[]).is_err(), "{bad}");
    }
}

#[test]
fn inspection_actions_per_tool_lie_over_the_upstreams() {
    let t = format!(
        "[inspection]\npii = \"redact\"\n{MIN}inspection = {{ secrets = \"block\" }}\n\
         [upstream.tools.\"delete_*\"]\nrisk = \"critical\"\n\
         [upstream.tools.delete_all]\ninspection = {{ injection = \"flag\", tools = \"flag\" }}\n"
    );
    let c = load(&t, &[]).unwrap();
    let u = &c.upstreams[0];
    let (glob, a) = &u.tool_inspection[0];
    assert_eq!(glob, "delete_all");
    assert_eq!(
        (a.injection, a.tools, a.secrets, a.pii),
        (
            OnInjection::Flag,
            OnTool::Flag,
            OnData::Block,
            OnData::Redact
        ),
        "the table's, then the upstream's, then [inspection]"
    );
    // A table with actions only gives the tool no attributes, so `delete_*`'s still
    // apply to it.
    assert_eq!(u.tool_attributes.len(), 1);
    assert!(
        c.summary().contains(
            "demo tool inspection: delete_all: injection flag, secrets block, pii redact"
        )
    );
    assert!(
        load(
            &format!("{MIN}[upstream.tools.x]\ninspection = {{ injections = \"flag\" }}\n"),
            &[]
        )
        .is_err()
    );
}

#[test]
fn tracing_needs_a_collector_url_and_a_ratio_within_0_and_1() {
    let t = format!("{MIN}[tracing]\notlp_url = \"http://127.0.0.1:4318/v1/traces\"\n");
    let c = load(&t, &[]).unwrap();
    let tr = c.tracing.as_ref().unwrap();
    assert!((tr.sample_ratio - 1.0).abs() < f64::EPSILON);
    assert!(
        c.summary()
            .contains("tracing: OTLP to http://127.0.0.1:4318/v1/traces")
    );
    assert!(load(&format!("{t}sample_ratio = 1.5\n"), &[]).is_err());
    assert!(load(&format!("{t}sample_ratio = 0.25\n"), &[]).is_ok());
    let remote = t.replace("http://127.0.0.1:4318", "http://collector.example.com");
    assert!(load(&remote, &[]).is_err(), "plain http only to loopback");
}

#[test]
fn stdio_rlimits_are_sizes_durations_and_counts() {
    let t = format!(
        "{MIN}[upstream.rlimits]\nmemory = \"512MiB\"\ncpu_time = \"10m\"\nopen_files = 256\n"
    );
    let c = load(&t, &[]).unwrap();
    let Transport::Stdio(sp) = &c.upstreams[0].transport else {
        panic!("stdio")
    };
    assert_eq!(sp.rlimits.memory_bytes, Some(512 << 20));
    assert_eq!(
        sp.rlimits.cpu_time,
        Some(std::time::Duration::from_secs(600))
    );
    assert_eq!(sp.rlimits.open_files, Some(256));
    assert!(
        c.summary()
            .contains("demo rlimits: memory 536870912 B, cpu 600s, open files 256, processes 256"),
        "{}",
        c.summary()
    );
    for bad in [
        "memory = \"lots\"",
        "memory = \"10KiB\"",
        "open_files = 0",
        "nproc = 5",
    ] {
        let t = format!("{MIN}[upstream.rlimits]\n{bad}\n");
        assert!(load(&t, &[]).is_err(), "{bad}");
    }
    let http = "[[upstream]]\nname = \"h\"\ntransport = \"streamable-http\"\nurl = \"http://127.0.0.1:9/mcp\"\n[upstream.rlimits]\nopen_files = 9\n";
    assert!(load(http, &[]).unwrap_err().to_string().contains("rlimits"));
}

#[test]
fn loc_stdio_upstreams_are_sandboxed_unless_dangerously_switched_off() {
    // On by default, with no paths beyond the system's, no network, and a process cap.
    let c = load(MIN, &[]).unwrap();
    let Transport::Stdio(sp) = &c.upstreams[0].transport else {
        panic!("stdio")
    };
    assert_eq!(sp.sandbox.as_deref(), Some(&crate::SandboxSpec::default()));
    assert_eq!(sp.rlimits.processes, Some(256));
    assert!(
        c.summary()
            .contains("demo sandbox: read [], write [], network none, syscalls deny-list"),
        "{}",
        c.summary()
    );

    let t = format!(
        "{MIN}[upstream.sandbox]\nread = [\"/srv/app\"]\nwrite = [\"/var/tmp/w\"]\nnetwork = \"host\"\n\
         syscalls = [\"read\", \"write\"]\naccept_weaker = [\"landlock\"]\n"
    );
    let c = load(&t, &[]).unwrap();
    let Transport::Stdio(sp) = &c.upstreams[0].transport else {
        panic!("stdio")
    };
    let sb = sp.sandbox.as_ref().unwrap();
    assert_eq!(sb.read, vec![std::path::PathBuf::from("/srv/app")]);
    assert!(sb.host_network);
    assert_eq!(sb.syscalls.as_ref().unwrap().len(), 2);
    assert_eq!(sb.accept_weaker, vec!["landlock".to_owned()]);

    let proxy = format!(
        "{MIN}[upstream.sandbox]\nnetwork = \"proxy\"\nallow_hosts = [\"api.github.com\", \"*.example.com:8443\"]\n"
    );
    let c = load(&proxy, &[]).unwrap();
    let Transport::Stdio(sp) = &c.upstreams[0].transport else {
        panic!("stdio")
    };
    let sb = sp.sandbox.as_ref().unwrap();
    assert_eq!(sb.allow_hosts.len(), 2);
    assert!(!sb.host_network);
    assert!(
        c.summary()
            .contains("network proxy to [\"api.github.com:443\", \"*.example.com:8443\"]"),
        "{}",
        c.summary()
    );

    let off = format!("{MIN}[upstream.dangerous]\nsandbox = \"off\"\n");
    let c = load(&off, &[]).unwrap();
    let Transport::Stdio(sp) = &c.upstreams[0].transport else {
        panic!("stdio")
    };
    assert_eq!(sp.sandbox, None);
    assert_eq!(sp.rlimits.processes, None);
    assert!(c.summary().contains("sandbox: OFF"));

    for bad in [
        "[upstream.sandbox]\nread = [\"relative/path\"]\n",
        "[upstream.sandbox]\nnetwork = \"some\"\n",
        "[upstream.sandbox]\naccept_weaker = [\"apparmor\"]\n",
        "[upstream.sandbox]\nsyscalls = []\n",
        "[upstream.sandbox]\nsyscalls = [\"rm -rf\"]\n",
        "[upstream.sandbox]\nwhatever = 1\n",
        "[upstream.sandbox]\nnetwork = \"proxy\"\n",
        "[upstream.sandbox]\nallow_hosts = [\"api.github.com\"]\n",
        "[upstream.sandbox]\nnetwork = \"host\"\nallow_hosts = [\"api.github.com\"]\n",
        "[upstream.sandbox]\nnetwork = \"proxy\"\nallow_hosts = [\"https://api.github.com\"]\n",
        "[upstream.dangerous]\nsandbox = \"weak\"\n",
        "[upstream.dangerous]\nsandbox = \"off\"\n[upstream.sandbox]\nread = [\"/srv\"]\n",
    ] {
        assert!(load(&format!("{MIN}{bad}"), &[]).is_err(), "{bad}");
    }
    let http = "[[upstream]]\nname = \"h\"\ntransport = \"streamable-http\"\nurl = \"http://127.0.0.1:9/mcp\"\n[upstream.sandbox]\n";
    assert!(load(http, &[]).unwrap_err().to_string().contains("sandbox"));
}
