//! Risk pricing: the plan's ranking turned into price adjustments Karpenter applies in its own
//! choice (NodeOverlay `priceAdjustment`), so a NodePool's types are launched in the plan's
//! order instead of by raw price alone.
//!
//! The rule, in one place:
//! 1. Each listed type starts from the premium the ranking gave it: the mode's premium for its
//!    band under `risk_adjusted_cost`, none under `cost` (the user's ceiling already bounds the
//!    risk) or without prices.
//! 2. In rank order, a type whose adjusted cost for the request (`count x unit price x (1 +
//!    premium)`) would not exceed the one ranked before it gets a factor on top of its band
//!    premium, just enough to come after it, which the types after it share (the ranking puts a
//!    run of types after dearer ones: types in by widening). So the adjusted costs order the
//!    planned types exactly as the plan ranks them.
//! 3. Types written but no longer in the plan (kept by the churn rule) share one premium, the
//!    least that puts each after every planned type for the request, and one node of each after
//!    one node of every planned type at least as large: whatever pods a NodeClaim holds,
//!    Karpenter asks AWS for them last.
//! 4. Learned evidence adds to a (type, zone): each recent interruption or launch failure of the
//!    plan's own nodes there, and a smaller amount for each rebalance recommendation, the weaker
//!    and earlier signal ([`Learned`], [`Evidence`]).
//! 5. Types sharing a premium form one [`Level`] (one NodeOverlay); a (type, zone) with its own
//!    premium forms a zone level. Premiums differ by band and by factor only, so the levels are
//!    few; past [`MAX_TYPE_LEVELS`] the dearest planned ones merge, and the kept types' level
//!    stays last.
//!
//! Karpenter's format is a signed percentage (`+12.5%`, see [`adjustment`]); a percentage keeps
//! the order in every zone, whatever each zone's raw price.

use crate::plan::{Plan, Ranking};
use crate::types::Band;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// Most type-level overlays per NodePool: past it, the dearest levels merge into one (their
/// types then follow raw price among themselves) and [`Pricing::exact`] is false.
pub const MAX_TYPE_LEVELS: usize = 12;
/// Most zone overlays per NodePool (the strongest evidence first).
pub const MAX_ZONE_LEVELS: usize = 12;

/// What a report says of a (type, zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Evidence {
    /// A spot interruption, or a launch that failed for want of capacity.
    #[default]
    Interruption,
    /// A rebalance recommendation: AWS saw an elevated risk of interruption. It fires far more
    /// often than interruptions do, so it weighs less, and it never shifts or drains anything.
    Rebalance,
}

/// One report of the plan's own nodes: an interruption, a launch failure or a rebalance
/// recommendation of a NodeClaim in a (type, zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub instance_type: String,
    pub zone: String,
    pub at: Timestamp,
    pub evidence: Evidence,
}

/// How learned evidence prices a (type, zone).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    /// Premium per interruption or launch failure, tenths of a percent.
    pub per_interruption: u32,
    /// Premium per rebalance recommendation, tenths of a percent.
    pub per_rebalance: u32,
    /// A report counts while younger than this: the premium falls once the (type, zone) has
    /// been calm this long.
    pub calm: Duration,
    /// The most a (type, zone) can carry from evidence, tenths of a percent.
    pub cap: u32,
}

impl Learned {
    /// The premium `interruptions` and `rebalances` in force add, tenths of a percent.
    pub fn extra(&self, interruptions: u32, rebalances: u32) -> u32 {
        interruptions
            .saturating_mul(self.per_interruption)
            .saturating_add(rebalances.saturating_mul(self.per_rebalance))
            .min(self.cap)
    }
}

/// Defaults, chosen with the simulated interruption stream (README, "Risk pricing";
/// `tests/shift_sim.rs` fails when its rule chooses otherwise): an interruption or launch failure
/// costs a type 5% in its zone, a rebalance recommendation 2.5%, for three calm days, at most 50%.
pub const DEFAULT_LEARNED: Learned = Learned {
    per_interruption: 50,
    per_rebalance: 25,
    calm: Duration::from_secs(3 * 24 * 3600),
    cap: 500,
};

/// A listed type as priced.
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub instance_type: String,
    /// Nodes of it the request needs.
    pub count: u32,
    /// Spot $/h of one node as the plan saw it; `None` when unpriced.
    pub unit_usd_per_hour: Option<f64>,
    /// The premium the ranking gave it, tenths of a percent.
    pub ranked_premium: u32,
    /// The premium written, tenths of a percent.
    pub premium: u32,
    /// In the plan (false: kept by the churn rule, priced last).
    pub planned: bool,
    /// One node's vCPUs and memory: a NodeClaim that could take this type could take any type
    /// at least as large.
    pub vcpus: u32,
    pub memory_gib: f64,
}

impl Priced {
    /// `unit x (1 + premium)`: Karpenter's adjusted price of one node.
    pub fn adjusted_unit(&self) -> Option<f64> {
        self.unit_usd_per_hour
            .map(|p| p * (1.0 + f64::from(self.premium) / 1000.0))
    }

    /// `count x unit x (1 + premium)`: what Karpenter's adjusted price makes the request cost.
    pub fn adjusted_total(&self) -> Option<f64> {
        self.unit_usd_per_hour
            .map(|p| p * f64::from(self.count) * (1.0 + f64::from(self.premium) / 1000.0))
    }
}

/// A premium in force on a (type, zone) from evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZonePremium {
    pub instance_type: String,
    pub zone: String,
    /// Added to the type's premium, tenths of a percent.
    pub extra: u32,
    /// The written premium there: the type's plus `extra`.
    pub premium: u32,
    /// Interruptions and launch failures in force.
    pub interruptions: u32,
    /// Rebalance recommendations in force.
    pub rebalances: u32,
    /// When it falls if nothing new is reported.
    pub until: Timestamp,
}

impl ZonePremium {
    /// ", in force until <time>", for messages.
    pub fn since_label(&self) -> String {
        format!(
            ", in force until {}",
            self.until.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// One overlay's worth: types (and zones, for a zone level) that share a premium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// Tenths of a percent.
    pub premium: u32,
    pub types: Vec<String>,
    /// Empty: every zone (a type level); else the zones of a zone level.
    pub zones: Vec<String>,
}

impl Level {
    /// Karpenter's `priceAdjustment`.
    pub fn adjustment(&self) -> String {
        adjustment(self.premium)
    }
}

/// The pricing of one NodePool's types.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pricing {
    /// In the order Karpenter should ask for them.
    pub types: Vec<Priced>,
    pub type_levels: Vec<Level>,
    pub zone_levels: Vec<Level>,
    pub zone_premiums: Vec<ZonePremium>,
    /// The adjusted costs order the types exactly as ranked (false when levels were merged).
    pub exact: bool,
}

/// Karpenter's `priceAdjustment` for a premium in tenths of a percent: `+12.5%`, `+10%`, `+0%`.
pub fn adjustment(tenths: u32) -> String {
    if tenths.is_multiple_of(10) {
        format!("+{}%", tenths / 10)
    } else {
        format!("+{}.{}%", tenths / 10, tenths % 10)
    }
}

/// A `priceAdjustment` applied to `price` as Karpenter applies it (a signed percentage or a
/// signed absolute change; a bare number replaces the price; never below zero). `None` when
/// `change` is none of these.
pub fn apply_adjustment(price: f64, change: &str) -> Option<f64> {
    let (sign, rest) = match change.as_bytes().first()? {
        b'+' => (1.0, &change[1..]),
        b'-' => (-1.0, &change[1..]),
        _ => return change.parse::<f64>().ok().filter(|p| *p >= 0.0),
    };
    let adjusted = match rest.strip_suffix('%') {
        Some(pct) => price * (1.0 + sign * pct.parse::<f64>().ok()? / 100.0),
        None => price + sign * rest.parse::<f64>().ok()?,
    };
    Some(adjusted.max(0.0))
}

/// The premium the ranking gave a type of `band`, tenths of a percent.
fn ranked_premium(plan: &Plan, band: Option<u8>) -> u32 {
    match plan.ranking {
        Ranking::RiskAdjustedCost => {
            let m = plan.mode.risk_multiplier(band.unwrap_or(Band::MAX));
            ((m - 1.0) * 1000.0).round() as u32
        }
        Ranking::Cost | Ranking::BandSavingsWaste => 0,
    }
}

/// A listed type that is not in the plan (kept by the churn rule): its count, unit price and
/// band, as the shell reads them from the market data.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub instance_type: String,
    pub count: u32,
    pub unit_usd_per_hour: Option<f64>,
    pub band: Option<u8>,
    pub vcpus: u32,
    pub memory_gib: f64,
}

/// The listed types not in `plan`, with what the market data says of them for `req`.
pub fn kept(
    req: &crate::Request,
    market: &crate::MarketData,
    plan: &Plan,
    listed: &[String],
) -> Vec<Kept> {
    let catalog = market.catalog();
    let Some(region) = catalog.region(&req.region) else {
        return Vec::new();
    };
    listed
        .iter()
        .filter(|t| !plan.candidates.iter().any(|c| &c.instance_type == *t))
        .filter_map(|t| {
            let i = catalog.index_of(t)?;
            let q = market.quote(region, i);
            let ty = &catalog.types()[i];
            Some(Kept {
                instance_type: t.clone(),
                count: crate::optimizer::node_count(req, ty),
                unit_usd_per_hour: q.spot,
                band: q.band.map(Band::index),
                vcpus: ty.vcpus,
                memory_gib: ty.memory_gib(),
            })
        })
        .collect()
}

/// Prices a NodePool's `listed` types: those in `plan` in its rank order, then `kept` ones.
/// `reports` are the plan's own nodes' reports; those older than `learned.calm` count no more.
pub fn price(
    plan: &Plan,
    listed: &[String],
    kept: &[Kept],
    reports: &[Report],
    learned: &Learned,
    now: Timestamp,
) -> Pricing {
    let mut types: Vec<Priced> = Vec::with_capacity(listed.len());
    for c in &plan.candidates {
        if listed.contains(&c.instance_type) {
            let premium = ranked_premium(plan, c.interruption_band);
            types.push(Priced {
                instance_type: c.instance_type.clone(),
                count: c.count,
                unit_usd_per_hour: c.spot_usd_per_hour,
                ranked_premium: premium,
                premium,
                planned: true,
                vcpus: c.vcpus,
                memory_gib: c.memory_gib,
            });
        }
    }
    let mut rest: Vec<Priced> = kept
        .iter()
        .filter(|k| listed.contains(&k.instance_type))
        .filter(|k| !types.iter().any(|t| t.instance_type == k.instance_type))
        .map(|k| {
            let premium = ranked_premium(plan, k.band);
            Priced {
                instance_type: k.instance_type.clone(),
                count: k.count,
                unit_usd_per_hour: k.unit_usd_per_hour,
                ranked_premium: premium,
                premium,
                planned: false,
                vcpus: k.vcpus,
                memory_gib: k.memory_gib,
            }
        })
        .collect();
    // Kept types among themselves: cheapest adjusted first, unpriced last, then by name.
    rest.sort_by(|a, b| {
        let key = |p: &Priced| p.adjusted_total().unwrap_or(f64::INFINITY);
        key(a)
            .total_cmp(&key(b))
            .then_with(|| a.instance_type.cmp(&b.instance_type))
    });
    types.extend(rest);
    let split = types.iter().position(|t| !t.planned).unwrap_or(types.len());
    let (planned, kept) = types.split_at_mut(split);
    let exact = order(planned);
    // Kept types share one level, the last: the planned ones get the rest.
    let room = MAX_TYPE_LEVELS - usize::from(!kept.is_empty());
    let (mut type_levels, merged) = type_levels(planned, room);
    if !kept.is_empty() {
        let premium = last(planned, kept);
        for k in kept.iter_mut() {
            k.premium = premium;
        }
        let mut names: Vec<String> = kept.iter().map(|k| k.instance_type.clone()).collect();
        names.sort();
        match type_levels.iter_mut().find(|l| l.premium == premium) {
            Some(l) => {
                l.types.extend(names);
                l.types.sort();
            }
            None => type_levels.push(Level {
                premium,
                types: names,
                zones: Vec::new(),
            }),
        }
    }
    let exact = exact && !merged;
    let zone_premiums = zone_premiums(&types, reports, learned, now);
    let zone_levels = zone_levels(&zone_premiums);
    Pricing {
        types,
        type_levels,
        zone_levels,
        zone_premiums,
        exact,
    }
}

/// Raises premiums in rank order so adjusted totals strictly increase: a run of types the
/// ranking put after a dearer one (types in by widening, a placement near-tie) shares one factor
/// on top of its band premiums, carried on to the types after it, so the factors are few and the
/// premiums stay grouped by band. Premiums are in tenths of a percent, rounded up. Unpriced
/// types go above every priced one. True when every priced type could be ordered.
fn order(types: &mut [Priced]) -> bool {
    let mut prev: Option<f64> = None;
    let mut factor = 1.0f64;
    let mut top = 0u32;
    let mut exact = true;
    let premium_with = |ranked: u32, factor: f64| -> u32 {
        let p = ((1.0 + f64::from(ranked) / 1000.0) * factor - 1.0) * 1000.0;
        // Rounded up to a tenth of a percent, past float noise.
        (p - 1e-6).ceil().max(0.0) as u32
    };
    // Strictly after, by more than float noise: Karpenter's own arithmetic must see it too.
    let after = |a: f64, prev: f64| a > prev * (1.0 + 1e-9);
    for t in types.iter_mut() {
        let Some(base) = t.unit_usd_per_hour.map(|p| p * f64::from(t.count)) else {
            continue;
        };
        if base <= 0.0 {
            continue;
        }
        t.premium = premium_with(t.ranked_premium, factor);
        if let Some(prev) = prev
            && t.adjusted_total().is_some_and(|a| !after(a, prev))
        {
            // The factor that puts this type strictly after the one before, with a margin of a
            // tenth of a percent, rounded up to a tenth of a percent.
            let ranked = base * (1.0 + f64::from(t.ranked_premium) / 1000.0);
            let need = prev / ranked * 1.001;
            factor = (need * 1000.0).ceil() / 1000.0;
            t.premium = premium_with(t.ranked_premium, factor);
        }
        let total = t.adjusted_total().expect("priced");
        if prev.is_some_and(|p| !after(total, p)) {
            exact = false;
        }
        prev = Some(total);
        top = top.max(t.premium);
    }
    for t in types.iter_mut().filter(|t| t.unit_usd_per_hour.is_none()) {
        t.premium = top + 100;
    }
    exact
}

/// The one premium every kept type carries (tenths of a percent, rounded up): the least that
/// puts each of them last wherever Karpenter compares prices, with a margin of a tenth of a
/// percent.
/// - For the request: its adjusted cost above every planned type's.
/// - Node for node: one node of it above one node of every planned type at least as large
///   (vCPUs and memory). A NodeClaim may take any listed type that fits its pods, and AWS is asked
///   for the cheapest adjusted node first; a NodeClaim that could take a kept type could take
///   every larger planned type, so there the kept type is asked for last.
fn last(planned: &[Priced], kept: &[Priced]) -> u32 {
    let dearest = planned
        .iter()
        .filter_map(Priced::adjusted_total)
        .fold(0.0, f64::max);
    let factor = kept
        .iter()
        .filter_map(|k| {
            let unit = k.unit_usd_per_hour.filter(|u| *u > 0.0)?;
            let for_request = dearest / (unit * f64::from(k.count.max(1)));
            let per_node = planned
                .iter()
                .filter(|p| p.vcpus >= k.vcpus && p.memory_gib >= k.memory_gib)
                .filter_map(Priced::adjusted_unit)
                .fold(0.0, f64::max)
                / unit;
            Some(for_request.max(per_node) * 1.001)
        })
        .fold(1.0, f64::max);
    let top = planned.iter().map(|p| p.premium).max().unwrap_or(0);
    let premium = ((factor - 1.0) * 1000.0 - 1e-6).ceil().max(0.0) as u32;
    // Unpriced kept types too: above every planned premium.
    premium.max(top + 1)
}

/// Groups types by premium, cheapest level first; past `room` levels, the dearest merge into
/// the last allowed level's premium.
/// True with the levels when some were merged.
fn type_levels(types: &mut [Priced], room: usize) -> (Vec<Level>, bool) {
    let mut by: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for t in types.iter() {
        by.entry(t.premium)
            .or_default()
            .push(t.instance_type.clone());
    }
    let mut levels: Vec<Level> = by
        .into_iter()
        .map(|(premium, types)| Level {
            premium,
            types,
            zones: Vec::new(),
        })
        .collect();
    let merging = levels.len() > room;
    if merging {
        let merged: Vec<Level> = levels.split_off(room - 1);
        let premium = merged.last().expect("merged").premium;
        let names: Vec<String> = merged.into_iter().flat_map(|l| l.types).collect();
        for t in types
            .iter_mut()
            .filter(|t| names.contains(&t.instance_type))
        {
            t.premium = premium;
        }
        levels.push(Level {
            premium,
            types: names,
            zones: Vec::new(),
        });
    }
    for l in &mut levels {
        l.types.sort();
    }
    (levels, merging)
}

/// Premiums from the plan's own recent reports, per (type, zone), for listed types.
fn zone_premiums(
    types: &[Priced],
    reports: &[Report],
    learned: &Learned,
    now: Timestamp,
) -> Vec<ZonePremium> {
    in_force(reports, learned, now)
        .into_iter()
        .filter_map(|((ty, zone), e)| {
            let t = types.iter().find(|t| t.instance_type == ty)?;
            let extra = learned.extra(e.interruptions, e.rebalances);
            (extra > 0).then(|| ZonePremium {
                instance_type: ty.to_string(),
                zone: zone.to_string(),
                extra,
                premium: t.premium + extra,
                interruptions: e.interruptions,
                rebalances: e.rebalances,
                until: super::after(e.last, learned.calm),
            })
        })
        .collect()
}

/// What is in force on a (type, zone): reports younger than the calm period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InForce {
    pub interruptions: u32,
    pub rebalances: u32,
    /// The newest report: the premium falls `calm` after it.
    pub last: Timestamp,
}

/// The reports in force at `now`, per (type, zone).
pub fn in_force<'r>(
    reports: &'r [Report],
    learned: &Learned,
    now: Timestamp,
) -> BTreeMap<(&'r str, &'r str), InForce> {
    let from = super::before(now, learned.calm);
    let mut by: BTreeMap<(&str, &str), InForce> = BTreeMap::new();
    for r in reports.iter().filter(|r| r.at > from && r.at <= now) {
        let e = by
            .entry((r.instance_type.as_str(), r.zone.as_str()))
            .or_insert(InForce {
                interruptions: 0,
                rebalances: 0,
                last: r.at,
            });
        match r.evidence {
            Evidence::Interruption => e.interruptions += 1,
            Evidence::Rebalance => e.rebalances += 1,
        }
        e.last = e.last.max(r.at);
    }
    by
}

/// Zone premiums grouped by (premium, zone), strongest first, at most [`MAX_ZONE_LEVELS`].
fn zone_levels(zp: &[ZonePremium]) -> Vec<Level> {
    let mut by: BTreeMap<(u32, &str), Vec<String>> = BTreeMap::new();
    for z in zp {
        by.entry((z.premium, z.zone.as_str()))
            .or_default()
            .push(z.instance_type.clone());
    }
    let mut levels: Vec<Level> = by
        .into_iter()
        .rev()
        .map(|((premium, zone), mut types)| {
            types.sort();
            Level {
                premium,
                types,
                zones: vec![zone.to_string()],
            }
        })
        .collect();
    levels.truncate(MAX_ZONE_LEVELS);
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn priced(name: &str, (vcpus, unit, count): (u32, f64, u32), planned: bool) -> Priced {
        Priced {
            instance_type: name.to_string(),
            count,
            unit_usd_per_hour: Some(unit),
            ranked_premium: 0,
            premium: 0,
            planned,
            vcpus,
            memory_gib: f64::from(vcpus) * 4.0,
        }
    }

    #[test]
    fn kept_types_share_one_premium_that_puts_them_last_for_the_request_and_node_for_node() {
        // Ranked: big (16 vCPU, $1/h, 1 node), small (2 vCPU, $0.10/h, 8 nodes); kept: the
        // cheapest small (2 vCPU, $0.09/h) and one larger than any planned type.
        let mut types = [
            priced("big", (16, 1.0, 1), true),
            priced("small", (2, 0.10, 8), true),
            priced("kept-small", (2, 0.09, 8), false),
            priced("kept-huge", (32, 1.5, 1), false),
        ];
        let (planned, kept) = types.split_at_mut(2);
        assert!(order(planned));
        // small: just after big for the request: 1.0 / 0.8 x 1.001, rounded up.
        assert_eq!(planned[1].premium, 252);
        // kept-small binds: one node above big's ($1/h), the dearest planned type as large:
        // 1.0 / 0.09 x 1.001 = 11.1222, +1012.3% rounded up. kept-huge shares it.
        let premium = last(planned, kept);
        assert_eq!(premium, 10123);
        for k in kept.iter_mut() {
            k.premium = premium;
        }
        let node = |t: &Priced| t.adjusted_unit().unwrap();
        assert!(node(&types[2]) > node(&types[0]) && node(&types[2]) < node(&types[0]) * 1.002);
        assert!(node(&types[3]) > node(&types[0]));
        let totals: Vec<f64> = types.iter().map(|t| t.adjusted_total().unwrap()).collect();
        assert!(
            totals[1] > totals[0] && totals[2] > totals[1] && totals[3] > totals[1],
            "{totals:?}"
        );
    }

    #[test]
    fn without_a_larger_planned_type_the_request_binds_a_kept_type() {
        let mut types = [
            priced("big", (16, 1.0, 1), true),
            priced("kept", (32, 0.8, 1), false),
        ];
        let (planned, kept) = types.split_at_mut(1);
        assert!(order(planned));
        // 1.0 / 0.8 x 1.001 = 1.25125: +25.2% rounded up.
        assert_eq!(last(planned, kept), 252);
    }

    #[test]
    fn adjustments_read_back_as_karpenter_applies_them() {
        assert_eq!(adjustment(0), "+0%");
        assert_eq!(adjustment(125), "+12.5%");
        assert_eq!(adjustment(1000), "+100%");
        assert_eq!(apply_adjustment(2.0, "+12.5%"), Some(2.25));
        assert_eq!(apply_adjustment(2.0, "-0.5"), Some(1.5));
        assert_eq!(apply_adjustment(2.0, "-300%"), Some(0.0));
        assert_eq!(apply_adjustment(2.0, "3"), Some(3.0));
        assert_eq!(apply_adjustment(2.0, "x"), None);
    }
}
