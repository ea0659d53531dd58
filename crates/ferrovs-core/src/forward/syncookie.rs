//! SYN cookies as Linux makes them (`net/ipv4/syncookies.c`,
//! `cookie_v4_init_sequence`, `__cookie_v4_check`, `cookie_init_timestamp`), so
//! that a SYN proxy answers a client's SYN without keeping anything and learns
//! what the client offered from its ACK alone.
//!
//! The initial sequence number ferrovs gives the client is
//!
//! ```text
//! cookie = H(key; addrs, ports, 0) + client_isn + (count << 24)
//!        + ((H(key; addrs, ports, count) + mss_index) mod 2^24)
//! ```
//!
//! where `count` is the minute the cookie was made in and `H` SipHash-2-4 (as
//! Linux's `cookie_hash`). The MSS the client offered goes in as an index into
//! Linux's table {536, 1300, 1440, 1460}; its window scale, SACK and ECN go into
//! the low 6 bits of the TSval of the SYN-ACK (the client echoes it in every
//! TSecr), so without timestamps a client keeps only its MSS, as with Linux.
//! A cookie is accepted for [`MAX_AGE`] minutes, checked with the current key
//! and the previous one (the management core rotates them): two hashes each,
//! whatever the cookie holds.

use std::io::Read;
use std::net::IpAddr;

/// The MSS values a cookie can carry (Linux's `msstab`).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// Bits of a cookie below its minute counter.
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Minutes a cookie stays valid (Linux's `MAX_SYNCOOKIE_AGE`).
pub const MAX_AGE: u32 = 2;
/// Low bits of the TSval that carry the options (Linux's `TSBITS`).
const TS_BITS: u32 = 6;
const TS_MASK: u32 = (1 << TS_BITS) - 1;
/// No window scale (Linux's `TS_OPT_WSCALE_MASK`).
const TS_WSCALE_NONE: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;
const TS_ECN: u32 = 1 << 5;
/// Milliseconds of a cookie minute.
pub const MINUTE_MS: u64 = 60_000;

/// A 128-bit SipHash key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieSecret([u64; 2]);

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSecret(..)")
    }
}

impl CookieSecret {
    /// A key from two words (tests, benchmarks).
    pub const fn from_words(k0: u64, k1: u64) -> CookieSecret {
        CookieSecret([k0, k1])
    }

    /// A fresh key from the operating system's random source (`/dev/urandom`;
    /// should it be unreadable, the hasher keys std seeds from the OS).
    pub fn from_os() -> CookieSecret {
        let mut b = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
        if read.is_ok() {
            let (k0, k1) = b.split_at(8);
            return CookieSecret([
                u64::from_le_bytes(k0.try_into().unwrap_or_default()),
                u64::from_le_bytes(k1.try_into().unwrap_or_default()),
            ]);
        }
        use std::hash::{BuildHasher, Hasher};
        let word = || {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x5eed);
            h.finish()
        };
        CookieSecret([word(), word()])
    }
}

/// The keys cookies are checked with: made with `current`, accepted with it or
/// `previous`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieKeys {
    /// The key new cookies are made with.
    pub current: CookieSecret,
    /// The key before the last rotation.
    pub previous: CookieSecret,
}

impl CookieKeys {
    /// Fresh keys from the operating system.
    pub fn from_os() -> CookieKeys {
        let k = CookieSecret::from_os();
        CookieKeys {
            current: k,
            previous: k,
        }
    }

    /// The keys after a rotation to `fresh`: the current one becomes the previous.
    pub fn rotated(&self, fresh: CookieSecret) -> CookieKeys {
        CookieKeys {
            current: fresh,
            previous: self.current,
        }
    }
}

/// What a client's SYN offered, as a cookie keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOptions {
    /// Index into [`MSS_TABLE`].
    pub mss_index: u8,
    /// The client's window scale, if it offered one (and timestamps).
    pub wscale: Option<u8>,
    /// SACK permitted (with timestamps only).
    pub sack: bool,
    /// ECN (with timestamps only).
    pub ecn: bool,
}

/// A connection's addresses and ports, the input of the cookie's hashes.
#[derive(Clone, Copy, Debug)]
pub struct CookieFlow {
    words: [u64; 5],
    len: usize,
}

impl CookieFlow {
    /// The flow of a client's segment: its source and destination.
    pub fn new(src: (IpAddr, u16), dst: (IpAddr, u16)) -> CookieFlow {
        let ports = (u64::from(src.1) << 16) | u64::from(dst.1);
        match (src.0, dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => CookieFlow {
                words: [
                    (u64::from(u32::from(s)) << 32) | u64::from(u32::from(d)),
                    ports,
                    0,
                    0,
                    0,
                ],
                len: 2,
            },
            (s, d) => {
                let s = ip_bits(s);
                let d = ip_bits(d);
                CookieFlow {
                    words: [
                        (s >> 64) as u64,
                        s as u64,
                        (d >> 64) as u64,
                        d as u64,
                        ports | (6 << 48),
                    ],
                    len: 5,
                }
            }
        }
    }
}

fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The minute counter at `now_ms`.
#[inline]
pub fn minute(now_ms: u64) -> u32 {
    (now_ms / MINUTE_MS) as u32
}

/// The index of the largest table MSS not above the client's (the smallest
/// when it offered none or less), as Linux picks it.
pub fn mss_index(mss: Option<u16>) -> u8 {
    let mss = mss.unwrap_or(536);
    (1..MSS_TABLE.len())
        .rev()
        .find(|&i| mss >= MSS_TABLE[i])
        .unwrap_or(0) as u8
}

/// The cookie: the initial sequence number of ferrovs's SYN-ACK to a client
/// whose SYN had sequence number `client_isn`.
pub fn make(
    key: &CookieSecret,
    flow: &CookieFlow,
    client_isn: u32,
    count: u32,
    mss_index: u8,
) -> u32 {
    hash(key, flow, 0, 0)
        .wrapping_add(client_isn)
        .wrapping_add(count << COOKIE_BITS)
        .wrapping_add(hash(key, flow, count, 1).wrapping_add(u32::from(mss_index)) & COOKIE_MASK)
}

/// The MSS index a cookie carries when it is valid: `ack - 1` of the client's
/// ACK (whose sequence number is `client_isn + 1`) made by one of `keys` at most
/// [`MAX_AGE`] minutes before `count`. Always four hashes.
pub fn check(
    keys: &CookieKeys,
    flow: &CookieFlow,
    client_isn: u32,
    cookie: u32,
    count: u32,
) -> Option<u8> {
    let a = check_one(&keys.current, flow, client_isn, cookie, count);
    let b = check_one(&keys.previous, flow, client_isn, cookie, count);
    a.or(b)
}

fn check_one(
    key: &CookieSecret,
    flow: &CookieFlow,
    client_isn: u32,
    cookie: u32,
    count: u32,
) -> Option<u8> {
    let c = cookie.wrapping_sub(hash(key, flow, 0, 0).wrapping_add(client_isn));
    let diff = count.wrapping_sub(c >> COOKIE_BITS) & (u32::MAX >> COOKIE_BITS);
    let made = count.wrapping_sub(diff);
    let index = c.wrapping_sub(hash(key, flow, made, 1)) & COOKIE_MASK;
    (diff < MAX_AGE && (index as usize) < MSS_TABLE.len()).then_some(index as u8)
}

/// The TSval of a cookie's SYN-ACK: the clock `ts_now` with the options in its
/// low bits, never ahead of the clock (Linux's `cookie_init_timestamp`).
pub fn encode_timestamp(ts_now: u32, wscale: Option<u8>, sack: bool, ecn: bool) -> u32 {
    let mut options = wscale.map_or(TS_WSCALE_NONE, |w| u32::from(w.min(14)));
    if sack {
        options |= TS_SACK;
    }
    if ecn {
        options |= TS_ECN;
    }
    let mut ts = (ts_now & !TS_MASK) | options;
    if (ts.wrapping_sub(ts_now) as i32) > 0 {
        ts = ts.wrapping_sub(1 << TS_BITS);
    }
    ts
}

/// The options a client's ACK echoes in its TSecr (Linux's
/// `cookie_timestamp_decode`); None for a window scale no SYN-ACK could carry.
/// Without timestamps, nothing beyond the MSS was kept.
pub fn decode_timestamp(mss_index: u8, tsecr: Option<u32>) -> Option<CookieOptions> {
    let mut o = CookieOptions {
        mss_index,
        wscale: None,
        sack: false,
        ecn: false,
    };
    let Some(tsecr) = tsecr else {
        return Some(o);
    };
    let bits = tsecr & TS_MASK;
    let ws = bits & TS_WSCALE_NONE;
    if ws != TS_WSCALE_NONE {
        if ws > 14 {
            return None;
        }
        o.wscale = Some(ws as u8);
    }
    o.sack = bits & TS_SACK != 0;
    o.ecn = bits & TS_ECN != 0;
    Some(o)
}

/// SipHash-2-4 of the flow's words, then `count` and `c`, folded to 32 bits.
#[inline]
fn hash(key: &CookieSecret, flow: &CookieFlow, count: u32, c: u64) -> u32 {
    let mut s = Sip::new(key);
    for &w in &flow.words[..flow.len] {
        s.word(w);
    }
    s.word((u64::from(count) << 32) | c);
    let h = s.finish((flow.len as u64 + 1) * 8);
    (h ^ (h >> 32)) as u32
}

/// SipHash-2-4 over whole 64-bit words.
struct Sip {
    v: [u64; 4],
}

impl Sip {
    #[inline]
    fn new(key: &CookieSecret) -> Sip {
        let [k0, k1] = key.0;
        Sip {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.v;
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

    #[inline(always)]
    fn word(&mut self, m: u64) {
        self.v[3] ^= m;
        self.round();
        self.round();
        self.v[0] ^= m;
    }

    #[inline(always)]
    fn finish(mut self, len: u64) -> u64 {
        self.word(len << 56);
        self.v[2] ^= 0xff;
        for _ in 0..4 {
            self.round();
        }
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: CookieSecret = CookieSecret::from_words(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);

    fn flows() -> [CookieFlow; 2] {
        [
            CookieFlow::new(
                ("198.18.0.10".parse().unwrap(), 40000),
                ("198.18.0.100".parse().unwrap(), 80),
            ),
            CookieFlow::new(
                ("2001:2::10".parse().unwrap(), 40000),
                ("2001:2::100".parse().unwrap(), 80),
            ),
        ]
    }

    #[test]
    fn siphash_matches_the_reference_vector() {
        // SipHash-2-4 of the 8 bytes 00..07 with key 00..0f (the paper's table).
        let mut s = Sip::new(&K);
        s.word(u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(s.finish(8), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn every_option_combination_round_trips() {
        let keys = CookieKeys {
            current: K,
            previous: K,
        };
        for flow in flows() {
            for (i, &mss) in MSS_TABLE.iter().enumerate() {
                for wscale in (0..=14).map(Some).chain([None]) {
                    for sack in [false, true] {
                        for ts in [false, true] {
                            for isn in [0, 1, 0x7fff_ffff, u32::MAX] {
                                let idx = mss_index(Some(mss + 3));
                                assert_eq!(usize::from(idx), i);
                                let count = minute(3_600_000_123);
                                let cookie = make(&K, &flow, isn, count, idx);
                                for later in 0..MAX_AGE {
                                    assert_eq!(
                                        check(&keys, &flow, isn, cookie, count + later),
                                        Some(idx)
                                    );
                                }
                                assert_eq!(
                                    check(&keys, &flow, isn, cookie, count + MAX_AGE),
                                    None,
                                    "too old"
                                );
                                assert_eq!(
                                    check(&keys, &flow, isn.wrapping_add(0x1000), cookie, count),
                                    None
                                );
                                let tsval = encode_timestamp(0x1234_5678, wscale, sack, false);
                                assert!(tsval <= 0x1234_5678 && 0x1234_5678 - tsval < 64);
                                let o = decode_timestamp(idx, ts.then_some(tsval)).unwrap();
                                assert_eq!(o.mss_index, idx);
                                if ts {
                                    assert_eq!((o.wscale, o.sack, o.ecn), (wscale, sack, false));
                                } else {
                                    assert_eq!((o.wscale, o.sack), (None, false));
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(mss_index(None), 0);
        assert_eq!(mss_index(Some(100)), 0);
        assert_eq!(mss_index(Some(1439)), 1);
        assert_eq!(mss_index(Some(9000)), 3);
        assert!(decode_timestamp(0, Some(0b1110)).is_some());
        assert_eq!(decode_timestamp(0, Some(0b1111)).unwrap().wscale, None);
        // Wraps of the clock: still never ahead of it.
        assert_eq!(
            encode_timestamp(5, Some(7), true, true),
            0u32.wrapping_sub(64) | 0x37
        );
    }

    #[test]
    fn rotation_accepts_the_previous_key_only() {
        let [flow, _] = flows();
        let k2 = CookieSecret::from_words(1, 2);
        let k3 = CookieSecret::from_words(3, 4);
        let keys = CookieKeys {
            current: K,
            previous: K,
        };
        let cookie = make(&keys.current, &flow, 1000, 50, 3);
        let once = keys.rotated(k2);
        assert_eq!(
            check(&once, &flow, 1000, cookie, 50),
            Some(3),
            "previous key"
        );
        let twice = once.rotated(k3);
        assert_eq!(check(&twice, &flow, 1000, cookie, 50), None, "older key");
        assert_eq!(
            check(&twice, &flow, 1000, make(&k3, &flow, 1000, 50, 1), 51),
            Some(1)
        );
        let fresh = CookieKeys::from_os();
        assert_ne!(fresh.current, CookieKeys::from_os().current);
    }

    #[test]
    fn forged_cookies_are_refused() {
        let keys = CookieKeys {
            current: K,
            previous: CookieSecret::from_words(9, 9),
        };
        for flow in flows() {
            let good = make(&K, &flow, 77, 1000, 2);
            // Another flow, another key, every single-bit change.
            let other = CookieFlow::new(
                ("198.18.0.11".parse().unwrap(), 40000),
                ("198.18.0.100".parse().unwrap(), 80),
            );
            assert_eq!(check(&keys, &other, 77, good, 1000), None);
            let stranger = CookieKeys::from_os();
            assert_eq!(check(&stranger, &flow, 77, good, 1000), None);
            // As with Linux, the two low bits carry the MSS index unhashed: a
            // change there can only pick another table MSS.
            for bit in 0..2 {
                assert_ne!(check(&keys, &flow, 77, good ^ (1 << bit), 1000), Some(2));
            }
            for bit in 2..32 {
                assert_eq!(
                    check(&keys, &flow, 77, good ^ (1 << bit), 1000),
                    None,
                    "bit {bit}"
                );
            }
            // A sweep of guesses: none passes (each has about a 2^-28 chance).
            let passed = (0..200_000u32)
                .filter(|g| check(&keys, &flow, 77, g.wrapping_mul(2_654_435_761), 1000).is_some())
                .count();
            assert_eq!(passed, 0);
        }
    }
}
