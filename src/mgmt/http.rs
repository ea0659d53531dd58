//! The read-only HTTP endpoint: `GET /metrics` and nothing that changes state.
//! Mutating operations live on the Unix control socket only.
//!
//! One thread serves every connection with non-blocking sockets and `poll(2)`, so
//! what a client can hold is bounded: at most [`MAX_CONNECTIONS`] connections (the
//! oldest one still sending its request gives way to a newcomer), a request head
//! of at most [`MAX_HEAD`] bytes that must be complete within [`HEAD_TIMEOUT`], no
//! request body, and an answer that must be taken within [`WRITE_TIMEOUT`]. An
//! accept error (out of descriptors, say) is logged and retried; it never stops
//! the listener. A thread per connection, as before, let 500 slow clients hold 500
//! threads; an async runtime would bound that too, but serving one small GET does
//! not need one.

use super::metrics::render;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use prometheus::Registry;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take its answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running metrics listener.
pub struct MetricsServer {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves `registry` on a thread of its own, pinned to `cpu`.
    pub fn start(addr: SocketAddr, registry: Registry, cpu: u32) -> Result<MetricsServer, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ferrovs-http".into())
            .spawn(move || {
                super::pin_to_management_cpu(cpu);
                serve(&listener, &registry, &st)
            })
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        Ok(MetricsServer {
            thread: Some(thread),
            stop,
            addr: bound,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum State {
    /// Reading the request head.
    Reading(Vec<u8>),
    /// Writing the answer from the offset.
    Writing(Vec<u8>, usize),
}

struct Conn {
    stream: TcpStream,
    accepted: Instant,
    state: State,
}

fn serve(listener: &TcpListener, registry: &Registry, stop: &AtomicBool) {
    let mut conns: Vec<Conn> = Vec::with_capacity(MAX_CONNECTIONS);
    let mut last_error: Option<Instant> = None;
    let mut accept_paused_until: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let accepting = accept_paused_until.is_none_or(|t| now >= t);
        // Wait for something to do; wake at least every 100 ms for the stop flag
        // and the deadlines.
        let ready: Vec<bool> = {
            let mut fds = Vec::with_capacity(conns.len() + 1);
            if accepting {
                fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
            }
            for c in &conns {
                let want = match c.state {
                    State::Reading(_) => PollFlags::POLLIN,
                    State::Writing(..) => PollFlags::POLLOUT,
                };
                fds.push(PollFd::new(c.stream.as_fd(), want));
            }
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(_) => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(_) => vec![false; fds.len()],
            }
        };
        let (listener_ready, conn_ready) = if accepting {
            (ready[0], &ready[1..])
        } else {
            (false, &ready[..])
        };
        let now = Instant::now();
        let mut kept = Vec::with_capacity(MAX_CONNECTIONS);
        for (c, &ready) in conns.drain(..).zip(conn_ready.iter()) {
            let mut c = c;
            if step(&mut c, ready, registry, now) {
                kept.push(c);
            }
        }
        conns = kept;
        if listener_ready {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if conns.len() >= MAX_CONNECTIONS && !make_room(&mut conns) {
                            // Every slot is taking an answer: the newcomer waits
                            // for a later try (closing it now frees its descriptor).
                            drop(stream);
                            continue;
                        }
                        if stream.set_nonblocking(true).is_ok() {
                            conns.push(Conn {
                                stream,
                                accepted: now,
                                state: State::Reading(Vec::new()),
                            });
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // Out of descriptors, say: the connection stays queued and
                        // the listener stays readable, so pause accepting briefly
                        // rather than spin, and keep serving.
                        if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            log::warn!("metrics endpoint: accept: {e}");
                            last_error = Some(now);
                        }
                        accept_paused_until = Some(now + Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }
}

/// Drops the oldest connection still sending its request; false when there is none.
fn make_room(conns: &mut Vec<Conn>) -> bool {
    let oldest = conns
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.state, State::Reading(_)))
        .min_by_key(|(_, c)| c.accepted)
        .map(|(i, _)| i);
    match oldest {
        Some(i) => {
            conns.swap_remove(i);
            true
        }
        None => false,
    }
}

/// Moves a connection on as far as it goes without blocking; false once it is done
/// with (answered, closed by the peer, or out of time).
fn step(c: &mut Conn, ready: bool, registry: &Registry, now: Instant) -> bool {
    if let State::Reading(buf) = &mut c.state {
        if ready {
            let mut chunk = [0u8; 2048];
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => return false,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        if head_end(buf).is_some() || buf.len() > MAX_HEAD {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
        }
        let answer = match head_end(buf) {
            Some(end) if end <= MAX_HEAD => answer(&buf[..end], registry),
            _ if buf.len() > MAX_HEAD => plain(
                "HTTP/1.1",
                "431 Request Header Fields Too Large",
                "request head too large\n",
                false,
            ),
            _ if now.duration_since(c.accepted) >= HEAD_TIMEOUT => plain(
                "HTTP/1.1",
                "408 Request Timeout",
                "request timeout\n",
                false,
            ),
            _ => return true,
        };
        c.state = State::Writing(answer, 0);
    }
    let State::Writing(bytes, at) = &mut c.state else {
        return true;
    };
    loop {
        match c.stream.write(&bytes[*at..]) {
            Ok(0) => return false,
            Ok(n) => {
                *at += n;
                if *at == bytes.len() {
                    // Done: say so and close (no keep-alive, so no idle connections).
                    let _ = c.stream.shutdown(std::net::Shutdown::Write);
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return now.duration_since(c.accepted) < HEAD_TIMEOUT + WRITE_TIMEOUT
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// The length of the request head up to and including its blank line.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// The whole answer to one request head.
fn answer(head: &[u8], registry: &Registry) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target, version) = (words.next(), words.next(), words.next());
    let (Some(method), Some(target), Some(version), None) = (method, target, version, words.next())
    else {
        return plain(
            "HTTP/1.1",
            "400 Bad Request",
            "malformed request line\n",
            false,
        );
    };
    let version = match version {
        "HTTP/1.0" => "HTTP/1.0",
        v if v.starts_with("HTTP/1.") => "HTTP/1.1",
        _ => {
            return plain(
                "HTTP/1.1",
                "505 HTTP Version Not Supported",
                "HTTP/1.x only\n",
                false,
            )
        }
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let mut out = plain(
            version,
            "405 Method Not Allowed",
            "read-only endpoint: only GET is served\n",
            false,
        );
        // Insert the Allow header before the blank line.
        let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 2;
        out.splice(at..at, b"Allow: GET, HEAD\r\n".iter().copied());
        return out;
    }
    match target.split('?').next().unwrap_or("") {
        "/metrics" => respond(
            version,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(registry).as_bytes(),
            head_only,
        ),
        "/" => plain(
            version,
            "200 OK",
            "ferrovs: metrics at /metrics\n",
            head_only,
        ),
        _ => plain(version, "404 Not Found", "not found\n", head_only),
    }
}

fn plain(version: &str, status: &str, body: &str, head_only: bool) -> Vec<u8> {
    respond(
        version,
        status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        head_only,
    )
}

fn respond(
    version: &str,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "{version} {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(raw);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn server() -> MetricsServer {
        let reg = Registry::new();
        let c = prometheus::IntCounter::new("ferrovs_test_total", "test").unwrap();
        c.inc_by(3);
        reg.register(Box::new(c)).unwrap();
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), reg, 0).unwrap()
    }

    #[test]
    fn serves_metrics_and_refuses_everything_else() {
        let srv = server();
        let addr = srv.local_addr();
        let ok = request(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
        assert!(ok.contains("ferrovs_test_total 3"));
        let ok11 = request(addr, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok11.starts_with("HTTP/1.1 200"), "{ok11}");
        let head = request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200") && !head.contains("ferrovs_test_total"));
        let post = request(addr, b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.0 405"), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
        let missing = request(addr, b"GET /reload HTTP/1.0\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
        let bad = request(addr, b"GARBAGE\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    }

    /// An endless header is cut off at the limit (not buffered), and slow or idle
    /// clients beyond the cap neither hold threads nor stop a scrape.
    #[test]
    fn bounded_under_abuse() {
        let srv = server();
        let addr = srv.local_addr();
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 4 * MAX_HEAD));
        let cut = request(addr, &huge);
        assert!(cut.starts_with("HTTP/1.1 431"), "{cut}");
        // Far more idle clients than slots.
        let idle: Vec<TcpStream> = (0..4 * MAX_CONNECTIONS)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(b"GET /met");
                s
            })
            .collect();
        let t0 = Instant::now();
        let ok = request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.contains("ferrovs_test_total 3"), "{ok}");
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        // No thread per connection: one per server (this module's tests run at
        // most three at once).
        let http_threads = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "ferrovs-http")
            .count();
        assert!(http_threads <= 3, "{http_threads} HTTP threads");
        drop(idle);
    }

    #[test]
    fn a_silent_client_is_timed_out() {
        let srv = server();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(HEAD_TIMEOUT + Duration::from_secs(3)))
            .unwrap();
        let t0 = Instant::now();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(t0.elapsed() >= HEAD_TIMEOUT - Duration::from_millis(200));
    }
}
