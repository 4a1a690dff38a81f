//! What a test does when a real part it needs is missing: it fails, everywhere, unless the
//! person running it asked for a partial run that names the part.
//!
//! `SPOTPLAN_PARTIAL=helm,lua5.1` (or `scripts/test.sh --partial helm,lua5.1`) lets the tests
//! that need those parts end early; `all` names every part. Each such test is appended to
//! `$SPOTPLAN_SKIP_LOG`, which `scripts/test.sh` counts and lists in its closing summary, so a
//! skipped test is never reported as one that ran.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// The parts a test can need, by the name `SPOTPLAN_PARTIAL` uses.
pub const PARTS: &[&str] = &[
    "control-plane",
    "venv",
    "helm",
    "kubeconform",
    "hadolint",
    "lua5.1",
    "promtool",
    "fleet-harness",
    "argocd-rig",
];

/// Whether the person running the tests asked to go on without `part`.
pub fn partial_allows(part: &str) -> bool {
    debug_assert!(PARTS.contains(&part), "unknown part {part}");
    std::env::var("SPOTPLAN_PARTIAL")
        .is_ok_and(|v| v.split(',').map(str::trim).any(|p| p == part || p == "all"))
}

/// `part` is missing for `test`, for the reason `why`. Fails the test, unless a partial run
/// named the part: then the skip is logged and the caller ends the test early.
pub fn missing(test: &str, part: &str, why: &str) {
    if !partial_allows(part) {
        panic!(
            "{test}: {why}\n(a part the test needs is missing; to run the other tests without it, ask for a partial run: SPOTPLAN_PARTIAL={part} or scripts/test.sh --partial {part})"
        );
    }
    eprintln!("SKIPPED (partial run without {part}): {test}: {why}");
    if let Some(log) = std::env::var_os("SPOTPLAN_SKIP_LOG") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot append to SPOTPLAN_SKIP_LOG {log:?}: {e}"));
        let why = why.replace('\n', " ");
        writeln!(f, "{test}\t{part}\t{why}").expect("write SPOTPLAN_SKIP_LOG");
    }
}

/// A tool built by `scripts/build-tools.sh` (helm, kubeconform, fleet-harness...), from
/// `$SPOTPLAN_TOOLS` or the cache. Missing, it fails `test` (the tool is the part), or returns
/// None in a partial run without it.
pub fn tool(test: &str, name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("SPOTPLAN_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
            cache.join("spotplan/tools/bin")
        });
    let path = dir.join(name);
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "{name} is not built at {} (scripts/build-tools.sh {name})",
        path.display()
    );
    missing(test, name, &why);
    None
}
