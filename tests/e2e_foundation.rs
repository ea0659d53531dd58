//! Foundation end to end: ARP, ping, metrics, malformed input, shutdown — real
//! Linux peers in network namespaces talking to a real ferrovs process.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --test e2e_foundation -- --ignored --test-threads=1`).

mod common;

use common::*;
use ferrovs_core::packet::craft::{self, L2};
use ferrovs_core::packet::MacAddr;
use std::time::{Duration, Instant};

/// client (198.18.0.10, 2001:2::10) --veth-- ferrovs wan (198.18.0.1, 2001:2::1)
fn one_arm(tag: &str) -> (Lab, String, String) {
    let mut lab = Lab::new(tag);
    let lb = lab.ns("lb");
    let client = lab.ns("client");
    lab.link(
        &lb,
        "wan0",
        &[],
        &client,
        "eth0",
        &["198.18.0.10/24", "2001:2::10/64"],
    );
    (lab, lb, client)
}

fn one_arm_config() -> String {
    config(&[("wan", "wan0", &["198.18.0.1/24", "2001:2::1/64"])], "")
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn answers_arp_for_its_address() {
    let (mut lab, lb, client) = one_arm("arp");
    let f = lab.ferrovs(&lb, &one_arm_config());
    let out = lab.exec(
        &client,
        &["arping", "-c", "3", "-w", "5", "-i", "eth0", "198.18.0.1"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "arping failed:\n{text}\n{}",
        f.log_text()
    );
    let our_mac = lab.mac(&lb, "wan0");
    let mac = our_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(text.contains(&mac), "replies not from {mac}:\n{text}");
    // an ARP request for an address ferrovs does not own is ignored and counted
    let _ = lab.exec(
        &client,
        &["arping", "-c", "2", "-w", "2", "-i", "eth0", "198.18.0.77"],
    );
    let m = f.metrics();
    assert!(
        sample(
            &m,
            "ferrovs_worker_dropped_packets_total{worker=\"0\",reason=\"arp_not_for_us\"}"
        ) >= 2.0
    );
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn answers_ping_v4_and_v6_and_reports_rtt() {
    let (mut lab, lb, client) = one_arm("ping");
    let f = lab.ferrovs(&lb, &one_arm_config());
    // first reply after start: start-up time to the first forwarded packet
    let first = wait_for(Duration::from_secs(10), || {
        let out = lab.exec(&client, &["ping", "-c", "1", "-W", "1", "198.18.0.1"]);
        out.status.success().then(Instant::now)
    })
    .expect("no ping reply within 10 s");
    println!(
        "ferrovs ready after {:?}; first ping reply {:?} after process start",
        f.ready_after,
        first - f.started
    );
    let out = lab.exec_ok(&client, &["ping", "-c", "20", "-i", "0.05", "198.18.0.1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0% packet loss"), "{text}");
    println!("{}", grep(&text, "rtt"));
    let out = lab.exec_ok(
        &client,
        &["ping", "-6", "-c", "5", "-i", "0.1", "2001:2::1"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0% packet loss"), "{text}");
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn counters_move_and_metrics_pass_promtool() {
    let (mut lab, lb, client) = one_arm("prom");
    let f = lab.ferrovs(&lb, &one_arm_config());
    let before = f.metrics();
    lab.exec_ok(&client, &["ping", "-c", "10", "-i", "0.05", "198.18.0.1"]);
    let after = f.metrics();
    for series in [
        "ferrovs_port_rx_packets_total{port=\"wan\"}",
        "ferrovs_port_tx_packets_total{port=\"wan\"}",
        "ferrovs_port_rx_bytes_total{port=\"wan\"}",
        "ferrovs_port_tx_bytes_total{port=\"wan\"}",
        "ferrovs_worker_rx_packets_total{worker=\"0\"}",
        "ferrovs_worker_tx_packets_total{worker=\"0\"}",
    ] {
        let (b, a) = (sample(&before, series), sample(&after, series));
        assert!(a >= b + 10.0, "{series}: {b} -> {a}");
    }
    assert!(sample(&after, "ferrovs_mempool_available_mbufs") > 0.0);
    assert_eq!(sample(&after, "ferrovs_build_info"), 1.0);
    let path = lab.write("metrics.txt", &after);
    let check = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", path.display()))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    println!(
        "metrics after 10 pings:\n{}",
        grep(&after, "{port=\"wan\"}")
    );
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn malformed_frames_are_counted_and_do_not_stop_ping() {
    let (mut lab, lb, client) = one_arm("bad");
    let f = lab.ferrovs(&lb, &one_arm_config());
    lab.exec_ok(&client, &["ping", "-c", "2", "-i", "0.1", "198.18.0.1"]);
    let l2 = L2 {
        src: MacAddr(lab.mac(&client, "eth0")),
        dst: MacAddr(lab.mac(&lb, "wan0")),
    };
    let good = craft::echo_request(
        l2,
        "198.18.0.10".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
        9,
        9,
        b"x",
    );
    let mut frames = Vec::new();
    let mut expect = Vec::new();
    let mut add = |reason: &str, frame: Vec<u8>| {
        frames.push(frame);
        expect.push(reason.to_string());
    };
    let mut f1 = good.clone();
    f1[14 + 10] ^= 0xff;
    add("bad_ipv4_checksum", f1);
    let mut f2 = good.clone();
    f2[14] = 0x43;
    add("bad_ihl", f2);
    let mut f3 = good.clone();
    f3[14] = 0x65;
    add("ip_version_mismatch", f3);
    let mut f4 = good.clone();
    f4[16..18].copy_from_slice(&4000u16.to_be_bytes());
    add("bad_total_length", f4);
    add("truncated_ipv4", good[..14 + 12].to_vec());
    let mut f5 = good.clone();
    f5[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    add("unknown_ethertype", f5);
    let mut f6 = good.clone();
    f6.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    add("vlan_not_configured", f6);
    let v6 = craft::echo_request(
        l2,
        "2001:2::10".parse().unwrap(),
        "2001:2::1".parse().unwrap(),
        1,
        1,
        b"",
    );
    add("truncated_ipv6", v6[..14 + 30].to_vec());
    let tcp = craft::tcp(
        l2,
        "198.18.0.10:1000".parse().unwrap(),
        "198.18.0.1:80".parse().unwrap(),
        ferrovs_core::packet::TcpFlags::SYN,
        1,
        0,
        b"",
    );
    let mut f7 = tcp.clone();
    f7[14 + 20 + 12] = 0xf0; // data offset 15 words, beyond the segment
    add("bad_tcp_offset", f7);
    let before = f.metrics();
    // many rounds so that a stall would show as lost pings
    let rounds = 50;
    let all: Vec<Vec<u8>> = (0..rounds).flat_map(|_| frames.clone()).collect();
    lab.inject(&client, "eth0", &all);
    let out = lab.exec_ok(&client, &["ping", "-c", "10", "-i", "0.05", "198.18.0.1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 0% packet loss"));
    let delta = |after: &str, reason: &str| {
        let series =
            format!("ferrovs_worker_dropped_packets_total{{worker=\"0\",reason=\"{reason}\"}}");
        sample(after, &series) - sample(&before, &series)
    };
    let after = wait_for(Duration::from_secs(5), || {
        let m = f.metrics();
        expect
            .iter()
            .all(|r| delta(&m, r) >= rounds as f64)
            .then_some(m)
    })
    .unwrap_or_else(|| f.metrics());
    for reason in expect.iter() {
        let d = delta(&after, reason);
        assert_eq!(
            d,
            rounds as f64,
            "{reason}: {d} drops\n{}",
            grep(&after, "dropped")
        );
    }
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root, DPDK and 2 MB hugepages (scripts/setup.sh reserves them)"]
fn sigterm_stops_cleanly_and_leaves_no_files() {
    let hugepages = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default();
    assert!(
        hugepages.trim().parse::<u32>().unwrap_or(0) >= 128,
        "reserve hugepages first (scripts/setup.sh)"
    );
    let (mut lab, lb, client) = one_arm("term");
    let cfg = one_arm_config()
        .replace("hugepages: false", "hugepages: true")
        .replace(
            "file_prefix: ferrovs-e2e",
            &format!("file_prefix: {}", lab.tag),
        );
    let f = lab.ferrovs(&lb, &cfg);
    lab.exec_ok(&client, &["ping", "-c", "3", "-i", "0.1", "198.18.0.1"]);
    let hugefiles = || -> Vec<String> {
        let mut v = Vec::new();
        for dir in ["/dev/hugepages", "/mnt/huge"] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                v.extend(
                    rd.flatten()
                        .map(|e| e.path().display().to_string())
                        .filter(|p| p.contains(&lab.tag)),
                );
            }
        }
        v
    };
    let log = f.log.clone();
    let status = f.stop();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(status.success(), "exit {status}:\n{text}");
    assert!(text.contains("stopped cleanly"), "{text}");
    assert!(
        hugefiles().is_empty(),
        "hugepage files left: {:?}",
        hugefiles()
    );
    let runtime_dir = format!("/var/run/dpdk/{}", lab.tag);
    assert!(
        !std::path::Path::new(&runtime_dir).exists(),
        "{runtime_dir} left behind"
    );
}
