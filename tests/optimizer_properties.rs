//! Property tests of the optimizer over random requests, against the real data snapshots and an
//! independent reading of them.

mod common;

use proptest::prelude::*;
use spotplan::core::optimizer::{GpuRequirement, PlanError, Request, optimize};
use spotplan::core::types::{Arch, Mode};
use spotplan::{Catalog, MarketData};
use std::sync::LazyLock;

static MARKET: LazyLock<MarketData> = LazyLock::new(common::market);
static ADVISOR: LazyLock<common::AdvisorTable> = LazyLock::new(common::independent_advisor);
static PRICES: LazyLock<common::PriceRows> = LazyLock::new(common::independent_prices);

const REGIONS: [&str; 6] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "ap-southeast-2",
    "sa-east-1",
    "eu-central-1",
];
const FAMILIES: [&str; 10] = [
    "m6i", "m7i", "c7g", "r6i", "m6g", "c6a", "r7a", "i4i", "m5", "c5d",
];

fn request() -> impl Strategy<Value = Request> {
    (
        1u32..=1024,
        1u32..=4096,
        prop::sample::select(&REGIONS[..]),
        prop::sample::select(&Mode::ALL[..]),
        prop::bool::weighted(0.2),
        prop::option::of(0u8..=4),
        prop::option::weighted(0.3, prop::sample::subsequence(&FAMILIES[..], 1..=3))
            .prop_map(Option::unwrap_or_default),
        prop::option::of(prop::sample::select(vec![Arch::Amd64, Arch::Arm64])),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::weighted(0.2, (5u8..=7, 0u8..=2)),
        prop::option::weighted(
            0.2,
            prop::sample::select(vec!["emr-6.10.0", "emr-7.9.0", "emr-5.36.0"]),
        ),
        prop::option::weighted(0.1, 1u32..=8),
    )
        .prop_map(
            |(v, mem, region, mode, ssd, band, fams, arch, allow, gens, emr, gpus)| {
                let mut r = Request::new(v, u64::from(mem) * 1024, region);
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
                r
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_keeps_its_promises(req in request()) {
        let catalog = Catalog::embedded();
        let plan = match optimize(&req, catalog, &MARKET) {
            Ok(p) => p,
            Err(PlanError::NothingFits { filter, filters, .. }) => {
                // The named filter is the one after which nothing remained.
                let stat = filters.iter().find(|s| s.filter == filter.name()).unwrap();
                prop_assert_eq!(stat.remaining, 0);
                prop_assert!(stat.removed > 0);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
        };
        // Same input, same output.
        prop_assert_eq!(&plan, &optimize(&req, catalog, &MARKET).unwrap());
        prop_assert!(!plan.candidates.is_empty());
        prop_assert!(plan.candidates.len() <= req.max_types);
        let region = catalog.region(&req.region).unwrap();
        let mut names = std::collections::HashSet::new();
        for c in &plan.candidates {
            prop_assert!(names.insert(c.instance_type.clone()), "duplicate {}", c.instance_type);
            let t = catalog.get(&c.instance_type).unwrap();
            // Meets the request on its own.
            prop_assert!(c.count * t.vcpus >= req.vcpus);
            prop_assert!(u64::from(c.count) * t.memory_mib >= req.memory_mib);
            prop_assert!(c.count >= plan.node_count_range.0 && c.count <= plan.node_count_range.1);
            // Never without spot, never outside the region.
            prop_assert!(t.spot && t.offered_in(region));
            // Every filter holds.
            if req.ssd_only { prop_assert!(t.has_local_ssd()); }
            if !req.architectures.is_empty() { prop_assert!(req.architectures.contains(&t.arch().unwrap())); }
            if !req.families.is_empty() { prop_assert!(req.families.contains(&t.family)); }
            if let Some(lo) = req.min_generation { prop_assert!(t.generation >= lo); }
            if let Some(hi) = req.max_generation { prop_assert!(t.generation <= hi); }
            if let Some(emr) = &req.emr_release {
                prop_assert!(catalog.emr_release(emr).unwrap().1.supports(t));
            }
            if let Some(g) = &req.gpus { prop_assert!(t.gpu_count() >= g.min_count); }
            let named = req.families.contains(&t.family);
            if !req.allow_burstable && !named { prop_assert!(!t.burstable); }
            if !req.allow_previous_generation && !named { prop_assert!(t.current_generation); }
            if !req.allow_accelerators && req.gpus.is_none() && !named { prop_assert!(!t.has_accelerators()); }
            // Bands and prices match the files, read independently.
            let adv = ADVISOR.get(&req.region).and_then(|m| m.get(&c.instance_type)).copied();
            prop_assert_eq!(c.interruption_band.map(u64::from), adv.map(|a| a.1));
            if let Some(max) = req.max_band {
                prop_assert!(c.interruption_band.is_some_and(|b| b <= max));
            }
            if let Some((s, _)) = adv { prop_assert_eq!(c.savings_pct, Some(s as i32)); }
            let od = PRICES.get(&(req.region.clone(), c.instance_type.clone())).map(|p| p.0);
            prop_assert_eq!(c.on_demand_usd_per_hour.map(|x| (x * 1e4).round()), od.map(|x| (x * 1e4).round()));
            let spot = common::independent_spot_price(&PRICES, &ADVISOR, &req.region, &c.instance_type);
            match (c.spot_usd_per_hour, spot) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-4, "{} spot {a} vs {b}", c.instance_type),
                (a, b) => prop_assert_eq!(a.is_some(), b.is_some()),
            }
        }
        // The list is in rank order: priced costs never decrease under the cost ranking.
        if plan.ranking == spotplan::core::plan::Ranking::Cost {
            let costs: Vec<f64> = plan.candidates.iter().filter_map(|c| c.total_spot_usd_per_hour).collect();
            prop_assert!(costs.windows(2).all(|w| w[0] <= w[1] + 1e-9));
        }
    }
}

/// The generator must not be degenerate: most requests must produce a plan, or the properties
/// above prove little.
#[test]
fn zz_most_random_requests_produce_plans() {
    let catalog = Catalog::embedded();
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = request();
    let (mut planned, total) = (0, 300);
    for _ in 0..total {
        let req = strategy.new_tree(&mut runner).unwrap().current();
        planned += usize::from(optimize(&req, catalog, &MARKET).is_ok());
    }
    assert!(
        planned * 3 >= total,
        "only {planned} of {total} random requests produced a plan"
    );
    eprintln!("{planned} of {total} random requests produced a plan");
}
