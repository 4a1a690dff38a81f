//! The controller's watches and their caches: SpotPlans (through `DeserializeGuard`, so one
//! malformed object cannot stop the controller) and every Karpenter NodePool.

use super::compact::{Compact, compacted, keep_conditions};
use super::context::Context;
use super::memory::Memory;
use super::signals::Signals;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{DynamicObject, ListParams};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use spotplan_api::SpotPlan;
use spotplan_api::karpenter::nodepool_resource;
use spotplan_api::names::OWNER_UID_ANNOTATION;
use std::collections::{BTreeSet, HashMap};
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
    nodepools: BoxStream<'static, Result<Compact, watcher::Error>>,
}

/// Builds the watches. SpotPlans reconcile on spec (generation) changes and on first sight;
/// our own status writes do not come back as work. NodePools: one cache of all of them, read
/// by every reconcile (ownership, the live spec) instead of a GET each.
pub(crate) fn streams(client: &Client) -> (Streams, Store<Plan>, Store<Compact>) {
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
        compacted(
            watcher(
                Api::<DynamicObject>::all_with(client.clone(), &nodepool_resource()),
                watcher::Config::default().any_semantic(),
            ),
            // Of Karpenter's status, only its conditions matter (NodePoolsReady mirrors them).
            keep_conditions,
        ),
    )
    .default_backoff();
    let nodepools = changes(nodepools).boxed();
    (Streams { plans, nodepools }, plan_store, nodepool_store)
}

/// The NodePools whose fields spotplan owns changed (labels, annotations, owner references,
/// spec: a label-only edit counts, though it bumps no generation), or whose conditions
/// Karpenter changed (NodePoolsReady mirrors them), and every deleted one (a foreign NodePool
/// that held a plan's name going away). Karpenter's other status updates do not count.
fn changes(
    events: impl futures::Stream<Item = Result<watcher::Event<Compact>, watcher::Error>>
    + Send
    + 'static,
) -> impl futures::Stream<Item = Result<Compact, watcher::Error>> + Send + 'static {
    let mut seen: HashMap<String, u64> = HashMap::new();
    events
        .map(move |e| {
            let out: Vec<Result<Compact, watcher::Error>> = match e {
                Ok(watcher::Event::Apply(np) | watcher::Event::InitApply(np)) => {
                    let hash = owned_fields(&np);
                    let changed = seen.insert(np.uid().unwrap_or_default(), hash) != Some(hash);
                    changed.then_some(Ok(np)).into_iter().collect()
                }
                Ok(watcher::Event::Delete(np)) => {
                    seen.remove(&np.uid().unwrap_or_default());
                    vec![Ok(np)]
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => Vec::new(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(out)
        })
        .flatten()
}

/// A hash of what spotplan owns on a NodePool.
fn owned_fields(np: &Compact) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let m = &np.metadata;
    (&m.labels, &m.annotations).hash(&mut h);
    m.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    for o in np.owner_references() {
        (&o.uid, &o.name, &o.kind, o.controller).hash(&mut h);
    }
    // The spec, and Karpenter's conditions' type, status, reason and message (the cache keeps
    // no more of its status).
    np.body().hash(&mut h);
    h.finish()
}

/// The plans an event on `np` concerns: the owner reference's (a SpotPlan, by name; the
/// reconcile checks the uid), the owner-uid annotation's (a plan kept by `deletionPolicy:
/// Orphan`, found by uid), and the plan whose NodePool name it has (a NodePool that lost every
/// mark, or someone else's holding a plan's name). Never the editable plan label.
fn plans_of(np: &Compact, plans: &Store<Plan>, memory: &Memory) -> Vec<ObjectRef<Plan>> {
    let mut names: BTreeSet<String> = np
        .owner_references()
        .iter()
        .filter(|o| o.kind == "SpotPlan" && o.api_version.starts_with("spotplan.dev/"))
        .map(|o| o.name.clone())
        .collect();
    if names.is_empty()
        && let Some(uid) = np.annotations().get(OWNER_UID_ANNOTATION)
    {
        names.extend(plans.state().iter().find_map(|p| match &p.0 {
            Ok(sp) if sp.metadata.uid.as_ref() == Some(uid) => Some(sp.name_any()),
            _ => None,
        }));
    }
    names.extend(
        np.metadata
            .name
            .as_deref()
            .and_then(|n| memory.plan_named_for(n)),
    );
    names.iter().map(|n| ObjectRef::new(n)).collect()
}

/// The plan an overlay belongs to: its owner reference's (the reconcile checks the uid).
/// Karpenter's status updates (validation, conflicts) bring the plan back too.
fn overlay_owner(o: Compact) -> Vec<ObjectRef<Plan>> {
    o.owner_references()
        .iter()
        .filter(|r| r.kind == "SpotPlan" && r.api_version.starts_with("spotplan.dev/"))
        .map(|r| ObjectRef::new(&r.name))
        .collect()
}

/// Karpenter's interruption events, and what attributes them to a plan.
pub(crate) struct Interruptions {
    pub events: BoxStream<'static, Result<k8s_openapi::api::core::v1::Event, watcher::Error>>,
    pub signals: Signals,
    pub nodepools: Store<Compact>,
}

/// The controller: SpotPlans, their NodePools (an edit to an owned one brings its plan back at
/// once), the interruptions of their nodes, and a reconcile of every plan on each market data
/// change.
pub(crate) fn controller(
    streams: Streams,
    plan_store: Store<Plan>,
    triggers: mpsc::UnboundedReceiver<()>,
    interruptions: Interruptions,
    overlays: BoxStream<'static, Result<Compact, watcher::Error>>,
    ctx: &Arc<Context>,
    concurrency: u16,
) -> Controller<Plan> {
    let Interruptions {
        events,
        signals,
        nodepools,
    } = interruptions;
    let mut triggers = triggers;
    let trigger_stream = futures::stream::poll_fn(move |cx| triggers.poll_recv(cx));
    let (by_pool, by_event) = (ctx.clone(), ctx.clone());
    let (plans, plans_too) = (plan_store.clone(), plan_store.clone());
    Controller::for_stream(streams.plans, plan_store)
        .watches_stream_with(
            streams.nodepools,
            move |np| plans_of(&np, &plans, &by_pool.memory),
            nodepool_resource(),
        )
        .watches_stream_with(
            overlays,
            overlay_owner,
            spotplan_api::karpenter::nodeoverlay_resource(),
        )
        .watches_stream(events, move |e| {
            signals
                .nodepool_of(&e, &nodepools)
                .map(|np| plans_of(&np, &plans_too, &by_event.memory))
                .unwrap_or_default()
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
    if ctx.overlays.served {
        spawn_ready_flag(
            ctx.overlays.store.clone(),
            ctx.overlays.synced.clone(),
            "NodeOverlay",
        );
    }
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
