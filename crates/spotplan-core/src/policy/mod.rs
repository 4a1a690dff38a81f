//! Policy: pure rules that decide what to change, and when, given what is written now.
//!
//! - [`churn`]: which instance types to write, given the written list and a fresh plan.
//! - [`backtest`]: a request replayed over market snapshots with the churn rule, measured.
//! - [`shift`]: the on-demand shift and per-type demotion from the plan's own interruptions.
//! - [`pricing`]: the plan's ranking and its nodes' reports as Karpenter price adjustments.
//! - [`shift_sim`]: the shift rule run against a simulated interruption stream along a replay.

pub mod backtest;
pub mod churn;
pub mod pricing;
pub mod shift;
pub mod shift_sim;

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// `t + d`, saturating at the end of time.
pub(crate) fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the start of time.
pub(crate) fn before(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN)
}
