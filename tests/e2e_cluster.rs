//! ferrovs as a cluster member, end to end, with real routing daemons: two ferrovs
//! instances announce a VIP through BIRD 2 (each BIRD peering over its instance's
//! exception path) to a router that runs BIRD with L4 ECMP; a client behind the
//! router; two real servers behind a DR service with `mh` and `sloppy`.
//!
//! ```text
//!   client 198.18.2.10 -- router 198.18.2.1 | 198.18.0.254 --+-- bridge
//!                          (BIRD, ECMP)                       +-- lb1 198.18.0.1 (ferrovs + BIRD)
//!                                                             +-- lb2 198.18.0.2 (ferrovs + BIRD)
//!                                                             +-- rs0 198.18.0.20, rs1 .21 (VIP on lo)
//! ```
//!
//! Shows: (a) both instances carry client flows; (b) a graceful stop of one during
//! a stream of new requests fails none; (c) `kill -9` of one during long downloads:
//! the downloads the router moves to the other instance complete; (d) a VIP whose
//! servers all fail is withdrawn and comes back. Routing convergence is measured
//! as the time from a withdrawal to the router's table changing.
//!
//! Needs root, DPDK and BIRD: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_cluster -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::time::{Duration, Instant};

const VIP: &str = "198.18.10.100";
const ROUTER: &str = "198.18.0.254";
/// Size of `/big`, downloaded at `RATE` bytes/s: about 8 s a download.
const BIG: usize = 800_000;
const RATE: &str = "100k";
const DOWNLOADS: usize = 24;

/// BIRD on an appliance: learns the VIP routes ferrovs keeps in table 100 and
/// announces them to the router, over ferrovs's exception-path interface.
fn appliance_bird(me: &str, asn: u32) -> String {
    format!(
        "router id {me};\n\
         protocol device {{ scan time 1; }}\n\
         protocol kernel vips {{\n  kernel table 100;\n  learn;\n  scan time 1;\n  \
           ipv4 {{ import all; export none; }};\n}}\n\
         protocol bgp uplink {{\n  local {me} as {asn};\n  neighbor {ROUTER} as 65000;\n  \
           hold time 3;\n  connect retry time 1;\n  error wait time 1,2;\n  \
           ipv4 {{ import none; export where proto = \"vips\"; next hop self; }};\n}}\n"
    )
}

/// BIRD on the router: both appliances as BGP peers, their routes merged into one
/// ECMP route in the kernel.
fn router_bird() -> String {
    let mut conf = format!(
        "router id {ROUTER};\nprotocol device {{ scan time 1; }}\n\
         protocol kernel {{\n  merge paths on;\n  ipv4 {{ import none; export all; }};\n}}\n"
    );
    for (name, addr, asn) in [("lb1", "198.18.0.1", 65001), ("lb2", "198.18.0.2", 65002)] {
        conf.push_str(&format!(
            "protocol bgp {name} {{\n  local {ROUTER} as 65000;\n  neighbor {addr} as {asn};\n  \
               hold time 3;\n  connect retry time 1;\n  error wait time 1,2;\n  \
               ipv4 {{ import all; export none; }};\n}}\n"
        ));
    }
    conf
}

/// An instance's config: one port on the bridge, the DR service, announce.
fn instance_config(addr: &str) -> String {
    let services = format!(
        "announce:\n  kernel_table: 100\n  shutdown_grace: \"2s\"\n\
         services:\n  - name: web\n    vip: {VIP}\n    port: 80\n    protocol: tcp\n    mode: dr\n\
         \x20   scheduler: mh\n    sched_flags: [mh-fallback, mh-port]\n    sloppy: true\n\
         \x20   health_check: {{ type: tcp, interval: \"500ms\", timeout: \"300ms\", rise: 1, fall: 2 }}\n\
         \x20   real_servers:\n      - {{ address: 198.18.0.20 }}\n      - {{ address: 198.18.0.21 }}\n"
    );
    config(&[("wan", "wan0", &[&format!("{addr}/24")])], &services)
}

/// The next hops of the router's route to the VIP (none: no route).
fn router_paths(lab: &Lab, router: &str) -> Vec<String> {
    let out = lab.exec(router, &["ip", "-4", "route", "show", VIP]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect()
}

/// Waits until the router's route to the VIP has `n` next hops; the time it took.
fn wait_paths(lab: &Lab, router: &str, n: usize, within: Duration) -> Duration {
    let t0 = Instant::now();
    let done = wait_for(within, || {
        (router_paths(lab, router).len() == n).then_some(())
    });
    assert!(
        done.is_some(),
        "the router's route to {VIP} never got {n} next hop(s): {:?}",
        router_paths(lab, router)
    );
    t0.elapsed()
}

struct Cluster {
    lab: Lab,
    router: String,
    client: String,
    lbs: [String; 2],
    servers: Vec<String>,
}

impl Cluster {
    fn new() -> Cluster {
        let mut lab = Lab::new("clu");
        let router = lab.ns("rtr");
        let client = lab.ns("client");
        let bridge = lab.ns("br");
        lab.exec_ok(&bridge, &["ip", "link", "add", "br0", "type", "bridge"]);
        lab.exec_ok(&bridge, &["ip", "link", "set", "br0", "up"]);
        let attach = |lab: &Lab, ns: &str, ifname: &str, addrs: &[&str], port: &str| {
            lab.link(ns, ifname, addrs, &bridge, port, &[]);
            lab.exec_ok(&bridge, &["ip", "link", "set", port, "master", "br0"]);
        };
        attach(&lab, &router, "lan0", &["198.18.0.254/24"], "p-rtr");
        lab.link(
            &router,
            "cli0",
            &["198.18.2.1/24"],
            &client,
            "eth0",
            &["198.18.2.10/24"],
        );
        lab.exec_ok(
            &client,
            &["ip", "route", "add", "default", "via", "198.18.2.1"],
        );
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.fib_multipath_hash_policy", "1"),
        ] {
            lab.exec_ok(&router, &["sysctl", "-qw", &format!("{key}={value}")]);
        }
        let mut lbs = Vec::new();
        for i in 1..=2 {
            let ns = lab.ns(&format!("lb{i}"));
            attach(&lab, &ns, "wan0", &[], &format!("p-lb{i}"));
            lbs.push(ns);
        }
        let mut servers = Vec::new();
        for i in 0..2 {
            let ns = lab.ns(&format!("rs{i}"));
            let addr = format!("198.18.0.{}", 20 + i);
            attach(
                &lab,
                &ns,
                "eth0",
                &[&format!("{addr}/24")],
                &format!("p-rs{i}"),
            );
            lab.exec_ok(
                &ns,
                &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
            );
            lab.exec_ok(&ns, &["ip", "route", "add", "default", "via", ROUTER]);
            for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
                for dev in ["all", "eth0"] {
                    lab.exec_ok(
                        &ns,
                        &[
                            "sysctl",
                            "-qw",
                            &format!("net.ipv4.conf.{dev}.{key}={value}"),
                        ],
                    );
                }
            }
            lab.http_server_with_file(
                &format!("nginx{i}"),
                &ns,
                "0.0.0.0",
                80,
                &format!("rs{i}"),
                BIG,
            );
            servers.push(ns);
        }
        lab.bird("bird-rtr", &router, &router_bird());
        Cluster {
            lab,
            router,
            client,
            lbs: [lbs[0].clone(), lbs[1].clone()],
            servers,
        }
    }

    /// Starts instance `i` (0 or 1) and its BIRD.
    fn start(&mut self, i: usize) -> Ferrovs {
        let addr = format!("198.18.0.{}", i + 1);
        let ns = self.lbs[i].clone();
        let f = self
            .lab
            .ferrovs_instance(&ns, &format!("lb{}", i + 1), &instance_config(&addr));
        self.lab.kill(&format!("bird-lb{}", i + 1));
        self.lab.bird(
            &format!("bird-lb{}", i + 1),
            &ns,
            &appliance_bird(&addr, 65001 + i as u32),
        );
        f
    }

    /// `n` HTTP GETs from the client, a new connection each: how many failed.
    fn requests(&self, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                let out = self.lab.exec(
                    &self.client,
                    &["curl", "-s", "-m", "3", &format!("http://{VIP}/")],
                );
                !String::from_utf8_lossy(&out.stdout).starts_with("rs")
            })
            .count()
    }
}

/// `ferrovs ctl conns` of instance `name`: its established connections.
fn conns_text(lab: &Lab, name: &str) -> String {
    let sock = lab.dir.join(format!("{name}.sock"));
    let out = run(&[
        FERROVS,
        "ctl",
        "--socket",
        sock.to_str().unwrap(),
        "conns",
        "--state",
        "ESTABLISHED",
        "--limit",
        "100000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The downloads instance `name` carries: its established connections to the VIP
/// (the requests of (a) and (b) have ended; their connections linger in later
/// states).
fn downloads_on(lab: &Lab, name: &str) -> usize {
    conns_text(lab, name)
        .lines()
        .filter(|l| l.contains(VIP) && l.contains("ESTABLISHED"))
        .count()
}

/// Connections the instance scheduled (all time).
fn scheduled(f: &Ferrovs) -> f64 {
    f.metric("ferrovs_service_connections_total{service=\"web\"}")
}

#[test]
#[ignore = "needs root, DPDK and BIRD: run via scripts/test.sh"]
fn two_instances_announce_a_vip_and_keep_flows_when_one_leaves() {
    let mut c = Cluster::new();
    let lb1 = c.start(0);
    let lb2 = c.start(1);
    let converged = wait_paths(&c.lab, &c.router, 2, Duration::from_secs(30));
    println!("both instances announced {VIP}: the router has 2 paths {converged:?} after the second start");
    assert_eq!(
        lb1.metric(&format!("ferrovs_vip_announced{{vip=\"{VIP}\"}}")),
        1.0
    );

    // The operator takes an instance out of the ECMP group and back.
    let ctl = |name: &str, args: &[&str]| {
        let sock = c.lab.dir.join(format!("{name}.sock"));
        let mut cmd = vec![FERROVS, "ctl", "--socket", sock.to_str().unwrap()];
        cmd.extend_from_slice(args);
        let out = run(&cmd);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(ctl("lb2", &["list"]).contains(&format!("{VIP}:80 mh (dr) announced")));
    ctl("lb2", &["withdraw", VIP]);
    let out = wait_paths(&c.lab, &c.router, 1, Duration::from_secs(10));
    assert!(ctl("lb2", &["list"]).contains("withdrawn"));
    ctl("lb2", &["announce", VIP]);
    let back = wait_paths(&c.lab, &c.router, 2, Duration::from_secs(10));
    println!("ctl withdraw: the router dropped lb2's path after {out:?}; ctl announce: back after {back:?}");

    // (a) The router spreads client flows over both instances.
    assert_eq!(c.requests(40), 0);
    let (a1, a2) = (scheduled(&lb1), scheduled(&lb2));
    println!("(a) 40 requests: lb1 scheduled {a1}, lb2 {a2}");
    assert!(
        a1 > 0.0 && a2 > 0.0,
        "both instances carry flows: {a1} {a2}"
    );

    // (b) A graceful stop during a stream of new connections fails none: the
    // instance withdraws first and forwards for its grace while the router moves
    // the traffic to the other.
    c.lab.spawn(
        "wrk-b",
        &c.client,
        &[
            "wrk",
            "-t1",
            "-c8",
            "-d6s",
            "-H",
            "Connection: close",
            &format!("http://{VIP}/"),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    let stopping = std::thread::spawn(move || lb1.stop());
    let withdrawn = wait_paths(&c.lab, &c.router, 1, Duration::from_secs(10));
    assert!(stopping.join().unwrap().success());
    println!(
        "(b) SIGTERM to lb1: the router dropped its path after {withdrawn:?}; lb1 exited after {:?}",
        t0.elapsed()
    );
    let out = wait_for(Duration::from_secs(15), || {
        let log = std::fs::read_to_string(c.lab.dir.join("wrk-b.log")).ok()?;
        log.contains("Requests/sec").then_some(log)
    })
    .expect("wrk finished");
    let (requests, errors, _) = wrk_summary(&out);
    println!("(b) during the stop: {requests} requests, {errors} failed");
    assert!(requests > 100, "{out}");
    assert_eq!(errors, 0, "{out}");

    // (c) kill -9 during long downloads: the router moves lb2's flows to lb1 after
    // the BGP hold time, and lb1 (sloppy, mh) carries them on to the same server.
    let lb1 = c.start(0);
    wait_paths(&c.lab, &c.router, 2, Duration::from_secs(30));
    let script = format!(
        "for i in $(seq 1 {DOWNLOADS}); do \
           (curl -s -o /dev/null -w '%{{http_code}} %{{size_download}}\\n' --limit-rate {RATE} \
              -m 60 http://{VIP}/big || echo failed) & \
         done; wait; echo done"
    );
    c.lab
        .spawn("downloads", &c.client, &["bash", "-c", &script]);
    // Every download under way: its connection established on one instance.
    let (on_lb1, on_lb2) = wait_for(Duration::from_secs(5), || {
        let counts = (downloads_on(&c.lab, "lb1"), downloads_on(&c.lab, "lb2"));
        (counts.0 + counts.1 == DOWNLOADS).then_some(counts)
    })
    .unwrap_or_else(|| {
        panic!(
            "not every download is established:\n{}\n{}",
            conns_text(&c.lab, "lb1"),
            conns_text(&c.lab, "lb2")
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    c.lab
        .exec_ok(&c.lbs[1], &["kill", "-9", &lb2.pid().to_string()]);
    let moved = wait_paths(&c.lab, &c.router, 1, Duration::from_secs(15));
    println!(
        "(c) kill -9 of lb2 with {on_lb2} live connections ({on_lb1} on lb1): the router dropped its path after {moved:?}"
    );
    let log = wait_for(Duration::from_secs(90), || {
        let log = std::fs::read_to_string(c.lab.dir.join("downloads.log")).ok()?;
        log.contains("done").then_some(log)
    })
    .expect("downloads finished");
    let complete = log.lines().filter(|l| *l == format!("200 {BIG}")).count();
    println!(
        "(c) {complete} of {DOWNLOADS} downloads complete ({on_lb2} were on lb2 when it was killed), {:?} after the kill",
        t0.elapsed()
    );
    assert!(on_lb2 > 0, "lb2 carried some downloads");
    assert_eq!(complete, DOWNLOADS, "{log}");
    drop(lb2);

    // (d) Every real server fails: the VIP is withdrawn (quorum 1), and announced
    // again when one comes back.
    for ns in c.servers.clone() {
        c.lab.kill_all_in(&ns);
    }
    let t0 = Instant::now();
    wait_paths(&c.lab, &c.router, 0, Duration::from_secs(15));
    println!(
        "(d) both servers down: the router lost the VIP {:?} after nginx stopped",
        t0.elapsed()
    );
    assert_eq!(
        lb1.metric(&format!("ferrovs_vip_announced{{vip=\"{VIP}\"}}")),
        0.0
    );
    let ns = c.servers[0].clone();
    c.lab
        .http_server_with_file("nginx0", &ns, "0.0.0.0", 80, "rs0", BIG);
    let t0 = Instant::now();
    wait_paths(&c.lab, &c.router, 1, Duration::from_secs(15));
    println!(
        "(d) rs0 back: the VIP is routed again {:?} after nginx started",
        t0.elapsed()
    );
    assert_eq!(c.requests(5), 0);
    assert!(lb1.stop().success());
}

/// The cluster example of `conf/cluster/`: both instances' configs pass
/// `check-config` and every BIRD configuration parses (`bird -p`).
#[test]
#[ignore = "needs BIRD: run via scripts/test.sh"]
fn the_cluster_example_is_valid() {
    let dir = format!("{}/conf/cluster", env!("CARGO_MANIFEST_DIR"));
    for f in [
        "ferrovs-a.yaml",
        "ferrovs-b.yaml",
        "sync-a.yaml",
        "sync-b.yaml",
    ] {
        let out = run(&[FERROVS, "check-config", &format!("{dir}/{f}")]);
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for f in ["bird-a.conf", "bird-b.conf", "bird-router.conf"] {
        let out = run(&["bird", "-p", "-c", &format!("{dir}/{f}")]);
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
