//! Health checks of real servers, keepalived style: every `interval` a TCP connect,
//! an HTTP GET, a UDP datagram, a DNS query, a TLS handshake (with an HTTP GET over
//! it, keepalived's SSL_GET) or a command (keepalived's MISC_CHECK), within
//! `timeout`; `fall` failures in a row take a server out of scheduling, `rise`
//! successes in a row bring it back. Checks are kernel sockets from the management
//! core, so they leave through the exception path from the balancer's own address
//! on the servers' network.
//!
//! Passive checking adds what the data plane saw: an interval in which the server
//! refused or left unanswered new connections and completed none counts as a failed
//! check too.
//!
//! Checks run on a few threads of their own; the management loop only schedules
//! them and reads results, so a slow server never stalls it.

use super::state::HealthMap;
use crossbeam_channel::{unbounded, Receiver, Sender};
use ferrovs_core::config::{CheckKind, Config, HealthCheckConfig};
use ferrovs_core::service::endpoint;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

mod exec;
mod tls;

/// Threads running checks.
const CHECKERS: usize = 4;

/// A real server of a service.
pub type Key = (String, IpAddr, u16);

struct Job {
    key: Key,
    target: SocketAddr,
    check: HealthCheckConfig,
}

struct Outcome {
    key: Key,
    result: Result<(), CheckError>,
}

/// Why a check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// The server failed it: refused, timed out, answered wrongly.
    Server(String),
    /// This host could not run it (out of descriptors, memory, buffers or local
    /// ports). That says nothing about the server, so it counts neither way.
    Local(String),
}

impl CheckError {
    fn of(err: std::io::Error) -> CheckError {
        use nix::errno::Errno;
        let local = [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOBUFS,
            Errno::ENOMEM,
            Errno::EADDRNOTAVAIL,
        ];
        match err.raw_os_error() {
            Some(code) if local.iter().any(|e| *e as i32 == code) => {
                CheckError::Local(err.to_string())
            }
            _ => CheckError::Server(err.to_string()),
        }
    }
}

/// The health state of one real server.
struct Target {
    check: HealthCheckConfig,
    target: SocketAddr,
    up: bool,
    successes: u32,
    failures: u32,
    next: Instant,
    in_flight: bool,
    /// Passive counters at the previous result: (handshakes, syn failures).
    passive_seen: (u64, u64),
}

/// A server that changed state, for the log and the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The real server: service name, address, port.
    pub key: Key,
    /// The new state: true when the server is back in scheduling.
    pub up: bool,
    /// What brought the change about, for the log: the checks in a row that passed,
    /// or that failed and the last failure's cause.
    pub why: String,
}

/// Schedules checks and keeps every checked server's state.
pub struct HealthChecker {
    jobs: Sender<Job>,
    results: Receiver<Outcome>,
    targets: HashMap<Key, Target>,
    /// When a check last could not run for a local reason (logged at most every
    /// 10 s).
    last_local_warning: Option<Instant>,
}

impl HealthChecker {
    /// A checker whose check threads run on `cpu` (the management core's).
    pub fn new(cpu: u32) -> HealthChecker {
        let (jobs, job_rx) = unbounded::<Job>();
        let (res_tx, results) = unbounded::<Outcome>();
        for i in 0..CHECKERS {
            let (rx, tx) = (job_rx.clone(), res_tx.clone());
            let _ = std::thread::Builder::new()
                .name(format!("ferrovs-check{i}"))
                .spawn(move || {
                    super::pin_to_management_cpu(cpu);
                    // Ends when the checker (the job sender) is dropped.
                    for job in rx {
                        let result = run_check_for(&job.key.0, job.target, &job.check);
                        if tx
                            .send(Outcome {
                                key: job.key,
                                result,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                });
        }
        HealthChecker {
            jobs,
            results,
            targets: HashMap::new(),
            last_local_warning: None,
        }
    }

    /// Follows a configuration change: starts checking new servers (up until proven
    /// otherwise), forgets removed ones, keeps the state of the others.
    pub fn sync(&mut self, config: &Config, now: Instant) {
        let mut wanted: HashMap<Key, (HealthCheckConfig, SocketAddr)> = HashMap::new();
        for s in &config.services {
            if s.health_check.kind == CheckKind::None {
                continue;
            }
            for r in &s.real_servers {
                let port = s.health_check.port.unwrap_or(r.port);
                wanted.insert(
                    (s.name.clone(), r.address, r.port),
                    (s.health_check.clone(), SocketAddr::new(r.address, port)),
                );
            }
        }
        self.sync_targets(wanted, now);
    }

    /// [`HealthChecker::sync`] with the servers to check given directly.
    pub fn sync_targets(
        &mut self,
        wanted: HashMap<Key, (HealthCheckConfig, SocketAddr)>,
        now: Instant,
    ) {
        self.targets.retain(|k, _| wanted.contains_key(k));
        for (key, (check, target)) in wanted {
            match self.targets.get_mut(&key) {
                Some(t) => {
                    if t.check != check || t.target != target {
                        t.check = check;
                        t.target = target;
                        t.successes = 0;
                        t.failures = 0;
                        t.next = now;
                    }
                }
                None => {
                    self.targets.insert(
                        key,
                        Target {
                            check,
                            target,
                            up: true,
                            successes: 0,
                            failures: 0,
                            next: now,
                            in_flight: false,
                            passive_seen: (0, 0),
                        },
                    );
                }
            }
        }
    }

    /// Starts the checks that are due and applies the results that came in.
    /// `passive(key)` gives the data plane's (handshakes, syn failures) counters of a
    /// server. Returns the servers whose state changed.
    pub fn tick(
        &mut self,
        now: Instant,
        mut passive: impl FnMut(&Key) -> (u64, u64),
    ) -> Vec<Transition> {
        for (key, t) in self.targets.iter_mut() {
            if !t.in_flight && now >= t.next {
                t.in_flight = true;
                t.next = now + t.check.interval;
                let _ = self.jobs.send(Job {
                    key: key.clone(),
                    target: t.target,
                    check: t.check.clone(),
                });
            }
        }
        let mut changed = Vec::new();
        while let Ok(Outcome { key, result }) = self.results.try_recv() {
            if let Some(t) = self.record(&key, result, now, &mut passive) {
                changed.push(t);
            }
        }
        changed
    }

    /// Applies one check's result; the transition when the server changed state.
    fn record(
        &mut self,
        key: &Key,
        result: Result<(), CheckError>,
        now: Instant,
        passive: &mut impl FnMut(&Key) -> (u64, u64),
    ) -> Option<Transition> {
        let t = self.targets.get_mut(key)?;
        t.in_flight = false;
        let result = match result {
            Ok(()) => Ok(()),
            Err(CheckError::Server(why)) => Err(why),
            Err(CheckError::Local(why)) => {
                if self
                    .last_local_warning
                    .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
                {
                    log::warn!(
                        "{}: check not run ({why}); the server's state is kept",
                        describe(key)
                    );
                    self.last_local_warning = Some(now);
                }
                return None;
            }
        };
        let (handshakes, failures) = passive(key);
        let (seen_ok, seen_fail) = t.passive_seen;
        t.passive_seen = (handshakes, failures);
        let result = match result {
            Ok(()) if t.check.passive && failures > seen_fail && handshakes == seen_ok => {
                Err(format!(
                    "{} new connection(s) refused or unanswered, none completed",
                    failures - seen_fail
                ))
            }
            other => other,
        };
        match result {
            Ok(()) => {
                t.failures = 0;
                t.successes = t.successes.saturating_add(1);
                if !t.up && t.successes >= t.check.rise {
                    t.up = true;
                    return Some(Transition {
                        key: key.clone(),
                        up: true,
                        why: format!("{} successful checks", t.successes),
                    });
                }
            }
            Err(why) => {
                t.successes = 0;
                t.failures = t.failures.saturating_add(1);
                if t.up && t.failures >= t.check.fall {
                    t.up = false;
                    return Some(Transition {
                        key: key.clone(),
                        up: false,
                        why: format!("{} failed checks, last: {why}", t.failures),
                    });
                }
            }
        }
        None
    }

    /// The health map the data plane snapshot is built with.
    pub fn map(&self) -> HealthMap {
        self.targets
            .iter()
            .map(|(k, t)| (k.clone(), t.up))
            .collect()
    }
}

/// "service web: real server 198.19.0.10:8080".
pub fn describe(key: &Key) -> String {
    format!("service {}: real server {}", key.0, endpoint(key.1, key.2))
}

/// One check, on the calling thread.
pub fn run_check(target: SocketAddr, check: &HealthCheckConfig) -> Result<(), CheckError> {
    run_check_for("", target, check)
}

/// One check of a real server of `service` (named to an exec check's command), on
/// the calling thread.
pub fn run_check_for(
    service: &str,
    target: SocketAddr,
    check: &HealthCheckConfig,
) -> Result<(), CheckError> {
    let deadline = Instant::now() + check.timeout;
    match check.kind {
        CheckKind::None | CheckKind::Tcp => {
            TcpStream::connect_timeout(&target, check.timeout).map_err(CheckError::of)?;
            Ok(())
        }
        CheckKind::Http => {
            let mut stream =
                TcpStream::connect_timeout(&target, check.timeout).map_err(CheckError::of)?;
            stream
                .set_write_timeout(Some(left(deadline)))
                .map_err(CheckError::of)?;
            let status = http_status(
                &mut stream,
                &endpoint(target.ip(), target.port()),
                &check.path,
                deadline,
                |s: &mut TcpStream, d| s.set_read_timeout(Some(d)),
            )?;
            expect_status(status, check.expect_status)
        }
        CheckKind::Udp => udp_check(target, check, deadline),
        CheckKind::Dns => dns_check(target, check, deadline),
        CheckKind::Tls => tls::check(target, check, deadline),
        CheckKind::Exec => exec::check(service, target, check, deadline),
    }
}

/// What is left of the time until `deadline`, at least a millisecond (a zero
/// socket timeout means none).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn expect_status(status: u16, expected: u16) -> Result<(), CheckError> {
    if status == expected {
        Ok(())
    } else {
        Err(CheckError::Server(format!(
            "HTTP status {status}, expected {expected}"
        )))
    }
}

/// Sends `GET path` over `stream` and reads until the status line is complete
/// (or the deadline passes); the status code. `read_timeout` sets the timeout of
/// the next read.
fn http_status<S: Read + Write>(
    stream: &mut S,
    host: &str,
    path: &str,
    deadline: Instant,
    read_timeout: impl Fn(&mut S, Duration) -> std::io::Result<()>,
) -> Result<u16, CheckError> {
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: ferrovs-health-check\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(CheckError::of)?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        read_timeout(stream, left(deadline)).map_err(CheckError::of)?;
        let n = stream.read(&mut buf).map_err(CheckError::of)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            CheckError::Server(format!(
                "no HTTP status line in {:?}",
                line.lines().next().unwrap_or("")
            ))
        })
}

/// A receive that ran out of time (`SO_RCVTIMEO` reports EAGAIN).
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A connected UDP socket to `target` (from the kernel's choice of address and
/// port: the exception path's on the servers' network).
fn udp_socket(target: SocketAddr) -> Result<UdpSocket, CheckError> {
    let any: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).map_err(CheckError::of)?;
    socket.connect(target).map_err(CheckError::of)?;
    Ok(socket)
}

/// An ICMP error the kernel reported on a connected UDP socket, named.
fn udp_error(e: std::io::Error) -> CheckError {
    use nix::errno::Errno;
    match e.raw_os_error() {
        Some(code) if code == Errno::ECONNREFUSED as i32 => {
            CheckError::Server("port unreachable (ICMP): nothing listens there".into())
        }
        _ => CheckError::of(e),
    }
}

/// keepalived's UDP_CHECK: the payload is sent; an answer (containing `expect`, if
/// given) passes. Without `require_reply`, silence passes too, and only an ICMP
/// error (port or host unreachable) fails.
fn udp_check(
    target: SocketAddr,
    check: &HealthCheckConfig,
    deadline: Instant,
) -> Result<(), CheckError> {
    let socket = udp_socket(target)?;
    socket.send(&check.payload).map_err(udp_error)?;
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(left(deadline)))
        .map_err(CheckError::of)?;
    match socket.recv(&mut buf) {
        Ok(n) if check.expect.is_empty() || contains(&buf[..n], &check.expect) => Ok(()),
        Ok(n) => Err(CheckError::Server(format!(
            "the answer ({n} bytes) does not hold the expected {:?}",
            String::from_utf8_lossy(&check.expect)
        ))),
        Err(e) if timed_out(&e) && !check.require_reply => Ok(()),
        Err(e) if timed_out(&e) => Err(CheckError::Server(format!(
            "no answer within {:?}",
            check.timeout
        ))),
        Err(e) => Err(udp_error(e)),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A DNS query (RFC 1035 4.1) for `name` and `qtype`, class IN, recursion desired.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1, AN/NS/AR 0
    for label in name.split('.').filter(|l| !l.is_empty()) {
        // Labels are at most 63 bytes: checked with the configuration.
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

/// A query id nobody can guess from the previous one.
fn random_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}

/// keepalived's DNS_CHECK: a query over UDP; the answer with the query's id must
/// carry the expected response code. Answers with another id are ignored.
fn dns_check(
    target: SocketAddr,
    check: &HealthCheckConfig,
    deadline: Instant,
) -> Result<(), CheckError> {
    let socket = udp_socket(target)?;
    let id = random_id();
    socket
        .send(&dns_query(id, &check.query_name, check.query_type.code()))
        .map_err(udp_error)?;
    let mut buf = [0u8; 4096];
    loop {
        if Instant::now() >= deadline {
            return Err(CheckError::Server(format!(
                "no DNS answer within {:?}",
                check.timeout
            )));
        }
        socket
            .set_read_timeout(Some(left(deadline)))
            .map_err(CheckError::of)?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if timed_out(&e) => continue,
            Err(e) => return Err(udp_error(e)),
        };
        let answer = &buf[..n];
        if n < 12 || u16::from_be_bytes([answer[0], answer[1]]) != id || answer[2] & 0x80 == 0 {
            continue;
        }
        let rcode = answer[3] & 0x0f;
        let answers = u16::from_be_bytes([answer[6], answer[7]]);
        return if rcode == check.expect_rcode.code() {
            Ok(())
        } else {
            let name = ferrovs_core::config::DnsRcode::ALL
                .iter()
                .find(|r| r.code() == rcode)
                .map_or_else(|| format!("rcode {rcode}"), |r| r.to_string());
            Err(CheckError::Server(format!(
                "DNS answer {name} with {answers} record(s), expected {}",
                check.expect_rcode
            )))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovs_core::config::{DnsRcode, DnsType};
    use std::net::TcpListener;

    fn http_server(status: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut s = s;
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
            }
        });
        addr
    }

    fn check(kind: CheckKind) -> HealthCheckConfig {
        HealthCheckConfig {
            kind,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 2,
            passive: true,
            ..HealthCheckConfig::default()
        }
    }

    #[test]
    fn tcp_and_http_checks() {
        let ok = http_server("200 OK");
        let bad = http_server("503 Service Unavailable");
        assert_eq!(run_check(ok, &check(CheckKind::Tcp)), Ok(()));
        assert_eq!(run_check(ok, &check(CheckKind::Http)), Ok(()));
        let err = run_check(bad, &check(CheckKind::Http)).unwrap_err();
        assert!(
            matches!(&err, CheckError::Server(why) if why.contains("503")),
            "{err:?}"
        );
        // nothing listens there
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            run_check(closed, &check(CheckKind::Tcp)),
            Err(CheckError::Server(_))
        ));
    }

    /// Running out of descriptors here (as a flood of management connections once
    /// caused) says nothing about the server: such results count neither way.
    #[test]
    fn local_resource_errors_do_not_mark_servers_down() {
        let emfile = std::io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
        assert!(matches!(CheckError::of(emfile), CheckError::Local(_)));
        let refused = std::io::Error::from_raw_os_error(nix::errno::Errno::ECONNREFUSED as i32);
        assert!(matches!(CheckError::of(refused), CheckError::Server(_)));
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut h = HealthChecker::new(0);
        let now = Instant::now();
        h.sync_targets(targets(addr), now);
        let key: Key = ("web".into(), addr.ip(), addr.port());
        let mut passive = |_: &Key| (0, 0);
        let local = || Err(CheckError::Local("Too many open files".into()));
        let server = || Err(CheckError::Server("connection refused".into()));
        // fall is 2: any number of local errors between two server failures neither
        // takes it out nor resets the count.
        assert_eq!(h.record(&key, server(), now, &mut passive), None);
        for _ in 0..10 {
            assert_eq!(h.record(&key, local(), now, &mut passive), None);
        }
        assert_eq!(h.map().get(&key), Some(&true));
        let down = h.record(&key, server(), now, &mut passive).unwrap();
        assert!(!down.up && down.why.contains("2 failed checks"), "{down:?}");
    }

    /// A UDP peer on localhost: echoes each datagram (prefixed with `prefix`), or
    /// stays silent when `prefix` is None.
    fn udp_peer(prefix: Option<&'static [u8]>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if let Some(prefix) = prefix {
                    let reply: Vec<u8> = prefix.iter().chain(&buf[..n]).copied().collect();
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        addr
    }

    /// A port nothing listens on: the kernel answers ICMP port unreachable.
    fn closed_udp_port() -> SocketAddr {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn udp_checks_want_an_answer_or_no_port_unreachable() {
        let udp = |payload: &[u8], expect: &[u8], require_reply: bool| HealthCheckConfig {
            payload: payload.to_vec(),
            expect: expect.to_vec(),
            require_reply,
            timeout: Duration::from_millis(300),
            ..check(CheckKind::Udp)
        };
        let echo = udp_peer(Some(b"echo:"));
        assert_eq!(run_check(echo, &udp(b"ping", b"", true)), Ok(()));
        assert_eq!(run_check(echo, &udp(b"ping", b"echo:ping", true)), Ok(()));
        let err = run_check(echo, &udp(b"ping", b"pong", true)).unwrap_err();
        assert!(
            matches!(&err, CheckError::Server(w) if w.contains("does not hold")),
            "{err:?}"
        );
        let silent = udp_peer(None);
        let err = run_check(silent, &udp(b"ping", b"", true)).unwrap_err();
        assert!(
            matches!(&err, CheckError::Server(w) if w.contains("no answer")),
            "{err:?}"
        );
        // keepalived's UDP_CHECK without require_reply: silence passes, ICMP fails.
        assert_eq!(run_check(silent, &udp(b"ping", b"", false)), Ok(()));
        let closed = closed_udp_port();
        for require_reply in [true, false] {
            let err = run_check(closed, &udp(b"ping", b"", require_reply)).unwrap_err();
            assert!(
                matches!(&err, CheckError::Server(w) if w.contains("port unreachable")),
                "{err:?}"
            );
        }
    }

    /// A DNS server on localhost answering every query with `rcode`, after a stray
    /// answer with another id.
    fn dns_peer(rcode: u8) -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let query = buf[..n].to_vec();
                let mut answer = query.clone();
                answer[2] |= 0x80; // QR
                answer[3] = (answer[3] & 0xf0) | rcode;
                answer[6..8].copy_from_slice(&1u16.to_be_bytes());
                let mut stray = answer.clone();
                stray[0] ^= 0xff;
                let _ = socket.send_to(&stray, from);
                let _ = socket.send_to(&answer, from);
                let _ = tx.send(query);
            }
        });
        (addr, rx)
    }

    #[test]
    fn dns_checks_send_the_query_and_read_the_rcode() {
        let dns = |rcode: DnsRcode| HealthCheckConfig {
            query_name: "www.example.org.".into(),
            query_type: DnsType::Aaaa,
            expect_rcode: rcode,
            ..check(CheckKind::Dns)
        };
        let (ok, queries) = dns_peer(0);
        assert_eq!(run_check(ok, &dns(DnsRcode::NoError)), Ok(()));
        let q = queries.recv().unwrap();
        assert_eq!(&q[2..12], &[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x03www\x07example\x03org\x00\x00\x1c\x00\x01");
        let err = run_check(ok, &dns(DnsRcode::NxDomain)).unwrap_err();
        assert!(
            matches!(&err, CheckError::Server(w) if w.contains("DNS answer NOERROR with 1 record(s), expected NXDOMAIN")),
            "{err:?}"
        );
        let (refusing, _q) = dns_peer(5);
        let err = run_check(refusing, &dns(DnsRcode::NoError)).unwrap_err();
        assert!(
            matches!(&err, CheckError::Server(w) if w.contains("REFUSED")),
            "{err:?}"
        );
        assert_eq!(dns_query(7, ".", 6)[12..], [0, 0, 6, 0, 1]);
        let err = run_check(closed_udp_port(), &dns(DnsRcode::NoError)).unwrap_err();
        assert!(
            matches!(&err, CheckError::Server(w) if w.contains("port unreachable")),
            "{err:?}"
        );
    }

    #[test]
    fn tls_checks_fail_against_a_server_that_does_not_speak_tls() {
        let plain = http_server("200 OK");
        let tls = HealthCheckConfig {
            timeout: Duration::from_millis(500),
            ..check(CheckKind::Tls)
        };
        let err = run_check(plain, &tls).unwrap_err();
        assert!(
            matches!(&err, CheckError::Server(w) if w.contains("TLS")),
            "{err:?}"
        );
        let missing = HealthCheckConfig {
            verify: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..tls
        };
        assert!(matches!(
            run_check(plain, &missing),
            Err(CheckError::Local(_))
        ));
    }

    #[test]
    fn exec_checks_pass_on_exit_0_and_kill_what_runs_too_long() {
        let root = nix::unistd::geteuid().is_root();
        let exec = |command: &[&str]| HealthCheckConfig {
            command: command.iter().map(|w| w.to_string()).collect(),
            // Without root, nothing can change users: the command runs as the
            // tests do.
            user: root.then(|| "nobody".to_string()),
            run_as_root: !root,
            timeout: Duration::from_millis(300),
            ..check(CheckKind::Exec)
        };
        let target: SocketAddr = "198.19.0.10:8080".parse().unwrap();
        let run = |c: &HealthCheckConfig| run_check_for("web", target, c);
        assert_eq!(run(&exec(&["/bin/true"])), Ok(()));
        let err = run(&exec(&["/bin/false"])).unwrap_err();
        assert_eq!(err, CheckError::Server("exit status 1".into()));
        // The environment names what is checked and nothing else of ferrovs's (cargo
        // sets CARGO_MANIFEST_DIR for the tests), and the user is not root.
        let script = "test \"$FERROVS_SERVICE $FERROVS_RS_ADDRESS $FERROVS_RS_PORT\" = \"web 198.19.0.10 8080\" && test -z \"$CARGO_MANIFEST_DIR\" && { [ $(id -u) != 0 ] || [ $ROOT = 1 ]; }";
        let root_flag = if root { "0" } else { "1" };
        let env_check = exec(&[
            "/usr/bin/env",
            &format!("ROOT={root_flag}"),
            "/bin/sh",
            "-c",
            script,
        ]);
        assert_eq!(run(&env_check), Ok(()));
        let started = Instant::now();
        let err = run(&exec(&["/bin/sleep", "10"])).unwrap_err();
        assert!(
            matches!(&err, CheckError::Server(w) if w.contains("killed")),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // A command that cannot start says nothing about the server.
        assert!(matches!(
            run(&exec(&["/nonexistent/check"])),
            Err(CheckError::Local(_))
        ));
        if root {
            let unknown = HealthCheckConfig {
                user: Some("no-such-user-ferrovs".into()),
                ..exec(&["/bin/true"])
            };
            assert!(matches!(run(&unknown), Err(CheckError::Local(_))));
        }
    }

    fn targets(addr: SocketAddr) -> HashMap<Key, (HealthCheckConfig, SocketAddr)> {
        let check = HealthCheckConfig {
            timeout: Duration::from_millis(100),
            ..check(CheckKind::Tcp)
        };
        HashMap::from([(("web".to_string(), addr.ip(), addr.port()), (check, addr))])
    }

    #[test]
    fn fall_takes_out_rise_brings_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut h = HealthChecker::new(0);
        h.sync_targets(targets(addr), Instant::now());
        let key: Key = ("web".into(), addr.ip(), addr.port());
        assert_eq!(h.map().get(&key), Some(&true));
        let run = |h: &mut HealthChecker, until: Duration| {
            let mut seen = Vec::new();
            let end = Instant::now() + until;
            while Instant::now() < end {
                seen.extend(h.tick(Instant::now(), |_| (0, 0)));
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        };
        assert!(
            run(&mut h, Duration::from_millis(400)).is_empty(),
            "a listening server stays up"
        );
        drop(listener);
        let down = run(&mut h, Duration::from_millis(600));
        assert_eq!(down.len(), 1, "{down:?}");
        assert!(!down[0].up);
        assert_eq!(h.map().get(&key), Some(&false));
        let _listener = TcpListener::bind(addr).unwrap();
        let up = run(&mut h, Duration::from_millis(600));
        assert_eq!(up.len(), 1, "{up:?}");
        assert!(up[0].up && up[0].why.contains("successful"));
        // a server no longer configured is forgotten
        h.sync_targets(HashMap::new(), Instant::now());
        assert!(h.map().is_empty());
    }

    #[test]
    fn passive_failures_count_even_when_the_check_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut h = HealthChecker::new(0);
        h.sync_targets(targets(addr), Instant::now());
        let mut syn_failures = 0u64;
        let mut down = Vec::new();
        let end = Instant::now() + Duration::from_millis(800);
        while Instant::now() < end {
            syn_failures += 3;
            down.extend(h.tick(Instant::now(), |_| (0, syn_failures)));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(down.len(), 1, "{down:?}");
        assert!(down[0].why.contains("refused or unanswered"), "{down:?}");
        drop(listener);
    }
}
