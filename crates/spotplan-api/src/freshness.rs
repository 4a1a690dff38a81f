//! Whether the market data behind a plan can be trusted for data-driven changes: what the
//! shell's market cache reports, and the build reads (the `DataFresh` condition, the churn rule's
//! "stale data changes nothing", `status.dataSources`).

use spotplan_core::market::Provenance;

/// Whether the data can be trusted for data-driven changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub fresh: bool,
    /// CamelCase reason for the DataFresh condition.
    pub reason: &'static str,
    pub message: String,
    /// Every source's own state.
    pub sources: Vec<SourceState>,
}

impl Freshness {
    /// The first load has not finished yet (nothing loaded, nothing failed).
    pub fn loading(&self) -> bool {
        self.reason == "Loading"
    }
}

/// One source's state, for status, `data show` and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceState {
    pub provenance: Provenance,
    /// False when its last refresh failed or it is older than its limit.
    pub fresh: bool,
    /// Not available at all (no data in use), e.g. access denied: the field falls back.
    pub unavailable: bool,
    pub message: String,
}
