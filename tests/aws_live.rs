//! Live AWS data through the real AWS SDK for Rust, against real AWS-protocol servers on
//! 127.0.0.1: moto for EC2, recorded or scripted answers where moto has no such call (the Price
//! List, GetSpotPlacementScores) or where a real value or a fault is wanted. Every expectation
//! is computed here from the data files, never by the product.

mod common;
mod parts;

use common::aws::{self, Moto, PriceReply, Reply, Script};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn spotplan(env: &[(&str, String)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spotplan"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .stdin(Stdio::null());
    c.output().expect("run spotplan")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "spotplan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Real us-east-1 on-demand prices: Karpenter's table, generated from the AWS Price List API
/// (../shared/data/on-demand-prices), read independently.
fn karpenter_prices() -> BTreeMap<String, f64> {
    let v: Value = serde_json::from_slice(
        &std::fs::read(
            common::shared_dir()
                .join("data/on-demand-prices/karpenter_ondemand_linux_2026-07-20.json"),
        )
        .unwrap(),
    )
    .unwrap();
    v["prices"]["us-east-1"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, p)| (t.clone(), p.as_f64().unwrap()))
        .collect()
}

/// Price List pages: every Karpenter us-east-1 price as a product document, 100 per page, and
/// a storage product (which is not an instance price) on the first page.
fn price_list_pages() -> Vec<Vec<String>> {
    let mut docs: Vec<String> = karpenter_prices()
        .iter()
        .map(|(t, p)| aws::price_list_product("us-east-1", t, *p))
        .collect();
    docs.insert(
        0,
        serde_json::json!({
            "product": {"productFamily": "Storage", "attributes": {"volumeType": "Provisioned IOPS", "servicecode": "AmazonEC2"}, "sku": "EBS"},
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {"EBS.T": {"priceDimensions": {"EBS.T.D": {"unit": "GB-Mo", "pricePerUnit": {"USD": "0.1380000000"}}}}}},
        })
        .to_string(),
    );
    docs.chunks(100).map(|c| c.to_vec()).collect()
}

fn advisor() -> String {
    common::advisor_path().display().to_string()
}

/// moto's us-east-1 offerings by availability zone, read from its data files.
fn moto_zones(ty: &str) -> BTreeSet<String> {
    use std::io::Read;
    let path = common::shared_dir()
        .join("data/moto-5.2.5/instance_type_offerings/availability-zone/us-east-1.json.gz");
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    let v: Value = serde_json::from_slice(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|o| o["InstanceType"] == ty)
        .map(|o| o["Location"].as_str().unwrap().to_string())
        .collect()
}

/// `recommend` for 64 vCPU / 256 GiB in us-east-1, as JSON, with the advisor file at `advisor`.
fn recommend_64(advisor: &str) -> [&str; 11] {
    [
        "recommend",
        "--cores",
        "64",
        "--memory",
        "256",
        "--region",
        "us-east-1",
        "-o",
        "json",
        "--advisor-data",
        advisor,
    ]
}

/// Each zone's price factor in the seeded table: zones of one type are priced apart.
fn zone_factor(zone: &str) -> f64 {
    match zone.chars().last().unwrap() {
        'a' => 1.00,
        'b' => 1.12,
        'c' => 0.91,
        'd' => 1.27,
        'e' => 0.83,
        _ => 1.05,
    }
}

/// Live spot prices that tell types and zones apart, from moto's own server seeded with a table
/// built here (the price file's spot price of each type, times a factor per zone): every
/// candidate's zone prices are the table's, its price is their median over the zones moto
/// offers it in, and the list is ranked by those prices (each ranked $/h is the request's cost
/// on the type at its median, times its band premium, in order).
#[test]
fn live_spot_prices_tell_types_and_zones_apart() {
    let rows = common::independent_prices();
    let mut table: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    for ((region, ty), (_, spot)) in &rows {
        let Some(spot) = spot else { continue };
        if region != "us-east-1" {
            continue;
        }
        for zone in moto_zones(ty) {
            // Four decimals: what plans print, so the comparison below is exact.
            let p = (spot * zone_factor(&zone) * 1e4).round() / 1e4;
            table
                .entry(zone.clone())
                .or_default()
                .insert(ty.clone(), format!("{p:.4}"));
            want.insert((ty.clone(), zone), p);
        }
    }
    let Some((moto, _table)) = Moto::start_with_spot_prices("live-priced", &table) else {
        return;
    };
    let (pricing, _) = aws::pricing_endpoint(PriceReply::Pages(price_list_pages()));
    let cache = tempfile::tempdir().unwrap();
    let env = aws::env(&moto.url, &pricing);
    let cache_dir = cache.path().display().to_string();
    let advisor_file = advisor();
    let plan = json(&spotplan(
        &env,
        &[
            &recommend_64(&advisor_file)[..],
            &["--aws", "--cache-dir", &cache_dir],
        ]
        .concat(),
    ));
    let candidates = plan["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 15);
    let mut last_ranked = 0.0;
    for c in candidates {
        let ty = c["type"].as_str().unwrap();
        assert_eq!(c["spot_price_source"], "api", "{ty}");
        let zones = moto_zones(ty);
        let mut seeded: Vec<f64> = zones
            .iter()
            .map(|z| want[&(ty.to_string(), z.clone())])
            .collect();
        for z in c["zone_spot_usd_per_hour"].as_array().unwrap() {
            let zone = z["zone"].as_str().unwrap().to_string();
            let got = z["spot_usd_per_hour"].as_f64().unwrap();
            let w = want[&(ty.to_string(), zone.clone())];
            assert!((got - w).abs() < 1e-9, "{ty} in {zone}: {got}, seeded {w}");
        }
        assert_eq!(
            c["zone_spot_usd_per_hour"].as_array().unwrap().len(),
            zones.len(),
            "{ty}: a price for each zone moto offers it in"
        );
        seeded.sort_by(f64::total_cmp);
        let n = seeded.len();
        let median = if n % 2 == 1 {
            seeded[n / 2]
        } else {
            (seeded[n / 2 - 1] + seeded[n / 2]) / 2.0
        };
        let got = c["spot_usd_per_hour"].as_f64().unwrap();
        assert!(
            (got - median).abs() < 1e-4,
            "{ty}: {got}, median of the seeded {median}"
        );
        // The ranking follows these prices.
        let count = c["count"].as_f64().unwrap();
        let premium = c["band_premium_pct"].as_f64().unwrap_or(0.0);
        let ranked = c["ranked_usd_per_hour"].as_f64().unwrap();
        let expect = count * median * (1.0 + premium / 100.0);
        assert!(
            (ranked - expect).abs() <= 1e-3 * expect.max(1.0),
            "{ty}: ranked {ranked}, {count} x {median} x (1 + {premium}%) = {expect}"
        );
        assert!(
            ranked >= last_ranked - 1e-9,
            "{ty} ranked {ranked} after {last_ranked}: not in price order"
        );
        last_ranked = ranked;
    }
}

fn source<'a>(plan: &'a Value, kind: &str) -> &'a Value {
    plan["data"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} source in {}", plan["data"]))
}

#[test]
fn live_prices_zones_and_types_drive_the_plan() {
    let Some(moto) = Moto::start("live") else {
        return;
    };
    let (pricing, seen) = aws::pricing_endpoint(PriceReply::Pages(price_list_pages()));
    let cache = tempfile::tempdir().unwrap();
    let env = aws::env(&moto.url, &pricing);
    let advisor_file = advisor();
    let base = recommend_64(&advisor_file);
    let cache_dir = cache.path().display().to_string();
    let live = json(&spotplan(
        &env,
        &[&base[..], &["--aws", "--cache-dir", &cache_dir]].concat(),
    ));
    let od = karpenter_prices();
    let candidates = live["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 15);
    for c in candidates {
        let ty = c["type"].as_str().unwrap();
        // moto answers 0.00001 for every type and zone: that is what the plan must use.
        assert_eq!(c["spot_price_source"], "api", "{ty}");
        assert!(
            c["spot_usd_per_hour"].as_f64().unwrap() < 0.001,
            "{ty}: {}",
            c["spot_usd_per_hour"]
        );
        let zones: BTreeSet<String> = c["zones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z.as_str().unwrap().to_string())
            .collect();
        assert_eq!(zones, moto_zones(ty), "{ty}: the account's offerings");
        for z in c["zone_spot_usd_per_hour"].as_array().unwrap() {
            assert!(zones.contains(z["zone"].as_str().unwrap()));
        }
        // On-demand from the Price List where it has the type.
        if let Some(p) = od.get(ty) {
            assert_eq!(c["on_demand_price_source"], "api", "{ty}");
            assert!(
                (c["on_demand_usd_per_hour"].as_f64().unwrap() - p).abs() < 1e-4,
                "{ty}"
            );
        }
    }
    for kind in [
        "spot-price-history",
        "price-list",
        "instance-type-offerings",
        "instance-types",
    ] {
        let s = source(&live, kind);
        assert_eq!(s["region"], "us-east-1", "{s}");
        assert!(s.get("refresh_error").is_none(), "{s}");
    }
    assert!(
        seen.count("GetProducts") >= 2,
        "the Price List was read page by page"
    );
    // The region's own generation flags are used: moto's DescribeInstanceTypes marks more
    // families previous generation than the catalog's rule does.
    let prev = |plan: &Value| {
        plan["filters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["filter"] == "previous_generation")
            .unwrap()["removed"]
            .as_u64()
            .unwrap()
    };
    let offline = json(&spotplan(&[], &base));
    assert!(
        prev(&live) > prev(&offline),
        "{} vs {}",
        prev(&live),
        prev(&offline)
    );

    // `data show` names every source with its region and age.
    let out = spotplan(
        &env,
        &[
            "data",
            "show",
            "--aws",
            "--region",
            "us-east-1",
            "--advisor-data",
            &advisor(),
            "--cache-dir",
            &cache_dir,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    for line in [
        "spot-price-history: ec2:DescribeSpotPriceHistory us-east-1",
        "price-list: pricing:GetProducts us-east-1",
        "instance-types: ec2:DescribeInstanceTypes us-east-1",
    ] {
        assert!(text.contains(line), "want '{line}' in:\n{text}");
    }
}

/// The real recorded DescribeSpotPriceHistory answer for m5.large in us-east-1
/// (../shared/data/spot-prices), served in EC2's wire format and read by the SDK's own
/// deserializer: the plan holds the latest price of each zone, and the median over them.
#[test]
fn a_recorded_spot_price_history_replays_through_the_sdk() {
    let Some(moto) = Moto::start("recorded") else {
        return;
    };
    let recorded: Value = serde_json::from_slice(
        &std::fs::read(common::shared_dir().join(
            "data/spot-prices/describe-spot-price-history_m5.large_us-east-1_2021-01-08_to_2021-02-09.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let records: Vec<(String, String, String, String)> = recorded["SpotPriceHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["AvailabilityZone"].as_str().unwrap().to_string(),
                r["InstanceType"].as_str().unwrap().to_string(),
                r["SpotPrice"].as_str().unwrap().to_string(),
                r["Timestamp"].as_str().unwrap().replace("+00:00", ".000Z"),
            )
        })
        .collect();
    assert_eq!(records.len(), 250);
    // The expectation, from the file: the latest record per zone.
    let mut latest: BTreeMap<String, (String, f64)> = BTreeMap::new();
    for (zone, _, price, ts) in &records {
        let p: f64 = price.parse().unwrap();
        if latest.get(zone).is_none_or(|(t, _)| ts > t) {
            latest.insert(zone.clone(), (ts.clone(), p));
        }
    }
    let script = Script::default();
    script.set(
        "DescribeSpotPriceHistory",
        vec![Reply::Xml(aws::spot_price_history_xml(&records))],
    );
    let (ec2, _) = aws::ec2_endpoint(&moto.url, script);
    let (pricing, _) = aws::pricing_endpoint(PriceReply::Pages(price_list_pages()));
    let cache = tempfile::tempdir().unwrap();
    let plan = json(&spotplan(
        &aws::env(&ec2, &pricing),
        &[
            "recommend",
            "--aws",
            "--cores",
            "2",
            "--memory",
            "8",
            "--region",
            "us-east-1",
            "--instance-type",
            "m5.large",
            "-o",
            "json",
            "--advisor-data",
            &advisor(),
            "--cache-dir",
            &cache.path().display().to_string(),
        ],
    ));
    let c = &plan["candidates"][0];
    assert_eq!(c["type"], "m5.large");
    let offered = moto_zones("m5.large");
    let want: BTreeMap<&str, f64> = latest
        .iter()
        .filter(|(z, _)| offered.contains(*z))
        .map(|(z, (_, p))| (z.as_str(), *p))
        .collect();
    assert!(want.len() >= 3, "{want:?}");
    let got: BTreeMap<&str, f64> = c["zone_spot_usd_per_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            (
                z["zone"].as_str().unwrap(),
                z["spot_usd_per_hour"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "the latest price of each zone the type is offered in"
    );
    let mut prices: Vec<f64> = want.values().copied().collect();
    prices.sort_by(f64::total_cmp);
    let n = prices.len();
    let median = if n % 2 == 1 {
        prices[n / 2]
    } else {
        (prices[n / 2 - 1] + prices[n / 2]) / 2.0
    };
    assert!((c["spot_usd_per_hour"].as_f64().unwrap() - median).abs() < 1e-4);
    assert_eq!(c["spot_price_source"], "api");
}

/// moto's availability zone names and IDs for a region, asked of moto itself.
fn moto_zone_ids(moto: &str, region: &str) -> Vec<(String, String)> {
    let body = "Action=DescribeAvailabilityZones&Version=2016-11-15";
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-d", body])
        .args(["-H", &format!("Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/ec2/aws4_request, SignedHeaders=host, Signature=x")])
        .arg(moto)
        .output()
        .expect("curl");
    let xml = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |item: &str, tag: &str| {
        item.split(&format!("<{tag}>"))
            .nth(1)
            .and_then(|s| s.split(&format!("</{tag}>")).next())
            .map(String::from)
    };
    xml.split("<item>")
        .skip(1)
        .filter_map(|item| Some((field(item, "zoneName")?, field(item, "zoneId")?)))
        .filter(|(n, _)| n.starts_with(region))
        .collect()
}

#[test]
fn placement_scores_order_zones_and_are_cached() {
    let Some(moto) = Moto::start("placement") else {
        return;
    };
    let zones = moto_zone_ids(&moto.url, "us-east-1");
    assert!(zones.len() >= 3, "{zones:?}");
    // A score per zone ID, all different, highest for the last zone.
    let scores: Vec<(&str, &str, u8)> = zones
        .iter()
        .enumerate()
        .map(|(i, (_, id))| ("us-east-1", id.as_str(), (i + 2) as u8))
        .collect();
    let script = Script::default();
    script.set(
        "GetSpotPlacementScores",
        vec![Reply::Xml(aws::placement_scores_xml(&scores))],
    );
    let (ec2, seen) = aws::ec2_endpoint(&moto.url, script);
    let (pricing, _) = aws::pricing_endpoint(PriceReply::Pages(price_list_pages()));
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "recommend",
        "--aws",
        "--placement-scores",
        "--cores",
        "64",
        "--memory",
        "256",
        "--region",
        "us-east-1",
        "-o",
        "json",
        "--advisor-data",
        &advisor(),
        "--prices",
        &common::prices_path().display().to_string(),
        "--cache-dir",
        &cache.path().display().to_string(),
    ];
    let env = aws::env(&ec2, &pricing);
    let plan = json(&spotplan(&env, &args));
    let by_name: BTreeMap<&str, u8> = zones
        .iter()
        .zip(&scores)
        .map(|((name, _), (_, _, s))| (name.as_str(), *s))
        .collect();
    let shown: Vec<(String, u64)> = plan["placement_scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            (
                z["zone"].as_str().unwrap().to_string(),
                z["score"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown.len(), zones.len());
    for (zone, score) in &shown {
        assert_eq!(
            u64::from(by_name[zone.as_str()]),
            *score,
            "{zone}: IDs mapped to names"
        );
    }
    assert!(
        shown.windows(2).all(|w| w[0].1 >= w[1].1),
        "best first: {shown:?}"
    );
    for c in plan["candidates"].as_array().unwrap() {
        let z: Vec<u8> = c["zones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| by_name[z.as_str().unwrap()])
            .collect();
        assert!(
            z.windows(2).all(|w| w[0] >= w[1]),
            "{}: zones best first {z:?}",
            c["type"]
        );
        assert_eq!(
            c["placement_score"].as_u64(),
            z.first().map(|s| u64::from(*s))
        );
    }
    assert_eq!(seen.count("GetSpotPlacementScores"), 1);
    // The same request configuration within a day is served from the cache.
    json(&spotplan(&env, &args));
    assert_eq!(
        seen.count("GetSpotPlacementScores"),
        1,
        "a new configuration costs a daily quota"
    );
}

fn plan_with(ec2: &str, pricing: &str, cache: &std::path::Path, extra: &[&str]) -> (Value, String) {
    let (adv, prices, cache) = (
        advisor(),
        common::prices_path().display().to_string(),
        cache.display().to_string(),
    );
    let args = [
        &[
            "recommend",
            "--aws",
            "--cores",
            "16",
            "--memory",
            "64",
            "--region",
            "us-east-1",
            "-o",
            "json",
            "--advisor-data",
            &adv,
            "--prices",
            &prices,
            "--cache-dir",
            &cache,
        ][..],
        extra,
    ]
    .concat();
    let out = spotplan(&aws::env(ec2, pricing), &args);
    (json(&out), stderr(&out))
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let Some(moto) = Moto::start("retries") else {
        return;
    };
    let (pricing, _) = aws::pricing_endpoint(PriceReply::Pages(price_list_pages()));
    for (code, status) in [("RequestLimitExceeded", 503), ("InternalError", 500)] {
        let script = Script::default();
        script.set(
            "DescribeSpotPriceHistory",
            vec![
                Reply::Error(status, code, "try again"),
                Reply::Error(status, code, "try again"),
                Reply::Forward,
            ],
        );
        let (ec2, seen) = aws::ec2_endpoint(&moto.url, script);
        let cache = tempfile::tempdir().unwrap();
        let (plan, err) = plan_with(&ec2, &pricing, cache.path(), &[]);
        assert_eq!(
            seen.count("DescribeSpotPriceHistory"),
            3,
            "{code}: two failures, then the answer"
        );
        assert!(!err.contains("spot-price-history"), "{code}: {err}");
        assert_eq!(plan["candidates"][0]["spot_price_source"], "api", "{code}");
    }
}

#[test]
fn a_hung_endpoint_times_out_and_the_files_stand_in() {
    let Some(moto) = Moto::start("hung") else {
        return;
    };
    let script = Script::default();
    script.set("DescribeSpotPriceHistory", vec![Reply::Hang]);
    let (ec2, _) = aws::ec2_endpoint(&moto.url, script);
    let (pricing, _) = aws::pricing_endpoint(PriceReply::Pages(price_list_pages()));
    let cache = tempfile::tempdir().unwrap();
    // Each attempt gets a third of the timeout: enough for moto's slower answers.
    let (plan, err) = plan_with(&ec2, &pricing, cache.path(), &["--aws-timeout", "9s"]);
    assert!(
        err.contains("spot-price-history in us-east-1: ec2:DescribeSpotPriceHistory")
            && err.contains("(using the last good copy, else the files)"),
        "{err}"
    );
    let c = &plan["candidates"][0];
    assert_eq!(c["spot_price_source"], "file", "the price file stands in");
    let s = source(&plan, "spot-price-history");
    assert!(
        s["refresh_error"]
            .as_str()
            .unwrap()
            .contains("DescribeSpotPriceHistory"),
        "{s}"
    );
    // The other sources are live.
    assert!(
        source(&plan, "instance-type-offerings")
            .get("refresh_error")
            .is_none()
    );
}

#[test]
fn access_denied_degrades_that_field_only_and_names_the_permission() {
    let Some(moto) = Moto::start("denied") else {
        return;
    };
    let (ec2, _) = aws::ec2_endpoint(&moto.url, Script::default());
    let (pricing, _) = aws::pricing_endpoint(PriceReply::Error(400, "AccessDeniedException"));
    let cache = tempfile::tempdir().unwrap();
    let (plan, err) = plan_with(&ec2, &pricing, cache.path(), &[]);
    assert!(err.contains("grant pricing:GetProducts"), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("pricing:GetProducts"))
            .count(),
        1,
        "{err}"
    );
    let c = &plan["candidates"][0];
    assert_eq!(
        c["on_demand_price_source"], "file",
        "the price file stands in"
    );
    assert_eq!(c["spot_price_source"], "api", "spot prices stay live");
    let s = source(&plan, "price-list");
    assert!(
        s["refresh_error"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{s}"
    );
}

#[test]
fn bad_data_never_replaces_the_last_good() {
    let Some(moto) = Moto::start("baddata") else {
        return;
    };
    let (pricing, _) = aws::pricing_endpoint(PriceReply::Pages(price_list_pages()));
    let cache = tempfile::tempdir().unwrap();
    let (ec2, _) = aws::ec2_endpoint(&moto.url, Script::default());
    let (good, _) = plan_with(&ec2, &pricing, cache.path(), &[]);
    assert_eq!(good["candidates"][0]["spot_price_source"], "api");
    // The next answer has one record where the last good one had thousands.
    let script = Script::default();
    let one = vec![(
        "us-east-1a".to_string(),
        "m5.large".to_string(),
        "0.5".to_string(),
        "2026-11-01T00:00:00.000Z".to_string(),
    )];
    script.set(
        "DescribeSpotPriceHistory",
        vec![Reply::Xml(aws::spot_price_history_xml(&one))],
    );
    let (ec2, seen) = aws::ec2_endpoint(&moto.url, script);
    let (plan, err) = plan_with(&ec2, &pricing, cache.path(), &["--cache-ttl", "1s"]);
    // The spot TTL follows --cache-ttl: a second later the cached copy is due for a refresh.
    assert_eq!(seen.count("DescribeSpotPriceHistory"), 1, "{err}");
    assert!(
        err.contains("refused the answer") && err.contains("keeping the last good data"),
        "{err}"
    );
    let s = source(&plan, "spot-price-history");
    assert_eq!(s["from_cache"], true, "{s}");
    assert_eq!(
        plan["candidates"][0]["spot_usd_per_hour"], good["candidates"][0]["spot_usd_per_hour"],
        "the last good prices are in use"
    );
}

#[test]
fn no_credentials_answers_at_once_and_uses_the_files() {
    let env: Vec<(&str, String)> = vec![
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
    ];
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = spotplan(
        &env,
        &[
            "recommend",
            "--aws",
            "--cores",
            "16",
            "--memory",
            "64",
            "--region",
            "us-east-1",
            "-o",
            "json",
            "--advisor-data",
            &advisor(),
            "--prices",
            &common::prices_path().display().to_string(),
            "--cache-dir",
            &cache.path().display().to_string(),
        ],
    );
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(took < Duration::from_secs(5), "took {took:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("warning: --aws: no AWS credentials")
            && err.contains("using the Spot Advisor and price files instead"),
        "{err}"
    );
    let plan = json(&out);
    assert_eq!(plan["candidates"][0]["spot_price_source"], "file");
    let kinds: Vec<&str> = plan["data"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["spot-advisor", "price-file"]);
}

mod rig;

fn refreshes(c: &rig::Controller) -> f64 {
    c.metric_sum("spotplan_market_data_refreshes_total")
}

/// Spot price calls made across one more refresh.
fn spot_calls_per_refresh(c: &rig::Controller) -> f64 {
    let wait_refresh = |after: f64| {
        rig::eventually(Duration::from_secs(60), "a refresh", || {
            (refreshes(c) > after).then_some(())
        })
    };
    let n = refreshes(c);
    wait_refresh(n);
    let before = c.metric_sum("spotplan_aws_api_calls_total{call=\"DescribeSpotPriceHistory\"}");
    wait_refresh(n + 1.0);
    c.metric_sum("spotplan_aws_api_calls_total{call=\"DescribeSpotPriceHistory\"}") - before
}

fn spot_plan(name: &str, region: &str) -> String {
    format!(
        "apiVersion: spotplan.dev/v1alpha1\nkind: SpotPlan\nmetadata: {{name: {name}}}\nspec:\n  region: {region}\n  resources: {{cpu: \"32\", memory: 128Gi}}\n  nodePool:\n    nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}\n"
    )
}

/// The controller with live data on the test control plane: the plans use moto's prices and
/// offerings, their status lists every source per region, and the API calls of a refresh are
/// per region in use, not per plan.
#[test]
fn the_controller_refreshes_live_data_once_per_region() {
    let Some(moto) = Moto::start("controller-live") else {
        return;
    };
    let Some(rig) = rig::Rig::start("controller-live") else {
        return;
    };
    let (pricing, _) = aws::pricing_endpoint(PriceReply::Pages(price_list_pages()));
    let env = aws::env(&moto.url, &pricing);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _current = rig::keep_current(vec![rig.advisor.clone(), rig.prices.clone()]);
    let c = rig.controller_env(
        &rig.kubeconfig_for("admin"),
        &env_refs,
        &["--aws", "--refresh-interval", "4s", "--aws-timeout", "20s"],
    );
    for (name, region) in [
        ("east-a", "us-east-1"),
        ("east-b", "us-east-1"),
        ("west-a", "us-west-2"),
    ] {
        assert!(rig.apply(&spot_plan(name, region)).0);
    }
    let ready = |name: &str| {
        let start = Instant::now();
        loop {
            let sp = rig.get_json("spotplan", name);
            if let Some(sp) =
                sp.filter(|sp| rig::condition(sp, "Ready").is_some_and(|c| c.0 == "True"))
            {
                return sp;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{name} not Ready: {:?}\n{}",
                rig.get_json("spotplan", name).map(|s| s["status"].clone()),
                c.log_text()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let sp = ready("east-a");
    ready("east-b");
    ready("west-a");
    let sources = sp["status"]["dataSources"].as_array().unwrap();
    for kind in [
        "spot-price-history",
        "price-list",
        "instance-type-offerings",
        "instance-types",
    ] {
        let s = sources
            .iter()
            .find(|s| s["source"] == kind && s["region"] == "us-east-1")
            .unwrap_or_else(|| panic!("no {kind} for us-east-1 in {sources:?}"));
        assert_eq!(s["fresh"], true, "{s}");
    }
    assert!(
        sources
            .iter()
            .all(|s| s.get("region").is_none_or(|r| r == "us-east-1")),
        "a plan lists its own region's sources: {sources:?}"
    );
    let west = rig.get_json("spotplan", "west-a").unwrap();
    assert!(
        west["status"]["dataSources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["region"] == "us-west-2"),
        "{}",
        west["status"]
    );
    let first = &sp["status"]["plan"]["instanceTypes"][0];
    assert!(
        first["spotUsdPerHour"].as_f64().unwrap() < 0.001,
        "moto's price: {first}"
    );
    let per_refresh_3 = spot_calls_per_refresh(&c);
    assert!(
        per_refresh_3 >= 2.0,
        "a call per region at least: {per_refresh_3}"
    );

    // Five more plans in the same two regions: a refresh makes exactly as many calls.
    for i in 0..5 {
        let region = if i % 2 == 0 { "us-east-1" } else { "us-west-2" };
        assert!(rig.apply(&spot_plan(&format!("more-{i}"), region)).0);
    }
    for i in 0..5 {
        ready(&format!("more-{i}"));
    }
    let per_refresh_8 = spot_calls_per_refresh(&c);
    assert_eq!(
        per_refresh_8, per_refresh_3,
        "calls per refresh grew with the plans"
    );
    assert!(c.log_text().contains("market data refreshed"));
}
