//! `ferrovs ctl` against a fake ferrovs: a thread serving canned answers on a
//! temporary Unix socket and recording the request it received. No root, no DPDK.

#[path = "common/tempdir.rs"]
mod tempdir;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tempdir::TempDir;

const FERROVS: &str = env!("CARGO_BIN_EXE_ferrovs");

/// What the fake server does once it has read the request.
enum Reply {
    /// Writes these bytes and closes.
    Bytes(Vec<u8>),
    /// Keeps the connection open without answering until the test ends.
    Silence,
}

fn answer(value: Value) -> Reply {
    Reply::Bytes(format!("{value}\n").into_bytes())
}

/// A fake ferrovs serving at most one connection.
struct FakeServer {
    _dir: TempDir,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<String>>,
}

impl FakeServer {
    fn start(reply: Reply) -> FakeServer {
        let dir = TempDir::new("ctl");
        let socket = dir.join("ctl.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(30);
            let stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(_) if stopped.load(Ordering::Relaxed) || Instant::now() > give_up => {
                        return None
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            match reply {
                Reply::Bytes(bytes) => {
                    let _ = reader.get_mut().write_all(&bytes);
                }
                Reply::Silence => {
                    while !stopped.load(Ordering::Relaxed) && Instant::now() < give_up {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            Some(request)
        });
        FakeServer {
            _dir: dir,
            socket,
            stop,
            thread,
        }
    }

    /// Runs `ferrovs ctl --socket SOCKET ARGS`.
    fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(&self.socket, args, None)
    }

    /// The request received, parsed and out of its envelope (which must say how
    /// long the client waits); `None` if nobody connected.
    fn received(self) -> Option<Value> {
        self.stop.store(true, Ordering::Relaxed);
        let line = self.thread.join().unwrap()?;
        assert!(line.ends_with('\n'), "request not a line: {line:?}");
        let envelope: Value = serde_json::from_str(&line).expect("request is JSON");
        assert!(
            envelope["timeout_ms"].as_u64().is_some_and(|ms| ms > 0),
            "{line}"
        );
        Some(envelope["request"].clone())
    }
}

fn ctl_at(socket: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(FERROVS)
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferrovs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn services() -> Value {
    let counters = json!({"conns": 5, "in_packets": 50, "out_packets": 40,
                          "in_bytes": 5000, "out_bytes": 123_456_789});
    let rates = json!({"cps": 1.0, "in_pps": 10.0, "out_pps": 8.0,
                       "in_bps": 1000.0, "out_bps": 2000.0});
    json!({"status": "services", "services": [{
        "name": "web", "protocol": "tcp", "address": "198.18.0.100:80",
        "scheduler": "wrr", "mode": "nat", "persistence_s": 0,
        "stats": counters, "rates": rates,
        "real_servers": [
            {"address": "198.19.0.10:8080", "weight": 1, "up": true,
             "active_conns": 3, "inactive_conns": 12, "stats": counters, "rates": rates},
            {"address": "198.19.0.11:8080", "weight": 2, "up": false,
             "active_conns": 0, "inactive_conns": 0,
             "stats": {"conns": 0, "in_packets": 0, "out_packets": 0, "in_bytes": 0, "out_bytes": 0},
             "rates": {"cps": 0.0, "in_pps": 0.0, "out_pps": 0.0, "in_bps": 0.0, "out_bps": 0.0}}
        ]
    }]})
}

#[test]
fn list_prints_the_ipvsadm_table() {
    let server = FakeServer::start(answer(services()));
    let out = server.ctl(&["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("IP Virtual Server version ") && lines[0].ends_with("(ferrovs)"));
    assert_eq!(
        &lines[1..],
        [
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn  Health",
            "TCP  198.18.0.100:80 wrr (nat) name web",
            "  -> 198.19.0.10:8080             Masq    1      3          12         up",
            "  -> 198.19.0.11:8080             Masq    2      0          0          down",
        ]
    );
    assert!(stderr(&out).is_empty());
    assert_eq!(server.received(), Some(json!({"cmd": "list"})));
}

#[test]
fn list_stats_and_rate() {
    let server = FakeServer::start(answer(services()));
    let out = server.ctl(&["list", "--stats"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(
        "\nTCP  198.18.0.100:80                     5       50       40     5000  123456K\n"
    ));
    server.received();

    let server = FakeServer::start(answer(services()));
    let out = server.ctl(&["list", "--rate"]);
    assert!(stdout(&out).contains(
        "\n  -> 198.19.0.10:8080                    1       10        8     1000     2000\n"
    ));
    assert_eq!(server.received(), Some(json!({"cmd": "list"})));
}

#[test]
fn json_prints_the_answer_pretty() {
    let server = FakeServer::start(answer(services()));
    let out = server.ctl(&["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("{\n  \""), "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), services());
    server.received();
}

#[test]
fn conns_sends_the_filters_and_prints_connections() {
    let server = FakeServer::start(answer(
        json!({"status": "conns", "truncated": true, "conns": [
            {"protocol": "TCP", "client": "198.18.0.7:51234", "virtual_address": "198.18.0.100:80",
             "local": "198.18.0.7:51234", "real_server": "198.19.0.10:8080",
             "state": "ESTABLISHED", "expires_ms": 898_500, "worker": 0}
        ]}),
    ));
    let out = server.ctl(&[
        "conns",
        "--service",
        "web",
        "--real-server",
        "198.19.0.10:8080",
        "--state",
        "established",
        "--limit",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "IPVS connection entries\n\
         pro expire state       source             virtual            local              destination\n\
         TCP 14:58  ESTABLISHED 198.18.0.7:51234   198.18.0.100:80    198.18.0.7:51234   198.19.0.10:8080\n\
         (1 connections shown; more matched, raise --limit to see them)\n"
    );
    assert_eq!(
        server.received(),
        Some(
            json!({"cmd": "conns", "service": "web", "real_server": "198.19.0.10:8080",
                    "state": "ESTABLISHED", "limit": 1})
        )
    );
}

#[test]
fn done_prints_the_message_and_exits_0() {
    let server = FakeServer::start(answer(
        json!({"status": "done", "message": "web: 198.19.0.10:8080 weight 1 -> 5"}),
    ));
    let out = server.ctl(&["set-weight", "web", "198.19.0.10:8080", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web: 198.19.0.10:8080 weight 1 -> 5\n");
    assert_eq!(
        server.received(),
        Some(json!({"cmd": "set_weight", "service": "web",
                    "real_server": "198.19.0.10:8080", "weight": 5}))
    );
}

#[test]
fn every_change_sends_its_request() {
    for (args, request) in [
        (
            &["drain", "web", "[2001:2::10]:8080"][..],
            json!({"cmd": "drain", "service": "web", "real_server": "[2001:2::10]:8080"}),
        ),
        (
            &["remove-real-server", "web", "198.19.0.11:8080"],
            json!({"cmd": "remove_real_server", "service": "web",
                   "real_server": "198.19.0.11:8080"}),
        ),
        (
            &[
                "add-real-server",
                "web",
                "198.19.0.12:8080",
                "--weight",
                "3",
            ],
            json!({"cmd": "add_real_server", "service": "web",
                   "real_server": {"address": "198.19.0.12", "port": 8080, "weight": 3}}),
        ),
        (
            &["remove-service", "web"],
            json!({"cmd": "remove_service", "name": "web"}),
        ),
        (&["reload"], json!({"cmd": "reload"})),
    ] {
        let server = FakeServer::start(answer(json!({"status": "done", "message": "ok"})));
        let out = server.ctl(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(server.received(), Some(request), "{args:?}");
    }
}

#[test]
fn add_service_sends_the_yaml_item_as_json() {
    let dir = TempDir::new("ctl");
    let file = dir.join("web.yaml");
    std::fs::write(
        &file,
        "# a services: item, as in the config\n\
         name: web2\n\
         vip: \"198.18.0.102\"\n\
         port: 80\n\
         protocol: tcp\n\
         mode: nat\n\
         scheduler: wlc\n\
         persistence: 300s\n\
         real_servers:\n\
         \x20 - { address: 198.19.0.10, port: 8080 }\n\
         \x20 - address: 198.19.0.11\n\
         \x20   weight: 2\n",
    )
    .unwrap();
    let server = FakeServer::start(answer(json!({"status": "done", "message": "added web2"})));
    let out = server.ctl(&["add-service", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "added web2\n");
    assert_eq!(
        server.received(),
        Some(json!({"cmd": "add_service", "service": {
            "name": "web2", "vip": "198.18.0.102", "port": 80, "protocol": "tcp",
            "mode": "nat", "scheduler": "wlc", "persistence": "300s",
            "real_servers": [{"address": "198.19.0.10", "port": 8080},
                             {"address": "198.19.0.11", "weight": 2}]
        }}))
    );
}

#[test]
fn edit_service_reads_json_from_stdin() {
    let item = json!({"name": "web", "vip": "198.18.0.100", "port": 80, "protocol": "tcp",
                      "mode": "nat", "scheduler": "rr"});
    let server = FakeServer::start(answer(json!({"status": "done", "message": "edited web"})));
    let out = ctl_at(
        &server.socket,
        &["edit-service", "--file", "-"],
        Some(&format!("services:\n  - {item}\n")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        server.received(),
        Some(json!({"cmd": "edit_service", "service": item}))
    );
}

#[test]
fn a_refusal_prints_each_error_and_exits_1() {
    let errors = [
        "/etc/ferrovs/ferrovs.yaml:12:7: services[0].real_servers[1].address: `198.19.0.300` is not an IP address",
        "eal.cores cannot change without a restart",
    ];
    let server = FakeServer::start(answer(json!({"status": "error", "errors": errors})));
    let out = server.ctl(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert_eq!(stderr(&out).lines().collect::<Vec<_>>(), errors);
    server.received();
}

#[test]
fn no_server_exits_2_naming_the_socket() {
    let dir = TempDir::new("ctl");
    let socket = dir.join("absent.sock");
    let out = ctl_at(&socket, &["list"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("is ferrovs running?"), "{err}");
}

#[test]
fn a_garbage_answer_exits_2() {
    for reply in [
        Reply::Bytes(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()),
        Reply::Bytes(b"{\"status\":\"ok\"}\n".to_vec()),
        Reply::Bytes(Vec::new()),
        answer(json!({"status": "done", "message": "not an answer to list"})),
    ] {
        let server = FakeServer::start(reply);
        let out = server.ctl(&["list"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stdout(&out).is_empty());
        assert!(
            stderr(&out).starts_with("ferrovs ctl: "),
            "{}",
            stderr(&out)
        );
        server.received();
    }
}

#[test]
fn a_silent_server_times_out_with_exit_2() {
    let server = FakeServer::start(Reply::Silence);
    let start = Instant::now();
    let out = server.ctl(&["--timeout", "300ms", "reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no answer"), "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(server.received(), Some(json!({"cmd": "reload"})));
}

#[test]
fn bad_arguments_exit_1_without_connecting() {
    let dir = TempDir::new("ctl");
    let bad_yaml = dir.join("bad.yaml");
    std::fs::write(&bad_yaml, "name: web\nport: [80\n").unwrap();
    let nameless = dir.join("nameless.yaml");
    std::fs::write(&nameless, "vip: 198.18.0.100\n").unwrap();
    for (args, wanted) in [
        (
            vec!["set-weight", "web", "198.19.0.10", "1"],
            "not IP:PORT".to_string(),
        ),
        (
            vec!["conns", "--state", "HALF_OPEN"],
            "unknown state".into(),
        ),
        (
            vec!["list", "--stats", "--rate"],
            "cannot be used with".into(),
        ),
        (
            vec!["add-service", "--file", bad_yaml.to_str().unwrap()],
            format!("{}:3:1: ", bad_yaml.display()),
        ),
        (
            vec!["edit-service", "--file", nameless.to_str().unwrap()],
            format!("{}:1:1: the service has no `name`", nameless.display()),
        ),
        (
            vec!["add-service", "--file", "/nonexistent/web.yaml"],
            "/nonexistent/web.yaml:1:1: cannot read".into(),
        ),
    ] {
        let server = FakeServer::start(answer(json!({"status": "done", "message": "ok"})));
        let out = server.ctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(&wanted), "{args:?}: {}", stderr(&out));
        assert_eq!(server.received(), None, "{args:?} reached the server");
    }
}

#[test]
fn help_is_on_every_command() {
    let socket = Path::new("/nonexistent/ctl.sock");
    for sub in [
        "list",
        "conns",
        "add-service",
        "edit-service",
        "remove-service",
        "add-real-server",
        "set-weight",
        "drain",
        "remove-real-server",
        "reload",
    ] {
        let out = ctl_at(socket, &[sub, "--help"], None);
        assert_eq!(out.status.code(), Some(0), "{sub}");
        assert!(stdout(&out).contains("Usage: ferrovs ctl"), "{sub}");
    }
    let out = ctl_at(socket, &["--help"], None);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for word in [
        "list",
        "conns",
        "set-weight",
        "drain",
        "reload",
        "--socket",
        "--timeout",
    ] {
        assert!(text.contains(word), "{word} missing in\n{text}");
    }
}
