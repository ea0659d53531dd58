//! Transparent huge pages for the worker's large tables (connection slab and
//! index). Not a DPDK call: it lives in this layer because this layer holds every
//! `unsafe` block of ferrovs.
//!
//! A random lookup in a table of hundreds of megabytes misses the TLB on nearly
//! every access when the table sits in 4 KiB pages; on a virtual machine each miss
//! costs a two-dimensional page walk. Backing the tables with 2 MiB pages removes
//! almost all of those misses. The kernel does that for regions marked with
//! `madvise(MADV_HUGEPAGE)` when `/sys/kernel/mm/transparent_hugepage/enabled` is
//! `madvise` (the usual default) or `always`; the mark must be set before the pages
//! are first touched.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

/// Smallest region worth marking: one huge page.
const HUGE_PAGE: usize = 2 << 20;
/// Base page size of x86_64 and aarch64 Linux (madvise wants an aligned start).
const PAGE: usize = 4096;

/// Asks the kernel to back the whole 2 MiB pages inside `mem` (memory not yet
/// touched, e.g. a fresh `Vec`'s `spare_capacity_mut()`) with transparent huge
/// pages. Only a hint: returns whether the kernel took it, and a refusal (THP
/// disabled, an old kernel) changes nothing but speed.
pub fn advise_hugepages<T>(mem: &mut [MaybeUninit<T>]) -> bool {
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
}
