//! The reconciler: `read -> validate -> plan -> decide -> apply -> status`.
//!
//! Validation, planning and the churn decision are pure (see [`super::spec`], the optimizer and
//! [`super::decide`]); this module reads live objects, writes what changed, and nothing else.
//! Nothing is written when nothing changed: NodePools are compared field by field with what we
//! would apply, and the status with the one we would write.

use super::crd::{
    DeletionPolicy, FIELD_MANAGER, OWNER_UID_ANNOTATION, PLAN_LABEL, ROLE_LABEL, SpotPlan,
    SpotPlanStatus, conditions,
};
use super::decide::{Decision, Inputs, Why, decide};
use super::lease::Leadership;
use super::market::{Freshness, MarketCache};
use super::metrics::Metrics;
use super::spec;
use crate::core::catalog::Catalog;
use crate::core::optimizer::{PlanError, check_types, optimize};
use crate::core::plan::Plan;
use crate::core::render::{self, CapacityTypes, DEFAULT_WEIGHT};
use crate::operator::crd::{PlanStatus, RankedType};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Karpenter's NodePool, handled as a dynamic object: spotplan writes only the fields it owns.
pub fn nodepool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool"),
        "nodepools",
    )
}

/// Settings of the controller that are not per plan.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default shortest time between two data-driven narrowings.
    pub min_narrow_interval: Duration,
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: Client,
    pub catalog: &'static Catalog,
    pub market: Arc<MarketCache>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub leadership: Leadership,
    pub settings: Settings,
    /// Failed attempts per plan, for exponential backoff.
    backoff: Mutex<HashMap<String, u32>>,
    nodepools: Api<DynamicObject>,
    /// Every NodePool in the cluster, from one watch.
    nodepool_cache: Store<DynamicObject>,
    /// Set once that cache has its first full list: until then, a missing NodePool may just be
    /// one not seen yet.
    pub nodepools_synced: Arc<std::sync::atomic::AtomicBool>,
    /// The status this replica last wrote per plan. The controller is the only writer of status,
    /// so within one term of leadership this is what the API server holds, even when the watch
    /// cache has not caught up with it yet.
    written: Mutex<HashMap<String, Written>>,
    raw_plans: Api<DynamicObject>,
}

impl Context {
    pub fn new(
        client: Client,
        market: Arc<MarketCache>,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        leadership: Leadership,
        settings: Settings,
        nodepool_cache: Store<DynamicObject>,
    ) -> Context {
        let plans = ApiResource::erase::<SpotPlan>(&());
        let catalog = market.catalog();
        Context {
            nodepools: Api::all_with(client.clone(), &nodepool_resource()),
            raw_plans: Api::all_with(client.clone(), &plans),
            client,
            catalog,
            market,
            metrics,
            recorder,
            leadership,
            settings,
            backoff: Mutex::default(),
            nodepool_cache,
            nodepools_synced: Arc::default(),
            written: Mutex::default(),
        }
    }

    /// Forgets what was written for a deleted plan.
    pub fn forget(&self, plan: &str) {
        self.written.lock().expect("written lock").remove(plan);
    }

    /// The cached plan with the status we last wrote for it, when that is newer than the cache.
    /// Once the cache has caught up, the record is dropped (no second copy of every status).
    fn current(&self, cached: &SpotPlan) -> SpotPlan {
        let mut sp = cached.clone();
        let mut written = self.written.lock().expect("written lock");
        let name = cached.name_any();
        let Some(w) = written.get(&name) else {
            return sp;
        };
        let ours = Some(&w.uid) == cached.metadata.uid.as_ref()
            && w.generation == cached.metadata.generation
            && w.term == self.leadership.term();
        if ours && cached.status.as_ref() != Some(&w.status) {
            sp.status = Some(w.status.clone());
        } else {
            written.remove(&name);
        }
        sp
    }
}

struct Written {
    uid: String,
    generation: Option<i64>,
    term: u64,
    status: SpotPlanStatus,
}

/// Transient failures: the API server said no or could not be reached. Spec problems are not
/// errors; they end in Ready=False and wait for the next change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// A short fixed category for metrics labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "api_conflict",
            Error::Kube(kube::Error::Api(e)) if e.code >= 500 => "api_server_error",
            Error::Kube(kube::Error::Api(_)) => "api_rejected",
            Error::Kube(_) => "api_unreachable",
        }
    }
}

/// A whole second: Conditions and Times round-trip through the API at that precision, so
/// anything finer would make an unchanged status look changed.
fn now_second() -> Timestamp {
    whole_second(Timestamp::now())
}

fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).expect("a valid time stays valid")
}

/// Sets a condition, keeping its lastTransitionTime when its status did not change.
fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let message: String = message.chars().take(32_000).collect();
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conds.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
}

fn set_data_fresh(
    conds: &mut Vec<Condition>,
    fresh: &Freshness,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        conds,
        conditions::DATA_FRESH,
        fresh.fresh,
        fresh.reason,
        &fresh.message,
        generation,
        now,
    );
}

fn remove_condition(conds: &mut Vec<Condition>, type_: &str) {
    conds.retain(|c| c.type_ != type_);
}

fn ready_reason(status: Option<&SpotPlanStatus>) -> Option<(String, String)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The reconcile entry point.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<SpotPlan>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.duration.start_timer();
    ctx.metrics.reconciles.inc();
    let result = match &guard.0 {
        Ok(sp) => reconcile_plan(sp, &ctx).await,
        Err(invalid) => reconcile_invalid(invalid, &ctx).await,
    };
    if result.is_ok() {
        let name = match &guard.0 {
            Ok(sp) => sp.name_any(),
            Err(i) => i.metadata.name.clone().unwrap_or_default(),
        };
        ctx.backoff.lock().expect("backoff lock").remove(&name);
    }
    result
}

/// Transient errors back off exponentially per plan: 1s, 2s, 4s ... up to 5 minutes.
pub fn error_policy(
    guard: Arc<DeserializeGuard<SpotPlan>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .failures
        .with_label_values(&[err.category()])
        .inc();
    let name = match &guard.0 {
        Ok(sp) => sp.name_any(),
        Err(i) => i.metadata.name.clone().unwrap_or_default(),
    };
    let mut backoff = ctx.backoff.lock().expect("backoff lock");
    let n = backoff.entry(name.clone()).or_default();
    *n = (*n + 1).min(10);
    let delay = Duration::from_secs(1 << (*n - 1)).min(Duration::from_secs(300));
    tracing::warn!(plan = %name, error = %err, category = err.category(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// An object that does not even deserialize (a field of the wrong type that slipped past the
/// schema, say): say so in its status rather than stall the controller.
async fn reconcile_invalid(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let Some(name) = invalid.metadata.name.clone() else {
        return Ok(Action::await_change());
    };
    tracing::warn!(plan = %name, error = %invalid.error, "SpotPlan does not deserialize");
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    let now = now_second();
    let mut conds = Vec::new();
    let message = format!(
        "the SpotPlan cannot be read: {}; fix the spec",
        invalid.error
    );
    set_condition(
        &mut conds,
        conditions::READY,
        false,
        "InvalidSpec",
        &message,
        invalid.metadata.generation,
        now,
    );
    let body = json!({
        "apiVersion": SpotPlan::api_version(&()),
        "kind": SpotPlan::kind(&()),
        "status": {"observedGeneration": invalid.metadata.generation, "conditions": conds},
    });
    ctx.raw_plans
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    ctx.metrics.plan_ready.with_label_values(&[&name]).set(0.0);
    Ok(Action::await_change())
}

/// Whether `np` belongs to the SpotPlan with `uid` (an owner reference, or our annotation on
/// NodePools kept by `deletionPolicy: Orphan`).
fn owned_by(np: &DynamicObject, uid: &str) -> bool {
    np.owner_references().iter().any(|o| o.uid == uid)
        || np
            .annotations()
            .get(OWNER_UID_ANNOTATION)
            .is_some_and(|u| u == uid)
}

/// The instance types a live NodePool offers.
fn live_types(np: &DynamicObject) -> BTreeSet<String> {
    np.data["spec"]["template"]["spec"]["requirements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["key"] == render::LABEL_INSTANCE_TYPE && r["operator"] == "In")
        .flat_map(|r| r["values"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

fn plan_status(plan: &Plan) -> PlanStatus {
    let p = plan.primary();
    PlanStatus {
        primary: p.instance_type.clone(),
        primary_count: p.count as i32,
        ranking: serde_json::to_value(plan.ranking)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        type_count: plan.candidates.len() as i32,
        estimated_spot_usd_per_hour: plan.totals.spot_usd_per_hour,
        estimated_on_demand_usd_per_hour: plan.totals.on_demand_usd_per_hour,
        savings_pct: plan.totals.savings_pct,
        unknown_band_types: plan.unknown_band_types as i32,
        instance_types: plan
            .candidates
            .iter()
            .map(|c| RankedType {
                rank: c.rank as i32,
                name: c.instance_type.clone(),
                count: c.count as i32,
                band: c.interruption_band.map(i32::from),
                interruption: c.interruption_label.into(),
                savings_pct: c.savings_pct,
                spot_usd_per_hour: c.spot_usd_per_hour,
                on_demand_usd_per_hour: c.on_demand_usd_per_hour,
                total_spot_usd_per_hour: c.total_spot_usd_per_hour,
            })
            .collect(),
        notes: plan.notes.clone(),
    }
}

/// Writes the status if it differs from the live one. Returns whether it wrote.
async fn write_status(
    ctx: &Context,
    sp: &SpotPlan,
    status: &SpotPlanStatus,
) -> Result<bool, Error> {
    if sp.status.as_ref() == Some(status) {
        return Ok(false);
    }
    if !ctx.leadership.is_leader() {
        return Ok(false);
    }
    let body = json!({
        "apiVersion": SpotPlan::api_version(&()),
        "kind": SpotPlan::kind(&()),
        "status": status,
    });
    let started = std::time::Instant::now();
    Api::<SpotPlan>::all(ctx.client.clone())
        .patch_status(
            &sp.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    tracing::debug!(plan = %sp.name_any(), ms = started.elapsed().as_millis() as u64, "wrote status");
    ctx.written.lock().expect("written lock").insert(
        sp.name_any(),
        Written {
            uid: sp.uid().unwrap_or_default(),
            generation: sp.metadata.generation,
            term: ctx.leadership.term(),
            status: status.clone(),
        },
    );
    Ok(true)
}

async fn publish(ctx: &Context, sp: &SpotPlan, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    // Events are best effort: publish in the background rather than hold the reconcile.
    let (recorder, reference, plan) = (ctx.recorder.clone(), sp.object_ref(&()), sp.name_any());
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(%plan, error = %e, "could not publish an event");
        }
    });
}

/// Ready=False with `reason`: the NodePools stay as they are, the last good plan stays in
/// status, and an Event marks the transition.
async fn not_ready(
    ctx: &Context,
    sp: &SpotPlan,
    fresh: &Freshness,
    reason: &str,
    message: String,
    then: Action,
) -> Result<Action, Error> {
    let now = now_second();
    let generation = sp.metadata.generation;
    let mut status = sp.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        conditions::READY,
        false,
        reason,
        &message,
        generation,
        now,
    );
    set_data_fresh(&mut status.conditions, fresh, generation, now);
    remove_condition(&mut status.conditions, conditions::SUSPENDED);
    let before = ready_reason(sp.status.as_ref());
    if write_status(ctx, sp, &status).await? && before != Some(("False".into(), reason.into())) {
        publish(ctx, sp, EventType::Warning, reason, message).await;
    }
    ctx.metrics
        .plan_ready
        .with_label_values(&[&sp.name_any()])
        .set(0.0);
    Ok(then)
}

fn plan_error_message(e: &PlanError) -> String {
    match e.field() {
        Some(f) => format!("{}: {e}", f.spec_path()),
        None => e.to_string(),
    }
}

async fn reconcile_plan(cached: &SpotPlan, ctx: &Context) -> Result<Action, Error> {
    let name = cached.name_any();
    if cached.metadata.deletion_timestamp.is_some() || !ctx.leadership.is_leader() {
        // Deletion is garbage collection's job; followers only watch.
        return Ok(Action::await_change());
    }
    if !ctx
        .nodepools_synced
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // The watch cache can lag behind our own last status write (a NodePool event may trigger a
    // reconcile before the status update arrives), and the churn rule depends on that status.
    let current = ctx.current(cached);
    let sp = &current;
    let uid = sp.uid().unwrap_or_default();
    let generation = sp.metadata.generation;
    let now = now_second();
    let fresh = ctx.market.freshness(now);

    if sp.spec.suspend {
        let mut status = sp.status.clone().unwrap_or_default();
        status.observed_generation = generation;
        set_condition(
            &mut status.conditions,
            conditions::SUSPENDED,
            true,
            "Suspended",
            "spec.suspend is true: the NodePools are left exactly as they are",
            generation,
            now,
        );
        set_data_fresh(&mut status.conditions, &fresh, generation, now);
        if write_status(ctx, sp, &status).await? {
            publish(
                ctx,
                sp,
                EventType::Normal,
                "Suspended",
                "plan frozen by spec.suspend".into(),
            )
            .await;
        }
        return Ok(Action::await_change());
    }

    // Validate: the spec alone.
    let parsed = spec::request(&sp.spec).and_then(|req| {
        Ok((
            req,
            spec::on_demand_base(&sp.spec)?,
            spec::min_narrow_interval(&sp.spec, ctx.settings.min_narrow_interval)?,
        ))
    });
    let (req, base_cpu, min_interval) = match parsed {
        Ok(v) => v,
        Err(e) => {
            return not_ready(
                ctx,
                sp,
                &fresh,
                "InvalidSpec",
                e.to_string(),
                Action::await_change(),
            )
            .await;
        }
    };

    // Plan: against the shared market data.
    let Some(snapshot) = ctx.market.snapshot() else {
        return not_ready(
            ctx,
            sp,
            &fresh,
            "MarketDataUnavailable",
            fresh.message.clone(),
            Action::requeue(Duration::from_secs(30)),
        )
        .await;
    };
    let market = &snapshot.market;
    let plan = match optimize(&req, ctx.catalog, market) {
        Ok(p) => p,
        Err(e) => {
            return not_ready(
                ctx,
                sp,
                &fresh,
                e.category(),
                plan_error_message(&e),
                Action::await_change(),
            )
            .await;
        }
    };

    // Read what is live.
    let spot_name = render::nodepool_name(&name, "");
    let od_name = render::nodepool_name(&name, "on-demand");
    let cached = |n: &str| {
        ctx.nodepool_cache
            .get(&ObjectRef::new_with(n, nodepool_resource()))
            .map(|o| (*o).clone())
    };
    let spot_live = cached(&spot_name);
    let od_live = cached(&od_name);
    for (n, live) in [(&spot_name, &spot_live), (&od_name, &od_live)] {
        if let Some(l) = live
            && !owned_by(l, &uid)
            && (n == &spot_name || base_cpu.is_some())
        {
            let msg = format!(
                "NodePool {n} exists and is not owned by this SpotPlan; spotplan never takes over a NodePool it does not own: rename the SpotPlan or remove that NodePool"
            );
            return not_ready(
                ctx,
                sp,
                &fresh,
                "NodePoolConflict",
                msg,
                Action::await_change(),
            )
            .await;
        }
    }

    // Decide: the churn rule.
    let old = sp.status.clone().unwrap_or_default();
    // What we wrote last (our record in status), not what the NodePool says now: an edit by
    // someone else is repaired, not taken as the starting point.
    let current = spot_live.as_ref().map(|l| {
        if old.instance_types.is_empty() {
            live_types(l)
        } else {
            old.instance_types.iter().cloned().collect()
        }
    });
    let current_list: Vec<String> = current.iter().flatten().cloned().collect();
    let no_longer_fit: BTreeSet<String> = check_types(&req, ctx.catalog, market, &current_list)
        .map(|r| {
            current_list
                .iter()
                .zip(r)
                .filter(|(_, f)| f.is_some())
                .map(|(t, _)| t.clone())
                .collect()
        })
        .unwrap_or_default();
    let ranked: Vec<String> = plan
        .candidates
        .iter()
        .map(|c| c.instance_type.clone())
        .collect();
    let decision: Decision = decide(&Inputs {
        current: current.as_ref(),
        fresh_ranked: &ranked,
        no_longer_fit: &no_longer_fit,
        spec_changed: old.node_pool_generation != generation,
        data_fresh: fresh.fresh,
        last_narrowed: old.last_narrowed.as_ref().map(|t| t.0),
        now,
        min_interval,
        cap: (2 * req.max_types).min(100),
    });
    let types: Vec<String> = decision.types.iter().cloned().collect();

    // Apply: only what differs from the live objects.
    let mut archs: Vec<_> = types
        .iter()
        .filter_map(|t| ctx.catalog.get(t).and_then(|t| t.arch()))
        .collect();
    archs.sort_unstable();
    archs.dedup();
    let settings = spec::nodepool_settings(&sp.spec);
    let weight = settings.weight.unwrap_or(DEFAULT_WEIGHT);
    let fallback = sp
        .spec
        .capacity
        .as_ref()
        .is_some_and(|c| c.on_demand_fallback);
    let capacity = if fallback {
        CapacityTypes::SpotWithOnDemandFallback
    } else {
        CapacityTypes::Spot
    };
    let mut desired = vec![(
        spot_name.clone(),
        "spot",
        render::nodepool_spec(
            &types,
            &archs,
            capacity,
            (PLAN_LABEL, &name),
            &settings,
            weight,
            settings.limits.clone(),
        ),
        &spot_live,
    )];
    if let Some(base) = base_cpu {
        // Karpenter skips instance types that would overrun a NodePool's remaining limits: offer
        // the on-demand base the plan's types that fit inside it (all of them if none does).
        let fitting: Vec<String> = types
            .iter()
            .filter(|t| ctx.catalog.get(t).is_some_and(|t| t.vcpus <= base))
            .cloned()
            .collect();
        let od_types = if fitting.is_empty() {
            types.clone()
        } else {
            fitting
        };
        let mut od_archs: Vec<_> = od_types
            .iter()
            .filter_map(|t| ctx.catalog.get(t).and_then(|t| t.arch()))
            .collect();
        od_archs.sort_unstable();
        od_archs.dedup();
        desired.push((
            od_name.clone(),
            "on-demand-base",
            render::nodepool_spec(
                &od_types,
                &od_archs,
                CapacityTypes::OnDemand,
                (PLAN_LABEL, &name),
                &settings,
                weight + 1,
                Some(json!({"cpu": base.to_string()})),
            ),
            &od_live,
        ));
    }
    let orphan = sp.spec.deletion_policy == DeletionPolicy::Orphan;
    let mut pools = Vec::new();
    let mut to_write = Vec::new();
    for (np_name, role, np_spec, live) in desired {
        let mut meta = json!({
            "name": np_name,
            "labels": {PLAN_LABEL: name, ROLE_LABEL: role, "app.kubernetes.io/managed-by": "spotplan"},
            "annotations": {OWNER_UID_ANNOTATION: uid},
        });
        if !orphan {
            meta["ownerReferences"] = json!([{
                "apiVersion": SpotPlan::api_version(&()), "kind": SpotPlan::kind(&()),
                "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true,
            }]);
        }
        let obj = json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": meta, "spec": np_spec});
        pools.push(np_name.clone());
        let up_to_date = live.as_ref().is_some_and(|l| {
            let has_owner_ref = l.owner_references().iter().any(|o| o.uid == uid);
            serde_json::to_value(l).is_ok_and(|v| render::json_subset(&obj, &v))
                && has_owner_ref != orphan
        });
        if !up_to_date {
            to_write.push((np_name, role, obj));
        }
    }
    if !to_write.is_empty() && !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    // The spot and on-demand NodePools are independent: write them at once.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patches: Vec<_> = to_write
        .iter()
        .map(|(_, _, obj)| Patch::Apply(obj))
        .collect();
    let t0 = std::time::Instant::now();
    let results = futures::future::join_all(
        to_write
            .iter()
            .zip(&patches)
            .map(|((np_name, _, _), patch)| ctx.nodepools.patch(np_name, &params, patch)),
    )
    .await;
    tracing::debug!(plan = %name, writes = to_write.len(), ms = t0.elapsed().as_millis() as u64, "applied NodePools");
    for ((np_name, role, _), result) in to_write.iter().zip(results) {
        match result {
            Ok(_) => ctx.metrics.nodepool_writes.with_label_values(&[role]).inc(),
            // Karpenter's CRD refused what the spec passes through (a bad disruption block,
            // a bad requirement): a spec problem, not a transient one.
            Err(kube::Error::Api(e)) if e.code == 422 => {
                let msg = format!(
                    "Karpenter's NodePool validation refused {np_name}: {}; fix spec.nodePool",
                    e.message
                );
                return not_ready(
                    ctx,
                    sp,
                    &fresh,
                    "NodePoolRejected",
                    msg,
                    Action::await_change(),
                )
                .await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if base_cpu.is_none()
        && let Some(l) = &od_live
        && owned_by(l, &uid)
        && ctx.leadership.is_leader()
    {
        ctx.nodepools
            .delete(&od_name, &DeleteParams::default())
            .await?;
        publish(
            ctx,
            sp,
            EventType::Normal,
            "OnDemandBaseRemoved",
            format!("deleted NodePool {od_name}: spec.capacity.onDemandBase is gone"),
        )
        .await;
    }

    // Events on every change of the type list.
    if current.is_none() {
        publish(
            ctx,
            sp,
            EventType::Normal,
            "NodePoolsCreated",
            format!(
                "wrote {} with {} instance types (primary {})",
                pools.join(", "),
                types.len(),
                plan.primary().instance_type
            ),
        )
        .await;
    } else if !decision.added.is_empty() || !decision.removed.is_empty() {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        publish(
            ctx,
            sp,
            EventType::Normal,
            "InstanceTypesChanged",
            format!(
                "{:?}: added [{}]; removed [{}]",
                decision.why,
                list(&decision.added),
                list(&decision.removed)
            ),
        )
        .await;
    }

    // Status.
    let mut status = SpotPlanStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        plan: Some(plan_status(&plan)),
        node_pools: pools.clone(),
        instance_types: types.clone(),
        data_timestamp: market
            .advisor_source
            .as_ref()
            .map(|p| Time(whole_second(p.as_of))),
        prices_timestamp: market
            .prices_source
            .as_ref()
            .map(|p| Time(whole_second(p.as_of))),
        node_pool_generation: generation,
        last_narrowed: if decision.removed.is_empty() || current.is_none() {
            old.last_narrowed.clone()
        } else {
            Some(Time(now))
        },
    };
    let summary = format!(
        "{} instance types in {} (primary {} x{}{})",
        types.len(),
        pools.join(", "),
        plan.primary().instance_type,
        plan.primary().count,
        plan.totals
            .spot_usd_per_hour
            .map_or(String::new(), |s| format!(", est. ${s:.4}/h spot")),
    );
    set_condition(
        &mut status.conditions,
        conditions::READY,
        true,
        "PlanApplied",
        &summary,
        generation,
        now,
    );
    set_data_fresh(&mut status.conditions, &fresh, generation, now);
    remove_condition(&mut status.conditions, conditions::SUSPENDED);
    match (decision.why, decision.narrow_at) {
        (Why::NarrowingDeferred, Some(at)) => set_condition(
            &mut status.conditions,
            conditions::NARROWING_DEFERRED,
            true,
            "MinNarrowInterval",
            &format!(
                "some instance types no longer fit; they are removed at {} (spec.minNarrowInterval after the last narrowing)",
                at.strftime("%Y-%m-%dT%H:%M:%SZ")
            ),
            generation,
            now,
        ),
        _ => remove_condition(&mut status.conditions, conditions::NARROWING_DEFERRED),
    }
    // Keep the transition times of conditions whose status did not move, and never rewrite an
    // equal status.
    write_status(ctx, sp, &status).await?;

    let m = &ctx.metrics;
    m.plan_ready.with_label_values(&[&name]).set(1.0);
    m.plan_types
        .with_label_values(&[&name])
        .set(types.len() as f64);
    if let Some(s) = plan.totals.spot_usd_per_hour {
        m.plan_spot_usd.with_label_values(&[&name]).set(s);
    }
    if let Some(o) = plan.totals.on_demand_usd_per_hour {
        m.plan_on_demand_usd.with_label_values(&[&name]).set(o);
    }
    if let Some(p) = plan.totals.savings_pct {
        m.plan_savings.with_label_values(&[&name]).set(p / 100.0);
    }
    Ok(match decision.narrow_at {
        Some(at) => Action::requeue(
            Duration::try_from(at.duration_since(now))
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_secs(1)),
        ),
        None => Action::await_change(),
    })
}
