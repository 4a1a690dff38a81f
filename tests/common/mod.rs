//! Helpers shared by the integration tests: where the real data snapshots are, and an
//! independent reading of them (deliberately not the product's parsers).
#![allow(dead_code)]

pub mod aws;
pub mod indep;

use std::collections::HashMap;
use std::path::PathBuf;

/// `../shared` beside the clone, or `$SPOTPLAN_SHARED`.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("SPOTPLAN_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        });
    assert!(
        dir.join("data").is_dir(),
        "the shared data snapshots are not at {} (set SPOTPLAN_SHARED)",
        dir.display()
    );
    dir
}

pub fn advisor_path() -> PathBuf {
    shared_dir().join("data/spot-advisor/spot-advisor-data_2025-06-28.json")
}

pub fn prices_path() -> PathBuf {
    shared_dir().join("data/prices/ec2-linux-prices_2026-05.csv")
}

use crate::parts;

/// region -> type -> (savings %, band), read independently.
pub type AdvisorTable = HashMap<String, HashMap<String, (i64, u64)>>;
/// (region, type) -> (on-demand, quoted spot), read independently.
pub type PriceRows = HashMap<(String, String), (f64, Option<f64>)>;

/// The Spot Advisor file read with serde_json::Value.
pub fn independent_advisor() -> AdvisorTable {
    independent_advisor_of(&std::fs::read(advisor_path()).unwrap())
}

/// A Spot Advisor file's bytes (gzip or not) read with serde_json::Value.
pub fn independent_advisor_of(bytes: &[u8]) -> AdvisorTable {
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
        out
    } else {
        bytes.to_vec()
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut out = HashMap::new();
    for (region, by_os) in v["spot_advisor"].as_object().unwrap() {
        let mut m = HashMap::new();
        for (ty, e) in by_os["Linux"].as_object().unwrap() {
            m.insert(
                ty.clone(),
                (e["s"].as_i64().unwrap(), e["r"].as_u64().unwrap()),
            );
        }
        out.insert(region.clone(), m);
    }
    out
}

/// The price CSV split by hand: (region, type) -> (on-demand, spot if quoted).
pub fn independent_prices() -> PriceRows {
    let text = std::fs::read_to_string(prices_path()).unwrap();
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let spot = if cols[3].is_empty() {
            None
        } else {
            Some(cols[3].parse().unwrap())
        };
        out.insert(
            (cols[0].to_string(), cols[1].to_string()),
            (cols[2].parse().unwrap(), spot),
        );
    }
    out
}

/// Spot $/h of one instance: quoted, else on-demand x (1 - advisor savings%).
pub fn independent_spot_price(
    prices: &PriceRows,
    advisor: &AdvisorTable,
    region: &str,
    ty: &str,
) -> Option<f64> {
    let (od, spot) = *prices.get(&(region.to_string(), ty.to_string()))?;
    spot.or_else(|| {
        let (s, _) = advisor.get(region)?.get(ty)?;
        Some(od * (1.0 - *s as f64 / 100.0))
    })
}

/// The product's view of the same files, loaded through the library.
pub fn market() -> spotplan::MarketData {
    use spotplan::core::market::{PriceTable, SpotAdvisor};
    let advisor = SpotAdvisor::parse(&std::fs::read(advisor_path()).unwrap(), "advisor").unwrap();
    let prices = PriceTable::parse(&std::fs::read(prices_path()).unwrap(), "prices").unwrap();
    spotplan::MarketData::embedded(spotplan::MarketInputs {
        advisor: Some(advisor.into()),
        prices: Some(prices.into()),
        ..Default::default()
    })
}

/// The same advisor file without any price: what a real account sees with neither live data nor
/// a price file.
pub fn market_without_prices() -> spotplan::MarketData {
    use spotplan::core::market::SpotAdvisor;
    let advisor = SpotAdvisor::parse(&std::fs::read(advisor_path()).unwrap(), "advisor").unwrap();
    spotplan::MarketData::embedded(spotplan::MarketInputs {
        advisor: Some(advisor.into()),
        ..Default::default()
    })
}

/// The Python interpreter of the test venv (moto, spot-optimizer, ...), from `$SPOTPLAN_PYTHON`
/// as scripts/test.sh exports it. Its absence fails the test, unless a partial run names the
/// `venv` part (see `parts`).
pub fn venv_python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("SPOTPLAN_PYTHON").map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        other => {
            let why = format!(
                "{test}: needs the test venv's python in SPOTPLAN_PYTHON (got {other:?}); run scripts/test.sh or scripts/build-tools.sh python"
            );
            parts::missing(test, "venv", &why);
            None
        }
    }
}

/// Serves `path` at `http://127.0.0.1:<port>/<file name>` from a background thread for the rest
/// of the test process. Returns the URL.
pub fn serve_file(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                &format!("/{name}"),
                axum::routing::get(move || {
                    let b = bytes.clone();
                    async move { b }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}/{name}", listener.local_addr().unwrap()))
                .unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// `spotplan backtest --history <the shared series> --from FROM -o json --prices <the shared
/// CSV> ARGS`, parsed.
pub fn backtest_json(from: &str, args: &[String]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spotplan"))
        .arg("backtest")
        .arg("--history")
        .arg(history_dir())
        .args(["--from", from, "-o", "json", "--prices"])
        .arg(prices_path())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spotplan backtest {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The dated Spot Advisor snapshots in `../shared/data/spot-advisor/history` from `from`
/// (YYYY-MM-DD) on, as (date, path), oldest first: a backtest's snapshot indexes.
pub fn history_files(from: &str) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(history_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let date = name
                .strip_prefix("spot-advisor-data_")?
                .get(..10)?
                .to_string();
            (date.as_str() >= from).then_some((date, p))
        })
        .collect();
    v.sort();
    v
}

pub fn history_dir() -> PathBuf {
    shared_dir().join("data/spot-advisor/history")
}

/// The instance types a NodePool's requirements list (`node.kubernetes.io/instance-type In`),
/// read from its JSON; empty without that requirement.
pub fn nodepool_types(np: &serde_json::Value) -> Vec<String> {
    np["spec"]["template"]["spec"]["requirements"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["key"] == "node.kubernetes.io/instance-type")
        .and_then(|r| r["values"].as_array())
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}
