//! The steady-state event path does not allocate per event: running twice
//! as many events through a keyed windowed aggregate must add far fewer
//! heap allocations than events. Allocations per batch (4096 rows), per new
//! group and per window are expected; per row they are not.
//!
//! The key space is bounded (64 keys per window) so that new groups, which
//! rightly allocate, do not hide a per-row allocation. A counting global
//! allocator sees every thread, so the shard executors' allocations are
//! counted too. This file is its own test binary so the
//! allocator does not affect other tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use laminar_tests::run_sql_with;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator unchanged; the
// counter is a relaxed atomic and does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_for(events: u64, shards: usize) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "CREATE SOURCE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP,
             WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
         WITH (connector = 'nexmark', kind = 'bid', events = '{events}', seed = '3');
         CREATE STREAM q AS SELECT MOD(auction, 64) AS a, COUNT(*) AS n, MAX(price) AS top, window_start
         FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY MOD(auction, 64), window_start, window_end;
         CREATE SINK o FROM q WITH (connector = 'file', path = '{{dir}}/out.csv');"
    );
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    // No spinning: an idle shard's polling loop allocates inside glommio
    // with wall time (a preemption timer per round), which says nothing
    // about the event path.
    let outcome = run_sql_with(&sql, dir.path(), 4096, shards, Some(std::time::Duration::ZERO)).unwrap();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before, outcome.summary.rows_in())
}

#[test]
fn the_event_path_does_not_allocate_per_event() {
    let enabled = laminar_tests::shard_counts();
    for shards in [1, 2].into_iter().filter(|s| *s == 1 || enabled.contains(s)) {
        // Warm up once so lazily initialised statics do not count.
        allocations_for(10_000, shards);
        let (small, rows_small) = allocations_for(400_000, shards);
        let (large, rows_large) = allocations_for(800_000, shards);
        let extra_rows = rows_large - rows_small;
        let extra_allocations = large.saturating_sub(small);
        let per_event = extra_allocations as f64 / extra_rows as f64;
        eprintln!(
            "{shards} shard(s): {extra_allocations} extra allocations for {extra_rows} extra events ({per_event:.4} per event)"
        );
        // One shard is deterministic (0.0125 measured). With two, parking
        // and cross-core wakes allocate inside glommio with scheduling, not
        // with rows (0.023 measured 2026-11-24); a per-row allocation would
        // show as 1 or more either way.
        let bound = if shards == 1 { 0.05 } else { 0.1 };
        assert!(
            per_event < bound,
            "{per_event:.4} allocations per event on {shards} shard(s)"
        );
    }
}
