//! One-pass classification of a received frame for the worker.
//!
//! [`parse_frame`] validates what the forwarding decision relies on and extracts it
//! into a small `Copy` [`FrameInfo`]: L2 (EtherType, VLAN tag), L3 (addresses,
//! protocol, lengths, TTL, fragment flag) and L4 (ports, TCP flags, ICMP type/code).
//! Every reason to drop is a [`ParseError`] variant with a metrics label.
//!
//! The IPv4 header checksum is verified (a corrupt header could misroute); TCP/UDP/ICMP
//! checksums are not: forwarding rewrites them incrementally, so a corrupt one stays
//! corrupt and the receiver drops the packet, as with any router or LVS.

use std::fmt;

use super::arp::{self, ArpPacket};
use super::ethernet::{self, EtherType, EthernetFrame, VlanTag};
use super::icmp::{IcmpType, Icmpv4Packet};
use super::icmpv6::{Icmpv6Packet, Icmpv6Type};
use super::ip::{IpPair, IpProtocol};
use super::ipv4::{self, Ipv4Packet, OptionsCheck};
use super::ipv6::Ipv6Packet;
use super::tcp::{TcpFlags, TcpPacket};
use super::udp::{self, UdpPacket};
use super::{be, WireError};

/// Why a frame was dropped at classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// Shorter than an Ethernet header (14 bytes).
    Runt,
    /// A VLAN tag on a port configured without VLANs.
    VlanNotConfigured,
    /// A VLAN TPID without the 4 tag bytes after it.
    TruncatedVlan,
    /// A second VLAN tag (QinQ stacks are not handled).
    NestedVlan,
    /// An EtherType other than IPv4, IPv6 and ARP.
    UnknownEthertype,
    /// An ARP payload shorter than 28 bytes.
    TruncatedArp,
    /// ARP for other than Ethernet/IPv4.
    UnsupportedArp,
    /// An IPv4 header cut short by the end of the frame.
    TruncatedIpv4,
    /// An IPv6 header cut short by the end of the frame.
    TruncatedIpv6,
    /// The IP version nibble disagrees with the EtherType.
    IpVersionMismatch,
    /// IPv4 header length below 20 bytes.
    BadIhl,
    /// IPv4 total length below the header length or beyond the frame; IPv6 payload
    /// length beyond the frame.
    BadTotalLength,
    /// The IPv4 header checksum does not verify.
    BadIpv4Checksum,
    /// An IPv4 option of length 0 or 1, or running past the header.
    BadIpv4Options,
    /// An IPv4 loose or strict source route option (LSRR, SSRR).
    Ipv4SourceRoute,
    /// An IPv6 extension header that is truncated, repeated or out of place.
    BadIpv6ExtensionHeader,
    /// An IPv6 extension header chain longer than the parser follows.
    TooManyIpv6ExtensionHeaders,
    /// An IPv6 routing header of type 0, deprecated by RFC 5095 (it lets one packet
    /// bounce between hosts many times).
    Ipv6RoutingHeaderType0,
    /// A TCP, UDP or ICMP header cut short by the end of the IP packet.
    TruncatedL4,
    /// A TCP data offset below 5 or beyond the segment.
    BadTcpOffset,
    /// A UDP length below 8 or beyond the IP payload.
    BadUdpLength,
}

impl ParseError {
    /// Every variant, in declaration order, for pre-registering metric labels.
    pub const ALL: [ParseError; 21] = [
        ParseError::Runt,
        ParseError::VlanNotConfigured,
        ParseError::TruncatedVlan,
        ParseError::NestedVlan,
        ParseError::UnknownEthertype,
        ParseError::TruncatedArp,
        ParseError::UnsupportedArp,
        ParseError::TruncatedIpv4,
        ParseError::TruncatedIpv6,
        ParseError::IpVersionMismatch,
        ParseError::BadIhl,
        ParseError::BadTotalLength,
        ParseError::BadIpv4Checksum,
        ParseError::BadIpv4Options,
        ParseError::Ipv4SourceRoute,
        ParseError::BadIpv6ExtensionHeader,
        ParseError::TooManyIpv6ExtensionHeaders,
        ParseError::Ipv6RoutingHeaderType0,
        ParseError::TruncatedL4,
        ParseError::BadTcpOffset,
        ParseError::BadUdpLength,
    ];

    /// The snake_case metrics label of this reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            ParseError::Runt => "runt",
            ParseError::VlanNotConfigured => "vlan_not_configured",
            ParseError::TruncatedVlan => "truncated_vlan",
            ParseError::NestedVlan => "nested_vlan",
            ParseError::UnknownEthertype => "unknown_ethertype",
            ParseError::TruncatedArp => "truncated_arp",
            ParseError::UnsupportedArp => "unsupported_arp",
            ParseError::TruncatedIpv4 => "truncated_ipv4",
            ParseError::TruncatedIpv6 => "truncated_ipv6",
            ParseError::IpVersionMismatch => "ip_version_mismatch",
            ParseError::BadIhl => "bad_ihl",
            ParseError::BadTotalLength => "bad_total_length",
            ParseError::BadIpv4Checksum => "bad_ipv4_checksum",
            ParseError::BadIpv4Options => "bad_ipv4_options",
            ParseError::Ipv4SourceRoute => "ipv4_source_route",
            ParseError::BadIpv6ExtensionHeader => "bad_ipv6_extension_header",
            ParseError::TooManyIpv6ExtensionHeaders => "too_many_ipv6_extension_headers",
            ParseError::Ipv6RoutingHeaderType0 => "ipv6_routing_header_type0",
            ParseError::TruncatedL4 => "truncated_l4",
            ParseError::BadTcpOffset => "bad_tcp_offset",
            ParseError::BadUdpLength => "bad_udp_length",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

/// What [`parse_frame`] found in a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// The VLAN tag, when the frame carries one.
    pub vlan: Option<VlanTag>,
    /// EtherType of the L3 payload (after the VLAN tag).
    pub ethertype: EtherType,
    /// Offset of the L3 header in the frame: 14, or 18 after a VLAN tag.
    pub l3_offset: u16,
    /// The L3 part.
    pub l3: L3Info,
}

impl FrameInfo {
    /// The IP part, for IPv4 and IPv6 frames.
    pub fn ip(&self) -> Option<&IpInfo> {
        match &self.l3 {
            L3Info::Ip(ip) => Some(ip),
            L3Info::Arp => None,
        }
    }

    /// Where the L3 packet ends in the frame; anything after it is Ethernet padding.
    pub fn l3_end(&self) -> usize {
        let len = match &self.l3 {
            L3Info::Arp => arp::PACKET_LEN,
            L3Info::Ip(ip) => ip.total_len as usize,
        };
        usize::from(self.l3_offset) + len
    }
}

/// The L3 part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3Info {
    /// An Ethernet/IPv4 ARP packet (validated by [`ArpPacket::new_checked`]).
    Arp,
    /// An IPv4 or IPv6 packet; the family is that of `addrs`.
    Ip(IpInfo),
}

/// The IP part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    /// Source and destination.
    pub addrs: IpPair,
    /// IPv4: IHL * 4. IPv6: 40 plus the extension headers before the upper layer
    /// (for a non-first fragment, up to and including the fragment header).
    pub header_len: u16,
    /// IPv4 total length, or 40 + payload length for IPv6 (up to 65575).
    pub total_len: u32,
    /// The upper-layer protocol (after IPv6 extension headers).
    pub protocol: IpProtocol,
    /// TTL or hop limit.
    pub ttl: u8,
    /// True for any fragment, first or not.
    pub fragment: bool,
    /// IPv6: a routing header with segments left, so the destination address is a
    /// hop on the way, not the packet's final destination. Always false for IPv4,
    /// whose source-route options the parser refuses.
    pub source_routed: bool,
    /// The L4 header, for TCP, UDP, ICMP (over IPv4) and ICMPv6 (over IPv6), unless
    /// the packet is a non-first fragment.
    pub l4: Option<L4Info>,
}

impl IpInfo {
    /// Source and destination ports of TCP and UDP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.l4?.header {
            L4Header::Tcp {
                src_port, dst_port, ..
            }
            | L4Header::Udp { src_port, dst_port } => Some((src_port, dst_port)),
            L4Header::Icmpv4 { .. } | L4Header::Icmpv6 { .. } => None,
        }
    }
}

/// Where the L4 header is and what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Info {
    /// Offset of the L4 header in the frame.
    pub offset: u16,
    /// The header fields the worker classifies on.
    pub header: L4Header,
}

/// The L4 header fields the worker classifies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Header {
    /// TCP ports and flags.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Flags.
        flags: TcpFlags,
    },
    /// UDP ports.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP type and code.
    Icmpv4 {
        /// Message type.
        msg_type: IcmpType,
        /// Message code.
        code: u8,
    },
    /// ICMPv6 type and code.
    Icmpv6 {
        /// Message type.
        msg_type: Icmpv6Type,
        /// Message code.
        code: u8,
    },
}

/// Classifies `frame` (starting at the Ethernet header) in one pass. A VLAN tag is
/// accepted only with `vlans_allowed`. Ethernet padding after the IP packet is
/// normal and ignored.
pub fn parse_frame(frame: &[u8], vlans_allowed: bool) -> Result<FrameInfo, ParseError> {
    if frame.len() < ethernet::HEADER_LEN {
        return Err(ParseError::Runt);
    }
    let outer = EtherType(be::read_u16(frame, ethernet::field::ETHERTYPE));
    if outer.is_vlan_tag() && !vlans_allowed {
        return Err(ParseError::VlanNotConfigured);
    }
    // The frame holds the 14-byte header, so only the tag can be missing.
    let eth = EthernetFrame::new_checked(frame).map_err(|_| ParseError::TruncatedVlan)?;
    let ethertype = eth.payload_ethertype();
    if ethertype.is_vlan_tag() {
        return Err(ParseError::NestedVlan);
    }
    let l3_offset = eth.payload_offset();
    let payload = eth.payload();
    let l3 = match ethertype {
        EtherType::IPV4 => L3Info::Ip(parse_ipv4(payload, l3_offset)?),
        EtherType::IPV6 => L3Info::Ip(parse_ipv6(payload, l3_offset)?),
        EtherType::ARP => {
            ArpPacket::new_checked(payload).map_err(|e| match e {
                WireError::Truncated => ParseError::TruncatedArp,
                _ => ParseError::UnsupportedArp,
            })?;
            L3Info::Arp
        }
        _ => return Err(ParseError::UnknownEthertype),
    };
    Ok(FrameInfo {
        vlan: eth.vlan_tag(),
        ethertype,
        l3_offset: l3_offset as u16,
        l3,
    })
}

fn parse_ipv4(packet: &[u8], l3_offset: usize) -> Result<IpInfo, ParseError> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|e| match e {
        WireError::Truncated => ParseError::TruncatedIpv4,
        WireError::BadVersion => ParseError::IpVersionMismatch,
        WireError::BadHeaderLength => ParseError::BadIhl,
        _ => ParseError::BadTotalLength,
    })?;
    if !ip.verify_checksum() {
        return Err(ParseError::BadIpv4Checksum);
    }
    let header_len = ip.header_len();
    if header_len > ipv4::HEADER_LEN {
        match ip.check_options() {
            OptionsCheck::Acceptable => {}
            OptionsCheck::SourceRoute => return Err(ParseError::Ipv4SourceRoute),
            OptionsCheck::Malformed => return Err(ParseError::BadIpv4Options),
        }
    }
    let l4 = if ip.frag_offset() != 0 {
        None
    } else {
        let partial = ip.more_fragments();
        parse_l4(
            ip.protocol(),
            true,
            ip.payload(),
            partial,
            l3_offset + header_len,
        )?
    };
    Ok(IpInfo {
        addrs: ip.addrs(),
        header_len: header_len as u16,
        total_len: u32::from(ip.total_len()),
        protocol: ip.protocol(),
        ttl: ip.ttl(),
        fragment: ip.is_fragment(),
        source_routed: false,
        l4,
    })
}

fn parse_ipv6(packet: &[u8], l3_offset: usize) -> Result<IpInfo, ParseError> {
    let ip = Ipv6Packet::new_checked(packet).map_err(|e| match e {
        WireError::Truncated => ParseError::TruncatedIpv6,
        WireError::BadVersion => ParseError::IpVersionMismatch,
        _ => ParseError::BadTotalLength,
    })?;
    let upper = ip.upper_layer().map_err(|e| match e {
        WireError::TooManyExtensionHeaders => ParseError::TooManyIpv6ExtensionHeaders,
        _ => ParseError::BadIpv6ExtensionHeader,
    })?;
    if upper.routing.is_some_and(|r| r.routing_type == 0) {
        return Err(ParseError::Ipv6RoutingHeaderType0);
    }
    let l4 = if upper.is_non_first_fragment() {
        None
    } else {
        // upper_layer() keeps the offset within the payload length.
        let segment = &packet[upper.offset..ip.total_len()];
        let partial = upper.fragment.is_some_and(|f| f.more);
        parse_l4(
            upper.protocol,
            false,
            segment,
            partial,
            l3_offset + upper.offset,
        )?
    };
    Ok(IpInfo {
        addrs: ip.addrs(),
        header_len: upper.offset as u16,
        total_len: ip.total_len() as u32,
        protocol: upper.protocol,
        ttl: ip.hop_limit(),
        fragment: upper.fragment.is_some(),
        source_routed: upper.routing.is_some_and(|r| r.segments_left > 0),
        l4,
    })
}

/// Reads the L4 header of `segment` (the IP payload from the upper-layer header on).
/// `partial` marks a first fragment, whose segment ends early: the UDP length then
/// refers to the reassembled datagram and is not checked.
fn parse_l4(
    protocol: IpProtocol,
    ipv4: bool,
    segment: &[u8],
    partial: bool,
    offset: usize,
) -> Result<Option<L4Info>, ParseError> {
    let header = match protocol {
        IpProtocol::TCP => {
            let tcp = TcpPacket::new_checked(segment).map_err(|e| match e {
                WireError::Truncated => ParseError::TruncatedL4,
                _ => ParseError::BadTcpOffset,
            })?;
            L4Header::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                flags: tcp.flags(),
            }
        }
        IpProtocol::UDP => {
            let (src_port, dst_port) = if partial {
                let head = segment
                    .get(..udp::HEADER_LEN)
                    .ok_or(ParseError::TruncatedL4)?;
                (
                    be::read_u16(head, udp::field::SRC_PORT),
                    be::read_u16(head, udp::field::DST_PORT),
                )
            } else {
                let udp = UdpPacket::new_checked(segment).map_err(|e| match e {
                    WireError::Truncated => ParseError::TruncatedL4,
                    _ => ParseError::BadUdpLength,
                })?;
                (udp.src_port(), udp.dst_port())
            };
            L4Header::Udp { src_port, dst_port }
        }
        IpProtocol::ICMP if ipv4 => {
            let icmp = Icmpv4Packet::new_checked(segment).map_err(|_| ParseError::TruncatedL4)?;
            L4Header::Icmpv4 {
                msg_type: icmp.msg_type(),
                code: icmp.code(),
            }
        }
        IpProtocol::ICMPV6 if !ipv4 => {
            let icmp = Icmpv6Packet::new_checked(segment).map_err(|_| ParseError::TruncatedL4)?;
            L4Header::Icmpv6 {
                msg_type: icmp.msg_type(),
                code: icmp.code(),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(L4Info {
        offset: offset as u16,
        header,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testutil::{hex, XorShift};
    use crate::packet::{arp as arp_wire, icmp, icmpv6, MacAddr};
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ETH_V4: &str = "0200 0000 0001 0200 0000 0002 0800";
    const ETH_V6: &str = "0200 0000 0001 0200 0000 0002 86dd";

    /// The TCP SYN of the tcp tests, in an IPv4 packet, in a frame.
    fn tcp_syn_frame() -> Vec<u8> {
        let mut f = hex(ETH_V4);
        f.extend(hex("4500 003c 1c46 4000 4006 b1e6 ac10 0a63 ac10 0a0c"));
        f.extend(hex("d85e 0050 2d9a 1f33 0000 0000 a002 faf0 6eae 0000
             0204 05b4 0402 080a 0006 4c4f 0000 0000 0103 0307"));
        f
    }

    /// The DNS query of the udp tests, in a frame.
    fn udp_dns_frame() -> Vec<u8> {
        let mut f = hex(ETH_V4);
        let mut ip = hex("4500 0039 0000 4000 4011 0000 c0a8 010a c0a8 0101");
        Ipv4Packet::new_checked_quoted(&mut ip[..])
            .unwrap()
            .fill_checksum();
        f.extend(ip);
        f.extend(hex("c822 0035 0025 ca57 1a2b 0100 0001 0000 0000 0000
             0765 7861 6d70 6c65 0363 6f6d 0000 0100 01"));
        f
    }

    /// An IPv6 frame with `next` and `payload`.
    fn v6_frame(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = hex(ETH_V6);
        f.extend(hex("6000 0000"));
        f.extend((payload.len() as u16).to_be_bytes());
        f.extend([next, 64]);
        f.extend(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10).octets());
        f.extend(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64).octets());
        f.extend_from_slice(payload);
        f
    }

    /// Refreshes the IPv4 header checksum of an untagged frame after a test edit.
    /// Works on the raw bytes, so it can sign headers the view would refuse.
    fn refresh_v4(frame: &mut [u8]) {
        let header_len = usize::from(frame[14] & 0x0f) * 4;
        frame[24..26].fill(0);
        let sum = crate::packet::checksum::checksum(&frame[14..14 + header_len]);
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
    }

    /// `frame` (untagged IPv4) with `options` (a multiple of 4 bytes) inserted after
    /// its fixed IPv4 header, lengths and header checksum updated.
    fn with_ipv4_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
        let mut f = frame.to_vec();
        f.splice(34..34, options.iter().copied());
        f[14] = 0x45 + (options.len() / 4) as u8;
        let total = u16::from_be_bytes([f[16], f[17]]) + options.len() as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        refresh_v4(&mut f);
        f
    }

    #[test]
    fn ipv4_options_are_walked_and_source_routes_refused() {
        // Router alert: accepted, and the L4 header found after the options.
        let f = with_ipv4_options(&udp_dns_frame(), &[0x94, 4, 0, 0]);
        let ip = *parse_frame(&f, false).unwrap().ip().unwrap();
        assert_eq!(ip.header_len, 24);
        assert_eq!(ip.ports(), Some((51234, 53)));
        assert!(!ip.source_routed);
        // Strict source route, loose source route, a malformed option.
        let ssrr = with_ipv4_options(&udp_dns_frame(), &[0x89, 7, 4, 10, 0, 0, 1, 0]);
        assert_eq!(parse_frame(&ssrr, false), Err(ParseError::Ipv4SourceRoute));
        let lsrr = with_ipv4_options(&tcp_syn_frame(), &[1, 0x83, 3, 4]);
        assert_eq!(parse_frame(&lsrr, false), Err(ParseError::Ipv4SourceRoute));
        let past = with_ipv4_options(&tcp_syn_frame(), &[1, 1, 7, 3]);
        assert_eq!(parse_frame(&past, false), Err(ParseError::BadIpv4Options));
    }

    #[test]
    fn ipv6_routing_headers() {
        // Segments left: the destination is not final.
        let mut payload = vec![17, 0, 4, 1, 0, 0, 0, 0];
        payload.extend(hex("1f90 0035 000c 0000 6869 6a6b"));
        let ip = *parse_frame(&v6_frame(43, &payload), false)
            .unwrap()
            .ip()
            .unwrap();
        assert!(ip.source_routed);
        assert_eq!(ip.ports(), Some((8080, 53)));
        // None left: the destination is final.
        payload[3] = 0;
        let ip = *parse_frame(&v6_frame(43, &payload), false)
            .unwrap()
            .ip()
            .unwrap();
        assert!(!ip.source_routed);
        // Type 0 is refused whatever it says (RFC 5095).
        payload[2] = 0;
        assert_eq!(
            parse_frame(&v6_frame(43, &payload), false),
            Err(ParseError::Ipv6RoutingHeaderType0)
        );
        assert!(
            !parse_frame(&tcp_syn_frame(), false)
                .unwrap()
                .ip()
                .unwrap()
                .source_routed
        );
    }

    #[test]
    fn tcp_syn() {
        let frame = tcp_syn_frame();
        let info = parse_frame(&frame, false).unwrap();
        assert_eq!(info.vlan, None);
        assert_eq!(info.ethertype, EtherType::IPV4);
        assert_eq!(info.l3_offset, 14);
        assert_eq!(info.l3_end(), 74);
        let ip = info.ip().unwrap();
        assert_eq!(
            ip.addrs,
            IpPair::V4 {
                src: Ipv4Addr::new(172, 16, 10, 99),
                dst: Ipv4Addr::new(172, 16, 10, 12)
            }
        );
        assert_eq!(
            (ip.header_len, ip.total_len, ip.protocol, ip.ttl),
            (20, 60, IpProtocol::TCP, 64)
        );
        assert!(!ip.fragment);
        assert_eq!(
            ip.l4,
            Some(L4Info {
                offset: 34,
                header: L4Header::Tcp {
                    src_port: 55390,
                    dst_port: 80,
                    flags: TcpFlags::SYN
                }
            })
        );
        assert_eq!(ip.ports(), Some((55390, 80)));
    }

    #[test]
    fn udp_query_with_padding() {
        let mut frame = udp_dns_frame();
        frame.extend_from_slice(&[0; 5]); // padded to 76 bytes: not an error
        let info = parse_frame(&frame, false).unwrap();
        let ip = info.ip().unwrap();
        assert_eq!(ip.total_len, 57);
        assert_eq!(info.l3_end(), 71);
        assert_eq!(
            ip.l4.unwrap().header,
            L4Header::Udp {
                src_port: 51234,
                dst_port: 53
            }
        );
    }

    #[test]
    fn tagged_frame() {
        let plain = tcp_syn_frame();
        let mut frame = plain[..12].to_vec();
        frame.extend(hex("8100 2064"));
        frame.extend_from_slice(&plain[12..]);
        assert_eq!(
            parse_frame(&frame, false),
            Err(ParseError::VlanNotConfigured)
        );
        let info = parse_frame(&frame, true).unwrap();
        let tag = info.vlan.unwrap();
        assert_eq!((tag.tpid, tag.vid(), tag.pcp()), (EtherType::VLAN, 100, 1));
        assert_eq!(info.l3_offset, 18);
        assert_eq!(info.ip().unwrap().l4.unwrap().offset, 38);
    }

    #[test]
    fn arp_request() {
        let mut buf = [0u8; 60];
        arp_wire::emit_request(
            &mut buf,
            MacAddr([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 2),
        )
        .unwrap();
        let info = parse_frame(&buf, false).unwrap();
        assert_eq!(info.l3, L3Info::Arp);
        assert_eq!(info.ethertype, EtherType::ARP);
        assert_eq!(info.ip(), None);
        assert_eq!(info.l3_end(), 42);
    }

    #[test]
    fn icmp_echo_and_icmpv6() {
        let mut frame = hex(ETH_V4);
        let mut ip = hex("4500 001c 0000 4000 4001 0000 c612 0002 c612 0001");
        Ipv4Packet::new_checked_quoted(&mut ip[..])
            .unwrap()
            .fill_checksum();
        frame.extend(ip);
        frame.extend(hex("0800 f7ff 0000 0000"));
        let ip = *parse_frame(&frame, false).unwrap().ip().unwrap();
        assert_eq!(
            ip.l4.unwrap().header,
            L4Header::Icmpv4 {
                msg_type: icmp::IcmpType::ECHO_REQUEST,
                code: 0
            }
        );
        assert_eq!(ip.ports(), None);

        let mut buf = [0u8; icmpv6::ND_FRAME_LEN];
        icmpv6::emit_neighbor_solicit(
            &mut buf,
            MacAddr([2, 0, 0, 0, 0, 1]),
            "2001:2::1".parse().unwrap(),
            "2001:2::2".parse().unwrap(),
        )
        .unwrap();
        let info = parse_frame(&buf, false).unwrap();
        let ip = info.ip().unwrap();
        assert_eq!(ip.ttl, 255);
        assert_eq!(ip.total_len, 72);
        assert_eq!(
            ip.l4.unwrap(),
            L4Info {
                offset: 54,
                header: L4Header::Icmpv6 {
                    msg_type: Icmpv6Type::NEIGHBOR_SOLICIT,
                    code: 0
                }
            }
        );
        // ICMPv6 over IPv4 or ICMP over IPv6 is not read as such.
        let v6_icmp4 = v6_frame(1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parse_frame(&v6_icmp4, false).unwrap().ip().unwrap().l4,
            None
        );
    }

    #[test]
    fn ipv6_with_extension_headers_and_fragments() {
        // Hop-by-hop, then UDP.
        let mut payload = vec![17, 0, 1, 4, 0, 0, 0, 0];
        payload.extend(hex("1f90 0035 000c 0000 6869 6a6b"));
        let frame = v6_frame(0, &payload);
        let ip = *parse_frame(&frame, false).unwrap().ip().unwrap();
        assert_eq!(ip.header_len, 48);
        assert_eq!(ip.protocol, IpProtocol::UDP);
        assert_eq!(ip.ports(), Some((8080, 53)));
        assert_eq!(ip.l4.unwrap().offset, 14 + 48);
        assert!(!ip.fragment);

        // First fragment of a large UDP datagram: the UDP length is that of the whole
        // datagram, beyond this fragment, and is not an error.
        let mut payload = vec![17, 0, 0, 1, 0, 0, 0, 9];
        payload.extend(hex("1f90 0035 0fa0 0000 6869 6a6b"));
        let ip = *parse_frame(&v6_frame(44, &payload), false)
            .unwrap()
            .ip()
            .unwrap();
        assert!(ip.fragment);
        assert_eq!(ip.ports(), Some((8080, 53)));

        // A later fragment: protocol known, no L4.
        let payload = [17, 0, 0x05, 0xa8, 0, 0, 0, 9, 1, 2, 3, 4];
        let ip = *parse_frame(&v6_frame(44, &payload), false)
            .unwrap()
            .ip()
            .unwrap();
        assert!(ip.fragment);
        assert_eq!(ip.protocol, IpProtocol::UDP);
        assert_eq!(ip.header_len, 48);
        assert_eq!(ip.l4, None);
    }

    #[test]
    fn ipv4_fragments() {
        let mut frame = udp_dns_frame();
        // First fragment: MF set, UDP length checks skipped, ports read.
        frame[14 + 6] = 0x20;
        frame[34 + 4..34 + 6].copy_from_slice(&4000u16.to_be_bytes());
        refresh_v4(&mut frame);
        let ip = *parse_frame(&frame, false).unwrap().ip().unwrap();
        assert!(ip.fragment);
        assert_eq!(ip.ports(), Some((51234, 53)));
        // Later fragment: no L4 even though the bytes would parse.
        frame[14 + 6..14 + 8].copy_from_slice(&0x00b9u16.to_be_bytes());
        refresh_v4(&mut frame);
        let ip = *parse_frame(&frame, false).unwrap().ip().unwrap();
        assert!(ip.fragment);
        assert_eq!(ip.l4, None);
        assert_eq!(ip.protocol, IpProtocol::UDP);
    }

    #[test]
    fn other_protocols_have_no_l4() {
        let mut frame = tcp_syn_frame();
        frame[14 + 9] = 47; // GRE
        refresh_v4(&mut frame);
        let ip = *parse_frame(&frame, false).unwrap().ip().unwrap();
        assert_eq!(ip.protocol, IpProtocol::GRE);
        assert_eq!(ip.l4, None);
    }

    /// One crafted frame per ParseError variant.
    fn crafted(error: ParseError) -> Vec<u8> {
        let syn = tcp_syn_frame();
        match error {
            ParseError::Runt => syn[..13].to_vec(),
            ParseError::VlanNotConfigured => {
                let mut f = syn[..12].to_vec();
                f.extend(hex("8100 0064"));
                f.extend_from_slice(&syn[12..]);
                f
            }
            ParseError::TruncatedVlan => hex("0200 0000 0001 0200 0000 0002 8100 0064"),
            ParseError::NestedVlan => {
                let mut f = syn[..12].to_vec();
                f.extend(hex("88a8 0064 8100 0065"));
                f.extend_from_slice(&syn[12..]);
                f
            }
            ParseError::UnknownEthertype => {
                let mut f = syn.clone();
                f[12..14].copy_from_slice(&[0x88, 0xcc]);
                f
            }
            ParseError::TruncatedArp => {
                let mut f = hex("ffff ffff ffff 0200 0000 0001 0806");
                f.extend(hex("0001 0800 0604 0001"));
                f
            }
            ParseError::UnsupportedArp => {
                let mut f = vec![0u8; 42];
                arp_wire::emit_request(
                    &mut f,
                    MacAddr::ZERO,
                    Ipv4Addr::LOCALHOST,
                    Ipv4Addr::LOCALHOST,
                )
                .unwrap();
                f[15] = 6; // hardware type IEEE 802
                f
            }
            ParseError::TruncatedIpv4 => syn[..14 + 19].to_vec(),
            ParseError::TruncatedIpv6 => v6_frame(6, &[])[..14 + 39].to_vec(),
            ParseError::IpVersionMismatch => {
                let mut f = syn.clone();
                f[14] = 0x65;
                f
            }
            ParseError::BadIhl => {
                let mut f = syn.clone();
                f[14] = 0x44;
                f
            }
            ParseError::BadTotalLength => syn[..syn.len() - 1].to_vec(),
            ParseError::BadIpv4Checksum => {
                let mut f = syn.clone();
                f[14 + 8] = 63; // TTL changed, checksum not
                f
            }
            ParseError::BadIpv4Options => with_ipv4_options(&syn, &[0x94, 0, 0, 0]),
            ParseError::Ipv4SourceRoute => with_ipv4_options(&syn, &[0x83, 3, 4, 0]),
            ParseError::BadIpv6ExtensionHeader => v6_frame(60, &[6, 4, 0, 0, 0, 0, 0, 0]),
            ParseError::TooManyIpv6ExtensionHeaders => {
                let mut payload = Vec::new();
                for _ in 0..=crate::packet::ipv6::MAX_EXTENSION_HEADERS {
                    payload.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
                }
                v6_frame(60, &payload)
            }
            ParseError::Ipv6RoutingHeaderType0 => v6_frame(43, &[59, 0, 0, 0, 0, 0, 0, 0]),
            ParseError::TruncatedL4 => {
                let mut f = syn[..14 + 20 + 19].to_vec();
                f[14 + 3] = 39;
                refresh_v4(&mut f);
                f
            }
            ParseError::BadTcpOffset => {
                let mut f = syn.clone();
                f[14 + 20 + 12] = 0xb0; // 44 bytes in a 40-byte segment
                f
            }
            ParseError::BadUdpLength => {
                let mut f = udp_dns_frame();
                f[14 + 20 + 5] = 0x26; // one byte beyond the IP payload
                f
            }
        }
    }

    #[test]
    fn every_error_from_a_crafted_frame() {
        for error in ParseError::ALL {
            let frame = crafted(error);
            let vlans_allowed = error != ParseError::VlanNotConfigured;
            assert_eq!(parse_frame(&frame, vlans_allowed), Err(error), "{error}");
        }
        // Without VLANs, any tagged frame is refused before its tag is looked at.
        assert_eq!(
            parse_frame(&crafted(ParseError::TruncatedVlan), false),
            Err(ParseError::VlanNotConfigured)
        );
        assert_eq!(
            parse_frame(&crafted(ParseError::NestedVlan), false),
            Err(ParseError::VlanNotConfigured)
        );
        assert!(parse_frame(&crafted(ParseError::VlanNotConfigured), true).is_ok());
        // More shapes of the same reasons.
        let syn = tcp_syn_frame();
        let mut tiny_offset = syn.clone();
        tiny_offset[14 + 20 + 12] = 0x40;
        assert_eq!(
            parse_frame(&tiny_offset, false),
            Err(ParseError::BadTcpOffset)
        );
        let mut short_total = syn.clone();
        short_total[14 + 3] = 19;
        refresh_v4(&mut short_total);
        assert_eq!(
            parse_frame(&short_total, false),
            Err(ParseError::BadTotalLength)
        );
        let mut v4_in_v6 = v6_frame(6, &[0; 20]);
        v4_in_v6[14] = 0x45;
        assert_eq!(
            parse_frame(&v4_in_v6, false),
            Err(ParseError::IpVersionMismatch)
        );
        let v6_beyond = v6_frame(6, &[0; 20]);
        assert_eq!(
            parse_frame(&v6_beyond[..v6_beyond.len() - 1], false),
            Err(ParseError::BadTotalLength)
        );
        assert_eq!(
            parse_frame(&v6_frame(6, &[0; 19]), false),
            Err(ParseError::TruncatedL4)
        );
        assert_eq!(
            parse_frame(&v6_frame(17, &[0; 7]), false),
            Err(ParseError::TruncatedL4)
        );
        assert_eq!(
            parse_frame(&v6_frame(58, &[0; 7]), false),
            Err(ParseError::TruncatedL4)
        );
        assert_eq!(parse_frame(&[], false), Err(ParseError::Runt));
    }

    /// The position of `e` in ParseError::ALL, by an exhaustive match: a new variant
    /// fails to compile here until it is given a place, and the test below then
    /// fails until ALL lists it.
    fn index(e: ParseError) -> usize {
        match e {
            ParseError::Runt => 0,
            ParseError::VlanNotConfigured => 1,
            ParseError::TruncatedVlan => 2,
            ParseError::NestedVlan => 3,
            ParseError::UnknownEthertype => 4,
            ParseError::TruncatedArp => 5,
            ParseError::UnsupportedArp => 6,
            ParseError::TruncatedIpv4 => 7,
            ParseError::TruncatedIpv6 => 8,
            ParseError::IpVersionMismatch => 9,
            ParseError::BadIhl => 10,
            ParseError::BadTotalLength => 11,
            ParseError::BadIpv4Checksum => 12,
            ParseError::BadIpv4Options => 13,
            ParseError::Ipv4SourceRoute => 14,
            ParseError::BadIpv6ExtensionHeader => 15,
            ParseError::TooManyIpv6ExtensionHeaders => 16,
            ParseError::Ipv6RoutingHeaderType0 => 17,
            ParseError::TruncatedL4 => 18,
            ParseError::BadTcpOffset => 19,
            ParseError::BadUdpLength => 20,
        }
    }

    #[test]
    fn all_lists_every_variant_with_unique_labels() {
        let mut labels = HashSet::new();
        for (i, e) in ParseError::ALL.iter().enumerate() {
            assert_eq!(index(*e), i);
            let r = e.reason();
            assert!(labels.insert(r), "duplicate {r}");
            assert!(r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert_eq!(e.to_string(), r);
        }
        for label in [
            "runt",
            "truncated_ipv4",
            "ip_version_mismatch",
            "bad_ihl",
            "bad_total_length",
            "bad_ipv4_checksum",
            "truncated_l4",
            "bad_tcp_offset",
            "vlan_not_configured",
            "unknown_ethertype",
        ] {
            assert!(labels.contains(label), "{label}");
        }
    }

    #[test]
    fn frame_info_is_small() {
        assert!(
            std::mem::size_of::<FrameInfo>() <= 64,
            "{}",
            std::mem::size_of::<FrameInfo>()
        );
    }

    #[test]
    fn robustness_random_and_truncated_frames() {
        let mut rng = XorShift::new(0xf3a3e);
        let seeds = [
            tcp_syn_frame(),
            udp_dns_frame(),
            crafted(ParseError::VlanNotConfigured),
            crafted(ParseError::TooManyIpv6ExtensionHeaders),
            v6_frame(
                44,
                &[
                    17, 0, 0, 1, 0, 0, 0, 9, 0x1f, 0x90, 0, 0x35, 0x0f, 0xa0, 0, 0,
                ],
            ),
            crafted(ParseError::UnsupportedArp),
        ];
        let mut buf = [0u8; 160];
        for round in 0..100_000 {
            let len;
            if round % 3 == 0 {
                // Pure noise, sometimes with a plausible EtherType.
                len = rng.below(buf.len() + 1);
                rng.fill(&mut buf[..len]);
                if len >= 15 && rng.below(2) == 0 {
                    let types = [[0x08, 0x00], [0x86, 0xdd], [0x08, 0x06], [0x81, 0x00]];
                    buf[12..14].copy_from_slice(&types[rng.below(types.len())]);
                    buf[14] = if buf[12] == 0x86 { 0x60 } else { 0x45 };
                }
            } else {
                // A valid frame, mutated in a few bytes and cut anywhere.
                let seed = &seeds[rng.below(seeds.len())];
                len = rng.below(seed.len() + 1);
                buf[..len].copy_from_slice(&seed[..len]);
                for _ in 0..rng.below(4) {
                    if len > 0 {
                        let at = rng.below(len);
                        buf[at] = rng.next() as u8;
                    }
                }
            }
            let vlans = rng.below(2) == 0;
            if let Ok(info) = parse_frame(&buf[..len], vlans) {
                assert!(info.l3_end() <= len);
                if let Some(l4) = info.ip().and_then(|ip| ip.l4) {
                    assert!(usize::from(l4.offset) <= info.l3_end());
                }
            }
            // Every checked view over the same bytes at the usual offsets.
            let at = 14.min(len);
            let _ = EthernetFrame::new_checked(&buf[..len]);
            let _ = ArpPacket::new_checked(&buf[at..len]);
            let _ = Ipv4Packet::new_checked(&buf[at..len]).map(|p| p.payload().len());
            let _ = Ipv6Packet::new_checked(&buf[at..len]).map(|p| p.upper_layer());
            let l4 = 34.min(len);
            let _ = TcpPacket::new_checked(&buf[l4..len]).map(|t| t.mss());
            let _ = UdpPacket::new_checked(&buf[l4..len]).map(|u| u.payload().len());
            let _ = Icmpv4Packet::new_checked(&buf[l4..len]).map(|i| i.quoted_packet().is_some());
            let _ = Icmpv6Packet::new_checked(&buf[l4..len]).map(|i| i.source_link_addr());
        }
    }
}
