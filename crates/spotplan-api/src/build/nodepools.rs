//! The NodePools a plan should have, built in one place. Pure: from the SpotPlan's identity, its
//! parsed spec and the decided instance types to whole `karpenter.sh/v1` objects; and the
//! comparison with what the cluster holds.

use crate::names::{
    DELETION_POLICY_ANNOTATION, FIELD_MANAGER, MANAGED_BY_LABEL, OWNER_UID_ANNOTATION, PLAN_LABEL,
    PoolNames, ROLE_LABEL, Role,
};
use crate::validate::PlanSpec;
use kube_core::DynamicObject;
use kube_core::ResourceExt;
use serde_json::{Value, json};
use spotplan_core::Catalog;
use spotplan_core::policy::shift::Posture;
use spotplan_core::render::{self, CapacityTypes, LABEL_INSTANCE_TYPE, json_subset};
use spotplan_core::types::Arch;
use std::collections::BTreeSet;

/// One NodePool to write.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredNodePool {
    pub name: String,
    pub role: Role,
    /// The whole object as server-side apply gets it.
    pub object: Value,
}

/// The SpotPlan a NodePool belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    pub api_version: &'a str,
    pub kind: &'a str,
}

fn archs_of(types: &[String], catalog: &Catalog) -> Vec<Arch> {
    let mut archs: Vec<Arch> = types
        .iter()
        .filter_map(|t| catalog.get(t).and_then(|t| t.arch()))
        .collect();
    archs.sort_unstable();
    archs.dedup();
    archs
}

/// What the NodePools of one plan are built from.
pub struct Pools<'a> {
    pub owner: Owner<'a>,
    pub names: &'a PoolNames,
    pub spec: &'a PlanSpec,
    /// The decided list.
    pub types: &'a [String],
    /// The on-demand base's types (see [`super::base`]); `None`: no base, or none fits.
    pub base_types: Option<&'a [String]>,
    pub catalog: &'a Catalog,
}

impl Pools<'_> {
    fn pool(
        &self,
        role: Role,
        types: &[String],
        capacity: CapacityTypes,
        weight: i64,
        limits: Option<Value>,
    ) -> DesiredNodePool {
        let name = self.names.get(role).to_string();
        let spec = render::nodepool_spec(
            types,
            &archs_of(types, self.catalog),
            capacity,
            (PLAN_LABEL, self.owner.name),
            &self.spec.settings,
            weight,
            limits,
        );
        DesiredNodePool {
            object: object(&name, role, self.owner, self.spec.orphan, spec),
            name,
            role,
        }
    }

    /// The spot NodePool, and with an on-demand base the on-demand one: on-demand only, weight
    /// above the spot one, `limits.cpu` = the base, offered the floor's types (each fits inside
    /// the base: Karpenter skips a type that would overrun a NodePool's remaining limits).
    pub fn nodepools(&self) -> Vec<DesiredNodePool> {
        let spec = self.spec;
        let mut out = vec![self.pool(
            Role::Spot,
            self.types,
            spec.spot_capacity,
            spec.weights.spot,
            spec.settings.limits.clone(),
        )];
        if let (Some(base), Some(types)) = (spec.on_demand_base, self.base_types) {
            out.push(self.pool(
                Role::OnDemandBase,
                types,
                CapacityTypes::OnDemand,
                spec.weights.on_demand,
                Some(json!({"cpu": base.to_string()})),
            ));
        }
        out
    }

    /// The shift NodePool for `posture` (none on spot). Shifted: on-demand only, weight above the
    /// spot NodePool and the on-demand base, the user's limits (never one below the plan's size of
    /// our own). Returning: the same types on spot only with `limits.cpu: 0`, so it launches
    /// nothing and its on-demand nodes no longer meet its requirements: Karpenter drifts them, one
    /// at a time under the Drifted budget, and their replacements land in the spot NodePool.
    pub fn shift(&self, posture: Posture) -> Option<DesiredNodePool> {
        let (capacity, limits) = match posture {
            Posture::Spot => return None,
            Posture::Shifted { .. } => (CapacityTypes::OnDemand, self.spec.settings.limits.clone()),
            Posture::Returning { .. } => (CapacityTypes::Spot, Some(json!({"cpu": "0"}))),
        };
        Some(self.pool(
            Role::Shift,
            self.types,
            capacity,
            self.spec.weights.shift,
            limits,
        ))
    }
}

/// A NodePool for Git rather than for the controller: no owner reference, owner UID or
/// managed-by label (the controller refuses to take over a NodePool without its owner UID, so
/// applying the SpotPlan of the same name next to these reports a conflict instead of a fight).
pub fn for_git(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("ownerReferences");
        meta.remove("annotations");
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(MANAGED_BY_LABEL);
        }
    }
    object
}

fn object(name: &str, role: Role, owner: Owner, orphan: bool, spec: Value) -> Value {
    let mut meta = json!({
        "name": name,
        "labels": {
            PLAN_LABEL: owner.name,
            ROLE_LABEL: role.as_str(),
            MANAGED_BY_LABEL: FIELD_MANAGER,
        },
        "annotations": {
            OWNER_UID_ANNOTATION: owner.uid,
            DELETION_POLICY_ANNOTATION: (if orphan { "Orphan" } else { "Delete" }),
        },
    });
    if !orphan {
        meta["ownerReferences"] = json!([{
            "apiVersion": owner.api_version, "kind": owner.kind,
            "name": owner.name, "uid": owner.uid, "controller": true, "blockOwnerDeletion": true,
        }]);
    }
    json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": meta, "spec": spec})
}

/// Whose a live NodePool is, for one SpotPlan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The plan's: an owner reference with the plan's uid, or (written under `deletionPolicy:
    /// Orphan`, which writes no owner reference) the plan's uid in our annotation.
    Ours,
    /// Written by the plan with an owner reference that someone removed: taken out of the
    /// plan's control. spotplan never takes it back.
    Released,
    /// Someone else's.
    Foreign,
}

/// Whose `np` is, for the SpotPlan with `uid`. Ownership is the owner reference's uid; labels
/// say nothing (anyone who can edit a NodePool can edit them).
pub fn ownership(np: &DynamicObject, uid: &str) -> Ownership {
    if np.owner_references().iter().any(|o| o.uid == uid) {
        return Ownership::Ours;
    }
    let annotations = np.annotations();
    if annotations
        .get(OWNER_UID_ANNOTATION)
        .is_none_or(|u| u != uid)
    {
        return Ownership::Foreign;
    }
    // Our uid without our owner reference: kept so on purpose (Orphan, or a NodePool written
    // before the policy annotation), or released by whoever removed the reference.
    match annotations
        .get(DELETION_POLICY_ANNOTATION)
        .map(String::as_str)
    {
        Some("Delete") => Ownership::Released,
        _ => Ownership::Ours,
    }
}

/// Whether `np` is the SpotPlan with `uid`'s.
pub fn owned_by(np: &DynamicObject, uid: &str) -> bool {
    ownership(np, uid) == Ownership::Ours
}

/// The instance types a live NodePool offers.
pub fn live_types(np: &DynamicObject) -> BTreeSet<String> {
    np.data["spec"]["template"]["spec"]["requirements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["key"] == LABEL_INSTANCE_TYPE && r["operator"] == "In")
        .flat_map(|r| r["values"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// Whether `live` already is what we would apply.
pub fn up_to_date(want: &DesiredNodePool, live: &DynamicObject, uid: &str) -> bool {
    let orphan = want.object["metadata"].get("ownerReferences").is_none();
    let has_owner_ref = live.owner_references().iter().any(|o| o.uid == uid);
    serde_json::to_value(live).is_ok_and(|v| json_subset(&want.object, &v))
        && has_owner_ref != orphan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SpotPlanSpec;

    fn spec(extra: &str) -> PlanSpec {
        let yaml = format!(
            "region: us-east-1\nresources: {{cpu: '64', memory: 256Gi}}\nnodePool: {{nodeClassRef: {{group: g, kind: K, name: n}}, weight: 30}}\n{extra}"
        );
        let s: SpotPlanSpec = serde_saphyr::from_str(&yaml).unwrap();
        crate::validate::validate(&s, std::time::Duration::from_secs(60)).unwrap()
    }

    const OWNER: Owner = Owner {
        name: "web",
        uid: "u-1",
        api_version: "spotplan.dev/v1alpha1",
        kind: "SpotPlan",
    };

    fn pools<'a>(spec: &'a PlanSpec, names: &'a PoolNames, types: &'a [String]) -> Pools<'a> {
        Pools {
            owner: OWNER,
            names,
            spec,
            types,
            base_types: spec.on_demand_base.map(|_| &types[1..]),
            catalog: Catalog::embedded(),
        }
    }

    fn types() -> Vec<String> {
        ["m7i.16xlarge", "m7g.8xlarge", "c7i.2xlarge"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn spot_only_plan_owns_one_nodepool() {
        let (s, n, t) = (spec(""), PoolNames::of("web"), types());
        let pools = pools(&s, &n, &t).nodepools();
        assert_eq!(pools.len(), 1);
        let np = &pools[0].object;
        assert_eq!(np["metadata"]["name"], "web");
        assert_eq!(np["metadata"]["labels"]["spotplan.dev/role"], "spot");
        assert_eq!(np["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(np["spec"]["weight"], 30);
        let reqs = np["spec"]["template"]["spec"]["requirements"]
            .as_array()
            .unwrap();
        assert_eq!(reqs[2]["values"], json!(["amd64", "arm64"]));
    }

    #[test]
    fn on_demand_base_gets_the_fitting_types_a_higher_weight_and_the_limit() {
        let s = spec("capacity: {onDemandBase: {cpu: '32'}, onDemandFallback: true}\n");
        let (n, t) = (PoolNames::of("web"), types());
        let pools = pools(&s, &n, &t).nodepools();
        assert_eq!(pools.len(), 2);
        let (spot, od) = (&pools[0].object, &pools[1].object);
        assert_eq!(pools[1].name, "web-on-demand");
        assert_eq!(od["spec"]["weight"], 31);
        assert_eq!(od["spec"]["limits"]["cpu"], "32");
        let od_types = &od["spec"]["template"]["spec"]["requirements"][0]["values"];
        assert_eq!(
            od_types,
            &json!(["c7i.2xlarge", "m7g.8xlarge"]),
            "the floor's types"
        );
        assert_eq!(
            spot["spec"]["template"]["spec"]["requirements"][1]["values"],
            json!(["on-demand", "spot"])
        );
    }

    #[test]
    fn the_shift_pool_is_on_demand_above_the_others_then_closed_and_spot_on_the_way_back() {
        let s = spec("capacity: {onDemandBase: {cpu: '32'}}\n");
        let t = jiff::Timestamp::UNIX_EPOCH;
        let (n, ty) = (PoolNames::of("web"), types());
        let p = pools(&s, &n, &ty);
        assert!(p.shift(Posture::Spot).is_none());
        let shifted = p.shift(Posture::Shifted { since: t }).unwrap();
        assert_eq!(shifted.name, "web-shift");
        let np = &shifted.object;
        assert_eq!(np["metadata"]["labels"]["spotplan.dev/role"], "shift");
        assert_eq!(
            np["spec"]["weight"], 32,
            "above spot (30) and the base (31)"
        );
        let reqs = &np["spec"]["template"]["spec"]["requirements"];
        assert_eq!(reqs[1]["values"], json!(["on-demand"]));
        assert_eq!(
            reqs[0]["values"].as_array().unwrap().len(),
            3,
            "the plan's types"
        );
        assert!(
            np["spec"].get("limits").is_none(),
            "no limit below the plan's size"
        );
        let back = p.shift(Posture::Returning { since: t }).unwrap();
        let np = &back.object;
        assert_eq!(
            np["spec"]["template"]["spec"]["requirements"][1]["values"],
            json!(["spot"])
        );
        assert_eq!(np["spec"]["limits"]["cpu"], "0");
        assert_eq!(
            np["spec"]["disruption"]["budgets"][1],
            json!({"nodes": "1", "reasons": ["Drifted"]}),
            "one node at a time"
        );
    }

    fn live(object: &Value) -> DynamicObject {
        serde_json::from_value(object.clone()).unwrap()
    }

    #[test]
    fn ownership_is_the_owner_reference_and_a_removed_one_releases_the_pool() {
        let (s, n, t) = (spec(""), PoolNames::of("web"), types());
        let np = pools(&s, &n, &t).nodepools().remove(0).object;
        assert_eq!(ownership(&live(&np), "u-1"), Ownership::Ours);
        assert_eq!(ownership(&live(&np), "u-2"), Ownership::Foreign);
        let mut released = np.clone();
        released["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        assert_eq!(ownership(&live(&released), "u-1"), Ownership::Released);
        // Labels say nothing: a NodePool that only carries the plan label is someone else's.
        let mut labelled = released.clone();
        labelled["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        assert_eq!(ownership(&live(&labelled), "u-1"), Ownership::Foreign);
        // Written under Orphan: the annotation is the mark.
        let orphan = spec("deletionPolicy: Orphan\n");
        let np = pools(&orphan, &n, &t).nodepools().remove(0).object;
        assert_eq!(ownership(&live(&np), "u-1"), Ownership::Ours);
    }

    #[test]
    fn orphan_plans_write_no_owner_reference_but_keep_the_uid() {
        let (s, n, t) = (
            spec("deletionPolicy: Orphan\n"),
            PoolNames::of("web"),
            types(),
        );
        let pools = pools(&s, &n, &t).nodepools();
        let np = &pools[0].object;
        assert!(np["metadata"].get("ownerReferences").is_none());
        assert_eq!(
            np["metadata"]["annotations"]["spotplan.dev/owner-uid"],
            "u-1"
        );
    }
}
