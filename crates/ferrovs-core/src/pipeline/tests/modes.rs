//! FULLNAT, DR and TUNNEL through the pipeline.

use super::*;
use crate::packet::icmp::{emit_error, IcmpError};
use crate::packet::{ethernet, EtherType, IpProtocol};
use std::net::SocketAddr;

const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);

fn config(mode: &str, extra: &str) -> String {
    fixture::appliance(&format!(
        r#"connections: {{ max: 100 }}
neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.18.0.10", mac: "02:00:00:00:00:10" }}
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: {mode}
    scheduler: rr
{extra}    real_servers:
      - {{ address: 198.19.0.10, port: 80 }}
"#
    ))
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

fn ip_of(frame: &[u8]) -> IpInfo {
    let info = parse_frame(frame, false).unwrap();
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    ip
}

fn checksums_ok(frame: &[u8]) {
    let info = parse_frame(frame, false).unwrap();
    let ip = ip_of(frame);
    if ip.addrs.src().is_ipv4() {
        assert!(Ipv4Packet::new_checked(&frame[14..])
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

#[test]
fn fullnat_rewrites_both_ends_and_replies_come_back_to_the_local_address() {
    let mut h = harness_with(&config(
        "fullnat",
        "    local_addresses: [198.19.0.2, 198.19.0.3]\n",
    ));
    let client = sa("198.18.0.10:40000");
    h.rx(
        craft::tcp(
            client_l2(),
            client,
            sa("198.18.0.100:80"),
            TcpFlags::SYN,
            1,
            0,
            b"",
        ),
        0,
    );
    let out = h.take_tx(1);
    assert_eq!(
        out.len(),
        1,
        "{:?}",
        DropReason::ALL
            .iter()
            .filter(|r| h.dropped(**r) > 0)
            .collect::<Vec<_>>()
    );
    checksums_ok(out[0].data());
    let ip = ip_of(out[0].data());
    let lip = ip.addrs.src();
    assert!(
        lip == "198.19.0.2".parse::<IpAddr>().unwrap()
            || lip == "198.19.0.3".parse::<IpAddr>().unwrap()
    );
    assert_eq!(ip.addrs.dst(), "198.19.0.10".parse::<IpAddr>().unwrap());
    let (lport, rport) = ip.ports().unwrap();
    assert!(lport >= 1024);
    assert_eq!(rport, 80);
    assert_eq!(&out[0].data()[0..6], &RS_MAC.0);

    // The server answers the local address; it needs no route to the client.
    let reply = craft::tcp(
        L2 {
            src: RS_MAC,
            dst: LAN_MAC,
        },
        sa("198.19.0.10:80"),
        SocketAddr::new(lip, lport),
        TcpFlags::SYN | TcpFlags::ACK,
        9,
        2,
        b"",
    );
    h.rx(reply, 1);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    checksums_ok(out[0].data());
    let ip = ip_of(out[0].data());
    assert_eq!(ip.addrs.src(), "198.18.0.100".parse::<IpAddr>().unwrap());
    assert_eq!(ip.addrs.dst(), client.ip());
    assert_eq!(ip.ports(), Some((80, 40000)));

    // ARP for the local addresses is answered on the lan port.
    h.rx(
        craft::arp_request(RS_MAC, "198.19.0.10".parse().unwrap(), lip_v4(lip)),
        1,
    );
    assert_eq!(h.take_tx(1).len(), 1);
}

fn lip_v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => panic!(),
    }
}

#[test]
fn fullnat_local_ports_run_out_and_come_back() {
    let ports = u32::from(u16::MAX) - 1024 + 1;
    let mut h = harness_with(
        &config("fullnat", "    local_addresses: [198.19.0.2]\n")
            .replace("max: 100", "max: 100000"),
    );
    let mut forwarded = 0u32;
    for i in 0..ports + 10 {
        let src = SocketAddr::new(
            IpAddr::from(Ipv4Addr::from(0xc6120000u32 + 10 + (i / 60000))),
            1024 + (i % 60000) as u16,
        );
        h.rx(
            craft::tcp(
                client_l2(),
                src,
                sa("198.18.0.100:80"),
                TcpFlags::SYN,
                1,
                0,
                b"",
            ),
            0,
        );
        forwarded += h.take_tx(1).len() as u32;
        h.p.garbage().clear();
    }
    assert_eq!(forwarded, ports);
    assert_eq!(h.dropped(DropReason::LocalPortExhausted), 10);
    // SYN_RECV connections expire after 60 s and give their ports back.
    h.p.set_time(61_000);
    for _ in 0..(ports / 64 + 10) {
        h.p.expire_connections();
    }
    assert_eq!(h.stats.conns_active.get(), 0);
    h.rx(
        craft::tcp(
            client_l2(),
            sa("198.18.0.10:1"),
            sa("198.18.0.100:80"),
            TcpFlags::SYN,
            1,
            0,
            b"",
        ),
        0,
    );
    assert_eq!(h.take_tx(1).len(), 1);
}

#[test]
fn dr_changes_only_the_mac_address() {
    let mut h = harness_with(&config("dr", ""));
    let syn = craft::tcp(
        client_l2(),
        sa("198.18.0.10:40000"),
        sa("198.18.0.100:80"),
        TcpFlags::SYN,
        1,
        0,
        b"",
    );
    h.rx(syn.clone(), 0);
    let out = h.take_tx(1);
    assert_eq!(out.len(), 1);
    let f = out[0].data();
    assert_eq!(&f[0..6], &RS_MAC.0);
    assert_eq!(&f[6..12], &LAN_MAC.0);
    assert_eq!(
        &f[12..],
        &syn[12..f.len()],
        "IP packet untouched (TTL included)"
    );
    // the connection is tracked from inbound packets only
    h.rx(
        craft::tcp(
            client_l2(),
            sa("198.18.0.10:40000"),
            sa("198.18.0.100:80"),
            TcpFlags::ACK,
            2,
            1,
            b"GET",
        ),
        0,
    );
    assert_eq!(h.take_tx(1).len(), 1);
    assert_eq!(h.stats.real_server(0).active.get(), 1);
}

#[test]
fn tunnel_encapsulates_and_refuses_what_does_not_fit() {
    let mut h = harness_with(&config("tunnel", ""));
    let client = sa("198.18.0.10:40000");
    let syn = craft::tcp(
        client_l2(),
        client,
        sa("198.18.0.100:80"),
        TcpFlags::SYN,
        1,
        0,
        b"",
    );
    h.rx(syn.clone(), 0);
    let out = h.take_tx(1);
    assert_eq!(out.len(), 1);
    let f = out[0].data();
    let outer = ip_of(f);
    assert_eq!(outer.protocol, IpProtocol::IPIP);
    assert_eq!(outer.addrs.src(), "198.19.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(outer.addrs.dst(), "198.19.0.10".parse::<IpAddr>().unwrap());
    let inner_len = parse_frame(&syn, false).unwrap().l3_end() - 14;
    assert_eq!(&f[34..34 + inner_len], &syn[14..14 + inner_len]);

    // A full-size segment with DF cannot take 20 more bytes: the client is told.
    let big = craft::tcp(
        client_l2(),
        client,
        sa("198.18.0.100:80"),
        TcpFlags::ACK,
        2,
        1,
        &[0u8; 1460],
    );
    h.rx(big, 0);
    assert!(h.take_tx(1).is_empty());
    assert_eq!(h.dropped(DropReason::MtuExceeded), 1);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let data = out[0].data();
    let info = parse_frame(data, false).unwrap();
    let ip = ip_of(data);
    assert_eq!(ip.protocol, IpProtocol::ICMP);
    assert_eq!(ip.addrs.dst(), client.ip());
    let outer = Ipv4Packet::new_checked(&data[14..info.l3_end()]).unwrap();
    let icmp = Icmpv4Packet::new_checked(outer.payload()).unwrap();
    assert_eq!(icmp.next_hop_mtu(), 1480);
    assert!(icmp.verify_checksum());
}

#[test]
fn a_tunnel_takes_a_new_configuration_at_its_next_packet() {
    // The burst path keeps each real server's outer header and MTU: a new
    // configuration (here lan's address and MTU) must reach an established
    // connection's very next packet.
    let text = config("tunnel", "");
    let mut h = harness_with(&text);
    let client = sa("198.18.0.10:40000");
    let vip = sa("198.18.0.100:80");
    let segment =
        |payload: &[u8]| craft::tcp(client_l2(), client, vip, TcpFlags::ACK, 2, 1, payload);
    let outer_source = |h: &mut Harness| {
        let out = h.take_tx(1);
        assert_eq!(out.len(), 1);
        ip_of(out[0].data()).addrs.src().to_string()
    };
    h.rx(
        craft::tcp(client_l2(), client, vip, TcpFlags::SYN, 1, 0, b""),
        0,
    );
    assert_eq!(outer_source(&mut h), "198.19.0.1");
    h.rx(segment(&[0; 1370]), 0);
    assert_eq!(outer_source(&mut h), "198.19.0.1");

    let changed = text
        .replace(fixture::LAN_V4, "198.19.0.9/24")
        .replace("device: net_null1,", "device: net_null1, mtu: 1400,");
    assert_ne!(changed, text);
    let cfg = fixture::parse(&changed);
    h.p.apply(WorkerCommand::Config(Arc::new(Dataplane::from_config(
        &cfg,
        &[OUR_MAC, LAN_MAC],
    ))));
    h.rx(segment(b"GET"), 0);
    assert_eq!(outer_source(&mut h), "198.19.0.9");
    // 1410 bytes fit 1500 but not 1400 with 20 more.
    h.rx(segment(&[0; 1370]), 0);
    assert!(h.take_tx(1).is_empty());
    assert_eq!(h.dropped(DropReason::MtuExceeded), 1);
    let active = h.stats.real_server(0).active.get();
    assert_eq!(active, 1, "the connection lived on");
}

#[test]
fn fullnat_icmp_errors_from_the_server_side_reach_the_client() {
    let mut h = harness_with(&config("fullnat", "    local_addresses: [198.19.0.2]\n"));
    let client = sa("198.18.0.10:40000");
    h.rx(
        craft::tcp(
            client_l2(),
            client,
            sa("198.18.0.100:80"),
            TcpFlags::SYN,
            1,
            0,
            b"",
        ),
        0,
    );
    let out = h.take_tx(1);
    let ip = ip_of(out[0].data());
    let (lport, _) = ip.ports().unwrap();
    let seg = craft::tcp(
        client_l2(),
        SocketAddr::new("198.19.0.2".parse().unwrap(), lport),
        sa("198.19.0.10:80"),
        TcpFlags::ACK,
        2,
        1,
        &[0; 1400],
    );
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
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let data = out[0].data();
    let info = parse_frame(data, false).unwrap();
    let ip = ip_of(data);
    assert_eq!(
        (ip.addrs.src(), ip.addrs.dst()),
        ("198.18.0.100".parse().unwrap(), client.ip())
    );
    let outer = Ipv4Packet::new_checked(&data[14..info.l3_end()]).unwrap();
    let icmp = Icmpv4Packet::new_checked(outer.payload()).unwrap();
    assert!(icmp.verify_checksum());
    let q = icmp.quoted_packet().unwrap();
    assert_eq!(
        (IpAddr::V4(q.src_addr()), IpAddr::V4(q.dst_addr())),
        (client.ip(), "198.18.0.100".parse().unwrap())
    );
    assert_eq!(&q.payload()[0..4], &[0x9c, 0x40, 0, 80]);
}

/// `sloppy` (IPVS `sloppy_tcp`) with a consistent scheduler: a flow one instance
/// opened continues through another that never saw its SYN, to the same real
/// server, in the state its packets show. A RST opens nothing, and without
/// `sloppy` only a SYN opens a connection.
#[test]
fn a_sloppy_dr_service_takes_over_flows_another_instance_opened() {
    let text = |sloppy: bool| {
        fixture::appliance(&format!(
            r#"connections: {{ max: 1000 }}
neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.19.0.11", mac: "02:00:00:00:01:11" }}
services:
  - {{ name: web, vip: 198.18.0.100, port: 80, protocol: tcp, mode: dr, scheduler: mh,
      sloppy: {sloppy}, real_servers: [{{ address: 198.19.0.10 }}, {{ address: 198.19.0.11 }}] }}
"#
        ))
    };
    let (mut first, mut second) = (harness_with(&text(true)), harness_with(&text(true)));
    let segment = |client: &str, flags: TcpFlags| {
        craft::tcp(
            client_l2(),
            sa(client),
            sa("198.18.0.100:80"),
            flags,
            7,
            1,
            b"",
        )
    };
    let mut servers = std::collections::BTreeSet::new();
    for i in 0..40 {
        let client = format!("198.18.0.{}:{}", 10 + i % 20, 40000 + i);
        first.rx(segment(&client, TcpFlags::SYN), 0);
        let opened = first.take_tx(1);
        second.rx(segment(&client, TcpFlags::ACK | TcpFlags::PSH), 0);
        let continued = second.take_tx(1);
        assert_eq!((opened.len(), continued.len()), (1, 1), "{client}");
        // Same real server: the same destination MAC.
        assert_eq!(
            opened[0].data()[0..6],
            continued[0].data()[0..6],
            "{client}"
        );
        servers.insert(continued[0].data()[0..6].to_vec());
    }
    assert_eq!(servers.len(), 2, "mh spreads the clients over both servers");
    // Taken over in ESTABLISHED (IPVS: an ACK in NONE), so counted active.
    let active: u64 = (0..2)
        .map(|s| second.stats.real_server(s).active.get())
        .sum();
    assert_eq!(active, 40);
    second.rx(segment("198.18.0.99:5000", TcpFlags::RST), 0);
    assert!(second.take_tx(1).is_empty());
    assert_eq!(second.dropped(DropReason::TcpNoConnection), 1);

    let mut strict = harness_with(&text(false));
    strict.rx(segment("198.18.0.10:40000", TcpFlags::ACK), 0);
    assert!(strict.take_tx(1).is_empty());
    assert_eq!(strict.dropped(DropReason::TcpNoConnection), 1);
    strict.rx(segment("198.18.0.10:40000", TcpFlags::SYN), 0);
    assert_eq!(strict.take_tx(1).len(), 1);
}
