//! Longest-prefix-match routing over connected and static routes.
//!
//! One hash map per prefix length, probed from the longest length present down:
//! a lookup costs one probe per distinct prefix length in the table (a handful on a
//! load balancer), whatever the number of routes.

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
}

impl NextHop {
    /// The neighbour address for destination `dst`.
    pub fn neighbor(&self, dst: IpAddr) -> IpAddr {
        self.via.unwrap_or(dst)
    }
}

/// A route as configured: prefix, egress port, gateway (None = connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destinations the route covers (host bits ignored).
    pub prefix: IpNet,
    /// Egress port and gateway for those destinations.
    pub next_hop: NextHop,
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
}

impl RouteTable {
    /// Builds the table. When two routes have the same prefix the later wins, so
    /// callers list connected routes first and static routes after.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> RouteTable {
        let mut t = RouteTable::default();
        for r in routes {
            match r.prefix {
                IpNet::V4(n) => t.v4.insert(
                    u128::from(u32::from(n.network())),
                    n.prefix_len(),
                    r.next_hop,
                ),
                IpNet::V6(n) => {
                    t.v6.insert(u128::from(n.network()), n.prefix_len(), r.next_hop)
                }
            }
            t.routes.push(r);
        }
        t
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
        Route {
            prefix: prefix.parse().unwrap(),
            next_hop: NextHop {
                port,
                via: via.map(|v| v.parse().unwrap()),
            },
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
        assert_eq!(hop("198.18.0.7"), NextHop { port: 0, via: None });
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
        assert_eq!(
            t.lookup(ip("2001:2::10")).unwrap(),
            NextHop { port: 0, via: None }
        );
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
                routes.push(Route {
                    prefix,
                    next_hop: NextHop {
                        port: routes.len(),
                        via: None,
                    },
                });
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

    #[test]
    fn masks() {
        assert_eq!(Lpm::<32>::mask(0), 0);
        assert_eq!(Lpm::<32>::mask(24), 0xffff_ff00);
        assert_eq!(Lpm::<32>::mask(32), 0xffff_ffff);
        assert_eq!(Lpm::<128>::mask(128), u128::MAX);
        assert_eq!(Lpm::<128>::mask(64), u128::MAX << 64);
    }
}
