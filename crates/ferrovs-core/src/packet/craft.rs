//! Whole frames built from a few parameters, with correct checksums: for unit tests
//! of the pipeline, benchmarks and generated benchmark traffic. Allocates; never
//! used on the packet path.

use super::arp;
use super::checksum::{self, Sum};
use super::ethernet::{self, EtherType, MacAddr};
use super::icmp::{self, IcmpType, Icmpv4Packet};
use super::icmpv6::{self, Icmpv6Packet, Icmpv6Type};
use super::ip::{IpPair, IpProtocol};
use super::ipv4::{self, Ipv4Repr};
use super::ipv6::{self, Ipv6Repr};
use super::tcp::{self, TcpFlags, TcpPacket};
use super::udp::{self, UdpPacket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Ethernet addresses and IP header fields shared by the builders.
#[derive(Debug, Clone, Copy)]
pub struct L2 {
    /// Source MAC address of the frames built.
    pub src: MacAddr,
    /// Destination MAC address of the frames built.
    pub dst: MacAddr,
}

/// Pads a frame to the 60-byte Ethernet minimum, as a NIC would.
pub fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

/// An Ethernet frame around an IP packet from `src` to `dst` carrying `l4`
/// (already complete, checksum included) as `protocol`.
pub fn ip_frame(
    l2: L2,
    src: IpAddr,
    dst: IpAddr,
    protocol: IpProtocol,
    ttl: u8,
    l4: &[u8],
) -> Vec<u8> {
    let (ethertype, ip_len) = match src {
        IpAddr::V4(_) => (EtherType::IPV4, ipv4::HEADER_LEN),
        IpAddr::V6(_) => (EtherType::IPV6, ipv6::HEADER_LEN),
    };
    let mut frame = vec![0u8; ethernet::HEADER_LEN + ip_len + l4.len()];
    ethernet::emit_header(&mut frame, l2.dst, l2.src, ethertype).expect("room for header");
    let ip = &mut frame[ethernet::HEADER_LEN..];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol,
            payload_len: l4.len(),
            ttl,
            tos: 0,
            ident: 0x1234,
            dont_fragment: true,
        }
        .emit(ip)
        .expect("valid IPv4 header"),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: protocol,
            payload_len: l4.len(),
            hop_limit: ttl,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(ip)
        .expect("valid IPv6 header"),
        _ => panic!("mixed address families"),
    }
    frame[ethernet::HEADER_LEN + ip_len..].copy_from_slice(l4);
    pad(frame)
}

fn pair(src: IpAddr, dst: IpAddr) -> IpPair {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => IpPair::V4 { src, dst },
        (IpAddr::V6(src), IpAddr::V6(dst)) => IpPair::V6 { src, dst },
        _ => panic!("mixed address families"),
    }
}

/// A UDP datagram from `src` to `dst`.
pub fn udp(l2: L2, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; udp::HEADER_LEN + payload.len()];
    seg[udp::HEADER_LEN..].copy_from_slice(payload);
    {
        let mut u = UdpPacket::new_unchecked(&mut seg[..]);
        u.set_src_port(src.port());
        u.set_dst_port(dst.port());
        u.set_len((udp::HEADER_LEN + payload.len()) as u16);
        u.fill_checksum(&pair(src.ip(), dst.ip()));
    }
    ip_frame(l2, src.ip(), dst.ip(), IpProtocol::UDP, 64, &seg)
}

/// A TCP segment from `src` to `dst` without options.
pub fn tcp(
    l2: L2,
    src: SocketAddr,
    dst: SocketAddr,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = vec![0u8; tcp::HEADER_LEN + payload.len()];
    seg[tcp::HEADER_LEN..].copy_from_slice(payload);
    {
        let mut t = TcpPacket::new_unchecked(&mut seg[..]);
        t.set_src_port(src.port());
        t.set_dst_port(dst.port());
        t.set_seq_number(seq);
        t.set_ack_number(ack);
        t.set_header_len(tcp::HEADER_LEN);
        t.set_flags(flags);
        t.set_window(65535);
        t.fill_checksum(&pair(src.ip(), dst.ip()));
    }
    ip_frame(l2, src.ip(), dst.ip(), IpProtocol::TCP, 64, &seg)
}

/// An ICMP (IPv4) or ICMPv6 echo request.
pub fn echo_request(
    l2: L2,
    src: IpAddr,
    dst: IpAddr,
    ident: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut msg = vec![0u8; icmp::HEADER_LEN + payload.len()];
    msg[icmp::HEADER_LEN..].copy_from_slice(payload);
    match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            let mut m = Icmpv4Packet::new_checked(&mut msg[..]).expect("8-byte header");
            m.set_msg_type(IcmpType::ECHO_REQUEST);
            m.set_code(0);
            m.set_echo_ident(ident);
            m.set_echo_seq_no(seq);
            m.fill_checksum();
            ip_frame(l2, src, dst, IpProtocol::ICMP, 64, &msg)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut m = Icmpv6Packet::new_checked(&mut msg[..]).expect("8-byte header");
            m.set_msg_type(Icmpv6Type::ECHO_REQUEST);
            m.set_code(0);
            m.set_echo_ident(ident);
            m.set_echo_seq_no(seq);
            m.fill_checksum(s, d);
            ip_frame(l2, src, dst, IpProtocol::ICMPV6, 64, &msg)
        }
        _ => panic!("mixed address families"),
    }
}

/// An ARP request from `sender` asking for `target`, broadcast and padded.
pub fn arp_request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = vec![0u8; 60];
    arp::emit_request(&mut frame, sender_mac, sender_ip, target_ip).expect("room for ARP");
    frame
}

/// An ARP reply telling `target` that `sender_ip` is at `sender_mac`.
pub fn arp_reply(
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut frame = arp_request(target_mac, target_ip, sender_ip);
    arp::reply_in_place(&mut frame, sender_mac).expect("request turns into reply");
    frame
}

/// A neighbour solicitation from `src` asking for `target`.
pub fn neighbor_solicit(src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut frame = vec![0u8; icmpv6::ND_FRAME_LEN];
    let len = icmpv6::emit_neighbor_solicit(&mut frame, src_mac, src, target).expect("room for NS");
    frame.truncate(len);
    frame
}

/// The ones-complement checksum of `data` (for assertions in tests).
pub fn sum_verifies(data: &[u8]) -> bool {
    Sum::of(data).verifies()
}

/// Verifies an L4 checksum over the pseudo-header of `addrs`.
pub fn l4_checksum_ok(addrs: &IpPair, protocol: IpProtocol, l4: &[u8]) -> bool {
    (checksum::pseudo_header(addrs, protocol, l4.len() as u32) + Sum::of(l4)).verifies()
}
