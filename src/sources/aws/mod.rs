//! Live market data from AWS, behind the same interface as the files: spot prices per zone
//! (`DescribeSpotPriceHistory`), the account's offerings per zone
//! (`DescribeInstanceTypeOfferings`), instance types (`DescribeInstanceTypes`), on-demand prices
//! (the Price List, `GetProducts`) and, on request, spot placement scores
//! (`GetSpotPlacementScores`).
//!
//! Per source and region, in this order: a last good copy (in memory, or on disk) younger than
//! the source's TTL is used without a call; otherwise the API is called, and its answer replaces
//! the last good copy only if it parses and has not lost most of it. A failed or refused call
//! keeps the last good copy, marked with the error; with none, the field falls back to the files
//! (and then to estimates) in the core's documented precedence. An access-denied answer names
//! the IAM permission to grant.

mod client;
pub mod ec2;
pub mod pricing;

pub use client::{NoCredentials, Timeouts, check_credentials, sdk_config};

use crate::sources::cache;
use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spotplan_core::catalog::{Overlay, RegionOfferings, TypeSpec};
use spotplan_core::market::{
    HashMap, MarketInputs, Provenance, RefreshError, SourceKind, Stamp, ZonePrices,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The IAM permissions spotplan's live data needs: `config/iam/spotplan-policy.json` grants
/// exactly these (a test checks it).
#[cfg(test)]
const PERMISSIONS: [&str; 6] = [
    "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeAvailabilityZones",
    "ec2:GetSpotPlacementScores",
    "pricing:GetProducts",
];

/// An error with its sources, on one line (the SDK's messages span several).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for line in crate::sources::file::error_chain(e)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// A failed AWS call, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{api}: {message}")]
pub struct AwsError {
    /// The IAM action of the call (`ec2:DescribeSpotPriceHistory`).
    pub api: &'static str,
    /// AWS's error code, when it answered with one.
    pub code: Option<String>,
    pub message: String,
    pub category: &'static str,
}

impl AwsError {
    pub fn from_sdk<E, R>(api: &'static str, e: SdkError<E, R>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let (code, aws_message) = (e.code().map(String::from), e.message().map(String::from));
        let category = match (&e, code.as_deref()) {
            (_, Some("UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException")) => {
                "AccessDenied"
            }
            (_, Some(c)) if c.contains("Throttl") || c.contains("RequestLimitExceeded") => {
                "Throttled"
            }
            (SdkError::TimeoutError(_), _) => "Timeout",
            (SdkError::DispatchFailure(d), _) if d.is_timeout() => "Timeout",
            (SdkError::DispatchFailure(_), _) => "Unreachable",
            (SdkError::ResponseError(_), _) => "BadResponse",
            (SdkError::ServiceError(_), _) => "ServiceError",
            _ => "Failed",
        };
        let message = match (code.as_deref(), aws_message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_string(),
            _ => one_line(&e),
        };
        let message = if category == "AccessDenied" {
            format!(
                "{message} (grant {api} to spotplan's IAM role; see config/iam/spotplan-policy.json)"
            )
        } else {
            message
        };
        AwsError {
            api,
            code,
            message,
            category,
        }
    }

    pub fn bad_data(api: &'static str, why: String) -> AwsError {
        AwsError {
            api,
            code: None,
            message: format!("refused the answer: {why}"),
            category: "BadData",
        }
    }
}

/// API calls made (one per page), by call name.
#[derive(Debug, Default)]
pub struct Counter(Mutex<BTreeMap<&'static str, u64>>);

impl Counter {
    pub fn page(&self, call: &'static str) {
        *self
            .0
            .lock()
            .expect("counter lock")
            .entry(call)
            .or_default() += 1;
    }
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().expect("counter lock").clone()
    }
}

/// One source's live data for one region, with where and when it came from.
#[derive(Debug)]
pub struct Live<T> {
    pub data: Arc<T>,
    pub provenance: Provenance,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            data: self.data.clone(),
            provenance: self.provenance.clone(),
        }
    }
}

/// On-demand $/h per type.
pub type OnDemand = HashMap<String, f64>;

/// Live data of one region.
#[derive(Debug, Clone, Default)]
pub struct LiveRegion {
    pub spot: Option<Live<ZonePrices>>,
    pub on_demand: Option<Live<OnDemand>>,
    pub offerings: Option<Live<RegionOfferings>>,
    pub types: Option<Live<Vec<TypeSpec>>>,
}

/// A source that failed (its last good copy, if any, is still in use).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub kind: SourceKind,
    pub region: String,
    pub error: AwsError,
}

/// Live data for the regions asked for.
#[derive(Debug, Clone, Default)]
pub struct LiveData {
    pub regions: BTreeMap<String, LiveRegion>,
    pub problems: Vec<Problem>,
}

impl LiveData {
    /// Adds the live prices and every source's provenance to `inputs`.
    pub fn add_to(&self, inputs: &mut MarketInputs) {
        for (region, r) in &self.regions {
            if let Some(s) = &r.spot {
                inputs.spot_prices.insert(region.clone(), s.data.clone());
            }
            if let Some(o) = &r.on_demand {
                inputs.on_demand.insert(region.clone(), o.data.clone());
            }
            let provs = [
                r.spot.as_ref().map(|l| &l.provenance),
                r.on_demand.as_ref().map(|l| &l.provenance),
                r.offerings.as_ref().map(|l| &l.provenance),
                r.types.as_ref().map(|l| &l.provenance),
            ];
            inputs.sources.extend(provs.into_iter().flatten().cloned());
        }
        // A source with no data at all still shows, with its error.
        for p in &self.problems {
            let has = inputs
                .sources
                .iter()
                .any(|s| s.kind == p.kind && s.region.as_deref() == Some(p.region.as_str()));
            if !has {
                inputs.sources.push(Provenance {
                    kind: p.kind,
                    region: Some(p.region.clone()),
                    location: location(p.kind, &p.region),
                    as_of: jiff::Timestamp::UNIX_EPOCH,
                    stamp: Stamp::Fetched,
                    published: None,
                    dated: None,
                    from_cache: false,
                    refresh_error: Some(RefreshError::new(p.error.category, &p.error)),
                });
            }
        }
    }

    /// What the live instance types and offerings say about the catalog. A type is current
    /// generation if any region's DescribeInstanceTypes says so.
    pub fn overlay(&self) -> Overlay {
        let mut specs: BTreeMap<&str, &TypeSpec> = BTreeMap::new();
        let mut current: BTreeMap<&str, bool> = BTreeMap::new();
        let mut offerings = Vec::new();
        for (region, r) in &self.regions {
            if let Some(t) = &r.types {
                for s in t.data.iter() {
                    specs.entry(&s.name).or_insert(s);
                    *current.entry(&s.name).or_default() |= s.current_generation;
                }
            }
            if let Some(o) = &r.offerings {
                offerings.push((region.clone(), (*o.data).clone()));
            }
        }
        Overlay {
            specs: specs.into_values().cloned().collect(),
            offerings,
            current_generation: current
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

fn location(kind: SourceKind, region: &str) -> String {
    format!("{} {region}", api_of(kind))
}

/// How big a dataset is, to refuse an answer that lost most of the last good one.
trait Size {
    fn size(&self) -> usize;
}

impl<T> Size for Vec<T> {
    fn size(&self) -> usize {
        self.len()
    }
}

impl<V> Size for HashMap<String, V> {
    fn size(&self) -> usize {
        self.len()
    }
}

/// Settings of the live sources.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// Where answers are kept between runs (the CLI's cache directory).
    pub cache_dir: Option<PathBuf>,
    /// How long spot prices are reused without a call (the refresh interval or cache TTL).
    pub spot_ttl: Duration,
    /// How long on-demand prices, offerings, instance types and placement scores are reused.
    pub slow_ttl: Duration,
    pub timeouts: Timeouts,
}

impl AwsOptions {
    pub fn new(cache_dir: Option<PathBuf>, spot_ttl: Duration) -> AwsOptions {
        AwsOptions {
            cache_dir,
            spot_ttl,
            slow_ttl: Duration::from_secs(24 * 3600),
            timeouts: Timeouts::default(),
        }
    }
}

/// Spot placement scores: (zone, 1..10).
pub type ZoneScores = Vec<(String, u8)>;

/// Connected AWS clients. Cheap to clone.
#[derive(Clone)]
pub struct Aws {
    config: SdkConfig,
    opts: AwsOptions,
    pub calls: Arc<Counter>,
    placement: Arc<Mutex<HashMap<String, (jiff::Timestamp, ZoneScores)>>>,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aws").field("opts", &self.opts).finish()
    }
}

/// Live data cannot be had at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no AWS credentials (environment, profile, web identity, pod identity, instance metadata): {0}"
)]
pub struct Unavailable(#[from] pub NoCredentials);

impl Aws {
    /// Builds the clients and checks that credentials resolve (within
    /// [`CREDENTIALS_TIMEOUT`]): without them, nothing live can be had.
    pub async fn connect(opts: AwsOptions) -> Result<Aws, Unavailable> {
        let config = client::sdk_config(opts.timeouts).await;
        client::check_credentials(&config).await?;
        Ok(Aws {
            config,
            opts,
            calls: Arc::default(),
            placement: Arc::default(),
        })
    }

    fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::config::Builder::from(&self.config)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    fn pricing(&self) -> aws_sdk_pricing::Client {
        let conf = aws_sdk_pricing::config::Builder::from(&self.config)
            .region(aws_config::Region::new(pricing::PRICING_REGION))
            .build();
        aws_sdk_pricing::Client::from_conf(conf)
    }

    /// Live data for `regions`, all regions and their four sources at once. `last` is the data
    /// in use: its copies serve while young, and stand in for failed calls.
    pub async fn load(&self, regions: &[String], last: Option<&LiveData>) -> LiveData {
        let loads = regions
            .iter()
            .map(|region| self.load_region(region, last.and_then(|l| l.regions.get(region))));
        let mut out = LiveData::default();
        for (region, (live, problems)) in regions.iter().zip(futures::future::join_all(loads).await)
        {
            out.regions.insert(region.clone(), live);
            out.problems.extend(problems);
        }
        out
    }

    async fn load_region(
        &self,
        region: &str,
        prev: Option<&LiveRegion>,
    ) -> (LiveRegion, Vec<Problem>) {
        let ec2 = self.ec2(region);
        let pricing = self.pricing();
        let calls = &self.calls;
        let (spot, on_demand, offerings, types) = tokio::join!(
            self.source(
                SourceKind::SpotPriceHistory,
                region,
                self.opts.spot_ttl,
                prev.and_then(|p| p.spot.as_ref()),
                || ec2::spot_prices(&ec2, calls),
            ),
            self.source(
                SourceKind::PriceList,
                region,
                self.opts.slow_ttl,
                prev.and_then(|p| p.on_demand.as_ref()),
                || pricing::on_demand(&pricing, calls, region),
            ),
            self.source(
                SourceKind::InstanceTypeOfferings,
                region,
                self.opts.slow_ttl,
                prev.and_then(|p| p.offerings.as_ref()),
                || ec2::offerings(&ec2, calls),
            ),
            self.source(
                SourceKind::InstanceTypes,
                region,
                self.opts.slow_ttl,
                prev.and_then(|p| p.types.as_ref()),
                || ec2::instance_types(&ec2, calls),
            ),
        );
        let errors = [
            (SourceKind::SpotPriceHistory, spot.1),
            (SourceKind::PriceList, on_demand.1),
            (SourceKind::InstanceTypeOfferings, offerings.1),
            (SourceKind::InstanceTypes, types.1),
        ];
        let problems = errors
            .into_iter()
            .filter_map(|(kind, e)| {
                e.map(|error| Problem {
                    kind,
                    region: region.to_string(),
                    error,
                })
            })
            .collect();
        let live = LiveRegion {
            spot: spot.0,
            on_demand: on_demand.0,
            offerings: offerings.0,
            types: types.0,
        };
        (live, problems)
    }

    /// One source for one region (see the module docs).
    async fn source<T, F, Fut>(
        &self,
        kind: SourceKind,
        region: &str,
        ttl: Duration,
        last: Option<&Live<T>>,
        fetch: F,
    ) -> (Option<Live<T>>, Option<AwsError>)
    where
        T: Size + Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let now = jiff::Timestamp::now();
        let last = last.cloned().or_else(|| self.read_disk(kind, region));
        if let Some(l) = &last
            && l.provenance.refresh_error.is_none()
            && now.duration_since(l.provenance.as_of).unsigned_abs() < ttl
        {
            return (last, None);
        }
        // Paginated calls make several requests, each within the call timeout: bound the whole.
        let whole = self.opts.timeouts.operation * 3;
        let fetched = match tokio::time::timeout(whole, fetch()).await {
            Ok(r) => r,
            Err(_) => Err(AwsError {
                api: api_of(kind),
                code: None,
                message: format!("no complete answer within {}s", whole.as_secs()),
                category: "Timeout",
            }),
        };
        let fetched = fetched.and_then(|data| {
            if data.size() == 0 {
                return Err(AwsError::bad_data(
                    api_of(kind),
                    "the answer is empty".into(),
                ));
            }
            if let Some(l) = &last
                && data.size() * 2 < l.data.size()
            {
                return Err(AwsError::bad_data(
                    api_of(kind),
                    format!(
                        "{} entries where the last good answer had {}; keeping the last good data",
                        data.size(),
                        l.data.size()
                    ),
                ));
            }
            Ok(data)
        });
        match fetched {
            Ok(data) => {
                let live = Live {
                    data: Arc::new(data),
                    provenance: Provenance {
                        kind,
                        region: Some(region.to_string()),
                        location: location(kind, region),
                        as_of: now,
                        stamp: Stamp::Fetched,
                        published: None,
                        dated: None,
                        from_cache: false,
                        refresh_error: None,
                    },
                };
                self.write_disk(kind, region, &live);
                (Some(live), None)
            }
            Err(e) => {
                let kept = last.map(|mut l| {
                    l.provenance.from_cache = true;
                    l.provenance.refresh_error = Some(RefreshError::new(e.category, &e));
                    l
                });
                (kept, Some(e))
            }
        }
    }

    fn disk_key(kind: SourceKind, region: &str) -> String {
        format!("aws {} {region}", kind.as_str())
    }

    fn read_disk<T: DeserializeOwned>(&self, kind: SourceKind, region: &str) -> Option<Live<T>> {
        let dir = self.opts.cache_dir.as_ref()?;
        let key = Self::disk_key(kind, region);
        let (meta, body) = cache::read(&cache::path(dir, kind.as_str(), &key), &key).ok()??;
        let data: T = serde_json::from_slice(&body).ok()?;
        Some(Live {
            data: Arc::new(data),
            provenance: Provenance {
                kind,
                region: Some(region.to_string()),
                location: location(kind, region),
                as_of: meta.fetched_at,
                stamp: Stamp::Fetched,
                published: None,
                dated: None,
                from_cache: true,
                refresh_error: None,
            },
        })
    }

    fn write_disk<T: Serialize>(&self, kind: SourceKind, region: &str, live: &Live<T>) {
        let Some(dir) = &self.opts.cache_dir else {
            return;
        };
        let key = Self::disk_key(kind, region);
        let meta = cache::Meta {
            key: key.clone(),
            fetched_at: live.provenance.as_of,
            last_modified: None,
        };
        let body = serde_json::to_vec(&*live.data).expect("live data serializes");
        if let Err(e) = cache::write(&cache::path(dir, kind.as_str(), &key), &meta, &body) {
            tracing::warn!(error = %e, "could not cache live data");
        }
    }
}

/// The IAM action behind a live source.
pub fn api_of(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::SpotPriceHistory => "ec2:DescribeSpotPriceHistory",
        SourceKind::PriceList => "pricing:GetProducts",
        SourceKind::InstanceTypes => "ec2:DescribeInstanceTypes",
        SourceKind::InstanceTypeOfferings => "ec2:DescribeInstanceTypeOfferings",
        SourceKind::PlacementScores => "ec2:GetSpotPlacementScores",
        SourceKind::SpotAdvisor | SourceKind::PriceFile => "file",
    }
}

impl Aws {
    /// Spot placement scores per zone name for `types` and `vcpus` in `region`, cached per
    /// request configuration for a day (new configurations are limited per day).
    pub async fn placement_scores(
        &self,
        region: &str,
        types: &[String],
        vcpus: u32,
    ) -> Result<Vec<(String, u8)>, AwsError> {
        let mut sorted = types.to_vec();
        sorted.sort();
        let key = format!("{region} {vcpus} {}", sorted.join(","));
        let now = jiff::Timestamp::now();
        let fresh =
            |t: &jiff::Timestamp| now.duration_since(*t).unsigned_abs() < self.opts.slow_ttl;
        if let Some((t, s)) = self.placement.lock().expect("placement lock").get(&key)
            && fresh(t)
        {
            return Ok(s.clone());
        }
        let disk = self
            .opts
            .cache_dir
            .as_ref()
            .map(|d| cache::path(d, SourceKind::PlacementScores.as_str(), &key));
        if let Some(path) = &disk
            && let Ok(Some((meta, body))) = cache::read(path, &key)
            && fresh(&meta.fetched_at)
            && let Ok(scores) = serde_json::from_slice::<Vec<(String, u8)>>(&body)
        {
            return Ok(scores);
        }
        let ec2 = self.ec2(region);
        let names = ec2::zone_names(&ec2, &self.calls).await?;
        let by_id = ec2::placement_scores(&ec2, &self.calls, region, &sorted, vcpus).await?;
        let mut scores: Vec<(String, u8)> = by_id
            .into_iter()
            .map(|(id, s)| (names.get(&id).cloned().unwrap_or(id), s))
            .collect();
        scores.sort();
        self.placement
            .lock()
            .expect("placement lock")
            .insert(key.clone(), (now, scores.clone()));
        if let Some(path) = disk {
            let meta = cache::Meta {
                key,
                fetched_at: now,
                last_modified: None,
            };
            let _ = cache::write(&path, &meta, &serde_json::to_vec(&scores).expect("JSON"));
        }
        Ok(scores)
    }
}

/// The actions an IAM policy document grants (its first statement).
#[cfg(test)]
pub(crate) fn granted(policy: &str) -> Vec<String> {
    let policy: serde_json::Value = serde_json::from_str(policy).unwrap();
    policy["Statement"][0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[cfg(test)]
mod policy_tests {
    #[test]
    fn the_shipped_policy_grants_every_call() {
        let granted = super::granted(include_str!("../../../config/iam/spotplan-policy.json"));
        assert_eq!(granted, super::PERMISSIONS);
    }
}
