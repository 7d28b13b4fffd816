//! Fault injection at every durable step.
//!
//! Each place where laminar makes something durable calls
//! `Faults::check(point)` just before doing it. In production the plan is
//! empty and the check is one relaxed atomic load. Tests arm a plan that
//! fails the n-th hit of a point (counted over all points), which the
//! caller treats like a crash at that instant: nothing after it happens,
//! and recovery must cope with what is on disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::PersistError;

/// The durable steps, in the order a checkpoint usually meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    WalAppend,
    WalSync,
    WalRotate,
    StoreWrite,
    ManifestWrite,
    ManifestRename,
    SinkCommit,
}

impl FaultPoint {
    pub const ALL: [FaultPoint; 7] = [
        FaultPoint::WalAppend,
        FaultPoint::WalSync,
        FaultPoint::WalRotate,
        FaultPoint::StoreWrite,
        FaultPoint::ManifestWrite,
        FaultPoint::ManifestRename,
        FaultPoint::SinkCommit,
    ];
}

/// A shared fault plan: fail the `fail_at`-th check (1-based, 0 = never).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<FaultsInner>,
}

#[derive(Debug, Default)]
struct FaultsInner {
    fail_at: AtomicU64,
    hits: AtomicU64,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Fails the `n`-th durable step from now (1 = the next one).
    pub fn fail_at(n: u64) -> Faults {
        assert!(n >= 1, "fail_at counts from 1");
        let faults = Faults::default();
        faults.inner.fail_at.store(n, Ordering::Relaxed);
        faults
    }

    /// Counts durable steps without ever failing (to size a sweep).
    pub fn counting() -> Faults {
        let faults = Faults::default();
        faults.inner.fail_at.store(u64::MAX, Ordering::Relaxed);
        faults
    }

    /// Durable steps checked so far (counted once a plan is armed).
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }

    pub fn check(&self, point: FaultPoint) -> Result<(), PersistError> {
        let fail_at = self.inner.fail_at.load(Ordering::Relaxed);
        if fail_at == 0 {
            return Ok(());
        }
        let hit = self.inner.hits.fetch_add(1, Ordering::Relaxed) + 1;
        if hit >= fail_at {
            // Every later step fails too: a dead process does nothing more.
            return Err(PersistError::Injected { point, hit });
        }
        Ok(())
    }
}
