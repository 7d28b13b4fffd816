//! Differential tests of the interval and ASOF joins against naive models.
//!
//! Two inputs of random (key, id, event time) rows with bounded disorder
//! and a few stragglers. The model applies the join's rules literally:
//! a row is late when its time is below its own input's watermark
//! (`max(time so far) - delay`, before the row); every pair of non-late
//! rows with equal keys and `lo <= right.ts - left.ts <= hi` is one output
//! row; under LEFT, each non-late left row without a pair is one padded
//! row. The engine must agree exactly as a multiset, at every batch size
//! and shard count, however the two inputs interleave.

use laminar_tests::run_sql;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Row {
    key: u8,
    ts: i64,
}

fn arrivals() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((0u8..4, 0i64..300, 0i64..400, prop::bool::weighted(0.05)), 0..60).prop_map(|raw| {
        let mut clock = 0i64;
        raw.into_iter()
            .map(|(key, step, jitter, straggler)| {
                clock += step;
                let ts = if straggler {
                    clock - 4_000 - jitter
                } else {
                    clock - jitter
                };
                Row { key, ts }
            })
            .collect()
    })
}

fn write(dir: &std::path::Path, name: &str, rows: &[Row], prefix: &str) {
    let mut csv = String::from("k,id,ts\n");
    for (i, r) in rows.iter().enumerate() {
        csv.push_str(&format!("{},{prefix}{i},{}\n", r.key, r.ts));
    }
    std::fs::write(dir.join(name), csv).unwrap();
}

/// Indexes of the rows that are not late under `delay`.
fn on_time(rows: &[Row], delay: i64) -> (Vec<usize>, u64) {
    let (mut max, mut kept, mut late) = (i64::MIN, Vec::new(), 0);
    for (i, r) in rows.iter().enumerate() {
        let watermark = max.saturating_sub(delay);
        if r.ts < watermark {
            late += 1;
        } else {
            kept.push(i);
        }
        max = max.max(r.ts);
    }
    (kept, late)
}

/// Runs `select_from` (a SELECT over sources `l` and `r`) over the two
/// inputs: the sink's sorted lines, the run's late-row count, and the
/// sink's text for failure messages.
fn run_join(
    left: &[Row],
    right: &[Row],
    delay: i64,
    select_from: &str,
    batch_rows: usize,
    shards: usize,
) -> Result<(Vec<String>, u64, String), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "l.csv", left, "l");
    write(dir.path(), "r.csv", right, "r");
    let sql = format!(
        "CREATE SOURCE l (k BIGINT, id VARCHAR, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '{delay}' MILLISECOND)
         WITH (connector = 'file', path = '{{dir}}/l.csv', header = 'true');
         CREATE SOURCE r (k BIGINT, id VARCHAR, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '{delay}' MILLISECOND)
         WITH (connector = 'file', path = '{{dir}}/r.csv', header = 'true');
         CREATE STREAM j AS {select_from};
         CREATE SINK o FROM j WITH (connector = 'file', path = '{{dir}}/out.csv');"
    );
    let outcome = run_sql(&sql, dir.path(), batch_rows, shards).map_err(TestCaseError::fail)?;
    let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    lines.sort();
    Ok((lines, outcome.summary.late_rows_dropped(), text))
}

fn check(
    left: &[Row],
    right: &[Row],
    (lo, hi): (i64, i64),
    delay: i64,
    left_join: bool,
    batch_rows: usize,
    shards: usize,
) -> Result<(), TestCaseError> {
    let (lk, l_late) = on_time(left, delay);
    let (rk, r_late) = on_time(right, delay);
    let mut expected = Vec::new();
    for &i in &lk {
        let mut matched = false;
        for &j in &rk {
            let d = right[j].ts - left[i].ts;
            if left[i].key == right[j].key && d >= lo && d <= hi {
                expected.push(format!("l{i},{},r{j},{}", left[i].ts, right[j].ts));
                matched = true;
            }
        }
        if left_join && !matched {
            expected.push(format!("l{i},{},,", left[i].ts));
        }
    }
    expected.sort();
    let interval = |ms: i64| {
        if ms >= 0 {
            format!("+ INTERVAL '{ms}' MILLISECOND")
        } else {
            format!("- INTERVAL '{}' MILLISECOND", -ms)
        }
    };
    let select_from = format!(
        "SELECT l.id, l.ts, r.id AS rid, r.ts AS rts FROM l {kind} JOIN r ON l.k = r.k AND r.ts BETWEEN l.ts {lo} AND l.ts {hi}",
        kind = if left_join { "LEFT" } else { "INNER" },
        lo = interval(lo),
        hi = interval(hi),
    );
    let (actual, late, text) = run_join(left, right, delay, &select_from, batch_rows, shards)?;
    prop_assert_eq!(&actual, &expected, "engine output:\n{}", text);
    prop_assert_eq!(late, l_late + r_late);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn interval_joins_match_the_nested_loop_model(
        left in arrivals(),
        right in arrivals(),
        bounds in prop::sample::select(vec![(-100i64, 100i64), (0, 500), (-1000, -200), (0, 0), (250, 2000)]),
        delay in 0i64..500,
        left_join in any::<bool>(),
        batch_rows in prop::sample::select(vec![1usize, 5, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        check(&left, &right, bounds, delay, left_join, batch_rows, shards)?;
    }

    #[test]
    fn asof_joins_match_the_model(
        left in arrivals(),
        right in arrivals(),
        delay in 0i64..500,
        strict in any::<bool>(),
        batch_rows in prop::sample::select(vec![1usize, 5, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        check_asof(&left, &right, delay, strict, batch_rows, shards)?;
    }
}

/// The ASOF model: each non-late left row with the non-late right row of
/// its key whose time is the latest at or before (strict: before) its
/// own, ties to the right row that arrived last; NULLs when none.
fn check_asof(
    left: &[Row],
    right: &[Row],
    delay: i64,
    strict: bool,
    batch_rows: usize,
    shards: usize,
) -> Result<(), TestCaseError> {
    let (lk, l_late) = on_time(left, delay);
    let (rk, r_late) = on_time(right, delay);
    let mut expected = Vec::new();
    for &i in &lk {
        let l = &left[i];
        let best = rk
            .iter()
            .filter(|&&j| {
                right[j].key == l.key
                    && if strict {
                        right[j].ts < l.ts
                    } else {
                        right[j].ts <= l.ts
                    }
            })
            .max_by_key(|&&j| (right[j].ts, j));
        expected.push(match best {
            Some(&j) => format!("l{i},r{j}"),
            None => format!("l{i},"),
        });
    }
    expected.sort();
    let select_from = format!(
        "SELECT l.id, r.id AS rid FROM l ASOF JOIN r MATCH_CONDITION(l.ts {op} r.ts) ON l.k = r.k",
        op = if strict { ">" } else { ">=" },
    );
    let (actual, late, text) = run_join(left, right, delay, &select_from, batch_rows, shards)?;
    prop_assert_eq!(&actual, &expected, "engine output:\n{}", text);
    prop_assert_eq!(late, l_late + r_late);
    Ok(())
}
