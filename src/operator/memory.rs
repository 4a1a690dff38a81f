//! What this replica remembers between reconciles, in memory only (status holds everything that
//! must survive a restart):
//! - the status it last wrote per plan: the watch cache can lag behind our own write, and the
//!   churn rule depends on that status;
//! - status fields the installed CRD does not declare (an older CRD): left out of writes;
//! - failed attempts per plan, for exponential backoff;
//! - the NodeClaim uids of the interruption signal the plan's last written build saw, so an Event
//!   seen again is never counted twice (status keeps only the newest 500 of a flood);
//! - which plan each NodePool name belongs to (every plan registers its names when it is read),
//!   so an event on a NodePool that lost every mark of its owner, or a foreign NodePool that
//!   holds a plan's name, still brings the plan back.

use kube::ResourceExt;
use spotplan_api::build::SeenBefore;
use spotplan_api::names::PoolNames;
use spotplan_api::{SpotPlan, SpotPlanStatus};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Memory {
    written: Mutex<HashMap<String, Written>>,
    undeclared: Mutex<BTreeSet<String>>,
    backoff: Mutex<HashMap<String, u32>>,
    pools: Mutex<HashMap<String, String>>,
    seen: Mutex<HashMap<String, SeenBefore>>,
}

struct Written {
    uid: String,
    generation: Option<i64>,
    term: u64,
    status: SpotPlanStatus,
}

impl Memory {
    /// The cached plan with the status we last wrote for it in this `term` of leadership, when
    /// that is newer than the cache. Once the cache has caught up, the record is dropped (no
    /// second copy of every status).
    pub fn current(&self, cached: &SpotPlan, term: u64) -> SpotPlan {
        let mut sp = cached.clone();
        let mut written = self.written.lock().expect("written lock");
        let name = cached.name_any();
        let Some(w) = written.get(&name) else {
            return sp;
        };
        let ours = Some(&w.uid) == cached.metadata.uid.as_ref()
            && w.generation == cached.metadata.generation
            && w.term == term;
        if ours && cached.status.as_ref() != Some(&w.status) {
            sp.status = Some(w.status.clone());
        } else {
            written.remove(&name);
        }
        sp
    }

    /// Remembers the status written for a plan in `term`.
    pub fn wrote(&self, sp: &SpotPlan, status: &SpotPlanStatus, term: u64) {
        self.written.lock().expect("written lock").insert(
            sp.name_any(),
            Written {
                uid: sp.uid().unwrap_or_default(),
                generation: sp.metadata.generation,
                term,
                status: status.clone(),
            },
        );
    }

    /// Forgets a deleted plan.
    pub fn forget(&self, plan: &str) {
        self.written.lock().expect("written lock").remove(plan);
        self.backoff.lock().expect("backoff lock").remove(plan);
        self.pools
            .lock()
            .expect("pools lock")
            .retain(|_, p| p != plan);
        self.seen.lock().expect("seen lock").remove(plan);
    }

    /// What the plan's last written build saw, in this process.
    pub fn seen_before(&self, plan: &str) -> Option<SeenBefore> {
        self.seen.lock().expect("seen lock").get(plan).cloned()
    }

    /// Remembers what a build whose status was written saw.
    pub fn saw(&self, plan: &str, seen: SeenBefore) {
        self.seen
            .lock()
            .expect("seen lock")
            .insert(plan.to_string(), seen);
    }

    /// Registers `plan`'s NodePool names.
    pub fn names_of(&self, plan: &str, names: &PoolNames) {
        let mut pools = self.pools.lock().expect("pools lock");
        for (_, name) in names.all() {
            if pools.get(name).is_none_or(|p| p != plan) {
                pools.insert(name.to_string(), plan.to_string());
            }
        }
    }

    /// The plan whose NodePool is called `nodepool`.
    pub fn plan_named_for(&self, nodepool: &str) -> Option<String> {
        self.pools
            .lock()
            .expect("pools lock")
            .get(nodepool)
            .cloned()
    }

    /// `status` without the fields the installed CRD does not declare.
    pub fn compatible(&self, status: &SpotPlanStatus) -> SpotPlanStatus {
        let undeclared = self.undeclared.lock().expect("undeclared lock");
        if undeclared.is_empty() {
            return status.clone();
        }
        let mut v = serde_json::to_value(status).expect("status serializes");
        leave_out(&mut v, &undeclared);
        serde_json::from_value(v).expect("a status without optional fields")
    }

    /// Remembers fields to leave out; false when they were all known already (no progress).
    pub fn leave_out_fields(&self, fields: &[String]) -> bool {
        let mut undeclared = self.undeclared.lock().expect("undeclared lock");
        let before = undeclared.len();
        undeclared.extend(fields.iter().cloned());
        undeclared.len() > before
    }

    /// One more failure of `plan`: how long to wait, 1 s doubling up to 5 minutes.
    pub fn failed(&self, plan: &str) -> Duration {
        let mut backoff = self.backoff.lock().expect("backoff lock");
        let n = backoff.entry(plan.to_string()).or_default();
        *n = (*n + 1).min(10);
        Duration::from_secs(1 << (*n - 1)).min(Duration::from_secs(300))
    }

    /// `plan` reconciled: its backoff starts over.
    pub fn succeeded(&self, plan: &str) {
        self.backoff.lock().expect("backoff lock").remove(plan);
    }
}

/// `value` without the fields at `paths` (dotted, relative to the status).
fn leave_out(value: &mut serde_json::Value, paths: &BTreeSet<String>) {
    for path in paths {
        let mut parts: Vec<&str> = path.split('.').collect();
        let Some(last) = parts.pop() else { continue };
        // Only where the path exists: indexing would insert nulls, which the status type refuses
        // (a plan without `plan` would come back with `plan: {instanceTypes: null}`).
        let mut at = Some(&mut *value);
        for p in parts {
            at = at.and_then(|v| v.get_mut(p));
        }
        let Some(at) = at else { continue };
        match at {
            serde_json::Value::Object(o) => {
                o.remove(last);
            }
            serde_json::Value::Array(items) => {
                for i in items {
                    if let Some(o) = i.as_object_mut() {
                        o.remove(last);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_under_a_missing_parent_is_left_alone() {
        let mut v = json!({"nodePools": ["a"]});
        leave_out(
            &mut v,
            &["plan.instanceTypes.rankedUsdPerHour".to_string()].into(),
        );
        assert_eq!(v, json!({"nodePools": ["a"]}));
    }

    #[test]
    fn undeclared_status_fields_are_left_out() {
        let mut v = json!({"dataSources": [1], "plan": {"placementScores": [], "primary": "m5.large"}, "nodePools": ["a"]});
        leave_out(
            &mut v,
            &[
                "dataSources".to_string(),
                "plan.placementScores".to_string(),
            ]
            .into(),
        );
        assert_eq!(
            v,
            json!({"plan": {"primary": "m5.large"}, "nodePools": ["a"]})
        );
    }

    #[test]
    fn backoff_doubles_to_five_minutes_and_starts_over() {
        let m = Memory::default();
        let waits: Vec<u64> = (0..12).map(|_| m.failed("web").as_secs()).collect();
        assert_eq!(waits[..4], [1, 2, 4, 8]);
        assert_eq!(waits[11], 300);
        m.succeeded("web");
        assert_eq!(m.failed("web").as_secs(), 1);
    }
}
