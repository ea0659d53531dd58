//! Which worker owns a connection, computed from a packet alone, and the NIC rules
//! that make packets land on their owner.
//!
//! Every connection has one owner worker, whose table holds it (and whose
//! template table holds its persistence template). Both directions of every
//! connection must meet there on any NIC, so the owner follows from fields that
//! every packet of the connection carries, by the rule of its service
//! ([`OwnerRule`]):
//! - [`OwnerRule::ClientPort`], for services without persistence: the client-side
//!   port without its lowest bit, modulo the number of workers ([`owner_of`]). The
//!   lowest bit is skipped because Linux picks even ephemeral ports for
//!   `connect()` (and odd ones for `bind()`), so with two workers the parity alone
//!   would put every Linux client on one worker.
//! - [`OwnerRule::ClientNetwork`], for persistent services: the lowest bits of the
//!   client's network number under the persistence netmask, so that every
//!   connection of one client network meets its persistence template on one
//!   worker, whichever ports it comes from.
//!
//! The fields, by packet:
//! - a packet to a VIP: its source (the client), by its service's rule;
//! - a NAT reply (to the client, not to us): its destination (the client), by the
//!   rule of the real-server endpoint it comes from. A reply does not say which
//!   service it belongs to, so NAT services that share a real-server endpoint
//!   share one rule: the client network under the shortest persistence netmask
//!   among them, or the client port when none is persistent ([`Owners`]);
//! - a FULLNAT reply (to a local address): its destination port, the local port,
//!   which the owner allocated from the ports [`owner_of`] gives it, whatever the
//!   service's rule.
//!
//! A packet that RSS delivers elsewhere is handed over through a ring. With a
//! power-of-two number of workers W both rules are bit masks that rte_flow can
//! match: "(port >> 1) mod W" is "port & ((W-1) << 1)", and "(address >> host
//! bits) mod W" is "address & ((W-1) << host bits)"; [`steering_rules`]
//! describes the rules that make the handoff rare.

use crate::conn::{Mode, Proto};
use crate::service::{Service, Services};
use foldhash::fast::FixedState;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The owner of a connection whose client-side (or local) port is `port`.
#[inline(always)]
pub fn owner_of(port: u16, workers: usize) -> usize {
    usize::from(port >> 1) % workers.max(1)
}

/// How a service's connections are assigned to workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerRule {
    /// By the client's port ([`owner_of`]): connections spread over the workers
    /// one by one.
    ClientPort,
    /// By the client's network under a `prefix`-bit netmask: every connection of
    /// one client network on one worker, where its persistence template is.
    ClientNetwork {
        /// The persistence netmask's length (32 or 128 for a single client).
        prefix: u8,
    },
}

impl OwnerRule {
    /// The owner of a connection of the client `client`:`client_port` among
    /// `workers`.
    #[inline]
    pub fn owner(self, client: IpAddr, client_port: u16, workers: usize) -> usize {
        match self {
            OwnerRule::ClientPort => owner_of(client_port, workers),
            // The low 64 bits of the network number: all of it for IPv4, and the
            // bits a power-of-two modulus (what rte_flow matches) reads for IPv6.
            OwnerRule::ClientNetwork { prefix } => {
                (network_number(client, prefix) as u64 % workers.max(1) as u64) as usize
            }
        }
    }

    /// The rule that keeps both `self`'s and `other`'s groups of connections
    /// together: a client network contains its clients' ports, a shorter netmask
    /// contains a longer one.
    fn coarsest(self, other: OwnerRule) -> OwnerRule {
        match (self, other) {
            (OwnerRule::ClientNetwork { prefix: a }, OwnerRule::ClientNetwork { prefix: b }) => {
                OwnerRule::ClientNetwork { prefix: a.min(b) }
            }
            (rule @ OwnerRule::ClientNetwork { .. }, _) | (_, rule) => rule,
        }
    }
}

/// `addr`'s network number under a `prefix`-bit netmask: the address shifted
/// right past its host bits.
fn network_number(addr: IpAddr, prefix: u8) -> u128 {
    let (bits, value) = match addr {
        IpAddr::V4(a) => (32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128, u128::from(a)),
    };
    value
        .checked_shr(bits - u32::from(prefix).min(bits))
        .unwrap_or(0)
}

/// The rule a service asks for on its own: its persistence decides.
fn own_rule(s: &Service) -> OwnerRule {
    if s.persistence_ms > 0 {
        OwnerRule::ClientNetwork {
            prefix: s.persistence_netmask,
        }
    } else {
        OwnerRule::ClientPort
    }
}

/// A real server endpoint as a NAT reply shows it: its address, port and protocol.
type Endpoint = (IpAddr, u16, Proto);

/// The owner rule of every service, and of every real-server endpoint NAT replies
/// come from. Built with each configuration snapshot.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// By service slot.
    services: Vec<OwnerRule>,
    nat_replies: HashMap<Endpoint, OwnerRule, FixedState>,
    /// Some NAT real server has port 0 (serves every port of an all-port
    /// service): a reply whose endpoint is not known may come from it.
    any_port_zero: bool,
}

impl Owners {
    /// The rules of `services`. NAT services joined by shared real-server
    /// endpoints (directly or through others) share the coarsest of their rules.
    pub fn new(services: &Services) -> Owners {
        let list: Vec<&Service> = services.iter().collect();
        // Union-find over the NAT services, joined by the endpoints they share.
        let mut group: Vec<usize> = (0..list.len()).collect();
        fn root(group: &mut [usize], mut i: usize) -> usize {
            while group[i] != i {
                group[i] = group[group[i]];
                i = group[i];
            }
            i
        }
        let mut first_user: HashMap<Endpoint, usize, FixedState> = HashMap::default();
        for (i, s) in list.iter().enumerate().filter(|(_, s)| s.mode == Mode::Nat) {
            for r in &s.real_servers {
                let user = *first_user.entry((r.addr, r.port, s.proto)).or_insert(i);
                let (a, b) = (root(&mut group, user), root(&mut group, i));
                group[a] = b;
            }
        }
        // A real server of every port (port 0) answers from any port: the NAT
        // services with an endpoint of its address and protocol share its rule.
        let endpoints: Vec<(Endpoint, usize)> = first_user.iter().map(|(&e, &u)| (e, u)).collect();
        for &((addr, _, proto), user) in endpoints.iter().filter(|(e, _)| e.1 == 0) {
            for &((a, _, p), other) in &endpoints {
                if (a, p) == (addr, proto) {
                    let (x, y) = (root(&mut group, user), root(&mut group, other));
                    group[x] = y;
                }
            }
        }
        let mut group_rule: Vec<Option<OwnerRule>> = vec![None; list.len()];
        for (i, s) in list.iter().enumerate() {
            let g = root(&mut group, i);
            group_rule[g] = Some(group_rule[g].map_or(own_rule(s), |r| r.coarsest(own_rule(s))));
        }
        let slots = list
            .iter()
            .map(|s| usize::from(s.slot) + 1)
            .max()
            .unwrap_or(0);
        let mut owners = Owners {
            services: vec![OwnerRule::ClientPort; slots],
            nat_replies: HashMap::default(),
            any_port_zero: first_user.keys().any(|&(_, port, _)| port == 0),
        };
        for (i, s) in list.iter().enumerate() {
            let rule = group_rule[root(&mut group, i)].unwrap_or(OwnerRule::ClientPort);
            owners.services[usize::from(s.slot)] = rule;
        }
        for (endpoint, user) in first_user {
            let rule = owners.services[usize::from(list[user].slot)];
            owners.nat_replies.insert(endpoint, rule);
        }
        owners
    }

    /// The rule of the service in `slot` (the client port for an unknown slot).
    #[inline]
    pub fn service(&self, slot: u16) -> OwnerRule {
        self.services
            .get(usize::from(slot))
            .copied()
            .unwrap_or(OwnerRule::ClientPort)
    }

    /// The rule of NAT replies from the real server `addr`:`port`, or from
    /// `addr` serving every port (port 0) when no service has that endpoint (the
    /// client port for an endpoint no NAT service uses: not a connection of ours
    /// anyway).
    #[inline]
    pub fn nat_reply(&self, addr: IpAddr, port: u16, proto: Proto) -> OwnerRule {
        match self.nat_replies.get(&(addr, port, proto)) {
            Some(&rule) => rule,
            None if self.any_port_zero => self
                .nat_replies
                .get(&(addr, 0, proto))
                .copied()
                .unwrap_or(OwnerRule::ClientPort),
            None => OwnerRule::ClientPort,
        }
    }
}

/// A 16-bit port match: `port & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortMatch {
    /// The bits the port must have where `mask` is set.
    pub value: u16,
    /// The bits of the port that are compared.
    pub mask: u16,
}

/// An address match: `address & mask == value`, both of one IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddrMatch {
    /// The bits the address must have where `mask` is set.
    pub value: IpAddr,
    /// The bits of the address that are compared.
    pub mask: IpAddr,
}

impl AddrMatch {
    /// Exactly `addr`.
    pub fn exact(addr: IpAddr) -> AddrMatch {
        let mask = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        };
        AddrMatch { value: addr, mask }
    }

    /// Whether every bit of the address is compared.
    pub fn is_exact(&self) -> bool {
        *self == AddrMatch::exact(self.value)
    }

    /// Whether `addr` matches.
    pub fn matches(&self, addr: IpAddr) -> bool {
        match (addr, self.value, self.mask) {
            (IpAddr::V4(a), IpAddr::V4(v), IpAddr::V4(m)) => {
                u32::from(a) & u32::from(m) == u32::from(v)
            }
            (IpAddr::V6(a), IpAddr::V6(v), IpAddr::V6(m)) => {
                u128::from(a) & u128::from(m) == u128::from(v)
            }
            _ => false,
        }
    }

    /// The client addresses of `family` (an address of it) whose network under
    /// a `prefix`-bit netmask is owned by worker `w` of `workers` (a power of
    /// two), or None when no network is: a netmask shorter than the worker bits
    /// leaves the upper workers no network at all.
    fn network_owner(family: IpAddr, prefix: u8, w: usize, workers: usize) -> Option<AddrMatch> {
        let bits: u32 = if family.is_ipv4() { 32 } else { 128 };
        let host = bits - u32::from(prefix).min(bits);
        let worker_bits = (workers - 1) as u128;
        let mask = worker_bits.checked_shl(host).unwrap_or(0);
        let value = (w as u128).checked_shl(host).unwrap_or(0);
        // The worker bits that do not fit in the network part are not matched:
        // those workers own no network.
        let fits = if host >= bits {
            0
        } else {
            u128::MAX >> (128 - (bits - host))
        };
        if w as u128 & !fits != 0 {
            return None;
        }
        let to_addr = |v: u128| match family {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        };
        let all = if bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        Some(AddrMatch {
            value: to_addr(value & all),
            mask: to_addr(mask & all),
        })
    }
}

/// One NIC flow rule: packets matching all the given fields go to `queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteeringRule {
    /// TCP or UDP.
    pub proto: Proto,
    /// The source address, if matched.
    pub src_addr: Option<AddrMatch>,
    /// The destination address, if matched.
    pub dst_addr: Option<AddrMatch>,
    /// The source port, if matched.
    pub src_port: Option<PortMatch>,
    /// The destination port, if matched.
    pub dst_port: Option<PortMatch>,
    /// The RX queue, which is the owner worker's index.
    pub queue: u16,
    /// rte_flow priority: where rules overlap, the lowest number wins. 0 but for
    /// the NAT reply rules that overlap FULLNAT reply rules (below).
    pub priority: u32,
}

impl SteeringRule {
    /// Whether a packet with these fields matches (whatever the priority).
    pub fn matches(&self, proto: Proto, src: (IpAddr, u16), dst: (IpAddr, u16)) -> bool {
        let addr = |m: &Option<AddrMatch>, a: IpAddr| m.is_none_or(|m| m.matches(a));
        let port = |m: &Option<PortMatch>, p: u16| m.is_none_or(|m| p & m.mask == m.value);
        self.proto == proto
            && addr(&self.src_addr, src.0)
            && addr(&self.dst_addr, dst.0)
            && port(&self.src_port, src.1)
            && port(&self.dst_port, dst.1)
    }
}

/// The rules that send every connection's packets to its owner's queue, or none
/// when `workers` is 1 or not a power of two (the residue is then not a bit mask).
pub fn steering_rules(services: &Services, owners: &Owners, workers: usize) -> Vec<SteeringRule> {
    if workers < 2 || !workers.is_power_of_two() || workers > usize::from(u16::MAX) {
        return Vec::new();
    }
    let port_mask = ((workers - 1) as u16) << 1;
    // Port 0 is every port (an all-port service, or its real server): not
    // matched, and under the rules of services with a port of their own, which
    // win where both match (IPVS tries the exact port first).
    let exact_port = |value: u16| {
        (value != 0).then_some(PortMatch {
            value,
            mask: u16::MAX,
        })
    };
    // A real server's reply to a local address also matches a NAT reply rule of
    // the same endpoint, which reads the destination address when the rule is
    // the client network's: the local-port rule must win there.
    let fullnat_servers: std::collections::HashSet<Endpoint> = services
        .iter()
        .filter(|s| s.mode == Mode::FullNat)
        .flat_map(|s| s.real_servers.iter().map(|r| (r.addr, r.port, s.proto)))
        .collect();
    let mut rules = Vec::new();
    for w in 0..workers {
        let queue = w as u16;
        let port_bits = Some(PortMatch {
            value: queue << 1,
            mask: port_mask,
        });
        // The client's side of a packet under `rule`: (address, port) matches, or
        // None when this worker owns no client under it.
        let client = |rule: OwnerRule, family: IpAddr| match rule {
            OwnerRule::ClientPort => Some((None, port_bits)),
            OwnerRule::ClientNetwork { prefix } => {
                AddrMatch::network_owner(family, prefix, w, workers).map(|m| (Some(m), None))
            }
        };
        for s in services.iter() {
            // Client to VIP: the client is the source.
            if let Some((src_addr, src_port)) = client(owners.service(s.slot), s.vip) {
                rules.push(SteeringRule {
                    proto: s.proto,
                    src_addr,
                    dst_addr: Some(AddrMatch::exact(s.vip)),
                    src_port,
                    dst_port: exact_port(s.port),
                    queue,
                    priority: u32::from(s.port == 0),
                });
            }
            match s.mode {
                // Server to client: the client is the destination.
                Mode::Nat => {
                    for r in &s.real_servers {
                        let rule = owners.nat_reply(r.addr, r.port, s.proto);
                        let overlaps = rule != OwnerRule::ClientPort
                            && fullnat_servers.contains(&(r.addr, r.port, s.proto));
                        if let Some((dst_addr, dst_port)) = client(rule, r.addr) {
                            rules.push(SteeringRule {
                                proto: s.proto,
                                src_addr: Some(AddrMatch::exact(r.addr)),
                                dst_addr,
                                src_port: exact_port(r.port),
                                dst_port,
                                queue,
                                priority: u32::from(overlaps || r.port == 0),
                            });
                        }
                    }
                }
                // Server to local address: the local port.
                Mode::FullNat => {
                    for lip in &s.local_addrs {
                        rules.push(SteeringRule {
                            proto: s.proto,
                            src_addr: None,
                            dst_addr: Some(AddrMatch::exact(*lip)),
                            src_port: None,
                            dst_port: port_bits,
                            queue,
                            priority: 0,
                        });
                    }
                }
                // Replies go straight to the client.
                Mode::Dr | Mode::Tunnel => {}
            }
        }
    }
    rules.sort_by_key(|r| (r.queue, r.dst_addr, r.src_addr, r.src_port, r.dst_port));
    rules.dedup();
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn owner_is_the_client_port_without_its_lowest_bit_modulo_workers() {
        assert_eq!(owner_of(40001, 1), 0);
        assert_eq!(owner_of(40002, 2), 1);
        assert_eq!(owner_of(40003, 2), 1);
        assert_eq!(owner_of(40004, 2), 0);
        assert_eq!(owner_of(40004, 4), 2);
        assert_eq!(owner_of(7, 3), 0);
        assert_eq!(owner_of(7, 0), 0);
    }

    #[test]
    fn even_ports_alone_spread_over_workers() {
        // Linux clients connect() from even ports.
        for workers in [2, 3, 4] {
            let mut per = vec![0; workers];
            for port in (32768..61000u16).step_by(2) {
                per[owner_of(port, workers)] += 1;
            }
            let (min, max) = (per.iter().min().unwrap(), per.iter().max().unwrap());
            assert!(max - min <= 1, "{workers} workers: {per:?}");
        }
    }

    fn services() -> Services {
        let services = r#"
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    real_servers: [{ address: 198.19.0.10, port: 8080 }]
  - name: full
    vip: 198.18.0.101
    port: 443
    protocol: tcp
    mode: fullnat
    local_addresses: [198.19.0.2]
    real_servers: [{ address: 198.19.0.11 }]
"#;
        Services::from_config(&fixture::parse(&fixture::appliance_with(
            2, false, services,
        )))
    }

    #[test]
    fn rules_only_for_a_power_of_two_of_workers() {
        let s = services();
        let o = Owners::new(&s);
        assert!(steering_rules(&s, &o, 1).is_empty());
        assert!(steering_rules(&s, &o, 3).is_empty());
        // per worker: 2 VIP rules, 1 NAT reply rule, 1 FULLNAT reply rule
        assert_eq!(steering_rules(&s, &o, 2).len(), 8);
        assert_eq!(steering_rules(&s, &o, 4).len(), 16);
    }

    #[test]
    fn a_client_network_has_one_owner_whatever_its_hosts_and_ports() {
        let rule = OwnerRule::ClientNetwork { prefix: 24 };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for workers in [2, 3, 4, 8] {
            let owner = rule.owner(ip("198.18.7.1"), 40000, workers);
            for host in [0, 1, 99, 255] {
                for port in [1024, 40001, 40002, 65535] {
                    let client = ip(&format!("198.18.7.{host}"));
                    assert_eq!(rule.owner(client, port, workers), owner);
                }
            }
            // Networks spread over the workers.
            let mut per = vec![0; workers];
            for net in 0..=255u8 {
                per[rule.owner(ip(&format!("198.18.{net}.1")), 40000, workers)] += 1;
            }
            assert!(per.iter().all(|&n| n >= 256 / workers - 1), "{per:?}");
        }
        // A single client (/32, /128), and everyone (/0).
        let single = OwnerRule::ClientNetwork { prefix: 32 };
        assert_ne!(
            single.owner(ip("198.18.0.10"), 1, 2),
            single.owner(ip("198.18.0.11"), 1, 2)
        );
        let v6 = OwnerRule::ClientNetwork { prefix: 128 };
        assert_ne!(
            v6.owner(ip("2001:2::10"), 1, 2),
            v6.owner(ip("2001:2::11"), 1, 2)
        );
        let all = OwnerRule::ClientNetwork { prefix: 0 };
        assert_eq!(all.owner(ip("198.18.0.10"), 1, 4), 0);
        assert_eq!(all.owner(ip("2001:2::11"), 7, 4), 0);
    }

    /// Services for the owner-rule tests: NAT services joined by shared real
    /// servers, persistent and not, FULLNAT, DR and IPv6.
    fn mixed() -> Services {
        let services = r#"
services:
  - { name: sticky, vip: 198.18.0.100, port: 80, protocol: tcp, mode: nat, persistence: 60s,
      persistence_netmask: 24, real_servers: [{ address: 198.19.0.10, port: 8080 }] }
  - { name: shares-sticky, vip: 198.18.0.100, port: 81, protocol: tcp, mode: nat,
      real_servers: [{ address: 198.19.0.10, port: 8080 }, { address: 198.19.0.11, port: 8080 }] }
  - { name: shares-shares, vip: 198.18.0.100, port: 82, protocol: tcp, mode: nat, persistence: 60s,
      real_servers: [{ address: 198.19.0.11, port: 8080 }] }
  - { name: alone, vip: 198.18.0.100, port: 83, protocol: tcp, mode: nat,
      real_servers: [{ address: 198.19.0.12, port: 8080 }] }
  - { name: other-port, vip: 198.18.0.100, port: 84, protocol: tcp, mode: nat, persistence: 60s,
      real_servers: [{ address: 198.19.0.10, port: 8081 }] }
  - { name: udp, vip: 198.18.0.100, port: 80, protocol: udp, mode: nat,
      real_servers: [{ address: 198.19.0.10, port: 8080 }] }
  - { name: full, vip: 198.18.0.101, port: 443, protocol: tcp, mode: fullnat, persistence: 60s,
      persistence_netmask: 16, local_addresses: [198.19.0.2],
      real_servers: [{ address: 198.19.0.10, port: 8080 }] }
  - { name: dr, vip: 198.18.0.102, port: 80, protocol: tcp, mode: dr, persistence: 60s,
      persistence_netmask: 0, real_servers: [{ address: 198.19.0.13 }] }
  - { name: six, vip: "2001:2::100", port: 80, protocol: tcp, mode: nat, persistence: 60s,
      persistence_netmask: 64, real_servers: [{ address: "2001:2:0:19::10", port: 8080 }] }
"#;
        Services::from_config(&fixture::parse(&fixture::appliance_with(2, true, services)))
    }

    #[test]
    fn nat_services_that_share_a_real_server_share_the_coarsest_rule() {
        let s = mixed();
        let o = Owners::new(&s);
        let rule = |name: &str| o.service(s.by_name(name).unwrap().slot);
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        let net = |prefix| OwnerRule::ClientNetwork { prefix };
        // sticky -- 198.19.0.10:8080 -- shares-sticky -- 198.19.0.11:8080 -- shares-shares
        assert_eq!(rule("sticky"), net(24));
        assert_eq!(rule("shares-sticky"), net(24));
        assert_eq!(rule("shares-shares"), net(24));
        assert_eq!(o.nat_reply(ip("198.19.0.10"), 8080, Proto::Tcp), net(24));
        assert_eq!(o.nat_reply(ip("198.19.0.11"), 8080, Proto::Tcp), net(24));
        // Another port, another protocol, or no shared server: on its own.
        assert_eq!(rule("alone"), OwnerRule::ClientPort);
        assert_eq!(rule("other-port"), net(32));
        assert_eq!(rule("udp"), OwnerRule::ClientPort);
        assert_eq!(
            o.nat_reply(ip("198.19.0.10"), 8080, Proto::Udp),
            OwnerRule::ClientPort
        );
        assert_eq!(o.nat_reply(ip("198.19.0.10"), 8081, Proto::Tcp), net(32));
        // FULLNAT and DR replies do not come to a client address: never joined.
        assert_eq!(rule("full"), net(16));
        assert_eq!(rule("dr"), net(0));
        assert_eq!(rule("six"), net(64));
        // Unknown endpoints and slots: the client port.
        assert_eq!(
            o.nat_reply(ip("198.19.0.99"), 80, Proto::Tcp),
            OwnerRule::ClientPort
        );
        assert_eq!(o.service(u16::MAX), OwnerRule::ClientPort);
    }

    /// Every packet of every connection matches rules of its owner's queue only
    /// (among those of the highest priority it matches), and at least one (where a rule can give it one), for every kind of packet
    /// `owner()` in the pipeline steers: to a VIP, NAT replies, FULLNAT replies.
    #[test]
    fn every_packet_matches_only_its_owners_rules() {
        let s = mixed();
        let o = Owners::new(&s);
        let mut rng = crate::packet::testutil::XorShift::new(7);
        for workers in [2usize, 4, 8] {
            let rules = steering_rules(&s, &o, workers);
            let check = |proto, src: (IpAddr, u16), dst: (IpAddr, u16), owner: usize| {
                let hits: Vec<&SteeringRule> = rules
                    .iter()
                    .filter(|r| r.matches(proto, src, dst))
                    .collect();
                assert!(!hits.is_empty(), "{src:?} -> {dst:?}: no rule");
                let first = hits.iter().map(|r| r.priority).min().unwrap();
                for r in hits.into_iter().filter(|r| r.priority == first) {
                    assert_eq!(usize::from(r.queue), owner, "{src:?} -> {dst:?}: {r:?}");
                }
            };
            for _ in 0..2000 {
                let port = rng.next() as u16;
                let v4 = IpAddr::V4(Ipv4Addr::from(rng.next() as u32));
                let v6 = IpAddr::V6(Ipv6Addr::from(
                    (u128::from(rng.next()) << 64) | u128::from(rng.next()),
                ));
                for svc in s.iter() {
                    let client = if svc.vip.is_ipv4() { v4 } else { v6 };
                    let owner = o.service(svc.slot).owner(client, port, workers);
                    check(svc.proto, (client, port), (svc.vip, svc.port), owner);
                    match svc.mode {
                        Mode::Nat => {
                            for r in &svc.real_servers {
                                let rule = o.nat_reply(r.addr, r.port, svc.proto);
                                let owner = rule.owner(client, port, workers);
                                check(svc.proto, (r.addr, r.port), (client, port), owner);
                                assert_eq!(rule, o.service(svc.slot));
                            }
                        }
                        Mode::FullNat => {
                            for lip in &svc.local_addrs {
                                let r = &svc.real_servers[0];
                                let owner = owner_of(port, workers);
                                check(svc.proto, (r.addr, r.port), (*lip, port), owner);
                            }
                        }
                        Mode::Dr | Mode::Tunnel => {}
                    }
                }
            }
        }
    }

    #[test]
    fn address_matches_compare_the_masked_bits() {
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        let exact = AddrMatch::exact(ip("198.18.0.100"));
        assert!(exact.is_exact() && exact.matches(ip("198.18.0.100")));
        assert!(!exact.matches(ip("198.18.0.101")) && !exact.matches(ip("2001:2::100")));
        // Worker 1 of 2 owns the /24 networks with bit 8 set.
        let m = AddrMatch::network_owner(ip("0.0.0.0"), 24, 1, 2).unwrap();
        assert_eq!((m.value, m.mask), (ip("0.0.1.0"), ip("0.0.1.0")));
        assert!(m.matches(ip("198.18.1.7")) && !m.matches(ip("198.18.2.7")));
        // A /1 netmask has one bit for four workers: workers 2 and 3 own nothing.
        assert!(AddrMatch::network_owner(ip("0.0.0.0"), 1, 1, 4).is_some());
        assert!(AddrMatch::network_owner(ip("0.0.0.0"), 1, 2, 4).is_none());
        // /0: one network, worker 0's, matching every address.
        let all = AddrMatch::network_owner(ip("::"), 0, 0, 4).unwrap();
        assert!(all.matches(ip("2001:2::1")) && !all.is_exact());
        assert!(AddrMatch::network_owner(ip("::"), 0, 1, 4).is_none());
        let v6 = AddrMatch::network_owner(ip("::"), 64, 3, 4).unwrap();
        assert_eq!(v6.mask, ip("0:0:0:3::"));
        assert!(v6.matches(ip("2001:2:0:3::9")) && !v6.matches(ip("2001:2:0:2::9")));
    }
}

#[cfg(test)]
mod all_port_tests {
    use super::*;
    use crate::fixture;
    use std::net::Ipv4Addr;

    /// An all-port persistent service, a service of its own on the VIP's port
    /// 80, and a service using the all-port server's address on port 9000.
    fn services() -> Services {
        let services = r#"
services:
  - { name: all, vip: 198.18.0.100, port: 0, protocol: tcp, mode: nat, persistence: 60s,
      real_servers: [{ address: 198.19.0.20 }] }
  - { name: web, vip: 198.18.0.100, port: 80, protocol: tcp, mode: nat,
      real_servers: [{ address: 198.19.0.21, port: 8080 }] }
  - { name: same-host, vip: 198.18.0.101, port: 80, protocol: tcp, mode: nat,
      real_servers: [{ address: 198.19.0.20, port: 9000 }] }
"#;
        Services::from_config(&fixture::parse(&fixture::appliance_with(
            2, false, services,
        )))
    }

    #[test]
    fn an_all_port_server_shares_its_rule_with_every_port_of_its_address() {
        let s = services();
        let o = Owners::new(&s);
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        let net = OwnerRule::ClientNetwork { prefix: 32 };
        assert_eq!(o.service(s.by_name("all").unwrap().slot), net);
        assert_eq!(o.service(s.by_name("same-host").unwrap().slot), net);
        assert_eq!(
            o.service(s.by_name("web").unwrap().slot),
            OwnerRule::ClientPort
        );
        for port in [443, 9000, 1] {
            assert_eq!(o.nat_reply(ip("198.19.0.20"), port, Proto::Tcp), net);
        }
        assert_eq!(
            o.nat_reply(ip("198.19.0.20"), 443, Proto::Udp),
            OwnerRule::ClientPort
        );
        assert_eq!(
            o.nat_reply(ip("198.19.0.21"), 8080, Proto::Tcp),
            OwnerRule::ClientPort
        );
    }

    /// Every packet of every connection, to any port of the VIP and back from
    /// any port of the server, matches rules of its owner's queue only among
    /// those of the best priority it matches, as the pipeline's `owner()` finds
    /// it (`Services::find` falling back to port 0).
    #[test]
    fn steering_rules_send_every_port_to_its_owner_and_the_vips_own_port_to_its_own() {
        let s = services();
        let o = Owners::new(&s);
        let mut rng = crate::packet::testutil::XorShift::new(11);
        let vip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
        for workers in [2usize, 4] {
            let rules = steering_rules(&s, &o, workers);
            let check = |src: (IpAddr, u16), dst: (IpAddr, u16), owner: usize| {
                let hits: Vec<&SteeringRule> = rules
                    .iter()
                    .filter(|r| r.matches(Proto::Tcp, src, dst))
                    .collect();
                assert!(!hits.is_empty(), "{src:?} -> {dst:?}: no rule");
                let best = hits.iter().map(|r| r.priority).min().unwrap();
                for r in hits.into_iter().filter(|r| r.priority == best) {
                    assert_eq!(usize::from(r.queue), owner, "{src:?} -> {dst:?}: {r:?}");
                }
            };
            for _ in 0..2000 {
                let client = IpAddr::V4(Ipv4Addr::from(rng.next() as u32));
                let cport = rng.next() as u16;
                let dport = (rng.next() as u16).max(1);
                let svc = s.find(vip, dport, Proto::Tcp).unwrap();
                let owner = o.service(svc.slot).owner(client, cport, workers);
                check((client, cport), (vip, dport), owner);
                let rs = &svc.real_servers[0];
                let from = (rs.addr, rs.port_for(dport));
                let reply = o.nat_reply(from.0, from.1, Proto::Tcp);
                assert_eq!(reply.owner(client, cport, workers), owner);
                check(from, (client, cport), owner);
            }
        }
    }
}
