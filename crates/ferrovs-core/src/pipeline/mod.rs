//! The per-packet pipeline of one worker. Pure Rust over [`PacketBuf`]: the DPDK
//! loop feeds it received mbufs, unit tests feed it [`crate::packet::VecBuf`]s.
//!
//! [`Pipeline::process`] and the `handle` function it calls are the ones to read
//! for the flow of a packet: parse, check the MAC, screen what no packet may carry
//! ([`ingress`]), steer to the owner worker, then ARP ([`l2`]), the ports' own
//! addresses ([`local`]) or load balancing ([`balance`]).
//! [`Pipeline::process_burst`] ([`burst`]) is the same flow for a whole burst,
//! with a fast lane for established IPv4 connections.
//!
//! Every packet ends in exactly one of three places: a port's TX queue, the
//! neighbour table's hold queue (waiting for ARP/ND), or the garbage list that the
//! caller frees in bulk (counted under a drop reason unless it was consumed, like an
//! ARP reply we learned from).

mod balance;
mod balancer;
mod burst;
mod control;
mod dataplane;
mod ecmp;
mod edge;
mod frag;
mod hops;
mod ingress;
mod l2;
mod local;
mod lports;
mod messages;
mod nat64;
mod ops;
mod synproxy;
#[cfg(test)]
mod tests;
mod vlan;

pub use balancer::{Balancer, BalancerLimits, SyncRefusal};
pub use dataplane::{has_kernel_interface, Dataplane, Interface, LocalAddr, LocalKind};
pub use messages::{ConnChunk, ConnQuery, ConnSnapshot, PacketPool, WorkerCommand, WorkerEvent};

use crate::conn::{Dir, Proto};
use crate::forward::quoted_flow;
use crate::net::{NeighLimits, NeighTable};
use crate::packet::parse::{FrameInfo, IpInfo, L3Info, L4Header};
use crate::packet::{
    ethernet, parse_frame, IcmpType, Icmpv6Type, IpPair, IpProtocol, MacAddr, PacketBuf,
};
use crate::stats::{DropReason, WorkerStats};
use crate::steer::owner_of;
use balance::{is_opening_syn, may_open};
use balancer::Tables;
use burst::OwnAddrsV4;
use crossbeam_channel::Sender;
use hops::{HopCache, TunnelOuters};
use l2::{build_arp_request, build_unsolicited_na, is_nd, send_probe};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// One worker's packet pipeline.
pub struct Pipeline<P: PacketPool> {
    worker: usize,
    workers: usize,
    dp: Arc<Dataplane>,
    pool: P,
    stats: Arc<WorkerStats>,
    events: Sender<WorkerEvent>,
    neigh: NeighTable<P::Buf>,
    lb: Balancer,
    /// Per-interface packets to transmit at the end of the loop iteration.
    tx: vlan::TxQueues<P::Buf>,
    /// Packets to free in bulk at the end of the loop iteration.
    garbage: Vec<P::Buf>,
    /// Per-worker packets to hand to the worker that owns their connection.
    handoff: Vec<Vec<P::Buf>>,
    /// Per-interface packets for the kernel interface (exception path).
    kernel: Vec<Vec<P::Buf>>,
    now_ms: u64,
    /// Resolved IPv4 next hops for the burst path.
    hops: HopCache,
    /// The same answers keyed by real-server address, route included: most
    /// packets go to a real server, and real servers are few.
    real_hops: HopCache,
    /// TUNNEL's outer header and MTU towards each real server, for the burst path.
    tunnel_outers: TunnelOuters,
    /// The ports' own IPv4 addresses (the burst path leaves traffic to them alone).
    iface_v4: OwnAddrsV4,
    /// The smallest MTU of the ports: a forwarded packet no longer than this fits
    /// whatever port it leaves by, and only a longer one has its egress MTU looked up.
    min_mtu: u16,
    /// Per port: the NIC verifies IPv4 header checksums on receive, so its verdict
    /// is read (other ports' packets are not asked).
    rx_ipv4_checksum_offload: Vec<bool>,
    /// Per port: the NIC strips VLAN tags into metadata, so the burst path
    /// leaves frames that had one to the ordinary path.
    rx_vlan_strip: Vec<bool>,
    /// The burst path's packets that wait for their new connection's insertion.
    parked: burst::ParkingLot<P::Buf>,
    /// The SYN proxy's keys, held data and automatic switch.
    syn: synproxy::SynProxy<P::Buf>,
    /// Datagrams in fragments: where their later fragments go (`frag`).
    frags: frag::FragTable<P::Buf>,
}

impl<P: PacketPool> Pipeline<P> {
    /// A pipeline for worker `worker`. Every queue and table is allocated here,
    /// sized from `burst` and the balancer's limits, so nothing allocates per packet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        worker: usize,
        workers: usize,
        dp: Arc<Dataplane>,
        lb: Balancer,
        pool: P,
        stats: Arc<WorkerStats>,
        events: Sender<WorkerEvent>,
        burst: usize,
    ) -> Self {
        let limits = NeighLimits::default();
        // Every interface (port or VLAN) has its TX and kernel queues.
        let ports = dp.ifaces.len();
        let dp_cookie_keys = dp.cookie_keys;
        // One burst from every port can go out of one port, plus every held packet
        // released at once by a neighbour answer.
        let tx_cap = burst * ports.max(1) + limits.held;
        let mut neigh = NeighTable::new(limits);
        for (ip, mac, port) in &dp.static_neighbors {
            neigh.add_static(*ip, *mac, *port);
        }
        let tx = vlan::TxQueues::new(&dp, tx_cap);
        let kernel = dp
            .ifaces
            .iter()
            .map(|i| Vec::with_capacity(if i.kernel { burst * ports.max(1) } else { 0 }))
            .collect();
        Pipeline {
            worker,
            workers: workers.max(1),
            dp,
            pool,
            stats,
            events,
            neigh,
            lb,
            tx,
            garbage: Vec::with_capacity(tx_cap + burst * ports.max(1) + frag::HOLD_PER_WORKER),
            kernel,
            handoff: (0..workers.max(1))
                .map(|w| Vec::with_capacity(if w == worker { 0 } else { burst * ports.max(1) }))
                .collect(),
            now_ms: 0,
            hops: HopCache::new(),
            real_hops: HopCache::new(),
            tunnel_outers: TunnelOuters::new(),
            iface_v4: OwnAddrsV4::default(),
            min_mtu: 0,
            rx_ipv4_checksum_offload: vec![false; ports],
            rx_vlan_strip: vec![false; ports],
            parked: burst::ParkingLot::new(),
            syn: synproxy::SynProxy::new(dp_cookie_keys),
            frags: frag::FragTable::new(),
        }
        .with_interface_addrs()
    }

    /// Tells the burst path which ports' NICs verify IPv4 header checksums
    /// (`Port::rx_ipv4_checksum_offload`, indexed like the ports).
    pub fn with_rx_ipv4_checksum_offload(mut self, ports: &[bool]) -> Self {
        for (on, &nic) in self.rx_ipv4_checksum_offload.iter_mut().zip(ports) {
            *on = nic;
        }
        self
    }

    /// Tells the pipeline which ports' NICs strip VLAN tags on receive and which
    /// insert them on transmit (indexed like the ports); the others' tags are
    /// taken off and put on in software.
    pub fn with_vlan_offloads(mut self, rx_strip: &[bool], tx_insert: &[bool]) -> Self {
        for (on, &nic) in self.rx_vlan_strip.iter_mut().zip(rx_strip) {
            *on = nic;
        }
        self.tx.set_nic_inserts(&self.dp, tx_insert);
        self
    }

    /// The interfaces (ports, then VLANs): the indexes of [`Pipeline::tx_queue`]
    /// and [`Pipeline::kernel_queue`].
    pub fn interfaces(&self) -> usize {
        self.dp.ifaces.len()
    }

    /// The port interface `iface`'s frames leave by.
    pub fn egress_port(&self, iface: usize) -> usize {
        self.dp.ifaces[iface].port
    }

    /// Counts `n` frames the NIC took from interface `iface`'s queue.
    pub fn count_sent(&self, iface: usize, n: u64) {
        self.stats.tx_packets.add(n);
        if let Some(vlan) = iface.checked_sub(self.dp.ports()) {
            self.stats.vlan(vlan).tx_packets.add(n);
        }
    }

    /// Takes the ports' IPv4 addresses and MTUs from the configuration snapshot.
    fn with_interface_addrs(mut self) -> Self {
        self.iface_v4 = OwnAddrsV4::new(interface_v4(&self.dp));
        self.min_mtu = min_mtu(&self.dp);
        self.watch_multipath_gateways();
        self
    }

    /// This worker's index, `0..workers`: the worker that owns the connections steered to it.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The worker's counters, shared with the management core through an `Arc`.
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// The clock for this burst, in monotonic milliseconds.
    pub fn set_time(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Packets queued for interface `iface` (a VLAN's already tagged, or marked
    /// for the NIC to tag), to go out of its [`Pipeline::egress_port`]; the
    /// caller transmits and leaves what the NIC refused for
    /// [`Pipeline::discard_tx`].
    pub fn tx_queue(&mut self, iface: usize) -> &mut Vec<P::Buf> {
        self.tx.queue(iface)
    }

    /// Moves what is left in `iface`'s TX queue to the garbage (already counted).
    pub fn discard_tx(&mut self, iface: usize) {
        let Self { tx, garbage, .. } = self;
        for pkt in tx.queue(iface).drain(..) {
            if garbage.len() < garbage.capacity() {
                garbage.push(pkt);
            }
        }
    }

    /// Packets for worker `owner`; the caller moves them to its ring and leaves what
    /// did not fit for [`Pipeline::discard_handoff`].
    pub fn handoff_queue(&mut self, owner: usize) -> &mut Vec<P::Buf> {
        &mut self.handoff[owner]
    }

    /// Drops what is left in the handoff queue to `owner` (its ring was full).
    pub fn discard_handoff(&mut self, owner: usize) {
        let n = self.handoff[owner].len();
        self.stats.count_drop(DropReason::HandoffFull, n as u64);
        let Self {
            handoff, garbage, ..
        } = self;
        for pkt in handoff[owner].drain(..) {
            if garbage.len() < garbage.capacity() {
                garbage.push(pkt);
            }
        }
    }

    /// Packets for `port`'s kernel interface; the caller sends them and leaves what
    /// did not go for [`Pipeline::discard_kernel`].
    pub fn kernel_queue(&mut self, port: usize) -> &mut Vec<P::Buf> {
        &mut self.kernel[port]
    }

    /// Drops what is left in `port`'s kernel queue (the TAP did not take it).
    pub fn discard_kernel(&mut self, port: usize) {
        let n = self.kernel[port].len();
        self.stats.count_drop(DropReason::KernelFull, n as u64);
        let Self {
            kernel, garbage, ..
        } = self;
        for pkt in kernel[port].drain(..) {
            if garbage.len() < garbage.capacity() {
                garbage.push(pkt);
            }
        }
    }

    /// Packets to free; the caller empties it.
    pub fn garbage(&mut self) -> &mut Vec<P::Buf> {
        &mut self.garbage
    }

    /// The flow of one received packet: classify, steer to the owner worker, then
    /// answer, forward or drop.
    pub fn process(&mut self, pkt: P::Buf, port: usize) {
        self.stats.rx_packets.inc();
        self.receive(pkt, port);
    }

    /// A frame received on `port`: on a port with VLANs, its tag decides the
    /// interface it belongs to (and comes off); then it is handled.
    #[inline]
    fn receive(&mut self, mut pkt: P::Buf, port: usize) {
        let iface = if self.dp.has_vlans(port) {
            let nic_strips = self.rx_vlan_strip[port];
            match vlan::untag(&self.dp, &self.stats, &mut pkt, port, nic_strips) {
                Ok(iface) => iface,
                Err(reason) => return self.discard(pkt, reason),
            }
        } else {
            port
        };
        self.handle(pkt, iface, true);
    }

    /// A frame a kernel interface sent, tagged with its interface: it goes out as
    /// it is (with the interface's VLAN tag).
    pub fn from_kernel(&mut self, pkt: P::Buf) {
        let port = usize::from(pkt.rx_port());
        if port >= self.dp.ifaces.len() {
            return self.discard(pkt, DropReason::NotForUs);
        }
        self.queue_tx(port, pkt);
    }

    /// A packet another worker handed over because this worker owns its connection.
    pub fn process_handed(&mut self, pkt: P::Buf) {
        let port = usize::from(pkt.rx_port());
        if port >= self.dp.ifaces.len() {
            return self.discard(pkt, DropReason::NotForUs);
        }
        self.handle(pkt, port, false);
    }

    fn handle(&mut self, pkt: P::Buf, port: usize, steer: bool) {
        let info = match parse_frame(pkt.data(), false) {
            Ok(info) => info,
            Err(e) => return self.discard(pkt, e.into()),
        };
        let dst_mac = MacAddr(
            pkt.data()[ethernet::field::DST]
                .try_into()
                .unwrap_or([0; 6]),
        );
        if !dst_mac.is_multicast() && dst_mac != self.dp.ifaces[port].mac {
            return self.discard(pkt, DropReason::ForeignMac);
        }
        match info.l3 {
            L3Info::Arp => self.arp_input(pkt, port, &info),
            L3Info::Ip(ip) => {
                if let Err(reason) = self.screen(&ip, dst_mac.is_multicast()) {
                    return self.discard(pkt, reason);
                }
                // Fragments have their own steering (`frag`): only the first
                // carries ports.
                let pkt = if ip.fragment {
                    match self.fragment_input(pkt, port, &info, &ip, steer) {
                        Some(pkt) => pkt,
                        None => return,
                    }
                } else {
                    pkt
                };
                if steer && self.workers > 1 {
                    if let Some(owner) = self.owner(&pkt, &info, &ip) {
                        if owner != self.worker {
                            return self.hand_over(pkt, port, owner);
                        }
                    }
                }
                self.ip_input(pkt, port, &info, &ip)
            }
        }
    }

    /// The worker that owns the connection of this packet (see `steer`), or None
    /// for packets any worker answers (ARP, ping, ND, our own addresses).
    #[inline]
    fn owner(&self, pkt: &P::Buf, info: &FrameInfo, ip: &IpInfo) -> Option<usize> {
        let local = self.dp.local(ip.addrs.dst()).map(|l| l.kind);
        // The packet's flow in the connection's terms: for an ICMP error, the
        // quoted packet reversed (it went the other way; the error comes back).
        let (proto, src, dst) = match ip.l4?.header {
            L4Header::Tcp {
                src_port, dst_port, ..
            } => (
                Proto::Tcp,
                (ip.addrs.src(), src_port),
                (ip.addrs.dst(), dst_port),
            ),
            L4Header::Udp { src_port, dst_port } => (
                Proto::Udp,
                (ip.addrs.src(), src_port),
                (ip.addrs.dst(), dst_port),
            ),
            L4Header::Icmpv4 { .. } | L4Header::Icmpv6 { .. } => {
                let q = quoted_flow(pkt.data(), info, ip)?;
                (q.proto, (q.dst, q.dport), (q.src, q.sport))
            }
        };
        let owners = &self.dp.owners;
        Some(match local {
            // To a VIP: the client is the source.
            Some(LocalKind::Vip) => match self.dp.services.find(dst.0, dst.1, proto) {
                Some(svc) => owners.service(svc.slot).owner(src.0, src.1, self.workers),
                None => owner_of(src.1, self.workers),
            },
            // A FULLNAT reply: the local port.
            Some(LocalKind::Lip) => owner_of(dst.1, self.workers),
            // A NAT reply: the client is the destination.
            None => owners
                .nat_reply(src.0, src.1, proto)
                .owner(dst.0, dst.1, self.workers),
            Some(LocalKind::Interface | LocalKind::Shared) => return None,
        })
    }

    /// Queues `pkt`, received on `port`, for worker `owner`; the packet carries the
    /// port (which is ours, not the NIC's port id) for the owner to handle it.
    fn hand_over(&mut self, mut pkt: P::Buf, port: usize, owner: usize) {
        pkt.set_rx_port(port as u16);
        let q = &mut self.handoff[owner];
        if q.len() < q.capacity() {
            q.push(pkt);
            self.stats.handoff_packets.inc();
        } else {
            self.discard(pkt, DropReason::HandoffFull);
        }
    }

    fn ip_input(&mut self, pkt: P::Buf, port: usize, info: &FrameInfo, ip: &IpInfo) {
        let dst = ip.addrs.dst();
        let local = match dst {
            IpAddr::V6(d) if d.is_multicast() && is_nd(ip) => Some(LocalKind::Interface),
            _ => self.dp.local(dst).map(|l| l.kind),
        };
        // Segments left: the destination is a hop on the way. Only the kernel
        // interface acts on routing headers; nothing is forwarded for one.
        if ip.source_routed && local != Some(LocalKind::Interface) {
            return self.discard(pkt, DropReason::Ipv6SourceRoute);
        }
        if matches!(ip.protocol, IpProtocol::TCP | IpProtocol::UDP) {
            if local == Some(LocalKind::Interface) {
                // The appliance's own sockets (health checks, BGP, ssh).
                return self.pass_to_kernel(pkt, port, Some(DropReason::LocalUnsupported));
            }
            // Fragments reach this point only whole (an IPv6 atomic fragment);
            // the others went through `frag`.
            return self.flow_input(pkt, port, info, ip);
        }
        let pkt = match quoted_flow(pkt.data(), info, ip) {
            Some(flow) => match self.icmp_error_input(pkt, port, info, ip, flow) {
                None => return,
                // About no connection of ours: maybe about a kernel socket's.
                Some(pkt) if local == Some(LocalKind::Interface) => {
                    return self.pass_to_kernel(pkt, port, Some(DropReason::NoConnection))
                }
                Some(pkt) => return self.discard(pkt, DropReason::NoConnection),
            },
            None => pkt,
        };
        if local.is_none() {
            return self.discard(pkt, DropReason::NotForUs);
        }
        if ip.fragment {
            return match local {
                Some(LocalKind::Interface) => {
                    self.pass_to_kernel(pkt, port, Some(DropReason::Fragment))
                }
                _ => self.discard(pkt, DropReason::Fragment),
            };
        }
        let l4 = ip.l4.map(|l4| l4.header);
        if let Some(
            L4Header::Icmpv4 {
                msg_type: IcmpType::ECHO_REQUEST,
                ..
            }
            | L4Header::Icmpv6 {
                msg_type: Icmpv6Type::ECHO_REQUEST,
                ..
            },
        ) = l4
        {
            // An answer to our own address would loop; one to a spoofed source
            // would reflect.
            if let Err(reason) = self.admit_source(ip.addrs.src(), port) {
                return self.discard(pkt, reason);
            }
        }
        match l4 {
            Some(L4Header::Icmpv4 {
                msg_type: IcmpType::ECHO_REQUEST,
                ..
            }) => self.echo_reply_v4(pkt, info),
            Some(L4Header::Icmpv6 {
                msg_type: Icmpv6Type::ECHO_REQUEST,
                ..
            }) => self.echo_reply_v6(pkt, info),
            Some(L4Header::Icmpv6 {
                msg_type: Icmpv6Type::NEIGHBOR_SOLICIT,
                ..
            }) => self.nd_solicit_input(pkt, port, info),
            Some(L4Header::Icmpv6 {
                msg_type: Icmpv6Type::NEIGHBOR_ADVERT,
                ..
            }) => self.nd_advert_input(pkt, port, info),
            _ if local == Some(LocalKind::Interface) => {
                self.pass_to_kernel(pkt, port, Some(DropReason::LocalUnsupported))
            }
            _ => self.discard(pkt, DropReason::LocalUnsupported),
        }
    }

    fn queue_tx(&mut self, iface: usize, pkt: P::Buf) {
        let Self {
            tx, stats, garbage, ..
        } = self;
        tx.push(iface, pkt, |pkt, reason| {
            drop_into(stats, garbage, pkt, reason)
        });
    }

    /// Drops `pkt`, counted under `reason`.
    #[inline]
    fn discard(&mut self, pkt: P::Buf, reason: DropReason) {
        self.stats.count_drop(reason, 1);
        self.consume(pkt);
    }

    /// Frees `pkt` without counting a drop (a packet the control plane used up).
    #[inline]
    fn consume(&mut self, pkt: P::Buf) {
        if self.garbage.len() < self.garbage.capacity() {
            self.garbage.push(pkt);
        }
        // else: dropped here, freed individually (never reached with the sizing above)
    }
}

/// Counts `pkt` as dropped for `reason` and puts it on the garbage list.
#[inline]
fn drop_into<B>(stats: &WorkerStats, garbage: &mut Vec<B>, pkt: B, reason: DropReason) {
    stats.count_drop(reason, 1);
    if garbage.len() < garbage.capacity() {
        garbage.push(pkt);
    }
}

/// Counts a forwarded packet of a connection on its real server's counters, in
/// the packet's direction (`bytes` from the IP header on).
#[inline]
fn count_forwarded(stats: &WorkerStats, real_server: u16, dir: Dir, bytes: u64) {
    let counters = stats.real_server(real_server);
    if dir == Dir::Inbound {
        counters.in_packets.inc();
        counters.in_bytes.add(bytes);
    } else {
        counters.out_packets.inc();
        counters.out_bytes.add(bytes);
    }
}

/// The smallest MTU of the ports (no port: nothing is forwarded anyway).
fn min_mtu(dp: &Dataplane) -> u16 {
    dp.ifaces.iter().map(|i| i.mtu).min().unwrap_or(u16::MAX)
}

/// The ports' own IPv4 addresses.
fn interface_v4(dp: &Dataplane) -> Vec<Ipv4Addr> {
    dp.ifaces
        .iter()
        .flat_map(|i| i.addrs.iter())
        .filter_map(|a| match a.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect()
}
