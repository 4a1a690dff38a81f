//! The SpotPlan's status, built from what the build decided. Pure: the shell writes it only when
//! it differs from the live one.

use super::base::Floor;
use super::{Planned, PoolsReady};
use crate::crd::{
    CeilingStatus, DataSourceStatus, LogMark, LoggedInterruption, ObservedInterruption,
    OverCeiling, PlanStatus, RankedType, ShiftStatus, SpotPlan, SpotPlanStatus, ZoneScoreStatus,
};
use crate::freshness::Freshness;
use crate::names::conditions;
use crate::outcome::{NotReady, Reason};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use spotplan_core::market::SourceKind;
use spotplan_core::plan::Plan;
use spotplan_core::policy::churn::Why;
use spotplan_core::policy::shift::{self, Posture};

/// A whole second: Conditions and Times round-trip through the API at that precision, so
/// anything finer would make an unchanged status look changed.
pub fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).expect("a valid time stays valid")
}

/// RFC 3339 at whole seconds, for messages.
pub(crate) fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
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
    set_condition_to(conds, type_, status, reason, message, generation, now);
}

/// [`set_condition`] with any of "True", "False" and "Unknown".
fn set_condition_to(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
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

/// The status and reason of a condition, if the status has it.
pub fn condition_of(status: Option<&SpotPlanStatus>, type_: &str) -> Option<(String, String)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
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
            dated: s.provenance.dated.clone(),
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

/// A serde enum's wire name (snake_case or kebab-case as the type says).
fn wire_name(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The ranked plan as status shows it.
pub fn plan_status(plan: &Plan) -> PlanStatus {
    let p = plan.primary();
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    PlanStatus {
        primary: p.instance_type.clone(),
        primary_count: count(p.count),
        ranking: wire_name(plan.ranking),
        interruption_ceiling: Some(CeilingStatus {
            band: plan.interruption_ceiling.band.map(i32::from),
            source: wire_name(plan.interruption_ceiling.source),
        }),
        type_count: i32::try_from(plan.candidates.len()).unwrap_or(i32::MAX),
        estimated_spot_usd_per_hour: plan.totals.spot_usd_per_hour,
        estimated_on_demand_usd_per_hour: plan.totals.on_demand_usd_per_hour,
        savings_pct: plan.totals.savings_pct,
        unknown_band_types: i32::try_from(plan.unknown_band_types).unwrap_or(i32::MAX),
        instance_types: plan
            .candidates
            .iter()
            .map(|c| RankedType {
                rank: i32::try_from(c.rank).unwrap_or(i32::MAX),
                name: c.instance_type.clone(),
                count: count(c.count),
                band: c.interruption_band.map(i32::from),
                interruption: c.interruption_label.into(),
                savings_pct: c.savings_pct,
                spot_usd_per_hour: c.spot_usd_per_hour,
                on_demand_usd_per_hour: c.on_demand_usd_per_hour,
                total_spot_usd_per_hour: c.total_spot_usd_per_hour,
                ranked_usd_per_hour: c.ranked_usd_per_hour,
                band_premium_pct: c.band_premium_pct.map(|p| p as i32),
            })
            .collect(),
        notes: plan.notes.clone(),
        placement_scores: plan
            .placement_scores
            .iter()
            .map(|z| ZoneScoreStatus {
                zone: z.zone.clone(),
                score: i32::from(z.score),
            })
            .collect(),
    }
}

/// A log as the status holds it: its entries, the counts beyond them, and where the limit cut.
pub fn log_of(
    entries: &[LoggedInterruption],
    beyond: &[ObservedInterruption],
    trimmed: Option<&LogMark>,
) -> shift::Log {
    shift::Log {
        entries: entries
            .iter()
            .map(|i| shift::Interruption {
                at: i.at.0,
                uid: i.node_claim_uid.clone(),
                instance_type: i.instance_type.clone(),
                zone: i.zone.clone(),
            })
            .collect(),
        beyond: beyond
            .iter()
            .map(|o| shift::Observed {
                instance_type: o.instance_type.clone(),
                zone: o.zone.clone(),
                count: usize::try_from(o.count).unwrap_or(0),
                last_seen: o.last_seen.0,
            })
            .collect(),
        trimmed_through: trimmed.map(|m| (m.at.0, m.node_claim_uid.clone())),
    }
}

/// A log's fields of the status: its entries, the counts beyond them, where the limit cut, and
/// everything it counts per (type, zone).
struct LogFields {
    entries: Vec<LoggedInterruption>,
    beyond: Vec<ObservedInterruption>,
    trimmed: Option<LogMark>,
    observed: Vec<ObservedInterruption>,
}

fn log_fields(log: &shift::Log) -> LogFields {
    LogFields {
        entries: log
            .entries
            .iter()
            .map(|i| LoggedInterruption {
                node_claim_uid: i.uid.clone(),
                instance_type: i.instance_type.clone(),
                zone: i.zone.clone(),
                at: Time(whole_second(i.at)),
            })
            .collect(),
        beyond: counts(&log.beyond),
        trimmed: log.trimmed_through.as_ref().map(|(at, uid)| LogMark {
            at: Time(whole_second(*at)),
            node_claim_uid: uid.clone(),
        }),
        observed: counts(&log.observed()),
    }
}

fn counts(observed: &[shift::Observed]) -> Vec<ObservedInterruption> {
    observed
        .iter()
        .map(|o| ObservedInterruption {
            instance_type: o.instance_type.clone(),
            zone: o.zone.clone(),
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
        log: log_of(
            &s.interruption_log,
            &s.interruptions_beyond_log,
            s.interruption_log_trimmed_through.as_ref(),
        ),
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
    p: &Planned,
    spec_on: bool,
    g: Option<i64>,
    now: Timestamp,
) {
    let st = &p.shift.state;
    let i = log_fields(&st.log);
    status.interruption_log = i.entries;
    status.interruptions_beyond_log = i.beyond;
    status.interruption_log_trimmed_through = i.trimmed;
    status.observed_interruptions = i.observed;
    let f = log_fields(&p.launch_failures.log);
    status.launch_failure_log = f.entries;
    status.launch_failures_beyond_log = f.beyond;
    status.launch_failure_log_trimmed_through = f.trimmed;
    status.observed_launch_failures = f.observed;
    let r = log_fields(&p.rebalances.log);
    status.rebalance_log = r.entries;
    status.rebalances_beyond_log = r.beyond;
    status.rebalance_log_trimmed_through = r.trimmed;
    status.observed_rebalances = r.observed;
    status.demoted_instance_types = st.demoted.iter().cloned().collect();
    status.last_returned_to_spot = st.returned_at.map(|t| Time(whole_second(t)));
    let shift_status = |posture: &str, since| {
        Some(ShiftStatus {
            posture: posture.into(),
            since: Time(whole_second(since)),
        })
    };
    status.shift = match st.posture {
        Posture::Spot => None,
        Posture::Shifted { since } => shift_status("Shifted", since),
        Posture::Returning { since } => shift_status("Returning", since),
    };
    let conds = &mut status.conditions;
    let last = st.log.last().map(stamp).unwrap_or_default();
    let pool = &p.names.shift;
    let (on, reason, message) = match st.posture {
        Posture::Shifted { since } => (
            true,
            "SpotInterrupted",
            format!(
                "{} interruptions of the plan's spot nodes within the window (spec.capacity.onDemandShift); new capacity goes to on-demand NodePool {pool} since {}; last interruption {last}",
                st.log.total(),
                stamp(since)
            ),
        ),
        Posture::Returning { since } => (
            false,
            "ReturningToSpot",
            format!(
                "calm since the last interruption ({last}); spot takes new capacity again since {}, and the on-demand nodes of {pool} move back to spot one at a time",
                stamp(since)
            ),
        ),
        Posture::Spot if spec_on => (
            false,
            "OnSpot",
            "new capacity goes to spot; it shifts to on-demand when interruptions reach spec.capacity.onDemandShift".into(),
        ),
        Posture::Spot => return remove_condition(conds, conditions::SHIFTED_TO_ON_DEMAND),
    };
    set_condition(
        conds,
        conditions::SHIFTED_TO_ON_DEMAND,
        on,
        reason,
        &message,
        g,
        now,
    );
}

/// The status of a plan whose NodePools match what was planned.
pub(crate) fn applied(
    sp: &SpotPlan,
    p: &Planned,
    karpenter: &PoolsReady,
    fresh: &Freshness,
    now: Timestamp,
) -> SpotPlanStatus {
    let g = sp.metadata.generation;
    let old = sp.status.clone().unwrap_or_default();
    let types: Vec<String> = p.decision.types.iter().cloned().collect();
    let stamp_of = |kind| {
        p.market
            .inputs()
            .source(kind)
            .map(|s| Time(whole_second(s.as_of)))
    };
    let pools: Vec<String> = p.pools.iter().map(|d| d.name.clone()).collect();
    let mut status = SpotPlanStatus {
        observed_generation: g,
        conditions: old.conditions.clone(),
        plan: Some(plan_status(&p.plan)),
        node_pools: pools.clone(),
        instance_types: types.clone(),
        data_timestamp: stamp_of(SourceKind::SpotAdvisor),
        data_sources: data_sources(fresh),
        prices_timestamp: stamp_of(SourceKind::PriceFile),
        node_pool_generation: g,
        last_narrowed: if p.decision.narrowed() {
            Some(Time(now))
        } else {
            old.last_narrowed.clone()
        },
        last_written_fresh: if p.decision.written_fresh() {
            Some(Time(now))
        } else {
            old.last_written_fresh.clone()
        },
        over_ceiling: p
            .decision
            .marginal_since
            .iter()
            .map(|(name, since)| OverCeiling {
                name: name.clone(),
                since: Time(whole_second(*since)),
            })
            .collect(),
        ..SpotPlanStatus::default()
    };
    set_shift(&mut status, p, p.spec.shift.is_some(), g, now);
    set_risk_pricing(&mut status, p, g, now);
    let primary = p.plan.primary();
    let summary = format!(
        "{} instance types in {} (primary {} x{}{})",
        types.len(),
        pools.join(", "),
        primary.instance_type,
        primary.count,
        p.plan
            .totals
            .spot_usd_per_hour
            .map_or(String::new(), |s| format!(", est. ${s:.4}/h spot")),
    );
    let conds = &mut status.conditions;
    match karpenter {
        PoolsReady::NotReady(why) => set_condition(
            conds,
            conditions::READY,
            false,
            Reason::NodePoolsNotReady.as_str(),
            why.as_str(),
            g,
            now,
        ),
        _ => set_condition(
            conds,
            conditions::READY,
            true,
            Reason::PlanApplied.as_str(),
            &summary,
            g,
            now,
        ),
    }
    let (pools, reason, message) = match karpenter {
        PoolsReady::Ready(m) => ("True", "Ready", m),
        PoolsReady::NotReady(m) => ("False", "NotReady", m),
        PoolsReady::Unknown(m) => ("Unknown", "AwaitingKarpenter", m),
    };
    set_condition_to(
        conds,
        conditions::NODEPOOLS_READY,
        pools,
        reason,
        message.as_str(),
        g,
        now,
    );
    match &p.floor {
        None => remove_condition(conds, conditions::ON_DEMAND_BASE),
        Some(Floor::Planned(types)) => set_condition(
            conds,
            conditions::ON_DEMAND_BASE,
            true,
            "Planned",
            &format!(
                "{} on-demand types of at most {} vCPUs in {}: {}",
                types.len(),
                p.spec.on_demand_base.unwrap_or_default(),
                p.names.on_demand,
                types.join(", ")
            ),
            g,
            now,
        ),
        Some(Floor::Unmet(why)) => set_condition(
            conds,
            conditions::ON_DEMAND_BASE,
            false,
            "NothingFits",
            why,
            g,
            now,
        ),
    }
    set_data_fresh(conds, fresh, g, now);
    remove_condition(conds, conditions::SUSPENDED);
    match (p.decision.why, p.decision.narrow_at) {
        (Why::NarrowingDeferred, Some(at)) => set_condition(
            conds,
            conditions::NARROWING_DEFERRED,
            true,
            "MinNarrowInterval",
            &format!(
                "some instance types no longer fit; they are removed at {} (spec.minNarrowInterval after the last narrowing)",
                stamp(at)
            ),
            g,
            now,
        ),
        _ => remove_condition(conds, conditions::NARROWING_DEFERRED),
    }
    status
}

/// The status of a plan that is not Ready: the last good plan stays.
pub fn not_ready(
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

/// The status of a suspended plan.
pub(crate) fn suspended(sp: &SpotPlan, fresh: &Freshness, now: Timestamp) -> SpotPlanStatus {
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

/// The status of a SpotPlan that does not even deserialize: only Ready=False with the reason.
pub fn unreadable(generation: Option<i64>, error: &str, now: Timestamp) -> SpotPlanStatus {
    let mut conds = Vec::new();
    set_condition(
        &mut conds,
        conditions::READY,
        false,
        Reason::InvalidSpec.as_str(),
        &format!("the SpotPlan cannot be read: {error}; fix the spec"),
        generation,
        now,
    );
    SpotPlanStatus {
        observed_generation: generation,
        conditions: conds,
        ..SpotPlanStatus::default()
    }
}

/// `status.riskPricing` and the RiskPricing condition.
fn set_risk_pricing(status: &mut SpotPlanStatus, p: &Planned, g: Option<i64>, now: Timestamp) {
    use super::overlays::Applies;
    use spotplan_core::policy::pricing::adjustment;
    let conds = &mut status.conditions;
    let (pricing, c) = match (&p.risk.applies, &p.risk.pricing) {
        (Applies::No { reason, message }, _) => {
            status.risk_pricing = None;
            return set_condition(
                conds,
                conditions::RISK_PRICING,
                false,
                reason,
                message,
                g,
                now,
            );
        }
        (Applies::Yes, None) => return,
        (Applies::Yes, Some(pricing)) => (pricing, &p.risk.changes),
    };
    let overlays: Vec<String> = (0..pricing.type_levels.len())
        .map(|i| spotplan_core::render::overlay::overlay_name(&p.names.spot, false, i))
        .chain(
            (0..pricing.zone_levels.len())
                .map(|i| spotplan_core::render::overlay::overlay_name(&p.names.spot, true, i)),
        )
        .collect();
    let (state, reason, message) = if !c.taken.is_empty() {
        (
            "False",
            "OverlayNameTaken",
            format!(
                "NodeOverlay {} exists and is not owned by this SpotPlan; spotplan never writes over it: rename or delete it",
                c.taken.join(", ")
            ),
        )
    } else if !c.refused.is_empty() {
        (
            "False",
            "OverlayConflict",
            format!(
                "Karpenter did not apply: {}; spotplan does not change its overlays' weights to win: change or remove the other overlay (same weight, same offerings), or set spec.riskPricing: Disabled",
                c.refused.join("; ")
            ),
        )
    } else if !c.pending.is_empty() {
        (
            "Unknown",
            "AwaitingKarpenter",
            format!(
                "waiting for Karpenter to validate NodeOverlay {}",
                c.pending.join(", ")
            ),
        )
    } else {
        (
            "True",
            "Applied",
            format!(
                "{} NodeOverlays price {} types of NodePool {} in the plan's order ({} zone premiums in force)",
                overlays.len(),
                pricing.types.len(),
                p.names.spot,
                pricing.zone_premiums.len()
            ),
        )
    };
    set_condition_to(
        conds,
        conditions::RISK_PRICING,
        state,
        reason,
        &message,
        g,
        now,
    );
    status.risk_pricing = Some(crate::crd::RiskPricingStatus {
        overlays,
        exact_order: pricing.exact,
        types: pricing
            .types
            .iter()
            .map(|t| crate::crd::TypePremium {
                name: t.instance_type.clone(),
                price_adjustment: adjustment(t.premium),
                kept: !t.planned,
            })
            .collect(),
        zone_premiums: pricing
            .zone_premiums
            .iter()
            .map(|z| crate::crd::ZonePremiumStatus {
                instance_type: z.instance_type.clone(),
                zone: z.zone.clone(),
                price_adjustment: adjustment(z.premium),
                interruptions: i32::try_from(z.interruptions).unwrap_or(i32::MAX),
                rebalances: i32::try_from(z.rebalances).unwrap_or(i32::MAX),
                until: Time(whole_second(z.until)),
            })
            .collect(),
    });
}
