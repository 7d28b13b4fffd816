//! The groups of one window that can still rank in a top-N over it, kept
//! while the window fills, so that closing a window of hundreds of
//! thousands of groups emits the few that can rank instead of all of them
//! (Nexmark q5: a COUNT per auction, then the most-bid auction per
//! window).
//!
//! It holds when the ranking value of a group only ever grows: a COUNT, a
//! MAX (or a MIN, ranked ascending) over an append-only input. Then a
//! group whose value is below the n-th largest value of *some* n groups
//! now is below the n-th largest at the close too, and at least n groups
//! rank strictly above it there: it can be neither among the first n
//! rows (ROW_NUMBER) nor of rank n or less (RANK), whatever the ties.
//!
//! `Leaders` keeps the candidates (group key → current value) and a
//! threshold: the n-th largest value among candidates when it last
//! pruned. Every update of a group offers its new value; below the
//! threshold it is one comparison. **Invariant:** every group not among
//! the candidates has a value below the threshold, and the threshold is
//! at most the n-th largest value of all the window's groups.

use fxhash::FxHashMap;

use crate::agg::Accumulator;
use crate::types::Value;

/// What a plan asks of an aggregate whose only reader is a top-N over its
/// windows (`AggregateSpec::top`): emit at a window's close only the
/// groups that can rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopPrune {
    /// The aggregate call whose value ranks (`AggregateSpec::calls`).
    pub call: usize,
    /// The top-N's n.
    pub n: usize,
}

/// The fewest candidates kept before a prune: pruning costs a selection
/// over all of them, so it waits until they have doubled.
const PRUNE_AT_MIN: usize = 64;

pub(crate) struct Leaders {
    n: usize,
    threshold: i128,
    candidates: FxHashMap<Vec<Value>, i128>,
    prune_at: usize,
}

impl Leaders {
    pub fn new(n: usize) -> Leaders {
        assert!(n >= 1);
        Leaders {
            n,
            threshold: i128::MIN,
            candidates: FxHashMap::default(),
            prune_at: PRUNE_AT_MIN.max(2 * n),
        }
    }

    /// A group's value after an update (`rank_value`).
    #[inline]
    pub fn offer(&mut self, key: &[Value], value: i128) {
        if value < self.threshold {
            return;
        }
        match self.candidates.get_mut(key) {
            Some(v) => {
                debug_assert!(value >= *v, "a ranking value only grows");
                *v = value;
            }
            None => {
                self.candidates.insert(key.to_vec(), value);
                if self.candidates.len() >= self.prune_at {
                    self.prune();
                }
            }
        }
    }

    /// Raises the threshold to the n-th largest candidate value and drops
    /// the candidates below it.
    fn prune(&mut self) {
        if self.candidates.len() > self.n {
            let mut values: Vec<i128> = self.candidates.values().copied().collect();
            let (_, nth, _) = values.select_nth_unstable_by(self.n - 1, |a, b| b.cmp(a));
            let t = *nth;
            debug_assert!(t >= self.threshold);
            self.threshold = t;
            self.candidates.retain(|_, v| *v >= t);
        }
        self.prune_at = PRUNE_AT_MIN.max(2 * self.n).max(2 * self.candidates.len());
    }

    /// The groups that can rank, once the window is complete.
    pub fn finish(mut self) -> impl Iterator<Item = Vec<Value>> {
        self.prune();
        self.candidates.into_keys()
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }
}

/// A group's ranking value for `Leaders`: larger ranks first. COUNT's
/// rows; MAX of integers its value, MIN of integers its negation (ranked
/// ascending); an empty MAX/MIN (NULL, which sorts last) the least.
/// Anything else is a planner bug (`prune::ranks_by`).
pub fn rank_value(acc: &Accumulator) -> i128 {
    match acc {
        Accumulator::CountStar { rows } | Accumulator::Count { rows } => i128::from(*rows),
        Accumulator::Extreme { best: None, .. } => i128::MIN,
        Accumulator::Extreme {
            best: Some(Value::Int(v)),
            max,
        } => match max {
            true => i128::from(*v),
            false => -i128::from(*v),
        },
        _ => unreachable!("a top-N prune over an aggregate that does not only grow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: i64) -> Vec<Value> {
        vec![Value::Int(k)]
    }

    /// The groups that rank in the top n (RANK: every group with fewer
    /// than n groups strictly above it, i.e. at or above the n-th largest
    /// value).
    fn ranking(values: &FxHashMap<i64, i128>, n: usize) -> Vec<i64> {
        let mut sorted: Vec<i128> = values.values().copied().collect();
        sorted.sort_by(|a, b| b.cmp(a));
        let t = sorted[n.min(sorted.len()) - 1];
        let mut out: Vec<i64> = values.iter().filter(|(_, v)| **v >= t).map(|(k, _)| *k).collect();
        out.sort();
        out
    }

    #[test]
    fn keeps_every_group_that_can_rank_under_random_growth() {
        // Deterministic pseudo-random updates: groups grow by steps, the
        // candidates at the end always include the true top n (with
        // ties), and they stay few.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for n in [1usize, 2, 5, 50] {
            for groups in [3u64, 100, 5_000] {
                let mut leaders = Leaders::new(n);
                let mut values: FxHashMap<i64, i128> = FxHashMap::default();
                for _ in 0..20_000 {
                    // Skewed: low keys are hot.
                    let k = (next() % groups).min(next() % groups) as i64;
                    let v = values.entry(k).or_insert(0);
                    *v += 1 + (next() % 3) as i128;
                    leaders.offer(&key(k), *v);
                }
                let want = ranking(&values, n);
                let mut got: Vec<i64> = leaders
                    .finish()
                    .map(|k| match k[0] {
                        Value::Int(i) => i,
                        _ => unreachable!(),
                    })
                    .collect();
                got.sort();
                // The candidates after the final prune are exactly the
                // groups at or above the n-th largest value.
                assert_eq!(got, want, "n {n}, groups {groups}");
            }
        }
    }

    #[test]
    fn ties_at_the_threshold_are_all_kept() {
        let mut leaders = Leaders::new(1);
        for k in 0..200 {
            leaders.offer(&key(k), 1);
        }
        for k in [7, 9] {
            leaders.offer(&key(k), 2);
        }
        let mut got: Vec<Vec<Value>> = leaders.finish().collect();
        got.sort();
        assert_eq!(got, vec![key(7), key(9)]);
    }

    #[test]
    fn a_pruned_group_that_grows_back_comes_back() {
        let mut leaders = Leaders::new(1);
        for k in 0..100 {
            leaders.offer(&key(k), if k == 0 { 5 } else { 1 });
        }
        assert!(leaders.len() < 100, "pruned at the bound");
        leaders.offer(&key(42), 6);
        let got: Vec<Vec<Value>> = leaders.finish().collect();
        assert_eq!(got, vec![key(42)]);
    }

    #[test]
    fn rank_values_order_as_the_top_n_does() {
        assert_eq!(rank_value(&Accumulator::CountStar { rows: 3 }), 3);
        let max = |v| Accumulator::Extreme {
            best: Some(Value::Int(v)),
            max: true,
        };
        let min = |v| Accumulator::Extreme {
            best: Some(Value::Int(v)),
            max: false,
        };
        assert!(rank_value(&max(5)) > rank_value(&max(-5)));
        assert!(rank_value(&min(-5)) > rank_value(&min(5)), "MIN ranks ascending");
        let empty = Accumulator::Extreme { best: None, max: true };
        assert!(rank_value(&empty) < rank_value(&max(i64::MIN)), "NULL sorts last");
    }
}
