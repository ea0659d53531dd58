//! The control socket: a Unix socket (mode 0600, never on the network) that takes
//! one JSON request per connection and answers with one JSON response.
//!
//! A listener thread reads requests and hands them to the management loop, which
//! owns all state and answers through a reply channel, so requests are applied one
//! at a time and never race a reload or a health change.

use crate::ctl::proto::{Request, Response};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest request accepted (a service with many real servers fits easily).
const MAX_REQUEST: usize = 1 << 20;
/// How long a client may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The deadline of a request whose client did not say its own (an older `ctl`).
const DEFAULT_DEADLINE: Duration = Duration::from_secs(8);
/// The longest deadline a client may ask for.
const MAX_DEADLINE: Duration = Duration::from_secs(60);
/// How long past its deadline an answer is still waited for (the loop may have
/// started applying the request just before the deadline).
const ANSWER_GRACE: Duration = Duration::from_secs(1);
/// Control connections served at once; a new one beyond it closes the oldest
/// still sending its request (a slow or half-open client).
const MAX_CONNECTIONS: usize = 16;

/// A request waiting for the management loop, with where to send the answer.
pub struct Pending {
    /// The request as the client sent it.
    pub request: Request,
    /// Where the management loop sends the answer; the listener thread writes it back
    /// to the client.
    pub reply: Sender<Response>,
    /// The request is applied only before this instant: after it, its client has
    /// stopped waiting, so it would never learn the outcome.
    pub deadline: Instant,
}

fn refuse(message: impl Into<String>) -> Response {
    Response::Error {
        errors: vec![message.into()],
    }
}

/// The answer to a request the management loop took too late to apply.
pub fn expired() -> Response {
    refuse("the request waited past its deadline and was not applied")
}

/// The listening control socket.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `path` (mode 0600; the directory is created 0755 when missing) and
    /// passes requests to `requests`, from a thread pinned to `cpu`. Refuses to take over the socket of a running
    /// instance; removes a stale one.
    pub fn start(
        path: &Path,
        requests: Sender<Pending>,
        cpu: u32,
    ) -> Result<ControlServer, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            }
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(format!(
                    "{}: exists and is not a socket; refusing to replace it",
                    path.display()
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{}: another ferrovs answers on this control socket",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        // Bind with a umask that keeps the socket private from the first moment.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ferrovs-ctl".into())
            .spawn(move || {
                super::pin_to_management_cpu(cpu);
                serve(listener, requests, &st)
            })
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One control connection: reading its request line, waiting for the management
/// loop's answer, or writing it.
struct Conn {
    stream: UnixStream,
    accepted: Instant,
    state: State,
}

enum State {
    Reading(Vec<u8>),
    Waiting(Receiver<Response>, Instant),
    Writing(Vec<u8>, usize),
}

/// Serves every connection from this one thread, none blocking another: a slow or
/// half-open client holds a slot for at most `READ_TIMEOUT` and is the first to go
/// when the slots are full; the loop's answers are waited for without blocking.
fn serve(listener: UnixListener, requests: Sender<Pending>, stop: &AtomicBool) {
    let mut conns: Vec<Conn> = Vec::with_capacity(MAX_CONNECTIONS);
    let mut last_error: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    busy = true;
                    if conns.len() >= MAX_CONNECTIONS {
                        let oldest = conns
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| matches!(c.state, State::Reading(_)))
                            .min_by_key(|(_, c)| c.accepted)
                            .map(|(i, _)| i);
                        match oldest {
                            Some(i) => drop(conns.swap_remove(i)),
                            // Every slot waits for the loop: refuse the newcomer.
                            None => {
                                let _ = reply_now(stream, refuse("too many control connections"));
                                continue;
                            }
                        }
                    }
                    if let Some(c) = accept(stream) {
                        conns.push(c);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // Out of descriptors, say: keep listening, log now and then.
                    if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        log::warn!("control socket: accept: {e}");
                        last_error = Some(Instant::now());
                    }
                    // The connection stays queued and the listener readable:
                    // pause rather than spin until descriptors come back.
                    std::thread::sleep(Duration::from_millis(20));
                    break;
                }
            }
        }
        let now = Instant::now();
        conns.retain_mut(|c| {
            let (keep, moved) = step(c, &requests, now);
            busy |= moved;
            keep
        });
        if !busy {
            wait_for_io(&listener, &conns);
        }
    }
}

/// Sleeps until the listener or a connection can move, for at most 100 ms, or
/// 2 ms while an answer from the management loop is awaited (a channel poll(2)
/// cannot wait on).
fn wait_for_io(listener: &UnixListener, conns: &[Conn]) {
    let mut fds = Vec::with_capacity(conns.len() + 1);
    fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
    let mut waiting = false;
    for c in conns {
        let want = match c.state {
            State::Reading(_) => PollFlags::POLLIN,
            State::Writing(..) => PollFlags::POLLOUT,
            State::Waiting(..) => {
                waiting = true;
                continue;
            }
        };
        fds.push(PollFd::new(c.stream.as_fd(), want));
    }
    let timeout = if waiting { 2u16 } else { 100 };
    let _ = poll(&mut fds, PollTimeout::from(timeout));
}

/// A new connection, or None (refused with an answer) when its peer may not
/// control ferrovs.
fn accept(stream: UnixStream) -> Option<Conn> {
    // The socket file is 0600, so only its owner can connect; check the peer anyway.
    let refusal = match getsockopt(&stream, PeerCredentials) {
        Ok(cred) => {
            let me = nix::unistd::geteuid().as_raw();
            (cred.uid() != 0 && cred.uid() != me)
                .then(|| refuse(format!("user {} may not control ferrovs", cred.uid())))
        }
        Err(e) => Some(refuse(format!("cannot identify the peer: {e}"))),
    };
    if let Some(r) = refusal {
        let _ = reply_now(stream, r);
        return None;
    }
    stream.set_nonblocking(true).ok()?;
    Some(Conn {
        stream,
        accepted: Instant::now(),
        state: State::Reading(Vec::new()),
    })
}

/// Writes an answer to a connection that was never served (best effort).
fn reply_now(mut stream: UnixStream, response: Response) -> std::io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_millis(100)))?;
    stream.write_all(&encode(&response))
}

fn encode(response: &Response) -> Vec<u8> {
    let mut line = serde_json::to_vec(response).unwrap_or_else(|_| {
        br#"{"status":"error","errors":["cannot encode the answer"]}"#.to_vec()
    });
    line.push(b'\n');
    line
}

/// Moves one connection on as far as it can go without blocking: (keep it, it
/// moved).
fn step(c: &mut Conn, requests: &Sender<Pending>, now: Instant) -> (bool, bool) {
    match &mut c.state {
        State::Reading(buf) => {
            let mut chunk = [0u8; 16 * 1024];
            let mut moved = false;
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => return (false, true),
                    Ok(n) => {
                        moved = true;
                        buf.extend_from_slice(&chunk[..n]);
                        if buf.contains(&b'\n') || buf.len() > MAX_REQUEST {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return (false, true),
                }
            }
            let end = buf.iter().position(|&b| b == b'\n');
            if end.unwrap_or(buf.len()) > MAX_REQUEST {
                let r = refuse(format!("request longer than {MAX_REQUEST} bytes"));
                c.state = State::Writing(encode(&r), 0);
                return (true, true);
            }
            let Some(end) = end else {
                if now.duration_since(c.accepted) >= READ_TIMEOUT {
                    let r = refuse("no complete request in time");
                    c.state = State::Writing(encode(&r), 0);
                    return (true, true);
                }
                return (true, moved);
            };
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            c.state = match parse_request(&line, c.accepted) {
                Err(why) => State::Writing(encode(&refuse(why)), 0),
                Ok((request, deadline)) => {
                    let (reply, rx) = bounded(1);
                    match requests.try_send(Pending {
                        request,
                        reply,
                        deadline,
                    }) {
                        Ok(()) => State::Waiting(rx, deadline),
                        Err(_) => State::Writing(
                            encode(&refuse("the management core is busy; nothing was applied")),
                            0,
                        ),
                    }
                }
            };
            (true, true)
        }
        State::Waiting(rx, deadline) => match rx.try_recv() {
            Ok(r) => {
                c.state = State::Writing(encode(&r), 0);
                (true, true)
            }
            Err(TryRecvError::Empty) if now < *deadline + ANSWER_GRACE => (true, false),
            // The loop never took it (it checks the deadline before applying).
            Err(_) => {
                c.state = State::Writing(encode(&expired()), 0);
                (true, true)
            }
        },
        State::Writing(bytes, at) => loop {
            match c.stream.write(&bytes[*at..]) {
                Ok(0) => return (false, true),
                Ok(n) => {
                    *at += n;
                    if *at == bytes.len() {
                        return (false, true);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // A client that stops reading is dropped with the read timeout.
                    let late = now.duration_since(c.accepted) >= MAX_DEADLINE + READ_TIMEOUT;
                    return (!late, false);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return (false, true),
            }
        },
    }
}

/// The request of a line, and the deadline to apply it by: the client's
/// `{"timeout_ms": N, "request": {...}}` envelope gives it (less a margin to
/// deliver the answer), a bare request gets [`DEFAULT_DEADLINE`]. The error is the
/// message the client is refused with.
pub fn parse_request(line: &str, accepted: Instant) -> Result<(Request, Instant), String> {
    let value: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("malformed request: {e}"))?;
    let (request, wait) = match (value.get("request"), value.get("timeout_ms")) {
        (Some(request), Some(t)) => {
            let ms = t
                .as_u64()
                .ok_or("malformed request: timeout_ms is not a number")?;
            let wait = Duration::from_millis(ms)
                .saturating_sub(ANSWER_GRACE / 2)
                .clamp(Duration::from_millis(50), MAX_DEADLINE);
            (request.clone(), wait)
        }
        _ => (value, DEFAULT_DEADLINE),
    };
    let request: Request =
        serde_json::from_value(request).map_err(|e| format!("malformed request: {e}"))?;
    Ok((request, accepted + wait))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn private_socket_answers_through_the_loop() {
        let dir = TempDir::new("control");
        let path = dir.join("sub/ctl.sock");
        let (tx, rx) = bounded::<Pending>(4);
        let server = ControlServer::start(&path, tx, 0).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // a second instance must not steal the socket
        let (tx2, _rx2) = bounded::<Pending>(1);
        assert!(ControlServer::start(&path, tx2, 0).is_err());
        let loop_thread = std::thread::spawn(move || {
            let p = rx.recv().unwrap();
            assert_eq!(p.request, Request::Reload {});
            p.reply
                .send(Response::Done {
                    message: "ok".into(),
                })
                .unwrap();
        });
        let ask = |text: &str| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(text.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        assert_eq!(
            ask("{\"cmd\":\"reload\"}\n"),
            "{\"status\":\"done\",\"message\":\"ok\"}\n"
        );
        loop_thread.join().unwrap();
        assert!(ask("not json\n").contains("malformed request"));
        drop(server);
        assert!(!path.exists());
    }

    /// A path that exists and is not a socket is never deleted to make room.
    #[test]
    fn refuses_to_replace_a_file_that_is_not_a_socket() {
        let dir = TempDir::new("control-file");
        let path = dir.join("precious");
        std::fs::write(&path, "data").unwrap();
        let (tx, _rx) = bounded::<Pending>(1);
        let err = ControlServer::start(&path, tx, 0).err().unwrap();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    /// Half-open and slow clients neither delay others nor hold a slot for long;
    /// a request is answered "not applied" once its client's deadline has passed.
    #[test]
    fn slow_clients_do_not_block_and_late_requests_are_not_applied() {
        let dir = TempDir::new("control-slow");
        let path = dir.join("ctl.sock");
        let (tx, rx) = bounded::<Pending>(64);
        let _server = ControlServer::start(&path, tx, 0).unwrap();
        // The "management loop": answers at once, except for a request it takes
        // 400 ms to get to, as a busy loop would; it checks the deadline as the real
        // loop does.
        std::thread::spawn(move || {
            while let Ok(p) = rx.recv() {
                if matches!(p.request, Request::Reload {}) {
                    std::thread::sleep(Duration::from_millis(400));
                }
                let answer = if Instant::now() >= p.deadline {
                    expired()
                } else {
                    Response::Done {
                        message: "applied".into(),
                    }
                };
                let _ = p.reply.send(answer);
            }
        });
        let ask = |text: &str| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(text.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        // More half-open clients than slots: none of them stops a real request.
        let half_open: Vec<UnixStream> = (0..MAX_CONNECTIONS + 3)
            .map(|_| {
                let mut s = UnixStream::connect(&path).unwrap();
                s.write_all(b"{\"cmd\":").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        assert!(ask("{\"cmd\":\"list\"}\n").contains("applied"));
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "{:?}",
            t0.elapsed()
        );
        drop(half_open);
        // A client that waits 100 ms: the request is not applied 400 ms later.
        let late = ask("{\"timeout_ms\":100,\"request\":{\"cmd\":\"reload\"}}\n");
        assert!(late.contains("not applied"), "{late}");
        // One that waits long enough gets its answer.
        let ok = ask("{\"timeout_ms\":5000,\"request\":{\"cmd\":\"reload\"}}\n");
        assert!(
            ok.contains("applied") && !ok.contains("not applied"),
            "{ok}"
        );
        // An endless request line is cut off.
        let mut big = vec![b'x'; MAX_REQUEST + 10];
        big.push(b'\n');
        let mut s = UnixStream::connect(&path).unwrap();
        let _ = s.write_all(&big);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.contains("longer than"), "{out}");
    }
}
