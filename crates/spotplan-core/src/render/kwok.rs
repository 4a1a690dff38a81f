//! The instance-types file of Karpenter's kwok cloud provider (`INSTANCE_TYPES_FILE_PATH`), so
//! plans can be tried against real Karpenter without AWS.

use super::nodepool::LABEL_CAPACITY_TYPE;
use crate::catalog::RegionId;
use crate::market::MarketData;
use serde_json::{Value, json};

/// Every catalog type offered in `region` that supports spot, with its vCPUs, memory and
/// architecture, and a spot and an on-demand offering per zone at the market's prices. Types
/// without any price are left out (Karpenter needs one to choose). Lets real Karpenter choose
/// among the whole catalog, not only a plan's list.
pub fn kwok_instance_types(market: &MarketData, region: RegionId) -> Value {
    let catalog = market.catalog();
    let quotes = market.quotes(region);
    let mut out = Vec::new();
    for (i, t) in catalog.types().iter().enumerate() {
        let Some(arch) = t.arch() else { continue };
        if !t.spot || !t.offered_in(region) {
            continue;
        }
        let q = quotes[i];
        let mut offerings = Vec::new();
        for zone in catalog.zones_of(t, region) {
            for (capacity, price) in [("spot", q.spot), ("on-demand", q.on_demand)] {
                if let Some(p) = price {
                    offerings.push(json!({
                        "Price": p,
                        "Available": true,
                        "Requirements": [
                            {"key": LABEL_CAPACITY_TYPE, "operator": "In", "values": [capacity]},
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
                        ],
                    }));
                }
            }
        }
        if offerings.is_empty() {
            continue;
        }
        out.push(json!({
            "name": t.name,
            "architecture": arch.as_str(),
            "operatingSystems": ["linux"],
            "resources": {
                "cpu": t.vcpus.to_string(),
                "memory": format!("{}Mi", t.memory_mib),
                "ephemeral-storage": "20Gi",
                "pods": "110",
            },
            "offerings": offerings,
        }));
    }
    Value::Array(out)
}
