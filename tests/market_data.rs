//! Market data against the real snapshots in ../shared/data, and the loader's cache, refresh and
//! last-good behaviour against a real HTTP server on 127.0.0.1.

mod common;
mod parts;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use spotplan::core::market::{DataError, PriceTable, SpotAdvisor};
use spotplan::core::optimizer::{Request, optimize};
use spotplan::{Loader, Source};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn real_snapshots_load() {
    let a = SpotAdvisor::parse(&std::fs::read(common::advisor_path()).unwrap(), "advisor").unwrap();
    assert_eq!(a.regions.len(), 33);
    assert_eq!(a.regions["us-east-1"].len(), 894);
    let p = PriceTable::parse(&std::fs::read(common::prices_path()).unwrap(), "prices").unwrap();
    assert_eq!(p.entry_count(), 22_834);
    assert_eq!(
        p.get("us-east-1", "m5.large").map(|x| x.on_demand),
        Some(0.096)
    );
}

#[test]
fn coverage_gaps_are_reported_not_hidden() {
    let catalog = spotplan::Catalog::embedded();
    let market = common::market();
    let east = catalog.region("us-east-1").unwrap();
    let spot_types: Vec<usize> = (0..catalog.len())
        .filter(|&i| catalog.types()[i].spot && catalog.types()[i].offered_in(east))
        .collect();
    let unknown = spot_types
        .iter()
        .filter(|&&i| market.quote(east, i).band.is_none())
        .count();
    // DOMAIN.md: 475 of 1,353 spot-capable types in us-east-1 have no band in the 2025-06 file.
    assert_eq!((spot_types.len(), unknown), (1353, 475));

    // By default an interruption ceiling is in force, and it needs a band: the gap is left out
    // and said.
    let mut req = Request::new(64, 256 * 1024, "us-east-1");
    let plan = optimize(&req, &market).unwrap();
    assert_eq!(plan.unknown_band_types, 0);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("types that passed the other filters have no Spot Advisor band in us-east-1 and were left out")),
        "{:?}",
        plan.notes
    );
    assert!(
        plan.candidates
            .iter()
            .all(|c| c.interruption_band.is_some())
    );
    req.max_band = Some(4);
    let plan = optimize(&req, &market).unwrap();
    assert_eq!(
        plan.unknown_band_types, 0,
        "a max band excludes unknown types"
    );

    // Only types without a band fit: the default ceiling relaxes to any band, and says so.
    let unknown_type = spot_types
        .iter()
        .map(|&i| &catalog.types()[i])
        .find(|t| {
            market
                .quote(east, catalog.index_of(&t.name).unwrap())
                .band
                .is_none()
                && t.arch().is_some()
        })
        .unwrap();
    let mut req = Request::new(unknown_type.vcpus, unknown_type.memory_mib, "us-east-1");
    req.mode = spotplan::core::types::Mode::Latency;
    req.instance_types = vec![unknown_type.name.to_string()];
    let plan = optimize(&req, &market).unwrap();
    assert_eq!(plan.unknown_band_types, 1);
    assert_eq!(plan.interruption_ceiling.band, None);
    assert_eq!(plan.candidates[0].interruption_label, "unknown");
    assert!(plan.notes.iter().any(|n| n.contains("relaxed it to any band, types with no Spot Advisor band included")), "{:?}", plan.notes);
    assert!(plan.notes.iter().any(|n| n.contains("ranked as band 4")));
}

#[test]
fn without_prices_ranking_falls_back_to_band_savings_waste() {
    let advisor =
        SpotAdvisor::parse(&std::fs::read(common::advisor_path()).unwrap(), "advisor").unwrap();
    let market = spotplan::MarketData::embedded(spotplan::MarketInputs {
        advisor: Some(advisor.into()),
        ..Default::default()
    });
    let plan = optimize(&Request::new(64, 256 * 1024, "us-east-1"), &market).unwrap();
    assert!(!plan.has_prices);
    assert_eq!(
        plan.ranking,
        spotplan::core::plan::Ranking::BandSavingsWaste
    );
    assert!(plan.notes.iter().any(|n| n.contains("no prices")));
    let bands: Vec<u8> = plan
        .candidates
        .iter()
        .map(|c| c.interruption_band.unwrap_or(4))
        .collect();
    assert!(bands.windows(2).all(|w| w[0] <= w[1]), "{bands:?}");
}

/// Serves whatever bytes the test puts in `body` at /advisor.json, counting requests.
struct Server {
    url: String,
    body: Arc<Mutex<(StatusCode, Vec<u8>)>>,
    hits: Arc<Mutex<usize>>,
}

async fn server(initial: Vec<u8>) -> Server {
    let body = Arc::new(Mutex::new((StatusCode::OK, initial)));
    let hits = Arc::new(Mutex::new(0));
    let (b, h) = (body.clone(), hits.clone());
    let app = Router::new().route(
        "/advisor.json",
        get(move || {
            let (b, h) = (b.clone(), h.clone());
            async move {
                *h.lock().unwrap() += 1;
                b.lock().unwrap().clone()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/advisor.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, body, hits }
}

#[tokio::test]
async fn url_is_cached_and_refreshed_after_the_ttl() {
    let real = std::fs::read(common::advisor_path()).unwrap();
    let s = server(real.clone()).await;
    let cache = tempfile::tempdir().unwrap();
    let source = Source::parse(&s.url);

    let loader = Loader::new(Some(cache.path().into()), Duration::from_secs(3600));
    let first = loader
        .load::<SpotAdvisor>(&source, None, None)
        .await
        .unwrap();
    assert!(!first.provenance.from_cache);
    let second = loader
        .load::<SpotAdvisor>(&source, None, None)
        .await
        .unwrap();
    assert!(
        second.provenance.from_cache,
        "within the TTL the cache serves"
    );
    assert_eq!(second.provenance.as_of, first.provenance.as_of);
    assert_eq!(*s.hits.lock().unwrap(), 1);

    let expired = Loader::new(Some(cache.path().into()), Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let third = expired
        .load::<SpotAdvisor>(&source, None, None)
        .await
        .unwrap();
    assert!(
        !third.provenance.from_cache,
        "past the TTL it fetches again"
    );
    assert_eq!(*s.hits.lock().unwrap(), 2);
}

#[tokio::test]
async fn bad_new_data_keeps_the_last_good() {
    let real = std::fs::read(common::advisor_path()).unwrap();
    let s = server(real.clone()).await;
    let cache = tempfile::tempdir().unwrap();
    let source = Source::parse(&s.url);
    let loader = Loader::new(Some(cache.path().into()), Duration::from_millis(1));
    let good = loader
        .load::<SpotAdvisor>(&source, None, None)
        .await
        .unwrap();

    // Truncated JSON.
    s.body.lock().unwrap().1 = real[..real.len() / 3].to_vec();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let kept = loader
        .load::<SpotAdvisor>(&source, None, None)
        .await
        .unwrap();
    assert!(kept.provenance.from_cache);
    assert_eq!(kept.data, good.data);
    let err = kept.provenance.refresh_error.unwrap();
    assert!(
        err.message.contains(&s.url) && err.message.contains("not valid JSON"),
        "{err}"
    );
    assert_eq!(err.category, "InvalidJson");

    // Parses, but lost most regions: refused against the data in use.
    let mut v: serde_json::Value = serde_json::from_slice(&real).unwrap();
    let regions = v["spot_advisor"].as_object_mut().unwrap();
    let keep: Vec<String> = regions.keys().take(3).cloned().collect();
    regions.retain(|k, _| keep.contains(k));
    s.body.lock().unwrap().1 = serde_json::to_vec(&v).unwrap();
    let err = loader
        .load::<SpotAdvisor>(&source, None, Some(&good.data))
        .await
        .unwrap();
    let msg = err.provenance.refresh_error.expect("refused");
    assert!(
        msg.message
            .contains("has 3 regions where the last good data had 33"),
        "{msg}"
    );
    assert_eq!(msg.category, "DataShrunk");
    assert_eq!(err.data, good.data);

    // Server errors: the cached copy serves, with the reason.
    *s.body.lock().unwrap() = (StatusCode::INTERNAL_SERVER_ERROR, b"oops".to_vec());
    let kept = loader
        .load::<SpotAdvisor>(&source, None, None)
        .await
        .unwrap();
    let err = kept.provenance.refresh_error.unwrap();
    assert!(err.message.contains("500"), "{err}");
    assert_eq!(err.category, "Unreadable");

    // Without a cache there is nothing to fall back on: the error names the URL.
    let empty = tempfile::tempdir().unwrap();
    let cold = Loader::new(Some(empty.path().into()), Duration::from_secs(60));
    let e = cold
        .load::<SpotAdvisor>(&source, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, DataError::Io { .. }) && e.to_string().contains(&s.url),
        "{e}"
    );
}

#[tokio::test]
async fn files_refuse_shrunk_data_and_read_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let loader = Loader::new(None, Duration::from_secs(60));
    let good = loader
        .load::<PriceTable>(&Source::File(common::prices_path()), None, None)
        .await
        .unwrap();
    let text = std::fs::read_to_string(common::prices_path()).unwrap();
    let small: String = text.lines().take(100).map(|l| format!("{l}\n")).collect();
    let path = dir.path().join("prices.csv");
    std::fs::write(&path, small).unwrap();
    let e = loader
        .load::<PriceTable>(&Source::File(path.clone()), None, Some(&good.data))
        .await
        .unwrap_err();
    assert!(matches!(e, DataError::Shrunk { .. }), "{e}");
    assert!(e.to_string().starts_with(&path.display().to_string()));

    // The air-gapped chart ships gzip files: the loader reads them as they are.
    let gz = dir.path().join("advisor.json.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(common::advisor_path()).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let a = loader
        .load::<SpotAdvisor>(&Source::File(gz), None, None)
        .await
        .unwrap();
    assert_eq!(a.data.regions.len(), 33);
}
