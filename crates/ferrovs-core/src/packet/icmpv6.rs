//! ICMPv6 (RFC 4443) and the Neighbor Discovery messages ferrovs answers and sends
//! (RFC 4861): solicitation and advertisement with link-layer address options.

use std::fmt;
use std::net::Ipv6Addr;

use super::checksum::{self, Delta, Sum};
use super::ethernet::{self, EtherType, MacAddr};
use super::ip::IpProtocol;
use super::ipv6::{self, Ipv6Packet, Ipv6Repr};
use super::{be, WireError};

/// Shortest ICMPv6 message: type, code, checksum and 4 bytes every message has.
pub const MIN_LEN: usize = 8;
/// Length of a neighbour solicitation or advertisement without options.
pub const ND_LEN: usize = 24;
/// Length of a link-layer address option for Ethernet.
pub const LINK_LAYER_OPTION_LEN: usize = 8;
/// Length of the full frames the ND emitters write: Ethernet, IPv6, message and one
/// link-layer address option.
pub const ND_FRAME_LEN: usize =
    ethernet::HEADER_LEN + ipv6::HEADER_LEN + ND_LEN + LINK_LAYER_OPTION_LEN;
/// Hop limit of every ND message; a received one with another value crossed a router
/// and is discarded (RFC 4861 section 7.1).
pub const ND_HOP_LIMIT: u8 = 255;

mod field {
    use std::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const TYPE_CODE: Range<usize> = 0..2;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 4..8;
    pub const ND_FLAGS: usize = 4;
    pub const ND_RESERVED: Range<usize> = 4..8;
    pub const ND_TARGET: Range<usize> = 8..24;
    pub const DATA: usize = 8;
}

/// Neighbor Discovery option types used here.
mod nd_option {
    pub const SOURCE_LINK_ADDR: u8 = 1;
    pub const TARGET_LINK_ADDR: u8 = 2;
}

/// ICMPv6 message type.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmpv6Type(pub u8);

impl Icmpv6Type {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: Icmpv6Type = Icmpv6Type(1);
    /// Packet too big (carries the MTU).
    pub const PACKET_TOO_BIG: Icmpv6Type = Icmpv6Type(2);
    /// Time exceeded.
    pub const TIME_EXCEEDED: Icmpv6Type = Icmpv6Type(3);
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: Icmpv6Type = Icmpv6Type(4);
    /// Echo request.
    pub const ECHO_REQUEST: Icmpv6Type = Icmpv6Type(128);
    /// Echo reply.
    pub const ECHO_REPLY: Icmpv6Type = Icmpv6Type(129);
    /// Router solicitation.
    pub const ROUTER_SOLICIT: Icmpv6Type = Icmpv6Type(133);
    /// Router advertisement.
    pub const ROUTER_ADVERT: Icmpv6Type = Icmpv6Type(134);
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: Icmpv6Type = Icmpv6Type(135);
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: Icmpv6Type = Icmpv6Type(136);

    /// Error messages have types 0 to 127 (RFC 4443 section 2.1).
    pub const fn is_error(self) -> bool {
        self.0 < 128
    }
}

impl fmt::Debug for Icmpv6Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "dest_unreachable",
            2 => "packet_too_big",
            3 => "time_exceeded",
            4 => "parameter_problem",
            128 => "echo_request",
            129 => "echo_reply",
            133 => "router_solicit",
            134 => "router_advert",
            135 => "neighbor_solicit",
            136 => "neighbor_advert",
            other => return write!(f, "Icmpv6Type({other})"),
        };
        write!(f, "Icmpv6Type({name})")
    }
}

/// The flags of a neighbour advertisement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NaFlags {
    /// The sender is a router.
    pub router: bool,
    /// Sent in answer to a solicitation.
    pub solicited: bool,
    /// Override an existing cache entry.
    pub override_entry: bool,
}

impl NaFlags {
    const ROUTER: u8 = 0x80;
    const SOLICITED: u8 = 0x40;
    const OVERRIDE: u8 = 0x20;

    fn from_byte(b: u8) -> NaFlags {
        NaFlags {
            router: b & Self::ROUTER != 0,
            solicited: b & Self::SOLICITED != 0,
            override_entry: b & Self::OVERRIDE != 0,
        }
    }

    fn to_byte(self) -> u8 {
        (if self.router { Self::ROUTER } else { 0 })
            | (if self.solicited { Self::SOLICITED } else { 0 })
            | (if self.override_entry {
                Self::OVERRIDE
            } else {
                0
            })
    }
}

/// A checked view of an ICMPv6 message (the upper-layer part of an IPv6 packet).
/// The checksum covers the whole buffer, so it must be exactly the message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` after checking it holds the 8 bytes every message has.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < MIN_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Icmpv6Packet { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type(self.bytes()[field::TYPE])
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.bytes()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be::read_u16(self.bytes(), field::CHECKSUM)
    }

    fn sum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Sum {
        let len = self.bytes().len() as u32;
        checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6, len) + Sum::of(self.bytes())
    }

    /// True when the checksum verifies over the IPv6 pseudo-header and the message.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.sum(src, dst).verifies()
    }

    /// Echo identifier (echo request and reply).
    pub fn echo_ident(&self) -> u16 {
        be::read_u16(self.bytes(), field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request and reply).
    pub fn echo_seq_no(&self) -> u16 {
        be::read_u16(self.bytes(), field::ECHO_SEQ)
    }

    /// MTU of a packet-too-big message.
    pub fn mtu(&self) -> u32 {
        be::read_u32(self.bytes(), field::MTU)
    }

    /// The data after the first 8 bytes: echo payload, the quoted packet of an
    /// error, or (from byte 8) the target and options of an ND message.
    pub fn data(&self) -> &[u8] {
        &self.bytes()[field::DATA..]
    }

    /// Flags of a neighbour advertisement.
    pub fn na_flags(&self) -> NaFlags {
        NaFlags::from_byte(self.bytes()[field::ND_FLAGS])
    }

    /// Target address of a neighbour solicitation or advertisement; `None` for other
    /// types or a message too short to hold it.
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        let is_nd = matches!(
            self.msg_type(),
            Icmpv6Type::NEIGHBOR_SOLICIT | Icmpv6Type::NEIGHBOR_ADVERT
        );
        let b = self.bytes().get(field::ND_TARGET).filter(|_| is_nd)?;
        let mut octets = [0u8; 16];
        octets.copy_from_slice(b);
        Some(Ipv6Addr::from(octets))
    }

    /// The options after the target of an ND message (empty when too short).
    fn nd_options(&self) -> &[u8] {
        self.bytes().get(ND_LEN..).unwrap_or(&[])
    }

    /// Walks the ND options, checking every one (a zero length or one past the end
    /// is [`WireError::BadOption`]), and returns the Ethernet address of the first
    /// option of `kind`, if any; later duplicates are ignored, as Linux does.
    fn link_layer_option(&self, kind: u8) -> Result<Option<MacAddr>, WireError> {
        let options = self.nd_options();
        let mut found = None;
        let mut at = 0;
        while at < options.len() {
            let len = usize::from(*options.get(at + 1).ok_or(WireError::BadOption)?) * 8;
            let option = options
                .get(at..at + len)
                .filter(|_| len > 0)
                .ok_or(WireError::BadOption)?;
            if option[0] == kind {
                if len != LINK_LAYER_OPTION_LEN {
                    return Err(WireError::BadOption);
                }
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&option[2..8]);
                found = found.or(Some(MacAddr(mac)));
            }
            at += len;
        }
        Ok(found)
    }

    /// The source link-layer address option (of a solicitation).
    pub fn source_link_addr(&self) -> Result<Option<MacAddr>, WireError> {
        self.link_layer_option(nd_option::SOURCE_LINK_ADDR)
    }

    /// The target link-layer address option (of an advertisement).
    pub fn target_link_addr(&self) -> Result<Option<MacAddr>, WireError> {
        self.link_layer_option(nd_option::TARGET_LINK_ADDR)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the type without touching the checksum.
    pub fn set_msg_type(&mut self, msg_type: Icmpv6Type) {
        self.buffer.as_mut()[field::TYPE] = msg_type.0;
    }

    /// Sets the code without touching the checksum.
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        be::write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Sets the echo identifier without touching the checksum.
    pub fn set_echo_ident(&mut self, ident: u16) {
        be::write_u16(self.buffer.as_mut(), field::ECHO_IDENT, ident);
    }

    /// Sets the echo sequence number without touching the checksum.
    pub fn set_echo_seq_no(&mut self, seq: u16) {
        be::write_u16(self.buffer.as_mut(), field::ECHO_SEQ, seq);
    }

    /// Sets the MTU of a packet-too-big message without touching the checksum.
    pub fn set_mtu(&mut self, mtu: u32) {
        be::write_u32(self.buffer.as_mut(), field::MTU, mtu);
    }

    /// Computes and stores the checksum over the pseudo-header and the message.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let checksum = self.sum(src, dst).checksum();
        self.set_checksum(checksum);
    }

    /// Applies recorded changes (such as an address rewrite) to the checksum.
    pub fn apply_checksum_delta(&mut self, delta: Delta) {
        let checksum = delta.apply(self.checksum());
        self.set_checksum(checksum);
    }

    /// Turns an echo request into its echo reply in place, fixing the checksum. The
    /// caller swaps the IPv6 addresses, which leaves the pseudo-header sum unchanged.
    pub fn make_echo_reply(&mut self) -> Result<(), WireError> {
        if self.msg_type() != Icmpv6Type::ECHO_REQUEST {
            return Err(WireError::WrongType);
        }
        let old = be::read_u16(self.bytes(), field::TYPE_CODE);
        self.set_msg_type(Icmpv6Type::ECHO_REPLY);
        let new = be::read_u16(self.bytes(), field::TYPE_CODE);
        self.apply_checksum_delta(Delta::NONE.u16(old, new));
        Ok(())
    }
}

/// The ICMPv6 message of `ip` as an ND message of `msg_type`, after the checks both
/// kinds share (RFC 4861 sections 7.1.1 and 7.1.2): not a fragment (RFC 6980), hop
/// limit 255, valid checksum, code 0, at least 24 bytes, a unicast target.
fn nd_message<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
    msg_type: Icmpv6Type,
) -> Result<(Icmpv6Packet<&[u8]>, Ipv6Addr), WireError> {
    let upper = ip.upper_layer()?;
    if upper.protocol != IpProtocol::ICMPV6 || upper.fragment.is_some() {
        return Err(WireError::WrongType);
    }
    let message = ip.payload().get(upper.offset - ipv6::HEADER_LEN..);
    let icmp = Icmpv6Packet::new_checked(message.ok_or(WireError::Truncated)?)?;
    if icmp.msg_type() != msg_type {
        return Err(WireError::WrongType);
    }
    if !icmp.verify_checksum(ip.src_addr(), ip.dst_addr()) {
        return Err(WireError::BadChecksum);
    }
    if ip.hop_limit() != ND_HOP_LIMIT || icmp.code() != 0 {
        return Err(WireError::InvalidNeighborDiscovery);
    }
    let target = icmp.target_addr().ok_or(WireError::Truncated)?;
    if target.is_multicast() {
        return Err(WireError::InvalidNeighborDiscovery);
    }
    Ok((icmp, target))
}

/// A neighbour solicitation that passed the checks of RFC 4861 section 7.1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborSolicit {
    /// The IPv6 source: the solicitor, or unspecified for duplicate address detection.
    pub source: Ipv6Addr,
    /// The address being resolved.
    pub target: Ipv6Addr,
    /// The solicitor's MAC from the source link-layer address option.
    pub source_link_addr: Option<MacAddr>,
}

impl NeighborSolicit {
    /// Parses and validates the solicitation carried by `ip`.
    pub fn parse<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>) -> Result<NeighborSolicit, WireError> {
        let (icmp, target) = nd_message(ip, Icmpv6Type::NEIGHBOR_SOLICIT)?;
        let source_link_addr = icmp.source_link_addr()?;
        let source = ip.src_addr();
        if source.is_unspecified()
            && (source_link_addr.is_some() || ip.dst_addr() != solicited_node_multicast(target))
        {
            return Err(WireError::InvalidNeighborDiscovery);
        }
        Ok(NeighborSolicit {
            source,
            target,
            source_link_addr,
        })
    }
}

/// A neighbour advertisement that passed the checks of RFC 4861 section 7.1.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborAdvert {
    /// The address whose link-layer address is advertised.
    pub target: Ipv6Addr,
    /// Router, solicited and override flags.
    pub flags: NaFlags,
    /// The MAC from the target link-layer address option.
    pub target_link_addr: Option<MacAddr>,
}

impl NeighborAdvert {
    /// Parses and validates the advertisement carried by `ip`.
    pub fn parse<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>) -> Result<NeighborAdvert, WireError> {
        let (icmp, target) = nd_message(ip, Icmpv6Type::NEIGHBOR_ADVERT)?;
        let flags = icmp.na_flags();
        if ip.dst_addr().is_multicast() && flags.solicited {
            return Err(WireError::InvalidNeighborDiscovery);
        }
        Ok(NeighborAdvert {
            target,
            flags,
            target_link_addr: icmp.target_link_addr()?,
        })
    }
}

/// The solicited-node multicast address of `addr`: ff02::1:ff00:0/104 plus its low
/// 24 bits (RFC 4291 section 2.7.1).
pub fn solicited_node_multicast(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet address an IPv6 multicast address maps to: 33:33 and its low 32
/// bits (RFC 2464 section 7).
pub fn multicast_mac(addr: Ipv6Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Addresses and contents of one ND frame to emit.
struct NdFrame {
    eth_dst: MacAddr,
    eth_src: MacAddr,
    ip_src: Ipv6Addr,
    ip_dst: Ipv6Addr,
    msg_type: Icmpv6Type,
    flags: NaFlags,
    target: Ipv6Addr,
    option: Option<(u8, MacAddr)>,
}

impl NdFrame {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let message_len = ND_LEN
            + if self.option.is_some() {
                LINK_LAYER_OPTION_LEN
            } else {
                0
            };
        let total = ethernet::HEADER_LEN + ipv6::HEADER_LEN + message_len;
        let frame = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
        let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
        ethernet::emit_header(eth, self.eth_dst, self.eth_src, EtherType::IPV6)?;
        let (ip, message) = rest.split_at_mut(ipv6::HEADER_LEN);
        Ipv6Repr {
            src_addr: self.ip_src,
            dst_addr: self.ip_dst,
            next_header: IpProtocol::ICMPV6,
            payload_len: message_len,
            hop_limit: ND_HOP_LIMIT,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(ip)?;
        message[field::TYPE] = self.msg_type.0;
        message[field::CODE] = 0;
        message[field::ND_RESERVED].fill(0);
        message[field::ND_FLAGS] = self.flags.to_byte();
        message[field::ND_TARGET].copy_from_slice(&self.target.octets());
        if let Some((kind, mac)) = self.option {
            let option = &mut message[ND_LEN..];
            option[0] = kind;
            option[1] = (LINK_LAYER_OPTION_LEN / 8) as u8;
            option[2..8].copy_from_slice(&mac.0);
        }
        Icmpv6Packet { buffer: message }.fill_checksum(self.ip_src, self.ip_dst);
        Ok(total)
    }
}

/// Writes a full neighbour solicitation frame asking for `target`'s MAC into the
/// start of `buf` and returns its length ([`ND_FRAME_LEN`]): sent to the target's
/// solicited-node multicast group, with our MAC in a source link-layer address
/// option. An unspecified `src_ip` (duplicate address detection) omits the option,
/// as RFC 4861 section 4.3 requires, and the frame is 8 bytes shorter.
pub fn emit_neighbor_solicit(
    buf: &mut [u8],
    src_mac: MacAddr,
    src_ip: Ipv6Addr,
    target: Ipv6Addr,
) -> Result<usize, WireError> {
    let group = solicited_node_multicast(target);
    NdFrame {
        eth_dst: multicast_mac(group),
        eth_src: src_mac,
        ip_src: src_ip,
        ip_dst: group,
        msg_type: Icmpv6Type::NEIGHBOR_SOLICIT,
        flags: NaFlags::default(),
        target,
        option: (!src_ip.is_unspecified()).then_some((nd_option::SOURCE_LINK_ADDR, src_mac)),
    }
    .emit(buf)
}

/// Writes the full neighbour advertisement frame answering `ns` into the start of
/// `buf` and returns its length ([`ND_FRAME_LEN`]). `our_mac` is the MAC of the
/// solicited target (ours); `requester_mac` is the Ethernet source of the
/// solicitation, used when it carried no source link-layer address option.
///
/// The answer comes from the target address with our MAC in a target link-layer
/// address option, with the override flag (the address is ours, not anycast) and
/// without the router flag. A solicitation from the unspecified address (duplicate
/// address detection) is answered to all-nodes without the solicited flag (RFC 4861
/// section 7.2.4).
pub fn emit_neighbor_advert(
    buf: &mut [u8],
    our_mac: MacAddr,
    ns: &NeighborSolicit,
    requester_mac: MacAddr,
) -> Result<usize, WireError> {
    let dad = ns.source.is_unspecified();
    let (ip_dst, eth_dst) = if dad {
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        (all_nodes, multicast_mac(all_nodes))
    } else {
        (ns.source, ns.source_link_addr.unwrap_or(requester_mac))
    };
    NdFrame {
        eth_dst,
        eth_src: our_mac,
        ip_src: ns.target,
        ip_dst,
        msg_type: Icmpv6Type::NEIGHBOR_ADVERT,
        flags: NaFlags {
            router: false,
            solicited: !dad,
            override_entry: true,
        },
        target: ns.target,
        option: Some((nd_option::TARGET_LINK_ADDR, our_mac)),
    }
    .emit(buf)
}

/// Writes an unsolicited neighbour advertisement of `target` (ours) into the start
/// of `buf` and returns its length ([`ND_FRAME_LEN`]): to all-nodes, with our MAC
/// in a target link-layer address option and the override flag, so that neighbours
/// that cached another MAC for the address take ours (RFC 4861 section 7.2.6).
pub fn emit_unsolicited_neighbor_advert(
    buf: &mut [u8],
    our_mac: MacAddr,
    target: Ipv6Addr,
) -> Result<usize, WireError> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    NdFrame {
        eth_dst: multicast_mac(all_nodes),
        eth_src: our_mac,
        ip_src: target,
        ip_dst: all_nodes,
        msg_type: Icmpv6Type::NEIGHBOR_ADVERT,
        flags: NaFlags {
            router: false,
            solicited: false,
            override_entry: true,
        },
        target,
        option: Some((nd_option::TARGET_LINK_ADDR, our_mac)),
    }
    .emit(buf)
}

/// Largest ICMPv6 error packet (RFC 4443 section 2.4: it must not exceed the IPv6
/// minimum MTU).
pub const MAX_ERROR_LEN: usize = 1280;

/// Writes an ICMPv6 "packet too big" about `offending` (the IPv6 packet as received,
/// from its header on) into the start of `buf`: an IPv6 header from `src_addr` back
/// to the offending source, the message with `mtu`, and as much of the offending
/// packet as fits in [`MAX_ERROR_LEN`] and `buf`. Returns the length written.
pub fn emit_packet_too_big(
    buf: &mut [u8],
    src_addr: Ipv6Addr,
    offending: &[u8],
    mtu: u32,
) -> Result<usize, WireError> {
    let original = Ipv6Packet::new_checked(offending)?;
    if original.src_addr().is_multicast() || original.src_addr().is_unspecified() {
        return Err(WireError::IcmpErrorSuppressed);
    }
    let dst = original.src_addr();
    let overhead = ipv6::HEADER_LEN + MIN_LEN;
    let room = buf.len().min(MAX_ERROR_LEN);
    if room < overhead + ipv6::HEADER_LEN {
        return Err(WireError::BufferTooSmall);
    }
    let quote_len = original
        .total_len()
        .min(offending.len())
        .min(room - overhead);
    let total = overhead + quote_len;
    let (ip_header, msg) = buf[..total].split_at_mut(ipv6::HEADER_LEN);
    Ipv6Repr {
        src_addr,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: MIN_LEN + quote_len,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(ip_header)?;
    msg[MIN_LEN..].copy_from_slice(&offending[..quote_len]);
    let mut icmp = Icmpv6Packet { buffer: msg };
    icmp.set_msg_type(Icmpv6Type::PACKET_TOO_BIG);
    icmp.set_code(0);
    icmp.set_mtu(mtu);
    icmp.fill_checksum(src_addr, dst);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ethernet::EthernetFrame;
    use crate::packet::testutil::{hex, XorShift};

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const HOST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
    const OUR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

    /// A solicitation from 2001:2::10 for 2001:2::1 as a Linux host sends it.
    fn host_solicit() -> Vec<u8> {
        let mut buf = [0u8; ND_FRAME_LEN];
        let n = emit_neighbor_solicit(&mut buf, HOST_MAC, addr("2001:2::10"), addr("2001:2::1"))
            .unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn solicitation_matches_known_bytes() {
        let frame = host_solicit();
        // Checksum 0x3777 computed by an independent implementation.
        let expect = hex("3333 ff00 0001 0200 0000 0010 86dd
             6000 0000 0020 3aff 2001 0002 0000 0000 0000 0000 0000 0010
             ff02 0000 0000 0000 0000 0001 ff00 0001
             8700 3777 0000 0000 2001 0002 0000 0000 0000 0000 0000 0001
             0101 0200 0000 0010");
        assert_eq!(frame, expect);
    }

    #[test]
    fn parse_solicitation_and_answer_it() {
        let frame = host_solicit();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv6Type::NEIGHBOR_SOLICIT);
        assert!(icmp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(icmp.target_addr(), Some(addr("2001:2::1")));
        assert_eq!(icmp.source_link_addr(), Ok(Some(HOST_MAC)));
        assert_eq!(icmp.target_link_addr(), Ok(None));
        let ns = NeighborSolicit::parse(&ip).unwrap();
        assert_eq!(
            ns,
            NeighborSolicit {
                source: addr("2001:2::10"),
                target: addr("2001:2::1"),
                source_link_addr: Some(HOST_MAC),
            }
        );

        let mut out = [0u8; 128];
        let n = emit_neighbor_advert(&mut out, OUR_MAC, &ns, eth.src_addr()).unwrap();
        assert_eq!(n, ND_FRAME_LEN);
        let eth = EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!(eth.dst_addr(), HOST_MAC);
        assert_eq!(eth.src_addr(), OUR_MAC);
        assert_eq!(eth.ethertype(), EtherType::IPV6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.src_addr(), addr("2001:2::1"));
        assert_eq!(ip.dst_addr(), addr("2001:2::10"));
        assert_eq!(ip.hop_limit(), 255);
        let na = NeighborAdvert::parse(&ip).unwrap();
        assert_eq!(na.target, addr("2001:2::1"));
        assert_eq!(na.target_link_addr, Some(OUR_MAC));
        assert_eq!(
            na.flags,
            NaFlags {
                router: false,
                solicited: true,
                override_entry: true
            }
        );
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.na_flags(), na.flags);
    }

    #[test]
    fn answer_without_option_uses_ethernet_source() {
        let ns = NeighborSolicit {
            source: addr("2001:2::10"),
            target: addr("2001:2::1"),
            source_link_addr: None,
        };
        let mut out = [0u8; ND_FRAME_LEN];
        emit_neighbor_advert(&mut out, OUR_MAC, &ns, HOST_MAC).unwrap();
        assert_eq!(
            EthernetFrame::new_checked(&out[..]).unwrap().dst_addr(),
            HOST_MAC
        );
    }

    #[test]
    fn duplicate_address_detection() {
        // DAD probe: from ::, no option, to the solicited-node group.
        let mut buf = [0u8; ND_FRAME_LEN];
        let n = emit_neighbor_solicit(&mut buf, HOST_MAC, Ipv6Addr::UNSPECIFIED, addr("2001:2::1"))
            .unwrap();
        assert_eq!(n, ND_FRAME_LEN - LINK_LAYER_OPTION_LEN);
        let ip = Ipv6Packet::new_checked(&buf[14..n]).unwrap();
        let ns = NeighborSolicit::parse(&ip).unwrap();
        assert!(ns.source.is_unspecified());
        assert_eq!(ns.source_link_addr, None);

        let mut out = [0u8; ND_FRAME_LEN];
        emit_neighbor_advert(&mut out, OUR_MAC, &ns, HOST_MAC).unwrap();
        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        assert_eq!(eth.dst_addr(), MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.dst_addr(), addr("ff02::1"));
        let na = NeighborAdvert::parse(&ip).unwrap();
        assert!(!na.flags.solicited && na.flags.override_entry);
    }

    /// Re-signs the ICMPv6 message of an IPv6 packet after a test edit.
    fn resign(ip_bytes: &mut [u8]) {
        let mut ip = Ipv6Packet::new_checked(&mut *ip_bytes).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        Icmpv6Packet::new_checked(ip.payload_mut())
            .unwrap()
            .fill_checksum(src, dst);
    }

    #[test]
    fn invalid_solicitations_are_refused() {
        let good = host_solicit()[14..].to_vec();
        let check = |edit: &dyn Fn(&mut Vec<u8>), sign: bool, expect: WireError| {
            let mut p = good.clone();
            edit(&mut p);
            if sign {
                resign(&mut p);
            }
            let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
            assert_eq!(NeighborSolicit::parse(&ip), Err(expect));
        };
        check(&|p| p[7] = 64, true, WireError::InvalidNeighborDiscovery); // hop limit
        check(&|p| p[41] = 1, true, WireError::InvalidNeighborDiscovery); // code
        check(&|p| p[48] = 0xff, true, WireError::InvalidNeighborDiscovery); // multicast target
        check(&|p| p[60] ^= 1, false, WireError::BadChecksum);
        check(&|p| p[40] = 136, true, WireError::WrongType);
        check(&|p| p[6] = 17, false, WireError::WrongType);
        check(&|p| p[65] = 0, true, WireError::BadOption); // option length 0
        check(&|p| p[65] = 2, true, WireError::BadOption); // option past the end
        check(
            &|p| {
                // Message cut to 20 bytes: no room for the target.
                p[5] = 20;
                p.truncate(60);
            },
            true,
            WireError::Truncated,
        );
        // DAD probe with a source link-layer option.
        check(
            &|p| p[8..24].fill(0),
            true,
            WireError::InvalidNeighborDiscovery,
        );
        // A fragmented solicitation (RFC 6980).
        check(
            &|p| {
                let mut frag = vec![58, 0, 0, 0, 0, 0, 0, 1];
                frag.extend_from_slice(&p[40..]);
                p.truncate(40);
                p.extend_from_slice(&frag);
                p[5] += 8;
                p[6] = 44;
            },
            false,
            WireError::WrongType,
        );
    }

    #[test]
    fn invalid_advertisements_are_refused() {
        let ns = NeighborSolicit {
            source: Ipv6Addr::UNSPECIFIED,
            target: addr("2001:2::1"),
            source_link_addr: None,
        };
        let mut out = [0u8; ND_FRAME_LEN];
        emit_neighbor_advert(&mut out, OUR_MAC, &ns, HOST_MAC).unwrap();
        let mut p = out[14..].to_vec();
        p[44] |= 0x40; // solicited flag on a multicast advertisement
        resign(&mut p);
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(
            NeighborAdvert::parse(&ip),
            Err(WireError::InvalidNeighborDiscovery)
        );
        assert_eq!(NeighborSolicit::parse(&ip), Err(WireError::WrongType));
    }

    #[test]
    fn echo_and_packet_too_big() {
        let src = addr("2001:2::10");
        let dst = addr("2001:2::1");
        let mut bytes = hex("8000 0000 1234 0007 6869");
        let mut icmp = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.fill_checksum(src, dst);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x1234, 7));
        assert_eq!(icmp.data(), b"hi");
        assert_eq!(icmp.target_addr(), None);
        icmp.make_echo_reply().unwrap();
        assert_eq!(icmp.msg_type(), Icmpv6Type::ECHO_REPLY);
        assert!(
            icmp.verify_checksum(dst, src),
            "swapped addresses verify too"
        );
        let incremental = icmp.checksum();
        icmp.fill_checksum(src, dst);
        assert_eq!(incremental, icmp.checksum());
        assert_eq!(icmp.make_echo_reply(), Err(WireError::WrongType));

        icmp.set_msg_type(Icmpv6Type::PACKET_TOO_BIG);
        icmp.set_code(0);
        icmp.set_mtu(1280);
        icmp.set_echo_ident(1);
        icmp.set_echo_seq_no(2);
        assert_eq!(icmp.mtu(), 0x0001_0002);
        icmp.set_mtu(1280);
        assert_eq!(icmp.mtu(), 1280);
        assert!(icmp.msg_type().is_error());
        assert!(!Icmpv6Type::ECHO_REQUEST.is_error());
        assert_eq!(
            format!("{:?}", icmp.msg_type()),
            "Icmpv6Type(packet_too_big)"
        );
        assert_eq!(format!("{:?}", Icmpv6Type(200)), "Icmpv6Type(200)");
        assert_eq!(icmp.into_inner().len(), 10);
    }

    #[test]
    fn echo_reply_checksum_property() {
        let mut rng = XorShift::new(4443);
        let mut bytes = [0u8; 64];
        for _ in 0..2000 {
            let len = MIN_LEN + rng.below(bytes.len() - MIN_LEN + 1);
            rng.fill(&mut bytes[..len]);
            bytes[0] = 128;
            let src = Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
            let dst = addr("2001:2::1");
            let mut icmp = Icmpv6Packet::new_checked(&mut bytes[..len]).unwrap();
            icmp.fill_checksum(src, dst);
            icmp.make_echo_reply().unwrap();
            let incremental = icmp.checksum();
            icmp.fill_checksum(dst, src);
            assert_eq!(incremental, icmp.checksum());
        }
    }

    #[test]
    fn first_of_duplicate_options_wins() {
        let mut msg = hex("8700 0000 0000 0000 2001 0002 0000 0000 0000 0000 0000 0001");
        msg.extend(hex("0101 0200 0000 0010 0101 0200 0000 0099"));
        let icmp = Icmpv6Packet::new_checked(&msg[..]).unwrap();
        assert_eq!(icmp.source_link_addr(), Ok(Some(HOST_MAC)));
        // Other option kinds are skipped.
        assert_eq!(icmp.target_link_addr(), Ok(None));
        // A link-layer option of the wrong size for Ethernet is refused.
        msg[25] = 2;
        let icmp = Icmpv6Packet::new_checked(&msg[..]).unwrap();
        assert_eq!(icmp.source_link_addr(), Err(WireError::BadOption));
    }

    #[test]
    fn multicast_mappings() {
        assert_eq!(
            solicited_node_multicast(addr("2001:2::abcd:1234")),
            addr("ff02::1:ffcd:1234")
        );
        assert_eq!(
            multicast_mac(addr("ff02::1:ffcd:1234")),
            MacAddr([0x33, 0x33, 0xff, 0xcd, 0x12, 0x34])
        );
    }

    #[test]
    fn short_buffers() {
        for len in 0..MIN_LEN {
            assert_eq!(
                Icmpv6Packet::new_checked(&[0u8; 8][..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let mut small = [0u8; ND_FRAME_LEN - 1];
        assert_eq!(
            emit_neighbor_solicit(&mut small, HOST_MAC, addr("2001:2::10"), addr("2001:2::1")),
            Err(WireError::BufferTooSmall)
        );
        // An NS with no room for the target has no target.
        let icmp = Icmpv6Packet::new_checked(&[135u8, 0, 0, 0, 0, 0, 0, 0][..]).unwrap();
        assert_eq!(icmp.target_addr(), None);
        assert_eq!(icmp.source_link_addr(), Ok(None));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(4861);
        let template = host_solicit();
        let mut buf = [0u8; ND_FRAME_LEN + 16];
        for _ in 0..20000 {
            let len = rng.below(buf.len() - 14 + 1);
            // Start from a valid solicitation and corrupt a few bytes.
            let ip = &mut buf[..len];
            let n = len.min(template.len() - 14);
            ip[..n].copy_from_slice(&template[14..14 + n]);
            for _ in 0..rng.below(4) {
                if len > 0 {
                    let at = rng.below(len);
                    ip[at] = rng.next() as u8;
                }
            }
            if let Ok(packet) = Ipv6Packet::new_checked(&ip[..]) {
                let _ = NeighborSolicit::parse(&packet);
                let _ = NeighborAdvert::parse(&packet);
            }
            if let Ok(icmp) = Icmpv6Packet::new_checked(&ip[..]) {
                let _ = (
                    icmp.target_addr(),
                    icmp.source_link_addr(),
                    icmp.target_link_addr(),
                    icmp.mtu(),
                );
            }
        }
    }

    #[test]
    fn packet_too_big_quotes_the_offending_packet() {
        use crate::packet::craft::{self, L2};
        let l2 = L2 {
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            dst: MacAddr([2, 0, 0, 0, 0, 2]),
        };
        let big = craft::udp(
            l2,
            "[2001:2::10]:5000".parse().unwrap(),
            "[2001:2::100]:53".parse().unwrap(),
            &[1u8; 1400],
        );
        let mut buf = vec![0u8; 2000];
        let me = addr("2001:2::1");
        let n = emit_packet_too_big(&mut buf, me, &big[14..], 1440).unwrap();
        assert_eq!(n, MAX_ERROR_LEN);
        let ip = Ipv6Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (me, addr("2001:2::10")));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv6Type::PACKET_TOO_BIG);
        assert_eq!(icmp.mtu(), 1440);
        assert!(icmp.verify_checksum(me, addr("2001:2::10")));
        assert_eq!(&icmp.data()[..40], &big[14..54]);
    }
}
