//! Runs every golden SQL file under `tests/golden/` and compares what the
//! sinks wrote, the run's counters and planning errors with the file.
//! Each file runs with tiny batches (1 and 3 rows) and, when
//! `LAMINAR_TEST_SHARDS` lists them, on 2 and 4 shards: results must depend
//! on neither. On more than one shard, rows of
//! different keys may interleave differently at a sink, so `ordered`
//! expectations are compared in order on one shard and as multisets
//! beyond (per-key order is what the differential tests check).

use std::path::PathBuf;

use laminar_tests::{metrics_text, normalize, parse_golden, render_golden, run_sql, Block};

fn run_file(path: &PathBuf, rewrite: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut blocks = parse_golden(&text)?;
    let mut first_outputs: Option<Vec<String>> = None;
    let enabled = laminar_tests::shard_counts();
    let combos = [(1, 4096), (1, 3), (1, 1), (2, 4096), (2, 1), (4, 4096), (4, 3)];
    for (shards, batch_rows) in combos.into_iter().filter(|(s, _)| *s == 1 || enabled.contains(s)) {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut sql = None;
        for b in &blocks {
            match b {
                Block::File { name, body } => {
                    std::fs::write(dir.path().join(name), body).map_err(|e| e.to_string())?;
                }
                Block::Sql(s) => sql = Some(s.clone()),
                _ => {}
            }
        }
        let sql = sql.ok_or("no sql block")?;
        let outcome = run_sql(&sql, dir.path(), batch_rows, shards);
        let mut outputs = Vec::new();
        for b in blocks.iter_mut() {
            match b {
                Block::Expect { name, ordered, body } => {
                    let o = outcome.as_ref().map_err(|e| format!("expected output but: {e}"))?;
                    let _ = o;
                    let actual = std::fs::read_to_string(dir.path().join(&*name))
                        .map_err(|e| format!("sink file {name}: {e}"))?;
                    let in_order = *ordered && shards == 1;
                    let actual = normalize(&actual, in_order);
                    outputs.push(actual.clone());
                    if rewrite && batch_rows == 4096 {
                        *body = actual.clone();
                    } else if normalize(body, in_order) != actual {
                        return Err(format!(
                            "{name} (shards {shards}, batch_rows {batch_rows}) differs.\n--- expected\n{}--- actual\n{actual}",
                            normalize(body, in_order)
                        ));
                    }
                    outputs.pop();
                    outputs.push(normalize(&actual, false));
                }
                Block::Metrics(body) => {
                    let o = outcome.as_ref().map_err(|e| format!("expected metrics but: {e}"))?;
                    let actual = metrics_text(o);
                    if rewrite && batch_rows == 4096 {
                        *body = actual;
                    } else {
                        // Only the keys the file lists are compared.
                        for line in body.lines().filter(|l| !l.trim().is_empty()) {
                            if !actual.lines().any(|a| a.trim() == line.trim()) {
                                return Err(format!(
                                    "metric {line:?} (shards {shards}, batch_rows {batch_rows}) not in:\n{actual}"
                                ));
                            }
                        }
                    }
                }
                Block::Error { location, text } => {
                    let err = match &outcome {
                        Err(e) => e.clone(),
                        Ok(_) => return Err("expected a planning error, but the script ran".into()),
                    };
                    let (loc, msg) = err.split_once(' ').unwrap_or((&err, ""));
                    if rewrite {
                        *location = loc.to_string();
                        *text = msg.to_string();
                    } else if loc != location || !msg.contains(text.as_str()) {
                        return Err(format!("expected error {location} …{text}…, got {loc} {msg}"));
                    }
                }
                _ => {}
            }
        }
        if outcome.is_err() && !blocks.iter().any(|b| matches!(b, Block::Error { .. })) {
            return Err(outcome.err().unwrap_or_default());
        }
        match &first_outputs {
            None => first_outputs = Some(outputs),
            Some(f) if *f != outputs => {
                return Err(format!("shards {shards}, batch_rows {batch_rows} changed the result"))
            }
            _ => {}
        }
        if rewrite {
            std::fs::write(path, render_golden(&blocks)).map_err(|e| e.to_string())?;
            break;
        }
    }
    Ok(())
}

#[test]
fn golden_files() {
    let rewrite = std::env::var_os("LAMINAR_GOLDEN_REWRITE").is_some();
    let files = laminar_tests::golden_files();
    assert!(!files.is_empty(), "no golden files found");
    let mut failures = Vec::new();
    for f in &files {
        if let Err(e) = run_file(f, rewrite) {
            failures.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
    eprintln!("{} golden files passed", files.len());
}
