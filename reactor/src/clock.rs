//! The wall clock for processing time (`EMIT EVERY` ticks): the only
//! clock that can change what a pipeline emits (others time progress
//! reports and stalls). It lives here, not in `exec`, so operators stay
//! deterministic and tests pass in their own `Clock`.

use laminar_exec::time::Clock;

/// The wall clock, made monotonic: a step back of the system clock (NTP)
/// holds processing time still instead of moving it backwards.
#[derive(Debug, Default)]
pub struct SystemClock {
    last_ms: std::sync::atomic::AtomicI64,
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let prev = self.last_ms.fetch_max(wall, std::sync::atomic::Ordering::Relaxed);
        prev.max(wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards() {
        let clock = SystemClock::default();
        let mut last = clock.now_ms();
        assert!(last > 1_600_000_000_000, "epoch milliseconds");
        for _ in 0..1000 {
            let now = clock.now_ms();
            assert!(now >= last);
            last = now;
        }
    }
}
