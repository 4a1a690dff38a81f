//! Trust, on the real control plane (tests/rig): what another tenant can write (Events, labels,
//! annotations) moves nothing; a NodePool is the plan's by its owner reference and is repaired
//! whatever was edited, or reported when it was taken out of the plan's control; market data that
//! lost a plan's region is refused for that region.

mod parts;
mod rig;

use rig::{
    ClaimEvent, Rig, T, bind_controller_role, condition, eventually, not_ready, pending_claim,
    plan_yaml, ready,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Creates a NodeClaim of `nodepool` (as Karpenter's provisioner does, with its owner reference)
/// and returns its uid.
fn claim(rig: &Rig, name: &str, nodepool: &str) -> String {
    let (ok, out) = rig.apply(&pending_claim(
        rig,
        name,
        nodepool,
        &["m7g.8xlarge"],
        "us-east-1a",
    ));
    assert!(ok, "{out}");
    rig.get_json("nodeclaim", name).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `kubectl --as USER create -f -` with `yaml`: (success, output).
fn create_as(rig: &Rig, user: &str, yaml: &str) -> (bool, String) {
    let (ok, out, err) = rig.kubectl_raw(&["--as", user, "create", "-f", "-"], Some(yaml));
    (ok, format!("{out}{err}"))
}

fn logged_uids(sp: &Value) -> BTreeSet<String> {
    sp["status"]["interruptionLog"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["nodeClaimUid"].as_str().unwrap().to_string())
        .collect()
}

/// Interruption Events count only when Karpenter wrote them where it writes them, about a
/// NodeClaim of the plan's own NodePool (matched by uid). A tenant who may create Events in its
/// own namespace forges six SpotInterrupted Events that say they are Karpenter's, with old
/// timestamps, about NodeClaims named like the plan's, and one about a real NodeClaim's uid;
/// Events in `default` from another reporter, about a NodeClaim never seen, or about another
/// plan's NodeClaim are written as an admin could. None counts; then two Events as Karpenter
/// writes them about the plan's real NodeClaims shift it (the positive control), and the log
/// holds exactly those two.
#[test]
fn only_karpenters_events_about_the_plans_own_nodeclaims_count() {
    let Some(rig) = Rig::start("forged") else {
        return;
    };
    rig.kubectl(&["create", "namespace", "tenant"]);
    rig.kubectl(&[
        "create",
        "role",
        "events",
        "--verb=create",
        "--resource=events",
        "-n",
        "tenant",
    ]);
    rig.kubectl(&[
        "create",
        "rolebinding",
        "mallory",
        "--role=events",
        "--user=mallory",
        "-n",
        "tenant",
    ]);
    bind_controller_role(&rig, "spotplan-a");
    let controller = rig.controller("spotplan-a", &[]);
    let shift = "  capacity: {onDemandShift: {interruptions: 2}}\n";
    let (ok, out) = rig.apply(&plan_yaml("web", shift));
    assert!(ok, "{out}");
    let (ok, out) = rig.apply(&plan_yaml("other", ""));
    assert!(ok, "{out}");
    ready(&rig, "web");
    ready(&rig, "other");
    let real = [
        claim(&rig, "web-real1", "web"),
        claim(&rig, "web-real2", "web"),
    ];
    let bait = claim(&rig, "web-bait", "web");
    let others = claim(&rig, "other-real", "other");

    // The tenant: its own namespace only (the API server then wants the Event's object there
    // too), old timestamps, Karpenter's name on everything.
    let old = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(15);
    let forge = |claim: &str, uid: &str, n: u32| ClaimEvent {
        namespace: "tenant".into(),
        involved_namespace: Some("tenant".into()),
        at: old,
        ..ClaimEvent::karpenter(
            claim,
            uid,
            "SpotInterrupted",
            "Spot interruption warning was triggered",
            n,
        )
    };
    for n in 0..6 {
        let (ok, out) = create_as(
            &rig,
            "mallory",
            &forge(&format!("web-forged{n}"), &format!("fake-{n}"), n).yaml(),
        );
        assert!(ok, "the tenant may create Events in its namespace: {out}");
    }
    let (ok, out) = create_as(&rig, "mallory", &forge("web-bait", &bait, 9).yaml());
    assert!(ok, "{out}");
    let mut there = forge("web-bait", &bait, 10);
    there.namespace = "default".into();
    there.involved_namespace = None;
    let (ok, out) = create_as(&rig, "mallory", &there.yaml());
    assert!(
        !ok,
        "the tenant may not write where Karpenter writes: {out}"
    );

    // In Karpenter's namespace, as an admin could: another reporter, a NodeClaim never seen,
    // another plan's NodeClaim.
    let message = "Spot interruption warning was triggered";
    let mut other_reporter =
        ClaimEvent::karpenter("web-bait", &bait, "SpotInterrupted", message, 11);
    other_reporter.reporter = "kubectl".into();
    let unseen = ClaimEvent::karpenter(
        "web-unseen",
        "0000-never-seen",
        "SpotInterrupted",
        message,
        12,
    );
    let foreign = ClaimEvent::karpenter("other-real", &others, "SpotInterrupted", message, 13);
    for e in [other_reporter, unseen, foreign] {
        let (ok, out) = rig.apply(&e.yaml());
        assert!(ok, "{out}");
    }

    // The positive control: Karpenter's own Events about the plan's real NodeClaims.
    rig.karpenter_event("web-real1", &real[0], "SpotInterrupted", message, 1);
    rig.karpenter_event("web-real2", &real[1], "SpotInterrupted", message, 1);
    let sp = eventually(T, "web shifted by the two real interruptions", || {
        let sp = rig.get_json("spotplan", "web")?;
        (condition(&sp, "ShiftedToOnDemand")?.0 == "True").then_some(sp)
    });
    let want: BTreeSet<String> = real.iter().cloned().collect();
    assert_eq!(logged_uids(&sp), want, "{}", sp["status"]);
    let total: f64 = controller
        .metrics()
        .lines()
        .filter(|l| l.starts_with("spotplan_interruptions_total{"))
        .filter(|l| l.contains("plan=\"web\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 2.0, "the metric counts the same two");
    // The other plan's NodeClaim's Event is the other plan's own interruption.
    let other = eventually(T, "other's own interruption logged", || {
        let sp = rig.get_json("spotplan", "other")?;
        (!logged_uids(&sp).is_empty()).then_some(sp)
    });
    assert_eq!(logged_uids(&other), BTreeSet::from([others.clone()]));
    // The controller never listed Events outside Karpenter's namespace.
    let elsewhere: Vec<String> = rig
        .audit()
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "events")
        .filter(|e| matches!(e["verb"].as_str(), Some("list" | "watch")))
        .filter(|e| e["user"]["username"] == "spotplan-a")
        .filter(|e| e["objectRef"]["namespace"] != "default")
        .map(|e| e["requestURI"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
}

/// The controller's (`spotplan-a`'s) writes to NodePool `name` in the audit log since `mark`.
fn nodepool_writes(rig: &Rig, mark: usize, name: &str) -> usize {
    rig::writes_by(&rig.audit()[mark..], "spotplan-a")
        .into_iter()
        .filter(|(_, res, n)| res == "nodepools" && n == name)
        .count()
}

/// An owned NodePool is the plan's by its owner reference: removing the plan label and then
/// opening its requirements to one on-demand type with a 100% budget, a label-only edit, and an
/// annotation edit are each put right within seconds (the edit's own answer shows it happened;
/// the audit log shows the controller's write after it); the plan stays Ready throughout.
#[test]
fn edits_to_an_owned_nodepool_are_repaired_whatever_was_edited() {
    let Some(rig) = Rig::start("edits") else {
        return;
    };
    bind_controller_role(&rig, "spotplan-a");
    let _controller = rig.controller("spotplan-a", &[]);
    let (ok, out) = rig.apply(&plan_yaml("web", ""));
    assert!(ok, "{out}");
    ready(&rig, "web");
    let written = rig.get_json("nodepool", "web").unwrap();
    let same = |np: &Value| {
        np["metadata"]["labels"] == written["metadata"]["labels"]
            && np["metadata"]["annotations"] == written["metadata"]["annotations"]
            && np["spec"] == written["spec"]
    };
    let open_up = r#"{"spec":{"disruption":{"budgets":[{"nodes":"100%"}]},"template":{"spec":{"requirements":[{"key":"node.kubernetes.io/instance-type","operator":"In","values":["t3.micro"]},{"key":"karpenter.sh/capacity-type","operator":"In","values":["on-demand"]}]}}}}"#;
    let edits: [&[&str]; 4] = [
        &["label", "nodepool", "web", "spotplan.dev/plan-"],
        &["patch", "nodepool", "web", "--type=merge", "-p", open_up],
        &[
            "label",
            "--overwrite",
            "nodepool",
            "web",
            "spotplan.dev/role=other",
        ],
        &[
            "annotate",
            "--overwrite",
            "nodepool",
            "web",
            "spotplan.dev/owner-uid=someone-else",
        ],
    ];
    for edit in edits {
        let mark = rig.audit().len();
        let mut args = edit.to_vec();
        args.extend(["-o", "json"]);
        let edited: Value = serde_json::from_str(&rig.kubectl(&args)).unwrap();
        assert!(!same(&edited), "the edit happened: {edit:?}");
        eventually(T, &format!("{edit:?} repaired"), || {
            let np = rig.get_json("nodepool", "web")?;
            (same(&np) && nodepool_writes(&rig, mark, "web") > 0).then_some(())
        });
    }
    let sp = ready(&rig, "web");
    assert_eq!(condition(&sp, "Ready").unwrap().1, "PlanApplied");
}

/// A NodePool whose owner reference someone removed is out of the plan's control: the plan says
/// so (Ready=False, NodePoolReleased) and never writes it, even for a spec change it reports
/// (the audit log over the whole window holds no write to it). Restoring the owner reference
/// brings it back, and the positive control shows the same audit query sees the write then.
#[test]
fn a_nodepool_taken_out_of_control_is_reported_and_left_alone() {
    let Some(rig) = Rig::start("released") else {
        return;
    };
    bind_controller_role(&rig, "spotplan-a");
    let _controller = rig.controller("spotplan-a", &[]);
    let (ok, out) = rig.apply(&plan_yaml("web", ""));
    assert!(ok, "{out}");
    let sp = ready(&rig, "web");
    let uid = sp["metadata"]["uid"].as_str().unwrap().to_string();
    let mark = rig.audit().len();
    rig.kubectl(&[
        "patch",
        "nodepool",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
    ]);
    let (_, message) = not_ready(&rig, "web", "NodePoolReleased");
    assert!(message.contains("owner reference"), "{message}");
    // A spec change the plan reports (observedGeneration moves) and does not write.
    let (ok, out) = rig.apply(&plan_yaml("web", "  maxTypes: 16\n"));
    assert!(ok, "{out}");
    let (sp, _) = not_ready(&rig, "web", "NodePoolReleased");
    assert_eq!(sp["status"]["observedGeneration"], 2);
    let np = rig.get_json("nodepool", "web").unwrap();
    assert_eq!(
        nodepool_writes(&rig, mark, "web"),
        0,
        "never written while released"
    );
    assert!(np["metadata"]["ownerReferences"].is_null());
    // Restored: the plan takes it up again and writes the new spec.
    let restore = format!(
        r#"{{"metadata":{{"ownerReferences":[{{"apiVersion":"spotplan.dev/v1alpha1","kind":"SpotPlan","name":"web","uid":"{uid}","controller":true,"blockOwnerDeletion":true}}]}}}}"#
    );
    rig.kubectl(&["patch", "nodepool", "web", "--type=merge", "-p", &restore]);
    ready(&rig, "web");
    eventually(T, "the new spec written", || {
        (nodepool_writes(&rig, mark, "web") > 0).then_some(())
    });
}

/// A plan whose name a foreign NodePool holds says NodePoolConflict; once that NodePool is
/// deleted, the plan writes its own within seconds, with no edit of the plan.
#[test]
fn a_conflict_clears_when_the_foreign_nodepool_is_deleted() {
    let Some(rig) = Rig::start("clash") else {
        return;
    };
    let foreign = "apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: clash, labels: {spotplan.dev/plan: clash}}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: [{key: karpenter.sh/capacity-type, operator: In, values: [spot]}]
";
    let (ok, out) = rig.apply(foreign);
    assert!(ok, "{out}");
    let _controller = rig.controller("admin", &[]);
    let (ok, out) = rig.apply(&plan_yaml("clash", ""));
    assert!(ok, "{out}");
    not_ready(&rig, "clash", "NodePoolConflict");
    rig.kubectl(&["delete", "nodepool", "clash"]);
    let sp = ready(&rig, "clash");
    let np = rig.get_json("nodepool", "clash").unwrap();
    assert_eq!(
        np["metadata"]["ownerReferences"][0]["uid"],
        sp["metadata"]["uid"]
    );
}

/// A negative NodePool limit is refused at admission by the CRD's CEL rule, and by `-f`, each
/// naming the field.
#[test]
fn negative_nodepool_limits_are_refused() {
    let Some(rig) = Rig::start("limits") else {
        return;
    };
    let bad = plan_yaml("web", "").replace(
        "name: default}\n",
        "name: default}\n    limits: {cpu: \"-1\"}\n",
    );
    assert!(bad.contains("limits"), "{bad}");
    let (ok, out) = rig.apply(&bad);
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.nodePool.limits: each limit must be a quantity of at least 0"),
        "{out}"
    );
    let file = rig.dir.path().join("bad.yaml");
    std::fs::write(&file, &bad).unwrap();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_spotplan"))
        .args(["recommend", "-f"])
        .arg(&file)
        .arg("--advisor-data")
        .arg(&rig.advisor)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(2), "{err}");
    assert!(
        err.contains("spec.nodePool.limits: cpu: '-1' is not a quantity of at least 0"),
        "{err}"
    );
}

/// An advisor URL whose answer can be changed while the controller reads it.
struct Advisor {
    body: Arc<Mutex<(u16, Vec<u8>)>>,
    url: String,
}

impl Advisor {
    fn serve(body: Vec<u8>) -> Advisor {
        let body = Arc::new(Mutex::new((200u16, body)));
        let shared = body.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/spot-advisor-data.json",
            listener.local_addr().unwrap()
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (code, bytes) = shared.lock().unwrap().clone();
                answer(stream, code, &bytes);
            }
        });
        Advisor { body, url }
    }

    fn set(&self, code: u16, body: Vec<u8>) {
        *self.body.lock().unwrap() = (code, body);
    }
}

fn answer(mut stream: std::net::TcpStream, code: u16, body: &[u8]) {
    use std::io::{Read, Write};
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => request.extend_from_slice(&buf[..k]),
        }
    }
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// `plan`'s DataFresh condition once its message contains `needle`.
fn data_fresh(rig: &Rig, plan: &str, needle: &str) -> (String, String, String) {
    eventually(T, &format!("{plan} DataFresh mentions {needle:?}"), || {
        let sp = rig.get_json("spotplan", plan)?;
        condition(&sp, "DataFresh").filter(|c| c.2.contains(needle))
    })
}

/// Advisor data that lost a plan's region is refused for that region: the last good data stays
/// in use, DataFresh=False names the region, the plan is not rewritten with unknown bands, a new
/// plan there still gets known bands, a plan in another region stays fresh, the failure is
/// counted by source and reason and logged at WARN; each later failure's own error replaces
/// the message; good data clears it.
#[test]
fn advisor_data_that_lost_a_region_is_refused_for_that_region() {
    let Some(rig) = Rig::start("region") else {
        return;
    };
    let good = std::fs::read(&rig.advisor).unwrap();
    let mut doc: Value = serde_json::from_slice(&good).unwrap();
    doc["spot_advisor"]
        .as_object_mut()
        .unwrap()
        .remove("us-east-1");
    let lost = serde_json::to_vec(&doc).unwrap();
    let advisor = Advisor::serve(good.clone());
    let prices = rig.prices.display().to_string();
    let cache = rig.dir.path().join("cache").display().to_string();
    let args: Vec<String> = [
        "controller",
        "--advisor-data",
        &advisor.url,
        "--prices",
        &prices,
        "--listen",
        "127.0.0.1:0",
        "--cache-dir",
        &cache,
        "--leader-elect=false",
        "--refresh-interval",
        "2s",
    ]
    .map(String::from)
    .to_vec();
    let controller = rig.controller_cmd(&rig.kubeconfig, &args, &[]);
    let ceiling = "  maxInterruptionBand: 1\n";
    let (ok, out) = rig.apply(&plan_yaml("east", ceiling));
    assert!(ok, "{out}");
    let (ok, out) = rig.apply(&plan_yaml("west", "").replace("us-east-1", "eu-west-1"));
    assert!(ok, "{out}");
    let before = ready(&rig, "east");
    ready(&rig, "west");
    assert_eq!(condition(&before, "DataFresh").unwrap().0, "True");

    advisor.set(200, lost);
    let (status, reason, message) = data_fresh(&rig, "east", "us-east-1");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RegionRefused"),
        "{message}"
    );
    assert!(message.contains("lost us-east-1"), "{message}");
    let east = rig.get_json("spotplan", "east").unwrap();
    assert_eq!(
        east["status"]["plan"], before["status"]["plan"],
        "not rewritten"
    );
    assert_eq!(
        east["status"]["instanceTypes"],
        before["status"]["instanceTypes"]
    );
    let west = rig.get_json("spotplan", "west").unwrap();
    assert_eq!(
        condition(&west, "DataFresh").unwrap().0,
        "True",
        "{}",
        west["status"]
    );
    // A new plan there plans on the kept data: the same bands are known.
    let (ok, out) = rig.apply(&plan_yaml("east2", ceiling));
    assert!(ok, "{out}");
    let east2 = ready(&rig, "east2");
    assert_eq!(
        east2["status"]["plan"]["unknownBandTypes"], before["status"]["plan"]["unknownBandTypes"],
        "{}",
        east2["status"]["plan"]
    );
    assert_eq!(
        east2["status"]["instanceTypes"],
        before["status"]["instanceTypes"]
    );
    let failures = eventually(T, "a RegionLost failure counted", || {
        controller.metric(
            "spotplan_market_data_refresh_failures_total{reason=\"RegionLost\",source=\"spot-advisor\"}",
        )
    });
    assert!(failures >= 1.0);
    let log = controller.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("lost us-east-1")),
        "{log}"
    );

    // Each later failure's own error, not the one before.
    advisor.set(500, b"upstream broke".to_vec());
    let (status, reason, message) = data_fresh(&rig, "east", "500");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RefreshFailed"),
        "{message}"
    );
    assert!(!message.contains("lost us-east-1"), "{message}");
    advisor.set(200, b"<html>maintenance</html>".to_vec());
    let (_, _, message) = data_fresh(&rig, "east", "not valid JSON");
    assert!(!message.contains("500"), "{message}");
    // Good data again: fresh.
    advisor.set(200, good);
    eventually(T, "east fresh again", || {
        let sp = rig.get_json("spotplan", "east")?;
        (condition(&sp, "DataFresh")?.0 == "True").then_some(())
    });
}

/// A flood of interruptions beyond the log's limit (600 NodeClaims, two Events each): status and
/// the metric count every NodeClaim once; the log keeps the newest 500 and status counts the
/// rest beyond it.
#[test]
fn interruption_counts_agree_in_status_and_metrics_beyond_the_log_limit() {
    let Some(rig) = Rig::start("flood") else {
        return;
    };
    let controller = rig.controller("admin", &[]);
    // Never shifts: the counting is what is tested.
    let shift = "  capacity: {onDemandShift: {interruptions: 1000}}\n";
    let (ok, out) = rig.apply(&plan_yaml("flood", shift));
    assert!(ok, "{out}");
    ready(&rig, "flood");
    const CLAIMS: usize = 600;
    let claims: Vec<String> = (0..CLAIMS)
        .map(|i| {
            pending_claim(
                &rig,
                &format!("flood-{i:04}"),
                "flood",
                &["m7g.8xlarge"],
                "us-east-1a",
            )
        })
        .collect();
    let (ok, out) = rig.apply(&claims.join("---\n"));
    assert!(ok, "{out}");
    let listed: Value =
        serde_json::from_str(&rig.kubectl(&["get", "nodeclaims", "-o", "json"])).unwrap();
    let events: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            let name = c["metadata"]["name"].as_str().unwrap();
            let uid = c["metadata"]["uid"].as_str().unwrap();
            let message = "Spot interruption warning was triggered";
            [1, 2].map(|n| ClaimEvent::karpenter(name, uid, "SpotInterrupted", message, n).yaml())
        })
        .collect();
    assert_eq!(events.len(), 2 * CLAIMS);
    for chunk in events.chunks(200) {
        let (ok, out) = rig.apply(&chunk.join("---\n"));
        assert!(ok, "{out}");
    }
    let sum = |sp: &Value, field: &str| -> i64 {
        sp["status"][field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["count"].as_i64().unwrap())
            .sum()
    };
    let sp = eventually(
        Duration::from_secs(120),
        "600 interruptions in status",
        || {
            let sp = rig.get_json("spotplan", "flood")?;
            (sum(&sp, "observedInterruptions") == CLAIMS as i64).then_some(sp)
        },
    );
    assert_eq!(
        sp["status"]["interruptionLog"].as_array().unwrap().len(),
        500
    );
    assert_eq!(sum(&sp, "interruptionsBeyondLog"), (CLAIMS - 500) as i64);
    let metric = eventually(T, "the metric at 600", || {
        let total: f64 = controller
            .metrics()
            .lines()
            .filter(|l| l.starts_with("spotplan_interruptions_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        (total >= CLAIMS as f64).then_some(total)
    });
    assert_eq!(metric, CLAIMS as f64, "counted once per NodeClaim");
    // Later reconciles (the Events are all still there) count nothing twice.
    let (ok, out) = rig.apply(&plan_yaml("flood", shift).replace("64", "65"));
    assert!(ok, "{out}");
    let again = ready(&rig, "flood");
    assert_eq!(sum(&again, "observedInterruptions"), CLAIMS as i64);
    let total: f64 = controller
        .metrics()
        .lines()
        .filter(|l| l.starts_with("spotplan_interruptions_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, CLAIMS as f64);
}
