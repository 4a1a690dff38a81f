//! The SpotPlan API: what a user writes, what the controller must make of it, and nothing that
//! talks to a cluster.
//!
//! - [`crd`]: the `spotplan.dev/v1alpha1` types (the CRD is generated from them);
//! - [`validate`]: a spec parsed once into what it asks for, or an error naming the field;
//! - [`build`]: from what is there (the plan, its live NodePools, the market data, the
//!   interruption signal) to what should be (NodePools, deletions, status, Events);
//! - [`names`], [`karpenter`]: every name spotplan and Karpenter write, in one place.
//!
//! Like the core, it is pure: no client, runtime, clock or I/O (the `spotplan` crate's
//! architecture test checks its dependency tree). The operator's reconcile and the CLI's
//! `render --format nodepool` and `-f` call the same functions.

pub mod build;
pub mod crd;
pub mod freshness;
pub mod karpenter;
pub mod names;
pub mod outcome;
pub mod validate;

pub use crd::{SpotPlan, SpotPlanSpec, SpotPlanStatus, crd_yaml};
pub use validate::{PlanSpec, SpecError};
