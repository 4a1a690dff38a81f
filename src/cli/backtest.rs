//! `spotplan backtest`: a request (flags or `-f`) replayed over a directory of Spot Advisor
//! snapshots with the operator's churn rule; a table, JSON, and an SVG chart.

mod chart;
mod peer;
mod shift;

use super::CliError;
use super::args::ChurnArgs;
use super::recommend::RequestArgs;
use clap::{Args, ValueEnum};
use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;
use spotplan_core::market::{MarketInputs, PriceTable, SpotAdvisor};
use spotplan_core::optimizer::validate;
use spotplan_core::policy::backtest::{self, PeerReport, Report, Snapshot, Trigger};
use spotplan_core::policy::churn::Tuning;
use spotplan_core::{Catalog, MarketData};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct BacktestArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// A directory of Spot Advisor snapshots, each named with its date
    /// (spot-advisor-data_2022-06-26.json, plain or .gz).
    #[arg(long, value_name = "DIR")]
    pub history: PathBuf,
    /// Price CSV (region,instance_type,on_demand_usd_per_hour,spot_usd_per_hour), held constant
    /// over the replay; without it, cost is not measured.
    #[arg(long, value_name = "PATH", env = "SPOTPLAN_PRICES")]
    pub prices: Option<PathBuf>,
    /// First snapshot date to use (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub from: Option<Date>,
    /// Last snapshot date to use (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub to: Option<Date>,
    /// The controller's churn flags (-f uses the manifest's spec.minNarrowInterval when it
    /// sets one).
    #[command(flatten)]
    pub churn: ChurnArgs,
    /// table or json.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,
    /// Also write an SVG chart of the plan over time here.
    #[arg(long, value_name = "FILE.svg")]
    pub svg: Option<PathBuf>,
    /// Replay without risk pricing (the operator on a cluster without NodeOverlays): types over
    /// the mode's default cap then leave in a narrowing, and Karpenter prefers the cheapest raw
    /// price. By default the replay prices risk as the operator does with NodeOverlays.
    #[arg(long)]
    pub no_risk_pricing: bool,
    /// spot-optimizer's CLI (the `spot-optimizer` executable): its pick at each snapshot, side
    /// by side.
    #[arg(long, value_name = "PATH")]
    pub peer: Option<PathBuf>,
    #[command(flatten)]
    pub shift: shift::ShiftArgs,
}

/// What `-o json` prints.
#[derive(Serialize)]
struct Printed<'a> {
    request: String,
    #[serde(flatten)]
    report: &'a Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<&'a PeerReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shift_simulation: Option<&'a shift::Simulated>,
    #[serde(skip_serializing_if = "Option::is_none")]
    learning_simulation: Option<&'a shift::Learning>,
}

pub async fn run(args: BacktestArgs) -> Result<(), CliError> {
    let asked = args.request.asked()?;
    let req = asked.request.clone();
    validate(&req, Catalog::embedded()).map_err(|e| asked.request_error(e))?;
    let files = snapshot_files(&args.history, args.from, args.to)?;
    let prices = args.prices.as_deref().map(read_prices).transpose()?;
    let priced = prices.is_some();
    let snapshots = load(&files, prices, &req.region)?;
    let settings = Tuning {
        min_interval: asked
            .manifest
            .as_ref()
            .filter(|m| m.raw.min_narrow_interval.is_some())
            .map_or(args.churn.min_narrow_interval.0, |m| {
                m.spec.min_narrow_interval
            }),
        confirm: args.churn.confirm_over_ceiling.0,
        settle: args.churn.settle_over_default_cap.0,
        cap: req.max_types.min(spotplan_core::limits::MAX_WRITTEN_TYPES),
        priced: !args.no_risk_pricing,
    };
    let report = backtest::replay(&req, &snapshots, settings).map_err(|e| asked.plan_error(e))?;
    let peer = match &args.peer {
        Some(exe) => {
            let picks = peer::picks(exe, &req, &files).await?;
            Some(backtest::judge_peer(&req, &snapshots, &picks))
        }
        None => None,
    };
    let simulated = args.shift.run(&req, &snapshots, &report, priced)?;
    let learning = args.shift.run_learning(&req, &snapshots, &report, priced)?;
    let title = describe(&req);
    if let Some(path) = &args.svg {
        chart::write(path, &title, &report, peer.as_ref()).map_err(|e| {
            CliError::usage("--svg", format!("cannot write {}: {e}", path.display()))
        })?;
    }
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&Printed {
                request: title,
                report: &report,
                peer: peer.as_ref(),
                shift_simulation: simulated.as_ref(),
                learning_simulation: learning.as_ref(),
            })
            .expect("JSON")
        ),
        Output::Table => {
            print_table(&title, &report, peer.as_ref(), req.max_band.is_some());
            if let Some(s) = &simulated {
                shift::print(s);
            }
            if let Some(l) = &learning {
                shift::print_learning(l);
            }
        }
    }
    Ok(())
}

fn describe(req: &spotplan_core::Request) -> String {
    format!(
        "{} vCPU / {} GiB in {}, {}{}",
        req.vcpus,
        req.memory_gib(),
        req.region,
        req.mode,
        req.max_band
            .map_or(String::new(), |b| format!(", max band {b}"))
    )
}

/// The dated snapshot files in `dir`, oldest first, within `from..=to`.
fn snapshot_files(
    dir: &Path,
    from: Option<Date>,
    to: Option<Date>,
) -> Result<Vec<(Date, PathBuf)>, CliError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::usage("--history", format!("cannot read {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(date) = date_in(&name)
            && from.is_none_or(|f| date >= f)
            && to.is_none_or(|t| date <= t)
        {
            files.push((date, entry.path()));
        }
    }
    files.sort();
    if files.len() < 2 {
        return Err(CliError::usage(
            "--history",
            format!(
                "{} holds {} dated snapshot(s) in range; a backtest needs at least 2 (files named like spot-advisor-data_2022-06-26.json.gz)",
                dir.display(),
                files.len()
            ),
        ));
    }
    Ok(files)
}

/// The first YYYY-MM-DD in a file name.
fn date_in(name: &str) -> Option<Date> {
    (0..name.len().saturating_sub(9))
        .filter(|i| name.is_char_boundary(*i) && name.is_char_boundary(i + 10))
        .find_map(|i| name[i..i + 10].parse::<Date>().ok())
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::data(flag, format!("cannot read {}: {e}", path.display())))?;
    crate::sources::file::maybe_gunzip(bytes, &path.display().to_string())
        .map_err(|e| CliError::data(flag, e))
}

fn read_prices(path: &Path) -> Result<PriceTable, CliError> {
    PriceTable::parse(&read(path, "--prices")?, &path.display().to_string())
        .map_err(|e| CliError::data("--prices", e))
}

/// One market per snapshot: its advisor and the prices, over the embedded catalog.
fn load(
    files: &[(Date, PathBuf)],
    prices: Option<PriceTable>,
    region: &str,
) -> Result<Vec<Snapshot>, CliError> {
    let prices = prices.map(Arc::new);
    let catalog = Arc::new(Catalog::embedded().clone());
    files
        .iter()
        .map(|(date, path)| {
            let advisor = SpotAdvisor::parse_regions(
                &read(path, "--history")?,
                &path.display().to_string(),
                Some(&[region]),
            )
            .map_err(|e| CliError::data("--history", e))?;
            let at: Timestamp = date
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map_err(|e| CliError::data("--history", e))?
                .timestamp();
            Ok(Snapshot {
                at,
                market: MarketData::new(
                    catalog.clone(),
                    MarketInputs {
                        advisor: Some(Arc::new(advisor)),
                        prices: prices.clone(),
                        ..Default::default()
                    },
                ),
            })
        })
        .collect()
}

/// `head` then `words`, wrapped to [`WIDTH`] with continuation lines indented.
fn wrapped(head: &str, words: &[String]) -> String {
    let indent = "  ";
    let mut out = head.to_string();
    let mut line = out.len();
    for w in words {
        if line + 1 + w.len() > WIDTH {
            out.push('\n');
            out.push_str(indent);
            out.push_str(w);
            line = indent.len() + w.len();
        } else {
            out.push(' ');
            out.push_str(w);
            line += 1 + w.len();
        }
    }
    out
}

fn usd(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The table fits this many columns; the names behind a row's +/- follow it, wrapped.
const WIDTH: usize = 120;

fn print_table(title: &str, r: &Report, peer: Option<&PeerReport>, user_ceiling: bool) {
    let requeues = r
        .steps
        .iter()
        .filter(|s| s.trigger == Trigger::Requeue)
        .count();
    println!(
        "backtest: {title}\n{} snapshots {} .. {} ({:.0} days); {} decisions, {requeues} of them on a requeue",
        r.snapshots,
        r.from.strftime("%Y-%m-%d"),
        r.to.strftime("%Y-%m-%d"),
        r.days,
        r.steps.len(),
    );
    let mut t = super::output::table(vec![
        "date",
        "asked by",
        "decision",
        "types (+/-)",
        "ceiling",
        "cheapest three",
        "$/h",
    ]);
    t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(WIDTH as u16);
    for s in &r.steps {
        t.add_row(vec![
            s.at.strftime("%Y-%m-%d").to_string(),
            s.trigger.to_string(),
            s.why.to_string(),
            format!(
                "{} (+{} -{})",
                s.types.len(),
                s.added.len(),
                s.removed.len()
            ),
            s.ceiling.map_or("any".into(), |b| format!("<= {b}")),
            s.cheapest.join(" "),
            usd(s.cheapest_usd_per_hour),
        ]);
    }
    println!("{t}");
    // Every change after the first write, by name (the first write is the whole list).
    for s in r.steps.iter().filter(|s| s.why != "created") {
        let changes: Vec<String> = (s.added.iter().map(|t| format!("+{t}")))
            .chain(s.removed.iter().map(|t| format!("-{t}")))
            .collect();
        if !changes.is_empty() {
            let head = format!("{} {}:", s.at.strftime("%Y-%m-%d"), s.why);
            println!("{}", wrapped(&head, &changes));
        }
    }
    println!(
        "writes {}, narrowings {} ({:.2} per month)",
        r.writes, r.narrowings, r.narrowings_per_month
    );
    println!(
        "band at the next snapshot: whole set {:.2} ({:.0}% over band 2 or unknown), cheapest three {:.2} ({:.0}%)",
        r.realized_set.mean_band,
        r.realized_set.over_band_2 * 100.0,
        r.realized_cheapest_three.mean_band,
        r.realized_cheapest_three.over_band_2 * 100.0
    );
    println!(
        "preferred type (asked of AWS first, {}): band {:.2} at the next snapshot ({:.0}% over band 2)",
        if r.risk_pricing {
            "risk-priced"
        } else {
            "raw price"
        },
        r.realized_preferred.mean_band,
        r.realized_preferred.over_band_2 * 100.0
    );
    println!(
        "spot $/h for the request: cheapest written type {}, preferred {}, primary {} (mean over snapshots)",
        usd(r.mean_cheapest_usd_per_hour),
        usd(r.mean_preferred_usd_per_hour),
        usd(r.mean_primary_usd_per_hour)
    );
    if user_ceiling {
        println!(
            "longest a written type stayed over your ceiling: {:.1} days",
            r.max_breach_days
        );
    }
    let longest: Vec<String> = r
        .type_days
        .iter()
        .take(5)
        .map(|(t, d)| format!("{t} {d:.0}d"))
        .collect();
    println!("written longest: {}", longest.join(", "));
    println!(
        "the plan's top five changed {:.2} times a month (a top-tier NodePool would drift that often)",
        r.top_five_changes_per_month
    );
    if let Some(p) = peer {
        println!(
            "spot-optimizer's pick: band at the next snapshot {:.2} ({:.0}% over band 2 or unknown)\n  ours at its band costs {} of its $/h (median)",
            p.realized.mean_band,
            p.realized.over_band_2 * 100.0,
            p.median_cost_ratio
                .map_or("-".into(), |r| format!("{r:.2}x"))
        );
    }
}
