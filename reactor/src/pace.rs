//! Open-loop pacing and latency recording, for `laminar bench`.
//!
//! In a paced run every Nexmark event `i` has an intended send time,
//! `start + i / rate`; a source reads an event only once that time has
//! come, and each batch it reads carries the intended time of its first
//! event (`Batch::origin_ns`). The runtime copies that origin to
//! everything the batch causes downstream (exchange parts, operator
//! output, late streams), and a sink records `now - origin` once per row
//! it receives into an HDR histogram. Latency is thus measured from when
//! the earliest event of the causing batch should have been sent, not
//! from when it was, so a stalled engine cannot hide its stall
//! (coordinated omission); charging every row for the batch's earliest
//! event makes each sample an upper bound. A windowed result is caused by
//! the batch whose watermark closed its window.
//!
//! Closed loop (`rate_per_sec` None): sources read as fast as they can,
//! and origins are read times, so the histogram measures processing delay
//! only; the figure that matters there is the throughput.

use std::time::Instant;

use hdrhistogram::Histogram;

/// An event read more than this after its intended send time is behind
/// schedule.
pub const BEHIND_SCHEDULE_NS: u64 = 1_000_000;

/// The largest latency a histogram records (longer ones are clamped).
const LATENCY_NS_MAX: u64 = 3_600 * 1_000_000_000;

#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The run's time zero; every shard measures from it.
    pub start: Instant,
    /// Events per second of the whole Nexmark stream (every kind), or
    /// None for as fast as possible.
    pub rate_per_sec: Option<u64>,
    /// Closed loop: generators stop at this time (ns after `start`).
    pub deadline_ns: Option<u64>,
}

impl Pace {
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// When event `index` is meant to be sent (ns after `start`), rounded
    /// up to the first nanosecond at which `due_events` counts it.
    pub fn intended_ns(&self, index: u64, rate: u64) -> u64 {
        debug_assert!(rate > 0);
        u64::try_from((u128::from(index) * 1_000_000_000).div_ceil(u128::from(rate))).unwrap_or(u64::MAX)
    }

    /// How many events are due at `now_ns`: those with an intended time
    /// at or before it.
    pub fn due_events(&self, now_ns: u64, rate: u64) -> u64 {
        let due = u128::from(now_ns) * u128::from(rate) / 1_000_000_000;
        u64::try_from(due + 1).unwrap_or(u64::MAX)
    }
}

/// What a paced source does next, given the index of its next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceStep {
    /// Nothing is due: the next event is meant to be sent this many ns
    /// from now.
    Wait(u64),
    /// Read the events before `index_limit`. The batch's origin is
    /// `origin_ns`; events before `behind_before` are over
    /// `BEHIND_SCHEDULE_NS` late. `stop`: the closed loop's deadline has
    /// passed, so the source ends here. `now_ns`: when this was decided
    /// (the read follows at once), for the events' read delays without a
    /// second clock read.
    Read {
        index_limit: u64,
        origin_ns: u64,
        behind_before: Option<u64>,
        stop: bool,
        now_ns: u64,
    },
}

impl Pace {
    /// The step for a source whose next event is `next`.
    pub fn step(&self, next: u64) -> PaceStep {
        let now = self.now_ns();
        match self.rate_per_sec {
            Some(rate) => {
                let due = self.due_events(now, rate);
                if next >= due {
                    return PaceStep::Wait(self.intended_ns(next, rate).saturating_sub(now));
                }
                PaceStep::Read {
                    index_limit: due,
                    // Stored plus one, so that 0 means "none".
                    origin_ns: self.intended_ns(next, rate) + 1,
                    behind_before: Some(self.due_events(now.saturating_sub(BEHIND_SCHEDULE_NS), rate)),
                    stop: false,
                    now_ns: now,
                }
            }
            None => PaceStep::Read {
                index_limit: u64::MAX,
                origin_ns: now + 1,
                behind_before: None,
                stop: self.deadline_ns.is_some_and(|d| now >= d),
                now_ns: now,
            },
        }
    }
}

/// An empty latency histogram: 1 ns to an hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid histogram bounds")
}

/// One histogram of every sample in `histograms` (None if there are none).
pub fn merge(histograms: impl Iterator<Item = Histogram<u64>>) -> Option<Histogram<u64>> {
    histograms.reduce(|mut a, b| {
        a.add(&b).expect("latency histograms share their bounds");
        a
    })
}

/// Records `rows` samples of the latency of rows whose origin is
/// `origin_ns` (see `Batch::origin_ns`), at `now_ns`.
pub fn record(hist: &mut Histogram<u64>, origin_ns: u64, now_ns: u64, rows: u64) {
    if origin_ns == 0 || rows == 0 {
        return;
    }
    // Origins are stored plus one, so that 0 can mean "none".
    let latency = now_ns.saturating_sub(origin_ns - 1).clamp(1, LATENCY_NS_MAX);
    hist.record_n(latency, rows)
        .expect("clamped into the histogram's range");
}

/// Records how long each of a batch's `rows` events waited to be read:
/// `now_ns` minus its intended send time. The events of one source's kind
/// spread evenly over the stream's indexes `first..last` (the other kinds
/// sit between them), so the samples do too.
pub fn record_read_delays(
    hist: &mut Histogram<u64>,
    pace: &Pace,
    rate: u64,
    first: u64,
    last: u64,
    rows: u64,
    now_ns: u64,
) {
    if rows == 0 || last <= first {
        return;
    }
    let span = last - first;
    for j in 0..rows {
        let index = first + j * span / rows;
        let delay = now_ns
            .saturating_sub(pace.intended_ns(index, rate))
            .clamp(1, LATENCY_NS_MAX);
        hist.record(delay).expect("clamped into the histogram's range");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_and_due_counts_agree() {
        let p = Pace {
            start: Instant::now(),
            rate_per_sec: Some(1_000_000),
            deadline_ns: None,
        };
        let rate = 1_000_000;
        assert_eq!(p.intended_ns(0, rate), 0);
        assert_eq!(p.intended_ns(3, rate), 3_000);
        // At t = 0 event 0 is due; at 2,999 ns events 0..=2; at 3,000, 0..=3.
        assert_eq!(p.due_events(0, rate), 1);
        assert_eq!(p.due_events(2_999, rate), 3);
        assert_eq!(p.due_events(3_000, rate), 4);
        for i in [0u64, 1, 7, 999_999, 12_345_678] {
            let t = p.intended_ns(i, 3);
            assert!(p.due_events(t, 3) > i, "event {i} is due at its own time");
            if t > 0 {
                assert!(p.due_events(t - 1, 3) <= i, "and not before");
            }
        }
    }

    #[test]
    fn a_paced_source_waits_for_its_event_and_reads_what_is_due() {
        let p = Pace {
            start: Instant::now(),
            rate_per_sec: Some(1),
            deadline_ns: None,
        };
        // At 1 event/s, event 0 is due at once and event 5 in ~5 s.
        match p.step(0) {
            PaceStep::Read {
                index_limit,
                origin_ns,
                stop,
                ..
            } => assert_eq!((index_limit, origin_ns, stop), (1, 1, false)),
            other => panic!("{other:?}"),
        }
        match p.step(5) {
            PaceStep::Wait(ns) => assert!(ns > 4_000_000_000 && ns <= 5_000_000_000, "{ns}"),
            other => panic!("{other:?}"),
        }
        let closed = Pace {
            start: Instant::now(),
            rate_per_sec: None,
            deadline_ns: Some(0),
        };
        assert!(matches!(
            closed.step(7),
            PaceStep::Read {
                index_limit: u64::MAX,
                stop: true,
                ..
            }
        ));
    }

    #[test]
    fn read_delays_run_from_each_events_own_send_time() {
        let p = Pace {
            start: Instant::now(),
            rate_per_sec: Some(1_000_000),
            deadline_ns: None,
        };
        let mut h = latency_histogram();
        // Events 0..10 (sent at 0, 1, … 9 µs), read at 10 µs: they waited
        // 10 µs down to 1 µs.
        record_read_delays(&mut h, &p, 1_000_000, 0, 10, 10, 10_000);
        assert_eq!(h.len(), 10);
        assert_eq!(h.max(), h.highest_equivalent(10_000));
        assert_eq!(h.min(), h.lowest_equivalent(1_000));
        // Two bids among ten events of the stream: two samples, the
        // first from index 0, the second from index 5.
        let mut h = latency_histogram();
        record_read_delays(&mut h, &p, 1_000_000, 0, 10, 2, 10_000);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), h.lowest_equivalent(5_000));
        // Nothing read, nothing recorded.
        record_read_delays(&mut h, &p, 1_000_000, 10, 10, 0, 20_000);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn latency_is_charged_from_the_origin() {
        let mut h = latency_histogram();
        record(&mut h, 0, 50, 10);
        assert_eq!(h.len(), 0, "no origin, no sample");
        record(&mut h, 1_001, 5_000, 3);
        assert_eq!(h.len(), 3);
        assert!(h.equivalent(h.max(), 4_000));
    }
}
