//! Event-time windows: their specification and assignment.
//!
//! Tumbling and hopping windows are aligned to the Unix epoch: a window
//! starts at a multiple of its size (tumble) or slide (hop), in
//! milliseconds, and the alignment floors, so `-1 ms` belongs to the window
//! `[-size, 0)`. A session window is `[first event, last event + gap)`; its
//! assignment depends on state and lives in the session operator.
//!
//! A window `[start, end)` is closed when the watermark `W >= end +
//! lateness`. A record is late when every window it belongs to is closed.

use thiserror::Error;

use crate::time::{floor_div, floor_to};

/// The window of a windowed aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    Tumble { size_ms: i64 },
    Hop { slide_ms: i64, size_ms: i64 },
    Session { gap_ms: i64 },
}

/// The most windows one record may belong to (HOP size / slide). A limit
/// so a pathological `HOP(…, 1 ms, 1 day)` is refused at plan time instead
/// of multiplying every record by 86 million.
pub const HOP_WINDOWS_PER_ROW_MAX: i64 = 1_000;

/// Window sizes that `WindowSpec::validate` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WindowError {
    #[error("window size must be positive")]
    TumbleSize,
    #[error("HOP slide and size must be positive")]
    HopSizes,
    #[error("HOP size / slide is {windows}; at most {HOP_WINDOWS_PER_ROW_MAX} windows per row are allowed")]
    HopWindows { windows: i64 },
    #[error("SESSION gap must be positive")]
    SessionGap,
}

impl WindowSpec {
    /// Checks sizes; the planner reports the error against the SQL.
    pub fn validate(&self) -> Result<(), WindowError> {
        match *self {
            WindowSpec::Tumble { size_ms } if size_ms <= 0 => Err(WindowError::TumbleSize),
            WindowSpec::Hop { slide_ms, size_ms } => {
                if slide_ms <= 0 || size_ms <= 0 {
                    return Err(WindowError::HopSizes);
                }
                // Windows per row: ceil(size / slide), both positive.
                let per_row = (size_ms - 1) / slide_ms + 1;
                if per_row > HOP_WINDOWS_PER_ROW_MAX {
                    return Err(WindowError::HopWindows { windows: per_row });
                }
                Ok(())
            }
            WindowSpec::Session { gap_ms } if gap_ms <= 0 => Err(WindowError::SessionGap),
            _ => Ok(()),
        }
    }

    /// The window length (tumble, hop); sessions have none.
    pub fn size_ms(&self) -> Option<i64> {
        match *self {
            WindowSpec::Tumble { size_ms } | WindowSpec::Hop { size_ms, .. } => Some(size_ms),
            WindowSpec::Session { .. } => None,
        }
    }

    /// Calls `f(start)` for every fixed window containing `ts`, latest start
    /// first. Sessions are not fixed windows and assign nothing here.
    pub fn for_each_start(&self, ts: i64, f: impl FnMut(i64)) {
        self.for_each_start_cached(ts, &mut FloorCache::default(), f)
    }

    /// `for_each_start`, with the step's floor taken from `cache` when `ts`
    /// is in the same step as the time before (rows mostly are, and the
    /// division is most of the cost of assigning a tumbling window).
    pub fn for_each_start_cached(&self, ts: i64, cache: &mut FloorCache, mut f: impl FnMut(i64)) {
        match *self {
            WindowSpec::Tumble { size_ms } => f(cache.floor(ts, size_ms)),
            WindowSpec::Hop { slide_ms, size_ms } => {
                let mut start = cache.floor(ts, slide_ms);
                // `start > ts - size` ⇔ the window [start, start+size) holds ts.
                while start > ts.saturating_sub(size_ms) {
                    f(start);
                    match start.checked_sub(slide_ms) {
                        Some(s) => start = s,
                        None => break,
                    }
                }
            }
            WindowSpec::Session { .. } => {}
        }
    }
}

/// The last `floor_to(ts, step)` and the times it holds for; see
/// `WindowSpec::for_each_start_cached`.
/// The default is an empty range: the first call computes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloorCache {
    step: i64,
    floor: i64,
    /// `floor + step`; `ts` in `floor..end` floors to `floor` (an empty
    /// range until a floor is cached).
    end: i64,
}

impl FloorCache {
    #[inline]
    pub fn floor(&mut self, ts: i64, step: i64) -> i64 {
        if step == self.step && ts >= self.floor && ts < self.end {
            return self.floor;
        }
        // Only an exact floor is cached: where `floor_to` saturates (times
        // near the ends of i64) its range would be wrong.
        let exact = floor_div(ts, step).checked_mul(step);
        match exact.and_then(|floor| floor.checked_add(step).map(|end| (floor, end))) {
            Some((floor, end)) => {
                *self = FloorCache { step, floor, end };
                floor
            }
            None => floor_to(ts, step),
        }
    }
}

/// The end of a window that starts at `start`, saturating.
pub fn window_end(start: i64, size_ms: i64) -> i64 {
    start.saturating_add(size_ms)
}

/// Whether a window ending at `end` is closed at watermark `w`.
pub fn is_closed(end: i64, lateness_ms: i64, watermark: i64) -> bool {
    watermark >= end.saturating_add(lateness_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(spec: WindowSpec, ts: i64) -> Vec<i64> {
        let mut v = Vec::new();
        spec.for_each_start(ts, |s| v.push(s));
        v
    }

    #[test]
    fn the_floor_cache_agrees_with_floor_to() {
        let mut cache = FloorCache::default();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly nearby times, now and then a jump, a new step or an end of i64.
            let ts = match i % 1000 {
                0 => i64::MIN + (x % 5000) as i64,
                1 => i64::MAX - (x % 5000) as i64,
                _ => (x % 40_000) as i64 - 20_000,
            };
            let step = [1000, 7, 10_000][(i / 5000) % 3];
            assert_eq!(cache.floor(ts, step), floor_to(ts, step), "ts {ts} step {step}");
        }
    }

    #[test]
    fn tumble_floors_negative_times() {
        let t = WindowSpec::Tumble { size_ms: 10 };
        assert_eq!(starts(t, -1), [-10]);
        assert_eq!(starts(t, -10), [-10]);
        assert_eq!(starts(t, 0), [0]);
        assert_eq!(starts(t, 9), [0]);
    }

    #[test]
    fn hop_assigns_every_covering_window() {
        let h = WindowSpec::Hop {
            slide_ms: 2,
            size_ms: 10,
        };
        assert_eq!(starts(h, 10), [10, 8, 6, 4, 2]);
        assert_eq!(starts(h, -1), [-2, -4, -6, -8, -10]);
        // Size not a multiple of the slide: 3 or 4 windows depending on ts.
        let h = WindowSpec::Hop {
            slide_ms: 3,
            size_ms: 10,
        };
        assert_eq!(starts(h, 9), [9, 6, 3, 0]);
        assert_eq!(starts(h, 10), [9, 6, 3]);
    }

    /// The messages reach users as SQL errors: their text must not drift.
    #[test]
    fn size_error_texts() {
        let e = |w: WindowSpec| w.validate().unwrap_err().to_string();
        assert_eq!(e(WindowSpec::Tumble { size_ms: 0 }), "window size must be positive");
        assert_eq!(
            e(WindowSpec::Hop {
                slide_ms: -1,
                size_ms: 5
            }),
            "HOP slide and size must be positive"
        );
        assert_eq!(
            e(WindowSpec::Hop {
                slide_ms: 1,
                size_ms: 1_001
            }),
            "HOP size / slide is 1001; at most 1000 windows per row are allowed"
        );
        assert_eq!(e(WindowSpec::Session { gap_ms: 0 }), "SESSION gap must be positive");
    }

    #[test]
    fn hop_limits_windows_per_row() {
        assert!(WindowSpec::Hop {
            slide_ms: 1,
            size_ms: 86_400_000
        }
        .validate()
        .is_err());
        assert!(WindowSpec::Hop {
            slide_ms: 2_000,
            size_ms: 10_000
        }
        .validate()
        .is_ok());
    }
}
