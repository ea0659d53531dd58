//! Small vector helpers for the packet path. Not DPDK calls: they live in this
//! layer because this layer holds every `unsafe` block of ferrovs, and the
//! intrinsics are `unsafe` to call outside a `#[target_feature]` function.

/// Bit `i` set when `lanes[i] == key`: one unaligned 128-bit load straight from
/// `lanes` (taken by reference so that the lanes are not first gathered into a
/// register lane by lane), one compare and a mask extraction.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn eq_mask_u32x4(lanes: &[u32; 4], key: u32) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps,
        _mm_set1_epi32,
    };
    // SAFETY: `lanes` is a valid reference to 16 bytes, which is what the unaligned
    // load reads (it has no alignment requirement); the other intrinsics compute on
    // values only. SSE2 is part of the x86_64 baseline, so every x86_64 CPU runs them.
    let mask = unsafe {
        let key = _mm_set1_epi32(key as i32);
        let lanes = _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>());
        _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(lanes, key)))
    };
    mask as u32
}

/// Bit `i` set when `lanes[i] == key` (portable form).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn eq_mask_u32x4(lanes: &[u32; 4], key: u32) -> u32 {
    let mut m = 0;
    for (i, &v) in lanes.iter().enumerate() {
        m |= u32::from(v == key) << i;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lane_pattern_gives_its_mask() {
        for pattern in 0u32..16 {
            let lanes: [u32; 4] = std::array::from_fn(|i| {
                if pattern >> i & 1 == 1 {
                    0xdead_beef
                } else {
                    i as u32
                }
            });
            assert_eq!(eq_mask_u32x4(&lanes, 0xdead_beef), pattern);
        }
        assert_eq!(eq_mask_u32x4(&[0, 0, 0, 0], 0), 0b1111);
        assert_eq!(eq_mask_u32x4(&[u32::MAX, 1, 2, 3], u32::MAX), 0b0001);
        // Any four lanes of a longer array, at any (unaligned) offset.
        let long: [u32; 7] = [9, 1, 9, 9, 2, 9, 3];
        assert_eq!(eq_mask_u32x4(long.first_chunk().unwrap(), 9), 0b1101);
        assert_eq!(eq_mask_u32x4(long.last_chunk().unwrap(), 9), 0b0101);
    }
}
