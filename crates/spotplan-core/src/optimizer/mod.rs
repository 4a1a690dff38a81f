//! The optimizer: a pure, deterministic function from a [`Request`] and [`MarketData`] (which
//! carries its catalog) to a [`Plan`].
//!
//! 1. Filter the catalog, counting what each filter removes (so "nothing fits" can name it).
//! 2. Size every survivor: `count = max(ceil(vcpus/type_vcpus), ceil(memory/type_memory))`,
//!    and keep it if the count is in the mode's node-count range.
//! 3. Rank (see [`Ranking`]): by the request's spot $/h, with a per-band premium from the mode
//!    when no interruption ceiling is set; by band, savings and waste when there are no prices.
//! 4. Diversify: take the best type of each family in rank order, then the second best of each,
//!    and so on, until the list is long enough; the list keeps rank order.

mod filter;
mod request;

pub use filter::Filter;
pub use request::{
    AWS_REGIONS, Field, GpuRequirement, Request, RequestError, check_bounds, closest, validate,
};

use crate::catalog::InstanceType;
use crate::market::{MarketData, Quote};
use crate::plan::{Candidate, Diversity, FilterStat, Plan, Ranking, Totals, ZonePrice};
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

/// The node-count range types must land in: the mode's range, or, when no eligible type lands
/// in it, that range widened one step at a time on both sides (fixed instance sizes leave holes:
/// 88 vCPU in exactly 5 nodes fits no type), by at most half the range's lower end (at least
/// one step), so a mode never turns into another: fault_tolerance's 3-4 nodes never becomes 1.
fn effective_range(strict: (u32, u32), counts: &[u32]) -> (u32, u32) {
    let fits = |r: (u32, u32)| counts.iter().any(|c| (r.0..=r.1).contains(c));
    if counts.is_empty() || fits(strict) {
        return strict;
    }
    (1..=(strict.0 / 2).max(1))
        .map(|k| {
            (
                strict.0.saturating_sub(k).max(1),
                strict.1.saturating_add(k),
            )
        })
        .find(|r| fits(*r))
        .unwrap_or(strict)
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

/// What filtering left: survivors with their node counts, and removals per filter.
struct Filtered {
    passed: Vec<(usize, u32)>,
    removed: [usize; Filter::ALL.len()],
}

fn filter_catalog(req: &Request, r: &Resolved, market: &MarketData) -> Filtered {
    let quotes = market.quotes(r.region);
    let mut removed = [0usize; Filter::ALL.len()];
    let mut passed = Vec::new();
    for (i, t) in market.catalog().types().iter().enumerate() {
        match rejecting_filter(req, r, t, &quotes[i], req.max_band) {
            Some(f) => removed[f as usize] += 1,
            None => passed.push((i, node_count(req, t))),
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
    let counts: Vec<u32> = passed.iter().map(|p| p.1).collect();
    let range = effective_range(mode_range, &counts);
    let quotes = market.quotes(region);
    let mut survivors: Vec<Scored> = Vec::with_capacity(passed.len());
    for (i, count) in passed {
        if count < range.0 || count > range.1 {
            removed[Filter::NodeCount as usize] += 1;
            continue;
        }
        let t = &catalog.types()[i];
        let quote = quotes[i];
        survivors.push(Scored {
            index: i,
            t,
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

    let chosen = diversify(&survivors, req.max_types, catalog.family_count());
    let candidates: Vec<Candidate> = chosen
        .iter()
        .enumerate()
        .map(|(rank, &i)| to_candidate(req, market, region, &survivors[i], rank + 1))
        .collect();
    let notes = notes(
        req,
        market,
        &survivors,
        &candidates,
        &removed,
        mode_range,
        range,
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

/// Plain-language remarks on a plan: widened ranges, too few types, missing data.
#[allow(clippy::too_many_arguments)]
fn notes(
    req: &Request,
    market: &MarketData,
    survivors: &[Scored],
    candidates: &[Candidate],
    removed: &[usize; Filter::ALL.len()],
    mode_range: (u32, u32),
    range: (u32, u32),
    has_prices: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    if range != mode_range {
        notes.push(format!(
            "no eligible type lands in {}'s {}-{} nodes; the range was widened to {}-{}",
            req.mode, mode_range.0, mode_range.1, range.0, range.1
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

/// For each name in `names`, the filter that would reject it under `req` today, or `None` when
/// it is still eligible (unknown names are rejected as [`Filter::InstanceTypes`]). The churn
/// rule uses this to tell a type that merely fell in rank from one that no longer fits.
pub fn check_types(
    req: &Request,
    market: &MarketData,
    names: &[String],
) -> Result<Vec<Option<Filter>>, PlanError> {
    let catalog = market.catalog();
    let resolved = resolve(req, catalog)?;
    let Filtered { passed, .. } = filter_catalog(req, &resolved, market);
    let counts: Vec<u32> = passed.iter().map(|p| p.1).collect();
    let range = effective_range(
        req.mode.node_range(f64::from(req.vcpus), req.memory_gib()),
        &counts,
    );
    let quotes = market.quotes(resolved.region);
    Ok(names
        .iter()
        .map(|n| match catalog.index_of(n) {
            None => Some(Filter::InstanceTypes),
            Some(i) => {
                let t = &catalog.types()[i];
                rejecting_filter(req, &resolved, t, &quotes[i], req.max_band).or_else(|| {
                    let c = node_count(req, t);
                    (c < range.0 || c > range.1).then_some(Filter::NodeCount)
                })
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_range_widens_only_over_holes_and_not_far() {
        assert_eq!(effective_range((5, 5), &[4, 5, 6]), (5, 5));
        assert_eq!(effective_range((5, 5), &[3, 6, 8]), (4, 6));
        assert_eq!(effective_range((5, 5), &[3, 8]), (3, 7));
        assert_eq!(
            effective_range((5, 5), &[1, 9]),
            (5, 5),
            "at most 2 steps for a range starting at 5"
        );
        assert_eq!(
            effective_range((3, 4), &[1]),
            (3, 4),
            "fault tolerance never becomes one node"
        );
        assert_eq!(effective_range((3, 4), &[2]), (2, 5));
        assert_eq!(effective_range((1, 1), &[2]), (1, 2));
        assert_eq!(effective_range((2, 2), &[]), (2, 2));
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
