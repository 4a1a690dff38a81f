//! The operator: a kube-runtime controller that reconciles SpotPlans into Karpenter NodePools.
//!
//! [`run`] wires everything: the shared market data and its refresh loop, leader election, the
//! controller with its watches, and the HTTP endpoints.

pub mod controller;
pub mod crd;
pub mod decide;
pub mod lease;
pub mod market;
pub mod metrics;
pub mod spec;
pub mod web;

use crate::core::catalog::Catalog;
use crate::data::Source;
use controller::{Context, Settings, nodepool_resource};
use crd::{PLAN_LABEL, SpotPlan};
use futures::StreamExt;
use kube::api::{DynamicObject, ListParams};
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How the controller is run (see `spotplan controller --help`).
#[derive(Debug, Clone)]
pub struct Options {
    pub advisor: Source,
    pub prices: Option<Source>,
    pub cache_dir: Option<std::path::PathBuf>,
    pub refresh_interval: Duration,
    pub min_narrow_interval: Duration,
    pub listen: SocketAddr,
    pub leader_elect: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_ttl: Duration,
    pub identity: String,
    pub concurrency: u16,
}

/// Fails with a one-line fix when a CRD the controller needs is not installed.
async fn check_crds(client: &Client) -> anyhow::Result<()> {
    let lp = ListParams::default().limit(1);
    if let Err(e) = Api::<DynamicObject>::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<SpotPlan>(&()),
    )
    .list_metadata(&lp)
    .await
    {
        anyhow::bail!(
            "cannot list SpotPlans ({e}): install the CRD with `spotplan crd | kubectl apply --server-side -f -` and check the controller's RBAC"
        );
    }
    if let Err(e) = Api::<DynamicObject>::all_with(client.clone(), &nodepool_resource())
        .list_metadata(&lp)
        .await
    {
        anyhow::bail!(
            "cannot list Karpenter NodePools (karpenter.sh/v1) ({e}): install Karpenter (its CRDs) first and check the controller's RBAC"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: stopping"),
    }
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

/// Runs the controller until SIGTERM.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    disable_huge_pages();
    let client = Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes client config (in-cluster or KUBECONFIG): {e}")
    })?;
    check_crds(&client).await?;
    let catalog = Catalog::embedded();
    let metrics = Arc::new(metrics::Metrics::new());
    let loader = crate::data::Loader::new(opts.cache_dir.clone(), opts.refresh_interval);
    let market = Arc::new(market::MarketCache::new(
        catalog,
        loader,
        opts.advisor.clone(),
        opts.prices.clone(),
        opts.refresh_interval,
    ));

    // Market data: one refresh loop for all reconciles; a change (or a change in freshness)
    // requeues every SpotPlan.
    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<()>();
    // Load before the first reconcile: a plan must never be marked unavailable (and written)
    // just because the data was still loading.
    let mut first = Some(market.refresh().await);
    {
        let (market, metrics, tx) = (market.clone(), metrics.clone(), trigger_tx.clone());
        tokio::spawn(async move {
            // Requeue on a change of data, or of freshness (including its reason).
            let mut last_fresh: Option<(bool, &'static str)> = None;
            loop {
                let outcome = match first.take() {
                    Some(o) => o,
                    None => market.refresh().await,
                };
                let now = jiff::Timestamp::now();
                let fresh = market.freshness(now);
                match &outcome {
                    Ok(changed) => tracing::info!(
                        changed,
                        fresh = fresh.fresh,
                        "market data refreshed: {}",
                        fresh.message
                    ),
                    Err(e) => {
                        metrics
                            .data_refresh_failures
                            .with_label_values(&[e.category()])
                            .inc();
                        tracing::warn!(error = %e, "market data refresh failed; keeping the last good data");
                    }
                }
                metrics.data_fresh.set(i64::from(fresh.fresh));
                for (source, age) in market.ages(now) {
                    metrics.data_age.with_label_values(&[source]).set(age);
                }
                let state = Some((fresh.fresh, fresh.reason));
                if matches!(outcome, Ok(true)) || last_fresh != state {
                    let _ = tx.send(());
                }
                last_fresh = state;
                // Freshness is also a matter of time passing: check it between refreshes.
                let mut waited = Duration::ZERO;
                while waited < market.interval {
                    let step = Duration::from_secs(30).min(market.interval - waited);
                    tokio::time::sleep(step).await;
                    waited += step;
                    let f = market.freshness(jiff::Timestamp::now());
                    let state = Some((f.fresh, f.reason));
                    if state != last_fresh {
                        metrics.data_fresh.set(i64::from(f.fresh));
                        last_fresh = state;
                        let _ = tx.send(());
                    }
                }
            }
        });
    }

    // Leadership: every replica watches and plans, only the Lease holder writes.
    let (leadership, lease_task, releaser) = if opts.leader_elect {
        let m = metrics.clone();
        let (l, task, r) = lease::start(
            client.clone(),
            lease::LeaseConfig {
                namespace: opts.lease_namespace.clone(),
                name: opts.lease_name.clone(),
                identity: opts.identity.clone(),
                ttl: opts.lease_ttl,
            },
            trigger_tx.clone(),
            move |leader| m.leader.set(i64::from(leader)),
        );
        (l, Some(task), Some(r))
    } else {
        metrics.leader.set(1);
        (lease::Leadership::always(), None, None)
    };

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "spotplan-controller".into(),
            instance: Some(opts.identity.clone()),
        },
    );
    let settings = Settings {
        min_narrow_interval: opts.min_narrow_interval,
    };
    let ctx_builder = |nodepools| {
        Context::new(
            client.clone(),
            market.clone(),
            metrics.clone(),
            recorder,
            leadership,
            settings,
            nodepools,
        )
    };
    let nodepools_api: Api<DynamicObject> = Api::all_with(client.clone(), &nodepool_resource());

    // SpotPlans: reconcile on spec (generation) changes and on first sight; our own status
    // writes do not come back as work.
    let plans: Api<DeserializeGuard<SpotPlan>> = Api::all(client.clone());
    let (plan_store, plan_writer) = reflector::store();
    let plan_stream = reflector(
        plan_writer,
        watcher(plans, watcher::Config::default().any_semantic()).modify(strip_managed_fields),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    // NodePools: one cache of all of them, read by every reconcile (ownership, the live spec)
    // instead of a GET each; an edit to an owned one brings its plan back at once.
    let nodepool_writer = reflector::store::Writer::new(nodepool_resource());
    let nodepool_store = nodepool_writer.as_reader();
    let nodepool_stream = reflector(
        nodepool_writer,
        watcher(nodepools_api, watcher::Config::default().any_semantic()).modify(
            |np: &mut DynamicObject| {
                np.managed_fields_mut().clear();
                // Karpenter's status is not ours to read.
                if let Some(o) = np.data.as_object_mut() {
                    o.remove("status");
                }
            },
        ),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default());
    let ctx = Arc::new(ctx_builder(nodepool_store.clone()));
    let nodepool_ready = ctx.nodepools_synced.clone();
    let triggers = tokio_stream_from(trigger_rx);
    let controller = Controller::for_stream(plan_stream, plan_store)
        .watches_stream_with(
            nodepool_stream,
            |np| {
                np.labels()
                    .get(PLAN_LABEL)
                    .map(|plan| ObjectRef::<DeserializeGuard<SpotPlan>>::new(plan))
            },
            nodepool_resource(),
        )
        .reconcile_all_on(triggers)
        .with_config(kube::runtime::controller::Config::default().concurrency(opts.concurrency))
        .graceful_shutdown_on(shutdown_signal());
    {
        // NodePool cache readiness gates /readyz too.
        let store = nodepool_store.clone();
        let ready = nodepool_ready.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(Ok(())) =
                    tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await
                {
                    ready.store(true, Ordering::Relaxed);
                    break;
                }
            }
        });
    }

    let ready = Arc::new(AtomicBool::new(false));
    let store = controller.store();
    {
        let (ready, store) = (ready.clone(), store.clone());
        tokio::spawn(async move {
            // The store's readiness is a one-shot that wakes only its latest waiter (the
            // controller's own runner), so ask again every half second instead of waiting once.
            loop {
                if let Ok(Ok(())) =
                    tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await
                {
                    ready.store(true, Ordering::Relaxed);
                    tracing::info!("watch caches synced: ready");
                    break;
                }
            }
        });
    }
    {
        // Forget the metrics and records of deleted plans.
        let (metrics, store, ctx) = (metrics.clone(), store.clone(), ctx.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                for plan in metrics.plans() {
                    if store.get(&ObjectRef::new(&plan)).is_none() {
                        metrics.forget_plan(&plan);
                        ctx.forget(&plan);
                    }
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen))?;
    tracing::info!(addr = %opts.listen, "serving /metrics, /livez, /readyz");
    let app = web::router(web::WebState {
        metrics: metrics.clone(),
        ready,
    });
    let web_task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });

    let run = controller
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        });
    match lease_task {
        Some(task) => {
            tokio::select! {
                _ = run => {}
                r = task => {
                    // Never keep running without the lease loop: another replica may lead.
                    let e = match r { Ok(Err(e)) => e, Ok(Ok(())) => anyhow::anyhow!("lease loop ended"), Err(e) => anyhow::anyhow!(e) };
                    return Err(anyhow::anyhow!("leader election stopped: {e}"));
                }
            }
        }
        None => run.await,
    }
    if let Some(r) = releaser {
        r.release().await;
    }
    web_task.abort();
    tracing::info!("stopped");
    Ok(())
}

/// The watch caches keep what the controller reads; managedFields is most of an object's size.
fn strip_managed_fields(g: &mut DeserializeGuard<SpotPlan>) {
    match &mut g.0 {
        Ok(sp) => sp.managed_fields_mut().clear(),
        Err(invalid) => invalid.metadata.managed_fields = None,
    }
}

fn tokio_stream_from(
    mut rx: mpsc::UnboundedReceiver<()>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
