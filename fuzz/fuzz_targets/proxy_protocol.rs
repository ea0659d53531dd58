//! The Proxy Protocol: the header ferrovs writes ahead of a client's first byte,
//! and the sequence-number translation that the inserted bytes make necessary.
//!
//! The first input byte picks a mode; the rest is its input:
//! - Even, header: two endpoints of the same or different families, and a
//!   version. `proxy_protocol::write` refuses mixed families and otherwise writes
//!   a header that a parser written here from HAProxy's specification reads
//!   back to the same addresses and ports: version 1 a text line of at most 107
//!   bytes ending in CRLF, version 2 the signature, `PROXY` over TCP4 or TCP6
//!   and a length that covers exactly the addresses and ports.
//! - Odd, translation: a `SeqAdj` (every field from the input), a direction and a
//!   TCP segment, to `forward::seq::adjust`. No panic; the segment keeps its
//!   length, ports, data offset, flags and payload; a checksum that verified
//!   verifies after (the incremental update covers every rewrite: numbers, SACK
//!   edges, timestamps, window); a segment with nothing to translate is left
//!   alone; and a client's data sequence number past the insertion point moves
//!   by the header's length and comes back through `server_ack_to_client`.

#![no_main]

use ferrovs_core::conn::xlate::{adj_flag, SAME_WSCALE};
use ferrovs_core::conn::{Dir, SeqAdj};
use ferrovs_core::forward::{proxy_protocol, seq};
use ferrovs_core::packet::{IpPair, TcpPacket};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes of input ahead of the segment in the translation mode.
const ADJ_BYTES: usize = 17;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        header(mode, rest);
    } else {
        translation(mode, rest);
    }
});

/// `n` bytes from the front of `input` (zeros past its end).
fn take<const N: usize>(input: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let k = N.min(input.len());
    out[..k].copy_from_slice(&input[..k]);
    *input = &input[k..];
    out
}

fn endpoint(v6: bool, input: &mut &[u8]) -> (IpAddr, u16) {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(take::<16>(input)))
    } else {
        IpAddr::V4(Ipv4Addr::from(take::<4>(input)))
    };
    (ip, u16::from_be_bytes(take::<2>(input)))
}

fn header(mode: u8, mut input: &[u8]) {
    let v2 = mode & 2 != 0;
    let client = endpoint(mode & 4 != 0, &mut input);
    let vip = endpoint(mode & 8 != 0, &mut input);
    // Whatever the buffer held before must not matter.
    let mut out = [input.first().copied().unwrap_or(0xa5); proxy_protocol::MAX_LEN];
    let written = proxy_protocol::write(v2, client, vip, &mut out);
    if client.0.is_ipv4() != vip.0.is_ipv4() {
        assert_eq!(written, None, "a header for two families");
        return;
    }
    let n = written.expect("a header for one family");
    assert!(n <= proxy_protocol::MAX_LEN);
    let parsed = if v2 {
        parse_v2(&out[..n])
    } else {
        parse_v1(&out[..n])
    };
    assert_eq!(parsed, (client, vip), "header {:?}", &out[..n]);
}

/// A version 1 header (the specification's section 2.1), strictly.
fn parse_v1(h: &[u8]) -> ((IpAddr, u16), (IpAddr, u16)) {
    assert!(h.len() <= 107, "a version 1 header of {} bytes", h.len());
    let line = std::str::from_utf8(h).expect("version 1 is ASCII");
    assert!(line.is_ascii());
    let line = line.strip_suffix("\r\n").expect("version 1 ends in CRLF");
    assert!(!line.contains(['\r', '\n']));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 6, "{line:?}");
    assert_eq!(fields[0], "PROXY");
    let (src, dst): (IpAddr, IpAddr) = match fields[1] {
        "TCP4" => (
            IpAddr::V4(fields[2].parse().expect("an IPv4 source")),
            IpAddr::V4(fields[3].parse().expect("an IPv4 destination")),
        ),
        "TCP6" => (
            IpAddr::V6(fields[2].parse().expect("an IPv6 source")),
            IpAddr::V6(fields[3].parse().expect("an IPv6 destination")),
        ),
        other => panic!("protocol {other:?}"),
    };
    let port = |s: &str| -> u16 {
        // Decimal without leading zeros (the specification), 0 to 65535.
        assert!(s == "0" || !s.starts_with('0'), "port {s:?}");
        s.parse().expect("a port")
    };
    ((src, port(fields[4])), (dst, port(fields[5])))
}

/// A version 2 header (section 2.2).
fn parse_v2(h: &[u8]) -> ((IpAddr, u16), (IpAddr, u16)) {
    assert!(h.len() >= 16);
    assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n", "signature");
    assert_eq!(h[12], 0x21, "version 2, command PROXY");
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    assert_eq!(16 + len, h.len(), "the length covers what follows, exactly");
    let a = &h[16..];
    match h[13] {
        0x11 => {
            assert_eq!(len, 12);
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&a[at..at + 4]).unwrap()))
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            ((ip(0), port(8)), (ip(4), port(10)))
        }
        0x21 => {
            assert_eq!(len, 36);
            let ip = |at: usize| {
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&a[at..at + 16]).unwrap(),
                ))
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            ((ip(0), port(32)), (ip(16), port(34)))
        }
        other => panic!("family and protocol {other:#04x}"),
    }
}

fn translation(mode: u8, mut input: &[u8]) {
    let b = take::<ADJ_BYTES>(&mut input);
    let adj = SeqAdj {
        out_delta: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        ts_delta: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        first_seq: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        in_delta: b[12],
        wscale: if b[13] & 0x80 != 0 {
            SAME_WSCALE
        } else {
            b[13]
        },
        flags: b[14],
        mss_index: b[15],
    };
    let dir = if mode & 2 != 0 {
        Dir::Outbound
    } else {
        Dir::Inbound
    };
    let addrs = if mode & 4 != 0 {
        IpPair::V6 {
            src: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10),
            dst: Ipv6Addr::new(0x2001, 2, 0, 0x19, 0, 0, 0, 0x10),
        }
    } else {
        IpPair::V4 {
            src: Ipv4Addr::new(198, 18, 0, 10),
            dst: Ipv4Addr::new(198, 19, 0, 10),
        }
    };
    let mut seg = input.to_vec();
    // Half the segments get a valid checksum first (the fuzzer would hardly
    // find one), so that keeping it valid is checked.
    if b[16] & 1 != 0 {
        if let Ok(mut t) = TcpPacket::new_checked(&mut seg[..]) {
            t.fill_checksum(&addrs);
        }
    }
    let before = seg.clone();
    let verified = TcpPacket::new_checked(&before[..])
        .ok()
        .map(|t| t.verify_checksum(&addrs));
    seq::adjust(&mut seg, dir, &adj);
    assert_eq!(seg.len(), before.len());
    if seg.len() < 20 {
        assert_eq!(seg, before, "a segment too short for a header was changed");
        return;
    }
    let header_len = usize::from(before[12] >> 4) * 4;
    assert_eq!(seg[..4], before[..4], "ports changed");
    assert_eq!(seg[12..14], before[12..14], "data offset or flags changed");
    assert_eq!(seg[18..20], before[18..20], "urgent pointer changed");
    if header_len < 20 || header_len > seg.len() {
        assert_eq!(seg, before, "a segment with a bad data offset was changed");
        return;
    }
    assert_eq!(seg[header_len..], before[header_len..], "payload changed");
    if let Some(ok) = verified {
        let now = TcpPacket::new_checked(&seg[..])
            .expect("still a TCP segment")
            .verify_checksum(&addrs);
        // A checksum that did not verify may come to verify by chance only
        // when it was off by one's complement zero (0x0000 against 0xffff).
        if ok {
            assert!(now, "adjust broke the checksum");
        }
    }
    let identity = adj.out_delta == 0
        && adj.in_delta == 0
        && adj.wscale == SAME_WSCALE
        && (adj.ts_delta == 0 || !adj.has(adj_flag::TIMESTAMPS));
    if identity {
        assert_eq!(seg, before, "nothing to translate, yet the segment changed");
    }
    // The client's data: past the insertion point it moves by the header's
    // length, and the server's acknowledgement of it maps back.
    let seq0 = u32::from_be_bytes(before[4..8].try_into().unwrap());
    let seq1 = u32::from_be_bytes(seg[4..8].try_into().unwrap());
    let has_data = seg.len() > header_len;
    if dir == Dir::Inbound && has_data {
        let d = seq0.wrapping_sub(adj.first_seq) as i32;
        let expected = if adj.in_delta != 0 && d >= 0 {
            seq0.wrapping_add(u32::from(adj.in_delta))
        } else {
            seq0
        };
        assert_eq!(seq1, expected, "the client's sequence number");
        // The server acknowledges up to the end of this segment.
        let len = (seg.len() - header_len) as u32;
        let end = seq0.wrapping_add(len);
        if (0..1 << 30).contains(&d) {
            assert_eq!(
                adj.server_ack_to_client(seq1.wrapping_add(len)),
                end,
                "an acknowledgement of translated data maps back"
            );
        }
    }
}
