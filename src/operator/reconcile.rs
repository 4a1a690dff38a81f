//! The reconciler: `read -> validate -> shift -> plan -> decide -> desired objects -> apply ->
//! status`.
//!
//! Validation, planning, the churn decision and the desired objects are pure (see [`spec`],
//! the optimizer, [`churn`] and [`desired`]); this module reads live objects, writes what
//! changed, and nothing else. Nothing is written when nothing changed: NodePools are compared
//! field by field with what we would apply, and the status with the one we would write.

use super::context::Context;
use super::crd::{SpotPlan, conditions};
use super::desired::{self, Owner};
use super::nodepools;
use super::outcome::{Error, NotReady, Outcome, Reason, Retry, Stop};
use super::refresh::Freshness;
use super::spec::{self, PlanSpec};
use super::status::{self, Applied};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use spotplan_core::plan::Plan;
use spotplan_core::policy::churn::{self, Decision};
use spotplan_core::policy::shift::{self, Posture};
use spotplan_core::{MarketData, optimize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// The reconcile entry point.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<SpotPlan>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.duration.start_timer();
    let _running = ctx.health.reconcile_started();
    let (name, result) = match &guard.0 {
        Ok(sp) => (sp.name_any(), reconcile_plan(sp, &ctx).await),
        Err(invalid) => (
            invalid.metadata.name.clone().unwrap_or_default(),
            reconcile_invalid(invalid, &ctx).await,
        ),
    };
    let outcome = match &result {
        Ok((o, _)) => *o,
        Err(_) => Outcome::Failed,
    };
    ctx.metrics
        .reconciles
        .with_label_values(&[outcome.as_str()])
        .inc();
    if result.is_ok() {
        ctx.backoff.lock().expect("backoff lock").remove(&name);
    }
    result.map(|(_, action)| action)
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

fn action(retry: Retry) -> Action {
    match retry {
        Retry::OnChange => Action::await_change(),
        Retry::After(d) => Action::requeue(d),
    }
}

/// What a reconcile did, and when to come back.
type Done = (Outcome, Action);

/// A whole second (Conditions round-trip at that precision).
fn now_second() -> Timestamp {
    status::whole_second(Timestamp::now())
}

/// One SpotPlan, as its steps.
async fn reconcile_plan(cached: &SpotPlan, ctx: &Context) -> Result<Done, Error> {
    let now = now_second();
    let fresh = ctx.market.freshness(now, Some(cached.spec.region.as_str()));
    if let Some(wait) = not_now(cached, ctx, &fresh) {
        return Ok((Outcome::Deferred, wait));
    }
    // The watch cache can lag behind our own last status write, and the churn rule depends on
    // that status.
    let sp = &ctx.current(cached);
    if sp.spec.suspend {
        return suspended(ctx, sp, &fresh, now).await;
    }
    match plan_and_apply(ctx, sp, &fresh, now).await {
        Ok(Some(applied)) => finish(ctx, sp, &applied, &fresh, now).await,
        Ok(None) => Ok((Outcome::Deferred, Action::await_change())),
        Err(Stop::NotReady(nr)) => {
            let wrote = status::report_not_ready(ctx, sp, &nr, &fresh, now).await?;
            let outcome = if wrote {
                Outcome::Applied
            } else {
                Outcome::NotReady
            };
            Ok((outcome, action(nr.retry)))
        }
        Err(Stop::Transient(e)) => Err(e),
    }
}

/// validate -> plan -> decide -> desired objects -> apply. `None` when there is nothing to do
/// now: this replica lost the lead, or the plan's region awaits its first live data.
async fn plan_and_apply(
    ctx: &Context,
    sp: &SpotPlan,
    fresh: &Freshness,
    now: Timestamp,
) -> Result<Option<Applied>, Stop> {
    let input = spec::validate(&sp.spec, ctx.settings.min_narrow_interval)
        .map_err(|e| NotReady::new(Reason::InvalidSpec, e.to_string()))?;
    // With live data, a region not loaded yet waits for its first load (which this wakes).
    if ctx.market.use_region(&input.request.region) {
        return Ok(None);
    }
    let market = ctx
        .market
        .snapshot()
        .ok_or_else(|| NotReady::new(Reason::MarketDataUnavailable, fresh.message.clone()))?;
    let name = sp.name_any();
    let uid = sp.uid().unwrap_or_default();
    let (spot_name, od_name) = desired::names(&name);
    let shift_name = desired::shift_name(&name);
    let shift = shift_step(ctx, sp, &input, (&spot_name, &shift_name), now);
    let launch_failures =
        launch_failures_step(ctx, sp, &input, [&spot_name, &od_name, &shift_name], now);
    let (input, mut plan) = plan_without_demoted(input, &shift.state.demoted, &market)?;
    if ctx.settings.placement_scores {
        ctx.market.placement(&mut plan).await;
    }
    let spot_live = nodepools::cached(ctx, &spot_name);
    nodepools::check_owned(&spot_name, spot_live.as_ref(), &uid)?;
    let decision = decide(
        sp,
        &input,
        (&plan, &market),
        &ctx.settings,
        spot_live.as_ref(),
        fresh,
        now,
    )?;
    let types: Vec<String> = decision.types.iter().cloned().collect();
    let (api_version, kind) = nodepools::owner_meta();
    let owner = Owner {
        name: &name,
        uid: &uid,
        api_version: &api_version,
        kind: &kind,
    };
    let mut want = desired::nodepools(owner, &input, &types, market.catalog());
    want.extend(desired::shift_nodepool(
        owner,
        &input,
        &types,
        market.catalog(),
        shift.state.posture,
    ));
    if !ctx.leadership.is_leader() {
        return Ok(None);
    }
    let written = nodepools::apply(ctx, &uid, &want).await?;
    let removed = input.on_demand_base.is_none() && nodepools::remove(ctx, &od_name, &uid).await?;
    let shift_removed =
        shift.state.posture == Posture::Spot && nodepools::remove(ctx, &shift_name, &uid).await?;
    if removed {
        status::publish(
            ctx,
            sp,
            EventType::Normal,
            "OnDemandBaseRemoved",
            format!("deleted NodePool {od_name}: spec.capacity.onDemandBase is gone"),
        );
    }
    Ok(Some(Applied {
        plan,
        market,
        decision,
        pools: want.into_iter().map(|d| d.name).collect(),
        existed: spot_live.is_some(),
        wrote: !written.is_empty() || removed || shift_removed,
        shift,
        shift_pool: shift_name,
        launch_failures,
    }))
}

/// The shift policy over the plan's log in status and the interruptions the cluster reported.
fn shift_step(
    ctx: &Context,
    sp: &SpotPlan,
    input: &PlanSpec,
    (spot_name, shift_name): (&str, &str),
    now: Timestamp,
) -> shift::Decision {
    let state = status::shift_state(sp.status.as_ref());
    let seen = super::interruptions::seen(&ctx.interruption_events, &ctx.claims, spot_name);
    // Until the NodeClaim cache is synced, the shift pool's nodes are unknown: never end a
    // return (and delete the pool) on a count that may be wrong.
    let shift_nodes = if ctx.claims.synced() {
        ctx.claims.live_in(shift_name)
    } else {
        usize::MAX
    };
    shift::decide(input.shift.as_ref(), &state, &seen, shift_nodes, now)
}

/// The plan's launch failures for want of capacity: the log in status with what the cluster
/// reported since, kept as long as the interruptions are.
fn launch_failures_step(
    ctx: &Context,
    sp: &SpotPlan,
    input: &PlanSpec,
    pools: [&str; 3],
    now: Timestamp,
) -> status::LaunchFailures {
    let old = status::launch_failure_log(sp.status.as_ref());
    let seen = super::interruptions::launch_failures(&ctx.interruption_events, &ctx.claims, &pools);
    let (log, recorded) = shift::record(&old, &seen, now, shift::memory(input.shift.as_ref()));
    status::LaunchFailures { log, recorded }
}

/// The plan without the demoted types; with them if leaving them out leaves nothing.
fn plan_without_demoted(
    input: PlanSpec,
    demoted: &BTreeSet<String>,
    market: &MarketData,
) -> Result<(PlanSpec, Plan), Stop> {
    if !demoted.is_empty() {
        let mut without = input.clone();
        without
            .request
            .exclude_types
            .extend(demoted.iter().cloned());
        if let Ok(plan) = optimize(&without.request, market) {
            return Ok((without, plan));
        }
    }
    let plan = optimize(&input.request, market)?;
    Ok((input, plan))
}

/// Why not to reconcile `sp` now, with when to come back; `None` to go ahead.
fn not_now(sp: &SpotPlan, ctx: &Context, fresh: &Freshness) -> Option<Action> {
    if sp.metadata.deletion_timestamp.is_some() || !ctx.leadership.is_leader() {
        return Some(Action::await_change());
    }
    if !ctx
        .nodepools_synced
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Some(Action::requeue(Duration::from_millis(500)));
    }
    // A plan is never marked unavailable (and written) just because the first load is still
    // running: the refresh loop requeues every plan when it ends.
    fresh.loading().then(Action::await_change)
}

/// The churn rule over what is written now and the fresh plan.
fn decide(
    sp: &SpotPlan,
    input: &PlanSpec,
    (plan, market): (&Plan, &MarketData),
    settings: &super::context::Settings,
    spot_live: Option<&kube::api::DynamicObject>,
    fresh: &Freshness,
    now: Timestamp,
) -> Result<Decision, Stop> {
    let old = sp.status.clone().unwrap_or_default();
    // What we wrote last (our record in status), not what the NodePool says now: an edit by
    // someone else is repaired, not taken as the starting point.
    let written: Option<BTreeSet<String>> = spot_live.map(|l| {
        if old.instance_types.is_empty() {
            nodepools::live_types(l)
        } else {
            old.instance_types.iter().cloned().collect()
        }
    });
    let state = churn::State {
        written,
        last_narrowed: old.last_narrowed.as_ref().map(|t| t.0),
        marginal_since: old
            .over_ceiling
            .iter()
            .map(|o| (o.name.clone(), o.since.0))
            .collect(),
    };
    Ok(churn::step(
        &input.request,
        plan,
        market,
        &state,
        (
            old.node_pool_generation != sp.metadata.generation,
            fresh.fresh,
        ),
        now,
        churn::Settings {
            min_interval: input.min_narrow_interval,
            confirm: settings.confirm_over_ceiling,
            settle: settings.settle_over_default_cap,
            cap: input
                .request
                .max_types
                .min(spotplan_core::limits::MAX_WRITTEN_TYPES),
        },
    )?)
}

/// Status, Events and metrics of a plan whose NodePools match the decision.
async fn finish(
    ctx: &Context,
    sp: &SpotPlan,
    a: &Applied,
    fresh: &Freshness,
    now: Timestamp,
) -> Result<Done, Error> {
    status::publish_changes(ctx, sp, a);
    let new_status = status::applied_status(sp, a, fresh, now);
    let wrote_status = status::write(ctx, sp, &new_status).await?;
    status::record_metrics(ctx, &sp.name_any(), &a.plan, a.decision.types.len());
    status::record_shift(ctx, sp, a);
    let outcome = if a.wrote || wrote_status {
        Outcome::Applied
    } else {
        Outcome::Unchanged
    };
    let until = |at: Timestamp| {
        Duration::try_from(at.duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    };
    let mut waits: Vec<Duration> = [a.decision.narrow_at, a.shift.wake_at]
        .into_iter()
        .flatten()
        .map(until)
        .collect();
    // While returning, look again for the shift pool's nodes having moved back.
    if matches!(a.shift.state.posture, Posture::Returning { .. }) {
        waits.push(Duration::from_secs(10));
    }
    let next = waits
        .into_iter()
        .min()
        .map_or_else(Action::await_change, Action::requeue);
    Ok((outcome, next))
}

/// `spec.suspend`: the NodePools stay exactly as they are.
async fn suspended(
    ctx: &Context,
    sp: &SpotPlan,
    fresh: &Freshness,
    now: Timestamp,
) -> Result<Done, Error> {
    let status = status::suspended_status(sp, fresh, now);
    let was = sp.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == conditions::SUSPENDED)
    });
    let wrote = status::write(ctx, sp, &status).await?;
    if wrote && !was {
        status::publish(
            ctx,
            sp,
            EventType::Normal,
            "Suspended",
            "plan frozen by spec.suspend".into(),
        );
    }
    let outcome = if wrote {
        Outcome::Applied
    } else {
        Outcome::Unchanged
    };
    Ok((outcome, Action::await_change()))
}

/// An object that does not even deserialize (a field of the wrong type that slipped past the
/// schema, say): say so in its status rather than stall the controller.
async fn reconcile_invalid(invalid: &InvalidObject, ctx: &Context) -> Result<Done, Error> {
    let Some(name) = invalid.metadata.name.clone() else {
        return Ok((Outcome::Deferred, Action::await_change()));
    };
    tracing::warn!(plan = %name, error = %invalid.error, "SpotPlan does not deserialize");
    if !ctx.leadership.is_leader() {
        return Ok((Outcome::Deferred, Action::await_change()));
    }
    let mut conds = Vec::new();
    let message = format!(
        "the SpotPlan cannot be read: {}; fix the spec",
        invalid.error
    );
    status::set_condition(
        &mut conds,
        conditions::READY,
        false,
        Reason::InvalidSpec.as_str(),
        &message,
        invalid.metadata.generation,
        now_second(),
    );
    let body = json!({
        "apiVersion": SpotPlan::api_version(&()),
        "kind": SpotPlan::kind(&()),
        "status": {"observedGeneration": invalid.metadata.generation, "conditions": conds},
    });
    ctx.raw_plans
        .patch_status(
            &name,
            &PatchParams::apply(super::crd::FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    ctx.metrics.plan_ready.with_label_values(&[&name]).set(0.0);
    Ok((Outcome::NotReady, Action::await_change()))
}
