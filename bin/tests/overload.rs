//! `laminar serve` under more input than it can take: a subscriber that
//! never reads under a flood, connections pushing at once (served in
//! turn), and a shard on a busy core (the source slows instead of memory
//! growing). The last two measure CPU shares, so they run alone among
//! this file's servers (`harness::exclusive`).
//!
//! Every wait is on an event or a polled counter, bounded by a generous
//! deadline that only a hang reaches.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

mod common;
#[path = "common/serve.rs"]
mod harness;

use harness::*;

/// Overload: four clients send as fast as loopback allows into a query
/// that matches a regular expression against a long string built from
/// every line, so intake is several times faster than processing; a
/// subscriber of the echo stream never reads. The inbox limit stops the sockets being
/// read (TCP slows the clients), the subscriber is dropped, memory stays
/// bounded, and every line is acknowledged and counted.
#[test]
fn an_overload_with_a_stalled_subscriber_stays_bounded_and_loses_nothing() {
    let dir = tempdir();
    // A regular expression over 8 KB per line: a few microseconds.
    let sql = format!(
        "CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'tcp', port = '0', format = 'csv');
         CREATE STREAM echo AS SELECT auction, price * 2 AS doubled, ts FROM bid;
         CREATE STREAM heavy AS SELECT auction, COUNT(*) AS bids, SUM(price) AS total, window_start
         FROM TUMBLE(bid, ts, INTERVAL '10' SECOND)
         WHERE regexp_match(concat(CAST(price AS VARCHAR), 'x', CAST(auction AS VARCHAR), '{}z'),
               '^[0-9]+x[0-9]+(y|q)+[a-z]$')
         GROUP BY auction, window_start, window_end;
         CREATE SINK echo_tcp FROM echo WITH (connector = 'tcp', port = '0');
         CREATE SINK heavy_file FROM heavy WITH (connector = 'file', path = 'out/heavy.csv', format = 'csv');\n",
        "y".repeat(8000)
    );
    let sql = sql.as_str();
    write_config(
        dir.path(),
        sql,
        "[limits]\ninbox_bytes_max = 262144\nsubscriber_buffer_bytes = 65536\n",
    );
    let server = Server::start(dir.path());
    // Connected, and never reading.
    let stalled = TcpStream::connect(server.addr("echo_tcp")).unwrap();
    let until = Instant::now() + DEADLINE;
    while metric(&server.get("/metrics").1, "laminar_sink_subscribers{sink=\"echo_tcp\"}") < 1.0 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    let (lines, _) = bids(200_000, 3);
    let started = Instant::now();
    ingest_parallel(&server, &lines, 4);
    let took = started.elapsed();
    let (_, metrics) = server.get("/metrics");
    assert_eq!(metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"), 200_000.0);
    assert_eq!(
        metric(&metrics, "laminar_sink_subscribers_dropped_total{sink=\"echo_tcp\"}"),
        1.0
    );
    // Published every 100 ms: a last look after the counters settle.
    std::thread::sleep(Duration::from_millis(150));
    let waits = metric(
        &server.get("/metrics").1,
        "laminar_source_backpressure_waits_total{source=\"bid\"}",
    );
    assert!(waits > 0.0, "the inbox never filled: no overload");
    let peak = peak_rss_bytes(server.child.id());
    drop(stalled);
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
    // 200,000 lines (8 MB) went through a full inbox of 256 KiB; the
    // engine's own footprint (two executors, their io_uring memory, the
    // allocator's arenas) is the bulk of this bound.
    assert!(peak < 96 << 20, "peak RSS {} MiB", peak >> 20);
    eprintln!(
        "overload: 200,000 lines in {took:?} ({:.0} lines/s), {waits} backpressure waits, peak RSS {} MiB",
        200_000.0 / took.as_secs_f64(),
        peak >> 20
    );
}

/// Makes the kernel keep little of what `s` sends (so what a client has
/// written is close to what the server has read).
fn small_send_buffer(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let bytes: libc::c_int = 16 << 10;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int of the
    // size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

#[test]
fn connections_pushing_at_once_are_served_fairly() {
    const CONNECTIONS: usize = 4;
    let _alone = exclusive();
    let dir = tempdir();
    write_config(dir.path(), &serve_sql(), "[limits]\ninbox_bytes_max = 1048576\n");
    let server = Server::start(dir.path());
    // 8 M lines (176 MB): what the kernel buffers for a connection (its
    // socket's receive buffer grows with how fast it was read, up to
    // megabytes) must be small beside what it sent by the first quarter,
    // or the clients' counts measure the buffers, not the server.
    let (lines, last) = bids(8_000_000, 11);
    let parts: Vec<Vec<u8>> = (0..CONNECTIONS)
        .map(|c| {
            let mut text = Vec::new();
            for l in lines.iter().skip(c).step_by(CONNECTIONS) {
                text.extend_from_slice(l.as_bytes());
                text.push(b'\n');
            }
            if c == 0 {
                text.extend_from_slice(closer(last).as_bytes());
                text.push(b'\n');
            }
            text
        })
        .collect();
    drop(lines);
    let total: usize = parts.iter().map(Vec::len).sum();
    let streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let s = TcpStream::connect(server.addr("bid")).unwrap();
            small_send_buffer(&s);
            s
        })
        .collect();
    let until = Instant::now() + DEADLINE;
    while metric(&server.get("/metrics").1, "laminar_source_connections{source=\"bid\"}") < CONNECTIONS as f64 {
        assert!(Instant::now() < until, "connections not seen open");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>> = std::sync::Arc::new(
        (0..CONNECTIONS)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
    );
    let handles: Vec<_> = streams
        .into_iter()
        .zip(parts)
        .enumerate()
        .map(|(c, (mut s, part))| {
            let sent = std::sync::Arc::clone(&sent);
            std::thread::spawn(move || {
                for chunk in part.chunks(16 << 10) {
                    s.write_all(chunk).unwrap();
                    sent[c].fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                }
                s.shutdown(Shutdown::Write).unwrap();
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                answer
            })
        })
        .collect();
    // At each quarter of the push, what each connection has sent.
    let mut quarters = Vec::new();
    while quarters.len() < 3 {
        let now: Vec<usize> = sent
            .iter()
            .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        if now.iter().sum::<usize>() * 4 >= total * (quarters.len() + 1) {
            quarters.push(now);
        } else {
            assert!(Instant::now() < until, "the push did not finish");
            // A sample of the senders' counters, not a synchronisation.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    for h in handles {
        let answer = h.join().unwrap();
        assert!(answer.starts_with("OK "), "{answer}");
    }
    assert_eq!(
        metric(&server.get("/metrics").1, "laminar_source_rows_total{source=\"bid\"}"),
        8_000_001.0
    );
    // Without a slow shard, memory stays near the engine's own footprint.
    let peak = peak_rss_bytes(server.child.id());
    let (status, log) = server.stop();
    assert!(status.success(), "{}", log.join("\n"));
    eprintln!(
        "bytes sent per connection at each quarter of the push: {quarters:?}; peak RSS {} MiB",
        peak >> 20
    );
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
    for (q, at) in quarters.iter().enumerate() {
        let mean = at.iter().sum::<usize>() as f64 / CONNECTIONS as f64;
        let least = *at.iter().min().unwrap() as f64;
        assert!(
            least >= 0.5 * mean,
            "at quarter {} of the push a connection had sent {least} bytes, the mean {mean:.0}: {at:?}",
            q + 1
        );
    }
}

/// A thread of this process spinning on one core until dropped: another
/// tenant taking half of the core a shard runs on.
struct Hog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hog {
    fn on_cpu(cpu: usize) -> Hog {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes
            // within it, and sched_setaffinity(0, …) pins this thread.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        Hog {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_shard_on_a_busy_core_slows_the_source_instead_of_filling_memory() {
    let _alone = exclusive();
    let dir = tempdir();
    let sql = source_sql("connector = 'tcp', port = '0'")
        + "CREATE STREAM per_key AS SELECT auction, COUNT(*) AS n, SUM(price) AS s FROM bid GROUP BY auction;
           CREATE SINK per_key_file FROM per_key WITH (connector = 'file', path = 'out/per_key.csv', format = 'csv');\n";
    const HELD_BYTES_MAX: usize = 8 << 20;
    write_config(
        dir.path(),
        &sql,
        &format!("[limits]\ninbox_bytes_max = 1048576\nheld_bytes_max = {HELD_BYTES_MAX}\n"),
    );
    let server = Server::start(dir.path());
    // Shard 1 runs on the second usable core: share it with a spinner.
    let cpus = laminar_reactor::runner::usable_cpus();
    let _hog = (cpus.len() > 1).then(|| Hog::on_cpu(cpus[1]));
    let (lines, last) = bids(2_000_000, 5);
    let checkpoints_before = metric(&server.get("/metrics").1, "laminar_checkpoints_total");
    let started = Instant::now();
    let mut all = lines;
    all.push(closer(last));
    ingest_parallel(&server, &all, 4);
    let took = started.elapsed();
    let metrics = server.get("/metrics").1;
    assert_eq!(
        metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"),
        2_000_001.0
    );
    let checkpoints = metric(&metrics, "laminar_checkpoints_total") - checkpoints_before;
    let held_peak = metric(&metrics, "laminar_shard_held_bytes_peak{shard=\"0\"}");
    let stalled = metric(&metrics, "laminar_shard_stall_seconds_total{shard=\"1\"}");
    let peak = peak_rss_bytes(server.child.id());
    let (status, log) = server.stop();
    assert!(status.success(), "{}", log.join("\n"));
    eprintln!(
        "busy core: 2,000,001 lines in {took:?}, {checkpoints} checkpoints, held bytes peak {held_peak}, peak RSS {} MiB",
        peak >> 20
    );
    // One batch's rows (and their changelog pairs) may land after the
    // last look; nothing like the hundreds of MiB an unbounded wait held.
    let bound = (HELD_BYTES_MAX + (4 << 20)) as f64;
    assert!(
        held_peak <= bound,
        "{held_peak} bytes held behind barriers, bound {bound}"
    );
    assert!(
        checkpoints >= (took.as_secs_f64() / 2.0).floor(),
        "{checkpoints} checkpoints in {took:?}: one at least every 2 s"
    );
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
    assert_eq!(stalled, 0.0, "shard 1 made no progress for 2 s with messages waiting");
}
