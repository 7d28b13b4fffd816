//! Operator state memory: growable arrays in anonymous memory maps.
//!
//! Every stateful operator instance belongs to one shard, so its arenas
//! are that shard's alone (nothing here is `Send`-shared or locked). State
//! lives outside the global allocator for three reasons: a window's whole
//! state is returned to the kernel in one `munmap` when the window closes
//! (no allocator fragmentation left behind by millions of small groups),
//! large arenas can ask for transparent huge pages (`madvise`), and the
//! layout is ours to assert.
//!
//! `ArenaVec<T>` is a vector whose buffer is a private anonymous mapping.
//! It grows by doubling and shrinks to half when a quarter is in use, so
//! memory follows the live state both ways. Both resize the mapping with
//! `mremap`: the kernel moves the pages (elements move bitwise, which is
//! what a Rust move is), so a resize costs page-table updates, not a copy
//! of the state; only if `mremap` fails are the elements copied into a
//! new mapping.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::{MmapMut, MmapOptions, RemapOptions};

/// Arenas at least this large ask for transparent huge pages.
pub const HUGE_PAGE_BYTES_MIN: usize = 2 << 20;

/// Mappings are made of whole pages; the smallest arena is one page.
const PAGE_BYTES: usize = 4096;

static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// Whether large arenas ask for transparent huge pages (default: no;
/// see `laminar run --huge-pages`).
/// It is a hint: the kernel's THP setting decides.
pub fn set_huge_pages(enabled: bool) {
    HUGE_PAGES.store(enabled, Ordering::Relaxed);
}

/// A vector in an anonymous memory map.
pub struct ArenaVec<T> {
    /// None until the first element (an empty arena maps nothing).
    map: Option<MmapMut>,
    /// The mapping's start (dangling when there is none). A raw pointer,
    /// so arenas are neither `Send` nor `Sync`: they stay on their shard.
    ptr: *mut T,
    len: usize,
    cap: usize,
    _owns: PhantomData<T>,
}

impl<T> ArenaVec<T> {
    const ELEMENT_BYTES: usize = {
        assert!(size_of::<T>() > 0, "arenas hold sized elements");
        assert!(align_of::<T>() <= PAGE_BYTES, "page alignment covers every element");
        size_of::<T>()
    };

    pub const fn new() -> ArenaVec<T> {
        ArenaVec {
            map: None,
            ptr: ptr::NonNull::dangling().as_ptr(),
            len: 0,
            cap: 0,
            _owns: PhantomData,
        }
    }

    /// An arena with room for at least `n` elements.
    pub fn with_capacity(n: usize) -> ArenaVec<T> {
        let mut a = ArenaVec::new();
        if n > 0 {
            a.remap(n);
        }
        a
    }

    /// An arena of `n` elements whose bytes are all zero, as a fresh
    /// anonymous mapping is: nothing is written, and pages are faulted in
    /// as they are first touched.
    ///
    /// # Safety
    ///
    /// The all-zero bit pattern must be a valid `T`.
    pub unsafe fn zeroed(n: usize) -> ArenaVec<T> {
        let mut a = ArenaVec::with_capacity(n);
        debug_assert!(n <= a.cap);
        // The mapping is fresh (with_capacity maps anew; only an existing
        // mapping is resized by mremap), so its `n` elements are zero
        // bytes, which the caller promises are valid `T`s.
        a.len = n;
        a
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes mapped.
    pub fn mapped_bytes(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    fn base(&self) -> *mut T {
        self.ptr
    }

    /// Resizes the mapping to room for at least `n` (and at least `len`)
    /// elements. An existing mapping is resized by `mremap`, which moves
    /// page table entries instead of bytes: growing a state of hundreds
    /// of MB neither copies it nor faults in a second copy (a copy into a
    /// fresh mapping stopped the shard 0.2-1.4 s at millions of entries).
    fn remap(&mut self, n: usize) {
        assert!(n >= self.len);
        let bytes = n
            .checked_mul(Self::ELEMENT_BYTES)
            .and_then(|b| b.checked_next_multiple_of(PAGE_BYTES))
            .expect("arena size overflows");
        let resized = match self.map.as_mut() {
            // SAFETY: the mapping is anonymous (no file end to pass), and
            // nothing points into it but `self.ptr`, which is set again
            // from the mapping below; the `len` elements stay initialised
            // and owned once, wherever the kernel moves the pages.
            Some(map) => unsafe { map.remap(bytes, RemapOptions::new().may_move(true)) }.is_ok(),
            None => false,
        };
        if !resized {
            self.map_fresh(bytes);
        }
        let map = self.map.as_mut().expect("mapped above");
        if bytes >= HUGE_PAGE_BYTES_MIN && HUGE_PAGES.load(Ordering::Relaxed) {
            // A hint only: failure (THP disabled) changes nothing. Again
            // after each resize: the range may have grown past 2 MiB.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        self.cap = bytes / Self::ELEMENT_BYTES;
        self.ptr = map.as_mut_ptr() as *mut T;
    }

    /// Moves the elements into a new mapping of `bytes`.
    fn map_fresh(&mut self, bytes: usize) {
        let mut map = MmapOptions::new()
            .len(bytes)
            .map_anon()
            .unwrap_or_else(|e| panic!("mapping {bytes} bytes of operator state: {e}"));
        let new_base = map.as_mut_ptr() as *mut T;
        if self.len > 0 {
            // SAFETY: the old buffer holds `len` initialised elements, the
            // new one has room for them (`bytes` was sized from `n >= len`);
            // they are distinct mappings. The elements are moved bitwise
            // and the old mapping is dropped without dropping them, so
            // each element is owned exactly once.
            unsafe { ptr::copy_nonoverlapping(self.base(), new_base, self.len) };
        }
        self.map = Some(map);
        self.ptr = new_base;
    }

    pub fn push(&mut self, value: T) -> usize {
        if self.len == self.cap {
            let grown = (self.cap * 2).max(PAGE_BYTES / Self::ELEMENT_BYTES).max(1);
            self.remap(grown);
        }
        // SAFETY: `len < cap`, so the slot is inside the mapping and holds
        // no initialised element.
        unsafe { ptr::write(self.base().add(self.len), value) };
        self.len += 1;
        self.len - 1
    }

    /// Removes element `i`, moving the last element into its place.
    pub fn swap_remove(&mut self, i: usize) -> T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        let last = self.len - 1;
        // SAFETY: `i` and `last` are initialised; the element at `i` is
        // read out (now owned by the caller) and the slot is refilled with
        // the last element, whose old slot leaves the initialised prefix.
        let value = unsafe {
            let base = self.base();
            let value = ptr::read(base.add(i));
            if i != last {
                ptr::copy_nonoverlapping(base.add(last), base.add(i), 1);
            }
            value
        };
        self.len = last;
        self.maybe_shrink();
        value
    }

    /// Returns memory when three quarters of the arena are unused.
    fn maybe_shrink(&mut self) {
        let min = PAGE_BYTES / Self::ELEMENT_BYTES;
        if self.len == 0 {
            self.unmap();
        } else if self.cap > min && self.len * 4 <= self.cap {
            self.remap((self.cap / 2).max(min));
        }
    }

    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` elements are initialised; the base is
        // aligned (page-aligned mapping, or dangling when len is 0).
        unsafe { std::slice::from_raw_parts(self.base(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and `&mut self` makes it unique.
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.len) }
    }

    /// Drops every element and unmaps the memory.
    pub fn clear(&mut self) {
        let len = self.len;
        // Set first: a panicking destructor must not cause a double drop.
        self.len = 0;
        // SAFETY: the first `len` elements were initialised and are no
        // longer reachable through `self`.
        unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.base(), len)) };
        self.unmap();
    }

    fn unmap(&mut self) {
        debug_assert_eq!(self.len, 0);
        self.map = None;
        self.ptr = ptr::NonNull::dangling().as_ptr();
        self.cap = 0;
    }

    /// Passes every element, in order, to `f`, leaving the arena empty but
    /// still mapped: the next fill reuses its pages, already faulted in,
    /// instead of mapping (and having the kernel zero) fresh ones. If `f`
    /// panics the elements not yet passed are leaked, never dropped twice.
    pub fn drain_keeping_pages(&mut self, mut f: impl FnMut(T)) {
        let len = self.len;
        // Set first: the elements are moved out one by one below.
        self.len = 0;
        for i in 0..len {
            // SAFETY: element `i` was initialised and, `len` being 0 now,
            // is reachable only through this read, once.
            f(unsafe { ptr::read(self.base().add(i)) });
        }
    }

    /// Drops the elements from `len` on, keeping the pages mapped (no
    /// shrinking): what `drain_keeping_pages` does, a slice at a time.
    pub fn truncate_keeping_pages(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let old = self.len;
        // Set first: a panicking destructor must not cause a double drop.
        self.len = len;
        // SAFETY: elements `len..old` were initialised and, `self.len`
        // being `len` now, are no longer reachable through `self`.
        unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.base().add(len), old - len)) };
    }

    /// Moves every element out, in order, leaving the arena empty.
    pub fn drain(&mut self) -> ArenaDrain<T> {
        ArenaDrain {
            arena: std::mem::take(self),
            next: 0,
        }
    }
}

impl<T> Default for ArenaVec<T> {
    fn default() -> Self {
        ArenaVec::new()
    }
}

impl<T> Drop for ArenaVec<T> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<T> std::ops::Index<usize> for ArenaVec<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.as_slice()[i]
    }
}

impl<T> std::ops::IndexMut<usize> for ArenaVec<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.as_mut_slice()[i]
    }
}

/// The elements of a drained arena; dropping it drops what is left.
pub struct ArenaDrain<T> {
    arena: ArenaVec<T>,
    next: usize,
}

impl<T> Iterator for ArenaDrain<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.next == self.arena.len {
            return None;
        }
        // SAFETY: elements `next..len` are initialised and not yet moved
        // out; advancing `next` first gives this one to the caller only.
        let value = unsafe { ptr::read(self.arena.base().add(self.next)) };
        self.next += 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.arena.len - self.next;
        (n, Some(n))
    }
}

impl<T> Drop for ArenaDrain<T> {
    fn drop(&mut self) {
        let (from, len) = (self.next, self.arena.len);
        self.arena.len = 0;
        // SAFETY: elements `from..len` are still initialised and owned
        // here; `len` is 0 now, so the arena's own drop drops nothing.
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.arena.base().add(from), len - from));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn grows_shrinks_and_drops_every_element_once() {
        let token = Rc::new(());
        let mut a = ArenaVec::new();
        for i in 0..100_000u64 {
            a.push((i, Rc::clone(&token)));
        }
        assert_eq!(Rc::strong_count(&token), 100_001);
        assert!(a.capacity() >= 100_000);
        let big = a.mapped_bytes();
        // Remove from the front: the last element fills each hole.
        for _ in 0..99_000 {
            let (_, t) = a.swap_remove(0);
            drop(t);
        }
        assert_eq!(a.len(), 1_000);
        assert!(
            a.mapped_bytes() * 8 <= big,
            "{} of {big} bytes still mapped",
            a.mapped_bytes()
        );
        assert_eq!(Rc::strong_count(&token), 1_001);
        let mut seen: Vec<u64> = a.drain().take(10).map(|(i, _)| i).collect();
        assert_eq!(seen.len(), 10);
        // The rest of the drain was dropped with it.
        assert_eq!(Rc::strong_count(&token), 1);
        seen.dedup();
        assert_eq!(seen.len(), 10);
        assert!(a.is_empty());
        assert_eq!(a.mapped_bytes(), 0);
    }

    #[test]
    fn drop_releases_elements() {
        let token = Rc::new(());
        {
            let mut a = ArenaVec::with_capacity(3);
            a.push(Rc::clone(&token));
            a.push(Rc::clone(&token));
        }
        assert_eq!(Rc::strong_count(&token), 1);
    }
}
