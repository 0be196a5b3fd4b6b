//! The TLS listener (TR-04): MCP over HTTPS with ALPN, TLS 1.3 preferred and 1.2 the
//! minimum, certificates reloaded without a restart, and a broken renewal that keeps
//! the old certificate. Certificates are generated here, at run time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "tests: a failure is a test failure"
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Gateway, demo_upstream};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test certificate authority that signs leaf certificates for 127.0.0.1.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "palisade test CA");
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A fresh leaf (new key, new serial): (certificate PEM, key PEM, certificate DER).
    fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn reqwest(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    }

    fn rustls(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }
}

/// Writes a file whole, through a rename, as certificate renewal tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn start(ca: &Ca, reload: &str) -> (Gateway, std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let (c, k, der) = ca.leaf();
    std::fs::write(&cert, c).unwrap();
    std::fs::write(&key, k).unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[gateway.tls]\ncert = \"{}\"\nkey = \"{}\"\nreload_interval = \"{reload}\"\n{}",
            dir.path().join("data").display(),
            cert.display(),
            key.display(),
            demo_upstream("demo")
        ),
    )
    .unwrap();
    (Gateway::spawn(dir, &config, &[]), cert, key, der)
}

/// Completes a handshake with `versions` offered; returns the protocol and the
/// server's leaf certificate.
async fn handshake(
    gw: &Gateway,
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(rustls::ProtocolVersion, Vec<u8>), std::io::Error> {
    let addr = gw.base.strip_prefix("https://").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.rustls(versions)));
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await?;
    let (_, conn) = tls.get_ref();
    Ok((
        conn.protocol_version().unwrap(),
        conn.peer_certificates().unwrap()[0].to_vec(),
    ))
}

/// Polls until new connections see the certificate `der`.
async fn wait_for_cert(gw: &Gateway, ca: &Ca, der: &[u8], within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Ok((_, seen)) = handshake(gw, ca, &[&rustls::version::TLS13]).await
            && seen == der
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_04_mcp_over_tls_with_alpn_h2() {
    let ca = Ca::new();
    let (gw, ..) = start(&ca, "30s");
    assert!(gw.base.starts_with("https://127.0.0.1:"), "{}", gw.base);
    let http = ca.reqwest();
    gw.ready_with(&http).await;

    let mut c = gw.client_with(http.clone());
    let init = c.initialize().await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    let list = common::body_json(r).await;
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{list}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://{}/healthz",
            gw.base.strip_prefix("https://").unwrap()
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // Nor does a client that does not trust the certificate.
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", gw.base))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_04_tls_13_preferred_12_minimum() {
    let ca = Ca::new();
    let (gw, ..) = start(&ca, "30s");
    gw.ready_with(&ca.reqwest()).await;

    let both = [&rustls::version::TLS13, &rustls::version::TLS12];
    let (v, _) = handshake(&gw, &ca, &both).await.unwrap();
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
    let (v, _) = handshake(&gw, &ca, &[&rustls::version::TLS12])
        .await
        .unwrap();
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);

    // A TLS 1.1 ClientHello (no supported_versions extension) is answered with a
    // fatal alert, never a ServerHello.
    let addr = gw.base.strip_prefix("https://").unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut reply = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply[0], 21, "an alert record, not a handshake: {reply:?}");
    assert_eq!(reply[5], 2, "fatal: {reply:?}");
}

/// A minimal TLS 1.1 ClientHello offering TLS_RSA_WITH_AES_128_CBC_SHA and
/// TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0xc0, 0x13]);
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    let mut hs = vec![0x01, 0x00];
    hs.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_04_certificates_reload_without_a_restart() {
    let ca = Ca::new();
    let (gw, cert, key, first) = start(&ca, "1s");
    let http = ca.reqwest();
    gw.ready_with(&http).await;
    let mut c = gw.client_with(http.clone());
    c.initialize().await;
    let (_, seen) = handshake(&gw, &ca, &[&rustls::version::TLS13])
        .await
        .unwrap();
    assert_eq!(seen, first);

    // A renewal written to disk is picked up by the periodic check.
    let (c2, k2, second) = ca.leaf();
    replace(&key, &k2);
    replace(&cert, &c2);
    assert!(
        wait_for_cert(&gw, &ca, &second, Duration::from_secs(10)).await,
        "the renewed certificate was not served:\n{}",
        gw.logs()
    );
    // The session opened before the reload still works.
    let r = c
        .call(3, "demo__echo", json!({"text": "after reload"}))
        .await;
    assert!(r.to_string().contains("after reload"), "{r}");

    // A broken renewal (a key that does not match) keeps the certificate in use.
    let (c3, _, third) = ca.leaf();
    replace(&cert, &c3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, seen) = handshake(&gw, &ca, &[&rustls::version::TLS13])
        .await
        .unwrap();
    assert_eq!(
        seen, second,
        "a mismatched key must not replace the certificate"
    );
    assert_ne!(seen, third);
    assert!(gw.logs().contains("does not match"), "{}", gw.logs());
    assert!(
        !gw.logs().contains("PRIVATE KEY"),
        "key material in the logs"
    );
    gw.ready_with(&http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_04_sighup_reloads_certificates_at_once() {
    let ca = Ca::new();
    // The periodic check is far away; only SIGHUP can explain a reload.
    let (gw, cert, key, _) = start(&ca, "1h");
    gw.ready_with(&ca.reqwest()).await;
    let (c2, k2, second) = ca.leaf();
    replace(&key, &k2);
    replace(&cert, &c2);
    std::process::Command::new("kill")
        .arg("-HUP")
        .arg(gw.pid().to_string())
        .status()
        .unwrap();
    assert!(
        wait_for_cert(&gw, &ca, &second, Duration::from_secs(10)).await,
        "SIGHUP did not reload:\n{}",
        gw.logs()
    );
    // The gateway is still up after the signal.
    gw.ready_with(&ca.reqwest()).await;
}

#[test]
fn tr_04_a_key_that_does_not_match_stops_the_start() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let (c, _, _) = ca.leaf();
    let (_, k, _) = ca.leaf();
    std::fs::write(dir.path().join("cert.pem"), c).unwrap();
    std::fs::write(dir.path().join("key.pem"), k).unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{0}/data\"\n[gateway.tls]\ncert = \"{0}/cert.pem\"\nkey = \"{0}/key.pem\"\n{1}",
            dir.path().display(),
            demo_upstream("demo")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    // `config check` loads the files the same way.
    let out = std::process::Command::new(common::BIN)
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
}
