//! The on-demand shift against a simulated interruption stream: how often a plan would shift,
//! for how long, at what extra on-demand cost, and how many interruptions that spares, for a
//! given `onDemandShift`. Pure and deterministic: a replay ([`super::backtest::replay`]), a
//! seed and the model below in, figures out. The rule under test is [`shift::decide`] itself,
//! the function the controller calls.
//!
//! # The model
//! - **The fleet.** Along the replay, the plan's nodes run on the cheapest three written types
//!   of the step in force (what price-capacity-optimized mostly launches), the request split
//!   evenly between them (each type's [`node_count`] divided by how many there are, rounded
//!   up) and spread round-robin over [`Model::zones`] zones. At each new snapshot the spot part
//!   of the fleet is spread afresh over the new cheapest three; on-demand nodes stay.
//! - **The rate.** A spot node of a type in band b is interrupted at the band's monthly rate,
//!   its midpoint: [`BAND_MONTHLY_RATE`] (2.5%, 7.5%, 12.5%, 17.5% and 25% for band 4, which is
//!   open-ended; unknown counts as band 4). The band is the type's band at the snapshot in
//!   force.
//! - **Reclaims.** AWS reclaims capacity by pool (type and zone): interruptions come as reclaim
//!   events per pool, each taking every spot node of the pool with probability
//!   [`Model::reclaim_share`], at a rate that keeps each node's own rate at its band's.
//! - **Crunches.** Each zone has [`Model::crunches_per_year`] capacity crunches (a Poisson
//!   process), each [`Model::crunch_hours`] long and felt by every pool in the zone (capacity
//!   runs short for many types at once), and [`Model::crunch_share`] of a pool's
//!   interruptions fall in them: the reclaim rate inside a crunch and outside it are set so
//!   that a node's rate averaged over time is still its band's. Crunches move interruptions in
//!   time, they add none. They are the model's assumption (the Advisor publishes monthly
//!   averages only); with `crunch_share` 0 the stream is reclaims alone, evenly spread.
//! - **Replacement.** An interrupted node is replaced at once, 1:1: on-demand while the plan is
//!   shifted (the controller decides first, so the interruption that shifts the plan is
//!   replaced on-demand too), otherwise spot: the same type if it is still among the cheapest
//!   three and not demoted, else the allowed type furthest below its share, in the zone where
//!   that type has the fewest nodes. On the way back, one on-demand node is replaced by a
//!   spot one every [`Model::drift_minutes`] (the shift NodePool's one-node drift budget).
//! - **Cost.** On-demand node-hours are charged at the type's on-demand $/h; the extra cost is
//!   over what the same nodes cost on spot, as a share of the all-spot bill.
//! - **Randomness.** A pool's crunches and reclaim times come from its own generator, seeded
//!   from [`Model::seed`], the trial and the pool's name, so every policy sees the same stream;
//!   which nodes a reclaim takes is drawn from the reclaim's own seed.
//!
//! # Learned premiums ([`sweep_learning`])
//! The same fleet and stream, without the shift, with risk pricing's learned (type, zone)
//! premiums ([`pricing::in_force`], [`Learned::extra`], the functions the build calls):
//! - every interrupted node is a report on its (type, zone);
//! - **rebalance recommendations** ([`Rebalances`]): a share of reclaims is preceded, within a
//!   lead time, by a recommendation on the pool; more come unfollowed, so that there are
//!   [`Rebalances::per_reclaim`] for each reclaim in all. A recommendation reaches each spot
//!   node of the pool with the reclaim share, one report per node. These are assumptions: AWS
//!   publishes no rates;
//! - **turnover**: besides replacements, the cluster replaces spot nodes for its own reasons
//!   (scaling, consolidation, rollouts): each lives [`Rebalances::node_life_hours`] on average,
//!   and its successor is placed like a replacement;
//! - **placement**: the zone is the plain rule's (the workload's zone spread decides it); the
//!   type is the plain rule's unless it carries a premium in that zone, then the type of the
//!   phase's cheapest three with the lowest `cost x (1 + premium)` there, a type's cost being
//!   for its share of the request relative to the plain type's;
//! - **cost**: a moved node costs what its type costs over the plain type's, never less (the
//!   plain split is a given), as a share of the spot bill without premiums.

use super::backtest::{DAYS_PER_MONTH, Report, Snapshot};
use super::pricing::{self, Evidence, Learned};
use super::shift::{self, Interruption, Move, Posture, ShiftSpec, ShiftState};
use crate::optimizer::{Request, node_count};
use jiff::{SignedDuration, Timestamp};
use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;
use serde::Serialize;
use std::time::Duration;

/// Monthly interruption rate of a spot node per Spot Advisor band (the band's midpoint; band
/// 4, "more than 20%", counts as 25%).
pub const BAND_MONTHLY_RATE: [f64; 5] = [0.025, 0.075, 0.125, 0.175, 0.25];
const HOURS_PER_MONTH: f64 = DAYS_PER_MONTH * 24.0;
const HOURS_PER_YEAR: f64 = 365.25 * 24.0;
/// The shortest simulated span: a replay over fewer days holds its last step this long.
pub const MIN_DAYS: f64 = 30.0;

/// The stream's assumptions (see the module docs); [`Model::default`] is what the README's
/// figures use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Model {
    pub seed: u64,
    /// Independent runs over the replay.
    pub trials: u32,
    pub zones: u8,
    pub reclaim_share: f64,
    pub crunches_per_year: f64,
    pub crunch_hours: f64,
    /// Share of interruptions that fall in crunches (0 to below 1).
    pub crunch_share: f64,
    pub drift_minutes: f64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            seed: 2022,
            trials: 20,
            zones: 3,
            reclaim_share: 0.5,
            crunches_per_year: 1.0,
            crunch_hours: 6.0,
            crunch_share: 0.5,
            drift_minutes: 5.0,
        }
    }
}

impl Model {
    /// Share of time a pool spends in a crunch.
    fn crunch_time(&self) -> f64 {
        (self.crunches_per_year * self.crunch_hours / HOURS_PER_YEAR).min(1.0)
    }

    /// How many times as often a pool is reclaimed inside a crunch as outside one.
    pub fn crunch_factor(&self) -> f64 {
        let f = self.crunch_time();
        if f <= 0.0 || self.crunch_share <= 0.0 {
            return 1.0;
        }
        (self.crunch_share * (1.0 - f) / ((1.0 - self.crunch_share) * f)).max(1.0)
    }

    /// A pool's reclaim events per hour outside a crunch, for a band's monthly node rate.
    fn calm_reclaims_per_hour(&self, monthly: f64) -> f64 {
        monthly
            / HOURS_PER_MONTH
            / (1.0 + self.crunch_time() * (self.crunch_factor() - 1.0))
            / self.reclaim_share
    }

    /// The model's parameters make sense.
    pub fn check(&self) -> Result<(), ModelError> {
        let ok = self.trials >= 1
            && self.zones >= 1
            && self.reclaim_share > 0.0
            && self.reclaim_share <= 1.0
            && self.crunches_per_year >= 0.0
            && self.crunch_hours >= 0.0
            && (0.0..1.0).contains(&self.crunch_share)
            && self.drift_minutes > 0.0;
        ok.then_some(()).ok_or(ModelError)
    }
}

/// One policy's figures over all trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// `N/window/calm`, or `off`.
    pub policy: String,
    #[serde(skip)]
    pub spec: Option<ShiftSpec>,
    /// Simulated plan-months (span times trials).
    pub plan_months: f64,
    /// Mean nodes in the fleet.
    pub mean_nodes: f64,
    pub interruptions_per_month: f64,
    /// Of those, during a crunch of the interrupted pool.
    pub crunch_interruptions_per_month: f64,
    /// Share of the no-shift run's interruptions this policy spared (nodes that were on-demand
    /// when their pool was reclaimed).
    pub avoided: f64,
    /// The same, counting only interruptions during crunches.
    pub crunch_avoided: f64,
    pub shifts_per_month: f64,
    /// Shifts that began while none of the fleet's pools was in a crunch.
    pub calm_shifts_per_month: f64,
    /// Mean hours from a shift to back on spot (the return included).
    pub mean_shift_hours: f64,
    /// Share of time not on spot (shifted or returning).
    pub shifted_share: f64,
    /// Extra on-demand $ as a share of the all-spot bill.
    pub extra_cost: f64,
    /// Extra on-demand $ per interruption spared, in all-spot fleet-hours (the cost of running
    /// the whole fleet on spot for that long).
    pub fleet_hours_per_avoided: Option<f64>,
    pub demotions_per_month: f64,
}

/// Why a simulation cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("the replay has no written list with spot and on-demand prices: pass a price file")]
    Unpriced,
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Model parameters out of their ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the model needs trials >= 1, zones >= 1, 0 < reclaim share <= 1, crunches >= 0, crunch hours >= 0, 0 <= crunch share < 1 and drift minutes > 0"
)]
pub struct ModelError;

/// `N/window/calm` with compact durations (`3/1h/6h`).
pub fn label(spec: &ShiftSpec) -> String {
    format!(
        "{}/{}/{}",
        spec.interruptions,
        compact(spec.window),
        compact(spec.calm)
    )
}

fn compact(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The policies `spotplan backtest --simulate-interruptions` compares when none is given.
pub fn grid() -> Vec<ShiftSpec> {
    let min = |m: u64| Duration::from_secs(60 * m);
    let mut out = Vec::new();
    for n in [2, 3, 4, 6, 8] {
        for window in [min(30), min(60), min(180), min(360), min(720), min(1440)] {
            for calm in [min(60), min(180), min(360), min(720), min(1440)] {
                out.push(ShiftSpec {
                    interruptions: n,
                    window,
                    calm,
                });
            }
        }
    }
    out
}

/// The no-shift run, then each of `specs`, over `report`'s steps.
pub fn sweep(
    req: &Request,
    snapshots: &[Snapshot],
    report: &Report,
    specs: &[ShiftSpec],
    model: &Model,
) -> Result<Vec<Outcome>, SimError> {
    model.check()?;
    let world = World::new(req, snapshots, report, model)?;
    let baseline = world.run(None);
    let mut out = vec![baseline.outcome(None, &baseline)];
    for s in specs {
        let t = world.run(Some(s));
        out.push(t.outcome(Some(*s), &baseline));
    }
    Ok(out)
}

/// How rebalance recommendations come (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rebalances {
    /// Recommendations per reclaim, in all.
    pub per_reclaim: f64,
    /// Share of reclaims a recommendation precedes.
    pub warned_share: f64,
    /// How long before its reclaim a warning comes, at most (uniform), hours.
    pub lead_hours: f64,
    /// Mean life of a spot node before the cluster replaces it for its own reasons (scaling,
    /// consolidation, rollouts), hours: the launches a premium steers besides replacements.
    pub node_life_hours: f64,
}

impl Default for Rebalances {
    fn default() -> Self {
        Rebalances {
            per_reclaim: 4.0,
            warned_share: 0.5,
            lead_hours: 2.0,
            node_life_hours: 24.0,
        }
    }
}

/// One learned-premium policy's figures over all trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearningOutcome {
    /// `+P%/CALM/+R%` (`off` for none).
    pub policy: String,
    /// Tenths of a percent.
    pub per_interruption: u32,
    pub calm_hours: f64,
    pub per_rebalance: u32,
    pub interruptions_per_month: f64,
    pub crunch_interruptions_per_month: f64,
    /// Share of the run without premiums' interruptions spared.
    pub avoided: f64,
    pub crunch_avoided: f64,
    /// What moved nodes cost over the plain choice, as a share of the run without premiums'
    /// spot bill.
    pub extra_cost: f64,
    /// Replacements a premium sent elsewhere, a month.
    pub moved_per_month: f64,
    pub rebalances_per_month: f64,
}

/// `+10%/1d/+2.5%`.
pub fn learning_label(l: &Learned) -> String {
    format!(
        "{}/{}/{}",
        pricing::adjustment(l.per_interruption),
        compact(l.calm),
        pricing::adjustment(l.per_rebalance)
    )
}

/// The learned-premium policies `--simulate-learning` compares: premiums per interruption and
/// calm periods, each with premiums per rebalance recommendation below the interruption's.
///
/// The calm periods stop at three days on purpose. Past a crunch, a longer memory learns each
/// type's long-run rate, which the model holds steady between snapshots, so in the model memory
/// always pays; in the product that rate is what the type-level band premium already prices from
/// the Spot Advisor, and a premium that outlives the evidence for a week would steer launches
/// away from capacity that came back.
pub fn learning_grid() -> Vec<Learned> {
    let hours = |h: u64| Duration::from_secs(3600 * h);
    let mut out = Vec::new();
    for per_interruption in [25, 50, 100, 200, 400] {
        for calm in [hours(1), hours(6), hours(24), hours(72)] {
            for per_rebalance in [0, 10, 25, 50, 100] {
                if per_rebalance < per_interruption {
                    out.push(Learned {
                        per_interruption,
                        per_rebalance,
                        calm,
                        cap: pricing::DEFAULT_LEARNED.cap,
                    });
                }
            }
        }
    }
    out
}

/// The run without premiums, then each of `policies`, over `report`'s steps, without the shift.
pub fn sweep_learning(
    req: &Request,
    snapshots: &[Snapshot],
    report: &Report,
    policies: &[Learned],
    model: &Model,
    rebalances: &Rebalances,
) -> Result<Vec<LearningOutcome>, SimError> {
    model.check()?;
    let ok = rebalances.per_reclaim >= rebalances.warned_share
        && (0.0..=1.0).contains(&rebalances.warned_share)
        && rebalances.lead_hours >= 0.0
        && rebalances.node_life_hours > 0.0;
    ok.then_some(()).ok_or(ModelError)?;
    let world = World::new(req, snapshots, report, model)?;
    let streams: Vec<(Vec<Rebalance>, Vec<Relaunch>)> = world
        .trials
        .iter()
        .enumerate()
        .map(|(t, (_, reclaims))| {
            (
                world.rebalances(t as u32, reclaims, rebalances),
                world.relaunches(t as u32, rebalances.node_life_hours),
            )
        })
        .collect();
    let run = |l: Option<&Learned>| {
        let mut tally = Tally::default();
        for ((crunches, reclaims), (recs, relaunches)) in world.trials.iter().zip(&streams) {
            let mut r = Run::new(&world, None, crunches);
            r.learning = l;
            r.go_with(reclaims, (recs, relaunches), &mut tally);
        }
        tally
    };
    let baseline = run(None);
    let mut out = vec![baseline.learning_outcome(None, &baseline)];
    for l in policies {
        out.push(run(Some(l)).learning_outcome(Some(l), &baseline));
    }
    Ok(out)
}

/// A rebalance recommendation on a pool.
#[derive(Clone, Copy)]
struct Rebalance {
    at: f64,
    pool: usize,
    seed: u64,
}

/// A spot node the cluster replaces for its own reasons: the one at `pick` (0 to 1) of the
/// spot nodes in order.
#[derive(Clone, Copy)]
struct Relaunch {
    at: f64,
    pick: f64,
}

/// Crunches of one zone: [start, end) in hours from the replay's start.
type Spans = Vec<(f64, f64)>;

/// One step of the replay as the fleet sees it.
struct Phase {
    start: f64,
    /// (type index, nodes) for the cheapest three.
    alloc: Vec<(usize, u32)>,
}

/// A pool's reclaim event.
#[derive(Clone, Copy)]
struct Reclaim {
    at: f64,
    pool: usize,
    seed: u64,
    in_crunch: bool,
}

/// What every policy's run shares: the fleet's phases, prices and the reclaim stream.
struct World<'a> {
    model: &'a Model,
    start: Timestamp,
    hours: f64,
    types: Vec<String>,
    /// Per phase, per type: (monthly rate, spot $/h, on-demand $/h).
    rates: Vec<Vec<(f64, f64, f64)>>,
    phases: Vec<Phase>,
    /// Per trial: each pool's crunches and the merged reclaim stream.
    trials: Vec<(Vec<Spans>, Vec<Reclaim>)>,
}

impl<'a> World<'a> {
    fn new(
        req: &Request,
        snapshots: &[Snapshot],
        report: &Report,
        model: &'a Model,
    ) -> Result<Self, SimError> {
        let steps = &report.steps;
        let mut types: Vec<String> = steps.iter().flat_map(|s| s.cheapest.clone()).collect();
        types.sort();
        types.dedup();
        let start = steps.first().ok_or(SimError::Unpriced)?.at;
        let hours_since = |t: Timestamp| t.duration_since(start).as_secs_f64() / 3600.0;
        let hours = hours_since(report.to).max(MIN_DAYS * 24.0);
        let mut rates = Vec::new();
        let mut phases = Vec::new();
        for step in steps {
            let row = prices_of(req, &snapshots[step.snapshot], &types);
            let alloc: Vec<(usize, u32)> = step
                .cheapest
                .iter()
                .filter_map(|t| {
                    let i = types.binary_search(t).ok()?;
                    row[i]?;
                    let catalog = snapshots[step.snapshot].market.catalog();
                    let n = node_count(req, &catalog.types()[catalog.index_of(t)?]);
                    Some((i, n.div_ceil(step.cheapest.len() as u32)))
                })
                .collect();
            if alloc.is_empty() {
                continue;
            }
            rates.push(
                row.into_iter()
                    .map(|r| r.unwrap_or((0.25, 0.0, 0.0)))
                    .collect(),
            );
            phases.push(Phase {
                start: hours_since(step.at),
                alloc,
            });
        }
        if phases.is_empty() {
            return Err(SimError::Unpriced);
        }
        let mut world = World {
            model,
            start,
            hours,
            types,
            rates,
            phases,
            trials: Vec::new(),
        };
        world.trials = (0..model.trials).map(|t| world.stream(t)).collect();
        Ok(world)
    }

    fn pools(&self) -> usize {
        self.types.len() * usize::from(self.model.zones)
    }

    /// A pool's (type, zone).
    fn pool(&self, pool: usize) -> (usize, u8) {
        let zones = usize::from(self.model.zones);
        (pool / zones, (pool % zones) as u8)
    }

    fn phase_at(&self, h: f64) -> usize {
        self.phases.partition_point(|p| p.start <= h).max(1) - 1
    }

    /// One trial's crunches (per zone) and reclaims: thinned from the highest possible rate,
    /// so a pool's stream depends only on the seed, the trial, its name and the replay.
    fn stream(&self, trial: u32) -> (Vec<Spans>, Vec<Reclaim>) {
        let m = self.model;
        let top = m.calm_reclaims_per_hour(BAND_MONTHLY_RATE[4]) * m.crunch_factor();
        let crunches: Vec<Spans> = (0..m.zones)
            .map(|zone| {
                let name = format!("{trial}/zone {zone}");
                let mut rng = XorShiftRng::seed_from_u64(m.seed ^ fnv1a(name.as_bytes()));
                let mut mine = Vec::new();
                let mut t = 0.0;
                loop {
                    t += exponential(&mut rng, m.crunches_per_year / HOURS_PER_YEAR);
                    if t >= self.hours {
                        break;
                    }
                    mine.push((t, t + m.crunch_hours));
                }
                mine
            })
            .collect();
        let mut reclaims = Vec::new();
        for pool in 0..self.pools() {
            let (ty, zone) = self.pool(pool);
            let name = format!("{}/{}/{}", trial, self.types[ty], zone);
            let mut rng = XorShiftRng::seed_from_u64(m.seed ^ fnv1a(name.as_bytes()));
            let mine = &crunches[usize::from(zone)];
            let mut t = 0.0;
            loop {
                t += exponential(&mut rng, top);
                if t >= self.hours {
                    break;
                }
                let in_crunch = mine.iter().any(|c| c.0 <= t && t < c.1);
                let band_rate = self.rates[self.phase_at(t)][ty].0;
                let rate = m.calm_reclaims_per_hour(band_rate)
                    * if in_crunch { m.crunch_factor() } else { 1.0 };
                let (accept, seed) = (uniform(&mut rng), rng.next_u64());
                if accept < rate / top {
                    reclaims.push(Reclaim {
                        at: t,
                        pool,
                        seed,
                        in_crunch,
                    });
                }
            }
        }
        reclaims.sort_by(|a, b| a.at.total_cmp(&b.at).then(a.pool.cmp(&b.pool)));
        (crunches, reclaims)
    }

    /// One trial's rebalance recommendations: warnings before a share of `reclaims`, and
    /// unfollowed ones at the rate that makes `per_reclaim` in all, from generators of their own
    /// (the reclaim stream is the same with or without them).
    fn rebalances(&self, trial: u32, reclaims: &[Reclaim], r: &Rebalances) -> Vec<Rebalance> {
        let m = self.model;
        let mut out = Vec::new();
        for c in reclaims {
            let mut rng = XorShiftRng::seed_from_u64(c.seed ^ 0x5eba_1a9c_e000_0001);
            if uniform(&mut rng) < r.warned_share {
                out.push(Rebalance {
                    at: (c.at - uniform(&mut rng) * r.lead_hours).max(0.0),
                    pool: c.pool,
                    seed: rng.next_u64(),
                });
            }
        }
        let unfollowed = r.per_reclaim - r.warned_share;
        let top = m.calm_reclaims_per_hour(BAND_MONTHLY_RATE[4]) * m.crunch_factor() * unfollowed;
        for pool in 0..self.pools() {
            let (ty, _) = self.pool(pool);
            let name = format!("{}/{}/{}/rebalance", trial, self.types[ty], pool);
            let mut rng = XorShiftRng::seed_from_u64(m.seed ^ fnv1a(name.as_bytes()));
            let mut t = 0.0;
            loop {
                t += exponential(&mut rng, top);
                if t >= self.hours {
                    break;
                }
                // At the pool's mean reclaim rate: unfollowed recommendations know no crunch.
                let band_rate = self.rates[self.phase_at(t)][ty].0;
                let rate = band_rate / HOURS_PER_MONTH / m.reclaim_share * unfollowed;
                let (accept, seed) = (uniform(&mut rng), rng.next_u64());
                if accept < rate / top {
                    out.push(Rebalance { at: t, pool, seed });
                }
            }
        }
        out.sort_by(|a, b| a.at.total_cmp(&b.at).then(a.pool.cmp(&b.pool)));
        out
    }

    /// One trial's relaunches: a node's life is exponential with mean `life` hours, at the
    /// replay's mean fleet size (the phases' allocations), from a generator of their own.
    fn relaunches(&self, trial: u32, life: f64) -> Vec<Relaunch> {
        let nodes = self
            .phases
            .iter()
            .map(|p| p.alloc.iter().map(|a| f64::from(a.1)).sum::<f64>())
            .sum::<f64>()
            / self.phases.len() as f64;
        let name = format!("{trial}/relaunch");
        let mut rng = XorShiftRng::seed_from_u64(self.model.seed ^ fnv1a(name.as_bytes()));
        let mut out = Vec::new();
        let mut t = 0.0;
        loop {
            t += exponential(&mut rng, nodes / life);
            if t >= self.hours {
                break;
            }
            out.push(Relaunch {
                at: t,
                pick: uniform(&mut rng),
            });
        }
        out
    }

    fn at(&self, h: f64) -> Timestamp {
        let d = SignedDuration::from_secs_f64(h * 3600.0);
        self.start.checked_add(d).unwrap_or(Timestamp::MAX)
    }

    fn run(&self, spec: Option<&ShiftSpec>) -> Tally {
        let mut tally = Tally::default();
        for (crunches, reclaims) in &self.trials {
            Run::new(self, spec, crunches).go(reclaims, &mut tally);
        }
        tally
    }
}

/// Per type: (monthly rate, spot $/h, on-demand $/h) in `snapshot`, None when unpriced.
fn prices_of(req: &Request, snapshot: &Snapshot, types: &[String]) -> Vec<Option<(f64, f64, f64)>> {
    let market = &snapshot.market;
    let catalog = market.catalog();
    let region = catalog.region(&req.region);
    types
        .iter()
        .map(|t| {
            let q = market.quote(region?, catalog.index_of(t)?);
            let rate = q.band.map_or(BAND_MONTHLY_RATE[4], |b| {
                BAND_MONTHLY_RATE[usize::from(b.index()).min(4)]
            });
            Some((rate, q.spot?, q.on_demand?))
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Node {
    ty: usize,
    zone: u8,
    on_demand: bool,
    /// Spot $/h over what the plain choice would cost, for a node a learned premium moved.
    extra: f64,
}

/// Sums over all trials of one policy.
#[derive(Debug, Default)]
struct Tally {
    hours: f64,
    node_hours: f64,
    interruptions: f64,
    crunch_interruptions: f64,
    shifts: f64,
    calm_shifts: f64,
    shift_hours: f64,
    ended_shifts: f64,
    shifted_hours: f64,
    spot_bill: f64,
    extra: f64,
    demotions: f64,
    moved: f64,
    moved_extra: f64,
    rebalances: f64,
}

impl Tally {
    fn months(&self) -> f64 {
        self.hours / HOURS_PER_MONTH
    }

    fn outcome(&self, spec: Option<ShiftSpec>, baseline: &Tally) -> Outcome {
        let months = self.months();
        let avoided_n = baseline.interruptions - self.interruptions;
        let fleet_rate = self.spot_bill / self.hours.max(f64::MIN_POSITIVE);
        Outcome {
            policy: spec.as_ref().map_or_else(|| "off".to_string(), label),
            spec,
            plan_months: months,
            mean_nodes: self.node_hours / self.hours.max(f64::MIN_POSITIVE),
            interruptions_per_month: self.interruptions / months,
            crunch_interruptions_per_month: self.crunch_interruptions / months,
            avoided: spared(self.interruptions, baseline.interruptions),
            crunch_avoided: spared(self.crunch_interruptions, baseline.crunch_interruptions),
            shifts_per_month: self.shifts / months,
            calm_shifts_per_month: self.calm_shifts / months,
            mean_shift_hours: if self.ended_shifts > 0.0 {
                self.shift_hours / self.ended_shifts
            } else {
                0.0
            },
            shifted_share: self.shifted_hours / self.hours.max(f64::MIN_POSITIVE),
            extra_cost: self.extra / self.spot_bill.max(f64::MIN_POSITIVE),
            fleet_hours_per_avoided: (avoided_n > 0.0 && fleet_rate > 0.0)
                .then(|| self.extra / avoided_n / fleet_rate),
            demotions_per_month: self.demotions / months,
        }
    }

    fn learning_outcome(&self, l: Option<&Learned>, baseline: &Tally) -> LearningOutcome {
        let months = self.months();
        LearningOutcome {
            policy: l.map_or_else(|| "off".to_string(), learning_label),
            per_interruption: l.map_or(0, |l| l.per_interruption),
            calm_hours: l.map_or(0.0, |l| l.calm.as_secs_f64() / 3600.0),
            per_rebalance: l.map_or(0, |l| l.per_rebalance),
            interruptions_per_month: self.interruptions / months,
            crunch_interruptions_per_month: self.crunch_interruptions / months,
            avoided: spared(self.interruptions, baseline.interruptions),
            crunch_avoided: spared(self.crunch_interruptions, baseline.crunch_interruptions),
            extra_cost: self.moved_extra / baseline.spot_bill.max(f64::MIN_POSITIVE),
            moved_per_month: self.moved / months,
            rebalances_per_month: self.rebalances / months,
        }
    }
}

/// One trial of one policy.
struct Run<'w, 'a> {
    world: &'w World<'a>,
    spec: Option<&'w ShiftSpec>,
    crunches: &'w [Spans],
    nodes: Vec<Node>,
    phase: usize,
    state: ShiftState,
    uid: u64,
    now: f64,
    wake: Option<f64>,
    drift: Option<f64>,
    shifted_at: Option<f64>,
    /// Learned premiums steering replacements, and the reports they come from.
    learning: Option<&'w Learned>,
    reports: Vec<pricing::Report>,
}

impl<'w, 'a> Run<'w, 'a> {
    fn new(world: &'w World<'a>, spec: Option<&'w ShiftSpec>, crunches: &'w [Spans]) -> Self {
        let mut run = Run {
            world,
            spec,
            crunches,
            nodes: Vec::new(),
            phase: 0,
            state: ShiftState::default(),
            uid: 0,
            now: 0.0,
            wake: None,
            drift: None,
            shifted_at: None,
            learning: None,
            reports: Vec::new(),
        };
        run.spread();
        run
    }

    /// The phase's allocation, round-robin over zones; on-demand nodes stay.
    fn spread(&mut self) {
        let zones = self.world.model.zones;
        self.nodes.retain(|n| n.on_demand);
        let mut z = 0u8;
        let alloc = self.world.phases[self.phase].alloc.clone();
        let mut spot = alloc
            .iter()
            .flat_map(|&(ty, n)| std::iter::repeat_n(ty, n as usize))
            .collect::<Vec<_>>();
        // On-demand nodes stand in for as many spot ones.
        spot.truncate(spot.len().saturating_sub(self.nodes.len()));
        for ty in spot {
            self.nodes.push(Node {
                ty,
                zone: z,
                on_demand: false,
                extra: 0.0,
            });
            z = (z + 1) % zones;
        }
    }

    fn go(self, reclaims: &[Reclaim], tally: &mut Tally) {
        self.go_with(reclaims, (&[], &[]), tally);
    }

    fn go_with(
        mut self,
        reclaims: &[Reclaim],
        (rebalances, relaunches): (&[Rebalance], &[Relaunch]),
        tally: &mut Tally,
    ) {
        let end = self.world.hours;
        let mut next_reclaim = reclaims.iter().peekable();
        let mut next_rebalance = rebalances.iter().peekable();
        let mut next_relaunch = relaunches.iter().peekable();
        loop {
            let next_phase = self
                .world
                .phases
                .get(self.phase + 1)
                .map_or(f64::INFINITY, |p| p.start);
            let reclaim_at = next_reclaim.peek().map_or(f64::INFINITY, |r| r.at);
            let rebalance_at = next_rebalance.peek().map_or(f64::INFINITY, |r| r.at);
            let relaunch_at = next_relaunch.peek().map_or(f64::INFINITY, |r| r.at);
            let t = [
                next_phase,
                reclaim_at,
                rebalance_at,
                relaunch_at,
                self.wake.unwrap_or(f64::INFINITY),
                self.drift.unwrap_or(f64::INFINITY),
                end,
            ]
            .into_iter()
            .fold(f64::INFINITY, f64::min);
            self.accrue(t, tally);
            self.now = t;
            if t >= end {
                break;
            }
            if t == next_phase {
                self.phase += 1;
                self.spread();
            } else if t == reclaim_at {
                let r = *next_reclaim.next().expect("peeked");
                self.reclaim(&r, tally);
            } else if t == rebalance_at {
                let r = *next_rebalance.next().expect("peeked");
                self.recommend(&r, tally);
            } else if t == relaunch_at {
                let r = *next_relaunch.next().expect("peeked");
                self.relaunch(r.pick, tally);
            } else if self.drift == Some(t) {
                self.drift = None;
                self.drift_one();
                self.decide(&[], tally);
            } else {
                self.wake = None;
                self.decide(&[], tally);
            }
        }
        if let Some(s) = self.shifted_at {
            tally.shift_hours += end - s;
            tally.ended_shifts += 1.0;
        }
        tally.hours += end;
    }

    fn accrue(&self, until: f64, tally: &mut Tally) {
        let dt = until - self.now;
        if dt <= 0.0 {
            return;
        }
        let rates = &self.world.rates[self.phase];
        for n in &self.nodes {
            let (_, spot, od) = rates[n.ty];
            tally.node_hours += dt;
            tally.spot_bill += dt * spot;
            tally.moved_extra += dt * n.extra;
            if n.on_demand {
                tally.extra += dt * (od - spot).max(0.0);
            }
        }
        if !matches!(self.state.posture, Posture::Spot) {
            tally.shifted_hours += dt;
        }
    }

    fn reclaim(&mut self, r: &Reclaim, tally: &mut Tally) {
        let (ty, zone) = self.world.pool(r.pool);
        let mut rng = XorShiftRng::seed_from_u64(r.seed);
        let mut hit = Vec::new();
        for (k, n) in self.nodes.iter().enumerate() {
            if n.ty == ty && n.zone == zone && !n.on_demand {
                // One draw per spot node of the pool, in node order.
                if uniform(&mut rng) < self.world.model.reclaim_share {
                    hit.push(k);
                }
            }
        }
        if hit.is_empty() {
            return;
        }
        let at = self.world.at(self.now);
        let seen: Vec<Interruption> = hit
            .iter()
            .map(|_| {
                self.uid += 1;
                Interruption {
                    at,
                    uid: self.uid.to_string(),
                    instance_type: self.world.types[ty].clone(),
                    zone: zone_name(zone),
                }
            })
            .collect();
        tally.interruptions += hit.len() as f64;
        self.report(ty, zone, hit.len(), Evidence::Interruption);
        if r.in_crunch {
            tally.crunch_interruptions += hit.len() as f64;
        }
        for k in hit.into_iter().rev() {
            self.nodes.remove(k);
        }
        self.decide(&seen, tally);
        let on_demand = matches!(self.state.posture, Posture::Shifted { .. });
        for _ in &seen {
            let node = if on_demand {
                Node {
                    ty,
                    zone,
                    on_demand: true,
                    extra: 0.0,
                }
            } else {
                self.launch(ty, tally)
            };
            self.nodes.push(node);
        }
    }

    /// A spot node in place of one of type `was`, counted when a premium moved it.
    fn launch(&self, was: usize, tally: &mut Tally) -> Node {
        let (node, moved) = self.place_spot(was);
        if moved {
            tally.moved += 1.0;
        }
        node
    }

    /// The spot node at `pick` replaced by a new launch.
    fn relaunch(&mut self, pick: f64, tally: &mut Tally) {
        let spot: Vec<usize> = (0..self.nodes.len())
            .filter(|&k| !self.nodes[k].on_demand)
            .collect();
        if spot.is_empty() {
            return;
        }
        let k = spot[((pick * spot.len() as f64) as usize).min(spot.len() - 1)];
        let was = self.nodes.remove(k).ty;
        let node = self.launch(was, tally);
        self.nodes.push(node);
    }

    /// A rebalance recommendation: a report for each spot node of the pool it reaches.
    fn recommend(&mut self, r: &Rebalance, tally: &mut Tally) {
        let (ty, zone) = self.world.pool(r.pool);
        let mut rng = XorShiftRng::seed_from_u64(r.seed);
        let share = self.world.model.reclaim_share;
        let reached = self
            .nodes
            .iter()
            .filter(|n| n.ty == ty && n.zone == zone && !n.on_demand)
            .filter(|_| uniform(&mut rng) < share)
            .count();
        tally.rebalances += reached as f64;
        self.report(ty, zone, reached, Evidence::Rebalance);
    }

    /// `n` reports on (type, zone) now, when premiums are learned; older than the calm period
    /// they are dropped.
    fn report(&mut self, ty: usize, zone: u8, n: usize, evidence: Evidence) {
        let Some(l) = self.learning else {
            return;
        };
        let at = self.world.at(self.now);
        let from = super::before(at, l.calm);
        self.reports.retain(|r| r.at > from);
        for _ in 0..n {
            self.reports.push(pricing::Report {
                instance_type: self.world.types[ty].clone(),
                zone: zone_name(zone),
                at,
                evidence,
            });
        }
    }

    /// A spot node in place of one of type `was`: the same type when it is in the phase's
    /// cheapest three and not demoted, else the allowed type furthest below its share; in its
    /// zone with the fewest nodes of that type.
    fn plain_place(&self, was: usize) -> (usize, u8) {
        let alloc = &self.world.phases[self.phase].alloc;
        let demoted = |ty: usize| self.demoted(ty);
        let count = |ty: usize| self.nodes.iter().filter(|n| n.ty == ty).count();
        let ty = if alloc.iter().any(|a| a.0 == was) && !demoted(was) {
            was
        } else {
            let allowed = alloc.iter().filter(|a| !demoted(a.0));
            let pick = |it: &mut dyn Iterator<Item = &(usize, u32)>| {
                it.max_by_key(|a| (i64::from(a.1) - count(a.0) as i64, std::cmp::Reverse(a.0)))
                    .map(|a| a.0)
            };
            pick(&mut allowed.clone())
                .or_else(|| pick(&mut alloc.iter()))
                .expect("a phase allocates at least one type")
        };
        let zone = (0..self.world.model.zones)
            .min_by_key(|z| {
                self.nodes
                    .iter()
                    .filter(|n| n.ty == ty && n.zone == *z)
                    .count()
            })
            .unwrap_or(0);
        (ty, zone)
    }

    /// A spot node in place of one of type `was`: where [`Self::plain_place`] puts it, unless
    /// a learned premium is in force there; then, in the same zone (the workload's zone spread
    /// decides the zone), the type of the phase's cheapest three with the lowest adjusted cost
    /// (see the module docs). True when a premium moved it off the plain type.
    fn place_spot(&self, was: usize) -> (Node, bool) {
        let (ty, zone) = self.plain_place(was);
        let node = |t, extra| {
            let n = Node {
                ty: t,
                zone,
                on_demand: false,
                extra,
            };
            (n, t != ty)
        };
        let Some(l) = self.learning else {
            return node(ty, 0.0);
        };
        let force = pricing::in_force(&self.reports, l, self.world.at(self.now));
        let types = &self.world.types;
        let zone_label = zone_name(zone);
        let premium = |t: usize| {
            force
                .get(&(types[t].as_str(), zone_label.as_str()))
                .map_or(0, |e| l.extra(e.interruptions, e.rebalances))
        };
        if premium(ty) == 0 {
            return node(ty, 0.0);
        }
        let rates = &self.world.rates[self.phase];
        let alloc = &self.world.phases[self.phase].alloc;
        // A type's cost for its share of the request, relative to the plain type's.
        let share_cost = |t: usize| {
            let n = alloc.iter().find(|a| a.0 == t).map_or(1, |a| a.1);
            rates[t].1 * f64::from(n)
        };
        let plain = share_cost(ty).max(f64::MIN_POSITIVE);
        let relative = |t: usize| share_cost(t) / plain;
        let score = |t: usize| relative(t) * (1.0 + f64::from(premium(t)) / 1000.0);
        let mut best = (score(ty), ty);
        for t in alloc
            .iter()
            .map(|a| a.0)
            .filter(|&t| t != ty && !self.demoted(t))
        {
            if score(t) < best.0 * (1.0 - 1e-12) {
                best = (score(t), t);
            }
        }
        let t = best.1;
        // Never a saving: the plain rule's split is a given, a move can only cost.
        node(t, rates[ty].1 * (relative(t) - 1.0).max(0.0))
    }

    fn demoted(&self, ty: usize) -> bool {
        self.state.demoted.contains(&self.world.types[ty])
    }

    /// One of the shift's on-demand nodes replaced by spot.
    fn drift_one(&mut self) {
        if let Some(k) = self.nodes.iter().position(|n| n.on_demand) {
            let was = self.nodes.remove(k).ty;
            let (node, _) = self.place_spot(was);
            self.nodes.push(node);
        }
    }

    fn in_crunch(&self) -> bool {
        self.crunches
            .iter()
            .flatten()
            .any(|c| c.0 <= self.now && self.now < c.1)
    }

    fn decide(&mut self, seen: &[Interruption], tally: &mut Tally) {
        if self.spec.is_none() {
            return;
        }
        let on_demand = self.nodes.iter().filter(|n| n.on_demand).count();
        let d = shift::decide(
            self.spec,
            &self.state,
            shift::Seen::only(seen),
            on_demand,
            self.world.at(self.now),
        );
        for m in &d.moves {
            match m {
                Move::Shifted { .. } => {
                    tally.shifts += 1.0;
                    if !self.in_crunch() {
                        tally.calm_shifts += 1.0;
                    }
                    self.shifted_at.get_or_insert(self.now);
                }
                Move::BackOnSpot => {
                    if let Some(s) = self.shifted_at.take() {
                        tally.shift_hours += self.now - s;
                        tally.ended_shifts += 1.0;
                    }
                }
                Move::Demoted { .. } => tally.demotions += 1.0,
                Move::Returned | Move::Restored { .. } => {}
            }
        }
        self.state = d.state;
        // Never the same instant again, whatever the rounding.
        let soon = self.now + 1.0 / 3600.0;
        self.wake = d
            .wake_at
            .map(|w| (w.duration_since(self.world.start).as_secs_f64() / 3600.0).max(soon));
        let returning = matches!(self.state.posture, Posture::Returning { .. });
        self.drift = match (returning, self.drift) {
            (true, Some(d)) => Some(d),
            (true, None) => Some(self.now + self.world.model.drift_minutes / 60.0),
            (false, _) => None,
        };
    }
}

/// The share of `base` that `mine` spared (0 when there was nothing to spare).
fn spared(mine: f64, base: f64) -> f64 {
    if base > 0.0 { 1.0 - mine / base } else { 0.0 }
}

/// The zone's name in reports.
fn zone_name(zone: u8) -> String {
    format!("z{zone}")
}

/// An exponential wait (hours) at `rate` per hour; never for a zero rate.
fn exponential(rng: &mut XorShiftRng, rate: f64) -> f64 {
    if rate <= 0.0 {
        return f64::INFINITY;
    }
    -(1.0 - uniform(rng)).ln() / rate
}

/// Uniform in [0, 1), 53 bits.
fn uniform(rng: &mut XorShiftRng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a, a stable hash for seeding a pool's generator from its name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_compact() {
        let s = ShiftSpec {
            interruptions: 6,
            window: Duration::from_secs(6 * 3600),
            calm: Duration::from_secs(90 * 60),
        };
        assert_eq!(label(&s), "6/6h/90m");
        assert_eq!(compact(Duration::from_secs(86_400)), "1d");
        assert_eq!(compact(Duration::from_secs(61)), "61s");
    }

    #[test]
    fn crunches_move_interruptions_without_adding_any() {
        for share in [0.0, 0.3, 0.5, 0.9] {
            let m = Model {
                crunch_share: share,
                ..Model::default()
            };
            let f = m.crunch_time();
            let calm = m.calm_reclaims_per_hour(0.1) * m.reclaim_share;
            // Time-averaged node rate is the band's, and the crunch holds `share` of it.
            let mean = calm * (1.0 - f) + calm * m.crunch_factor() * f;
            assert!(
                (mean * HOURS_PER_MONTH - 0.1).abs() < 1e-12,
                "{share}: {mean}"
            );
            // With no share the crunches are ordinary time: they hold their share of it.
            let want = if share == 0.0 { f } else { share };
            let in_crunch = calm * m.crunch_factor() * f / mean;
            assert!((in_crunch - want).abs() < 1e-9, "{share}: {in_crunch}");
        }
    }

    #[test]
    fn a_model_out_of_range_is_refused() {
        for bad in [
            Model {
                trials: 0,
                ..Model::default()
            },
            Model {
                crunch_share: 1.0,
                ..Model::default()
            },
            Model {
                reclaim_share: 0.0,
                ..Model::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(Model::default().check().is_ok());
    }

    #[test]
    fn the_default_is_on_the_grid() {
        assert!(grid().contains(&shift::DEFAULT));
    }
}
