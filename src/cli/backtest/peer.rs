//! `--peer`: spot-optimizer's CLI run at each snapshot, as its users run it (`--cores --memory
//! --region --mode`, plus `--ssd-only` and `--arm-instances` when the request has them), fed the
//! snapshot from a loopback HTTP server through its `SPOT_OPTIMIZER_URL`.

use crate::cli::CliError;
use jiff::civil::Date;
use spotplan_core::Request;
use spotplan_core::types::Arch;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long one run of the peer may take.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The peer's pick (type and count) at each snapshot; None where it found nothing.
pub async fn picks(
    exe: &Path,
    req: &Request,
    files: &[(Date, PathBuf)],
) -> Result<Vec<Option<(String, u32)>>, CliError> {
    if !exe.is_file() {
        return Err(CliError::usage(
            "--peer",
            format!(
                "{} is not a file: give the spot-optimizer executable (pip install spot-optimizer)",
                exe.display()
            ),
        ));
    }
    let bodies: Vec<Vec<u8>> = files
        .iter()
        .map(|(_, p)| {
            let bytes = std::fs::read(p).map_err(|e| CliError::data("--history", e))?;
            crate::sources::file::maybe_gunzip(bytes, &p.display().to_string())
                .map_err(|e| CliError::data("--history", e))
        })
        .collect::<Result<_, _>>()?;
    let base = serve(bodies).await?;
    let dir = tempfile::tempdir().map_err(|e| CliError::data("--peer", e))?;
    let mut out = Vec::new();
    for (i, (date, _)) in files.iter().enumerate() {
        let mut cmd = Command::new(exe);
        cmd.args([
            "--cores",
            &req.vcpus.to_string(),
            "--memory",
            &req.memory_gib().to_string(),
            "--region",
            &req.region,
            "--mode",
            req.mode.as_str(),
        ])
        .env("SPOT_OPTIMIZER_URL", format!("{base}/{i}.json"))
        .env("SPOT_OPTIMIZER_DB_PATH", dir.path().join(format!("{i}.db")));
        if req.ssd_only {
            cmd.arg("--ssd-only");
        }
        if req.architectures.is_empty() || req.architectures.contains(&Arch::Arm64) {
            cmd.arg("--arm-instances");
        }
        let run = tokio::task::spawn_blocking(move || cmd.output());
        let output = tokio::time::timeout(TIMEOUT, run)
            .await
            .map_err(|_| {
                CliError::data("--peer", format!("no answer within {}s", TIMEOUT.as_secs()))
            })?
            .expect("peer task")
            .map_err(|e| CliError::data("--peer", e))?;
        if output.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&output.stdout)
                .map_err(|e| CliError::data("--peer", format!("its output is not JSON: {e}")))?;
            let ty = v["instances"]["type"].as_str().map(String::from);
            let count = v["instances"]["count"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok());
            out.push(ty.zip(count));
        } else if String::from_utf8_lossy(&output.stderr).contains("No suitable instances found") {
            out.push(None);
        } else {
            return Err(CliError::data(
                "--peer",
                format!(
                    "it failed on {}: {}",
                    date,
                    String::from_utf8_lossy(&output.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                ),
            ));
        }
    }
    Ok(out)
}

/// Serves `bodies[i]` at `/{i}.json` on 127.0.0.1 for the rest of the process.
async fn serve(bodies: Vec<Vec<u8>>) -> Result<String, CliError> {
    let bodies = std::sync::Arc::new(bodies);
    let app = axum::Router::new().route(
        "/{file}",
        axum::routing::get(
            move |axum::extract::Path(file): axum::extract::Path<String>| {
                let bodies = bodies.clone();
                async move {
                    let i: Option<usize> = file.strip_suffix(".json").and_then(|n| n.parse().ok());
                    match i.and_then(|i| bodies.get(i)) {
                        Some(b) => (axum::http::StatusCode::OK, b.clone()),
                        None => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::data("--peer", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::data("--peer", e))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}
