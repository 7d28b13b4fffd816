//! `laminar serve`'s reload (SIGHUP) end to end, on loopback: a change
//! that a restart would refuse leaves the running pipeline as it was; an
//! added stream is taken in the same process, from a final checkpoint of
//! the old pipeline, with the source's listener kept (same address,
//! nothing refused); under load no acknowledged line is lost and no line
//! is written more often than it was sent. A restart on another shard
//! count moves the state after a clean stop, and is refused after a
//! crash (the WAL is per shard).

use std::sync::atomic::Ordering;

mod common;
#[path = "common/serve.rs"]
mod harness;

use harness::*;

fn sighup(server: &Server) {
    // SAFETY: kill only sends a signal to our child.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGHUP);
    }
}

const BIG: &str = "CREATE STREAM big AS SELECT auction, price FROM bid WHERE price > 900;
CREATE SINK big_file FROM big WITH (connector = 'file', path = 'out/big.csv', format = 'csv');\n";

#[test]
fn a_reload_takes_an_added_stream_keeps_listeners_and_refuses_a_changed_one() {
    let dir = tempdir();
    write_config(dir.path(), &serve_sql(), "");
    let mut server = Server::start(dir.path());
    let addr = server.addr("bid").to_string();
    let (lines, last) = bids(20_000, 5);
    let (first, second) = lines.split_at(10_000);
    ingest_parallel(&server, first, 2);

    // A window size changed: refused, the pipeline goes on untouched.
    std::fs::write(
        dir.path().join("pipeline.sql"),
        serve_sql().replace("INTERVAL '10' SECOND", "INTERVAL '20' SECOND"),
    )
    .unwrap();
    sighup(&server);
    server.wait_for("reload refused");
    let why = server.wait_for("refuse: stream totals");
    assert!(why.contains("INTERVAL '20' SECOND"), "{why}");
    let (_, metrics) = server.get("/metrics");
    assert_eq!(metric(&metrics, "laminar_reloads_total{outcome=\"refused\"}"), 1.0);
    assert_eq!(metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"), 10_000.0);

    // A stream added: taken, the source's address kept.
    std::fs::write(dir.path().join("pipeline.sql"), serve_sql() + BIG).unwrap();
    sighup(&server);
    server.wait_for("reloading: laminar.toml");
    server.wait_for("new: stream big starts with empty state");
    let relistened = server.wait_for("listening: source bid tcp");
    assert!(relistened.ends_with(&addr), "{relistened} (was {addr})");
    server.wait_for("ready (reloaded)");
    let (_, status) = server.get("/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["last_reload"]["outcome"], "accepted", "{status}");
    assert!(
        status["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stream"] == "big"),
        "{status}"
    );
    let (_, metrics) = server.get("/metrics");
    assert_eq!(metric(&metrics, "laminar_reloads_total{outcome=\"accepted\"}"), 1.0);

    ingest_parallel(&server, second, 2);
    assert_eq!(ingest_to(&addr, &[closer(last)]), "OK 1 rows 0 malformed\n");
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));

    // The kept streams: as one uninterrupted run over everything.
    let mut all = lines.clone();
    all.push(closer(last));
    assert_same_rows(&served_rows(dir.path()), &reference(dir.path(), &all));
    // The added one: the lines after the reload, and only those.
    let mut expected: Vec<String> = second
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse::<u64>().unwrap() > 900).then(|| format!("{},{}", f[0], f[1]))
        })
        .collect();
    expected.sort();
    assert_eq!(sorted_rows(&dir.path().join("out/big.csv")), expected);
}

#[test]
fn a_reload_under_load_loses_no_acknowledged_line() {
    let dir = tempdir();
    let sql = "CREATE SOURCE ev (id BIGINT NOT NULL, k BIGINT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'tcp', port = '0', format = 'csv');
         CREATE STREAM echo AS SELECT id, k, ts FROM ev;
         CREATE SINK echo_out FROM echo WITH (connector = 'file', path = 'out/echo.csv', format = 'csv');\n";
    write_config(dir.path(), sql, "");
    let mut server = Server::start(dir.path());
    let addr = server.addr("ev").to_string();
    let mut load = ChunkLoad::start(&addr, 3, 60, 1000);
    // The reload lands while lines flow: after a third of the chunks.
    while load.done.load(Ordering::Relaxed) < 60 {
        std::thread::yield_now();
    }
    std::fs::write(
        dir.path().join("pipeline.sql"),
        format!(
            "{sql}CREATE STREAM odd AS SELECT id FROM ev WHERE id % 2 = 1;
             CREATE SINK odd_out FROM odd WITH (connector = 'file', path = 'out/odd.csv', format = 'csv');\n"
        ),
    )
    .unwrap();
    sighup(&server);
    server.wait_for("ready (reloaded)");
    load.join();
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
    assert_eq!(
        load.refused.load(Ordering::Relaxed),
        0,
        "the source's listener stayed open through the reload"
    );
    let text = std::fs::read_to_string(dir.path().join("out/echo.csv")).unwrap();
    let seen = load.count(&text);
    let retried = load.verify(&seen, "reload");
    // The added stream saw the lines after the switch: odd ids, each at
    // most as often as it was sent, and some of them.
    let odd = std::fs::read_to_string(dir.path().join("out/odd.csv")).unwrap();
    let mut odd_seen = vec![0u32; seen.len()];
    for line in odd.lines().skip(1) {
        let id: usize = line.parse().unwrap();
        assert_eq!(id % 2, 1);
        odd_seen[id] += 1;
        assert!(odd_seen[id] <= seen[id], "id {id} more often in odd than in echo");
    }
    assert!(odd.lines().count() > 1, "the added stream wrote nothing");
    eprintln!("{retried} chunks sent again; {} odd lines", odd.lines().count() - 1);
}

#[test]
fn a_service_moves_to_another_shard_count_after_a_clean_stop_only() {
    let dir = tempdir();
    // No checkpoint but the final one of a stop: after a kill the WAL
    // holds everything since the last stop.
    write_config_every(dir.path(), &serve_sql(), "", 3_600_000);
    let (lines, last) = bids(30_000, 8);
    let set_shards = |n: usize| {
        let path = dir.path().join("laminar.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let at = text.find("count = ").unwrap();
        let end = at + text[at..].find('\n').unwrap();
        std::fs::write(&path, format!("{}count = {n}{}", &text[..at], &text[end..])).unwrap();
    };
    // 2 shards, then 1 after a clean stop, then 3.
    let server = Server::start(dir.path());
    ingest_parallel(&server, &lines[..10_000], 2);
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
    set_shards(1);
    let server = Server::start(dir.path());
    ingest_parallel(&server, &lines[10_000..20_000], 2);
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
    set_shards(3);
    let server = Server::start(dir.path());
    ingest_parallel(&server, &lines[20_000..], 2);
    // A crash leaves the WAL with batches after the checkpoint: another
    // shard count is refused then, the same one resumes.
    server.kill();
    set_shards(2);
    let out = std::process::Command::new("timeout")
        .args(["120", BIN, "serve", "--config", "laminar.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("WAL") && err.contains("start on 3 shard(s) again"),
        "{err}"
    );
    set_shards(3);
    let server = Server::start(dir.path());
    assert_eq!(server.ingest("bid", &[closer(last)]), "OK 1 rows 0 malformed\n");
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
    let mut all = lines.clone();
    all.push(closer(last));
    assert_same_rows(&served_rows(dir.path()), &reference(dir.path(), &all));
}
