//! The Proxy Protocol through the pipeline: the header ahead of the client's first
//! byte, sent again with it, and the sequence numbers of the rest translated.

use super::*;
use crate::packet::icmp::{emit_error, IcmpError};
use crate::packet::{ethernet, EtherType, TcpPacket};
use std::net::SocketAddr;

fn pp_config(mode: &str, version: &str) -> String {
    fixture::appliance_with(
        1,
        true,
        &format!(
            r#"neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.18.0.10", mac: "02:00:00:00:00:10" }}
  - {{ ip: "2001:2:0:19::10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "2001:2::10", mac: "02:00:00:00:00:10" }}
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: {mode}
    scheduler: rr
    proxy_protocol: {version}
{v4_locals}    real_servers:
      - {{ address: 198.19.0.10, port: 8080 }}
  - name: web6
    vip: "2001:2::100"
    port: 80
    protocol: tcp
    mode: {mode}
    scheduler: rr
    proxy_protocol: {version}
{v6_locals}    real_servers:
      - {{ address: "2001:2:0:19::10", port: 8080 }}
"#,
            v4_locals = if mode == "fullnat" {
                "    local_addresses: [198.19.0.2]\n"
            } else {
                ""
            },
            v6_locals = if mode == "fullnat" {
                "    local_addresses: [\"2001:2:0:19::2\"]\n"
            } else {
                ""
            },
        ),
    )
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A frame's TCP view: (addresses, ports, seq, ack, payload), checksums checked.
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
}

fn seg_of(frame: &VecBuf) -> Seg {
    let data = frame.data();
    let info = parse_frame(data, false).expect("valid frame");
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    let l4 = usize::from(ip.l4.unwrap().offset);
    assert!(
        craft::l4_checksum_ok(&ip.addrs, ip.protocol, &data[l4..info.l3_end()]),
        "TCP checksum"
    );
    if ip.addrs.src().is_ipv4() {
        assert!(Ipv4Packet::new_checked(&data[14..])
            .unwrap()
            .verify_checksum());
    }
    let t = TcpPacket::new_checked(&data[l4..info.l3_end()]).unwrap();
    let (sp, dp) = ip.ports().unwrap();
    Seg {
        src: SocketAddr::new(ip.addrs.src(), sp),
        dst: SocketAddr::new(ip.addrs.dst(), dp),
        seq: t.seq_number(),
        ack: t.ack_number(),
        payload: t.payload().to_vec(),
    }
}

const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 50_000;

/// Runs a connection with a Proxy Protocol header from `client` to `vip` through
/// `mode`, checking every segment's numbers; returns the header sent.
fn run_connection(
    mode: &str,
    version: &str,
    client: &str,
    vip: &str,
    rs_port_l2: MacAddr,
) -> Vec<u8> {
    let mut h = harness_with(&pp_config(mode, version));
    let (client, vip) = (sa(client), sa(vip));
    let to_us = l2_to_us(CLIENT_MAC);
    let from_rs = L2 {
        src: rs_port_l2,
        dst: LAN_MAC,
    };
    // SYN: forwarded as it is (no header before the first byte).
    h.rx(
        craft::tcp(to_us, client, vip, TcpFlags::SYN, CLIENT_ISN, 0, b""),
        0,
    );
    let out = h.take_tx(1);
    assert_eq!(out.len(), 1);
    let syn = seg_of(&out[0]);
    assert_eq!((syn.seq, syn.payload.len()), (CLIENT_ISN, 0));
    let (server, seen_client) = (syn.dst, syn.src);
    // SYN-ACK: its acknowledgement is of the SYN, before the header.
    h.rx(
        craft::tcp(
            from_rs,
            server,
            seen_client,
            TcpFlags::SYN | TcpFlags::ACK,
            SERVER_ISN,
            CLIENT_ISN + 1,
            b"",
        ),
        1,
    );
    let synack = seg_of(&h.take_tx(0)[0]);
    assert_eq!((synack.src, synack.dst), (vip, client));
    assert_eq!((synack.seq, synack.ack), (SERVER_ISN, CLIENT_ISN + 1));
    // The handshake's ACK: no byte, not shifted.
    let ack = |h: &mut Harness, seq: u32, data: &[u8]| {
        h.rx(
            craft::tcp(
                to_us,
                client,
                vip,
                TcpFlags::ACK | TcpFlags::PSH,
                seq,
                SERVER_ISN + 1,
                data,
            ),
            0,
        );
        h.take_tx(1)
    };
    let out = ack(&mut h, CLIENT_ISN + 1, b"");
    assert_eq!(out.len(), 1);
    assert_eq!(seg_of(&out[0]).seq, CLIENT_ISN + 1);
    // The first byte: the header first, at the first byte's place, then the data
    // after it.
    let out = ack(&mut h, CLIENT_ISN + 1, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(out.len(), 2, "header, then data");
    let header = seg_of(&out[0]);
    let data = seg_of(&out[1]);
    let len = header.payload.len() as u32;
    assert_eq!((header.src, header.dst), (seen_client, server));
    assert_eq!((header.seq, header.ack), (CLIENT_ISN + 1, SERVER_ISN + 1));
    assert_eq!((data.seq, data.ack), (CLIENT_ISN + 1 + len, SERVER_ISN + 1));
    assert_eq!(data.payload, b"GET / HTTP/1.0\r\n\r\n");
    // Sent again (a retransmission): the same header with the same numbers.
    let again = ack(&mut h, CLIENT_ISN + 1, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(again.len(), 2);
    assert_eq!(seg_of(&again[0]).payload, header.payload);
    assert_eq!(seg_of(&again[0]).seq, header.seq);
    assert_eq!(seg_of(&again[1]).seq, data.seq);
    // The server acknowledges header and request, and answers.
    let req = 18;
    h.rx(
        craft::tcp(
            from_rs,
            server,
            seen_client,
            TcpFlags::ACK | TcpFlags::PSH,
            SERVER_ISN + 1,
            CLIENT_ISN + 1 + len + req,
            b"HTTP/1.0 200 OK\r\n",
        ),
        1,
    );
    let answer = seg_of(&h.take_tx(0)[0]);
    assert_eq!(
        (answer.seq, answer.ack),
        (SERVER_ISN + 1, CLIENT_ISN + 1 + req)
    );
    // The server has the header: the client's next bytes are only shifted, on
    // the burst path for IPv4.
    let out = ack(&mut h, CLIENT_ISN + 1 + req, b"more");
    assert_eq!(out.len(), 1);
    assert_eq!(seg_of(&out[0]).seq, CLIENT_ISN + 1 + req + len);
    // An ICMP error from the server side about that segment reaches the client
    // quoting the segment as the client sent it.
    let sent = out[0].data().to_vec();
    let router = match server.ip() {
        IpAddr::V4(_) => "198.19.0.254".parse().unwrap(),
        IpAddr::V6(_) => "2001:2:0:19::fe".parse().unwrap(),
    };
    let mut err = vec![0u8; 14 + 600];
    let n = match router {
        IpAddr::V4(r) => emit_error(
            &mut err[14..],
            IcmpError::FragmentationNeeded { next_hop_mtu: 1280 },
            r,
            &sent[14..],
        )
        .unwrap(),
        IpAddr::V6(r) => {
            crate::packet::icmpv6::emit_packet_too_big(&mut err[14..], r, &sent[14..], 1280)
                .unwrap()
        }
    };
    err.truncate(14 + n);
    let ethertype = if router.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    ethernet::emit_header(&mut err, LAN_MAC, rs_port_l2, ethertype).unwrap();
    h.rx(err, 1);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1, "the error reaches the client");
    let quote_seq = {
        let f = out[0].data();
        // Outer IP, ICMP header (8), quoted IP header, then TCP: seq at 4.
        let (outer, inner) = if router.is_ipv4() { (20, 20) } else { (40, 40) };
        let at = 14 + outer + 8 + inner + 4;
        u32::from_be_bytes(f[at..at + 4].try_into().unwrap())
    };
    assert_eq!(
        quote_seq,
        CLIENT_ISN + 1 + req,
        "the client's own numbering"
    );
    header.payload
}

#[test]
fn nat_v1_ipv4_sends_the_text_header_ahead_of_the_data() {
    let header = run_connection(
        "nat",
        "v1",
        "198.18.0.10:40000",
        "198.18.0.100:80",
        MacAddr([2, 0, 0, 0, 1, 0x10]),
    );
    assert_eq!(header, b"PROXY TCP4 198.18.0.10 198.18.0.100 40000 80\r\n");
}

#[test]
fn fullnat_v2_ipv6_sends_the_binary_header_with_the_clients_address() {
    let header = run_connection(
        "fullnat",
        "v2",
        "[2001:2::10]:40000",
        "[2001:2::100]:80",
        MacAddr([2, 0, 0, 0, 1, 0x10]),
    );
    assert_eq!(header.len(), 52);
    assert_eq!(&header[12..16], &[0x21, 0x21, 0, 36]);
    let client: std::net::Ipv6Addr = "2001:2::10".parse().unwrap();
    assert_eq!(
        header[16..32],
        client.octets(),
        "the client, not the local address"
    );
}

#[test]
fn fullnat_v1_ipv4_and_nat_v2_ipv6() {
    let header = run_connection(
        "fullnat",
        "v1",
        "198.18.0.10:40000",
        "198.18.0.100:80",
        MacAddr([2, 0, 0, 0, 1, 0x10]),
    );
    assert_eq!(header, b"PROXY TCP4 198.18.0.10 198.18.0.100 40000 80\r\n");
    let header = run_connection(
        "nat",
        "v2",
        "[2001:2::10]:40000",
        "[2001:2::100]:80",
        MacAddr([2, 0, 0, 0, 1, 0x10]),
    );
    assert_eq!(&header[12..14], &[0x21, 0x21]);
}
