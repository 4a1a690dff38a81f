//! The cluster's own interruption signal. Karpenter's interruption controller publishes a
//! Warning Event, reason `SpotInterrupted`, on the NodeClaim when AWS sends the two-minute
//! notice, then deletes the NodeClaim. Each event is attributed to a plan, an instance type and a
//! zone through a cache of NodeClaims that remembers deleted ones for an hour, and counted once
//! per NodeClaim uid (the shift policy deduplicates against the log kept in status).
//!
//! Karpenter's launch controller publishes a Warning Event, reason `InsufficientCapacityError`,
//! on a NodeClaim the cloud provider could not launch, then deletes it: those are recorded the
//! same way, per NodeClaim, as the plan's launch failures. A NodeClaim that has not launched
//! carries no instance-type or zone label; its type and zone are known only when its
//! requirements allow exactly one, and are "unknown" otherwise.
//!
//! A NodeClaim deleted before this controller's cache first listed them (a restart or a new
//! leader during an interruption storm, which may take the controller's own node) is gone for
//! good, but its events are not (the API server keeps them an hour). Such an event, from before
//! the cache synced, is attributed by the NodeClaim's name: Karpenter names a NodeClaim after
//! its NodePool plus a generated suffix. Its type and zone are "unknown": it counts toward the
//! shift and demotes nothing.

use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::api::DynamicObject;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use spotplan_api::build;
use spotplan_api::karpenter::{
    INSUFFICIENT_CAPACITY, LABEL_CAPACITY_TYPE, LABEL_INSTANCE_TYPE, LABEL_NODEPOOL, LABEL_ZONE,
    SPOT_INTERRUPTED, nodeclaim_resource, nodepool_resource,
};
use spotplan_api::names::{PLAN_LABEL, PoolNames};
use spotplan_core::policy::shift::{Interruption, UNKNOWN};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a deleted NodeClaim stays attributable.
const REMEMBER_DELETED: Duration = Duration::from_secs(3600);

/// Karpenter's NodeClaims and the Events on them: what a reconcile reads of the interruption
/// signal.
#[derive(Clone)]
pub(crate) struct Signals {
    claims: Claims,
    events: Store<Event>,
}

impl Signals {
    /// The signal for a plan with these NodePool names: interruptions of its spot NodeClaims,
    /// launch failures of all of them, and how many NodeClaims its shift NodePool still has.
    pub fn for_plan(&self, names: &PoolNames) -> build::Signals {
        let all = [
            names.spot.as_str(),
            names.on_demand.as_str(),
            names.shift.as_str(),
        ];
        build::Signals {
            interruptions: signals(
                &self.events,
                &self.claims,
                SPOT_INTERRUPTED,
                &all[..1],
                Some("spot"),
            ),
            launch_failures: signals(
                &self.events,
                &self.claims,
                INSUFFICIENT_CAPACITY,
                &all,
                None,
            ),
            shift_nodes: self
                .claims
                .synced()
                .then(|| self.claims.live_in(&names.shift)),
        }
    }

    /// The plan an Event concerns (to bring it back), through the NodePool cache.
    pub fn plan_of(&self, e: &Event, nodepools: &Store<DynamicObject>) -> Option<String> {
        plan_of(e, &self.claims, nodepools)
    }
}

/// Starts the NodeClaim watch (its first full list sends `synced` once: every plan is then
/// reconciled, counts are trusted from then) and the Event watch; returns the signal and the
/// Event stream that brings plans back.
pub(crate) fn watch(
    client: &Client,
    synced: tokio::sync::mpsc::UnboundedSender<()>,
) -> (Signals, BoxStream<'static, Result<Event, watcher::Error>>) {
    let claims = Claims::default();
    spawn_claims_watch(client, claims.clone(), synced);
    let (events, stream) = events(client);
    (Signals { claims, events }, stream)
}

/// What a NodeClaim says about itself.
#[derive(Debug, Clone, PartialEq)]
struct Claim {
    pub nodepool: String,
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    pub capacity_type: Option<String>,
    deleted: Option<Instant>,
}

/// NodeClaims by uid, deleted ones kept for [`REMEMBER_DELETED`], and when the cache first
/// had a full list.
#[derive(Clone, Default)]
struct Claims(Arc<Mutex<HashMap<String, Claim>>>, Arc<OnceLock<Timestamp>>);

impl Claims {
    /// Whether the cache has had its first full list (until then no count can be trusted).
    fn synced(&self) -> bool {
        self.1.get().is_some()
    }

    fn get(&self, uid: &str) -> Option<Claim> {
        self.0.lock().expect("claims lock").get(uid).cloned()
    }

    /// The NodeClaim `e` is about: from the cache, else (see the module docs), for an event
    /// from before the cache's first full list, from the NodeClaim's name.
    fn of_event(&self, e: &Event) -> Option<Claim> {
        self.get(e.involved_object.uid.as_deref()?).or_else(|| {
            let synced_at = *self.1.get()?;
            (when(e)? < synced_at).then(|| gone_claim(e))?
        })
    }

    /// NodeClaims (not deleted) of `nodepool`.
    fn live_in(&self, nodepool: &str) -> usize {
        self.0
            .lock()
            .expect("claims lock")
            .values()
            .filter(|c| c.deleted.is_none() && c.nodepool == nodepool)
            .count()
    }

    /// What `o` says about itself, under its uid: its labels, or for a NodeClaim not launched
    /// yet, a requirement that allows a single value.
    fn claim(o: &DynamicObject) -> Option<(String, Claim)> {
        let only = |k: &str| {
            let reqs = o.data["spec"]["requirements"].as_array()?;
            let r = reqs
                .iter()
                .find(|r| r["key"] == k && r["operator"] == "In")?;
            match r["values"].as_array()?.as_slice() {
                [one] => one.as_str().map(str::to_string),
                _ => None,
            }
        };
        let label = |k: &str| o.labels().get(k).cloned().or_else(|| only(k));
        let claim = Claim {
            nodepool: label(LABEL_NODEPOOL).unwrap_or_default(),
            instance_type: label(LABEL_INSTANCE_TYPE),
            zone: label(LABEL_ZONE),
            capacity_type: label(LABEL_CAPACITY_TYPE),
            // A NodeClaim being deleted (Karpenter drains it first) holds no capacity to move.
            deleted: o
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|_| Instant::now()),
        };
        Some((o.uid()?, claim))
    }

    fn apply(&self, o: &DynamicObject) {
        if let Some((uid, claim)) = Self::claim(o) {
            self.0.lock().expect("claims lock").insert(uid, claim);
        }
    }

    /// Marks `o` deleted (kept for [`REMEMBER_DELETED`]), recording it first if it was unseen.
    fn delete(&self, o: &DynamicObject) {
        let Some((uid, claim)) = Self::claim(o) else {
            return;
        };
        let mut map = self.0.lock().expect("claims lock");
        map.entry(uid)
            .or_insert(claim)
            .deleted
            .get_or_insert_with(Instant::now);
    }

    fn prune(&self) {
        self.0
            .lock()
            .expect("claims lock")
            .retain(|_, c| c.deleted.is_none_or(|d| d.elapsed() < REMEMBER_DELETED));
    }
}

/// What the name of the NodeClaim `e` is about says: its NodePool (Karpenter's `generateName`
/// is the NodePool's name and a dash), and for a spot interruption, spot capacity.
fn gone_claim(e: &Event) -> Option<Claim> {
    let (nodepool, suffix) = e.involved_object.name.as_deref()?.rsplit_once('-')?;
    if nodepool.is_empty()
        || suffix.is_empty()
        || !suffix.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    Some(Claim {
        nodepool: nodepool.to_string(),
        instance_type: None,
        zone: None,
        capacity_type: (e.reason.as_deref() == Some(SPOT_INTERRUPTED)).then(|| "spot".into()),
        deleted: Some(Instant::now()),
    })
}

/// Keeps `claims` up to date from a watch of every NodeClaim. When the first full list is in,
/// `synced` is sent once: from then on counts can be trusted, and events from before are
/// attributable (see the module docs).
fn spawn_claims_watch(
    client: &Client,
    claims: Claims,
    synced: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let api = Api::<DynamicObject>::all_with(client.clone(), &nodeclaim_resource());
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .boxed();
        while let Some(e) = events.next().await {
            match e {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => claims.apply(&o),
                Ok(watcher::Event::Delete(o)) => claims.delete(&o),
                Ok(watcher::Event::InitDone) => {
                    if claims.1.set(Timestamp::now()).is_ok() {
                        let _ = synced.send(());
                    }
                    claims.prune();
                }
                Ok(_) => claims.prune(),
                Err(e) => tracing::debug!(error = %e, "NodeClaim watch"),
            }
        }
    });
}

/// Karpenter's Warning events on NodeClaims (SpotInterrupted and InsufficientCapacityError
/// among them; a cache read by every reconcile) and the stream that brings their plans back.
fn events(
    client: &Client,
) -> (
    Store<Event>,
    BoxStream<'static, Result<Event, watcher::Error>>,
) {
    let (store, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(
            Api::<Event>::all(client.clone()),
            watcher::Config::default()
                .fields("involvedObject.kind=NodeClaim,type=Warning")
                .any_semantic(),
        ),
    )
    .default_backoff()
    .applied_objects()
    .boxed();
    (store, stream)
}

/// The SpotPlan an interruption or launch-failure event concerns: its NodeClaim's NodePool's
/// plan label.
fn plan_of(e: &Event, claims: &Claims, nodepools: &Store<DynamicObject>) -> Option<String> {
    // Requeueing is cheap: a NodeClaim the cache does not hold maps by its name.
    let claim = claims
        .get(e.involved_object.uid.as_deref()?)
        .or_else(|| gone_claim(e))?;
    let np = nodepools.get(&ObjectRef::new_with(&claim.nodepool, nodepool_resource()))?;
    np.labels().get(PLAN_LABEL).cloned()
}

fn when(e: &Event) -> Option<Timestamp> {
    let t = e
        .event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    Some(t)
}

/// Events of `reason` on NodeClaims of `nodepools` (of `capacity` type, if given), one entry
/// per event, attributed through the NodeClaim cache.
fn signals(
    events: &Store<Event>,
    claims: &Claims,
    reason: &str,
    nodepools: &[&str],
    capacity: Option<&str>,
) -> Vec<Interruption> {
    events
        .state()
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.involved_object.kind.as_deref() == Some("NodeClaim"))
        .filter_map(|e| {
            let uid = e.involved_object.uid.clone()?;
            let c = claims.of_event(e)?;
            let ours = nodepools.contains(&c.nodepool.as_str())
                && capacity.is_none_or(|want| c.capacity_type.as_deref() == Some(want));
            ours.then_some(Interruption {
                at: when(e)?,
                uid,
                instance_type: c.instance_type.unwrap_or_else(|| UNKNOWN.into()),
                zone: c.zone.unwrap_or_else(|| UNKNOWN.into()),
            })
        })
        .collect()
}
