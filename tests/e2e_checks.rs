//! keepalived's checkers end to end, against real peers through the exception
//! path: a DNS check against dnsmasq, a UDP check against a UDP echo server and a
//! closed port (ICMP port unreachable), a TLS check (SSL_GET, certificate verified)
//! against nginx, an exec check (MISC_CHECK) run as nobody whose result the test
//! flips, and the sorry server standing in while no real server is up. Each
//! prints how long the check took to take a server out and to bring it back.
//!
//! Needs root, DPDK, dnsmasq, openssl and nginx: run through `scripts/test.sh` (or
//! `cargo test --release --test e2e_checks -- --ignored --test-threads=1 --nocapture`).

mod common;

use common::*;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const VIP: &str = "198.18.0.100";

/// Checks every 300 ms within 250 ms: out after 2 failures, back after 2
/// successes.
const TIMING: &str = "interval: 300ms, timeout: 250ms, rise: 2, fall: 2";

fn ctl(t: &Topology, args: &[&str]) -> Output {
    let socket = t.lab.dir.join("ctl.sock");
    Command::new(FERROVS)
        .args(["ctl", "--socket", socket.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run ferrovs ctl")
}

fn ctl_ok(t: &Topology, args: &[&str]) -> String {
    let out = ctl(t, args);
    assert!(
        out.status.success(),
        "ferrovs ctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How long after `since` ferrovs logged `needle` (waiting up to `timeout`);
/// panics with the log if it did not.
fn logged(f: &Ferrovs, needle: &str, since: Instant, timeout: Duration) -> Duration {
    wait_for(timeout, || {
        f.log_text().contains(needle).then(|| since.elapsed())
    })
    .unwrap_or_else(|| panic!("no `{needle}` within {timeout:?}:\n{}", f.log_text()))
}

/// How long after `since` ferrovs logged `needle` for the `n`th time.
fn logged_nth(f: &Ferrovs, needle: &str, n: usize, since: Instant, timeout: Duration) -> Duration {
    wait_for(timeout, || (count(f, needle) >= n).then(|| since.elapsed())).unwrap_or_else(|| {
        panic!(
            "`{needle}` not {n} times within {timeout:?}:\n{}",
            f.log_text()
        )
    })
}

/// The number of times `needle` is in the log.
fn count(f: &Ferrovs, needle: &str) -> usize {
    f.log_text().matches(needle).count()
}

fn up(f: &Ferrovs, service: &str, rs: &str) -> f64 {
    f.metric(&format!(
        "ferrovs_real_server_up{{service=\"{service}\",real_server=\"{rs}\"}}"
    ))
}

/// Both servers stay up through several checks: the check passes against a
/// working server.
fn assert_both_up(f: &Ferrovs, service: &str, servers: &[&str]) {
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(f, " is down"), 0, "{}", f.log_text());
    for rs in servers {
        assert_eq!(up(f, service, rs), 1.0, "{rs}");
    }
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_dns_check_follows_dnsmasq() {
    let mut t = Topology::new("dns", 2);
    t.dnsmasq(0, "198.19.0.80");
    t.dnsmasq(1, "198.19.0.80");
    let check = format!(
        "    health_check: {{ type: dns, query_name: www.example.org, query_type: A, {TIMING} }}\n"
    );
    let servers = [(Topology::rs_addr(0), 53, 1), (Topology::rs_addr(1), 53, 1)];
    let cfg = t.config(
        &nat_service("dns", VIP, 53, "udp", "rr", &servers, &check),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    assert_both_up(&f, "dns", &["198.19.0.10:53", "198.19.0.11:53"]);

    let stopped = Instant::now();
    let ns = t.servers[1].clone();
    t.lab.kill("dnsmasq1");
    t.lab.kill_all_in(&ns);
    let out = logged(
        &f,
        "198.19.0.11:53 is down",
        stopped,
        Duration::from_secs(10),
    );
    println!("dns: dnsmasq stopped, server out after {out:?}");
    assert_eq!(up(&f, "dns", "198.19.0.11:53"), 0.0);
    assert_eq!(up(&f, "dns", "198.19.0.10:53"), 1.0);

    let restarted = Instant::now();
    t.dnsmasq(1, "198.19.0.80");
    let back = logged(
        &f,
        "198.19.0.11:53 is up again",
        restarted,
        Duration::from_secs(10),
    );
    println!("dns: dnsmasq restarted, server back after {back:?}");
    assert_eq!(up(&f, "dns", "198.19.0.11:53"), 1.0);
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_udp_check_wants_an_answer_and_a_closed_port_fails_it() {
    let mut t = Topology::new("udp", 2);
    let echo = |t: &mut Topology, i: usize| {
        let ns = t.servers[i].clone();
        let addr = Topology::rs_addr(i);
        let name = format!("rs{i}");
        t.lab.spawn(
            &format!("echo{i}"),
            &ns,
            &["python3", &peer("udp_echo.py"), &addr, "5000", &name],
        );
        let listening = wait_for(Duration::from_secs(5), || {
            let out = t.lab.exec(&ns, &["ss", "-Hlun", "sport = :5000"]);
            (!out.stdout.is_empty()).then_some(())
        });
        assert!(listening.is_some(), "udp echo {i} does not listen");
    };
    // rs0 echoes; nothing listens on rs1's port: its kernel answers ICMP port
    // unreachable.
    echo(&mut t, 0);
    let check =
        format!("    health_check: {{ type: udp, payload: ping, expect: \"rs\", {TIMING} }}\n");
    // The silent variant (keepalived's UDP_CHECK without require_reply) checks
    // once a second: Linux rate-limits the ICMP errors it sends a host.
    let quiet_check = "    health_check: { type: udp, payload_hex: \"70 69 6e 67\", require_reply: false, interval: 1s, timeout: 500ms, rise: 1, fall: 2 }\n";
    let servers = [
        (Topology::rs_addr(0), 5000, 1),
        (Topology::rs_addr(1), 5000, 1),
    ];
    let services = nat_service("echo", VIP, 5000, "udp", "rr", &servers, &check)
        + &nat_service("quiet", VIP, 5001, "udp", "rr", &servers, quiet_check);
    let started = Instant::now();
    let f = t.lab.ferrovs(&t.lb, &t.config(&services, ""));
    let out = logged(
        &f,
        "service echo: real server 198.19.0.11:5000 is down",
        started,
        Duration::from_secs(15),
    );
    println!("udp: closed port taken out {out:?} after start");
    assert!(
        f.log_text().contains("port unreachable (ICMP)"),
        "{}",
        f.log_text()
    );
    // rs0 answers; the silent check takes its answer too.
    assert_eq!(up(&f, "echo", "198.19.0.10:5000"), 1.0);
    assert_eq!(up(&f, "quiet", "198.19.0.10:5000"), 1.0);
    // Through the VIP: only rs0 answers.
    let answers = t.lab.exec_ok(
        &t.client,
        &["python3", &peer("udp_client.py"), VIP, "5000", "4"],
    );
    let answers = String::from_utf8_lossy(&answers.stdout).into_owned();
    println!("udp: through the VIP: {answers:?}");
    assert!(answers.lines().all(|a| a.starts_with("rs0:")), "{answers}");

    let started_echo = Instant::now();
    echo(&mut t, 1);
    let back = logged(
        &f,
        "service echo: real server 198.19.0.11:5000 is up again",
        started_echo,
        Duration::from_secs(10),
    );
    println!("udp: echo started on rs1, server back after {back:?}");

    // rs0 stops: its port is closed now, both checks take it out.
    let stopped = Instant::now();
    t.lab.kill("echo0");
    let out = logged(
        &f,
        "service echo: real server 198.19.0.10:5000 is down",
        stopped,
        Duration::from_secs(10),
    );
    println!("udp: echo stopped on rs0, server out after {out:?}");
    let quiet_out = logged(
        &f,
        "service quiet: real server 198.19.0.10:5000 is down",
        stopped,
        Duration::from_secs(15),
    );
    println!("udp (require_reply: false): rs0 out after {quiet_out:?}");
    assert!(f.stop().success());
}

/// A CA, and a certificate for www.example.org it signed, in the lab's directory.
fn certificates(lab: &Lab) {
    let dir = lab.dir.display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["openssl", "req", "-x509"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (format!("{dir}/ca.key"), format!("{dir}/ca.pem"));
    ca.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-days",
        "2",
        "-subj",
        "/CN=ferrovs test CA",
    ]);
    sh(&ca);
    let mut req = vec!["openssl", "req"];
    req.extend(ec);
    let (key, csr, cert) = (
        format!("{dir}/server.key"),
        format!("{dir}/server.csr"),
        format!("{dir}/server.pem"),
    );
    req.extend([
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=www.example.org",
    ]);
    sh(&req);
    let ext = lab.write("san.ext", "subjectAltName=DNS:www.example.org\n");
    sh(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        ext.to_str().unwrap(),
    ]);
}

/// nginx with TLS on `addr:8443`: `/health` answers 200, the rest `name`.
fn tls_nginx(t: &mut Topology, i: usize) {
    let ns = t.servers[i].clone();
    let addr = Topology::rs_addr(i);
    let root = t.lab.dir.join(format!("tls{i}"));
    std::fs::create_dir_all(&root).unwrap();
    let dir = t.lab.dir.display().to_string();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log stderr warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {root};\n  proxy_temp_path {root};\n\
           fastcgi_temp_path {root};\n  uwsgi_temp_path {root};\n  scgi_temp_path {root};\n\
           server {{\n    listen {addr}:8443 ssl;\n    server_name www.example.org;\n\
             ssl_certificate {dir}/server.pem;\n    ssl_certificate_key {dir}/server.key;\n\
             location = /health {{ default_type text/plain; return 200 \"ok\\n\"; }}\n\
             location / {{ default_type text/plain; return 200 \"rs{i}\\n\"; }}\n  }}\n}}\n",
        root = root.display(),
    );
    let path = root.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    t.lab.spawn(
        &format!("tls{i}"),
        &ns,
        &["nginx", "-c", path.to_str().unwrap()],
    );
    let listening = wait_for(Duration::from_secs(10), || {
        let out = t.lab.exec(&ns, &["ss", "-Hltn", "sport = :8443"]);
        (!out.stdout.is_empty()).then_some(())
    });
    assert!(listening.is_some(), "nginx tls{i} does not listen");
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn a_tls_check_gets_over_a_verified_handshake_with_nginx() {
    let mut t = Topology::new("tls", 2);
    certificates(&t.lab);
    tls_nginx(&mut t, 0);
    tls_nginx(&mut t, 1);
    let check = format!(
        "    health_check: {{ type: tls, path: /health, sni: www.example.org, verify: true, ca_file: \"{}/ca.pem\", {TIMING} }}\n",
        t.lab.dir.display()
    );
    let servers = [
        (Topology::rs_addr(0), 8443, 1),
        (Topology::rs_addr(1), 8443, 1),
    ];
    let cfg = t.config(
        &nat_service("tls", VIP, 443, "tcp", "rr", &servers, &check),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    assert_both_up(&f, "tls", &["198.19.0.10:8443", "198.19.0.11:8443"]);
    let out = t.lab.exec_ok(
        &t.client,
        &[
            "curl",
            "-sk",
            "-m",
            "5",
            "--resolve",
            "www.example.org:443:198.18.0.100",
            "https://www.example.org/",
        ],
    );
    println!(
        "tls: through the VIP: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );

    let stopped = Instant::now();
    // nginx's master and its worker.
    let ns = t.servers[1].clone();
    t.lab.kill_all_in(&ns);
    let out = logged(
        &f,
        "198.19.0.11:8443 is down",
        stopped,
        Duration::from_secs(10),
    );
    println!("tls: nginx stopped, server out after {out:?}");
    let restarted = Instant::now();
    tls_nginx(&mut t, 1);
    let back = logged(
        &f,
        "198.19.0.11:8443 is up again",
        restarted,
        Duration::from_secs(10),
    );
    println!("tls: nginx restarted, server back after {back:?}");

    // A certificate that does not name the server fails a verified check.
    let path = t.lab.dir.join("ferrovs.yaml");
    let running = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        running.replace("sni: www.example.org", "sni: other.example.org"),
    )
    .unwrap();
    let reloaded = Instant::now();
    ctl_ok(&t, &["reload"]);
    let out = logged(
        &f,
        "198.19.0.10:8443 is down",
        reloaded,
        Duration::from_secs(10),
    );
    println!("tls: wrong name, server out after {out:?}");
    assert!(
        f.log_text().contains("TLS: invalid peer certificate"),
        "{}",
        f.log_text()
    );
    assert!(f.stop().success());
}

#[test]
#[ignore = "needs root and DPDK: run via scripts/test.sh"]
fn an_exec_check_run_as_nobody_takes_servers_out_and_the_sorry_server_stands_in() {
    let mut t = Topology::new("exec", 3);
    for i in 0..2 {
        let ns = t.servers[i].clone();
        t.lab.http_server(
            &format!("nginx{i}"),
            &ns,
            &Topology::rs_addr(i),
            8080,
            &format!("rs{i}"),
        );
    }
    let sorry_ns = t.servers[2].clone();
    t.lab.http_server_with_file(
        "sorry",
        &sorry_ns,
        &Topology::rs_addr(2),
        8080,
        "sorry",
        1 << 20,
    );
    // `test -O`: the file exists and belongs to the user running the check. It
    // belongs to nobody, so the check passes only when run as nobody.
    let flag = t.lab.dir.join("up");
    let flag_text = flag.display().to_string();
    let raise = || {
        std::fs::write(&flag, "").unwrap();
        sh(&["chown", "nobody", &flag_text]);
    };
    raise();
    let check = format!(
        "    health_check: {{ type: exec, command: [/usr/bin/test, -O, \"{flag_text}\"], user: nobody, {TIMING} }}\n    sorry_server: {{ address: {}, port: 8080 }}\n",
        Topology::rs_addr(2)
    );
    let servers = [
        (Topology::rs_addr(0), 8080, 1),
        (Topology::rs_addr(1), 8080, 1),
    ];
    let cfg = t.config(
        &nat_service("web", VIP, 80, "tcp", "rr", &servers, &check),
        "",
    );
    let f = t.lab.ferrovs(&t.lb, &cfg);
    assert_both_up(&f, "web", &["198.19.0.10:8080", "198.19.0.11:8080"]);
    let url = format!("http://{VIP}/");
    let answers = t.curl_many(&url, 4);
    assert!(
        answers.iter().all(|a| a == "rs0" || a == "rs1"),
        "{answers:?}"
    );
    let list = ctl_ok(&t, &["list"]);
    println!("{list}");
    assert!(
        list.contains("TCP  198.18.0.100:80 rr (nat) quorum 1 name web"),
        "{list}"
    );
    assert!(
        list.contains("198.19.0.12:8080             Masq    0      0          0          sorry"),
        "{list}"
    );
    assert_eq!(
        f.metric("ferrovs_service_sorry_active{service=\"web\"}"),
        0.0
    );

    // Down: the flag is gone; both servers fail, the sorry server serves.
    let lowered = Instant::now();
    std::fs::remove_file(&flag).unwrap();
    let out = logged(
        &f,
        "198.19.0.10:8080 is down",
        lowered,
        Duration::from_secs(10),
    );
    logged(
        &f,
        "198.19.0.11:8080 is down",
        lowered,
        Duration::from_secs(10),
    );
    println!("exec: flag removed, servers out after {out:?}");
    assert!(f.log_text().contains("exit status 1"), "{}", f.log_text());
    let answers = t.curl_many(&url, 4);
    assert_eq!(answers, ["sorry"; 4]);
    assert_eq!(
        f.metric("ferrovs_service_sorry_active{service=\"web\"}"),
        1.0
    );
    let list = ctl_ok(&t, &["list"]);
    println!("{list}");
    assert!(list.contains("quorum 1 lost sorry name web"), "{list}");
    let json = ctl_ok(&t, &["list", "--json"]);
    assert!(
        json.contains("\"sorry_active\": true") && json.contains("\"sorry\": true"),
        "{json}"
    );
    // A slow download from the sorry server, going on while the servers return.
    let slow = t.lab.dir.join("slow.log");
    let client = t.client.clone();
    t.lab.spawn(
        "slow",
        &client,
        &[
            "sh", "-c",
            &format!("curl -s -o /dev/null --limit-rate 256k -w '%{{http_code}} %{{size_download}}\\n' http://{VIP}/big > {}", slow.display()),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));

    // Up: the flag is back (owned by nobody); the servers return, new
    // connections go to them, the sorry server's download finishes.
    let raised = Instant::now();
    raise();
    let back = logged(
        &f,
        "198.19.0.10:8080 is up again",
        raised,
        Duration::from_secs(10),
    );
    logged(
        &f,
        "198.19.0.11:8080 is up again",
        raised,
        Duration::from_secs(10),
    );
    println!("exec: flag back, servers back after {back:?}");
    let answers = t.curl_many(&url, 4);
    assert!(
        answers.iter().all(|a| a == "rs0" || a == "rs1"),
        "{answers:?}"
    );
    assert_eq!(
        f.metric("ferrovs_service_sorry_active{service=\"web\"}"),
        0.0
    );
    let done = wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&slow)
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(
        done.as_deref().map(str::trim),
        Some("200 1048576"),
        "the sorry server's download"
    );

    // A root-owned flag fails the check: the command does not run as root.
    let as_root = Instant::now();
    std::fs::remove_file(&flag).unwrap();
    std::fs::write(&flag, "").unwrap();
    let out = logged_nth(
        &f,
        "198.19.0.10:8080 is down (2 failed checks, last: exit status 1)",
        2,
        as_root,
        Duration::from_secs(10),
    );
    println!("exec: root-owned flag fails the check as nobody after {out:?}");

    // ctl save gives back the running service, sorry server and check included.
    let saved = ctl_ok(&t, &["save"]);
    println!("{saved}");
    assert!(saved.starts_with("services:\n"), "{saved}");
    assert!(
        saved.contains("sorry_server:") && saved.contains("type: exec"),
        "{saved}"
    );
    let again = format!("{}{}", &cfg[..cfg.find("services:\n").unwrap()], saved);
    let path = t.lab.write("saved.yaml", &again);
    let check = Command::new(FERROVS)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(f.stop().success());
}
