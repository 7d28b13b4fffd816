//! The write-ahead log of a shard whose sources take intake of their own
//! (`source::Intake`, the tcp connector): replayed at start from where
//! the checkpoint left those sources, appended to before their rows
//! travel on, and made durable in group commits that answer their
//! connections.

use std::sync::atomic::Ordering;

use fxhash::FxHashMap;

use crate::control::Control;
use crate::error::RunError;
use crate::source::LoggedBatch;
use crate::source::Source;

/// Reads this shard's WAL back from the position its live sources
/// resumed at, hands each source its batches to replay, and opens the
/// log for appending after them.
pub(super) async fn open_wal(
    dir: &std::path::Path,
    id: usize,
    sources: &mut [(usize, Source)],
    renumber: Option<&[(u32, u32)]>,
) -> Result<laminar_persistence::wal::WalWriter, RunError> {
    use laminar_persistence::wal;
    let shard = u32::try_from(id).expect("shard ids fit u32");
    let starts: FxHashMap<u32, u64> = sources
        .iter_mut()
        .filter_map(|(i, s)| Some((*i as u32, s.intake_ref()?.wal_lsn())))
        .collect();
    let from = starts.values().copied().min().unwrap_or(0);
    let mut batches: FxHashMap<u32, Vec<LoggedBatch>> = FxHashMap::default();
    let mut read = 0usize;
    let report = wal::read_log(dir, shard, from, |record| {
        if record.kind != wal::RecordKind::Rows {
            return Ok(());
        }
        let logged: LoggedBatch = laminar_persistence::from_archive(&record.payload).map_err(|e| {
            laminar_persistence::PersistError::Corrupt {
                path: wal::segment_path(dir, shard, 0).with_file_name(format!("wal-{shard:04}-*.log")),
                offset: record.lsn,
                reason: format!("a record at LSN {} does not decode: {e}", record.lsn),
            }
        })?;
        let mut logged = logged;
        // Records name a source by its index in the plan that wrote
        // them; a restart with changed SQL may have moved it, or dropped
        // it (its records are skipped).
        if let Some(map) = renumber {
            match map.iter().find(|(old, _)| *old == logged.source) {
                Some(&(_, new)) => logged.source = new,
                None => return Ok(()),
            }
        }
        if starts.get(&logged.source).is_some_and(|&start| record.lsn >= start) {
            read += 1;
            batches.entry(logged.source).or_default().push(logged);
        }
        Ok(())
    })?;
    if let Some((path, offset, bytes)) = &report.truncated {
        tracing::warn!(
            shard = id,
            path = %path.display(),
            offset,
            bytes,
            "cut a torn tail off the WAL (never acknowledged)"
        );
    }
    if read > 0 {
        tracing::info!(
            shard = id,
            batches = read,
            from_lsn = from,
            "replaying the WAL after the checkpoint"
        );
    }
    for (i, intake) in sources.iter_mut().filter_map(|(i, s)| Some((*i, s.intake()?))) {
        // Also with nothing to replay: the connections the checkpoint
        // kept are gone, and go.
        intake.replay(batches.remove(&(i as u32)).unwrap_or_default());
    }
    let writer = wal::WalWriter::open(
        wal::WalConfig::new(dir, shard),
        report.end_lsn,
        laminar_persistence::Faults::none(),
    )
    .await?;
    for (_, s) in sources.iter_mut() {
        if let Some(intake) = s.intake() {
            intake.set_wal_lsn(report.end_lsn);
        }
    }
    Ok(writer)
}

/// Makes the WAL durable so far and tells the live sources' connections
/// (and the metrics) how far it is.
pub(super) async fn wal_commit(
    wal: &mut laminar_persistence::wal::WalWriter,
    id: usize,
    sources: &[(usize, Source)],
    progress: &Control,
) -> Result<(), RunError> {
    if wal.synced_lsn() == wal.next_lsn() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let synced = wal.commit().await?;
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let shard = &progress.metrics.shards[id];
    shard.wal_syncs.fetch_add(1, Ordering::Relaxed);
    shard.wal_sync_ns_total.fetch_add(ns, Ordering::Relaxed);
    shard.wal_sync_ns_max.fetch_max(ns, Ordering::Relaxed);
    for (_, s) in sources {
        if let Some(intake) = s.intake_ref() {
            intake.inbox().borrow_mut().on_synced(synced);
        }
    }
    Ok(())
}
