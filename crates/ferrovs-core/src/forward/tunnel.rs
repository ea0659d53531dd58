//! TUNNEL mode: IP-in-IP encapsulation towards the real server (RFC 2003 for IPv4,
//! RFC 2473 for IPv6), which decapsulates and answers the client directly.

use crate::packet::parse::FrameInfo;
use crate::packet::{ipv4, ipv6, IpProtocol, Ipv4HeaderTemplate, Ipv4Packet, Ipv6Repr, PacketBuf};
use std::net::{IpAddr, Ipv4Addr};

/// Bytes an IPv4-in-IPv4 header adds.
pub const IPIP_OVERHEAD: usize = ipv4::HEADER_LEN;
/// Bytes an IPv6-in-IPv6 header adds.
pub const IP6IP6_OVERHEAD: usize = ipv6::HEADER_LEN;
/// Hop limit of the outer header.
const OUTER_TTL: u8 = 64;

/// Why a packet could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelError {
    /// Too big for the egress MTU and the sender forbids fragmentation: tell it
    /// the largest inner packet that fits (ICMP fragmentation needed / packet too big).
    FragmentationNeeded {
        /// Bytes of inner IP packet that fit: the egress MTU less the outer header.
        mtu: u16,
    },
    /// Too big for the egress MTU; ferrovs does not fragment.
    TooBig,
    /// The buffer has no headroom for the outer header.
    NoRoom,
    /// Outer and inner address families differ.
    FamilyMismatch,
}

/// Encapsulates the IP packet in `pkt` (classified by `info`, Ethernet header first)
/// in an outer header from `src` to `dst`, keeping the Ethernet header in front, for
/// a link of `mtu` bytes. DF is copied from the inner IPv4 header (RFC 2003); the
/// outer TTL is 64. On error the packet is unchanged, but that a refusal for want
/// of headroom has had its padding cut.
pub fn encapsulate<B: PacketBuf>(
    pkt: &mut B,
    info: &FrameInfo,
    src: IpAddr,
    dst: IpAddr,
    mtu: u16,
) -> Result<(), TunnelError> {
    let l3 = usize::from(info.l3_offset);
    let inner_len = info.l3_end() - l3;
    match (src, dst, info.ip().map(|i| i.addrs.src())) {
        (IpAddr::V4(s), IpAddr::V4(d), Some(IpAddr::V4(_))) => {
            encapsulate_ipip(pkt, l3, inner_len, &ipip_outer(s, d), mtu)
        }
        // IPv6 is never fragmented on the way: a packet that does not fit always
        // gets "packet too big" (RFC 8200).
        (IpAddr::V6(s), IpAddr::V6(d), Some(IpAddr::V6(_))) => {
            check_fits(inner_len, IP6IP6_OVERHEAD, mtu, true)?;
            let outer = prepend_outer(pkt, l3, inner_len, IP6IP6_OVERHEAD)?;
            Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::IPV6,
                payload_len: inner_len,
                hop_limit: OUTER_TTL,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(outer)
            .map_err(|_| TunnelError::NoRoom)
        }
        _ => Err(TunnelError::FamilyMismatch),
    }
}

/// The outer header of every IPv4-in-IPv4 packet from `src` to `dst`: made once
/// for a real server, it leaves a packet only its length, DSCP/ECN and DF to fill.
pub fn ipip_outer(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4HeaderTemplate {
    Ipv4HeaderTemplate::new(src, dst, IpProtocol::IPIP, OUTER_TTL)
}

/// [`encapsulate`] for an IPv4 packet, `inner_len` bytes long from offset `l3` of
/// the frame (which the caller has checked holds it), and an outer header made
/// by [`ipip_outer`]: DSCP/ECN and DF are copied from the inner header.
#[inline]
pub fn encapsulate_ipip<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    inner_len: usize,
    outer: &Ipv4HeaderTemplate,
    mtu: u16,
) -> Result<(), TunnelError> {
    let inner = pkt
        .data()
        .get(l3..)
        .map(Ipv4Packet::new_unchecked)
        .ok_or(TunnelError::NoRoom)?;
    let (df, tos) = (inner.dont_fragment(), inner.dscp() << 2 | inner.ecn());
    check_fits(inner_len, IPIP_OVERHEAD, mtu, df)?;
    let header = prepend_outer(pkt, l3, inner_len, IPIP_OVERHEAD)?
        .first_chunk_mut()
        .ok_or(TunnelError::NoRoom)?;
    // Fits in the MTU, so in 16 bits.
    outer.write(header, (inner_len + IPIP_OVERHEAD) as u16, tos, df);
    Ok(())
}

/// Whether `inner_len` bytes with an outer header of `overhead` fit a link of
/// `mtu`; if not, what to tell the sender (with `df`) or that it is dropped.
#[inline]
fn check_fits(inner_len: usize, overhead: usize, mtu: u16, df: bool) -> Result<(), TunnelError> {
    if inner_len + overhead <= usize::from(mtu) {
        return Ok(());
    }
    Err(if df {
        TunnelError::FragmentationNeeded {
            mtu: mtu.saturating_sub(overhead as u16),
        }
    } else {
        TunnelError::TooBig
    })
}

/// Cuts the frame to its `inner_len`-byte IP packet at `l3`, makes room for an
/// outer header of `overhead` bytes in front of it, the Ethernet header (and any
/// VLAN tag) moved ahead of that, and gives the room for the header.
#[inline]
fn prepend_outer<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    inner_len: usize,
    overhead: usize,
) -> Result<&mut [u8], TunnelError> {
    pkt.truncate(l3 + inner_len);
    pkt.prepend(overhead).map_err(|_| TunnelError::NoRoom)?;
    let data = pkt.data_mut();
    data.copy_within(overhead..overhead + l3, 0);
    Ok(&mut data[l3..l3 + overhead])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::craft::{self, L2};
    use crate::packet::parse::L3Info;
    use crate::packet::{parse_frame, Ipv6Packet, MacAddr, TcpFlags, VecBuf};

    const L2S: L2 = L2 {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
    };

    #[test]
    fn ipip_keeps_the_inner_packet_intact() {
        let inner = craft::tcp(
            L2S,
            "198.18.0.10:40000".parse().unwrap(),
            "198.18.0.100:80".parse().unwrap(),
            TcpFlags::SYN,
            1,
            0,
            b"",
        );
        let mut pkt = VecBuf::from_frame(&inner);
        let info = parse_frame(pkt.data(), false).unwrap();
        encapsulate(
            &mut pkt,
            &info,
            "198.19.0.1".parse().unwrap(),
            "198.19.0.11".parse().unwrap(),
            1500,
        )
        .unwrap();
        let data = pkt.data();
        assert_eq!(&data[..14], &inner[..14]);
        let outer = parse_frame(data, false).unwrap();
        let L3Info::Ip(ip) = outer.l3 else { panic!() };
        assert_eq!(ip.protocol, IpProtocol::IPIP);
        assert_eq!(ip.addrs.src(), "198.19.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ip.addrs.dst(), "198.19.0.11".parse::<IpAddr>().unwrap());
        assert_eq!(ip.ttl, 64);
        let o = Ipv4Packet::new_checked(&data[14..]).unwrap();
        assert!(o.verify_checksum());
        assert!(o.dont_fragment(), "DF copied from the inner header");
        // the payload is the original IP packet without Ethernet padding
        let inner_ip_len = info.l3_end() - 14;
        assert_eq!(o.payload(), &inner[14..14 + inner_ip_len]);
    }

    #[test]
    fn too_big_packets_are_refused_by_df() {
        let big = craft::udp(
            L2S,
            "198.18.0.10:1".parse().unwrap(),
            "198.18.0.100:53".parse().unwrap(),
            &[0u8; 1472],
        );
        let mut pkt = VecBuf::from_frame(&big);
        let info = parse_frame(pkt.data(), false).unwrap();
        let r = encapsulate(
            &mut pkt,
            &info,
            "198.19.0.1".parse().unwrap(),
            "198.19.0.11".parse().unwrap(),
            1500,
        );
        assert_eq!(r, Err(TunnelError::FragmentationNeeded { mtu: 1480 }));
        assert_eq!(pkt.data(), &big[..]);
        // without DF: refused, never fragmented
        let mut no_df = big.clone();
        no_df[14 + 6] = 0;
        Ipv4Packet::new_checked(&mut no_df[14..])
            .unwrap()
            .fill_checksum();
        let mut pkt = VecBuf::from_frame(&no_df);
        let info = parse_frame(pkt.data(), false).unwrap();
        let r = encapsulate(
            &mut pkt,
            &info,
            "198.19.0.1".parse().unwrap(),
            "198.19.0.11".parse().unwrap(),
            1500,
        );
        assert_eq!(r, Err(TunnelError::TooBig));
        // fits exactly
        let fits = craft::udp(
            L2S,
            "198.18.0.10:1".parse().unwrap(),
            "198.18.0.100:53".parse().unwrap(),
            &[0u8; 1452],
        );
        let mut pkt = VecBuf::from_frame(&fits);
        let info = parse_frame(pkt.data(), false).unwrap();
        encapsulate(
            &mut pkt,
            &info,
            "198.19.0.1".parse().unwrap(),
            "198.19.0.11".parse().unwrap(),
            1500,
        )
        .unwrap();
        assert_eq!(pkt.len(), 14 + 1500);
    }

    #[test]
    fn ipv6_in_ipv6() {
        let inner = craft::udp(
            L2S,
            "[2001:2::10]:5000".parse().unwrap(),
            "[2001:2::100]:53".parse().unwrap(),
            b"q",
        );
        let mut pkt = VecBuf::from_frame(&inner);
        let info = parse_frame(pkt.data(), false).unwrap();
        encapsulate(
            &mut pkt,
            &info,
            "2001:2:0:1::1".parse().unwrap(),
            "2001:2:0:1::11".parse().unwrap(),
            1500,
        )
        .unwrap();
        let outer = Ipv6Packet::new_checked(&pkt.data()[14..]).unwrap();
        assert_eq!(outer.next_header(), IpProtocol::IPV6);
        assert_eq!(usize::from(outer.payload_len()), info.l3_end() - 14);
        assert_eq!(
            encapsulate(
                &mut pkt,
                &info,
                "198.19.0.1".parse().unwrap(),
                "198.19.0.11".parse().unwrap(),
                1500
            ),
            Err(TunnelError::FamilyMismatch)
        );
    }
}
