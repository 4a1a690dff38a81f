//! Where market data comes from: the Spot Advisor file and a price file (paths or URLs, plain
//! or gzip, URLs cached on disk). The core's parsers validate; this module adds I/O, freshness
//! and fallbacks, and hands the core one [`MarketInputs`]: the optimizer never sees a source.

pub mod file;

pub use file::{Loaded, Loader, MarketFile, Source};

use spotplan_core::market::{DataError, MarketInputs, PriceTable, SourceKind, SpotAdvisor};
use spotplan_core::{Catalog, MarketData};
use std::sync::Arc;

/// The public AWS Spot Advisor feed.
pub const DEFAULT_ADVISOR_URL: &str =
    "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json";

/// A source that could not be loaded (and had no last good copy).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct SourceError {
    pub kind: SourceKind,
    pub error: DataError,
}

impl SourceError {
    pub fn category(&self) -> &'static str {
        self.error.category()
    }
}

/// The configured sources of market data.
#[derive(Debug, Clone)]
pub struct MarketSources {
    pub advisor: Source,
    pub prices: Option<Source>,
    pub loader: Loader,
}

/// What one load of every source gave.
#[derive(Debug, Clone)]
pub struct LoadedMarket {
    pub advisor: Loaded<SpotAdvisor>,
    pub prices: Option<Loaded<PriceTable>>,
}

impl LoadedMarket {
    /// Warnings of every source, prefixed with the source.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.advisor.warnings.clone();
        if let Some(p) = &self.prices {
            out.extend(p.warnings.iter().cloned());
        }
        out
    }

    /// The inputs the core joins.
    pub fn inputs(&self) -> MarketInputs {
        let mut sources = vec![self.advisor.provenance.clone()];
        sources.extend(self.prices.iter().map(|p| p.provenance.clone()));
        MarketInputs {
            advisor: Some(Arc::new(self.advisor.data.clone())),
            prices: self.prices.as_ref().map(|p| Arc::new(p.data.clone())),
            sources,
            ..Default::default()
        }
    }

    /// Joined with the embedded catalog.
    pub fn join(self) -> MarketData {
        let mut sources = vec![self.advisor.provenance];
        let prices = self.prices.map(|p| {
            sources.push(p.provenance);
            Arc::new(p.data)
        });
        MarketData::new(
            Arc::new(Catalog::embedded().clone()),
            MarketInputs {
                advisor: Some(Arc::new(self.advisor.data)),
                prices,
                sources,
                ..Default::default()
            },
        )
    }
}

impl MarketSources {
    /// True when every source is a local file: loading them fetches nothing.
    pub fn all_local(&self) -> bool {
        !self.advisor.is_url() && !self.prices.as_ref().is_some_and(Source::is_url)
    }

    /// Loads every source, keeping `regions` (all when `None`). `last_good`, if given, is the
    /// data in use: new data that lost most of it is refused. The advisor and the price file
    /// load in parallel.
    pub async fn load(
        &self,
        regions: Option<&[&str]>,
        last_good: Option<&MarketInputs>,
    ) -> Result<LoadedMarket, SourceError> {
        let old_advisor = last_good.and_then(|m| m.advisor.as_deref());
        let old_prices = last_good.and_then(|m| m.prices.as_deref());
        let (advisor, prices) = tokio::join!(
            self.loader
                .load::<SpotAdvisor>(&self.advisor, regions, old_advisor),
            async {
                match &self.prices {
                    Some(s) => Some(self.loader.load::<PriceTable>(s, regions, old_prices).await),
                    None => None,
                }
            }
        );
        let advisor = advisor.map_err(|error| SourceError {
            kind: SourceKind::SpotAdvisor,
            error,
        })?;
        let prices = prices.transpose().map_err(|error| SourceError {
            kind: SourceKind::PriceFile,
            error,
        })?;
        Ok(LoadedMarket { advisor, prices })
    }
}
