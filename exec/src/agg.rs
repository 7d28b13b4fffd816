//! Aggregate accumulators: COUNT(*), COUNT, COUNT(DISTINCT), SUM, MIN, MAX,
//! AVG, FIRST_VALUE, LAST_VALUE.
//!
//! An `Accumulator` is an enum (no boxing, no dynamic dispatch) that can
//! add, retract (for changelog inputs), merge (session windows) and finish.
//! Semantics:
//! - COUNT(*) counts rows, whatever the value; every other aggregate skips
//!   NULL values, and of nothing gives NULL (COUNT gives 0).
//! - SUM(BIGINT) sums in i128, so no order of additions and retractions can
//!   overflow midway; a total outside BIGINT finishes as NULL (the operator
//!   cannot fail a whole group for one value, and NULL is what an
//!   expression error becomes elsewhere). SUM(DOUBLE) uses compensated
//!   (Neumaier) summation with NaN and ±∞ counted apart, so a retraction
//!   undoes an addition up to rounding and retracting an ∞ really removes
//!   it; a group that returns to empty restarts at exactly 0. AVG is the
//!   sum over the count of non-NULL values, as DOUBLE.
//! - MIN/MAX use `Value`'s total order (NaN is the largest DOUBLE).
//! - FIRST_VALUE/LAST_VALUE pick by event time, ties by arrival: FIRST is
//!   the smallest `(ts, seq)`, LAST the largest. NULL values are ignored,
//!   as in Flink.
//! - Retractable (changelog) inputs keep what exact retraction needs: a
//!   multiset for MIN/MAX, every `(ts, seq, value)` for FIRST/LAST, refcounts
//!   for COUNT(DISTINCT). A retraction carries no `seq`, so FIRST/LAST
//!   remove the earliest-arrived entry with the same time and value.
//!   Append-only inputs use one-value fast paths that cannot retract.
//! - Retracting something never added is an engine bug and panics: the
//!   operator only retracts rows it has added to the same group.

use std::collections::BTreeMap;

use fxhash::FxHashMap;

use crate::error::TypeError;
use crate::types::{DataType, Value};

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    CountStar,
    Count,
    CountDistinct,
    Sum,
    Min,
    Max,
    Avg,
    FirstValue,
    LastValue,
}

impl AggKind {
    /// Every aggregate, for tests that cover them all.
    pub const ALL: [AggKind; 9] = [
        AggKind::CountStar,
        AggKind::Count,
        AggKind::CountDistinct,
        AggKind::Sum,
        AggKind::Min,
        AggKind::Max,
        AggKind::Avg,
        AggKind::FirstValue,
        AggKind::LastValue,
    ];

    /// The aggregate called `name` (case-insensitive). `COUNT(*)` and
    /// `COUNT(DISTINCT x)` are told apart by the planner, so "count" is
    /// `Count`.
    pub fn from_name(name: &str) -> Option<AggKind> {
        const NAMES: [(&str, AggKind); 7] = [
            ("count", AggKind::Count),
            ("sum", AggKind::Sum),
            ("min", AggKind::Min),
            ("max", AggKind::Max),
            ("avg", AggKind::Avg),
            ("first_value", AggKind::FirstValue),
            ("last_value", AggKind::LastValue),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, k)| *k)
    }

    /// The SQL spelling, for errors and `EXPLAIN`.
    pub fn sql_name(self) -> &'static str {
        match self {
            AggKind::CountStar => "COUNT(*)",
            AggKind::Count => "COUNT",
            AggKind::CountDistinct => "COUNT(DISTINCT)",
            AggKind::Sum => "SUM",
            AggKind::Min => "MIN",
            AggKind::Max => "MAX",
            AggKind::Avg => "AVG",
            AggKind::FirstValue => "FIRST_VALUE",
            AggKind::LastValue => "LAST_VALUE",
        }
    }
}

/// The result type of an aggregate over `input`; an error for aggregates
/// that do not apply to the type (SUM of VARCHAR).
pub fn agg_output_type(kind: AggKind, input: DataType) -> Result<DataType, TypeError> {
    match kind {
        AggKind::CountStar | AggKind::Count | AggKind::CountDistinct => Ok(DataType::Int),
        AggKind::Sum | AggKind::Avg => match input {
            DataType::Int | DataType::Null if kind == AggKind::Sum => Ok(DataType::Int),
            DataType::Int | DataType::Double | DataType::Null => Ok(DataType::Double),
            other => Err(TypeError::Aggregate {
                aggregate: kind.sql_name(),
                input: other,
            }),
        },
        AggKind::Min | AggKind::Max | AggKind::FirstValue | AggKind::LastValue => Ok(input),
    }
}

/// A DOUBLE sum that can be retracted: Neumaier-compensated over the
/// finite values, with NaN and the infinities counted separately.
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FloatSum {
    sum: f64,
    compensation: f64,
    rows: i64,
    nan: i64,
    positive_infinities: i64,
    negative_infinities: i64,
}

impl FloatSum {
    fn accumulate(&mut self, x: f64) {
        let t = self.sum + x;
        // Neumaier: keep the low-order bits lost by whichever operand is
        // smaller.
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn classify(&mut self, x: f64, delta: i64) -> bool {
        if x.is_nan() {
            self.nan += delta;
        } else if x == f64::INFINITY {
            self.positive_infinities += delta;
        } else if x == f64::NEG_INFINITY {
            self.negative_infinities += delta;
        } else {
            return false;
        }
        true
    }

    fn add(&mut self, x: f64) {
        self.rows += 1;
        if !self.classify(x, 1) {
            self.accumulate(x);
        }
    }

    fn retract(&mut self, x: f64) {
        assert!(self.rows > 0, "SUM/AVG retraction below zero rows");
        self.rows -= 1;
        if self.classify(x, -1) {
            assert!(
                self.nan >= 0 && self.positive_infinities >= 0 && self.negative_infinities >= 0,
                "SUM/AVG retraction of a non-finite value never added"
            );
        } else {
            self.accumulate(-x);
        }
        if self.rows == 0 {
            // Start again from exactly zero rather than from rounding dust.
            *self = FloatSum::default();
        }
    }

    fn merge(&mut self, other: &FloatSum) {
        self.accumulate(other.sum);
        self.accumulate(other.compensation);
        self.rows += other.rows;
        self.nan += other.nan;
        self.positive_infinities += other.positive_infinities;
        self.negative_infinities += other.negative_infinities;
    }

    /// The sum, or None over no rows.
    fn value(&self) -> Option<f64> {
        if self.rows == 0 {
            return None;
        }
        Some(
            if self.nan > 0 || (self.positive_infinities > 0 && self.negative_infinities > 0) {
                f64::NAN
            } else if self.positive_infinities > 0 {
                f64::INFINITY
            } else if self.negative_infinities > 0 {
                f64::NEG_INFINITY
            } else {
                self.sum + self.compensation
            },
        )
    }
}

/// The state of one aggregate of one group.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Accumulator {
    CountStar {
        rows: i64,
    },
    Count {
        rows: i64,
    },
    /// Refcount per distinct non-NULL value.
    CountDistinct {
        #[rkyv(with = rkyv::with::AsVec)]
        counts: FxHashMap<Value, u64>,
    },
    SumInt {
        sum: i128,
        rows: i64,
    },
    SumDouble(FloatSum),
    AvgInt {
        sum: i128,
        rows: i64,
    },
    AvgDouble(FloatSum),
    /// MIN/MAX of an append-only input.
    Extreme {
        best: Option<Value>,
        max: bool,
    },
    /// MIN/MAX of a changelog: a multiset of the values.
    ExtremeMultiset {
        #[rkyv(with = rkyv::with::AsVec)]
        counts: BTreeMap<Value, u64>,
        max: bool,
    },
    /// FIRST/LAST_VALUE of an append-only input: `(ts, seq, value)`.
    Edge {
        best: Option<(i64, u64, Value)>,
        last: bool,
    },
    /// FIRST/LAST_VALUE of a changelog: every entry by `(ts, seq)`.
    EdgeLog {
        #[rkyv(with = rkyv::with::AsVec)]
        entries: BTreeMap<(i64, u64), Value>,
        last: bool,
    },
}

/// Maps values that SQL considers equal but `Value`'s total order does
/// not (-0.0 and 0.0, NaNs with different payloads) to one key.
fn distinct_key(v: &Value) -> Value {
    match v {
        Value::Double(d) if *d == 0.0 => Value::Double(0.0),
        Value::Double(d) if d.is_nan() => Value::Double(f64::NAN),
        other => other.clone(),
    }
}

fn count_down(count: &mut i64, what: &str) {
    assert!(*count > 0, "{what}: retraction of a row that was never added");
    *count -= 1;
}

/// Decrements a multiset entry, removing it at zero.
fn multiset_remove<K: Ord + std::fmt::Debug>(counts: &mut BTreeMap<K, u64>, key: &K) {
    match counts.get_mut(key) {
        Some(n) if *n > 1 => *n -= 1,
        Some(_) => {
            counts.remove(key);
        }
        None => panic!("MIN/MAX: retraction of {key:?}, which was never added"),
    }
}

impl Accumulator {
    /// A fresh accumulator. `retractable`: the input is a changelog, so
    /// `retract` must be exact; otherwise MIN/MAX/FIRST/LAST keep one value.
    pub fn new(kind: AggKind, input: DataType, retractable: bool) -> Accumulator {
        match kind {
            AggKind::CountStar => Accumulator::CountStar { rows: 0 },
            AggKind::Count => Accumulator::Count { rows: 0 },
            AggKind::CountDistinct => Accumulator::CountDistinct {
                counts: FxHashMap::default(),
            },
            AggKind::Sum if input == DataType::Double => Accumulator::SumDouble(FloatSum::default()),
            AggKind::Sum => Accumulator::SumInt { sum: 0, rows: 0 },
            AggKind::Avg if input == DataType::Double => Accumulator::AvgDouble(FloatSum::default()),
            AggKind::Avg => Accumulator::AvgInt { sum: 0, rows: 0 },
            AggKind::Min | AggKind::Max if retractable => Accumulator::ExtremeMultiset {
                counts: BTreeMap::new(),
                max: kind == AggKind::Max,
            },
            AggKind::Min | AggKind::Max => Accumulator::Extreme {
                best: None,
                max: kind == AggKind::Max,
            },
            AggKind::FirstValue | AggKind::LastValue if retractable => Accumulator::EdgeLog {
                entries: BTreeMap::new(),
                last: kind == AggKind::LastValue,
            },
            AggKind::FirstValue | AggKind::LastValue => Accumulator::Edge {
                best: None,
                last: kind == AggKind::LastValue,
            },
        }
    }

    /// Whether folding rows in any grouping and merging the results
    /// (`merge`) gives exactly what adding them one by one gives, whatever
    /// their arrival numbers: counts, exact integer sums and append-only
    /// MIN/MAX. Not floating sums (rounding follows the grouping),
    /// FIRST/LAST_VALUE (ties go by arrival) or changelog multisets.
    pub fn combinable(&self) -> bool {
        matches!(
            self,
            Accumulator::CountStar { .. }
                | Accumulator::Count { .. }
                | Accumulator::CountDistinct { .. }
                | Accumulator::SumInt { .. }
                | Accumulator::AvgInt { .. }
                | Accumulator::Extreme { .. }
        )
    }

    /// Adds one input value. `ts` is the row's event time in ms (i64::MIN
    /// if none), `seq` a strictly increasing arrival number.
    pub fn add(&mut self, value: &Value, ts: i64, seq: u64) {
        if let Accumulator::CountStar { rows } = self {
            *rows += 1;
            return;
        }
        if value.is_null() {
            return;
        }
        match self {
            Accumulator::CountStar { .. } => unreachable!("handled above"),
            Accumulator::Count { rows } => *rows += 1,
            Accumulator::CountDistinct { counts } => *counts.entry(distinct_key(value)).or_insert(0) += 1,
            Accumulator::SumInt { sum, rows } | Accumulator::AvgInt { sum, rows } => match value {
                Value::Int(i) => {
                    *sum += *i as i128;
                    *rows += 1;
                }
                other => debug_assert!(false, "integer SUM/AVG given {other:?}"),
            },
            Accumulator::SumDouble(s) | Accumulator::AvgDouble(s) => match value.as_f64() {
                Some(x) => s.add(x),
                None => debug_assert!(false, "DOUBLE SUM/AVG given {value:?}"),
            },
            Accumulator::Extreme { best, max } => {
                let better = match best {
                    None => true,
                    Some(b) => (value > b) == *max && value != b,
                };
                if better {
                    *best = Some(value.clone());
                }
            }
            Accumulator::ExtremeMultiset { counts, .. } => *counts.entry(value.clone()).or_insert(0) += 1,
            Accumulator::Edge { best, last } => {
                let better = match best {
                    None => true,
                    Some((bt, bs, _)) => ((ts, seq) > (*bt, *bs)) == *last,
                };
                if better {
                    *best = Some((ts, seq, value.clone()));
                }
            }
            Accumulator::EdgeLog { entries, .. } => {
                let previous = entries.insert((ts, seq), value.clone());
                assert!(previous.is_none(), "FIRST/LAST_VALUE: arrival number {seq} added twice");
            }
        }
    }

    /// Removes one previously added value (for -U/-D rows): the exact
    /// inverse of `add` for retractable accumulators.
    pub fn retract(&mut self, value: &Value, ts: i64) {
        if let Accumulator::CountStar { rows } = self {
            count_down(rows, "COUNT(*)");
            return;
        }
        if value.is_null() {
            return;
        }
        match self {
            Accumulator::CountStar { .. } => unreachable!("handled above"),
            Accumulator::Count { rows } => count_down(rows, "COUNT"),
            Accumulator::CountDistinct { counts } => {
                let key = distinct_key(value);
                match counts.get_mut(&key) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        counts.remove(&key);
                    }
                    None => panic!("COUNT(DISTINCT): retraction of {value:?}, which was never added"),
                }
            }
            Accumulator::SumInt { sum, rows } | Accumulator::AvgInt { sum, rows } => match value {
                Value::Int(i) => {
                    count_down(rows, "SUM/AVG");
                    *sum -= *i as i128;
                }
                other => debug_assert!(false, "integer SUM/AVG given {other:?}"),
            },
            Accumulator::SumDouble(s) | Accumulator::AvgDouble(s) => match value.as_f64() {
                Some(x) => s.retract(x),
                None => debug_assert!(false, "DOUBLE SUM/AVG given {value:?}"),
            },
            Accumulator::ExtremeMultiset { counts, .. } => multiset_remove(counts, value),
            Accumulator::EdgeLog { entries, .. } => {
                // The earliest arrival with this time and value.
                let key = entries
                    .range((ts, 0)..=(ts, u64::MAX))
                    .find(|(_, v)| *v == value)
                    .map(|(k, _)| *k)
                    .unwrap_or_else(|| panic!("FIRST/LAST_VALUE: retraction of {value:?} at {ts}, never added"));
                entries.remove(&key);
            }
            Accumulator::Extreme { .. } | Accumulator::Edge { .. } => {
                // The planner uses these only for append-only inputs.
                debug_assert!(false, "retract on an append-only accumulator {self:?}");
            }
        }
    }

    /// Folds another accumulator of the same kind into this one (session
    /// windows merging). Arrival numbers are unique across accumulators of
    /// an operator, so FIRST/LAST compare `(ts, seq)` across both.
    pub fn merge(&mut self, other: Accumulator) {
        match (self, other) {
            (Accumulator::CountStar { rows: a }, Accumulator::CountStar { rows: b })
            | (Accumulator::Count { rows: a }, Accumulator::Count { rows: b }) => *a += b,
            (Accumulator::CountDistinct { counts: a }, Accumulator::CountDistinct { counts: b }) => {
                for (v, n) in b {
                    *a.entry(v).or_insert(0) += n;
                }
            }
            (Accumulator::SumInt { sum: a, rows: ra }, Accumulator::SumInt { sum: b, rows: rb })
            | (Accumulator::AvgInt { sum: a, rows: ra }, Accumulator::AvgInt { sum: b, rows: rb }) => {
                *a += b;
                *ra += rb;
            }
            (Accumulator::SumDouble(a), Accumulator::SumDouble(b))
            | (Accumulator::AvgDouble(a), Accumulator::AvgDouble(b)) => a.merge(&b),
            (
                Accumulator::Extreme { best: a, max },
                Accumulator::Extreme {
                    best: Some(b),
                    max: other_max,
                },
            ) => {
                assert_eq!(*max, other_max, "merging MIN with MAX");
                let better = match a {
                    None => true,
                    Some(v) => (b > *v) == *max && b != *v,
                };
                if better {
                    *a = Some(b);
                }
            }
            (Accumulator::Extreme { .. }, Accumulator::Extreme { best: None, .. }) => {}
            (
                Accumulator::ExtremeMultiset { counts: a, max },
                Accumulator::ExtremeMultiset {
                    counts: b,
                    max: other_max,
                },
            ) => {
                assert_eq!(*max, other_max, "merging MIN with MAX");
                for (v, n) in b {
                    *a.entry(v).or_insert(0) += n;
                }
            }
            (
                Accumulator::Edge { best: a, last },
                Accumulator::Edge {
                    best: Some(b),
                    last: other_last,
                },
            ) => {
                assert_eq!(*last, other_last, "merging FIRST_VALUE with LAST_VALUE");
                let better = match a {
                    None => true,
                    Some((ts, seq, _)) => ((b.0, b.1) > (*ts, *seq)) == *last,
                };
                if better {
                    *a = Some(b);
                }
            }
            (Accumulator::Edge { .. }, Accumulator::Edge { best: None, .. }) => {}
            (
                Accumulator::EdgeLog { entries: a, last },
                Accumulator::EdgeLog {
                    entries: b,
                    last: other_last,
                },
            ) => {
                assert_eq!(*last, other_last, "merging FIRST_VALUE with LAST_VALUE");
                for (k, v) in b {
                    let previous = a.insert(k, v);
                    assert!(
                        previous.is_none(),
                        "FIRST/LAST_VALUE: arrival number {} in both merged accumulators",
                        k.1
                    );
                }
            }
            (a, b) => panic!("merging accumulators of different kinds: {a:?} and {b:?}"),
        }
    }

    /// The current result. COUNT of nothing is 0; the others are NULL.
    pub fn finish(&self) -> Value {
        match self {
            Accumulator::CountStar { rows } | Accumulator::Count { rows } => Value::Int(*rows),
            Accumulator::CountDistinct { counts } => Value::Int(counts.len() as i64),
            Accumulator::SumInt { rows: 0, .. } | Accumulator::AvgInt { rows: 0, .. } => Value::Null,
            Accumulator::SumInt { sum, .. } => i64::try_from(*sum).map_or(Value::Null, Value::Int),
            Accumulator::AvgInt { sum, rows } => Value::Double(*sum as f64 / *rows as f64),
            Accumulator::SumDouble(s) => s.value().map_or(Value::Null, Value::Double),
            Accumulator::AvgDouble(s) => s.value().map_or(Value::Null, |sum| Value::Double(sum / s.rows as f64)),
            Accumulator::Extreme { best, .. } => best.clone().unwrap_or(Value::Null),
            Accumulator::ExtremeMultiset { counts, max } => {
                let v = if *max {
                    counts.last_key_value()
                } else {
                    counts.first_key_value()
                };
                v.map_or(Value::Null, |(v, _)| v.clone())
            }
            Accumulator::Edge { best, .. } => best.as_ref().map_or(Value::Null, |(_, _, v)| v.clone()),
            Accumulator::EdgeLog { entries, last } => {
                let e = if *last {
                    entries.last_key_value()
                } else {
                    entries.first_key_value()
                };
                e.map_or(Value::Null, |(_, v)| v.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [AggKind; 9] = AggKind::ALL;

    /// Small value domains so that duplicates, ties and NULLs are common;
    /// the extremes exercise i128 sums, NaN and infinities.
    fn value_for(input: DataType, i: usize) -> Value {
        match input {
            DataType::Int => [
                Value::Null,
                Value::Int(-3),
                Value::Int(-1),
                Value::Int(0),
                Value::Int(2),
                Value::Int(i64::MAX),
                Value::Int(i64::MIN),
            ][i % 7]
                .clone(),
            DataType::Double => [
                Value::Null,
                Value::Double(0.1),
                Value::Double(-2.5),
                Value::Double(3.0),
                Value::Double(1e6),
                Value::Double(-0.0),
                Value::Double(0.0),
                Value::Double(f64::NAN),
                Value::Double(f64::INFINITY),
                Value::Double(f64::NEG_INFINITY),
            ][i % 10]
                .clone(),
            _ => [
                Value::Null,
                Value::str(""),
                Value::str("a"),
                Value::str("b"),
                Value::str("ab"),
                Value::str("é"),
            ][i % 6]
                .clone(),
        }
    }

    /// The aggregate recomputed naively from the live `(ts, seq, value)`
    /// entries, in arrival order.
    fn model(kind: AggKind, input: DataType, entries: &[(i64, u64, Value)]) -> Value {
        let values: Vec<&Value> = entries.iter().map(|e| &e.2).filter(|v| !v.is_null()).collect();
        let live: Vec<&(i64, u64, Value)> = entries.iter().filter(|e| !e.2.is_null()).collect();
        let float_sum = || values.iter().map(|v| v.as_f64().unwrap()).fold(0.0, |a, b| a + b);
        let int_sum = || values.iter().map(|v| v.as_i64().unwrap() as i128).sum::<i128>();
        match kind {
            AggKind::CountStar => Value::Int(entries.len() as i64),
            AggKind::Count => Value::Int(values.len() as i64),
            AggKind::CountDistinct => {
                let mut d: Vec<Value> = values.iter().map(|v| (*v).clone()).collect();
                d.sort();
                d.dedup_by(|a, b| crate::func::sql_cmp(a, b) == Some(std::cmp::Ordering::Equal));
                Value::Int(d.len() as i64)
            }
            _ if values.is_empty() => Value::Null,
            AggKind::Sum if input == DataType::Double => Value::Double(float_sum()),
            AggKind::Sum => i64::try_from(int_sum()).map_or(Value::Null, Value::Int),
            AggKind::Avg if input == DataType::Double => Value::Double(float_sum() / values.len() as f64),
            AggKind::Avg => Value::Double(int_sum() as f64 / values.len() as f64),
            AggKind::Min => (*values.iter().min().unwrap()).clone(),
            AggKind::Max => (*values.iter().max().unwrap()).clone(),
            AggKind::FirstValue => live.iter().min_by_key(|e| (e.0, e.1)).unwrap().2.clone(),
            AggKind::LastValue => live.iter().max_by_key(|e| (e.0, e.1)).unwrap().2.clone(),
        }
    }

    /// Equality up to rounding for DOUBLE results (sums are compensated in
    /// the accumulator and naive in the model).
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Double(x), Value::Double(y)) => {
                (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
            }
            _ => a == b,
        }
    }

    fn kind_and_type() -> impl Strategy<Value = (AggKind, DataType)> {
        (0..KINDS.len(), 0..3usize)
            .prop_map(|(k, t)| (KINDS[k], [DataType::Int, DataType::Double, DataType::Str][t]))
            .prop_filter("SUM/AVG need numbers", |(k, t)| {
                !(matches!(k, AggKind::Sum | AggKind::Avg) && *t == DataType::Str)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// After any sequence of adds and retractions (of added values
        /// only), a retractable accumulator equals a recomputation over
        /// what remains.
        #[test]
        fn retraction_matches_recompute(
            (kind, input) in kind_and_type(),
            ops in prop::collection::vec((0..5u8, any::<usize>(), 0..4i64, any::<usize>()), 0..60),
        ) {
            let mut acc = Accumulator::new(kind, input, true);
            let mut live: Vec<(i64, u64, Value)> = Vec::new();
            let mut seq = 0;
            for (op, pick, ts, vi) in ops {
                if op < 3 || live.is_empty() {
                    seq += 1;
                    let v = value_for(input, vi);
                    acc.add(&v, ts, seq);
                    live.push((ts, seq, v));
                } else {
                    let (ts, _, v) = live[pick % live.len()].clone();
                    acc.retract(&v, ts);
                    // The accumulator removes the earliest arrival with this
                    // time and value; `live` is in arrival order.
                    let idx = live.iter().position(|e| e.0 == ts && e.2 == v).unwrap();
                    live.remove(idx);
                }
                let expected = model(kind, input, &live);
                prop_assert!(same(&acc.finish(), &expected), "{kind:?}({input}) got {:?}, expected {expected:?}", acc.finish());
            }
        }

        /// merge(a, b) equals adding all of b's values to a, for both
        /// representations; a merged changelog accumulator still retracts
        /// exactly.
        #[test]
        fn merge_equals_adding(
            (kind, input) in kind_and_type(),
            retractable in any::<bool>(),
            ops in prop::collection::vec((any::<bool>(), 0..4i64, any::<usize>()), 0..40),
            retractions in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut a = Accumulator::new(kind, input, retractable);
            let mut b = Accumulator::new(kind, input, retractable);
            let mut b_rows = Vec::new();
            let mut live = Vec::new();
            for (seq, (to_a, ts, vi)) in (1u64..).zip(ops) {
                let v = value_for(input, vi);
                if to_a {
                    a.add(&v, ts, seq);
                } else {
                    b.add(&v, ts, seq);
                    b_rows.push((ts, seq, v.clone()));
                }
                live.push((ts, seq, v));
            }
            let mut expected = a.clone();
            for (ts, seq, v) in &b_rows {
                expected.add(v, *ts, *seq);
            }
            a.merge(b);
            prop_assert!(same(&a.finish(), &expected.finish()), "{:?} vs {:?}", a.finish(), expected.finish());
            prop_assert!(same(&a.finish(), &model(kind, input, &live)));
            if retractable {
                for pick in retractions {
                    if live.is_empty() {
                        break;
                    }
                    let (ts, _, v) = live[pick % live.len()].clone();
                    a.retract(&v, ts);
                    let idx = live.iter().position(|e| e.0 == ts && e.2 == v).unwrap();
                    live.remove(idx);
                    prop_assert!(same(&a.finish(), &model(kind, input, &live)));
                }
            }
        }
    }

    #[test]
    fn names_and_types() {
        assert_eq!(AggKind::from_name("COUNT"), Some(AggKind::Count));
        assert_eq!(AggKind::from_name("First_Value"), Some(AggKind::FirstValue));
        assert_eq!(AggKind::from_name("median"), None);
        assert_eq!(agg_output_type(AggKind::Sum, DataType::Int), Ok(DataType::Int));
        assert_eq!(agg_output_type(AggKind::Sum, DataType::Double), Ok(DataType::Double));
        assert_eq!(agg_output_type(AggKind::Avg, DataType::Int), Ok(DataType::Double));
        assert_eq!(agg_output_type(AggKind::Count, DataType::Str), Ok(DataType::Int));
        assert_eq!(agg_output_type(AggKind::Max, DataType::Ts), Ok(DataType::Ts));
        assert_eq!(
            agg_output_type(AggKind::Sum, DataType::Str).unwrap_err().to_string(),
            "SUM expects BIGINT or DOUBLE, got VARCHAR"
        );
        assert!(agg_output_type(AggKind::Avg, DataType::Ts).is_err());
    }

    #[test]
    fn empty_and_null_inputs() {
        for kind in KINDS {
            for retractable in [false, true] {
                let mut acc = Accumulator::new(kind, DataType::Int, retractable);
                let empty = if matches!(kind, AggKind::CountStar | AggKind::Count | AggKind::CountDistinct) {
                    Value::Int(0)
                } else {
                    Value::Null
                };
                assert_eq!(acc.finish(), empty, "{kind:?}");
                acc.add(&Value::Null, 0, 1);
                let expected = if kind == AggKind::CountStar {
                    Value::Int(1)
                } else {
                    empty
                };
                assert_eq!(acc.finish(), expected, "{kind:?} over one NULL");
            }
        }
    }

    #[test]
    fn integer_sum_out_of_range_is_null_until_it_returns() {
        let mut acc = Accumulator::new(AggKind::Sum, DataType::Int, true);
        acc.add(&Value::Int(i64::MAX), 0, 1);
        acc.add(&Value::Int(1), 0, 2);
        assert_eq!(acc.finish(), Value::Null);
        acc.retract(&Value::Int(1), 0);
        assert_eq!(acc.finish(), Value::Int(i64::MAX));
        let mut avg = Accumulator::new(AggKind::Avg, DataType::Int, false);
        avg.add(&Value::Int(i64::MAX), 0, 1);
        avg.add(&Value::Int(i64::MAX), 0, 2);
        assert_eq!(avg.finish(), Value::Double(i64::MAX as f64));
    }

    #[test]
    fn double_sum_retracts_infinities_and_restarts_at_zero() {
        let mut acc = Accumulator::new(AggKind::Sum, DataType::Double, true);
        acc.add(&Value::Double(f64::INFINITY), 0, 1);
        acc.add(&Value::Double(0.1), 0, 2);
        assert_eq!(acc.finish(), Value::Double(f64::INFINITY));
        acc.add(&Value::Double(f64::NEG_INFINITY), 0, 3);
        assert!(matches!(acc.finish(), Value::Double(d) if d.is_nan()));
        acc.retract(&Value::Double(f64::INFINITY), 0);
        acc.retract(&Value::Double(f64::NEG_INFINITY), 0);
        assert_eq!(acc.finish(), Value::Double(0.1));
        acc.retract(&Value::Double(0.1), 0);
        assert_eq!(acc.finish(), Value::Null);
        acc.add(&Value::Double(0.2), 0, 4);
        assert_eq!(acc.finish(), Value::Double(0.2));
    }

    #[test]
    fn first_and_last_by_event_time_then_arrival() {
        for retractable in [false, true] {
            let mut first = Accumulator::new(AggKind::FirstValue, DataType::Str, retractable);
            let mut last = Accumulator::new(AggKind::LastValue, DataType::Str, retractable);
            for (ts, seq, v) in [
                (5, 1, "a"),
                (3, 2, "b"),
                (3, 3, "c"),
                (7, 4, "d"),
                (7, 5, "e"),
                (1, 6, ""),
            ] {
                let v = if v.is_empty() { Value::Null } else { Value::str(v) };
                first.add(&v, ts, seq);
                last.add(&v, ts, seq);
            }
            assert_eq!(
                first.finish(),
                Value::str("b"),
                "NULL at ts 1 is ignored; tie at 3 goes to the earlier arrival"
            );
            assert_eq!(last.finish(), Value::str("e"));
        }
    }

    #[test]
    fn count_distinct_treats_signed_zeros_alike() {
        let mut acc = Accumulator::new(AggKind::CountDistinct, DataType::Double, true);
        acc.add(&Value::Double(0.0), 0, 1);
        acc.add(&Value::Double(-0.0), 0, 2);
        acc.add(&Value::Double(1.0), 0, 3);
        assert_eq!(acc.finish(), Value::Int(2));
        acc.retract(&Value::Double(0.0), 0);
        assert_eq!(acc.finish(), Value::Int(2));
        acc.retract(&Value::Double(-0.0), 0);
        assert_eq!(acc.finish(), Value::Int(1));
    }

    #[test]
    #[should_panic(expected = "never added")]
    fn retracting_below_zero_panics() {
        let mut acc = Accumulator::new(AggKind::Count, DataType::Int, true);
        acc.retract(&Value::Int(1), 0);
    }

    #[test]
    #[should_panic(expected = "never added")]
    fn retracting_an_unknown_minimum_panics() {
        let mut acc = Accumulator::new(AggKind::Min, DataType::Int, true);
        acc.add(&Value::Int(1), 0, 1);
        acc.retract(&Value::Int(2), 0);
    }

    #[test]
    #[should_panic(expected = "different kinds")]
    fn merging_different_kinds_panics() {
        let mut a = Accumulator::new(AggKind::Count, DataType::Int, true);
        a.merge(Accumulator::new(AggKind::Sum, DataType::Int, true));
    }
}
