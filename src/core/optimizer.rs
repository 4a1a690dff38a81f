//! The optimizer: a pure, deterministic function from a [`Request`], the [`Catalog`] and
//! [`MarketData`] to a [`Plan`].
//!
//! 1. Filter the catalog, counting what each filter removes (so "nothing fits" can name it).
//! 2. Size every survivor: `count = max(ceil(vcpus/type_vcpus), ceil(memory/type_memory))`,
//!    and keep it if the count is in the mode's node-count range.
//! 3. Rank (see [`Ranking`]): by the request's spot $/h, with a per-band premium from the mode
//!    when no interruption ceiling is set; by band, savings and waste when there are no prices.
//! 4. Diversify: take the best type of each family in rank order, then the second best of each,
//!    and so on, until the list is long enough; the list keeps rank order.

use crate::core::catalog::{Catalog, InstanceType, normalize_emr_release};
use crate::core::market::{MarketData, Quote};
use crate::core::plan::{Candidate, Diversity, FilterStat, Plan, Ranking, Totals};
use crate::core::types::{Arch, Band, Mode};
use std::cmp::Ordering;
use std::collections::HashSet;

/// Karpenter's spot-to-spot consolidation needs this many instance types.
pub const KARPENTER_SPOT_TO_SPOT_TYPES: usize = 15;
/// Commercial, GovCloud and China regions, to tell a typo from a region the catalog lacks.
pub const AWS_REGIONS: [&str; 38] = [
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];
/// Default length of the list.
pub const DEFAULT_MAX_TYPES: usize = 20;

/// What the workload needs and which types it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Total vCPUs (spot-optimizer calls them cores).
    pub vcpus: u32,
    /// Total memory, MiB.
    pub memory_mib: u64,
    pub region: String,
    pub mode: Mode,
    /// Only types with local SSD instance storage.
    pub ssd_only: bool,
    /// Accepted architectures; empty means all.
    pub architectures: Vec<Arch>,
    /// Allow-list of families (`m6i`); empty means all.
    pub families: Vec<String>,
    pub exclude_families: Vec<String>,
    /// Allow-list of types (`m6i.4xlarge`); empty means all.
    pub instance_types: Vec<String>,
    pub exclude_types: Vec<String>,
    /// Only types this Amazon EMR release supports (`emr-6.10.0` or `6.10.0`).
    pub emr_release: Option<String>,
    /// Highest acceptable interruption band, 0..=4. Types with no band are excluded when set.
    pub max_band: Option<u8>,
    pub gpus: Option<GpuRequirement>,
    /// Lowest and highest generation number (the `6` in `m6i`).
    pub min_generation: Option<u8>,
    pub max_generation: Option<u8>,
    /// Burstable (`t*`) types are left out unless allowed or named.
    pub allow_burstable: bool,
    /// Types AWS marks as previous generation are left out unless allowed or named.
    pub allow_previous_generation: bool,
    /// GPU and other accelerator types are left out unless allowed, named, or GPUs are asked for.
    pub allow_accelerators: bool,
    /// Fewer distinct types than this is reported in the plan.
    pub min_types: usize,
    /// The list's length when enough types fit.
    pub max_types: usize,
}

impl Request {
    /// A request with spotplan's defaults (balanced, both architectures, 15..20 types).
    pub fn new(vcpus: u32, memory_mib: u64, region: impl Into<String>) -> Request {
        Request {
            vcpus,
            memory_mib,
            region: region.into(),
            mode: Mode::Balanced,
            ssd_only: false,
            architectures: Vec::new(),
            families: Vec::new(),
            exclude_families: Vec::new(),
            instance_types: Vec::new(),
            exclude_types: Vec::new(),
            emr_release: None,
            max_band: None,
            gpus: None,
            min_generation: None,
            max_generation: None,
            allow_burstable: false,
            allow_previous_generation: false,
            allow_accelerators: false,
            min_types: KARPENTER_SPOT_TO_SPOT_TYPES,
            max_types: DEFAULT_MAX_TYPES,
        }
    }

    pub fn memory_gib(&self) -> f64 {
        self.memory_mib as f64 / 1024.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequirement {
    /// GPUs per instance, at least.
    pub min_count: u32,
    /// `NVIDIA`, `AMD`... (case-insensitive); any when `None`.
    pub manufacturer: Option<String>,
}

/// A request field, named the way each surface names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Cpu,
    Memory,
    Region,
    Families,
    ExcludeFamilies,
    InstanceTypes,
    ExcludeTypes,
    EmrRelease,
    MaxBand,
    Gpus,
    Generation,
    MinTypes,
    MaxTypes,
}

impl Field {
    /// The `spotplan recommend` flag.
    pub fn flag(self) -> &'static str {
        match self {
            Field::Cpu => "--cores",
            Field::Memory => "--memory",
            Field::Region => "--region",
            Field::Families => "--instance-family",
            Field::ExcludeFamilies => "--exclude-family",
            Field::InstanceTypes => "--instance-type",
            Field::ExcludeTypes => "--exclude-type",
            Field::EmrRelease => "--emr-version",
            Field::MaxBand => "--max-interruption-band",
            Field::Gpus => "--gpus",
            Field::Generation => "--min-generation/--max-generation",
            Field::MinTypes => "--min-types",
            Field::MaxTypes => "--max-types",
        }
    }

    /// The SpotPlan field.
    pub fn spec_path(self) -> &'static str {
        match self {
            Field::Cpu => "spec.resources.cpu",
            Field::Memory => "spec.resources.memory",
            Field::Region => "spec.region",
            Field::Families => "spec.instanceFamilies",
            Field::ExcludeFamilies => "spec.excludeInstanceFamilies",
            Field::InstanceTypes => "spec.instanceTypes",
            Field::ExcludeTypes => "spec.excludeInstanceTypes",
            Field::EmrRelease => "spec.emrRelease",
            Field::MaxBand => "spec.maxInterruptionBand",
            Field::Gpus => "spec.gpus",
            Field::Generation => "spec.minGeneration/spec.maxGeneration",
            Field::MinTypes => "spec.minTypes",
            Field::MaxTypes => "spec.maxTypes",
        }
    }
}

/// The filters, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    Region,
    Spot,
    Architecture,
    InstanceTypes,
    InstanceFamilies,
    ExcludeFamilies,
    ExcludeTypes,
    SsdOnly,
    EmrRelease,
    Gpus,
    Accelerators,
    Burstable,
    PreviousGeneration,
    Generation,
    MaxInterruptionBand,
    NodeCount,
}

impl Filter {
    pub const ALL: [Filter; 16] = [
        Filter::Region,
        Filter::Spot,
        Filter::Architecture,
        Filter::InstanceTypes,
        Filter::InstanceFamilies,
        Filter::ExcludeFamilies,
        Filter::ExcludeTypes,
        Filter::SsdOnly,
        Filter::EmrRelease,
        Filter::Gpus,
        Filter::Accelerators,
        Filter::Burstable,
        Filter::PreviousGeneration,
        Filter::Generation,
        Filter::MaxInterruptionBand,
        Filter::NodeCount,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Filter::Region => "region",
            Filter::Spot => "spot_support",
            Filter::Architecture => "architecture",
            Filter::InstanceTypes => "instance_types",
            Filter::InstanceFamilies => "instance_families",
            Filter::ExcludeFamilies => "exclude_families",
            Filter::ExcludeTypes => "exclude_types",
            Filter::SsdOnly => "ssd_only",
            Filter::EmrRelease => "emr_release",
            Filter::Gpus => "gpus",
            Filter::Accelerators => "accelerators",
            Filter::Burstable => "burstable",
            Filter::PreviousGeneration => "previous_generation",
            Filter::Generation => "generation",
            Filter::MaxInterruptionBand => "max_interruption_band",
            Filter::NodeCount => "mode_node_count",
        }
    }

    /// How to loosen this filter.
    pub fn hint(self) -> &'static str {
        match self {
            Filter::Region => {
                "the embedded catalog has no types offered there; pick another region"
            }
            Filter::Spot => "only types that support spot can be planned",
            Filter::Architecture => "allow both amd64 and arm64",
            Filter::InstanceTypes => "list more instance types",
            Filter::InstanceFamilies => "list more instance families",
            Filter::ExcludeFamilies => "exclude fewer families",
            Filter::ExcludeTypes => "exclude fewer types",
            Filter::SsdOnly => "drop ssd-only",
            Filter::EmrRelease => "pick a newer EMR release",
            Filter::Gpus => "ask for fewer GPUs or any manufacturer",
            Filter::Accelerators => "allow accelerator types or ask for GPUs",
            Filter::Burstable => "allow burstable types",
            Filter::PreviousGeneration => "allow previous-generation types",
            Filter::Generation => "widen the generation range",
            Filter::MaxInterruptionBand => "raise the max interruption band",
            Filter::NodeCount => "try another mode (latency, balanced, fault_tolerance)",
        }
    }
}

/// Why no plan was made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{message}")]
    InvalidRequest { field: Field, message: String },
    #[error("unknown region '{region}'{}", suggestion_text(.suggestion))]
    UnknownRegion {
        region: String,
        suggestion: Option<String>,
    },
    #[error("unknown instance family '{family}'{}", suggestion_text(.suggestion))]
    UnknownFamily {
        field: Field,
        family: String,
        suggestion: Option<String>,
    },
    #[error("unknown instance type '{instance_type}'{}", suggestion_text(.suggestion))]
    UnknownType {
        field: Field,
        instance_type: String,
        suggestion: Option<String>,
    },
    #[error("unknown EMR release '{release}'{}", suggestion_text(.suggestion))]
    UnknownEmrRelease {
        release: String,
        suggestion: Option<String>,
    },
    #[error(
        "no instance type fits: the {} filter removed the last {removed} candidates ({})",
        .filter.name(), .filter.hint()
    )]
    NothingFits {
        filter: Filter,
        removed: usize,
        filters: Vec<FilterStat>,
    },
}

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

impl PlanError {
    /// The request field at fault, if one is.
    pub fn field(&self) -> Option<Field> {
        match self {
            PlanError::InvalidRequest { field, .. }
            | PlanError::UnknownFamily { field, .. }
            | PlanError::UnknownType { field, .. } => Some(*field),
            PlanError::UnknownRegion { .. } => Some(Field::Region),
            PlanError::UnknownEmrRelease { .. } => Some(Field::EmrRelease),
            PlanError::NothingFits { .. } => None,
        }
    }

    /// A short fixed category, for metrics labels and condition reasons.
    pub fn category(&self) -> &'static str {
        match self {
            PlanError::InvalidRequest { .. } => "InvalidRequest",
            PlanError::UnknownRegion { .. } => "UnknownRegion",
            PlanError::UnknownFamily { .. } => "UnknownInstanceFamily",
            PlanError::UnknownType { .. } => "UnknownInstanceType",
            PlanError::UnknownEmrRelease { .. } => "UnknownEmrRelease",
            PlanError::NothingFits { .. } => "NothingFits",
        }
    }
}

/// The closest of `options` to `given`, if it is close enough to be a likely typo.
pub fn closest<'a>(given: &str, options: impl IntoIterator<Item = &'a str>) -> Option<String> {
    options
        .into_iter()
        .map(|o| (strsim::damerau_levenshtein(given, o), o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 4))
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, o)| o.to_string())
}

struct Resolved {
    region: crate::core::catalog::RegionId,
    emr: Option<crate::core::catalog::EmrRelease>,
    families: HashSet<String>,
    exclude_families: HashSet<String>,
    types: HashSet<String>,
    exclude_types: HashSet<String>,
    gpu_manufacturer: Option<String>,
}

fn validate(req: &Request, catalog: &Catalog) -> Result<Resolved, PlanError> {
    let invalid = |field: Field, message: String| PlanError::InvalidRequest { field, message };
    if req.vcpus == 0 {
        return Err(invalid(Field::Cpu, "cpu must be at least 1 vCPU".into()));
    }
    if req.memory_mib == 0 {
        return Err(invalid(
            Field::Memory,
            "memory must be greater than 0".into(),
        ));
    }
    if let Some(b) = req.max_band
        && b > Band::MAX
    {
        return Err(invalid(
            Field::MaxBand,
            format!("max interruption band {b} is out of range: use 0 (<5%) to 4 (>20%)"),
        ));
    }
    if req.min_types == 0 || req.min_types > 100 {
        return Err(invalid(Field::MinTypes, "min types must be 1..100".into()));
    }
    if req.max_types < req.min_types || req.max_types > 100 {
        return Err(invalid(
            Field::MaxTypes,
            format!(
                "max types must be between min types ({}) and 100",
                req.min_types
            ),
        ));
    }
    if let (Some(lo), Some(hi)) = (req.min_generation, req.max_generation)
        && lo > hi
    {
        return Err(invalid(
            Field::Generation,
            format!("min generation {lo} is above max generation {hi}"),
        ));
    }
    if let Some(g) = &req.gpus
        && g.min_count == 0
    {
        return Err(invalid(
            Field::Gpus,
            "gpus must be at least 1 when set".into(),
        ));
    }
    let region = match catalog.region(&req.region) {
        Some(r) => r,
        None if AWS_REGIONS.contains(&req.region.as_str()) => {
            return Err(invalid(
                Field::Region,
                format!(
                    "the embedded catalog ({}) lists no instance type offerings in {}, so no type can be planned there; pick another region",
                    catalog.source, req.region
                ),
            ));
        }
        None => {
            return Err(PlanError::UnknownRegion {
                region: req.region.clone(),
                suggestion: closest(&req.region, AWS_REGIONS.iter().copied()),
            });
        }
    };
    let check_families = |field: Field, list: &[String]| -> Result<HashSet<String>, PlanError> {
        list.iter()
            .map(|f| {
                let f = f.trim().to_ascii_lowercase();
                if catalog.has_family(&f) {
                    Ok(f)
                } else {
                    Err(PlanError::UnknownFamily {
                        field,
                        suggestion: closest(&f, catalog.families()),
                        family: f,
                    })
                }
            })
            .collect()
    };
    let check_types = |field: Field, list: &[String]| -> Result<HashSet<String>, PlanError> {
        list.iter()
            .map(|t| {
                let t = t.trim().to_ascii_lowercase();
                if catalog.get(&t).is_some() {
                    Ok(t)
                } else {
                    Err(PlanError::UnknownType {
                        field,
                        suggestion: closest(&t, catalog.types().iter().map(|x| x.name.as_str())),
                        instance_type: t,
                    })
                }
            })
            .collect()
    };
    let emr = match &req.emr_release {
        None => None,
        Some(r) => match catalog.emr_release(r) {
            Some((_, e)) => Some(e),
            None => {
                let label = normalize_emr_release(r);
                return Err(PlanError::UnknownEmrRelease {
                    suggestion: closest(&label, catalog.emr_releases()),
                    release: r.clone(),
                });
            }
        },
    };
    Ok(Resolved {
        region,
        emr,
        families: check_families(Field::Families, &req.families)?,
        exclude_families: check_families(Field::ExcludeFamilies, &req.exclude_families)?,
        types: check_types(Field::InstanceTypes, &req.instance_types)?,
        exclude_types: check_types(Field::ExcludeTypes, &req.exclude_types)?,
        gpu_manufacturer: req
            .gpus
            .as_ref()
            .and_then(|g| g.manufacturer.as_ref().map(|m| m.to_ascii_lowercase())),
    })
}

/// Which filter, if any, rejects `t` (the first one in [`Filter::ALL`] order).
/// Which filter, if any, rejects `t` before node counts are considered.
fn rejecting_filter(
    req: &Request,
    r: &Resolved,
    t: &InstanceType,
    quote: &Quote,
) -> Option<Filter> {
    if !t.offered_in(r.region) {
        return Some(Filter::Region);
    }
    if !t.spot {
        return Some(Filter::Spot);
    }
    let arch_ok = match t.arch() {
        None => false,
        Some(a) => req.architectures.is_empty() || req.architectures.contains(&a),
    };
    if !arch_ok {
        return Some(Filter::Architecture);
    }
    let named_type = !r.types.is_empty() && r.types.contains(&t.name);
    let named_family = !r.families.is_empty() && r.families.contains(&t.family);
    if !r.types.is_empty() && !named_type {
        return Some(Filter::InstanceTypes);
    }
    if !r.families.is_empty() && !named_family {
        return Some(Filter::InstanceFamilies);
    }
    if !r.exclude_families.is_empty() && r.exclude_families.contains(&t.family) {
        return Some(Filter::ExcludeFamilies);
    }
    if !r.exclude_types.is_empty() && r.exclude_types.contains(&t.name) {
        return Some(Filter::ExcludeTypes);
    }
    if req.ssd_only && !t.has_local_ssd() {
        return Some(Filter::SsdOnly);
    }
    if let Some(emr) = r.emr
        && !emr.supports(t)
    {
        return Some(Filter::EmrRelease);
    }
    if let Some(g) = &req.gpus {
        let matching: u32 = t
            .gpus()
            .filter(|a| {
                r.gpu_manufacturer
                    .as_ref()
                    .is_none_or(|m| a.manufacturer.eq_ignore_ascii_case(m))
            })
            .map(|a| a.count)
            .sum();
        if matching < g.min_count {
            return Some(Filter::Gpus);
        }
    }
    // Defaults a user opts out of by allowing them, or by naming the family or type.
    let named = named_type || named_family;
    if t.has_accelerators() && req.gpus.is_none() && !req.allow_accelerators && !named {
        return Some(Filter::Accelerators);
    }
    if t.burstable && !req.allow_burstable && !named {
        return Some(Filter::Burstable);
    }
    if !t.current_generation && !req.allow_previous_generation && !named {
        return Some(Filter::PreviousGeneration);
    }
    if req.min_generation.is_some_and(|g| t.generation < g)
        || req.max_generation.is_some_and(|g| t.generation > g)
    {
        return Some(Filter::Generation);
    }
    if let Some(max) = req.max_band
        && quote.band.is_none_or(|b| b.index() > max)
    {
        return Some(Filter::MaxInterruptionBand);
    }
    None
}

/// The node-count range types must land in: the mode's range, or, when no eligible type lands
/// in it, that range widened one step at a time on both sides (fixed instance sizes leave holes:
/// 88 vCPU in exactly 5 nodes fits no type), by at most half the range's lower end (at least
/// one step), so a mode never turns into another: fault_tolerance's 3-4 nodes never becomes 1.
fn effective_range(strict: (u32, u32), counts: &[u32]) -> (u32, u32) {
    let fits = |r: (u32, u32)| counts.iter().any(|c| (r.0..=r.1).contains(c));
    if counts.is_empty() || fits(strict) {
        return strict;
    }
    (1..=(strict.0 / 2).max(1))
        .map(|k| (strict.0.saturating_sub(k).max(1), strict.1 + k))
        .find(|r| fits(*r))
        .unwrap_or(strict)
}

/// Instances of `t` needed to meet the request.
pub fn node_count(req: &Request, t: &InstanceType) -> u32 {
    let by_cpu = req.vcpus.div_ceil(t.vcpus.max(1));
    let by_mem = req.memory_mib.div_ceil(t.memory_mib.max(1));
    by_cpu.max(u32::try_from(by_mem).unwrap_or(u32::MAX))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

struct Scored<'a> {
    t: &'a InstanceType,
    quote: Quote,
    count: u32,
    total_spot: Option<f64>,
    score: Option<f64>,
    waste: f64,
}

fn compare(ranking: Ranking, a: &Scored, b: &Scored) -> Ordering {
    let band = |s: &Scored| Band::rank_of(s.quote.band);
    let by_waste_name = |a: &Scored, b: &Scored| {
        a.waste
            .total_cmp(&b.waste)
            .then_with(|| a.t.name.cmp(&b.t.name))
    };
    let unpriced = |a: &Scored, b: &Scored| {
        band(a)
            .cmp(&band(b))
            // higher savings first; unknown savings last
            .then_with(|| {
                b.quote
                    .savings_pct
                    .unwrap_or(i32::MIN)
                    .cmp(&a.quote.savings_pct.unwrap_or(i32::MIN))
            })
            .then_with(|| by_waste_name(a, b))
    };
    match ranking {
        Ranking::BandSavingsWaste => unpriced(a, b),
        Ranking::Cost | Ranking::RiskAdjustedCost => match (a.score, b.score) {
            (Some(x), Some(y)) => x
                .total_cmp(&y)
                .then_with(|| band(a).cmp(&band(b)))
                .then_with(|| by_waste_name(a, b)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => unpriced(a, b),
        },
    }
}

/// Plans a request. Pure: the same inputs always give the same plan.
pub fn optimize(req: &Request, catalog: &Catalog, market: &MarketData) -> Result<Plan, PlanError> {
    let resolved = validate(req, catalog)?;
    let region = resolved.region;
    let memory_gib = req.memory_gib();
    let mode_range = req.mode.node_range(f64::from(req.vcpus), memory_gib);

    let mut removed = [0usize; Filter::ALL.len()];
    let mut passed: Vec<(usize, u32)> = Vec::new();
    let quotes = market.quotes(region);
    for (i, t) in catalog.types().iter().enumerate() {
        match rejecting_filter(req, &resolved, t, &quotes[i]) {
            Some(f) => removed[f as usize] += 1,
            None => passed.push((i, node_count(req, t))),
        }
    }
    let counts: Vec<u32> = passed.iter().map(|p| p.1).collect();
    let range = effective_range(mode_range, &counts);
    let mut survivors: Vec<Scored> = Vec::with_capacity(passed.len());
    for (i, count) in passed {
        if count < range.0 || count > range.1 {
            removed[Filter::NodeCount as usize] += 1;
            continue;
        }
        let t = &catalog.types()[i];
        let quote = quotes[i];
        let total_v = f64::from(count * t.vcpus);
        let total_m = count as f64 * t.memory_mib as f64;
        let waste = ((total_v - f64::from(req.vcpus)) / total_v
            + (total_m - req.memory_mib as f64) / total_m)
            * 50.0;
        let total_spot = quote.spot.map(|p| p * f64::from(count));
        survivors.push(Scored {
            t,
            quote,
            count,
            total_spot,
            score: None,
            waste,
        });
    }

    let mut filters = Vec::with_capacity(Filter::ALL.len());
    let mut remaining = catalog.len();
    for f in Filter::ALL {
        let n = removed[f as usize];
        remaining -= n;
        filters.push(FilterStat {
            filter: f.name(),
            removed: n,
            remaining,
        });
    }
    if survivors.is_empty() {
        // The filter after which nothing was left.
        let (filter, n) = Filter::ALL
            .iter()
            .zip(&filters)
            .find(|(_, s)| s.remaining == 0)
            .map(|(f, s)| (*f, s.removed))
            .unwrap_or((Filter::Region, 0));
        return Err(PlanError::NothingFits {
            filter,
            removed: n,
            filters,
        });
    }

    let has_prices = market.has_prices(region) && survivors.iter().any(|s| s.total_spot.is_some());
    let ranking = if !has_prices {
        Ranking::BandSavingsWaste
    } else if req.max_band.is_some() {
        Ranking::Cost
    } else {
        Ranking::RiskAdjustedCost
    };
    for s in &mut survivors {
        s.score = s.total_spot.map(|cost| match ranking {
            Ranking::RiskAdjustedCost => {
                cost * req.mode.risk_multiplier(Band::rank_of(s.quote.band))
            }
            _ => cost,
        });
    }
    survivors.sort_by(|a, b| compare(ranking, a, b));

    let chosen = diversify(&survivors, req.max_types, catalog.family_count());
    let eligible = survivors.len();
    let unknown_band_types = survivors.iter().filter(|s| s.quote.band.is_none()).count();

    let candidates: Vec<Candidate> = chosen
        .iter()
        .enumerate()
        .map(|(rank, &i)| to_candidate(req, &survivors[i], rank + 1))
        .collect();
    let primary = &candidates[0];
    let totals = Totals {
        spot_usd_per_hour: primary.total_spot_usd_per_hour,
        on_demand_usd_per_hour: primary.total_on_demand_usd_per_hour,
        savings_pct: match (
            primary.total_spot_usd_per_hour,
            primary.total_on_demand_usd_per_hour,
        ) {
            (Some(s), Some(o)) if o > 0.0 => Some(round2((1.0 - s / o) * 100.0)),
            _ => None,
        },
    };
    let families: HashSet<&str> = candidates.iter().map(|c| c.family.as_str()).collect();
    let generations: HashSet<u8> = candidates.iter().map(|c| c.generation).collect();
    let diversity = Diversity {
        types: candidates.len(),
        families: families.len(),
        generations: generations.len(),
        min_types: req.min_types,
        meets_min_types: candidates.len() >= req.min_types,
    };

    let mut notes = Vec::new();
    if range != mode_range {
        notes.push(format!(
            "no eligible type lands in {}'s {}-{} nodes; the range was widened to {}-{}",
            req.mode, mode_range.0, mode_range.1, range.0, range.1
        ));
    }
    if !diversity.meets_min_types {
        // The filters that cut the most, skipping the structural ones a user cannot change.
        let mut cutters: Vec<(Filter, usize)> = Filter::ALL
            .iter()
            .filter(|f| !matches!(f, Filter::Region | Filter::Spot))
            .map(|f| (*f, removed[*f as usize]))
            .filter(|(_, n)| *n > 0)
            .collect();
        cutters.sort_by_key(|c| std::cmp::Reverse(c.1));
        let hints: Vec<String> = cutters
            .iter()
            .take(2)
            .map(|(f, n)| format!("{} removed {n} ({})", f.name(), f.hint()))
            .collect();
        notes.push(format!(
            "only {} distinct instance types fit this request, fewer than the {} wanted{}; the most restrictive filters: {}",
            candidates.len(),
            req.min_types,
            if req.min_types >= KARPENTER_SPOT_TO_SPOT_TYPES {
                " (Karpenter's spot-to-spot consolidation needs 15)"
            } else {
                ""
            },
            if hints.is_empty() { "none".into() } else { hints.join("; ") }
        ));
    }
    if market.advisor.is_none() {
        notes.push("no Spot Advisor data: every interruption band is unknown".into());
    }
    if unknown_band_types > 0 {
        notes.push(format!(
            "{unknown_band_types} eligible types have no Spot Advisor band; they are shown as 'unknown' and ranked as band 4"
        ));
    }
    if !has_prices {
        notes.push(format!(
            "no prices for {}: ranked by interruption band, savings and waste instead of cost (give a price file for cost-aware ranking)",
            req.region
        ));
    }
    let unpriced_types = candidates
        .iter()
        .filter(|c| c.total_spot_usd_per_hour.is_none())
        .count();
    if has_prices && unpriced_types > 0 {
        notes.push(format!(
            "{unpriced_types} listed types have no price and are ranked after the priced ones"
        ));
    }
    let estimated_spot_prices = candidates.iter().filter(|c| c.spot_price_estimated).count();

    Ok(Plan {
        region: req.region.clone(),
        mode: req.mode,
        vcpus: req.vcpus,
        memory_gib: round4(memory_gib),
        node_count_range: range,
        mode_node_count_range: mode_range,
        ranking,
        totals,
        catalog_types: catalog.len(),
        eligible_types: eligible,
        filters,
        unknown_band_types,
        has_prices,
        unpriced_types,
        estimated_spot_prices,
        diversity,
        notes,
        candidates,
    })
}

/// Indexes into `ranked` (already in rank order): the best of each family first, then the
/// second best of each, ... up to `max` entries, returned in rank order.
fn diversify(ranked: &[Scored], max: usize, families: usize) -> Vec<usize> {
    let mut taken = vec![false; ranked.len()];
    let mut per_family = vec![0usize; families];
    let mut chosen = Vec::with_capacity(max.min(ranked.len()));
    let mut cap = 1;
    while chosen.len() < max && chosen.len() < ranked.len() {
        for (i, s) in ranked.iter().enumerate() {
            if chosen.len() == max {
                break;
            }
            let n = &mut per_family[usize::from(s.t.family_id)];
            if !taken[i] && *n < cap {
                taken[i] = true;
                *n += 1;
                chosen.push(i);
            }
        }
        cap += 1;
    }
    chosen.sort_unstable();
    chosen
}

fn to_candidate(req: &Request, s: &Scored, rank: usize) -> Candidate {
    let t = s.t;
    let count = s.count;
    let total_vcpus = count * t.vcpus;
    let total_mem_gib = f64::from(count) * t.memory_gib();
    Candidate {
        rank,
        instance_type: t.name.clone(),
        family: t.family.clone(),
        generation: t.generation,
        arch: t.arch().expect("filtered to Kubernetes architectures"),
        vcpus: t.vcpus,
        memory_gib: round4(t.memory_gib()),
        count,
        total_vcpus,
        total_memory_gib: round4(total_mem_gib),
        interruption_band: s.quote.band.map(Band::index),
        interruption_label: Band::label_of(s.quote.band),
        savings_pct: s.quote.savings_pct,
        spot_usd_per_hour: s.quote.spot.map(round4),
        spot_price_estimated: s.quote.spot_estimated,
        on_demand_usd_per_hour: s.quote.on_demand.map(round4),
        total_spot_usd_per_hour: s.total_spot.map(round4),
        total_on_demand_usd_per_hour: s.quote.on_demand.map(|p| round4(p * f64::from(count))),
        cpu_waste_pct: round2(
            (f64::from(total_vcpus) - f64::from(req.vcpus)) / f64::from(total_vcpus) * 100.0,
        ),
        memory_waste_pct: round2((total_mem_gib - req.memory_gib()) / total_mem_gib * 100.0),
        waste_pct: round2(s.waste),
        local_ssd: t.has_local_ssd(),
        gpus: t.gpu_count(),
    }
}

/// For each name in `names`, the filter that would reject it under `req` today, or `None` when
/// it is still eligible (unknown names are rejected as [`Filter::InstanceTypes`]). The operator
/// uses this to tell a type that merely fell in rank from one that no longer fits.
pub fn check_types(
    req: &Request,
    catalog: &Catalog,
    market: &MarketData,
    names: &[String],
) -> Result<Vec<Option<Filter>>, PlanError> {
    let resolved = validate(req, catalog)?;
    let quotes = market.quotes(resolved.region);
    let rejected: Vec<Option<Filter>> = catalog
        .types()
        .iter()
        .zip(quotes)
        .map(|(t, q)| rejecting_filter(req, &resolved, t, q))
        .collect();
    let counts: Vec<u32> = catalog
        .types()
        .iter()
        .zip(&rejected)
        .filter(|(_, f)| f.is_none())
        .map(|(t, _)| node_count(req, t))
        .collect();
    let range = effective_range(
        req.mode.node_range(f64::from(req.vcpus), req.memory_gib()),
        &counts,
    );
    Ok(names
        .iter()
        .map(|n| match catalog.index_of(n) {
            None => Some(Filter::InstanceTypes),
            Some(i) => rejected[i].or_else(|| {
                let c = node_count(req, &catalog.types()[i]);
                (c < range.0 || c > range.1).then_some(Filter::NodeCount)
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::effective_range;

    #[test]
    fn node_range_widens_only_over_holes_and_not_far() {
        assert_eq!(effective_range((5, 5), &[4, 5, 6]), (5, 5));
        assert_eq!(effective_range((5, 5), &[3, 6, 8]), (4, 6));
        assert_eq!(effective_range((5, 5), &[3, 8]), (3, 7));
        assert_eq!(
            effective_range((5, 5), &[1, 9]),
            (5, 5),
            "at most 2 steps for a range starting at 5"
        );
        assert_eq!(
            effective_range((3, 4), &[1]),
            (3, 4),
            "fault tolerance never becomes one node"
        );
        assert_eq!(effective_range((3, 4), &[2]), (2, 5));
        assert_eq!(effective_range((1, 1), &[2]), (1, 2));
        assert_eq!(effective_range((2, 2), &[]), (2, 2));
    }
}
