//! The on-demand shift: what a plan's own interruptions say about where its new capacity should
//! go. Pure: the interruptions the cluster saw (deduplicated by NodeClaim uid) and the clock in,
//! a posture out.
//!
//! The rule (`spec.capacity.onDemandShift: {interruptions: N, window, calm}`):
//! 1. **Shift.** When at least N interruptions of the plan's spot nodes fall within `window`,
//!    new capacity goes on-demand ([`Posture::Shifted`]). Running spot nodes are not touched.
//! 2. **Return.** Once `calm` has passed since the last interruption, spot outranks on-demand
//!    again ([`Posture::Returning`]): the shift's on-demand nodes are moved back to spot one at a
//!    time (the operator makes them drift under a one-node budget) until none is left, then the
//!    plan is back on [`Posture::Spot`]. N interruptions within `window` while returning shift it
//!    again. Removing `onDemandShift` while shifted returns the same way.
//! 3. **Demote.** A type interrupted at least [`DEMOTE_AFTER`] times in one zone within `window`
//!    is demoted: it is left out of the plan's new list (the churn rule narrows it out like any
//!    type that no longer fits, under the plan's drift budget and `minNarrowInterval`). It comes
//!    back once it has gone `calm` without an interruption (hysteresis: the window that demotes
//!    it is not the one that restores it). An interruption whose type or zone is [`UNKNOWN`]
//!    counts toward the shift but demotes nothing.
//! 4. **Memory.** The log keeps interruptions for [`memory`] (the longer of `window` and `calm`,
//!    at least a day) and at most [`LOG_LIMIT`] entries, newest kept ([`Log`]). What the limit
//!    pushes out is still counted, per (type, zone) ([`Log::beyond`]), and never recorded twice
//!    ([`Log::trimmed_through`]): `observedInterruptions` in status counts both, as the
//!    interruptions metric does.

use super::{after, before};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Interruptions of one type in one zone within the window that demote it.
pub const DEMOTE_AFTER: usize = 2;
/// The type or zone of an interruption whose NodeClaim no longer says (it was gone before the
/// controller could read it).
pub const UNKNOWN: &str = "unknown";
/// Most interruptions the log keeps.
pub const LOG_LIMIT: usize = 500;

/// `spec.capacity.onDemandShift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShiftSpec {
    pub interruptions: u32,
    pub window: Duration,
    pub calm: Duration,
}

/// What an `onDemandShift` leaves unset: the policy the simulated interruption stream chose
/// (README, "Choosing the shift's defaults"; `tests/shift_sim.rs` re-derives it).
pub const DEFAULT: ShiftSpec = ShiftSpec {
    interruptions: 6,
    window: Duration::from_secs(6 * 3600),
    calm: Duration::from_secs(24 * 3600),
};

/// One spot interruption of one of the plan's NodeClaims.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interruption {
    pub at: Timestamp,
    /// The NodeClaim's uid: each is counted once.
    pub uid: String,
    pub instance_type: String,
    pub zone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Posture {
    #[default]
    Spot,
    /// New capacity goes on-demand, since then.
    Shifted { since: Timestamp },
    /// Spot again for new capacity; the shift's on-demand nodes are moving back, since then.
    Returning { since: Timestamp },
}

/// The interruptions (or launch failures) of a plan's NodeClaims within memory, one per uid.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Log {
    /// The newest [`LOG_LIMIT`], oldest first.
    pub entries: Vec<Interruption>,
    /// What the limit pushed out of `entries`, counted per (type, zone); a count leaves once its
    /// newest interruption is older than memory.
    pub beyond: Vec<Observed>,
    /// The last entry (in `(at, uid)` order) the limit pushed out: whatever is seen at or before
    /// it and is not in `entries` was recorded already.
    pub trimmed_through: Option<(Timestamp, String)>,
}

/// What the cluster reports, and what it reported at the last decision made with the same
/// memory (every uid seen then was recorded then, or known already).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub now: &'a [Interruption],
    /// The uids seen at the last decision; `None` when there was none to remember (a new
    /// process): the log's `trimmed_through` then stands in for what the limit pushed out.
    pub before: Option<&'a BTreeSet<String>>,
}

impl<'a> Seen<'a> {
    /// `now`, with nothing remembered from before.
    pub fn only(now: &'a [Interruption]) -> Seen<'a> {
        Seen { now, before: None }
    }
}

impl Log {
    /// The log with `seen` added (each uid once), trimmed to `memory` before `now` and to
    /// [`LOG_LIMIT`] entries; and the interruptions that were new. A uid is new unless the log
    /// holds it or it was seen at the last decision; without that memory, unless it is at or
    /// before `trimmed_through` (an Event created in the same second as the last one pushed out,
    /// and seen only later, is then taken as counted).
    pub fn record(&self, seen: Seen, now: Timestamp, memory: Duration) -> (Log, Vec<Interruption>) {
        let oldest = before(now, memory);
        let known: BTreeSet<&str> = self.entries.iter().map(|i| i.uid.as_str()).collect();
        let counted_before = |i: &Interruption| match seen.before {
            Some(uids) => uids.contains(&i.uid),
            None => self
                .trimmed_through
                .as_ref()
                .is_some_and(|(t, u)| (i.at, i.uid.as_str()) <= (*t, u.as_str())),
        };
        let mut fresh: Vec<Interruption> = Vec::new();
        for i in seen.now {
            if i.at > oldest
                && !known.contains(i.uid.as_str())
                && !counted_before(i)
                && !fresh.iter().any(|f| f.uid == i.uid)
            {
                fresh.push(i.clone());
            }
        }
        let mut entries: Vec<Interruption> = self
            .entries
            .iter()
            .chain(&fresh)
            .filter(|i| i.at > oldest)
            .cloned()
            .collect();
        entries.sort();
        let mut beyond: Vec<Observed> = self
            .beyond
            .iter()
            .filter(|o| o.last_seen > oldest)
            .cloned()
            .collect();
        let mut trimmed_through = self.trimmed_through.clone().filter(|(t, _)| *t > oldest);
        if entries.len() > LOG_LIMIT {
            for i in entries.drain(..entries.len() - LOG_LIMIT) {
                count_in(&mut beyond, &i);
                trimmed_through = Some((i.at, i.uid));
            }
        }
        let log = Log {
            entries,
            beyond,
            trimmed_through,
        };
        (log, fresh)
    }

    /// Entries and the counts beyond them, per (type, zone).
    pub fn observed(&self) -> Vec<Observed> {
        let mut all = self.beyond.clone();
        for i in &self.entries {
            count_in(&mut all, i);
        }
        all.sort_by(|a, b| (&a.instance_type, &a.zone).cmp(&(&b.instance_type, &b.zone)));
        all
    }

    /// Interruptions after `from`: the entries, and the counts beyond them whose newest is after
    /// it (they are the oldest, so this errs toward counting).
    pub fn count_after(&self, from: Timestamp) -> usize {
        self.entries.iter().filter(|i| i.at > from).count()
            + self
                .beyond
                .iter()
                .filter(|o| o.last_seen > from)
                .map(|o| o.count)
                .sum::<usize>()
    }

    /// The newest interruption.
    pub fn last(&self) -> Option<Timestamp> {
        let beyond = self.beyond.iter().map(|o| o.last_seen).max();
        self.entries.last().map(|i| i.at).max(beyond)
    }

    /// Every interruption it counts.
    pub fn total(&self) -> usize {
        self.entries.len() + self.beyond.iter().map(|o| o.count).sum::<usize>()
    }
}

fn count_in(counts: &mut Vec<Observed>, i: &Interruption) {
    match counts
        .iter_mut()
        .find(|o| o.instance_type == i.instance_type && o.zone == i.zone)
    {
        Some(o) => {
            o.count += 1;
            o.last_seen = o.last_seen.max(i.at);
        }
        None => counts.push(Observed {
            instance_type: i.instance_type.clone(),
            zone: i.zone.clone(),
            count: 1,
            last_seen: i.at,
        }),
    }
}

/// What the plan remembers (the operator keeps it in status).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShiftState {
    /// Interruptions within memory.
    pub log: Log,
    pub posture: Posture,
    /// Demoted types.
    pub demoted: BTreeSet<String>,
    /// When the last shift ended (calm): interruptions up to then led to that shift and do not
    /// count toward the next.
    pub returned_at: Option<Timestamp>,
}

/// A move the operator announces (as an Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    Shifted {
        count: usize,
    },
    Returned,
    BackOnSpot,
    Demoted {
        instance_type: String,
        zone: String,
        count: usize,
    },
    Restored {
        instance_type: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShiftDecision {
    pub state: ShiftState,
    pub moves: Vec<Move>,
    /// Interruptions new to the log in this decision.
    pub recorded: Vec<Interruption>,
    /// When to decide again without a new interruption (calm ending, a demotion lifting).
    pub wake_at: Option<Timestamp>,
}

/// Per (type, zone): how many interruptions the log holds and the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub instance_type: String,
    pub zone: String,
    pub count: usize,
    pub last_seen: Timestamp,
}

/// How long the log keeps an interruption: the shift's window and calm, and at least as long as
/// risk pricing's learned premiums last.
pub fn memory(spec: Option<&ShiftSpec>) -> Duration {
    let least = super::pricing::DEFAULT_LEARNED.calm;
    spec.map_or(least, |s| s.window.max(s.calm).max(least))
}

/// The posture, demotions and moves after `seen` interruptions at `now`. `shift_nodes` is how
/// many nodes the shift's on-demand NodePool still has (the return ends at zero).
pub fn decide(
    spec: Option<&ShiftSpec>,
    state: &ShiftState,
    seen: Seen,
    shift_nodes: usize,
    now: Timestamp,
) -> ShiftDecision {
    let (log, recorded) = state.log.record(seen, now, memory(spec));
    let mut moves = Vec::new();
    let mut wake: Vec<Timestamp> = Vec::new();
    let last = log.last();
    let mut returned_at = state.returned_at;
    let posture = match spec {
        None => match state.posture {
            Posture::Shifted { .. } => {
                moves.push(Move::Returned);
                returned_at = Some(now);
                Posture::Returning { since: now }
            }
            p => p,
        },
        Some(s) => {
            let from = before(now, s.window).max(state.returned_at.unwrap_or(Timestamp::MIN));
            let in_window = log.count_after(from);
            let calm_at = last.map(|l| after(l, s.calm));
            match state.posture {
                Posture::Shifted { since } => match calm_at {
                    Some(at) if at > now => {
                        wake.push(at);
                        Posture::Shifted { since }
                    }
                    _ => {
                        moves.push(Move::Returned);
                        returned_at = Some(now);
                        Posture::Returning { since: now }
                    }
                },
                _ if in_window >= s.interruptions.max(1) as usize => {
                    moves.push(Move::Shifted { count: in_window });
                    if let Some(at) = calm_at {
                        wake.push(at);
                    }
                    Posture::Shifted { since: now }
                }
                p => p,
            }
        }
    };
    let posture = match posture {
        Posture::Returning { .. } if shift_nodes == 0 => {
            moves.push(Move::BackOnSpot);
            Posture::Spot
        }
        p => p,
    };
    let demoted = demotions(spec, state, &log.entries, now, &mut moves, &mut wake);
    ShiftDecision {
        state: ShiftState {
            log,
            posture,
            demoted,
            returned_at,
        },
        moves,
        recorded,
        wake_at: wake.into_iter().min(),
    }
}

fn demotions(
    spec: Option<&ShiftSpec>,
    state: &ShiftState,
    log: &[Interruption],
    now: Timestamp,
    moves: &mut Vec<Move>,
    wake: &mut Vec<Timestamp>,
) -> BTreeSet<String> {
    let Some(s) = spec else {
        for t in &state.demoted {
            moves.push(Move::Restored {
                instance_type: t.clone(),
            });
        }
        return BTreeSet::new();
    };
    let mut per_zone: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut last_of: BTreeMap<&str, Timestamp> = BTreeMap::new();
    for i in log
        .iter()
        .filter(|i| i.instance_type != UNKNOWN && i.zone != UNKNOWN)
    {
        if i.at > before(now, s.window) {
            *per_zone.entry((&i.instance_type, &i.zone)).or_default() += 1;
        }
        let e = last_of.entry(&i.instance_type).or_insert(i.at);
        *e = (*e).max(i.at);
    }
    let mut demoted = BTreeSet::new();
    for ((t, z), n) in &per_zone {
        if *n >= DEMOTE_AFTER && demoted.insert(t.to_string()) && !state.demoted.contains(*t) {
            moves.push(Move::Demoted {
                instance_type: t.to_string(),
                zone: z.to_string(),
                count: *n,
            });
        }
    }
    for t in &state.demoted {
        if demoted.contains(t) {
            continue;
        }
        match last_of.get(t.as_str()).map(|l| after(*l, s.calm)) {
            Some(at) if at > now => {
                wake.push(at);
                demoted.insert(t.clone());
            }
            _ => moves.push(Move::Restored {
                instance_type: t.clone(),
            }),
        }
    }
    for t in &demoted {
        if let Some(at) = last_of.get(t.as_str()).map(|l| after(*l, s.calm))
            && at > now
        {
            wake.push(at);
        }
    }
    demoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const MIN: Duration = Duration::from_secs(60);

    fn spec() -> ShiftSpec {
        ShiftSpec {
            interruptions: 3,
            window: 10 * MIN,
            calm: 30 * MIN,
        }
    }

    fn int(uid: &str, ty: &str, zone: &str, at: &str) -> Interruption {
        Interruption {
            at: ts(at),
            uid: uid.into(),
            instance_type: ty.into(),
            zone: zone.into(),
        }
    }

    fn log(entries: Vec<Interruption>) -> Log {
        Log {
            entries,
            ..Log::default()
        }
    }

    #[test]
    fn n_interruptions_within_the_window_shift_and_fewer_do_not() {
        let s = spec();
        let seen = [
            int("a", "m5.large", "z1", "2026-11-24T10:00:00Z"),
            int("b", "c5.large", "z2", "2026-11-24T10:05:00Z"),
        ];
        let d = decide(
            Some(&s),
            &ShiftState::default(),
            Seen::only(&seen),
            0,
            ts("2026-11-24T10:06:00Z"),
        );
        assert_eq!(d.state.posture, Posture::Spot);
        assert_eq!(d.recorded.len(), 2);
        // The third, but the first has left the window.
        let late = [int("c", "r5.large", "z1", "2026-11-24T10:11:00Z")];
        let d2 = decide(
            Some(&s),
            &d.state,
            Seen::only(&late),
            0,
            ts("2026-11-24T10:11:00Z"),
        );
        assert_eq!(d2.state.posture, Posture::Spot);
        // The same uid again counts once.
        let again = [int("c", "r5.large", "z1", "2026-11-24T10:11:00Z")];
        let d3 = decide(
            Some(&s),
            &d2.state,
            Seen::only(&again),
            0,
            ts("2026-11-24T10:12:00Z"),
        );
        assert!(d3.recorded.is_empty());
        assert_eq!(d3.state.posture, Posture::Spot);
        let more = [int("d", "r5.large", "z2", "2026-11-24T10:12:00Z")];
        let d4 = decide(
            Some(&s),
            &d3.state,
            Seen::only(&more),
            0,
            ts("2026-11-24T10:12:00Z"),
        );
        assert_eq!(
            d4.state.posture,
            Posture::Shifted {
                since: ts("2026-11-24T10:12:00Z")
            }
        );
        assert_eq!(d4.moves, vec![Move::Shifted { count: 3 }]);
        assert_eq!(
            d4.wake_at,
            Some(ts("2026-11-24T10:42:00Z")),
            "calm ends then"
        );
    }

    #[test]
    fn the_return_waits_for_calm_and_ends_when_the_shift_pool_is_empty() {
        let s = spec();
        let state = ShiftState {
            log: log(vec![int("a", "m5.large", "z1", "2026-11-24T10:00:00Z")]),
            posture: Posture::Shifted {
                since: ts("2026-11-24T10:00:00Z"),
            },
            ..ShiftState::default()
        };
        let d = decide(
            Some(&s),
            &state,
            Seen::only(&[]),
            4,
            ts("2026-11-24T10:29:59Z"),
        );
        assert!(matches!(d.state.posture, Posture::Shifted { .. }));
        let d = decide(
            Some(&s),
            &state,
            Seen::only(&[]),
            4,
            ts("2026-11-24T10:30:00Z"),
        );
        assert_eq!(
            d.state.posture,
            Posture::Returning {
                since: ts("2026-11-24T10:30:00Z")
            }
        );
        assert_eq!(d.moves, vec![Move::Returned]);
        // Still nodes to move back: returning; none: spot.
        let d2 = decide(
            Some(&s),
            &d.state,
            Seen::only(&[]),
            2,
            ts("2026-11-24T10:40:00Z"),
        );
        assert!(matches!(d2.state.posture, Posture::Returning { .. }));
        let d3 = decide(
            Some(&s),
            &d2.state,
            Seen::only(&[]),
            0,
            ts("2026-11-24T10:41:00Z"),
        );
        assert_eq!(
            (d3.state.posture, d3.moves),
            (Posture::Spot, vec![Move::BackOnSpot])
        );
    }

    #[test]
    fn the_interruptions_behind_a_shift_do_not_shift_it_again() {
        let s = spec();
        let state = ShiftState {
            log: log((0..3)
                .map(|i| int(&format!("u{i}"), "m5.large", "z1", "2026-11-24T10:00:00Z"))
                .collect()),
            posture: Posture::Shifted {
                since: ts("2026-11-24T10:00:00Z"),
            },
            ..ShiftState::default()
        };
        let long = ShiftSpec {
            window: 60 * MIN,
            ..s
        };
        let d = decide(
            Some(&long),
            &state,
            Seen::only(&[]),
            2,
            ts("2026-11-24T10:30:00Z"),
        );
        assert!(matches!(d.state.posture, Posture::Returning { .. }));
        // Still within the hour, the same three interruptions must not shift it back.
        let d2 = decide(
            Some(&long),
            &d.state,
            Seen::only(&[]),
            2,
            ts("2026-11-24T10:31:00Z"),
        );
        assert!(
            matches!(d2.state.posture, Posture::Returning { .. }),
            "{:?}",
            d2.moves
        );
        // Three new ones do.
        let new: Vec<Interruption> = (3..6)
            .map(|i| int(&format!("u{i}"), "m5.large", "z1", "2026-11-24T10:32:00Z"))
            .collect();
        let d3 = decide(
            Some(&long),
            &d2.state,
            Seen::only(&new),
            2,
            ts("2026-11-24T10:32:00Z"),
        );
        assert!(matches!(d3.state.posture, Posture::Shifted { .. }));
    }

    #[test]
    fn an_interruption_during_the_shift_restarts_the_calm() {
        let s = spec();
        let state = ShiftState {
            log: log(vec![int("a", "m5.large", "z1", "2026-11-24T10:00:00Z")]),
            posture: Posture::Shifted {
                since: ts("2026-11-24T10:00:00Z"),
            },
            ..ShiftState::default()
        };
        let seen = [int("b", "c5.large", "z1", "2026-11-24T10:20:00Z")];
        let d = decide(
            Some(&s),
            &state,
            Seen::only(&seen),
            1,
            ts("2026-11-24T10:31:00Z"),
        );
        assert!(matches!(d.state.posture, Posture::Shifted { .. }));
        assert_eq!(d.wake_at, Some(ts("2026-11-24T10:50:00Z")));
    }

    #[test]
    fn without_the_spec_nothing_shifts_and_a_shift_returns() {
        let seen: Vec<Interruption> = (0..10)
            .map(|i| int(&format!("u{i}"), "m5.large", "z1", "2026-11-24T10:00:00Z"))
            .collect();
        let d = decide(
            None,
            &ShiftState::default(),
            Seen::only(&seen),
            0,
            ts("2026-11-24T10:00:00Z"),
        );
        assert_eq!(d.state.posture, Posture::Spot);
        assert!(d.state.demoted.is_empty());
        assert_eq!(d.state.log.total(), 10, "still observed");
        let shifted = ShiftState {
            posture: Posture::Shifted {
                since: ts("2026-11-24T09:00:00Z"),
            },
            ..ShiftState::default()
        };
        let d = decide(
            None,
            &shifted,
            Seen::only(&[]),
            3,
            ts("2026-11-24T10:00:00Z"),
        );
        assert!(matches!(d.state.posture, Posture::Returning { .. }));
    }

    #[test]
    fn interruptions_of_unknown_type_or_zone_shift_but_demote_nothing() {
        let seen = [
            int("a", UNKNOWN, UNKNOWN, "2026-11-24T10:00:00Z"),
            int("b", UNKNOWN, UNKNOWN, "2026-11-24T10:01:00Z"),
            int("c", UNKNOWN, "z1", "2026-11-24T10:02:00Z"),
            int("d", UNKNOWN, "z1", "2026-11-24T10:02:30Z"),
            int("e", "m5.large", UNKNOWN, "2026-11-24T10:03:00Z"),
            int("f", "m5.large", UNKNOWN, "2026-11-24T10:03:30Z"),
        ];
        let d = decide(
            Some(&spec()),
            &ShiftState::default(),
            Seen::only(&seen),
            0,
            ts("2026-11-24T10:04:00Z"),
        );
        assert!(matches!(d.state.posture, Posture::Shifted { .. }));
        assert!(d.state.demoted.is_empty(), "{:?}", d.state.demoted);
        assert!(
            !d.moves.iter().any(|m| matches!(m, Move::Demoted { .. })),
            "{:?}",
            d.moves
        );
    }

    #[test]
    fn a_type_interrupted_twice_in_a_zone_is_demoted_until_calm() {
        let s = ShiftSpec {
            interruptions: 10,
            ..spec()
        };
        let seen = [
            int("a", "m5.large", "z1", "2026-11-24T10:00:00Z"),
            int("b", "m5.large", "z2", "2026-11-24T10:01:00Z"),
        ];
        let d = decide(
            Some(&s),
            &ShiftState::default(),
            Seen::only(&seen),
            0,
            ts("2026-11-24T10:02:00Z"),
        );
        assert!(d.state.demoted.is_empty(), "one per zone is not repeated");
        let seen = [int("c", "m5.large", "z1", "2026-11-24T10:05:00Z")];
        let d = decide(
            Some(&s),
            &d.state,
            Seen::only(&seen),
            0,
            ts("2026-11-24T10:05:00Z"),
        );
        assert_eq!(d.state.demoted, BTreeSet::from(["m5.large".to_string()]));
        assert!(d.moves.contains(&Move::Demoted {
            instance_type: "m5.large".into(),
            zone: "z1".into(),
            count: 2
        }));
        // Out of the window but not yet calm: still demoted.
        let d2 = decide(
            Some(&s),
            &d.state,
            Seen::only(&[]),
            0,
            ts("2026-11-24T10:20:00Z"),
        );
        assert_eq!(d2.state.demoted.len(), 1);
        assert_eq!(d2.wake_at, Some(ts("2026-11-24T10:35:00Z")));
        let d3 = decide(
            Some(&s),
            &d2.state,
            Seen::only(&[]),
            0,
            ts("2026-11-24T10:35:00Z"),
        );
        assert!(d3.state.demoted.is_empty());
        assert_eq!(
            d3.moves,
            vec![Move::Restored {
                instance_type: "m5.large".into()
            }]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// A random stream of interruptions (repeated uids included), decided minute by minute,
        /// against an oracle kept here: the shift starts if and only if N distinct interruptions
        /// fall within the window (since the last return), the return only after calm without
        /// one, never straight from shifted to spot, each uid counted once; and a type is
        /// demoted exactly while it has DEMOTE_AFTER interruptions in one zone within the
        /// window, or was demoted and has not yet gone calm.
        #[test]
        fn shift_return_demotion_and_dedupe_hold_on_any_stream(
            n in 1u32..5,
            window_min in 1u64..30,
            calm_min in 1u64..30,
            stream in proptest::collection::vec((0i64..180, 0u8..12, 0u8..3, 0u8..2), 0..40),
            drained_after in 0usize..5,
        ) {
            let s = ShiftSpec { interruptions: n, window: MIN * window_min as u32, calm: MIN * calm_min as u32 };
            let t0 = ts("2026-11-24T00:00:00Z");
            let at = |m: i64| t0.checked_add(SignedDuration::from_mins(m)).unwrap();
            let mut state = ShiftState::default();
            // uid -> (first sighting, type, zone): what the first sighting said is what counts.
            let mut seen_uids: BTreeMap<String, (Timestamp, String, String)> = BTreeMap::new();
            let mut returned_at: Option<Timestamp> = None;
            let mut returning_for = 0usize;
            for minute in 0..240i64 {
                let now = at(minute);
                let arriving: Vec<Interruption> = stream
                    .iter()
                    .filter(|(m, ..)| *m == minute)
                    .map(|(m, uid, ty, zone)| Interruption {
                        at: at(*m),
                        uid: format!("u{uid}"),
                        instance_type: format!("t{ty}.large"),
                        zone: format!("z{zone}"),
                    })
                    .collect();
                for i in &arriving {
                    seen_uids
                        .entry(i.uid.clone())
                        .or_insert((i.at, i.instance_type.clone(), i.zone.clone()));
                }
                let nodes = if returning_for >= drained_after { 0 } else { 1 };
                let d = decide(Some(&s), &state, Seen::only(&arriving), nodes, now);
                // The oracle: distinct uids, first sighting, within the window and after the
                // last return.
                let from = before(now, s.window).max(returned_at.unwrap_or(Timestamp::MIN));
                let in_window = seen_uids.values().filter(|(t, ..)| *t > from).count();
                let last = seen_uids.values().map(|(t, ..)| *t).max();
                let uids: BTreeSet<&str> = d.state.log.entries.iter().map(|i| i.uid.as_str()).collect();
                proptest::prop_assert_eq!(uids.len(), d.state.log.entries.len());
                proptest::prop_assert_eq!(uids.len(), seen_uids.len());
                let was_shifted = matches!(state.posture, Posture::Shifted { .. });
                let is_shifted = matches!(d.state.posture, Posture::Shifted { .. });
                if !was_shifted {
                    // Both ways: N in the window shifts, fewer never does.
                    proptest::prop_assert_eq!(
                        is_shifted,
                        in_window >= n as usize,
                        "{} in the window, N = {}, {:?} -> {:?}",
                        in_window, n, state.posture, d.state.posture
                    );
                }
                match (state.posture, d.state.posture) {
                    (Posture::Shifted { .. }, Posture::Returning { .. }) => {
                        let l = last.unwrap();
                        proptest::prop_assert!(after(l, s.calm) <= now);
                        returned_at = Some(now);
                    }
                    (Posture::Shifted { .. }, Posture::Spot) => {
                        // Only with no shift node left to move back, and after calm.
                        proptest::prop_assert_eq!(nodes, 0);
                        proptest::prop_assert!(after(last.unwrap(), s.calm) <= now);
                        returned_at = Some(now);
                    }
                    _ => {}
                }
                if let (Posture::Shifted { .. }, Some(l)) = (d.state.posture, last) {
                    proptest::prop_assert!(after(l, s.calm) > now || state.posture != d.state.posture);
                }
                // Demotion, both ways.
                let mut per_zone: BTreeMap<(&str, &str), usize> = BTreeMap::new();
                for (t, ty, z) in seen_uids.values() {
                    if *t > before(now, s.window) {
                        *per_zone.entry((ty, z)).or_default() += 1;
                    }
                }
                let last_of = |ty: &str| {
                    seen_uids.values().filter(|(_, t, _)| t == ty).map(|(t, ..)| *t).max()
                };
                let want: BTreeSet<String> = (0..12)
                    .map(|k| format!("t{k}.large"))
                    .filter(|ty| {
                        per_zone.iter().any(|((t, _), c)| t == ty && *c >= DEMOTE_AFTER)
                            || (state.demoted.contains(ty)
                                && last_of(ty).is_some_and(|l| after(l, s.calm) > now))
                    })
                    .collect();
                proptest::prop_assert_eq!(&d.state.demoted, &want, "at minute {}", minute);
                returning_for = match d.state.posture {
                    Posture::Returning { .. } => returning_for + 1,
                    _ => 0,
                };
                state = d.state;
            }
        }
    }

    #[test]
    fn the_log_keeps_memory_and_its_limit_and_counts_what_the_limit_pushed_out() {
        let old = int("old", "m5.large", "z1", "2026-11-20T10:00:00Z");
        let seen: Vec<Interruption> = (0..LOG_LIMIT + 5)
            .map(|i| {
                int(
                    &format!("u{i:04}"),
                    "m5.large",
                    "z1",
                    "2026-11-24T10:00:00Z",
                )
            })
            .collect();
        let now = ts("2026-11-24T10:00:00Z");
        let (l, fresh) = log(vec![old]).record(Seen::only(&seen), now, memory(Some(&spec())));
        assert_eq!(l.entries.len(), LOG_LIMIT);
        assert!(
            l.entries.iter().all(|i| i.uid != "old"),
            "older than memory"
        );
        assert_eq!(fresh.len(), LOG_LIMIT + 5, "every new one is recorded once");
        assert_eq!(l.total(), LOG_LIMIT + 5);
        let o = l.observed();
        assert_eq!(o.len(), 1);
        assert_eq!(
            o[0].count,
            LOG_LIMIT + 5,
            "what the limit pushed out still counts"
        );
        // Seen again (the Events are still there): nothing is recorded twice, by the memory of
        // what was seen, or without it (a new process) by where the limit cut.
        let uids: BTreeSet<String> = seen.iter().map(|i| i.uid.clone()).collect();
        for before in [Some(&uids), None] {
            let again = Seen { now: &seen, before };
            let (next, fresh) = l.record(again, now, memory(Some(&spec())));
            assert!(fresh.is_empty(), "{} recorded twice", fresh.len());
            assert_eq!(next, l);
        }
    }

    /// A flood seen in pieces, several Events per NodeClaim, as a reconcile sees the Event cache
    /// grow, many in the same second (Event times are whole seconds): every NodeClaim is counted
    /// exactly once, however the limit cuts.
    #[test]
    fn a_flood_is_counted_once_per_nodeclaim() {
        let t0 = ts("2026-11-24T10:00:00Z");
        let claims: Vec<Interruption> = (0..1500)
            .map(|i| Interruption {
                at: t0.checked_add(SignedDuration::from_secs(i / 150)).unwrap(),
                uid: format!("claim-{:04x}", (i * 7919) % 65_536),
                instance_type: format!("t{}.large", i % 3),
                zone: format!("z{}", i % 2),
            })
            .collect();
        let mut state = Log::default();
        let mut recorded = 0;
        let mut cache: Vec<Interruption> = Vec::new();
        let mut before: Option<BTreeSet<String>> = None;
        for chunk in claims.chunks(113) {
            cache.extend(chunk.iter().cloned());
            cache.extend(chunk.iter().cloned()); // each NodeClaim's second Event
            let now = cache.iter().map(|i| i.at).max().unwrap();
            let seen = Seen {
                now: &cache,
                before: before.as_ref(),
            };
            let (next, fresh) = state.record(seen, now, Duration::from_secs(86_400));
            recorded += fresh.len();
            state = next;
            before = Some(cache.iter().map(|i| i.uid.clone()).collect());
        }
        assert_eq!(recorded, 1500);
        assert_eq!(state.total(), 1500);
        assert_eq!(state.entries.len(), LOG_LIMIT);
        let by_type: usize = state.observed().iter().map(|o| o.count).sum();
        assert_eq!(by_type, 1500);
        // Past memory, the counts beyond the log leave with their newest interruption.
        let later = t0.checked_add(SignedDuration::from_hours(48)).unwrap();
        let (aged, _) = state.record(Seen::only(&[]), later, Duration::from_secs(86_400));
        assert_eq!(aged.total(), 0);
        assert_eq!(aged.trimmed_through, None);
    }
}
