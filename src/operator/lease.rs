//! Leader election on a `coordination.k8s.io/v1` Lease: every replica watches and plans, only the
//! holder of the Lease writes. No crate that does this supports kube 5 yet (kube-leader-election
//! and kube-lease-manager pin kube 4), so this is the small, standard algorithm by hand:
//! optimistic concurrency on the Lease's resourceVersion, a holder that renews every
//! `ttl / 3`, and a leader that stops writing as soon as its own lease could have expired.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The lease loop gives up after this many lease lifetimes without a successful request (5
/// minutes with the default 15 s), and the controller exits.
pub(crate) const GIVE_UP_AFTER_TTLS: u32 = 20;

/// Shared view of leadership. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Leadership {
    inner: Arc<Mutex<Option<Instant>>>,
    always: bool,
    /// Bumped each time this replica takes the lease: what it remembered from an earlier term
    /// may have been overwritten by another leader since.
    term: Arc<std::sync::atomic::AtomicU64>,
}

impl Leadership {
    /// A single replica without election: always the leader.
    pub fn always() -> Leadership {
        Leadership {
            inner: Arc::default(),
            always: true,
            term: Arc::default(),
        }
    }

    fn elected() -> Leadership {
        Leadership {
            inner: Arc::default(),
            always: false,
            term: Arc::default(),
        }
    }

    /// True while this replica holds a lease that cannot have expired yet.
    pub fn is_leader(&self) -> bool {
        self.always
            || self
                .inner
                .lock()
                .expect("lease lock")
                .is_some_and(|until| Instant::now() < until)
    }

    /// The current term of leadership of this replica.
    pub fn term(&self) -> u64 {
        self.term.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn hold_until(&self, until: Option<Instant>) {
        *self.inner.lock().expect("lease lock") = until;
    }
}

/// Which Lease, held by whom, for how long.
pub(crate) struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub ttl: Duration,
}

/// Leadership as asked: elected on the Lease `cfg` names, or (`None`) always the leader. Each
/// time this replica takes the lease, `became_leader` requeues every plan.
pub(crate) fn elect(
    client: &Client,
    cfg: Option<LeaseConfig>,
    became_leader: mpsc::UnboundedSender<()>,
    metrics: std::sync::Arc<super::metrics::Metrics>,
) -> (
    Leadership,
    Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    Option<Releaser>,
) {
    let Some(cfg) = cfg else {
        metrics.leader.set(1);
        return (Leadership::always(), None, None);
    };
    let (l, task, r) = start(client.clone(), cfg, became_leader, move |leader| {
        metrics.leader.set(i64::from(leader))
    });
    (l, Some(task), Some(r))
}

/// Runs `work` until it ends; with a lease loop, stops with an error if that loop ends first:
/// never keep running without it, another replica may lead.
pub(crate) async fn run_while_elected(
    work: impl std::future::Future<Output = ()>,
    lease_task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let Some(task) = lease_task else {
        work.await;
        return Ok(());
    };
    tokio::select! {
        _ = work => Ok(()),
        r = task => {
            let e = match r {
                Ok(Err(e)) => e,
                Ok(Ok(())) => anyhow::anyhow!("lease loop ended"),
                Err(e) => anyhow::anyhow!(e),
            };
            Err(anyhow::anyhow!("leader election stopped: {e}"))
        }
    }
}

/// Starts the election loop. `became_leader` gets a message each time this replica takes the
/// lease. The returned task ends only with an error (the caller exits on it).
pub(crate) fn start(
    client: Client,
    cfg: LeaseConfig,
    became_leader: mpsc::UnboundedSender<()>,
    on_change: impl Fn(bool) + Send + 'static,
) -> (
    Leadership,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    Releaser,
) {
    let leadership = Leadership::elected();
    let l = leadership.clone();
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let releaser = Releaser {
        api: api.clone(),
        name: cfg.name.clone(),
        identity: cfg.identity.clone(),
        leadership: leadership.clone(),
    };
    let task = tokio::spawn(async move {
        let mut was_leader = false;
        let mut failures = 0u32;
        let mut last_answer = Instant::now();
        loop {
            let started = Instant::now();
            match try_acquire_or_renew(&api, &cfg).await {
                Ok(held) => {
                    failures = 0;
                    last_answer = Instant::now();
                    // Count the lease from before the request: never believe it lasts longer
                    // than the API server thinks.
                    l.hold_until(held.then(|| started + cfg.ttl * 2 / 3));
                    if held && !was_leader {
                        l.term.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
                        let _ = became_leader.send(());
                    } else if !held && was_leader {
                        tracing::warn!(identity = %cfg.identity, "lost the lease");
                    }
                    if held != was_leader {
                        on_change(held);
                    }
                    was_leader = held;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "lease request failed");
                    if !l.is_leader() && was_leader {
                        was_leader = false;
                        on_change(false);
                    }
                    // Keep trying while the API server is away or refuses; a controller that
                    // cannot reach it cannot write either. Give up (and exit, so the pod is
                    // restarted and says why) once no lease request has succeeded for
                    // GIVE_UP_AFTER_TTLS lease lifetimes.
                    let silent = last_answer.elapsed();
                    if silent > cfg.ttl * GIVE_UP_AFTER_TTLS {
                        anyhow::bail!(
                            "lease: no lease request succeeded for {}s ({failures} attempts, {GIVE_UP_AFTER_TTLS} x --lease-ttl), last error: {e}",
                            silent.as_secs()
                        );
                    }
                }
            }
            tokio::time::sleep(cfg.ttl / 3).await;
        }
    });
    (leadership, task, releaser)
}

/// Hands the lease back on shutdown so another replica takes over at once.
pub(crate) struct Releaser {
    api: Api<Lease>,
    name: String,
    identity: String,
    leadership: Leadership,
}

impl Releaser {
    pub async fn release(&self) {
        if !self.leadership.is_leader() {
            return;
        }
        self.leadership.hold_until(None);
        if let Ok(mut lease) = self.api.get(&self.name).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }
}

/// One round: create, renew, or take over an expired lease. True when we hold it afterwards.
async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let ttl_secs = i32::try_from(cfg.ttl.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(ttl_secs),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let ours = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(t), Some(d)) => {
            now.0.duration_since(t.0) > jiff::SignedDuration::from_secs(i64::from(d))
        }
        _ => true,
    };
    if !ours && !expired {
        return Ok(false);
    }
    if !ours {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(ttl_secs);
    // replace() carries the resourceVersion we read: if another replica wrote in between, the
    // API server answers 409 and we are not the leader this round.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
