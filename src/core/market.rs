//! Market data as validated values: AWS Spot Advisor interruption bands and savings, and prices.
//!
//! Parsing is strict: every error names the file and the field, so an operator can fix the
//! source. [`SpotAdvisor::check_replaces`] and [`PriceTable::check_replaces`] refuse data that
//! parses but has lost most of what the last good data had (a truncated mirror, a wrong file).

use crate::core::catalog::{Catalog, RegionId};
use crate::core::types::Band;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// Market data maps are keyed by region and type names we parse from large files: a fast
/// non-cryptographic hasher keeps loading cheap (the keys are not attacker-chosen per request).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Why market data was refused. Every variant names the file and the field or line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error(
        "{file}: not valid JSON at line {line} column {column}: {message} (is the file truncated or not a Spot Advisor file?)"
    )]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: field `{field}`: {problem}")]
    Field {
        file: String,
        field: String,
        problem: String,
    },
    #[error("{file}: line {line}, column `{column}`: {problem}")]
    Csv {
        file: String,
        line: u64,
        column: String,
        problem: String,
    },
    #[error(
        "{file}: has {new} {what} where the last good data had {old} ({lost} lost); refusing it and keeping the last good data"
    )]
    Shrunk {
        file: String,
        what: &'static str,
        old: usize,
        new: usize,
        lost: usize,
    },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
}

impl DataError {
    /// A short fixed category for metrics labels and event reasons (never free text).
    pub fn category(&self) -> &'static str {
        match self {
            DataError::Json { .. } => "invalid_json",
            DataError::Field { .. } => "invalid_field",
            DataError::Csv { .. } => "invalid_csv",
            DataError::Shrunk { .. } => "data_shrunk",
            DataError::Io { .. } => "io",
        }
    }
}

/// A type's entry in one region of the Spot Advisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AdvisorEntry {
    /// Savings over on-demand, percent (can be negative).
    pub savings_pct: i32,
    pub band: Band,
}

/// The parsed Spot Advisor file (Linux entries).
#[derive(Debug, Clone, PartialEq)]
pub struct SpotAdvisor {
    /// region -> instance type -> entry
    pub regions: HashMap<String, HashMap<String, AdvisorEntry>>,
    /// Instance types the file describes (`instance_types` key), with its EMR flag.
    pub instance_types: HashMap<String, AdvisorType>,
    pub global_rate: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct AdvisorType {
    #[serde(default)]
    pub emr: bool,
    pub cores: u32,
    pub ram_gb: f64,
}

#[derive(Deserialize)]
struct RawAdvisor {
    instance_types: HashMap<String, AdvisorType>,
    ranges: Vec<RawRange>,
    spot_advisor: HashMap<String, HashMap<String, HashMap<String, RawEntry>>>,
    #[serde(default)]
    global_rate: Option<String>,
}

#[derive(Deserialize)]
struct RawRange {
    index: i64,
    label: String,
    #[serde(default)]
    #[allow(dead_code)]
    dots: Option<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    max: Option<i64>,
}

#[derive(Deserialize)]
struct RawEntry {
    s: i64,
    r: i64,
}

fn json_error(file: &str, e: serde_path_to_error::Error<serde_json::Error>) -> DataError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        DataError::Json {
            file: file.into(),
            line: inner.line(),
            column: inner.column(),
            message: inner.to_string(),
        }
    } else {
        let message = inner.to_string();
        // serde's message ends with " at line L column C"; the path says more.
        let problem = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        DataError::Field {
            file: file.into(),
            field: if path == "." {
                "(top level)".into()
            } else {
                path
            },
            problem,
        }
    }
}

impl SpotAdvisor {
    /// Parses a `spot-advisor-data.json` document. `file` names the source in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<SpotAdvisor, DataError> {
        // Parse without path tracking first (fast); only a failure pays for the path.
        let raw: RawAdvisor = match serde_json::from_slice(bytes) {
            Ok(raw) => raw,
            Err(_) => {
                let de = &mut serde_json::Deserializer::from_slice(bytes);
                let err = serde_path_to_error::deserialize::<_, RawAdvisor>(de)
                    .err()
                    .expect("the same input fails again");
                return Err(json_error(file, err));
            }
        };
        let field = |field: String, problem: String| DataError::Field {
            file: file.into(),
            field,
            problem,
        };
        // The five bands must be the ones we know: an advisor with other bands means our
        // labels and ranking would be wrong.
        let mut seen = [false; 5];
        for (i, r) in raw.ranges.iter().enumerate() {
            let band = u8::try_from(r.index)
                .ok()
                .and_then(Band::new)
                .ok_or_else(|| {
                    field(
                        format!("ranges[{i}].index"),
                        format!("{} is not a band index 0..4", r.index),
                    )
                })?;
            seen[usize::from(band.index())] = true;
            if r.label.trim().is_empty() {
                return Err(field(format!("ranges[{i}].label"), "is empty".into()));
            }
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(field(
                "ranges".into(),
                format!("band {missing} is missing (want indexes 0..4)"),
            ));
        }
        let mut regions =
            HashMap::with_capacity_and_hasher(raw.spot_advisor.len(), Default::default());
        for (region, mut by_os) in raw.spot_advisor {
            let Some(linux) = by_os.remove("Linux") else {
                return Err(field(
                    format!("spot_advisor.{region}"),
                    "has no `Linux` entries".into(),
                ));
            };
            let mut entries = HashMap::with_capacity_and_hasher(linux.len(), Default::default());
            for (ty, e) in linux {
                let band = u8::try_from(e.r).ok().and_then(Band::new).ok_or_else(|| {
                    field(
                        format!("spot_advisor.{region}.Linux.{ty}.r"),
                        format!("{} is not a band index in `ranges` (0..4)", e.r),
                    )
                })?;
                if !(-1000..=100).contains(&e.s) {
                    return Err(field(
                        format!("spot_advisor.{region}.Linux.{ty}.s"),
                        format!("{} is not a savings percentage", e.s),
                    ));
                }
                entries.insert(
                    ty,
                    AdvisorEntry {
                        savings_pct: e.s as i32,
                        band,
                    },
                );
            }
            regions.insert(region, entries);
        }
        if regions.is_empty() {
            return Err(field("spot_advisor".into(), "has no regions".into()));
        }
        Ok(SpotAdvisor {
            regions,
            instance_types: raw.instance_types,
            global_rate: raw.global_rate,
        })
    }

    pub fn entry(&self, region: &str, ty: &str) -> Option<AdvisorEntry> {
        self.regions.get(region)?.get(ty).copied()
    }

    pub fn entry_count(&self) -> usize {
        self.regions.values().map(HashMap::len).sum()
    }

    /// Refuses `self` as a replacement for `last_good` when it lost most of the regions or of
    /// the (region, type) entries that `last_good` had.
    pub fn check_replaces(&self, last_good: &SpotAdvisor, file: &str) -> Result<(), DataError> {
        check_nested_loss(
            file,
            "region/type entries",
            &self.regions,
            &last_good.regions,
        )
    }
}

/// Refuses `new` when it lost more than half of the regions, or of the (region, type) entries,
/// that `old` had.
fn check_nested_loss<V>(
    file: &str,
    entries: &'static str,
    new: &HashMap<String, HashMap<String, V>>,
    old: &HashMap<String, HashMap<String, V>>,
) -> Result<(), DataError> {
    let lost_regions = old.keys().filter(|r| !new.contains_key(*r)).count();
    check_loss(file, "regions", old.len(), new.len(), lost_regions)?;
    let count =
        |m: &HashMap<String, HashMap<String, V>>| m.values().map(HashMap::len).sum::<usize>();
    let lost: usize = old
        .iter()
        .map(|(r, o)| match new.get(r) {
            Some(n) => o.keys().filter(|t| !n.contains_key(*t)).count(),
            None => o.len(),
        })
        .sum();
    check_loss(file, entries, count(old), count(new), lost)
}

fn check_loss(
    file: &str,
    what: &'static str,
    old: usize,
    new: usize,
    lost: usize,
) -> Result<(), DataError> {
    if old > 0 && lost * 2 > old {
        return Err(DataError::Shrunk {
            file: file.into(),
            what,
            old,
            new,
            lost,
        });
    }
    Ok(())
}

/// One row of the price file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub on_demand: f64,
    pub spot: Option<f64>,
}

/// Prices per region and instance type, USD per instance-hour (Linux, shared tenancy).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceTable {
    pub regions: HashMap<String, HashMap<String, Price>>,
}

/// The header the price CSV must have.
pub const PRICE_HEADER: [&str; 4] = [
    "region",
    "instance_type",
    "on_demand_usd_per_hour",
    "spot_usd_per_hour",
];

impl PriceTable {
    /// Parses `region,instance_type,on_demand_usd_per_hour,spot_usd_per_hour` (spot may be empty).
    pub fn parse(bytes: &[u8], file: &str) -> Result<PriceTable, DataError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::Headers)
            .from_reader(bytes);
        let csv_err = |line: u64, column: &str, problem: String| DataError::Csv {
            file: file.into(),
            line,
            column: column.into(),
            problem,
        };
        let header = reader
            .headers()
            .map_err(|e| csv_err(1, "(header)", e.to_string()))?
            .clone();
        if header.iter().collect::<Vec<_>>() != PRICE_HEADER {
            return Err(csv_err(
                1,
                "(header)",
                format!(
                    "is `{}`; want `{}`",
                    header.iter().collect::<Vec<_>>().join(","),
                    PRICE_HEADER.join(",")
                ),
            ));
        }
        let mut regions: HashMap<String, HashMap<String, Price>> = HashMap::default();
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    return Err(csv_err(line, "(row)", e.to_string()));
                }
            }
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != PRICE_HEADER.len() {
                return Err(csv_err(
                    line,
                    "(row)",
                    format!("has {} columns; want 4", record.len()),
                ));
            }
            let region = record[0].trim();
            let ty = record[1].trim();
            if region.is_empty() {
                return Err(csv_err(line, PRICE_HEADER[0], "is empty".into()));
            }
            if ty.is_empty() {
                return Err(csv_err(line, PRICE_HEADER[1], "is empty".into()));
            }
            let price = |column: usize, required: bool| -> Result<Option<f64>, DataError> {
                let text = record[column].trim();
                if text.is_empty() {
                    return if required {
                        Err(csv_err(line, PRICE_HEADER[column], "is empty".into()))
                    } else {
                        Ok(None)
                    };
                }
                match text.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                    Ok(v) if v < 0.0 => Err(csv_err(
                        line,
                        PRICE_HEADER[column],
                        format!("{text} is negative; prices are USD per hour, >= 0"),
                    )),
                    _ => Err(csv_err(
                        line,
                        PRICE_HEADER[column],
                        format!("'{text}' is not a price (USD per hour)"),
                    )),
                }
            };
            let on_demand = price(2, true)?.unwrap_or_default();
            let spot = price(3, false)?;
            // Rows come grouped by region: look the region up before allocating its name.
            let table = match regions.get_mut(region) {
                Some(t) => t,
                None => regions.entry(region.to_string()).or_default(),
            };
            table.insert(ty.to_string(), Price { on_demand, spot });
        }
        if regions.is_empty() {
            return Err(csv_err(2, "(row)", "the file has no price rows".into()));
        }
        Ok(PriceTable { regions })
    }

    pub fn get(&self, region: &str, ty: &str) -> Option<Price> {
        self.regions.get(region)?.get(ty).copied()
    }

    pub fn entry_count(&self) -> usize {
        self.regions.values().map(HashMap::len).sum()
    }

    /// Like [`SpotAdvisor::check_replaces`], for prices.
    pub fn check_replaces(&self, last_good: &PriceTable, file: &str) -> Result<(), DataError> {
        check_nested_loss(
            file,
            "region/type prices",
            &self.regions,
            &last_good.regions,
        )
    }
}

/// Where a piece of market data came from and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    /// A URL or a file path.
    pub location: String,
    /// Fetch time for a URL, modification time for a file.
    pub as_of: jiff::Timestamp,
    /// Served from the on-disk cache rather than fetched now.
    pub from_cache: bool,
    /// Set when a refresh failed and older data is in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_error: Option<String>,
}

/// What the optimizer knows about one type in one region.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quote {
    pub band: Option<Band>,
    pub savings_pct: Option<i32>,
    pub on_demand: Option<f64>,
    pub spot: Option<f64>,
    /// The spot price was estimated as on-demand x (1 - savings%).
    pub spot_estimated: bool,
}

/// Market data joined with the catalog: for each catalog region, a [`Quote`] per catalog type,
/// so the optimizer reads by index instead of hashing names. A region's row is built on first
/// use, so a one-region CLI run does not pay for the other regions.
#[derive(Debug, Clone)]
pub struct MarketData {
    pub advisor: Option<Arc<SpotAdvisor>>,
    pub prices: Option<Arc<PriceTable>>,
    pub advisor_source: Option<Provenance>,
    pub prices_source: Option<Provenance>,
    catalog: &'static Catalog,
    rows: Arc<[OnceLock<RegionRow>]>,
}

#[derive(Debug)]
struct RegionRow {
    quotes: Vec<Quote>,
    priced: bool,
}

impl MarketData {
    pub fn new(
        catalog: &'static Catalog,
        advisor: Option<Arc<SpotAdvisor>>,
        advisor_source: Option<Provenance>,
        prices: Option<Arc<PriceTable>>,
        prices_source: Option<Provenance>,
    ) -> MarketData {
        MarketData {
            advisor,
            prices,
            advisor_source,
            prices_source,
            catalog,
            rows: (0..catalog.regions().len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    fn row(&self, region: RegionId) -> &RegionRow {
        self.rows[region.slot()].get_or_init(|| {
            let name = &self.catalog.regions()[region.slot()].name;
            let adv = self.advisor.as_ref().and_then(|a| a.regions.get(name));
            let pr = self.prices.as_ref().and_then(|p| p.regions.get(name));
            let quotes = self
                .catalog
                .types()
                .iter()
                .map(|t| {
                    let a = adv.and_then(|m| m.get(&t.name));
                    let p = pr.and_then(|m| m.get(&t.name));
                    let on_demand = p.map(|p| p.on_demand);
                    let (spot, spot_estimated) = match (p.and_then(|p| p.spot), on_demand, a) {
                        (Some(s), _, _) => (Some(s), false),
                        (None, Some(od), Some(a)) => {
                            (Some(od * (1.0 - f64::from(a.savings_pct) / 100.0)), true)
                        }
                        _ => (None, false),
                    };
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
                        spot,
                        spot_estimated,
                    }
                })
                .collect();
            RegionRow {
                quotes,
                priced: pr.is_some_and(|p| !p.is_empty()),
            }
        })
    }

    /// Market data with nothing in it: every band unknown, no prices.
    pub fn empty(catalog: &'static Catalog) -> MarketData {
        MarketData::new(catalog, None, None, None, None)
    }

    pub fn quote(&self, region: RegionId, type_index: usize) -> Quote {
        self.row(region).quotes[type_index]
    }

    /// All quotes of a region, in catalog order.
    pub fn quotes(&self, region: RegionId) -> &[Quote] {
        &self.row(region).quotes
    }

    /// Whether any price is known in this region.
    pub fn has_prices(&self, region: RegionId) -> bool {
        self.row(region).priced
    }

    /// Regions named by the advisor file.
    pub fn advisor_regions(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .advisor
            .as_ref()
            .map(|a| a.regions.keys().map(String::as_str).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADVISOR: &str = r#"{"instance_types":{"m5.large":{"emr":true,"cores":2,"ram_gb":8.0}},
      "ranges":[{"index":0,"label":"<5%","dots":0,"max":5},{"index":1,"label":"5-10%","dots":1,"max":11},
      {"index":2,"label":"10-15%","dots":2,"max":16},{"index":3,"label":"15-20%","dots":3,"max":22},
      {"index":4,"label":">20%","dots":4,"max":100}],
      "spot_advisor":{"us-east-1":{"Linux":{"m5.large":{"s":70,"r":1}},"Windows":{}}},
      "global_rate":"<10%"}"#;

    #[test]
    fn parses_advisor() {
        let a = SpotAdvisor::parse(ADVISOR.as_bytes(), "a.json").unwrap();
        let e = a.entry("us-east-1", "m5.large").unwrap();
        assert_eq!((e.savings_pct, e.band.index()), (70, 1));
    }

    #[test]
    fn truncated_advisor_names_file_and_position() {
        let err = SpotAdvisor::parse(&ADVISOR.as_bytes()[..200], "a.json").unwrap_err();
        assert!(matches!(err, DataError::Json { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("a.json: not valid JSON at line"),
            "{err}"
        );
    }

    #[test]
    fn unknown_band_names_the_field() {
        let bad = ADVISOR.replace(r#""s":70,"r":1"#, r#""s":70,"r":7"#);
        let err = SpotAdvisor::parse(bad.as_bytes(), "a.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.json: field `spot_advisor.us-east-1.Linux.m5.large.r`: 7 is not a band index in `ranges` (0..4)"
        );
    }

    #[test]
    fn wrong_schema_names_the_field() {
        let bad = ADVISOR.replace("\"spot_advisor\"", "\"spot_adviser\"");
        let err = SpotAdvisor::parse(bad.as_bytes(), "a.json").unwrap_err();
        assert!(
            err.to_string().contains("missing field `spot_advisor`"),
            "{err}"
        );
        let bad = ADVISOR.replace(r#""s":70"#, r#""s":"high""#);
        let err = SpotAdvisor::parse(bad.as_bytes(), "a.json").unwrap_err();
        assert!(
            err.to_string()
                .contains("field `spot_advisor.us-east-1.Linux.m5.large.s`"),
            "{err}"
        );
    }

    #[test]
    fn prices_reject_negative_and_bad_header() {
        let ok = "region,instance_type,on_demand_usd_per_hour,spot_usd_per_hour\nus-east-1,m5.large,0.096,\n";
        let t = PriceTable::parse(ok.as_bytes(), "p.csv").unwrap();
        assert_eq!(t.get("us-east-1", "m5.large").unwrap().spot, None);
        let neg = ok.replace("0.096,", "-0.1,");
        let err = PriceTable::parse(neg.as_bytes(), "p.csv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.csv: line 2, column `on_demand_usd_per_hour`: -0.1 is negative; prices are USD per hour, >= 0"
        );
        let hdr = ok.replace("spot_usd_per_hour", "spot");
        assert!(
            PriceTable::parse(hdr.as_bytes(), "p.csv")
                .unwrap_err()
                .to_string()
                .contains("(header)")
        );
    }

    #[test]
    fn shrunk_data_is_refused() {
        let a = SpotAdvisor::parse(ADVISOR.as_bytes(), "a.json").unwrap();
        let mut b = a.clone();
        b.regions.insert("eu-west-1".into(), HashMap::default());
        b.regions
            .get_mut("eu-west-1")
            .unwrap()
            .insert("m5.large".into(), a.entry("us-east-1", "m5.large").unwrap());
        assert!(b.check_replaces(&a, "new.json").is_ok());
        let mut c = b.clone();
        c.regions.remove("us-east-1");
        assert!(
            c.check_replaces(&b, "new.json").is_ok(),
            "losing half is allowed"
        );
        c.regions.clear();
        c.regions.insert("ap-south-1".into(), HashMap::default());
        assert!(matches!(
            c.check_replaces(&b, "new.json"),
            Err(DataError::Shrunk { .. })
        ));
    }
}
