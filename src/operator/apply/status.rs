//! Status writes and Events: the status is written by server-side apply, only when it differs
//! from the live one; Events are published in the background (best effort).

use super::super::context::Context;
use super::super::error::Error;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use spotplan_api::build::events::{Note, Severity};
use spotplan_api::names::FIELD_MANAGER;
use spotplan_api::{SpotPlan, SpotPlanStatus};

/// Writes the status if it differs from the live one. Returns whether it wrote.
///
/// An installed CRD older than this controller (mid-upgrade: the CRD is upgraded first, but a
/// rollback or a forgotten step happens) refuses status fields it does not declare. Those fields
/// are then left out, here and in every later write, with one warning naming the fix; the plan
/// keeps working.
pub(crate) async fn write(
    ctx: &Context,
    sp: &SpotPlan,
    status: &SpotPlanStatus,
) -> Result<bool, Error> {
    let status = ctx.memory.compatible(status);
    if sp.status.as_ref() == Some(&status) || !ctx.leadership.is_leader() {
        return Ok(false);
    }
    for _ in 0..8 {
        let status = ctx.memory.compatible(&status);
        let body = json!({
            "apiVersion": SpotPlan::api_version(&()),
            "kind": SpotPlan::kind(&()),
            "status": status,
        });
        let result = ctx
            .plans
            .patch_status(
                &sp.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await;
        match result {
            Ok(_) => {
                ctx.memory.wrote(sp, &status, ctx.leadership.term());
                return Ok(true);
            }
            Err(kube::Error::Api(e)) if e.message.contains("field not declared in schema") => {
                let undeclared = undeclared_fields(&e.message);
                if undeclared.is_empty() || !ctx.memory.leave_out_fields(&undeclared) {
                    return Err(kube::Error::Api(e).into());
                }
                tracing::warn!(
                    fields = ?undeclared,
                    "the installed SpotPlan CRD is older than this controller and does not declare these status fields; they are left out: upgrade it with `spotplan crd | kubectl apply --server-side -f -`"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Writes the status of a SpotPlan that does not deserialize (only its name and generation are
/// known).
pub(crate) async fn write_raw(
    ctx: &Context,
    name: &str,
    status: &SpotPlanStatus,
) -> Result<(), Error> {
    let body = json!({
        "apiVersion": SpotPlan::api_version(&()),
        "kind": SpotPlan::kind(&()),
        "status": status,
    });
    ctx.raw_plans
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(())
}

/// The `.status...` paths an API server's "field not declared in schema" message names.
fn undeclared_fields(message: &str) -> Vec<String> {
    message
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|w| w.strip_prefix(".status."))
        .map(|w| without_list_keys(w.trim_end_matches(':')))
        .filter(|w| !w.is_empty())
        .collect()
}

/// A field path with its list element keys dropped: `plan.instanceTypes[0].x` and
/// `dataSources[source="price-file"].dated` name the field of every element
/// (`plan.instanceTypes.x`, `dataSources.dated`).
fn without_list_keys(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Publishes an Event about `sp`, in the background (Events are best effort).
///
/// kube's `Recorder` folds every Event with the same reason and action into one series and keeps
/// the first note, so a second `PremiumRaised` with new figures would only bump the count of the
/// first. The action carries a digest of the note: the same message repeated still folds into a
/// series, and a new message is an Event of its own.
pub(crate) fn publish(ctx: &Context, sp: &SpotPlan, note: &Note) {
    let event = Event {
        type_: match note.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        },
        reason: note.reason.into(),
        note: Some(note.message.chars().take(1000).collect()),
        action: action(&note.message),
        secondary: None,
    };
    let (recorder, reference, plan) = (ctx.recorder.clone(), sp.object_ref(&()), sp.name_any());
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(%plan, error = %e, "could not publish an event");
        }
    });
}

/// "Reconcile/<digest of the message>" (see [`publish`]).
fn action(message: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    message.hash(&mut h);
    format!("Reconcile/{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_messages_are_distinct_actions_and_repeats_are_one() {
        let a = action("r7g.8xlarge in us-east-1a: +7.5%");
        assert_eq!(a, action("r7g.8xlarge in us-east-1a: +7.5%"));
        assert_ne!(a, action("r7g.8xlarge in us-east-1a: +7.5% -> +10%"));
        assert!(a.starts_with("Reconcile/") && a.len() <= 128, "{a}");
    }

    #[test]
    fn undeclared_status_fields_are_named() {
        let msg = "failed to create typed patch object (/; spotplan.dev/v1alpha1, Kind=SpotPlan): .status.dataSources: field not declared in schema";
        assert_eq!(undeclared_fields(msg), vec!["dataSources".to_string()]);
    }

    #[test]
    fn a_field_of_list_elements_is_named_for_every_element() {
        let msg = "failed to create typed patch object (/; spotplan.dev/v1alpha1, Kind=SpotPlan): .status.plan.instanceTypes[0].rankedUsdPerHour: field not declared in schema, .status.dataSources[source=\"spot.advisor\"].dated: field not declared in schema";
        assert_eq!(
            undeclared_fields(msg),
            vec![
                "plan.instanceTypes.rankedUsdPerHour".to_string(),
                "dataSources.dated".to_string()
            ]
        );
    }
}
