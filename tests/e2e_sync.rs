//! Connection sync between two instances, end to end, each with two workers:
//! instance A carries NAT, FULLNAT and NAT64 downloads and owns the shared
//! addresses (the three VIPs, the FULLNAT local address, the real servers' NAT
//! gateway); B
//! installs A's connections from its sync records. A is killed (-9) mid-transfer:
//! B takes the shared addresses over and carries the downloads on. A is started
//! again: it receives B's bulk transfer, takes its addresses back and carries them
//! to the end. Every download must complete with the right content.
//!
//! ```text
//!   client 198.18.0.10 --- wan bridge ---+--- A wan 198.18.0.1 | lan 198.19.0.1 ---+--- lan bridge --- rs0 198.19.0.10
//!          2001:2::10                    |       2001:2::1     |                   |                  rs1 198.19.0.11
//!                                        +--- B wan 198.18.0.2 | lan 198.19.0.2 ---+
//!                                                2001:2::2
//!   shared (owner A): VIPs 198.18.0.100 (NAT), .101 (FULLNAT), 2001:2::100 (NAT64,
//!   FULLNAT to the IPv4 servers); LIP 198.19.0.100; the servers' gateway 198.19.0.254
//! ```
//!
//! Also: forged sync datagrams (wrong key, replay, truncated, oversized count,
//! garbage, unknown sender) are dropped and counted, and only the one valid
//! datagram's connection is installed.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_sync -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::time::{Duration, Instant};

const NAT_VIP: &str = "198.18.0.100";
const FULLNAT_VIP: &str = "198.18.0.101";
const NAT64_VIP: &str = "2001:2::100";
/// The VIPs as curl takes them, one per mode.
const URL_HOSTS: [&str; 3] = [NAT_VIP, FULLNAT_VIP, "[2001:2::100]"];
/// `/big` is downloaded at `RATE`: about 25 s a download, long enough that a
/// loaded machine still has every download running when A is killed.
const BIG: usize = 1_000_000;
const RATE: &str = "40k";
const DOWNLOADS_PER_MODE: usize = 12;

fn services() -> String {
    format!(
        "services:\n\
         \x20 - {{ name: nat, vip: {NAT_VIP}, port: 80, protocol: tcp, mode: nat, scheduler: rr,\n\
         \x20     real_servers: [{{ address: 198.19.0.10, port: 8080 }}, {{ address: 198.19.0.11, port: 8080 }}] }}\n\
         \x20 - {{ name: fnat, vip: {FULLNAT_VIP}, port: 80, protocol: tcp, mode: fullnat, scheduler: rr,\n\
         \x20     local_addresses: [198.19.0.100],\n\
         \x20     real_servers: [{{ address: 198.19.0.10, port: 8080 }}, {{ address: 198.19.0.11, port: 8080 }}] }}\n\
         \x20 - {{ name: nat64, vip: \"{NAT64_VIP}\", port: 80, protocol: tcp, mode: fullnat, scheduler: rr,\n\
         \x20     local_addresses: [198.19.0.100],\n\
         \x20     real_servers: [{{ address: 198.19.0.10, port: 8080 }}, {{ address: 198.19.0.11, port: 8080 }}] }}\n"
    )
}

/// Instance `me` (1: A, 2: B) of the pair.
fn instance_config(me: u8, key: &str) -> String {
    let peer = 3 - me;
    let sync = format!(
        "sync:\n  listen: \"198.19.0.{me}:8848\"\n  peers: [\"198.19.0.{peer}:8848\"]\n  key_file: \"{key}\"\n\
         \x20 heartbeat: \"100ms\"\n  peer_timeout: \"500ms\"\n  refresh: \"5s\"\n  shared_addresses:\n\
         \x20   - {{ address: {NAT_VIP}, owner: \"198.19.0.1:8848\" }}\n\
         \x20   - {{ address: {FULLNAT_VIP}, owner: \"198.19.0.1:8848\" }}\n\
         \x20   - {{ address: \"{NAT64_VIP}\", owner: \"198.19.0.1:8848\" }}\n\
         \x20   - {{ address: 198.19.0.100, owner: \"198.19.0.1:8848\" }}\n\
         \x20   - {{ address: 198.19.0.254, owner: \"198.19.0.1:8848\" }}\n"
    );
    two_workers(&config(
        &[
            (
                "wan",
                "wan0",
                &[&format!("198.18.0.{me}/24"), &format!("2001:2::{me}/64")],
            ),
            ("lan", "lan0", &[&format!("198.19.0.{me}/24")]),
        ],
        &format!("{sync}{}", services()),
    ))
}

struct Pair {
    lab: Lab,
    client: String,
    lan: String,
    lbs: [String; 2],
    key: String,
    rs_file: std::path::PathBuf,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let mut lab = Lab::new(tag);
        let client = lab.ns("client");
        let wan = lab.ns("wanbr");
        let lan = lab.ns("lanbr");
        for br in [&wan, &lan] {
            lab.exec_ok(br, &["ip", "link", "add", "br0", "type", "bridge"]);
            lab.exec_ok(br, &["ip", "link", "set", "br0", "up"]);
        }
        let attach = |lab: &Lab, ns: &str, ifname: &str, addrs: &[&str], br: &str, port: &str| {
            lab.link(ns, ifname, addrs, br, port, &[]);
            lab.exec_ok(br, &["ip", "link", "set", port, "master", "br0"]);
        };
        attach(
            &lab,
            &client,
            "eth0",
            &["198.18.0.10/24", "2001:2::10/64"],
            &wan,
            "p-client",
        );
        let mut lbs = Vec::new();
        for i in 1..=2 {
            let ns = lab.ns(&format!("lb{i}"));
            attach(&lab, &ns, "wan0", &[], &wan, &format!("p-wan{i}"));
            attach(&lab, &ns, "lan0", &[], &lan, &format!("p-lan{i}"));
            lbs.push(ns);
        }
        for i in 0..2 {
            let ns = lab.ns(&format!("rs{i}"));
            let addr = format!("198.19.0.{}", 10 + i);
            attach(
                &lab,
                &ns,
                "eth0",
                &[&format!("{addr}/24")],
                &lan,
                &format!("p-rs{i}"),
            );
            // NAT: replies go back through the shared gateway address.
            lab.exec_ok(
                &ns,
                &["ip", "route", "add", "default", "via", "198.19.0.254"],
            );
            lab.http_server_with_file(
                &format!("nginx{i}"),
                &ns,
                &addr,
                8080,
                &format!("rs{i}"),
                BIG,
            );
        }
        let key = lab.write("sync.key", "a shared secret of the two members\n");
        let rs_file = lab.dir.join("nginx0").join("big");
        Pair {
            key: key.to_str().unwrap().to_string(),
            lab,
            client,
            lan,
            lbs: [lbs[0].clone(), lbs[1].clone()],
            rs_file,
        }
    }

    fn start(&mut self, me: u8) -> Ferrovs {
        let ns = self.lbs[usize::from(me - 1)].clone();
        self.lab
            .ferrovs_instance(&ns, &format!("lb{me}"), &instance_config(me, &self.key))
    }

    fn ctl(&self, name: &str, args: &[&str]) -> String {
        let sock = self.lab.dir.join(format!("{name}.sock"));
        let mut cmd = vec![FERROVS, "ctl", "--socket", sock.to_str().unwrap()];
        cmd.extend_from_slice(args);
        let out = run(&cmd);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The client endpoints (`addr:port`) of the lines of `ctl conns` output that
/// carry a client of the test.
fn established_clients(conns: &str) -> std::collections::BTreeSet<String> {
    conns
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter(|c| c.starts_with("198.18.0.10:") || c.starts_with("[2001:2::10]:"))
        .map(str::to_string)
        .collect()
}

/// `member`'s gauge of a shared address.
fn carries(f: &Ferrovs, address: &str) -> bool {
    f.metric(&format!(
        "ferrovs_sync_shared_address_active{{address=\"{address}\"}}"
    )) == 1.0
}

fn forwarded(f: &Ferrovs) -> f64 {
    f.metric("ferrovs_service_in_packets_total")
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn downloads_survive_an_instance_killed_and_restarted() {
    let mut p = Pair::new("sync");
    let a = p.start(1);
    let b = p.start(2);
    let ready = wait_for(Duration::from_secs(10), || {
        (carries(&a, NAT_VIP) && !carries(&b, NAT_VIP)).then_some(())
    });
    assert!(
        ready.is_some(),
        "A carries its shared addresses:\n{}",
        p.ctl("lb1", &["sync"])
    );
    println!("{}", p.ctl("lb2", &["sync"]));

    let expected = {
        let out = run(&["sha256sum", p.rs_file.to_str().unwrap()]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let script = format!(
        "for vip in {}; do for i in $(seq 1 {DOWNLOADS_PER_MODE}); do \
           (echo \"$vip $(curl -g -s --limit-rate {RATE} -m 90 http://$vip/big | sha256sum)\") & \
         done; done; wait; echo done",
        URL_HOSTS.join(" ")
    );
    p.lab
        .spawn("downloads", &p.client, &["bash", "-c", &script]);
    std::thread::sleep(Duration::from_secs(2));
    // Every download A carries as ESTABLISHED must have its copy at B (compared
    // by client endpoint, so downloads still starting or ending don't matter).
    let a_conns = wait_for(Duration::from_secs(10), || {
        let set = established_clients(&p.ctl("lb1", &["conns", "--state", "ESTABLISHED"]));
        (set.len() >= URL_HOSTS.len() * DOWNLOADS_PER_MODE).then_some(set)
    })
    .unwrap_or_else(|| panic!("A carries the downloads:\n{}", p.ctl("lb1", &["conns"])))
    .len();
    let b_copies = wait_for(Duration::from_secs(10), || {
        let a_set = established_clients(&p.ctl("lb1", &["conns", "--state", "ESTABLISHED"]));
        let b_set = established_clients(&p.ctl("lb2", &["conns", "--state", "ESTABLISHED"]));
        a_set.is_subset(&b_set).then_some(b_set.len())
    })
    .unwrap_or_else(|| {
        panic!(
            "B has copies of A's connections:\nA:\n{}\n{}\nB:\n{}\n{}",
            p.ctl("lb1", &["sync"]),
            p.ctl("lb1", &["conns"]),
            p.ctl("lb2", &["sync"]),
            p.ctl("lb2", &["conns"])
        )
    });
    println!("A carries {a_conns} downloads; B holds {b_copies} copies");

    // A dies; B takes over within the peer timeout and carries the downloads on.
    let b_before = forwarded(&b);
    let t0 = Instant::now();
    p.lab
        .exec_ok(&p.lbs[0], &["kill", "-9", &a.pid().to_string()]);
    drop(a);
    let took_over = wait_for(Duration::from_secs(5), || {
        (carries(&b, NAT_VIP) && carries(&b, "198.19.0.254")).then(|| t0.elapsed())
    })
    .expect("B takes the shared addresses over");
    std::thread::sleep(Duration::from_secs(2));
    let b_after = forwarded(&b);
    println!(
        "kill -9 A: B answers for the shared addresses {took_over:?} later; B forwarded {} packets in the next 2 s",
        b_after - b_before
    );
    assert!(b_after - b_before > 100.0, "B carries the downloads on");

    // A comes back: it catches up with B's bulk transfer, then takes its
    // addresses back and carries the downloads to their end.
    let a = p.start(1);
    let back = wait_for(Duration::from_secs(10), || {
        (carries(&a, NAT_VIP) && !carries(&b, NAT_VIP)).then(|| p.ctl("lb1", &["sync"]))
    })
    .expect("A takes its addresses back");
    println!("A again:\n{back}");
    assert!(back.contains("ready"));
    let installed = a.metric("ferrovs_sync_connections_installed_total");
    assert!(
        installed >= (URL_HOSTS.len() * DOWNLOADS_PER_MODE) as f64,
        "A got the bulk transfer: {installed}"
    );

    let log = wait_for(Duration::from_secs(90), || {
        let log = std::fs::read_to_string(p.lab.dir.join("downloads.log")).ok()?;
        log.contains("done").then_some(log)
    })
    .expect("downloads finished");
    let good = log.lines().filter(|l| l.contains(&expected)).count();
    println!(
        "{good} of {} downloads complete with the right content ({:?} after the kill)",
        URL_HOSTS.len() * DOWNLOADS_PER_MODE,
        t0.elapsed()
    );
    for vip in URL_HOSTS {
        let n = log
            .lines()
            .filter(|l| l.starts_with(vip) && l.contains(&expected))
            .count();
        assert_eq!(n, DOWNLOADS_PER_MODE, "{vip}:\n{log}");
    }
    assert!(forwarded(&a) > 100.0, "A carried them after its restart");
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn forged_sync_datagrams_are_dropped_and_counted() {
    let mut p = Pair::new("syncf");
    let b = p.start(2);
    // The forger takes A's address (A is not running), and one no member has.
    let forger = p.lab.ns("forger");
    p.lab.link(
        &forger,
        "eth0",
        &["198.19.0.1/24", "198.19.0.50/24"],
        &p.lan,
        "p-forger",
        &[],
    );
    p.lab
        .exec_ok(&p.lan, &["ip", "link", "set", "p-forger", "master", "br0"]);
    let script = peer("sync_forger.py");
    for source in ["198.19.0.1:8848", "198.19.0.50:8848"] {
        let out = p.lab.exec_ok(
            &forger,
            &[
                "/usr/bin/python3",
                &script,
                source,
                "198.19.0.2:8848",
                &p.key,
                "198.18.0.10",
                NAT_VIP,
                "198.19.0.10",
            ],
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("sent 6"));
    }
    let dropped = |reason: &str| {
        b.metric(&format!(
            "ferrovs_sync_dropped_total{{reason=\"{reason}\"}}"
        ))
    };
    let counted = wait_for(Duration::from_secs(5), || {
        (dropped("unknown_peer") == 6.0).then_some(())
    });
    assert!(counted.is_some(), "{}", p.ctl("lb2", &["sync"]));
    println!("{}", p.ctl("lb2", &["sync"]));
    for (reason, n) in [
        ("replay", 1.0),
        ("bad_tag", 1.0),
        ("truncated", 1.0),
        ("too_large", 1.0),
        ("not_sync", 1.0),
        ("unknown_peer", 6.0),
        ("bad_record", 0.0),
    ] {
        assert_eq!(dropped(reason), n, "{reason}");
    }
    assert_eq!(b.metric("ferrovs_sync_datagrams_received_total"), 1.0);
    assert_eq!(b.metric("ferrovs_sync_connections_installed_total"), 1.0);
    let conns = p.ctl("lb2", &["conns"]);
    let listed: Vec<&str> = conns
        .lines()
        .filter(|l| l.contains("198.18.0.10"))
        .collect();
    assert_eq!(listed.len(), 1, "{conns}");
    assert!(
        listed[0].contains("198.18.0.10:40000") && listed[0].contains("ESTABLISHED"),
        "{conns}"
    );
    assert!(b.stop().success());
}
