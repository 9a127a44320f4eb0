//! Starting and stopping the local server.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretSlice;
use taskgate_api::AppState;
use taskgate_console::{Console, Elsewhere};
use taskgate_domain::ports::BlobStore;
use taskgate_embedded::engine::LocalEngine;
use taskgate_js::ProcessRunner;
use tokio::task::JoinHandle;

use crate::bootstrap::{FirstAdmin, ensure_first_admin};
use crate::config::{FilesConfig, ServeConfig};
use crate::data_dir;
use crate::linger::LingeringAcceptor;

/// File names inside the data directory.
pub const DATABASE_FILE: &str = "taskgate.db";
pub const JWT_SECRET_FILE: &str = "jwt-secret";
pub const TLS_CERT_FILE: &str = "tls-cert.pem";
pub const TLS_KEY_FILE: &str = "tls-key.pem";
/// This server's engine id (`local:<id>` in the tasks it runs).
pub const ENGINE_ID_FILE: &str = "engine-id";

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    tls: bool,
    handle: Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
    engine: LocalEngine,
    state: Arc<AppState>,
    metrics_addr: Option<SocketAddr>,
    /// The admin created at this start, if the store had none.
    pub first_admin: Option<FirstAdmin>,
}

impl Server {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://127.0.0.1:8443` or `http://...`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting connections, lets requests in flight finish (up to 10 s),
    /// stops the task runs (unfinished tasks resume at the next start) and
    /// waits for everything to stop.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stopper().stop();
        self.wait().await
    }

    /// Where `GET /metrics` is served, if it is (`TASKGATE_METRICS_ADDR`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// What stops the server from elsewhere (a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            handle: self.handle.clone(),
            sockets: self.state.shutdown.clone(),
        }
    }

    /// Waits until the server stops (after `handle().graceful_shutdown`, or on
    /// an error), then stops the task runs.
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.task.await.context("the server task panicked");
        self.engine.shutdown().await;
        served??;
        Ok(())
    }

    /// The task engine (to see what is running).
    pub fn engine(&self) -> &LocalEngine {
        &self.engine
    }

    /// Removes the unfinished uploads past their expiry now (the server
    /// does it every minute by itself); how many.
    pub async fn reap_expired_uploads(&self) -> anyhow::Result<usize> {
        taskgate_api::files::reap_expired(&self.state)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A clone of the shutdown handle, for signal handlers.
    pub fn handle(&self) -> Handle<SocketAddr> {
        self.handle.clone()
    }
}

/// Stops a running server gracefully: no new connections; requests in
/// flight may finish for up to [`GRACE`]; WebSockets are closed with 1001;
/// unfinished tasks are resumed at the next start.
#[derive(Clone)]
pub struct Stopper {
    handle: Handle<SocketAddr>,
    sockets: tokio_util::sync::CancellationToken,
}

/// How long requests in flight may take to finish once a stop begins.
pub const GRACE: Duration = Duration::from_secs(10);

impl Stopper {
    pub fn stop(&self) {
        self.sockets.cancel();
        self.handle.graceful_shutdown(Some(GRACE));
    }
}

/// The JWT signing secret: 64 random bytes, created on first start and kept
/// in the data directory so tokens survive restarts.
fn jwt_secret(dir: &Path) -> anyhow::Result<SecretSlice<u8>> {
    let (encoded, _) = data_dir::read_or_create(&dir.join(JWT_SECRET_FILE), || {
        let mut bytes = [0u8; 64];
        rand::fill(&mut bytes);
        Ok(STANDARD.encode(bytes).into_bytes())
    })?;
    let bytes = STANDARD
        .decode(String::from_utf8_lossy(&encoded).trim())
        .with_context(|| format!("{JWT_SECRET_FILE} in the data directory is not base64"))?;
    Ok(SecretSlice::from(bytes))
}

/// The TLS certificate and key, generated (self-signed, for localhost and the
/// listen address) on first start.
async fn tls_config(dir: &Path, addr: SocketAddr) -> anyhow::Result<RustlsConfig> {
    let cert_path = dir.join(TLS_CERT_FILE);
    let key_path = dir.join(TLS_KEY_FILE);
    if !cert_path.exists() || !key_path.exists() {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let ip = addr.ip().to_string();
        if !addr.ip().is_unspecified() && !names.contains(&ip) {
            names.push(ip);
        }
        let generated = rcgen::generate_simple_self_signed(names)
            .context("cannot generate a TLS certificate")?;
        // Key first: a certificate is only written once its key exists.
        data_dir::read_or_create(&key_path, || {
            Ok(generated.signing_key.serialize_pem().into_bytes())
        })?;
        data_dir::read_or_create(&cert_path, || Ok(generated.cert.pem().into_bytes()))?;
        tracing::info!(path = %cert_path.display(), "generated a self-signed TLS certificate");
    }
    RustlsConfig::from_pem_file(&cert_path, &key_path)
        .await
        .with_context(|| format!("cannot load the TLS certificate {}", cert_path.display()))
}

/// Where uploads and files live, under the data directory.
pub const FILES_DIR: &str = "files";

/// How often unfinished uploads past their expiry are removed.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes unfinished uploads past `Upload-Expires`, every [`REAP_EVERY`],
/// for as long as the server runs.
async fn reap_expired_uploads(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tick.tick().await;
        match taskgate_api::files::reap_expired(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "removed expired uploads"),
            Err(e) => tracing::warn!(error = %e, "could not remove expired uploads"),
        }
    }
}

/// Where files' bytes go ([`FilesConfig`]), and the origin downloads are
/// redirected to when that is not this server.
async fn blobs(config: &ServeConfig) -> anyhow::Result<(Arc<dyn BlobStore>, Option<String>)> {
    match &config.files {
        FilesConfig::DataDir => {
            let dir = config.data_dir.join(FILES_DIR);
            let blobs = taskgate_embedded::blobs::DiskBlobs::open(&dir)
                .with_context(|| format!("cannot use {}", dir.display()))?;
            Ok((Arc::new(blobs), None))
        }
        FilesConfig::S3 { bucket, endpoint } => {
            let sdk = taskgate_aws::load_sdk_config(endpoint.as_deref()).await;
            let s3 = taskgate_aws::s3_client(&sdk, endpoint.as_deref());
            let blobs = taskgate_aws::blobs::S3Blobs::new(s3, bucket.clone());
            let origin = blobs
                .download_origin()
                .await
                .with_context(|| format!("cannot sign URLs for the bucket {bucket}"))?;
            Ok((Arc::new(blobs), Some(origin)))
        }
    }
}

/// Opens the store, creates the first admin if there is none, binds and
/// starts serving. Returns once the server accepts connections.
pub async fn start(config: ServeConfig) -> anyhow::Result<Server> {
    start_with_routes(config, axum::Router::new()).await
}

/// [`start`], serving `extra` routes beside the API (tests use it to reach
/// what the API does not route yet, e.g. a WebSocket echo).
pub async fn start_with_routes(config: ServeConfig, extra: axum::Router) -> anyhow::Result<Server> {
    data_dir::create(&config.data_dir)?;
    let store = crate::store::open(&config, crate::store::Purpose::Serve).await?;
    let secret = jwt_secret(&config.data_dir)?;
    let runner = ProcessRunner::new(
        config.js_worker.clone(),
        config.api.tasks.js.clone(),
        config.api.max_concurrent_scripts,
    )
    .with_warm_workers(config.api.js_warm_workers);
    runner.warm_up();
    let (blobs, downloads) = blobs(&config).await?;
    let state = AppState::new(store, &secret, config.api.clone())?
        .with_clock(config.clock.clone())
        .with_blobs(blobs);
    // The engine records through the API's recorder, so what it records
    // reaches real-time subscribers too.
    let (engine_id, _) = data_dir::read_or_create(&config.data_dir.join(ENGINE_ID_FILE), || {
        Ok(uuid::Uuid::new_v4().simple().to_string().into_bytes())
    })?;
    let engine_id = String::from_utf8(engine_id).context("the engine id file is not text")?;
    let exporter = taskgate_app::export::StoreExporter::new(
        state.store.clone(),
        state.blobs.clone(),
        config.clock.clone(),
        config.api.files.clone(),
    );
    let engine = LocalEngine::new(
        state.recorder(),
        Arc::new(runner),
        config.clock.clone(),
        engine_id.trim(),
    )
    .with_exporter(Arc::new(exporter));
    // On a store of its own, tasks from before engines were named are ours.
    let engine = if matches!(config.store, crate::StoreConfig::DynamoDb { .. }) {
        engine
    } else {
        engine.with_exclusive_store()
    };
    let state = Arc::new(state.with_workflow(Arc::new(engine.clone())));
    let first_admin = ensure_first_admin(
        &state,
        &config.admin_username,
        config.admin_password.as_ref(),
    )
    .await?;
    engine
        .recover()
        .await
        .context("cannot resume the tasks left unfinished by the last run")?;
    tokio::spawn(reap_expired_uploads(state.clone()));

    let metrics_addr = match config.metrics_addr {
        Some(addr) => Some(crate::metrics::serve(addr).await?),
        None => None,
    };
    let listener = TcpListener::bind(config.addr)
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    // The console connects to this origin, and to the bucket a download is
    // redirected to when files are in S3 (unless the variables say else).
    let mut elsewhere = Elsewhere::from_env();
    elsewhere.downloads = elsewhere.downloads.or(downloads);
    let console = Console::new(&elsewhere).map_err(|e| anyhow::anyhow!("the console: {e}"))?;
    let app = crate::http::router(state.clone(), &config, console, extra)
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = Handle::new();
    // Every connection closes lingering (crate::linger): a request refused
    // before its body was read still gets its answer.
    let server = axum_server::from_tcp(listener)?.handle(handle.clone());
    let task = if config.tls {
        let tls = tls_config(&config.data_dir, local_addr).await?;
        let acceptor = RustlsAcceptor::new(tls).acceptor(LingeringAcceptor);
        tokio::spawn(server.acceptor(acceptor).serve(app))
    } else {
        tokio::spawn(server.acceptor(LingeringAcceptor).serve(app))
    };
    handle
        .listening()
        .await
        .context("the server stopped while starting")?;
    Ok(Server {
        local_addr,
        tls: config.tls,
        handle,
        task,
        engine,
        state,
        metrics_addr,
        first_admin,
    })
}
