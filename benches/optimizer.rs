//! Criterion benchmarks of the core: one recommendation over the full catalog, and each stage of
//! loading data. Reads ../shared/data (or $SPOTPLAN_SHARED). Run through bench/run.sh, which
//! prints the medians next to spot-optimizer's.

use criterion::{Criterion, criterion_group, criterion_main};
use spotplan::core::market::{PriceTable, SpotAdvisor};
use spotplan::core::optimizer::{Request, optimize};
use spotplan::{Catalog, MarketData};
use std::hint::black_box;
use std::path::PathBuf;

fn shared() -> PathBuf {
    std::env::var_os("SPOTPLAN_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn benches(c: &mut Criterion) {
    let advisor_bytes =
        std::fs::read(shared().join("data/spot-advisor/spot-advisor-data_2025-06-28.json"))
            .unwrap();
    let price_bytes =
        std::fs::read(shared().join("data/prices/ec2-linux-prices_2026-05.csv")).unwrap();
    let catalog = Catalog::embedded();
    let advisor = SpotAdvisor::parse(&advisor_bytes, "advisor").unwrap();
    let prices = PriceTable::parse(&price_bytes, "prices").unwrap();
    let market = MarketData::embedded(spotplan::MarketInputs {
        advisor: Some(advisor.into()),
        prices: Some(prices.into()),
        ..Default::default()
    });
    let req = Request::new(64, 256 * 1024, "us-east-1");
    optimize(&req, &market).unwrap(); // builds the region's quote row once

    c.bench_function("recommend_64vcpu_256gib_us_east_1", |b| {
        b.iter(|| optimize(black_box(&req), &market).unwrap())
    });
    let mut no_ceiling = req.clone();
    no_ceiling.max_band = Some(2);
    c.bench_function("recommend_64vcpu_256gib_us_east_1_max_band_2", |b| {
        b.iter(|| optimize(black_box(&no_ceiling), &market).unwrap())
    });
    // Loading: all regions (the controller) and one region (the CLI's path).
    let one = Some(&["us-east-1"][..]);
    c.bench_function("load_spot_advisor", |b| {
        b.iter(|| SpotAdvisor::parse(black_box(&advisor_bytes), "advisor").unwrap())
    });
    c.bench_function("load_spot_advisor_one_region", |b| {
        b.iter(|| SpotAdvisor::parse_regions(black_box(&advisor_bytes), "advisor", one).unwrap())
    });
    c.bench_function("load_prices", |b| {
        b.iter(|| PriceTable::parse(black_box(&price_bytes), "prices").unwrap())
    });
    c.bench_function("load_prices_one_region", |b| {
        b.iter(|| PriceTable::parse_regions(black_box(&price_bytes), "prices", one).unwrap())
    });
    // Joining a region's quotes (once per region per data version).
    c.bench_function("join_region_us_east_1", |b| {
        b.iter(|| {
            let m = MarketData::new(market.catalog_arc().clone(), market.inputs().clone());
            m.quotes(catalog.region("us-east-1").unwrap()).len()
        })
    });
}

criterion_group! {
    name = core;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(core);
