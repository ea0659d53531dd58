//! The IPVS service forms through the pipeline: all-port services (port 0 with
//! persistence) and one-packet scheduling (`ops`).

use super::*;
use crate::packet::{IpProtocol, UdpPacket};
use std::net::SocketAddr;

const RS1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);
const RS2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x11]);

fn cfg(services: &str) -> String {
    fixture::appliance(&format!(
        r#"connections: {{ max: 100 }}
neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.19.0.11", mac: "02:00:00:00:01:11" }}
  - {{ ip: "198.18.0.10", mac: "02:00:00:00:00:10" }}
services:
{services}"#
    ))
}

/// An all-port service in `mode` (persistent, rr over two servers without a
/// port), and a service of its own on the VIP's port 80.
fn all_ports(mode: &str, extra: &str) -> String {
    cfg(&format!(
        r#"  - name: all
    vip: 198.18.0.100
    port: 0
    protocol: tcp
    mode: {mode}
    scheduler: rr
    persistence: 300s
{extra}    real_servers:
      - {{ address: 198.19.0.10 }}
      - {{ address: 198.19.0.11 }}
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    real_servers:
      - {{ address: 198.19.0.11, port: 8080 }}
"#
    ))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

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

/// The one frame sent on `port`, parsed, its checksums checked.
fn one_sent(h: &mut Harness, port: usize) -> (VecBuf, IpInfo) {
    let mut out = h.take_tx(port);
    let dropped: Vec<_> = DropReason::ALL
        .iter()
        .filter(|r| h.dropped(**r) > 0)
        .collect();
    assert_eq!(out.len(), 1, "dropped: {dropped:?}");
    let frame = out.remove(0);
    let info = parse_frame(frame.data(), false).unwrap();
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    if ip.addrs.src().is_ipv4() && ip.protocol != IpProtocol::IPIP {
        assert!(Ipv4Packet::new_checked(&frame.data()[14..])
            .unwrap()
            .verify_checksum());
        let l4 = usize::from(ip.l4.unwrap().offset);
        assert!(craft::l4_checksum_ok(
            &ip.addrs,
            ip.protocol,
            &frame.data()[l4..info.l3_end()]
        ));
    }
    (frame, ip)
}

fn syn(client: SocketAddr, to: SocketAddr) -> Vec<u8> {
    craft::tcp(client_l2(), client, to, TcpFlags::SYN, 1, 0, b"")
}

#[test]
fn every_port_of_a_client_goes_to_one_server_on_the_port_it_was_sent_to() {
    let mut h = harness_with(&all_ports("nat", ""));
    let client = ip("198.18.0.10");
    let mut servers = Vec::new();
    for (i, port) in [443u16, 8443, 22, 443].into_iter().enumerate() {
        let from = SocketAddr::new(client, 40000 + i as u16);
        h.rx(syn(from, SocketAddr::new(ip("198.18.0.100"), port)), 0);
        let (_, sent) = one_sent(&mut h, 1);
        assert_eq!(sent.ports(), Some((from.port(), port)), "same port");
        assert_eq!(sent.addrs.src(), client);
        servers.push(sent.addrs.dst());
    }
    assert!(servers.iter().all(|s| *s == servers[0]), "{servers:?}");
    // Another client is scheduled anew: rr gives it the other server.
    h.rx(syn(sa("198.18.0.11:40000"), sa("198.18.0.100:443")), 0);
    let (_, other) = one_sent(&mut h, 1);
    assert_ne!(other.addrs.dst(), servers[0]);
    // The server's reply comes from the port the client sent to, back as the VIP's.
    let rs = servers[0];
    let mac = if rs == ip("198.19.0.10") {
        RS1_MAC
    } else {
        RS2_MAC
    };
    let reply = craft::tcp(
        rs_l2(mac),
        SocketAddr::new(rs, 8443),
        sa("198.18.0.10:40001"),
        TcpFlags::SYN | TcpFlags::ACK,
        9,
        2,
        b"",
    );
    h.rx(reply, 1);
    let (frame, back) = one_sent(&mut h, 0);
    assert_eq!(&frame.data()[0..6], &CLIENT_MAC.0);
    assert_eq!(back.addrs.src(), ip("198.18.0.100"));
    assert_eq!(back.ports(), Some((8443, 40001)));
    // Port 80 has a service of its own, which wins over the all-port one.
    h.rx(syn(sa("198.18.0.10:40009"), sa("198.18.0.100:80")), 0);
    let (_, web) = one_sent(&mut h, 1);
    assert_eq!(
        (web.addrs.dst(), web.ports()),
        (ip("198.19.0.11"), Some((40009, 8080)))
    );
    let all = h.p.dp.services.by_name("all").unwrap();
    assert_eq!(all.address(), "198.18.0.100:0");
    assert_eq!(h.p.lb.len(), 6);
}

#[test]
fn an_all_port_fullnat_service_keeps_the_port_and_translates_replies_back() {
    let mut h = harness_with(&all_ports("fullnat", "    local_addresses: [198.19.0.2]\n"));
    let client = sa("198.18.0.10:40000");
    h.rx(syn(client, sa("198.18.0.100:8443")), 0);
    let (_, out) = one_sent(&mut h, 1);
    assert_eq!(out.addrs.src(), ip("198.19.0.2"));
    let (lport, rport) = out.ports().unwrap();
    assert_eq!(rport, 8443);
    let rs = out.addrs.dst();
    h.rx(syn(sa("198.18.0.10:40001"), sa("198.18.0.100:25")), 0);
    let (_, second) = one_sent(&mut h, 1);
    assert_eq!((second.addrs.dst(), second.ports().unwrap().1), (rs, 25));
    let mac = if rs == ip("198.19.0.10") {
        RS1_MAC
    } else {
        RS2_MAC
    };
    let reply = craft::tcp(
        rs_l2(mac),
        SocketAddr::new(rs, 8443),
        SocketAddr::new(ip("198.19.0.2"), lport),
        TcpFlags::SYN | TcpFlags::ACK,
        9,
        2,
        b"",
    );
    h.rx(reply, 1);
    let (_, back) = one_sent(&mut h, 0);
    assert_eq!(back.addrs.src(), ip("198.18.0.100"));
    assert_eq!(back.addrs.dst(), client.ip());
    assert_eq!(back.ports(), Some((8443, 40000)));
}

#[test]
fn an_all_port_dr_service_changes_only_the_mac() {
    let mut h = harness_with(&all_ports("dr", ""));
    h.rx(syn(sa("198.18.0.10:40000"), sa("198.18.0.100:993")), 0);
    let (frame, out) = one_sent(&mut h, 1);
    assert_eq!(out.addrs.dst(), ip("198.18.0.100"));
    assert_eq!(out.ports(), Some((40000, 993)));
    let mac = frame.data()[0..6].to_vec();
    assert!(mac == RS1_MAC.0 || mac == RS2_MAC.0);
    h.rx(syn(sa("198.18.0.10:40002"), sa("198.18.0.100:25")), 0);
    let (again, _) = one_sent(&mut h, 1);
    assert_eq!(again.data()[0..6].to_vec(), mac, "persistence: same server");
}

fn ops(mode: &str) -> String {
    cfg(&format!(
        r#"  - name: dns
    vip: 198.18.0.100
    port: 53
    protocol: udp
    mode: {mode}
    scheduler: rr
    ops: true
    real_servers:
      - {{ address: 198.19.0.10 }}
      - {{ address: 198.19.0.11 }}
"#
    ))
}

#[test]
fn ops_schedules_every_datagram_alone_and_keeps_no_connection() {
    let mut h = harness_with(&ops("nat"));
    let client = sa("198.18.0.10:5000");
    let mut servers = Vec::new();
    for _ in 0..4 {
        h.rx(
            craft::udp(client_l2(), client, sa("198.18.0.100:53"), b"query"),
            0,
        );
        let (_, out) = one_sent(&mut h, 1);
        assert_eq!(out.ports(), Some((5000, 53)));
        assert_eq!(out.addrs.src(), client.ip());
        servers.push(out.addrs.dst());
    }
    let (a, b) = (ip("198.19.0.10"), ip("198.19.0.11"));
    assert!(
        servers == [a, b, a, b] || servers == [b, a, b, a],
        "{servers:?}"
    );
    assert_eq!(h.p.lb.len(), 0, "no connection kept");
    assert_eq!(h.stats.real_server(0).conns.get(), 2);
    assert_eq!(h.stats.real_server(1).conns.get(), 2);
    // Both servers' answers leave with the VIP as their source.
    for (rs, mac) in [(a, RS1_MAC), (b, RS2_MAC)] {
        let answer = craft::udp(rs_l2(mac), SocketAddr::new(rs, 53), client, b"answer");
        h.rx(answer, 1);
        let (frame, back) = one_sent(&mut h, 0);
        assert_eq!(back.addrs.src(), ip("198.18.0.100"));
        assert_eq!(back.addrs.dst(), client.ip());
        assert_eq!(back.ports(), Some((53, 5000)));
        let l4 = usize::from(back.l4.unwrap().offset);
        let udp = UdpPacket::new_checked(&frame.data()[l4..]).unwrap();
        assert_eq!(udp.payload(), b"answer");
    }
    assert_eq!(h.stats.real_server(0).out_packets.get(), 1);
    // A datagram from another port of the server is no answer of the service.
    h.rx(
        craft::udp(rs_l2(RS1_MAC), sa("198.19.0.10:54"), client, b"x"),
        1,
    );
    assert!(h.take_tx(0).is_empty());
    assert_eq!(h.p.lb.len(), 0);
}

#[test]
fn ops_in_dr_sends_each_datagram_on_to_its_own_server() {
    let mut h = harness_with(&ops("dr"));
    let mut macs = Vec::new();
    for _ in 0..4 {
        h.rx(
            craft::udp(
                client_l2(),
                sa("198.18.0.10:5000"),
                sa("198.18.0.100:53"),
                b"q",
            ),
            0,
        );
        let (frame, out) = one_sent(&mut h, 1);
        assert_eq!(out.addrs.dst(), ip("198.18.0.100"));
        macs.push(frame.data()[0..6].to_vec());
    }
    assert_ne!(macs[0], macs[1]);
    assert_eq!(macs[0], macs[2]);
    assert_eq!(h.p.lb.len(), 0);
}

/// A connection of an all-port service another member carries is installed
/// with the ports it has (the real server listed with port 0 serves it), and
/// its replies are translated back.
#[test]
fn a_synced_connection_of_an_all_port_service_is_installed_and_carried() {
    use crate::conn::{ConnState, Mode, TcpState};
    use crate::sync::SyncConn;
    let mut h = harness_with(&all_ports("nat", ""));
    let ep = |s: &str| {
        let a = sa(s);
        (a.ip(), a.port())
    };
    let rec = |real: &str| SyncConn {
        proto: Proto::Tcp,
        mode: Mode::Nat,
        state: ConnState::Tcp(TcpState::Established),
        timeout_ms: 60_000,
        client: ep("198.18.0.10:40000"),
        vip: ep("198.18.0.100:8443"),
        local: ep("198.18.0.10:40000"),
        real: ep(real),
    };
    // Another port of the server is not what this service would have done.
    h.p.apply(WorkerCommand::SyncInstall(vec![rec("198.19.0.11:9999")]));
    assert_eq!(h.p.lb.len(), 0);
    h.p.apply(WorkerCommand::SyncInstall(vec![rec("198.19.0.11:8443")]));
    assert_eq!(h.p.lb.len(), 1);
    let reply = craft::tcp(
        rs_l2(RS2_MAC),
        sa("198.19.0.11:8443"),
        sa("198.18.0.10:40000"),
        TcpFlags::ACK,
        9,
        2,
        b"data",
    );
    h.rx(reply, 1);
    let (_, back) = one_sent(&mut h, 0);
    assert_eq!(back.addrs.src(), ip("198.18.0.100"));
    assert_eq!(back.ports(), Some((8443, 40000)));
}
