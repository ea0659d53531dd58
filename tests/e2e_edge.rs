//! Edge defence end to end: access lists and connection limits against real
//! clients and servers.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_edge -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const VIP: &str = "198.18.0.100";

fn drops(f: &Ferrovs, reason: &str) -> f64 {
    f.metric(&format!(
        "ferrovs_worker_dropped_packets_total{{reason=\"{reason}\"}}"
    ))
}

fn ctl(t: &Topology, args: &[&str]) -> Output {
    let socket = t.lab.dir.join("ctl.sock");
    Command::new(FERROVS)
        .args(["ctl", "--socket", socket.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run ferrovs ctl")
}

/// curl from the client's address `from` to `url`: (exit code, body, seconds).
fn curl_from(t: &Topology, from: &str, url: &str, max_s: u32) -> (i32, String, f64) {
    let start = Instant::now();
    let out = t.lab.exec(
        &t.client,
        &[
            "curl",
            "-s",
            "--interface",
            from,
            "-m",
            &max_s.to_string(),
            url,
        ],
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        start.elapsed().as_secs_f64(),
    )
}

fn sha256(t: &Topology, ns: &str, path: &str) -> String {
    let out = t.lab.exec_ok(ns, &["sha256sum", path]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn web_service(deny: &str, extra: &str) -> String {
    format!(
        "  - name: web\n    vip: {VIP}\n    port: 80\n    protocol: tcp\n    mode: nat\n    scheduler: rr\n    deny: [{deny}]\n{extra}    real_servers:\n      - {{ address: 198.19.0.10, port: 8080 }}\n"
    )
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn access_lists_refuse_admit_and_change_for_new_connections_only() {
    let mut t = Topology::new("acl", 1);
    let rs0 = t.servers[0].clone();
    // 8 MB downloaded at 2 MB/s: still running when the list changes.
    t.lab
        .http_server_with_file("nginx0", &rs0, "198.19.0.10", 8080, "rs0", 8 << 20);
    t.lab.exec_ok(
        &t.client,
        &["ip", "addr", "add", "198.18.0.11/24", "dev", "eth0"],
    );
    let rst = web_service("198.18.0.11", "    deny_action: rst\n")
        .replace("name: web", "name: web-rst")
        .replace(VIP, "198.18.0.101");
    let cfg = t.config(&(web_service("198.18.0.11", "") + &rst), "");
    let f = t.lab.ferrovs(&t.lb, &cfg);

    let (code, body, _) = curl_from(&t, "198.18.0.10", "http://198.18.0.100/", 5);
    assert_eq!(
        (code, body.as_str()),
        (0, "rs0"),
        "an allowed client is served"
    );
    let (code, body, secs) = curl_from(&t, "198.18.0.11", "http://198.18.0.100/", 2);
    println!("denied (drop): curl exit {code} after {secs:.1} s");
    assert_eq!(
        (code, body.as_str()),
        (28, ""),
        "a denied client gets nothing"
    );
    let (code, _, secs) = curl_from(&t, "198.18.0.11", "http://198.18.0.101/", 5);
    println!("denied (rst): curl exit {code} after {secs:.2} s");
    assert_eq!(code, 7, "a reset refuses the connection at once");
    assert!(secs < 1.0, "{secs}");
    assert!(drops(&f, "acl_denied") >= 2.0);

    // A long download from the allowed client, then the lists swap.
    let out = t.lab.dir.join("big.out");
    let client = t.client.clone();
    t.lab.spawn(
        "download",
        &client,
        &[
            "curl",
            "-s",
            "--interface",
            "198.18.0.10",
            "--limit-rate",
            "2M",
            "-o",
            out.to_str().unwrap(),
            "-w",
            "%{http_code} %{size_download}\n",
            "http://198.18.0.100/big",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let edited = t.lab.write(
        "web.yaml",
        &web_service("198.18.0.10", "")
            .replacen("  - ", "", 1)
            .replace("\n    ", "\n"),
    );
    let done = ctl(&t, &["edit-service", "--file", edited.to_str().unwrap()]);
    assert!(
        done.status.success(),
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    println!("ctl: {}", String::from_utf8_lossy(&done.stdout).trim());
    let (code, _, _) = curl_from(&t, "198.18.0.10", "http://198.18.0.100/", 2);
    assert_eq!(code, 28, "denied now, for new connections");
    let (code, body, _) = curl_from(&t, "198.18.0.11", "http://198.18.0.100/", 5);
    assert_eq!((code, body.as_str()), (0, "rs0"), "allowed now");
    // The live download was not touched.
    let log = t.lab.dir.join("download.log");
    let result = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains(' '))
    })
    .expect("the download finished");
    println!("download across the change: {}", result.trim());
    assert_eq!(result.trim(), format!("200 {}", 8 << 20));
    let served = t.lab.dir.join("nginx0").join("big");
    assert_eq!(
        sha256(&t, &t.client, out.to_str().unwrap()),
        sha256(&t, &t.client, served.to_str().unwrap())
    );
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_server_at_max_connections_takes_no_more_until_below_min() {
    let mut t = Topology::new("lim", 1);
    let rs0 = t.servers[0].clone();
    t.lab
        .http_server_with_file("nginx0", &rs0, "198.19.0.10", 8080, "rs0", 4 << 20);
    // Connections that end leave the table quickly, so the count falls soon after.
    let timeouts = "connections:\n  timeouts: { tcp_time_wait: 1s, tcp_close: 1s, tcp_fin: 1s }\n";
    let cfg = t
        .config(
            &web_service("", "").replace("port: 8080 }", "port: 8080, max_connections: 1 }"),
            "",
        )
        .replace(
            "connections:\n  max: 262144\n",
            &format!("{}  max: 262144\n", timeouts),
        );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let client = t.client.clone();
    t.lab.spawn(
        "hold",
        &client,
        &[
            "curl",
            "-s",
            "--limit-rate",
            "2M",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            "http://198.18.0.100/big",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let (code, _, _) = curl_from(&t, "198.18.0.10", "http://198.18.0.100/", 2);
    assert_eq!(code, 28, "the server is at its maximum");
    assert!(drops(&f, "real_server_overloaded") >= 1.0);
    let log = t.lab.dir.join("hold.log");
    wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("200"))
    })
    .expect("the first download finished");
    // Its connection leaves the count once it expires: the server takes new ones.
    let served = wait_for(Duration::from_secs(10), || {
        let (code, body, _) = curl_from(&t, "198.18.0.10", "http://198.18.0.100/", 2);
        (code == 0 && body == "rs0").then_some(())
    });
    assert!(served.is_some(), "the server took connections again");
    assert!(f.stop().success());
}

/// Starts nginx in `ns` accepting the Proxy Protocol (either version) on each of
/// `listens` ("ADDR:PORT", IPv6 in brackets): `/ip` answers the address and port
/// the header named, `/big` is a file of `big` bytes, `/up/NAME` stores a PUT.
fn proxy_protocol_server(lab: &mut Lab, name: &str, ns: &str, listens: &[&str], big: usize) {
    let root = lab.dir.join(name);
    std::fs::create_dir_all(root.join("up")).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let content: Vec<u8> = (0..big)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(root.join("big"), content).unwrap();
    let listen: String = listens
        .iter()
        .map(|l| format!("    listen {l} proxy_protocol;\n"))
        .collect();
    let conf = format!(
        // The workers store uploads in the lab's directory, which is root's.
        "daemon off;\nuser root;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log stderr warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {root};\n  proxy_temp_path {root};\n\
           fastcgi_temp_path {root};\n  uwsgi_temp_path {root};\n  scgi_temp_path {root};\n\
           client_max_body_size 64m;\n\
           server {{\n{listen}\
             location = /ip {{ default_type text/plain; return 200 \"$proxy_protocol_addr $proxy_protocol_port\\n\"; }}\n\
             location = /big {{ default_type application/octet-stream; alias {root}/big; }}\n\
             location /up/ {{ root {root}; dav_methods PUT; create_full_put_path on; }}\n  }}\n}}\n",
        root = root.display(),
    );
    let path = root.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    lab.spawn(name, ns, &["nginx", "-c", path.to_str().unwrap()]);
    let up = wait_for(Duration::from_secs(10), || {
        let out = lab.exec(ns, &["ss", "-Hltn", "sport = :8080"]);
        (String::from_utf8_lossy(&out.stdout).lines().count() >= listens.len()).then_some(())
    });
    assert!(up.is_some(), "nginx {name} did not listen");
}

/// The two-arm topology with IPv6 as well: the client at 2001:2::10, real
/// server 0 at 2001:2:0:19::10 (default route through ferrovs, for NAT).
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

fn pp_service(name: &str, vip: &str, mode: &str, version: &str, real: &str, local: &str) -> String {
    let locals = if mode == "fullnat" {
        format!("    local_addresses: [\"{local}\"]\n")
    } else {
        String::new()
    };
    format!(
        "  - name: {name}\n    vip: \"{vip}\"\n    port: 80\n    protocol: tcp\n    mode: {mode}\n    scheduler: rr\n    proxy_protocol: {version}\n{locals}    real_servers:\n      - {{ address: \"{real}\", port: 8080 }}\n"
    )
}

/// The four Proxy Protocol services of the tests: FULLNAT v1 and NAT v2 over
/// IPv4, FULLNAT v2 and NAT v1 over IPv6.
fn pp_config(extra: &str) -> String {
    let services = pp_service(
        "v1-4",
        "198.18.0.100",
        "fullnat",
        "v1",
        "198.19.0.10",
        "198.19.0.2",
    ) + &pp_service("v2-4", "198.18.0.101", "nat", "v2", "198.19.0.10", "")
        + &pp_service(
            "v2-6",
            "2001:2::100",
            "fullnat",
            "v2",
            "2001:2:0:19::10",
            "2001:2:0:19::2",
        )
        + &pp_service("v1-6", "2001:2::101", "nat", "v1", "2001:2:0:19::10", "");
    config(
        &[
            ("wan", "wan0", &["198.18.0.1/24", "2001:2::1/64"]),
            ("lan", "lan0", &["198.19.0.1/24", "2001:2:0:19::1/64"]),
        ],
        &format!("{extra}services:\n{services}"),
    )
}

/// `/ip` through `url` from the client: the address and port the header named,
/// and the client's own port as curl saw it.
fn header_seen(t: &Topology, url: &str) -> (String, String) {
    let out = t.lab.exec_ok(
        &t.client,
        &["curl", "-s", "-g", "-m", "5", "-w", " %{local_port}", url],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{text:?}");
    (
        format!("{} {}", words[0], words[1]),
        format!("{} {}", words[0], words[2]),
    )
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn proxy_protocol_tells_the_server_the_client_in_both_versions_and_families() {
    let mut t = dual_stack("ppx");
    let rs0 = t.servers[0].clone();
    proxy_protocol_server(
        &mut t.lab,
        "nginx0",
        &rs0,
        &["198.19.0.10:8080", "[2001:2:0:19::10]:8080"],
        6 << 20,
    );
    let f = t.lab.ferrovs(&t.lb, &pp_config(""));
    headers_and_transfers(&t);
    assert!(f.stop().success());
}

/// Through each of `pp_config`'s four services: the server is told the client's
/// address and port, and 6 MB go down and up with their checksums intact.
fn headers_and_transfers(t: &Topology) {
    for (url, client) in [
        ("http://198.18.0.100/ip", "198.18.0.10"),
        ("http://198.18.0.101/ip", "198.18.0.10"),
        ("http://[2001:2::100]/ip", "2001:2::10"),
        ("http://[2001:2::101]/ip", "2001:2::10"),
    ] {
        let (named, actual) = header_seen(t, url);
        println!("{url}: the server saw {named}");
        assert_eq!(named, actual, "{url}");
        assert!(named.starts_with(&format!("{client} ")), "{url}: {named}");
    }
    // Several MB each way keep their content through the translated numbers.
    let served = t.lab.dir.join("nginx0").join("big");
    let want = sha256(t, &t.client, served.to_str().unwrap());
    let upload = t.lab.dir.join("upload.bin");
    std::fs::copy(&served, &upload).unwrap();
    for (i, base) in [
        "http://198.18.0.100",
        "http://198.18.0.101",
        "http://[2001:2::100]",
        "http://[2001:2::101]",
    ]
    .iter()
    .enumerate()
    {
        let down = t.lab.dir.join(format!("down{i}.bin"));
        t.lab.exec_ok(
            &t.client,
            &[
                "curl",
                "-sf",
                "-g",
                "-m",
                "30",
                "-o",
                down.to_str().unwrap(),
                &format!("{base}/big"),
            ],
        );
        assert_eq!(sha256(t, &t.client, down.to_str().unwrap()), want, "{base}");
        t.lab.exec_ok(
            &t.client,
            &[
                "curl",
                "-sf",
                "-g",
                "-m",
                "30",
                "-T",
                upload.to_str().unwrap(),
                &format!("{base}/up/u{i}.bin"),
            ],
        );
        let stored = t
            .lab
            .dir
            .join("nginx0")
            .join("up")
            .join(format!("u{i}.bin"));
        assert_eq!(
            sha256(t, &t.client, stored.to_str().unwrap()),
            want,
            "{base} upload"
        );
        println!("{base}: 6 MB down and up, checksums match");
    }
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn proxy_protocol_behind_the_syn_proxy() {
    // The header is inserted after the proxy's own handshake with the server, so
    // the sequence numbers are translated twice over: the SYN proxy's offset and
    // the header's length.
    let mut t = dual_stack("pps");
    let rs0 = t.servers[0].clone();
    proxy_protocol_server(
        &mut t.lab,
        "nginx0",
        &rs0,
        &["198.19.0.10:8080", "[2001:2:0:19::10]:8080"],
        6 << 20,
    );
    let cfg = pp_config("")
        .replace(
            "    proxy_protocol: v1\n",
            "    proxy_protocol: v1\n    syn_proxy: true\n",
        )
        .replace(
            "    proxy_protocol: v2\n",
            "    proxy_protocol: v2\n    syn_proxy: true\n",
        );
    assert_eq!(cfg.matches("syn_proxy: true").count(), 4);
    let f = t.lab.ferrovs(&t.lb, &cfg);
    headers_and_transfers(&t);
    let validated = f.metric("ferrovs_worker_syn_cookies_validated_total");
    println!("{validated} connections opened by a validated cookie");
    assert!(
        validated >= 12.0,
        "every connection went through the proxy: {validated}"
    );
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn proxy_protocol_with_two_workers() {
    let mut t = dual_stack("ppw");
    let rs0 = t.servers[0].clone();
    proxy_protocol_server(
        &mut t.lab,
        "nginx0",
        &rs0,
        &["198.19.0.10:8080", "[2001:2:0:19::10]:8080"],
        1 << 20,
    );
    let f = t.lab.ferrovs(&t.lb, &two_workers(&pp_config("")));
    // Client ports spread the connections over both workers.
    for round in 0..12 {
        for url in [
            "http://198.18.0.100/ip",
            "http://[2001:2::100]/ip",
            "http://198.18.0.101/ip",
        ] {
            let (named, actual) = header_seen(&t, url);
            assert_eq!(named, actual, "round {round}: {url}");
        }
    }
    let per_worker: Vec<f64> = (0..2)
        .map(|w| {
            f.metric(&format!(
                "ferrovs_worker_rx_packets_total{{worker=\"{w}\"}}"
            ))
        })
        .collect();
    println!("packets received per worker: {per_worker:?}");
    assert!(per_worker.iter().all(|&n| n > 0.0));
    assert!(f.stop().success());
}
