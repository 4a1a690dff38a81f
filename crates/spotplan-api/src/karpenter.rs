//! Karpenter's names as spotplan reads and writes them (`karpenter.sh/v1`, v1.14): its kinds,
//! the labels it puts on NodeClaims, and the Event reasons it publishes.

use kube_core::{ApiResource, GroupVersionKind};

pub use spotplan_core::render::{LABEL_ARCH, LABEL_CAPACITY_TYPE, LABEL_INSTANCE_TYPE};

/// The NodePool a NodeClaim (and its node) belongs to.
pub const LABEL_NODEPOOL: &str = "karpenter.sh/nodepool";
/// The zone of a launched NodeClaim.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// The event reason of a spot interruption notice (karpenter-provider-aws's interruption
/// controller).
pub const SPOT_INTERRUPTED: &str = "SpotInterrupted";
/// The event reason of a spot rebalance recommendation (karpenter-provider-aws's interruption
/// controller; a Normal Event, and the NodeClaim stays).
pub const SPOT_REBALANCE: &str = "SpotRebalanceRecommendation";
/// The event reason of a NodeClaim the cloud provider had no capacity for (Karpenter's launch
/// controller).
pub const INSUFFICIENT_CAPACITY: &str = "InsufficientCapacityError";
/// The component Karpenter's controllers report their Events as (controller-runtime's
/// recorder for "karpenter": `source.component` and `reportingComponent`).
pub const EVENT_REPORTER: &str = "karpenter";
/// Where Karpenter's Events about NodeClaims land: client-go's recorder puts the Events of a
/// cluster-scoped object in the `default` namespace.
pub const DEFAULT_EVENT_NAMESPACE: &str = "default";

/// `karpenter.sh/v1` NodePool, handled as a dynamic object: spotplan writes only the fields it
/// owns.
pub fn nodepool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool"),
        "nodepools",
    )
}

/// `karpenter.sh/v1` NodeClaim.
pub fn nodeclaim_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim"),
        "nodeclaims",
    )
}

/// `karpenter.sh/v1alpha1` NodeOverlay (feature gate `NodeOverlay`): risk pricing's lever.
pub fn nodeoverlay_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1alpha1", "NodeOverlay"),
        "nodeoverlays",
    )
}
