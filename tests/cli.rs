//! `spotplan recommend` and `spotplan data show` as a user runs them: flags, outputs, and one
//! clear line for every kind of bad input.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;

fn spotplan() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spotplan"));
    c.env_remove("SPOTPLAN_ADVISOR_DATA")
        .env_remove("SPOTPLAN_PRICES");
    c.env(
        "SPOTPLAN_CACHE_DIR",
        std::env::temp_dir().join("spotplan-cli-test-cache"),
    );
    c
}

fn recommend(extra: &[&str]) -> Command {
    let mut c = spotplan();
    c.arg("recommend")
        .arg("--advisor-data")
        .arg(common::advisor_path())
        .arg("--prices")
        .arg(common::prices_path())
        .args(extra);
    c
}

fn json(extra: &[&str]) -> serde_json::Value {
    let out = recommend(extra)
        .args(["--output", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn json_keeps_spot_optimizer_keys_and_adds_candidates() {
    let v = json(&["--cores", "64", "--memory", "256", "--region", "us-east-1"]);
    let primary = &v["candidates"][0];
    assert_eq!(v["instances"]["type"], primary["type"]);
    assert_eq!(v["instances"]["count"], primary["count"]);
    assert_eq!(v["mode"], "balanced");
    assert!(v["total_cores"].as_u64().unwrap() >= 64);
    assert!(v["total_ram"].as_f64().unwrap() >= 256.0);
    assert_eq!(v["reliability"]["spot_score"], primary["savings_pct"]);
    assert_eq!(
        v["reliability"]["interruption_rate"],
        primary["interruption_band"]
    );
    let candidates = v["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 15, "{} candidates", candidates.len());
    for key in [
        "type",
        "count",
        "interruption_band",
        "interruption_label",
        "savings_pct",
        "spot_usd_per_hour",
        "on_demand_usd_per_hour",
        "total_spot_usd_per_hour",
        "waste_pct",
    ] {
        assert!(primary.get(key).is_some(), "candidates[0].{key} missing");
    }
    assert_eq!(v["data"]["catalog"], "moto 5.2.5");
    assert!(
        v["filters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["filter"] == "mode_node_count")
    );
}

#[test]
fn default_output_off_a_terminal_is_json_like_spot_optimizer() {
    let out = recommend(&["--cores", "8", "--memory", "32", "--region", "us-east-1"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON by default when piped");
    assert!(v["instances"]["type"].is_string());
}

#[test]
fn table_output_is_for_people() {
    recommend(&[
        "--cores",
        "64",
        "--memory",
        "256",
        "--region",
        "us-east-1",
        "-o",
        "table",
    ])
    .assert()
    .success()
    .stdout(
        predicate::str::contains("interruption")
            .and(predicate::str::contains("primary:"))
            .and(predicate::str::contains("total spot $/h")),
    );
}

#[test]
fn yaml_output_parses() {
    let out = recommend(&[
        "--cores",
        "16",
        "--memory",
        "64",
        "--region",
        "eu-west-1",
        "-o",
        "yaml",
    ])
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let v: serde_json::Value = serde_saphyr::from_slice(&out).unwrap();
    assert!(v["candidates"].as_array().unwrap().len() > 1);
}

#[test]
fn arm_flags() {
    let v = json(&[
        "--cores",
        "64",
        "--memory",
        "256",
        "--region",
        "us-east-1",
        "--no-arm",
    ]);
    for c in v["candidates"].as_array().unwrap() {
        assert_eq!(c["arch"], "amd64", "{}", c["type"]);
    }
    // Accepted for spot-optimizer scripts; ARM is included anyway.
    let v = json(&[
        "--cores",
        "64",
        "--memory",
        "256",
        "--region",
        "us-east-1",
        "--arm-instances",
    ]);
    assert!(
        v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["arch"] == "arm64")
    );
}

#[test]
fn emr_release_really_filters() {
    let v = json(&[
        "--cores",
        "64",
        "--memory",
        "256",
        "--region",
        "us-east-1",
        "--emr-version",
        "5.36.0",
    ]);
    let catalog = spotplan::Catalog::embedded();
    let (_, emr) = catalog.emr_release("5.36.0").unwrap();
    for c in v["candidates"].as_array().unwrap() {
        assert!(
            emr.supports(catalog.get(c["type"].as_str().unwrap()).unwrap()),
            "{}",
            c["type"]
        );
    }
}

/// Runs `cmd`, expects exit `code` and nothing on stdout, and returns its stderr.
fn stderr_of(cmd: &mut Command, code: i32) -> String {
    let out = cmd.assert().code(code).get_output().clone();
    assert!(out.stdout.is_empty(), "a failure prints no plan");
    String::from_utf8(out.stderr).unwrap()
}

fn fails_with(args: &[&str], code: i32, line: &str) {
    let stderr = stderr_of(&mut recommend(args), code);
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(stderr.contains(line), "want '{line}' in: {stderr}");
}

#[test]
fn bad_cores() {
    fails_with(&["--cores", "0", "--memory", "8"], 2, "--cores");
    fails_with(&["--cores", "0", "--memory", "8"], 2, "must be at least 1");
    fails_with(
        &["--cores", "-3", "--memory", "8"],
        2,
        "invalid value '-3' for '--cores <N>': -3: must be at least 1",
    );
    fails_with(&["--cores", "4", "--memory", "-1"], 2, "--memory");
    fails_with(
        &["--cores", "many", "--memory", "8"],
        2,
        "is not a whole number",
    );
    fails_with(&["--cores", "4", "--memory", "0"], 2, "--memory");
}

#[test]
fn unknown_region_suggests_the_closest() {
    fails_with(
        &["--cores", "4", "--memory", "8", "--region", "us-est-1"],
        2,
        "--region: unknown region 'us-est-1' (did you mean 'us-east-1'?)",
    );
    // A real region that the embedded catalog has no offerings for says so.
    fails_with(
        &["--cores", "4", "--memory", "8", "--region", "ap-east-2"],
        2,
        "lists no instance type offerings in ap-east-2",
    );
}

#[test]
fn unknown_mode() {
    fails_with(
        &["--cores", "4", "--memory", "8", "--mode", "fast"],
        2,
        "use one of latency, balanced, fault_tolerance",
    );
}

#[test]
fn unknown_family_and_type() {
    fails_with(
        &["--cores", "4", "--memory", "8", "--instance-family", "m6x"],
        2,
        "--instance-family: unknown instance family 'm6x' (did you mean",
    );
    fails_with(
        &[
            "--cores",
            "4",
            "--memory",
            "8",
            "--exclude-type",
            "m5.hugex",
        ],
        2,
        "--exclude-type: unknown instance type",
    );
    fails_with(
        &["--cores", "4", "--memory", "8", "--emr-version", "6.99.0"],
        2,
        "--emr-version: unknown EMR release",
    );
    fails_with(
        &[
            "--cores",
            "4",
            "--memory",
            "8",
            "--max-interruption-band",
            "5",
        ],
        2,
        "--max-interruption-band",
    );
}

/// `spotplan recommend --cores 4 --memory 8` plus `args`, without the default data flags.
fn small<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut c = spotplan();
    c.args(["recommend", "--cores", "4", "--memory", "8"])
        .args(args);
    c
}

#[test]
fn unreadable_data_files() {
    let err = stderr_of(
        &mut small(["--advisor-data", "/nonexistent/advisor.json"]),
        3,
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--advisor-data: /nonexistent/advisor.json: No such file"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("advisor.json");
    let bytes = std::fs::read(common::advisor_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = stderr_of(
        &mut small([
            std::ffi::OsStr::new("--advisor-data"),
            truncated.as_os_str(),
        ]),
        3,
    );
    assert!(
        err.contains("advisor.json: not valid JSON at line"),
        "{err}"
    );

    let bad_prices = dir.path().join("prices.csv");
    std::fs::write(
        &bad_prices,
        "region,instance_type,on_demand_usd_per_hour,spot_usd_per_hour\nus-east-1,m5.large,-1,\n",
    )
    .unwrap();
    let advisor = common::advisor_path();
    let err = stderr_of(
        &mut small([
            std::ffi::OsStr::new("--advisor-data"),
            advisor.as_os_str(),
            std::ffi::OsStr::new("--prices"),
            bad_prices.as_os_str(),
        ]),
        3,
    );
    assert!(
        err.contains("--prices:")
            && err.contains("line 2, column `on_demand_usd_per_hour`: -1 is negative"),
        "{err}"
    );
}

#[test]
fn a_bad_flag_is_reported_before_data_is_read_or_fetched() {
    // Local files are read while the catalog parses, yet the flag error still wins.
    let err = stderr_of(
        &mut small([
            "--region",
            "us-est-1",
            "--advisor-data",
            "/nonexistent/advisor.json",
        ]),
        2,
    );
    assert!(err.contains("--region: unknown region"), "{err}");

    // A URL is not fetched at all when a flag is bad.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/advisor.json", listener.local_addr().unwrap());
    let cache = tempfile::tempdir().unwrap();
    small(["--region", "us-est-1", "--advisor-data", &url])
        .env("SPOTPLAN_CACHE_DIR", cache.path())
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(2);
    listener.set_nonblocking(true).unwrap();
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the advisor URL was fetched despite a bad flag: {accepted:?}"
    );
}

#[test]
fn nothing_fits_names_the_filter() {
    fails_with(
        &[
            "--cores",
            "4",
            "--memory",
            "8",
            "--region",
            "us-east-1",
            "--instance-family",
            "p4d",
            "--mode",
            "fault_tolerance",
        ],
        4,
        "the mode_node_count filter removed the last",
    );
}

#[test]
fn data_show_reports_sources_and_age() {
    spotplan()
        .args(["data", "show", "--region", "us-east-1", "--advisor-data"])
        .arg(common::advisor_path())
        .arg("--prices")
        .arg(common::prices_path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("catalog: moto 5.2.5")
                .and(predicate::str::contains(
                    "spot-advisor-data_2025-06-28.json",
                ))
                .and(predicate::str::contains(" old"))
                .and(predicate::str::contains("us-east-1:"))
                .and(predicate::str::contains("unknown")),
        );
}
