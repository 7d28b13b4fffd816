//! Operator state as bytes: what a checkpoint stores for each operator
//! instance, and what recovery hands back.
//!
//! Each stateful operator copies its state into a snapshot type made of
//! plain values (vectors of `(key, entry)` pairs instead of the arenas and
//! indexes that hold it at run time) and serializes it with rkyv. The
//! bytes, byte by byte:
//!
//! - 0..4: `STATE_FORMAT_VERSION`, u32 little-endian;
//! - 4..16: zero (so the archive starts 16 bytes in: read back into a
//!   16-byte aligned buffer, it is decoded in place, not copied again);
//! - 16..: the rkyv 0.8 archive.
//!
//! Restoring validates the archive (bytecheck) before it trusts a byte of
//! it, then rebuilds the arenas and indexes.
//!
//! **Invariant:** `restore(checkpoint())` gives an operator that behaves
//! exactly like the one checkpointed, for every input that follows (the
//! round-trip tests feed both the same rows and compare outputs).

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::{Error as RkyvError, Strategy};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::ExecError;

/// The version of every operator snapshot layout; bumped when any
/// snapshot type changes shape.
pub const STATE_FORMAT_VERSION: u32 = 4;

/// Bytes before the archive: the version and padding to 16.
const HEADER_BYTES: usize = 16;

/// A keyed state's entries as a snapshot holds them: (key, entry) in the
/// state's entry order.
pub(crate) type Entries<V> = Vec<(crate::state::GroupKey, V)>;

/// A time-ordered map's entries, by (time, sequence).
pub(crate) type ByTimeEntries<V> = Vec<((i64, u64), V)>;

/// A snapshot taken but not yet serialized: the state copied out of its
/// operator at the barrier, on the shard; the bytes are made later, where
/// the checkpoint is written (the coordinator), so a shard stops for the
/// copy only (serializing was more than half of a snapshot's time).
pub struct Deferred(Box<dyn FnOnce() -> Result<Vec<u8>, ExecError> + Send>);

impl Deferred {
    pub fn new(make: impl FnOnce() -> Result<Vec<u8>, ExecError> + Send + 'static) -> Deferred {
        Deferred(Box::new(make))
    }

    /// Serializes the snapshot (see `encode`).
    pub fn bytes(self) -> Result<Vec<u8>, ExecError> {
        (self.0)()
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred snapshot")
    }
}

/// A snapshot of `operator` to serialize later with `encode`.
pub fn defer<T>(operator: &str, snapshot: T) -> Deferred
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, RkyvError>> + Send + 'static,
{
    let operator = operator.to_string();
    Deferred::new(move || encode(&operator, &snapshot))
}

/// Serializes a snapshot: the version, then the rkyv archive.
pub fn encode<T>(operator: &str, snapshot: &T) -> Result<Vec<u8>, ExecError>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, RkyvError>>,
{
    // rkyv's relative offsets are 32-bit: an archive past 2 GiB makes its
    // serializer panic, which must not take the process down.
    let archive = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rkyv::to_bytes::<RkyvError>(snapshot)))
        .map_err(|_| ExecError::Restore {
            reason: format!(
                "{operator}: its state does not fit one snapshot (at most 2 GiB per operator instance); \
                 run on more shards to spread it"
            ),
        })?
        .map_err(|e| ExecError::Restore {
            reason: format!("{operator}: cannot serialize its state: {e}"),
        })?;
    let mut out = Vec::with_capacity(HEADER_BYTES + archive.len());
    out.extend_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
    out.resize(HEADER_BYTES, 0);
    out.extend_from_slice(&archive);
    Ok(out)
}

/// Validates and deserializes bytes written by `encode`.
pub fn decode<T>(operator: &str, bytes: &[u8]) -> Result<T, ExecError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, RkyvError>> + Deserialize<T, Strategy<Pool, RkyvError>>,
{
    let bad = |reason: String| ExecError::Restore {
        reason: format!("{operator}: {reason}"),
    };
    if bytes.len() < HEADER_BYTES {
        return Err(bad(format!("state of {} bytes is too short", bytes.len())));
    }
    let version = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if version != STATE_FORMAT_VERSION {
        return Err(bad(format!(
            "state format version {version}, this laminar reads {STATE_FORMAT_VERSION}"
        )));
    }
    // rkyv reads from an aligned buffer: the archive itself when the
    // caller's bytes are aligned (as the checkpoint store returns them),
    // else a copy.
    let archive = &bytes[HEADER_BYTES..];
    let decoded = if archive.as_ptr().align_offset(16) == 0 {
        rkyv::from_bytes::<T, RkyvError>(archive)
    } else {
        let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
        aligned.extend_from_slice(archive);
        rkyv::from_bytes::<T, RkyvError>(&aligned)
    };
    decoded.map_err(|e| bad(format!("state does not decode: {e}")))
}

/// A keyed state's entries in its entry order, cloned for a snapshot.
pub(crate) fn entries<V: Clone>(state: &crate::state::KeyedState<V>) -> Entries<V> {
    state.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A keyed state rebuilt from `entries` (the inverse of `entries`).
pub(crate) fn rebuild<V>(
    entries: Entries<V>,
    entries_max: usize,
    operator: &str,
) -> Result<crate::state::KeyedState<V>, ExecError> {
    let mut state = crate::state::KeyedState::new(entries_max);
    state.reserve(entries.len().min(entries_max));
    for (key, value) in entries {
        let live = state.len();
        state.insert_new(key, value, 0, operator)?;
        debug_assert_eq!(state.len(), live + 1);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};
    use crate::agg::{Accumulator, AggKind};
    use crate::types::{DataType, Value};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Double),
            "[a-z]{0,40}".prop_map(|s| Value::str(&s)),
            any::<i64>().prop_map(Value::Ts),
        ]
    }

    const KINDS: [AggKind; 9] = AggKind::ALL;

    /// A value of `ty` from a seed, so sums stay in range.
    fn typed(ty: DataType, seed: i64) -> Value {
        match ty {
            DataType::Int => Value::Int(seed % 1000),
            DataType::Double => Value::Double((seed % 1000) as f64 / 8.0),
            _ => Value::str(&format!("v{}", seed % 50)),
        }
    }

    proptest! {
        #[test]
        fn values_round_trip(values in proptest::collection::vec(value(), 0..50)) {
            let bytes = encode("test", &values).unwrap();
            let back: Vec<Value> = decode("test", &bytes).unwrap();
            prop_assert_eq!(back, values);
        }

        /// Every accumulator, after any adds and retractions, restores to
        /// one that finishes the same and keeps behaving the same.
        #[test]
        fn accumulators_round_trip_and_behave_the_same(
            seeds in proptest::collection::vec(any::<i64>(), 0..40),
            more in proptest::collection::vec(any::<i64>(), 0..20),
            retract in 0usize..10,
        ) {
            for kind in KINDS {
                for ty in [DataType::Int, DataType::Double, DataType::Str] {
                    if matches!(kind, AggKind::Sum | AggKind::Avg) && ty == DataType::Str {
                        continue;
                    }
                    for retractable in [false, true] {
                        let mut acc = Accumulator::new(kind, ty, retractable);
                        for (i, s) in seeds.iter().enumerate() {
                            acc.add(&typed(ty, *s), *s % 100_000, i as u64);
                        }
                        if retractable {
                            for s in seeds.iter().take(retract) {
                                acc.retract(&typed(ty, *s), *s % 100_000);
                            }
                        }
                        let bytes = encode("acc", &acc).unwrap();
                        let mut back: Accumulator = decode("acc", &bytes).unwrap();
                        prop_assert_eq!(back.finish(), acc.finish(), "{:?} {:?} {}", kind, ty, retractable);
                        for (i, s) in more.iter().enumerate() {
                            let seq = (seeds.len() + i) as u64;
                            acc.add(&typed(ty, *s), *s % 100_000, seq);
                            back.add(&typed(ty, *s), *s % 100_000, seq);
                        }
                        prop_assert_eq!(back.finish(), acc.finish());
                    }
                }
            }
        }

        /// Damaged state bytes are an error (or, by chance, other valid
        /// state), never a panic.
        #[test]
        fn damaged_state_never_panics(values in proptest::collection::vec(value(), 1..20), at in any::<usize>(), bits in 1u8..=255) {
            let mut bytes = encode("test", &values).unwrap();
            let at = at % bytes.len();
            bytes[at] ^= bits;
            let _ = decode::<Vec<Value>>("test", &bytes);
            let _ = decode::<Accumulator>("test", &bytes);
        }
    }
}

#[cfg(test)]
mod size_limit {
    /// Runs only when asked: it allocates about 5 GB.
    #[test]
    #[ignore = "allocates about 5 GB"]
    fn a_snapshot_over_2_gib_is_an_error_naming_the_operator() {
        let v: Vec<u64> = vec![7; 300_000_000];
        let e = super::encode("window_agg", &v).expect_err("2.4 GB does not fit 32-bit offsets");
        assert!(
            e.to_string().contains("window_agg") && e.to_string().contains("2 GiB"),
            "{e}"
        );
    }
}
