//! The SpotPlan status: what the controller last did for a plan. Written by the controller only
//! (server-side apply of the status subresource).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the controller last did for a SpotPlan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpotPlanStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, DataFresh, Suspended, NarrowingDeferred; each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The current plan: ranked instance types with band, savings and prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStatus>,
    /// NodePools written for this plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_pools: Vec<String>,
    /// The instance types in the NodePools (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<String>,
    /// Risk pricing: the NodeOverlays written and the premiums in force (condition RiskPricing
    /// says whether it applies and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_pricing: Option<RiskPricingStatus>,
    /// When the Spot Advisor data behind the plan was fetched (or its file modified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_timestamp: Option<Time>,
    /// Every market data source behind the plan, with its age and whether it is fresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_sources: Vec<DataSourceStatus>,
    /// When the price data behind the plan was fetched (or its file modified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices_timestamp: Option<Time>,
    /// The spec generation the NodePools were last written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_pool_generation: Option<i64>,
    /// When market data last narrowed the instance-type list (a type removed, nodes replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_narrowed: Option<Time>,
    /// When the list was last written fresh from the spec (created, or the spec changed). The
    /// next narrowing waits `minNarrowInterval` after the later of this and `lastNarrowed`, and
    /// the narrowing to the mode's default band cap the controller's --settle-over-default-cap
    /// (120 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_written_fresh: Option<Time>,
    /// Written types over the plan's interruption ceiling (or without a band now), since when.
    /// Over a `maxInterruptionBand` you set, a type is removed once it has stayed over for the
    /// controller's --confirm-over-ceiling (7 days); over a mode's default cap, at the next
    /// settle (see `lastNarrowed`). A type back within the ceiling is forgotten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_ceiling: Vec<OverCeiling>,
    /// Spot interruptions of the plan's NodeClaims per instance type and zone, counted from
    /// Karpenter's SpotInterrupted events over the last max(window, calm, 3 days) ("unknown" when
    /// the NodeClaim was gone before the controller started).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed_interruptions: Vec<ObservedInterruption>,
    /// The interruptions behind those counts, one per NodeClaim (the record that survives a
    /// restart and deduplicates repeated events): the newest 500.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interruption_log: Vec<LoggedInterruption>,
    /// Interruptions the log's limit pushed out, counted per instance type and zone (included in
    /// `observedInterruptions`); a count leaves once its newest interruption is past the memory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interruptions_beyond_log: Vec<ObservedInterruption>,
    /// The last interruption the log's limit pushed out: Events at or before it that the log does
    /// not hold were counted already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption_log_trimmed_through: Option<LogMark>,
    /// Where new capacity goes: absent on spot; Shifted (on-demand) or Returning (spot again,
    /// the shift's on-demand nodes moving back), since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<ShiftStatus>,
    /// Types left out of the list after repeated interruptions in one zone, until calm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demoted_instance_types: Vec<String>,
    /// When the last shift ended: the interruptions before it do not count toward the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_returned_to_spot: Option<Time>,
    /// Launches of the plan's NodeClaims that failed for want of capacity (Karpenter's
    /// InsufficientCapacityError), per instance type and zone ("unknown" when the NodeClaim
    /// allowed several), over the same memory as `observedInterruptions`. Recorded, not acted
    /// on: Karpenter already skips an offering that ran out for a few minutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed_launch_failures: Vec<ObservedInterruption>,
    /// The launch failures behind those counts, one per NodeClaim: the newest 500.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launch_failure_log: Vec<LoggedInterruption>,
    /// Launch failures the log's limit pushed out, per instance type and zone (included in
    /// `observedLaunchFailures`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launch_failures_beyond_log: Vec<ObservedInterruption>,
    /// The last launch failure the log's limit pushed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_failure_log_trimmed_through: Option<LogMark>,
    /// Rebalance recommendations for the plan's spot NodeClaims (Karpenter's
    /// SpotRebalanceRecommendation events), per instance type and zone, over the same memory as
    /// `observedInterruptions`. They price a (type, zone) a little dearer in Karpenter's choice
    /// (`riskPricing.zonePremiums`); they never shift the plan or drain a node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed_rebalances: Vec<ObservedInterruption>,
    /// The rebalance recommendations behind those counts, one per NodeClaim: the newest 500.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebalance_log: Vec<LoggedInterruption>,
    /// Rebalance recommendations the log's limit pushed out, per instance type and zone
    /// (included in `observedRebalances`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebalances_beyond_log: Vec<ObservedInterruption>,
    /// The last rebalance recommendation the log's limit pushed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance_log_trimmed_through: Option<LogMark>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedInterruption {
    pub instance_type: String,
    pub zone: String,
    pub count: i32,
    pub last_seen: Time,
}

/// A place in a log: a time and the NodeClaim's uid.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogMark {
    pub at: Time,
    pub node_claim_uid: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedInterruption {
    pub node_claim_uid: String,
    pub instance_type: String,
    pub zone: String,
    pub at: Time,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShiftStatus {
    /// Shifted or Returning.
    pub posture: String,
    pub since: Time,
}

/// A written type over its plan's interruption ceiling.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverCeiling {
    pub name: String,
    pub since: Time,
}

/// The interruption ceiling every listed type is within.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CeilingStatus {
    /// Highest Spot Advisor band (0..4) of a listed type; absent: any, types without a band
    /// included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<i32>,
    /// user (spec.maxInterruptionBand), mode (the mode's default cap), or relaxed (the mode's
    /// default relaxed because it left fewer than minTypes types; the notes say so).
    pub source: String,
}

/// One market data source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceStatus {
    /// spot-advisor, price-file, spot-price-history, price-list, instance-types,
    /// instance-type-offerings.
    pub source: String,
    /// The region, for AWS sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The file, URL or API call.
    pub location: String,
    /// When our copy was fetched (or its file modified); absent when none could be had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<Time>,
    /// The date the data is from, where its name says (e.g. 2025-06-28).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dated: Option<String>,
    /// False when its last refresh failed or it is too old.
    pub fresh: bool,
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// The primary (first-ranked) instance type.
    pub primary: String,
    /// Instances of the primary type needed.
    pub primary_count: i32,
    /// How the list was ranked: risk_adjusted_cost, cost, or band_savings_waste (no prices).
    pub ranking: String,
    /// The interruption ceiling every listed type is within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption_ceiling: Option<CeilingStatus>,
    /// Number of instance types in the plan.
    pub type_count: i32,
    /// Spot $/h of the whole request on the primary type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_spot_usd_per_hour: Option<f64>,
    /// On-demand $/h of the same capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_on_demand_usd_per_hour: Option<f64>,
    /// Savings of spot over on-demand, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savings_pct: Option<f64>,
    /// Eligible types the Spot Advisor has no band for (ranked as band 4).
    #[serde(default)]
    pub unknown_band_types: i32,
    /// The ranked list.
    pub instance_types: Vec<RankedType>,
    /// Remarks: fewer types than wanted, missing prices, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Spot placement scores (1-10) per zone for the plan's top types and size, best first,
    /// when the controller runs with --placement-scores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_scores: Vec<ZoneScoreStatus>,
}

/// A zone's spot placement score.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct ZoneScoreStatus {
    pub zone: String,
    pub score: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RankedType {
    pub rank: i32,
    pub name: String,
    /// Instances of this type that meet the request alone.
    pub count: i32,
    /// Spot Advisor band 0..4; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<i32>,
    /// <5%, 5-10%, 10-15%, 15-20%, >20%, or unknown.
    pub interruption: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savings_pct: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_usd_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_usd_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_spot_usd_per_hour: Option<f64>,
    /// The request's spot $/h as ranked: with the mode's premium for the band
    /// (risk_adjusted_cost), or plain (cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranked_usd_per_hour: Option<f64>,
    /// The mode's premium for the band, percent (risk_adjusted_cost only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_premium_pct: Option<i32>,
}

/// The premiums spotplan asks Karpenter to add to the spot NodePool's prices.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskPricingStatus {
    /// The NodeOverlays written for the spot NodePool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<String>,
    /// Whether Karpenter's adjusted prices order the types exactly as the plan ranks them.
    pub exact_order: bool,
    /// Each listed type's adjustment, in the order Karpenter is asked to prefer them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<TypePremium>,
    /// (type, zone) premiums learned from the plan's own nodes, in force until `until`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zone_premiums: Vec<ZonePremiumStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypePremium {
    pub name: String,
    /// Karpenter's priceAdjustment, e.g. +12%.
    pub price_adjustment: String,
    /// Kept in the list by the churn rule though no longer planned: priced last.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZonePremiumStatus {
    pub instance_type: String,
    pub zone: String,
    /// The adjustment in that zone (the type's plus the learned premium).
    pub price_adjustment: String,
    /// Interruptions and launch failures within the calm period.
    pub interruptions: i32,
    /// Rebalance recommendations within the calm period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rebalances: i32,
    pub until: Time,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}
