//! The on-demand floor (`spec.capacity.onDemandBase`): the types of the on-demand NodePool.
//!
//! The NodePool's `limits.cpu` is the base, and Karpenter skips a type that would overrun a
//! NodePool's remaining limits: a type with more vCPUs than the base can never launch there. So
//! the floor is planned on its own, at its own size, with types that fit inside it:
//! 1. the plan's written types that fit (their nodes are the plan's anyway);
//! 2. types written to the on-demand NodePool before that still fit and that the floor's own
//!    plan still admits (changing the list replaces nodes, so it changes only when it must);
//! 3. the floor's own plan: the request's filters at the base's vCPUs (and memory in the
//!    request's proportion), ranked and diversified as any plan, in rank order;
//!
//! the written ones all, the kept ones up to [`MOST`], the floor's own until [`WANTED`]. When
//! nothing fits, the floor cannot be met: the plan says so.

use spotplan_core::{Catalog, MarketData, optimize};
use std::collections::BTreeSet;

/// Types the floor wants to offer (a few, so one running out does not stop it).
pub const WANTED: usize = 5;
/// Most types the floor offers.
pub const MOST: usize = 10;

/// The floor's types, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Floor {
    Planned(Vec<String>),
    Unmet(String),
}

/// The types of the on-demand NodePool for a floor of `base` vCPUs under `request`, given the
/// spot list `written` and what the on-demand NodePool holds now (`before`).
pub fn plan(
    request: &spotplan_core::Request,
    base: u32,
    written: &[String],
    before: &BTreeSet<String>,
    market: &MarketData,
) -> Floor {
    let catalog = market.catalog();
    let fits = |t: &String| fits(catalog, t, base);
    let mut r = request.clone();
    r.vcpus = base;
    r.memory_mib = request
        .memory_mib
        .saturating_mul(u64::from(base))
        .div_ceil(u64::from(request.vcpus.max(1)))
        .max(1);
    r.min_types = WANTED;
    r.max_types = MOST;
    let own: Vec<String> = match optimize(&r, market) {
        Ok(plan) => plan
            .candidates
            .iter()
            .map(|c| c.instance_type.clone())
            .filter(fits)
            .collect(),
        Err(_) => Vec::new(),
    };
    // The written types that fit, all of them; then additions up to the limits.
    let mut types: Vec<String> = written.iter().filter(|t| fits(t)).cloned().collect();
    let kept = before.iter().filter(|t| fits(t) && own.contains(t));
    for t in kept {
        if types.len() < MOST && !types.contains(t) {
            types.push(t.clone());
        }
    }
    for t in &own {
        if types.len() < WANTED && !types.contains(t) {
            types.push(t.clone());
        }
    }
    if types.is_empty() {
        return Floor::Unmet(format!(
            "no instance type the plan admits has {base} vCPUs or fewer, so none fits under the on-demand NodePool's limits.cpu ({base}): raise spec.capacity.onDemandBase.cpu, or widen the filters (families, generations, architectures)"
        ));
    }
    Floor::Planned(types)
}

fn fits(catalog: &Catalog, t: &str, base: u32) -> bool {
    catalog.get(t).is_some_and(|t| t.vcpus <= base)
}
