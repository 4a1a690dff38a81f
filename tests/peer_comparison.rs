//! spotplan against the real spot-optimizer 1.2.13 on a committed grid of requests.
//!
//! Both read the same Spot Advisor file (served to the peer on 127.0.0.1), both picks are priced
//! from the same CSV, and spotplan runs with its interruption ceiling set to the band of the
//! peer's pick and the same ARM setting. Wherever the peer's pick honours the request, our
//! primary pick must have a band <= and a spot $/h <= the peer's.

mod common;

use spotplan::core::optimizer::{Request, node_count, optimize};
use spotplan::core::types::{Arch, Mode};
use std::process::Command;

#[derive(serde::Deserialize)]
struct Grid {
    requests: Vec<Row>,
}

#[derive(serde::Deserialize, Clone)]
struct Row {
    cores: u32,
    memory: u64,
    region: String,
    mode: String,
    #[serde(default)]
    ssd_only: bool,
    #[serde(default = "yes")]
    arm: bool,
    #[serde(default)]
    families: Vec<String>,
    emr_version: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(serde::Deserialize)]
struct PeerPick {
    instances: PeerInstances,
    reliability: PeerReliability,
}

#[derive(serde::Deserialize)]
struct PeerInstances {
    #[serde(rename = "type")]
    instance_type: String,
    count: u32,
}

#[derive(serde::Deserialize)]
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

/// Why the peer's pick does not honour the request, if it does not.
fn dishonoured(row: &Row, req: &Request, ty: &str) -> Option<String> {
    let catalog = spotplan::Catalog::embedded();
    let Some(t) = catalog.get(ty) else {
        return Some(format!("{ty} is not in the catalog"));
    };
    let region = catalog.region(&row.region).unwrap();
    if !t.spot || !t.offered_in(region) {
        return Some(format!("{ty} is not offered for spot in {}", row.region));
    }
    if !row.arm && t.arch() != Some(Arch::Amd64) {
        return Some(format!("{ty} is ARM but ARM was excluded"));
    }
    if row.ssd_only && !t.has_local_ssd() {
        return Some(format!("{ty} has no local SSD"));
    }
    if !row.families.is_empty() && !row.families.contains(&t.family) {
        return Some(format!("{ty} is outside the families"));
    }
    if let Some(v) = &row.emr_version
        && !catalog.emr_release(v).unwrap().1.supports(t)
    {
        return Some(format!(
            "{ty} is not supported by {v} (the peer ignores the EMR release)"
        ));
    }
    let (lo, hi) = req.mode.node_range(f64::from(req.vcpus), req.memory_gib());
    let n = node_count(req, t);
    if n < lo || n > hi {
        return Some(format!(
            "{ty} needs {n} nodes, outside the mode's {lo}..{hi} by the catalog's specs"
        ));
    }
    None
}

#[test]
fn primary_pick_is_never_worse_than_spot_optimizer() {
    let Some(python) = common::venv_python("peer_comparison") else {
        return;
    };
    let grid_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/grid.json");
    let grid: Grid = serde_json::from_slice(&std::fs::read(&grid_path).unwrap()).unwrap();
    assert!(grid.requests.len() >= 30);

    let url = common::serve_file(&common::advisor_path());
    let db = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/run_peer.py"))
        .arg(&grid_path)
        .env("SPOT_OPTIMIZER_URL", &url)
        .env("SPOT_OPTIMIZER_DB_PATH", db.path().join("peer.db"))
        .output()
        .expect("run spot-optimizer");
    assert!(
        out.status.success(),
        "spot-optimizer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(peer.len(), grid.requests.len());

    let catalog = spotplan::Catalog::embedded();
    let market = common::market();
    let advisor = common::independent_advisor();
    let prices = common::independent_prices();
    let (mut compared, mut skipped, mut ratios, mut failures) =
        (0, Vec::new(), Vec::new(), Vec::new());
    for (i, (row, result)) in grid.requests.iter().zip(&peer).enumerate() {
        let Some(ok) = result.get("ok") else {
            skipped.push(format!("#{i}: the peer found nothing: {}", result["error"]));
            continue;
        };
        let pick: PeerPick = serde_json::from_value(ok.clone()).unwrap();
        let band = pick.reliability.interruption_rate;
        let req = our_request(row, band);
        if let Some(why) = dishonoured(row, &req, &pick.instances.instance_type) {
            skipped.push(format!("#{i}: {why}"));
            continue;
        }
        let price = |ty: &str, count: u32| {
            common::independent_spot_price(&prices, &advisor, &row.region, ty)
                .map(|p| p * f64::from(count))
        };
        let Some(peer_cost) = price(&pick.instances.instance_type, pick.instances.count) else {
            skipped.push(format!(
                "#{i}: the CSV has no price for the peer's {}",
                pick.instances.instance_type
            ));
            continue;
        };
        let plan = optimize(&req, catalog, &market)
            .unwrap_or_else(|e| panic!("#{i}: spotplan found nothing: {e}"));
        let ours = plan.primary();
        let our_cost = price(&ours.instance_type, ours.count).expect("our primary is priced");
        let our_band = ours
            .interruption_band
            .expect("a ceiling excludes unknown bands");
        compared += 1;
        ratios.push(our_cost / peer_cost);
        eprintln!(
            "#{i:2} {:>5} vCPU {:>5} GiB {:<14} {:<15} peer {:>3} x {:<16} band {band} ${peer_cost:>8.4}/h | ours {:>3} x {:<16} band {our_band} ${our_cost:>8.4}/h ({:.2}x)",
            row.cores,
            row.memory,
            row.region,
            row.mode,
            pick.instances.count,
            pick.instances.instance_type,
            ours.count,
            ours.instance_type,
            our_cost / peer_cost
        );
        if our_band > band || our_cost > peer_cost + 1e-9 {
            failures.push(format!(
                "#{i}: ours {} band {our_band} ${our_cost:.4}/h vs peer {} band {band} ${peer_cost:.4}/h",
                ours.instance_type, pick.instances.instance_type
            ));
        }
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    eprintln!(
        "compared {compared} of {} requests; skipped {}; median cost ratio ours/peer {median:.3}",
        grid.requests.len(),
        skipped.len()
    );
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    assert!(
        failures.is_empty(),
        "spotplan's pick was worse than the peer's:\n{}",
        failures.join("\n")
    );
    assert!(
        skipped.len() * 20 <= grid.requests.len(),
        "more than 5% of the grid was skipped:\n{}",
        skipped.join("\n")
    );
}
