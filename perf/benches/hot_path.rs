//! Micro-benchmarks of ferrovs's pure-Rust packet path, in ns per packet (criterion
//! reports time per element: every group sets `Throughput::Elements`).
//!
//! `cargo bench -p ferrovs-perf --bench hot_path [-- FILTER]`
//!
//! - `parse_frame/*`: classification of a 64-byte UDP datagram, TCP SYN and ARP
//!   request.
//! - `conn_lookup/*`: `ConnTable<Ipv4Addr>` filled to capacity with NAT connections
//!   (two keys each), 64K and 1M entries; hits and misses; the hash computed inside
//!   `lookup` or beforehand (`lookup_hashed`, what a worker does when it hashes a
//!   whole burst first and prefetches). Keys are visited in a shuffled order, so the
//!   table is walked as randomly as real traffic walks it; one lookup per iteration,
//!   without prefetching, so the 1M figures show the memory latency a worker has to
//!   hide.
//! - `sched_pick/*`: one pick among 16 real servers for rr, wrr, wlc and mh.
//! - `checksum/*`: RFC 1624 incremental updates, an address rewrite carried into the
//!   UDP checksum, and a full header checksum for contrast.
//! - `nat_rewrite/*`: `forward::translate` on a UDP packet, NAT and FULLNAT inbound.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrovs_core::conn::{
    ConnState, ConnTable, FlowHasher, FlowKey, Mode, Proto, TcpState, Timeouts,
};
use ferrovs_core::forward::{translate, Translation};
use ferrovs_core::packet::parse::L3Info;
use ferrovs_core::packet::{checksum, craft, parse_frame, Ipv4Packet, MacAddr, UdpPacket};
use ferrovs_core::sched::{Candidate, FlowHint, SchedOptions, Scheduler, SchedulerKind, ServerId};
use ferrovs_core::sync::{outbox, SyncConn};
use ferrovs_perf::memory::new_conn;
use ferrovs_perf::traffic::{self, Addressing};

fn parse(c: &mut Criterion) {
    let addr = Addressing::default();
    let frames = [
        ("udp", traffic::udp_frame(&addr, 12_345)),
        ("tcp_syn", traffic::syn_frame(&addr, 12_345)),
        (
            "arp",
            craft::arp_request(
                MacAddr([2, 0, 0, 0, 0, 0xfe]),
                Ipv4Addr::new(198, 18, 0, 254),
                Ipv4Addr::new(198, 18, 0, 1),
            ),
        ),
    ];
    let mut group = c.benchmark_group("parse_frame");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in &frames {
        assert!(parse_frame(frame, false).is_ok(), "{name} must parse");
        group.bench_function(*name, |b| b.iter(|| parse_frame(black_box(frame), false)));
    }
    group.finish();
}

/// A table of `n` NAT connections, the inbound keys of its clients in shuffled
/// order, and as many keys of clients it does not hold.
fn filled_table(
    n: u32,
) -> (
    ConnTable<Ipv4Addr>,
    Vec<FlowKey<Ipv4Addr>>,
    Vec<FlowKey<Ipv4Addr>>,
) {
    let mut table =
        ConnTable::with_hasher(n as usize, &Timeouts::default(), FlowHasher::with_seed(42))
            .expect("table fits in memory");
    for i in 0..n {
        table
            .insert(&new_conn(i, Mode::Nat), 0)
            .expect("distinct connections");
    }
    let key = |i: u32| {
        let c = new_conn(i, Mode::Nat);
        FlowKey::new(
            Proto::Udp,
            c.client.addr,
            c.client.port,
            c.vip.addr,
            c.vip.port,
        )
    };
    let hits = (0..n).map(|p| key(traffic::flow_at(p, n))).collect();
    let misses = (0..n).map(|p| key(n + traffic::flow_at(p, n))).collect();
    (table, hits, misses)
}

fn conn_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("conn_lookup");
    group.throughput(Throughput::Elements(1));
    for (label, n) in [("64K", 1u32 << 16), ("1M", 1 << 20)] {
        let (table, hits, misses) = filled_table(n);
        for (kind, keys, expect_hit) in [("hit", &hits, true), ("miss", &misses, false)] {
            assert_eq!(table.lookup(&keys[0]).is_some(), expect_hit);
            let hashes: Vec<u64> = keys.iter().map(|k| k.hash_with(table.hasher())).collect();

            let mut pos = 0;
            group.bench_function(
                BenchmarkId::new(format!("{kind}/hash_inside"), label),
                |b| {
                    b.iter(|| {
                        pos = if pos + 1 == keys.len() { 0 } else { pos + 1 };
                        table.lookup(black_box(&keys[pos]))
                    })
                },
            );

            let mut pos = 0;
            group.bench_function(
                BenchmarkId::new(format!("{kind}/hash_precomputed"), label),
                |b| {
                    b.iter(|| {
                        pos = if pos + 1 == keys.len() { 0 } else { pos + 1 };
                        table.lookup_hashed(black_box(&keys[pos]), black_box(hashes[pos]))
                    })
                },
            );
        }
    }
    group.finish();
}

fn sched_pick(c: &mut Criterion) {
    let mut servers: Vec<Candidate> = (0..16u8)
        .map(|i| {
            let id = ServerId::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10 + i)), 8080);
            // Unequal weights and loads, so wrr and wlc have work to do.
            let mut s = Candidate::new(id, 1 + u32::from(i % 5));
            s.active = 100 + u32::from(i) * 37 % 50;
            s.inactive = u32::from(i) * 13 % 20;
            s
        })
        .collect();
    servers[3].available = false;
    let vip = Addressing::default().vip;
    let flows: Vec<FlowHint> = (0..4096)
        .map(|i| {
            let client = traffic::client(traffic::flow_at(i, 1 << 20));
            FlowHint {
                src: IpAddr::V4(*client.ip()),
                src_port: client.port(),
                dst: IpAddr::V4(vip),
                dst_port: 9000,
                now_ms: 0,
            }
        })
        .collect();

    let mut group = c.benchmark_group("sched_pick");
    group.throughput(Throughput::Elements(1));
    for kind in [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Wlc,
        SchedulerKind::Mh,
    ] {
        let mut sched =
            Scheduler::new(kind, &servers, &SchedOptions::default()).expect("valid scheduler");
        assert!(sched.pick(&servers, &flows[0]).is_some());
        let mut i = 0;
        group.bench_function(BenchmarkId::new(kind.name(), "16_servers"), |b| {
            b.iter(|| {
                i = (i + 1) & (flows.len() - 1);
                sched.pick(black_box(&servers), black_box(&flows[i]))
            })
        });
    }
    group.finish();
}

fn checksums(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    group.throughput(Throughput::Elements(1));
    group.bench_function("incremental_u16", |b| {
        b.iter(|| checksum::update_u16(black_box(0x1c46), black_box(9000), black_box(8080)))
    });
    group.bench_function("incremental_u32", |b| {
        b.iter(|| {
            checksum::update_u32(
                black_box(0x1c46),
                black_box(0xc612_0064),
                black_box(0xc613_000a),
            )
        })
    });

    // An address rewrite fixing the IPv4 header checksum and carrying the change
    // into the UDP checksum through the pseudo-header, on a real frame. It alternates
    // between two addresses so the frame stays valid however many times it runs.
    let mut frame = traffic::udp_frame(&Addressing::default(), 7);
    let addrs = [Ipv4Addr::new(198, 19, 0, 10), Addressing::default().vip];
    let mut turn = 0;
    group.bench_function("ipv4_dst_rewrite_into_udp", |b| {
        b.iter(|| {
            turn ^= 1;
            let Ok(mut ip) = Ipv4Packet::new_checked(&mut black_box(&mut frame)[14..]) else {
                return;
            };
            let delta = ip.rewrite_dst_addr(addrs[turn]);
            if let Ok(mut udp) = UdpPacket::new_checked(ip.payload_mut()) {
                udp.apply_checksum_delta(delta);
            }
        })
    });
    group.bench_function("ipv4_header_full", |b| {
        b.iter(|| checksum::checksum(black_box(&frame[14..34])))
    });
    group.finish();
}

/// One packet of an established flow rewritten in place by the forwarding code
/// itself: NAT inbound (destination address and port, TTL, both checksums) and
/// FULLNAT inbound (both ends). Alternates between two real servers so every
/// iteration really changes the packet.
fn nat_rewrite(c: &mut Criterion) {
    let addr = Addressing::default();
    let mut frame = traffic::udp_frame(&addr, 12_345);
    let info = parse_frame(&frame, false).expect("valid frame");
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    let servers = [
        (IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10)), 8080),
        (IpAddr::V4(Ipv4Addr::new(198, 19, 0, 11)), 8081),
    ];
    let mut group = c.benchmark_group("nat_rewrite");
    group.throughput(Throughput::Elements(1));
    let mut turn = 0;
    group.bench_function("nat_inbound", |b| {
        b.iter(|| {
            turn ^= 1;
            // restore the TTL so the packet never expires during the run
            frame[14 + 8] = 64;
            let t = Translation {
                src: None,
                dst: Some(servers[turn]),
            };
            let _ = translate(black_box(&mut frame), &info, &ip, Proto::Udp, &t);
        })
    });
    let local = (IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)), 5000);
    group.bench_function("fullnat_inbound", |b| {
        b.iter(|| {
            turn ^= 1;
            frame[14 + 8] = 64;
            let t = Translation {
                src: Some(local),
                dst: Some(servers[turn]),
            };
            let _ = translate(black_box(&mut frame), &info, &ip, Proto::Udp, &t);
        })
    });
    group.finish();
}

/// What connection sync costs a worker per record (a TCP connection makes one when
/// it is established and one or two as it closes): encoding a connection and
/// pushing it into the ring the management core drains (here drained in place,
/// every 1024 records, outside the timed path's average only by amortisation).
fn sync_record(c: &mut Criterion) {
    let record = SyncConn {
        proto: Proto::Tcp,
        mode: Mode::Nat,
        state: ConnState::Tcp(TcpState::Established),
        timeout_ms: 900_000,
        client: (IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)), 40000),
        vip: (IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)), 80),
        local: (IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)), 40000),
        real: (IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10)), 8080),
    };
    let (mut producer, mut consumer) = outbox(16384);
    let mut drained = Vec::with_capacity(1024);
    let mut n = 0u32;
    let mut group = c.benchmark_group("sync");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record_push", |b| {
        b.iter(|| {
            let pushed = producer.push(&black_box(&record).to_words());
            n += 1;
            if n == 1024 {
                n = 0;
                drained.clear();
                consumer.drain(&mut drained, 1024);
            }
            pushed
        })
    });
    group.finish();
}

/// The benchmark group, in a module of its own: the macro defines a public function
/// it gives no way to document.
mod group {
    use super::*;

    criterion_group! {
        name = hot_path;
        // Short runs: the machine is shared and the numbers are stable well before this.
        config = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(30);
        targets = parse, conn_lookup, sched_pick, checksums, nat_rewrite, sync_record
    }
}
criterion_main!(group::hot_path);
