//! NAT64: the FULLNAT form of an IPv6 service with IPv4 real servers (as DPVS).
//! A client's IPv6 packet leaves as IPv4 from a local address to the real
//! server; the server's IPv4 reply goes back to the client as IPv6 from the VIP.
//! Headers are translated as RFC 7915 (SIIT) says, with the addresses of the
//! connection instead of algorithmically mapped ones:
//!
//! | IPv6 | IPv4 |
//! | --- | --- |
//! | traffic class | type of service |
//! | flow label | (dropped; 0 towards the client) |
//! | hop limit - 1 | TTL - 1 |
//! | payload length | total length - header length |
//! | extension headers | (dropped) |
//! | (none) | DF set, identification 0, options dropped |
//!
//! The IPv6 header is 20 bytes longer than an IPv4 one without options, so the
//! frame shrinks (towards the server) or grows (towards the client) by 20 bytes:
//! the Ethernet header moves, and the packet's start with it. The TCP/UDP checksum
//! changes by the pseudo-headers' difference, which is the addresses' difference
//! (length and protocol sum alike in both); a zero IPv4 UDP checksum is computed
//! in full, IPv6 requiring one.
//!
//! ICMP errors about a connection (and only those: ferrovs answers no echo
//! through a VIP's connection) are translated with their quoted packet, types,
//! codes, MTU and pointer mapped per RFC 7915 sections 4.2 and 5.2; what has no
//! counterpart is dropped. The message is rebuilt in a buffer on the stack (errors
//! are rare and short: an ICMPv6 error is at most 1280 bytes, an ICMPv4 one 576)
//! and written back over the packet.

use crate::conn::Proto;
use crate::packet::checksum::{self, Delta, Sum};
use crate::packet::parse::{FrameInfo, IpInfo};
use crate::packet::{icmp, icmpv6, ipv4, ipv6, EtherType, IpProtocol, PacketBuf};
use crate::stats::DropReason;
use std::net::{Ipv4Addr, Ipv6Addr};

/// How much longer an IPv6 header is than an IPv4 header without options: what
/// a packet gains towards the client and loses towards the server.
pub const GROWTH: usize = ipv6::HEADER_LEN - ipv4::HEADER_LEN;

/// An IPv4 address as the IPv6 table keeps it: IPv4-mapped (`::ffff:a.b.c.d`).
#[inline]
pub fn mapped(a: Ipv4Addr) -> Ipv6Addr {
    a.to_ipv6_mapped()
}

/// A v4 endpoint: address and port.
pub type V4End = (Ipv4Addr, u16);
/// A v6 endpoint: address and port.
pub type V6End = (Ipv6Addr, u16);

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn ip4(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn ip6(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(o)
}

/// Writes a 20-byte IPv4 header (DF set, identification 0) with its checksum.
fn write_v4_header(
    h: &mut [u8],
    tos: u8,
    total: u16,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    h[0] = 0x45;
    h[1] = tos;
    wr16(h, 2, total);
    wr16(h, 4, 0);
    wr16(h, 6, 0x4000);
    h[8] = ttl;
    h[9] = proto;
    wr16(h, 10, 0);
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&h[..ipv4::HEADER_LEN]);
    wr16(h, 10, c);
}

/// Writes a 40-byte IPv6 header (flow label 0).
fn write_v6_header(
    h: &mut [u8],
    tclass: u8,
    payload: u16,
    hop: u8,
    next: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) {
    h[0] = 0x60 | tclass >> 4;
    h[1] = tclass << 4;
    h[2] = 0;
    h[3] = 0;
    wr16(h, 4, payload);
    h[6] = next;
    h[7] = hop;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
}

/// Sets the EtherType just before `l3` (after any VLAN tag).
fn set_ethertype(frame: &mut [u8], l3: usize, t: EtherType) {
    wr16(frame, l3 - 2, t.0);
}

/// Sets the ports of the TCP/UDP header at `seg` and updates its checksum by
/// `delta` (the pseudo-header's change) and the ports' change. With
/// `udp_full` (an IPv4 UDP datagram without checksum going IPv6), the UDP
/// checksum is computed over the segment and `pseudo` instead.
fn rewrite_l4(seg: &mut [u8], proto: Proto, mut delta: Delta, src: u16, dst: u16, pseudo: Sum) {
    let csum_at = if proto == Proto::Tcp { 16 } else { 6 };
    delta = delta.u16(rd16(seg, 0), src).u16(rd16(seg, 2), dst);
    wr16(seg, 0, src);
    wr16(seg, 2, dst);
    let old = rd16(seg, csum_at);
    let new = if proto == Proto::Udp && old == 0 {
        checksum::udp_transmitted((pseudo + Sum::of(seg)).checksum())
    } else if proto == Proto::Udp {
        checksum::udp_transmitted(delta.apply(old))
    } else {
        delta.apply(old)
    };
    wr16(seg, csum_at, new);
}

fn l4_bounds(
    info: &FrameInfo,
    ip: &IpInfo,
    len: usize,
) -> Result<(usize, usize, usize), DropReason> {
    let l3 = usize::from(info.l3_offset);
    let end = info.l3_end();
    let l4 = usize::from(ip.l4.ok_or(DropReason::TruncatedL4)?.offset);
    if end > len || l4 > end || l3 > l4 || l3 < 2 {
        return Err(DropReason::TruncatedL4);
    }
    Ok((l3, l4, end))
}

fn min_l4(proto: Proto) -> usize {
    if proto == Proto::Tcp {
        crate::packet::tcp::HEADER_LEN
    } else {
        crate::packet::udp::HEADER_LEN
    }
}

/// Translates an IPv6 TCP/UDP packet of a NAT64 connection to IPv4 from `src`
/// (local address and port) to `dst` (real server): hop limit to TTL less one,
/// traffic class to TOS, DF set, extension headers dropped. The frame loses 20
/// bytes (more with extension headers). On error the packet is unchanged.
pub fn to_v4<B: PacketBuf>(
    pkt: &mut B,
    info: &FrameInfo,
    ip: &IpInfo,
    proto: Proto,
    src: V4End,
    dst: V4End,
) -> Result<(), DropReason> {
    let (l3, l4, end) = l4_bounds(info, ip, pkt.len())?;
    if l4 < l3 + ipv6::HEADER_LEN || end - l4 < min_l4(proto) {
        return Err(DropReason::TruncatedL4);
    }
    let seg_len = end - l4;
    let total = u16::try_from(ipv4::HEADER_LEN + seg_len).map_err(|_| DropReason::MtuExceeded)?;
    let data = pkt.data_mut();
    let h = &data[l3..l3 + ipv6::HEADER_LEN];
    let tclass = h[0] << 4 | h[1] >> 4;
    let hop = h[7];
    if hop <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let (old_src, old_dst) = (ip6(h, 8), ip6(h, 24));
    let delta = Delta::NONE
        .u128(u128::from(old_src), 0)
        .u128(u128::from(old_dst), 0)
        .u32(0, u32::from(src.0))
        .u32(0, u32::from(dst.0));
    rewrite_l4(&mut data[l4..end], proto, delta, src.1, dst.1, Sum::ZERO);
    let new_l3 = l4 - ipv4::HEADER_LEN;
    let proto_num = if proto == Proto::Tcp {
        IpProtocol::TCP
    } else {
        IpProtocol::UDP
    };
    write_v4_header(
        &mut data[new_l3..l4],
        tclass,
        total,
        hop - 1,
        proto_num.0,
        src.0,
        dst.0,
    );
    let shift = new_l3 - l3;
    data.copy_within(0..l3, shift);
    set_ethertype(data, new_l3, EtherType::IPV4);
    pkt.strip_front(shift);
    pkt.truncate(l3 + usize::from(total));
    Ok(())
}

/// Translates an IPv4 TCP/UDP packet of a NAT64 connection to IPv6 from `src`
/// (the VIP) to `dst` (the client): TTL to hop limit less one, TOS to traffic
/// class, options dropped. The frame grows by 20 bytes (less with options). On
/// error the packet is unchanged.
pub fn to_v6<B: PacketBuf>(
    pkt: &mut B,
    info: &FrameInfo,
    ip: &IpInfo,
    proto: Proto,
    src: V6End,
    dst: V6End,
) -> Result<(), DropReason> {
    let (l3, l4, end) = l4_bounds(info, ip, pkt.len())?;
    if l4 < l3 + ipv4::HEADER_LEN || end - l4 < min_l4(proto) {
        return Err(DropReason::TruncatedL4);
    }
    let seg_len = end - l4;
    let payload = u16::try_from(seg_len).map_err(|_| DropReason::MtuExceeded)?;
    let ihl = l4 - l3;
    if ihl < ipv6::HEADER_LEN && pkt.headroom() < ipv6::HEADER_LEN - ihl {
        return Err(DropReason::NoMbuf);
    }
    let data = pkt.data_mut();
    let h = &data[l3..l4];
    let (tos, ttl) = (h[1], h[8]);
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let (old_src, old_dst) = (ip4(h, 12), ip4(h, 16));
    let delta = Delta::NONE
        .u32(u32::from(old_src), 0)
        .u32(u32::from(old_dst), 0)
        .u128(0, u128::from(src.0))
        .u128(0, u128::from(dst.0));
    let proto_num = if proto == Proto::Tcp {
        IpProtocol::TCP
    } else {
        IpProtocol::UDP
    };
    let pseudo = checksum::pseudo_header_v6(src.0, dst.0, proto_num, u32::from(payload));
    rewrite_l4(&mut data[l4..end], proto, delta, src.1, dst.1, pseudo);
    pkt.truncate(end);
    // The IPv6 header ends where the IPv4 one did: the frame's start moves so
    // that it begins at `l3` again, the Ethernet header moved with it.
    if ihl < ipv6::HEADER_LEN {
        let grow = ipv6::HEADER_LEN - ihl;
        pkt.prepend(grow).map_err(|_| DropReason::NoMbuf)?;
        pkt.data_mut().copy_within(grow..grow + l3, 0);
    } else {
        let shrink = ihl - ipv6::HEADER_LEN;
        pkt.data_mut().copy_within(0..l3, shrink);
        pkt.strip_front(shrink);
    }
    let new_l3 = l3;
    let data = pkt.data_mut();
    write_v6_header(
        &mut data[new_l3..new_l3 + ipv6::HEADER_LEN],
        tos,
        payload,
        ttl - 1,
        proto_num.0,
        src.0,
        dst.0,
    );
    set_ethertype(data, new_l3, EtherType::IPV6);
    Ok(())
}

/// RFC 7915 section 4.2: an ICMPv4 error's type, code and 4-byte field as ICMPv6,
/// or None for what is silently dropped. `rest` holds the next-hop MTU of a
/// "fragmentation needed" (bytes 2..4) and the pointer of a parameter problem
/// (byte 0).
pub fn icmp4_to_6(ty: u8, code: u8, rest: [u8; 4]) -> Option<(u8, u8, [u8; 4])> {
    const UNREACH: u8 = 1;
    let unreach = |code: u8| Some((UNREACH, code, [0; 4]));
    match (ty, code) {
        (3, 0 | 1 | 5..=8 | 11 | 12) => unreach(0),
        // Protocol unreachable: parameter problem, unrecognised next header, at it.
        (3, 2) => Some((4, 1, [0, 0, 0, 6])),
        (3, 3) => unreach(4),
        (3, 4) => {
            let mtu = u32::from(u16::from_be_bytes([rest[2], rest[3]])) + GROWTH as u32;
            Some((2, 0, mtu.to_be_bytes()))
        }
        (3, 9 | 10 | 13 | 15) => unreach(1),
        (11, 0 | 1) => Some((3, code, [0; 4])),
        (12, 0 | 2) => {
            let ptr = match rest[0] {
                0 => 0,
                1 => 1,
                2 | 3 => 4,
                8 => 7,
                9 => 6,
                12..=15 => 8,
                16..=19 => 24,
                _ => return None,
            };
            Some((4, 0, [0, 0, 0, ptr]))
        }
        _ => None,
    }
}

/// RFC 7915 section 5.2: an ICMPv6 error's type, code and 4-byte field as ICMPv4,
/// or None for what is silently dropped. A packet-too-big MTU becomes a
/// "fragmentation needed" next-hop MTU 20 bytes smaller.
pub fn icmp6_to_4(ty: u8, code: u8, rest: [u8; 4]) -> Option<(u8, u8, [u8; 4])> {
    match (ty, code) {
        (1, 0 | 2 | 3) => Some((3, 1, [0; 4])),
        (1, 1) => Some((3, 10, [0; 4])),
        (1, 4) => Some((3, 3, [0; 4])),
        (2, 0) => {
            let mtu = u32::from_be_bytes(rest).saturating_sub(GROWTH as u32);
            let mtu = mtu.min(u32::from(u16::MAX)) as u16;
            let [hi, lo] = mtu.to_be_bytes();
            Some((3, 4, [0, 0, hi, lo]))
        }
        (3, 0 | 1) => Some((11, code, [0; 4])),
        (4, 0) => {
            let ptr = u32::from_be_bytes(rest);
            let ptr = match ptr {
                0 => 0,
                1 => 1,
                4 | 5 => 2,
                6 => 9,
                7 => 8,
                8..=23 => 12,
                24..=39 => 16,
                _ => return None,
            };
            Some((12, 0, [ptr, 0, 0, 0]))
        }
        (4, 1) => Some((3, 2, [0; 4])),
        _ => None,
    }
}

/// The endpoints an ICMP error is translated to: outer source and destination,
/// and the quoted packet's source and destination endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEnds<E, A> {
    /// Outer source address (the VIP towards the client, the local address
    /// towards the server).
    pub src: A,
    /// Outer destination address.
    pub dst: A,
    /// The quoted packet's source.
    pub inner_src: E,
    /// The quoted packet's destination.
    pub inner_dst: E,
}

/// Writes `msg` (a whole IP packet) over the packet from `l3` on, resizing the
/// frame, and sets the EtherType.
fn replace_l3<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    old_len: usize,
    msg: &[u8],
    t: EtherType,
) -> Result<(), DropReason> {
    pkt.truncate(l3 + old_len);
    if msg.len() > old_len {
        pkt.append(msg.len() - old_len)
            .map_err(|_| DropReason::NoMbuf)?;
    } else {
        pkt.truncate(l3 + msg.len());
    }
    let data = pkt.data_mut();
    data[l3..l3 + msg.len()].copy_from_slice(msg);
    set_ethertype(data, l3, t);
    Ok(())
}

/// The quoted TCP/UDP checksum's offset in its header.
fn quoted_csum_at(proto: u8) -> Option<usize> {
    match IpProtocol(proto) {
        IpProtocol::TCP => Some(16),
        IpProtocol::UDP => Some(6),
        _ => None,
    }
}

/// Translates an ICMPv4 error from the server side to ICMPv6 towards the client:
/// outer header from `e.src` (the VIP) to `e.dst` (the client), TTL less one;
/// the quoted IPv4 packet (local address to real server) as the IPv6 packet the
/// client sent (`e.inner_src` the client, `e.inner_dst` the VIP), its TCP/UDP
/// checksum updated when the quote holds it. The message is cut to 1280 bytes.
pub fn icmp_error_to_v6<B: PacketBuf>(
    pkt: &mut B,
    info: &FrameInfo,
    ip: &IpInfo,
    e: &ErrorEnds<V6End, Ipv6Addr>,
) -> Result<(), DropReason> {
    let bad = DropReason::TruncatedL4;
    let l3 = usize::from(info.l3_offset);
    let end = info.l3_end();
    let icmp_at = usize::from(ip.l4.ok_or(bad)?.offset);
    let data = pkt.data();
    if end > data.len() || icmp_at + icmp::HEADER_LEN + ipv4::HEADER_LEN > end {
        return Err(bad);
    }
    let ttl = data[l3 + 8];
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let m = &data[icmp_at..end];
    let rest = [m[4], m[5], m[6], m[7]];
    let (ty, code, rest) = icmp4_to_6(m[0], m[1], rest).ok_or(DropReason::NoConnection)?;
    let inner = &m[icmp::HEADER_LEN..];
    let inner_ihl = usize::from(inner[0] & 0x0f) * 4;
    if inner[0] >> 4 != 4 || inner_ihl < ipv4::HEADER_LEN || inner.len() < inner_ihl + 4 {
        return Err(bad);
    }
    let inner_total = usize::from(rd16(inner, 2));
    let inner_proto = inner[9];
    let (isrc, idst) = (ip4(inner, 12), ip4(inner, 16));
    let quote = &inner[inner_ihl..];

    let mut out = [0u8; icmpv6::MAX_ERROR_LEN];
    let fixed = ipv6::HEADER_LEN + icmp::HEADER_LEN + ipv6::HEADER_LEN;
    let q = quote.len().min(out.len() - fixed);
    let len = fixed + q;
    let msg_len = len - ipv6::HEADER_LEN;
    write_v6_header(
        &mut out[..40],
        0,
        msg_len as u16,
        ttl - 1,
        IpProtocol::ICMPV6.0,
        e.src,
        e.dst,
    );
    let body = &mut out[ipv6::HEADER_LEN..];
    body[0] = ty;
    body[1] = code;
    body[4..8].copy_from_slice(&rest);
    let (ih, iq) = body[icmp::HEADER_LEN..msg_len].split_at_mut(ipv6::HEADER_LEN);
    let payload = inner_total
        .saturating_sub(inner_ihl)
        .min(usize::from(u16::MAX)) as u16;
    write_v6_header(
        ih,
        inner[1],
        payload,
        inner[8],
        inner_proto,
        e.inner_src.0,
        e.inner_dst.0,
    );
    iq.copy_from_slice(&quote[..q]);
    let delta = Delta::NONE
        .u32(u32::from(isrc), 0)
        .u32(u32::from(idst), 0)
        .u128(0, u128::from(e.inner_src.0))
        .u128(0, u128::from(e.inner_dst.0))
        .u16(rd16(iq, 0), e.inner_src.1)
        .u16(rd16(iq, 2), e.inner_dst.1);
    wr16(iq, 0, e.inner_src.1);
    wr16(iq, 2, e.inner_dst.1);
    if let Some(at) = quoted_csum_at(inner_proto).filter(|at| at + 2 <= q) {
        let old = rd16(iq, at);
        if old != 0 {
            let mut new = delta.apply(old);
            if inner_proto == IpProtocol::UDP.0 {
                new = checksum::udp_transmitted(new);
            }
            wr16(iq, at, new);
        }
        // A zero UDP checksum stays: the quote need not verify.
    }
    let sum = checksum::pseudo_header_v6(e.src, e.dst, IpProtocol::ICMPV6, msg_len as u32)
        + Sum::of(&body[..msg_len]);
    wr16(body, 2, sum.checksum());
    replace_l3(pkt, l3, end - l3, &out[..len], EtherType::IPV6)
}

/// Translates an ICMPv6 error from the client side to ICMPv4 towards the server:
/// outer header from `e.src` (the local address) to `e.dst` (the real server),
/// hop limit less one; the quoted IPv6 packet (VIP to client) as the IPv4 packet
/// the server sent (`e.inner_src` the real server, `e.inner_dst` the local
/// address). The message is cut to 576 bytes.
pub fn icmp_error_to_v4<B: PacketBuf>(
    pkt: &mut B,
    info: &FrameInfo,
    ip: &IpInfo,
    e: &ErrorEnds<V4End, Ipv4Addr>,
) -> Result<(), DropReason> {
    let bad = DropReason::TruncatedL4;
    let l3 = usize::from(info.l3_offset);
    let end = info.l3_end();
    let icmp_at = usize::from(ip.l4.ok_or(bad)?.offset);
    let data = pkt.data();
    if end > data.len() || icmp_at + icmpv6::MIN_LEN + ipv6::HEADER_LEN + 4 > end {
        return Err(bad);
    }
    let hop = data[l3 + 7];
    if hop <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let m = &data[icmp_at..end];
    let rest = [m[4], m[5], m[6], m[7]];
    let (ty, code, rest) = icmp6_to_4(m[0], m[1], rest).ok_or(DropReason::NoConnection)?;
    let inner = &m[icmpv6::MIN_LEN..];
    if inner[0] >> 4 != 6 {
        return Err(bad);
    }
    let tclass = inner[0] << 4 | inner[1] >> 4;
    let payload = rd16(inner, 4);
    let inner_proto = inner[6];
    let inner_hop = inner[7];
    let (isrc, idst) = (ip6(inner, 8), ip6(inner, 24));
    let quote = &inner[ipv6::HEADER_LEN..];

    let mut out = [0u8; icmp::MAX_ERROR_LEN];
    let fixed = ipv4::HEADER_LEN + icmp::HEADER_LEN + ipv4::HEADER_LEN;
    let q = quote.len().min(out.len() - fixed);
    let len = fixed + q;
    write_v4_header(
        &mut out[..20],
        0,
        len as u16,
        hop - 1,
        IpProtocol::ICMP.0,
        e.src,
        e.dst,
    );
    let body = &mut out[ipv4::HEADER_LEN..len];
    body[0] = ty;
    body[1] = code;
    body[4..8].copy_from_slice(&rest);
    let (ih, iq) = body[icmp::HEADER_LEN..].split_at_mut(ipv4::HEADER_LEN);
    let inner_total = (usize::from(payload) + ipv4::HEADER_LEN).min(usize::from(u16::MAX));
    write_v4_header(
        ih,
        tclass,
        inner_total as u16,
        inner_hop,
        inner_proto,
        e.inner_src.0,
        e.inner_dst.0,
    );
    iq.copy_from_slice(&quote[..q]);
    let delta = Delta::NONE
        .u128(u128::from(isrc), 0)
        .u128(u128::from(idst), 0)
        .u32(0, u32::from(e.inner_src.0))
        .u32(0, u32::from(e.inner_dst.0))
        .u16(rd16(iq, 0), e.inner_src.1)
        .u16(rd16(iq, 2), e.inner_dst.1);
    wr16(iq, 0, e.inner_src.1);
    wr16(iq, 2, e.inner_dst.1);
    if let Some(at) = quoted_csum_at(inner_proto).filter(|at| at + 2 <= q) {
        let old = rd16(iq, at);
        let mut new = delta.apply(old);
        if inner_proto == IpProtocol::UDP.0 {
            new = checksum::udp_transmitted(new);
        }
        wr16(iq, at, new);
    }
    let c = checksum::checksum(body);
    wr16(body, 2, c);
    replace_l3(pkt, l3, end - l3, &out[..len], EtherType::IPV4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::craft::{self, L2};
    use crate::packet::icmp::{emit_error, IcmpError};
    use crate::packet::{ethernet, parse_frame, IpPair, Ipv4Packet, MacAddr, TcpFlags, VecBuf};
    use std::net::{IpAddr, SocketAddr};

    const L2S: L2 = L2 {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
    };
    const CLIENT: &str = "[2001:db8:1::10]:40000";
    const VIP: &str = "[2001:db8:2::100]:80";
    const LOCAL: &str = "198.19.0.2:5001";
    const REAL: &str = "198.19.0.11:8080";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn v4end(s: &str) -> V4End {
        match sa(s) {
            SocketAddr::V4(a) => (*a.ip(), a.port()),
            SocketAddr::V6(_) => panic!("{s}"),
        }
    }
    fn v6end(s: &str) -> V6End {
        match sa(s) {
            SocketAddr::V6(a) => (*a.ip(), a.port()),
            SocketAddr::V4(_) => panic!("{s}"),
        }
    }

    /// Parses `frame` and hands its classification to `f` with the buffer.
    fn with_parsed<R>(
        buf: &mut VecBuf,
        f: impl FnOnce(&mut VecBuf, &FrameInfo, &IpInfo) -> R,
    ) -> R {
        let info = parse_frame(buf.data(), false).unwrap();
        let ip = *info.ip().unwrap();
        f(buf, &info, &ip)
    }

    /// The L3 packet of a frame (without padding) and its parsed info.
    fn l3_of(frame: &[u8]) -> (Vec<u8>, IpInfo) {
        let info = parse_frame(frame, false).unwrap();
        let ip = *info.ip().unwrap();
        (
            frame[usize::from(info.l3_offset)..info.l3_end()].to_vec(),
            ip,
        )
    }

    fn set_tclass(frame: &mut [u8], tc: u8) {
        let h = &mut frame[ethernet::HEADER_LEN..];
        h[0] = 0x60 | tc >> 4;
        h[1] = (h[1] & 0x0f) | tc << 4;
    }

    fn set_tos_ttl(frame: &mut [u8], tos: u8, ttl: u8) {
        let h = &mut frame[ethernet::HEADER_LEN..ethernet::HEADER_LEN + 20];
        h[1] = tos;
        h[8] = ttl;
        wr16(h, 10, 0);
        let c = checksum::checksum(h);
        wr16(h, 10, c);
    }

    #[test]
    fn tcp_to_v4_matches_a_segment_built_from_scratch() {
        let payload = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut frame = craft::tcp(
            L2S,
            sa(CLIENT),
            sa(VIP),
            TcpFlags::ACK | TcpFlags::PSH,
            1000,
            2000,
            payload,
        );
        set_tclass(&mut frame, 0xb8);
        let mut buf = VecBuf::from_frame(&frame);
        let (local, real) = (v4end(LOCAL), v4end(REAL));
        with_parsed(&mut buf, |b, info, ip| {
            to_v4(b, info, ip, Proto::Tcp, local, real)
        })
        .unwrap();

        let expected = craft::tcp(
            L2S,
            sa(LOCAL),
            sa(REAL),
            TcpFlags::ACK | TcpFlags::PSH,
            1000,
            2000,
            payload,
        );
        let (got, gip) = l3_of(buf.data());
        let (want, _) = l3_of(&expected);
        // Ethernet header kept, EtherType now IPv4.
        assert_eq!(&buf.data()[..12], &frame[..12]);
        assert_eq!(&buf.data()[12..14], &[0x08, 0x00]);
        assert_eq!(got.len(), want.len());
        // The TCP segment, checksum included, as if built for IPv4 in the first place.
        assert_eq!(&got[20..], &want[20..]);
        assert!(craft::sum_verifies(&got[..20]), "IPv4 header checksum");
        assert_eq!(got[1], 0xb8, "traffic class becomes TOS");
        assert_eq!(got[8], 63, "hop limit 64 less one");
        assert_eq!(&got[6..8], &[0x40, 0], "DF set");
        assert_eq!(
            gip.addrs,
            IpPair::V4 {
                src: local.0,
                dst: real.0
            }
        );
        assert!(craft::l4_checksum_ok(
            &gip.addrs,
            IpProtocol::TCP,
            &got[20..]
        ));
    }

    #[test]
    fn tcp_to_v6_matches_a_segment_built_from_scratch() {
        let payload = vec![0x5a; 1000];
        let mut frame = craft::tcp(L2S, sa(REAL), sa(LOCAL), TcpFlags::ACK, 77, 1001, &payload);
        set_tos_ttl(&mut frame, 0x28, 50);
        let mut buf = VecBuf::from_frame(&frame);
        let (vip, client) = (v6end(VIP), v6end(CLIENT));
        with_parsed(&mut buf, |b, info, ip| {
            to_v6(b, info, ip, Proto::Tcp, vip, client)
        })
        .unwrap();
        let expected = craft::tcp(L2S, sa(VIP), sa(CLIENT), TcpFlags::ACK, 77, 1001, &payload);
        let (got, gip) = l3_of(buf.data());
        let (want, _) = l3_of(&expected);
        assert_eq!(&buf.data()[12..14], &[0x86, 0xdd]);
        assert_eq!(&buf.data()[..12], &frame[..12]);
        assert_eq!(got.len(), want.len());
        assert_eq!(got.len(), frame.len() - 14 + GROWTH);
        assert_eq!(&got[40..], &want[40..]);
        assert_eq!(&got[4..7], &want[4..7], "payload length and next header");
        assert_eq!(got[7], 49, "TTL 50 less one");
        assert_eq!(
            got[0] << 4 | got[1] >> 4,
            0x28,
            "TOS becomes the traffic class"
        );
        assert_eq!(
            gip.addrs,
            IpPair::V6 {
                src: vip.0,
                dst: client.0
            }
        );
    }

    #[test]
    fn udp_both_ways_with_checksums_from_scratch() {
        let payload = b"ping";
        // IPv6 to IPv4.
        let frame = craft::udp(L2S, sa(CLIENT), sa(VIP), payload);
        let mut buf = VecBuf::from_frame(&frame);
        let (local, real) = (v4end(LOCAL), v4end(REAL));
        with_parsed(&mut buf, |b, info, ip| {
            to_v4(b, info, ip, Proto::Udp, local, real)
        })
        .unwrap();
        let (got, _) = l3_of(buf.data());
        let (want, _) = l3_of(&craft::udp(L2S, sa(LOCAL), sa(REAL), payload));
        assert_eq!(&got[20..], &want[20..]);
        assert!(craft::sum_verifies(&got[..20]));

        // IPv4 to IPv6, with a checksum and without one (computed in full).
        let (vip, client) = (v6end(VIP), v6end(CLIENT));
        let want = l3_of(&craft::udp(L2S, sa(VIP), sa(CLIENT), b"pong")).0;
        for zero in [false, true] {
            let mut frame = craft::udp(L2S, sa(REAL), sa(LOCAL), b"pong");
            if zero {
                frame[14 + 20 + 6..14 + 20 + 8].fill(0);
            }
            let mut buf = VecBuf::from_frame(&frame);
            with_parsed(&mut buf, |b, info, ip| {
                to_v6(b, info, ip, Proto::Udp, vip, client)
            })
            .unwrap();
            let (got, gip) = l3_of(buf.data());
            assert_eq!(&got[40..], &want[40..], "zero checksum: {zero}");
            assert!(craft::l4_checksum_ok(
                &gip.addrs,
                IpProtocol::UDP,
                &got[40..]
            ));
        }
    }

    #[test]
    fn a_packet_at_its_last_hop_is_refused_unchanged() {
        let mut frame = craft::udp(L2S, sa(REAL), sa(LOCAL), b"x");
        set_tos_ttl(&mut frame, 0, 1);
        let mut buf = VecBuf::from_frame(&frame);
        let (vip, client) = (v6end(VIP), v6end(CLIENT));
        let r = with_parsed(&mut buf, |b, info, ip| {
            to_v6(b, info, ip, Proto::Udp, vip, client)
        });
        assert_eq!(r, Err(DropReason::TtlExceeded));
        assert_eq!(buf.data(), &frame[..]);
    }

    #[test]
    fn frag_needed_from_the_server_side_becomes_packet_too_big() {
        // What we sent the server: local -> real, 1400 bytes.
        let sent = craft::tcp(L2S, sa(LOCAL), sa(REAL), TcpFlags::ACK, 5, 6, &[1; 1360]);
        let (sent_l3, _) = l3_of(&sent);
        let router = Ipv4Addr::new(198, 19, 0, 254);
        let mut icmp4 = vec![0u8; 600];
        let n = emit_error(
            &mut icmp4,
            IcmpError::FragmentationNeeded { next_hop_mtu: 1300 },
            router,
            &sent_l3,
        )
        .unwrap();
        // Addressed to the local address, from the router.
        let mut frame = vec![0u8; 14];
        frame[..12].copy_from_slice(&sent[..12]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&icmp4[..n]);
        assert_eq!(
            Ipv4Packet::new_unchecked(&frame[14..]).dst_addr(),
            v4end(LOCAL).0
        );
        let mut buf = VecBuf::from_frame(&frame);
        let ends = ErrorEnds {
            src: v6end(VIP).0,
            dst: v6end(CLIENT).0,
            inner_src: v6end(CLIENT),
            inner_dst: v6end(VIP),
        };
        with_parsed(&mut buf, |b, info, ip| icmp_error_to_v6(b, info, ip, &ends)).unwrap();
        let info = parse_frame(buf.data(), false).unwrap();
        let ip = info.ip().unwrap();
        assert_eq!(
            ip.addrs,
            IpPair::V6 {
                src: ends.src,
                dst: ends.dst
            }
        );
        assert_eq!(ip.ttl, 63, "error's TTL 64 less one");
        let msg = &buf.data()[14 + 40..info.l3_end()];
        assert_eq!((msg[0], msg[1]), (2, 0), "packet too big");
        assert_eq!(u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]), 1320);
        assert!(
            (checksum::pseudo_header_v6(ends.src, ends.dst, IpProtocol::ICMPV6, msg.len() as u32)
                + Sum::of(msg))
            .verifies(),
            "ICMPv6 checksum"
        );
        // The quote: the packet the client sent, as it sent it (from scratch).
        let quote = &msg[8..];
        let (orig, _) = l3_of(&craft::tcp(
            L2S,
            sa(CLIENT),
            sa(VIP),
            TcpFlags::ACK,
            5,
            6,
            &[1; 1360],
        ));
        let q = quote.len();
        assert_eq!(
            &quote[..8],
            &orig[..8],
            "version, payload length, next header, hop"
        );
        assert_eq!(
            &quote[8..q],
            &orig[8..q],
            "addresses, ports, checksum, data"
        );
        // The translated error fits the IPv6 minimum MTU.
        assert!(info.l3_end() - 14 <= icmpv6::MAX_ERROR_LEN);
    }

    #[test]
    fn packet_too_big_from_the_client_side_becomes_frag_needed() {
        // What we sent the client: VIP -> client.
        let sent = craft::tcp(L2S, sa(VIP), sa(CLIENT), TcpFlags::ACK, 9, 10, &[2; 1400]);
        let (sent_l3, _) = l3_of(&sent);
        let router: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let mut icmp6 = vec![0u8; 1280];
        let n = icmpv6::emit_packet_too_big(&mut icmp6, router, &sent_l3, 1400).unwrap();
        let mut frame = vec![0u8; 14];
        frame[..12].copy_from_slice(&sent[..12]);
        frame[12..14].copy_from_slice(&[0x86, 0xdd]);
        frame.extend_from_slice(&icmp6[..n]);
        let mut buf = VecBuf::from_frame(&frame);
        let ends = ErrorEnds {
            src: v4end(LOCAL).0,
            dst: v4end(REAL).0,
            inner_src: v4end(REAL),
            inner_dst: v4end(LOCAL),
        };
        with_parsed(&mut buf, |b, info, ip| icmp_error_to_v4(b, info, ip, &ends)).unwrap();
        let info = parse_frame(buf.data(), false).unwrap();
        let ip = info.ip().unwrap();
        assert_eq!(
            ip.addrs,
            IpPair::V4 {
                src: ends.src,
                dst: ends.dst
            }
        );
        assert!(info.l3_end() - 14 <= icmp::MAX_ERROR_LEN);
        let l3 = &buf.data()[14..info.l3_end()];
        assert!(craft::sum_verifies(&l3[..20]));
        let msg = &l3[20..];
        assert_eq!((msg[0], msg[1]), (3, 4), "fragmentation needed");
        assert_eq!(u16::from_be_bytes([msg[6], msg[7]]), 1380);
        assert!(craft::sum_verifies(msg), "ICMP checksum");
        let quote = &msg[8..];
        let (orig, _) = l3_of(&craft::tcp(
            L2S,
            sa(REAL),
            sa(LOCAL),
            TcpFlags::ACK,
            9,
            10,
            &[2; 1400],
        ));
        assert!(craft::sum_verifies(&quote[..20]), "quoted header checksum");
        assert_eq!(&quote[2..4], &orig[2..4], "quoted total length");
        // (Identification 0 here, so the header checksum differs; it verifies.)
        assert_eq!(quote[9], orig[9], "protocol");
        assert_eq!(&quote[12..20], &orig[12..20], "addresses");
        assert_eq!(&quote[20..], &orig[20..quote.len()], "segment");
    }

    #[test]
    fn rfc7915_type_and_code_mapping() {
        // ICMPv4 to ICMPv6 (section 4.2).
        assert_eq!(icmp4_to_6(3, 0, [0; 4]), Some((1, 0, [0; 4])));
        assert_eq!(icmp4_to_6(3, 3, [0; 4]), Some((1, 4, [0; 4])));
        assert_eq!(icmp4_to_6(3, 13, [0; 4]), Some((1, 1, [0; 4])));
        assert_eq!(icmp4_to_6(3, 2, [0; 4]), Some((4, 1, [0, 0, 0, 6])));
        assert_eq!(
            icmp4_to_6(3, 4, [0, 0, 0x05, 0xdc]),
            Some((2, 0, 1520u32.to_be_bytes()))
        );
        assert_eq!(icmp4_to_6(11, 1, [0; 4]), Some((3, 1, [0; 4])));
        assert_eq!(icmp4_to_6(12, 0, [9, 0, 0, 0]), Some((4, 0, [0, 0, 0, 6])));
        assert_eq!(
            icmp4_to_6(12, 0, [16, 0, 0, 0]),
            Some((4, 0, [0, 0, 0, 24]))
        );
        assert_eq!(icmp4_to_6(12, 0, [5, 0, 0, 0]), None);
        assert_eq!(icmp4_to_6(3, 14, [0; 4]), None);
        assert_eq!(icmp4_to_6(4, 0, [0; 4]), None, "source quench");
        assert_eq!(icmp4_to_6(5, 0, [0; 4]), None, "redirect");
        // ICMPv6 to ICMPv4 (section 5.2).
        assert_eq!(icmp6_to_4(1, 0, [0; 4]), Some((3, 1, [0; 4])));
        assert_eq!(icmp6_to_4(1, 1, [0; 4]), Some((3, 10, [0; 4])));
        assert_eq!(icmp6_to_4(1, 4, [0; 4]), Some((3, 3, [0; 4])));
        assert_eq!(
            icmp6_to_4(2, 0, 1500u32.to_be_bytes()),
            Some((3, 4, [0, 0, 0x05, 0xc8]))
        );
        assert_eq!(icmp6_to_4(3, 0, [0; 4]), Some((11, 0, [0; 4])));
        assert_eq!(
            icmp6_to_4(4, 0, [0, 0, 0, 24]),
            Some((12, 0, [16, 0, 0, 0]))
        );
        assert_eq!(icmp6_to_4(4, 1, [0; 4]), Some((3, 2, [0; 4])));
        assert_eq!(icmp6_to_4(4, 2, [0; 4]), None);
        assert_eq!(icmp6_to_4(1, 5, [0; 4]), None);
        let _ = IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
}
