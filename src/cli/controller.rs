//! `spotplan controller`: flags (each also an environment variable, for the chart) to
//! [`crate::operator::Options`].

use super::CliError;
use super::args::{ChurnArgs, DataArgs};
use crate::operator::FileAge;
use clap::Args;
use spotplan_core::duration::parse_duration;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// How often market data is re-read; data older than twice (this + the refresh deadline)
    /// is stale.
    #[arg(long, env = "SPOTPLAN_REFRESH_INTERVAL", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub refresh_interval: Duration,
    /// How old a data file you named (--advisor-data, --prices as a path) may be, by its
    /// modification time, before its data is stale. Default: twice the refresh cycle, as for
    /// every source. `none` pins the files: a dated snapshot used on purpose, whose age is not
    /// judged (status says so).
    #[arg(long, env = "SPOTPLAN_FILE_MAX_AGE", value_name = "DURATION|none", value_parser = parse_file_age)]
    pub file_max_age: Option<FileAge>,
    #[command(flatten)]
    pub churn: ChurnArgs,
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
    /// With --aws: order each plan's zones and near-tied types by spot placement scores (one
    /// GetSpotPlacementScores per plan configuration, cached a day).
    #[arg(long, env = "SPOTPLAN_PLACEMENT_SCORES", action = clap::ArgAction::SetTrue, requires = "aws")]
    pub placement_scores: bool,
    /// The namespace Karpenter's Events about NodeClaims land in: client-go puts the Events of
    /// cluster-scoped objects in `default`. Only Events there, reported by Karpenter, about
    /// NodeClaims of the plan's own NodePools count as interruptions.
    #[arg(long, env = "SPOTPLAN_KARPENTER_EVENT_NAMESPACE", default_value = spotplan_api::karpenter::DEFAULT_EVENT_NAMESPACE)]
    pub karpenter_event_namespace: String,
    /// Risk pricing: `auto` writes Karpenter NodeOverlays that price each plan's ranking into
    /// Karpenter's choice where the cluster serves them (checked at start); `off` never writes
    /// them and deletes the plans' own. A plan turns it off for itself with
    /// spec.riskPricing: Disabled.
    #[arg(
        long,
        env = "SPOTPLAN_RISK_PRICING",
        value_enum,
        default_value = "auto"
    )]
    pub risk_pricing: crate::operator::RiskPricingMode,
    /// Log format: text or json.
    #[arg(long, env = "SPOTPLAN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log level or filter (e.g. info, spotplan=debug,kube=info).
    #[arg(long, env = "SPOTPLAN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

fn parse_file_age(s: &str) -> Result<FileAge, String> {
    if s == "none" {
        return Ok(FileAge::Pinned);
    }
    parse_duration(s)
        .map(FileAge::Limit)
        .map_err(|e| format!("{e}, or `none` to pin the files"))
}

fn init_logging(args: &ControllerArgs) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).map_err(|e| {
        CliError::usage(
            "--log-level",
            format!("'{}' is not a log filter: {e}", args.log_level),
        )
    })?;
    // Colour only on a terminal: a pod's log (and a file) gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    Ok(())
}

pub async fn run(args: ControllerArgs) -> Result<(), CliError> {
    init_logging(&args)?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let opts = crate::operator::Options {
        sources: args.data.sources_with(args.refresh_interval),
        placement_scores: args.placement_scores,
        refresh_interval: args.refresh_interval,
        file_age: args.file_max_age.unwrap_or_default(),
        // The files and every region's live sources load at once, each within its own
        // deadline (a fetch's, an AWS call's).
        refresh_deadline: args.data.fetch_timeout.max(args.data.aws_timeout)
            + Duration::from_secs(30),
        settings: args.churn.settings(),
        listen: args.listen,
        leader_elect: args.leader_elect,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        lease_ttl: args.lease_ttl,
        identity,
        concurrency: args.concurrency,
        karpenter_event_namespace: args.karpenter_event_namespace,
        risk_pricing: args.risk_pricing,
    };
    crate::operator::run(opts).await.map_err(|e| CliError {
        message: format!("{e:#}"),
        code: 1,
    })
}
