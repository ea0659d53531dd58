//! Ethernet II frames, with at most one 802.1Q or 802.1ad tag.

use std::fmt;
use std::str::FromStr;

use super::{be, WireError};

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
    /// Group bit set: broadcast or multicast.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
    /// ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    /// A usable station address: not zero, not group.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMacAddr;

impl fmt::Display for BadMacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a MAC address like 02:00:00:00:01:10")
    }
}

impl std::error::Error for BadMacAddr {}

impl FromStr for MacAddr {
    type Err = BadMacAddr;

    /// Parses `aa:bb:cc:dd:ee:ff` (also with `-` separators).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(BadMacAddr)?;
            if part.len() != 2 {
                return Err(BadMacAddr);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| BadMacAddr)?;
        }
        if parts.next().is_some() {
            return Err(BadMacAddr);
        }
        Ok(MacAddr(out))
    }
}

/// An EtherType: what the payload of a frame is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// Internet Protocol version 4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// Address Resolution Protocol.
    pub const ARP: EtherType = EtherType(0x0806);
    /// Internet Protocol version 6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IEEE 802.1ad service tag (QinQ outer tag).
    pub const QINQ: EtherType = EtherType(0x88a8);

    /// True for the TPIDs that introduce a VLAN tag (802.1Q and 802.1ad).
    pub const fn is_vlan_tag(self) -> bool {
        self.0 == Self::VLAN.0 || self.0 == Self::QINQ.0
    }
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            EtherType::IPV4 => "ipv4",
            EtherType::ARP => "arp",
            EtherType::IPV6 => "ipv6",
            EtherType::VLAN => "vlan",
            EtherType::QINQ => "qinq",
            _ => return write!(f, "EtherType({:#06x})", self.0),
        };
        write!(f, "EtherType({name})")
    }
}

/// Length of the Ethernet II header: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;
/// Length of one 802.1Q/802.1ad tag: TCI and the inner EtherType.
pub const VLAN_TAG_LEN: usize = 4;

/// Byte ranges of the Ethernet header and of the tag that may follow it.
pub mod field {
    use std::ops::Range;

    /// Destination MAC address.
    pub const DST: Range<usize> = 0..6;
    /// Source MAC address.
    pub const SRC: Range<usize> = 6..12;
    /// EtherType of the payload, or the tag protocol identifier when a VLAN tag follows.
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Tag control information of a VLAN tag: priority, DEI and VLAN id.
    pub const VLAN_TCI: Range<usize> = 14..16;
    /// EtherType of the payload after one VLAN tag.
    pub const VLAN_INNER_ETHERTYPE: Range<usize> = 16..18;
}

/// One VLAN tag: the tag protocol and the tag control information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    /// [`EtherType::VLAN`] or [`EtherType::QINQ`].
    pub tpid: EtherType,
    /// Priority (3 bits), drop eligible (1 bit), VLAN id (12 bits).
    pub tci: u16,
}

impl VlanTag {
    /// The 12-bit VLAN identifier.
    pub const fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
    /// The 3-bit priority code point.
    pub const fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }
    /// The drop eligible indicator.
    pub const fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }
}

fn read_mac(buf: &[u8], range: std::ops::Range<usize>) -> MacAddr {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&buf[range]);
    MacAddr(mac)
}

/// A checked view of an Ethernet II frame.
///
/// A frame whose EtherType is a VLAN TPID must also hold the 4-byte tag; the view
/// then reports the tag and the inner EtherType. A second tag is left to the caller
/// (it is the payload EtherType).
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds the header (and the tag, if tagged).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let tagged = EtherType(be::read_u16(buf, field::ETHERTYPE)).is_vlan_tag();
        if tagged && buf.len() < HEADER_LEN + VLAN_TAG_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    pub fn dst_addr(&self) -> MacAddr {
        read_mac(self.buffer.as_ref(), field::DST)
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> MacAddr {
        read_mac(self.buffer.as_ref(), field::SRC)
    }

    /// The EtherType field right after the addresses (a TPID when tagged).
    pub fn ethertype(&self) -> EtherType {
        EtherType(be::read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// True when the frame carries a tag. `new_checked` guarantees a tagged frame
    /// holds the tag; the length test keeps that true after `set_ethertype`.
    fn is_tagged(&self) -> bool {
        self.ethertype().is_vlan_tag() && self.buffer.as_ref().len() >= HEADER_LEN + VLAN_TAG_LEN
    }

    /// The VLAN tag, when the frame carries one.
    pub fn vlan_tag(&self) -> Option<VlanTag> {
        let tpid = self.ethertype();
        self.is_tagged().then(|| VlanTag {
            tpid,
            tci: be::read_u16(self.buffer.as_ref(), field::VLAN_TCI),
        })
    }

    /// The EtherType of the payload: after the tag when tagged.
    pub fn payload_ethertype(&self) -> EtherType {
        if self.is_tagged() {
            EtherType(be::read_u16(
                self.buffer.as_ref(),
                field::VLAN_INNER_ETHERTYPE,
            ))
        } else {
            self.ethertype()
        }
    }

    /// Offset of the payload: 14, or 18 after a tag.
    pub fn payload_offset(&self) -> usize {
        if self.is_tagged() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The payload (everything after the header and tag, padding included).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType field right after the addresses.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        be::write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.payload_offset();
        &mut self.buffer.as_mut()[at..]
    }
}

/// Writes an untagged Ethernet header into the first 14 bytes of `buf`.
pub fn emit_header(
    buf: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    ethertype: EtherType,
) -> Result<(), WireError> {
    let header = buf.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
    header[field::DST].copy_from_slice(&dst.0);
    header[field::SRC].copy_from_slice(&src.0);
    be::write_u16(header, field::ETHERTYPE, ethertype.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testutil::hex;

    #[test]
    fn mac_parse_and_display_round_trip() {
        let m: MacAddr = "02:00:00:00:01:10".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0, 0, 1, 0x10]);
        assert_eq!(m.to_string(), "02:00:00:00:01:10");
        assert!(m.is_unicast());
        assert!(MacAddr::BROADCAST.is_multicast());
        for bad in [
            "",
            "02:00:00:00:01",
            "02:00:00:00:01:10:11",
            "zz:00:00:00:01:10",
            "2:0:0:0:1:10",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    // A broadcast ARP request as a capture shows it (Ethernet part).
    const ARP_FRAME: &str = "ffffffffffff 0007 0daf f454 0806
        0001 0800 0604 0001 0007 0daf f454 18a6 ac01 0000 0000 0000 18a6 ad9f";

    #[test]
    fn untagged_frame_accessors() {
        let bytes = hex(ARP_FRAME);
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(
            frame.src_addr(),
            MacAddr([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54])
        );
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload_ethertype(), EtherType::ARP);
        assert_eq!(frame.vlan_tag(), None);
        assert_eq!(frame.payload_offset(), 14);
        assert_eq!(frame.payload().len(), 28);
        assert_eq!(format!("{:?}", frame.ethertype()), "EtherType(arp)");
        assert_eq!(format!("{:?}", EtherType(0x88cc)), "EtherType(0x88cc)");
    }

    #[test]
    fn tagged_frame_accessors() {
        let bytes = hex("0200 0000 0001 0200 0000 0002 8100 a064 86dd 6000");
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let tag = frame.vlan_tag().unwrap();
        assert_eq!(tag.tpid, EtherType::VLAN);
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.pcp(), 5);
        assert!(!tag.dei());
        assert_eq!(frame.ethertype(), EtherType::VLAN);
        assert_eq!(frame.payload_ethertype(), EtherType::IPV6);
        assert_eq!(frame.payload_offset(), 18);
        assert_eq!(frame.payload(), &[0x60, 0x00]);

        let qinq = hex("0200 0000 0001 0200 0000 0002 88a8 1fff 8100");
        let frame = EthernetFrame::new_checked(&qinq[..]).unwrap();
        let tag = frame.vlan_tag().unwrap();
        assert_eq!(tag.tpid, EtherType::QINQ);
        assert!(tag.dei());
        assert_eq!(tag.vid(), 0xfff);
        assert_eq!(frame.payload_ethertype(), EtherType::VLAN);
    }

    #[test]
    fn short_frames_are_refused() {
        let bytes = hex(ARP_FRAME);
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&bytes[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        assert!(EthernetFrame::new_checked(&bytes[..HEADER_LEN]).is_ok());
        let tagged = hex("0200 0000 0001 0200 0000 0002 8100 0064 0800");
        for len in HEADER_LEN..tagged.len() {
            assert_eq!(
                EthernetFrame::new_checked(&tagged[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
    }

    #[test]
    fn setters_and_emit() {
        let mut bytes = hex(ARP_FRAME);
        let mut frame = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        let a = MacAddr([2, 0, 0, 0, 0, 0xaa]);
        let b = MacAddr([2, 0, 0, 0, 0, 0xbb]);
        frame.set_dst_addr(a);
        frame.set_src_addr(b);
        frame.set_ethertype(EtherType::IPV4);
        frame.payload_mut()[0] = 0x45;
        assert_eq!(frame.dst_addr(), a);
        assert_eq!(frame.src_addr(), b);
        assert_eq!(frame.ethertype(), EtherType::IPV4);
        assert_eq!(frame.payload()[0], 0x45);

        let mut out = [0u8; 14];
        emit_header(&mut out, a, b, EtherType::IPV6).unwrap();
        assert_eq!(&out[..], &hex("0200 0000 00aa 0200 0000 00bb 86dd")[..]);
        assert_eq!(
            emit_header(&mut out[..13], a, b, EtherType::IPV6),
            Err(WireError::BufferTooSmall)
        );
    }
}
