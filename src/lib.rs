//! spotplan picks EC2 Spot instance types for a workload and writes the decision where capacity
//! is launched (Karpenter NodePools today; EC2 Fleet, Spot Fleet and Auto Scaling groups later).
//!
//! The crate is split the way data flows:
//! - [`core`]: the pure core. The embedded instance catalog, market data (Spot Advisor bands and
//!   savings, prices) as validated values, the optimizer and the renderers. No I/O, no clocks,
//!   no Kubernetes or AWS clients: everything here is a function of its inputs.
//! - [`data`]: where market data comes from (files, URLs) and how it is cached on disk.
//! - [`cli`]: the `spotplan` command line, a drop-in for the Python `spot-optimizer` CLI.

pub mod cli;
pub mod core;
pub mod data;
pub mod operator;

pub use crate::core::catalog::Catalog;
pub use crate::core::market::MarketData;
pub use crate::core::optimizer::{Request, optimize};
pub use crate::core::plan::Plan;
