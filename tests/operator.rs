//! The operator against a real kube-apiserver with Karpenter's own CRDs (tests/rig): every
//! NodePool spotplan writes passes Karpenter's schema and CEL rules, and the audit log shows
//! what the controller wrote.

mod rig;

use rig::{Rig, condition, eventually, writes_by};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn plan_yaml(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: spotplan.dev/v1alpha1
kind: SpotPlan
metadata:
  name: {name}
  labels: {{app.kubernetes.io/instance: argo-app}}
spec:
  region: us-east-1
  resources: {{cpu: \"64\", memory: 256Gi}}
  nodePool:
    nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
{extra_spec}"
    )
}

fn ready(rig: &Rig, name: &str) -> Value {
    eventually(T, &format!("SpotPlan {name} Ready=True"), || {
        let sp = rig.get_json("spotplan", name)?;
        let (s, _, _) = condition(&sp, "Ready")?;
        (s == "True" && sp["status"]["observedGeneration"] == sp["metadata"]["generation"])
            .then_some(sp)
    })
}

fn not_ready(rig: &Rig, name: &str, reason: &str) -> (Value, String) {
    eventually(T, &format!("SpotPlan {name} Ready=False/{reason}"), || {
        let sp = rig.get_json("spotplan", name)?;
        let (s, r, m) = condition(&sp, "Ready")?;
        (s == "False"
            && r == reason
            && sp["status"]["observedGeneration"] == sp["metadata"]["generation"])
            .then_some((sp, m))
    })
}

fn types_of(np: &Value) -> Vec<String> {
    np["spec"]["template"]["spec"]["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "node.kubernetes.io/instance-type")
        .map(|r| {
            r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
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
            "Unsupported value: \"fast\"",
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
    let events = rig.kubectl(&["get", "events", "-A", "-o", "json"]);
    assert!(
        events.contains("\"NothingFits\""),
        "a Warning event marks the transition"
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
        sp["status"]["lastNarrowed"].is_string(),
        "a spec narrowing is recorded: {}",
        sp["status"]
    );
    let events = rig.kubectl(&["get", "events", "-A", "-o", "json"]);
    assert!(events.contains("InstanceTypesChanged"), "{events}");

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

#[test]
fn restart_with_unchanged_data_writes_nothing() {
    let Some(rig) = Rig::start("restart") else {
        return;
    };
    rig.kubectl(&[
        "apply",
        "-f",
        &rig::root()
            .join("config/rbac/clusterrole.yaml")
            .display()
            .to_string(),
    ]);
    rig.kubectl(&[
        "create",
        "clusterrolebinding",
        "spotplan-a",
        "--clusterrole=spotplan-controller",
        "--user=spotplan-a",
    ]);
    let mut c = rig.controller("spotplan-a", &["--leader-elect=false"]);
    for name in ["alpha", "beta", "gamma"] {
        rig.apply(&plan_yaml(
            name,
            "  capacity: {onDemandBase: {cpu: \"4\"}}\n",
        ));
    }
    for name in ["alpha", "beta", "gamma"] {
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
    std::thread::sleep(Duration::from_secs(2));
    let before = versions(&rig);
    assert!(c.stop().success(), "clean exit on SIGTERM");
    let mark = rig.audit().len();

    let c2 = rig.controller("spotplan-a", &["--leader-elect=false"]);
    // Give it time to list, reconcile every plan, and settle.
    eventually(T, "three reconciles after restart", || {
        (c2.metric("spotplan_reconciles_total").unwrap_or(0.0) >= 3.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let audit = rig.audit();
    let writes = writes_by(&audit[mark..], "spotplan-a");
    assert!(
        writes.is_empty(),
        "the restarted controller wrote: {writes:?}\n{}",
        c2.log_text()
    );
    let reads = audit[mark..]
        .iter()
        .filter(|e| e["user"]["username"] == "spotplan-a")
        .count();
    assert!(
        reads > 0,
        "the audit log shows the restarted controller at work"
    );
    assert_eq!(versions(&rig), before, "no resourceVersion moved");
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
    rig.kubectl(&[
        "apply",
        "-f",
        &rig::root()
            .join("config/rbac/clusterrole.yaml")
            .display()
            .to_string(),
    ]);
    for u in ["spotplan-a", "spotplan-b"] {
        rig.kubectl(&[
            "create",
            "clusterrolebinding",
            u,
            "--clusterrole=spotplan-controller",
            &format!("--user={u}"),
        ]);
        rig.kubectl(&[
            "create",
            "rolebinding",
            u,
            "--role=spotplan-leader-election",
            &format!("--user={u}"),
            "-n",
            "default",
        ]);
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
    let lease = rig.kubectl(&[
        "get",
        "lease",
        "spotplan-controller",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
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
    let holder = rig.kubectl(&[
        "get",
        "lease",
        "spotplan-controller",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
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
    rig.kubectl(&["apply", "-f", &role_file]);
    rig.kubectl(&["apply", "-n", ns, "-f", &role_file]);
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
    for need in [
        ("patch", "nodepools"),
        ("patch", "spotplans/status"),
        ("delete", "nodepools"),
        ("watch", "spotplans"),
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
    rig.kubectl(&["delete", "spotplan", "gone", "kept", "--wait=true"]);
    // kube-controller-manager's garbage collector deletes owned NodePools.
    eventually(T, "NodePools of 'gone' garbage-collected", || {
        (rig.get_json("nodepool", "gone").is_none()
            && rig.get_json("nodepool", "gone-on-demand").is_none())
        .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        rig.get_json("nodepool", "kept").is_some(),
        "Orphan keeps the NodePool"
    );
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
    // File data is stale once unmodified for twice the refresh interval (10s here).
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
    eventually(T, "Suspended=True", || {
        let sp = rig.get_json("spotplan", "frozen")?;
        (condition(&sp, "Suspended")?.0 == "True").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rig.get_json("nodepool", "frozen").unwrap()["metadata"]["resourceVersion"],
        np["metadata"]["resourceVersion"]
    );

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
        c.metric("spotplan_market_data_refresh_failures_total{category=\"invalid_json\"}")
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
    // Old data (a file not modified for longer than twice the refresh interval) is stale too.
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
    assert!(
        condition(&sp, "DataFresh")
            .unwrap()
            .2
            .contains("older than twice the refresh interval")
    );
}
