//! FULLNAT, DR and TUNNEL end to end with real HTTP clients and servers.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_modes -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::time::Duration;

const VIP: &str = "198.18.0.100";

/// Applies the worker count to a one-worker test config.
fn with_workers(cfg: String, workers: usize) -> String {
    match workers {
        1 => cfg,
        2 => two_workers(&cfg),
        n => panic!("{n} workers"),
    }
}

/// With several workers every packet must reach the owner of its connection:
/// the handoff counters show how many did not land there first.
fn check_handoffs(f: &Ferrovs, workers: usize) {
    let handed = f.metric("ferrovs_worker_handoff_packets_total");
    println!("{workers} worker(s): {handed} packets handed between workers");
    // What rte_flow made of the steering rules on these ports (the vdevs refuse them).
    for line in f
        .log_text()
        .lines()
        .filter(|l| l.contains("steering") || l.contains("rte_flow"))
    {
        println!("  ferrovs log: {line}");
    }
    if workers > 1 {
        assert!(handed > 0.0, "steering never exercised");
        assert_eq!(
            f.metric("ferrovs_worker_dropped_packets_total{worker=\"0\",reason=\"handoff_full\"}"),
            0.0
        );
    }
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn fullnat_serves_clients_from_servers_with_no_route_to_them() {
    fullnat(1);
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn fullnat_with_two_workers() {
    fullnat(2);
}

fn fullnat(workers: usize) {
    let mut t = Topology::isolated_servers(&format!("fnat{workers}"), 2);
    for i in 0..2 {
        let ns = t.servers[i].clone();
        t.lab.http_server(
            &format!("nginx{i}"),
            &ns,
            &Topology::rs_addr(i),
            8080,
            &format!("rs{i} sees $remote_addr"),
        );
    }
    let servers = vec![
        (Topology::rs_addr(0), 8080, 1),
        (Topology::rs_addr(1), 8080, 1),
    ];
    let svc = service(
        "web",
        "fullnat",
        VIP,
        80,
        "rr",
        &servers,
        "    local_addresses: [198.19.0.2, 198.19.0.3]\n",
    );
    let cfg = with_workers(t.config(&svc, ""), workers);
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let bodies = t.curl_many("http://198.18.0.100/", 20);
    let word = |b: &String, first: bool| {
        let w = if first {
            b.split(' ').next()
        } else {
            b.rsplit(' ').next()
        };
        w.unwrap_or("").to_string()
    };
    let servers_seen = tally(&bodies.iter().map(|b| word(b, true)).collect::<Vec<_>>());
    let sources = tally(&bodies.iter().map(|b| word(b, false)).collect::<Vec<_>>());
    println!("fullnat rr over 20 requests: {servers_seen:?}; sources the servers saw: {sources:?}");
    assert_served_all(&servers_seen, 20, workers);
    for (src, _) in &sources {
        assert!(
            src == "198.19.0.2" || src == "198.19.0.3",
            "server saw {src}"
        );
    }
    let (requests, errors, rps) = wrk_close(&t.lab, &t.client);
    println!("fullnat wrk -c16 3s, a connection per request: {requests} requests, {errors} errors, {rps:.0} req/s");
    // A local port goes back to the end of the queue when its connection ends: a
    // server still holding `LIP:lport` in TIME_WAIT would refuse a SYN that reused
    // it at once (PAWS) and the client would wait a second to retransmit.
    for ns in &t.servers {
        let refused = kernel_counter(&t.lab, ns, "TcpExtPAWSTimewait");
        println!("{ns}: {refused} SYNs refused by PAWS in TIME_WAIT");
        assert_eq!(
            refused, 0,
            "{ns} refused SYNs for a local port still in TIME_WAIT"
        );
    }
    assert_eq!(errors, 0);
    assert!(requests > 1000);
    check_handoffs(&f, workers);
    assert!(f.stop().success());
}

/// A kernel SNMP counter of namespace `ns` (`nstat` names), absolute.
fn kernel_counter(lab: &Lab, ns: &str, name: &str) -> u64 {
    let out = lab.exec_ok(ns, &["nstat", "-asz", name]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{ns}: no {name} in nstat output"))
}

/// wrk for 3 s with a new connection per request, so new flows keep coming.
fn wrk_close(lab: &Lab, client: &str) -> (u64, u64, f64) {
    let out = lab.exec_ok(
        client,
        &[
            "wrk",
            "-t1",
            "-c16",
            "-d3s",
            "-H",
            "Connection: close",
            "http://198.18.0.100/",
        ],
    );
    wrk_summary(&String::from_utf8_lossy(&out.stdout))
}

/// Every request answered by some server; with one worker rr is exact, with more
/// each worker runs its own rr, so only the total is exact.
fn assert_served_all(share: &[(String, usize)], n: usize, workers: usize) {
    assert_eq!(share.iter().map(|(_, c)| c).sum::<usize>(), n, "{share:?}");
    assert!(share.iter().all(|(s, _)| s.starts_with("rs")), "{share:?}");
    if workers == 1 {
        assert!(
            share.len() == 2 && share.iter().all(|(_, c)| *c == n / 2),
            "{share:?}"
        );
    }
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn dr_in_one_arm_with_the_vip_on_the_servers_loopback() {
    dr(1);
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn dr_with_two_workers() {
    dr(2);
}

fn dr(workers: usize) {
    let mut t = OneArm::new(&format!("dr{workers}"), 2, VIP);
    for i in 0..2 {
        let ns = t.servers[i].clone();
        // DR cannot change ports: servers listen on the VIP's port.
        t.lab
            .http_server(&format!("nginx{i}"), &ns, "0.0.0.0", 80, &format!("rs{i}"));
    }
    let servers = vec![(OneArm::rs_addr(0), 80, 1), (OneArm::rs_addr(1), 80, 1)];
    let cfg = with_workers(
        t.config(&service("web", "dr", VIP, 80, "rr", &servers, "")),
        workers,
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let bodies: Vec<String> = (0..20)
        .map(|_| {
            let out = t.lab.exec(
                &t.client,
                &["curl", "-s", "-m", "5", "http://198.18.0.100/"],
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    let share = tally(&bodies);
    println!("dr rr over 20 requests: {share:?}");
    assert_served_all(&share, 20, workers);
    let (requests, errors, rps) = wrk_close(&t.lab, &t.client);
    println!("dr wrk -c16 3s, a connection per request: {requests} requests, {errors} errors, {rps:.0} req/s");
    assert_eq!(errors, 0);
    check_handoffs(&f, workers);
    let m = f.metrics();
    // replies bypass ferrovs: nothing counted outbound
    assert_eq!(
        sample(&m, "ferrovs_service_out_packets_total{service=\"web\"}"),
        0.0
    );
    assert!(sample(&m, "ferrovs_service_in_packets_total{service=\"web\"}") > 100.0);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn tunnel_through_a_userspace_decapsulator_with_path_mtu() {
    tunnel(1);
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn tunnel_with_two_workers() {
    tunnel(2);
}

fn tunnel(workers: usize) {
    let mut t = OneArm::new(&format!("tun{workers}"), 2, VIP);
    for i in 0..2 {
        let ns = t.servers[i].clone();
        t.lab.spawn(
            &format!("decap{i}"),
            &ns,
            &["/usr/bin/python3", &peer("ipip_decap.py"), "tun0"],
        );
        t.lab
            .http_server(&format!("nginx{i}"), &ns, "0.0.0.0", 80, &format!("rs{i}"));
    }
    for i in 0..2 {
        let log = t.lab.dir.join(format!("decap{i}.log"));
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|s| s.contains("ready"))
        })
        .unwrap_or_else(|| {
            panic!(
                "decapsulator {i} not ready: {:?}",
                std::fs::read_to_string(&log)
            )
        });
    }
    let servers = vec![(OneArm::rs_addr(0), 80, 1), (OneArm::rs_addr(1), 80, 1)];
    let cfg = with_workers(
        t.config(&service("web", "tunnel", VIP, 80, "rr", &servers, "")),
        workers,
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let bodies: Vec<String> = (0..10)
        .map(|_| {
            let out = t.lab.exec(
                &t.client,
                &["curl", "-s", "-m", "5", "http://198.18.0.100/"],
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    let share = tally(&bodies);
    println!("tunnel rr over 10 requests: {share:?}");
    assert_served_all(&share, 10, workers);
    // Full-size segments do not fit with 20 more bytes: ferrovs answers
    // "fragmentation needed" with MTU 1480 and the upload goes through.
    // The body comes on stdin: nothing is left behind in /tmp.
    let out = t.lab.exec(
        &t.client,
        &[
            "sh",
            "-c",
            "head -c 200000 /dev/zero | curl -s -m 10 -o /dev/null -w '%{http_code}' \
             --data-binary @- http://198.18.0.100/",
        ],
    );
    let route = t.lab.exec_ok(&t.client, &["ip", "route", "get", VIP]);
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    println!(
        "tunnel upload: status {code}; client route: {}",
        route.replace('\n', " ")
    );
    assert_eq!(code, "200");
    assert!(route.contains("mtu 1480"), "{route}");
    let too_big = f.metric("ferrovs_worker_dropped_packets_total{reason=\"mtu_exceeded\"}");
    assert!(too_big >= 1.0);
    let (requests, errors, rps) = wrk_close(&t.lab, &t.client);
    println!("tunnel wrk -c16 3s, a connection per request: {requests} requests, {errors} errors, {rps:.0} req/s");
    assert_eq!(errors, 0);
    check_handoffs(&f, workers);
    assert!(f.stop().success());
}
