//! The optimizer's output: a ranked, diversified list of instance types and how it was reached.

use crate::market::PriceFrom;
use crate::types::{Arch, Mode};
use serde::Serialize;

/// One instance type in a plan. Each candidate can meet the request on its own with `count`
/// instances.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// 1-based position in the ranking.
    pub rank: usize,
    #[serde(rename = "type")]
    pub instance_type: String,
    pub family: String,
    pub generation: u8,
    pub arch: Arch,
    pub vcpus: u32,
    pub memory_gib: f64,
    /// Instances of this type needed: `max(ceil(vcpus/type_vcpus), ceil(memory/type_memory))`.
    pub count: u32,
    pub total_vcpus: u64,
    pub total_memory_gib: f64,
    /// Spot Advisor band index 0..4; `None` when the advisor has no entry (ranked as 4).
    pub interruption_band: Option<u8>,
    pub interruption_label: &'static str,
    /// Savings over on-demand, percent.
    pub savings_pct: Option<i32>,
    /// Spot $/h of one instance: live (the median over the zones quoting it), from the price
    /// file, or estimated (on-demand x (1 - savings %)); `spot_price_source` says which.
    pub spot_usd_per_hour: Option<f64>,
    pub spot_price_source: PriceFrom,
    pub on_demand_usd_per_hour: Option<f64>,
    pub on_demand_price_source: PriceFrom,
    pub total_spot_usd_per_hour: Option<f64>,
    pub total_on_demand_usd_per_hour: Option<f64>,
    /// Share of the provisioned vCPUs not requested, percent.
    pub cpu_waste_pct: f64,
    /// Share of the provisioned memory not requested, percent.
    pub memory_waste_pct: f64,
    /// Mean of the two above.
    pub waste_pct: f64,
    pub local_ssd: bool,
    pub gpus: u32,
    /// The availability zones where the type is offered.
    pub zones: Vec<String>,
    /// Live spot $/h per zone, when known.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zone_spot_usd_per_hour: Vec<ZonePrice>,
}

/// A spot price in one zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZonePrice {
    pub zone: String,
    pub spot_usd_per_hour: f64,
}

/// How the list was ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// No interruption ceiling set: spot $/h for the request times the mode's premium per band.
    RiskAdjustedCost,
    /// A ceiling is set: the cheapest spot $/h for the request within it.
    Cost,
    /// No prices for the region: band, then savings, then waste (spot-optimizer's order).
    BandSavingsWaste,
}

/// How many candidates one filter removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterStat {
    pub filter: &'static str,
    pub removed: usize,
    /// Candidates left after this filter.
    pub remaining: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diversity {
    pub types: usize,
    pub families: usize,
    pub generations: usize,
    /// The request's minimum number of distinct types.
    pub min_types: usize,
    pub meets_min_types: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// Spot $/h of the whole request on the primary pick.
    pub spot_usd_per_hour: Option<f64>,
    /// On-demand $/h of the same capacity.
    pub on_demand_usd_per_hour: Option<f64>,
    pub savings_pct: Option<f64>,
}

/// The plan for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub region: String,
    pub mode: Mode,
    pub vcpus: u32,
    pub memory_gib: f64,
    /// Node-count range a type had to land in: the mode's, widened when no type fit it.
    pub node_count_range: (u32, u32),
    /// The mode's own node-count range (spot-optimizer's).
    pub mode_node_count_range: (u32, u32),
    pub ranking: Ranking,
    /// Ranked, diversified; the first is the primary pick.
    pub candidates: Vec<Candidate>,
    pub totals: Totals,
    /// Types in the catalog before filtering.
    pub catalog_types: usize,
    /// Types that passed every filter (the list is drawn from these).
    pub eligible_types: usize,
    pub filters: Vec<FilterStat>,
    /// Eligible types the Spot Advisor has no band for, ranked as band 4.
    pub unknown_band_types: usize,
    /// Whether any price was known for the region.
    pub has_prices: bool,
    /// Listed types without a price (ranked after the priced ones).
    pub unpriced_types: usize,
    /// Listed types whose spot price is estimated from on-demand and savings.
    pub estimated_spot_prices: usize,
    pub diversity: Diversity,
    /// Plain-language remarks: fewer types than wanted, missing data, and so on.
    pub notes: Vec<String>,
}

impl Plan {
    pub fn primary(&self) -> &Candidate {
        &self.candidates[0]
    }
}
