//! Keyed operator state behind a small interface.
//!
//! Every stateful operator keeps its groups, windows and sessions in a
//! `KeyedState`: a map from a group key (a row of values) to the
//! operator's entry, with a hard limit on the number of entries so that a
//! runaway key space is an error naming the operator instead of an
//! out-of-memory kill. The reactor issue moves the storage into per-shard
//! mmap arenas behind this same interface; lookups take a borrowed
//! `&[Value]` so probing never allocates.

use fxhash::FxBuildHasher;
use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;

use crate::error::ExecError;
use crate::types::Value;

/// The owned form of a group key.
pub type GroupKey = Box<[Value]>;

/// Default limit on live entries per operator (groups, or group×window
/// pairs): about 2 GB of small accumulators.
pub const STATE_ENTRIES_MAX_DEFAULT: usize = 10_000_000;

#[derive(Debug, Clone)]
pub struct KeyedState<V> {
    map: HashMap<GroupKey, V, FxBuildHasher>,
    entries_max: usize,
}

impl<V> KeyedState<V> {
    pub fn new(entries_max: usize) -> KeyedState<V> {
        assert!(entries_max > 0);
        KeyedState {
            map: HashMap::with_hasher(FxBuildHasher::default()),
            entries_max,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &[Value]) -> Option<&V> {
        self.map.get(key)
    }

    pub fn get_mut(&mut self, key: &[Value]) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    /// The entry for `key`, created by `init` when absent. Allocates only
    /// when the key is new. `live_elsewhere` is the operator's entry count
    /// outside this map, so that the limit can span several maps (one per
    /// open window).
    pub fn get_or_insert_with(
        &mut self,
        key: &[Value],
        live_elsewhere: usize,
        operator: &str,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V, ExecError> {
        let len = self.map.len();
        match self.map.entry_ref(key) {
            EntryRef::Occupied(o) => Ok(o.into_mut()),
            EntryRef::Vacant(v) => {
                if len + live_elsewhere >= self.entries_max {
                    return Err(ExecError::StateLimit {
                        operator: operator.to_string(),
                        what: "live groups",
                        limit: self.entries_max,
                    });
                }
                Ok(v.insert(init()))
            }
        }
    }

    pub fn remove(&mut self, key: &[Value]) -> Option<V> {
        self.map.remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&GroupKey, &V)> {
        self.map.iter()
    }

    /// Takes every entry out, leaving the map empty.
    pub fn drain(&mut self) -> impl Iterator<Item = (GroupKey, V)> + '_ {
        self.map.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_enforced_and_names_the_operator() {
        let mut s: KeyedState<u32> = KeyedState::new(2);
        *s.get_or_insert_with(&[Value::Int(1)], 0, "agg", || 0).unwrap() += 1;
        *s.get_or_insert_with(&[Value::Int(1)], 0, "agg", || 0).unwrap() += 1;
        s.get_or_insert_with(&[Value::Int(2)], 0, "agg", || 0).unwrap();
        let err = s.get_or_insert_with(&[Value::Int(3)], 0, "agg", || 0).unwrap_err();
        assert!(err.to_string().contains("agg"));
        assert_eq!(s.get(&[Value::Int(1)]), Some(&2));
    }
}
