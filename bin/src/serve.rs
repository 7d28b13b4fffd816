//! `laminar serve --config laminar.toml`: the appliance.
//!
//! The process: read and validate the config, plan the SQL (tcp
//! connectors allowed), bind every listener (an address in use is an
//! error naming the source or sink before anything runs), then run the
//! pipeline with durable state until SIGTERM or SIGINT. Around the run:
//! - an admin HTTP thread (`/health`, `/ready`, `/metrics`, `/status`);
//! - a monitor thread that turns signals into the run's stop request and
//!   talks to systemd (`READY=1` once every shard has restored its state,
//!   `WATCHDOG=1` while the shards' heartbeats move, `STOPPING=1`).
//!
//! The addresses bound are printed on stderr, one line each, starting
//! `listening:` (port 0 in the SQL or config picks a free port).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use laminar_exec::plan::{PhysicalPlan, SinkConnector, SourceConnector};
use laminar_reactor::runner::{Control, LiveOptions};
use laminar_sql::PlanOptions;

use crate::config::Config;

/// Plans the config's SQL; an error names the file (or `pipeline.sql`)
/// and the line in it.
pub fn plan(config: &Config) -> Result<PhysicalPlan> {
    let parts = config.sql()?;
    // Several files are one script, in order; an error's line is mapped
    // back to its file.
    let mut text = String::new();
    let mut starts = Vec::new();
    for (name, part) in &parts {
        starts.push((text.matches('\n').count(), name.as_str()));
        text.push_str(part);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    let options = PlanOptions {
        serve: true,
        state_entries_max: config.limits.state_entries_max,
        ..PlanOptions::default()
    };
    laminar_sql::plan_script(&text, options).map_err(|e| {
        let line0 = (e.line as usize).saturating_sub(1);
        let (start, name) = starts
            .iter()
            .rev()
            .find(|(start, _)| *start <= line0)
            .copied()
            .unwrap_or((0, "pipeline"));
        anyhow::anyhow!(
            "{name}:{}:{}: in {}: {}",
            line0 - start + 1,
            e.column,
            e.statement,
            e.message
        )
    })
}

/// How long a port still held by a previous instance is waited for.
const ADDRESS_IN_USE_WAIT: Duration = Duration::from_secs(5);

/// Binds `addr`; an address in use is tried again for a few seconds. A
/// process that was just killed holds its sockets until the kernel has
/// torn down its io_uring rings, which happens after it exits: a restart
/// right after a crash would otherwise fail.
fn bind_retrying(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let until = Instant::now() + ADDRESS_IN_USE_WAIT;
    loop {
        match TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Listeners by source and by sink index (tcp ones only).
type Listeners = (Vec<Option<TcpListener>>, Vec<Option<TcpListener>>);

/// Binds the listeners of tcp sources and sinks on `host`.
fn bind(plan: &PhysicalPlan, host: IpAddr) -> Result<Listeners> {
    let listen = |what: String, port: u16| -> Result<TcpListener> {
        let addr = SocketAddr::new(host, port);
        let l = bind_retrying(addr).with_context(|| format!("{what}: listening on {addr}"))?;
        let bound = l.local_addr().with_context(|| format!("{what}: listening on {addr}"))?;
        eprintln!("listening: {what} tcp {bound}");
        Ok(l)
    };
    let sources = plan
        .sources
        .iter()
        .map(|s| match &s.connector {
            SourceConnector::Tcp { port, .. } => listen(format!("source {}", s.name), *port).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    let sinks = plan
        .sinks
        .iter()
        .map(|s| match &s.connector {
            SinkConnector::Tcp { port } => listen(format!("sink {}", s.name), *port).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    Ok((sources, sinks))
}

/// The live-source limits a config sets.
fn live_limits(config: &Config) -> laminar_reactor::LiveLimits {
    laminar_reactor::LiveLimits {
        connections_max: config.limits.connections_per_source,
        line_bytes_max: config.limits.line_bytes_max,
        inbox_bytes_max: config.limits.inbox_bytes_max,
        idle_timeout_ms: config.watermark.idle_timeout_ms as i64,
        skew_ms: config.watermark.skew_ms as i64,
    }
}

/// Shards and cores given on the command line (they win over the config).
pub struct Placement {
    pub shards: Option<usize>,
    pub cpus: Option<Vec<usize>>,
}

pub fn serve(config_path: &Path, check: bool, placement: Placement) -> Result<()> {
    let config = Config::load(config_path)?;
    let live_limits = live_limits(&config);
    let plan = plan(&config)?;
    if check {
        return crate::write_stdout(&format!(
            "{}: ok ({} sources, {} operators, {} sinks)\n",
            config_path.display(),
            plan.sources.len(),
            plan.nodes.len(),
            plan.sinks.len()
        ));
    }
    let cpus = match (placement.cpus, &config.shards.cpus) {
        (Some(c), _) => c,
        (None, Some(c)) => crate::config::parse_cpu_list(c).map_err(anyhow::Error::msg)?.0,
        (None, None) => laminar_reactor::runner::usable_cpus(),
    };
    let shards = placement
        .shards
        .or(config.shards.count)
        .unwrap_or_else(|| cpus.len().clamp(1, crate::SHARDS_MAX));
    let host: IpAddr = config.listen.host.parse().context("listen.host")?;
    let (source_listeners, sink_listeners) = bind(&plan, host)?;
    let admin_addr: SocketAddr = config.listen.admin.parse().context("listen.admin")?;
    let admin = bind_retrying(admin_addr)
        .and_then(|l| tiny_http::Server::from_listener(l, None).map_err(std::io::Error::other))
        .map_err(|e| anyhow::anyhow!("listen.admin: listening on {admin_addr}: {e}"))?;
    let admin_bound = admin
        .server_addr()
        .to_ip()
        .map_or_else(|| admin_addr.to_string(), |a| a.to_string());
    eprintln!("listening: admin http {admin_bound}");

    let stop_signal = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop_signal)).context("installing signal handlers")?;
    }
    let progress_cell: Arc<OnceLock<Arc<Control>>> = Arc::new(OnceLock::new());
    let started = Instant::now();
    let plan_shared = Arc::new(plan.clone());
    let address = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let addresses = crate::admin::Addresses {
        sources: source_listeners.iter().map(address).collect(),
        sinks: sink_listeners.iter().map(address).collect(),
    };
    {
        let cell = Arc::clone(&progress_cell);
        let plan = Arc::clone(&plan_shared);
        std::thread::Builder::new()
            .name("laminar-admin".into())
            .spawn(move || crate::admin::serve(admin, plan, addresses, cell, started))
            .context("starting the admin thread")?;
    }
    {
        let cell = Arc::clone(&progress_cell);
        let stop_signal = Arc::clone(&stop_signal);
        std::thread::Builder::new()
            .name("laminar-monitor".into())
            .spawn(move || monitor(cell, stop_signal, shards))
            .context("starting the monitor thread")?;
    }
    let on_started = {
        let cell = Arc::clone(&progress_cell);
        Box::new(move |p: Arc<Control>| {
            let _ = cell.set(p);
        })
    };
    let mut on_malformed = |m: laminar_reactor::Malformed<'_>| {
        tracing::warn!(
            source = m.source,
            location = m.location,
            line = m.line,
            "malformed record skipped: {}",
            m.reason
        );
    };
    let mut on_progress = |_: &laminar_reactor::Progress| {};
    let summary = laminar_reactor::run(
        &plan,
        laminar_reactor::RunOptions {
            batch_rows: 4096,
            shards,
            cpus: Some(cpus),
            spin_before_park: None,
            clock: None,
            pacing: None,
            split_bytes_min: None,
            split_chunk_bytes: None,
            split_generator_chunk_events: None,
            durability: Some(laminar_reactor::checkpoint::Durability {
                state_dir: config.state.dir.clone(),
                interval: Duration::from_millis(config.state.checkpoint_interval_ms),
                every_rows: None,
                fork_bytes_min: config
                    .state
                    .fork_snapshots
                    .then_some((config.state.fork_snapshot_mb as usize) << 20),
                faults: laminar_persistence::Faults::none(),
            }),
            live: Some(LiveOptions {
                source_listeners,
                sink_listeners,
                limits: live_limits,
                subscriber_buffer_bytes: config.limits.subscriber_buffer_bytes,
                on_started,
                stop_timeout: Duration::from_millis(config.shutdown.timeout_ms),
                stall_report_after: Duration::from_millis(config.limits.stall_report_ms),
                mesh_bytes_max: config.limits.mesh_bytes_max,
                held_bytes_max: config.limits.held_bytes_max,
            }),
            on_malformed: &mut on_malformed,
            on_progress: &mut on_progress,
        },
    )
    .map_err(anyhow::Error::new)
    .with_context(|| format!("pipeline of {}", config_path.display()))?;
    eprintln!(
        "stopped after {:.1} s: {} rows in, {} malformed, {} rows out; state in {} (checkpoint {})",
        summary.elapsed.as_secs_f64(),
        summary.rows_in(),
        summary.malformed(),
        summary.sinks.iter().map(|s| s.rows).sum::<u64>(),
        config.state.dir.display(),
        summary.checkpoints.as_ref().map_or(0, |c| c.last_epoch),
    );
    Ok(())
}

/// Signals to the run's stop flag, and systemd's notifications.
fn monitor(cell: Arc<OnceLock<Arc<Control>>>, stop_signal: Arc<AtomicBool>, shards: usize) {
    let watchdog = sd_notify::watchdog_enabled();
    let mut ready_sent = false;
    let mut stopping_sent = false;
    let mut last_beats = vec![0u64; shards];
    let mut beats_moved_at = Instant::now();
    let mut last_ping = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let Some(progress) = cell.get() else {
            continue;
        };
        if stop_signal.load(Ordering::Relaxed) && !stopping_sent {
            stopping_sent = true;
            eprintln!("stopping: closing intake, draining, taking a final checkpoint");
            progress.stop.shutdown.store(true, Ordering::Release);
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        }
        if !ready_sent && progress.metrics.ready.load(Ordering::Relaxed) {
            ready_sent = true;
            eprintln!("ready");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("running")]);
        }
        // The systemd watchdog is fed only while every shard's heartbeat
        // moves: a hung executor gets the service restarted.
        let beats: Vec<u64> = progress
            .liveness
            .heartbeats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        if beats.iter().zip(&last_beats).all(|(now, before)| now != before) {
            beats_moved_at = Instant::now();
            last_beats = beats;
        }
        if let Some(period) = watchdog {
            if last_ping.elapsed() >= period / 2 && beats_moved_at.elapsed() < period / 2 {
                last_ping = Instant::now();
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_defaults_are_the_engine_defaults() {
        let config = Config::parse("[pipeline]\nsql = 'x'\n", Path::new(".")).unwrap();
        assert_eq!(live_limits(&config), laminar_reactor::LiveLimits::default());
        assert_eq!(
            config.limits.state_entries_max,
            laminar_exec::state::STATE_ENTRIES_MAX_DEFAULT
        );
        assert_eq!(
            laminar_config::FORK_SNAPSHOT_MB_DEFAULT << 20,
            laminar_reactor::checkpoint::FORK_BYTES_MIN_DEFAULT as u64
        );
    }
}
