//! End to end with real Karpenter (its kwok cloud provider) on the test control plane: the
//! NodeClaims Karpenter launches for a SpotPlan's pods use only the plan's instance types, on
//! spot; with an on-demand base the first capacity is on-demand and reaches the base (within
//! a node, as Karpenter checks limits late) before spot takes over; and a control
//! NodePool without spotplan's list shows Karpenter would otherwise choose other types.
//!
//! Karpenter is fed the whole embedded catalog for us-east-1 with the shared market data's
//! prices (`spotplan render --format kwok-instance-types`), including cheaper types the plan leaves out.

mod common;
mod rig;

use rig::{Rig, condition, eventually, run_ok};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

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

#[test]
fn karpenter_launches_only_planned_types() {
    let Some(rig) = Rig::start("karpenter") else {
        return;
    };
    let types_file = rig.dir.path().join("kwok-instance-types.json");
    let mut render = std::process::Command::new(env!("CARGO_BIN_EXE_spotplan"));
    render
        .args([
            "render",
            "--format",
            "kwok-instance-types",
            "--region",
            "us-east-1",
            "--advisor-data",
        ])
        .arg(&rig.advisor)
        .arg("--prices")
        .arg(&rig.prices);
    let types_json = run_ok(render);
    std::fs::write(&types_file, &types_json).unwrap();
    let catalog: Value = serde_json::from_slice(&types_json).unwrap();
    assert!(
        catalog.as_array().unwrap().len() > 1000,
        "the whole catalog, not the plan's list"
    );

    let karpenter = rig.karpenter(&types_file);
    let _controller = rig.controller("admin", &[]);
    assert!(rig.apply("apiVersion: karpenter.kwok.sh/v1alpha1\nkind: KWOKNodeClass\nmetadata: {name: default}\n").0);

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
    let control = "apiVersion: karpenter.sh/v1
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
    assert!(rig.apply(control).0);
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

    // 3. An on-demand base: the first capacity is on-demand, up to the base (Karpenter checks
    //    limits late, so within one node), the rest spot.
    rig.apply(&plan("base", "  capacity: {onDemandBase: {cpu: \"32\"}}\n"));
    let base_types = ready_types(&rig, "base");
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
        od_cpu <= 32 + largest,
        "on-demand {od_cpu} vCPU overran the 32 vCPU base by more than a node: {od:?}"
    );
    // And it reaches the base: spot takes over only once on-demand is within a node of it.
    assert!(
        od_cpu + largest >= 32,
        "on-demand stopped at {od_cpu} vCPU, more than a node short of the 32 vCPU base: {od:?}; spot {spot:?}"
    );
    for (ty, cap, _) in &od {
        assert_eq!(cap, "on-demand");
        assert!(base_types.contains(ty), "{ty}");
    }
    for (ty, cap, _) in &spot {
        assert_eq!(cap, "spot");
        assert!(base_types.contains(ty), "{ty}");
    }
    eprintln!(
        "plan types: {listed:?}\nplan NodeClaims: {launched:?}\ncontrol NodeClaims: {unrestricted:?}\nbase: on-demand {od:?}, spot {spot:?}"
    );
    assert!(!karpenter.log_text().is_empty());
}
