//! The backtest: a request replayed over a series of market snapshots with the operator's own
//! churn rule ([`churn::step`]), as if the controller had run through them. Pure: snapshots in,
//! a report out.
//!
//! Time moves from snapshot to snapshot; between two, the market is the earlier one, and the
//! rule is asked again whenever it asked to come back (a deferred narrowing, a marginal type
//! falling due), as the controller's requeue does. What it measures, per plan:
//! - writes and narrowings (and narrowings per month, a month being 30.44 days);
//! - how long each type stayed written;
//! - the band each written type actually had at the next snapshot, over the whole set and over
//!   its cheapest three (by the request's spot $/h: what price-capacity-optimized mostly
//!   launches), unknown counted as 4;
//! - the band at the next snapshot of the *preferred* type: the written type Karpenter would
//!   ask AWS to prefer, the lowest adjusted price of one node (capacity assumed) with risk
//!   pricing in force ([`super::pricing`]), else the lowest raw price;
//! - the request's spot $/h on the cheapest written type and on the primary pick;
//! - for a ceiling the user set, how long a written type stayed over it.

use super::churn::{self, ListDecision, State, Tuning, Why};
use crate::market::MarketData;
use crate::optimizer::{PlanError, Request, node_count, optimize};
use crate::types::Band;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Days in a month, for per-month rates.
pub const DAYS_PER_MONTH: f64 = 30.44;

/// One market snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Timestamp,
    pub market: MarketData,
}

/// What asked the rule at a step: a new snapshot, or the rule's own request to come back
/// (a deferred narrowing or a marginal type falling due) while the same snapshot was in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Snapshot,
    Requeue,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Snapshot => "snapshot",
            Trigger::Requeue => "requeue",
        })
    }
}

/// One decision of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub at: Timestamp,
    /// Index of the snapshot in force.
    pub snapshot: usize,
    pub trigger: Trigger,
    /// created, widened, narrowed, unchanged, narrowing_deferred, or no_plan (nothing fit:
    /// the list stays).
    pub why: &'static str,
    /// The written list after this decision (sorted).
    pub types: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// The fresh plan's primary and its $/h for the request.
    pub primary: Option<String>,
    pub primary_usd_per_hour: Option<f64>,
    /// The written types' bands now (unknown as null), by name.
    pub bands: BTreeMap<String, Option<u8>>,
    /// The three cheapest written types for the request, by spot $/h now.
    pub cheapest: Vec<String>,
    /// The request's spot $/h on the cheapest written type now.
    pub cheapest_usd_per_hour: Option<f64>,
    /// The written type Karpenter would ask AWS to prefer now (lowest adjusted price of one
    /// node; raw price without risk pricing).
    pub preferred: Option<String>,
    /// The request's spot $/h on the preferred type now (raw price).
    pub preferred_usd_per_hour: Option<f64>,
    /// The plan's interruption ceiling now (None: any band).
    pub ceiling: Option<u8>,
    /// The plan's notes now.
    pub notes: Vec<String>,
    /// The fresh plan's five best-ranked types (sorted; empty when nothing fit): what a top
    /// tier NodePool would hold if the ranking were expressed as NodePools by weight.
    pub top_five: Vec<String>,
}

/// Bands written types actually had at the next snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Realized {
    /// (type, snapshot) pairs counted.
    pub pairs: usize,
    /// Mean band, unknown counted as 4.
    pub mean_band: f64,
    /// Share of pairs over band 2 (a 15% or higher interruption rate) or unknown.
    pub over_band_2: f64,
    /// Share of pairs with no band.
    pub unknown: f64,
}

/// How long a written type stayed over a ceiling the user set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub instance_type: String,
    pub since: Timestamp,
    /// When it was removed or came back within the ceiling (or the replay ended).
    pub until: Timestamp,
    pub days: f64,
}

/// What a replay measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub from: Timestamp,
    pub to: Timestamp,
    pub days: f64,
    pub snapshots: usize,
    pub writes: usize,
    pub narrowings: usize,
    pub narrowings_per_month: f64,
    /// Days each type stayed written, most first.
    pub type_days: Vec<(String, f64)>,
    pub realized_set: Realized,
    pub realized_cheapest_three: Realized,
    /// The preferred type's band at the next snapshot.
    pub realized_preferred: Realized,
    /// Mean over snapshots of the request's spot $/h on the preferred type.
    pub mean_preferred_usd_per_hour: Option<f64>,
    /// Whether the replay priced risk into Karpenter's choice.
    pub risk_pricing: bool,
    /// Mean over snapshots of the request's spot $/h on the cheapest written type.
    pub mean_cheapest_usd_per_hour: Option<f64>,
    /// Mean over snapshots of the request's spot $/h on the primary pick.
    pub mean_primary_usd_per_hour: Option<f64>,
    /// Over a ceiling the user set (empty without one).
    pub breaches: Vec<Breach>,
    pub max_breach_days: f64,
    /// How often the fresh plan's top five changed membership (per month): each change would
    /// be a drift of a top tier NodePool.
    pub top_five_changes_per_month: f64,
    pub steps: Vec<Step>,
}

fn days_between(a: Timestamp, b: Timestamp) -> f64 {
    b.as_second().saturating_sub(a.as_second()) as f64 / 86_400.0
}

/// The request's spot $/h on `ty` in `market` (None: unpriced or unknown).
fn request_cost(req: &Request, market: &MarketData, ty: &str) -> Option<f64> {
    let catalog = market.catalog();
    let region = catalog.region(&req.region)?;
    let i = catalog.index_of(ty)?;
    let t = &catalog.types()[i];
    market
        .quote(region, i)
        .spot
        .map(|p| p * f64::from(node_count(req, t)))
}

fn band_of(req: &Request, market: &MarketData, ty: &str) -> Option<u8> {
    let catalog = market.catalog();
    let region = catalog.region(&req.region)?;
    let i = catalog.index_of(ty)?;
    market.quote(region, i).band.map(Band::index)
}

/// The three cheapest of `types` for the request in `market`, cheapest first.
fn cheapest_three(
    req: &Request,
    market: &MarketData,
    types: &BTreeSet<String>,
) -> Vec<(String, f64)> {
    let mut priced: Vec<(String, f64)> = types
        .iter()
        .filter_map(|t| request_cost(req, market, t).map(|c| (t.clone(), c)))
        .collect();
    priced.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    priced.truncate(3);
    priced
}

fn why_name(why: Why) -> &'static str {
    match why {
        Why::Created => "created",
        Why::SpecChanged => "spec_changed",
        Why::Unchanged => "unchanged",
        Why::Widened => "widened",
        Why::Narrowed => "narrowed",
        Why::NarrowingDeferred => "narrowing_deferred",
        Why::DataStale => "data_stale",
    }
}

/// Replays `req` over `snapshots` (sorted by time, at least one).
pub fn replay(
    req: &Request,
    snapshots: &[Snapshot],
    settings: Tuning,
) -> Result<Report, PlanError> {
    assert!(!snapshots.is_empty(), "a replay needs a snapshot");
    let mut state = State::default();
    let mut steps: Vec<Step> = Vec::new();
    let (mut i, mut at) = (0usize, snapshots[0].at);
    let mut first_error = None;
    loop {
        let market = &snapshots[i].market;
        let next = snapshots.get(i + 1).map(|s| s.at);
        let trigger = if at == snapshots[i].at {
            Trigger::Snapshot
        } else {
            Trigger::Requeue
        };
        let decided = optimize(req, market).and_then(|plan| {
            churn::step(
                req,
                &plan,
                market,
                &state,
                churn::Moment {
                    spec_changed: false,
                    data_fresh: true,
                    now: at,
                },
                settings,
            )
            .map(|d| (plan, d))
        });
        let requeue = match decided {
            Ok((plan, d)) => {
                let requeue = d.narrow_at;
                steps.push(record(
                    req,
                    market,
                    (i, trigger),
                    at,
                    (&plan, settings.priced),
                    &d,
                ));
                if d.resets() {
                    state.last_narrowed = Some(at);
                }
                state.written = Some(d.types);
                state.marginal_since = d.marginal_since;
                requeue
            }
            Err(e) => {
                // Nothing fits this snapshot: the controller reports it and keeps the list.
                if state.written.is_none() {
                    first_error.get_or_insert(e);
                } else {
                    steps.push(no_plan(req, market, (i, trigger), at, &state));
                }
                None
            }
        };
        // Come back when the rule asked to, or at the next snapshot, whichever is first; the
        // replay ends at the last snapshot.
        match (requeue.filter(|r| *r > at), next) {
            (Some(r), Some(n)) if r < n => at = r,
            (_, Some(n)) => {
                i += 1;
                at = n;
            }
            (_, None) => break,
        }
    }
    if steps.is_empty() {
        return Err(first_error.expect("no step without an error"));
    }
    Ok(report(req, snapshots, steps, settings.priced))
}

/// The written type Karpenter would ask AWS to prefer: the lowest price of one node, adjusted by
/// risk pricing when `priced`, among the priced ones; with the request's $/h on it.
fn preferred(
    req: &Request,
    market: &MarketData,
    plan: &crate::Plan,
    types: &BTreeSet<String>,
    priced: bool,
) -> Option<(String, f64)> {
    use super::pricing;
    let listed: Vec<String> = types.iter().cloned().collect();
    let kept = pricing::kept(req, market, plan, &listed);
    let p = pricing::price(
        plan,
        &listed,
        &kept,
        &[],
        &pricing::DEFAULT_LEARNED,
        Timestamp::UNIX_EPOCH,
    );
    p.types
        .iter()
        .filter_map(|t| {
            let unit = t.unit_usd_per_hour?;
            let premium = if priced {
                f64::from(t.premium) / 1000.0
            } else {
                0.0
            };
            Some((t, unit * (1.0 + premium)))
        })
        .min_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then_with(|| a.0.instance_type.cmp(&b.0.instance_type))
        })
        .and_then(|(t, _)| {
            Some((
                t.instance_type.clone(),
                request_cost(req, market, &t.instance_type)?,
            ))
        })
}

fn record(
    req: &Request,
    market: &MarketData,
    (snapshot, trigger): (usize, Trigger),
    at: Timestamp,
    (plan, priced): (&crate::Plan, bool),
    d: &ListDecision,
) -> Step {
    let cheapest = cheapest_three(req, market, &d.types);
    let preferred = preferred(req, market, plan, &d.types, priced);
    Step {
        preferred_usd_per_hour: preferred.as_ref().map(|p| p.1),
        preferred: preferred.map(|p| p.0),
        at,
        snapshot,
        trigger,
        why: why_name(d.why),
        types: d.types.iter().cloned().collect(),
        added: d.added.iter().cloned().collect(),
        removed: d.removed.iter().cloned().collect(),
        primary: Some(plan.primary().instance_type.clone()),
        primary_usd_per_hour: plan.primary().total_spot_usd_per_hour,
        bands: d
            .types
            .iter()
            .map(|t| (t.clone(), band_of(req, market, t)))
            .collect(),
        cheapest_usd_per_hour: cheapest.first().map(|c| c.1),
        cheapest: cheapest.into_iter().map(|c| c.0).collect(),
        ceiling: plan.interruption_ceiling.band,
        notes: plan.notes.clone(),
        top_five: {
            let mut top: Vec<String> = plan
                .candidates
                .iter()
                .take(5)
                .map(|c| c.instance_type.clone())
                .collect();
            top.sort();
            top
        },
    }
}

fn no_plan(
    req: &Request,
    market: &MarketData,
    (snapshot, trigger): (usize, Trigger),
    at: Timestamp,
    state: &State,
) -> Step {
    let types = state.written.clone().unwrap_or_default();
    let cheapest = cheapest_three(req, market, &types);
    Step {
        at,
        snapshot,
        trigger,
        why: "no_plan",
        bands: types
            .iter()
            .map(|t| (t.clone(), band_of(req, market, t)))
            .collect(),
        types: types.into_iter().collect(),
        added: vec![],
        removed: vec![],
        primary: None,
        primary_usd_per_hour: None,
        preferred: None,
        preferred_usd_per_hour: None,
        cheapest_usd_per_hour: cheapest.first().map(|c| c.1),
        cheapest: cheapest.into_iter().map(|c| c.0).collect(),
        ceiling: None,
        notes: vec![],
        top_five: vec![],
    }
}

/// The written list in force just before `at`: the last step's before it.
fn written_before(steps: &[Step], at: Timestamp) -> Option<&Step> {
    steps.iter().rev().find(|s| s.at < at)
}

fn realized(pairs: impl Iterator<Item = Option<u8>>) -> Realized {
    let (mut n, mut sum, mut over, mut unknown) = (0usize, 0u64, 0usize, 0usize);
    for b in pairs {
        n += 1;
        sum += u64::from(b.unwrap_or(4));
        over += usize::from(b.is_none_or(|b| b > 2));
        unknown += usize::from(b.is_none());
    }
    if n == 0 {
        return Realized::default();
    }
    Realized {
        pairs: n,
        mean_band: sum as f64 / n as f64,
        over_band_2: over as f64 / n as f64,
        unknown: unknown as f64 / n as f64,
    }
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, s) = v.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| s / n as f64)
}

fn report(req: &Request, snapshots: &[Snapshot], steps: Vec<Step>, priced: bool) -> Report {
    let from = snapshots[0].at;
    let to = snapshots.last().expect("snapshots").at;
    let days = days_between(from, to);
    let narrowings = steps.iter().filter(|s| s.why == "narrowed").count();
    let writes = steps
        .iter()
        .filter(|s| !s.added.is_empty() || !s.removed.is_empty() || s.why == "created")
        .count();
    // Days written: each step's list holds until the next step (the last until the end).
    let mut type_days: BTreeMap<String, f64> = BTreeMap::new();
    for (k, s) in steps.iter().enumerate() {
        let until = steps.get(k + 1).map_or(to, |n| n.at);
        for t in &s.types {
            *type_days.entry(t.clone()).or_default() += days_between(s.at, until);
        }
    }
    let mut type_days: Vec<(String, f64)> = type_days.into_iter().collect();
    type_days.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // The list in force just before each later snapshot, against that snapshot's bands.
    let (mut set_pairs, mut cheap_pairs, mut preferred_pairs) =
        (Vec::new(), Vec::new(), Vec::new());
    for next in &snapshots[1..] {
        let Some(before) = written_before(&steps, next.at) else {
            continue;
        };
        if let Some(p) = &before.preferred {
            preferred_pairs.push(band_of(req, &next.market, p));
        }
        for t in &before.types {
            let b = band_of(req, &next.market, t);
            set_pairs.push(b);
            if before.cheapest.contains(t) {
                cheap_pairs.push(b);
            }
        }
    }
    // Per snapshot: the state when it arrived (its first step).
    let firsts: Vec<&Step> = (0..snapshots.len())
        .filter_map(|i| steps.iter().find(|s| s.snapshot == i))
        .collect();
    let breaches = match req.max_band {
        Some(max) => breaches(&steps, max, to),
        None => vec![],
    };
    let tops: Vec<&Vec<String>> = steps
        .iter()
        .map(|s| &s.top_five)
        .filter(|t| !t.is_empty())
        .collect();
    let top_changes = tops.windows(2).filter(|w| w[0] != w[1]).count();
    let per_month = |n: usize| {
        if days > 0.0 {
            n as f64 / (days / DAYS_PER_MONTH)
        } else {
            0.0
        }
    };
    Report {
        top_five_changes_per_month: per_month(top_changes),
        from,
        to,
        days,
        snapshots: snapshots.len(),
        writes,
        narrowings,
        narrowings_per_month: per_month(narrowings),
        type_days,
        realized_set: realized(set_pairs.into_iter()),
        realized_cheapest_three: realized(cheap_pairs.into_iter()),
        realized_preferred: realized(preferred_pairs.into_iter()),
        mean_preferred_usd_per_hour: mean(firsts.iter().filter_map(|s| s.preferred_usd_per_hour)),
        risk_pricing: priced,
        mean_cheapest_usd_per_hour: mean(firsts.iter().filter_map(|s| s.cheapest_usd_per_hour)),
        mean_primary_usd_per_hour: mean(firsts.iter().filter_map(|s| s.primary_usd_per_hour)),
        max_breach_days: breaches.iter().map(|b| b.days).fold(0.0, f64::max),
        breaches,
        steps,
    }
}

/// Spans during which a written type's band (as each step saw it) was over `max`.
fn breaches(steps: &[Step], max: u8, end: Timestamp) -> Vec<Breach> {
    let mut open: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut out = Vec::new();
    for s in steps {
        let over: BTreeSet<&String> = s
            .types
            .iter()
            .filter(|t| s.bands.get(*t).copied().flatten().is_none_or(|b| b > max))
            .collect();
        let closed: Vec<String> = open.keys().filter(|t| !over.contains(t)).cloned().collect();
        for t in closed {
            let since = open.remove(&t).expect("open");
            out.push(Breach {
                days: days_between(since, s.at),
                instance_type: t,
                since,
                until: s.at,
            });
        }
        for t in over {
            open.entry(t.clone()).or_insert(s.at);
        }
    }
    for (t, since) in open {
        out.push(Breach {
            days: days_between(since, end),
            instance_type: t,
            since,
            until: end,
        });
    }
    out
}

/// spot-optimizer's pick at one snapshot, judged by the next one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStep {
    pub at: Timestamp,
    pub instance_type: Option<String>,
    pub count: u32,
    pub band: Option<u8>,
    /// Its band at the next snapshot (None at the last, or unknown then).
    pub band_next: Option<u8>,
    /// The request's spot $/h on its pick.
    pub usd_per_hour: Option<f64>,
    /// The request's spot $/h on our primary with the ceiling set to its pick's band.
    pub ours_at_its_band_usd_per_hour: Option<f64>,
}

/// spot-optimizer's single pick over the same snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerReport {
    pub steps: Vec<PeerStep>,
    /// Its pick's band at the next snapshot.
    pub realized: Realized,
    /// Median over snapshots of ours (at its band) over its $/h.
    pub median_cost_ratio: Option<f64>,
}

/// Judges the peer's picks (type and count per snapshot, None when it found nothing) by the
/// same snapshots, and prices our primary at each pick's band.
pub fn judge_peer(
    req: &Request,
    snapshots: &[Snapshot],
    picks: &[Option<(String, u32)>],
) -> PeerReport {
    let mut steps = Vec::new();
    for (i, (snap, pick)) in snapshots.iter().zip(picks).enumerate() {
        let Some((ty, count)) = pick else {
            steps.push(PeerStep {
                at: snap.at,
                instance_type: None,
                count: 0,
                band: None,
                band_next: None,
                usd_per_hour: None,
                ours_at_its_band_usd_per_hour: None,
            });
            continue;
        };
        let band = band_of(req, &snap.market, ty);
        let price = {
            let catalog = snap.market.catalog();
            catalog
                .region(&req.region)
                .zip(catalog.index_of(ty))
                .and_then(|(r, t)| snap.market.quote(r, t).spot.map(|p| p * f64::from(*count)))
        };
        let ours = band.and_then(|b| {
            let mut at_band = req.clone();
            at_band.max_band = Some(b);
            optimize(&at_band, &snap.market)
                .ok()
                .and_then(|p| p.primary().total_spot_usd_per_hour)
        });
        steps.push(PeerStep {
            at: snap.at,
            instance_type: Some(ty.clone()),
            count: *count,
            band,
            band_next: snapshots
                .get(i + 1)
                .and_then(|n| band_of(req, &n.market, ty)),
            usd_per_hour: price,
            ours_at_its_band_usd_per_hour: ours,
        });
    }
    let realized = realized(
        steps
            .iter()
            .zip(snapshots.iter().skip(1))
            .filter(|(s, _)| s.instance_type.is_some())
            .map(|(s, _)| s.band_next),
    );
    let mut ratios: Vec<f64> = steps
        .iter()
        .filter_map(|s| Some(s.ours_at_its_band_usd_per_hour? / s.usd_per_hour?))
        .collect();
    ratios.sort_by(f64::total_cmp);
    PeerReport {
        median_cost_ratio: ratios.get(ratios.len() / 2).copied(),
        realized,
        steps,
    }
}
