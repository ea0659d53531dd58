//! End-to-end harness: network namespaces joined by veth pairs, a real ferrovs child
//! process attached to its veth ends with `net_af_packet`, and real Linux peers.
//!
//! Everything a test creates is registered in its [`Lab`] and removed on drop, also
//! when the test panics. Tests need root and DPDK; they are `#[ignore]`d so plain
//! `cargo test` stays unprivileged, and the README's test command runs them one at a
//! time (`--ignored --test-threads=1`): a worker takes a core and the machine may have
//! only two.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The ferrovs binary cargo built for this test run.
pub const FERROVS: &str = env!("CARGO_BIN_EXE_ferrovs");

/// Runs `cmd` and returns its output, panicking with the output when it fails.
pub fn sh(cmd: &[&str]) -> Output {
    let out = run(cmd);
    if !out.status.success() {
        let mut line = cmd.join(" ");
        if line.len() > 300 {
            line.truncate(300);
            line.push_str(" ...");
        }
        panic!(
            "command failed: {line}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `cmd` and returns its output, whatever the exit status.
pub fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd[0]))
}

/// Polls `f` every 50 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test topology. Names carry the process id, so leftovers of a crashed run never
/// collide with a new one.
pub struct Lab {
    pub tag: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    pub dir: PathBuf,
}

impl Lab {
    /// A new lab; `tag` is a short test name (a few letters).
    pub fn new(tag: &str) -> Lab {
        assert!(
            run(&["id", "-u"]).stdout.starts_with(b"0"),
            "end-to-end tests need root (network namespaces, DPDK)"
        );
        let tag = format!("fv{}{}", std::process::id() % 100_000, tag);
        let dir = std::env::temp_dir().join(format!("ferrovs-e2e-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Lab {
            tag,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        }
    }

    /// Creates namespace `role` (full name returned) with loopback up.
    pub fn ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.tag);
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Joins two namespaces with a veth pair, checksum offload off on both ends (veth
    /// would otherwise hand ferrovs packets with unfinished checksums), IPv6 off
    /// unless an IPv6 address is given, links up. Addresses are "a.b.c.d/len".
    pub fn link(
        &self,
        ns_a: &str,
        if_a: &str,
        addr_a: &[&str],
        ns_b: &str,
        if_b: &str,
        addr_b: &[&str],
    ) {
        sh(&[
            "ip", "link", "add", "name", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b,
            "netns", ns_b,
        ]);
        for (ns, ifname, addrs) in [(ns_a, if_a, addr_a), (ns_b, if_b, addr_b)] {
            self.configure_if(ns, ifname, addrs);
        }
    }

    /// Offloads off, IPv6 only when asked, addresses, up.
    pub fn configure_if(&self, ns: &str, ifname: &str, addrs: &[&str]) {
        self.exec_ok(
            ns,
            &[
                "ethtool", "-K", ifname, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                "gro", "off",
            ],
        );
        let v6 = addrs.iter().any(|a| a.contains(':'));
        self.exec_ok(
            ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{ifname}.disable_ipv6={}", u8::from(!v6)),
            ],
        );
        for a in addrs {
            let mut cmd = vec!["ip", "addr", "add", a, "dev", ifname];
            if a.contains(':') {
                cmd.push("nodad");
            }
            self.exec_ok(ns, &cmd);
        }
        self.exec_ok(ns, &["ip", "link", "set", ifname, "up"]);
    }

    /// Runs `cmd` inside `ns`.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Runs `cmd` inside `ns` and panics if it fails.
    pub fn exec_ok(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(cmd);
        sh(&full)
    }

    /// Starts `cmd` in `ns` in the background; killed when the lab is dropped. Output
    /// goes to `<dir>/<name>.log`.
    pub fn spawn(&mut self, name: &str, ns: &str, cmd: &[&str]) -> u32 {
        let log = fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", cmd.join(" ")));
        let pid = child.id();
        self.children.push((name.to_string(), child));
        pid
    }

    /// Stops a background process started with [`Lab::spawn`] (SIGKILL).
    pub fn kill(&mut self, name: &str) {
        if let Some(pos) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(pos);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every process in namespace `ns` (a server and all its workers).
    pub fn kill_all_in(&mut self, ns: &str) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let gone: Vec<String> = self
            .children
            .iter_mut()
            .filter_map(|(n, c)| c.try_wait().ok().flatten().map(|_| n.clone()))
            .collect();
        self.children.retain(|(n, _)| !gone.contains(n));
    }

    /// Writes `text` to `<dir>/<file>` and returns the path.
    pub fn write(&self, file: &str, text: &str) -> PathBuf {
        let p = self.dir.join(file);
        fs::write(&p, text).unwrap();
        p
    }

    /// Starts an HTTP real server (nginx) in `ns` listening on `addr:port` that
    /// answers every request with `body` and a newline.
    pub fn http_server(&mut self, name: &str, ns: &str, addr: &str, port: u16, body: &str) {
        self.http_server_with_file(name, ns, addr, port, body, 0);
    }

    /// [`Lab::http_server`] that also serves `/big`, a file of `big` bytes, for
    /// long downloads (`curl --limit-rate`).
    pub fn http_server_with_file(
        &mut self,
        name: &str,
        ns: &str,
        addr: &str,
        port: u16,
        body: &str,
        big: usize,
    ) {
        let root = self.dir.join(name);
        fs::create_dir_all(&root).unwrap();
        // Content that a lost, repeated or shifted segment would change the checksum of.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let content: Vec<u8> = (0..big)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(root.join("big"), content).unwrap();
        let listen = if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        };
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {root};\n  proxy_temp_path {root};\n\
               fastcgi_temp_path {root};\n  uwsgi_temp_path {root};\n  scgi_temp_path {root};\n\
               keepalive_requests 1000000;\n\
               server {{\n    listen {listen} reuseport;\n\
                 location = /big {{ default_type application/octet-stream; alias {root}/big; }}\n\
                 location / {{ default_type text/plain; return 200 \"{body}\\n\"; }}\n  }}\n}}\n",
            root = root.display(),
        );
        let path = root.join("nginx.conf");
        fs::write(&path, conf).unwrap();
        self.spawn(name, ns, &["nginx", "-c", path.to_str().unwrap()]);
        let target = listen.clone();
        let up = wait_for(Duration::from_secs(10), || {
            let out = self.exec(ns, &["ss", "-Hltn", &format!("sport = :{port}")]);
            (!out.stdout.is_empty()).then_some(())
        });
        assert!(up.is_some(), "nginx {name} did not listen on {target}");
    }

    /// Starts ferrovs in `ns` with `config` (YAML text) and waits until it is ready.
    pub fn ferrovs(&mut self, ns: &str, config: &str) -> Ferrovs {
        self.ferrovs_instance(ns, "ferrovs", config)
    }

    /// [`Lab::ferrovs`] for one of several instances in a lab: its config, log,
    /// control socket and EAL file prefix are named after `name`.
    pub fn ferrovs_instance(&mut self, ns: &str, name: &str, config: &str) -> Ferrovs {
        // The filesystem is shared between namespaces: keep the control socket in the
        // lab's directory.
        let config = if config.contains("\nmanagement:") {
            config.to_string()
        } else {
            format!(
                "{config}management:\n  control_socket: \"{}\"\n",
                self.dir
                    .join(if name == "ferrovs" {
                        "ctl.sock".to_string()
                    } else {
                        format!("{name}.sock")
                    })
                    .display()
            )
        };
        // A file prefix of its own, so labs of concurrent test runs never share EAL files.
        let prefix = if name == "ferrovs" {
            self.tag.clone()
        } else {
            format!("{}{name}", self.tag)
        };
        let config = config.replace(
            "file_prefix: ferrovs-e2e",
            &format!("file_prefix: {prefix}"),
        );
        let path = self.write(&format!("{name}.yaml"), &config);
        // ferrovs owns its ports as DPDK owns a NIC: the namespace's kernel must not
        // also take the frames arriving on them (it would answer for the addresses
        // of ferrovs's kernel interfaces behind ferrovs's back).
        for iface in config.split("iface=").skip(1) {
            let name: String = iface
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            for tool in ["iptables", "ip6tables"] {
                self.exec_ok(
                    ns,
                    &[
                        tool,
                        "-t",
                        "raw",
                        "-A",
                        "PREROUTING",
                        "-i",
                        &name,
                        "-j",
                        "DROP",
                    ],
                );
            }
        }
        Ferrovs::start(ns, &path, &self.dir.join(format!("{name}.log")))
    }

    /// Starts BIRD 2 in `ns` with `conf` in the foreground (killed with the lab);
    /// returns its control socket for `birdc -s`.
    pub fn bird(&mut self, name: &str, ns: &str, conf: &str) -> String {
        let conf_path = self.write(&format!("{name}.conf"), conf);
        let sock = self.dir.join(format!("{name}.ctl"));
        let sock = sock.to_str().unwrap().to_string();
        self.spawn(
            name,
            ns,
            &["bird", "-f", "-c", conf_path.to_str().unwrap(), "-s", &sock],
        );
        sock
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            // Processes started with `ip netns exec` outside `spawn` (none should be
            // left) are killed with the namespace's pids.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            // Deleting a namespace deletes the veth ends in it, and so their peers.
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The free mbufs of the packet mempool.
const MEMPOOL: &str = "ferrovs_mempool_available_mbufs";

/// A running ferrovs process.
pub struct Ferrovs {
    child: Option<Child>,
    pub ns: String,
    pub log: PathBuf,
    pub metrics_addr: String,
    pub started: Instant,
    pub ready_after: Duration,
    /// Free mbufs once ready; [`Ferrovs::stop`] waits for the count to come back,
    /// so every test that stops ferrovs also proves no mbuf leaked.
    pub mempool_at_start: f64,
}

impl Ferrovs {
    fn start(ns: &str, config: &Path, log: &Path) -> Ferrovs {
        let text = fs::read_to_string(config).unwrap();
        let metrics_addr = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("metrics_listen:"))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| "127.0.0.1:9800".into());
        let logfile = fs::File::create(log).unwrap();
        let started = Instant::now();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, FERROVS, "run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("start ferrovs");
        let mut f = Ferrovs {
            child: Some(child),
            ns: ns.to_string(),
            log: log.to_path_buf(),
            metrics_addr,
            started,
            ready_after: Duration::ZERO,
            mempool_at_start: 0.0,
        };
        let ready = wait_for(Duration::from_secs(30), || {
            if let Some(status) = f.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "ferrovs exited during start-up ({status}):\n{}",
                    f.log_text()
                );
            }
            f.log_text().contains(" ready in ").then_some(())
        });
        assert!(
            ready.is_some(),
            "ferrovs not ready after 30 s:\n{}",
            f.log_text()
        );
        f.ready_after = started.elapsed();
        f.mempool_at_start = f.settled_mempool();
        f
    }

    /// The free mbufs once start-up traffic (announcements, probes) is out: the
    /// most seen until four readings 100 ms apart agree, within 2 s. A reading
    /// taken while such a packet is on its way would count it as leaked.
    fn settled_mempool(&self) -> f64 {
        let mut most = self.metric(MEMPOOL);
        let (mut last, mut same) = (most, 0);
        let until = Instant::now() + Duration::from_secs(2);
        while same < 3 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.metric(MEMPOOL);
            same = if now == last { same + 1 } else { 0 };
            last = now;
            most = most.max(now);
        }
        most
    }

    /// Waits up to 15 s (held packets give up on an unresolved neighbour after
    /// 3 s) for the free mbufs to be back at their count at start; panics with both
    /// counts if they do not come back.
    pub fn assert_mempool_conserved(&self) {
        let start = self.mempool_at_start;
        let mut last = 0.0;
        let back = wait_for(Duration::from_secs(15), || {
            last = self.metric(MEMPOOL);
            (last == start).then_some(())
        });
        assert!(
            back.is_some(),
            "mbufs leaked: {start} free at start, {last} now ({} missing)",
            start - last
        );
    }

    /// The process id (`ip netns exec` execs ferrovs, so it is ferrovs's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut s);
        }
        s
    }

    /// The /metrics text, fetched with curl inside ferrovs's namespace.
    pub fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "curl",
            "-sf",
            "--max-time",
            "5",
            &url,
        ]);
        assert!(
            out.status.success(),
            "GET {url} failed:\n{}",
            self.log_text()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The value of one sample, e.g. `metric("ferrovs_worker_rx_packets_total{worker=\"0\"}")`,
    /// or the sum over all label sets when `series` has no labels.
    pub fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics(), series)
    }

    /// Checks that no mbuf leaked, sends SIGTERM and waits up to 20 s for the exit
    /// status.
    pub fn stop(mut self) -> ExitStatus {
        self.assert_mempool_conserved();
        self.terminate()
            .expect("ferrovs did not exit within 20 s of SIGTERM")
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // `ip netns exec` execs the program, so the child pid is ferrovs itself.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = wait_for(Duration::from_secs(20), || child.try_wait().unwrap());
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }
}

impl Drop for Ferrovs {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// The sum of the samples of `series` in Prometheus text: `name` alone sums every
/// label set, `name{a="x",b="y"}` sums those whose labels include all the given ones.
pub fn sample(text: &str, series: &str) -> f64 {
    let (want_name, want_labels) = match series.split_once('{') {
        Some((n, l)) => (n, l.trim_end_matches('}')),
        None => (series, ""),
    };
    let wanted: Vec<&str> = want_labels
        .split("\",")
        .filter(|l| !l.is_empty())
        .map(|l| l.trim_end_matches('"'))
        .collect();
    let mut total = 0.0;
    let mut found = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((id, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match id.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (id, ""),
        };
        if name == want_name && wanted.iter().all(|w| labels.contains(&format!("{w}\""))) {
            found = true;
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    assert!(found, "no sample {series} in metrics:\n{text}");
    total
}

/// Lines of `text` that contain `needle`, for assertion messages.
pub fn grep(text: &str, needle: &str) -> String {
    BufReader::new(text.as_bytes())
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Lab {
    /// Sends raw Ethernet frames out of `ifname` in `ns` (AF_PACKET via Debian's
    /// python3, standard library only).
    /// Frames shorter than an Ethernet header cannot be sent this way (the kernel
    /// refuses them), so runts are covered by unit tests only.
    pub fn inject(&self, ns: &str, ifname: &str, frames: &[Vec<u8>]) {
        let hex: Vec<String> = frames
            .iter()
            .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let list = self.write("frames.hex", &hex.join("\n"));
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind(('{ifname}', 0))\n\
             for h in open('{}').read().split():\n    s.send(bytes.fromhex(h))\n",
            list.display()
        );
        self.exec_ok(ns, &["/usr/bin/python3", "-c", &script]);
    }

    /// The MAC address of `ifname` in `ns`.
    pub fn mac(&self, ns: &str, ifname: &str) -> [u8; 6] {
        let out = self.exec_ok(ns, &["cat", &format!("/sys/class/net/{ifname}/address")]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut mac = [0u8; 6];
        for (i, part) in text.trim().split(':').enumerate() {
            mac[i] = u8::from_str_radix(part, 16).unwrap();
        }
        mac
    }
}

/// A ferrovs config for tests: lcores 0 (management) and 1 (worker), no hugepages,
/// idle backoff so the peers keep CPU, `ports` as (name, iface, addresses), and
/// `extra` YAML appended (routes, services, ...).
pub fn config(ports: &[(&str, &str, &[&str])], extra: &str) -> String {
    let mut y = String::from(
        "eal:\n  cores: [0, 1]\n  memory_mb: 256\n  hugepages: false\n  file_prefix: ferrovs-e2e\nports:\n",
    );
    for (i, (name, iface, addrs)) in ports.iter().enumerate() {
        let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        y.push_str(&format!(
            "  - name: {name}\n    device: \"net_af_packet{i},iface={iface}\"\n    addresses: [{}]\n",
            addrs.join(", ")
        ));
    }
    y.push_str(
        "workers:\n  cores: [1]\n  idle_backoff: true\nmempool:\n  mbufs: 8191\nconnections:\n  max: 262144\n",
    );
    y.push_str(extra);
    y
}

/// A peer script from `tests/peers/`, run with Debian's python3.
pub fn peer(script: &str) -> String {
    format!("{}/tests/peers/{script}", env!("CARGO_MANIFEST_DIR"))
}

/// The two-arm load-balancer topology most tests use:
///
/// ```text
/// client 198.18.0.10/24 --- wan0 [ferrovs] lan0 --- bridge --- rs0 198.19.0.10/24
///                     (198.18.0.1)        (198.19.0.1)     +-- rs1 198.19.0.11/24 ...
///                                                          +-- direct 198.19.0.200/24
/// ```
/// Real servers route through ferrovs (NAT). `direct` is a client on the server LAN,
/// for measurements that bypass ferrovs.
pub struct Topology {
    pub lab: Lab,
    pub lb: String,
    pub client: String,
    pub bridge: String,
    pub servers: Vec<String>,
    pub direct: String,
}

impl Topology {
    /// Real servers route through ferrovs (NAT).
    pub fn new(tag: &str, servers: usize) -> Topology {
        Self::build(tag, servers, true)
    }

    /// Real servers with no route beyond their own subnet (FULLNAT needs none).
    pub fn isolated_servers(tag: &str, servers: usize) -> Topology {
        Self::build(tag, servers, false)
    }

    fn build(tag: &str, servers: usize, server_default_route: bool) -> Topology {
        let mut lab = Lab::new(tag);
        let lb = lab.ns("lb");
        let client = lab.ns("client");
        let bridge = lab.ns("br");
        lab.exec_ok(&bridge, &["ip", "link", "add", "br0", "type", "bridge"]);
        lab.exec_ok(&bridge, &["ip", "link", "set", "br0", "up"]);
        lab.link(&lb, "wan0", &[], &client, "eth0", &["198.18.0.10/24"]);
        lab.link(&lb, "lan0", &[], &bridge, "p-lb", &[]);
        lab.exec_ok(&bridge, &["ip", "link", "set", "p-lb", "master", "br0"]);
        let mut rs = Vec::new();
        for i in 0..servers {
            let ns = lab.ns(&format!("rs{i}"));
            let addr = format!("198.19.0.{}/24", 10 + i);
            lab.link(&ns, "eth0", &[&addr], &bridge, &format!("p-rs{i}"), &[]);
            lab.exec_ok(
                &bridge,
                &["ip", "link", "set", &format!("p-rs{i}"), "master", "br0"],
            );
            if server_default_route {
                lab.exec_ok(&ns, &["ip", "route", "add", "default", "via", "198.19.0.1"]);
            }
            rs.push(ns);
        }
        let direct = lab.ns("direct");
        lab.link(
            &direct,
            "eth0",
            &["198.19.0.200/24"],
            &bridge,
            "p-direct",
            &[],
        );
        lab.exec_ok(&bridge, &["ip", "link", "set", "p-direct", "master", "br0"]);
        Topology {
            lab,
            lb,
            client,
            bridge,
            servers: rs,
            direct,
        }
    }

    /// Address of real server `i`.
    pub fn rs_addr(i: usize) -> String {
        format!("198.19.0.{}", 10 + i)
    }

    /// Starts dnsmasq on real server `i`, port 53, answering `www.example.org`
    /// with `answer`, and waits until it listens.
    pub fn dnsmasq(&mut self, i: usize, answer: &str) {
        let ns = self.servers[i].clone();
        let addr = Topology::rs_addr(i);
        let pid = self.lab.dir.join(format!("dnsmasq{i}.pid"));
        self.lab.spawn(
            &format!("dnsmasq{i}"),
            &ns,
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                &format!("--listen-address={addr}"),
                "--bind-interfaces",
                "--port=53",
                &format!("--address=/www.example.org/{answer}"),
                &format!("--pid-file={}", pid.display()),
                "--user=nobody",
                "--log-facility=-",
            ],
        );
        let listening = wait_for(Duration::from_secs(5), || {
            let out = self.lab.exec(&ns, &["ss", "-Hlun", "sport = :53"]);
            (!out.stdout.is_empty()).then_some(())
        });
        assert!(listening.is_some(), "dnsmasq {i} does not listen");
    }

    /// Starts nginx on every real server, port `port`, answering "rs<i>".
    pub fn http_servers(&mut self, port: u16) {
        for i in 0..self.servers.len() {
            let ns = self.servers[i].clone();
            self.lab.http_server(
                &format!("nginx{i}"),
                &ns,
                &Self::rs_addr(i),
                port,
                &format!("rs{i}"),
            );
        }
    }

    /// The ferrovs config for this topology with `services` (YAML list items) and
    /// `extra` top-level YAML.
    pub fn config(&self, services: &str, extra: &str) -> String {
        config(
            &[
                ("wan", "wan0", &["198.18.0.1/24"]),
                ("lan", "lan0", &["198.19.0.1/24"]),
            ],
            &format!("{extra}services:\n{services}"),
        )
    }

    /// `n` HTTP GETs from the client to `url`, one connection each; the bodies.
    pub fn curl_many(&self, url: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let out = self.lab.exec(&self.client, &["curl", "-s", "-m", "5", url]);
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
            .collect()
    }
}

/// How many times each distinct string occurs, sorted by string.
pub fn tally(items: &[String]) -> Vec<(String, usize)> {
    let mut m = std::collections::BTreeMap::new();
    for i in items {
        *m.entry(i.clone()).or_insert(0) += 1;
    }
    m.into_iter().collect()
}

/// A NAT service item for [`Topology::config`].
pub fn nat_service(
    name: &str,
    vip: &str,
    port: u16,
    proto: &str,
    scheduler: &str,
    servers: &[(String, u16, u32)],
    extra: &str,
) -> String {
    let mut s = format!(
        "  - name: {name}\n    vip: {vip}\n    port: {port}\n    protocol: {proto}\n    mode: nat\n    scheduler: {scheduler}\n{extra}    real_servers:\n"
    );
    for (addr, p, w) in servers {
        s.push_str(&format!(
            "      - {{ address: {addr}, port: {p}, weight: {w} }}\n"
        ));
    }
    s
}

/// wrk's summary: (requests, errors of any kind, requests/s).
pub fn wrk_summary(out: &str) -> (u64, u64, f64) {
    let mut requests = 0;
    let mut errors = 0;
    let mut rps = 0.0;
    for line in out.lines() {
        let l = line.trim();
        if let Some(n) = l
            .split(" requests in ")
            .next()
            .filter(|_| l.contains(" requests in "))
        {
            requests = n.trim().parse().unwrap_or(0);
        }
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().unwrap_or(0.0);
        }
        if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(v) = l.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    (requests, errors, rps)
}

/// The one-arm topology of DR and TUNNEL: client, ferrovs and real servers on one
/// bridge, each real server holding the VIP on `lo` with `arp_ignore=1` and
/// `arp_announce=2` so only ferrovs answers ARP for it, and answering clients
/// directly.
///
/// ```text
///   client 198.18.0.10 --+
///   ferrovs 198.18.0.1 --+-- bridge
///   rs<i> 198.18.0.2<i> -+   (VIP on lo)
/// ```
pub struct OneArm {
    pub lab: Lab,
    pub lb: String,
    pub client: String,
    pub servers: Vec<String>,
}

impl OneArm {
    pub fn new(tag: &str, servers: usize, vip: &str) -> OneArm {
        let mut lab = Lab::new(tag);
        let lb = lab.ns("lb");
        let client = lab.ns("client");
        let bridge = lab.ns("br");
        lab.exec_ok(&bridge, &["ip", "link", "add", "br0", "type", "bridge"]);
        lab.exec_ok(&bridge, &["ip", "link", "set", "br0", "up"]);
        let attach = |lab: &Lab, ns: &str, ifname: &str, addrs: &[&str], port: &str| {
            lab.link(ns, ifname, addrs, &bridge, port, &[]);
            lab.exec_ok(&bridge, &["ip", "link", "set", port, "master", "br0"]);
        };
        attach(&lab, &lb, "lan0", &[], "p-lb");
        attach(&lab, &client, "eth0", &["198.18.0.10/24"], "p-client");
        let mut rs = Vec::new();
        for i in 0..servers {
            let ns = lab.ns(&format!("rs{i}"));
            let addr = format!("{}/24", Self::rs_addr(i));
            attach(&lab, &ns, "eth0", &[&addr], &format!("p-rs{i}"));
            lab.exec_ok(
                &ns,
                &["ip", "addr", "add", &format!("{vip}/32"), "dev", "lo"],
            );
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
            rs.push(ns);
        }
        OneArm {
            lab,
            lb,
            client,
            servers: rs,
        }
    }

    pub fn rs_addr(i: usize) -> String {
        format!("198.18.0.{}", 20 + i)
    }

    /// ferrovs on its single port with `services`.
    pub fn config(&self, services: &str) -> String {
        config(
            &[("lan", "lan0", &["198.18.0.1/24"])],
            &format!("services:\n{services}"),
        )
    }
}

/// A service item of any mode for the topology configs.
pub fn service(
    name: &str,
    mode: &str,
    vip: &str,
    port: u16,
    scheduler: &str,
    servers: &[(String, u16, u32)],
    extra: &str,
) -> String {
    nat_service(name, vip, port, "tcp", scheduler, servers, extra)
        .replace("    mode: nat\n", &format!("    mode: {mode}\n"))
}

/// Turns a one-worker test config into a two-worker one: lcores 0 (management), 1
/// and 2 (workers), lcore 2 placed on CPU 1 with `eal.cpu_map` (the test machine has
/// two CPUs; idle backoff makes sharing work), and every `net_af_packet` port with
/// two queue pairs, which its fanout fills by flow hash like RSS would.
pub fn two_workers(config: &str) -> String {
    let out = config
        .replace(
            "eal:\n  cores: [0, 1]\n",
            "eal:\n  cores: [0, 1, 2]\n  cpu_map: { 2: 1 }\n",
        )
        .replace("workers:\n  cores: [1]\n", "workers:\n  cores: [1, 2]\n")
        .replace("mbufs: 8191", "mbufs: 16383");
    let mut s = String::new();
    for line in out.lines() {
        if line.contains("device: \"net_af_packet") {
            s.push_str(line.trim_end_matches('"'));
            s.push_str(",qpairs=2\"\n");
        } else {
            s.push_str(line);
            s.push('\n');
        }
    }
    assert!(
        s.contains("cores: [1, 2]") && s.contains("qpairs=2"),
        "not a test config:\n{config}"
    );
    s
}
