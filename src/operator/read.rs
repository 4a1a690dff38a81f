//! The read step: what is there for one plan, from the caches (no GET per reconcile), or why not
//! to reconcile it now.

use super::context::Context;
use super::signals::OwnedPool;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use spotplan_api::SpotPlan;
use spotplan_api::build::nodepools::owned_by;
use spotplan_api::build::status::whole_second;
use spotplan_api::build::{self, Observed};
use spotplan_api::freshness::Freshness;
use spotplan_api::karpenter::nodepool_resource;
use spotplan_api::names::PoolNames;
use spotplan_core::MarketData;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What is there.
pub(crate) struct Read {
    /// The plan, with the status this replica last wrote for it.
    pub plan: SpotPlan,
    pub freshness: Freshness,
    pub market: Option<MarketData>,
    /// The live NodePools that carry the plan's names.
    pub nodepools: Vec<DynamicObject>,
    pub signals: build::Signals,
    pub placement: Option<Vec<(String, u8)>>,
    /// The live NodeOverlays of the plan (or holding its overlay names).
    pub overlays: Vec<DynamicObject>,
    pub overlay_support: spotplan_api::build::overlays::Support,
    pub now: Timestamp,
}

impl Read {
    pub fn observed(&self) -> Observed<'_> {
        Observed {
            plan: &self.plan,
            freshness: &self.freshness,
            market: self.market.as_ref(),
            nodepools: &self.nodepools,
            signals: &self.signals,
            placement: self.placement.as_deref(),
            overlays: build::SeenOverlays {
                support: self.overlay_support,
                live: &self.overlays,
            },
            now: self.now,
        }
    }
}

/// Reads `cached`'s world, or says when to come back: not the leader (a follower never builds),
/// the plan being deleted, the NodePool cache not synced yet, the first market data still
/// loading, or live data for its region not loaded yet (the refresh loop requeues every plan
/// when a load ends).
pub(crate) async fn read(ctx: &Context, cached: &SpotPlan) -> Result<Read, Action> {
    if cached.metadata.deletion_timestamp.is_some() || !ctx.leadership.is_leader() {
        return Err(Action::await_change());
    }
    if !ctx.nodepools_synced.load(Ordering::Relaxed) || !ctx.overlays.ready() {
        return Err(Action::requeue(Duration::from_millis(500)));
    }
    let now = whole_second(Timestamp::now());
    let freshness = ctx.market.freshness(now, Some(cached.spec.region.as_str()));
    if freshness.loading() {
        return Err(Action::await_change());
    }
    if !cached.spec.suspend && ctx.market.use_region(&cached.spec.region) {
        return Err(Action::await_change());
    }
    // The watch cache can lag behind our own last status write, and the churn rule depends on
    // that status.
    let plan = ctx.memory.current(cached, ctx.leadership.term());
    let names = PoolNames::of(&plan.name_any());
    ctx.memory.names_of(&plan.name_any(), &names);
    let market = ctx.market.snapshot();
    let placement = match &market {
        Some(m) if ctx.placement_scores && !plan.spec.suspend => placement(ctx, &plan, m).await,
        _ => None,
    };
    let nodepools: Vec<DynamicObject> = names
        .all()
        .into_iter()
        .filter_map(|(_, name)| {
            ctx.nodepool_cache
                .get(&ObjectRef::new_with(name, nodepool_resource()))
        })
        .map(|np| np.inflate())
        .collect();
    let uid = plan.uid().unwrap_or_default();
    let owned: Vec<OwnedPool> = nodepools
        .iter()
        .filter(|np| owned_by(np, &uid))
        .filter_map(|np| {
            Some(OwnedPool {
                name: np.metadata.name.as_deref()?,
                uid: np.metadata.uid.as_deref()?,
            })
        })
        .collect();
    let overlays = super::overlays::live_of(&ctx.overlays.store, &names.spot);
    let mut signals = ctx.signals.for_plan(&names, &owned);
    signals.seen_before = ctx.memory.seen_before(&plan.name_any());
    Ok(Read {
        overlays,
        overlay_support: ctx.overlays.support,
        nodepools,
        signals,
        plan,
        freshness,
        market,
        placement,
        now,
    })
}

/// Zone scores for the plan's size and top types (before demotions: scores are per zone, and
/// demotion takes out a type or two).
async fn placement(
    ctx: &Context,
    plan: &SpotPlan,
    market: &MarketData,
) -> Option<Vec<(String, u8)>> {
    let spec =
        spotplan_api::validate::validate(&plan.spec, ctx.settings.min_narrow_interval).ok()?;
    let preview = spotplan_core::optimize(&spec.request, market).ok()?;
    ctx.market.placement_scores(&preview).await
}
