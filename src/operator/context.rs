//! Everything a reconcile needs, shared by all of them.

use super::crd::{SpotPlan, SpotPlanStatus};
use super::health::Health;
use super::lease::Leadership;
use super::metrics::Metrics;
use super::refresh::MarketCache;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Karpenter's NodePool, handled as a dynamic object: spotplan writes only the fields it owns.
pub fn nodepool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool"),
        "nodepools",
    )
}

/// Settings of the controller that are not per plan.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default shortest time between two data-driven narrowings.
    pub min_narrow_interval: Duration,
    /// How long a written type may stay over a ceiling the user set.
    pub confirm_over_ceiling: Duration,
    /// How often at most a list is narrowed to its mode's default cap.
    pub settle_over_default_cap: Duration,
    /// Order zones and near-tied types by spot placement scores.
    pub placement_scores: bool,
}

/// The reconciler's shared state: clients, caches, market data, metrics and leadership.
pub struct Context {
    pub client: Client,
    pub market: Arc<MarketCache>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub recorder: Recorder,
    pub leadership: Leadership,
    pub settings: Settings,
    pub nodepools: Api<DynamicObject>,
    pub plans: Api<SpotPlan>,
    /// SpotPlans as raw objects (for plans that do not deserialize).
    pub raw_plans: Api<DynamicObject>,
    /// Every NodePool in the cluster, from one watch.
    pub nodepool_cache: Store<DynamicObject>,
    /// Set once that cache has its first full list: until then, a missing NodePool may just be
    /// one not seen yet.
    pub nodepools_synced: Arc<AtomicBool>,
    /// NodeClaims by uid (deleted ones for an hour), to attribute interruptions.
    pub claims: super::interruptions::Claims,
    /// Karpenter's SpotInterrupted events.
    pub interruption_events: Store<k8s_openapi::api::core::v1::Event>,
    /// Failed attempts per plan, for exponential backoff.
    pub(super) backoff: Mutex<HashMap<String, u32>>,
    /// The status this replica last wrote per plan. The controller is the only writer of status,
    /// so within one term of leadership this is what the API server holds, even when the watch
    /// cache has not caught up with it yet.
    written: Mutex<HashMap<String, Written>>,
    /// Status fields the installed CRD does not declare (an older CRD): left out of writes.
    undeclared: Mutex<std::collections::BTreeSet<String>>,
}

struct Written {
    uid: String,
    generation: Option<i64>,
    term: u64,
    status: SpotPlanStatus,
}

pub struct ContextParts {
    pub client: Client,
    pub market: Arc<MarketCache>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub recorder: Recorder,
    pub leadership: Leadership,
    pub settings: Settings,
    pub nodepool_cache: Store<DynamicObject>,
    pub claims: super::interruptions::Claims,
    pub interruption_events: Store<k8s_openapi::api::core::v1::Event>,
}

impl Context {
    pub fn new(p: ContextParts) -> Context {
        let plans = ApiResource::erase::<SpotPlan>(&());
        Context {
            nodepools: Api::all_with(p.client.clone(), &nodepool_resource()),
            plans: Api::all(p.client.clone()),
            raw_plans: Api::all_with(p.client.clone(), &plans),
            client: p.client,
            market: p.market,
            metrics: p.metrics,
            health: p.health,
            recorder: p.recorder,
            leadership: p.leadership,
            settings: p.settings,
            nodepool_cache: p.nodepool_cache,
            claims: p.claims,
            interruption_events: p.interruption_events,
            nodepools_synced: Arc::default(),
            backoff: Mutex::default(),
            written: Mutex::default(),
            undeclared: Mutex::default(),
        }
    }

    /// `status` without the fields the installed CRD does not declare.
    pub(super) fn compatible_status(&self, status: &SpotPlanStatus) -> SpotPlanStatus {
        let undeclared = self.undeclared.lock().expect("undeclared lock");
        if undeclared.is_empty() {
            return status.clone();
        }
        let mut v = serde_json::to_value(status).expect("status serializes");
        super::status::leave_out(&mut v, &undeclared);
        serde_json::from_value(v).expect("a status without optional fields")
    }

    /// Remembers fields to leave out; false when they were all known already (no progress).
    pub(super) fn leave_out_status_fields(&self, fields: &[String]) -> bool {
        let mut undeclared = self.undeclared.lock().expect("undeclared lock");
        let before = undeclared.len();
        undeclared.extend(fields.iter().cloned());
        undeclared.len() > before
    }

    /// Forgets what was written for a deleted plan.
    pub fn forget(&self, plan: &str) {
        self.written.lock().expect("written lock").remove(plan);
    }

    /// Remembers the status written for a plan in this term of leadership.
    pub(super) fn wrote(&self, sp: &SpotPlan, status: &SpotPlanStatus) {
        self.written.lock().expect("written lock").insert(
            sp.name_any(),
            Written {
                uid: sp.uid().unwrap_or_default(),
                generation: sp.metadata.generation,
                term: self.leadership.term(),
                status: status.clone(),
            },
        );
    }

    /// The cached plan with the status we last wrote for it, when that is newer than the cache.
    /// Once the cache has caught up, the record is dropped (no second copy of every status).
    pub(super) fn current(&self, cached: &SpotPlan) -> SpotPlan {
        let mut sp = cached.clone();
        let mut written = self.written.lock().expect("written lock");
        let name = cached.name_any();
        let Some(w) = written.get(&name) else {
            return sp;
        };
        let ours = Some(&w.uid) == cached.metadata.uid.as_ref()
            && w.generation == cached.metadata.generation
            && w.term == self.leadership.term();
        if ours && cached.status.as_ref() != Some(&w.status) {
            sp.status = Some(w.status.clone());
        } else {
            written.remove(&name);
        }
        sp
    }
}
