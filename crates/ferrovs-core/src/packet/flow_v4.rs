//! The common case of a load balancer's traffic, classified in a few loads: an
//! untagged Ethernet frame carrying an unfragmented IPv4 TCP or UDP packet without
//! IP options.
//!
//! [`parse_ipv4_flow`] is a subset of [`parse_frame`](super::parse_frame) for the
//! worker's burst path: it answers only for frames of that shape and leaves
//! everything else (ARP, IPv6, VLAN tags, IP options, fragments, ICMP, malformed
//! frames) to the full parser, which also names the drop reasons. With the header
//! length fixed, every field sits at a constant offset of one fixed-size array, so
//! the checks compile to a handful of compares; whenever it answers, `parse_frame`
//! accepts the frame with the same fields (tested below on valid and mutated
//! frames).

use std::net::Ipv4Addr;

use super::checksum;
use super::ethernet::{self, EtherType};
use super::ip::{IpProtocol, Proto};
use super::tcp::TcpFlags;
use super::{be, ipv4, tcp, udp};

/// Offsets in the frame: Ethernet header, then an IPv4 header without options.
pub(crate) mod field {
    use std::ops::Range;

    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const IP: Range<usize> = 14..34;
    pub const VER_IHL: usize = 14;
    pub const TOTAL_LEN: Range<usize> = 16..18;
    pub const FLAGS_FRAG: Range<usize> = 20..22;
    pub const TTL: usize = 22;
    pub const PROTOCOL: usize = 23;
    pub const IP_CHECKSUM: Range<usize> = 24..26;
    pub const SRC: Range<usize> = 26..30;
    pub const DST: Range<usize> = 30..34;
    /// Where the TCP or UDP header starts.
    pub const L4: usize = 34;
    /// In the TCP or UDP header.
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const UDP_LEN: Range<usize> = 4..6;
    pub const TCP_DATA_OFFSET: usize = 12;
    pub const TCP_FLAGS: usize = 13;
    /// In the frame again: the checksums, and where each header ends.
    pub const UDP_CHECKSUM: Range<usize> = L4 + 6..L4 + 8;
    pub const UDP_END: usize = L4 + super::udp::HEADER_LEN;
    pub const TCP_CHECKSUM: Range<usize> = L4 + 16..L4 + 18;
    pub const TCP_END: usize = L4 + super::tcp::HEADER_LEN;
}

/// Version 4, header length 5 words.
const VER_IHL_NO_OPTIONS: u8 = 0x45;
/// More-fragments flag and fragment offset.
const FRAGMENT_BITS: u16 = 0x3fff;
/// Total length of an IPv4 header without options.
const MIN_TOTAL_LEN: u16 = ipv4::HEADER_LEN as u16;

/// What the burst path needs of a TCP/UDP-over-IPv4 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Flow {
    /// IPv4 source address.
    pub src: Ipv4Addr,
    /// IPv4 destination address.
    pub dst: Ipv4Addr,
    /// TCP or UDP source port.
    pub src_port: u16,
    /// TCP or UDP destination port.
    pub dst_port: u16,
    /// IPv4 total length: the packet ends at `ethernet::HEADER_LEN + total_len`,
    /// anything after it is padding.
    pub total_len: u16,
    /// TCP or UDP.
    pub proto: Proto,
    /// The TCP flags (empty for UDP).
    pub tcp_flags: TcpFlags,
}

impl Ipv4Flow {
    /// Where the TCP or UDP header starts: right after an IPv4 header without
    /// options, the only shape this parser answers for.
    pub const L4_OFFSET: usize = field::L4;

    /// Where the IPv4 packet ends in the frame.
    pub fn l3_end(&self) -> usize {
        ethernet::HEADER_LEN + usize::from(self.total_len)
    }
}

/// Classifies `frame` if it is an untagged Ethernet frame with a valid,
/// unfragmented IPv4 packet without options (header checksum verified) carrying a
/// complete TCP or UDP header; None for any other frame, valid or not.
/// `checksum_verified`: the NIC already verified the header checksum (RX offload),
/// so it is not summed again.
#[inline]
pub fn parse_ipv4_flow(frame: &[u8], checksum_verified: bool) -> Option<Ipv4Flow> {
    let h: &[u8; field::L4] = frame.first_chunk()?;
    if be::read_u16(h, field::ETHERTYPE) != EtherType::IPV4.0
        || h[field::VER_IHL] != VER_IHL_NO_OPTIONS
    {
        return None;
    }
    let total_len = be::read_u16(h, field::TOTAL_LEN);
    let ip_end = ethernet::HEADER_LEN + usize::from(total_len);
    if total_len < MIN_TOTAL_LEN
        || ip_end > frame.len()
        || be::read_u16(h, field::FLAGS_FRAG) & FRAGMENT_BITS != 0
        || !(checksum_verified
            || h[field::IP]
                .first_chunk()
                .is_some_and(checksum::ipv4_header_verifies))
    {
        return None;
    }
    let segment = &frame[field::L4..ip_end];
    let (proto, src_port, dst_port, tcp_flags) = match IpProtocol(h[field::PROTOCOL]) {
        IpProtocol::TCP => {
            let t: &[u8; tcp::HEADER_LEN] = segment.first_chunk()?;
            let header_len = usize::from(t[field::TCP_DATA_OFFSET] >> 4) * 4;
            if header_len < tcp::HEADER_LEN || header_len > segment.len() {
                return None;
            }
            (
                Proto::Tcp,
                be::read_u16(t, field::SRC_PORT),
                be::read_u16(t, field::DST_PORT),
                TcpFlags::from_bits(t[field::TCP_FLAGS]),
            )
        }
        IpProtocol::UDP => {
            let u: &[u8; udp::HEADER_LEN] = segment.first_chunk()?;
            let len = usize::from(be::read_u16(u, field::UDP_LEN));
            if len < udp::HEADER_LEN || len > segment.len() {
                return None;
            }
            (
                Proto::Udp,
                be::read_u16(u, field::SRC_PORT),
                be::read_u16(u, field::DST_PORT),
                TcpFlags::default(),
            )
        }
        _ => return None,
    };
    let addr = |r: std::ops::Range<usize>| {
        Ipv4Addr::new(h[r.start], h[r.start + 1], h[r.start + 2], h[r.start + 3])
    };
    Some(Ipv4Flow {
        src: addr(field::SRC),
        dst: addr(field::DST),
        src_port,
        dst_port,
        total_len,
        proto,
        tcp_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::craft::{self, L2};
    use crate::packet::ipv4::Ipv4Packet;
    use crate::packet::parse::{parse_frame, L3Info, L4Header};
    use crate::packet::testutil::XorShift;
    use crate::packet::MacAddr;

    const L2S: L2 = L2 {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
    };

    /// Asserts that `parse_frame` agrees with whatever `parse_ipv4_flow` says about
    /// `frame`; returns whether the fast parser answered.
    fn agrees(frame: &[u8]) -> bool {
        let Some(f) = parse_ipv4_flow(frame, false) else {
            return false;
        };
        let info =
            parse_frame(frame, false).expect("parse_frame accepts what the fast parser does");
        assert!(info.vlan.is_none());
        assert_eq!(usize::from(info.l3_offset), ethernet::HEADER_LEN);
        let L3Info::Ip(ip) = info.l3 else {
            panic!("not IP")
        };
        assert!(!ip.fragment);
        assert_eq!(ip.addrs.src(), f.src);
        assert_eq!(ip.addrs.dst(), f.dst);
        assert_eq!(ip.total_len, u32::from(f.total_len));
        assert_eq!(info.l3_end(), f.l3_end());
        assert_eq!(ip.protocol.0, f.proto.number());
        let l4 = ip.l4.expect("L4 header");
        assert_eq!(usize::from(l4.offset), Ipv4Flow::L4_OFFSET);
        match l4.header {
            L4Header::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                assert_eq!(f.proto, Proto::Tcp);
                assert_eq!(
                    (src_port, dst_port, flags),
                    (f.src_port, f.dst_port, f.tcp_flags)
                );
            }
            L4Header::Udp { src_port, dst_port } => {
                assert_eq!(f.proto, Proto::Udp);
                assert_eq!((src_port, dst_port), (f.src_port, f.dst_port));
                assert_eq!(f.tcp_flags, TcpFlags::default());
            }
            other => panic!("unexpected {other:?}"),
        }
        true
    }

    fn samples() -> Vec<Vec<u8>> {
        let c = "198.18.0.10:40000".parse().unwrap();
        let v = "198.18.0.100:80".parse().unwrap();
        vec![
            craft::udp(L2S, c, v, b"hello"),
            craft::udp(L2S, c, v, &[0x55; 300]),
            craft::tcp(L2S, c, v, TcpFlags::SYN, 1, 0, b""),
            craft::tcp(L2S, c, v, TcpFlags::ACK | TcpFlags::PSH, 1, 2, b"GET /"),
        ]
    }

    #[test]
    fn common_frames_are_classified() {
        for f in samples() {
            assert!(agrees(&f), "{f:02x?}");
        }
        let f = parse_ipv4_flow(&samples()[2], false).unwrap();
        assert_eq!(f.proto, Proto::Tcp);
        assert_eq!(f.tcp_flags, TcpFlags::SYN);
        assert_eq!((f.src_port, f.dst_port), (40000, 80));
    }

    #[test]
    fn other_frames_are_left_to_the_full_parser() {
        let c6 = "[2001:2::10]:40000".parse().unwrap();
        let v6 = "[2001:2::100]:80".parse().unwrap();
        let icmp = craft::echo_request(
            L2S,
            "198.18.0.10".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            1,
            1,
            b"ping",
        );
        let arp = craft::arp_request(
            MacAddr([2, 0, 0, 0, 0, 1]),
            "198.18.0.10".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
        );
        for f in [
            craft::udp(L2S, c6, v6, b"v6"),
            icmp,
            arp,
            Vec::new(),
            vec![0; 13],
            vec![0; 60],
        ] {
            assert_eq!(parse_ipv4_flow(&f, false), None);
        }
        let base = samples()[0].clone();
        // A fragment (more fragments set), checksum fixed: valid, but not ours.
        let mut frag = base.clone();
        frag[14 + 6] |= 0x20;
        fix_ip_checksum(&mut frag);
        assert!(parse_frame(&frag, false).is_ok());
        assert_eq!(parse_ipv4_flow(&frag, false), None);
        // A VLAN tag: the full parser decides.
        let mut tagged = base[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&base[12..]);
        assert_eq!(parse_ipv4_flow(&tagged, false), None);
        // A bad header checksum, a short frame, a UDP length past the packet.
        let mut bad = base.clone();
        bad[14 + 10] ^= 1;
        assert_eq!(parse_ipv4_flow(&bad, false), None);
        assert_eq!(parse_ipv4_flow(&base[..14 + 20 + 4], false), None);
        let mut long_udp = base.clone();
        long_udp[14 + 20 + 4] = 0x7f;
        assert_eq!(parse_ipv4_flow(&long_udp, false), None);
        assert!(parse_frame(&long_udp, false).is_err());
    }

    #[test]
    fn a_nic_verified_checksum_is_not_summed_again_and_nothing_else_is_skipped() {
        let base = samples()[0].clone();
        let mut bad = base.clone();
        bad[14 + 10] ^= 1;
        // Without the NIC's word the software check refuses it; with it, the frame
        // is classified like the intact one (the checksum is all that differs).
        assert_eq!(parse_ipv4_flow(&bad, false), None);
        assert_eq!(parse_ipv4_flow(&bad, true), parse_ipv4_flow(&base, false));
        assert!(parse_ipv4_flow(&base, true).is_some());
        // Every other refusal stands.
        let mut frag = base.clone();
        frag[14 + 6] |= 0x20;
        let mut options = base.clone();
        options[14] = 0x46;
        let mut long_udp = base.clone();
        long_udp[14 + 20 + 4] = 0x7f;
        let mut not_ip = base.clone();
        not_ip[12] = 0x86;
        for f in [
            frag,
            options,
            long_udp,
            not_ip,
            base[..14 + 20 + 4].to_vec(),
        ] {
            assert_eq!(parse_ipv4_flow(&f, true), None, "{f:02x?}");
        }
    }

    fn fix_ip_checksum(frame: &mut [u8]) {
        let mut ip = Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
        ip.fill_checksum();
    }

    #[test]
    fn ip_options_are_left_to_the_full_parser() {
        // IHL 6: a 4-byte option (NOP padding) moves the L4 header.
        let base = samples()[3].clone();
        let mut f = base[..34].to_vec();
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&base[34..]);
        f[14] = 0x46;
        let total = u16::from_be_bytes([f[16], f[17]]) + 4;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        fix_ip_checksum(&mut f);
        assert!(parse_frame(&f, false).is_ok());
        assert_eq!(parse_ipv4_flow(&f, false), None);
    }

    #[test]
    fn mutated_frames_never_disagree_with_the_full_parser() {
        // Random byte changes in the headers (sometimes with the IPv4 checksum
        // fixed up, so deeper fields are reached): whenever the fast parser
        // answers, the full parser agrees field by field.
        let mut rng = XorShift::new(0xfa57);
        let mut answered = 0;
        for round in 0..40_000 {
            let samples = samples();
            let mut f = samples[rng.below(samples.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(f.len().min(64));
                f[at] = rng.next() as u8;
            }
            if round % 2 == 0 && f.len() >= 34 && f[14] >> 4 == 4 && f[14] & 0xf >= 5 {
                let ihl = usize::from(f[14] & 0xf) * 4;
                if f.len() >= 14 + ihl {
                    f[24..26].fill(0);
                    let sum = crate::packet::checksum::checksum(&f[14..14 + ihl]);
                    f[24..26].copy_from_slice(&sum.to_be_bytes());
                }
            }
            if rng.below(4) == 0 {
                f.truncate(rng.below(f.len() + 1));
            }
            if agrees(&f) {
                answered += 1;
            }
        }
        assert!(
            answered > 1000,
            "too few mutated frames reached the end: {answered}"
        );
    }
}
