//! Virtual services and their real servers as the data plane sees them: built from
//! the configuration into an immutable table that workers share.
//!
//! Every service and real server has a *slot*: a small stable number that
//! connections, per-worker counters and scheduler state are indexed by.

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
    pub addr: IpAddr,
    pub port: u16,
    /// 0 = no new connections (drain); live ones continue.
    pub weight: u32,
}

impl RealServer {
    pub fn id(&self) -> ServerId {
        ServerId::new(self.addr, self.port)
    }
}

/// A virtual service: VIP, port, protocol and how its traffic is balanced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Stable slot of this service.
    pub slot: u16,
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub proto: Proto,
    pub mode: Mode,
    pub scheduler: SchedulerKind,
    pub sched_options: SchedOptions,
    /// Persistence timeout in ms; 0 = off.
    pub persistence_ms: u64,
    /// Client prefix length that shares a persistence template.
    pub persistence_netmask: u8,
    /// FULLNAT source addresses.
    pub local_addrs: Vec<IpAddr>,
    pub real_servers: Vec<RealServer>,
}

impl Service {
    /// "VIP:PORT" as ipvsadm prints it.
    pub fn address(&self) -> String {
        endpoint(self.vip, self.port)
    }
}

/// `addr:port`, with brackets for IPv6.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// What identifies a service in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

/// All services, indexed by slot and by (VIP, port, protocol).
#[derive(Debug, Clone, Default)]
pub struct Services {
    list: Vec<Service>,
    by_key: HashMap<ServiceKey, usize, FixedState>,
    real_server_slots: usize,
}

impl Services {
    /// Builds the table from a validated config. Slots follow config order.
    pub fn from_config(cfg: &Config) -> Services {
        let mut rs_slot = 0u16;
        let list: Vec<Service> = cfg
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| Service {
                slot: i as u16,
                name: s.name.clone(),
                vip: s.vip,
                port: s.port,
                proto: proto_of(s.protocol),
                mode: mode_of(s.mode),
                scheduler: scheduler_of(s.scheduler),
                sched_options: SchedOptions::default(),
                persistence_ms: s.persistence.as_millis() as u64,
                persistence_netmask: s.persistence_netmask,
                local_addrs: s.local_addresses.clone(),
                real_servers: s
                    .real_servers
                    .iter()
                    .map(|r| {
                        let rs = RealServer {
                            slot: rs_slot,
                            addr: r.address,
                            port: r.port,
                            weight: r.weight,
                        };
                        rs_slot += 1;
                        rs
                    })
                    .collect(),
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
        Services {
            list,
            by_key,
            real_server_slots: usize::from(rs_slot),
        }
    }

    /// The service a packet to `vip:port` over `proto` belongs to.
    #[inline]
    pub fn find(&self, vip: IpAddr, port: u16, proto: Proto) -> Option<&Service> {
        self.by_key
            .get(&ServiceKey { vip, port, proto })
            .map(|&i| &self.list[i])
    }

    /// The service in `slot`.
    #[inline]
    pub fn get(&self, slot: u16) -> Option<&Service> {
        self.list.get(usize::from(slot))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Number of real-server slots in use (size of per-server counter arrays).
    pub fn real_server_slots(&self) -> usize {
        self.real_server_slots
    }

    /// Whether any service uses this address family.
    pub fn any_ipv6(&self) -> bool {
        self.list.iter().any(|s| s.vip.is_ipv6())
    }

    /// Whether any service keeps persistence templates.
    pub fn any_persistence(&self) -> bool {
        self.list.iter().any(|s| s.persistence_ms > 0)
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostFacts;

    #[test]
    fn services_are_found_by_vip_port_and_protocol() {
        let text = r#"
eal: { cores: [0, 1] }
ports:
  - { name: wan, device: net_null0, addresses: ["198.18.0.1/24"] }
  - { name: lan, device: net_null1, addresses: ["198.19.0.1/24"] }
workers: { cores: [1] }
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
        let cfg = config::parse(text, "t.yaml", &HostFacts::default()).unwrap();
        let s = Services::from_config(&cfg);
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
        assert_eq!(s.real_server_slots(), 3);
        assert!(s.any_persistence());
        assert!(!s.any_ipv6());
        assert_eq!(web.address(), "198.18.0.100:80");
    }
}
