//! Flags shared by several commands, and the parsers that bound every number at the edge.

use super::CliError;
use crate::sources::aws::{AwsOptions, Timeouts};
use crate::sources::{AwsSetup, DEFAULT_ADVISOR_URL, LoadedMarket, Loader, MarketSources, Source};
use clap::Args;
use spotplan_core::duration::{Human, parse_duration};
use spotplan_core::limits;
use spotplan_core::market::SourceKind;
use spotplan_core::policy::churn;
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
    #[arg(long, value_name = "DURATION", env = "SPOTPLAN_CACHE_TTL", default_value = "1h", value_parser = spotplan_core::duration::parse_duration)]
    pub cache_ttl: Duration,
    /// Give up on a URL (all retries included) after this long.
    #[arg(long, value_name = "DURATION", env = "SPOTPLAN_FETCH_TIMEOUT", default_value = "60s", value_parser = spotplan_core::duration::parse_duration)]
    pub fetch_timeout: Duration,
    /// Live AWS data: spot prices per zone, this account's offerings per zone, new instance
    /// types and the region's own generation flags (EC2), on-demand prices (Price List). Uses the
    /// default credential chain and the standard AWS_ENDPOINT_URL* variables; without
    /// credentials, says so and uses the files.
    #[arg(long, env = "SPOTPLAN_AWS", action = clap::ArgAction::SetTrue)]
    pub aws: bool,
    /// With --aws, and for render --apply: give up on one AWS call (retries of throttling and
    /// 5xx included) after this long; one attempt gets a third of it.
    #[arg(long, value_name = "DURATION", env = "SPOTPLAN_AWS_TIMEOUT", default_value = "30s", value_parser = spotplan_core::duration::parse_duration)]
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
        let loaded = sources.load(regions, live, None).await.map_err(|e| {
            let hint = if e.kind == SourceKind::SpotAdvisor && self.advisor_data == DEFAULT_ADVISOR_URL {
                " (offline? pass --advisor-data PATH with a saved spot-advisor-data.json, or run once online: the copy is cached in --cache-dir)"
            } else {
                ""
            };
            CliError::data(flag_of(e.kind), format!("{e}{hint}"))
        })?;
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

/// The churn rule's knobs (`spotplan controller` and `spotplan backtest`): the defaults are the
/// core's own constants.
#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    /// Default shortest time between two data-driven narrowings of a plan's type list (a
    /// SpotPlan's spec.minNarrowInterval overrides it).
    #[arg(long, env = "SPOTPLAN_MIN_NARROW_INTERVAL", value_name = "DURATION", default_value_t = Human(churn::DEFAULT_MIN_INTERVAL))]
    pub min_narrow_interval: Human,
    /// How long a written type may stay over an interruption ceiling the user set
    /// (`maxInterruptionBand`) before it is removed: a band that moves back within this time
    /// costs no node replacement.
    #[arg(long, env = "SPOTPLAN_CONFIRM_OVER_CEILING", value_name = "DURATION", default_value_t = Human(churn::DEFAULT_CONFIRM))]
    pub confirm_over_ceiling: Human,
    /// How often at most a plan's list is narrowed to its mode's default band cap (types over
    /// it leave together, this long after the list was last written fresh or narrowed).
    #[arg(long, env = "SPOTPLAN_SETTLE_OVER_DEFAULT_CAP", value_name = "DURATION", default_value_t = Human(churn::DEFAULT_SETTLE))]
    pub settle_over_default_cap: Human,
}

impl ChurnArgs {
    /// What the build reads.
    pub fn settings(&self) -> spotplan_api::build::Settings {
        spotplan_api::build::Settings {
            min_narrow_interval: self.min_narrow_interval.0,
            confirm_over_ceiling: self.confirm_over_ceiling.0,
            settle_over_default_cap: self.settle_over_default_cap.0,
        }
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

/// Why a flag's value cannot be used: each parser's failures, told apart (clap prints them after
/// `invalid value '...' for '--flag'`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagError {
    #[error("{0}: must be at least 1, e.g. {1}")]
    BelowOne(i128, &'static str),
    #[error(
        "{0} is above the maximum of {1} (spotplan's bound; split larger workloads into several plans)"
    )]
    AboveBound(i128, u32),
    #[error("'{0}' is not a whole number, e.g. {1}")]
    NotWhole(String, &'static str),
    #[error(
        "{0} GiB is above the maximum of {1} GiB (spotplan's bound; split larger workloads into several plans)"
    )]
    MemoryAboveBound(f64, u32),
    #[error("must be greater than 0: give the total memory in GiB, e.g. --memory 256")]
    MemoryNotPositive,
    #[error("'{0}' is not a number of GiB, e.g. --memory 256")]
    NotGib(String),
    #[error(
        "'{0}' is not a generation: use {min} to {max} (the 6 in m6i)",
        min = limits::MIN_GENERATION,
        max = limits::MAX_GENERATION
    )]
    NotGeneration(String),
    #[error("'{0}' is not a band: use 0 (<5%), 1 (5-10%), 2 (10-15%), 3 (15-20%) or 4 (>20%)")]
    NotBand(String),
    #[error("{0} is above the maximum of {max} vCPUs", max = limits::MAX_VCPUS)]
    VcpusAboveBound(u32),
    #[error("'{0}' is not a whole number of vCPUs, e.g. 8")]
    NotVcpus(String),
    #[error("'{0}' is not a percentage: use 0 to 100")]
    NotPercentage(String),
    #[error("'{0}' is not an RFC 3339 time, e.g. 2027-01-01T00:00:00Z")]
    NotTime(String),
    #[error("{0} is in the past: a request that expired cannot launch")]
    InThePast(jiff::Timestamp),
    #[error("'{0}' is not N/WINDOW/CALM: use e.g. 3/1h/6h")]
    NotShift(String),
    #[error("'{0}' is not a count of interruptions (1 or more)")]
    NotInterruptions(String),
    #[error(transparent)]
    Duration(#[from] spotplan_core::duration::DurationError),
    #[error(transparent)]
    Unknown(#[from] spotplan_core::types::UnknownValue),
}

/// A whole number in `1..=max`, with an example flag in the message.
fn bounded_u32(s: &str, max: u32, example: &'static str) -> Result<u32, FlagError> {
    match s.trim().parse::<i128>() {
        Ok(n) if n < 1 => Err(FlagError::BelowOne(n, example)),
        Ok(n) if n > i128::from(max) => Err(FlagError::AboveBound(n, max)),
        Ok(n) => Ok(n as u32),
        Err(_) => Err(FlagError::NotWhole(s.into(), example)),
    }
}

/// `--cores`: 1..=[`limits::MAX_VCPUS`].
pub fn vcpus(s: &str) -> Result<u32, FlagError> {
    bounded_u32(s, limits::MAX_VCPUS, "--cores 64")
}

/// `--gpus`: 1..=[`limits::MAX_GPUS`].
pub fn gpus(s: &str) -> Result<u32, FlagError> {
    bounded_u32(s, limits::MAX_GPUS, "--gpus 1")
}

/// `--memory`: GiB, above 0 and at most [`limits::MAX_MEMORY_GIB`].
pub fn memory_gib(s: &str) -> Result<f64, FlagError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= f64::from(limits::MAX_MEMORY_GIB) => Ok(v),
        Ok(v) if v.is_finite() && v > 0.0 => {
            Err(FlagError::MemoryAboveBound(v, limits::MAX_MEMORY_GIB))
        }
        Ok(_) => Err(FlagError::MemoryNotPositive),
        Err(_) => Err(FlagError::NotGib(s.into())),
    }
}

/// `--min-types` / `--max-types`: 1..=[`limits::MAX_TYPES`].
pub fn type_count(s: &str) -> Result<usize, FlagError> {
    bounded_u32(s, limits::MAX_TYPES as u32, "--min-types 15").map(|n| n as usize)
}

/// A generation number, [`limits::MIN_GENERATION`]..=[`limits::MAX_GENERATION`].
pub fn generation(s: &str) -> Result<u8, FlagError> {
    match s.trim().parse::<u8>() {
        Ok(g) if (limits::MIN_GENERATION..=limits::MAX_GENERATION).contains(&g) => Ok(g),
        _ => Err(FlagError::NotGeneration(s.into())),
    }
}

/// An interruption band, 0..=4.
pub fn band(s: &str) -> Result<u8, FlagError> {
    match s.trim().parse::<u8>() {
        Ok(b) if b <= limits::MAX_BAND => Ok(b),
        _ => Err(FlagError::NotBand(s.into())),
    }
}

/// `--on-demand-base-cpu`: 0..=[`limits::MAX_VCPUS`].
pub fn on_demand_cpu(s: &str) -> Result<u32, FlagError> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= limits::MAX_VCPUS => Ok(n),
        Ok(n) => Err(FlagError::VcpusAboveBound(n)),
        Err(_) => Err(FlagError::NotVcpus(s.into())),
    }
}

/// A percentage, 0..=100.
pub fn percentage(s: &str) -> Result<u8, FlagError> {
    match s.trim().parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(FlagError::NotPercentage(s.into())),
    }
}

/// An RFC 3339 time ahead of now, normalised to whole seconds.
pub fn future_time(s: &str) -> Result<String, FlagError> {
    let t: jiff::Timestamp = s.trim().parse().map_err(|_| FlagError::NotTime(s.into()))?;
    if t <= jiff::Timestamp::now() {
        return Err(FlagError::InThePast(t));
    }
    Ok(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// A shift policy, N/WINDOW/CALM.
pub fn shift(s: &str) -> Result<spotplan_core::policy::shift::ShiftSpec, FlagError> {
    let parts: Vec<&str> = s.split('/').collect();
    let [n, window, calm] = parts[..] else {
        return Err(FlagError::NotShift(s.into()));
    };
    let interruptions: u32 = n
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| FlagError::NotInterruptions(n.into()))?;
    Ok(spotplan_core::policy::shift::ShiftSpec {
        interruptions,
        window: parse_duration(window)?,
        calm: parse_duration(calm)?,
    })
}
