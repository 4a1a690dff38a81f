//! How a reconcile ends: a transient [`Error`] (retried with backoff), a permanent
//! [`NotReady`] (reported in status, see `spotplan_api::outcome`), and the [`Outcome`] label of
//! `spotplan_reconciles_total`.

use spotplan_api::outcome::NotReady;

/// Transient failures: the API server refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
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
pub(crate) enum Stop {
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

/// What a finished reconcile did, for the `outcome` label of `spotplan_reconciles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
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
