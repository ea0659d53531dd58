//! NAT64 end to end: an IPv6-only client reaches an IPv6 VIP served by IPv4 real
//! servers (a fullnat service with IPv4 local addresses), with real peers: curl to
//! nginx, a UDP echo, and path MTU discovery across the translation.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_nat64 -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;

const VIP: &str = "2001:2::100";
/// The size of `/big`: a few MB, checksum-compared after the download.
const BIG: usize = 4 << 20;

/// ```text
/// client 2001:2::10/64 --- wan0 [ferrovs] lan0 --- bridge --- rs0 198.19.0.10/24
///                     (2001:2::1)        (198.19.0.1)     +-- rs1 198.19.0.11/24
/// ```
/// The client has no IPv4; the servers no IPv6 and no route beyond their subnet.
struct Nat64Lab {
    lab: Lab,
    lb: String,
    client: String,
    servers: Vec<String>,
}

impl Nat64Lab {
    fn new(tag: &str) -> Nat64Lab {
        let mut lab = Lab::new(tag);
        let lb = lab.ns("lb");
        let client = lab.ns("client");
        let bridge = lab.ns("br");
        lab.exec_ok(&bridge, &["ip", "link", "add", "br0", "type", "bridge"]);
        lab.exec_ok(&bridge, &["ip", "link", "set", "br0", "up"]);
        lab.link(&lb, "wan0", &[], &client, "eth0", &["2001:2::10/64"]);
        lab.link(&lb, "lan0", &[], &bridge, "p-lb", &[]);
        lab.exec_ok(&bridge, &["ip", "link", "set", "p-lb", "master", "br0"]);
        let mut servers = Vec::new();
        for i in 0..2 {
            let ns = lab.ns(&format!("rs{i}"));
            let addr = format!("198.19.0.{}/24", 10 + i);
            lab.link(&ns, "eth0", &[&addr], &bridge, &format!("p-rs{i}"), &[]);
            lab.exec_ok(
                &bridge,
                &["ip", "link", "set", &format!("p-rs{i}"), "master", "br0"],
            );
            servers.push(ns);
        }
        Nat64Lab {
            lab,
            lb,
            client,
            servers,
        }
    }

    fn rs_addr(i: usize) -> String {
        format!("198.19.0.{}", 10 + i)
    }

    /// The config with `services` and `lan_extra` added to the lan port's item.
    fn config(&self, services: &str, lan_extra: &str) -> String {
        let cfg = config(
            &[
                ("wan", "wan0", &["2001:2::1/64"]),
                ("lan", "lan0", &["198.19.0.1/24"]),
            ],
            &format!("services:\n{services}"),
        );
        cfg.replace(
            "    addresses: [\"198.19.0.1/24\"]\n",
            &format!("    addresses: [\"198.19.0.1/24\"]\n{lan_extra}"),
        )
    }
}

/// A NAT64 service item: `proto` on port `port` of the VIP, the two servers on
/// `rs_port`, from the local address `lip`.
fn nat64_service(name: &str, proto: &str, port: u16, rs_port: u16, lip: &str) -> String {
    let servers: Vec<(String, u16, u32)> =
        (0..2).map(|i| (Nat64Lab::rs_addr(i), rs_port, 1)).collect();
    service(
        name,
        "fullnat",
        &format!("\"{VIP}\""),
        port,
        "rr",
        &servers,
        &format!("    local_addresses: [{lip}]\n"),
    )
    .replace("    protocol: tcp\n", &format!("    protocol: {proto}\n"))
}

fn sha256(lab: &Lab, ns: &str, path: &str) -> String {
    let out = lab.exec_ok(ns, &["sha256sum", path]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn ipv6_clients_reach_ipv4_servers_over_tcp_and_udp() {
    nat64(1);
}

/// With two workers, the client's packets (owner by client port) and the servers'
/// replies to the IPv4 local address (owner by local port) meet on one worker.
#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn nat64_with_two_workers() {
    nat64(2);
}

/// Each worker schedules its own share of the connections (rr per worker): with
/// one worker the servers alternate exactly, with two both serve.
fn assert_shared(share: &[(String, usize)], names: [&str; 2], n: usize, workers: usize) {
    let count = |name: &str| share.iter().find(|(s, _)| s == name).map_or(0, |(_, c)| *c);
    let (a, b) = (count(names[0]), count(names[1]));
    assert_eq!(a + b, n, "{share:?}");
    if workers == 1 {
        assert_eq!((a, b), (n / 2, n / 2), "{share:?}");
    } else {
        assert!(a > 0 && b > 0, "{share:?}");
    }
}

fn nat64(workers: usize) {
    let mut t = Nat64Lab::new(&format!("n64w{workers}"));
    for i in 0..2 {
        let ns = t.servers[i].clone();
        t.lab.http_server_with_file(
            &format!("nginx{i}"),
            &ns,
            &Nat64Lab::rs_addr(i),
            8080,
            &format!("rs{i} sees $remote_addr"),
            BIG,
        );
        t.lab.spawn(
            &format!("echo{i}"),
            &ns,
            &[
                "/usr/bin/python3",
                &peer("udp_echo.py"),
                &Nat64Lab::rs_addr(i),
                "7007",
                &format!("rs{i}"),
            ],
        );
    }
    let services = format!(
        "{}{}",
        nat64_service("web6", "tcp", 80, 8080, "198.19.0.2"),
        nat64_service("echo6", "udp", 7007, 7007, "198.19.0.3"),
    );
    let cfg = t.config(&services, "");
    let cfg = if workers == 2 { two_workers(&cfg) } else { cfg };
    let f = t.lab.ferrovs(&t.lb, &cfg);

    // HTTP over IPv6 to the VIP, answered by both IPv4 servers (rr), which see
    // the IPv4 local address.
    let url = format!("http://[{VIP}]/");
    let bodies: Vec<String> = (0..20)
        .map(|_| {
            let out = t.lab.exec(&t.client, &["curl", "-s", "-m", "5", &url]);
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    let share = tally(&bodies);
    println!("NAT64 rr over 20 requests, {workers} worker(s): {share:?}");
    assert_shared(
        &share,
        ["rs0 sees 198.19.0.2", "rs1 sees 198.19.0.2"],
        20,
        workers,
    );

    // A few MB each from both servers, intact.
    let want = sha256(
        &t.lab,
        &t.lb,
        &t.lab.dir.join("nginx0/big").to_string_lossy(),
    );
    for i in 0..2 {
        let path = t.lab.dir.join(format!("download{i}"));
        let path = path.to_string_lossy().to_string();
        let out = t.lab.exec(
            &t.client,
            &[
                "curl",
                "-s",
                "-m",
                "30",
                "-o",
                &path,
                "-w",
                "%{http_code} %{size_download}",
                &format!("http://[{VIP}]/big"),
            ],
        );
        let status = String::from_utf8_lossy(&out.stdout).to_string();
        println!("NAT64 download {i}: {status}");
        assert_eq!(status, format!("200 {BIG}"));
        assert_eq!(sha256(&t.lab, &t.client, &path), want, "download {i}");
        let _ = std::fs::remove_file(&path);
    }

    // UDP: every datagram answered, by both servers.
    let out = t.lab.exec_ok(
        &t.client,
        &[
            "/usr/bin/python3",
            &peer("udp_client.py"),
            VIP,
            "7007",
            "10",
        ],
    );
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(':').next().unwrap_or_default().to_string())
        .collect();
    let share = tally(&answers);
    println!("NAT64 UDP over 10 datagrams: {share:?}");
    assert_shared(&share, ["rs0", "rs1"], 10, workers);

    // The listing shows the IPv6 client and VIP with the IPv4 local address and server.
    let conns = run(&[
        FERROVS,
        "ctl",
        "--socket",
        &t.lab.dir.join("ctl.sock").to_string_lossy(),
        "conns",
    ]);
    let text = String::from_utf8_lossy(&conns.stdout).to_string();
    println!("{text}");
    assert!(text.contains("[2001:2::10]:"), "{text}");
    assert!(text.contains("198.19.0.2:"), "{text}");
    assert!(text.contains("198.19.0.10:8080") || text.contains("198.19.0.11:8080"));
    assert_eq!(
        f.metric("ferrovs_worker_dropped_packets_total{reason=\"no_connection\"}"),
        0.0
    );
    if workers == 2 {
        let handed = f.metric("ferrovs_worker_handoff_packets_total");
        println!("NAT64, two workers: {handed} packets handed between workers");
    }
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn path_mtu_discovery_across_the_translation() {
    let mut t = Nat64Lab::new("n64m");
    for i in 0..2 {
        let ns = t.servers[i].clone();
        t.lab.http_server(
            &format!("nginx{i}"),
            &ns,
            &Nat64Lab::rs_addr(i),
            8080,
            &format!("rs{i}"),
        );
    }
    // The server side carries 1400 bytes: a full-size IPv6 segment of the client
    // (1500 bytes, 1480 as IPv4) does not fit, one of 1420 (1400 as IPv4) does.
    let cfg = t.config(
        &nat64_service("web6", "tcp", 80, 8080, "198.19.0.2"),
        "    mtu: 1400\n",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let out = t.lab.exec(
        &t.client,
        &[
            "sh",
            "-c",
            &format!(
                "head -c 300000 /dev/zero | curl -s -m 20 -o /dev/null -w '%{{http_code}}' \
                 --data-binary @- http://[{VIP}]/"
            ),
        ],
    );
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    let route = t.lab.exec_ok(&t.client, &["ip", "-6", "route", "get", VIP]);
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    println!(
        "NAT64 upload: status {code}; client route: {}",
        route.replace('\n', " ")
    );
    assert_eq!(code, "200", "{}", f.log_text());
    // The client learnt the IPv4 MTU plus 20 from ferrovs's packet too big.
    assert!(route.contains("mtu 1420"), "{route}");
    let too_big =
        f.metric("ferrovs_worker_dropped_packets_total{worker=\"0\",reason=\"mtu_exceeded\"}");
    assert!(too_big >= 1.0);
    assert!(f.stop().success());
}
