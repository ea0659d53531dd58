//! A small cache of resolved IPv4 next hops for the burst path: next-hop address
//! -> (egress port, Ethernet addresses), so that a packet of an established flow
//! costs one array probe and one 12-byte copy instead of a neighbour-table lookup
//! and two MAC writes. The pipeline keeps a second one keyed by real-server
//! address (route and next hop in one answer), which also spares the route lookup
//! of packets to real servers. A third small cache, [`TunnelOuters`], keeps the
//! outer header and egress MTU of each TUNNEL real server.
//!
//! An entry answers exactly what [`NeighTable::lookup`](crate::net::NeighTable::lookup)
//! would answer without side effects (a known MAC, no probe due): it is filled only
//! from [`NeighTable::fresh_until`](crate::net::NeighTable::fresh_until), carries the
//! table's generation and the time its answer stays fresh, and is ignored once
//! either has moved on. Everything else (misses, refreshes, resolution) takes the
//! ordinary path. A configuration change clears it (routes and ports may differ).

use crate::packet::{Ipv4HeaderTemplate, MacAddr};
use std::net::Ipv4Addr;

/// Entries, direct-mapped by address: a balancer sends to a handful of next hops
/// (its real servers and gateways).
const ENTRIES: usize = 64;

/// The destination and source MAC addresses, as they open an Ethernet header.
pub(super) type L2Addrs = [u8; 12];

/// A cached answer: where a packet to the address goes, and how it is addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hop {
    /// The egress port.
    pub(super) port: usize,
    /// The Ethernet addresses to write.
    pub(super) l2: L2Addrs,
    /// Valid while `now_ms` is below this.
    pub(super) fresh_until: u64,
}

impl Hop {
    /// Towards a neighbour at `mac` out of `port`, whose own MAC is `src`.
    pub(super) fn new(port: usize, (mac, src): (MacAddr, MacAddr), fresh_until: u64) -> Hop {
        let mut l2 = [0; 12];
        l2[..6].copy_from_slice(&mac.0);
        l2[6..].copy_from_slice(&src.0);
        Hop {
            port,
            l2,
            fresh_until,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ip: Ipv4Addr,
    hop: Hop,
    /// The neighbour table's generation when filled; 0 marks an empty entry
    /// together with `fresh_until` 0.
    generation: u64,
}

const EMPTY: Entry = Entry {
    ip: Ipv4Addr::UNSPECIFIED,
    hop: Hop {
        port: 0,
        l2: [0; 12],
        fresh_until: 0,
    },
    generation: 0,
};

/// The cache (see the module documentation).
#[derive(Debug)]
pub(super) struct HopCache {
    entries: Box<[Entry; ENTRIES]>,
}

impl HopCache {
    pub(super) fn new() -> HopCache {
        HopCache {
            entries: Box::new([EMPTY; ENTRIES]),
        }
    }

    #[inline(always)]
    fn slot(ip: Ipv4Addr) -> usize {
        // Fibonacci hashing: the top bits of a multiply spread nearby addresses.
        (u32::from(ip).wrapping_mul(0x9e37_79b9) >> (32 - ENTRIES.trailing_zeros())) as usize
    }

    /// The answer for `ip`, if cached and still right at `now_ms` under
    /// neighbour-table `generation`, whatever its port: for a cache keyed by
    /// destination, whose port came from the route.
    #[inline]
    pub(super) fn lookup(&self, ip: Ipv4Addr, now_ms: u64, generation: u64) -> Option<&Hop> {
        let e = &self.entries[Self::slot(ip)];
        (e.ip == ip && e.generation == generation && now_ms < e.hop.fresh_until).then_some(&e.hop)
    }

    /// [`Self::lookup`] for next hop `ip` out of `port`.
    #[inline]
    pub(super) fn get(
        &self,
        ip: Ipv4Addr,
        port: usize,
        now_ms: u64,
        generation: u64,
    ) -> Option<&Hop> {
        self.lookup(ip, now_ms, generation)
            .filter(|hop| hop.port == port)
    }

    /// Remembers a neighbour-table answer for `ip` under `generation`.
    pub(super) fn put(&mut self, ip: Ipv4Addr, hop: Hop, generation: u64) -> &Hop {
        let e = &mut self.entries[Self::slot(ip)];
        *e = Entry {
            ip,
            hop,
            generation,
        };
        &e.hop
    }

    /// Forgets everything (configuration change).
    pub(super) fn clear(&mut self) {
        self.entries.fill(EMPTY);
    }
}

/// TUNNEL's per-real-server answers for the burst path: the outer IPv4 header
/// (from our address on the port the real server's route leaves by) and that
/// port's MTU. Both follow from the configuration alone (routes and port
/// addresses), so an entry is right until the next configuration, which clears
/// the cache; a packet to a real server not here looks them up and fills it.
/// Direct-mapped like [`HopCache`].
#[derive(Debug)]
pub(super) struct TunnelOuters {
    entries: Box<[Option<(Ipv4Addr, Ipv4HeaderTemplate, u16)>; ENTRIES]>,
}

impl TunnelOuters {
    pub(super) fn new() -> TunnelOuters {
        TunnelOuters {
            entries: Box::new([None; ENTRIES]),
        }
    }

    /// The outer header and MTU towards real server `rs`, if cached.
    #[inline]
    pub(super) fn lookup(&self, rs: Ipv4Addr) -> Option<(&Ipv4HeaderTemplate, u16)> {
        match &self.entries[HopCache::slot(rs)] {
            Some((ip, outer, mtu)) if *ip == rs => Some((outer, *mtu)),
            _ => None,
        }
    }

    /// Remembers the outer header and MTU towards `rs`.
    pub(super) fn put(&mut self, rs: Ipv4Addr, outer: Ipv4HeaderTemplate, mtu: u16) {
        self.entries[HopCache::slot(rs)] = Some((rs, outer, mtu));
    }

    /// Forgets everything (configuration change).
    pub(super) fn clear(&mut self) {
        self.entries.fill(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 7]);
    const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const L2: L2Addrs = [2, 0, 0, 0, 0, 7, 2, 0, 0, 0, 0, 1];

    fn hop(port: usize, mac: MacAddr, fresh_until: u64) -> Hop {
        Hop::new(port, (mac, OURS), fresh_until)
    }

    #[test]
    fn answers_only_while_fresh_and_unchanged() {
        let mut c = HopCache::new();
        let ip = Ipv4Addr::new(198, 19, 0, 10);
        assert_eq!(c.get(ip, 1, 0, 0), None, "empty");
        assert_eq!(c.put(ip, hop(1, MAC, 1000), 5).l2, L2);
        assert_eq!(c.get(ip, 1, 999, 5).map(|h| h.l2), Some(L2));
        assert_eq!(c.get(ip, 1, 1000, 5), None, "stale");
        assert_eq!(c.get(ip, 1, 10, 6), None, "table changed");
        assert_eq!(c.get(ip, 0, 10, 5), None, "other port");
        assert_eq!(c.get(Ipv4Addr::new(198, 19, 0, 11), 1, 10, 5), None);
        c.clear();
        assert_eq!(c.get(ip, 1, 10, 5), None, "cleared");
    }

    #[test]
    fn an_empty_entry_never_answers() {
        // Generation 0 and time 0 are possible; an empty entry is still no answer.
        let c = HopCache::new();
        assert_eq!(c.get(Ipv4Addr::UNSPECIFIED, 0, 0, 0), None);
        assert_eq!(c.lookup(Ipv4Addr::UNSPECIFIED, 0, 0), None);
    }

    #[test]
    fn lookup_by_destination_answers_with_the_port() {
        let mut c = HopCache::new();
        let ip = Ipv4Addr::new(198, 19, 0, 10);
        c.put(ip, hop(2, MAC, 1000), 5);
        assert_eq!(c.lookup(ip, 999, 5), Some(&hop(2, MAC, 1000)));
        assert_eq!(c.lookup(ip, 1000, 5), None, "stale");
        assert_eq!(c.lookup(ip, 10, 4), None, "table changed");
        assert_eq!(c.lookup(Ipv4Addr::new(198, 19, 0, 11), 10, 5), None);
        assert_eq!(c.get(ip, 2, 10, 5), Some(&hop(2, MAC, 1000)));
        assert_eq!(c.get(ip, 1, 10, 5), None, "other port");
    }

    #[test]
    fn colliding_addresses_replace_each_other() {
        let mut c = HopCache::new();
        let a = Ipv4Addr::new(198, 19, 0, 10);
        let b = (0..u32::MAX)
            .map(|i| Ipv4Addr::from(u32::from(a) + 1 + i))
            .find(|&b| HopCache::slot(b) == HopCache::slot(a))
            .unwrap();
        c.put(a, hop(1, MAC, 100), 1);
        c.put(b, hop(1, MacAddr([2, 0, 0, 0, 0, 8]), 100), 1);
        assert_eq!(c.get(a, 1, 0, 1), None);
        assert_eq!(c.get(b, 1, 0, 1).map(|h| h.l2[5]), Some(8));
    }

    #[test]
    fn tunnel_outers_answer_for_their_real_server_until_cleared() {
        use crate::packet::IpProtocol;
        let mut c = TunnelOuters::new();
        let rs = Ipv4Addr::new(198, 19, 0, 10);
        let outer = Ipv4HeaderTemplate::new(Ipv4Addr::new(198, 19, 0, 1), rs, IpProtocol::IPIP, 64);
        assert!(c.lookup(rs).is_none(), "empty");
        c.put(rs, outer, 1500);
        assert_eq!(c.lookup(rs), Some((&outer, 1500)));
        let other = (1..u32::MAX)
            .map(|i| Ipv4Addr::from(u32::from(rs) + i))
            .find(|&b| HopCache::slot(b) == HopCache::slot(rs))
            .unwrap();
        assert!(
            c.lookup(other).is_none(),
            "another address in the same slot"
        );
        c.clear();
        assert!(c.lookup(rs).is_none(), "cleared");
    }
}
