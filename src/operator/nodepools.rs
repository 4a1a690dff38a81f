//! The live NodePools of a plan: reading them, deciding ownership on the live object, and
//! writing what differs without ever writing over a NodePool spotplan does not own.
//!
//! - An absent NodePool is created by a server-side apply that is not forced: if anyone
//!   created the name first, their fields conflict with ours and the write is refused, so two
//!   writers racing for one name cannot both win.
//! - A present NodePool is written only if the live object says this SpotPlan owns it, by a
//!   server-side apply that carries the live uid: if the object was deleted and re-created by
//!   someone else in between, the API server refuses the write.
//! - A lost race ends in `Ready=False, NodePoolConflict`, never in a forced write.

use super::context::Context;
use super::crd::{FIELD_MANAGER, OWNER_UID_ANNOTATION};
use super::desired::{DesiredNodePool, Role};
use super::outcome::{NotReady, Reason, Stop};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use spotplan_core::render::{LABEL_INSTANCE_TYPE, json_subset};
use std::collections::BTreeSet;

/// Whether `np` belongs to the SpotPlan with `uid` (an owner reference, or our annotation on
/// NodePools kept by `deletionPolicy: Orphan`).
pub fn owned_by(np: &DynamicObject, uid: &str) -> bool {
    np.owner_references().iter().any(|o| o.uid == uid)
        || np
            .annotations()
            .get(OWNER_UID_ANNOTATION)
            .is_some_and(|u| u == uid)
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

/// A NodePool from the watch cache.
pub fn cached(ctx: &Context, name: &str) -> Option<DynamicObject> {
    ctx.nodepool_cache
        .get(&ObjectRef::new_with(
            name,
            super::context::nodepool_resource(),
        ))
        .map(|o| (*o).clone())
}

fn conflict(name: &str) -> Stop {
    Stop::NotReady(NotReady::new(
        Reason::NodePoolConflict,
        format!(
            "NodePool {name} exists and is not owned by this SpotPlan; spotplan never takes over a NodePool it does not own: rename the SpotPlan or remove that NodePool"
        ),
    ))
}

/// Refuses a name held by a NodePool this plan does not own (read from the cache; the writes
/// below check again on the live object).
pub fn check_owned(name: &str, live: Option<&DynamicObject>, uid: &str) -> Result<(), Stop> {
    match live {
        Some(l) if !owned_by(l, uid) => Err(conflict(name)),
        _ => Ok(()),
    }
}

/// Whether `live` already is what we would apply.
fn up_to_date(want: &DesiredNodePool, live: &DynamicObject, uid: &str) -> bool {
    let orphan = want.object["metadata"].get("ownerReferences").is_none();
    let has_owner_ref = live.owner_references().iter().any(|o| o.uid == uid);
    serde_json::to_value(live).is_ok_and(|v| json_subset(&want.object, &v))
        && has_owner_ref != orphan
}

/// Writes the desired NodePools that differ from the live ones; returns the roles written.
pub async fn apply(
    ctx: &Context,
    uid: &str,
    desired: &[DesiredNodePool],
) -> Result<Vec<Role>, Stop> {
    let mut written = Vec::new();
    for want in desired {
        let live = cached(ctx, &want.name);
        check_owned(&want.name, live.as_ref(), uid)?;
        if live.as_ref().is_some_and(|l| up_to_date(want, l, uid)) {
            continue;
        }
        match live {
            None => create(ctx, want, uid).await?,
            Some(l) => update(ctx, want, &l, uid).await?,
        }
        ctx.metrics
            .nodepool_writes
            .with_label_values(&[want.role.as_str()])
            .inc();
        written.push(want.role);
    }
    Ok(written)
}

fn rejected(name: &str, e: &kube::core::Status) -> Stop {
    Stop::NotReady(NotReady::new(
        Reason::NodePoolRejected,
        format!(
            "Karpenter's NodePool validation refused {name}: {}; fix spec.nodePool",
            e.message
        ),
    ))
}

/// Creates an absent NodePool with a server-side apply that is not forced: if another writer
/// created the name in between, its fields conflict with ours and the API server refuses (409);
/// the live object then decides. One request, and the apply field manager owns every field
/// from the start (so a later apply can remove any of them).
async fn create(ctx: &Context, want: &DesiredNodePool, uid: &str) -> Result<(), Stop> {
    let params = PatchParams::apply(FIELD_MANAGER);
    match ctx
        .nodepools
        .patch(&want.name, &params, &Patch::Apply(&want.object))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let live = ctx.nodepools.get_opt(&want.name).await?;
            match live {
                Some(l) if owned_by(&l, uid) => update(ctx, want, &l, uid).await,
                Some(_) => Err(conflict(&want.name)),
                // Created and deleted again by someone else: try on the next reconcile.
                None => Err(kube::Error::Api(e).into()),
            }
        }
        Err(kube::Error::Api(e)) if e.code == 422 => Err(rejected(&want.name, &e)),
        Err(e) => Err(e.into()),
    }
}

/// Applies over a live NodePool this plan owns.
async fn update(
    ctx: &Context,
    want: &DesiredNodePool,
    live: &DynamicObject,
    uid: &str,
) -> Result<(), Stop> {
    if !owned_by(live, uid) {
        return Err(conflict(&want.name));
    }
    apply_with_uid(ctx, want, live.uid().as_deref().unwrap_or_default()).await
}

/// A forced server-side apply (spotplan owns these fields outright) that carries the live
/// object's uid as a precondition: a NodePool re-created by someone else is not overwritten.
async fn apply_with_uid(ctx: &Context, want: &DesiredNodePool, live_uid: &str) -> Result<(), Stop> {
    let mut body = want.object.clone();
    body["metadata"]["uid"] = Value::String(live_uid.to_string());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match ctx
        .nodepools
        .patch(&want.name, &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains("uid") => {
            Err(conflict(&want.name))
        }
        Err(kube::Error::Api(e)) if e.code == 409 && e.message.contains("UID") => {
            Err(conflict(&want.name))
        }
        Err(kube::Error::Api(e)) if e.code == 422 => Err(rejected(&want.name, &e)),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the on-demand base NodePool of a plan that no longer has a base, if this plan owns
/// it (with the live uid as a precondition). True when it deleted.
pub async fn remove(ctx: &Context, name: &str, uid: &str) -> Result<bool, Stop> {
    let Some(live) = cached(ctx, name) else {
        return Ok(false);
    };
    if !owned_by(&live, uid) {
        return Ok(false);
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: live.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match ctx.nodepools.delete(name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The API version and kind of a SpotPlan, for owner references.
pub fn owner_meta() -> (String, String) {
    use super::crd::SpotPlan;
    (
        SpotPlan::api_version(&()).into_owned(),
        SpotPlan::kind(&()).into_owned(),
    )
}
