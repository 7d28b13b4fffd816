//! Keyed operator state behind a small interface.
//!
//! Every stateful operator keeps its groups, windows and sessions in a
//! `KeyedState`: a map from a group key (a row of values) to the
//! operator's entry, with a hard limit on the number of entries so that a
//! runaway key space is an error naming the operator instead of an
//! out-of-memory kill. The storage is two arenas (`crate::arena`) of the
//! operator instance's shard: packed entries and an open-addressing FxHash
//! index. Lookups take a borrowed `&[Value]`, so probing never allocates.

use std::mem::{align_of, size_of};

use crate::arena::{ArenaDrain, ArenaVec};
use crate::error::ExecError;
use crate::types::Value;

/// The owned form of a group key.
pub type GroupKey = smallvec::SmallVec<[Value; 1]>;

/// Default limit on live entries per operator (groups, or group×window
/// pairs): about 2 GB of small accumulators.
pub const STATE_ENTRIES_MAX_DEFAULT: usize = 10_000_000;

/// One index slot: where an entry lives, and the top 32 bits of its hash
/// (`tag`), so that most mismatches are rejected without touching the
/// entry and the slot's home follows from the slot alone (`home_of_tag`):
/// moving a slot to a new index, or back in a probe run, reads no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Slot {
    tag: u32,
    /// Entry position + 1; 0 is an empty slot.
    entry: u32,
}

// Eight slots to a cache line.
const _: () = assert!(size_of::<Slot>() == 8 && align_of::<Slot>() == 4);

/// All zero bytes, so a fresh mapping is an empty index (`ArenaVec::zeroed`).
const EMPTY: Slot = Slot { tag: 0, entry: 0 };

/// A slot of a retiring index whose entry has moved on (migrated to the
/// new index, or removed): probes pass it, nothing is placed in it. Entry
/// numbers stop below it (`ENTRIES_MAX_LIMIT`).
const MOVED: Slot = Slot {
    tag: 0,
    entry: u32::MAX,
};

/// An index of fewer slots is rebuilt in one go (a few hundred µs at
/// most); a larger one is rebuilt incrementally (`Retiring`).
const INCREMENTAL_SLOTS_MIN: usize = 1 << 15;

/// Entries of a retiring index migrated per insert or removal, scanning
/// at most 16 slots for each. A doubling starts with the old index about
/// half full, so it ends within an eighth of the old index's slots in
/// inserts, long before the new index is half full; a shrinking index is
/// sparse, and its empty slots cost a read each.
const MIGRATE_ENTRIES_PER_OP: usize = 8;
const MIGRATE_SCAN_PER_ENTRY: usize = 16;

/// The index being replaced while its entries migrate, a few per
/// operation, into the new one: rebuilding an index of millions of slots
/// in one go stopped the shard for 100-500 ms.
struct Retiring {
    slots: ArenaVec<Slot>,
    shift: u32,
    /// Slots below this have migrated (they are `MOVED` or `EMPTY`).
    cursor: usize,
    /// Entries still indexed here.
    live: usize,
}

/// Index slots in a fresh index (a power of two).
const SLOTS_MIN: usize = 16;

/// What `approx_bytes` counts for an entry's heap: a boxed key of a few
/// values and an accumulator or a short row.
pub const HEAP_BYTES_PER_ENTRY: usize = 64;

/// Entries (and index slots) are numbered in 32 bits.
pub const ENTRIES_MAX_LIMIT: usize = u32::MAX as usize - 1;

struct Entry<V> {
    hash: u64,
    key: GroupKey,
    value: V,
}

/// A map from group key to `V` in two arenas: the entries, densely packed
/// in insertion order (holes are filled by the last entry), and an
/// open-addressing index over them (linear probing, at most half full,
/// backward-shift deletion, so there are no tombstones).
///
/// A large index is resized incrementally: the new index takes inserts
/// and migrated entries while the old one (`Retiring`) is read until its
/// last slot has moved.
///
/// **Invariant:** every entry has exactly one index slot: in the index,
/// reachable from its home slot without crossing an empty slot, or in the
/// retiring index, reachable from its home there crossing only occupied
/// and `MOVED` slots.
pub struct KeyedState<V> {
    entries: ArenaVec<Entry<V>>,
    /// Length 0 or a power of two of at least `SLOTS_MIN`.
    slots: ArenaVec<Slot>,
    /// `64 - log2(slots.len())`: the home slot is the hash's top bits,
    /// which FxHash mixes best.
    shift: u32,
    retiring: Option<Retiring>,
    entries_max: usize,
}

impl<V> std::fmt::Debug for KeyedState<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("entries", &self.entries.len())
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// Asks the CPU to bring `value`'s cache line in, without waiting.
#[inline(always)]
fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint: it never faults and changes no
        // memory, whatever the address; this one is a live reference's.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// A slot's tag: the hash's top 32 bits (see `Slot`).
#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The hash every state index uses for a key.
#[inline]
pub fn key_hash(key: &[Value]) -> u64 {
    fxhash::hash64(key)
}

impl<V> KeyedState<V> {
    pub fn new(entries_max: usize) -> KeyedState<V> {
        assert!(entries_max > 0 && entries_max <= ENTRIES_MAX_LIMIT);
        KeyedState {
            entries: ArenaVec::new(),
            slots: ArenaVec::new(),
            shift: 64,
            retiring: None,
            entries_max,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of memory mapped for this state (entries and index; key and
    /// accumulator contents on the heap are not counted).
    pub fn mapped_bytes(&self) -> usize {
        self.entries.mapped_bytes()
            + self.slots.mapped_bytes()
            + self.retiring.as_ref().map_or(0, |r| r.slots.mapped_bytes())
    }

    /// An estimate of the state's memory, heap included: the mapped
    /// bytes plus `HEAP_BYTES_PER_ENTRY` for each entry's key and
    /// contents. It decides how a checkpoint copies the state
    /// (`Operator::state_bytes`), where being within a factor of two is
    /// enough.
    pub fn approx_bytes(&self) -> usize {
        self.mapped_bytes() + self.len() * HEAP_BYTES_PER_ENTRY
    }

    /// The home of a slot, from its tag: the same as `home` of its hash
    /// (the home is the hash's top bits, at most 32 of them).
    #[inline]
    fn home_of_tag(&self, tag: u32) -> usize {
        debug_assert!(self.shift >= 32, "at most 2^32 slots");
        (u64::from(tag) >> (self.shift - 32)) as usize
    }

    fn home(&self, hash: u64) -> usize {
        debug_assert!(!self.slots.is_empty());
        (hash >> self.shift) as usize
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Starts loading what a lookup of `hash` will read, one step of its
    /// chain a call: `step` 0 the home slot; 1 the entry that slot names,
    /// if it carries the hash's tag (reading the slot the step before
    /// fetched). An aggregate over HOP windows looks a row's key up in
    /// several windows' states, each lookup dependent cache misses (slot,
    /// entry, boxed key): taking the steps for all windows in turn lets the
    /// misses of different windows overlap (`laminar run` of
    /// `bench/queries/q5_count.sql`: 8% less time; a third step for the
    /// key gained nothing more).
    #[inline]
    pub fn prefetch(&self, hash: u64, step: u8) {
        if self.slots.is_empty() {
            return;
        }
        let slot = &self.slots.as_slice()[self.home(hash)];
        if step == 0 {
            prefetch_read(slot);
        } else if slot.entry != 0 && slot.tag == tag_of(hash) {
            prefetch_read(&self.entries.as_slice()[slot.entry as usize - 1]);
        }
    }

    /// Where `key` is indexed: whether in the retiring index, the slot
    /// position there, and the entry position.
    fn find(&self, key: &[Value], hash: u64) -> Option<(bool, usize, usize)> {
        if let Some((slot, e)) = self.find_new(key, hash) {
            return Some((false, slot, e));
        }
        // Checked here so the hit path stays as small as it was without
        // retiring indexes (the call is cold and out of line).
        self.retiring.as_ref()?;
        let (slot, e) = self.find_retiring(key, hash)?;
        Some((true, slot, e))
    }

    /// The slot position and entry position of `key` in the index.
    fn find_new(&self, key: &[Value], hash: u64) -> Option<(usize, usize)> {
        if self.slots.is_empty() {
            return None;
        }
        let (mask, tag) = (self.mask(), tag_of(hash));
        let slots = self.slots.as_slice();
        let entries = self.entries.as_slice();
        let mut i = self.home(hash);
        loop {
            let s = slots[i];
            if s.entry == 0 {
                return None;
            }
            if s.tag == tag {
                let e = &entries[s.entry as usize - 1];
                if e.hash == hash && *e.key == *key {
                    return Some((i, s.entry as usize - 1));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot position and entry position of `key` in the retiring
    /// index. Terminates: the retiring index was at most half full and
    /// gains no entries, so it keeps empty slots.
    #[cold]
    #[inline(never)]
    fn find_retiring(&self, key: &[Value], hash: u64) -> Option<(usize, usize)> {
        let r = self.retiring.as_ref()?;
        let (mask, tag) = (r.slots.len() - 1, tag_of(hash));
        let slots = r.slots.as_slice();
        let entries = self.entries.as_slice();
        let mut i = (hash >> r.shift) as usize;
        loop {
            let s = slots[i];
            if s.entry == 0 {
                return None;
            }
            if s != MOVED && s.tag == tag {
                let e = &entries[s.entry as usize - 1];
                if e.hash == hash && *e.key == *key {
                    return Some((i, s.entry as usize - 1));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts entry `entry` (with `hash`) into the first free slot from its
    /// home.
    fn place(&mut self, hash: u64, entry: usize) {
        self.place_tagged(tag_of(hash), entry);
    }

    /// `place` for a slot whose tag is known (a migrated one).
    fn place_tagged(&mut self, tag: u32, entry: usize) {
        let mask = self.mask();
        let mut i = self.home_of_tag(tag);
        let slots = self.slots.as_mut_slice();
        while slots[i].entry != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = Slot {
            tag,
            entry: (entry + 1) as u32,
        };
    }

    /// Rebuilds the index with `n` slots (a power of two, more than twice
    /// the entries).
    fn reindex(&mut self, n: usize) {
        assert!(n.is_power_of_two() && n >= SLOTS_MIN && n >= 2 * self.entries.len());
        // Homes come from 32-bit tags (`home_of_tag`): 2^32 slots at most,
        // 2^31 entries, far past any configured limit's memory.
        assert!(n <= 1 << 32, "an index of {n} slots");
        // A rebuild from the entries supersedes any migration.
        self.retiring = None;
        // SAFETY: a `Slot` is two u32s, and all zero is `EMPTY`.
        self.slots = unsafe { ArenaVec::zeroed(n) };
        self.shift = 64 - n.trailing_zeros();
        for i in 0..self.entries.len() {
            let hash = self.entries[i].hash;
            self.place(hash, i);
        }
    }

    /// Replaces the index by one of `n` slots (a power of two, more than
    /// twice the entries): at once when the old one is small, else by
    /// migration (`Retiring`), one `migrate` step per insert and removal.
    fn resize(&mut self, n: usize) {
        if self.slots.len() < INCREMENTAL_SLOTS_MIN || self.retiring.is_some() {
            self.reindex(n);
            return;
        }
        assert!(n.is_power_of_two() && n >= SLOTS_MIN && n >= 2 * self.entries.len());
        // Homes come from 32-bit tags (`home_of_tag`): 2^32 slots at most,
        // 2^31 entries, far past any configured limit's memory.
        assert!(n <= 1 << 32, "an index of {n} slots");
        // SAFETY: a `Slot` is two u32s, and all zero is `EMPTY`.
        let fresh = unsafe { ArenaVec::zeroed(n) };
        let old = std::mem::replace(&mut self.slots, fresh);
        let old_shift = std::mem::replace(&mut self.shift, 64 - n.trailing_zeros());
        self.retiring = Some(Retiring {
            slots: old,
            shift: old_shift,
            cursor: 0,
            live: self.entries.len(),
        });
        self.migrate(MIGRATE_ENTRIES_PER_OP);
    }

    /// Moves up to `count` entries of the retiring index into the index
    /// (scanning at most `MIGRATE_SCAN_PER_ENTRY` slots for each); drops
    /// the retiring index once every slot has moved.
    fn migrate(&mut self, count: usize) {
        let Some(mut r) = self.retiring.take() else { return };
        let end = r
            .slots
            .len()
            .min(r.cursor.saturating_add(count.saturating_mul(MIGRATE_SCAN_PER_ENTRY)));
        let mut moved = 0;
        while r.cursor < end && moved < count {
            let s = r.slots[r.cursor];
            if s.entry != 0 && s != MOVED {
                let e = s.entry as usize - 1;
                self.place_tagged(s.tag, e);
                r.slots[r.cursor] = MOVED;
                r.live -= 1;
                moved += 1;
            }
            r.cursor += 1;
        }
        if r.cursor < r.slots.len() {
            self.retiring = Some(r);
        } else {
            debug_assert_eq!(r.live, 0, "every entry migrated");
        }
    }

    /// Entries indexed in the index proper (not the retiring one).
    fn live_new(&self) -> usize {
        self.entries.len() - self.retiring.as_ref().map_or(0, |r| r.live)
    }

    pub fn get(&self, key: &[Value]) -> Option<&V> {
        let (_, _, e) = self.find(key, key_hash(key))?;
        Some(&self.entries[e].value)
    }

    pub fn get_mut(&mut self, key: &[Value]) -> Option<&mut V> {
        let (_, _, e) = self.find(key, key_hash(key))?;
        Some(&mut self.entries[e].value)
    }

    /// The entry for `key`, created by `init` when absent. Allocates only
    /// when the key is new (the owned key; the arenas grow by doubling).
    /// `live_elsewhere` is the operator's entry count outside this map, so
    /// that the limit can span several maps (one per open window).
    pub fn get_or_insert_with(
        &mut self,
        key: &[Value],
        live_elsewhere: usize,
        operator: &str,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V, ExecError> {
        self.get_or_insert_hashed(key, key_hash(key), live_elsewhere, operator, init)
    }

    /// `get_or_insert_with` for a key whose `key_hash` is known.
    pub fn get_or_insert_hashed(
        &mut self,
        key: &[Value],
        hash: u64,
        live_elsewhere: usize,
        operator: &str,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V, ExecError> {
        debug_assert_eq!(hash, key_hash(key));
        if let Some((_, _, e)) = self.find(key, hash) {
            return Ok(&mut self.entries[e].value);
        }
        let e = self.push_absent(hash, live_elsewhere, operator, || (key.into(), init()))?;
        Ok(&mut self.entries[e].value)
    }

    /// Adds an entry for a key known to be absent (hash `hash`), made by
    /// `make` once the limit allows it; returns its entry position.
    fn push_absent(
        &mut self,
        hash: u64,
        live_elsewhere: usize,
        operator: &str,
        make: impl FnOnce() -> (GroupKey, V),
    ) -> Result<usize, ExecError> {
        let len = self.entries.len();
        if len + live_elsewhere >= self.entries_max {
            return Err(ExecError::StateLimit {
                operator: operator.to_string(),
                what: "live groups",
                limit: self.entries_max,
            });
        }
        self.migrate(MIGRATE_ENTRIES_PER_OP);
        if self.retiring.is_some() && 2 * (self.live_new() + 1) > self.slots.len() {
            // Cannot happen with inserts alone (see MIGRATE_ENTRIES_PER_OP);
            // the index stays at most half full whatever the mix.
            self.migrate(usize::MAX);
        }
        if 2 * (len + 1) > self.slots.len() {
            self.resize((2 * self.slots.len()).max(SLOTS_MIN));
        }
        let (key, value) = make();
        let e = self.entries.push(Entry { hash, key, value });
        self.place(hash, e);
        Ok(e)
    }

    /// Makes room for `additional` more entries at once, so a restore of
    /// many entries indexes them once instead of at every doubling.
    pub fn reserve(&mut self, additional: usize) {
        let wanted = (2 * (self.entries.len() + additional))
            .next_power_of_two()
            .max(SLOTS_MIN);
        if wanted > self.slots.len() {
            self.reindex(wanted);
        }
    }

    /// Inserts an entry for a key that must not be there yet, moving the
    /// key in (a restore's keys are already boxed: cloning each again was
    /// a tenth of a restore). Errors if the key is there (a damaged
    /// snapshot) or the state is full.
    pub fn insert_new(
        &mut self,
        key: GroupKey,
        value: V,
        live_elsewhere: usize,
        operator: &str,
    ) -> Result<(), ExecError> {
        let hash = key_hash(&key);
        if self.find(&key, hash).is_some() {
            return Err(ExecError::Restore {
                reason: format!("{operator}: the snapshot holds a key twice"),
            });
        }
        self.push_absent(hash, live_elsewhere, operator, || (key, value))?;
        Ok(())
    }

    pub fn remove(&mut self, key: &[Value]) -> Option<V> {
        let (retired, pos, e) = self.find(key, key_hash(key))?;
        if retired {
            // The retiring index only ever loses entries: a `MOVED` slot
            // keeps the probe runs through it intact.
            let r = self.retiring.as_mut().expect("found there");
            r.slots[pos] = MOVED;
            r.live -= 1;
        } else {
            self.unplace(pos);
        }
        // The last entry moves into position `e`: repoint its slot.
        let last = self.entries.len() - 1;
        if e != last {
            self.repoint(last, e);
        }
        let removed = self.entries.swap_remove(e);
        let len = self.entries.len();
        if len == 0 {
            self.slots = ArenaVec::new();
            self.shift = 64;
            self.retiring = None;
        } else {
            self.migrate(MIGRATE_ENTRIES_PER_OP);
            if self.slots.len() > SLOTS_MIN && len * 8 < self.slots.len() {
                // A shrink while a migration runs finishes it first: the
                // entries are few against the slots, so that is mostly a
                // sequential scan.
                self.migrate(usize::MAX);
                self.resize(self.slots.len() / 2);
            }
        }
        Some(removed.value)
    }

    /// Empties slot `pos` of the index by backward-shift deletion: later
    /// slots of the probe run move into the hole when their home allows
    /// it, so no tombstone is needed.
    fn unplace(&mut self, pos: usize) {
        let mask = self.mask();
        let mut hole = pos;
        let mut j = (pos + 1) & mask;
        loop {
            let s = self.slots[j];
            if s.entry == 0 {
                break;
            }
            let home = self.home_of_tag(s.tag);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = EMPTY;
    }

    /// Entry `from` is moving to position `to`: its slot, in whichever
    /// index holds it, now says so.
    fn repoint(&mut self, from: usize, to: usize) {
        let hash = self.entries[from].hash;
        let (wanted, now) = ((from + 1) as u32, (to + 1) as u32);
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            match self.slots[i].entry {
                0 => break,
                x if x == wanted => {
                    self.slots[i].entry = now;
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
        let r = self
            .retiring
            .as_mut()
            .expect("an entry not in the index is in the retiring one");
        let mask = r.slots.len() - 1;
        let mut i = (hash >> r.shift) as usize;
        while r.slots[i].entry != wanted {
            assert_ne!(r.slots[i].entry, 0, "every entry is indexed");
            i = (i + 1) & mask;
        }
        r.slots[i].entry = now;
    }

    /// Entries in insertion order, except that a removal moves the last
    /// entry into the hole.
    pub fn iter(&self) -> impl Iterator<Item = (&GroupKey, &V)> {
        self.entries.as_slice().iter().map(|e| (&e.key, &e.value))
    }

    /// Like `drain`, but keeps both arenas mapped for the next use of this
    /// map (an aggregate reuses a closed window's state for a new window,
    /// so steady windowing maps no fresh pages).
    pub fn drain_keeping_pages(&mut self, mut f: impl FnMut(GroupKey, V)) {
        self.entries.drain_keeping_pages(|e| f(e.key, e.value));
        self.retiring = None;
        self.slots.as_mut_slice().fill(EMPTY);
    }

    /// This map, to be emptied a slice at a time (`Emptying::step`) and
    /// then reused, its pages still mapped.
    pub fn into_emptying(self) -> Emptying<V> {
        Emptying {
            slots_left: self.slots.len(),
            state: self,
        }
    }

    /// Takes every entry out (in `iter` order), leaving the map empty.
    pub fn drain(&mut self) -> impl Iterator<Item = (GroupKey, V)> {
        self.slots = ArenaVec::new();
        self.shift = 64;
        self.retiring = None;
        let entries: ArenaDrain<Entry<V>> = self.entries.drain();
        entries.map(|e| (e.key, e.value))
    }
}

/// Index slots cleared per unit of an `Emptying` step's budget: an
/// entry's drop (two frees and their cache misses, ~100 ns) costs about
/// as much as clearing 64 slots.
const SLOTS_PER_STEP_UNIT: usize = 64;

/// A map being emptied in slices: a closed window's groups, whose drop
/// (hundreds of thousands of entries, each with heap parts, ~100 ns
/// apiece) would otherwise stall the event path in one go. Nothing reads
/// or writes the map meanwhile; its index still names dropped entries
/// until the end, when it is cleared too.
pub struct Emptying<V> {
    state: KeyedState<V>,
    /// Index slots `..slots_left` are still to be cleared.
    slots_left: usize,
}

impl<V> Emptying<V> {
    /// Drops up to `budget` entries, or, once they are gone, clears up to
    /// `budget × 64` index slots. Returns the empty map, ready for reuse,
    /// once everything is done.
    pub fn step(&mut self, budget: usize) -> bool {
        let budget = budget.max(1);
        let len = self.state.entries.len();
        if len > 0 {
            self.state.entries.truncate_keeping_pages(len.saturating_sub(budget));
            return false;
        }
        let from = self
            .slots_left
            .saturating_sub(budget.saturating_mul(SLOTS_PER_STEP_UNIT));
        self.state.slots.as_mut_slice()[from..self.slots_left].fill(EMPTY);
        self.slots_left = from;
        if from > 0 {
            return false;
        }
        self.state.retiring = None;
        true
    }

    /// The emptied map, after `step` returned true.
    pub fn into_empty(self) -> KeyedState<V> {
        assert!(
            self.state.entries.is_empty() && self.slots_left == 0,
            "an emptying map is reused only once empty"
        );
        self.state
    }

    /// Empties the map at once.
    pub fn finish(mut self) -> KeyedState<V> {
        while !self.step(usize::MAX / SLOTS_PER_STEP_UNIT) {}
        self.into_empty()
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

    #[test]
    fn a_map_emptied_in_steps_works_as_new() {
        let dropped = std::rc::Rc::new(std::cell::Cell::new(0usize));
        struct Counted(std::rc::Rc<std::cell::Cell<usize>>, i64);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let mut s: KeyedState<Counted> = KeyedState::new(1 << 20);
        for round in 0..3i64 {
            // Past 32K slots the index grows incrementally: a retiring
            // index may be left when the map is emptied.
            for k in 0..40_000i64 {
                s.get_or_insert_with(&[Value::Int(k)], 0, "agg", || Counted(dropped.clone(), round))
                    .unwrap();
            }
            let mapped = s.mapped_bytes();
            let before = dropped.get();
            let mut e = s.into_emptying();
            let mut steps = 0;
            while !e.step(1_000) {
                steps += 1;
                assert!(dropped.get() - before <= steps * 1_000, "at most the budget per step");
            }
            assert_eq!(dropped.get() - before, 40_000, "every entry dropped once");
            assert!(steps >= 40, "in slices: {steps}");
            s = e.into_empty();
            assert_eq!(s.len(), 0);
            assert!(s.mapped_bytes() >= mapped / 2, "pages kept");
            for k in 0..40_000i64 {
                assert!(s.get(&[Value::Int(k)]).is_none(), "no stale slot answers");
            }
            s.get_or_insert_with(&[Value::Int(7)], 0, "agg", || Counted(dropped.clone(), 9))
                .unwrap();
            assert_eq!(s.get(&[Value::Int(7)]).map(|c| c.1), Some(9));
            s.remove(&[Value::Int(7)]);
        }
        // Emptied at once.
        for k in 0..1_000i64 {
            s.get_or_insert_with(&[Value::Int(k)], 0, "agg", || Counted(dropped.clone(), 0))
                .unwrap();
        }
        let before = dropped.get();
        let s = s.into_emptying().finish();
        assert_eq!((s.len(), dropped.get() - before), (0, 1_000));
    }

    #[test]
    fn a_map_drained_keeping_its_pages_works_as_new() {
        let mut s: KeyedState<u64> = KeyedState::new(1 << 20);
        for round in 0..3u64 {
            for k in 0..5_000i64 {
                *s.get_or_insert_with(&[Value::Int(k)], 0, "agg", || round).unwrap() += 1;
            }
            assert_eq!(s.len(), 5_000);
            let mapped = s.mapped_bytes();
            let mut seen = 0;
            s.drain_keeping_pages(|key, v| {
                assert_eq!(v, round + 1, "{key:?}");
                seen += 1;
            });
            assert_eq!((seen, s.len()), (5_000, 0));
            assert_eq!(s.mapped_bytes(), mapped, "the pages stay");
            assert_eq!(s.get(&[Value::Int(7)]), None, "the index is empty too");
        }
    }

    /// A seeded xorshift64 sequence (the tests' operations and keys).
    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut rng = seed;
        move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        }
    }

    impl<V> KeyedState<V> {
        /// Checks the indexes against the entries: each entry is found at
        /// its own position, and the slots count exactly the entries.
        fn assert_consistent(&self) {
            let occupied =
                |slots: &ArenaVec<Slot>| slots.as_slice().iter().filter(|s| s.entry != 0 && **s != MOVED).count();
            let in_new = occupied(&self.slots);
            let in_old = self.retiring.as_ref().map_or(0, |r| occupied(&r.slots));
            assert_eq!(in_old, self.retiring.as_ref().map_or(0, |r| r.live));
            assert_eq!(in_new + in_old, self.len(), "slots against entries");
            assert!(2 * in_new <= self.slots.len().max(1), "at most half full");
            for (i, e) in self.entries.as_slice().iter().enumerate() {
                let (_, _, at) = self.find(&e.key, e.hash).expect("every entry is indexed");
                assert_eq!(at, i);
            }
        }
    }

    /// Incremental resizing against a std HashMap: growth past
    /// `INCREMENTAL_SLOTS_MIN` to 200,000 keys with removals, lookups and
    /// updates interleaved while indexes retire, then shrinking to a few
    /// hundred keys; the indexes are checked whole every 10,000 steps
    /// (when migrations are under way, too).
    #[test]
    fn incremental_resizes_match_a_hash_map() {
        use std::collections::HashMap;
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let mut state: KeyedState<u64> = KeyedState::new(1 << 20);
        let mut model: HashMap<i64, u64> = HashMap::new();
        let (mut saw_retiring, mut steps) = (false, 0u64);
        let check = |state: &KeyedState<u64>, model: &HashMap<i64, u64>, steps: u64| {
            if steps.is_multiple_of(10_000) {
                state.assert_consistent();
                assert_eq!(state.len(), model.len());
            }
        };
        for k in 0..200_000i64 {
            let key = k * 1024;
            *state.get_or_insert_with(&[Value::Int(key)], 0, "t", || 0).unwrap() += 1;
            *model.entry(key).or_insert(0) += 1;
            let r = next();
            let other = (r % (k as u64 + 1)) as i64 * 1024;
            match (r >> 32) % 4 {
                0 => assert_eq!(state.remove(&[Value::Int(other)]), model.remove(&other)),
                1 => assert_eq!(state.get(&[Value::Int(other)]), model.get(&other)),
                _ => {
                    if let (Some(v), Some(m)) = (state.get_mut(&[Value::Int(other)]), model.get_mut(&other)) {
                        *v += 1;
                        *m += 1;
                    }
                }
            }
            saw_retiring |= state.retiring.is_some();
            steps += 1;
            check(&state, &model, steps);
        }
        assert!(saw_retiring, "the test reached incremental resizing");
        state.assert_consistent();
        let keys: Vec<i64> = model.keys().copied().collect();
        for (n, k) in keys.iter().enumerate() {
            if n % 400 != 0 {
                assert_eq!(state.remove(&[Value::Int(*k)]), model.remove(k));
                steps += 1;
                check(&state, &model, steps);
            }
        }
        state.assert_consistent();
        assert!(
            state.slots.len() < INCREMENTAL_SLOTS_MIN,
            "shrunk: {} slots",
            state.slots.len()
        );
        for (k, v) in &model {
            assert_eq!(state.get(&[Value::Int(*k)]), Some(v));
        }
    }

    /// Random inserts, updates and removals against a std HashMap: the
    /// index must find exactly the live keys after every step, across
    /// growth, shrinking and backward-shift deletion.
    #[test]
    fn matches_a_hash_map_under_random_operations() {
        use std::collections::HashMap;
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let mut state: KeyedState<u64> = KeyedState::new(1 << 20);
        let mut model: HashMap<i64, u64> = HashMap::new();
        for step in 0..200_000u64 {
            let r = next();
            // Keys are multiples of 1024 in part, which a low-bit index
            // would pile into one probe run.
            let k = if r.is_multiple_of(3) {
                ((r >> 8) % 4096) as i64 * 1024
            } else {
                ((r >> 8) % 3000) as i64
            };
            let key = [Value::Int(k)];
            // Grow for the first half, then shrink.
            let remove_share = if step < 100_000 { 3 } else { 6 };
            if (r >> 40) % 10 < remove_share {
                assert_eq!(state.remove(&key), model.remove(&k), "remove {k} at step {step}");
            } else {
                *state.get_or_insert_with(&key, 0, "t", || 0).unwrap() += 1;
                *model.entry(k).or_insert(0) += 1;
            }
            assert_eq!(state.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(state.get(&[Value::Int(*k)]), Some(v));
        }
        let mut drained: Vec<(i64, u64)> = state
            .drain()
            .map(|(k, v)| match &k[..] {
                [Value::Int(k)] => (*k, v),
                other => panic!("unexpected key {other:?}"),
            })
            .collect();
        drained.sort_unstable();
        let mut expected: Vec<(i64, u64)> = model.into_iter().collect();
        expected.sort_unstable();
        assert_eq!(drained, expected);
        assert!(state.is_empty());
        assert_eq!(state.mapped_bytes(), 0);
    }

    #[test]
    fn memory_follows_the_live_entries() {
        let mut s: KeyedState<[u64; 4]> = KeyedState::new(1 << 20);
        for k in 0..100_000 {
            s.get_or_insert_with(&[Value::Int(k)], 0, "t", || [0; 4]).unwrap();
        }
        let full = s.mapped_bytes();
        for k in 0..99_000 {
            s.remove(&[Value::Int(k)]).expect("present");
        }
        assert!(s.mapped_bytes() * 8 < full, "{} of {full} bytes kept", s.mapped_bytes());
        assert_eq!(s.get(&[Value::Int(99_500)]), Some(&[0; 4]));
    }
}
