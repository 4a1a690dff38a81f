//! Every name spotplan writes into the cluster, in one place: the field manager, its labels and
//! annotations, the condition types, and the names of a plan's NodePools.

use spotplan_core::render::nodepool_name;

/// Field manager of every server-side apply the controller makes (and the reporting controller
/// of its Events).
pub const FIELD_MANAGER: &str = "spotplan-controller";
/// Label on owned NodePools (and, through the template, on their nodes) naming the SpotPlan.
/// For humans and selectors only: ownership is the owner reference's uid.
pub const PLAN_LABEL: &str = "spotplan.dev/plan";
/// Label telling a plan's NodePools apart (`spot`, `on-demand-base`, `shift`).
pub const ROLE_LABEL: &str = "spotplan.dev/role";
/// The managed-by label on everything the controller writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Annotation with the owning SpotPlan's uid, also on NodePools kept by `deletionPolicy: Orphan`
/// (which carry no owner reference).
pub const OWNER_UID_ANNOTATION: &str = "spotplan.dev/owner-uid";
/// Annotation with the `deletionPolicy` a NodePool was written under: `Delete` means it was
/// written with an owner reference, so one without it was taken out of the plan's control.
pub const DELETION_POLICY_ANNOTATION: &str = "spotplan.dev/deletion-policy";

/// The name suffix of a plan's on-demand base NodePool. SpotPlan names cannot end with it (CEL),
/// so no plan's spot NodePool can take another plan's on-demand name.
pub const ON_DEMAND_SUFFIX: &str = "on-demand";
/// Suffix of the NodePool that takes new capacity while a plan is shifted to on-demand.
pub const SHIFT_SUFFIX: &str = "shift";

/// Condition types on a SpotPlan.
pub mod conditions {
    /// The NodePools match the current plan, and Karpenter can use them.
    pub const READY: &str = "Ready";
    /// Karpenter's own `Ready` on the NodePools the plan wrote: True, False (with its reason),
    /// or Unknown (not validated yet, or no Karpenter).
    pub const NODEPOOLS_READY: &str = "NodePoolsReady";
    /// Market data is fresh (refreshed recently and the last refresh succeeded).
    pub const DATA_FRESH: &str = "DataFresh";
    /// `spec.suspend` is set: NodePools are left as they are.
    pub const SUSPENDED: &str = "Suspended";
    /// A narrowing of the type list is waiting for `minNarrowInterval` to pass.
    pub const NARROWING_DEFERRED: &str = "NarrowingDeferred";
    /// `spec.capacity.onDemandBase` is planned with types that fit inside it (False: none fits).
    pub const ON_DEMAND_BASE: &str = "OnDemandBase";
    /// New capacity goes on-demand because the plan's spot nodes were interrupted
    /// (`spec.capacity.onDemandShift`).
    pub const SHIFTED_TO_ON_DEMAND: &str = "ShiftedToOnDemand";
    /// The plan's ranking is priced into Karpenter's choice with NodeOverlays (False: why not,
    /// or a conflict Karpenter reported).
    pub const RISK_PRICING: &str = "RiskPricing";
}

/// What a NodePool of a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The plan's spot capacity.
    Spot,
    /// The on-demand base: higher weight, `limits.cpu` = the base.
    OnDemandBase,
    /// While shifted: on-demand, above both; while returning: spot-only and closed to new
    /// capacity, so its on-demand nodes drift back to spot one at a time.
    Shift,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Spot, Role::OnDemandBase, Role::Shift];

    /// The `spotplan.dev/role` label value (and the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Spot => "spot",
            Role::OnDemandBase => "on-demand-base",
            Role::Shift => "shift",
        }
    }
}

/// The names of a plan's NodePools, computed once from the plan's name (each within 63
/// characters: long ones get a hash suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolNames {
    pub spot: String,
    pub on_demand: String,
    pub shift: String,
}

impl PoolNames {
    pub fn of(plan: &str) -> PoolNames {
        PoolNames {
            spot: nodepool_name(plan, ""),
            on_demand: nodepool_name(plan, ON_DEMAND_SUFFIX),
            shift: nodepool_name(plan, SHIFT_SUFFIX),
        }
    }

    pub fn get(&self, role: Role) -> &str {
        match role {
            Role::Spot => &self.spot,
            Role::OnDemandBase => &self.on_demand,
            Role::Shift => &self.shift,
        }
    }

    /// Every name with its role.
    pub fn all(&self) -> [(Role, &str); 3] {
        Role::ALL.map(|r| (r, self.get(r)))
    }

    /// The role of the NodePool called `name`, if it is one of these.
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.all()
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_has_three_distinct_names_within_63_characters() {
        let n = PoolNames::of("web");
        assert_eq!(
            (n.spot.as_str(), n.on_demand.as_str(), n.shift.as_str()),
            ("web", "web-on-demand", "web-shift")
        );
        let long = PoolNames::of(&"a".repeat(55));
        for (_, name) in long.all() {
            assert!(name.len() <= 63, "{name}");
        }
        assert_eq!(long.role_of(&long.shift), Some(Role::Shift));
        assert_eq!(long.role_of("other"), None);
    }
}
