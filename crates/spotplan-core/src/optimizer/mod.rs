//! The optimizer: a pure, deterministic function from a [`Request`] and [`MarketData`] (which
//! carries its catalog) to a [`Plan`].
//!
//! 1. Filter the catalog, counting what each filter removes (so "nothing fits" can name it).
//! 2. Size every survivor: `count = max(ceil(vcpus/type_vcpus), ceil(memory/type_memory))`.
//! 3. Choose the constraints (see [`choose`]): the interruption ceiling (the request's, or the
//!    mode's default cap, relaxed one band at a time while it leaves fewer than `minTypes`
//!    types) and the node-count range (the mode's, widened step by step within a bound while it
//!    leaves fewer than `minTypes`). Keep the types within both.
//! 4. Rank (see [`Ranking`]): types inside the mode's own range first; then by the request's
//!    spot $/h, with a per-band premium from the mode unless the request set its own ceiling;
//!    by band, savings and waste when there are no prices.
//! 5. Diversify: take the best type of each family in rank order, then the second best of each,
//!    and so on, until the list is long enough; the list keeps rank order.

mod filter;
mod request;

pub use filter::Filter;
pub use request::{
    AWS_REGIONS, Field, GpuRequirement, Request, RequestError, check_bounds, closest, validate,
};

use crate::catalog::InstanceType;
use crate::market::{MarketData, Quote};
use crate::plan::{
    Candidate, Ceiling, CeilingSource, Diversity, FilterStat, Plan, Ranking, Totals, ZonePrice,
};
use crate::types::Band;
use filter::rejecting_filter;
use request::{Resolved, resolve};
use std::cmp::Ordering;
use std::collections::HashSet;

/// Why no plan was made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(
        "no instance type fits: the {} filter removed the last {removed} candidates ({})",
        .filter.name(), .filter.hint()
    )]
    NothingFits {
        filter: Filter,
        removed: usize,
        filters: Vec<FilterStat>,
    },
}

impl PlanError {
    /// The request field at fault, if one is.
    pub fn field(&self) -> Option<Field> {
        match self {
            PlanError::Request(e) => Some(e.field()),
            PlanError::NothingFits { .. } => None,
        }
    }

    /// A short fixed reason (CamelCase), for conditions, Events and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            PlanError::Request(e) => e.reason(),
            PlanError::NothingFits { .. } => "NothingFits",
        }
    }
}

/// Steps a mode's node-count range may widen on each side: half its lower end, at least one,
/// so a mode never turns into another (fault_tolerance's 3-4 nodes reaches 2-5, never 1).
pub fn widen_bound(strict: (u32, u32)) -> u32 {
    (strict.0 / 2).max(1)
}

/// `strict` widened by `k` steps on each side (never below one node).
fn widened(strict: (u32, u32), k: u32) -> (u32, u32) {
    (
        strict.0.saturating_sub(k).max(1),
        strict.1.saturating_add(k),
    )
}

/// Steps `strict` must widen to take a type needing `count` nodes (0 inside it).
fn distance(strict: (u32, u32), count: u32) -> u32 {
    if count < strict.0 {
        strict.0 - count
    } else {
        count.saturating_sub(strict.1)
    }
}

/// The ceilings to try, in order: the request's own; or the mode's default cap, then one band
/// more at a time up to 4, then any band (types with no band included).
fn ceilings(req: &Request) -> Vec<Ceiling> {
    match req.max_band {
        Some(b) => vec![Ceiling {
            band: Some(b),
            source: CeilingSource::User,
        }],
        None => {
            let cap = req.mode.default_band_cap();
            (cap..=crate::limits::MAX_BAND)
                .map(Some)
                .chain(std::iter::once(None))
                .map(|band| Ceiling {
                    band,
                    source: if band == Some(cap) {
                        CeilingSource::Mode
                    } else {
                        CeilingSource::Relaxed
                    },
                })
                .collect()
        }
    }
}

/// The constraints a plan is made under.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Constraints {
    ceiling: Ceiling,
    range: (u32, u32),
    /// Types within them.
    eligible: usize,
}

/// Chooses the ceiling and node-count range: the first ceiling (in [`ceilings`] order) under
/// which the range, widened by as few steps as needed within [`widen_bound`], holds `minTypes`
/// types. When none does, the one holding the most (the least relaxed among equals); when
/// nothing fits at all, the most relaxed, so "nothing fits" names the filter really at fault.
fn choose(req: &Request, strict: (u32, u32), passed: &[Passed]) -> Constraints {
    let bound = widen_bound(strict);
    let mut best: Option<Constraints> = None;
    let all = ceilings(req);
    for ceiling in &all {
        let mut steps: Vec<u32> = passed
            .iter()
            .filter(|p| ceiling.admits(p.band))
            .map(|p| distance(strict, p.count))
            .filter(|d| *d <= bound)
            .collect();
        steps.sort_unstable();
        let want = req.min_types.max(1);
        if steps.len() >= want {
            let range = widened(strict, steps[want - 1]);
            let eligible = steps.iter().take_while(|d| **d <= steps[want - 1]).count();
            return Constraints {
                ceiling: *ceiling,
                range,
                eligible,
            };
        }
        let here = Constraints {
            ceiling: *ceiling,
            range: widened(strict, steps.last().copied().unwrap_or(0)),
            eligible: steps.len(),
        };
        if best.is_none_or(|b| here.eligible > b.eligible) {
            best = Some(here);
        }
    }
    match best {
        Some(b) if b.eligible > 0 => b,
        _ => Constraints {
            ceiling: *all.last().expect("at least one ceiling"),
            range: strict,
            eligible: 0,
        },
    }
}

/// Instances of `t` needed to meet the request on its own. Computed in 64 bits: with the
/// request's bounds ([`crate::limits`]) the count always fits in 32.
pub fn node_count(req: &Request, t: &InstanceType) -> u32 {
    let by_cpu = u64::from(req.vcpus).div_ceil(u64::from(t.vcpus.max(1)));
    let by_mem = req.memory_mib.div_ceil(t.memory_mib.max(1));
    u32::try_from(by_cpu.max(by_mem)).unwrap_or(u32::MAX)
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

struct Scored<'a> {
    index: usize,
    t: &'a InstanceType,
    /// Its node count is outside the mode's own range (it came in by widening).
    widened: bool,
    quote: Quote,
    count: u32,
    total_spot: Option<f64>,
    score: Option<f64>,
    waste: f64,
}

fn compare(ranking: Ranking, a: &Scored, b: &Scored) -> Ordering {
    let band = |s: &Scored| Band::rank_of(s.quote.band);
    let by_waste_name = |a: &Scored, b: &Scored| {
        a.waste
            .total_cmp(&b.waste)
            .then_with(|| a.t.name.cmp(&b.t.name))
    };
    let unpriced = |a: &Scored, b: &Scored| {
        band(a)
            .cmp(&band(b))
            // higher savings first; unknown savings last
            .then_with(|| {
                b.quote
                    .savings_pct
                    .unwrap_or(i32::MIN)
                    .cmp(&a.quote.savings_pct.unwrap_or(i32::MIN))
            })
            .then_with(|| by_waste_name(a, b))
    };
    // Types inside the mode's own range rank first: widening is for diversity.
    let inside = a.widened.cmp(&b.widened);
    if inside != Ordering::Equal {
        return inside;
    }
    match ranking {
        Ranking::BandSavingsWaste => unpriced(a, b),
        Ranking::Cost | Ranking::RiskAdjustedCost => match (a.score, b.score) {
            (Some(x), Some(y)) => x
                .total_cmp(&y)
                .then_with(|| band(a).cmp(&band(b)))
                .then_with(|| by_waste_name(a, b)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => unpriced(a, b),
        },
    }
}

/// A type that passed every filter but the ceiling and the node count.
#[derive(Debug, Clone, Copy)]
struct Passed {
    index: usize,
    count: u32,
    band: Option<u8>,
}

/// What filtering left, and removals per filter (the ceiling and the node count are applied
/// later, once chosen).
struct Filtered {
    passed: Vec<Passed>,
    removed: [usize; Filter::ALL.len()],
}

fn filter_catalog(req: &Request, r: &Resolved, market: &MarketData) -> Filtered {
    let quotes = market.quotes(r.region);
    let mut removed = [0usize; Filter::ALL.len()];
    let mut passed = Vec::new();
    for (i, t) in market.catalog().types().iter().enumerate() {
        match rejecting_filter(req, r, t, &quotes[i], None) {
            Some(f) => removed[f as usize] += 1,
            None => passed.push(Passed {
                index: i,
                count: node_count(req, t),
                band: quotes[i].band.map(Band::index),
            }),
        }
    }
    Filtered { passed, removed }
}

/// Share of provisioned vCPUs and memory not requested, as a mean of the two, percent.
fn waste(req: &Request, t: &InstanceType, count: u32) -> f64 {
    let total_v = f64::from(count) * f64::from(t.vcpus);
    let total_m = f64::from(count) * t.memory_mib as f64;
    ((total_v - f64::from(req.vcpus)) / total_v + (total_m - req.memory_mib as f64) / total_m)
        * 50.0
}

fn filter_stats(removed: &[usize; Filter::ALL.len()], total: usize) -> Vec<FilterStat> {
    let mut remaining = total;
    Filter::ALL
        .iter()
        .map(|f| {
            let n = removed[*f as usize];
            remaining -= n;
            FilterStat {
                filter: f.name(),
                removed: n,
                remaining,
            }
        })
        .collect()
}

/// Plans a request. Pure: the same inputs always give the same plan.
pub fn optimize(req: &Request, market: &MarketData) -> Result<Plan, PlanError> {
    let catalog = market.catalog();
    let resolved = resolve(req, catalog)?;
    let region = resolved.region;
    let mode_range = req.mode.node_range(f64::from(req.vcpus), req.memory_gib());
    let Filtered {
        passed,
        mut removed,
    } = filter_catalog(req, &resolved, market);
    let chosen = choose(req, mode_range, &passed);
    let range = chosen.range;
    let quotes = market.quotes(region);
    let mut survivors: Vec<Scored> = Vec::with_capacity(chosen.eligible);
    for Passed {
        index: i,
        count,
        band,
    } in passed.iter().copied()
    {
        if !chosen.ceiling.admits(band) {
            let why = if band.is_none() {
                Filter::NoBand
            } else {
                Filter::MaxInterruptionBand
            };
            removed[why as usize] += 1;
            continue;
        }
        if count < range.0 || count > range.1 {
            removed[Filter::NodeCount as usize] += 1;
            continue;
        }
        let t = &catalog.types()[i];
        let quote = quotes[i];
        survivors.push(Scored {
            index: i,
            t,
            widened: distance(mode_range, count) > 0,
            quote,
            count,
            total_spot: quote.spot.map(|p| p * f64::from(count)),
            score: None,
            waste: waste(req, t, count),
        });
    }
    let filters = filter_stats(&removed, catalog.len());
    if survivors.is_empty() {
        // The filter after which nothing was left.
        let (filter, n) = Filter::ALL
            .iter()
            .zip(&filters)
            .find(|(_, s)| s.remaining == 0)
            .map(|(f, s)| (*f, s.removed))
            .unwrap_or((Filter::Region, 0));
        return Err(PlanError::NothingFits {
            filter,
            removed: n,
            filters,
        });
    }

    let has_prices = market.has_prices(region) && survivors.iter().any(|s| s.total_spot.is_some());
    let ranking = if !has_prices {
        Ranking::BandSavingsWaste
    } else if req.max_band.is_some() {
        Ranking::Cost
    } else {
        Ranking::RiskAdjustedCost
    };
    for s in &mut survivors {
        s.score = s.total_spot.map(|cost| match ranking {
            Ranking::RiskAdjustedCost => {
                cost * req.mode.risk_multiplier(Band::rank_of(s.quote.band))
            }
            _ => cost,
        });
    }
    survivors.sort_by(|a, b| compare(ranking, a, b));

    let listed = diversify(&survivors, req.max_types, catalog.family_count());
    let candidates: Vec<Candidate> = listed
        .iter()
        .enumerate()
        .map(|(rank, &i)| to_candidate(req, market, region, &survivors[i], rank + 1, ranking))
        .collect();
    let notes = notes(
        req,
        market,
        &passed,
        &survivors,
        &candidates,
        &removed,
        (mode_range, chosen),
        has_prices,
    );
    let primary = &candidates[0];
    let totals = Totals {
        spot_usd_per_hour: primary.total_spot_usd_per_hour,
        on_demand_usd_per_hour: primary.total_on_demand_usd_per_hour,
        savings_pct: match (
            primary.total_spot_usd_per_hour,
            primary.total_on_demand_usd_per_hour,
        ) {
            (Some(s), Some(o)) if o > 0.0 => Some(round2((1.0 - s / o) * 100.0)),
            _ => None,
        },
    };
    let families: HashSet<&str> = candidates.iter().map(|c| c.family.as_str()).collect();
    let generations: HashSet<u8> = candidates.iter().map(|c| c.generation).collect();
    let diversity = Diversity {
        types: candidates.len(),
        families: families.len(),
        generations: generations.len(),
        min_types: req.min_types,
        meets_min_types: candidates.len() >= req.min_types,
    };
    Ok(Plan {
        region: req.region.clone(),
        mode: req.mode,
        vcpus: req.vcpus,
        memory_gib: round4(req.memory_gib()),
        node_count_range: range,
        mode_node_count_range: mode_range,
        ranking,
        interruption_ceiling: chosen.ceiling,
        totals,
        catalog_types: catalog.len(),
        eligible_types: survivors.len(),
        filters,
        unknown_band_types: survivors.iter().filter(|s| s.quote.band.is_none()).count(),
        has_prices,
        unpriced_types: candidates
            .iter()
            .filter(|c| c.total_spot_usd_per_hour.is_none())
            .count(),
        estimated_spot_prices: candidates
            .iter()
            .filter(|c| c.spot_price_source == crate::market::PriceFrom::Estimated)
            .count(),
        diversity,
        notes,
        candidates,
        placement_scores: Vec::new(),
    })
}

/// Plain-language remarks on a plan: a relaxed ceiling, a widened range, too few types,
/// missing data.
#[allow(clippy::too_many_arguments)]
fn notes(
    req: &Request,
    market: &MarketData,
    passed: &[Passed],
    survivors: &[Scored],
    candidates: &[Candidate],
    removed: &[usize; Filter::ALL.len()],
    (mode_range, chosen): ((u32, u32), Constraints),
    has_prices: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    let cap = req.mode.default_band_cap();
    if chosen.ceiling.source == CeilingSource::Relaxed {
        let at_cap = choose(
            &Request {
                max_band: Some(cap),
                ..req.clone()
            },
            mode_range,
            passed,
        );
        notes.push(format!(
            "only {} types fit {}'s default interruption ceiling (band <= {cap}, under {}), fewer than the {} wanted: relaxed it to {}",
            at_cap.eligible,
            req.mode,
            ["5%", "10%", "15%", "20%", ""][usize::from(cap)],
            req.min_types,
            match chosen.ceiling.band {
                Some(b) => format!("band <= {b}"),
                None => "any band, types with no Spot Advisor band included".into(),
            }
        ));
    }
    let range = chosen.range;
    if range != mode_range {
        let inside = passed
            .iter()
            .filter(|p| chosen.ceiling.admits(p.band) && distance(mode_range, p.count) == 0)
            .count();
        notes.push(format!(
            "{inside} types land in {}'s {}-{} nodes, fewer than the {} wanted: the range was widened to {}-{} (types outside {}-{} rank after those inside)",
            req.mode, mode_range.0, mode_range.1, req.min_types, range.0, range.1, mode_range.0, mode_range.1
        ));
    }
    if candidates.len() < req.min_types {
        // The filters that cut the most, skipping the structural ones a user cannot change.
        let mut cutters: Vec<(Filter, usize)> = Filter::ALL
            .iter()
            .filter(|f| !matches!(f, Filter::Region | Filter::Spot))
            .map(|f| (*f, removed[*f as usize]))
            .filter(|(_, n)| *n > 0)
            .collect();
        cutters.sort_by_key(|c| std::cmp::Reverse(c.1));
        let hints: Vec<String> = cutters
            .iter()
            .take(2)
            .map(|(f, n)| format!("{} removed {n} ({})", f.name(), f.hint()))
            .collect();
        notes.push(format!(
            "only {} distinct instance types fit this request, fewer than the {} wanted{}; the most restrictive filters: {}",
            candidates.len(),
            req.min_types,
            if req.min_types >= crate::limits::DEFAULT_MIN_TYPES {
                " (Karpenter's spot-to-spot consolidation needs 15)"
            } else {
                ""
            },
            if hints.is_empty() { "none".into() } else { hints.join("; ") }
        ));
    }
    if market.advisor().is_none() {
        notes.push("no Spot Advisor data: every interruption band is unknown".into());
    }
    let unknown = survivors.iter().filter(|s| s.quote.band.is_none()).count();
    if unknown > 0 {
        notes.push(format!(
            "{unknown} eligible types have no Spot Advisor band; they are shown as 'unknown' and ranked as band 4"
        ));
    }
    let left_out = passed.iter().filter(|p| p.band.is_none()).count();
    if chosen.ceiling.band.is_some() && left_out > 0 && market.advisor().is_some() {
        notes.push(format!(
            "{left_out} types that passed the other filters have no Spot Advisor band in {} and were left out (an interruption ceiling needs a band)",
            req.region
        ));
    }
    if !has_prices {
        notes.push(format!(
            "no prices for {}: ranked by interruption band, savings and waste instead of cost (give a price file or use live AWS data for cost-aware ranking)",
            req.region
        ));
    }
    let unpriced = candidates
        .iter()
        .filter(|c| c.total_spot_usd_per_hour.is_none())
        .count();
    if has_prices && unpriced > 0 {
        notes.push(format!(
            "{unpriced} listed types have no price and are ranked after the priced ones"
        ));
    }
    notes
}

/// Indexes into `ranked` (already in rank order): the best of each family first, then the
/// second best of each, ... up to `max` entries, returned in rank order.
fn diversify(ranked: &[Scored], max: usize, families: usize) -> Vec<usize> {
    let mut taken = vec![false; ranked.len()];
    let mut per_family = vec![0usize; families];
    let mut chosen = Vec::with_capacity(max.min(ranked.len()));
    let mut cap = 1;
    while chosen.len() < max && chosen.len() < ranked.len() {
        for (i, s) in ranked.iter().enumerate() {
            if chosen.len() == max {
                break;
            }
            let n = &mut per_family[usize::from(s.t.family_id)];
            if !taken[i] && *n < cap {
                taken[i] = true;
                *n += 1;
                chosen.push(i);
            }
        }
        cap += 1;
    }
    chosen.sort_unstable();
    chosen
}

fn to_candidate(
    req: &Request,
    market: &MarketData,
    region: crate::catalog::RegionId,
    s: &Scored,
    rank: usize,
    ranking: Ranking,
) -> Candidate {
    let t = s.t;
    let count = s.count;
    let total_vcpus = u64::from(count) * u64::from(t.vcpus);
    let total_mem_gib = f64::from(count) * t.memory_gib();
    let catalog = market.catalog();
    let zones = &catalog.regions()[region.slot()].zones;
    Candidate {
        rank,
        instance_type: t.name.to_string(),
        family: t.family.to_string(),
        generation: t.generation,
        arch: t.arch().expect("filtered to Kubernetes architectures"),
        vcpus: t.vcpus,
        memory_gib: round4(t.memory_gib()),
        count,
        total_vcpus,
        total_memory_gib: round4(total_mem_gib),
        interruption_band: s.quote.band.map(Band::index),
        interruption_label: Band::label_of(s.quote.band),
        savings_pct: s.quote.savings_pct,
        spot_usd_per_hour: s.quote.spot.map(round4),
        spot_price_source: s.quote.spot_from,
        on_demand_usd_per_hour: s.quote.on_demand.map(round4),
        on_demand_price_source: s.quote.on_demand_from,
        total_spot_usd_per_hour: s.total_spot.map(round4),
        total_on_demand_usd_per_hour: s.quote.on_demand.map(|p| round4(p * f64::from(count))),
        ranked_usd_per_hour: s
            .score
            .filter(|_| ranking != Ranking::BandSavingsWaste)
            .map(round4),
        band_premium_pct: (ranking == Ranking::RiskAdjustedCost).then(|| {
            let m = req.mode.risk_multiplier(Band::rank_of(s.quote.band));
            ((m - 1.0) * 100.0).round() as u32
        }),
        cpu_waste_pct: round2(
            (total_vcpus as f64 - f64::from(req.vcpus)) / total_vcpus as f64 * 100.0,
        ),
        memory_waste_pct: round2((total_mem_gib - req.memory_gib()) / total_mem_gib * 100.0),
        waste_pct: round2(s.waste),
        local_ssd: t.has_local_ssd(),
        gpus: t.gpu_count(),
        zones: catalog
            .zones_of(t, region)
            .into_iter()
            .map(String::from)
            .collect(),
        zone_spot_usd_per_hour: market
            .zone_spot(region, s.index)
            .iter()
            .map(|(z, p)| ZonePrice {
                zone: zones[usize::from(*z)].to_string(),
                spot_usd_per_hour: round4(*p),
            })
            .collect(),
        placement_score: None,
    }
}

/// How a written type stands against a request and the ceiling it was planned under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Still eligible (its rank does not matter).
    Fits,
    /// Over the interruption ceiling by this many bands (a type with no band now counts as one
    /// over): the churn rule decides when it goes.
    Over { by: u8, band: Option<u8> },
    /// No longer eligible: rejected by this filter.
    Gone(Filter),
}

/// For each name in `names`, how it stands under `req` today within `ceiling` (the plan's).
/// Node counts are checked against the widest the mode's range may widen to, so a written type
/// is not dropped just because today's plan needed less widening. The churn rule uses this to
/// tell a type that merely fell in rank from one that no longer fits.
pub fn fit(
    req: &Request,
    market: &MarketData,
    ceiling: Ceiling,
    names: &[String],
) -> Result<Vec<Fit>, PlanError> {
    let catalog = market.catalog();
    let resolved = resolve(req, catalog)?;
    let strict = req.mode.node_range(f64::from(req.vcpus), req.memory_gib());
    let quotes = market.quotes(resolved.region);
    Ok(names
        .iter()
        .map(|n| {
            let Some(i) = catalog.index_of(n) else {
                return Fit::Gone(Filter::InstanceTypes);
            };
            let t = &catalog.types()[i];
            if let Some(f) = rejecting_filter(req, &resolved, t, &quotes[i], None) {
                return Fit::Gone(f);
            }
            if distance(strict, node_count(req, t)) > widen_bound(strict) {
                return Fit::Gone(Filter::NodeCount);
            }
            let band = quotes[i].band.map(Band::index);
            match (ceiling.band, band) {
                (None, _) => Fit::Fits,
                (Some(_), None) => Fit::Over { by: 1, band },
                (Some(max), Some(b)) if b <= max => Fit::Fits,
                (Some(max), Some(b)) => Fit::Over { by: b - max, band },
            }
        })
        .collect())
}

/// The Spot Advisor band of each name in `names` in `req`'s region today (`None`: no band, or
/// not a type in the catalog).
pub fn bands(
    req: &Request,
    market: &MarketData,
    names: &[String],
) -> Result<Vec<Option<u8>>, PlanError> {
    let catalog = market.catalog();
    let resolved = resolve(req, catalog)?;
    let quotes = market.quotes(resolved.region);
    Ok(names
        .iter()
        .map(|n| {
            catalog
                .index_of(n)
                .and_then(|i| quotes[i].band.map(Band::index))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(types: &[(u32, Option<u8>)]) -> Vec<Passed> {
        types
            .iter()
            .enumerate()
            .map(|(index, &(count, band))| Passed { index, count, band })
            .collect()
    }

    fn request(mode: crate::types::Mode, min_types: usize, max_band: Option<u8>) -> Request {
        let mut r = Request::new(64, 256 * 1024, "us-east-1");
        r.mode = mode;
        r.min_types = min_types;
        r.max_band = max_band;
        r
    }

    #[test]
    fn the_range_widens_only_as_far_as_min_types_needs_and_never_past_its_bound() {
        use crate::types::Mode::Balanced;
        let p = passed(&[
            (4, Some(0)),
            (5, Some(0)),
            (6, Some(0)),
            (3, Some(0)),
            (8, Some(0)),
        ]);
        let c = choose(&request(Balanced, 1, None), (5, 5), &p);
        assert_eq!((c.range, c.eligible), ((5, 5), 1));
        let c = choose(&request(Balanced, 3, None), (5, 5), &p);
        assert_eq!((c.range, c.eligible), ((4, 6), 3));
        let c = choose(&request(Balanced, 4, None), (5, 5), &p);
        assert_eq!(
            (c.range, c.eligible),
            ((3, 7), 4),
            "2 steps for a range starting at 5"
        );
        let c = choose(&request(Balanced, 5, None), (5, 5), &p);
        assert_eq!(
            (c.range, c.eligible),
            ((3, 7), 4),
            "8 nodes is past the bound: the most within it"
        );
        let c = choose(
            &request(Balanced, 2, None),
            (3, 4),
            &passed(&[(1, Some(0)), (3, Some(0))]),
        );
        assert_eq!(
            (c.range, c.eligible),
            ((3, 4), 1),
            "fault tolerance never becomes one node"
        );
        let c = choose(
            &request(Balanced, 2, None),
            (3, 4),
            &passed(&[(2, Some(0)), (3, Some(0))]),
        );
        assert_eq!((c.range, c.eligible), ((2, 5), 2));
        assert_eq!(widen_bound((1, 1)), 1);
        assert_eq!(widened((1, 1), 1), (1, 2));
    }

    #[test]
    fn the_default_ceiling_relaxes_one_band_at_a_time_below_min_types() {
        use crate::types::Mode::{Balanced, FaultTolerance, Latency};
        let p = passed(&[
            (2, Some(0)),
            (2, Some(1)),
            (2, Some(2)),
            (2, Some(3)),
            (2, None),
        ]);
        let c = choose(&request(Balanced, 3, None), (2, 2), &p);
        assert_eq!(
            (c.ceiling.band, c.ceiling.source),
            (Some(2), CeilingSource::Mode)
        );
        let c = choose(&request(Balanced, 4, None), (2, 2), &p);
        assert_eq!(
            (c.ceiling.band, c.ceiling.source),
            (Some(3), CeilingSource::Relaxed)
        );
        let c = choose(&request(Balanced, 5, None), (2, 2), &p);
        assert_eq!(
            (c.ceiling.band, c.eligible),
            (None, 5),
            "last, types with no band"
        );
        let c = choose(&request(Latency, 2, None), (2, 2), &p);
        assert_eq!(c.ceiling.band, Some(1));
        let c = choose(&request(FaultTolerance, 1, None), (2, 2), &p);
        assert_eq!(c.ceiling.band, Some(3));
        // Relaxing that adds nothing is not done.
        let only_low = passed(&[(2, Some(0)), (2, Some(1))]);
        let c = choose(&request(Balanced, 15, None), (2, 2), &only_low);
        assert_eq!(
            (c.ceiling.band, c.ceiling.source, c.eligible),
            (Some(2), CeilingSource::Mode, 2)
        );
        // A ceiling the user set is never relaxed; widening still helps.
        let c = choose(&request(Balanced, 5, Some(1)), (2, 2), &p);
        assert_eq!(
            (c.ceiling.band, c.ceiling.source, c.eligible),
            (Some(1), CeilingSource::User, 2)
        );
        // Widening comes before relaxing: diversity first, within the ceiling.
        let spread = passed(&[(2, Some(0)), (1, Some(1)), (3, Some(2)), (2, Some(3))]);
        let c = choose(&request(Balanced, 3, None), (2, 2), &spread);
        assert_eq!((c.ceiling.band, c.range), (Some(2), (1, 3)));
    }

    #[test]
    fn the_largest_request_does_not_overflow() {
        let market = MarketData::empty();
        let mut req = Request::new(
            crate::limits::MAX_VCPUS,
            crate::limits::MAX_MEMORY_MIB,
            "us-east-1",
        );
        for mode in crate::types::Mode::ALL {
            req.mode = mode;
            match optimize(&req, &market) {
                Ok(plan) => {
                    for c in &plan.candidates {
                        assert!(c.total_vcpus >= u64::from(req.vcpus), "{c:?}");
                        assert!(c.total_memory_gib * 1024.0 >= req.memory_mib as f64);
                    }
                }
                Err(PlanError::NothingFits { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        req.vcpus = crate::limits::MAX_VCPUS + 1;
        let e = optimize(&req, &market).unwrap_err();
        assert_eq!(e.field(), Some(Field::Cpu));
        assert!(e.to_string().contains("1 to 65536"), "{e}");
    }
}
