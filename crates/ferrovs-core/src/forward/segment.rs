//! TCP segments ferrovs writes itself: a reset to a refused client, a SYN-ACK
//! carrying a SYN cookie, the SYN that opens a proxied connection to its real
//! server, a Proxy Protocol header sent ahead of a client's data. And the
//! options of a SYN: what a client offers ([`SynOptions::parse`]) and what a
//! SYN or SYN-ACK announces ([`SynOptions::write`]).

use crate::packet::checksum::{self, Sum};
use crate::packet::ip::IpProtocol;
use crate::packet::tcp::{self, TcpFlags, TcpPacket};
use crate::packet::{ethernet, ipv4, ipv6, EtherType, IpPair, Ipv4Repr, Ipv6Repr};
use std::net::IpAddr;

/// TCP option kinds.
pub mod kind {
    /// End of the option list.
    pub const END: u8 = 0;
    /// Padding.
    pub const NOP: u8 = 1;
    /// Maximum segment size (SYN only).
    pub const MSS: u8 = 2;
    /// Window scale (SYN only), RFC 7323.
    pub const WSCALE: u8 = 3;
    /// SACK permitted (SYN only), RFC 2018.
    pub const SACK_PERM: u8 = 4;
    /// SACK blocks, RFC 2018.
    pub const SACK: u8 = 5;
    /// Timestamps, RFC 7323.
    pub const TIMESTAMP: u8 = 8;
}

/// The longest option area of a TCP header.
pub const MAX_OPTIONS: usize = 40;

/// Walks a TCP option area, calling `f(offset, kind, option)` for each option
/// with a length (`option` is the whole option, kind and length included).
/// Stops at END; returns false, having stopped, at a malformed option (a length
/// below 2 or running past the area).
#[inline]
pub fn walk_options(options: &[u8], mut f: impl FnMut(usize, u8, &[u8])) -> bool {
    let mut at = 0;
    while let Some(&k) = options.get(at) {
        match k {
            kind::END => return true,
            kind::NOP => at += 1,
            _ => {
                let Some(&len) = options.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                let Some(option) = options.get(at..at + len).filter(|_| len >= 2) else {
                    return false;
                };
                f(at, k, option);
                at += len;
            }
        }
    }
    true
}

/// The timestamp option's values, if the option area holds a well-formed one:
/// (TSval, TSecr).
pub fn timestamps(options: &[u8]) -> Option<(u32, u32)> {
    let mut found = None;
    walk_options(options, |_, k, o| {
        if k == kind::TIMESTAMP && o.len() == 10 {
            found = Some((
                u32::from_be_bytes([o[2], o[3], o[4], o[5]]),
                u32::from_be_bytes([o[6], o[7], o[8], o[9]]),
            ));
        }
    });
    found
}

/// The options a SYN offers or a SYN-ACK answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SynOptions {
    /// Maximum segment size; none = not announced (RFC 9293's default then).
    pub mss: Option<u16>,
    /// Window scale shift (at most 14); none = no window scaling.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack: bool,
    /// Timestamps (TSval, TSecr); none = no timestamps.
    pub ts: Option<(u32, u32)>,
}

impl SynOptions {
    /// The options of a SYN's option area. Malformed options end the walk; what
    /// was read before stands (Linux ignores the rest the same way).
    pub fn parse(options: &[u8]) -> SynOptions {
        let mut o = SynOptions::default();
        walk_options(options, |_, k, v| match (k, v.len()) {
            (kind::MSS, 4) => o.mss = Some(u16::from_be_bytes([v[2], v[3]])),
            // RFC 7323: a shift above 14 is taken as 14.
            (kind::WSCALE, 3) => o.wscale = Some(v[2].min(14)),
            (kind::SACK_PERM, 2) => o.sack = true,
            (kind::TIMESTAMP, 10) => {
                o.ts = Some((
                    u32::from_be_bytes([v[2], v[3], v[4], v[5]]),
                    u32::from_be_bytes([v[6], v[7], v[8], v[9]]),
                ))
            }
            _ => {}
        });
        o
    }

    /// Writes the options as Linux lays them out (MSS; SACK permitted folded into
    /// the timestamp option's padding, or alone; window scale), into `out`;
    /// returns their length, a multiple of 4.
    pub fn write(&self, out: &mut [u8; MAX_OPTIONS]) -> usize {
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            out[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[kind::MSS, 4, m[0], m[1]]);
        }
        match (self.ts, self.sack) {
            (Some((val, ecr)), sack) => {
                if sack {
                    put(&[kind::SACK_PERM, 2]);
                } else {
                    put(&[kind::NOP, kind::NOP]);
                }
                put(&[kind::TIMESTAMP, 10]);
                put(&val.to_be_bytes());
                put(&ecr.to_be_bytes());
            }
            (None, true) => put(&[kind::NOP, kind::NOP, kind::SACK_PERM, 2]),
            (None, false) => {}
        }
        if let Some(ws) = self.wscale {
            put(&[kind::NOP, kind::WSCALE, 3, ws]);
        }
        n
    }
}

/// A TCP segment to write: its endpoints (of one family) and header fields.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Source address and port.
    pub src: (IpAddr, u16),
    /// Destination address and port.
    pub dst: (IpAddr, u16),
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window (as written: the receiver applies its scale).
    pub window: u16,
    /// Options, a multiple of 4 bytes, at most [`MAX_OPTIONS`].
    pub options: &'a [u8],
    /// Data.
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// Bytes from the IP header on.
    pub fn ip_len(&self) -> usize {
        let ip = match self.src.0 {
            IpAddr::V4(_) => ipv4::HEADER_LEN,
            IpAddr::V6(_) => ipv6::HEADER_LEN,
        };
        ip + tcp::HEADER_LEN + self.options.len() + self.payload.len()
    }
}

/// Why a segment was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentError {
    /// Endpoints of two families, or options not a multiple of 4 or too long.
    Malformed,
    /// The buffer is shorter than the segment.
    TooShort,
}

/// Writes `seg` at `frame[l3..]`: an IP header without options or extension
/// headers (TTL 64, DF), the TCP header, options and payload, both checksums
/// complete, and the EtherType before `l3`. Returns where the segment ends.
pub fn emit(frame: &mut [u8], l3: usize, seg: &Segment) -> Result<usize, SegmentError> {
    if seg.options.len() % 4 != 0 || seg.options.len() > MAX_OPTIONS || l3 < 2 {
        return Err(SegmentError::Malformed);
    }
    let end = l3 + seg.ip_len();
    let frame = frame.get_mut(..end).ok_or(SegmentError::TooShort)?;
    let tcp_len = tcp::HEADER_LEN + seg.options.len() + seg.payload.len();
    let (addrs, ip_len, ethertype) = match (seg.src.0, seg.dst.0) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                protocol: IpProtocol::TCP,
                payload_len: tcp_len,
                ttl: 64,
                tos: 0,
                ident: 0,
                dont_fragment: true,
            }
            .emit(&mut frame[l3..])
            .map_err(|_| SegmentError::TooShort)?;
            (IpPair::V4 { src, dst }, ipv4::HEADER_LEN, EtherType::IPV4)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            Ipv6Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpProtocol::TCP,
                payload_len: tcp_len,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut frame[l3..])
            .map_err(|_| SegmentError::TooShort)?;
            (IpPair::V6 { src, dst }, ipv6::HEADER_LEN, EtherType::IPV6)
        }
        _ => return Err(SegmentError::Malformed),
    };
    frame[l3 - 2..l3].copy_from_slice(&ethertype.0.to_be_bytes());
    let l4 = l3 + ip_len;
    let header_len = tcp::HEADER_LEN + seg.options.len();
    let bytes = &mut frame[l4..end];
    bytes[header_len..].copy_from_slice(seg.payload);
    bytes[tcp::HEADER_LEN..header_len].copy_from_slice(seg.options);
    let mut t = TcpPacket::new_unchecked(bytes);
    t.set_src_port(seg.src.1);
    t.set_dst_port(seg.dst.1);
    t.set_seq_number(seg.seq);
    t.set_ack_number(seg.ack);
    // The data offset byte's low nibble is reserved: start from zero.
    t.set_header_len(0);
    t.set_header_len(header_len);
    t.set_flags(seg.flags);
    t.set_window(seg.window);
    t.set_urgent(0);
    t.fill_checksum(&addrs);
    Ok(end)
}

/// The checksum of a TCP segment as written (for tests and checks).
pub fn tcp_checksum_verifies(addrs: &IpPair, segment: &[u8]) -> bool {
    (checksum::pseudo_header(addrs, IpProtocol::TCP, segment.len() as u32) + Sum::of(segment))
        .verifies()
}

/// The room an Ethernet frame needs for `seg`.
pub fn frame_len(seg: &Segment) -> usize {
    ethernet::HEADER_LEN + seg.ip_len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse::{L3Info, L4Header};
    use crate::packet::parse_frame;

    #[test]
    fn options_round_trip_in_linux_layout() {
        let o = SynOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack: true,
            ts: Some((0x0006_4c4f, 0)),
        };
        let mut buf = [0u8; MAX_OPTIONS];
        let n = o.write(&mut buf);
        // The layout of a Linux SYN (packet::tcp's captured one).
        assert_eq!(
            &buf[..n],
            &[2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 6, 0x4c, 0x4f, 0, 0, 0, 0, 1, 3, 3, 7]
        );
        assert_eq!(SynOptions::parse(&buf[..n]), o);
        for o in [
            SynOptions::default(),
            SynOptions {
                mss: Some(536),
                ..SynOptions::default()
            },
            SynOptions {
                sack: true,
                wscale: Some(0),
                ..SynOptions::default()
            },
            SynOptions {
                ts: Some((1, 2)),
                ..SynOptions::default()
            },
        ] {
            let n = o.write(&mut buf);
            assert_eq!(n % 4, 0);
            assert_eq!(SynOptions::parse(&buf[..n]), o);
        }
    }

    #[test]
    fn malformed_options_stop_the_walk_without_panicking() {
        assert_eq!(SynOptions::parse(&[2, 4, 5]), SynOptions::default());
        assert_eq!(SynOptions::parse(&[8, 1, 0, 0]), SynOptions::default());
        assert_eq!(
            SynOptions::parse(&[2, 4, 5, 0xb4, 3, 0]).mss,
            Some(1460),
            "what came before a bad option stands"
        );
        assert_eq!(SynOptions::parse(&[3, 3, 200]).wscale, Some(14));
        assert_eq!(
            timestamps(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
            Some((1, 2))
        );
        assert_eq!(timestamps(&[0, 8, 10]), None);
        assert!(!walk_options(&[5, 40], |_, _, _| {}));
        // Every short input, none panics.
        for len in 0..12 {
            for b in 0..=255u8 {
                let v = vec![b; len];
                let _ = SynOptions::parse(&v);
                let _ = timestamps(&v);
            }
        }
    }

    #[test]
    fn emitted_segments_parse_with_valid_checksums() {
        for (src, dst) in [
            ("198.18.0.100:80", "198.18.0.10:40000"),
            ("[2001:2::100]:80", "[2001:2::10]:40000"),
        ] {
            let src: std::net::SocketAddr = src.parse().unwrap();
            let dst: std::net::SocketAddr = dst.parse().unwrap();
            let mut opts = [0u8; MAX_OPTIONS];
            let n = SynOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack: true,
                ts: Some((5, 6)),
            }
            .write(&mut opts);
            let seg = Segment {
                src: (src.ip(), src.port()),
                dst: (dst.ip(), dst.port()),
                seq: 0xdead_beef,
                ack: 1234,
                flags: TcpFlags::SYN | TcpFlags::ACK,
                window: 65535,
                options: &opts[..n],
                payload: b"hi",
            };
            let mut frame = vec![0xffu8; frame_len(&seg) + 7];
            let end = emit(&mut frame, 14, &seg).unwrap();
            assert_eq!(end, frame_len(&seg));
            let info = parse_frame(&frame[..end], false).unwrap();
            let L3Info::Ip(ip) = info.l3 else { panic!() };
            assert_eq!(ip.addrs.src(), src.ip());
            assert_eq!(ip.ttl, 64);
            let l4 = ip.l4.unwrap();
            let L4Header::Tcp { flags, .. } = l4.header else {
                panic!()
            };
            assert_eq!(flags, TcpFlags::SYN | TcpFlags::ACK);
            let t = TcpPacket::new_checked(&frame[usize::from(l4.offset)..end]).unwrap();
            assert_eq!((t.seq_number(), t.ack_number()), (0xdead_beef, 1234));
            assert_eq!(t.payload(), b"hi");
            assert_eq!(SynOptions::parse(t.options()).ts, Some((5, 6)));
            assert!(tcp_checksum_verifies(
                &ip.addrs,
                &frame[usize::from(l4.offset)..end]
            ));
            assert_eq!(
                emit(&mut frame[..end - 1], 14, &seg),
                Err(SegmentError::TooShort)
            );
        }
        let bad = Segment {
            src: ("198.18.0.1".parse().unwrap(), 1),
            dst: ("2001:2::1".parse().unwrap(), 2),
            seq: 0,
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
            options: &[],
            payload: &[],
        };
        assert_eq!(emit(&mut [0; 100], 14, &bad), Err(SegmentError::Malformed));
    }
}
