//! `spotplan render` and `-f` as a user runs them, without AWS: the flags each format takes, one
//! clear line for each mistake, manifests read as the operator reads them, and the NodePools
//! for Git. Sending the fleet formats to AWS is tests/launch.rs; the NodePools' equality with
//! what the controller writes is in tests/operator.rs.

mod common;
mod parts;

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

fn spotplan(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spotplan"));
    c.env_remove("SPOTPLAN_ADVISOR_DATA")
        .env_remove("SPOTPLAN_PRICES")
        .env(
            "SPOTPLAN_CACHE_DIR",
            std::env::temp_dir().join("spotplan-render-test-cache"),
        )
        .arg(args[0])
        .arg("--advisor-data")
        .arg(common::advisor_path())
        .arg("--prices")
        .arg(common::prices_path())
        .args(&args[1..]);
    c
}

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

/// Exit 2, nothing on stdout, one line on stderr naming `want`.
fn refused(args: &[&str], want: &str) {
    let out = spotplan(args).assert().code(2).get_output().clone();
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: want '{want}' in {err}");
}

const ASK: [&str; 6] = ["--cores", "64", "--memory", "256", "--arch", "amd64"];

fn with<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    let mut v = head.to_vec();
    v.extend_from_slice(&ASK);
    v.extend_from_slice(tail);
    v
}

#[test]
fn each_format_refuses_what_it_cannot_use() {
    let ec2 = ["render", "--format", "ec2-fleet"];
    let spot = ["render", "--format", "spot-fleet"];
    let asg = ["render", "--format", "asg"];
    refused(
        &with(&ec2, &[]),
        "--launch-template: is required for --format ec2-fleet",
    );
    refused(
        &with(&spot, &["--launch-template", "web"]),
        "--fleet-role: is required for --format spot-fleet",
    );
    refused(
        &with(
            &spot,
            &["--launch-template", "web", "--fleet-role", "my-role"],
        ),
        "--fleet-role: 'my-role' is not an IAM role ARN",
    );
    refused(
        &with(
            &spot,
            &[
                "--launch-template",
                "web",
                "--fleet-role",
                "arn:aws:iam::1:role/r",
                "--type",
                "instant",
            ],
        ),
        "--type: instant is an EC2 Fleet type",
    );
    refused(
        &with(&asg, &["--launch-template", "web"]),
        "--subnet: --format asg needs --subnet",
    );
    refused(
        &with(
            &asg,
            &[
                "--launch-template",
                "web",
                "--subnet",
                "subnet-0a",
                "--fleet-role",
                "arn:aws:iam::1:role/r",
            ],
        ),
        "--fleet-role: does not apply to --format asg; only to spot-fleet",
    );
    refused(
        &with(
            &ec2,
            &["--launch-template", "web", "--on-demand-percentage", "10"],
        ),
        "--on-demand-percentage: does not apply to --format ec2-fleet; only to asg",
    );
    refused(
        &with(&ec2, &["--launch-template", "web", "--subnet", "sn-1"]),
        "--subnet: 'sn-1' is not a subnet ID",
    );
    refused(
        &with(
            &ec2,
            &[
                "--launch-template",
                "web",
                "--availability-zone",
                "eu-west-1a",
            ],
        ),
        "--availability-zone: 'eu-west-1a' is not a zone of us-west-2",
    );
    refused(
        &with(
            &ec2,
            &["--launch-template", "web", "--on-demand-base-cpu", "65"],
        ),
        "--on-demand-base-cpu: 65 is above the request's 64 vCPUs",
    );
    refused(
        &with(
            &ec2,
            &[
                "--launch-template",
                "web",
                "--allocation-strategy",
                "cheapest",
            ],
        ),
        "'cheapest' is not an allocation strategy",
    );
    refused(
        &with(&["render", "--format", "nodepool"], &["--apply"]),
        "--apply: does not apply to --format nodepool",
    );
    refused(
        &with(
            &["render", "--format", "nodepool"],
            &["--launch-template", "web"],
        ),
        "--launch-template: does not apply to --format nodepool",
    );
    refused(
        &["render", "--format", "kwok-instance-types", "--cores", "4"],
        "it takes no request",
    );
    // One AMI, one architecture: a fleet needs the request to name it.
    refused(
        &[
            "render",
            "--format",
            "ec2-fleet",
            "--cores",
            "64",
            "--memory",
            "256",
            "--launch-template",
            "web",
        ],
        "--arch: --format ec2-fleet needs one architecture",
    );
    refused(
        &[
            "render",
            "--format",
            "ec2-fleet",
            "--memory",
            "256",
            "--launch-template",
            "web",
        ],
        "--cores: is required",
    );
    refused(&["recommend", "--cores", "4"], "--memory: is required");
}

#[test]
fn fleet_bodies_use_only_the_apis_parameter_names_in_json_or_yaml() {
    let out = spotplan(&with(
        &["render", "--format", "spot-fleet"],
        &[
            "--launch-template",
            "lt-0123abcd",
            "--fleet-role",
            "arn:aws:iam::1:role/r",
            "--subnet",
            "subnet-01,subnet-02",
            "--subnet",
            "subnet-03",
            "--subnet",
            "subnet-04",
            "--valid-until",
            "2099-01-01T00:00:00+01:00",
        ],
    ))
    .assert()
    .success()
    .get_output()
    .clone();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &body["SpotFleetRequestConfig"];
    let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "AllocationStrategy",
            "ClientToken",
            "IamFleetRole",
            "LaunchTemplateConfigs",
            "OnDemandTargetCapacity",
            "TagSpecifications",
            "TargetCapacity",
            "TerminateInstancesWithExpiration",
            "Type",
            "ValidUntil"
        ]
    );
    assert_eq!(c["ValidUntil"], "2098-12-31T23:00:00Z");
    assert_eq!(
        c["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"],
        serde_json::json!({"LaunchTemplateId": "lt-0123abcd", "Version": "$Latest"})
    );
    // 4 subnets: 12 types x 4 = 48 of Spot Fleet's 50; the rest is named on stderr.
    assert_eq!(
        c["LaunchTemplateConfigs"][0]["Overrides"]
            .as_array()
            .unwrap()
            .len(),
        48
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "spot-fleet takes at most 50 overrides: kept the plan's best 12 types, left out "
        ),
        "{err}"
    );

    // The same body as YAML (for --cli-input-yaml).
    let yaml = spotplan(&with(
        &["render", "--format", "spot-fleet", "-o", "yaml"],
        &[
            "--launch-template",
            "lt-0123abcd",
            "--fleet-role",
            "arn:aws:iam::1:role/r",
            "--subnet",
            "subnet-01,subnet-02",
            "--subnet",
            "subnet-03",
            "--subnet",
            "subnet-04",
            "--valid-until",
            "2099-01-01T00:00:00+01:00",
        ],
    ))
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let from_yaml: Value = serde_saphyr::from_slice(&yaml).unwrap();
    assert_eq!(from_yaml, body);
}

#[test]
fn a_manifest_plans_as_its_fields_say() {
    // examples/web-on-demand-base.yaml, restated by hand as flags.
    let by_flags = spotplan(&[
        "recommend",
        "-o",
        "json",
        "--cores",
        "64",
        "--memory",
        "256",
        "--region",
        "us-east-1",
        "--mode",
        "balanced",
        "--max-interruption-band",
        "1",
    ])
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let by_file = spotplan(&[
        "recommend",
        "-o",
        "json",
        "-f",
        &example("web-on-demand-base.yaml"),
    ])
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let (a, b): (Value, Value) = (
        serde_json::from_slice(&by_flags).unwrap(),
        serde_json::from_slice(&by_file).unwrap(),
    );
    assert_eq!(a["candidates"], b["candidates"]);
    assert!(a["candidates"].as_array().unwrap().len() >= 10);

    // Request flags do not go with -f.
    refused(
        &[
            "recommend",
            "-f",
            &example("web-on-demand-base.yaml"),
            "--cores",
            "4",
        ],
        "'--file <SPOTPLAN.yaml>' cannot be used with '--cores <N>'",
    );
}

#[test]
fn bad_manifests_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(example("web-on-demand-base.yaml")).unwrap();
    let cases: [(&str, String, &str); 8] = [
        ("cpu", base.replace("cpu: \"64\"", "cpu: \"0\""), "spec.resources.cpu: must be greater than 0"),
        ("base", base.replace("cpu: \"16\"", "cpu: \"80\""), "spec.capacity.onDemandBase.cpu: 80 must not exceed spec.resources.cpu (64)"),
        ("band", base.replace("maxInterruptionBand: 1", "maxInterruptionBand: 9"), "spec.maxInterruptionBand: 9 is out of range"),
        ("types", base.replace("mode: balanced", "mode: balanced\n  minTypes: many"), "spec.minTypes: invalid type"),
        ("mode", base.replace("mode: balanced", "mode: fastest"), "spec.mode: unknown variant `fastest`"),
        ("reserved", base.replace("labels: {tier: web}", "labels: {tier: web}\n    requirements: [{key: kubernetes.io/arch, operator: In, values: [arm64]}]"), "spec.nodePool.requirements: kubernetes.io/arch is set by spotplan"),
        ("api", base.replace("spotplan.dev/v1alpha1", "spotplan.dev/v2"), "apiVersion is 'spotplan.dev/v2'"),
        ("two", format!("{base}\n---\n{}", base.replace("name: web", "name: api")), "holds 2 SpotPlans; give a file with one"),
    ];
    for (name, text, want) in cases {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        refused(&["recommend", "-f", &path], want);
        refused(&["recommend", "-f", &path], &format!("-f {path}: "));
    }
    // A request the optimizer refuses names the manifest's field, not a flag.
    let path = dir.path().join("region.yaml");
    std::fs::write(
        &path,
        base.replace("region: us-east-1", "region: us-east-9"),
    )
    .unwrap();
    let path = path.display().to_string();
    refused(
        &["recommend", "-f", &path],
        &format!("-f {path}: spec.region: unknown region"),
    );
}

#[test]
fn nodepools_for_git_carry_the_plan_and_no_ownership() {
    let out = spotplan(&[
        "render",
        "--format",
        "nodepool",
        "-f",
        &example("web-on-demand-base.yaml"),
    ])
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let docs: Vec<Value> = serde_saphyr::from_multiple(std::str::from_utf8(&out).unwrap()).unwrap();
    let (pools, overlays): (Vec<Value>, Vec<Value>) =
        docs.into_iter().partition(|d| d["kind"] == "NodePool");
    assert_eq!(pools.len(), 2, "the spot NodePool and the on-demand base");
    let docs = pools;
    let plan: Value = serde_json::from_slice(
        &spotplan(&[
            "recommend",
            "-o",
            "json",
            "-f",
            &example("web-on-demand-base.yaml"),
        ])
        .assert()
        .success()
        .get_output()
        .stdout,
    )
    .unwrap();
    let mut planned: Vec<&str> = plan["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    planned.sort();
    let spot = &docs[0];
    assert_eq!(spot["kind"], "NodePool");
    assert_eq!(spot["metadata"]["name"], "web");
    assert!(spot["metadata"].get("ownerReferences").is_none());
    assert!(spot["metadata"].get("annotations").is_none());
    assert!(
        spot["metadata"]["labels"]
            .get("app.kubernetes.io/managed-by")
            .is_none()
    );
    let types = common::nodepool_types(spot);
    assert_eq!(types, planned);
    // Beside them, the NodeOverlays that price the plan's order (risk pricing): pinned to the
    // spot NodePool, for spot offerings, every listed type in one; no ownership marks. The
    // example sets its own ceiling, so the plan ranks by cost: no premium, one level.
    assert!(!overlays.is_empty());
    let mut priced: Vec<String> = Vec::new();
    for o in &overlays {
        assert_eq!(o["kind"], "NodeOverlay");
        assert_eq!(o["apiVersion"], "karpenter.sh/v1alpha1");
        assert!(o["metadata"].get("ownerReferences").is_none());
        let reqs = o["spec"]["requirements"].as_array().unwrap();
        let value_of = |k: &str| {
            reqs.iter()
                .find(|r| r["key"] == k)
                .map(|r| r["values"].clone())
        };
        assert_eq!(
            value_of("karpenter.sh/nodepool"),
            Some(serde_json::json!(["web"]))
        );
        assert_eq!(
            value_of("karpenter.sh/capacity-type"),
            Some(serde_json::json!(["spot"]))
        );
        priced.extend(
            value_of("node.kubernetes.io/instance-type")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        assert_eq!(o["spec"]["priceAdjustment"], "+0%");
    }
    priced.sort();
    assert_eq!(priced, planned);
    let without = spotplan(&[
        "render",
        "--format",
        "nodepool",
        "--no-overlays",
        "-f",
        &example("web-on-demand-base.yaml"),
    ])
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let without: Vec<Value> =
        serde_saphyr::from_multiple(std::str::from_utf8(&without).unwrap()).unwrap();
    assert!(without.iter().all(|d| d["kind"] == "NodePool") && without.len() == 2);
    let od = &docs[1];
    assert_eq!(od["metadata"]["name"], "web-on-demand");
    assert_eq!(od["spec"]["limits"]["cpu"], "16");
    assert_eq!(od["spec"]["weight"], 11);

    // From flags: the node class is named, the on-demand base is the flag's.
    let out = spotplan(&with(
        &["render", "--format", "nodepool", "-o", "json"],
        &["--node-class", "batch", "--on-demand-base-cpu", "8"],
    ))
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let list: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(list["kind"], "List");
    let (items, overlays): (Vec<Value>, Vec<Value>) = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .partition(|d| d["kind"] == "NodePool");
    assert_eq!(items.len(), 2);
    // No ceiling of its own: the mode's band premiums rank it, so more than one level.
    let levels: std::collections::BTreeSet<&str> = overlays
        .iter()
        .map(|o| o["spec"]["priceAdjustment"].as_str().unwrap())
        .collect();
    assert!(levels.len() > 1, "{levels:?}");
    assert_eq!(
        items[0]["spec"]["template"]["spec"]["nodeClassRef"],
        serde_json::json!({"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "batch"})
    );
    assert_eq!(items[1]["spec"]["limits"]["cpu"], "8");
}
