//! The pure build: from what the read step found to what should be.
//!
//! In: the SpotPlan (with the status the controller last wrote), the market snapshot and its
//! freshness, the live NodePools that carry the plan's names, and the interruption signal the
//! cluster reported. Out ([`Desired`]): the NodePools to write (only those that differ from the
//! live ones) and to delete, the status, the Events, and when to look again. Nothing here reads a
//! clock or calls an API: the operator's reconcile and the CLI's `render --format nodepool` call
//! the same [`build`], and unit tests call it with plain structs.
//!
//! The steps, each one rule in one place:
//! 1. `spec.suspend`: nothing is written but the status.
//! 2. Validate the spec ([`crate::validate`]).
//! 3. The on-demand shift over the plan's own interruptions (`policy::shift`), and the launch
//!    failures recorded beside them.
//! 4. Plan with the optimizer, without the demoted types (with them if that leaves nothing).
//! 5. The churn rule over what is written now (`policy::churn`).
//! 6. The desired NodePools ([`nodepools`]); a name held by a NodePool this plan does not own
//!    is a conflict, never a takeover.
//! 7. Risk pricing ([`overlays`]): the spot NodePool's types priced as the plan ranks them, as
//!    NodeOverlays, where the cluster serves them and the plan does not turn it off.
//! 8. Status ([`status`]) and Events ([`events`]).

pub mod base;
pub mod events;
pub mod nodepools;
pub mod overlays;
pub mod status;

use crate::crd::{SpotPlan, SpotPlanStatus};
use crate::freshness::Freshness;
use crate::names::{PoolNames, Role, conditions};
use crate::outcome::{NotReady, Reason, Retry};
use crate::validate::{self, PlanSpec};
use events::Note;
use jiff::Timestamp;
use kube_core::DynamicObject;
use kube_core::{Resource, ResourceExt};
use nodepools::{DesiredNodePool, Owner, Ownership, Pools};
use spotplan_core::plan::Plan;
use spotplan_core::policy::churn::{self, ListDecision};
use spotplan_core::policy::pricing::{self, Pricing};
use spotplan_core::policy::shift::{self, Interruption, Posture, ShiftDecision};
use spotplan_core::{MarketData, limits, optimize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Controller settings the build reads (the rest of the rule is per plan, in the spec).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Default shortest time between two data-driven narrowings (`spec.minNarrowInterval`
    /// overrides it).
    pub min_narrow_interval: Duration,
    /// How long a written type may stay over a ceiling the user set.
    pub confirm_over_ceiling: Duration,
    /// How often at most a list is narrowed to its mode's default cap.
    pub settle_over_default_cap: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            min_narrow_interval: churn::DEFAULT_MIN_INTERVAL,
            confirm_over_ceiling: churn::DEFAULT_CONFIRM,
            settle_over_default_cap: churn::DEFAULT_SETTLE,
        }
    }
}

/// What the cluster reported about the plan's NodeClaims (already attributed to this plan by
/// the shell's trust rules).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signals {
    /// Spot interruptions of the plan's spot NodeClaims.
    pub interruptions: Vec<Interruption>,
    /// Launch failures for want of capacity of any of the plan's NodeClaims.
    pub launch_failures: Vec<Interruption>,
    /// Rebalance recommendations for the plan's spot NodeClaims.
    pub rebalances: Vec<Interruption>,
    /// NodeClaims alive in the shift NodePool; `None` until the NodeClaim cache is synced (a
    /// return never ends on a count that may be wrong).
    pub shift_nodes: Option<usize>,
    /// The uids of `interruptions`, `launch_failures` and `rebalances` at the last build whose status was
    /// written (each was recorded then, or known); `None` when this process has none (see
    /// `shift::Seen`).
    pub seen_before: Option<SeenBefore>,
}

/// The NodeClaim uids a plan's last written build saw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeenBefore {
    pub interruptions: BTreeSet<String>,
    pub launch_failures: BTreeSet<String>,
    pub rebalances: BTreeSet<String>,
}

impl Signals {
    /// What this build sees, for the next one.
    pub fn seen(&self) -> SeenBefore {
        let uids = |v: &[Interruption]| v.iter().map(|i| i.uid.clone()).collect();
        SeenBefore {
            interruptions: uids(&self.interruptions),
            launch_failures: uids(&self.launch_failures),
            rebalances: uids(&self.rebalances),
        }
    }
}

/// What the read step found.
pub struct Observed<'a> {
    /// The SpotPlan, with the status the controller last wrote.
    pub plan: &'a SpotPlan,
    pub freshness: &'a Freshness,
    /// The market snapshot; `None` when no data could be loaded at all.
    pub market: Option<&'a MarketData>,
    /// The live NodePools that carry any of the plan's names (whoever owns them).
    pub nodepools: &'a [DynamicObject],
    pub signals: &'a Signals,
    /// Spot placement scores per zone for the plan's size, when asked for.
    pub placement: Option<&'a [(String, u8)]>,
    /// Whether NodeOverlays can be written, and the live ones that carry the plan's owner
    /// reference or one of its overlay names.
    pub overlays: SeenOverlays<'a>,
    /// Now, at a whole second.
    pub now: Timestamp,
}

/// The NodeOverlays as the read step found them.
#[derive(Debug, Clone, Copy)]
pub struct SeenOverlays<'a> {
    pub support: overlays::Support,
    pub live: &'a [DynamicObject],
}

impl SeenOverlays<'_> {
    /// A cluster without NodeOverlays.
    pub const NOT_SERVED: SeenOverlays<'static> = SeenOverlays {
        support: overlays::Support::NotServed,
        live: &[],
    };
}

/// A NodePool to write: created when absent, else applied over the live object with its uid
/// as a precondition.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub pool: DesiredNodePool,
    /// The live NodePool's uid; `None`: create.
    pub live_uid: Option<String>,
}

/// A NodePool of the plan's to delete (with its uid as a precondition).
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub role: Role,
    pub name: String,
    pub uid: String,
    /// Announced once the delete went through.
    pub note: Option<Note>,
}

/// What a planned plan reports to metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauges {
    /// Ready: planned, written, and no NodePool of it refused by Karpenter.
    pub usable: bool,
    pub types: usize,
    pub spot_usd_per_hour: Option<f64>,
    pub on_demand_usd_per_hour: Option<f64>,
    pub savings_pct: Option<f64>,
    pub shifted: bool,
    /// Interruptions, launch failures and rebalance recommendations new in this build (each
    /// counted once).
    pub new_interruptions: Vec<Interruption>,
    pub new_launch_failures: Vec<Interruption>,
    pub new_rebalances: Vec<Interruption>,
}

/// Where the plan stands after the build.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    Ready(Gauges),
    NotReady(Reason),
    Suspended,
}

/// What should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// NodePools that differ from the live ones.
    pub writes: Vec<Write>,
    pub deletes: Vec<Delete>,
    /// NodeOverlays that differ from the live ones, and the plan's ones it no longer wants.
    pub overlay_writes: Vec<overlays::OverlayWrite>,
    pub overlay_deletes: Vec<overlays::OverlayDelete>,
    pub status: SpotPlanStatus,
    /// Published after the writes, on transitions only.
    pub events: Vec<Note>,
    pub retry: Retry,
    pub standing: Standing,
}

/// The plan, decided: what status and Events are made of.
pub(crate) struct Planned<'a> {
    pub spec: PlanSpec,
    pub plan: Plan,
    pub market: &'a MarketData,
    pub decision: ListDecision,
    pub names: PoolNames,
    pub pools: Vec<DesiredNodePool>,
    /// The on-demand floor, with `spec.capacity.onDemandBase`.
    pub floor: Option<base::Floor>,
    pub shift: ShiftDecision,
    pub launch_failures: Reported,
    pub rebalances: Reported,
    pub risk: Risk,
}

/// Risk pricing as decided for the plan.
pub(crate) struct Risk {
    pub applies: overlays::Applies,
    /// The spot NodePool's pricing, when it applies.
    pub pricing: Option<Pricing>,
    pub changes: overlays::Changes,
}

/// Reports the plan keeps a log of besides its interruptions (launch failures for want of
/// capacity, rebalance recommendations), one per NodeClaim, and the ones new in this build.
pub(crate) struct Reported {
    pub log: shift::Log,
    pub recorded: Vec<Interruption>,
}

/// The build: what should be, given what is there.
pub fn build(o: &Observed, settings: &Settings) -> Desired {
    let names = PoolNames::of(&o.plan.name_any());
    if o.plan.spec.suspend {
        return suspended(o);
    }
    match plan(o, settings, names) {
        Ok(p) => ready(o, p),
        Err(nr) => refused(o, &nr),
    }
}

/// The Desired of a plan that is not Ready for `nr`: nothing written but the status, and a
/// Warning Event on a transition into this reason. Also what the shell reports when the API
/// server refuses a NodePool write.
pub fn refused(o: &Observed, nr: &NotReady) -> Desired {
    let before = status::condition_of(o.plan.status.as_ref(), conditions::READY);
    let transition = before != Some(("False".into(), nr.reason.as_str().into()));
    Desired {
        writes: Vec::new(),
        deletes: Vec::new(),
        overlay_writes: Vec::new(),
        overlay_deletes: Vec::new(),
        status: status::not_ready(o.plan, nr, o.freshness, o.now),
        events: transition
            .then(|| Note::warning(nr.reason.as_str(), nr.message.clone()))
            .into_iter()
            .collect(),
        retry: nr.retry,
        standing: Standing::NotReady(nr.reason),
    }
}

fn suspended(o: &Observed) -> Desired {
    let was = status::condition_of(o.plan.status.as_ref(), conditions::SUSPENDED).is_some();
    Desired {
        writes: Vec::new(),
        deletes: Vec::new(),
        overlay_writes: Vec::new(),
        overlay_deletes: Vec::new(),
        status: status::suspended(o.plan, o.freshness, o.now),
        events: (!was)
            .then(|| Note::normal("Suspended", "plan frozen by spec.suspend".into()))
            .into_iter()
            .collect(),
        retry: Retry::OnChange,
        standing: Standing::Suspended,
    }
}

/// Steps 2 to 6.
fn plan<'a>(
    o: &Observed<'a>,
    settings: &Settings,
    names: PoolNames,
) -> Result<Planned<'a>, NotReady> {
    let sp = o.plan;
    let spec = validate::validate(&sp.spec, settings.min_narrow_interval)
        .map_err(|e| NotReady::new(Reason::InvalidSpec, e.to_string()))?;
    let market = o
        .market
        .ok_or_else(|| NotReady::new(Reason::MarketDataUnavailable, o.freshness.message.clone()))?;
    let seen = shift::Seen {
        now: &o.signals.interruptions,
        before: o.signals.seen_before.as_ref().map(|b| &b.interruptions),
    };
    let shift = shift::decide(
        spec.shift.as_ref(),
        &status::shift_state(sp.status.as_ref()),
        seen,
        o.signals.shift_nodes.unwrap_or(usize::MAX),
        o.now,
    );
    let launch_failures = reported(o, &spec, Log::LaunchFailures);
    let rebalances = reported(o, &spec, Log::Rebalances);
    let (spec, mut plan) = plan_without_demoted(spec, &shift.state.demoted, market)?;
    if let Some(scores) = o.placement {
        plan.apply_placement_scores(scores);
    }
    let uid = sp.uid().unwrap_or_default();
    let spot_live = live(o, &names.spot);
    check_owned(&names.spot, spot_live, &uid)?;
    let applies = overlays::applies(sp.spec.risk_pricing, o.overlays.support);
    let priced = applies == overlays::Applies::Yes;
    let decision = list_step(o, settings, &spec, (&plan, priced), market, spot_live)?;
    let types: Vec<String> = decision.types.iter().cloned().collect();
    let floor = spec.on_demand_base.map(|b| {
        let before = live(o, &names.on_demand)
            .map(nodepools::live_types)
            .unwrap_or_default();
        base::plan(&spec.request, b, &types, &before, market)
    });
    let base_types = match &floor {
        Some(base::Floor::Planned(t)) => Some(t.as_slice()),
        _ => None,
    };
    let (api_version, kind) = (SpotPlan::api_version(&()), SpotPlan::kind(&()));
    let name = sp.name_any();
    let pools = Pools {
        owner: Owner {
            name: &name,
            uid: &uid,
            api_version: &api_version,
            kind: &kind,
        },
        names: &names,
        spec: &spec,
        types: &types,
        base_types,
        catalog: market.catalog(),
    };
    let mut want = pools.nodepools();
    want.extend(pools.shift(shift.state.posture));
    for d in &want {
        check_owned(&d.name, live(o, &d.name), &uid)?;
    }
    let risk = risk(
        o,
        applies,
        &pools.owner,
        &names,
        (&spec, &plan, market),
        &types,
        (&shift, &launch_failures, &rebalances),
    );
    Ok(Planned {
        spec,
        plan,
        market,
        decision,
        names,
        pools: want,
        floor,
        shift,
        launch_failures,
        rebalances,
        risk,
    })
}

/// Step 7: the spot NodePool's types priced as the plan ranks them, from the plan's own
/// interruptions and launch failures too, as NodeOverlays; or every overlay of the plan's
/// deleted when risk pricing does not apply.
fn risk(
    o: &Observed,
    applies: overlays::Applies,
    owner: &Owner,
    names: &PoolNames,
    (spec, plan, market): (&PlanSpec, &Plan, &MarketData),
    types: &[String],
    (shift, launch_failures, rebalances): (&ShiftDecision, &Reported, &Reported),
) -> Risk {
    let uid = owner.uid;
    if applies != overlays::Applies::Yes {
        return Risk {
            applies,
            pricing: None,
            changes: overlays::Changes {
                deletes: overlays::all_of(o.overlays.live, uid),
                ..Default::default()
            },
        };
    }
    let report = |evidence| {
        move |i: &Interruption| pricing::Report {
            instance_type: i.instance_type.clone(),
            zone: i.zone.clone(),
            at: i.at,
            evidence,
        }
    };
    let reports: Vec<pricing::Report> = shift
        .state
        .log
        .entries
        .iter()
        .chain(&launch_failures.log.entries)
        .map(report(pricing::Evidence::Interruption))
        .chain(
            rebalances
                .log
                .entries
                .iter()
                .map(report(pricing::Evidence::Rebalance)),
        )
        .collect();
    let kept = pricing::kept(&spec.request, market, plan, types);
    let priced = pricing::price(
        plan,
        types,
        &kept,
        &reports,
        &pricing::DEFAULT_LEARNED,
        o.now,
    );
    let want = overlays::desired(*owner, &names.spot, &priced);
    Risk {
        applies,
        changes: overlays::changes(&want, o.overlays.live, uid),
        pricing: Some(priced),
    }
}

/// Step 7 for a plan whose NodePools should match `p`.
fn ready(o: &Observed, p: Planned) -> Desired {
    let uid = o.plan.uid().unwrap_or_default();
    let writes: Vec<Write> = p
        .pools
        .iter()
        .filter_map(|want| {
            let have = live(o, &want.name);
            match have {
                Some(l) if nodepools::up_to_date(want, l, &uid) => None,
                _ => Some(Write {
                    pool: want.clone(),
                    live_uid: have.and_then(|l| l.uid()),
                }),
            }
        })
        .collect();
    let deletes = deletes(o, &p, &uid);
    let existed = live(o, &p.names.spot).is_some();
    let mut events: Vec<Note> = events::list_changed(&p, existed).into_iter().collect();
    events.extend(events::shift_moves(&p));
    events.extend(events::premiums(
        o.plan.status.as_ref().and_then(|s| s.risk_pricing.as_ref()),
        &p,
    ));
    if let Some(base::Floor::Unmet(why)) = &p.floor {
        let was = status::condition_of(o.plan.status.as_ref(), conditions::ON_DEMAND_BASE);
        if was != Some(("False".into(), "NothingFits".into())) {
            events.push(Note::warning("OnDemandBaseUnmet", why.clone()));
        }
    }
    let karpenter = pools_ready(o, &p);
    let before = status::condition_of(o.plan.status.as_ref(), conditions::READY);
    let status = status::applied(o.plan, &p, &karpenter, o.freshness, o.now);
    let usable = !matches!(karpenter, PoolsReady::NotReady(_));
    if let PoolsReady::NotReady(why) = &karpenter
        && before != Some(("False".into(), Reason::NodePoolsNotReady.as_str().into()))
    {
        events.push(Note::warning(
            Reason::NodePoolsNotReady.as_str(),
            why.clone(),
        ));
    }
    Desired {
        writes,
        deletes,
        overlay_writes: p.risk.changes.writes.clone(),
        overlay_deletes: p.risk.changes.deletes.clone(),
        status,
        events,
        retry: next_look(&p, o.now),
        standing: Standing::Ready(Gauges {
            usable,
            types: p.decision.types.len(),
            spot_usd_per_hour: p.plan.totals.spot_usd_per_hour,
            on_demand_usd_per_hour: p.plan.totals.on_demand_usd_per_hour,
            savings_pct: p.plan.totals.savings_pct,
            shifted: matches!(p.shift.state.posture, Posture::Shifted { .. }),
            new_interruptions: p.shift.recorded.clone(),
            new_launch_failures: p.launch_failures.recorded.clone(),
            new_rebalances: p.rebalances.recorded.clone(),
        }),
    }
}

/// What Karpenter says of the NodePools a plan wants (their own `Ready` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PoolsReady {
    /// Every one Ready.
    Ready(String),
    /// Karpenter cannot use at least one: why.
    NotReady(String),
    /// Karpenter has not said yet (new, or no Karpenter running).
    Unknown(String),
}

fn pools_ready(o: &Observed, p: &Planned) -> PoolsReady {
    let mut not_ready = Vec::new();
    let mut unknown = Vec::new();
    for want in &p.pools {
        let Some(l) = live(o, &want.name) else {
            unknown.push(want.name.clone());
            continue;
        };
        let conditions = l.data["status"]["conditions"].as_array();
        let of = |t: &str| conditions?.iter().find(|c| c["type"] == t);
        let text = |c: &serde_json::Value| c["status"].as_str().unwrap_or("Unknown").to_string();
        match of("Ready").map(text).as_deref() {
            Some("True") => {}
            Some("False") => {
                let ready = of("Ready").expect("read above");
                // Karpenter's Ready names the dependent conditions that failed; say theirs.
                let causes: Vec<String> = conditions
                    .into_iter()
                    .flatten()
                    .filter(|c| c["type"] != "Ready" && c["status"] == "False")
                    .map(|c| {
                        format!(
                            "{}=False ({}: {})",
                            c["type"].as_str().unwrap_or_default(),
                            c["reason"].as_str().unwrap_or_default(),
                            c["message"].as_str().unwrap_or_default()
                        )
                    })
                    .collect();
                let why = if causes.is_empty() {
                    format!(
                        "{}: {}",
                        ready["reason"].as_str().unwrap_or_default(),
                        ready["message"].as_str().unwrap_or_default()
                    )
                } else {
                    causes.join("; ")
                };
                not_ready.push(format!("NodePool {} is not Ready: {why}", want.name));
            }
            _ => unknown.push(want.name.clone()),
        }
    }
    let names = || {
        p.pools
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !not_ready.is_empty() {
        PoolsReady::NotReady(format!(
            "Karpenter cannot launch from what spotplan wrote: {}",
            not_ready.join("; ")
        ))
    } else if !unknown.is_empty() {
        PoolsReady::Unknown(format!(
            "waiting for Karpenter to report NodePool {} Ready",
            unknown.join(", ")
        ))
    } else {
        PoolsReady::Ready(format!("Karpenter reports {} Ready", names()))
    }
}

/// The plan's NodePools it no longer wants: the on-demand base without `onDemandBase`, the
/// shift NodePool back on spot. Only those this plan owns.
fn deletes(o: &Observed, p: &Planned, uid: &str) -> Vec<Delete> {
    let mut out = Vec::new();
    let mut gone = |role: Role, note: Option<Note>| {
        let name = p.names.get(role);
        if let Some(l) = live(o, name).filter(|l| nodepools::owned_by(l, uid)) {
            out.push(Delete {
                role,
                name: name.to_string(),
                uid: l.uid().unwrap_or_default(),
                note,
            });
        }
    };
    if p.spec.on_demand_base.is_none() {
        gone(
            Role::OnDemandBase,
            Some(Note::normal(
                "OnDemandBaseRemoved",
                format!(
                    "deleted NodePool {}: spec.capacity.onDemandBase is gone",
                    p.names.on_demand
                ),
            )),
        );
    }
    if p.shift.state.posture == Posture::Spot {
        gone(Role::Shift, None);
    }
    out
}

/// When to look again without a change: a deferred narrowing, the shift's calm ending, and while
/// returning, every 10 s for the shift NodePool's nodes having moved back.
fn next_look(p: &Planned, now: Timestamp) -> Retry {
    let until = |at: Timestamp| {
        Duration::try_from(at.duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    };
    let premium_ends = p
        .risk
        .pricing
        .iter()
        .flat_map(|r| &r.zone_premiums)
        .map(|z| z.until)
        .min();
    let mut waits: Vec<Duration> = [p.decision.narrow_at, p.shift.wake_at, premium_ends]
        .into_iter()
        .flatten()
        .map(until)
        .collect();
    if matches!(p.shift.state.posture, Posture::Returning { .. }) {
        waits.push(Duration::from_secs(10));
    }
    waits
        .into_iter()
        .min()
        .map_or(Retry::OnChange, Retry::After)
}

/// The live NodePool called `name`, if the read step found one.
fn live<'o>(o: &Observed<'o>, name: &str) -> Option<&'o DynamicObject> {
    o.nodepools
        .iter()
        .find(|np| np.metadata.name.as_deref() == Some(name))
}

/// A name held by a NodePool this plan does not own is never taken over, nor one taken out of
/// its control.
fn check_owned(name: &str, live: Option<&DynamicObject>, uid: &str) -> Result<(), NotReady> {
    match live.map(|l| nodepools::ownership(l, uid)) {
        None | Some(Ownership::Ours) => Ok(()),
        Some(Ownership::Foreign) => Err(conflict(name)),
        Some(Ownership::Released) => Err(NotReady::new(
            Reason::NodePoolReleased,
            format!(
                "NodePool {name} was taken out of this SpotPlan's control: its owner reference to the SpotPlan was removed; spotplan does not take it back: restore the owner reference, or delete the NodePool and spotplan writes it again"
            ),
        )),
    }
}

/// `Ready=False, NodePoolConflict` for a NodePool named `name` that this plan does not own.
pub fn conflict(name: &str) -> NotReady {
    NotReady::new(
        Reason::NodePoolConflict,
        format!(
            "NodePool {name} exists and is not owned by this SpotPlan; spotplan never takes over a NodePool it does not own: rename the SpotPlan or remove that NodePool"
        ),
    )
}

/// `Ready=False, NodePoolRejected`: the API server refused a NodePool we built.
pub fn rejected(name: &str, message: &str) -> NotReady {
    NotReady::new(
        Reason::NodePoolRejected,
        format!("Karpenter's NodePool validation refused {name}: {message}; fix spec.nodePool"),
    )
}

/// Which of the logs [`Reported`] is kept in.
#[derive(Clone, Copy)]
enum Log {
    LaunchFailures,
    Rebalances,
}

/// A log in status with what the cluster reported since, kept as long as the interruptions are.
fn reported(o: &Observed, spec: &PlanSpec, which: Log) -> Reported {
    let status = o.plan.status.as_ref();
    let before = o.signals.seen_before.as_ref();
    let (old, seen) = match which {
        Log::LaunchFailures => (
            status.map(|s| {
                status::log_of(
                    &s.launch_failure_log,
                    &s.launch_failures_beyond_log,
                    s.launch_failure_log_trimmed_through.as_ref(),
                )
            }),
            shift::Seen {
                now: &o.signals.launch_failures,
                before: before.map(|b| &b.launch_failures),
            },
        ),
        Log::Rebalances => (
            status.map(|s| {
                status::log_of(
                    &s.rebalance_log,
                    &s.rebalances_beyond_log,
                    s.rebalance_log_trimmed_through.as_ref(),
                )
            }),
            shift::Seen {
                now: &o.signals.rebalances,
                before: before.map(|b| &b.rebalances),
            },
        ),
    };
    let (log, recorded) =
        old.unwrap_or_default()
            .record(seen, o.now, shift::memory(spec.shift.as_ref()));
    Reported { log, recorded }
}

/// The plan without the demoted types; with them if leaving them out leaves nothing.
fn plan_without_demoted(
    spec: PlanSpec,
    demoted: &BTreeSet<String>,
    market: &MarketData,
) -> Result<(PlanSpec, Plan), NotReady> {
    if !demoted.is_empty() {
        let mut without = spec.clone();
        without
            .request
            .exclude_types
            .extend(demoted.iter().cloned());
        if let Ok(plan) = optimize(&without.request, market) {
            return Ok((without, plan));
        }
    }
    let plan = optimize(&spec.request, market).map_err(|e| NotReady::from_plan_error(&e))?;
    Ok((spec, plan))
}

/// The churn rule over what is written now and the fresh plan.
fn list_step(
    o: &Observed,
    settings: &Settings,
    spec: &PlanSpec,
    (plan, priced): (&Plan, bool),
    market: &MarketData,
    spot_live: Option<&DynamicObject>,
) -> Result<ListDecision, NotReady> {
    let old = o.plan.status.clone().unwrap_or_default();
    // What we wrote last (our record in status), not what the NodePool says now: an edit by
    // someone else is repaired, not taken as the starting point.
    let written: Option<BTreeSet<String>> = spot_live.map(|l| {
        if old.instance_types.is_empty() {
            nodepools::live_types(l)
        } else {
            old.instance_types.iter().cloned().collect()
        }
    });
    let state = churn::State {
        written,
        last_narrowed: old
            .last_narrowed
            .iter()
            .chain(&old.last_written_fresh)
            .map(|t| t.0)
            .max(),
        marginal_since: old
            .over_ceiling
            .iter()
            .map(|c| (c.name.clone(), c.since.0))
            .collect(),
    };
    churn::step(
        &spec.request,
        plan,
        market,
        &state,
        churn::Moment {
            spec_changed: old.node_pool_generation != o.plan.metadata.generation,
            data_fresh: o.freshness.fresh,
            now: o.now,
        },
        churn::Tuning {
            min_interval: spec.min_narrow_interval,
            confirm: settings.confirm_over_ceiling,
            settle: settings.settle_over_default_cap,
            cap: spec.request.max_types.min(limits::MAX_WRITTEN_TYPES),
            priced,
        },
    )
    .map_err(|e| NotReady::from_plan_error(&e))
}

#[cfg(test)]
mod tests;
