//! Which worker owns a connection, computed from a packet alone, and the NIC rules
//! that make packets land on their owner.
//!
//! The owner is the client-side port, without its lowest bit, modulo the number of
//! workers. The lowest bit is skipped because Linux picks even ephemeral ports for
//! `connect()` (and odd ones for `bind()`), so with two workers the parity alone
//! would put every Linux client on one worker. The port is:
//! - a packet to a VIP: its source port (the client's);
//! - a NAT reply (to the client, not to us): its destination port (the client's);
//! - a FULLNAT reply (to a local address): its destination port, the local port,
//!   which the owner allocated from the ports it owns.
//!
//! So both directions of every connection meet on one worker, on any NIC. A packet
//! that RSS delivers elsewhere is handed over through a ring; with a power-of-two
//! number of workers "(port >> 1) mod W" is "port & ((W-1) << 1)", which rte_flow
//! can match, and [`steering_rules`] describes the rules that make the handoff rare.

use crate::conn::{Mode, Proto};
use crate::service::Services;
use std::net::IpAddr;

/// The owner of a connection whose client-side (or local) port is `port`.
#[inline(always)]
pub fn owner_of(port: u16, workers: usize) -> usize {
    usize::from(port >> 1) % workers.max(1)
}

/// A 16-bit port match: `port & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMatch {
    /// What the port's bits under `mask` must equal.
    pub value: u16,
    /// The bits of the port compared; `u16::MAX` matches one port exactly.
    pub mask: u16,
}

/// One NIC flow rule: packets matching all the given fields go to `queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteeringRule {
    /// TCP or UDP; always matched.
    pub proto: Proto,
    /// Exact source address; `None` matches any.
    pub src_addr: Option<IpAddr>,
    /// Exact destination address; `None` matches any.
    pub dst_addr: Option<IpAddr>,
    /// Source port match; `None` matches any.
    pub src_port: Option<PortMatch>,
    /// Destination port match; `None` matches any.
    pub dst_port: Option<PortMatch>,
    /// The receive queue, which is also the index of the worker that owns the matched
    /// connections.
    pub queue: u16,
}

/// The rules that send every connection's packets to its owner's queue, or none
/// when `workers` is 1 or not a power of two (the residue is then not a bit mask).
pub fn steering_rules(services: &Services, workers: usize) -> Vec<SteeringRule> {
    if workers < 2 || !workers.is_power_of_two() || workers > usize::from(u16::MAX) {
        return Vec::new();
    }
    let mask = ((workers - 1) as u16) << 1;
    let mut rules = Vec::new();
    for w in 0..workers as u16 {
        let low_bits = Some(PortMatch {
            value: w << 1,
            mask,
        });
        for s in services.iter() {
            // Client to VIP: the client's source port.
            rules.push(SteeringRule {
                proto: s.proto,
                src_addr: None,
                dst_addr: Some(s.vip),
                src_port: low_bits,
                dst_port: Some(PortMatch {
                    value: s.port,
                    mask: u16::MAX,
                }),
                queue: w,
            });
            match s.mode {
                // Server to client: the client's port is the destination port.
                Mode::Nat => {
                    for r in &s.real_servers {
                        rules.push(SteeringRule {
                            proto: s.proto,
                            src_addr: Some(r.addr),
                            dst_addr: None,
                            src_port: Some(PortMatch {
                                value: r.port,
                                mask: u16::MAX,
                            }),
                            dst_port: low_bits,
                            queue: w,
                        });
                    }
                }
                // Server to local address: the local port.
                Mode::FullNat => {
                    for lip in &s.local_addrs {
                        rules.push(SteeringRule {
                            proto: s.proto,
                            src_addr: None,
                            dst_addr: Some(*lip),
                            src_port: None,
                            dst_port: low_bits,
                            queue: w,
                        });
                    }
                }
                // Replies go straight to the client.
                Mode::Dr | Mode::Tunnel => {}
            }
        }
    }
    rules.sort_by_key(|r| (r.queue, r.dst_addr, r.src_addr));
    rules.dedup();
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

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
        assert!(steering_rules(&s, 1).is_empty());
        assert!(steering_rules(&s, 3).is_empty());
        // per worker: 2 VIP rules, 1 NAT reply rule, 1 FULLNAT reply rule
        assert_eq!(steering_rules(&s, 2).len(), 8);
        assert_eq!(steering_rules(&s, 4).len(), 16);
    }

    #[test]
    fn every_rule_agrees_with_owner_of() {
        let s = services();
        let workers = 4;
        for r in steering_rules(&s, workers) {
            let m = r
                .src_port
                .filter(|m| m.mask != u16::MAX)
                .or(r.dst_port.filter(|m| m.mask != u16::MAX))
                .unwrap();
            for port in [1024u16, 40001, 65535, 3] {
                let matches = port & m.mask == m.value;
                assert_eq!(
                    matches,
                    owner_of(port, workers) == usize::from(r.queue),
                    "{r:?} port {port}"
                );
            }
        }
    }
}
