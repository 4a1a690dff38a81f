//! The churn rule: which instance types to write, given what is written now and a fresh plan.
//!
//! Narrowing the list makes Karpenter replace the nodes of the removed types (drift); widening
//! costs nothing. The rule was tuned with `spotplan backtest` over the 2022 Spot Advisor series
//! (README, "Plan quality"); it is:
//! 1. No NodePool yet, or the spec changed: write the fresh plan (the user asked for it). The
//!    list counts as *reset* then.
//! 2. Data is stale: change nothing.
//! 3. Every written type is classified against today's request and the plan's interruption
//!    ceiling ([`Fit`]): a type that merely fell in rank still fits and is never removed (a
//!    reorder is not a change); a type rejected by another filter (it left the region, the
//!    spec excludes it, ...) is due at once; a type over the ceiling (or with no band now) is
//!    *over*, since the first decision that saw it over.
//! 4. A ceiling the user set (`maxInterruptionBand`) is hard: an over type is due `confirm`
//!    after it went over (seven days by default), so a band that moves back within the week
//!    costs nothing.
//! 5. A mode's default cap is soft. Bands trend and flap (in 2022 most written types crossed
//!    some band every few weeks), and a type that drifts one band over a default cap is not
//!    worth replacing nodes for on its own. Over types are due together, `settle` after the
//!    list was last reset or narrowed (120 days by default): the list is re-planned against the
//!    cap at most that often. Until then the status lists them (`overCeiling`).
//! 6. Due types are removed in one narrowing, no sooner than `min_interval` after the last
//!    reset or narrowing (until then the list only widens, and the plan comes back when the
//!    window opens). The narrowing takes every over type with it, due or not, and every type
//!    sitting exactly on a ceiling above band 0 while the list keeps `min_types`: their nodes
//!    are the next to be replaced, and one drift is cheaper than two.
//! 7. The list widens with the fresh plan's types in rank order while it holds fewer than
//!    `cap` (the request's `maxTypes`), admitting only types a band inside a ceiling above band
//!    0 (headroom), so a type that just came back under the ceiling does not flap in and out; a
//!    full list stops widening rather than narrowing to make room.
//!
//! 8. With risk pricing in force (`Tuning::priced`: Karpenter orders the list by the plan's
//!    risk-adjusted price, [`super::pricing`]), a type over a mode's default cap is never due
//!    and no narrowing takes it: it stays listed, priced after every type within the cap, so
//!    Karpenter asks for it last. The list narrows only for a type really gone (rejected by
//!    another filter) or over a ceiling the user set.
//!
//! With the defaults (confirm 7 days, min_interval 1 day) a type over a ceiling the user set
//! is written at most 8 days after it crossed it.

use super::after;
use crate::market::MarketData;
use crate::optimizer::{Fit, PlanError, Request, fit};
use crate::plan::{CeilingSource, Plan};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Default shortest time between two narrowings (the controller's --min-narrow-interval).
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Default time a type may stay over a ceiling the user set.
pub const DEFAULT_CONFIRM: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default time between re-plans of a list against a mode's default cap.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(120 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Created,
    SpecChanged,
    Unchanged,
    Widened,
    Narrowed,
    NarrowingDeferred,
    DataStale,
}

/// What a plan's list remembers between decisions (the operator keeps it in status).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// Types written now; `None` when nothing is written yet.
    pub written: Option<BTreeSet<String>>,
    /// When the list was last reset (created, spec changed) or narrowed.
    pub last_narrowed: Option<Timestamp>,
    /// Written types over the ceiling, since when.
    pub marginal_since: BTreeMap<String, Timestamp>,
}

/// The rule's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Shortest time between two narrowings (or a reset and a narrowing).
    pub min_interval: Duration,
    /// How long a type may stay over a ceiling the user set.
    pub confirm: Duration,
    /// How often at most a list is narrowed to a mode's default cap.
    pub settle: Duration,
    /// Most types the list may hold.
    pub cap: usize,
    /// Risk pricing is in force (rule 8): types over a default cap stay, priced last.
    pub priced: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListDecision {
    pub types: BTreeSet<String>,
    pub why: Why,
    /// Types dropped from what was written (a narrowing).
    pub removed: BTreeSet<String>,
    /// Types added to what was written.
    pub added: BTreeSet<String>,
    /// When to decide again without new data: a deferred narrowing, or an over type becoming
    /// due.
    pub narrow_at: Option<Timestamp>,
    /// Written types over the ceiling after this decision, since when.
    pub marginal_since: BTreeMap<String, Timestamp>,
}

impl ListDecision {
    /// Whether this decision resets the list or narrows it (the next `last_narrowed`).
    pub fn resets(&self) -> bool {
        self.written_fresh() || self.narrowed()
    }

    /// Whether the list is written fresh from the spec (created, or the spec changed).
    pub fn written_fresh(&self) -> bool {
        matches!(self.why, Why::Created | Why::SpecChanged)
    }

    /// Whether market data narrowed the list (a written type removed).
    pub fn narrowed(&self) -> bool {
        !self.written_fresh() && !self.removed.is_empty()
    }
}

pub struct Inputs<'a> {
    pub state: &'a State,
    /// The fresh plan's types in rank order.
    pub fresh_ranked: &'a [String],
    /// The fresh types a written list may widen with (headroom under the ceiling), in rank
    /// order.
    pub widen_ranked: &'a [String],
    /// How each written type fits today (types not in the map fit).
    pub fits: &'a BTreeMap<String, Fit>,
    /// Written types sitting exactly on a ceiling above band 0.
    pub at_edge: &'a BTreeSet<String>,
    /// Whether the ceiling is the user's own (hard) rather than the mode's default (soft).
    pub user_ceiling: bool,
    /// Fewest types the list should hold.
    pub min_types: usize,
    pub spec_changed: bool,
    pub data_fresh: bool,
    pub now: Timestamp,
    pub settings: Tuning,
}

/// `types` widened with `ranked` in order while it holds fewer than `cap`.
fn widen(mut types: BTreeSet<String>, ranked: &[String], cap: usize) -> BTreeSet<String> {
    for t in ranked {
        if types.len() >= cap {
            break;
        }
        types.insert(t.clone());
    }
    types
}

/// When a written type that fits as `fit`, over the ceiling since `since`, must go (`None`:
/// it may stay).
fn due_at(fit: Fit, since: Timestamp, i: &Inputs) -> Option<Timestamp> {
    match fit {
        Fit::Fits => None,
        Fit::Gone(_) => Some(i.now),
        Fit::Over { .. } if i.user_ceiling => Some(after(since, i.settings.confirm)),
        Fit::Over { .. } if i.settings.priced => None,
        // A list with no reset on record (written by an older controller) counts from when the
        // type was first seen over, so an upgrade does not narrow every plan at once.
        Fit::Over { .. } => Some(match i.state.last_narrowed {
            Some(reset) => since.max(after(reset, i.settings.settle)),
            None => after(since, i.settings.settle),
        }),
    }
}

/// Written types over the ceiling (since when), and those due now.
struct Classified {
    over: BTreeMap<String, Timestamp>,
    due: BTreeSet<String>,
    next_due: Option<Timestamp>,
}

fn classify(current: &BTreeSet<String>, i: &Inputs) -> Classified {
    let mut c = Classified {
        over: BTreeMap::new(),
        due: BTreeSet::new(),
        next_due: None,
    };
    for t in current {
        let fit = i.fits.get(t).copied().unwrap_or(Fit::Fits);
        let since = i.state.marginal_since.get(t).copied().unwrap_or(i.now);
        if let Fit::Over { .. } = fit {
            c.over.insert(t.clone(), since);
        }
        match due_at(fit, since, i) {
            Some(at) if at <= i.now => {
                c.due.insert(t.clone());
            }
            Some(at) => c.next_due = Some(c.next_due.map_or(at, |n| n.min(at))),
            None => {}
        }
    }
    c
}

/// The narrowing: every due and over type goes, and the types on the edge of the ceiling too
/// while the widened list keeps `min_types`.
fn narrow(current: &BTreeSet<String>, c: &Classified, i: &Inputs, cap: usize) -> BTreeSet<String> {
    // Priced under a default cap, over types stay (rule 8); otherwise they go with the due.
    let keep_over = i.settings.priced && !i.user_ceiling;
    let mut kept: BTreeSet<String> = current
        .iter()
        .filter(|t| !c.due.contains(*t) && (keep_over || !c.over.contains_key(*t)))
        .cloned()
        .collect();
    let without_edge: BTreeSet<String> = kept.difference(i.at_edge).cloned().collect();
    let widened = widen(without_edge, i.widen_ranked, cap);
    if widened.len() >= i.min_types.max(1) {
        return widened;
    }
    kept = widen(kept, i.widen_ranked, cap);
    widen(kept, i.fresh_ranked, i.min_types.min(cap))
}

pub fn decide(i: &Inputs) -> ListDecision {
    let fresh: BTreeSet<String> = i.fresh_ranked.iter().cloned().collect();
    let settled = |current: Option<&BTreeSet<String>>, types: BTreeSet<String>, why| {
        let empty = BTreeSet::new();
        let cur = current.unwrap_or(&empty);
        ListDecision {
            removed: cur.difference(&types).cloned().collect(),
            added: types.difference(cur).cloned().collect(),
            types,
            why,
            narrow_at: None,
            marginal_since: BTreeMap::new(),
        }
    };
    let Some(current) = i.state.written.as_ref() else {
        return settled(None, fresh, Why::Created);
    };
    if i.spec_changed {
        return settled(Some(current), fresh, Why::SpecChanged);
    }
    if !i.data_fresh {
        return ListDecision {
            marginal_since: i.state.marginal_since.clone(),
            ..settled(Some(current), current.clone(), Why::DataStale)
        };
    }
    let c = classify(current, i);
    let cap = i.settings.cap.max(1);
    let window = i
        .state
        .last_narrowed
        .map(|t| after(t, i.settings.min_interval));
    if c.due.is_empty() {
        let types = widen(current.clone(), i.widen_ranked, cap);
        let why = if types == *current {
            Why::Unchanged
        } else {
            Why::Widened
        };
        return ListDecision {
            marginal_since: c.over,
            narrow_at: c.next_due,
            ..settled(Some(current), types, why)
        };
    }
    if let Some(at) = window.filter(|at| *at > i.now) {
        // Narrow when the window opens; meanwhile keep everything, due types included.
        let types = widen(current.clone(), i.widen_ranked, cap);
        return ListDecision {
            marginal_since: c.over,
            narrow_at: Some(at),
            ..settled(Some(current), types, Why::NarrowingDeferred)
        };
    }
    let types = narrow(current, &c, i, cap);
    ListDecision {
        marginal_since: BTreeMap::new(),
        narrow_at: None,
        ..settled(Some(current), types, Why::Narrowed)
    }
}

/// When a step is taken: whether the spec changed since the list was written, whether the data is
/// fresh, and the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub spec_changed: bool,
    pub data_fresh: bool,
    pub now: Timestamp,
}

/// The operator's step, pure: how the written types fit today under `plan`'s ceiling, then
/// [`decide`]. The backtest replays exactly this.
pub fn step(
    req: &Request,
    plan: &Plan,
    market: &MarketData,
    state: &State,
    at: Moment,
    settings: Tuning,
) -> Result<ListDecision, PlanError> {
    let Moment {
        spec_changed,
        data_fresh,
        now,
    } = at;
    let written: Vec<String> = state.written.iter().flatten().cloned().collect();
    let ceiling = plan.interruption_ceiling;
    let fits: BTreeMap<String, Fit> = written
        .iter()
        .cloned()
        .zip(fit(req, market, ceiling, &written)?)
        .collect();
    let edge =
        |b: Option<u8>| matches!((ceiling.band, b), (Some(max), Some(b)) if max > 0 && b == max);
    let at_edge: BTreeSet<String> = written
        .iter()
        .zip(crate::optimizer::bands(req, market, &written)?)
        .filter(|(_, b)| edge(*b))
        .map(|(t, _)| t.clone())
        .collect();
    let ranked: Vec<String> = plan
        .candidates
        .iter()
        .map(|c| c.instance_type.clone())
        .collect();
    let widen_ranked: Vec<String> = plan
        .candidates
        .iter()
        .filter(|c| !edge(c.interruption_band))
        .map(|c| c.instance_type.clone())
        .collect();
    Ok(decide(&Inputs {
        state,
        fresh_ranked: &ranked,
        widen_ranked: &widen_ranked,
        fits: &fits,
        at_edge: &at_edge,
        user_ceiling: plan.interruption_ceiling.source == CeilingSource::User,
        min_types: req.min_types,
        spec_changed,
        data_fresh,
        now,
        settings,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::Filter;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }
    fn ranked(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }
    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const DAY: Duration = Duration::from_secs(24 * 3600);
    const OVER: Fit = Fit::Over {
        by: 1,
        band: Some(3),
    };

    fn settings() -> Tuning {
        Tuning {
            min_interval: DAY,
            confirm: 7 * DAY,
            settle: 30 * DAY,
            cap: 6,
            priced: false,
        }
    }

    fn state(written: &[&str]) -> State {
        State {
            written: Some(set(written)),
            ..State::default()
        }
    }

    struct Case<'a> {
        state: &'a State,
        fresh: Vec<String>,
        widen: Option<Vec<String>>,
        fits: BTreeMap<String, Fit>,
        edge: BTreeSet<String>,
        user: bool,
        min_types: usize,
    }

    impl<'a> Case<'a> {
        fn new(state: &'a State, fresh: &[&str], fits: &[(&str, Fit)]) -> Self {
            Case {
                state,
                fresh: ranked(fresh),
                widen: None,
                fits: fits.iter().map(|(t, f)| (t.to_string(), *f)).collect(),
                edge: BTreeSet::new(),
                user: true,
                min_types: 1,
            }
        }
        fn at(&self, now: &str) -> ListDecision {
            decide(&Inputs {
                state: self.state,
                fresh_ranked: &self.fresh,
                widen_ranked: self.widen.as_ref().unwrap_or(&self.fresh),
                fits: &self.fits,
                at_edge: &self.edge,
                user_ceiling: self.user,
                min_types: self.min_types,
                spec_changed: false,
                data_fresh: true,
                now: ts(now),
                settings: settings(),
            })
        }
    }

    #[test]
    fn a_reorder_writes_nothing() {
        let s = state(&["a", "b", "c"]);
        let d = Case::new(&s, &["c", "a", "b"], &[]).at("2026-11-23T12:00:00Z");
        assert_eq!((d.why, d.types), (Why::Unchanged, set(&["a", "b", "c"])));
    }

    #[test]
    fn a_type_that_fell_out_of_the_top_stays_and_new_ones_widen() {
        let s = state(&["a", "b", "c"]);
        let d = Case::new(&s, &["a", "b", "d"], &[]).at("2026-11-23T12:00:00Z");
        assert_eq!(d.why, Why::Widened);
        assert_eq!(d.types, set(&["a", "b", "c", "d"]));
        assert!(d.removed.is_empty());
    }

    #[test]
    fn a_gone_type_is_removed_once_the_interval_passed() {
        let mut s = state(&["a", "b", "c"]);
        s.last_narrowed = Some(ts("2026-11-23T06:00:00Z"));
        let gone = [("c", Fit::Gone(Filter::Region))];
        let d = Case::new(&s, &["a", "b", "d"], &gone).at("2026-11-23T12:00:00Z");
        assert_eq!(d.why, Why::NarrowingDeferred);
        assert_eq!(d.types, set(&["a", "b", "c", "d"]));
        assert_eq!(d.narrow_at, Some(ts("2026-11-24T06:00:00Z")));
        s.last_narrowed = Some(ts("2026-11-22T06:00:00Z"));
        let d = Case::new(&s, &["a", "b", "d"], &gone).at("2026-11-23T12:00:00Z");
        assert_eq!(
            (d.why, d.types.clone()),
            (Why::Narrowed, set(&["a", "b", "d"]))
        );
        assert_eq!(d.removed, set(&["c"]));
        assert!(d.resets());
    }

    #[test]
    fn over_a_ceiling_the_user_set_a_type_goes_after_confirm_unless_it_comes_back() {
        let s = state(&["a", "b", "c"]);
        let c = Case::new(&s, &["a", "b"], &[("c", OVER)]);
        let d = c.at("2026-11-01T00:00:00Z");
        assert_eq!(
            (d.why, d.types.clone()),
            (Why::Unchanged, set(&["a", "b", "c"]))
        );
        assert_eq!(
            d.marginal_since,
            BTreeMap::from([("c".to_string(), ts("2026-11-01T00:00:00Z"))])
        );
        assert_eq!(d.narrow_at, Some(ts("2026-11-08T00:00:00Z")), "due then");
        let s2 = State {
            marginal_since: d.marginal_since.clone(),
            ..s.clone()
        };
        let c2 = Case::new(&s2, &["a", "b"], &[("c", OVER)]);
        assert_eq!(c2.at("2026-11-07T23:59:59Z").why, Why::Unchanged);
        let d = c2.at("2026-11-08T00:00:00Z");
        assert_eq!((d.why, d.removed), (Why::Narrowed, set(&["c"])));
        // Back within the ceiling in between: forgotten.
        let d = Case::new(&s2, &["a", "b"], &[]).at("2026-11-05T00:00:00Z");
        assert!(d.marginal_since.is_empty());
        assert_eq!(d.why, Why::Unchanged);
    }

    #[test]
    fn over_a_default_cap_types_wait_for_the_settle_and_then_leave_together() {
        let mut s = state(&["a", "b", "c", "d"]);
        s.last_narrowed = Some(ts("2026-11-01T00:00:00Z"));
        let two_over = Fit::Over {
            by: 2,
            band: Some(4),
        };
        let mut c = Case::new(&s, &["a", "b"], &[("c", OVER), ("d", two_over)]);
        c.user = false;
        let d = c.at("2026-11-20T00:00:00Z");
        assert_eq!(d.why, Why::Unchanged, "two bands over waits as well");
        assert_eq!(d.narrow_at, Some(ts("2026-12-01T00:00:00Z")));
        let s2 = State {
            marginal_since: d.marginal_since.clone(),
            ..s.clone()
        };
        c.state = &s2;
        let d = c.at("2026-12-01T00:00:00Z");
        assert_eq!(d.why, Why::Narrowed);
        assert_eq!(d.removed, set(&["c", "d"]), "one narrowing for both");
        // A list with no reset on record (an older controller's status) counts from when the
        // type was first seen over: an upgrade does not narrow every plan at once.
        let s3 = state(&["a", "b", "c"]);
        let mut c = Case::new(&s3, &["a", "b"], &[("c", OVER)]);
        c.user = false;
        let d = c.at("2026-11-20T00:00:00Z");
        assert_eq!(d.why, Why::Unchanged);
        assert_eq!(d.narrow_at, Some(ts("2026-12-20T00:00:00Z")));
    }

    #[test]
    fn a_narrowing_takes_every_over_type_and_the_edge_while_min_types_holds() {
        let s = state(&["a", "b", "c", "e1", "e2"]);
        let gone = Fit::Gone(Filter::NodeCount);
        let mut c = Case::new(&s, &["a", "b", "x"], &[("c", gone)]);
        c.widen = Some(ranked(&["a", "b"]));
        c.edge = set(&["e1", "e2"]);
        c.min_types = 2;
        let d = c.at("2026-11-20T00:00:00Z");
        assert_eq!(d.why, Why::Narrowed);
        assert_eq!(d.types, set(&["a", "b"]), "edge types went with c");
        c.min_types = 3;
        let d = c.at("2026-11-20T00:00:00Z");
        assert_eq!(
            d.types,
            set(&["a", "b", "e1", "e2"]),
            "edge types stay when the list would fall below minTypes"
        );
    }

    #[test]
    fn widening_admits_only_types_with_headroom() {
        let s = state(&["a"]);
        let mut c = Case::new(&s, &["e", "b"], &[]);
        c.widen = Some(ranked(&["b"]));
        let d = c.at("2026-11-20T00:00:00Z");
        assert_eq!((d.why, d.types), (Why::Widened, set(&["a", "b"])));
    }

    #[test]
    fn spec_changes_apply_at_once_and_stale_data_freezes() {
        let s = State {
            last_narrowed: Some(ts("2026-11-23T12:00:00Z")),
            ..state(&["a", "b", "c"])
        };
        let fresh = ranked(&["x"]);
        let fits = BTreeMap::new();
        let edge = BTreeSet::new();
        let mut i = Inputs {
            state: &s,
            fresh_ranked: &fresh,
            widen_ranked: &fresh,
            fits: &fits,
            at_edge: &edge,
            user_ceiling: true,
            min_types: 1,
            spec_changed: true,
            data_fresh: true,
            now: ts("2026-11-23T12:00:00Z"),
            settings: settings(),
        };
        let d = decide(&i);
        assert_eq!(d.types, set(&["x"]));
        assert!(d.resets());
        i.spec_changed = false;
        i.data_fresh = false;
        assert_eq!(decide(&i).why, Why::DataStale);
    }

    #[test]
    fn a_full_list_stops_widening_instead_of_narrowing() {
        let s = state(&["a", "b", "c", "d", "e"]);
        let d = Case::new(&s, &["f", "g", "h"], &[]).at("2026-11-23T12:00:00Z");
        assert_eq!(d.why, Why::Widened);
        assert_eq!(d.types.len(), 6);
        assert!(d.removed.is_empty());
        assert!(d.types.contains("f"), "the best new type comes first");
    }
}
