//! NAT mode end to end: real HTTP and UDP clients and servers in network namespaces,
//! balanced by a real ferrovs process.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_nat -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::time::Duration;

const VIP: &str = "198.18.0.100";

fn two_servers(port: u16) -> Vec<(String, u16, u32)> {
    vec![
        (Topology::rs_addr(0), port, 1),
        (Topology::rs_addr(1), port, 1),
    ]
}

fn drops(f: &Ferrovs, reason: &str) -> f64 {
    f.metric(&format!(
        "ferrovs_worker_dropped_packets_total{{worker=\"0\",reason=\"{reason}\"}}"
    ))
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn rr_and_wrr_spread_http_requests() {
    let mut t = Topology::new("rr", 2);
    t.http_servers(8080);
    let weighted = vec![
        (Topology::rs_addr(0), 8080, 1),
        (Topology::rs_addr(1), 8080, 3),
    ];
    let services = nat_service("rr", VIP, 80, "tcp", "rr", &two_servers(8080), "")
        + &nat_service("wrr", "198.18.0.101", 80, "tcp", "wrr", &weighted, "");
    let cfg = t.config(&services, "");
    let f = t.lab.ferrovs(&t.lb, &cfg);

    let rr = tally(&t.curl_many("http://198.18.0.100/", 20));
    println!("rr  over 20 requests: {rr:?}");
    assert_eq!(rr, vec![("rs0".into(), 10), ("rs1".into(), 10)]);

    let wrr = tally(&t.curl_many("http://198.18.0.101/", 40));
    println!("wrr (1:3) over 40 requests: {wrr:?}");
    assert_eq!(wrr, vec![("rs0".into(), 10), ("rs1".into(), 30)]);

    let m = f.metrics();
    assert_eq!(
        sample(&m, "ferrovs_service_connections_total{service=\"rr\"}"),
        20.0
    );
    assert_eq!(
        sample(&m, "ferrovs_real_server_connections_total{service=\"wrr\",real_server=\"198.19.0.11:8080\"}"),
        30.0
    );
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn wlc_shares_load_under_wrk() {
    let mut t = Topology::new("wlc", 2);
    t.http_servers(8080);
    let cfg = t.config(
        &nat_service("web", VIP, 80, "tcp", "wlc", &two_servers(8080), ""),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    // A new connection per request, so the scheduler decides every time.
    let out = t.lab.exec_ok(
        &t.client,
        &[
            "wrk",
            "-t1",
            "-c16",
            "-d4s",
            "-H",
            "Connection: close",
            "http://198.18.0.100/",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (requests, errors, rps) = wrk_summary(&text);
    let m = f.metrics();
    let per: Vec<f64> = (0..2)
        .map(|i| {
            sample(
                &m,
                &format!(
                    "ferrovs_real_server_connections_total{{service=\"web\",real_server=\"{}:8080\"}}",
                    Topology::rs_addr(i)
                ),
            )
        })
        .collect();
    println!("wlc, wrk -c16 Connection: close: {requests} requests, {errors} errors, {rps:.0} req/s; connections per server {per:?}");
    assert!(requests > 100, "{text}");
    assert_eq!(errors, 0, "{text}");
    let total: f64 = per.iter().sum();
    // One connection per request, plus those still open when wrk stopped.
    assert!(
        total >= requests as f64 && total <= requests as f64 + 32.0,
        "{total} connections for {requests} requests"
    );
    for p in &per {
        assert!(*p > total * 0.35, "unbalanced: {per:?}");
    }
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn mh_spreads_clients_and_keeps_each_on_its_server() {
    let mut t = Topology::new("mh", 2);
    t.http_servers(8080);
    let cfg = t.config(
        &nat_service("web", VIP, 80, "tcp", "mh", &two_servers(8080), ""),
        "",
    );
    let clients: Vec<String> = (20..60).map(|i| format!("198.18.0.{i}")).collect();
    for c in &clients {
        t.lab.exec_ok(
            &t.client,
            &["ip", "addr", "add", &format!("{c}/24"), "dev", "eth0"],
        );
    }
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let ask = |src: &str| {
        let out = t.lab.exec(
            &t.client,
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "--interface",
                src,
                "http://198.18.0.100/",
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let first: Vec<String> = clients.iter().map(|c| ask(c)).collect();
    let share = tally(&first);
    println!("mh over {} client addresses: {share:?}", clients.len());
    assert_eq!(share.len(), 2, "every server gets clients: {share:?}");
    assert!(share.iter().all(|(_, n)| *n >= 8), "{share:?}");
    // Maglev hashes the source address: a client always lands on the same server.
    for (c, was) in clients.iter().zip(&first).take(10) {
        for _ in 0..3 {
            assert_eq!(&ask(c), was, "client {c} moved");
        }
    }
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn long_lived_connection_survives_while_others_come_and_go() {
    let mut t = Topology::new("long", 2);
    t.http_servers(8080);
    let cfg = t.config(
        &nat_service("web", VIP, 80, "tcp", "rr", &two_servers(8080), ""),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let client = t.client.clone();
    t.lab.spawn(
        "keepalive",
        &client,
        &[
            "/usr/bin/python3",
            &peer("http_keepalive.py"),
            VIP,
            "80",
            "8",
            "0.2",
        ],
    );
    let out = t.lab.exec_ok(
        &client,
        &[
            "wrk",
            "-t1",
            "-c8",
            "-d5s",
            "-H",
            "Connection: close",
            "http://198.18.0.100/",
        ],
    );
    let (requests, errors, _) = wrk_summary(&String::from_utf8_lossy(&out.stdout));
    let log = t.lab.dir.join("keepalive.log");
    let result = wait_for(Duration::from_secs(15), || {
        let s = std::fs::read_to_string(&log).ok()?;
        (!s.trim().is_empty()).then_some(s)
    })
    .expect("keep-alive client finished");
    println!(
        "{requests} short connections meanwhile ({errors} errors); long connection: {}",
        result.trim()
    );
    assert!(result.starts_with("ok "), "{result}");
    assert_eq!(errors, 0);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn udp_requests_get_responses_through_the_vip() {
    let mut t = Topology::new("udp", 2);
    for i in 0..2 {
        let ns = t.servers[i].clone();
        t.lab.spawn(
            &format!("udp{i}"),
            &ns,
            &[
                "/usr/bin/python3",
                &peer("udp_echo.py"),
                &Topology::rs_addr(i),
                "5353",
                &format!("rs{i}"),
            ],
        );
    }
    let cfg = t.config(
        &nat_service("dns", VIP, 53, "udp", "rr", &two_servers(5353), ""),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    std::thread::sleep(Duration::from_millis(300));
    let out = t.lab.exec_ok(
        &t.client,
        &["/usr/bin/python3", &peer("udp_client.py"), VIP, "53", "20"],
    );
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    let share = tally(&answers);
    println!("udp rr over 20 requests: {share:?}");
    assert_eq!(share, vec![("rs0".into(), 10), ("rs1".into(), 10)]);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_server_reply_matching_no_connection_is_dropped() {
    let mut t = Topology::new("stray", 1);
    let cfg = t.config(
        &nat_service(
            "dns",
            VIP,
            53,
            "udp",
            "rr",
            &[(Topology::rs_addr(0), 53, 1)],
            "",
        ),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let client = t.client.clone();
    // A UDP listener on the client that must hear nothing.
    let script = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('198.18.0.10',9999))\ns.settimeout(3)\ntry:\n    print('got', s.recvfrom(100)[0])\nexcept socket.timeout:\n    print('nothing')\n";
    t.lab
        .spawn("listener", &client, &["/usr/bin/python3", "-c", script]);
    std::thread::sleep(Duration::from_millis(300));
    let before = drops(&f, "no_connection");
    for _ in 0..5 {
        t.lab.exec_ok(
            &t.servers[0],
            &["/usr/bin/python3", "-c", "import socket;socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'stray',('198.18.0.10',9999))"],
        );
    }
    let log = t.lab.dir.join("listener.log");
    let heard = wait_for(Duration::from_secs(6), || {
        let s = std::fs::read_to_string(&log).ok()?;
        (!s.trim().is_empty()).then_some(s)
    })
    .unwrap();
    assert_eq!(heard.trim(), "nothing");
    assert_eq!(drops(&f, "no_connection") - before, 5.0);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_full_table_refuses_new_connections_and_keeps_live_ones() {
    let mut t = Topology::new("full", 1);
    t.http_servers(8080);
    let cfg = t
        .config(
            &nat_service(
                "web",
                VIP,
                80,
                "tcp",
                "rr",
                &[(Topology::rs_addr(0), 8080, 1)],
                "",
            ),
            "",
        )
        .replace("connections:\n  max: 262144", "connections:\n  max: 4");
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let client = t.client.clone();
    t.lab.spawn(
        "hold",
        &client,
        &[
            "/usr/bin/python3",
            &peer("hold_tcp.py"),
            VIP,
            "80",
            "4",
            "4",
        ],
    );
    let log = t.lab.dir.join("hold.log");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("open 4"))
    })
    .expect("4 connections open");
    let out = t
        .lab
        .exec(&client, &["curl", "-s", "-m", "2", "http://198.18.0.100/"]);
    assert!(!out.status.success(), "a fifth connection got through");
    assert!(drops(&f, "conn_table_full") >= 1.0);
    let done = wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("alive"))
    })
    .unwrap();
    assert!(done.contains("alive 4"), "{done}");
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn malformed_segments_to_the_vip_are_counted_and_live_connections_continue() {
    use ferrovs_core::packet::craft::{self, L2};
    use ferrovs_core::packet::{Ipv4Packet, MacAddr, TcpFlags};
    let mut t = Topology::new("badl4", 1);
    t.http_servers(8080);
    let cfg = t.config(
        &nat_service(
            "web",
            VIP,
            80,
            "tcp",
            "rr",
            &[(Topology::rs_addr(0), 8080, 1)],
            "",
        ),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let client = t.client.clone();
    t.lab.spawn(
        "keepalive",
        &client,
        &[
            "/usr/bin/python3",
            &peer("http_keepalive.py"),
            VIP,
            "80",
            "4",
            "0.1",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let l2 = L2 {
        src: MacAddr(t.lab.mac(&client, "eth0")),
        dst: MacAddr(t.lab.mac(&t.lb, "wan0")),
    };
    let c = "198.18.0.10:33333".parse().unwrap();
    let vip = "198.18.0.100:80".parse().unwrap();
    let mut frames = Vec::new();
    let mut expect = Vec::new();
    for (reason, flags) in [
        ("bad_tcp_flags", TcpFlags::SYN | TcpFlags::FIN),
        ("bad_tcp_flags", TcpFlags::SYN | TcpFlags::RST),
        ("bad_tcp_flags", TcpFlags::default()),
        ("tcp_no_connection", TcpFlags::ACK),
    ] {
        frames.push(craft::tcp(l2, c, vip, flags, 1, 0, b""));
        expect.push(reason);
    }
    let syn = craft::tcp(l2, c, vip, TcpFlags::SYN, 1, 0, b"");
    let mut offset = syn.clone();
    offset[14 + 20 + 12] = 0xf0;
    frames.push(offset);
    expect.push("bad_tcp_offset");
    let mut short = syn[..14 + 20 + 10].to_vec();
    short[16..18].copy_from_slice(&30u16.to_be_bytes());
    Ipv4Packet::new_checked(&mut short[14..])
        .unwrap()
        .fill_checksum();
    frames.push(short);
    expect.push("truncated_l4");
    // (Fragments are covered by unit tests only: net_af_packet joins a fanout group
    // with PACKET_FANOUT_FLAG_DEFRAG, so the kernel holds a lone fragment back.)
    frames.push(craft::tcp(
        l2,
        c,
        "198.18.0.100:81".parse().unwrap(),
        TcpFlags::SYN,
        1,
        0,
        b"",
    ));
    expect.push("no_service");
    let before = f.metrics();
    let rounds = 20;
    let all: Vec<Vec<u8>> = (0..rounds).flat_map(|_| frames.clone()).collect();
    t.lab.inject(&client, "eth0", &all);
    let mut want = std::collections::BTreeMap::new();
    for r in &expect {
        *want.entry(*r).or_insert(0.0) += rounds as f64;
    }
    let delta = |after: &str, reason: &str| {
        let s = format!("ferrovs_worker_dropped_packets_total{{worker=\"0\",reason=\"{reason}\"}}");
        sample(after, &s) - sample(&before, &s)
    };
    // The worker may be asleep (idle backoff) when the burst arrives: poll.
    let after = wait_for(Duration::from_secs(5), || {
        let m = f.metrics();
        want.iter().all(|(r, n)| delta(&m, r) >= *n).then_some(m)
    })
    .unwrap_or_else(|| f.metrics());
    for (reason, n) in &want {
        assert_eq!(
            delta(&after, reason),
            *n,
            "{reason}\n{}",
            grep(&after, "dropped")
        );
    }
    let log = t.lab.dir.join("keepalive.log");
    let result = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| !s.trim().is_empty())
    })
    .unwrap();
    assert!(result.starts_with("ok "), "{result}");
    assert!(f.stop().success());
}

/// client --- ferrovs --- router --(MTU 1300)--> server (MTU 1500)
///
/// The server advertises an MSS for 1500 bytes, so the client sends full-size
/// segments; the router cannot forward them and answers "fragmentation needed"
/// towards the client. Only if ferrovs translates that error (outer source and
/// quoted destination to the VIP) does the client lower its path MTU and the
/// upload complete.
#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn fragmentation_needed_from_the_server_side_reaches_the_client_translated() {
    let mut lab = Lab::new("pmtu");
    let lb = lab.ns("lb");
    let client = lab.ns("client");
    let router = lab.ns("router");
    let server = lab.ns("rs");
    lab.link(&lb, "wan0", &[], &client, "eth0", &["198.18.0.10/24"]);
    lab.link(&lb, "lan0", &[], &router, "eth0", &["198.19.0.254/24"]);
    lab.link(
        &router,
        "eth1",
        &["198.19.1.1/24"],
        &server,
        "eth0",
        &["198.19.1.10/24"],
    );
    lab.exec_ok(&router, &["ip", "link", "set", "eth1", "mtu", "1300"]);
    lab.exec_ok(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab.exec_ok(
        &router,
        &["ip", "route", "add", "default", "via", "198.19.0.1"],
    );
    lab.exec_ok(
        &server,
        &["ip", "route", "add", "default", "via", "198.19.1.1"],
    );
    lab.http_server("nginx", &server, "198.19.1.10", 8080, "rs");
    let cfg =
        config(
            &[
                ("wan", "wan0", &["198.18.0.1/24"]),
                ("lan", "lan0", &["198.19.0.1/24"]),
            ],
            &format!(
            "routes:\n  - {{ prefix: \"198.19.1.0/24\", via: \"198.19.0.254\" }}\nservices:\n{}",
            nat_service("web", VIP, 80, "tcp", "rr", &[("198.19.1.10".into(), 8080, 1)], "")
        ),
        );
    let f = lab.ferrovs(&lb, &cfg);
    // 200 KB upload: full-size segments from the client.
    // The body comes on stdin: nothing is left behind in /tmp.
    let out = lab.exec(
        &client,
        &[
            "sh",
            "-c",
            "head -c 200000 /dev/zero | curl -s -m 10 -o /dev/null -w '%{http_code}' \
             --data-binary @- http://198.18.0.100/",
        ],
    );
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    let route = lab.exec_ok(&client, &["ip", "route", "get", VIP]);
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    println!("upload status {code}; client route cache: {}", route.trim());
    // nginx answers POST to a `return 200` location with 200
    assert_eq!(
        code,
        "200",
        "upload failed: PMTU black hole?\n{}",
        f.log_text()
    );
    assert!(
        route.contains("mtu 1300"),
        "client did not learn the path MTU: {route}"
    );
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn wrk_through_ferrovs_next_to_wrk_straight_to_one_server() {
    let mut t = Topology::new("wrk", 2);
    t.http_servers(8080);
    let cfg = t.config(
        &nat_service("web", VIP, 80, "tcp", "rr", &two_servers(8080), ""),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let run = |ns: &str, url: &str| {
        let out = t.lab.exec_ok(ns, &["wrk", "-t1", "-c32", "-d5s", url]);
        wrk_summary(&String::from_utf8_lossy(&out.stdout))
    };
    let (vreq, verr, vrps) = run(&t.client, "http://198.18.0.100/");
    let (dreq, derr, drps) = run(&t.direct, "http://198.19.0.10:8080/");
    println!("wrk -t1 -c32 -d5s through ferrovs (NAT, 2 servers): {vreq} requests, {verr} errors, {vrps:.0} req/s");
    println!("wrk -t1 -c32 -d5s straight to one server:          {dreq} requests, {derr} errors, {drps:.0} req/s");
    assert_eq!(verr, 0);
    assert!(vreq > 1000);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn ipv6_http_through_a_nat_service() {
    let mut lab = Lab::new("v6");
    let lb = lab.ns("lb");
    let client = lab.ns("client");
    let server = lab.ns("rs");
    lab.link(&lb, "wan0", &[], &client, "eth0", &["2001:2::10/64"]);
    lab.link(&lb, "lan0", &[], &server, "eth0", &["2001:2:0:1::10/64"]);
    lab.exec_ok(
        &server,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:2:0:1::1",
        ],
    );
    lab.http_server("nginx", &server, "2001:2:0:1::10", 8080, "rs6");
    let cfg = config(
        &[
            ("wan", "wan0", &["2001:2::1/64"]),
            ("lan", "lan0", &["2001:2:0:1::1/64"]),
        ],
        &format!(
            "services:\n{}",
            nat_service(
                "web6",
                "2001:2::100",
                80,
                "tcp",
                "rr",
                &[("2001:2:0:1::10".into(), 8080, 1)],
                ""
            )
        ),
    );
    let f = lab.ferrovs(&lb, &cfg);
    let out = lab.exec(&client, &["curl", "-s", "-m", "5", "http://[2001:2::100]/"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "rs6",
        "{}",
        f.log_text()
    );
    let out = lab.exec_ok(
        &client,
        &["ping", "-6", "-c", "2", "-i", "0.2", "2001:2::100"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 0% packet loss"));
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn nat_with_two_workers_and_two_queues() {
    let mut t = Topology::new("nat2", 2);
    t.http_servers(8080);
    let cfg = two_workers(&t.config(
        &nat_service("web", VIP, 80, "tcp", "wlc", &two_servers(8080), ""),
        "",
    ));
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let bodies = t.curl_many("http://198.18.0.100/", 20);
    let share = tally(&bodies);
    println!("nat, 2 workers, wlc over 20 requests: {share:?}");
    assert_eq!(share.iter().map(|(_, n)| n).sum::<usize>(), 20, "{share:?}");
    let out = t.lab.exec_ok(
        &t.client,
        &[
            "wrk",
            "-t1",
            "-c16",
            "-d4s",
            "-H",
            "Connection: close",
            "http://198.18.0.100/",
        ],
    );
    let (requests, errors, rps) = wrk_summary(&String::from_utf8_lossy(&out.stdout));
    let m = f.metrics();
    let handed = sample(&m, "ferrovs_worker_handoff_packets_total");
    let conns: Vec<f64> = (0..2)
        .map(|w| sample(&m, &format!("ferrovs_connections_active{{worker=\"{w}\"}}")))
        .collect();
    println!("nat, 2 workers, wrk -c16 4s a connection per request: {requests} requests, {errors} errors, {rps:.0} req/s; {handed} packets handed over; live connections per worker {conns:?}");
    assert_eq!(errors, 0);
    assert!(handed > 0.0);
    assert!(
        conns.iter().all(|c| *c > 0.0),
        "both workers own connections: {conns:?}"
    );
    assert!(f.stop().success());
}
