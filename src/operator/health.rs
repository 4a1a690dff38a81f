//! Liveness from heartbeats: `/livez` fails only when the controller is really wedged; and the
//! shutdown signal that ends it all.
//!
//! - The market refresh loop beats on every step (at least every 30 s, and its refreshes run
//!   under a deadline): a beat older than its limit means the loop is stuck.
//! - Every reconcile registers while it runs: one running longer than its limit is stuck (all
//!   its API calls have timeouts, so a healthy reconcile always ends).
//! - A controller stream that ended while the process still runs is not alive either.
//!
//! Slow data is not a liveness problem: with an advisor URL that never answers, the refresh
//! times out, the plans say `MarketDataUnavailable`, and the pod stays up.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared heartbeat state.
#[derive(Debug)]
pub struct Health {
    refresh_beat: Mutex<Instant>,
    /// How old the refresh loop's beat may get.
    refresh_limit: Duration,
    reconciles: Mutex<BTreeMap<u64, Instant>>,
    next_id: AtomicU64,
    /// How long one reconcile may run.
    reconcile_limit: Duration,
    controller_ended: AtomicBool,
}

/// Why the controller is not alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wedged {
    RefreshLoop(Duration),
    Reconcile(Duration),
    ControllerEnded,
}

impl std::fmt::Display for Wedged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wedged::RefreshLoop(d) => write!(
                f,
                "the market refresh loop has not run for {}s",
                d.as_secs()
            ),
            Wedged::Reconcile(d) => write!(f, "a reconcile has been running for {}s", d.as_secs()),
            Wedged::ControllerEnded => f.write_str("the controller stream ended"),
        }
    }
}

impl Health {
    pub fn new(refresh_limit: Duration, reconcile_limit: Duration) -> Health {
        Health {
            refresh_beat: Mutex::new(Instant::now()),
            refresh_limit,
            reconciles: Mutex::default(),
            next_id: AtomicU64::new(0),
            reconcile_limit,
            controller_ended: AtomicBool::new(false),
        }
    }

    /// The refresh loop is making progress.
    pub fn refresh_beat(&self) {
        *self.refresh_beat.lock().expect("health lock") = Instant::now();
    }

    /// Registers a running reconcile until the guard drops.
    pub fn reconcile_started(&self) -> ReconcileGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.reconciles
            .lock()
            .expect("health lock")
            .insert(id, Instant::now());
        ReconcileGuard { health: self, id }
    }

    pub fn controller_ended(&self) {
        self.controller_ended.store(true, Ordering::Relaxed);
    }

    /// Ok while alive; the reason otherwise.
    pub fn check(&self, now: Instant) -> Result<(), Wedged> {
        if self.controller_ended.load(Ordering::Relaxed) {
            return Err(Wedged::ControllerEnded);
        }
        let beat = now.saturating_duration_since(*self.refresh_beat.lock().expect("health lock"));
        if beat > self.refresh_limit {
            return Err(Wedged::RefreshLoop(beat));
        }
        let oldest = self
            .reconciles
            .lock()
            .expect("health lock")
            .values()
            .min()
            .map(|t| now.saturating_duration_since(*t));
        if let Some(d) = oldest.filter(|d| *d > self.reconcile_limit) {
            return Err(Wedged::Reconcile(d));
        }
        Ok(())
    }
}

/// Resolves on SIGTERM (the kubelet stopping the pod) or an interrupt: the controller, the
/// endpoints and the lease all stop on it.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: stopping"),
    }
}

/// Unregisters a reconcile when dropped (finished, failed or cancelled).
pub struct ReconcileGuard<'a> {
    health: &'a Health,
    id: u64,
}

impl Drop for ReconcileGuard<'_> {
    fn drop(&mut self) {
        self.health
            .reconciles
            .lock()
            .expect("health lock")
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_until_a_loop_stops_beating_or_a_reconcile_hangs() {
        let h = Health::new(Duration::from_secs(60), Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(h.check(t0), Ok(()));
        assert!(matches!(
            h.check(t0 + Duration::from_secs(61)),
            Err(Wedged::RefreshLoop(_))
        ));
        h.refresh_beat();
        let later = Instant::now();
        {
            let _running = h.reconcile_started();
            assert_eq!(h.check(later + Duration::from_secs(10)), Ok(()));
            assert!(matches!(
                h.check(later + Duration::from_secs(45)),
                Err(Wedged::Reconcile(_))
            ));
        }
        assert_eq!(
            h.check(later + Duration::from_secs(45)),
            Ok(()),
            "finished reconciles do not count"
        );
        h.controller_ended();
        assert_eq!(h.check(later), Err(Wedged::ControllerEnded));
    }
}
