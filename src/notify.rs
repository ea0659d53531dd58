//! systemd integration: the service notification protocol (`sd_notify(3)`) and the
//! watchdog.
//!
//! Under `Type=notify`, systemd passes the path of a datagram socket in
//! `NOTIFY_SOCKET` (a leading `@` names an abstract socket) and ferrovs sends it
//! newline-separated `KEY=VALUE` assignments: `READY=1` once it forwards,
//! `RELOADING=1` and `READY=1` again around a reload, `STOPPING=1` at a stop. With
//! `WatchdogSec=`, systemd also passes `WATCHDOG_USEC` (and `WATCHDOG_PID`) and
//! expects `WATCHDOG=1` at least that often; ferrovs sends it at half the interval,
//! from the management loop, and only while every worker loop is making progress,
//! so that a stuck worker gets ferrovs restarted (`Restart=`).
//!
//! Without `NOTIFY_SOCKET` every call here does nothing. Sending never blocks the
//! caller: the socket is non-blocking, and a lost notification is logged at debug
//! level only (systemd's own socket does not drop datagrams in practice).
//!
//! The process-wide notifier is set once by [`init_from_env`], before any thread
//! starts; [`ready`], [`reloading`], [`stopping`] and [`Watchdog`] use it.

use ferrovs_core::stats::WorkerStats;
use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The environment variable of the test-only fault switch: a number of seconds
/// after which worker 0 stops polling (it only waits for the stop flag), so that a
/// test can show that the watchdog stops being fed. Read once, when worker 0
/// starts. Never set it in production.
pub const TEST_STALL_ENV: &str = "FERROVS_TEST_STALL_WORKER0_AFTER_S";

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// A notifier for the socket named by a `NOTIFY_SOCKET` value: an absolute
    /// path, or `@name` for an abstract socket.
    pub fn connect(value: &OsStr) -> io::Result<Notifier> {
        let bytes = value.as_bytes();
        let addr = match bytes.first() {
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
            Some(b'/') => SocketAddr::from_pathname(value)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NOTIFY_SOCKET is neither an absolute path nor @abstract",
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends one notification: newline-separated `KEY=VALUE` assignments.
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(|_| ())
    }
}

/// What [`init_from_env`] found.
#[derive(Debug, Default)]
struct Global {
    notifier: Option<Notifier>,
    /// The watchdog timeout systemd expects pings within, if any.
    watchdog: Option<Duration>,
    /// The `STATUS=` sent with `READY=1`, again after each reload.
    status: Mutex<String>,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` and removes them from
/// the environment (as `sd_notify` does with `unset_environment`), so that the
/// programs ferrovs runs (`ip`, `sysctl`) do not inherit them. Call once, from
/// `main`, before any other thread starts; later calls do nothing.
pub fn init_from_env() {
    let notifier = std::env::var_os("NOTIFY_SOCKET").and_then(|v| match Notifier::connect(&v) {
        Ok(n) => Some(n),
        Err(e) => {
            log::warn!(
                "NOTIFY_SOCKET={}: {e}; not notifying systemd",
                v.to_string_lossy()
            );
            None
        }
    });
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    let watchdog = notifier
        .as_ref()
        .and_then(|_| watchdog_timeout(usec.as_deref(), pid.as_deref(), std::process::id()));
    if usec.is_some() && watchdog.is_none() && notifier.is_some() {
        log::warn!(
            "WATCHDOG_USEC={} WATCHDOG_PID={}: not for this process or not a positive \
             number of microseconds; the watchdog is not fed",
            usec.as_deref().unwrap_or(""),
            pid.as_deref().unwrap_or("")
        );
    }
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(var);
    }
    if let Some(t) = watchdog {
        log::info!(
            "systemd watchdog: {} ms, fed every {} ms while every worker makes progress",
            t.as_millis(),
            ping_period(t).as_millis()
        );
    }
    let _ = GLOBAL.set(Global {
        notifier,
        watchdog,
        status: Mutex::new(String::new()),
    });
}

/// The watchdog timeout from `WATCHDOG_USEC` and `WATCHDOG_PID`, as
/// `sd_watchdog_enabled(3)` reads them: the timeout applies when the microseconds
/// are a positive integer and `WATCHDOG_PID`, if set, names this process.
pub fn watchdog_timeout(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid {
        Some(p) if p.trim().parse::<u32>().ok() != Some(own_pid) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

/// How often the watchdog is fed: half its timeout, as `sd_watchdog_enabled(3)`
/// recommends.
pub fn ping_period(timeout: Duration) -> Duration {
    timeout / 2
}

fn send(message: &str) {
    if let Some(n) = GLOBAL.get().and_then(|g| g.notifier.as_ref()) {
        if let Err(e) = n.send(message) {
            log::debug!("systemd notification {message:?} not sent: {e}");
        }
    }
}

/// The message that says ferrovs is ready, with a status line for `systemctl status`.
pub fn ready_message(status: &str) -> String {
    format!("READY=1\nSTATUS={}", status.replace('\n', " "))
}

/// The message that starts a reload. `monotonic_usec` is `CLOCK_MONOTONIC` in
/// microseconds, which systemd asks for with `Type=notify-reload`.
pub fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=reloading the configuration")
}

/// The message that says ferrovs is stopping.
pub const STOPPING_MESSAGE: &str = "STOPPING=1\nSTATUS=stopping";
/// The watchdog keep-alive.
pub const WATCHDOG_MESSAGE: &str = "WATCHDOG=1";

/// Tells systemd that ferrovs forwards: `READY=1`, and `status` for `systemctl
/// status` (also sent again after every reload).
pub fn ready(status: &str) {
    if let Some(g) = GLOBAL.get() {
        *g.status.lock().unwrap_or_else(|e| e.into_inner()) = status.to_string();
    }
    send(&ready_message(status));
}

/// A reload in progress: `RELOADING=1` now, `READY=1` when dropped, whether the
/// reload was applied or refused (ferrovs runs either way).
#[must_use = "READY=1 is sent when the guard is dropped"]
pub struct Reloading(());

/// Tells systemd that a reload starts; the returned guard tells it that ferrovs is
/// ready again when dropped.
pub fn reloading() -> Reloading {
    let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0);
    send(&reloading_message(usec));
    Reloading(())
}

impl Drop for Reloading {
    fn drop(&mut self) {
        let status = GLOBAL
            .get()
            .map(|g| g.status.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        send(&ready_message(&status));
    }
}

/// Tells systemd that ferrovs is stopping.
pub fn stopping() {
    send(STOPPING_MESSAGE);
}

/// Feeds the systemd watchdog from the management loop while every worker makes
/// progress: each worker's loop adds to its `total_cycles` counter on every
/// iteration, idle or not, so a counter that did not move over a whole ping
/// period means a worker that is stuck.
#[derive(Debug)]
pub struct Watchdog {
    period: Option<Duration>,
    last_check: Instant,
    last_progress: Vec<u64>,
    stalled: bool,
}

impl Watchdog {
    /// The watchdog systemd asked for (`WATCHDOG_USEC` at [`init_from_env`]), or
    /// one that does nothing.
    pub fn from_env() -> Watchdog {
        Watchdog::new(GLOBAL.get().and_then(|g| g.watchdog))
    }

    /// A watchdog with `timeout` (None: does nothing).
    pub fn new(timeout: Option<Duration>) -> Watchdog {
        Watchdog {
            period: timeout.map(ping_period),
            last_check: Instant::now(),
            last_progress: Vec::new(),
            stalled: false,
        }
    }

    /// Called on every management loop iteration: once a ping period has passed,
    /// sends `WATCHDOG=1` if every worker's loop ran since the previous check.
    pub fn feed(&mut self, workers: &[Arc<WorkerStats>]) {
        if self.period.is_none() {
            return;
        }
        let now = Instant::now();
        if self.tick(now, workers.iter().map(|w| w.total_cycles.get())) {
            send(WATCHDOG_MESSAGE);
        }
    }

    /// The decision of [`Watchdog::feed`] at `now`, given each worker's progress
    /// counter: true when a ping is due and every counter moved since the previous
    /// check (at the first check, the workers only have to exist). Logs when a
    /// worker stops making progress and when it is back.
    pub fn tick(&mut self, now: Instant, progress: impl IntoIterator<Item = u64>) -> bool {
        let Some(period) = self.period else {
            return false;
        };
        if now.duration_since(self.last_check) < period {
            return false;
        }
        self.last_check = now;
        let progress: Vec<u64> = progress.into_iter().collect();
        let first = self.last_progress.len() != progress.len();
        let stuck: Vec<usize> = if first {
            Vec::new()
        } else {
            progress
                .iter()
                .zip(&self.last_progress)
                .enumerate()
                .filter(|(_, (now, before))| now == before)
                .map(|(w, _)| w)
                .collect()
        };
        self.last_progress = progress;
        if stuck.is_empty() {
            if self.stalled {
                log::warn!("every worker makes progress again: feeding the systemd watchdog");
                self.stalled = false;
            }
            return true;
        }
        if !self.stalled {
            log::error!(
                "worker(s) {stuck:?} made no progress in {} ms: not feeding the systemd \
                 watchdog (systemd restarts ferrovs when it expires)",
                period.as_millis()
            );
            self.stalled = true;
        }
        false
    }
}

/// The test-only fault switch for worker `worker`: the worker-clock millisecond
/// after which it stalls, from [`TEST_STALL_ENV`] (worker 0 only).
pub fn test_stall_after_ms(worker: usize) -> Option<u64> {
    if worker != 0 {
        return None;
    }
    let secs: u64 = std::env::var(TEST_STALL_ENV).ok()?.trim().parse().ok()?;
    Some(secs.saturating_mul(1000))
}

/// The stall of the test-only fault switch: the calling worker stops polling its
/// queues and moving its counters, and only waits for `stop`, so that ferrovs still
/// stops cleanly.
pub fn stall_for_test(stop: &AtomicBool) {
    log::warn!("{TEST_STALL_ENV}: worker 0 stalls now (test-only fault switch)");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn watchdog_usec_is_read_like_sd_watchdog_enabled() {
        let s = |us| Some(Duration::from_micros(us));
        assert_eq!(watchdog_timeout(Some("30000000"), None, 7), s(30_000_000));
        assert_eq!(watchdog_timeout(Some("500000"), Some("7"), 7), s(500_000));
        assert_eq!(watchdog_timeout(Some("500000"), Some("8"), 7), None);
        assert_eq!(watchdog_timeout(Some("500000"), Some("x"), 7), None);
        assert_eq!(watchdog_timeout(Some("0"), None, 7), None);
        assert_eq!(watchdog_timeout(Some("-1"), None, 7), None);
        assert_eq!(watchdog_timeout(Some("10s"), None, 7), None);
        assert_eq!(watchdog_timeout(None, Some("7"), 7), None);
        assert_eq!(ping_period(Duration::from_secs(10)), Duration::from_secs(5));
    }

    #[test]
    fn messages() {
        assert_eq!(ready_message("a\nb"), "READY=1\nSTATUS=a b");
        assert_eq!(
            reloading_message(42),
            "RELOADING=1\nMONOTONIC_USEC=42\nSTATUS=reloading the configuration"
        );
        assert!(STOPPING_MESSAGE.starts_with("STOPPING=1\n"));
        assert_eq!(WATCHDOG_MESSAGE, "WATCHDOG=1");
    }

    #[test]
    fn protocol_sequence_over_a_filesystem_socket() {
        let dir = crate::tempdir::TempDir::new("notify");
        let path = dir.join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.as_os_str()).unwrap();
        for m in [
            ready_message("forwarding"),
            reloading_message(1),
            ready_message("forwarding"),
            WATCHDOG_MESSAGE.to_string(),
            STOPPING_MESSAGE.to_string(),
        ] {
            n.send(&m).unwrap();
        }
        let got: Vec<String> = (0..5).map(|_| recv(&server)).collect();
        let first: Vec<&str> = got.iter().map(|m| m.lines().next().unwrap()).collect();
        assert_eq!(
            first,
            [
                "READY=1",
                "RELOADING=1",
                "READY=1",
                "WATCHDOG=1",
                "STOPPING=1"
            ]
        );
        assert!(got[1].contains("\nMONOTONIC_USEC=1\n"));
        assert!(got[0].ends_with("\nSTATUS=forwarding"));
    }

    #[test]
    fn abstract_socket_with_at_sign() {
        let name = format!("ferrovs-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::connect(OsStr::new(&format!("@{name}"))).unwrap();
        n.send(WATCHDOG_MESSAGE).unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1");
    }

    #[test]
    fn bad_socket_values() {
        assert!(Notifier::connect(OsStr::new("relative/path")).is_err());
        assert!(Notifier::connect(OsStr::new("")).is_err());
        // A socket that is not there: sending fails, connecting does not.
        let n = Notifier::connect(OsStr::new("/nonexistent/ferrovs-notify")).unwrap();
        assert!(n.send(WATCHDOG_MESSAGE).is_err());
    }

    #[test]
    fn watchdog_pings_only_while_every_worker_moves() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = Watchdog::new(Some(Duration::from_millis(1000)));
        w.last_check = t0;
        // Not yet half the timeout.
        assert!(!w.tick(ms(100), [1, 1]));
        // First check: the workers exist.
        assert!(w.tick(ms(500), [1, 1]));
        assert!(!w.tick(ms(600), [5, 5]));
        assert!(w.tick(ms(1000), [5, 5]));
        // Worker 1 is stuck: no ping, however often asked.
        assert!(!w.tick(ms(1500), [9, 5]));
        assert!(w.stalled);
        assert!(!w.tick(ms(2000), [12, 5]));
        // It moves again.
        assert!(w.tick(ms(2500), [15, 6]));
        assert!(!w.stalled);
        // A disabled watchdog never pings.
        let mut off = Watchdog::new(None);
        assert!(!off.tick(ms(10_000), [1]));
    }
}
