//! Health checks of real servers, keepalived style: every `interval` a TCP connect
//! or an HTTP GET (within `timeout`); `fall` failures in a row take a server out of
//! scheduling, `rise` successes in a row bring it back. Checks are kernel sockets
//! from the management core, so they leave through the exception path from the
//! balancer's own address on the servers' network.
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
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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
                        let result = run_check(job.target, &job.check);
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
    let deadline = Instant::now() + check.timeout;
    let mut stream = TcpStream::connect_timeout(&target, check.timeout).map_err(CheckError::of)?;
    if check.kind != CheckKind::Http {
        return Ok(());
    }
    let left = |d: Instant| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(left(deadline)))
        .map_err(CheckError::of)?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: ferrovs-health-check\r\nConnection: close\r\n\r\n",
        check.path,
        endpoint(target.ip(), target.port())
    );
    stream
        .write_all(request.as_bytes())
        .map_err(CheckError::of)?;
    // Read until the status line is complete (or the deadline passes).
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        stream
            .set_read_timeout(Some(left(deadline)))
            .map_err(CheckError::of)?;
        let n = stream.read(&mut buf).map_err(CheckError::of)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            CheckError::Server(format!(
                "no HTTP status line in {:?}",
                line.lines().next().unwrap_or("")
            ))
        })?;
    if status == check.expect_status {
        Ok(())
    } else {
        Err(CheckError::Server(format!(
            "HTTP status {status}, expected {}",
            check.expect_status
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
