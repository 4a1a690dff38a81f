//! The NodeOverlays a plan should have: its spot NodePool's types priced as the plan ranks them
//! ([`spotplan_core::policy::pricing`]), written as `karpenter.sh/v1alpha1` objects pinned to
//! that NodePool. Pure: whether risk pricing applies, the desired objects, and the comparison
//! with the live ones (writes, deletions, conflicts Karpenter reported).
//!
//! Handled as NodePools are: server-side apply, an owner reference to the SpotPlan (so the
//! garbage collector deletes them with it, whatever `deletionPolicy` says of NodePools), the
//! managed-by label; an overlay is the plan's only by its owner reference's uid, and one that
//! holds a name we want but is not ours is never written over.

use super::nodepools::Owner;
use crate::crd::RiskPricing;
use crate::names::{FIELD_MANAGER, MANAGED_BY_LABEL, OWNER_UID_ANNOTATION, PLAN_LABEL, ROLE_LABEL};
use kube_core::{DynamicObject, ResourceExt};
use serde_json::{Value, json};
use spotplan_core::policy::pricing::Pricing;
use spotplan_core::render::{json_subset, overlay};

/// Whether the controller can write NodeOverlays at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The cluster serves `karpenter.sh/v1alpha1` NodeOverlay and the controller may use it.
    Served,
    /// The cluster does not serve it (Karpenter's NodeOverlay CRD missing).
    NotServed,
    /// The controller runs with risk pricing off (`--risk-pricing=off`).
    Off,
}

/// Whether risk pricing applies to a plan, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applies {
    Yes,
    No {
        reason: &'static str,
        message: String,
    },
}

/// The rule: `spec.riskPricing` Disabled, or the controller's flag, turn it off; Enabled or unset
/// turn it on where the cluster serves NodeOverlays.
pub fn applies(spec: Option<RiskPricing>, support: Support) -> Applies {
    let no = |reason, message: &str| Applies::No {
        reason,
        message: message.to_string(),
    };
    match (spec, support) {
        (Some(RiskPricing::Disabled), _) => no(
            "Disabled",
            "spec.riskPricing is Disabled: Karpenter launches the listed types by its own allocation strategy, whatever the plan's ranking",
        ),
        (_, Support::Off) => no(
            "DisabledByController",
            "the controller runs with --risk-pricing=off (chart value riskPricing.enabled=false)",
        ),
        (Some(RiskPricing::Enabled), Support::NotServed) => no(
            "NodeOverlayNotServed",
            "spec.riskPricing is Enabled but the cluster does not serve karpenter.sh/v1alpha1 NodeOverlay: install Karpenter's NodeOverlay CRD and start Karpenter with --feature-gates NodeOverlay=true (README, Risk pricing)",
        ),
        (None, Support::NotServed) => no(
            "NodeOverlayNotServed",
            "off by default: the cluster does not serve karpenter.sh/v1alpha1 NodeOverlay; to price risk into Karpenter's choice, install Karpenter's NodeOverlay CRD and start Karpenter with --feature-gates NodeOverlay=true (README, Risk pricing)",
        ),
        (_, Support::Served) => Applies::Yes,
    }
}

/// One NodeOverlay to write.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredOverlay {
    pub name: String,
    pub object: Value,
}

/// The overlays of the plan's spot NodePool `pool`.
pub fn desired(owner: Owner, pool: &str, pricing: &Pricing) -> Vec<DesiredOverlay> {
    overlay::overlay_specs(pool, pricing)
        .into_iter()
        .map(|(name, spec)| DesiredOverlay {
            object: json!({
                "apiVersion": "karpenter.sh/v1alpha1",
                "kind": "NodeOverlay",
                "metadata": {
                    "name": name,
                    "labels": {
                        PLAN_LABEL: owner.name,
                        ROLE_LABEL: "risk-pricing",
                        MANAGED_BY_LABEL: FIELD_MANAGER,
                    },
                    "annotations": {OWNER_UID_ANNOTATION: owner.uid},
                    "ownerReferences": [{
                        "apiVersion": owner.api_version, "kind": owner.kind,
                        "name": owner.name, "uid": owner.uid,
                        "controller": true, "blockOwnerDeletion": true,
                    }],
                },
                "spec": spec,
            }),
            name,
        })
        .collect()
}

/// Whether a live overlay is the plan with `uid`'s: its owner reference, never a label.
pub fn ours(o: &DynamicObject, uid: &str) -> bool {
    o.owner_references().iter().any(|r| r.uid == uid)
}

/// An overlay to write: created when absent, else applied with the live uid as a precondition.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayWrite {
    pub overlay: DesiredOverlay,
    pub live_uid: Option<String>,
}

/// A live overlay of the plan's it no longer wants.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayDelete {
    pub name: String,
    pub uid: String,
}

/// What to do about the overlays, and what Karpenter says of the live ones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changes {
    pub writes: Vec<OverlayWrite>,
    pub deletes: Vec<OverlayDelete>,
    /// Names we want that an overlay not ours holds (never written over).
    pub taken: Vec<String>,
    /// Our live overlays Karpenter refused or found in conflict: "name: reason: message".
    pub refused: Vec<String>,
    /// Our live overlays Karpenter has not validated yet.
    pub pending: Vec<String>,
}

/// Where the shell's cache keeps a live overlay's [`spec_hash`] (it drops the spec itself: a
/// pool's overlays list its types, and at a thousand plans the specs were most of the cache).
pub const SPEC_HASH_FIELD: &str = "spotplanSpecHash";

/// A hash of an overlay spec, the same for the same JSON whatever the order of its keys (the API
/// server returns a custom resource's keys sorted). Compared within one process only.
pub fn spec_hash(spec: &Value) -> String {
    use std::hash::{Hash, Hasher};
    fn walk(v: &Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                "{".hash(h);
                for k in keys {
                    k.hash(h);
                    walk(&m[k], h);
                }
                "}".hash(h);
            }
            Value::Array(a) => {
                "[".hash(h);
                a.iter().for_each(|x| walk(x, h));
                "]".hash(h);
            }
            other => other.to_string().hash(h),
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    walk(spec, &mut h);
    format!("{:016x}", h.finish())
}

/// A live overlay's spec hash: the cache's, or computed from its spec.
fn live_spec_hash(o: &DynamicObject) -> String {
    match o.data[SPEC_HASH_FIELD].as_str() {
        Some(h) => h.to_string(),
        None => spec_hash(&o.data["spec"]),
    }
}

/// Whether `live` already is `want`: the same spec, and our metadata on it.
fn up_to_date(want: &DesiredOverlay, live: &DynamicObject) -> bool {
    let meta = |v: &Value| json!({"metadata": v["metadata"].clone()});
    spec_hash(&want.object["spec"]) == live_spec_hash(live)
        && serde_json::to_value(live).is_ok_and(|v| json_subset(&meta(&want.object), &meta(&v)))
}

/// Compares `want` with the `live` overlays that carry the plan's names or owner reference.
pub fn changes(want: &[DesiredOverlay], live: &[DynamicObject], uid: &str) -> Changes {
    let mut c = Changes::default();
    let find = |name: &str| {
        live.iter()
            .find(|o| o.metadata.name.as_deref() == Some(name))
    };
    for w in want {
        match find(&w.name) {
            Some(l) if !ours(l, uid) => c.taken.push(w.name.clone()),
            Some(l) => {
                if !up_to_date(w, l) {
                    c.writes.push(OverlayWrite {
                        overlay: w.clone(),
                        live_uid: l.uid(),
                    });
                }
                match validation(l) {
                    Validation::True => {}
                    Validation::Pending => c.pending.push(w.name.clone()),
                    Validation::False(why) => c.refused.push(format!("{}: {why}", w.name)),
                }
            }
            None => {
                c.writes.push(OverlayWrite {
                    overlay: w.clone(),
                    live_uid: None,
                });
                c.pending.push(w.name.clone());
            }
        }
    }
    for l in live.iter().filter(|l| ours(l, uid)) {
        let name = l.metadata.name.clone().unwrap_or_default();
        if !want.iter().any(|w| w.name == name) {
            c.deletes.push(OverlayDelete {
                name,
                uid: l.uid().unwrap_or_default(),
            });
        }
    }
    c
}

/// The deletions of every overlay of the plan's (risk pricing off for it).
pub fn all_of(live: &[DynamicObject], uid: &str) -> Vec<OverlayDelete> {
    changes(&[], live, uid).deletes
}

enum Validation {
    True,
    Pending,
    False(String),
}

/// Karpenter's `ValidationSucceeded` condition on an overlay (its overlay controller sets it
/// False with reason `Conflict` when another overlay of the same weight prices the same
/// offering).
fn validation(o: &DynamicObject) -> Validation {
    let conds = o.data["status"]["conditions"].as_array();
    let Some(c) = conds
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "ValidationSucceeded")
    else {
        return Validation::Pending;
    };
    match c["status"].as_str() {
        Some("True") => Validation::True,
        Some("False") => Validation::False(format!(
            "{}: {}",
            c["reason"].as_str().unwrap_or_default(),
            c["message"].as_str().unwrap_or_default()
        )),
        _ => Validation::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_hash_ignores_key_order_and_sees_every_value() {
        // As spotplan builds it, and as the API server returns it (keys sorted).
        let ours = json!({"requirements": [{"key": "k", "operator": "In", "values": ["a", "b"]}],
            "priceAdjustment": "+5%", "weight": 20});
        let server = json!({"priceAdjustment": "+5%",
            "requirements": [{"operator": "In", "values": ["a", "b"], "key": "k"}], "weight": 20});
        assert_eq!(spec_hash(&ours), spec_hash(&server));
        for changed in [
            json!({"requirements": [{"key": "k", "operator": "In", "values": ["a", "b"]}], "priceAdjustment": "+6%", "weight": 20}),
            json!({"requirements": [{"key": "k", "operator": "In", "values": ["b", "a"]}], "priceAdjustment": "+5%", "weight": 20}),
            json!({"requirements": [{"key": "k", "operator": "In", "values": ["a", "b"]}], "priceAdjustment": "+5%", "weight": 21}),
        ] {
            assert_ne!(spec_hash(&ours), spec_hash(&changed), "{changed}");
        }
    }
}
