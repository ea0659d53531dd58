//! Connection sync through the pipeline: what a worker hands the management core
//! when connections open and change state, and a second instance that installs
//! those records carrying the connections on, both directions, NAT and FULLNAT.

use super::*;
use crate::sync::{outbox, SyncConn, SyncConsumer};
use std::net::SocketAddr;

const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);

fn config() -> String {
    fixture::appliance(
        r#"connections: { max: 1000 }
neighbors:
  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }
  - { ip: "198.18.0.10", mac: "02:00:00:00:00:10" }
services:
  - { name: nat, vip: 198.18.0.100, port: 80, protocol: tcp, mode: nat,
      real_servers: [{ address: 198.19.0.10, port: 8080 }] }
  - { name: fnat, vip: 198.18.0.101, port: 80, protocol: tcp, mode: fullnat,
      local_addresses: [198.19.0.2], real_servers: [{ address: 198.19.0.10, port: 8080 }] }
  - { name: dns, vip: 198.18.0.100, port: 53, protocol: udp, mode: nat,
      real_servers: [{ address: 198.19.0.10, port: 53 }] }
"#,
    )
}

/// An instance whose balancer hands its records to a ring; `member` of 2.
fn instance(member: usize, sync: bool) -> (Harness, Option<SyncConsumer>) {
    let cfg = fixture::parse(&config());
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    let stats = Arc::new(WorkerStats::new(dp.services.real_server_slots()));
    let mut limits = BalancerLimits::for_config(1000, 1, &dp.services);
    limits.local_port_share = (member, 2);
    let mut lb = Balancer::new(&dp.services, limits, &cfg.connections.timeouts, 0, 1).unwrap();
    let consumer = sync.then(|| {
        let (p, c) = outbox(64);
        lb.set_sync(p);
        c
    });
    let (tx, rx) = bounded(64);
    let h = Harness {
        p: Pipeline::new(0, 1, dp, lb, TestPool, stats.clone(), tx, 32),
        events: rx,
        stats,
    };
    (h, consumer)
}

fn drain(c: &mut SyncConsumer) -> Vec<SyncConn> {
    let mut words = Vec::new();
    c.drain(&mut words, 1000);
    words
        .iter()
        .map(|w| SyncConn::from_words(w).unwrap())
        .collect()
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

/// The frame's IP source and destination, and its L4 ports.
fn endpoints(frame: &VecBuf) -> (SocketAddr, SocketAddr) {
    let info = parse_frame(frame.data(), false).unwrap();
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    let (s, d) = match ip.l4.unwrap().header {
        L4Header::Tcp {
            src_port, dst_port, ..
        }
        | L4Header::Udp { src_port, dst_port } => (src_port, dst_port),
        _ => panic!("not TCP/UDP"),
    };
    (
        SocketAddr::new(ip.addrs.src(), s),
        SocketAddr::new(ip.addrs.dst(), d),
    )
}

#[test]
fn connections_are_handed_over_from_established_on() {
    let (mut a, c) = instance(0, true);
    let mut c = c.unwrap();
    let client = sa("198.18.0.10:40000");
    let vip = sa("198.18.0.100:80");
    let segment = |flags: TcpFlags| craft::tcp(client_l2(), client, vip, flags, 1, 0, b"");
    // A half-open connection is not sent (as in IPVS): a SYN flood costs sync nothing.
    a.rx(segment(TcpFlags::SYN), 0);
    assert!(drain(&mut c).is_empty());
    a.rx(segment(TcpFlags::ACK), 0);
    let est = drain(&mut c);
    assert_eq!(est.len(), 1);
    let r = est[0];
    assert_eq!(
        (r.proto, r.mode, r.state, r.client, r.vip, r.real),
        (
            Proto::Tcp,
            crate::conn::Mode::Nat,
            crate::conn::ConnState::Tcp(crate::conn::TcpState::Established),
            (client.ip(), client.port()),
            (vip.ip(), 80),
            (sa("198.19.0.10:8080").ip(), 8080)
        )
    );
    assert!(
        r.timeout_ms > 890_000 && r.timeout_ms <= 900_000,
        "ESTABLISHED's 900 s"
    );
    // More packets in the same state hand over nothing; closing states do.
    a.rx(segment(TcpFlags::ACK), 0);
    assert!(drain(&mut c).is_empty());
    a.rx(segment(TcpFlags::FIN | TcpFlags::ACK), 0);
    let closing = drain(&mut c);
    assert_eq!(closing.len(), 1);
    assert_eq!(
        closing[0].state,
        crate::conn::ConnState::Tcp(crate::conn::TcpState::CloseWait)
    );
    // A UDP flow is handed over as it opens.
    a.rx(
        craft::udp(client_l2(), client, sa("198.18.0.100:53"), b"q"),
        0,
    );
    let udp = drain(&mut c);
    assert_eq!(udp.len(), 1);
    assert_eq!(udp[0].state, crate::conn::ConnState::Udp);
    assert_eq!(a.stats.sync_records.get(), 3);
    assert_eq!(a.stats.sync_records_dropped.get(), 0);
}

/// Instance A carries NAT and FULLNAT connections; B installs A's records and,
/// when the traffic moves to it, forwards both directions exactly as A did.
#[test]
fn an_installing_instance_carries_the_connections_on() {
    let (mut a, c) = instance(0, true);
    let mut c = c.unwrap();
    let (mut b, _) = instance(1, false);
    let client = sa("198.18.0.10:40000");
    let mut through_a = Vec::new();
    for vip in ["198.18.0.100:80", "198.18.0.101:80"] {
        a.rx(
            craft::tcp(client_l2(), client, sa(vip), TcpFlags::SYN, 1, 0, b""),
            0,
        );
        a.rx(
            craft::tcp(client_l2(), client, sa(vip), TcpFlags::ACK, 2, 1, b""),
            0,
        );
        let out = a.take_tx(1);
        assert_eq!(out.len(), 2);
        through_a.push(endpoints(&out[1]));
    }
    let records = drain(&mut c);
    assert_eq!(records.len(), 2, "each connection once it is established");
    b.p.apply(WorkerCommand::SyncInstall(records));
    assert_eq!(b.stats.sync_installed.get(), 2);
    assert_eq!(b.stats.sync_refused.get(), 0);
    assert_eq!(
        b.stats.real_server(0).active.get() + b.stats.real_server(1).active.get(),
        2
    );
    for (i, vip) in ["198.18.0.100:80", "198.18.0.101:80"]
        .into_iter()
        .enumerate()
    {
        // Client to server: no SYN, yet B forwards it as A did.
        b.rx(
            craft::tcp(client_l2(), client, sa(vip), TcpFlags::ACK, 3, 1, b"GET"),
            0,
        );
        let out = b.take_tx(1);
        assert_eq!(out.len(), 1, "{vip}");
        assert_eq!(endpoints(&out[0]), through_a[i], "{vip}");
        // Server to client: to the client address (NAT) or the local address
        // (FULLNAT) as A used it, translated back to the VIP.
        let (src, dst) = through_a[i];
        b.rx(
            craft::tcp(rs_l2(), dst, src, TcpFlags::ACK, 9, 4, b"200"),
            1,
        );
        let back = b.take_tx(0);
        assert_eq!(back.len(), 1, "{vip} reply");
        assert_eq!(endpoints(&back[0]), (sa(vip), client), "{vip} reply");
    }
    assert_eq!(b.stats.dropped_total(), 0);
    // Records B cannot take are refused and change nothing: a service it does
    // not have, a mode other than its service's, a real server it does not have,
    // a NAT connection whose real server would see another source than the client.
    let before = b.p.stats().conns_active.get();
    b.p.apply(WorkerCommand::SyncInstall(vec![
        SyncConn {
            vip: (sa("198.18.0.102:80").ip(), 80),
            ..established()
        },
        SyncConn {
            mode: crate::conn::Mode::Dr,
            ..established()
        },
        SyncConn {
            real: (sa("198.19.0.99:8080").ip(), 8080),
            ..established()
        },
    ]));
    assert_eq!(b.stats.sync_refused.get(), 3);
    assert_eq!(b.p.stats().conns_active.get(), before);
    // Nor does this one do anything here: a NAT connection whose real server
    // would see another source than the client (NAT, DR and TUNNEL records keep
    // only the endpoints that differ from the packet's).
    b.p.apply(WorkerCommand::SyncInstall(vec![SyncConn {
        client: (sa("198.18.0.11:7").ip(), 7),
        local: (sa("198.18.0.12:7").ip(), 7),
        ..established()
    }]));
    assert_eq!(b.stats.sync_refused.get(), 4);
    assert_eq!(b.p.stats().conns_active.get(), before);
}

/// An established NAT connection's record.
fn established() -> SyncConn {
    SyncConn {
        proto: Proto::Tcp,
        mode: crate::conn::Mode::Nat,
        state: crate::conn::ConnState::Tcp(crate::conn::TcpState::Established),
        timeout_ms: 1000,
        client: (sa("198.18.0.10:1").ip(), 1),
        vip: (sa("198.18.0.100:80").ip(), 80),
        local: (sa("198.18.0.10:1").ip(), 1),
        real: (sa("198.19.0.10:8080").ip(), 8080),
    }
}

/// A record whose client no connection could have opened with here (a martian
/// source, or one of our own addresses) is refused: the burst path forwards a
/// connection's packets without checking their source again (`ingress`).
#[test]
fn records_with_a_martian_or_own_client_are_refused() {
    let (mut b, _) = instance(1, false);
    let records = [
        "127.0.0.1",
        "224.0.0.5",
        "198.18.0.255",
        "198.18.0.100",
        "198.19.0.1",
    ]
    .iter()
    .map(|client| {
        let client = (client.parse().unwrap(), 40000);
        SyncConn {
            client,
            local: client,
            ..established()
        }
    })
    .collect();
    b.p.apply(WorkerCommand::SyncInstall(records));
    assert_eq!(b.stats.sync_refused.get(), 5);
    assert_eq!(b.stats.sync_installed.get(), 0);
    b.p.apply(WorkerCommand::SyncInstall(vec![established()]));
    assert_eq!(b.stats.sync_installed.get(), 1);
}
