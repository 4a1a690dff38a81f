//! Market data as validated values, joined with the catalog into what the optimizer reads.
//!
//! Inputs ([`MarketInputs`]) come from several sources, each with its own [`Provenance`]: the
//! Spot Advisor file (interruption bands and savings; no API has them), a price file, and live
//! EC2 data (spot prices per zone, on-demand prices from the Price List) that the shell fetches.
//! [`MarketData`] joins them per region and type, field by field, in one documented order:
//!
//! - **spot $/h**: live spot prices (the median over the zones that quote the type) > the price
//!   file's spot column > on-demand x (1 - advisor savings %), marked estimated;
//! - **on-demand $/h**: the Price List > the price file > spot / (1 - advisor savings %),
//!   marked estimated;
//! - **band**: the Spot Advisor only; **savings %**: the advisor, else from the two prices.
//!
//! "Live" includes the last good live data the shell kept when a refresh failed: the shell
//! decides what it hands over, and says so in the source's provenance.

pub mod advisor;
mod error;
pub mod prices;

pub use advisor::{AdvisorEntry, SpotAdvisor};
pub use advisor::{REGION_LOSS_LIMIT, RegionLoss};
pub use error::DataError;
pub use prices::{PRICE_HEADER, Price, PriceTable};

#[cfg(test)]
mod provenance_tests {
    use super::*;

    #[test]
    fn a_dated_name_is_the_datas_date_and_the_file_time_is_said_as_such() {
        assert_eq!(
            Provenance::date_in_name("/x/spot-advisor-data_2025-06-28.json").as_deref(),
            Some("2025-06-28")
        );
        assert_eq!(
            Provenance::date_in_name("ec2-linux-prices_2026-05.csv.gz").as_deref(),
            Some("2026-05")
        );
        assert_eq!(Provenance::date_in_name("spot-advisor-data.json"), None);
        assert_eq!(Provenance::date_in_name("https://h/a_20250628.json"), None);
        let p = Provenance {
            kind: SourceKind::SpotAdvisor,
            region: None,
            location: "spot-advisor-data_2025-06-28.json".into(),
            as_of: "2026-12-06T10:00:00Z".parse().unwrap(),
            stamp: Stamp::FileModified,
            published: None,
            dated: Some("2025-06-28".into()),
            from_cache: false,
            refresh_error: None,
        };
        assert_eq!(
            p.describe(Some("2026-12-06T10:42:00Z".parse().unwrap())),
            "data of 2025-06-28 (in its name); file modified 2026-12-06T10:00:00Z, 42m 0s ago"
        );
        assert_eq!(
            p.describe(None),
            "data of 2025-06-28 (in its name); file modified 2026-12-06T10:00:00Z"
        );
    }
}

use crate::catalog::{Catalog, RegionId};
use crate::types::Band;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Market data maps are keyed by region and type names parsed from large files: a fast
/// non-cryptographic hasher keeps loading cheap (the keys are not attacker-chosen per request).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The kinds of market data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// The Spot Advisor file (bands, savings).
    SpotAdvisor,
    /// A price CSV.
    PriceFile,
    /// EC2 DescribeSpotPriceHistory.
    SpotPriceHistory,
    /// The AWS Price List API (on-demand).
    PriceList,
    /// EC2 DescribeInstanceTypes.
    InstanceTypes,
    /// EC2 DescribeInstanceTypeOfferings.
    InstanceTypeOfferings,
    /// EC2 GetSpotPlacementScores.
    PlacementScores,
}

impl SourceKind {
    pub const ALL: [SourceKind; 7] = [
        SourceKind::SpotAdvisor,
        SourceKind::PriceFile,
        SourceKind::SpotPriceHistory,
        SourceKind::PriceList,
        SourceKind::InstanceTypes,
        SourceKind::InstanceTypeOfferings,
        SourceKind::PlacementScores,
    ];

    /// The name used in metrics labels and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::SpotAdvisor => "spot-advisor",
            SourceKind::PriceFile => "price-file",
            SourceKind::SpotPriceHistory => "spot-price-history",
            SourceKind::PriceList => "price-list",
            SourceKind::InstanceTypes => "instance-types",
            SourceKind::InstanceTypeOfferings => "instance-type-offerings",
            SourceKind::PlacementScores => "placement-scores",
        }
    }
}

/// Where a piece of market data came from and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    pub kind: SourceKind,
    /// The region, for per-region sources (the AWS APIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A URL, a file path, or the API call.
    pub location: String,
    /// Fetch time for a URL or an API, modification time for a file (what [`Self::stamp`]
    /// says): when our copy was last renewed, which staleness is measured by.
    pub as_of: jiff::Timestamp,
    /// What `as_of` is.
    pub stamp: Stamp,
    /// When the publisher last changed the data, where it said (a URL's `Last-Modified`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<jiff::Timestamp>,
    /// The date the data is from, where its name says (`spot-advisor-data_2025-06-28.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dated: Option<String>,
    /// Served from the on-disk cache, or kept from an earlier refresh, rather than fetched now.
    pub from_cache: bool,
    /// Set when the last refresh failed and older data is in use (or none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_error: Option<RefreshError>,
}

/// What a source's `as_of` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Stamp {
    /// When it was fetched (a URL, an API call).
    #[default]
    Fetched,
    /// When its file was last modified.
    FileModified,
}

impl Provenance {
    /// The date in a file or URL name: `_2025-06-28` or `_2026-05` before the extension.
    pub fn date_in_name(location: &str) -> Option<String> {
        let name = location.rsplit(['/', '\\']).next()?;
        let stem = name.split('.').next()?;
        let date = stem.rsplit('_').next()?;
        let b = date.as_bytes();
        let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
        let month = b.len() >= 7 && digits(0..4) && b[4] == b'-' && digits(5..7);
        let day = b.len() == 10 && month && b[7] == b'-' && digits(8..10);
        (b.len() == 7 && month || day).then(|| date.to_string())
    }

    /// Where the data's dates stand, for people: the date it is from, when it was published,
    /// and when our copy was fetched or its file modified; with `now`, how long ago.
    pub fn describe(&self, now: Option<jiff::Timestamp>) -> String {
        let at = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut parts = Vec::new();
        if let Some(d) = &self.dated {
            parts.push(format!("data of {d} (in its name)"));
        }
        if let Some(p) = self.published {
            parts.push(format!("published {} (Last-Modified)", at(p)));
        }
        let what = match self.stamp {
            Stamp::Fetched => "fetched",
            Stamp::FileModified => "file modified",
        };
        let ago = now.map_or(String::new(), |n| {
            format!(
                ", {} ago",
                age(n.duration_since(self.as_of).as_secs().max(0))
            )
        });
        parts.push(format!("{what} {}{ago}", at(self.as_of)));
        parts.join("; ")
    }
}

/// `3h 2m`, `5d 1h`, `4m 10s`.
fn age(secs: i64) -> String {
    if secs >= 86_400 {
        format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600)
    } else if secs >= 3600 {
        format!("{}h {}m", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}m {}s", secs / 60, secs % 60)
    }
}

/// Why the last refresh of a source failed: a fixed category (for metrics labels) and the
/// message. Serialized as the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshError {
    pub category: &'static str,
    pub message: String,
}

impl RefreshError {
    pub fn new(category: &'static str, message: impl std::fmt::Display) -> RefreshError {
        RefreshError {
            category,
            message: message.to_string(),
        }
    }
}

impl From<&DataError> for RefreshError {
    fn from(e: &DataError) -> RefreshError {
        RefreshError::new(e.category(), e)
    }
}

impl std::fmt::Display for RefreshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Serialize for RefreshError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.message)
    }
}

/// Live spot prices of one region: type -> [(zone, $/h)], the latest record per zone.
pub type ZonePrices = HashMap<String, Vec<(String, f64)>>;

/// Everything the market is joined from. Each field is optional: data not given is unknown.
#[derive(Debug, Clone, Default)]
pub struct MarketInputs {
    pub advisor: Option<Arc<SpotAdvisor>>,
    pub prices: Option<Arc<PriceTable>>,
    /// Live spot prices per region.
    pub spot_prices: BTreeMap<String, Arc<ZonePrices>>,
    /// Live on-demand prices per region: type -> $/h.
    pub on_demand: BTreeMap<String, Arc<HashMap<String, f64>>>,
    /// Where each input came from.
    pub sources: Vec<Provenance>,
}

impl MarketInputs {
    pub fn source(&self, kind: SourceKind) -> Option<&Provenance> {
        self.sources.iter().find(|p| p.kind == kind)
    }
}

/// Where a price in a [`Quote`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceFrom {
    /// No price.
    #[default]
    None,
    /// A live API answer (spot: the median over zones).
    Api,
    /// The price file.
    File,
    /// Derived from the other price and the advisor's savings.
    Estimated,
}

/// What the optimizer knows about one type in one region.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quote {
    pub band: Option<Band>,
    pub savings_pct: Option<i32>,
    pub on_demand: Option<f64>,
    pub on_demand_from: PriceFrom,
    pub spot: Option<f64>,
    pub spot_from: PriceFrom,
}

/// Market data joined with a catalog: for each catalog region, a [`Quote`] per catalog type,
/// so the optimizer reads by index instead of hashing names. A region's row is built on first
/// use, so a one-region run does not pay for the other regions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MarketData {
    catalog: Arc<Catalog>,
    inputs: Arc<MarketInputs>,
    rows: Arc<[OnceLock<RegionRow>]>,
}

#[derive(Debug)]
struct RegionRow {
    quotes: Vec<Quote>,
    /// Live spot price per zone (index into the region's zones) per type; empty when none.
    zone_spot: Vec<Box<[(u8, f64)]>>,
    priced: bool,
}

/// The median of `v` (sorted in place); the mean of the middle two for an even count.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl MarketData {
    pub fn new(catalog: Arc<Catalog>, inputs: MarketInputs) -> MarketData {
        let rows = (0..catalog.regions().len())
            .map(|_| OnceLock::new())
            .collect();
        MarketData {
            catalog,
            inputs: Arc::new(inputs),
            rows,
        }
    }

    /// Market data over the embedded catalog.
    pub fn embedded(inputs: MarketInputs) -> MarketData {
        MarketData::new(Arc::new(Catalog::embedded().clone()), inputs)
    }

    /// Market data with nothing in it: every band unknown, no prices.
    pub fn empty() -> MarketData {
        MarketData::embedded(MarketInputs::default())
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn catalog_arc(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn inputs(&self) -> &MarketInputs {
        &self.inputs
    }

    pub fn advisor(&self) -> Option<&SpotAdvisor> {
        self.inputs.advisor.as_deref()
    }

    pub fn sources(&self) -> &[Provenance] {
        &self.inputs.sources
    }

    fn row(&self, region: RegionId) -> &RegionRow {
        self.rows[region.slot()].get_or_init(|| self.build_row(region))
    }

    fn build_row(&self, region: RegionId) -> RegionRow {
        let reg = &self.catalog.regions()[region.slot()];
        let name = &*reg.name;
        let inputs = &*self.inputs;
        let adv = inputs.advisor.as_ref().and_then(|a| a.regions.get(name));
        let file = inputs.prices.as_ref().and_then(|p| p.regions.get(name));
        let live_spot = inputs.spot_prices.get(name);
        let live_od = inputs.on_demand.get(name);
        let mut zone_spot = Vec::with_capacity(self.catalog.len());
        let mut priced = false;
        let quotes = self
            .catalog
            .types()
            .iter()
            .map(|t| {
                let a = adv.and_then(|m| m.get(&*t.name));
                let f = file.and_then(|m| m.get(&*t.name));
                let zones: Box<[(u8, f64)]> = live_spot
                    .and_then(|m| m.get(&*t.name))
                    .map(|v| {
                        let mut z: Vec<(u8, f64)> = v
                            .iter()
                            .filter_map(|(zone, p)| {
                                let i = reg.zones.iter().position(|k| **k == **zone)?;
                                (t.zone_mask(region) & (1 << i) != 0 || t.zone_mask(region) == 0)
                                    .then_some((i as u8, *p))
                            })
                            .collect();
                        z.sort_by_key(|(i, _)| *i);
                        z.into_boxed_slice()
                    })
                    .unwrap_or_default();
                let mut zp: Vec<f64> = zones.iter().map(|(_, p)| *p).collect();
                let live = median(&mut zp);
                zone_spot.push(zones);
                let savings = a.map(|a| f64::from(a.savings_pct) / 100.0);
                let (mut spot, mut spot_from) = match (live, f.and_then(|f| f.spot)) {
                    (Some(s), _) => (Some(s), PriceFrom::Api),
                    (None, Some(s)) => (Some(s), PriceFrom::File),
                    _ => (None, PriceFrom::None),
                };
                let (mut on_demand, mut on_demand_from) =
                    match (live_od.and_then(|m| m.get(&*t.name)), f) {
                        (Some(p), _) => (Some(*p), PriceFrom::Api),
                        (None, Some(f)) => (Some(f.on_demand), PriceFrom::File),
                        _ => (None, PriceFrom::None),
                    };
                match (spot, on_demand, savings) {
                    (None, Some(od), Some(s)) => {
                        spot = Some(od * (1.0 - s));
                        spot_from = PriceFrom::Estimated;
                    }
                    (Some(sp), None, Some(s)) if s < 1.0 => {
                        on_demand = Some(sp / (1.0 - s));
                        on_demand_from = PriceFrom::Estimated;
                    }
                    _ => {}
                }
                priced |= spot.is_some();
                // The advisor's savings figure wins; prices give it where the advisor has none.
                let savings_pct = a.map(|a| a.savings_pct).or(match (spot, on_demand) {
                    (Some(s), Some(od)) if od > 0.0 => {
                        Some(((1.0 - s / od) * 100.0).round() as i32)
                    }
                    _ => None,
                });
                Quote {
                    band: a.map(|a| a.band),
                    savings_pct,
                    on_demand,
                    on_demand_from,
                    spot,
                    spot_from,
                }
            })
            .collect();
        RegionRow {
            quotes,
            zone_spot,
            priced,
        }
    }

    pub fn quote(&self, region: RegionId, type_index: usize) -> Quote {
        self.row(region).quotes[type_index]
    }

    /// All quotes of a region, in catalog order.
    pub fn quotes(&self, region: RegionId) -> &[Quote] {
        &self.row(region).quotes
    }

    /// Live spot $/h per zone of a type (zone index into the region's zones), if any.
    pub fn zone_spot(&self, region: RegionId, type_index: usize) -> &[(u8, f64)] {
        &self.row(region).zone_spot[type_index]
    }

    /// Whether any spot price is known in this region.
    pub fn has_prices(&self, region: RegionId) -> bool {
        self.row(region).priced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone_prices(ty: &str, z: &[(&str, f64)]) -> Arc<ZonePrices> {
        let mut m = ZonePrices::default();
        m.insert(
            ty.into(),
            z.iter().map(|(a, b)| (a.to_string(), *b)).collect(),
        );
        Arc::new(m)
    }

    #[test]
    fn precedence_live_over_file_over_estimate() {
        let mut prices = PriceTable::default();
        let mut r = HashMap::default();
        r.insert(
            "m5.large".to_string(),
            Price {
                on_demand: 0.096,
                spot: Some(0.04),
            },
        );
        r.insert(
            "m6i.large".to_string(),
            Price {
                on_demand: 0.096,
                spot: None,
            },
        );
        prices.regions.insert("us-east-1".into(), r);
        let mut adv = SpotAdvisor::default();
        let mut e = HashMap::default();
        for t in ["m5.large", "m6i.large", "c5.large"] {
            e.insert(
                t.to_string(),
                AdvisorEntry {
                    savings_pct: 50,
                    band: Band::new(1).unwrap(),
                },
            );
        }
        adv.regions.insert("us-east-1".into(), e);
        let mut inputs = MarketInputs {
            advisor: Some(Arc::new(adv)),
            prices: Some(Arc::new(prices)),
            ..Default::default()
        };
        inputs.spot_prices.insert(
            "us-east-1".into(),
            zone_prices(
                "m5.large",
                &[
                    ("us-east-1a", 0.03),
                    ("us-east-1b", 0.05),
                    ("us-east-1c", 0.02),
                ],
            ),
        );
        let mut c5 = HashMap::default();
        c5.insert("c5.large".to_string(), 0.085);
        inputs.on_demand.insert("us-east-1".into(), Arc::new(c5));
        let m = MarketData::embedded(inputs);
        let cat = m.catalog();
        let east = cat.region("us-east-1").unwrap();
        let q = |t: &str| m.quote(east, cat.index_of(t).unwrap());
        assert_eq!(
            (q("m5.large").spot, q("m5.large").spot_from),
            (Some(0.03), PriceFrom::Api)
        );
        assert_eq!(q("m5.large").on_demand_from, PriceFrom::File);
        assert_eq!(
            m.zone_spot(east, cat.index_of("m5.large").unwrap()).len(),
            3
        );
        assert_eq!(
            (q("m6i.large").spot, q("m6i.large").spot_from),
            (Some(0.048), PriceFrom::Estimated)
        );
        let c = q("c5.large");
        assert_eq!(
            (c.on_demand, c.on_demand_from),
            (Some(0.085), PriceFrom::Api)
        );
        assert_eq!(c.spot_from, PriceFrom::Estimated);
        assert!(m.has_prices(east));
    }

    #[test]
    fn median_rule() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
