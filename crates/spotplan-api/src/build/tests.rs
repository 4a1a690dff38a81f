//! The build from plain structs: the cases the operator's control-plane tests exercise, with
//! exact, fast failures. Market data is the real 2025-06-28 Spot Advisor snapshot and price
//! file in `../shared/data`.

use super::*;
use crate::crd::{OverCeiling, SpotPlanSpec};
use crate::names::conditions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use spotplan_core::MarketInputs;
use spotplan_core::market::{PriceTable, SpotAdvisor};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

fn shared(path: &str) -> Vec<u8> {
    let root = std::env::var_os("SPOTPLAN_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
        });
    let p = root.join("data").join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (set SPOTPLAN_SHARED)", p.display()))
}

fn market() -> &'static MarketData {
    static M: OnceLock<MarketData> = OnceLock::new();
    M.get_or_init(|| {
        let advisor = SpotAdvisor::parse(
            &shared("spot-advisor/spot-advisor-data_2025-06-28.json"),
            "advisor.json",
        )
        .unwrap();
        let prices =
            PriceTable::parse(&shared("prices/ec2-linux-prices_2026-05.csv"), "prices.csv")
                .unwrap();
        MarketData::embedded(MarketInputs {
            advisor: Some(Arc::new(advisor)),
            prices: Some(Arc::new(prices)),
            ..Default::default()
        })
    })
}

fn fresh(yes: bool) -> Freshness {
    Freshness {
        fresh: yes,
        reason: if yes { "Fresh" } else { "DataTooOld" },
        message: if yes { "as of now" } else { "too old" }.into(),
        sources: Vec::new(),
    }
}

const NOW: &str = "2026-12-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A SpotPlan `web` (uid u-web, generation 1) with `extra` spec lines.
fn plan(extra: &str) -> SpotPlan {
    let yaml = format!(
        "region: us-east-1\nresources: {{cpu: '64', memory: 256Gi}}\nnodePool: {{nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}}}\n{extra}"
    );
    let spec: SpotPlanSpec = serde_saphyr::from_str(&yaml).unwrap();
    let mut sp = SpotPlan::new("web", spec);
    sp.metadata.uid = Some("u-web".into());
    sp.metadata.generation = Some(1);
    sp
}

fn live(object: &serde_json::Value, uid: &str) -> DynamicObject {
    let mut np: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    np.metadata.uid = Some(uid.into());
    np
}

struct World {
    plan: SpotPlan,
    fresh: Freshness,
    nodepools: Vec<DynamicObject>,
    signals: Signals,
    support: overlays::Support,
    overlays: Vec<DynamicObject>,
    now: Timestamp,
}

impl World {
    fn new(plan: SpotPlan) -> World {
        World {
            plan,
            fresh: fresh(true),
            nodepools: Vec::new(),
            signals: Signals {
                shift_nodes: Some(0),
                ..Signals::default()
            },
            support: overlays::Support::NotServed,
            overlays: Vec::new(),
            now: now(),
        }
    }

    fn build(&self) -> Desired {
        build(
            &Observed {
                plan: &self.plan,
                freshness: &self.fresh,
                market: Some(market()),
                nodepools: &self.nodepools,
                signals: &self.signals,
                placement: None,
                overlays: SeenOverlays {
                    support: self.support,
                    live: &self.overlays,
                },
                now: self.now,
            },
            &Settings::default(),
        )
    }

    /// What the cluster holds after `d` was applied: its NodePools live, its status written.
    fn applied(&mut self, d: &Desired) {
        for w in &d.writes {
            self.nodepools
                .retain(|np| np.metadata.name.as_deref() != Some(&w.pool.name));
            self.nodepools
                .push(live(&w.pool.object, &format!("np-{}", w.pool.name)));
        }
        for del in &d.deletes {
            self.nodepools
                .retain(|np| np.metadata.name.as_deref() != Some(&del.name));
        }
        for w in &d.overlay_writes {
            self.overlays
                .retain(|o| o.metadata.name.as_deref() != Some(&w.overlay.name));
            self.overlays
                .push(live(&w.overlay.object, &format!("no-{}", w.overlay.name)));
        }
        for del in &d.overlay_deletes {
            self.overlays
                .retain(|o| o.metadata.name.as_deref() != Some(&del.name));
        }
        self.plan.status = Some(d.status.clone());
    }
}

/// The condition of `type_` in `d`'s status (the test fails if there is none).
fn condition<'d>(d: &'d Desired, type_: &str) -> &'d Condition {
    d.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", d.status.conditions))
}

fn ready(d: &Desired) -> (String, String) {
    let c = condition(d, conditions::READY);
    (c.status.clone(), c.reason.clone())
}

fn reasons(d: &Desired) -> Vec<&str> {
    d.events.iter().map(|e| e.reason).collect()
}

#[test]
fn a_new_plan_writes_its_nodepool_then_nothing() {
    let mut w = World::new(plan(""));
    let first = w.build();
    assert_eq!(ready(&first), ("True".into(), "PlanApplied".into()));
    assert_eq!(first.status.last_narrowed, None, "nothing was narrowed");
    assert_eq!(
        first.status.last_written_fresh.as_ref().map(|t| t.0),
        Some(now())
    );
    assert_eq!(first.writes.len(), 1);
    assert_eq!(first.writes[0].pool.role, Role::Spot);
    assert_eq!(first.writes[0].live_uid, None, "created");
    assert_eq!(reasons(&first), ["NodePoolsCreated"]);
    let types = first.status.instance_types.len();
    assert!((15..=20).contains(&types), "{types} types");
    w.applied(&first);
    let again = w.build();
    assert!(again.writes.is_empty() && again.deletes.is_empty());
    assert!(again.events.is_empty());
    assert_eq!(
        again.status, first.status,
        "an unchanged plan rewrites nothing"
    );
}

#[test]
fn a_nodepool_someone_else_owns_is_a_conflict_and_never_written() {
    let mut w = World::new(plan(""));
    w.nodepools.push(live(
        &serde_json::json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": "web", "labels": {"spotplan.dev/plan": "web"}}, "spec": {}}),
        "np-foreign",
    ));
    let d = w.build();
    assert_eq!(ready(&d), ("False".into(), "NodePoolConflict".into()));
    assert!(d.writes.is_empty() && d.deletes.is_empty());
    assert_eq!(reasons(&d), ["NodePoolConflict"]);
    assert_eq!(d.standing, Standing::NotReady(Reason::NodePoolConflict));
    // Once reported, no second Event.
    w.applied(&d);
    assert!(w.build().events.is_empty());
}

#[test]
fn a_nodepool_whose_owner_reference_was_removed_is_released_and_never_written() {
    let mut w = World::new(plan("capacity: {onDemandBase: {cpu: '64'}}\n"));
    let first = w.build();
    w.applied(&first);
    for np in &mut w.nodepools {
        np.metadata.owner_references = None;
    }
    // Even a spec that would write something else.
    w.plan.spec.max_types = Some(16);
    w.plan.metadata.generation = Some(2);
    let d = w.build();
    assert_eq!(ready(&d), ("False".into(), "NodePoolReleased".into()));
    assert!(d.writes.is_empty() && d.deletes.is_empty());
    // The spot NodePool back under control; without its base the plan would delete the
    // on-demand NodePool, but not a released one.
    let spot = first
        .writes
        .iter()
        .find(|w| w.pool.role == Role::Spot)
        .unwrap();
    w.nodepools
        .retain(|np| np.metadata.name.as_deref() != Some("web"));
    w.nodepools.push(live(&spot.pool.object, "np-web"));
    w.plan.spec.capacity = None;
    w.plan.metadata.generation = Some(3);
    let d = w.build();
    assert_eq!(ready(&d).0, "True");
    assert!(d.deletes.is_empty(), "{:?}", d.deletes);
}

#[test]
fn an_edited_nodepool_is_written_back_over_its_uid() {
    let mut w = World::new(plan(""));
    let first = w.build();
    w.applied(&first);
    w.nodepools[0].data["spec"]["template"]["spec"]["requirements"][0]["values"] =
        serde_json::json!(["t3.micro"]);
    let d = w.build();
    assert_eq!(d.writes.len(), 1);
    assert_eq!(d.writes[0].live_uid.as_deref(), Some("np-web"));
    assert_eq!(d.writes[0].pool.object, first.writes[0].pool.object);
}

#[test]
fn a_suspended_plan_writes_only_its_status() {
    let mut w = World::new(plan(""));
    let first = w.build();
    w.applied(&first);
    w.plan.spec.suspend = true;
    w.plan.spec.exclude_instance_types = first.status.instance_types.clone();
    let d = w.build();
    assert!(d.writes.is_empty() && d.deletes.is_empty());
    assert_eq!(d.standing, Standing::Suspended);
    let s = condition(&d, conditions::SUSPENDED);
    assert_eq!(s.status, "True");
    assert_eq!(reasons(&d), ["Suspended"]);
    w.applied(&d);
    assert!(w.build().events.is_empty(), "one Event per transition");
}

#[test]
fn an_on_demand_base_gets_its_own_pool_and_leaves_with_its_field() {
    let mut w = World::new(plan("capacity: {onDemandBase: {cpu: '64'}}\n"));
    let d = w.build();
    let roles: Vec<Role> = d.writes.iter().map(|w| w.pool.role).collect();
    assert_eq!(roles, [Role::Spot, Role::OnDemandBase]);
    let od = &d.writes[1].pool.object;
    assert_eq!(od["metadata"]["name"], "web-on-demand");
    assert_eq!(od["spec"]["weight"], 11);
    assert_eq!(od["spec"]["limits"]["cpu"], "64");
    w.applied(&d);
    w.plan.spec.capacity = None;
    w.plan.metadata.generation = Some(2);
    let d = w.build();
    assert_eq!(d.deletes.len(), 1);
    assert_eq!(d.deletes[0].name, "web-on-demand");
    assert_eq!(d.deletes[0].uid, "np-web-on-demand", "deleted by uid");
    assert_eq!(
        d.deletes[0].note.as_ref().map(|n| n.reason),
        Some("OnDemandBaseRemoved")
    );
}

fn interruptions(n: usize, at: Timestamp) -> Vec<Interruption> {
    (0..n)
        .map(|i| Interruption {
            at,
            uid: format!("claim-{i}"),
            instance_type: format!("m7i.{}xlarge", 8 + i),
            zone: "us-east-1a".into(),
        })
        .collect()
}

#[test]
fn enough_interruptions_shift_new_capacity_to_an_on_demand_pool() {
    let mut w = World::new(plan("capacity: {onDemandShift: {interruptions: 3}}\n"));
    let first = w.build();
    w.applied(&first);
    w.signals.interruptions = interruptions(2, now());
    let two = w.build();
    assert!(two.writes.is_empty(), "two of three: no shift");
    w.applied(&two);
    w.signals.interruptions = interruptions(3, now());
    let d = w.build();
    let shift: Vec<&Write> = d
        .writes
        .iter()
        .filter(|w| w.pool.role == Role::Shift)
        .collect();
    assert_eq!(shift.len(), 1);
    let np = &shift[0].pool.object;
    assert_eq!(np["metadata"]["name"], "web-shift");
    assert_eq!(
        np["spec"]["template"]["spec"]["requirements"][1]["values"],
        serde_json::json!(["on-demand"])
    );
    assert_eq!(np["spec"]["weight"], 12, "above spot (10) and a base (11)");
    assert!(reasons(&d).contains(&"ShiftedToOnDemand"));
    let c = condition(&d, conditions::SHIFTED_TO_ON_DEMAND);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "SpotInterrupted")
    );
    match &d.standing {
        Standing::Ready(g) => {
            assert!(g.shifted);
            assert_eq!(g.new_interruptions.len(), 1, "two were counted before");
        }
        s => panic!("{s:?}"),
    }
}

/// The plan written, then one of its types excluded by the user's own ceiling... by a type that
/// leaves the region's offer (a filter rejects it: due at once).
fn with_a_gone_type(last_narrowed: &str) -> (World, String) {
    let mut w = World::new(plan(""));
    let first = w.build();
    w.applied(&first);
    let status = w.plan.status.as_mut().unwrap();
    let gone = "m7i.16xlarge".to_string();
    status.instance_types.push(gone.clone());
    status.instance_types.sort();
    status.last_narrowed = None;
    status.last_written_fresh = Some(Time(last_narrowed.parse().unwrap()));
    status.over_ceiling = Vec::<OverCeiling>::new();
    w.plan.spec.exclude_instance_types = vec![gone.clone()];
    // Excluding a type is a spec change; keep the generation the list was written for, so
    // only the data-driven rule decides (as if the type had left the region).
    (w, gone)
}

#[test]
fn a_type_that_no_longer_fits_is_narrowed_out_after_the_interval() {
    let (w, gone) = with_a_gone_type("2026-11-01T00:00:00Z");
    let d = w.build();
    assert!(!d.status.instance_types.contains(&gone));
    assert_eq!(reasons(&d), ["InstanceTypesNarrowed"]);
    assert_eq!(d.writes.len(), 1);
    assert_eq!(
        d.status.last_narrowed.as_ref().map(|t| t.0),
        Some(now()),
        "a narrowing resets the interval"
    );
}

#[test]
fn a_narrowing_waits_for_min_narrow_interval() {
    let (w, gone) = with_a_gone_type("2026-12-01T06:00:00Z");
    let d = w.build();
    assert!(
        d.status.instance_types.contains(&gone),
        "kept until the window opens"
    );
    let c = condition(&d, conditions::NARROWING_DEFERRED);
    assert!(c.message.contains("2026-12-02T06:00:00Z"), "{}", c.message);
    assert_eq!(d.retry, Retry::After(Duration::from_secs(18 * 3600)));
}

#[test]
fn stale_data_changes_no_list() {
    let (mut w, gone) = with_a_gone_type("2026-11-01T00:00:00Z");
    w.fresh = fresh(false);
    let d = w.build();
    assert!(
        d.status.instance_types.contains(&gone),
        "stale data narrows nothing"
    );
    let c = condition(&d, conditions::DATA_FRESH);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "DataTooOld")
    );
    assert_eq!(ready(&d).0, "True");
}

#[test]
fn an_invalid_spec_and_missing_data_are_not_ready_with_the_field_named() {
    let w = World::new(plan("minTypes: 9\nmaxTypes: 5\n"));
    let d = w.build();
    assert_eq!(ready(&d), ("False".into(), "InvalidSpec".into()));
    let message = &d.status.conditions[0].message;
    assert!(message.contains("spec.maxTypes"), "{message}");
    let mut w = World::new(plan(""));
    w.fresh.message = "no market data could be loaded: nope".into();
    let d = build(
        &Observed {
            plan: &w.plan,
            freshness: &w.fresh,
            market: None,
            nodepools: &w.nodepools,
            signals: &w.signals,
            placement: None,
            overlays: SeenOverlays::NOT_SERVED,
            now: w.now,
        },
        &Settings::default(),
    );
    assert_eq!(ready(&d), ("False".into(), "MarketDataUnavailable".into()));
    assert!(d.writes.is_empty());
}

/// Karpenter's own Ready on a NodePool the plan wrote.
fn karpenter_says(w: &mut World, name: &str, ready: &str) {
    let np = w
        .nodepools
        .iter_mut()
        .find(|np| np.metadata.name.as_deref() == Some(name))
        .unwrap();
    np.data["status"] = serde_json::json!({"conditions": [
        {"type": "Ready", "status": ready, "reason": if ready == "True" { "Ready" } else { "UnhealthyDependents" },
         "message": if ready == "True" { "" } else { "NodeClassReady=False" }},
        {"type": "NodeClassReady", "status": ready, "reason": if ready == "True" { "Ready" } else { "NodeClassNotFound" },
         "message": if ready == "True" { "" } else { "EC2NodeClass default not found" }},
    ]});
}

#[test]
fn the_plan_is_ready_only_if_karpenter_can_use_its_nodepools() {
    let mut w = World::new(plan(""));
    let first = w.build();
    w.applied(&first);
    let c = condition(&first, conditions::NODEPOOLS_READY);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("Unknown", "AwaitingKarpenter")
    );
    assert_eq!(ready(&first).0, "True", "not known to be unusable");
    // Karpenter cannot use it: the plan says so, with Karpenter's reason, and warns once.
    karpenter_says(&mut w, "web", "False");
    let d = w.build();
    assert_eq!(ready(&d), ("False".into(), "NodePoolsNotReady".into()));
    let m = &condition(&d, conditions::READY).message;
    assert!(
        m.contains("NodeClassReady=False (NodeClassNotFound: EC2NodeClass default not found)"),
        "{m}"
    );
    let c = condition(&d, conditions::NODEPOOLS_READY);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "NotReady")
    );
    assert_eq!(reasons(&d), ["NodePoolsNotReady"]);
    assert!(d.writes.is_empty(), "what was written stays");
    match &d.standing {
        Standing::Ready(g) => assert!(!g.usable),
        s => panic!("{s:?}"),
    }
    w.applied(&d);
    assert!(w.build().events.is_empty(), "one Event per transition");
    // Karpenter can: Ready.
    karpenter_says(&mut w, "web", "True");
    let d = w.build();
    assert_eq!(ready(&d), ("True".into(), "PlanApplied".into()));
    assert_eq!(condition(&d, conditions::NODEPOOLS_READY).status, "True");
}

/// The catalog's vCPUs of `t`, read independently of the build (the embedded catalog is the
/// product's own data; the oracle here is only "at most the base").
fn vcpus(t: &str) -> u32 {
    market().catalog().get(t).unwrap().vcpus
}

#[test]
fn an_on_demand_floor_smaller_than_the_plans_types_gets_types_that_fit_it() {
    let w = World::new(plan("capacity: {onDemandBase: {cpu: '16'}}\n"));
    let d = w.build();
    let spot = &d.writes[0].pool.object;
    let spot_types: Vec<&str> = spot["spec"]["template"]["spec"]["requirements"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        spot_types.iter().all(|t| vcpus(t) > 16),
        "the case of the issue: every spot type is larger than the floor: {spot_types:?}"
    );
    let od = &d.writes[1].pool.object;
    let od_types: Vec<&str> = od["spec"]["template"]["spec"]["requirements"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(od_types.len() >= base::WANTED, "{od_types:?}");
    assert!(od_types.iter().all(|t| vcpus(t) <= 16), "{od_types:?}");
    let families: BTreeSet<&str> = od_types
        .iter()
        .map(|t| t.split('.').next().unwrap())
        .collect();
    assert!(families.len() >= 3, "diverse: {od_types:?}");
    assert_eq!(od["spec"]["limits"]["cpu"], "16");
    let c = condition(&d, conditions::ON_DEMAND_BASE);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Planned"));
}

#[test]
fn an_on_demand_floor_nothing_fits_is_said_and_not_written() {
    // m7i's smallest type has 2 vCPUs: nothing fits a floor of 1.
    let w = World::new(plan(
        "instanceFamilies: [m7i]\ncapacity: {onDemandBase: {cpu: '1'}}\n",
    ));
    let d = w.build();
    assert_eq!(ready(&d).0, "True", "the spot plan stands");
    assert!(d.writes.iter().all(|w| w.pool.role != Role::OnDemandBase));
    let c = condition(&d, conditions::ON_DEMAND_BASE);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "NothingFits")
    );
    assert!(c.message.contains("onDemandBase.cpu"), "{}", c.message);
    assert!(reasons(&d).contains(&"OnDemandBaseUnmet"));
}

/// Karpenter's overlay controller's verdict on every live overlay.
fn karpenter_validates(w: &mut World, status: &str, reason: &str) {
    for o in &mut w.overlays {
        o.data["status"] = serde_json::json!({"conditions": [{
            "type": "ValidationSucceeded", "status": status, "reason": reason,
            "message": if status == "True" { "" } else { "conflict with another overlay" },
            "lastTransitionTime": NOW,
        }]});
    }
}

#[test]
fn risk_pricing_follows_the_cluster_the_spec_and_karpenters_verdict() {
    // Not served: nothing written, and the condition says how to turn it on.
    let mut w = World::new(plan(""));
    let d = w.build();
    assert!(d.overlay_writes.is_empty());
    let c = condition(&d, conditions::RISK_PRICING);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "NodeOverlayNotServed")
    );
    assert!(c.message.contains("NodeOverlay=true"), "{}", c.message);

    // Served: one overlay per premium level, each pinned to the spot NodePool, every listed type
    // in exactly one; Unknown until Karpenter validates them, then True.
    w.support = overlays::Support::Served;
    let d = w.build();
    assert!(
        !d.overlay_writes.is_empty() && d.overlay_writes.len() <= 5,
        "{:?}",
        d.overlay_writes.len()
    );
    let mut priced: Vec<String> = Vec::new();
    for o in &d.overlay_writes {
        let spec = &o.overlay.object["spec"];
        assert_eq!(
            spec["requirements"][0],
            serde_json::json!({"key": "karpenter.sh/nodepool", "operator": "In", "values": ["web"]})
        );
        assert_eq!(
            o.overlay.object["metadata"]["ownerReferences"][0]["uid"],
            "u-web"
        );
        priced.extend(
            spec["requirements"][2]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
    }
    priced.sort();
    assert_eq!(
        priced, d.status.instance_types,
        "each listed type in one overlay"
    );
    assert_eq!(condition(&d, conditions::RISK_PRICING).status, "Unknown");
    w.applied(&d);
    karpenter_validates(&mut w, "True", "ValidationSucceeded");
    let d = w.build();
    assert!(
        d.overlay_writes.is_empty(),
        "nothing to write when nothing changed"
    );
    let c = condition(&d, conditions::RISK_PRICING);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Applied"));
    let rp = d.status.risk_pricing.as_ref().unwrap();
    assert!(rp.exact_order);
    assert_eq!(rp.types.len(), d.status.instance_types.len());

    // A conflict Karpenter reports is said, and the overlays are not changed to win it.
    karpenter_validates(&mut w, "False", "Conflict");
    let d = w.build();
    assert!(d.overlay_writes.is_empty() && d.overlay_deletes.is_empty());
    let c = condition(&d, conditions::RISK_PRICING);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "OverlayConflict")
    );
    assert_eq!(ready(&d).0, "True", "the NodePools still stand");

    // Disabled by the spec: the plan's own overlays are deleted, and only those.
    let mut foreign = w.overlays[0].clone();
    foreign.metadata.name = Some("someone-elses".into());
    foreign.metadata.owner_references = None;
    w.overlays.push(foreign);
    w.plan.spec.risk_pricing = Some(crate::crd::RiskPricing::Disabled);
    let d = w.build();
    assert!(d.overlay_writes.is_empty());
    assert_eq!(d.overlay_deletes.len(), w.overlays.len() - 1);
    assert!(d.overlay_deletes.iter().all(|x| x.name != "someone-elses"));
    assert_eq!(condition(&d, conditions::RISK_PRICING).reason, "Disabled");
}

#[test]
fn an_overlay_name_held_by_someone_else_is_never_written_over() {
    let mut w = World::new(plan(""));
    w.support = overlays::Support::Served;
    let d = w.build();
    let mut theirs = live(&d.overlay_writes[0].overlay.object, "theirs");
    theirs.metadata.owner_references = None;
    w.overlays.push(theirs);
    let d = w.build();
    assert!(
        d.overlay_writes
            .iter()
            .all(|x| x.overlay.name != "web-risk-0")
    );
    let c = condition(&d, conditions::RISK_PRICING);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "OverlayNameTaken")
    );
    assert!(d.overlay_deletes.is_empty());
}

#[test]
fn an_interruption_prices_its_type_and_zone_until_the_calm_ends() {
    let mut w = World::new(plan(""));
    w.support = overlays::Support::Served;
    let d = w.build();
    w.applied(&d);
    let ty = d.status.instance_types[0].clone();
    w.signals.interruptions = vec![Interruption {
        at: now(),
        uid: "nc-1".into(),
        instance_type: ty.clone(),
        zone: "us-east-1a".into(),
    }];
    w.now = now() + std::time::Duration::from_secs(60);
    let d = w.build();
    let zone: Vec<_> = d
        .overlay_writes
        .iter()
        .filter(|o| o.overlay.name.starts_with("web-risk-z"))
        .collect();
    assert_eq!(zone.len(), 1, "one zone level");
    let spec = &zone[0].overlay.object["spec"];
    assert_eq!(
        spec["requirements"][3]["values"],
        serde_json::json!(["us-east-1a"])
    );
    assert_eq!(
        spec["requirements"][2]["values"],
        serde_json::json!([ty.clone()])
    );
    let type_level = w
        .overlays
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some("web-risk-0"))
        .unwrap();
    assert!(
        spec["weight"].as_i64() > type_level.data["spec"]["weight"].as_i64(),
        "the zone's premium wins there"
    );
    let ev: Vec<_> = d
        .events
        .iter()
        .filter(|e| e.reason == "PremiumRaised")
        .collect();
    assert_eq!(ev.len(), 1, "{:?}", d.events);
    assert!(ev[0].message.contains(&ty) && ev[0].message.contains("us-east-1a"));
    let zp = &d.status.risk_pricing.as_ref().unwrap().zone_premiums;
    assert_eq!(zp.len(), 1);
    let until = zp[0].until.0;
    assert!(matches!(d.retry, crate::outcome::Retry::After(_)));
    w.applied(&d);
    // A day later, calm: the premium falls, with its Event, and the zone overlay goes.
    w.now = until + std::time::Duration::from_secs(1);
    let d = w.build();
    assert!(
        d.events.iter().any(|e| e.reason == "PremiumLowered"),
        "{:?}",
        d.events
    );
    assert!(d.overlay_deletes.iter().any(|x| x.name == "web-risk-z0"));
}
