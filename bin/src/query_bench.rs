//! `laminar bench --query …`: the real engine under a Nexmark load, with
//! latency percentiles from an HDR histogram.
//!
//! The query's Nexmark sources are paced in real time (open loop): event
//! `i` of the stream is due at `start + i / rate`, and event time advances
//! at the same pace, so windows close in real time as they would in
//! production. Every sink is replaced by one that counts rows and records,
//! per row, the time from the intended send time of the earliest event of
//! the source batch that caused it to the row's arrival at the sink (see
//! `laminar_reactor::pace`). `--rate max` reads as fast as the engine
//! goes (closed loop) to find the saturation throughput; `--sweep` runs a
//! ladder of rates below it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use laminar_bench::query::{
    generator_capacity_eps, hdr_text, measured, names, plot_svg, round_rate, Measured, PERCENTILES, QUERIES,
};
use laminar_exec::plan::{PhysicalPlan, SinkConnector, SourceConnector};
use laminar_reactor::{Pacing, Progress, RunOptions};
use laminar_sql::PlanOptions;

/// A limit on everything: an hour of load at most.
pub(crate) const DURATION_S_MAX: u64 = 3_600;

/// `--with-floor`: seconds of spinning for the host's floor at most.
const FLOOR_S_MAX: u64 = 5;

/// The rates of a sweep, as shares of the saturation throughput.
const SWEEP_SHARES: &[f64] = &[0.1, 0.25, 0.5, 0.75, 0.9, 1.0];

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The query: q0 q1 q2 q3 q5 q7 q8 (bench/queries/, built in), or the
    /// path of a SQL file whose sources are all Nexmark generators.
    #[arg(long)]
    query: Option<String>,
    /// Events per second of the whole Nexmark stream (people, auctions
    /// and bids), or `max` for the saturation throughput (closed loop).
    /// Default 1000000.
    #[arg(long)]
    rate: Option<String>,
    /// Seconds of load (event time advances at the same pace). The
    /// default lets every built-in query's windows (10 s, closed 4 s
    /// after their end) close while events are still read.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Shards (pinned executors).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Cores to pin shards to, e.g. `0,1`; default: every usable core.
    #[arg(long)]
    cpus: Option<String>,
    /// Most rows per source batch (a paced source reads only the events
    /// due, usually far fewer).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    batch_rows: u32,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Durable state during the run: checkpoints every
    /// `--checkpoint-interval-ms` into a temporary state directory, so the
    /// latency includes what checkpoints cost the event path.
    #[arg(long)]
    wal: bool,
    /// With `--wal`: milliseconds between checkpoints.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    checkpoint_interval_ms: u64,
    /// With `--wal`: copy every snapshot on its shard instead of forking
    /// for states of 16 MB or more (see `laminar run --no-fork-snapshots`).
    #[arg(long, requires = "wal")]
    no_fork_snapshots: bool,
    #[command(flatten)]
    huge_pages: crate::HugePages,
    /// Microseconds an idle shard polls before it parks, as `laminar run
    /// --spin-before-park-us` (default: 200 with several shards, 0 with one).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    spin_before_park_us: Option<u64>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
    /// Measure the host's own latency floor first (`laminar bench jitter`
    /// on the first shard's core, for the run's duration up to 5 s) and
    /// report it beside the run's figures, so a reader can tell the
    /// engine's latency from the machine's.
    #[arg(long, conflicts_with = "sweep")]
    with_floor: bool,
    /// Write the latency percentile distribution (HdrHistogram's text
    /// format, microseconds) to this file.
    #[arg(long)]
    hdr_out: Option<PathBuf>,
    /// Draw the latency percentile curve as SVG into this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Find the saturation throughput, then run a ladder of rates below it
    /// (10% to 100%) and print latency against rate.
    #[arg(long)]
    sweep: bool,
}

pub fn run(args: QueryArgs) -> Result<()> {
    args.huge_pages.apply();
    let Some(query) = &args.query else {
        bail!(
            "laminar bench needs --query NAME (one of {}) or a subcommand (arena, mesh); see laminar bench --help",
            names()
        );
    };
    ensure!(
        (1..=DURATION_S_MAX).contains(&args.duration),
        "--duration must be between 1 and {DURATION_S_MAX} seconds (got {})",
        args.duration
    );
    ensure!(
        (1..=crate::SHARDS_MAX).contains(&args.shards),
        "--shards must be between 1 and {}",
        crate::SHARDS_MAX
    );
    let cpus = match &args.cpus {
        Some(list) => Some(
            crate::parse_cpu_list(list)
                .map_err(|e| anyhow::anyhow!("--cpus: {e}"))?
                .0,
        ),
        None => None,
    };
    let (name, plan) = load_query(query)?;
    let generator_eps = generator_capacity_eps(args.seed);
    let rate = match (&args.rate, args.sweep) {
        (Some(_), true) => bail!("--sweep picks its own rates; drop --rate"),
        (None, true) => None,
        (None, false) => Some(Rate::Fixed(1_000_000)),
        (Some(r), false) if r == "max" => Some(Rate::Max),
        (Some(r), false) => {
            let n: u64 =
                r.replace('_', "").parse().ok().filter(|&n| n > 0).with_context(|| {
                    format!("--rate must be a positive number of events per second or `max` (got {r})")
                })?;
            Some(Rate::Fixed(n))
        }
    };
    if let Some(Rate::Fixed(r)) = rate {
        ensure!(
            r as f64 <= generator_eps,
            "--rate {r} is more than the Nexmark generator reaches on this machine (about {:.0} events/s on one core); \
             use --rate max to measure the saturation throughput",
            generator_eps
        );
    }
    let ctx = Ctx {
        plan,
        args: &args,
        cpus,
        generator_eps,
    };
    match rate {
        Some(rate) => {
            let floor = match args.with_floor {
                true => {
                    let cpu = match &ctx.cpus {
                        Some(c) => c[0],
                        None => *laminar_reactor::runner::usable_cpus()
                            .first()
                            .context("no usable core for the host floor")?,
                    };
                    let secs = args.duration.min(FLOOR_S_MAX);
                    let jitter = laminar_bench::micro::jitter(cpu, Duration::from_secs(secs))?;
                    Some(laminar_bench::query::Floor { cpu, jitter })
                }
                false => None,
            };
            let mut m = ctx.measure(rate, &name)?;
            m.floor = floor;
            if let Some(path) = &args.hdr_out {
                write_file(path, &hdr_text(&m.latency_ns))?;
            }
            if let Some(path) = &args.plot {
                write_file(path, &plot_svg(&m.latency_ns, &format!("laminar bench {name}")))?;
            }
            let text = if args.json {
                let mut out = format!(
                    "{{\"query\":\"{name}\",\"shards\":{},\"duration_s\":{},\"mode\":\"{}\",",
                    args.shards,
                    args.duration,
                    if rate == Rate::Max { "closed_loop" } else { "open_loop" }
                );
                m.json_fields(&mut out);
                out.push_str("}\n");
                out
            } else {
                report_text(&name, &args, rate, &m)
            };
            crate::write_stdout(&text)
        }
        None => ctx.sweep(&name),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rate {
    Fixed(u64),
    Max,
}

struct Ctx<'a> {
    plan: PhysicalPlan,
    args: &'a QueryArgs,
    cpus: Option<Vec<usize>>,
    generator_eps: f64,
}

impl Ctx<'_> {
    /// One run of the query at `rate` for `--duration` seconds.
    fn measure(&self, rate: Rate, name: &str) -> Result<Measured> {
        let duration = self.args.duration;
        // Closed loop: the generators stop at the deadline; the event
        // count only needs to be out of reach, and event time advances at
        // the pace of the generator alone.
        let (events, spacing_eps) = match rate {
            Rate::Fixed(r) => (r.saturating_mul(duration), r),
            Rate::Max => {
                let r = self.generator_eps as u64;
                (r.saturating_mul(duration).saturating_mul(2), r)
            }
        };
        let mut plan = self.plan.clone();
        for source in &mut plan.sources {
            if let SourceConnector::Nexmark {
                events: e,
                rate_per_sec,
                seed,
                ..
            } = &mut source.connector
            {
                *e = events;
                *rate_per_sec = spacing_eps;
                *seed = self.args.seed;
            }
        }
        for sink in &mut plan.sinks {
            sink.connector = SinkConnector::Discard;
        }
        let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressBar::with_draw_target(Some(events), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(match rate {
            Rate::Fixed(r) => format!("{name} at {r} events/s"),
            Rate::Max => format!("{name} at max rate"),
        });
        let mut on_progress = |p: &Progress| {
            // Rows of the declared kinds; the bar counts stream positions,
            // close enough for a progress line.
            let secs = p.elapsed.as_secs_f64();
            bar.set_position((secs * spacing_eps as f64) as u64);
            bar.set_message(format!(
                "{} rows read, {:.2} M rows/s",
                p.rows_in,
                p.rows_in as f64 / secs.max(1e-9) / 1e6
            ));
        };
        let mut on_malformed = |_: laminar_reactor::Malformed<'_>| {};
        let state = if self.args.wal {
            Some(tempfile::Builder::new().prefix("laminar-bench-state").tempdir()?)
        } else {
            None
        };
        let durability = state.as_ref().map(|d| laminar_reactor::checkpoint::Durability {
            state_dir: d.path().to_path_buf(),
            interval: Duration::from_millis(self.args.checkpoint_interval_ms),
            every_rows: None,
            fork_bytes_min: (!self.args.no_fork_snapshots)
                .then_some(laminar_reactor::checkpoint::FORK_BYTES_MIN_DEFAULT),
            faults: laminar_persistence::Faults::none(),
            resets: Vec::new(),
        });
        let started = Instant::now();
        let summary = laminar_reactor::run(
            &plan,
            RunOptions {
                batch_rows: self.args.batch_rows as usize,
                shards: self.args.shards,
                cpus: self.cpus.clone(),
                spin_before_park: self.args.spin_before_park_us.map(Duration::from_micros),
                clock: None,
                pacing: Some(match rate {
                    Rate::Fixed(r) => Pacing::Rate(r),
                    Rate::Max => Pacing::Max(Duration::from_secs(duration)),
                }),
                split_bytes_min: None,
                durability,
                split_chunk_bytes: None,
                split_generator_chunk_events: None,
                live: None,
                on_malformed: &mut on_malformed,
                on_progress: &mut on_progress,
            },
        )
        .map_err(anyhow::Error::new)?;
        bar.finish_and_clear();
        let elapsed = started.elapsed();
        let events = match rate {
            Rate::Fixed(_) => events,
            Rate::Max => summary.events_generated,
        };
        let target_eps = match rate {
            Rate::Fixed(r) => Some(r),
            Rate::Max => None,
        };
        Ok(measured(target_eps, events, elapsed, summary))
    }

    fn sweep(&self, name: &str) -> Result<()> {
        let saturation = self.measure(Rate::Max, name)?;
        let top = saturation.throughput_eps();
        let mut rows = Vec::new();
        for share in SWEEP_SHARES {
            let r = round_rate(top * share);
            if r == 0 {
                continue;
            }
            rows.push(self.measure(Rate::Fixed(r), name)?);
        }
        let text = if self.args.json {
            let mut out = format!(
                "{{\"query\":\"{name}\",\"shards\":{},\"duration_s\":{},\"saturation_eps\":{top:.0},\"steps\":[",
                self.args.shards, self.args.duration
            );
            for (i, m) in rows.iter().enumerate() {
                out.push_str(if i == 0 { "{" } else { ",{" });
                m.json_fields(&mut out);
                out.push('}');
            }
            out.push_str("]}\n");
            out
        } else {
            let mut out = format!(
                "laminar bench {name}: sweep on {} shard(s), {} s per rate; saturation (closed loop) {:.0} events/s\n\
                 latency in µs, from intended send time to the result's arrival at the sink\n\
                 {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}\n",
                self.args.shards,
                self.args.duration,
                top,
                "target/s",
                "achieved/s",
                "p50",
                "p99",
                "p99.9",
                "max",
                "behind",
                "busy",
            );
            for m in &rows {
                let busy: Vec<String> = m.shard_busy.iter().map(|b| format!("{:.0}%", b * 100.0)).collect();
                let _ = writeln!(
                    out,
                    "{:>12} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>9}",
                    m.target_eps.unwrap_or(0),
                    m.throughput_eps(),
                    m.us_at(0.5),
                    m.us_at(0.99),
                    m.us_at(0.999),
                    m.latency_ns.max() as f64 / 1e3,
                    m.behind_schedule,
                    busy.join("/")
                );
            }
            out
        };
        crate::write_stdout(&text)
    }
}

/// Plans a built-in query by name, or a SQL file, and checks its sources.
fn load_query(query: &str) -> Result<(String, PhysicalPlan)> {
    let (name, text) = match QUERIES.iter().find(|(n, _)| n.eq_ignore_ascii_case(query)) {
        Some((n, sql)) => (n.to_string(), sql.to_string()),
        None if query.ends_with(".sql") || Path::new(query).exists() => {
            let text = std::fs::read_to_string(query).with_context(|| format!("reading {query}"))?;
            (query.to_string(), text)
        }
        None => bail!(
            "unknown query {query:?}; the built-in ones are {}, or give a .sql file",
            names()
        ),
    };
    let plan = crate::plan_named(&name, &text, PlanOptions::default())?;
    for s in &plan.sources {
        ensure!(
            matches!(s.connector, SourceConnector::Nexmark { .. }),
            "{name}: source {} is not a Nexmark generator; laminar bench drives generator sources only",
            s.name
        );
    }
    ensure!(!plan.sinks.is_empty(), "{name}: the query has no stream to measure");
    Ok((name, plan))
}

fn report_text(name: &str, args: &QueryArgs, rate: Rate, m: &Measured) -> String {
    let mut out = String::new();
    let mode = match rate {
        Rate::Fixed(r) => format!("open loop at {r} events/s"),
        Rate::Max => "closed loop (as fast as it goes)".to_string(),
    };
    let _ = writeln!(
        out,
        "laminar bench {name}: {mode}, {} s, {} shard(s)",
        args.duration, args.shards
    );
    let _ = writeln!(
        out,
        "  throughput: {:.0} events/s ({} events read in {:.3} s; {:.3} s with the final flush){}",
        m.throughput_eps(),
        m.events,
        m.read_elapsed.as_secs_f64(),
        m.elapsed.as_secs_f64(),
        match m.target_eps {
            Some(t) => format!(", {:.1}% of target", m.throughput_eps() / t as f64 * 100.0),
            None => String::new(),
        }
    );
    if m.target_eps.is_some() {
        let _ = writeln!(
            out,
            "  behind schedule (read over 1 ms after their send time): {} events",
            m.behind_schedule
        );
    }
    let _ = writeln!(out, "  results: {} rows", m.result_rows);
    if m.latency_ns.is_empty() {
        let _ = writeln!(out, "  latency: {}", Measured::NO_SAMPLES);
    } else {
        let _ = write!(out, "  latency (µs, {} samples):", m.latency_ns.len());
        for (n, q) in PERCENTILES {
            let _ = write!(out, " {} {:.1}", n.replace('_', "."), m.us_at(*q));
        }
        let _ = writeln!(out, " max {:.1}", m.latency_ns.max() as f64 / 1e3);
    }
    if !m.read_delay_ns.is_empty() {
        let _ = write!(
            out,
            "  event read delay (µs after its send time, {} events):",
            m.read_delay_ns.len()
        );
        for (n, q) in PERCENTILES {
            let _ = write!(
                out,
                " {} {:.1}",
                n.replace('_', "."),
                m.read_delay_ns.value_at_quantile(*q) as f64 / 1e3
            );
        }
        let _ = writeln!(out, " max {:.1}", m.read_delay_ns.max() as f64 / 1e3);
    }
    if let Some(f) = &m.floor {
        let _ = writeln!(out, "{}", f.text());
    }
    let busy: Vec<String> = m
        .shard_busy
        .iter()
        .enumerate()
        .map(|(i, b)| format!("shard {i} {:.1}%", b * 100.0))
        .collect();
    let _ = writeln!(out, "  busy: {}", busy.join(", "));
    out
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_query_plans_over_generators_only() {
        for (name, _) in QUERIES {
            let (n, plan) = load_query(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(&n, name);
            assert!(!plan.sinks.is_empty());
        }
        let err = load_query("q4").unwrap_err().to_string();
        assert!(err.contains("unknown query") && err.contains("q0 q1 q2"), "{err}");
    }
}
