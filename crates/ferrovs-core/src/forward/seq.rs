//! Sequence-number translation of TCP segments in place ([`SeqAdj`] says what
//! changes): sequence and acknowledgement numbers, SACK edges, timestamps and the
//! window, with one incremental checksum update.

use crate::conn::xlate::{adj_flag, SAME_WSCALE};
use crate::conn::{Dir, SeqAdj};
use crate::forward::segment::kind;
use crate::packet::checksum::Delta;
use crate::packet::tcp::{self, TcpFlags};

/// Offsets in the TCP header.
const FLAGS: usize = 13;
const DATA_OFFSET: usize = 12;

/// Rewrites `seg` (a TCP header and what follows it, already translated in
/// addresses and ports) travelling `dir` as `adj` says, and folds the change into
/// its checksum. A segment too short for its header is left alone (the parser
/// refused such segments before).
#[inline]
pub fn adjust(seg: &mut [u8], dir: Dir, adj: &SeqAdj) {
    let Some(header) = seg.first_chunk::<{ tcp::HEADER_LEN }>() else {
        return;
    };
    let flags = TcpFlags::from_bits(header[FLAGS]);
    let header_len = usize::from(header[DATA_OFFSET] >> 4) * 4;
    if header_len < tcp::HEADER_LEN || header_len > seg.len() {
        return;
    }
    let mut delta = Delta::NONE;
    let seq = read_u32(seg, 4);
    let ack = read_u32(seg, 8);
    let occupies = seg.len() > header_len || flags.intersects(TcpFlags::SYN | TcpFlags::FIN);
    let has_ack = flags.contains(TcpFlags::ACK);
    let (new_seq, new_ack) = match dir {
        Dir::Inbound => (
            adj.client_seq_to_server(seq, occupies),
            if has_ack {
                ack.wrapping_sub(adj.out_delta)
            } else {
                ack
            },
        ),
        Dir::Outbound => (
            seq.wrapping_add(adj.out_delta),
            if has_ack {
                adj.server_ack_to_client(ack)
            } else {
                ack
            },
        ),
    };
    if new_seq != seq {
        write_u32(seg, 4, new_seq);
        delta = delta.u32(seq, new_seq);
    }
    if new_ack != ack {
        write_u32(seg, 8, new_ack);
        delta = delta.u32(ack, new_ack);
    }
    // The window of the server's segments, from its scale to the client's (a
    // SYN's window is never scaled).
    if dir == Dir::Outbound && adj.wscale != SAME_WSCALE && !flags.contains(TcpFlags::SYN) {
        let (server, client) = (u32::from(adj.wscale >> 4), u32::from(adj.wscale & 0xf));
        let w = u32::from(u16::from_be_bytes([seg[14], seg[15]]));
        let bytes = u64::from(w) << server;
        let scaled = (bytes >> client).min(0xffff) as u16;
        if scaled as u32 != w {
            seg[14..16].copy_from_slice(&scaled.to_be_bytes());
            delta = delta.u16(w as u16, scaled);
        }
    }
    if header_len > tcp::HEADER_LEN {
        adjust_options(seg, header_len, dir, adj, &mut delta);
    }
    let old = u16::from_be_bytes([seg[16], seg[17]]);
    let new = delta.apply(old);
    seg[16..18].copy_from_slice(&new.to_be_bytes());
}

/// SACK edges and timestamps in the option area `seg[20..header_len]`.
fn adjust_options(seg: &mut [u8], header_len: usize, dir: Dir, adj: &SeqAdj, delta: &mut Delta) {
    let ts = adj.has(adj_flag::TIMESTAMPS) && adj.ts_delta != 0;
    let mut at = tcp::HEADER_LEN;
    while at < header_len {
        match seg[at] {
            kind::END => return,
            kind::NOP => at += 1,
            k => {
                let Some(&len) = seg.get(at + 1) else { return };
                let len = usize::from(len);
                if len < 2 || at + len > header_len {
                    return;
                }
                match k {
                    kind::SACK if len >= 10 && (len - 2) % 8 == 0 => {
                        let mut edge = at + 2;
                        while edge < at + len {
                            let v = read_u32(seg, edge);
                            let n = match dir {
                                // The client acknowledges the server's data.
                                Dir::Inbound => v.wrapping_sub(adj.out_delta),
                                // The server acknowledges the client's.
                                Dir::Outbound => adj.server_ack_to_client(v),
                            };
                            rewrite_u32(seg, edge, v, n, delta);
                            edge += 4;
                        }
                    }
                    kind::TIMESTAMP if len == 10 && ts => match dir {
                        Dir::Outbound => {
                            let v = read_u32(seg, at + 2);
                            rewrite_u32(seg, at + 2, v, v.wrapping_add(adj.ts_delta), delta);
                        }
                        Dir::Inbound => {
                            let v = read_u32(seg, at + 6);
                            rewrite_u32(seg, at + 6, v, v.wrapping_sub(adj.ts_delta), delta);
                        }
                    },
                    _ => {}
                }
                at += len;
            }
        }
    }
}

#[inline(always)]
fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn write_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Writes `new` over `old` at `at` and records the change. An option value need
/// not be 16-bit aligned; at an odd offset it spans three checksum words, whose
/// old and new values are recorded instead.
fn rewrite_u32(b: &mut [u8], at: usize, old: u32, new: u32, delta: &mut Delta) {
    if old == new {
        return;
    }
    if at % 2 == 0 {
        write_u32(b, at, new);
        *delta = delta.u32(old, new);
        return;
    }
    let words = |b: &[u8]| {
        [
            u16::from_be_bytes([b[at - 1], b[at]]),
            u16::from_be_bytes([b[at + 1], b[at + 2]]),
            u16::from_be_bytes([b[at + 3], b[at + 4]]),
        ]
    };
    // The option area lies inside the header, so the byte after the value exists.
    if at + 4 >= b.len() {
        return;
    }
    let before = words(b);
    write_u32(b, at, new);
    let after = words(b);
    for (o, n) in before.into_iter().zip(after) {
        *delta = delta.u16(o, n);
    }
}

/// How the sequence numbers of a TCP header quoted by an ICMP error map back:
/// the quote is of a segment ferrovs translated on its way in `dir`, and the
/// error travels the other way.
#[derive(Clone, Copy, Debug)]
pub struct QuotedSeq {
    adj: SeqAdj,
    /// The direction the quoted segment travelled (and was translated in).
    dir: Dir,
}

impl QuotedSeq {
    /// For a quote of a segment translated travelling `dir`.
    pub fn new(adj: SeqAdj, quoted_dir: Dir) -> QuotedSeq {
        QuotedSeq {
            adj,
            dir: quoted_dir,
        }
    }

    /// The quoted segment's sequence number as its sender numbered it.
    pub fn seq(&self, seq: u32) -> u32 {
        match self.dir {
            // Sent by the client: undo the insert's shift.
            Dir::Inbound => self.adj.server_ack_to_client(seq),
            Dir::Outbound => seq.wrapping_sub(self.adj.out_delta),
        }
    }

    /// The quoted segment's acknowledgement number as its sender wrote it.
    pub fn ack(&self, ack: u32) -> u32 {
        match self.dir {
            Dir::Inbound => ack.wrapping_add(self.adj.out_delta),
            Dir::Outbound => self.adj.client_seq_to_server(ack, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::xlate::adj_flag;
    use crate::forward::segment::{self, Segment, SynOptions, MAX_OPTIONS};
    use crate::packet::IpPair;
    use std::net::Ipv4Addr;

    const PAIR: IpPair = IpPair::V4 {
        src: Ipv4Addr::new(198, 18, 0, 10),
        dst: Ipv4Addr::new(198, 19, 0, 10),
    };

    /// A TCP segment (header onward) with `options` and `payload`, checksum valid.
    fn seg(seq: u32, ack: u32, flags: TcpFlags, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let s = Segment {
            src: (PAIR.src(), 40000),
            dst: (PAIR.dst(), 8080),
            seq,
            ack,
            flags,
            window: 1000,
            options,
            payload,
        };
        let mut f = vec![0u8; segment::frame_len(&s)];
        segment::emit(&mut f, 14, &s).unwrap();
        f[34..].to_vec()
    }

    fn ts_opt(val: u32, ecr: u32) -> Vec<u8> {
        let mut o = [0u8; MAX_OPTIONS];
        let n = SynOptions {
            ts: Some((val, ecr)),
            ..SynOptions::default()
        }
        .write(&mut o);
        o[..n].to_vec()
    }

    fn adj() -> SeqAdj {
        SeqAdj {
            out_delta: 0x1000_0000,
            ts_delta: 500,
            first_seq: 1001,
            in_delta: 40,
            wscale: 7 << 4 | 5,
            flags: adj_flag::TIMESTAMPS,
            mss_index: 0,
        }
    }

    #[test]
    fn both_directions_translate_and_keep_the_checksum() {
        let a = adj();
        let ack = TcpFlags::ACK;
        // Client to server: seq shifted past the insert, ack and TSecr back.
        let mut s = seg(1001, 0x1000_0000 + 7, ack, &ts_opt(99, 600), b"GET /");
        adjust(&mut s, Dir::Inbound, &a);
        assert!(segment::tcp_checksum_verifies(&PAIR, &s));
        let t = crate::packet::TcpPacket::new_checked(&s[..]).unwrap();
        assert_eq!((t.seq_number(), t.ack_number()), (1041, 7));
        assert_eq!(segment::timestamps(t.options()), Some((99, 100)));
        // Server to client: seq forward, ack back, TSval forward, window rescaled.
        let mut s = seg(7, 1046, ack, &ts_opt(100, 99), b"HTTP/1.1");
        adjust(&mut s, Dir::Outbound, &a);
        assert!(segment::tcp_checksum_verifies(&PAIR, &s));
        let t = crate::packet::TcpPacket::new_checked(&s[..]).unwrap();
        assert_eq!((t.seq_number(), t.ack_number()), (0x1000_0007, 1006));
        assert_eq!(segment::timestamps(t.options()), Some((600, 99)));
        assert_eq!(t.window(), 4000, "1000 << 7 >> 5");
    }

    #[test]
    fn sack_edges_at_any_alignment_keep_the_checksum() {
        let a = adj();
        for pad in 0..4 {
            // NOPs to put the SACK block at every offset; two blocks.
            let mut o = vec![kind::NOP; pad];
            o.extend([kind::SACK, 18]);
            for v in [0x1000_0100u32, 0x1000_0200, 0x1000_0300, 0x1000_0400] {
                o.extend(v.to_be_bytes());
            }
            while o.len() % 4 != 0 {
                o.push(kind::NOP);
            }
            let mut s = seg(1001, 0x1000_0000, TcpFlags::ACK, &o, b"");
            adjust(&mut s, Dir::Inbound, &a);
            assert!(segment::tcp_checksum_verifies(&PAIR, &s), "pad {pad}");
            let edges: Vec<u32> = (0..4).map(|i| read_u32(&s, 20 + pad + 2 + 4 * i)).collect();
            assert_eq!(edges, [0x100, 0x200, 0x300, 0x400], "pad {pad}");
            // And back out: the server's SACK edges past the insert.
            let mut o = vec![kind::NOP; pad];
            o.extend([kind::SACK, 10]);
            o.extend(2041u32.to_be_bytes());
            o.extend(3041u32.to_be_bytes());
            while o.len() % 4 != 0 {
                o.push(kind::NOP);
            }
            let mut s = seg(5, 1041, TcpFlags::ACK, &o, b"");
            adjust(&mut s, Dir::Outbound, &a);
            assert!(segment::tcp_checksum_verifies(&PAIR, &s), "pad {pad}");
            assert_eq!(read_u32(&s, 20 + pad + 2), 2001);
            assert_eq!(read_u32(&s, 20 + pad + 6), 3001);
        }
    }

    #[test]
    fn an_odd_timestamp_offset_keeps_the_checksum() {
        let a = adj();
        let mut o = vec![kind::NOP];
        o.extend([kind::TIMESTAMP, 10]);
        o.extend(5u32.to_be_bytes());
        o.extend(700u32.to_be_bytes());
        o.push(kind::END);
        let mut s = seg(1001, 0x1000_0000, TcpFlags::ACK, &o, b"x");
        adjust(&mut s, Dir::Inbound, &a);
        assert!(segment::tcp_checksum_verifies(&PAIR, &s));
        assert_eq!(read_u32(&s, 27), 200);
    }

    #[test]
    fn nothing_changes_for_an_identity_translation_or_a_bad_header() {
        let a = SeqAdj {
            flags: adj_flag::TIMESTAMPS,
            ..SeqAdj::default()
        };
        let orig = seg(1001, 5, TcpFlags::ACK, &ts_opt(1, 2), b"abc");
        let mut s = orig.clone();
        adjust(&mut s, Dir::Inbound, &a);
        adjust(&mut s, Dir::Outbound, &a);
        assert_eq!(s, orig);
        // A data offset past the segment, or a truncated option: no panic.
        let mut bad = orig.clone();
        bad[12] = 0xf0;
        bad.truncate(30);
        adjust(&mut bad, Dir::Inbound, &adj());
        let mut odd = seg(1001, 5, TcpFlags::ACK, &[kind::SACK, 40, 0, 0], b"");
        adjust(&mut odd, Dir::Outbound, &adj());
        for len in 0..orig.len() {
            let mut cut = orig[..len].to_vec();
            adjust(&mut cut, Dir::Outbound, &adj());
        }
    }

    #[test]
    fn quoted_numbers_map_back_to_their_sender() {
        let a = adj();
        // A client segment translated inbound, quoted by the server side.
        let q = QuotedSeq::new(a, Dir::Inbound);
        assert_eq!(q.seq(a.client_seq_to_server(1500, true)), 1500);
        assert_eq!(q.ack(7u32.wrapping_sub(a.out_delta)), 7);
        // A server segment translated outbound, quoted by the client side.
        let q = QuotedSeq::new(a, Dir::Outbound);
        assert_eq!(q.seq(9u32.wrapping_add(a.out_delta)), 9);
        assert_eq!(q.ack(a.server_ack_to_client(1541)), 1541);
    }
}
