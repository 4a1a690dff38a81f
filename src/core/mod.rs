//! The pure core: catalog, market data, optimizer and plan. Nothing here performs I/O.

pub mod catalog;
pub mod market;
pub mod optimizer;
pub mod plan;
pub mod render;
pub mod types;
