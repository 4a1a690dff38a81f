//! `spotplan backtest --simulate-interruptions` over the real 2022 Spot Advisor series: the
//! simulated stream checked against the model as the README states it (the snapshot files, the
//! price CSV and moto's instance data read here, never through spotplan), and the defaults of
//! `onDemandShift` re-derived from the simulation by the README's rule. Figures are printed
//! (`--nocapture`).

mod common;
mod parts;

use common::indep::{self, Ask};
use serde_json::Value;
use std::sync::LazyLock;

const FROM: &str = "2022-01-01";
/// The model's rate per band, as the README states it: each band's midpoint, 25% for band 4
/// and unknown.
const RATE: [f64; 5] = [0.025, 0.075, 0.125, 0.175, 0.25];
const HOURS_PER_MONTH: f64 = 30.44 * 24.0;

/// The requests the defaults are chosen over (README): small to large fleets in three regions.
const MIX: [(&str, u64, u64, &str); 12] = [
    ("us-east-1", 128, 512, "latency"),
    ("us-east-1", 512, 2048, "balanced"),
    ("us-east-1", 2048, 8192, "balanced"),
    ("us-east-1", 512, 2048, "fault_tolerance"),
    ("us-west-2", 128, 512, "latency"),
    ("us-west-2", 512, 2048, "balanced"),
    ("us-west-2", 2048, 8192, "balanced"),
    ("us-west-2", 512, 2048, "fault_tolerance"),
    ("eu-west-1", 128, 512, "latency"),
    ("eu-west-1", 512, 2048, "balanced"),
    ("eu-west-1", 2048, 8192, "balanced"),
    ("eu-west-1", 512, 2048, "fault_tolerance"),
];

fn request_args(r: &(&str, u64, u64, &str)) -> Vec<String> {
    let (region, cores, gib, mode) = r;
    vec![
        "--region".into(),
        region.to_string(),
        "--cores".into(),
        cores.to_string(),
        "--memory".into(),
        gib.to_string(),
        "--mode".into(),
        mode.to_string(),
    ]
}

fn run(req: &(&str, u64, u64, &str), extra: &[&str]) -> Value {
    let mut args = request_args(req);
    args.extend(extra.iter().map(|s| s.to_string()));
    common::backtest_json(FROM, &args)
}

fn outcomes(v: &Value) -> &Vec<Value> {
    v["shift_simulation"]["outcomes"].as_array().unwrap()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The snapshots from FROM, read here, in date order: the replay's snapshot indexes.
static ADVISORS: LazyLock<Vec<common::AdvisorTable>> = LazyLock::new(|| {
    common::history_files(FROM)
        .iter()
        .map(|(_, p)| common::independent_advisor_of(&std::fs::read(p).unwrap()))
        .collect()
});

/// (mean nodes, interruptions a month) the model promises for the replay's steps: each step's
/// cheapest three split the request evenly, each node interrupted at its band's rate.
fn promised(req: &(&str, u64, u64, &str), v: &Value) -> (f64, f64) {
    let ask = Ask {
        vcpus: req.1,
        memory_mib: req.2 * 1024,
        ..Ask::default()
    };
    let ts = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let steps = v["steps"].as_array().unwrap();
    let start = ts(&steps[0]["at"]);
    let hours = |t: jiff::Timestamp| (t.as_second() - start.as_second()) as f64 / 3600.0;
    let end = hours(ts(&v["to"])).max(30.0 * 24.0);
    let (mut node_hours, mut expected) = (0.0, 0.0);
    for (k, s) in steps.iter().enumerate() {
        let from = hours(ts(&s["at"]));
        let until = steps.get(k + 1).map_or(end, |n| hours(ts(&n["at"])));
        let cheapest: Vec<&str> = s["cheapest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let advisor = &ADVISORS[s["snapshot"].as_u64().unwrap() as usize];
        for t in &cheapest {
            let nodes = indep::count(&ask, &indep::TYPES[*t]).div_ceil(cheapest.len() as u64);
            let band = advisor
                .get(req.0)
                .and_then(|m| m.get(*t))
                .map_or(4, |e| e.1.min(4));
            node_hours += nodes as f64 * (until - from);
            expected += nodes as f64 * (until - from) * RATE[band as usize] / HOURS_PER_MONTH;
        }
    }
    (node_hours / end, expected / (end / HOURS_PER_MONTH))
}

#[test]
fn the_simulated_stream_keeps_each_band_rate_and_the_crunch_share() {
    for req in [MIX[2], MIX[3], MIX[6], MIX[11]] {
        for share in ["0.5", "0"] {
            let v = run(
                &req,
                &[
                    "--shift",
                    "6/6h/1d",
                    "--crunch-share",
                    share,
                    "--trials",
                    "100",
                ],
            );
            let off = &outcomes(&v)[0];
            assert_eq!(off["policy"], "off");
            let (nodes, per_month) = promised(&req, &v);
            let got = f(off, "interruptions_per_month");
            println!(
                "{req:?} crunch share {share}: {:.1} nodes; {got:.3} interruptions a month, the model promises {per_month:.3} ({:+.1}%); {:.0}% in crunches",
                f(off, "mean_nodes"),
                (got / per_month - 1.0) * 100.0,
                f(off, "crunch_interruptions_per_month") / got * 100.0
            );
            assert!(
                (f(off, "mean_nodes") - nodes).abs() < 1e-6,
                "{req:?}: the fleet is {} nodes on average, the steps give {nodes}",
                f(off, "mean_nodes")
            );
            assert!(
                (got / per_month - 1.0).abs() < 0.15,
                "{req:?} share {share}: {got} interruptions a month against the bands' {per_month}"
            );
            let in_crunch = f(off, "crunch_interruptions_per_month") / got;
            let want: f64 = share.parse().unwrap();
            assert!(
                (in_crunch - want).abs() < 0.12,
                "{req:?}: {in_crunch} of interruptions in crunches, the model says {want}"
            );
            // The shift never makes interruptions more frequent than twice the no-shift run.
            assert!(f(&outcomes(&v)[1], "interruptions_per_month") <= 2.0 * got);
        }
    }
}

/// The README's rule: among the policies that shift at most once a quarter and cost at most 1%
/// extra on every request of the mix, the one that spares the most interruptions on average;
/// within 0.1 percentage point of it, the one that shifts least, then the cheapest.
#[test]
fn the_default_on_demand_shift_is_what_the_simulation_chooses() {
    let runs: Vec<Vec<Value>> = MIX
        .iter()
        .map(|r| outcomes(&run(r, &["--simulate-interruptions"])).clone())
        .collect();
    let policies: Vec<String> = runs[0]
        .iter()
        .map(|o| o["policy"].as_str().unwrap().to_string())
        .collect();
    assert!(policies.len() > 50, "the grid: {policies:?}");
    struct Row {
        policy: String,
        spared: f64,
        max_shifts: f64,
        max_calm_shifts: f64,
        extra: f64,
        max_extra: f64,
        hours: f64,
    }
    let mut rows: Vec<Row> = policies
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, p)| {
            let col = |k: &str| runs.iter().map(|r| f(&r[i], k)).collect::<Vec<f64>>();
            let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
            let max = |v: Vec<f64>| v.into_iter().fold(0.0, f64::max);
            assert!(runs.iter().all(|r| r[i]["policy"] == p.as_str()));
            Row {
                policy: p.clone(),
                spared: mean(col("avoided")),
                max_shifts: max(col("shifts_per_month")),
                max_calm_shifts: max(col("calm_shifts_per_month")),
                extra: mean(col("extra_cost")),
                max_extra: max(col("extra_cost")),
                hours: max(col("mean_shift_hours")),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.spared.total_cmp(&a.spared));
    println!(
        "policy      spared  max shifts/mo  max in calm/mo  mean extra  max extra  max h/shift"
    );
    for r in rows.iter().take(12) {
        println!(
            "{:<10} {:>6.1}%  {:>13.2}  {:>14.2}  {:>9.3}%  {:>8.3}%  {:>10.1}",
            r.policy,
            r.spared * 100.0,
            r.max_shifts,
            r.max_calm_shifts,
            r.extra * 100.0,
            r.max_extra * 100.0,
            r.hours
        );
    }
    let eligible: Vec<&Row> = rows
        .iter()
        .filter(|r| r.max_shifts <= 1.0 / 3.0 && r.max_extra <= 0.01)
        .collect();
    let best = eligible.first().expect("an eligible policy").spared;
    let chosen = eligible
        .iter()
        .filter(|r| r.spared >= best - 0.001)
        .min_by(|a, b| {
            a.max_shifts
                .total_cmp(&b.max_shifts)
                .then(a.extra.total_cmp(&b.extra))
        })
        .unwrap();
    let d = spotplan_core::policy::shift::DEFAULT;
    let default = spotplan_core::policy::shift_sim::label(&d);
    println!(
        "chosen: {} (spares {:.1}%, at most {:.2} shifts a month, {:.3}% extra on average); the default is {default}",
        chosen.policy,
        chosen.spared * 100.0,
        chosen.max_shifts,
        chosen.extra * 100.0
    );
    assert_eq!(
        chosen.policy, default,
        "the simulation chooses {}, the code's default is {default}: update policy::shift::DEFAULT and the README",
        chosen.policy
    );
    // Shifting is worth something here: the default spares more than never shifting would
    // with the same demotion window (an N no fleet of the mix reaches).
    let never = run(
        &MIX[3],
        &[
            "--shift",
            &format!("1000/{}", default.split_once('/').unwrap().1),
            "--shift",
            &default,
        ],
    );
    let o = outcomes(&never);
    assert_eq!(f(&o[1], "shifts_per_month"), 0.0);
    println!(
        "{:?}: never shifting spares {:.1}%, the default {:.1}%",
        MIX[3],
        f(&o[1], "avoided") * 100.0,
        f(&o[2], "avoided") * 100.0
    );
    assert!(
        f(&o[2], "shifts_per_month") > 0.0,
        "the default never shifted"
    );
    assert!(
        f(&o[2], "avoided") > f(&o[1], "avoided"),
        "the default spares no more than never shifting: {:?}",
        o
    );
}

/// The README's rule for risk pricing's learned premiums, over the same mix, against the same
/// stream with turnover and rebalance recommendations (`--simulate-learning`): among the
/// policies whose moved nodes cost at most 0.5% extra on every request, the one that spares the
/// most interruptions on average; within 0.1 percentage point of it, the smallest premium per
/// interruption, then the shortest calm, then the smallest premium per rebalance
/// recommendation. The product's `pricing::DEFAULT_LEARNED` must be it.
#[test]
fn the_default_learned_premiums_are_what_the_simulation_chooses() {
    let runs: Vec<Vec<Value>> = MIX
        .iter()
        .map(|r| {
            run(r, &["--simulate-learning"])["learning_simulation"]["outcomes"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    struct Row {
        policy: String,
        per_interruption: f64,
        calm: f64,
        per_rebalance: f64,
        spared: f64,
        crunch_spared: f64,
        extra: f64,
        max_extra: f64,
    }
    let n = runs[0].len();
    assert!(n > 50, "the grid: {n}");
    assert_eq!(runs[0][0]["policy"], "off");
    let mut rows: Vec<Row> = (1..n)
        .map(|i| {
            let col = |k: &str| runs.iter().map(|r| f(&r[i], k)).collect::<Vec<f64>>();
            let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
            let max = |v: Vec<f64>| v.into_iter().fold(f64::MIN, f64::max);
            let policy = runs[0][i]["policy"].as_str().unwrap().to_string();
            assert!(runs.iter().all(|r| r[i]["policy"] == policy.as_str()));
            Row {
                per_interruption: f(&runs[0][i], "per_interruption"),
                calm: f(&runs[0][i], "calm_hours"),
                per_rebalance: f(&runs[0][i], "per_rebalance"),
                spared: mean(col("avoided")),
                crunch_spared: mean(col("crunch_avoided")),
                extra: mean(col("extra_cost")),
                max_extra: max(col("extra_cost")),
                policy,
            }
        })
        .collect();
    // What moved nodes cost is never negative, and no premium costs nothing while moving nodes.
    assert!(rows.iter().all(|r| r.extra >= 0.0));
    rows.sort_by(|a, b| b.spared.total_cmp(&a.spared));
    println!("premiums              spared  in crunches  mean extra  max extra");
    for r in rows.iter().take(15) {
        println!(
            "{:<20} {:>6.1}%  {:>10.1}%  {:>9.3}%  {:>8.3}%",
            r.policy,
            r.spared * 100.0,
            r.crunch_spared * 100.0,
            r.extra * 100.0,
            r.max_extra * 100.0
        );
    }
    // For the README: the chosen one without rebalance recommendations, and the old guess.
    for name in ["+5%/3d/+0%", "+10%/1d/+0%", "+10%/1d/+2.5%"] {
        if let Some(r) = rows.iter().find(|r| r.policy == name) {
            println!(
                "{name}: spares {:.1}%, {:.1}% in crunches, {:.3}% extra on average",
                r.spared * 100.0,
                r.crunch_spared * 100.0,
                r.extra * 100.0
            );
        }
    }
    let eligible: Vec<&Row> = rows.iter().filter(|r| r.max_extra <= 0.005).collect();
    let best = eligible.first().expect("an eligible policy").spared;
    let chosen = eligible
        .iter()
        .filter(|r| r.spared >= best - 0.001)
        .min_by(|a, b| {
            a.per_interruption
                .total_cmp(&b.per_interruption)
                .then(a.calm.total_cmp(&b.calm))
                .then(a.per_rebalance.total_cmp(&b.per_rebalance))
        })
        .unwrap();
    let d = spotplan_core::policy::pricing::DEFAULT_LEARNED;
    let default = spotplan_core::policy::shift_sim::learning_label(&d);
    println!(
        "chosen: {} (spares {:.1}%, {:.1}% in crunches, {:.3}% extra on average, at most {:.3}%); the default is {default}",
        chosen.policy,
        chosen.spared * 100.0,
        chosen.crunch_spared * 100.0,
        chosen.extra * 100.0,
        chosen.max_extra * 100.0
    );
    assert!(chosen.spared > 0.0, "no premium spares anything");
    assert_eq!(
        chosen.policy, default,
        "the simulation chooses {}, the code's default is {default}: update pricing::DEFAULT_LEARNED and the README",
        chosen.policy
    );
}
