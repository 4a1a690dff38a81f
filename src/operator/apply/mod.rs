//! The apply step: writes what the build found different, and nothing else. NodePools first
//! (a refusal turns into the plan's `Ready=False`), then deletions, then the status (only when
//! it changed), then the Events, then the plan's metrics. Only the leader writes.

mod nodepools;
mod status;

pub(crate) use status::{publish, write_raw};

use super::context::Context;
use super::error::{Error, Outcome, Stop};
use super::read::Read;
use kube::ResourceExt;
use spotplan_api::SpotPlan;
use spotplan_api::build::{self, Desired, Standing};

/// Applies `desired` for the plan `read` found. Returns what was done.
pub(crate) async fn apply(ctx: &Context, read: &Read, desired: Desired) -> Result<Outcome, Error> {
    if !ctx.leadership.is_leader() {
        return Ok(Outcome::Deferred);
    }
    let sp = &read.plan;
    let uid = sp.uid().unwrap_or_default();
    let mut wrote = false;
    for w in &desired.writes {
        match nodepools::write(ctx, w, &uid).await {
            Ok(()) => wrote = true,
            Err(Stop::NotReady(nr)) => {
                let refused = build::refused(&read.observed(), &nr);
                return Box::pin(apply(ctx, read, refused)).await;
            }
            Err(Stop::Transient(e)) => return Err(e),
        }
    }
    // A plan's overlays are independent of each other: written together.
    if !desired.overlay_writes.is_empty() {
        futures::future::try_join_all(
            desired
                .overlay_writes
                .iter()
                .map(|w| super::overlays::write(ctx, w)),
        )
        .await?;
        wrote = true;
    }
    for d in &desired.overlay_deletes {
        wrote |= super::overlays::delete(ctx, d).await?;
    }
    for d in &desired.deletes {
        if nodepools::delete(ctx, d).await? {
            wrote = true;
            if let Some(note) = &d.note {
                publish(ctx, sp, note);
            }
        }
    }
    wrote |= status::write(ctx, sp, &desired.status).await?;
    if matches!(desired.standing, Standing::Ready(_)) {
        // Every uid this build saw is now in the status it wrote, or was known before.
        ctx.memory.saw(&sp.name_any(), read.signals.seen());
    }
    for note in &desired.events {
        publish(ctx, sp, note);
    }
    record(ctx, sp, &desired.standing);
    Ok(match (&desired.standing, wrote) {
        (_, true) => Outcome::Applied,
        (Standing::NotReady(_), false) => Outcome::NotReady,
        (Standing::Ready(g), false) if !g.usable => Outcome::NotReady,
        _ => Outcome::Unchanged,
    })
}

/// The plan's metrics.
fn record(ctx: &Context, sp: &SpotPlan, standing: &Standing) {
    let name = sp.name_any();
    let m = &ctx.metrics;
    let g = match standing {
        Standing::Ready(g) => g,
        Standing::NotReady(_) => return m.plan_ready.with_label_values(&[&name]).set(0.0),
        Standing::Suspended => return,
    };
    m.plan_ready
        .with_label_values(&[&name])
        .set(if g.usable { 1.0 } else { 0.0 });
    m.plan_types.with_label_values(&[&name]).set(g.types as f64);
    if let Some(s) = g.spot_usd_per_hour {
        m.plan_spot_usd.with_label_values(&[&name]).set(s);
    }
    if let Some(o) = g.on_demand_usd_per_hour {
        m.plan_on_demand_usd.with_label_values(&[&name]).set(o);
    }
    if let Some(p) = g.savings_pct {
        m.plan_savings.with_label_values(&[&name]).set(p / 100.0);
    }
    for i in &g.new_interruptions {
        m.interruptions
            .with_label_values(&[&name, &i.instance_type, &i.zone])
            .inc();
    }
    for i in &g.new_launch_failures {
        m.launch_failures
            .with_label_values(&[&name, &i.instance_type, &i.zone])
            .inc();
    }
    for i in &g.new_rebalances {
        m.rebalances
            .with_label_values(&[&name, &i.instance_type, &i.zone])
            .inc();
    }
    m.plan_shifted
        .with_label_values(&[&name])
        .set(if g.shifted { 1.0 } else { 0.0 });
}
