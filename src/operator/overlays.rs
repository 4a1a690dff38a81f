//! NodeOverlays: whether the cluster serves them, the cache of spotplan's own, and their writes.
//!
//! Writes follow the NodePools' rules (`apply::nodepools`): an absent overlay is created by a
//! server-side apply that is not forced (a name someone else took first is refused, never taken
//! over); a present one of the plan's by a forced apply carrying its uid; deletes carry the uid.

use super::compact::{Compact, compacted, keep_conditions};
use super::context::Context;
use super::error::Error;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;
use spotplan_api::build::overlays::{
    OverlayDelete, OverlayWrite, SPEC_HASH_FIELD, Support, spec_hash,
};
use spotplan_api::karpenter::nodeoverlay_resource;
use spotplan_api::names::{FIELD_MANAGER, MANAGED_BY_LABEL};
use spotplan_core::policy::pricing::{MAX_TYPE_LEVELS, MAX_ZONE_LEVELS};
use spotplan_core::render::overlay::overlay_name;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How the controller treats NodeOverlays (`--risk-pricing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Write them where the cluster serves them (each plan can still turn it off).
    Auto,
    /// Never write them (and delete the plans' own).
    Off,
}

/// Whether the cluster serves NodeOverlays, asked once at start: the watch needs the resource.
/// A cluster that gains them later needs a controller restart (README, Risk pricing). With
/// `--risk-pricing=off` on a cluster that serves them, the plans' own are still watched, to be
/// deleted.
pub(crate) async fn support(client: &Client, mode: Mode) -> (Support, bool) {
    let api = Api::<DynamicObject>::all_with(client.clone(), &nodeoverlay_resource());
    let served = served(&api).await;
    let support = match (mode, served) {
        (Mode::Off, _) => Support::Off,
        (Mode::Auto, true) => Support::Served,
        (Mode::Auto, false) => Support::NotServed,
    };
    (support, served)
}

async fn served(api: &Api<DynamicObject>) -> bool {
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::info!(
                "the cluster does not serve karpenter.sh/v1alpha1 NodeOverlay: risk pricing is off"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list NodeOverlays (RBAC?): risk pricing is off");
            false
        }
    }
}

/// The cache of the NodeOverlays spotplan wrote (by its managed-by label: a relabelled one
/// drops out of the cache and is written again), and the stream of their changes.
pub(crate) fn watch(
    client: &Client,
    served: bool,
) -> (
    Store<Compact>,
    BoxStream<'static, Result<Compact, watcher::Error>>,
) {
    let writer = reflector::store::Writer::new(nodeoverlay_resource());
    let store = writer.as_reader();
    if !served {
        return (store, futures::stream::pending().boxed());
    }
    let config = watcher::Config::default()
        .any_semantic()
        .labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    let stream = reflector(
        writer,
        compacted(
            watcher(
                Api::<DynamicObject>::all_with(client.clone(), &nodeoverlay_resource()),
                config,
            ),
            slim,
        ),
    )
    .default_backoff()
    .applied_objects()
    .boxed();
    (store, stream)
}

/// What the cache keeps of an overlay: its name, uid, labels, annotations and owner references,
/// a hash of its spec instead of the spec, and of its status only Karpenter's conditions'
/// type, status, reason and message.
fn slim(o: &mut DynamicObject) {
    keep_conditions(o);
    let hash = spec_hash(&o.data["spec"]);
    o.data = serde_json::json!({
        SPEC_HASH_FIELD: hash,
        "status": o.data["status"].take(),
    });
}

/// Writes one overlay the build found different.
pub(crate) async fn write(ctx: &Context, w: &OverlayWrite) -> Result<(), Error> {
    let api = &ctx.overlays.api;
    let mut body = w.overlay.object.clone();
    let params = match &w.live_uid {
        None => PatchParams::apply(FIELD_MANAGER),
        Some(uid) => {
            body["metadata"]["uid"] = Value::String(uid.clone());
            PatchParams::apply(FIELD_MANAGER).force()
        }
    };
    match api
        .patch(&w.overlay.name, &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(()),
        // Taken by someone else in between (create), or re-created (uid): the next read shows
        // whose it is, and the build reports it instead of writing.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 && e.message.contains("uid") => {
            tracing::info!(overlay = %w.overlay.name, error = %e.message, "NodeOverlay not written");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes one of the plan's overlays, with its uid as a precondition.
pub(crate) async fn delete(ctx: &Context, d: &OverlayDelete) -> Result<bool, Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(d.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match ctx.overlays.api.delete(&d.name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The live overlays that hold the plan's spot NodePool `pool`'s overlay names: looked up by
/// name (a pool's names are bounded), never by scanning every overlay in the cache. The build
/// decides which are the plan's (owner reference) and which someone else holds.
pub(crate) fn live_of(store: &Store<Compact>, pool: &str) -> Vec<DynamicObject> {
    let names = (0..MAX_TYPE_LEVELS)
        .map(|n| overlay_name(pool, false, n))
        .chain((0..MAX_ZONE_LEVELS).map(|n| overlay_name(pool, true, n)));
    names
        .filter_map(|name| store.get(&ObjectRef::new_with(&name, nodeoverlay_resource())))
        .map(|o| o.inflate())
        .collect()
}

/// What a reconcile needs of overlays.
pub(crate) struct Overlays {
    pub support: Support,
    /// The cluster serves them (and the cache is filled).
    pub served: bool,
    pub api: Api<DynamicObject>,
    pub store: Store<Compact>,
    /// Set once the cache has its first full list.
    pub synced: Arc<AtomicBool>,
}

impl Overlays {
    pub fn new(
        client: Client,
        (support, served): (Support, bool),
        store: Store<Compact>,
    ) -> Overlays {
        Overlays {
            support,
            served,
            api: Api::all_with(client, &nodeoverlay_resource()),
            store,
            synced: Arc::default(),
        }
    }

    /// Whether the cache can be read: not needed, or listed once.
    pub fn ready(&self) -> bool {
        !self.served || self.synced.load(Ordering::Relaxed)
    }
}
