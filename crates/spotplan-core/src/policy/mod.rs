//! Policy: pure rules that decide what to change, and when, given what is written now.
//!
//! - [`churn`]: which instance types to write, given the written list and a fresh plan.
//! - [`backtest`]: a request replayed over market snapshots with the churn rule, measured.
//! - [`shift`]: the on-demand shift and per-type demotion from the plan's own interruptions.

pub mod backtest;
pub mod churn;
pub mod shift;
