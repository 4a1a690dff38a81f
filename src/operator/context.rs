//! Everything a reconcile needs, shared by all of them: one documented struct.

use super::health::Health;
use super::lease::Leadership;
use super::market::MarketCache;
use super::memory::Memory;
use super::metrics::Metrics;
use super::overlays::Overlays;
use super::signals::Signals;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use spotplan_api::SpotPlan;
use spotplan_api::build::Settings;
use spotplan_api::karpenter::nodepool_resource;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The reconciler's shared state.
pub(crate) struct Context {
    /// Publishes the plans' Events (in the namespace of cluster-scoped objects' Events).
    pub recorder: Recorder,
    pub market: Arc<MarketCache>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Whether this replica may write.
    pub leadership: Leadership,
    /// What the build reads of the controller's flags.
    pub settings: Settings,
    /// Order zones and near-tied types by spot placement scores (live data).
    pub placement_scores: bool,
    pub nodepools: Api<DynamicObject>,
    pub plans: Api<SpotPlan>,
    /// SpotPlans as raw objects (for plans that do not deserialize).
    pub raw_plans: Api<DynamicObject>,
    /// Every NodePool in the cluster, from one watch.
    pub nodepool_cache: Store<super::compact::Compact>,
    /// Set once that cache has its first full list: until then, a missing NodePool may just be
    /// one not seen yet.
    pub nodepools_synced: Arc<AtomicBool>,
    /// Karpenter's NodeClaims and their Events: the interruption signal.
    pub signals: Signals,
    /// NodeOverlays: whether served, spotplan's own (cached), and their API.
    pub overlays: Overlays,
    /// What this replica remembers between reconciles.
    pub memory: Memory,
}

/// What [`Context::new`] is made of.
pub(crate) struct Parts {
    pub client: Client,
    pub recorder: Recorder,
    pub market: Arc<MarketCache>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub leadership: Leadership,
    pub settings: Settings,
    pub placement_scores: bool,
    pub nodepool_cache: Store<super::compact::Compact>,
    pub signals: Signals,
    /// Risk pricing's support, and whether the cluster serves NodeOverlays.
    pub overlay_support: (spotplan_api::build::overlays::Support, bool),
    pub overlay_cache: Store<super::compact::Compact>,
}

impl Context {
    pub fn new(p: Parts) -> Context {
        Context {
            overlays: Overlays::new(p.client.clone(), p.overlay_support, p.overlay_cache),
            nodepools: Api::all_with(p.client.clone(), &nodepool_resource()),
            plans: Api::all(p.client.clone()),
            raw_plans: Api::all_with(p.client, &ApiResource::erase::<SpotPlan>(&())),
            recorder: p.recorder,
            market: p.market,
            metrics: p.metrics,
            health: p.health,
            leadership: p.leadership,
            settings: p.settings,
            placement_scores: p.placement_scores,
            nodepool_cache: p.nodepool_cache,
            nodepools_synced: Arc::default(),
            signals: p.signals,
            memory: Memory::default(),
        }
    }
}
