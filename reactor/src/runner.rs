//! Starting a run: one pinned glommio executor per shard, a channel mesh
//! between them, progress and malformed-record reports relayed to the
//! caller's thread, and the shards' reports merged into one summary.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use laminar_exec::operator::OperatorMetrics;
use laminar_exec::plan::{PhysicalPlan, SinkConnector};

pub use crate::control::{Control, Phase};
use crate::error::RunError;
use crate::shard::{shard_main, ShardConfig, ShardContext, ShardEvent, ShardLive, ShardReport};
use crate::source::split::SourceSplit;
use crate::source::MalformedRecord;
use crate::topology::Topology;

pub use crate::source::MalformedRecord as Malformed;

/// A shard whose watchdog has not ticked for this long (it ticks every
/// 5 ms) is asleep although its timer has expired: it gets kicked.
const KICK_AFTER: Duration = Duration::from_millis(50);

/// The no-op handler of `KICK_SIGNAL`: its only effect is that a blocking
/// system call of the signalled thread returns `EINTR`.
extern "C" fn on_kick(_signal: libc::c_int) {}

const KICK_SIGNAL: libc::c_int = libc::SIGUSR1;

/// Installs the kick handler once per process (without `SA_RESTART`, so
/// `io_uring_enter` returns instead of restarting).
fn install_kick_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler is an `extern "C"` function that does nothing
        // (async-signal-safe); sigemptyset and sigaction only read and
        // write the struct we own.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = 0;
            libc::sigemptyset(&mut action.sa_mask);
            let rc = libc::sigaction(KICK_SIGNAL, &action, std::ptr::null_mut());
            assert_eq!(rc, 0, "installing the shard kick handler");
        }
    });
}

/// Watches the shards' watchdog heartbeats and interrupts the sleep of an
/// executor whose heartbeat stopped. On this kernel a glommio executor was
/// seen to sleep in `io_uring_enter` through its own expired timers and
/// its peers' wakes (about one 4-shard run in 20 to 150 under load); a
/// signal makes the call return, and the executor's loop then processes
/// its timers and wakes as usual. A shard blocked in a slow write is
/// kicked too, harmlessly: the write is retried.
struct Kicker {
    last_beat: Vec<u64>,
    beat_seen_at: Vec<Instant>,
    kicks: u64,
}

impl Kicker {
    fn new(shards: usize) -> Kicker {
        Kicker {
            last_beat: vec![0; shards],
            beat_seen_at: vec![Instant::now(); shards],
            kicks: 0,
        }
    }

    fn kick_stalled(&mut self, progress: &Control) {
        for id in 0..self.last_beat.len() {
            let beat = progress.liveness.heartbeats[id].load(Relaxed);
            if beat != self.last_beat[id] {
                self.last_beat[id] = beat;
                self.beat_seen_at[id] = Instant::now();
                continue;
            }
            let tid = progress.liveness.thread_ids[id].load(Acquire);
            let running = Phase::from_u8(progress.liveness.phase[id].load(Relaxed)) != Phase::Finished;
            // A shard that never ticked is watched from the run's start: an
            // executor was seen to fall asleep before its first tick.
            if tid == 0 || !running || self.beat_seen_at[id].elapsed() < KICK_AFTER {
                continue;
            }
            // SAFETY: tgkill only sends a signal; the target is a thread of
            // this process (its id was published by the shard itself, and
            // the shard has not finished, so the thread still exists), and
            // the signal has a no-op handler installed.
            unsafe {
                libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, KICK_SIGNAL);
            }
            self.kicks += 1;
            self.beat_seen_at[id] = Instant::now();
            tracing::debug!(shard = id, "kicked a shard whose watchdog stopped ticking");
        }
    }
}

/// How long a run may read nothing before its shards' phases are logged.
const STALL_REPORT_AFTER: Duration = Duration::from_secs(10);

/// How long a shard may make no progress while messages wait for it
/// before it is reported, unless configured (`limits.stall_report_ms`).
pub const STALL_REPORT_AFTER_DEFAULT: Duration = Duration::from_secs(2);

/// Watches each shard's progress count (`Liveness::progress`): a shard
/// whose count has not moved for `after` while messages wait on its
/// inbound channels is stalled. The first such moment is logged (its
/// phase, how long since its watchdog ticked, the channels into it), the
/// time counted into `ShardCounters::stall_ns` until it moves again, and
/// its recovery logged too. A shard with nothing waiting is idle, not
/// stalled.
struct StallWatch {
    after: Duration,
    last: Vec<u64>,
    /// When each shard's count last moved, or it last had nothing waiting.
    moved_at: Vec<Instant>,
    /// Stalled shards: up to when their stall time is counted.
    counted_to: Vec<Option<Instant>>,
    last_beat: Vec<(u64, Instant)>,
}

impl StallWatch {
    fn new(shards: usize, after: Duration) -> StallWatch {
        let now = Instant::now();
        StallWatch {
            after,
            last: vec![0; shards],
            moved_at: vec![now; shards],
            counted_to: vec![None; shards],
            last_beat: vec![(0, now); shards],
        }
    }

    fn step(&mut self, control: &Control, probes: &[(usize, usize, Arc<dyn crate::mesh::ChannelProbe>)]) {
        let now = Instant::now();
        for s in 0..self.last.len() {
            let beat = control.liveness.heartbeats[s].load(Relaxed);
            if beat != self.last_beat[s].0 {
                self.last_beat[s] = (beat, now);
            }
            let progress = control.liveness.progress[s].load(Relaxed);
            let waiting: usize = probes
                .iter()
                .filter(|(_, to, _)| *to == s)
                .map(|(_, _, p)| p.queued())
                .sum();
            if progress != self.last[s] || waiting == 0 || control.liveness.phase(s) == Phase::Finished {
                if self.counted_to[s].take().is_some() {
                    let stalled = now.saturating_duration_since(self.moved_at[s]);
                    tracing::info!(
                        shard = s,
                        "shard {s} makes progress again after {} ms",
                        stalled.as_millis()
                    );
                }
                self.last[s] = progress;
                self.moved_at[s] = now;
                continue;
            }
            let since = now.saturating_duration_since(self.moved_at[s]);
            if since < self.after {
                continue;
            }
            let counted = match self.counted_to[s] {
                None => {
                    let channels: Vec<String> = probes
                        .iter()
                        .filter(|(_, to, _)| *to == s)
                        .map(|(from, _, p)| format!("from shard {from}: {}", p.describe()))
                        .collect();
                    tracing::warn!(
                        shard = s,
                        "shard {s} has made no progress for {} ms with {waiting} messages waiting for it: \
                         phase {:?}, watchdog last ticked {} ms ago; channels {}",
                        since.as_millis(),
                        control.liveness.phase(s),
                        now.saturating_duration_since(self.last_beat[s].1).as_millis(),
                        channels.join("; ")
                    );
                    since
                }
                Some(to) => now.saturating_duration_since(to),
            };
            self.counted_to[s] = Some(now);
            control.metrics.shards[s]
                .stall_ns
                .fetch_add(u64::try_from(counted.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        }
    }
}

/// How to run.
pub struct RunOptions<'a> {
    /// Rows per batch read from a source.
    pub batch_rows: usize,
    /// Shards (executors); results do not depend on it.
    pub shards: usize,
    /// Cores for the shards (shard i on `cpus[i % len]`); None: every
    /// core this process may use.
    pub cpus: Option<Vec<usize>>,
    /// How long an idle shard polls before it parks; None: 200 µs when
    /// there are several shards (a parked shard costs its peers a slow
    /// wake), 0 on one. Spinning keeps a core busy: 0 suits a shared host.
    pub spin_before_park: Option<Duration>,
    /// Processing time for `EMIT EVERY`; None: the system clock.
    pub clock: Option<Arc<dyn laminar_exec::time::Clock>>,
    /// `laminar bench`: pace generator sources and record latency at the
    /// sinks; see `pace`.
    pub pacing: Option<Pacing>,
    /// Files at least this large are read by every shard at once (see
    /// `split`); None: `SPLIT_BYTES_MIN_DEFAULT`.
    pub split_bytes_min: Option<u64>,
    /// The chunk size of split files; None: `SPLIT_CHUNK_BYTES_DEFAULT`.
    pub split_chunk_bytes: Option<u64>,
    /// Events per chunk of a generator read by every shard; None:
    /// `GENERATOR_CHUNK_EVENTS`.
    pub split_generator_chunk_events: Option<u64>,
    /// Durable state (`--state-dir`): checkpoints, and resuming from the
    /// last one. None: state stays in memory.
    pub durability: Option<crate::checkpoint::Durability>,
    /// `laminar serve`: listeners of tcp sources and sinks, and what to
    /// do once running. The run then lasts until `Control::shutdown`.
    pub live: Option<LiveOptions>,
    /// Called for each reported malformed record.
    pub on_malformed: &'a mut dyn FnMut(MalformedRecord<'_>),
    /// Called now and then with progress.
    pub on_progress: &'a mut dyn FnMut(&Progress),
}

/// What `laminar serve` adds to a run.
pub struct LiveOptions {
    /// By source index: a bound listener for each tcp source.
    pub source_listeners: Vec<Option<std::net::TcpListener>>,
    /// By sink index: a bound listener for each tcp sink.
    pub sink_listeners: Vec<Option<std::net::TcpListener>>,
    pub limits: crate::net::ingest::LiveLimits,
    /// What a subscriber may fall behind before it is dropped.
    pub subscriber_buffer_bytes: usize,
    /// Called once the shards are started, with the counters and the
    /// `shutdown` flag.
    pub on_started: Box<dyn FnOnce(Arc<Control>) + Send>,
    /// How long a stop (SIGTERM) may take, from the request to the
    /// final checkpoint's answers; past it the run stops with an error.
    pub stop_timeout: Duration,
    /// A shard that makes no progress this long while messages wait for
    /// it is reported (see `StallWatch`).
    pub stall_report_after: Duration,
    /// See `ShardConfig::mesh_bytes_max` and `held_bytes_max`.
    pub mesh_bytes_max: usize,
    pub held_bytes_max: usize,
}

/// How a `laminar bench` run feeds its generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Open loop: this many events per second of the whole stream.
    Rate(u64),
    /// Closed loop: as fast as they go, for this long.
    Max(Duration),
}

/// Progress so far, for a progress bar.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub rows_in: u64,
    pub bytes_read: u64,
    /// Sum of the sizes of file inputs, when every input is a file.
    pub bytes_total: Option<u64>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct SourceSummary {
    pub name: String,
    pub rows: u64,
    pub malformed: u64,
    /// No `header` option, and the file's first line, which names the
    /// declared columns, was read as its header.
    pub header_detected: bool,
}

#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    pub name: String,
    pub metrics: OperatorMetrics,
}

#[derive(Debug, Clone, Default)]
pub struct SinkSummary {
    pub name: String,
    pub rows: u64,
    pub target: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub sources: Vec<SourceSummary>,
    pub streams: Vec<StreamSummary>,
    pub sinks: Vec<SinkSummary>,
    pub elapsed: Duration,
    /// Time each shard spent processing.
    pub shard_busy: Vec<Duration>,
    /// Paced runs: the latency (ns) of every row the sinks received.
    pub latency_ns: Option<hdrhistogram::Histogram<u64>>,
    /// Paced runs: events read over a millisecond after their intended
    /// send time.
    pub behind_schedule: u64,
    /// Open-loop runs: how long each event waited, after its intended
    /// send time, to be read (ns): what the event path costs an event
    /// whether or not it causes a result.
    pub read_delay_ns: Option<hdrhistogram::Histogram<u64>>,
    /// Generator runs: positions reached in the Nexmark stream (events of
    /// every kind), the furthest source's.
    pub events_generated: u64,
    /// Paced runs: how long the sources took to read everything (the
    /// rest of `elapsed` is the final flush and shutdown).
    pub read_elapsed: Duration,
    /// Durable runs: what the checkpoints did.
    pub checkpoints: Option<crate::checkpoint::CheckpointSummary>,
}

impl RunSummary {
    pub fn rows_in(&self) -> u64 {
        self.sources.iter().map(|s| s.rows).sum()
    }

    pub fn malformed(&self) -> u64 {
        self.sources.iter().map(|s| s.malformed).sum()
    }

    pub fn late_rows_dropped(&self) -> u64 {
        self.streams.iter().map(|s| s.metrics.late_rows_dropped).sum()
    }
}

/// The cores shards may use by default: every core this process may run on.
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask owned by this frame, and
    // sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size matches the buffer passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc == 0 {
        // SAFETY: CPU_ISSET reads the initialised bitmask within bounds.
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        if !cpus.is_empty() {
            return cpus;
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// One run at a time per process. glommio 0.9 executors that belong to
/// different runs and start and stop concurrently in one process lose
/// cross-executor wakeups (seen as a hang in roughly one of every 20 test
/// binaries that ran pipelines on parallel threads; none in 40 sequential
/// ones). The binary runs one pipeline per process; callers on other
/// threads (tests) queue here.
static RUN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a plan over bounded inputs to the end, on `options.shards` glommio
/// shards.
pub fn run(plan: &PhysicalPlan, mut options: RunOptions<'_>) -> Result<RunSummary, RunError> {
    // A panic in another run does not make this one unsafe: the lock
    // guards no data.
    let _one_run = RUN_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    plan.assert_valid();
    assert!(options.batch_rows > 0 && options.shards > 0);
    let started = Instant::now();
    let shards = options.shards;
    let cpus = options.cpus.clone().unwrap_or_else(usable_cpus);
    let mut config = shard_config(&options, cpus);
    let plan = Arc::new(plan.clone());
    // The state directory: resume from its checkpoint, if it has one.
    let (coordinator, mut restores) = match &options.durability {
        Some(d) => {
            config.checkpoints = true;
            config.checkpoint_every_rows = d.every_rows;
            config.snapshot_fork_bytes_min = d.fork_bytes_min;
            let (c, r) = crate::checkpoint::Coordinator::open(d, &plan, shards)?;
            (Some(c), r)
        }
        None => (None, None),
    };
    let checkpoints = coordinator.is_some();
    // A checkpoint commits a sink's byte position; a direct file has its
    // last block in memory until the end (see `direct`).
    config.direct_file_sinks = !checkpoints;
    let mut live = options.live.take();
    assert!(
        live.is_none() || checkpoints,
        "`laminar serve` keeps its state durable: a live run needs `durability`"
    );
    if let (Some(_), Some(d)) = (&live, &options.durability) {
        config.wal_dir = Some(d.state_dir.join(crate::checkpoint::WAL_DIR));
    }
    let spread_options = crate::source::SpreadOptions {
        checkpoints,
        file_bytes_min: options
            .split_bytes_min
            .unwrap_or(crate::source::split::SPLIT_BYTES_MIN_DEFAULT),
        file_chunk_bytes: options
            .split_chunk_bytes
            .unwrap_or(crate::source::split::SPLIT_CHUNK_BYTES_DEFAULT),
        generator_chunk_events: options
            .split_generator_chunk_events
            .unwrap_or(crate::source::split::GENERATOR_CHUNK_EVENTS),
    };
    let splits: Vec<Option<SourceSplit>> = (0..plan.sources.len())
        .map(|i| crate::source::spread(&plan, i, shards, &spread_options))
        .collect::<Result<_, _>>()?;
    let split_flags: Vec<bool> = splits.iter().map(Option::is_some).collect();
    let splits = Arc::new(splits);
    let topo = Arc::new(Topology::new(&plan, shards, &split_flags));
    let control = Arc::new(Control::with_metrics(
        shards,
        plan.sources.len(),
        plan.nodes.len(),
        plan.sinks.len(),
    ));
    if let Some(c) = &coordinator {
        control.epochs.requested.store(c.completed, Relaxed);
        control.epochs.completed.store(c.completed, Relaxed);
        control.metrics.checkpoints_completed.store(c.completed, Relaxed);
    }
    let (events_tx, events_rx) = mpsc::channel();
    let mesh_ends = crate::mesh::full(shards, config.channel_messages_max);
    let probes: Vec<(usize, usize, Arc<dyn crate::mesh::ChannelProbe>)> = mesh_ends
        .iter()
        .enumerate()
        .flat_map(|(to, ends)| ends.probes().into_iter().map(move |(from, p)| (from, to, p)))
        .collect();
    let bytes_total = plan
        .sources
        .iter()
        .map(|s| match &s.connector {
            laminar_exec::plan::SourceConnector::File { path, .. } => std::fs::metadata(path).ok().map(|m| m.len()),
            _ => None,
        })
        .sum::<Option<u64>>();
    let mut mesh_ends = mesh_ends.into_iter();
    let contexts = (0..shards)
        .map(|id| ShardContext {
            id,
            plan: Arc::clone(&plan),
            topo: Arc::clone(&topo),
            config: config.clone(),
            mesh: mesh_ends.next().filter(|_| shards > 1),
            progress: Arc::clone(&control),
            events: events_tx.clone(),
            splits: Arc::clone(&splits),
            restore: restores.as_mut().map(|r| std::mem::take(&mut r[id])),
            live: live.as_mut().map(|l| shard_live(l, &topo, id)),
        })
        .collect();
    let handles = spawn_shards(contexts, &config, &control)?;
    drop(events_tx);
    let stall = StallWatch::new(
        shards,
        live.as_ref()
            .map_or(STALL_REPORT_AFTER_DEFAULT, |l| l.stall_report_after),
    );
    let stop = live.map(|l| {
        (l.on_started)(Arc::clone(&control));
        StopSequence::new(l.stop_timeout)
    });
    let mut relay = Relay {
        control: &control,
        shards,
        coordinator,
        stop,
        probes,
        started,
        bytes_total,
        checkpoint_error: None,
        stall,
    };
    relay.run(&events_rx, &mut options);
    let Relay {
        coordinator,
        stop,
        checkpoint_error,
        ..
    } = relay;
    let (reports, first_error) = join_shards(handles, checkpoint_error);
    // A live run that stopped as asked: the shards were told to stop
    // (`Aborted`) after the final checkpoint, which holds everything.
    if matches!(first_error, Some(RunError::Aborted)) && stop.as_ref().is_some_and(StopSequence::stopped) {
        let mut summary = summarize(&plan, &[], started.elapsed());
        for (s, counters) in summary.sources.iter_mut().zip(&control.metrics.sources) {
            s.rows = counters.rows.load(Relaxed);
            s.malformed = counters.malformed.load(Relaxed);
        }
        for (s, counters) in summary.sinks.iter_mut().zip(&control.metrics.sinks) {
            s.rows = counters.rows.load(Relaxed);
        }
        summary.checkpoints = coordinator.map(|c| c.summary(Duration::ZERO));
        return Ok(summary);
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut summary = summarize(&plan, &reports, started.elapsed());
    summary.checkpoints = coordinator.map(|c| c.summary(reports.iter().map(|r| r.restore).max().unwrap_or_default()));
    Ok(summary)
}

/// The shard runtime's knobs for a run.
fn shard_config(options: &RunOptions<'_>, cpus: Vec<usize>) -> ShardConfig {
    let mut config = ShardConfig::new(options.shards, cpus, options.batch_rows);
    if let Some(spin) = options.spin_before_park {
        config.spin_before_park = spin;
    }
    if let Some(clock) = &options.clock {
        config.clock = Arc::clone(clock);
    }
    if let Some(live) = &options.live {
        config.mesh_bytes_max = live.mesh_bytes_max;
        config.held_bytes_max = live.held_bytes_max;
    }
    if let Some(pacing) = options.pacing {
        let (rate_per_sec, deadline_ns) = match pacing {
            Pacing::Rate(r) => {
                assert!(r > 0, "a paced run needs a positive rate");
                (Some(r), None)
            }
            Pacing::Max(d) => (None, Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))),
        };
        // Time zero: the shards start right after; their first events are
        // due at once, and start-up time counts against latency, as it
        // would for a real client.
        config.pace = Some(crate::pace::Pace {
            start: Instant::now(),
            rate_per_sec,
            deadline_ns,
        });
    }
    config
}

/// What shard `id` of `laminar serve` listens on: the listeners of the
/// tcp sources it owns, and on shard 0 those of the tcp sinks.
fn shard_live(l: &mut LiveOptions, topo: &Topology, id: usize) -> ShardLive {
    ShardLive {
        source_listeners: l
            .source_listeners
            .iter_mut()
            .enumerate()
            .map(|(i, slot)| if topo.source_owner[i] == id { slot.take() } else { None })
            .collect(),
        sink_listeners: if id == 0 {
            std::mem::take(&mut l.sink_listeners)
        } else {
            Vec::new()
        },
        limits: l.limits,
        subscriber_buffer_bytes: l.subscriber_buffer_bytes,
    }
}

type ShardHandle = glommio::ExecutorJoinHandle<Result<ShardReport, RunError>>;

/// Starts one pinned executor per shard; if one cannot start, stops those
/// that did.
fn spawn_shards(
    contexts: Vec<ShardContext>,
    config: &ShardConfig,
    control: &Control,
) -> Result<Vec<ShardHandle>, RunError> {
    let mut handles = Vec::new();
    for ctx in contexts {
        let id = ctx.id;
        let cpu = config.cpus[id % config.cpus.len()];
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("laminar-shard-{id}"))
            .io_memory(config.io_memory_bytes)
            .ring_depth(config.ring_depth)
            .spin_before_park(config.spin_before_park)
            .spawn(move || shard_main(ctx))
            .map_err(|e| RunError::Executor {
                shard: id,
                reason: e.to_string(),
            });
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                control.run.set_abort();
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    Ok(handles)
}

/// Waits for every shard; returns their reports and the error that
/// explains the run's failure, if it failed (the first real one, not the
/// others' `Aborted`).
fn join_shards(handles: Vec<ShardHandle>, first_error: Option<RunError>) -> (Vec<ShardReport>, Option<RunError>) {
    let mut reports = Vec::new();
    let mut first_error = first_error;
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(report)) => reports.push(report),
            Ok(Err(RunError::Aborted)) => {
                first_error.get_or_insert(RunError::Aborted);
            }
            Ok(Err(e)) => {
                if matches!(first_error, None | Some(RunError::Aborted)) {
                    first_error = Some(e);
                }
            }
            Err(e) => {
                first_error.get_or_insert(RunError::Executor {
                    shard: id,
                    reason: e.to_string(),
                });
            }
        }
    }
    (reports, first_error)
}

/// The calling thread while the shards run: it relays malformed-record
/// reports and progress, drives the checkpoint coordinator and the stop
/// of `laminar serve`, kicks shards that sleep through their timers, and
/// reports a run that reads nothing for a while.
struct Relay<'c> {
    control: &'c Control,
    shards: usize,
    coordinator: Option<crate::checkpoint::Coordinator>,
    stop: Option<StopSequence>,
    probes: Vec<(usize, usize, Arc<dyn crate::mesh::ChannelProbe>)>,
    started: Instant,
    bytes_total: Option<u64>,
    /// The first failure of the coordinator: the run stops with it.
    checkpoint_error: Option<RunError>,
    stall: StallWatch,
}

impl Relay<'_> {
    /// Until every shard has finished.
    fn run(&mut self, events_rx: &mpsc::Receiver<ShardEvent>, options: &mut RunOptions<'_>) {
        let control = self.control;
        let mut finished = 0;
        let mut last_progress = Instant::now();
        // A run whose input count has not moved for a while is reported
        // once, with each shard's phase, so a stall is never silent.
        let (mut last_rows, mut rows_moved_at, mut stall_reported) = (0u64, Instant::now(), false);
        install_kick_handler();
        let mut kicker = Kicker::new(self.shards);
        while finished < self.shards {
            kicker.kick_stalled(control);
            self.stall.step(control, &self.probes);
            self.coordinate();
            if !control.metrics.ready.load(Relaxed)
                && control.stop.replaying.load(Acquire) == 0
                && (0..self.shards).all(|i| control.liveness.phase(i) >= Phase::Reading)
            {
                control.metrics.ready.store(true, Relaxed);
            }
            match events_rx.recv_timeout(Duration::from_millis(10)) {
                Ok(ShardEvent::Malformed {
                    source,
                    location,
                    line,
                    reason,
                }) => (options.on_malformed)(MalformedRecord {
                    source: &source,
                    location: &location,
                    line,
                    reason: &reason,
                }),
                Ok(ShardEvent::Finished { .. }) => finished += 1,
                Ok(ShardEvent::Checkpoint(piece)) => self.on_piece(piece),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let rows_now = control.run.rows_in.load(Relaxed);
            if rows_now != last_rows {
                (last_rows, rows_moved_at) = (rows_now, Instant::now());
            } else if !stall_reported && self.stop.is_none() && rows_moved_at.elapsed() >= STALL_REPORT_AFTER {
                // (A live run may be quiet for hours: no stall report.)
                stall_reported = true;
                self.report_stall(rows_now, kicker.kicks);
            }
            if last_progress.elapsed() >= Duration::from_millis(100) {
                last_progress = Instant::now();
                (options.on_progress)(&Progress {
                    rows_in: control.run.rows_in.load(Relaxed),
                    bytes_read: control.run.bytes_read.load(Relaxed),
                    bytes_total: self.bytes_total,
                    elapsed: self.started.elapsed(),
                });
            }
        }
        // Reports that raced with the last Finished.
        while let Ok(ShardEvent::Malformed {
            source,
            location,
            line,
            reason,
        }) = events_rx.try_recv()
        {
            (options.on_malformed)(MalformedRecord {
                source: &source,
                location: &location,
                line,
                reason: &reason,
            });
        }
    }

    /// The coordinator's turn: the stop sequence, then the next request.
    fn coordinate(&mut self) {
        let Some(c) = &mut self.coordinator else { return };
        if let Some(stop) = &mut self.stop {
            if let Err(e) = stop.step(c, self.control, self.shards) {
                self.checkpoint_error.get_or_insert(e);
                self.control.run.set_abort();
            }
        }
        c.tick(self.control);
    }

    fn on_piece(&mut self, piece: crate::checkpoint::Piece) {
        let c = self.coordinator.as_mut().expect("pieces come only with checkpoints");
        if self.checkpoint_error.is_none() {
            if let Err(e) = c.on_piece(piece, self.control) {
                // A failed (or, in tests, injected) durable step: stop
                // everything; the state directory still holds the last
                // complete checkpoint.
                self.control.run.set_abort();
                self.checkpoint_error = Some(e);
            }
        }
    }

    fn report_stall(&self, rows_in: u64, kicks: u64) {
        let phases: Vec<String> = (0..self.shards)
            .map(|i| format!("shard {i}: {:?}", self.control.liveness.phase(i)))
            .collect();
        let channels: Vec<String> = self
            .probes
            .iter()
            .map(|(from, to, p)| format!("{from}->{to}: {}", p.describe()))
            .collect();
        tracing::warn!(
            rows_in,
            kicks,
            "no input read for {STALL_REPORT_AFTER:?}; {}; channels {}",
            phases.join(", "),
            channels.join("; ")
        );
    }
}

/// `laminar serve`'s stop, driven by the coordinator's thread: stop
/// intake when asked, wait until every accepted record is applied, take
/// the final checkpoint, wait until every finished connection has its
/// answer, then stop the shards.
struct StopSequence {
    timeout: Duration,
    asked_at: Option<Instant>,
    final_epoch: u64,
    stopped: bool,
}

impl StopSequence {
    fn new(timeout: Duration) -> StopSequence {
        StopSequence {
            timeout,
            asked_at: None,
            final_epoch: 0,
            stopped: false,
        }
    }

    fn stopped(&self) -> bool {
        self.stopped
    }

    fn step(
        &mut self,
        coordinator: &mut crate::checkpoint::Coordinator,
        progress: &Control,
        shards: usize,
    ) -> Result<(), RunError> {
        use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
        if self.stopped {
            return Ok(());
        }
        let Some(asked_at) = self.asked_at else {
            if progress.stop.shutdown.load(Acquire) {
                tracing::info!("stopping: intake closed, draining");
                self.asked_at = Some(Instant::now());
                progress.stop.intake_stopped.store(true, Release);
            }
            return Ok(());
        };
        if asked_at.elapsed() > self.timeout {
            return Err(RunError::StopTimeout {
                timeout: self.timeout,
                shards,
                drained: progress.stop.drained.load(Acquire),
                final_epoch: (self.final_epoch != 0).then_some(self.final_epoch),
                answered: progress.stop.ready_to_stop.load(Acquire),
            });
        }
        if self.final_epoch == 0 {
            if progress.stop.drained.load(Acquire) == shards {
                if let Some(epoch) = coordinator.request_final(progress) {
                    tracing::info!(epoch, "stopping: drained, final checkpoint requested");
                    self.final_epoch = epoch;
                    progress.epochs.final_.store(epoch, Release);
                }
            }
            return Ok(());
        }
        if coordinator.completed >= self.final_epoch && progress.stop.ready_to_stop.load(Acquire) == shards {
            tracing::info!(
                epoch = self.final_epoch,
                ms = asked_at.elapsed().as_millis() as u64,
                "stopped"
            );
            self.stopped = true;
            // The shards' way out: every wait checks this flag.
            let _ = progress.run.abort.fetch_or(true, AcqRel);
        }
        Ok(())
    }
}

fn summarize(plan: &PhysicalPlan, reports: &[ShardReport], elapsed: Duration) -> RunSummary {
    let mut sources: Vec<SourceSummary> = plan
        .sources
        .iter()
        .map(|s| SourceSummary {
            name: s.name.clone(),
            rows: 0,
            malformed: 0,
            header_detected: false,
        })
        .collect();
    let mut node_metrics = vec![OperatorMetrics::default(); plan.nodes.len()];
    let mut sink_rows = vec![0u64; plan.sinks.len()];
    for r in reports {
        for (i, _, rows, malformed) in &r.sources {
            sources[*i].rows += rows;
            sources[*i].malformed += malformed;
        }
        for &i in &r.headers_detected {
            sources[i].header_detected = true;
        }
        for (total, m) in node_metrics.iter_mut().zip(&r.nodes) {
            total.rows_in += m.rows_in;
            total.rows_out += m.rows_out;
            total.add_counts(m);
        }
        for (i, _, rows) in &r.sinks {
            sink_rows[*i] += rows;
        }
    }
    let mut streams: Vec<StreamSummary> = Vec::new();
    for (node, m) in plan.nodes.iter().zip(node_metrics) {
        match streams.iter_mut().find(|s| s.name == node.name) {
            Some(s) => {
                // Several nodes of one stream: keep the last node's output
                // count, sum the drops and errors.
                s.metrics.rows_out = m.rows_out;
                s.metrics.add_counts(&m);
            }
            None => streams.push(StreamSummary {
                name: node.name.clone(),
                metrics: m,
            }),
        }
    }
    RunSummary {
        sources,
        streams,
        sinks: plan
            .sinks
            .iter()
            .zip(sink_rows)
            .map(|(node, rows)| SinkSummary {
                name: node.name.clone(),
                rows,
                target: match &node.connector {
                    SinkConnector::File { path, .. } => path.display().to_string(),
                    SinkConnector::Stdout => "stdout".into(),
                    SinkConnector::Tcp { port } => format!("tcp port {port}"),
                    SinkConnector::Discard => "discard".into(),
                },
            })
            .collect(),
        elapsed,
        shard_busy: reports.iter().map(|r| r.busy).collect(),
        latency_ns: crate::pace::merge(reports.iter().filter_map(|r| r.latency.clone())),
        behind_schedule: reports.iter().map(|r| r.behind_schedule).sum(),
        read_delay_ns: crate::pace::merge(reports.iter().filter_map(|r| r.read_delay.clone())),
        events_generated: reports.iter().map(|r| r.events_generated).max().unwrap_or(0),
        read_elapsed: Duration::from_nanos(reports.iter().map(|r| r.read_ns).max().unwrap_or(0)),
        checkpoints: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel with a fixed number of messages waiting.
    struct Waiting(usize);

    impl crate::mesh::ChannelProbe for Waiting {
        fn describe(&self) -> String {
            format!("{} queued", self.0)
        }
        fn queued(&self) -> usize {
            self.0
        }
        fn bytes(&self) -> usize {
            self.0 * 1024
        }
        fn rescue(&self, _side: crate::mesh::Side) -> bool {
            false
        }
    }

    #[test]
    fn a_shard_without_progress_while_messages_wait_is_stalled_until_it_moves() {
        let control = Control::with_metrics(2, 0, 0, 0);
        control.liveness.set_phase(0, Phase::Reading);
        control.liveness.set_phase(1, Phase::Reading);
        let probes: Vec<(usize, usize, Arc<dyn crate::mesh::ChannelProbe>)> =
            vec![(0, 1, Arc::new(Waiting(3))), (1, 0, Arc::new(Waiting(0)))];
        let mut watch = StallWatch::new(2, Duration::ZERO);
        let stall_ns = |s: usize| control.metrics.shards[s].stall_ns.load(Relaxed);
        // Shard 1 has messages waiting and its count does not move.
        watch.step(&control, &probes);
        watch.step(&control, &probes);
        assert!(watch.counted_to[1].is_some(), "shard 1 is stalled");
        let counted = stall_ns(1);
        watch.step(&control, &probes);
        assert!(stall_ns(1) >= counted, "its stall time grows");
        // Shard 0 has nothing waiting: idle, not stalled.
        assert!(watch.counted_to[0].is_none());
        assert_eq!(stall_ns(0), 0);
        // Shard 1 moves: no longer stalled, and its time stops growing.
        control.liveness.progress[1].fetch_add(1, Relaxed);
        watch.step(&control, &probes);
        assert!(watch.counted_to[1].is_none());
        let after = stall_ns(1);
        watch.step(&control, &probes);
        assert!(watch.counted_to[1].is_some(), "stalled again: still nothing moves");
        assert!(stall_ns(1) >= after);
        // A finished shard is never stalled.
        control.liveness.set_phase(1, Phase::Finished);
        watch.step(&control, &probes);
        assert!(watch.counted_to[1].is_none());
    }
}
