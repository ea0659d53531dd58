//! Operations end to end, under load: `ferrovs ctl` against a running ferrovs,
//! draining, adding servers by ctl and by reload, health checks through the exception
//! path catching a killed server and letting it back, an invalid reload refused, and
//! the control socket closed to other users and to HTTP.
//!
//! Needs root and DPDK: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_ops -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const VIP: &str = "198.18.0.100";
const URL: &str = "http://198.18.0.100/";

struct Ops {
    t: Topology,
    f: Ferrovs,
    socket: String,
    config_path: std::path::PathBuf,
}

/// Three nginx servers; the service uses the first two, checks them with TCP every
/// 300 ms (out after 2 failures, back after 2 successes).
fn setup(tag: &str) -> Ops {
    let mut t = Topology::new(tag, 3);
    t.http_servers(8080);
    let servers = vec![
        (Topology::rs_addr(0), 8080, 1),
        (Topology::rs_addr(1), 8080, 1),
    ];
    let check =
        "    health_check: { type: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2 }\n";
    let cfg = t.config(
        &nat_service("web", VIP, 80, "tcp", "wlc", &servers, check),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let socket = t.lab.dir.join("ctl.sock").display().to_string();
    let config_path = t.lab.dir.join("ferrovs.yaml");
    Ops {
        t,
        f,
        socket,
        config_path,
    }
}

impl Ops {
    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(FERROVS)
            .args(["ctl", "--socket", &self.socket])
            .args(args)
            .output()
            .expect("run ferrovs ctl")
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "ferrovs ctl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Connections scheduled to real server `i` so far.
    fn conns_of(&self, i: usize) -> f64 {
        let m = self.f.metrics();
        let series = format!(
            "ferrovs_real_server_connections_total{{service=\"web\",real_server=\"{}:8080\"}}",
            Topology::rs_addr(i)
        );
        if m.contains(&series) {
            sample(&m, &series)
        } else {
            0.0
        }
    }

    /// Starts wrk (a new connection per request) in the background for `secs`.
    fn start_wrk(&mut self, name: &str, secs: u32) -> std::path::PathBuf {
        let client = self.t.client.clone();
        let d = format!("-d{secs}s");
        self.t.lab.spawn(
            name,
            &client,
            &["wrk", "-t1", "-c8", &d, "-H", "Connection: close", URL],
        );
        self.t.lab.dir.join(format!("{name}.log"))
    }

    fn wrk_result(log: &std::path::Path, secs: u32) -> (u64, u64, f64) {
        let text = wait_for(Duration::from_secs(u64::from(secs) + 15), || {
            std::fs::read_to_string(log)
                .ok()
                .filter(|s| s.contains("Requests/sec"))
        })
        .unwrap_or_else(|| panic!("wrk did not finish: {:?}", std::fs::read_to_string(log)));
        wrk_summary(&text)
    }

    fn wait_log(&self, needle: &str, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        wait_for(timeout, || {
            self.f.log_text().contains(needle).then(|| start.elapsed())
        })
    }
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn ctl_lists_and_drains_under_load() {
    let mut o = setup("drain");
    let list = o.ctl_ok(&["list"]);
    println!("{list}");
    assert!(list.contains("TCP  198.18.0.100:80 wlc"), "{list}");
    assert!(
        list.contains("198.19.0.10:8080") && list.contains("198.19.0.11:8080"),
        "{list}"
    );
    let json = o.ctl_ok(&["list", "--json"]);
    assert!(json.contains("\"name\": \"web\""), "{json}");

    let log = o.start_wrk("wrk-drain", 6);
    std::thread::sleep(Duration::from_secs(2));
    o.ctl_ok(&["drain", "web", "198.19.0.10:8080"]);
    std::thread::sleep(Duration::from_millis(300));
    let drained_at = o.conns_of(0);
    let (requests, errors, rps) = Ops::wrk_result(&log, 6);
    let after = o.conns_of(0);
    println!("drain under wrk: {requests} requests, {errors} errors, {rps:.0} req/s; drained server got {} new connections after the drain", after - drained_at);
    assert_eq!(errors, 0);
    assert_eq!(after, drained_at, "a drained server got new connections");
    assert!(o.conns_of(1) > 100.0);
    let stats = o.ctl_ok(&["list", "--stats"]);
    assert!(stats.contains("Conns"), "{stats}");
    let weights =
        o.f.metric("ferrovs_real_server_weight{real_server=\"198.19.0.10:8080\"}");
    assert_eq!(weights, 0.0);
    assert!(o.f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn servers_added_by_ctl_and_by_reload_take_traffic() {
    let mut o = setup("add");
    let log = o.start_wrk("wrk-add", 8);
    std::thread::sleep(Duration::from_secs(1));
    let done = o.ctl_ok(&[
        "add-real-server",
        "web",
        "198.19.0.12:8080",
        "--weight",
        "1",
    ]);
    println!("ctl: {done}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(o.conns_of(2) > 20.0, "the added server got no traffic");
    // Reload: the file now lists rs2 (port 8080) and drops rs0.
    let text = std::fs::read_to_string(&o.config_path).unwrap();
    let text = text.replace(
        "      - { address: 198.19.0.10, port: 8080, weight: 1 }\n",
        "      - { address: 198.19.0.12, port: 8080, weight: 2 }\n",
    );
    std::fs::write(&o.config_path, text).unwrap();
    let pid = o.f.pid().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let took = o.wait_log("SIGHUP: configuration reloaded", Duration::from_secs(5));
    assert!(took.is_some(), "{}", o.f.log_text());
    std::thread::sleep(Duration::from_secs(1));
    let before = o.conns_of(0);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        o.conns_of(0),
        before,
        "a server removed by reload got new connections"
    );
    let (requests, errors, rps) = Ops::wrk_result(&log, 8);
    println!("add by ctl, then reload: {requests} requests, {errors} errors, {rps:.0} req/s");
    assert_eq!(errors, 0);
    let list = o.ctl_ok(&["list"]);
    assert!(
        list.contains("198.19.0.12:8080") && !list.contains("198.19.0.10:8080"),
        "{list}"
    );
    assert!(o.f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_killed_server_is_taken_out_and_comes_back() {
    let mut o = setup("health");
    // the checks reach the servers from the exception path
    wait_for(Duration::from_secs(5), || {
        (o.f.metric("ferrovs_worker_kernel_packets_total") > 0.0).then_some(())
    })
    .expect("no health-check traffic through the kernel interface");
    let killed = Instant::now();
    let ns = o.t.servers[1].clone();
    o.t.lab.kill_all_in(&ns);
    let detected = o.wait_log("198.19.0.11:8080 is down", Duration::from_secs(10));
    let detection = detected.map(|_| killed.elapsed());
    println!("killed server detected after {detection:?}");
    assert!(detection.is_some(), "{}", o.f.log_text());
    assert_eq!(
        o.f.metric("ferrovs_real_server_up{real_server=\"198.19.0.11:8080\"}"),
        0.0
    );
    // after the detection window: no failed request
    let log = o.start_wrk("wrk-after", 4);
    let (requests, errors, rps) = Ops::wrk_result(&log, 4);
    println!("after detection: {requests} requests, {errors} errors, {rps:.0} req/s");
    assert_eq!(errors, 0);
    assert!(o.ctl_ok(&["list"]).contains("down"));
    // back: after `rise` successful checks
    let back = Instant::now();
    o.t.lab
        .http_server("nginx1b", &ns, &Topology::rs_addr(1), 8080, "rs1");
    let up = o.wait_log("198.19.0.11:8080 is up again", Duration::from_secs(10));
    println!(
        "restarted server back after {:?}",
        up.map(|_| back.elapsed())
    );
    assert!(up.is_some(), "{}", o.f.log_text());
    let before = o.conns_of(1);
    let log = o.start_wrk("wrk-back", 3);
    let (_, errors, _) = Ops::wrk_result(&log, 3);
    assert_eq!(errors, 0);
    assert!(
        o.conns_of(1) > before,
        "the server that came back gets no traffic"
    );
    assert!(o.f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn an_invalid_reload_is_refused_and_changes_nothing() {
    let o = setup("bad");
    let before = o.ctl_ok(&["list"]);
    let good = std::fs::read_to_string(&o.config_path).unwrap();
    std::fs::write(&o.config_path, good.replace("198.19.0.11", "198.19.0.311")).unwrap();
    let out = o.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    println!("reload refused: {err}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("ferrovs.yaml:") && err.contains("198.19.0.311"),
        "{err}"
    );
    // a restart-only change is refused by name
    std::fs::write(
        &o.config_path,
        good.replace("  burst: 32\n", "").replace(
            "workers:\n  cores: [1]\n",
            "workers:\n  cores: [1]\n  burst: 64\n",
        ),
    )
    .unwrap();
    let out = o.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("workers cannot change without a restart"),
        "{err}"
    );
    // bad control commands are refused too
    let out = o.ctl(&["set-weight", "web", "198.19.0.99:8080", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let after = o.ctl_ok(&["list"]);
    assert_eq!(before, after, "a refused change altered the running state");
    let out = o.t.lab.exec(&o.t.client, &["curl", "-s", "-m", "3", URL]);
    assert!(out.status.success());
    assert!(o.f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn the_control_socket_is_closed_to_other_users_and_http_is_read_only() {
    let o = setup("perm");
    let mode = std::fs::metadata(&o.socket).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.unwrap(), 0o600);
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            FERROVS,
            "ctl",
            "--socket",
            &o.socket,
            "list",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    println!("as nobody: exit {:?}: {}", out.status.code(), err.trim());
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("ermission denied"), "{err}");
    // the metrics listener serves GET /metrics and nothing that changes state
    let url = format!("http://{}", o.f.metrics_addr);
    for (method, path, code) in [
        ("POST", "/metrics", "405"),
        ("GET", "/reload", "404"),
        ("PUT", "/", "405"),
        ("DELETE", "/metrics", "405"),
    ] {
        let out = o.t.lab.exec(
            &o.t.lb,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                method,
                &format!("{url}{path}"),
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            code,
            "{method} {path}"
        );
    }
    let conns = o.ctl_ok(&["conns"]);
    assert!(conns.contains("pro"), "{conns}");
    assert!(o.f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_server_leaving_syns_unanswered_is_taken_out_passively() {
    // The active check looks at port 8081, which keeps answering; only the service
    // port 8080 goes silent, so only the data plane can tell.
    let mut t = Topology::new("passive", 2);
    t.http_servers(8080);
    for i in 0..2 {
        let ns = t.servers[i].clone();
        t.lab
            .http_server(&format!("check{i}"), &ns, &Topology::rs_addr(i), 8081, "ok");
    }
    let servers = vec![
        (Topology::rs_addr(0), 8080, 1),
        (Topology::rs_addr(1), 8080, 1),
    ];
    let check = "    health_check: { type: tcp, port: 8081, interval: 500ms, timeout: 200ms, rise: 20, fall: 1 }\n";
    let cfg = t
        .config(
            &nat_service("web", VIP, 80, "tcp", "rr", &servers, check),
            "",
        )
        .replace(
            "connections:\n  max: 262144\n",
            "connections:\n  max: 262144\n  timeouts: { tcp_syn: \"1s\" }\n",
        );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    let silent = Instant::now();
    t.lab.exec_ok(
        &t.servers[1],
        &[
            "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP",
        ],
    );
    // clients keep trying; half of them hit the silent server until it is out
    let client = t.client.clone();
    t.lab.spawn(
        "tries",
        &client,
        &[
            "sh",
            "-c",
            "for i in $(seq 40); do curl -s -m 1 http://198.18.0.100/ >/dev/null; done",
        ],
    );
    let start = Instant::now();
    let down = wait_for(Duration::from_secs(15), || {
        f.log_text()
            .contains("198.19.0.11:8080 is down")
            .then(|| start.elapsed())
    });
    let log = f.log_text();
    println!(
        "silent server taken out after {:?}: {}",
        down.map(|_| silent.elapsed()),
        grep(&log, "is down")
    );
    assert!(down.is_some(), "{log}");
    assert!(
        grep(&log, "is down").contains("refused or unanswered"),
        "{log}"
    );
    // afterwards every request is answered by the other server
    let bodies = t.curl_many(URL, 6);
    assert!(bodies.iter().all(|b| b == "rs0"), "{bodies:?}");
    assert!(f.stop().success());
}

/// ferrovs's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    grep(&status, "VmRSS:")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// 500 slowloris clients on the metrics endpoint, 3 half-open control connections
/// and a 64 MB header line: `ctl list` and a scrape are still answered at once, no
/// thread is started per client, and memory does not grow with what clients send.
#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn the_management_plane_cannot_be_starved() {
    use std::io::Write;
    let o = setup("starve");
    let pid = o.f.pid();
    let (threads_before, rss_before) = (threads(pid), rss_kib(pid));
    // Three control clients that connect, send half a request and wait.
    let half_open: Vec<std::os::unix::net::UnixStream> = (0..3)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(&o.socket).unwrap();
            s.write_all(b"{\"cmd\":").unwrap();
            s
        })
        .collect();
    // 500 clients that send a header a byte a second, for 25 s.
    let (host, port) = {
        let (h, p) = o.f.metrics_addr.rsplit_once(':').unwrap();
        (h.trim_matches(['[', ']']).to_string(), p.to_string())
    };
    let script = r#"
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(500):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.send(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        conns.append(s)
    except OSError:
        pass
print("open", len(conns), flush=True)
end = time.time() + 25
while time.time() < end:
    for s in list(conns):
        try:
            s.send(b"a")
        except OSError:
            conns.remove(s)
    time.sleep(1)
"#;
    let script_path = o.t.lab.write("slowloris.py", script);
    let mut slow = Command::new("ip")
        .args(["netns", "exec", &o.t.lb, "/usr/bin/python3"])
        .arg(&script_path)
        .args([&host, &port])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut opened = String::new();
    {
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(slow.stdout.take().unwrap());
        out.read_line(&mut opened).unwrap();
    }
    println!("slow clients: {}", opened.trim());
    std::thread::sleep(Duration::from_secs(2));
    let url = format!("http://{}/metrics", o.f.metrics_addr);
    let (mut worst_list, mut worst_scrape) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..5 {
        let t0 = Instant::now();
        let list = o.ctl_ok(&["list"]);
        worst_list = worst_list.max(t0.elapsed());
        assert!(list.contains("198.18.0.100:80"), "{list}");
        let t0 = Instant::now();
        let scrape =
            o.t.lab
                .exec(&o.t.lb, &["curl", "-sf", "--max-time", "5", &url]);
        worst_scrape = worst_scrape.max(t0.elapsed());
        assert!(scrape.status.success());
        assert!(String::from_utf8_lossy(&scrape.stdout).contains("ferrovs_worker_rx_packets_total"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let threads_during = threads(pid);
    // One header line of 64 MB: refused at 8 KiB, never buffered.
    let giant = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.send(b"GET /metrics HTTP/1.1\r\nX-Big: ")
chunk = b"a" * 65536
sent = 0
try:
    while sent < 64 << 20:
        sent += s.send(chunk)
except OSError:
    pass
try:
    print(s.recv(64).split(b"\r\n")[0].decode(), sent)
except OSError as e:
    print("error", e, sent)
"#;
    let giant_path = o.t.lab.write("giant.py", giant);
    let out = o.t.lab.exec(
        &o.t.lb,
        &[
            "/usr/bin/python3",
            &giant_path.display().to_string(),
            &host,
            &port,
        ],
    );
    let giant_answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rss_after = rss_kib(pid);
    println!(
        "under 500 slow clients and 3 half-open control connections: ctl list at most {worst_list:?}, \
         scrape at most {worst_scrape:?}; threads {threads_before} -> {threads_during}; \
         64 MB header answered {giant_answer:?}; RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(worst_list < Duration::from_secs(1), "{worst_list:?}");
    assert!(worst_scrape < Duration::from_secs(1), "{worst_scrape:?}");
    assert_eq!(threads_during, threads_before, "a thread per client?");
    assert!(giant_answer.starts_with("HTTP/1.1 431"), "{giant_answer}");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "{rss_before} -> {rss_after} KiB"
    );
    let _ = slow.kill();
    let _ = slow.wait();
    drop(half_open);

    // Out of descriptors: the listeners keep going once descriptors are back, and
    // the health checks that cannot open a socket meanwhile mark nothing down.
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let hard = grep(&limits, "Max open files")
        .split_whitespace()
        .nth(4)
        .unwrap()
        .to_string();
    let limit = (open_fds + 4).to_string();
    let prlimit = |soft_hard: &str| {
        let out = run(&[
            "prlimit",
            "--pid",
            &pid.to_string(),
            &format!("--nofile={soft_hard}"),
        ]);
        assert!(out.status.success(), "{out:?}");
    };
    prlimit(&format!("{limit}:{hard}"));
    let hog: Vec<std::process::Child> = (0..2)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", &o.t.lb, "/usr/bin/python3"])
                .arg(&script_path)
                .args([&host, &port])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    prlimit(&format!("{hard}:{hard}"));
    for mut h in hog {
        let _ = h.kill();
        let _ = h.wait();
    }
    let log = o.f.log_text();
    println!(
        "with {limit} descriptors: {}{}",
        grep(&log, "accept:"),
        grep(&log, "check not run")
    );
    assert!(log.contains("metrics endpoint: accept:"), "{log}");
    assert!(log.contains("check not run"), "{log}");
    assert!(
        !log.contains("failed checks"),
        "a server was marked down:\n{log}"
    );
    let scrape =
        o.t.lab
            .exec(&o.t.lb, &["curl", "-sf", "--max-time", "5", &url]);
    assert!(
        scrape.status.success(),
        "the metrics endpoint did not come back"
    );
    assert!(o.ctl_ok(&["list"]).contains("198.18.0.100:80"));
    assert!(o.f.stop().success());
}
