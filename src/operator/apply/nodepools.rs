//! NodePool writes, never over a NodePool spotplan does not own:
//!
//! - An absent NodePool is created by a server-side apply that is not forced: if anyone
//!   created the name first, their fields conflict with ours and the write is refused, so two
//!   writers racing for one name cannot both win.
//! - A present NodePool (the build found it owned by the plan) is written by a forced
//!   server-side apply that carries the live uid: if the object was deleted and re-created by
//!   someone else in between, the API server refuses the write.
//! - Deletes carry the live uid as a precondition too.
//! - A lost race ends in `Ready=False, NodePoolConflict`, never in a forced write.

use super::super::context::Context;
use super::super::error::Stop;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::Value;
use spotplan_api::build::nodepools::{DesiredNodePool, owned_by};
use spotplan_api::build::{Delete, Write, conflict, rejected};
use spotplan_api::names::FIELD_MANAGER;

/// Writes one NodePool the build found different from the live one.
pub(crate) async fn write(ctx: &Context, w: &Write, plan_uid: &str) -> Result<(), Stop> {
    match &w.live_uid {
        None => create(ctx, &w.pool, plan_uid).await,
        Some(live_uid) => apply_with_uid(ctx, &w.pool, live_uid).await,
    }?;
    ctx.metrics
        .nodepool_writes
        .with_label_values(&[w.pool.role.as_str()])
        .inc();
    Ok(())
}

/// Creates an absent NodePool with a server-side apply that is not forced: if another writer
/// created the name in between, its fields conflict with ours and the API server refuses (409);
/// the live object then decides. One request, and the apply field manager owns every field
/// from the start (so a later apply can remove any of them).
async fn create(ctx: &Context, want: &DesiredNodePool, plan_uid: &str) -> Result<(), Stop> {
    let params = PatchParams::apply(FIELD_MANAGER);
    match ctx
        .nodepools
        .patch(&want.name, &params, &Patch::Apply(&want.object))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            match ctx.nodepools.get_opt(&want.name).await? {
                Some(l) if owned_by(&l, plan_uid) => {
                    let uid = l.metadata.uid.clone().unwrap_or_default();
                    apply_with_uid(ctx, want, &uid).await
                }
                Some(_) => Err(conflict(&want.name).into()),
                // Created and deleted again by someone else: try on the next reconcile.
                None => Err(kube::Error::Api(e).into()),
            }
        }
        Err(kube::Error::Api(e)) if e.code == 422 => Err(rejected(&want.name, &e.message).into()),
        Err(e) => Err(e.into()),
    }
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
            Err(conflict(&want.name).into())
        }
        Err(kube::Error::Api(e)) if e.code == 409 && e.message.contains("UID") => {
            Err(conflict(&want.name).into())
        }
        Err(kube::Error::Api(e)) if e.code == 422 => Err(rejected(&want.name, &e.message).into()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a NodePool of the plan's with its uid as a precondition. True when it deleted.
pub(crate) async fn delete(ctx: &Context, d: &Delete) -> Result<bool, kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(d.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match ctx.nodepools.delete(&d.name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
