//! `spotplan recommend`: spot-optimizer's flags and JSON keys, plus spotplan's own.

use super::args::{self, DataArgs};
use super::output::{self, Format};
use super::{CliError, exit};
use clap::Args;
use spotplan_core::optimizer::{
    Field, GpuRequirement, PlanError, Request, RequestError, check_bounds, validate,
};
use spotplan_core::types::{Arch, Mode, gib_to_mib};
use spotplan_core::{Catalog, limits, optimize};
use std::io::IsTerminal;

fn mode(s: &str) -> Result<Mode, args::FlagError> {
    Ok(s.parse()?)
}

fn arch(s: &str) -> Result<Arch, args::FlagError> {
    Ok(s.parse()?)
}

/// The request flags, shared by `recommend`, `render` and `backtest`: the request itself, or
/// `-f` with a SpotPlan manifest that holds it.
#[derive(Args, Debug, Clone)]
pub struct RequestArgs {
    /// Total vCPUs the workload needs (1 to 65536). Required unless -f gives a SpotPlan.
    #[arg(long, value_name = "N", value_parser = args::vcpus, allow_negative_numbers = true)]
    pub cores: Option<u32>,
    /// Total memory the workload needs, GiB (up to 262144). Required unless -f gives a SpotPlan.
    #[arg(long, value_name = "GiB", value_parser = args::memory_gib, allow_negative_numbers = true)]
    pub memory: Option<f64>,
    /// A SpotPlan manifest (YAML or JSON) to plan instead of the request flags: what the
    /// operator would plan for it.
    #[arg(short = 'f', long = "file", value_name = "SPOTPLAN.yaml", conflicts_with_all = REQUEST_FLAGS)]
    pub file: Option<std::path::PathBuf>,
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
    #[arg(long, value_name = "B", value_parser = args::band)]
    pub max_interruption_band: Option<u8>,
    /// Fewest distinct types wanted, 1 to 50 (fewer is reported).
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MIN_TYPES, value_parser = args::type_count)]
    pub min_types: usize,
    /// Most types to list, --min-types to 50 (default 20, or --min-types if higher).
    #[arg(long, value_name = "N", value_parser = args::type_count)]
    pub max_types: Option<usize>,
    /// GPUs per instance, at least (1 to 64).
    #[arg(long, value_name = "N", value_parser = args::gpus)]
    pub gpus: Option<u32>,
    /// GPU manufacturer (NVIDIA, AMD, ...), with --gpus.
    #[arg(long, value_name = "NAME", requires = "gpus")]
    pub gpu_manufacturer: Option<String>,
    /// Lowest generation (the 6 in m6i).
    #[arg(long, value_name = "N", value_parser = args::generation)]
    pub min_generation: Option<u8>,
    /// Highest generation.
    #[arg(long, value_name = "N", value_parser = args::generation)]
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
}

/// Every request flag: none of them goes with `-f`.
const REQUEST_FLAGS: [&str; 23] = [
    "cores",
    "memory",
    "region",
    "mode",
    "ssd_only",
    "arm_instances",
    "no_arm",
    "architectures",
    "families",
    "exclude_families",
    "instance_types",
    "exclude_types",
    "emr_version",
    "max_interruption_band",
    "min_types",
    "max_types",
    "gpus",
    "gpu_manufacturer",
    "min_generation",
    "max_generation",
    "allow_burstable",
    "allow_previous_generation",
    "allow_accelerators",
];

/// A request and where it came from.
#[derive(Debug, Clone)]
pub struct Asked {
    pub request: Request,
    /// The manifest, with `-f`.
    pub manifest: Option<super::manifest::Manifest>,
}

impl Asked {
    /// Where a request field is spelled: the flag, or the manifest's field.
    fn field(&self, field: Field) -> String {
        match &self.manifest {
            None => field.flag().to_string(),
            Some(m) => format!("-f {}: {}", m.path, field.spec_path()),
        }
    }

    pub fn request_error(&self, e: RequestError) -> CliError {
        CliError::usage(&self.field(e.field()), e)
    }

    pub fn plan_error(&self, e: PlanError) -> CliError {
        match e {
            PlanError::Request(e) => self.request_error(e),
            e => CliError {
                message: e.to_string(),
                code: exit::NOTHING_FITS,
            },
        }
    }
}

impl RequestArgs {
    /// The request, from `-f` or from the flags.
    pub fn asked(&self) -> Result<Asked, CliError> {
        if let Some(path) = &self.file {
            let manifest = super::manifest::read(path)?;
            return Ok(Asked {
                request: manifest.spec.request.clone(),
                manifest: Some(manifest),
            });
        }
        let missing = |flag: &str, what: &str| {
            CliError::usage(flag, format!("is required: {what} (or -f with a SpotPlan)"))
        };
        let cores = self.cores.ok_or_else(|| {
            missing(
                "--cores",
                "the total vCPUs the workload needs, e.g. --cores 64",
            )
        })?;
        let memory = self.memory.ok_or_else(|| {
            missing(
                "--memory",
                "the total memory the workload needs in GiB, e.g. --memory 256",
            )
        })?;
        Ok(Asked {
            request: self.request(cores, memory),
            manifest: None,
        })
    }

    /// The optimizer request. Out-of-range values were refused by the parsers; an explicit
    /// `--max-types` below `--min-types` is refused by validation, never raised silently.
    fn request(&self, cores: u32, memory: f64) -> Request {
        let mut req = Request::new(cores, gib_to_mib(memory), self.region.trim());
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
        req.max_types = self
            .max_types
            .unwrap_or(limits::DEFAULT_MAX_TYPES.max(self.min_types));
        req
    }
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Output: table, json or yaml. Default: table on a terminal, json otherwise (as spot-optimizer).
    #[arg(long, short = 'o', value_name = "FORMAT")]
    pub output: Option<Format>,
    /// With --aws: ask EC2 for spot placement scores per zone for the plan's top types and size
    /// (cached a day per request; new configurations are limited per day), to order zones and
    /// break near-ties.
    #[arg(long, requires = "aws")]
    pub placement_scores: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

pub async fn run(args: RecommendArgs) -> Result<(), CliError> {
    let asked = args.request.asked()?;
    let Decided {
        mut plan,
        market,
        sources,
    } = decide(&asked, &args.data).await?;
    if args.placement_scores
        && let Err(why) = sources.placement(&mut plan).await
    {
        eprintln!("warning: --placement-scores: {why}");
    }
    let format = args.output.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    output::print_plan(&plan, &market, format);
    Ok(())
}

/// A plan and the market it was made from.
pub struct Decided {
    pub plan: spotplan_core::Plan,
    pub market: spotplan_core::MarketData,
    pub sources: crate::sources::MarketSources,
}

/// Checks the request, loads market data for its region, and plans.
pub async fn decide(asked: &Asked, data: &DataArgs) -> Result<Decided, CliError> {
    let req = &asked.request;
    let region = [req.region.as_str()];
    let sources = data.sources();
    // Local files load while the request is checked; a URL or AWS is called only once it is
    // good.
    let early = sources.all_local().then(|| {
        tokio::spawn({
            let data = data.clone();
            let region = req.region.clone();
            async move { data.load(Some(&[region.as_str()])).await }
        })
    });
    // A bad request is reported ahead of any data error. With live data, names (regions, types,
    // families) are checked against the live catalog instead: AWS may know what the embedded
    // catalog does not.
    if data.aws {
        check_bounds(req).map_err(|e| asked.request_error(e))?;
    } else {
        validate(req, Catalog::embedded()).map_err(|e| asked.request_error(e))?;
    }
    let loaded = match early {
        Some(task) => task
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?,
        None => {
            data.load_with(&sources, Some(&region), std::slice::from_ref(&req.region))
                .await?
        }
    };
    let market = loaded.join();
    let plan = optimize(req, &market).map_err(|e| asked.plan_error(e))?;
    Ok(Decided {
        plan,
        market,
        sources,
    })
}
