//! Hostile traffic end to end: a catalogue of malformed, spoofed and abusive frames
//! (`tests/peers/hostile.py`, scapy) sent at a running ferrovs while a client keeps
//! making requests through it. For each kind, the drop reason it must be counted
//! under moves; a capture on the real servers shows that none of the frames got
//! through; no client request fails; and the mempool is back to its starting count.
//! The LAN port's MTU is 1400, so a full-size SYN from the WAN is too long for it.
//! `HOSTILE_KINDS=kind,kind` runs only those kinds.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_hostile -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Frames of each kind.
const COPIES: u32 = 5;

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_catalogue_of_hostile_frames_is_dropped_and_counted_by_reason() {
    let mut t = Topology::new("hostile", 2);
    t.http_servers(8080);
    let servers = vec![
        (Topology::rs_addr(0), 8080, 1),
        (Topology::rs_addr(1), 8080, 1),
    ];
    let services = [
        nat_service("web", "198.18.0.100", 80, "tcp", "rr", &servers, ""),
        nat_service("web2", "198.18.0.101", 80, "tcp", "rr", &servers, ""),
        nat_service(
            "web6",
            "\"2001:db8:18::100\"",
            80,
            "tcp",
            "rr",
            &[("\"2001:db8:19::10\"".to_string(), 8080, 1)],
            "",
        ),
    ]
    .concat();
    let cfg = t
        .config(&services, "")
        .replace(
            "addresses: [\"198.18.0.1/24\"]\n",
            "addresses: [\"198.18.0.1/24\", \"2001:db8:18::1/64\"]\n    rp_filter: strict\n",
        )
        .replace(
            "addresses: [\"198.19.0.1/24\"]\n",
            "addresses: [\"198.19.0.1/24\", \"2001:db8:19::1/64\"]\n    mtu: 1400\n",
        );
    let f = t.lab.ferrovs(&t.lb, &cfg);

    // Captures on both real servers, for the marker every hostile frame carries.
    let captures: Vec<std::path::PathBuf> = (0..2)
        .map(|i| {
            let pcap = t.lab.dir.join(format!("rs{i}.pcap"));
            let ns = t.servers[i].clone();
            t.lab.spawn(
                &format!("tcpdump{i}"),
                &ns,
                &[
                    "tcpdump",
                    "-U",
                    "-n",
                    "-i",
                    "eth0",
                    "-w",
                    &pcap.display().to_string(),
                ],
            );
            pcap
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    // A client making requests all along, and one connection held open for the
    // ICMP errors to quote.
    let stop_file = t.lab.dir.join("stop-clients");
    let codes = t.lab.dir.join("codes.txt");
    let client_loop = format!(
        "while [ ! -e {stop} ]; do curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 3 \
         http://198.18.0.100/; sleep 0.05; done > {codes}",
        stop = stop_file.display(),
        codes = codes.display()
    );
    let client = t.client.clone();
    t.lab.spawn("clients", &client, &["sh", "-c", &client_loop]);
    let mut live = Command::new("ip")
        .args(["netns", "exec", &t.client, "/usr/bin/python3", "-c"])
        .arg(
            "import socket, sys, time\n\
             s = socket.create_connection(('198.18.0.100', 80), timeout=5)\n\
             print(s.getsockname()[1], flush=True)\n\
             time.sleep(300)\n",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(live.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let live_port: u16 = line.trim().parse().expect("the held connection's port");

    // The catalogue, one kind at a time, the counters read in between.
    let our_mac = fmt_mac(t.lab.mac(&t.client, "eth0"));
    let lb_mac = fmt_mac(t.lab.mac(&t.lb, "wan0"));
    let mut peer = Command::new("ip")
        .args(["netns", "exec", &t.client, "/usr/bin/python3"])
        .arg(peer("hostile.py"))
        .args([
            "eth0",
            &our_mac,
            &lb_mac,
            &live_port.to_string(),
            &COPIES.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_peer = peer.stdin.take().unwrap();
    let from_peer = BufReader::new(peer.stdout.take().unwrap());
    let mut before = f.metrics();
    let mut results = Vec::new();
    for line in from_peer.lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["SENT", kind, reason, copies] => {
                let copies: f64 = copies.parse().unwrap();
                let series = format!("ferrovs_worker_dropped_packets_total{{reason=\"{reason}\"}}");
                let moved = wait_for(Duration::from_secs(3), || {
                    let after = f.metrics();
                    let delta = count(&after, &series) - count(&before, &series);
                    (delta >= copies).then_some((delta, after))
                });
                let after = moved
                    .as_ref()
                    .map_or_else(|| f.metrics(), |(_, m)| m.clone());
                let delta = count(&after, &series) - count(&before, &series);
                let moved_instead = if delta < copies {
                    moved_reasons(&before, &after)
                } else {
                    String::new()
                };
                println!("{kind:40} {reason:34} {delta} {moved_instead}");
                results.push((kind.to_string(), reason.to_string(), delta, copies));
                before = after;
                writeln!(to_peer, "next").unwrap();
            }
            ["DONE"] => break,
            _ => panic!("hostile.py: {line}"),
        }
    }
    assert!(peer.wait().unwrap().success());
    let _ = live.kill();
    let _ = live.wait();

    // Let the clients run a moment past the last frame, then stop them.
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&stop_file, "").unwrap();
    let codes_text = wait_for(Duration::from_secs(10), || {
        let done = !t
            .lab
            .exec(&t.client, &["pgrep", "-f", "stop-clients"])
            .status
            .success();
        done.then(|| std::fs::read_to_string(&codes).unwrap())
    })
    .expect("the client loop did not stop");
    let requests = codes_text.lines().count();
    let failed = codes_text.lines().filter(|c| *c != "200").count();

    std::thread::sleep(Duration::from_millis(500));
    t.lab.kill("tcpdump0");
    t.lab.kill("tcpdump1");
    let mut leaked = Vec::new();
    let mut captured = 0;
    for pcap in &captures {
        let bytes = std::fs::read(pcap).unwrap_or_default();
        captured += bytes.len();
        if bytes.windows(13).any(|w| w == b"HOSTILE-FRAME") {
            leaked.push(pcap.display().to_string());
        }
    }
    println!(
        "{} kinds, {} frames each; {requests} client requests, {failed} failed; \
         {captured} bytes captured on the real servers",
        results.len(),
        COPIES
    );
    let missed: Vec<_> = results
        .iter()
        .filter(|(_, _, delta, copies)| delta < copies)
        .collect();
    assert!(
        leaked.is_empty(),
        "hostile frames reached a real server: {leaked:?}"
    );
    assert!(
        missed.is_empty(),
        "drop reasons that did not move: {missed:#?}"
    );
    if std::env::var_os("HOSTILE_KINDS").is_none() {
        assert!(results.len() >= 40, "{} kinds", results.len());
    }
    assert!(captured > 1000, "the captures saw no traffic at all");
    assert!(requests > 20, "{requests} requests");
    assert_eq!(failed, 0, "failed client requests");
    assert!(f.stop().success());
}

/// The value of `series`, 0 when absent (a reason never counted yet).
fn count(metrics: &str, series: &str) -> f64 {
    let name = series.split('{').next().unwrap();
    let label = series
        .split_once('{')
        .map(|(_, l)| l.trim_end_matches('}'))
        .unwrap_or("");
    if metrics
        .lines()
        .any(|l| l.starts_with(name) && l.contains(label))
    {
        sample(metrics, series)
    } else {
        0.0
    }
}

/// The drop reasons whose counters differ between two scrapes, with the change.
fn moved_reasons(before: &str, after: &str) -> String {
    let counters = |text: &str| -> std::collections::BTreeMap<String, f64> {
        let mut m = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("ferrovs_worker_dropped_packets_total{") {
                if let (Some(reason), Some(value)) = (
                    rest.split("reason=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next()),
                    line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
                ) {
                    *m.entry(reason.to_string()).or_insert(0.0) += value;
                }
            }
        }
        m
    };
    let (b, a) = (counters(before), counters(after));
    a.iter()
        .filter(|(r, v)| b.get(*r).copied().unwrap_or(0.0) != **v)
        .map(|(r, v)| format!("{r}+{}", v - b.get(r).copied().unwrap_or(0.0)))
        .collect::<Vec<_>>()
        .join(",")
}

fn fmt_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
