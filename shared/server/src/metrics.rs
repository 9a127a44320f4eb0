//! Metrics in the Prometheus text format, served apart from the API at
//! `TASKGATE_METRICS_ADDR` (unset: none), so they are never public by
//! accident. The process has one recorder (the `metrics` facade's); the
//! application counts requests by route and status with their latency, task
//! events by kind and type, open WebSockets and uploads in progress, and (on
//! DynamoDB) the read units each item listing page consumed.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of `taskgate_item_page_read_units` (DynamoDB read capacity units
/// one item listing page consumed; bounded by the store's read budget).
const READ_UNIT_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0];

/// How often the recorder's pending histogram samples are folded into
/// their buckets (the exporter's own default).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use.
fn handle() -> anyhow::Result<&'static PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .context("invalid metric buckets")?
        .set_buckets_for_metric(
            Matcher::Full("taskgate_item_page_read_units".into()),
            READ_UNIT_BUCKETS,
        )
        .context("invalid metric buckets")?
        .build_recorder();
    let handle = recorder.handle();
    // Only the first call installs; a racing second one keeps the first.
    if metrics::set_global_recorder(recorder).is_ok() {
        let _ = HANDLE.set(handle);
        taskgate_api::metrics::recorder_installed();
    }
    HANDLE
        .get()
        .context("another metrics recorder is installed in this process")
}

/// Serves `GET /metrics` on `addr` until the process ends; the bound address.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    serve_folding_every(addr, UPKEEP_EVERY).await
}

/// [`serve`], folding pending samples every `every` (tests fold often).
#[doc(hidden)]
pub async fn serve_folding_every(addr: SocketAddr, every: Duration) -> anyhow::Result<SocketAddr> {
    let handle = handle()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(keep_up(handle, every));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            (
                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(%bound, "metrics served at /metrics");
    Ok(bound)
}

/// Folds `handle`'s pending histogram samples into their buckets every
/// `every`, for as long as the process runs.
///
/// The recorder keeps each latency it is given as a raw sample until
/// upkeep or a scrape folds it in, and a recorder built by hand
/// (`build_recorder`) runs no upkeep of its own: without this, a server
/// that nobody scraped grew by every request it answered.
async fn keep_up(handle: &'static PrometheusHandle, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

/// The process's recorder (installing it if it is not yet), for tests.
#[doc(hidden)]
pub fn recorder() -> anyhow::Result<&'static PrometheusHandle> {
    handle()
}
