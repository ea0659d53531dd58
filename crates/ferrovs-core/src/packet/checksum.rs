//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A checksum is the ones-complement of the ones-complement sum of the data taken as
//! big-endian 16-bit words. [`Sum`] is that sum kept unfolded in a `u64`, eight bytes
//! at a time with end-around carry: since 2^16 - 1 divides 2^64 - 1, folding the wide
//! sum at the end gives the same result as adding 16-bit words one by one (RFC 1071
//! section 2, "parallel summation"). Partial sums of pieces that each start at an even
//! offset of the checksummed data add up with `+`.
//!
//! A rewritten field fixes the checksum without touching the rest of the packet:
//! `HC' = ~(~HC + ~m + m')` (RFC 1624 eqn. 3), done by [`Delta`], which collects any
//! number of such changes (addresses, ports, TTL) and applies them in one step.
//!
//! # The UDP zero rule
//!
//! In UDP a transmitted checksum of 0 means "no checksum" (allowed for IPv4 only,
//! RFC 768; IPv6 requires one, RFC 8200 section 8.1). So:
//! - a UDP/IPv4 datagram received with checksum 0 keeps 0 after any rewrite (there is
//!   nothing to fix, and inventing one would need the whole payload);
//! - a computed UDP checksum of 0 is transmitted as 0xffff, its ones-complement
//!   equivalent ([`udp_transmitted`]).
//!
//! TCP, ICMP and IPv4 header checksums have no such rule: 0 is sent as computed.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Add;

use super::ip::{IpPair, IpProtocol};

/// An unfolded ones-complement sum of big-endian 16-bit words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum(u64);

/// Adds two 64-bit ones-complement values: the carry out of bit 63 wraps to bit 0.
#[inline]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // When the add overflowed, s <= 2^64 - 2, so adding the carry cannot overflow.
    s + u64::from(carry)
}

impl Sum {
    /// The empty sum.
    pub const ZERO: Sum = Sum(0);

    /// The sum of `data`.
    #[inline]
    pub fn of(data: &[u8]) -> Sum {
        Sum::ZERO.add_bytes(data)
    }

    /// Adds `data`, which must start at an even offset of the checksummed data; an
    /// odd final byte is padded with a zero byte on the right, as RFC 1071 says.
    #[inline]
    pub fn add_bytes(self, data: &[u8]) -> Sum {
        let mut acc = self.0;
        let mut chunks = data.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            acc = add_carry(acc, u64::from_be_bytes(word));
        }
        // The remainder (under 8 bytes, starting 8-aligned) goes in as a 4-, a 2- and
        // a 1-byte piece, each at its own 16-bit alignment; since 2^16 = 1 modulo
        // 2^16 - 1, a word's position in the u64 does not change the folded sum. (A
        // zero-padded 8-byte copy would do the same through a slower memory
        // round trip.)
        let mut rest = chunks.remainder();
        if let Some((four, tail)) = rest.split_first_chunk::<4>() {
            acc = add_carry(acc, u64::from(u32::from_be_bytes(*four)));
            rest = tail;
        }
        if let Some((two, tail)) = rest.split_first_chunk::<2>() {
            acc = add_carry(acc, u64::from(u16::from_be_bytes(*two)));
            rest = tail;
        }
        if let Some(&odd) = rest.first() {
            // An odd last byte is padded with a zero byte on the right.
            acc = add_carry(acc, u64::from(odd) << 8);
        }
        Sum(acc)
    }

    /// Adds one 16-bit word.
    #[inline]
    pub fn add_u16(self, word: u16) -> Sum {
        Sum(add_carry(self.0, u64::from(word)))
    }

    /// Adds a 32-bit field (two words).
    #[inline]
    pub fn add_u32(self, value: u32) -> Sum {
        Sum(add_carry(self.0, u64::from(value)))
    }

    /// Adds a 128-bit field (eight words).
    #[inline]
    pub fn add_u128(self, value: u128) -> Sum {
        let hi = (value >> 64) as u64;
        let lo = value as u64;
        Sum(add_carry(add_carry(self.0, hi), lo))
    }

    /// Folds the sum to 16 bits. A nonzero sum folds into 1..=0xffff, a zero sum to 0.
    #[inline]
    pub fn fold(self) -> u16 {
        // Adding a word to itself rotated by half its width leaves, in the high
        // half, the sum of both halves with the end-around carry (the carry out of
        // the low halves' sum is exactly the one to add back): 64 -> 32 -> 16 bits
        // in two add-rotate steps.
        let x = self.0;
        let x = (x.wrapping_add(x.rotate_right(32)) >> 32) as u32;
        (x.wrapping_add(x.rotate_right(16)) >> 16) as u16
    }

    /// The checksum to put in a header: the complement of the folded sum.
    #[inline]
    pub fn checksum(self) -> u16 {
        !self.fold()
    }

    /// True when this sum, taken over data that includes its checksum field, verifies
    /// (folds to all ones).
    #[inline]
    pub fn verifies(self) -> bool {
        self.fold() == 0xffff
    }
}

/// Whether a 20-byte IPv4 header (no options) carries a valid checksum, as
/// `Sum::of(header).verifies()`, but summed in the machine's byte order: the one's
/// complement sum of byte-swapped words is the byte-swapped sum (RFC 1071, 2.B),
/// and the valid total 0xffff reads the same both ways, so no word is swapped.
#[inline]
pub fn ipv4_header_verifies(header: &[u8; 20]) -> bool {
    let (a, rest) = header.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
    let (b, rest) = rest.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
    let c = rest.first_chunk::<4>().unwrap_or(&[0; 4]);
    let acc = add_carry(u64::from_ne_bytes(*a), u64::from_ne_bytes(*b));
    let acc = add_carry(acc, u64::from(u32::from_ne_bytes(*c)));
    Sum(acc).verifies()
}

impl Add for Sum {
    type Output = Sum;

    #[inline]
    fn add(self, rhs: Sum) -> Sum {
        Sum(add_carry(self.0, rhs.0))
    }
}

/// The checksum of `data` (RFC 1071).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    Sum::of(data).checksum()
}

/// The sum of the IPv4 pseudo-header (RFC 793 / RFC 768): source, destination,
/// protocol and the length of the TCP or UDP packet.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, length: u16) -> Sum {
    Sum::ZERO
        .add_u32(u32::from(src))
        .add_u32(u32::from(dst))
        .add_u16(u16::from(protocol.0))
        .add_u16(length)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1): source, destination,
/// upper-layer packet length and next header.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, length: u32) -> Sum {
    Sum::ZERO
        .add_u128(u128::from(src))
        .add_u128(u128::from(dst))
        .add_u32(length)
        .add_u16(u16::from(next_header.0))
}

/// The pseudo-header sum for either family. An IPv4 `length` above 65535 cannot
/// occur in a valid packet; it is summed as a 32-bit field all the same.
#[inline]
pub fn pseudo_header(addrs: &IpPair, protocol: IpProtocol, length: u32) -> Sum {
    match *addrs {
        IpPair::V4 { src, dst } => Sum::ZERO
            .add_u32(u32::from(src))
            .add_u32(u32::from(dst))
            .add_u16(u16::from(protocol.0))
            .add_u32(length),
        IpPair::V6 { src, dst } => pseudo_header_v6(src, dst, protocol, length),
    }
}

/// The UDP zero rule: a computed checksum of 0 is transmitted as 0xffff.
#[inline]
pub const fn udp_transmitted(computed: u16) -> u16 {
    if computed == 0 {
        0xffff
    } else {
        computed
    }
}

/// Field changes to apply to a checksum incrementally (RFC 1624 eqn. 3).
///
/// Build it with one call per changed field, then [`apply`](Delta::apply) it to every
/// checksum that covers those fields (an address change goes to both the IPv4 header
/// checksum and the TCP/UDP checksum through the pseudo-header). Each 16-bit word
/// must be aligned in the checksummed data; a 16-bit field at an odd offset is
/// recorded with both values byte-swapped (see `tcp::TcpPacket::clamp_mss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(Sum);

impl Delta {
    /// No change.
    pub const NONE: Delta = Delta(Sum::ZERO);

    /// Records a 16-bit field changing from `old` to `new`.
    #[inline]
    pub fn u16(self, old: u16, new: u16) -> Delta {
        Delta(self.0.add_u16(!old).add_u16(new))
    }

    /// Records a 32-bit field changing from `old` to `new`.
    #[inline]
    pub fn u32(self, old: u32, new: u32) -> Delta {
        Delta(self.0.add_u32(!old).add_u32(new))
    }

    /// Records a 128-bit field changing from `old` to `new`.
    #[inline]
    pub fn u128(self, old: u128, new: u128) -> Delta {
        Delta(self.0.add_u128(!old).add_u128(new))
    }

    /// Records an IPv4 address change.
    #[inline]
    pub fn ipv4(self, old: Ipv4Addr, new: Ipv4Addr) -> Delta {
        self.u32(u32::from(old), u32::from(new))
    }

    /// Records an IPv6 address change.
    #[inline]
    pub fn ipv6(self, old: Ipv6Addr, new: Ipv6Addr) -> Delta {
        self.u128(u128::from(old), u128::from(new))
    }

    /// Combines two sets of changes.
    #[inline]
    pub fn and(self, other: Delta) -> Delta {
        Delta(self.0 + other.0)
    }

    /// The checksum after the recorded changes: `~(~HC + sum of (~m + m'))`.
    #[inline]
    pub fn apply(self, checksum: u16) -> u16 {
        !(self.0.add_u16(!checksum)).fold()
    }
}

/// Updates `checksum` for a 16-bit field changing from `old` to `new`.
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    Delta::NONE.u16(old, new).apply(checksum)
}

/// Updates `checksum` for a 32-bit field (an IPv4 address) changing from `old` to `new`.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    Delta::NONE.u32(old, new).apply(checksum)
}

/// Updates `checksum` for a 128-bit field (an IPv6 address) changing from `old` to `new`.
#[inline]
pub fn update_u128(checksum: u16, old: u128, new: u128) -> u16 {
    Delta::NONE.u128(old, new).apply(checksum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testutil::XorShift;

    #[test]
    fn ipv4_headers_verify_in_either_byte_order() {
        let mut rng = XorShift::new(20);
        for i in 0..20_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                *b = rng.next() as u8;
            }
            if i % 2 == 0 {
                // A valid checksum half of the time.
                h[10..12].copy_from_slice(&[0, 0]);
                let c = Sum::of(&h).checksum();
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let want = Sum::of(&h).verifies();
            assert_eq!(ipv4_header_verifies(&h), want, "{h:02x?}");
            if i % 2 == 0 {
                assert!(want);
            }
        }
        // Both representations of zero: 0x0000 and 0xffff.
        let mut h = [0u8; 20];
        h[10..12].copy_from_slice(&[0xff, 0xff]);
        assert!(ipv4_header_verifies(&h));
        assert!(!ipv4_header_verifies(&[0; 20]));
    }

    /// The textbook algorithm: 16-bit words into a u32, fold at the end.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u32::from(b));
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn fold_matches_folding_carries_one_at_a_time() {
        let reference = |mut x: u64| {
            while x > 0xffff {
                x = (x & 0xffff) + (x >> 16);
            }
            x as u16
        };
        let mut rng = XorShift::new(0xf01d);
        let edges = [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            0x1_0000_0000,
            0xffff_0001,
            0xffff_ffff_0000_0001,
            u64::MAX - 1,
            u64::MAX,
        ];
        // Every magnitude, so that carries happen at every stage.
        let random = (0..100_000).map(|_| rng.next() >> rng.below(64));
        for x in edges.into_iter().chain(random) {
            assert_eq!(Sum(x).fold(), reference(x), "{x:#x}");
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Sum::of(&data).fold(), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // A widely quoted IPv4 header whose checksum field is 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(Sum::of(&hdr).verifies());
        hdr[15] ^= 1;
        assert!(!Sum::of(&hdr).verifies());
    }

    #[test]
    fn wide_sum_matches_reference_on_random_data() {
        let mut rng = XorShift::new(7);
        let mut buf = [0u8; 300];
        for round in 0..2000 {
            let len = rng.below(buf.len() + 1);
            rng.fill(&mut buf[..len]);
            if round % 10 == 0 {
                // Runs of 0xff stress the carries.
                buf[..len].fill(0xff);
            }
            assert_eq!(
                Sum::of(&buf[..len]).fold(),
                reference_sum(&buf[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn split_sums_add_up_at_even_offsets() {
        let mut rng = XorShift::new(11);
        let mut buf = [0u8; 200];
        rng.fill(&mut buf);
        for split in (0..=buf.len()).step_by(2) {
            let (a, b) = buf.split_at(split);
            assert_eq!((Sum::of(a) + Sum::of(b)).fold(), Sum::of(&buf).fold());
            assert_eq!(Sum::of(a).add_bytes(b), Sum::of(a) + Sum::of(b));
        }
    }

    #[test]
    fn empty_and_odd_lengths() {
        assert_eq!(Sum::of(&[]).fold(), 0);
        assert_eq!(Sum::of(&[0xab]).fold(), 0xab00);
        assert_eq!(Sum::of(&[0x12, 0x34, 0x56]).fold(), 0x1234 + 0x5600);
        // Carries wrap around: ffff + 0001 = 0001 in ones-complement.
        assert_eq!(Sum::of(&[0xff, 0xff, 0x00, 0x01]).fold(), 0x0001);
    }

    #[test]
    fn pseudo_headers_equal_their_byte_layouts() {
        let src = Ipv4Addr::new(198, 18, 0, 1);
        let dst = Ipv4Addr::new(198, 19, 0, 10);
        let mut bytes = [0u8; 12];
        bytes[0..4].copy_from_slice(&src.octets());
        bytes[4..8].copy_from_slice(&dst.octets());
        bytes[9] = 6;
        bytes[10..12].copy_from_slice(&1234u16.to_be_bytes());
        assert_eq!(
            pseudo_header_v4(src, dst, IpProtocol::TCP, 1234).fold(),
            Sum::of(&bytes).fold()
        );
        let pair = IpPair::V4 { src, dst };
        assert_eq!(
            pseudo_header(&pair, IpProtocol::TCP, 1234).fold(),
            Sum::of(&bytes).fold()
        );

        let s6: Ipv6Addr = "2001:2::1".parse().unwrap();
        let d6: Ipv6Addr = "2001:2::ffff:10".parse().unwrap();
        let mut b6 = [0u8; 40];
        b6[0..16].copy_from_slice(&s6.octets());
        b6[16..32].copy_from_slice(&d6.octets());
        b6[32..36].copy_from_slice(&70000u32.to_be_bytes());
        b6[39] = 17;
        assert_eq!(
            pseudo_header_v6(s6, d6, IpProtocol::UDP, 70000).fold(),
            Sum::of(&b6).fold()
        );
        let pair6 = IpPair::V6 { src: s6, dst: d6 };
        assert_eq!(
            pseudo_header(&pair6, IpProtocol::UDP, 70000).fold(),
            Sum::of(&b6).fold()
        );
    }

    #[test]
    fn incremental_updates_match_recomputation() {
        let mut rng = XorShift::new(0x1624);
        let mut buf = [0u8; 64];
        for _ in 0..5000 {
            rng.fill(&mut buf);
            // Word 0 stays nonzero so the data never sums to zero; a from-scratch
            // and an incremental checksum then agree bit for bit.
            buf[0] |= 0x40;
            buf[6..8].fill(0);
            let hc = checksum(&buf);
            buf[6..8].copy_from_slice(&hc.to_be_bytes());

            // Change a 16-bit field, a 32-bit field and a 128-bit field, all at once
            // through one Delta, then each alone through the update_* functions.
            let old16 = u16::from_be_bytes([buf[2], buf[3]]);
            let new16 = rng.next() as u16;
            let old32 = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            let new32 = rng.next() as u32;
            let mut o128 = [0u8; 16];
            o128.copy_from_slice(&buf[16..32]);
            let old128 = u128::from_be_bytes(o128);
            let new128 = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            let delta = Delta::NONE
                .u16(old16, new16)
                .u32(old32, new32)
                .u128(old128, new128);
            let mut changed = buf;
            changed[2..4].copy_from_slice(&new16.to_be_bytes());
            changed[8..12].copy_from_slice(&new32.to_be_bytes());
            changed[16..32].copy_from_slice(&new128.to_be_bytes());
            changed[6..8].fill(0);
            let expect = checksum(&changed);
            assert_eq!(delta.apply(hc), expect);

            let step = update_u16(hc, old16, new16);
            let step = update_u32(step, old32, new32);
            let step = update_u128(step, old128, new128);
            assert_eq!(step, expect);
            changed[6..8].copy_from_slice(&expect.to_be_bytes());
            assert!(Sum::of(&changed).verifies());
        }
    }

    #[test]
    fn delta_combinators() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(198, 18, 0, 1);
        let d1 = Delta::NONE.ipv4(a, b);
        let d2 = Delta::NONE.u16(80, 8080);
        assert_eq!(d1.and(d2), Delta::NONE.ipv4(a, b).u16(80, 8080));
        // A change and its reverse cancel out (up to the representation of zero).
        let hc = 0x1234;
        assert_eq!(Delta::NONE.ipv4(a, b).ipv4(b, a).apply(hc), hc);
        let x: Ipv6Addr = "2001:2::1".parse().unwrap();
        let y: Ipv6Addr = "2001:2::2".parse().unwrap();
        assert_eq!(
            Delta::NONE.ipv6(x, y).apply(hc),
            update_u128(hc, x.into(), y.into())
        );
        assert_eq!(Delta::NONE.apply(hc), hc);
    }

    #[test]
    fn udp_zero_rule() {
        assert_eq!(udp_transmitted(0), 0xffff);
        assert_eq!(udp_transmitted(1), 1);
        assert_eq!(udp_transmitted(0xffff), 0xffff);
    }
}
