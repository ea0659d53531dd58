//! The hashes of the IPVS hashing schedulers, bit for bit, with their fixed keys.
//!
//! Nothing here is seeded at run time: every ferrovs process (and a Linux IPVS box on
//! a 64-bit little-endian kernel, given the same table) maps a flow to the same entry,
//! which is what lets instances behind ECMP agree on the real server.

use std::net::IpAddr;

/// Folds an address to 32 bits as IPVS does (`addr_fold`): an IPv4 address as its
/// host-order value, an IPv6 address as the XOR of its four 32-bit words.
#[inline]
pub(super) fn fold_addr(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            // XOR commutes with byte swapping, so folding host-order words equals
            // IPVS's ntohl() of the XOR of network-order words.
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// Linux `GOLDEN_RATIO_32` (include/linux/hash.h).
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// Linux `hash_32(val, bits)`: multiply by the golden ratio, keep the top `bits` bits
/// (`bits` in 1..=32; 0 yields 0).
#[inline]
pub(super) fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(GOLDEN_RATIO_32)
        .checked_shr(32 - bits.min(32))
        .unwrap_or(0)
}

/// A 128-bit SipHash key, as `hsiphash_key_t` on a 64-bit kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SipKey {
    pub k0: u64,
    pub k1: u64,
}

/// ip_vs_mh.c `generate_hash_secret()`: the key of the lookup hash and of the
/// permutation offset.
pub(super) const MH_KEY1: SipKey = SipKey {
    k0: 2_654_435_761,
    k1: 2_654_435_761,
};

/// ip_vs_mh.c `generate_hash_secret()`: the key of the permutation skip.
pub(super) const MH_KEY2: SipKey = SipKey {
    k0: 2_654_446_892,
    k1: 2_654_446_892,
};

/// SipHash-1-3 of the 4-byte little-endian encoding of `v` (full 64-bit result).
#[inline]
fn siphash13_u32(v: u32, key: SipKey) -> u64 {
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut s = [
        0x736f_6d65_7073_6575 ^ key.k0,
        0x646f_7261_6e64_6f6d ^ key.k1,
        0x6c79_6765_6e65_7261 ^ key.k0,
        0x7465_6462_7974_6573 ^ key.k1,
    ];
    // A 4-byte message has no full 8-byte block: only the final block
    // (length in the top byte, the message below).
    let b = (4u64 << 56) | u64::from(v);
    s[3] ^= b;
    round(&mut s);
    s[0] ^= b;
    s[2] ^= 0xff;
    round(&mut s);
    round(&mut s);
    round(&mut s);
    s[0] ^ s[1] ^ s[2] ^ s[3]
}

/// Linux `hsiphash(&v, sizeof(u32), key)` on a 64-bit kernel, where HalfSipHash is
/// SipHash-1-3 truncated to 32 bits; `v` is read back in little-endian order as on
/// x86-64 and arm64.
#[inline]
pub(super) fn hsiphash_u32(v: u32, key: SipKey) -> u32 {
    siphash13_u32(v, key) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn fold_ipv4_is_host_order_value() {
        assert_eq!(
            fold_addr(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2))),
            0xc0a8_0102
        );
        assert_eq!(fold_addr(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
        assert_eq!(fold_addr(IpAddr::V4(Ipv4Addr::BROADCAST)), u32::MAX);
    }

    #[test]
    fn fold_ipv6_xors_words() {
        let a = Ipv6Addr::new(0x2001, 0x0002, 0, 0x0010, 0xdead, 0xbeef, 0x1234, 0x5678);
        assert_eq!(
            fold_addr(IpAddr::V6(a)),
            0x2001_0002 ^ 0x0000_0010 ^ 0xdead_beef ^ 0x1234_5678
        );
        assert_eq!(fold_addr(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), 0);
        // Two addresses differing in two words by the same XOR fold alike: IPVS does
        // the same, the schedulers inherit it.
        let b = Ipv6Addr::new(0x2001, 0x0002, 0, 0x0011, 0xdead, 0xbeef, 0x1234, 0x5679);
        assert_eq!(fold_addr(IpAddr::V6(a)), fold_addr(IpAddr::V6(b)));
    }

    #[test]
    fn hash_32_matches_linux() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(1, 32), 0x61C8_8647);
        // The product modulo 2^32, computed in 64 bits.
        let full = (0xc0a8_0102u64 * 0x61C8_8647u64) as u32;
        assert_eq!(hash_32(0xc0a8_0102, 32), full);
        assert_eq!(hash_32(0xc0a8_0102, 8), full >> 24);
        assert_eq!(hash_32(0xffff_ffff, 0), 0);
        assert_eq!(hash_32(0xffff_ffff, 40), hash_32(0xffff_ffff, 32));
    }

    // SipHash-1-3 reference values from CPython 3.11 (whose str/bytes hash is
    // SipHash-1-3): `hash(bytes)` with PYTHONHASHSEED=0 uses the all-zero key, and with
    // PYTHONHASHSEED=1 the key filled by its LCG (k0, k1 below).
    #[test]
    fn siphash13_matches_cpython_zero_key() {
        let key = SipKey { k0: 0, k1: 0 };
        let cases: [([u8; 4], u64); 4] = [
            ([0x01, 0x02, 0x03, 0x04], 0xe7b1_a066_360b_a9d4),
            ([0x00, 0x00, 0x00, 0x00], 0xcc22_47b7_9ac4_8af0),
            ([0xff, 0xff, 0xff, 0xff], 0x52c4_0c88_74ca_d6e2),
            ([0x78, 0x56, 0x34, 0x12], 0x7102_5007_fa27_045c),
        ];
        for (msg, want) in cases {
            assert_eq!(siphash13_u32(u32::from_le_bytes(msg), key), want, "{msg:?}");
            assert_eq!(
                hsiphash_u32(u32::from_le_bytes(msg), key),
                want as u32,
                "{msg:?}"
            );
        }
    }

    #[test]
    fn siphash13_matches_cpython_nonzero_key() {
        let key = SipKey {
            k0: 0xaed6_6ce1_84be_2329,
            k1: 0xebe9_bbf1_f149_9052,
        };
        assert_eq!(
            siphash13_u32(u32::from_le_bytes([1, 2, 3, 4]), key),
            0x6ebb_c7d2_0595_141d
        );
        assert_eq!(siphash13_u32(0x1234_5678, key), 0xed75_c14d_1238_eb91);
    }

    #[test]
    fn mh_keys_differ_and_are_fixed() {
        assert_ne!(hsiphash_u32(42, MH_KEY1), hsiphash_u32(42, MH_KEY2));
        // Same input, same output: no per-process seeding.
        assert_eq!(hsiphash_u32(42, MH_KEY1), hsiphash_u32(42, MH_KEY1));
    }
}
