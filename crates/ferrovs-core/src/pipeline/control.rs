//! The worker's side of the control plane, run between bursts: commands from the
//! management core (configuration snapshots, neighbours, connection listings),
//! connection expiry and neighbour probe retries.

use super::*;
use crate::conn::Endpoint;
use crate::stats::DropReason;
use crate::sync::SyncConn;
use std::net::{IpAddr, Ipv4Addr};

/// Connections expired at most per loop iteration and family.
const EXPIRE_BUDGET: usize = 64;

impl<P: PacketPool> Pipeline<P> {
    /// Applies a command from the management core.
    pub fn apply(&mut self, cmd: WorkerCommand) {
        match cmd {
            WorkerCommand::Config(dp) => {
                self.lb.update_services(&dp.services, &self.stats);
                self.lb.set_timeouts(&dp.timeouts);
                for (ip, mac, port) in &dp.static_neighbors {
                    self.neigh.add_static(*ip, *mac, *port);
                }
                self.stats.config_version.set(dp.version);
                self.hops.clear();
                self.real_hops.clear();
                self.tunnel_outers.clear();
                self.iface_v4 = OwnAddrsV4::new(interface_v4(&dp));
                self.min_mtu = min_mtu(&dp);
                self.dp = dp;
                self.watch_multipath_gateways();
            }
            WorkerCommand::Neighbor { ip, mac, port } => {
                self.learn_neighbor(ip, mac, port, true);
            }
            WorkerCommand::DumpConns(q) => {
                let chunk = if q.ipv6 {
                    self.dump::<std::net::Ipv6Addr>(&q)
                } else {
                    self.dump::<Ipv4Addr>(&q)
                };
                let _ = q.reply.try_send(chunk);
            }
            WorkerCommand::AnnounceAddresses => {
                for port in 0..self.dp.ifaces.len() {
                    self.announce_addresses_on(port);
                }
            }
            WorkerCommand::AnnounceAddressesOn(port) => self.announce_addresses_on(port),
            WorkerCommand::CookieKeys(keys) => self.syn.set_keys(keys),
            WorkerCommand::SyncInstall(records) => self.install_synced(&records),
        }
    }

    /// Installs connections other members carry (control path).
    fn install_synced(&mut self, records: &[SyncConn]) {
        for r in records {
            // A client no connection could open with here (see `ingress`).
            let client = r.client.0;
            if self.dp.is_martian_source(client) || self.dp.local(client).is_some() {
                self.stats.sync_refused.inc();
                continue;
            }
            let Some(svc) = self.dp.services.find(r.vip.0, r.vip.1, r.proto) else {
                self.stats.sync_refused.inc();
                continue;
            };
            let installed = if r.client.0.is_ipv4() {
                self.lb
                    .install::<Ipv4Addr>(svc, r, self.now_ms, &self.stats)
            } else {
                self.lb
                    .install::<std::net::Ipv6Addr>(svc, r, self.now_ms, &self.stats)
            };
            match installed {
                Ok(()) => self.stats.sync_installed.inc(),
                Err(_) => self.stats.sync_refused.inc(),
            }
        }
        self.stats.conns_active.set(self.lb.len() as u64);
    }

    /// Sends a gratuitous ARP or unsolicited neighbour advertisement for every
    /// address ferrovs answers for on each port (control path; once per start or
    /// reload).
    fn announce_addresses_on(&mut self, port: usize) {
        let Some(iface) = self.dp.ifaces.get(port) else {
            return;
        };
        let mac = iface.mac;
        for ip in self.dp.addresses_on(port) {
            let Some(mut pkt) = self.pool.alloc() else {
                return self.stats.count_drop(DropReason::NoMbuf, 1);
            };
            let built = match ip {
                IpAddr::V4(v4) => build_arp_request(&mut pkt, mac, v4, v4),
                IpAddr::V6(v6) => build_unsolicited_na(&mut pkt, mac, v6),
            };
            if built {
                self.queue_tx(port, pkt);
            } else {
                self.consume(pkt);
            }
        }
    }

    /// One step of a connection listing (control path; allocates).
    pub(super) fn dump<A: Tables>(&self, q: &ConnQuery) -> ConnChunk {
        let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
        // NAT64 holds its IPv4 local address and real server IPv4-mapped: shown
        // (and matched) as the IPv4 addresses they are.
        let ep4 = |e: Endpoint<A>| (e.addr.into_ip().to_canonical(), e.port);
        let mut conns = Vec::new();
        let next = self.lb.scan::<A>(
            q.from,
            q.count,
            |c| {
                q.service.is_none_or(|s| s == c.service())
                    && q.real_server.is_none_or(|(a, p)| {
                        // Port 0: an all-port real server, whatever port it serves.
                        a == c.real().addr.into_ip().to_canonical()
                            && (p == c.real().port || p == 0)
                    })
                    && q.state
                        .as_deref()
                        .is_none_or(|s| s.eq_ignore_ascii_case(c.state_name()))
            },
            |c| {
                conns.push(ConnSnapshot {
                    proto: c.proto(),
                    client: ep(c.client()),
                    vip: ep(c.vip()),
                    local: ep4(c.local()),
                    real: ep4(c.real()),
                    mode: c.mode(),
                    state: c.state(),
                    expires_ms: c.expires_in(self.now_ms),
                    worker: self.worker,
                })
            },
        );
        ConnChunk { conns, next }
    }

    /// Expires connections whose time is up; called every loop iteration.
    pub fn expire_connections(&mut self) {
        self.lb
            .expire_reporting(self.now_ms, EXPIRE_BUDGET, &self.stats, &mut self.syn.owed);
        if !self.syn.owed.is_empty() {
            self.send_owed_resets();
        }
        self.syn_proxy_tick();
        self.stats.conns_active.set(self.lb.len() as u64);
    }

    /// Periodic work: neighbour probe retries and give-ups.
    pub fn housekeeping(&mut self) {
        let Self {
            neigh,
            dp,
            pool,
            stats,
            tx,
            garbage,
            now_ms,
            ..
        } = self;
        let mut probes: [Option<(IpAddr, usize)>; 16] = [None; 16];
        let mut n = 0;
        neigh.tick(
            *now_ms,
            |ip, port| {
                if n < probes.len() {
                    probes[n] = Some((ip, port));
                    n += 1;
                }
            },
            |pkt| {
                stats.count_drop(DropReason::NeighborUnresolved, 1);
                if garbage.len() < garbage.capacity() {
                    garbage.push(pkt);
                }
            },
        );
        for (ip, port) in probes.iter().flatten() {
            send_probe(dp, pool, stats, tx, *ip, *port);
        }
        self.resolve_multipath_gateways();
        self.expire_fragments();
    }

    /// Gives every held packet back (shutdown).
    pub fn release_all(&mut self) {
        self.release_fragments();
        let Self {
            neigh,
            garbage,
            stats,
            ..
        } = self;
        neigh.release_all(|pkt| {
            stats.count_drop(DropReason::NeighborUnresolved, 1);
            if garbage.len() < garbage.capacity() {
                garbage.push(pkt);
            }
        });
    }
}
