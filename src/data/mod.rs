//! Where market data comes from: files (plain or gzip) and URLs, with an on-disk cache for what
//! was fetched. The core's parsers validate; this module adds I/O, freshness and fallbacks.

pub mod load;

pub use load::{Loaded, Loader, MarketFile, Source};

/// The public AWS Spot Advisor feed.
pub const DEFAULT_ADVISOR_URL: &str =
    "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json";
