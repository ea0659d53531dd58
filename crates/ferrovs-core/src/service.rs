//! Virtual services and their real servers as the data plane sees them: built from
//! the configuration into an immutable table that workers share.
//!
//! Every service and real server has a *slot*: a small stable number that
//! connections, per-worker counters and scheduler state are indexed by. Slots are
//! handed out by [`Slots`], which keeps them across configuration changes: a service
//! or real server that stays keeps its slot (and so its counters and connections).

use crate::access::Access;
use crate::config::{self, Config};
use crate::conn::{Mode, Proto};
use crate::sched::{SchedOptions, SchedulerKind, ServerId};
use foldhash::fast::FixedState;
use std::collections::HashMap;
use std::net::IpAddr;

/// One real server of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    /// Stable slot of this real server (index of its counters).
    pub slot: u16,
    /// Address the service's connections are forwarded to.
    pub addr: IpAddr,
    /// Port the service's connections are forwarded to; 0 (in a service with
    /// port 0): the port the client sent its packet to.
    pub port: u16,
    /// 0 = no new connections (drain); live ones continue.
    pub weight: u32,
    /// Health: false when checks took the server out (no new connections).
    pub up: bool,
    /// The service's sorry server (keepalived's `sorry_server`), always last in the
    /// list: never scheduled, only chosen while the service's `sorry_active`. Its
    /// weight is 1 then, else 0; it is never health-checked.
    pub sorry: bool,
    /// `max_connections`, all workers together; 0 = no limit.
    pub max_connections: u32,
    /// `min_connections`, all workers together; 0 = three quarters of the maximum.
    pub min_connections: u32,
}

impl RealServer {
    /// The server's identity for the schedulers: address and port.
    pub fn id(&self) -> ServerId {
        ServerId::new(self.addr, self.port)
    }

    /// The port a packet the client sent to `vip_port` goes to: the server's own,
    /// or with none (0) the same port (IPVS `ip_vs_sched_persist`).
    #[inline]
    pub fn port_for(&self, vip_port: u16) -> u16 {
        if self.port == 0 {
            vip_port
        } else {
            self.port
        }
    }

    /// Whether a connection to `addr`:`port` of a client that sent to
    /// `vip_port` is one of this server's.
    pub fn serves(&self, addr: IpAddr, port: u16, vip_port: u16) -> bool {
        self.addr == addr && self.port_for(vip_port) == port
    }
}

/// A virtual service: VIP, port, protocol and how its traffic is balanced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Stable slot of this service.
    pub slot: u16,
    /// Unique name from the configuration, as metrics and the control API show it.
    pub name: String,
    /// Virtual IP address the clients connect to.
    pub vip: IpAddr,
    /// Virtual port the clients connect to; 0 = every port of the VIP that no
    /// service of its own has (persistent only).
    pub port: u16,
    /// TCP or UDP.
    pub proto: Proto,
    /// How packets reach the real servers and whether replies come back through us.
    pub mode: Mode,
    /// How a new connection picks its real server.
    pub scheduler: SchedulerKind,
    /// Scheduler flags and Maglev table size the scheduler is built with.
    pub sched_options: SchedOptions,
    /// Persistence timeout in ms; 0 = off.
    pub persistence_ms: u64,
    /// Client prefix length that shares a persistence template.
    pub persistence_netmask: u8,
    /// FULLNAT source addresses.
    pub local_addrs: Vec<IpAddr>,
    /// Fewest available real servers with which the VIP is announced.
    pub quorum: u32,
    /// Any TCP packet that matches no connection may open one (IPVS `sloppy_tcp`).
    pub sloppy: bool,
    /// One-packet scheduling (IPVS `--ops`, UDP): every datagram is scheduled on
    /// its own and no connection is kept; NAT replies are translated back by
    /// their source (see [`Services::ops_reply`]).
    pub ops: bool,
    /// Real servers in configuration order, drained and down ones included, then
    /// the sorry server if there is one.
    pub real_servers: Vec<RealServer>,
    /// The sorry server takes every new connection: fewer real servers are
    /// available than `quorum`, or none is (keepalived: quorum lost).
    pub sorry_active: bool,
    /// Who may open connections, and how fast.
    pub access: Access,
    /// The Proxy Protocol header sent ahead of a client's data.
    pub proxy_protocol: config::ProxyProtocol,
    /// SYN proxy: SYNs are answered with SYN cookies, the real server is
    /// connected to on a valid ACK.
    pub syn_proxy: bool,
}

impl Service {
    /// NAT64: an IPv6 VIP served by IPv4 real servers through IPv4 local
    /// addresses (FULLNAT only; the configuration check allows no other mix).
    #[inline]
    pub fn is_nat64(&self) -> bool {
        self.mode == Mode::FullNat
            && self.vip.is_ipv6()
            && self.local_addrs.first().is_some_and(IpAddr::is_ipv4)
    }

    /// Whether the service's connections have their sequence numbers translated
    /// (see `conn::xlate`).
    #[inline]
    pub fn translates(&self) -> bool {
        self.proxy_protocol != config::ProxyProtocol::None || self.syn_proxy
    }

    /// Whether the service's connections can be SYN-proxied: TCP whose
    /// replies pass through ferrovs (NAT, FULLNAT).
    #[inline]
    pub fn syn_proxy_capable(&self) -> bool {
        self.proto == Proto::Tcp
            && matches!(self.mode, Mode::Nat | Mode::FullNat)
            && !self.is_nat64()
    }
}

impl Service {
    /// The real servers the scheduler chooses from: all but the sorry server.
    #[inline]
    pub fn pool(&self) -> &[RealServer] {
        match self.real_servers.last() {
            Some(last) if last.sorry => &self.real_servers[..self.real_servers.len() - 1],
            _ => &self.real_servers,
        }
    }

    /// The sorry server, if the service has one.
    pub fn sorry_server(&self) -> Option<&RealServer> {
        self.real_servers.last().filter(|r| r.sorry)
    }

    /// Real servers that take new connections: up and with a weight (the sorry
    /// server is not counted).
    pub fn available(&self) -> usize {
        self.pool().iter().filter(|r| r.up && r.weight > 0).count()
    }

    /// Whether enough real servers are available for the VIP to be announced.
    pub fn meets_quorum(&self) -> bool {
        self.available() >= self.quorum as usize
    }

    /// "VIP:PORT" as ipvsadm prints it.
    pub fn address(&self) -> String {
        endpoint(self.vip, self.port)
    }
}

/// The scheduler options a service's `sched_flags` ask for.
fn sched_options(flags: &[config::SchedFlag]) -> SchedOptions {
    use config::SchedFlag::*;
    let mut o = SchedOptions::default();
    for flag in flags {
        match flag {
            ShFallback => o.sh_fallback = true,
            ShPort => o.sh_port = true,
            MhFallback => o.mh_fallback = true,
            MhPort => o.mh_port = true,
        }
    }
    o
}

/// `addr:port`, with brackets for IPv6.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// What identifies a service in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceKey {
    /// The packet's destination address.
    pub vip: IpAddr,
    /// The packet's destination port.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Proto,
}

impl std::hash::Hash for ServiceKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let tail = u64::from(self.port) << 8 | self.proto as u64;
        crate::net::hash_addr(&self.vip, tail, state);
    }
}

/// Most real servers ferrovs tracks at once (slots of per-worker counters).
pub const MAX_REAL_SERVERS: usize = 16384;
/// Most services at once.
pub const MAX_SERVICES: usize = 4096;

/// Stable slot numbers for services (by name) and real servers (by service name,
/// address and port).
///
/// A real server's slot is reused only once nothing can refer to it: the caller
/// passes `reusable` to [`Slots::assign`], which says whether a slot retired earlier
/// is free (every worker runs a configuration without it and holds no connection to
/// it).
#[derive(Debug, Default, Clone)]
pub struct Slots {
    services: HashMap<String, u16>,
    real_servers: HashMap<(String, IpAddr, u16), u16>,
    next_rs: u16,
    next_service: u16,
    /// Real-server slots no longer configured, with the version that dropped them.
    retired: Vec<(u16, u64)>,
    free_services: Vec<u16>,
}

impl Slots {
    /// Assigns slots for every service and real server of `cfg` (configuration
    /// `version`), keeping existing ones, retiring vanished ones and reusing retired
    /// real-server slots for which `reusable(slot, retired_at)` holds.
    pub fn assign(
        &mut self,
        cfg: &Config,
        version: u64,
        mut reusable: impl FnMut(u16, u64) -> bool,
    ) -> Result<(), String> {
        // Retire what is gone.
        let wanted_services: std::collections::HashSet<&str> =
            cfg.services.iter().map(|s| s.name.as_str()).collect();
        let gone: Vec<String> = self
            .services
            .keys()
            .filter(|n| !wanted_services.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(slot) = self.services.remove(&name) {
                self.free_services.push(slot);
            }
        }
        let wanted_rs: std::collections::HashSet<(String, IpAddr, u16)> = cfg
            .services
            .iter()
            .flat_map(|s| endpoints(s).map(move |(a, p)| (s.name.clone(), a, p)))
            .collect();
        let gone: Vec<(String, IpAddr, u16)> = self
            .real_servers
            .keys()
            .filter(|k| !wanted_rs.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(slot) = self.real_servers.remove(&key) {
                self.retired.push((slot, version));
            }
        }
        // Hand out slots to what is new.
        for s in &cfg.services {
            if !self.services.contains_key(&s.name) {
                let slot = match self.free_services.pop() {
                    Some(slot) => slot,
                    None if usize::from(self.next_service) < MAX_SERVICES => {
                        self.next_service += 1;
                        self.next_service - 1
                    }
                    None => return Err(format!("more than {MAX_SERVICES} services")),
                };
                self.services.insert(s.name.clone(), slot);
            }
            for (address, port) in endpoints(s) {
                let key = (s.name.clone(), address, port);
                if self.real_servers.contains_key(&key) {
                    continue;
                }
                let slot = if usize::from(self.next_rs) < MAX_REAL_SERVERS {
                    self.next_rs += 1;
                    self.next_rs - 1
                } else {
                    let pos = self
                        .retired
                        .iter()
                        .position(|&(slot, at)| reusable(slot, at))
                        .ok_or_else(|| {
                            format!(
                                "more than {MAX_REAL_SERVERS} real servers, counting removed ones that still have connections"
                            )
                        })?;
                    self.retired.swap_remove(pos).0
                };
                self.real_servers.insert(key, slot);
            }
        }
        Ok(())
    }

    fn service(&self, name: &str) -> u16 {
        self.services[name]
    }

    fn real_server(&self, service: &str, addr: IpAddr, port: u16) -> u16 {
        self.real_servers[&(service.to_string(), addr, port)]
    }
}

/// Every server of a service that has a slot: its real servers, then its sorry
/// server.
fn endpoints(s: &config::ServiceConfig) -> impl Iterator<Item = (IpAddr, u16)> + '_ {
    s.real_servers
        .iter()
        .map(|r| (r.address, r.port))
        .chain(s.sorry_server.map(|o| (o.address, o.port)))
}

/// All services, indexed by slot and by (VIP, port, protocol).
#[derive(Debug, Clone, Default)]
pub struct Services {
    list: Vec<Service>,
    by_key: HashMap<ServiceKey, usize, FixedState>,
    by_slot: Vec<Option<usize>>,
    /// Some service has port 0: a lookup that misses tries the VIP's port 0.
    any_port_zero: bool,
    /// Some service has `ops`.
    any_ops: bool,
    /// The `ops` NAT services by the real-server endpoint (address, port, as
    /// `ServiceKey`) their replies come from: (service, place in its list).
    ops_replies: HashMap<ServiceKey, (usize, usize), FixedState>,
}

impl Services {
    /// Builds the table from a validated config with fresh slots in config order
    /// (start-up and tests).
    pub fn from_config(cfg: &Config) -> Services {
        let mut slots = Slots::default();
        slots
            .assign(cfg, 0, |_, _| false)
            .expect("a validated config fits the slot space");
        Self::build(cfg, &slots, |_, _, _| true)
    }

    /// Builds the table from a validated config with the slots of `slots` (which
    /// must have been assigned for `cfg`), and each real server's health from `up`.
    pub fn build(cfg: &Config, slots: &Slots, up: impl Fn(&str, IpAddr, u16) -> bool) -> Services {
        let list: Vec<Service> = cfg
            .services
            .iter()
            .map(|s| {
                let mut real_servers: Vec<RealServer> = s
                    .real_servers
                    .iter()
                    .map(|r| RealServer {
                        slot: slots.real_server(&s.name, r.address, r.port),
                        addr: r.address,
                        port: r.port,
                        weight: r.weight,
                        up: up(&s.name, r.address, r.port),
                        sorry: false,
                        max_connections: r.max_connections,
                        min_connections: r.min_connections,
                    })
                    .collect();
                // keepalived: quorum is lost below `quorum` or with nothing alive; the
                // sorry server then replaces the pool.
                let available = real_servers.iter().filter(|r| r.up && r.weight > 0).count();
                let sorry_active =
                    s.sorry_server.is_some() && (available == 0 || available < s.quorum as usize);
                if let Some(o) = s.sorry_server {
                    real_servers.push(RealServer {
                        slot: slots.real_server(&s.name, o.address, o.port),
                        addr: o.address,
                        port: o.port,
                        weight: u32::from(sorry_active),
                        up: true,
                        sorry: true,
                        max_connections: 0,
                        min_connections: 0,
                    });
                }
                (s, real_servers, sorry_active)
            })
            .map(|(s, real_servers, sorry_active)| Service {
                slot: slots.service(&s.name),
                name: s.name.clone(),
                vip: s.vip,
                port: s.port,
                proto: proto_of(s.protocol),
                mode: mode_of(s.mode),
                scheduler: scheduler_of(s.scheduler),
                sched_options: sched_options(&s.sched_flags),
                persistence_ms: s.persistence.as_millis() as u64,
                persistence_netmask: s.persistence_netmask,
                local_addrs: s.local_addresses.clone(),
                quorum: s.quorum,
                sloppy: s.sloppy,
                ops: s.ops,
                real_servers,
                sorry_active,
                access: Access::new(&s.access),
                proxy_protocol: s.proxy_protocol,
                syn_proxy: s.syn_proxy,
            })
            .collect();
        let by_key = list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    ServiceKey {
                        vip: s.vip,
                        port: s.port,
                        proto: s.proto,
                    },
                    i,
                )
            })
            .collect();
        let mut by_slot = vec![None; MAX_SERVICES];
        for (i, s) in list.iter().enumerate() {
            by_slot[usize::from(s.slot)] = Some(i);
        }
        // The configuration check leaves every such endpoint to one service.
        let mut ops_replies = HashMap::default();
        for (i, s) in list.iter().enumerate() {
            if s.ops && s.mode == Mode::Nat {
                for (j, r) in s.real_servers.iter().enumerate() {
                    let key = ServiceKey {
                        vip: r.addr,
                        port: r.port_for(s.port),
                        proto: s.proto,
                    };
                    ops_replies.entry(key).or_insert((i, j));
                }
            }
        }
        Services {
            any_port_zero: list.iter().any(|s| s.port == 0),
            any_ops: list.iter().any(|s| s.ops),
            list,
            by_key,
            by_slot,
            ops_replies,
        }
    }

    /// The service a packet to `vip:port` over `proto` belongs to: the one of
    /// that port, else the VIP's all-port service (port 0), as IPVS's
    /// `ip_vs_service_find` falls back to the catch-all port.
    #[inline]
    pub fn find(&self, vip: IpAddr, port: u16, proto: Proto) -> Option<&Service> {
        match self.by_key.get(&ServiceKey { vip, port, proto }) {
            Some(&i) => Some(&self.list[i]),
            None if self.any_port_zero && port != 0 => self
                .by_key
                .get(&ServiceKey {
                    vip,
                    port: 0,
                    proto,
                })
                .map(|&i| &self.list[i]),
            None => None,
        }
    }

    /// An `ops` NAT service's reply: the service and the real server a datagram
    /// from `addr`:`port` over `proto` comes from, when one of them serves the
    /// endpoint (no connection is kept for it: the reply is translated back by
    /// its source alone).
    #[inline]
    pub fn ops_reply(
        &self,
        addr: IpAddr,
        port: u16,
        proto: Proto,
    ) -> Option<(&Service, &RealServer)> {
        if self.ops_replies.is_empty() {
            return None;
        }
        let &(i, j) = self.ops_replies.get(&ServiceKey {
            vip: addr,
            port,
            proto,
        })?;
        let s = &self.list[i];
        Some((s, &s.real_servers[j]))
    }

    /// The service in `slot`.
    #[inline]
    pub fn get(&self, slot: u16) -> Option<&Service> {
        let i = (*self.by_slot.get(usize::from(slot))?)?;
        self.list.get(i)
    }

    /// The service named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Service> {
        self.list.iter().find(|s| s.name == name)
    }

    /// Every service, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.list.iter()
    }

    /// Number of services configured.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when no service is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Size of per-server counter arrays: every slot a real server may get.
    pub fn real_server_slots(&self) -> usize {
        MAX_REAL_SERVERS
    }

    /// Whether any service uses this address family.
    pub fn any_ipv6(&self) -> bool {
        self.list.iter().any(|s| s.vip.is_ipv6())
    }

    /// Whether any service schedules datagrams one by one (`ops`).
    #[inline]
    pub fn any_ops(&self) -> bool {
        self.any_ops
    }

    /// Whether any service keeps persistence templates.
    pub fn any_persistence(&self) -> bool {
        self.list.iter().any(|s| s.persistence_ms > 0)
    }

    /// Whether any service translates its connections' sequence numbers.
    pub fn any_translation(&self) -> bool {
        self.list.iter().any(Service::translates)
    }
}

fn proto_of(p: config::Protocol) -> Proto {
    match p {
        config::Protocol::Tcp => Proto::Tcp,
        config::Protocol::Udp => Proto::Udp,
    }
}

fn mode_of(m: config::ForwardMode) -> Mode {
    match m {
        config::ForwardMode::Nat => Mode::Nat,
        config::ForwardMode::FullNat => Mode::FullNat,
        config::ForwardMode::Dr => Mode::Dr,
        config::ForwardMode::Tunnel => Mode::Tunnel,
    }
}

fn scheduler_of(s: config::Scheduler) -> SchedulerKind {
    match s {
        config::Scheduler::Rr => SchedulerKind::Rr,
        config::Scheduler::Wrr => SchedulerKind::Wrr,
        config::Scheduler::Lc => SchedulerKind::Lc,
        config::Scheduler::Wlc => SchedulerKind::Wlc,
        config::Scheduler::Sh => SchedulerKind::Sh,
        config::Scheduler::Dh => SchedulerKind::Dh,
        config::Scheduler::Sed => SchedulerKind::Sed,
        config::Scheduler::Nq => SchedulerKind::Nq,
        config::Scheduler::Mh => SchedulerKind::Mh,
        config::Scheduler::Lblc => SchedulerKind::Lblc,
        config::Scheduler::Lblcr => SchedulerKind::Lblcr,
        config::Scheduler::Fo => SchedulerKind::Fo,
        config::Scheduler::Ovf => SchedulerKind::Ovf,
        config::Scheduler::Twos => SchedulerKind::Twos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn every_config_scheduler_maps_to_the_kind_of_its_name() {
        for s in config::Scheduler::ALL {
            assert_eq!(scheduler_of(*s).name(), s.to_string());
        }
        assert_eq!(config::Scheduler::ALL.len(), SchedulerKind::ALL.len());
    }

    #[test]
    fn services_are_found_by_vip_port_and_protocol() {
        let services = r#"
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    scheduler: wrr
    real_servers:
      - { address: 198.19.0.10, port: 8080, weight: 1 }
      - { address: 198.19.0.11, port: 8080, weight: 2 }
  - name: dns
    vip: 198.18.0.100
    port: 53
    protocol: udp
    mode: nat
    scheduler: rr
    persistence: 60s
    real_servers:
      - { address: 198.19.0.10 }
"#;
        let s = Services::from_config(&fixture::parse(&fixture::appliance(services)));
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let web = s.find(vip, 80, Proto::Tcp).unwrap();
        assert_eq!(
            (web.slot, web.mode, web.scheduler),
            (0, Mode::Nat, SchedulerKind::Wrr)
        );
        assert_eq!(web.real_servers[1].slot, 1);
        assert_eq!(web.real_servers[1].weight, 2);
        let dns = s.find(vip, 53, Proto::Udp).unwrap();
        assert_eq!(dns.real_servers[0].slot, 2);
        assert_eq!(dns.real_servers[0].port, 53);
        assert_eq!(dns.persistence_ms, 60_000);
        assert!(s.find(vip, 80, Proto::Udp).is_none());
        assert!(s.find(vip, 81, Proto::Tcp).is_none());
        assert_eq!(s.real_server_slots(), MAX_REAL_SERVERS);
        assert!(s.any_persistence());
        assert!(!s.any_ipv6());
        assert_eq!(web.address(), "198.18.0.100:80");
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;
    use crate::fixture;

    fn cfg(services: &str) -> Config {
        // One LAN port only: the tests' VIPs (198.18.0.x) are on no port's subnet.
        let text = format!(
            "eal: {{ cores: [0, 1] }}\nports:\n  - {{ name: lan, device: net_null0, addresses: [\"{}\"] }}\nworkers: {{ cores: [1] }}\nservices:\n{services}",
            fixture::LAN_V4
        );
        fixture::parse(&text)
    }

    fn svc(name: &str, vip: &str, servers: &[&str]) -> String {
        let mut s = format!(
            "  - {{ name: {name}, vip: {vip}, port: 80, protocol: tcp, mode: nat, real_servers: ["
        );
        for (i, r) in servers.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("{{ address: {r} }}"));
        }
        s.push_str("] }\n");
        s
    }

    #[test]
    fn slots_survive_changes_and_are_reused_only_when_free() {
        let mut slots = Slots::default();
        let c1 = cfg(&(svc("a", "198.18.0.1", &["198.19.0.10", "198.19.0.11"])
            + &svc("b", "198.18.0.2", &["198.19.0.12"])));
        slots.assign(&c1, 1, |_, _| false).unwrap();
        let s1 = Services::build(&c1, &slots, |_, _, _| true);
        let rs = |s: &Services, svc: &str, i: usize| s.by_name(svc).unwrap().real_servers[i].slot;
        assert_eq!(
            (rs(&s1, "a", 0), rs(&s1, "a", 1), rs(&s1, "b", 0)),
            (0, 1, 2)
        );
        // remove a's first server, remove b, add c: a's second server keeps slot 1
        let c2 =
            cfg(&(svc("a", "198.18.0.1", &["198.19.0.11"])
                + &svc("c", "198.18.0.3", &["198.19.0.13"])));
        slots.assign(&c2, 2, |_, _| false).unwrap();
        let s2 = Services::build(&c2, &slots, |_, _, _| false);
        assert_eq!(rs(&s2, "a", 0), 1);
        assert_eq!(s2.by_name("a").unwrap().slot, s1.by_name("a").unwrap().slot);
        assert_eq!(
            rs(&s2, "c", 0),
            3,
            "retired slots 0 and 2 are not reused while space remains"
        );
        assert!(!s2.by_name("a").unwrap().real_servers[0].up);
        assert_eq!(s2.get(s2.by_name("c").unwrap().slot).unwrap().name, "c");
    }

    #[test]
    fn a_full_slot_space_reuses_only_what_is_free() {
        let mut slots = Slots {
            next_rs: MAX_REAL_SERVERS as u16,
            retired: vec![(7, 3), (9, 5)],
            ..Slots::default()
        };
        let c = cfg(&svc("a", "198.18.0.1", &["198.19.0.10"]));
        assert!(slots.clone().assign(&c, 6, |_, _| false).is_err());
        slots.assign(&c, 6, |slot, _| slot == 9).unwrap();
        assert_eq!(
            slots.real_server("a", "198.19.0.10".parse().unwrap(), 80),
            9
        );
        assert_eq!(slots.retired, vec![(7, 3)]);
    }
}

#[cfg(test)]
mod form_tests {
    use super::*;
    use crate::fixture;

    const SERVICES: &str = r#"
services:
  - name: all
    vip: 198.18.0.100
    port: 0
    protocol: tcp
    mode: nat
    persistence: 60s
    real_servers:
      - { address: 198.19.0.10 }
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    real_servers:
      - { address: 198.19.0.11, port: 8080 }
  - name: dns
    vip: 198.18.0.100
    port: 53
    protocol: udp
    mode: nat
    ops: true
    real_servers:
      - { address: 198.19.0.12 }
      - { address: 198.19.0.13, port: 5353 }
"#;

    #[test]
    fn a_port_of_its_own_wins_over_the_vips_all_port_service() {
        let s = Services::from_config(&fixture::parse(&fixture::appliance(SERVICES)));
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let name = |port, proto| s.find(vip, port, proto).map(|s| s.name.as_str());
        assert_eq!(name(80, Proto::Tcp), Some("web"));
        assert_eq!(name(443, Proto::Tcp), Some("all"));
        assert_eq!(name(1, Proto::Tcp), Some("all"));
        assert_eq!(name(0, Proto::Tcp), Some("all"));
        // Every port of the VIP over TCP only; and not another VIP's.
        assert_eq!(name(443, Proto::Udp), None);
        assert_eq!(name(53, Proto::Udp), Some("dns"));
        let other: IpAddr = "198.18.0.101".parse().unwrap();
        assert!(s.find(other, 443, Proto::Tcp).is_none());
        let all = s.by_name("all").unwrap();
        assert_eq!(all.address(), "198.18.0.100:0");
        let rs = &all.real_servers[0];
        assert_eq!((rs.port, rs.port_for(443)), (0, 443));
        assert!(rs.serves(rs.addr, 8443, 8443) && !rs.serves(rs.addr, 80, 8443));
        assert_eq!(s.by_name("web").unwrap().real_servers[0].port_for(80), 8080);
    }

    #[test]
    fn ops_replies_are_known_by_their_source() {
        let s = Services::from_config(&fixture::parse(&fixture::appliance(SERVICES)));
        assert!(s.any_ops());
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        let (svc, rs) = s.ops_reply(ip("198.19.0.12"), 53, Proto::Udp).unwrap();
        assert_eq!((svc.name.as_str(), rs.slot), ("dns", 2));
        let (_, rs) = s.ops_reply(ip("198.19.0.13"), 5353, Proto::Udp).unwrap();
        assert_eq!(rs.port, 5353);
        assert!(s.ops_reply(ip("198.19.0.13"), 53, Proto::Udp).is_none());
        assert!(s.ops_reply(ip("198.19.0.12"), 53, Proto::Tcp).is_none());
        // Not an ops service's: a stateful service's server.
        assert!(s.ops_reply(ip("198.19.0.11"), 8080, Proto::Tcp).is_none());
        let plain = Services::from_config(&fixture::parse(&fixture::appliance(
            &SERVICES.replace("    ops: true\n", ""),
        )));
        assert!(!plain.any_ops());
        assert!(plain.ops_reply(ip("198.19.0.12"), 53, Proto::Udp).is_none());
    }
}
