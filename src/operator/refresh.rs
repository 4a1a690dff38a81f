//! Market data shared by every reconcile: loaded in the background, refreshed on a schedule in
//! one place, and never replaced by bad data.
//!
//! The first load runs after the endpoints are up, so a data source that hangs or refuses
//! costs no liveness: until it answers, reconciles wait (nothing is written while the first
//! load is in progress); once it has failed, plans say `Ready=False, MarketDataUnavailable`.

use super::health::Health;
use super::metrics::Metrics;
use crate::duration::humanize;
use crate::sources::{MarketSources, SourceError};
use jiff::Timestamp;
use spotplan_core::MarketData;
use spotplan_core::market::{DataError, Provenance, SourceKind};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Whether the data can be trusted for data-driven changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub fresh: bool,
    /// CamelCase reason for the DataFresh condition.
    pub reason: &'static str,
    pub message: String,
}

impl Freshness {
    /// The first load has not finished yet (nothing loaded, nothing failed).
    pub fn loading(&self) -> bool {
        self.reason == "Loading"
    }
}

#[derive(Debug, Default)]
struct State {
    market: Option<MarketData>,
    /// The last refresh's error, if it failed.
    last_error: Option<SourceError>,
}

/// Loads and refreshes market data.
pub struct MarketCache {
    sources: MarketSources,
    pub interval: Duration,
    /// A refresh (all sources, all retries) that takes longer fails.
    pub deadline: Duration,
    state: RwLock<State>,
}

impl MarketCache {
    pub fn new(sources: MarketSources, interval: Duration, deadline: Duration) -> MarketCache {
        MarketCache {
            sources,
            interval,
            deadline,
            state: RwLock::new(State::default()),
        }
    }

    pub fn snapshot(&self) -> Option<MarketData> {
        self.state.read().expect("market lock").market.clone()
    }

    /// Loads every source. Returns Ok(true) when the data in use changed. On any error the data
    /// in use stays and the error is remembered for the DataFresh condition.
    pub async fn refresh(&self) -> Result<bool, SourceError> {
        let current = self.snapshot();
        let loaded = tokio::time::timeout(
            self.deadline,
            self.sources
                .load(None, current.as_ref().map(|m| m.inputs())),
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
        let inputs = loaded.inputs();
        state.last_error = inputs.sources.iter().find_map(|p| {
            p.refresh_error.as_ref().map(|m| SourceError {
                kind: p.kind,
                error: DataError::io(&p.location, m),
            })
        });
        let same = current.as_ref().is_some_and(|m| {
            m.inputs().advisor == inputs.advisor && m.inputs().prices == inputs.prices
        });
        let inputs = match (&current, same) {
            // Keep the joined rows when nothing changed; only the provenance moves on.
            (Some(m), true) => spotplan_core::MarketInputs {
                sources: inputs.sources,
                ..m.inputs().clone()
            },
            _ => inputs,
        };
        state.market = Some(MarketData::new(
            Arc::new(spotplan_core::Catalog::embedded().clone()),
            inputs,
        ));
        Ok(!same)
    }

    /// Stale when the last refresh failed or the data is older than twice the interval.
    pub fn freshness(&self, now: Timestamp) -> Freshness {
        let state = self.state.read().expect("market lock");
        let Some(market) = &state.market else {
            return match &state.last_error {
                Some(e) => Freshness {
                    fresh: false,
                    reason: "NoData",
                    message: format!("no market data could be loaded: {e}"),
                },
                None => Freshness {
                    fresh: false,
                    reason: "Loading",
                    message: "market data is loading".into(),
                },
            };
        };
        if let Some(e) = &state.last_error {
            return Freshness {
                fresh: false,
                reason: "RefreshFailed",
                message: format!("the last refresh failed, keeping the data loaded before: {e}"),
            };
        }
        let limit =
            jiff::SignedDuration::try_from(self.interval * 2).unwrap_or(jiff::SignedDuration::MAX);
        for p in market.sources() {
            if now.duration_since(p.as_of) > limit {
                return Freshness {
                    fresh: false,
                    reason: "DataTooOld",
                    message: format!(
                        "{} is from {}, older than twice the refresh interval ({})",
                        p.location,
                        p.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        humanize(self.interval * 2)
                    ),
                };
            }
        }
        Freshness {
            fresh: true,
            reason: "Fresh",
            message: describe(market.sources()),
        }
    }

    /// Ages of the sources, seconds, for metrics.
    pub fn ages(&self, now: Timestamp) -> Vec<(SourceKind, f64)> {
        self.snapshot()
            .map(|m| {
                m.sources()
                    .iter()
                    .map(|p| (p.kind, now.duration_since(p.as_of).as_secs_f64()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn describe(sources: &[Provenance]) -> String {
    sources
        .iter()
        .map(|p| {
            format!(
                "{} from {} as of {}",
                p.kind.as_str(),
                p.location,
                p.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
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
    let mut last: Option<(bool, &'static str)> = None;
    loop {
        let outcome = market.refresh().await;
        health.refresh_beat();
        let now = Timestamp::now();
        let fresh = market.freshness(now);
        match &outcome {
            Ok(changed) => tracing::info!(
                changed,
                fresh = fresh.fresh,
                "market data refreshed: {}",
                fresh.message
            ),
            Err(e) => {
                metrics
                    .data_refresh_failures
                    .with_label_values(&[e.category()])
                    .inc();
                tracing::warn!(error = %e, "market data refresh failed; keeping the last good data");
            }
        }
        record(&market, &metrics, now);
        let state = Some((fresh.fresh, fresh.reason));
        if matches!(outcome, Ok(true)) || last != state {
            let _ = trigger.send(());
        }
        last = state;
        // Freshness is also a matter of time passing: check it between refreshes.
        let mut waited = Duration::ZERO;
        while waited < market.interval {
            let step = STEP.min(market.interval - waited);
            tokio::time::sleep(step).await;
            waited += step;
            health.refresh_beat();
            let f = market.freshness(Timestamp::now());
            let state = Some((f.fresh, f.reason));
            if state != last {
                record(&market, &metrics, Timestamp::now());
                last = state;
                let _ = trigger.send(());
            }
        }
    }
}

fn record(market: &MarketCache, metrics: &Metrics, now: Timestamp) {
    metrics
        .data_fresh
        .set(i64::from(market.freshness(now).fresh));
    for (kind, age) in market.ages(now) {
        metrics
            .data_age
            .with_label_values(&[kind.as_str()])
            .set(age);
    }
}
