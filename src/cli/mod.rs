//! The `spotplan` command line: `recommend` (a drop-in for spot-optimizer's CLI), `data show`,
//! and the operator's entry points.

mod output;
mod recommend;

use crate::core::catalog::Catalog;
use crate::core::market::{MarketData, PriceTable, SpotAdvisor};
use crate::data::{DEFAULT_ADVISOR_URL, Loaded, Loader, Source};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit codes, documented in the README.
pub mod exit {
    /// A flag is missing, malformed or names something unknown.
    pub const USAGE: u8 = 2;
    /// Market data could not be read or was refused.
    pub const DATA: u8 = 3;
    /// The request is valid but no instance type fits it.
    pub const NOTHING_FITS: u8 = 4;
}

#[derive(Parser, Debug)]
#[command(name = "spotplan", version, about = "Pick EC2 Spot instance types for a workload", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Recommend ranked, diversified instance types for a workload.
    Recommend(Box<recommend::RecommendArgs>),
    /// Run the operator: reconcile SpotPlans into Karpenter NodePools.
    Controller(Box<ControllerArgs>),
    /// Print the SpotPlan CustomResourceDefinition (YAML), e.g. `spotplan crd | kubectl apply --server-side -f -`.
    Crd,
    /// Render market data for other tools.
    Render {
        #[command(subcommand)]
        command: RenderCommand,
    },
    /// Inspect market data.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum RenderCommand {
    /// The instance-types file of Karpenter's kwok cloud provider: the whole catalog in a region
    /// with spot and on-demand prices per zone, to test plans against real Karpenter.
    KwokInstanceTypes {
        #[arg(long)]
        region: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Print what market data is loaded, from where, and how old it is.
    Show {
        #[command(flatten)]
        data: DataArgs,
        /// Also report coverage for this region.
        #[arg(long)]
        region: Option<String>,
    },
}

/// `spotplan controller` flags. Every flag also reads an environment variable (for the chart).
#[derive(Args, Debug)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// How often market data is re-read; data older than twice this is stale.
    #[arg(long, env = "SPOTPLAN_REFRESH_INTERVAL", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub refresh_interval: Duration,
    /// Default shortest time between two data-driven narrowings of a plan's type list.
    #[arg(long, env = "SPOTPLAN_MIN_NARROW_INTERVAL", value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub min_narrow_interval: Duration,
    /// Address for /metrics, /livez and /readyz.
    #[arg(long, env = "SPOTPLAN_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// Elect a leader on a Lease, so that of several replicas only one writes.
    #[arg(long, env = "SPOTPLAN_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "SPOTPLAN_LEASE_NAME",
        default_value = "spotplan-controller"
    )]
    pub lease_name: String,
    /// Namespace of the leader Lease (in a pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// How long a leader's Lease lasts without renewal.
    #[arg(long, env = "SPOTPLAN_LEASE_TTL", value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// This replica's identity in the Lease and in Events (in a pod: its name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// SpotPlans reconciled at once. Each reconcile makes at most a few API calls; more at once
    /// mostly queues in the API server (2 gave the lowest latency and the highest throughput in
    /// bench/scale.sh).
    #[arg(long, env = "SPOTPLAN_CONCURRENCY", default_value_t = 2)]
    pub concurrency: u16,
    /// Log format: text or json.
    #[arg(long, env = "SPOTPLAN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log level or filter (e.g. info, spotplan=debug,kube=info).
    #[arg(long, env = "SPOTPLAN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

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
    #[arg(long, value_name = "DURATION", env = "SPOTPLAN_CACHE_TTL", default_value = "1h", value_parser = parse_duration)]
    pub cache_ttl: Duration,
}

/// Parses `90s`, `15m`, `1h`, `1h30m`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|_| format!("'{s}' is not a duration: use e.g. 30s, 15m, 1h, 1h30m"))?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("'{s}': {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("'{s}' must be positive"))
}

impl DataArgs {
    pub fn loader(&self) -> Loader {
        Loader::new(
            self.cache_dir
                .clone()
                .or_else(crate::data::load::default_cache_dir),
            self.cache_ttl,
        )
    }

    /// Loads the advisor and (optional) prices and joins them with the catalog.
    pub async fn market(&self, catalog: &'static Catalog) -> Result<MarketData, CliError> {
        Ok(self.load().await?.join(catalog))
    }

    /// True when every source is a local file: loading them fetches nothing, so it may start
    /// before the flags are checked.
    pub fn all_local(&self) -> bool {
        let (advisor, prices) = self.sources();
        std::iter::once(advisor)
            .chain(prices)
            .all(|s| matches!(s, Source::File(_)))
    }

    /// The advisor source and the price source, if any, as the flags name them.
    fn sources(&self) -> (Source, Option<Source>) {
        (
            Source::parse(&self.advisor_data),
            self.prices.as_deref().map(Source::parse),
        )
    }

    /// Loads the advisor and (optional) prices; they do not need the catalog, so this can run
    /// while the catalog is parsed.
    pub async fn load(&self) -> Result<LoadedMarket, CliError> {
        let loader = self.loader();
        let (advisor_source, prices_source) = self.sources();
        let (advisor, prices) =
            tokio::join!(loader.load::<SpotAdvisor>(&advisor_source, None), async {
                match &prices_source {
                    Some(s) => Some(loader.load::<PriceTable>(s, None).await),
                    None => None,
                }
            });
        let advisor: Loaded<SpotAdvisor> =
            advisor.map_err(|e| CliError::data("--advisor-data", e))?;
        let prices: Option<Loaded<PriceTable>> = prices
            .transpose()
            .map_err(|e| CliError::data("--prices", e))?;
        for (flag, prov) in [
            ("--advisor-data", Some(&advisor.provenance)),
            ("--prices", prices.as_ref().map(|p| &p.provenance)),
        ] {
            if let Some(err) = prov.and_then(|p| p.refresh_error.as_ref()) {
                eprintln!("warning: {flag}: refresh failed, using the cached copy: {err}");
            }
        }
        Ok(LoadedMarket { advisor, prices })
    }
}

/// Market data read but not yet joined with the catalog.
pub struct LoadedMarket {
    advisor: Loaded<SpotAdvisor>,
    prices: Option<Loaded<PriceTable>>,
}

impl LoadedMarket {
    pub fn join(self, catalog: &'static Catalog) -> MarketData {
        let (prices, prices_source) = match self.prices {
            Some(p) => (Some(Arc::new(p.data)), Some(p.provenance)),
            None => (None, None),
        };
        MarketData::new(
            catalog,
            Some(Arc::new(self.advisor.data)),
            Some(self.advisor.provenance),
            prices,
            prices_source,
        )
    }
}

/// A CLI failure: one line for the user and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn usage(flag: &str, message: impl std::fmt::Display) -> CliError {
        CliError {
            message: format!("{flag}: {message}"),
            code: exit::USAGE,
        }
    }
    pub fn data(flag: &str, e: impl std::fmt::Display) -> CliError {
        CliError {
            message: format!("{flag}: {e}"),
            code: exit::DATA,
        }
    }
}

/// Runs the CLI with the process arguments; returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(exit::USAGE)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // One line: clap's first line names the flag and the problem.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(exit::USAGE);
        }
    };
    // The controller serves many reconciles at once; one-shot commands need one thread.
    let runtime = if matches!(cli.command, Command::Controller(_)) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Recommend(args) => recommend::run(*args).await,
        Command::Controller(args) => run_controller(*args).await,
        Command::Render {
            command: RenderCommand::KwokInstanceTypes { region, data },
        } => {
            let catalog = Catalog::embedded();
            let id = catalog.region(&region).ok_or_else(|| {
                CliError::usage(
                    "--region",
                    format!("the embedded catalog has no offerings in '{region}'"),
                )
            })?;
            let market = data.market(catalog).await?;
            let doc = crate::core::render::kwok_instance_types(catalog, &market, id);
            println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
            Ok(())
        }
        Command::Crd => {
            print!("{}", crate::operator::crd::crd_yaml());
            Ok(())
        }
        Command::Data {
            command: DataCommand::Show { data, region },
        } => output::data_show(&data, region.as_deref()).await,
    }
}

async fn run_controller(args: ControllerArgs) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).map_err(|e| {
        CliError::usage(
            "--log-level",
            format!("'{}' is not a log filter: {e}", args.log_level),
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let opts = crate::operator::Options {
        advisor: Source::parse(&args.data.advisor_data),
        prices: args.data.prices.as_deref().map(Source::parse),
        cache_dir: args
            .data
            .cache_dir
            .clone()
            .or_else(crate::data::load::default_cache_dir),
        refresh_interval: args.refresh_interval,
        min_narrow_interval: args.min_narrow_interval,
        listen: args.listen,
        leader_elect: args.leader_elect,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        lease_ttl: args.lease_ttl,
        identity,
        concurrency: args.concurrency,
    };
    crate::operator::run(opts).await.map_err(|e| CliError {
        message: format!("{e:#}"),
        code: 1,
    })
}
