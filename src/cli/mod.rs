//! The `spotplan` command line: `recommend` (a drop-in for spot-optimizer's CLI), `data show`,
//! `render`, and the operator's entry points.

pub mod args;
mod backtest;
mod controller;
mod manifest;
mod output;
pub mod recommend;
mod render;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes, documented in the README.
pub mod exit {
    /// A flag is missing, malformed or names something unknown.
    pub const USAGE: u8 = 2;
    /// Market data could not be read or was refused.
    pub const DATA: u8 = 3;
    /// The request is valid but no instance type fits it.
    pub const NOTHING_FITS: u8 = 4;
    /// `render --apply`: AWS refused or failed the call.
    pub const AWS: u8 = 5;
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
    /// Replay a request or a SpotPlan over a directory of Spot Advisor snapshots with the
    /// operator's churn rule: writes, narrowings, the bands the list really had, cost.
    Backtest(Box<backtest::BacktestArgs>),
    /// Run the operator: reconcile SpotPlans into Karpenter NodePools.
    Controller(Box<controller::ControllerArgs>),
    /// Print the SpotPlan CustomResourceDefinition (YAML), e.g. `spotplan crd | kubectl apply --server-side -f -`.
    Crd,
    /// Render a plan as the request that launches it: an EC2 Fleet, a Spot Fleet, an Auto
    /// Scaling group or Karpenter NodePools (and the kwok provider's instance-types file).
    Render(Box<render::RenderArgs>),
    /// Inspect market data.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Print what market data is loaded, from where, and how old it is.
    Show {
        #[command(flatten)]
        data: args::DataArgs,
        /// Also report coverage for this region.
        #[arg(long)]
        region: Option<String>,
    },
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
    if !matches!(cli.command, Command::Controller(_)) {
        die_quietly_on_a_closed_pipe();
    }
    // The controller serves many reconciles at once; one-shot commands need one thread (and a
    // blocking pool, where local files parse in parallel).
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// A one-shot command whose reader went away (`spotplan render ... | head -1`) ends as Unix tools
/// do, by SIGPIPE, quietly: Rust ignores SIGPIPE by default, and `print!` then panics on the
/// broken pipe. Sockets are unaffected (their writes never raise SIGPIPE on Linux); the
/// long-running controller keeps the default.
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: restores the default disposition of one signal, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Recommend(args) => recommend::run(*args).await,
        Command::Backtest(args) => backtest::run(*args).await,
        Command::Controller(args) => controller::run(*args).await,
        Command::Render(args) => render::run(*args).await,
        Command::Crd => {
            print!("{}", spotplan_api::crd_yaml());
            Ok(())
        }
        Command::Data {
            command: DataCommand::Show { data, region },
        } => output::data_show(&data, region.as_deref()).await,
    }
}
