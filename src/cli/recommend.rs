//! `spotplan recommend`: spot-optimizer's flags and JSON keys, plus spotplan's own.

use super::output::{self, Format};
use super::{CliError, DataArgs, exit};
use crate::core::catalog::Catalog;
use crate::core::optimizer::{
    DEFAULT_MAX_TYPES, GpuRequirement, KARPENTER_SPOT_TO_SPOT_TYPES, PlanError, Request, optimize,
};
use crate::core::types::{Arch, Mode, gib_to_mib};
use clap::Args;
use std::io::IsTerminal;

fn positive_u32(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n < 1 => Err(format!("{n}: must be at least 1, e.g. --cores 64")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("{n} is too large")),
        Err(_) => Err(format!("'{s}' is not a whole number, e.g. --cores 64")),
    }
}

fn positive_gib(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => {
            Err("must be greater than 0: give the total memory in GiB, e.g. --memory 256".into())
        }
        Err(_) => Err(format!("'{s}' is not a number of GiB, e.g. --memory 256")),
    }
}

fn band(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(b) if b <= 4 => Ok(b),
        _ => Err(format!(
            "'{s}' is not a band: use 0 (<5%), 1 (5-10%), 2 (10-15%), 3 (15-20%) or 4 (>20%)"
        )),
    }
}

fn mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

fn arch(s: &str) -> Result<Arch, String> {
    s.parse()
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    /// Total vCPUs the workload needs.
    #[arg(long, value_name = "N", value_parser = positive_u32, allow_negative_numbers = true)]
    pub cores: u32,
    /// Total memory the workload needs, GiB.
    #[arg(long, value_name = "GiB", value_parser = positive_gib, allow_negative_numbers = true)]
    pub memory: f64,
    /// AWS region.
    #[arg(long, default_value = "us-west-2")]
    pub region: String,
    /// latency (few large nodes), balanced, or fault_tolerance (many small nodes).
    #[arg(long, default_value = "balanced", value_parser = mode)]
    pub mode: Mode,
    /// Only types with local SSD instance storage.
    #[arg(long)]
    pub ssd_only: bool,
    /// Include ARM (Graviton) types. Accepted for spot-optimizer scripts; ARM is included by default.
    #[arg(long, conflicts_with = "no_arm")]
    pub arm_instances: bool,
    /// Leave out ARM (Graviton) types.
    #[arg(long)]
    pub no_arm: bool,
    /// Architectures to allow (repeatable): amd64, arm64. Default both.
    #[arg(long = "arch", value_name = "ARCH", value_parser = arch, conflicts_with_all = ["no_arm", "arm_instances"])]
    pub architectures: Vec<Arch>,
    /// Only these instance families (e.g. m6i c7g); several may follow one flag.
    #[arg(long = "instance-family", value_name = "F", num_args = 1.., action = clap::ArgAction::Append)]
    pub families: Vec<String>,
    /// Leave out these instance families.
    #[arg(long = "exclude-family", value_name = "F", num_args = 1.., action = clap::ArgAction::Append)]
    pub exclude_families: Vec<String>,
    /// Only these instance types.
    #[arg(long = "instance-type", value_name = "T", num_args = 1.., action = clap::ArgAction::Append)]
    pub instance_types: Vec<String>,
    /// Leave out these instance types.
    #[arg(long = "exclude-type", value_name = "T", num_args = 1.., action = clap::ArgAction::Append)]
    pub exclude_types: Vec<String>,
    /// Only types this Amazon EMR release supports (6.10.0 or emr-6.10.0).
    #[arg(long, value_name = "V")]
    pub emr_version: Option<String>,
    /// Highest acceptable Spot Advisor interruption band, 0 (<5%) .. 4 (>20%). When set, types
    /// with no band are left out and ranking is by cost within the ceiling.
    #[arg(long, value_name = "B", value_parser = band)]
    pub max_interruption_band: Option<u8>,
    /// Fewest distinct types wanted (fewer is reported).
    #[arg(long, value_name = "N", default_value_t = KARPENTER_SPOT_TO_SPOT_TYPES)]
    pub min_types: usize,
    /// Most types to list.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_TYPES)]
    pub max_types: usize,
    /// GPUs per instance, at least.
    #[arg(long, value_name = "N", value_parser = positive_u32)]
    pub gpus: Option<u32>,
    /// GPU manufacturer (NVIDIA, AMD, ...), with --gpus.
    #[arg(long, value_name = "NAME", requires = "gpus")]
    pub gpu_manufacturer: Option<String>,
    /// Lowest generation (the 6 in m6i).
    #[arg(long, value_name = "N")]
    pub min_generation: Option<u8>,
    /// Highest generation.
    #[arg(long, value_name = "N")]
    pub max_generation: Option<u8>,
    /// Allow burstable (t*) types.
    #[arg(long)]
    pub allow_burstable: bool,
    /// Allow types AWS marks as previous generation.
    #[arg(long)]
    pub allow_previous_generation: bool,
    /// Allow GPU and other accelerator types without asking for GPUs.
    #[arg(long)]
    pub allow_accelerators: bool,
    /// Output: table, json or yaml. Default: table on a terminal, json otherwise (as spot-optimizer).
    #[arg(long, short = 'o', value_name = "FORMAT")]
    pub output: Option<Format>,
    #[command(flatten)]
    pub data: DataArgs,
}

impl RecommendArgs {
    pub fn request(&self) -> Request {
        let mut req = Request::new(self.cores, gib_to_mib(self.memory), self.region.trim());
        req.mode = self.mode;
        req.ssd_only = self.ssd_only;
        req.architectures = if self.no_arm {
            vec![Arch::Amd64]
        } else {
            self.architectures.clone()
        };
        req.families = self.families.clone();
        req.exclude_families = self.exclude_families.clone();
        req.instance_types = self.instance_types.clone();
        req.exclude_types = self.exclude_types.clone();
        req.emr_release = self.emr_version.clone();
        req.max_band = self.max_interruption_band;
        req.gpus = self.gpus.map(|n| GpuRequirement {
            min_count: n,
            manufacturer: self.gpu_manufacturer.clone(),
        });
        req.min_generation = self.min_generation;
        req.max_generation = self.max_generation;
        req.allow_burstable = self.allow_burstable;
        req.allow_previous_generation = self.allow_previous_generation;
        req.allow_accelerators = self.allow_accelerators;
        req.min_types = self.min_types;
        req.max_types = self.max_types.max(self.min_types);
        req
    }
}

pub async fn run(args: RecommendArgs) -> Result<(), CliError> {
    // Local files parse on the blocking pool while the catalog parses; a URL is fetched only
    // after the flags are known to be good.
    let (catalog, early) = if args.data.all_local() {
        let (catalog, loaded) = tokio::join!(
            tokio::task::spawn_blocking(Catalog::embedded),
            args.data.load()
        );
        let catalog = catalog.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        (catalog, Some(loaded))
    } else {
        (Catalog::embedded(), None)
    };
    let req = args.request();
    // A bad flag is reported ahead of any data error.
    if let Err(e) = optimize(
        &req,
        catalog,
        &crate::core::market::MarketData::empty(catalog),
    ) && !matches!(e, PlanError::NothingFits { .. })
    {
        return Err(plan_error(e));
    }
    let loaded = match early {
        Some(loaded) => loaded?,
        None => args.data.load().await?,
    };
    let market = loaded.join(catalog);
    let plan = optimize(&req, catalog, &market).map_err(plan_error)?;
    let format = args.output.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    output::print_plan(&plan, &market, catalog, format);
    Ok(())
}

fn plan_error(e: PlanError) -> CliError {
    match e.field() {
        Some(field) => CliError::usage(field.flag(), e),
        None => CliError {
            message: e.to_string(),
            code: exit::NOTHING_FITS,
        },
    }
}
