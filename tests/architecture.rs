//! The layout the compiler keeps: the core crate depends on no Kubernetes, async-runtime, HTTP
//! or AWS crate, directly or through another crate; the API crate depends on Kubernetes *types*
//! only. Read from `cargo metadata`'s resolved graph (normal dependencies: what ships). And the
//! architecture text names only paths that exist.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// What a pure crate must never link: clients, runtimes, HTTP, AWS.
const IMPURE: [&str; 10] = [
    "kube-client",
    "kube-runtime",
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "aws-",
    "tower",
    "mio",
    "rustls",
];

/// The resolved graph of this platform: (package names by id, resolve nodes by id).
struct Graph {
    meta: serde_json::Value,
}

impl Graph {
    fn read() -> Graph {
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
        Graph {
            meta: serde_json::from_slice(&out.stdout).unwrap(),
        }
    }

    fn names(&self) -> HashMap<&str, &str> {
        self.meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect()
    }

    fn nodes(&self) -> HashMap<&str, &serde_json::Value> {
        self.meta["resolve"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_str().unwrap(), n))
            .collect()
    }

    fn id(&self, krate: &str) -> &str {
        self.names()
            .into_iter()
            .find(|(_, n)| *n == krate)
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("the {krate} crate"))
    }

    /// Everything `krate` links: normal dependencies, transitively.
    fn links(&self, krate: &str) -> BTreeSet<&str> {
        let (names, nodes) = (self.names(), self.nodes());
        let mut seen = BTreeSet::new();
        let mut todo = vec![self.id(krate)];
        while let Some(id) = todo.pop() {
            for dep in nodes[id]["deps"].as_array().unwrap() {
                let normal = dep["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null());
                let dep_id = dep["pkg"].as_str().unwrap();
                if normal && seen.insert(names[dep_id]) {
                    todo.push(dep_id);
                }
            }
        }
        seen
    }

    /// The direct dependencies of `krate`.
    fn direct(&self, krate: &str) -> BTreeSet<&str> {
        let (names, nodes) = (self.names(), self.nodes());
        nodes[self.id(krate)]["deps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| names[d["pkg"].as_str().unwrap()])
            .collect()
    }
}

fn forbidden<'a>(links: &BTreeSet<&'a str>, also: &[&str]) -> Vec<&'a str> {
    links
        .iter()
        .filter(|n| IMPURE.iter().chain(also).any(|f| n.starts_with(f)))
        .copied()
        .collect()
}

#[test]
fn core_stays_pure() {
    let g = Graph::read();
    let core = g.links("spotplan-core");
    let bad = forbidden(&core, &["kube", "k8s-openapi"]);
    assert!(
        bad.is_empty(),
        "the core depends on {bad:?} (all it links: {core:?})"
    );
    assert!(core.contains("serde_json"), "the graph was read: {core:?}");
    // And the shell does use them, so the check above is not vacuous.
    let shell = g.direct("spotplan");
    assert!(
        shell.contains("kube") && shell.contains("tokio"),
        "{shell:?}"
    );
    let shell_links = g.links("spotplan");
    assert!(
        !forbidden(&shell_links, &[]).is_empty(),
        "the forbidden list matches what the shell links: {shell_links:?}"
    );
}

#[test]
fn the_api_crate_takes_kubernetes_types_and_nothing_that_talks() {
    let g = Graph::read();
    let api = g.links("spotplan-api");
    let bad = forbidden(&api, &[]);
    assert!(
        bad.is_empty(),
        "spotplan-api depends on {bad:?} (all it links: {api:?})"
    );
    assert!(
        api.contains("kube-core") && api.contains("k8s-openapi") && api.contains("spotplan-core"),
        "the API crate has the types it needs: {api:?}"
    );
    // The shell reaches the API crate, never the other way round.
    assert!(g.direct("spotplan").contains("spotplan-api"));
    assert!(!api.contains("spotplan"));
}

/// Every path the architecture text names (in backticks, or as a link target) exists: the text
/// is kept true with the code.
#[test]
fn every_path_the_architecture_text_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Architecture"))
        .expect("README has an Architecture section");
    let mut named = BTreeSet::new();
    for text in [doc.as_str(), section] {
        for quoted in text.split('`').skip(1).step_by(2) {
            named.insert(quoted.to_string());
        }
        for link in text.split("](").skip(1) {
            named.insert(link.split(')').next().unwrap().to_string());
        }
    }
    // A path: a folder (`x/`), a file with an extension of the tree's, or a path from the root.
    let extensions = [
        ".rs", ".md", ".sh", ".py", ".yaml", ".json", ".toml", ".lua", ".svg",
    ];
    let roots = [
        "src/", "crates/", "tests/", "docs/", "scripts/", "charts/", "config/", "tools/",
    ];
    let paths: Vec<&String> = named
        .iter()
        .filter(|p| !p.contains(' ') && !p.contains("://"))
        .filter(|p| {
            p.ends_with('/')
                || extensions.iter().any(|e| p.ends_with(e))
                || roots.iter().any(|r| p.starts_with(r))
        })
        .collect();
    assert!(paths.len() > 20, "the check reads the text: {paths:?}");
    // Module paths are written relative to their crate's `src/` in the tables; a bare file name
    // stands in the row of its module, so it must exist in the tree.
    let bases = [
        "",
        "docs/",
        "src/",
        "crates/spotplan-core/",
        "crates/spotplan-core/src/",
        "crates/spotplan-api/src/",
    ];
    let mut files = BTreeSet::new();
    let mut todo = vec![root.join("src"), root.join("crates")];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            files.insert(e.file_name().to_string_lossy().to_string());
        }
    }
    let missing: Vec<&&String> = paths
        .iter()
        .filter(|p| {
            let p = p.trim_end_matches('/');
            let found = if p.contains('/') {
                bases.iter().any(|b| root.join(format!("{b}{p}")).exists())
            } else {
                files.contains(p)
            };
            !found
        })
        .collect();
    assert!(missing.is_empty(), "named but missing: {missing:?}");
}
