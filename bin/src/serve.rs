//! `laminar serve --config laminar.toml`: the appliance.
//!
//! The process: read and validate the config, plan the SQL (tcp
//! connectors allowed), bind every listener (an address in use is an
//! error naming the source or sink before anything runs), then run the
//! pipeline with durable state until SIGTERM or SIGINT. Around the run:
//! - an admin HTTP thread (`/health`, `/ready`, `/metrics`, `/status`);
//! - a monitor thread that turns signals into the run's stop request and
//!   talks to systemd (`READY=1` once every shard has restored its state,
//!   `WATCHDOG=1` while the shards' heartbeats move, `STOPPING=1`);
//! - reloads: SIGHUP re-reads the config and the SQL; a change a restart
//!   would allow (`laminar_reactor::evolve`) stops the running pipeline
//!   with a final checkpoint and starts the new one restored from it, in
//!   the same process, keeping the listeners of sources and sinks whose
//!   name and port did not change; a refused one changes nothing and is
//!   logged. `/status` and `/metrics` show the last one.
//!
//! The addresses bound are printed on stderr, one line each, starting
//! `listening:` (port 0 in the SQL or config picks a free port).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use laminar_exec::plan::{PhysicalPlan, SinkConnector, SourceConnector};
use laminar_reactor::runner::{Control, LiveOptions};
use laminar_sql::PlanOptions;

use crate::admin::{Addresses, Generation, Live, Reload};
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

/// Binds the listeners of tcp sources and sinks on `host`; on a reload,
/// takes over the previous plan's listener of a source or sink with the
/// same name and port instead.
fn bind(plan: &PhysicalPlan, host: IpAddr, previous: Option<(&PhysicalPlan, Listeners)>) -> Result<Listeners> {
    let (old_plan, (mut old_sources, mut old_sinks)) = match previous {
        Some((p, l)) => (Some(p), l),
        None => (None, (Vec::new(), Vec::new())),
    };
    let listen = |what: String, port: u16, kept: Option<TcpListener>| -> Result<TcpListener> {
        let l = match kept {
            Some(l) => l,
            None => {
                let addr = SocketAddr::new(host, port);
                bind_retrying(addr).with_context(|| format!("{what}: listening on {addr}"))?
            }
        };
        let bound = l.local_addr().with_context(|| format!("{what}: listening"))?;
        eprintln!("listening: {what} tcp {bound}");
        Ok(l)
    };
    let sources = plan
        .sources
        .iter()
        .map(|s| match &s.connector {
            SourceConnector::Tcp { port, .. } => {
                let kept = old_plan.and_then(|old| {
                    let i = old.sources.iter().position(|o| {
                        o.name == s.name && matches!(&o.connector, SourceConnector::Tcp { port: p, .. } if p == port)
                    })?;
                    old_sources.get_mut(i)?.take()
                });
                listen(format!("source {}", s.name), *port, kept).map(Some)
            }
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    let sinks = plan
        .sinks
        .iter()
        .map(|s| match &s.connector {
            SinkConnector::Tcp { port } => {
                let kept = old_plan.and_then(|old| {
                    let i = old.sinks.iter().position(|o| {
                        o.name == s.name && matches!(&o.connector, SinkConnector::Tcp { port: p } if p == port)
                    })?;
                    old_sinks.get_mut(i)?.take()
                });
                listen(format!("sink {}", s.name), *port, kept).map(Some)
            }
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

pub fn serve(config_path: &Path, check: bool, placement: Placement, resets: Vec<String>) -> Result<()> {
    let config = Config::load(config_path)?;
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
    let mut listeners = bind(&plan, host, None)?;
    let admin_addr: SocketAddr = config.listen.admin.parse().context("listen.admin")?;
    let admin = bind_retrying(admin_addr)
        .and_then(|l| tiny_http::Server::from_listener(l, None).map_err(std::io::Error::other))
        .map_err(|e| anyhow::anyhow!("listen.admin: listening on {admin_addr}: {e}"))?;
    let admin_bound = admin
        .server_addr()
        .to_ip()
        .map_or_else(|| admin_addr.to_string(), |a| a.to_string());
    eprintln!("listening: admin http {admin_bound}");
    let sql_listener = match config.listen.sql.as_str() {
        "" => None,
        addr => {
            let addr: SocketAddr = addr.parse().context("listen.sql")?;
            let l = bind_retrying(addr).map_err(|e| anyhow::anyhow!("listen.sql: listening on {addr}: {e}"))?;
            Some(l)
        }
    };

    let signals = Signals {
        stop: Arc::new(AtomicBool::new(false)),
        reload: Arc::new(AtomicBool::new(false)),
    };
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&signals.stop)).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&signals.reload))
        .context("installing signal handlers")?;
    let started = Instant::now();
    let live = Arc::new(Live {
        generation: RwLock::new(Generation {
            plan: Arc::new(plan.clone()),
            addresses: Arc::new(addresses(&listeners)),
            control: None,
        }),
        last_reload: Mutex::new(None),
        reloads_accepted: AtomicU64::new(0),
        reloads_refused: AtomicU64::new(0),
    });
    {
        let live = Arc::clone(&live);
        std::thread::Builder::new()
            .name("laminar-admin".into())
            .spawn(move || crate::admin::serve(admin, live, started))
            .context("starting the admin thread")?;
    }
    if let Some(l) = sql_listener {
        let options = laminar_pg::Options {
            state_dir: config.state.dir.clone(),
            user: config.sql.user.clone(),
            password: config.sql.password.clone(),
            connections_max: config.sql.connections_max,
            result_rows_max: config.sql.result_rows_max,
            subscribe_buffer_bytes: config.sql.subscribe_buffer_bytes,
        };
        let address = laminar_pg::start(l, options, Arc::new(SqlPipeline(Arc::clone(&live))))
            .context("starting the sql (postgres) server")?;
        eprintln!("listening: sql (postgres) {address}");
    }
    let reloads = Arc::new(Reloads {
        path: config_path.to_path_buf(),
        running: Mutex::new(config.clone()),
        shards,
        accepted: Mutex::new(None),
    });
    {
        let live = Arc::clone(&live);
        let signals = signals.clone();
        let reloads = Arc::clone(&reloads);
        std::thread::Builder::new()
            .name("laminar-monitor".into())
            .spawn(move || monitor(live, signals, reloads, shards))
            .context("starting the monitor thread")?;
    }
    let (mut config, mut plan, mut resets) = (config, plan, resets);
    loop {
        let summary = run_once(&config, &plan, shards, &cpus, &listeners, resets, &live)
            .with_context(|| format!("pipeline of {}", config_path.display()))?;
        resets = Vec::new();
        let next = reloads
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let reloading = next.is_some() && !signals.stop.load(Ordering::Relaxed);
        eprintln!(
            "{} after {:.1} s: {} rows in, {} malformed, {} rows out; state in {} (checkpoint {})",
            if reloading {
                "reloading: the old pipeline stopped"
            } else {
                "stopped"
            },
            summary.elapsed.as_secs_f64(),
            summary.rows_in(),
            summary.malformed(),
            summary.sinks.iter().map(|s| s.rows).sum::<u64>(),
            config.state.dir.display(),
            summary.checkpoints.as_ref().map_or(0, |c| c.last_epoch),
        );
        let Some((new_config, new_plan)) = next.filter(|_| reloading) else {
            return Ok(());
        };
        // Listeners of sources and sinks that keep their name and port
        // stay open (clients queue in their backlog while the pipeline
        // changes); the rest close, new ones open.
        listeners = bind(&new_plan, host, Some((&plan, listeners)))?;
        *live
            .generation
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Generation {
            plan: Arc::new(new_plan.clone()),
            addresses: Arc::new(addresses(&listeners)),
            control: None,
        };
        *reloads
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = new_config.clone();
        (config, plan) = (new_config, new_plan);
    }
}

/// The pipeline the sql server reads: the current generation's.
struct SqlPipeline(Arc<Live>);

impl laminar_pg::Pipeline for SqlPipeline {
    fn current(&self) -> laminar_pg::Current {
        let g = self.0.current();
        laminar_pg::Current {
            plan: g.plan,
            control: g.control,
        }
    }
}

/// The addresses the admin endpoint shows, by source and sink index.
fn addresses(listeners: &Listeners) -> Addresses {
    let address = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    Addresses {
        sources: listeners.0.iter().map(address).collect(),
        sinks: listeners.1.iter().map(address).collect(),
    }
}

/// The signals `serve` acts on.
#[derive(Clone)]
struct Signals {
    /// SIGTERM, SIGINT: drain, final checkpoint, exit.
    stop: Arc<AtomicBool>,
    /// SIGHUP: re-read the config and SQL, and change the pipeline if
    /// the change is allowed.
    reload: Arc<AtomicBool>,
}

/// What a reload needs: where the config is, the one running, and the
/// accepted reload's config and plan, for `serve`'s loop to start.
struct Reloads {
    path: std::path::PathBuf,
    running: Mutex<Config>,
    shards: usize,
    accepted: Mutex<Option<(Config, PhysicalPlan)>>,
}

/// Reads the config and SQL again and decides whether the running
/// pipeline may become theirs: the same listen address, admin address,
/// state directory and shard placement (those need a restart), and a
/// plan whose every change a restart would allow
/// (`laminar_reactor::evolve`). `Err`: the reasons it may not.
fn check_reload(
    r: &Reloads,
    running_plan: &PhysicalPlan,
) -> std::result::Result<(Config, PhysicalPlan, Vec<String>), Vec<String>> {
    let config = Config::load(&r.path).map_err(|e| vec![format!("{e:#}")])?;
    let running = r
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut refusals = Vec::new();
    let fixed = [
        ("listen.host", running.listen.host.clone(), config.listen.host.clone()),
        (
            "listen.admin",
            running.listen.admin.clone(),
            config.listen.admin.clone(),
        ),
        ("listen.sql", running.listen.sql.clone(), config.listen.sql.clone()),
        (
            "state.dir",
            running.state.dir.display().to_string(),
            config.state.dir.display().to_string(),
        ),
        (
            "[shards]",
            format!("{:?}", running.shards),
            format!("{:?}", config.shards),
        ),
    ];
    for (what, was, now) in fixed {
        if was != now {
            refusals.push(format!("{what} changed ({was} -> {now}): that needs a restart"));
        }
    }
    // Not printed: it holds the password.
    if format!("{:?}", running.sql) != format!("{:?}", config.sql) {
        refusals.push("[sql] changed: that needs a restart".to_string());
    }
    let plan = plan(&config).map_err(|e| vec![format!("{e:#}")])?;
    let ev = laminar_reactor::evolve::plan_change(running_plan, r.shards, &plan, r.shards).map_err(|e| vec![e])?;
    refusals.extend(ev.refusals());
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let changes = ev
        .changes
        .iter()
        .filter(|c| c.outcome != laminar_reactor::evolve::Outcome::Keep)
        .map(laminar_reactor::evolve::Change::describe)
        .collect();
    Ok((config, plan, changes))
}

/// One run of the pipeline, until a stop or an accepted reload.
fn run_once(
    config: &Config,
    plan: &PhysicalPlan,
    shards: usize,
    cpus: &[usize],
    listeners: &Listeners,
    resets: Vec<String>,
    live: &Arc<Live>,
) -> Result<laminar_reactor::RunSummary> {
    // The run takes copies of the listeners: the originals stay open
    // across a reload.
    let copy = |ls: &[Option<TcpListener>]| -> Result<Vec<Option<TcpListener>>> {
        ls.iter()
            .map(|l| l.as_ref().map(TcpListener::try_clone).transpose())
            .collect::<std::io::Result<_>>()
            .context("duplicating a listener")
    };
    let (source_listeners, sink_listeners) = (copy(&listeners.0)?, copy(&listeners.1)?);
    let on_started = {
        let live = Arc::clone(live);
        Box::new(move |p: Arc<Control>| {
            live.generation
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .control = Some(p);
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
    let result = laminar_reactor::run(
        plan,
        laminar_reactor::RunOptions {
            batch_rows: 4096,
            shards,
            cpus: Some(cpus.to_vec()),
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
                resets,
            }),
            live: Some(LiveOptions {
                source_listeners,
                sink_listeners,
                limits: live_limits(config),
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
    );
    // SUBSCRIBE's taps end with the run (a reload's clients subscribe
    // again to the new one).
    if let Some(control) = live.current().control {
        control.taps.close();
    }
    result.map_err(anyhow::Error::new)
}

/// Signals to the run's stop flag, reloads, and systemd's notifications.
fn monitor(live: Arc<Live>, signals: Signals, reloads: Arc<Reloads>, shards: usize) {
    let watchdog = sd_notify::watchdog_enabled();
    let mut ready_sent = false;
    let mut stopping_sent = false;
    let mut generation: Option<Arc<Control>> = None;
    let mut reloaded = false;
    let mut last_beats = vec![0u64; shards];
    let mut beats_moved_at = Instant::now();
    let mut last_ping = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let current = live.current();
        let Some(progress) = current.control else {
            continue;
        };
        if !generation.as_ref().is_some_and(|g| Arc::ptr_eq(g, &progress)) {
            // A new run (after a reload): its own readiness and stop.
            generation = Some(Arc::clone(&progress));
            ready_sent = false;
            stopping_sent = false;
        }
        if signals.stop.load(Ordering::Relaxed) && !stopping_sent {
            stopping_sent = true;
            eprintln!("stopping: closing intake, draining, taking a final checkpoint");
            progress.stop.shutdown.store(true, Ordering::Release);
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        }
        // A reload is looked at once the running pipeline is ready (one
        // asked for earlier waits), and never while stopping.
        if ready_sent && !stopping_sent && signals.reload.swap(false, Ordering::AcqRel) {
            if let Some(accepted) = reload(&live, &reloads, &current.plan) {
                stopping_sent = true;
                reloaded = true;
                *reloads
                    .accepted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(accepted);
                let _ = sd_notify::notify(&[
                    sd_notify::NotifyState::Reloading,
                    sd_notify::NotifyState::MonotonicUsec(monotonic_usec()),
                ]);
                progress.stop.shutdown.store(true, Ordering::Release);
            }
        }
        if !ready_sent && progress.metrics.ready.load(Ordering::Relaxed) {
            ready_sent = true;
            eprintln!("{}", if reloaded { "ready (reloaded)" } else { "ready" });
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
            // A reload's stop and restore count as moving.
            let changing = stopping_sent && !signals.stop.load(Ordering::Relaxed);
            if last_ping.elapsed() >= period / 2 && (changing || beats_moved_at.elapsed() < period / 2) {
                last_ping = Instant::now();
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
}

/// Decides a SIGHUP: the new config and plan when the change is allowed
/// (logged, and kept as the last reload), None when it is refused (the
/// running pipeline is left as it is; the reasons are logged).
fn reload(live: &Live, reloads: &Reloads, running_plan: &PhysicalPlan) -> Option<(Config, PhysicalPlan)> {
    let at_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (outcome, accepted) = match check_reload(reloads, running_plan) {
        Ok((config, plan, changes)) => (
            Reload {
                accepted: true,
                at_unix_ms,
                lines: changes,
            },
            Some((config, plan)),
        ),
        Err(why) => (
            Reload {
                accepted: false,
                at_unix_ms,
                lines: why,
            },
            None,
        ),
    };
    // Counted before it is logged: whoever reads the log, then
    // `/metrics`, sees it.
    let counter = if outcome.accepted {
        &live.reloads_accepted
    } else {
        &live.reloads_refused
    };
    counter.fetch_add(1, Ordering::Relaxed);
    *live
        .last_reload
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(outcome.clone());
    if outcome.accepted {
        eprintln!(
            "reloading: {}; taking a final checkpoint of the old pipeline",
            reloads.path.display()
        );
    } else {
        eprintln!("reload refused; the running pipeline goes on unchanged:");
    }
    for line in &outcome.lines {
        eprintln!("  {line}");
    }
    accepted
}

/// CLOCK_MONOTONIC in microseconds, as systemd's `MONOTONIC_USEC` wants.
fn monotonic_usec() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    i128::from(ts.tv_sec) * 1_000_000 + i128::from(ts.tv_nsec) / 1_000
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
