//! The burst path: a received burst goes through in stages, so that the cache
//! misses of its packets overlap instead of following one another.
//!
//! 1. Prefetch every packet's first data line; classify each with
//!    [`parse_ipv4_flow`] (untagged IPv4 TCP/UDP to this port's MAC), hash its flow
//!    key and request the connection table's bucket its record is in (see
//!    `conn::records`): the one line of the table an established packet reads.
//! 2. With those lines arriving, look for each packet's record in its home
//!    bucket, for the whole batch before any packet is handled; for a key not
//!    there (one that spilled, a few percent at the load the bench runs at, or a
//!    new flow) the bucket's overflow byte and the next bucket are requested now,
//!    each otherwise a miss of its own in stage 3.
//! 3. In arrival order, forward packets of established connections right here
//!    ([`Pipeline::forward_v4`]); every other packet (ARP, ICMP, IPv6, anything
//!    malformed) takes [`Pipeline::process`]'s path, which also owns every drop
//!    reason. A packet that opens a connection is scheduled here and set aside
//!    with its table lines requested ([`Pipeline::open_v4`]), and so is a later
//!    packet of a flow the batch opens.
//! 4. The connections set aside are inserted and their packets forwarded, in
//!    arrival order ([`Pipeline::open_parked`]): a new connection's buckets
//!    (its outbound key's has never been read) arrive while the rest of the batch
//!    is handled, instead of stalling it one connection at a time. A connection
//!    is inserted in the state its first packet leaves it in, so that packet is
//!    only forwarded.
//!
//! So a batch's new connections go out after its established packets; within a
//! flow the order is kept. When the ordinary path finds no connection for an IPv4
//! packet of the batch (a packet of a new flow with IP options, a reply, an ICMP
//! error), the connections set aside so far are inserted first
//! ([`Pipeline::settle_parked`]): in arrival order they exist by then.
//!
//! Per packet, stage 3 does what `flow_input_af` and `forward` do for an
//! established flow, in the same order and with the same counters, minus the work
//! that cannot change the outcome for such a packet: the full parse, the own-address
//! map, the address-family erasure of the action, and (through [`HopCache`]) the
//! neighbour lookup. A hit in this worker's table also means this worker owns the
//! connection: it created it for a packet steered to it, and both directions'
//! packets steer by the same port (see `steer`).

use super::balancer::Opening;
use super::hops::{Hop, L2Addrs};
use super::*;
use crate::conn::{Clock, ConnId, Lane, Record, RecordPos};
use crate::conn::{Dir, Endpoint, FlowKey, Proto};
use crate::forward::ActionV4;
use crate::forward::{encapsulate_ipip, ipip_outer, packet_action_v4, translate_v4};
use crate::forward::{tunnel_target_v4, TunnelError};
use crate::packet::{ethernet, PacketBuf};
use crate::packet::{parse_ipv4_flow, Ipv4Flow};
use crate::stats::DropReason;
use std::net::{IpAddr, Ipv4Addr};

/// Packets staged together. Enough to cover a memory access with the work of the
/// others; small enough to keep what was prefetched in L1.
pub(super) const BATCH: usize = 32;

/// The ports' own IPv4 addresses, asked about every packet of the burst path: a
/// 64-bit filter on the addresses' low six bits answers most questions (a
/// VIP is rarely also a port address) without walking the list.
#[derive(Default)]
pub(super) struct OwnAddrsV4 {
    addrs: Vec<Ipv4Addr>,
    filter: u64,
}

impl OwnAddrsV4 {
    pub(super) fn new(addrs: Vec<Ipv4Addr>) -> Self {
        let filter = addrs.iter().fold(0, |f, &a| f | Self::bit(a));
        OwnAddrsV4 { addrs, filter }
    }

    #[inline(always)]
    fn bit(addr: Ipv4Addr) -> u64 {
        1 << (u32::from(addr) & 63)
    }

    #[inline(always)]
    pub(super) fn contains(&self, addr: &Ipv4Addr) -> bool {
        self.filter & Self::bit(*addr) != 0 && self.addrs.contains(addr)
    }
}

/// What stage 1 learned of a packet.
#[derive(Clone, Copy)]
struct Staged {
    /// The packet in the burst path's shape, or None for the ordinary path.
    flow: Option<Ipv4Flow>,
    /// The hash of its flow key under the IPv4 table's hasher.
    hash: u64,
    /// Where stage 2 found its record in its home bucket: right while the
    /// table's records version is still the one stage 2 read for the batch.
    at_home: Option<RecordPos>,
}

/// A packet of the batch set aside until its connection is inserted (stage 4).
pub(super) struct Parked<B> {
    pkt: B,
    flow: Ipv4Flow,
    hash: u64,
    /// The connection it opens; None for a later packet of a flow that another
    /// parked packet opens.
    opening: Option<Opening<Ipv4Addr>>,
}

/// The packets stage 3 set aside, in arrival order, with a one-word filter of
/// the flows they open so that a packet of another flow (every packet of a SYN
/// flood) is not compared with each of them.
pub(super) struct ParkingLot<B> {
    packets: Vec<Parked<B>>,
    /// Bit `hash >> 58` set for each flow opened here.
    opened: u64,
}

impl<B> ParkingLot<B> {
    pub(super) fn new() -> Self {
        Self {
            packets: Vec::with_capacity(BATCH),
            opened: 0,
        }
    }

    fn has_room(&self) -> bool {
        self.packets.len() < self.packets.capacity()
    }

    /// Whether a packet set aside here opens the connection of `key`.
    fn opens(&self, hash: u64, key: &FlowKey<Ipv4Addr>) -> bool {
        self.opened & filter_bit(hash) != 0
            && self
                .packets
                .iter()
                .any(|p| p.opening.is_some() && p.hash == hash && key_of(&p.flow) == *key)
    }

    #[inline(always)]
    fn park(&mut self, parked: Parked<B>) {
        if parked.opening.is_some() {
            self.opened |= filter_bit(parked.hash);
        }
        self.packets.push(parked);
    }
}

#[inline(always)]
fn filter_bit(hash: u64) -> u64 {
    1 << (hash >> 58)
}

const ORDINARY: Staged = Staged {
    flow: None,
    hash: 0,
    at_home: None,
};

/// What the TUNNEL path takes of a record: the real server's counter slot and the
/// direction, and the real server packets are encapsulated to.
#[inline(always)]
fn tunnel_fields(record: &Record<Ipv4Addr>) -> ((u16, Dir), Option<Ipv4Addr>) {
    (
        (record.real_server(), record.dir()),
        tunnel_target_v4(record),
    )
}

#[inline(always)]
fn key_of(flow: &Ipv4Flow) -> FlowKey<Ipv4Addr> {
    FlowKey::new(flow.proto, flow.src, flow.src_port, flow.dst, flow.dst_port)
}

impl<P: PacketPool> Pipeline<P> {
    /// Runs a burst received on `port` through the pipeline and empties `pkts`.
    /// Each packet ends exactly as [`Pipeline::process`] would leave it, in the
    /// same order; established IPv4 flows just get there faster.
    pub fn process_burst(&mut self, pkts: &mut Vec<P::Buf>, port: usize) {
        self.stats.rx_packets.add(pkts.len() as u64);
        let mac = self.dp.ifaces[port].mac;
        let nic_checks_ipv4 = self.rx_ipv4_checksum_offload[port];
        // A frame whose tag the NIC took belongs to a VLAN (or is priority
        // tagged): the ordinary path finds its interface.
        let nic_strips_vlan = self.rx_vlan_strip[port];
        while !pkts.is_empty() {
            let n = pkts.len().min(BATCH);
            let mut staged = [ORDINARY; BATCH];
            for pkt in &pkts[..n] {
                pkt.prefetch_data();
            }
            let table = self.lb.conns::<Ipv4Addr>();
            for (pkt, s) in pkts[..n].iter().zip(&mut staged) {
                let data = pkt.data();
                if data.get(ethernet::field::DST) != Some(&mac.0[..])
                    || (nic_strips_vlan && pkt.rx_vlan_tci().is_some())
                {
                    continue;
                }
                let verified = nic_checks_ipv4 && pkt.ipv4_checksum_verified();
                let Some(flow) = parse_ipv4_flow(data, verified) else {
                    continue;
                };
                let hash = table.hasher().hash(&key_of(&flow));
                table.request_record(hash);
                *s = Staged {
                    flow: Some(flow),
                    hash,
                    at_home: None,
                };
            }
            let version = table.records_version();
            for s in &mut staged[..n] {
                if let Some(flow) = &s.flow {
                    s.at_home = table.record_at_home(&key_of(flow), s.hash);
                }
            }
            let clock = self.lb.clock::<Ipv4Addr>(self.now_ms);
            for (pkt, s) in pkts.drain(..n).zip(&staged) {
                match &s.flow {
                    Some(flow) => self.flow_v4(pkt, port, flow, s, version, clock, true),
                    None => self.receive(pkt, port),
                }
            }
            self.open_parked(port);
        }
    }

    /// Stage 4: inserts the connections stage 3 scheduled and forwards their
    /// packets, each followed by the later packets of its flow.
    #[inline(never)]
    fn open_parked(&mut self, port: usize) {
        if self.parked.packets.is_empty() {
            return;
        }
        // Taken out and put back, capacity and all: nothing allocates.
        let mut parked = std::mem::take(&mut self.parked.packets);
        self.parked.opened = 0;
        let clock = self.lb.clock::<Ipv4Addr>(self.now_ms);
        for p in parked.drain(..) {
            match p.opening {
                Some(opening) => match self.lb.connect_finish(&opening, self.now_ms, &self.stats) {
                    Ok(id) => self.forward_opened_v4(p.pkt, &p.flow, id),
                    Err(reason) => self.discard(p.pkt, reason),
                },
                // Its flow's connection exists now (or failed to open: then this
                // packet tries afresh, as it would have in arrival order).
                None => {
                    let staged = Staged {
                        flow: Some(p.flow),
                        hash: p.hash,
                        at_home: None,
                    };
                    self.flow_v4(p.pkt, port, &p.flow, &staged, 0, clock, false);
                }
            }
        }
        self.parked.packets = parked;
    }

    /// Stage 4 ahead of time, for the ordinary path about to decide that an IPv4
    /// packet of the batch matches no connection: the connections set aside so
    /// far are inserted (and their packets sent) first, as they would be in
    /// arrival order. Whether there were any; outside a burst there never are.
    #[inline]
    pub(super) fn settle_parked(&mut self, port: usize) -> bool {
        if self.parked.packets.is_empty() {
            return false;
        }
        self.open_parked(port);
        true
    }

    /// A TCP/UDP packet in the burst path's shape: forwarded here when it belongs
    /// to an established connection or opens one (set aside for stage 4 when
    /// `park`); anything else goes to the ordinary path untouched. `version`: the
    /// table's records version `staged.at_home` was found under; `clock`: the
    /// table's clock at the burst's time.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn flow_v4(
        &mut self,
        pkt: P::Buf,
        port: usize,
        flow: &Ipv4Flow,
        staged: &Staged,
        version: u32,
        clock: Clock,
        park: bool,
    ) {
        let proto = flow.proto;
        let flags = flow.tcp_flags;
        // TCP/UDP to a port's own address is not forwarded; nonsense flags are
        // dropped with their reason.
        if (proto == Proto::Tcp && flags.is_nonsense()) || self.iface_v4.contains(&flow.dst) {
            return self.handle(pkt, port, true);
        }
        let table = self.lb.conns::<Ipv4Addr>();
        let Some((pos, record)) = table
            .find_record_from(&key_of(flow), staged.hash, staged.at_home, version)
            .and_then(|pos| Some((pos, *table.record(pos)?)))
        else {
            return self.open_v4(pkt, port, flow, staged.hash, park);
        };
        // A client's SYN may reuse a closed connection's 5-tuple; a translated
        // connection's sequence numbers (and a NAT64 connection's addresses) are
        // rewritten on the ordinary path, which keeps this lane as it was for
        // every other connection.
        if record.dir() == Dir::Inbound && is_opening_syn(proto, flags) {
            return self.handle(pkt, port, true);
        }
        match record.lane() {
            Lane::Nat | Lane::FullNat | Lane::Dr => self.forward_v4(pkt, flow, pos, &record, clock),
            // Fields, not the record: a reference would keep the record in memory
            // for the other lanes too, instead of in registers.
            Lane::Tunnel => {
                let (counted, target) = tunnel_fields(&record);
                self.tunnel_v4(pkt, flow, pos, counted, target, clock)
            }
            Lane::Ordinary => self.handle(pkt, port, true),
        }
    }

    /// The first packet of a flow, as `flow_input_af` handles a miss: a new
    /// connection to the service on the destination, if its source is admitted
    /// (`ingress`: neither martian nor ours, through the port's reverse-path
    /// filter) and it may open one. Left to the ordinary path: several workers
    /// (the packet may belong to another one) and no service (the path names the
    /// drop reason).
    ///
    /// With `park`, the connection is scheduled and the packet set aside for
    /// stage 4 to insert and forward; so is a later packet of a flow already set
    /// aside (it would have found the connection in arrival order).
    // Out of line: kept out of the established path, which inlines `flow_v4`.
    #[inline(never)]
    fn open_v4(&mut self, pkt: P::Buf, port: usize, flow: &Ipv4Flow, hash: u64, park: bool) {
        if self.workers > 1 {
            return self.handle(pkt, port, true);
        }
        // What the ordinary path checks first (`screen`) and at the miss
        // (`new_connection`), in that order.
        let src = IpAddr::V4(flow.src);
        if self.is_martian(src, IpAddr::V4(flow.dst)) {
            return self.discard(pkt, DropReason::MartianSource);
        }
        if let Err(reason) = self.admit_source(src, port) {
            return self.discard(pkt, reason);
        }
        let proto = flow.proto;
        let Self {
            dp,
            lb,
            stats,
            now_ms,
            parked,
            ..
        } = self;
        // A translated connection starts on the ordinary path, which reads the
        // SYN's options; so does a datagram to an `ops` service, which opens none.
        let svc = match dp.services.find(IpAddr::V4(flow.dst), flow.dst_port, proto) {
            // So does every TCP flow while `syn_proxy_above` may proxy it: the
            // switch counts its SYNs there.
            Some(svc)
                if !(svc.translates()
                    || svc.ops
                    || (dp.syn_proxy_above > 0 && svc.syn_proxy_capable())) =>
            {
                svc
            }
            _ => return self.handle(pkt, port, true),
        };
        // Room is certain (one entry per packet of a batch); without it, no parking.
        let park = park && parked.has_room();
        if park && parked.opens(hash, &key_of(flow)) {
            parked.park(Parked {
                pkt,
                flow: *flow,
                hash,
                opening: None,
            });
            return;
        }
        if !may_open(svc, proto, flow.tcp_flags) {
            return self.discard(pkt, DropReason::TcpNoConnection);
        }
        if Self::acl_admits(svc, src).is_err() {
            // Refused, perhaps with a reset: the ordinary path answers.
            return self.handle(pkt, port, true);
        }
        let client = Endpoint::new(flow.src, flow.src_port);
        let vip = Endpoint::new(flow.dst, flow.dst_port);
        if park {
            let flags = Some(flow.tcp_flags.bits());
            match lb.connect_begin(svc, proto, client, vip, flags, *now_ms) {
                Ok(opening) => parked.park(Parked {
                    pkt,
                    flow: *flow,
                    hash,
                    opening: Some(opening),
                }),
                Err(reason) => self.discard(pkt, reason),
            }
            return;
        }
        match lb.connect(svc, proto, client, vip, *now_ms, stats) {
            Ok(id) => self.forward_new_v4(pkt, flow, id),
            Err(reason) => self.discard(pkt, reason),
        }
    }

    /// The first packet of connection `id`, just inserted: forwarded from its
    /// inbound record.
    fn forward_new_v4(&mut self, pkt: P::Buf, flow: &Ipv4Flow, id: ConnId) {
        let table = self.lb.conns::<Ipv4Addr>();
        match table
            .record_of(id, Dir::Inbound)
            .and_then(|pos| Some((pos, *table.record(pos)?)))
        {
            Some((pos, record)) => {
                let clock = self.lb.clock::<Ipv4Addr>(self.now_ms);
                if record.lane() == Lane::Tunnel {
                    let (counted, target) = tunnel_fields(&record);
                    return self.tunnel_v4(pkt, flow, pos, counted, target, clock);
                }
                self.forward_v4(pkt, flow, pos, &record, clock);
            }
            None => self.discard(pkt, DropReason::NoConnection),
        }
    }

    /// The first packet of connection `id`, inserted (by stage 4) in the state
    /// this packet leaves it in, with its deadline and counts: only forwarded.
    fn forward_opened_v4(&mut self, pkt: P::Buf, flow: &Ipv4Flow, id: ConnId) {
        let table = self.lb.conns::<Ipv4Addr>();
        match table
            .record_of(id, Dir::Inbound)
            .and_then(|pos| table.record(pos))
        {
            Some(&record) if record.lane() == Lane::Tunnel => {
                let (counted, target) = tunnel_fields(&record);
                self.send_tunnel_v4(pkt, flow, counted, target)
            }
            Some(&record) => self.send_v4_from_record(pkt, flow, &record),
            None => self.discard(pkt, DropReason::NoConnection),
        }
    }

    /// Accounts a packet to the connection whose record is at `pos` (state,
    /// counters), rewrites it for the connection's mode and sends it on:
    /// `flow_input_af` and `forward` in one. `record` is the copy of the record
    /// the lookup took, before the packet's state update (which changes none of
    /// the fields read here): a local copy's fields are decoded once for all
    /// their uses, where reading the record in the table again would decode
    /// them anew. `clock`: the table's, at the burst's time.
    #[inline(always)]
    fn forward_v4(
        &mut self,
        pkt: P::Buf,
        flow: &Ipv4Flow,
        pos: RecordPos,
        record: &Record<Ipv4Addr>,
        clock: Clock,
    ) {
        if !self
            .lb
            .on_packet_record::<Ipv4Addr>(pos, flow.tcp_flags.bits(), clock, &self.stats)
        {
            return self.discard(pkt, DropReason::NoConnection);
        }
        self.send_v4_from_record(pkt, flow, record);
    }

    /// Counts, rewrites and sends a packet as its connection's `record` says.
    #[inline(always)]
    fn send_v4_from_record(&mut self, mut pkt: P::Buf, flow: &Ipv4Flow, record: &Record<Ipv4Addr>) {
        let (dir, real_server) = (record.dir(), record.real_server());
        let action = packet_action_v4(record);
        let bytes = u64::from(flow.total_len);
        count_forwarded(&self.stats, real_server, dir, bytes);
        let (t, next_hop) = match action {
            Some(ActionV4::Translate { t, next_hop }) => (Some(t), next_hop),
            Some(ActionV4::Direct { next_hop }) => (None, next_hop),
            None => return self.discard(pkt, DropReason::NoConnection),
        };
        // Longer than the smallest MTU: the egress port's is looked up (`forward`).
        if flow.total_len > self.min_mtu {
            if let Some(mtu) = self.exceeded_mtu(usize::from(flow.total_len), IpAddr::V4(next_hop))
            {
                return self.refuse_too_big_v4(pkt, mtu);
            }
        }
        if let Some(t) = t {
            if let Err(reason) = translate_v4(pkt.data_mut(), flow, &t) {
                return self.discard(pkt, reason);
            }
        }
        pkt.truncate(flow.l3_end());
        // Inbound packets go to the real server.
        self.route_out_v4(pkt, next_hop, dir == Dir::Inbound);
    }

    /// [`Pipeline::forward_v4`] for a packet of a TUNNEL connection, whose record
    /// at `pos` names the real server's counter slot and the direction
    /// (`counted`) and the real server it is encapsulated to (`target`):
    /// accounted the same way, then encapsulated. Out of line: the other lanes'
    /// path stays as short as it was.
    #[inline(never)]
    fn tunnel_v4(
        &mut self,
        pkt: P::Buf,
        flow: &Ipv4Flow,
        pos: RecordPos,
        (real_server, dir): (u16, Dir),
        target: Option<Ipv4Addr>,
        clock: Clock,
    ) {
        if !self
            .lb
            .on_packet_record::<Ipv4Addr>(pos, flow.tcp_flags.bits(), clock, &self.stats)
        {
            return self.discard(pkt, DropReason::NoConnection);
        }
        self.send_tunnel_v4(pkt, flow, (real_server, dir), target);
    }

    /// Counts and encapsulates a packet of a TUNNEL connection, as
    /// [`Pipeline::send_v4_from_record`] does for the other lanes.
    fn send_tunnel_v4(
        &mut self,
        pkt: P::Buf,
        flow: &Ipv4Flow,
        (real_server, dir): (u16, Dir),
        target: Option<Ipv4Addr>,
    ) {
        count_forwarded(&self.stats, real_server, dir, u64::from(flow.total_len));
        match target {
            Some(rs) => self.encapsulate_v4(pkt, flow, rs),
            None => self.discard(pkt, DropReason::NoConnection),
        }
    }

    /// TUNNEL, as [`Pipeline::encapsulate`]: the packet wrapped in an outer header
    /// from our address on the egress port to real server `rs`, refused when it
    /// would not fit that port's MTU. The header and MTU come from
    /// [`TunnelOuters`](super::hops::TunnelOuters), made on a real server's first
    /// packet.
    #[inline(always)]
    fn encapsulate_v4(&mut self, mut pkt: P::Buf, flow: &Ipv4Flow, rs: Ipv4Addr) {
        let (outer, mtu) = match self.tunnel_outers.lookup(rs) {
            Some((outer, mtu)) => (*outer, mtu),
            None => match self.tunnel_source(IpAddr::V4(rs)) {
                Ok((IpAddr::V4(src), mtu)) => {
                    let outer = ipip_outer(src, rs);
                    self.tunnel_outers.put(rs, outer, mtu);
                    (outer, mtu)
                }
                // An IPv4 destination's source is IPv4 (`source_for`).
                Ok((IpAddr::V6(_), _)) => {
                    return self.refuse_encapsulation(pkt, None, TunnelError::FamilyMismatch)
                }
                Err(reason) => return self.discard(pkt, reason),
            },
        };
        let inner_len = usize::from(flow.total_len);
        match encapsulate_ipip(&mut pkt, ethernet::HEADER_LEN, inner_len, &outer, mtu) {
            Ok(()) => self.route_out_v4(pkt, rs, true),
            Err(e) => {
                // Only a packet too big needs the `FrameInfo` an ICMP error quotes
                // from, and that one is as it came: the full parser makes it.
                let info = parse_frame(pkt.data(), false).ok();
                self.refuse_encapsulation(pkt, info.as_ref(), e)
            }
        }
    }

    /// [`Pipeline::refuse_too_big`] for a packet of the burst path, which has no
    /// `FrameInfo`: the full parser, which accepts whatever the fast one does,
    /// makes one.
    #[cold]
    #[inline(never)]
    fn refuse_too_big_v4(&mut self, pkt: P::Buf, mtu: u16) {
        match parse_frame(pkt.data(), false) {
            Ok(info) => self.refuse_too_big(pkt, &info, mtu),
            Err(_) => self.discard(pkt, DropReason::MtuExceeded),
        }
    }

    /// [`Pipeline::route_out`] for IPv4, answered from the next-hop caches when
    /// they can. `to_real`: `dst` is a real server's address, whose route and next
    /// hop are cached together.
    #[inline(always)]
    fn route_out_v4(&mut self, pkt: P::Buf, dst: Ipv4Addr, to_real: bool) {
        let generation = self.neigh.generation();
        if to_real {
            if let Some(hop) = self.real_hops.lookup(dst, self.now_ms, generation) {
                let (port, l2) = (hop.port, hop.l2);
                return self.send_v4(pkt, port, &l2);
            }
        }
        let Some(route) = self.dp.routes.lookup_v4(dst) else {
            return self.discard(pkt, DropReason::NoRoute);
        };
        // A multipath route's next hop depends on the flow, not the destination.
        let multipath = route.group != 0;
        let route = self.choose_next_hop(route, pkt.data(), IpAddr::V4(dst));
        let next = match route.via {
            None => dst,
            Some(IpAddr::V4(via)) => via,
            Some(IpAddr::V6(_)) => return self.route_out(pkt, IpAddr::V4(dst)),
        };
        let hop = match self.hops.get(next, route.port, self.now_ms, generation) {
            Some(hop) => *hop,
            None => match self.neigh.fresh_until(IpAddr::V4(next), self.now_ms) {
                Some((mac, until)) => {
                    let ours = self.dp.ifaces[route.port].mac;
                    *self
                        .hops
                        .put(next, Hop::new(route.port, (mac, ours), until), generation)
                }
                // Unresolved or due for a refresh: the ordinary path probes and holds.
                None => return self.route_out(pkt, IpAddr::V4(dst)),
            },
        };
        if to_real && !multipath {
            // The route is the same until the next configuration, which clears this.
            self.real_hops.put(dst, hop, generation);
        }
        self.send_v4(pkt, hop.port, &hop.l2)
    }

    /// Writes the Ethernet addresses and queues the packet on interface `iface`.
    #[inline(always)]
    fn send_v4(&mut self, mut pkt: P::Buf, iface: usize, l2: &L2Addrs) {
        if let Some(addrs) = pkt.data_mut().first_chunk_mut::<12>() {
            *addrs = *l2;
        }
        let Self {
            tx, stats, garbage, ..
        } = self;
        tx.push(iface, pkt, |pkt, reason| {
            drop_into(stats, garbage, pkt, reason)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::OwnAddrsV4;
    use std::net::Ipv4Addr;

    #[test]
    fn own_addresses_answer_like_the_list() {
        let addrs: Vec<Ipv4Addr> = ["198.18.0.1", "198.19.0.1", "10.0.0.65", "10.0.0.200"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let own = OwnAddrsV4::new(addrs.clone());
        // Every address sharing low bits with a port address, and many that do not.
        for hi in [0u32, 0x0a00_0000, 0xc612_0000, 0xc613_0000, 0xffff_ff00] {
            for lo in 0..=255u32 {
                let a = Ipv4Addr::from(hi | lo);
                assert_eq!(own.contains(&a), addrs.contains(&a), "{a}");
            }
        }
        assert!(!OwnAddrsV4::default().contains(&Ipv4Addr::UNSPECIFIED));
    }
}
