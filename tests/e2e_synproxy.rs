//! The SYN proxy end to end: a spoofed SYN flood against a small table with and
//! without it, the automatic switch (`connections.syn_proxy_above`) on and off
//! with a flood, forged cookies (scapy), and Linux clients and servers keeping
//! their TCP options through it in NAT and FULLNAT over IPv4 and IPv6.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_synproxy -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VIP: &str = "198.18.0.100";

fn drops(f: &Ferrovs, reason: &str) -> f64 {
    f.metric(&format!(
        "ferrovs_worker_dropped_packets_total{{reason=\"{reason}\"}}"
    ))
}

fn service(name: &str, vip: &str, mode: &str, real: &str, port: u16, extra: &str) -> String {
    let locals = match (mode, vip.contains(':')) {
        ("fullnat", false) => "    local_addresses: [\"198.19.0.2\"]\n",
        ("fullnat", true) => "    local_addresses: [\"2001:2:0:19::2\"]\n",
        _ => "",
    };
    format!(
        "  - name: {name}\n    vip: \"{vip}\"\n    port: 80\n    protocol: tcp\n    mode: {mode}\n    scheduler: rr\n{extra}{locals}    real_servers:\n      - {{ address: \"{real}\", port: {port} }}\n"
    )
}

/// What one flood run measured.
struct Flood {
    ok: usize,
    tried: usize,
    max_active: f64,
    cookies: f64,
    full: f64,
}

/// `hping3 --flood --rand-source -S` at the VIP for `seconds` while the client
/// makes one HTTP request after another (a connection each), with a
/// 2000-connection table.
fn flood(tag: &str, syn_proxy: bool, seconds: u64) -> Flood {
    let mut t = Topology::new(tag, 1);
    t.http_servers(8080);
    let extra = if syn_proxy {
        "    syn_proxy: true\n"
    } else {
        ""
    };
    let cfg = t
        .config(&service("web", VIP, "nat", "198.19.0.10", 8080, extra), "")
        .replace("  max: 262144\n", "  max: 2000\n");
    let f = t.lab.ferrovs(&t.lb, &cfg);
    assert_eq!(t.curl_many(&format!("http://{VIP}/"), 1), ["rs0"]);
    let client = t.client.clone();
    let secs = seconds.to_string();
    t.lab.spawn(
        "hping3",
        &client,
        &[
            "timeout",
            &secs,
            "hping3",
            "--flood",
            "--rand-source",
            "-S",
            "-p",
            "80",
            VIP,
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let end = Instant::now() + Duration::from_secs(seconds) - Duration::from_millis(1000);
    let (mut ok, mut tried, mut max_active) = (0, 0, 0.0f64);
    while Instant::now() < end {
        let body = t.curl_many(&format!("http://{VIP}/"), 1);
        tried += 1;
        if body == ["rs0"] {
            ok += 1;
        }
        max_active = max_active.max(f.metric("ferrovs_connections_active"));
    }
    let cookies = f.metric("ferrovs_worker_syn_cookies_sent_total");
    let full = drops(&f, "conn_table_full");
    std::thread::sleep(Duration::from_secs(2));
    assert!(f.stop().success());
    Flood {
        ok,
        tried,
        max_active,
        cookies,
        full,
    }
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_spoofed_syn_flood_neither_fills_the_table_nor_stops_clients() {
    let on = flood("spon", true, 8);
    println!(
        "syn_proxy on:  {}/{} requests OK during the flood, at most {} connections in the \
         2000-entry table, {} cookies sent, {} conn_table_full",
        on.ok, on.tried, on.max_active, on.cookies, on.full
    );
    let off = flood("spoff", false, 8);
    println!(
        "syn_proxy off: {}/{} requests OK during the flood, at most {} connections in the \
         2000-entry table, {} conn_table_full",
        off.ok, off.tried, off.max_active, off.full
    );
    assert!(on.cookies > 10_000.0, "the flood reached ferrovs");
    assert!(on.tried >= 3);
    assert_eq!(on.ok, on.tried, "every request is served with syn_proxy");
    // The client's own connections (in TIME_WAIT after each request) are all
    // the table holds.
    assert!(
        on.max_active <= (on.tried + 1) as f64,
        "spoofed SYNs left connections: {} for {} requests",
        on.max_active,
        on.tried
    );
    assert_eq!(on.full, 0.0);
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn forged_cookies_open_nothing() {
    let mut t = Topology::new("spfg", 1);
    t.http_servers(8080);
    let cfg = t.config(
        &service(
            "web",
            VIP,
            "nat",
            "198.19.0.10",
            8080,
            "    syn_proxy: true\n",
        ),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let out = t.lab.exec_ok(
        &t.client,
        &[
            "/usr/bin/python3",
            &peer("synproxy_forge.py"),
            VIP,
            "80",
            "200",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(
        text.contains("random 200") && text.contains("answered"),
        "{text}"
    );
    let invalid = wait_for(Duration::from_secs(5), || {
        let n = drops(&f, "syn_cookie_invalid");
        (n >= 201.0).then_some(n)
    });
    assert_eq!(invalid, Some(201.0), "200 random and one wrong cookie");
    assert_eq!(f.metric("ferrovs_worker_syn_cookies_sent_total"), 1.0);
    // Only the right cookie opened a connection; no forged one reached a server.
    assert_eq!(f.metric("ferrovs_worker_syn_cookies_validated_total"), 1.0);
    assert_eq!(f.metric("ferrovs_real_server_connections_total"), 1.0);
    // And an ordinary client is served as ever.
    assert_eq!(t.curl_many(&format!("http://{VIP}/"), 2), ["rs0", "rs0"]);
    assert!(f.stop().success());
}

/// The two-arm topology with IPv6 as well (client 2001:2::10, real server 0 at
/// 2001:2:0:19::10 routed through ferrovs for NAT).
#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn syn_proxy_above_switches_the_proxy_on_for_a_flood_and_off_after() {
    // A service without `syn_proxy`: the worker proxies it only while SYNs that
    // complete no handshake pass `syn_proxy_above` a second. The table is large
    // enough for the flood's first second, before the switch.
    let mut t = Topology::new("spab", 1);
    t.http_servers(8080);
    let cfg = t
        .config(&service("web", VIP, "nat", "198.19.0.10", 8080, ""), "")
        .replace(
            "  max: 262144\n",
            "  max: 1048576\n  syn_proxy_above: 2000\n",
        );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let url = format!("http://{VIP}/");
    assert_eq!(t.curl_many(&url, 3), ["rs0", "rs0", "rs0"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        f.metric("ferrovs_worker_syn_proxy_auto"),
        0.0,
        "off for clients"
    );
    assert_eq!(f.metric("ferrovs_worker_syn_cookies_sent_total"), 0.0);

    let client = t.client.clone();
    let flood_start = Instant::now();
    t.lab.spawn(
        "hping3",
        &client,
        &[
            "timeout",
            "6",
            "hping3",
            "--flood",
            "--rand-source",
            "-S",
            "-p",
            "80",
            VIP,
        ],
    );
    let on = wait_for(Duration::from_secs(4), || {
        (f.metric("ferrovs_worker_syn_proxy_auto") == 1.0).then(|| flood_start.elapsed())
    })
    .expect("the flood switched the proxy on");
    let at_switch = f.metric("ferrovs_connections_active");
    // While on, spoofed SYNs leave nothing: the table holds what it held at the
    // switch and the client's own connections.
    let (mut ok, mut tried, mut max_active) = (0, 0, 0.0f64);
    while flood_start.elapsed() < Duration::from_millis(5200) {
        tried += 1;
        if t.curl_many(&url, 1) == ["rs0"] {
            ok += 1;
        }
        max_active = max_active.max(f.metric("ferrovs_connections_active"));
    }
    let cookies = f.metric("ferrovs_worker_syn_cookies_sent_total");
    let validated = f.metric("ferrovs_worker_syn_cookies_validated_total");
    // The flood ends at 6 s; the switch goes off within the next second's tick.
    let off = wait_for(Duration::from_secs(5), || {
        (f.metric("ferrovs_worker_syn_proxy_auto") == 0.0).then(|| flood_start.elapsed())
    })
    .expect("the proxy switched off after the flood");
    println!(
        "syn_proxy_above 2000: on {:.1} s after the flood began ({at_switch} connections then), \
         off {:.1} s after it began (it lasted 6 s); {ok}/{tried} requests OK while on, \
         at most {max_active} connections, {cookies} cookies sent, {validated} validated",
        on.as_secs_f64(),
        off.as_secs_f64()
    );
    assert!(tried >= 3);
    assert_eq!(ok, tried, "clients are served while the proxy is on");
    assert!(
        validated >= 1.0,
        "the client's connections went through the proxy"
    );
    assert!(cookies > 10_000.0, "the flood was answered with cookies");
    assert!(
        max_active <= at_switch + (tried + 10) as f64,
        "spoofed SYNs opened connections while the proxy was on: {max_active} > {at_switch}"
    );
    assert!(
        off > Duration::from_secs(6),
        "on for as long as the flood lasted"
    );
    // Off again: a new connection opens at its SYN, without a cookie.
    let before = f.metric("ferrovs_worker_syn_cookies_sent_total");
    assert_eq!(t.curl_many(&url, 2), ["rs0", "rs0"]);
    assert_eq!(f.metric("ferrovs_worker_syn_cookies_sent_total"), before);
    assert!(f.stop().success());
}

fn dual_stack(tag: &str) -> Topology {
    let t = Topology::new(tag, 1);
    for (ns, addr, gw) in [
        (&t.client, "2001:2::10/64", None),
        (&t.servers[0], "2001:2:0:19::10/64", Some("2001:2:0:19::1")),
    ] {
        t.lab
            .exec_ok(ns, &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"]);
        t.lab
            .exec_ok(ns, &["ip", "addr", "add", addr, "dev", "eth0", "nodad"]);
        if let Some(gw) = gw {
            t.lab
                .exec_ok(ns, &["ip", "-6", "route", "add", "default", "via", gw]);
        }
    }
    t
}

fn sha256(t: &Topology, path: &str) -> String {
    let out = t.lab.exec_ok(&t.client, &["sha256sum", path]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The `wscale:S,R` of the one established connection `ss -tin` shows in `ns`
/// matching `filter`, with its whole line.
fn tcp_info(t: &Topology, ns: &str, filter: &str) -> Option<((u8, u8), String)> {
    let out = t
        .lab
        .exec(ns, &["ss", "-Htin", "state", "established", filter]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let at = text.find("wscale:")?;
    let (s, r) = text[at + 7..].split_whitespace().next()?.split_once(',')?;
    Some(((s.parse().ok()?, r.parse().ok()?), text))
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn linux_clients_keep_their_options_and_their_bytes() {
    const BIG: usize = 4 << 20;
    let mut t = dual_stack("spl");
    let rs0 = t.servers[0].clone();
    t.lab
        .http_server_with_file("nginx4", &rs0, "198.19.0.10", 8080, "rs0", BIG);
    t.lab
        .http_server_with_file("nginx6", &rs0, "2001:2:0:19::10", 8080, "rs0", BIG);
    let on = "    syn_proxy: true\n";
    let services = service("f4", "198.18.0.100", "fullnat", "198.19.0.10", 8080, on)
        + &service("n4", "198.18.0.101", "nat", "198.19.0.10", 8080, on)
        + &service("f6", "2001:2::100", "fullnat", "2001:2:0:19::10", 8080, on)
        + &service("n6", "2001:2::101", "nat", "2001:2:0:19::10", 8080, on)
        + &service("closed", "198.18.0.102", "nat", "198.19.0.10", 9999, on)
        + &service(
            "closed6",
            "2001:2::102",
            "fullnat",
            "2001:2:0:19::10",
            9999,
            on,
        );
    let cfg = config(
        &[
            ("wan", "wan0", &["198.18.0.1/24", "2001:2::1/64"]),
            ("lan", "lan0", &["198.19.0.1/24", "2001:2:0:19::1/64"]),
        ],
        &format!("services:\n{services}"),
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let served = t.lab.dir.join("nginx4").join("big");
    let want = sha256(&t, served.to_str().unwrap());
    for (i, (base, vip)) in [
        ("http://198.18.0.100", "198.18.0.100"),
        ("http://198.18.0.101", "198.18.0.101"),
        ("http://[2001:2::100]", "2001:2::100"),
        ("http://[2001:2::101]", "2001:2::101"),
    ]
    .into_iter()
    .enumerate()
    {
        let down = t.lab.dir.join(format!("down{i}.bin"));
        // Both ends' segments as tcpdump prints their options.
        let (cap_c, cap_s) = (format!("capture-client{i}"), format!("capture-server{i}"));
        let client_ns = t.client.clone();
        let host = format!("tcp and host {vip}");
        t.lab.spawn(
            &cap_c,
            &client_ns,
            &["tcpdump", "-i", "eth0", "-nn", "-l", &host],
        );
        t.lab.spawn(
            &cap_s,
            &rs0,
            &["tcpdump", "-i", "eth0", "-nn", "-l", "tcp port 8080"],
        );
        std::thread::sleep(Duration::from_millis(1500));
        // Slow enough for `ss` to see the connections at both ends.
        let mut curl = Command::new("ip")
            .args(["netns", "exec", &t.client])
            .args(["curl", "-sf", "-g", "-m", "30", "--limit-rate", "1M", "-o"])
            .arg(&down)
            .arg(format!("{base}/big"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let client = wait_for(Duration::from_secs(5), || {
            tcp_info(&t, &t.client, "dport = :80")
        });
        let server = wait_for(Duration::from_secs(5), || {
            tcp_info(&t, &rs0, "sport = :8080")
        });
        assert!(curl.wait().unwrap().success(), "{base}: download");
        assert_eq!(sha256(&t, down.to_str().unwrap()), want, "{base}: content");
        std::thread::sleep(Duration::from_millis(500));
        t.lab.kill(&cap_c);
        t.lab.kill(&cap_s);
        let read =
            |name: &str| std::fs::read_to_string(t.lab.dir.join(format!("{name}.log"))).unwrap();
        let (seen_c, seen_s) = (read(&cap_c), read(&cap_s));
        let line = |text: &str, what: &str| -> String {
            text.lines()
                .find(|l| l.contains(what))
                .unwrap_or_else(|| panic!("{base}: no {what} in\n{text}"))
                .to_string()
        };
        let (syn, synack, to_server) = (
            line(&seen_c, "Flags [S],"),
            line(&seen_c, "Flags [S.],"),
            line(&seen_s, "Flags [S],"),
        );
        println!("{base}: client's SYN:   {syn}");
        println!("{base}: ferrovs's SYN-ACK: {synack}");
        println!("{base}: server's SYN:   {to_server}");
        let word_after = |l: &str, key: &str| -> String {
            let at = l
                .find(key)
                .unwrap_or_else(|| panic!("{base}: no {key} in {l}"));
            l[at + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .to_string()
        };
        let client_ws = word_after(&syn, "wscale ");
        let client_mss = word_after(&syn, "mss ");
        for l in [&synack, &to_server] {
            assert!(l.contains("sackOK") && l.contains("TS val"), "{base}: {l}");
        }
        assert_eq!(word_after(&synack, "wscale "), "7", "{base}: {synack}");
        assert_eq!(
            word_after(&to_server, "wscale "),
            client_ws,
            "{base}: {to_server}"
        );
        assert_eq!(
            word_after(&to_server, "mss "),
            client_mss,
            "{base}: {to_server}"
        );
        assert_eq!(
            word_after(&to_server, "TS val "),
            word_after(&seen_c[seen_c.find("Flags [.],").unwrap()..], "TS val "),
            "{base}: the client's TSval in the server's SYN"
        );
        // Data segments keep their timestamps both ways.
        assert!(
            seen_c
                .lines()
                .filter(|l| !l.contains("Flags [S") && l.contains("TS val"))
                .count()
                > 10
        );
        assert!(
            seen_s
                .lines()
                .filter(|l| !l.contains("Flags [S") && l.contains("TS val"))
                .count()
                > 10
        );
        let ((c_snd, c_rcv), c_line) = client.expect("the client's connection");
        let ((s_snd, s_rcv), s_line) = server.expect("the server's connection");
        println!("{base}: client: {}", c_line.trim());
        println!("{base}: server: {}", s_line.trim());
        assert_eq!(c_snd, 7, "{base}: the client scales ferrovs's window by 7");
        assert_eq!(
            s_snd, c_rcv,
            "{base}: the server got the client's window scale"
        );
        println!(
            "{base}: 4 MB, checksum matches; client offered mss {client_mss} wscale \
             {client_ws} sackOK TS, the server got them; windows scaled client {c_rcv} server {s_rcv}"
        );
    }
    // A server that refuses: the client hears a reset at once, not a timeout.
    // Its handshake was with ferrovs; the reset comes a round trip to the server
    // later, which curl reports as a failed connect (7) or, had it sent its
    // request already, a reset (56).
    for url in ["http://198.18.0.102/", "http://[2001:2::102]/"] {
        let start = Instant::now();
        let out = t
            .lab
            .exec(&t.client, &["curl", "-sS", "-g", "-m", "10", url]);
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        println!(
            "{url}: curl exit {:?} after {took:?}: {err}",
            out.status.code()
        );
        assert!(
            matches!(out.status.code(), Some(7 | 56)),
            "{url}: refused or reset: {err}"
        );
        assert!(took < Duration::from_secs(2), "{url}: {took:?}");
    }
    assert!(f.metric("ferrovs_worker_syn_proxy_resets_total") >= 2.0);
    assert_eq!(drops(&f, "syn_cookie_invalid"), 0.0);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn syn_proxy_with_two_workers() {
    let mut t = dual_stack("spw");
    let rs0 = t.servers[0].clone();
    t.lab
        .http_server("nginx4", &rs0, "198.19.0.10", 8080, "rs0");
    t.lab
        .http_server("nginx6", &rs0, "2001:2:0:19::10", 8080, "rs0");
    let on = "    syn_proxy: true\n";
    let services = service("f4", "198.18.0.100", "fullnat", "198.19.0.10", 8080, on)
        + &service("n6", "2001:2::101", "nat", "2001:2:0:19::10", 8080, on);
    let cfg = config(
        &[
            ("wan", "wan0", &["198.18.0.1/24", "2001:2::1/64"]),
            ("lan", "lan0", &["198.19.0.1/24", "2001:2:0:19::1/64"]),
        ],
        &format!("services:\n{services}"),
    );
    let f = t.lab.ferrovs(&t.lb, &two_workers(&cfg));
    // Client ports spread the connections over both workers.
    for round in 0..12 {
        for url in ["http://198.18.0.100/", "http://[2001:2::101]/"] {
            let out = t.lab.exec(&t.client, &["curl", "-s", "-g", "-m", "5", url]);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "rs0",
                "round {round}: {url}"
            );
        }
    }
    let per_worker: Vec<(f64, f64)> = (0..2)
        .map(|w| {
            (
                f.metric(&format!(
                    "ferrovs_worker_syn_cookies_sent_total{{worker=\"{w}\"}}"
                )),
                f.metric(&format!(
                    "ferrovs_worker_syn_cookies_validated_total{{worker=\"{w}\"}}"
                )),
            )
        })
        .collect();
    println!("cookies sent and validated per worker: {per_worker:?}");
    assert!(per_worker.iter().all(|&(sent, _)| sent > 0.0));
    assert_eq!(per_worker.iter().map(|w| w.1).sum::<f64>(), 24.0);
    assert_eq!(drops(&f, "syn_cookie_invalid"), 0.0);
    assert!(f.stop().success());
}
