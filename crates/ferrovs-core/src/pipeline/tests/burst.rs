//! The burst path against the packet-at-a-time path: the same random traffic
//! through two identical pipelines, one packet at a time into one and in bursts of
//! random sizes into the other, must send byte-identical packets, in the same
//! order within each flow (the burst path sends a batch's new connections after
//! its established packets), and leave the same drops, counters and neighbour
//! events, burst after burst.

use super::*;
use crate::conn::FlowHasher;
use crate::forward::{quoted_flow, IPIP_OVERHEAD};
use crate::packet::icmp::{emit_error, IcmpError};
use crate::packet::testutil::XorShift;
use crate::packet::{ethernet, EtherType, IpProtocol, Ipv4Packet};
use std::collections::BTreeMap;
use std::net::SocketAddr;

const RS_LEARNED: &str = "198.19.0.12";

/// The appliance with a service of every mode and protocol, strict reverse-path
/// filtering on wan and a smaller MTU on lan.
fn config() -> String {
    fixture::appliance(
        r#"connections: { max: 64, timeouts: { tcp_established: "20s", tcp_syn: "3s", tcp_fin: "5s", udp: "4s" } }
routes:
  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }
neighbors:
  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }
  - { ip: "198.19.0.11", mac: "02:00:00:00:01:11" }
  - { ip: "198.18.0.10", mac: "02:00:00:00:00:10" }
services:
  - { name: nat-tcp, vip: 198.18.0.100, port: 80, protocol: tcp, mode: nat, scheduler: wlc,
      real_servers: [{ address: 198.19.0.10, port: 8080 }, { address: 198.19.0.12, port: 8080 }] }
  - { name: nat-udp, vip: 198.18.0.100, port: 53, protocol: udp, mode: nat, scheduler: rr,
      real_servers: [{ address: 198.19.0.11, port: 5353 }] }
  - { name: fnat-tcp, vip: 198.18.0.101, port: 80, protocol: tcp, mode: fullnat, scheduler: rr,
      local_addresses: [198.19.0.2, 198.19.0.3],
      real_servers: [{ address: 198.19.0.10, port: 8080 }, { address: 198.19.0.11, port: 8080 }] }
  - { name: fnat-udp, vip: 198.18.0.101, port: 53, protocol: udp, mode: fullnat, scheduler: rr,
      local_addresses: [198.19.0.2],
      real_servers: [{ address: 198.19.0.12, port: 53 }] }
  - { name: dr, vip: 198.18.0.102, port: 80, protocol: tcp, mode: dr, scheduler: rr,
      real_servers: [{ address: 198.19.0.10, port: 80 }, { address: 198.19.0.12, port: 80 }] }
  - { name: dr-udp, vip: 198.18.0.102, port: 53, protocol: udp, mode: dr, scheduler: rr,
      real_servers: [{ address: 198.19.0.11, port: 53 }] }
  - { name: tun, vip: 198.18.0.103, port: 80, protocol: tcp, mode: tunnel, scheduler: rr,
      real_servers: [{ address: 198.19.0.11, port: 80 }] }
  - { name: tun-udp, vip: 198.18.0.103, port: 53, protocol: udp, mode: tunnel, scheduler: rr,
      real_servers: [{ address: 198.19.0.10, port: 53 }] }
  - { name: nat-pp, vip: 198.18.0.104, port: 80, protocol: tcp, mode: nat, scheduler: rr,
      proxy_protocol: v1, real_servers: [{ address: 198.19.0.10, port: 8081 }] }
  - { name: fnat-pp, vip: 198.18.0.105, port: 80, protocol: tcp, mode: fullnat, scheduler: rr,
      proxy_protocol: v2, local_addresses: [198.19.0.3],
      real_servers: [{ address: 198.19.0.11, port: 8081 }] }
"#,
    )
    .replace("device: net_null0,", "device: net_null0, rp_filter: strict,")
    .replace("device: net_null1,", "device: net_null1, mtu: 1400,")
}

/// One pipeline with a fixed hasher seed, so local ports come out the same.
fn seeded() -> Harness {
    seeded_with(&config())
}

/// [`seeded`] with another configuration.
pub(super) fn seeded_with(text: &str) -> Harness {
    let cfg = fixture::parse(text);
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    let stats = Arc::new(WorkerStats::new(dp.services.real_server_slots()));
    let limits = BalancerLimits::for_config(cfg.connections.max as usize, 1, &dp.services);
    let lb = Balancer::with_hasher(
        &dp.services,
        limits,
        &crate::conn::Timeouts::default(),
        0,
        1,
        FlowHasher::with_seed(7),
    )
    .unwrap();
    let (tx, rx) = bounded(1024);
    let mut p = Pipeline::new(0, 1, dp.clone(), lb, TestPool, stats.clone(), tx, 32);
    // Apply the config's timeouts the way a reload would.
    p.apply(WorkerCommand::Config(dp));
    Harness {
        p,
        events: rx,
        stats,
    }
}

/// A random frame and the port it arrives on. `seen` holds frames the pipeline
/// sent to real servers, to answer as the server would.
fn random_frame(rng: &mut XorShift, seen: &[Vec<u8>]) -> (Vec<u8>, usize) {
    let pick = rng.below(120);
    let client = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10 + rng.below(4) as u8)),
        40000 + rng.below(6) as u16,
    );
    let vip_addr = Ipv4Addr::new(198, 18, 0, 100 + rng.below(6) as u8);
    let port = if rng.below(3) == 0 { 53 } else { 80 };
    let vip = SocketAddr::new(IpAddr::V4(vip_addr), port);
    let payload = vec![rng.next() as u8; rng.below(40)];
    let flags = [
        TcpFlags::SYN,
        TcpFlags::ACK,
        TcpFlags::ACK | TcpFlags::PSH,
        TcpFlags::FIN | TcpFlags::ACK,
        TcpFlags::RST,
        TcpFlags::SYN | TcpFlags::ACK,
        TcpFlags::SYN | TcpFlags::FIN,
        TcpFlags::default(),
    ][rng.below(8)];
    let to_us = l2_to_us(CLIENT_MAC);
    // A SYN at 1 makes 2 the first byte (a Proxy Protocol header goes there).
    let seq = [1, 2, 2, 700][rng.below(4)];
    let client_packet = |rng: &mut XorShift| {
        if port == 53 || rng.below(6) == 0 {
            craft::udp(to_us, client, vip, &payload)
        } else {
            craft::tcp(to_us, client, vip, flags, seq, 2, &payload)
        }
    };
    match pick {
        0..=44 => (client_packet(rng), 0),
        45..=69 if !seen.is_empty() => {
            // A real server answers one of the packets we sent it.
            let sent = &seen[rng.below(seen.len())];
            let info = parse_frame(sent, false).unwrap();
            let L3Info::Ip(ip) = info.l3 else {
                unreachable!()
            };
            let (sport, dport) = ip.ports().unwrap();
            let from = SocketAddr::new(ip.addrs.dst(), dport);
            let to = SocketAddr::new(ip.addrs.src(), sport);
            let l2 = L2 {
                src: MacAddr(sent[0..6].try_into().unwrap()),
                dst: LAN_MAC,
            };
            let frame = if ip.protocol == IpProtocol::UDP {
                craft::udp(l2, from, to, &payload)
            } else {
                let f = [
                    TcpFlags::SYN | TcpFlags::ACK,
                    TcpFlags::ACK,
                    TcpFlags::FIN | TcpFlags::ACK,
                    TcpFlags::RST,
                ][rng.below(4)];
                // Now and then an acknowledgement past any Proxy Protocol header.
                let ack = [4, 4, 5000][rng.below(3)];
                craft::tcp(l2, from, to, f, 3, ack, &payload)
            };
            (frame, 1)
        }
        70 => {
            // The unresolved real server makes itself known, now and then from
            // another MAC (a failover), by asking for us or by answering our probe.
            let mac = MacAddr([2, 0, 0, 0, 1, 0x12 + rng.below(2) as u8]);
            let rs = RS_LEARNED.parse().unwrap();
            let us = "198.19.0.1".parse().unwrap();
            let frame = if rng.below(2) == 0 {
                craft::arp_request(mac, rs, us)
            } else {
                craft::arp_reply(mac, rs, LAN_MAC, us)
            };
            (frame, 1)
        }
        71..=73 => (client_packet(rng), 0),
        74..=76 => (
            craft::echo_request(
                to_us,
                client.ip(),
                "198.18.0.1".parse().unwrap(),
                1,
                2,
                &payload,
            ),
            0,
        ),
        77..=82 => {
            // Damage: random bytes in the headers.
            let mut f = client_packet(rng);
            for _ in 0..1 + rng.below(2) {
                let at = rng.below(f.len().min(54));
                f[at] = rng.next() as u8;
            }
            (f, 0)
        }
        83..=85 => {
            let mut f = client_packet(rng);
            f[14 + 8] = rng.below(2) as u8;
            Ipv4Packet::new_checked(&mut f[14..])
                .unwrap()
                .fill_checksum();
            (f, 0)
        }
        86..=87 => {
            let mut f = client_packet(rng);
            f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
            (f, 0)
        }
        88..=90 => {
            // TCP/UDP to the port's own address.
            let own = SocketAddr::new("198.18.0.1".parse().unwrap(), port);
            (craft::udp(to_us, client, own, &payload), 0)
        }
        91..=92 => {
            // A first fragment: forwarded when its length is a multiple of 8.
            let mut f = client_packet(rng);
            f[14 + 6] |= 0x20;
            Ipv4Packet::new_checked(&mut f[14..])
                .unwrap()
                .fill_checksum();
            (f, 0)
        }
        93..=94 => (
            craft::udp(
                to_us,
                "[2001:2::10]:4000".parse().unwrap(),
                "[2001:2::1]:53".parse().unwrap(),
                &payload,
            ),
            0,
        ),
        95..=99 => (client_packet(rng), rng.below(2)),
        100..=102 => {
            // A martian source, or one of ours (the VIP itself: a land attack).
            let sources = [
                "0.0.0.7",
                "127.0.0.1",
                "224.0.0.5",
                "240.0.0.9",
                "255.255.255.255",
                "198.18.0.255",
                "198.18.0.1",
                "198.19.0.2",
            ];
            let src = sources[rng.below(sources.len())].parse().unwrap();
            let from = SocketAddr::new(src, client.port());
            let own = SocketAddr::new(IpAddr::V4(vip_addr), port);
            let frame = if rng.below(2) == 0 {
                craft::udp(to_us, from, vip, &payload)
            } else {
                craft::tcp(to_us, own, vip, flags, 1, 2, &payload)
            };
            (frame, 0)
        }
        103..=104 => {
            // A source on the real servers' subnet, on wan: strict refuses it.
            let from = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10 + rng.below(3) as u8)),
                client.port(),
            );
            (craft::tcp(to_us, from, vip, flags, 1, 2, &payload), 0)
        }
        105 => {
            // Unicast IP in a broadcast or multicast frame.
            let mut f = client_packet(rng);
            let dst: [u8; 6] = if rng.below(2) == 0 {
                [0xff; 6]
            } else {
                [1, 0, 0x5e, 0, 0, 1]
            };
            f[0..6].copy_from_slice(&dst);
            (f, 0)
        }
        106..=108 => {
            // IPv4 options: harmless (router alert, record route), a source route,
            // malformed.
            let options: [&[u8]; 5] = [
                &[0x94, 4, 0, 0],
                &[7, 3, 4, 0],
                &[0x83, 3, 4, 0],
                &[0x89, 7, 4, 198, 19, 0, 10, 0],
                &[0x94, rng.below(2) as u8, 0, 0],
            ];
            let options = options[rng.below(options.len())];
            (with_ipv4_options(&client_packet(rng), options), 0)
        }
        109..=112 => {
            // Around lan's MTU, with or without DF.
            let big = vec![rng.next() as u8; 1330 + rng.below(120)];
            let mut f = if port == 53 || rng.below(4) == 0 {
                craft::udp(to_us, client, vip, &big)
            } else {
                craft::tcp(to_us, client, vip, flags, 1, 2, &big)
            };
            if rng.below(3) == 0 {
                let mut ip = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
                ip.set_dont_fragment(false);
                ip.fill_checksum();
            }
            (f, 0)
        }
        _ if !seen.is_empty() => {
            // An ICMP error about a packet we sent a real server, from a router on
            // lan or the server itself: valid, corrupted, to another address, or
            // from one of ours.
            let sent = &seen[rng.below(seen.len())];
            let from = ["198.19.0.254", "198.19.0.10", "198.18.0.100", "198.19.0.1"][rng.below(4)]
                .parse()
                .unwrap();
            let mut err = vec![0u8; 14 + 600];
            let Ok(n) = emit_error(
                &mut err[14..],
                IcmpError::FragmentationNeeded { next_hop_mtu: 1300 },
                from,
                &sent[14..],
            ) else {
                return (client_packet(rng), 0);
            };
            err.truncate(14 + n);
            ethernet::emit_header(
                &mut err,
                LAN_MAC,
                MacAddr(sent[0..6].try_into().unwrap()),
                EtherType::IPV4,
            )
            .unwrap();
            match rng.below(4) {
                0 => err[14 + 20 + 5] ^= 1 << rng.below(8),
                1 => {
                    let mut ip = Ipv4Packet::new_checked(&mut err[14..]).unwrap();
                    ip.set_dst_addr(Ipv4Addr::new(198, 18, 0, 100 + rng.below(4) as u8));
                    ip.fill_checksum();
                }
                _ => {}
            }
            (err, 1)
        }
        _ => (client_packet(rng), rng.below(2)),
    }
}

/// Everything observable of a pipeline since the last call: the TX queues, how
/// many packets were freed, the neighbour events.
type Output = (Vec<Vec<Vec<u8>>>, Vec<Vec<Vec<u8>>>, usize, Vec<String>);

/// What a pipeline sent: per port to the NIC and to the kernel interface, how
/// many packets it freed, its events.
fn take_output(h: &mut Harness) -> Output {
    let tx = (0..2)
        .map(|port| h.take_tx(port).iter().map(|b| b.data().to_vec()).collect())
        .collect();
    let kernel = (0..2)
        .map(|port| {
            h.p.kernel_queue(port)
                .drain(..)
                .map(|b| b.data().to_vec())
                .collect()
        })
        .collect();
    let freed = h.p.garbage().drain(..).count();
    let events = h.events.try_iter().map(|e| format!("{e:?}")).collect();
    (tx, kernel, freed, events)
}

/// A pipeline's output with each TX queue split by flow (addresses, protocol and
/// ports if any; a frame that is not IP, such as an ARP request, is a group of
/// its own), each flow in sending order.
type ByFlow<'a> = (
    Vec<BTreeMap<String, Vec<&'a [u8]>>>,
    &'a [Vec<Vec<u8>>],
    usize,
    &'a [String],
);

fn by_flow(out: &Output) -> ByFlow<'_> {
    let tx = out
        .0
        .iter()
        .map(|queue| {
            let mut flows: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
            for f in queue {
                let info = parse_frame(f, false).ok();
                let key = match info.as_ref().and_then(|i| i.ip().cloned()) {
                    Some(ip) => match ip.ports() {
                        Some((sp, dp)) => format!("{:?} {:?} {sp} {dp}", ip.addrs, ip.protocol),
                        // An ICMP error belongs with the flow it is about: the
                        // burst path sends a batch's new connections, and errors
                        // about their packets, after the established ones.
                        None => match info.as_ref().and_then(|i| quoted_flow(f, i, &ip)) {
                            Some(q) => format!("{:?} {:?} about {q:?}", ip.addrs, ip.protocol),
                            // A TUNNEL packet belongs with its inner flow: every
                            // connection to a real server shares the outer header.
                            None if ip.protocol == IpProtocol::IPIP => {
                                let l3 = usize::from(info.as_ref().unwrap().l3_offset);
                                let mut inner = f[..l3].to_vec();
                                inner.extend_from_slice(&f[l3 + IPIP_OVERHEAD..]);
                                let inner = parse_frame(&inner, false).ok();
                                let ports = inner.as_ref().and_then(|i| i.ip()?.ports());
                                let addrs = inner.as_ref().and_then(|i| Some(i.ip()?.addrs));
                                format!("{:?} {:?} in {addrs:?} {ports:?}", ip.addrs, ip.protocol)
                            }
                            None => format!("{:?} {:?}", ip.addrs, ip.protocol),
                        },
                    },
                    // ARP: each frame its own group.
                    None => format!("{f:?}"),
                };
                flows.entry(key).or_default().push(f);
            }
            flows
        })
        .collect();
    (tx, &out.1, out.2, &out.3)
}

/// The slots of the configured real servers.
fn rs_slots(h: &Harness) -> Vec<u16> {
    h.p.dp
        .services
        .iter()
        .flat_map(|svc| svc.real_servers.iter().map(|r| r.slot))
        .collect()
}

/// Every counter of a pipeline.
fn counters(h: &Harness) -> Vec<(String, u64)> {
    let s = &h.stats;
    let mut out = vec![
        ("rx".to_string(), s.rx_packets.get()),
        ("handoff".to_string(), s.handoff_packets.get()),
        ("conns".to_string(), s.conns_active.get()),
        ("kernel".to_string(), s.kernel_packets.get()),
    ];
    for r in DropReason::ALL {
        out.push((r.label().to_string(), s.dropped(*r)));
    }
    for slot in rs_slots(h) {
        let rs = s.real_server(slot);
        for (name, c) in [
            ("conns", &rs.conns),
            ("in_packets", &rs.in_packets),
            ("in_bytes", &rs.in_bytes),
            ("out_packets", &rs.out_packets),
            ("out_bytes", &rs.out_bytes),
            ("active", &rs.active),
            ("inactive", &rs.inactive),
            ("handshakes", &rs.handshakes),
            ("syn_failures", &rs.syn_failures),
        ] {
            out.push((format!("rs{slot}_{name}"), c.get()));
        }
    }
    out
}

/// A reload that moves a real server behind a gateway: the burst path's next-hop
/// caches (one keyed by real-server address, route included) must not keep
/// sending it the old way. No static neighbours here: adding them moves the
/// neighbour table's generation, which would hide a cache the reload forgot.
#[test]
fn a_reload_that_reroutes_a_real_server_is_followed() {
    const NEIGHBORS: &str = r#"neighbors:
  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }
  - { ip: "198.19.0.11", mac: "02:00:00:00:01:11" }
  - { ip: "198.18.0.10", mac: "02:00:00:00:00:10" }
"#;
    const DEFAULT: &str = "  - { prefix: \"0.0.0.0/0\", via: \"198.18.0.254\" }\n";
    let learned = config().replace(NEIGHBORS, "");
    let rerouted = learned.replace(
        DEFAULT,
        &format!("{DEFAULT}  - {{ prefix: \"198.19.0.11/32\", via: \"198.18.0.254\" }}\n"),
    );
    assert_ne!(learned, config());
    assert_ne!(rerouted, learned);
    let cfg = fixture::parse(&rerouted);
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    let mut single = seeded_with(&learned);
    let mut burst = seeded_with(&learned);
    // nat-udp, whose one real server is 198.19.0.11; it makes itself known first.
    let rs_mac = MacAddr([2, 0, 0, 0, 1, 0x11]);
    let hello = craft::arp_request(rs_mac, ip4("198.19.0.11"), ip4("198.19.0.1"));
    let client: SocketAddr = "198.18.0.10:40000".parse().unwrap();
    let vip: SocketAddr = "198.18.0.100:53".parse().unwrap();
    let query = craft::udp(l2_to_us(CLIENT_MAC), client, vip, b"query");
    for round in 0..4 {
        if round == 3 {
            for h in [&mut single, &mut burst] {
                h.p.apply(WorkerCommand::Config(dp.clone()));
            }
        }
        let (frame, port) = if round == 0 { (&hello, 1) } else { (&query, 0) };
        single.p.process(VecBuf::from_frame(frame), port);
        let mut run = vec![VecBuf::from_frame(frame)];
        burst.p.process_burst(&mut run, port);
        let a = take_output(&mut single);
        let b = take_output(&mut burst);
        assert_eq!(a, b, "round {round}");
        assert_eq!(counters(&single), counters(&burst), "round {round}");
        match round {
            0 => assert_eq!(a.0[1].len(), 1, "the ARP reply"),
            1 | 2 => assert_eq!(a.0[1].len(), 1, "round {round}: to the server on lan"),
            _ => {
                // The gateway is unresolved: held, and asked for on wan.
                assert!(a.0[1].is_empty(), "rerouted, still sent on lan");
                assert_eq!(a.0[0].len(), 1, "one ARP probe for the gateway");
            }
        }
    }
}

/// RX checksum offload: on a port whose NIC verifies IPv4 header checksums the
/// burst path does not sum again the header of a frame the NIC marked good (a
/// corrupted checksum makes the skip visible). Unmarked, or on a port without the
/// offload, the frame is dropped as `bad_ipv4_checksum`, like on the ordinary path.
#[test]
fn the_nics_checksum_verdict_spares_the_burst_path_its_own() {
    let client: SocketAddr = "198.18.0.10:40000".parse().unwrap();
    let vip: SocketAddr = "198.18.0.100:53".parse().unwrap();
    let mut frame = craft::udp(l2_to_us(CLIENT_MAC), client, vip, b"query");
    frame[14 + 10] ^= 0x40;
    let mut marked = VecBuf::from_frame(&frame);
    marked.set_ipv4_checksum_verified(true);
    let without_offload = seeded();
    let mut with_offload = seeded();
    with_offload.p = with_offload.p.with_rx_ipv4_checksum_offload(&[true, false]);
    for (mut h, offload) in [(without_offload, false), (with_offload, true)] {
        h.p.process_burst(&mut vec![VecBuf::from_frame(&frame)], 0);
        let (tx, _, freed, _) = take_output(&mut h);
        assert!(tx.iter().all(Vec::is_empty));
        assert_eq!(freed, 1);
        assert_eq!(h.stats.dropped(DropReason::BadIpv4Checksum), 1);

        h.p.process_burst(&mut vec![marked.clone()], 0);
        let (tx, _, freed, _) = take_output(&mut h);
        if offload {
            assert_eq!((tx[1].len(), freed), (1, 0), "forwarded to the real server");
        } else {
            assert_eq!(
                (tx[1].len(), freed),
                (0, 1),
                "the mark counts only with the offload"
            );
        }
        let drops = if offload { 1 } else { 2 };
        assert_eq!(h.stats.dropped(DropReason::BadIpv4Checksum), drops);
    }
}

#[test]
fn bursts_and_single_packets_end_the_same() {
    let mut single = seeded();
    let mut burst = seeded();
    let mut rng = XorShift::new(0xb0257);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut now = 1_000u64;
    let mut forwarded = 0;
    // Proxy Protocol headers sent, and client segments shifted past one.
    let (mut headers, mut shifted) = (0, 0);
    for round in 0..1500 {
        // Time moves on between bursts: now and then far enough for timeouts and
        // neighbour refreshes.
        now += match rng.below(50) {
            0..=2 => 70_000,
            3..=5 => 4_000,
            _ => rng.below(300) as u64,
        };
        let size = 1 + rng.below(if round % 10 == 0 { 80 } else { 34 });
        let frames: Vec<(Vec<u8>, usize)> =
            (0..size).map(|_| random_frame(&mut rng, &seen)).collect();
        for h in [&mut single, &mut burst] {
            h.p.set_time(now);
            h.p.expire_connections();
            h.p.housekeeping();
        }
        for (f, port) in &frames {
            single.p.process(VecBuf::from_frame(f), *port);
        }
        // The burst pipeline gets runs of the same port, as an RX queue delivers.
        let mut i = 0;
        while i < frames.len() {
            let port = frames[i].1;
            let mut run = Vec::new();
            while i < frames.len() && frames[i].1 == port {
                run.push(VecBuf::from_frame(&frames[i].0));
                i += 1;
            }
            burst.p.process_burst(&mut run, port);
            assert!(run.is_empty());
        }
        let a = take_output(&mut single);
        let b = take_output(&mut burst);
        assert_eq!(by_flow(&a), by_flow(&b), "round {round}");
        assert_eq!(counters(&single), counters(&burst), "round {round}");
        for f in &a.0[1] {
            let tcp_or_udp = parse_frame(f, false)
                .ok()
                .and_then(|i| i.ip().and_then(IpInfo::ports))
                .is_some();
            if !tcp_or_udp {
                continue; // ARP probes, tunnelled packets
            }
            forwarded += 1;
            let tcp = &f[34..];
            if tcp[2..4] == 8081u16.to_be_bytes() {
                let payload = &tcp[usize::from(tcp[12] >> 4) * 4..];
                if payload.starts_with(b"PROXY TCP4 ")
                    || payload.starts_with(b"\r\n\r\n\0\r\nQUIT\n")
                {
                    headers += 1;
                } else if u32::from_be_bytes(tcp[4..8].try_into().unwrap()) > 700 {
                    shifted += 1;
                }
            }
            if seen.len() < 256 {
                seen.push(f.clone());
            } else {
                seen[rng.below(256)] = f.clone();
            }
        }
    }
    // The traffic did reach the interesting places.
    let s = &burst.stats;
    assert!(forwarded > 1000, "forwarded {forwarded}");
    assert!(
        headers > 5 && shifted > 5,
        "{headers} headers, {shifted} shifted"
    );
    for r in [
        DropReason::NoConnection,
        DropReason::TcpNoConnection,
        DropReason::BadTcpFlags,
        DropReason::ForeignMac,
        DropReason::TtlExceeded,
        DropReason::FragmentMalformed,
        DropReason::BadIpv4Checksum,
        DropReason::MartianSource,
        DropReason::OwnSource,
        DropReason::RpFilter,
        DropReason::L2BroadcastUnicastIp,
        DropReason::Ipv4SourceRoute,
        DropReason::BadIpv4Options,
        DropReason::MtuExceeded,
        DropReason::BadIcmpChecksum,
        DropReason::IcmpErrorBadDestination,
    ] {
        assert!(s.dropped(r) > 0, "no {}", r.label());
    }
    // TCP/UDP to the ports' own addresses went to the kernel interface.
    assert!(s.kernel_packets.get() > 0, "nothing for the kernel");
    let handshakes: u64 = rs_slots(&burst)
        .into_iter()
        .map(|slot| s.real_server(slot).handshakes.get())
        .sum();
    assert!(handshakes > 0, "no handshake completed");
    let out_packets: u64 = rs_slots(&burst)
        .into_iter()
        .map(|slot| s.real_server(slot).out_packets.get())
        .sum();
    assert!(out_packets > 100, "replies forwarded: {out_packets}");
}

/// A burst that opens a flow and carries more of its packets: one connection,
/// every packet to its real server in arrival order, after the burst's packets of
/// established flows (new connections are inserted at the end of the batch).
#[test]
fn a_flow_opened_within_a_burst_keeps_its_order() {
    let mut h = seeded();
    let old: SocketAddr = "198.18.0.10:40001".parse().unwrap();
    let new: SocketAddr = "198.18.0.10:40002".parse().unwrap();
    let vip: SocketAddr = "198.18.0.100:53".parse().unwrap();
    let datagram = |client, payload: &str| {
        VecBuf::from_frame(&craft::udp(
            l2_to_us(CLIENT_MAC),
            client,
            vip,
            payload.as_bytes(),
        ))
    };
    h.p.process_burst(&mut vec![datagram(old, "o0")], 0);
    let _ = take_output(&mut h);
    // Connections opened, over all real servers.
    let conns = |h: &Harness| -> u64 {
        counters(h)
            .iter()
            .filter(|(k, _)| k.starts_with("rs") && k.ends_with("_conns"))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(conns(&h), 1);

    let mut run = vec![
        datagram(new, "n1"),
        datagram(old, "o1"),
        datagram(new, "n2"),
        datagram(old, "o2"),
        datagram(new, "n3"),
    ];
    h.p.process_burst(&mut run, 0);
    let (tx, _, freed, _) = take_output(&mut h);
    assert_eq!(freed, 0);
    let payloads: Vec<&[u8]> = tx[1].iter().map(|f| &f[14 + 20 + 8..]).collect();
    assert_eq!(payloads, [b"o1", b"o2", b"n1", b"n2", b"n3"]);
    assert_eq!(conns(&h), 2, "one connection for the new flow");
    // The new flow's packets all went to its one connection's server and port.
    let ports: Vec<&[u8]> = tx[1][2..]
        .iter()
        .map(|f| &f[14 + 20 + 2..14 + 20 + 4])
        .collect();
    assert!(ports.windows(2).all(|w| w[0] == w[1]));
}
