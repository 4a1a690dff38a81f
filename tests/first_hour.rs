//! Defects a new user met in the first hour, each proved against the real part it concerns:
//! `-f` decodes a SpotPlan as strictly as the real kube-apiserver does (its own message is the
//! oracle), every one-shot command ends quietly when its reader goes away, and the data-age
//! metric of a running controller moves between two scrapes.

mod common;
mod parts;
mod rig;

use rig::{Rig, plan_yaml, ready};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

fn spotplan() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spotplan"));
    c.env_remove("SPOTPLAN_ADVISOR_DATA")
        .env_remove("SPOTPLAN_PRICES")
        .env(
            "SPOTPLAN_CACHE_DIR",
            std::env::temp_dir().join("spotplan-first-hour-cache"),
        );
    c
}

fn data_flags() -> Vec<String> {
    vec![
        "--advisor-data".into(),
        common::advisor_path().display().to_string(),
        "--prices".into(),
        common::prices_path().display().to_string(),
    ]
}

/// Every `unknown field "..."` in a message.
fn unknown_fields(message: &str) -> BTreeSet<String> {
    message
        .split("unknown field \"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(String::from)
        .collect()
}

/// A SpotPlan with two typos, one at the top of the spec and one nested.
const TYPOS: &str = "apiVersion: spotplan.dev/v1alpha1
kind: SpotPlan
metadata: {name: typo}
spec:
  region: us-east-1
  resources: {cpu: \"64\", memory: 256Gi}
  maxInteruptionBand: 1
  nodePool:
    nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
    labls: {tier: web}
";

#[test]
fn every_manifest_path_refuses_unknown_fields_as_the_api_server_does() {
    let Some(rig) = Rig::start("strict") else {
        return;
    };
    let (created, server) = rig.apply(TYPOS);
    assert!(
        !created,
        "the API server took a SpotPlan with typos: {server}"
    );
    let want = unknown_fields(&server);
    assert_eq!(
        want,
        BTreeSet::from([
            "spec.maxInteruptionBand".to_string(),
            "spec.nodePool.labls".to_string()
        ]),
        "the API server's own words: {server}"
    );
    let shape = "SpotPlan in version \"v1alpha1\" cannot be handled as a SpotPlan: strict decoding error: unknown field \"";
    assert!(server.contains(shape), "{server}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    std::fs::write(&file, TYPOS).unwrap();
    let f = file.display().to_string();
    let history = common::history_dir().display().to_string();
    let paths: Vec<Vec<String>> = vec![
        vec!["recommend".into(), "-f".into(), f.clone()],
        vec![
            "recommend".into(),
            "-f".into(),
            f.clone(),
            "-o".into(),
            "table".into(),
        ],
        vec![
            "render".into(),
            "--format".into(),
            "nodepool".into(),
            "-f".into(),
            f.clone(),
        ],
        vec![
            "render".into(),
            "--format".into(),
            "ec2-fleet".into(),
            "--launch-template".into(),
            "web".into(),
            "-f".into(),
            f.clone(),
        ],
    ]
    .into_iter()
    .map(|mut a| {
        a.extend(data_flags());
        a
    })
    .chain([vec![
        "backtest".into(),
        "--history".into(),
        history,
        "--prices".into(),
        common::prices_path().display().to_string(),
        "-f".into(),
        f.clone(),
    ]])
    .collect();
    for args in paths {
        let out = spotplan().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a plan");
        assert!(stderr.contains(shape), "{args:?}: {stderr}");
        assert_eq!(unknown_fields(&stderr), want, "{args:?}: {stderr}");
        assert!(stderr.contains(&f), "{args:?} names the file: {stderr}");
    }
}

/// A command whose stdout reader has gone: it must end by SIGPIPE, as Unix tools do, or
/// succeed, and never panic.
fn ends_quietly(args: &[String]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = spotplan()
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
        "{args:?} ended with {:?}: {stderr}",
        out.status
    );
}

#[test]
fn every_command_ends_quietly_when_its_reader_goes_away() {
    let s = |v: &[&str]| -> Vec<String> { v.iter().map(|a| a.to_string()).collect() };
    let with_data = |v: &[&str]| -> Vec<String> {
        let mut a = s(v);
        a.extend(data_flags());
        a
    };
    let request = ["--cores", "64", "--memory", "256", "--region", "us-east-1"];
    let mut commands: Vec<Vec<String>> = vec![s(&["--help"]), s(&["crd"])];
    for o in ["json", "yaml", "table"] {
        let mut a = with_data(&["recommend", "-o", o]);
        a.extend(s(&request));
        commands.push(a);
    }
    for format in [
        &["--format", "nodepool"][..],
        &[
            "--format",
            "ec2-fleet",
            "--launch-template",
            "web",
            "--arch",
            "arm64",
        ],
        &[
            "--format",
            "asg",
            "--launch-template",
            "web",
            "--arch",
            "arm64",
            "--subnet",
            "subnet-01",
        ],
    ] {
        let mut a = with_data(&["render"]);
        a.extend(s(format));
        a.extend(s(&request));
        commands.push(a);
    }
    commands.push(with_data(&[
        "render",
        "--format",
        "kwok-instance-types",
        "--region",
        "us-east-1",
    ]));
    let mut backtest = s(&["backtest", "--history"]);
    backtest.push(common::history_dir().display().to_string());
    backtest.push("--prices".into());
    backtest.push(common::prices_path().display().to_string());
    backtest.extend(s(&request));
    commands.push(backtest);
    commands.push(with_data(&["data", "show", "--region", "us-east-1"]));
    for args in &commands {
        ends_quietly(args);
    }
}

#[test]
fn the_data_age_metric_grows_between_scrapes() {
    let Some(rig) = Rig::start("age") else {
        return;
    };
    let c = rig.controller("admin", &[]);
    rig.apply(&plan_yaml("web", ""));
    ready(&rig, "web");
    let age = || {
        let text = c.metrics();
        text.lines()
            .find(|l| {
                l.starts_with("spotplan_market_data_age_seconds{")
                    && l.contains("source=\"spot-advisor\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no spot-advisor age in /metrics:\n{text}"))
    };
    let first = age();
    std::thread::sleep(Duration::from_secs(3));
    let second = age();
    assert!(
        second - first >= 2.5,
        "the age moved from {first} to {second} in 3 s"
    );
    // And it is the file's age: its modification time, read here.
    let modified = std::fs::metadata(&rig.advisor).unwrap().modified().unwrap();
    let file_age = modified.elapsed().unwrap().as_secs_f64();
    assert!(
        (second - file_age).abs() < 2.0,
        "metric {second} s, file {file_age} s old"
    );
}
