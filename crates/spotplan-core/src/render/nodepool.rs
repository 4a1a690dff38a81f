//! Karpenter `karpenter.sh/v1` NodePool specs: a plan's instance-type list, capacity types and
//! the user's pass-through settings.

use crate::types::Arch;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const LABEL_CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
/// Karpenter's label value limit applies to NodePool names (karpenter.sh/nodepool on nodes).
pub const MAX_NAME: usize = 63;
/// Default NodePool weight of the spot NodePool; the on-demand base gets one more.
pub const DEFAULT_WEIGHT: i64 = 10;

/// Capacity types a NodePool allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityTypes {
    Spot,
    SpotWithOnDemandFallback,
    OnDemand,
}

impl CapacityTypes {
    fn values(self) -> Vec<&'static str> {
        match self {
            CapacityTypes::Spot => vec!["spot"],
            CapacityTypes::SpotWithOnDemandFallback => vec!["on-demand", "spot"],
            CapacityTypes::OnDemand => vec!["on-demand"],
        }
    }
}

/// Everything a NodePool is built from. `passthrough` fields are the user's Karpenter settings
/// (already JSON), copied as they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodePoolSettings {
    pub node_class_ref: Value,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub startup_taints: Vec<Value>,
    /// Extra requirements (never instance type, capacity type or arch).
    pub requirements: Vec<Value>,
    pub disruption: Option<Value>,
    pub limits: Option<Value>,
    pub expire_after: Option<String>,
    pub termination_grace_period: Option<String>,
}

/// The Drifted budget spotplan adds when the user gives none: narrowing a list makes nodes drift,
/// so replace them one at a time; 10% at a time for everything else (Karpenter's default).
pub fn default_disruption() -> Value {
    json!({"consolidateAfter": "0s", "budgets": [{"nodes": "10%"}, {"nodes": "1", "reasons": ["Drifted"]}]})
}

/// `minValues` for the instance-type requirement: enough to make Karpenter keep several types
/// in play, and well below the list's length, so insufficient-capacity errors (which hide a type
/// and zone for minutes) do not make it unsatisfiable. None below 6 types.
pub fn min_values(types: usize) -> Option<i64> {
    (types >= 6).then(|| (types / 3).min(5) as i64)
}

/// A NodePool name from a base name and a suffix, within 63 characters: long names are cut and
/// get a short hash so two long plans never collide.
pub fn nodepool_name(base: &str, suffix: &str) -> String {
    let full = if suffix.is_empty() {
        base.to_string()
    } else {
        format!("{base}-{suffix}")
    };
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = super::stable_hash(full.bytes());
    let tail = format!("-{:08x}", hash as u32);
    let keep = MAX_NAME
        - tail.len()
        - if suffix.is_empty() {
            0
        } else {
            suffix.len() + 1
        };
    let cut = base[..keep.min(base.len())].trim_end_matches('-');
    if suffix.is_empty() {
        format!("{cut}{tail}")
    } else {
        format!("{cut}-{suffix}{tail}")
    }
}

/// Builds the spec of one NodePool offering `types` (any order; written sorted, since Karpenter
/// treats the values as a set).
pub fn nodepool_spec(
    types: &[String],
    archs: &[Arch],
    capacity: CapacityTypes,
    plan_label: (&str, &str),
    settings: &NodePoolSettings,
    weight: i64,
    limits: Option<Value>,
) -> Value {
    let mut values: Vec<&str> = types.iter().map(String::as_str).collect();
    values.sort_unstable();
    values.dedup();
    let mut type_req = json!({"key": LABEL_INSTANCE_TYPE, "operator": "In", "values": values});
    if let Some(m) = min_values(values.len()) {
        type_req["minValues"] = json!(m);
    }
    let mut arch_values: Vec<&str> = archs.iter().map(|a| a.as_str()).collect();
    arch_values.sort_unstable();
    arch_values.dedup();
    let mut requirements = vec![
        type_req,
        json!({"key": LABEL_CAPACITY_TYPE, "operator": "In", "values": capacity.values()}),
        json!({"key": LABEL_ARCH, "operator": "In", "values": arch_values}),
    ];
    requirements.extend(settings.requirements.iter().cloned());

    let mut labels = settings.labels.clone();
    labels.insert(plan_label.0.to_string(), plan_label.1.to_string());
    let mut template_meta = json!({"labels": labels});
    if !settings.annotations.is_empty() {
        template_meta["annotations"] = json!(settings.annotations);
    }
    let mut tspec = json!({"nodeClassRef": settings.node_class_ref, "requirements": requirements});
    if !settings.taints.is_empty() {
        tspec["taints"] = json!(settings.taints);
    }
    if !settings.startup_taints.is_empty() {
        tspec["startupTaints"] = json!(settings.startup_taints);
    }
    if let Some(e) = &settings.expire_after {
        tspec["expireAfter"] = json!(e);
    }
    if let Some(t) = &settings.termination_grace_period {
        tspec["terminationGracePeriod"] = json!(t);
    }
    let mut disruption = settings
        .disruption
        .clone()
        .unwrap_or_else(default_disruption);
    if disruption.get("budgets").is_none() {
        disruption["budgets"] = default_disruption()["budgets"].clone();
    }
    // Karpenter requires consolidateAfter once a disruption block is given; "0s" is its default.
    if disruption.get("consolidateAfter").is_none() {
        disruption["consolidateAfter"] = json!("0s");
    }
    let mut spec = json!({
        "weight": weight,
        "disruption": disruption,
        "template": {"metadata": template_meta, "spec": tspec},
    });
    if let Some(l) = limits {
        spec["limits"] = l;
    }
    spec
}

/// True when every field of `want` is present in `have` with the same value. Objects may have
/// more keys in `have` (defaults the API server fills in); arrays must match element for element,
/// except where `unordered_superset` says `have` may hold more (owner references).
pub fn json_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, wv)| {
            h.get(k).is_some_and(|hv| {
                if k == "ownerReferences" {
                    match (wv, hv) {
                        (Value::Array(wa), Value::Array(ha)) => {
                            wa.iter().all(|x| ha.iter().any(|y| json_subset(x, y)))
                        }
                        _ => false,
                    }
                } else {
                    json_subset(wv, hv)
                }
            })
        }),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| json_subset(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == have,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NodePoolSettings {
        NodePoolSettings {
            node_class_ref: json!({"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}),
            ..Default::default()
        }
    }

    #[test]
    fn spot_nodepool_has_sorted_types_min_values_and_plan_label() {
        let types: Vec<String> = [
            "m7i.8xlarge",
            "c7g.16xlarge",
            "m6a.8xlarge",
            "r7a.8xlarge",
            "m7g.8xlarge",
            "c6i.16xlarge",
            "m5.8xlarge",
        ]
        .map(String::from)
        .to_vec();
        let spec = nodepool_spec(
            &types,
            &[Arch::Arm64, Arch::Amd64],
            CapacityTypes::Spot,
            ("spotplan.dev/plan", "web"),
            &settings(),
            10,
            None,
        );
        let reqs = spec["template"]["spec"]["requirements"].as_array().unwrap();
        let values: Vec<&str> = reqs[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut sorted = values.clone();
        sorted.sort();
        assert_eq!(values, sorted);
        assert_eq!(reqs[0]["minValues"], 2);
        assert_eq!(reqs[1]["values"], json!(["spot"]));
        assert_eq!(reqs[2]["values"], json!(["amd64", "arm64"]));
        assert_eq!(
            spec["template"]["metadata"]["labels"]["spotplan.dev/plan"],
            "web"
        );
        assert_eq!(spec["disruption"], default_disruption());
        assert!(
            spec.get("limits").is_none(),
            "resources never set limits by themselves"
        );
    }

    #[test]
    fn min_values_stay_well_below_the_list() {
        assert_eq!(min_values(5), None);
        assert_eq!(min_values(6), Some(2));
        assert_eq!(min_values(20), Some(5));
        for n in 6..=100 {
            assert!(min_values(n).unwrap() * 3 <= n as i64);
        }
    }

    #[test]
    fn names_fit_63_characters() {
        assert_eq!(nodepool_name("web", ""), "web");
        assert_eq!(nodepool_name("web", "on-demand"), "web-on-demand");
        let long = "a".repeat(55);
        let n = nodepool_name(&long, "on-demand");
        assert!(n.len() <= 63 && n.contains("-on-demand-"), "{n}");
        assert_ne!(n, nodepool_name(&"a".repeat(54), "on-demand"));
    }

    #[test]
    fn subset_ignores_server_defaults_but_not_edits() {
        let want = json!({"spec": {"weight": 10, "template": {"spec": {"requirements": [{"key": "a", "values": ["x"]}]}}}});
        let live = json!({"spec": {"weight": 10, "disruption": {"consolidateAfter": "0s"}, "template": {"spec": {"requirements": [{"key": "a", "operator": "In", "values": ["x"]}]}}}});
        assert!(json_subset(&want, &live));
        let edited = json!({"spec": {"weight": 10, "template": {"spec": {"requirements": [{"key": "a", "values": ["x", "y"]}]}}}});
        assert!(!json_subset(&want, &edited));
        let owners = json!({"metadata": {"ownerReferences": [{"uid": "1"}]}});
        let more = json!({"metadata": {"ownerReferences": [{"uid": "0"}, {"uid": "1"}]}});
        assert!(json_subset(&owners, &more));
    }
}
