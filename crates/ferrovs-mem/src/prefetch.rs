//! Software prefetch: ask the CPU to start loading a cache line now, so that a
//! later access does not wait for memory. The pipeline uses it to overlap the cache
//! misses of a whole burst (packet data, index buckets, connection entries).

/// Starts loading the cache line that holds `*r` into every cache level. Only a
/// hint: it never faults, never changes memory, and may be ignored by the CPU.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    prefetch_ptr((r as *const T).cast());
}

/// [`prefetch`] for an address that need not be a live object: the hint cannot
/// fault, so any address is fine (a wrong one only wastes the hint).
#[inline(always)]
pub fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint with no architectural effect: it does not fault
    // on any address and reads nothing into registers, so no memory is accessed in
    // the Rust sense. SSE (which provides it) is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_leaves_memory_alone() {
        let data = [7u64; 16];
        prefetch(&data);
        prefetch(&data[15]);
        // Any address, even one past the end or null, is only a hint.
        prefetch_ptr(std::ptr::null());
        prefetch_ptr(data.as_ptr().wrapping_add(1 << 20).cast());
        assert_eq!(data, [7u64; 16]);
    }
}
