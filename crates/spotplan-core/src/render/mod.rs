//! Renderers: a plan turned into what launches capacity. Pure functions that build documents;
//! applying them is the shell's job.
//!
//! - [`nodepool`]: Karpenter NodePool specs (what the operator writes).
//! - [`overlay`]: Karpenter NodeOverlays that price a plan's ranking into Karpenter's choice.
//! - [`kwok`]: the instance-types file of Karpenter's kwok provider (tests and the demo).
//! - [`fleet`]: EC2 Fleet, Spot Fleet and Auto Scaling group requests (outside Kubernetes).

pub mod fleet;
pub mod kwok;
pub mod nodepool;
pub mod overlay;

/// FNV-1a: a hash that is the same on every machine and release (names and client tokens
/// derived from it must not change between versions).
pub(crate) fn stable_hash(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

pub use kwok::kwok_instance_types;
pub use nodepool::*;
