//! The test rig's control plane never shares a port with another: a server whose port was
//! taken between its pick and its bind gets a new one (scripts/testenv.sh).

mod parts;
mod rig;

use std::process::Command;

/// The first port offered to etcd and to kube-apiserver is one this test holds: both find it
/// taken, pick again, and the control plane comes up on other ports and answers.
#[test]
fn a_taken_port_is_picked_again() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    // The positive control: the port really is taken.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("env");
    let testenv = rig::root().join("scripts/testenv.sh");
    let out = Command::new("bash")
        .arg(&testenv)
        .arg("up")
        .env("SPOTPLAN_TESTENV_DIR", &state)
        .env("SPOTPLAN_TESTENV_TAKEN_PORT", port.to_string())
        .output()
        .unwrap();
    // Stopped however the test ends.
    struct Down<'a>(&'a std::path::Path, &'a std::path::Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(self.0)
                .arg("down")
                .env("SPOTPLAN_TESTENV_DIR", self.1)
                .output();
        }
    }
    let _down = Down(&testenv, &state);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        parts::missing(
            "a_taken_port_is_picked_again",
            "control-plane",
            &format!("scripts/testenv.sh up failed: {stderr}"),
        );
        return;
    }
    for server in ["etcd", "kube-apiserver"] {
        assert!(
            stderr.contains(&format!("{server}'s port was taken by another process")),
            "{server} did not retry: {stderr}"
        );
    }
    let read = |f: &str| {
        std::fs::read_to_string(state.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_ne!(read("etcd.port"), port.to_string());
    assert_ne!(read("apiserver.port"), port.to_string());
    let env = String::from_utf8_lossy(&out.stdout).to_string();
    let export = |key: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {key}=")))
            .map(|v| v.trim_end_matches(":$PATH").to_string())
            .unwrap_or_else(|| panic!("no {key} in {env}"))
    };
    let (kubeconfig, tools) = (export("KUBECONFIG"), export("PATH"));
    let answer = Command::new(std::path::Path::new(&tools).join("kubectl"))
        .args(["--kubeconfig", &kubeconfig, "get", "--raw", "/readyz"])
        .output();
    let answer = answer.expect("run the test tools' kubectl");
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&answer.stderr)
    );
    drop(held);
}
