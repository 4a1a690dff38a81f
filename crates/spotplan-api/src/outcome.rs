//! Why a plan is or is not Ready.
//!
//! A [`NotReady`] outcome is permanent for the current spec and data (a bad spec, nothing fits,
//! a NodePool someone else owns): the plan says `Ready=False` with a reason and waits for a
//! change. Transient failures (the API server said no or was away) are the shell's: the
//! reconcile backs off and retries. Reasons are CamelCase: condition reasons, Event reasons and
//! metric labels alike.

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
    /// A NodePool the plan wrote was taken out of its control (its owner reference removed).
    NodePoolReleased,
    NodePoolRejected,
    /// Karpenter reports a NodePool the plan wrote not Ready: it cannot launch from it.
    NodePoolsNotReady,
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
            Reason::NodePoolReleased => "NodePoolReleased",
            Reason::NodePoolRejected => "NodePoolRejected",
            Reason::NodePoolsNotReady => "NodePoolsNotReady",
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
