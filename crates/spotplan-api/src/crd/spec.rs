//! The SpotPlan spec (`spotplan.dev/v1alpha1`). Doc comments here become the CRD's
//! descriptions, which `kubectl explain spotplan.spec` shows: they are written for users.

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use spotplan_core::limits;
use std::collections::BTreeMap;

use super::status::SpotPlanStatus;

/// A workload's capacity request, turned by the controller into Karpenter NodePools that offer
/// a ranked, diversified list of EC2 Spot instance types.
// clippy reads the `type_ = "string"` of two printcolumns as one attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "spotplan.dev",
    version = "v1alpha1",
    kind = "SpotPlan",
    plural = "spotplans",
    shortname = "sp",
    category = "spotplan",
    status = "SpotPlanStatus",
    derive = "PartialEq",
    doc = "SpotPlan: the capacity a workload needs, planned onto EC2 Spot instance types and written into Karpenter NodePools that spotplan owns.",
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "CPU", type_ = "string", json_path = ".spec.resources.cpu"),
    printcolumn(
        name = "Memory",
        type_ = "string",
        json_path = ".spec.resources.memory"
    ),
    printcolumn(
        name = "Types",
        type_ = "integer",
        json_path = ".status.plan.typeCount"
    ),
    printcolumn(name = "Primary", type_ = "string", json_path = ".status.plan.primary"),
    printcolumn(
        name = "Est. $/h",
        type_ = "number",
        json_path = ".status.plan.estimatedSpotUsdPerHour"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    crates(kube_core = "::kube_core"),
    validation = Rule::new("quantity(string(self.resources.cpu)).isGreaterThan(quantity('0'))").message("spec.resources.cpu must be greater than 0").field_path(".resources.cpu"),
    validation = Rule::new(format!("quantity(string(self.resources.cpu)).compareTo(quantity('{}')) <= 0", limits::MAX_VCPUS)).message(Message::Message(format!("spec.resources.cpu must be at most {} vCPUs: split larger workloads into several SpotPlans", limits::MAX_VCPUS))).field_path(".resources.cpu"),
    validation = Rule::new("quantity(string(self.resources.memory)).isGreaterThan(quantity('0'))").message("spec.resources.memory must be greater than 0").field_path(".resources.memory"),
    validation = Rule::new(format!("quantity(string(self.resources.memory)).compareTo(quantity('{}')) <= 0", limits::MAX_MEMORY_QUANTITY)).message(Message::Message(format!("spec.resources.memory must be at most {}: split larger workloads into several SpotPlans", limits::MAX_MEMORY_QUANTITY))).field_path(".resources.memory"),
    validation = Rule::new("!has(self.capacity) || !has(self.capacity.onDemandBase) || quantity(string(self.capacity.onDemandBase.cpu)).compareTo(quantity(string(self.resources.cpu))) <= 0").message("spec.capacity.onDemandBase.cpu must not exceed spec.resources.cpu"),
    validation = Rule::new("!has(self.minGeneration) || !has(self.maxGeneration) || self.minGeneration <= self.maxGeneration").message("spec.minGeneration must not exceed spec.maxGeneration"),
    validation = Rule::new("!has(self.minTypes) || !has(self.maxTypes) || self.minTypes <= self.maxTypes").message("spec.minTypes must not exceed spec.maxTypes"),
    validation = Rule::new("!has(self.capacity) || !has(self.capacity.onDemandBase) || !has(self.nodePool.weight) || self.nodePool.weight < 100").message("spec.nodePool.weight must be below 100 with an onDemandBase: the on-demand NodePool gets weight + 1"),
    validation = Rule::new("!has(self.capacity) || !has(self.capacity.onDemandShift) || !has(self.nodePool.weight) || self.nodePool.weight < 99").message("spec.nodePool.weight must be below 99 with an onDemandShift: the shift NodePool gets weight + 2"),
)]
#[serde(rename_all = "camelCase")]
pub struct SpotPlanSpec {
    /// AWS region the capacity runs in, e.g. us-east-1.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: String,
    /// Total resources the workload needs: sizes the plan (instance types and counts). It does not
    /// cap the NodePools; use nodePool.limits for that.
    pub resources: PlanResources,
    /// latency: few large nodes; balanced (default): a moderate number of mid-sized nodes;
    /// fault_tolerance: many small nodes, so one interruption takes out little capacity.
    #[serde(default)]
    pub mode: PlanMode,
    /// Only instance types with local SSD instance storage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssd_only: bool,
    /// Architectures to allow; default both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub architectures: Vec<PlanArch>,
    /// Only these instance families (e.g. m6i, c7g). Naming a family also admits its burstable,
    /// previous-generation or accelerator types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub instance_families: Vec<String>,
    /// Leave out these instance families.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub exclude_instance_families: Vec<String>,
    /// Only these instance types (e.g. m6i.4xlarge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub instance_types: Vec<String>,
    /// Leave out these instance types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub exclude_instance_types: Vec<String>,
    /// Only instance types this Amazon EMR release supports (e.g. emr-6.10.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emr_release: Option<String>,
    /// Highest acceptable Spot Advisor interruption band: 0 (<5%), 1 (5-10%), 2 (10-15%),
    /// 3 (15-20%), 4 (>20%). When set, types with no band are left out and the plan is the
    /// cheapest within the ceiling; when unset, the mode prices interruption risk in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = limits::MAX_BAND))]
    pub max_interruption_band: Option<i32>,
    /// GPUs per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<GpuSpec>,
    /// Lowest instance generation (the 6 in m6i).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = limits::MIN_GENERATION, max = limits::MAX_GENERATION))]
    pub min_generation: Option<i32>,
    /// Highest instance generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = limits::MIN_GENERATION, max = limits::MAX_GENERATION))]
    pub max_generation: Option<i32>,
    /// Allow burstable (t*) types.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_burstable: bool,
    /// Allow types AWS marks as previous generation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_previous_generation: bool,
    /// Allow GPU and other accelerator types without asking for GPUs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_accelerators: bool,
    /// Fewest distinct instance types wanted (default 15, what Karpenter's spot-to-spot
    /// consolidation needs); fewer is reported in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::MAX_TYPES))]
    pub min_types: Option<i32>,
    /// Most instance types to offer (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::MAX_TYPES))]
    pub max_types: Option<i32>,
    /// Spot only (default), spot with on-demand fallback, and/or an on-demand base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacitySpec>,
    /// What goes into the NodePools spotplan writes.
    pub node_pool: NodePoolTemplate,
    /// Freeze the plan: the NodePools stay exactly as they are until this is cleared.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Delete (default): deleting the SpotPlan deletes its NodePools (Karpenter then drains their
    /// nodes). Orphan: the NodePools stay.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Shortest time between two narrowings of the instance-type list driven by market data
    /// (narrowing makes Karpenter replace nodes). Default: the controller's flag, 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(s|m|h))+$"))]
    pub min_narrow_interval: Option<String>,
    /// Risk pricing: spotplan writes Karpenter NodeOverlays that add the plan's interruption
    /// premium to each type's price in Karpenter's own choice (and a (type, zone)'s learned
    /// premium after the plan's nodes were interrupted there), so Karpenter launches in the
    /// plan's order. Enabled or Disabled; unset: on when the cluster serves Karpenter's
    /// NodeOverlay (feature gate NodeOverlay=true), off otherwise. status.conditions
    /// RiskPricing says which applies and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_pricing: Option<RiskPricing>,
}

/// Whether spotplan prices risk into Karpenter's choice with NodeOverlays.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskPricing {
    Enabled,
    Disabled,
}

/// Total resources, as Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct PlanResources {
    /// vCPUs, e.g. "64" or "500m" (fractions round up to whole vCPUs); at most 65536.
    pub cpu: Quantity,
    /// Memory, e.g. 256Gi; at most 256Ti.
    pub memory: Quantity,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PlanMode {
    Latency,
    #[default]
    Balanced,
    FaultTolerance,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlanArch {
    Amd64,
    Arm64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Orphan,
}

/// A closed set of words, checked by a CEL rule rather than a schema enum: a value outside an
/// enum also makes the API server skip every CEL rule and say `<nil>: Invalid value: null: some
/// validation rules were not checked`; a CEL rule's own message is all the user sees.
macro_rules! closed_set {
    ($ty:ty, $field:literal, [$($value:literal),+]) => {
        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let values = [$($value),+];
                let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
                schemars::json_schema!({
                    "type": "string",
                    "maxLength": 32,
                    "x-kubernetes-validations": [{
                        "rule": format!("self in [{}]", quoted.join(", ")),
                        "message": format!("{} must be one of {}", $field, values.join(", ")),
                    }],
                })
            }
        }
    };
}

closed_set!(
    PlanMode,
    "spec.mode",
    ["latency", "balanced", "fault_tolerance"]
);
closed_set!(PlanArch, "spec.architectures", ["amd64", "arm64"]);
closed_set!(DeletionPolicy, "spec.deletionPolicy", ["Delete", "Orphan"]);
closed_set!(RiskPricing, "spec.riskPricing", ["Enabled", "Disabled"]);

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuSpec {
    /// GPUs per instance, at least.
    #[schemars(range(min = 1, max = limits::MAX_GPUS))]
    pub count: i32,
    /// NVIDIA, AMD, ... (any when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacitySpec {
    /// The spot NodePool also allows on-demand capacity: Karpenter falls back to on-demand when
    /// spot is short.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_demand_fallback: bool,
    /// An on-demand NodePool with a higher weight, limited to this much CPU, next to the spot one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_base: Option<OnDemandBase>,
    /// Shift new capacity to on-demand when the plan's spot nodes are interrupted often, and
    /// come back to spot when it is calm. Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_shift: Option<OnDemandShift>,
}

/// When at least `interruptions` of the plan's spot nodes are interrupted within `window`, new
/// capacity goes to an on-demand NodePool; once `calm` has passed without an interruption, spot
/// takes new capacity again and the shift's on-demand nodes move back to spot one at a time.
/// Unset fields take the defaults chosen by `spotplan backtest --simulate-interruptions`
/// (6 within 6h, calm 24h): `onDemandShift: {}` turns it on with all three.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct OnDemandShift {
    /// Interruptions within the window that shift the plan. Default 6.
    #[schemars(range(min = 1, max = 1000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruptions: Option<i32>,
    /// e.g. 30m. Default 6h.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(s|m|h))+$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Time without an interruption before the plan returns to spot, e.g. 2h. Default 24h.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(s|m|h))+$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calm: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct OnDemandBase {
    /// vCPUs of on-demand capacity (the NodePool's limits.cpu).
    pub cpu: Quantity,
}

/// Karpenter NodePool settings passed through to the NodePools spotplan owns. The
/// instance-type, capacity-type and architecture requirements are spotplan's own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
pub struct NodePoolTemplate {
    /// The node class, e.g. {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}.
    pub node_class_ref: NodeClassRef,
    /// Labels for the nodes (spotplan.dev/plan is added).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for the nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Taints for the nodes: reserve a plan's nodes for the workloads that tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints removed once the node is initialized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Further requirements (zones, instance categories, ...). Keys spotplan owns are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 90))]
    #[x_kube(validation = Rule::new("self.all(r, !(r.key in ['node.kubernetes.io/instance-type', 'karpenter.sh/capacity-type', 'kubernetes.io/arch']))").message("spec.nodePool.requirements: node.kubernetes.io/instance-type, karpenter.sh/capacity-type and kubernetes.io/arch are set by spotplan; use instanceTypes, capacity and architectures"))]
    pub requirements: Vec<Requirement>,
    /// Karpenter's disruption settings. Default: budgets that replace at most one node at a time
    /// for Drifted (narrowing a list makes nodes drift) and 10% otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown")]
    pub disruption: Option<serde_json::Value>,
    /// Caps on the spot NodePool (cpu, memory, nodes), each a quantity of at least 0.
    /// resources does not set them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "limits_schema")]
    pub limits: Option<BTreeMap<String, Quantity>>,
    /// NodePool weight 1..100 (default 10); the on-demand base NodePool gets weight + 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
    /// Node lifetime before Karpenter replaces it, e.g. 720h or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<String>,
    /// Longest drain before a node is forcibly terminated, e.g. 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<String>,
}

/// Limits: a few quantities (bounded, so their CEL rule stays within the API server's cost
/// budget), none negative.
fn limits_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 64
        },
        "x-kubernetes-validations": [{
            "rule": "self.all(k, isQuantity(string(self[k])) && !quantity(string(self[k])).isLessThan(quantity('0')))",
            "message": "spec.nodePool.limits: each limit must be a quantity of at least 0, e.g. cpu: \"1000\""
        }]
    })
}

fn preserve_unknown(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct NodeClassRef {
    /// e.g. karpenter.k8s.aws
    pub group: String,
    /// e.g. EC2NodeClass
    pub kind: String,
    /// e.g. default
    pub name: String,
}

/// A Karpenter requirement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requirement {
    pub key: String,
    /// In, NotIn, Exists, DoesNotExist, Gt, Lt.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_values: Option<i32>,
}
