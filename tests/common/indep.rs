//! An independent reading of the real data in `../shared/data`: moto 5.2.5's own files for the
//! catalog (not spotplan's generated catalog), the Spot Advisor file and the price CSV through
//! `serde_json::Value` and a hand split. Tests check the product against this, never against
//! the product's own catalog or parsers.
#![allow(dead_code)]

use super::shared_dir;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::LazyLock;

/// AWS's published previous-generation families ("Previous generation instance types" in the
/// EC2 instance types guide), restated here as the test's oracle.
pub const AWS_PREVIOUS_GENERATION: [&str; 22] = [
    "a1", "c1", "c3", "c4", "cc1", "cc2", "cg1", "cr1", "d2", "g2", "g3", "hi1", "hs1", "i2", "m1",
    "m2", "m3", "m4", "p2", "r3", "r4", "t1",
];

/// One instance type as moto's DescribeInstanceTypes data has it.
#[derive(Debug, Clone)]
pub struct MotoType {
    pub name: String,
    pub family: String,
    pub generation: u8,
    pub vcpus: u64,
    pub memory_mib: u64,
    /// "amd64", "arm64", or None for Mac types.
    pub arch: Option<&'static str>,
    pub ssd: bool,
    /// (count, manufacturer) per GPU entry.
    pub gpus: Vec<(u64, String)>,
    pub accelerators: bool,
    pub burstable: bool,
    pub spot: bool,
    /// moto's own (merged) flag.
    pub moto_current_generation: bool,
}

impl MotoType {
    pub fn previous_generation(&self) -> bool {
        AWS_PREVIOUS_GENERATION.contains(&self.family.as_str())
    }
}

fn gunzip(path: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn moto_dir() -> std::path::PathBuf {
    shared_dir().join("data/moto-5.2.5")
}

/// The catalog, read from moto's `instance_types.json.gz`.
pub static TYPES: LazyLock<HashMap<String, MotoType>> = LazyLock::new(|| {
    let v: Value =
        serde_json::from_slice(&gunzip(&moto_dir().join("instance_types.json.gz"))).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let family = name.split('.').next().unwrap().to_string();
            let digits: String = family
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let archs: Vec<&str> = t["ProcessorInfo"]["SupportedArchitectures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let arch = if archs.contains(&"x86_64") {
                Some("amd64")
            } else if archs.contains(&"arm64") {
                Some("arm64")
            } else {
                None
            };
            let ssd = t["InstanceStorageInfo"]["Disks"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["Type"] == "ssd"));
            let gpus = t["GpuInfo"]["Gpus"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .map(|g| {
                            (
                                g["Count"].as_u64().unwrap(),
                                g["Manufacturer"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let accelerators = [
                ("GpuInfo", "Gpus"),
                ("NeuronInfo", "NeuronDevices"),
                ("InferenceAcceleratorInfo", "Accelerators"),
                ("FpgaInfo", "Fpgas"),
                ("MediaAcceleratorInfo", "Accelerators"),
            ]
            .iter()
            .any(|(k, items)| t[*k][*items].as_array().is_some_and(|a| !a.is_empty()));
            (
                name.clone(),
                MotoType {
                    name: name.clone(),
                    generation: digits.parse().unwrap_or(0),
                    family,
                    vcpus: t["VCpuInfo"]["DefaultVCpus"].as_u64().unwrap(),
                    memory_mib: t["MemoryInfo"]["SizeInMiB"].as_u64().unwrap(),
                    arch,
                    ssd,
                    gpus,
                    accelerators,
                    burstable: t["BurstablePerformanceSupported"]
                        .as_bool()
                        .unwrap_or(false),
                    spot: t["SupportedUsageClasses"]
                        .as_array()
                        .is_some_and(|u| u.iter().any(|c| c == "spot")),
                    moto_current_generation: t["CurrentGeneration"].as_bool().unwrap_or(false),
                },
            )
        })
        .collect()
});

/// Types offered per region, from moto's DescribeInstanceTypeOfferings (region) files.
pub fn offered(region: &str) -> std::sync::Arc<HashSet<String>> {
    static CACHE: LazyLock<std::sync::Mutex<HashMap<String, std::sync::Arc<HashSet<String>>>>> =
        LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap();
    cache
        .entry(region.to_string())
        .or_insert_with(|| {
            let path = moto_dir().join(format!("instance_type_offerings/region/{region}.json.gz"));
            if !path.exists() {
                return Default::default();
            }
            let v: Value = serde_json::from_slice(&gunzip(&path)).unwrap();
            std::sync::Arc::new(
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["InstanceType"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .clone()
}

/// EMR release label -> supported types, from moto's EMR data.
pub static EMR: LazyLock<HashMap<String, HashSet<String>>> = LazyLock::new(|| {
    let v: Value = serde_json::from_slice(
        &std::fs::read(moto_dir().join("emr-supported-instance-types_derived.json")).unwrap(),
    )
    .unwrap();
    v["supported_instance_types_by_release"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(r, types)| {
            (
                r.clone(),
                types
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
});

/// The Spot Advisor file and the price CSV, read independently (see super).
pub static ADVISOR: LazyLock<super::AdvisorTable> = LazyLock::new(super::independent_advisor);
pub static PRICES: LazyLock<super::PriceRows> = LazyLock::new(super::independent_prices);

/// A request in the oracle's terms.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub region: String,
    /// latency | balanced | fault_tolerance
    pub mode: &'static str,
    pub ssd_only: bool,
    pub archs: Vec<&'static str>,
    pub families: Vec<String>,
    pub emr: Option<String>,
    pub max_band: Option<u64>,
    pub gpus: Option<u64>,
    pub min_generation: Option<u8>,
    pub max_generation: Option<u8>,
    pub allow_burstable: bool,
    pub allow_previous_generation: bool,
    pub allow_accelerators: bool,
}

/// `max(ceil(vcpus / type vcpus), ceil(memory / type memory))`.
pub fn count(ask: &Ask, t: &MotoType) -> u64 {
    ask.vcpus
        .div_ceil(t.vcpus)
        .max(ask.memory_mib.div_ceil(t.memory_mib))
}

/// spot-optimizer's node-count range for a mode (README, "Modes").
pub fn mode_range(ask: &Ask) -> (u64, u64) {
    let base = ((ask.vcpus as f64 / 16.0).max(ask.memory_mib as f64 / 1024.0 / 64.0))
        .floor()
        .max(2.0) as u64;
    if base <= 4 {
        return match ask.mode {
            "latency" => (1, 1),
            "balanced" => (2, 2),
            _ => (3, 4),
        };
    }
    let lat = (base / 4).max(4);
    match ask.mode {
        "latency" => (1, lat),
        "balanced" => (lat + 1, base),
        _ => (base + 1, 2 * base),
    }
}

/// Every filter but the node count, restated from the README's "The objective".
pub fn passes_filters(ask: &Ask, t: &MotoType) -> bool {
    if !offered(&ask.region).contains(&t.name) || !t.spot {
        return false;
    }
    let Some(arch) = t.arch else { return false };
    if !ask.archs.is_empty() && !ask.archs.contains(&arch) {
        return false;
    }
    let named = ask.families.contains(&t.family);
    if !ask.families.is_empty() && !named {
        return false;
    }
    if ask.ssd_only && !t.ssd {
        return false;
    }
    if let Some(r) = &ask.emr
        && !EMR[r].contains(&t.name)
    {
        return false;
    }
    if let Some(n) = ask.gpus
        && t.gpus.iter().map(|g| g.0).sum::<u64>() < n
    {
        return false;
    }
    if t.accelerators && ask.gpus.is_none() && !ask.allow_accelerators && !named {
        return false;
    }
    if t.burstable && !ask.allow_burstable && !named {
        return false;
    }
    if t.previous_generation() && !ask.allow_previous_generation && !named {
        return false;
    }
    if ask.min_generation.is_some_and(|g| t.generation < g)
        || ask.max_generation.is_some_and(|g| t.generation > g)
    {
        return false;
    }
    if let Some(max) = ask.max_band {
        match band(&ask.region, &t.name) {
            Some(b) if b <= max => {}
            _ => return false,
        }
    }
    true
}

pub fn band(region: &str, ty: &str) -> Option<u64> {
    ADVISOR.get(region)?.get(ty).map(|e| e.1)
}

pub fn savings(region: &str, ty: &str) -> Option<i64> {
    ADVISOR.get(region)?.get(ty).map(|e| e.0)
}

/// Spot $/h of one instance (quoted, else estimated from on-demand and savings).
pub fn spot(region: &str, ty: &str) -> Option<f64> {
    super::independent_spot_price(&PRICES, &ADVISOR, region, ty)
}

/// The mode's default interruption ceiling (README, "The objective"): latency 1, balanced 2,
/// fault_tolerance 3.
pub fn default_cap(mode: &str) -> u64 {
    match mode {
        "latency" => 1,
        "balanced" => 2,
        _ => 3,
    }
}

/// The constraints the README says a plan is made under, and the types within them.
#[derive(Debug, Clone)]
pub struct Eligible {
    pub types: Vec<(&'static MotoType, u64)>,
    /// The ceiling in force: Some(b) = band known and <= b; None = any band, unknown included.
    pub ceiling: Option<u64>,
    /// "user", "mode" or "relaxed".
    pub source: &'static str,
    pub range: (u64, u64),
}

/// The types that pass every filter, with their counts, under the README's rules: the
/// request's ceiling, or the mode's default relaxed one band at a time (then to any band) while
/// fewer than `min_types` fit; the mode's node-count range widened one step at a time on both
/// sides, by at most half its lower end (at least 1), while fewer than `min_types` fit; the
/// first ceiling that reaches `min_types` with the least widening, else the one that holds the
/// most (the least relaxed of equals), else (nothing at all) the most relaxed.
pub fn eligible(ask: &Ask, min_types: usize) -> Eligible {
    let offered = offered(&ask.region);
    let passed: Vec<(&MotoType, u64, Option<u64>)> = TYPES
        .values()
        .filter(|t| offered.contains(&t.name) && passes_filters(ask, t))
        .map(|t| (t, count(ask, t), band(&ask.region, &t.name)))
        .collect();
    let strict = mode_range(ask);
    let bound = (strict.0 / 2).max(1);
    let widen = |k: u64| (strict.0.saturating_sub(k).max(1), strict.1 + k);
    let ceilings: Vec<(Option<u64>, &'static str)> = match ask.max_band {
        Some(b) => vec![(Some(b), "user")],
        None => {
            let cap = default_cap(ask.mode);
            let mut v = vec![(Some(cap), "mode")];
            v.extend((cap + 1..=4).map(|b| (Some(b), "relaxed")));
            v.push((None, "relaxed"));
            v
        }
    };
    let admits = |c: Option<u64>, b: Option<u64>| c.is_none_or(|c| b.is_some_and(|b| b <= c));
    let within = |c: Option<u64>, (lo, hi): (u64, u64)| -> Vec<(&'static MotoType, u64)> {
        passed
            .iter()
            .filter(|(_, n, b)| admits(c, *b) && (lo..=hi).contains(n))
            .map(|(t, n, _)| (*t, *n))
            .collect()
    };
    let want = min_types.max(1);
    let mut best: Option<Eligible> = None;
    for (c, source) in &ceilings {
        // The widenings at which a type comes in (steps past the range's nearer end).
        let mut steps: Vec<u64> = passed
            .iter()
            .filter(|(_, _, b)| admits(*c, *b))
            .map(|(_, n, _)| strict.0.saturating_sub(*n).max(n.saturating_sub(strict.1)))
            .filter(|k| *k <= bound)
            .collect();
        steps.push(0);
        steps.sort_unstable();
        steps.dedup();
        for &k in &steps {
            let types = within(*c, widen(k));
            if types.len() >= want {
                return Eligible {
                    types,
                    ceiling: *c,
                    source,
                    range: widen(k),
                };
            }
        }
        // The most this ceiling holds: widened as far as it adds types.
        let full = within(*c, widen(bound)).len();
        let k = *steps
            .iter()
            .find(|k| within(*c, widen(**k)).len() == full)
            .unwrap();
        if best.as_ref().is_none_or(|b| full > b.types.len()) {
            best = Some(Eligible {
                types: within(*c, widen(k)),
                ceiling: *c,
                source,
                range: widen(k),
            });
        }
    }
    match best {
        Some(b) if !b.types.is_empty() => b,
        _ => {
            let (c, source) = *ceilings.last().unwrap();
            Eligible {
                types: vec![],
                ceiling: c,
                source,
                range: strict,
            }
        }
    }
}
