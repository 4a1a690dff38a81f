//! Flags shared by several commands, and the parsers that bound every number at the edge.

use super::CliError;
use crate::sources::aws::{AwsOptions, Timeouts};
use crate::sources::{AwsSetup, DEFAULT_ADVISOR_URL, LoadedMarket, Loader, MarketSources, Source};
use clap::Args;
use spotplan_core::limits;
use spotplan_core::market::SourceKind;
use std::path::PathBuf;
use std::time::Duration;

/// Where market data comes from (shared by every command that needs it).
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Spot Advisor data: a file (JSON, or gzip) or an http(s) URL.
    #[arg(long, value_name = "PATH|URL", env = "SPOTPLAN_ADVISOR_DATA", default_value = DEFAULT_ADVISOR_URL)]
    pub advisor_data: String,
    /// Price CSV: region,instance_type,on_demand_usd_per_hour,spot_usd_per_hour (file, gzip or URL).
    #[arg(long, value_name = "PATH|URL", env = "SPOTPLAN_PRICES")]
    pub prices: Option<String>,
    /// Where fetched data is cached (default: $XDG_CACHE_HOME/spotplan).
    #[arg(long, value_name = "DIR", env = "SPOTPLAN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Re-fetch a URL when its cached copy is older than this.
    #[arg(long, value_name = "DURATION", env = "SPOTPLAN_CACHE_TTL", default_value = "1h", value_parser = crate::duration::parse_duration)]
    pub cache_ttl: Duration,
    /// Give up on a URL (all retries included) after this long.
    #[arg(long, value_name = "DURATION", env = "SPOTPLAN_FETCH_TIMEOUT", default_value = "60s", value_parser = crate::duration::parse_duration)]
    pub fetch_timeout: Duration,
    /// Live AWS data: spot prices per zone, this account's offerings per zone, new instance
    /// types and the region's own generation flags (EC2), on-demand prices (Price List). Uses the
    /// default credential chain and the standard AWS_ENDPOINT_URL* variables; without
    /// credentials, says so and uses the files.
    #[arg(long, env = "SPOTPLAN_AWS", action = clap::ArgAction::SetTrue)]
    pub aws: bool,
    /// With --aws, and for render --apply: give up on one AWS call (retries of throttling and
    /// 5xx included) after this long; one attempt gets a third of it.
    #[arg(long, value_name = "DURATION", env = "SPOTPLAN_AWS_TIMEOUT", default_value = "30s", value_parser = crate::duration::parse_duration)]
    pub aws_timeout: Duration,
}

impl DataArgs {
    pub fn cache_dir(&self) -> Option<std::path::PathBuf> {
        self.cache_dir
            .clone()
            .or_else(crate::sources::file::default_cache_dir)
    }

    /// The sources these flags name. `spot_ttl` is how long live spot prices are reused.
    pub fn sources_with(&self, spot_ttl: Duration) -> MarketSources {
        MarketSources {
            advisor: Source::parse(&self.advisor_data),
            prices: self.prices.as_deref().map(Source::parse),
            loader: Loader::new(self.cache_dir(), self.cache_ttl).with_deadline(self.fetch_timeout),
            aws: self.aws.then(|| {
                let mut opts = AwsOptions::new(self.cache_dir(), spot_ttl);
                opts.timeouts = Timeouts::within(self.aws_timeout);
                AwsSetup::new(opts)
            }),
        }
    }

    pub fn sources(&self) -> MarketSources {
        self.sources_with(self.cache_ttl)
    }

    /// Loads every source (the files keeping `regions`, live data for `regions` with --aws),
    /// printing warnings and refresh failures on stderr.
    pub async fn load(&self, regions: Option<&[&str]>) -> Result<LoadedMarket, CliError> {
        let live: Vec<String> = regions
            .unwrap_or_default()
            .iter()
            .map(|r| r.to_string())
            .collect();
        self.load_with(&self.sources(), regions, &live).await
    }

    pub async fn load_with(
        &self,
        sources: &MarketSources,
        regions: Option<&[&str]>,
        live: &[String],
    ) -> Result<LoadedMarket, CliError> {
        let loaded = sources
            .load(regions, live, None)
            .await
            .map_err(|e| CliError::data(flag_of(e.kind), e))?;
        for w in loaded.warnings() {
            eprintln!("warning: {w}");
        }
        let provs = std::iter::once(&loaded.advisor.provenance)
            .chain(loaded.prices.as_ref().map(|p| &p.provenance));
        for p in provs {
            if let Some(err) = &p.refresh_error {
                eprintln!(
                    "warning: {}: refresh failed, using the cached copy: {err}",
                    flag_of(p.kind)
                );
            }
        }
        Ok(loaded)
    }
}

/// The flag that names a source.
pub fn flag_of(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::SpotAdvisor => "--advisor-data",
        SourceKind::PriceFile => "--prices",
        _ => "--aws",
    }
}

/// A whole number in `1..=max`, with an example flag in the message.
fn bounded_u32(s: &str, max: u32, example: &str) -> Result<u32, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n < 1 => Err(format!("{n}: must be at least 1, e.g. {example}")),
        Ok(n) if n > i128::from(max) => Err(format!(
            "{n} is above the maximum of {max} (spotplan's bound; split larger workloads into several plans)"
        )),
        Ok(n) => Ok(n as u32),
        Err(_) => Err(format!("'{s}' is not a whole number, e.g. {example}")),
    }
}

/// `--cores`: 1..=[`limits::MAX_VCPUS`].
pub fn vcpus(s: &str) -> Result<u32, String> {
    bounded_u32(s, limits::MAX_VCPUS, "--cores 64")
}

/// `--gpus`: 1..=[`limits::MAX_GPUS`].
pub fn gpus(s: &str) -> Result<u32, String> {
    bounded_u32(s, limits::MAX_GPUS, "--gpus 1")
}

/// `--memory`: GiB, above 0 and at most [`limits::MAX_MEMORY_GIB`].
pub fn memory_gib(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= f64::from(limits::MAX_MEMORY_GIB) => Ok(v),
        Ok(v) if v.is_finite() && v > 0.0 => Err(format!(
            "{v} GiB is above the maximum of {} GiB (spotplan's bound; split larger workloads into several plans)",
            limits::MAX_MEMORY_GIB
        )),
        Ok(_) => {
            Err("must be greater than 0: give the total memory in GiB, e.g. --memory 256".into())
        }
        Err(_) => Err(format!("'{s}' is not a number of GiB, e.g. --memory 256")),
    }
}

/// `--min-types` / `--max-types`: 1..=[`limits::MAX_TYPES`].
pub fn type_count(s: &str) -> Result<usize, String> {
    bounded_u32(s, limits::MAX_TYPES as u32, "--min-types 15").map(|n| n as usize)
}

/// A generation number, [`limits::MIN_GENERATION`]..=[`limits::MAX_GENERATION`].
pub fn generation(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(g) if (limits::MIN_GENERATION..=limits::MAX_GENERATION).contains(&g) => Ok(g),
        _ => Err(format!(
            "'{s}' is not a generation: use {} to {} (the 6 in m6i)",
            limits::MIN_GENERATION,
            limits::MAX_GENERATION
        )),
    }
}

/// An interruption band, 0..=4.
pub fn band(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(b) if b <= limits::MAX_BAND => Ok(b),
        _ => Err(format!(
            "'{s}' is not a band: use 0 (<5%), 1 (5-10%), 2 (10-15%), 3 (15-20%) or 4 (>20%)"
        )),
    }
}
