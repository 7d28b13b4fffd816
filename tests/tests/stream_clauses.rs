//! The streaming clauses `EMIT EVERY` and `LATE DATA TO`.
//!
//! `EMIT EVERY`: processing-time emission, driven by explicit ticks.
//! The aggregate operator of a planned query is fed batches, watermark
//! marks and ticks by hand, so processing time is exactly what the test
//! says. Two instances of the same query run side by side, one under
//! `EMIT CHANGES` and one under `EMIT EVERY`: after every tick that is due,
//! and at the end, both changelogs fold to the same table; between ticks
//! the `EMIT EVERY` one emits nothing, and it never emits more rows than
//! the `EMIT CHANGES` one (it coalesces). Inputs include retractions (an
//! upstream changelog) and a HAVING that turns updates into inserts and
//! deletes.
//!
//! `LATE DATA TO`: where the clause is refused, and its stream's columns.
//! What goes into the late stream is checked against a model in
//! `differential.rs` and in `golden/late_data.slt`.

use std::collections::BTreeMap;

use laminar_exec::batch::{Batch, Op, WATERMARK_END};
use laminar_exec::operator::Driven;
use laminar_exec::plan::{OperatorSpec, PhysicalPlan};
use laminar_exec::types::Value;
use laminar_sql::{plan_script, PlanOptions};
use proptest::prelude::*;

const INTERVAL_MS: i64 = 100;

fn plan(sql: &str) -> PhysicalPlan {
    plan_script(sql, PlanOptions::default()).unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

/// The last aggregate node of the plan, driven on its own.
fn aggregate_of(plan: &PhysicalPlan) -> (Driven, usize) {
    let (i, node) = plan
        .nodes
        .iter()
        .enumerate()
        .rev()
        .find(|(_, n)| matches!(n.spec, OperatorSpec::Aggregate(_)))
        .expect("an aggregate");
    (Driven::new(node.spec.build(), 1), i)
}

/// Folds a changelog into the multiset of rows it leaves.
fn fold(table: &mut BTreeMap<String, i64>, batch: &Batch) {
    for (op, row) in batch.rows() {
        let key = format!("{row:?}");
        let n = table.entry(key.clone()).or_insert(0);
        *n += if op.is_addition() { 1 } else { -1 };
        assert!(*n >= 0, "retraction of a row never emitted: {op:?} {key}");
        if *n == 0 {
            table.remove(&key);
        }
    }
}

/// One step of the input: rows, a watermark, or a tick.
#[derive(Debug, Clone)]
enum Step {
    Rows(Vec<(Op, Vec<Value>)>),
    Mark(i64),
    Tick(i64),
}

/// Runs the same steps through a CHANGES and an EVERY instance and checks
/// the promises above.
fn check_against_changes(sql_changes: &str, sql_every: &str, steps: &[Step]) -> Result<(), TestCaseError> {
    let (mut changes, ci) = aggregate_of(&plan(sql_changes));
    let (mut every, ei) = aggregate_of(&plan(sql_every));
    let width = plan(sql_every).nodes[ei].schema.len();
    assert_eq!(width, plan(sql_changes).nodes[ci].schema.len());
    let in_width = match steps.iter().find_map(|s| match s {
        Step::Rows(r) => r.first().map(|(_, row)| row.len()),
        _ => None,
    }) {
        Some(w) => w,
        None => return Ok(()),
    };
    let (mut folded_changes, mut folded_every) = (BTreeMap::new(), BTreeMap::new());
    let (mut rows_changes, mut rows_every) = (0usize, 0usize);
    let mut due = None::<i64>;
    for step in steps {
        let (mut out_c, mut out_e) = (Batch::new(width), Batch::new(width));
        match step {
            Step::Rows(rows) => {
                let mut b = Batch::new(in_width);
                for (op, row) in rows {
                    b.push(*op, row);
                }
                changes.push(0, &b, &mut out_c).expect("changes");
                every.push(0, &b, &mut out_e).expect("every");
            }
            Step::Mark(w) => {
                let mut b = Batch::new(in_width);
                b.push_mark(*w);
                changes.push(0, &b, &mut out_c).expect("changes");
                every.push(0, &b, &mut out_e).expect("every");
            }
            Step::Tick(now) => {
                every.tick(*now, &mut out_e).expect("tick");
                let first = *due.get_or_insert(now + INTERVAL_MS);
                if *now >= first {
                    due = Some(now + INTERVAL_MS);
                    fold(&mut folded_changes, &out_c);
                    fold(&mut folded_every, &out_e);
                    prop_assert_eq!(&folded_every, &folded_changes, "after the tick at {}", now);
                    rows_every += out_e.len();
                    continue;
                }
                prop_assert!(
                    out_e.is_empty(),
                    "a tick before the interval emitted: {:?}",
                    out_e.rows().collect::<Vec<_>>()
                );
            }
        }
        rows_changes += out_c.len();
        rows_every += out_e.len();
        fold(&mut folded_changes, &out_c);
        fold(&mut folded_every, &out_e);
        if let Step::Rows(_) = step {
            prop_assert!(out_e.is_empty(), "EMIT EVERY emitted on a row");
        }
    }
    let (mut out_c, mut out_e) = (Batch::new(width), Batch::new(width));
    let mut end = Batch::new(in_width);
    end.push_mark(WATERMARK_END);
    changes.push(0, &end, &mut out_c).expect("changes");
    every.push(0, &end, &mut out_e).expect("every");
    rows_changes += out_c.len();
    rows_every += out_e.len();
    fold(&mut folded_changes, &out_c);
    fold(&mut folded_every, &out_e);
    prop_assert_eq!(&folded_every, &folded_changes, "at the end of input");
    prop_assert!(
        rows_every <= rows_changes,
        "EVERY emitted {} rows, CHANGES {}",
        rows_every,
        rows_changes
    );
    Ok(())
}

fn windowed_sql(emit: &str) -> String {
    format!(
        "CREATE SOURCE t (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '0' SECOND)
           WITH (connector = 'file', path = 't.csv', format = 'csv');
         CREATE STREAM s AS
           SELECT k, COUNT(*) AS n, SUM(v) AS total, window_start
           FROM TUMBLE(t, ts, INTERVAL '1' SECOND)
           GROUP BY k, window_start, window_end
           HAVING SUM(v) > 0
           {emit} ALLOW LATENESS INTERVAL '1' SECOND;"
    )
}

/// Appends to an upstream changelog: the input of the second stage.
fn cascade_sql(emit: &str) -> String {
    format!(
        "CREATE SOURCE t (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
           WITH (connector = 'file', path = 't.csv', format = 'csv');
         CREATE STREAM per_key AS SELECT k, SUM(v) AS total FROM t GROUP BY k EMIT CHANGES;
         CREATE STREAM s AS
           SELECT total % 3 AS bucket, COUNT(*) AS keys, MAX(total) AS top
           FROM per_key GROUP BY total % 3 HAVING COUNT(*) > 1 {emit};"
    )
}

fn windowed_steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0u8..10, 0i64..3, -5i64..10, 0i64..4_000), 1..80).prop_map(|raw| {
        let (mut now, mut max_ts) = (0i64, i64::MIN);
        let mut steps = Vec::new();
        for (what, k, v, ts) in raw {
            match what {
                0..=5 => {
                    max_ts = max_ts.max(ts);
                    steps.push(Step::Rows(vec![(
                        Op::Insert,
                        vec![Value::Int(k), Value::Int(v), Value::Ts(ts)],
                    )]))
                }
                6 | 7 => {
                    if max_ts > i64::MIN {
                        steps.push(Step::Mark(max_ts));
                    }
                }
                _ => {
                    now += ts % 150;
                    steps.push(Step::Tick(now));
                }
            }
        }
        dedupe_marks(steps)
    })
}

/// Marks must advance strictly (the driver skips others anyway; keep the
/// steps honest).
fn dedupe_marks(steps: Vec<Step>) -> Vec<Step> {
    let mut last = i64::MIN;
    steps
        .into_iter()
        .filter(|s| match s {
            Step::Mark(w) if *w <= last => false,
            Step::Mark(w) => {
                last = *w;
                true
            }
            _ => true,
        })
        .collect()
}

/// A valid changelog of (k, total) rows: inserts, updates and deletes.
fn cascade_steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0u8..10, 0i64..5, -4i64..8), 1..80).prop_map(|raw| {
        let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
        let mut now = 0;
        let mut steps = Vec::new();
        for (what, k, v) in raw {
            let row = |t: i64| vec![Value::Int(k), Value::Int(t)];
            match (what, totals.get(&k).copied()) {
                (0..=6, None) => {
                    totals.insert(k, v);
                    steps.push(Step::Rows(vec![(Op::Insert, row(v))]));
                }
                (0..=5, Some(old)) => {
                    totals.insert(k, old + v);
                    steps.push(Step::Rows(vec![
                        (Op::UpdateBefore, row(old)),
                        (Op::UpdateAfter, row(old + v)),
                    ]));
                }
                (6, Some(old)) => {
                    totals.remove(&k);
                    steps.push(Step::Rows(vec![(Op::Delete, row(old))]));
                }
                _ => {
                    now += 10 + v.abs() * 20;
                    steps.push(Step::Tick(now));
                }
            }
        }
        steps
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn windowed_every_folds_to_changes(steps in windowed_steps()) {
        check_against_changes(&windowed_sql("EMIT CHANGES"), &windowed_sql("EMIT EVERY INTERVAL '100' MILLISECOND"), &steps)?;
    }

    #[test]
    fn cascade_every_folds_to_changes(steps in cascade_steps()) {
        check_against_changes(&cascade_sql("EMIT CHANGES"), &cascade_sql("EMIT EVERY INTERVAL '100' MILLISECOND"), &steps)?;
    }
}

/// Between ticks, many updates of one group leave one change.
#[test]
fn updates_between_ticks_coalesce() {
    let sql = cascade_sql("EMIT EVERY INTERVAL '100' MILLISECOND").replace("HAVING COUNT(*) > 1", "");
    let (mut every, i) = aggregate_of(&plan(&sql));
    let width = plan(&sql).nodes[i].schema.len();
    let mut out = Batch::new(width);
    every.tick(0, &mut out).unwrap();
    let mut input = Batch::new(2);
    input.push(Op::Insert, &[Value::Int(1), Value::Int(3)]);
    every.push(0, &input, &mut out).unwrap();
    every.tick(100, &mut out).unwrap();
    assert_eq!(
        out.rows().map(|(op, r)| (op, r.to_vec())).collect::<Vec<_>>(),
        vec![(Op::Insert, vec![Value::Int(0), Value::Int(1), Value::Int(3)])]
    );
    let mut out = Batch::new(width);
    for (old, new) in [(3, 6), (6, 9), (9, 12)] {
        let mut input = Batch::new(2);
        input.push(Op::UpdateBefore, &[Value::Int(1), Value::Int(old)]);
        input.push(Op::UpdateAfter, &[Value::Int(1), Value::Int(new)]);
        every.push(0, &input, &mut out).unwrap();
    }
    every.tick(150, &mut out).unwrap();
    assert!(out.is_empty(), "not due until 200");
    every.tick(200, &mut out).unwrap();
    // Bucket 0 held (3) and holds (12): one update, not three.
    assert_eq!(
        out.rows().map(|(op, r)| (op, r.to_vec())).collect::<Vec<_>>(),
        vec![
            (Op::UpdateBefore, vec![Value::Int(0), Value::Int(1), Value::Int(3)]),
            (Op::UpdateAfter, vec![Value::Int(0), Value::Int(1), Value::Int(12)]),
        ]
    );
    // A group that comes and goes between ticks emits nothing.
    let mut out = Batch::new(width);
    let mut input = Batch::new(2);
    input.push(Op::Insert, &[Value::Int(7), Value::Int(1)]);
    input.push(Op::Delete, &[Value::Int(7), Value::Int(1)]);
    every.push(0, &input, &mut out).unwrap();
    every.tick(300, &mut out).unwrap();
    assert!(out.is_empty(), "{:?}", out.rows().collect::<Vec<_>>());
    assert_eq!(every.operator().metrics().state_entries, 1);
}

#[test]
fn emit_every_needs_an_aggregate_and_no_session() {
    let src = "CREATE SOURCE t (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
                 WITH (connector = 'file', path = 't.csv', format = 'csv');";
    for (query, expected) in [
        (
            "CREATE STREAM s AS SELECT k FROM t EMIT EVERY INTERVAL '1' SECOND;",
            "EMIT EVERY applies to aggregates",
        ),
        (
            "CREATE STREAM s AS SELECT k, COUNT(*) FROM SESSION(t, ts, INTERVAL '1' SECOND) GROUP BY k, window_start, window_end EMIT EVERY INTERVAL '1' SECOND;",
            "a SESSION window can use EMIT CHANGES",
        ),
        (
            "CREATE STREAM s AS SELECT k, COUNT(*) FROM t GROUP BY k EMIT EVERY INTERVAL '0' SECOND;",
            "must be positive",
        ),
    ] {
        let err = plan_script(&format!("{src}\n{query}"), PlanOptions::default()).expect_err(query);
        let text = err.to_string();
        assert!(text.contains(expected), "{text}");
        assert!(text.contains("line 3"), "the error names the line: {text}");
    }
}

#[test]
fn late_data_to_is_checked_where_it_is_written() {
    let src = "CREATE SOURCE t (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
                 WITH (connector = 'file', path = 't.csv', format = 'csv');";
    let windowed =
        "SELECT k, COUNT(*) AS n FROM TUMBLE(t, ts, INTERVAL '1' SECOND) GROUP BY k, window_start, window_end";
    for (query, expected) in [
        (
            "CREATE STREAM s AS SELECT k FROM t LATE DATA TO l;".to_string(),
            "LATE DATA TO applies to windowed aggregates; this query has none",
        ),
        (
            format!("CREATE STREAM s AS {windowed} LATE DATA l;"),
            "expected LATE DATA TO <stream name>",
        ),
        (
            format!("CREATE STREAM s AS {windowed} LATE DATA TO l LATE DATA TO m;"),
            "LATE DATA TO given twice",
        ),
        (
            format!("CREATE STREAM s AS {windowed} LATE DATA TO t;"),
            "t is already defined",
        ),
        (
            format!("CREATE STREAM s AS {windowed} LATE DATA TO s;"),
            "s is already defined",
        ),
    ] {
        let err = plan_script(&format!("{src}\n{query}"), PlanOptions::default()).expect_err(&query);
        let text = err.to_string();
        assert!(text.contains(expected), "{query}: {text}");
        assert!(text.contains("line 3"), "the error names the line: {text}");
    }
    // `late` alone is an ordinary column name.
    let plan = plan_script(
        "CREATE SOURCE t (late BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
           WITH (connector = 'file', path = 't.csv', format = 'csv');
         CREATE STREAM s AS SELECT late, COUNT(*) AS n FROM TUMBLE(t, ts, INTERVAL '1' SECOND)
           GROUP BY late, window_start, window_end LATE DATA TO late_t;
         CREATE STREAM u AS SELECT late AS x, late_reason FROM late_t;",
        PlanOptions::default(),
    )
    .expect("plans");
    let late = plan.nodes.iter().find(|n| n.name == "late_t").expect("the late stream");
    let names: Vec<&str> = late.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["late", "ts", "late_reason"]);
}
