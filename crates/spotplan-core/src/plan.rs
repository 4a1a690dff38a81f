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
    /// The request's spot $/h as the ranking saw it: times the mode's premium for the type's
    /// band (`risk_adjusted_cost`), or plain (`cost`); None without prices.
    pub ranked_usd_per_hour: Option<f64>,
    /// The mode's premium for the type's band, percent (`risk_adjusted_cost` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band_premium_pct: Option<u32>,
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
    /// The best spot placement score (1-10) among the type's zones, when scores were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement_score: Option<u8>,
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

/// Where the interruption ceiling a plan was made under came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CeilingSource {
    /// The request's own ceiling (`--max-interruption-band`, `spec.maxInterruptionBand`): hard.
    User,
    /// The mode's default cap ([`crate::types::Mode::default_band_cap`]).
    Mode,
    /// The mode's default, relaxed one band at a time because it left fewer types than
    /// `minTypes`.
    Relaxed,
}

/// The interruption ceiling every listed type is within.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ceiling {
    /// Highest band a listed type may have; `None`: any, types without a band included.
    pub band: Option<u8>,
    pub source: CeilingSource,
}

impl Ceiling {
    /// Whether a type of `band` (None: no Spot Advisor band) is within this ceiling.
    pub fn admits(&self, band: Option<u8>) -> bool {
        match self.band {
            None => true,
            Some(max) => band.is_some_and(|b| b <= max),
        }
    }
}

/// The plan for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub region: String,
    pub mode: Mode,
    pub vcpus: u32,
    pub memory_gib: f64,
    /// Node-count range a type had to land in: the mode's, widened when fewer than
    /// `minTypes` types land in it.
    pub node_count_range: (u32, u32),
    /// The mode's own node-count range (spot-optimizer's).
    pub mode_node_count_range: (u32, u32),
    pub ranking: Ranking,
    /// The interruption ceiling every listed type is within.
    pub interruption_ceiling: Ceiling,
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
    /// Spot placement scores per zone (best first), when asked for (`--placement-scores`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub placement_scores: Vec<ZoneScore>,
}

/// A spot placement score (1-10) of one zone, for the plan's types and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneScore {
    pub zone: String,
    pub score: u8,
}

/// Candidates whose costs are within this share of each other are near-tied: placement scores
/// order them.
pub const NEAR_TIE: f64 = 0.02;

impl Plan {
    pub fn primary(&self) -> &Candidate {
        &self.candidates[0]
    }

    /// Uses spot placement scores (zone -> 1..10, for the plan's types and size): zones are
    /// listed best first, each candidate gets the best score among its zones, and near-tied
    /// candidates (total spot $/h within [`NEAR_TIE`] of the one before) are ordered by that
    /// score, so a type offered in zones where spot capacity is likelier comes first. Costs
    /// further apart keep their order: a score never buys a dearer plan.
    pub fn apply_placement_scores(&mut self, scores: &[(String, u8)]) {
        let mut zs: Vec<ZoneScore> = scores
            .iter()
            .map(|(zone, score)| ZoneScore {
                zone: zone.clone(),
                score: *score,
            })
            .collect();
        zs.sort_by(|a, b| b.score.cmp(&a.score).then(a.zone.cmp(&b.zone)));
        let score_of = |z: &str| zs.iter().find(|s| s.zone == z).map(|s| s.score);
        for c in &mut self.candidates {
            c.zones
                .sort_by_key(|z| std::cmp::Reverse(score_of(z).unwrap_or(0)));
            c.placement_score = c.zones.iter().filter_map(|z| score_of(z)).max();
        }
        // Stable passes over runs of near-tied neighbours.
        let near = |a: &Candidate, b: &Candidate| match (
            a.total_spot_usd_per_hour,
            b.total_spot_usd_per_hour,
        ) {
            (Some(x), Some(y)) => (y - x).abs() <= NEAR_TIE * x.min(y),
            _ => false,
        };
        let mut start = 0;
        while start < self.candidates.len() {
            let mut end = start + 1;
            while end < self.candidates.len()
                && near(&self.candidates[end - 1], &self.candidates[end])
            {
                end += 1;
            }
            self.candidates[start..end]
                .sort_by_key(|c| std::cmp::Reverse(c.placement_score.unwrap_or(0)));
            start = end;
        }
        for (i, c) in self.candidates.iter_mut().enumerate() {
            c.rank = i + 1;
        }
        self.placement_scores = zs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, cost: f64, zones: &[&str]) -> Candidate {
        Candidate {
            rank: 0,
            instance_type: name.into(),
            family: name.split('.').next().unwrap().into(),
            generation: 7,
            arch: Arch::Amd64,
            vcpus: 8,
            memory_gib: 32.0,
            count: 1,
            total_vcpus: 8,
            total_memory_gib: 32.0,
            interruption_band: Some(0),
            interruption_label: "<5%",
            savings_pct: None,
            spot_usd_per_hour: Some(cost),
            spot_price_source: PriceFrom::File,
            on_demand_usd_per_hour: None,
            on_demand_price_source: PriceFrom::None,
            total_spot_usd_per_hour: Some(cost),
            total_on_demand_usd_per_hour: None,
            ranked_usd_per_hour: Some(cost),
            band_premium_pct: None,
            cpu_waste_pct: 0.0,
            memory_waste_pct: 0.0,
            waste_pct: 0.0,
            local_ssd: false,
            gpus: 0,
            zones: zones.iter().map(|z| z.to_string()).collect(),
            zone_spot_usd_per_hour: vec![],
            placement_score: None,
        }
    }

    #[test]
    fn placement_scores_order_zones_and_break_only_near_ties() {
        let mut plan = Plan {
            region: "us-east-1".into(),
            mode: Mode::Balanced,
            vcpus: 8,
            memory_gib: 32.0,
            node_count_range: (1, 1),
            mode_node_count_range: (1, 1),
            ranking: Ranking::Cost,
            interruption_ceiling: Ceiling {
                band: Some(2),
                source: CeilingSource::User,
            },
            candidates: vec![
                cand("a.xl", 1.00, &["z1"]),
                cand("b.xl", 1.01, &["z1", "z2"]),
                cand("c.xl", 1.50, &["z2"]),
            ],
            totals: Totals {
                spot_usd_per_hour: Some(1.0),
                on_demand_usd_per_hour: None,
                savings_pct: None,
            },
            catalog_types: 3,
            eligible_types: 3,
            filters: vec![],
            unknown_band_types: 0,
            has_prices: true,
            unpriced_types: 0,
            estimated_spot_prices: 0,
            diversity: Diversity {
                types: 3,
                families: 3,
                generations: 1,
                min_types: 1,
                meets_min_types: true,
            },
            notes: vec![],
            placement_scores: vec![],
        };
        plan.apply_placement_scores(&[("z1".into(), 3), ("z2".into(), 9)]);
        let order: Vec<&str> = plan
            .candidates
            .iter()
            .map(|c| c.instance_type.as_str())
            .collect();
        assert_eq!(
            order,
            ["b.xl", "a.xl", "c.xl"],
            "1% apart is a tie; 50% is not"
        );
        assert_eq!(plan.candidates[0].zones, ["z2", "z1"]);
        assert_eq!(plan.candidates[0].placement_score, Some(9));
        assert_eq!(plan.candidates[0].rank, 1);
        assert_eq!(plan.placement_scores[0].zone, "z2");
    }
}
