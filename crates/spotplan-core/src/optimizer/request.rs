//! What a workload asks for, and its validation against the catalog.

use crate::catalog::{Catalog, EmrRelease, RegionId, normalize_emr_release};
use crate::limits;
use crate::types::{Arch, Band, Mode};
use std::collections::HashSet;

/// What the workload needs and which types it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Total vCPUs (spot-optimizer calls them cores), 1..=[`limits::MAX_VCPUS`].
    pub vcpus: u32,
    /// Total memory, MiB, 1..=[`limits::MAX_MEMORY_MIB`].
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
            min_types: limits::DEFAULT_MIN_TYPES,
            max_types: limits::DEFAULT_MAX_TYPES,
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

/// A request that failed validation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("{message}")]
    Invalid { field: Field, message: String },
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
}

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

impl RequestError {
    /// The request field at fault.
    pub fn field(&self) -> Field {
        match self {
            RequestError::Invalid { field, .. }
            | RequestError::UnknownFamily { field, .. }
            | RequestError::UnknownType { field, .. } => *field,
            RequestError::UnknownRegion { .. } => Field::Region,
            RequestError::UnknownEmrRelease { .. } => Field::EmrRelease,
        }
    }

    /// A short fixed reason (CamelCase), for conditions, Events and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::Invalid { .. } => "InvalidRequest",
            RequestError::UnknownRegion { .. } => "UnknownRegion",
            RequestError::UnknownFamily { .. } => "UnknownInstanceFamily",
            RequestError::UnknownType { .. } => "UnknownInstanceType",
            RequestError::UnknownEmrRelease { .. } => "UnknownEmrRelease",
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

/// A request resolved against a catalog.
pub(crate) struct Resolved {
    pub region: RegionId,
    pub emr: Option<EmrRelease>,
    pub families: HashSet<String>,
    pub exclude_families: HashSet<String>,
    pub types: HashSet<String>,
    pub exclude_types: HashSet<String>,
    pub gpu_manufacturer: Option<String>,
}

/// Checks a request's own bounds (no catalog needed): each limit in [`limits`].
pub fn check_bounds(req: &Request) -> Result<(), RequestError> {
    let invalid = |field: Field, message: String| Err(RequestError::Invalid { field, message });
    if req.vcpus == 0 || req.vcpus > limits::MAX_VCPUS {
        return invalid(
            Field::Cpu,
            format!(
                "{} vCPUs is out of range: ask for 1 to {} vCPUs",
                req.vcpus,
                limits::MAX_VCPUS
            ),
        );
    }
    if req.memory_mib == 0 || req.memory_mib > limits::MAX_MEMORY_MIB {
        return invalid(
            Field::Memory,
            format!(
                "{} GiB is out of range: ask for more than 0 and at most {} GiB",
                req.memory_gib(),
                limits::MAX_MEMORY_GIB
            ),
        );
    }
    if let Some(b) = req.max_band
        && b > Band::MAX
    {
        return invalid(
            Field::MaxBand,
            format!("max interruption band {b} is out of range: use 0 (<5%) to 4 (>20%)"),
        );
    }
    if req.min_types == 0 || req.min_types > limits::MAX_TYPES {
        return invalid(
            Field::MinTypes,
            format!(
                "{} is out of range: use 1 to {}",
                req.min_types,
                limits::MAX_TYPES
            ),
        );
    }
    if req.max_types < req.min_types || req.max_types > limits::MAX_TYPES {
        return invalid(
            Field::MaxTypes,
            format!(
                "{} is out of range: use min types ({}) to {}",
                req.max_types,
                req.min_types,
                limits::MAX_TYPES
            ),
        );
    }
    for g in [req.min_generation, req.max_generation]
        .into_iter()
        .flatten()
    {
        if !(limits::MIN_GENERATION..=limits::MAX_GENERATION).contains(&g) {
            return invalid(
                Field::Generation,
                format!(
                    "generation {g} is out of range: use {} to {}",
                    limits::MIN_GENERATION,
                    limits::MAX_GENERATION
                ),
            );
        }
    }
    if let (Some(lo), Some(hi)) = (req.min_generation, req.max_generation)
        && lo > hi
    {
        return invalid(
            Field::Generation,
            format!("min generation {lo} is above max generation {hi}"),
        );
    }
    if let Some(g) = &req.gpus
        && (g.min_count == 0 || g.min_count > limits::MAX_GPUS)
    {
        return invalid(
            Field::Gpus,
            format!(
                "{} GPUs is out of range: use 1 to {}",
                g.min_count,
                limits::MAX_GPUS
            ),
        );
    }
    Ok(())
}

/// Validates a request against a catalog: its bounds, and that every name in it is known.
pub fn validate(req: &Request, catalog: &Catalog) -> Result<(), RequestError> {
    resolve(req, catalog).map(|_| ())
}

/// Validates a request against a catalog and resolves its names.
pub(crate) fn resolve(req: &Request, catalog: &Catalog) -> Result<Resolved, RequestError> {
    check_bounds(req)?;
    let region = match catalog.region(&req.region) {
        Some(r) => r,
        None if AWS_REGIONS.contains(&req.region.as_str()) => {
            return Err(RequestError::Invalid {
                field: Field::Region,
                message: format!(
                    "the catalog ({}) lists no instance type offerings in {}, so no type can be planned there; pick another region (or use live AWS data)",
                    catalog.source, req.region
                ),
            });
        }
        None => {
            return Err(RequestError::UnknownRegion {
                region: req.region.clone(),
                suggestion: closest(&req.region, AWS_REGIONS.iter().copied()),
            });
        }
    };
    let check_families = |field: Field, list: &[String]| -> Result<HashSet<String>, RequestError> {
        list.iter()
            .map(|f| {
                let f = f.trim().to_ascii_lowercase();
                if catalog.has_family(&f) {
                    Ok(f)
                } else {
                    Err(RequestError::UnknownFamily {
                        field,
                        suggestion: closest(&f, catalog.families()),
                        family: f,
                    })
                }
            })
            .collect()
    };
    let check_types = |field: Field, list: &[String]| -> Result<HashSet<String>, RequestError> {
        list.iter()
            .map(|t| {
                let t = t.trim().to_ascii_lowercase();
                if catalog.get(&t).is_some() {
                    Ok(t)
                } else {
                    Err(RequestError::UnknownType {
                        field,
                        suggestion: closest(&t, catalog.types().iter().map(|x| &*x.name)),
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
                return Err(RequestError::UnknownEmrRelease {
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
