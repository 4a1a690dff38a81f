//! End to end with real Karpenter (its kwok cloud provider) on the test control plane: the
//! NodeClaims Karpenter launches for a SpotPlan's pods use only the plan's instance types, on
//! spot; with an on-demand base smaller than every planned type the first capacity is
//! on-demand, on types that fit it, and reaches the base (within a node, as Karpenter checks
//! limits late) before spot takes over; a control NodePool without spotplan's list shows
//! Karpenter would otherwise choose other types; Karpenter's own Ready on the NodePools shows in
//! the plan (and a missing node class makes it not Ready).
//!
//! Karpenter is fed the whole embedded catalog for us-east-1 with the shared market data's
//! prices (`spotplan render --format kwok-instance-types`), including cheaper types the plan leaves out.

mod common;
mod parts;
mod rig;

use rig::{Rig, condition, eventually, run_ok};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

/// The kwok provider's node class every NodePool here refers to.
const KWOK_NODE_CLASS: &str =
    "apiVersion: karpenter.kwok.sh/v1alpha1\nkind: KWOKNodeClass\nmetadata: {name: default}\n";

/// A control NodePool without spotplan's list (pods select it with `pool: control`): what
/// Karpenter does with no plan, and no overlay of a plan's.
const CONTROL_NODEPOOL: &str = "apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: control}
spec:
  template:
    metadata: {labels: {pool: control}}
    spec:
      nodeClassRef: {group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}
      requirements:
      - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}
";

fn plan(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: spotplan.dev/v1alpha1
kind: SpotPlan
metadata: {{name: {name}}}
spec:
  region: us-east-1
  resources: {{cpu: \"64\", memory: 256Gi}}
  maxInterruptionBand: 2
  nodePool:
    nodeClassRef: {{group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}}
{extra}"
    )
}

/// `replicas` pods of 7 vCPU / 28 GiB that must each get their own node, selecting `selector`.
fn deployment(name: &str, selector: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{{selector}}}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector: {{matchLabels: {{app: {name}}}}}
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
        resources: {{requests: {{cpu: \"7\", memory: 28Gi}}}}
"
    )
}

fn ready_types(rig: &Rig, name: &str) -> BTreeSet<String> {
    eventually(T, &format!("SpotPlan {name} Ready"), || {
        let sp = rig.get_json("spotplan", name)?;
        (condition(&sp, "Ready")?.0 == "True").then(|| {
            sp["status"]["instanceTypes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
    })
}

/// (instance type, capacity type, cpu) of the NodeClaims of `nodepool`, once every one of them
/// carries its launch labels; `None` while some do not yet (never silently dropped: a claim that
/// never gets them fails the wait).
fn claims(rig: &Rig, nodepool: &str) -> Option<Vec<(String, String, u32)>> {
    rig.list_json(
        "nodeclaims",
        Some(&format!("karpenter.sh/nodepool={nodepool}")),
    )
    .iter()
    .map(|c: &Value| {
        let labels = &c["metadata"]["labels"];
        let ty = labels["node.kubernetes.io/instance-type"]
            .as_str()?
            .to_string();
        let cap = labels["karpenter.sh/capacity-type"].as_str()?.to_string();
        // vCPUs from moto's data, not the product's catalog.
        let cpu = common::indep::TYPES.get(&ty).map_or(0, |t| t.vcpus as u32);
        Some((ty, cap, cpu))
    })
    .collect()
}

/// The whole catalog for us-east-1 with the rig's prices, in the kwok provider's
/// instance-types format (`spotplan render --format kwok-instance-types`): its path and bytes.
fn kwok_instance_types(rig: &Rig) -> (std::path::PathBuf, Vec<u8>) {
    let path = rig.dir.path().join("kwok-instance-types.json");
    let mut render = std::process::Command::new(env!("CARGO_BIN_EXE_spotplan"));
    render
        .args([
            "render",
            "--format",
            "kwok-instance-types",
            "--region",
            "us-east-1",
        ])
        .arg("--advisor-data")
        .arg(&rig.advisor)
        .arg("--prices")
        .arg(&rig.prices);
    let json = run_ok(render);
    std::fs::write(&path, &json).unwrap();
    (path, json)
}

#[test]
fn karpenter_launches_only_planned_types() {
    let Some(rig) = Rig::start("karpenter") else {
        return;
    };
    let (types_file, types_json) = kwok_instance_types(&rig);
    let catalog: Value = serde_json::from_slice(&types_json).unwrap();
    assert!(
        catalog.as_array().unwrap().len() > 1000,
        "the whole catalog, not the plan's list"
    );

    let karpenter = rig.karpenter(&types_file);
    let _controller = rig.controller("admin", &[]);
    assert!(rig.apply(KWOK_NODE_CLASS).0);

    // 1. A plan's pods land only on the plan's types, on spot.
    rig.apply(&plan("e2e", ""));
    let listed = ready_types(&rig, "e2e");
    rig.apply(&deployment("e2e", "spotplan.dev/plan: e2e", 4));
    let launched = eventually(T, "4 labelled NodeClaims for the plan", || {
        let c = claims(&rig, "e2e")?;
        (c.len() >= 4).then_some(c)
    });
    for (ty, cap, _) in &launched {
        assert!(
            listed.contains(ty),
            "Karpenter launched {ty}, not in the plan's list {listed:?}"
        );
        assert_eq!(cap, "spot", "{ty}");
    }

    // 2. Control: the same pods on a NodePool without spotplan's list. Karpenter picks types the
    //    plan leaves out, or the test above would prove nothing.
    assert!(rig.apply(CONTROL_NODEPOOL).0);
    rig.apply(&deployment("control", "pool: control", 4));
    let unrestricted = eventually(T, "4 labelled NodeClaims for the control NodePool", || {
        let c = claims(&rig, "control")?;
        (c.len() >= 4).then_some(c)
    });
    let outside: Vec<_> = unrestricted
        .iter()
        .filter(|(ty, _, _)| !listed.contains(ty))
        .collect();
    assert!(
        !outside.is_empty(),
        "unrestricted Karpenter chose only planned types: {unrestricted:?}"
    );

    // Karpenter's own Ready on what spotplan wrote shows in the plan.
    let sp = eventually(T, "NodePoolsReady=True for e2e", || {
        let sp = rig.get_json("spotplan", "e2e")?;
        (condition(&sp, "NodePoolsReady")?.0 == "True").then_some(sp)
    });
    assert_eq!(condition(&sp, "Ready").unwrap().0, "True");

    // 3. An on-demand base smaller than every planned type (16 vCPU; the plan's types have 32
    //    or more): the floor gets types that fit inside it, the first capacity is on-demand up
    //    to the base (Karpenter checks limits late, so within one node), the rest spot.
    rig.apply(&plan("base", "  capacity: {onDemandBase: {cpu: \"16\"}}\n"));
    let base_types = ready_types(&rig, "base");
    assert!(
        base_types
            .iter()
            .all(|t| common::indep::TYPES.get(t).is_some_and(|x| x.vcpus > 16)),
        "every planned spot type is larger than the base: {base_types:?}"
    );
    let od_pool = rig.get_json("nodepool", "base-on-demand").unwrap();
    let od_pool_types: BTreeSet<String> =
        od_pool["spec"]["template"]["spec"]["requirements"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
    rig.apply(&deployment("base", "spotplan.dev/plan: base", 5));
    let (od, spot) = eventually(
        T,
        "5 labelled NodeClaims across the base's NodePools",
        || {
            let od = claims(&rig, "base-on-demand")?;
            let spot = claims(&rig, "base")?;
            (od.len() + spot.len() >= 5).then_some((od, spot))
        },
    );
    assert!(
        !od.is_empty(),
        "the higher-weight on-demand NodePool launched first: {spot:?}"
    );
    assert!(!spot.is_empty(), "past the base, capacity is spot: {od:?}");
    let od_cpu: u32 = od.iter().map(|c| c.2).sum();
    let largest = od.iter().map(|c| c.2).max().unwrap_or(0);
    assert!(
        od.iter().all(|c| c.2 > 0),
        "a launched type moto does not know: {od:?}"
    );
    assert!(
        od_cpu <= 16 + largest,
        "on-demand {od_cpu} vCPU overran the 16 vCPU base by more than a node: {od:?}"
    );
    // And it reaches the base: spot takes over only once on-demand is within a node of it.
    assert!(
        od_cpu + largest >= 16,
        "on-demand stopped at {od_cpu} vCPU, more than a node short of the 16 vCPU base: {od:?}; spot {spot:?}"
    );
    for (ty, cap, cpu) in &od {
        assert_eq!(cap, "on-demand");
        assert!(od_pool_types.contains(ty), "{ty} not in {od_pool_types:?}");
        assert!(*cpu <= 16, "{ty} has {cpu} vCPU");
    }
    for (ty, cap, _) in &spot {
        assert_eq!(cap, "spot");
        assert!(base_types.contains(ty), "{ty}");
    }
    // 4. A node class Karpenter does not have: it cannot launch from the NodePool, and the
    //    plan says so with Karpenter's reason instead of reporting Ready.
    let nocls = plan("nocls", "").replace("name: default}", "name: missing}");
    assert!(rig.apply(&nocls).0);
    let sp = eventually(T, "nocls Ready=False/NodePoolsNotReady", || {
        let sp = rig.get_json("spotplan", "nocls")?;
        (condition(&sp, "Ready")?.1 == "NodePoolsNotReady").then_some(sp)
    });
    let (_, _, message) = condition(&sp, "Ready").unwrap();
    assert!(message.contains("NodeClassReady=False"), "{message}");
    assert_eq!(condition(&sp, "NodePoolsReady").unwrap().0, "False");
    eprintln!(
        "plan types: {listed:?}\nplan NodeClaims: {launched:?}\ncontrol NodeClaims: {unrestricted:?}\nbase: on-demand {od:?} from {od_pool_types:?}, spot {spot:?}\nno class: {message}"
    );
    assert!(!karpenter.log_text().is_empty());
}

/// The node lifecycle controller's one duty these tests need, which the rig's
/// kube-controller-manager runs without (it would evict pods from fake nodes): once KWOK has
/// marked a Node Ready, its `node.kubernetes.io/not-ready` taint goes, so Karpenter sees it
/// initialized and can drift and replace it.
///
/// The patch carries the resourceVersion it was computed from, so it applies only to the Node
/// as read: Karpenter removes its own `karpenter.sh/unregistered` taint from the same list, and
/// an unconditional write of the list read a moment before put that taint back, leaving the
/// NodeClaim uninitialized for good (seen under load). A conflict is retried on the next tick.
fn node_lifecycle(rig: &Rig) -> rig::Repeating {
    let (kubectl, kubeconfig) = (rig.tools.join("kubectl"), rig.kubeconfig.clone());
    let run = move |args: &[&str]| {
        std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .ok()
    };
    rig::Repeating::every(Duration::from_secs(1), move || {
        let Some(out) = run(&["get", "nodes", "-o", "json"]) else {
            return;
        };
        let nodes: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for n in nodes["items"].as_array().into_iter().flatten() {
            let ready = n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let taints: Vec<&Value> = n["spec"]["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let kept: Vec<&Value> = taints
                .iter()
                .copied()
                .filter(|t| t["key"] != "node.kubernetes.io/not-ready")
                .collect();
            if ready && kept.len() < taints.len() {
                let name = n["metadata"]["name"].as_str().unwrap_or_default();
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": n["metadata"]["resourceVersion"]},
                    "spec": {"taints": kept},
                });
                run(&[
                    "patch",
                    "node",
                    name,
                    "--type",
                    "merge",
                    "-p",
                    &patch.to_string(),
                ]);
            }
        }
    })
}

/// Records a spot interruption the way Karpenter's interruption controller does: a Warning
/// Event, reason SpotInterrupted, on the NodeClaim, then the NodeClaim deleted.
fn interrupt(rig: &Rig, claim: &Value, n: u32) {
    let name = claim["metadata"]["name"].as_str().unwrap();
    let uid = claim["metadata"]["uid"].as_str().unwrap();
    rig.karpenter_event(
        name,
        uid,
        "SpotInterrupted",
        "Spot interruption warning was triggered",
        n,
    );
    rig.kubectl(&["delete", "nodeclaim", name, "--wait=false"]);
}

/// Labelled NodeClaims of `nodepool` (every one of them labelled), as objects.
fn claim_objects(rig: &Rig, nodepool: &str) -> Option<Vec<Value>> {
    let all = rig.list_json(
        "nodeclaims",
        Some(&format!("karpenter.sh/nodepool={nodepool}")),
    );
    all.iter()
        .all(|c| c["metadata"]["labels"]["karpenter.sh/capacity-type"].is_string())
        .then_some(all)
        .map(|v| {
            v.into_iter()
                .filter(|c| c["metadata"]["deletionTimestamp"].is_null())
                .collect()
        })
}

fn capacity(c: &Value) -> &str {
    c["metadata"]["labels"]["karpenter.sh/capacity-type"]
        .as_str()
        .unwrap_or("")
}

/// The on-demand shift on real Karpenter: two interruptions within the window shift new capacity
/// to an on-demand NodePool above the spot one (running spot nodes stay); a controller restart
/// in the middle loses nothing; after calm, spot takes new capacity again and the shift's
/// on-demand NodeClaims are replaced by spot ones, one at a time, until the shift NodePool is
/// gone. A control plan without onDemandShift gets as many interruptions as the shifting plan
/// (enough to shift it, had it asked), records them, and never shifts.
#[test]
fn interruptions_shift_to_on_demand_and_back() {
    let Some(rig) = Rig::start("shift") else {
        return;
    };
    let (types_file, _) = kwok_instance_types(&rig);
    let karpenter = rig.karpenter(&types_file);
    let _kwok = rig.kwok();
    let _lifecycle = node_lifecycle(&rig);
    let mut controller = rig.controller("admin", &[]);
    assert!(rig.apply(KWOK_NODE_CLASS).0);
    let long = Duration::from_secs(240);

    rig.apply(&plan(
        "shifty",
        "  capacity: {onDemandShift: {interruptions: 2, window: 10m, calm: 40s}}\n",
    ));
    rig.apply(&plan("steady", ""));
    let listed = ready_types(&rig, "shifty");
    ready_types(&rig, "steady");
    let sp = rig.get_json("spotplan", "shifty").unwrap();
    assert_eq!(condition(&sp, "ShiftedToOnDemand").unwrap().1, "OnSpot");
    rig.apply(&deployment("shifty", "spotplan.dev/plan: shifty", 2));
    rig.apply(&deployment("steady", "spotplan.dev/plan: steady", 2));
    let first = eventually(T, "2 spot NodeClaims for shifty", || {
        claim_objects(&rig, "shifty").filter(|c| c.len() >= 2)
    });
    let steady = eventually(T, "2 spot NodeClaims for steady", || {
        claim_objects(&rig, "steady").filter(|c| c.len() >= 2)
    });
    assert!(first.iter().all(|c| capacity(c) == "spot"));

    // One interruption: below the threshold, still on spot.
    interrupt(&rig, &first[0], 1);
    eventually(T, "the first interruption in status", || {
        let sp = rig.get_json("spotplan", "shifty")?;
        (sp["status"]["interruptionLog"].as_array()?.len() == 1).then_some(())
    });
    assert!(rig.get_json("nodepool", "shifty-shift").is_none());
    // The control plan: two interruptions within the window, as many as shift 'shifty'. They
    // are recorded, and it never shifts: it did not ask to.
    interrupt(&rig, &steady[0], 1);
    interrupt(&rig, &steady[1], 2);

    // The second within the window: shifted.
    interrupt(&rig, &first[1], 2);
    let shifted = eventually(T, "ShiftedToOnDemand=True", || {
        let sp = rig.get_json("spotplan", "shifty")?;
        (condition(&sp, "ShiftedToOnDemand")?.0 == "True").then_some(sp)
    });
    let observed = shifted["status"]["observedInterruptions"]
        .as_array()
        .unwrap();
    let total: u64 = observed.iter().map(|o| o["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 2, "{observed:?}");
    for o in observed {
        let ty = o["instanceType"].as_str().unwrap();
        assert!(
            first
                .iter()
                .any(|c| c["metadata"]["labels"]["node.kubernetes.io/instance-type"] == ty)
        );
    }
    let pool = rig
        .get_json("nodepool", "shifty-shift")
        .expect("the shift NodePool");
    let spot_pool = rig.get_json("nodepool", "shifty").unwrap();
    assert!(pool["spec"]["weight"].as_i64() > spot_pool["spec"]["weight"].as_i64());
    let reqs = pool["spec"]["template"]["spec"]["requirements"]
        .as_array()
        .unwrap();
    assert!(reqs.iter().any(|r| r["key"] == "karpenter.sh/capacity-type"
        && r["values"] == serde_json::json!(["on-demand"])));

    // Counted once per NodeClaim, by type and zone.
    let m = controller.metrics();
    let counted: f64 = m
        .lines()
        .filter(|l| l.starts_with("spotplan_interruptions_total{") && l.contains("plan=\"shifty\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, 2.0, "{m}");
    assert!(
        m.contains("spotplan_plan_shifted{plan=\"shifty\"} 1"),
        "{m}"
    );

    // A restart in the middle: the counts, the posture and its start survive.
    let restart_mark = rig.audit().len();
    let shift_pool_deletes = |from: usize| -> usize {
        rig::writes_by(&rig.audit()[from..], "admin")
            .iter()
            .filter(|(verb, res, n)| verb == "delete" && res == "nodepools" && n == "shifty-shift")
            .count()
    };
    controller.stop();
    let since = shifted["status"]["shift"]["since"].clone();
    let mut controller = rig.controller("admin", &[]);
    controller.wait_ready();
    // The new process has reconciled 'shifty' once it exports the plan's posture (a gauge only
    // a reconcile sets); what status says after that is its decision, not a race.
    eventually(T, "the restarted controller's reconcile of shifty", || {
        controller
            .metrics()
            .contains("spotplan_plan_shifted{plan=\"shifty\"} 1")
            .then_some(())
    });
    let sp = rig.get_json("spotplan", "shifty").unwrap();
    assert_eq!(condition(&sp, "ShiftedToOnDemand").unwrap().0, "True");
    assert_eq!(sp["status"]["shift"]["since"], since, "{}", sp["status"]);
    assert_eq!(sp["status"]["interruptionLog"].as_array().unwrap().len(), 2);

    // New capacity (the interrupted pods' replacements, and two more pods) lands on on-demand.
    rig.apply(&deployment("shifty", "spotplan.dev/plan: shifty", 4));
    let od = eventually(long, "on-demand NodeClaims in the shift NodePool", || {
        claim_objects(&rig, "shifty-shift").filter(|c| c.len() >= 2)
    });
    assert!(od.iter().all(|c| capacity(c) == "on-demand"), "{od:?}");
    assert_eq!(
        shift_pool_deletes(restart_mark),
        0,
        "the restarted controller deleted the shift NodePool while shifted"
    );
    for c in &od {
        let ty = c["metadata"]["labels"]["node.kubernetes.io/instance-type"]
            .as_str()
            .unwrap();
        assert!(listed.contains(ty), "{ty} is not in the plan");
    }

    // Calm: back to spot; the shift's on-demand NodeClaims are replaced by spot ones, then the
    // shift NodePool goes.
    eventually(
        long,
        "ShiftedToOnDemand=False/ReturningToSpot or OnSpot",
        || {
            let sp = rig.get_json("spotplan", "shifty")?;
            (condition(&sp, "ShiftedToOnDemand")?.0 == "False").then_some(())
        },
    );
    // One node at a time: sampled every second, never two shift NodeClaims being deleted at
    // once; and every disruption command Karpenter logs for them takes one node.
    let start = std::time::Instant::now();
    let mut most_deleting = 0;
    while rig.get_json("nodepool", "shifty-shift").is_some() {
        let deleting = rig
            .list_json("nodeclaims", Some("karpenter.sh/nodepool=shifty-shift"))
            .iter()
            .filter(|c| !c["metadata"]["deletionTimestamp"].is_null())
            .count();
        most_deleting = most_deleting.max(deleting);
        if start.elapsed() > long {
            let claims = rig.list_json("nodeclaims", Some("karpenter.sh/nodepool=shifty-shift"));
            let conds: Vec<String> = claims
                .iter()
                .map(|c| {
                    format!(
                        "{} {} {}",
                        c["metadata"]["name"],
                        capacity(c),
                        c["status"]["conditions"]
                    )
                })
                .collect();
            let log = karpenter.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "the shift NodePool was not drained and removed:\npool {}\nclaims {conds:#?}\nplan {}\nkarpenter log (newest first):\n{}",
                rig.get_json("nodepool", "shifty-shift").unwrap()["spec"],
                rig.get_json("spotplan", "shifty").unwrap()["status"],
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // The positive control of the check after the restart: the same reading sees this delete.
    assert_eq!(shift_pool_deletes(restart_mark), 1);
    assert!(
        most_deleting <= 1,
        "{most_deleting} shift NodeClaims were being deleted at once"
    );
    let commands: Vec<Value> = karpenter
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "disrupting node(s)" && v.to_string().contains("shifty-shift-"))
        .collect();
    assert!(
        !commands.is_empty(),
        "Karpenter logged no disruption of a shift node: the return did not go through it"
    );
    for c in &commands {
        assert_eq!(c["disrupted-node-count"], 1, "{c}");
    }
    eprintln!(
        "return: {} disruption commands of one node each; at most {most_deleting} shift NodeClaim deleting at once",
        commands.len()
    );
    let back = eventually(long, "4 spot NodeClaims for shifty", || {
        claim_objects(&rig, "shifty")
            .filter(|c| c.len() >= 4 && c.iter().all(|c| capacity(c) == "spot"))
    });
    let sp = rig.get_json("spotplan", "shifty").unwrap();
    assert_eq!(
        condition(&sp, "ShiftedToOnDemand").unwrap().1,
        "OnSpot",
        "{}",
        sp["status"]
    );
    let reasons: Vec<String> = rig
        .list_json("events.v1.events.k8s.io", None)
        .iter()
        .filter(|e| e["regarding"]["name"] == "shifty")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    for r in [
        "ShiftedToOnDemand",
        "ReturnedToSpot",
        "ShiftNodePoolRemoved",
    ] {
        assert!(reasons.iter().any(|x| x == r), "no {r} event: {reasons:?}");
    }
    let m = controller.metrics();
    assert!(
        m.contains("spotplan_plan_shifted{plan=\"shifty\"} 0"),
        "{m}"
    );

    // The control plan recorded both interruptions and never shifted.
    let st = rig.get_json("spotplan", "steady").unwrap();
    assert_eq!(
        st["status"]["interruptionLog"].as_array().map(Vec::len),
        Some(2),
        "{}",
        st["status"]
    );
    assert!(condition(&st, "ShiftedToOnDemand").is_none());
    // Never, not just not now: over the whole run, the audit log holds no write of a shift
    // NodePool for 'steady'; the same reading sees the one for 'shifty' (its positive control).
    let audit = rig.audit();
    let pool_writes = |name: &str| -> Vec<(String, String, String)> {
        rig::writes_by(&audit, "admin")
            .into_iter()
            .filter(|(_, res, n)| res == "nodepools" && n == name)
            .collect()
    };
    assert!(
        pool_writes("steady-shift").is_empty(),
        "{:?}",
        pool_writes("steady-shift")
    );
    assert!(
        pool_writes("shifty-shift")
            .iter()
            .any(|(verb, _, _)| verb == "patch" || verb == "create"),
        "the audit log shows no write of shifty-shift: the absence above proves nothing"
    );
    let names = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["metadata"]["labels"]["node.kubernetes.io/instance-type"]
                        .as_str()
                        .unwrap_or("?"),
                    capacity(c)
                )
            })
            .collect()
    };
    eprintln!(
        "shifted: {:?}\nback on spot: {:?}",
        names(&od),
        names(&back)
    );
    controller.stop();
    assert!(!karpenter.log_text().is_empty());
}

/// Demotion on real Karpenter: a type interrupted twice in one zone within the window is
/// demoted (an `InstanceTypeDemoted` Event, `status.demotedInstanceTypes`, the NodePool's list
/// without it), and the replacement Karpenter launches for the pod is of another type; once the
/// type has been calm (and its interruptions are out of the window, which is shorter here), it
/// is restored (`InstanceTypeRestored`, back in the list). The plan's shift threshold is far
/// away: this is demotion, not the shift.
#[test]
fn a_type_interrupted_twice_in_a_zone_is_demoted_then_restored() {
    let Some(rig) = Rig::start("demotion") else {
        return;
    };
    let (types_file, _) = kwok_instance_types(&rig);
    let _karpenter = rig.karpenter(&types_file);
    let _kwok = rig.kwok();
    let _lifecycle = node_lifecycle(&rig);
    let controller = rig.controller("admin", &[]);
    assert!(rig.apply(KWOK_NODE_CLASS).0);
    rig.apply(&plan(
        "demoter",
        "  minNarrowInterval: 1s\n  capacity: {onDemandShift: {interruptions: 50, window: 30s, calm: 45s}}\n",
    ));
    let listed = ready_types(&rig, "demoter");
    // One pod, pinned to one zone: Karpenter relaunches the same cheapest type there.
    rig.apply(&deployment(
        "demoter",
        "spotplan.dev/plan: demoter, topology.kubernetes.io/zone: us-east-1a",
        1,
    ));
    let live = |rig: &Rig| claim_objects(rig, "demoter").and_then(|c| c.into_iter().next());
    let first = eventually(T, "a NodeClaim for the pod", || live(&rig));
    let label = |c: &Value, k: &str| c["metadata"]["labels"][k].as_str().unwrap().to_string();
    let (ty, zone) = (
        label(&first, "node.kubernetes.io/instance-type"),
        label(&first, "topology.kubernetes.io/zone"),
    );
    assert_eq!(zone, "us-east-1a");
    assert!(listed.contains(&ty), "{ty} is not in the plan");
    interrupt(&rig, &first, 1);
    let uid = |c: &Value| c["metadata"]["uid"].as_str().unwrap().to_string();
    let second = eventually(T, "the replacement NodeClaim", || {
        live(&rig).filter(|c| uid(c) != uid(&first))
    });
    assert_eq!(
        (
            label(&second, "node.kubernetes.io/instance-type"),
            label(&second, "topology.kubernetes.io/zone")
        ),
        (ty.clone(), zone.clone()),
        "Karpenter relaunched another type or zone: the second interruption would not demote"
    );
    interrupt(&rig, &second, 2);

    // Demoted: status, the Event, the NodePool's list.
    eventually(T, "the type demoted in status", || {
        let sp = rig.get_json("spotplan", "demoter")?;
        sp["status"]["demotedInstanceTypes"]
            .as_array()?
            .iter()
            .any(|t| t == ty.as_str())
            .then_some(())
    });
    let reasons = |rig: &Rig| -> Vec<(String, String)> {
        rig.list_json("events.v1.events.k8s.io", None)
            .iter()
            .filter(|e| e["regarding"]["name"] == "demoter")
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or("").to_string(),
                    e["note"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let demoted_event = eventually(T, "an InstanceTypeDemoted Event", || {
        reasons(&rig)
            .into_iter()
            .find(|(r, _)| r == "InstanceTypeDemoted")
    });
    assert!(demoted_event.1.contains(&ty), "{demoted_event:?}");
    let pool_types = |rig: &Rig| -> BTreeSet<String> {
        common::nodepool_types(&rig.get_json("nodepool", "demoter").unwrap())
            .into_iter()
            .collect()
    };
    eventually(T, "the NodePool's list without the demoted type", || {
        (!pool_types(&rig).contains(&ty)).then_some(())
    });
    let sp = rig.get_json("spotplan", "demoter").unwrap();
    assert!(
        sp["status"]["shift"].is_null(),
        "demotion is not the shift: {}",
        sp["status"]
    );
    // The pod's next node, from Karpenter, is of another type.
    let third = eventually(T, "a NodeClaim of another type", || {
        live(&rig).filter(|c| uid(c) != uid(&second) && uid(c) != uid(&first))
    });
    assert_ne!(label(&third, "node.kubernetes.io/instance-type"), ty);

    // Calm: restored, and listed again.
    let start = std::time::Instant::now();
    let restored = loop {
        if let Some(e) = reasons(&rig)
            .into_iter()
            .find(|(r, _)| r == "InstanceTypeRestored")
        {
            break e;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let log = controller.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "no InstanceTypeRestored in 180 s: {:?}\nstatus {}\nlog (newest first):\n{}",
                reasons(&rig),
                rig.get_json("spotplan", "demoter").unwrap()["status"],
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(restored.1.contains(&ty), "{restored:?}");
    eventually(T, "the type listed again", || {
        pool_types(&rig).contains(&ty).then_some(())
    });
    let sp = rig.get_json("spotplan", "demoter").unwrap();
    assert!(
        sp["status"]["demotedInstanceTypes"].is_null()
            || sp["status"]["demotedInstanceTypes"] == serde_json::json!([]),
        "{}",
        sp["status"]
    );
}

/// The NodeClaim annotation Karpenter sets when any of a claim's types carries a price overlay
/// (sigs.k8s.io/karpenter v1.14.1 `v1alpha1.PriceOverlayAppliedAnnotationKey`).
const PRICE_OVERLAY_APPLIED: &str = "karpenter.sh/price-overlay-applied";

fn overlay_applied(c: &Value) -> bool {
    c["metadata"]["annotations"][PRICE_OVERLAY_APPLIED] == "true"
}

/// Risk pricing on real Karpenter with `NodeOverlay=true`: the plan's overlays are accepted
/// (Karpenter's own ValidationSucceeded), its NodeClaims carry Karpenter's price-overlay
/// annotation, and scope holds both ways: a control NodePool and a second SpotPlan with risk
/// pricing Disabled get no overlay and their NodeClaims no annotation. Each overlay is pinned to
/// the priced plan's NodePool; turning risk pricing off deletes them, and deleting the plan
/// takes them with it.
#[test]
fn risk_pricing_overlays_reach_karpenters_choice_for_the_plans_pool_only() {
    let Some(rig) = Rig::start("overlays") else {
        return;
    };
    let (types_file, _) = kwok_instance_types(&rig);
    let _karpenter = rig.karpenter(&types_file);
    let _controller = rig.controller("admin", &[]);
    assert!(rig.apply(KWOK_NODE_CLASS).0);
    // No ceiling of the plan's own: the mode's band premiums rank it, so there are levels.
    let priced = plan("priced", "").replace("  maxInterruptionBand: 2\n", "");
    assert!(rig.apply(&priced).0);
    let plain =
        plan("plain", "  riskPricing: Disabled\n").replace("  maxInterruptionBand: 2\n", "");
    assert!(rig.apply(&plain).0);
    assert!(rig.apply(CONTROL_NODEPOOL).0);

    // Karpenter validates every overlay, and the plan reports it.
    let sp = eventually(T, "RiskPricing=True on priced", || {
        let sp = rig.get_json("spotplan", "priced")?;
        (condition(&sp, "RiskPricing")?.0 == "True").then_some(sp)
    });
    let overlays = rig.list_json("nodeoverlays", None);
    assert!(!overlays.is_empty());
    let listed: BTreeSet<String> = sp["status"]["instanceTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let mut covered = BTreeSet::new();
    let mut adjustments = BTreeSet::new();
    for o in &overlays {
        let name = o["metadata"]["name"].as_str().unwrap();
        let (status, reason, _) = condition(o, "ValidationSucceeded")
            .unwrap_or_else(|| panic!("Karpenter never validated {name}: {o}"));
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "ValidationSucceeded"),
            "{o}"
        );
        let reqs = o["spec"]["requirements"].as_array().unwrap();
        let pools: Vec<&Value> = reqs
            .iter()
            .filter(|r| r["key"] == "karpenter.sh/nodepool")
            .collect();
        assert_eq!(pools.len(), 1, "{o}");
        assert_eq!(pools[0]["operator"], "In");
        assert_eq!(
            pools[0]["values"],
            serde_json::json!(["priced"]),
            "{name} is pinned to priced only"
        );
        let types = reqs
            .iter()
            .find(|r| r["key"] == "node.kubernetes.io/instance-type")
            .unwrap();
        for t in types["values"].as_array().unwrap() {
            assert!(
                covered.insert(t.as_str().unwrap().to_string()),
                "{t} in two overlays"
            );
        }
        adjustments.insert(o["spec"]["priceAdjustment"].as_str().unwrap().to_string());
    }
    assert_eq!(covered, listed, "every listed type priced, nothing else");
    assert!(
        adjustments.len() > 1,
        "the band premiums make levels: {adjustments:?}"
    );
    let rp = condition(&rig.get_json("spotplan", "plain").unwrap(), "RiskPricing").unwrap();
    assert_eq!((rp.0.as_str(), rp.1.as_str()), ("False", "Disabled"));

    rig.apply(&deployment("priced", "spotplan.dev/plan: priced", 3));
    rig.apply(&deployment("plain", "spotplan.dev/plan: plain", 3));
    rig.apply(&deployment("control", "pool: control", 3));
    let all = |pool: &str| {
        eventually(T, &format!("3 NodeClaims for {pool}"), || {
            let c = claim_objects(&rig, pool)?;
            (c.len() >= 3).then_some(c)
        })
    };
    let (priced_claims, plain_claims, control_claims) =
        (all("priced"), all("plain"), all("control"));
    for c in &priced_claims {
        assert!(
            overlay_applied(c),
            "priced NodeClaim without Karpenter's overlay annotation: {}",
            c["metadata"]
        );
        let ty = c["metadata"]["labels"]["node.kubernetes.io/instance-type"]
            .as_str()
            .unwrap();
        assert!(listed.contains(ty), "{ty}");
    }
    for c in plain_claims.iter().chain(&control_claims) {
        assert!(
            !overlay_applied(c),
            "an overlay reached a NodeClaim outside priced: {}",
            c["metadata"]
        );
    }

    // Off in the spec: its overlays go, and only its own.
    let off = priced.replace("spec:\n", "spec:\n  riskPricing: Disabled\n");
    assert!(rig.apply(&off).0);
    eventually(T, "priced's overlays deleted", || {
        rig.list_json("nodeoverlays", None).is_empty().then_some(())
    });
    let rp = condition(&rig.get_json("spotplan", "priced").unwrap(), "RiskPricing").unwrap();
    assert_eq!(rp.1, "Disabled");
    // On again, then the plan deleted: the garbage collector takes its overlays with it.
    assert!(rig.apply(&priced).0);
    eventually(T, "priced's overlays back", || {
        (!rig.list_json("nodeoverlays", None).is_empty()).then_some(())
    });
    rig.kubectl(&["delete", "spotplan", "priced", "--wait=false"]);
    rig.gc_barrier();
    eventually(T, "overlays gone with their plan", || {
        rig.list_json("nodeoverlays", None).is_empty().then_some(())
    });
    eprintln!(
        "overlays: {adjustments:?} over {} types; priced claims annotated: {}, plain: {}, control: {}",
        listed.len(),
        priced_claims.len(),
        plain_claims.len(),
        control_claims.len()
    );
}
