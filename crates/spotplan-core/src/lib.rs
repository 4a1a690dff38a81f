//! spotplan's pure core: the instance catalog, the market model, the optimizer, the plan, the
//! churn and capacity policy, and the renderers.
//!
//! Nothing here performs I/O or reads a clock, and the crate depends on no Kubernetes, async
//! runtime, HTTP or AWS crate: the compiler keeps it that way (see Cargo.toml, and the test in
//! the `spotplan` crate that checks this crate's dependency tree). Everything is a function of
//! its inputs; the `spotplan` crate (data sources, CLI, operator) is the shell around it.

pub mod catalog;
pub mod duration;
pub mod limits;
pub mod market;
pub mod naming;
pub mod optimizer;
pub mod plan;
pub mod policy;
pub mod render;
pub mod types;

pub use catalog::Catalog;
pub use market::{MarketData, MarketInputs};
pub use optimizer::{Request, optimize};
pub use plan::Plan;
