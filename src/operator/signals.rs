//! The cluster's own interruption signal, and whose word counts.
//!
//! Karpenter's interruption controller publishes a Warning Event `SpotInterrupted` on a NodeClaim
//! when AWS sends the two-minute notice, then deletes the NodeClaim; its launch controller
//! publishes `InsufficientCapacityError` on a NodeClaim it could not launch. Karpenter v1.14
//! records them with client-go's recorder as component `karpenter`, and the Events of a
//! cluster-scoped object land in the `default` namespace.
//!
//! Anyone allowed to create Events in a namespace can write one that says anything, so an Event
//! counts for a plan only when all of these hold:
//! 1. it is in Karpenter's Event namespace (`--karpenter-event-namespace`, default `default`):
//!    the watch lists only that namespace;
//! 2. Karpenter reported it: `reportingComponent` (or, from recorders that set none,
//!    `source.component`) is `karpenter`;
//! 3. it is about a `karpenter.sh` NodeClaim, and
//! 4. that NodeClaim, matched by uid, is one this controller saw, whose owning NodePool (by the
//!    NodeClaim's owner reference uid) this plan owns; or, for a NodeClaim already gone when the
//!    cache first listed NodeClaims (a restart during an interruption storm), an Event the API
//!    server created before that list whose NodeClaim's name is one of the plan's NodePools'
//!    names and Karpenter's generated suffix. Its type and zone are then "unknown": it counts
//!    toward the shift and demotes nothing.
//!
//! Its time is when the API server created the Event (`metadata.creationTimestamp`), never a time
//! the Event states.
//!
//! A NodeClaim that has not launched carries no instance-type or zone label; its type and zone
//! are known only when its requirements allow exactly one, and are "unknown" otherwise.

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
    EVENT_REPORTER, INSUFFICIENT_CAPACITY, LABEL_CAPACITY_TYPE, LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL, LABEL_ZONE, SPOT_INTERRUPTED, SPOT_REBALANCE, nodeclaim_resource,
    nodepool_resource,
};
use spotplan_api::names::PoolNames;
use spotplan_core::policy::shift::{Interruption, UNKNOWN};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a deleted NodeClaim stays attributable.
const REMEMBER_DELETED: Duration = Duration::from_secs(3600);
/// The most Events remembered as waiting for their NodeClaim.
const WAITING_LIMIT: usize = 10_000;

/// A NodePool a plan owns: its name and uid.
pub(crate) struct OwnedPool<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

/// Karpenter's NodeClaims and the Events on them: what a reconcile reads of the interruption
/// signal.
#[derive(Clone)]
pub(crate) struct Signals {
    claims: Claims,
    /// Warning Events on NodeClaims: interruptions and launch failures.
    events: Store<Event>,
    /// Karpenter's rebalance recommendations (Normal Events, watched by their reason alone so
    /// no other Normal Event is held).
    rebalances: Store<Event>,
    namespace: Arc<str>,
}

impl Signals {
    /// The signal for a plan whose NodePools are `names`, of which it owns `owned`:
    /// interruptions and rebalance recommendations of its spot NodeClaims, launch failures of
    /// all of them, and how many NodeClaims its shift NodePool still has.
    pub fn for_plan(&self, names: &PoolNames, owned: &[OwnedPool]) -> build::Signals {
        let spot: Vec<&OwnedPool> = owned.iter().filter(|p| p.name == names.spot).collect();
        let all: Vec<&OwnedPool> = owned.iter().collect();
        build::Signals {
            interruptions: self.counted(&self.events, SPOT_INTERRUPTED, &spot, Some("spot")),
            launch_failures: self.counted(&self.events, INSUFFICIENT_CAPACITY, &all, None),
            rebalances: self.counted(&self.rebalances, SPOT_REBALANCE, &spot, Some("spot")),
            shift_nodes: self
                .claims
                .synced()
                .then(|| self.claims.live_in(&names.shift)),
            seen_before: None,
        }
    }

    /// Events of `reason` in `store` that count (see the module docs) for NodeClaims of `pools`
    /// (of `capacity` type, if given), one entry per Event.
    fn counted(
        &self,
        store: &Store<Event>,
        reason: &str,
        pools: &[&OwnedPool],
        capacity: Option<&str>,
    ) -> Vec<Interruption> {
        if pools.is_empty() {
            return Vec::new();
        }
        store
            .state()
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason) && self.karpenters(e))
            .filter_map(|e| {
                let c = self.claims.of_event(e)?;
                let ours = pools.iter().any(|p| c.belongs_to(p))
                    && capacity.is_none_or(|want| c.capacity_type.as_deref() == Some(want));
                if !ours {
                    return None;
                }
                Some(Interruption {
                    at: created(e)?,
                    uid: e.involved_object.uid.clone()?,
                    instance_type: c.instance_type.unwrap_or_else(|| UNKNOWN.into()),
                    zone: c.zone.unwrap_or_else(|| UNKNOWN.into()),
                })
            })
            .collect()
    }

    /// Rules 1 to 3 of the module docs: where the Event is, who reported it, what it is about.
    fn karpenters(&self, e: &Event) -> bool {
        reported_by_karpenter(e, &self.namespace)
    }

    /// The NodePool an Event that counts is about (to bring its plan back), from the NodePool
    /// cache.
    pub fn nodepool_of(
        &self,
        e: &Event,
        nodepools: &Store<super::compact::Compact>,
    ) -> Option<Arc<super::compact::Compact>> {
        if !self.karpenters(e) {
            return None;
        }
        let Some(c) = self.claims.of_event(e) else {
            // Its NodeClaim may not be in the cache yet: its arrival brings the plans back.
            self.claims.wait_for(e);
            return None;
        };
        let np = nodepools.get(&ObjectRef::new_with(&c.nodepool, nodepool_resource()))?;
        let same = c.nodepool_uid.is_none() || np.metadata.uid == c.nodepool_uid;
        same.then_some(np)
    }
}

/// Rules 1 to 3: in `namespace`, reported by Karpenter, about a Karpenter NodeClaim.
pub(crate) fn reported_by_karpenter(e: &Event, namespace: &str) -> bool {
    let reporter = e
        .reporting_component
        .as_deref()
        .filter(|r| !r.is_empty())
        .or_else(|| e.source.as_ref()?.component.as_deref());
    let about = &e.involved_object;
    e.metadata.namespace.as_deref() == Some(namespace)
        && reporter == Some(EVENT_REPORTER)
        && about.kind.as_deref() == Some("NodeClaim")
        && about
            .api_version
            .as_deref()
            .is_some_and(|v| v.starts_with("karpenter.sh/"))
}

/// When the API server created the Event.
fn created(e: &Event) -> Option<Timestamp> {
    e.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Starts the NodeClaim watch (its first full list sends `synced` once: every plan is then
/// reconciled, counts are trusted from then) and the Event watch of `namespace`; returns the
/// signal and the Event stream that brings plans back.
pub(crate) fn watch(
    client: &Client,
    namespace: &str,
    synced: tokio::sync::mpsc::UnboundedSender<()>,
) -> (Signals, BoxStream<'static, Result<Event, watcher::Error>>) {
    let claims = Claims::default();
    spawn_claims_watch(client, claims.clone(), synced);
    let (events, warnings) = event_watch(client, namespace, "type=Warning");
    let (rebalances, recommended) =
        event_watch(client, namespace, &format!("reason={SPOT_REBALANCE}"));
    let signals = Signals {
        claims,
        events,
        rebalances,
        namespace: namespace.into(),
    };
    (
        signals,
        futures::stream::select(warnings, recommended).boxed(),
    )
}

/// What a NodeClaim says about itself.
#[derive(Debug, Clone, PartialEq)]
struct Claim {
    nodepool: String,
    /// The uid of the NodePool in its owner reference (Karpenter sets it); `None` for a
    /// NodeClaim known only by its name.
    nodepool_uid: Option<String>,
    instance_type: Option<String>,
    zone: Option<String>,
    capacity_type: Option<String>,
    deleted: Option<Instant>,
}

impl Claim {
    /// Whether this NodeClaim is one of `pool`'s: by its owner reference's uid, or (known only by
    /// its name) by the name.
    fn belongs_to(&self, pool: &OwnedPool) -> bool {
        self.nodepool == pool.name
            && self
                .nodepool_uid
                .as_deref()
                .is_none_or(|uid| uid == pool.uid)
    }
}

/// NodeClaims by uid, deleted ones kept for [`REMEMBER_DELETED`], when the cache first had a
/// full list, and the uids of Events that came before their NodeClaim.
#[derive(Clone, Default)]
struct Claims(
    Arc<Mutex<HashMap<String, Claim>>>,
    Arc<OnceLock<Timestamp>>,
    Arc<Mutex<std::collections::HashSet<String>>>,
);

impl Claims {
    /// Remembers that an Event about a NodeClaim the cache does not hold yet arrived (at most
    /// [`WAITING_LIMIT`]: Events about NodeClaims that never come are forgotten in bulk).
    fn wait_for(&self, e: &Event) {
        if let Some(uid) = e.involved_object.uid.clone() {
            let mut waiting = self.2.lock().expect("waiting lock");
            if waiting.len() >= WAITING_LIMIT {
                waiting.clear();
            }
            waiting.insert(uid);
        }
    }

    /// Whether an Event waited for the NodeClaim `uid` (forgotten once asked).
    fn awaited(&self, uid: &str) -> bool {
        self.2.lock().expect("waiting lock").remove(uid)
    }

    /// Whether the cache has had its first full list (until then no count can be trusted).
    fn synced(&self) -> bool {
        self.1.get().is_some()
    }

    fn get(&self, uid: &str) -> Option<Claim> {
        self.0.lock().expect("claims lock").get(uid).cloned()
    }

    /// The NodeClaim `e` is about: from the cache; else, for an Event the API server created
    /// before the cache's first full list, from the NodeClaim's name (rule 4).
    fn of_event(&self, e: &Event) -> Option<Claim> {
        self.get(e.involved_object.uid.as_deref()?).or_else(|| {
            let synced_at = *self.1.get()?;
            (created(e)? < synced_at).then(|| gone_claim(e))?
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
    /// yet, a requirement that allows a single value; and its NodePool's uid.
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
        let nodepool = label(LABEL_NODEPOOL).unwrap_or_default();
        let nodepool_uid = o
            .owner_references()
            .iter()
            .find(|r| r.kind == "NodePool" && r.name == nodepool)
            .map(|r| r.uid.clone());
        let claim = Claim {
            nodepool_uid: Some(nodepool_uid.unwrap_or_default()),
            nodepool,
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
        nodepool_uid: None,
        instance_type: None,
        zone: None,
        capacity_type: (e.reason.as_deref() == Some(SPOT_INTERRUPTED)).then(|| "spot".into()),
        deleted: Some(Instant::now()),
    })
}

/// Keeps `claims` up to date from a watch of every NodeClaim. When the first full list is in,
/// `synced` is sent once: from then on counts can be trusted, and Events from before are
/// attributable (rule 4). It is sent again when a NodeClaim arrives that an Event was waiting
/// for.
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
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    claims.apply(&o);
                    // An Event came before this NodeClaim: reconcile again now it can count.
                    if o.uid().is_some_and(|u| claims.awaited(&u)) {
                        let _ = synced.send(());
                    }
                }
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

/// Events on NodeClaims in `namespace` that match `only` (a field selector), as a cache read by
/// every reconcile, and the stream that brings their plans back.
fn event_watch(
    client: &Client,
    namespace: &str,
    only: &str,
) -> (
    Store<Event>,
    BoxStream<'static, Result<Event, watcher::Error>>,
) {
    let (store, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(
            Api::<Event>::namespaced(client.clone(), namespace),
            watcher::Config::default()
                .fields(&format!("involvedObject.kind=NodeClaim,{only}"))
                .any_semantic(),
        )
        .modify(|e: &mut Event| e.managed_fields_mut().clear()),
    )
    .default_backoff()
    .applied_objects()
    .boxed();
    (store, stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(yaml: &str) -> Event {
        serde_json::from_value(serde_saphyr::from_str::<serde_json::Value>(yaml).unwrap()).unwrap()
    }

    const KARPENTER: &str = "metadata: {name: web-abcde.1, namespace: default}
involvedObject: {apiVersion: karpenter.sh/v1, kind: NodeClaim, name: web-abcde, uid: u-1}
reason: SpotInterrupted
type: Warning
reportingComponent: karpenter
source: {component: karpenter}
";

    #[test]
    fn only_karpenters_events_in_its_namespace_count() {
        assert!(reported_by_karpenter(&event(KARPENTER), "default"));
        // The same Event from a tenant's namespace.
        let tenant = KARPENTER.replace("namespace: default", "namespace: tenant");
        assert!(!reported_by_karpenter(&event(&tenant), "default"));
        // Reported by someone else, whatever the source says.
        let other = KARPENTER.replace(
            "reportingComponent: karpenter",
            "reportingComponent: kubectl",
        );
        assert!(!reported_by_karpenter(&event(&other), "default"));
        // An older recorder that sets only the source.
        let source_only = KARPENTER.replace("reportingComponent: karpenter\n", "");
        assert!(reported_by_karpenter(&event(&source_only), "default"));
        // About something that is not Karpenter's NodeClaim.
        let pod = KARPENTER.replace(
            "apiVersion: karpenter.sh/v1, kind: NodeClaim",
            "apiVersion: v1, kind: Pod",
        );
        assert!(!reported_by_karpenter(&event(&pod), "default"));
        // A configured namespace.
        assert!(!reported_by_karpenter(&event(KARPENTER), "karpenter"));
    }

    #[test]
    fn a_nodeclaim_belongs_to_a_pool_by_its_owner_uid() {
        let claim = |uid: Option<&str>| Claim {
            nodepool: "web".into(),
            nodepool_uid: uid.map(String::from),
            instance_type: None,
            zone: None,
            capacity_type: None,
            deleted: None,
        };
        let pool = OwnedPool {
            name: "web",
            uid: "np-1",
        };
        assert!(claim(Some("np-1")).belongs_to(&pool));
        assert!(
            !claim(Some("np-other")).belongs_to(&pool),
            "a NodePool of that name re-created by someone else"
        );
        assert!(
            !claim(Some("")).belongs_to(&pool),
            "a NodeClaim with no NodePool owner"
        );
        assert!(
            claim(None).belongs_to(&pool),
            "known only by its name (rule 4)"
        );
    }
}
