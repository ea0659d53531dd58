//! Small vector helpers for the packet path. Not DPDK calls: they live in this
//! layer because this layer holds every `unsafe` block of ferrovs, and the
//! intrinsics are `unsafe` to call outside a `#[target_feature]` function.

/// Bit `i` set when `lanes[i] == key`: one 128-bit compare and a mask extraction.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn eq_mask_u32x4(lanes: [u32; 4], key: u32) -> u32 {
    use std::arch::x86_64::{
        _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_movemask_ps, _mm_set1_epi32, _mm_set_epi32,
    };
    let l = lanes.map(|v| v as i32);
    // SAFETY: these SSE2 intrinsics only compute on values (no memory access), and
    // SSE2 is part of the x86_64 baseline, so every x86_64 CPU runs them.
    let mask = unsafe {
        let key = _mm_set1_epi32(key as i32);
        let lanes = _mm_set_epi32(l[3], l[2], l[1], l[0]);
        _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(lanes, key)))
    };
    mask as u32
}

/// Bit `i` set when `lanes[i] == key` (portable form).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn eq_mask_u32x4(lanes: [u32; 4], key: u32) -> u32 {
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
            assert_eq!(eq_mask_u32x4(lanes, 0xdead_beef), pattern);
        }
        assert_eq!(eq_mask_u32x4([0, 0, 0, 0], 0), 0b1111);
        assert_eq!(eq_mask_u32x4([u32::MAX, 1, 2, 3], u32::MAX), 0b0001);
    }
}
