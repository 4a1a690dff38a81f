//! EC2 Fleet, Spot Fleet and Auto Scaling group requests from a plan: spotplan decides what to
//! run, the fleet decides how to run it.
//!
//! Each request serializes to exactly the parameter names of its API (`CreateFleet`,
//! `RequestSpotFleet`, `CreateAutoScalingGroup`), so it can be fed to `aws ... --cli-input-json`
//! or an SDK unchanged. Capacity is in vCPU units: the target is the request's vCPUs, and a
//! type's weight is the vCPUs one node of it contributes toward the request: its vCPUs, or fewer
//! when its memory runs out first (see [`weight`]), so any mix the fleet launches to reach the
//! target covers both the vCPUs and the memory asked for. Overrides are one per (type, subnet or zone), in the plan's
//! rank order; when the plan has more than the API takes, the best types are kept and the
//! render says how many were left out.

use crate::plan::{Candidate, Plan};
use crate::types::UnknownValue;
use serde::Serialize;

/// Overrides an EC2 Fleet of type request or maintain takes, across launch templates.
pub const EC2_FLEET_MAX_OVERRIDES: usize = 300;
/// Launch specifications (overrides) a Spot Fleet takes (the Spot Fleet quota).
pub const SPOT_FLEET_MAX_OVERRIDES: usize = 50;
/// Instance types an Auto Scaling group takes.
pub const ASG_MAX_TYPES: usize = 40;
/// The default quota on one EC2 Fleet's or Spot Fleet's target capacity (in units; vCPUs here).
pub const FLEET_TARGET_QUOTA: u32 = 10_000;

/// The tag that names the plan a fleet was rendered from (and finds it again for `--apply`).
pub const PLAN_TAG: &str = "spotplan.dev/plan";
/// The tag with the fleet's own name.
pub const NAME_TAG: &str = "spotplan.dev/name";

/// A launch template, by ID (`lt-...`) or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchTemplate {
    #[serde(rename = "LaunchTemplateId", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "LaunchTemplateName", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "Version")]
    pub version: String,
}

impl LaunchTemplate {
    /// `lt-` followed by hex is an ID; anything else a name.
    pub fn parse(id_or_name: &str, version: &str) -> LaunchTemplate {
        let is_id = id_or_name
            .strip_prefix("lt-")
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
        LaunchTemplate {
            id: is_id.then(|| id_or_name.to_string()),
            name: (!is_id).then(|| id_or_name.to_string()),
            version: version.to_string(),
        }
    }
}

/// Where overrides point: subnets (their zones follow), or zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Subnets(Vec<String>),
    Zones(Vec<String>),
    /// Neither: the launch template's own network settings.
    Template,
}

impl Placement {
    fn count(&self) -> usize {
        match self {
            Placement::Subnets(s) => s.len().max(1),
            Placement::Zones(z) => z.len().max(1),
            Placement::Template => 1,
        }
    }
}

/// Everything a fleet request is rendered from, besides the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetInput {
    /// The fleet's name (tags; the Auto Scaling group's name).
    pub name: String,
    pub launch_template: LaunchTemplate,
    pub placement: Placement,
    /// vCPUs of on-demand capacity (the base).
    pub on_demand_base_vcpus: u32,
    /// Share of capacity above the base that is on-demand (Auto Scaling groups), 0..=100.
    pub on_demand_percentage: u8,
    /// In the EC2 Fleet spelling (`price-capacity-optimized`, ...).
    pub allocation_strategy: AllocationStrategy,
    /// `maintain`, `request`, or `instant` (EC2 Fleet only).
    pub fleet_type: FleetType,
    /// Spot Fleet: the IAM role that lets it launch and terminate instances.
    pub fleet_role: Option<String>,
    /// Spot Fleet: when the request expires (ISO 8601).
    pub valid_until: Option<String>,
}

/// Spot allocation strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationStrategy {
    PriceCapacityOptimized,
    CapacityOptimized,
    CapacityOptimizedPrioritized,
    LowestPrice,
    Diversified,
}

impl AllocationStrategy {
    pub const ALL: [AllocationStrategy; 5] = [
        AllocationStrategy::PriceCapacityOptimized,
        AllocationStrategy::CapacityOptimized,
        AllocationStrategy::CapacityOptimizedPrioritized,
        AllocationStrategy::LowestPrice,
        AllocationStrategy::Diversified,
    ];

    /// EC2 Fleet and Auto Scaling spelling.
    pub fn kebab(self) -> &'static str {
        match self {
            AllocationStrategy::PriceCapacityOptimized => "price-capacity-optimized",
            AllocationStrategy::CapacityOptimized => "capacity-optimized",
            AllocationStrategy::CapacityOptimizedPrioritized => "capacity-optimized-prioritized",
            AllocationStrategy::LowestPrice => "lowest-price",
            AllocationStrategy::Diversified => "diversified",
        }
    }

    /// Spot Fleet spelling.
    pub fn camel(self) -> &'static str {
        match self {
            AllocationStrategy::PriceCapacityOptimized => "priceCapacityOptimized",
            AllocationStrategy::CapacityOptimized => "capacityOptimized",
            AllocationStrategy::CapacityOptimizedPrioritized => "capacityOptimizedPrioritized",
            AllocationStrategy::LowestPrice => "lowestPrice",
            AllocationStrategy::Diversified => "diversified",
        }
    }

    pub fn parse(s: &str) -> Result<AllocationStrategy, UnknownValue> {
        AllocationStrategy::ALL
            .into_iter()
            .find(|a| a.kebab() == s || a.camel() == s)
            .ok_or_else(|| {
                UnknownValue::AllocationStrategy(
                    s.into(),
                    AllocationStrategy::ALL.map(|a| a.kebab()).join(", "),
                )
            })
    }
}

/// EC2 Fleet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetType {
    Maintain,
    Request,
    Instant,
}

impl FleetType {
    pub fn as_str(self) -> &'static str {
        match self {
            FleetType::Maintain => "maintain",
            FleetType::Request => "request",
            FleetType::Instant => "instant",
        }
    }

    pub fn parse(s: &str) -> Result<FleetType, UnknownValue> {
        match s {
            "maintain" => Ok(FleetType::Maintain),
            "request" => Ok(FleetType::Request),
            "instant" => Ok(FleetType::Instant),
            _ => Err(UnknownValue::FleetType(s.into())),
        }
    }
}

/// What a render left out to fit the API's limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trimmed {
    /// Plan types left out (the lowest-ranked ones).
    pub types_left_out: Vec<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

fn tags(plan: &Plan, input: &FleetInput) -> Vec<Tag> {
    vec![
        Tag {
            key: NAME_TAG.into(),
            value: input.name.clone(),
        },
        Tag {
            key: PLAN_TAG.into(),
            // Letters, digits, spaces and `.:/=+-_@` only: what every tagging service takes.
            value: format!(
                "{} vCPU {} GiB {} {}",
                plan.vcpus, plan.memory_gib, plan.region, plan.mode
            ),
        },
    ]
}

/// The plan's types, best first, as many as fit `limit` overrides with `per_type` each.
fn fitting(plan: &Plan, per_type: usize, limit: usize) -> (Vec<&Candidate>, Trimmed) {
    let keep = (limit / per_type.max(1)).max(1);
    let (kept, left): (Vec<_>, Vec<_>) = plan
        .candidates
        .iter()
        .enumerate()
        .partition(|(i, _)| *i < keep);
    (
        kept.into_iter().map(|(_, c)| c).collect(),
        Trimmed {
            types_left_out: left
                .into_iter()
                .map(|(_, c)| c.instance_type.clone())
                .collect(),
            limit,
        },
    )
}

/// The weight of one node of `c` in a fleet sized in the request's vCPUs: its vCPUs, or, when
/// its memory per vCPU is below the request's, the vCPUs its memory covers at the request's
/// ratio (a 16 vCPU / 32 GiB node counts 8 toward 64 vCPU / 256 GiB), rounded down and at
/// least 1. Weights therefore add up to the target only once vCPUs and memory are both
/// covered, and a fleet of one type launches the plan's count of it (or, by rounding, more).
pub fn weight(c: &Candidate, plan: &Plan) -> u32 {
    let by_memory = c.memory_gib * f64::from(plan.vcpus) / plan.memory_gib;
    // The tiny slack keeps an exact ratio (32 * 64 / 256 = 8) from flooring to 7.
    let effective = f64::from(c.vcpus).min((by_memory + 1e-9).floor());
    (effective as u32).max(1)
}

/// One override of an EC2 Fleet or a Spot Fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Override {
    pub instance_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub weighted_capacity: f64,
    pub priority: f64,
}

fn overrides(plan: &Plan, types: &[&Candidate], placement: &Placement) -> Vec<Override> {
    let mut out = Vec::new();
    for c in types {
        let one = |subnet: Option<&String>, zone: Option<&String>| Override {
            instance_type: c.instance_type.clone(),
            subnet_id: subnet.cloned(),
            availability_zone: zone.cloned(),
            weighted_capacity: f64::from(weight(c, plan)),
            priority: c.rank as f64,
        };
        match placement {
            Placement::Subnets(s) => out.extend(s.iter().map(|s| one(Some(s), None))),
            Placement::Zones(z) => out.extend(z.iter().map(|z| one(None, Some(z)))),
            Placement::Template => out.push(one(None, None)),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LaunchTemplateConfig {
    pub launch_template_specification: LaunchTemplate,
    pub overrides: Vec<Override>,
}

/// `CreateFleet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ec2Fleet {
    pub launch_template_configs: Vec<LaunchTemplateConfig>,
    pub target_capacity_specification: TargetCapacity,
    pub spot_options: SpotOptions,
    #[serde(rename = "Type")]
    pub fleet_type: String,
    pub tag_specifications: Vec<TagSpecification>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetCapacity {
    pub total_target_capacity: u32,
    /// The on-demand part; the rest is spot (`DefaultTargetCapacityType`). The API refuses a
    /// request that also names a spot target, so there is none.
    pub on_demand_target_capacity: u32,
    pub default_target_capacity_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpotOptions {
    pub allocation_strategy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagSpecification {
    pub resource_type: String,
    pub tags: Vec<Tag>,
}

/// The EC2 Fleet request for a plan.
pub fn ec2_fleet(plan: &Plan, input: &FleetInput) -> (Ec2Fleet, Trimmed) {
    let (types, trimmed) = fitting(plan, input.placement.count(), EC2_FLEET_MAX_OVERRIDES);
    let total = plan.vcpus;
    let on_demand = input.on_demand_base_vcpus.min(total);
    (
        Ec2Fleet {
            launch_template_configs: vec![LaunchTemplateConfig {
                launch_template_specification: input.launch_template.clone(),
                overrides: overrides(plan, &types, &input.placement),
            }],
            target_capacity_specification: TargetCapacity {
                total_target_capacity: total,
                on_demand_target_capacity: on_demand,
                default_target_capacity_type: "spot".into(),
            },
            spot_options: SpotOptions {
                allocation_strategy: input.allocation_strategy.kebab().into(),
            },
            fleet_type: input.fleet_type.as_str().into(),
            tag_specifications: vec![TagSpecification {
                resource_type: "fleet".into(),
                tags: tags(plan, input),
            }],
        },
        trimmed,
    )
}

/// `RequestSpotFleet`: `{"SpotFleetRequestConfig": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpotFleet {
    pub spot_fleet_request_config: SpotFleetConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpotFleetConfig {
    pub iam_fleet_role: String,
    pub allocation_strategy: String,
    pub target_capacity: u32,
    pub on_demand_target_capacity: u32,
    pub launch_template_configs: Vec<LaunchTemplateConfig>,
    pub terminate_instances_with_expiration: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    #[serde(rename = "Type")]
    pub fleet_type: String,
    pub client_token: String,
    pub tag_specifications: Vec<TagSpecification>,
}

/// A deterministic client token: the same plan and inputs give the same token (a retried
/// request is then one request, where the endpoint honours tokens).
fn client_token(parts: &[&str]) -> String {
    let hash = super::stable_hash(
        parts
            .iter()
            .flat_map(|p| p.bytes().chain(std::iter::once(0))),
    );
    format!("spotplan-{hash:016x}")
}

/// The Spot Fleet request for a plan. `fleet_role` is required (checked by the caller).
pub fn spot_fleet(plan: &Plan, input: &FleetInput, fleet_role: &str) -> (SpotFleet, Trimmed) {
    let (types, trimmed) = fitting(plan, input.placement.count(), SPOT_FLEET_MAX_OVERRIDES);
    let total = plan.vcpus;
    let overrides = overrides(plan, &types, &input.placement);
    let token_parts: Vec<String> = std::iter::once(input.name.clone())
        .chain(overrides.iter().map(|o| format!("{o:?}")))
        .chain([total.to_string(), input.on_demand_base_vcpus.to_string()])
        .collect();
    let token = client_token(&token_parts.iter().map(String::as_str).collect::<Vec<_>>());
    // Spot Fleet has no instant type.
    let fleet_type = match input.fleet_type {
        FleetType::Request => "request",
        _ => "maintain",
    };
    (
        SpotFleet {
            spot_fleet_request_config: SpotFleetConfig {
                iam_fleet_role: fleet_role.to_string(),
                allocation_strategy: input.allocation_strategy.camel().into(),
                target_capacity: total,
                on_demand_target_capacity: input.on_demand_base_vcpus.min(total),
                launch_template_configs: vec![LaunchTemplateConfig {
                    launch_template_specification: input.launch_template.clone(),
                    overrides,
                }],
                terminate_instances_with_expiration: true,
                valid_until: input.valid_until.clone(),
                fleet_type: fleet_type.into(),
                client_token: token,
                tag_specifications: vec![TagSpecification {
                    resource_type: "spot-fleet-request".into(),
                    tags: tags(plan, input),
                }],
            },
        },
        trimmed,
    )
}

/// `CreateAutoScalingGroup`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AutoScalingGroup {
    pub auto_scaling_group_name: String,
    pub mixed_instances_policy: MixedInstancesPolicy,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    pub capacity_rebalance: bool,
    #[serde(rename = "VPCZoneIdentifier", skip_serializing_if = "Option::is_none")]
    pub vpc_zone_identifier: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub availability_zones: Vec<String>,
    pub tags: Vec<AsgTag>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MixedInstancesPolicy {
    pub launch_template: AsgLaunchTemplate,
    pub instances_distribution: InstancesDistribution,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsgLaunchTemplate {
    pub launch_template_specification: LaunchTemplate,
    pub overrides: Vec<AsgOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsgOverride {
    pub instance_type: String,
    /// A string in this API.
    pub weighted_capacity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstancesDistribution {
    pub on_demand_base_capacity: u32,
    pub on_demand_percentage_above_base_capacity: u8,
    pub spot_allocation_strategy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsgTag {
    pub key: String,
    pub value: String,
    pub propagate_at_launch: bool,
}

/// The Auto Scaling group for a plan: desired and minimum capacity are the request's vCPUs in
/// weighted units, the maximum twice that (room for capacity rebalancing and scale-out).
pub fn auto_scaling_group(plan: &Plan, input: &FleetInput) -> (AutoScalingGroup, Trimmed) {
    let (types, trimmed) = fitting(plan, 1, ASG_MAX_TYPES);
    let total = plan.vcpus;
    // ASG spells the strategies in kebab case too, but has no lowest-price/diversified mix for
    // weighted groups beyond these: diversified is an EC2 Fleet strategy.
    let strategy = match input.allocation_strategy {
        AllocationStrategy::Diversified => AllocationStrategy::PriceCapacityOptimized,
        s => s,
    };
    let (subnets, zones) = match &input.placement {
        Placement::Subnets(s) => (Some(s.join(",")), Vec::new()),
        Placement::Zones(z) => (None, z.clone()),
        Placement::Template => (None, Vec::new()),
    };
    (
        AutoScalingGroup {
            auto_scaling_group_name: input.name.clone(),
            mixed_instances_policy: MixedInstancesPolicy {
                launch_template: AsgLaunchTemplate {
                    launch_template_specification: input.launch_template.clone(),
                    overrides: types
                        .iter()
                        .map(|c| AsgOverride {
                            instance_type: c.instance_type.clone(),
                            weighted_capacity: weight(c, plan).to_string(),
                        })
                        .collect(),
                },
                instances_distribution: InstancesDistribution {
                    on_demand_base_capacity: input.on_demand_base_vcpus.min(total),
                    on_demand_percentage_above_base_capacity: input.on_demand_percentage.min(100),
                    spot_allocation_strategy: strategy.kebab().into(),
                },
            },
            min_size: total,
            max_size: total.saturating_mul(2),
            desired_capacity: total,
            capacity_rebalance: true,
            vpc_zone_identifier: subnets,
            availability_zones: zones,
            tags: tags(plan, input)
                .into_iter()
                .map(|t| AsgTag {
                    key: t.key,
                    value: t.value,
                    propagate_at_launch: true,
                })
                .collect(),
        },
        trimmed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::{Request, optimize};
    use crate::{Catalog, MarketData};
    use serde_json::{Value, json};

    fn plan(vcpus: u32, memory_gib: u64) -> Plan {
        let req = Request::new(vcpus, memory_gib * 1024, "us-east-1");
        optimize(&req, &MarketData::empty()).unwrap()
    }

    fn input(placement: Placement) -> FleetInput {
        FleetInput {
            name: "web".into(),
            launch_template: LaunchTemplate::parse("lt-0abc", "$Latest"),
            placement,
            on_demand_base_vcpus: 8,
            on_demand_percentage: 0,
            allocation_strategy: AllocationStrategy::PriceCapacityOptimized,
            fleet_type: FleetType::Maintain,
            fleet_role: None,
            valid_until: None,
        }
    }

    fn subnets(n: usize) -> Placement {
        Placement::Subnets((0..n).map(|i| format!("subnet-0{i}")).collect())
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn ec2_fleet_spreads_every_type_over_every_subnet() {
        let p = plan(64, 256);
        let (fleet, trimmed) = ec2_fleet(&p, &input(subnets(3)));
        assert!(trimmed.types_left_out.is_empty());
        let overrides = &fleet.launch_template_configs[0].overrides;
        assert_eq!(overrides.len(), p.candidates.len() * 3);
        for (i, c) in p.candidates.iter().enumerate() {
            let mine: Vec<&Override> = overrides[i * 3..i * 3 + 3].iter().collect();
            assert!(mine.iter().all(|o| o.instance_type == c.instance_type));
            assert!(mine.iter().all(|o| o.priority == c.rank as f64));
            let subnets: Vec<&str> = mine
                .iter()
                .map(|o| o.subnet_id.as_deref().unwrap())
                .collect();
            assert_eq!(subnets, ["subnet-00", "subnet-01", "subnet-02"]);
        }
        let v = serde_json::to_value(&fleet).unwrap();
        assert_eq!(
            keys(&v),
            [
                "LaunchTemplateConfigs",
                "SpotOptions",
                "TagSpecifications",
                "TargetCapacitySpecification",
                "Type"
            ]
        );
        assert_eq!(
            v["TargetCapacitySpecification"],
            json!({"TotalTargetCapacity": 64, "OnDemandTargetCapacity": 8, "DefaultTargetCapacityType": "spot"})
        );
        assert_eq!(
            v["SpotOptions"],
            json!({"AllocationStrategy": "price-capacity-optimized"})
        );
        assert_eq!(v["Type"], "maintain");
        assert_eq!(v["TagSpecifications"][0]["ResourceType"], "fleet");
        assert_eq!(
            v["TagSpecifications"][0]["Tags"][0],
            json!({"Key": NAME_TAG, "Value": "web"})
        );
    }

    #[test]
    fn a_node_short_of_memory_weighs_what_its_memory_covers() {
        let p = plan(64, 256);
        let cat = Catalog::embedded();
        let mut seen_short = false;
        for c in &p.candidates {
            let t = cat.get(&c.instance_type).unwrap();
            let w = weight(c, &p);
            // 4 GiB per vCPU asked: a node covers min(vCPUs, GiB / 4).
            let expected = t.vcpus.min((t.memory_mib / 1024 / 4) as u32).max(1);
            assert_eq!(w, expected, "{}", c.instance_type);
            seen_short |= expected < t.vcpus;
        }
        let c7 = p
            .candidates
            .iter()
            .find(|c| c.instance_type.starts_with('c'));
        assert!(
            seen_short || c7.is_none(),
            "a compute type in a 4 GiB/vCPU plan is short of memory"
        );
    }

    #[test]
    fn spot_fleet_keeps_the_best_types_within_its_limit() {
        let p = plan(64, 256);
        assert!(p.candidates.len() > 12, "the test needs more than 12 types");
        let mut i = input(subnets(4));
        i.valid_until = Some("2030-01-01T00:00:00Z".into());
        let (fleet, trimmed) = spot_fleet(&p, &i, "arn:aws:iam::1:role/r");
        let c = &fleet.spot_fleet_request_config;
        assert_eq!(c.launch_template_configs[0].overrides.len(), 48);
        assert_eq!(trimmed.limit, SPOT_FLEET_MAX_OVERRIDES);
        let left: Vec<&str> = p.candidates[12..]
            .iter()
            .map(|c| c.instance_type.as_str())
            .collect();
        assert_eq!(trimmed.types_left_out, left);
        assert_eq!((c.target_capacity, c.on_demand_target_capacity), (64, 8));
        assert_eq!(c.allocation_strategy, "priceCapacityOptimized");
        assert_eq!(c.fleet_type, "maintain");
        let again = spot_fleet(&p, &i, "arn:aws:iam::1:role/r").0;
        assert_eq!(again.spot_fleet_request_config.client_token, c.client_token);
        let other = spot_fleet(&plan(32, 128), &i, "arn:aws:iam::1:role/r").0;
        assert_ne!(other.spot_fleet_request_config.client_token, c.client_token);
        let v = serde_json::to_value(&fleet).unwrap();
        assert_eq!(keys(&v), ["SpotFleetRequestConfig"]);
        assert_eq!(
            v["SpotFleetRequestConfig"]["ValidUntil"],
            "2030-01-01T00:00:00Z"
        );
    }

    #[test]
    fn auto_scaling_groups_size_in_vcpus_and_name_their_subnets() {
        let p = plan(64, 256);
        let mut i = input(subnets(3));
        i.allocation_strategy = AllocationStrategy::Diversified;
        i.on_demand_percentage = 20;
        let (g, _) = auto_scaling_group(&p, &i);
        assert_eq!((g.min_size, g.desired_capacity, g.max_size), (64, 64, 128));
        assert_eq!(
            g.vpc_zone_identifier.as_deref(),
            Some("subnet-00,subnet-01,subnet-02")
        );
        let d = &g.mixed_instances_policy.instances_distribution;
        assert_eq!(
            (
                d.on_demand_base_capacity,
                d.on_demand_percentage_above_base_capacity
            ),
            (8, 20)
        );
        assert_eq!(d.spot_allocation_strategy, "price-capacity-optimized");
        let o = &g.mixed_instances_policy.launch_template.overrides;
        assert_eq!(o.len(), p.candidates.len().min(ASG_MAX_TYPES));
        assert_eq!(
            o[0].weighted_capacity,
            weight(&p.candidates[0], &p).to_string()
        );
        let v = serde_json::to_value(&g).unwrap();
        assert!(v.get("AvailabilityZones").is_none());
        assert_eq!(v["Tags"][0]["PropagateAtLaunch"], true);
        let zoned = auto_scaling_group(&p, &input(Placement::Zones(vec!["us-east-1a".into()]))).0;
        assert_eq!(zoned.availability_zones, ["us-east-1a"]);
        assert!(zoned.vpc_zone_identifier.is_none());
    }

    #[test]
    fn launch_templates_by_id_or_name() {
        let id = LaunchTemplate::parse("lt-0abc123", "$Latest");
        assert_eq!(
            (id.id.as_deref(), id.name.as_deref()),
            (Some("lt-0abc123"), None)
        );
        let name = LaunchTemplate::parse("lt-web", "3");
        assert_eq!(
            (name.id.as_deref(), name.name.as_deref()),
            (None, Some("lt-web"))
        );
        let v = serde_json::to_value(&name).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"LaunchTemplateName": "lt-web", "Version": "3"})
        );
    }

    #[test]
    fn strategies_parse_in_both_spellings() {
        for a in AllocationStrategy::ALL {
            assert_eq!(AllocationStrategy::parse(a.kebab()), Ok(a));
            assert_eq!(AllocationStrategy::parse(a.camel()), Ok(a));
        }
        assert!(
            AllocationStrategy::parse("cheapest")
                .unwrap_err()
                .to_string()
                .contains("price-capacity-optimized")
        );
        assert!(FleetType::parse("forever").is_err());
    }

    #[test]
    fn tokens_are_deterministic() {
        assert_eq!(client_token(&["a", "b"]), client_token(&["a", "b"]));
        assert_ne!(client_token(&["a", "b"]), client_token(&["ab"]));
    }
}
