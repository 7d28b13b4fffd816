//! The console (`GET /` on `laminar serve`'s admin address) end to end:
//! the page is served from the binary with no external resources, and in
//! headless Chromium (Debian's `chromium`, which `scripts/test.sh`
//! installs; without it the browser half is skipped with a message) it
//! draws the pipeline with the same figures `/metrics` reports, while a
//! screenshot is kept as a test artefact (`console.png` in cargo's
//! temporary directory for integration tests).

use std::path::Path;
use std::process::Command;

mod common;
#[path = "common/serve.rs"]
mod harness;

use harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium on `url` with `args`, its own fresh profile, the
/// network features that would reach out to the internet off; None when
/// it cannot start here.
fn chromium(url: &str, args: &[&str]) -> Option<String> {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args([
            "90",
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "chromium did not run ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A count as the console writes it (`fmt` in console.html).
fn figure(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1} k", n / 1e3)
    } else {
        format!("{}", n.round())
    }
}

#[test]
fn the_console_draws_the_pipeline_with_the_figures_of_metrics() {
    let dir = tempdir();
    write_config(dir.path(), &serve_sql(), "");
    let server = Server::start(dir.path());
    let (lines, _) = bids(6_000, 4);
    ingest_parallel(&server, &lines, 2);

    let (code, html) = server.get("/");
    assert_eq!(code, 200);
    assert!(html.contains("<svg id=\"graph\""), "{html}");
    for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(
            !html.contains(external),
            "the console loads nothing from elsewhere: {external}"
        );
    }

    if !Path::new(CHROMIUM).exists() {
        eprintln!("skipping the browser half: no {CHROMIUM} (scripts/test.sh installs Debian's chromium)");
        return;
    }
    let url = format!("http://{}/", server.addr("admin"));
    let Some(dom) = chromium(&url, &["--dump-dom"]) else {
        eprintln!("skipping the browser half: chromium could not start");
        return;
    };
    let (_, metrics) = server.get("/metrics");
    // Figures that no longer move once the input is in: what was read,
    // what each operator took in, the shards.
    let rows = metric(&metrics, "laminar_source_rows_total{source=\"bid\"}");
    assert_eq!(rows, 6_000.0);
    assert!(
        dom.contains(&format!("data-name=\"bid\" data-rows=\"{rows}\"")),
        "the source's rows as /metrics has them:\n{dom}"
    );
    for (node, stream) in [(0, "totals"), (1, "sessions")] {
        let rows_in = metric(
            &metrics,
            &format!("laminar_stream_rows_in_total{{stream=\"{stream}\",node=\"{node}\"}}"),
        );
        assert!(
            dom.contains(&format!("in {} · out", figure(rows_in))),
            "node {node}'s rows in ({rows_in}) as /metrics has them:\n{dom}"
        );
    }
    for sink in ["totals_file", "sessions_file", "totals_tcp"] {
        assert!(
            dom.contains(&format!("data-name=\"{sink}\"")),
            "sink {sink} drawn:\n{dom}"
        );
    }
    assert_eq!(dom.matches("data-shard=").count(), 2, "a row per shard:\n{dom}");
    assert!(dom.contains(">running<"), "{dom}");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &["--window-size=1000,620", &format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture");
    eprintln!("console screenshot: {}", shot.display());
    let (exit, _) = server.stop();
    assert!(exit.success());
}
