//! Renderers: a plan turned into what launches capacity. Pure functions that build documents;
//! applying them is the shell's job.
//!
//! - [`nodepool`]: Karpenter NodePool specs (what the operator writes).
//! - [`kwok`]: the instance-types file of Karpenter's kwok provider (tests and the demo).

pub mod kwok;
pub mod nodepool;

pub use kwok::kwok_instance_types;
pub use nodepool::*;
