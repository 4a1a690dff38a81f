//! The operator: a kube-runtime controller that reconciles SpotPlans into Karpenter NodePools.
//!
//! [`run`] wires everything, in this order: the HTTP endpoints (before any other I/O), the
//! Kubernetes client and a check that the CRDs exist, the market refresh loop (in the
//! background), leader election, and the controller with its watches. Each reconcile is
//! `read` (caches) -> `build` (the pure SpotPlan API, `spotplan_api::build`) -> `apply`.

mod apply;
mod compact;
mod context;
mod error;
mod health;
mod lease;
mod market;
pub use market::FileAge;
mod memory;
mod metrics;
mod overlays;
pub use overlays::Mode as RiskPricingMode;
mod read;
mod reconcile;
mod signals;
mod watches;
mod web;

use crate::sources::MarketSources;
use context::{Context, Parts};
use futures::StreamExt;
use health::Health;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::mpsc;

/// How the controller is run (see `spotplan controller --help`).
#[derive(Debug, Clone)]
pub struct Options {
    pub sources: MarketSources,
    /// Order zones and near-tied types by spot placement scores (needs live data).
    pub placement_scores: bool,
    pub refresh_interval: Duration,
    /// A refresh (every source, every retry) that takes longer fails.
    pub refresh_deadline: Duration,
    /// How old a named file may be before its data is stale.
    pub file_age: market::FileAge,
    /// The churn rule's controller-wide settings.
    pub settings: spotplan_api::build::Settings,
    pub listen: SocketAddr,
    pub leader_elect: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_ttl: Duration,
    pub identity: String,
    pub concurrency: u16,
    /// Where Karpenter's Events about NodeClaims land (the only namespace whose Events count).
    pub karpenter_event_namespace: String,
    /// Risk pricing with NodeOverlays: where served, or never.
    pub risk_pricing: overlays::Mode,
}

/// A reconcile may run this long before `/livez` calls the controller wedged.
const RECONCILE_LIMIT: Duration = Duration::from_secs(300);

/// Runs the controller until SIGTERM.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    disable_huge_pages();
    crate::install_crypto_provider();
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(Health::new(
        opts.refresh_deadline + Duration::from_secs(60),
        RECONCILE_LIMIT,
    ));
    let ready = Arc::new(AtomicBool::new(false));
    let market = Arc::new(
        market::MarketCache::new(
            opts.sources.clone(),
            opts.refresh_interval,
            opts.refresh_deadline,
        )
        .with_file_age(opts.file_age),
    );
    let web = web::WebState {
        metrics: metrics.clone(),
        market: market.clone(),
        health: health.clone(),
        ready: ready.clone(),
    };
    let web = serve(opts.listen, web).await?;
    let client = Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes client config (in-cluster or KUBECONFIG): {e}")
    })?;
    watches::check_crds(&client).await?;
    let overlay_support = overlays::support(&client, opts.risk_pricing).await;
    let (overlay_store, overlay_stream) = overlays::watch(&client, overlay_support.1);
    let (trigger, triggers) = mpsc::unbounded_channel::<()>();
    tokio::spawn(market::run(
        market.clone(),
        metrics.clone(),
        health.clone(),
        trigger.clone(),
    ));
    let claims_synced = trigger.clone();
    let lease = opts.leader_elect.then(|| lease::LeaseConfig {
        namespace: opts.lease_namespace.clone(),
        name: opts.lease_name.clone(),
        identity: opts.identity.clone(),
        ttl: opts.lease_ttl,
    });
    let (leadership, lease_task, releaser) = lease::elect(&client, lease, trigger, metrics.clone());
    let (stream, store, nodepool_store) = watches::streams(&client);
    // Once the NodeClaim cache is in, every plan is reconciled: counts are trusted from then.
    let (signals, signal_stream) =
        signals::watch(&client, &opts.karpenter_event_namespace, claims_synced);
    let ctx = Arc::new(Context::new(Parts {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: spotplan_api::names::FIELD_MANAGER.into(),
                instance: Some(opts.identity.clone()),
            },
        ),
        client,
        market,
        metrics,
        health: health.clone(),
        leadership,
        settings: opts.settings,
        placement_scores: opts.placement_scores,
        nodepool_cache: nodepool_store.clone(),
        signals: signals.clone(),
        overlay_support,
        overlay_cache: overlay_store,
    }));
    let controller = watches::controller(
        stream,
        store,
        triggers,
        watches::Interruptions {
            events: signal_stream,
            signals,
            nodepools: nodepool_store,
        },
        overlay_stream,
        &ctx,
        opts.concurrency,
    );
    watches::spawn_housekeeping(&controller, &ctx, ready);
    let run = controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        });
    let result = lease::run_while_elected(run, lease_task).await;
    health.controller_ended();
    if let Some(r) = releaser {
        r.release().await;
    }
    web.abort();
    tracing::info!("stopped");
    result
}

/// Binds the endpoints and serves them in the background.
async fn serve(
    listen: SocketAddr,
    state: web::WebState,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    // The bound address: with port 0 the system chose it.
    let addr = listener.local_addr().unwrap_or(listen);
    tracing::info!(%addr, "serving /metrics, /livez, /readyz");
    let app = web::router(state);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(health::shutdown_signal())
            .await;
    }))
}

/// The binary's allocator (mimalloc) is built not to ask for transparent huge pages, but a host
/// whose THP setting is `always` hands them out anyway, and huge pages on its arenas took the
/// controller's resident memory from 57 to 95 MiB at 1,000 plans. A long-running process under
/// a memory limit wants small pages.
fn disable_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE sets a flag on this process; no memory is touched.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not disable transparent huge pages");
    }
}
