//! The hash index of the connection table: flow-key hash -> `u32` value (the slab
//! index and direction bit; the keys themselves stay in the slab).
//!
//! Built for a worker that looks up a whole burst at once: the bucket a hash lands
//! in is known from the hash alone ([`FlowIndex::bucket`]), so the caller can
//! prefetch every packet's bucket before it probes any of them, and the slab entry a
//! bucket points at ([`FlowIndex::first_candidate`]) before it compares keys.
//!
//! Layout: a fixed array of 64-byte buckets (one cache line each), every bucket
//! [`SLOTS`] pairs of a 32-bit signature (the hash's low half, never 0) and a value.
//! A key's home bucket comes from the hash's high half by multiply-shift range
//! reduction, so the bucket count need not be a power of two and the memory follows
//! the configured capacity closely. A full home bucket spills to the next one
//! (linear probing by bucket); each bucket counts the keys that probed past it
//! (`overflow`, as in folly's F14), so a lookup stops at the first bucket with a
//! zero count and removals need no tombstones. Nothing is ever rehashed or
//! reallocated: the index is sized once for the most keys it will hold at a load
//! of at most [`MAX_LOAD_PERCENT`], where spilling is rare (a few percent of keys).

use ferrovs_mem::{eq_mask_u32x4, HugeSlice, OutOfMemory};

/// Key slots per bucket: 7 signatures and 7 values plus the overflow count fill 64 bytes.
pub(crate) const SLOTS: usize = 7;
/// Highest share of slots in use, in percent, the index is sized for.
pub(crate) const MAX_LOAD_PERCENT: usize = 60;
/// Signature of an empty slot; no live key has it.
const EMPTY: u32 = 0;

/// One cache line of the index.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct IndexBucket {
    sigs: [u32; SLOTS],
    values: [u32; SLOTS],
    /// Keys whose home is this bucket or an earlier one but that live after it.
    overflow: u32,
    /// Live slots in this bucket.
    used: u32,
}

impl IndexBucket {
    /// Bit `i` set when slot `i` holds signature `sig`: slots 0-3 and 3-6 as two
    /// overlapping groups of four lanes, each one vector compare and a mask.
    #[inline(always)]
    fn matching(&self, sig: u32) -> u32 {
        // Both chunks exist (SLOTS >= 4), so the `None` arms compile away.
        let low = self.sigs.first_chunk().map_or(0, |l| eq_mask_u32x4(l, sig));
        let high = self.sigs.last_chunk().map_or(0, |l| eq_mask_u32x4(l, sig));
        low | high << (SLOTS - 4)
    }
}

const EMPTY_BUCKET: IndexBucket = IndexBucket {
    sigs: [EMPTY; SLOTS],
    values: [0; SLOTS],
    overflow: 0,
    used: 0,
};

/// The index has no free slot left (never reached when the caller stays within the
/// capacity it asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexFull;

/// A hash index of `u32` values, sized once (see the module documentation).
pub(crate) struct FlowIndex {
    buckets: HugeSlice<IndexBucket>,
    len: usize,
}

impl FlowIndex {
    /// An index for at most `keys` values.
    pub(crate) fn with_capacity(keys: usize) -> Result<FlowIndex, OutOfMemory> {
        let slots = keys.saturating_mul(100).div_ceil(MAX_LOAD_PERCENT);
        let n = slots.div_ceil(SLOTS).max(1);
        Ok(FlowIndex {
            // Probed at random: huge pages spare the TLB.
            buckets: HugeSlice::filled(n, EMPTY_BUCKET)?,
            len: 0,
        })
    }

    /// Values stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.buckets.len() * size_of::<IndexBucket>()
    }

    /// Number of buckets.
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        // Multiply-shift: the high 64 bits of hash * n lie in 0..n.
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    #[inline(always)]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// The bucket `hash` starts in: the cache line to prefetch before [`Self::find`].
    #[inline]
    pub(crate) fn bucket(&self, hash: u64) -> &IndexBucket {
        &self.buckets[self.home(hash)]
    }

    /// The value of the first slot of `hash`'s home bucket whose signature matches,
    /// without comparing keys: the slab entry to prefetch before [`Self::find`].
    #[inline]
    pub(crate) fn first_candidate(&self, hash: u64) -> Option<u32> {
        let b = &self.buckets[self.home(hash)];
        let m = b.matching(signature(hash));
        (m != 0).then(|| b.values[m.trailing_zeros() as usize])
    }

    /// The first value stored under `hash` that `eq` accepts.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let sig = signature(hash);
        let mut b = self.home(hash);
        // The overflow counts end every probe; the bound only guards a corrupted index.
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            let mut m = bucket.matching(sig);
            while m != 0 {
                let value = bucket.values[m.trailing_zeros() as usize];
                if eq(value) {
                    return Some(value);
                }
                m &= m - 1;
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// Stores `value` under `hash` (the caller has checked it is not there yet).
    pub(crate) fn insert(&mut self, hash: u64, value: u32) -> Result<(), IndexFull> {
        if self.len >= self.buckets.len() * SLOTS {
            return Err(IndexFull);
        }
        let home = self.home(hash);
        // There is a free slot somewhere (checked above), so this ends.
        let mut b = home;
        while self.buckets[b].used as usize == SLOTS {
            b = self.next(b);
        }
        let bucket = &mut self.buckets[b];
        let Some(i) = bucket.sigs.iter().position(|&s| s == EMPTY) else {
            return Err(IndexFull);
        };
        bucket.sigs[i] = signature(hash);
        bucket.values[i] = value;
        bucket.used += 1;
        self.len += 1;
        // Lookups starting at `home` must not stop before `b`.
        let mut p = home;
        while p != b {
            self.buckets[p].overflow += 1;
            p = self.next(p);
        }
        Ok(())
    }

    /// Removes the slot holding `value` under `hash`. Returns whether it was there.
    pub(crate) fn remove(&mut self, hash: u64, value: u32) -> bool {
        let sig = signature(hash);
        let home = self.home(hash);
        let mut b = home;
        for _ in 0..self.buckets.len() {
            let bucket = &mut self.buckets[b];
            if let Some(i) =
                (0..SLOTS).find(|&i| bucket.sigs[i] == sig && bucket.values[i] == value)
            {
                bucket.sigs[i] = EMPTY;
                bucket.used -= 1;
                self.len -= 1;
                // Every bucket the key probed past no longer overflows because of it.
                let mut p = home;
                while p != b {
                    self.buckets[p].overflow -= 1;
                    p = self.next(p);
                }
                return true;
            }
            if bucket.overflow == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }
}

/// The signature stored for `hash`: its low half, with 0 (which marks an empty slot)
/// taken as 1. (The home bucket comes from the high half.)
#[inline(always)]
fn signature(hash: u64) -> u32 {
    let low = hash as u32;
    low | u32::from(low == EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: reproducible pseudo-random hashes.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Hashes whose home is bucket `b` of `idx`, distinct signatures.
    fn hashes_homed_at(idx: &FlowIndex, b: usize, count: usize) -> Vec<u64> {
        let n = idx.buckets.len() as u128;
        // The smallest hash with home b is ceil(b * 2^64 / n); step the low bits.
        let base = ((b as u128) << 64).div_ceil(n) as u64;
        (0..count as u64).map(|i| base + 2 * i).collect()
    }

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(size_of::<IndexBucket>(), 64);
        assert_eq!(align_of::<IndexBucket>(), 64);
    }

    #[test]
    fn sized_for_the_load_limit() {
        for keys in [0, 1, 7, 1000, 2_000_000] {
            let idx = FlowIndex::with_capacity(keys).unwrap();
            let slots = idx.buckets() * SLOTS;
            assert!(slots * MAX_LOAD_PERCENT >= keys * 100, "{keys}");
            assert!(
                slots * MAX_LOAD_PERCENT < (keys + 2 * SLOTS) * 100,
                "{keys}"
            );
            assert_eq!(idx.memory_bytes(), idx.buckets() * 64);
        }
    }

    #[test]
    fn insert_find_remove() {
        let mut idx = FlowIndex::with_capacity(100).unwrap();
        let h = 0x1234_5678_9abc_def0;
        assert_eq!(idx.find(h, |_| true), None);
        idx.insert(h, 42).unwrap();
        assert_eq!(idx.find(h, |v| v == 42), Some(42));
        assert_eq!(idx.find(h, |_| false), None, "eq decides");
        assert_eq!(idx.first_candidate(h), Some(42));
        assert_eq!(idx.find(h ^ 2, |_| true), None, "another signature");
        assert!(std::ptr::eq(idx.bucket(h), &idx.buckets[idx.home(h)]));
        assert!(!idx.remove(h, 41), "value must match");
        assert!(idx.remove(h, 42));
        assert!(!idx.remove(h, 42));
        assert_eq!(idx.find(h, |_| true), None);
        assert_eq!(idx.first_candidate(h), None);
        assert_eq!(idx.len(), 0);
    }

    #[test]
    fn equal_hashes_are_told_apart_by_eq() {
        let mut idx = FlowIndex::with_capacity(100).unwrap();
        let h = 77;
        for v in 0..5 {
            idx.insert(h, v).unwrap();
        }
        for v in 0..5 {
            assert_eq!(idx.find(h, |x| x == v), Some(v));
        }
        assert!(idx.remove(h, 2));
        assert_eq!(idx.find(h, |x| x == 2), None);
        assert_eq!(idx.find(h, |x| x == 4), Some(4));
    }

    #[test]
    fn full_buckets_spill_and_lookups_follow() {
        let mut idx = FlowIndex::with_capacity(200).unwrap();
        let n = idx.buckets();
        // Three buckets' worth homed at the last bucket: spills wrap to 0 and 1.
        let hs = hashes_homed_at(&idx, n - 1, 3 * SLOTS);
        for (v, &h) in hs.iter().enumerate() {
            assert_eq!(idx.home(h), n - 1);
            idx.insert(h, v as u32).unwrap();
        }
        assert_eq!(idx.buckets[n - 1].overflow, 2 * SLOTS as u32);
        assert_eq!(idx.buckets[0].overflow, SLOTS as u32);
        assert_eq!(idx.buckets[1].overflow, 0);
        for (v, &h) in hs.iter().enumerate() {
            assert_eq!(idx.find(h, |x| x == v as u32), Some(v as u32));
        }
        // A key homed at bucket 0 lands after the spilled ones and is found.
        let h0 = hashes_homed_at(&idx, 0, 1)[0] + 1;
        idx.insert(h0, 999).unwrap();
        assert_eq!(idx.find(h0, |x| x == 999), Some(999));
        assert_eq!(idx.buckets[0].overflow, SLOTS as u32 + 1);
        assert_eq!(idx.buckets[1].overflow, 1);
        // Removing an early key frees a slot in the home bucket; later keys stay found.
        assert!(idx.remove(hs[0], 0));
        assert_eq!(idx.buckets[n - 1].overflow, 2 * SLOTS as u32);
        for (v, &h) in hs.iter().enumerate().skip(1) {
            assert_eq!(idx.find(h, |x| x == v as u32), Some(v as u32));
        }
        // Removing a spilled key lowers the counts of the buckets it passed.
        let last = hs.len() - 1;
        assert!(idx.remove(hs[last], last as u32));
        assert_eq!(idx.buckets[n - 1].overflow, 2 * SLOTS as u32 - 1);
        assert_eq!(idx.buckets[0].overflow, SLOTS as u32);
        // The freed home slot is reused first.
        idx.insert(hs[0], 0).unwrap();
        assert_eq!(idx.buckets[n - 1].overflow, 2 * SLOTS as u32 - 1);
        // Empty it all: every count returns to zero.
        for (v, &h) in hs.iter().enumerate().take(last) {
            assert!(idx.remove(h, v as u32));
        }
        assert!(idx.remove(h0, 999));
        assert_eq!(idx.len(), 0);
        assert!(idx.buckets.iter().all(|b| b.overflow == 0 && b.used == 0));
    }

    #[test]
    fn refuses_beyond_its_slots() {
        let mut idx = FlowIndex::with_capacity(1).unwrap();
        let slots = idx.buckets() * SLOTS;
        for v in 0..slots as u32 {
            idx.insert(u64::from(v) << 40, v).unwrap();
        }
        assert_eq!(idx.insert(1, 1), Err(IndexFull));
        for v in 0..slots as u32 {
            assert_eq!(idx.find(u64::from(v) << 40, |x| x == v), Some(v));
        }
    }

    #[test]
    fn matches_a_hash_map_under_churn() {
        // Random inserts and removals at the load the table is sized for, checked
        // against a list of what is in, with every count back at zero when emptied.
        const KEYS: usize = 5_000;
        let mut idx = FlowIndex::with_capacity(KEYS).unwrap();
        let mut model: Vec<(u32, u64)> = Vec::new();
        let mut rng = Rng(0x5eed);
        let mut next_value = 0u32;
        for round in 0..200_000 {
            let grow = model.len() < KEYS && (model.len() < KEYS / 2 || rng.next() % 2 == 0);
            if grow {
                // Few distinct homes now and then, to force spills.
                let h = if round % 7 == 0 {
                    rng.next() & 0x00ff_ffff_ffff_ffff
                } else {
                    rng.next()
                };
                idx.insert(h, next_value).unwrap();
                model.push((next_value, h));
                next_value += 1;
            } else {
                let at = (rng.next() % model.len() as u64) as usize;
                let (v, h) = model.swap_remove(at);
                assert!(idx.remove(h, v));
                assert_eq!(idx.find(h, |x| x == v), None);
            }
            if round % 10_000 == 0 {
                for &(v, h) in &model {
                    assert_eq!(idx.find(h, |x| x == v), Some(v));
                }
            }
        }
        assert_eq!(idx.len(), model.len());
        for (v, h) in model.drain(..) {
            assert!(idx.remove(h, v));
        }
        assert!(idx.buckets.iter().all(|b| b.overflow == 0 && b.used == 0));
    }
}
