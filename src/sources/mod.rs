//! Where market data comes from: the Spot Advisor file and a price file (paths or URLs, plain
//! or gzip, URLs cached on disk), and with `--aws` live EC2 and Price List data. The core's
//! parsers validate; this module adds I/O, freshness and fallbacks, and hands the core one
//! [`MarketInputs`] and a catalog [`Overlay`]: the optimizer never sees a source.

pub mod aws;
pub mod cache;
pub mod file;

pub use file::{Loaded, Loader, Source};

use aws::{Aws, AwsOptions, LiveData};
use spotplan_core::catalog::Overlay;
use spotplan_core::market::{
    DataError, MarketInputs, PriceTable, Provenance, SourceKind, SpotAdvisor,
};
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

/// Live AWS data, connected on first use (the credential check runs once per process).
#[derive(Debug, Clone)]
pub struct AwsSetup {
    opts: AwsOptions,
    conn: Arc<tokio::sync::OnceCell<Result<Aws, aws::Unavailable>>>,
}

impl AwsSetup {
    pub fn new(opts: AwsOptions) -> AwsSetup {
        AwsSetup {
            opts,
            conn: Arc::default(),
        }
    }

    /// The connected clients, or why there are none (no credentials, within 5 s).
    pub async fn get(&self) -> Result<&Aws, &aws::Unavailable> {
        self.conn
            .get_or_init(|| Aws::connect(self.opts.clone()))
            .await
            .as_ref()
    }
}

/// Why a plan has no placement scores.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("placement scores need live AWS data (--aws)")]
    NoLiveData,
    #[error(transparent)]
    Unavailable(aws::Unavailable),
    #[error(transparent)]
    Call(#[from] aws::AwsError),
    #[error("EC2 returned no placement scores")]
    Empty,
}

/// The configured sources of market data.
#[derive(Debug, Clone)]
pub struct MarketSources {
    pub advisor: Source,
    pub prices: Option<Source>,
    pub loader: Loader,
    pub aws: Option<AwsSetup>,
}

/// What one load of every source gave.
#[derive(Debug, Clone)]
pub struct LoadedMarket {
    pub advisor: Loaded<Arc<SpotAdvisor>>,
    pub prices: Option<Loaded<Arc<PriceTable>>>,
    pub live: Option<LiveData>,
    /// Why live data was asked for and could not be had at all (no credentials).
    pub aws_unavailable: Option<String>,
    /// Regions whose new file data was refused against the last good data (lost, or most of
    /// their types lost): the last good data for them stays.
    pub refused: Vec<RegionRefusal>,
}

/// A region of a source whose new data was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionRefusal {
    pub kind: SourceKind,
    pub location: String,
    pub loss: spotplan_core::market::RegionLoss,
}

impl std::fmt::Display for RegionRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): the last refresh {}; keeping the data loaded before for {}",
            self.kind.as_str(),
            self.location,
            self.loss,
            self.loss.region
        )
    }
}

impl LoadedMarket {
    /// Warnings of every source.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.advisor.warnings.clone();
        if let Some(p) = &self.prices {
            out.extend(p.warnings.iter().cloned());
        }
        if let Some(why) = &self.aws_unavailable {
            out.push(format!(
                "--aws: {why}; using the Spot Advisor and price files instead"
            ));
        }
        for p in self.live.iter().flat_map(|l| &l.problems) {
            out.push(format!(
                "--aws: {} in {}: {} (using the last good copy, else the files)",
                p.kind.as_str(),
                p.region,
                p.error
            ));
        }
        out
    }

    /// The inputs the core joins.
    pub fn inputs(&self) -> MarketInputs {
        let mut inputs = MarketInputs {
            advisor: Some(self.advisor.data.clone()),
            prices: self.prices.as_ref().map(|p| p.data.clone()),
            sources: vec![self.advisor.provenance.clone()],
            ..Default::default()
        };
        inputs
            .sources
            .extend(self.prices.iter().map(|p| p.provenance.clone()));
        if let Some(live) = &self.live {
            live.add_to(&mut inputs);
        }
        inputs
    }

    /// What live data says about the catalog.
    pub fn overlay(&self) -> Overlay {
        self.live
            .as_ref()
            .map(LiveData::overlay)
            .unwrap_or_default()
    }

    /// Joined with the embedded catalog, overlaid with live types and offerings.
    pub fn join(&self) -> MarketData {
        let overlay = self.overlay();
        let catalog = if overlay.is_empty() {
            Catalog::embedded().clone()
        } else {
            Catalog::embedded().overlay(&overlay)
        };
        MarketData::new(Arc::new(catalog), self.inputs())
    }
}

impl MarketSources {
    /// True when every source is a local file: loading them fetches nothing.
    pub fn all_local(&self) -> bool {
        !self.advisor.is_url()
            && !self.prices.as_ref().is_some_and(Source::is_url)
            && self.aws.is_none()
    }

    /// Loads every source: the files keeping `regions` (all when `None`), live data for
    /// `live_regions`. `last`, if given, is the data in use: new file data that lost most of it
    /// is refused, and its live copies serve while young and stand in for failed calls.
    pub async fn load(
        &self,
        regions: Option<&[&str]>,
        live_regions: &[String],
        last: Option<&LoadedMarket>,
    ) -> Result<LoadedMarket, SourceError> {
        let old_advisor = last.map(|m| &*m.advisor.data);
        let old_prices = last.and_then(|m| m.prices.as_ref()).map(|p| &*p.data);
        let (advisor, prices, live) = tokio::join!(
            self.loader
                .load::<SpotAdvisor>(&self.advisor, regions, old_advisor),
            async {
                match &self.prices {
                    Some(s) => Some(self.loader.load::<PriceTable>(s, regions, old_prices).await),
                    None => None,
                }
            },
            self.load_live(live_regions, last.and_then(|m| m.live.as_ref())),
        );
        let mut advisor = advisor.map_err(|error| SourceError {
            kind: SourceKind::SpotAdvisor,
            error,
        })?;
        let mut prices = prices.transpose().map_err(|error| SourceError {
            kind: SourceKind::PriceFile,
            error,
        })?;
        // Judged region by region against the data in use: a region lost keeps its last good
        // data, and is named.
        let refusal = |p: &Provenance, loss| RegionRefusal {
            kind: p.kind,
            location: p.location.clone(),
            loss,
        };
        let mut refused: Vec<RegionRefusal> = Vec::new();
        if let Some(old) = old_advisor {
            let losses = advisor.data.keep_lost_regions(old, regions);
            refused.extend(losses.into_iter().map(|l| refusal(&advisor.provenance, l)));
        }
        if let (Some(p), Some(old)) = (prices.as_mut(), old_prices) {
            let losses = p.data.keep_lost_regions(old, regions);
            refused.extend(losses.into_iter().map(|l| refusal(&p.provenance, l)));
        }
        let (live, aws_unavailable) = live;
        Ok(LoadedMarket {
            advisor: advisor.map_data(Arc::new),
            prices: prices.map(|p| p.map_data(Arc::new)),
            live,
            aws_unavailable,
            refused,
        })
    }

    /// Orders the plan's zones and near-tied types by spot placement scores for its top types
    /// and size. Needs live data; a failure leaves the plan as it was and says why.
    pub async fn placement(&self, plan: &mut spotplan_core::Plan) -> Result<(), PlacementError> {
        let scores = self.placement_scores(plan).await?;
        plan.apply_placement_scores(&scores);
        Ok(())
    }

    /// Spot placement scores per zone for `plan`'s top types and size (cached a day per
    /// configuration).
    pub async fn placement_scores(
        &self,
        plan: &spotplan_core::Plan,
    ) -> Result<Vec<(String, u8)>, PlacementError> {
        /// The most types one placement-score request names.
        const TYPES: usize = 10;
        let Some(setup) = &self.aws else {
            return Err(PlacementError::NoLiveData);
        };
        let aws = setup
            .get()
            .await
            .map_err(|e| PlacementError::Unavailable(e.clone()))?;
        let types: Vec<String> = plan
            .candidates
            .iter()
            .take(TYPES)
            .map(|c| c.instance_type.clone())
            .collect();
        let scores = aws
            .placement_scores(&plan.region, &types, plan.vcpus)
            .await?;
        if scores.is_empty() {
            return Err(PlacementError::Empty);
        }
        Ok(scores)
    }

    async fn load_live(
        &self,
        regions: &[String],
        last: Option<&LiveData>,
    ) -> (Option<LiveData>, Option<String>) {
        let Some(setup) = &self.aws else {
            return (None, None);
        };
        if regions.is_empty() {
            return (last.cloned(), None);
        }
        match setup.get().await {
            Ok(aws) => (Some(aws.load(regions, last).await), None),
            Err(why) => (last.cloned(), Some(why.to_string())),
        }
    }
}

impl<T> Loaded<T> {
    pub fn map_data<U>(self, f: impl FnOnce(T) -> U) -> Loaded<U> {
        Loaded {
            data: f(self.data),
            provenance: self.provenance,
            warnings: self.warnings,
        }
    }
}
