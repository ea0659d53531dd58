//! The control protocol: what `ferrovs ctl` and the control socket exchange.
//!
//! The control socket takes one JSON line per connection from any local process
//! allowed to open it; `mgmt::control::parse_request` turns the line into a
//! `Request` and its deadline, and the management core applies a mutating
//! request by editing its YAML document and parsing that with the config
//! checks (`mgmt::state`). The client, in turn, parses the server's `Response`
//! line and formats it for the operator.
//!
//! The first input byte picks a side; the rest is the line.
//! - Even: a request line. No panic; a line that parses has a deadline between
//!   50 ms and 60 s after its arrival (8 s without the client's envelope), its
//!   `Request` serializes to JSON that parses back to the same request, bare or
//!   in an envelope; and a mutating request is applied, as the management core
//!   does, to a fresh copy of a fixed running configuration: refused with a
//!   message, or producing a configuration that builds a data-plane snapshot.
//! - Odd: a response line. What parses serializes back to the same response, and
//!   the client's formatters (`ctl::format`, ipvsadm-style tables) take it.

#![no_main]

use ferrovs::ctl::format::{self, ListView};
use ferrovs::ctl::proto::{Request, Response};
use ferrovs::mgmt::control::parse_request;
use ferrovs::mgmt::state::{self, ConfigState, HealthMap};
use ferrovs_core::config::{self, HostFacts};
use ferrovs_core::packet::MacAddr;
use ferrovs_core::pipeline::BalancerLimits;
use ferrovs_core::service::Services;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The running configuration mutating requests edit.
const RUNNING: &str = r#"eal: { cores: [0, 1], hugepages: false }
ports:
  - { name: wan, device: net_null0, addresses: ["198.18.0.1/24", "2001:2::1/64"] }
  - { name: lan, device: net_null1, addresses: ["198.19.0.1/24", "2001:2:0:19::1/64"] }
workers: { cores: [1] }
connections: { max: 1000 }
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    real_servers:
      - { address: 198.19.0.10 }
      - { address: 198.19.0.11, port: 8080, weight: 3 }
  - name: dns6
    vip: "2001:2::100"
    port: 53
    protocol: udp
    mode: fullnat
    local_addresses: ["2001:2:0:19::2"]
    real_servers:
      - { address: "2001:2:0:19::10" }
"#;

/// The running configuration's file (`ConfigState` reads it), written once per
/// process, always the same text: one directory for every run, none left behind
/// per process.
fn running_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join("ferrovs-fuzz-control");
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("ferrovs.yaml");
        // Replaced whole (libFuzzer's -jobs runs several processes at once).
        let tmp = dir.join(format!("ferrovs.yaml.{}", std::process::id()));
        std::fs::write(&tmp, RUNNING).expect("the running configuration written");
        std::fs::rename(&tmp, &path).expect("the running configuration in place");
        path
    })
}

fn fresh_state() -> ConfigState {
    let cfg = config::parse(RUNNING, "ferrovs.yaml", &HostFacts::default()).expect("valid");
    let macs = vec![MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])];
    let services = Services::from_config(&cfg);
    let limits = BalancerLimits::for_config(cfg.connections.max as usize, 1, &services);
    ConfigState::new(running_file().clone(), cfg, macs, limits).expect("the running state")
}

fuzz_target!(|data: &[u8]| {
    let Some((&side, rest)) = data.split_first() else {
        return;
    };
    // The server reads bytes up to the newline and takes them as lossy UTF-8.
    let line = String::from_utf8_lossy(rest);
    if side % 2 == 0 {
        request(&line);
    } else {
        response(&line);
    }
});

fn request(line: &str) {
    let accepted = Instant::now();
    let Ok((req, deadline)) = parse_request(line, accepted) else {
        return;
    };
    let wait = deadline - accepted;
    assert!(
        wait >= Duration::from_millis(50) && wait <= Duration::from_secs(60),
        "deadline {wait:?} after arrival"
    );
    let json = serde_json::to_string(&req).expect("a request serializes");
    let (again, deadline) = parse_request(&json, accepted)
        .unwrap_or_else(|e| panic!("{json} does not parse back: {e}"));
    assert_eq!(again, req, "{json}");
    assert_eq!(
        deadline - accepted,
        Duration::from_secs(8),
        "a bare request's deadline"
    );
    let wrapped = format!("{{\"timeout_ms\": 5000, \"request\": {json}}}");
    let (again, _) = parse_request(&wrapped, accepted)
        .unwrap_or_else(|e| panic!("{wrapped} does not parse: {e}"));
    assert_eq!(again, req);
    apply(&req);
}

/// A mutating request applied as the management core applies it.
fn apply(req: &Request) {
    use Request::*;
    if !matches!(
        req,
        AddService { .. }
            | EditService { .. }
            | RemoveService { .. }
            | AddRealServer { .. }
            | SetWeight { .. }
            | Drain { .. }
            | RemoveRealServer { .. }
    ) {
        return;
    }
    let mut st = fresh_state();
    let version = st.version();
    let result = match req {
        Request::AddService { service } => st.edit(state::add_service(service), |_, _| true),
        Request::EditService { service } => st.edit(state::edit_service(service), |_, _| true),
        Request::RemoveService { name } => st.edit(state::remove_service(name), |_, _| true),
        Request::AddRealServer {
            service,
            real_server,
        } => st.edit(state::add_real_server(service, real_server), |_, _| true),
        Request::SetWeight {
            service,
            real_server,
            weight,
        } => st.edit(state::set_weight(service, real_server, *weight), |_, _| {
            true
        }),
        Request::Drain {
            service,
            real_server,
        } => st.edit(state::set_weight(service, real_server, 0), |_, _| true),
        Request::RemoveRealServer {
            service,
            real_server,
        } => st.edit(state::remove_real_server(service, real_server), |_, _| true),
        _ => return,
    };
    match result {
        Ok(_) => {
            assert_eq!(
                st.version(),
                version + 1,
                "an applied edit is a new version"
            );
            let dp = st.snapshot(&HealthMap::new());
            assert_eq!(dp.services.iter().count(), st.config.services.len());
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            assert_eq!(st.version(), version, "a refused edit changed the version");
        }
    }
}

fn response(line: &str) {
    let Ok(resp) = serde_json::from_str::<Response>(line.trim()) else {
        return;
    };
    let json = serde_json::to_string(&resp).expect("a response serializes");
    let again: Response =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not parse back: {e}"));
    assert_eq!(again, resp, "{json}");
    match &resp {
        Response::Services { services } => {
            for view in [ListView::Plain, ListView::Stats, ListView::Rate] {
                let _ = format::services(services, view);
            }
        }
        Response::Conns { conns, truncated } => {
            let _ = format::conns(conns, *truncated);
        }
        Response::Sync { sync } => {
            let _ = format::sync(sync);
        }
        // Done, Error and whatever else: text for the operator, printed as is.
        _ => {}
    }
}
