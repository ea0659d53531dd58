//! NAT64 through the pipeline: an IPv6 client, an IPv6 VIP, IPv4 local addresses
//! and IPv4 real servers; whole connections both ways and their ICMP errors.

use super::*;
use crate::packet::icmp::{emit_error, IcmpError};
use crate::packet::{ethernet, icmpv6, EtherType, IpPair, IpProtocol};
use crate::sync::{SyncConn, SyncConsumer};
use std::net::SocketAddr;

const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);
const CLIENT: &str = "[2001:2::10]:40000";
const VIP: &str = "[2001:2::100]:80";

fn config(proto: &str, lan: &str) -> String {
    fixture::appliance_with(
        1,
        true,
        &format!(
            r#"connections: {{ max: 100 }}
neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.19.0.11", mac: "02:00:00:00:01:10" }}
  - {{ ip: "2001:2::10", mac: "02:00:00:00:00:10" }}
services:
  - name: web6
    vip: "2001:2::100"
    port: 80
    protocol: {proto}
    mode: fullnat
    scheduler: rr
    local_addresses: [198.19.0.2]
    real_servers:
      - {{ address: 198.19.0.10, port: 8080 }}
      - {{ address: 198.19.0.11, port: 8080 }}
"#
        ),
    )
    .replace("device: net_null1,", &format!("device: net_null1,{lan}"))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

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

fn ip_of(frame: &[u8]) -> IpInfo {
    *parse_frame(frame, false).unwrap().ip().unwrap()
}

/// The IPv4 or IPv6 header checksum (IPv4) and the TCP/UDP checksum verify.
fn checksums_ok(frame: &[u8]) {
    let info = parse_frame(frame, false).unwrap();
    let ip = ip_of(frame);
    if ip.addrs.src().is_ipv4() {
        assert!(Ipv4Packet::new_checked(&frame[14..info.l3_end()])
            .unwrap()
            .verify_checksum());
    }
    let l4 = usize::from(ip.l4.unwrap().offset);
    assert!(craft::l4_checksum_ok(
        &ip.addrs,
        ip.protocol,
        &frame[l4..info.l3_end()]
    ));
}

fn only(mut out: Vec<VecBuf>, h: &Harness) -> VecBuf {
    assert_eq!(
        out.len(),
        1,
        "dropped: {:?}",
        DropReason::ALL
            .iter()
            .filter(|r| h.dropped(**r) > 0)
            .collect::<Vec<_>>()
    );
    out.remove(0)
}

fn payload_of(frame: &[u8]) -> Vec<u8> {
    let info = parse_frame(frame, false).unwrap();
    let ip = ip_of(frame);
    let l4 = usize::from(ip.l4.unwrap().offset);
    let hl = if ip.protocol == IpProtocol::TCP {
        20
    } else {
        8
    };
    frame[l4 + hl..info.l3_end()].to_vec()
}

/// Opens a TCP connection from the client; returns the local endpoint and the
/// real server the SYN went to.
fn open(h: &mut Harness, client: SocketAddr) -> (SocketAddr, SocketAddr) {
    let syn = craft::tcp(client_l2(), client, sa(VIP), TcpFlags::SYN, 1, 0, b"");
    h.rx(syn, 0);
    let out = only(h.take_tx(1), h);
    checksums_ok(out.data());
    let ip = ip_of(out.data());
    let (lport, rport) = ip.ports().unwrap();
    (
        SocketAddr::new(ip.addrs.src(), lport),
        SocketAddr::new(ip.addrs.dst(), rport),
    )
}

#[test]
fn a_tcp_connection_from_an_ipv6_client_to_ipv4_servers_and_back() {
    let mut h = harness_with(&config("tcp", ""));
    let client = sa(CLIENT);
    let (local, real) = open(&mut h, client);
    assert_eq!(local.ip(), "198.19.0.2".parse::<IpAddr>().unwrap());
    assert!(local.port() >= 1024);
    assert_eq!(real.port(), 8080);

    // The server's SYN-ACK to the local address reaches the client as IPv6 from the VIP.
    h.rx(
        craft::tcp(
            rs_l2(),
            real,
            local,
            TcpFlags::SYN | TcpFlags::ACK,
            9,
            2,
            b"",
        ),
        1,
    );
    let back = only(h.take_tx(0), &h);
    checksums_ok(back.data());
    assert_eq!(&back.data()[0..6], &CLIENT_MAC.0);
    assert_eq!(&back.data()[12..14], &[0x86, 0xdd]);
    let ip = ip_of(back.data());
    assert_eq!(
        ip.addrs,
        IpPair::V6 {
            src: "2001:2::100".parse().unwrap(),
            dst: "2001:2::10".parse().unwrap()
        }
    );
    assert_eq!(ip.ports(), Some((80, 40000)));
    assert_eq!(ip.ttl, 63);

    // Data both ways, bytes intact.
    let req = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    h.rx(
        craft::tcp(
            client_l2(),
            client,
            sa(VIP),
            TcpFlags::ACK | TcpFlags::PSH,
            2,
            10,
            &req,
        ),
        0,
    );
    let fwd = only(h.take_tx(1), &h);
    checksums_ok(fwd.data());
    assert_eq!(payload_of(fwd.data()), req);
    let resp = vec![0x42u8; 1400];
    h.rx(
        craft::tcp(rs_l2(), real, local, TcpFlags::ACK, 10, 20, &resp),
        1,
    );
    let back = only(h.take_tx(0), &h);
    checksums_ok(back.data());
    assert_eq!(payload_of(back.data()), resp);
    assert_eq!(h.p.lb.len(), 1);
    let conn =
        h.p.lb
            .lookup::<Ipv6Addr>(&crate::conn::FlowKey::new(
                crate::conn::Proto::Tcp,
                "2001:2::10".parse().unwrap(),
                40000,
                "2001:2::100".parse().unwrap(),
                80,
            ))
            .and_then(|(id, _)| h.p.lb.get::<Ipv6Addr>(id))
            .unwrap();
    assert!(conn.is_nat64());
    assert_eq!(conn.state_name(), "ESTABLISHED");

    // A second client goes to the other server (rr).
    let (_, real2) = open(&mut h, sa("[2001:2::11]:40001"));
    assert_ne!(real, real2);
    assert!(h.stats.dropped(DropReason::NoConnection) == 0);
}

#[test]
fn udp_datagrams_both_ways() {
    let mut h = harness_with(&config("udp", ""));
    let client = sa(CLIENT);
    h.rx(craft::udp(client_l2(), client, sa(VIP), b"query"), 0);
    let out = only(h.take_tx(1), &h);
    checksums_ok(out.data());
    assert_eq!(payload_of(out.data()), b"query");
    let ip = ip_of(out.data());
    let (lport, rport) = ip.ports().unwrap();
    let local = SocketAddr::new(ip.addrs.src(), lport);
    let real = SocketAddr::new(ip.addrs.dst(), rport);
    // An answer without a UDP checksum (allowed over IPv4) gets one over IPv6.
    let mut answer = craft::udp(rs_l2(), real, local, b"answer");
    answer[14 + 20 + 6..14 + 20 + 8].fill(0);
    h.rx(answer, 1);
    let back = only(h.take_tx(0), &h);
    checksums_ok(back.data());
    assert_eq!(payload_of(back.data()), b"answer");
    assert_eq!(ip_of(back.data()).ports(), Some((80, 40000)));
}

#[test]
fn a_packet_too_big_for_the_ipv4_side_gets_packet_too_big_with_the_mtu_plus_20() {
    let mut h = harness_with(&config("tcp", " mtu: 1400,"));
    let client = sa(CLIENT);
    open(&mut h, client);
    // 40 + 20 + 1360 = 1420 bytes of IPv6: 1400 as IPv4, which fits.
    h.rx(
        craft::tcp(
            client_l2(),
            client,
            sa(VIP),
            TcpFlags::ACK,
            2,
            1,
            &[7; 1360],
        ),
        0,
    );
    let fwd = only(h.take_tx(1), &h);
    assert_eq!(parse_frame(fwd.data(), false).unwrap().l3_end() - 14, 1400);
    // One byte more does not.
    h.rx(
        craft::tcp(
            client_l2(),
            client,
            sa(VIP),
            TcpFlags::ACK,
            2,
            1,
            &[7; 1361],
        ),
        0,
    );
    assert!(h.take_tx(1).is_empty());
    assert_eq!(h.dropped(DropReason::MtuExceeded), 1);
    let ptb = only(h.take_tx(0), &h);
    let data = ptb.data();
    let info = parse_frame(data, false).unwrap();
    let ip = ip_of(data);
    assert_eq!(ip.addrs.dst(), client.ip());
    let msg = &data[14 + 40..info.l3_end()];
    assert_eq!(msg[0], Icmpv6Type::PACKET_TOO_BIG.0);
    assert_eq!(u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]), 1420);
}

#[test]
fn frag_needed_from_the_server_side_reaches_the_client_as_packet_too_big() {
    let mut h = harness_with(&config("tcp", ""));
    let client = sa(CLIENT);
    let (local, real) = open(&mut h, client);
    let seg = craft::tcp(rs_l2(), local, real, TcpFlags::ACK, 2, 1, &[0; 1400]);
    let mut err = vec![0u8; 14 + 600];
    let n = emit_error(
        &mut err[14..],
        IcmpError::FragmentationNeeded { next_hop_mtu: 1300 },
        "198.19.0.254".parse().unwrap(),
        &seg[14..],
    )
    .unwrap();
    err.truncate(14 + n);
    ethernet::emit_header(&mut err, LAN_MAC, RS_MAC, EtherType::IPV4).unwrap();
    h.rx(err, 1);
    let out = only(h.take_tx(0), &h);
    let data = out.data();
    let info = parse_frame(data, false).unwrap();
    let ip = ip_of(data);
    assert_eq!(
        (ip.addrs.src(), ip.addrs.dst()),
        ("2001:2::100".parse().unwrap(), client.ip())
    );
    let outer = Ipv6Packet::new_checked(&data[14..info.l3_end()]).unwrap();
    let icmp = Icmpv6Packet::new_checked(outer.payload()).unwrap();
    assert_eq!(icmp.msg_type(), Icmpv6Type::PACKET_TOO_BIG);
    let msg = outer.payload();
    assert_eq!(u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]), 1320);
    assert!((crate::packet::checksum::pseudo_header_v6(
        outer.src_addr(),
        outer.dst_addr(),
        IpProtocol::ICMPV6,
        msg.len() as u32
    ) + crate::packet::Sum::of(msg))
    .verifies());
    // The quote is the packet the client sent: client -> VIP, its ports.
    let quote = &msg[8..];
    assert_eq!(
        &quote[8..24],
        &"2001:2::10".parse::<Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(
        &quote[24..40],
        &"2001:2::100".parse::<Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(&quote[40..44], &[0x9c, 0x40, 0, 80]);
    let _ = icmpv6::MAX_ERROR_LEN;
}

#[test]
fn packet_too_big_from_the_client_side_reaches_the_server_as_frag_needed() {
    let mut h = harness_with(&config("tcp", ""));
    let client = sa(CLIENT);
    let (local, real) = open(&mut h, client);
    // What the client side saw: the VIP's packet to the client.
    let seg = craft::tcp(
        client_l2(),
        sa(VIP),
        client,
        TcpFlags::ACK,
        9,
        2,
        &[0; 1400],
    );
    let mut err = vec![0u8; 14 + 1280];
    let n = icmpv6::emit_packet_too_big(
        &mut err[14..],
        "2001:2::fe".parse().unwrap(),
        &seg[14..],
        1400,
    )
    .unwrap();
    err.truncate(14 + n);
    ethernet::emit_header(&mut err, OUR_MAC, CLIENT_MAC, EtherType::IPV6).unwrap();
    // Addressed to the VIP.
    h.rx(err, 0);
    let out = only(h.take_tx(1), &h);
    let data = out.data();
    let info = parse_frame(data, false).unwrap();
    let ip = ip_of(data);
    assert_eq!((ip.addrs.src(), ip.addrs.dst()), (local.ip(), real.ip()));
    let outer = Ipv4Packet::new_checked(&data[14..info.l3_end()]).unwrap();
    assert!(outer.verify_checksum());
    let icmp = Icmpv4Packet::new_checked(outer.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.next_hop_mtu(), 1380);
    let q = icmp.quoted_packet().unwrap();
    assert_eq!(
        (IpAddr::V4(q.src_addr()), IpAddr::V4(q.dst_addr())),
        (real.ip(), local.ip())
    );
    assert_eq!(
        &q.payload()[0..4],
        &[0x1f, 0x90, (local.port() >> 8) as u8, local.port() as u8]
    );
}

/// Two workers: whichever worker a packet arrives on, the client's packets and
/// the server's replies to the IPv4 local address reach the worker owning the
/// connection (the local port's share), and nothing is dropped.
#[test]
fn both_directions_reach_the_owner_with_two_workers() {
    let cfg = fixture::parse(
        &config("tcp", "")
            .replace("cores: [0, 1]", "cores: [0, 1, 2]")
            .replace("workers: { cores: [1] }", "workers: { cores: [1, 2] }"),
    );
    assert_eq!(cfg.workers.cores.len(), 2);
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    let limits = BalancerLimits::for_config(cfg.connections.max as usize, 2, &dp.services);
    let mut workers: Vec<(Pipeline<TestPool>, Arc<WorkerStats>)> = (0..2)
        .map(|w| {
            let stats = Arc::new(WorkerStats::new(dp.services.real_server_slots()));
            let lb = Balancer::new(
                &dp.services,
                limits,
                &crate::conn::Timeouts::default(),
                w,
                2,
            )
            .unwrap();
            let (tx, _rx) = bounded(64);
            let p = Pipeline::new(w, 2, dp.clone(), lb, TestPool, stats.clone(), tx, 32);
            (p, stats)
        })
        .collect();
    let mut through = |arrival: usize, frame: &[u8], port: usize, out_port: usize| {
        workers[arrival].0.process(VecBuf::from_frame(frame), port);
        for owner in 0..2 {
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
    };
    for i in 0..8u16 {
        let client = SocketAddr::new("2001:2::10".parse().unwrap(), 40000 + i);
        let syn = craft::tcp(client_l2(), client, sa(VIP), TcpFlags::SYN, 1, 0, b"");
        let out = through(usize::from(i % 2), &syn, 0, 1);
        assert_eq!(out.len(), 1, "client port {}", client.port());
        let (owner, frame) = &out[0];
        let ip = ip_of(frame.data());
        let (lport, rport) = ip.ports().unwrap();
        let local = SocketAddr::new(ip.addrs.src(), lport);
        let real = SocketAddr::new(ip.addrs.dst(), rport);
        // The reply arrives on either worker; the owner translates it.
        for arrival in 0..2 {
            let reply = craft::tcp(rs_l2(), real, local, TcpFlags::ACK, 9, 2, b"");
            let back = through(arrival, &reply, 1, 0);
            assert_eq!(back.len(), 1, "reply arriving on worker {arrival}");
            assert_eq!(back[0].0, *owner);
            assert_eq!(ip_of(back[0].1.data()).addrs.dst(), client.ip());
        }
    }
    for (_, s) in &workers {
        assert_eq!(s.dropped_total(), 0);
    }
}

/// `ctl conns` shows a NAT64 connection's local address and real server as the
/// IPv4 addresses they are, and finds it by its IPv4 real server.
#[test]
fn the_connection_listing_shows_ipv4_local_and_real_addresses() {
    let mut h = harness_with(&config("tcp", ""));
    let (local, real) = open(&mut h, sa(CLIENT));
    let (reply, _rx) = bounded(1);
    let query = ConnQuery {
        ipv6: true,
        from: 0,
        count: 1000,
        service: None,
        real_server: Some((real.ip(), real.port())),
        state: None,
        reply,
    };
    let chunk = h.p.dump::<Ipv6Addr>(&query);
    assert_eq!(chunk.conns.len(), 1);
    let c = chunk.conns[0];
    assert_eq!(c.client, (sa(CLIENT).ip(), 40000));
    assert_eq!(c.vip, (sa(VIP).ip(), 80));
    assert_eq!(c.local, (local.ip(), local.port()));
    assert_eq!(c.real, (real.ip(), real.port()));
    assert_eq!(c.mode, crate::conn::Mode::FullNat);
}

/// An instance of `config(proto)`, its balancer handing records to a ring when
/// `sync` is set; member `member` of two (FULLNAT local ports are shared out).
fn sync_instance(proto: &str, member: usize, sync: bool) -> (Harness, Option<SyncConsumer>) {
    let cfg = fixture::parse(&config(proto, ""));
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    let stats = Arc::new(WorkerStats::new(dp.services.real_server_slots()));
    let mut limits = BalancerLimits::for_config(100, 1, &dp.services);
    limits.local_port_share = (member, 2);
    let mut lb = Balancer::new(&dp.services, limits, &cfg.connections.timeouts, 0, 1).unwrap();
    let consumer = sync.then(|| {
        let (producer, consumer) = crate::sync::outbox(64);
        lb.set_sync(producer);
        consumer
    });
    let (tx, rx) = bounded(64);
    let h = Harness {
        p: Pipeline::new(0, 1, dp, lb, TestPool, stats.clone(), tx, 32),
        events: rx,
        stats,
    };
    (h, consumer)
}

/// A NAT64 connection is handed to connection sync like any other (TCP from
/// ESTABLISHED on, UDP as it opens), its IPv4 local address and real server
/// IPv4-mapped in an IPv6 record; a member that installs the record carries the
/// connection on, both directions, as the first did.
#[test]
fn nat64_connections_are_synced_and_carried_on_by_another_member() {
    let mapped = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => (IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => panic!("not IPv4: {a}"),
    };
    for proto in ["tcp", "udp"] {
        let (mut a, consumer) = sync_instance(proto, 0, true);
        let mut consumer = consumer.unwrap();
        let client = sa(CLIENT);
        let (local, real) = if proto == "tcp" {
            let (local, real) = open(&mut a, client);
            let synack = TcpFlags::SYN | TcpFlags::ACK;
            a.rx(craft::tcp(rs_l2(), real, local, synack, 9, 2, b""), 1);
            a.rx(
                craft::tcp(client_l2(), client, sa(VIP), TcpFlags::ACK, 2, 10, b""),
                0,
            );
            (local, real)
        } else {
            a.rx(craft::udp(client_l2(), client, sa(VIP), b"q"), 0);
            let ip = ip_of(a.take_tx(1)[0].data());
            let (l, r) = ip.ports().unwrap();
            (
                SocketAddr::new(ip.addrs.src(), l),
                SocketAddr::new(ip.addrs.dst(), r),
            )
        };
        let mut words = Vec::new();
        consumer.drain(&mut words, 100);
        let records: Vec<SyncConn> = words
            .iter()
            .map(|w| SyncConn::from_words(w).unwrap())
            .collect();
        assert_eq!(records.len(), 1, "{proto}");
        let r = records[0];
        assert_eq!(r.client, (client.ip(), client.port()), "{proto}");
        assert_eq!(r.vip, (sa(VIP).ip(), 80), "{proto}");
        assert_eq!(r.local, mapped(local), "{proto}");
        assert_eq!(r.real, mapped(real), "{proto}");

        let (mut b, _) = sync_instance(proto, 1, false);
        b.p.apply(WorkerCommand::SyncInstall(records));
        assert_eq!(b.stats.sync_installed.get(), 1, "{proto}");
        assert_eq!(b.stats.sync_refused.get(), 0, "{proto}");
        // The client's next packet leaves B as IPv4 from A's local address and
        // port to A's real server, with nothing scheduled anew.
        let next = if proto == "tcp" {
            craft::tcp(client_l2(), client, sa(VIP), TcpFlags::ACK, 2, 10, b"GET")
        } else {
            craft::udp(client_l2(), client, sa(VIP), b"again")
        };
        b.rx(next, 0);
        let out = only(b.take_tx(1), &b);
        checksums_ok(out.data());
        let ip = ip_of(out.data());
        let (l, rp) = ip.ports().unwrap();
        assert_eq!(
            (
                SocketAddr::new(ip.addrs.src(), l),
                SocketAddr::new(ip.addrs.dst(), rp)
            ),
            (local, real),
            "{proto}"
        );
        // The server's answer reaches the client as IPv6 from the VIP.
        let answer = if proto == "tcp" {
            craft::tcp(rs_l2(), real, local, TcpFlags::ACK, 10, 5, b"200")
        } else {
            craft::udp(rs_l2(), real, local, b"a")
        };
        b.rx(answer, 1);
        let back = only(b.take_tx(0), &b);
        checksums_ok(back.data());
        let ip = ip_of(back.data());
        assert_eq!(
            (ip.addrs.src(), ip.addrs.dst()),
            (sa(VIP).ip(), client.ip()),
            "{proto}"
        );
        assert_eq!(ip.ports().unwrap(), (80, client.port()), "{proto}");
    }
}

/// Records that would make a NAT64 connection of a service that is not NAT64,
/// or a plain one of a NAT64 service, or carry a mapped client, are refused.
#[test]
fn nat64_records_must_match_the_service() {
    let (mut b, _) = sync_instance("udp", 1, false);
    let v6 = |s: &str| (sa(s).ip(), sa(s).port());
    let good = SyncConn {
        proto: Proto::Udp,
        mode: crate::conn::Mode::FullNat,
        state: crate::conn::ConnState::Udp,
        timeout_ms: 1000,
        client: v6(CLIENT),
        vip: v6(VIP),
        local: v6("[::ffff:198.19.0.2]:2000"),
        real: v6("[::ffff:198.19.0.10]:8080"),
    };
    let unmapped = SyncConn {
        local: v6("[2001:2:0:19::2]:2000"),
        real: v6("[2001:2:0:19::10]:8080"),
        ..good
    };
    let half = SyncConn {
        real: v6("[2001:2:0:19::10]:8080"),
        ..good
    };
    let mapped_client = SyncConn {
        client: v6("[::ffff:198.18.0.10]:40000"),
        ..good
    };
    b.p.apply(WorkerCommand::SyncInstall(vec![
        unmapped,
        half,
        mapped_client,
    ]));
    assert_eq!(b.stats.sync_installed.get(), 0);
    assert_eq!(b.stats.sync_refused.get(), 3);
    b.p.apply(WorkerCommand::SyncInstall(vec![good]));
    assert_eq!(b.stats.sync_installed.get(), 1);
    assert_eq!(b.p.lb.len(), 1);
}
