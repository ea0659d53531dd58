//! The flow key (5-tuple) that connections are looked up by, and its keyed hash.
//!
//! Clients choose their source address and port, so an attacker can aim many flows
//! at one hash bucket if the hash is predictable (hash flooding). IPVS and DPVS
//! defend with jhash under a random per-boot seed; we do the same with foldhash
//! (a folded-multiply hash, the default hasher of hashbrown) under seeds drawn from
//! the operating system's random source once per table. Foldhash is a good fit for
//! these keys: the IPv4 key (13 bytes) collects into one 128-bit block and costs a
//! single 64x64->128 multiply; the IPv6 key (37 bytes) costs three. It claims only
//! "minimal" DoS resistance (no proof against an attacker who can observe hash
//! values), the same class as the seeded jhash used by IPVS; hash values never
//! leave the process.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

use foldhash::fast::FoldHasher;
use foldhash::SharedSeed;

use super::family::Family;
pub use crate::packet::ip::{Proto, UnsupportedProto};

/// Which way a packet travels relative to the connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Dir {
    /// Client to virtual service (IPVS "INPUT").
    Inbound,
    /// Real server back to the client or local address (IPVS "OUTPUT").
    Outbound,
}

impl Dir {
    /// The direction as an index: where a connection keeps this direction's record.
    pub(crate) const fn bit(self) -> u32 {
        match self {
            Dir::Inbound => 0,
            Dir::Outbound => 1,
        }
    }
}

/// A 5-tuple as it appears in a packet: source, destination, ports, protocol.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey<A: Family> {
    /// Source address.
    pub src: A,
    /// Destination address.
    pub dst: A,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP or UDP: the same addresses and ports under the other protocol are another flow.
    pub proto: Proto,
}

impl<A: Family> FlowKey<A> {
    /// The key of a packet from `src:sport` to `dst:dport`.
    pub const fn new(proto: Proto, src: A, sport: u16, dst: A, dport: u16) -> Self {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }

    /// The key's hash under `hasher`. A worker can hash a whole burst first, prefetch,
    /// then call [`ConnTable::lookup_hashed`](super::ConnTable::lookup_hashed); the
    /// hasher must be the table's own ([`ConnTable::hasher`](super::ConnTable::hasher)).
    #[inline]
    pub fn hash_with(&self, hasher: &FlowHasher) -> u64 {
        hasher.hash(self)
    }
}

impl<A: Family> fmt::Debug for FlowKey<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{} -> {}:{}",
            self.proto, self.src, self.sport, self.dst, self.dport
        )
    }
}

/// The keyed hash of flow keys: foldhash under seeds secret to this process.
#[derive(Clone)]
pub struct FlowHasher {
    per_hasher: u64,
    shared: SharedSeed,
}

/// Shuffles `items` (Fisher-Yates with xorshift64, `state` advancing and never 0):
/// cheap and deterministic per seed, for the per-worker orders drawn from a
/// hasher's [`FlowHasher::seed`] (connection slots, FULLNAT local ports).
pub fn shuffle<T>(items: &mut [T], state: &mut u64) {
    for i in (1..items.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        items.swap(i, (*state % (i as u64 + 1)) as usize);
    }
}

impl FlowHasher {
    /// This hasher's random seed, for other per-worker randomisation (local port
    /// order) that should not be predictable either.
    pub fn seed(&self) -> u64 {
        self.per_hasher
    }

    /// A hasher with seeds from the operating system's random source (through std's
    /// `RandomState`, whose SipHash keys come from getrandom).
    pub fn random() -> Self {
        let secret = RandomState::new();
        FlowHasher {
            per_hasher: secret.hash_one(0x7065_725f_6861_7368_u64),
            shared: SharedSeed::from_u64(secret.hash_one(0x7368_6172_6564_u64)),
        }
    }

    /// A hasher with a fixed seed: reproducible, for tests and benchmarks only.
    pub fn with_seed(seed: u64) -> Self {
        FlowHasher {
            per_hasher: seed,
            shared: SharedSeed::from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    /// Hashes a flow key. The fields go in as integers: for IPv4 they fill one
    /// 128-bit block, so this is one folded multiply.
    #[inline]
    pub fn hash<A: Family>(&self, key: &FlowKey<A>) -> u64 {
        let mut state = FoldHasher::with_seed(self.per_hasher, &self.shared);
        key.src.write_hash(&mut state);
        key.dst.write_hash(&mut state);
        state.write_u16(key.sport);
        state.write_u16(key.dport);
        state.write_u8(key.proto.number());
        state.finish()
    }

    /// Hashes a persistence template key: service index and client network.
    #[inline]
    pub(crate) fn hash_template<A: Family>(&self, service: u16, client: A) -> u64 {
        let mut state = FoldHasher::with_seed(self.per_hasher, &self.shared);
        client.write_hash(&mut state);
        state.write_u16(service);
        state.finish()
    }
}

impl fmt::Debug for FlowHasher {
    /// Seeds are secret: they are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlowHasher { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8, sport: u16) -> FlowKey<Ipv4Addr> {
        FlowKey::new(
            Proto::Tcp,
            Ipv4Addr::new(198, 18, 1, last),
            sport,
            Ipv4Addr::new(198, 18, 0, 100),
            80,
        )
    }

    #[test]
    fn hash_is_deterministic_per_seed_and_differs_across_seeds() {
        let a = FlowHasher::with_seed(1);
        let b = FlowHasher::with_seed(2);
        let k = v4(1, 40000);
        assert_eq!(a.hash(&k), a.hash(&k));
        assert_eq!(k.hash_with(&a), a.hash(&k));
        assert_ne!(a.hash(&k), b.hash(&k));
        // Two random hashers get different seeds.
        let r1 = FlowHasher::random();
        let r2 = FlowHasher::random();
        assert_ne!(r1.hash(&k), r2.hash(&k));
    }

    #[test]
    fn every_field_changes_the_hash() {
        let h = FlowHasher::with_seed(7);
        let base = v4(1, 40000);
        let mut variants = vec![base];
        variants.push(FlowKey {
            src: Ipv4Addr::new(198, 18, 1, 2),
            ..base
        });
        variants.push(FlowKey {
            dst: Ipv4Addr::new(198, 18, 0, 101),
            ..base
        });
        variants.push(FlowKey {
            sport: 40001,
            ..base
        });
        variants.push(FlowKey { dport: 81, ..base });
        variants.push(FlowKey {
            proto: Proto::Udp,
            ..base
        });
        // Swapping source and destination is a different key.
        variants.push(FlowKey {
            src: base.dst,
            dst: base.src,
            sport: base.dport,
            dport: base.sport,
            ..base
        });
        let hashes: HashSet<u64> = variants.iter().map(|k| h.hash(k)).collect();
        assert_eq!(hashes.len(), variants.len());

        let k6 = FlowKey::new(
            Proto::Udp,
            "2001:2::1".parse::<Ipv6Addr>().unwrap(),
            5353,
            "2001:2::100".parse::<Ipv6Addr>().unwrap(),
            53,
        );
        let k6b = FlowKey { sport: 5354, ..k6 };
        assert_ne!(h.hash(&k6), h.hash(&k6b));
    }

    #[test]
    fn low_and_high_bits_spread_over_sequential_ports() {
        // The connection index takes the bucket from the top bits and a signature
        // from the low ones; hashbrown (persistence templates) the bucket from the
        // low bits and a 7-bit tag from the top. A client walking its source ports
        // must spread over all of them.
        let h = FlowHasher::with_seed(0x1234);
        let mut low = HashSet::new();
        let mut top = HashSet::new();
        let mut tag = HashSet::new();
        for port in 0..4096u16 {
            let x = h.hash(&v4(1, port));
            low.insert(x & 0xfff);
            top.insert(x >> 52);
            tag.insert(x >> 57);
        }
        // A uniform hash fills about 63% of 4096 buckets with 4096 keys.
        assert!(low.len() > 2400, "low bits poorly spread: {}", low.len());
        assert!(top.len() > 2400, "top bits poorly spread: {}", top.len());
        assert_eq!(tag.len(), 128);
    }

    #[test]
    fn debug_hides_seeds() {
        assert_eq!(
            format!("{:?}", FlowHasher::with_seed(99)),
            "FlowHasher { .. }"
        );
        assert_eq!(
            format!("{:?}", v4(9, 1234)),
            "TCP 198.18.1.9:1234 -> 198.18.0.100:80"
        );
    }
}
