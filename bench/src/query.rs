//! The query benchmark's harness (`laminar bench --query`): the built-in
//! Nexmark queries, what a run measured and how it is reported (HDR
//! percentiles, JSON fields, the `.hgrm` text and an SVG plot). The binary
//! (`bin/src/query_bench.rs`) parses the options, drives the paced runs
//! (`laminar_reactor::pace`) and prints.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use laminar_nexmark::{Generator, NexmarkConfig};
use laminar_reactor::RunSummary;

/// The queries shipped in `bench/queries/`, compiled in so the binary
/// needs no checkout.
pub const QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("../queries/q0.sql")),
    ("q1", include_str!("../queries/q1.sql")),
    ("q2", include_str!("../queries/q2.sql")),
    ("q3", include_str!("../queries/q3.sql")),
    ("q5", include_str!("../queries/q5.sql")),
    ("q7", include_str!("../queries/q7.sql")),
    ("q8", include_str!("../queries/q8.sql")),
];

/// What one run measured.
pub struct Measured {
    pub target_eps: Option<u64>,
    pub events: u64,
    /// From the start until the sources had read every event.
    pub read_elapsed: Duration,
    /// The whole run, including the final flush and shutdown.
    pub elapsed: Duration,
    pub result_rows: u64,
    pub behind_schedule: u64,
    pub latency_ns: Histogram<u64>,
    /// Open loop: how long each event waited to be read after its
    /// intended send time (empty in closed loop).
    pub read_delay_ns: Histogram<u64>,
    pub shard_busy: Vec<f64>,
    /// `--with-floor`: the host's own floor, measured on the first
    /// shard's core just before the run.
    pub floor: Option<Floor>,
}

/// The host's floor under every latency figure: what a spinning, pinned
/// core loses to the machine (see `micro::jitter`), as the wait of an
/// event arriving at a random moment.
pub struct Floor {
    pub cpu: usize,
    pub jitter: crate::micro::Jitter,
}

impl Floor {
    pub fn us_at(&self, q: f64) -> f64 {
        self.jitter.delay_ns_at(q) as f64 / 1e3
    }

    /// Stalls of the spinning core over `ns`, per second.
    pub fn stalls_per_s_over(&self, ns: u64) -> f64 {
        self.jitter.stalls_ns.iter().filter(|&&g| g > ns).count() as f64 / self.jitter.elapsed.as_secs_f64().max(1e-9)
    }

    /// The floor for a report line.
    pub fn text(&self) -> String {
        let mut out = format!(
            "  host floor (core {}, {:.1} s spinning just before the run; wait of an event arriving at a random moment, µs):",
            self.cpu,
            self.jitter.elapsed.as_secs_f64()
        );
        for (n, q) in PERCENTILES {
            let _ = write!(out, " {} {:.1}", n.replace('_', "."), self.us_at(*q));
        }
        let _ = write!(
            out,
            "; stalls over 10 µs: {:.0}/s, longest {:.1} µs",
            self.stalls_per_s_over(10_000),
            self.jitter.stalls_ns.iter().copied().max().unwrap_or(0) as f64 / 1e3
        );
        out
    }

    fn json(&self, out: &mut String) {
        let _ = write!(
            out,
            ",\"floor\":{{\"cpu\":{},\"seconds\":{:.3}",
            self.cpu,
            self.jitter.elapsed.as_secs_f64()
        );
        for (n, q) in PERCENTILES {
            let _ = write!(out, ",\"{n}_us\":{:.3}", self.us_at(*q));
        }
        let _ = write!(
            out,
            ",\"stalls_over_10us_per_s\":{:.1},\"longest_stall_us\":{:.1}}}",
            self.stalls_per_s_over(10_000),
            self.jitter.stalls_ns.iter().copied().max().unwrap_or(0) as f64 / 1e3
        );
    }
}

impl Measured {
    /// Open loop: the rate events were sent at. Closed loop: events over
    /// the whole run, final flush included, since that is work the events
    /// caused (in a short closed-loop run event time moves too little for
    /// windows to close before the end).
    pub fn throughput_eps(&self) -> f64 {
        let time = match self.target_eps {
            Some(_) => self.read_elapsed,
            None => self.elapsed,
        };
        self.events as f64 / time.as_secs_f64().max(1e-9)
    }

    /// Why a run has no latency samples, for the report: no result row
    /// reached a sink while events were read (a windowed query whose
    /// windows close only after the run's end, whose flush is not a
    /// result of any event).
    pub const NO_SAMPLES: &'static str = "no samples: no result reached a sink while events were read \
         (windows that close only at the end of the run are not measured); run longer, \
         e.g. --duration 30";

    pub fn us_at(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1e3
    }

    pub fn json_fields(&self, out: &mut String) {
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
        // No samples: the percentiles are unknown, not 0.
        let samples = !self.latency_ns.is_empty();
        for (name, q) in PERCENTILES {
            match samples {
                true => {
                    let _ = write!(out, ",\"{name}_us\":{:.3}", self.us_at(*q));
                }
                false => {
                    let _ = write!(out, ",\"{name}_us\":null");
                }
            }
        }
        match samples {
            true => {
                let _ = write!(out, ",\"max_us\":{:.3}", self.latency_ns.max() as f64 / 1e3);
            }
            false => out.push_str(",\"max_us\":null"),
        }
        let busy: Vec<String> = self.shard_busy.iter().map(|b| format!("{b:.4}")).collect();
        let _ = write!(out, ",\"shard_busy_share\":[{}]", busy.join(","));
        let _ = write!(out, ",\"read_delay_samples\":{}", self.read_delay_ns.len());
        for (name, q) in PERCENTILES {
            match self.read_delay_ns.is_empty() {
                false => {
                    let _ = write!(
                        out,
                        ",\"read_delay_{name}_us\":{:.3}",
                        self.read_delay_ns.value_at_quantile(*q) as f64 / 1e3
                    );
                }
                true => {
                    let _ = write!(out, ",\"read_delay_{name}_us\":null");
                }
            }
        }
        if let Some(f) = &self.floor {
            f.json(out);
        }
    }
}

pub const PERCENTILES: &[(&str, f64)] = &[
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99_9", 0.999),
    ("p99_99", 0.9999),
];

/// What a run measured, from its summary; `target_eps` is the open-loop
/// rate (None: closed loop).
pub fn measured(target_eps: Option<u64>, events: u64, elapsed: Duration, summary: RunSummary) -> Measured {
    let secs = elapsed.as_secs_f64().max(1e-9);
    Measured {
        target_eps,
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
        read_delay_ns: summary
            .read_delay_ns
            .clone()
            .unwrap_or_else(laminar_reactor::pace::latency_histogram),
        floor: None,
        shard_busy: summary.shard_busy.iter().map(|b| b.as_secs_f64() / secs).collect(),
    }
}

/// Three significant digits: 1,234,567 → 1,230,000.
pub fn round_rate(r: f64) -> u64 {
    if r < 1.0 {
        return 0;
    }
    let magnitude = 10f64.powi(r.log10().floor() as i32 - 2);
    ((r / magnitude).round() * magnitude) as u64
}

/// The built-in queries' names.
pub fn names() -> String {
    QUERIES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ")
}

/// Events per second the generator makes alone on this core: the ceiling
/// of any paced rate (measured for 50 ms, all kinds).
pub fn generator_capacity_eps(seed: u64) -> f64 {
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

/// The percentile distribution in HdrHistogram's text (`.hgrm`) format,
/// values in microseconds.
pub fn hdr_text(h: &Histogram<u64>) -> String {
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
pub fn plot_svg(h: &Histogram<u64>, title: &str) -> String {
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
