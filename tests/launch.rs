//! `spotplan render` for EC2 Fleet, Spot Fleet and Auto Scaling groups, and `--apply`, against
//! moto (a real AWS-protocol server) on 127.0.0.1: every rendered body goes to AWS unchanged
//! through boto3 (which checks each parameter name against the API model), and what AWS stores
//! is read back and compared with the plan. Weights are checked against moto's own type data
//! (`common::indep`), never the product's catalog. Where moto lacks a call (ModifyFleet) or
//! reports a different shape than AWS (DescribeSpotFleetRequests without the launch template
//! configs), the EC2 endpoint in front of moto answers in AWS's documented format.

mod common;
mod parts;

use common::aws::{self, Moto, Reply, Script};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role";

/// moto with launch template "web" and three default subnets in us-east-1.
struct Aws {
    moto: Moto,
    python: PathBuf,
    subnets: Vec<String>,
}

impl Aws {
    fn start(test: &str) -> Option<Aws> {
        let python = common::venv_python(test)?;
        let moto = Moto::start(test)?;
        let mut aws = Aws {
            moto,
            python,
            subnets: Vec::new(),
        };
        let setup = aws.client(&["setup"], None);
        aws.subnets = setup["subnets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(aws.subnets.len(), 3, "{setup}");
        Some(aws)
    }

    fn env(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]
    }

    /// tests/aws_client.py against moto, its JSON answer.
    fn client(&self, args: &[&str], stdin: Option<&[u8]>) -> Value {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/aws_client.py");
        let mut c = Command::new(&self.python);
        c.arg(script)
            .args(args)
            .envs(self.env(&self.moto.url))
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.unwrap_or_default()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "aws_client.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// spotplan with the shared market data, against `endpoint` (moto or a proxy in front).
    fn spotplan(&self, endpoint: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_spotplan"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", "/nonexistent")
            .envs(self.env(endpoint))
            .arg(args[0])
            .arg("--advisor-data")
            .arg(common::advisor_path())
            .arg("--prices")
            .arg(common::prices_path())
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn subnet_flag(&self) -> String {
        self.subnets.join(",")
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "spotplan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const REQUEST: [&str; 8] = [
    "--cores",
    "64",
    "--memory",
    "256",
    "--region",
    "us-east-1",
    "--arch",
    "amd64",
];

/// The plan's types, best first, from `spotplan recommend` with the same request.
fn plan_types(aws: &Aws, request: &[&str]) -> Vec<String> {
    let mut args = vec!["recommend", "-o", "json"];
    args.extend_from_slice(request);
    let plan: Value = serde_json::from_str(&ok(&aws.spotplan(&aws.moto.url, &args))).unwrap();
    plan["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap().to_string())
        .collect()
}

/// The weight a type must have in a 64 vCPU / 256 GiB fleet, from moto's own data: its vCPUs,
/// or the vCPUs its memory covers at 4 GiB per vCPU.
fn expected_weight(ty: &str) -> f64 {
    let t = &common::indep::TYPES[ty];
    let by_memory = (t.memory_mib / 1024 / 4).max(1);
    t.vcpus.min(by_memory) as f64
}

fn render(aws: &Aws, format: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["render", "--format", format, "--launch-template", "web"];
    args.extend_from_slice(&REQUEST);
    args.extend_from_slice(extra);
    let out = aws.spotplan(&aws.moto.url, &args);
    ok(&out).into_bytes()
}

#[test]
fn each_format_goes_to_aws_unchanged_and_reads_back_as_the_plan() {
    let Some(aws) = Aws::start("each_format_goes_to_aws_unchanged") else {
        return;
    };
    let types = plan_types(&aws, &REQUEST);
    assert!(types.len() >= 10, "{types:?}");
    let subnets = aws.subnet_flag();
    let placed = ["--subnet", subnets.as_str(), "--on-demand-base-cpu", "8"];

    // EC2 Fleet: every (type, subnet), weighted, prioritised by rank, 64 vCPUs with 8 on-demand.
    let mut extra = placed.to_vec();
    extra.extend(["--name", "fleet-a"]);
    let stored = aws.client(
        &["send", "ec2-fleet"],
        Some(&render(&aws, "ec2-fleet", &extra)),
    );
    let fleet = &stored[0];
    let overrides = fleet["LaunchTemplateConfigs"][0]["Overrides"]
        .as_array()
        .unwrap();
    let got: BTreeSet<(String, String)> = overrides
        .iter()
        .map(|o| {
            let ty = o["InstanceType"].as_str().unwrap().to_string();
            assert_eq!(
                o["WeightedCapacity"].as_f64().unwrap(),
                expected_weight(&ty),
                "{ty}"
            );
            let rank = types.iter().position(|t| *t == ty).unwrap() + 1;
            assert_eq!(o["Priority"].as_f64().unwrap(), rank as f64, "{ty}");
            (ty, o["SubnetId"].as_str().unwrap().to_string())
        })
        .collect();
    let want: BTreeSet<(String, String)> = types
        .iter()
        .flat_map(|t| aws.subnets.iter().map(move |s| (t.clone(), s.clone())))
        .collect();
    assert_eq!(got, want);
    assert_eq!(overrides.len(), types.len() * 3);
    let cap = &fleet["TargetCapacitySpecification"];
    assert_eq!(cap["TotalTargetCapacity"], 64);
    assert_eq!(cap["OnDemandTargetCapacity"], 8);
    assert_eq!(cap["DefaultTargetCapacityType"], "spot");
    assert_eq!(
        fleet["SpotOptions"]["AllocationStrategy"],
        "price-capacity-optimized"
    );
    assert_eq!(fleet["Type"], "maintain");
    // moto launched instances for the fleet: only the plan's types.
    let launched: BTreeSet<&str> = fleet["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceType"].as_str().unwrap())
        .collect();
    assert!(!launched.is_empty());
    assert!(
        launched.iter().all(|t| types.iter().any(|p| p == t)),
        "{launched:?}"
    );

    // Spot Fleet: moto keeps only the first override of a launch template config (its
    // spot_requests.py); the whole body passed boto3's validation against the API model and
    // moto's parser, and the first override is the plan's best type in the first subnet.
    let mut extra = placed.to_vec();
    extra.extend(["--fleet-role", ROLE, "--name", "fleet-b"]);
    let body = render(&aws, "spot-fleet", &extra);
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        sent["SpotFleetRequestConfig"]["LaunchTemplateConfigs"][0]["Overrides"]
            .as_array()
            .unwrap()
            .len(),
        48,
        "16 types x 3 subnets within Spot Fleet's 50"
    );
    let stored = aws.client(&["send", "spot-fleet"], Some(&body));
    let config = &stored[0]["SpotFleetRequestConfig"];
    assert_eq!(config["TargetCapacity"], 64);
    assert_eq!(config["IamFleetRole"], ROLE);
    assert_eq!(config["AllocationStrategy"], "priceCapacityOptimized");
    let first = &config["LaunchSpecifications"][0];
    assert_eq!(first["InstanceType"], types[0].as_str());
    assert_eq!(first["SubnetId"], aws.subnets[0].as_str());
    assert_eq!(
        first["WeightedCapacity"].as_f64().unwrap(),
        expected_weight(&types[0])
    );

    // Auto Scaling group: the plan's types in order, weights as strings, sized in vCPUs.
    let extra = [
        "--subnet",
        subnets.as_str(),
        "--on-demand-base-cpu",
        "8",
        "--on-demand-percentage",
        "10",
        "--name",
        "group-c",
    ];
    let stored = aws.client(&["send", "asg"], Some(&render(&aws, "asg", &extra)));
    let group = &stored[0];
    let policy = &group["MixedInstancesPolicy"];
    let got: Vec<(String, f64)> = policy["LaunchTemplate"]["Overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["InstanceType"].as_str().unwrap().to_string(),
                o["WeightedCapacity"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, f64)> = types
        .iter()
        .map(|t| (t.clone(), expected_weight(t)))
        .collect();
    assert_eq!(got, want);
    let d = &policy["InstancesDistribution"];
    assert_eq!(d["OnDemandBaseCapacity"], 8);
    assert_eq!(d["OnDemandPercentageAboveBaseCapacity"], 10);
    assert_eq!(d["SpotAllocationStrategy"], "price-capacity-optimized");
    assert_eq!(
        (
            &group["MinSize"],
            &group["DesiredCapacity"],
            &group["MaxSize"]
        ),
        (&Value::from(64), &Value::from(64), &Value::from(128))
    );
    let zones: BTreeSet<&str> = group["VPCZoneIdentifier"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(zones, aws.subnets.iter().map(String::as_str).collect());
    assert_eq!(group["CapacityRebalance"], true);
    assert!(
        group["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["Key"] == "spotplan.dev/name" && t["Value"] == "group-c")
    );
}

fn apply(aws: &Aws, endpoint: &str, format: &str, name: &str, extra: &[&str]) -> Output {
    let subnets = aws.subnet_flag();
    let mut args = vec![
        "render",
        "--format",
        format,
        "--launch-template",
        "web",
        "--subnet",
        subnets.as_str(),
        "--name",
        name,
        "--apply",
    ];
    if format == "spot-fleet" {
        args.extend(["--fleet-role", ROLE]);
    }
    if !extra.contains(&"--cores") {
        args.extend_from_slice(&REQUEST);
    }
    args.extend_from_slice(extra);
    aws.spotplan(endpoint, &args)
}

#[test]
fn apply_twice_makes_one_and_changes_nothing_the_second_time() {
    let Some(aws) = Aws::start("apply_twice") else {
        return;
    };
    let url = aws.moto.url.clone();
    for format in ["ec2-fleet", "spot-fleet", "asg"] {
        let first = apply(&aws, &url, format, "twice", &[]);
        let id = ok(&first).trim().to_string();
        assert!(stderr(&first).contains("created"), "{}", stderr(&first));
        let second = apply(&aws, &url, format, "twice", &[]);
        assert_eq!(
            ok(&second).trim(),
            id,
            "{format}: the same one is found again"
        );
        let stored = aws.client(&["show", format, "twice"], None);
        assert_eq!(stored.as_array().unwrap().len(), 1, "{format}: {stored}");
        // moto reports a Spot Fleet's launch specifications, not its launch template configs,
        // and keeps one of each config's overrides, so it always looks changed there; see
        // spot_fleet_compares_what_aws_reports for the comparison on AWS's own shape.
        if format != "spot-fleet" {
            assert!(
                stderr(&second).contains("unchanged"),
                "{format}: {}",
                stderr(&second)
            );
        }
    }

    // The Spot Fleet as moto itself stores it, read back through moto's own
    // DescribeSpotFleetRequests (found by the name tag, as spotplan finds it): one request, at
    // the plan's capacity; a larger plan modifies that same request to its capacity. (A smaller
    // one cannot be shown here: moto's ModifySpotFleetRequest fails to lower a fleet's capacity,
    // "No instances specified".)
    let fleet = |stored: &Value| -> (String, u64) {
        let arr = stored.as_array().unwrap();
        assert_eq!(arr.len(), 1, "{stored}");
        (
            arr[0]["SpotFleetRequestId"].as_str().unwrap().to_string(),
            arr[0]["SpotFleetRequestConfig"]["TargetCapacity"]
                .as_u64()
                .unwrap(),
        )
    };
    let (sfr, target) = fleet(&aws.client(&["show", "spot-fleet", "twice"], None));
    assert_eq!(target, 64);
    let larger = [
        "--cores",
        "96",
        "--memory",
        "384",
        "--region",
        "us-east-1",
        "--arch",
        "amd64",
    ];
    let out = apply(&aws, &url, "spot-fleet", "twice", &larger);
    assert_eq!(ok(&out).trim(), sfr, "{}", stderr(&out));
    assert_eq!(
        fleet(&aws.client(&["show", "spot-fleet", "twice"], None)),
        (sfr, 96),
        "moto's DescribeSpotFleetRequests after the change"
    );

    // The plan changes: the group is updated in place, its desired capacity left to scaling.
    let smaller = [
        "--cores",
        "48",
        "--memory",
        "192",
        "--region",
        "us-east-1",
        "--arch",
        "amd64",
    ];
    // Through the recording endpoint, to see what was sent.
    let (proxy, seen) = aws::ec2_endpoint(&url, Script::default());
    let out = apply(&aws, &proxy, "asg", "twice", &smaller);
    let err = stderr(&out);
    assert_eq!(ok(&out).trim(), "twice");
    assert!(
        err.contains("updated Auto Scaling group twice:") && err.contains("size"),
        "{err}"
    );
    assert!(err.contains("desired capacity left at 64"), "{err}");
    let sent = seen.bodies("UpdateAutoScalingGroup");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].contains("MinSize=48") && sent[0].contains("MaxSize=96"),
        "{}",
        sent[0]
    );
    assert!(!sent[0].contains("DesiredCapacity"), "{}", sent[0]);
    // (moto then lowers the desired capacity to the new minimum, as it counts instances, not
    // weighted units, against it; AWS keeps 64, which is within 48..96.)
    let group = &aws.client(&["show", "asg", "twice"], None)[0];
    assert_eq!(
        (&group["MinSize"], &group["MaxSize"]),
        (&Value::from(48), &Value::from(96))
    );
    let types: Vec<&str> = group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["InstanceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, plan_types(&aws, &smaller));
}

#[test]
fn ec2_fleet_updates_in_place_what_modify_fleet_can_change() {
    let Some(aws) = Aws::start("ec2_fleet_updates") else {
        return;
    };
    // moto has no ModifyFleet: the endpoint answers it as AWS does, and records the request.
    let script = Script::default();
    script.set(
        "ModifyFleet",
        vec![Reply::Xml(
            "<ModifyFleetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><return>true</return></ModifyFleetResponse>".into(),
        )],
    );
    let (ec2, seen) = aws::ec2_endpoint(&aws.moto.url, script);
    let id = ok(&apply(&aws, &ec2, "ec2-fleet", "mod", &[]))
        .trim()
        .to_string();

    // A strategy change cannot be made in place: said, and nothing sent.
    let out = apply(
        &aws,
        &ec2,
        "ec2-fleet",
        "mod",
        &["--allocation-strategy", "capacity-optimized"],
    );
    assert_eq!(ok(&out).trim(), id);
    let err = stderr(&out);
    assert!(
        err.contains("not changed")
            && err.contains("allocation strategy: price-capacity-optimized -> capacity-optimized"),
        "{err}"
    );
    assert_eq!(seen.count("ModifyFleet"), 0);

    // A bigger request: ModifyFleet with the new target and the overrides.
    let bigger = [
        "--cores",
        "96",
        "--memory",
        "384",
        "--region",
        "us-east-1",
        "--arch",
        "amd64",
    ];
    let out = apply(&aws, &ec2, "ec2-fleet", "mod", &bigger);
    assert_eq!(ok(&out).trim(), id);
    assert!(stderr(&out).contains("target capacity"), "{}", stderr(&out));
    let bodies = seen.bodies("ModifyFleet");
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert!(body.contains(&format!("FleetId={id}")), "{body}");
    assert!(
        body.contains("TargetCapacitySpecification.TotalTargetCapacity=96"),
        "{body}"
    );
    let new_types = plan_types(&aws, &bigger);
    assert!(
        body.contains(&format!(
            "LaunchTemplateConfig.1.Overrides.1.InstanceType={}",
            new_types[0]
        )),
        "{body}"
    );

    // A fleet of type request cannot be modified at all: said, nothing sent.
    ok(&apply(
        &aws,
        &ec2,
        "ec2-fleet",
        "once",
        &["--type", "request"],
    ));
    let out = apply(
        &aws,
        &ec2,
        "ec2-fleet",
        "once",
        &[
            "--type",
            "request",
            "--cores",
            "96",
            "--memory",
            "384",
            "--region",
            "us-east-1",
            "--arch",
            "amd64",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("not changed") && err.contains("target capacity: 64 vCPUs"),
        "{err}"
    );
    assert_eq!(seen.count("ModifyFleet"), 1);
}

/// A DescribeSpotFleetRequests answer in AWS's shape (launch template configs and tags) for a
/// rendered Spot Fleet body, with its target capacity replaced by `target`.
fn spot_fleet_xml(body: &Value, target: u64) -> String {
    let c = &body["SpotFleetRequestConfig"];
    let lt = &c["LaunchTemplateConfigs"][0];
    let overrides: String = lt["Overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "<item><instanceType>{}</instanceType><subnetId>{}</subnetId><weightedCapacity>{}</weightedCapacity><priority>{}</priority></item>",
                o["InstanceType"].as_str().unwrap(),
                o["SubnetId"].as_str().unwrap(),
                o["WeightedCapacity"],
                o["Priority"]
            )
        })
        .collect();
    let tags: String = c["TagSpecifications"][0]["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "<item><key>{}</key><value>{}</value></item>",
                t["Key"].as_str().unwrap(),
                t["Value"].as_str().unwrap()
            )
        })
        .collect();
    format!(
        "<DescribeSpotFleetRequestsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><spotFleetRequestConfigSet><item><spotFleetRequestId>sfr-0123456789abcdef0</spotFleetRequestId><spotFleetRequestState>active</spotFleetRequestState><spotFleetRequestConfig><allocationStrategy>{}</allocationStrategy><iamFleetRole>{}</iamFleetRole><launchTemplateConfigs><item><launchTemplateSpecification><launchTemplateName>{}</launchTemplateName><version>{}</version></launchTemplateSpecification><overrides>{overrides}</overrides></item></launchTemplateConfigs><targetCapacity>{target}</targetCapacity><onDemandTargetCapacity>{}</onDemandTargetCapacity><type>{}</type></spotFleetRequestConfig><tagSet>{tags}</tagSet></item></spotFleetRequestConfigSet></DescribeSpotFleetRequestsResponse>",
        c["AllocationStrategy"].as_str().unwrap(),
        c["IamFleetRole"].as_str().unwrap(),
        lt["LaunchTemplateSpecification"]["LaunchTemplateName"]
            .as_str()
            .unwrap(),
        lt["LaunchTemplateSpecification"]["Version"]
            .as_str()
            .unwrap(),
        c["OnDemandTargetCapacity"],
        c["Type"].as_str().unwrap(),
    )
}

#[test]
fn spot_fleet_compares_what_aws_reports() {
    let Some(aws) = Aws::start("spot_fleet_compares") else {
        return;
    };
    let subnets = aws.subnet_flag();
    let body: Value = serde_json::from_slice(&render(
        &aws,
        "spot-fleet",
        &[
            "--subnet",
            subnets.as_str(),
            "--fleet-role",
            ROLE,
            "--name",
            "sf",
        ],
    ))
    .unwrap();
    let script = Script::default();
    script.set(
        "DescribeSpotFleetRequests",
        vec![
            Reply::Xml(spot_fleet_xml(&body, 64)),
            Reply::Xml(spot_fleet_xml(&body, 32)),
        ],
    );
    script.set(
        "ModifySpotFleetRequest",
        vec![Reply::Xml(
            "<ModifySpotFleetRequestResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><return>true</return></ModifySpotFleetRequestResponse>".into(),
        )],
    );
    let (ec2, seen) = aws::ec2_endpoint(&aws.moto.url, script);
    // What AWS reports matches the plan: nothing is sent.
    let out = apply(&aws, &ec2, "spot-fleet", "sf", &[]);
    assert_eq!(ok(&out).trim(), "sfr-0123456789abcdef0");
    assert!(stderr(&out).contains("unchanged"), "{}", stderr(&out));
    assert_eq!(
        seen.count("RequestSpotFleet") + seen.count("ModifySpotFleetRequest"),
        0
    );
    // AWS reports 32 vCPUs: ModifySpotFleetRequest sets 64 again, with the overrides.
    let out = apply(&aws, &ec2, "spot-fleet", "sf", &[]);
    assert!(
        stderr(&out).contains("updated Spot Fleet request sfr-0123456789abcdef0: target capacity"),
        "{}",
        stderr(&out)
    );
    let bodies = seen.bodies("ModifySpotFleetRequest");
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].contains("TargetCapacity=64"), "{}", bodies[0]);
    assert!(
        bodies[0].contains("LaunchTemplateConfig.1.Overrides.1.WeightedCapacity="),
        "{}",
        bodies[0]
    );
}

#[test]
fn refusals_name_the_call_the_code_and_the_message() {
    let Some(aws) = Aws::start("refusals_name_the_call") else {
        return;
    };
    let url = aws.moto.url.clone();
    let subnets = aws.subnet_flag();
    let mut args = vec![
        "render",
        "--format",
        "ec2-fleet",
        "--launch-template",
        "missing",
        "--subnet",
        subnets.as_str(),
        "--apply",
    ];
    args.extend_from_slice(&REQUEST);
    let out = aws.spotplan(&url, &args);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ec2:CreateFleet: InvalidLaunchTemplateName.NotFoundException: "),
        "{err}"
    );

    // A group spotplan did not make is never changed.
    let before = aws.client(&["foreign-asg", "theirs"], None);
    let out = apply(&aws, &url, "asg", "theirs", &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).contains("spotplan did not make it"),
        "{}",
        stderr(&out)
    );
    let after = aws.client(&["show", "asg", "theirs"], None);
    assert_eq!(before[0]["MinSize"], after[0]["MinSize"]);
    assert_eq!(
        after[0]["MixedInstancesPolicy"],
        before[0]["MixedInstancesPolicy"]
    );

    // No credentials: said before any call.
    let out = Command::new(env!("CARGO_BIN_EXE_spotplan"))
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_ENDPOINT_URL", &url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .args([
            "render",
            "--format",
            "asg",
            "--launch-template",
            "web",
            "--subnet",
            subnets.as_str(),
            "--apply",
        ])
        .args(REQUEST)
        .arg("--advisor-data")
        .arg(common::advisor_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).contains("--apply: no AWS credentials"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hung_endpoint_ends_within_the_timeout() {
    let Some(aws) = Aws::start("a_hung_endpoint") else {
        return;
    };
    let script = Script::default();
    script.set("DescribeFleets", vec![Reply::Hang]);
    let (ec2, _) = aws::ec2_endpoint(&aws.moto.url, script);
    let start = Instant::now();
    let out = apply(&aws, &ec2, "ec2-fleet", "hung", &["--aws-timeout", "3s"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ec2:DescribeFleets"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
