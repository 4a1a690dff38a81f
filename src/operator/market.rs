//! Market data shared by every reconcile: loaded once, refreshed on a schedule in one place,
//! and never replaced by bad data.

use crate::core::catalog::Catalog;
use crate::core::market::{DataError, MarketData, PriceTable, Provenance, SpotAdvisor};
use crate::data::{Loader, Source};
use jiff::Timestamp;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The data in use, with where it came from.
#[derive(Debug)]
pub struct Snapshot {
    pub market: MarketData,
    /// Bumped whenever the data changes.
    pub version: u64,
}

/// Whether the data can be trusted for data-driven changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub fresh: bool,
    /// CamelCase reason for the DataFresh condition.
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Option<Arc<Snapshot>>,
    /// The last refresh's error, if it failed.
    last_error: Option<DataError>,
    last_attempt: Option<Timestamp>,
}

/// Loads and refreshes market data.
pub struct MarketCache {
    catalog: &'static Catalog,
    loader: Loader,
    advisor: Source,
    prices: Option<Source>,
    pub interval: Duration,
    state: RwLock<State>,
}

impl MarketCache {
    pub fn new(
        catalog: &'static Catalog,
        loader: Loader,
        advisor: Source,
        prices: Option<Source>,
        interval: Duration,
    ) -> MarketCache {
        MarketCache {
            catalog,
            loader,
            advisor,
            prices,
            interval,
            state: RwLock::new(State::default()),
        }
    }

    pub fn catalog(&self) -> &'static Catalog {
        self.catalog
    }

    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.state.read().expect("market lock").snapshot.clone()
    }

    /// Loads both sources. Returns Ok(true) when the data in use changed. On any error the data
    /// in use stays and the error is remembered for the DataFresh condition.
    pub async fn refresh(&self) -> Result<bool, DataError> {
        let current = self.snapshot();
        let old_advisor = current.as_ref().and_then(|s| s.market.advisor.clone());
        let old_prices = current.as_ref().and_then(|s| s.market.prices.clone());
        let result = async {
            let advisor = self
                .loader
                .load::<SpotAdvisor>(&self.advisor, old_advisor.as_deref())
                .await?;
            let prices = match &self.prices {
                Some(p) => Some(
                    self.loader
                        .load::<PriceTable>(p, old_prices.as_deref())
                        .await?,
                ),
                None => None,
            };
            Ok::<_, DataError>((advisor, prices))
        }
        .await;
        let mut state = self.state.write().expect("market lock");
        state.last_attempt = Some(Timestamp::now());
        let (advisor, prices) = match result {
            Ok(v) => v,
            Err(e) => {
                state.last_error = Some(e.clone());
                return Err(e);
            }
        };
        // A URL whose fetch failed is served from the disk cache with the reason attached:
        // that is a failed refresh too.
        state.last_error = [
            Some(&advisor.provenance),
            prices.as_ref().map(|p| &p.provenance),
        ]
        .into_iter()
        .flatten()
        .find_map(|p| {
            p.refresh_error.as_ref().map(|m| DataError::Io {
                file: p.location.clone(),
                message: m.clone(),
            })
        });
        let same = current.as_ref().is_some_and(|s| {
            s.market.advisor.as_deref() == Some(&advisor.data)
                && s.market.prices.as_deref() == prices.as_ref().map(|p| &p.data)
        });
        let version = current.as_ref().map_or(0, |s| s.version) + u64::from(!same);
        // Keep the already-joined data when nothing changed, only the provenance moves on.
        let (adv, pr) = if same {
            let s = current.as_ref().expect("same implies current");
            (s.market.advisor.clone(), s.market.prices.clone())
        } else {
            (
                Some(Arc::new(advisor.data)),
                prices.as_ref().map(|p| Arc::new(p.data.clone())),
            )
        };
        let market = MarketData::new(
            self.catalog,
            adv,
            Some(advisor.provenance),
            pr,
            prices.map(|p| p.provenance),
        );
        state.snapshot = Some(Arc::new(Snapshot { market, version }));
        Ok(!same)
    }

    /// Stale when the last refresh failed or the data is older than twice the interval.
    pub fn freshness(&self, now: Timestamp) -> Freshness {
        let state = self.state.read().expect("market lock");
        let Some(snap) = &state.snapshot else {
            return Freshness {
                fresh: false,
                reason: "NoData",
                message: match &state.last_error {
                    Some(e) => format!("no market data could be loaded: {e}"),
                    None => "market data has not been loaded yet".into(),
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
        for p in [&snap.market.advisor_source, &snap.market.prices_source]
            .into_iter()
            .flatten()
        {
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
            message: describe(&snap.market),
        }
    }

    /// Ages of the sources, seconds, for metrics.
    pub fn ages(&self, now: Timestamp) -> Vec<(&'static str, f64)> {
        let Some(s) = self.snapshot() else {
            return Vec::new();
        };
        let age = |p: &Option<Provenance>| {
            p.as_ref()
                .map(|p| now.duration_since(p.as_of).as_secs_f64())
        };
        [
            ("advisor", age(&s.market.advisor_source)),
            ("prices", age(&s.market.prices_source)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

fn describe(m: &MarketData) -> String {
    let part = |what: &str, p: &Option<Provenance>| {
        p.as_ref().map(|p| {
            format!(
                "{what} from {} as of {}",
                p.location,
                p.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
            )
        })
    };
    [
        part("Spot Advisor data", &m.advisor_source),
        part("prices", &m.prices_source),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("; ")
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
