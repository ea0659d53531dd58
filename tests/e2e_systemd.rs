//! End to end: the systemd notification protocol of the real ferrovs binary.
//!
//! The test machine has no systemd as PID 1, so the test plays its part: it binds
//! the notification socket, starts ferrovs (in a namespace, on a `net_af_packet`
//! port) with `NOTIFY_SOCKET` and `WATCHDOG_USEC` set as systemd would, and reads
//! what ferrovs sends: `READY=1` once it forwards, `RELOADING=1` then `READY=1`
//! around a SIGHUP, a `ctl reload` and a refused reload, `WATCHDOG=1` at half the
//! interval, no more `WATCHDOG=1` once the test-only fault switch stalls worker 0
//! (systemd would then kill and restart ferrovs), and `STOPPING=1` at SIGTERM.
//! ferrovs logs with `--log-format json` here, so its lines are checked too.

mod common;

use common::{config, wait_for, Lab, FERROVS};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `WATCHDOG_USEC`: pings are due every half of it.
const WATCHDOG: Duration = Duration::from_millis(1000);
/// Seconds after which the fault switch stalls worker 0: long enough for the
/// start and the reloads before it.
const STALL_AFTER_S: u64 = 10;

/// Every notification received, with when.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(Instant, String)>>>);

impl Received {
    fn listen(sock: UnixDatagram) -> Received {
        let r = Received::default();
        let store = r.clone();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let m = String::from_utf8_lossy(&buf[..n]).to_string();
                        store.0.lock().unwrap().push((Instant::now(), m));
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
        r
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The first lines (`READY=1`, ...) of the messages from index `from` on.
    fn kinds_from(&self, from: usize) -> Vec<String> {
        self.0.lock().unwrap()[from..]
            .iter()
            .map(|(_, m)| m.lines().next().unwrap_or("").to_string())
            .collect()
    }

    fn watchdogs_from(&self, from: usize) -> Vec<Instant> {
        self.0.lock().unwrap()[from..]
            .iter()
            .filter(|(_, m)| m == "WATCHDOG=1")
            .map(|(t, _)| *t)
            .collect()
    }

    /// Waits until the messages from index `from` on, other than `WATCHDOG=1`,
    /// start with `want`; returns the index after them.
    fn expect(&self, from: usize, want: &[&str], what: &str, log: &dyn Fn() -> String) -> usize {
        let got = wait_for(Duration::from_secs(20), || {
            let kinds: Vec<(usize, String)> = self
                .kinds_from(from)
                .into_iter()
                .enumerate()
                .filter(|(_, k)| k != "WATCHDOG=1")
                .collect();
            (kinds.len() >= want.len()).then(|| {
                let seen: Vec<&str> = kinds[..want.len()]
                    .iter()
                    .map(|(_, k)| k.as_str())
                    .collect();
                assert_eq!(seen, want, "{what}: unexpected notifications\n{}", log());
                from + kinds[want.len() - 1].0 + 1
            })
        });
        got.unwrap_or_else(|| {
            panic!(
                "{what}: expected {want:?}, got {:?}\n{}",
                self.kinds_from(from),
                log()
            )
        })
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
#[ignore = "needs root, DPDK and network namespaces"]
fn notify_ready_reload_watchdog_stall_stop() {
    let mut lab = Lab::new("sd");
    let lb = lab.ns("lb");
    let peer = lab.ns("peer");
    lab.link(&lb, "wan0", &[], &peer, "eth0", &["198.18.0.10/24"]);
    let ctl_sock = lab.dir.join("ctl.sock");
    let text = config(&[("wan", "wan0", &["198.18.0.1/24"])], "").replace(
        "file_prefix: ferrovs-e2e",
        &format!("file_prefix: {}", lab.tag),
    ) + &format!(
        "management:\n  control_socket: \"{}\"\n",
        ctl_sock.display()
    );
    let cfg = lab.write("ferrovs.yaml", &text);
    let notify_path = lab.dir.join("notify.sock");
    let received = Received::listen(UnixDatagram::bind(&notify_path).unwrap());

    let started = Instant::now();
    let pid = lab.spawn(
        "ferrovs",
        &lb,
        &[
            "env",
            &format!("NOTIFY_SOCKET={}", notify_path.display()),
            &format!("WATCHDOG_USEC={}", WATCHDOG.as_micros()),
            &format!("FERROVS_TEST_STALL_WORKER0_AFTER_S={STALL_AFTER_S}"),
            "RUST_LOG=info",
            FERROVS,
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    );
    let log_path = lab.dir.join("ferrovs.log");
    let log = move || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Ready: READY=1 with a status, once the runtime logged "ready in".
    let mut at = received.expect(0, &["READY=1"], "start", &log);
    let ready = received.0.lock().unwrap()[at - 1].1.clone();
    assert!(
        ready.contains("\nSTATUS=forwarding: 1 port(s), 1 worker(s)"),
        "{ready:?}"
    );
    assert!(
        log().contains("\"ready in "),
        "READY=1 before ready:\n{}",
        log()
    );
    eprintln!("READY=1 after {} ms", started.elapsed().as_millis());

    // The watchdog is fed at half its interval.
    std::thread::sleep(2 * WATCHDOG);
    let pings = received.watchdogs_from(at);
    assert!(
        (3..=6).contains(&pings.len()),
        "{} WATCHDOG=1 in {} ms\n{}",
        pings.len(),
        (2 * WATCHDOG).as_millis(),
        log()
    );
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= WATCHDOG / 2 - Duration::from_millis(50) && gap < WATCHDOG,
            "pings {} ms apart",
            gap.as_millis()
        );
    }

    // SIGHUP: RELOADING=1, then READY=1.
    signal(pid, "-HUP");
    at = received.expect(at, &["RELOADING=1", "READY=1"], "SIGHUP", &log);
    // ctl reload: the same.
    let out = lab.exec_ok(
        &lb,
        &[
            FERROVS,
            "ctl",
            "--socket",
            ctl_sock.to_str().unwrap(),
            "reload",
        ],
    );
    assert!(out.status.success());
    at = received.expect(at, &["RELOADING=1", "READY=1"], "ctl reload", &log);
    // A refused reload: ferrovs runs on, so READY=1 again.
    lab.write("ferrovs.yaml", "eal: [\n");
    signal(pid, "-HUP");
    at = received.expect(at, &["RELOADING=1", "READY=1"], "refused reload", &log);
    assert!(log().contains("reload refused"), "{}", log());
    lab.write("ferrovs.yaml", &text);
    let last_ready = received.0.lock().unwrap()[at - 1].1.clone();
    assert_eq!(last_ready, ready, "the status after a reload");
    assert!(
        !log().contains("stalls now"),
        "the fault switch fired before the reload checks were done: raise STALL_AFTER_S"
    );
    eprintln!("reloads checked after {} ms", started.elapsed().as_millis());

    // The fault switch stalls worker 0: the pings stop while ferrovs lives on.
    let stalled = wait_for(Duration::from_secs(STALL_AFTER_S + 20), || {
        log().contains("worker 0 stalls now").then(Instant::now)
    })
    .unwrap_or_else(|| panic!("worker 0 did not stall:\n{}", log()));
    assert!(
        received.watchdogs_from(at).len() >= 2,
        "no pings before the stall"
    );
    // A ping already decided before the stall may still arrive within a period.
    std::thread::sleep(WATCHDOG);
    let before = received.len();
    std::thread::sleep(3 * WATCHDOG);
    let late = received.watchdogs_from(before);
    assert!(
        late.is_empty(),
        "{} WATCHDOG=1 after worker 0 stalled\n{}",
        late.len(),
        log()
    );
    assert!(alive(pid), "ferrovs died when worker 0 stalled:\n{}", log());
    assert!(
        log().contains("made no progress"),
        "no log of the stuck worker:\n{}",
        log()
    );
    // The management core still answers: only the worker is stuck.
    let out = lab.exec(
        &lb,
        &[
            FERROVS,
            "ctl",
            "--socket",
            ctl_sock.to_str().unwrap(),
            "list",
        ],
    );
    assert!(out.status.success(), "ctl list during the stall");
    eprintln!(
        "no WATCHDOG=1 for {} ms after the stall",
        stalled.elapsed().as_millis()
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let before = received.len();
    signal(pid, "-TERM");
    received.expect(before, &["STOPPING=1"], "SIGTERM", &log);
    let gone = wait_for(Duration::from_secs(20), || (!alive(pid)).then_some(()));
    assert!(
        gone.is_some(),
        "ferrovs did not exit after SIGTERM:\n{}",
        log()
    );
    lab.kill("ferrovs");
    let text = log();
    assert!(text.contains("stopped cleanly"), "{text}");

    // What systemd would have read, for the record (--nocapture).
    for (t, m) in received.0.lock().unwrap().iter() {
        eprintln!(
            "{:>6} ms  {}",
            t.duration_since(started).as_millis(),
            m.replace('\n', " ")
        );
    }

    // --log-format json: every line of ferrovs's own is one JSON object.
    let ours: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(ours.len() > 5, "{text}");
    for v in &ours {
        for key in ["time", "level", "target", "message"] {
            assert!(v[key].is_string(), "no {key} in {v}");
        }
    }
    assert!(ours
        .iter()
        .any(|v| v["message"].as_str().unwrap().starts_with("ready in ")));
    assert!(ours
        .iter()
        .any(|v| v["level"] == "error" && v["target"] == "ferrovs::notify"));
}
