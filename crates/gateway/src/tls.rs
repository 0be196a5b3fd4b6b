//! The TLS listener: rustls with the aws-lc-rs provider only, TLS 1.3 preferred and
//! TLS 1.2 the minimum, ALPN `h2` and `http/1.1` (TR-04).
//!
//! The certificate chain and key are read from PEM files and swapped in without a
//! restart: the files are checked every `reload_interval` and on SIGHUP. A reload
//! that fails — unreadable file, no certificate, a key that does not match — keeps the
//! certificate in use and logs why, so a half-written renewal never takes the
//! listener down. Handshakes run in their own tasks under a deadline, so a slow or
//! silent client never holds up the accept loop.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// A PEM file larger than this is refused.
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// A handshake not finished in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 512;
/// Finished handshakes waiting for the server to pick them up.
const READY_QUEUE: usize = 64;

/// The provider every TLS object in the gateway uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a certificate chain and its private key, and checks that they belong together.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let read = |p: &Path| -> Result<Vec<u8>, String> {
        let len = std::fs::metadata(p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .len();
        if len > MAX_PEM_BYTES {
            return Err(format!(
                "{}: larger than {MAX_PEM_BYTES} bytes",
                p.display()
            ));
        }
        std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate", cert.display()));
    }
    let key_pem = zeroize::Zeroizing::new(read(key)?);
    // The parse error names the PEM problem, never key material.
    let der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no usable private key ({e})", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(ck)
}

/// Modification time and length of both files: a change in either means reload.
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [one(cert), one(key)]
}

/// The certificate in use, swapped atomically on reload.
#[derive(Debug)]
pub(crate) struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: std::sync::Mutex<Stamp>,
}

impl Certificates {
    /// Loads the files; a failure here stops the start.
    pub(crate) fn open(cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        let provider = provider();
        let before = stamp(cert, key);
        let ck = load(cert, key, &provider)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(ck)),
            stamp: std::sync::Mutex::new(before),
        }))
    }

    /// Reloads if the files changed since the last load (or always, when `force`).
    /// Returns whether a new certificate is now in use.
    pub(crate) fn reload(&self, force: bool) -> bool {
        let now = stamp(&self.cert, &self.key);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *last == now {
                return false;
            }
            *last = now;
        }
        match load(&self.cert, &self.key, &self.provider) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays in use");
                false
            }
        }
    }

    /// Reloads on SIGHUP and whenever the files change, until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; certificates reload on change only");
                None
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            let force = tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => false,
                _ = hangup => true,
            };
            let this = Arc::clone(&self);
            // File reads and key parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || this.reload(force)).await;
        }
    }

    /// The rustls server configuration serving these certificates.
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// A listener that hands the server finished TLS connections.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    stop: CancellationToken,
}

impl TlsListener {
    /// Accepts TCP connections on `tcp` and runs their handshakes in the background.
    pub(crate) fn new(tcp: TcpListener, config: rustls::ServerConfig) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(tcp, acceptor, tx, stop.clone()));
        Ok(Self { ready, local, stop })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Stop accepting (and release the port) as soon as the server lets go.
        self.stop.cancel();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    stop: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            p = Arc::clone(&handshakes).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            match tls {
                Ok(Ok(s)) => {
                    let _ = tx.send((s, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
