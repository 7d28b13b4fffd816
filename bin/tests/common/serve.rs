//! What `laminar serve`'s end-to-end tests share (`serve.rs`,
//! `overload.rs`): a server started in a temporary directory and waited on
//! by its stderr, configs, bid lines, clients, `/metrics` reads, and the
//! lock that lets CPU-share tests run alone. Each test file uses a part.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::common::Rng;

pub const BIN: &str = env!("CARGO_BIN_EXE_laminar");
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn source_sql(connector: &str) -> String {
    format!(
        "CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ({connector}, format = 'csv');
         CREATE STREAM totals AS
         SELECT auction, COUNT(*) AS bids, SUM(price) AS total, window_start, window_end
         FROM TUMBLE(bid, ts, INTERVAL '10' SECOND)
         GROUP BY auction, window_start, window_end;
         CREATE STREAM sessions AS
         SELECT auction, COUNT(*) AS n, window_start, window_end
         FROM SESSION(bid, ts, INTERVAL '1' SECOND)
         GROUP BY auction, window_start, window_end;
         CREATE SINK totals_file FROM totals WITH (connector = 'file', path = 'out/totals.csv', format = 'csv');
         CREATE SINK sessions_file FROM sessions WITH (connector = 'file', path = 'out/sessions.csv', format = 'csv');\n"
    )
}

/// The serve pipeline: a tcp source, file sinks, and a tcp sink of totals.
pub fn serve_sql() -> String {
    source_sql("connector = 'tcp', port = '0', dead_letter = 'out/bad.txt'")
        + "CREATE SINK totals_tcp FROM totals WITH (connector = 'tcp', port = '0');\n"
}

pub const CLOSER_AUCTION: u64 = 999_999;

/// `rows` bids as CSV lines in event order, each up to 1.5 s out of
/// order (less than the 2 s watermark delay: nothing is late however
/// the lines are spread over connections), and the last event time.
pub fn bids(rows: u64, seed: u64) -> (Vec<String>, i64) {
    let mut rng = Rng(seed);
    let base = 1_704_067_200_000i64; // 2024-01-01
    let mut last = 0;
    let lines = (0..rows)
        .map(|i| {
            let ts = base + i as i64 * 3 + 1500 - (rng.next() % 1500) as i64;
            last = last.max(ts);
            format!("{},{},{ts}", rng.next() % 40, rng.next() % 1000)
        })
        .collect();
    (lines, last)
}

/// A line far enough ahead to close every window of `bids` (its own
/// window stays open in serve and is dropped from `laminar run`'s
/// output before comparing).
pub fn closer(last: i64) -> String {
    format!("{CLOSER_AUCTION},0,{}", last + 60_000)
}

pub fn write_config(dir: &Path, sql: &str, extra: &str) {
    write_config_every(dir, sql, extra, 100);
}

/// A config whose checkpoints come every `checkpoint_ms`.
pub fn write_config_every(dir: &Path, sql: &str, extra: &str, checkpoint_ms: u64) {
    write_config_state(dir, sql, extra, checkpoint_ms, "");
}

/// The default config with every node's snapshot taken by a forked
/// process (`state.fork_snapshot_mb = 0`): the copy-on-write path under
/// live connections, WAL and subscribers.
pub fn write_config_forking(dir: &Path, sql: &str) {
    write_config_state(dir, sql, "", 100, "fork_snapshot_mb = 0\n");
}

pub fn write_config_state(dir: &Path, sql: &str, extra: &str, checkpoint_ms: u64, state_extra: &str) {
    std::fs::write(dir.join("pipeline.sql"), sql).unwrap();
    let config = format!(
        "[pipeline]\nfiles = ['pipeline.sql']\n\n[state]\ndir = 'state'\ncheckpoint_interval_ms = {checkpoint_ms}\n{state_extra}\n\
         [shards]\ncount = 2\n\n[listen]\nadmin = '127.0.0.1:0'\nsql = '127.0.0.1:0'\n{extra}"
    );
    std::fs::write(dir.join("laminar.toml"), config).unwrap();
}

/// Tests that measure CPU shares and progress over time (a spinner on a
/// shard's core, fairness between connections) run alone: every other
/// test's server holds a read guard while it runs.
pub static EXCLUSIVE: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    static HOLDS_EXCLUSIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs the calling test alone among this file's servers.
pub fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    let guard = EXCLUSIVE.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    HOLDS_EXCLUSIVE.with(|h| h.set(true));
    guard
}

pub struct Server {
    /// Held while the server runs, unless its test runs alone.
    _shared: Option<std::sync::RwLockReadGuard<'static, ()>>,
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything it printed on stderr so far.
    pub log: Vec<String>,
    addrs: HashMap<String, String>,
}

impl Server {
    /// Starts `laminar serve` in `dir` and waits for `ready`.
    pub fn start(dir: &Path) -> Server {
        Server::start_logging(
            dir,
            &std::env::var("LAMINAR_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
    }

    /// `start` with `LAMINAR_LOG` set to `filter`.
    pub fn start_logging(dir: &Path, filter: &str) -> Server {
        let shared = (!HOLDS_EXCLUSIVE.with(std::cell::Cell::get))
            .then(|| EXCLUSIVE.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut child = Command::new(BIN)
            .args(["serve", "--config", "laminar.toml"])
            .current_dir(dir)
            .env("LAMINAR_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            _shared: shared,
            child,
            lines: rx,
            log: Vec::new(),
            addrs: HashMap::new(),
        };
        server.wait_for("ready");
        for line in &server.log {
            // `listening: source bid tcp 127.0.0.1:PORT`
            if let Some(rest) = line.strip_prefix("listening: ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let key = if words[0] == "admin" || words[0] == "sql" {
                    words[0].to_string()
                } else {
                    words[1].to_string()
                };
                server.addrs.insert(key, words.last().unwrap().to_string());
            }
        }
        server
    }

    /// Takes in the stderr lines printed so far, without waiting.
    pub fn drain_log(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        &self.log
    }

    /// Waits for a stderr line containing `text`; panics with the log
    /// when the server exits or the deadline passes first.
    pub fn wait_for(&mut self, text: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            match self.lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {text:?}; stderr so far:\n{}", self.log.join("\n")),
            }
        }
    }

    pub fn addr(&self, name: &str) -> &str {
        &self.addrs[name]
    }

    /// Sends lines over one connection; returns the server's answer.
    pub fn ingest(&self, source: &str, lines: &[String]) -> String {
        ingest_to(self.addr(source), lines)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr("admin"), path)
    }

    /// SIGTERM, then the exit status and the rest of stderr.
    pub fn stop(mut self) -> (ExitStatus, Vec<String>) {
        // SAFETY: kill only sends a signal to our child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = wait_deadline(&mut self.child);
        self.log.extend(self.lines.try_iter());
        (status, self.log)
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

pub fn wait_deadline(child: &mut Child) -> ExitStatus {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "the server did not exit");
        // A poll of the child's state, not a synchronisation.
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn ingest_to(addr: &str, lines: &[String]) -> String {
    send_lines(TcpStream::connect(addr).unwrap(), lines)
}

/// Sends lines, half-closes, and returns the server's answer.
pub fn send_lines(mut s: TcpStream, lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    // A refused connection may be closed before this is sent: its
    // answer, read below, says why.
    let _ = s.write_all(text.as_bytes());
    let _ = s.shutdown(Shutdown::Write);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A metric's value from `/metrics` text.
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name_and_labels} in\n{text}"))
        .parse()
        .unwrap()
}

/// `laminar run` over `lines` (a file, in order) with the same queries;
/// returns the sorted rows of each file sink, the closer's rows removed.
pub fn reference(dir: &Path, lines: &[String]) -> Vec<Vec<String>> {
    let run = dir.join("reference");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("bids.csv"), lines.join("\n") + "\n").unwrap();
    std::fs::write(run.join("q.sql"), source_sql("connector = 'file', path = 'bids.csv'")).unwrap();
    let out = Command::new(BIN)
        .args(["run", "-q", "--shards", "2", "q.sql"])
        .current_dir(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ["out/totals.csv", "out/sessions.csv"]
        .iter()
        .map(|f| {
            sorted_rows(&run.join(f))
                .into_iter()
                .filter(|r| !r.starts_with(&format!("{CLOSER_AUCTION},")))
                .collect()
        })
        .collect()
}

pub fn sorted_rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows: Vec<String> = text.lines().skip(1).map(String::from).collect();
    rows.sort();
    rows
}

pub fn served_rows(dir: &Path) -> Vec<Vec<String>> {
    ["out/totals.csv", "out/sessions.csv"]
        .iter()
        .map(|f| sorted_rows(&dir.join(f)))
        .collect()
}

/// Sends `lines` over `connections` connections at once, dealt round
/// robin; every connection must be acknowledged with its counts. All
/// connections are open before any line is sent: a connection that
/// joins after the watermark has moved past its first lines would see
/// them judged late (as in any system whose partitions come and go).
pub fn ingest_parallel(server: &Server, lines: &[String], connections: usize) {
    let streams: Vec<TcpStream> = (0..connections)
        .map(|_| TcpStream::connect(server.addr("bid")).unwrap())
        .collect();
    let until = Instant::now() + DEADLINE;
    while metric(&server.get("/metrics").1, "laminar_source_connections{source=\"bid\"}") < connections as f64 {
        assert!(Instant::now() < until, "connections not seen open");
        std::thread::sleep(Duration::from_millis(5));
    }
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, stream)| {
            let part: Vec<String> = lines.iter().skip(c).step_by(connections).cloned().collect();
            std::thread::spawn(move || (part.len(), send_lines(stream, &part)))
        })
        .collect();
    for h in handles {
        let (n, answer) = h.join().unwrap();
        assert_eq!(answer, format!("OK {n} rows 0 malformed\n"));
    }
}

/// Compares sinks' sorted rows, showing only the rows that differ.
#[track_caller]
pub fn assert_same_rows(actual: &[Vec<String>], expected: &[Vec<String>]) {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        if a != e {
            let only_a: Vec<&String> = a.iter().filter(|r| !e.contains(r)).take(20).collect();
            let only_e: Vec<&String> = e.iter().filter(|r| !a.contains(r)).take(20).collect();
            panic!(
                "sink {i}: {} rows served, {} expected\nonly served: {only_a:#?}\nonly expected: {only_e:#?}",
                a.len(),
                e.len()
            );
        }
    }
    assert_eq!(actual.len(), expected.len());
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The peak resident set of a process, from /proc.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Clients that stream chunks of unique lines (`id,client,ts`), one
/// connection per chunk, each chunk sent again until it is acknowledged
/// (with a short back-off while the server cannot be reached): the load
/// of the kill and reload tests.
pub struct ChunkLoad {
    pub clients: usize,
    pub chunks: usize,
    pub lines: usize,
    /// Per client and chunk: how often it was sent.
    pub attempts: Vec<std::sync::Arc<Vec<std::sync::atomic::AtomicU32>>>,
    /// Connections that could not be made.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Chunks acknowledged, over all clients.
    pub done: std::sync::Arc<std::sync::atomic::AtomicU32>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl ChunkLoad {
    pub fn start(addr: &str, clients: usize, chunks: usize, lines: usize) -> ChunkLoad {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        let attempts: Vec<Arc<Vec<AtomicU32>>> = (0..clients)
            .map(|_| Arc::new((0..chunks).map(|_| AtomicU32::new(0)).collect()))
            .collect();
        let refused = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicU32::new(0));
        let handles = (0..clients)
            .map(|c| {
                let (addr, attempts) = (addr.to_string(), Arc::clone(&attempts[c]));
                let (refused, done) = (Arc::clone(&refused), Arc::clone(&done));
                std::thread::spawn(move || {
                    for chunk in 0..chunks {
                        let text: Vec<String> = (0..lines)
                            .map(|l| {
                                let id = ((c * chunks + chunk) * lines + l) as u64;
                                format!("{id},{c},{}", 1_704_067_200_000 + id as i64)
                            })
                            .collect();
                        let until = Instant::now() + DEADLINE;
                        loop {
                            attempts[chunk].fetch_add(1, Ordering::Relaxed);
                            let Ok(stream) = TcpStream::connect(&addr) else {
                                refused.fetch_add(1, Ordering::Relaxed);
                                assert!(Instant::now() < until, "the server never came back");
                                // A client's back-off while the server restarts.
                                std::thread::sleep(Duration::from_millis(5));
                                continue;
                            };
                            if send_lines(stream, &text).starts_with("OK ") {
                                break;
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        ChunkLoad {
            clients,
            chunks,
            lines,
            attempts,
            refused,
            done,
            handles,
        }
    }

    /// Waits for every client to have every chunk acknowledged.
    pub fn join(&mut self) {
        for h in self.handles.drain(..) {
            h.join().unwrap();
        }
    }

    /// How often each id appears in a CSV sink's text (id first).
    pub fn count(&self, text: &str) -> Vec<u32> {
        let mut seen = vec![0u32; self.clients * self.chunks * self.lines];
        for line in text.lines().skip(1) {
            seen[line.split(',').next().unwrap().parse::<usize>().unwrap()] += 1;
        }
        seen
    }

    /// Checks `seen` (from `count`): every line of every chunk at least
    /// once and never more often than its chunk was sent (so a chunk
    /// acknowledged at its first attempt exactly once). Returns how many
    /// chunks were sent again.
    #[track_caller]
    pub fn verify(&self, seen: &[u32], what: &str) -> usize {
        let mut retried = 0;
        for c in 0..self.clients {
            for chunk in 0..self.chunks {
                let sent = self.attempts[c][chunk].load(std::sync::atomic::Ordering::Relaxed);
                retried += usize::from(sent > 1);
                for l in 0..self.lines {
                    let n = seen[(c * self.chunks + chunk) * self.lines + l];
                    assert!(n >= 1, "line {l} of chunk {chunk} of client {c} lost ({what})");
                    assert!(
                        n <= sent,
                        "line {l} of chunk {chunk} of client {c}: {n} copies, sent {sent} times ({what})"
                    );
                }
            }
        }
        retried
    }
}
