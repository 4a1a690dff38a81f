//! The real test rig: a control plane per test (etcd, kube-apiserver with an audit log,
//! kube-controller-manager, kube-scheduler, Karpenter's and SpotPlan's CRDs) started by
//! scripts/testenv.sh in a private directory, and the real `spotplan` binary as the controller.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

use crate::parts;

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
    pub tools: PathBuf,
    /// Fresh copies of the shared data files (their mtime is "now", so data is fresh).
    pub advisor: PathBuf,
    pub prices: PathBuf,
}

impl Rig {
    /// Starts a control plane. If it cannot start, the test fails, or, in a partial run without
    /// the control plane (`SPOTPLAN_PARTIAL=control-plane`), returns None and the skip is logged.
    pub fn start(test: &str) -> Option<Rig> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("spotplan-{test}-"))
            .tempdir()
            .unwrap();
        let state = dir.path().join("env");
        let env = up("scripts/testenv.sh", &state, test, "control-plane")?;
        let get = |key: &str| env.get(key).trim_end_matches(":$PATH").to_string();
        // If this test process dies without running Drop, a watchdog still stops the rig. It
        // outlives this process on purpose, so nobody waits for it.
        let pid = std::process::id();
        #[allow(clippy::zombie_processes)]
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; SPOTPLAN_TESTENV_DIR='{}' bash '{}' down >/dev/null 2>&1",
                state.display(),
                root().join("scripts/testenv.sh").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog");
        let shared = std::env::var_os("SPOTPLAN_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("../shared"));
        let advisor = dir.path().join("spot-advisor-data.json");
        let prices = dir.path().join("prices.csv");
        std::fs::copy(
            shared.join("data/spot-advisor/spot-advisor-data_2025-06-28.json"),
            &advisor,
        )
        .unwrap();
        std::fs::copy(
            shared.join("data/prices/ec2-linux-prices_2026-05.csv"),
            &prices,
        )
        .unwrap();
        Some(Rig {
            kubeconfig: PathBuf::from(get("KUBECONFIG")),
            tools: PathBuf::from(get("PATH")),
            state,
            advisor,
            prices,
            dir,
        })
    }

    pub fn kubeconfig_for(&self, user: &str) -> PathBuf {
        self.state.join(format!("{user}.kubeconfig"))
    }

    /// kubectl as admin; panics on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_raw(args, None);
        assert!(out.0, "kubectl {args:?} failed: {}", out.2);
        out.1
    }

    /// kubectl with optional stdin: (success, stdout, stderr).
    pub fn kubectl_raw(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut c = Command::new(self.tools.join("kubectl"));
        // A discovery cache of our own: API server ports are reused between rigs, and a cache
        // keyed by host:port from an earlier rig would hide this one's CRDs.
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("kubectl");
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// A Warning Event on a NodeClaim as Karpenter's controllers publish it (client-go's
    /// recorder for component `karpenter`, core/v1, in `default`); `n` keeps repeated events for
    /// one NodeClaim apart.
    pub fn karpenter_event(&self, claim: &str, uid: &str, reason: &str, message: &str, n: u32) {
        let (ok, out) = self.apply(&ClaimEvent::karpenter(claim, uid, reason, message, n).yaml());
        assert!(ok, "{out}");
    }

    pub fn apply(&self, yaml: &str) -> (bool, String) {
        let (ok, out, err) = self.kubectl_raw(&["apply", "-f", "-"], Some(yaml));
        (ok, format!("{out}{err}"))
    }

    pub fn get_json(&self, kind: &str, name: &str) -> Option<Value> {
        let (ok, out, _) = self.kubectl_raw(&["get", kind, name, "-o", "json"], None);
        ok.then(|| serde_json::from_str(&out).unwrap())
    }

    /// A namespaced object, or None when it is not there.
    pub fn get_json_in(&self, ns: &str, kind: &str, name: &str) -> Option<Value> {
        let (ok, out, _) = self.kubectl_raw(&["get", kind, name, "-n", ns, "-o", "json"], None);
        ok.then(|| serde_json::from_str(&out).unwrap())
    }

    pub fn list_json(&self, kind: &str, selector: Option<&str>) -> Vec<Value> {
        let mut args = vec!["get", kind, "-o", "json"];
        if let Some(s) = selector {
            args.extend(["-l", s]);
        }
        let v: Value = serde_json::from_str(&self.kubectl(&args)).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// The audit log so far, one JSON event per line.
    pub fn audit(&self) -> Vec<Value> {
        let f = std::fs::File::open(self.state.join("audit.log")).unwrap();
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    pub fn restart_apiserver(&self, pause: Duration) {
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("scripts/testenv.sh"))
            .arg("restart-apiserver")
            .env("SPOTPLAN_TESTENV_DIR", &self.state)
            .env("RESTART_PAUSE", pause.as_secs().to_string());
        run_ok(cmd);
    }

    /// Starts `spotplan controller` with the rig's data and `extra` flags, as `user`.
    pub fn controller(&self, user: &str, extra: &[&str]) -> Controller {
        self.controller_with_kubeconfig(&self.kubeconfig_for(user), extra)
    }

    pub fn controller_with_kubeconfig(&self, kubeconfig: &Path, extra: &[&str]) -> Controller {
        self.controller_env(kubeconfig, &[], extra)
    }

    /// Starts the controller with extra environment variables (as a pod would get them).
    pub fn controller_env(
        &self,
        kubeconfig: &Path,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Controller {
        let mut args: Vec<String> = vec!["controller".into(), "--advisor-data".into()];
        args.push(self.advisor.display().to_string());
        args.extend(["--prices".into(), self.prices.display().to_string()]);
        args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        args.extend([
            "--cache-dir".into(),
            self.dir.path().join("cache").display().to_string(),
        ]);
        if !extra.contains(&"--lease-ttl") {
            args.extend(["--lease-ttl", "6s"].map(String::from));
        }
        args.extend(["--log-level", "info,spotplan=debug"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        self.controller_cmd(kubeconfig, &args, env)
    }

    /// A kubeconfig for this rig that authenticates with `token` (a ServiceAccount's).
    pub fn kubeconfig_with_token(&self, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let admin_token = admin
            .split("token: \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let kc = self.numbered("token", "kubeconfig");
        std::fs::write(&kc, admin.replace(admin_token, token)).unwrap();
        kc
    }

    /// A new file name in the rig's directory: `{stem}-{n}.{ext}`, n counting up per process.
    fn numbered(&self, stem: &str, ext: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir.path().join(format!("{stem}-{n}.{ext}"))
    }
}

impl Rig {
    /// Starts the controller with exactly `args` and `env` (plus PATH and HOME): how a pod
    /// would run it. Give it `--listen 127.0.0.1:0` (or `SPOTPLAN_LISTEN`): it binds a port of
    /// its own and logs it, so no other process can take the port between a choice made here
    /// and the controller's bind.
    pub fn controller_cmd(
        &self,
        kubeconfig: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Controller {
        let log = self.numbered("controller", "log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_spotplan"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start spotplan controller");
        let port = bound_port(&log, &mut child);
        let c = Controller {
            child: Some(child),
            port,
            log,
        };
        c.wait_ready();
        c
    }
}

impl Rig {
    /// Runs the operator exactly as the chart's rendered Deployment would: its args, env (fieldRefs
    /// resolved as the kubelet would), port, the ConfigMap volume as files, and the chart's own
    /// ServiceAccount token.
    pub fn run_as_deployed(&self, deploy: &Value, ns: &str, token: &str) -> Controller {
        let pod = &deploy["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let port = c["ports"][0]["containerPort"].as_u64().unwrap();
        // Volumes: emptyDir -> a temp dir; configMap -> its files written out (binaryData decoded).
        let mut mounts = Vec::new();
        for m in c["volumeMounts"].as_array().unwrap() {
            let vol = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap();
            let dir = self
                .dir
                .path()
                .join(format!("vol-{}", m["name"].as_str().unwrap()));
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(cm) = vol["configMap"]["name"].as_str() {
                let obj: Value = serde_json::from_str(&self.kubectl(&[
                    "get",
                    "configmap",
                    cm,
                    "-n",
                    ns,
                    "-o",
                    "json",
                ]))
                .unwrap();
                for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
                    let b64 = self.dir.path().join(format!("{k}.b64"));
                    std::fs::write(&b64, v.as_str().unwrap()).unwrap();
                    let out = Command::new("base64").arg("-d").arg(&b64).output().unwrap();
                    assert!(out.status.success());
                    std::fs::write(dir.join(k), out.stdout).unwrap();
                }
            }
            mounts.push((m["mountPath"].as_str().unwrap().to_string(), dir));
        }
        let remap = |v: &str| -> String {
            for (path, dir) in &mounts {
                if let Some(rest) = v.strip_prefix(path.as_str()) {
                    return format!("{}{rest}", dir.display());
                }
            }
            v.to_string()
        };
        let mut env: Vec<(String, String)> = Vec::new();
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => "spotplan-7d9f-abcde".to_string(),
                Some("metadata.namespace") => ns.to_string(),
                Some(other) => panic!("unexpected fieldRef {other}"),
                None => remap(e["value"].as_str().unwrap()),
            };
            env.push((name, value));
        }
        // The pod listens on all interfaces at the container port; here, loopback on a port the
        // controller picks.
        for (k, v) in env.iter_mut() {
            if k == "SPOTPLAN_LISTEN" {
                assert_eq!(*v, format!("0.0.0.0:{port}"));
                *v = "127.0.0.1:0".to_string();
            }
        }
        let kc = self.kubeconfig_with_token(token);
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(args, vec!["controller".to_string()]);
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.controller_cmd(&kc, &args, &env_refs)
    }

    /// Air-gapped market data as an operator would ship it: the rig's snapshots, gzipped into
    /// ConfigMap `market-data` (binaryData) in `ns`, which must exist.
    pub fn air_gapped_market_data(&self, ns: &str) {
        let gz = |src: &Path, name: &str| {
            let dst = self.dir.path().join(name);
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            std::io::Write::write_all(&mut enc, &std::fs::read(src).unwrap()).unwrap();
            std::fs::write(&dst, enc.finish().unwrap()).unwrap();
            assert!(
                std::fs::metadata(&dst).unwrap().len() < 1024 * 1024,
                "{name} must fit a ConfigMap"
            );
            dst
        };
        let adv = gz(&self.advisor, "spot-advisor-data.json.gz");
        let pr = gz(&self.prices, "prices.csv.gz");
        self.kubectl(&[
            "create",
            "configmap",
            "market-data",
            "-n",
            ns,
            &format!("--from-file=spot-advisor-data.json.gz={}", adv.display()),
            &format!("--from-file=prices.csv.gz={}", pr.display()),
        ]);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/testenv.sh"))
            .arg("down")
            .env("SPOTPLAN_TESTENV_DIR", &self.state)
            .output();
    }
}

/// Runs `script up` (scripts/testenv.sh, scripts/argocd.sh) for the environment in `state`, and
/// returns the variables it exports. If it fails, the test fails, or, in a partial run without
/// `part`, the skip is logged and None returned.
pub fn up(script: &str, state: &Path, test: &str, part: &str) -> Option<Exports> {
    let out = Command::new("bash")
        .arg(root().join(script))
        .arg("up")
        .env("SPOTPLAN_TESTENV_DIR", state)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    if !out.status.success() {
        let why = format!(
            "{test}: {script} up failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        parts::missing(test, part, &why);
        return None;
    }
    Some(Exports(String::from_utf8_lossy(&out.stdout).to_string()))
}

/// The `export KEY=value` lines a script printed.
pub struct Exports(String);

impl Exports {
    pub fn get(&self, key: &str) -> String {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {key}=")))
            .unwrap_or_else(|| panic!("no {key} exported: {}", self.0))
            .to_string()
    }
}

/// The running test's name (libtest names each test's thread after it).
pub fn this_test() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

/// The documents of a YAML stream, empty ones left out.
pub fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Runs a command to completion, failing the test with its stderr unless it succeeds; its stdout.
pub fn run_ok(mut cmd: Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn command");
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub struct Controller {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

/// The port from the controller's "serving /metrics, /livez, /readyz" log line (text or JSON
/// logs); fails the test if the controller exits or logs none within 60 s.
fn bound_port(log: &Path, child: &mut Child) -> u16 {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text
            .lines()
            .filter(|l| l.contains("serving /metrics"))
            .find_map(|l| {
                let (_, rest) = l
                    .split_once("addr=")
                    .or_else(|| l.split_once("\"addr\":\""))?;
                let addr = rest.split(['"', ' ']).next()?;
                addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
            });
        if let Some(port) = port {
            return port;
        }
        let exited = child.try_wait().ok().flatten();
        assert!(
            exited.is_none() && start.elapsed() < Duration::from_secs(60),
            "the controller logged no listening address ({exited:?}); log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Controller {
    pub fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if http_get(self.port, "/readyz").is_some_and(|(c, _)| c == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("controller not ready in 60s; log:\n{}", self.log_text());
    }

    /// GET `path`: (status code, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The sum of the metric lines starting with `prefix` (a counter over all its labels).
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of a metric line starting with `prefix`, if any.
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM and wait for a clean exit.
    /// Waits up to `timeout` for the controller to exit on its own: its exit status, or None.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "controller ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: a crash, no chance to hand back the lease.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A condition of an object's status.
pub fn condition(obj: &Value, type_: &str) -> Option<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// Writes by `user` in the audit events (create, update, patch, delete), as (verb, resource, name).
pub fn writes_by(events: &[Value], user: &str) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e["user"]["username"] == user && e["stage"] == "ResponseComplete")
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete" | "deletecollection")
            )
        })
        .map(|e| {
            let r = &e["objectRef"];
            let mut res = r["resource"].as_str().unwrap_or("").to_string();
            if let Some(s) = r["subresource"].as_str() {
                res = format!("{res}/{s}");
            }
            (
                e["verb"].as_str().unwrap().to_string(),
                res,
                r["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The audit events of successful (2xx) writes: create, update, patch, delete.
pub fn successful_writes(events: &[Value]) -> impl Iterator<Item = &Value> {
    events
        .iter()
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter(|e| {
            e["responseStatus"]["code"]
                .as_u64()
                .is_some_and(|c| c < 300)
        })
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete")
            )
        })
}

/// Successful writes (2xx) of `resource`/`name` in the audit events, by any client but kubectl
/// (the controller's own), as (verb, user agent).
pub fn controller_writes_of(events: &[Value], resource: &str, name: &str) -> Vec<(String, String)> {
    successful_writes(events)
        .filter(|e| e["objectRef"]["resource"] == resource && e["objectRef"]["name"] == name)
        .filter(|e| e["objectRef"]["subresource"].is_null())
        .filter(|e| !e["userAgent"].as_str().unwrap_or("").starts_with("kubectl"))
        .map(|e| {
            (
                e["verb"].as_str().unwrap().to_string(),
                e["userAgent"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

impl Rig {
    /// Returns once kube-controller-manager's garbage collector has acted on an event that came
    /// after everything before this call: a ConfigMap owned by another is deleted with it. An
    /// absence checked after this is one the collector had its chance to cause.
    pub fn gc_barrier(&self) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let owner = format!(
            "gc-barrier-{}",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (ok, out, err) = self.kubectl_raw(
            &["create", "configmap", &owner, "-n", "default", "-o", "json"],
            None,
        );
        assert!(ok, "{err}");
        let uid = serde_json::from_str::<Value>(&out).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        let dependent = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {owner}-dep\n  namespace: default\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: {owner}, uid: {uid}}}]\n"
        );
        assert!(self.apply(&dependent).0);
        self.kubectl(&[
            "delete",
            "configmap",
            &owner,
            "-n",
            "default",
            "--wait=true",
        ]);
        eventually(
            Duration::from_secs(60),
            "the garbage collector to delete the barrier's dependent",
            || {
                self.kubectl_raw(
                    &["get", "configmap", &format!("{owner}-dep"), "-n", "default"],
                    None,
                )
                .2
                .contains("NotFound")
                .then_some(())
            },
        );
    }
}

/// A background process killed when dropped (Karpenter, ...).
pub struct Background {
    child: Child,
    pub log: PathBuf,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Background {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Rig {
    /// The real Karpenter controller with its kwok cloud provider, out of cluster, choosing among
    /// the instance types in `instance_types` (a kwok instance-types file).
    pub fn karpenter(&self, instance_types: &Path) -> Background {
        let log = self.dir.path().join("karpenter.log");
        let child = Command::new(self.tools.join("karpenter-kwok"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("DISABLE_LEADER_ELECTION", "true")
            // Port 0: each server binds a port of its own (nothing here reads them).
            .env("METRICS_PORT", "0")
            .env("HEALTH_PROBE_PORT", "0")
            .env("INSTANCE_TYPES_FILE_PATH", instance_types)
            .env("SYSTEM_NAMESPACE", "kube-system")
            // Risk pricing's lever (alpha): Karpenter applies NodeOverlays only with it.
            .env("FEATURE_GATES", "NodeOverlay=true")
            .env("BATCH_IDLE_DURATION", "1s")
            .env("BATCH_MAX_DURATION", "3s")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start karpenter-kwok");
        Background { child, log }
    }
}

impl Rig {
    /// The KWOK controller: marks Karpenter's fake Nodes Ready and their pods Running (its fast
    /// Stages), so Karpenter initializes NodeClaims and can drift and replace them.
    pub fn kwok(&self) -> Background {
        let log = self.dir.path().join("kwok.log");
        let stages = self.tools.join("kwok-stages");
        let mut cmd = Command::new(self.tools.join("kwok"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--manage-all-nodes")
            .arg("--server-address=127.0.0.1:0");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&stages)
            .unwrap_or_else(|e| {
                panic!(
                    "KWOK stages in {}: {e} (scripts/build-tools.sh kwok)",
                    stages.display()
                )
            })
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            cmd.arg("--config").arg(f);
        }
        let child = cmd
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(self.dir.path().join("kwok.err")).unwrap())
            .spawn()
            .expect("start kwok (scripts/build-tools.sh kwok)");
        Background { child, log }
    }
}

/// Runs `tick` every `period` on a thread of its own until dropped (the drop waits for it).
pub struct Repeating {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Repeating {
    pub fn every(period: Duration, mut tick: impl FnMut() + Send + 'static) -> Repeating {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                tick();
                std::thread::sleep(period);
            }
        });
        Repeating {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Repeating {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Keeps files' modification times current (a file's age is its mtime) until dropped, as a
/// data pipeline that rewrites them would.
pub fn keep_current(files: Vec<PathBuf>) -> Repeating {
    Repeating::every(Duration::from_millis(500), move || {
        for f in &files {
            if let Ok(file) = std::fs::File::options().write(true).open(f) {
                let _ = file.set_modified(std::time::SystemTime::now());
            }
        }
    })
}

/// How long a test waits for the controller to act.
pub const T: Duration = Duration::from_secs(60);

/// A SpotPlan `name` for 64 vCPU / 256 GiB in us-east-1 with `extra_spec` lines (indented two
/// spaces) added to its spec.
pub fn plan_yaml(name: &str, extra_spec: &str) -> String {
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

pub fn ready(rig: &Rig, name: &str) -> Value {
    eventually(T, &format!("SpotPlan {name} Ready=True"), || {
        let sp = rig.get_json("spotplan", name)?;
        let (s, _, _) = condition(&sp, "Ready")?;
        (s == "True" && sp["status"]["observedGeneration"] == sp["metadata"]["generation"])
            .then_some(sp)
    })
}

pub fn not_ready(rig: &Rig, name: &str, reason: &str) -> (Value, String) {
    eventually(T, &format!("SpotPlan {name} Ready=False/{reason}"), || {
        let sp = rig.get_json("spotplan", name)?;
        let (s, r, m) = condition(&sp, "Ready")?;
        (s == "False"
            && r == reason
            && sp["status"]["observedGeneration"] == sp["metadata"]["generation"])
            .then_some((sp, m))
    })
}

/// A NodeClaim as Karpenter's provisioner creates it for `nodepool`, before launch: no
/// instance-type or zone label, only requirements, and an owner reference to its NodePool (by
/// uid; none when no NodePool of that name exists).
pub fn pending_claim(rig: &Rig, name: &str, nodepool: &str, types: &[&str], zone: &str) -> String {
    let types = types
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let owner = rig
        .get_json("nodepool", nodepool)
        .map(|np| {
            format!(
                "  ownerReferences: [{{apiVersion: karpenter.sh/v1, kind: NodePool, name: {nodepool}, uid: {}, blockOwnerDeletion: true}}]\n",
                np["metadata"]["uid"].as_str().unwrap()
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: {name}
  labels: {{karpenter.sh/nodepool: {nodepool}}}
{owner}spec:
  nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
  requirements:
  - {{key: node.kubernetes.io/instance-type, operator: In, values: [{types}]}}
  - {{key: topology.kubernetes.io/zone, operator: In, values: [\"{zone}\"]}}
  - {{key: karpenter.sh/capacity-type, operator: In, values: [spot]}}
  - {{key: karpenter.sh/nodepool, operator: In, values: [{nodepool}]}}
  resources: {{requests: {{cpu: \"1\"}}}}
"
    )
}

/// An Event about a NodeClaim. [`ClaimEvent::karpenter`] is what Karpenter v1.14 writes (client-go's
/// recorder: `default` namespace, source and reporting component `karpenter`); its fields can be
/// changed to forge one.
pub struct ClaimEvent {
    /// The namespace the Event says its NodeClaim is in (NodeClaims are cluster-scoped: none).
    pub involved_namespace: Option<String>,
    pub claim: String,
    pub uid: String,
    pub reason: String,
    /// Warning, or Normal for a rebalance recommendation (as Karpenter records them).
    pub event_type: String,
    pub message: String,
    pub n: u32,
    pub namespace: String,
    pub reporter: String,
    /// The time the Event states (the API server stamps its own creation time).
    pub at: jiff::Timestamp,
}

impl ClaimEvent {
    pub fn karpenter(claim: &str, uid: &str, reason: &str, message: &str, n: u32) -> ClaimEvent {
        ClaimEvent {
            involved_namespace: None,
            claim: claim.into(),
            uid: uid.into(),
            reason: reason.into(),
            event_type: if reason == "SpotRebalanceRecommendation" {
                "Normal"
            } else {
                "Warning"
            }
            .into(),
            message: message.into(),
            n,
            namespace: "default".into(),
            reporter: "karpenter".into(),
            at: jiff::Timestamp::now(),
        }
    }

    pub fn yaml(&self) -> String {
        let at = self.at.strftime("%Y-%m-%dT%H:%M:%SZ");
        format!(
            "apiVersion: v1
kind: Event
metadata: {{name: {claim}.{lower}-{n}, namespace: {ns}}}
involvedObject: {{apiVersion: karpenter.sh/v1, kind: NodeClaim, name: {claim}, uid: {uid}{involved}}}
reason: {reason}
type: {event_type}
message: \"{message}\"
source: {{component: {reporter}}}
reportingComponent: {reporter}
firstTimestamp: \"{at}\"
lastTimestamp: \"{at}\"
count: 1
",
            claim = self.claim,
            involved = self
                .involved_namespace
                .as_ref()
                .map(|n| format!(", namespace: {n}"))
                .unwrap_or_default(),
            lower = self.reason.to_lowercase(),
            n = self.n,
            ns = self.namespace,
            uid = self.uid,
            reason = self.reason,
            event_type = self.event_type,
            message = self.message,
            reporter = self.reporter,
        )
    }
}

/// Binds the controller's roles (config/rbac: the ClusterRole, the leader-election Role, and the
/// Event Roles in `default`) to `user`, as the chart binds them to its ServiceAccount.
pub fn bind_controller_role(rig: &Rig, user: &str) {
    for file in [
        "config/rbac/clusterrole.yaml",
        "config/rbac/events-role.yaml",
    ] {
        rig.kubectl(&["apply", "-f", &root().join(file).display().to_string()]);
    }
    rig.kubectl(&[
        "create",
        "clusterrolebinding",
        user,
        "--clusterrole=spotplan-controller",
        &format!("--user={user}"),
    ]);
    for role in [
        "spotplan-leader-election",
        "spotplan-events",
        "spotplan-karpenter-events",
    ] {
        rig.kubectl(&[
            "create",
            "rolebinding",
            &format!("{user}-{role}"),
            &format!("--role={role}"),
            &format!("--user={user}"),
            "-n",
            "default",
        ]);
    }
}
