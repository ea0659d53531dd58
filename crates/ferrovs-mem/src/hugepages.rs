//! Transparent huge pages for the worker's large tables (connection slab, index
//! and timer wheel). Not a DPDK call: it lives in this layer because this layer
//! holds every `unsafe` block of ferrovs.
//!
//! A random lookup in a table of megabytes misses the TLB on nearly every access
//! when the table sits in 4 KiB pages; on a virtual machine each miss costs a
//! two-dimensional page walk, and a software prefetch that misses the TLB waits for
//! that walk. Backing the tables with 2 MiB pages removes almost all of those
//! misses. The kernel does that for regions marked with `madvise(MADV_HUGEPAGE)`
//! when `/sys/kernel/mm/transparent_hugepage/enabled` is `madvise` (the usual
//! default) or `always`; the mark must be set before the pages are first touched,
//! and only whole 2 MiB pages inside the region qualify, so [`HugeSlice`] starts
//! its tables on a 2 MiB boundary.

use std::alloc::Layout;
use std::fmt;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

/// Size and alignment of a transparent huge page on x86_64 and aarch64.
const HUGE_PAGE: usize = 2 << 20;
/// Base page size of x86_64 and aarch64 Linux (madvise wants an aligned start).
const PAGE: usize = 4096;

/// Asks the kernel to back the whole 2 MiB pages inside `mem` (memory not yet
/// touched, e.g. a fresh `Vec`'s `spare_capacity_mut()`) with transparent huge
/// pages. Only a hint: returns whether the kernel took it, and a refusal (THP
/// disabled, an old kernel) changes nothing but speed.
fn advise_hugepages<T>(mem: &mut [MaybeUninit<T>]) -> bool {
    let start = mem.as_mut_ptr() as usize;
    let len = std::mem::size_of_val(mem);
    if len < HUGE_PAGE {
        return false;
    }
    // madvise wants a page-aligned start; the partial page before it stays as is.
    let aligned = start.next_multiple_of(PAGE);
    let Some(addr) = NonNull::new(aligned as *mut std::ffi::c_void) else {
        return false;
    };
    let len = len - (aligned - start);
    // SAFETY: [aligned, aligned + len) lies inside `mem`, which this function
    // borrows exclusively, so it is mapped memory of this process that nothing else
    // uses meanwhile. MADV_HUGEPAGE only changes how the kernel backs the pages
    // (their contents stay what they are), so no Rust-visible memory changes.
    unsafe { madvise(addr, len, MmapAdvise::MADV_HUGEPAGE).is_ok() }
}

/// The allocator had no memory for a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory;

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("out of memory")
    }
}

/// A fixed-length array for a large table read at random: from 2 MiB up it starts
/// on a 2 MiB boundary and is marked for huge pages before its first touch, so
/// every page of it can be a huge page (a `Vec` of the same size starts wherever
/// the allocator puts it, and the pages before the first 2 MiB boundary and after
/// the last one stay small). Smaller arrays are ordinary allocations.
pub struct HugeSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    layout: Layout,
}

// SAFETY: a HugeSlice owns its elements like a Box<[T]> does, so it may move to or
// be shared with another thread exactly when T may.
unsafe impl<T: Send> Send for HugeSlice<T> {}
// SAFETY: as above; &HugeSlice only hands out &[T].
unsafe impl<T: Sync> Sync for HugeSlice<T> {}

impl<T: Clone> HugeSlice<T> {
    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> Result<Self, OutOfMemory> {
        Self::from_fn(len, |_| value.clone())
    }
}

impl<T> HugeSlice<T> {
    /// `len` elements, element `i` being `f(i)`.
    pub fn from_fn(len: usize, mut f: impl FnMut(usize) -> T) -> Result<Self, OutOfMemory> {
        let bytes = len.checked_mul(size_of::<T>()).ok_or(OutOfMemory)?;
        let align = if bytes >= HUGE_PAGE {
            HUGE_PAGE.max(align_of::<T>())
        } else {
            align_of::<T>()
        };
        // A huge-page array also ends on a huge-page boundary, so that its last
        // part is a whole huge page too (the padding is never written).
        let size = if align >= HUGE_PAGE {
            bytes
                .checked_next_multiple_of(HUGE_PAGE)
                .ok_or(OutOfMemory)?
        } else {
            bytes
        };
        let layout = Layout::from_size_align(size, align).map_err(|_| OutOfMemory)?;
        let ptr = if size == 0 {
            // Nothing to allocate (no elements, or zero-sized ones).
            NonNull::dangling()
        } else {
            // SAFETY: the layout has a non-zero size.
            let raw = NonNull::new(unsafe { std::alloc::alloc(layout) }).ok_or(OutOfMemory)?;
            // SAFETY: `raw` points at `size` bytes just allocated for us that
            // nothing else refers to; viewing them as uninitialised bytes is what
            // MaybeUninit allows. The view ends before the typed one below begins.
            let whole = unsafe {
                std::slice::from_raw_parts_mut(raw.as_ptr().cast::<MaybeUninit<u8>>(), size)
            };
            if align >= HUGE_PAGE {
                // Whole pages of our own: bind them to the node asked for (see
                // `numa`) before the first touch below.
                if let Some(node) = crate::numa::current_node() {
                    crate::numa::prefer_node(whole, node);
                }
            }
            advise_hugepages(whole);
            raw.cast::<T>()
        };
        // SAFETY: `ptr` is aligned for T and either holds `size >= bytes` bytes of
        // our own allocation, room for `len` Ts, or is dangling with `bytes == 0`,
        // which is a valid place for `len` zero-sized Ts.
        let spare =
            unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr().cast::<MaybeUninit<T>>(), len) };
        // (Should `f` panic, the memory leaks; nothing reads it.)
        for (i, slot) in spare.iter_mut().enumerate() {
            slot.write(f(i));
        }
        Ok(HugeSlice { ptr, len, layout })
    }

    /// Whether the array starts on a huge-page boundary (every array of 2 MiB or more).
    pub fn huge_aligned(&self) -> bool {
        self.layout.align() >= HUGE_PAGE
    }

    /// The NUMA node of the array's first element (None when empty, or without
    /// NUMA support in the kernel).
    pub fn node(&self) -> Option<u32> {
        self.first().and_then(crate::numa::node_of)
    }
}

impl<T> Deref for HugeSlice<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialised Ts owned by self (or is dangling
        // with a zero-sized extent, which from_raw_parts allows).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for HugeSlice<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: the elements are initialised and owned by self; dropped once here.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ))
        };
        if self.layout.size() > 0 {
            // SAFETY: `ptr` came from std::alloc::alloc with exactly this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) };
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for HugeSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeSlice").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_regions_are_left_alone_and_large_ones_stay_usable() {
        let mut small: Vec<u64> = Vec::with_capacity(16);
        assert!(!advise_hugepages(small.spare_capacity_mut()));
        let n = 3 * HUGE_PAGE / 8;
        let mut big: Vec<u64> = Vec::with_capacity(n);
        // The kernel may refuse (THP compiled out); either way the memory works.
        let _ = advise_hugepages(big.spare_capacity_mut());
        big.extend((0..n as u64).map(|i| i * 3));
        assert_eq!(big[n - 1], (n as u64 - 1) * 3);
        assert!(!advise_hugepages::<u64>(&mut []));
    }

    #[test]
    fn a_large_huge_slice_starts_on_a_huge_page_and_holds_its_values() {
        let n = 5 * HUGE_PAGE / 8 + 3;
        let mut s = HugeSlice::filled(n, 7u64).unwrap();
        assert!(s.huge_aligned());
        assert_eq!(s.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(s.len(), n);
        assert!(s.iter().all(|&v| v == 7));
        s[n - 1] = 9;
        assert_eq!(s[n - 1], 9);
    }

    #[test]
    fn small_and_empty_huge_slices_are_ordinary_allocations() {
        let s = HugeSlice::filled(10, [1u8; 64]).unwrap();
        assert!(!s.huge_aligned());
        assert_eq!(s.len(), 10);
        assert_eq!(s[9], [1u8; 64]);
        let e: HugeSlice<u32> = HugeSlice::filled(0, 1).unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn elements_are_dropped_with_the_slice() {
        use std::rc::Rc;
        let shared = Rc::new(());
        let s = HugeSlice::filled(4, shared.clone()).unwrap();
        assert_eq!(Rc::strong_count(&shared), 5);
        drop(s);
        assert_eq!(Rc::strong_count(&shared), 1);
    }

    #[test]
    fn zero_sized_elements_are_made_and_dropped_one_by_one() {
        use std::cell::Cell;
        thread_local!(static DROPS: Cell<usize> = const { Cell::new(0) });
        struct Unit;
        impl Drop for Unit {
            fn drop(&mut self) {
                DROPS.with(|d| d.set(d.get() + 1));
            }
        }
        let mut made = 0;
        let s = HugeSlice::from_fn(5, |_| {
            made += 1;
            Unit
        })
        .unwrap();
        assert_eq!((made, s.len()), (5, 5));
        drop(s);
        assert_eq!(DROPS.with(Cell::get), 5);
    }

    #[test]
    fn an_impossible_size_is_out_of_memory_not_a_panic() {
        assert_eq!(
            HugeSlice::filled(usize::MAX / 8, 0u64).map(|_| ()),
            Err(OutOfMemory)
        );
    }
}
