//! Which slab slots are free: one bit a slot, and over those one bit a bitmap
//! word, set while that word has a free slot.
//!
//! A new connection takes the slot its key hashes to when that one is free, else
//! the first free slot after it ([`FreeSlots::first_free_from`]); a slot is freed
//! by setting its bit. Neither touches another slot's entry: a free list linked
//! through the slab had to rewrite two random entries whenever a connection took
//! a slot out of its middle (and one more on every release), which made opening
//! connections measurably slower (perf/EXPERIMENTS.md). The bitmap is small (1M
//! slots, 128 KB; the summary 2 KB), so its lines mostly stay in cache.

use ferrovs_mem::{prefetch, HugeSlice, OutOfMemory};

/// Slots a bitmap word covers.
const BITS: usize = 64;

/// The free slots of a slab of a fixed size (see the module documentation).
pub(crate) struct FreeSlots {
    /// Bit `i` of word `w`: slot `64 w + i` is free. Bits past the slab stay 0.
    slots: HugeSlice<u64>,
    /// Bit `i` of word `s`: `slots[64 s + i]` has a bit set.
    words: Vec<u64>,
    /// Slots in the slab.
    len: usize,
}

impl FreeSlots {
    /// `len` slots, all free.
    pub(crate) fn all_free(len: usize) -> Result<Self, OutOfMemory> {
        let n = len.div_ceil(BITS);
        let slots = HugeSlice::from_fn(n, |w| ones(len - w * BITS))?;
        let mut words = Vec::new();
        words
            .try_reserve_exact(n.div_ceil(BITS))
            .map_err(|_| OutOfMemory)?;
        words.extend((0..n.div_ceil(BITS)).map(|s| ones(n - s * BITS)));
        Ok(FreeSlots { slots, words, len })
    }

    /// Bytes allocated.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.len() * size_of::<u64>() + self.words.capacity() * size_of::<u64>()
    }

    /// Whether `slot` is free (false past the slab). The table asks the slot's
    /// entry instead, whose line it has requested anyway.
    #[cfg(test)]
    pub(crate) fn is_free(&self, slot: usize) -> bool {
        self.slots
            .get(slot / BITS)
            .is_some_and(|w| w & 1 << (slot % BITS) != 0)
    }

    /// Requests the line holding `slot`'s bit, ahead of a [`Self::take`].
    #[inline]
    pub(crate) fn request(&self, slot: usize) {
        if let Some(word) = self.slots.get(slot / BITS) {
            prefetch(word);
        }
    }

    /// Marks `slot` taken.
    #[inline]
    pub(crate) fn take(&mut self, slot: usize) {
        let w = slot / BITS;
        if let Some(word) = self.slots.get_mut(w) {
            *word &= !(1 << (slot % BITS));
            if *word == 0 {
                if let Some(s) = self.words.get_mut(w / BITS) {
                    *s &= !(1 << (w % BITS));
                }
            }
        }
    }

    /// Marks `slot` free (ignored past the slab, so that no bit there is ever set).
    #[inline]
    pub(crate) fn put(&mut self, slot: usize) {
        if slot >= self.len {
            return;
        }
        let w = slot / BITS;
        if let Some(word) = self.slots.get_mut(w) {
            *word |= 1 << (slot % BITS);
            if let Some(s) = self.words.get_mut(w / BITS) {
                *s |= 1 << (w % BITS);
            }
        }
    }

    /// The first free slot at or after `slot`, going round past the end; None
    /// when no slot is free. Within `slot`'s own word in the common case, else one
    /// summary bit a word skips the full ones: at most `len / 4096 + 1` summary
    /// words are read even in a full table.
    pub(crate) fn first_free_from(&self, slot: usize) -> Option<usize> {
        let w = slot / BITS;
        let here = self.slots.get(w)? & (!0 << (slot % BITS));
        if here != 0 {
            return Some(w * BITS + here.trailing_zeros() as usize);
        }
        // The words after w, then round from 0 up to and including w itself (whose
        // free slots, if any, lie before `slot`).
        let start = w + 1;
        let (mut s, mut mask) = if start < self.slots.len() {
            (start / BITS, !0u64 << (start % BITS))
        } else {
            (0, !0)
        };
        for _ in 0..=self.words.len() {
            let found = self.words.get(s)? & mask;
            if found != 0 {
                let word = s * BITS + found.trailing_zeros() as usize;
                let bits = self.slots.get(word)?;
                return Some(word * BITS + bits.trailing_zeros() as usize);
            }
            s = if s + 1 == self.words.len() { 0 } else { s + 1 };
            mask = !0;
        }
        None
    }
}

/// A word with its lowest `n` bits set (all 64 for `n >= 64`).
fn ones(n: usize) -> u64 {
    if n >= BITS {
        !0
    } else {
        (1 << n) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every free slot, in order, by asking slot by slot.
    fn free_list(f: &FreeSlots, len: usize) -> Vec<usize> {
        (0..len).filter(|&s| f.is_free(s)).collect()
    }

    #[test]
    fn starts_with_exactly_the_slab_free() {
        for len in [0, 1, 63, 64, 65, 4095, 4096, 4097, 200_000] {
            let f = FreeSlots::all_free(len).unwrap();
            assert_eq!(free_list(&f, len + 130).len(), len, "{len}");
            assert!(!f.is_free(len), "{len}: the slot past the end");
            assert_eq!(f.first_free_from(0), (len > 0).then_some(0), "{len}");
            if len > 0 {
                assert_eq!(f.first_free_from(len - 1), Some(len - 1));
            }
        }
    }

    #[test]
    fn first_free_goes_forward_and_round() {
        let len = 10_000;
        let mut f = FreeSlots::all_free(len).unwrap();
        for s in 0..len {
            f.take(s);
        }
        assert_eq!(f.first_free_from(0), None, "full");
        assert_eq!(f.first_free_from(5000), None, "full");
        f.put(9_000);
        f.put(130);
        assert_eq!(f.first_free_from(0), Some(130));
        assert_eq!(f.first_free_from(130), Some(130));
        assert_eq!(f.first_free_from(131), Some(9_000), "skips full words");
        assert_eq!(f.first_free_from(9_001), Some(130), "round past the end");
        assert_eq!(f.first_free_from(len - 1), Some(130));
        f.take(9_000);
        // Only slot 130 left: from just after it, all the way round to its own word.
        assert_eq!(f.first_free_from(131), Some(130));
        assert_eq!(f.first_free_from(191), Some(130));
        f.take(130);
        assert_eq!(f.first_free_from(131), None);
        // Past the slab: nothing, not a panic, and no slot that does not exist
        // (slot `len` shares the last word with real slots).
        assert_eq!(f.first_free_from(len + 64), None);
        f.put(len + 64);
        f.take(len + 64);
        f.put(len);
        assert!(!f.is_free(len));
        assert_eq!(f.first_free_from(0), None);
    }

    #[test]
    fn matches_a_model_under_churn() {
        let len = 70_000;
        let mut f = FreeSlots::all_free(len).unwrap();
        let mut free: std::collections::BTreeSet<usize> = (0..len).collect();
        let mut x = 0x5eed_u64;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = (x % len as u64) as usize;
            // Take the first free slot from a random start, or free a random slot.
            if x & (1 << 40) != 0 {
                let want = free.range(slot..).next().or(free.first()).copied();
                let got = f.first_free_from(slot);
                assert_eq!(got, want);
                if let Some(s) = got {
                    f.take(s);
                    free.remove(&s);
                }
            } else {
                f.put(slot);
                free.insert(slot);
            }
        }
        assert_eq!(
            free_list(&f, len + 64),
            free.into_iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn memory_is_a_bit_a_slot() {
        let f = FreeSlots::all_free(1 << 20).unwrap();
        assert_eq!(f.memory_bytes(), (1 << 20) / 8 + (1 << 20) / 8 / 64);
    }
}
