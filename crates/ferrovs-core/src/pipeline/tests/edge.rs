//! Edge defence through the pipeline: access lists, connection limits of real
//! servers, per-source rates.

use super::*;
use crate::packet::parse::L4Header;
use crate::packet::TcpPacket;
use std::net::SocketAddr;

const VIP: &str = "198.18.0.100:80";

fn edge_config(service_keys: &str, rs1: &str, rs2: &str) -> String {
    fixture::appliance(&format!(
        r#"neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.19.0.11", mac: "02:00:00:00:01:11" }}
  - {{ ip: "198.18.0.10", mac: "02:00:00:00:00:10" }}
  - {{ ip: "198.18.0.11", mac: "02:00:00:00:00:10" }}
  - {{ ip: "198.18.0.200", mac: "02:00:00:00:00:10" }}
  - {{ ip: "198.18.0.150", mac: "02:00:00:00:00:10" }}
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    scheduler: rr
{service_keys}
    real_servers:
      - {{ address: 198.19.0.10, port: 8080{rs1} }}
      - {{ address: 198.19.0.11, port: 8080{rs2} }}
"#
    ))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn syn(client: &str) -> Vec<u8> {
    craft::tcp(
        l2_to_us(CLIENT_MAC),
        sa(client),
        sa(VIP),
        TcpFlags::SYN,
        1000,
        0,
        b"",
    )
}

fn apply_config(h: &mut Harness, text: &str) {
    let cfg = fixture::parse(text);
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    h.p.apply(WorkerCommand::Config(dp));
}

/// The TCP header of a frame the pipeline sent, every checksum checked.
fn tcp_of(frame: &VecBuf) -> (IpInfo, u32, u32, TcpFlags) {
    let data = frame.data();
    let info = parse_frame(data, false).expect("valid frame");
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    let l4 = usize::from(ip.l4.unwrap().offset);
    assert!(craft::l4_checksum_ok(
        &ip.addrs,
        ip.protocol,
        &data[l4..info.l3_end()]
    ));
    let t = TcpPacket::new_checked(&data[l4..info.l3_end()]).unwrap();
    let Some(L4Header::Tcp { flags, .. }) = ip.l4.map(|l| l.header) else {
        panic!("not TCP")
    };
    (ip, t.seq_number(), t.ack_number(), flags)
}

#[test]
fn a_denied_source_gets_nothing_and_an_allowed_one_is_served() {
    let keys =
        "    allow: [198.18.0.0/25, 198.18.0.192/27]\n    deny: [198.18.0.11, 198.18.0.192/28]";
    let mut h = harness_with(&edge_config(keys, "", ""));
    h.rx(syn("198.18.0.10:40000"), 0);
    assert_eq!(h.take_tx(1).len(), 1, "allowed");
    h.rx(syn("198.18.0.11:40000"), 0);
    h.rx(syn("198.18.0.200:40000"), 0);
    h.rx(syn("198.18.0.150:40000"), 0);
    assert!(h.take_tx(1).is_empty() && h.take_tx(0).is_empty());
    assert_eq!(h.dropped(DropReason::AclDenied), 3);
    h.p.expire_connections();
    assert_eq!(h.stats.conns_active.get(), 1, "refused SYNs open nothing");
}

#[test]
fn deny_action_rst_answers_a_refused_syn_with_a_reset() {
    let keys = "    deny: [198.18.0.0/24]\n    deny_action: rst";
    let mut h = harness_with(&edge_config(keys, "", ""));
    h.rx(syn("198.18.0.10:40000"), 0);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let (ip, seq, ack, flags) = tcp_of(&out[0]);
    assert_eq!(ip.addrs.src(), sa(VIP).ip());
    assert_eq!(ip.addrs.dst(), sa("198.18.0.10:40000").ip());
    assert_eq!(ip.ports(), Some((80, 40000)));
    assert_eq!((seq, ack, flags), (0, 1001, TcpFlags::RST | TcpFlags::ACK));
    assert_eq!(h.dropped(DropReason::AclDenied), 1);
    // Only a SYN is answered: a stray ACK from the range is not.
    h.rx(
        craft::tcp(
            l2_to_us(CLIENT_MAC),
            sa("198.18.0.10:40001"),
            sa(VIP),
            TcpFlags::ACK,
            5,
            6,
            b"",
        ),
        0,
    );
    assert!(h.take_tx(0).is_empty());
}

#[test]
fn a_changed_list_applies_to_new_connections_and_leaves_live_ones_alone() {
    let open = edge_config("", "", "");
    let mut h = harness_with(&open);
    h.rx(syn("198.18.0.10:40000"), 0);
    assert_eq!(h.take_tx(1).len(), 1);
    apply_config(&mut h, &edge_config("    deny: [198.18.0.10]", "", ""));
    // The live connection's next packet still goes through...
    h.rx(
        craft::tcp(
            l2_to_us(CLIENT_MAC),
            sa("198.18.0.10:40000"),
            sa(VIP),
            TcpFlags::ACK,
            1001,
            1,
            b"GET /",
        ),
        0,
    );
    assert_eq!(h.take_tx(1).len(), 1, "live connection untouched");
    // ... a new one from the same client does not.
    h.rx(syn("198.18.0.10:40002"), 0);
    assert!(h.take_tx(1).is_empty());
    assert_eq!(h.dropped(DropReason::AclDenied), 1);
    apply_config(&mut h, &open);
    h.rx(syn("198.18.0.10:40004"), 0);
    assert_eq!(h.take_tx(1).len(), 1, "allowed again");
}

#[test]
fn an_overloaded_server_is_skipped_and_takes_connections_again_below_its_minimum() {
    let text = edge_config("", ", max_connections: 2, min_connections: 1", "");
    let mut h = harness_with(&text);
    let mut to = Vec::new();
    for port in 0..8u16 {
        h.rx(syn(&format!("198.18.0.10:{}", 41000 + port)), 0);
        let out = h.take_tx(1);
        to.push(tcp_of(&out[0]).0.addrs.dst().to_string());
    }
    let first = to.iter().filter(|a| *a == "198.19.0.10").count();
    assert_eq!(first, 2, "{to:?}");
    // Both servers limited: new connections fail as overloaded.
    let both = edge_config("", ", max_connections: 2", ", max_connections: 6");
    apply_config(&mut h, &both);
    h.rx(syn("198.18.0.10:42000"), 0);
    assert!(h.take_tx(1).is_empty());
    assert_eq!(h.dropped(DropReason::RealServerOverloaded), 1);
    // Its connections expire (SYN_RECV's 60 s): below its minimum, it takes new
    // connections again.
    apply_config(&mut h, &text);
    h.p.set_time(61_000);
    h.p.expire_connections();
    let mut dsts = Vec::new();
    for port in 0..4u16 {
        h.rx(syn(&format!("198.18.0.10:{}", 43000 + port)), 0);
        dsts.push(tcp_of(&h.take_tx(1)[0]).0.addrs.dst().to_string());
    }
    assert!(
        dsts.iter().any(|a| a == "198.19.0.10"),
        "back below its minimum after the expiry: {dsts:?}"
    );
}

#[test]
fn a_source_over_its_rate_is_refused_and_others_are_not() {
    let keys = "    new_connections_per_source: 3/s";
    let mut h = harness_with(&edge_config(keys, "", ""));
    h.p.set_time(1000);
    for port in 0..5u16 {
        h.rx(syn(&format!("198.18.0.10:{}", 40000 + port)), 0);
    }
    assert_eq!(h.take_tx(1).len(), 3);
    assert_eq!(h.dropped(DropReason::SourceRateLimited), 2);
    h.rx(syn("198.18.0.11:40000"), 0);
    assert_eq!(h.take_tx(1).len(), 1, "another source");
    h.p.set_time(1400);
    h.rx(syn("198.18.0.10:40100"), 0);
    assert_eq!(h.take_tx(1).len(), 1, "a third of a second later: one more");
    h.rx(syn("198.18.0.10:40101"), 0);
    assert!(h.take_tx(1).is_empty());
}

#[test]
fn refusals_never_park_in_the_burst_path() {
    // A burst of SYNs, half denied with resets: every packet is accounted for.
    let keys = "    deny: [198.18.0.11]\n    deny_action: rst";
    let mut h = harness_with(&edge_config(keys, "", ""));
    let mut burst: Vec<VecBuf> = (0..16u16)
        .map(|i| {
            let client = if i % 2 == 0 {
                "198.18.0.10"
            } else {
                "198.18.0.11"
            };
            VecBuf::from_frame(&syn(&format!("{client}:{}", 44000 + i)))
        })
        .collect();
    h.p.process_burst(&mut burst, 0);
    assert_eq!(h.take_tx(1).len(), 8);
    let resets = h.take_tx(0);
    assert_eq!(resets.len(), 8);
    for r in &resets {
        assert_eq!(tcp_of(r).3, TcpFlags::RST | TcpFlags::ACK);
    }
    assert_eq!(h.dropped(DropReason::AclDenied), 8);
}
