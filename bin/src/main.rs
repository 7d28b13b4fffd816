//! The `laminar` binary: one executable, several faces.
//!
//! - `laminar run FILE.sql` runs a pipeline over bounded inputs to the end
//!   and prints a summary;
//! - `laminar check FILE.sql` plans a script and reports the first error;
//! - `laminar explain FILE.sql` prints the plan;
//! - `laminar bench --query q5 --rate N` measures the engine's latency
//!   and throughput under a Nexmark load; `laminar bench arena|mesh`
//!   measures the state arena and the mesh.
//!
//! Errors are printed as `error: FILE:LINE:COLUMN: in STATEMENT: message`
//! and the process exits non-zero. Data goes to stdout; progress, warnings
//! and the summary go to stderr.

#![deny(unsafe_op_in_unsafe_fn)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use laminar_exec::plan::PhysicalPlan;
use laminar_reactor::{Progress, RunOptions, RunSummary};
use laminar_sql::{plan_script, PlanOptions};

/// `--huge-pages on|off`, taken by `run` and the benchmarks alike.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct HugePages {
    /// Whether operator state arenas of 2 MiB and more ask the kernel
    /// for transparent huge pages (a hint; the THP setting decides). Off
    /// by default: on a VM a fresh huge page took ~4.3 ms to fault in, a
    /// stall on the event path each time a state grew, for no measured
    /// throughput gain.
    #[arg(long, default_value = "off", value_parser = ["on", "off"])]
    huge_pages: String,
}

impl HugePages {
    /// Sets the arenas' huge-page hint for this process.
    pub(crate) fn apply(&self) {
        laminar_exec::arena::set_huge_pages(self.huge_pages == "on");
    }
}

mod admin;
mod bench;
mod client;
use laminar_config as config;
mod query_bench;
mod serve;
mod state;

#[derive(Parser)]
#[command(name = "laminar", version, about = "laminar: a streaming SQL event appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Latency and throughput of the real engine under a Nexmark load
    /// (`--query`), or microbenchmarks of its parts (`arena`, `mesh`).
    ///
    /// With `--query`, the query's Nexmark sources are paced in real time
    /// (open loop): event i of the stream is due at start + i/rate, and
    /// event time advances at the same pace, so windows close in real
    /// time. Latency is measured from an event's intended send time, not
    /// from when it was sent (so a stall cannot hide: coordinated omission
    /// is corrected), to the arrival of the result it caused at the sink;
    /// every result row is charged from the earliest event of the source
    /// batch that caused it, an upper bound. For windowed queries that
    /// batch is the one whose watermark closed the window, so latency runs
    /// from the event that advanced the watermark past the window's end to
    /// the window's emission. Sinks are replaced by a counter. `--rate max`
    /// runs closed loop for the saturation throughput (its latencies are
    /// processing delays only).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<bench::BenchCommand>,
        #[command(flatten)]
        query: query_bench::QueryArgs,
    },
    /// Run a SQL file over bounded inputs to the end, writing every sink.
    Run {
        /// The SQL script.
        file: PathBuf,
        /// Shards (glommio executors, one per core) to run on; default: one
        /// per core of `--cpus`, or per usable core. Results never depend
        /// on it.
        #[arg(long)]
        shards: Option<usize>,
        /// Cores to pin shards to, e.g. `0-3,8` (shard i runs on the i-th
        /// listed core, wrapping around); default: every usable core.
        #[arg(long, value_parser = parse_cpu_list)]
        cpus: Option<CpuList>,
        /// Microseconds an idle shard polls before it parks (default 200
        /// with several shards, 0 with one). 0 frees the core at once,
        /// for shared hosts; multi-shard latency then pays a slow wake.
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
        spin_before_park_us: Option<u64>,
        #[command(flatten)]
        huge_pages: HugePages,
        /// Rows per batch read from a source.
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
        batch_rows: u32,
        /// Limit on live groups/windows/sessions per stateful operator.
        #[arg(long, default_value_t = laminar_exec::state::STATE_ENTRIES_MAX_DEFAULT)]
        state_entries_max: usize,
        /// State retention of a regular join (one without a time bound), in
        /// milliseconds of event time: rows further apart never meet.
        #[arg(long, default_value_t = laminar_sql::JOIN_STATE_TTL_MS_DEFAULT,
              value_parser = clap::value_parser!(i64).range(1..=31_622_400_000))]
        join_state_ttl_ms: i64,
        /// Files at least this large (bytes) are read by every shard at
        /// once, in chunks, with the results of reading them in order.
        #[arg(long, default_value_t = laminar_reactor::source::split::SPLIT_BYTES_MIN_DEFAULT)]
        split_bytes_min: u64,
        /// The chunk size (bytes) of a file read by every shard.
        #[arg(long, default_value_t = laminar_reactor::source::split::SPLIT_CHUNK_BYTES_DEFAULT,
              value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
        split_chunk_bytes: u64,
        /// Keep state durable in this directory: checkpoints every
        /// `--checkpoint-interval-ms`, file sinks committed with them. A run
        /// that stopped (even by kill -9) and is started again with the same
        /// arguments resumes from its last checkpoint and ends with the same
        /// file output as an uninterrupted run.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Milliseconds from one completed checkpoint to the next request.
        #[arg(long, default_value_t = 1000, requires = "state_dir",
              value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
        checkpoint_interval_ms: u64,
        /// Checkpoint after every N rows each shard's sources read,
        /// instead of by time: the positions are the same from run to run.
        #[arg(long, requires = "state_dir", value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every_rows: Option<u64>,
        /// A node holding at least this many MB of state is snapshotted
        /// by a forked process (copy-on-write), so its shard stops only
        /// for the fork; smaller states are copied on the shard (0: fork
        /// for every stateful node).
        #[arg(long, default_value_t = (laminar_reactor::checkpoint::FORK_BYTES_MIN_DEFAULT >> 20) as u64,
              requires = "state_dir", value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
        fork_snapshot_mb: u64,
        /// Copy every snapshot on its shard; never fork.
        #[arg(long, requires = "state_dir")]
        no_fork_snapshots: bool,
        /// Start this stream (or table) with empty state, or read this
        /// source from its beginning, although the checkpoint has it:
        /// what lets a changed definition resume (docs/durability.md).
        /// Repeatable.
        #[arg(long = "reset", value_name = "NAME", requires = "state_dir")]
        resets: Vec<String>,
        /// No progress bar and no summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// The appliance: TCP ingest, continuous queries, durable state, TCP
    /// and file sinks, admin HTTP; runs until SIGTERM (then drains, takes
    /// a final checkpoint and exits 0).
    Serve {
        /// The TOML config (every key: docs/serve.md).
        #[arg(long)]
        config: PathBuf,
        /// Validate the config and its SQL, then exit.
        #[arg(long)]
        check: bool,
        /// Shards, overriding `shards.count` (scripts/numa.sh writes it).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        shards: Option<u16>,
        /// Cores, overriding `shards.cpus`, e.g. `0-3,8`.
        #[arg(long, value_parser = parse_cpu_list)]
        cpus: Option<CpuList>,
        /// Start this stream (or table) empty, or read this source from
        /// its beginning, although the checkpoint has it. Repeatable.
        #[arg(long = "reset", value_name = "NAME")]
        resets: Vec<String>,
    },
    /// Send lines (files, or stdin) to a tcp source of `laminar serve` and
    /// wait until they are durable.
    Ingest {
        /// The source's address, HOST:PORT.
        #[arg(long)]
        addr: String,
        /// Files to send, in order; none: stdin.
        files: Vec<PathBuf>,
        /// How long to wait for the acknowledgement after the last line.
        #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
        ack_timeout_ms: u64,
    },
    /// Print the JSON lines of a tcp sink of `laminar serve` as they come.
    Tail {
        /// The sink's address, HOST:PORT.
        #[arg(long)]
        addr: String,
        /// Stop after this many lines.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Plan a SQL file and report the first error, without running it.
    Check { file: PathBuf },
    /// Print the operator plan of a SQL file.
    Explain { file: PathBuf },
    /// Inspect a state directory (`--state-dir`, `state.dir`).
    State {
        #[command(subcommand)]
        what: StateCommand,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// What the last checkpoint holds: epoch, time, shards, plan
    /// fingerprint, state size, each source's position and watermark, each
    /// sink's committed output.
    Show {
        dir: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// What a restart on DIR with this SQL would do: which streams keep
    /// their state, start fresh, are dropped, reset or refused; which
    /// sources and sinks resume. In the restart's own words.
    Diff {
        dir: PathBuf,
        file: PathBuf,
        /// The shard count of the restart (default: the checkpoint's).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        shards: Option<u16>,
        /// As `--reset NAME` on the restart. Repeatable.
        #[arg(long = "reset", value_name = "NAME")]
        resets: Vec<String>,
        /// As the restart's `--join-state-ttl-ms`.
        #[arg(long, default_value_t = laminar_sql::JOIN_STATE_TTL_MS_DEFAULT)]
        join_state_ttl_ms: i64,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Keeps freed memory in glibc's per-thread arenas instead of returning
/// it to the kernel at every free. Batches of rows are allocated on one
/// shard and freed on another, megabytes a second; with the default
/// padding each arena's heap shrinks (`madvise(MADV_DONTNEED)`) and grows
/// again around them, and the page faults and page clearing that follow
/// were a third of a CSV run's time (10M-row filter: 2.0-3.0 s with,
/// 1.6 s without). Pages are only ever touched when used, so resident
/// memory does not grow by the pad.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const TOP_PAD_BYTES: libc::c_int = 64 << 20;
        // SAFETY: mallopt only sets allocator parameters; it is called
        // before any thread exists, and a refusal (0) leaves the defaults.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD_BYTES);
        }
    }
}

/// A panic anywhere is a bug in laminar (bad input gets errors, never
/// panics): the message and backtrace are printed as usual, then the
/// process ends with status 101, as a panic in `main` would. A shard
/// thread that died of one left its peers waiting for it forever, since a
/// peer blocked on a full channel to it has no one to drain it. (A forked
/// snapshot child installs its own hook; see `reactor::cow`.)
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(101);
    }));
}

/// Drops one known-harmless glommio message: every file opened for direct
/// I/O (WAL segments, file sinks) is probed for polled I/O, and on a disk
/// without it (virtio, most cloud disks) glommio logs an ERROR saying the
/// poll ring stays off. Nothing here uses the poll ring, so it told the
/// user nothing but alarmed them on every run.
struct QuietIopollProbe;

impl<S> tracing_subscriber::layer::Filter<S> for QuietIopollProbe {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        struct Probe(bool);
        impl tracing::field::Visit for Probe {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}").contains("probing iopoll support") {
                    self.0 = true;
                }
            }
        }
        // glommio logs through `log`: the bridge's events carry the target
        // in a field, so the message is what is matched.
        if *event.metadata().level() != tracing::Level::ERROR {
            return true;
        }
        let mut probe = Probe(false);
        event.record(&mut probe);
        !probe.0
    }
}

fn main() -> ExitCode {
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    tune_malloc();
    exit_on_panic();
    let levels = tracing_subscriber::EnvFilter::try_from_env("LAMINAR_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(levels)
                .with_filter(QuietIopollProbe),
        )
        .init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            file,
            shards,
            cpus,
            batch_rows,
            state_entries_max,
            join_state_ttl_ms,
            quiet,
            huge_pages,
            spin_before_park_us,
            split_bytes_min,
            split_chunk_bytes,
            state_dir,
            checkpoint_interval_ms,
            checkpoint_every_rows,
            fork_snapshot_mb,
            no_fork_snapshots,
            resets,
        } => {
            huge_pages.apply();
            let cpus = cpus.map(|c| c.0);
            let shards = shards.unwrap_or_else(|| {
                let cores = cpus
                    .as_ref()
                    .map_or_else(|| laminar_reactor::runner::usable_cpus().len(), Vec::len);
                cores.clamp(1, SHARDS_MAX)
            });
            anyhow::ensure!(
                (1..=SHARDS_MAX).contains(&shards),
                "--shards must be between 1 and {SHARDS_MAX}"
            );
            let plan = load(
                &file,
                PlanOptions {
                    state_entries_max,
                    join_state_ttl_ms,
                    ..PlanOptions::default()
                },
            )?;
            let summary = run(
                &plan,
                RunArgs {
                    batch_rows: batch_rows as usize,
                    shards,
                    cpus,
                    spin_before_park_us,
                    split_bytes_min,
                    split_chunk_bytes,
                    durability: state_dir.map(|state_dir| laminar_reactor::checkpoint::Durability {
                        state_dir,
                        interval: std::time::Duration::from_millis(checkpoint_interval_ms),
                        every_rows: checkpoint_every_rows,
                        fork_bytes_min: (!no_fork_snapshots).then_some((fork_snapshot_mb as usize) << 20),
                        faults: laminar_persistence::Faults::none(),
                        resets,
                    }),
                    quiet,
                },
            )?;
            if !quiet {
                print_summary(&file, &summary);
            }
            Ok(())
        }
        Command::Serve {
            config,
            check,
            shards,
            cpus,
            resets,
        } => serve::serve(
            &config,
            check,
            serve::Placement {
                shards: shards.map(usize::from),
                cpus: cpus.map(|c| c.0),
            },
            resets,
        ),
        Command::Ingest {
            addr,
            files,
            ack_timeout_ms,
        } => client::ingest(&addr, &files, std::time::Duration::from_millis(ack_timeout_ms)),
        Command::Tail { addr, limit } => client::tail(&addr, limit),
        Command::Bench { what: Some(what), .. } => bench::run(what),
        Command::Bench { what: None, query } => query_bench::run(query),
        Command::Check { file } => {
            let plan = load(&file, PlanOptions::default())?;
            let line = format!(
                "{}: ok ({} sources, {} operators, {} sinks)\n",
                file.display(),
                plan.sources.len(),
                plan.nodes.len(),
                plan.sinks.len()
            );
            write_stdout(&line)
        }
        Command::Explain { file } => {
            let plan = load(&file, PlanOptions::default())?;
            write_stdout(&plan.explain())
        }
        Command::State {
            what: StateCommand::Show { dir, json },
        } => state::show(&dir, json),
        Command::State {
            what:
                StateCommand::Diff {
                    dir,
                    file,
                    shards,
                    resets,
                    join_state_ttl_ms,
                    json,
                },
        } => {
            // Planned as `serve` plans (every connector allowed): the
            // script may be a service's.
            let plan = load(
                &file,
                PlanOptions {
                    serve: true,
                    join_state_ttl_ms,
                    ..PlanOptions::default()
                },
            )?;
            state::diff(&dir, &plan, shards.map(usize::from), &resets, json)
        }
    }
}

/// Writes to stdout without `print!`, which panics when the reader has
/// gone away (`laminar explain q.sql | head -1`).
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

fn load(file: &Path, options: PlanOptions) -> Result<PhysicalPlan> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    plan_named(&file.display().to_string(), &text, options)
}

/// Plans `text`; an error reads `NAME:LINE:COLUMN: in STATEMENT: message`.
fn plan_named(name: &str, text: &str, options: PlanOptions) -> Result<PhysicalPlan> {
    plan_script(text, options)
        .map_err(|e| anyhow::anyhow!("{name}:{}:{}: in {}: {}", e.line, e.column, e.statement, e.message))
}

/// At most this many shards: a limit on everything, and far above any
/// core count this runs on.
const SHARDS_MAX: usize = 256;

use config::{parse_cpu_list, CpuList};

/// How `laminar run` runs a plan.
struct RunArgs {
    batch_rows: usize,
    shards: usize,
    cpus: Option<Vec<usize>>,
    spin_before_park_us: Option<u64>,
    split_bytes_min: u64,
    split_chunk_bytes: u64,
    durability: Option<laminar_reactor::checkpoint::Durability>,
    quiet: bool,
}

fn run(plan: &PhysicalPlan, args: RunArgs) -> Result<RunSummary> {
    let RunArgs {
        batch_rows,
        shards,
        cpus,
        spin_before_park_us,
        split_bytes_min,
        split_chunk_bytes,
        durability,
        quiet,
    } = args;
    let bar = if !quiet && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("static template is valid"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut on_malformed = |m: laminar_reactor::Malformed<'_>| {
        bar.suspend(|| {
            eprintln!(
                "warning: source {}: {}:{}: malformed record skipped: {}",
                m.source, m.location, m.line, m.reason
            )
        });
    };
    let mut on_progress = |p: &Progress| {
        if let Some(total) = p.bytes_total {
            if bar.length() != Some(total) {
                bar.set_length(total);
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {percent:>3}% {elapsed_precise} eta {eta} {msg}")
                        .expect("static template is valid"),
                );
            }
            bar.set_position(p.bytes_read);
        }
        let rate = p.rows_in as f64 / p.elapsed.as_secs_f64().max(1e-9);
        bar.set_message(format!("{} rows ({:.0} rows/s)", p.rows_in, rate));
    };
    let summary = laminar_reactor::run(
        plan,
        RunOptions {
            batch_rows,
            shards,
            cpus,
            spin_before_park: spin_before_park_us.map(std::time::Duration::from_micros),
            clock: None,
            pacing: None,
            split_bytes_min: Some(split_bytes_min),
            split_chunk_bytes: Some(split_chunk_bytes),
            split_generator_chunk_events: None,
            durability,
            live: None,
            on_malformed: &mut on_malformed,
            on_progress: &mut on_progress,
        },
    );
    bar.finish_and_clear();
    Ok(summary?)
}

fn print_summary(file: &Path, s: &RunSummary) {
    let secs = s.elapsed.as_secs_f64();
    eprintln!(
        "laminar run {}: {} rows in {:.3} s ({:.0} events/s)",
        file.display(),
        s.rows_in(),
        secs,
        s.rows_in() as f64 / secs.max(1e-9)
    );
    for src in &s.sources {
        eprintln!(
            "  source {}: {} rows, {} malformed{}",
            src.name,
            src.rows,
            src.malformed,
            if src.header_detected {
                " (line 1 names the declared columns: read as the header; header = 'false' reads it as data)"
            } else {
                ""
            }
        );
    }
    for st in &s.streams {
        let m = &st.metrics;
        let mut line = format!("  stream {}: {} rows in, {} rows out", st.name, m.rows_in, m.rows_out);
        if m.late_rows_dropped > 0 {
            line += &format!(", {} late rows dropped", m.late_rows_dropped);
        }
        if m.null_time_dropped > 0 {
            line += &format!(", {} rows without event time dropped", m.null_time_dropped);
        }
        if m.rows_in_no_window > 0 {
            line += &format!(
                ", {} rows in no window (between HOP windows: slide > size)",
                m.rows_in_no_window
            );
        }
        if m.late_rows_diverted > 0 {
            line += &format!(", {} late rows sent to its LATE DATA stream", m.late_rows_diverted);
        }
        if m.eval_errors > 0 {
            line += &format!(", {} expression errors (NULL used)", m.eval_errors);
        }
        if m.state_evicted > 0 {
            line += &format!(", {} rows evicted from join state (TTL)", m.state_evicted);
        }
        eprintln!("{line}");
    }
    for sink in &s.sinks {
        eprintln!("  sink {} -> {}: {} rows", sink.name, sink.target, sink.rows);
    }
    if s.malformed() > 0 || s.late_rows_dropped() > 0 {
        eprintln!(
            "  total: {} malformed records, {} late rows dropped",
            s.malformed(),
            s.late_rows_dropped()
        );
    }
    if let Some(c) = &s.checkpoints {
        if let Some(epoch) = c.resumed_from {
            eprintln!(
                "  resumed from checkpoint {epoch} in {}: state read in {:.1} ms, restored in {:.1} ms",
                c.dir.display(),
                c.load.as_secs_f64() * 1e3,
                c.restore.as_secs_f64() * 1e3
            );
            for change in &c.evolution {
                eprintln!("    {change}");
            }
        }
        let mut line = format!("  checkpoints: {} completed", c.completed);
        if let (Some(max), true) = (c.durations.iter().max(), c.completed > 0) {
            let mean = c.durations.iter().sum::<std::time::Duration>() / c.durations.len() as u32;
            line += &format!(
                " (mean {:.1} ms, max {:.1} ms); last: checkpoint {}, {:.1} MB of state, {:.1} MB written",
                mean.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3,
                c.last_epoch,
                c.last_state_bytes as f64 / 1e6,
                c.last_written_bytes as f64 / 1e6
            );
        }
        eprintln!("{line}");
    }
}
