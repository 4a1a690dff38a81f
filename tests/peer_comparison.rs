//! spotplan against the real spot-optimizer 1.2.13 on 240 requests drawn from a fixed seed.
//!
//! Both read the same Spot Advisor file (served to the peer on 127.0.0.1), both picks are priced
//! from the same CSV read by hand, and spotplan runs with its interruption ceiling set to the band
//! of the peer's pick and the same ARM setting. 40 of the requests go through the peer's CLI with
//! its default flags (which leave ARM out), the rest through its API. Whether the peer's pick
//! honours a request is decided from moto's own data (`common::indep`), never from spotplan's
//! catalog. A peer crash fails the test. A pick that breaks the request (its ARM `.metal`
//! misclassification, its ignored EMR release) is the peer's error: it is counted, and spotplan
//! must plan that request within it. A pick the data cannot judge (a type moto lacks, no price)
//! is skipped with its reason, at most 5% of the requests. Wherever we compare, our primary
//! pick must have a band <= and a spot $/h <= the peer's, and the median of our cost over the
//! peer's must be <= 0.8.

mod common;
mod parts;

use common::indep;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use spotplan::core::optimizer::{Request, optimize};
use spotplan::core::types::{Arch, Mode};
use std::process::Command;

const REQUESTS: usize = 240;
const CLI_REQUESTS: usize = 40;
const SEED: [u8; 32] = *b"spotplan-vs-spot-optimizer-seed!";

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Row {
    cores: u32,
    memory: u64,
    region: String,
    mode: String,
    #[serde(default)]
    ssd_only: bool,
    arm: bool,
    #[serde(default)]
    families: Vec<String>,
    emr_version: Option<String>,
    /// Through the peer's CLI with default flags.
    #[serde(default)]
    cli: bool,
}

/// Regions both the catalog (moto's offerings) and the advisor file know.
const REGIONS: [&str; 12] = [
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "eu-north-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "ap-south-1",
    "ca-central-1",
    "sa-east-1",
    "eu-west-2",
];
const FAMILIES: [&str; 14] = [
    "m6i", "m7i", "m6a", "m7g", "c6i", "c7i", "c7g", "r6i", "r7i", "r6g", "m5", "c5", "r5", "m6g",
];
const MODES: [&str; 3] = ["latency", "balanced", "fault_tolerance"];

fn rows() -> Vec<Row> {
    let cores = proptest::prop_oneof![
        Just(2u32),
        Just(4),
        Just(8),
        Just(16),
        Just(32),
        Just(48),
        Just(64),
        Just(96),
        Just(128),
        Just(256),
        1u32..=512
    ];
    let ratio = proptest::sample::select(vec![1u64, 2, 4, 8]);
    let api = (
        cores,
        ratio,
        proptest::sample::select(&REGIONS[..]),
        proptest::sample::select(&MODES[..]),
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.7),
        proptest::option::weighted(0.2, proptest::sample::subsequence(&FAMILIES[..], 1..=4)),
        proptest::option::weighted(
            0.1,
            proptest::sample::select(vec!["emr-6.10.0", "emr-7.9.0", "emr-6.15.0"]),
        ),
    )
        .prop_map(|(cores, ratio, region, mode, ssd, arm, fams, emr)| Row {
            cores,
            memory: u64::from(cores) * ratio,
            region: region.into(),
            mode: mode.into(),
            ssd_only: ssd,
            arm,
            families: fams
                .unwrap_or_default()
                .into_iter()
                .map(String::from)
                .collect(),
            emr_version: emr.map(String::from),
            cli: false,
        });
    use proptest::prelude::Just;
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    (0..REQUESTS)
        .map(|i| {
            let mut row = api.new_tree(&mut runner).unwrap().current();
            if i % (REQUESTS / CLI_REQUESTS) == 0 {
                // The peer's CLI with default flags: no SSD, family or EMR filter, ARM left out.
                row = Row {
                    ssd_only: false,
                    arm: false,
                    families: vec![],
                    emr_version: None,
                    cli: true,
                    ..row
                };
            }
            row
        })
        .collect()
}

#[derive(Deserialize)]
struct PeerPick {
    instances: PeerInstances,
    reliability: PeerReliability,
}

#[derive(Deserialize)]
struct PeerInstances {
    #[serde(rename = "type")]
    instance_type: String,
    count: u64,
}

#[derive(Deserialize)]
struct PeerReliability {
    interruption_rate: u8,
}

/// The request in spotplan's terms. The peer has no default exclusions (burstable, previous
/// generation, accelerators), so neither does this request: the peer's pick is in our universe.
fn our_request(row: &Row, max_band: u8) -> Request {
    let mut r = Request::new(row.cores, row.memory * 1024, row.region.clone());
    r.mode = row.mode.parse::<Mode>().unwrap();
    r.ssd_only = row.ssd_only;
    r.architectures = if row.arm { vec![] } else { vec![Arch::Amd64] };
    r.families = row.families.clone();
    r.emr_release = row.emr_version.clone();
    r.max_band = Some(max_band);
    r.allow_burstable = true;
    r.allow_previous_generation = true;
    r.allow_accelerators = true;
    r
}

/// Why a pick cannot be judged, or does not honour the request, judged from moto's data.
enum Verdict {
    /// The data cannot judge it (skipped).
    Unknown(String),
    /// It breaks the request (the peer's error).
    Breaks(String),
}

fn dishonoured(row: &Row, ty: &str, count: u64) -> Option<Verdict> {
    let Some(t) = indep::TYPES.get(ty) else {
        return Some(Verdict::Unknown(format!(
            "{ty} is not in moto's DescribeInstanceTypes data"
        )));
    };
    breaks(row, t, ty, count).map(Verdict::Breaks)
}

fn breaks(row: &Row, t: &indep::MotoType, ty: &str, count: u64) -> Option<String> {
    if !t.spot || !indep::offered(&row.region).contains(ty) {
        return Some(format!("{ty} is not offered for spot in {}", row.region));
    }
    if !row.arm && t.arch != Some("amd64") {
        return Some(format!("{ty} is ARM but ARM was left out"));
    }
    if row.ssd_only && !t.ssd {
        return Some(format!("{ty} has no local SSD"));
    }
    if !row.families.is_empty() && !row.families.contains(&t.family) {
        return Some(format!("{ty} is outside the families"));
    }
    if let Some(v) = &row.emr_version
        && !indep::EMR[v].contains(ty)
    {
        return Some(format!(
            "{ty} is not supported by {v} (the peer ignores the EMR release)"
        ));
    }
    let ask = indep::Ask {
        vcpus: u64::from(row.cores),
        memory_mib: row.memory * 1024,
        region: row.region.clone(),
        mode: MODES.iter().find(|m| **m == row.mode).unwrap(),
        ..Default::default()
    };
    let (lo, hi) = indep::mode_range(&ask);
    let n = indep::count(&ask, t);
    if n != count || n < lo || n > hi {
        return Some(format!(
            "{ty} x{count}: by moto's specs it needs {n} nodes (mode range {lo}..{hi})"
        ));
    }
    None
}

#[test]
fn primary_pick_is_never_worse_and_costs_less_than_spot_optimizer() {
    let Some(python) = common::venv_python("peer_comparison") else {
        return;
    };
    let rows = rows();
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests.json");
    std::fs::write(
        &requests,
        serde_json::to_vec(&serde_json::json!({ "requests": rows })).unwrap(),
    )
    .unwrap();
    let url = common::serve_file(&common::advisor_path());
    let out = Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/run_peer.py"))
        .arg(&requests)
        .env("SPOT_OPTIMIZER_URL", &url)
        .env("SPOT_OPTIMIZER_DB_PATH", dir.path().join("peer.db"))
        .output()
        .expect("run spot-optimizer");
    assert!(
        out.status.success(),
        "spot-optimizer's runner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(peer.len(), rows.len());

    let market = common::market();
    // Live spot prices stand in as the price snapshot: the cost of planning blind (advisor only,
    // as in an account with neither --aws nor a price file), judged at those prices.
    let blind_market = common::market_without_prices();
    let mut blind_ratios = vec![];
    let (mut compared, mut skipped, mut ratios, mut failures) = (0, vec![], vec![], vec![]);
    let (mut peer_none, mut peer_wrong) = (0, vec![]);
    for (i, (row, result)) in rows.iter().zip(&peer).enumerate() {
        if let Some(crash) = result.get("crash") {
            failures.push(format!("#{i} {row:?}: the peer crashed: {crash}"));
            continue;
        }
        let Some(ok) = result.get("ok") else {
            // The peer found nothing; we may well find something (ARM, more types): no cost to
            // compare.
            peer_none += 1;
            continue;
        };
        let pick: PeerPick = serde_json::from_value(ok.clone()).unwrap();
        let band = pick.reliability.interruption_rate;
        match dishonoured(row, &pick.instances.instance_type, pick.instances.count) {
            Some(Verdict::Unknown(why)) => {
                skipped.push(format!("#{i}: {why}"));
                continue;
            }
            Some(Verdict::Breaks(why)) => {
                // spotplan must plan this request within it, at any band.
                if let Err(e) = optimize(&our_request(row, 4), &market) {
                    failures.push(format!(
                        "#{i}: the peer broke the request ({why}) and spotplan found nothing: {e}"
                    ));
                }
                peer_wrong.push(format!("#{i}: {why}"));
                continue;
            }
            None => {}
        }
        let price = |ty: &str, count: u64| indep::spot(&row.region, ty).map(|p| p * count as f64);
        let Some(peer_cost) = price(&pick.instances.instance_type, pick.instances.count) else {
            skipped.push(format!(
                "#{i}: the price file has no price for the peer's {} in {}",
                pick.instances.instance_type, row.region
            ));
            continue;
        };
        let plan = match optimize(&our_request(row, band), &market) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("#{i} {row:?}: spotplan found nothing: {e}"));
                continue;
            }
        };
        let ours = plan.primary();
        let our_cost =
            price(&ours.instance_type, u64::from(ours.count)).expect("our pick is priced");
        let our_band =
            indep::band(&row.region, &ours.instance_type).expect("a ceiling needs a band");
        compared += 1;
        ratios.push(our_cost / peer_cost);
        if let Ok(blind) = optimize(&our_request(row, band), &blind_market) {
            let b = blind.primary();
            if let Some(blind_cost) = price(&b.instance_type, u64::from(b.count)) {
                if blind_cost + 1e-9 < our_cost {
                    failures.push(format!(
                        "#{i}: planned with prices, ours ${our_cost:.4}/h is dearer than planned blind ({} ${blind_cost:.4}/h)",
                        b.instance_type
                    ));
                }
                blind_ratios.push(blind_cost / our_cost);
            }
        }
        eprintln!(
            "#{i:3} {:>4} vCPU {:>5} GiB {:<14} {:<15}{} peer {:>3} x {:<16} band {band} ${peer_cost:>8.4}/h | ours {:>3} x {:<16} band {our_band} ${our_cost:>8.4}/h ({:.2}x)",
            row.cores,
            row.memory,
            row.region,
            row.mode,
            if row.cli { " cli" } else { "    " },
            pick.instances.count,
            pick.instances.instance_type,
            ours.count,
            ours.instance_type,
            our_cost / peer_cost
        );
        if our_band > u64::from(band) || our_cost > peer_cost + 1e-9 {
            failures.push(format!(
                "#{i}: ours {} band {our_band} ${our_cost:.4}/h vs peer {} band {band} ${peer_cost:.4}/h",
                ours.instance_type, pick.instances.instance_type
            ));
        }
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    eprintln!(
        "compared {compared} of {} requests ({CLI_REQUESTS} through the peer's CLI); the peer found nothing for {peer_none}; its pick broke the request {} times; skipped {}; median cost ratio ours/peer {median:.3}",
        rows.len(),
        peer_wrong.len(),
        skipped.len()
    );
    blind_ratios.sort_by(f64::total_cmp);
    eprintln!(
        "plan cost with and without price data ({} requests, at the peer's band, judged at the price snapshot): \
         planned blind (advisor only) the primary costs {:.2}x (median) and up to {:.2}x of the plan made with prices",
        blind_ratios.len(),
        blind_ratios
            .get(blind_ratios.len() / 2)
            .copied()
            .unwrap_or(f64::NAN),
        blind_ratios.last().copied().unwrap_or(f64::NAN)
    );
    for w in &peer_wrong {
        eprintln!("the peer's pick broke the request {w}");
    }
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        skipped.len() * 20 <= rows.len(),
        "more than 5% of the requests were skipped:\n{}",
        skipped.join("\n")
    );
    assert!(
        compared * 10 >= rows.len() * 8,
        "only {compared} of {} compared",
        rows.len()
    );
    assert!(
        !peer_wrong.is_empty(),
        "the grid holds no witness of the peer's known errors"
    );
    assert!(median <= 0.8, "median cost ratio {median:.3} is above 0.8");
}
