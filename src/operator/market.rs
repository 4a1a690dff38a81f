//! Market data shared by every reconcile: loaded in the background, refreshed on a schedule in
//! one place, and never replaced by bad data.
//!
//! The first load runs after the endpoints are up, so a data source that hangs or refuses
//! costs no liveness: until it answers, reconciles wait (nothing is written while the first
//! load is in progress); once it has failed, plans say `Ready=False, MarketDataUnavailable`.
//!
//! Live AWS data is loaded once per region in use (the regions of the SpotPlans), never per
//! SpotPlan: the API calls of a refresh do not grow with the number of plans. A plan in a region
//! not loaded yet waits for it, and wakes the loop.

use super::health::Health;
use super::metrics::Metrics;
use crate::sources::{LoadedMarket, MarketSources, RegionRefusal, SourceError};
use jiff::Timestamp;
use spotplan_api::freshness::{Freshness, SourceState};
use spotplan_core::MarketData;
use spotplan_core::duration::humanize;
use spotplan_core::market::{DataError, Provenance, SourceKind, Stamp};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// A refresh that went through: whether the data in use changed, and what failed in it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refreshed {
    pub changed: bool,
    pub failures: Vec<Failure>,
}

/// One source that failed in a refresh (its last good data stays).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// The source kind (`spot-advisor`, `price-file`, an AWS call's source).
    pub source: &'static str,
    /// A fixed category: `Unreadable`, `InvalidJson`, `DataShrunk`, `RegionLost`, `AccessDenied`...
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
struct State {
    loaded: Option<LoadedMarket>,
    market: Option<MarketData>,
    /// The last refresh's error, if it failed as a whole (or a source was served from its
    /// cache because its fetch failed).
    last_error: Option<SourceError>,
    /// Regions whose new data the last refresh refused (their last good data stays).
    refused: Vec<RegionRefusal>,
    /// Regions whose live data has been asked for.
    live_regions: BTreeSet<String>,
}

/// How old a file the user named may be (by its modification time) before its data counts as
/// stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileAge {
    /// Twice the refresh cycle, as for every source.
    #[default]
    RefreshCycle,
    Limit(Duration),
    /// Not judged: a dated snapshot used on purpose (status says so).
    Pinned,
}

/// Loads and refreshes market data.
pub struct MarketCache {
    sources: MarketSources,
    pub interval: Duration,
    /// A refresh (all sources, all retries) that takes longer fails.
    pub deadline: Duration,
    /// How long slow live sources (on-demand prices, offerings, types) are kept.
    pub slow_ttl: Duration,
    /// How old a named file may be.
    pub file_age: FileAge,
    state: RwLock<State>,
    /// Regions of the plans (registered by reconciles).
    regions: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl MarketCache {
    pub fn new(sources: MarketSources, interval: Duration, deadline: Duration) -> MarketCache {
        MarketCache {
            sources,
            interval,
            deadline,
            slow_ttl: Duration::from_secs(24 * 3600),
            file_age: FileAge::default(),
            state: RwLock::new(State::default()),
            regions: Mutex::default(),
            wake: Notify::new(),
        }
    }

    pub fn with_file_age(self, file_age: FileAge) -> MarketCache {
        MarketCache { file_age, ..self }
    }

    pub fn snapshot(&self) -> Option<MarketData> {
        self.state.read().expect("market lock").market.clone()
    }

    /// Registers a plan's region. True when the plan must wait: live data is on, and the region
    /// has not been loaded yet (the refresh loop is woken to load it now).
    pub fn use_region(&self, region: &str) -> bool {
        if self.sources.aws.is_none() {
            return false;
        }
        let new = self
            .regions
            .lock()
            .expect("regions lock")
            .insert(region.to_string());
        let loaded = self
            .state
            .read()
            .expect("market lock")
            .live_regions
            .contains(region);
        if new && !loaded {
            self.wake.notify_one();
        }
        !loaded
    }

    /// Loads every source (live data for the regions in use): whether the data in use changed,
    /// and what failed. On any error the data in use stays and the error is remembered.
    pub async fn refresh(&self) -> Result<Refreshed, SourceError> {
        let regions: Vec<String> = self
            .regions
            .lock()
            .expect("regions lock")
            .iter()
            .cloned()
            .collect();
        let last = self.state.read().expect("market lock").loaded.clone();
        let loaded = tokio::time::timeout(
            self.deadline,
            self.sources.load(None, &regions, last.as_ref()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(SourceError {
                kind: SourceKind::SpotAdvisor,
                error: DataError::io(
                    &self.sources.advisor.location(),
                    format!("the refresh took longer than {}", humanize(self.deadline)),
                ),
            })
        });
        let mut state = self.state.write().expect("market lock");
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                state.last_error = Some(e.clone());
                return Err(e);
            }
        };
        for w in loaded.warnings() {
            tracing::warn!("{w}");
        }
        // A URL whose fetch failed is served from the disk cache with the reason attached:
        // that is a failed refresh too.
        let files = [
            Some(&loaded.advisor.provenance),
            loaded.prices.as_ref().map(|p| &p.provenance),
        ];
        state.last_error = files.into_iter().flatten().find_map(|p| {
            p.refresh_error.as_ref().map(|m| SourceError {
                kind: p.kind,
                error: DataError::io(&p.location, m),
            })
        });
        let mut failures: Vec<Failure> = files
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let e = p.refresh_error.as_ref()?;
                Some(Failure {
                    source: p.kind.as_str(),
                    reason: e.category,
                    message: format!("{}: {e}", p.location),
                })
            })
            .collect();
        failures.extend(
            loaded
                .live
                .iter()
                .flat_map(|l| &l.problems)
                .map(|p| Failure {
                    source: p.kind.as_str(),
                    reason: p.error.category,
                    message: format!("{}: {}", p.region, p.error),
                }),
        );
        failures.extend(loaded.refused.iter().map(|r| Failure {
            source: r.kind.as_str(),
            reason: "RegionLost",
            message: r.to_string(),
        }));
        state.refused = loaded.refused.clone();
        let changed = state
            .loaded
            .as_ref()
            .is_none_or(|old| !same_data(old, &loaded));
        state.market = Some(loaded.join());
        state.live_regions.extend(regions);
        state.loaded = Some(loaded);
        Ok(Refreshed { changed, failures })
    }

    /// The freshness limit of a source: twice its refresh cycle at its longest, that is its
    /// period (the refresh interval, or the reuse period of a slow live source) plus the
    /// refresh deadline. A source is stamped when its fetch starts and a healthy loop replaces
    /// it within one such cycle of the refresh after it, so data past the limit means a
    /// refresh that should have replaced it did not. (Twice the period alone called a healthy
    /// loop stale whenever a refresh took longer than half the interval.)
    ///
    /// A file the user named is judged by its modification time against `--file-max-age` when
    /// that is set (None: pinned, not judged).
    fn limit(&self, p: &Provenance) -> Option<Duration> {
        let cycle = |period: Duration| (period + self.deadline) * 2;
        match (p.stamp, self.file_age) {
            (Stamp::FileModified, FileAge::Pinned) => None,
            (Stamp::FileModified, FileAge::Limit(d)) => Some(d),
            _ => Some(match p.kind {
                SourceKind::SpotAdvisor | SourceKind::PriceFile | SourceKind::SpotPriceHistory => {
                    cycle(self.interval)
                }
                _ => cycle(self.slow_ttl),
            }),
        }
    }

    fn too_old(&self, p: &Provenance, max_age: Option<Duration>) -> String {
        let max = humanize(max_age.unwrap_or_default());
        match (p.stamp, self.file_age) {
            (Stamp::FileModified, FileAge::Limit(_)) => format!(
                "{}: not modified for longer than --file-max-age ({max})",
                p.describe(None)
            ),
            _ => format!(
                "{}: not renewed for longer than twice its refresh cycle ({max})",
                p.describe(None)
            ),
        }
    }

    /// Every source's state; with `region`, the file sources and that region's live ones.
    pub fn sources(&self, now: Timestamp, region: Option<&str>) -> Vec<SourceState> {
        let Some(market) = self.snapshot() else {
            return Vec::new();
        };
        market
            .sources()
            .iter()
            .filter(|p| region.is_none() || p.region.is_none() || p.region.as_deref() == region)
            .map(|p| {
                let unavailable = p.refresh_error.is_some() && p.as_of == Timestamp::UNIX_EPOCH;
                let max_age = self.limit(p);
                let too_old = max_age.is_some_and(|max| {
                    let limit =
                        jiff::SignedDuration::try_from(max).unwrap_or(jiff::SignedDuration::MAX);
                    now.duration_since(p.as_of) > limit
                });
                let (fresh, message) = match &p.refresh_error {
                    Some(e) if unavailable => (true, format!("unavailable: {e}")),
                    Some(e) => (
                        false,
                        format!(
                            "the last refresh failed, keeping the data ({}): {e}",
                            p.describe(None)
                        ),
                    ),
                    None if too_old => (false, self.too_old(p, max_age)),
                    None if max_age.is_none() => (
                        true,
                        format!(
                            "{}; pinned: its age is not judged (--file-max-age none)",
                            p.describe(None)
                        ),
                    ),
                    None => (true, p.describe(None)),
                };
                SourceState {
                    provenance: p.clone(),
                    fresh,
                    unavailable,
                    message,
                }
            })
            .collect()
    }

    /// Stale when a refresh failed or a source in use is older than its limit. A source that is
    /// unavailable altogether (access denied, say) degrades its field only: the plan says so.
    /// With `region`, only the file sources and that region's live sources count.
    pub fn freshness(&self, now: Timestamp, region: Option<&str>) -> Freshness {
        let state = self.state.read().expect("market lock");
        if state.market.is_none() {
            return match &state.last_error {
                Some(e) => Freshness {
                    fresh: false,
                    reason: "NoData",
                    message: format!("no market data could be loaded: {e}"),
                    sources: Vec::new(),
                },
                None => Freshness {
                    fresh: false,
                    reason: "Loading",
                    message: "market data is loading".into(),
                    sources: Vec::new(),
                },
            };
        }
        let failed = state.last_error.clone();
        let refused: Vec<String> = state
            .refused
            .iter()
            .filter(|r| region.is_none_or(|want| r.loss.region == want))
            .map(ToString::to_string)
            .collect();
        drop(state);
        let sources = self.sources(now, region);
        if let Some(e) = failed {
            return Freshness {
                fresh: false,
                reason: "RefreshFailed",
                message: format!("the last refresh failed, keeping the data loaded before: {e}"),
                sources,
            };
        }
        if !refused.is_empty() {
            return Freshness {
                fresh: false,
                reason: "RegionRefused",
                message: refused.join("; "),
                sources,
            };
        }
        let name = |s: &SourceState| match &s.provenance.region {
            Some(r) => format!("{} ({r})", s.provenance.kind.as_str()),
            None => format!("{} ({})", s.provenance.kind.as_str(), s.provenance.location),
        };
        if let Some(s) = sources.iter().find(|s| !s.fresh) {
            let reason = if s.provenance.refresh_error.is_some() {
                "RefreshFailed"
            } else {
                "DataTooOld"
            };
            let message = format!("{}: {}", name(s), s.message);
            return Freshness {
                fresh: false,
                reason,
                message,
                sources,
            };
        }
        let degraded: Vec<String> = sources
            .iter()
            .filter(|s| s.unavailable)
            .map(|s| format!("{}: {}", name(s), s.message))
            .collect();
        let all = sources
            .iter()
            .filter(|s| !s.unavailable)
            .map(|s| format!("{} {}", name(s), s.message))
            .collect::<Vec<_>>()
            .join("; ");
        if degraded.is_empty() {
            Freshness {
                fresh: true,
                reason: "Fresh",
                message: all,
                sources,
            }
        } else {
            Freshness {
                fresh: true,
                reason: "Degraded",
                message: format!("{}; in use: {all}", degraded.join("; ")),
                sources,
            }
        }
    }

    /// Spot placement scores per zone for `plan`'s top types and size (see
    /// [`MarketSources::placement_scores`]); a failure is logged and there are none.
    pub async fn placement_scores(&self, plan: &spotplan_core::Plan) -> Option<Vec<(String, u8)>> {
        self.sources
            .placement_scores(plan)
            .await
            .inspect_err(|why| tracing::warn!(region = %plan.region, "placement scores: {why}"))
            .ok()
    }

    /// API calls made so far, by call.
    pub fn aws_calls(&self) -> Vec<(&'static str, u64)> {
        self.sources
            .aws
            .as_ref()
            .and_then(|a| futures::FutureExt::now_or_never(a.get()))
            .and_then(|r| r.ok())
            .map(|aws| aws.calls.snapshot().into_iter().collect())
            .unwrap_or_default()
    }
}

/// Whether two loads hold the same data (provenance aside).
fn same_data(a: &LoadedMarket, b: &LoadedMarket) -> bool {
    let live = |m: &LoadedMarket| {
        m.live.as_ref().map(|l| {
            l.regions
                .iter()
                .map(|(r, x)| {
                    (
                        r.clone(),
                        x.spot.as_ref().map(|v| v.data.clone()),
                        x.on_demand.as_ref().map(|v| v.data.clone()),
                        x.offerings.as_ref().map(|v| v.data.clone()),
                        x.types.as_ref().map(|v| v.data.clone()),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    a.advisor.data == b.advisor.data
        && a.prices.as_ref().map(|p| &p.data) == b.prices.as_ref().map(|p| &p.data)
        && live(a) == live(b)
}

/// How often the loop wakes between refreshes: to beat, and to notice data turning stale.
const STEP: Duration = Duration::from_secs(30);

/// The refresh loop: one for all plans. A change of data, or of freshness (with its reason),
/// requeues every SpotPlan through `trigger`.
pub async fn run(
    market: Arc<MarketCache>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    trigger: mpsc::UnboundedSender<()>,
) {
    let mut last: Option<FreshnessKey> = None;
    loop {
        let outcome = market.refresh().await;
        health.refresh_beat();
        let now = Timestamp::now();
        let fresh = market.freshness(now, None);
        let failures = match &outcome {
            Ok(r) => r.failures.clone(),
            Err(e) => vec![Failure {
                source: e.kind.as_str(),
                reason: e.category(),
                message: e.to_string(),
            }],
        };
        for f in &failures {
            metrics
                .data_refresh_failures
                .with_label_values(&[f.source, f.reason])
                .inc();
            tracing::warn!(source = f.source, reason = f.reason, error = %f.message, "market data refresh failed; keeping the last good data");
        }
        if let Ok(r) = &outcome {
            tracing::info!(
                changed = r.changed,
                fresh = fresh.fresh,
                "market data refreshed: {}",
                fresh.message
            );
        }
        record(&market, &metrics, now);
        let label = match &outcome {
            _ if !failures.is_empty() => "Failed",
            Ok(r) if r.changed => "Changed",
            _ => "Unchanged",
        };
        metrics.data_refreshes.with_label_values(&[label]).inc();
        let state = Some(key(&fresh));
        let changed = outcome.as_ref().is_ok_and(|r| r.changed);
        if changed || last != state {
            let _ = trigger.send(());
        }
        last = state;
        // Freshness is also a matter of time passing: check it between refreshes. A plan in a
        // region not loaded yet wakes the loop early.
        let mut waited = Duration::ZERO;
        while waited < market.interval {
            let step = STEP.min(market.interval - waited);
            let woken = tokio::select! {
                _ = tokio::time::sleep(step) => false,
                _ = market.wake.notified() => true,
            };
            waited += step;
            health.refresh_beat();
            if woken {
                break;
            }
            let f = market.freshness(Timestamp::now(), None);
            let state = Some(key(&f));
            if state != last {
                record(&market, &metrics, Timestamp::now());
                last = state;
                let _ = trigger.send(());
            }
        }
    }
}

/// What of the freshness requeues every plan when it changes: whether the data is fresh, why,
/// and, when it is not, the message (a different failure is news; a newer fetch time is not).
type FreshnessKey = (bool, &'static str, String);

fn key(f: &Freshness) -> FreshnessKey {
    let message = if f.fresh {
        String::new()
    } else {
        f.message.clone()
    };
    (f.fresh, f.reason, message)
}

/// The market's gauges at `now`: freshness, each source's age and freshness, AWS calls.
pub(crate) fn record(market: &MarketCache, metrics: &Metrics, now: Timestamp) {
    metrics
        .data_fresh
        .set(i64::from(market.freshness(now, None).fresh));
    for s in market.sources(now, None) {
        let region = s.provenance.region.as_deref().unwrap_or("");
        let labels = [s.provenance.kind.as_str(), region];
        if !s.unavailable {
            metrics
                .data_age
                .with_label_values(&labels)
                .set(now.duration_since(s.provenance.as_of).as_secs_f64());
        }
        metrics
            .source_fresh
            .with_label_values(&labels)
            .set(i64::from(s.fresh && !s.unavailable));
    }
    for (call, n) in market.aws_calls() {
        let c = metrics.aws_calls.with_label_values(&[call]);
        c.inc_by(n.saturating_sub(c.get()));
    }
}
