//! Longest-prefix-match routing over connected and static routes.
//!
//! One hash map per prefix length, probed from the longest length present down:
//! a lookup costs one probe per distinct prefix length in the table (a handful on a
//! load balancer), whatever the number of routes.
//!
//! A route may have several next hops (ECMP). A lookup then answers the first of
//! them, marked with the route's group, and [`RouteTable::choose`] picks a flow's
//! next hop in the group by rendezvous hashing: each (flow, next hop) pair gets a
//! score, the flow takes the usable next hop with the highest. A flow keeps its next
//! hop as long as that stays usable, and the flows of one that becomes unusable
//! spread evenly over the others.

use foldhash::fast::FixedState;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where a matched route sends the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Index of the egress port (config order).
    pub port: usize,
    /// The address to resolve with ARP/ND: the gateway, or the destination itself
    /// for a connected route.
    pub via: Option<IpAddr>,
    /// 0 when the route has this next hop alone; otherwise 1 + the index of the
    /// route's group of equal-cost next hops, for [`RouteTable::choose`].
    pub group: u16,
}

impl NextHop {
    /// The neighbour address for destination `dst`.
    pub fn neighbor(&self, dst: IpAddr) -> IpAddr {
        self.via.unwrap_or(dst)
    }
}

/// A route as configured: prefix, egress ports and gateways (None = connected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destinations the route covers (host bits ignored).
    pub prefix: IpNet,
    /// Egress port and gateway for those destinations: one, or several of equal
    /// cost (their `group` is set by the table).
    pub next_hops: Vec<NextHop>,
}

impl Route {
    /// A route with one next hop.
    pub fn single(prefix: IpNet, port: usize, via: Option<IpAddr>) -> Route {
        Route {
            prefix,
            next_hops: vec![NextHop {
                port,
                via,
                group: 0,
            }],
        }
    }
}

/// The score of next hop `seed` for a flow with `hash` (rendezvous hashing): a
/// 64-bit mix of both, so that every next hop ranks flows independently.
#[inline(always)]
fn score(hash: u64, seed: u64) -> u64 {
    let mut x = hash ^ seed;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A next hop's seed for [`score`]: from its address, so that a next hop keeps
/// its flows when others are added to or removed from the route.
fn seed_of(hop: &NextHop) -> u64 {
    let bits = match hop.via {
        Some(IpAddr::V4(a)) => u128::from(u32::from(a)),
        Some(IpAddr::V6(a)) => u128::from(a),
        None => 0,
    };
    score(bits as u64, (bits >> 64) as u64 ^ 0x9e37_79b9_7f4a_7c15)
}

/// Up to this many prefixes of a family, lookups scan a flat list instead of
/// probing one hash map per prefix length: a few compares beat a few hashes.
const FLAT_MAX: usize = 16;

/// Prefix length -> (masked network -> next hop), for one address family of `BITS` bits.
#[derive(Debug, Clone, Default)]
struct Lpm<const BITS: usize> {
    by_len: Vec<(u8, HashMap<u128, NextHop, FixedState>)>, // longest first
    /// The same routes as (mask, network, next hop), longest prefix first, while
    /// there are at most [`FLAT_MAX`] of them.
    flat: Option<Vec<(u128, u128, NextHop)>>,
}

impl<const BITS: usize> Lpm<BITS> {
    fn mask(len: u8) -> u128 {
        let host_bits = BITS as u32 - u32::from(len);
        let all = if BITS == 128 {
            u128::MAX
        } else {
            (1u128 << BITS) - 1
        };
        if host_bits as usize == BITS {
            0
        } else {
            all & !((1u128 << host_bits) - 1)
        }
    }

    fn insert(&mut self, net: u128, len: u8, hop: NextHop) {
        let pos = match self.by_len.iter().position(|(l, _)| *l <= len) {
            Some(p) if self.by_len[p].0 == len => p,
            Some(p) => {
                self.by_len.insert(p, (len, HashMap::default()));
                p
            }
            None => {
                self.by_len.push((len, HashMap::default()));
                self.by_len.len() - 1
            }
        };
        self.by_len[pos].1.insert(net & Self::mask(len), hop);
        let count: usize = self.by_len.iter().map(|(_, m)| m.len()).sum();
        self.flat = (count <= FLAT_MAX).then(|| {
            self.by_len
                .iter()
                .flat_map(|(len, map)| {
                    let mask = Self::mask(*len);
                    map.iter().map(move |(net, hop)| (mask, *net, *hop))
                })
                .collect()
        });
    }

    #[inline]
    fn lookup(&self, addr: u128) -> Option<NextHop> {
        match &self.flat {
            Some(flat) => flat
                .iter()
                .find(|(mask, net, _)| addr & mask == *net)
                .map(|(_, _, hop)| *hop),
            None => self.lookup_hashed(addr),
        }
    }

    fn lookup_hashed(&self, addr: u128) -> Option<NextHop> {
        self.by_len
            .iter()
            .find_map(|(len, map)| map.get(&(addr & Self::mask(*len))).copied())
    }
}

/// The routing table: connected subnets of the ports plus static routes.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    v4: Lpm<32>,
    v6: Lpm<128>,
    routes: Vec<Route>,
    /// The next hops of each multipath route.
    groups: Vec<Group>,
}

/// The next hops of a multipath route and their seeds for [`score`].
#[derive(Debug, Clone, Default)]
struct Group {
    seeds: Box<[u64]>,
    hops: Box<[NextHop]>,
}

impl RouteTable {
    /// Builds the table. When two routes have the same prefix the later wins, so
    /// callers list connected routes first and static routes after. A route
    /// without next hops is left out.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> RouteTable {
        let mut t = RouteTable::default();
        for mut r in routes {
            let group = if r.next_hops.len() > 1 {
                u16::try_from(t.groups.len() + 1).unwrap_or(0)
            } else {
                0
            };
            for hop in &mut r.next_hops {
                hop.group = group;
            }
            if group != 0 {
                t.groups.push(Group {
                    seeds: r.next_hops.iter().map(seed_of).collect(),
                    hops: r.next_hops.clone().into_boxed_slice(),
                });
            }
            let Some(&first) = r.next_hops.first() else {
                continue;
            };
            match r.prefix {
                IpNet::V4(n) => {
                    t.v4.insert(u128::from(u32::from(n.network())), n.prefix_len(), first)
                }
                IpNet::V6(n) => t.v6.insert(u128::from(n.network()), n.prefix_len(), first),
            }
            t.routes.push(r);
        }
        t
    }

    /// Every next hop of the route that `hop` (a lookup's answer) belongs to.
    pub fn next_hops<'a>(&'a self, hop: &'a NextHop) -> &'a [NextHop] {
        match usize::from(hop.group).checked_sub(1) {
            Some(i) => &self.groups[i].hops,
            None => std::slice::from_ref(hop),
        }
    }

    /// The gateways of every multipath route, with their egress ports.
    pub fn multipath_gateways(&self) -> impl Iterator<Item = (IpAddr, usize)> + '_ {
        self.groups
            .iter()
            .flat_map(|g| g.hops.iter())
            .filter_map(|h| Some((h.via?, h.port)))
    }

    /// The next hop of a flow with `hash` on the route of `hop` (a lookup's
    /// answer): `hop` itself on a route with one next hop; on a multipath route
    /// the one scoring highest for the flow among those `usable` accepts, or among
    /// all when it accepts none. The same flow gets the same answer while the set
    /// of usable next hops holds its next hop (see the module documentation).
    #[inline]
    pub fn choose(
        &self,
        hop: NextHop,
        hash: u64,
        mut usable: impl FnMut(&NextHop) -> bool,
    ) -> NextHop {
        let Some(i) = usize::from(hop.group).checked_sub(1) else {
            return hop;
        };
        let mut best: Option<(u64, NextHop)> = None;
        let mut best_usable: Option<(u64, NextHop)> = None;
        let group = &self.groups[i];
        for (&seed, &h) in group.seeds.iter().zip(group.hops.iter()) {
            let s = score(hash, seed);
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, h));
            }
            if best_usable.is_none_or(|(b, _)| s > b) && usable(&h) {
                best_usable = Some((s, h));
            }
        }
        best_usable.or(best).map_or(hop, |(_, h)| h)
    }

    /// Longest-prefix match for `dst`.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<NextHop> {
        match dst {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    /// Longest-prefix match for an IPv4 `dst`, without the family dispatch.
    #[inline]
    pub fn lookup_v4(&self, dst: Ipv4Addr) -> Option<NextHop> {
        self.v4.lookup(u128::from(u32::from(dst)))
    }

    /// Longest-prefix match for an IPv6 `dst`, without the family dispatch.
    #[inline]
    pub fn lookup_v6(&self, dst: Ipv6Addr) -> Option<NextHop> {
        self.v6.lookup(u128::from(dst))
    }

    /// The routes in insertion order (for display).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(prefix: &str, port: usize, via: Option<&str>) -> Route {
        Route::single(
            prefix.parse().unwrap(),
            port,
            via.map(|v| v.parse().unwrap()),
        )
    }

    fn hop(port: usize, via: Option<&str>) -> NextHop {
        NextHop {
            port,
            via: via.map(|v| v.parse().unwrap()),
            group: 0,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let t = RouteTable::new([
            r("198.18.0.0/24", 0, None),
            r("198.19.0.0/24", 1, None),
            r("0.0.0.0/0", 0, Some("198.18.0.254")),
            r("10.0.0.0/8", 1, Some("198.19.0.254")),
            r("10.1.0.0/16", 0, Some("198.18.0.253")),
            r("10.1.2.3/32", 1, Some("198.19.0.253")),
        ]);
        let hop = |s| t.lookup(ip(s)).unwrap();
        assert_eq!(hop("198.18.0.7"), super::tests::hop(0, None));
        assert_eq!(hop("198.19.0.9").port, 1);
        assert_eq!(hop("8.8.8.8").via, Some(ip("198.18.0.254")));
        assert_eq!(hop("10.9.9.9").via, Some(ip("198.19.0.254")));
        assert_eq!(hop("10.1.9.9").via, Some(ip("198.18.0.253")));
        assert_eq!(hop("10.1.2.3").via, Some(ip("198.19.0.253")));
        assert_eq!(
            hop("198.18.0.7").neighbor(ip("198.18.0.7")),
            ip("198.18.0.7")
        );
        assert_eq!(hop("8.8.8.8").neighbor(ip("8.8.8.8")), ip("198.18.0.254"));
    }

    #[test]
    fn no_default_route_means_no_match() {
        let t = RouteTable::new([r("198.18.0.0/15", 0, None)]);
        assert!(t.lookup(ip("198.19.255.1")).is_some());
        assert!(t.lookup(ip("198.20.0.1")).is_none());
        assert!(t.lookup(ip("2001:2::1")).is_none());
    }

    #[test]
    fn ipv6_routes() {
        let t = RouteTable::new([
            r("2001:2::/64", 0, None),
            r("2001:2:0:1::/64", 1, None),
            r("::/0", 0, Some("2001:2::fe")),
        ]);
        assert_eq!(t.lookup(ip("2001:2::10")).unwrap(), hop(0, None));
        assert_eq!(t.lookup(ip("2001:2:0:1::10")).unwrap().port, 1);
        assert_eq!(
            t.lookup(ip("2001:db8::1")).unwrap().via,
            Some(ip("2001:2::fe"))
        );
    }

    #[test]
    fn later_route_with_same_prefix_replaces_earlier() {
        let t = RouteTable::new([
            r("0.0.0.0/0", 0, Some("198.18.0.1")),
            r("0.0.0.0/0", 1, Some("198.19.0.1")),
        ]);
        assert_eq!(t.lookup(ip("1.2.3.4")).unwrap().port, 1);
    }

    #[test]
    fn flat_and_hashed_lookups_agree() {
        // Small tables scan a flat list, larger ones probe per prefix length: the
        // answers must be the same, at every size around the switch.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for size in [1, FLAT_MAX - 1, FLAT_MAX, FLAT_MAX + 1, 40] {
            let mut routes = vec![r("0.0.0.0/0", 0, Some("198.18.0.254"))];
            while routes.len() < size {
                let len = [8u8, 16, 20, 24, 28, 32][(rnd() % 6) as usize];
                // Few distinct networks, so prefixes nest and overlap.
                let net = Ipv4Addr::from(0x0a00_0000 | (rnd() as u32 & 0x00ff_0f0f));
                let prefix = IpNet::new(IpAddr::V4(net), len).unwrap().trunc();
                if routes.iter().any(|r| r.prefix == prefix) {
                    continue;
                }
                routes.push(Route::single(prefix, routes.len(), None));
            }
            let t = RouteTable::new(routes);
            assert_eq!(t.v4.flat.is_some(), size <= FLAT_MAX, "size {size}");
            for _ in 0..2000 {
                let a = 0x0a00_0000 | (rnd() as u32 & 0x00ff_0f0f) ^ (rnd() as u32 & 0x101);
                let a = u128::from(a);
                assert_eq!(t.v4.lookup(a), t.v4.lookup_hashed(a), "size {size}");
            }
        }
    }

    fn ecmp_table(vias: &[&str]) -> RouteTable {
        RouteTable::new([
            r("198.18.0.0/24", 0, None),
            r("198.19.0.0/24", 1, None),
            Route {
                prefix: "10.0.0.0/8".parse().unwrap(),
                next_hops: vias
                    .iter()
                    .map(|v| hop(if v.starts_with("198.18") { 0 } else { 1 }, Some(v)))
                    .collect(),
            },
        ])
    }

    /// Flow hashes as a hasher would make them (well spread 64-bit values).
    fn hashes(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|i| score(i, 0x1234_5678))
    }

    #[test]
    fn a_multipath_route_spreads_flows_over_its_next_hops() {
        let vias = ["198.18.0.253", "198.18.0.254", "198.19.0.254"];
        let t = ecmp_table(&vias);
        let first = t.lookup(ip("10.1.2.3")).unwrap();
        assert_eq!(first.via, Some(ip("198.18.0.253")));
        assert_ne!(first.group, 0);
        assert_eq!(t.next_hops(&first).len(), 3);
        let mut counts = [0usize; 3];
        for h in hashes(30_000) {
            let chosen = t.choose(first, h, |_| true);
            let i = vias.iter().position(|v| Some(ip(v)) == chosen.via).unwrap();
            assert_eq!(chosen.port, if i == 2 { 1 } else { 0 });
            assert_eq!(chosen, t.choose(first, h, |_| true), "same flow, same hop");
            counts[i] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let mut gateways: Vec<_> = t.multipath_gateways().collect();
        gateways.sort();
        assert_eq!(gateways.len(), 3);
        assert_eq!(gateways[2], (ip("198.19.0.254"), 1));
    }

    #[test]
    fn a_single_next_hop_is_its_own_choice() {
        let t = ecmp_table(&["198.18.0.254"]);
        let only = t.lookup(ip("10.1.2.3")).unwrap();
        assert_eq!(only.group, 0);
        assert_eq!(t.next_hops(&only), &[only]);
        assert_eq!(t.choose(only, 7, |_| false), only);
        assert_eq!(t.multipath_gateways().count(), 0);
        let connected = t.lookup(ip("198.19.0.7")).unwrap();
        assert_eq!(t.choose(connected, 99, |_| true), connected);
    }

    #[test]
    fn an_unusable_next_hop_is_skipped_and_only_its_flows_move() {
        let vias = [
            "198.18.0.252",
            "198.18.0.253",
            "198.18.0.254",
            "198.19.0.254",
        ];
        let t = ecmp_table(&vias);
        let first = t.lookup(ip("10.200.0.1")).unwrap();
        let dead = ip("198.18.0.253");
        let mut moved = [0usize; 4];
        for h in hashes(20_000) {
            let before = t.choose(first, h, |_| true);
            let after = t.choose(first, h, |n| n.via != Some(dead));
            assert_ne!(after.via, Some(dead));
            if before.via != Some(dead) {
                assert_eq!(before, after, "a flow on a usable next hop keeps it");
            } else {
                let i = vias.iter().position(|v| Some(ip(v)) == after.via).unwrap();
                moved[i] += 1;
            }
        }
        // The dead next hop's ~5000 flows spread over the three others.
        assert_eq!(moved[1], 0);
        for i in [0, 2, 3] {
            assert!((1_300..2_000).contains(&moved[i]), "{moved:?}");
        }
        // None usable: the flow's first choice (its neighbour is asked again).
        for h in hashes(100) {
            assert_eq!(t.choose(first, h, |_| false), t.choose(first, h, |_| true));
        }
    }

    #[test]
    fn a_next_hop_keeps_its_flows_when_another_is_added() {
        let before = ecmp_table(&["198.18.0.253", "198.18.0.254"]);
        let after = ecmp_table(&["198.18.0.253", "198.18.0.254", "198.19.0.254"]);
        let (b, a) = (
            before.lookup(ip("10.0.0.1")).unwrap(),
            after.lookup(ip("10.0.0.1")).unwrap(),
        );
        let mut moved = 0;
        for h in hashes(9_000) {
            let (x, y) = (before.choose(b, h, |_| true), after.choose(a, h, |_| true));
            if x.via != y.via {
                assert_eq!(y.via, Some(ip("198.19.0.254")), "moves only to the new hop");
                moved += 1;
            }
        }
        assert!((2_600..3_400).contains(&moved), "{moved}");
    }

    #[test]
    fn masks() {
        assert_eq!(Lpm::<32>::mask(0), 0);
        assert_eq!(Lpm::<32>::mask(24), 0xffff_ff00);
        assert_eq!(Lpm::<32>::mask(32), 0xffff_ffff);
        assert_eq!(Lpm::<128>::mask(128), u128::MAX);
        assert_eq!(Lpm::<128>::mask(64), u128::MAX << 64);
    }
}
