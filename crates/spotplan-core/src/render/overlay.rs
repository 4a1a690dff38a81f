//! Karpenter `karpenter.sh/v1alpha1` NodeOverlay specs: one per premium level of a NodePool
//! ([`crate::policy::pricing`]), each pinned to that NodePool and to spot offerings.

use super::{LABEL_CAPACITY_TYPE, LABEL_INSTANCE_TYPE};
use crate::policy::pricing::{Level, Pricing};
use serde_json::{Value, json};

/// The label Karpenter matches an overlay's NodePool by.
pub const LABEL_NODEPOOL: &str = "karpenter.sh/nodepool";
/// The zone of an offering.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// Weight of a type level. A NodePool's type levels never share a type, so they never conflict
/// with each other; a user's overlay of the same weight over the same offerings does (Karpenter
/// reports it in both overlays' status), and one of a higher weight wins.
pub const TYPE_LEVEL_WEIGHT: i32 = 20;
/// Weight of a zone level: above the type levels, so the zone's premium replaces the type's
/// there. Zone levels never share a (type, zone).
pub const ZONE_LEVEL_WEIGHT: i32 = 21;

/// The name of a NodePool's overlay: `<pool>-risk-<n>` for type levels, `<pool>-risk-z<n>` for
/// zone levels (a NodePool name is at most 63 characters, so this stays well inside 253).
pub fn overlay_name(pool: &str, zone_level: bool, n: usize) -> String {
    if zone_level {
        format!("{pool}-risk-z{n}")
    } else {
        format!("{pool}-risk-{n}")
    }
}

/// The spec of one overlay: `pool` only, spot offerings only, the level's types (and zones).
pub fn overlay_spec(pool: &str, level: &Level) -> Value {
    let mut requirements = vec![
        json!({"key": LABEL_NODEPOOL, "operator": "In", "values": [pool]}),
        json!({"key": LABEL_CAPACITY_TYPE, "operator": "In", "values": ["spot"]}),
        json!({"key": LABEL_INSTANCE_TYPE, "operator": "In", "values": level.types}),
    ];
    if !level.zones.is_empty() {
        requirements.push(json!({"key": LABEL_ZONE, "operator": "In", "values": level.zones}));
    }
    let weight = if level.zones.is_empty() {
        TYPE_LEVEL_WEIGHT
    } else {
        ZONE_LEVEL_WEIGHT
    };
    json!({
        "requirements": requirements,
        "priceAdjustment": level.adjustment(),
        "weight": weight,
    })
}

/// Every overlay of a NodePool: (name, spec), type levels then zone levels.
pub fn overlay_specs(pool: &str, pricing: &Pricing) -> Vec<(String, Value)> {
    let types = pricing
        .type_levels
        .iter()
        .enumerate()
        .map(|(i, l)| (overlay_name(pool, false, i), overlay_spec(pool, l)));
    let zones = pricing
        .zone_levels
        .iter()
        .enumerate()
        .map(|(i, l)| (overlay_name(pool, true, i), overlay_spec(pool, l)));
    types.chain(zones).collect()
}
