//! NAT64 in the pipeline (`forward::nat64` translates): where the packets of a
//! NAT64 connection, and the ICMP errors about it, are found and sent.
//!
//! A NAT64 connection lives in the IPv6 table: its inbound key is the client's
//! IPv6 5-tuple, its outbound key the real server's IPv4 5-tuple with both
//! addresses IPv4-mapped (`::ffff:a.b.c.d`), which no packet on the wire carries
//! (an IPv6 packet with a mapped source is dropped as martian at ingress). The
//! connection entry carries `xlate::flag::NAT64`, so that its IPv6 packets leave
//! the ordinary path at the test of translated connections that every
//! connection's packet makes anyway; an IPv4 packet that matches no IPv4
//! connection is looked up under mapped addresses only while a NAT64 service
//! exists. The IPv4 established fast lane (`burst`) never sees these
//! connections: a miss there goes to the ordinary path.

use super::balance::endpoints;
use super::*;
use crate::conn::{Family, FlowKey};
use crate::forward::nat64::{self, mapped, ErrorEnds, GROWTH};
use crate::forward::{icmp_checksum_verifies, Endpoints, QuotedFlow};
use crate::packet::{ipv4, ipv6, TcpFlags};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The IPv4 address a NAT64 connection holds IPv4-mapped.
fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip.to_canonical() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

impl<P: PacketPool> Pipeline<P> {
    /// An IPv4 TCP/UDP packet (`key`) that matches no IPv4 connection, while a
    /// service is NAT64: the reply of a NAT64 connection (real server to local
    /// address) is translated to IPv6 and sent to the client. Returns the packet
    /// when it is no such reply.
    #[inline(never)]
    pub(super) fn nat64_reply(
        &mut self,
        mut pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        key: FlowKey<Ipv4Addr>,
        flags: TcpFlags,
    ) -> Option<P::Buf> {
        let key6 = FlowKey::new(
            key.proto,
            mapped(key.src),
            key.sport,
            mapped(key.dst),
            key.dport,
        );
        let Some((id, Dir::Outbound)) = self.lb.lookup::<Ipv6Addr>(&key6) else {
            return Some(pkt);
        };
        if ip.fragment {
            // RFC 7915's fragment header translation is not done.
            self.discard(pkt, DropReason::FragmentUnsupported);
            return None;
        }
        let Some(conn) = self.lb.on_packet::<Ipv6Addr>(
            id,
            Dir::Outbound,
            flags.bits(),
            self.now_ms,
            &self.stats,
        ) else {
            self.discard(pkt, DropReason::NoConnection);
            return None;
        };
        let len = info.l3_end() - usize::from(info.l3_offset);
        count_forwarded(&self.stats, conn.real_server(), Dir::Outbound, len as u64);
        let (client, vip) = (conn.client(), conn.vip());
        let v6_len = len - usize::from(ip.header_len) + ipv6::HEADER_LEN;
        if let Some(mtu) = self.exceeded_mtu(v6_len, IpAddr::V6(client.addr)) {
            // The server learns what fits once the header grows by 20 bytes.
            let fits = mtu.saturating_sub(GROWTH as u16);
            self.refuse_too_big(pkt, info, fits);
            return None;
        }
        let src = (vip.addr, vip.port);
        let dst = (client.addr, client.port);
        if let Err(reason) = nat64::to_v6(&mut pkt, info, ip, key.proto, src, dst) {
            self.discard(pkt, reason);
            return None;
        }
        self.route_out(pkt, IpAddr::V6(client.addr));
        None
    }

    /// An IPv6 packet of a NAT64 connection (`e`, from the IPv6 table): from the
    /// client, translated to IPv4 from the local address to the real server. A
    /// packet whose IPv4 form exceeds the egress MTU is refused with a packet too
    /// big giving the IPv4 MTU plus 20.
    #[inline(never)]
    pub(super) fn nat64_forward(
        &mut self,
        mut pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        proto: Proto,
        e: &Endpoints,
        dir: Dir,
    ) {
        let (Dir::Inbound, Some(local), Some(real)) = (dir, v4(e.local.0), v4(e.real.0)) else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        let len = info.l3_end() - usize::from(info.l3_offset);
        let v4_len = len - usize::from(ip.header_len) + ipv4::HEADER_LEN;
        if let Some(mtu) = self.exceeded_mtu(v4_len, IpAddr::V4(real)) {
            return self.refuse_too_big(pkt, info, mtu.saturating_add(GROWTH as u16));
        }
        let src = (local, e.local.1);
        let dst = (real, e.real.1);
        if let Err(reason) = nat64::to_v4(&mut pkt, info, ip, proto, src, dst) {
            return self.discard(pkt, reason);
        }
        self.route_out(pkt, IpAddr::V4(real));
    }

    /// An ICMPv4 error about no IPv4 connection, while a service is NAT64: one
    /// from the server side about a NAT64 connection's packet (local address to
    /// real server) is checked as `icmp_error_af` checks errors, translated to
    /// ICMPv6 from the VIP to the client and sent. Returns the packet when it is
    /// about no NAT64 connection.
    #[inline(never)]
    pub(super) fn nat64_error_from_server(
        &mut self,
        mut pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        flow: &QuotedFlow,
    ) -> Option<P::Buf> {
        let (Some(local), Some(real)) = (v4(flow.src), v4(flow.dst)) else {
            return Some(pkt);
        };
        let key = FlowKey::new(
            flow.proto,
            mapped(real),
            flow.dport,
            mapped(local),
            flow.sport,
        );
        let Some((id, Dir::Outbound)) = self.lb.lookup::<Ipv6Addr>(&key) else {
            return Some(pkt);
        };
        let Some(conn) = self.lb.get::<Ipv6Addr>(id) else {
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
        let (client, vip) = (conn.client(), conn.vip());
        let ends = ErrorEnds {
            src: vip.addr,
            dst: client.addr,
            inner_src: (client.addr, client.port),
            inner_dst: (vip.addr, vip.port),
        };
        if let Err(reason) = nat64::icmp_error_to_v6(&mut pkt, info, ip, &ends) {
            self.discard(pkt, reason);
            return None;
        }
        let len = pkt.len() - usize::from(info.l3_offset);
        if self.exceeded_mtu(len, IpAddr::V6(client.addr)).is_some() {
            self.discard(pkt, DropReason::MtuExceeded);
            return None;
        }
        self.route_out(pkt, IpAddr::V6(client.addr));
        None
    }

    /// An ICMPv6 error from the client side about a NAT64 connection's packet
    /// (VIP to client), already checked by `icmp_error_af`: translated to ICMPv4
    /// from the local address to the real server and sent.
    #[inline(never)]
    pub(super) fn nat64_error_to_server(
        &mut self,
        mut pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        e: &Endpoints,
        dir: Dir,
    ) {
        let (Dir::Inbound, Some(local), Some(real)) = (dir, v4(e.local.0), v4(e.real.0)) else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        let ends = ErrorEnds {
            src: local,
            dst: real,
            inner_src: (real, e.real.1),
            inner_dst: (local, e.local.1),
        };
        if let Err(reason) = nat64::icmp_error_to_v4(&mut pkt, info, ip, &ends) {
            return self.discard(pkt, reason);
        }
        let len = pkt.len() - usize::from(info.l3_offset);
        if self.exceeded_mtu(len, IpAddr::V4(real)).is_some() {
            return self.discard(pkt, DropReason::MtuExceeded);
        }
        self.route_out(pkt, IpAddr::V4(real));
    }

    /// [`Pipeline::nat64_forward`] for a connection of either table (a NAT64 one
    /// is always in the IPv6 table).
    #[inline(never)]
    pub(super) fn nat64_forward_conn<A: Family>(
        &mut self,
        pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        proto: Proto,
        conn: &crate::conn::Conn<A>,
        dir: Dir,
    ) {
        self.nat64_forward(pkt, info, ip, proto, &endpoints(conn), dir)
    }
}
