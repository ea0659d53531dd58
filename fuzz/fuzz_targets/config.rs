//! Configuration loading and checking on arbitrary text.
//!
//! `ferrovs check-config`, start-up and `ctl reload` parse whatever file an
//! operator (or a config-management tool) hands them, so no text may make
//! `config::parse` panic, hang or allocate without bound (`config/bounds.rs`
//! caps size and flow nesting before a YAML parser runs).
//!
//! Checked, beyond "no panic":
//! - Errors are a non-empty list, each naming the file, at a line and column
//!   counted from 1 that lie within the text, with a message, in file order
//!   (what `ConfigErrors` documents).
//! - Parsing is deterministic: the same text gives the same result twice (a hash
//!   map's iteration order leaking into the errors would show here).
//! - A configuration that passes builds what the runtime builds from it: the
//!   data-plane snapshot, the kernel-interface decision per port, and (when its
//!   tables are small enough to build per input) a balancer and a pipeline that
//!   take a packet for every service.
//!
//! Input: UTF-8 text as is; other bytes as their lossy UTF-8 conversion.
//! The value parsers (`parse_duration`, `parse_cpu_list`, devices) also get the
//! text's first line.

#![no_main]

use ferrovs_core::config::{self, parse_cpu_list, parse_duration, HostFacts, PortDevice};
use ferrovs_core::conn::Proto;
use ferrovs_core::packet::craft::{self, L2};
use ferrovs_core::packet::{MacAddr, TcpFlags, VecBuf};
use ferrovs_core::pipeline::{
    has_kernel_interface, Balancer, BalancerLimits, Dataplane, PacketPool, Pipeline,
};
use ferrovs_core::stats::WorkerStats;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Connections per worker up to which a balancer is built for each input.
const MAX_BUILT_CONNECTIONS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let first = text.lines().next().unwrap_or("");
    let _ = parse_duration(first);
    let _ = first.parse::<PortDevice>();
    if first.len() < 64 {
        // A CPU list names every id of its ranges; /sys keeps them short.
        let _ = parse_cpu_list(first);
    }

    // Half the inputs are checked against a host with four CPUs.
    let host = if data.len() % 2 == 0 {
        HostFacts::default()
    } else {
        HostFacts {
            online_cpus: Some(vec![0, 1, 2, 3]),
            ..HostFacts::default()
        }
    };
    let result = config::parse(text, "fuzz.yaml", &host);
    assert_eq!(
        result,
        config::parse(text, "fuzz.yaml", &host),
        "parse is not deterministic"
    );
    match result {
        Err(errors) => check_errors(text, errors.errors()),
        Ok(cfg) => build(&cfg),
    }
});

/// Every error at a position within the text, in file order.
fn check_errors(text: &str, errors: &[config::ConfigError]) {
    assert!(!errors.is_empty(), "an empty error list");
    // YAML breaks lines at \n, \r\n and a lone \r (and, for some parsers, at
    // NEL, LS and PS): an upper bound of the lines any parser counts.
    let lines = 1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    let mut last = (0, 0);
    for e in errors {
        assert_eq!(e.file, "fuzz.yaml");
        assert!(
            e.line >= 1 && e.col >= 1,
            "position {}:{}: {}",
            e.line,
            e.col,
            e.message
        );
        assert!(
            e.line <= lines + 1,
            "line {} of a text of {lines} lines: {}",
            e.line,
            e.message
        );
        assert!(
            e.col <= text.len() + 1,
            "column {} past the text: {}",
            e.col,
            e.message
        );
        assert!(!e.message.is_empty(), "an error without a message");
        assert!(
            (e.line, e.col) >= last,
            "errors out of file order: {}:{} after {}:{}",
            e.line,
            e.col,
            last.0,
            last.1
        );
        last = (e.line, e.col);
    }
}

struct Pool;

impl PacketPool for Pool {
    type Buf = VecBuf;
    fn alloc(&self) -> Option<VecBuf> {
        Some(VecBuf::from_frame(&[]))
    }
}

/// What the runtime builds from a valid configuration, and a packet to every
/// service through it.
fn build(cfg: &config::Config) {
    let macs: Vec<MacAddr> = (0..cfg.ports.len())
        .map(|i| MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]))
        .collect();
    for iface in cfg.interfaces() {
        let _ = has_kernel_interface(cfg, &iface);
    }
    let dp = Arc::new(Dataplane::from_config(cfg, &macs));
    for port in 0..dp.ifaces.len() {
        let _ = dp.addresses_on(port);
    }
    let workers = cfg.workers.cores.len().max(1);
    let mut limits =
        BalancerLimits::for_config(cfg.connections.max as usize, workers, &dp.services);
    if limits.conns_v4.max(limits.conns_v6).max(limits.templates) > MAX_BUILT_CONNECTIONS
        || dp.ifaces.is_empty()
    {
        return;
    }
    // A share of the FULLNAT local ports, as in a sync cluster: filling every
    // local address's 64,512 ports per input would be most of the run time.
    limits.local_port_share = (0, 16);
    let Ok(lb) = Balancer::new(
        &dp.services,
        limits,
        &ferrovs_core::conn::Timeouts::default(),
        0,
        workers,
    ) else {
        return;
    };
    // Counters for the configured real servers' slots (an unknown slot reads a
    // shared dummy).
    let slots = dp
        .services
        .iter()
        .flat_map(|s| s.real_servers.iter().map(|r| r.slot));
    let stats = Arc::new(WorkerStats::new(
        slots.max().map_or(0, |m| usize::from(m) + 1),
    ));
    let (tx, _rx) = crossbeam_channel::bounded(64);
    let burst = usize::from(cfg.workers.burst).max(1);
    let mut p = Pipeline::new(0, workers, dp.clone(), lb, Pool, stats, tx, burst);
    p.apply(ferrovs_core::pipeline::WorkerCommand::Config(dp.clone()));
    p.apply(ferrovs_core::pipeline::WorkerCommand::AnnounceAddresses);
    let mut frames = Vec::new();
    for svc in dp.services.iter().take(64) {
        let client: IpAddr = if svc.vip.is_ipv4() {
            "198.18.0.10".parse().unwrap()
        } else {
            "2001:db8::10".parse().unwrap()
        };
        let l2 = L2 {
            src: MacAddr([2, 0, 0, 0, 0x10, 0x10]),
            dst: dp.ifaces[0].mac,
        };
        let from = SocketAddr::new(client, 40000);
        let to = SocketAddr::new(svc.vip, svc.port);
        frames.push(VecBuf::from_frame(&match svc.proto {
            Proto::Tcp => craft::tcp(l2, from, to, TcpFlags::SYN, 1, 0, b""),
            Proto::Udp => craft::udp(l2, from, to, b"q"),
        }));
    }
    for chunk in frames.chunks(burst) {
        let mut run = chunk.to_vec();
        p.process_burst(&mut run, 0);
        assert!(run.is_empty());
    }
    p.housekeeping();
    p.expire_connections();
}
