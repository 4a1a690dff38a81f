//! Prints how long each stage of a CLI run takes (catalog, advisor, prices, join, optimize).
use spotplan::core::market::{MarketData, PriceTable, SpotAdvisor};
use std::time::Instant;
fn main() {
    let d = std::env::args().nth(1).unwrap_or("../shared/data".into());
    let t = Instant::now();
    let c = spotplan::Catalog::embedded();
    println!("catalog   {:?}", t.elapsed());
    let t = Instant::now();
    let a = SpotAdvisor::parse(
        &std::fs::read(format!(
            "{d}/spot-advisor/spot-advisor-data_2025-06-28.json"
        ))
        .unwrap(),
        "a",
    )
    .unwrap();
    println!("advisor   {:?}", t.elapsed());
    let t = Instant::now();
    let p = PriceTable::parse(
        &std::fs::read(format!("{d}/prices/ec2-linux-prices_2026-05.csv")).unwrap(),
        "p",
    )
    .unwrap();
    println!("prices    {:?}", t.elapsed());
    let t = Instant::now();
    let m = MarketData::new(c, Some(a.into()), None, Some(p.into()), None);
    let r = c.region("us-east-1").unwrap();
    m.quotes(r);
    println!("join      {:?}", t.elapsed());
    let t = Instant::now();
    let req = spotplan::Request::new(64, 256 * 1024, "us-east-1");
    spotplan::optimize(&req, c, &m).unwrap();
    println!("optimize  {:?}", t.elapsed());
}
