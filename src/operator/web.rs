//! The controller's HTTP endpoints: /metrics, /livez, /readyz. Served before any other I/O, so
//! the kubelet's probes answer while data loads or the API server is slow.

use super::health::Health;
use super::market::{self, MarketCache};
use super::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Clone)]
pub struct WebState {
    pub metrics: Arc<Metrics>,
    /// Read at every scrape: the data's age is a matter of time passing.
    pub market: Arc<MarketCache>,
    pub health: Arc<Health>,
    /// Set once the watch caches have synced.
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(
    State(s): State<WebState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    market::record(&s.market, &s.metrics, jiff::Timestamp::now());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

async fn livez(State(s): State<WebState>) -> (StatusCode, String) {
    match s.health.check(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("wedged: {why}")),
    }
}

async fn readyz(State(s): State<WebState>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}
