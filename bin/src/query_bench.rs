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
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use laminar_exec::plan::{PhysicalPlan, SinkConnector, SourceConnector};
use laminar_nexmark::{Generator, NexmarkConfig};
use laminar_reactor::{Pacing, Progress, RunOptions, RunSummary};
use laminar_sql::PlanOptions;

/// The queries shipped in `bench/queries/`, compiled in so the binary
/// needs no checkout.
const QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("../../bench/queries/q0.sql")),
    ("q1", include_str!("../../bench/queries/q1.sql")),
    ("q2", include_str!("../../bench/queries/q2.sql")),
    ("q3", include_str!("../../bench/queries/q3.sql")),
    ("q5", include_str!("../../bench/queries/q5.sql")),
    ("q7", include_str!("../../bench/queries/q7.sql")),
    ("q8", include_str!("../../bench/queries/q8.sql")),
];

/// A limit on everything: an hour of load at most.
pub(crate) const DURATION_S_MAX: u64 = 3_600;

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
    /// Seconds of load (event time advances at the same pace).
    #[arg(long, default_value_t = 10)]
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

/// What one run measured.
struct Measured {
    target_eps: Option<u64>,
    events: u64,
    /// From the start until the sources had read every event.
    read_elapsed: Duration,
    /// The whole run, including the final flush and shutdown.
    elapsed: Duration,
    result_rows: u64,
    behind_schedule: u64,
    latency_ns: Histogram<u64>,
    shard_busy: Vec<f64>,
}

impl Measured {
    /// Open loop: the rate events were sent at. Closed loop: events over
    /// the whole run, final flush included, since that is work the events
    /// caused (in a short closed-loop run event time moves too little for
    /// windows to close before the end).
    fn throughput_eps(&self) -> f64 {
        let time = match self.target_eps {
            Some(_) => self.read_elapsed,
            None => self.elapsed,
        };
        self.events as f64 / time.as_secs_f64().max(1e-9)
    }

    fn us_at(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1e3
    }

    fn json_fields(&self, out: &mut String) {
        let target = self.target_eps.map_or("null".to_string(), |r| r.to_string());
        let _ = write!(
            out,
            "\"target_rate_eps\":{target},\"throughput_eps\":{:.0},\"events\":{},\"read_s\":{:.3},\"elapsed_s\":{:.3},\
             \"behind_schedule_events\":{},\"result_rows\":{},\"latency_samples\":{}",
            self.throughput_eps(),
            self.events,
            self.read_elapsed.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.behind_schedule,
            self.result_rows,
            self.latency_ns.len()
        );
        for (name, q) in PERCENTILES {
            let _ = write!(out, ",\"{name}_us\":{:.3}", self.us_at(*q));
        }
        let _ = write!(out, ",\"max_us\":{:.3}", self.latency_ns.max() as f64 / 1e3);
        let busy: Vec<String> = self.shard_busy.iter().map(|b| format!("{b:.4}")).collect();
        let _ = write!(out, ",\"shard_busy_share\":[{}]", busy.join(","));
    }
}

const PERCENTILES: &[(&str, f64)] = &[
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99_9", 0.999),
    ("p99_99", 0.9999),
];

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
            let m = ctx.measure(rate, &name)?;
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
        Ok(measured(rate, events, elapsed, summary))
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

fn measured(rate: Rate, events: u64, elapsed: Duration, summary: RunSummary) -> Measured {
    let secs = elapsed.as_secs_f64().max(1e-9);
    Measured {
        target_eps: match rate {
            Rate::Fixed(r) => Some(r),
            Rate::Max => None,
        },
        events,
        read_elapsed: if summary.read_elapsed.is_zero() {
            elapsed
        } else {
            summary.read_elapsed
        },
        elapsed,
        result_rows: summary.sinks.iter().map(|s| s.rows).sum(),
        behind_schedule: summary.behind_schedule,
        latency_ns: summary
            .latency_ns
            .clone()
            .unwrap_or_else(laminar_reactor::pace::latency_histogram),
        shard_busy: summary.shard_busy.iter().map(|b| b.as_secs_f64() / secs).collect(),
    }
}

/// Three significant digits: 1,234,567 → 1,230,000.
fn round_rate(r: f64) -> u64 {
    if r < 1.0 {
        return 0;
    }
    let magnitude = 10f64.powi(r.log10().floor() as i32 - 2);
    ((r / magnitude).round() * magnitude) as u64
}

fn names() -> String {
    QUERIES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ")
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

/// Events per second the generator makes alone on this core: the ceiling
/// of any paced rate (measured for 50 ms, all kinds).
fn generator_capacity_eps(seed: u64) -> f64 {
    let generator = Generator::new(NexmarkConfig {
        seed,
        events: u64::MAX,
        ..NexmarkConfig::default()
    });
    let mut row = Vec::new();
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_millis(50) {
        for _ in 0..1_000 {
            row.clear();
            std::hint::black_box(generator.fill_event(i, &mut row));
            i += 1;
        }
    }
    i as f64 / started.elapsed().as_secs_f64()
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
    let _ = write!(out, "  latency (µs, {} samples):", m.latency_ns.len());
    for (n, q) in PERCENTILES {
        let _ = write!(out, " {} {:.1}", n.replace('_', "."), m.us_at(*q));
    }
    let _ = writeln!(out, " max {:.1}", m.latency_ns.max() as f64 / 1e3);
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

/// The percentile distribution in HdrHistogram's text (`.hgrm`) format,
/// values in microseconds.
fn hdr_text(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inverse = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".to_string()
        };
        let _ = writeln!(
            out,
            "{:>12.3} {:>14.12} {:>10} {:>14}",
            v.value_iterated_to() as f64 / 1e3,
            q,
            v.count_since_last_iteration(),
            inverse
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1e3,
        h.stdev() / 1e3
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1e3,
        h.len()
    );
    out
}

/// The latency percentile curve: x is the percentile on the usual
/// `1/(1-p)` log scale (0% to 99.999%), y the latency in microseconds.
fn plot_svg(h: &Histogram<u64>, title: &str) -> String {
    const W: f64 = 800.0;
    const H: f64 = 480.0;
    const LEFT: f64 = 70.0;
    const BOTTOM: f64 = 50.0;
    const TOP: f64 = 40.0;
    const NINES: f64 = 5.0;
    let x_of = |q: f64| {
        let nines = if q >= 1.0 {
            NINES
        } else {
            (-(1.0 - q).log10()).min(NINES)
        };
        LEFT + (W - LEFT - 20.0) * nines / NINES
    };
    let y_max = (h.value_at_quantile(0.99999).max(1) as f64 / 1e3).max(0.001) * 1.1;
    let y_of = |us: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (us / y_max).min(1.0));
    let mut points = Vec::new();
    if !h.is_empty() {
        for v in h.iter_quantiles(4) {
            let q = v.quantile_iterated_to();
            if q > 0.99999 {
                break;
            }
            points.push(format!(
                "{:.1},{:.1}",
                x_of(q),
                y_of(v.value_iterated_to() as f64 / 1e3)
            ));
        }
    }
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{}</text>\n",
        xml_escape(title)
    );
    for (label, q) in [
        ("0%", 0.0),
        ("90%", 0.9),
        ("99%", 0.99),
        ("99.9%", 0.999),
        ("99.99%", 0.9999),
        ("99.999%", 0.99999),
    ] {
        let x = x_of(q);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM,
            H - BOTTOM + 18.0
        );
    }
    for k in 0..=4 {
        let us = y_max * f64::from(k) / 4.0;
        let y = y_of(us);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{us:.1}</text>",
            W - 20.0,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>\n\
         <text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">latency (µs)</text>\n\
         <polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\" points=\"{}\"/>\n</svg>",
        (LEFT + W) / 2.0,
        H - 12.0,
        H / 2.0,
        H / 2.0,
        points.join(" ")
    );
    svg
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
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

    #[test]
    fn rates_round_to_three_digits() {
        assert_eq!(round_rate(1_234_567.0), 1_230_000);
        assert_eq!(round_rate(999.6), 1_000);
        assert_eq!(round_rate(0.5), 0);
    }

    #[test]
    fn the_distribution_and_the_plot_cover_the_samples() {
        let mut h = laminar_reactor::pace::latency_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1_000).unwrap();
        }
        let text = hdr_text(&h);
        assert!(text.starts_with("       Value     Percentile"));
        assert!(text.contains("Total count    =        10000"), "{text}");
        let svg = plot_svg(&h, "t<1>");
        assert!(svg.contains("<polyline") && svg.contains("t&lt;1&gt;") && svg.trim_end().ends_with("</svg>"));
    }
}
