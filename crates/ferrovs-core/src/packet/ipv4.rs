//! IPv4 (RFC 791).

use std::net::Ipv4Addr;

use super::checksum::{self, Delta, Sum};
use super::ip::{IpPair, IpProtocol};
use super::{be, WireError};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Longest IPv4 header: IHL 15.
pub const MAX_HEADER_LEN: usize = 60;

mod field {
    use std::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// Option types (RFC 791): the full type byte (copied flag, class, number).
mod option {
    /// End of option list: the rest of the option area is padding.
    pub const END: u8 = 0;
    /// No operation: one byte, between options.
    pub const NOP: u8 = 1;
    /// Loose source and record route.
    pub const LSRR: u8 = 0x83;
    /// Strict source and record route.
    pub const SSRR: u8 = 0x89;
}

/// What the options of an IPv4 header amount to for a node that forwards it
/// ([`Ipv4Packet::check_options`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsCheck {
    /// No options, or only options that change nothing about where the packet goes.
    Acceptable,
    /// Loose or strict source routing (LSRR, SSRR): the sender chooses the path, so
    /// the packet is never honoured (RFC 1812 section 5.2.4.1 lets a router refuse
    /// it; Linux does with `accept_source_route = 0`).
    SourceRoute,
    /// An option whose length is below 2 or runs past the header.
    Malformed,
}

/// A checked view of an IPv4 packet.
///
/// The buffer may run past the packet (Ethernet padding); [`payload`](Self::payload)
/// ends at the total length.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` after checking: 20 bytes present, version 4, IHL >= 5, the whole
    /// header present, and header length <= total length <= buffer length. The header
    /// checksum is not checked here: see [`verify_checksum`](Self::verify_checksum).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_checked_quoted(buffer)?;
        if usize::from(packet.total_len()) > packet.buffer.as_ref().len() {
            return Err(WireError::BadLength);
        }
        Ok(packet)
    }

    /// Like [`new_checked`](Self::new_checked), but lets the total length run past the
    /// buffer: for the head of a datagram quoted in an ICMP error, which carries the
    /// original header and only the first bytes of its payload.
    pub fn new_checked_quoted(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Ipv4Packet { buffer };
        if packet.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = packet.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::BadHeaderLength);
        }
        if header_len > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        if usize::from(packet.total_len()) < header_len {
            return Err(WireError::BadLength);
        }
        Ok(packet)
    }

    /// A view over a buffer the caller has already sized for a header (emitters).
    pub(crate) fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn read_addr(&self, range: std::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.bytes()[range];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The version field (4 in a checked view).
    pub fn version(&self) -> u8 {
        self.bytes()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        self.bytes()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits.
    pub fn ecn(&self) -> u8 {
        self.bytes()[field::DSCP_ECN] & 0x03
    }

    /// Total length: header and payload.
    pub fn total_len(&self) -> u16 {
        be::read_u16(self.bytes(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be::read_u16(self.bytes(), field::IDENT)
    }

    /// The don't-fragment flag.
    pub fn dont_fragment(&self) -> bool {
        be::read_u16(self.bytes(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// The more-fragments flag.
    pub fn more_fragments(&self) -> bool {
        be::read_u16(self.bytes(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be::read_u16(self.bytes(), field::FLAGS_FRAG) & FRAG_OFFSET_MASK) << 3
    }

    /// True for any fragment: more-fragments set or a nonzero offset.
    pub fn is_fragment(&self) -> bool {
        be::read_u16(self.bytes(), field::FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.bytes()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.bytes()[field::PROTOCOL])
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be::read_u16(self.bytes(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        self.read_addr(field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.read_addr(field::DST)
    }

    /// Source and destination.
    pub fn addrs(&self) -> IpPair {
        IpPair::V4 {
            src: self.src_addr(),
            dst: self.dst_addr(),
        }
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        let end = self.header_len().min(self.bytes().len());
        &self.bytes()[..end]
    }

    /// The options between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        let header = self.header();
        &header[HEADER_LEN.min(header.len())..]
    }

    /// Walks the options (type-length-value, with the one-byte END and NOP) and
    /// says whether a router may forward the packet: source routes and malformed
    /// options are refused. Other options are accepted unread, as Linux does on
    /// received packets.
    pub fn check_options(&self) -> OptionsCheck {
        let opts = self.options();
        let mut at = 0;
        while let Some(&kind) = opts.get(at) {
            match kind {
                option::END => break,
                option::NOP => at += 1,
                _ => {
                    let Some(&len) = opts.get(at + 1) else {
                        return OptionsCheck::Malformed;
                    };
                    let len = usize::from(len);
                    if len < 2 || at + len > opts.len() {
                        return OptionsCheck::Malformed;
                    }
                    if kind == option::LSRR || kind == option::SSRR {
                        return OptionsCheck::SourceRoute;
                    }
                    at += len;
                }
            }
        }
        OptionsCheck::Acceptable
    }

    /// True when the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        Sum::of(self.header()).verifies()
    }

    fn payload_range(&self) -> std::ops::Range<usize> {
        let end = usize::from(self.total_len()).min(self.bytes().len());
        self.header_len().min(end)..end
    }

    /// The payload: from the end of the header to the total length (or to the end of
    /// the buffer for a quoted datagram).
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.payload_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.bytes_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60; lower bits and
    /// higher values are cut to the 4-bit IHL field).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.bytes_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP (6 bits).
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.bytes_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    /// Sets the ECN bits (2 bits).
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.bytes_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        be::write_u16(self.bytes_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u16) {
        be::write_u16(self.bytes_mut(), field::IDENT, ident);
    }

    fn set_flag(&mut self, flag: u16, on: bool) {
        let old = be::read_u16(self.bytes(), field::FLAGS_FRAG);
        be::write_u16(
            self.bytes_mut(),
            field::FLAGS_FRAG,
            if on { old | flag } else { old & !flag },
        );
    }

    /// Sets the don't-fragment flag.
    pub fn set_dont_fragment(&mut self, on: bool) {
        self.set_flag(FLAG_DF, on);
    }

    /// Sets the more-fragments flag.
    pub fn set_more_fragments(&mut self, on: bool) {
        self.set_flag(FLAG_MF, on);
    }

    /// Sets the fragment offset in bytes (a multiple of 8).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let old = be::read_u16(self.bytes(), field::FLAGS_FRAG);
        be::write_u16(
            self.bytes_mut(),
            field::FLAGS_FRAG,
            (old & !FRAG_OFFSET_MASK) | (offset >> 3),
        );
    }

    /// Sets the TTL without touching the checksum.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.bytes_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol without touching the checksum.
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.bytes_mut()[field::PROTOCOL] = protocol.0;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        be::write_u16(self.bytes_mut(), field::CHECKSUM, checksum);
    }

    /// Sets the source address without touching the checksum.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.bytes_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address without touching the checksum.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.bytes_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let checksum = checksum::checksum(self.header());
        self.set_checksum(checksum);
    }

    /// Applies recorded header changes to the header checksum.
    pub fn apply_checksum_delta(&mut self, delta: Delta) {
        let checksum = delta.apply(self.checksum());
        self.set_checksum(checksum);
    }

    /// Sets the TTL and fixes the checksum. TTL shares its 16-bit word with the
    /// protocol.
    pub fn rewrite_ttl(&mut self, ttl: u8) {
        let protocol = u16::from(self.protocol().0);
        let old = u16::from(self.ttl()) << 8 | protocol;
        let new = u16::from(ttl) << 8 | protocol;
        self.set_ttl(ttl);
        self.apply_checksum_delta(Delta::NONE.u16(old, new));
    }

    /// Decrements the TTL of a packet being forwarded and fixes the checksum; returns
    /// the new TTL. A TTL of 0 or 1 must not be forwarded (RFC 1812 section 5.3.1):
    /// the packet is left untouched and `None` returned, for a Time Exceeded reply.
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        self.rewrite_ttl(ttl - 1);
        Some(ttl - 1)
    }

    /// Sets the source address and fixes the header checksum. Returns the change for
    /// the TCP/UDP checksum, whose pseudo-header covers the address.
    pub fn rewrite_src_addr(&mut self, addr: Ipv4Addr) -> Delta {
        let delta = Delta::NONE.ipv4(self.src_addr(), addr);
        self.set_src_addr(addr);
        self.apply_checksum_delta(delta);
        delta
    }

    /// Sets the destination address and fixes the header checksum. Returns the change
    /// for the TCP/UDP checksum, whose pseudo-header covers the address.
    pub fn rewrite_dst_addr(&mut self, addr: Ipv4Addr) -> Delta {
        let delta = Delta::NONE.ipv4(self.dst_addr(), addr);
        self.set_dst_addr(addr);
        self.apply_checksum_delta(delta);
        delta
    }

    /// Swaps source and destination (to answer a packet). Neither the header nor a
    /// pseudo-header checksum changes: the sum is the same in either order.
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

/// A fresh IPv4 header without options, for packets ferrovs originates (ICMP errors)
/// or wraps (IPIP encapsulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Length of the payload that follows the header.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP and ECN, as the former TOS byte.
    pub tos: u8,
    /// Identification. RFC 6864 lets an atomic datagram (DF set, not a fragment)
    /// carry any value.
    pub ident: u16,
    /// The don't-fragment flag.
    pub dont_fragment: bool,
}

impl Ipv4Repr {
    /// Writes the 20-byte header, checksum included, into the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let total_len =
            u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| WireError::BadLength)?;
        let header = buf.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
        let mut packet = Ipv4Packet::new_unchecked(header);
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.bytes_mut()[field::DSCP_ECN] = self.tos;
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        be::write_u16(
            packet.bytes_mut(),
            field::FLAGS_FRAG,
            if self.dont_fragment { FLAG_DF } else { 0 },
        );
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

/// An IPv4 header without options whose addresses, protocol and TTL are fixed
/// (and the ident 0), with their part of the checksum summed once: for a stream
/// of headers that differ only in length, DSCP/ECN and DF, such as a tunnel's
/// outer headers towards one endpoint. [`Ipv4HeaderTemplate::write`] gives what
/// [`Ipv4Repr::emit`] would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4HeaderTemplate {
    /// The fixed fields; length, DSCP/ECN, flags and checksum zero.
    header: [u8; HEADER_LEN],
    /// The sum of `header`.
    fixed: Sum,
}

impl Ipv4HeaderTemplate {
    /// Headers from `src` to `dst` carrying `protocol`, sent with `ttl`.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, ttl: u8) -> Self {
        let mut header = [0u8; HEADER_LEN];
        header[field::VER_IHL] = 0x45;
        header[field::TTL] = ttl;
        header[field::PROTOCOL] = protocol.0;
        header[field::SRC].copy_from_slice(&src.octets());
        header[field::DST].copy_from_slice(&dst.octets());
        Self {
            header,
            fixed: Sum::of(&header),
        }
    }

    /// Writes the header of a packet `total_len` bytes long (header included)
    /// with DSCP/ECN byte `tos` and, if `dont_fragment`, DF: only the three
    /// variable words are added to the fixed fields' sum.
    #[inline]
    pub fn write(&self, out: &mut [u8; HEADER_LEN], total_len: u16, tos: u8, dont_fragment: bool) {
        let flags = if dont_fragment { FLAG_DF } else { 0 };
        // DSCP/ECN is the low byte of the version/IHL word.
        let sum = self
            .fixed
            .add_u16(total_len)
            .add_u16(u16::from(tos))
            .add_u16(flags);
        *out = self.header;
        out[field::DSCP_ECN] = tos;
        be::write_u16(out, field::LENGTH, total_len);
        be::write_u16(out, field::FLAGS_FRAG, flags);
        be::write_u16(out, field::CHECKSUM, sum.checksum());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testutil::{hex, XorShift};

    // A TCP SYN's IPv4 header (172.16.10.99 -> 172.16.10.12, checksum 0xb1e6) and
    // a 40-byte payload.
    fn syn_packet() -> Vec<u8> {
        let mut p = hex("4500 003c 1c46 4000 4006 b1e6 ac10 0a63 ac10 0a0c");
        p.extend_from_slice(&[0u8; 40]);
        p
    }

    #[test]
    fn a_template_writes_what_emit_writes() {
        let mut rng = XorShift::new(0x1f2e_3d4c);
        let mut word = move || rng.next() as u32;
        for _ in 0..2000 {
            let src = Ipv4Addr::from(word());
            let dst = Ipv4Addr::from(word());
            let ttl = word() as u8;
            let protocol = IpProtocol(word() as u8);
            let template = Ipv4HeaderTemplate::new(src, dst, protocol, ttl);
            for _ in 0..8 {
                let payload_len = (word() % 65516) as usize;
                let tos = word() as u8;
                let dont_fragment = word() & 1 == 1;
                let mut want = [0u8; HEADER_LEN];
                Ipv4Repr {
                    src_addr: src,
                    dst_addr: dst,
                    protocol,
                    payload_len,
                    ttl,
                    tos,
                    ident: 0,
                    dont_fragment,
                }
                .emit(&mut want)
                .unwrap();
                let mut got = [0xa5u8; HEADER_LEN];
                let total_len = (HEADER_LEN + payload_len) as u16;
                template.write(&mut got, total_len, tos, dont_fragment);
                assert_eq!(
                    got, want,
                    "{src} -> {dst} {payload_len} {tos:#x} {dont_fragment}"
                );
            }
        }
    }

    #[test]
    fn parse_known_header() {
        let bytes = syn_packet();
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.dscp(), 0);
        assert_eq!(ip.ecn(), 0);
        assert_eq!(ip.total_len(), 60);
        assert_eq!(ip.ident(), 0x1c46);
        assert!(ip.dont_fragment());
        assert!(!ip.more_fragments());
        assert_eq!(ip.frag_offset(), 0);
        assert!(!ip.is_fragment());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), IpProtocol::TCP);
        assert_eq!(ip.checksum(), 0xb1e6);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(172, 16, 10, 99));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(172, 16, 10, 12));
        assert!(ip.verify_checksum());
        assert_eq!(ip.options(), &[] as &[u8]);
        assert_eq!(ip.payload().len(), 40);
        assert_eq!(
            ip.addrs(),
            IpPair::V4 {
                src: Ipv4Addr::new(172, 16, 10, 99),
                dst: Ipv4Addr::new(172, 16, 10, 12)
            }
        );
    }

    #[test]
    fn padding_is_not_payload() {
        let mut bytes = syn_packet();
        bytes.extend_from_slice(&[0xaa; 6]);
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.payload().len(), 40);
        assert!(ip.payload().iter().all(|&b| b == 0));
    }

    #[test]
    fn options_and_payload_with_ihl_6() {
        let mut bytes = hex("4600 0020 0000 0000 4011 0000 c633 6401 c633 6402 9404 0000");
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.fill_checksum();
        assert!(ip.verify_checksum());
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(ip.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        // Router alert, then END and padding: nothing to refuse.
        assert_eq!(ip.check_options(), OptionsCheck::Acceptable);
    }

    /// A header with `options` (a multiple of 4 bytes) and an empty payload.
    fn with_options(options: &[u8]) -> Vec<u8> {
        let header_len = HEADER_LEN + options.len();
        let mut bytes = hex("4500 0000 0000 0000 4011 0000 c633 6401 c633 6402");
        bytes[0] = 0x40 | (header_len / 4) as u8;
        bytes[3] = header_len as u8;
        bytes.extend_from_slice(options);
        bytes
    }

    fn options_check(options: &[u8]) -> OptionsCheck {
        let bytes = with_options(options);
        Ipv4Packet::new_checked(&bytes[..]).unwrap().check_options()
    }

    #[test]
    fn source_routes_and_malformed_options_are_refused() {
        use OptionsCheck::*;
        assert_eq!(options_check(&[]), Acceptable);
        assert_eq!(options_check(&[1, 1, 1, 0]), Acceptable, "NOPs, END");
        assert_eq!(options_check(&[1, 1, 1, 1]), Acceptable, "NOPs to the end");
        // Record route with room for one address, then END.
        assert_eq!(options_check(&[7, 7, 4, 0, 0, 0, 0, 0]), Acceptable);
        // Whatever follows END is padding, even bytes that would not parse.
        assert_eq!(options_check(&[0, 0x83, 0, 0]), Acceptable);
        // LSRR and SSRR with one hop each.
        assert_eq!(options_check(&[0x83, 7, 4, 10, 0, 0, 1, 0]), SourceRoute);
        assert_eq!(options_check(&[1, 0x89, 7, 4, 10, 0, 0, 1]), SourceRoute);
        // Length 0 or 1, a length past the header, a type without its length.
        assert_eq!(options_check(&[0x94, 0, 0, 0]), Malformed);
        assert_eq!(options_check(&[0x94, 1, 0, 0]), Malformed);
        assert_eq!(options_check(&[0x94, 5, 0, 0]), Malformed);
        assert_eq!(options_check(&[1, 1, 1, 0x94]), Malformed);
        // A source route after a malformed option is reported as malformed: the
        // walk cannot find where the next option starts.
        assert_eq!(options_check(&[7, 0, 0x83, 3, 4, 0, 0, 0]), Malformed);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = syn_packet();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Ipv4Packet::new_checked(&good[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            WireError::BadVersion
        );
        for ihl in 0..5u8 {
            let mut bad = good.clone();
            bad[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
                WireError::BadHeaderLength
            );
        }
        // IHL 15 asks for 60 header bytes; give it 40.
        let mut long_header = good[..40].to_vec();
        long_header[0] = 0x4f;
        long_header[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&long_header[..]).unwrap_err(),
            WireError::Truncated
        );
        // Total length below the header length, and beyond the buffer.
        let mut short_total = good.clone();
        short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&short_total[..]).unwrap_err(),
            WireError::BadLength
        );
        assert_eq!(
            Ipv4Packet::new_checked(&good[..59]).unwrap_err(),
            WireError::BadLength
        );
        // A quoted datagram may stop early.
        let quoted = Ipv4Packet::new_checked_quoted(&good[..28]).unwrap();
        assert_eq!(quoted.payload().len(), 8);
        assert_eq!(
            Ipv4Packet::new_checked_quoted(&short_total[..]).unwrap_err(),
            WireError::BadLength
        );
    }

    #[test]
    fn bad_checksum_is_detected() {
        let mut bytes = syn_packet();
        bytes[11] ^= 0x01;
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(!ip.verify_checksum());
    }

    #[test]
    fn fragments() {
        let mut bytes = syn_packet();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_dont_fragment(false);
        ip.set_more_fragments(true);
        assert!(ip.is_fragment() && ip.more_fragments() && !ip.dont_fragment());
        ip.set_more_fragments(false);
        ip.set_frag_offset(1480);
        assert!(ip.is_fragment());
        assert_eq!(ip.frag_offset(), 1480);
        ip.set_frag_offset(0);
        assert!(!ip.is_fragment());
        ip.set_dont_fragment(true);
        assert!(!ip.is_fragment(), "DF alone is not a fragment");
    }

    #[test]
    fn setters_round_trip() {
        let mut bytes = syn_packet();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_dscp(46);
        ip.set_ecn(2);
        ip.set_ident(0xbeef);
        ip.set_total_len(50);
        ip.set_protocol(IpProtocol::UDP);
        ip.set_ttl(3);
        ip.set_src_addr(Ipv4Addr::new(198, 18, 0, 1));
        ip.set_dst_addr(Ipv4Addr::new(198, 19, 0, 1));
        ip.fill_checksum();
        assert_eq!(
            (ip.dscp(), ip.ecn(), ip.ident(), ip.total_len()),
            (46, 2, 0xbeef, 50)
        );
        assert_eq!((ip.protocol(), ip.ttl()), (IpProtocol::UDP, 3));
        assert!(ip.verify_checksum());
        assert_eq!(ip.payload().len(), 30);
        ip.payload_mut()[0] = 9;
        ip.set_header_len(24);
        assert_eq!(ip.header_len(), 24);
        ip.set_version(6);
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.into_inner()[20], 9);
    }

    #[test]
    fn ttl_decrement() {
        let mut bytes = syn_packet();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(ip.decrement_ttl(), Some(63));
        assert!(ip.verify_checksum());
        ip.rewrite_ttl(2);
        assert!(ip.verify_checksum());
        assert_eq!(ip.decrement_ttl(), Some(1));
        assert_eq!(ip.decrement_ttl(), None);
        assert_eq!(ip.ttl(), 1, "an expired packet is left alone");
        ip.rewrite_ttl(0);
        assert_eq!(ip.decrement_ttl(), None);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn swap_keeps_checksum() {
        let mut bytes = syn_packet();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.swap_addrs();
        assert_eq!(ip.src_addr(), Ipv4Addr::new(172, 16, 10, 12));
        assert!(ip.verify_checksum());
    }

    #[test]
    fn incremental_rewrites_match_recomputation() {
        let mut rng = XorShift::new(791);
        let mut bytes = syn_packet();
        for _ in 0..3000 {
            // Random header fields, valid version/IHL/length.
            rng.fill(&mut bytes[1..20]);
            bytes[2..4].copy_from_slice(&60u16.to_be_bytes());
            let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            ip.fill_checksum();
            let src = Ipv4Addr::from(rng.next() as u32);
            let dst = Ipv4Addr::from(rng.next() as u32);
            match rng.below(4) {
                0 => {
                    ip.rewrite_src_addr(src);
                }
                1 => {
                    ip.rewrite_dst_addr(dst);
                }
                2 => {
                    ip.rewrite_ttl(rng.next() as u8);
                }
                _ => {
                    ip.rewrite_src_addr(src);
                    ip.rewrite_dst_addr(dst);
                    let _ = ip.decrement_ttl();
                }
            }
            let incremental = ip.checksum();
            ip.fill_checksum();
            assert_eq!(incremental, ip.checksum());
        }
    }

    #[test]
    fn rewrite_returns_pseudo_header_delta() {
        let mut bytes = syn_packet();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        let old = ip.dst_addr();
        let new = Ipv4Addr::new(198, 19, 0, 10);
        let delta = ip.rewrite_dst_addr(new);
        assert_eq!(delta, Delta::NONE.ipv4(old, new));
        assert_eq!(ip.dst_addr(), new);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn emit_fresh_header() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(172, 16, 10, 99),
            dst_addr: Ipv4Addr::new(172, 16, 10, 12),
            protocol: IpProtocol::TCP,
            payload_len: 40,
            ttl: 64,
            tos: 0,
            ident: 0x1c46,
            dont_fragment: true,
        };
        let mut buf = [0xffu8; 60];
        repr.emit(&mut buf).unwrap();
        assert_eq!(&buf[..20], &syn_packet()[..20]);
        assert_eq!(repr.emit(&mut buf[..19]), Err(WireError::BufferTooSmall));
        let huge = Ipv4Repr {
            payload_len: 65516,
            ..repr
        };
        assert_eq!(huge.emit(&mut buf), Err(WireError::BadLength));
        let max = Ipv4Repr {
            payload_len: 65515,
            dont_fragment: false,
            ..repr
        };
        max.emit(&mut buf).unwrap();
        let ip = Ipv4Packet::new_checked_quoted(&buf[..]).unwrap();
        assert_eq!(ip.total_len(), 65535);
        assert!(!ip.dont_fragment());
        assert!(ip.verify_checksum());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(4);
        let mut buf = [0u8; 80];
        for _ in 0..30000 {
            let len = rng.below(buf.len() + 1);
            rng.fill(&mut buf[..len]);
            if len > 0 && rng.below(2) == 0 {
                buf[0] = 0x40 | (buf[0] & 0x0f);
                if len >= 4 {
                    let total = rng.below(len + 1) as u16;
                    buf[2..4].copy_from_slice(&total.to_be_bytes());
                }
            }
            for packet in [
                Ipv4Packet::new_checked(&buf[..len]),
                Ipv4Packet::new_checked_quoted(&buf[..len]),
            ]
            .into_iter()
            .flatten()
            {
                let _ = (
                    packet.payload(),
                    packet.options(),
                    packet.verify_checksum(),
                    packet.addrs(),
                );
                assert!(packet.header_len() >= HEADER_LEN && packet.header_len() <= len);
            }
        }
    }
}
