//! The semantic pass: turns the written config into a [`Config`], reporting every bad
//! value at its position.
//!
//! Each helper that returns `None` has reported why, so a section is assembled with
//! `?` only after all of its fields have been checked. Cross-checks (routes against
//! connected subnets, real servers against routes, ...) use whatever parsed, so one
//! bad port address does not hide the other problems.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use crate::packet::MacAddr;

use super::error::{ConfigError, ConfigErrors};
use super::host::HostFacts;
use super::model::*;
use super::positions::Positions;
use super::raw::*;
use super::value::{parse_duration, PortDevice};

mod access;
mod appliance;
mod edge;
mod network;
mod services;
mod sync;
mod vlan;

/// `RTE_MAX_LCORE` of the DPDK we link (Debian 22.11).
const MAX_LCORES: usize = 128;
/// `RTE_MAX_ETHPORTS` of the DPDK we link (Debian 22.11): more ports cannot be probed.
const MAX_PORTS: usize = 32;
/// Services per instance.
const MAX_SERVICES: usize = 4096;
/// `RTE_MEMPOOL_CACHE_MAX_SIZE`.
const MAX_MEMPOOL_CACHE: u64 = 512;
/// Longest Unix socket path: `sun_path` is 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 107;

const DEFAULT_MEMORY_MB: u64 = 512;
const DEFAULT_FILE_PREFIX: &str = "ferrovs";
const DEFAULT_MTU: u64 = 1500;
const DEFAULT_DESCRIPTORS: u64 = 1024;
const DEFAULT_BURST: u64 = 32;
const DEFAULT_IDLE_SLEEP_MAX: Duration = Duration::from_millis(1);
const DEFAULT_MBUFS: u64 = 16383;
const DEFAULT_MEMPOOL_CACHE: u64 = 256;
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9800";
const DEFAULT_CONTROL_SOCKET: &str = "/run/ferrovs/ctl.sock";
const DEFAULT_MAX_CONNECTIONS: u64 = 1_000_000;
const DEFAULT_SCHEDULER: Scheduler = Scheduler::Wlc;
const DEFAULT_WEIGHT: u64 = 1;
const DEFAULT_QUORUM: u64 = 1;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_SYNC_HEARTBEAT: Duration = Duration::from_millis(300);
const DEFAULT_SYNC_PEER_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_SYNC_REFRESH: Duration = Duration::from_secs(60);
/// Longest `services[].persistence`: IPVS keeps the timeout in 32-bit jiffies, so
/// about 49 days at HZ=1000 is its ceiling too.
const MAX_PERSISTENCE: Duration = Duration::from_secs(49 * 24 * 3600);
/// Longest `announce.shutdown_grace`: a stop should not wait longer than this.
const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(600);

/// EAL options that ferrovs derives from other keys, and those keys.
const DERIVED_EAL_ARGS: &[(&str, &str)] = &[
    ("-l", "eal.cores"),
    ("-c", "eal.cores"),
    ("--lcores", "eal.cores"),
    ("--main-lcore", "eal.cores"),
    ("--master-lcore", "eal.cores"),
    ("-m", "eal.memory_mb"),
    ("--socket-mem", "eal.memory_mb"),
    ("--no-huge", "eal.hugepages"),
    ("--file-prefix", "eal.file_prefix"),
    ("--vdev", "ports[].device"),
    ("-a", "ports[].device"),
    ("--allow", "ports[].device"),
    ("-b", "ports[].device"),
    ("--block", "ports[].device"),
    ("--no-pci", "ports[].device"),
];

/// Validates `raw`, reporting positions found in `positions`.
pub(super) fn check(
    raw: RawConfig,
    file: &str,
    positions: &Positions,
    host: &HostFacts,
) -> Result<Config, ConfigErrors> {
    let mut checker = Checker {
        file,
        positions,
        errors: Vec::new(),
        connected: Vec::new(),
    };
    let config = checker.config(&raw, host);
    let mut errors = checker.errors;
    if errors.is_empty() {
        // Every `None` above comes with an error, so this is only a safety net.
        return config.ok_or_else(|| {
            ConfigErrors::one(ConfigError {
                file: file.to_string(),
                line: 1,
                col: 1,
                message: "internal error: a value was rejected without a reason".to_string(),
            })
        });
    }
    errors.sort_by_key(|e| (e.line, e.col));
    Err(ConfigErrors(errors))
}

/// A connected subnet: an interface address (a port's or a VLAN's) with its
/// prefix length.
struct Connected {
    net: IpNet,
    /// The interface: a port's index, or for a VLAN the number of ports plus its
    /// index in `vlans` (as `Config::interfaces` numbers them).
    port_index: usize,
    /// The interface as messages name it: `port wan`, `VLAN wan.100`.
    port: String,
    /// The interface's name alone.
    name: String,
}

struct Checker<'a> {
    file: &'a str,
    positions: &'a Positions,
    errors: Vec<ConfigError>,
    /// Every port address that parsed, for the cross-checks.
    connected: Vec<Connected>,
}

/// What the service checks need from the rest of the config.
struct Reach<'a> {
    routes: &'a [IpNet],
    vips: &'a [(IpAddr, &'a str)],
}

impl Checker<'_> {
    /// Reports `message` about the value at `path`.
    fn error(&mut self, path: &str, message: impl AsRef<str>) {
        let position = self.positions.get(path);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: position.line,
            col: position.col,
            message: format!("{path}: {}", message.as_ref()),
        });
    }

    /// An integer in `min..=max`, converted to the field's type.
    fn int<T: TryFrom<u64>>(&mut self, path: &str, value: u64, min: u64, max: u64) -> Option<T> {
        if value < min || value > max {
            self.error(path, format!("{value} is out of range {min}..={max}"));
            return None;
        }
        match T::try_from(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(path, format!("{value} is too large"));
                None
            }
        }
    }

    fn ip(&mut self, path: &str, text: &str) -> Option<IpAddr> {
        let ip = text.parse().ok();
        if ip.is_none() {
            self.error(path, format!("`{text}` is not an IPv4 or IPv6 address"));
        }
        ip
    }

    /// An address that may be used as a source or destination of forwarded traffic.
    fn unicast_ip(&mut self, path: &str, text: &str) -> Option<IpAddr> {
        let ip = self.ip(path, text)?;
        if !is_unicast(ip) {
            self.error(path, not_unicast(ip));
            return None;
        }
        if let Some(problem) = self.reserved_in_subnet(ip) {
            self.error(path, problem);
            return None;
        }
        Some(ip)
    }

    fn net(&mut self, path: &str, text: &str) -> Option<IpNet> {
        let net = text.parse().ok();
        if net.is_none() {
            self.error(
                path,
                format!("`{text}` is not an address/prefix-length such as \"198.18.0.0/24\""),
            );
        }
        net
    }

    /// A duration, or `default` when the key is absent; zero allowed.
    fn duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Option<Duration> {
        let Some(text) = text else {
            return Some(default);
        };
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(err) => {
                self.error(path, format!("invalid duration `{text}`: {err}"));
                None
            }
        }
    }

    /// A duration within `min..=max`.
    fn bounded_duration(
        &mut self,
        path: &str,
        text: Option<&str>,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Option<Duration> {
        let duration = self.duration(path, text, default)?;
        if duration < min || duration > max {
            let (d, min, max) = (
                show_duration(duration),
                show_duration(min),
                show_duration(max),
            );
            self.error(path, format!("{d} is out of range {min}..={max}"));
            return None;
        }
        Some(duration)
    }

    fn keyword<T: FromStr>(&mut self, path: &str, text: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        match text.parse() {
            Ok(value) => Some(value),
            Err(err) => {
                self.error(path, format!("`{text}`: {err}"));
                None
            }
        }
    }

    /// A name of `max_len` characters at most, each accepted by `allowed`.
    fn name(
        &mut self,
        path: &str,
        text: &str,
        max_len: usize,
        allowed: fn(char) -> bool,
        charset: &str,
    ) -> Option<String> {
        if text.is_empty() || text.chars().count() > max_len || !text.chars().all(allowed) {
            self.error(
                path,
                format!("`{text}` is not a valid name: 1 to {max_len} of {charset}"),
            );
            return None;
        }
        Some(text.to_string())
    }

    /// Reports items of `values` that repeat an earlier one, at `list[i]` or, with a
    /// `field`, at `list[i].field`.
    fn unique_items<T: Eq + std::hash::Hash + std::fmt::Display>(
        &mut self,
        list_path: &str,
        field: Option<&str>,
        values: &[Option<T>],
        what: &str,
    ) {
        let mut seen = HashSet::new();
        for (i, value) in values.iter().enumerate() {
            if let Some(value) = value {
                if !seen.insert(value) {
                    let path = match field {
                        Some(field) => format!("{list_path}[{i}].{field}"),
                        None => format!("{list_path}[{i}]"),
                    };
                    self.error(&path, format!("{what} {value} is listed twice"));
                }
            }
        }
    }

    fn config(&mut self, raw: &RawConfig, host: &HostFacts) -> Option<Config> {
        let eal = self.eal(&raw.eal, host);
        let ports = self.ports(&raw.ports);
        // Right after the ports: their subnets are connected like the ports'.
        let vlans = self.vlans(
            raw.vlans.as_deref().unwrap_or_default(),
            &raw.ports,
            ports.as_deref(),
        );
        // Workers are checked against the EAL cores that parsed, even if another EAL
        // key is bad.
        let eal_cores: Vec<u32> = raw
            .eal
            .cores
            .iter()
            .filter_map(|&c| u32::try_from(c).ok())
            .collect();
        let workers = self.workers(&raw.workers, &eal_cores);
        if let (Some(p), Some(w)) = (ports.as_deref(), workers.as_ref()) {
            self.lacp_polling(p, w);
        }
        let mempool = self.mempool(raw.mempool.as_ref(), ports.as_deref(), workers.as_ref());
        let management = self.management(raw.management.as_ref(), host);
        let connections = self.connections(raw.connections.as_ref());
        if let (Some(c), Some(w)) = (connections.as_ref(), workers.as_ref()) {
            self.connections_per_worker(c.max, w.cores.len());
        }
        let (routes, route_prefixes) = self.routes(raw.routes.as_deref().unwrap_or_default());
        let neighbors = self.neighbors(raw.neighbors.as_deref().unwrap_or_default());
        let services = self.services(raw.services.as_deref().unwrap_or_default(), &route_prefixes);
        self.routes_via_own_service_addresses(&routes, &services);
        let sync = match &raw.sync {
            None => Some(None),
            Some(s) => self.sync(s, management.as_ref()).map(Some),
        };
        let announce = match &raw.announce {
            None => Some(None),
            Some(a) => self.announce(a, management.as_ref(), &raw.ports).map(Some),
        };
        Some(Config {
            eal: eal?,
            ports: ports?,
            workers: workers?,
            mempool: mempool?,
            management: management?,
            connections: connections?,
            routes: routes.into_iter().map(|(r, _)| r).collect::<Option<_>>()?,
            neighbors: neighbors.into_iter().collect::<Option<_>>()?,
            vlans: vlans?,
            services: services.into_iter().collect::<Option<_>>()?,
            announce: announce?,
            sync: sync?,
        })
    }
}

/// Not unspecified, multicast, loopback, the IPv4 limited broadcast or an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, which no packet on the wire carries).
fn is_unicast(ip: IpAddr) -> bool {
    let special = match ip {
        IpAddr::V4(v4) => v4.is_broadcast(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || special)
}

/// Why `ip` is not a unicast address (see [`is_unicast`]).
fn not_unicast(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => format!(
            "{ip} is an IPv4-mapped IPv6 address; write the IPv4 address {}",
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
        ),
        _ => format!("{ip} is not a unicast address"),
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn max_prefix_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// A duration in the config's own syntax, in the largest exact unit.
fn show_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}
