//! IPv6 (RFC 8200), with a bounded walk over extension headers.

use std::net::Ipv6Addr;

use super::checksum::Delta;
use super::ip::{IpPair, IpProtocol};
use super::{be, WireError};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Most extension headers [`Ipv6Packet::upper_layer`] walks before giving up. RFC 8200
/// section 4.1 lists six kinds with destination options at most twice, so eight is
/// enough for any sensible packet and bounds the work an attacker can cause.
pub const MAX_EXTENSION_HEADERS: usize = 8;

mod field {
    use std::ops::Range;

    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;

    /// Fields of the extension headers, relative to their start.
    pub mod ext {
        use std::ops::Range;

        pub const NEXT_HEADER: usize = 0;
        pub const LEN: usize = 1;
        pub const ROUTING_TYPE: usize = 2;
        pub const SEGMENTS_LEFT: usize = 3;
        pub const FRAG_OFFSET_FLAGS: Range<usize> = 2..4;
        pub const FRAG_IDENT: Range<usize> = 4..8;
    }
}

/// Length of a fragment header.
const FRAGMENT_HEADER_LEN: usize = 8;

/// What the fragment header of a packet says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Fragment {
    /// Offset of this fragment's data in the original packet, in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification shared by the fragments of one packet.
    pub ident: u32,
}

/// What the routing header of a packet says (RFC 8200 section 4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Routing {
    /// The routing type: 0 is the deprecated source route (RFC 5095), 2 Mobile
    /// IPv6, 3 RPL, 4 segment routing.
    pub routing_type: u8,
    /// Route segments still to visit: above 0, the destination address is a hop on
    /// the way, not the packet's final destination.
    pub segments_left: u8,
}

/// Where the upper-layer header of an IPv6 packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol. For a non-first fragment it is the next header of
    /// the fragment header, whose data here is the middle of that protocol's packet.
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub offset: usize,
    /// The fragment header, when the packet is a fragment.
    pub fragment: Option<Ipv6Fragment>,
    /// The routing header, when the packet carries one.
    pub routing: Option<Ipv6Routing>,
}

impl UpperLayer {
    /// True for a fragment other than the first: it carries no upper-layer header.
    pub fn is_non_first_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.offset != 0)
    }
}

/// A checked view of an IPv6 packet.
///
/// The buffer may run past the packet (Ethernet padding); [`payload`](Self::payload)
/// ends at the payload length.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` after checking: 40 bytes present, version 6, and the payload
    /// length within the buffer. Jumbograms (payload length 0 with a jumbo option)
    /// are not supported: their payload reads as empty.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Ipv6Packet { buffer };
        if packet.version() != 6 {
            return Err(WireError::BadVersion);
        }
        if packet.total_len() > packet.buffer.as_ref().len() {
            return Err(WireError::BadLength);
        }
        Ok(packet)
    }

    /// A view over a buffer the caller has already sized for a header (emitters).
    pub(crate) fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn read_addr(&self, range: std::ops::Range<usize>) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.bytes()[range]);
        Ipv6Addr::from(octets)
    }

    fn ver_tc_flow(&self) -> u32 {
        be::read_u32(self.bytes(), field::VER_TC_FLOW)
    }

    /// The version field (6 in a checked view).
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length: everything after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        be::read_u16(self.bytes(), field::PAYLOAD_LEN)
    }

    /// Fixed header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The next-header field of the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.bytes()[field::NEXT_HEADER])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.bytes()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        self.read_addr(field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        self.read_addr(field::DST)
    }

    /// Source and destination.
    pub fn addrs(&self) -> IpPair {
        IpPair::V6 {
            src: self.src_addr(),
            dst: self.dst_addr(),
        }
    }

    fn payload_range(&self) -> std::ops::Range<usize> {
        HEADER_LEN..self.total_len().min(self.bytes().len())
    }

    /// The payload, extension headers included, without Ethernet padding.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.payload_range()]
    }

    /// Walks the extension headers (hop-by-hop, routing, destination options,
    /// fragment) to the upper-layer header, within the payload length and at most
    /// [`MAX_EXTENSION_HEADERS`] deep. The walk stops at any other next header (TCP,
    /// UDP, ICMPv6, ESP, AH, no-next-header...) and after the fragment header of a
    /// non-first fragment.
    ///
    /// Errors: [`WireError::BadExtensionHeader`] for a header that runs past the
    /// payload, a hop-by-hop header not directly after the fixed header (RFC 8200
    /// section 4.1), or a second fragment or routing header (each occurs at most
    /// once, section 4.1); [`WireError::TooManyExtensionHeaders`] when the chain is
    /// longer than the bound.
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        let end = self.total_len().min(self.bytes().len());
        let bytes = &self.bytes()[..end];
        let mut next = self.next_header();
        let mut offset = HEADER_LEN;
        let mut fragment = None;
        let mut routing = None;
        for depth in 0..=MAX_EXTENSION_HEADERS {
            let header_len = match next {
                IpProtocol::HOP_BY_HOP | IpProtocol::ROUTING | IpProtocol::DEST_OPTIONS => {
                    if (next == IpProtocol::HOP_BY_HOP && depth != 0)
                        || (next == IpProtocol::ROUTING && routing.is_some())
                    {
                        return Err(WireError::BadExtensionHeader);
                    }
                    let len = *bytes
                        .get(offset + field::ext::LEN)
                        .ok_or(WireError::BadExtensionHeader)?;
                    (usize::from(len) + 1) * 8
                }
                IpProtocol::FRAGMENT => {
                    if fragment.is_some() {
                        return Err(WireError::BadExtensionHeader);
                    }
                    FRAGMENT_HEADER_LEN
                }
                protocol => {
                    return Ok(UpperLayer {
                        protocol,
                        offset,
                        fragment,
                        routing,
                    })
                }
            };
            if depth == MAX_EXTENSION_HEADERS {
                break;
            }
            let header = bytes
                .get(offset..offset + header_len)
                .ok_or(WireError::BadExtensionHeader)?;
            let this = next;
            next = IpProtocol(header[field::ext::NEXT_HEADER]);
            offset += header_len;
            if this == IpProtocol::ROUTING {
                // Every routing header is at least 8 bytes long.
                routing = Some(Ipv6Routing {
                    routing_type: header[field::ext::ROUTING_TYPE],
                    segments_left: header[field::ext::SEGMENTS_LEFT],
                });
            }
            if this == IpProtocol::FRAGMENT {
                let offset_flags = be::read_u16(header, field::ext::FRAG_OFFSET_FLAGS);
                let frag = Ipv6Fragment {
                    offset: offset_flags & 0xfff8,
                    more: offset_flags & 0x0001 != 0,
                    ident: be::read_u32(header, field::ext::FRAG_IDENT),
                };
                fragment = Some(frag);
                if frag.offset != 0 {
                    return Ok(UpperLayer {
                        protocol: next,
                        offset,
                        fragment,
                        routing,
                    });
                }
            }
        }
        Err(WireError::TooManyExtensionHeaders)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    fn set_ver_tc_flow(&mut self, value: u32) {
        be::write_u32(self.bytes_mut(), field::VER_TC_FLOW, value);
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let v = self.ver_tc_flow();
        self.set_ver_tc_flow((v & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28));
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let v = self.ver_tc_flow();
        self.set_ver_tc_flow((v & 0xf00f_ffff) | (u32::from(tc) << 20));
    }

    /// Sets the flow label (low 20 bits of `label`).
    pub fn set_flow_label(&mut self, label: u32) {
        let v = self.ver_tc_flow();
        self.set_ver_tc_flow((v & 0xfff0_0000) | (label & 0x000f_ffff));
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        be::write_u16(self.bytes_mut(), field::PAYLOAD_LEN, len);
    }

    /// Sets the next-header field of the fixed header.
    pub fn set_next_header(&mut self, next: IpProtocol) {
        self.bytes_mut()[field::NEXT_HEADER] = next.0;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.bytes_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Decrements the hop limit of a packet being forwarded and returns the new value.
    /// A hop limit of 0 or 1 must not be forwarded: the packet is left untouched and
    /// `None` returned, for a Time Exceeded reply. IPv6 has no header checksum.
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let hop_limit = self.hop_limit();
        if hop_limit <= 1 {
            return None;
        }
        self.set_hop_limit(hop_limit - 1);
        Some(hop_limit - 1)
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.bytes_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.bytes_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Sets the source address and returns the change for the upper-layer checksum,
    /// whose pseudo-header covers the address.
    pub fn rewrite_src_addr(&mut self, addr: Ipv6Addr) -> Delta {
        let delta = Delta::NONE.ipv6(self.src_addr(), addr);
        self.set_src_addr(addr);
        delta
    }

    /// Sets the destination address and returns the change for the upper-layer
    /// checksum, whose pseudo-header covers the address.
    pub fn rewrite_dst_addr(&mut self, addr: Ipv6Addr) -> Delta {
        let delta = Delta::NONE.ipv6(self.dst_addr(), addr);
        self.set_dst_addr(addr);
        delta
    }

    /// Swaps source and destination (to answer a packet); pseudo-header sums do not
    /// change.
    pub fn swap_addrs(&mut self) {
        let (src, dst) = (self.src_addr(), self.dst_addr());
        self.set_src_addr(dst);
        self.set_dst_addr(src);
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.bytes_mut()[range]
    }
}

/// A fresh IPv6 header, for packets ferrovs originates (Neighbor Discovery) or wraps
/// (IPv6 tunnels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Length of the payload that follows the header.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Writes the 40-byte header into the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| WireError::BadLength)?;
        let header = buf.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
        let mut packet = Ipv6Packet::new_unchecked(header);
        packet.set_ver_tc_flow(0x6000_0000);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testutil::{hex, XorShift};

    const SRC: &str = "2001 0002 0000 0000 0000 0000 0000 0001";
    const DST: &str = "2001 0002 0000 0000 0000 0000 0000 0064";

    /// A fixed header with `next` and `payload`.
    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = hex("6e01 2345");
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&hex(SRC));
        p.extend_from_slice(&hex(DST));
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn fixed_header_accessors() {
        let bytes = packet(17, &[0; 8]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0xe0);
        assert_eq!(ip.flow_label(), 0x12345);
        assert_eq!(ip.payload_len(), 8);
        assert_eq!(ip.total_len(), 48);
        assert_eq!(ip.next_header(), IpProtocol::UDP);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.src_addr(), "2001:2::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "2001:2::64".parse::<Ipv6Addr>().unwrap());
        assert!(!ip.addrs().is_ipv4());
        assert_eq!(ip.payload().len(), 8);
        let upper = ip.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::UDP);
        assert_eq!(upper.offset, 40);
        assert_eq!(upper.fragment, None);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let bytes = packet(6, &[0; 20]);
        for len in 0..HEADER_LEN {
            assert_eq!(
                Ipv6Packet::new_checked(&bytes[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let mut v4 = bytes.clone();
        v4[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).unwrap_err(),
            WireError::BadVersion
        );
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..59]).unwrap_err(),
            WireError::BadLength
        );
        // Padding beyond the payload is fine and not payload.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0xee; 4]);
        assert_eq!(
            Ipv6Packet::new_checked(&padded[..])
                .unwrap()
                .payload()
                .len(),
            20
        );
    }

    #[test]
    fn walks_extension_headers() {
        // Hop-by-hop (8 bytes), routing (24 bytes), destination options (8), TCP.
        let mut payload = vec![43, 0, 1, 4, 0, 0, 0, 0];
        payload.extend_from_slice(&[60, 2, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[0; 16]);
        payload.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        payload.extend_from_slice(&[0; 20]);
        let bytes = packet(0, &payload);
        let upper = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(upper.protocol, IpProtocol::TCP);
        assert_eq!(upper.offset, 40 + 8 + 24 + 8);
        assert!(!upper.is_non_first_fragment());
        assert_eq!(
            upper.routing,
            Some(Ipv6Routing {
                routing_type: 0,
                segments_left: 0
            })
        );
        assert_eq!(
            Ipv6Packet::new_checked(&packet(6, &[0; 20])[..])
                .unwrap()
                .upper_layer()
                .unwrap()
                .routing,
            None
        );
    }

    #[test]
    fn reports_the_routing_header_and_refuses_a_second_one() {
        // A segment routing header (type 4) with 2 segments left, then UDP.
        let mut payload = vec![17, 4, 4, 2, 1, 0, 0, 0];
        payload.extend_from_slice(&[0; 32]);
        payload.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
        let bytes = packet(43, &payload);
        let upper = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(upper.protocol, IpProtocol::UDP);
        assert_eq!(upper.offset, 40 + 40);
        assert_eq!(
            upper.routing,
            Some(Ipv6Routing {
                routing_type: 4,
                segments_left: 2
            })
        );
        // A routing header after another (the second one could hide the first).
        let bytes = packet(43, &[43, 0, 4, 0, 0, 0, 0, 0, 6, 0, 0, 1, 0, 0, 0, 0]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.upper_layer().unwrap_err(), WireError::BadExtensionHeader);
    }

    #[test]
    fn reports_fragments() {
        // First fragment: offset 0, M set, ident 0xdeadbeef, then UDP.
        let first = packet(
            44,
            &[
                17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, 0, 53, 0, 53, 0, 16, 0, 0,
            ],
        );
        let upper = Ipv6Packet::new_checked(&first[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(upper.protocol, IpProtocol::UDP);
        assert_eq!(upper.offset, 48);
        assert_eq!(
            upper.fragment,
            Some(Ipv6Fragment {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
        assert!(!upper.is_non_first_fragment());

        // A later fragment (offset 1232) stops the walk: its data is not a header,
        // even when it looks like one.
        let later = packet(44, &[60, 0, 0x04, 0xd0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let upper = Ipv6Packet::new_checked(&later[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(upper.protocol, IpProtocol::DEST_OPTIONS);
        assert_eq!(upper.fragment.unwrap().offset, 1232);
        assert!(!upper.fragment.unwrap().more);
        assert!(upper.is_non_first_fragment());
    }

    #[test]
    fn refuses_bad_chains() {
        // Hop-by-hop after a routing header.
        let bytes = packet(43, &[0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.upper_layer().unwrap_err(), WireError::BadExtensionHeader);
        // Two fragment headers.
        let bytes = packet(44, &[44, 0, 0, 1, 0, 0, 0, 1, 6, 0, 0, 1, 0, 0, 0, 1]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.upper_layer().unwrap_err(), WireError::BadExtensionHeader);
        // A destination options header that claims more than the payload.
        let bytes = packet(60, &[6, 1, 0, 0, 0, 0, 0, 0]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.upper_layer().unwrap_err(), WireError::BadExtensionHeader);
        // An extension header with no bytes at all, and a fragment header cut short.
        let bytes = packet(60, &[]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.upper_layer().unwrap_err(), WireError::BadExtensionHeader);
        let bytes = packet(44, &[6, 0, 0, 0]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.upper_layer().unwrap_err(), WireError::BadExtensionHeader);
        // The walk stays inside the payload length even when padding follows.
        let mut bytes = packet(60, &[]);
        bytes.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.upper_layer().unwrap_err(), WireError::BadExtensionHeader);
    }

    #[test]
    fn chain_length_is_bounded() {
        for count in [MAX_EXTENSION_HEADERS, MAX_EXTENSION_HEADERS + 1] {
            let mut payload = Vec::new();
            for i in 0..count {
                let next = if i + 1 == count { 17 } else { 60 };
                payload.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            payload.extend_from_slice(&[0; 8]);
            let bytes = packet(60, &payload);
            let result = Ipv6Packet::new_checked(&bytes[..]).unwrap().upper_layer();
            if count == MAX_EXTENSION_HEADERS {
                assert_eq!(result.unwrap().offset, 40 + 8 * count);
            } else {
                assert_eq!(result.unwrap_err(), WireError::TooManyExtensionHeaders);
            }
        }
    }

    #[test]
    fn setters_and_hop_limit() {
        let mut bytes = packet(17, &[0; 8]);
        let mut ip = Ipv6Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_traffic_class(0xb8);
        ip.set_flow_label(0xfffff);
        assert_eq!(
            (ip.version(), ip.traffic_class(), ip.flow_label()),
            (6, 0xb8, 0xfffff)
        );
        ip.set_flow_label(0x1_00001);
        assert_eq!(ip.flow_label(), 1, "only 20 bits are kept");
        ip.set_next_header(IpProtocol::TCP);
        ip.set_payload_len(4);
        assert_eq!((ip.next_header(), ip.payload_len()), (IpProtocol::TCP, 4));
        ip.payload_mut()[0] = 7;
        assert_eq!(ip.payload(), &[7, 0, 0, 0]);
        ip.set_hop_limit(2);
        assert_eq!(ip.decrement_hop_limit(), Some(1));
        assert_eq!(ip.decrement_hop_limit(), None);
        assert_eq!(ip.hop_limit(), 1);
        let a: Ipv6Addr = "2001:2::a".parse().unwrap();
        let b: Ipv6Addr = "2001:2::b".parse().unwrap();
        let old_dst = ip.dst_addr();
        assert_eq!(ip.rewrite_dst_addr(b), Delta::NONE.ipv6(old_dst, b));
        let old_src = ip.src_addr();
        assert_eq!(ip.rewrite_src_addr(a), Delta::NONE.ipv6(old_src, a));
        ip.swap_addrs();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (b, a));
        ip.set_version(4);
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.traffic_class(), 0xb8);
    }

    #[test]
    fn emit_round_trip() {
        let repr = Ipv6Repr {
            src_addr: "2001:2::1".parse().unwrap(),
            dst_addr: "2001:2::64".parse().unwrap(),
            next_header: IpProtocol::UDP,
            payload_len: 8,
            hop_limit: 64,
            traffic_class: 0xe0,
            flow_label: 0x12345,
        };
        let mut buf = [0u8; 48];
        repr.emit(&mut buf).unwrap();
        assert_eq!(&buf[..], &packet(17, &[0; 8])[..]);
        assert_eq!(repr.emit(&mut buf[..39]), Err(WireError::BufferTooSmall));
        let huge = Ipv6Repr {
            payload_len: 65536,
            ..repr
        };
        assert_eq!(huge.emit(&mut buf), Err(WireError::BadLength));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(8200);
        let mut buf = [0u8; 120];
        let kinds = [0u8, 43, 44, 60, 6, 17, 58];
        for _ in 0..30000 {
            let len = rng.below(buf.len() + 1);
            rng.fill(&mut buf[..len]);
            if len >= HEADER_LEN {
                // Mostly valid fixed headers with extension-header-ish payloads.
                buf[0] = 0x60;
                let plen = rng.below(len - HEADER_LEN + 1) as u16;
                buf[4..6].copy_from_slice(&plen.to_be_bytes());
                buf[6] = kinds[rng.below(kinds.len())];
                for at in (HEADER_LEN..len).step_by(8) {
                    buf[at] = kinds[rng.below(kinds.len())];
                    if at + 1 < len {
                        buf[at + 1] &= 0x03;
                    }
                }
            }
            if let Ok(ip) = Ipv6Packet::new_checked(&buf[..len]) {
                if let Ok(upper) = ip.upper_layer() {
                    assert!(upper.offset <= ip.total_len());
                }
                let _ = (ip.payload(), ip.addrs(), ip.flow_label());
            }
        }
    }
}
