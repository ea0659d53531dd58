//! The frame parser and the header views on arbitrary bytes.
//!
//! Everything a worker reads off the wire goes through `parse_frame` first, and
//! the pipeline then indexes the frame with the offsets it returned; the views
//! (`Ipv4Packet`, `TcpPacket`, ...) index without checks once `new_checked`
//! passed. So: no input may make them panic, and what they claim must hold.
//!
//! Checked, beyond "no panic":
//! - `parse_frame`: offsets and lengths it returns lie within the frame (the L3
//!   packet, the L4 header after the L3 header), the family matches the
//!   EtherType, a VLAN tag only when allowed, and the views agree with it.
//! - `parse_ipv4_flow` (the burst path's parser) answers only for frames that
//!   `parse_frame` accepts, with the same fields (its documented contract).
//! - Checksums: whatever verifies keeps verifying after the incremental
//!   rewrites the forwarding modes use (addresses with the returned delta applied
//!   to the L4 checksum, ports, TTL, sequence numbers, MSS clamping, echo reply),
//!   and `fill_checksum` always produces a checksum that verifies.
//! - The emitters (ICMP errors, packet too big, ARP replies) either refuse or
//!   produce a packet the parser and views accept, checksums verified.
//!
//! Input: one flag byte (bit 0: VLAN tags allowed), `PARAMS` bytes of values the
//! rewrites write (new addresses, port, TTL, MSS), then the frame.

#![no_main]

use ferrovs_core::forward::quoted_flow;
use ferrovs_core::packet::arp::{self, ArpOperation};
use ferrovs_core::packet::icmp::{emit_error, IcmpError};
use ferrovs_core::packet::icmpv6::{self, NeighborAdvert, NeighborSolicit};
use ferrovs_core::packet::parse::{FrameInfo, IpInfo, L3Info, L4Header};
use ferrovs_core::packet::{
    parse_frame, parse_ipv4_flow, ArpPacket, EtherType, EthernetFrame, IcmpType, Icmpv4Packet,
    Icmpv6Packet, IpPair, IpProtocol, Ipv4Packet, Ipv6Packet, MacAddr, Proto, TcpPacket, UdpPacket,
};
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Bytes of rewrite values before the frame.
const PARAMS: usize = 26;

/// The values the rewrites write, from the input.
struct Params {
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    port: u16,
    ttl: u8,
    mss: u16,
    seq: u32,
}

impl Params {
    fn new(p: &[u8; PARAMS]) -> Params {
        Params {
            v4: Ipv4Addr::new(p[0], p[1], p[2], p[3]),
            v6: Ipv6Addr::from(<[u8; 16]>::try_from(&p[4..20]).unwrap()),
            port: u16::from_be_bytes([p[20], p[21]]),
            ttl: p[22],
            mss: u16::from_be_bytes([p[23], p[24]]),
            seq: u32::from_be_bytes([p[25], p[0], p[21], p[3]]),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut params = [0u8; PARAMS];
    let n = rest.len().min(PARAMS);
    params[..n].copy_from_slice(&rest[..n]);
    let frame = &rest[n..];
    let params = Params::new(&params);
    let vlans = flags & 1 != 0;

    check_parse(frame, vlans);
    check_fast_parser(frame);
    check_views(frame);
    if let Some(l3) = frame.get(14..) {
        check_views(l3);
        check_emitters(l3, &params);
    }
    check_rewrites(frame, vlans, &params);
    check_arp_reply(frame);
});

/// `parse_frame`'s answer is consistent with the frame and with the views.
fn check_parse(frame: &[u8], vlans: bool) {
    let Ok(info) = parse_frame(frame, vlans) else {
        return;
    };
    let l3 = usize::from(info.l3_offset);
    match info.vlan {
        Some(_) => assert!(vlans && l3 == 18, "tag without VLANs, or at {l3}"),
        None => assert_eq!(l3, 14),
    }
    assert!(info.l3_end() <= frame.len(), "L3 end past the frame");
    let payload = &frame[l3..];
    match &info.l3 {
        L3Info::Arp => {
            assert_eq!(info.ethertype, EtherType::ARP);
            ArpPacket::new_checked(payload).expect("parser accepted ARP");
        }
        L3Info::Ip(ip) => {
            let header_len = usize::from(ip.header_len);
            let total_len = ip.total_len as usize;
            assert!(header_len <= total_len, "header longer than the packet");
            match ip.addrs {
                IpPair::V4 { src, dst } => {
                    assert_eq!(info.ethertype, EtherType::IPV4);
                    let v = Ipv4Packet::new_checked(payload).expect("parser accepted IPv4");
                    assert!(v.verify_checksum(), "parser accepted a bad header checksum");
                    assert_eq!((v.src_addr(), v.dst_addr()), (src, dst));
                    assert_eq!(v.header_len(), header_len);
                    assert_eq!(usize::from(v.total_len()), total_len);
                    assert_eq!(v.ttl(), ip.ttl);
                    assert!(header_len >= 20);
                    assert!(!ip.source_routed);
                }
                IpPair::V6 { src, dst } => {
                    assert_eq!(info.ethertype, EtherType::IPV6);
                    let v = Ipv6Packet::new_checked(payload).expect("parser accepted IPv6");
                    assert_eq!((v.src_addr(), v.dst_addr()), (src, dst));
                    assert_eq!(v.total_len(), total_len);
                    assert!(header_len >= 40);
                    let upper = v
                        .upper_layer()
                        .expect("parser walked the extension headers");
                    assert_eq!(upper.offset, header_len);
                    assert_eq!(upper.protocol, ip.protocol);
                }
            }
            if let Some(l4) = ip.l4 {
                let at = usize::from(l4.offset);
                assert_eq!(at, l3 + header_len, "L4 header not after the L3 header");
                let min = match l4.header {
                    L4Header::Tcp { .. } => 20,
                    L4Header::Udp { .. } | L4Header::Icmpv4 { .. } => 8,
                    L4Header::Icmpv6 { .. } => 4,
                };
                assert!(at + min <= info.l3_end(), "L4 header past the packet");
                check_l4_view(&frame[at..info.l3_end()], ip, &l4.header);
            }
            // The ICMP error path reads the quoted packet from the parser's offsets.
            let _ = quoted_flow(frame, &info, ip);
        }
    }
}

/// The views over an L4 segment the parser classified agree with it.
fn check_l4_view(segment: &[u8], ip: &IpInfo, header: &L4Header) {
    match *header {
        L4Header::Tcp {
            src_port,
            dst_port,
            flags,
        } => {
            let t = TcpPacket::new_checked(segment).expect("parser accepted TCP");
            assert_eq!(
                (t.src_port(), t.dst_port(), t.flags()),
                (src_port, dst_port, flags)
            );
            assert_eq!(ip.ports(), Some((src_port, dst_port)));
        }
        L4Header::Udp { src_port, dst_port } => {
            assert_eq!(
                (
                    u16::from_be_bytes([segment[0], segment[1]]),
                    u16::from_be_bytes([segment[2], segment[3]])
                ),
                (src_port, dst_port)
            );
        }
        L4Header::Icmpv4 { msg_type, code } => {
            let m = Icmpv4Packet::new_checked(segment).expect("parser accepted ICMP");
            assert_eq!((m.msg_type(), m.code()), (msg_type, code));
        }
        L4Header::Icmpv6 { msg_type, code } => {
            let m = Icmpv6Packet::new_checked(segment).expect("parser accepted ICMPv6");
            assert_eq!((m.msg_type(), m.code()), (msg_type, code));
        }
    }
}

/// The burst path's parser answers only for what the full parser accepts, with the
/// same fields.
fn check_fast_parser(frame: &[u8]) {
    let _ = parse_ipv4_flow(frame, true);
    let Some(flow) = parse_ipv4_flow(frame, false) else {
        return;
    };
    let info: FrameInfo = match parse_frame(frame, false) {
        Ok(info) => info,
        Err(e) => panic!("fast parser accepted {flow:?}, parse_frame refused: {e}"),
    };
    let ip = info.ip().expect("fast parser answers for IPv4 only");
    assert_eq!(
        ip.addrs,
        IpPair::V4 {
            src: flow.src,
            dst: flow.dst
        }
    );
    assert_eq!(ip.ports(), Some((flow.src_port, flow.dst_port)));
    assert_eq!(ip.total_len, u32::from(flow.total_len));
    assert_eq!(usize::from(ip.header_len), 20);
    assert!(!ip.fragment);
    assert_eq!(info.l3_end(), flow.l3_end());
    match (flow.proto, ip.l4.map(|l4| l4.header)) {
        (Proto::Tcp, Some(L4Header::Tcp { flags, .. })) => assert_eq!(flags, flow.tcp_flags),
        (Proto::Udp, Some(L4Header::Udp { .. })) => {}
        (proto, l4) => panic!("fast parser says {proto:?}, parse_frame {l4:?}"),
    }
}

/// Every view's accessors on arbitrary bytes, once `new_checked` accepted them.
fn check_views(data: &[u8]) {
    if let Ok(eth) = EthernetFrame::new_checked(data) {
        let _ = (
            eth.dst_addr(),
            eth.src_addr(),
            eth.ethertype(),
            eth.vlan_tag(),
        );
        let _ = (eth.payload_ethertype(), eth.payload_offset());
        assert!(eth.payload_offset() + eth.payload().len() == data.len());
    }
    if let Ok(a) = ArpPacket::new_checked(data) {
        let _ = (
            a.hardware_type(),
            a.protocol_type(),
            a.hardware_len(),
            a.protocol_len(),
        );
        let _ = (a.operation(), a.sender_hw_addr(), a.sender_proto_addr());
        let _ = (a.target_hw_addr(), a.target_proto_addr(), a.is_gratuitous());
    }
    for quoted in [false, true] {
        let v = if quoted {
            Ipv4Packet::new_checked_quoted(data)
        } else {
            Ipv4Packet::new_checked(data)
        };
        if let Ok(v) = v {
            let _ = (v.version(), v.dscp(), v.ecn(), v.ident(), v.dont_fragment());
            let _ = (
                v.more_fragments(),
                v.frag_offset(),
                v.is_fragment(),
                v.ttl(),
            );
            let _ = (v.protocol(), v.checksum(), v.addrs(), v.check_options());
            let _ = (v.header(), v.options(), v.verify_checksum());
            let _ = ferrovs_core::packet::icmp::error_allowed(&v);
            assert!(v.header_len() >= 20 && v.header().len() == v.header_len());
            assert!(v.payload().len() <= usize::from(v.total_len()) - v.header_len());
            check_l4_views(v.payload(), &v.addrs());
        }
    }
    if let Ok(v) = Ipv6Packet::new_checked(data) {
        let _ = (
            v.version(),
            v.traffic_class(),
            v.flow_label(),
            v.payload_len(),
        );
        let _ = (v.next_header(), v.hop_limit(), v.addrs());
        assert_eq!(v.payload().len() + 40, v.total_len());
        if let Ok(upper) = v.upper_layer() {
            assert!(upper.offset >= 40 && upper.offset <= v.total_len());
            let _ = upper.is_non_first_fragment();
            check_l4_views(&data[upper.offset..v.total_len()], &v.addrs());
        }
        let _ = NeighborSolicit::parse(&v);
        let _ = NeighborAdvert::parse(&v);
    }
    check_l4_views(
        data,
        &IpPair::V4 {
            src: Ipv4Addr::LOCALHOST,
            dst: Ipv4Addr::BROADCAST,
        },
    );
}

/// The L4 views' accessors on a segment.
fn check_l4_views(segment: &[u8], addrs: &IpPair) {
    if let Ok(t) = TcpPacket::new_checked(segment) {
        let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number());
        let _ = (t.flags(), t.window(), t.checksum(), t.urgent(), t.mss());
        let _ = (t.options(), t.payload(), t.verify_checksum(addrs));
        assert_eq!(t.header_len() + t.payload().len(), segment.len());
    }
    if let Ok(u) = UdpPacket::new_checked(segment) {
        let _ = (
            u.src_port(),
            u.dst_port(),
            u.checksum(),
            u.verify_checksum(addrs),
        );
        assert_eq!(u.payload().len() + 8, usize::from(u.len()));
    }
    if let Ok(m) = Icmpv4Packet::new_checked(segment) {
        let _ = (m.msg_type(), m.code(), m.checksum(), m.verify_checksum());
        let _ = (m.echo_ident(), m.echo_seq_no(), m.next_hop_mtu(), m.data());
        if let Some(q) = m.quoted_packet() {
            let _ = (q.addrs(), q.protocol(), q.payload());
        }
    }
    if let Ok(m) = Icmpv6Packet::new_checked(segment) {
        let _ = (m.msg_type(), m.code(), m.checksum(), m.mtu(), m.data());
        let _ = (
            m.echo_ident(),
            m.echo_seq_no(),
            m.na_flags(),
            m.target_addr(),
        );
        let _ = (m.source_link_addr(), m.target_link_addr());
        if let IpPair::V6 { src, dst } = *addrs {
            let _ = m.verify_checksum(src, dst);
        }
    }
}

/// The emitters of packets ferrovs originates, on an arbitrary offending packet.
fn check_emitters(offending: &[u8], p: &Params) {
    let mut buf = vec![0u8; 1500];
    let error = if p.ttl & 1 == 0 {
        IcmpError::FragmentationNeeded {
            next_hop_mtu: p.mss,
        }
    } else {
        IcmpError::TimeExceeded
    };
    if let Ok(n) = emit_error(&mut buf, error, p.v4, offending) {
        let v = Ipv4Packet::new_checked(&buf[..n]).expect("emitted IPv4");
        assert!(v.verify_checksum(), "emitted a bad IPv4 header checksum");
        assert_eq!(usize::from(v.total_len()), n);
        assert_eq!(v.src_addr(), p.v4);
        assert_eq!(v.protocol(), IpProtocol::ICMP);
        let m = Icmpv4Packet::new_checked(v.payload()).expect("emitted ICMP");
        assert!(m.verify_checksum(), "emitted a bad ICMP checksum");
        assert!(m.msg_type().is_error());
        let quoted = Ipv4Packet::new_checked_quoted(offending).expect("quoted a valid header");
        assert_eq!(v.dst_addr(), quoted.src_addr());
        assert!(n <= icmpv6::MAX_ERROR_LEN);
    }
    if let Ok(n) = icmpv6::emit_packet_too_big(&mut buf, p.v6, offending, u32::from(p.mss)) {
        let v = Ipv6Packet::new_checked(&buf[..n]).expect("emitted IPv6");
        assert_eq!(v.total_len(), n);
        assert!(n <= icmpv6::MAX_ERROR_LEN);
        let m = Icmpv6Packet::new_checked(v.payload()).expect("emitted ICMPv6");
        assert!(
            m.verify_checksum(v.src_addr(), v.dst_addr()),
            "emitted a bad ICMPv6 checksum"
        );
        assert_eq!(m.mtu(), u32::from(p.mss));
    }
}

/// An ARP request turned into a reply in place is a reply from us to the requester.
fn check_arp_reply(frame: &[u8]) {
    let ours = MacAddr([2, 0, 0, 0, 0, 1]);
    let mut f = frame.to_vec();
    let before = EthernetFrame::new_checked(frame).ok().and_then(|e| {
        ArpPacket::new_checked(e.payload())
            .ok()
            .map(|a| (a.sender_hw_addr(), a.operation()))
    });
    if arp::reply_in_place(&mut f, ours).is_ok() {
        let (requester, op) = before.expect("a reply needs an ARP packet");
        assert_eq!(op, ArpOperation::REQUEST);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (requester, ours));
        let a = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(a.operation(), ArpOperation::REPLY);
        assert_eq!((a.sender_hw_addr(), a.target_hw_addr()), (ours, requester));
        assert_eq!(f.len(), frame.len());
    }
}

/// The in-place rewrites the forwarding modes do keep every checksum that
/// verified verifying, and `fill_checksum` always makes one that does.
fn check_rewrites(frame: &[u8], vlans: bool, p: &Params) {
    let Ok(info) = parse_frame(frame, vlans) else {
        return;
    };
    let Some(ip) = info.ip() else { return };
    let l3 = usize::from(info.l3_offset);
    let end = info.l3_end();
    let l4 = ip.l4.map(|l4| usize::from(l4.offset) - l3);
    let mut pkt = frame[l3..end].to_vec();
    match ip.addrs {
        IpPair::V4 { .. } => rewrite_v4(&mut pkt, ip.protocol, l4, p),
        IpPair::V6 { .. } => rewrite_v6(&mut pkt, ip.protocol, l4, p),
    }
}

/// Which L4 checksums of `segment` verify over `addrs`.
fn l4_verifies(segment: &[u8], protocol: IpProtocol, addrs: &IpPair) -> Option<bool> {
    match protocol {
        IpProtocol::TCP => TcpPacket::new_checked(segment)
            .ok()
            .map(|t| t.verify_checksum(addrs)),
        IpProtocol::UDP => UdpPacket::new_checked(segment)
            .ok()
            .map(|u| u.verify_checksum(addrs)),
        IpProtocol::ICMP if addrs.is_ipv4() => Icmpv4Packet::new_checked(segment)
            .ok()
            .map(|m| m.verify_checksum()),
        IpProtocol::ICMPV6 => match *addrs {
            IpPair::V6 { src, dst } => Icmpv6Packet::new_checked(segment)
                .ok()
                .map(|m| m.verify_checksum(src, dst)),
            IpPair::V4 { .. } => None,
        },
        _ => None,
    }
}

/// NAT's L4 rewrites on `segment`: the address delta, then ports and (TCP)
/// sequence numbers and MSS, each fixing the checksum incrementally.
fn rewrite_l4(
    segment: &mut [u8],
    protocol: IpProtocol,
    delta: ferrovs_core::packet::Delta,
    p: &Params,
) {
    match protocol {
        IpProtocol::TCP => {
            if let Ok(mut t) = TcpPacket::new_checked(&mut *segment) {
                t.apply_checksum_delta(delta);
                t.rewrite_src_port(p.port);
                t.rewrite_dst_port(p.port.rotate_left(3));
                t.rewrite_seq_number(p.seq);
                t.rewrite_ack_number(p.seq.rotate_left(7));
                if let Ok(Some(mss)) = t.clamp_mss(p.mss) {
                    assert!(mss <= p.mss, "clamp_mss left {mss} above {}", p.mss);
                    assert_eq!(t.mss(), Ok(Some(mss)));
                }
            }
        }
        IpProtocol::UDP => {
            if let Ok(mut u) = UdpPacket::new_checked(&mut *segment) {
                let none = u.checksum() == 0;
                u.apply_checksum_delta(delta);
                u.rewrite_src_port(p.port);
                u.rewrite_dst_port(p.port.rotate_left(3));
                assert_eq!(
                    u.checksum() == 0,
                    none,
                    "UDP checksum 0 means none, and only then"
                );
            }
        }
        IpProtocol::ICMPV6 => {
            if let Ok(mut m) = Icmpv6Packet::new_checked(&mut *segment) {
                m.apply_checksum_delta(delta);
            }
        }
        _ => {}
    }
}

fn rewrite_v4(pkt: &mut [u8], protocol: IpProtocol, l4: Option<usize>, p: &Params) {
    let Ok(mut v) = Ipv4Packet::new_checked(&mut *pkt) else {
        return;
    };
    let old = v.addrs();
    let header_ok = v.verify_checksum();
    v.rewrite_ttl(p.ttl);
    let _ = v.decrement_ttl();
    let delta = v
        .rewrite_src_addr(p.v4)
        .and(v.rewrite_dst_addr(Ipv4Addr::from(u32::from(p.v4).rotate_left(9))));
    v.swap_addrs();
    let new = v.addrs();
    assert_eq!(
        v.verify_checksum(),
        header_ok,
        "IPv4 header checksum after rewrites"
    );
    let before = l4.and_then(|at| l4_verifies(&pkt[at..], protocol, &old));
    if let Some(at) = l4 {
        rewrite_l4(&mut pkt[at..], protocol, delta, p);
        if before == Some(true) {
            assert_eq!(
                l4_verifies(&pkt[at..], protocol, &new),
                Some(true),
                "{protocol:?} checksum broken by incremental rewrites"
            );
        }
        if protocol == IpProtocol::ICMP {
            let mut m = Icmpv4Packet::new_checked(&mut pkt[at..]).unwrap();
            let ok = m.verify_checksum();
            if m.msg_type() == IcmpType::ECHO_REQUEST && m.make_echo_reply().is_ok() {
                assert_eq!(
                    m.verify_checksum(),
                    ok,
                    "echo reply broke the ICMP checksum"
                );
                assert_eq!(m.msg_type(), IcmpType::ECHO_REPLY);
            }
        }
        fill_l4(&mut pkt[at..], protocol, &new);
    }
    let mut v = Ipv4Packet::new_checked(&mut *pkt).unwrap();
    v.fill_checksum();
    assert!(
        v.verify_checksum(),
        "fill_checksum made a bad IPv4 header checksum"
    );
}

fn rewrite_v6(pkt: &mut [u8], protocol: IpProtocol, l4: Option<usize>, p: &Params) {
    let Ok(mut v) = Ipv6Packet::new_checked(&mut *pkt) else {
        return;
    };
    let old = v.addrs();
    let _ = v.decrement_hop_limit();
    let other = Ipv6Addr::from(u128::from(p.v6).rotate_left(17));
    let delta = v.rewrite_src_addr(p.v6).and(v.rewrite_dst_addr(other));
    v.swap_addrs();
    let new = v.addrs();
    let before = l4.and_then(|at| l4_verifies(&pkt[at..], protocol, &old));
    if let Some(at) = l4 {
        rewrite_l4(&mut pkt[at..], protocol, delta, p);
        if before == Some(true) {
            assert_eq!(
                l4_verifies(&pkt[at..], protocol, &new),
                Some(true),
                "{protocol:?} checksum broken by incremental rewrites"
            );
        }
        if protocol == IpProtocol::ICMPV6 {
            if let IpPair::V6 { src, dst } = new {
                let mut m = Icmpv6Packet::new_checked(&mut pkt[at..]).unwrap();
                let ok = m.verify_checksum(src, dst);
                if m.make_echo_reply().is_ok() {
                    assert_eq!(
                        m.verify_checksum(src, dst),
                        ok,
                        "echo reply broke the checksum"
                    );
                }
            }
        }
        fill_l4(&mut pkt[at..], protocol, &new);
    }
}

/// `fill_checksum` on the L4 segment makes a checksum that verifies.
fn fill_l4(segment: &mut [u8], protocol: IpProtocol, addrs: &IpPair) {
    match protocol {
        IpProtocol::TCP => {
            if let Ok(mut t) = TcpPacket::new_checked(&mut *segment) {
                t.fill_checksum(addrs);
                assert!(t.verify_checksum(addrs), "TCP fill_checksum");
            }
        }
        IpProtocol::UDP => {
            if let Ok(mut u) = UdpPacket::new_checked(&mut *segment) {
                u.fill_checksum(addrs);
                assert!(
                    u.checksum() != 0 && u.verify_checksum(addrs),
                    "UDP fill_checksum"
                );
            }
        }
        IpProtocol::ICMP if addrs.is_ipv4() => {
            if let Ok(mut m) = Icmpv4Packet::new_checked(&mut *segment) {
                m.fill_checksum();
                assert!(m.verify_checksum(), "ICMP fill_checksum");
            }
        }
        IpProtocol::ICMPV6 => {
            if let (Ok(mut m), IpPair::V6 { src, dst }) =
                (Icmpv6Packet::new_checked(&mut *segment), *addrs)
            {
                m.fill_checksum(src, dst);
                assert!(m.verify_checksum(src, dst), "ICMPv6 fill_checksum");
            }
        }
        _ => {}
    }
}
