//! The read-only HTTP endpoint: `GET /metrics` and nothing that changes state.
//! Mutating operations live on the Unix control socket only.

use super::metrics::render;
use prometheus::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Response, Server};

/// A running metrics listener.
pub struct MetricsServer {
    server: Arc<Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves `registry` on a thread of its own, pinned to `cpu`.
    pub fn start(addr: SocketAddr, registry: Registry, cpu: u32) -> Result<MetricsServer, String> {
        let server = Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("{addr} is not an IP listener"))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (server.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("ferrovs-http".into())
            .spawn(move || {
                super::pin_to_management_cpu(cpu);
                serve(&s, &registry, &st)
            })
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        Ok(MetricsServer {
            server,
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
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &Server, registry: &Registry, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let req = match server.recv_timeout(Duration::from_millis(500)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => break,
        };
        let path = req.url().split('?').next().unwrap_or("");
        let response = match (req.method(), path) {
            (Method::Get | Method::Head, "/metrics") => Response::from_string(render(registry))
                .with_header(header(
                    "Content-Type",
                    "text/plain; version=0.0.4; charset=utf-8",
                )),
            (Method::Get | Method::Head, "/") => {
                Response::from_string("ferrovs: metrics at /metrics\n")
                    .with_header(header("Content-Type", "text/plain; charset=utf-8"))
            }
            (Method::Get | Method::Head, _) => {
                Response::from_string("not found\n").with_status_code(404)
            }
            _ => Response::from_string("read-only endpoint: only GET is served\n")
                .with_status_code(405)
                .with_header(header("Allow", "GET, HEAD")),
        };
        let _ = req.respond(response);
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn request(addr: SocketAddr, raw: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_refuses_everything_else() {
        let reg = Registry::new();
        let c = prometheus::IntCounter::new("ferrovs_test_total", "test").unwrap();
        c.inc_by(3);
        reg.register(Box::new(c)).unwrap();
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), reg, 0).unwrap();
        let addr = srv.local_addr();
        let ok = request(addr, "GET /metrics HTTP/1.0\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
        assert!(ok.contains("ferrovs_test_total 3"));
        let post = request(addr, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.0 405"), "{post}");
        let missing = request(addr, "GET /reload HTTP/1.0\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
    }
}
