//! The controller's watches and their caches: SpotPlans (through `DeserializeGuard`, so one
//! malformed object cannot stop the controller) and every Karpenter NodePool.

use super::context::Context;
use super::signals::Signals;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{DynamicObject, ListParams};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use spotplan_api::SpotPlan;
use spotplan_api::karpenter::nodepool_resource;
use spotplan_api::names::PLAN_LABEL;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// A SpotPlan as the watch hands it over: one that does not deserialize is reconciled too (its
/// status says why), instead of stopping the controller.
pub(crate) type GuardedPlan = kube::core::error_boundary::DeserializeGuard<SpotPlan>;
type Plan = GuardedPlan;

/// Fails with a one-line fix when a CRD the controller needs is not installed.
pub(crate) async fn check_crds(client: &Client) -> anyhow::Result<()> {
    let lp = ListParams::default().limit(1);
    let plans = kube::api::ApiResource::erase::<SpotPlan>(&());
    if let Err(e) = Api::<DynamicObject>::all_with(client.clone(), &plans)
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

/// The SpotPlan watch (with its store) and the NodePool store, whose watch drives it.
pub(crate) struct Streams {
    plans: BoxStream<'static, Result<Plan, watcher::Error>>,
    nodepools: BoxStream<'static, Result<DynamicObject, watcher::Error>>,
}

/// Builds the watches. SpotPlans reconcile on spec (generation) changes and on first sight;
/// our own status writes do not come back as work. NodePools: one cache of all of them, read
/// by every reconcile (ownership, the live spec) instead of a GET each.
pub(crate) fn streams(client: &Client) -> (Streams, Store<Plan>, Store<DynamicObject>) {
    let (plan_store, plan_writer) = reflector::store();
    let plans = reflector(
        plan_writer,
        watcher(
            Api::<Plan>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .modify(strip_managed_fields),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default())
    .boxed();
    let nodepool_writer = reflector::store::Writer::new(nodepool_resource());
    let nodepool_store = nodepool_writer.as_reader();
    let nodepools = reflector(
        nodepool_writer,
        watcher(
            Api::<DynamicObject>::all_with(client.clone(), &nodepool_resource()),
            watcher::Config::default().any_semantic(),
        )
        .modify(|np: &mut DynamicObject| {
            np.managed_fields_mut().clear();
            // Karpenter's status is not ours to read.
            if let Some(o) = np.data.as_object_mut() {
                o.remove("status");
            }
        }),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default())
    .boxed();
    (Streams { plans, nodepools }, plan_store, nodepool_store)
}

/// Karpenter's interruption events, and what attributes them to a plan.
pub(crate) struct Interruptions {
    pub events: BoxStream<'static, Result<k8s_openapi::api::core::v1::Event, watcher::Error>>,
    pub signals: Signals,
    pub nodepools: Store<DynamicObject>,
}

/// The controller: SpotPlans, their NodePools (an edit to an owned one brings its plan back at
/// once), the interruptions of their nodes, and a reconcile of every plan on each market data
/// change.
pub(crate) fn controller(
    streams: Streams,
    plan_store: Store<Plan>,
    triggers: mpsc::UnboundedReceiver<()>,
    interruptions: Interruptions,
    concurrency: u16,
) -> Controller<Plan> {
    let Interruptions {
        events,
        signals,
        nodepools,
    } = interruptions;
    let mut triggers = triggers;
    let trigger_stream = futures::stream::poll_fn(move |cx| triggers.poll_recv(cx));
    Controller::for_stream(streams.plans, plan_store)
        .watches_stream_with(
            streams.nodepools,
            |np| {
                np.labels()
                    .get(PLAN_LABEL)
                    .map(|plan| ObjectRef::<Plan>::new(plan))
            },
            nodepool_resource(),
        )
        .watches_stream(events, move |e| {
            signals
                .plan_of(&e, &nodepools)
                .map(|name| ObjectRef::<Plan>::new(&name))
        })
        .reconcile_all_on(trigger_stream)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(super::health::shutdown_signal())
}

/// Background tasks around the controller: cache readiness (gates `/readyz` and reconciles)
/// and forgetting the records of deleted plans.
pub(crate) fn spawn_housekeeping(
    controller: &Controller<Plan>,
    ctx: &Arc<Context>,
    ready: Arc<AtomicBool>,
) {
    spawn_ready_flag(
        ctx.nodepool_cache.clone(),
        ctx.nodepools_synced.clone(),
        "NodePool",
    );
    spawn_ready_flag(controller.store(), ready, "SpotPlan");
    let (store, ctx) = (controller.store(), ctx.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            for plan in ctx.metrics.plans() {
                if store.get(&ObjectRef::new(&plan)).is_none() {
                    ctx.metrics.forget_plan(&plan);
                    ctx.memory.forget(&plan);
                }
            }
        }
    });
}

/// Sets `flag` once `store` has its first full list. The store's readiness is a one-shot that
/// wakes only its latest waiter (the controller's own runner), so ask again every half second.
fn spawn_ready_flag<K>(store: Store<K>, flag: Arc<AtomicBool>, what: &'static str)
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
{
    tokio::spawn(async move {
        loop {
            if let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await
            {
                flag.store(true, Ordering::Relaxed);
                tracing::info!("{what} cache synced");
                break;
            }
        }
    });
}

/// The watch caches keep what the controller reads; managedFields is most of an object's size.
fn strip_managed_fields(g: &mut Plan) {
    match &mut g.0 {
        Ok(sp) => sp.managed_fields_mut().clear(),
        Err(invalid) => invalid.metadata.managed_fields = None,
    }
}
