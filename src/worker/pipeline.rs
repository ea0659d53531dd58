//! The per-packet pipeline of one worker. Pure Rust over [`PacketBuf`]: the DPDK
//! loop feeds it received mbufs, unit tests feed it [`crate::packet::VecBuf`]s.
//!
//! Every packet ends in exactly one of three places: a port's TX queue, the
//! neighbour table's hold queue (waiting for ARP/ND), or the garbage list that the
//! caller frees in bulk (counted under a drop reason unless it was consumed, like an
//! ARP reply we learned from).

use super::balancer::{Balancer, Tables};
use super::hops::HopCache;
use super::steer::owner_of;
use super::{Dataplane, LocalKind, PacketPool, WorkerCommand, WorkerEvent};
use crate::conn::{Conn, Dir, Endpoint, Family, FlowKey, Proto};
use crate::forward::{
    encapsulate, icmp_error_action, packet_action, quoted_flow, translate, translate_icmp_error,
    Action, Endpoints, TunnelError,
};
use crate::net::{Learned, Lookup, NeighLimits, NeighTable};
use crate::packet::arp::{self, ArpOperation, ArpPacket};
use crate::packet::icmp::{emit_error, IcmpError};
use crate::packet::icmpv6::{self, NeighborAdvert, NeighborSolicit, ND_FRAME_LEN};
use crate::packet::parse::{FrameInfo, IpInfo, L3Info, L4Header};
use crate::packet::{
    ethernet, parse_frame, EtherType, IcmpType, Icmpv4Packet, Icmpv6Packet, Icmpv6Type, IpPair,
    IpProtocol, Ipv4Packet, Ipv6Packet, MacAddr, PacketBuf, TcpFlags,
};
use crate::stats::{DropReason, WorkerStats};
use burst::OwnAddrsV4;
use crossbeam_channel::Sender;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// TTL / hop limit of packets ferrovs originates or answers.
const REPLY_TTL: u8 = 64;
/// Minimum Ethernet frame without FCS; shorter frames we build are zero-padded.
const MIN_FRAME: usize = 60;
/// Connections expired at most per loop iteration and family.
const EXPIRE_BUDGET: usize = 64;

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
    /// Per-port packets to transmit at the end of the loop iteration.
    tx: Vec<Vec<P::Buf>>,
    /// Packets to free in bulk at the end of the loop iteration.
    garbage: Vec<P::Buf>,
    /// Per-worker packets to hand to the worker that owns their connection.
    handoff: Vec<Vec<P::Buf>>,
    /// Per-port packets for the kernel interface (exception path).
    kernel: Vec<Vec<P::Buf>>,
    now_ms: u64,
    /// Resolved IPv4 next hops for the burst path.
    hops: HopCache,
    /// The same answers keyed by real-server address, route included: most
    /// packets go to a real server, and real servers are few.
    real_hops: HopCache,
    /// The ports' own IPv4 addresses (the burst path leaves traffic to them alone).
    iface_v4: OwnAddrsV4,
    /// Per port: the NIC verifies IPv4 header checksums on receive, so its verdict
    /// is read (other ports' packets are not asked).
    rx_ipv4_checksum_offload: Vec<bool>,
    /// The burst path's packets that wait for their new connection's insertion.
    parked: burst::ParkingLot<P::Buf>,
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
        let ports = dp.ifaces.len();
        // One burst from every port can go out of one port, plus every held packet
        // released at once by a neighbour answer.
        let tx_cap = burst * ports.max(1) + limits.held;
        let mut neigh = NeighTable::new(limits);
        for (ip, mac, port) in &dp.static_neighbors {
            neigh.add_static(*ip, *mac, *port);
        }
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
            tx: (0..ports).map(|_| Vec::with_capacity(tx_cap)).collect(),
            garbage: Vec::with_capacity(tx_cap + burst * ports.max(1)),
            kernel,
            handoff: (0..workers.max(1))
                .map(|w| Vec::with_capacity(if w == worker { 0 } else { burst * ports.max(1) }))
                .collect(),
            now_ms: 0,
            hops: HopCache::new(),
            real_hops: HopCache::new(),
            iface_v4: OwnAddrsV4::default(),
            rx_ipv4_checksum_offload: vec![false; ports],
            parked: burst::ParkingLot::new(),
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

    /// Takes the ports' IPv4 addresses from the configuration snapshot.
    fn with_interface_addrs(mut self) -> Self {
        self.iface_v4 = OwnAddrsV4::new(interface_v4(&self.dp));
        self
    }

    pub fn worker(&self) -> usize {
        self.worker
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// The clock for this burst, in monotonic milliseconds.
    pub fn set_time(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Packets queued for `port`; the caller transmits and leaves what the NIC
    /// refused for [`Pipeline::discard_tx`].
    pub fn tx_queue(&mut self, port: usize) -> &mut Vec<P::Buf> {
        &mut self.tx[port]
    }

    /// Moves what is left in `port`'s TX queue to the garbage (already counted).
    pub fn discard_tx(&mut self, port: usize) {
        let Self { tx, garbage, .. } = self;
        for pkt in tx[port].drain(..) {
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
                self.iface_v4 = OwnAddrsV4::new(interface_v4(&dp));
                self.dp = dp;
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
        }
    }

    /// One step of a connection listing (control path; allocates).
    fn dump<A: Tables>(&self, q: &super::ConnQuery) -> super::ConnChunk {
        let ep = |e: Endpoint<A>| crate::service::endpoint(e.addr.into_ip(), e.port);
        let mut conns = Vec::new();
        let next = self.lb.scan::<A>(
            q.from,
            q.count,
            |c| {
                q.service.is_none_or(|s| s == c.service())
                    && q.real_server
                        .is_none_or(|(a, p)| a == c.real().addr.into_ip() && p == c.real().port)
                    && q.state
                        .as_deref()
                        .is_none_or(|s| s.eq_ignore_ascii_case(c.state_name()))
            },
            |c| {
                conns.push(crate::ctl::proto::ConnView {
                    protocol: c.proto().name().to_string(),
                    client: ep(c.client()),
                    virtual_address: ep(c.vip()),
                    local: ep(c.local()),
                    real_server: ep(c.real()),
                    state: c.state_name().to_string(),
                    expires_ms: c.expires_in(self.now_ms),
                    worker: self.worker,
                })
            },
        );
        super::ConnChunk { conns, next }
    }

    /// Expires connections whose time is up; called every loop iteration.
    pub fn expire_connections(&mut self) {
        self.lb.expire(self.now_ms, EXPIRE_BUDGET, &self.stats);
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
    }

    /// Gives every held packet back (shutdown).
    pub fn release_all(&mut self) {
        let Self {
            neigh,
            garbage,
            stats,
            ..
        } = self;
        neigh.tick(
            u64::MAX,
            |_, _| {},
            |pkt| {
                stats.count_drop(DropReason::NeighborUnresolved, 1);
                if garbage.len() < garbage.capacity() {
                    garbage.push(pkt);
                }
            },
        );
    }

    /// The flow of one received packet: classify, steer to the owner worker, then
    /// answer, forward or drop.
    pub fn process(&mut self, pkt: P::Buf, port: usize) {
        self.stats.rx_packets.inc();
        self.handle(pkt, port, true);
    }

    /// A frame a kernel interface sent, tagged with its port: it goes out as it is.
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
        let port = match ip.l4?.header {
            L4Header::Tcp {
                src_port, dst_port, ..
            }
            | L4Header::Udp { src_port, dst_port } => match local {
                Some(LocalKind::Vip) => src_port,
                Some(LocalKind::Lip) | None => dst_port,
                Some(LocalKind::Interface) => return None,
            },
            L4Header::Icmpv4 { .. } | L4Header::Icmpv6 { .. } => {
                // An error about a connection: the quoted packet went the other way.
                let q = quoted_flow(pkt.data(), info, ip)?;
                if local == Some(LocalKind::Vip) {
                    q.dport
                } else {
                    q.sport
                }
            }
        };
        Some(owner_of(port, self.workers))
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
        if matches!(ip.protocol, IpProtocol::TCP | IpProtocol::UDP) {
            if local == Some(LocalKind::Interface) {
                // The appliance's own sockets (health checks, BGP, ssh).
                return self.pass_to_kernel(pkt, port, Some(DropReason::LocalUnsupported));
            }
            if ip.fragment {
                return self.discard(pkt, DropReason::Fragment);
            }
            return self.flow_input(pkt, info, ip);
        }
        let pkt = match quoted_flow(pkt.data(), info, ip) {
            Some(flow) => match self.icmp_error_input(pkt, info, ip, flow) {
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
        match ip.l4.map(|l4| l4.header) {
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

    /// Passes a packet for one of the port's own addresses to the kernel interface
    /// standing for the port (the exception path). Without one the packet is dropped
    /// for `otherwise`, or just consumed when that is None (an answer ferrovs used).
    fn pass_to_kernel(&mut self, pkt: P::Buf, port: usize, otherwise: Option<DropReason>) {
        if !self.dp.ifaces[port].kernel {
            return match otherwise {
                Some(reason) => self.discard(pkt, reason),
                None => self.consume(pkt),
            };
        }
        let q = &mut self.kernel[port];
        if q.len() < q.capacity() {
            q.push(pkt);
            self.stats.kernel_packets.inc();
        } else {
            self.discard(pkt, DropReason::KernelFull);
        }
    }

    /// TCP/UDP: a packet of a known connection, or the first packet of a new one
    /// to a service, or nothing we forward.
    fn flow_input(&mut self, pkt: P::Buf, info: &FrameInfo, ip: &IpInfo) {
        let (proto, sport, dport, flags) = match ip.l4.map(|l4| l4.header) {
            Some(L4Header::Tcp {
                src_port,
                dst_port,
                flags,
            }) => {
                if flags.is_nonsense() {
                    return self.discard(pkt, DropReason::BadTcpFlags);
                }
                (Proto::Tcp, src_port, dst_port, flags)
            }
            Some(L4Header::Udp { src_port, dst_port }) => {
                (Proto::Udp, src_port, dst_port, TcpFlags::default())
            }
            _ => return self.discard(pkt, DropReason::TruncatedL4),
        };
        match ip.addrs {
            IpPair::V4 { src, dst } => {
                self.flow_input_af(pkt, info, ip, proto, (src, sport), (dst, dport), flags)
            }
            IpPair::V6 { src, dst } => {
                self.flow_input_af(pkt, info, ip, proto, (src, sport), (dst, dport), flags)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn flow_input_af<A: Tables>(
        &mut self,
        pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        proto: Proto,
        (src, sport): (A, u16),
        (dst, dport): (A, u16),
        flags: TcpFlags,
    ) {
        let key = FlowKey::new(proto, src, sport, dst, dport);
        let hit = match self.lb.lookup(&key) {
            Some((id, Dir::Inbound))
                if is_opening_syn(proto, flags)
                    && self.lb.reuse_closed::<A>(id, self.now_ms, &self.stats) =>
            {
                None
            }
            hit => hit,
        };
        let (id, dir) = match hit {
            Some(hit) => hit,
            None => match self.new_connection(proto, (src, sport), (dst, dport), flags) {
                Ok(id) => (id, Dir::Inbound),
                Err(reason) => return self.discard(pkt, reason),
            },
        };
        let Some(conn) = self
            .lb
            .on_packet::<A>(id, dir, flags.bits(), self.now_ms, &self.stats)
        else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        let bytes = (info.l3_end() - usize::from(info.l3_offset)) as u64;
        let counters = self.stats.real_server(conn.real_server());
        if dir == Dir::Inbound {
            counters.in_packets.inc();
            counters.in_bytes.add(bytes);
        } else {
            counters.out_packets.inc();
            counters.out_bytes.add(bytes);
        }
        let Some(action) = packet_action(conn.mode(), dir, &endpoints(&conn)) else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        self.forward(pkt, info, ip, proto, action);
    }

    /// Carries out a forwarding action on a packet of a connection.
    #[inline]
    fn forward(
        &mut self,
        mut pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        proto: Proto,
        action: Action,
    ) {
        match action {
            Action::Translate { t, next_hop } => {
                if let Err(reason) = translate(pkt.data_mut(), info, ip, proto, &t) {
                    return self.discard(pkt, reason);
                }
                pkt.truncate(info.l3_end());
                self.route_out(pkt, next_hop);
            }
            Action::Direct { next_hop } => {
                pkt.truncate(info.l3_end());
                self.route_out(pkt, next_hop);
            }
            Action::Encapsulate { next_hop } => self.encapsulate(pkt, info, next_hop),
        }
    }

    /// TUNNEL: wraps the packet in an outer header from our address on the egress
    /// port to the real server. A packet that would not fit the egress MTU is
    /// refused; with DF (or IPv6) its sender learns the MTU that fits.
    fn encapsulate(&mut self, mut pkt: P::Buf, info: &FrameInfo, rs: IpAddr) {
        let Some(hop) = self.dp.routes.lookup(rs) else {
            return self.discard(pkt, DropReason::NoRoute);
        };
        let Some(src) = self.dp.source_for(hop.port, rs) else {
            return self.discard(pkt, DropReason::NoSourceAddress);
        };
        let mtu = self.dp.ifaces[hop.port].mtu;
        match encapsulate(&mut pkt, info, src, rs, mtu) {
            Ok(()) => self.route_out(pkt, rs),
            Err(TunnelError::FragmentationNeeded { mtu }) => {
                self.send_too_big(&pkt, info, mtu);
                self.discard(pkt, DropReason::MtuExceeded);
            }
            Err(TunnelError::TooBig) => self.discard(pkt, DropReason::MtuExceeded),
            Err(TunnelError::NoRoom | TunnelError::FamilyMismatch) => {
                self.discard(pkt, DropReason::NoMbuf)
            }
        }
    }

    /// Tells the sender of `offending` that only `mtu` bytes fit: ICMP
    /// fragmentation needed (IPv4) or ICMPv6 packet too big, from our address
    /// towards it.
    fn send_too_big(&mut self, offending: &P::Buf, info: &FrameInfo, mtu: u16) {
        let Some(ip) = info.ip() else { return };
        let client = ip.addrs.src();
        let Some(hop) = self.dp.routes.lookup(client) else {
            return self.stats.count_drop(DropReason::NoRoute, 1);
        };
        let Some(src) = self.dp.source_for(hop.port, client) else {
            return self.stats.count_drop(DropReason::NoSourceAddress, 1);
        };
        let Some(mut err) = self.pool.alloc() else {
            return self.stats.count_drop(DropReason::NoMbuf, 1);
        };
        let l3 = usize::from(info.l3_offset);
        let quote = &offending.data()[l3..info.l3_end()];
        let room = ethernet::HEADER_LEN + icmpv6::MAX_ERROR_LEN;
        if err.append(room.min(err.tailroom())).is_err() {
            return self.stats.count_drop(DropReason::NoMbuf, 1);
        }
        let body = &mut err.data_mut()[ethernet::HEADER_LEN..];
        let written = match (src, ip.addrs) {
            (IpAddr::V4(s), IpPair::V4 { .. }) => emit_error(
                body,
                IcmpError::FragmentationNeeded { next_hop_mtu: mtu },
                s,
                quote,
            )
            .ok(),
            (IpAddr::V6(s), IpPair::V6 { .. }) => {
                icmpv6::emit_packet_too_big(body, s, quote, u32::from(mtu)).ok()
            }
            _ => None,
        };
        let Some(n) = written else {
            // An error about an error, a multicast source, ...: nothing to send.
            self.consume(err);
            return;
        };
        err.truncate(ethernet::HEADER_LEN + n);
        let ethertype = if src.is_ipv4() {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        };
        err.data_mut()[ethernet::field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
        self.route_out(err, client);
    }

    /// Schedules and inserts the connection a first packet opens, if it may open one.
    fn new_connection<A: Tables>(
        &mut self,
        proto: Proto,
        (src, sport): (A, u16),
        (dst, dport): (A, u16),
        flags: TcpFlags,
    ) -> Result<crate::conn::ConnId, DropReason> {
        let Self {
            dp,
            lb,
            stats,
            now_ms,
            ..
        } = self;
        let Some(svc) = dp.services.find(dst.into_ip(), dport, proto) else {
            return Err(match dp.local(dst.into_ip()) {
                Some(_) => DropReason::NoService,
                None => DropReason::NoConnection,
            });
        };
        // Only a SYN opens a TCP connection (IPVS: no state for a stray segment).
        if proto == Proto::Tcp && !is_opening_syn(proto, flags) {
            return Err(DropReason::TcpNoConnection);
        }
        lb.connect(
            svc,
            proto,
            Endpoint::new(src, sport),
            Endpoint::new(dst, dport),
            *now_ms,
            stats,
        )
    }

    /// An ICMP error quoting a packet of a connection: translated like the
    /// connection's packets in the error's direction, then forwarded.
    /// Returns the packet when it is about no connection of ours.
    fn icmp_error_input(
        &mut self,
        pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        flow: crate::forward::QuotedFlow,
    ) -> Option<P::Buf> {
        match (flow.src, flow.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.icmp_error_af(pkt, info, ip, &flow, s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.icmp_error_af(pkt, info, ip, &flow, s, d),
            _ => Some(pkt),
        }
    }

    fn icmp_error_af<A: Tables>(
        &mut self,
        mut pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        flow: &crate::forward::QuotedFlow,
        quoted_src: A,
        quoted_dst: A,
    ) -> Option<P::Buf> {
        // The quoted packet went one way; the error goes back the other way, so the
        // connection key of the error's direction is the quoted packet reversed.
        let key = FlowKey::new(flow.proto, quoted_dst, flow.dport, quoted_src, flow.sport);
        let Some((id, dir)) = self.lb.lookup(&key) else {
            return Some(pkt);
        };
        let Some(conn) = self.lb.get::<A>(id) else {
            return Some(pkt);
        };
        let e = endpoints(&conn);
        let Some((outer, inner, next_hop)) = icmp_error_action(conn.mode(), dir, &e) else {
            // DR/TUNNEL: an error from the client side goes to the server as is.
            match packet_action(conn.mode(), dir, &e) {
                Some(action) => self.forward(pkt, info, ip, flow.proto, action),
                None => self.discard(pkt, DropReason::NoConnection),
            }
            return None;
        };
        if let Err(reason) = translate_icmp_error(pkt.data_mut(), info, ip, &outer, &inner) {
            self.discard(pkt, reason);
            return None;
        }
        pkt.truncate(info.l3_end());
        self.route_out(pkt, next_hop);
        None
    }

    /// ARP: learn the sender (RFC 826: update a known entry; add it when the request
    /// is for us), answer requests for our addresses on this port.
    fn arp_input(&mut self, mut pkt: P::Buf, port: usize, info: &FrameInfo) {
        let l3 = usize::from(info.l3_offset);
        let Ok(arp) = ArpPacket::new_checked(&pkt.data()[l3..]) else {
            return self.discard(pkt, DropReason::TruncatedArp);
        };
        let (op, sha, spa, tpa) = (
            arp.operation(),
            arp.sender_hw_addr(),
            arp.sender_proto_addr(),
            arp.target_proto_addr(),
        );
        let target_is_ours = self
            .dp
            .local(IpAddr::V4(tpa))
            .is_some_and(|l| l.port == Some(port));
        let sender_on_link = self.dp.ifaces[port]
            .addrs
            .iter()
            .any(|a| a.contains(&IpAddr::V4(spa)));
        if !spa.is_unspecified() && sender_on_link && self.dp.local(IpAddr::V4(spa)).is_none() {
            self.learn_neighbor(IpAddr::V4(spa), sha, port, target_is_ours);
        }
        if op != ArpOperation::REQUEST {
            // The kernel interface resolves its own next hops (health checks).
            return if target_is_ours
                && self.dp.local(IpAddr::V4(tpa)).map(|l| l.kind) == Some(LocalKind::Interface)
            {
                self.pass_to_kernel(pkt, port, None)
            } else {
                self.consume(pkt)
            };
        }
        if !target_is_ours {
            return self.discard(pkt, DropReason::ArpNotForUs);
        }
        let mac = self.dp.ifaces[port].mac;
        if arp::reply_in_place(pkt.data_mut(), mac).is_err() {
            return self.discard(pkt, DropReason::TruncatedArp);
        }
        self.queue_tx(port, pkt);
    }

    /// ICMP echo request to one of our IPv4 addresses: answered in place and routed
    /// back like any packet we send.
    fn echo_reply_v4(&mut self, mut pkt: P::Buf, info: &FrameInfo) {
        pkt.truncate(info.l3_end());
        let l3 = usize::from(info.l3_offset);
        let Ok(mut ip) = Ipv4Packet::new_checked(&mut pkt.data_mut()[l3..]) else {
            return self.discard(pkt, DropReason::TruncatedIpv4);
        };
        let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
            return self.discard(pkt, DropReason::TruncatedL4);
        };
        if !icmp.verify_checksum() || icmp.make_echo_reply().is_err() {
            return self.discard(pkt, DropReason::BadIcmpChecksum);
        }
        ip.swap_addrs();
        ip.rewrite_ttl(REPLY_TTL);
        let dst = ip.dst_addr();
        self.route_out(pkt, IpAddr::V4(dst));
    }

    /// ICMPv6 echo request to one of our IPv6 addresses.
    fn echo_reply_v6(&mut self, mut pkt: P::Buf, info: &FrameInfo) {
        pkt.truncate(info.l3_end());
        let l3 = usize::from(info.l3_offset);
        let Ok(mut ip) = Ipv6Packet::new_checked(&mut pkt.data_mut()[l3..]) else {
            return self.discard(pkt, DropReason::TruncatedIpv6);
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(mut icmp) = Icmpv6Packet::new_checked(ip.payload_mut()) else {
            return self.discard(pkt, DropReason::TruncatedL4);
        };
        if !icmp.verify_checksum(src, dst) || icmp.make_echo_reply().is_err() {
            return self.discard(pkt, DropReason::BadIcmpChecksum);
        }
        // Swapping source and destination leaves the pseudo-header sum unchanged.
        ip.swap_addrs();
        ip.set_hop_limit(REPLY_TTL);
        self.route_out(pkt, IpAddr::V6(src));
    }

    /// Neighbour solicitation: learn the solicitor, answer for our own addresses.
    fn nd_solicit_input(&mut self, mut pkt: P::Buf, port: usize, info: &FrameInfo) {
        let l3 = usize::from(info.l3_offset);
        let ns = match Ipv6Packet::new_checked(&pkt.data()[l3..])
            .map(|ip| NeighborSolicit::parse(&ip))
        {
            Ok(Ok(ns)) => ns,
            _ => return self.discard(pkt, DropReason::BadNeighborDiscovery),
        };
        let requester = MacAddr(
            pkt.data()[ethernet::field::SRC]
                .try_into()
                .unwrap_or([0; 6]),
        );
        let target_is_ours = self
            .dp
            .local(IpAddr::V6(ns.target))
            .is_some_and(|l| l.port == Some(port));
        if let (false, Some(mac)) = (ns.source.is_unspecified(), ns.source_link_addr) {
            self.learn_neighbor(IpAddr::V6(ns.source), mac, port, target_is_ours);
        }
        if !target_is_ours {
            return self.discard(pkt, DropReason::NdNotForUs);
        }
        let mac = self.dp.ifaces[port].mac;
        if pkt.len() < ND_FRAME_LEN && pkt.append(ND_FRAME_LEN - pkt.len()).is_err() {
            return self.discard(pkt, DropReason::NoMbuf);
        }
        match icmpv6::emit_neighbor_advert(pkt.data_mut(), mac, &ns, requester) {
            Ok(len) => {
                pkt.truncate(len);
                self.queue_tx(port, pkt);
            }
            Err(_) => self.discard(pkt, DropReason::BadNeighborDiscovery),
        }
    }

    /// Neighbour advertisement: completes or refreshes a resolution.
    fn nd_advert_input(&mut self, pkt: P::Buf, port: usize, info: &FrameInfo) {
        let l3 = usize::from(info.l3_offset);
        let na =
            match Ipv6Packet::new_checked(&pkt.data()[l3..]).map(|ip| NeighborAdvert::parse(&ip)) {
                Ok(Ok(na)) => na,
                _ => return self.discard(pkt, DropReason::BadNeighborDiscovery),
            };
        if let Some(mac) = na.target_link_addr {
            self.learn_neighbor(IpAddr::V6(na.target), mac, port, false);
        }
        // Solicited answers to a port address may be the kernel interface's.
        let to_us = match Ipv6Packet::new_checked(&pkt.data()[l3..]) {
            Ok(ip) => {
                self.dp.local(IpAddr::V6(ip.dst_addr())).map(|l| l.kind)
                    == Some(LocalKind::Interface)
            }
            Err(_) => false,
        };
        if to_us {
            self.pass_to_kernel(pkt, port, None)
        } else {
            self.consume(pkt)
        }
    }

    /// Records a neighbour, releases the packets that waited for it and tells the
    /// management core (which shares it with the other workers).
    fn learn_neighbor(&mut self, ip: IpAddr, mac: MacAddr, port: usize, create: bool) {
        let Self {
            neigh,
            dp,
            tx,
            stats,
            garbage,
            now_ms,
            ..
        } = self;
        let learned = neigh.learn(ip, mac, port, *now_ms, create, |pkt, mac, port| {
            set_l2(dp, pkt, port, mac, tx, stats, garbage)
        });
        if matches!(learned, Learned::New | Learned::Changed) {
            // A full channel only delays the other workers' learning.
            let _ = self
                .events
                .try_send(WorkerEvent::NeighborLearned { ip, mac, port });
        }
    }

    /// Sends an IP packet whose L3 header is final: route, resolve the next hop,
    /// write the Ethernet header, queue. A miss holds the packet while ARP/ND runs.
    fn route_out(&mut self, pkt: P::Buf, dst: IpAddr) {
        let Some(hop) = self.dp.routes.lookup(dst) else {
            return self.discard(pkt, DropReason::NoRoute);
        };
        let next = hop.neighbor(dst);
        match self.neigh.lookup(next, hop.port, self.now_ms) {
            Lookup::Known { mac, probe } => {
                if probe {
                    self.probe(next, hop.port);
                }
                let Self {
                    dp,
                    tx,
                    stats,
                    garbage,
                    ..
                } = self;
                set_l2(dp, pkt, hop.port, mac, tx, stats, garbage);
            }
            Lookup::Resolving { probe } => {
                if probe {
                    self.probe(next, hop.port);
                }
                if let Err(pkt) = self.neigh.hold(next, pkt, self.now_ms) {
                    self.discard(pkt, DropReason::NeighborQueueFull);
                }
            }
            Lookup::Busy => self.discard(pkt, DropReason::NeighborBusy),
        }
    }

    fn probe(&mut self, ip: IpAddr, port: usize) {
        let Self {
            dp,
            pool,
            stats,
            tx,
            ..
        } = self;
        send_probe(dp, pool, stats, tx, ip, port);
    }

    fn queue_tx(&mut self, port: usize, pkt: P::Buf) {
        let q = &mut self.tx[port];
        if q.len() < q.capacity() {
            q.push(pkt);
        } else {
            self.discard(pkt, DropReason::TxFull);
        }
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

/// A connection's endpoints for the forwarding module.
#[inline]
fn endpoints<A: Family>(c: &Conn<A>) -> Endpoints {
    let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
    Endpoints {
        client: ep(c.client()),
        vip: ep(c.vip()),
        local: ep(c.local()),
        real: ep(c.real()),
    }
}

/// A segment that may open a TCP connection: SYN without ACK, RST or FIN.
#[inline]
fn is_opening_syn(proto: Proto, flags: TcpFlags) -> bool {
    proto == Proto::Tcp
        && flags.contains(TcpFlags::SYN)
        && !flags.intersects(TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN)
}

/// Whether an IPv6 packet to a multicast group is neighbour discovery.
fn is_nd(ip: &IpInfo) -> bool {
    matches!(
        ip.l4.map(|l4| l4.header),
        Some(L4Header::Icmpv6 {
            msg_type: Icmpv6Type::NEIGHBOR_SOLICIT | Icmpv6Type::NEIGHBOR_ADVERT,
            ..
        })
    )
}

/// Writes the Ethernet addresses for `port` and queues the packet there.
fn set_l2<B: PacketBuf>(
    dp: &Dataplane,
    mut pkt: B,
    port: usize,
    dst_mac: MacAddr,
    tx: &mut [Vec<B>],
    stats: &WorkerStats,
    garbage: &mut Vec<B>,
) {
    let data = pkt.data_mut();
    data[ethernet::field::DST].copy_from_slice(&dst_mac.0);
    data[ethernet::field::SRC].copy_from_slice(&dp.ifaces[port].mac.0);
    let q = &mut tx[port];
    if q.len() < q.capacity() {
        q.push(pkt);
    } else {
        stats.count_drop(DropReason::TxFull, 1);
        if garbage.len() < garbage.capacity() {
            garbage.push(pkt);
        }
    }
}

/// Builds an ARP request (IPv4) or neighbour solicitation (IPv6) for `ip` out of
/// `port` and queues it.
fn send_probe<P: PacketPool>(
    dp: &Dataplane,
    pool: &P,
    stats: &WorkerStats,
    tx: &mut [Vec<P::Buf>],
    ip: IpAddr,
    port: usize,
) {
    let Some(src) = dp.source_for(port, ip) else {
        stats.count_drop(DropReason::NoSourceAddress, 1);
        return;
    };
    let Some(mut pkt) = pool.alloc() else {
        stats.count_drop(DropReason::NoMbuf, 1);
        return;
    };
    let mac = dp.ifaces[port].mac;
    let built = match (src, ip) {
        (IpAddr::V4(src), IpAddr::V4(target)) => build_arp_request(&mut pkt, mac, src, target),
        (IpAddr::V6(src), IpAddr::V6(target)) => build_nd_solicit(&mut pkt, mac, src, target),
        _ => false,
    };
    let q = &mut tx[port];
    if built && q.len() < q.capacity() {
        q.push(pkt);
    } else {
        stats.count_drop(DropReason::TxFull, 1);
    }
}

fn build_arp_request<B: PacketBuf>(
    pkt: &mut B,
    mac: MacAddr,
    src: Ipv4Addr,
    target: Ipv4Addr,
) -> bool {
    if pkt.append(MIN_FRAME).is_err() {
        return false;
    }
    let data = pkt.data_mut();
    data.fill(0);
    arp::emit_request(data, mac, src, target).is_ok()
}

fn build_nd_solicit<B: PacketBuf>(
    pkt: &mut B,
    mac: MacAddr,
    src: Ipv6Addr,
    target: Ipv6Addr,
) -> bool {
    if pkt.append(ND_FRAME_LEN).is_err() {
        return false;
    }
    match icmpv6::emit_neighbor_solicit(pkt.data_mut(), mac, src, target) {
        Ok(len) => {
            pkt.truncate(len);
            true
        }
        Err(_) => false,
    }
}

mod burst;

#[cfg(test)]
mod tests;
