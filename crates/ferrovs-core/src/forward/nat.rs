//! Address and port translation of TCP/UDP packets, with TTL decrement.

use crate::conn::Proto;
use crate::packet::be;
use crate::packet::checksum::{self, Delta};
use crate::packet::flow_v4::field;
use crate::packet::parse::{FrameInfo, IpInfo};
use crate::packet::{Ipv4Flow, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};
use crate::stats::DropReason;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

/// New source and/or destination endpoints for a packet. Addresses must be of the
/// packet's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Translation {
    /// New source address and port; `None` leaves the source as it is.
    pub src: Option<(IpAddr, u16)>,
    /// New destination address and port; `None` leaves the destination as it is.
    pub dst: Option<(IpAddr, u16)>,
}

/// Rewrites the packet in `frame` (as classified by `info`/`ip`) per `t`: addresses
/// in the IP header, ports in the TCP/UDP header, both checksums updated
/// incrementally (a zero UDP checksum over IPv4 stays zero), TTL or hop limit
/// decremented. On error the frame is unchanged.
///
/// Every change to a header is collected into one [`Delta`] and folded into its
/// checksum once (RFC 1624 eqn. 3 holds for any sum of changes).
#[inline]
pub fn translate(
    frame: &mut [u8],
    info: &FrameInfo,
    ip: &IpInfo,
    proto: Proto,
    t: &Translation,
) -> Result<(), DropReason> {
    let l3 = usize::from(info.l3_offset);
    let end = info.l3_end().min(frame.len());
    let l4 = ip.l4.ok_or(DropReason::TruncatedL4)?.offset as usize;
    if l4 > end || l3 > l4 {
        return Err(DropReason::TruncatedL4);
    }
    let delta = match ip.addrs.src() {
        IpAddr::V4(_) => {
            let v4 = |e: Option<(IpAddr, u16)>| match e {
                Some((IpAddr::V4(a), _)) => Some(a),
                _ => None,
            };
            // parse_frame validated the header, so the unchecked view is safe to index.
            let h = Ipv4Packet::new_unchecked(&mut frame[l3..l4]);
            rewrite_ipv4_header(h, v4(t.src), v4(t.dst))?
        }
        IpAddr::V6(_) => {
            let mut h = Ipv6Packet::new_unchecked(&mut frame[l3..l4]);
            if h.hop_limit() <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            h.decrement_hop_limit();
            let mut delta = Delta::NONE;
            if let Some((IpAddr::V6(a), _)) = t.src {
                delta = delta.ipv6(h.src_addr(), a);
                h.set_src_addr(a);
            }
            if let Some((IpAddr::V6(a), _)) = t.dst {
                delta = delta.ipv6(h.dst_addr(), a);
                h.set_dst_addr(a);
            }
            delta
        }
    };
    rewrite_ports(
        &mut frame[l4..end],
        proto == Proto::Tcp,
        delta,
        t.src.map(|(_, p)| p),
        t.dst.map(|(_, p)| p),
    );
    Ok(())
}

/// Rewrites the IP header of a fragment other than the first, which carries no
/// TCP/UDP header: addresses set per `src`/`dst`, TTL or hop limit decremented,
/// the IPv4 header checksum updated. The ports and the TCP/UDP checksum (whose
/// pseudo-header covers the addresses) live in the first fragment and were
/// updated there for the whole datagram. On error the frame is unchanged.
pub fn translate_fragment(
    frame: &mut [u8],
    info: &FrameInfo,
    ip: &IpInfo,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
) -> Result<(), DropReason> {
    let l3 = usize::from(info.l3_offset);
    let end = l3 + usize::from(ip.header_len);
    let header = frame.get_mut(l3..end).ok_or(DropReason::TruncatedL4)?;
    match ip.addrs {
        crate::packet::IpPair::V4 { .. } => {
            let v4 = |a: Option<IpAddr>| match a {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            };
            rewrite_ipv4_header(Ipv4Packet::new_unchecked(header), v4(src), v4(dst))?;
        }
        crate::packet::IpPair::V6 { .. } => {
            let mut h = Ipv6Packet::new_unchecked(header);
            if h.hop_limit() <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            h.decrement_hop_limit();
            if let Some(IpAddr::V6(a)) = src {
                h.set_src_addr(a);
            }
            if let Some(IpAddr::V6(a)) = dst {
                h.set_dst_addr(a);
            }
        }
    }
    Ok(())
}

/// Decrements the TTL and sets the addresses of an IPv4 header, with one checksum
/// update. Returns the change of the addresses, which the TCP/UDP checksum covers
/// through its pseudo-header. A TTL of 0 or 1 is refused with the header untouched.
#[inline(always)]
fn rewrite_ipv4_header(
    mut h: Ipv4Packet<&mut [u8]>,
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
) -> Result<Delta, DropReason> {
    let ttl = h.ttl();
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    // TTL shares its 16-bit word with the protocol.
    let protocol = u16::from(h.protocol().0);
    let ttl_change = Delta::NONE.u16(
        u16::from(ttl) << 8 | protocol,
        u16::from(ttl - 1) << 8 | protocol,
    );
    h.set_ttl(ttl - 1);
    let mut addrs = Delta::NONE;
    if let Some(a) = src {
        addrs = addrs.ipv4(h.src_addr(), a);
        h.set_src_addr(a);
    }
    if let Some(a) = dst {
        addrs = addrs.ipv4(h.dst_addr(), a);
        h.set_dst_addr(a);
    }
    h.apply_checksum_delta(ttl_change.and(addrs));
    Ok(addrs)
}

/// Sets the ports of a TCP (`tcp`) or UDP segment and folds them and the
/// pseudo-header change `delta` into its checksum at once (a zero UDP checksum
/// stays zero).
#[inline(always)]
fn rewrite_ports(
    segment: &mut [u8],
    tcp: bool,
    mut delta: Delta,
    src: Option<u16>,
    dst: Option<u16>,
) {
    if tcp {
        let mut tcp = TcpPacket::new_unchecked(segment);
        if let Some(p) = src {
            delta = delta.u16(tcp.src_port(), p);
            tcp.set_src_port(p);
        }
        if let Some(p) = dst {
            delta = delta.u16(tcp.dst_port(), p);
            tcp.set_dst_port(p);
        }
        tcp.apply_checksum_delta(delta);
    } else {
        let mut udp = UdpPacket::new_unchecked(segment);
        if let Some(p) = src {
            delta = delta.u16(udp.src_port(), p);
            udp.set_src_port(p);
        }
        if let Some(p) = dst {
            delta = delta.u16(udp.dst_port(), p);
            udp.set_dst_port(p);
        }
        udp.apply_checksum_delta(delta);
    }
}

/// New IPv4 source and/or destination endpoints (the burst path's [`Translation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TranslationV4 {
    /// New source address and port; `None` leaves the source as it is.
    pub src: Option<(Ipv4Addr, u16)>,
    /// New destination address and port; `None` leaves the destination as it is.
    pub dst: Option<(Ipv4Addr, u16)>,
}

/// [`translate`] for a frame classified by
/// [`parse_ipv4_flow`](crate::packet::parse_ipv4_flow): the same bytes come out,
/// over fixed-size header arrays (the IPv4 header has no options) without a bounds
/// check. Inlined into its one caller on the packet path, where the translation
/// (which fields change) is known from the connection's mode.
///
/// Fields and checksums are handled as words in memory order, with no byte swap:
/// a ones-complement sum of byte-swapped words is the byte-swapped sum (RFC 1071
/// section 2(B)), so a checksum read, updated and written back in that order
/// comes out as `translate`'s, down to its representation of zero (the same
/// changes are summed).
#[inline(always)]
pub fn translate_v4(
    frame: &mut [u8],
    flow: &Ipv4Flow,
    t: &TranslationV4,
) -> Result<(), DropReason> {
    if flow.proto == Proto::Tcp {
        let h: &mut [u8; field::TCP_END] =
            frame.first_chunk_mut().ok_or(DropReason::TruncatedL4)?;
        let delta = rewrite_v4_in_place(h, t)?;
        let checksum = delta.apply(be::read_ne_u16(h, field::TCP_CHECKSUM));
        be::write_ne_u16(h, field::TCP_CHECKSUM, checksum);
    } else {
        let h: &mut [u8; field::UDP_END] =
            frame.first_chunk_mut().ok_or(DropReason::TruncatedL4)?;
        let delta = rewrite_v4_in_place(h, t)?;
        // A zero checksum ("none") stays zero; a result of 0 goes out as 0xffff
        // (both the same in either byte order).
        let checksum = be::read_ne_u16(h, field::UDP_CHECKSUM);
        if checksum != 0 {
            let checksum = checksum::udp_transmitted(delta.apply(checksum));
            be::write_ne_u16(h, field::UDP_CHECKSUM, checksum);
        }
    }
    Ok(())
}

/// The IPv4 header and the ports of [`translate_v4`]: decrements the TTL, sets the
/// endpoints `t` changes and fixes the header checksum. Returns the change of the
/// TCP/UDP checksum (addresses through the pseudo-header, and ports), in memory
/// order. A TTL of 0 or 1 is refused with the frame untouched.
#[inline(always)]
fn rewrite_v4_in_place<const N: usize>(
    h: &mut [u8; N],
    t: &TranslationV4,
) -> Result<Delta, DropReason> {
    const { assert!(N >= field::L4 + 4) };
    // The ports' offsets are the TCP/UDP header's.
    let in_frame = |at: Range<usize>| field::L4 + at.start..field::L4 + at.end;
    let ttl = h[field::TTL];
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    h[field::TTL] = ttl - 1;
    let mut addrs = Delta::NONE;
    let mut ports = Delta::NONE;
    for (new, addr_at, port_at) in [
        (t.src, field::SRC, in_frame(field::SRC_PORT)),
        (t.dst, field::DST, in_frame(field::DST_PORT)),
    ] {
        if let Some((addr, port)) = new {
            // Both in memory order: the address's bytes, the port big-endian.
            let (addr, port) = (u32::from_ne_bytes(addr.octets()), port.to_be());
            addrs = addrs.u32(be::read_ne_u32(h, addr_at.clone()), addr);
            be::write_ne_u32(h, addr_at, addr);
            ports = ports.u16(be::read_ne_u16(h, port_at.clone()), port);
            be::write_ne_u16(h, port_at, port);
        }
    }
    // The TTL is the first byte of its word (the protocol the second): one lower.
    let ttl_change = Delta::NONE.u16(u16::from_ne_bytes([1, 0]), 0);
    let checksum = ttl_change
        .and(addrs)
        .apply(be::read_ne_u16(h, field::IP_CHECKSUM));
    be::write_ne_u16(h, field::IP_CHECKSUM, checksum);
    Ok(addrs.and(ports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::craft::{self, L2};
    use crate::packet::parse::L3Info;
    use crate::packet::{parse_frame, MacAddr, TcpFlags};

    const L2S: L2 = L2 {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
    };

    fn check(frame: &[u8]) -> IpInfo {
        let info = parse_frame(frame, false).unwrap();
        let L3Info::Ip(ip) = info.l3 else { panic!() };
        let l4 = ip.l4.unwrap().offset as usize;
        let seg = &frame[l4..info.l3_end()];
        if ip.addrs.src().is_ipv4() {
            assert!(Ipv4Packet::new_checked(&frame[14..])
                .unwrap()
                .verify_checksum());
        }
        let proto = ip.protocol;
        let zero_udp = proto == crate::packet::IpProtocol::UDP && seg[6..8] == [0, 0];
        assert!(
            zero_udp || craft::l4_checksum_ok(&ip.addrs, proto, seg),
            "L4 checksum"
        );
        ip
    }

    fn apply(frame: &mut [u8], proto: Proto, t: Translation) -> Result<(), DropReason> {
        let info = parse_frame(frame, false).unwrap();
        let L3Info::Ip(ip) = info.l3 else { panic!() };
        translate(frame, &info, &ip, proto, &t)
    }

    #[test]
    fn dnat_and_snat_keep_checksums_valid() {
        for (client, vip, rs) in [
            ("198.18.0.10:40000", "198.18.0.100:80", "198.19.0.11:8080"),
            (
                "[2001:2::10]:40000",
                "[2001:2::100]:80",
                "[2001:2:0:1::11]:8080",
            ),
        ] {
            let (client, vip, rs): (
                std::net::SocketAddr,
                std::net::SocketAddr,
                std::net::SocketAddr,
            ) = (
                client.parse().unwrap(),
                vip.parse().unwrap(),
                rs.parse().unwrap(),
            );
            let mut f = craft::tcp(L2S, client, vip, TcpFlags::SYN, 7, 0, b"");
            apply(
                &mut f,
                Proto::Tcp,
                Translation {
                    dst: Some((rs.ip(), rs.port())),
                    src: None,
                },
            )
            .unwrap();
            let ip = check(&f);
            assert_eq!(ip.addrs.dst(), rs.ip());
            assert_eq!(ip.ports(), Some((client.port(), rs.port())));
            assert_eq!(ip.ttl, 63);

            let mut f = craft::udp(L2S, rs, client, b"answer");
            apply(
                &mut f,
                Proto::Udp,
                Translation {
                    src: Some((vip.ip(), vip.port())),
                    dst: None,
                },
            )
            .unwrap();
            let ip = check(&f);
            assert_eq!(ip.addrs.src(), vip.ip());
            assert_eq!(ip.ports(), Some((vip.port(), client.port())));
        }
    }

    #[test]
    fn both_endpoints_at_once() {
        let mut f = craft::tcp(
            L2S,
            "198.18.0.10:40000".parse().unwrap(),
            "198.18.0.100:80".parse().unwrap(),
            TcpFlags::ACK,
            1,
            2,
            b"GET / HTTP/1.1\r\n\r\n",
        );
        let t = Translation {
            src: Some(("198.19.0.2".parse().unwrap(), 5000)),
            dst: Some(("198.19.0.11".parse().unwrap(), 8080)),
        };
        apply(&mut f, Proto::Tcp, t).unwrap();
        let ip = check(&f);
        assert_eq!(ip.ports(), Some((5000, 8080)));
        assert_eq!(ip.addrs.src(), "198.19.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn zero_udp_checksum_stays_zero() {
        let mut f = craft::udp(
            L2S,
            "198.18.0.10:5353".parse().unwrap(),
            "198.18.0.100:53".parse().unwrap(),
            b"q",
        );
        f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        apply(
            &mut f,
            Proto::Udp,
            Translation {
                dst: Some(("198.19.0.11".parse().unwrap(), 53)),
                src: None,
            },
        )
        .unwrap();
        assert_eq!(&f[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
        check(&f);
    }

    #[test]
    fn expiring_ttl_is_refused_untouched() {
        let mut f = craft::udp(
            L2S,
            "198.18.0.10:1".parse().unwrap(),
            "198.18.0.100:53".parse().unwrap(),
            b"q",
        );
        f[14 + 8] = 1;
        let mut ip = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
        ip.fill_checksum();
        let before = f.clone();
        let r = apply(
            &mut f,
            Proto::Udp,
            Translation {
                dst: Some(("198.19.0.11".parse().unwrap(), 53)),
                src: None,
            },
        );
        assert_eq!(r, Err(DropReason::TtlExceeded));
        assert_eq!(f, before);
    }

    #[test]
    fn ipv4_burst_rewrite_is_byte_identical() {
        use crate::packet::parse_ipv4_flow;
        let c: std::net::SocketAddr = "198.18.0.10:40000".parse().unwrap();
        let v: std::net::SocketAddr = "198.18.0.100:80".parse().unwrap();
        let a = |s: &str| -> (Ipv4Addr, u16) {
            let x: std::net::SocketAddrV4 = s.parse().unwrap();
            (*x.ip(), x.port())
        };
        let mut zero_udp = craft::udp(L2S, c, v, b"zero");
        zero_udp[14 + 20 + 6..14 + 20 + 8].fill(0);
        let mut ttl1 = craft::udp(L2S, c, v, b"ttl");
        ttl1[14 + 8] = 1;
        Ipv4Packet::new_checked(&mut ttl1[14..])
            .unwrap()
            .fill_checksum();
        let frames = [
            (craft::udp(L2S, c, v, b"hello"), Proto::Udp),
            (zero_udp, Proto::Udp),
            (ttl1, Proto::Udp),
            (craft::tcp(L2S, c, v, TcpFlags::SYN, 9, 0, b""), Proto::Tcp),
            (
                craft::tcp(L2S, c, v, TcpFlags::ACK, 0xffff_0000, 7, &[0xff; 33]),
                Proto::Tcp,
            ),
        ];
        let rewrites = [
            (None, Some(a("198.19.0.11:8080"))),
            (Some(a("198.18.0.100:80")), None),
            (Some(a("198.19.0.2:5000")), Some(a("198.19.0.11:8080"))),
            (Some(a("255.255.255.255:65535")), Some(a("0.0.0.0:0"))),
            (None, None),
        ];
        for (frame, proto) in &frames {
            for (src, dst) in rewrites {
                let mut slow = frame.clone();
                let r_slow = apply(
                    &mut slow,
                    *proto,
                    Translation {
                        src: src.map(|(a, p)| (IpAddr::V4(a), p)),
                        dst: dst.map(|(a, p)| (IpAddr::V4(a), p)),
                    },
                );
                let mut fast = frame.clone();
                let flow = parse_ipv4_flow(&fast, false).unwrap();
                let r_fast = translate_v4(&mut fast, &flow, &TranslationV4 { src, dst });
                assert_eq!(r_fast, r_slow);
                assert_eq!(fast, slow, "{src:?} {dst:?}");
            }
        }
    }

    /// The burst rewrite against `translate` on random headers and endpoints,
    /// with the values where a ones-complement sum can come out zero (all-ones and
    /// zero addresses and ports, checksums 0 and 0xffff) drawn often.
    #[test]
    fn ipv4_burst_rewrite_is_byte_identical_on_random_headers() {
        use crate::packet::parse_ipv4_flow;
        use crate::packet::testutil::XorShift;
        let mut rng = XorShift::new(0x5eed_0fc0_ffee);
        let pick32 = |rng: &mut XorShift| match rng.below(4) {
            0 => u32::MAX,
            1 => 0,
            _ => rng.next() as u32,
        };
        let mut checked = 0;
        for round in 0..20_000 {
            let mut word = || pick32(&mut rng);
            let ep = |a: u32, p: u32| (Ipv4Addr::from(a), p as u16);
            let (client, vip) = (ep(word(), word()), ep(word(), word()));
            let (new_src, new_dst) = (ep(word(), word()), ep(word(), word()));
            let sock = |(a, p): (Ipv4Addr, u16)| std::net::SocketAddr::from((a, p));
            let tcp = round % 2 == 0;
            let mut frame = if tcp {
                craft::tcp(L2S, sock(client), sock(vip), TcpFlags::ACK, 1, 2, b"x")
            } else {
                craft::udp(L2S, sock(client), sock(vip), b"payload")
            };
            frame[14 + 8] = (rng.next() % 4) as u8 + if round % 3 == 0 { 0 } else { 60 };
            Ipv4Packet::new_checked(&mut frame[14..])
                .unwrap()
                .fill_checksum();
            let l4_checksum = if tcp { 14 + 20 + 16 } else { 14 + 20 + 6 };
            let forced = match rng.below(4) {
                0 => Some(0u16),
                1 => Some(0xffff),
                _ => None,
            };
            if let Some(c) = forced {
                frame[l4_checksum..l4_checksum + 2].copy_from_slice(&c.to_be_bytes());
            }
            let Some(flow) = parse_ipv4_flow(&frame, false) else {
                continue;
            };
            let proto = if tcp { Proto::Tcp } else { Proto::Udp };
            let src = (rng.below(2) == 0).then_some(new_src);
            let dst = (rng.below(2) == 0).then_some(new_dst);
            let mut slow = frame.clone();
            let r_slow = apply(
                &mut slow,
                proto,
                Translation {
                    src: src.map(|(a, p)| (IpAddr::V4(a), p)),
                    dst: dst.map(|(a, p)| (IpAddr::V4(a), p)),
                },
            );
            let mut fast = frame.clone();
            let r_fast = translate_v4(&mut fast, &flow, &TranslationV4 { src, dst });
            assert_eq!(r_fast, r_slow, "round {round}");
            assert_eq!(fast, slow, "round {round}: {src:?} {dst:?}");
            checked += 1;
        }
        // The parser turns away a few (a source it would not classify is fine).
        assert!(checked > 15_000, "{checked}");
    }
}
