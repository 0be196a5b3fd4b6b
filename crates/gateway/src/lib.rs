//! Palisade's gateway: every byte of network I/O happens in this crate.
//!
//! [`run`] binds the listener, starts the stdio upstreams, serves the Streamable
//! HTTP endpoint until the shutdown future resolves, then drains: new requests get
//! 503, in-flight requests get up to `limits.shutdown_grace`, sessions are closed
//! (upstream sessions deleted), and stdio children are stopped — stdin closed, then
//! SIGTERM, then SIGKILL (LOC-06).

#![forbid(unsafe_code)]

mod alerts;
mod args;
mod audit;
mod audit_sinks;
mod auth;
mod authz;
mod credentials;
mod edge;
mod egress;
mod endpoint;
mod external;
mod guard;
mod icons;
mod inspect;
mod limits;
mod metrics;
mod otlp;
mod pins;
mod principal;
mod refusal;
mod router;
mod session;
mod stream;
mod tls;
mod traces;
mod upstream;
mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::get;
use palisade_config::Config;
use palisade_store::SqliteStore;
pub use palisade_store::vault::{Kek, Secret, Vault};
use tokio_util::sync::CancellationToken;

pub use audit::arguments_mac;
pub use principal::Principal;
pub use upstream::stdio::{TooLong, read_line_bounded, resolve_program, sandbox_profile};

/// The hash under which the gateway pins a listed tool or prompt definition.
pub fn pin_hash(definition: &serde_json::Value) -> String {
    pins::canonical(definition).1
}

use crate::endpoint::App;
use crate::router::{Router, UpstreamEntry};
use crate::session::SessionTable;

/// The gateway could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] palisade_store::StoreError),
    /// Anything else that prevents a start.
    #[error("{0}")]
    Start(String),
}

/// Checks that the TLS certificate and key load and belong together, as `run` would.
pub fn check_tls(tls: &palisade_config::Tls) -> Result<(), GatewayError> {
    tls::Certificates::open(&tls.cert, &tls.key)
        .map(drop)
        .map_err(|e| GatewayError::Start(format!("TLS: {e}")))
}

/// Reads the vault's key-encryption keys: the current one first, then earlier ones.
pub fn vault_keys(keys: &palisade_config::VaultKeys) -> Result<Vec<Kek>, GatewayError> {
    use palisade_config::KeySource;
    let read_file = |path: &std::path::Path| {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            GatewayError::Start(format!("cannot read vault key {}: {e}", path.display()))
        })?);
        Kek::parse(&text).map_err(|e| GatewayError::Start(format!("{}: {e}", path.display())))
    };
    let current = match &keys.current {
        KeySource::File(path) => read_file(path)?,
        KeySource::Env(name) => {
            let text = zeroize::Zeroizing::new(std::env::var(name).map_err(|_| {
                GatewayError::Start(format!("the vault key variable {name} is not set"))
            })?);
            Kek::parse(&text).map_err(|e| GatewayError::Start(format!("{name}: {e}")))?
        }
    };
    std::iter::once(Ok(current))
        .chain(keys.previous_key_files.iter().map(|p| read_file(p)))
        .collect()
}

/// The vault over an already open store.
async fn open_vault_with(config: &Config, store: &SqliteStore) -> Result<Vault, GatewayError> {
    let keys = config
        .vault
        .as_ref()
        .ok_or_else(|| GatewayError::Start("the configuration has no [vault] section".into()))?;
    Vault::new(store.clone(), vault_keys(keys)?).map_err(|e| GatewayError::Start(e.to_string()))
}

/// Opens the vault of a configuration.
pub async fn open_vault(config: &Config) -> Result<Vault, GatewayError> {
    let keys = config
        .vault
        .as_ref()
        .ok_or_else(|| GatewayError::Start("the configuration has no [vault] section".into()))?;
    let store = SqliteStore::open(&config.data_dir).await?;
    Vault::new(store, vault_keys(keys)?).map_err(|e| GatewayError::Start(e.to_string()))
}

/// Resolves each upstream's credential from the vault: a static secret becomes a
/// sensitive header, a client-credentials grant a token source. A missing or
/// unreadable secret refuses the start (fail closed).
async fn upstream_credentials(
    config: &Config,
    store: &SqliteStore,
) -> Result<Vec<Option<upstream::http::Credential>>, GatewayError> {
    use palisade_config::Transport;
    let mut out = Vec::new();
    let mut vault = None;
    for u in &config.upstreams {
        let secret_name = match (&u.credential, &u.client_credentials, &u.token_exchange) {
            (Some(c), _, _) => &c.secret,
            (None, Some(cc), _) => &cc.client_secret,
            (None, None, Some(te)) => &te.client_secret,
            (None, None, None) => {
                out.push(None);
                continue;
            }
        };
        if vault.is_none() {
            let keys = config
                .vault
                .as_ref()
                .ok_or_else(|| GatewayError::Start("credentials need a [vault] section".into()))?;
            vault = Some(
                Vault::new(store.clone(), vault_keys(keys)?)
                    .map_err(|e| GatewayError::Start(e.to_string()))?,
            );
        }
        let Some(v) = &vault else { continue };
        let secret = v
            .get(secret_name)
            .await
            .map_err(|e| GatewayError::Start(format!("upstream {}: {e}", u.name)))?;
        // `config` allows token credentials only on Streamable HTTP upstreams.
        let url = match &u.transport {
            Transport::Http(h) => h.url.clone(),
            Transport::Stdio(_) => String::new(),
        };
        if let Some(cc) = &u.client_credentials {
            out.push(Some(upstream::http::Credential::Token(Arc::new(
                credentials::TokenSource::new(
                    cc.token_endpoint.clone(),
                    cc.client_id.clone(),
                    secret,
                    cc.scopes.clone(),
                    url,
                ),
            ))));
            continue;
        }
        if let Some(te) = &u.token_exchange {
            out.push(Some(upstream::http::Credential::Exchange(Arc::new(
                credentials::ExchangeSource::new(te, secret, url),
            ))));
            continue;
        }
        let Some(c) = &u.credential else { continue };
        let mut value = zeroize::Zeroizing::new(c.prefix.as_bytes().to_vec());
        value.extend_from_slice(secret.expose());
        let mut header = reqwest::header::HeaderValue::from_bytes(&value).map_err(|_| {
            GatewayError::Start(format!(
                "upstream {}: the secret is not a valid header value",
                u.name
            ))
        })?;
        header.set_sensitive(true);
        let name = reqwest::header::HeaderName::from_bytes(c.header.as_bytes()).map_err(|_| {
            GatewayError::Start(format!("upstream {}: bad credential header", u.name))
        })?;
        out.push(Some(upstream::http::Credential::Static(name, header)));
    }
    Ok(out)
}

/// Runs the gateway until `shutdown` resolves, then drains and stops.
///
/// `on_ready` is called with the bound address once the listener accepts.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr) + Send,
) -> Result<(), GatewayError> {
    let store = Arc::new(SqliteStore::open(&config.data_dir).await?);
    // The key call records hash arguments under; its ID goes in the log's start record.
    let hash_key = match &config.audit {
        Some(a) => Some(
            palisade_audit::key::HashKey::load_or_create(&a.hash_key)
                .map_err(|e| GatewayError::Start(e.to_string()))?,
        ),
        None => None,
    };
    let mut sinks = None;
    let audit_log = match &config.audit {
        None => {
            tracing::warn!("DANGEROUS: the audit log is off ([dangerous] no_audit_log)");
            None
        }
        Some(a) => {
            let (s, tee) = audit_sinks::Sinks::start(
                &a.sinks,
                &upstream::http::client().map_err(GatewayError::Start)?,
            )?;
            sinks = Some(s);
            let log = palisade_audit::AuditLog::open(palisade_audit::AuditOptions {
                path: a.path.clone(),
                key: a.signing_key.clone(),
                fsync: match a.fsync {
                    palisade_config::AuditFsync::Always => palisade_audit::Fsync::Always,
                    palisade_config::AuditFsync::Never => palisade_audit::Fsync::Never,
                    palisade_config::AuditFsync::Interval(d) => palisade_audit::Fsync::Interval(d),
                },
                checkpoint_every: a.checkpoint_every,
                checkpoint_interval: a.checkpoint_interval,
                max_file_bytes: a.max_file_bytes,
                keep_files: a.keep_files,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                config_sha256: config.source_sha256.clone(),
                hash_key_id: hash_key.as_ref().map(|k| k.id().to_owned()),
                tee,
            })
            .map_err(|e| GatewayError::Start(e.to_string()))?;
            tracing::info!(path = %a.path.display(), "audit log open");
            Some(log)
        }
    };
    let alerts = match &config.alerts {
        None => None,
        Some(a) => {
            let secret = open_vault_with(&config, &store)
                .await?
                .get(&a.secret)
                .await
                .map_err(|err| GatewayError::Start(format!("alerts.secret: {err}")))?;
            tracing::info!(webhook = %a.webhook, "alerts on");
            Some(alerts::Alerts::start(
                a,
                secret.expose(),
                upstream::http::client().map_err(GatewayError::Start)?,
            ))
        }
    };
    let auditor = Arc::new(audit::Auditor::new(
        audit_log,
        hash_key,
        config.audit.as_ref(),
        alerts,
    ));
    let auth = match &config.auth {
        None => auth::Authenticator::LocalUser(Principal::local_user()),
        Some(a) => {
            let mut o = auth::OAuth::build(a, &config.endpoint)
                .await
                .map_err(GatewayError::Start)?;
            o.keep_tokens = config.upstreams.iter().any(|u| u.token_exchange.is_some());
            auth::Authenticator::OAuth(Box::new(o))
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| GatewayError::Start(e.to_string()))?;
    let certificates = match &config.tls {
        None => None,
        Some(t) => Some(
            tls::Certificates::open(&t.cert, &t.key)
                .map_err(|e| GatewayError::Start(format!("TLS: {e}")))?,
        ),
    };
    if config.dangerous.plaintext_listener {
        tracing::warn!(
            %addr,
            "DANGEROUS: plain HTTP on a non-loopback address; tokens cross the network in \
             clear unless a TLS-terminating proxy stands in front"
        );
    }

    let l = &config.limits;
    let sessions = Arc::new(SessionTable::new(
        l.max_sessions,
        l.max_sessions_per_principal,
        l.session_idle_timeout,
        l.session_max_lifetime,
    ));
    let upstream_stop = CancellationToken::new();
    let workers = config.serving_workers();
    let http = Arc::new(
        workers::PerWorker::new(workers, upstream::http::client).map_err(GatewayError::Start)?,
    );
    let credentials = upstream_credentials(&config, &store).await?;
    let inspection = if config.inspection.enabled {
        let inspector = match &config.inspection.rules {
            None => palisade_inspect::Inspector::builtin(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    GatewayError::Start(format!("inspection rules {}: {e}", path.display()))
                })?;
                let pack = palisade_inspect::RulePack::from_toml(&text).map_err(|e| {
                    GatewayError::Start(format!("inspection rules {}: {e}", path.display()))
                })?;
                for id in pack.partial_triggers() {
                    tracing::warn!(
                        rule = id,
                        "inspection rules {}: no strings the pattern requires were found \
                         to complete the rule's triggers; a text its pattern matches without \
                         one of them is not seen",
                        path.display()
                    );
                }
                palisade_inspect::Inspector::new(pack)
            }
        };
        tracing::info!(rules = inspector.pack().version(), "inspection on");
        let external = match &config.inspection.external {
            None => None,
            Some(e) => {
                let key = match &e.secret {
                    None => None,
                    Some(name) => Some(
                        open_vault_with(&config, &store)
                            .await?
                            .get(name)
                            .await
                            .map_err(|err| {
                                GatewayError::Start(format!("inspection.external.secret: {err}"))
                            })?,
                    ),
                };
                Some(
                    external::ExternalDetector::new(
                        e,
                        key.as_ref().map(|k| k.expose()),
                        upstream::http::client().map_err(GatewayError::Start)?,
                    )
                    .map_err(GatewayError::Start)?,
                )
            }
        };
        Some(inspect::Inspection::new(
            inspector,
            config.upstreams.iter().map(|u| u.inspection).collect(),
            config
                .upstreams
                .iter()
                .map(|u| u.tool_inspection.clone())
                .collect(),
            external,
            Arc::clone(&auditor),
            config.upstreams.iter().map(|u| u.name.clone()).collect(),
        ))
    } else {
        tracing::warn!("inspection is OFF: upstream answers and tools pass unexamined");
        None
    };
    let authz = Arc::new(
        authz::Authz::load(&config, Arc::clone(&auditor))
            .await
            .map_err(|e| GatewayError::Start(format!("policy: {e}")))?,
    );
    let pins = Arc::new(pins::Pins::new(
        Arc::clone(&store),
        config.upstreams.iter().map(|u| u.name.clone()).collect(),
        config.upstreams.iter().map(|u| u.pinning).collect(),
        Arc::clone(&auditor),
    ));
    let router = Router::new(
        &config,
        &credentials,
        http,
        Arc::clone(&sessions),
        &upstream_stop,
        router::Defences {
            inspection,
            pins: Some(Arc::clone(&pins)),
            audit: Arc::clone(&auditor),
            authz: Arc::clone(&authz),
        },
    );

    let mut supervisors = Vec::new();
    for u in &router.upstreams {
        if let UpstreamEntry::Stdio(s) = u {
            supervisors.push(tokio::spawn(Arc::clone(s).supervise(Arc::clone(&pins))));
        }
    }

    let trace_stop = CancellationToken::new();
    let (tracer, trace_export) = match &config.tracing {
        None => (traces::Tracer::off(), None),
        Some(t) => {
            let (tracer, task) = traces::Tracer::start(
                t,
                upstream::http::client().map_err(GatewayError::Start)?,
                trace_stop.clone(),
            );
            tracing::info!(collector = %t.otlp_url, ratio = t.sample_ratio, "tracing on");
            (tracer, Some(task))
        }
    };
    let app = Arc::new(App {
        tracer: Arc::new(tracer),
        router,
        edge: edge::EdgePolicy::new(
            config.allowed_origins.clone(),
            config.allowed_hosts.clone(),
            config.listen.ip().is_loopback(),
            config.tls.is_some(),
        ),
        store: Arc::clone(&store) as Arc<dyn palisade_store::SessionStore>,
        auth,
        limits: config.limits.clone(),
        draining: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        limiter: limits::Limiter::new(&config),
    });

    let reaper_stop = CancellationToken::new();
    let reaper = tokio::spawn(endpoint::reaper(Arc::clone(&app), reaper_stop.clone()));
    let policy_watch = tokio::spawn(Arc::clone(&authz).watch(reaper_stop.clone()));
    let admin_drain = tokio::spawn(audit::drain_admin_actions(
        Arc::clone(&auditor),
        Arc::clone(&store),
        reaper_stop.clone(),
    ));
    let rechecker = {
        let app = Arc::clone(&app);
        let stop = reaper_stop.clone();
        tokio::spawn(async move { app.router.run_rechecks(stop).await })
    };

    let routes = axum::Router::new()
        .route(
            &config.endpoint,
            get(endpoint::get)
                .post(endpoint::post)
                .delete(endpoint::delete)
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&app),
                    endpoint::count_answer,
                )),
        )
        .route("/healthz", get(endpoint::healthz))
        .route(
            &format!("/.well-known/oauth-protected-resource{}", config.endpoint),
            get(endpoint::protected_resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(endpoint::protected_resource_metadata),
        )
        .with_state(Arc::clone(&app))
        .layer(axum::middleware::from_fn(edge::authority_as_host));

    on_ready(addr);
    tracing::info!(
        %addr,
        endpoint = %config.endpoint,
        tls = certificates.is_some(),
        "palisade listening"
    );

    let serve_stop = CancellationToken::new();
    let listener = listener
        .into_std()
        .map_err(|e| GatewayError::Start(e.to_string()))?;
    let started = match (&certificates, &config.tls) {
        (Some(certs), Some(t)) => {
            let server_config = certs.server_config().map_err(GatewayError::Start)?;
            tokio::spawn(Arc::clone(certs).watch(t.reload_interval, serve_stop.clone()));
            let stop = serve_stop.clone();
            workers::Workers::start(workers, &listener, move |l| {
                let (routes, stop) = (routes.clone(), stop.clone());
                let tls = tls::TlsListener::new(l, server_config.clone());
                async move {
                    match tls {
                        Ok(l) => log_serve_end(serve(l, routes, stop).await),
                        Err(e) => tracing::error!(error = %e, "cannot serve TLS"),
                    }
                }
            })
        }
        _ => {
            let stop = serve_stop.clone();
            workers::Workers::start(workers, &listener, move |l| {
                let (routes, stop) = (routes.clone(), stop.clone());
                async move { log_serve_end(serve(endpoint::NoDelay(l), routes, stop).await) }
            })
        }
    };
    let mut server = started.map_err(|e| GatewayError::Start(format!("serving threads: {e}")))?;
    drop(listener);

    let admin = match &config.admin {
        None => None,
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a.listen)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: a.listen,
                    source,
                })?;
            let at = l
                .local_addr()
                .map_err(|e| GatewayError::Start(e.to_string()))?;
            tracing::info!(%at, "admin listener: /metrics");
            let routes = axum::Router::new()
                .route("/metrics", get(endpoint::metrics))
                .with_state(Arc::clone(&app));
            Some(tokio::spawn(serve(l, routes, serve_stop.clone())))
        }
    };

    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    app.draining.store(true, Ordering::Release);
    let grace = config.limits.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while app.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = app.in_flight.load(Ordering::Acquire),
            "shutdown grace elapsed with requests in flight"
        );
    }
    // Closing sessions ends their SSE streams, so the server can finish.
    endpoint::close_all(&app).await;
    reaper_stop.cancel();
    serve_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server.served()).await;
    if let Some(a) = admin {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    let _ = reaper.await;
    let _ = rechecker.await;
    let _ = policy_watch.await;
    let _ = admin_drain.await;

    // LOC-06: stop stdio children (stdin closed, SIGTERM, SIGKILL).
    upstream_stop.cancel();
    for s in supervisors {
        let _ = s.await;
    }
    // Spans still queued get a moment to leave.
    if let Some(t) = trace_export {
        tokio::time::sleep(Duration::from_millis(600)).await;
        trace_stop.cancel();
        let _ = t.await;
    }
    auditor.close().await;
    if let Some(s) = sinks {
        s.drain(Duration::from_secs(2)).await;
    }
    store.close().await;
    // Last: connections to stores and upstreams made on a serving thread belong to its
    // runtime, and the steps above may still use them.
    server.exit().await;
    tracing::info!("stopped");
    Ok(())
}

fn log_serve_end(r: std::io::Result<()>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "serving stopped");
    }
}

/// Serves `routes` on `listener` until `stop`, then lets open connections finish.
async fn serve<L>(listener: L, routes: axum::Router, stop: CancellationToken) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    endpoint::Peer:
        for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    axum::serve(
        listener,
        routes.into_make_service_with_connect_info::<endpoint::Peer>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await
}
