//! `spotplan recommend` and `spotplan data show` as a user runs them: flags, outputs, and one
//! clear line for every kind of bad input.

mod common;
mod parts;

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
    // Checked against moto's own EMR data, not the product's catalog.
    let supported = &common::indep::EMR["emr-5.36.0"];
    let candidates = v["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 5);
    for c in candidates {
        assert!(
            supported.contains(c["type"].as_str().unwrap()),
            "{}",
            c["type"]
        );
    }
    // And it makes a difference: without it, types EMR 5.36 lacks are planned.
    let all = json(&["--cores", "64", "--memory", "256", "--region", "us-east-1"]);
    assert!(
        all["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| !supported.contains(c["type"].as_str().unwrap())),
        "the EMR filter removed nothing"
    );
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
fn sizes_above_the_documented_bound_are_refused_not_wrapped() {
    // u32::MAX used to wrap to total_cores 0 in the release profile.
    fails_with(
        &["--cores", "4294967295", "--memory", "8"],
        2,
        "invalid value '4294967295' for '--cores <N>': 4294967295 is above the maximum of 65536",
    );
    fails_with(
        &["--cores", "65537", "--memory", "8"],
        2,
        "above the maximum of 65536",
    );
    fails_with(
        &["--cores", "8", "--memory", "262145"],
        2,
        "for '--memory <GiB>': 262145 GiB is above the maximum of 262144 GiB",
    );
    fails_with(&["--cores", "8", "--memory", "1e300"], 2, "--memory");
    fails_with(
        &["--cores", "8", "--memory", "8", "--min-types", "51"],
        2,
        "--min-types",
    );
    fails_with(
        &["--cores", "8", "--memory", "8", "--gpus", "65"],
        2,
        "--gpus",
    );
    fails_with(
        &["--cores", "8", "--memory", "8", "--min-generation", "21"],
        2,
        "--min-generation",
    );
    // An explicit --max-types below --min-types is refused, never raised silently.
    fails_with(
        &[
            "--cores",
            "8",
            "--memory",
            "8",
            "--min-types",
            "30",
            "--max-types",
            "20",
        ],
        2,
        "--max-types: 20 is out of range: use min types (30) to 50",
    );
    // At the bound, it plans (or says nothing fits), and the totals never wrap.
    let v = json(&[
        "--cores",
        "65536",
        "--memory",
        "262144",
        "--region",
        "us-east-1",
        "--mode",
        "latency",
    ]);
    assert!(
        v["total_cores"].as_u64().unwrap() >= 65_536,
        "{}",
        v["total_cores"]
    );
    for c in v["candidates"].as_array().unwrap() {
        assert_eq!(
            c["total_vcpus"].as_u64().unwrap(),
            c["count"].as_u64().unwrap() * c["vcpus"].as_u64().unwrap()
        );
    }
    // Without --max-types, the list follows a --min-types above the default 20.
    let v = json(&[
        "--cores",
        "64",
        "--memory",
        "256",
        "--region",
        "us-east-1",
        "--min-types",
        "30",
    ]);
    assert_eq!(v["candidates"].as_array().unwrap().len(), 30);
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
    // The file's modification time, read here, is what its age is measured from.
    let modified = |p: std::path::PathBuf| {
        let t = std::fs::metadata(p).unwrap().modified().unwrap();
        jiff::Timestamp::try_from(t)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let advisor_mtime = modified(common::advisor_path());
    let prices_mtime = modified(common::prices_path());
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
                .and(predicate::str::contains(
                    "(data of 2025-06-28 (in its name); file modified ",
                ))
                .and(predicate::str::contains(format!(
                    "file modified {advisor_mtime}, "
                )))
                .and(predicate::str::contains(
                    "(data of 2026-05 (in its name); file modified ",
                ))
                .and(predicate::str::contains(format!(
                    "file modified {prices_mtime}, "
                )))
                .and(predicate::str::contains(" ago)"))
                .and(predicate::str::contains("us-east-1:"))
                .and(predicate::str::contains("unknown")),
        );
}

/// Serves the advisor file slowly (so concurrent cold runs overlap), counting requests.
fn slow_advisor_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let bytes = std::fs::read(common::advisor_path()).unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/advisor.json", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let (bytes, h) = (bytes.clone(), h.clone());
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut s = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                );
                for chunk in bytes.chunks(64 * 1024) {
                    let _ = s.write_all(chunk);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
        }
    });
    (url, hits)
}

#[test]
fn concurrent_runs_on_a_cold_cache_all_succeed() {
    let (url, hits) = slow_advisor_server();
    let cache = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_spotplan"))
                .args([
                    "recommend",
                    "--cores",
                    "16",
                    "--memory",
                    "64",
                    "--region",
                    "us-east-1",
                ])
                .args(["--advisor-data", &url, "-o", "json"])
                .env("SPOTPLAN_CACHE_DIR", cache.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["instances"]["type"].is_string());
    }
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the runs overlapped"
    );
    // One whole entry, no temporary files left behind.
    let files: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".cache"), "{files:?}");
    // A later run reads that entry without fetching.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    small(["--region", "us-east-1", "--advisor-data", &url])
        .env("SPOTPLAN_CACHE_DIR", cache.path())
        .assert()
        .success();
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), before);
}

#[test]
fn a_corrupt_cache_entry_is_ignored_with_a_warning() {
    let (url, hits) = slow_advisor_server();
    let cache = tempfile::tempdir().unwrap();
    small(["--region", "us-east-1", "--advisor-data", &url])
        .env("SPOTPLAN_CACHE_DIR", cache.path())
        .assert()
        .success();
    let entry = std::fs::read_dir(cache.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for corrupt in [
        &b"not a cache entry"[..],
        &b"{\"url\":\"x\"}\n{}"[..],
        &std::fs::read(&entry).unwrap()[..5000],
    ] {
        std::fs::write(&entry, corrupt).unwrap();
        let before = hits.load(std::sync::atomic::Ordering::SeqCst);
        let out = small([
            "--region",
            "us-east-1",
            "--advisor-data",
            &url,
            "-o",
            "json",
        ])
        .env("SPOTPLAN_CACHE_DIR", cache.path())
        .assert()
        .success()
        .get_output()
        .clone();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("warning: ignoring the corrupt cache entry")
                && stderr.contains("fetching again"),
            "{stderr}"
        );
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            before + 1,
            "fetched again"
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    }
}
