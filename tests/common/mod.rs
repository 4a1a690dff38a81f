//! Helpers shared by the integration tests: where the real data snapshots are, and an
//! independent reading of them (deliberately not the product's parsers).
#![allow(dead_code)]

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

/// Under CI a missing part is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// region -> type -> (savings %, band), read independently.
pub type AdvisorTable = HashMap<String, HashMap<String, (i64, u64)>>;
/// (region, type) -> (on-demand, quoted spot), read independently.
pub type PriceRows = HashMap<(String, String), (f64, Option<f64>)>;

/// The Spot Advisor file read with serde_json::Value.
pub fn independent_advisor() -> AdvisorTable {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(advisor_path()).unwrap()).unwrap();
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
    let catalog = spotplan::Catalog::embedded();
    let advisor = SpotAdvisor::parse(&std::fs::read(advisor_path()).unwrap(), "advisor").unwrap();
    let prices = PriceTable::parse(&std::fs::read(prices_path()).unwrap(), "prices").unwrap();
    spotplan::MarketData::new(
        catalog,
        Some(advisor.into()),
        None,
        Some(prices.into()),
        None,
    )
}
