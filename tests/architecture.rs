//! The layout the compiler keeps: the core crate depends on no Kubernetes, async-runtime, HTTP
//! or AWS crate, directly or through another crate. Read from `cargo metadata`'s resolved graph
//! (normal dependencies: what ships in the core).

use std::collections::{BTreeSet, HashMap};

const FORBIDDEN: [&str; 9] = [
    "kube",
    "k8s-openapi",
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "aws-",
    "tower",
    "mio",
];

#[test]
fn core_stays_pure() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8(rustc.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(String::from))
        .expect("rustc's host triple");
    // This platform's graph: what the build already fetched, so no network is needed.
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let name_of: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let core = name_of
        .iter()
        .find(|(_, n)| **n == "spotplan-core")
        .map(|(id, _)| *id)
        .expect("the spotplan-core crate");
    // Everything the core links: normal dependencies, transitively.
    let mut seen = BTreeSet::new();
    let mut todo = vec![core];
    while let Some(id) = todo.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(name_of[dep_id]) {
                todo.push(dep_id);
            }
        }
    }
    let bad: Vec<&&str> = seen
        .iter()
        .filter(|n| FORBIDDEN.iter().any(|f| n.starts_with(f)))
        .collect();
    assert!(
        bad.is_empty(),
        "the core depends on {bad:?} (all it links: {seen:?})"
    );
    assert!(seen.contains("serde_json"), "the graph was read: {seen:?}");
    // And the shell does use them, so the check above is not vacuous.
    let shell = name_of
        .iter()
        .find(|(_, n)| **n == "spotplan")
        .map(|(id, _)| *id)
        .unwrap();
    let direct: BTreeSet<&str> = nodes[shell]["deps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| name_of[d["pkg"].as_str().unwrap()])
        .collect();
    assert!(
        direct.contains("kube") && direct.contains("tokio"),
        "{direct:?}"
    );
}
