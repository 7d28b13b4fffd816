//! Differential test of windowed top-N against a sort-and-take model.
//!
//! Random rows (id, value, event time) with bounded disorder and a few
//! stragglers go through `ROW_NUMBER()` (or `RANK()`) per tumbling window,
//! ordered by value descending. The model: a row is late when its window
//! has ended at the watermark before it (`max(time so far) - delay`); each
//! window's kept rows are sorted by value descending, ties in arrival
//! order; ROW_NUMBER numbers them 1, 2, …, RANK gives ties the rank of the
//! first; rows numbered at most N are the result.

use laminar_exec::time::floor_to;
use laminar_tests::run_sql;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Row {
    value: i64,
    ts: i64,
}

fn arrivals() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((0i64..6, 0i64..200, 0i64..300, prop::bool::weighted(0.05)), 1..80).prop_map(|raw| {
        let mut clock = 0i64;
        raw.into_iter()
            .map(|(value, step, jitter, straggler)| {
                clock += step;
                let ts = if straggler {
                    clock - 3_000 - jitter
                } else {
                    clock - jitter
                };
                Row { value, ts }
            })
            .collect()
    })
}

/// `rows` as `in.csv` (id, v, ts) in `dir`; row i has id `r{i}`.
fn write_input(dir: &std::path::Path, rows: &[Row]) {
    let mut csv = String::from("id,v,ts\n");
    for (i, r) in rows.iter().enumerate() {
        csv.push_str(&format!("r{i},{},{}\n", r.value, r.ts));
    }
    std::fs::write(dir.join("in.csv"), csv).unwrap();
}

fn model(rows: &[Row], size: i64, delay: i64, n: i64, rank: bool) -> (Vec<String>, u64) {
    let (mut max, mut late) = (i64::MIN, 0u64);
    let mut windows: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, r) in rows.iter().enumerate() {
        let watermark = max.saturating_sub(delay);
        let start = floor_to(r.ts, size);
        if start + size <= watermark {
            late += 1;
        } else {
            windows.entry(start).or_default().push(i);
        }
        max = max.max(r.ts);
    }
    let mut out = Vec::new();
    for (start, mut ids) in windows {
        // Ties by the rest of the row, never by arrival: the row's first
        // column is its id, `r{i}` (compared as text).
        ids.sort_by_key(|&i| (std::cmp::Reverse(rows[i].value), format!("r{i}")));
        for (pos, &i) in ids.iter().enumerate() {
            let number = if rank {
                ids.iter().position(|&j| rows[j].value == rows[i].value).unwrap() as i64 + 1
            } else {
                pos as i64 + 1
            };
            if number <= n {
                out.push(format!("r{i},{},{start},{number}", rows[i].value));
            }
        }
    }
    out.sort();
    (out, late)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn windowed_top_n_matches_sort_and_take(
        rows in arrivals(),
        size in prop::sample::select(vec![100i64, 500, 2000]),
        delay in 0i64..400,
        n in 1i64..4,
        rank in any::<bool>(),
        batch_rows in prop::sample::select(vec![1usize, 7, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        let (expected, expected_late) = model(&rows, size, delay, n, rank);
        let dir = tempfile::tempdir().unwrap();
        write_input(dir.path(), &rows);
        let sql = format!(
            "CREATE SOURCE e (id VARCHAR, v BIGINT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '{delay}' MILLISECOND)
             WITH (connector = 'file', path = '{{dir}}/in.csv', header = 'true');
             CREATE STREAM t AS SELECT id, v, window_start, rn FROM (
               SELECT id, v, window_start, window_end,
                      {f}() OVER (PARTITION BY window_start ORDER BY v DESC) AS rn
               FROM TUMBLE(e, ts, INTERVAL '{size}' MILLISECOND)
             ) WHERE rn <= {n};
             CREATE SINK o FROM t WITH (connector = 'file', path = '{{dir}}/out.csv');",
            f = if rank { "RANK" } else { "ROW_NUMBER" },
        );
        let outcome = run_sql(&sql, dir.path(), batch_rows, shards).map_err(TestCaseError::fail)?;
        let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
        // window_start prints as a timestamp; compare it as epoch ms.
        let mut actual: Vec<String> = text
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                let ms = laminar_exec::time::parse_timestamp(c[2]).expect("a timestamp");
                format!("{},{},{},{}", c[0], c[1], ms, c[3])
            })
            .collect();
        actual.sort();
        prop_assert_eq!(&actual, &expected, "engine output:\n{}", text);
        prop_assert_eq!(outcome.summary.late_rows_dropped(), expected_late);
    }
}

/// Folds a changelog sink file (`op,cols…`) into its final rows.
fn fold(text: &str) -> Vec<String> {
    let mut live: std::collections::BTreeMap<String, i64> = Default::default();
    for line in text.lines().skip(1) {
        let (op, rest) = line.split_once(',').expect("op column");
        *live.entry(rest.to_string()).or_insert(0) += if op.starts_with('+') { 1 } else { -1 };
    }
    live.into_iter()
        .flat_map(|(row, n)| {
            assert!(n >= 0, "retracted more than added: {row}");
            std::iter::repeat_n(row, n as usize)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Top-N over a changelog (an unwindowed GROUP BY, updated on every
    /// row and read from every shard): whatever order the updates arrive
    /// in, the folded top-N changelog equals sort-and-take over the final
    /// counts.
    #[test]
    fn top_n_over_a_changelog_folds_to_the_batch_answer(
        rows in arrivals(),
        n in 1i64..4,
        batch_rows in prop::sample::select(vec![1usize, 7, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        // Final counts per value (the key), then the top n by count
        // descending, key ascending (a total order: no ties to break).
        let mut counts: std::collections::BTreeMap<i64, i64> = Default::default();
        for r in &rows {
            *counts.entry(r.value).or_insert(0) += 1;
        }
        let mut ranked: Vec<(i64, i64)> = counts.into_iter().collect();
        ranked.sort_by_key(|&(k, c)| (std::cmp::Reverse(c), k));
        let mut expected: Vec<String> = ranked
            .iter()
            .take(n as usize)
            .enumerate()
            .map(|(i, (k, c))| format!("{k},{c},{}", i + 1))
            .collect();
        expected.sort();

        let dir = tempfile::tempdir().unwrap();
        write_input(dir.path(), &rows);
        let sql = format!(
            "CREATE SOURCE e (id VARCHAR, v BIGINT, ts BIGINT, WATERMARK FOR ts AS ts)
             WITH (connector = 'file', path = '{{dir}}/in.csv', header = 'true');
             CREATE STREAM counts AS SELECT v, COUNT(*) AS c FROM e GROUP BY v;
             CREATE STREAM t AS SELECT v, c, rn FROM (
               SELECT v, c, ROW_NUMBER() OVER (ORDER BY c DESC, v) AS rn FROM counts
             ) WHERE rn <= {n};
             CREATE SINK o FROM t WITH (connector = 'file', path = '{{dir}}/out.csv');"
        );
        run_sql(&sql, dir.path(), batch_rows, shards).map_err(TestCaseError::fail)?;
        let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
        let mut actual = fold(&text);
        actual.sort();
        prop_assert_eq!(&actual, &expected, "changelog:\n{}", text);
    }
}

/// ROW_NUMBER over a changelog whose rows all tie in the ORDER BY keys: the
/// folded answer is the row whose other columns sort first, at every shard
/// count (it once followed arrival: `a` on one shard, `d` on two and four).
#[test]
fn row_number_ties_are_broken_by_the_rows_values_at_every_shard_count() {
    for shards in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.csv"), "k\na\nb\nc\nd\n").unwrap();
        let sql = "CREATE SOURCE t (k VARCHAR) WITH (connector = 'file', path = '{dir}/in.csv', header = 'true');
             CREATE STREAM cnt AS SELECT 1 AS one, k, COUNT(*) AS n FROM t GROUP BY k;
             CREATE STREAM top AS SELECT k, n FROM (
               SELECT one, k, n, ROW_NUMBER() OVER (PARTITION BY one ORDER BY n DESC) AS rn FROM cnt) WHERE rn = 1;
             CREATE SINK o FROM top WITH (connector = 'file', path = '{dir}/out.csv');";
        run_sql(sql, dir.path(), 4096, shards).unwrap();
        let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
        assert_eq!(fold(&text), vec!["a,1".to_string()], "{shards} shards:\n{text}");
    }
}

/// Rows (key, value, event time) for an aggregate under a top-N: many
/// keys, so that a window holds more groups than the candidates kept
/// before a prune (64), skewed so that counts differ, ties frequent.
fn keyed_arrivals() -> impl Strategy<Value = Vec<(i64, i64, i64)>> {
    prop::collection::vec((0i64..150, 0i64..150, 0i64..6, 0i64..4, 0i64..300), 1..600).prop_map(|raw| {
        let mut clock = 0i64;
        raw.into_iter()
            .map(|(a, b, v, step, jitter)| {
                clock += step;
                (a.min(b), v, clock - jitter)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// An aggregate read only by a top-N over its windows emits at a
    /// close only the groups that can rank (`prune_ranked_groups`); the
    /// top-N's output must be exactly what it is when the aggregate emits
    /// every group (forced here by a second reader of the aggregate), for
    /// COUNT, MAX and MIN rankings, ROW_NUMBER and RANK, tumbling and
    /// hopping windows, any batch size and shard count.
    #[test]
    fn an_aggregate_pruned_for_its_top_n_gives_the_same_top_n(
        rows in keyed_arrivals(),
        ranking in prop::sample::select(vec!["COUNT(*) AS s ORDER BY s DESC", "MAX(v) AS s ORDER BY s DESC", "MIN(v) AS s ORDER BY s"]),
        hop in any::<bool>(),
        n in 1i64..4,
        rank in any::<bool>(),
        delay in 0i64..300,
        batch_rows in prop::sample::select(vec![1usize, 7, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("k,v,ts\n");
        for (k, v, ts) in &rows {
            csv.push_str(&format!("{k},{v},{ts}\n"));
        }
        std::fs::write(dir.path().join("in.csv"), csv).unwrap();
        let (agg, order) = ranking.split_once(" ORDER BY ").unwrap();
        let window = if hop {
            "HOP(e, ts, INTERVAL '200' MILLISECOND, INTERVAL '600' MILLISECOND)"
        } else {
            "TUMBLE(e, ts, INTERVAL '500' MILLISECOND)"
        };
        let script = |extra_reader: bool| {
            format!(
                "CREATE SOURCE e (k BIGINT, v BIGINT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '{delay}' MILLISECOND)
                 WITH (connector = 'file', path = '{{dir}}/in.csv', header = 'true');
                 CREATE STREAM g AS SELECT k, {agg}, window_start, window_end FROM {window}
                   GROUP BY k, window_start, window_end;
                 CREATE STREAM t AS SELECT k, s, window_start, rn FROM (
                   SELECT k, s, window_start, window_end,
                          {f}() OVER (PARTITION BY window_start, window_end ORDER BY {order}) AS rn
                   FROM g
                 ) WHERE rn <= {n};
                 CREATE SINK o FROM t WITH (connector = 'file', path = '{{dir}}/out.csv');
                 {more}",
                f = if rank { "RANK" } else { "ROW_NUMBER" },
                more = if extra_reader {
                    "CREATE SINK all_groups FROM g WITH (connector = 'file', path = '{dir}/all.csv');"
                } else {
                    ""
                },
            )
        };
        let explain = |extra_reader: bool| {
            let text = script(extra_reader).replace("{dir}", &dir.path().display().to_string());
            laminar_sql::plan_script(&text, laminar_sql::PlanOptions::default()).unwrap().explain()
        };
        let pruning = "emits at each window's close only the groups";
        prop_assert!(explain(false).contains(pruning), "{}", explain(false));
        prop_assert!(!explain(true).contains(pruning), "a second reader needs every group");
        let mut outputs = Vec::new();
        for extra_reader in [false, true] {
            let outcome = run_sql(&script(extra_reader), dir.path(), batch_rows, shards).map_err(TestCaseError::fail)?;
            let mut lines: Vec<String> = std::fs::read_to_string(dir.path().join("out.csv"))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            lines.sort();
            outputs.push((lines, outcome.summary.late_rows_dropped()));
        }
        prop_assert_eq!(&outputs[0], &outputs[1]);
    }
}
