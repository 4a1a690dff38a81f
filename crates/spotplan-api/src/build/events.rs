//! The Events a reconcile announces, as data: on transitions only (a plan created, its list
//! changed, a shift's move, a new reason for not being Ready), never on every pass. The shell
//! publishes them.

use super::Planned;
use spotplan_core::policy::churn::Why;
use spotplan_core::policy::shift::Move;
use std::collections::BTreeSet;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// One Event about the SpotPlan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub severity: Severity,
    /// CamelCase; Events with the same reason are folded into one series.
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &'static str, message: String) -> Note {
        Note {
            severity: Severity::Normal,
            reason,
            message,
        }
    }

    pub fn warning(reason: &'static str, message: String) -> Note {
        Note {
            severity: Severity::Warning,
            reason,
            message,
        }
    }
}

fn list(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// A change of the type list: the NodePools created, or what was added and removed.
pub(crate) fn list_changed(p: &Planned, existed: bool) -> Option<Note> {
    let pools = || {
        p.pools
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !existed {
        return Some(Note::normal(
            "NodePoolsCreated",
            format!(
                "wrote {} with {} instance types (primary {})",
                pools(),
                p.decision.types.len(),
                p.plan.primary().instance_type
            ),
        ));
    }
    if p.decision.added.is_empty() && p.decision.removed.is_empty() {
        return None;
    }
    let reason = match p.decision.why {
        Why::SpecChanged => "SpecApplied",
        Why::Narrowed => "InstanceTypesNarrowed",
        Why::NarrowingDeferred => "NarrowingDeferred",
        _ => "InstanceTypesWidened",
    };
    Some(Note::normal(
        reason,
        format!(
            "added [{}]; removed [{}]",
            list(&p.decision.added),
            list(&p.decision.removed)
        ),
    ))
}

/// The shift's moves.
pub(crate) fn shift_moves(p: &Planned) -> Vec<Note> {
    let pool = &p.names.shift;
    p.shift
        .moves
        .iter()
        .map(|m| match m {
            Move::Shifted { count } => Note::warning(
                "ShiftedToOnDemand",
                format!(
                    "{count} spot interruptions within the window: new capacity goes to on-demand NodePool {pool}; running spot nodes stay"
                ),
            ),
            Move::Returned => Note::normal(
                "ReturnedToSpot",
                format!(
                    "calm: spot takes new capacity again; the on-demand nodes of {pool} move back to spot one at a time"
                ),
            ),
            Move::BackOnSpot => Note::normal(
                "ShiftNodePoolRemoved",
                format!("every node of {pool} moved back to spot; the NodePool is removed"),
            ),
            Move::Demoted {
                instance_type,
                zone,
                count,
            } => Note::warning(
                "InstanceTypeDemoted",
                format!(
                    "{instance_type} was interrupted {count} times in {zone} within the window: left out of the list until it has been calm"
                ),
            ),
            Move::Restored { instance_type } => Note::normal(
                "InstanceTypeRestored",
                format!("{instance_type} has been calm: it may be listed again"),
            ),
        })
        .collect()
}

/// What a zone premium was learned from: "2 interruptions or launch failures, 1 rebalance
/// recommendation".
fn evidence(z: &spotplan_core::policy::pricing::ZonePremium) -> String {
    let mut parts = Vec::new();
    if z.interruptions > 0 {
        parts.push(format!(
            "{} interruptions or launch failures",
            z.interruptions
        ));
    }
    if z.rebalances > 0 {
        let s = if z.rebalances == 1 { "" } else { "s" };
        parts.push(format!("{} rebalance recommendation{s}", z.rebalances));
    }
    parts.join(", ")
}

/// Learned (type, zone) premiums that rose or fell since the status last written: one Event
/// each way, naming them.
pub(crate) fn premiums(old: Option<&crate::crd::RiskPricingStatus>, p: &Planned) -> Vec<Note> {
    let Some(now) = &p.risk.pricing else {
        return Vec::new();
    };
    let before: Vec<(String, String, String)> = old
        .map(|o| {
            o.zone_premiums
                .iter()
                .map(|z| {
                    (
                        z.instance_type.clone(),
                        z.zone.clone(),
                        z.price_adjustment.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let adj = spotplan_core::policy::pricing::adjustment;
    let premium_of = |pct: &str| {
        pct.trim_start_matches('+')
            .trim_end_matches('%')
            .parse::<f64>()
            .unwrap_or(0.0)
    };
    let mut raised = Vec::new();
    let mut lowered = Vec::new();
    for z in &now.zone_premiums {
        let was = before
            .iter()
            .find(|(t, zone, _)| *t == z.instance_type && *zone == z.zone);
        let is = adj(z.premium);
        match was {
            Some((_, _, w)) if premium_of(w) >= premium_of(&is) => {
                if premium_of(w) > premium_of(&is) {
                    lowered.push(format!("{} in {}: {w} -> {is}", z.instance_type, z.zone));
                }
            }
            Some((_, _, w)) => raised.push(format!(
                "{} in {}: {w} -> {is} ({}{})",
                z.instance_type,
                z.zone,
                evidence(z),
                z.since_label()
            )),
            None => raised.push(format!(
                "{} in {}: {is} ({} of the plan's nodes there)",
                z.instance_type,
                z.zone,
                evidence(z)
            )),
        }
    }
    for (t, zone, w) in &before {
        if !now
            .zone_premiums
            .iter()
            .any(|z| z.instance_type == *t && z.zone == *zone)
        {
            lowered.push(format!("{t} in {zone}: {w} -> the type's own (calm)"));
        }
    }
    let mut out = Vec::new();
    if !raised.is_empty() {
        out.push(Note::normal(
            "PremiumRaised",
            format!("Karpenter now prices {}", raised.join("; ")),
        ));
    }
    if !lowered.is_empty() {
        out.push(Note::normal(
            "PremiumLowered",
            format!("Karpenter now prices {}", lowered.join("; ")),
        ));
    }
    out
}
