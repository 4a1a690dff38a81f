//! The EC2 instance catalog: specs of every instance type, where each is offered, and which
//! types each Amazon EMR release supports.
//!
//! The embedded catalog is generated from the PyPI package `moto` by `tools/gen_catalog.py`
//! into `catalog/ec2-catalog.json`, and compiled into statics by `build.rs`: it is ready at
//! start, with nothing to parse. Live data can extend it at run time ([`Catalog::overlay`]):
//! types AWS lists that the embedded copy lacks become plannable.

use crate::naming;
use crate::types::Arch;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::OnceLock;

/// The generated catalog as committed (the input of `build.rs`; tests compare the two).
pub const EMBEDDED_JSON: &str = include_str!("../catalog/ec2-catalog.json");

/// Instance storage of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Storage {
    /// `ssd` or `hdd`.
    pub kind: DiskKind,
    pub nvme: bool,
    pub total_gb: u32,
    pub disks: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskKind {
    Ssd,
    Hdd,
}

/// What kind of accelerator a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceleratorKind {
    Gpu,
    Neuron,
    Inference,
    Fpga,
    Media,
}

/// GPUs and other accelerators attached to a type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Accelerator {
    pub kind: AcceleratorKind,
    pub count: u32,
    pub manufacturer: Cow<'static, str>,
    pub name: Cow<'static, str>,
    /// Memory per device.
    pub memory_mib: u64,
}

/// The processor architecture as EC2 reports it. Mac types have no Kubernetes architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceType {
    pub name: Cow<'static, str>,
    /// `m6i` in `m6i.4xlarge`.
    pub family: Cow<'static, str>,
    /// The leading letters of the family (`m`, `c`, `hpc`, `inf`...), Karpenter's instance-category.
    pub category: Cow<'static, str>,
    /// The first number in the family (`6` in `m6i`), Karpenter's instance-generation.
    pub generation: u8,
    pub vcpus: u32,
    pub cores: u32,
    pub memory_mib: u64,
    pub cpu_arch: CpuArch,
    pub processor: Cow<'static, str>,
    /// Current generation: AWS's published previous-generation families are not (see
    /// tools/gen_catalog.py); live data uses the region's own DescribeInstanceTypes answer.
    pub current_generation: bool,
    pub bare_metal: bool,
    pub burstable: bool,
    pub spot: bool,
    pub storage: Option<Storage>,
    pub accelerators: Cow<'static, [Accelerator]>,
    /// Index of the family in [`Catalog::families`] (for cheap grouping).
    pub family_id: u16,
    /// (region index, bit per AZ index in that region), sorted by region index.
    offered: Cow<'static, [(u16, u64)]>,
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
    /// Offered in `region` according to the catalog (live offerings may say more: see the
    /// market's zones).
    pub fn offered_in(&self, region: RegionId) -> bool {
        self.region_mask & (1 << region.0) != 0
    }
    /// Bit per zone index of `region` where the catalog says the type is offered.
    pub fn zone_mask(&self, region: RegionId) -> u64 {
        self.offered
            .iter()
            .find(|(r, _)| *r == region.0)
            .map_or(0, |(_, m)| *m)
    }
}

/// The specs of a type as DescribeInstanceTypes gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeSpec {
    pub name: String,
    pub vcpus: u32,
    pub cores: u32,
    pub memory_mib: u64,
    pub cpu_arch: CpuArch,
    pub processor: String,
    pub current_generation: bool,
    pub bare_metal: bool,
    pub burstable: bool,
    pub spot: bool,
    pub storage: Option<Storage>,
    pub accelerators: Vec<Accelerator>,
}

/// Index of a region in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(u16);

impl RegionId {
    /// Position of the region in [`Catalog::regions`].
    pub fn slot(self) -> usize {
        usize::from(self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: Cow<'static, str>,
    pub zones: Cow<'static, [Cow<'static, str>]>,
}

/// The whole catalog with its lookups. Types, regions, families and EMR releases are sorted by
/// name, so lookups are binary searches over the statics (nothing to build at start).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub source: Cow<'static, str>,
    types: Cow<'static, [InstanceType]>,
    regions: Cow<'static, [Region]>,
    families: Cow<'static, [Cow<'static, str>]>,
    emr_releases: Cow<'static, [(Cow<'static, str>, u8)]>,
}

mod generated {
    use super::*;
    include!(concat!(env!("OUT_DIR"), "/catalog_data.rs"));
}

/// The most regions a catalog holds (one bit each in a type's region mask).
pub const MAX_REGIONS: usize = 64;

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog {
            source: Cow::Borrowed(generated::SOURCE),
            types: Cow::Borrowed(generated::TYPES),
            regions: Cow::Borrowed(generated::REGIONS),
            families: Cow::Borrowed(generated::FAMILIES),
            emr_releases: Cow::Borrowed(generated::EMR_RELEASES),
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
        self.index_of(name).map(|i| &self.types[i])
    }
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.types.binary_search_by(|t| (*t.name).cmp(name)).ok()
    }
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
    pub fn region(&self, name: &str) -> Option<RegionId> {
        self.regions
            .binary_search_by(|r| (*r.name).cmp(name))
            .ok()
            .map(|i| RegionId(i as u16))
    }
    pub fn has_family(&self, family: &str) -> bool {
        self.families
            .binary_search_by(|f| (**f).cmp(family))
            .is_ok()
    }
    /// Number of distinct families (family ids are `0..family_count()`).
    pub fn family_count(&self) -> usize {
        self.families.len()
    }
    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.families.iter().map(|f| &**f)
    }
    /// The AZs of `region` where the catalog says `t` is offered.
    pub fn zones_of<'a>(&'a self, t: &InstanceType, region: RegionId) -> Vec<&'a str> {
        let mask = t.zone_mask(region);
        self.regions[region.slot()]
            .zones
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, z)| &**z)
            .collect()
    }
    /// EMR release labels the catalog knows, sorted.
    pub fn emr_releases(&self) -> impl Iterator<Item = &str> {
        self.emr_releases.iter().map(|(r, _)| &**r)
    }
    /// Resolves `6.10.0` or `emr-6.10.0` to the release label and its type-set bit.
    pub fn emr_release(&self, release: &str) -> Option<(String, EmrRelease)> {
        let label = normalize_emr_release(release);
        self.emr_releases
            .binary_search_by(|(r, _)| (**r).cmp(label.as_str()))
            .ok()
            .map(|i| (label, EmrRelease(1u128 << self.emr_releases[i].1)))
    }

    /// This catalog corrected by live knowledge (DescribeInstanceTypes and
    /// DescribeInstanceTypeOfferings): see [`Overlay`]. Types are never removed, only their
    /// offerings; indexes of types, regions and families may change.
    pub fn overlay(&self, ov: &Overlay) -> Catalog {
        let mut regions = self.regions.to_vec();
        // Region zone lists: the account's own AZ names where offerings are known.
        for (name, by_type) in &ov.offerings {
            let mut zones: Vec<&str> = by_type
                .iter()
                .flat_map(|(_, z)| z.iter().map(String::as_str))
                .collect();
            zones.sort_unstable();
            zones.dedup();
            zones.truncate(64);
            let zones: Vec<Cow<'static, str>> = zones
                .into_iter()
                .map(|z| Cow::Owned(z.to_string()))
                .collect();
            match regions.iter().position(|r| *r.name == **name) {
                Some(i) => regions[i].zones = Cow::Owned(zones),
                None if regions.len() < MAX_REGIONS => regions.push(Region {
                    name: Cow::Owned(name.clone()),
                    zones: Cow::Owned(zones),
                }),
                None => {}
            }
        }
        regions.sort_by(|a, b| a.name.cmp(&b.name));
        let region_id = |name: &str| regions.iter().position(|r| *r.name == *name);

        let mut types: Vec<InstanceType> = self.types.to_vec();
        for spec in &ov.specs {
            if self.index_of(&spec.name).is_some() {
                continue;
            }
            let family = naming::family_of(&spec.name).to_string();
            let (category, generation) = naming::category_and_generation(&family);
            types.push(InstanceType {
                name: Cow::Owned(spec.name.clone()),
                category: Cow::Owned(category.to_string()),
                family: Cow::Owned(family),
                generation,
                vcpus: spec.vcpus,
                cores: spec.cores,
                memory_mib: spec.memory_mib,
                cpu_arch: spec.cpu_arch,
                processor: Cow::Owned(spec.processor.clone()),
                current_generation: spec.current_generation,
                bare_metal: spec.bare_metal,
                burstable: spec.burstable,
                spot: spec.spot,
                storage: spec.storage,
                accelerators: Cow::Owned(spec.accelerators.clone()),
                family_id: 0,
                offered: Cow::Owned(Vec::new()),
                region_mask: 0,
                emr_sets: 0,
            });
        }
        types.sort_by(|a, b| a.name.cmp(&b.name));
        let live_regions: Vec<usize> = ov
            .offerings
            .iter()
            .filter_map(|(r, _)| region_id(r))
            .collect();
        for t in &mut types {
            // Catalog offerings under the new region indexes, except in regions with live
            // offerings, which replace them.
            let mut offered: Vec<(u16, u64)> = t
                .offered
                .iter()
                .filter_map(|(r, m)| {
                    let name = &self.regions[usize::from(*r)].name;
                    let id = region_id(name)?;
                    (!live_regions.contains(&id)).then_some((id as u16, *m))
                })
                .collect();
            for (region, by_type) in &ov.offerings {
                let Some(id) = region_id(region) else {
                    continue;
                };
                let Ok(i) = by_type.binary_search_by(|(ty, _)| ty.as_str().cmp(&t.name)) else {
                    continue;
                };
                let known = &regions[id].zones;
                let mask = by_type[i]
                    .1
                    .iter()
                    .filter_map(|z| known.iter().position(|k| **k == **z))
                    .fold(0u64, |m, z| m | 1 << z);
                if mask != 0 {
                    offered.push((id as u16, mask));
                }
            }
            offered.sort_unstable();
            t.region_mask = offered.iter().fold(0, |m, (r, _)| m | 1 << r);
            t.offered = Cow::Owned(offered);
        }
        for (ty, is_current) in &ov.current_generation {
            if let Ok(i) = types.binary_search_by(|t| (*t.name).cmp(ty)) {
                types[i].current_generation = *is_current;
            }
        }
        // Families stay sorted (lookups are binary searches): renumber every type's family.
        let mut families: Vec<Cow<'static, str>> = types.iter().map(|t| t.family.clone()).collect();
        families.sort_unstable();
        families.dedup();
        for t in &mut types {
            let id = families.binary_search(&t.family).unwrap_or(0);
            t.family_id = u16::try_from(id).unwrap_or(u16::MAX);
        }
        Catalog {
            source: self.source.clone(),
            types: Cow::Owned(types),
            regions: Cow::Owned(regions),
            families: Cow::Owned(families),
            emr_releases: self.emr_releases.clone(),
        }
    }
}

/// The zones of each type offered in a region, sorted by type.
pub type RegionOfferings = Vec<(String, Vec<String>)>;

/// What live EC2 data says about the catalog.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overlay {
    /// Specs of types the catalog lacks (DescribeInstanceTypes).
    pub specs: Vec<TypeSpec>,
    /// Per region, the zones of each type offered there (DescribeInstanceTypeOfferings by
    /// availability zone), sorted by type. A region listed here has exactly these offerings and
    /// the account's zone names; regions the catalog lacks are added.
    pub offerings: Vec<(String, RegionOfferings)>,
    /// The live generation flag per type.
    pub current_generation: Vec<(String, bool)>,
}

impl Overlay {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty() && self.offerings.is_empty() && self.current_generation.is_empty()
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
    fn embedded_catalog_facts() {
        let c = Catalog::embedded();
        assert!(c.len() > 1300, "{} types", c.len());
        let m = c.get("m6i.4xlarge").unwrap();
        assert_eq!(
            (m.vcpus, m.memory_mib, m.arch()),
            (16, 65536, Some(Arch::Amd64))
        );
        assert_eq!((&*m.family, m.generation), ("m6i", 6));
        let g = c.get("c6gd.large").unwrap();
        let s = g.storage.as_ref().unwrap();
        assert!(s.nvme && s.kind == DiskKind::Ssd && g.has_local_ssd());
        assert_eq!(g.arch(), Some(Arch::Arm64));
        let p = c.get("p4d.24xlarge").unwrap();
        let gpu = p.gpus().next().unwrap();
        assert_eq!(
            (gpu.count, &*gpu.manufacturer, &*gpu.name),
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
        assert!(c.has_family("m6i") && !c.has_family("m6x"));
    }

    /// The statics build.rs generates say exactly what the committed JSON says.
    #[test]
    fn statics_match_the_committed_json() {
        let doc: serde_json::Value = serde_json::from_str(EMBEDDED_JSON).unwrap();
        let c = Catalog::embedded();
        assert_eq!(c.source, doc["source"].as_str().unwrap());
        let types = doc["types"].as_array().unwrap();
        assert_eq!(c.len(), types.len());
        let regions = doc["regions"].as_object().unwrap();
        assert_eq!(c.regions().len(), regions.len());
        for (name, zones) in regions {
            let id = c.region(name).unwrap();
            let want: Vec<&str> = zones
                .as_array()
                .unwrap()
                .iter()
                .map(|z| z.as_str().unwrap())
                .collect();
            let have: Vec<&str> = c.regions()[id.slot()].zones.iter().map(|z| &**z).collect();
            assert_eq!(have, want, "{name}");
        }
        for j in types {
            let t = c.get(j["name"].as_str().unwrap()).unwrap();
            assert_eq!(u64::from(t.vcpus), j["vcpus"].as_u64().unwrap());
            assert_eq!(u64::from(t.cores), j["cores"].as_u64().unwrap());
            assert_eq!(t.memory_mib, j["memory_mib"].as_u64().unwrap());
            assert_eq!(
                t.current_generation,
                j["current_generation"].as_bool().unwrap()
            );
            assert_eq!(t.bare_metal, j["bare_metal"].as_bool().unwrap());
            assert_eq!(t.burstable, j["burstable"].as_bool().unwrap());
            assert_eq!(t.spot, j["spot"].as_bool().unwrap());
            assert_eq!(t.storage.is_some(), !j["storage"].is_null());
            assert_eq!(
                t.accelerators.len(),
                j["accelerators"].as_array().unwrap().len()
            );
            for (region, letters) in j["offered"].as_object().unwrap() {
                let id = c.region(region).unwrap();
                let zones: Vec<String> = letters
                    .as_str()
                    .unwrap()
                    .chars()
                    .map(|l| format!("{region}{l}"))
                    .collect();
                assert_eq!(c.zones_of(t, id), zones, "{} in {region}", t.name);
            }
            let offered = j["offered"].as_object().unwrap().len();
            assert_eq!(
                c.regions()
                    .iter()
                    .filter(|r| t.offered_in(c.region(&r.name).unwrap()))
                    .count(),
                offered,
                "{}",
                t.name
            );
        }
        let releases = doc["emr"]["releases"].as_object().unwrap();
        assert_eq!(c.emr_releases().count(), releases.len());
        for (release, set) in releases {
            let (_, emr) = c.emr_release(release).unwrap();
            let members = doc["emr"]["sets"][set.as_u64().unwrap() as usize]
                .as_array()
                .unwrap();
            let supported = c.types().iter().filter(|t| emr.supports(t)).count();
            assert_eq!(
                supported,
                members
                    .iter()
                    .filter(|m| c.get(m.as_str().unwrap()).is_some())
                    .count(),
                "{release}"
            );
        }
    }

    #[test]
    fn overlay_adds_types_regions_and_replaces_offerings() {
        let c = Catalog::embedded();
        let spec = TypeSpec {
            name: "zz9x.large".into(),
            vcpus: 2,
            cores: 1,
            memory_mib: 8192,
            cpu_arch: CpuArch::X86_64,
            processor: "Intel".into(),
            current_generation: true,
            bare_metal: false,
            burstable: false,
            spot: true,
            storage: None,
            accelerators: vec![],
        };
        let z = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = c.overlay(&Overlay {
            specs: vec![spec],
            offerings: vec![
                (
                    "us-east-1".into(),
                    vec![
                        ("m6i.4xlarge".into(), z(&["us-east-1b", "us-east-1c"])),
                        ("zz9x.large".into(), z(&["us-east-1a"])),
                    ],
                ),
                (
                    "mx-central-1".into(),
                    vec![("m7i.large".into(), z(&["mx-central-1a"]))],
                ),
            ],
            current_generation: vec![("m5.large".into(), false)],
        });
        let east = o.region("us-east-1").unwrap();
        let mx = o.region("mx-central-1").unwrap();
        let w2 = o.region("us-west-2").unwrap();
        let t = o.get("zz9x.large").unwrap();
        assert!(t.offered_in(east) && !t.offered_in(mx));
        assert_eq!(o.zones_of(t, east), vec!["us-east-1a"]);
        assert!(o.get("m7i.large").unwrap().offered_in(mx));
        assert!(
            !o.get("m7i.large").unwrap().offered_in(east),
            "live offerings replace the catalog's in that region"
        );
        let m = o.get("m6i.4xlarge").unwrap();
        assert_eq!(o.zones_of(m, east), vec!["us-east-1b", "us-east-1c"]);
        // Regions without live data keep the catalog's offerings under the new indexes.
        let cm = c.get("m6i.4xlarge").unwrap();
        assert_eq!(
            o.zones_of(m, w2),
            c.zones_of(cm, c.region("us-west-2").unwrap())
        );
        assert!(!o.get("m5.large").unwrap().current_generation);
        assert!(o.has_family("zz9x") && o.has_family("m6i"));
        assert_eq!(o.len(), c.len() + 1);
        for t in o.types() {
            assert_eq!(
                o.get(&t.name).unwrap().name,
                t.name,
                "lookups work on the overlay"
            );
        }
    }
}
