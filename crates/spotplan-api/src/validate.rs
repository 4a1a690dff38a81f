//! Spec validation: a SpotPlan spec parsed once into what it asks for (the optimizer request,
//! the NodePool settings and weights, the capacity policy), or an error naming the field and the
//! fix. The CRD's CEL rules refuse most bad specs at admission; the same rules are restated here
//! for manifests that never meet the API server (`spotplan render -f`). Pure: unit-tested from YAML.

use crate::crd::{
    DeletionPolicy, GpuSpec, NodeClassRef, NodePoolTemplate, PlanArch, PlanMode, PlanResources,
    SpotPlanSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use spotplan_core::limits;
use spotplan_core::optimizer::{GpuRequirement, Request};
use spotplan_core::render::{CapacityTypes, DEFAULT_WEIGHT, NodePoolSettings};
use spotplan_core::types::{Arch, Mode};
use std::time::Duration;

/// Everything a valid spec asks for, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSpec {
    pub request: Request,
    /// vCPUs of the on-demand base, if any.
    pub on_demand_base: Option<u32>,
    /// Capacity types of the spot NodePool.
    pub spot_capacity: CapacityTypes,
    pub min_narrow_interval: Duration,
    pub settings: NodePoolSettings,
    /// The weights of the plan's NodePools (checked here, used by the build).
    pub weights: Weights,
    pub orphan: bool,
    /// `spec.capacity.onDemandShift`, parsed.
    pub shift: Option<spotplan_core::policy::shift::ShiftSpec>,
}

/// NodePool weights: the on-demand base one above the spot one, the shift one above both, so
/// Karpenter tries them in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub spot: i64,
    pub on_demand: i64,
    pub shift: i64,
}

/// The weights of `spec`'s NodePools; a spec whose weight leaves no room above it is refused
/// with the CRD's own message.
fn weights(spec: &SpotPlanSpec) -> Result<Weights, SpecError> {
    let spot = spec.node_pool.weight.map_or(DEFAULT_WEIGHT, i64::from);
    let capacity = spec.capacity.as_ref();
    if capacity.is_some_and(|c| c.on_demand_base.is_some()) && spot >= 100 {
        return Err(err(
            "spec.nodePool.weight",
            "must be below 100 with an onDemandBase: the on-demand NodePool gets weight + 1",
        ));
    }
    if capacity.is_some_and(|c| c.on_demand_shift.is_some()) && spot >= 99 {
        return Err(err(
            "spec.nodePool.weight",
            "must be below 99 with an onDemandShift: the shift NodePool gets weight + 2",
        ));
    }
    Ok(Weights {
        spot,
        on_demand: spot + 1,
        shift: (spot + 2).min(100),
    })
}

/// Parses and checks a spec. `default_narrow` is the controller's default minNarrowInterval.
pub fn validate(spec: &SpotPlanSpec, default_narrow: Duration) -> Result<PlanSpec, SpecError> {
    let fallback = spec.capacity.as_ref().is_some_and(|c| c.on_demand_fallback);
    let request = request(spec)?;
    let on_demand_base = on_demand_base(spec)?;
    check_cross_fields(spec, &request, on_demand_base)?;
    let weights = weights(spec)?;
    Ok(PlanSpec {
        request,
        on_demand_base,
        spot_capacity: if fallback {
            CapacityTypes::SpotWithOnDemandFallback
        } else {
            CapacityTypes::Spot
        },
        min_narrow_interval: min_narrow_interval(spec, default_narrow)?,
        settings: nodepool_settings(spec),
        weights,
        orphan: spec.deletion_policy == DeletionPolicy::Orphan,
        shift: on_demand_shift(spec)?,
    })
}

/// `spec.capacity.onDemandShift`, with its durations parsed.
pub fn on_demand_shift(
    spec: &SpotPlanSpec,
) -> Result<Option<spotplan_core::policy::shift::ShiftSpec>, SpecError> {
    let Some(s) = spec
        .capacity
        .as_ref()
        .and_then(|c| c.on_demand_shift.as_ref())
    else {
        return Ok(None);
    };
    let default = spotplan_core::policy::shift::DEFAULT;
    let interruptions = match s.interruptions {
        None => default.interruptions,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                err(
                    "spec.capacity.onDemandShift.interruptions",
                    "must be between 1 and 1000 (or unset for the default, 6)",
                )
            })?,
    };
    let duration = |field: &'static str, v: Option<&String>, default: Duration| {
        let Some(v) = v else {
            return Ok(default);
        };
        spotplan_core::duration::parse_duration(v)
            .map_err(|e| err(field, e.to_string()))
            .and_then(|d| {
                if d.is_zero() {
                    Err(err(field, "must be longer than 0s"))
                } else {
                    Ok(d)
                }
            })
    };
    Ok(Some(spotplan_core::policy::shift::ShiftSpec {
        interruptions,
        window: duration(
            "spec.capacity.onDemandShift.window",
            s.window.as_ref(),
            default.window,
        )?,
        calm: duration(
            "spec.capacity.onDemandShift.calm",
            s.calm.as_ref(),
            default.calm,
        )?,
    }))
}

/// The CRD's cross-field rules, restated for manifests that never meet the API server
/// (`spotplan render -f`): the server refuses these with the same messages.
fn check_cross_fields(
    spec: &SpotPlanSpec,
    request: &Request,
    on_demand_base: Option<u32>,
) -> Result<(), SpecError> {
    if let Some(base) = on_demand_base.filter(|b| *b > request.vcpus) {
        return Err(err(
            "spec.capacity.onDemandBase.cpu",
            format!(
                "{base} must not exceed spec.resources.cpu ({})",
                request.vcpus
            ),
        ));
    }
    for (key, q) in spec.node_pool.limits.iter().flatten() {
        if parse_quantity(&q.0).is_none_or(|v| v < 0.0) {
            return Err(SpecError {
                field: "spec.nodePool.limits",
                message: format!(
                    "{key}: '{}' is not a quantity of at least 0 (e.g. cpu: \"1000\", memory: 1000Gi)",
                    q.0
                ),
            });
        }
    }
    if let Some(r) = spec
        .node_pool
        .requirements
        .iter()
        .find(|r| RESERVED_KEYS.contains(&r.key.as_str()))
    {
        return Err(err(
            "spec.nodePool.requirements",
            format!(
                "{} is set by spotplan; use instanceTypes, capacity and architectures",
                r.key
            ),
        ));
    }
    Ok(())
}

/// Requirement keys spotplan writes itself.
const RESERVED_KEYS: [&str; 3] = [
    "node.kubernetes.io/instance-type",
    "karpenter.sh/capacity-type",
    "kubernetes.io/arch",
];

/// A spec field that cannot be used, with the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError {
        field,
        message: message.into(),
    }
}

/// Parses a Kubernetes quantity into a value in base units (cores, bytes).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let v = n * mult;
    v.is_finite().then_some(v)
}

/// Whole vCPUs, rounding fractions (500m) up; 1..=[`limits::MAX_VCPUS`].
pub fn cpu_vcpus(q: &Quantity, field: &'static str) -> Result<u32, SpecError> {
    let v = parse_quantity(&q.0).ok_or_else(|| {
        err(
            field,
            format!("'{}' is not a CPU quantity (e.g. \"64\" or \"500m\")", q.0),
        )
    })?;
    if v <= 0.0 {
        return Err(err(field, "must be greater than 0"));
    }
    // Tolerate float noise: 0.1 + 0.2 style representations of whole numbers.
    let whole = (v - 1e-9).ceil().max(1.0);
    if whole > f64::from(limits::MAX_VCPUS) {
        return Err(err(
            field,
            format!(
                "must be at most {} vCPUs: split larger workloads into several SpotPlans",
                limits::MAX_VCPUS
            ),
        ));
    }
    Ok(whole as u32)
}

/// MiB, rounding up; at most [`limits::MAX_MEMORY_MIB`].
pub fn memory_mib(q: &Quantity, field: &'static str) -> Result<u64, SpecError> {
    let v = parse_quantity(&q.0).ok_or_else(|| {
        err(
            field,
            format!("'{}' is not a memory quantity (e.g. 256Gi)", q.0),
        )
    })?;
    if v <= 0.0 {
        return Err(err(field, "must be greater than 0"));
    }
    let mib = (v / 1_048_576.0).ceil();
    if mib > limits::MAX_MEMORY_MIB as f64 {
        return Err(err(
            field,
            format!(
                "must be at most {}: split larger workloads into several SpotPlans",
                limits::MAX_MEMORY_QUANTITY
            ),
        ));
    }
    Ok(mib as u64)
}

/// The optimizer request a spec asks for.
pub fn request(spec: &SpotPlanSpec) -> Result<Request, SpecError> {
    let mut r = Request::new(
        cpu_vcpus(&spec.resources.cpu, "spec.resources.cpu")?,
        memory_mib(&spec.resources.memory, "spec.resources.memory")?,
        spec.region.clone(),
    );
    r.mode = match spec.mode {
        PlanMode::Latency => Mode::Latency,
        PlanMode::Balanced => Mode::Balanced,
        PlanMode::FaultTolerance => Mode::FaultTolerance,
    };
    r.ssd_only = spec.ssd_only;
    r.architectures = spec
        .architectures
        .iter()
        .map(|a| match a {
            PlanArch::Amd64 => Arch::Amd64,
            PlanArch::Arm64 => Arch::Arm64,
        })
        .collect();
    r.families = spec.instance_families.clone();
    r.exclude_families = spec.exclude_instance_families.clone();
    r.instance_types = spec.instance_types.clone();
    r.exclude_types = spec.exclude_instance_types.clone();
    r.emr_release = spec.emr_release.clone();
    let small = |v: Option<i32>, field: &'static str, max: i32| -> Result<Option<u8>, SpecError> {
        v.map(|x| {
            u8::try_from(x)
                .ok()
                .filter(|x| i32::from(*x) <= max)
                .ok_or_else(|| err(field, format!("{x} is out of range 0..{max}")))
        })
        .transpose()
    };
    r.max_band = small(
        spec.max_interruption_band,
        "spec.maxInterruptionBand",
        i32::from(limits::MAX_BAND),
    )?;
    r.min_generation = small(
        spec.min_generation,
        "spec.minGeneration",
        i32::from(limits::MAX_GENERATION),
    )?;
    r.max_generation = small(
        spec.max_generation,
        "spec.maxGeneration",
        i32::from(limits::MAX_GENERATION),
    )?;
    r.gpus = spec
        .gpus
        .as_ref()
        .map(|g| {
            Ok::<_, SpecError>(GpuRequirement {
                min_count: u32::try_from(g.count)
                    .ok()
                    .filter(|c| (1..=limits::MAX_GPUS).contains(c))
                    .ok_or_else(|| {
                        err(
                            "spec.gpus.count",
                            format!("must be 1 to {}", limits::MAX_GPUS),
                        )
                    })?,
                manufacturer: g.manufacturer.clone(),
            })
        })
        .transpose()?;
    r.allow_burstable = spec.allow_burstable;
    r.allow_previous_generation = spec.allow_previous_generation;
    r.allow_accelerators = spec.allow_accelerators;
    let count = |v: Option<i32>, field: &'static str, default: usize| -> Result<usize, SpecError> {
        match v {
            None => Ok(default),
            Some(x) if (1..=limits::MAX_TYPES as i32).contains(&x) => Ok(x as usize),
            Some(x) => Err(err(
                field,
                format!("{x} is out of range 1..{}", limits::MAX_TYPES),
            )),
        }
    };
    r.min_types = count(spec.min_types, "spec.minTypes", limits::DEFAULT_MIN_TYPES)?;
    r.max_types = count(
        spec.max_types,
        "spec.maxTypes",
        limits::DEFAULT_MAX_TYPES.max(r.min_types),
    )?;
    if r.max_types < r.min_types {
        return Err(err(
            "spec.maxTypes",
            format!("{} is below spec.minTypes ({})", r.max_types, r.min_types),
        ));
    }
    Ok(r)
}

/// The spec that asks for `r` (the inverse of [`request`]), with the given node class: how the
/// CLI turns request flags into a SpotPlan for the same build as a manifest's.
pub fn spec_of(r: &Request, node_class: NodeClassRef) -> SpotPlanSpec {
    let small = |v: Option<u8>| v.map(i32::from);
    SpotPlanSpec {
        region: r.region.clone(),
        resources: PlanResources {
            cpu: Quantity(r.vcpus.to_string()),
            memory: Quantity(format!("{}Mi", r.memory_mib)),
        },
        mode: match r.mode {
            Mode::Latency => PlanMode::Latency,
            Mode::Balanced => PlanMode::Balanced,
            Mode::FaultTolerance => PlanMode::FaultTolerance,
        },
        ssd_only: r.ssd_only,
        architectures: r
            .architectures
            .iter()
            .map(|a| match a {
                Arch::Amd64 => PlanArch::Amd64,
                Arch::Arm64 => PlanArch::Arm64,
            })
            .collect(),
        instance_families: r.families.clone(),
        exclude_instance_families: r.exclude_families.clone(),
        instance_types: r.instance_types.clone(),
        exclude_instance_types: r.exclude_types.clone(),
        emr_release: r.emr_release.clone(),
        max_interruption_band: small(r.max_band),
        gpus: r.gpus.as_ref().map(|g| GpuSpec {
            count: i32::try_from(g.min_count).unwrap_or(i32::MAX),
            manufacturer: g.manufacturer.clone(),
        }),
        min_generation: small(r.min_generation),
        max_generation: small(r.max_generation),
        allow_burstable: r.allow_burstable,
        allow_previous_generation: r.allow_previous_generation,
        allow_accelerators: r.allow_accelerators,
        min_types: i32::try_from(r.min_types).ok(),
        max_types: i32::try_from(r.max_types).ok(),
        capacity: None,
        node_pool: NodePoolTemplate {
            node_class_ref: node_class,
            labels: Default::default(),
            annotations: Default::default(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            requirements: Vec::new(),
            disruption: None,
            limits: None,
            weight: None,
            expire_after: None,
            termination_grace_period: None,
        },
        suspend: false,
        deletion_policy: DeletionPolicy::Orphan,
        min_narrow_interval: None,
        risk_pricing: None,
    }
}

/// The NodePool settings a spec passes through to Karpenter.
pub fn nodepool_settings(spec: &SpotPlanSpec) -> NodePoolSettings {
    let np = &spec.node_pool;
    let to_json = |v: &dyn erased::Ser| v.json();
    NodePoolSettings {
        node_class_ref: to_json(&np.node_class_ref),
        labels: np.labels.clone(),
        annotations: np.annotations.clone(),
        taints: np.taints.iter().map(|t| to_json(t)).collect(),
        startup_taints: np.startup_taints.iter().map(|t| to_json(t)).collect(),
        requirements: np.requirements.iter().map(|r| to_json(r)).collect(),
        disruption: np.disruption.clone(),
        limits: np.limits.as_ref().map(|l| to_json(l)),
        expire_after: np.expire_after.clone(),
        termination_grace_period: np.termination_grace_period.clone(),
    }
}

mod erased {
    /// Serialize to JSON without naming each type.
    pub trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("spec types serialize")
        }
    }
}

/// On-demand base vCPUs, if any.
pub fn on_demand_base(spec: &SpotPlanSpec) -> Result<Option<u32>, SpecError> {
    spec.capacity
        .as_ref()
        .and_then(|c| c.on_demand_base.as_ref())
        .map(|b| cpu_vcpus(&b.cpu, "spec.capacity.onDemandBase.cpu"))
        .transpose()
}

/// `spec.minNarrowInterval`, or the controller's default.
pub fn min_narrow_interval(spec: &SpotPlanSpec, default: Duration) -> Result<Duration, SpecError> {
    match &spec.min_narrow_interval {
        None => Ok(default),
        Some(s) => spotplan_core::duration::parse_duration(s)
            .map_err(|e| err("spec.minNarrowInterval", e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SpotPlanSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const BASE: &str = "region: us-east-1\nresources: {cpu: '500m', memory: 1.5Gi}\nnodePool: {nodeClassRef: {group: g, kind: K, name: n}}\n";

    #[test]
    fn a_request_turned_into_a_spec_validates_back_to_itself() {
        let s = spec(&format!(
            "{BASE}mode: fault_tolerance\narchitectures: [arm64]\nmaxInterruptionBand: 2\ninstanceFamilies: [m7g]\nexcludeInstanceTypes: [m7g.large]\nminTypes: 5\nmaxTypes: 9\ngpus: {{count: 1, manufacturer: NVIDIA}}\nminGeneration: 6\nallowBurstable: true\nemrRelease: emr-6.10.0\n"
        ));
        let r = request(&s).unwrap();
        let class = s.node_pool.node_class_ref.clone();
        assert_eq!(request(&spec_of(&r, class)).unwrap(), r);
    }

    #[test]
    fn quantities_round_up() {
        assert_eq!(parse_quantity("256Gi"), Some(256.0 * 1024f64.powi(3)));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("12x"), None);
        let r = request(&spec(BASE)).unwrap();
        assert_eq!((r.vcpus, r.memory_mib), (1, 1536));
        let r = request(&spec(&BASE.replace("500m", "2.5"))).unwrap();
        assert_eq!(r.vcpus, 3);
        let r = request(&spec(&BASE.replace("500m", "64"))).unwrap();
        assert_eq!(r.vcpus, 64);
    }

    #[test]
    fn on_demand_shift_fields_left_out_take_the_simulated_defaults() {
        let d = spotplan_core::policy::shift::DEFAULT;
        assert_eq!(on_demand_shift(&spec(BASE)).unwrap(), None);
        let all = on_demand_shift(&spec(&format!("{BASE}capacity: {{onDemandShift: {{}}}}\n")));
        assert_eq!(all.unwrap(), Some(d));
        let some = on_demand_shift(&spec(&format!(
            "{BASE}capacity: {{onDemandShift: {{interruptions: 2, calm: 90m}}}}\n"
        )))
        .unwrap()
        .unwrap();
        assert_eq!(some.interruptions, 2);
        assert_eq!(some.window, d.window);
        assert_eq!(some.calm, Duration::from_secs(90 * 60));
        let e = on_demand_shift(&spec(&format!(
            "{BASE}capacity: {{onDemandShift: {{interruptions: 0}}}}\n"
        )))
        .unwrap_err();
        assert_eq!(e.field, "spec.capacity.onDemandShift.interruptions");
        let e = on_demand_shift(&spec(&format!(
            "{BASE}capacity: {{onDemandShift: {{window: 0s}}}}\n"
        )))
        .unwrap_err();
        assert_eq!(e.field, "spec.capacity.onDemandShift.window");
    }

    #[test]
    fn negative_or_unreadable_limits_are_refused() {
        for bad in ["'-1'", "lots"] {
            let s =
                spec(&BASE.replace("name: n}}", &format!("name: n}}, limits: {{cpu: {bad}}}}}")));
            let e = validate(&s, Duration::from_secs(60)).unwrap_err();
            assert_eq!(e.field, "spec.nodePool.limits", "{bad}");
            assert!(e.message.starts_with("cpu: "), "{e}");
        }
        let ok = spec(&BASE.replace("name: n}}", "name: n}, limits: {cpu: '0', memory: 1000Gi}}"));
        assert!(validate(&ok, Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn bad_quantities_name_the_field() {
        let e = request(&spec(&BASE.replace("1.5Gi", "lots"))).unwrap_err();
        assert_eq!(e.field, "spec.resources.memory");
        let e = request(&spec(&BASE.replace("500m", "0"))).unwrap_err();
        assert_eq!(e.to_string(), "spec.resources.cpu: must be greater than 0");
    }

    #[test]
    fn resources_are_bounded_without_wrapping() {
        let r = request(&spec(
            &BASE.replace("500m", "65536").replace("1.5Gi", "256Ti"),
        ))
        .unwrap();
        assert_eq!((r.vcpus, r.memory_mib), (65_536, 256 * 1024 * 1024));
        for (from, to, field) in [
            ("500m", "65537", "spec.resources.cpu"),
            ("500m", "4294967296", "spec.resources.cpu"),
            ("500m", "1e30", "spec.resources.cpu"),
            ("1.5Gi", "257Ti", "spec.resources.memory"),
            ("1.5Gi", "1e30", "spec.resources.memory"),
        ] {
            let e = request(&spec(&BASE.replace(from, to))).unwrap_err();
            assert_eq!(e.field, field, "{to}");
            assert!(e.message.contains("at most"), "{e}");
        }
    }

    #[test]
    fn defaults_and_mapping() {
        let s = spec(&format!(
            "{BASE}mode: fault_tolerance\narchitectures: [arm64]\nmaxInterruptionBand: 2\ninstanceFamilies: [m7g]\nminTypes: 5\n"
        ));
        let r = request(&s).unwrap();
        assert_eq!(r.mode, Mode::FaultTolerance);
        assert_eq!(r.architectures, vec![Arch::Arm64]);
        assert_eq!(r.max_band, Some(2));
        assert_eq!((r.min_types, r.max_types), (5, 20));
        assert_eq!(
            min_narrow_interval(&s, Duration::from_secs(7)).unwrap(),
            Duration::from_secs(7)
        );
    }
}
