//! Fragmented TCP/UDP datagrams through the pipeline (`pipeline/frag.rs`): both
//! directions, in and out of order, duplicates, malformed fragments, the bounds,
//! IPv6, the modes, two workers.

use super::*;
use crate::packet::{IpPair, IpProtocol};
use crate::pipeline::frag::{ENTRIES, HOLD_PER_DATAGRAM, HOLD_PER_WORKER, TIMEOUT_MS};
use std::net::SocketAddr;

const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);

fn config_with(workers: usize, mode: &str, extra: &str) -> String {
    let local = if mode == "fullnat" {
        "    local_addresses: [198.19.0.2]\n"
    } else {
        ""
    };
    let local6 = if mode == "fullnat" {
        "    local_addresses: [\"2001:2:0:19::2\"]\n"
    } else {
        ""
    };
    let (port, web) = if mode == "dr" || mode == "tunnel" {
        (53, 80)
    } else {
        (5353, 8080)
    };
    fixture::appliance_with(
        workers,
        true,
        &format!(
            r#"connections: {{ max: 10000 }}
neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.18.0.10", mac: "02:00:00:00:00:10" }}
  - {{ ip: "2001:2:0:19::10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "2001:2::10", mac: "02:00:00:00:00:10" }}
services:
  - name: dns
    vip: 198.18.0.100
    port: 53
    protocol: udp
    mode: {mode}
{local}    real_servers:
      - {{ address: 198.19.0.10, port: {port} }}
  - name: dns6
    vip: "2001:2::100"
    port: 53
    protocol: udp
    mode: {mode}
{local6}    real_servers:
      - {{ address: "2001:2:0:19::10", port: {port} }}
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: {mode}
{local}    real_servers:
      - {{ address: 198.19.0.10, port: {web} }}
{extra}"#
        ),
    )
}

fn nat() -> Harness {
    harness_with(&config_with(1, "nat", ""))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const CLIENT: &str = "198.18.0.10:40000";
const VIP: &str = "198.18.0.100:53";
const RS: &str = "198.19.0.10:5353";
const CLIENT6: &str = "[2001:2::10]:40000";
const VIP6: &str = "[2001:2::100]:53";
const RS6: &str = "[2001:2:0:19::10]:5353";

fn client_l2() -> L2 {
    L2 {
        src: CLIENT_MAC,
        dst: OUR_MAC,
    }
}

fn rs_l2() -> L2 {
    L2 {
        src: RS_MAC,
        dst: LAN_MAC,
    }
}

/// A payload of `n` bytes that is not the same everywhere.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The IP datagram of `frame` (untagged, no IPv4 options or IPv6 extension
/// headers) cut into fragments of `chunk` data bytes (a multiple of 8), with
/// identification `id`.
fn fragments(frame: &[u8], id: u32, chunk: usize) -> Vec<Vec<u8>> {
    let v6 = frame[12..14] == [0x86, 0xdd];
    let hl = if v6 { 40 } else { 20 };
    let len = if v6 {
        usize::from(u16::from_be_bytes([frame[18], frame[19]]))
    } else {
        usize::from(u16::from_be_bytes([frame[16], frame[17]])) - 20
    };
    let data = &frame[14 + hl..14 + hl + len];
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let more = end < data.len();
        let mut f = frame[..14 + hl].to_vec();
        if v6 {
            let next = f[14 + 6];
            f[14 + 6] = 44;
            f[18..20].copy_from_slice(&((8 + end - off) as u16).to_be_bytes());
            f.extend([next, 0]);
            f.extend((off as u16 | u16::from(more)).to_be_bytes());
            f.extend(id.to_be_bytes());
        } else {
            f[16..18].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
            f[18..20].copy_from_slice(&(id as u16).to_be_bytes());
            let flags = (off / 8) as u16 | if more { 0x2000 } else { 0 };
            f[20..22].copy_from_slice(&flags.to_be_bytes());
        }
        f.extend_from_slice(&data[off..end]);
        if !v6 {
            Ipv4Packet::new_checked(&mut f[14..])
                .unwrap()
                .fill_checksum();
        }
        out.push(craft::pad(f));
        off = end;
    }
    out
}

/// One fragment as it left: its addresses, protocol, offset, more flag, data.
fn fragment_fields(frame: &[u8]) -> (IpPair, IpProtocol, usize, bool, Vec<u8>) {
    let info = parse_frame(frame, false).expect("valid frame");
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    let l3 = &frame[14..];
    if ip.addrs.src().is_ipv4() {
        let h = Ipv4Packet::new_checked(l3).unwrap();
        assert!(h.verify_checksum(), "IPv4 header checksum");
        let hl = h.header_len();
        let data = l3[hl..usize::from(h.total_len())].to_vec();
        let (off, more) = (usize::from(h.frag_offset()), h.more_fragments());
        (ip.addrs, h.protocol(), off, more, data)
    } else {
        assert_eq!(l3[6], 44, "a fragment header");
        let plen = usize::from(u16::from_be_bytes([l3[4], l3[5]]));
        let field = u16::from_be_bytes([l3[42], l3[43]]);
        let data = l3[48..40 + plen].to_vec();
        let off = usize::from(field & 0xfff8);
        (ip.addrs, IpProtocol(l3[40]), off, field & 1 == 1, data)
    }
}

/// The datagram `frames` (fragments in any order, duplicates allowed) make:
/// addresses, protocol and TCP/UDP segment, its checksum verified.
fn reassemble(frames: &[VecBuf]) -> (IpPair, IpProtocol, Vec<u8>) {
    let mut whole = vec![None; 65536];
    let mut total = None;
    let mut first = None;
    for f in frames {
        let (addrs, proto, off, more, data) = fragment_fields(f.data());
        match first {
            None => first = Some((addrs, proto)),
            Some(x) => assert_eq!(x, (addrs, proto), "fragments of one datagram"),
        }
        for (i, b) in data.iter().enumerate() {
            whole[off + i] = Some(*b);
        }
        if !more {
            total = Some(off + data.len());
        }
    }
    let total = total.expect("the last fragment");
    let seg: Vec<u8> = whole[..total]
        .iter()
        .map(|b| b.expect("every byte"))
        .collect();
    let (addrs, proto) = first.unwrap();
    assert!(
        craft::l4_checksum_ok(&addrs, proto, &seg),
        "TCP/UDP checksum of the datagram"
    );
    (addrs, proto, seg)
}

fn ports(seg: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([seg[0], seg[1]]),
        u16::from_be_bytes([seg[2], seg[3]]),
    )
}

fn rx_all(h: &mut Harness, frames: &[Vec<u8>], port: usize) {
    for f in frames {
        h.rx(f.clone(), port);
    }
}

#[test]
fn a_fragmented_query_and_answer_pass_nat_both_ways() {
    let mut h = nat();
    let query = craft::udp(client_l2(), sa(CLIENT), sa(VIP), &payload(3000));
    rx_all(&mut h, &fragments(&query, 0x1111, 1480), 0);
    let out = h.take_tx(1);
    assert_eq!(out.len(), 3);
    assert_eq!(&out[0].data()[0..6], &RS_MAC.0);
    let (addrs, proto, seg) = reassemble(&out);
    assert_eq!(proto, IpProtocol::UDP);
    assert_eq!(addrs.dst(), sa(RS).ip());
    assert_eq!(addrs.src(), sa(CLIENT).ip());
    assert_eq!(ports(&seg), (40000, 5353));
    assert_eq!(&seg[8..], &payload(3000)[..]);
    // The answer: 4000 bytes, the DNS case.
    let answer = craft::udp(rs_l2(), sa(RS), sa(CLIENT), &payload(4000));
    rx_all(&mut h, &fragments(&answer, 0x2222, 1480), 1);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 3);
    let (addrs, _, seg) = reassemble(&out);
    assert_eq!((addrs.src(), addrs.dst()), (sa(VIP).ip(), sa(CLIENT).ip()));
    assert_eq!(ports(&seg), (53, 40000));
    assert_eq!(h.stats.dropped_total(), 0);
    // Each fragment is counted on the real server, and each datagram's entry is
    // freed once it passed whole.
    let rs = h.stats.real_server(0);
    assert_eq!((rs.in_packets.get(), rs.out_packets.get()), (3, 3));
    assert_eq!(h.p.frags.live(), 0);
    // TTL went down by one in every fragment.
    assert!(out.iter().all(|f| f.data()[14 + 8] == 63));
}

#[test]
fn fragments_before_their_first_are_held_and_follow_it_in_arrival_order() {
    let mut h = nat();
    let query = craft::udp(client_l2(), sa(CLIENT), sa(VIP), &payload(4000));
    let frags = fragments(&query, 7, 1480);
    h.rx(frags[2].clone(), 0);
    h.rx(frags[1].clone(), 0);
    assert!(h.take_tx(1).is_empty());
    assert_eq!(h.p.frags.held_count(), 2);
    h.rx(frags[0].clone(), 0);
    let out = h.take_tx(1);
    assert_eq!(out.len(), 3);
    let offsets: Vec<usize> = out.iter().map(|f| fragment_fields(f.data()).2).collect();
    assert_eq!(
        offsets,
        [0, 2960, 1480],
        "the first, then the held in arrival order"
    );
    let (addrs, _, seg) = reassemble(&out);
    assert_eq!((addrs.dst(), ports(&seg)), (sa(RS).ip(), (40000, 5353)));
    assert_eq!(h.p.frags.held_count(), 0);
    assert_eq!(h.stats.dropped_total(), 0);
}

#[test]
fn duplicate_fragments_are_forwarded_as_they_come() {
    let mut h = nat();
    let query = craft::udp(client_l2(), sa(CLIENT), sa(VIP), &payload(3000));
    let f = fragments(&query, 9, 1480);
    // A duplicate held before the first, a duplicate first.
    for i in [1, 1, 0, 0, 2] {
        h.rx(f[i].clone(), 0);
    }
    let out = h.take_tx(1);
    assert_eq!(out.len(), 5);
    let (addrs, _, _) = reassemble(&out);
    assert_eq!(addrs.dst(), sa(RS).ip());
    assert_eq!(h.stats.dropped_total(), 0);
    assert_eq!(h.p.frags.live(), 0, "every byte passed: the entry is free");
    // A duplicate after that is held as if early, and dropped when its time is up.
    h.rx(f[1].clone(), 0);
    assert!(h.take_tx(1).is_empty());
    h.p.set_time(TIMEOUT_MS);
    for _ in 0..ENTRIES / 256 {
        h.p.housekeeping();
    }
    assert_eq!(h.dropped(DropReason::FragmentTimeout), 1);
}

#[test]
fn malformed_fragments_are_dropped_and_counted() {
    let mut h = nat();
    let query = craft::udp(client_l2(), sa(CLIENT), sa(VIP), &payload(3000));
    let good = fragments(&query, 5, 1480);
    let sign = |f: &mut Vec<u8>| {
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum()
    };
    // Ends beyond 65535 bytes: offset 65528, 16 bytes of data.
    let mut past = good[1].clone();
    past[20..22].copy_from_slice(&(8191u16).to_be_bytes());
    past[16..18].copy_from_slice(&36u16.to_be_bytes());
    past.truncate(14 + 36);
    sign(&mut past);
    // More to follow, but a length that is not a multiple of 8.
    let mut odd = good[1].clone();
    odd[16..18].copy_from_slice(&(20u16 + 1001).to_be_bytes());
    odd.truncate(14 + 20 + 1001);
    sign(&mut odd);
    // A TCP fragment at offset 8, over the segment's flags (RFC 1858).
    let seg = craft::tcp(
        client_l2(),
        sa(CLIENT),
        sa("198.18.0.100:80"),
        TcpFlags::ACK,
        1,
        1,
        &payload(100),
    );
    let overlap = fragments(&seg, 6, 8).remove(1);
    for f in [past, odd, overlap] {
        h.rx(f, 0);
    }
    assert_eq!(h.dropped(DropReason::FragmentMalformed), 3);
    assert!(h.take_tx(1).is_empty());
    assert_eq!(h.p.frags.held_count(), 0);
    // A first fragment too short for the UDP header.
    let mut short = good[0].clone();
    short[16..18].copy_from_slice(&24u16.to_be_bytes());
    short.truncate(14 + 24);
    sign(&mut short);
    h.rx(short, 0);
    assert_eq!(h.dropped(DropReason::TruncatedL4), 1);
}

#[test]
fn held_fragments_time_out_and_strays_are_counted() {
    let mut h = nat();
    h.p.set_time(1_000);
    let query = craft::udp(client_l2(), sa(CLIENT), sa(VIP), &payload(4000));
    let f = fragments(&query, 3, 1480);
    h.rx(f[1].clone(), 0);
    h.rx(f[2].clone(), 0);
    assert_eq!(h.p.frags.held_count(), 2);
    h.p.set_time(1_000 + TIMEOUT_MS - 1);
    for _ in 0..ENTRIES / 256 {
        h.p.housekeeping();
    }
    assert_eq!(h.p.frags.held_count(), 2, "not yet");
    h.p.set_time(1_000 + TIMEOUT_MS);
    for _ in 0..ENTRIES / 256 {
        h.p.housekeeping();
    }
    assert_eq!(h.p.frags.held_count(), 0);
    assert_eq!(h.p.frags.live(), 0);
    assert_eq!(h.dropped(DropReason::FragmentTimeout), 2);
    assert_eq!(h.p.garbage().len(), 2, "the held mbufs given back");
    // The first fragment alone now: forwarded, it opens the entry again.
    h.rx(f[0].clone(), 0);
    assert_eq!(h.take_tx(1).len(), 1);
    // A datagram whose first fragment is refused (no service on port 54): its
    // later fragments match nothing.
    let stray = craft::udp(
        client_l2(),
        sa(CLIENT),
        sa("198.18.0.100:54"),
        &payload(3000),
    );
    rx_all(&mut h, &fragments(&stray, 4, 1480), 0);
    assert_eq!(h.dropped(DropReason::NoService), 1);
    assert_eq!(h.dropped(DropReason::FragmentUnmatched), 2);
    assert!(h.take_tx(1).is_empty());
}

#[test]
fn the_hold_and_the_table_are_bounded() {
    let mut h = nat();
    let query = craft::udp(client_l2(), sa(CLIENT), sa(VIP), &payload(60000));
    let f = fragments(&query, 1, 1480);
    // One datagram holds at most HOLD_PER_DATAGRAM.
    for frag in &f[1..=usize::from(HOLD_PER_DATAGRAM) + 1] {
        h.rx(frag.clone(), 0);
    }
    assert_eq!(h.dropped(DropReason::FragmentHoldFull), 1);
    assert_eq!(h.p.frags.held_count(), usize::from(HOLD_PER_DATAGRAM));
    // A worker holds at most HOLD_PER_WORKER.
    let per = usize::from(HOLD_PER_DATAGRAM);
    let datagrams = HOLD_PER_WORKER / per + 1;
    for id in 2..=datagrams as u32 {
        for frag in fragments(&query, id, 1480)[1..=per].iter() {
            h.rx(frag.clone(), 0);
        }
    }
    assert_eq!(h.p.frags.held_count(), HOLD_PER_WORKER);
    assert_eq!(h.dropped(DropReason::FragmentHoldFull), 1 + per as u64);
    // Every held fragment follows its first.
    h.rx(f[0].clone(), 0);
    assert_eq!(h.take_tx(1).len(), 1 + per);
    // The table: first fragments of more datagrams than it has entries.
    let mut h = nat();
    let small = craft::udp(client_l2(), sa(CLIENT), sa(VIP), &payload(100));
    let n = ENTRIES + ENTRIES / 4;
    let mut sent = 0;
    for id in 0..n as u32 {
        h.rx(fragments(&small, id, 64).remove(0), 0);
        sent += h.take_tx(1).len() as u64;
    }
    let full = h.dropped(DropReason::FragmentTableFull);
    assert!(full > 0, "some probe windows filled up");
    assert_eq!(sent + full, n as u64);
    assert!(h.p.frags.live() <= ENTRIES);
}

#[test]
fn ipv6_fragments_pass_nat_both_ways_out_of_order() {
    let mut h = nat();
    let query = craft::udp(client_l2(), sa(CLIENT6), sa(VIP6), &payload(3000));
    let f = fragments(&query, 0xdead_beef, 1232);
    assert_eq!(f.len(), 3);
    for i in [2, 0, 1] {
        h.rx(f[i].clone(), 0);
    }
    let out = h.take_tx(1);
    assert_eq!(out.len(), 3);
    let (addrs, _, seg) = reassemble(&out);
    assert_eq!(addrs.dst(), sa(RS6).ip());
    assert_eq!(ports(&seg), (40000, 5353));
    assert!(out.iter().all(|f| f.data()[14 + 7] == 63), "hop limit");
    let answer = craft::udp(rs_l2(), sa(RS6), sa(CLIENT6), &payload(4000));
    rx_all(&mut h, &fragments(&answer, 0x0102_0304, 1232), 1);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 4);
    let (addrs, _, seg) = reassemble(&out);
    assert_eq!((addrs.src(), ports(&seg)), (sa(VIP6).ip(), (53, 40000)));
    assert_eq!(h.stats.dropped_total(), 0);
    assert_eq!(h.p.frags.live(), 0);
}

#[test]
fn tcp_fragments_follow_their_connection() {
    let mut h = nat();
    let vip = sa("198.18.0.100:80");
    h.rx(
        craft::tcp(client_l2(), sa(CLIENT), vip, TcpFlags::SYN, 1, 0, b""),
        0,
    );
    assert_eq!(h.take_tx(1).len(), 1);
    let rs = sa("198.19.0.10:8080");
    h.rx(
        craft::tcp(
            rs_l2(),
            rs,
            sa(CLIENT),
            TcpFlags::SYN | TcpFlags::ACK,
            9,
            2,
            b"",
        ),
        1,
    );
    assert_eq!(h.take_tx(0).len(), 1);
    let data = craft::tcp(
        client_l2(),
        sa(CLIENT),
        vip,
        TcpFlags::ACK,
        2,
        10,
        &payload(2500),
    );
    let f = fragments(&data, 77, 1480);
    h.rx(f[1].clone(), 0);
    h.rx(f[0].clone(), 0);
    let out = h.take_tx(1);
    assert_eq!(out.len(), 2);
    let (addrs, proto, seg) = reassemble(&out);
    assert_eq!(proto, IpProtocol::TCP);
    assert_eq!((addrs.dst(), ports(&seg)), (rs.ip(), (40000, 8080)));
    assert_eq!(h.stats.dropped_total(), 0);
}

#[test]
fn fullnat_dr_and_tunnel_forward_every_fragment() {
    for mode in ["fullnat", "dr", "tunnel"] {
        let mut h = harness_with(&config_with(1, mode, ""));
        for (client, vip, id) in [(CLIENT, VIP, 1), (CLIENT6, VIP6, 2)] {
            let query = craft::udp(client_l2(), sa(client), sa(vip), &payload(2000));
            let f = fragments(&query, id, 1200);
            h.rx(f[1].clone(), 0);
            h.rx(f[0].clone(), 0);
            let out = h.take_tx(1);
            assert_eq!(out.len(), 2, "{mode} {client}");
            let inner: Vec<VecBuf> = match mode {
                // The outer header taken off again.
                "tunnel" => out
                    .iter()
                    .map(|o| {
                        let d = o.data();
                        let hl = if d[12..14] == [0x86, 0xdd] { 40 } else { 20 };
                        let mut inner = d[..14].to_vec();
                        inner.extend_from_slice(&d[14 + hl..]);
                        VecBuf::from_frame(&inner)
                    })
                    .collect(),
                _ => out,
            };
            let (addrs, _, seg) = reassemble(&inner);
            match mode {
                "fullnat" => {
                    assert!(!sa(client).ip().eq(&addrs.src()), "the local address");
                    assert_eq!(ports(&seg).1, 5353);
                }
                _ => {
                    assert_eq!((addrs.src(), addrs.dst()), (sa(client).ip(), sa(vip).ip()));
                    assert_eq!(ports(&seg), (40000, 53));
                }
            }
        }
        assert_eq!(h.stats.dropped_total(), 0, "{mode}");
    }
    // FULLNAT's answer comes back to the local address, fragmented.
    let mut h = harness_with(&config_with(1, "fullnat", ""));
    let query = craft::udp(client_l2(), sa(CLIENT), sa(VIP), b"q");
    h.rx(query, 0);
    let out = h.take_tx(1);
    let ip = *parse_frame(out[0].data(), false).unwrap().ip().unwrap();
    let (lip, lport) = (ip.addrs.src(), ip.ports().unwrap().0);
    let answer = craft::udp(rs_l2(), sa(RS), SocketAddr::new(lip, lport), &payload(4000));
    let f = fragments(&answer, 8, 1480);
    for i in [2, 1, 0] {
        h.rx(f[i].clone(), 1);
    }
    let out = h.take_tx(0);
    assert_eq!(out.len(), 3);
    let (addrs, _, seg) = reassemble(&out);
    assert_eq!((addrs.src(), addrs.dst()), (sa(VIP).ip(), sa(CLIENT).ip()));
    assert_eq!(ports(&seg), (53, 40000));
    assert_eq!(h.stats.dropped_total(), 0);
}

/// `n` pipelines of one configuration, as `n` workers.
fn workers(text: &str, n: usize) -> Vec<(Pipeline<TestPool>, Arc<WorkerStats>)> {
    let cfg = fixture::parse(text);
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    let limits = BalancerLimits::for_config(cfg.connections.max as usize, n, &dp.services);
    (0..n)
        .map(|w| {
            let stats = Arc::new(WorkerStats::new(dp.services.real_server_slots()));
            let lb = Balancer::new(
                &dp.services,
                limits,
                &crate::conn::Timeouts::default(),
                w,
                n,
            )
            .unwrap();
            let (tx, _rx) = bounded(64);
            (
                Pipeline::new(w, n, dp.clone(), lb, TestPool, stats.clone(), tx, 32),
                stats,
            )
        })
        .collect()
}

/// Moves what the workers hand each other until nothing is left, ring by ring
/// in order, as the worker loops do.
fn pump(ws: &mut [(Pipeline<TestPool>, Arc<WorkerStats>)]) {
    loop {
        let mut moved = false;
        for from in 0..ws.len() {
            for to in 0..ws.len() {
                let handed: Vec<VecBuf> = ws[from].0.handoff_queue(to).drain(..).collect();
                for pkt in handed {
                    moved = true;
                    ws[to].0.process_handed(pkt);
                }
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn two_workers_pass_fragments_through_the_home_worker_to_the_owner() {
    let mut ws = workers(&config_with(2, "nat", ""), 2);
    let mut handoffs = 0;
    // Clients on both owners (client port >> 1), datagrams on both homes (id),
    // fragments landing on both workers, in and out of order.
    for (round, cport) in [40000u16, 40002, 40004, 40006].into_iter().enumerate() {
        let client = SocketAddr::new(sa(CLIENT).ip(), cport);
        for id in 0..8u32 {
            let query = craft::udp(client_l2(), client, sa(VIP), &payload(4000));
            let mut f = fragments(&query, id + 100 * round as u32, 1480);
            if id % 2 == 1 {
                f.reverse();
            }
            for (i, frag) in f.iter().enumerate() {
                let arrival = (i + id as usize / 2) % 2;
                ws[arrival].0.process(VecBuf::from_frame(frag), 0);
                pump(&mut ws);
            }
            let out: Vec<VecBuf> = ws
                .iter_mut()
                .flat_map(|(p, _)| p.tx_queue(1).drain(..).collect::<Vec<_>>())
                .collect();
            assert_eq!(out.len(), 3, "client port {cport} id {id}");
            let (addrs, _, seg) = reassemble(&out);
            assert_eq!((addrs.dst(), ports(&seg)), (sa(RS).ip(), (cport, 5353)));
            // The answer, fragments landing on either worker.
            let answer = craft::udp(rs_l2(), sa(RS), client, &payload(4000));
            for (i, frag) in fragments(&answer, id + 7000, 1480).iter().enumerate() {
                ws[(i + id as usize) % 2]
                    .0
                    .process(VecBuf::from_frame(frag), 1);
                pump(&mut ws);
            }
            let out: Vec<VecBuf> = ws
                .iter_mut()
                .flat_map(|(p, _)| p.tx_queue(0).drain(..).collect::<Vec<_>>())
                .collect();
            assert_eq!(out.len(), 3, "answer: client port {cport} id {id}");
            let (addrs, _, seg) = reassemble(&out);
            assert_eq!((addrs.src(), ports(&seg)), (sa(VIP).ip(), (53, cport)));
        }
    }
    for (p, stats) in &ws {
        assert_eq!(stats.dropped_total(), 0);
        assert_eq!(p.frags.held_count(), 0);
        handoffs += stats.handoff_packets.get();
    }
    assert!(handoffs > 0);
    // Both workers own connections.
    assert!(ws.iter().all(|(_, s)| s.real_server(0).conns.get() > 0));
}

#[test]
fn translated_connections_refuse_fragments_by_name() {
    let mut h = harness_with(&config_with(
        1,
        "nat",
        "  - { name: ops, vip: 198.18.0.101, port: 53, protocol: udp, mode: nat, ops: true,\n      real_servers: [{ address: 198.19.0.11, port: 5353 }] }\n",
    ));
    let query = craft::udp(
        client_l2(),
        sa(CLIENT),
        sa("198.18.0.101:53"),
        &payload(3000),
    );
    rx_all(&mut h, &fragments(&query, 1, 1480), 0);
    assert_eq!(h.dropped(DropReason::FragmentUnsupported), 1);
    assert_eq!(h.dropped(DropReason::FragmentUnmatched), 2);
    assert!(h.take_tx(1).is_empty());
}

#[test]
fn held_fragments_are_given_back_at_shutdown() {
    let mut h = nat();
    let query = craft::udp(client_l2(), sa(CLIENT6), sa(VIP6), &payload(4000));
    let f = fragments(&query, 11, 1232);
    h.rx(f[3].clone(), 0);
    h.rx(f[2].clone(), 0);
    assert_eq!(h.p.frags.held_count(), 2);
    h.p.release_all();
    assert_eq!(h.p.frags.held_count(), 0);
    assert_eq!(h.p.frags.live(), 0);
    assert_eq!(h.p.garbage().len(), 2);
    assert_eq!(h.dropped(DropReason::FragmentTimeout), 2);
}
