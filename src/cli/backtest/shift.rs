//! `spotplan backtest --simulate-interruptions`: the on-demand shift rule run against a
//! simulated interruption stream along the replay (`spotplan_core::policy::shift_sim`); and
//! `--simulate-learning`: risk pricing's learned (type, zone) premiums against the same stream
//! with rebalance recommendations.

use super::CliError;
use clap::Args;
use serde::Serialize;
use spotplan_core::policy::backtest::{Report, Snapshot};
use spotplan_core::policy::shift::ShiftSpec;
use spotplan_core::policy::shift_sim::{self, LearningOutcome, Model, Outcome, Rebalances};

#[derive(Args, Debug)]
pub struct ShiftArgs {
    /// Simulate an interruption stream along the replay (a documented model, fixed seed) and
    /// run the on-demand shift rule against it, for each --shift or a grid of them. Needs
    /// --prices.
    #[arg(long)]
    pub simulate_interruptions: bool,
    /// An onDemandShift to simulate, N/WINDOW/CALM (e.g. 3/1h/6h); repeat for several. Without
    /// it, a grid.
    #[arg(long = "shift", value_name = "N/WINDOW/CALM", value_parser = crate::cli::args::shift)]
    pub shifts: Vec<ShiftSpec>,
    /// Seed of the simulated stream.
    #[arg(long, default_value_t = Model::default().seed)]
    pub seed: u64,
    /// Independent runs over the replay.
    #[arg(long, default_value_t = Model::default().trials)]
    pub trials: u32,
    /// Capacity crunches per zone per year (each felt by every type in the zone).
    #[arg(long, default_value_t = Model::default().crunches_per_year)]
    pub crunches_per_year: f64,
    /// How long a crunch lasts, in hours.
    #[arg(long, default_value_t = Model::default().crunch_hours)]
    pub crunch_hours: f64,
    /// Share of interruptions that fall in crunches (0: none, evenly spread).
    #[arg(long, default_value_t = Model::default().crunch_share)]
    pub crunch_share: f64,
    /// Share of a pool's spot nodes one reclaim takes.
    #[arg(long, default_value_t = Model::default().reclaim_share)]
    pub reclaim_share: f64,
    /// Simulate the same stream with rebalance recommendations, without the shift, and compare
    /// risk pricing's learned (type, zone) premiums over a grid (per interruption, calm period,
    /// per rebalance recommendation) with none. Needs --prices.
    #[arg(long)]
    pub simulate_learning: bool,
    /// Rebalance recommendations per reclaim, in all (an assumption: AWS publishes no rate).
    #[arg(long, default_value_t = Rebalances::default().per_reclaim)]
    pub rebalances_per_reclaim: f64,
    /// Share of reclaims a rebalance recommendation precedes.
    #[arg(long, default_value_t = Rebalances::default().warned_share)]
    pub rebalance_warned_share: f64,
    /// How long before its reclaim a warning comes, at most, in hours.
    #[arg(long, default_value_t = Rebalances::default().lead_hours)]
    pub rebalance_lead_hours: f64,
    /// Mean life of a spot node before the cluster replaces it (scaling, consolidation,
    /// rollouts), in hours: the launches premiums steer besides replacements.
    #[arg(long, default_value_t = Rebalances::default().node_life_hours)]
    pub node_life_hours: f64,
}

/// What `-o json` adds for --simulate-learning.
#[derive(Serialize)]
pub struct Learning {
    pub model: Model,
    pub rebalances: Rebalances,
    pub outcomes: Vec<LearningOutcome>,
}

/// What `-o json` adds.
#[derive(Serialize)]
pub struct Simulated {
    pub model: Model,
    pub outcomes: Vec<Outcome>,
}

impl ShiftArgs {
    fn model(&self) -> Model {
        Model {
            seed: self.seed,
            trials: self.trials,
            crunches_per_year: self.crunches_per_year,
            crunch_hours: self.crunch_hours,
            crunch_share: self.crunch_share,
            reclaim_share: self.reclaim_share,
            ..Model::default()
        }
    }

    /// The learned-premium simulation, when asked for.
    pub fn run_learning(
        &self,
        req: &spotplan_core::Request,
        snapshots: &[Snapshot],
        report: &Report,
        priced: bool,
    ) -> Result<Option<Learning>, CliError> {
        if !asked(
            self.simulate_learning,
            priced,
            "the learning simulation charges what moved nodes cost",
        )? {
            return Ok(None);
        }
        let model = self.model();
        let rebalances = Rebalances {
            per_reclaim: self.rebalances_per_reclaim,
            warned_share: self.rebalance_warned_share,
            lead_hours: self.rebalance_lead_hours,
            node_life_hours: self.node_life_hours,
        };
        let grid = shift_sim::learning_grid();
        let outcomes = shift_sim::sweep_learning(req, snapshots, report, &grid, &model, &rebalances)
            .map_err(|e| match e {
                shift_sim::SimError::Model(m) => CliError::usage(
                    "--trials/--crunch-*/--rebalance-*",
                    format!(
                        "{m}; and rebalances per reclaim >= the warned share, which is 0 to 1, and node life hours > 0"
                    ),
                ),
                e => CliError::usage("--prices", e.to_string()),
            })?;
        Ok(Some(Learning {
            model,
            rebalances,
            outcomes,
        }))
    }

    /// The simulation, when asked for.
    pub fn run(
        &self,
        req: &spotplan_core::Request,
        snapshots: &[Snapshot],
        report: &Report,
        priced: bool,
    ) -> Result<Option<Simulated>, CliError> {
        let wanted = self.simulate_interruptions || !self.shifts.is_empty();
        if !asked(
            wanted,
            priced,
            "the interruption simulation charges on-demand hours",
        )? {
            return Ok(None);
        }
        let model = self.model();
        let specs = if self.shifts.is_empty() {
            shift_sim::grid()
        } else {
            self.shifts.clone()
        };
        let outcomes =
            shift_sim::sweep(req, snapshots, report, &specs, &model).map_err(|e| match e {
                shift_sim::SimError::Model(m) => CliError::usage("--trials/--crunch-*", m),
                e => CliError::usage("--prices", e.to_string()),
            })?;
        Ok(Some(Simulated { model, outcomes }))
    }
}

/// Whether a simulation was asked for; an error naming --prices when it was and the replay is
/// unpriced (`why` says what the prices are for).
fn asked(wanted: bool, priced: bool, why: &str) -> Result<bool, CliError> {
    if wanted && !priced {
        return Err(CliError::usage(
            "--prices",
            format!("{why}: pass a price CSV with --prices"),
        ));
    }
    Ok(wanted)
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

pub fn print(s: &Simulated) {
    let m = &s.model;
    println!(
        "simulated interruptions: {} trials, seed {}; reclaims take {:.0}% of a pool; {} crunch(es) per zone a year of {} h hold {:.0}% of interruptions ({:.0}x the calm rate)",
        m.trials,
        m.seed,
        m.reclaim_share * 100.0,
        m.crunches_per_year,
        m.crunch_hours,
        m.crunch_share * 100.0,
        m.crunch_factor()
    );
    let mut t = crate::cli::output::table(vec![
        "onDemandShift",
        "shifts/mo",
        "in calm/mo",
        "h per shift",
        "time shifted",
        "extra $",
        "interr./mo",
        "spared",
        "in crunches",
        "fleet-h per spared",
        "demotions/mo",
    ]);
    for o in &s.outcomes {
        t.add_row(vec![
            o.policy.clone(),
            format!("{:.2}", o.shifts_per_month),
            format!("{:.2}", o.calm_shifts_per_month),
            format!("{:.1}", o.mean_shift_hours),
            pct(o.shifted_share),
            pct(o.extra_cost),
            format!("{:.2}", o.interruptions_per_month),
            pct(o.avoided),
            pct(o.crunch_avoided),
            o.fleet_hours_per_avoided
                .map_or("-".into(), |h| format!("{h:.1}")),
            format!("{:.2}", o.demotions_per_month),
        ]);
    }
    println!("{t}");
    if let Some(o) = s.outcomes.first() {
        println!(
            "fleet: {:.1} nodes on average over {:.0} plan-months",
            o.mean_nodes, o.plan_months
        );
    }
}

pub fn print_learning(s: &Learning) {
    let r = &s.rebalances;
    println!(
        "simulated learned premiums: the stream above with {} rebalance recommendation(s) per reclaim, {:.0}% of reclaims warned up to {} h ahead; spot nodes live {} h on average; no shift",
        r.per_reclaim,
        r.warned_share * 100.0,
        r.lead_hours,
        r.node_life_hours
    );
    let mut t = crate::cli::output::table(vec![
        "per interruption/calm/per rebalance",
        "interr./mo",
        "spared",
        "in crunches",
        "extra $",
        "moved/mo",
        "rebalances/mo",
    ]);
    for o in &s.outcomes {
        t.add_row(vec![
            o.policy.clone(),
            format!("{:.2}", o.interruptions_per_month),
            pct(o.avoided),
            pct(o.crunch_avoided),
            pct(o.extra_cost),
            format!("{:.2}", o.moved_per_month),
            format!("{:.2}", o.rebalances_per_month),
        ]);
    }
    println!("{t}");
}
