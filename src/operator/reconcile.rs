//! The reconciler: read what is there, build what should be, apply the difference.
//!
//! [`read`](super::read) takes everything from caches; [`build`] is the pure SpotPlan API
//! (validation, the optimizer, the churn and shift rules, the desired NodePools, the status and
//! the Events); [`apply`](super::apply) writes only what differs. Nothing is written when
//! nothing changed.

use super::apply::{apply, write_raw};
use super::context::Context;
use super::error::{Error, Outcome};
use super::read::read;
use super::watches::GuardedPlan;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use spotplan_api::SpotPlan;
use spotplan_api::build::{self, status::whole_second};
use spotplan_api::outcome::Retry;
use std::sync::Arc;

/// The reconcile entry point.
pub(crate) async fn reconcile(guard: Arc<GuardedPlan>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.duration.start_timer();
    let _running = ctx.health.reconcile_started();
    let result = match &guard.0 {
        Ok(sp) => reconcile_plan(sp, &ctx).await,
        Err(invalid) => reconcile_unreadable(invalid, &ctx).await,
    };
    let outcome = result.as_ref().map_or(Outcome::Failed, |(o, _)| *o);
    ctx.metrics
        .reconciles
        .with_label_values(&[outcome.as_str()])
        .inc();
    if result.is_ok() {
        ctx.memory.succeeded(&name_of(&guard));
    }
    result.map(|(_, action)| action)
}

/// One SpotPlan, as its steps.
async fn reconcile_plan(cached: &SpotPlan, ctx: &Context) -> Result<(Outcome, Action), Error> {
    let read = match read(ctx, cached).await {
        Ok(r) => r,
        Err(wait) => return Ok((Outcome::Deferred, wait)),
    };
    let desired = build::build(&read.observed(), &ctx.settings);
    let next = action(desired.retry);
    let outcome = apply(ctx, &read, desired).await?;
    Ok((outcome, next))
}

/// Transient errors back off exponentially per plan: 1s, 2s, 4s ... up to 5 minutes.
pub(crate) fn error_policy(guard: Arc<GuardedPlan>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .with_label_values(&[err.category()])
        .inc();
    let name = name_of(&guard);
    let delay = ctx.memory.failed(&name);
    tracing::warn!(plan = %name, error = %err, category = err.category(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn name_of(guard: &GuardedPlan) -> String {
    match &guard.0 {
        Ok(sp) => sp.name_any(),
        Err(i) => i.metadata.name.clone().unwrap_or_default(),
    }
}

fn action(retry: Retry) -> Action {
    match retry {
        Retry::OnChange => Action::await_change(),
        Retry::After(d) => Action::requeue(d),
    }
}

/// An object that does not even deserialize (a field of the wrong type that slipped past the
/// schema, say): say so in its status rather than stall the controller.
async fn reconcile_unreadable(
    invalid: &InvalidObject,
    ctx: &Context,
) -> Result<(Outcome, Action), Error> {
    let Some(name) = invalid.metadata.name.clone() else {
        return Ok((Outcome::Deferred, Action::await_change()));
    };
    tracing::warn!(plan = %name, error = %invalid.error, "SpotPlan does not deserialize");
    if !ctx.leadership.is_leader() {
        return Ok((Outcome::Deferred, Action::await_change()));
    }
    let status = build::status::unreadable(
        invalid.metadata.generation,
        &invalid.error,
        whole_second(Timestamp::now()),
    );
    write_raw(ctx, &name, &status).await?;
    ctx.metrics.plan_ready.with_label_values(&[&name]).set(0.0);
    Ok((Outcome::NotReady, Action::await_change()))
}
