//! The README's quickstart, run as a newcomer would: `scripts/demo.sh` (a real control plane,
//! real Karpenter with its kwok provider, the controller), then every command of the
//! quickstart's blocks, read from README.md, in one shell, in order. The demo's on-demand floor
//! must be met by NodeClaims Karpenter launched, measured by the capacity Karpenter wrote on
//! them; the interrupt step must shift to on-demand and come back.

mod common;
mod parts;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shell commands in the README between `## Quickstart` and the next `## ` heading: every
/// line of its bash blocks, continuation lines joined, comments dropped.
fn quickstart_commands(readme: &str) -> Vec<String> {
    let start = readme
        .find("\n## Quickstart")
        .expect("README.md has a Quickstart section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line.trim() == "```bash";
            continue;
        }
        if !in_block {
            continue;
        }
        // A comment starts at two spaces and a '#', outside the command's own text.
        let code = line.split("  #").next().unwrap_or("").trim_end();
        if let Some(head) = code.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(code);
        let command = std::mem::take(&mut pending).trim().to_string();
        if !command.is_empty() {
            commands.push(command);
        }
    }
    commands
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run bash");
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stops the demo however the test ends.
struct Down<'a>(&'a Path, &'a [(&'a str, String)]);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.0.join("scripts/demo.sh"))
            .arg("down")
            .envs(self.1.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
    }
}

#[test]
fn the_quickstart_parses_into_the_commands_it_shows() {
    let readme = "# x\n\n## Quickstart\n\n```bash\neval \"$(a env)\"   # comment\nb --x 1 \\\n  --y 2\n```\n\ntext\n\n```\nnot a command\n```\n\n## Next\n\n```bash\nc\n```\n";
    assert_eq!(
        quickstart_commands(readme),
        vec!["eval \"$(a env)\"", "b --x 1   --y 2"]
    );
}

#[test]
fn the_readme_quickstart_runs_and_the_demo_meets_its_on_demand_floor() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = quickstart_commands(&readme);
    assert!(
        commands.iter().any(|c| c.starts_with("eval")) && commands.len() >= 5,
        "{commands:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, String)> = vec![
        ("SPOTPLAN_DEMO_DIR", dir.path().display().to_string()),
        ("SPOTPLAN_DEMO_PORT", "28080".to_string()),
        ("SPOTPLAN_BIN", env!("CARGO_BIN_EXE_spotplan").to_string()),
    ];
    let _down = Down(&root, &env);

    // The main job, as the README's first command.
    let demo = run(Command::new("bash")
        .arg("scripts/demo.sh")
        .current_dir(&root)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str()))));
    assert!(demo.status.success(), "scripts/demo.sh failed");
    let shown = String::from_utf8_lossy(&demo.stdout);
    assert!(
        shown.contains("demo-on-demand") && shown.contains("BAND_PREMIUM"),
        "{shown}"
    );

    // The floor, by what Karpenter wrote on its NodeClaims (capacity type and instance type;
    // vCPUs from moto's instance data, read here): the base NodePool's on-demand NodeClaims add
    // up to the 16 vCPU the SpotPlan asks for.
    let claims = run(Command::new("bash")
        .arg("-c")
        .arg(
            r#"eval "$(scripts/demo.sh env)"; kubectl get nodeclaims -l karpenter.sh/nodepool=demo-on-demand -o jsonpath='{range .items[*]}{.metadata.labels.karpenter\.sh/capacity-type} {.metadata.labels.node\.kubernetes\.io/instance-type}{"\n"}{end}'"#,
        )
        .current_dir(&root)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str()))));
    let text = String::from_utf8_lossy(&claims.stdout);
    let base_cpu: u32 = text
        .lines()
        .map(|l| {
            let (capacity, ty) = l.split_once(' ').unwrap();
            assert_eq!(capacity, "on-demand", "{l}");
            common::indep::TYPES
                .get(ty.trim())
                .unwrap_or_else(|| panic!("{ty} is not in moto's instance data"))
                .vcpus as u32
        })
        .sum();
    assert!(
        base_cpu >= 16,
        "on-demand base reached {base_cpu} vCPU of 16: {text}"
    );

    // Every quickstart command, in one shell, stopping at the first that fails.
    let mut script = String::from("set -eo pipefail\n");
    for c in &commands {
        script.push_str(&format!("echo '>>> {}'\n{c}\n", c.replace('\'', "")));
    }
    let out = run(Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&root)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str()))));
    let said = String::from_utf8_lossy(&out.stdout);
    // The demo's logs die with its directory: a failure carries their ends.
    let tail = |name: &str| {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        format!("--- {name} (last 25 lines)\n{}", last_lines(&text, 25))
    };
    if !out.status.success() {
        // The demo's directory goes with the test: its logs are kept for a look afterwards.
        let keep = std::env::temp_dir().join(format!("spotplan-quickstart-{}", std::process::id()));
        if std::fs::create_dir_all(&keep).is_ok() {
            for name in [
                "karpenter.log",
                "kwok.log",
                "controller.log",
                "lifecycle.log",
            ] {
                let _ = std::fs::copy(dir.path().join(name), keep.join(name));
            }
            let _ = std::fs::write(keep.join("quickstart.out"), said.as_bytes());
            eprintln!("the demo's logs are kept in {}", keep.display());
        }
    }
    // The end of what the commands said comes last: where a long report is cut, its tail stays.
    let said_tail = last_lines(&said, 60);
    assert!(
        out.status.success(),
        "a quickstart command failed; the last one run: {}\n{}\n{}\n{}\n--- the quickstart's last 60 lines\n{said_tail}",
        said.lines()
            .rfind(|l| l.starts_with(">>> "))
            .unwrap_or("none"),
        tail("karpenter.log"),
        tail("kwok.log"),
        tail("lifecycle.log")
    );
    for c in &commands {
        assert!(
            said.contains(&format!(">>> {}", c.replace('\'', ""))),
            "{c} did not run"
        );
    }
    // The interrupt step shifted to on-demand and came back.
    if commands.iter().any(|c| c.contains("demo.sh interrupt")) {
        assert!(said.contains("# ShiftedToOnDemand: True"), "{said}");
        assert!(said.contains("# ShiftedToOnDemand: False"), "{said}");
    }
}
