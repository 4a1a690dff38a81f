//! The SpotPlan's status: built from what a reconcile found (pure), written only when it
//! changed (an unchanged status is never written), with Events on transitions only.

use super::context::Context;
use super::crd::{
    DataSourceStatus, FIELD_MANAGER, PlanStatus, RankedType, SpotPlan, SpotPlanStatus, conditions,
};
use super::outcome::{Error, NotReady, Reason};
use super::refresh::Freshness;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use spotplan_core::MarketData;
use spotplan_core::plan::Plan;
use spotplan_core::policy::churn::{Decision, Why};
use spotplan_core::policy::shift::{self, Move, Posture};

/// A whole second: Conditions and Times round-trip through the API at that precision, so
/// anything finer would make an unchanged status look changed.
pub fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).expect("a valid time stays valid")
}

/// Sets a condition, keeping its lastTransitionTime when its status did not change.
pub fn set_condition(
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

pub fn remove_condition(conds: &mut Vec<Condition>, type_: &str) {
    conds.retain(|c| c.type_ != type_);
}

/// Every source's state as status shows it.
pub fn data_sources(fresh: &Freshness) -> Vec<DataSourceStatus> {
    fresh
        .sources
        .iter()
        .map(|s| DataSourceStatus {
            source: s.provenance.kind.as_str().into(),
            region: s.provenance.region.clone(),
            location: s.provenance.location.clone(),
            as_of: (!s.unavailable).then(|| Time(whole_second(s.provenance.as_of))),
            fresh: s.fresh && !s.unavailable,
            message: s.message.clone(),
        })
        .collect()
}

fn set_data_fresh(conds: &mut Vec<Condition>, fresh: &Freshness, g: Option<i64>, now: Timestamp) {
    set_condition(
        conds,
        conditions::DATA_FRESH,
        fresh.fresh,
        fresh.reason,
        &fresh.message,
        g,
        now,
    );
}

fn ready_of(status: Option<&SpotPlanStatus>) -> Option<(String, String)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The ranked plan as status shows it.
pub fn plan_status(plan: &Plan) -> PlanStatus {
    let p = plan.primary();
    PlanStatus {
        primary: p.instance_type.clone(),
        primary_count: i32::try_from(p.count).unwrap_or(i32::MAX),
        ranking: serde_json::to_value(plan.ranking)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        interruption_ceiling: Some(super::crd::CeilingStatus {
            band: plan.interruption_ceiling.band.map(i32::from),
            source: serde_json::to_value(plan.interruption_ceiling.source)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        }),
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
                count: i32::try_from(c.count).unwrap_or(i32::MAX),
                band: c.interruption_band.map(i32::from),
                interruption: c.interruption_label.into(),
                savings_pct: c.savings_pct,
                spot_usd_per_hour: c.spot_usd_per_hour,
                on_demand_usd_per_hour: c.on_demand_usd_per_hour,
                total_spot_usd_per_hour: c.total_spot_usd_per_hour,
            })
            .collect(),
        notes: plan.notes.clone(),
        placement_scores: plan
            .placement_scores
            .iter()
            .map(|z| super::crd::ZoneScoreStatus {
                zone: z.zone.clone(),
                score: i32::from(z.score),
            })
            .collect(),
    }
}

/// A plan whose NodePools now match the decision.
pub struct Applied {
    pub plan: Plan,
    pub market: MarketData,
    pub decision: Decision,
    pub pools: Vec<String>,
    /// Whether NodePools existed before this reconcile.
    pub existed: bool,
    /// Whether this reconcile wrote (or deleted) a NodePool.
    pub wrote: bool,
    /// The on-demand shift after this reconcile.
    pub shift: shift::Decision,
    /// The shift NodePool's name.
    pub shift_pool: String,
    pub launch_failures: LaunchFailures,
}

/// The plan's launch failures for want of capacity (Karpenter's InsufficientCapacityError),
/// one per NodeClaim, and the ones new in this reconcile.
pub struct LaunchFailures {
    pub log: Vec<shift::Interruption>,
    pub recorded: Vec<shift::Interruption>,
}

/// The launch-failure log as the status holds it.
pub fn launch_failure_log(status: Option<&SpotPlanStatus>) -> Vec<shift::Interruption> {
    status.map_or_else(Vec::new, |s| from_logged(&s.launch_failure_log))
}

fn from_logged(log: &[super::crd::LoggedInterruption]) -> Vec<shift::Interruption> {
    log.iter()
        .map(|i| shift::Interruption {
            at: i.at.0,
            uid: i.node_claim_uid.clone(),
            instance_type: i.instance_type.clone(),
            zone: i.zone.clone(),
        })
        .collect()
}

fn to_logged(log: &[shift::Interruption]) -> Vec<super::crd::LoggedInterruption> {
    log.iter()
        .map(|i| super::crd::LoggedInterruption {
            node_claim_uid: i.uid.clone(),
            instance_type: i.instance_type.clone(),
            zone: i.zone.clone(),
            at: Time(whole_second(i.at)),
        })
        .collect()
}

fn counted(log: &[shift::Interruption]) -> Vec<super::crd::ObservedInterruption> {
    shift::observed(log)
        .into_iter()
        .map(|o| super::crd::ObservedInterruption {
            instance_type: o.instance_type,
            zone: o.zone,
            count: i32::try_from(o.count).unwrap_or(i32::MAX),
            last_seen: Time(whole_second(o.last_seen)),
        })
        .collect()
}

/// The shift policy's state as the status holds it.
pub fn shift_state(status: Option<&SpotPlanStatus>) -> shift::ShiftState {
    let Some(s) = status else {
        return shift::ShiftState::default();
    };
    shift::ShiftState {
        log: from_logged(&s.interruption_log),
        posture: match s.shift.as_ref() {
            Some(p) if p.posture == "Shifted" => Posture::Shifted { since: p.since.0 },
            Some(p) if p.posture == "Returning" => Posture::Returning { since: p.since.0 },
            _ => Posture::Spot,
        },
        demoted: s.demoted_instance_types.iter().cloned().collect(),
        returned_at: s.last_returned_to_spot.as_ref().map(|t| t.0),
    }
}

/// The shift's fields of the status, and its condition.
fn set_shift(
    status: &mut SpotPlanStatus,
    a: &Applied,
    spec_on: bool,
    g: Option<i64>,
    now: Timestamp,
) {
    let st = &a.shift.state;
    status.interruption_log = to_logged(&st.log);
    status.observed_interruptions = counted(&st.log);
    status.launch_failure_log = to_logged(&a.launch_failures.log);
    status.observed_launch_failures = counted(&a.launch_failures.log);
    status.demoted_instance_types = st.demoted.iter().cloned().collect();
    status.last_returned_to_spot = st.returned_at.map(|t| Time(whole_second(t)));
    let since = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    status.shift = match st.posture {
        Posture::Spot => None,
        Posture::Shifted { since } => Some(super::crd::ShiftStatus {
            posture: "Shifted".into(),
            since: Time(whole_second(since)),
        }),
        Posture::Returning { since } => Some(super::crd::ShiftStatus {
            posture: "Returning".into(),
            since: Time(whole_second(since)),
        }),
    };
    let conds = &mut status.conditions;
    let last = st.log.last().map(|i| since(i.at)).unwrap_or_default();
    match st.posture {
        Posture::Shifted { since: s } => set_condition(
            conds,
            conditions::SHIFTED_TO_ON_DEMAND,
            true,
            "SpotInterrupted",
            &format!(
                "{} interruptions of the plan's spot nodes within the window (spec.capacity.onDemandShift); new capacity goes to on-demand NodePool {} since {}; last interruption {last}",
                st.log.len(),
                a.shift_pool,
                since(s)
            ),
            g,
            now,
        ),
        Posture::Returning { since: s } => set_condition(
            conds,
            conditions::SHIFTED_TO_ON_DEMAND,
            false,
            "ReturningToSpot",
            &format!(
                "calm since the last interruption ({last}); spot takes new capacity again since {}, and the on-demand nodes of {} move back to spot one at a time",
                since(s),
                a.shift_pool
            ),
            g,
            now,
        ),
        Posture::Spot if spec_on => set_condition(
            conds,
            conditions::SHIFTED_TO_ON_DEMAND,
            false,
            "OnSpot",
            "new capacity goes to spot; it shifts to on-demand when interruptions reach spec.capacity.onDemandShift",
            g,
            now,
        ),
        Posture::Spot => remove_condition(conds, conditions::SHIFTED_TO_ON_DEMAND),
    }
}

/// Events and metrics for the shift's moves and the interruptions it recorded.
pub fn record_shift(ctx: &Context, sp: &SpotPlan, a: &Applied) {
    let plan = sp.name_any();
    for i in &a.shift.recorded {
        ctx.metrics
            .interruptions
            .with_label_values(&[&plan, &i.instance_type, &i.zone])
            .inc();
    }
    for i in &a.launch_failures.recorded {
        ctx.metrics
            .launch_failures
            .with_label_values(&[&plan, &i.instance_type, &i.zone])
            .inc();
    }
    let shifted = matches!(a.shift.state.posture, Posture::Shifted { .. });
    ctx.metrics
        .plan_shifted
        .with_label_values(&[&plan])
        .set(if shifted { 1.0 } else { 0.0 });
    for m in &a.shift.moves {
        let (type_, reason, note) = match m {
            Move::Shifted { count } => (
                EventType::Warning,
                "ShiftedToOnDemand",
                format!(
                    "{count} spot interruptions within the window: new capacity goes to on-demand NodePool {}; running spot nodes stay",
                    a.shift_pool
                ),
            ),
            Move::Returned => (
                EventType::Normal,
                "ReturnedToSpot",
                format!(
                    "calm: spot takes new capacity again; the on-demand nodes of {} move back to spot one at a time",
                    a.shift_pool
                ),
            ),
            Move::BackOnSpot => (
                EventType::Normal,
                "ShiftNodePoolRemoved",
                format!(
                    "every node of {} moved back to spot; the NodePool is removed",
                    a.shift_pool
                ),
            ),
            Move::Demoted {
                instance_type,
                zone,
                count,
            } => (
                EventType::Warning,
                "InstanceTypeDemoted",
                format!(
                    "{instance_type} was interrupted {count} times in {zone} within the window: left out of the list until it has been calm"
                ),
            ),
            Move::Restored { instance_type } => (
                EventType::Normal,
                "InstanceTypeRestored",
                format!("{instance_type} has been calm: it may be listed again"),
            ),
        };
        publish(ctx, sp, type_, reason, note);
    }
}

/// The status of a plan whose NodePools now match `applied` (pure).
pub fn applied_status(
    sp: &SpotPlan,
    a: &Applied,
    fresh: &Freshness,
    now: Timestamp,
) -> SpotPlanStatus {
    let g = sp.metadata.generation;
    let old = sp.status.clone().unwrap_or_default();
    let types: Vec<String> = a.decision.types.iter().cloned().collect();
    let stamp = |kind| {
        a.market
            .inputs()
            .source(kind)
            .map(|p| Time(whole_second(p.as_of)))
    };
    let mut status = SpotPlanStatus {
        observed_generation: g,
        conditions: old.conditions.clone(),
        plan: Some(plan_status(&a.plan)),
        node_pools: a.pools.clone(),
        instance_types: types.clone(),
        data_timestamp: stamp(spotplan_core::market::SourceKind::SpotAdvisor),
        data_sources: data_sources(fresh),
        prices_timestamp: stamp(spotplan_core::market::SourceKind::PriceFile),
        node_pool_generation: g,
        last_narrowed: if a.decision.resets() {
            Some(Time(now))
        } else {
            old.last_narrowed.clone()
        },
        over_ceiling: a
            .decision
            .marginal_since
            .iter()
            .map(|(name, since)| super::crd::OverCeiling {
                name: name.clone(),
                since: Time(whole_second(*since)),
            })
            .collect(),
        ..SpotPlanStatus::default()
    };
    set_shift(&mut status, a, sp_shift_on(sp), g, now);
    let summary = format!(
        "{} instance types in {} (primary {} x{}{})",
        types.len(),
        a.pools.join(", "),
        a.plan.primary().instance_type,
        a.plan.primary().count,
        a.plan
            .totals
            .spot_usd_per_hour
            .map_or(String::new(), |s| format!(", est. ${s:.4}/h spot")),
    );
    let conds = &mut status.conditions;
    set_condition(
        conds,
        conditions::READY,
        true,
        Reason::PlanApplied.as_str(),
        &summary,
        g,
        now,
    );
    set_data_fresh(conds, fresh, g, now);
    remove_condition(conds, conditions::SUSPENDED);
    match (a.decision.why, a.decision.narrow_at) {
        (Why::NarrowingDeferred, Some(at)) => set_condition(
            conds,
            conditions::NARROWING_DEFERRED,
            true,
            "MinNarrowInterval",
            &format!(
                "some instance types no longer fit; they are removed at {} (spec.minNarrowInterval after the last narrowing)",
                at.strftime("%Y-%m-%dT%H:%M:%SZ")
            ),
            g,
            now,
        ),
        _ => remove_condition(conds, conditions::NARROWING_DEFERRED),
    }
    status
}

/// The status of a plan that is not Ready (pure): the last good plan stays.
pub fn not_ready_status(
    sp: &SpotPlan,
    nr: &NotReady,
    fresh: &Freshness,
    now: Timestamp,
) -> SpotPlanStatus {
    let g = sp.metadata.generation;
    let mut status = sp.status.clone().unwrap_or_default();
    status.observed_generation = g;
    if !fresh.sources.is_empty() {
        status.data_sources = data_sources(fresh);
    }
    let conds = &mut status.conditions;
    set_condition(
        conds,
        conditions::READY,
        false,
        nr.reason.as_str(),
        &nr.message,
        g,
        now,
    );
    set_data_fresh(conds, fresh, g, now);
    remove_condition(conds, conditions::SUSPENDED);
    status
}

/// The status of a suspended plan (pure).
pub fn suspended_status(sp: &SpotPlan, fresh: &Freshness, now: Timestamp) -> SpotPlanStatus {
    let g = sp.metadata.generation;
    let mut status = sp.status.clone().unwrap_or_default();
    status.observed_generation = g;
    let conds = &mut status.conditions;
    set_condition(
        conds,
        conditions::SUSPENDED,
        true,
        "Suspended",
        "spec.suspend is true: the NodePools are left exactly as they are",
        g,
        now,
    );
    set_data_fresh(conds, fresh, g, now);
    status
}

/// Writes the status if it differs from the live one. Returns whether it wrote.
///
/// An installed CRD older than this controller (mid-upgrade: the CRD is upgraded first, but a
/// rollback or a forgotten step happens) refuses status fields it does not declare. Those fields
/// are then left out, here and in every later write, with one warning naming the fix; the plan
/// keeps working.
pub async fn write(ctx: &Context, sp: &SpotPlan, status: &SpotPlanStatus) -> Result<bool, Error> {
    let status = ctx.compatible_status(status);
    if sp.status.as_ref() == Some(&status) || !ctx.leadership.is_leader() {
        return Ok(false);
    }
    for _ in 0..8 {
        let body = json!({
            "apiVersion": SpotPlan::api_version(&()),
            "kind": SpotPlan::kind(&()),
            "status": ctx.compatible_status(&status),
        });
        let result = ctx
            .plans
            .patch_status(
                &sp.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await;
        match result {
            Ok(_) => {
                ctx.wrote(sp, &ctx.compatible_status(&status));
                return Ok(true);
            }
            Err(kube::Error::Api(e)) if e.message.contains("field not declared in schema") => {
                let undeclared = undeclared_fields(&e.message);
                if undeclared.is_empty() || !ctx.leave_out_status_fields(&undeclared) {
                    return Err(kube::Error::Api(e).into());
                }
                tracing::warn!(
                    fields = ?undeclared,
                    "the installed SpotPlan CRD is older than this controller and does not declare these status fields; they are left out: upgrade it with `spotplan crd | kubectl apply --server-side -f -`"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// The `.status...` paths an API server's "field not declared in schema" message names.
pub fn undeclared_fields(message: &str) -> Vec<String> {
    message
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|w| w.strip_prefix(".status."))
        .map(|w| w.trim_end_matches(':').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// `value` without the fields at `paths` (dotted, relative to the status).
pub fn leave_out(value: &mut serde_json::Value, paths: &std::collections::BTreeSet<String>) {
    for path in paths {
        let mut parts: Vec<&str> = path.split('.').collect();
        let Some(last) = parts.pop() else { continue };
        let mut at = &mut *value;
        for p in parts {
            at = &mut at[p];
        }
        match at {
            serde_json::Value::Object(o) => {
                o.remove(last);
            }
            serde_json::Value::Array(items) => {
                for i in items {
                    if let Some(o) = i.as_object_mut() {
                        o.remove(last);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Publishes an Event about `sp`, in the background (Events are best effort).
pub fn publish(ctx: &Context, sp: &SpotPlan, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let (recorder, reference, plan) = (ctx.recorder.clone(), sp.object_ref(&()), sp.name_any());
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(%plan, error = %e, "could not publish an event");
        }
    });
}

/// Reports `Ready=False`: writes the status (the NodePools stay as they are, the last good plan
/// stays in status) and, on a transition into this reason, a Warning Event.
pub async fn report_not_ready(
    ctx: &Context,
    sp: &SpotPlan,
    nr: &NotReady,
    fresh: &Freshness,
    now: Timestamp,
) -> Result<bool, Error> {
    let status = not_ready_status(sp, nr, fresh, now);
    let before = ready_of(sp.status.as_ref());
    let wrote = write(ctx, sp, &status).await?;
    if wrote && before != Some(("False".into(), nr.reason.as_str().into())) {
        publish(
            ctx,
            sp,
            EventType::Warning,
            nr.reason.as_str(),
            nr.message.clone(),
        );
    }
    ctx.metrics
        .plan_ready
        .with_label_values(&[&sp.name_any()])
        .set(0.0);
    Ok(wrote)
}

/// Events for a change of the type list (only on a change).
pub fn publish_changes(ctx: &Context, sp: &SpotPlan, a: &Applied) {
    if !a.existed {
        publish(
            ctx,
            sp,
            EventType::Normal,
            "NodePoolsCreated",
            format!(
                "wrote {} with {} instance types (primary {})",
                a.pools.join(", "),
                a.decision.types.len(),
                a.plan.primary().instance_type
            ),
        );
    } else if !a.decision.added.is_empty() || !a.decision.removed.is_empty() {
        let list = |s: &std::collections::BTreeSet<String>| {
            s.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        // One reason per kind of change: Events with the same reason are folded into one series.
        let reason = match a.decision.why {
            Why::SpecChanged => "SpecApplied",
            Why::Narrowed => "InstanceTypesNarrowed",
            Why::NarrowingDeferred => "NarrowingDeferred",
            _ => "InstanceTypesWidened",
        };
        publish(
            ctx,
            sp,
            EventType::Normal,
            reason,
            format!(
                "added [{}]; removed [{}]",
                list(&a.decision.added),
                list(&a.decision.removed)
            ),
        );
    }
}

/// The per-plan gauges.
pub fn record_metrics(ctx: &Context, name: &str, plan: &Plan, types: usize) {
    let m = &ctx.metrics;
    m.plan_ready.with_label_values(&[name]).set(1.0);
    m.plan_types.with_label_values(&[name]).set(types as f64);
    if let Some(s) = plan.totals.spot_usd_per_hour {
        m.plan_spot_usd.with_label_values(&[name]).set(s);
    }
    if let Some(o) = plan.totals.on_demand_usd_per_hour {
        m.plan_on_demand_usd.with_label_values(&[name]).set(o);
    }
    if let Some(p) = plan.totals.savings_pct {
        m.plan_savings.with_label_values(&[name]).set(p / 100.0);
    }
}

/// Whether the plan's spec asks for the on-demand shift.
fn sp_shift_on(sp: &SpotPlan) -> bool {
    sp.spec
        .capacity
        .as_ref()
        .is_some_and(|c| c.on_demand_shift.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undeclared_status_fields_are_named_and_left_out() {
        let msg = "failed to create typed patch object (/; spotplan.dev/v1alpha1, Kind=SpotPlan): .status.dataSources: field not declared in schema";
        assert_eq!(undeclared_fields(msg), vec!["dataSources".to_string()]);
        let mut v = json!({"dataSources": [1], "plan": {"placementScores": [], "primary": "m5.large"}, "nodePools": ["a"]});
        leave_out(
            &mut v,
            &[
                "dataSources".to_string(),
                "plan.placementScores".to_string(),
            ]
            .into(),
        );
        assert_eq!(
            v,
            json!({"plan": {"primary": "m5.large"}, "nodePools": ["a"]})
        );
    }
}
