//! 802.1Q VLANs end to end: clients on two VLANs of the wan port and an untagged
//! one on the same port reach NAT and FULLNAT services; replies leave tagged; a
//! VLAN's own address reaches the kernel through its `wan.100` interface.
//!
//! This kernel has no 8021q module, so each VLAN client's stack sits behind a
//! userspace bridge (`tests/peers/vlan_bridge.py`): a TAP (untagged) bridged to
//! a veth (tagged) into the switch in front of ferrovs.
//!
//! ```text
//!  client   198.18.0.10/24  (untagged) --+
//!  c100 tap0 198.20.0.10/24 [bridge 100] -+-- switch --- wan0 [ferrovs] lan0 --- switch --- rs0, rs1
//!  c200 tap0 198.21.0.10/24 [bridge 200] -+       wan 198.18.0.1, wan.100 198.20.0.1,      198.19.0.10, .11
//!                                                 wan.200 198.21.0.1     lan 198.19.0.1
//! ```
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_vlan -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::time::Duration;

const NAT_VIP: &str = "198.18.0.100";
const FULLNAT_VIP: &str = "198.18.0.101";

struct VlanLab {
    lab: Lab,
    lb: String,
    /// The switch in front of ferrovs's wan port (its veth end there: `p-lb`).
    swan: String,
    client: String,
    /// (namespace, VLAN id) of each VLAN client.
    vlan_clients: Vec<(String, u16)>,
}

impl VlanLab {
    fn new(tag: &str) -> VlanLab {
        let mut lab = Lab::new(tag);
        let lb = lab.ns("lb");
        let swan = lab.ns("swan");
        let slan = lab.ns("slan");
        for sw in [&swan, &slan] {
            lab.exec_ok(sw, &["ip", "link", "add", "br0", "type", "bridge"]);
            lab.exec_ok(sw, &["ip", "link", "set", "br0", "up"]);
        }
        lab.link(&lb, "wan0", &[], &swan, "p-lb", &[]);
        lab.link(&lb, "lan0", &[], &slan, "p-lb", &[]);
        for sw in [&swan, &slan] {
            lab.exec_ok(sw, &["ip", "link", "set", "p-lb", "master", "br0"]);
        }
        let client = lab.ns("client");
        lab.link(&client, "eth0", &["198.18.0.10/24"], &swan, "p-c", &[]);
        lab.exec_ok(&swan, &["ip", "link", "set", "p-c", "master", "br0"]);
        let mut vlan_clients = Vec::new();
        for (vid, net) in [(100u16, "198.20.0"), (200, "198.21.0")] {
            let ns = lab.ns(&format!("c{vid}"));
            let port = format!("p-c{vid}");
            lab.link(&ns, "eth0", &[], &swan, &port, &[]);
            lab.exec_ok(&swan, &["ip", "link", "set", &port, "master", "br0"]);
            lab.spawn(
                &format!("bridge{vid}"),
                &ns,
                &[
                    "/usr/bin/python3",
                    &peer("vlan_bridge.py"),
                    "tap0",
                    "eth0",
                    &vid.to_string(),
                ],
            );
            let up = wait_for(Duration::from_secs(5), || {
                lab.exec(&ns, &["ip", "link", "show", "tap0"])
                    .status
                    .success()
                    .then_some(())
            });
            assert!(up.is_some(), "VLAN {vid} bridge did not create its TAP");
            // The TAP hands frames to the bridge script as the stack wrote them:
            // finished checksums, no segmentation left for a NIC.
            let _ = lab.exec(
                &ns,
                &[
                    "ethtool", "-K", "tap0", "tx", "off", "tso", "off", "gso", "off",
                ],
            );
            lab.exec_ok(&ns, &["sysctl", "-qw", "net.ipv6.conf.tap0.disable_ipv6=1"]);
            let addr = format!("{net}.10/24");
            lab.exec_ok(&ns, &["ip", "addr", "add", &addr, "dev", "tap0"]);
            lab.exec_ok(&ns, &["ip", "link", "set", "tap0", "up"]);
            let gw = format!("{net}.1");
            lab.exec_ok(&ns, &["ip", "route", "add", "default", "via", &gw]);
            vlan_clients.push((ns, vid));
        }
        for i in 0..2 {
            let ns = lab.ns(&format!("rs{i}"));
            let addr = format!("198.19.0.{}/24", 10 + i);
            let port = format!("p-rs{i}");
            lab.link(&ns, "eth0", &[&addr], &slan, &port, &[]);
            lab.exec_ok(&slan, &["ip", "link", "set", &port, "master", "br0"]);
            lab.exec_ok(&ns, &["ip", "route", "add", "default", "via", "198.19.0.1"]);
            lab.http_server(
                &format!("nginx{i}"),
                &ns,
                &format!("198.19.0.{}", 10 + i),
                8080,
                &format!("rs{i}"),
            );
        }
        VlanLab {
            lab,
            lb,
            swan,
            client,
            vlan_clients,
        }
    }

    fn config(&self) -> String {
        let servers = vec![
            ("198.19.0.10".to_string(), 8080, 1),
            ("198.19.0.11".to_string(), 8080, 1),
        ];
        let services = nat_service("web", NAT_VIP, 80, "tcp", "rr", &servers, "")
            + &service(
                "full",
                "fullnat",
                FULLNAT_VIP,
                80,
                "rr",
                &servers,
                "    local_addresses: [198.19.0.2]\n",
            );
        config(
            &[
                ("wan", "wan0", &["198.18.0.1/24"]),
                ("lan", "lan0", &["198.19.0.1/24"]),
            ],
            &format!(
                "vlans:\n  \
                 - {{ port: wan, id: 100, name: wan.100, addresses: [\"198.20.0.1/24\"] }}\n  \
                 - {{ port: wan, id: 200, name: wan.200, addresses: [\"198.21.0.1/24\"] }}\n\
                 services:\n{services}"
            ),
        )
    }

    /// `n` GETs of `url` from `ns`, one connection each; the bodies.
    fn curl(&self, ns: &str, url: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let out = self.lab.exec(ns, &["curl", "-s", "-m", "5", url]);
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
            .collect()
    }
}

fn vlan_metric(f: &Ferrovs, dir: &str, vid: u16) -> f64 {
    f.metric(&format!(
        "ferrovs_vlan_{dir}_packets_total{{port=\"wan\",vlan=\"{vid}\"}}"
    ))
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn clients_on_two_vlans_and_untagged_reach_nat_and_fullnat_services() {
    // net_af_packet offers tag stripping and insertion: the NIC path.
    vlan_clients_reach_services("vl", false);
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn the_same_with_tags_in_software() {
    vlan_clients_reach_services("vs", true);
}

fn vlan_clients_reach_services(tag: &str, software: bool) {
    let mut v = VlanLab::new(tag);
    // The child inherits the environment at spawn; taken away again at once.
    if software {
        std::env::set_var("FERROVS_TEST_VLAN_SOFTWARE", "1");
    }
    let f = v.lab.ferrovs(&v.lb, &v.config());
    std::env::remove_var("FERROVS_TEST_VLAN_SOFTWARE");
    let log = f.log_text();
    let expected = if software {
        "port wan: VLANs 100 (wan.100), 200 (wan.200); VLAN tags stripped by software, \
         inserted by software, filtered by software"
    } else {
        "port wan: VLANs 100 (wan.100), 200 (wan.200); VLAN tags stripped by the NIC, \
         inserted by the NIC, filtered by software"
    };
    assert!(log.contains(expected), "{log}");

    // Replies to VLAN 100 leave ferrovs tagged: watch the wire in front of it, at
    // the far end of wan0's veth (net_af_packet bypasses the qdisc, so a capture
    // on wan0 itself would not see what ferrovs sends).
    let capture = v.lab.dir.join("wan.pcap.txt");
    let capture_cmd = format!(
        "timeout 20 tcpdump -l -e -nn -c 4 -i p-lb 'vlan 100 and src host {NAT_VIP} and tcp src port 80' > {} 2>&1",
        capture.display()
    );
    v.lab.spawn("tcpdump", &v.swan, &["sh", "-c", &capture_cmd]);
    std::thread::sleep(Duration::from_millis(500));

    for (ns, vid) in &v.vlan_clients {
        let nat = tally(&v.curl(ns, &format!("http://{NAT_VIP}/"), 10));
        println!("VLAN {vid} NAT: {nat:?}");
        assert_eq!(
            nat,
            vec![("rs0".into(), 5), ("rs1".into(), 5)],
            "VLAN {vid}"
        );
        let full = tally(&v.curl(ns, &format!("http://{FULLNAT_VIP}/"), 4));
        println!("VLAN {vid} FULLNAT: {full:?}");
        assert_eq!(
            full,
            vec![("rs0".into(), 2), ("rs1".into(), 2)],
            "VLAN {vid}"
        );
    }
    let untagged = tally(&v.curl(&v.client, &format!("http://{NAT_VIP}/"), 10));
    println!("untagged NAT: {untagged:?}");
    assert_eq!(untagged, vec![("rs0".into(), 5), ("rs1".into(), 5)]);

    let captured = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&capture).unwrap_or_default();
        (text.matches("vlan 100").count() >= 4).then_some(text)
    });
    let text = std::fs::read_to_string(&capture).unwrap_or_default();
    println!("tcpdump -e on the wire of wan0:\n{text}");
    assert!(
        captured.is_some(),
        "no tagged replies on wan0's wire:\n{text}"
    );

    // A short load over VLAN 200.
    let (ns200, _) = &v.vlan_clients[1];
    let out = v.lab.exec_ok(
        ns200,
        &["wrk", "-t1", "-c4", "-d2s", &format!("http://{NAT_VIP}/")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (requests, errors, rps) = wrk_summary(&text);
    println!("wrk over VLAN 200: {requests} requests, {errors} errors, {rps:.0} req/s");
    assert!(requests > 100, "{text}");
    assert_eq!(errors, 0, "{text}");

    let m = f.metrics();
    for vid in [100, 200] {
        let (rx, tx) = (vlan_metric(&f, "rx", vid), vlan_metric(&f, "tx", vid));
        println!("VLAN {vid}: rx {rx}, tx {tx}");
        assert!(rx > 40.0 && tx > 40.0, "VLAN {vid}: rx {rx} tx {tx}\n{m}");
    }
    assert!(vlan_metric(&f, "rx", 200) > requests as f64);
    f.assert_mempool_conserved();
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_vlan_has_its_kernel_interface_and_unknown_tags_are_dropped() {
    let mut v = VlanLab::new("vk");
    let f = v.lab.ferrovs(&v.lb, &v.config());
    let ns100 = v.vlan_clients[0].0.clone();
    let ns100 = ns100.as_str();

    // The VLAN's kernel interface holds its address.
    let addrs = v
        .lab
        .exec_ok(&v.lb, &["ip", "-4", "-o", "addr", "show", "dev", "wan.100"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(addrs.contains("198.20.0.1/24"), "{addrs}");

    // ferrovs answers ping to the VLAN address itself.
    let ping = v
        .lab
        .exec(ns100, &["ping", "-c", "2", "-W", "2", "198.20.0.1"]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // TCP to the VLAN address is the kernel's: a socket bound to it in ferrovs's
    // namespace answers through the wan.100 TAP, tagged on the way out.
    let dir = v.lab.dir.join("www");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "kernel-on-vlan\n").unwrap();
    v.lab.spawn(
        "kernel-http",
        &v.lb,
        &[
            "/usr/bin/python3",
            "-m",
            "http.server",
            "--bind",
            "198.20.0.1",
            "--directory",
            dir.to_str().unwrap(),
            "8000",
        ],
    );
    let body = wait_for(Duration::from_secs(10), || {
        let out = v
            .lab
            .exec(ns100, &["curl", "-s", "-m", "2", "http://198.20.0.1:8000/"]);
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (body == "kernel-on-vlan").then_some(body)
    });
    assert!(body.is_some(), "no answer from the kernel through wan.100");
    // The kernel resolves and reaches the VLAN client through its TAP.
    let ping = v.lab.exec(
        &v.lb,
        &["ping", "-c", "2", "-W", "2", "-I", "wan.100", "198.20.0.10"],
    );
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // A tag the port does not carry: dropped and counted.
    let before = f.metric(
        "ferrovs_worker_dropped_packets_total{worker=\"0\",reason=\"vlan_not_configured\"}",
    );
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&v.lab.mac(ns100, "eth0"));
    frame.extend_from_slice(&[0x81, 0x00, 0x01, 0x2c, 0x08, 0x06]);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&v.lab.mac(ns100, "eth0"));
    frame.extend_from_slice(&[198, 22, 0, 10, 0, 0, 0, 0, 0, 0, 198, 22, 0, 1]);
    frame.resize(64, 0);
    v.lab.inject(ns100, "eth0", &[frame.clone(), frame]);
    let counted = wait_for(Duration::from_secs(5), || {
        let now = f.metric(
            "ferrovs_worker_dropped_packets_total{worker=\"0\",reason=\"vlan_not_configured\"}",
        );
        (now >= before + 2.0).then_some(now)
    });
    assert!(
        counted.is_some(),
        "VLAN 300 frames not counted as vlan_not_configured"
    );
    f.assert_mempool_conserved();
    assert!(f.stop().success());
}
