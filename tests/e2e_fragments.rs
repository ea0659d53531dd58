//! IP fragments through a NAT UDP service (issue #32): a DNS answer of about 4000
//! bytes, fragmented by the real server, reaches `dig` whole over IPv4 and IPv6,
//! and a 3000-byte request fragmented by the client comes back echoed, with one
//! worker and with two.
//!
//! ferrovs's ports here are `net_tap` devices, not `net_af_packet`: af_packet's
//! fanout sets PACKET_FANOUT_FLAG_DEFRAG, so the kernel would reassemble IPv4
//! fragments before ferrovs saw them. Each TAP (created by ferrovs in its
//! namespace) is bridged there to a veth leading to the client or the server:
//!
//! ```text
//!   client eth0 -- wan0 [br-w] dtapw == ferrovs == dtapl [br-l] lan0 -- eth0 rs0
//!   198.18.0.10        (lb namespace)    198.18.0.1 / 198.19.0.1        198.19.0.10
//!   2001:2::10                           2001:2::1 / 2001:2:0:19::1     2001:2:0:19::10
//! ```

mod common;

use common::*;
use std::time::Duration;

const VIP: &str = "198.18.0.100";
const VIP6: &str = "2001:2::100";

/// A TXT record of 16 strings of 250 bytes: an answer of about 4 KB.
fn big_txt() -> String {
    let strings: Vec<String> = (0..16)
        .map(|i| {
            let c = char::from(b'a' + i as u8);
            format!("\"{}\"", c.to_string().repeat(250))
        })
        .collect();
    format!("big.example.org,{}", strings.join(","))
}

struct Bed {
    lab: Lab,
    lb: String,
    client: String,
    rs: String,
}

fn bed(tag: &str) -> Bed {
    let mut lab = Lab::new(tag);
    let lb = lab.ns("lb");
    let client = lab.ns("client");
    let rs = lab.ns("rs0");
    for br in ["br-w", "br-l"] {
        lab.exec_ok(&lb, &["ip", "link", "add", br, "type", "bridge"]);
        lab.exec_ok(
            &lb,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{br}.disable_ipv6=1"),
            ],
        );
        lab.exec_ok(&lb, &["ip", "link", "set", br, "up"]);
    }
    // Bridged frames stay out of iptables (the harness's raw rules name the TAPs).
    for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        lab.exec(&lb, &["sysctl", "-qw", &format!("net.bridge.{key}=0")]);
    }
    lab.link(
        &lb,
        "wan0",
        &[],
        &client,
        "eth0",
        &["198.18.0.10/24", "2001:2::10/64"],
    );
    lab.link(
        &lb,
        "lan0",
        &[],
        &rs,
        "eth0",
        &["198.19.0.10/24", "2001:2:0:19::10/64"],
    );
    lab.exec_ok(&lb, &["ip", "link", "set", "wan0", "master", "br-w"]);
    lab.exec_ok(&lb, &["ip", "link", "set", "lan0", "master", "br-l"]);
    lab.exec_ok(&rs, &["ip", "route", "add", "default", "via", "198.19.0.1"]);
    lab.exec_ok(
        &rs,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:2:0:19::1",
        ],
    );
    Bed {
        lab,
        lb,
        client,
        rs,
    }
}

fn ferrovs_config(two_workers: bool) -> String {
    let (eal_cores, workers, mbufs) = if two_workers {
        ("[0, 1, 2]\n  cpu_map: { 2: 1 }", "[1, 2]", 16383)
    } else {
        ("[0, 1]", "[1]", 8191)
    };
    format!(
        r#"eal:
  cores: {eal_cores}
  memory_mb: 256
  hugepages: false
  file_prefix: ferrovs-e2e
ports:
  - name: wan
    device: "net_tap8,iface=dtapw"
    addresses: ["198.18.0.1/24", "2001:2::1/64"]
  - name: lan
    device: "net_tap9,iface=dtapl"
    addresses: ["198.19.0.1/24", "2001:2:0:19::1/64"]
workers:
  cores: {workers}
  idle_backoff: true
mempool:
  mbufs: {mbufs}
connections:
  max: 65536
services:
  - {{ name: dns, vip: {VIP}, port: 53, protocol: udp, mode: nat, scheduler: rr,
      real_servers: [{{ address: 198.19.0.10, port: 53 }}] }}
  - {{ name: dns6, vip: "{VIP6}", port: 53, protocol: udp, mode: nat, scheduler: rr,
      real_servers: [{{ address: "2001:2:0:19::10", port: 53 }}] }}
  - {{ name: echo, vip: {VIP}, port: 7, protocol: udp, mode: nat, scheduler: rr,
      real_servers: [{{ address: 198.19.0.10, port: 7007 }}] }}
  - {{ name: echo6, vip: "{VIP6}", port: 7, protocol: udp, mode: nat, scheduler: rr,
      real_servers: [{{ address: "2001:2:0:19::10", port: 7007 }}] }}
"#
    )
}

impl Bed {
    /// Bridges ferrovs's TAPs to the veths, offloads off. The TAP's kernel side
    /// gets a MAC of its own: the bridge must not take ferrovs's MAC for a local one.
    fn attach_taps(&self) {
        for (i, (tap, br)) in [("dtapw", "br-w"), ("dtapl", "br-l")].iter().enumerate() {
            let ns = &self.lb;
            let up = wait_for(Duration::from_secs(5), || {
                self.lab
                    .exec(ns, &["ip", "link", "show", tap])
                    .status
                    .success()
                    .then_some(())
            });
            assert!(up.is_some(), "ferrovs created no {tap}");
            self.lab.exec(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{tap}.disable_ipv6=1"),
                ],
            );
            self.lab.exec_ok(
                ns,
                &[
                    "ip",
                    "link",
                    "set",
                    tap,
                    "address",
                    &format!("02:fe:00:00:00:0{i}"),
                ],
            );
            self.lab.exec(
                ns,
                &[
                    "ethtool", "-K", tap, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                ],
            );
            self.lab
                .exec_ok(ns, &["ip", "link", "set", tap, "master", br]);
            self.lab.exec_ok(ns, &["ip", "link", "set", tap, "up"]);
        }
    }

    fn servers(&mut self) {
        let pid = self.lab.dir.join("dnsmasq.pid");
        let rs = self.rs.clone();
        self.lab.spawn(
            "dnsmasq",
            &rs,
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=198.19.0.10,2001:2:0:19::10",
                "--bind-interfaces",
                "--port=53",
                "--edns-packet-max=4096",
                &format!("--txt-record={}", big_txt()),
                &format!("--pid-file={}", pid.display()),
                "--user=nobody",
                "--log-facility=-",
            ],
        );
        let echo = peer("udp_echo.py");
        self.lab.spawn(
            "echo",
            &rs,
            &["/usr/bin/python3", &echo, "198.19.0.10", "7007", "rs0"],
        );
        self.lab.spawn(
            "echo6",
            &rs,
            &["/usr/bin/python3", &echo, "2001:2:0:19::10", "7007", "rs0"],
        );
        let listening = wait_for(Duration::from_secs(5), || {
            let dns = self.lab.exec(&rs, &["ss", "-Hlun", "sport = :53"]);
            let echo = self.lab.exec(&rs, &["ss", "-Hlun", "sport = :7007"]);
            let n = String::from_utf8_lossy(&echo.stdout).lines().count();
            (!dns.stdout.is_empty() && n >= 2).then_some(())
        });
        assert!(listening.is_some(), "the servers do not listen");
    }

    /// `dig` for the big TXT record at `vip`; its output (and its errors: a
    /// missing `dig` then says so in the assertion's message).
    fn dig(&self, vip: &str) -> String {
        let out = self.lab.exec(
            &self.client,
            &[
                "dig",
                "+bufsize=4096",
                "+notcp",
                "+ignore",
                "+time=2",
                "+tries=1",
                "TXT",
                "big.example.org",
                &format!("@{vip}"),
            ],
        );
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        text
    }

    /// Fragments on the client's link in a capture: (IPv4 non-first, IPv6).
    fn count_fragments(&self, pcap: &str) -> (usize, usize) {
        let count = |filter: &str| {
            let out = self
                .lab
                .exec(&self.client, &["tcpdump", "-nn", "-r", pcap, filter]);
            String::from_utf8_lossy(&out.stdout).lines().count()
        };
        (count("ip[6:2] & 0x1fff != 0"), count("ip6[6] == 44"))
    }
}

/// The DNS answer arrived whole: one answer, about 4 KB, not truncated.
fn assert_big_answer(out: &str, vip: &str) {
    assert!(out.contains("status: NOERROR"), "dig @{vip}:\n{out}");
    assert!(out.contains("ANSWER: 1,"), "dig @{vip}:\n{out}");
    assert!(!out.contains(" tc "), "truncated answer @{vip}:\n{out}");
    let size: usize = out
        .lines()
        .find_map(|l| l.split("MSG SIZE  rcvd: ").nth(1))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no size in dig's output:\n{out}"));
    assert!(size > 4000, "a {size}-byte answer @{vip}:\n{out}");
    assert!(
        out.contains(&"p".repeat(250)),
        "the last string of the record @{vip}:\n{out}"
    );
}

fn fragments_through_nat(tag: &str, two_workers: bool) {
    let mut bed = bed(tag);
    bed.servers();
    let lb = bed.lb.clone();
    let f = bed.lab.ferrovs(&lb, &ferrovs_config(two_workers));
    bed.attach_taps();
    let pcap = bed.lab.dir.join("client.pcap");
    let pcap = pcap.to_str().unwrap().to_string();
    let client = bed.client.clone();
    bed.lab.spawn(
        "tcpdump",
        &client,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-nn",
            "--immediate-mode",
            "-U",
            "-w",
            &pcap,
        ],
    );
    std::thread::sleep(Duration::from_secs(1));

    for vip in [VIP, VIP6] {
        // Several queries: new source ports, so with two workers several owners.
        for _ in 0..4 {
            assert_big_answer(&bed.dig(vip), vip);
        }
        let echo = bed.lab.exec(
            &bed.client,
            &[
                "/usr/bin/python3",
                &peer("udp_big.py"),
                vip,
                "7",
                "5",
                "3000",
            ],
        );
        let text = String::from_utf8_lossy(&echo.stdout);
        assert!(
            echo.status.success() && text.starts_with("ok 5 3004"),
            "3000-byte datagrams to {vip}:7: {text}{}",
            String::from_utf8_lossy(&echo.stderr)
        );
    }
    // Written packet by packet (-U, --immediate-mode): what was seen is on disk.
    std::thread::sleep(Duration::from_millis(1500));
    bed.lab.kill("tcpdump");

    // The fragments really crossed ferrovs: the client saw them, and every one
    // was counted on the real server (4 answers of 3 fragments a family, 5
    // echoes of 3 fragments each way).
    let (v4, v6) = bed.count_fragments(&pcap);
    eprintln!("client link: {v4} IPv4 later fragments, {v6} IPv6 fragments");
    assert!(v4 >= 4 * 2 + 5 * 2 * 2, "IPv4 later fragments seen: {v4}");
    assert!(v6 >= 4 * 3 + 5 * 3 * 2, "IPv6 fragments seen: {v6}");
    let m = f.metrics();
    let out = |svc: &str| {
        sample(
            &m,
            &format!("ferrovs_real_server_out_packets_total{{service=\"{svc}\"}}"),
        )
    };
    let inn = |svc: &str| {
        sample(
            &m,
            &format!("ferrovs_real_server_in_packets_total{{service=\"{svc}\"}}"),
        )
    };
    eprintln!(
        "real server packets out: dns {} dns6 {} echo {}/{} echo6 {}/{}",
        out("dns"),
        out("dns6"),
        inn("echo"),
        out("echo"),
        inn("echo6"),
        out("echo6")
    );
    assert!(out("dns") >= 12.0, "dns answers' packets: {}", out("dns"));
    assert!(
        out("dns6") >= 12.0,
        "dns6 answers' packets: {}",
        out("dns6")
    );
    assert!(inn("echo") >= 15.0 && out("echo") >= 15.0);
    assert!(inn("echo6") >= 15.0 && out("echo6") >= 15.0);
    for reason in [
        "fragment",
        "fragment_malformed",
        "fragment_table_full",
        "fragment_hold_full",
        "fragment_unmatched",
        "fragment_unsupported",
    ] {
        let n = sample(
            &m,
            &format!("ferrovs_worker_dropped_packets_total{{reason=\"{reason}\"}}"),
        );
        assert_eq!(n, 0.0, "dropped as {reason}");
    }
    if two_workers {
        let handed = sample(&m, "ferrovs_worker_handoff_packets_total");
        eprintln!("two workers: {handed} packets handed over");
    }
    let status = f.stop();
    assert!(status.success(), "ferrovs exit: {status}");
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn fragmented_dns_answers_and_requests_pass_a_nat_service() {
    fragments_through_nat("frg", false);
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn fragments_pass_a_nat_service_with_two_workers() {
    fragments_through_nat("frg2", true);
}
