//! Microbenchmarks of the reactor's parts, behind `laminar bench arena`,
//! `laminar bench mesh` and `laminar bench jitter`: what one state update
//! and one mesh message cost, measured on the real types (`KeyedState`,
//! the mesh channels, pinned glommio executors), not on stand-ins; and how
//! often the machine itself takes a pinned core away, the floor under any
//! latency figure.
//!
//! Each returns raw samples; the binary turns them into HDR percentiles.
//! Inputs come from a seeded xorshift generator, so two runs do the same
//! work.

use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use laminar_exec::state::KeyedState;
use laminar_exec::types::Value;

use laminar_reactor::mesh;

use crate::BenchError;

/// What a microbenchmark measured.
#[derive(Debug, Clone)]
pub struct Samples {
    /// Operations (updates, messages, round trips) measured.
    pub ops: u64,
    pub elapsed: Duration,
    /// Nanoseconds per sample (see each benchmark for what a sample is).
    pub samples_ns: Vec<u64>,
}

impl Samples {
    pub fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Operations timed together per arena sample: one `Instant` pair costs
/// about as much as an update, so each sample is the mean of a group.
pub const ARENA_GROUP_OPS: usize = 256;

/// The accumulators of one group: COUNT, SUM, MIN, MAX.
type Accs = [i64; 4];

const ACCS_EMPTY: Accs = [0, 0, i64::MAX, i64::MIN];

fn accumulate(acc: &mut Accs, price: i64) {
    acc[0] += 1;
    acc[1] += price;
    acc[2] = acc[2].min(price);
    acc[3] = acc[3].max(price);
}

/// Runs `ops` updates (key, price) of random existing keys through
/// `update` and times them in groups.
fn drive_updates(keys: usize, ops: usize, seed: u64, mut update: impl FnMut(&[Value], i64)) -> Samples {
    let mut key = [Value::Int(0)];
    let mut rng = seed | 1;
    let mut samples_ns = Vec::with_capacity(ops / ARENA_GROUP_OPS + 1);
    let started = Instant::now();
    let mut done = 0;
    while done < ops {
        let n = ARENA_GROUP_OPS.min(ops - done);
        let t = Instant::now();
        for _ in 0..n {
            let r = xorshift(&mut rng);
            let price = (r >> 40) as i64;
            key[0] = Value::Int((r % keys as u64) as i64 * 7919);
            update(&key, price);
        }
        samples_ns.push(t.elapsed().as_nanos() as u64 / n as u64);
        done += n;
    }
    Samples {
        ops: ops as u64,
        elapsed: started.elapsed(),
        samples_ns,
    }
}

fn bench_key(k: usize) -> [Value; 1] {
    [Value::Int(k as i64 * 7919)]
}

/// Keyed-state updates: `keys` groups (a BIGINT key, four i64
/// accumulators, as a windowed COUNT/SUM/MIN/MAX keeps), then `ops`
/// lookups of random existing keys, each updating its accumulators. A
/// sample is the mean time of one update over `ARENA_GROUP_OPS` updates.
/// How filling a keyed state with new keys went, one insert at a time:
/// the stalls of growth (the arenas' resizes, the index's rebuilds, page
/// faults) are what a shard's latency sees of a growing state.
#[derive(Debug, Clone)]
pub struct Growth {
    pub keys: usize,
    pub elapsed: Duration,
    /// The slowest single inserts, slowest first (at most five).
    pub slowest: Vec<Duration>,
    /// Inserts that took over 1 ms.
    pub over_1ms: usize,
}

pub fn arena(keys: usize, ops: usize, seed: u64) -> (Samples, Growth) {
    assert!(keys > 0 && ops > 0);
    let mut state: KeyedState<Accs> = KeyedState::new(keys + 1);
    let mut slowest: Vec<Duration> = Vec::new();
    let mut over_1ms = 0;
    let filling = Instant::now();
    for k in 0..keys {
        let key = bench_key(k);
        let started = Instant::now();
        state
            .get_or_insert_with(&key, 0, "bench", || ACCS_EMPTY)
            .expect("under the limit");
        let took = started.elapsed();
        if took > Duration::from_millis(1) {
            over_1ms += 1;
        }
        if slowest.len() < 5 || took > slowest[4] {
            slowest.push(took);
            slowest.sort_unstable_by(|a, b| b.cmp(a));
            slowest.truncate(5);
        }
    }
    let growth = Growth {
        keys,
        elapsed: filling.elapsed(),
        slowest,
        over_1ms,
    };
    let samples = drive_updates(keys, ops, seed, |key, price| {
        let acc = state
            .get_or_insert_with(key, 0, "bench", || ACCS_EMPTY)
            .expect("under the limit");
        accumulate(acc, price);
    });
    assert_eq!(state.len(), keys);
    (samples, growth)
}

/// The same workload as `arena` on a `hashbrown::HashMap` with FxHash on
/// the heap: the baseline the arena replaced.
pub fn arena_baseline(keys: usize, ops: usize, seed: u64) -> Samples {
    use hashbrown::hash_map::EntryRef;
    assert!(keys > 0 && ops > 0);
    let mut map: hashbrown::HashMap<Box<[Value]>, Accs, fxhash::FxBuildHasher> = hashbrown::HashMap::default();
    for k in 0..keys {
        map.insert(bench_key(k).to_vec().into_boxed_slice(), ACCS_EMPTY);
    }
    let samples = drive_updates(keys, ops, seed, |key, price| {
        let acc = match map.entry_ref(key) {
            EntryRef::Occupied(o) => o.into_mut(),
            EntryRef::Vacant(v) => v.insert(ACCS_EMPTY),
        };
        accumulate(acc, price);
    });
    assert_eq!(map.len(), keys);
    samples
}

fn executor<T: Send + 'static>(
    name: &str,
    cpu: usize,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> Result<glommio::ExecutorJoinHandle<T>, BenchError> {
    LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(name)
        .io_memory(512 << 10)
        .spin_before_park(laminar_reactor::shard::SPIN_BEFORE_PARK)
        .spawn(move || async move { f().await })
        .map_err(|e| BenchError::Executor {
            cpu,
            reason: e.to_string(),
        })
}

/// Mesh throughput: executor on `cpus.0` sends `messages` messages of
/// `rows` u64 values each (a batch, allocated per message as exchange
/// batches are) through a channel of `capacity` messages to an executor on
/// `cpus.1`, which sums them. A sample is the time per message over each
/// 1% of the run.
pub fn mesh_throughput(
    cpus: (usize, usize),
    capacity: usize,
    rows: usize,
    messages: u64,
) -> Result<Samples, BenchError> {
    assert!(capacity > 0 && rows > 0 && messages >= 100);
    let (tx, rx) = mesh::channel::<Vec<u64>>(capacity);
    let started = Instant::now();
    let sender = executor("bench-mesh-send", cpus.0, move || {
        Box::pin(async move {
            for i in 0..messages {
                let batch = vec![i; rows];
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
        })
    })?;
    let receiver = executor("bench-mesh-recv", cpus.1, move || {
        Box::pin(async move {
            let step = messages / 100;
            let mut samples = Vec::with_capacity(101);
            let (mut n, mut sum, mut t) = (0u64, 0u64, Instant::now());
            while let Some(batch) = rx.recv().await {
                sum = sum.wrapping_add(batch[0]).wrapping_add(batch.len() as u64);
                n += 1;
                if n % step == 0 {
                    samples.push(t.elapsed().as_nanos() as u64 / step);
                    t = Instant::now();
                }
            }
            (n, sum, samples)
        })
    })?;
    sender.join().map_err(|e| BenchError::Thread(e.to_string()))?;
    let (n, sum, samples_ns) = receiver.join().map_err(|e| BenchError::Thread(e.to_string()))?;
    let elapsed = started.elapsed();
    let expected = (0..messages).fold(0u64, |s, i| s.wrapping_add(i).wrapping_add(rows as u64));
    assert_eq!((n, sum), (messages, expected), "every message arrives once");
    Ok(Samples {
        ops: n,
        elapsed,
        samples_ns,
    })
}

/// Mesh round trip: a message from `cpus.0` to `cpus.1` and back, one at a
/// time, so every message finds the other side parked and pays the full
/// cross-core wake. A sample is one round trip.
pub fn mesh_round_trip(cpus: (usize, usize), rounds: u64) -> Result<Samples, BenchError> {
    assert!(rounds > 0);
    let (ping_tx, ping_rx) = mesh::channel::<u64>(1);
    let (pong_tx, pong_rx) = mesh::channel::<u64>(1);
    let started = Instant::now();
    let echo = executor("bench-mesh-echo", cpus.1, move || {
        Box::pin(async move {
            while let Some(v) = ping_rx.recv().await {
                if pong_tx.send(v).await.is_err() {
                    break;
                }
            }
        })
    })?;
    let driver = executor("bench-mesh-ping", cpus.0, move || {
        Box::pin(async move {
            let mut samples = Vec::with_capacity(rounds as usize);
            for i in 0..rounds {
                let t = Instant::now();
                if ping_tx.send(i).await.is_err() {
                    break;
                }
                match pong_rx.recv().await {
                    Some(v) if v == i => samples.push(t.elapsed().as_nanos() as u64),
                    _ => break,
                }
            }
            samples
        })
    })?;
    let samples_ns = driver.join().map_err(|e| BenchError::Thread(e.to_string()))?;
    echo.join().map_err(|e| BenchError::Thread(e.to_string()))?;
    let elapsed = started.elapsed();
    if samples_ns.len() as u64 != rounds {
        return Err(BenchError::Incomplete(format!(
            "{} of {rounds} round trips completed",
            samples_ns.len()
        )));
    }
    Ok(Samples {
        ops: rounds,
        elapsed,
        samples_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmarks_run_and_count_what_they_did() {
        let (a, growth) = arena(1000, 10_000, 1);
        assert_eq!((growth.keys, growth.slowest.len()), (1000, 5));
        assert!(growth.slowest.windows(2).all(|w| w[0] >= w[1]), "slowest first");
        assert_eq!(a.ops, 10_000);
        assert_eq!(a.samples_ns.len(), 10_000usize.div_ceil(ARENA_GROUP_OPS));
        let m = mesh_throughput((0, 0), 16, 8, 1000).expect("runs");
        assert_eq!(m.ops, 1000);
        assert_eq!(m.samples_ns.len(), 100);
        let r = mesh_round_trip((0, 0), 100).expect("runs");
        assert_eq!(r.samples_ns.len(), 100);
    }
}

/// What `jitter` saw: every stall (a gap between two consecutive clock
/// reads of a spinning, pinned thread) longer than `JITTER_STALL_NS_MIN`.
#[derive(Debug, Clone)]
pub struct Jitter {
    pub elapsed: Duration,
    pub reads: u64,
    pub stalls_ns: Vec<u64>,
}

/// A gap between two clock reads longer than this is a stall (a read
/// takes about 20 ns).
pub const JITTER_STALL_NS_MIN: u64 = 1_000;

impl Jitter {
    /// The share of the time the spinning thread did not run.
    pub fn stalled_share(&self) -> f64 {
        self.stalls_ns.iter().sum::<u64>() as f64 / self.elapsed.as_nanos().max(1) as f64
    }

    /// The delay an event arriving at a uniformly random moment waits
    /// for the core, at quantile `q`: it waits `x` or more when it lands
    /// in a stall with more than `x` left, which happens with probability
    /// `sum(max(0, g - x)) / elapsed`. An engine that cost nothing would
    /// still show these latencies here.
    pub fn delay_ns_at(&self, q: f64) -> u64 {
        let total = self.elapsed.as_nanos().max(1) as f64;
        let over = |x: u64| self.stalls_ns.iter().map(|&g| g.saturating_sub(x)).sum::<u64>() as f64 / total;
        let (mut lo, mut hi) = (0u64, self.stalls_ns.iter().copied().max().unwrap_or(0));
        if over(0) <= 1.0 - q {
            return 0;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if over(mid) > 1.0 - q {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// Spins on core `cpu` for `duration`, reading the monotonic clock, and
/// records every stall.
pub fn jitter(cpu: usize, duration: Duration) -> Result<Jitter, BenchError> {
    let thread = executor("bench-jitter", cpu, move || {
        Box::pin(async move {
            let mut stalls_ns = Vec::new();
            let started = Instant::now();
            let mut last = started;
            let mut reads = 0u64;
            loop {
                let now = Instant::now();
                reads += 1;
                let gap = now.duration_since(last).as_nanos() as u64;
                if gap > JITTER_STALL_NS_MIN {
                    stalls_ns.push(gap);
                }
                last = now;
                if reads.is_multiple_of(1024) && now.duration_since(started) >= duration {
                    return Jitter {
                        elapsed: now.duration_since(started),
                        reads,
                        stalls_ns,
                    };
                }
            }
        })
    })?;
    thread.join().map_err(|e| BenchError::Thread(e.to_string()))
}

#[cfg(test)]
mod jitter_tests {
    use super::*;

    #[test]
    fn delays_follow_from_the_stalls() {
        // One 100 µs stall in a second: 0.01% of arrivals wait at all.
        let j = Jitter {
            elapsed: Duration::from_secs(1),
            reads: 1,
            stalls_ns: vec![100_000],
        };
        assert!((j.stalled_share() - 1e-4).abs() < 1e-12);
        assert_eq!(j.delay_ns_at(0.99), 0);
        // 1e-5 of arrivals wait more than 90 µs.
        let d = j.delay_ns_at(0.99999);
        assert!((89_000..=91_000).contains(&d), "{d}");
    }
}

/// What `wal` measured.
pub struct WalBench {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// fdatasync time of each group commit, ns.
    pub sync_ns: hdrhistogram::Histogram<u64>,
    /// Whole append-to-durable time of each group (its first append to
    /// the end of its sync), ns.
    pub group_ns: hdrhistogram::Histogram<u64>,
}

/// WAL appends on one pinned executor into `dir`: `records` records of
/// `record_bytes` payload, a group commit every `group_bytes` (the
/// writer's own rule), the way a shard logs accepted rows.
pub fn wal(
    dir: &std::path::Path,
    cpu: usize,
    record_bytes: usize,
    records: u64,
    group_bytes: usize,
) -> Result<WalBench, BenchError> {
    use laminar_persistence::wal::{RecordKind, WalConfig, WalWriter};
    assert!(records > 0 && record_bytes > 0);
    let config = WalConfig {
        group_commit_bytes: group_bytes,
        segment_bytes_max: 256 << 20,
        ..WalConfig::new(dir, 0)
    };
    let handle = executor("bench-wal", cpu, move || {
        Box::pin(async move {
            let mut wal = WalWriter::open(config, 0, laminar_persistence::Faults::none()).await?;
            wal.sync_latency = Some(laminar_reactor::pace::latency_histogram());
            let mut group_ns = laminar_reactor::pace::latency_histogram();
            let payload = vec![0x5au8; record_bytes];
            let started = Instant::now();
            let mut group_started = Instant::now();
            let mut synced = wal.synced_lsn();
            for i in 0..records {
                wal.append(i / 1000, RecordKind::Rows, &payload).await?;
                if wal.synced_lsn() != synced {
                    synced = wal.synced_lsn();
                    group_ns.saturating_record(group_started.elapsed().as_nanos() as u64);
                    group_started = Instant::now();
                }
            }
            let end = wal.commit().await?;
            group_ns.saturating_record(group_started.elapsed().as_nanos() as u64);
            let elapsed = started.elapsed();
            let sync_ns = wal.sync_latency.take().expect("set above");
            wal.close().await?;
            Ok::<_, laminar_persistence::PersistError>(WalBench {
                records,
                bytes: end,
                elapsed,
                sync_ns,
                group_ns,
            })
        })
    })?;
    Ok(handle.join().map_err(|e| BenchError::Thread(e.to_string()))??)
}
