//! The IPVS service forms end to end, with real peers: an all-port service
//! (`port: 0` with persistence, `ipvsadm -A -t VIP:0 -p`) in NAT with two
//! workers, whose clients reach one real server on every port they use; and
//! one-packet scheduling (`ops`) of DNS over NAT, which spreads one client's
//! queries from one source port over two dnsmasq servers, every answer coming
//! back from the VIP.
//!
//! Needs root, DPDK, nginx and dnsmasq: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_forms -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const VIP: &str = "198.18.0.100";
/// The clients: one address each on the client's interface. With two workers
/// and persistence the owner is the client's address modulo 2 (steer.rs): .10
/// and .12 meet on one worker, whose rr gives them different servers.
const CLIENTS: [&str; 3] = ["198.18.0.10", "198.18.0.11", "198.18.0.12"];
/// The ports of the all-port service the clients use, each served by nginx on
/// both real servers (which answer "rs<i>:<port>").
const PORTS: [u16; 3] = [80, 8080, 8443];
/// Requests per client, spread over `PORTS`, each from a source port of its own.
const REQUESTS: u16 = 60;

fn ctl(lab: &Lab, args: &[&str]) -> String {
    let socket = lab.dir.join("ctl.sock");
    let out = Command::new(FERROVS)
        .args(["ctl", "--socket", socket.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run ferrovs ctl");
    assert!(
        out.status.success(),
        "ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn an_all_port_nat_service_keeps_each_client_on_one_server_over_every_port() {
    let mut t = Topology::new("fall", 2);
    for i in 0..2 {
        let ns = t.servers[i].clone();
        for port in PORTS {
            t.lab.http_server(
                &format!("nginx{i}-{port}"),
                &ns,
                &Topology::rs_addr(i),
                port,
                &format!("rs{i}:{port}"),
            );
        }
    }
    for client in &CLIENTS[1..] {
        let addr = format!("{client}/24");
        t.lab
            .exec_ok(&t.client, &["ip", "addr", "add", &addr, "dev", "eth0"]);
    }
    // Every port of the VIP, persistent; port 9090 has a service of its own
    // (to rs0:8080), which wins over the all-port one as in IPVS.
    let services = format!(
        "  - name: all\n    vip: {VIP}\n    port: 0\n    protocol: tcp\n    mode: nat\n    \
         scheduler: rr\n    persistence: 300s\n    \
         health_check: {{ type: tcp, port: 80, interval: 500ms, timeout: 250ms }}\n    \
         real_servers:\n      - {{ address: {} }}\n      - {{ address: {} }}\n{}",
        Topology::rs_addr(0),
        Topology::rs_addr(1),
        nat_service(
            "own",
            VIP,
            9090,
            "tcp",
            "rr",
            &[(Topology::rs_addr(0), 8080, 1)],
            ""
        ),
    );
    let f = t.lab.ferrovs(&t.lb, &two_workers(&t.config(&services, "")));
    let list = ctl(&t.lab, &["list"]);
    println!("{list}");
    assert!(
        list.contains(&format!("TCP  {VIP}:0 rr (nat) persistent 300")),
        "{list}"
    );
    assert!(
        list.contains(&format!("{}:0", Topology::rs_addr(0))),
        "{list}"
    );

    // Request k goes from client k % 3 to PORTS[(k / 3) % 3], from source port
    // 33000 + 2k (consecutive requests of a client would land on different
    // workers if the owner followed the client's port).
    let mut per_client: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let total = REQUESTS * CLIENTS.len() as u16;
    for k in 0..total {
        let client = CLIENTS[usize::from(k) % CLIENTS.len()];
        let port = PORTS[usize::from(k) / CLIENTS.len() % PORTS.len()];
        let out = t.lab.exec(
            &t.client,
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "--interface",
                client,
                "--local-port",
                &(33000 + 2 * k).to_string(),
                &format!("http://{VIP}:{port}/"),
            ],
        );
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (_, answered) = body.split_once(':').unwrap_or(("", ""));
        assert_eq!(
            answered,
            port.to_string(),
            "{client} to port {port}: {body:?}"
        );
        per_client.entry(client).or_default().push(body);
    }
    let mut chosen = Vec::new();
    for (client, bodies) in &per_client {
        let servers: Vec<String> = bodies
            .iter()
            .map(|b| b.split(':').next().unwrap().to_string())
            .collect();
        let share = tally(&servers);
        println!(
            "all-port nat, 2 workers: {client} over ports {PORTS:?}: {:?}",
            tally(bodies)
        );
        assert_eq!(share.len(), 1, "{client} was split over servers: {share:?}");
        assert_eq!(share[0].1, usize::from(REQUESTS), "{client}: {share:?}");
        chosen.push(share[0].0.clone());
    }
    // Scheduled, not all sent to one server: .10 and .12 share a worker.
    assert_ne!(chosen[0], chosen[2], "{chosen:?}");
    let m = f.metrics();
    let rx: Vec<f64> = (0..2)
        .map(|w| {
            sample(
                &m,
                &format!("ferrovs_worker_rx_packets_total{{worker=\"{w}\"}}"),
            )
        })
        .collect();
    let handed = sample(&m, "ferrovs_worker_handoff_packets_total");
    println!("packets received per worker {rx:?}, {handed} handed to their owner");
    assert!(rx.iter().all(|n| *n > 0.0), "{rx:?}");
    assert!(handed > 0.0, "RSS never put a packet on the wrong worker");
    let scheduled: f64 = (0..2)
        .map(|i| {
            sample(
                &m,
                &format!(
                    "ferrovs_real_server_connections_total{{service=\"all\",real_server=\"{}:0\"}}",
                    Topology::rs_addr(i)
                ),
            )
        })
        .sum();
    assert_eq!(scheduled, f64::from(total), "{m}");

    // The VIP's own port 9090 goes to its own service, not the all-port one.
    for _ in 0..4 {
        let out = t.lab.exec(
            &t.client,
            &["curl", "-s", "-m", "5", &format!("http://{VIP}:9090/")],
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "rs0:8080");
    }
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn ops_spreads_one_clients_dns_queries_over_both_servers_answered_from_the_vip() {
    const QUERIES: usize = 40;
    let mut t = Topology::new("fops", 2);
    // Each server answers with its own address: 198.19.0.80, 198.19.0.81.
    t.dnsmasq(0, "198.19.0.80");
    t.dnsmasq(1, "198.19.0.81");
    let servers = [(Topology::rs_addr(0), 53, 1), (Topology::rs_addr(1), 53, 1)];
    let extra = "    ops: true\n    \
                 health_check: { type: dns, query_name: www.example.org, query_type: A }\n";
    let cfg = t.config(
        &nat_service("dns", VIP, 53, "udp", "rr", &servers, extra),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    // Every query from one socket, one source port: without ops they would all
    // be one flow, to one server.
    let out = t.lab.exec_ok(
        &t.client,
        &[
            "/usr/bin/python3",
            &peer("dns_queries.py"),
            "198.18.0.10",
            "5300",
            VIP,
            "www.example.org",
            &QUERIES.to_string(),
        ],
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let answers = tally(&lines);
    println!("ops, rr, {QUERIES} queries from 198.18.0.10:5300: {answers:?}");
    assert_eq!(
        answers,
        vec![
            (format!("{VIP}:53 198.19.0.80"), QUERIES / 2),
            (format!("{VIP}:53 198.19.0.81"), QUERIES / 2),
        ],
        "every answer from the VIP, half from each server"
    );
    // Each datagram counted as a connection of its server; none kept.
    std::thread::sleep(Duration::from_millis(1500));
    let m = f.metrics();
    for i in 0..2 {
        let series = format!(
            "ferrovs_real_server_connections_total{{service=\"dns\",real_server=\"{}:53\"}}",
            Topology::rs_addr(i)
        );
        assert_eq!(sample(&m, &series), (QUERIES / 2) as f64, "{series}");
    }
    let live = sample(&m, "ferrovs_connections_active{worker=\"0\"}");
    assert_eq!(live, 0.0, "ops keeps no connection");
    let list = ctl(&t.lab, &["conns", "--service", "dns"]);
    assert!(!list.contains("198.18.0.10"), "{list}");
    assert!(f.stop().success());
}
