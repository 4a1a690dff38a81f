//! The AWS Spot Advisor file (`spot-advisor-data.json`): interruption bands and savings per
//! region and instance type (Linux entries).

use super::HashMap;
use super::error::{DataError, check_loss};
use crate::types::Band;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// A type's entry in one region of the Spot Advisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AdvisorEntry {
    /// Savings over on-demand, percent (can be negative).
    pub savings_pct: i32,
    pub band: Band,
}

/// The parsed Spot Advisor file (Linux entries).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpotAdvisor {
    /// region -> instance type -> entry
    pub regions: HashMap<String, HashMap<String, AdvisorEntry>>,
    pub global_rate: Option<String>,
    /// Regions the file has, including those skipped by a region filter.
    pub region_count: usize,
}

#[derive(Deserialize)]
struct RawRange {
    index: i64,
    label: String,
}

/// One type's entry, validated while it is read (so regions a filter skips are validated too,
/// without being stored).
#[derive(Deserialize)]
struct RawEntry {
    s: Savings,
    r: BandIndex,
}

/// A savings percentage, -1000..=100.
struct Savings(i32);

impl<'de> Deserialize<'de> for Savings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Savings, D::Error> {
        let s = i64::deserialize(d)?;
        if (-1000..=100).contains(&s) {
            Ok(Savings(s as i32))
        } else {
            Err(serde::de::Error::custom(format!(
                "{s} is not a savings percentage"
            )))
        }
    }
}

/// A band index in `ranges`, 0..=4.
struct BandIndex(Band);

impl<'de> Deserialize<'de> for BandIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BandIndex, D::Error> {
        let r = i64::deserialize(d)?;
        u8::try_from(r)
            .ok()
            .and_then(Band::new)
            .map(BandIndex)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("{r} is not a band index in `ranges` (0..4)"))
            })
    }
}

/// The regions to keep; `None` keeps all. Skipped regions are still read as JSON (a syntax
/// error anywhere is caught) but not validated or stored.
#[derive(Clone, Copy)]
struct Keep<'a>(Option<&'a [&'a str]>);

impl Keep<'_> {
    fn wants(&self, region: &str) -> bool {
        self.0.is_none_or(|r| r.contains(&region))
    }
}

/// A region's Linux entries, if it has any.
type RawLinux = Option<Vec<(String, RawEntry)>>;

struct Raw {
    ranges: Vec<RawRange>,
    spot_advisor: Vec<(String, RawLinux)>,
    region_count: usize,
    global_rate: Option<String>,
}

impl<'de> DeserializeSeed<'de> for Keep<'_> {
    type Value = Raw;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_map(TopVisitor(self))
    }
}

struct TopVisitor<'a>(Keep<'a>);

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Spot Advisor document")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let (mut ranges, mut spot, mut rate) = (None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "ranges" => ranges = Some(map.next_value()?),
                "spot_advisor" => spot = Some(map.next_value_seed(RegionsSeed(self.0))?),
                "global_rate" => rate = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let ranges = ranges.ok_or_else(|| serde::de::Error::missing_field("ranges"))?;
        let (spot_advisor, region_count) =
            spot.ok_or_else(|| serde::de::Error::missing_field("spot_advisor"))?;
        Ok(Raw {
            ranges,
            spot_advisor,
            region_count,
            global_rate: rate,
        })
    }
}

type RawRegions = (Vec<(String, RawLinux)>, usize);

struct RegionsSeed<'a>(Keep<'a>);

impl<'de> DeserializeSeed<'de> for RegionsSeed<'_> {
    type Value = RawRegions;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawRegions, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RegionsSeed<'_> {
    type Value = RawRegions;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of regions")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRegions, A::Error> {
        let mut out = Vec::new();
        let mut count = 0;
        while let Some(region) = map.next_key::<String>()? {
            count += 1;
            let keep = self.0.wants(&region);
            let linux = map.next_value_seed(LinuxSeed { keep })?;
            if keep {
                out.push((region, linux));
            }
        }
        Ok((out, count))
    }
}

/// The `Linux` entries of one region (`None` when it has none). Entries of a region not kept
/// are validated and dropped.
struct LinuxSeed {
    keep: bool,
}

/// The entries of a region not kept: validated, not stored.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of instance types")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<RawEntry>()?;
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for LinuxSeed {
    type Value = RawLinux;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LinuxSeed {
    type Value = RawLinux;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of operating systems")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut linux = None;
        while let Some(os) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if os == "Linux" && self.keep {
                let entries: std::collections::BTreeMap<String, RawEntry> = map.next_value()?;
                linux = Some(entries.into_iter().collect());
            } else if os == "Linux" {
                map.next_value_seed(Skip)?;
                linux = Some(Vec::new());
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(linux)
    }
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
    /// Parses a whole `spot-advisor-data.json` document. `file` names the source in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<SpotAdvisor, DataError> {
        Self::parse_regions(bytes, file, None)
    }

    /// Parses only `regions` (all when `None`): a one-region run does not pay for the other 32.
    /// The whole document must still be valid JSON.
    pub fn parse_regions(
        bytes: &[u8],
        file: &str,
        regions: Option<&[&str]>,
    ) -> Result<SpotAdvisor, DataError> {
        let keep = Keep(regions);
        let raw = match keep.deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
            Ok(raw) => raw,
            Err(_) => {
                // Parse again, keeping everything, with path tracking: only a failure pays for
                // it, and the path names every key.
                let mut track = serde_path_to_error::Track::new();
                let de = &mut serde_json::Deserializer::from_slice(bytes);
                let err = Keep(None)
                    .deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
                    .err()
                    .expect("the same input fails again");
                let err = serde_path_to_error::Error::new(track.path(), err);
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
        let mut out = HashMap::with_capacity_and_hasher(raw.spot_advisor.len(), Default::default());
        for (region, linux) in raw.spot_advisor {
            let Some(linux) = linux else {
                return Err(field(
                    format!("spot_advisor.{region}"),
                    "has no `Linux` entries".into(),
                ));
            };
            let entries: HashMap<String, AdvisorEntry> = linux
                .into_iter()
                .map(|(ty, e)| {
                    (
                        ty,
                        AdvisorEntry {
                            savings_pct: e.s.0,
                            band: e.r.0,
                        },
                    )
                })
                .collect();
            out.insert(region, entries);
        }
        if raw.region_count == 0 {
            return Err(field("spot_advisor".into(), "has no regions".into()));
        }
        Ok(SpotAdvisor {
            regions: out,
            global_rate: raw.global_rate,
            region_count: raw.region_count,
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

    /// Keeps `last_good`'s data for every region this data lost (see [`keep_lost_regions`]).
    pub fn keep_lost_regions(
        &mut self,
        last_good: &SpotAdvisor,
        only: Option<&[&str]>,
    ) -> Vec<RegionLoss> {
        keep_lost_regions(&mut self.regions, &last_good.regions, only)
    }
}

/// The largest share of a region's types a load may lose against the last good data before the
/// load is refused for that region. Real snapshots lost at most 5.1% of a region's types from one
/// to the next (the 2021, 2022 and 2025 snapshots in `../shared/data`, measured).
pub const REGION_LOSS_LIMIT: f64 = 0.25;

/// A region whose new data was refused: the load lost it, or lost more than
/// [`REGION_LOSS_LIMIT`] of its types, against the last good data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionLoss {
    pub region: String,
    /// Types the last good data had there.
    pub had: usize,
    /// Of those, how many the new data still has.
    pub kept: usize,
}

impl std::fmt::Display for RegionLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kept == 0 {
            write!(f, "lost {} ({} types)", self.region, self.had)
        } else {
            write!(
                f,
                "lost {} of the {} types of {}",
                self.had - self.kept,
                self.had,
                self.region
            )
        }
    }
}

/// Judges `new` region by region against `old`: a region `old` had (of `only`, when given) that
/// `new` lost, or lost more than [`REGION_LOSS_LIMIT`] of the types of, keeps `old`'s data.
/// Returns those regions.
pub(crate) fn keep_lost_regions<V: Clone>(
    new: &mut HashMap<String, HashMap<String, V>>,
    old: &HashMap<String, HashMap<String, V>>,
    only: Option<&[&str]>,
) -> Vec<RegionLoss> {
    let mut losses: Vec<RegionLoss> = Vec::new();
    for (region, had) in old {
        if had.is_empty() || only.is_some_and(|o| !o.contains(&region.as_str())) {
            continue;
        }
        let kept = new
            .get(region)
            .map_or(0, |n| had.keys().filter(|t| n.contains_key(*t)).count());
        if (had.len() - kept) as f64 > REGION_LOSS_LIMIT * had.len() as f64 {
            new.insert(region.clone(), had.clone());
            losses.push(RegionLoss {
                region: region.clone(),
                had: had.len(),
                kept,
            });
        }
    }
    losses.sort_by(|a, b| a.region.cmp(&b.region));
    losses
}

/// Refuses `new` when it lost more than half of the regions, or of the (region, type) entries,
/// that `old` had.
pub(crate) fn check_nested_loss<V>(
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ADVISOR: &str = r#"{"instance_types":{"m5.large":{"emr":true,"cores":2,"ram_gb":8.0}},
      "ranges":[{"index":0,"label":"<5%","dots":0,"max":5},{"index":1,"label":"5-10%","dots":1,"max":11},
      {"index":2,"label":"10-15%","dots":2,"max":16},{"index":3,"label":"15-20%","dots":3,"max":22},
      {"index":4,"label":">20%","dots":4,"max":100}],
      "spot_advisor":{"us-east-1":{"Linux":{"m5.large":{"s":70,"r":1}},"Windows":{}},
                      "eu-west-1":{"Linux":{"m5.large":{"s":60,"r":9}}}},
      "global_rate":"<10%"}"#;

    #[test]
    fn parses_advisor_and_filters_regions() {
        let good = ADVISOR.replace(r#""s":60,"r":9"#, r#""s":60,"r":2"#);
        let only =
            SpotAdvisor::parse_regions(good.as_bytes(), "a.json", Some(&["us-east-1"])).unwrap();
        let e = only.entry("us-east-1", "m5.large").unwrap();
        assert_eq!((e.savings_pct, e.band.index()), (70, 1));
        assert_eq!((only.regions.len(), only.region_count), (1, 2));
        // A skipped region is still validated, with the field named.
        let err = SpotAdvisor::parse_regions(ADVISOR.as_bytes(), "a.json", Some(&["us-east-1"]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("spot_advisor.eu-west-1.Linux.m5.large.r"),
            "{err}"
        );
    }

    #[test]
    fn truncated_advisor_names_file_and_position() {
        for regions in [None, Some(&["us-east-1"][..])] {
            let err = SpotAdvisor::parse_regions(&ADVISOR.as_bytes()[..200], "a.json", regions)
                .unwrap_err();
            assert!(matches!(err, DataError::Json { .. }), "{err}");
            assert!(
                err.to_string()
                    .starts_with("a.json: not valid JSON at line"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_band_names_the_field() {
        let err = SpotAdvisor::parse(ADVISOR.as_bytes(), "a.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.json: field `spot_advisor.eu-west-1.Linux.m5.large.r`: 9 is not a band index in `ranges` (0..4)"
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
        let err =
            SpotAdvisor::parse_regions(bad.as_bytes(), "a.json", Some(&["us-east-1"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("spot_advisor.us-east-1.Linux.m5.large.s"),
            "{err}"
        );
    }

    #[test]
    fn a_region_lost_keeps_its_last_good_data_and_is_named() {
        let mut entries = HashMap::default();
        for t in ["m5.large", "m5.xlarge", "c5.large", "r5.large"] {
            entries.insert(t.to_string(), 1u8);
        }
        let mut old: HashMap<String, HashMap<String, u8>> = HashMap::default();
        old.insert("us-east-1".into(), entries.clone());
        old.insert("eu-west-1".into(), entries.clone());
        // us-east-1 gone; eu-west-1 lost one of four types (25%: within the limit).
        let mut new = old.clone();
        new.remove("us-east-1");
        new.get_mut("eu-west-1").unwrap().remove("r5.large");
        let losses = keep_lost_regions(&mut new, &old, None);
        assert_eq!(
            losses,
            [RegionLoss {
                region: "us-east-1".into(),
                had: 4,
                kept: 0
            }]
        );
        assert_eq!(losses[0].to_string(), "lost us-east-1 (4 types)");
        assert_eq!(
            new["us-east-1"], old["us-east-1"],
            "the last good data stays"
        );
        assert_eq!(
            new["eu-west-1"].len(),
            3,
            "a small loss is news, not damage"
        );
        // Two of four (50%): refused, and said as a share.
        new.get_mut("eu-west-1").unwrap().remove("c5.large");
        let losses = keep_lost_regions(&mut new, &old, None);
        assert_eq!(losses[0].to_string(), "lost 2 of the 4 types of eu-west-1");
        // A region outside those loaded is not judged.
        let mut partial = old.clone();
        partial.remove("us-east-1");
        assert!(keep_lost_regions(&mut partial, &old, Some(&["eu-west-1"])).is_empty());
    }

    #[test]
    fn shrunk_data_is_refused() {
        let good = ADVISOR.replace(r#""s":60,"r":9"#, r#""s":60,"r":2"#);
        let a =
            SpotAdvisor::parse_regions(good.as_bytes(), "a.json", Some(&["us-east-1"])).unwrap();
        let mut b = a.clone();
        b.regions
            .entry("eu-west-1".into())
            .or_default()
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
