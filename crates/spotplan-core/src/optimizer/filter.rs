//! The hard filters, in the order they run; the first that rejects a type is counted against it.

use super::request::{Request, Resolved};
use crate::catalog::InstanceType;
use crate::market::Quote;

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
    /// The Spot Advisor data has no band for the type in the region: no interruption ceiling
    /// admits it.
    NoBand,
    MaxInterruptionBand,
    NodeCount,
}

impl Filter {
    pub const ALL: [Filter; 17] = [
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
        Filter::NoBand,
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
            Filter::NoBand => "no_interruption_band",
            Filter::MaxInterruptionBand => "max_interruption_band",
            Filter::NodeCount => "mode_node_count",
        }
    }

    /// How to loosen this filter.
    pub fn hint(self) -> &'static str {
        match self {
            Filter::Region => "the catalog has no types offered there; pick another region",
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
            Filter::NoBand => {
                "the Spot Advisor data has no interruption band for them in this region, so no ceiling admits them: check the data source (spotplan data show --region R)"
            }
            Filter::MaxInterruptionBand => "raise the max interruption band",
            Filter::NodeCount => "try another mode (latency, balanced, fault_tolerance)",
        }
    }
}

/// Which filter, if any, rejects `t` before node counts are considered (the first one in
/// [`Filter::ALL`] order). `max_band` is the band ceiling in force (the request's own, or a
/// default cap).
pub(crate) fn rejecting_filter(
    req: &Request,
    r: &Resolved,
    t: &InstanceType,
    quote: &Quote,
    max_band: Option<u8>,
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
    let named_type = !r.types.is_empty() && r.types.contains(&*t.name);
    let named_family = !r.families.is_empty() && r.families.contains(&*t.family);
    if !r.types.is_empty() && !named_type {
        return Some(Filter::InstanceTypes);
    }
    if !r.families.is_empty() && !named_family {
        return Some(Filter::InstanceFamilies);
    }
    if r.exclude_families.contains(&*t.family) {
        return Some(Filter::ExcludeFamilies);
    }
    if r.exclude_types.contains(&*t.name) {
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
    match (max_band, quote.band) {
        (Some(_), None) => Some(Filter::NoBand),
        (Some(max), Some(b)) if b.index() > max => Some(Filter::MaxInterruptionBand),
        _ => None,
    }
}
