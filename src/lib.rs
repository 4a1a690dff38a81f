//! spotplan picks EC2 Spot instance types for a workload and writes the decision where capacity
//! is launched: Karpenter NodePools in a cluster, EC2 Fleet, Spot Fleet and Auto Scaling group
//! requests outside one.
//!
//! This crate is the shell around two pure crates, the core ([`spotplan_core`], re-exported as
//! [`core`]) and the SpotPlan API ([`spotplan_api`], re-exported as [`api`]):
//! - [`sources`]: where market data comes from (files, URLs, the disk cache, AWS APIs);
//! - [`cli`]: the `spotplan` command line, a drop-in for the Python `spot-optimizer` CLI;
//! - [`operator`]: the Kubernetes controller that reconciles SpotPlans into NodePools;
//! - [`launch`]: `render --apply`, a plan made into an EC2 Fleet, Spot Fleet or Auto Scaling
//!   group.

pub use spotplan_api as api;
pub use spotplan_core as core;

mod cli;
mod launch;
mod operator;
mod sources;

pub use cli::main;
pub use sources::{Loader, Source};
pub use spotplan_core::{Catalog, MarketData, MarketInputs, Plan, Request, optimize};

/// reqwest and kube are built without a default TLS crypto provider; both use ring. Installing
/// it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
