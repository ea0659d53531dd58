//! One exchange with a running ferrovs over its control socket: connect, send the
//! request as one JSON line, read one JSON line back, all within one deadline.

use super::proto::{Request, Response};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest answer read (a `conns` answer of about a million connections); past
/// it the answer is refused rather than buffered without end.
pub const MAX_ANSWER_BYTES: usize = 256 << 20;

/// Why an exchange failed. Each case means ferrovs could not be asked or did not
/// answer sensibly; a refusal by ferrovs is a [`Response::Error`], not a `CtlError`.
#[derive(Debug)]
pub enum CtlError {
    /// The socket could not be reached.
    Connect {
        /// The control socket.
        path: PathBuf,
        /// The error from `connect`.
        source: io::Error,
    },
    /// No complete answer within the deadline.
    Timeout {
        /// The control socket.
        path: PathBuf,
        /// The deadline the whole exchange had.
        after: Duration,
    },
    /// Sending or receiving failed after connecting (ferrovs went away).
    Io {
        /// The control socket.
        path: PathBuf,
        /// The error from the send or the receive.
        source: io::Error,
    },
    /// The answer is not a protocol response (or there was none).
    Malformed {
        /// The control socket.
        path: PathBuf,
        /// What is wrong with the answer.
        reason: String,
    },
}

impl CtlError {
    /// The case as a snake_case label.
    pub fn reason(&self) -> &'static str {
        match self {
            CtlError::Connect { .. } => "connect",
            CtlError::Timeout { .. } => "timeout",
            CtlError::Io { .. } => "io",
            CtlError::Malformed { .. } => "malformed_answer",
        }
    }
}

/// What an operator should check when connecting fails.
fn connect_hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => {
            "is ferrovs running? The socket is management.control_socket of its \
             config; pass --socket if that is not the default"
        }
        ErrorKind::PermissionDenied => {
            "the socket is mode 0600: run ferrovs ctl as the user that runs ferrovs"
        }
        ErrorKind::ConnectionRefused => {
            "nothing listens there: ferrovs is not running (a stale socket file?)"
        }
        _ => "is ferrovs running?",
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Connect { path, source } => write!(
                f,
                "cannot connect to {}: {source} ({})",
                path.display(),
                connect_hint(source.kind())
            ),
            CtlError::Timeout { path, after } => write!(
                f,
                "no answer from {} within {} ms",
                path.display(),
                after.as_millis()
            ),
            CtlError::Io { path, source } => {
                write!(f, "connection to {} failed: {source}", path.display())
            }
            CtlError::Malformed { path, reason } => {
                write!(f, "malformed answer from {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for CtlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CtlError::Connect { source, .. } | CtlError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Sends `req` to the ferrovs listening on `socket` and returns its answer. The
/// whole exchange (after connecting, which a Unix socket does at once) takes at most
/// `timeout`.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, CtlError> {
    call_limited(socket, req, timeout, MAX_ANSWER_BYTES)
}

fn call_limited(
    socket: &Path,
    req: &Request,
    timeout: Duration,
    max_answer: usize,
) -> Result<Response, CtlError> {
    let deadline = Instant::now() + timeout;
    let path = || socket.to_path_buf();
    let mut stream = UnixStream::connect(socket).map_err(|source| CtlError::Connect {
        path: path(),
        source,
    })?;
    let failed = |source: io::Error| match source.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => CtlError::Timeout {
            path: path(),
            after: timeout,
        },
        _ => CtlError::Io {
            path: path(),
            source,
        },
    };

    // The envelope tells ferrovs how long this client waits: it applies the request
    // only while the answer can still arrive in time. Serialising the protocol's own
    // types cannot fail: no maps with non-string keys.
    let envelope = serde_json::json!({
        "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        "request": req,
    });
    let mut line = serde_json::to_vec(&envelope).map_err(|e| failed(io::Error::other(e)))?;
    line.push(b'\n');
    stream
        .set_write_timeout(Some(left(deadline).ok_or_else(|| failed(timed_out()))?))
        .map_err(failed)?;
    stream.write_all(&line).map_err(failed)?;

    let answer = read_line(&mut stream, deadline, max_answer).map_err(|e| match e {
        ReadError::Io(source) => failed(source),
        ReadError::TooLong => CtlError::Malformed {
            path: path(),
            reason: format!("longer than {max_answer} bytes (ask for fewer connections)"),
        },
    })?;
    let Some(answer) = answer else {
        return Err(CtlError::Malformed {
            path: path(),
            reason: "the connection closed without an answer".into(),
        });
    };
    serde_json::from_slice(&answer).map_err(|e| CtlError::Malformed {
        path: path(),
        reason: format!("{e}: {}", excerpt(&answer)),
    })
}

/// Time left until `deadline`; `None` once it passed (a zero socket timeout would
/// mean "wait forever").
fn left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

fn timed_out() -> io::Error {
    io::Error::from(ErrorKind::TimedOut)
}

enum ReadError {
    Io(io::Error),
    TooLong,
}

/// Reads up to the first '\n' (not included) or the end of the stream; `None` when
/// the stream ended before sending anything.
fn read_line(
    stream: &mut UnixStream,
    deadline: Instant,
    max: usize,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let wait = left(deadline).ok_or_else(|| ReadError::Io(timed_out()))?;
        stream.set_read_timeout(Some(wait)).map_err(ReadError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(Some(line).filter(|l| !l.is_empty())),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        let got = &chunk[..n];
        let end = got.iter().position(|&b| b == b'\n');
        let take = end.unwrap_or(n);
        if line.len() + take > max {
            return Err(ReadError::TooLong);
        }
        line.extend_from_slice(&got[..take]);
        if end.is_some() {
            return Ok(Some(line));
        }
    }
}

/// The start of a bad answer, for the error message.
fn excerpt(answer: &[u8]) -> String {
    const SHOWN: usize = 80;
    let text = String::from_utf8_lossy(answer);
    let mut cut: String = text.chars().take(SHOWN).collect();
    if text.chars().nth(SHOWN).is_some() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::thread::{self, JoinHandle};

    /// A socket path in a fresh directory, removed when dropped.
    struct Socket {
        path: PathBuf,
        _dir: TempDir,
    }

    impl Socket {
        fn new() -> Socket {
            let dir = TempDir::new("client");
            Socket {
                path: dir.join("ctl.sock"),
                _dir: dir,
            }
        }
    }

    impl std::ops::Deref for Socket {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.path
        }
    }

    /// A server for one connection: reads the request line, then writes `answer`
    /// (after `delay`) and closes. Returns the request it read.
    fn serve(answer: Vec<u8>, delay: Duration) -> (Socket, JoinHandle<String>) {
        let path = Socket::new();
        let listener = UnixListener::bind(&*path).unwrap();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            thread::sleep(delay);
            let _ = reader.get_mut().write_all(&answer);
            request
        });
        (path, handle)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn sends_one_line_and_parses_the_answer() {
        let (path, server) = serve(
            b"{\"status\":\"done\",\"message\":\"weight 0\"}\n".to_vec(),
            Duration::ZERO,
        );
        let req = Request::Drain {
            service: "web".into(),
            real_server: "198.19.0.10:8080".into(),
        };
        let resp = call(&path, &req, 5 * SECOND).unwrap();
        assert_eq!(
            resp,
            Response::Done {
                message: "weight 0".into()
            }
        );
        let sent = server.join().unwrap();
        assert!(sent.ends_with('\n') && !sent[..sent.len() - 1].contains('\n'));
        // The request goes in an envelope that says how long the client waits.
        let envelope: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(envelope["timeout_ms"], 5000);
        let inner = serde_json::from_value::<Request>(envelope["request"].clone()).unwrap();
        assert_eq!(inner, req);
    }

    #[test]
    fn an_answer_without_newline_before_close_is_accepted() {
        let (path, server) = serve(
            br#"{"status":"error","errors":["no service web"]}"#.to_vec(),
            Duration::ZERO,
        );
        let resp = call(&path, &Request::Reload {}, 5 * SECOND).unwrap();
        assert_eq!(
            resp,
            Response::Error {
                errors: vec!["no service web".into()]
            }
        );
        server.join().unwrap();
    }

    #[test]
    fn data_after_the_first_line_is_ignored() {
        let (path, server) = serve(
            b"{\"status\":\"done\",\"message\":\"ok\"}\ngarbage".to_vec(),
            Duration::ZERO,
        );
        assert!(call(&path, &Request::Reload {}, 5 * SECOND).is_ok());
        server.join().unwrap();
    }

    #[test]
    fn a_missing_socket_names_the_path_and_a_hint() {
        let path = Socket::new();
        let err = call(&path, &Request::List {}, SECOND).unwrap_err();
        assert!(matches!(err, CtlError::Connect { .. }), "{err:?}");
        assert_eq!(err.reason(), "connect");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("is ferrovs running?"), "{text}");
    }

    #[test]
    fn a_stale_socket_is_refused_with_a_hint() {
        let path = Socket::new();
        drop(UnixListener::bind(&*path).unwrap());
        let err = call(&path, &Request::List {}, SECOND).unwrap_err();
        assert!(err.to_string().contains("stale socket"), "{err}");
    }

    #[test]
    fn permission_hint_names_the_socket_mode() {
        // Running as root cannot be refused by the file mode; the hint is checked here.
        assert!(connect_hint(ErrorKind::PermissionDenied).contains("0600"));
    }

    #[test]
    fn a_silent_server_times_out() {
        let (path, server) = serve(b"{}\n".to_vec(), SECOND);
        let start = Instant::now();
        let err = call(&path, &Request::List {}, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, CtlError::Timeout { .. }), "{err:?}");
        assert_eq!(err.reason(), "timeout");
        assert!(start.elapsed() < SECOND);
        server.join().unwrap();
    }

    #[test]
    fn a_trickling_server_cannot_extend_the_deadline() {
        let path = Socket::new();
        let listener = UnixListener::bind(&*path).unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // One byte every 100 ms, never a newline, for up to 3 s.
            for _ in 0..30 {
                if stream.write_all(b" ").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let start = Instant::now();
        let err = call(&path, &Request::List {}, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(err, CtlError::Timeout { .. }), "{err:?}");
        assert!(start.elapsed() < 2 * SECOND);
        server.join().unwrap();
    }

    #[test]
    fn garbage_is_a_malformed_answer() {
        for answer in [
            &b"HTTP/1.1 400 Bad Request\r\n\r\n"[..],
            b"{\"status\":\"launched\"}\n",
            b"{\"status\":\"done\"}\n",
            b"{\"status\":\"done\",\"message\":\"x\",\"extra\":1}\n",
            b"\xff\xfe\n",
            b"\n",
        ] {
            let (path, server) = serve(answer.to_vec(), Duration::ZERO);
            let err = call(&path, &Request::List {}, 5 * SECOND).unwrap_err();
            assert!(
                matches!(err, CtlError::Malformed { .. }),
                "{answer:?}: {err:?}"
            );
            assert_eq!(err.reason(), "malformed_answer");
            server.join().unwrap();
        }
    }

    #[test]
    fn closing_without_answer_is_malformed() {
        let (path, server) = serve(Vec::new(), Duration::ZERO);
        let err = call(&path, &Request::List {}, 5 * SECOND).unwrap_err();
        assert!(err.to_string().contains("without an answer"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn an_overlong_answer_is_refused() {
        let mut answer = br#"{"status":"done","message":""#.to_vec();
        answer.extend(vec![b'x'; 4096]);
        answer.extend(b"\"}\n");
        let (path, server) = serve(answer, Duration::ZERO);
        let err = call_limited(&path, &Request::List {}, 5 * SECOND, 1024).unwrap_err();
        assert!(err.to_string().contains("longer than 1024 bytes"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn excerpts_are_bounded_and_quoted() {
        assert_eq!(excerpt(b"abc"), "\"abc\"");
        let long = "é".repeat(100);
        let cut = excerpt(long.as_bytes());
        assert!(
            cut.ends_with("...\"") && cut.chars().count() == 80 + 5,
            "{cut}"
        );
    }
}
