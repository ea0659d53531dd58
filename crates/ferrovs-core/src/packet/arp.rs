//! ARP for IPv4 over Ethernet (RFC 826).

use std::fmt;
use std::net::Ipv4Addr;

use super::ethernet::{self, EtherType, EthernetFrame, MacAddr};
use super::{be, WireError};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Length of a full ARP frame: Ethernet header and ARP packet. Short of the 60-byte
/// Ethernet minimum; the NIC pads it on transmit.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

/// Hardware type of Ethernet.
const HTYPE_ETHERNET: u16 = 1;

mod field {
    use std::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// The ARP operation code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpOperation(pub u16);

impl ArpOperation {
    /// Who has the target protocol address?
    pub const REQUEST: ArpOperation = ArpOperation(1);
    /// The sender has the sender protocol address.
    pub const REPLY: ArpOperation = ArpOperation(2);
}

impl fmt::Debug for ArpOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ArpOperation::REQUEST => f.write_str("ArpOperation(request)"),
            ArpOperation::REPLY => f.write_str("ArpOperation(reply)"),
            ArpOperation(other) => write!(f, "ArpOperation({other})"),
        }
    }
}

/// A checked view of an Ethernet/IPv4 ARP packet (the Ethernet payload).
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` after checking it holds 28 bytes of Ethernet/IPv4 ARP: hardware
    /// type 1, protocol type 0x0800, address lengths 6 and 4. Trailing bytes
    /// (Ethernet padding) are allowed.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        if buf.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        let packet = ArpPacket { buffer };
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != EtherType::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(packet)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_mac(&self, range: std::ops::Range<usize>) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[range]);
        MacAddr(mac)
    }

    fn read_ipv4(&self, range: std::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[range];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        be::read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (IPv4).
    pub fn protocol_type(&self) -> EtherType {
        EtherType(be::read_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length (6).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation: request or reply.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation(be::read_u16(self.buffer.as_ref(), field::OPER))
    }

    /// Sender hardware address.
    pub fn sender_hw_addr(&self) -> MacAddr {
        self.read_mac(field::SHA)
    }

    /// Sender protocol address.
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        self.read_ipv4(field::SPA)
    }

    /// Target hardware address (zero in a request).
    pub fn target_hw_addr(&self) -> MacAddr {
        self.read_mac(field::THA)
    }

    /// Target protocol address.
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        self.read_ipv4(field::TPA)
    }

    /// A gratuitous ARP announces the sender's own binding: sender and target
    /// protocol addresses are equal.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_proto_addr() == self.target_proto_addr()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn write(&mut self, range: std::ops::Range<usize>, bytes: &[u8]) {
        self.buffer.as_mut()[range].copy_from_slice(bytes);
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, op: ArpOperation) {
        be::write_u16(self.buffer.as_mut(), field::OPER, op.0);
    }

    /// Sets the sender hardware address.
    pub fn set_sender_hw_addr(&mut self, addr: MacAddr) {
        self.write(field::SHA, &addr.0);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_proto_addr(&mut self, addr: Ipv4Addr) {
        self.write(field::SPA, &addr.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_hw_addr(&mut self, addr: MacAddr) {
        self.write(field::THA, &addr.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_proto_addr(&mut self, addr: Ipv4Addr) {
        self.write(field::TPA, &addr.octets());
    }

    /// Turns a request into the reply that `our_mac` gives for the requested address:
    /// the requester becomes the target and we become the sender. Whether the target
    /// address is really ours is the caller's decision.
    pub fn make_reply(&mut self, our_mac: MacAddr) -> Result<(), WireError> {
        if self.operation() != ArpOperation::REQUEST {
            return Err(WireError::WrongType);
        }
        let requester_mac = self.sender_hw_addr();
        let requester_ip = self.sender_proto_addr();
        let requested_ip = self.target_proto_addr();
        self.set_operation(ArpOperation::REPLY);
        self.set_sender_hw_addr(our_mac);
        self.set_sender_proto_addr(requested_ip);
        self.set_target_hw_addr(requester_mac);
        self.set_target_proto_addr(requester_ip);
        Ok(())
    }
}

/// Turns a whole ARP request frame into the reply from `our_mac`, in place: the ARP
/// packet as [`ArpPacket::make_reply`] does, and the Ethernet header addressed back to
/// the requester. A VLAN tag stays as it is, so the reply leaves on the same VLAN.
pub fn reply_in_place(frame: &mut [u8], our_mac: MacAddr) -> Result<(), WireError> {
    let mut eth = EthernetFrame::new_checked(&mut *frame)?;
    if eth.payload_ethertype() != EtherType::ARP {
        return Err(WireError::WrongType);
    }
    let mut arp = ArpPacket::new_checked(eth.payload_mut())?;
    let requester = arp.sender_hw_addr();
    arp.make_reply(our_mac)?;
    eth.set_dst_addr(requester);
    eth.set_src_addr(our_mac);
    Ok(())
}

/// Writes a broadcast ARP request frame ("who has `target_ip`? tell `sender_ip`")
/// into the first [`FRAME_LEN`] bytes of `buf` and returns that length. With
/// `target_ip == sender_ip` it is a gratuitous ARP announcement.
pub fn emit_request(
    buf: &mut [u8],
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Result<usize, WireError> {
    let frame = buf.get_mut(..FRAME_LEN).ok_or(WireError::BufferTooSmall)?;
    let (header, arp) = frame.split_at_mut(ethernet::HEADER_LEN);
    ethernet::emit_header(header, MacAddr::BROADCAST, sender_mac, EtherType::ARP)?;
    be::write_u16(arp, field::HTYPE, HTYPE_ETHERNET);
    be::write_u16(arp, field::PTYPE, EtherType::IPV4.0);
    arp[field::HLEN] = 6;
    arp[field::PLEN] = 4;
    be::write_u16(arp, field::OPER, ArpOperation::REQUEST.0);
    arp[field::SHA].copy_from_slice(&sender_mac.0);
    arp[field::SPA].copy_from_slice(&sender_ip.octets());
    arp[field::THA].fill(0);
    arp[field::TPA].copy_from_slice(&target_ip.octets());
    Ok(FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testutil::{hex, XorShift};

    // "Who has 24.166.173.159? Tell 24.166.172.1" from 00:07:0d:af:f4:54, with the
    // Ethernet padding a capture shows.
    const REQUEST: &str = "ffffffffffff 00070dafF454 0806
        0001 0800 06 04 0001 00070daff454 18a6ac01 000000000000 18a6ad9f
        000000000000000000000000000000000000";

    #[test]
    fn parse_captured_request() {
        let frame = hex(REQUEST);
        assert_eq!(frame.len(), 60);
        let arp = ArpPacket::new_checked(&frame[14..]).unwrap();
        assert_eq!(arp.hardware_type(), 1);
        assert_eq!(arp.protocol_type(), EtherType::IPV4);
        assert_eq!(arp.operation(), ArpOperation::REQUEST);
        assert_eq!(
            arp.sender_hw_addr(),
            MacAddr([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54])
        );
        assert_eq!(arp.sender_proto_addr(), Ipv4Addr::new(24, 166, 172, 1));
        assert_eq!(arp.target_hw_addr(), MacAddr::ZERO);
        assert_eq!(arp.target_proto_addr(), Ipv4Addr::new(24, 166, 173, 159));
        assert!(!arp.is_gratuitous());
        assert_eq!(format!("{:?}", arp.operation()), "ArpOperation(request)");
        assert_eq!(format!("{:?}", ArpOperation(9)), "ArpOperation(9)");
    }

    #[test]
    fn refuses_short_and_foreign_arp() {
        let frame = hex(REQUEST);
        let arp = &frame[14..42];
        for len in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&arp[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        // Each of htype, ptype, hlen, plen wrong in turn.
        for (at, value) in [(1, 6u8), (2, 0x86), (4, 16), (5, 16)] {
            let mut bad = arp.to_vec();
            bad[at] = value;
            assert_eq!(
                ArpPacket::new_checked(&bad[..]).unwrap_err(),
                WireError::Unsupported
            );
        }
    }

    #[test]
    fn request_becomes_reply_in_place() {
        let mut frame = hex(REQUEST);
        let ours = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
        reply_in_place(&mut frame, ours).unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(
            eth.dst_addr(),
            MacAddr([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54])
        );
        assert_eq!(eth.src_addr(), ours);
        let arp = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.operation(), ArpOperation::REPLY);
        assert_eq!(arp.sender_hw_addr(), ours);
        assert_eq!(arp.sender_proto_addr(), Ipv4Addr::new(24, 166, 173, 159));
        assert_eq!(
            arp.target_hw_addr(),
            MacAddr([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54])
        );
        assert_eq!(arp.target_proto_addr(), Ipv4Addr::new(24, 166, 172, 1));
        // A reply is not answered again.
        assert_eq!(reply_in_place(&mut frame, ours), Err(WireError::WrongType));
    }

    #[test]
    fn tagged_request_keeps_its_tag() {
        let plain = hex(REQUEST);
        let mut frame = plain[..12].to_vec();
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        frame.extend_from_slice(&plain[12..42]);
        let ours = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
        reply_in_place(&mut frame, ours).unwrap();
        assert_eq!(&frame[12..16], &[0x81, 0x00, 0x00, 0x64]);
        let arp = ArpPacket::new_checked(&frame[18..]).unwrap();
        assert_eq!(arp.operation(), ArpOperation::REPLY);
    }

    #[test]
    fn reply_in_place_refuses_other_frames() {
        let mut ipv4 = hex("ffffffffffff 020000000001 0800");
        ipv4.extend_from_slice(&[0; 28]);
        assert_eq!(
            reply_in_place(&mut ipv4, MacAddr::ZERO),
            Err(WireError::WrongType)
        );
        let mut short = hex(REQUEST);
        short.truncate(30);
        assert_eq!(
            reply_in_place(&mut short, MacAddr::ZERO),
            Err(WireError::Truncated)
        );
        assert_eq!(
            reply_in_place(&mut [0u8; 5], MacAddr::ZERO),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn emitted_request_matches_capture() {
        let mut buf = [0xeeu8; 64];
        let n = emit_request(
            &mut buf,
            MacAddr([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54]),
            Ipv4Addr::new(24, 166, 172, 1),
            Ipv4Addr::new(24, 166, 173, 159),
        )
        .unwrap();
        assert_eq!(n, FRAME_LEN);
        assert_eq!(&buf[..n], &hex(REQUEST)[..42]);
        assert_eq!(buf[42], 0xee, "writes nothing past the frame");
        let mut small = [0u8; FRAME_LEN - 1];
        assert_eq!(
            emit_request(
                &mut small,
                MacAddr::ZERO,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED
            ),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn gratuitous_and_setters() {
        let mut buf = [0u8; FRAME_LEN];
        let ip = Ipv4Addr::new(198, 18, 0, 1);
        emit_request(&mut buf, MacAddr([2, 0, 0, 0, 0, 1]), ip, ip).unwrap();
        let mut arp = ArpPacket::new_checked(&mut buf[14..]).unwrap();
        assert!(arp.is_gratuitous());
        arp.set_target_proto_addr(Ipv4Addr::new(198, 18, 0, 2));
        arp.set_target_hw_addr(MacAddr::BROADCAST);
        arp.set_sender_proto_addr(Ipv4Addr::new(198, 18, 0, 3));
        arp.set_sender_hw_addr(MacAddr([2, 0, 0, 0, 0, 3]));
        arp.set_operation(ArpOperation::REPLY);
        assert!(!arp.is_gratuitous());
        assert_eq!(arp.target_hw_addr(), MacAddr::BROADCAST);
        assert_eq!(arp.sender_hw_addr(), MacAddr([2, 0, 0, 0, 0, 3]));
        assert_eq!(arp.operation(), ArpOperation::REPLY);
        assert_eq!(arp.into_inner().len(), PACKET_LEN);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(826);
        let mut buf = [0u8; 64];
        for _ in 0..20000 {
            let len = rng.below(buf.len() + 1);
            rng.fill(&mut buf[..len]);
            if rng.below(2) == 0 && len >= 42 {
                // Make the fixed fields valid half the time so the accessors run.
                buf[12..22].copy_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
            }
            if let Ok(arp) = ArpPacket::new_checked(&buf[14.min(len)..len]) {
                let _ = (
                    arp.operation(),
                    arp.sender_hw_addr(),
                    arp.target_proto_addr(),
                );
            }
            let _ = reply_in_place(&mut buf[..len], MacAddr::BROADCAST);
        }
    }
}
