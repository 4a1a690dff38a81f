//! How a reconcile ends when it does not apply a plan.
//!
//! Two kinds, kept apart: a [`NotReady`] outcome is permanent for the current spec and data (a
//! bad spec, nothing fits, a NodePool someone else owns): the plan says `Ready=False` with a
//! reason and waits for a change. An [`Error`] is transient (the API server said no or was
//! away): the reconcile backs off and retries. Reasons and error categories share one casing
//! (CamelCase): they are condition reasons, Event reasons and metric labels alike.

use spotplan_core::optimizer::PlanError;
use std::time::Duration;

/// Why a plan is or is not Ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    PlanApplied,
    InvalidSpec,
    /// A request error from the optimizer (the request's own reason, e.g. `UnknownRegion`).
    Request(&'static str),
    NothingFits,
    NodePoolConflict,
    NodePoolRejected,
    MarketDataUnavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PlanApplied => "PlanApplied",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::Request(r) => r,
            Reason::NothingFits => "NothingFits",
            Reason::NodePoolConflict => "NodePoolConflict",
            Reason::NodePoolRejected => "NodePoolRejected",
            Reason::MarketDataUnavailable => "MarketDataUnavailable",
        }
    }
}

/// When to look at a plan again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// When the SpotPlan, its NodePools or the market data change.
    OnChange,
    After(Duration),
}

/// A permanent outcome: `Ready=False` with this reason and message.
#[derive(Debug, Clone, PartialEq)]
pub struct NotReady {
    pub reason: Reason,
    pub message: String,
    pub retry: Retry,
}

impl NotReady {
    pub fn new(reason: Reason, message: impl Into<String>) -> NotReady {
        NotReady {
            reason,
            message: message.into(),
            retry: Retry::OnChange,
        }
    }

    /// A planning failure, with the spec field at fault named first.
    pub fn from_plan_error(e: &PlanError) -> NotReady {
        let message = match e.field() {
            Some(f) => format!("{}: {e}", f.spec_path()),
            None => e.to_string(),
        };
        let reason = match e {
            PlanError::NothingFits { .. } => Reason::NothingFits,
            PlanError::Request(r) => Reason::Request(r.reason()),
        };
        NotReady::new(reason, message)
    }
}

/// Transient failures: the API server refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// A short fixed category (CamelCase), for metrics labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "ApiConflict",
            Error::Kube(kube::Error::Api(e)) if e.code >= 500 => "ApiServerError",
            Error::Kube(kube::Error::Api(_)) => "ApiRejected",
            Error::Kube(_) => "ApiUnreachable",
        }
    }
}

/// Why a reconcile step stopped: a permanent outcome to report, or a transient error.
#[derive(Debug)]
pub enum Stop {
    NotReady(NotReady),
    Transient(Error),
}

impl From<NotReady> for Stop {
    fn from(n: NotReady) -> Stop {
        Stop::NotReady(n)
    }
}

impl From<kube::Error> for Stop {
    fn from(e: kube::Error) -> Stop {
        Stop::Transient(Error::Kube(e))
    }
}

impl From<PlanError> for Stop {
    fn from(e: PlanError) -> Stop {
        Stop::NotReady(NotReady::from_plan_error(&e))
    }
}

/// What a finished reconcile did, for the `outcome` label of `spotplan_reconciles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Something was written (a NodePool, the status).
    Applied,
    /// The plan was checked and nothing needed writing.
    Unchanged,
    /// Ready=False was reported (or stayed).
    NotReady,
    /// Not reconciled now: not the leader, caches not synced, or the first data still loading.
    Deferred,
    /// A transient error; retried with backoff.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Applied,
        Outcome::Unchanged,
        Outcome::NotReady,
        Outcome::Deferred,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "Applied",
            Outcome::Unchanged => "Unchanged",
            Outcome::NotReady => "NotReady",
            Outcome::Deferred => "Deferred",
            Outcome::Failed => "Failed",
        }
    }
}
