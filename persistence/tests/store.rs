//! The checkpoint store and the manifest: incremental writes, reading
//! back, garbage collection, crash safety of a half-written checkpoint,
//! and the manifest's atomic replacement and damage detection.

use laminar_persistence::manifest::{
    self, Manifest, NodeRecord, SinkPosition, SourcePosition, SourceRecord, StreamRecord,
};
use laminar_persistence::store::{CheckpointStore, ShardIndex, CHUNK_BYTES};
use laminar_persistence::{Faults, PersistError};
use proptest::prelude::*;

/// Read-back parts as plain vectors, to compare with what was written.
fn plain(parts: laminar_persistence::store::ReadParts) -> Vec<(u32, Vec<u8>)> {
    parts.into_iter().map(|(p, b)| (p, b.to_vec())).collect()
}

fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn only_changed_chunks_are_written_and_everything_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), Faults::none()).unwrap();
    let mut index = ShardIndex::default();
    let mut parts = vec![
        (0u32, blob(1, 10 * CHUNK_BYTES + 7)),
        (5, blob(2, 100)),
        (9, Vec::new()),
    ];
    let first = store.write(1, 0, &parts, &mut index).unwrap();
    assert_eq!(first.bytes_written, first.state_bytes);
    // Change one chunk of the big part; the others are unchanged.
    parts[0].1[3 * CHUNK_BYTES + 5] ^= 0xff;
    let second = store.write(2, 0, &parts, &mut index).unwrap();
    assert_eq!(second.chunks_written, 1);
    assert_eq!(second.bytes_written, CHUNK_BYTES as u64);
    let (got, _) = store.read(2, 0).unwrap();
    assert_eq!(plain(got), parts);
    // The previous checkpoint is intact until collected.
    let (old, _) = store.read(1, 0).unwrap();
    assert_eq!(
        old[0].1[3 * CHUNK_BYTES + 5],
        blob(1, 10 * CHUNK_BYTES + 7)[3 * CHUNK_BYTES + 5]
    );
    let deleted = store.collect(2, 1).unwrap();
    assert!(deleted >= 2, "the old index and the replaced chunk: {deleted}");
    assert!(store.read(1, 0).is_err());
    assert_eq!(plain(store.read(2, 0).unwrap().0), parts);
}

#[test]
fn a_checkpoint_that_dies_before_its_manifest_leaves_the_previous_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let parts = vec![(0u32, blob(7, 3 * CHUNK_BYTES))];
    {
        let store = CheckpointStore::open(dir.path(), Faults::none()).unwrap();
        let mut index = ShardIndex::default();
        store.write(1, 0, &parts, &mut index).unwrap();
        // Checkpoint 2 of a different state, then the process dies.
        let changed = vec![(0u32, blob(8, 3 * CHUNK_BYTES))];
        store.write(2, 0, &changed, &mut index).unwrap();
    }
    let store = CheckpointStore::open(dir.path(), Faults::none()).unwrap();
    // Recovery keeps checkpoint 1 (the manifest's) and drops 2.
    store.collect(1, 1).unwrap();
    assert_eq!(plain(store.read(1, 0).unwrap().0), parts);
    assert!(store.read(2, 0).is_err());
}

#[test]
fn an_injected_store_fault_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), Faults::fail_at(1)).unwrap();
    let mut index = ShardIndex::default();
    let e = store.write(1, 0, &[(0, blob(1, 10))], &mut index).unwrap_err();
    assert!(e.is_injected());
    assert_eq!(index, ShardIndex::default(), "the index is not advanced");
    assert!(matches!(store.read(1, 0), Err(PersistError::Store { .. })));
}

fn sample_manifest() -> Manifest {
    Manifest {
        epoch: 42,
        plan_fingerprint: 0xfeed,
        shards: 2,
        key_groups: 4096,
        wal_lsns: vec![10, 20],
        sources: vec![SourcePosition {
            name: "bids".into(),
            shard: 1,
            offset: 12345,
            records: 100,
            state: vec![1, 2, 3],
        }],
        sinks: vec![SinkPosition {
            name: "out".into(),
            identity: 0xabc,
            bytes: 999,
            rows: 7,
            ended_senders: vec![0],
        }],
        streams: vec![StreamRecord {
            name: "totals".into(),
            kind: "stream".into(),
            identity: 0x1234,
            text: "CREATE STREAM totals AS SELECT …".into(),
            nodes: vec![NodeRecord {
                part: 3,
                identity: 0x5678,
            }],
        }],
        source_defs: vec![SourceRecord {
            name: "bids".into(),
            index: 0,
            identity: 1,
            position_key: 2,
            text: "CREATE SOURCE bids …".into(),
        }],
        state_bytes: 5,
        state_bytes_written: 3,
        created_unix_ms: 1,
    }
}

#[test]
fn the_manifest_round_trips_and_is_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(manifest::read(dir.path()).unwrap(), None);
    let m = sample_manifest();
    manifest::write(dir.path(), &m, &Faults::none()).unwrap();
    assert_eq!(manifest::read(dir.path()).unwrap(), Some(m.clone()));
    // A crash between the temporary file and the rename keeps the old one.
    let next = Manifest { epoch: 43, ..m.clone() };
    for hit in 1..=2 {
        let e = manifest::write(dir.path(), &next, &Faults::fail_at(hit)).unwrap_err();
        assert!(e.is_injected());
        assert_eq!(manifest::read(dir.path()).unwrap(), Some(m.clone()));
    }
    manifest::write(dir.path(), &next, &Faults::none()).unwrap();
    assert_eq!(manifest::read(dir.path()).unwrap().unwrap().epoch, 43);
}

#[test]
fn a_damaged_manifest_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    manifest::write(dir.path(), &sample_manifest(), &Faults::none()).unwrap();
    let path = manifest::manifest_path(dir.path());
    let good = std::fs::read(&path).unwrap();
    for at in [0, 9, 13, 17, 30, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        let e = manifest::read(dir.path()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("MANIFEST"), "{text}");
    }
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert!(manifest::read(dir.path()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Whatever a sequence of checkpoints writes, the newest reads back
    /// exactly, before and after collection.
    #[test]
    fn the_newest_checkpoint_always_reads_back(
        steps in proptest::collection::vec(
            proptest::collection::vec((0u32..4, 0usize..(3 * CHUNK_BYTES), any::<u8>()), 1..4),
            1..5,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), Faults::none()).unwrap();
        let mut index = ShardIndex::default();
        for (epoch, parts) in steps.iter().enumerate() {
            let mut parts: Vec<(u32, Vec<u8>)> = parts.iter().map(|&(p, len, seed)| (p, blob(seed, len))).collect();
            parts.sort_by_key(|p| p.0);
            parts.dedup_by_key(|p| p.0);
            let epoch = epoch as u64 + 1;
            store.write(epoch, 0, &parts, &mut index).unwrap();
            prop_assert_eq!(&plain(store.read(epoch, 0).unwrap().0), &parts);
            store.collect(epoch, 1).unwrap();
            prop_assert_eq!(&plain(store.read(epoch, 0).unwrap().0), &parts);
        }
    }
}
