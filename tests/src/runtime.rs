//! Running test pipelines through the real reactor (the `runtime`
//! feature: the fuzz targets, which need only the decoders, leave it off).

use std::collections::BTreeMap;
use std::path::Path;

use laminar_reactor::{RunOptions, RunSummary};
use laminar_sql::{plan_script, PlanOptions};

use crate::split_chunk_bytes;

/// What a run produced.
pub struct Outcome {
    pub summary: RunSummary,
    pub malformed_reports: Vec<String>,
}

/// Counters compared by `metrics` blocks.
pub fn metrics_text(o: &Outcome) -> String {
    let s = &o.summary;
    let mut m = BTreeMap::new();
    m.insert("rows_in", s.rows_in());
    m.insert("malformed", s.malformed());
    m.insert("late_rows_dropped", s.late_rows_dropped());
    m.insert(
        "late_rows_diverted",
        s.streams.iter().map(|x| x.metrics.late_rows_diverted).sum(),
    );
    m.insert("eval_errors", s.streams.iter().map(|x| x.metrics.eval_errors).sum());
    m.insert(
        "null_time_dropped",
        s.streams.iter().map(|x| x.metrics.null_time_dropped).sum(),
    );
    m.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

/// Plans and runs `sql` (with `{dir}` replaced by `dir`) on `shards`
/// shards.
pub fn run_sql(sql: &str, dir: &Path, batch_rows: usize, shards: usize) -> Result<Outcome, String> {
    run_sql_with(sql, dir, batch_rows, shards, None)
}

/// `run_sql` with the shards' spin-before-park time set.
pub fn run_sql_with(
    sql: &str,
    dir: &Path,
    batch_rows: usize,
    shards: usize,
    spin_before_park: Option<std::time::Duration>,
) -> Result<Outcome, String> {
    run_sql_durable(sql, dir, batch_rows, shards, spin_before_park, None).map_err(|e| e.to_string())
}

/// How a durable test run failed: planning, an injected fault (a
/// simulated crash), or anything else.
#[derive(Debug)]
pub enum RunFailure {
    Plan(String),
    Injected(String),
    Other(String),
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::Plan(e) => f.write_str(e),
            RunFailure::Injected(e) | RunFailure::Other(e) => write!(f, "run failed: {e}"),
        }
    }
}

/// `run_sql_with` that keeps durable state (`--state-dir`) when asked.
pub fn run_sql_durable(
    sql: &str,
    dir: &Path,
    batch_rows: usize,
    shards: usize,
    spin_before_park: Option<std::time::Duration>,
    durability: Option<laminar_reactor::checkpoint::Durability>,
) -> Result<Outcome, RunFailure> {
    // Warnings (a stalled run's report) reach stderr even under the test
    // harness's capture, so a hung test binary says where it hung.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LAMINAR_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let sql = sql.replace("{dir}", &dir.display().to_string());
    let plan = plan_script(&sql, PlanOptions::default())
        .map_err(|e| RunFailure::Plan(format!("{}:{} {}", e.line, e.column, e.message)))?;
    let mut reports = Vec::new();
    let mut on_malformed =
        |m: laminar_reactor::Malformed<'_>| reports.push(format!("{}:{}: {}", m.location, m.line, m.reason));
    let mut on_progress = |_: &laminar_reactor::Progress| {};
    let summary = laminar_reactor::run(
        &plan,
        RunOptions {
            batch_rows,
            shards,
            cpus: None,
            spin_before_park,
            clock: None,
            pacing: None,
            // Every file is read by every shard, in chunks of a few
            // records, so each multi-shard test also checks that reading a
            // file in parallel changes nothing.
            split_bytes_min: Some(0),
            split_chunk_bytes: Some(split_chunk_bytes()),
            split_generator_chunk_events: Some(37),
            durability,
            live: None,
            on_malformed: &mut on_malformed,
            on_progress: &mut on_progress,
        },
    )
    .map_err(|e| match e {
        laminar_reactor::RunError::Persist(p) if p.is_injected() => RunFailure::Injected(p.to_string()),
        e => {
            // The whole chain: "stream s: checkpoint state: …".
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            RunFailure::Other(text)
        }
    })?;
    Ok(Outcome {
        summary,
        malformed_reports: reports,
    })
}
