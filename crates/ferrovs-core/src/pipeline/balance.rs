//! Load balancing: a TCP/UDP packet to a service or of a known connection is
//! looked up, scheduled when it opens a connection, counted, and forwarded in the
//! connection's mode (translated, sent on as it is, or encapsulated); ICMP errors
//! about a connection are translated like its packets.

use super::*;
use crate::conn::{Conn, Dir, Endpoint, Family, FlowKey, Proto};
use crate::forward::seq::QuotedSeq;
use crate::forward::{
    encapsulate, icmp_checksum_verifies, icmp_error_action, packet_action, translate,
    translate_icmp_error, Action, Endpoints, TunnelError,
};
use crate::packet::icmp::{emit_error, IcmpError};
use crate::packet::icmpv6;
use crate::packet::parse::{FrameInfo, IpInfo, L4Header};
use crate::packet::{ethernet, EtherType, IpPair, Ipv4Packet, PacketBuf, TcpFlags};
use crate::service::Service;
use crate::stats::DropReason;
use std::net::IpAddr;

impl<P: PacketPool> Pipeline<P> {
    /// TCP/UDP received on `port`: a packet of a known connection, or the first
    /// packet of a new one to a service, or nothing we forward.
    pub(super) fn flow_input(&mut self, pkt: P::Buf, port: usize, info: &FrameInfo, ip: &IpInfo) {
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
            IpPair::V4 { src, dst } => self.flow_input_af(
                pkt,
                port,
                info,
                ip,
                proto,
                (src, sport),
                (dst, dport),
                flags,
            ),
            IpPair::V6 { src, dst } => self.flow_input_af(
                pkt,
                port,
                info,
                ip,
                proto,
                (src, sport),
                (dst, dport),
                flags,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn flow_input_af<A: Tables>(
        &mut self,
        pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        proto: Proto,
        (src, sport): (A, u16),
        (dst, dport): (A, u16),
        flags: TcpFlags,
    ) {
        let key = FlowKey::new(proto, src, sport, dst, dport);
        let mut found = self.lb.lookup(&key);
        if found.is_none() && src.into_ip().is_ipv4() && self.settle_parked(port) {
            found = self.lb.lookup(&key);
        }
        let hit = match found {
            Some((id, Dir::Inbound))
                if is_opening_syn(proto, flags)
                    && self.lb.reuse_closed::<A>(id, self.now_ms, &self.stats) =>
            {
                None
            }
            hit => hit,
        };
        // NAT64: an IPv4 reply of an IPv6 connection (`nat64`).
        let pkt = match (hit, src.into_ip(), dst.into_ip()) {
            (None, IpAddr::V4(s), IpAddr::V4(d)) if self.lb.nat64() => {
                let key = FlowKey::new(proto, s, sport, d, dport);
                match self.nat64_reply(pkt, info, ip, key, flags) {
                    Some(pkt) => pkt,
                    None => return,
                }
            }
            _ => pkt,
        };
        // One-packet scheduling (`ops`): no connection to find or open.
        let pkt = match hit {
            None if proto == Proto::Udp && self.dp.services.any_ops() => {
                let flow = ((src.into_ip(), sport), (dst.into_ip(), dport));
                match self.ops_input(pkt, port, info, ip, flow.0, flow.1) {
                    Some(pkt) => pkt,
                    None => return,
                }
            }
            _ => pkt,
        };
        // SYN proxy: a SYN answered with a cookie, an ACK opening with one.
        let pkt = match hit {
            None if proto == Proto::Tcp => {
                match self.syn_proxy_input(pkt, port, info, ip, (src, sport), (dst, dport), flags) {
                    Some(pkt) => pkt,
                    None => return,
                }
            }
            _ => pkt,
        };
        let (id, dir) = match hit {
            Some(hit) => hit,
            None => match self.new_connection(port, proto, (src, sport), (dst, dport), flags) {
                Ok(id) => {
                    if is_opening_syn(proto, flags) {
                        self.syn.count_syn();
                    }
                    if proto == Proto::Tcp
                        && self.lb.conns::<A>().translates()
                        && !self.lb.get::<A>(id).is_some_and(|c| c.is_nat64())
                    {
                        self.start_translation::<A>(id, &pkt, ip);
                    }
                    (id, Dir::Inbound)
                }
                Err(reason) => return self.refuse(pkt, info, ip, reason),
            },
        };
        let Some(conn) = self
            .lb
            .on_packet::<A>(id, dir, flags.bits(), self.now_ms, &self.stats)
        else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        let bytes = (info.l3_end() - usize::from(info.l3_offset)) as u64;
        count_forwarded(&self.stats, conn.real_server(), dir, bytes);
        let Some(action) = packet_action(conn.mode(), dir, &endpoints(&conn)) else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        if ip.fragment {
            // A first fragment: its datagram's later fragments follow its verdict.
            let (rs, data, xlate) = (conn.real_server(), pkt.data(), conn.xlate() != 0);
            if let Err(reason) = self.remember_fragment(data, info, ip, action, (rs, dir), xlate) {
                return self.discard(pkt, reason);
            }
        }
        if conn.xlate() != 0 {
            if conn.is_nat64() {
                return self.nat64_forward_conn(pkt, info, ip, proto, &conn, dir);
            }
            return self.forward_translated::<A>(pkt, info, ip, action, id, dir);
        }
        self.forward(pkt, info, ip, proto, action);
    }

    /// Carries out a forwarding action on a packet of a connection. A packet too
    /// big for its egress port is refused before it is rewritten, so that the
    /// error its sender gets quotes the packet as sent.
    #[inline]
    pub(super) fn forward(
        &mut self,
        mut pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        proto: Proto,
        action: Action,
    ) {
        let len = info.l3_end() - usize::from(info.l3_offset);
        match action {
            Action::Translate { t, next_hop } => {
                if let Some(mtu) = self.exceeded_mtu(len, next_hop) {
                    return self.refuse_too_big(pkt, info, mtu);
                }
                if let Err(reason) = translate(pkt.data_mut(), info, ip, proto, &t) {
                    return self.discard(pkt, reason);
                }
                pkt.truncate(info.l3_end());
                self.route_out(pkt, next_hop);
            }
            Action::Direct { next_hop } => {
                if let Some(mtu) = self.exceeded_mtu(len, next_hop) {
                    return self.refuse_too_big(pkt, info, mtu);
                }
                pkt.truncate(info.l3_end());
                self.route_out(pkt, next_hop);
            }
            Action::Encapsulate { next_hop } => self.encapsulate(pkt, info, next_hop),
        }
    }

    /// The MTU of the port a `len`-byte IP packet towards `next_hop` leaves by,
    /// when the packet exceeds it. Only a packet longer than the smallest MTU has
    /// its route looked up; without a route, the caller's send reports it.
    #[inline]
    pub(super) fn exceeded_mtu(&self, len: usize, next_hop: IpAddr) -> Option<u16> {
        if len <= usize::from(self.min_mtu) {
            return None;
        }
        self.egress_mtu_below(len, next_hop)
    }

    #[inline(never)]
    fn egress_mtu_below(&self, len: usize, next_hop: IpAddr) -> Option<u16> {
        let hop = self.dp.routes.lookup(next_hop)?;
        // A multipath route's packets may leave by any of its next hops' ports.
        let routes = &self.dp.routes;
        let mtu = routes
            .next_hops(&hop)
            .iter()
            .map(|h| self.dp.ifaces[h.port].mtu)
            .min()?;
        (len > usize::from(mtu)).then_some(mtu)
    }

    /// Drops a forwarded packet that does not fit the egress `mtu`, counted as
    /// `mtu_exceeded`; with DF set (always for IPv6) its sender learns the MTU that
    /// fits. ferrovs never fragments.
    #[cold]
    pub(super) fn refuse_too_big(&mut self, pkt: P::Buf, info: &FrameInfo, mtu: u16) {
        let l3 = usize::from(info.l3_offset);
        let dont_fragment = match info.ip().map(|ip| ip.addrs) {
            Some(IpPair::V4 { .. }) => pkt
                .data()
                .get(l3..)
                .and_then(|h| Ipv4Packet::new_checked_quoted(h).ok())
                .is_some_and(|h| h.dont_fragment()),
            Some(IpPair::V6 { .. }) => true,
            None => false,
        };
        if dont_fragment {
            self.send_too_big(&pkt, info, mtu);
        }
        self.discard(pkt, DropReason::MtuExceeded);
    }

    /// TUNNEL: wraps the packet in an outer header from our address on the egress
    /// port to the real server. A packet that would not fit the egress MTU is
    /// refused; with DF (or IPv6) its sender learns the MTU that fits.
    pub(super) fn encapsulate(&mut self, mut pkt: P::Buf, info: &FrameInfo, rs: IpAddr) {
        let (src, mtu) = match self.tunnel_source(rs) {
            Ok(found) => found,
            Err(reason) => return self.discard(pkt, reason),
        };
        match encapsulate(&mut pkt, info, src, rs, mtu) {
            Ok(()) => self.route_out(pkt, rs),
            Err(e) => self.refuse_encapsulation(pkt, Some(info), e),
        }
    }

    /// A TUNNEL packet's outer source towards real server `rs` (our address on
    /// the port its route leaves by) and that port's MTU.
    #[inline]
    pub(super) fn tunnel_source(&self, rs: IpAddr) -> Result<(IpAddr, u16), DropReason> {
        let hop = self.dp.routes.lookup(rs).ok_or(DropReason::NoRoute)?;
        let src = self
            .dp
            .source_for(hop.port, rs)
            .ok_or(DropReason::NoSourceAddress)?;
        Ok((src, self.dp.ifaces[hop.port].mtu))
    }

    /// Drops a packet that could not be encapsulated, counted by why; one too big
    /// with DF (or IPv6) tells its sender the MTU that fits, given the packet's
    /// `info`.
    #[cold]
    pub(super) fn refuse_encapsulation(
        &mut self,
        pkt: P::Buf,
        info: Option<&FrameInfo>,
        e: TunnelError,
    ) {
        match e {
            TunnelError::FragmentationNeeded { mtu } => {
                if let Some(info) = info {
                    self.send_too_big(&pkt, info, mtu);
                }
                self.discard(pkt, DropReason::MtuExceeded);
            }
            TunnelError::TooBig => self.discard(pkt, DropReason::MtuExceeded),
            TunnelError::NoRoom | TunnelError::FamilyMismatch => {
                self.discard(pkt, DropReason::NoMbuf)
            }
        }
    }

    /// Tells the sender of `offending` that only `mtu` bytes fit: ICMP
    /// fragmentation needed (IPv4) or ICMPv6 packet too big, from our address
    /// towards it.
    pub(super) fn send_too_big(&mut self, offending: &P::Buf, info: &FrameInfo, mtu: u16) {
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

    /// Schedules and inserts the connection a first packet, received on `port`,
    /// opens, if it may open one: its source must be admitted (`ingress`) first.
    pub(super) fn new_connection<A: Tables>(
        &mut self,
        port: usize,
        proto: Proto,
        (src, sport): (A, u16),
        (dst, dport): (A, u16),
        flags: TcpFlags,
    ) -> Result<crate::conn::ConnId, DropReason> {
        self.admit_source(src.into_ip(), port)?;
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
        if !may_open(svc, proto, flags) {
            return Err(DropReason::TcpNoConnection);
        }
        Self::acl_admits(svc, src.into_ip())?;
        lb.connect(
            svc,
            proto,
            Endpoint::new(src, sport),
            Endpoint::new(dst, dport),
            *now_ms,
            stats,
        )
    }

    /// An ICMP error received on `port` quoting a packet of a connection: checked,
    /// translated like the connection's packets in the error's direction, then
    /// forwarded. Returns the packet when it is about no connection of ours.
    pub(super) fn icmp_error_input(
        &mut self,
        pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        flow: crate::forward::QuotedFlow,
    ) -> Option<P::Buf> {
        match (flow.src, flow.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.icmp_error_af(pkt, port, info, ip, &flow, s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.icmp_error_af(pkt, port, info, ip, &flow, s, d),
            _ => Some(pkt),
        }
    }

    /// [`Pipeline::icmp_error_input`] for one family. Before anything is rewritten
    /// the error must be one its quoted packet could have caused: a valid ICMP
    /// checksum (the translation writes a fresh one, which would launder a
    /// corrupted message), addressed to the quoted packet's source (the client in
    /// NAT, else a VIP or local address of ours), from a source that is not ours
    /// and passes the port's reverse-path filter.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn icmp_error_af<A: Tables>(
        &mut self,
        mut pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        flow: &crate::forward::QuotedFlow,
        quoted_src: A,
        quoted_dst: A,
    ) -> Option<P::Buf> {
        // The quoted packet went one way; the error goes back the other way, so the
        // connection key of the error's direction is the quoted packet reversed.
        let key = FlowKey::new(flow.proto, quoted_dst, flow.dport, quoted_src, flow.sport);
        let mut found = self.lb.lookup(&key);
        if found.is_none() && flow.src.is_ipv4() && self.settle_parked(port) {
            found = self.lb.lookup(&key);
        }
        let Some((id, dir)) = found else {
            // NAT64: an ICMPv4 error about an IPv6 connection's packet.
            if self.lb.nat64() && flow.src.is_ipv4() {
                return self.nat64_error_from_server(pkt, port, info, ip, flow);
            }
            return Some(pkt);
        };
        let Some(conn) = self.lb.get::<A>(id) else {
            return Some(pkt);
        };
        let verdict = if !icmp_checksum_verifies(pkt.data(), info, ip) {
            Err(DropReason::BadIcmpChecksum)
        } else if ip.addrs.dst() != flow.src {
            Err(DropReason::IcmpErrorBadDestination)
        } else {
            self.admit_source(ip.addrs.src(), port)
        };
        if let Err(reason) = verdict {
            self.discard(pkt, reason);
            return None;
        }
        if conn.is_nat64() {
            self.nat64_error_to_server(pkt, info, ip, &endpoints(&conn), dir);
            return None;
        }
        let e = endpoints(&conn);
        let Some((outer, inner, next_hop)) = icmp_error_action(conn.mode(), dir, &e) else {
            // DR/TUNNEL: an error from the client side goes to the server as is.
            match packet_action(conn.mode(), dir, &e) {
                Some(action) => self.forward(pkt, info, ip, flow.proto, action),
                None => self.discard(pkt, DropReason::NoConnection),
            }
            return None;
        };
        // Never answered with "fragmentation needed": no ICMP error about one.
        let len = info.l3_end() - usize::from(info.l3_offset);
        if self.exceeded_mtu(len, next_hop).is_some() {
            self.discard(pkt, DropReason::MtuExceeded);
            return None;
        }
        // The quoted segment went the other way, translated as it went.
        let quoted_dir = match dir {
            Dir::Inbound => Dir::Outbound,
            Dir::Outbound => Dir::Inbound,
        };
        let seq = (conn.xlate() != 0)
            .then(|| self.lb.translation::<A>(id))
            .flatten()
            .map(|adj| QuotedSeq::new(adj, quoted_dir));
        if let Err(reason) =
            translate_icmp_error(pkt.data_mut(), info, ip, &outer, &inner, seq.as_ref())
        {
            self.discard(pkt, reason);
            return None;
        }
        pkt.truncate(info.l3_end());
        self.route_out(pkt, next_hop);
        None
    }
}

/// A connection's endpoints for the forwarding module.
#[inline]
pub(super) fn endpoints<A: Family>(c: &Conn<A>) -> Endpoints {
    let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
    Endpoints {
        client: ep(c.client()),
        vip: ep(c.vip()),
        local: ep(c.local()),
        real: ep(c.real()),
    }
}

/// Whether a packet that matches no connection may open one to `svc`: any UDP
/// datagram; a TCP SYN (IPVS: no state for a stray segment), or with `sloppy` any
/// segment but a RST (IPVS `sloppy_tcp`: a flow another instance carried so far
/// continues here, in the state its packets show).
#[inline]
pub(super) fn may_open(svc: &Service, proto: Proto, flags: TcpFlags) -> bool {
    proto != Proto::Tcp
        || is_opening_syn(proto, flags)
        || (svc.sloppy && !flags.contains(TcpFlags::RST))
}

/// A segment that may open a TCP connection: SYN without ACK, RST or FIN.
#[inline]
pub(super) fn is_opening_syn(proto: Proto, flags: TcpFlags) -> bool {
    proto == Proto::Tcp
        && flags.contains(TcpFlags::SYN)
        && !flags.intersects(TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN)
}
