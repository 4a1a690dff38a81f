//! The embedded EC2 instance catalog: specs of every instance type, where each is offered, and
//! which types each Amazon EMR release supports. Generated from the PyPI package `moto` by
//! `tools/gen_catalog.py` into `catalog/ec2-catalog.json` and compiled into the binary.

use crate::core::types::Arch;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The generated catalog, as committed.
pub const EMBEDDED_JSON: &str = include_str!("../../catalog/ec2-catalog.json");

/// Instance storage of a type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Storage {
    /// `ssd` or `hdd`.
    pub kind: DiskKind,
    pub nvme: bool,
    pub total_gb: u32,
    pub disks: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskKind {
    Ssd,
    Hdd,
}

/// What kind of accelerator a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceleratorKind {
    Gpu,
    Neuron,
    Inference,
    Fpga,
    Media,
}

/// GPUs and other accelerators attached to a type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Accelerator {
    pub kind: AcceleratorKind,
    pub count: u32,
    pub manufacturer: String,
    pub name: String,
    /// Memory per device.
    pub memory_mib: u64,
}

/// The processor architecture as EC2 reports it. Mac types have no Kubernetes architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuArch {
    X86_64,
    Arm64,
    X86_64Mac,
    Arm64Mac,
}

impl CpuArch {
    pub fn kubernetes(self) -> Option<Arch> {
        match self {
            CpuArch::X86_64 => Some(Arch::Amd64),
            CpuArch::Arm64 => Some(Arch::Arm64),
            CpuArch::X86_64Mac | CpuArch::Arm64Mac => None,
        }
    }
}

/// One EC2 instance type.
#[derive(Debug, Clone)]
pub struct InstanceType {
    pub name: String,
    /// `m6i` in `m6i.4xlarge`.
    pub family: String,
    /// The leading letters of the family (`m`, `c`, `hpc`, `inf`...), Karpenter's instance-category.
    pub category: String,
    /// The first number in the family (`6` in `m6i`), Karpenter's instance-generation.
    pub generation: u8,
    pub vcpus: u32,
    pub cores: u32,
    pub memory_mib: u64,
    pub cpu_arch: CpuArch,
    pub processor: String,
    /// AWS's own "current generation" flag.
    pub current_generation: bool,
    pub bare_metal: bool,
    pub burstable: bool,
    pub spot: bool,
    pub storage: Option<Storage>,
    pub accelerators: Vec<Accelerator>,
    /// Index of the family in the catalog (for cheap grouping).
    pub family_id: u16,
    /// (region index, bit per AZ index in that region), sorted by region index.
    offered: Vec<(u16, u64)>,
    /// Bit per region index where the type is offered.
    region_mask: u64,
    /// Bit `i` set when EMR release set `i` supports this type.
    emr_sets: u128,
}

impl InstanceType {
    pub fn arch(&self) -> Option<Arch> {
        self.cpu_arch.kubernetes()
    }
    pub fn memory_gib(&self) -> f64 {
        self.memory_mib as f64 / 1024.0
    }
    pub fn gpu_count(&self) -> u32 {
        self.gpus().map(|g| g.count).sum()
    }
    pub fn gpus(&self) -> impl Iterator<Item = &Accelerator> {
        self.accelerators
            .iter()
            .filter(|a| a.kind == AcceleratorKind::Gpu)
    }
    pub fn has_accelerators(&self) -> bool {
        !self.accelerators.is_empty()
    }
    pub fn has_local_ssd(&self) -> bool {
        matches!(&self.storage, Some(s) if s.kind == DiskKind::Ssd)
    }
    pub fn offered_in(&self, region: RegionId) -> bool {
        self.region_mask & (1 << region.0) != 0
    }
    fn az_mask(&self, region: RegionId) -> u64 {
        self.offered
            .iter()
            .find(|(r, _)| *r == region.0)
            .map_or(0, |(_, m)| *m)
    }
}

/// Index of a region in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionId(u16);

impl RegionId {
    /// Position of the region in [`Catalog::regions`].
    pub fn slot(self) -> usize {
        usize::from(self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Region {
    pub name: String,
    pub zones: Vec<String>,
}

/// The whole catalog with its lookups.
#[derive(Debug)]
pub struct Catalog {
    pub source: String,
    types: Vec<InstanceType>,
    by_name: HashMap<String, usize>,
    regions: Vec<Region>,
    region_index: HashMap<String, RegionId>,
    emr_releases: HashMap<String, usize>,
    families: HashMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("catalog: {0}")]
    Invalid(String),
}

// Borrowed from the input text where possible: the catalog is parsed at every CLI start.
#[derive(Deserialize)]
struct RawCatalog<'a> {
    schema: u32,
    source: String,
    regions: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(borrow)]
    types: Vec<RawType<'a>>,
    #[serde(borrow)]
    emr: RawEmr<'a>,
}

#[derive(Deserialize)]
struct RawType<'a> {
    name: String,
    vcpus: u32,
    cores: u32,
    memory_mib: u64,
    arch: CpuArch,
    processor: String,
    current_generation: bool,
    bare_metal: bool,
    burstable: bool,
    spot: bool,
    storage: Option<Storage>,
    accelerators: Vec<Accelerator>,
    #[serde(borrow)]
    offered: std::collections::BTreeMap<&'a str, &'a str>,
}

#[derive(Deserialize)]
struct RawEmr<'a> {
    #[serde(borrow)]
    sets: Vec<Vec<&'a str>>,
    releases: HashMap<String, usize>,
}

/// Splits `m6i` into (`m`, 6); `u7in-16tb` into (`u`, 7); `u-6tb1` into (`u`, 6).
fn category_and_generation(family: &str) -> (String, u8) {
    let category: String = family
        .chars()
        .take_while(|c| c.is_ascii_lowercase())
        .collect();
    let generation = family
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    (category, generation)
}

impl Catalog {
    /// The catalog compiled into this binary, parsed once per process.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::from_json(EMBEDDED_JSON).expect("the embedded catalog is generated and tested")
        })
    }

    pub fn from_json(text: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = serde_json::from_str(text)?;
        if raw.schema != 1 {
            return Err(CatalogError::Invalid(format!(
                "schema {} is not supported (want 1)",
                raw.schema
            )));
        }
        if raw.emr.sets.len() > 128 {
            return Err(CatalogError::Invalid(
                "more than 128 distinct EMR type sets".into(),
            ));
        }
        let mut regions = Vec::with_capacity(raw.regions.len());
        let mut region_index = HashMap::new();
        for (name, zones) in raw.regions {
            if regions.len() >= 64 {
                return Err(CatalogError::Invalid("more than 64 regions".into()));
            }
            if zones.len() > 64 {
                return Err(CatalogError::Invalid(format!("{name}: more than 64 zones")));
            }
            region_index.insert(name.clone(), RegionId(regions.len() as u16));
            regions.push(Region { name, zones });
        }
        let mut emr_membership: HashMap<&str, u128> = HashMap::new();
        for (i, set) in raw.emr.sets.iter().enumerate() {
            for t in set {
                *emr_membership.entry(t).or_default() |= 1u128 << i;
            }
        }
        // AZ letter -> index in the region's zone list.
        let letters: Vec<[u8; 26]> = regions
            .iter()
            .map(|r| {
                let mut table = [u8::MAX; 26];
                for (i, z) in r.zones.iter().enumerate() {
                    if let Some(l) = z
                        .strip_prefix(r.name.as_str())
                        .and_then(|s| s.bytes().next())
                        && l.is_ascii_lowercase()
                    {
                        table[usize::from(l - b'a')] = i as u8;
                    }
                }
                table
            })
            .collect();
        let mut types = Vec::with_capacity(raw.types.len());
        let mut by_name = HashMap::with_capacity(raw.types.len());
        let mut families: HashMap<String, usize> = HashMap::new();
        for t in raw.types {
            let family = t.name.split('.').next().unwrap_or(&t.name).to_string();
            let (category, generation) = category_and_generation(&family);
            let mut offered = Vec::with_capacity(t.offered.len());
            for (&region, &zone_letters) in &t.offered {
                let id = *region_index.get(region).ok_or_else(|| {
                    CatalogError::Invalid(format!("{}: unknown region {region}", t.name))
                })?;
                let mut mask = 0u64;
                for letter in zone_letters.bytes() {
                    let z = letter
                        .checked_sub(b'a')
                        .and_then(|i| letters[id.slot()].get(usize::from(i)))
                        .copied()
                        .filter(|&z| z != u8::MAX)
                        .ok_or_else(|| {
                            CatalogError::Invalid(format!(
                                "{}: unknown zone {region}{}",
                                t.name, letter as char
                            ))
                        })?;
                    mask |= 1 << z;
                }
                offered.push((id.0, mask));
            }
            offered.sort_unstable();
            let region_mask = offered.iter().fold(0u64, |m, (r, _)| m | 1 << r);
            let next_id = families.len();
            let family_id = *families.entry(family.clone()).or_insert(next_id) as u16;
            by_name.insert(t.name.clone(), types.len());
            types.push(InstanceType {
                emr_sets: emr_membership.get(t.name.as_str()).copied().unwrap_or(0),
                name: t.name,
                family,
                category,
                generation,
                vcpus: t.vcpus,
                cores: t.cores,
                memory_mib: t.memory_mib,
                cpu_arch: t.arch,
                processor: t.processor,
                current_generation: t.current_generation,
                bare_metal: t.bare_metal,
                burstable: t.burstable,
                spot: t.spot,
                storage: t.storage,
                accelerators: t.accelerators,
                family_id,
                offered,
                region_mask,
            });
        }
        Ok(Catalog {
            source: raw.source,
            types,
            by_name,
            regions,
            region_index,
            emr_releases: raw.emr.releases,
            families,
        })
    }

    pub fn types(&self) -> &[InstanceType] {
        &self.types
    }
    pub fn len(&self) -> usize {
        self.types.len()
    }
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
    pub fn get(&self, name: &str) -> Option<&InstanceType> {
        self.by_name.get(name).map(|&i| &self.types[i])
    }
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
    pub fn region(&self, name: &str) -> Option<RegionId> {
        self.region_index.get(name).copied()
    }
    pub fn region_name(&self, id: RegionId) -> &str {
        &self.regions[usize::from(id.0)].name
    }
    pub fn has_family(&self, family: &str) -> bool {
        self.families.contains_key(family)
    }
    /// Number of distinct families (family ids are `0..family_count()`).
    pub fn family_count(&self) -> usize {
        self.families.len()
    }
    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.families.keys().map(String::as_str)
    }
    /// The AZs of `region` where `t` is offered.
    pub fn zones_of<'a>(&'a self, t: &InstanceType, region: RegionId) -> Vec<&'a str> {
        let mask = t.az_mask(region);
        self.regions[usize::from(region.0)]
            .zones
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, z)| z.as_str())
            .collect()
    }
    /// EMR release labels the catalog knows, sorted.
    pub fn emr_releases(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.emr_releases.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
    /// Resolves `6.10.0` or `emr-6.10.0` to the release label and its type-set bit.
    pub fn emr_release(&self, release: &str) -> Option<(String, EmrRelease)> {
        let label = normalize_emr_release(release);
        self.emr_releases
            .get(&label)
            .map(|&i| (label, EmrRelease(1u128 << i)))
    }
}

/// An EMR release resolved against the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmrRelease(u128);

impl EmrRelease {
    pub fn supports(self, t: &InstanceType) -> bool {
        t.emr_sets & self.0 != 0
    }
}

/// `6.10.0` -> `emr-6.10.0`; labels that already carry a prefix stay as they are.
pub fn normalize_emr_release(release: &str) -> String {
    let r = release.trim().to_ascii_lowercase();
    if r.starts_with("emr-") {
        r
    } else {
        format!("emr-{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_split() {
        assert_eq!(category_and_generation("m6i"), ("m".into(), 6));
        assert_eq!(category_and_generation("c7i-flex"), ("c".into(), 7));
        assert_eq!(category_and_generation("u-6tb1"), ("u".into(), 6));
        assert_eq!(category_and_generation("hpc7g"), ("hpc".into(), 7));
        assert_eq!(category_and_generation("p6-b200"), ("p".into(), 6));
    }

    #[test]
    fn embedded_catalog_facts() {
        let c = Catalog::embedded();
        assert!(c.len() > 1300, "{} types", c.len());
        let m = c.get("m6i.4xlarge").unwrap();
        assert_eq!(
            (m.vcpus, m.memory_mib, m.arch()),
            (16, 65536, Some(Arch::Amd64))
        );
        assert_eq!((m.family.as_str(), m.generation), ("m6i", 6));
        let g = c.get("c6gd.large").unwrap();
        let s = g.storage.as_ref().unwrap();
        assert!(s.nvme && s.kind == DiskKind::Ssd && g.has_local_ssd());
        assert_eq!(g.arch(), Some(Arch::Arm64));
        let p = c.get("p4d.24xlarge").unwrap();
        let gpu = p.gpus().next().unwrap();
        assert_eq!(
            (gpu.count, gpu.manufacturer.as_str(), gpu.name.as_str()),
            (8, "NVIDIA", "A100")
        );
        assert_eq!(p.gpu_count(), 8);
        for t in c.types().iter().filter(|t| t.family == "t3") {
            assert!(t.burstable, "{} is burstable", t.name);
        }
        let east = c.region("us-east-1").unwrap();
        assert!(m.offered_in(east));
        assert!(c.zones_of(m, east).contains(&"us-east-1a"));
        let (label, emr) = c.emr_release("6.10.0").unwrap();
        assert_eq!(label, "emr-6.10.0");
        assert!(emr.supports(c.get("m5.xlarge").unwrap()));
        assert!(!emr.supports(c.get("c8gd.xlarge").unwrap()));
        let (_, emr7) = c.emr_release("emr-7.9.0").unwrap();
        assert!(emr7.supports(c.get("c8gd.xlarge").unwrap()));
    }
}
