//! Property tests of the optimizer over random requests, against the real data snapshots read
//! independently (moto's own files for the catalog, the advisor and price files by hand): the
//! oracle in `common::indep` restates the README's rules and never calls the product's catalog,
//! filters or parsers. For every request the plan must be exactly the oracle's: the same
//! eligible set, the same counts, the same ranking, the same diversified list.

mod common;
mod parts;

use common::indep::{self, Ask, MotoType};
use proptest::prelude::*;
use spotplan::MarketData;
use spotplan::core::limits;
use spotplan::core::optimizer::{GpuRequirement, PlanError, Request, optimize};
use spotplan::core::render::fleet::{
    self, AllocationStrategy, FleetInput, FleetType, LaunchTemplate, Placement,
};
use spotplan::core::types::{Arch, Mode};
use std::cmp::Ordering;
use std::sync::LazyLock;

static MARKET: LazyLock<MarketData> = LazyLock::new(common::market);

const REGIONS: [&str; 6] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "ap-southeast-2",
    "sa-east-1",
    "eu-central-1",
];
const FAMILIES: [&str; 12] = [
    "m6i", "m7i", "c7g", "r6i", "m6g", "c6a", "r7a", "i4i", "m5", "c5d", "m4", "t3",
];
const EMR: [&str; 3] = ["emr-6.10.0", "emr-7.9.0", "emr-5.36.0"];

/// The per-band premium of each mode, restated from the README ("The objective", rule 3).
fn premium(mode: &str, band: u64) -> f64 {
    let table = match mode {
        "latency" => [1.00, 1.10, 1.25, 1.45, 1.70],
        "balanced" => [1.00, 1.05, 1.12, 1.20, 1.35],
        _ => [1.00, 1.02, 1.04, 1.06, 1.10],
    };
    table[band.min(4) as usize]
}

struct Ranked {
    t: &'static MotoType,
    /// Outside the mode's own range (in by widening): ranks after the types inside.
    widened: bool,
    count: u64,
    band: u64,
    savings: Option<i64>,
    total: Option<f64>,
    score: Option<f64>,
    waste: f64,
}

/// The oracle's plan: eligible types ranked by the README's rules, then diversified by family.
fn oracle(ask: &Ask, min_types: usize, max_types: usize) -> (indep::Eligible, Vec<Ranked>) {
    let constraints = indep::eligible(ask, min_types);
    let eligible = constraints.types.clone();
    let strict = indep::mode_range(ask);
    let priced = eligible
        .iter()
        .any(|(t, _)| indep::spot(&ask.region, &t.name).is_some());
    let mut ranked: Vec<Ranked> = eligible
        .iter()
        .map(|(t, count)| {
            let band = indep::band(&ask.region, &t.name).unwrap_or(4);
            let total = indep::spot(&ask.region, &t.name).map(|p| p * *count as f64);
            let (v, m) = ((*count * t.vcpus) as f64, (*count * t.memory_mib) as f64);
            Ranked {
                t,
                widened: !(strict.0..=strict.1).contains(count),
                count: *count,
                band,
                savings: indep::savings(&ask.region, &t.name),
                score: total.map(|c| {
                    if ask.max_band.is_some() {
                        c
                    } else {
                        c * premium(ask.mode, band)
                    }
                }),
                total,
                waste: ((v - ask.vcpus as f64) / v + (m - ask.memory_mib as f64) / m) * 50.0,
            }
        })
        .collect();
    let by_band_savings = |a: &Ranked, b: &Ranked| {
        a.band
            .cmp(&b.band)
            .then(
                b.savings
                    .unwrap_or(i64::MIN)
                    .cmp(&a.savings.unwrap_or(i64::MIN)),
            )
            .then(a.waste.total_cmp(&b.waste))
            .then(a.t.name.cmp(&b.t.name))
    };
    ranked.sort_by(|a, b| {
        if a.widened != b.widened {
            return a.widened.cmp(&b.widened);
        }
        if !priced {
            return by_band_savings(a, b);
        }
        match (a.score, b.score) {
            (Some(x), Some(y)) => x
                .total_cmp(&y)
                .then(a.band.cmp(&b.band))
                .then(a.waste.total_cmp(&b.waste))
                .then(a.t.name.cmp(&b.t.name)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => by_band_savings(a, b),
        }
    });
    // The best of each family, then the second best of each, ..., kept in rank order.
    let mut taken = vec![false; ranked.len()];
    let mut per_family = std::collections::HashMap::<&str, usize>::new();
    let mut n = 0;
    let mut round = 1;
    while n < max_types.min(ranked.len()) {
        for (i, r) in ranked.iter().enumerate() {
            let k = per_family.entry(r.t.family.as_str()).or_default();
            if n < max_types && !taken[i] && *k < round {
                taken[i] = true;
                *k += 1;
                n += 1;
            }
        }
        round += 1;
    }
    let list = ranked
        .into_iter()
        .zip(taken)
        .filter(|(_, t)| *t)
        .map(|(r, _)| r)
        .collect();
    (constraints, list)
}

fn ask_of(r: &Request) -> Ask {
    Ask {
        vcpus: u64::from(r.vcpus),
        memory_mib: r.memory_mib,
        region: r.region.clone(),
        mode: match r.mode {
            Mode::Latency => "latency",
            Mode::Balanced => "balanced",
            Mode::FaultTolerance => "fault_tolerance",
        },
        ssd_only: r.ssd_only,
        archs: r.architectures.iter().map(|a| a.as_str()).collect(),
        families: r.families.clone(),
        emr: r.emr_release.clone(),
        max_band: r.max_band.map(u64::from),
        gpus: r.gpus.as_ref().map(|g| u64::from(g.min_count)),
        min_generation: r.min_generation,
        max_generation: r.max_generation,
        allow_burstable: r.allow_burstable,
        allow_previous_generation: r.allow_previous_generation,
        allow_accelerators: r.allow_accelerators,
    }
}

/// vCPUs: mostly everyday sizes, sometimes up to the documented bound.
fn vcpus() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => 1u32..=1024,
        1 => 1024u32..=limits::MAX_VCPUS,
        1 => Just(limits::MAX_VCPUS),
    ]
}

fn memory_gib() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 1u64..=4096,
        1 => 4096u64..=u64::from(limits::MAX_MEMORY_GIB),
        1 => Just(u64::from(limits::MAX_MEMORY_GIB)),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        (vcpus(), memory_gib()),
        prop::sample::select(&REGIONS[..]),
        prop::sample::select(&Mode::ALL[..]),
        prop::bool::weighted(0.2),
        prop::option::of(0u8..=4),
        prop::option::weighted(0.3, prop::sample::subsequence(&FAMILIES[..], 1..=3))
            .prop_map(Option::unwrap_or_default),
        prop::option::of(prop::sample::select(vec![Arch::Amd64, Arch::Arm64])),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::weighted(0.2, (5u8..=7, 0u8..=2)),
        prop::option::weighted(0.2, prop::sample::select(&EMR[..])),
        prop::option::weighted(0.1, 1u32..=8),
        (1usize..=limits::MAX_TYPES, 0usize..=20),
    )
        .prop_map(
            |(
                (v, mem),
                region,
                mode,
                ssd,
                band,
                fams,
                arch,
                allow,
                gens,
                emr,
                gpus,
                (min, more),
            )| {
                let mut r = Request::new(v, mem * 1024, region);
                r.mode = mode;
                r.ssd_only = ssd;
                r.max_band = band;
                r.families = fams.into_iter().map(String::from).collect();
                r.architectures = arch.into_iter().collect();
                (
                    r.allow_burstable,
                    r.allow_previous_generation,
                    r.allow_accelerators,
                ) = allow;
                if let Some((lo, span)) = gens {
                    r.min_generation = Some(lo);
                    r.max_generation = Some(lo + span);
                }
                r.emr_release = emr.map(String::from);
                r.gpus = gpus.map(|n| GpuRequirement {
                    min_count: n,
                    manufacturer: None,
                });
                r.min_types = min;
                r.max_types = (min + more).min(limits::MAX_TYPES);
                r
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_is_the_oracles(req in request()) {
        let ask = ask_of(&req);
        let (constraints, want) = oracle(&ask, req.min_types, req.max_types);
        let eligible = constraints.types.len();
        let plan = match optimize(&req, &MARKET) {
            Ok(p) => p,
            Err(PlanError::NothingFits { filter, filters, .. }) => {
                prop_assert_eq!(eligible, 0, "the oracle finds {} eligible types", eligible);
                let stat = filters.iter().find(|s| s.filter == filter.name()).unwrap();
                prop_assert_eq!(stat.remaining, 0);
                prop_assert!(stat.removed > 0);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
        };
        // Same input, same output.
        prop_assert_eq!(&plan, &optimize(&req, &MARKET).unwrap());
        prop_assert_eq!(plan.eligible_types, eligible);
        // The constraints are the README's: the ceiling and where it came from, the range.
        prop_assert_eq!(plan.interruption_ceiling.band.map(u64::from), constraints.ceiling);
        let source = serde_json::to_value(plan.interruption_ceiling.source).unwrap();
        prop_assert_eq!(source.as_str().unwrap(), constraints.source);
        prop_assert_eq!(
            (u64::from(plan.node_count_range.0), u64::from(plan.node_count_range.1)),
            constraints.range
        );
        // Set-level risk: every listed type is within the ceiling; under a default cap that
        // was not relaxed, within the mode's cap; a relaxation is said in the notes and only
        // happens below minTypes.
        let cap = indep::default_cap(ask.mode);
        for c in &plan.candidates {
            let band = indep::band(&req.region, &c.instance_type);
            if let Some(max) = constraints.ceiling {
                prop_assert!(band.is_some_and(|b| b <= max), "{} band {band:?} over {max}", c.instance_type);
            }
            if constraints.source == "mode" {
                prop_assert!(band.is_some_and(|b| b <= cap));
            }
        }
        let relaxed = plan.notes.iter().any(|n| n.contains("relaxed it to"));
        prop_assert_eq!(relaxed, constraints.source == "relaxed");
        if relaxed {
            let at_cap = indep::eligible(&Ask { max_band: Some(cap), ..ask.clone() }, req.min_types);
            prop_assert!(at_cap.types.len() < req.min_types, "relaxed with {} types at the cap", at_cap.types.len());
        }
        // Widening never goes past its bound and is said.
        let strict = indep::mode_range(&ask);
        let bound = (strict.0 / 2).max(1);
        prop_assert!(constraints.range.0 + bound >= strict.0 && constraints.range.1 <= strict.1 + bound);
        prop_assert_eq!(
            constraints.range != strict,
            plan.notes.iter().any(|n| n.contains("the range was widened")),
        );
        // Diversity: as many types as the request allows, up to maxTypes.
        prop_assert_eq!(plan.candidates.len(), eligible.min(req.max_types));
        prop_assert_eq!(plan.diversity.meets_min_types, plan.candidates.len() >= req.min_types);
        let names: Vec<&str> = plan.candidates.iter().map(|c| c.instance_type.as_str()).collect();
        let oracle_names: Vec<&str> = want.iter().map(|r| r.t.name.as_str()).collect();
        prop_assert_eq!(&names, &oracle_names, "ranking or diversity differs from the oracle");
        for (c, o) in plan.candidates.iter().zip(&want) {
            let t = o.t;
            // The count formula, exactly, and totals that meet the request.
            prop_assert_eq!(u64::from(c.count), o.count, "{}", c.instance_type);
            prop_assert_eq!(c.total_vcpus, o.count * t.vcpus);
            prop_assert!(c.total_vcpus >= u64::from(req.vcpus));
            prop_assert!(o.count * t.memory_mib >= req.memory_mib);
            // Band, savings and prices match the files.
            prop_assert_eq!(c.interruption_band.map(u64::from), indep::band(&req.region, &t.name));
            if let Some(s) = o.savings {
                prop_assert_eq!(c.savings_pct.map(i64::from), Some(s));
            }
            match (c.total_spot_usd_per_hour, o.total) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-3, "{} {a} vs {b}", t.name),
                (a, b) => prop_assert_eq!(a.is_some(), b.is_some()),
            }
            prop_assert_eq!(c.arch.as_str(), t.arch.unwrap());
        }
    }
}

/// A fleet format: its name, its override limit, overrides per type, and its (type, weight)s.
type Form = (&'static str, usize, usize, Vec<(String, f64)>);

/// A random placement: none (the launch template's), 1 to 6 subnets, or 1 to 3 zones.
fn placement() -> impl Strategy<Value = Placement> {
    prop_oneof![
        1 => Just(Placement::Template),
        3 => (1usize..=6).prop_map(|n| Placement::Subnets((0..n).map(|i| format!("subnet-0{i}")).collect())),
        1 => (1usize..=3).prop_map(|n| Placement::Zones((0..n).map(|i| format!("zone-{i}")).collect())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every fleet format: the overrides are exactly the plan's best types that fit the API's
    /// limit, once per subnet or zone; each weight is the type's vCPUs, or what its memory
    /// covers when it runs short (restated from moto's type data, not the product's catalog);
    /// the target is the request's vCPUs; and any mix of nodes whose weights reach the target
    /// holds the vCPUs and the memory asked for.
    #[test]
    fn fleets_carry_the_plan_within_the_api_limits(req in request(), placement in placement(), base in 0u32..=64) {
        let Ok(plan) = optimize(&req, &MARKET) else { return Ok(()) };
        let per_type = match &placement {
            Placement::Subnets(s) => s.len(),
            Placement::Zones(z) => z.len(),
            Placement::Template => 1,
        };
        let input = FleetInput {
            name: "prop".into(),
            launch_template: LaunchTemplate::parse("lt-0abc", "$Latest"),
            placement: placement.clone(),
            on_demand_base_vcpus: base,
            on_demand_percentage: 0,
            allocation_strategy: AllocationStrategy::PriceCapacityOptimized,
            fleet_type: FleetType::Maintain,
            fleet_role: None,
            valid_until: None,
        };
        let (ec2, _) = fleet::ec2_fleet(&plan, &input);
        let (spot, _) = fleet::spot_fleet(&plan, &input, "arn:aws:iam::1:role/r");
        let (asg, _) = fleet::auto_scaling_group(&plan, &input);
        let spot = spot.spot_fleet_request_config;
        let asg_weights: Vec<(String, f64)> = asg.mixed_instances_policy.launch_template.overrides.iter()
            .map(|o| (o.instance_type.clone(), o.weighted_capacity.parse().unwrap()))
            .collect();
        let forms: [Form; 3] = [
            ("ec2-fleet", fleet::EC2_FLEET_MAX_OVERRIDES, per_type,
                ec2.launch_template_configs[0].overrides.iter().map(|o| (o.instance_type.clone(), o.weighted_capacity)).collect()),
            ("spot-fleet", fleet::SPOT_FLEET_MAX_OVERRIDES, per_type,
                spot.launch_template_configs[0].overrides.iter().map(|o| (o.instance_type.clone(), o.weighted_capacity)).collect()),
            ("asg", fleet::ASG_MAX_TYPES, 1, asg_weights),
        ];
        let (v, m) = (f64::from(req.vcpus), req.memory_mib as f64);
        for (form, limit, per, overrides) in forms {
            prop_assert!(overrides.len() <= limit, "{form}: {} overrides", overrides.len());
            let keep = plan.candidates.len().min((limit / per).max(1));
            prop_assert_eq!(overrides.len(), keep * per, "{}", form);
            for (i, c) in plan.candidates.iter().take(keep).enumerate() {
                for (ty, w) in &overrides[i * per..(i + 1) * per] {
                    prop_assert_eq!(ty, &c.instance_type, "{}: order", form);
                    let t = &indep::TYPES[ty.as_str()];
                    let (tv, tm) = (t.vcpus as f64, t.memory_mib as f64);
                    // Never more than the node's vCPUs, or than its memory covers at the
                    // request's ratio: so reaching the target covers vCPUs and memory.
                    prop_assert!(*w >= 1.0 && *w <= tv, "{form}: {ty} weight {w} of {tv} vCPUs");
                    prop_assert!(*w <= (tm * v / m).max(1.0) + 1e-9, "{form}: {ty} weight {w} over its memory");
                    if tm * v >= m * tv {
                        prop_assert_eq!(*w, tv, "{}: {} has the memory for all its vCPUs", form, ty);
                    } else {
                        prop_assert!(*w > tm * v / m - 1.0, "{form}: {ty} weight {w} rounds down by less than 1");
                    }
                }
            }
        }
        let on_demand = base.min(req.vcpus);
        prop_assert_eq!(ec2.target_capacity_specification.total_target_capacity, req.vcpus);
        prop_assert_eq!(ec2.target_capacity_specification.on_demand_target_capacity, on_demand);
        prop_assert_eq!((spot.target_capacity, spot.on_demand_target_capacity), (req.vcpus, on_demand));
        prop_assert_eq!((asg.min_size, asg.desired_capacity), (req.vcpus, req.vcpus));
        prop_assert_eq!(asg.mixed_instances_policy.instances_distribution.on_demand_base_capacity, on_demand);
    }
}

/// A `priceAdjustment` as Karpenter's `AdjustedPrice` reads it (restated here, not the
/// product's parser): `+N%` or `-N%` scales, `+X`/`-X` adds, never below zero.
fn karpenter_adjusted(price: f64, change: &str) -> f64 {
    let (sign, rest) = match &change[..1] {
        "+" => (1.0, &change[1..]),
        "-" => (-1.0, &change[1..]),
        _ => return change.parse().unwrap(),
    };
    let out = match rest.strip_suffix('%') {
        Some(p) => price * (1.0 + sign * p.parse::<f64>().unwrap() / 100.0),
        None => price + sign * rest.parse::<f64>().unwrap(),
    };
    out.max(0.0)
}

/// Karpenter's CRD pattern for `priceAdjustment` (karpenter.sh_nodeoverlays.yaml, v1.14.1).
const PRICE_ADJUSTMENT_PATTERN: &str =
    r"^(([+-]{1}(\d*\.?\d+))|(\+{1}\d*\.?\d+%)|(^(-\d{1,2}(\.\d+)?%)$)|(-100%))$";

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Risk pricing: read back as Karpenter reads it, every overlay's adjustment matches its
    /// CRD pattern and is finite and not negative; each listed type is in exactly one type
    /// level; the adjusted cost of the request (unit price x adjustment x count) strictly rises
    /// down the plan's ranking; every overlay is pinned to its own NodePool and nothing else.
    #[test]
    fn overlays_order_karpenters_prices_as_the_plan_ranks(req in request(), pool in "[a-z][a-z0-9-]{0,20}[a-z0-9]") {
        use spotplan::core::policy::pricing;
        use spotplan::core::render::overlay;
        let Ok(plan) = optimize(&req, &MARKET) else { return Ok(()) };
        let listed: Vec<String> = plan.candidates.iter().map(|c| c.instance_type.clone()).collect();
        let p = pricing::price(&plan, &listed, &[], &[], &pricing::DEFAULT_LEARNED, jiff::Timestamp::UNIX_EPOCH);
        let pattern = regex::Regex::new(PRICE_ADJUSTMENT_PATTERN).unwrap();
        let specs = overlay::overlay_specs(&pool, &p);
        prop_assert!(specs.len() <= pricing::MAX_TYPE_LEVELS);
        let mut adjustment_of: std::collections::BTreeMap<String, String> = Default::default();
        for (name, spec) in &specs {
            let prefix = format!("{pool}-risk-");
            prop_assert!(name.starts_with(&prefix), "{}", name);
            let adj = spec["priceAdjustment"].as_str().unwrap();
            prop_assert!(pattern.is_match(adj), "{adj}");
            let factor = karpenter_adjusted(1.0, adj);
            prop_assert!(factor.is_finite() && factor >= 1.0, "{adj}");
            let reqs = spec["requirements"].as_array().unwrap();
            let pools: Vec<&serde_json::Value> = reqs.iter().filter(|r| r["key"] == "karpenter.sh/nodepool").collect();
            prop_assert_eq!(pools.len(), 1);
            prop_assert_eq!(&pools[0]["operator"], "In");
            prop_assert_eq!(&pools[0]["values"], &serde_json::json!([pool.clone()]));
            for r in reqs {
                prop_assert!(r["operator"] == "In" && !r["values"].as_array().unwrap().is_empty());
            }
            let types = reqs.iter().find(|r| r["key"] == "node.kubernetes.io/instance-type").unwrap();
            for t in types["values"].as_array().unwrap() {
                let old = adjustment_of.insert(t.as_str().unwrap().to_string(), adj.to_string());
                prop_assert!(old.is_none(), "{t} in two type levels");
            }
        }
        prop_assert_eq!(adjustment_of.len(), listed.len());
        // Inexact only when the levels had to be merged.
        prop_assert!(p.exact || p.type_levels.len() == pricing::MAX_TYPE_LEVELS);
        if p.exact {
            let mut prev: Option<f64> = None;
            for c in &plan.candidates {
                let Some(unit) = c.spot_usd_per_hour else { continue };
                let total = karpenter_adjusted(unit, &adjustment_of[&c.instance_type]) * f64::from(c.count);
                if let Some(prev) = prev {
                    prop_assert!(total > prev, "{} (rank {}) costs {total} adjusted, not above {prev}", c.instance_type, c.rank);
                }
                prev = Some(total);
            }
        }
    }
}

/// Every spot type moto lists, by name (the pool kept types are drawn from).
static SPOT_TYPES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut v: Vec<String> = indep::TYPES
        .values()
        .filter(|t| t.spot)
        .map(|t| t.name.clone())
        .collect();
    v.sort();
    v
});

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Types written but no longer planned (kept by the churn rule) are last wherever Karpenter
    /// compares them: for the request (adjusted price x count above every planned type's), and
    /// node for node, above every planned type at least as large in vCPUs and memory, since a
    /// NodeClaim that could take the kept type could take those too. Sizes and prices are read
    /// from moto's files and the price file, not from the plan.
    #[test]
    fn kept_types_come_last_for_the_request_and_node_for_node(
        req in request(),
        extra in prop::sample::subsequence(SPOT_TYPES.clone(), 0..=40),
    ) {
        use spotplan::core::policy::pricing;
        let Ok(plan) = optimize(&req, &MARKET) else { return Ok(()) };
        let region = req.region.as_str();
        let offered = indep::offered(region);
        let mut listed: Vec<String> = plan.candidates.iter().map(|c| c.instance_type.clone()).collect();
        let planned = listed.len();
        for t in extra {
            if offered.contains(&t) && indep::spot(region, &t).is_some() && !listed.contains(&t) {
                listed.push(t);
            }
        }
        let kept = pricing::kept(&req, &MARKET, &plan, &listed);
        let p = pricing::price(&plan, &listed, &kept, &[], &pricing::DEFAULT_LEARNED, jiff::Timestamp::UNIX_EPOCH);
        let adjustment: std::collections::BTreeMap<&str, String> = p
            .type_levels
            .iter()
            .flat_map(|l| l.types.iter().map(move |t| (t.as_str(), l.adjustment())))
            .collect();
        prop_assert_eq!(adjustment.len(), listed.len());
        let node = |t: &str| indep::spot(region, t).map(|u| karpenter_adjusted(u, &adjustment[t]));
        let size = |t: &str| (indep::TYPES[t].vcpus, indep::TYPES[t].memory_mib);
        let total = |t: &str| {
            let c = plan.candidates.iter().find(|c| c.instance_type == t).map(|c| c.count);
            let count = c.unwrap_or_else(|| kept.iter().find(|k| k.instance_type == t).unwrap().count);
            node(t).map(|n| n * f64::from(count))
        };
        let dearest_planned = listed[..planned].iter().filter_map(|t| total(t)).fold(0.0, f64::max);
        for k in &listed[planned..] {
            let (Some(k_node), Some(k_total)) = (node(k), total(k)) else { continue };
            prop_assert!(k_total > dearest_planned, "{k}: {k_total} for the request, not above {dearest_planned}");
            let (kv, km) = size(k);
            for q in &listed[..planned] {
                let (qv, qm) = size(q);
                if qv < kv || qm < km {
                    continue;
                }
                let Some(q_node) = node(q) else { continue };
                prop_assert!(k_node > q_node, "kept {k} ({}) costs {k_node} a node, not above planned {q} ({}) at {q_node}", adjustment[k.as_str()], adjustment[q.as_str()]);
            }
        }
    }
}

/// The generator must not be degenerate: most requests must produce a plan, some must reach
/// the bounds, or the property above proves little.
#[test]
fn zz_random_requests_cover_plans_and_bounds() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = request();
    let (mut planned, mut at_bound, total) = (0, 0, 400);
    for _ in 0..total {
        let req = strategy.new_tree(&mut runner).unwrap().current();
        at_bound +=
            usize::from(req.vcpus == limits::MAX_VCPUS || req.memory_mib == limits::MAX_MEMORY_MIB);
        planned += usize::from(optimize(&req, &MARKET).is_ok());
    }
    assert!(
        planned * 3 >= total,
        "only {planned} of {total} random requests produced a plan"
    );
    assert!(
        at_bound >= 10,
        "only {at_bound} requests reached the bounds"
    );
    eprintln!("{planned} of {total} random requests produced a plan; {at_bound} at a bound");
}

/// Above the bounds, every surface refuses with the field named; nothing wraps.
#[test]
fn requests_above_the_bounds_are_refused() {
    let mut r = Request::new(limits::MAX_VCPUS + 1, 1024, "us-east-1");
    let e = optimize(&r, &MARKET).unwrap_err();
    assert_eq!(e.field().unwrap().flag(), "--cores");
    r.vcpus = u32::MAX;
    assert!(optimize(&r, &MARKET).is_err());
    r.vcpus = 4;
    r.memory_mib = limits::MAX_MEMORY_MIB + 1;
    let e = optimize(&r, &MARKET).unwrap_err();
    assert_eq!(e.field().unwrap().spec_path(), "spec.resources.memory");
}

/// The default ranking on the request the README quotes: risk-adjusted cost, never decreasing.
#[test]
fn default_ranking_orders_by_risk_adjusted_cost() {
    let req = Request::new(64, 256 * 1024, "us-east-1");
    let plan = optimize(&req, &MARKET).unwrap();
    let ask = ask_of(&req);
    let scores: Vec<f64> = plan
        .candidates
        .iter()
        .map(|c| {
            let spot = indep::spot("us-east-1", &c.instance_type).unwrap();
            let band = indep::band("us-east-1", &c.instance_type).unwrap_or(4);
            spot * f64::from(c.count) * premium(ask.mode, band)
        })
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] <= w[1] + 1e-12),
        "{scores:?}"
    );
    assert!(plan.candidates.len() >= 15);
}
