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
    let market = MarketData::new(
        catalog,
        Some(advisor.into()),
        None,
        Some(prices.into()),
        None,
    );
    let req = Request::new(64, 256 * 1024, "us-east-1");
    optimize(&req, catalog, &market).unwrap(); // builds the region's quote row once

    c.bench_function("recommend_64vcpu_256gib_us_east_1", |b| {
        b.iter(|| optimize(black_box(&req), catalog, &market).unwrap())
    });
    let mut no_ceiling = req.clone();
    no_ceiling.max_band = Some(2);
    c.bench_function("recommend_64vcpu_256gib_us_east_1_max_band_2", |b| {
        b.iter(|| optimize(black_box(&no_ceiling), catalog, &market).unwrap())
    });
    c.bench_function("load_catalog", |b| {
        b.iter(|| Catalog::from_json(black_box(spotplan::core::catalog::EMBEDDED_JSON)).unwrap())
    });
    c.bench_function("load_spot_advisor", |b| {
        b.iter(|| SpotAdvisor::parse(black_box(&advisor_bytes), "advisor").unwrap())
    });
    c.bench_function("load_prices", |b| {
        b.iter(|| PriceTable::parse(black_box(&price_bytes), "prices").unwrap())
    });
}

criterion_group! {
    name = core;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(core);
