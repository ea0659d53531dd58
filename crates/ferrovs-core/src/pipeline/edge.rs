//! Edge defence on the packet path: a service's access lists, the TCP segments
//! ferrovs answers with itself (a reset to a refused client), and connections
//! whose sequence numbers are translated (the Proxy Protocol header).

use super::*;
use crate::config::ProxyProtocol;
use crate::conn::xlate::{self, adj_flag};
use crate::conn::{ConnId, Endpoint, SeqAdj};
use crate::forward::segment::{self, Segment};
use crate::forward::{proxy_protocol, seq, translate, Action};
use crate::packet::parse::{FrameInfo, IpInfo, L4Header};
use crate::packet::{IpPair, Ipv4Packet, Ipv6Packet, PacketBuf, TcpFlags, TcpPacket};
use crate::service::Service;
use crate::stats::DropReason;

impl<P: PacketPool> Pipeline<P> {
    /// Whether `svc`'s access lists let `src` open a connection.
    #[inline]
    pub(super) fn acl_admits(svc: &Service, src: IpAddr) -> Result<(), DropReason> {
        if svc.access.is_open() || svc.access.admits(src) {
            Ok(())
        } else {
            Err(DropReason::AclDenied)
        }
    }

    /// A new connection refused for `reason`: dropped, and with the service's
    /// `deny_action: rst` a refused SYN is answered with a reset. Counted under
    /// `reason` either way.
    pub(super) fn refuse(
        &mut self,
        pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        reason: DropReason,
    ) {
        self.stats.count_drop(reason, 1);
        let reset = reason == DropReason::AclDenied && {
            let (dst, dport) = (ip.addrs.dst(), ip.ports().map_or(0, |p| p.1));
            self.dp
                .services
                .find(dst, dport, Proto::Tcp)
                .is_some_and(|s| s.access.reset)
        };
        match ip.l4.map(|l4| l4.header) {
            Some(L4Header::Tcp { flags, .. })
                if reset && balance::is_opening_syn(Proto::Tcp, flags) =>
            {
                self.reset_syn(pkt, info, ip)
            }
            _ => self.consume(pkt),
        }
    }

    /// Turns a SYN into the reset that refuses it, from the address it was sent to
    /// (RFC 9293: `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`), and sends it.
    fn reset_syn(&mut self, pkt: P::Buf, info: &FrameInfo, ip: &IpInfo) {
        let Some(l4) = ip.l4 else {
            return self.consume(pkt);
        };
        let l4 = usize::from(l4.offset);
        let Some((seq, len)) = pkt
            .data()
            .get(l4..info.l3_end())
            .and_then(|s| TcpPacket::new_checked(s).ok())
            .map(|t| (t.seq_number(), t.payload().len() as u32))
        else {
            return self.consume(pkt);
        };
        let (sport, dport) = ip.ports().unwrap_or_default();
        let seg = Segment {
            src: (ip.addrs.dst(), dport),
            dst: (ip.addrs.src(), sport),
            seq: 0,
            // The SYN takes one sequence number.
            ack: seq.wrapping_add(len).wrapping_add(1),
            flags: TcpFlags::RST | TcpFlags::ACK,
            window: 0,
            options: &[],
            payload: &[],
        };
        self.send_segment(pkt, usize::from(info.l3_offset), &seg);
    }

    /// Rewrites `pkt` into `seg` (what comes before `l3` kept) and routes it to
    /// `seg`'s destination. A buffer without room is freed (counted as `no_mbuf`).
    pub(super) fn send_segment(&mut self, mut pkt: P::Buf, l3: usize, seg: &Segment) {
        let want = l3 + seg.ip_len();
        let len = pkt.len();
        let sized = if want > len {
            pkt.append(want - len).is_ok()
        } else {
            pkt.truncate(want);
            true
        };
        if !sized || segment::emit(pkt.data_mut(), l3, seg).is_err() {
            return self.discard(pkt, DropReason::NoMbuf);
        }
        self.route_out(pkt, seg.dst.0);
    }
}

impl<P: PacketPool> Pipeline<P> {
    /// Gives a TCP connection just opened by the SYN in `pkt` the translation its
    /// service needs: with a Proxy Protocol header, its length goes in ahead of the
    /// client's first byte.
    pub(super) fn start_translation<A: Tables>(&mut self, id: ConnId, pkt: &P::Buf, ip: &IpInfo) {
        let Some(seq) = ip
            .l4
            .and_then(|l4| pkt.data().get(usize::from(l4.offset)..))
            .and_then(|s| TcpPacket::new_checked(s).ok())
            .map(|t| t.seq_number())
        else {
            return;
        };
        let Some(adj) = self.proxy_translation::<A>(id, seq) else {
            return;
        };
        let _ = self
            .lb
            .conns_mut::<A>()
            .set_translation(id, adj, xlate::flag::SLOW);
    }

    /// The translation a Proxy Protocol header needs on connection `id`, whose
    /// client's initial sequence number is `client_isn`; None when its service
    /// sends no header.
    pub(super) fn proxy_translation<A: Tables>(
        &self,
        id: ConnId,
        client_isn: u32,
    ) -> Option<SeqAdj> {
        let conn = self.lb.get::<A>(id)?;
        let svc = self.dp.services.get(conn.service())?;
        let v2 = match svc.proxy_protocol {
            ProxyProtocol::None => return None,
            ProxyProtocol::V1 => false,
            ProxyProtocol::V2 => true,
        };
        let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
        let mut header = [0u8; proxy_protocol::MAX_LEN];
        let len = proxy_protocol::write(v2, ep(conn.client()), ep(conn.vip()), &mut header)?;
        Some(SeqAdj {
            first_seq: client_isn.wrapping_add(1),
            in_delta: len as u8,
            flags: adj_flag::PROXY
                | adj_flag::PROXY_PENDING
                | if v2 { adj_flag::PROXY_V2 } else { 0 },
            ..SeqAdj::default()
        })
    }

    /// [`Pipeline::forward`] for a packet of a connection whose sequence numbers
    /// are translated: addresses and ports as always, then sequence numbers,
    /// acknowledgements, SACK edges, timestamps and window; the Proxy Protocol
    /// header goes out first, as its own segment, ahead of the client's first
    /// byte (again whenever that byte is sent again, until the server has
    /// acknowledged the header).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_translated<A: Tables>(
        &mut self,
        mut pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        action: Action,
        id: ConnId,
        dir: Dir,
    ) {
        let (Some(adj), Action::Translate { t, next_hop }) = (self.lb.translation::<A>(id), action)
        else {
            return self.forward(pkt, info, ip, Proto::Tcp, action);
        };
        if adj.has(adj_flag::SYN_PENDING) {
            // A SYN proxy still waits for the server's SYN-ACK.
            return self.syn_proxy_pending::<A>(pkt, info, ip, id, dir, adj);
        }
        let len = info.l3_end() - usize::from(info.l3_offset);
        if let Some(mtu) = self.exceeded_mtu(len, next_hop) {
            return self.refuse_too_big(pkt, info, mtu);
        }
        let (l4, end) = (ip.l4.map_or(0, |l| usize::from(l.offset)), info.l3_end());
        let Some((seq, ack, flags, occupies)) = pkt
            .data()
            .get(l4..end)
            .and_then(|s| TcpPacket::new_checked(s).ok())
            .map(|t| {
                let flags = t.flags();
                let occupies = !t.payload().is_empty() || flags.contains(TcpFlags::FIN);
                (t.seq_number(), t.ack_number(), flags, occupies)
            })
        else {
            return self.discard(pkt, DropReason::TruncatedL4);
        };
        let pending = adj.has(adj_flag::PROXY_PENDING);
        let header_due = pending && dir == Dir::Inbound && seq == adj.first_seq && occupies;
        if pending && dir == Dir::Outbound && flags.contains(TcpFlags::ACK) && adj.acks_insert(ack)
        {
            // The server has the header: the client's bytes need no more than
            // their shift, which the burst path applies too.
            let conns = self.lb.conns_mut::<A>();
            if let Some(a) = conns.translation_mut(id) {
                a.flags &= !adj_flag::PROXY_PENDING;
            }
            conns.set_slow(id, false);
        }
        if let Err(reason) = translate(pkt.data_mut(), info, ip, Proto::Tcp, &t) {
            return self.discard(pkt, reason);
        }
        if let Some(segment) = pkt.data_mut().get_mut(l4..end) {
            seq::adjust(segment, dir, &adj);
        }
        pkt.truncate(end);
        if header_due {
            self.send_proxy_header::<A>(&pkt, l4, id, &adj, next_hop);
        }
        self.route_out(pkt, next_hop);
    }

    /// Sends connection `id`'s Proxy Protocol header to its real server: a copy of
    /// the headers of `data` (the client's first segment, translated, whose TCP
    /// header starts at `l4`) carrying the header as its payload, at the sequence
    /// number the client's first byte had.
    fn send_proxy_header<A: Tables>(
        &mut self,
        data: &P::Buf,
        l4: usize,
        id: ConnId,
        adj: &SeqAdj,
        next_hop: IpAddr,
    ) {
        let Some(conn) = self.lb.get::<A>(id) else {
            return;
        };
        let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
        let mut header = [0u8; proxy_protocol::MAX_LEN];
        let v2 = adj.has(adj_flag::PROXY_V2);
        let Some(n) = proxy_protocol::write(v2, ep(conn.client()), ep(conn.vip()), &mut header)
        else {
            return;
        };
        let Some(mut out) = self.pool.alloc() else {
            return self.stats.count_drop(DropReason::NoMbuf, 1);
        };
        match copy_with_payload(data.data(), l4, &header[..n], adj.first_seq, &mut out) {
            Some(()) => self.route_out(out, next_hop),
            None => self.discard(out, DropReason::NoMbuf),
        }
    }
}

/// Writes into `out` the frame `src` up to the end of its TCP header (at `l4`),
/// with `payload` instead of its data, sequence number `seq`, flags ACK and PSH,
/// and the IP length and both checksums made right.
fn copy_with_payload<B: PacketBuf>(
    src: &[u8],
    l4: usize,
    payload: &[u8],
    seq: u32,
    out: &mut B,
) -> Option<()> {
    let tcp_len = usize::from(*src.get(l4 + 12)? >> 4) * 4;
    let head = src.get(..l4 + tcp_len)?;
    let total = head.len() + payload.len();
    out.truncate(0);
    out.append(total).ok()?;
    let frame = out.data_mut();
    frame[..head.len()].copy_from_slice(head);
    frame[head.len()..].copy_from_slice(payload);
    let l3 = crate::packet::ethernet::HEADER_LEN;
    let addrs = match frame[l3] >> 4 {
        4 => {
            let mut h = Ipv4Packet::new_unchecked(&mut frame[l3..l4]);
            h.set_total_len((total - l3) as u16);
            h.fill_checksum();
            IpPair::V4 {
                src: h.src_addr(),
                dst: h.dst_addr(),
            }
        }
        6 => {
            let mut h = Ipv6Packet::new_unchecked(&mut frame[l3..l4]);
            h.set_payload_len((total - l3 - crate::packet::ipv6::HEADER_LEN) as u16);
            IpPair::V6 {
                src: h.src_addr(),
                dst: h.dst_addr(),
            }
        }
        _ => return None,
    };
    let mut t = TcpPacket::new_unchecked(&mut frame[l4..total]);
    t.set_seq_number(seq);
    t.set_flags(TcpFlags::ACK | TcpFlags::PSH);
    t.set_urgent(0);
    t.fill_checksum(&addrs);
    Some(())
}
