//! Risk pricing on the AWS side: the CreateFleet request Karpenter's AWS provider sends for a
//! spotplan NodePool with its NodeOverlays, as it reached an AWS-protocol server (moto's own
//! request recorder), never our arithmetic.
//!
//! `tools/fleet-harness` runs the pinned modules' code end to end: Karpenter's NodeOverlay
//! controller validates spotplan's overlays against the NodePool and applies them, its NodeClaim
//! template annotates the claim, and karpenter-provider-aws's instance provider builds and sends
//! the CreateFleet (only launch-template resolution is stubbed; see the harness). The real
//! provider controller cannot run here: it needs an EKS cluster endpoint or DescribeCluster, SSM
//! parameters for its AMIs and the Pricing API at start, which moto does not serve as the
//! provider calls them.

mod common;
mod parts;

use common::aws::Moto;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn spotplan(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_spotplan"))
        .args(args)
        .arg("--advisor-data")
        .arg(common::shared_dir().join("data/spot-advisor/spot-advisor-data_2025-06-28.json"))
        .arg("--prices")
        .arg(common::prices_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spotplan {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const REQUEST: [&str; 6] = ["--region", "us-east-1", "--cores", "64", "--memory", "256"];

/// The harness's input: the NodePool and overlays `render --format nodepool` prints, and the
/// listed types with the spot offerings the kwok provider's file gives them (the same prices
/// Karpenter would hold).
fn input(moto: &Moto, extra: &[&str]) -> Value {
    let mut args = vec!["render", "--format", "nodepool", "-o", "json"];
    args.extend(REQUEST);
    args.extend(extra);
    let rendered: Value = serde_json::from_slice(&spotplan(&args)).unwrap();
    let items = rendered["items"].as_array().unwrap();
    let pool = items.iter().find(|i| i["kind"] == "NodePool").unwrap();
    let overlays: Vec<&Value> = items
        .iter()
        .filter(|i| i["kind"] == "NodeOverlay")
        .collect();
    let listed = common::nodepool_types(pool);
    let mut kwok_args = vec!["render", "--format", "kwok-instance-types"];
    kwok_args.extend(&REQUEST[..2]);
    let kwok: Vec<Value> = serde_json::from_slice(&spotplan(&kwok_args)).unwrap();
    let types: Vec<Value> = listed
        .iter()
        .map(|name| {
            let t = kwok.iter().find(|t| t["name"] == name.as_str()).unwrap();
            let offerings: Vec<Value> = t["offerings"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|o| {
                    let req = |k: &str| {
                        o["Requirements"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|r| r["key"] == k)
                            .map(|r| r["values"][0].clone())
                    };
                    (req("karpenter.sh/capacity-type")? == "spot").then(|| {
                        json!({"zone": req("topology.kubernetes.io/zone").unwrap(), "price": o["Price"]})
                    })
                })
                .collect();
            let t_moto = &common::indep::TYPES[name.as_str()];
            json!({
                "name": name, "arch": t["architecture"], "vcpus": t_moto.vcpus,
                "memoryMiB": t_moto.memory_mib, "offerings": offerings,
            })
        })
        .collect();
    json!({
        "endpoint": moto.url, "region": "us-east-1", "nodePool": pool,
        "overlays": overlays, "instanceTypes": types,
    })
}

/// Runs the harness on `input`; its summary, and the CreateFleet that reached moto.
fn launch(harness: &PathBuf, moto: &Moto, input: &Value) -> (Value, BTreeMap<String, String>) {
    assert!(post(&format!(
        "{}/moto-api/recorder/reset-recording",
        moto.url
    )));
    assert!(post(&format!(
        "{}/moto-api/recorder/start-recording",
        moto.url
    )));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(input).unwrap()).unwrap();
    let out = Command::new(harness).arg(file.path()).output().unwrap();
    assert!(
        out.status.success(),
        "fleet-harness: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recording = http_get(&format!(
        "{}/moto-api/recorder/download-recording",
        moto.url
    ));
    let fleets: Vec<BTreeMap<String, String>> = recording
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            let body = r["body"].as_str().unwrap_or_default();
            let body = if r["body_encoded"] == true {
                use base64::Engine;
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .unwrap(),
                )
                .unwrap()
            } else {
                body.to_string()
            };
            let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
            (form.get("Action").map(String::as_str) == Some("CreateFleet")).then_some(form)
        })
        .collect();
    assert_eq!(fleets.len(), 1, "one CreateFleet reached moto");
    (summary, fleets.into_iter().next().unwrap())
}

/// Each override of the request: (type, zone, priority).
fn overrides(form: &BTreeMap<String, String>) -> Vec<(String, String, Option<f64>)> {
    let mut by: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for (k, v) in form {
        if let Some(rest) = k.strip_prefix("LaunchTemplateConfigs.1.Overrides.") {
            let (n, field) = rest.split_once('.').unwrap();
            by.entry(n.parse().unwrap())
                .or_default()
                .insert(field.to_string(), v.clone());
        }
    }
    by.into_values()
        .map(|o| {
            (
                o["InstanceType"].clone(),
                o["AvailabilityZone"].clone(),
                o.get("Priority").map(|p| p.parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn createfleet_asks_aws_for_the_plans_order() {
    let Some(harness) = parts::tool("karpenter_aws", "fleet-harness") else {
        return;
    };
    let Some(moto) = Moto::start("karpenter_aws") else {
        return;
    };
    // The plan's ranking, as `recommend` prints it. At this size every type needs 2 nodes, so the
    // order of one node's price is the order of the request's.
    let mut rec = vec!["recommend", "-o", "json"];
    rec.extend(REQUEST);
    let plan: Value = serde_json::from_slice(&spotplan(&rec)).unwrap();
    let ranked: Vec<String> = plan["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["count"], 2, "{c}");
            c["type"].as_str().unwrap().to_string()
        })
        .collect();

    let (summary, fleet) = launch(&harness, &moto, &input(&moto, &[]));
    for (name, verdict) in summary["overlays"].as_object().unwrap() {
        assert_eq!(verdict, "True", "Karpenter's overlay controller on {name}");
    }
    assert_eq!(summary["priceOverlayApplied"], true, "{summary}");
    assert_eq!(fleet["Type"], "instant");
    assert_eq!(
        fleet["TargetCapacitySpecification.DefaultTargetCapacityType"],
        "spot"
    );
    assert_eq!(
        fleet["SpotOptions.AllocationStrategy"], "capacity-optimized-prioritized",
        "{fleet:?}"
    );
    // In every zone, the priorities (lowest first) list the types in the plan's order.
    let o = overrides(&fleet);
    let zones: std::collections::BTreeSet<&String> = o.iter().map(|x| &x.1).collect();
    assert!(zones.len() > 1);
    for zone in zones {
        let mut here: Vec<(f64, &String)> = o
            .iter()
            .filter(|x| &x.1 == zone)
            .map(|x| (x.2.expect("a priority on every override"), &x.0))
            .collect();
        here.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            here.windows(2).all(|w| w[0].0 < w[1].0),
            "ties in {zone}: {here:?}"
        );
        let by_priority: Vec<&String> = here.iter().map(|x| x.1).collect();
        let want: Vec<&String> = ranked.iter().filter(|t| by_priority.contains(t)).collect();
        assert_eq!(by_priority, want, "{zone}");
    }
    assert_eq!(
        summary["instanceType"],
        ranked[0].as_str(),
        "capacity assumed, the first"
    );

    // The control: the same NodePool without overlays goes out price-capacity-optimized, the
    // strategy that ignores any order.
    let (summary, fleet) = launch(&harness, &moto, &input(&moto, &["--no-overlays"]));
    assert_eq!(summary["priceOverlayApplied"], false, "{summary}");
    assert_eq!(
        fleet["SpotOptions.AllocationStrategy"], "price-capacity-optimized",
        "{fleet:?}"
    );
    eprintln!(
        "CreateFleet with overlays: capacity-optimized-prioritized over {} overrides, plan order {:?}",
        o.len(),
        &ranked[..5]
    );
}

fn post(url: &str) -> bool {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-X", "POST", url])
        .output()
        .unwrap();
    out.status.success()
}

fn http_get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "30", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url}");
    String::from_utf8(out.stdout).unwrap()
}
