//! ICMP errors about a connection (destination unreachable, fragmentation needed /
//! packet too big, time exceeded, parameter problem): the quoted packet names the
//! connection; translating the outer header and the quote lets the far end act on
//! the error, which is what makes path MTU discovery work through the balancer.

use super::seq::QuotedSeq;
use super::Translation;
use crate::conn::Proto;
use crate::packet::checksum::{self, Delta, Sum};
use crate::packet::parse::{FrameInfo, IpInfo, L4Header};
use crate::packet::{icmp, ipv6, IcmpType, Icmpv6Type, IpPair, IpProtocol, Ipv4Packet, Ipv6Packet};
use crate::stats::DropReason;
use std::net::IpAddr;

/// The TCP/UDP flow quoted by an ICMP error, as the quoted packet carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedFlow {
    /// TCP or UDP, from the quoted IP header.
    pub proto: Proto,
    /// The quoted packet's source: the error travels back towards it.
    pub src: IpAddr,
    /// The quoted packet's destination: where the error came from, or a router on the
    /// way there.
    pub dst: IpAddr,
    /// The quoted packet's source port.
    pub sport: u16,
    /// The quoted packet's destination port.
    pub dport: u16,
}

/// Byte offsets of an ICMP error's parts in the frame.
#[derive(Debug, Clone, Copy)]
struct Layout {
    icmp: usize,
    inner_l3: usize,
    inner_l4: usize,
    end: usize,
}

fn is_error(ip: &IpInfo) -> bool {
    match ip.l4.map(|l| l.header) {
        Some(L4Header::Icmpv4 { msg_type, .. }) => matches!(
            msg_type,
            IcmpType::DEST_UNREACHABLE
                | IcmpType::SOURCE_QUENCH
                | IcmpType::TIME_EXCEEDED
                | IcmpType::PARAMETER_PROBLEM
        ),
        Some(L4Header::Icmpv6 { msg_type, .. }) => matches!(
            msg_type,
            Icmpv6Type::DEST_UNREACHABLE
                | Icmpv6Type::PACKET_TOO_BIG
                | Icmpv6Type::TIME_EXCEEDED
                | Icmpv6Type::PARAMETER_PROBLEM
        ),
        _ => false,
    }
}

fn layout(frame: &[u8], info: &FrameInfo, ip: &IpInfo) -> Option<(Layout, QuotedFlow)> {
    if !is_error(ip) || ip.fragment {
        return None;
    }
    let icmp_off = usize::from(ip.l4?.offset);
    let end = info.l3_end().min(frame.len());
    let inner_l3 = icmp_off + icmp::HEADER_LEN;
    let quote = frame.get(inner_l3..end)?;
    let (proto, src, dst, inner_l4) = match ip.addrs.src() {
        IpAddr::V4(_) => {
            let inner = Ipv4Packet::new_checked_quoted(quote).ok()?;
            if inner.is_fragment() && inner.frag_offset() != 0 {
                return None;
            }
            (
                inner.protocol(),
                IpAddr::V4(inner.src_addr()),
                IpAddr::V4(inner.dst_addr()),
                inner_l3 + inner.header_len(),
            )
        }
        IpAddr::V6(_) => {
            if quote.len() < ipv6::HEADER_LEN || quote[0] >> 4 != 6 {
                return None;
            }
            let inner = Ipv6Packet::new_unchecked(&quote[..ipv6::HEADER_LEN]);
            (
                inner.next_header(),
                IpAddr::V6(inner.src_addr()),
                IpAddr::V6(inner.dst_addr()),
                inner_l3 + ipv6::HEADER_LEN,
            )
        }
    };
    let proto = match proto {
        IpProtocol::TCP => Proto::Tcp,
        IpProtocol::UDP => Proto::Udp,
        _ => return None,
    };
    let ports = frame.get(inner_l4..inner_l4 + 4)?;
    let flow = QuotedFlow {
        proto,
        src,
        dst,
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
    };
    Some((
        Layout {
            icmp: icmp_off,
            inner_l3,
            inner_l4,
            end,
        },
        flow,
    ))
}

/// The flow an ICMP error is about, or None when the packet is not an ICMP error
/// quoting the head of a TCP/UDP packet (at least the ports).
pub fn quoted_flow(frame: &[u8], info: &FrameInfo, ip: &IpInfo) -> Option<QuotedFlow> {
    layout(frame, info, ip).map(|(_, f)| f)
}

/// Whether the checksum of the ICMP message (ICMPv6: with its pseudo-header) in
/// `frame` verifies. [`translate_icmp_error`] writes a fresh checksum, so a
/// corrupted message must be refused before it is translated.
pub fn icmp_checksum_verifies(frame: &[u8], info: &FrameInfo, ip: &IpInfo) -> bool {
    let Some(l4) = ip.l4 else {
        return false;
    };
    let end = info.l3_end().min(frame.len());
    let Some(message) = frame.get(usize::from(l4.offset)..end) else {
        return false;
    };
    let sum = match ip.addrs {
        IpPair::V4 { .. } => Sum::of(message),
        IpPair::V6 { src, dst } => {
            checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6, message.len() as u32)
                + Sum::of(message)
        }
    };
    sum.verifies()
}

/// Rewrites an ICMP error in place: the outer addresses per `outer` (ports ignored),
/// the quoted packet's endpoints per `inner` (its IP header checksum and, when the
/// quote holds it, its TCP/UDP checksum updated incrementally), a quoted TCP
/// header's sequence and acknowledgement numbers back to what its sender wrote
/// when the connection translates them (`seq`), the outer TTL decremented and the
/// ICMP checksum recomputed.
pub fn translate_icmp_error(
    frame: &mut [u8],
    info: &FrameInfo,
    ip: &IpInfo,
    outer: &Translation,
    inner: &Translation,
    seq: Option<&QuotedSeq>,
) -> Result<(), DropReason> {
    let (at, flow) = layout(frame, info, ip).ok_or(DropReason::TruncatedL4)?;
    let l3 = usize::from(info.l3_offset);
    // Outer header.
    match ip.addrs.src() {
        IpAddr::V4(_) => {
            let mut h = Ipv4Packet::new_unchecked(&mut frame[l3..at.icmp]);
            if h.ttl() <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            h.decrement_ttl();
            if let Some((IpAddr::V4(a), _)) = outer.src {
                h.rewrite_src_addr(a);
            }
            if let Some((IpAddr::V4(a), _)) = outer.dst {
                h.rewrite_dst_addr(a);
            }
        }
        IpAddr::V6(_) => {
            let mut h = Ipv6Packet::new_unchecked(&mut frame[l3..at.icmp]);
            if h.hop_limit() <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            h.decrement_hop_limit();
            if let Some((IpAddr::V6(a), _)) = outer.src {
                h.set_src_addr(a);
            }
            if let Some((IpAddr::V6(a), _)) = outer.dst {
                h.set_dst_addr(a);
            }
        }
    }
    // Quoted IP header.
    let mut delta = Delta::NONE;
    match flow.src {
        IpAddr::V4(_) => {
            let mut h = Ipv4Packet::new_unchecked(&mut frame[at.inner_l3..at.inner_l4]);
            if let Some((IpAddr::V4(a), _)) = inner.src {
                delta = delta.and(h.rewrite_src_addr(a));
            }
            if let Some((IpAddr::V4(a), _)) = inner.dst {
                delta = delta.and(h.rewrite_dst_addr(a));
            }
        }
        IpAddr::V6(_) => {
            let mut h = Ipv6Packet::new_unchecked(&mut frame[at.inner_l3..at.inner_l4]);
            if let Some((IpAddr::V6(a), _)) = inner.src {
                delta = delta.and(h.rewrite_src_addr(a));
            }
            if let Some((IpAddr::V6(a), _)) = inner.dst {
                delta = delta.and(h.rewrite_dst_addr(a));
            }
        }
    }
    // Quoted ports, and the quoted TCP/UDP checksum when the quote reaches it.
    let l4 = at.inner_l4;
    if let Some((_, p)) = inner.src {
        delta = delta.u16(flow.sport, p);
        frame[l4..l4 + 2].copy_from_slice(&p.to_be_bytes());
    }
    if let Some((_, p)) = inner.dst {
        delta = delta.u16(flow.dport, p);
        frame[l4 + 2..l4 + 4].copy_from_slice(&p.to_be_bytes());
    }
    if let (Some(map), Proto::Tcp) = (seq, flow.proto) {
        // The quote holds at least the first 8 bytes: ports and sequence number.
        if let Some(b) = frame.get_mut(l4 + 4..l4 + 8) {
            let old = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let new = map.seq(old);
            b.copy_from_slice(&new.to_be_bytes());
            delta = delta.u32(old, new);
        }
        // The acknowledgement number only when the quote shows the ACK flag.
        let acked = l4 + 14 <= at.end && frame[l4 + 13] & 0x10 != 0;
        if let Some(b) = frame.get_mut(l4 + 8..l4 + 12).filter(|_| acked) {
            let old = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let new = map.ack(old);
            b.copy_from_slice(&new.to_be_bytes());
            delta = delta.u32(old, new);
        }
    }
    let csum_at = l4 + if flow.proto == Proto::Tcp { 16 } else { 6 };
    if csum_at + 2 <= at.end {
        let old = u16::from_be_bytes([frame[csum_at], frame[csum_at + 1]]);
        let zero_udp = flow.proto == Proto::Udp && old == 0;
        if !zero_udp {
            let mut new = delta.apply(old);
            if flow.proto == Proto::Udp {
                new = checksum::udp_transmitted(new);
            }
            frame[csum_at..csum_at + 2].copy_from_slice(&new.to_be_bytes());
        }
    }
    // The ICMP checksum covers the whole message (and, for ICMPv6, the pseudo-header).
    frame[at.icmp + 2..at.icmp + 4].fill(0);
    let body = Sum::of(&frame[at.icmp..at.end]);
    let sum = match ip.addrs.src() {
        IpAddr::V4(_) => body,
        IpAddr::V6(_) => {
            let h = Ipv6Packet::new_unchecked(&frame[l3..at.icmp]);
            checksum::pseudo_header_v6(
                h.src_addr(),
                h.dst_addr(),
                IpProtocol::ICMPV6,
                (at.end - at.icmp) as u32,
            ) + body
        }
    };
    let c = sum.checksum();
    frame[at.icmp + 2..at.icmp + 4].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::craft::{self, L2};
    use crate::packet::icmp::{emit_error, IcmpError};
    use crate::packet::parse::L3Info;
    use crate::packet::{ethernet, parse_frame, EtherType, Icmpv4Packet, MacAddr, TcpFlags};
    use std::net::Ipv4Addr;

    const L2S: L2 = L2 {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
    };

    /// A fragmentation-needed error from `from` about `offending` (a full frame).
    fn frag_needed(from: Ipv4Addr, offending: &[u8], mtu: u16) -> Vec<u8> {
        let mut buf = vec![0u8; 14 + 600];
        let n = emit_error(
            &mut buf[14..],
            IcmpError::FragmentationNeeded { next_hop_mtu: mtu },
            from,
            &offending[14..],
        )
        .unwrap();
        buf.truncate(14 + n);
        ethernet::emit_header(&mut buf, L2S.dst, L2S.src, EtherType::IPV4).unwrap();
        craft::pad(buf)
    }

    fn ip_of(frame: &[u8]) -> (FrameInfo, IpInfo) {
        let info = parse_frame(frame, false).unwrap();
        let L3Info::Ip(ip) = info.l3 else { panic!() };
        (info, ip)
    }

    #[test]
    fn frag_needed_from_the_server_side_is_translated_for_the_client() {
        let client: std::net::SocketAddr = "198.18.0.10:40000".parse().unwrap();
        let rs: std::net::SocketAddr = "198.19.0.11:8080".parse().unwrap();
        // The client's segment after DNAT, as a router near the server saw it.
        let seg = craft::tcp(L2S, client, rs, TcpFlags::ACK, 1, 1, &[0u8; 1400]);
        let mut err = frag_needed("198.19.0.254".parse().unwrap(), &seg, 1280);
        let (info, ip) = ip_of(&err);
        let flow = quoted_flow(&err, &info, &ip).unwrap();
        assert_eq!(
            (flow.src, flow.dst, flow.sport, flow.dport),
            (client.ip(), rs.ip(), 40000, 8080)
        );
        assert_eq!(flow.proto, Proto::Tcp);
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        translate_icmp_error(
            &mut err,
            &info,
            &ip,
            &Translation {
                src: Some((vip, 0)),
                dst: None,
            },
            &Translation {
                src: None,
                dst: Some((vip, 80)),
            },
            None,
        )
        .unwrap();
        let (info, ip) = ip_of(&err);
        assert_eq!(ip.addrs.src(), vip);
        let outer = Ipv4Packet::new_checked(&err[14..info.l3_end()]).unwrap();
        assert!(outer.verify_checksum());
        let msg = Icmpv4Packet::new_checked(outer.payload()).unwrap();
        assert!(msg.verify_checksum());
        assert_eq!(msg.next_hop_mtu(), 1280);
        let quoted = msg.quoted_packet().unwrap();
        assert!(quoted.verify_checksum());
        assert_eq!(IpAddr::V4(quoted.dst_addr()), vip);
        let flow = quoted_flow(&err, &info, &ip).unwrap();
        assert_eq!((flow.dst, flow.dport), (vip, 80));
    }

    #[test]
    fn quoted_udp_checksum_follows_the_rewrite() {
        let client: std::net::SocketAddr = "198.18.0.10:5000".parse().unwrap();
        let vip: std::net::SocketAddr = "198.18.0.100:53".parse().unwrap();
        let rs: std::net::SocketAddr = "198.19.0.11:5353".parse().unwrap();
        // The client rejects our reply (port unreachable): quote is vip -> client.
        let reply = craft::udp(L2S, vip, client, b"answer");
        let mut err = frag_needed("198.18.0.10".parse().unwrap(), &reply, 1200);
        let (info, ip) = ip_of(&err);
        translate_icmp_error(
            &mut err,
            &info,
            &ip,
            &Translation {
                src: None,
                dst: Some((rs.ip(), 0)),
            },
            &Translation {
                src: Some((rs.ip(), rs.port())),
                dst: None,
            },
            None,
        )
        .unwrap();
        // The quote now is the packet the server sent: recompute its UDP checksum
        // from scratch over the full (unquoted) datagram and compare.
        let (info, ip) = ip_of(&err);
        let flow = quoted_flow(&err, &info, &ip).unwrap();
        assert_eq!((flow.src, flow.sport), (rs.ip(), 5353));
        let original = craft::udp(L2S, rs, client, b"answer");
        let want = &original[14 + 20 + 6..14 + 20 + 8];
        let inner_l4 = usize::from(ip.l4.unwrap().offset) + 8 + 20;
        assert_eq!(&err[inner_l4 + 6..inner_l4 + 8], want);
    }

    #[test]
    fn non_errors_and_short_quotes_are_not_flows() {
        let ping = craft::echo_request(
            L2S,
            "198.18.0.10".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            1,
            1,
            b"",
        );
        let (info, ip) = ip_of(&ping);
        assert!(quoted_flow(&ping, &info, &ip).is_none());
        let seg = craft::tcp(
            L2S,
            "198.18.0.10:1".parse().unwrap(),
            "198.19.0.1:2".parse().unwrap(),
            TcpFlags::SYN,
            0,
            0,
            b"",
        );
        let mut err = frag_needed("198.19.0.1".parse().unwrap(), &seg, 1000);
        // cut the quote inside the inner IP header
        let cut = 14 + 20 + 8 + 10;
        err.truncate(cut);
        let total = (cut - 14) as u16;
        err[16..18].copy_from_slice(&total.to_be_bytes());
        Ipv4Packet::new_checked(&mut err[14..])
            .unwrap()
            .fill_checksum();
        let (info, ip) = ip_of(&err);
        assert!(quoted_flow(&err, &info, &ip).is_none());
    }
}
