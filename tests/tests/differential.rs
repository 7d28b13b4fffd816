//! Differential tests: whole SQL pipelines against naive models that
//! recompute everything from scratch.
//!
//! Inputs are random (key, value, event time) rows delivered with bounded
//! disorder plus a few very late stragglers. The model replays the SPEC's
//! rules literally: the watermark before each record is
//! `max(event time so far) - delay`, a record is late when every window it
//! belongs to has `end + lateness <= W`, and each window's result is
//! recomputed from the records it kept. The engine must agree exactly, at
//! every batch size and on 1, 2 or 4 shards, and its EMIT CHANGES and
//! EMIT EVERY changelogs, folded, must equal its final rows. With
//! `LATE DATA TO`, the late stream holds exactly the model's late records.

use std::collections::BTreeMap;

use laminar_exec::time::{floor_to, parse_timestamp, timestamp_to_string};
use laminar_tests::run_sql;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Event {
    key: u8,
    value: i64,
    ts: i64,
}

/// Rows in arrival order: event times with bounded disorder, and a few
/// stragglers far behind.
fn arrivals(max_disorder: i64) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            0u8..4,
            -50i64..50,
            0i64..400,
            0i64..=max_disorder,
            prop::bool::weighted(0.05),
        ),
        1..120,
    )
    .prop_map(move |raw| {
        let mut clock = 0i64;
        raw.into_iter()
            .map(|(key, value, step, jitter, straggler)| {
                clock += step;
                let ts = if straggler {
                    clock - 5_000 - jitter
                } else {
                    clock - jitter
                };
                Event { key, value, ts }
            })
            .collect()
    })
}

fn write_input(dir: &std::path::Path, events: &[Event]) {
    let mut csv = String::from("k,v,ts\n");
    for e in events {
        csv.push_str(&format!("k{},{},{}\n", e.key, e.value, e.ts));
    }
    std::fs::write(dir.join("in.csv"), csv).unwrap();
}

/// (key, window_start) → (count, sum, min, max)
type Windows = BTreeMap<(String, i64), (i64, i64, i64, i64)>;

fn add(w: &mut Windows, key: String, start: i64, v: i64) {
    let e = w.entry((key, start)).or_insert((0, 0, i64::MAX, i64::MIN));
    e.0 += 1;
    e.1 += v;
    e.2 = e.2.min(v);
    e.3 = e.3.max(v);
}

/// The model of a tumbling/hopping windowed aggregate with lateness: the
/// windows, and the late records as the late stream's CSV lines, sorted.
fn model_fixed(events: &[Event], slide: i64, size: i64, delay: i64, lateness: i64) -> (Windows, Vec<String>) {
    let mut out = Windows::new();
    let mut watermark = i64::MIN;
    let mut max_ts = i64::MIN;
    let mut late = Vec::new();
    for e in events {
        let mut starts = Vec::new();
        let mut start = floor_to(e.ts, slide);
        while start > e.ts - size {
            starts.push(start);
            start -= slide;
        }
        let open: Vec<i64> = starts.into_iter().filter(|s| watermark < s + size + lateness).collect();
        if open.is_empty() {
            late.push(format!(
                "k{},{},{},window closed",
                e.key,
                e.value,
                timestamp_to_string(e.ts)
            ));
        }
        for s in open {
            add(&mut out, format!("k{}", e.key), s, e.value);
        }
        max_ts = max_ts.max(e.ts);
        watermark = watermark.max(max_ts - delay);
    }
    late.sort();
    (out, late)
}

fn parse_windows(text: &str, changelog: bool) -> Windows {
    // Columns: [op,] k, n, s, mn, mx, window_start
    let mut folded: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let mut cols: Vec<String> = line.split(',').map(str::to_string).collect();
        let sign = if changelog {
            let op = cols.remove(0);
            if op.starts_with('+') {
                1
            } else {
                -1
            }
        } else {
            1
        };
        *folded.entry(cols).or_insert(0) += sign;
    }
    let mut out = Windows::new();
    for (cols, count) in folded {
        assert!(
            count == 0 || count == 1,
            "a row survives the fold {count} times: {cols:?}"
        );
        if count == 1 {
            let n = |i: usize| cols[i].parse::<i64>().unwrap();
            let start = parse_timestamp(&cols[5]).unwrap();
            let prev = out.insert((cols[0].clone(), start), (n(1), n(2), n(3), n(4)));
            assert!(prev.is_none(), "two rows for one window: {cols:?}");
        }
    }
    out
}

fn fixed_sql(window: &str, delay: i64, lateness: i64, emit: &str, late_to: bool) -> String {
    let allow = if lateness > 0 {
        format!("ALLOW LATENESS INTERVAL '{lateness}' MILLISECOND")
    } else {
        String::new()
    };
    format!(
        "CREATE SOURCE e (k VARCHAR, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '{delay}' MILLISECOND)
         WITH (connector = 'file', path = '{{dir}}/in.csv', header = 'true');
         CREATE STREAM q AS SELECT k, COUNT(*) AS n, SUM(v) AS s, MIN(v) AS mn, MAX(v) AS mx, window_start
         FROM {window} GROUP BY k, window_start, window_end EMIT {emit} {allow} {late};
         CREATE SINK o FROM q WITH (connector = 'file', path = '{{dir}}/out.csv');
         {late_sink}",
        late = if late_to { "LATE DATA TO late_q" } else { "" },
        late_sink = if late_to {
            "CREATE SINK l FROM late_q WITH (connector = 'file', path = '{dir}/late.csv');"
        } else {
            ""
        },
    )
}

fn check_fixed(
    events: &[Event],
    slide: i64,
    size: i64,
    delay: i64,
    lateness: i64,
    batch_rows: usize,
    shards: usize,
) -> Result<(), TestCaseError> {
    let (expected, expected_late) = model_fixed(events, slide, size, delay, lateness);
    let window = if slide == size {
        format!("TUMBLE(e, ts, INTERVAL '{size}' MILLISECOND)")
    } else {
        format!("HOP(e, ts, INTERVAL '{slide}' MILLISECOND, INTERVAL '{size}' MILLISECOND)")
    };
    // EMIT EVERY with an interval no run reaches: flushed as windows close.
    for (emit, changelog, late_to) in [
        ("ON WINDOW CLOSE", false, false),
        ("CHANGES", true, false),
        ("EVERY INTERVAL '1' HOUR", true, false),
        ("ON WINDOW CLOSE", false, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_input(dir.path(), events);
        let outcome = run_sql(
            &fixed_sql(&window, delay, lateness, emit, late_to),
            dir.path(),
            batch_rows,
            shards,
        )
        .map_err(TestCaseError::fail)?;
        let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
        let actual = parse_windows(&text, changelog);
        prop_assert_eq!(&actual, &expected, "EMIT {} output:\n{}", emit, text);
        let dropped = if late_to { 0 } else { expected_late.len() as u64 };
        prop_assert_eq!(
            outcome.summary.late_rows_dropped(),
            dropped,
            "late rows dropped under EMIT {}, LATE DATA TO {}",
            emit,
            late_to
        );
        if late_to {
            let text = std::fs::read_to_string(dir.path().join("late.csv")).unwrap();
            let mut lines = text.lines();
            prop_assert_eq!(lines.next(), Some("k,v,ts,late_reason"));
            let mut late: Vec<&str> = lines.collect();
            late.sort_unstable();
            prop_assert_eq!(late, expected_late.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
    Ok(())
}

/// Batch sessionization per key: sort by time, split where the gap to the
/// previous event exceeds `gap`.
fn model_sessions(events: &[Event], gap: i64) -> Windows {
    let mut by_key: BTreeMap<u8, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_key.entry(e.key).or_default().push(e);
    }
    let mut out = Windows::new();
    for (key, mut evs) in by_key {
        evs.sort_by_key(|e| e.ts);
        let mut start = evs[0].ts;
        let mut last = evs[0].ts;
        for e in evs {
            if e.ts - last > gap {
                start = e.ts;
            }
            last = e.ts;
            add(&mut out, format!("k{key}"), start, e.value);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_windows_match_the_model(
        events in arrivals(300),
        size in prop::sample::select(vec![100i64, 250, 1000]),
        delay in 0i64..400,
        lateness in prop::sample::select(vec![0i64, 0, 150, 600]),
        batch_rows in prop::sample::select(vec![1usize, 7, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        check_fixed(&events, size, size, delay, lateness, batch_rows, shards)?;
    }

    #[test]
    fn hopping_windows_match_the_model(
        events in arrivals(300),
        (slide, size) in prop::sample::select(vec![(100i64, 300i64), (250, 1000), (300, 500)]),
        delay in 0i64..400,
        lateness in prop::sample::select(vec![0i64, 200]),
        batch_rows in prop::sample::select(vec![1usize, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        check_fixed(&events, slide, size, delay, lateness, batch_rows, shards)?;
    }

    /// With a watermark delay larger than the disorder (and no stragglers),
    /// nothing is late and streaming sessions equal batch sessions, however
    /// the events were shuffled.
    #[test]
    fn sessions_match_batch_sessionization(
        events in arrivals(200).prop_map(|v| v.into_iter().filter(|e| e.ts >= 0).collect::<Vec<_>>()),
        gap in prop::sample::select(vec![50i64, 300, 1000]),
        batch_rows in prop::sample::select(vec![1usize, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        prop_assume!(!events.is_empty());
        // Strictly more than the disorder, so no event can reach a closed
        // session (stragglers were filtered only if they went negative, so
        // bound the disorder by what is really there).
        let mut max_so_far = i64::MIN;
        let mut disorder = 0;
        for e in &events {
            max_so_far = max_so_far.max(e.ts);
            disorder = disorder.max(max_so_far - e.ts);
        }
        let delay = disorder + 1;
        let expected = model_sessions(&events, gap);
        for (emit, changelog) in [("ON WINDOW CLOSE", false), ("CHANGES", true)] {
            let dir = tempfile::tempdir().unwrap();
            write_input(dir.path(), &events);
            let sql = format!(
                "CREATE SOURCE e (k VARCHAR, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '{delay}' MILLISECOND)
                 WITH (connector = 'file', path = '{{dir}}/in.csv', header = 'true');
                 CREATE STREAM q AS SELECT k, COUNT(*) AS n, SUM(v) AS s, MIN(v) AS mn, MAX(v) AS mx, window_start
                 FROM SESSION(e, ts, INTERVAL '{gap}' MILLISECOND) GROUP BY k, window_start, window_end EMIT {emit};
                 CREATE SINK o FROM q WITH (connector = 'file', path = '{{dir}}/out.csv');"
            );
            let outcome = run_sql(&sql, dir.path(), batch_rows, shards).map_err(TestCaseError::fail)?;
            let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
            prop_assert_eq!(&parse_windows(&text, changelog), &expected, "EMIT {} output:\n{}", emit, text);
            prop_assert_eq!(outcome.summary.late_rows_dropped(), 0);
        }
    }

    /// An unwindowed GROUP BY's changelog, folded, is the batch GROUP BY.
    #[test]
    fn unwindowed_changelog_folds_to_the_batch_answer(
        events in arrivals(300),
        batch_rows in prop::sample::select(vec![1usize, 5, 4096]),
        shards in prop::sample::select(laminar_tests::shard_counts()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_input(dir.path(), &events);
        let sql = "CREATE SOURCE e (k VARCHAR, v BIGINT, ts TIMESTAMP) WITH (connector = 'file', path = '{dir}/in.csv', header = 'true');
                   CREATE STREAM q AS SELECT k, COUNT(*) AS n, SUM(v) AS s, MIN(v) AS mn, MAX(v) AS mx, TIMESTAMP '1970-01-01 00:00:00' AS z FROM e GROUP BY k;
                   CREATE SINK o FROM q WITH (connector = 'file', path = '{dir}/out.csv');";
        run_sql(sql, dir.path(), batch_rows, shards).map_err(TestCaseError::fail)?;
        let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
        let mut expected = Windows::new();
        for e in &events {
            add(&mut expected, format!("k{}", e.key), 0, e.value);
        }
        prop_assert_eq!(parse_windows(&text, true), expected, "changelog:\n{}", text);
    }
}
