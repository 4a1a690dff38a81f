//! GitOps for real: Argo CD's own application controller and repo server (pinned, started by
//! scripts/argocd.sh on the rig's control plane) sync spotplan's chart and a folder of SpotPlans
//! from Git repositories served by `git daemon` on loopback, through the shipped
//! examples/argocd/application.yaml. Every check reads Argo CD's own view back from the
//! Application: `status.sync`, `status.health`, each resource's health and the operation state.
//!
//! The controller runs as the synced Deployment says (its args, env, ConfigMap volume and the
//! chart's ServiceAccount token); the Deployment's pods are KWOK's, on a KWOK node, so Argo CD
//! sees the Deployment roll out and become available as in a cluster.

mod parts;
mod rig;

use rig::{Background, Controller, Rig, condition, docs, eventually, ready, root, this_test};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
const NS: &str = "spotplan-system";
const ARGO_USER: &str = "system:serviceaccount:argocd:argocd-application-controller";
const CRD: &str = "spotplans.spotplan.dev";
const WEB: &str = "examples/argocd/gitops/spotplan/plans/web.yaml";

/// The rig with Argo CD, a KWOK node for the chart's pods, and two Git repositories: `spotplan`
/// (this tree's chart, as spotplan's repository serves it) and `gitops` (a user's repository,
/// from examples/argocd/gitops/).
struct GitOps {
    state: PathBuf,
    git_root: PathBuf,
    git_port: String,
    work: PathBuf,
    _kwok: Background,
    rig: Rig,
}

impl Drop for GitOps {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/argocd.sh"))
            .arg("down")
            .env("SPOTPLAN_TESTENV_DIR", &self.state)
            .output();
    }
}

/// What a user's repository holds for the rig: the example's layout, with values for a cluster
/// without AWS (market data from ConfigMap `market-data`), and the SpotPlans given.
fn rig_values(extra: &str) -> String {
    format!(
        "marketData:\n  airGapped:\n    enabled: true\n    existingConfigMap: market-data\n{extra}"
    )
}

impl GitOps {
    fn start(test: &str, plans: &[(&str, String)]) -> Option<GitOps> {
        let rig = Rig::start(test)?;
        parts::tool(test, "argocd-rig")?;
        // From empty: the chart brings the SpotPlan CRD.
        rig.kubectl(&["delete", "crd", CRD, "--wait=true"]);
        let env = rig::up("scripts/argocd.sh", &rig.state, test, "argocd-rig")?;
        let get = |key: &str| env.get(key);
        let kwok = rig.kwok();
        // A node for the chart's pods (KWOK marks it Ready and runs its pods). The rig runs no
        // node lifecycle controller to lift the not-ready taint a new Node gets; lift it here.
        let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: rig-node-0\n  labels: {kubernetes.io/hostname: rig-node-0, kubernetes.io/os: linux}\n  annotations: {kwok.x-k8s.io/node: fake}\nstatus:\n  allocatable: {cpu: \"32\", memory: 128Gi, pods: \"110\"}\n  capacity: {cpu: \"32\", memory: 128Gi, pods: \"110\"}\n";
        assert!(rig.apply(node).0);
        rig.kubectl(&[
            "taint",
            "node",
            "rig-node-0",
            "node.kubernetes.io/not-ready:NoSchedule-",
        ]);
        // The air-gapped data the values point at, as a user would create it beside the app.
        rig.kubectl(&["create", "namespace", NS]);
        rig.air_gapped_market_data(NS);

        let g = GitOps {
            state: rig.state.clone(),
            git_root: PathBuf::from(get("ARGOCD_GIT_ROOT")),
            git_port: get("ARGOCD_GIT_PORT"),
            work: rig.dir.path().join("git-work"),
            _kwok: kwok,
            rig,
        };
        let chart = g.work.join("spotplan/charts");
        std::fs::create_dir_all(&chart).unwrap();
        copy_dir(&root().join("charts/spotplan"), &chart.join("spotplan"));
        g.init_repo("spotplan");
        let gitops = g.work.join("gitops");
        copy_dir(&root().join("examples/argocd/gitops"), &gitops);
        std::fs::remove_dir_all(gitops.join("spotplan/plans")).unwrap();
        std::fs::create_dir_all(gitops.join("spotplan/plans")).unwrap();
        std::fs::write(gitops.join("spotplan/values.yaml"), rig_values("")).unwrap();
        for (name, yaml) in plans {
            std::fs::write(gitops.join(format!("spotplan/plans/{name}.yaml")), yaml).unwrap();
        }
        g.init_repo("gitops");
        Some(g)
    }

    fn git(&self, repo: &str, args: &[&str]) {
        let out = Command::new("git")
            .args(["-c", "user.name=rig", "-c", "user.email=rig@localhost"])
            .args(args)
            .current_dir(self.work.join(repo))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn init_repo(&self, repo: &str) {
        self.git(repo, &["init", "-q", "-b", "main"]);
        self.git(repo, &["add", "-A"]);
        self.git(repo, &["commit", "-qm", "initial"]);
        let bare = self.git_root.join(format!("{repo}.git"));
        self.git(
            repo,
            &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
        );
        self.git(repo, &["remote", "add", "origin", bare.to_str().unwrap()]);
    }

    /// Commits to the user's repository: each (path, Some(content)) written, (path, None)
    /// removed; pushed to the branch Argo CD tracks.
    fn commit(&self, changes: &[(&str, Option<String>)], message: &str) {
        let dir = self.work.join("gitops");
        for (path, content) in changes {
            match content {
                Some(c) => std::fs::write(dir.join(path), c).unwrap(),
                None => std::fs::remove_file(dir.join(path)).unwrap(),
            }
        }
        self.git("gitops", &["add", "-A"]);
        self.git("gitops", &["commit", "-qm", message]);
        self.git("gitops", &["push", "-q", "origin", "main"]);
    }

    /// The shipped example, pointed at the rig's repositories; with Argo CD's
    /// resources-finalizer when `cascade` (the opt-in the example describes).
    fn application(&self, cascade: bool) -> String {
        let url = |r: &str| format!("git://127.0.0.1:{}/{r}.git", self.git_port);
        let example = std::fs::read_to_string(root().join("examples/argocd/application.yaml"))
            .unwrap()
            .replace("https://github.com/spotplan/spotplan.git", &url("spotplan"))
            .replace(
                "https://git.example.com/platform/gitops.git",
                &url("gitops"),
            );
        assert!(
            docs(&example)[0]["metadata"]["finalizers"].is_null(),
            "the example deletes nothing unless the user opts in"
        );
        if cascade {
            example.replace(
                "  namespace: argocd\n",
                "  namespace: argocd\n  finalizers: [resources-finalizer.argocd.argoproj.io]\n",
            )
        } else {
            example
        }
    }

    /// What Argo CD's application controller logged at warning or error.
    fn argo_problems(&self) -> String {
        std::fs::read_to_string(self.state.join("argocd/application-controller.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("\"level\":\"error\"")
                    || l.contains("\"level\":\"warning\"")
                    || l.contains("failed")
                    || l.contains("retry")
                    || l.contains("Retrying")
            })
            .filter(|l| !l.contains("server.secretkey"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn deployment(&self) -> Option<Value> {
        self.rig.get_json_in(NS, "deployment", "spotplan")
    }

    /// Deletes the Application and waits until it is gone (with its finalizer, until Argo CD
    /// has deleted what it cascades to).
    fn delete_app(&self) {
        self.rig.kubectl(&[
            "delete",
            "applications.argoproj.io",
            "spotplan",
            "-n",
            "argocd",
            "--wait=true",
            "--timeout=120s",
        ]);
        assert!(self.app().is_none());
    }

    fn app(&self) -> Option<Value> {
        self.rig
            .get_json_in("argocd", "applications.argoproj.io", "spotplan")
    }

    /// Asks Argo CD to refresh (compare Git with the cluster again), and returns the app once it
    /// has: the refresh annotation is gone and `reconciledAt` moved on.
    fn refresh(&self, kind: &str) -> Value {
        let before = self.app().unwrap()["status"]["reconciledAt"].clone();
        // reconciledAt has a resolution of a second.
        std::thread::sleep(Duration::from_millis(1100));
        self.rig.kubectl(&[
            "annotate",
            "applications.argoproj.io",
            "spotplan",
            "-n",
            "argocd",
            &format!("argocd.argoproj.io/refresh={kind}"),
            "--overwrite",
        ]);
        eventually(T, "Argo CD to refresh the Application", || {
            let app = self.app()?;
            let pending = app["metadata"]["annotations"]["argocd.argoproj.io/refresh"].is_string();
            (!pending && app["status"]["reconciledAt"] != before).then_some(app)
        })
    }

    /// Refreshes until `ok` holds for Argo CD's view of the app (a commit reaches Argo CD on a
    /// refresh; an automated sync follows it), or fails with the last view.
    fn until(&self, what: &str, mut ok: impl FnMut(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        loop {
            let app = self.refresh("normal");
            if ok(&app) {
                return app;
            }
            assert!(
                start.elapsed() < T,
                "timed out waiting for {what}; Argo CD's view: {}",
                summary(&app)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The controller, as the synced Deployment runs it, with the chart's ServiceAccount.
    fn controller(&self) -> Controller {
        let deploy = self
            .deployment()
            .expect("the chart's Deployment, synced by Argo CD");
        let sa = deploy["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap()
            .to_string();
        let token = self
            .rig
            .kubectl(&["create", "token", &sa, "-n", NS, "--duration", "1h"])
            .trim()
            .to_string();
        self.rig.run_as_deployed(&deploy, NS, &token)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn sync_status(app: &Value) -> &str {
    app["status"]["sync"]["status"].as_str().unwrap_or("")
}

fn health(app: &Value) -> &str {
    app["status"]["health"]["status"].as_str().unwrap_or("")
}

/// Argo CD's entry for a resource of the app: (sync status, health status, health message).
fn resource(app: &Value, kind: &str, name: &str) -> Option<(String, String, String)> {
    app["status"]["resources"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .map(|r| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            (
                s(&r["status"]),
                s(&r["health"]["status"]),
                s(&r["health"]["message"]),
            )
        })
}

fn summary(app: &Value) -> String {
    let resources: Vec<String> = app["status"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}/{} {} {} {}",
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
                r["health"]["status"].as_str().unwrap_or("-"),
                r["health"]["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "sync {} health {} operation {} {}; conditions {}; resources: {}",
        sync_status(app),
        health(app),
        app["status"]["operationState"]["phase"],
        app["status"]["operationState"]["message"],
        app["status"]["conditions"],
        resources.join("; ")
    )
}

/// Argo CD with the user's repository holding two plans: `web` (the example's, deletionPolicy
/// Delete by default) and `batch` (the CI runners example, deletionPolicy Orphan).
fn start_with_two_plans(test: &str) -> Option<GitOps> {
    let web = std::fs::read_to_string(root().join(WEB)).unwrap();
    let batch = plan(
        "examples/ci-runners.yaml",
        "batch",
        "deletionPolicy: Orphan",
    );
    GitOps::start(test, &[("web", web), ("batch", batch)])
}

/// An example SpotPlan file under another name, with `extra` added to its spec.
fn plan(example: &str, name: &str, extra: &str) -> String {
    let text = std::fs::read_to_string(root().join(example)).unwrap();
    let doc = docs(&text).remove(0);
    let old = doc["metadata"]["name"].as_str().unwrap();
    let text = text.replace(&format!("name: {old}\n"), &format!("name: {name}\n"));
    if extra.is_empty() {
        text
    } else {
        text.replace("spec:\n", &format!("spec:\n  {extra}\n"))
    }
}

/// A SpotPlan nothing can satisfy: Ready=False, NothingFits.
fn unsatisfiable(name: &str) -> String {
    format!(
        "apiVersion: spotplan.dev/v1alpha1\nkind: SpotPlan\nmetadata:\n  name: {name}\nspec:\n  region: us-east-1\n  resources: {{cpu: \"64\", memory: 256Gi}}\n  mode: fault_tolerance\n  maxInterruptionBand: 0\n  instanceFamilies: [p4d]\n  nodePool:\n    nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}\n"
    )
}

fn pools_of(rig: &Rig, plan: &str) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = rig
        .list_json("nodepools", Some(&format!("spotplan.dev/plan={plan}")))
        .iter()
        .map(|n| {
            let m = &n["metadata"];
            let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
            (s("name"), s("uid"), s("resourceVersion"))
        })
        .collect();
    v.sort();
    v
}

/// Writes (2xx create, update, patch, delete) to NodePools in audit events, as (user, verb, name).
fn nodepool_writes(events: &[Value]) -> Vec<(String, String, String)> {
    rig::successful_writes(events)
        .filter(|e| e["objectRef"]["resource"] == "nodepools")
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            (
                s(&e["user"]["username"]),
                s(&e["verb"]),
                s(&e["objectRef"]["name"]),
            )
        })
        .collect()
}

/// Waits until the SpotPlans `plans` are deleted.
fn gone(rig: &Rig, plans: &[&str]) {
    eventually(T, &format!("SpotPlans {plans:?} deleted"), || {
        plans
            .iter()
            .all(|p| rig.get_json("spotplan", p).is_none())
            .then_some(())
    });
}

/// The tasks an Application's current sync attempt failed, as "Kind/name: message".
fn failed_tasks(app: &Value) -> Vec<String> {
    app["status"]["operationState"]["syncResult"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] == "SyncFailed" || r["hookPhase"] == "Failed")
        .map(|r| {
            format!(
                "{}/{}: {}",
                r["kind"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?"),
                r["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn first_sync_from_empty_settles_without_drift_and_follows_git() {
    let Some(g) = start_with_two_plans(&this_test()) else {
        return;
    };
    let rig = &g.rig;
    assert!(
        rig.get_json("crd", CRD).is_none(),
        "the rig starts without the CRD"
    );
    assert!(rig.apply(&g.application(false)).0);

    // First sync from empty: one operation that succeeds, the CRD created before any SpotPlan.
    // Its first attempt may fail only where the API server does not serve the new kind yet,
    // though Argo CD saw the CRD Established (once in a cold CI run, under load); the
    // Application's retry covers that. Any other failure of an attempt fails here, named, and
    // so does a retry whose failure was not seen (with the operation messages that were).
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut messages: BTreeSet<String> = BTreeSet::new();
    let app = g.until("the first sync", |a| {
        let op = &a["status"]["operationState"];
        failed.extend(failed_tasks(a));
        messages.extend(op["message"].as_str().map(str::to_string));
        op["phase"] == "Succeeded"
    });
    let op = &app["status"]["operationState"];
    let retries = op["retryCount"].as_u64().unwrap_or(0);
    let new_kind_not_served = |f: &String| {
        f.starts_with("SpotPlan/")
            && (f.contains("could not find the requested resource")
                || f.contains("no matches for kind"))
    };
    assert!(
        retries <= 1
            && (retries == 0) == failed.is_empty()
            && failed.iter().all(new_kind_not_served),
        "{retries} retries; failed tasks: {failed:?}; operation messages: {messages:?}\n{}\n{op}\n{}",
        summary(&app),
        g.argo_problems()
    );
    let audit = rig.audit();
    // Where in the audit log Argo CD first wrote `resource` for real (not a dry run).
    let by_argo = |resource: &str| {
        rig::successful_writes(&audit).position(|e| {
            e["user"]["username"] == ARGO_USER
                && e["objectRef"]["resource"] == resource
                && matches!(e["verb"].as_str(), Some("create" | "patch"))
                && !e["requestURI"].as_str().unwrap_or("").contains("dryRun")
        })
    };
    let crd_at = by_argo("customresourcedefinitions").expect("Argo CD created the CRD");
    let plan_at = by_argo("spotplans").expect("Argo CD applied the SpotPlans");
    assert!(crd_at < plan_at, "the CRD lands before the SpotPlans");

    // Planning (no controller yet): Progressing, in Argo CD's own resource health.
    let app = g.until("the plans Progressing in Argo CD", |a| {
        resource(a, "SpotPlan", "web").is_some_and(|r| r.1 == "Progressing")
    });
    let (sync, h, msg) = resource(&app, "SpotPlan", "web").unwrap();
    assert_eq!(sync, "Synced");
    assert!(msg.contains("waiting for the spotplan controller"), "{msg}");
    assert_eq!(health(&app), "Progressing", "{}", summary(&app));
    assert_eq!(h, "Progressing");

    // The controller as deployed: the plans turn Ready, and the app Synced and Healthy.
    let mut controller = g.controller();
    let web = ready(rig, "web");
    ready(rig, "batch");
    let app = g.until("Synced and Healthy", |a| {
        sync_status(a) == "Synced" && health(a) == "Healthy"
    });
    let (_, h, msg) = resource(&app, "SpotPlan", "web").unwrap();
    assert_eq!(h, "Healthy");
    assert_eq!(
        msg,
        condition(&web, "Ready").unwrap().2,
        "the plan's own message"
    );
    assert_eq!(
        resource(&app, "Deployment", "spotplan").unwrap().1,
        "Healthy"
    );

    // No drift: the operator has written status and NodePools; over refreshes (one of them hard,
    // which renders the manifests again) Argo CD finds nothing to sync, and starts no operation.
    assert!(!pools_of(rig, "web").is_empty());
    let started = op["startedAt"].clone();
    let history = app["status"]["history"].as_array().map_or(0, |h| h.len());
    for kind in ["normal", "normal", "hard", "normal"] {
        let app = g.refresh(kind);
        assert_eq!(
            sync_status(&app),
            "Synced",
            "{kind} refresh: {}",
            summary(&app)
        );
        for r in app["status"]["resources"].as_array().unwrap() {
            assert_eq!(r["status"], "Synced", "{kind} refresh: {r}");
            assert_ne!(
                r["kind"], "NodePool",
                "NodePools are not the app's resources: {r}"
            );
        }
        assert_eq!(app["status"]["operationState"]["startedAt"], started);
        assert_eq!(
            app["status"]["history"].as_array().map_or(0, |h| h.len()),
            history
        );
        assert_eq!(health(&app), "Healthy");
    }

    // A bad SpotPlan committed: Degraded with the plan's message; fixed in Git, Healthy again.
    g.commit(
        &[("spotplan/plans/bad.yaml", Some(unsatisfiable("bad")))],
        "a plan nothing fits",
    );
    let app = g.until("the bad plan Degraded", |a| {
        resource(a, "SpotPlan", "bad").is_some_and(|r| r.1 == "Degraded")
    });
    let (_, _, msg) = resource(&app, "SpotPlan", "bad").unwrap();
    let bad = rig.get_json("spotplan", "bad").unwrap();
    let (_, reason, message) = condition(&bad, "Ready").unwrap();
    assert_eq!(reason, "NothingFits");
    assert_eq!(
        msg,
        format!("{reason}: {message}"),
        "the plan's reason and message"
    );
    assert_eq!(health(&app), "Degraded", "{}", summary(&app));
    g.commit(
        &[("spotplan/plans/bad.yaml", Some(plan(WEB, "bad", "")))],
        "fix the bad plan",
    );
    g.until("Healthy after the fix", |a| {
        health(a) == "Healthy"
            && sync_status(a) == "Synced"
            && resource(a, "SpotPlan", "bad").is_some_and(|r| r.1 == "Healthy")
    });

    // A chart upgrade through Git: the controller rolls; no SpotPlan's NodePools are touched.
    let deploy_gen = || {
        g.deployment().unwrap()["metadata"]["generation"]
            .as_u64()
            .unwrap()
    };
    let gen_before = deploy_gen();
    let pools_before = [
        pools_of(rig, "web"),
        pools_of(rig, "batch"),
        pools_of(rig, "bad"),
    ];
    let audit_from = rig.audit().len();
    g.commit(
        &[(
            "spotplan/values.yaml",
            Some(rig_values("logging:\n  level: debug\n")),
        )],
        "controller logs at debug",
    );
    g.until("the upgrade synced and rolled out", |a| {
        sync_status(a) == "Synced"
            && health(a) == "Healthy"
            && resource(a, "Deployment", "spotplan").is_some_and(|r| r.1 == "Healthy")
            && deploy_gen() > gen_before
    });
    let (_, out, _) = rig.kubectl_raw(
        &[
            "rollout",
            "status",
            "deployment/spotplan",
            "-n",
            NS,
            "--timeout=60s",
        ],
        None,
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let level = g.deployment().unwrap()["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SPOTPLAN_LOG_LEVEL")
        .map(|e| e["value"].clone());
    assert_eq!(
        level,
        Some(Value::from("debug")),
        "the new values reached the Deployment"
    );
    controller.stop();
    controller = g.controller();
    // The new controller has planned every plan again (its metrics say so) before we look.
    for p in ["web", "batch", "bad"] {
        eventually(T, &format!("the new controller to plan {p}"), || {
            (controller.metric(&format!("spotplan_plan_ready{{plan=\"{p}\"}}")) == Some(1.0))
                .then_some(())
        });
    }
    let writes = nodepool_writes(&rig.audit()[audit_from..]);
    assert!(writes.is_empty(), "the upgrade wrote NodePools: {writes:?}");
    assert_eq!(
        [
            pools_of(rig, "web"),
            pools_of(rig, "batch"),
            pools_of(rig, "bad")
        ],
        pools_before
    );

    // Plans removed from Git are pruned; their NodePools follow each plan's deletionPolicy.
    let batch_pools = pools_of(rig, "batch");
    g.commit(
        &[
            ("spotplan/plans/web.yaml", None),
            ("spotplan/plans/batch.yaml", None),
        ],
        "retire web and batch",
    );
    g.until("the removed plans pruned", |a| {
        sync_status(a) == "Synced" && resource(a, "SpotPlan", "web").is_none()
    });
    gone(rig, &["web", "batch"]);
    rig.gc_barrier();
    assert!(
        pools_of(rig, "web").is_empty(),
        "deletionPolicy Delete: web's NodePools go with it"
    );
    let kept = pools_of(rig, "batch");
    assert_eq!(
        kept.iter().map(|p| (&p.0, &p.1)).collect::<Vec<_>>(),
        batch_pools.iter().map(|p| (&p.0, &p.1)).collect::<Vec<_>>(),
        "deletionPolicy Orphan: batch's NodePools stay"
    );
    assert!(
        !pools_of(rig, "bad").is_empty(),
        "a plan still in Git keeps its pools"
    );
    drop(controller);
}

#[test]
fn deleting_the_application_keeps_capacity_unless_the_user_opts_in() {
    let Some(g) = start_with_two_plans(&this_test()) else {
        return;
    };
    let rig = &g.rig;
    assert!(rig.apply(&g.application(false)).0);
    g.until("the first sync", |a| {
        a["status"]["operationState"]["phase"] == "Succeeded"
    });
    let controller = g.controller();
    ready(rig, "web");
    ready(rig, "batch");
    g.until("Synced and Healthy", |a| {
        sync_status(a) == "Synced" && health(a) == "Healthy"
    });
    let uid = |kind: &str, name: &str| -> String {
        let obj = rig
            .get_json_in(NS, kind, name)
            .unwrap_or_else(|| panic!("{kind}/{name} is there"));
        obj["metadata"]["uid"].as_str().unwrap().to_string()
    };
    let state = || {
        (
            uid("crd", CRD),
            uid("spotplan", "web"),
            uid("spotplan", "batch"),
            uid("deployment", "spotplan"),
            pools_of(rig, "web"),
            pools_of(rig, "batch"),
        )
    };
    let before = state();
    assert!(!before.4.is_empty() && !before.5.is_empty());

    // The shipped example: deleting the Application deletes the Application only.
    g.delete_app();
    rig.gc_barrier();
    assert_eq!(
        state(),
        before,
        "the CRD, the SpotPlans, their NodePools and the controller stay"
    );

    // Opted in (the finalizer): a new Application adopts what is there without an OutOfSync
    // surprise, and deleting it cascades: the SpotPlans and the chart's objects go, each plan's
    // NodePools follow its deletionPolicy, and the CRD stays.
    assert!(rig.apply(&g.application(true)).0);
    let app = g.until("the new Application Synced and Healthy", |a| {
        sync_status(a) == "Synced" && health(a) == "Healthy"
    });
    assert!(
        app["metadata"]["finalizers"]
            .to_string()
            .contains("resources-finalizer")
    );
    assert_eq!(uid("spotplan", "web"), before.1, "adopted, not recreated");
    g.delete_app();
    gone(rig, &["web", "batch"]);
    rig.gc_barrier();
    assert!(
        g.deployment().is_none(),
        "the controller's Deployment is deleted"
    );
    assert!(
        pools_of(rig, "web").is_empty(),
        "deletionPolicy Delete: web's NodePools go"
    );
    assert_eq!(
        pools_of(rig, "batch")
            .iter()
            .map(|p| &p.1)
            .collect::<Vec<_>>(),
        before.5.iter().map(|p| &p.1).collect::<Vec<_>>(),
        "deletionPolicy Orphan: batch's NodePools stay"
    );
    assert_eq!(uid("crd", CRD), before.0, "the CRD stays (Delete=false)");
    drop(controller);
}
