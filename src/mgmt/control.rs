//! The control socket: a Unix socket (mode 0600, never on the network) that takes
//! one JSON request per connection and answers with one JSON response.
//!
//! A listener thread reads requests and hands them to the management loop, which
//! owns all state and answers through a reply channel, so requests are applied one
//! at a time and never race a reload or a health change.

use crate::ctl::proto::{Request, Response};
use crossbeam_channel::{bounded, Receiver, Sender};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest request accepted (a service with many real servers fits easily).
const MAX_REQUEST: u64 = 1 << 20;
/// How long a client may take to send its request, and the loop to answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A request waiting for the management loop, with where to send the answer.
pub struct Pending {
    /// The request as the client sent it.
    pub request: Request,
    /// Where the management loop sends the answer; the listener thread writes it back
    /// to the client.
    pub reply: Sender<Response>,
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
        if path.exists() {
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

fn serve(listener: UnixListener, requests: Sender<Pending>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let response = handle(&stream, &requests);
                let mut stream = stream;
                let mut line = serde_json::to_string(&response).unwrap_or_else(|_| {
                    r#"{"status":"error","errors":["cannot encode the answer"]}"#.into()
                });
                line.push('\n');
                let _ = stream.write_all(line.as_bytes());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn refuse(message: impl Into<String>) -> Response {
    Response::Error {
        errors: vec![message.into()],
    }
}

fn handle(stream: &UnixStream, requests: &Sender<Pending>) -> Response {
    // The socket file is 0600, so only its owner can connect; check the peer anyway.
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) => {
            let me = nix::unistd::geteuid().as_raw();
            if cred.uid() != 0 && cred.uid() != me {
                return refuse(format!("user {} may not control ferrovs", cred.uid()));
            }
        }
        Err(e) => return refuse(format!("cannot identify the peer: {e}")),
    }
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut line = String::new();
    let mut reader = BufReader::new(std::io::Read::take(stream, MAX_REQUEST));
    if let Err(e) = reader.read_line(&mut line) {
        return refuse(format!("cannot read the request: {e}"));
    }
    let request: Request = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => return refuse(format!("malformed request: {e}")),
    };
    let (tx, rx): (Sender<Response>, Receiver<Response>) = bounded(1);
    if requests.send(Pending { request, reply: tx }).is_err() {
        return refuse("ferrovs is shutting down");
    }
    rx.recv_timeout(IO_TIMEOUT)
        .unwrap_or_else(|_| refuse("no answer from the management core in time"))
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
}
