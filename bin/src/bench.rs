//! `laminar bench arena|mesh|jitter|wal`: microbenchmarks of the state
//! arena, the mesh and the write-ahead log, with percentiles from an HDR
//! histogram, and of the machine's own stalls. The work is done by
//! `laminar_bench::micro` on the real types; this file parses the
//! options and prints.

use anyhow::{ensure, Result};
use clap::Subcommand;
use hdrhistogram::Histogram;
use laminar_bench::micro::{self as microbench, Samples};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Keyed-state updates (lookup + accumulate) in the mmap arena.
    Arena {
        /// Distinct keys held in the state.
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
        /// Updates to time.
        #[arg(long, default_value_t = 20_000_000)]
        ops: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        huge_pages: crate::HugePages,
    },
    /// Mesh channel throughput and round-trip latency between two pinned
    /// executors.
    Mesh {
        /// The two cores, e.g. `0,1`.
        #[arg(long, default_value = "0,1")]
        cpus: String,
        /// Messages a channel holds.
        #[arg(long, default_value_t = 64)]
        capacity: usize,
        /// Rows (u64 values) per message.
        #[arg(long, default_value_t = 1024)]
        rows: usize,
        /// Messages for the throughput run.
        #[arg(long, default_value_t = 2_000_000)]
        messages: u64,
        /// Round trips for the latency run.
        #[arg(long, default_value_t = 200_000)]
        round_trips: u64,
    },
    /// WAL append throughput and group-commit latency: records appended
    /// on one pinned executor through glommio DMA files, one fdatasync
    /// per group.
    Wal {
        /// Directory for the log (a temporary one inside it is used and
        /// removed); default: the system's temporary directory.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        /// Payload bytes per record.
        #[arg(long, default_value_t = 256)]
        record_bytes: usize,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Unsynced bytes that make a group commit.
        #[arg(long, default_value_t = 256 << 10)]
        group_bytes: usize,
    },
    /// How often the machine takes a pinned, spinning core away, and the
    /// latency that alone gives an event arriving at a random moment: the
    /// floor under every latency figure on this host.
    Jitter {
        /// The core to spin on.
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        /// Seconds to spin.
        #[arg(long, default_value_t = 5)]
        duration: u64,
    },
}

pub fn run(what: BenchCommand) -> Result<()> {
    match what {
        BenchCommand::Jitter { cpu, duration } => jitter(cpu, duration),
        BenchCommand::Wal {
            dir,
            cpu,
            record_bytes,
            records,
            group_bytes,
        } => {
            ensure!(
                (1..=laminar_persistence::wal::RECORD_PAYLOAD_BYTES_MAX).contains(&record_bytes),
                "--record-bytes must be between 1 and {}",
                laminar_persistence::wal::RECORD_PAYLOAD_BYTES_MAX
            );
            ensure!(
                (1..=1_000_000_000).contains(&records),
                "--records must be between 1 and 1e9"
            );
            ensure!(
                (4096..=(1 << 30)).contains(&group_bytes),
                "--group-bytes must be between 4096 and 1 GiB"
            );
            let parent = dir.unwrap_or_else(std::env::temp_dir);
            let tmp = tempfile::Builder::new()
                .prefix("laminar-wal-bench")
                .tempdir_in(&parent)?;
            let b = microbench::wal(tmp.path(), cpu, record_bytes, records, group_bytes)?;
            let secs = b.elapsed.as_secs_f64();
            let q = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
            let out = format!(
                concat!(
                    "wal: {} records of {} B into {}, groups of {} B: {:.2} M records/s, {:.0} MB/s\n",
                    "  fdatasync per group (µs): p50 {:.0} p99 {:.0} max {:.0} ({} groups)\n",
                    "  group commit, first append to durable (µs): p50 {:.0} p99 {:.0} max {:.0}\n"
                ),
                records,
                record_bytes,
                parent.display(),
                group_bytes,
                records as f64 / secs / 1e6,
                b.bytes as f64 / secs / 1e6,
                q(&b.sync_ns, 0.5),
                q(&b.sync_ns, 0.99),
                b.sync_ns.max() as f64 / 1e3,
                b.sync_ns.len(),
                q(&b.group_ns, 0.5),
                q(&b.group_ns, 0.99),
                b.group_ns.max() as f64 / 1e3,
            );
            crate::write_stdout(&out)
        }
        BenchCommand::Arena {
            keys,
            ops,
            seed,
            huge_pages,
        } => {
            huge_pages.apply();
            ensure!(
                keys > 0 && keys <= 100_000_000,
                "--keys must be between 1 and 100,000,000"
            );
            ensure!(ops > 0, "--ops must be at least 1");
            let (s, growth) = microbench::arena(keys, ops, seed);
            let mut out = String::new();
            out.push_str(&format!(
                "arena: {keys} keys, {ops} updates, {:.1} M updates/s, {:.1} ns/update mean\n",
                s.ops_per_second() / 1e6,
                s.elapsed.as_nanos() as f64 / s.ops as f64
            ));
            push_percentiles(
                &mut out,
                &format!("ns per update (means of {} updates)", microbench::ARENA_GROUP_OPS),
                &s,
            )?;
            let slowest: Vec<String> = growth
                .slowest
                .iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1e6))
                .collect();
            out.push_str(&format!(
                "growth: {} new keys inserted in {:.2} s; slowest single inserts (µs): {}; {} over 1 ms\n",
                growth.keys,
                growth.elapsed.as_secs_f64(),
                slowest.join(" "),
                growth.over_1ms
            ));
            let b = microbench::arena_baseline(keys, ops, seed);
            out.push_str(&format!(
                "baseline (hashbrown + FxHash on the heap): {:.1} M updates/s, {:.1} ns/update mean\n",
                b.ops_per_second() / 1e6,
                b.elapsed.as_nanos() as f64 / b.ops as f64
            ));
            push_percentiles(&mut out, "ns per update", &b)?;
            crate::write_stdout(&out)
        }
        BenchCommand::Mesh {
            cpus,
            capacity,
            rows,
            messages,
            round_trips,
        } => {
            let cores: Vec<usize> = cpus
                .split(',')
                .map(|c| c.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow::anyhow!("--cpus must be two core numbers, e.g. 0,1 (got {cpus})"))?;
            ensure!(cores.len() == 2, "--cpus must name two cores, e.g. 0,1 (got {cpus})");
            ensure!(
                (1..=65_536).contains(&capacity),
                "--capacity must be between 1 and 65536"
            );
            ensure!((1..=1_048_576).contains(&rows), "--rows must be between 1 and 1048576");
            ensure!(messages >= 100, "--messages must be at least 100");
            ensure!(round_trips >= 1, "--round-trips must be at least 1");
            let pair = (cores[0], cores[1]);
            let t = microbench::mesh_throughput(pair, capacity, rows, messages)?;
            let mut out = String::new();
            out.push_str(&format!(
                "mesh throughput: cores {}->{}, capacity {capacity}, {rows} rows/message: {:.2} M messages/s, {:.1} M rows/s\n",
                pair.0,
                pair.1,
                t.ops_per_second() / 1e6,
                t.ops_per_second() * rows as f64 / 1e6
            ));
            push_percentiles(&mut out, "ns per message (means over each 1% of the run)", &t)?;
            let r = microbench::mesh_round_trip(pair, round_trips)?;
            out.push_str(&format!(
                "mesh round trip: cores {}<->{}, {round_trips} round trips\n",
                pair.0, pair.1
            ));
            push_percentiles(&mut out, "ns per round trip", &r)?;
            crate::write_stdout(&out)
        }
    }
}

fn jitter(cpu: usize, duration: u64) -> Result<()> {
    ensure!(
        (1..=crate::query_bench::DURATION_S_MAX).contains(&duration),
        "--duration must be between 1 and {} seconds",
        crate::query_bench::DURATION_S_MAX
    );
    let j = microbench::jitter(cpu, std::time::Duration::from_secs(duration))?;
    let secs = j.elapsed.as_secs_f64();
    let count_over = |ns: u64| j.stalls_ns.iter().filter(|&&g| g > ns).count() as f64 / secs;
    let mut out = format!(
        "jitter: core {cpu}, {secs:.1} s spinning, {} clock reads; stalls over 1 µs: {:.0}/s, over 10 µs: {:.0}/s, \
         over 100 µs: {:.1}/s, longest {:.1} µs; the core was away {:.3}% of the time\n",
        j.reads,
        count_over(1_000),
        count_over(10_000),
        count_over(100_000),
        j.stalls_ns.iter().copied().max().unwrap_or(0) as f64 / 1e3,
        j.stalled_share() * 100.0
    );
    out.push_str("  wait of an event arriving at a random moment (µs):");
    for (name, q) in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p99.9", 0.999),
        ("p99.99", 0.9999),
    ] {
        out.push_str(&format!(" {name} {:.1}", j.delay_ns_at(q) as f64 / 1e3));
    }
    out.push('\n');
    crate::write_stdout(&out)
}

fn push_percentiles(out: &mut String, what: &str, s: &Samples) -> Result<()> {
    let mut h = Histogram::<u64>::new(3)?;
    for &v in &s.samples_ns {
        h.record(v.max(1))?;
    }
    out.push_str(&format!(
        "  {what}: p50 {} p90 {} p99 {} p99.9 {} max {} ({} samples)\n",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    ));
    Ok(())
}
