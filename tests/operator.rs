//! The operator against a real kube-apiserver with Karpenter's own CRDs (tests/rig): every
//! NodePool spotplan writes passes Karpenter's schema and CEL rules, and the audit log shows
//! what the controller wrote.

mod common;
mod parts;
mod rig;

use common::nodepool_types as types_of;
use rig::{
    Rig, T, bind_controller_role, condition, eventually, not_ready, pending_claim, plan_yaml,
    ready, writes_by,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// The Events about one object, in every namespace.
fn events_of(rig: &Rig, name: &str) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&rig.kubectl(&["get", "events", "-A", "-o", "json"])).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .cloned()
        .collect()
}

fn requirement(np: &Value, key: &str) -> Value {
    np["spec"]["template"]["spec"]["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn good_plans_reach_ready_with_valid_nodepools() {
    let Some(rig) = Rig::start("good") else {
        return;
    };
    let _c = rig.controller("admin", &[]);
    let (ok, out) = rig.apply(&plan_yaml(
        "web",
        "  capacity: {onDemandFallback: true, onDemandBase: {cpu: \"16\"}}\n  nodePool:\n    nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}\n    taints: [{key: dedicated, value: web, effect: NoSchedule}]\n    labels: {team: web}\n",
    ));
    assert!(ok, "{out}");
    let sp = ready(&rig, "web");
    let plan = &sp["status"]["plan"];
    assert!(plan["typeCount"].as_i64().unwrap() >= 15, "{plan}");
    assert!(plan["estimatedSpotUsdPerHour"].as_f64().unwrap() > 0.0);
    assert_eq!(plan["instanceTypes"][0]["name"], plan["primary"]);
    assert_eq!(
        sp["status"]["nodePools"],
        serde_json::json!(["web", "web-on-demand"])
    );
    assert!(sp["status"]["dataTimestamp"].is_string());
    assert_eq!(condition(&sp, "DataFresh").unwrap().0, "True");

    // The NodePools were accepted by Karpenter's own CRD (schema + CEL) on a real API server.
    let spot = rig.get_json("nodepool", "web").expect("spot NodePool");
    let od = rig
        .get_json("nodepool", "web-on-demand")
        .expect("on-demand base NodePool");
    let types = types_of(&spot);
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(types, sorted, "values are written sorted");
    let min_values = requirement(&spot, "node.kubernetes.io/instance-type")["minValues"]
        .as_i64()
        .unwrap();
    assert!(
        min_values >= 1 && (min_values as usize) * 3 <= types.len(),
        "minValues {min_values} of {}",
        types.len()
    );
    assert_eq!(
        requirement(&spot, "karpenter.sh/capacity-type")["values"],
        serde_json::json!(["on-demand", "spot"])
    );
    assert_eq!(
        requirement(&od, "karpenter.sh/capacity-type")["values"],
        serde_json::json!(["on-demand"])
    );
    assert_eq!(od["spec"]["limits"]["cpu"], "16");
    assert_eq!(
        od["spec"]["weight"].as_i64().unwrap(),
        spot["spec"]["weight"].as_i64().unwrap() + 1
    );
    assert!(
        spot["spec"].get("limits").is_none(),
        "resources do not set limits"
    );
    assert_eq!(
        spot["spec"]["template"]["metadata"]["labels"]["spotplan.dev/plan"],
        "web"
    );
    assert_eq!(
        spot["spec"]["template"]["metadata"]["labels"]["team"],
        "web"
    );
    assert_eq!(
        spot["spec"]["template"]["spec"]["taints"][0]["key"],
        "dedicated"
    );
    assert!(
        spot["metadata"]["labels"]
            .get("app.kubernetes.io/instance")
            .is_none(),
        "GitOps tracking labels are not copied"
    );
    assert_eq!(spot["metadata"]["ownerReferences"][0]["kind"], "SpotPlan");
    assert_eq!(
        spot["metadata"]["ownerReferences"][0]["uid"],
        sp["metadata"]["uid"]
    );
    let budgets = spot["spec"]["disruption"]["budgets"].as_array().unwrap();
    assert!(
        budgets
            .iter()
            .any(|b| b["reasons"] == serde_json::json!(["Drifted"]) && b["nodes"] == "1")
    );
    // The plan's types are what the status ranks.
    let ranked: BTreeSet<String> = plan["instanceTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ranked, types.iter().cloned().collect());

    // Printer columns, and the event for the new NodePools.
    let table = rig.kubectl(&["get", "spotplan", "web"]);
    assert!(
        table.contains("us-east-1") && table.contains("True"),
        "{table}"
    );
    let events = rig.kubectl(&["get", "events", "-A", "-o", "json"]);
    assert!(events.contains("NodePoolsCreated"), "{events}");

    // `spotplan render --format nodepool -f` gives GitOps users the same NodePools: applied
    // under other names they pass Karpenter's CRD, and, defaulted by the server, their specs
    // are the controller's. They carry no ownership marks. (The manifest is the object as the
    // server holds it: the test's YAML repeats a key, which kubectl takes and spotplan
    // refuses.)
    let manifest = rig.dir.path().join("web.yaml");
    std::fs::write(
        &manifest,
        rig.kubectl(&["get", "spotplan", "web", "-o", "yaml"]),
    )
    .unwrap();
    let mut render = std::process::Command::new(env!("CARGO_BIN_EXE_spotplan"));
    render
        .args(["render", "--format", "nodepool", "-o", "json", "-f"])
        .arg(&manifest)
        .arg("--advisor-data")
        .arg(&rig.advisor)
        .arg("--prices")
        .arg(&rig.prices);
    let mut list: Value = serde_json::from_slice(&rig::run_ok(render)).unwrap();
    let items = list["items"].as_array_mut().unwrap();
    // The NodePools, and beside them the NodeOverlays of risk pricing (this cluster serves
    // them): renamed, and the overlays pinned to the renamed spot NodePool, they pass
    // Karpenter's own CRDs (the priceAdjustment pattern included) and hold what the controller
    // wrote.
    let pools = items.iter().filter(|i| i["kind"] == "NodePool").count();
    assert_eq!(pools, 2);
    let overlays = items.len() - pools;
    assert!(overlays >= 1, "{items:?}");
    for item in items.iter_mut() {
        let meta = &mut item["metadata"];
        assert!(meta.get("ownerReferences").is_none() && meta.get("annotations").is_none());
        let name = format!("git-{}", meta["name"].as_str().unwrap());
        meta["name"] = Value::from(name);
        if item["kind"] == "NodeOverlay" {
            item["spec"]["requirements"][0]["values"] = serde_json::json!(["git-web"]);
        }
    }
    let (applied, out) = rig.apply(&list.to_string());
    assert!(applied, "{out}");
    for (ours, theirs) in [("git-web", &spot), ("git-web-on-demand", &od)] {
        let rendered = rig.get_json("nodepool", ours).expect(ours);
        assert_eq!(rendered["spec"], theirs["spec"], "{ours}");
    }
    let written = eventually(T, "the controller's overlays", || {
        let o = rig.list_json(
            "nodeoverlays",
            Some("spotplan.dev/plan=web,app.kubernetes.io/managed-by=spotplan-controller"),
        );
        (o.len() == overlays).then_some(o)
    });
    for theirs in &written {
        let name = theirs["metadata"]["name"].as_str().unwrap();
        let mut rendered = rig
            .get_json("nodeoverlay", &format!("git-{name}"))
            .expect(name);
        rendered["spec"]["requirements"][0]["values"] = serde_json::json!(["web"]);
        assert_eq!(rendered["spec"], theirs["spec"], "{name}");
    }
}

#[test]
fn bad_specs_are_rejected_with_the_cel_message() {
    let Some(rig) = Rig::start("cel") else { return };
    let cases = [
        (
            "cpu: \"64\"",
            "cpu: \"0\"",
            "spec.resources.cpu must be greater than 0",
        ),
        (
            "memory: 256Gi",
            "memory: 0Gi",
            "spec.resources.memory must be greater than 0",
        ),
        (
            "region: us-east-1",
            "region: us-east-1\n  mode: fast",
            "spec.mode must be one of latency, balanced, fault_tolerance",
        ),
        (
            "region: us-east-1",
            "region: us-east-1\n  maxInterruptionBand: 7",
            "spec.maxInterruptionBand",
        ),
        (
            "region: us-east-1",
            "region: us-east-1\n  capacity: {onDemandBase: {cpu: \"100\"}}",
            "spec.capacity.onDemandBase.cpu must not exceed spec.resources.cpu",
        ),
        (
            "region: us-east-1",
            "region: us-east-1\n  minGeneration: 8\n  maxGeneration: 6",
            "spec.minGeneration must not exceed spec.maxGeneration",
        ),
        (
            "name: default}",
            "name: default}\n    requirements: [{key: karpenter.sh/capacity-type, operator: In, values: [spot]}]",
            "karpenter.sh/capacity-type and kubernetes.io/arch are set by spotplan",
        ),
    ];
    for (from, to, message) in cases {
        let yaml = plan_yaml("bad", "").replace(from, to);
        let (ok, out) = rig.apply(&yaml);
        assert!(!ok, "{to} was accepted");
        assert!(out.contains(message), "{to}: want '{message}' in: {out}");
    }
    let long = "x".repeat(56);
    let (ok, out) = rig.apply(&plan_yaml(&long, ""));
    assert!(!ok && out.contains("at most 55 characters"), "{out}");
    assert!(rig.list_json("spotplans", None).is_empty());
}

#[test]
fn unsatisfiable_plans_are_not_ready_and_write_no_nodepool() {
    let Some(rig) = Rig::start("unsat") else {
        return;
    };
    let _c = rig.controller("admin", &[]);
    rig.apply(&plan_yaml(
        "nofit",
        "  instanceFamilies: [p4d]\n  mode: fault_tolerance\n",
    ));
    let (_, msg) = not_ready(&rig, "nofit", "NothingFits");
    assert!(msg.contains("filter removed the last"), "{msg}");
    rig.apply(&plan_yaml("noregion", "").replace("us-east-1", "ap-east-2"));
    let (_, msg) = not_ready(&rig, "noregion", "InvalidRequest");
    assert!(
        msg.starts_with("spec.region:") && msg.contains("no instance type offerings in ap-east-2"),
        "{msg}"
    );
    rig.apply(&plan_yaml("typo", "  instanceFamilies: [m6x]\n"));
    let (_, msg) = not_ready(&rig, "typo", "UnknownInstanceFamily");
    assert!(
        msg.starts_with("spec.instanceFamilies: unknown instance family 'm6x'"),
        "{msg}"
    );
    assert!(
        rig.list_json("nodepools", None).is_empty(),
        "no NodePool for a plan that cannot be met"
    );

    // A good plan turned bad keeps its NodePool exactly as it was.
    rig.apply(&plan_yaml("turns-bad", ""));
    ready(&rig, "turns-bad");
    let before = rig.get_json("nodepool", "turns-bad").unwrap();
    rig.apply(&plan_yaml(
        "turns-bad",
        "  instanceFamilies: [p4d]\n  mode: fault_tolerance\n",
    ));
    let (sp, _) = not_ready(&rig, "turns-bad", "NothingFits");
    assert!(
        sp["status"]["plan"]["primary"].is_string(),
        "the last good plan stays in status"
    );
    let after = rig.get_json("nodepool", "turns-bad").unwrap();
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    // The transition of this plan (not an earlier one's) is marked by a Warning event.
    let events = eventually(T, "a NothingFits event on turns-bad", || {
        let on = events_of(&rig, "turns-bad");
        on.iter()
            .any(|e| e["reason"] == "NothingFits")
            .then_some(on)
    });
    let nothing: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "NothingFits")
        .collect();
    assert!(
        nothing.iter().all(|e| e["type"] == "Warning"),
        "{nothing:?}"
    );
    assert!(
        events.iter().any(|e| e["reason"] == "NodePoolsCreated"),
        "the plan was applied before it turned bad: {events:?}"
    );
}

#[test]
fn spec_updates_flow_through_and_tampering_is_repaired() {
    let Some(rig) = Rig::start("update") else {
        return;
    };
    // A long refresh interval: any repair below comes from the NodePool watch, not a resync.
    let _c = rig.controller("admin", &["--refresh-interval", "24h"]);
    rig.apply(&plan_yaml("app", ""));
    ready(&rig, "app");
    let first = types_of(&rig.get_json("nodepool", "app").unwrap());

    rig.apply(&plan_yaml("app", "  architectures: [amd64]\n  instanceFamilies: [m6i, m7i, m6a, m7a, r6i, r7i, c6i, c7i]\n  allowPreviousGeneration: true\n"));
    let sp = ready(&rig, "app");
    let np = rig.get_json("nodepool", "app").unwrap();
    let second = types_of(&np);
    assert_ne!(first, second);
    for t in &second {
        let fam = t.split('.').next().unwrap();
        assert!(
            ["m6i", "m7i", "m6a", "m7a", "r6i", "r7i", "c6i", "c7i"].contains(&fam),
            "{t}"
        );
    }
    assert_eq!(
        requirement(&np, "kubernetes.io/arch")["values"],
        serde_json::json!(["amd64"])
    );
    assert!(
        sp["status"]["lastWrittenFresh"].is_string() && sp["status"]["lastNarrowed"].is_null(),
        "a spec change is recorded as a fresh write, not a data narrowing: {}",
        sp["status"]
    );
    let events = rig.kubectl(&["get", "events", "-A", "-o", "json"]);
    assert!(events.contains("SpecApplied"), "{events}");

    // On-demand base on, then off.
    rig.apply(&plan_yaml(
        "app",
        "  capacity: {onDemandBase: {cpu: \"8\"}}\n",
    ));
    ready(&rig, "app");
    eventually(T, "on-demand NodePool", || {
        rig.get_json("nodepool", "app-on-demand")
    });
    rig.apply(&plan_yaml("app", ""));
    ready(&rig, "app");
    eventually(T, "on-demand NodePool deleted", || {
        rig.get_json("nodepool", "app-on-demand")
            .is_none()
            .then_some(())
    });

    // Tampering: someone rewrites the requirements; the controller puts them back in seconds.
    let good = rig.get_json("nodepool", "app").unwrap();
    let patch = r#"{"spec":{"template":{"spec":{"requirements":[{"key":"node.kubernetes.io/instance-type","operator":"In","values":["t3.micro"]},{"key":"karpenter.sh/capacity-type","operator":"In","values":["on-demand"]}]}}}}"#;
    rig.kubectl(&["patch", "nodepool", "app", "--type", "merge", "-p", patch]);
    let repaired = eventually(Duration::from_secs(10), "requirements restored", || {
        let np = rig.get_json("nodepool", "app")?;
        (types_of(&np) == types_of(&good)
            && requirement(&np, "karpenter.sh/capacity-type")["values"]
                == serde_json::json!(["spot"]))
        .then_some(np)
    });
    assert_ne!(
        repaired["metadata"]["resourceVersion"],
        good["metadata"]["resourceVersion"]
    );
}

/// Writes other than the Lease's (create, update, patch, delete) by `user` since `mark`.
fn non_lease_writes(rig: &Rig, mark: usize, user: &str) -> Vec<(String, String, String)> {
    writes_by(&rig.audit()[mark..], user)
        .into_iter()
        .filter(|w| w.1 != "leases")
        .collect()
}

/// A plan with every pass-through field set: labels, annotations, taints, startup taints,
/// requirements, disruption, limits, weight, expireAfter, terminationGracePeriod.
const FULL_SPEC: &str = "  capacity: {onDemandBase: {cpu: \"4\"}, onDemandFallback: true}
  nodePool:
    nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
    labels: {team: data}
    annotations: {owner: data-platform}
    taints: [{key: dedicated, value: data, effect: NoSchedule}]
    startupTaints: [{key: warming, effect: NoSchedule}]
    requirements: [{key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a, us-east-1b]}]
    disruption: {consolidationPolicy: WhenEmptyOrUnderutilized, consolidateAfter: 5m, budgets: [{nodes: \"2\"}]}
    limits: {cpu: \"512\"}
    weight: 40
    expireAfter: 720h
    terminationGracePeriod: 24h
";

#[test]
fn restart_with_unchanged_data_writes_nothing() {
    let Some(rig) = Rig::start("restart") else {
        return;
    };
    bind_controller_role(&rig, "spotplan-a");
    // Leader election on, as in production: the Lease is the only thing a restart may write.
    let mut c = rig.controller("spotplan-a", &["--identity", "first"]);
    let names = ["alpha", "beta", "gamma"];
    for name in names {
        assert!(rig.apply(&plan_yaml(name, FULL_SPEC)).0);
    }
    for name in names {
        ready(&rig, name);
    }
    let versions = |rig: &Rig| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = rig
            .list_json("nodepools", None)
            .iter()
            .chain(rig.list_json("spotplans", None).iter())
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = versions(&rig);
    assert_eq!(before.len(), 9, "three plans, six NodePools: {before:?}");
    assert!(c.stop().success(), "clean exit on SIGTERM");
    let mark = rig.audit().len();

    let c2 = rig.controller("spotplan-a", &["--identity", "second"]);
    // The real signal: every plan went through a whole reconcile and found nothing to write
    // (requeues while caches sync or data loads count as Deferred, not Unchanged).
    eventually(T, "three Unchanged reconciles after restart", || {
        (c2.metric("spotplan_reconciles_total{outcome=\"Unchanged\"}")
            .unwrap_or(0.0)
            >= 3.0)
            .then_some(())
    });
    assert_eq!(
        c2.metric("spotplan_leader"),
        Some(1.0),
        "the restarted replica leads"
    );
    assert_eq!(
        c2.metric("spotplan_reconciles_total{outcome=\"Applied\"}"),
        Some(0.0),
        "{}",
        c2.log_text()
    );
    let writes = non_lease_writes(&rig, mark, "spotplan-a");
    assert!(
        writes.is_empty(),
        "the restarted controller wrote: {writes:?}\n{}",
        c2.log_text()
    );
    assert_eq!(versions(&rig), before, "no resourceVersion moved");

    // Positive control: one spec change gives exactly the writes it needs, through the same
    // controller and the same audit log.
    let mark = rig.audit().len();
    let changed = FULL_SPEC.replace("team: data", "team: analytics");
    assert!(rig.apply(&plan_yaml("beta", &changed)).0);
    eventually(T, "beta's new labels applied", || {
        let np = rig.get_json("nodepool", "beta")?;
        let od = rig.get_json("nodepool", "beta-on-demand")?;
        let sp = rig.get_json("spotplan", "beta")?;
        (np["spec"]["template"]["metadata"]["labels"]["team"] == "analytics"
            && od["spec"]["template"]["metadata"]["labels"]["team"] == "analytics"
            && sp["status"]["observedGeneration"] == 2)
            .then_some(())
    });
    eventually(T, "the change settled", || {
        (c2.metric("spotplan_reconciles_total{outcome=\"Applied\"}") >= Some(1.0)).then_some(())
    });
    let mut writes: Vec<(String, String, String)> = non_lease_writes(&rig, mark, "spotplan-a")
        .into_iter()
        .filter(|w| w.1 != "events")
        .collect();
    writes.sort();
    assert_eq!(
        writes,
        vec![
            ("patch".into(), "nodepools".into(), "beta".into()),
            ("patch".into(), "nodepools".into(), "beta-on-demand".into()),
            ("patch".into(), "spotplans/status".into(), "beta".into()),
        ],
        "exactly the NodePools of the changed plan and its status"
    );
    let after = versions(&rig);
    let moved: Vec<&String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.1 != a.1)
        .map(|(b, _)| &b.0)
        .collect();
    assert_eq!(moved.len(), 3, "{moved:?}");
}

#[test]
fn survives_an_apiserver_restart() {
    let Some(rig) = Rig::start("apiserver") else {
        return;
    };
    let c = rig.controller("admin", &[]);
    rig.apply(&plan_yaml("before", ""));
    ready(&rig, "before");
    rig.restart_apiserver(Duration::from_secs(3));
    // Work that arrives after the restart: a new plan and a change to the old one.
    rig.apply(&plan_yaml("after", ""));
    rig.apply(&plan_yaml(
        "before",
        "  instanceFamilies: [m7i, m7g, m7a, c7i, c7g, r7i, r7g, r7a]\n",
    ));
    ready(&rig, "after");
    let sp = ready(&rig, "before");
    let np = rig.get_json("nodepool", "before").unwrap();
    for t in types_of(&np) {
        assert!(
            t.starts_with("m7") || t.starts_with("c7") || t.starts_with("r7"),
            "{t}"
        );
    }
    assert_eq!(
        sp["status"]["instanceTypes"].as_array().unwrap().len(),
        types_of(&np).len()
    );
    let pools = rig.list_json("nodepools", Some("spotplan.dev/plan"));
    assert_eq!(
        pools.len(),
        2,
        "one NodePool per plan, none lost or duplicated"
    );
    // The same process rode it out: still the leader, and it saw the outage.
    assert_eq!(c.metric("spotplan_leader"), Some(1.0));
    assert!(
        c.log_text().contains("lease request failed"),
        "the outage was noticed"
    );
}

#[test]
fn two_replicas_only_the_leader_writes() {
    let Some(rig) = Rig::start("ha") else { return };
    for u in ["spotplan-a", "spotplan-b"] {
        bind_controller_role(&rig, u);
    }
    let mut replicas = [
        rig.controller("spotplan-a", &["--identity", "replica-a"]),
        rig.controller("spotplan-b", &["--identity", "replica-b"]),
    ];
    for name in ["one", "two", "three"] {
        rig.apply(&plan_yaml(name, ""));
    }
    for name in ["one", "two", "three"] {
        ready(&rig, name);
    }
    let lease = lease_holder(&rig);
    let (leader, follower) = if lease == "replica-a" {
        ("spotplan-a", "spotplan-b")
    } else {
        ("spotplan-b", "spotplan-a")
    };
    assert!(lease == "replica-a" || lease == "replica-b", "{lease}");
    let audit = rig.audit();
    let by_leader = writes_by(&audit, leader);
    assert!(
        by_leader.iter().any(|w| w.1 == "nodepools"),
        "{by_leader:?}"
    );
    // A follower may have raced to create the Lease at start (and lost with 409); it writes
    // nothing else: no plan, no NodePool, no event, no lease renewal.
    let by_follower: Vec<_> = writes_by(&audit, follower)
        .into_iter()
        .filter(|w| !(w.0 == "create" && w.1 == "leases"))
        .collect();
    assert!(
        by_follower.is_empty(),
        "the follower wrote: {by_follower:?}"
    );

    // The leader crashes; the follower takes over within the lease TTL and does the work.
    let (dead, alive) = if leader == "spotplan-a" {
        (0, 1)
    } else {
        (1, 0)
    };
    replicas[dead].kill();
    let mark = rig.audit().len();
    rig.apply(&plan_yaml("four", ""));
    ready(&rig, "four");
    let holder = lease_holder(&rig);
    assert_ne!(holder, lease, "leadership moved");
    let after = rig.audit();
    let writers: BTreeSet<String> = after[mark..]
        .iter()
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "patch" | "update" | "delete")
            )
        })
        .filter_map(|e| e["user"]["username"].as_str().map(String::from))
        .filter(|u| u.starts_with("spotplan-"))
        .collect();
    assert_eq!(
        writers,
        BTreeSet::from([follower.to_string()]),
        "only the new leader writes"
    );
    assert_eq!(replicas[alive].metric("spotplan_leader"), Some(1.0));
}

#[test]
fn rbac_role_is_enough_and_no_more() {
    let Some(rig) = Rig::start("rbac") else {
        return;
    };
    let ns = "spotplan-system";
    rig.kubectl(&["create", "namespace", ns]);
    rig.kubectl(&["create", "serviceaccount", "spotplan", "-n", ns]);
    let role_file = rig::root()
        .join("config/rbac/clusterrole.yaml")
        .display()
        .to_string();
    let events_file = rig::root()
        .join("config/rbac/events-role.yaml")
        .display()
        .to_string();
    rig.kubectl(&["apply", "-f", &role_file]);
    rig.kubectl(&["apply", "-n", ns, "-f", &role_file]);
    rig.kubectl(&["apply", "-f", &events_file]);
    let sa = format!("{ns}:spotplan");
    rig.kubectl(&[
        "create",
        "clusterrolebinding",
        "spotplan",
        "--clusterrole=spotplan-controller",
        &format!("--serviceaccount={sa}"),
    ]);
    rig.kubectl(&[
        "create",
        "rolebinding",
        "spotplan",
        "--role=spotplan-leader-election",
        &format!("--serviceaccount={sa}"),
        "-n",
        ns,
    ]);
    for role in ["spotplan-events", "spotplan-karpenter-events"] {
        rig.kubectl(&[
            "create",
            "rolebinding",
            role,
            &format!("--role={role}"),
            &format!("--serviceaccount={sa}"),
            "-n",
            "default",
        ]);
    }
    let token = rig
        .kubectl(&["create", "token", "spotplan", "-n", ns, "--duration", "1h"])
        .trim()
        .to_string();
    let kc = rig.kubeconfig_with_token(&token);

    // Run it as in a pod: its namespace (for the Lease) and name from the environment.
    let c = rig.controller_env(
        &kc,
        &[("POD_NAMESPACE", ns), ("POD_NAME", "spotplan-0")],
        &[],
    );
    rig.apply(&plan_yaml(
        "rbac",
        "  capacity: {onDemandBase: {cpu: \"4\"}}\n",
    ));
    ready(&rig, "rbac");
    rig.apply(&plan_yaml("rbac", ""));
    eventually(T, "on-demand pool deleted", || {
        rig.get_json("nodepool", "rbac-on-demand")
            .is_none()
            .then_some(())
    });
    drop(c);

    let audit = rig.audit();
    // What the role forbids, asked as the controller.
    let can = |verb: &str, res: &str| {
        let (_, out, _) = rig.kubectl_raw(
            &[
                "auth",
                "can-i",
                verb,
                res,
                "--all-namespaces",
                "--token",
                &token,
            ],
            None,
        );
        out.trim().to_string()
    };
    assert_eq!(can("delete", "nodes"), "no");
    assert_eq!(can("get", "secrets"), "no");
    assert_eq!(
        can("list", "events"),
        "no",
        "Events are listed in one namespace only"
    );
    assert_eq!(can("create", "events.events.k8s.io"), "no");
    assert_eq!(can("create", "spotplans.spotplan.dev"), "no");
    assert_eq!(can("patch", "nodepools.karpenter.sh"), "yes");

    // Every verb it used is one the role grants.
    let user = format!("system:serviceaccount:{sa}");
    let granted: BTreeSet<(String, String)> = [
        ("get", "spotplans"),
        ("list", "spotplans"),
        ("watch", "spotplans"),
        ("patch", "spotplans/status"),
        ("get", "nodepools"),
        ("list", "nodepools"),
        ("watch", "nodepools"),
        ("create", "nodepools"),
        ("patch", "nodepools"),
        ("delete", "nodepools"),
        ("create", "events"),
        ("patch", "events"),
        ("list", "events"),
        ("watch", "events"),
        ("list", "nodeclaims"),
        ("watch", "nodeclaims"),
        ("list", "nodeoverlays"),
        ("watch", "nodeoverlays"),
        ("create", "nodeoverlays"),
        ("patch", "nodeoverlays"),
        ("delete", "nodeoverlays"),
        ("get", "leases"),
        ("create", "leases"),
        ("update", "leases"),
    ]
    .iter()
    .map(|(v, r)| (v.to_string(), r.to_string()))
    .collect();
    let used: BTreeSet<(String, String)> = audit
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str())
        .filter_map(|e| {
            let r = &e["objectRef"];
            let res = match r["subresource"].as_str() {
                Some(s) => format!("{}/{s}", r["resource"].as_str()?),
                None => r["resource"].as_str()?.to_string(),
            };
            Some((e["verb"].as_str()?.to_string(), res))
        })
        .collect();
    let extra: Vec<_> = used.difference(&granted).collect();
    assert!(extra.is_empty(), "verbs outside the role: {extra:?}");
    let denied = audit
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str() && e["responseStatus"]["code"] == 403)
        .count();
    assert_eq!(denied, 0, "no request was denied");
    // Events: read and written only in `default` (Karpenter's, and cluster-scoped objects').
    let elsewhere: Vec<String> = audit
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str())
        .filter(|e| e["objectRef"]["resource"] == "events")
        .filter(|e| e["objectRef"]["namespace"] != "default")
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "Events outside default: {elsewhere:?}"
    );
    for need in [
        ("patch", "nodepools"),
        ("patch", "spotplans/status"),
        ("delete", "nodepools"),
        ("watch", "spotplans"),
        ("watch", "nodeclaims"),
        ("watch", "events"),
        ("list", "nodeoverlays"),
        ("watch", "nodeoverlays"),
        ("patch", "nodeoverlays"),
    ] {
        assert!(
            used.contains(&(need.0.to_string(), need.1.to_string())),
            "never used {need:?}: {used:?}"
        );
    }
}

#[test]
fn deletion_follows_the_policy() {
    let Some(rig) = Rig::start("delete") else {
        return;
    };
    let _c = rig.controller("admin", &[]);
    rig.apply(&plan_yaml(
        "gone",
        "  capacity: {onDemandBase: {cpu: \"4\"}}\n",
    ));
    rig.apply(&plan_yaml("kept", "  deletionPolicy: Orphan\n"));
    ready(&rig, "gone");
    let kept = ready(&rig, "kept");
    let np = rig.get_json("nodepool", "kept").unwrap();
    assert!(
        np["metadata"].get("ownerReferences").is_none(),
        "an orphaned NodePool has no owner"
    );
    assert_eq!(
        np["metadata"]["annotations"]["spotplan.dev/owner-uid"],
        kept["metadata"]["uid"]
    );
    let mark = rig.audit().len();
    rig.kubectl(&["delete", "spotplan", "gone", "kept", "--wait=true"]);
    // kube-controller-manager's garbage collector deletes owned NodePools.
    eventually(T, "NodePools of 'gone' garbage-collected", || {
        (rig.get_json("nodepool", "gone").is_none()
            && rig.get_json("nodepool", "gone-on-demand").is_none())
        .then_some(())
    });
    // Not "still there a moment later": the collector has acted on a later event, and the
    // controller has reconciled a later change (a new plan written), so both had their chance.
    rig.gc_barrier();
    rig.apply(&plan_yaml("after", ""));
    ready(&rig, "after");
    let still = rig
        .get_json("nodepool", "kept")
        .expect("Orphan keeps the NodePool");
    assert_eq!(still["metadata"]["uid"], np["metadata"]["uid"]);
    let audit = rig.audit();
    assert!(
        rig::controller_writes_of(&audit[mark..], "nodepools", "kept").is_empty(),
        "the controller wrote the orphaned NodePool"
    );
    // The positive control: the same reading sees the controller's write of the new plan.
    assert!(!rig::controller_writes_of(&audit[mark..], "nodepools", "after").is_empty());
}

#[test]
fn name_collisions_suspend_and_stale_data() {
    let Some(rig) = Rig::start("misc") else {
        return;
    };
    // A NodePool someone else owns.
    let foreign = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: taken}\nspec:\n  template:\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}\n      requirements: [{key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}]\n";
    assert!(rig.apply(foreign).0);
    let before = rig.get_json("nodepool", "taken").unwrap();
    // File data is stale once unmodified for twice the refresh cycle: (5 s + the refresh
    // deadline) x 2 here.
    let c = rig.controller("admin", &["--refresh-interval", "5s"]);
    rig.apply(&plan_yaml("taken", ""));
    let (_, msg) = not_ready(&rig, "taken", "NodePoolConflict");
    assert!(msg.contains("not owned by this SpotPlan"), "{msg}");
    assert_eq!(
        rig.get_json("nodepool", "taken").unwrap()["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    // Suspend freezes the NodePools even through spec changes.
    rig.apply(&plan_yaml("frozen", ""));
    ready(&rig, "frozen");
    let np = rig.get_json("nodepool", "frozen").unwrap();
    rig.apply(&plan_yaml(
        "frozen",
        "  suspend: true\n  instanceFamilies: [m7i]\n",
    ));
    let mark = rig.audit().len();
    eventually(T, "Suspended=True", || {
        let sp = rig.get_json("spotplan", "frozen")?;
        (condition(&sp, "Suspended")?.0 == "True").then_some(())
    });
    // Another spec change while suspended, and its reconcile seen (observedGeneration): the
    // controller decided on both changes, and wrote no NodePool.
    rig.apply(&plan_yaml(
        "frozen",
        "  suspend: true\n  instanceFamilies: [c7i]\n",
    ));
    eventually(T, "the suspended plan's second change reconciled", || {
        let sp = rig.get_json("spotplan", "frozen")?;
        (sp["status"]["observedGeneration"] == sp["metadata"]["generation"]
            && condition(&sp, "Suspended")?.0 == "True")
            .then_some(())
    });
    assert!(
        rig::controller_writes_of(&rig.audit()[mark..], "nodepools", "frozen").is_empty(),
        "a suspended plan's NodePool was written"
    );
    assert_eq!(
        rig.get_json("nodepool", "frozen").unwrap()["metadata"]["resourceVersion"],
        np["metadata"]["resourceVersion"]
    );
    // The positive control: resumed, the same reading sees the write.
    rig.apply(&plan_yaml("frozen", "  instanceFamilies: [c7i]\n"));
    eventually(T, "the resumed plan's NodePool written", || {
        (!rig::controller_writes_of(&rig.audit()[mark..], "nodepools", "frozen").is_empty())
            .then_some(())
    });

    // Bad new data: the refresh fails, DataFresh=False says why, the last good data stays.
    let good = std::fs::read(&rig.advisor).unwrap();
    std::fs::write(&rig.advisor, &good[..good.len() / 2]).unwrap();
    let sp = eventually(T, "DataFresh=False/RefreshFailed", || {
        let sp = rig.get_json("spotplan", "taken")?;
        (condition(&sp, "DataFresh")?.1 == "RefreshFailed").then_some(sp)
    });
    assert!(
        condition(&sp, "DataFresh")
            .unwrap()
            .2
            .contains("not valid JSON")
    );
    assert_eq!(c.metric("spotplan_market_data_fresh"), Some(0.0));
    assert!(
        c.metric(
            "spotplan_market_data_refresh_failures_total{reason=\"InvalidJson\",source=\"spot-advisor\"}"
        )
            .unwrap_or(0.0)
            >= 1.0
    );
    rig.apply(&plan_yaml("late", ""));
    let late = ready(&rig, "late");
    assert_eq!(
        condition(&late, "DataFresh").unwrap().0,
        "False",
        "planned with the last good data, flagged stale"
    );
    std::fs::write(&rig.advisor, &good).unwrap();
    // Both files count for age: bring the price file up to date too.
    std::fs::File::options()
        .write(true)
        .open(&rig.prices)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    eventually(T, "DataFresh=True again", || {
        let sp = rig.get_json("spotplan", "late")?;
        (condition(&sp, "DataFresh")?.0 == "True").then_some(())
    });
    // Old data (a file not modified for longer than twice the refresh cycle) is stale too.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&rig.advisor)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let sp = eventually(T, "DataFresh=False/DataTooOld", || {
        let sp = rig.get_json("spotplan", "late")?;
        (condition(&sp, "DataFresh")?.1 == "DataTooOld").then_some(sp)
    });
    let message = condition(&sp, "DataFresh").unwrap().2;
    assert!(
        message.contains("file modified")
            && message.contains("not renewed for longer than twice its refresh cycle"),
        "{message}"
    );

    // --file-max-age sets a file's own limit: 30m, and the advisor file is an hour old.
    drop(c);
    let c = rig.controller(
        "admin",
        &["--refresh-interval", "5s", "--file-max-age", "30m"],
    );
    let sp = eventually(T, "DataTooOld by --file-max-age", || {
        let sp = rig.get_json("spotplan", "late")?;
        let (_, reason, message) = condition(&sp, "DataFresh")?;
        (reason == "DataTooOld" && message.contains("--file-max-age (30m)")).then_some(sp)
    });
    assert_eq!(condition(&sp, "DataFresh").unwrap().0, "False");
    // Pinned (`none`), an old file is not judged, and status says it is pinned.
    drop(c);
    set_mtime(&rig.advisor, Duration::from_secs(400 * 86_400));
    let _c = rig.controller(
        "admin",
        &["--refresh-interval", "5s", "--file-max-age", "none"],
    );
    let sp = eventually(T, "DataFresh=True, pinned", || {
        let sp = rig.get_json("spotplan", "late")?;
        (condition(&sp, "DataFresh")?.0 == "True").then_some(sp)
    });
    let advisor = sp["status"]["dataSources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "spot-advisor")
        .unwrap_or_else(|| panic!("{}", sp["status"]["dataSources"]))
        .clone();
    let says = advisor["message"].as_str().unwrap_or_default();
    assert!(says.contains("pinned"), "{advisor}");
}

/// A Spot Advisor snapshot of the 2022 series in ../shared/data (gzip).
fn history(date: &str) -> std::path::PathBuf {
    rig::root()
        .join("../shared/data/spot-advisor/history")
        .join(format!("spot-advisor-data_{date}.json.gz"))
}

/// Bands in us-east-1 of a history snapshot, read independently.
fn bands_2022(date: &str) -> std::collections::HashMap<String, u64> {
    use std::io::Read;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(history(date)).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    let v: Value = serde_json::from_slice(&text).unwrap();
    v["spot_advisor"]["us-east-1"]["Linux"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, e)| (t.clone(), e["r"].as_u64().unwrap()))
        .collect()
}

fn set_mtime(path: &std::path::Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

/// The churn rule on a real second snapshot, under a ceiling the user set: with stale data
/// nothing moves; with fresh data the written types now over the ceiling are listed in
/// status.overCeiling and stay for --confirm-over-ceiling (a band that moves back costs
/// nothing); once due they still wait for minNarrowInterval after the last narrowing
/// (NarrowingDeferred says when); then one narrowing removes them all, and the types sitting on
/// the ceiling with them while the list keeps minTypes.
#[test]
fn stale_data_freezes_and_narrowing_waits_for_the_interval() {
    let Some(rig) = Rig::start("narrow") else {
        return;
    };
    // 2022-06-26 is the plan's data; in 2022-07-09 some of its types left band <= 1.
    std::fs::copy(history("2022-06-26"), &rig.advisor).unwrap();
    // A file's age is its modification time: keep the files current, as a data pipeline
    // would (data is stale once any source is), except while the test ages the advisor.
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let (stop, advisor_current) = (
        std::sync::Arc::new(AtomicBool::new(false)),
        std::sync::Arc::new(AtomicBool::new(true)),
    );
    let keeper = {
        let (prices, advisor) = (rig.prices.clone(), rig.advisor.clone());
        let (stop, advisor_current) = (stop.clone(), advisor_current.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                set_mtime(&prices, Duration::ZERO);
                if advisor_current.load(Relaxed) {
                    set_mtime(&advisor, Duration::ZERO);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let c = rig.controller(
        "admin",
        &["--refresh-interval", "3s", "--confirm-over-ceiling", "20s"],
    );
    let spec = "  maxInterruptionBand: 1\n  minNarrowInterval: 90s\n";
    rig.apply(&plan_yaml("steady", spec));
    ready(&rig, "steady");
    let first = types_of(&rig.get_json("nodepool", "steady").unwrap());
    let later = bands_2022("2022-07-09");
    let breach: Vec<String> = first
        .iter()
        .filter(|t| later.get(*t).is_none_or(|b| *b > 1))
        .cloned()
        .collect();
    assert!(
        !breach.is_empty(),
        "the snapshot pair must move a written type: {first:?}"
    );
    let keep = first.iter().find(|t| !breach.contains(t)).unwrap().clone();

    // A spec narrowing first, so the last narrowing is recent.
    rig.apply(&plan_yaml(
        "steady",
        &format!("{spec}  excludeInstanceTypes: [{keep}]\n"),
    ));
    let sp = ready(&rig, "steady");
    // A spec change writes the list fresh: the interval counts from it.
    let narrowed_at = sp["status"]["lastWrittenFresh"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sp["status"]["lastNarrowed"].is_null(), "{}", sp["status"]);
    let written = types_of(&rig.get_json("nodepool", "steady").unwrap());
    assert!(breach.iter().all(|t| written.contains(t)), "{written:?}");
    let before = rig.get_json("nodepool", "steady").unwrap();

    // Stale: the new snapshot arrives in a file last modified an hour ago. Nothing moves.
    advisor_current.store(false, Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    let tmp = rig.dir.path().join("next.json.gz");
    std::fs::copy(history("2022-07-09"), &tmp).unwrap();
    set_mtime(&tmp, Duration::from_secs(3600));
    std::fs::rename(&tmp, &rig.advisor).unwrap();
    let mark = rig.audit().len();
    eventually(T, "DataFresh=False/DataTooOld", || {
        let sp = rig.get_json("spotplan", "steady")?;
        (condition(&sp, "DataFresh")?.1 == "DataTooOld").then_some(())
    });
    // The reconcile that wrote DataTooOld had the stale snapshot in hand (NodePools are written
    // before status); two more refreshes of it after that, and still no NodePool write.
    let refreshes = c.metric_sum("spotplan_market_data_refreshes_total{");
    eventually(T, "two more refreshes", || {
        (c.metric_sum("spotplan_market_data_refreshes_total{") >= refreshes + 2.0).then_some(())
    });
    assert!(
        rig::controller_writes_of(&rig.audit()[mark..], "nodepools", "steady").is_empty(),
        "stale data wrote the NodePool"
    );
    let np = rig.get_json("nodepool", "steady").unwrap();
    assert_eq!(
        np["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "stale data changed the NodePool"
    );

    // Fresh again: the breaching types are over the ceiling, listed with since when, and
    // still written (confirm has not passed).
    advisor_current.store(true, Relaxed);
    let listed = eventually(T, "status.overCeiling", || {
        let sp = rig.get_json("spotplan", "steady")?;
        let over: BTreeSet<String> = sp["status"]["overCeiling"]
            .as_array()?
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect();
        (!over.is_empty()).then_some(over)
    });
    assert_eq!(listed, breach.iter().cloned().collect(), "overCeiling");
    let np = rig.get_json("nodepool", "steady").unwrap();
    assert!(
        breach.iter().all(|t| types_of(&np).contains(t)),
        "a type was removed before --confirm-over-ceiling"
    );

    // Due after 20s, but the last narrowing (the spec change) was under 90s ago.
    let deferred = eventually(T, "NarrowingDeferred=True", || {
        let sp = rig.get_json("spotplan", "steady")?;
        (condition(&sp, "NarrowingDeferred")?.0 == "True").then_some(sp)
    });
    let msg = condition(&deferred, "NarrowingDeferred").unwrap().2;
    assert!(msg.contains("removed at"), "{msg}");
    let now_written = types_of(&rig.get_json("nodepool", "steady").unwrap());
    assert!(
        breach.iter().all(|t| now_written.contains(t)),
        "a breaching type was removed before the interval: {now_written:?}"
    );
    assert_eq!(
        deferred["status"]["lastWrittenFresh"].as_str().unwrap(),
        narrowed_at
    );
    assert!(deferred["status"]["lastNarrowed"].is_null());

    // Once the interval has passed, one narrowing removes every breaching type.
    let start = std::time::Instant::now();
    let done = loop {
        let t = types_of(&rig.get_json("nodepool", "steady").unwrap());
        if breach.iter().all(|b| !t.contains(b)) {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "the narrowing did not happen: {}\n{}",
            rig.get_json("spotplan", "steady").unwrap()["status"],
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for t in &done {
        assert!(
            later.get(t).is_some_and(|b| *b <= 1),
            "{t} is above the ceiling in the new data"
        );
    }
    // Types on the ceiling (band 1) went with them unless the list would fall below minTypes
    // (15 by default).
    let band0 = done.iter().filter(|t| later.get(*t) == Some(&0)).count();
    let band1: Vec<&String> = done.iter().filter(|t| later.get(*t) == Some(&1)).collect();
    assert!(
        band1.is_empty() || band0 < 15,
        "edge types {band1:?} stayed with {band0} band-0 types written"
    );
    let sp = ready(&rig, "steady");
    assert!(condition(&sp, "NarrowingDeferred").is_none());
    assert!(
        sp["status"].get("overCeiling").is_none(),
        "{}",
        sp["status"]
    );
    assert!(
        sp["status"]["lastNarrowed"].as_str().unwrap() > narrowed_at.as_str(),
        "the data narrowing is recorded after the spec change: {}",
        sp["status"]
    );
    let narrowed: Vec<Value> = events_of(&rig, "steady")
        .into_iter()
        .filter(|e| e["reason"] == "InstanceTypesNarrowed")
        .collect();
    assert_eq!(narrowed.len(), 1, "one narrowing for all: {narrowed:?}");
    let notes = narrowed[0]["message"].as_str().unwrap();
    assert!(breach.iter().all(|b| notes.contains(b.as_str())), "{notes}");
    stop.store(true, Relaxed);
    keeper.join().unwrap();
}

/// NodePool ownership is decided on the live object: when a SpotPlan and someone else create
/// the same NodePool name at the same moment, exactly one owns it, the other's write fails,
/// and the plan is never Ready over a NodePool it does not own. Two rounds fix the order (the
/// other writer first, then the plan first), so both outcomes' checks run every time; the rest
/// race.
#[test]
fn nodepool_name_races_have_one_winner() {
    let Some(rig) = Rig::start("race") else {
        return;
    };
    // A SpotPlan cannot take a name that only another plan's on-demand NodePool may have.
    let (ok, out) = rig.apply(&plan_yaml("race-on-demand", ""));
    assert!(!ok && out.contains("must not end with -on-demand"), "{out}");

    let _c = rig.controller("admin", &[]);
    let foreign = |name: &str| {
        format!(
            "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {{name: {name}, labels: {{owner: someone-else}}}}\nspec:\n  template:\n    spec:\n      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}\n      requirements: [{{key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}}]\n"
        )
    };
    let (mut plan_won, mut foreign_won) = (0, 0);
    let mut foreign_names: Vec<String> = Vec::new();
    for round in 0..8 {
        let plan = format!("race{round}");
        // Alternate which name is contested: the spot NodePool, or the on-demand base one.
        let contested = if round % 2 == 0 {
            plan.clone()
        } else {
            format!("{plan}-on-demand")
        };
        let (plan_yaml_text, foreign_yaml) = (
            plan_yaml(&plan, "  capacity: {onDemandBase: {cpu: \"8\"}}\n"),
            foreign(&contested),
        );
        let create_foreign = || rig.kubectl_raw(&["create", "-f", "-"], Some(&foreign_yaml));
        let (a, b) = match round {
            // The other writer first: it must own the name.
            0 => {
                let b = create_foreign();
                (rig.apply(&plan_yaml_text), b)
            }
            // The plan first (its NodePool written): it must own the name.
            1 => {
                let a = rig.apply(&plan_yaml_text);
                eventually(T, "the plan's NodePool", || {
                    rig.get_json("nodepool", &contested)
                });
                (a, create_foreign())
            }
            _ => std::thread::scope(|s| {
                let a = s.spawn(|| rig.apply(&plan_yaml_text));
                let b = s.spawn(create_foreign);
                (a.join().unwrap(), b.join().unwrap())
            }),
        };
        assert!(a.0, "{}", a.1);
        let sp = eventually(T, &format!("{plan} settled"), || {
            let sp = rig.get_json("spotplan", &plan)?;
            let (status, reason, _) = condition(&sp, "Ready")?;
            (status == "True" || reason == "NodePoolConflict").then_some(sp)
        });
        let np = rig
            .get_json("nodepool", &contested)
            .expect("someone created it");
        let ours = np["metadata"]["ownerReferences"][0]["uid"] == sp["metadata"]["uid"];
        match round {
            0 => assert!(!ours, "the plan took a name created before it: {np}"),
            1 => assert!(ours, "the plan lost a name it had written: {np}"),
            _ => {}
        }
        let (status, reason, message) = condition(&sp, "Ready").unwrap();
        if ours {
            plan_won += 1;
            assert!(!b.0, "both creates succeeded on {contested}: {}", b.2);
            assert!(b.2.contains("AlreadyExists"), "{}", b.2);
            assert_eq!(status, "True");
            assert!(
                np["metadata"]["labels"].get("owner").is_none(),
                "a mixed object: {np}"
            );
        } else {
            foreign_won += 1;
            assert!(
                b.0,
                "the foreign create failed but the plan does not own {contested}"
            );
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", "NodePoolConflict"),
                "{message}"
            );
            assert_eq!(np["metadata"]["labels"]["owner"], "someone-else");
            assert_eq!(
                types_of(&np),
                vec!["m5.large".to_string()],
                "the foreign NodePool was written over"
            );
            assert!(
                np["metadata"]["annotations"]
                    .get("spotplan.dev/owner-uid")
                    .is_none()
            );
        }
        // It stays that way: the controller never wrote a name the other writer holds (every
        // successful write of the controller's to it, over the whole run, is checked below).
        if !ours {
            foreign_names.push(contested.clone());
        }
        let again = rig.get_json("spotplan", &plan).unwrap();
        assert_eq!(condition(&again, "Ready").unwrap().0, status);
    }
    eprintln!("plan won {plan_won} rounds, the other writer {foreign_won}");
    assert!(
        plan_won >= 1 && foreign_won >= 1,
        "both outcomes' checks ran"
    );
    let audit = rig.audit();
    for name in &foreign_names {
        let w = rig::controller_writes_of(&audit, "nodepools", name);
        assert!(
            w.is_empty(),
            "the controller wrote {name}, which it does not own: {w:?}"
        );
    }
    // The positive control: the same reading sees the controller's writes of the names it won.
    assert!(
        (0..8)
            .map(|r| format!("race{r}"))
            .any(|p| !rig::controller_writes_of(&audit, "nodepools", &p).is_empty())
    );
    // The controller never wrote a NodePool it did not own: every write it made to a
    // contested name happened on an object carrying its plan's label.
    for np in rig.list_json("nodepools", Some("owner=someone-else")) {
        assert!(
            np["metadata"]["labels"].get("spotplan.dev/plan").is_none(),
            "{np}"
        );
    }
}

/// The controller alone (no leader election), reading the Spot Advisor from `url`, with
/// `extra` flags.
fn controller_reading(rig: &Rig, url: &str, extra: &[&str]) -> rig::Controller {
    let cache = rig.dir.path().join("cache").display().to_string();
    let mut args = vec![
        "controller",
        "--advisor-data",
        url,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend(["--cache-dir", &cache, "--leader-elect=false"]);
    args.extend(extra);
    let args: Vec<String> = args.into_iter().map(String::from).collect();
    rig.controller_cmd(&rig.kubeconfig, &args, &[])
}

/// With a Spot Advisor URL that accepts connections and never answers, the endpoints answer
/// at once, /livez stays healthy, and plans say MarketDataUnavailable instead of the pod
/// being killed.
#[test]
fn a_hung_data_source_costs_no_liveness() {
    let Some(rig) = Rig::start("hung") else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/spot-advisor-data.json",
        listener.local_addr().unwrap()
    );
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            h.lock().unwrap().push(s); // accept, never answer, never close
        }
    });
    let c = controller_reading(&rig, &url, &["--fetch-timeout", "4s"]);
    assert_eq!(
        c.get("/livez").map(|r| r.0),
        Some(200),
        "livez while the first fetch hangs"
    );
    rig.apply(&plan_yaml("nodata", ""));
    let (sp, msg) = not_ready(&rig, "nodata", "MarketDataUnavailable");
    assert!(msg.contains(&url) && msg.contains("fetch failed"), "{msg}");
    assert_eq!(condition(&sp, "DataFresh").unwrap().1, "NoData");
    assert!(
        !held.lock().unwrap().is_empty(),
        "the controller did try the URL"
    );
    for _ in 0..5 {
        assert_eq!(c.get("/livez").map(|r| r.0), Some(200), "{}", c.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(rig.get_json("nodepool", "nodata").is_none());
}

/// A Spot Advisor URL that takes 3 s to answer, read every 2 s: each refresh replaces the data
/// 5 s after the last one started, so data stamped at a fetch's start is up to 8 s old just
/// before the next lands. A healthy loop like this must never call its data stale, however short
/// the interval is next to the time a refresh takes.
#[test]
fn a_slow_but_healthy_refresh_keeps_the_data_fresh() {
    let Some(rig) = Rig::start("slow") else {
        return;
    };
    let bytes = std::fs::read(&rig.advisor).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/spot-advisor-data.json",
        listener.local_addr().unwrap()
    );
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = served.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let (bytes, n) = (bytes.clone(), n.clone());
            std::thread::spawn(move || answer_slowly(s.unwrap(), &bytes, &n));
        }
    });
    let _current = rig::keep_current(vec![rig.prices.clone()]);
    let prices = rig.prices.display().to_string();
    let c = controller_reading(
        &rig,
        &url,
        &[
            "--prices",
            &prices,
            "--refresh-interval",
            "2s",
            "--fetch-timeout",
            "10s",
        ],
    );
    rig.apply(&plan_yaml("slow", ""));
    ready(&rig, "slow");
    let first = served.load(std::sync::atomic::Ordering::Relaxed);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(16) {
        let sp = rig.get_json("spotplan", "slow").unwrap();
        let (status, reason, message) = condition(&sp, "DataFresh").unwrap();
        assert_eq!(
            status,
            "True",
            "{reason}: {message} after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let refreshes = served.load(std::sync::atomic::Ordering::Relaxed) - first;
    assert!(
        refreshes >= 2,
        "the data was re-read while watched: {refreshes} answers\n{}",
        c.log_text()
    );
}

/// Answers one HTTP request with `body` after 3 s.
fn answer_slowly(
    mut stream: std::net::TcpStream,
    body: &[u8],
    served: &std::sync::atomic::AtomicUsize,
) {
    use std::io::{Read, Write};
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => request.extend_from_slice(&buf[..k]),
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).is_ok() && stream.write_all(body).is_ok() {
        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A plan's per (type, zone) counts in `status.<field>` (`observedInterruptions`,
/// `observedLaunchFailures`), sorted.
fn counts(sp: &Value, field: &str) -> Vec<(String, String, i64)> {
    let mut out: Vec<(String, String, i64)> = sp["status"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no status.{field}: {}", sp["status"]))
        .iter()
        .map(|o| {
            (
                o["instanceType"].as_str().unwrap().to_string(),
                o["zone"].as_str().unwrap().to_string(),
                o["count"].as_i64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Records a launch failure the way Karpenter's launch controller does (v1.14
/// `InsufficientCapacityErrorEvent`): a Warning Event, reason InsufficientCapacityError, on the
/// NodeClaim, then the NodeClaim deleted.
fn insufficient_capacity(rig: &Rig, name: &str, n: u32) {
    let claim = rig.get_json("nodeclaim", name).unwrap();
    let message = format!(
        "NodeClaim {name} event: creating instance, insufficient capacity, all requested instance types were unavailable during launch"
    );
    rig.karpenter_event(
        name,
        claim["metadata"]["uid"].as_str().unwrap(),
        "InsufficientCapacityError",
        &message,
        n,
    );
}

/// InsufficientCapacityError launch failures of a plan's NodeClaims are recorded per instance
/// type and zone (unknown when the NodeClaim allowed several types), once per NodeClaim
/// however often Karpenter repeats the event, in status and in a metric; failures of other
/// NodePools are not the plan's; a failure to launch does not shift the plan, though as many
/// interruptions would (its threshold is 2, and two interruptions then shift it: the positive
/// control).
#[test]
fn launch_failures_are_recorded_per_type_and_zone() {
    let Some(rig) = Rig::start("launch_failures") else {
        return;
    };
    let controller = rig.controller("admin", &[]);
    let (ok, out) = rig.apply(&plan_yaml(
        "icy",
        "  capacity: {onDemandShift: {interruptions: 2}}\n",
    ));
    assert!(ok, "{out}");
    let sp = ready(&rig, "icy");
    assert_eq!(
        sp["spec"]["capacity"]["onDemandShift"]["interruptions"], 2,
        "{}",
        sp["spec"]
    );
    let claims = [
        pending_claim(&rig, "icy-one", "icy", &["m7g.8xlarge"], "us-east-1a"),
        pending_claim(
            &rig,
            "icy-many",
            "icy",
            &["m7g.8xlarge", "c7g.8xlarge"],
            "us-east-1b",
        ),
        pending_claim(&rig, "other-one", "other", &["m7g.8xlarge"], "us-east-1a"),
    ];
    for c in &claims {
        let (ok, out) = rig.apply(c);
        assert!(ok, "{out}");
    }
    // Karpenter repeats an event for the same NodeClaim: counted once.
    insufficient_capacity(&rig, "icy-one", 1);
    insufficient_capacity(&rig, "icy-one", 2);
    insufficient_capacity(&rig, "icy-many", 1);
    insufficient_capacity(&rig, "other-one", 1);
    for name in ["icy-one", "icy-many", "other-one"] {
        rig.kubectl(&["delete", "nodeclaim", name, "--wait=false"]);
    }
    let sp = eventually(T, "two launch failures in status", || {
        let sp = rig.get_json("spotplan", "icy")?;
        (sp["status"]["launchFailureLog"].as_array()?.len() == 2).then_some(sp)
    });
    assert_eq!(
        counts(&sp, "observedLaunchFailures"),
        vec![
            ("m7g.8xlarge".to_string(), "us-east-1a".to_string(), 1),
            ("unknown".to_string(), "us-east-1b".to_string(), 1),
        ],
        "{}",
        sp["status"]
    );
    assert!(
        sp["status"]["observedInterruptions"].is_null(),
        "{}",
        sp["status"]
    );
    assert!(sp["status"]["shift"].is_null(), "{}", sp["status"]);
    assert!(rig.get_json("nodepool", "icy-shift").is_none());
    let m = controller.metrics();
    let line = |ty: &str, zone: &str| {
        format!(
            "spotplan_launch_failures_total{{instance_type=\"{ty}\",plan=\"icy\",zone=\"{zone}\"}} 1"
        )
    };
    assert!(m.contains(&line("m7g.8xlarge", "us-east-1a")), "{m}");
    assert!(m.contains(&line("unknown", "us-east-1b")), "{m}");
    assert!(!m.contains("plan=\"other\""), "{m}");

    // The positive control: two interruptions, as many as the launch failures above, shift it.
    for (n, name) in ["icy-int-1", "icy-int-2"].into_iter().enumerate() {
        let (ok, out) = rig.apply(&pending_claim(
            &rig,
            name,
            "icy",
            &["m7g.8xlarge"],
            "us-east-1a",
        ));
        assert!(ok, "{out}");
        let uid = rig.get_json("nodeclaim", name).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        rig.karpenter_event(
            name,
            &uid,
            "SpotInterrupted",
            "Spot interruption warning was triggered",
            n as u32 + 1,
        );
    }
    eventually(T, "ShiftedToOnDemand=True after two interruptions", || {
        let sp = rig.get_json("spotplan", "icy")?;
        (condition(&sp, "ShiftedToOnDemand")?.0 == "True").then_some(())
    });
}

/// A Karpenter `priceAdjustment` ("+12.5%") as a number.
fn pct(adjustment: &Value) -> f64 {
    let s = adjustment
        .as_str()
        .unwrap_or_else(|| panic!("{adjustment}"));
    s.trim_end_matches('%').parse().unwrap()
}

/// Karpenter's rebalance recommendations (karpenter-provider-aws v1.14.1
/// `RebalanceRecommendation`: a Normal Event, reason SpotRebalanceRecommendation, on a NodeClaim
/// that stays) price their (type, zone) dearer in the plan's own NodeOverlays by the README's
/// +2.5% each, counted once per NodeClaim however often Karpenter repeats them; they never
/// shift the plan, though its threshold is one interruption; a recommendation someone else
/// wrote, or one for another NodePool's claim, counts for nothing. The positive control: one
/// interruption on the same (type, zone) adds the README's +5% and shifts the plan.
#[test]
fn rebalance_recommendations_price_a_zone_and_never_shift() {
    let Some(rig) = Rig::start("rebalance") else {
        return;
    };
    let controller = rig.controller("admin", &[]);
    let (ok, out) = rig.apply(&plan_yaml(
        "wary",
        "  capacity: {onDemandShift: {interruptions: 1}}\n",
    ));
    assert!(ok, "{out}");
    let sp = ready(&rig, "wary");
    let rp = &sp["status"]["riskPricing"];
    let first = &rp["types"][0];
    let ty = first["name"].as_str().unwrap_or_else(|| panic!("{rp}"));
    let own = pct(&first["priceAdjustment"]);
    assert!(rp["zonePremiums"].is_null(), "{rp}");
    let zone = "us-east-1a";
    let uid_of = |name: &str| {
        rig.get_json("nodeclaim", name).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (name, pool) in [
        ("wary-r1", "wary"),
        ("wary-r2", "wary"),
        ("wary-r3", "wary"),
        ("else-r1", "else"),
    ] {
        let (ok, out) = rig.apply(&pending_claim(&rig, name, pool, &[ty], zone));
        assert!(ok, "{out}");
    }
    let said = "Spot rebalance recommendation was triggered";
    let recommend = "SpotRebalanceRecommendation";
    rig.karpenter_event("wary-r1", &uid_of("wary-r1"), recommend, said, 1);
    rig.karpenter_event("wary-r1", &uid_of("wary-r1"), recommend, said, 2);
    rig.karpenter_event("wary-r2", &uid_of("wary-r2"), recommend, said, 1);
    rig.karpenter_event("else-r1", &uid_of("else-r1"), recommend, said, 1);
    let forged = rig::ClaimEvent {
        reporter: "someone".into(),
        ..rig::ClaimEvent::karpenter("wary-r3", &uid_of("wary-r3"), recommend, said, 1)
    };
    let (ok, out) = rig.apply(&forged.yaml());
    assert!(ok, "{out}");
    let sp = eventually(T, "two rebalance recommendations in status", || {
        let sp = rig.get_json("spotplan", "wary")?;
        (sp["status"]["rebalanceLog"].as_array()?.len() == 2).then_some(sp)
    });
    assert_eq!(
        counts(&sp, "observedRebalances"),
        vec![(ty.to_string(), zone.to_string(), 2)],
        "{}",
        sp["status"]
    );
    let zp = &sp["status"]["riskPricing"]["zonePremiums"];
    assert_eq!(zp.as_array().map(Vec::len), Some(1), "{zp}");
    assert_eq!(
        (zp[0]["instanceType"].as_str(), zp[0]["zone"].as_str()),
        (Some(ty), Some(zone))
    );
    assert_eq!(zp[0]["rebalances"], 2, "{zp}");
    assert!(zp[0]["interruptions"] == 0, "{zp}");
    let priced = pct(&zp[0]["priceAdjustment"]);
    assert!(
        (priced - (own + 5.0)).abs() < 0.05,
        "{own} + 2 x 2.5 != {priced}: {zp}"
    );
    // No shift: the threshold is one interruption, and recommendations are not interruptions.
    assert_eq!(
        condition(&sp, "ShiftedToOnDemand").unwrap().0,
        "False",
        "{}",
        sp["status"]
    );
    assert!(
        sp["status"]["observedInterruptions"].is_null(),
        "{}",
        sp["status"]
    );
    assert!(rig.get_json("nodepool", "wary-shift").is_none());
    // Karpenter gets it as a zone overlay of the plan's spot NodePool.
    let overlays = rig.list_json("nodeoverlays", Some("spotplan.dev/plan=wary"));
    let zonal = overlays
        .iter()
        .find(|o| {
            let reqs = o["spec"]["requirements"].as_array().unwrap();
            let has = |k: &str, v: &str| {
                reqs.iter().any(|r| {
                    r["key"] == k
                        && r["operator"] == "In"
                        && r["values"].as_array().unwrap().iter().any(|x| x == v)
                })
            };
            has("topology.kubernetes.io/zone", zone)
                && has("node.kubernetes.io/instance-type", ty)
                && has("karpenter.sh/nodepool", "wary")
        })
        .unwrap_or_else(|| panic!("no zone overlay for {ty} in {zone}: {overlays:?}"));
    assert!(
        (pct(&zonal["spec"]["priceAdjustment"]) - priced).abs() < 1e-9,
        "{zonal}"
    );
    // The Event follows the status write.
    eventually(
        T,
        "a PremiumRaised Event naming both recommendations",
        || {
            events_of(&rig, "wary").iter().find_map(|e| {
                let m = e["message"].as_str()?;
                (e["reason"] == "PremiumRaised"
                    && m.contains(ty)
                    && m.contains("2 rebalance recommendations"))
                .then_some(())
            })
        },
    );
    let m = controller.metrics();
    let line = format!(
        "spotplan_rebalances_total{{instance_type=\"{ty}\",plan=\"wary\",zone=\"{zone}\"}} 2"
    );
    assert!(m.contains(&line), "{m}");
    // Only the plan's own, counted once: not the forged one, not another NodePool's.
    assert_eq!(m.matches("spotplan_rebalances_total{").count(), 1, "{m}");

    // The positive control: one interruption there adds +5% and shifts the plan.
    rig.karpenter_event(
        "wary-r1",
        &uid_of("wary-r1"),
        "SpotInterrupted",
        "Spot interruption warning was triggered",
        3,
    );
    let sp = eventually(T, "ShiftedToOnDemand=True after one interruption", || {
        let sp = rig.get_json("spotplan", "wary")?;
        (condition(&sp, "ShiftedToOnDemand")?.0 == "True").then_some(sp)
    });
    let zp = &sp["status"]["riskPricing"]["zonePremiums"][0];
    assert_eq!(
        (zp["interruptions"].as_i64(), zp["rebalances"].as_i64()),
        (Some(1), Some(2)),
        "{zp}"
    );
    let priced = pct(&zp["priceAdjustment"]);
    assert!(
        (priced - (own + 10.0)).abs() < 0.05,
        "{own} + 5 + 2 x 2.5 != {priced}: {zp}"
    );
}

/// A NodeClaim of `nodepool` interrupted and deleted while no controller ran: created the way
/// Karpenter's provisioner names it (`generateName: <nodepool>-`), its SpotInterrupted Event
/// written as Karpenter writes it, then deleted. Returns its uid.
fn interrupted_while_down(rig: &Rig, nodepool: &str) -> String {
    let claim = pending_claim(rig, "x", nodepool, &["m7g.8xlarge"], "us-east-1a")
        .replace("  name: x\n", &format!("  generateName: {nodepool}-\n"));
    let (ok, out, err) = rig.kubectl_raw(&["create", "-f", "-", "-o", "json"], Some(&claim));
    assert!(ok, "{err}");
    let claim: Value = serde_json::from_str(&out).unwrap();
    let name = claim["metadata"]["name"].as_str().unwrap().to_string();
    let uid = claim["metadata"]["uid"].as_str().unwrap();
    let message = "Spot interruption warning was triggered";
    rig.karpenter_event(&name, uid, "SpotInterrupted", message, 1);
    rig.kubectl(&["delete", "nodeclaim", &name]);
    uid.to_string()
}

/// Interruptions whose NodeClaims were gone before the controller started (a restart or a new
/// leader during an interruption storm) still count toward the shift: attributed by the
/// NodeClaim's name, type and zone unknown, demoting nothing. Another NodePool's are not the
/// plan's.
#[test]
fn interruptions_of_nodeclaims_gone_before_a_restart_still_count() {
    let Some(rig) = Rig::start("gone") else {
        return;
    };
    let controller = rig.controller("admin", &[]);
    let shift = "  capacity: {onDemandShift: {interruptions: 2}}\n";
    let (ok, out) = rig.apply(&plan_yaml("storm", shift));
    assert!(ok, "{out}");
    ready(&rig, "storm");
    drop(controller);
    let mut uids = vec![
        interrupted_while_down(&rig, "storm"),
        interrupted_while_down(&rig, "storm"),
    ];
    interrupted_while_down(&rig, "other");
    assert!(rig.list_json("nodeclaims", None).is_empty());
    let _controller = rig.controller("admin", &[]);
    let sp = eventually(T, "ShiftedToOnDemand=True", || {
        let sp = rig.get_json("spotplan", "storm")?;
        (condition(&sp, "ShiftedToOnDemand")?.0 == "True").then_some(sp)
    });
    assert_eq!(
        counts(&sp, "observedInterruptions"),
        vec![("unknown".to_string(), "unknown".to_string(), 2)],
        "{}",
        sp["status"]
    );
    let mut logged: Vec<String> = sp["status"]["interruptionLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["nodeClaimUid"].as_str().unwrap_or_default().to_string())
        .collect();
    logged.sort();
    uids.sort();
    assert_eq!(logged, uids, "one entry per NodeClaim: {}", sp["status"]);
    assert!(rig.get_json("nodepool", "storm-shift").is_some());
    assert!(
        sp["status"]["demotedInstanceTypes"].is_null(),
        "nothing demoted: {}",
        sp["status"]
    );
}

/// Every plan metric the README lists, read from /metrics and compared with a value this test
/// computes without the product: prices from the price file (read here), the type count from
/// the NodePool object, NodePool writes and failed status writes from the API server's audit
/// log.
#[test]
fn plan_metrics_match_values_computed_from_the_data_and_the_audit_log() {
    let Some(rig) = Rig::start("metrics") else {
        return;
    };
    let c = rig.controller("admin", &["--refresh-interval", "2s"]);
    let mark = rig.audit().len();
    rig.apply(&plan_yaml("priced", ""));
    let sp = ready(&rig, "priced");
    let plan = &sp["status"]["plan"];
    let primary = plan["primary"].as_str().unwrap();
    let count = plan["primaryCount"].as_f64().unwrap();
    let (od, _) = common::indep::PRICES[&("us-east-1".to_string(), primary.to_string())];
    let spot = common::indep::spot("us-east-1", primary).expect("a spot price for the primary");
    let close = |metric: &str, want: f64| {
        let got = c
            .metric(&format!("{metric}{{plan=\"priced\"}}"))
            .unwrap_or_else(|| panic!("no {metric} for the plan:\n{}", c.metrics()));
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "{metric} = {got}, computed {want} ({count} x {primary})"
        );
    };
    close("spotplan_plan_spot_usd_per_hour", count * spot);
    close("spotplan_plan_on_demand_usd_per_hour", count * od);
    close("spotplan_plan_savings_ratio", 1.0 - spot / od);
    let np = rig.get_json("nodepool", "priced").unwrap();
    close("spotplan_plan_instance_types", types_of(&np).len() as f64);

    // NodePool writes: the controller's successful writes of NodePools in the audit log.
    let writes: usize = ["priced", "priced-on-demand", "priced-shift"]
        .iter()
        .map(|n| rig::controller_writes_of(&rig.audit()[mark..], "nodepools", n).len())
        .sum();
    assert!(writes >= 1);
    assert_eq!(
        c.metric_sum("spotplan_nodepool_writes_total{") as usize,
        writes,
        "{}",
        c.metrics()
    );
    // A refresh that fails (the advisor file cut in half), so the failure counters have samples
    // for the dashboard check below; the last good data stays.
    let good = std::fs::read(&rig.advisor).unwrap();
    std::fs::write(&rig.advisor, &good[..good.len() / 2]).unwrap();
    eventually(T, "a failed refresh counted", || {
        (c.metric_sum("spotplan_market_data_refresh_failures_total{") >= 1.0).then_some(())
    });
    let first_scrape = c.metrics();
    std::fs::write(&rig.advisor, &good).unwrap();
    drop(c);

    // Failures: a controller that may not write status fails every reconcile; each failure is
    // one status patch the API server refused (403) in the audit log.
    bind_controller_role(&rig, "spotplan-a");
    let role = rig.get_json("clusterrole", "spotplan-controller").unwrap();
    let mut rules = role["rules"].as_array().unwrap().clone();
    rules.retain(|r| r["resources"] != serde_json::json!(["spotplans/status"]));
    let yaml = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "spotplan-controller"},
        "rules": rules,
    });
    let (ok, _, err) = rig.kubectl_raw(&["replace", "-f", "-"], Some(&yaml.to_string()));
    assert!(ok, "{err}");
    let mark = rig.audit().len();
    let c = rig.controller("spotplan-a", &[]);
    rig.apply(&plan_yaml("refused", ""));
    let refused = |audit: &[Value]| {
        audit
            .iter()
            .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == "spotplan-a")
            .filter(|e| e["objectRef"]["subresource"] == "status" && e["verb"] == "patch")
            .filter(|e| e["responseStatus"]["code"] == 403)
            .count() as f64
    };
    eventually(T, "two refused status writes", || {
        (refused(&rig.audit()[mark..]) >= 2.0).then_some(())
    });
    // A failure is counted after its refused write is logged: read the metric, the log, the
    // metric again.
    let before = c.metric_sum("spotplan_reconcile_failures_total{");
    let logged = refused(&rig.audit()[mark..]);
    let after = c.metric_sum("spotplan_reconcile_failures_total{");
    assert!(
        before <= logged && logged <= after + 1.0,
        "failures {before}..{after}, refused status writes {logged}\n{}",
        c.metrics()
    );
    assert!(
        c.metric("spotplan_reconcile_failures_total{category=\"ApiRejected\"}")
            .is_some_and(|v| v >= 2.0),
        "{}",
        c.metrics()
    );
    // The exposition passes Prometheus's own lint, and every metric the Grafana dashboard
    // queries is one the controller exports (in one of the two scrapes); promtool parses each
    // query.
    promtool_checks(&rig, &[first_scrape, c.metrics()]);
}

/// The holder of the Lease as the API server has it.
fn lease_holder(rig: &Rig) -> String {
    rig.kubectl(&[
        "get",
        "lease",
        "spotplan-controller",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

/// The audit log's time of an event, as a Timestamp.
fn audit_time(e: &Value, key: &str) -> jiff::Timestamp {
    e[key].as_str().unwrap().parse().unwrap()
}

/// A leader stopped with SIGTERM hands the Lease back (its own update in the audit log), and
/// the other replica takes over long before the lease would have expired.
#[test]
fn a_stopped_leader_hands_the_lease_back() {
    let Some(rig) = Rig::start("handback") else {
        return;
    };
    for u in ["spotplan-a", "spotplan-b"] {
        bind_controller_role(&rig, u);
    }
    let ttl = ["--lease-ttl", "30s"];
    let mut a = rig.controller(
        "spotplan-a",
        &[&ttl[..], &["--identity", "replica-a"]].concat(),
    );
    rig.apply(&plan_yaml("one", ""));
    ready(&rig, "one");
    assert_eq!(lease_holder(&rig), "replica-a");
    let b = rig.controller(
        "spotplan-b",
        &[&ttl[..], &["--identity", "replica-b"]].concat(),
    );
    b.wait_ready();
    assert_eq!(
        b.metric("spotplan_leader"),
        Some(0.0),
        "b follows while a leads"
    );
    let mark = rig.audit().len();
    let stopped = std::time::Instant::now();
    assert!(a.stop().success(), "{}", a.log_text());
    // a's own last write of the Lease, after SIGTERM: the hand-back, accepted.
    let handback = rig.audit()[mark..]
        .iter()
        .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == "spotplan-a")
        .any(|e| {
            e["objectRef"]["resource"] == "leases"
                && e["verb"] == "update"
                && e["responseStatus"]["code"] == 200
        });
    assert!(handback, "no accepted Lease update by the stopped leader");
    eventually(T, "replica-b holds the Lease", || {
        (lease_holder(&rig) == "replica-b").then_some(())
    });
    let took = stopped.elapsed();
    // b asks every ttl/3 (10 s): it takes over at its next request, not at expiry (30 s).
    assert!(
        took < Duration::from_secs(20),
        "took over after {took:?}: the lease was not handed back"
    );
    rig.apply(&plan_yaml("two", ""));
    ready(&rig, "two");
    assert_eq!(b.metric("spotplan_leader"), Some(1.0));
}

/// Fencing and exit: a leader whose Lease requests are refused stops writing once its lease
/// could have expired (every write it made, in the audit log, falls within a lease lifetime of
/// its last accepted renewal, though it went on reconciling), and exits once election has
/// failed for 20 lease lifetimes.
#[test]
fn a_leader_that_cannot_renew_stops_writing_then_exits() {
    let Some(rig) = Rig::start("fencing") else {
        return;
    };
    bind_controller_role(&rig, "spotplan-a");
    let mut c = rig.controller(
        "spotplan-a",
        &["--lease-ttl", "3s", "--identity", "replica-a"],
    );
    rig.apply(&plan_yaml("one", ""));
    ready(&rig, "one");
    // Its Lease rights go: renewals are refused from now on.
    rig.kubectl(&[
        "delete",
        "rolebinding",
        "spotplan-a-spotplan-leader-election",
        "-n",
        "default",
    ]);
    eventually(T, "the leader to notice it may no longer lead", || {
        (c.metric("spotplan_leader") == Some(0.0)).then_some(())
    });
    // Changes keep coming: it reconciles them, and writes nothing.
    let deferred = |c: &rig::Controller| {
        c.metric("spotplan_reconciles_total{outcome=\"Deferred\"}")
            .unwrap_or(0.0)
    };
    let before = deferred(&c);
    rig.apply(&plan_yaml("one", "  instanceFamilies: [m7i, c7i]\n"));
    rig.apply(&plan_yaml("two", ""));
    eventually(T, "reconciles deferred as a follower", || {
        (deferred(&c) >= before + 2.0).then_some(())
    });
    let audit = rig.audit();
    let mine: Vec<&Value> = audit
        .iter()
        .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == "spotplan-a")
        .filter(|e| {
            e["responseStatus"]["code"]
                .as_u64()
                .is_some_and(|c| c < 300)
        })
        .collect();
    let last_renewal = mine
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "leases")
        .map(|e| audit_time(e, "requestReceivedTimestamp"))
        .max()
        .expect("accepted lease requests");
    let fence = last_renewal
        .checked_add(jiff::SignedDuration::from_secs(3))
        .unwrap();
    let writes: Vec<(String, String, jiff::Timestamp)> = mine
        .iter()
        .filter(|e| e["objectRef"]["resource"] != "leases")
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "patch" | "update" | "delete")
            )
        })
        .map(|e| {
            (
                e["verb"].as_str().unwrap().to_string(),
                e["objectRef"]["resource"].as_str().unwrap().to_string(),
                audit_time(e, "requestReceivedTimestamp"),
            )
        })
        .collect();
    // The positive control: the same reading sees its writes while it led.
    assert!(
        writes.iter().any(|w| w.1 == "nodepools"),
        "no NodePool write by the leader at all: {writes:?}"
    );
    let late: Vec<_> = writes.iter().filter(|w| w.2 > fence).collect();
    assert!(
        late.is_empty(),
        "writes after the lease could have expired ({fence}): {late:?}"
    );
    assert!(rig.get_json("nodepool", "two").is_none());
    // No successful lease request for 20 x 3 s: it exits, and says why.
    let status = c.wait_exit(Duration::from_secs(90)).unwrap_or_else(|| {
        panic!(
            "still running 90 s after election failed:\n{}",
            c.log_text()
        )
    });
    assert!(!status.success(), "{status}");
    assert!(
        c.log_text().contains("leader election stopped"),
        "{}",
        c.log_text()
    );
}

/// `promtool check metrics` on a scrape, and the dashboard's queries: each parses
/// (`promtool check rules`, one recording rule per query) and names only metrics the scrape has.
fn promtool_checks(rig: &Rig, scrapes: &[String]) {
    let promtool = rig.tools.join("promtool");
    if !promtool.exists() {
        parts::missing(
            "plan_metrics_match_values_computed_from_the_data_and_the_audit_log",
            "promtool",
            &format!(
                "{} is not built (scripts/build-tools.sh promtool)",
                promtool.display()
            ),
        );
        return;
    }
    use std::io::Write;
    for scrape in scrapes {
        let mut child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(scrape.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{scrape}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(rig::root().join("charts/spotplan/dashboards/spotplan.json"))
            .unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": e}))
        .collect();
    let file = rig.dir.path().join("dashboard-rules.yaml");
    std::fs::write(
        &file,
        serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the dashboard's queries do not parse: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The names each query selects, against the scrape's sample names.
    let exported: BTreeSet<&str> = scrapes
        .iter()
        .flat_map(|s| s.lines())
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("spotplan_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                exported.contains(name.as_str()),
                "the dashboard queries {name}, which the controller does not export: {e}"
            );
            rest = &rest[i + name.len()..];
        }
    }
}
