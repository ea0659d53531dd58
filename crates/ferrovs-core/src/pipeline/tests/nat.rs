//! NAT mode through the pipeline: new connections, both directions, drops, limits.

use super::*;
use crate::packet::icmp::{emit_error, IcmpError};
use crate::packet::{ethernet, EtherType, IpProtocol, UdpPacket};
use std::net::SocketAddr;

const RS1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);
const RS2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x11]);

fn nat_config(extra_service: &str, max: u32) -> String {
    fixture::appliance(&format!(
        r#"connections: {{ max: {max} }}
neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.19.0.11", mac: "02:00:00:00:01:11" }}
  - {{ ip: "198.18.0.10", mac: "02:00:00:00:00:10" }}
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    scheduler: rr
    real_servers:
      - {{ address: 198.19.0.10, port: 8080 }}
      - {{ address: 198.19.0.11, port: 8080 }}
  - name: dns
    vip: 198.18.0.100
    port: 53
    protocol: udp
    mode: nat
    scheduler: rr
    real_servers:
      - {{ address: 198.19.0.10, port: 5353 }}
{extra_service}
"#
    ))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const VIP: &str = "198.18.0.100:80";

fn client_l2() -> L2 {
    L2 {
        src: CLIENT_MAC,
        dst: OUR_MAC,
    }
}

fn rs_l2(mac: MacAddr) -> L2 {
    L2 {
        src: mac,
        dst: LAN_MAC,
    }
}

/// Parses a frame the pipeline sent and checks every checksum.
fn sent(frame: &VecBuf) -> (MacAddr, IpInfo) {
    let data = frame.data();
    let info = parse_frame(data, false).expect("valid frame");
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    assert!(Ipv4Packet::new_checked(&data[14..])
        .unwrap()
        .verify_checksum());
    let l4 = usize::from(ip.l4.unwrap().offset);
    assert!(
        craft::l4_checksum_ok(&ip.addrs, ip.protocol, &data[l4..info.l3_end()]),
        "L4 checksum"
    );
    (MacAddr(data[0..6].try_into().unwrap()), ip)
}

fn syn(client: &str) -> Vec<u8> {
    craft::tcp(client_l2(), sa(client), sa(VIP), TcpFlags::SYN, 100, 0, b"")
}

#[test]
fn syn_is_scheduled_translated_and_sent_to_the_real_server() {
    let mut h = harness_with(&nat_config("", 1000));
    h.rx(syn("198.18.0.10:40000"), 0);
    h.rx(syn("198.18.0.10:40001"), 0);
    let out = h.take_tx(1);
    assert_eq!(out.len(), 2);
    let (mac1, ip1) = sent(&out[0]);
    let (mac2, ip2) = sent(&out[1]);
    // rr over two servers: one each
    let mut got = vec![(mac1, ip1.addrs.dst()), (mac2, ip2.addrs.dst())];
    got.sort();
    assert_eq!(
        got,
        vec![
            (RS1_MAC, "198.19.0.10".parse().unwrap()),
            (RS2_MAC, "198.19.0.11".parse().unwrap())
        ]
    );
    assert_eq!(ip1.ports(), Some((40000, 8080)));
    assert_eq!(ip1.addrs.src(), "198.18.0.10".parse::<IpAddr>().unwrap());
    assert_eq!(ip1.ttl, 63);
    assert_eq!(
        h.stats.conns_active.get(),
        0,
        "gauge updates at expiry time"
    );
    h.p.expire_connections();
    assert_eq!(h.stats.conns_active.get(), 2);
    let total: u64 = (0..2).map(|s| h.stats.real_server(s).conns.get()).sum();
    assert_eq!(total, 2);
}

#[test]
fn replies_are_translated_back_to_the_vip() {
    let mut h = harness_with(&nat_config("", 1000));
    h.rx(syn("198.18.0.10:40000"), 0);
    let (mac, ip) = sent(&h.take_tx(1)[0]);
    let rs = SocketAddr::new(ip.addrs.dst(), 8080);
    let rs_mac = mac;
    let synack = craft::tcp(
        rs_l2(rs_mac),
        rs,
        sa("198.18.0.10:40000"),
        TcpFlags::SYN | TcpFlags::ACK,
        900,
        101,
        b"",
    );
    h.rx(synack, 1);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let (mac, ip) = sent(&out[0]);
    assert_eq!(mac, CLIENT_MAC);
    assert_eq!(ip.addrs.src(), "198.18.0.100".parse::<IpAddr>().unwrap());
    assert_eq!(ip.ports(), Some((80, 40000)));
    // the handshake completes and data flows both ways
    h.rx(
        craft::tcp(
            client_l2(),
            sa("198.18.0.10:40000"),
            sa(VIP),
            TcpFlags::ACK,
            101,
            901,
            b"GET /",
        ),
        0,
    );
    assert_eq!(h.take_tx(1).len(), 1);
    let slot = if rs.ip() == "198.19.0.10".parse::<IpAddr>().unwrap() {
        0
    } else {
        1
    };
    let c = h.stats.real_server(slot);
    assert_eq!((c.in_packets.get(), c.out_packets.get()), (2, 1));
    assert_eq!(c.active.get(), 1, "an established connection is active");
    assert_eq!(h.stats.dropped_total(), 0);
}

#[test]
fn udp_request_and_response() {
    let mut h = harness_with(&nat_config("", 1000));
    let client = sa("198.18.0.10:5000");
    h.rx(
        craft::udp(client_l2(), client, sa("198.18.0.100:53"), b"query"),
        0,
    );
    let out = h.take_tx(1);
    let (_, ip) = sent(&out[0]);
    assert_eq!(ip.ports(), Some((5000, 5353)));
    h.rx(
        craft::udp(rs_l2(RS1_MAC), sa("198.19.0.10:5353"), client, b"answer"),
        1,
    );
    let out = h.take_tx(0);
    let (_, ip) = sent(&out[0]);
    assert_eq!(ip.addrs.src(), "198.18.0.100".parse::<IpAddr>().unwrap());
    assert_eq!(ip.ports(), Some((53, 5000)));
    let l4 = usize::from(ip.l4.unwrap().offset);
    let udp = UdpPacket::new_checked(&out[0].data()[l4..]).unwrap();
    assert_eq!(udp.payload(), b"answer");
}

#[test]
fn packets_without_a_connection_or_service_are_dropped_by_reason() {
    let mut h = harness_with(&nat_config("", 1000));
    let c = sa("198.18.0.10:40000");
    h.rx(
        craft::tcp(client_l2(), c, sa(VIP), TcpFlags::ACK, 1, 1, b""),
        0,
    );
    assert_eq!(h.dropped(DropReason::TcpNoConnection), 1);
    h.rx(
        craft::tcp(
            client_l2(),
            c,
            sa(VIP),
            TcpFlags::SYN | TcpFlags::FIN,
            1,
            0,
            b"",
        ),
        0,
    );
    h.rx(
        craft::tcp(
            client_l2(),
            c,
            sa(VIP),
            TcpFlags::SYN | TcpFlags::RST,
            1,
            0,
            b"",
        ),
        0,
    );
    h.rx(
        craft::tcp(client_l2(), c, sa(VIP), TcpFlags::default(), 1, 0, b""),
        0,
    );
    assert_eq!(h.dropped(DropReason::BadTcpFlags), 3);
    h.rx(
        craft::tcp(
            client_l2(),
            c,
            sa("198.18.0.100:81"),
            TcpFlags::SYN,
            1,
            0,
            b"",
        ),
        0,
    );
    assert_eq!(h.dropped(DropReason::NoService), 1);
    // a server's reply that matches nothing
    h.rx(
        craft::tcp(
            rs_l2(RS1_MAC),
            sa("198.19.0.10:8080"),
            c,
            TcpFlags::SYN | TcpFlags::ACK,
            1,
            1,
            b"",
        ),
        1,
    );
    assert_eq!(h.dropped(DropReason::NoConnection), 1);
    // a first fragment to the VIP whose 20 bytes cannot be followed (not a
    // multiple of 8)
    let mut frag = syn("198.18.0.10:40002");
    frag[14 + 6] = 0x20;
    Ipv4Packet::new_checked(&mut frag[14..])
        .unwrap()
        .fill_checksum();
    h.rx(frag, 0);
    assert_eq!(h.dropped(DropReason::FragmentMalformed), 1);
    // truncated TCP header and bad data offset
    let s = syn("198.18.0.10:40003");
    let mut short = s[..14 + 20 + 10].to_vec();
    short[16..18].copy_from_slice(&30u16.to_be_bytes());
    Ipv4Packet::new_checked(&mut short[14..])
        .unwrap()
        .fill_checksum();
    h.rx(short, 0);
    assert_eq!(h.dropped(DropReason::TruncatedL4), 1);
    let mut off = s.clone();
    off[14 + 20 + 12] = 0xf0;
    h.rx(off, 0);
    assert_eq!(h.dropped(DropReason::BadTcpOffset), 1);
    assert!(h.take_tx(0).is_empty() && h.take_tx(1).is_empty());
    // a live connection is unaffected by all of that
    h.rx(syn("198.18.0.10:40009"), 0);
    assert_eq!(h.take_tx(1).len(), 1);
}

#[test]
fn a_full_table_refuses_new_flows_and_keeps_live_ones() {
    let mut h = harness_with(&nat_config("", 2));
    h.rx(syn("198.18.0.10:1"), 0);
    h.rx(syn("198.18.0.10:2"), 0);
    h.rx(syn("198.18.0.10:3"), 0);
    assert_eq!(h.take_tx(1).len(), 2);
    assert_eq!(h.dropped(DropReason::ConnTableFull), 1);
    for port in ["1", "2"] {
        let c = sa(&format!("198.18.0.10:{port}"));
        h.rx(
            craft::tcp(client_l2(), c, sa(VIP), TcpFlags::ACK, 101, 1, b""),
            0,
        );
    }
    assert_eq!(h.take_tx(1).len(), 2);
}

#[test]
fn drained_servers_get_no_new_connections() {
    let cfg = nat_config("", 100).replace(
        "{ address: 198.19.0.10, port: 8080 }",
        "{ address: 198.19.0.10, port: 8080, weight: 0 }",
    );
    let mut h = harness_with(&cfg);
    for p in 0..10 {
        h.rx(syn(&format!("198.18.0.10:{}", 1000 + p)), 0);
    }
    for f in h.take_tx(1) {
        assert_eq!(sent(&f).0, RS2_MAC);
    }
}

#[test]
fn persistence_keeps_a_client_on_one_server() {
    let svc = r#"
  - name: sticky
    vip: 198.18.0.101
    port: 80
    protocol: tcp
    mode: nat
    scheduler: rr
    persistence: 60s
    real_servers:
      - { address: 198.19.0.10, port: 8080 }
      - { address: 198.19.0.11, port: 8080 }
"#;
    let mut h = harness_with(&nat_config(svc, 100));
    for p in 0..6 {
        let f = craft::tcp(
            client_l2(),
            sa(&format!("198.18.0.10:{}", 2000 + p)),
            sa("198.18.0.101:80"),
            TcpFlags::SYN,
            1,
            0,
            b"",
        );
        h.rx(f, 0);
    }
    let macs: Vec<MacAddr> = h.take_tx(1).iter().map(|f| sent(f).0).collect();
    assert_eq!(macs.len(), 6);
    assert!(macs.iter().all(|m| *m == macs[0]), "{macs:?}");
}

#[test]
fn idle_connections_expire() {
    let mut h = harness_with(&nat_config("", 100));
    h.p.set_time(1_000);
    let client = sa("198.18.0.10:5000");
    h.rx(
        craft::udp(client_l2(), client, sa("198.18.0.100:53"), b"q"),
        0,
    );
    h.take_tx(1);
    h.p.expire_connections();
    assert_eq!(h.stats.conns_active.get(), 1);
    // UDP timeout is 300 s
    h.p.set_time(1_000 + 301_000);
    h.p.expire_connections();
    assert_eq!(h.stats.conns_active.get(), 0);
    assert_eq!(h.stats.real_server(2).inactive.get(), 0);
    h.rx(
        craft::udp(rs_l2(RS1_MAC), sa("198.19.0.10:5353"), client, b"late"),
        1,
    );
    assert_eq!(h.dropped(DropReason::NoConnection), 1);
}

#[test]
fn fragmentation_needed_from_the_server_side_reaches_the_client_translated() {
    let mut h = harness_with(&nat_config("", 100));
    let client = sa("198.18.0.10:40000");
    h.rx(syn("198.18.0.10:40000"), 0);
    let out = h.take_tx(1);
    let (_, ip) = sent(&out[0]);
    let rs = SocketAddr::new(ip.addrs.dst(), 8080);
    // A big segment of the connection as the server side saw it, and a router there
    // that cannot forward it.
    let big = craft::tcp(client_l2(), client, rs, TcpFlags::ACK, 101, 1, &[7u8; 1400]);
    let mut err = vec![0u8; 14 + 600];
    let n = emit_error(
        &mut err[14..],
        IcmpError::FragmentationNeeded { next_hop_mtu: 1300 },
        "198.19.0.254".parse().unwrap(),
        &big[14..],
    )
    .unwrap();
    err.truncate(14 + n);
    ethernet::emit_header(&mut err, LAN_MAC, RS1_MAC, EtherType::IPV4).unwrap();
    h.rx(err, 1);
    let out = h.take_tx(0);
    assert_eq!(
        out.len(),
        1,
        "dropped: {:?}",
        DropReason::ALL
            .iter()
            .filter(|r| h.dropped(**r) > 0)
            .collect::<Vec<_>>()
    );
    let data = out[0].data();
    let info = parse_frame(data, false).unwrap();
    let L3Info::Ip(ip) = info.l3 else { panic!() };
    assert_eq!(ip.protocol, IpProtocol::ICMP);
    assert_eq!(ip.addrs.src(), "198.18.0.100".parse::<IpAddr>().unwrap());
    assert_eq!(ip.addrs.dst(), client.ip());
    let outer = Ipv4Packet::new_checked(&data[14..info.l3_end()]).unwrap();
    assert!(outer.verify_checksum());
    let icmp = Icmpv4Packet::new_checked(outer.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.next_hop_mtu(), 1300);
    let quoted = icmp.quoted_packet().unwrap();
    assert_eq!(
        quoted.dst_addr(),
        "198.18.0.100".parse::<Ipv4Addr>().unwrap()
    );
    assert_eq!(&quoted.payload()[2..4], &80u16.to_be_bytes());
}

#[test]
fn a_syn_reusing_a_closed_tuple_is_scheduled_as_a_new_connection() {
    let mut h = harness_with(&nat_config("", 100));
    let c = "198.18.0.10:40000";
    let vip = sa(VIP);
    let mut servers = vec![];
    for round in 0..4 {
        h.rx(syn(c), 0);
        let (mac, ip) = sent(&h.take_tx(1)[0]);
        servers.push(mac);
        let rs = SocketAddr::new(ip.addrs.dst(), 8080);
        // full close: client FIN, server FIN+ACK, client ACK -> TIME_WAIT
        h.rx(
            craft::tcp(
                client_l2(),
                sa(c),
                vip,
                TcpFlags::FIN | TcpFlags::ACK,
                2,
                2,
                b"",
            ),
            0,
        );
        h.rx(
            craft::tcp(
                rs_l2(mac),
                rs,
                sa(c),
                TcpFlags::FIN | TcpFlags::ACK,
                2,
                3,
                b"",
            ),
            1,
        );
        h.rx(
            craft::tcp(client_l2(), sa(c), vip, TcpFlags::ACK, 3, 3, b""),
            0,
        );
        h.take_tx(0);
        h.take_tx(1);
        assert_eq!(h.stats.dropped_total(), 0, "round {round}");
    }
    // rr alternates: each SYN was scheduled afresh, not stuck to the old server
    assert_eq!(
        servers,
        vec![servers[0], servers[1], servers[0], servers[1]]
    );
    assert_ne!(servers[0], servers[1]);
    let total: u64 = (0..2).map(|s| h.stats.real_server(s).conns.get()).sum();
    assert_eq!(total, 4);
    h.p.expire_connections();
    assert_eq!(h.stats.conns_active.get(), 1);
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

/// Receives `frame` on `port` of the worker RSS picked (`arrival`), hands
/// whatever that worker hands over to its owner, and returns the frames sent out
/// of `out_port` by any worker, with the worker that handled it.
fn through_workers(
    workers: &mut [(Pipeline<TestPool>, Arc<WorkerStats>)],
    arrival: usize,
    frame: &[u8],
    port: usize,
    out_port: usize,
) -> Vec<(usize, VecBuf)> {
    workers[arrival].0.process(VecBuf::from_frame(frame), port);
    for owner in 0..workers.len() {
        let handed: Vec<VecBuf> = workers[arrival].0.handoff_queue(owner).drain(..).collect();
        for pkt in handed {
            workers[owner].0.process_handed(pkt);
        }
    }
    let mut out = Vec::new();
    for (w, (p, _)) in workers.iter_mut().enumerate() {
        out.extend(p.tx_queue(out_port).drain(..).map(|f| (w, f)));
    }
    out
}

#[test]
fn packets_of_connections_owned_elsewhere_are_handed_over() {
    let mut workers = workers(&nat_config("", 100), 2);
    // worker 1 owns client port 40002 ((40002 >> 1) % 2 == 1); the SYN lands on worker 0
    let client = sa("198.18.0.10:40002");
    workers[0]
        .0
        .process(VecBuf::from_frame(&syn("198.18.0.10:40002")), 0);
    assert_eq!(workers[0].1.handoff_packets.get(), 1);
    assert!(workers[0].0.tx_queue(1).is_empty());
    let handed: Vec<VecBuf> = workers[0].0.handoff_queue(1).drain(..).collect();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].rx_port(), 0);
    for pkt in handed {
        workers[1].0.process_handed(pkt);
    }
    let out: Vec<VecBuf> = workers[1].0.tx_queue(1).drain(..).collect();
    assert_eq!(out.len(), 1);
    let (_, ip) = sent(&out[0]);
    let rs = SocketAddr::new(ip.addrs.dst(), 8080);
    // the server's reply lands on worker 0 too: also handed to worker 1
    let reply = craft::tcp(
        rs_l2(RS1_MAC),
        rs,
        client,
        TcpFlags::SYN | TcpFlags::ACK,
        5,
        1,
        b"",
    );
    workers[0].0.process(VecBuf::from_frame(&reply), 1);
    let handed: Vec<VecBuf> = workers[0].0.handoff_queue(1).drain(..).collect();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].rx_port(), 1);
    workers[1]
        .0
        .process_handed(handed.into_iter().next().unwrap());
    assert_eq!(workers[1].0.tx_queue(0).len(), 1);
    // port 40004 stays on worker 0; ARP and ping are answered anywhere
    workers[0]
        .0
        .process(VecBuf::from_frame(&syn("198.18.0.10:40004")), 0);
    assert_eq!(workers[0].0.tx_queue(1).len(), 1);
    workers[1].0.process(
        VecBuf::from_frame(&craft::arp_request(
            CLIENT_MAC,
            "198.18.0.10".parse().unwrap(),
            "198.18.0.100".parse().unwrap(),
        )),
        0,
    );
    assert_eq!(workers[1].0.tx_queue(0).len(), 2);
    assert_eq!(workers[1].1.handoff_packets.get(), 0);
    for (_, s) in &workers {
        assert_eq!(s.dropped_total(), 0);
    }
}

/// Persistence with several workers: every connection of a client, from any of
/// its ports and whichever worker RSS hands it to, reaches the worker that holds
/// the client's template, so all go to one real server; the server's replies
/// reach that worker too. Clients of one persistence network share it.
#[test]
fn persistence_holds_across_workers_and_client_ports() {
    for (netmask, clients, modes) in [
        (32, ["198.18.0.10", "198.18.0.11"], ["nat", "fullnat"]),
        (24, ["198.18.0.10", "198.18.0.77"], ["nat", "fullnat"]),
    ] {
        for mode in modes {
            let lips = if mode == "fullnat" {
                "    local_addresses: [198.19.0.2]\n"
            } else {
                ""
            };
            let svc = format!(
                "  - name: sticky\n    vip: 198.18.0.101\n    port: 80\n    protocol: tcp\n    mode: {mode}\n    scheduler: rr\n    persistence: 300s\n    persistence_netmask: {netmask}\n{lips}    real_servers:\n      - {{ address: 198.19.0.10, port: 8080 }}\n      - {{ address: 198.19.0.11, port: 8080 }}\n"
            );
            // Static neighbours: the replies go out at once, not after ARP.
            let text = nat_config(&svc, 1000).replace(
                "neighbors:\n",
                "neighbors:\n  - { ip: 198.18.0.11, mac: \"02:00:00:00:00:11\" }\n  - { ip: 198.18.0.77, mac: \"02:00:00:00:00:77\" }\n",
            );
            let mut w = workers(&text, 2);
            let mut servers = Vec::new();
            for client in clients {
                let mut seen = std::collections::BTreeSet::new();
                let mut owners = std::collections::BTreeSet::new();
                for i in 0..100u16 {
                    let from = sa(&format!("{client}:{}", 30000 + i));
                    let syn = craft::tcp(
                        client_l2(),
                        from,
                        sa("198.18.0.101:80"),
                        TcpFlags::SYN,
                        1,
                        0,
                        b"",
                    );
                    let out = through_workers(&mut w, usize::from(i % 2), &syn, 0, 1);
                    assert_eq!(out.len(), 1, "{mode} /{netmask} {from}");
                    let (owner, frame) = &out[0];
                    let (_, ip) = sent(frame);
                    let rs = ip.addrs.dst();
                    let L4Header::Tcp { src_port, .. } = ip.l4.unwrap().header else {
                        panic!("not TCP")
                    };
                    seen.insert(rs);
                    owners.insert(*owner);
                    // The server's SYN-ACK, landing on the other worker, comes
                    // back to the client through the owner.
                    let to = SocketAddr::new(ip.addrs.src(), src_port);
                    let rs_mac = if rs == sa("198.19.0.10:1").ip() {
                        RS1_MAC
                    } else {
                        RS2_MAC
                    };
                    let reply = craft::tcp(
                        rs_l2(rs_mac),
                        SocketAddr::new(rs, 8080),
                        to,
                        TcpFlags::SYN | TcpFlags::ACK,
                        5,
                        2,
                        b"",
                    );
                    let back = through_workers(&mut w, 1 - *owner, &reply, 1, 0);
                    assert_eq!(back.len(), 1, "{mode} /{netmask} reply to {from}");
                    assert_eq!(back[0].0, *owner);
                    let (_, ip) = sent(&back[0].1);
                    assert_eq!(ip.addrs.dst(), from.ip());
                }
                assert_eq!(seen.len(), 1, "{mode} /{netmask} {client}: {seen:?}");
                assert_eq!(owners.len(), 1, "{mode} /{netmask} {client}: {owners:?}");
                servers.push(*seen.first().unwrap());
            }
            if netmask == 24 {
                // One /24: one template, one server.
                assert_eq!(servers[0], servers[1], "{mode}");
            }
            for (_, stats) in &w {
                assert_eq!(stats.dropped_total(), 0, "{mode} /{netmask}");
            }
        }
    }
}
