//! ICMP for IPv4 (RFC 792): echo, the errors a forwarder sends and receives, and an
//! emitter for "fragmentation needed" (RFC 1191) and "time exceeded".

use std::fmt;
use std::net::Ipv4Addr;

use super::checksum::{self, Delta, Sum};
use super::ip::IpProtocol;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::{be, WireError};

/// Length of the ICMP header: type, code, checksum and the 4-byte rest of header.
pub const HEADER_LEN: usize = 8;
/// Longest ICMP error ferrovs emits, IP header included: RFC 1812 section 4.3.2.3
/// lets an error quote as much of the offending datagram as fits in 576 bytes.
pub const MAX_ERROR_LEN: usize = 576;
/// TTL of the ICMP errors ferrovs originates.
pub const ERROR_TTL: u8 = 64;
/// TOS of the ICMP errors ferrovs originates: precedence "internetwork control",
/// as routers (and Linux) send them.
pub const ERROR_TOS: u8 = 0xc0;

mod field {
    use std::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const UNUSED: Range<usize> = 4..6;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const TYPE_CODE: Range<usize> = 0..2;
    pub const DATA: usize = 8;
}

/// ICMPv4 message type.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpType(pub u8);

impl IcmpType {
    /// Echo reply.
    pub const ECHO_REPLY: IcmpType = IcmpType(0);
    /// Destination unreachable (code 4: fragmentation needed).
    pub const DEST_UNREACHABLE: IcmpType = IcmpType(3);
    /// Source quench (deprecated, still an error message).
    pub const SOURCE_QUENCH: IcmpType = IcmpType(4);
    /// Redirect.
    pub const REDIRECT: IcmpType = IcmpType(5);
    /// Echo request.
    pub const ECHO_REQUEST: IcmpType = IcmpType(8);
    /// Time exceeded.
    pub const TIME_EXCEEDED: IcmpType = IcmpType(11);
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: IcmpType = IcmpType(12);

    /// True for the error messages, which quote the offending datagram.
    pub const fn is_error(self) -> bool {
        matches!(self.0, 3 | 4 | 5 | 11 | 12)
    }
}

impl fmt::Debug for IcmpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0 => "echo_reply",
            3 => "dest_unreachable",
            4 => "source_quench",
            5 => "redirect",
            8 => "echo_request",
            11 => "time_exceeded",
            12 => "parameter_problem",
            other => return write!(f, "IcmpType({other})"),
        };
        write!(f, "IcmpType({name})")
    }
}

/// ICMPv4 codes of the types ferrovs handles.
pub mod code {
    /// Destination unreachable: network unreachable.
    pub const NET_UNREACHABLE: u8 = 0;
    /// Destination unreachable: host unreachable.
    pub const HOST_UNREACHABLE: u8 = 1;
    /// Destination unreachable: protocol unreachable.
    pub const PROTOCOL_UNREACHABLE: u8 = 2;
    /// Destination unreachable: port unreachable.
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Destination unreachable: fragmentation needed and DF set (RFC 1191).
    pub const FRAGMENTATION_NEEDED: u8 = 4;
    /// Time exceeded: TTL exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
    /// Time exceeded: fragment reassembly time exceeded.
    pub const REASSEMBLY_TIME_EXCEEDED: u8 = 1;
}

/// A checked view of an ICMPv4 message (the IPv4 payload). The checksum covers the
/// whole buffer, so it must be exactly the message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Icmpv4Packet { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Message type.
    pub fn msg_type(&self) -> IcmpType {
        IcmpType(self.bytes()[field::TYPE])
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.bytes()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be::read_u16(self.bytes(), field::CHECKSUM)
    }

    /// True when the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        Sum::of(self.bytes()).verifies()
    }

    /// Echo identifier (echo request and reply).
    pub fn echo_ident(&self) -> u16 {
        be::read_u16(self.bytes(), field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request and reply).
    pub fn echo_seq_no(&self) -> u16 {
        be::read_u16(self.bytes(), field::ECHO_SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191); 0 from routers
    /// that predate it.
    pub fn next_hop_mtu(&self) -> u16 {
        be::read_u16(self.bytes(), field::NEXT_HOP_MTU)
    }

    /// The data after the header: the echo payload, or the quoted datagram of an error.
    pub fn data(&self) -> &[u8] {
        &self.bytes()[field::DATA..]
    }

    /// The head of the datagram an error message quotes, as an IPv4 view whose total
    /// length may exceed what is quoted. `None` for non-error types and for quotes
    /// that do not hold a valid IPv4 header.
    pub fn quoted_packet(&self) -> Option<Ipv4Packet<&[u8]>> {
        if !self.msg_type().is_error() {
            return None;
        }
        Ipv4Packet::new_checked_quoted(self.data()).ok()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the type without touching the checksum.
    pub fn set_msg_type(&mut self, msg_type: IcmpType) {
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

    /// Sets the next-hop MTU without touching the checksum.
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        be::write_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, mtu);
    }

    /// Computes and stores the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let checksum = checksum::checksum(self.bytes());
        self.set_checksum(checksum);
    }

    /// Applies recorded changes to the checksum (for rewriting a quoted datagram).
    pub fn apply_checksum_delta(&mut self, delta: Delta) {
        let checksum = delta.apply(self.checksum());
        self.set_checksum(checksum);
    }

    /// Turns an echo request into its echo reply in place, fixing the checksum. The
    /// IPv4 addresses are swapped by the caller ([`Ipv4Packet::swap_addrs`]).
    pub fn make_echo_reply(&mut self) -> Result<(), WireError> {
        if self.msg_type() != IcmpType::ECHO_REQUEST {
            return Err(WireError::WrongType);
        }
        let old = be::read_u16(self.bytes(), field::TYPE_CODE);
        self.set_msg_type(IcmpType::ECHO_REPLY);
        let new = be::read_u16(self.bytes(), field::TYPE_CODE);
        self.apply_checksum_delta(Delta::NONE.u16(old, new));
        Ok(())
    }

    /// The data after the header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }
}

/// The ICMP errors ferrovs originates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// Destination unreachable, code 4: the packet has DF set and does not fit the
    /// next hop (RFC 1191).
    FragmentationNeeded {
        /// MTU of the next hop.
        next_hop_mtu: u16,
    },
    /// Time exceeded, code 0: TTL reached zero in transit.
    TimeExceeded,
}

impl IcmpError {
    fn type_and_code(self) -> (IcmpType, u8) {
        match self {
            IcmpError::FragmentationNeeded { .. } => {
                (IcmpType::DEST_UNREACHABLE, code::FRAGMENTATION_NEEDED)
            }
            IcmpError::TimeExceeded => (IcmpType::TIME_EXCEEDED, code::TTL_EXCEEDED),
        }
    }
}

/// A source or destination that an ICMP error may answer: not 0.0.0.0/8, loopback,
/// multicast, limited broadcast or class E (RFC 1812 section 4.3.2.7 and 5.3.7).
fn is_unicast(addr: Ipv4Addr) -> bool {
    let first = addr.octets()[0];
    first != 0 && first != 127 && first < 224
}

/// True when RFC 1812 section 4.3.2.7 allows an ICMP error about `offending`: it is
/// not itself an ICMP error (or too short to tell), not a non-first fragment, and
/// goes from a unicast source to a unicast destination. Directed broadcasts cannot
/// be recognised without the interface prefix and are the caller's check.
pub fn error_allowed<T: AsRef<[u8]>>(offending: &Ipv4Packet<T>) -> bool {
    if offending.frag_offset() != 0 {
        return false;
    }
    if !is_unicast(offending.src_addr()) || !is_unicast(offending.dst_addr()) {
        return false;
    }
    if offending.protocol() == IpProtocol::ICMP {
        return match offending.payload().first() {
            Some(&msg_type) => !IcmpType(msg_type).is_error(),
            None => false,
        };
    }
    true
}

/// Writes an ICMP error about `offending` (the IPv4 packet as received, from its IP
/// header on; Ethernet padding after it is ignored) into the start of `buf`: an IPv4
/// header from `src_addr` back to the offending source, the ICMP header, and the
/// quoted datagram. The quote is the offending IP header and as much of its payload
/// as fits in [`MAX_ERROR_LEN`] and in `buf`, and never less than the header plus 8
/// bytes (or the whole datagram, when shorter), as RFC 792 requires. Returns the
/// length written.
///
/// Errors: the offending packet's own [`Ipv4Packet::new_checked_quoted`] errors,
/// [`WireError::IcmpErrorSuppressed`] when [`error_allowed`] says no, and
/// [`WireError::BufferTooSmall`] when `buf` cannot hold the minimal quote.
pub fn emit_error(
    buf: &mut [u8],
    error: IcmpError,
    src_addr: Ipv4Addr,
    offending: &[u8],
) -> Result<usize, WireError> {
    let original = Ipv4Packet::new_checked_quoted(offending)?;
    if !error_allowed(&original) {
        return Err(WireError::IcmpErrorSuppressed);
    }
    let available = usize::from(original.total_len()).min(offending.len());
    let minimum = (original.header_len() + 8).min(available);
    let room = buf.len().min(MAX_ERROR_LEN);
    let overhead = ipv4::HEADER_LEN + HEADER_LEN;
    if room < overhead + minimum {
        return Err(WireError::BufferTooSmall);
    }
    let quote_len = available.min(room - overhead);
    let total = overhead + quote_len;

    let (ip_header, icmp) = buf[..total].split_at_mut(ipv4::HEADER_LEN);
    Ipv4Repr {
        src_addr,
        dst_addr: original.src_addr(),
        protocol: IpProtocol::ICMP,
        payload_len: HEADER_LEN + quote_len,
        ttl: ERROR_TTL,
        tos: ERROR_TOS,
        ident: 0,
        dont_fragment: true,
    }
    .emit(ip_header)?;

    let (msg_type, code) = error.type_and_code();
    icmp[field::DATA..].copy_from_slice(&offending[..quote_len]);
    let mut message = Icmpv4Packet { buffer: icmp };
    message.set_msg_type(msg_type);
    message.set_code(code);
    be::write_u16(message.buffer, field::UNUSED, 0);
    let mtu = match error {
        IcmpError::FragmentationNeeded { next_hop_mtu } => next_hop_mtu,
        IcmpError::TimeExceeded => 0,
    };
    message.set_next_hop_mtu(mtu);
    message.fill_checksum();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testutil::{hex, XorShift};

    // `ping -c1 198.18.0.1` from 198.18.0.2: id 0x1d2a, seq 1, 56 bytes of data.
    fn echo_request() -> Vec<u8> {
        let mut ip = hex("4500 0054 3a1c 4000 4001 0000 c612 0002 c612 0001");
        let mut icmp = hex("0800 0000 1d2a 0001");
        icmp.extend((0..56u8).map(|i| i.wrapping_mul(7)));
        let mut message = Icmpv4Packet::new_checked(&mut icmp[..]).unwrap();
        message.fill_checksum();
        Ipv4Packet::new_checked_quoted(&mut ip[..])
            .unwrap()
            .fill_checksum();
        ip.extend_from_slice(&icmp);
        ip
    }

    /// A 1500-byte TCP/IPv4 packet with DF from 203.0.113.7:40000 to 198.18.0.100:80.
    fn big_tcp_packet() -> Vec<u8> {
        let mut p = hex("4500 05dc 0001 4000 4006 0000 cb00 7107 c612 0064");
        p.extend_from_slice(&hex("9c40 0050 0000 0001 0000 0000 5010 ffff 0000 0000"));
        p.resize(1500, 0xab);
        Ipv4Packet::new_checked(&mut p[..]).unwrap().fill_checksum();
        p
    }

    #[test]
    fn echo_accessors_and_reply() {
        let mut bytes = echo_request();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert!(ip.verify_checksum());
        ip.swap_addrs();
        assert!(ip.verify_checksum());
        let mut icmp = Icmpv4Packet::new_checked(ip.payload_mut()).unwrap();
        assert_eq!(icmp.msg_type(), IcmpType::ECHO_REQUEST);
        assert_eq!(icmp.code(), 0);
        assert_eq!(icmp.echo_ident(), 0x1d2a);
        assert_eq!(icmp.echo_seq_no(), 1);
        assert_eq!(icmp.data().len(), 56);
        assert!(icmp.verify_checksum());
        assert!(icmp.quoted_packet().is_none());
        icmp.make_echo_reply().unwrap();
        assert_eq!(icmp.msg_type(), IcmpType::ECHO_REPLY);
        assert!(icmp.verify_checksum());
        let incremental = icmp.checksum();
        icmp.fill_checksum();
        assert_eq!(incremental, icmp.checksum());
        assert_eq!(icmp.make_echo_reply(), Err(WireError::WrongType));
    }

    #[test]
    fn echo_reply_checksum_property() {
        let mut rng = XorShift::new(792);
        let mut bytes = [0u8; 64];
        for _ in 0..2000 {
            let len = HEADER_LEN + rng.below(bytes.len() - HEADER_LEN + 1);
            rng.fill(&mut bytes[..len]);
            bytes[0] = 8;
            let mut icmp = Icmpv4Packet::new_checked(&mut bytes[..len]).unwrap();
            icmp.fill_checksum();
            icmp.make_echo_reply().unwrap();
            let incremental = icmp.checksum();
            icmp.fill_checksum();
            assert_eq!(incremental, icmp.checksum());
        }
    }

    #[test]
    fn short_messages_are_refused() {
        let bytes = echo_request();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&bytes[20..20 + len]).unwrap_err(),
                WireError::Truncated
            );
        }
    }

    #[test]
    fn setters() {
        let mut bytes = [0u8; 8];
        let mut icmp = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.set_msg_type(IcmpType::DEST_UNREACHABLE);
        icmp.set_code(code::FRAGMENTATION_NEEDED);
        icmp.set_next_hop_mtu(1480);
        icmp.fill_checksum();
        assert_eq!(icmp.next_hop_mtu(), 1480);
        assert!(icmp.verify_checksum());
        icmp.set_echo_ident(1);
        icmp.set_echo_seq_no(2);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (1, 2));
        icmp.data_mut();
        assert!(icmp.msg_type().is_error());
        assert!(!IcmpType::ECHO_REQUEST.is_error());
        assert_eq!(
            format!("{:?}", icmp.msg_type()),
            "IcmpType(dest_unreachable)"
        );
        assert_eq!(format!("{:?}", IcmpType(42)), "IcmpType(42)");
        assert_eq!(icmp.into_inner().len(), 8);
    }

    #[test]
    fn fragmentation_needed_round_trip() {
        let offending = big_tcp_packet();
        let ours = Ipv4Addr::new(198, 18, 0, 1);
        let mut buf = [0u8; 2048];
        let n = emit_error(
            &mut buf,
            IcmpError::FragmentationNeeded { next_hop_mtu: 1480 },
            ours,
            &offending,
        )
        .unwrap();
        assert_eq!(
            n, MAX_ERROR_LEN,
            "a long datagram is quoted up to 576 bytes"
        );

        let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), n);
        assert_eq!(ip.src_addr(), ours);
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(ip.protocol(), IpProtocol::ICMP);
        assert_eq!(ip.ttl(), ERROR_TTL);
        assert_eq!(ip.dscp(), ERROR_TOS >> 2);
        assert!(ip.dont_fragment());

        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), IcmpType::DEST_UNREACHABLE);
        assert_eq!(icmp.code(), code::FRAGMENTATION_NEEDED);
        assert_eq!(icmp.next_hop_mtu(), 1480);
        assert_eq!(icmp.data(), &offending[..n - 28]);

        let quoted = icmp.quoted_packet().unwrap();
        assert_eq!(quoted.total_len(), 1500);
        assert_eq!(quoted.src_addr(), Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(quoted.dst_addr(), Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(quoted.protocol(), IpProtocol::TCP);
        assert_eq!(&quoted.payload()[..4], &[0x9c, 0x40, 0x00, 0x50]);
    }

    #[test]
    fn time_exceeded_quotes_short_datagram_whole() {
        let mut offending = echo_request();
        offending.extend_from_slice(&[0; 6]); // Ethernet padding is not quoted.
        let mut buf = [0u8; 600];
        let n = emit_error(
            &mut buf,
            IcmpError::TimeExceeded,
            Ipv4Addr::new(198, 18, 0, 1),
            &offending,
        )
        .unwrap();
        assert_eq!(n, 28 + 84);
        let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), IcmpType::TIME_EXCEEDED);
        assert_eq!(icmp.code(), code::TTL_EXCEEDED);
        assert_eq!(icmp.next_hop_mtu(), 0);
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.data(), &offending[..84]);
    }

    #[test]
    fn quote_shrinks_to_buffer_but_not_below_header_plus_8() {
        let offending = big_tcp_packet();
        let ours = Ipv4Addr::new(198, 18, 0, 1);
        let mut buf = [0u8; 100];
        let n = emit_error(&mut buf, IcmpError::TimeExceeded, ours, &offending).unwrap();
        assert_eq!(n, 100);
        let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        assert!(Icmpv4Packet::new_checked(ip.payload())
            .unwrap()
            .verify_checksum());
        let mut small = [0u8; 28 + 27];
        assert_eq!(
            emit_error(&mut small, IcmpError::TimeExceeded, ours, &offending),
            Err(WireError::BufferTooSmall)
        );
        let mut just = [0u8; 28 + 28];
        assert_eq!(
            emit_error(&mut just, IcmpError::TimeExceeded, ours, &offending),
            Ok(56)
        );
    }

    #[test]
    fn errors_are_suppressed_where_rfc1812_says() {
        let ours = Ipv4Addr::new(198, 18, 0, 1);
        let mut buf = [0u8; 600];
        let base = big_tcp_packet();
        let with = |f: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
            let mut p = base.clone();
            let mut ip = Ipv4Packet::new_checked(&mut p[..]).unwrap();
            f(&mut ip);
            ip.fill_checksum();
            p
        };
        let cases = [
            with(&|ip| ip.set_frag_offset(1480)),
            with(&|ip| ip.set_src_addr(Ipv4Addr::new(0, 0, 0, 0))),
            with(&|ip| ip.set_src_addr(Ipv4Addr::new(127, 0, 0, 1))),
            with(&|ip| ip.set_src_addr(Ipv4Addr::new(224, 0, 0, 5))),
            with(&|ip| ip.set_dst_addr(Ipv4Addr::new(239, 1, 1, 1))),
            with(&|ip| ip.set_dst_addr(Ipv4Addr::BROADCAST)),
            // An ICMP error about an ICMP error.
            with(&|ip| {
                ip.set_protocol(IpProtocol::ICMP);
                ip.payload_mut()[0] = IcmpType::DEST_UNREACHABLE.0;
            }),
            // An ICMP packet with no payload byte to tell its type.
            with(&|ip| {
                ip.set_protocol(IpProtocol::ICMP);
                ip.set_total_len(20);
            }),
        ];
        for (i, offending) in cases.iter().enumerate() {
            assert_eq!(
                emit_error(&mut buf, IcmpError::TimeExceeded, ours, offending),
                Err(WireError::IcmpErrorSuppressed),
                "case {i}"
            );
        }
        // A first fragment and an ICMP echo request are answered.
        let first_fragment = with(&|ip| ip.set_more_fragments(true));
        assert!(emit_error(&mut buf, IcmpError::TimeExceeded, ours, &first_fragment).is_ok());
        assert!(emit_error(&mut buf, IcmpError::TimeExceeded, ours, &echo_request()).is_ok());
        // Garbage is refused with the IPv4 view's error.
        assert_eq!(
            emit_error(&mut buf, IcmpError::TimeExceeded, ours, &[0x45, 0]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(1191);
        let mut input = [0u8; 100];
        let mut out = [0u8; 200];
        for _ in 0..20000 {
            let len = rng.below(input.len() + 1);
            rng.fill(&mut input[..len]);
            if len > 0 && rng.below(2) == 0 {
                input[0] = 0x45;
            }
            if let Ok(icmp) = Icmpv4Packet::new_checked(&input[..len]) {
                let _ = (
                    icmp.verify_checksum(),
                    icmp.quoted_packet().map(|q| q.payload().len()),
                );
            }
            let out_len = rng.below(out.len() + 1);
            if let Ok(n) = emit_error(
                &mut out[..out_len],
                IcmpError::TimeExceeded,
                Ipv4Addr::new(10, 0, 0, 1),
                &input[..len],
            ) {
                assert!(n <= out_len);
                let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
                assert!(ip.verify_checksum());
                assert!(Icmpv4Packet::new_checked(ip.payload())
                    .unwrap()
                    .verify_checksum());
            }
        }
    }
}
