//! Black-box tests of the credential vault and upstream credentials (AUTH-15,
//! AUTH-16, AUTH-18): `palisade secrets` on the command line, the gateway's own
//! credential injected into upstream requests, key rotation.

#![allow(
    clippy::disallowed_methods,
    reason = "tests read small bodies from a gateway they started"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

const SECRET: &str = "upstream-secret-7f3a9c";

fn write_config(dir: &Path, url: &str, key_file: &Path, previous: &[&Path]) -> std::path::PathBuf {
    let prev: Vec<String> = previous
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[vault]\nkey_file = \"{}\"\nprevious_key_files = [{}]\n\n{}credential = {{ secret = \"rec-token\" }}\n",
        dir.join("data").display(),
        key_file.display(),
        prev.join(", "),
        http_upstream("rec", url)
    );
    let path = dir.join("palisade.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_16_the_gateway_presents_its_own_credential_from_the_vault() {
    let (rec, url) = start_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let k1 = new_key(dir.path(), "k1.key");
    let config = write_config(dir.path(), &url, &k1, &[]);

    let set = cli(
        &["secrets", "set", "rec-token"],
        &config,
        Some(&format!("{SECRET}\n")),
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let list = cli(&["secrets", "list"], &config, None);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("rec-token") && !listed.contains(SECRET),
        "{listed}"
    );
    // Sealed at rest: the value is nowhere in the data directory.
    for f in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }

    let gw = Gateway::spawn(dir, &config, &[]);
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c
        .post_raw(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rec__echo","arguments":{}}}).to_string())
        .header("authorization", "Bearer client-token-never-forwarded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = rec.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(
            s.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {SECRET}").as_str()),
            "AUTH-16 on every upstream request ({})",
            s.method
        );
    }
    assert!(
        !rec.all_text().contains("client-token-never-forwarded"),
        "AUTH-15"
    );
    assert!(
        !gw.logs().contains(SECRET),
        "AUTH-18: the secret reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_re_encrypts_and_a_missing_secret_refuses_the_start() {
    let (rec, url) = start_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let k1 = new_key(dir.path(), "k1.key");
    let config = write_config(dir.path(), &url, &k1, &[]);
    // No secret stored yet: the gateway must not start without its credential.
    let mut serve = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..200 {
        status = serve.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if status.is_none() {
        let _ = serve.kill();
    }
    let out = serve.wait_with_output().unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the gateway started without its credential"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("rec-token"));

    assert!(
        cli(&["secrets", "set", "rec-token"], &config, Some(SECRET))
            .status
            .success()
    );
    // Rotate: the new key first, the old one readable meanwhile.
    let k2 = new_key(dir.path(), "k2.key");
    let config = write_config(dir.path(), &url, &k2, &[&k1]);
    let rot = cli(&["secrets", "rotate-key"], &config, None);
    assert!(
        String::from_utf8_lossy(&rot.stdout).contains("re-encrypted 1"),
        "{rot:?}"
    );
    // Afterwards the new key alone opens the vault.
    let config = write_config(dir.path(), &url, &k2, &[]);
    let gw = Gateway::spawn(dir, &config, &[]);
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    let auth = rec.seen.lock().unwrap()[0]
        .headers
        .get("authorization")
        .cloned();
    assert_eq!(auth.unwrap().to_str().unwrap(), format!("Bearer {SECRET}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_16_bcp_03_client_credentials_tokens_are_for_the_upstream_only() {
    use std::sync::{Arc, Mutex};
    let (rec, url) = start_recorder().await;
    // A token endpoint that records what the gateway asks for.
    let asked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = Arc::clone(&asked);
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let log = Arc::clone(&log);
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                log.lock().unwrap().push((auth, body));
                (
                    [("content-type", "application/json")],
                    json!({"access_token": "upstream-at-5d1e", "token_type": "Bearer", "expires_in": 600}).to_string(),
                )
            }
        }),
    );
    let as_url = format!("{}/token", serve_loopback(app).await);

    let gw = spawn_with_secret(
        "127.0.0.1:0",
        &format!(
            "{}client_credentials = {{ token_endpoint = \"{as_url}\", client_id = \"palisade\", client_secret = \"as-secret\", scopes = [\"search:read\"] }}\n",
            http_upstream("rec", &url)
        ),
        "as-secret",
        "cs-9b2",
    );
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    for i in 0..3 {
        let r = c.call(i, "rec__echo", json!({})).await;
        assert!(r.get("result").is_some(), "{r}");
    }
    for s in rec.seen.lock().unwrap().iter() {
        assert_eq!(
            s.headers.get("authorization").unwrap(),
            "Bearer upstream-at-5d1e",
            "AUTH-16"
        );
    }
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "one token, reused until it nears expiry");
    let (auth, body) = &asked[0];
    use base64::Engine;
    assert_eq!(
        auth,
        &format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("palisade:cs-9b2")
        )
    );
    assert!(body.contains("grant_type=client_credentials"));
    let encoded_url: String = url
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert!(
        body.contains(&format!("resource={encoded_url}")),
        "BCP-03: audience = the upstream: {body}"
    );
    assert!(
        body.contains("scope=search%3Aread"),
        "minimal scope: {body}"
    );
    assert!(
        !gw.logs().contains("cs-9b2") && !gw.logs().contains("upstream-at-5d1e"),
        "AUTH-18"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_key_may_come_from_an_environment_variable() {
    let (rec, url) = start_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let key_path = new_key(dir.path(), "k.key");
    let key = std::fs::read_to_string(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[vault]\nkey_env = \"TEST_VAULT_KEY\"\n{}credential = {{ secret = \"rec-token\" }}\n",
            dir.path().join("data").display(),
            http_upstream("rec", &url)
        ),
    )
    .unwrap();
    let env = [("TEST_VAULT_KEY", key.trim())];
    let set = cli_with_env(
        &["secrets", "set", "rec-token"],
        &config,
        Some(SECRET),
        &env,
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    // Without the variable the gateway does not start, and says which one is missing.
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("TEST_VAULT_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TEST_VAULT_KEY is not set"), "{err}");
    // With another key, the secret does not open: fail closed, key not echoed.
    let other = Command::new(BIN)
        .args(["secrets", "new-key"])
        .output()
        .unwrap();
    let other = String::from_utf8(other.stdout).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("TEST_VAULT_KEY", other.trim())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(other.trim()));

    let gw = Gateway::spawn(dir, &config, &env);
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c.call(1, "rec__echo", json!({})).await;
    assert!(r.get("result").is_some(), "{r}");
    let seen = rec.seen.lock().unwrap().clone();
    assert!(seen.iter().all(
        |s| s.headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {SECRET}").as_str())
    ));
    assert!(!gw.logs().contains(key.trim()), "the key reached the logs");
}
