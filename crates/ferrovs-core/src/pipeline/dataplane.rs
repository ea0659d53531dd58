//! The immutable configuration snapshot every worker reads: interfaces, own
//! addresses, routes and static neighbours. Built once by the runtime and shared
//! through an `Arc`; a new snapshot replaces the old one between bursts.

use crate::config::{Config, InterfaceConfig, RpFilter};
use crate::conn::Timeouts;
use crate::forward::syncookie::CookieKeys;
use crate::net::{NextHop, Route, RouteTable};
use crate::packet::MacAddr;
use crate::service::Services;
use crate::steer::Owners;
use foldhash::fast::FixedState;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One interface as the data plane sees it: a port (untagged), or a VLAN of a
/// port. Interfaces are indexed ports first, then VLANs (`Config::interfaces`);
/// routes, neighbours, own addresses and kernel interfaces name them by index.
#[derive(Debug, Clone)]
pub struct Interface {
    /// The port's or VLAN's name from the configuration, as metrics and the
    /// control API show it.
    pub name: String,
    /// The index of the port the interface's frames go out of and come in by.
    pub port: usize,
    /// The 802.1Q VLAN id its frames carry; 0 for the port itself (untagged).
    pub vlan: u16,
    /// The port's MAC address: the source of frames sent on it and the answer to ARP/ND
    /// for its addresses.
    pub mac: MacAddr,
    /// Own addresses with their connected prefixes.
    pub addrs: Vec<IpNet>,
    /// Layer-3 MTU in bytes: the largest IP packet sent on the port.
    pub mtu: u16,
    /// A kernel interface (TAP) stands for this port: traffic to the port's own
    /// addresses that ferrovs does not answer itself goes to the kernel.
    pub kernel: bool,
    /// What the source of a new connection received on the port must have in the
    /// routing table (`ports[].rp_filter`).
    pub rp_filter: RpFilter,
}

/// What an own address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    /// A port's own address: ARP, ICMP echo, later the kernel exception path.
    Interface,
    /// A virtual service address: ARP, ICMP echo, and the services on it.
    Vip,
    /// A FULLNAT local address: ARP, ICMP echo, and real servers' replies.
    Lip,
    /// A shared address of a sync cluster that is neither a VIP nor a local
    /// address (the gateway real servers use in NAT mode): ARP and ICMP echo while
    /// this member carries it; traffic through it is forwarded like any.
    Shared,
}

/// An address ferrovs owns: it answers ICMP echo for it, and ARP/ND on `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    /// The port whose connected subnet holds the address, where ARP/ND is answered;
    /// None for a VIP that routers send to us without ARP.
    pub port: Option<usize>,
    /// What the address is for, which decides what is answered on it.
    pub kind: LocalKind,
}

/// The configuration snapshot shared by all workers.
#[derive(Debug, Clone)]
pub struct Dataplane {
    /// Increases with every configuration change; workers report the version they run.
    pub version: u64,
    /// The interfaces: the ports indexed as in the configuration, then the VLANs.
    pub ifaces: Vec<Interface>,
    /// Per port, the interface of each VLAN id (`VLAN_NONE` where the port has
    /// no such VLAN); None for a port without VLANs.
    vlan_ifaces: Vec<Option<Box<[u16]>>>,
    /// The ports' connected subnets and the configured static routes.
    pub routes: RouteTable,
    /// Configured neighbours as (address, MAC address, index of the port whose subnet
    /// holds the address).
    pub static_neighbors: Vec<(IpAddr, MacAddr, usize)>,
    /// The virtual services and their real servers.
    pub services: Services,
    /// The owner rule of every service and NAT real-server endpoint.
    pub owners: Owners,
    /// Idle timeouts of connections per state, from `connections.timeouts`.
    pub timeouts: Timeouts,
    /// `connections.syn_proxy_above`: unanswered SYNs a second, all workers
    /// together, above which TCP NAT/FULLNAT services are SYN-proxied; 0 = never.
    pub syn_proxy_above: u32,
    /// The SYN cookie keys a worker starts with (the management core rotates
    /// them with [`super::WorkerCommand::CookieKeys`]; a later snapshot's are
    /// not taken).
    pub cookie_keys: CookieKeys,
    local: HashMap<IpAddr, LocalAddr, FixedState>,
    /// Answers "certainly not ours" for most addresses before `local` is hashed:
    /// every new connection asks whether its client poses as one of our addresses.
    local_filter: AddrFilter,
    /// The broadcast addresses of the ports' IPv4 subnets (none for /31 and /32).
    broadcasts_v4: Vec<Ipv4Addr>,
}

impl Dataplane {
    /// Builds the snapshot from a validated config and the ports' MAC addresses
    /// (index = config port order), with fresh slots (start-up, tests).
    pub fn from_config(cfg: &Config, macs: &[MacAddr]) -> Dataplane {
        Self::build(cfg, macs, Services::from_config(cfg), 0)
    }

    /// Builds the snapshot `version` from a validated config, the ports' MAC
    /// addresses and the services built with their slots and health.
    pub fn build(cfg: &Config, macs: &[MacAddr], services: Services, version: u64) -> Dataplane {
        // A VLAN has its port's MAC, MTU and reverse-path filter.
        let ifaces: Vec<Interface> = cfg
            .interfaces()
            .filter_map(|i| {
                let p = cfg.ports.get(i.port)?;
                Some(Interface {
                    name: i.name.to_string(),
                    port: i.port,
                    vlan: i.vlan,
                    mac: *macs.get(i.port)?,
                    addrs: i.addresses.to_vec(),
                    mtu: p.mtu,
                    kernel: has_kernel_interface(cfg, &i),
                    rp_filter: p.rp_filter,
                })
            })
            .collect();
        let mut vlan_ifaces: Vec<Option<Box<[u16]>>> = vec![None; cfg.ports.len().min(macs.len())];
        for (index, i) in ifaces.iter().enumerate().filter(|(_, i)| i.vlan != 0) {
            let table = vlan_ifaces[i.port].get_or_insert_with(|| vec![VLAN_NONE; 4096].into());
            table[usize::from(i.vlan & 0xfff)] = index as u16;
        }
        let broadcasts_v4 = ifaces
            .iter()
            .flat_map(|i| i.addrs.iter())
            .filter_map(|net| match net {
                IpNet::V4(v4) if v4.prefix_len() <= 30 => Some(v4.broadcast()),
                _ => None,
            })
            .collect();

        let connected = ifaces.iter().enumerate().flat_map(|(port, i)| {
            i.addrs
                .iter()
                .map(move |a| Route::single(a.trunc(), port, None))
        });
        // Validation guarantees every gateway is on a connected subnet.
        let configured = cfg.routes.iter().map(|r| Route {
            prefix: r.prefix,
            next_hops: r
                .via
                .iter()
                .filter_map(|&via| {
                    Some(NextHop {
                        port: cfg.interface_for_address(via)?,
                        via: Some(via),
                        group: 0,
                    })
                })
                .collect(),
        });
        let routes = RouteTable::new(connected.chain(configured));

        let static_neighbors = cfg
            .neighbors
            .iter()
            .filter_map(|n| Some((n.ip, n.mac, cfg.interface_for_address(n.ip)?)))
            .collect();

        let mut local = HashMap::with_hasher(FixedState::default());
        for s in services.iter() {
            local.insert(
                s.vip,
                LocalAddr {
                    port: cfg.interface_for_address(s.vip),
                    kind: LocalKind::Vip,
                },
            );
        }
        for s in services.iter() {
            for lip in &s.local_addrs {
                local.insert(
                    *lip,
                    LocalAddr {
                        port: cfg.interface_for_address(*lip),
                        kind: LocalKind::Lip,
                    },
                );
            }
        }
        for (port, i) in ifaces.iter().enumerate() {
            for a in &i.addrs {
                local.insert(
                    a.addr(),
                    LocalAddr {
                        port: Some(port),
                        kind: LocalKind::Interface,
                    },
                );
            }
        }
        Dataplane {
            version,
            ifaces,
            vlan_ifaces,
            routes,
            static_neighbors,
            owners: Owners::new(&services),
            services,
            timeouts: cfg.connections.timeouts,
            syn_proxy_above: cfg.connections.syn_proxy_above,
            cookie_keys: CookieKeys::from_os(),
            local_filter: AddrFilter::of(local.keys()),
            local,
            broadcasts_v4,
        }
    }

    /// The snapshot with the shared addresses of `cfg.sync` answered for on their
    /// ports when in `active` (this member carries them now) and not otherwise:
    /// a shared VIP or local address of another member is still served (packets
    /// the routers or neighbours still send here are forwarded) but never claimed.
    pub fn with_shared(mut self, cfg: &Config, active: &[IpAddr]) -> Dataplane {
        let Some(sync) = &cfg.sync else {
            return self;
        };
        for shared in &sync.shared_addresses {
            let ip = shared.address;
            let port = cfg
                .interface_for_address(ip)
                .filter(|_| active.contains(&ip));
            match self.local.get_mut(&ip) {
                Some(l) => l.port = port,
                None if port.is_some() => {
                    self.local.insert(
                        ip,
                        LocalAddr {
                            port,
                            kind: LocalKind::Shared,
                        },
                    );
                }
                None => {}
            }
        }
        self.local_filter = AddrFilter::of(self.local.keys());
        self
    }

    /// Every address ARP/ND is answered for on `port` (its own, VIPs and local
    /// addresses on its subnets), in address order.
    pub fn addresses_on(&self, port: usize) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = self
            .local
            .iter()
            .filter(|(_, l)| l.port == Some(port))
            .map(|(ip, _)| *ip)
            .collect();
        addrs.sort();
        addrs
    }

    /// The interface of VLAN `vid` on `port`, if configured there.
    #[inline]
    pub fn vlan_interface(&self, port: usize, vid: u16) -> Option<usize> {
        let table = self.vlan_ifaces.get(port)?.as_ref()?;
        match *table.get(usize::from(vid))? {
            VLAN_NONE => None,
            iface => Some(usize::from(iface)),
        }
    }

    /// The number of ports: interfaces from this index on are VLANs.
    #[inline]
    pub fn ports(&self) -> usize {
        self.vlan_ifaces.len()
    }

    /// Whether `port` carries VLANs.
    #[inline]
    pub fn has_vlans(&self, port: usize) -> bool {
        self.vlan_ifaces.get(port).is_some_and(Option::is_some)
    }

    /// Whether `ip` is ours, what for, and where ARP/ND for it is answered.
    #[inline]
    pub fn local(&self, ip: IpAddr) -> Option<LocalAddr> {
        if !self.local_filter.may_hold(ip) {
            return None;
        }
        self.local.get(&ip).copied()
    }

    /// Whether no packet may come from `src` (RFC 1812 section 5.3.7, RFC 4291):
    /// IPv4 0.0.0.0/8, 127.0.0.0/8, multicast (224/4), class E and the limited
    /// broadcast (240/4), a port subnet's broadcast; IPv6 unspecified, loopback,
    /// multicast, IPv4-mapped (which Linux also drops on input). The caller lets
    /// the unspecified IPv6 source of duplicate address detection through.
    #[inline]
    pub fn is_martian_source(&self, src: IpAddr) -> bool {
        match src {
            IpAddr::V4(v4) => is_martian_v4(v4) || self.broadcasts_v4.contains(&v4),
            IpAddr::V6(v6) => is_martian_v6(v6),
        }
    }

    /// Whether `dst` is a unicast destination: not multicast, not the limited or a
    /// port subnet's broadcast.
    #[inline]
    pub fn is_unicast_destination(&self, dst: IpAddr) -> bool {
        match dst {
            IpAddr::V4(v4) => {
                !v4.is_multicast() && !v4.is_broadcast() && !self.broadcasts_v4.contains(&v4)
            }
            IpAddr::V6(v6) => !v6.is_multicast(),
        }
    }

    /// The own address to use as the source towards `dst` out of `port`: one in the
    /// same subnet, else the port's first address of the same family.
    pub fn source_for(&self, port: usize, dst: IpAddr) -> Option<IpAddr> {
        let addrs = &self.ifaces.get(port)?.addrs;
        addrs
            .iter()
            .find(|a| a.contains(&dst))
            .or_else(|| addrs.iter().find(|a| a.addr().is_ipv4() == dst.is_ipv4()))
            .map(IpNet::addr)
    }
}

/// IPv4 sources that are never valid, whatever the configuration: 0/8 ("this
/// network"), 127/8 (loopback), and 224/3 (multicast, class E and the limited
/// broadcast), each decided by the first octet.
#[inline]
fn is_martian_v4(src: Ipv4Addr) -> bool {
    let first = src.octets()[0];
    first == 0 || first == 127 || first >= 224
}

/// IPv6 sources that are never valid on the wire.
#[inline]
fn is_martian_v6(src: Ipv6Addr) -> bool {
    src.is_unspecified()
        || src.is_loopback()
        || src.is_multicast()
        || src.to_ipv4_mapped().is_some()
}

/// Whether interface `iface` (a port or a VLAN) gets a kernel interface: the
/// exception path is on and the interface has addresses for the kernel to use.
pub fn has_kernel_interface(cfg: &Config, iface: &InterfaceConfig<'_>) -> bool {
    cfg.management.exception_path && !iface.addresses.is_empty()
}

/// No interface for this VLAN id in a port's table.
const VLAN_NONE: u16 = u16::MAX;

#[cfg(test)]
mod tests {
    #[test]
    fn the_address_filter_holds_every_address_and_rejects_most_others() {
        let own: Vec<IpAddr> = (0..300u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i)))
            .chain((0..50u128).map(|i| IpAddr::V6((0x2001_0002_u128 << 96 | i).into())))
            .collect();
        let filter = AddrFilter::of(own.iter());
        assert!(own.iter().all(|&ip| filter.may_hold(ip)));
        let others = (0..100_000u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7)));
        let false_positives = others.filter(|&ip| filter.may_hold(ip)).count();
        // 350 of 4096 bits set: about 8.5% expected.
        assert!(false_positives < 12_000, "{false_positives}");
    }

    use super::*;
    use crate::fixture;

    #[test]
    fn martian_sources_and_unicast_destinations() {
        let cfg = fixture::parse(&fixture::appliance_with(1, true, "").replace(
            "\"198.19.0.1/24\"",
            "\"198.19.0.1/24\", \"198.20.0.0/31\", \"198.21.0.1/32\"",
        ));
        let dp = Dataplane::from_config(&cfg, &[MacAddr::ZERO, MacAddr::ZERO]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for martian in [
            "0.0.0.0",
            "0.255.255.255",
            "127.0.0.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "198.18.0.255",
            "198.19.0.255",
            "::",
            "::1",
            "ff02::1",
            "::ffff:198.18.0.10",
        ] {
            assert!(dp.is_martian_source(ip(martian)), "{martian}");
        }
        // A /31 has no broadcast address (RFC 3021), nor a /32; the subnets'
        // other addresses, and IPv6 link-local or global ones, are fine.
        for fine in [
            "198.20.0.1",
            "198.21.0.1",
            "198.18.0.254",
            "1.0.0.0",
            "223.255.255.255",
            "fe80::1",
            "2001:2::10",
            "64:ff9b::c612:a",
        ] {
            assert!(!dp.is_martian_source(ip(fine)), "{fine}");
        }
        for unicast in ["198.18.0.100", "198.20.0.1", "2001:2::100"] {
            assert!(dp.is_unicast_destination(ip(unicast)), "{unicast}");
        }
        for not in [
            "255.255.255.255",
            "198.18.0.255",
            "224.0.0.5",
            "ff02::1:ff00:1",
        ] {
            assert!(!dp.is_unicast_destination(ip(not)), "{not}");
        }
    }
}

/// A one-hash Bloom filter of addresses, 4,096 bits: a clear bit proves an address
/// absent with one multiply and one load. With a few hundred addresses (ports, VIPs,
/// local addresses) a present-looking address is rarely a false one.
#[derive(Debug, Clone)]
struct AddrFilter {
    bits: Box<[u64; AddrFilter::WORDS]>,
}

impl AddrFilter {
    const WORDS: usize = 64;
    const BITS_LOG2: u32 = 12;

    fn of<'a>(addrs: impl Iterator<Item = &'a IpAddr>) -> AddrFilter {
        let mut bits = Box::new([0u64; Self::WORDS]);
        for &ip in addrs {
            let bit = Self::bit(ip);
            bits[bit / 64] |= 1 << (bit % 64);
        }
        AddrFilter { bits }
    }

    #[inline]
    fn bit(ip: IpAddr) -> usize {
        let folded = match ip {
            IpAddr::V4(v4) => u64::from(u32::from(v4)),
            IpAddr::V6(v6) => {
                let x = u128::from(v6);
                (x as u64) ^ ((x >> 64) as u64) ^ 0x5bd1_e995
            }
        };
        (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - Self::BITS_LOG2)) as usize
    }

    #[inline]
    fn may_hold(&self, ip: IpAddr) -> bool {
        let bit = Self::bit(ip);
        self.bits[bit / 64] & (1 << (bit % 64)) != 0
    }
}
