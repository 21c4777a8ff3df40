//! The demo's Prometheus endpoint: tower-introspect's metrics (feature `metrics`) in the text
//! exposition format at `GET /metrics`, on a listener of its own.
//!
//! A listener of its own, because what it tells (traffic, refusal reasons, the authorization
//! server's health) is for operators, not for the MCP endpoint's callers: bind it to loopback or a
//! private network. It carries no token, subject or client id; see `docs/operations.md`.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::serve::{ServeOptions, serve};

/// Bucket bounds of the introspection latency histogram, in seconds: from a loopback server's
/// millisecond to the default 10 s request timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder, installed once: the `metrics` facade has one global recorder.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder as the process's `metrics` recorder (once; later calls return
/// the same handle). Metrics recorded before it is installed are lost, so call it before serving.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let mut installed = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tower_introspect_introspection_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .context("histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("another metrics recorder is already installed"))?;
    *installed = Some(handle.clone());
    Ok(handle)
}

/// A running metrics endpoint.
pub struct MetricsEndpoint {
    /// Where to scrape: `http://<address>/metrics`.
    pub url: String,
    task: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Installs the recorder (see [`install_recorder`]) and serves `GET /metrics` on `listener`.
    pub async fn start(listener: TcpListener) -> anyhow::Result<Self> {
        let handle = install_recorder()?;
        let addr: SocketAddr = listener.local_addr()?;
        let router = Router::new().route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    // Histograms are folded into their buckets on render; upkeep also drops
                    // what the exporter no longer needs.
                    handle.run_upkeep();
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                }
            }),
        );
        let task = tokio::spawn(serve(listener, router, ServeOptions::default()));
        Ok(Self {
            url: format!("http://{addr}/metrics"),
            task,
        })
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
