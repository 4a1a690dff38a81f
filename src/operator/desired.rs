//! The NodePools a plan should have, built in one place. Pure: from the SpotPlan's identity, its
//! parsed spec and the decided instance types to whole `karpenter.sh/v1` objects.

use super::crd::{
    FIELD_MANAGER, ON_DEMAND_SUFFIX, OWNER_UID_ANNOTATION, PLAN_LABEL, ROLE_LABEL, SHIFT_SUFFIX,
};
use super::spec::PlanSpec;
use serde_json::{Value, json};
use spotplan_core::Catalog;
use spotplan_core::policy::shift::Posture;
use spotplan_core::render::{self, CapacityTypes, DEFAULT_WEIGHT};
use spotplan_core::types::Arch;

/// What a NodePool is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The `spotplan.dev/role` label value (and the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Spot => "spot",
            Role::OnDemandBase => "on-demand-base",
            Role::Shift => "shift",
        }
    }
}

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

/// The name of a plan's shift NodePool.
pub fn shift_name(plan: &str) -> String {
    render::nodepool_name(plan, SHIFT_SUFFIX)
}

/// Names of a plan's NodePools: the spot one, and the on-demand base one.
pub fn names(plan: &str) -> (String, String) {
    (
        render::nodepool_name(plan, ""),
        render::nodepool_name(plan, ON_DEMAND_SUFFIX),
    )
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

/// The NodePools for `types` (the decided list): the spot NodePool, and with an on-demand base
/// the on-demand one, offered the plan's types that fit inside the base (Karpenter skips types
/// that would overrun a NodePool's remaining limits; all of them when none fits).
pub fn nodepools(
    owner: Owner,
    spec: &PlanSpec,
    types: &[String],
    catalog: &Catalog,
) -> Vec<DesiredNodePool> {
    let (spot_name, od_name) = names(owner.name);
    let settings = &spec.settings;
    let weight = settings.weight.unwrap_or(DEFAULT_WEIGHT);
    let mut out = vec![DesiredNodePool {
        object: object(
            &spot_name,
            Role::Spot,
            owner,
            spec.orphan,
            render::nodepool_spec(
                types,
                &archs_of(types, catalog),
                spec.spot_capacity,
                (PLAN_LABEL, owner.name),
                settings,
                weight,
                settings.limits.clone(),
            ),
        ),
        name: spot_name,
        role: Role::Spot,
    }];
    if let Some(base) = spec.on_demand_base {
        let fitting: Vec<String> = types
            .iter()
            .filter(|t| catalog.get(t).is_some_and(|t| t.vcpus <= base))
            .cloned()
            .collect();
        let od_types = if fitting.is_empty() {
            types.to_vec()
        } else {
            fitting
        };
        out.push(DesiredNodePool {
            object: object(
                &od_name,
                Role::OnDemandBase,
                owner,
                spec.orphan,
                render::nodepool_spec(
                    &od_types,
                    &archs_of(&od_types, catalog),
                    CapacityTypes::OnDemand,
                    (PLAN_LABEL, owner.name),
                    settings,
                    weight + 1,
                    Some(json!({"cpu": base.to_string()})),
                ),
            ),
            name: od_name,
            role: Role::OnDemandBase,
        });
    }
    out
}

/// The shift NodePool for `posture` (none on spot). Shifted: on-demand only, weight above the
/// spot NodePool and the on-demand base (weight + 2), the user's limits (never one below the
/// plan's size of our own). Returning: the same types on spot only with `limits.cpu: 0`, so it
/// launches nothing and its on-demand nodes no longer meet its requirements: Karpenter drifts
/// them, one at a time under the Drifted budget, and their replacements land in the spot
/// NodePool.
pub fn shift_nodepool(
    owner: Owner,
    spec: &PlanSpec,
    types: &[String],
    catalog: &Catalog,
    posture: Posture,
) -> Option<DesiredNodePool> {
    let settings = &spec.settings;
    let weight = (settings.weight.unwrap_or(DEFAULT_WEIGHT) + 2).min(100);
    let (capacity, limits) = match posture {
        Posture::Spot => return None,
        Posture::Shifted { .. } => (CapacityTypes::OnDemand, settings.limits.clone()),
        Posture::Returning { .. } => (CapacityTypes::Spot, Some(json!({"cpu": "0"}))),
    };
    let name = shift_name(owner.name);
    let spec_json = render::nodepool_spec(
        types,
        &archs_of(types, catalog),
        capacity,
        (PLAN_LABEL, owner.name),
        settings,
        weight,
        limits,
    );
    Some(DesiredNodePool {
        object: object(&name, Role::Shift, owner, spec.orphan, spec_json),
        name,
        role: Role::Shift,
    })
}

/// A NodePool for Git rather than for the controller: no owner reference, owner UID or
/// managed-by label (the controller refuses to take over a NodePool without its owner UID, so
/// applying the SpotPlan of the same name next to these reports a conflict instead of a fight).
pub fn for_git(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("ownerReferences");
        meta.remove("annotations");
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove("app.kubernetes.io/managed-by");
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
            "app.kubernetes.io/managed-by": FIELD_MANAGER,
        },
        "annotations": {OWNER_UID_ANNOTATION: owner.uid},
    });
    if !orphan {
        meta["ownerReferences"] = json!([{
            "apiVersion": owner.api_version, "kind": owner.kind,
            "name": owner.name, "uid": owner.uid, "controller": true, "blockOwnerDeletion": true,
        }]);
    }
    json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": meta, "spec": spec})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::SpotPlanSpec;

    fn spec(extra: &str) -> PlanSpec {
        let yaml = format!(
            "region: us-east-1\nresources: {{cpu: '64', memory: 256Gi}}\nnodePool: {{nodeClassRef: {{group: g, kind: K, name: n}}, weight: 30}}\n{extra}"
        );
        let s: SpotPlanSpec = serde_saphyr::from_str(&yaml).unwrap();
        super::super::spec::validate(&s, std::time::Duration::from_secs(60)).unwrap()
    }

    const OWNER: Owner = Owner {
        name: "web",
        uid: "u-1",
        api_version: "spotplan.dev/v1alpha1",
        kind: "SpotPlan",
    };

    fn types() -> Vec<String> {
        ["m7i.16xlarge", "m7g.8xlarge", "c7i.2xlarge"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn spot_only_plan_owns_one_nodepool() {
        let pools = nodepools(OWNER, &spec(""), &types(), Catalog::embedded());
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
        let pools = nodepools(
            OWNER,
            &spec("capacity: {onDemandBase: {cpu: '32'}, onDemandFallback: true}\n"),
            &types(),
            Catalog::embedded(),
        );
        assert_eq!(pools.len(), 2);
        let (spot, od) = (&pools[0].object, &pools[1].object);
        assert_eq!(pools[1].name, "web-on-demand");
        assert_eq!(od["spec"]["weight"], 31);
        assert_eq!(od["spec"]["limits"]["cpu"], "32");
        let od_types = &od["spec"]["template"]["spec"]["requirements"][0]["values"];
        assert_eq!(
            od_types,
            &json!(["c7i.2xlarge", "m7g.8xlarge"]),
            "m7i.16xlarge has 64 vCPU"
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
        assert!(shift_nodepool(OWNER, &s, &types(), Catalog::embedded(), Posture::Spot).is_none());
        let shifted = shift_nodepool(
            OWNER,
            &s,
            &types(),
            Catalog::embedded(),
            Posture::Shifted { since: t },
        )
        .unwrap();
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
        let back = shift_nodepool(
            OWNER,
            &s,
            &types(),
            Catalog::embedded(),
            Posture::Returning { since: t },
        )
        .unwrap();
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

    #[test]
    fn orphan_plans_write_no_owner_reference_but_keep_the_uid() {
        let pools = nodepools(
            OWNER,
            &spec("deletionPolicy: Orphan\n"),
            &types(),
            Catalog::embedded(),
        );
        let np = &pools[0].object;
        assert!(np["metadata"].get("ownerReferences").is_none());
        assert_eq!(
            np["metadata"]["annotations"]["spotplan.dev/owner-uid"],
            "u-1"
        );
    }
}
