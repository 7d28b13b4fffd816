//! The admin HTTP endpoint of `laminar serve` (loopback by default):
//!
//! - `GET /health`: 200 while every shard's executor runs (its watchdog
//!   heartbeat moves), 503 naming the shard that does not.
//! - `GET /ready`: 200 once every shard has restored its state and reads
//!   its sources, 503 while recovering or stopping.
//! - `GET /metrics`: Prometheus text format, version 0.0.4.
//! - `GET /status`: the pipeline as JSON (sources with their addresses,
//!   streams with their inputs, sinks, shards, checkpoints, the last
//!   reload).
//! - `GET /`: the console, an HTML page embedded in the binary that draws
//!   the pipeline from `/status` and updates it every second.
//!
//! It runs on its own thread and only reads the run's atomic counters,
//! through `Live`: the running generation, which a reload replaces.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use laminar_exec::plan::PhysicalPlan;
use laminar_reactor::metrics::sum;
use laminar_reactor::runner::Control;

/// The console (`GET /`): one HTML page, no external resources, that
/// draws the pipeline and polls `/status` every second.
const CONSOLE: &str = include_str!("console.html");

/// The bound addresses of tcp sources and sinks, by plan index.
pub struct Addresses {
    pub sources: Vec<Option<std::net::SocketAddr>>,
    pub sinks: Vec<Option<std::net::SocketAddr>>,
}

/// One run of the pipeline: `serve` starts one, and one more per
/// accepted reload.
#[derive(Clone)]
pub struct Generation {
    pub plan: Arc<PhysicalPlan>,
    pub addresses: Arc<Addresses>,
    /// Set once the run has started.
    pub control: Option<Arc<Control>>,
}

/// The outcome of a reload (SIGHUP).
#[derive(Debug, Clone)]
pub struct Reload {
    pub accepted: bool,
    pub at_unix_ms: i64,
    /// Why it was refused, or what it changed, one line each.
    pub lines: Vec<String>,
}

/// What the admin thread and the signal monitor share with `serve`.
pub struct Live {
    pub generation: RwLock<Generation>,
    pub last_reload: Mutex<Option<Reload>>,
    pub reloads_accepted: AtomicU64,
    pub reloads_refused: AtomicU64,
}

impl Live {
    pub fn current(&self) -> Generation {
        self.generation
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Requests are served one at a time; a request body is never read, so
/// a client cannot make this thread hold memory.
pub fn serve(server: tiny_http::Server, live: Arc<Live>, started: Instant) {
    for request in server.incoming_requests() {
        let (status, content_type, body) = if *request.method() != tiny_http::Method::Get {
            (405, "text/plain", "only GET\n".to_string())
        } else {
            let path = request.url().split('?').next().unwrap_or("");
            let g = live.current();
            match (path, g.control.as_deref()) {
                ("/health", None) | ("/ready", None) => (503, "text/plain", "starting\n".to_string()),
                ("/health", Some(p)) => health(p),
                ("/ready", Some(p)) => ready(p),
                ("/metrics", p) => (
                    200,
                    "text/plain; version=0.0.4",
                    metrics(&g.plan, p, started) + &reload_metrics(&live),
                ),
                ("/status", p) => (
                    200,
                    "application/json",
                    status(&g.plan, &g.addresses, p, started, &live),
                ),
                ("/", _) => (200, "text/html; charset=utf-8", CONSOLE.to_string()),
                _ => (
                    404,
                    "text/plain",
                    "not found; try /, /health, /ready, /metrics or /status\n".to_string(),
                ),
            }
        };
        let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
            .expect("a static header is valid");
        let response = tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(header);
        let _ = request.respond(response);
    }
}

fn health(p: &Control) -> (u16, &'static str, String) {
    // Each shard's watchdog beats every 5 ms.
    let before: Vec<u64> = p.liveness.heartbeats.iter().map(|b| b.load(Relaxed)).collect();
    std::thread::sleep(Duration::from_millis(50));
    let stalled: Vec<String> = p
        .liveness
        .heartbeats
        .iter()
        .zip(&before)
        .enumerate()
        .filter(|(_, (b, before))| b.load(Relaxed) == **before)
        .map(|(i, _)| i.to_string())
        .collect();
    if stalled.is_empty() {
        (200, "text/plain", "ok\n".into())
    } else {
        (
            503,
            "text/plain",
            format!("shard {} not running (heartbeat stopped)\n", stalled.join(", ")),
        )
    }
}

fn ready(p: &Control) -> (u16, &'static str, String) {
    if p.stop.shutdown.load(Relaxed) {
        (503, "text/plain", "stopping\n".into())
    } else if p.metrics.ready.load(Relaxed) {
        (200, "text/plain", "ready\n".into())
    } else {
        (503, "text/plain", "recovering\n".into())
    }
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn metrics(plan: &PhysicalPlan, p: Option<&Control>, started: Instant) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {v}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    };
    family(
        "laminar_uptime_seconds",
        "gauge",
        "Seconds since the process started.",
        vec![(String::new(), started.elapsed().as_secs_f64())],
    );
    let Some(p) = p else {
        family(
            "laminar_ready",
            "gauge",
            "1 once recovered and running.",
            vec![(String::new(), 0.0)],
        );
        return out;
    };
    let m = &p.metrics;
    let ready = m.ready.load(Relaxed) && !p.stop.shutdown.load(Relaxed);
    family(
        "laminar_ready",
        "gauge",
        "1 once recovered and running.",
        vec![(String::new(), f64::from(u8::from(ready)))],
    );
    let per_source = |f: &dyn Fn(&laminar_reactor::metrics::SourceCounters) -> f64| -> Vec<(String, f64)> {
        plan.sources
            .iter()
            .zip(&m.sources)
            .map(|(s, c)| (format!("source=\"{}\"", label(&s.name)), f(c)))
            .collect()
    };
    type SourceMetric = fn(&laminar_reactor::metrics::SourceCounters) -> u64;
    let source_families: [(&str, &str, &str, SourceMetric); 7] = [
        (
            "laminar_source_rows_total",
            "counter",
            "Records read and decoded.",
            |c| c.rows.load(Relaxed),
        ),
        (
            "laminar_source_malformed_total",
            "counter",
            "Malformed records skipped (and dead-lettered).",
            |c| c.malformed.load(Relaxed),
        ),
        ("laminar_source_bytes_total", "counter", "Bytes read.", |c| {
            c.bytes.load(Relaxed)
        }),
        (
            "laminar_source_connections",
            "gauge",
            "Open connections of a tcp source.",
            |c| c.connections.load(Relaxed),
        ),
        (
            "laminar_source_inbox_bytes",
            "gauge",
            "Bytes a tcp source received and has not decoded yet.",
            |c| c.inbox_bytes.load(Relaxed),
        ),
        (
            "laminar_source_backpressure_waits_total",
            "counter",
            "Times a connection stopped reading its socket because the source's inbox was full.",
            |c| c.backpressure_waits.load(Relaxed),
        ),
        (
            "laminar_source_skew_outliers_total",
            "counter",
            "Event times beyond the wall clock plus watermark.skew_ms.",
            |c| c.outliers.load(Relaxed),
        ),
    ];
    for (name, kind, help, f) in source_families {
        family(name, kind, help, per_source(&|c| f(c) as f64));
    }
    family(
        "laminar_source_backpressure_seconds_total",
        "counter",
        "Time a tcp source's connections did not read their sockets for want of room, summed over them.",
        per_source(&|c| c.backpressure_ns.load(Relaxed) as f64 / 1e9),
    );
    // The wall clock the sources' skew bound reads.
    let now = laminar_exec::time::Clock::now_ms(&laminar_reactor::clock::SystemClock::default());
    let marked: Vec<(String, i64)> = plan
        .sources
        .iter()
        .zip(&m.sources)
        .filter(|(s, _)| s.watermark.is_some())
        .map(|(s, c)| (format!("source=\"{}\"", label(&s.name)), c.watermark.load(Relaxed)))
        .filter(|(_, w)| *w > i64::MIN)
        .collect();
    family(
        "laminar_source_watermark_ms",
        "gauge",
        "Event-time watermark, epoch milliseconds.",
        marked.iter().map(|(l, w)| (l.clone(), *w as f64)).collect(),
    );
    family(
        "laminar_source_watermark_lag_ms",
        "gauge",
        "Wall clock minus the watermark.",
        marked
            .iter()
            .map(|(l, w)| (l.clone(), now.saturating_sub(*w) as f64))
            .collect(),
    );
    let per_node = |f: &dyn Fn(&laminar_reactor::metrics::NodeCounters) -> u64| -> Vec<(String, f64)> {
        plan.nodes
            .iter()
            .zip(&m.nodes)
            .enumerate()
            .map(|(i, (n, c))| (format!("stream=\"{}\",node=\"{i}\"", label(&n.name)), f(c) as f64))
            .collect()
    };
    family(
        "laminar_stream_rows_in_total",
        "counter",
        "Rows into a stream's operator.",
        per_node(&|c| sum(&c.rows_in)),
    );
    family(
        "laminar_stream_rows_out_total",
        "counter",
        "Rows out of a stream's operator.",
        per_node(&|c| sum(&c.rows_out)),
    );
    family(
        "laminar_stream_late_dropped_total",
        "counter",
        "Late rows dropped.",
        per_node(&|c| sum(&c.late_dropped)),
    );
    let per_sink = |f: &dyn Fn(&laminar_reactor::metrics::SinkCounters) -> u64| -> Vec<(String, f64)> {
        plan.sinks
            .iter()
            .zip(&m.sinks)
            .map(|(s, c)| (format!("sink=\"{}\"", label(&s.name)), f(c) as f64))
            .collect()
    };
    family(
        "laminar_sink_rows_total",
        "counter",
        "Rows written to a sink.",
        per_sink(&|c| c.rows.load(Relaxed)),
    );
    family(
        "laminar_sink_subscribers",
        "gauge",
        "Connected subscribers of a tcp sink.",
        per_sink(&|c| c.subscribers.load(Relaxed)),
    );
    family(
        "laminar_sink_subscribers_dropped_total",
        "counter",
        "Subscribers dropped for falling behind.",
        per_sink(&|c| c.subscribers_dropped.load(Relaxed)),
    );
    let per_shard = |f: &dyn Fn(&laminar_reactor::metrics::ShardCounters) -> f64| -> Vec<(String, f64)> {
        m.shards
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("shard=\"{i}\""), f(s)))
            .collect()
    };
    let uptime = started.elapsed().as_secs_f64().max(1e-9);
    family(
        "laminar_shard_busy_seconds_total",
        "counter",
        "Time a shard spent processing.",
        per_shard(&|s| s.busy_ns.load(Relaxed) as f64 / 1e9),
    );
    family(
        "laminar_shard_busy_share",
        "gauge",
        "Busy time over uptime.",
        per_shard(&|s| s.busy_ns.load(Relaxed) as f64 / 1e9 / uptime),
    );
    family(
        "laminar_shard_queue_depth",
        "gauge",
        "Messages waiting in a shard's outboxes to its peers.",
        per_shard(&|s| s.queue_depth.load(Relaxed) as f64),
    );
    family(
        "laminar_shard_held_bytes",
        "gauge",
        "Bytes of rows waiting behind checkpoint barriers for a slower shard's.",
        per_shard(&|s| s.held_bytes.load(Relaxed) as f64),
    );
    family(
        "laminar_shard_held_bytes_peak",
        "gauge",
        "The most bytes of rows seen waiting behind checkpoint barriers.",
        per_shard(&|s| s.held_bytes_peak.load(Relaxed) as f64),
    );
    family(
        "laminar_shard_mesh_bytes",
        "gauge",
        "Bytes in a shard's outboxes and the mesh channels it sends on.",
        per_shard(&|s| s.mesh_bytes.load(Relaxed) as f64),
    );
    family(
        "laminar_shard_held_back_seconds_total",
        "counter",
        "Time a shard's sources waited for room (full outboxes, rows behind a barrier).",
        per_shard(&|s| s.held_back_ns.load(Relaxed) as f64 / 1e9),
    );
    family(
        "laminar_shard_stall_seconds_total",
        "counter",
        "Time a shard made no progress while input waited for it.",
        per_shard(&|s| s.stall_ns.load(Relaxed) as f64 / 1e9),
    );
    family(
        "laminar_wal_fsync_total",
        "counter",
        "Group commits (fdatasync) of a shard's WAL.",
        per_shard(&|s| s.wal_syncs.load(Relaxed) as f64),
    );
    family(
        "laminar_wal_fsync_seconds_total",
        "counter",
        "Time spent in WAL group commits; divided by laminar_wal_fsync_total, the mean latency.",
        per_shard(&|s| s.wal_sync_ns_total.load(Relaxed) as f64 / 1e9),
    );
    family(
        "laminar_wal_fsync_seconds_max",
        "gauge",
        "The longest WAL group commit so far.",
        per_shard(&|s| s.wal_sync_ns_max.load(Relaxed) as f64 / 1e9),
    );
    family(
        "laminar_checkpoints_total",
        "counter",
        "Checkpoints completed (the last epoch).",
        vec![(String::new(), m.checkpoints_completed.load(Relaxed) as f64)],
    );
    family(
        "laminar_checkpoint_duration_seconds",
        "gauge",
        "The last checkpoint, request to manifest.",
        vec![(String::new(), m.checkpoint_last_ns.load(Relaxed) as f64 / 1e9)],
    );
    family(
        "laminar_checkpoint_state_bytes",
        "gauge",
        "State bytes of the last checkpoint.",
        vec![(String::new(), m.checkpoint_last_state_bytes.load(Relaxed) as f64)],
    );
    family(
        "laminar_checkpoint_written_bytes",
        "gauge",
        "Bytes the last checkpoint wrote (the changed chunks).",
        vec![(String::new(), m.checkpoint_last_written_bytes.load(Relaxed) as f64)],
    );
    out
}

/// The reload counters and the last one's time, in the text format.
fn reload_metrics(live: &Live) -> String {
    let at = live
        .last_reload
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map_or(0.0, |r| r.at_unix_ms as f64 / 1e3);
    format!(
        "# HELP laminar_reloads_total Reloads asked for by SIGHUP, by outcome.\n# TYPE laminar_reloads_total counter\n\
         laminar_reloads_total{{outcome=\"accepted\"}} {}\nlaminar_reloads_total{{outcome=\"refused\"}} {}\n\
         # HELP laminar_reload_last_timestamp_seconds When the last reload was asked for (0: never).\n\
         # TYPE laminar_reload_last_timestamp_seconds gauge\nlaminar_reload_last_timestamp_seconds {at}\n",
        live.reloads_accepted.load(Relaxed),
        live.reloads_refused.load(Relaxed),
    )
}

fn status(plan: &PhysicalPlan, addresses: &Addresses, p: Option<&Control>, started: Instant, live: &Live) -> String {
    use serde_json::json;
    let state = match p {
        None => "starting",
        Some(p) if p.stop.shutdown.load(Relaxed) => "stopping",
        Some(p) if p.metrics.ready.load(Relaxed) => "running",
        Some(_) => "recovering",
    };
    let m = p.map(|p| &p.metrics);
    let sources: Vec<_> = plan
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let c = m.map(|m| &m.sources[i]);
            let w = c.map_or(i64::MIN, |c| c.watermark.load(Relaxed));
            json!({
                "name": s.name,
                "connector": match &s.connector {
                    laminar_exec::plan::SourceConnector::Tcp { port, .. } => match addresses.sources.get(i) {
                        Some(Some(a)) => format!("tcp {a}"),
                        _ => format!("tcp port {port}"),
                    },
                    laminar_exec::plan::SourceConnector::File { path, follow: None, .. } => {
                        format!("file {}", path.display())
                    }
                    laminar_exec::plan::SourceConnector::File {
                        path, follow: Some(_), ..
                    } => format!("file {} (followed)", path.display()),
                    laminar_exec::plan::SourceConnector::Nexmark { .. } => "nexmark".to_string(),
                },
                "rows": c.map_or(0, |c| c.rows.load(Relaxed)),
                "malformed": c.map_or(0, |c| c.malformed.load(Relaxed)),
                "connections": c.map_or(0, |c| c.connections.load(Relaxed)),
                "watermark_ms": (w > i64::MIN).then_some(w),
                "watermark_lag_ms": (w > i64::MIN && s.watermark.is_some()).then(|| now_ms().saturating_sub(w)),
            })
        })
        .collect();
    let streams: Vec<_> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let c = m.map(|m| &m.nodes[i]);
            let inputs: Vec<String> = n
                .inputs
                .iter()
                .map(|input| match *input {
                    laminar_exec::plan::Input::Source(s) => format!("source:{}", plan.sources[s].name),
                    laminar_exec::plan::Input::Node(m) => format!("node:{m}"),
                })
                .collect();
            json!({
                "stream": n.name,
                "node": i,
                "inputs": inputs,
                "rows_in": c.map_or(0, |c| sum(&c.rows_in)),
                "rows_out": c.map_or(0, |c| sum(&c.rows_out)),
                "late_dropped": c.map_or(0, |c| sum(&c.late_dropped)),
            })
        })
        .collect();
    let sinks: Vec<_> = plan
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let c = m.map(|m| &m.sinks[i]);
            json!({
                "name": s.name,
                "input": match s.input {
                    laminar_exec::plan::Input::Source(k) => format!("source:{}", plan.sources[k].name),
                    laminar_exec::plan::Input::Node(m) => format!("node:{m}"),
                },
                "connector": match (&s.connector, addresses.sinks.get(i)) {
                    (laminar_exec::plan::SinkConnector::Tcp { .. }, Some(Some(a))) => format!("tcp {a}"),
                    (laminar_exec::plan::SinkConnector::File { path, .. }, _) => format!("file {}", path.display()),
                    (other, _) => format!("{other:?}").to_lowercase(),
                },
                "rows": c.map_or(0, |c| c.rows.load(Relaxed)),
                "subscribers": c.map_or(0, |c| c.subscribers.load(Relaxed)),
            })
        })
        .collect();
    let doc = json!({
        "state": state,
        "uptime_seconds": started.elapsed().as_secs_f64(),
        "sources": sources,
        "streams": streams,
        "sinks": sinks,
        "shards": m.map(|m| {
            let uptime = started.elapsed().as_secs_f64().max(1e-9);
            m.shards.iter().enumerate().map(|(i, s)| json!({
                "shard": i,
                "busy_share": s.busy_ns.load(Relaxed) as f64 / 1e9 / uptime,
                "queue_depth": s.queue_depth.load(Relaxed),
            })).collect::<Vec<_>>()
        }),
        "checkpoints": m.map(|m| json!({
            "completed": m.checkpoints_completed.load(Relaxed),
            "last_duration_seconds": m.checkpoint_last_ns.load(Relaxed) as f64 / 1e9,
            "last_state_bytes": m.checkpoint_last_state_bytes.load(Relaxed),
        })),
        "last_reload": live.last_reload.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref().map(|r| json!({
            "outcome": if r.accepted { "accepted" } else { "refused" },
            "at_unix_ms": r.at_unix_ms,
            "lines": r.lines,
        })),
    });
    let mut text = doc.to_string();
    text.push('\n');
    text
}

/// The wall clock in epoch milliseconds, for watermark lags.
fn now_ms() -> i64 {
    laminar_exec::time::Clock::now_ms(&laminar_reactor::clock::SystemClock::default())
}
