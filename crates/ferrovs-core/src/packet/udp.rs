//! UDP (RFC 768), with the zero-checksum rule (see [`super::checksum`]).

use super::checksum::{self, Delta, Sum};
use super::ip::{IpPair, IpProtocol};
use super::{be, WireError};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// Byte ranges of the UDP header.
pub(super) mod field {
    use std::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// A checked view of a UDP datagram. The buffer is the IP payload; the datagram is
/// the first [`len`](Self::len) bytes of it.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` after checking it holds the 8-byte header and that the length
    /// field is at least 8 and within the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = UdpPacket { buffer };
        let len = usize::from(packet.len());
        if len < HEADER_LEN || len > packet.buffer.as_ref().len() {
            return Err(WireError::BadLength);
        }
        Ok(packet)
    }

    /// A view over a buffer the caller has already sized for a header (emitters).
    pub(crate) fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be::read_u16(self.bytes(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be::read_u16(self.bytes(), field::DST_PORT)
    }

    /// The length field: header and data.
    #[allow(clippy::len_without_is_empty)] // a datagram is never empty: it has a header
    pub fn len(&self) -> u16 {
        be::read_u16(self.bytes(), field::LENGTH)
    }

    /// Checksum field; 0 means none.
    pub fn checksum(&self) -> u16 {
        be::read_u16(self.bytes(), field::CHECKSUM)
    }

    fn datagram(&self) -> &[u8] {
        let end = usize::from(self.len()).clamp(HEADER_LEN, self.bytes().len());
        &self.bytes()[..end]
    }

    /// The data after the header, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.datagram()[HEADER_LEN..]
    }

    fn sum(&self, addrs: &IpPair) -> Sum {
        let datagram = self.datagram();
        checksum::pseudo_header(addrs, IpProtocol::UDP, datagram.len() as u32) + Sum::of(datagram)
    }

    /// True when the checksum verifies over the pseudo-header of `addrs`. A zero
    /// checksum means "none" and passes over IPv4; over IPv6 it is invalid
    /// (RFC 8200 section 8.1).
    pub fn verify_checksum(&self, addrs: &IpPair) -> bool {
        if self.checksum() == 0 {
            return addrs.is_ipv4();
        }
        self.sum(addrs).verifies()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port without touching the checksum.
    pub fn set_src_port(&mut self, port: u16) {
        be::write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port without touching the checksum.
    pub fn set_dst_port(&mut self, port: u16) {
        be::write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field without touching the checksum.
    pub fn set_len(&mut self, len: u16) {
        be::write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        be::write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Computes and stores the checksum from scratch; a computed 0 is stored as
    /// 0xffff.
    pub fn fill_checksum(&mut self, addrs: &IpPair) {
        self.set_checksum(0);
        let checksum = checksum::udp_transmitted(self.sum(addrs).checksum());
        self.set_checksum(checksum);
    }

    /// Applies recorded changes (such as the [`Delta`] an IP address rewrite returns)
    /// to the checksum. A zero checksum ("none") stays zero; a result of 0 is stored
    /// as 0xffff.
    #[inline]
    pub fn apply_checksum_delta(&mut self, delta: Delta) {
        let old = self.checksum();
        if old == 0 {
            return;
        }
        self.set_checksum(checksum::udp_transmitted(delta.apply(old)));
    }

    /// Sets the source port and fixes the checksum (zero stays zero).
    pub fn rewrite_src_port(&mut self, port: u16) {
        let delta = Delta::NONE.u16(self.src_port(), port);
        self.set_src_port(port);
        self.apply_checksum_delta(delta);
    }

    /// Sets the destination port and fixes the checksum (zero stays zero).
    pub fn rewrite_dst_port(&mut self, port: u16) {
        let delta = Delta::NONE.u16(self.dst_port(), port);
        self.set_dst_port(port);
        self.apply_checksum_delta(delta);
    }

    /// The data after the header, up to the length field, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len()).clamp(HEADER_LEN, self.bytes().len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testutil::{hex, XorShift};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn pair() -> IpPair {
        IpPair::V4 {
            src: Ipv4Addr::new(192, 168, 1, 10),
            dst: Ipv4Addr::new(192, 168, 1, 1),
        }
    }

    // A DNS query for "example.com" A from 192.168.1.10:51234 to 192.168.1.1:53;
    // checksum 0xca57 computed by an independent implementation.
    const DNS_QUERY: &str = "c822 0035 0025 ca57
        1a2b 0100 0001 0000 0000 0000 0765 7861 6d70 6c65 0363 6f6d 0000 0100 01";

    #[test]
    fn parse_dns_query() {
        let bytes = hex(DNS_QUERY);
        let udp = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(udp.src_port(), 51234);
        assert_eq!(udp.dst_port(), 53);
        assert_eq!(udp.len(), 37);
        assert_eq!(udp.checksum(), 0xca57);
        assert_eq!(udp.payload().len(), 29);
        assert_eq!(&udp.payload()[13..20], b"example");
        assert!(udp.verify_checksum(&pair()));
        let wrong = IpPair::V4 {
            src: Ipv4Addr::new(192, 168, 1, 11),
            dst: Ipv4Addr::new(192, 168, 1, 1),
        };
        assert!(!udp.verify_checksum(&wrong));
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        let bytes = hex(DNS_QUERY);
        for len in 0..HEADER_LEN {
            assert_eq!(
                UdpPacket::new_checked(&bytes[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        assert_eq!(
            UdpPacket::new_checked(&bytes[..36]).unwrap_err(),
            WireError::BadLength
        );
        for short in 0..8u16 {
            let mut bad = bytes.clone();
            bad[4..6].copy_from_slice(&short.to_be_bytes());
            assert_eq!(
                UdpPacket::new_checked(&bad[..]).unwrap_err(),
                WireError::BadLength
            );
        }
        // A buffer longer than the length field: the extra bytes are not data and
        // not checksummed.
        let mut long = bytes.clone();
        long.extend_from_slice(&[0x55; 3]);
        let udp = UdpPacket::new_checked(&long[..]).unwrap();
        assert_eq!(udp.payload().len(), 29);
        assert!(udp.verify_checksum(&pair()));
    }

    #[test]
    fn zero_checksum_rule() {
        let mut bytes = hex(DNS_QUERY);
        bytes[6..8].fill(0);
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        assert!(udp.verify_checksum(&pair()), "0 means none over IPv4");
        let v6 = IpPair::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
        };
        assert!(!udp.verify_checksum(&v6), "0 is invalid over IPv6");
        // Rewrites leave "none" alone.
        udp.rewrite_dst_port(5353);
        udp.rewrite_src_port(1);
        udp.apply_checksum_delta(
            Delta::NONE.ipv4(Ipv4Addr::new(192, 168, 1, 1), Ipv4Addr::new(10, 0, 0, 1)),
        );
        assert_eq!(udp.checksum(), 0);
        assert_eq!(udp.dst_port(), 5353);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Pick the source port so that the datagram sums to 0xffff: the computed
        // checksum is then 0 and must go out as 0xffff.
        let mut bytes = hex(DNS_QUERY);
        bytes[6..8].fill(0);
        bytes[0..2].fill(0);
        let partial = checksum::pseudo_header(&pair(), IpProtocol::UDP, 37) + Sum::of(&bytes);
        let port = !partial.fold();
        bytes[0..2].copy_from_slice(&port.to_be_bytes());
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        udp.fill_checksum(&pair());
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(&pair()));
        // An incremental update that lands on 0 stores 0xffff as well: move the
        // port away, then back.
        udp.rewrite_src_port(port ^ 0x0101);
        assert!(udp.verify_checksum(&pair()));
        udp.rewrite_src_port(port);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(&pair()));
    }

    #[test]
    fn incremental_rewrites_match_recomputation() {
        let mut rng = XorShift::new(768);
        let mut bytes = hex(DNS_QUERY);
        for _ in 0..3000 {
            rng.fill(&mut bytes[8..]);
            rng.fill(&mut bytes[0..4]);
            let mut addrs = pair();
            let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
            udp.fill_checksum(&addrs);
            let new_dst = Ipv4Addr::from(rng.next() as u32);
            let new_port = rng.next() as u16;
            if let IpPair::V4 { src, dst } = addrs {
                udp.apply_checksum_delta(Delta::NONE.ipv4(dst, new_dst));
                addrs = IpPair::V4 { src, dst: new_dst };
            }
            udp.rewrite_dst_port(new_port);
            udp.rewrite_src_port(new_port ^ 0xa5a5);
            let incremental = udp.checksum();
            assert!(udp.verify_checksum(&addrs));
            udp.fill_checksum(&addrs);
            assert_eq!(incremental, udp.checksum());
        }
    }

    #[test]
    fn setters() {
        let mut bytes = hex(DNS_QUERY);
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        udp.set_src_port(7);
        udp.set_dst_port(9);
        udp.set_len(10);
        udp.payload_mut().copy_from_slice(b"hi");
        udp.fill_checksum(&pair());
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (7, 9, 10));
        assert_eq!(udp.payload(), b"hi");
        assert!(udp.verify_checksum(&pair()));
        udp.set_checksum(0x1234);
        assert!(!udp.verify_checksum(&pair()));
        assert_eq!(udp.into_inner().len(), 37);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(53);
        let mut buf = [0u8; 40];
        for _ in 0..30000 {
            let len = rng.below(buf.len() + 1);
            rng.fill(&mut buf[..len]);
            if len >= HEADER_LEN && rng.below(2) == 0 {
                let l = rng.below(len + 1) as u16;
                buf[4..6].copy_from_slice(&l.to_be_bytes());
            }
            if let Ok(mut udp) = UdpPacket::new_checked(&mut buf[..len]) {
                let _ = (udp.payload(), udp.verify_checksum(&pair()));
                udp.rewrite_dst_port(1);
                assert!(usize::from(udp.len()) <= len);
            }
        }
    }
}
