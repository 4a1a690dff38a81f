//! The churn rule: which instance types to write, given what is written now and a fresh plan.
//!
//! Narrowing the list makes Karpenter replace the nodes of the removed types (drift); widening
//! costs nothing. So:
//! 1. No NodePool yet, or the spec changed: write the fresh plan (the user asked for it).
//! 2. Data is stale: change nothing.
//! 3. Every written type still fits the request: keep them all and add the fresh plan's new
//!    types (widening only), while the list stays within `cap`. A type that merely fell in rank
//!    is never removed: a reorder is not a change.
//! 4. A written type no longer fits (its band rose above the ceiling, it left the region, ...)
//!    or the list would outgrow `cap`: that is a real change. Narrow to the fresh plan if the
//!    last narrowing was at least `min_interval` ago; otherwise widen only and narrow when the
//!    interval has passed.

use jiff::Timestamp;
use std::collections::BTreeSet;
use std::time::Duration;

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

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub types: BTreeSet<String>,
    pub why: Why,
    /// Types dropped from what was written (a narrowing).
    pub removed: BTreeSet<String>,
    /// Types added to what was written.
    pub added: BTreeSet<String>,
    /// When a deferred narrowing may happen.
    pub narrow_at: Option<Timestamp>,
}

pub struct Inputs<'a> {
    /// Types in the live NodePool; `None` when there is none yet.
    pub current: Option<&'a BTreeSet<String>>,
    /// The fresh plan's types in rank order.
    pub fresh_ranked: &'a [String],
    /// Written types that no longer fit the request.
    pub no_longer_fit: &'a BTreeSet<String>,
    pub spec_changed: bool,
    pub data_fresh: bool,
    pub last_narrowed: Option<Timestamp>,
    pub now: Timestamp,
    pub min_interval: Duration,
    /// Most types a widened list may hold.
    pub cap: usize,
}

fn decision(
    current: Option<&BTreeSet<String>>,
    types: BTreeSet<String>,
    why: Why,
    narrow_at: Option<Timestamp>,
) -> Decision {
    let empty = BTreeSet::new();
    let cur = current.unwrap_or(&empty);
    Decision {
        removed: cur.difference(&types).cloned().collect(),
        added: types.difference(cur).cloned().collect(),
        types,
        why,
        narrow_at,
    }
}

pub fn decide(i: &Inputs) -> Decision {
    let fresh: BTreeSet<String> = i.fresh_ranked.iter().cloned().collect();
    let Some(current) = i.current else {
        return decision(None, fresh, Why::Created, None);
    };
    if i.spec_changed {
        return decision(Some(current), fresh, Why::SpecChanged, None);
    }
    if !i.data_fresh {
        return decision(Some(current), current.clone(), Why::DataStale, None);
    }
    let union: BTreeSet<String> = current.union(&fresh).cloned().collect();
    let real_change = current.iter().any(|t| i.no_longer_fit.contains(t)) || union.len() > i.cap;
    if !real_change {
        let why = if union == *current {
            Why::Unchanged
        } else {
            Why::Widened
        };
        return decision(Some(current), union, why, None);
    }
    let window_opens = i.last_narrowed.map(|t| {
        t + jiff::SignedDuration::try_from(i.min_interval).unwrap_or(jiff::SignedDuration::MAX)
    });
    match window_opens {
        Some(at) if at > i.now => {
            // Widen with the best new types while there is room; narrow later.
            let mut types = current.clone();
            for t in i.fresh_ranked {
                if types.len() >= i.cap.max(current.len()) {
                    break;
                }
                types.insert(t.clone());
            }
            let why = Why::NarrowingDeferred;
            decision(Some(current), types, why, Some(at))
        }
        _ => decision(Some(current), fresh, Why::Narrowed, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }
    fn ranked(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn inputs<'a>(
        current: &'a BTreeSet<String>,
        fresh: &'a [String],
        gone: &'a BTreeSet<String>,
    ) -> Inputs<'a> {
        Inputs {
            current: Some(current),
            fresh_ranked: fresh,
            no_longer_fit: gone,
            spec_changed: false,
            data_fresh: true,
            last_narrowed: None,
            now: "2026-11-23T12:00:00Z".parse().unwrap(),
            min_interval: Duration::from_secs(24 * 3600),
            cap: 6,
        }
    }

    #[test]
    fn a_reorder_writes_nothing() {
        let cur = set(&["a", "b", "c"]);
        let fresh = ranked(&["c", "a", "b"]);
        let none = BTreeSet::new();
        let d = decide(&inputs(&cur, &fresh, &none));
        assert_eq!((d.why, d.types), (Why::Unchanged, cur));
    }

    #[test]
    fn a_type_that_fell_out_of_the_top_stays_and_new_ones_widen() {
        let cur = set(&["a", "b", "c"]);
        let fresh = ranked(&["a", "b", "d"]);
        let none = BTreeSet::new();
        let d = decide(&inputs(&cur, &fresh, &none));
        assert_eq!(d.why, Why::Widened);
        assert_eq!(d.types, set(&["a", "b", "c", "d"]));
        assert!(d.removed.is_empty());
    }

    #[test]
    fn a_type_that_no_longer_fits_is_removed_once_the_interval_passed() {
        let cur = set(&["a", "b", "c"]);
        let fresh = ranked(&["a", "b", "d"]);
        let gone = set(&["c"]);
        let mut i = inputs(&cur, &fresh, &gone);
        i.last_narrowed = Some("2026-11-23T06:00:00Z".parse().unwrap());
        let d = decide(&i);
        assert_eq!(d.why, Why::NarrowingDeferred);
        assert_eq!(d.types, set(&["a", "b", "c", "d"]));
        assert_eq!(d.narrow_at, Some("2026-11-24T06:00:00Z".parse().unwrap()));
        i.last_narrowed = Some("2026-11-22T06:00:00Z".parse().unwrap());
        let d = decide(&i);
        assert_eq!(
            (d.why, d.types.clone()),
            (Why::Narrowed, set(&["a", "b", "d"]))
        );
        assert_eq!(d.removed, set(&["c"]));
    }

    #[test]
    fn spec_changes_apply_at_once_and_stale_data_freezes() {
        let cur = set(&["a", "b", "c"]);
        let fresh = ranked(&["x"]);
        let none = BTreeSet::new();
        let mut i = inputs(&cur, &fresh, &none);
        i.spec_changed = true;
        i.last_narrowed = Some(i.now);
        assert_eq!(decide(&i).types, set(&["x"]));
        i.spec_changed = false;
        i.data_fresh = false;
        assert_eq!(decide(&i).why, Why::DataStale);
    }

    #[test]
    fn outgrowing_the_cap_is_a_real_change() {
        let cur = set(&["a", "b", "c", "d", "e"]);
        let fresh = ranked(&["f", "g", "h"]);
        let none = BTreeSet::new();
        let d = decide(&inputs(&cur, &fresh, &none));
        assert_eq!((d.why, d.types), (Why::Narrowed, set(&["f", "g", "h"])));
    }
}
