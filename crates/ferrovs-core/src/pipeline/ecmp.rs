//! Multipath (ECMP) routes: which of a route's next hops a packet takes.
//!
//! The choice is per flow, never per packet: the packet's 5-tuple as it leaves
//! (addresses, protocol, and the ports unless it is a fragment) is hashed, and
//! [`RouteTable::choose`](crate::net::RouteTable::choose) ranks the route's next hops
//! for that hash. Every packet of a connection in one direction has the same
//! 5-tuple, so the connection keeps its next hop; the hash needs no state, so every
//! worker (and every cluster member) chooses alike. A next hop whose neighbour did
//! not resolve ([`NeighTable::unreachable`](crate::net::NeighTable::unreachable)) is
//! skipped while it stays so.

use super::*;
use crate::net::{Lookup, NextHop};

/// The flow hash of an Ethernet frame carrying IPv4 or IPv6 (one VLAN tag
/// allowed): well spread 64 bits, the same for every packet with the same
/// addresses, protocol and TCP/UDP/SCTP ports; 0 for anything else.
#[inline]
pub(super) fn flow_hash(frame: &[u8]) -> u64 {
    let (ether_type, l3) = match frame.get(12..14) {
        Some([0x81, 0x00]) => (frame.get(16..18), 18),
        t => (t, 14),
    };
    let Some(ip) = frame.get(l3..) else { return 0 };
    let (addrs, proto, l4) = match ether_type {
        Some([0x08, 0x00]) if ip.len() >= 20 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            // A fragment's ports are in its first fragment only: all the
            // fragments of a datagram hash alike without them.
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let l4 = (!fragment).then(|| ip.get(ihl..)).flatten();
            let a = u64::from_be_bytes([
                ip[12], ip[13], ip[14], ip[15], ip[16], ip[17], ip[18], ip[19],
            ]);
            ((a, 0, 0), ip[9], l4)
        }
        Some([0x86, 0xdd]) if ip.len() >= 40 => {
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&ip[i..i + 8]);
                u64::from_be_bytes(w)
            };
            let a = (word(8) ^ word(16).rotate_left(17), word(24), word(32));
            (a, ip[6], ip.get(40..))
        }
        _ => return 0,
    };
    // TCP, UDP, SCTP: the ports open the header.
    let ports = match (proto, l4) {
        (6 | 17 | 132, Some(&[a, b, c, d, ..])) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    };
    let mut h = addrs.0 ^ u64::from(proto) << 56 ^ u64::from(ports);
    for word in [addrs.1, addrs.2] {
        h = (h ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    h = (h ^ (h >> 32)).wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^ (h >> 32)
}

impl<P: PacketPool> Pipeline<P> {
    /// The next hop of `frame`'s flow on the route that `hop` (a lookup's answer
    /// for `dst`) belongs to: `hop` itself unless the route is multipath.
    #[inline]
    pub(super) fn choose_next_hop(&self, hop: NextHop, frame: &[u8], dst: IpAddr) -> NextHop {
        if hop.group == 0 {
            return hop;
        }
        let neigh = &self.neigh;
        self.dp.routes.choose(hop, flow_hash(frame), |h| {
            !neigh.unreachable(h.neighbor(dst))
        })
    }

    /// Tells the neighbour table which gateways multipath routes use (start-up and
    /// every configuration).
    pub(super) fn watch_multipath_gateways(&mut self) {
        let dp = &self.dp;
        self.neigh
            .watch(dp.routes.multipath_gateways().map(|(ip, _)| ip));
    }

    /// Starts resolving the gateways of multipath routes that are neither known
    /// nor given up on, before traffic needs them (housekeeping): a gateway that
    /// is down is then skipped from the first connection on, instead of holding
    /// that connection's packets while its probes run out.
    pub(super) fn resolve_multipath_gateways(&mut self) {
        let Self {
            neigh,
            dp,
            pool,
            stats,
            tx,
            now_ms,
            ..
        } = self;
        for (ip, port) in dp.routes.multipath_gateways() {
            if neigh.get(ip).is_some() || neigh.unreachable(ip) {
                continue;
            }
            if let Lookup::Resolving { probe: true } = neigh.lookup(ip, port, *now_ms) {
                send_probe(dp, pool, stats, tx, ip, port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flow_hash;

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16, frag: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        f[23] = proto;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    fn v6(src_last: u8, dst_last: u8, sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 8];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[20] = 6;
        f[22..38].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        f[37] = src_last;
        f[38..54].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        f[53] = dst_last;
        f[54..56].copy_from_slice(&sport.to_be_bytes());
        f[56..58].copy_from_slice(&80u16.to_be_bytes());
        f
    }

    #[test]
    fn every_field_of_the_five_tuple_counts_and_nothing_else() {
        let base = v4([10, 0, 0, 1], [198, 19, 0, 10], 6, 40000, 80, 0);
        let h = flow_hash(&base);
        assert_ne!(h, 0);
        for other in [
            v4([10, 0, 0, 2], [198, 19, 0, 10], 6, 40000, 80, 0),
            v4([10, 0, 0, 1], [198, 19, 0, 11], 6, 40000, 80, 0),
            v4([10, 0, 0, 1], [198, 19, 0, 10], 17, 40000, 80, 0),
            v4([10, 0, 0, 1], [198, 19, 0, 10], 6, 40001, 80, 0),
            v4([10, 0, 0, 1], [198, 19, 0, 10], 6, 40000, 81, 0),
        ] {
            assert_ne!(flow_hash(&other), h);
        }
        // The rest of the packet (MACs, TTL, payload) does not.
        let mut same = base.clone();
        same[0] = 0xff;
        same[22] = 3;
        same.extend_from_slice(b"payload");
        assert_eq!(flow_hash(&same), h);
        assert_ne!(flow_hash(&v6(1, 2, 40000)), flow_hash(&v6(1, 2, 40001)));
        assert_ne!(flow_hash(&v6(1, 2, 40000)), flow_hash(&v6(3, 2, 40000)));
        assert_ne!(flow_hash(&v6(1, 2, 40000)), 0);
        assert_eq!(flow_hash(&[0u8; 60]), 0, "not IP");
        assert_eq!(flow_hash(&base[..20]), 0, "truncated");
    }

    #[test]
    fn the_fragments_of_a_datagram_hash_alike() {
        let first = v4([10, 0, 0, 1], [198, 19, 0, 10], 17, 5353, 53, 0x2000);
        let later = v4([10, 0, 0, 1], [198, 19, 0, 10], 17, 0x1234, 0x5678, 0x00b9);
        assert_eq!(flow_hash(&first), flow_hash(&later));
    }

    #[test]
    fn a_vlan_tag_is_skipped() {
        let plain = v4([10, 0, 0, 1], [198, 19, 0, 10], 6, 40000, 80, 0);
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged.extend_from_slice(&plain[12..]);
        assert_eq!(flow_hash(&tagged), flow_hash(&plain));
    }

    #[test]
    fn flows_spread_evenly_over_buckets() {
        let mut buckets = [0u32; 4];
        for port in 0..40_000u16 {
            let f = v4([10, 0, 0, 1], [198, 19, 0, 10], 6, port, 80, 0);
            buckets[(flow_hash(&f) >> 62) as usize] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
    }
}
