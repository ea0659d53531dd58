//! Persistence with two workers, end to end: two clients, each connecting from 100
//! source ports through a persistent `rr` service with two real servers, must each
//! reach one server every time, in NAT, FULLNAT and DR, whichever worker RSS (the
//! `net_af_packet` fanout) hands each connection to.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_persistence -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::collections::BTreeMap;

const VIP: &str = "198.18.0.100";
/// The two clients: one address each on the client's interface.
const CLIENTS: [&str; 2] = ["198.18.0.10", "198.18.0.11"];
/// Source ports per client.
const PORTS: u16 = 100;

/// Every client's requests, `PORTS` each from as many source ports, one
/// connection a request: the bodies (which server answered) and how often, per
/// client. Request k comes from port 31000 + 2k, so consecutive requests would
/// alternate between the workers if the owner followed the client's port, and
/// from the clients in the order A B B A: each worker's scheduler then sees the
/// clients in another order, which splits a client between the servers unless
/// all of its connections reach one worker.
fn requests_per_client(lab: &Lab, client_ns: &str) -> BTreeMap<String, Vec<(String, usize)>> {
    let mut bodies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in 0..2 * PORTS {
        let client = CLIENTS[usize::from(matches!(k % 4, 1 | 2))];
        let port = (31000 + 2 * k).to_string();
        let o = lab.exec(
            client_ns,
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "--interface",
                client,
                "--local-port",
                &port,
                "http://198.18.0.100/",
            ],
        );
        let body = String::from_utf8_lossy(&o.stdout).trim().to_string();
        bodies.entry(client.to_string()).or_default().push(body);
    }
    bodies.into_iter().map(|(c, b)| (c, tally(&b))).collect()
}

/// Each client reached one server with all of its requests, and both workers
/// owned connections (the clients' addresses put them on different workers).
fn check(mode: &str, f: &Ferrovs, per_client: &BTreeMap<String, Vec<(String, usize)>>) {
    println!("{mode}, 2 workers, persistence, {PORTS} ports per client: {per_client:?}");
    for (client, share) in per_client {
        assert_eq!(
            share.len(),
            1,
            "{mode}: {client} was split over servers: {share:?}"
        );
        let (server, n) = &share[0];
        assert!(server.starts_with("rs"), "{mode}: {client}: {share:?}");
        assert_eq!(*n, usize::from(PORTS), "{mode}: {client}: {share:?}");
    }
    let m = f.metrics();
    let opened: Vec<f64> = (0..2)
        .map(|w| {
            sample(
                &m,
                &format!("ferrovs_worker_rx_packets_total{{worker=\"{w}\"}}"),
            )
        })
        .collect();
    let handed = sample(&m, "ferrovs_worker_handoff_packets_total");
    println!("{mode}: packets received per worker {opened:?}, {handed} handed to their owner");
    assert!(opened.iter().all(|n| *n > 0.0), "{mode}: {opened:?}");
    assert!(
        handed > 0.0,
        "{mode}: RSS never put a packet on the wrong worker"
    );
}

fn add_second_client(lab: &Lab, client_ns: &str) {
    lab.exec_ok(
        client_ns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/24", CLIENTS[1]),
            "dev",
            "eth0",
        ],
    );
}

fn servers(addr: fn(usize) -> String, port: u16) -> Vec<(String, u16, u32)> {
    vec![(addr(0), port, 1), (addr(1), port, 1)]
}

const PERSISTENT: &str = "    persistence: 300s\n";

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn nat_persistence_holds_with_two_workers() {
    let mut t = Topology::new("pnat", 2);
    t.http_servers(8080);
    add_second_client(&t.lab, &t.client);
    let svc = nat_service(
        "web",
        VIP,
        80,
        "tcp",
        "rr",
        &servers(Topology::rs_addr, 8080),
        PERSISTENT,
    );
    let f = t.lab.ferrovs(&t.lb, &two_workers(&t.config(&svc, "")));
    let per_client = requests_per_client(&t.lab, &t.client);
    check("nat", &f, &per_client);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn fullnat_persistence_holds_with_two_workers() {
    let mut t = Topology::isolated_servers("pfnat", 2);
    t.http_servers(8080);
    add_second_client(&t.lab, &t.client);
    let extra = format!("{PERSISTENT}    local_addresses: [198.19.0.2]\n");
    let svc = service(
        "web",
        "fullnat",
        VIP,
        80,
        "rr",
        &servers(Topology::rs_addr, 8080),
        &extra,
    );
    let f = t.lab.ferrovs(&t.lb, &two_workers(&t.config(&svc, "")));
    let per_client = requests_per_client(&t.lab, &t.client);
    check("fullnat", &f, &per_client);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn dr_persistence_holds_with_two_workers() {
    let mut t = OneArm::new("pdr", 2, VIP);
    for i in 0..2 {
        let ns = t.servers[i].clone();
        t.lab
            .http_server(&format!("nginx{i}"), &ns, "0.0.0.0", 80, &format!("rs{i}"));
    }
    add_second_client(&t.lab, &t.client);
    let svc = service(
        "web",
        "dr",
        VIP,
        80,
        "rr",
        &servers(OneArm::rs_addr, 80),
        PERSISTENT,
    );
    let f = t.lab.ferrovs(&t.lb, &two_workers(&t.config(&svc)));
    let per_client = requests_per_client(&t.lab, &t.client);
    check("dr", &f, &per_client);
    assert!(f.stop().success());
}
