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

/// A connected subnet: a port address with its prefix length.
struct Connected {
    net: IpNet,
    port_index: usize,
    /// The port's name as written, for messages.
    port: String,
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
            self.error(path, format!("{ip} is not a unicast address"));
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
        // Workers are checked against the EAL cores that parsed, even if another EAL
        // key is bad.
        let eal_cores: Vec<u32> = raw
            .eal
            .cores
            .iter()
            .filter_map(|&c| u32::try_from(c).ok())
            .collect();
        let workers = self.workers(&raw.workers, &eal_cores);
        let mempool = self.mempool(raw.mempool.as_ref(), ports.as_deref(), workers.as_ref());
        let management = self.management(raw.management.as_ref());
        let connections = self.connections(raw.connections.as_ref());
        let (routes, route_prefixes) = self.routes(raw.routes.as_deref().unwrap_or_default());
        let neighbors = self.neighbors(raw.neighbors.as_deref().unwrap_or_default());
        let services = self.services(raw.services.as_deref().unwrap_or_default(), &route_prefixes);
        Some(Config {
            eal: eal?,
            ports: ports?,
            workers: workers?,
            mempool: mempool?,
            management: management?,
            connections: connections?,
            routes: routes.into_iter().collect::<Option<_>>()?,
            neighbors: neighbors.into_iter().collect::<Option<_>>()?,
            services: services.into_iter().collect::<Option<_>>()?,
        })
    }

    /// Core ids, checked for range and repeats; `None` entries did not parse.
    fn cores(&mut self, path: &str, raw: &[u64]) -> Vec<Option<u32>> {
        let cores: Vec<Option<u32>> = raw
            .iter()
            .enumerate()
            .map(|(i, &core)| self.int(&format!("{path}[{i}]"), core, 0, u64::from(u32::MAX)))
            .collect();
        self.unique_items(path, None, &cores, "core");
        cores
    }

    fn eal(&mut self, raw: &RawEal, host: &HostFacts) -> Option<EalConfig> {
        if raw.cores.is_empty() {
            self.error(
                "eal.cores",
                "needs at least one core: the management core, then the worker cores",
            );
        } else if raw.cores.len() > MAX_LCORES {
            self.error(
                "eal.cores",
                format!(
                    "{} cores exceed RTE_MAX_LCORE ({MAX_LCORES})",
                    raw.cores.len()
                ),
            );
        }
        let cores = self.cores("eal.cores", &raw.cores);
        let map = raw.cpu_map.clone().unwrap_or_default();
        for (&lcore, &cpu) in &map {
            let path = format!("eal.cpu_map.{lcore}");
            if !raw.cores.contains(&lcore) {
                self.error(&path, format!("lcore {lcore} is not in eal.cores"));
            }
            if cpu > u64::from(u32::MAX) {
                self.error(&path, format!("CPU {cpu} is out of range"));
            }
        }
        // The CPU of every lcore: mapped, or the lcore id itself.
        let cpus: Vec<Option<u32>> = cores
            .iter()
            .map(|core| {
                let core = (*core)?;
                match map.get(&u64::from(core)) {
                    Some(&cpu) => u32::try_from(cpu).ok(),
                    None => Some(core),
                }
            })
            .collect();
        if let Some(online) = &host.online_cpus {
            for (i, (core, cpu)) in cores.iter().zip(&cpus).enumerate() {
                let (Some(core), Some(cpu)) = (core, cpu) else {
                    continue;
                };
                if online.contains(cpu) {
                    continue;
                }
                let (path, what) = if map.contains_key(&u64::from(*core)) {
                    (format!("eal.cpu_map.{core}"), format!("CPU {cpu}"))
                } else {
                    (format!("eal.cores[{i}]"), format!("CPU {core}"))
                };
                self.error(
                    &path,
                    format!(
                        "{what} is not online on this host (online: {}){}",
                        format_cpu_list(online),
                        if map.is_empty() {
                            "; eal.cpu_map can place lcores on existing CPUs"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        let memory_mb = self.int(
            "eal.memory_mb",
            raw.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
            64,
            u64::from(u32::MAX),
        );
        let file_prefix = raw.file_prefix.as_deref().unwrap_or(DEFAULT_FILE_PREFIX);
        let file_prefix = self.name(
            "eal.file_prefix",
            file_prefix,
            64,
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
            "[A-Za-z0-9_-]",
        );
        let args = raw.args.clone().unwrap_or_default();
        for (i, arg) in args.iter().enumerate() {
            let path = format!("eal.args[{i}]");
            if arg.is_empty() {
                self.error(&path, "empty EAL argument");
            } else if let Some((option, key)) = derived_eal_arg(arg) {
                self.error(
                    &path,
                    format!("EAL option `{option}` is derived from `{key}`; set it there"),
                );
            }
        }
        let cores = cores.into_iter().collect::<Option<Vec<_>>>();
        let cpus = cpus.into_iter().collect::<Option<Vec<_>>>();
        Some(EalConfig {
            cores: cores.filter(|c| !c.is_empty())?,
            cpus: cpus?,
            memory_mb: memory_mb?,
            hugepages: raw.hugepages.unwrap_or(true),
            file_prefix: file_prefix?,
            args,
        })
    }

    fn ports(&mut self, raw: &[RawPort]) -> Option<Vec<PortConfig>> {
        if raw.is_empty() {
            self.error("ports", "needs at least one port");
        } else if raw.len() > MAX_PORTS {
            self.error(
                "ports",
                format!(
                    "{} ports exceed RTE_MAX_ETHPORTS ({MAX_PORTS}) of the linked DPDK",
                    raw.len()
                ),
            );
        }
        let mut names = HashSet::new();
        let mut devices: Vec<(String, String)> = Vec::new();
        let mut ports = Vec::with_capacity(raw.len());
        for (i, raw_port) in raw.iter().enumerate() {
            let port = self.port(i, raw_port, &mut names, &mut devices);
            ports.push(port);
        }
        ports
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .filter(|p| !p.is_empty())
    }

    fn port(
        &mut self,
        index: usize,
        raw: &RawPort,
        names: &mut HashSet<String>,
        devices: &mut Vec<(String, String)>,
    ) -> Option<PortConfig> {
        let path = format!("ports[{index}]");
        let name = self.name(
            &format!("{path}.name"),
            &raw.name,
            15,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-',
            "[a-z0-9_-]",
        );
        if let Some(name) = &name {
            if !names.insert(name.clone()) {
                self.error(
                    &format!("{path}.name"),
                    format!("port name `{name}` is used twice"),
                );
            }
        }
        let device = self.device(&format!("{path}.device"), &raw.device, devices);
        let addresses = self.port_addresses(&path, index, raw);
        let has_ipv6 = addresses.iter().flatten().any(|net| net.addr().is_ipv6());
        let mtu_path = format!("{path}.mtu");
        let mtu: Option<u16> = self.int(&mtu_path, raw.mtu.unwrap_or(DEFAULT_MTU), 68, 9000);
        let mtu = mtu.filter(|&mtu| {
            let too_small = has_ipv6 && mtu < 1280;
            if too_small {
                self.error(
                    &mtu_path,
                    format!("{mtu} is below 1280, the IPv6 minimum MTU"),
                );
            }
            !too_small
        });
        let rx = self.descriptors(&format!("{path}.rx_descriptors"), raw.rx_descriptors);
        let tx = self.descriptors(&format!("{path}.tx_descriptors"), raw.tx_descriptors);
        Some(PortConfig {
            name: name?,
            device: device?,
            addresses: addresses.into_iter().collect::<Option<_>>()?,
            mtu: mtu?,
            rx_descriptors: rx?,
            tx_descriptors: tx?,
        })
    }

    /// A port device at `ports[i].device`; `seen` holds (ethdev name, `ports[i]`) of
    /// the ports before it.
    fn device(
        &mut self,
        path: &str,
        text: &str,
        seen: &mut Vec<(String, String)>,
    ) -> Option<PortDevice> {
        let device: PortDevice = match text.parse() {
            Ok(device) => device,
            Err(err) => {
                self.error(path, format!("`{text}`: {err}"));
                return None;
            }
        };
        let ethdev = device.ethdev_name().to_string();
        if let Some((_, other)) = seen.iter().find(|(name, _)| *name == ethdev) {
            let other = other.clone();
            self.error(path, format!("device {ethdev} is already used by {other}"));
        }
        let port_path = path.strip_suffix(".device").unwrap_or(path);
        seen.push((ethdev, port_path.to_string()));
        Some(device)
    }

    fn descriptors(&mut self, path: &str, value: Option<u64>) -> Option<u16> {
        let value = value.unwrap_or(DEFAULT_DESCRIPTORS);
        let count = self.int(path, value, 64, 16384)?;
        if !value.is_power_of_two() {
            self.error(path, format!("{value} is not a power of two"));
            return None;
        }
        Some(count)
    }

    /// The port's own addresses; records each good one as a connected subnet.
    fn port_addresses(
        &mut self,
        port_path: &str,
        port_index: usize,
        raw: &RawPort,
    ) -> Vec<Option<IpNet>> {
        let mut out = Vec::new();
        for (j, text) in raw.addresses.iter().flatten().enumerate() {
            let path = format!("{port_path}.addresses[{j}]");
            let net = self.net(&path, text).filter(|&net| {
                let problem = port_address_problem(net).or_else(|| {
                    if let Some(other) = self.connected.iter().find(|c| c.net.addr() == net.addr())
                    {
                        return Some(format!(
                            "address {} is already on port {}",
                            net.addr(),
                            other.port
                        ));
                    }
                    let other = self.connected.iter().find(|c| {
                        c.port_index != port_index
                            && (c.net.contains(&net.network()) || net.contains(&c.net.network()))
                    })?;
                    Some(format!(
                        "subnet {} overlaps {} of port {}",
                        net.trunc(),
                        other.net.trunc(),
                        other.port
                    ))
                });
                if let Some(problem) = &problem {
                    self.error(&path, problem);
                }
                problem.is_none()
            });
            if let Some(net) = net {
                self.connected.push(Connected {
                    net,
                    port_index,
                    port: raw.name.clone(),
                });
            }
            out.push(net);
        }
        out
    }

    fn workers(&mut self, raw: &RawWorkers, eal_cores: &[u32]) -> Option<WorkersConfig> {
        if raw.cores.is_empty() {
            self.error("workers.cores", "needs at least one worker core");
        }
        let cores = self.cores("workers.cores", &raw.cores);
        // With no EAL cores, that error alone is reported.
        if let Some(&management) = eal_cores.first() {
            for (i, core) in cores.iter().enumerate() {
                let path = format!("workers.cores[{i}]");
                match *core {
                    Some(core) if core == management => self.error(
                        &path,
                        format!(
                            "core {core} is the management core (eal.cores[0]); \
                             a worker needs a core of its own"
                        ),
                    ),
                    Some(core) if !eal_cores.contains(&core) => self.error(
                        &path,
                        format!("core {core} is not in eal.cores {eal_cores:?}"),
                    ),
                    _ => {}
                }
            }
        }
        let burst = self.int("workers.burst", raw.burst.unwrap_or(DEFAULT_BURST), 1, 256);
        let idle_sleep_max = self.bounded_duration(
            "workers.idle_sleep_max",
            raw.idle_sleep_max.as_deref(),
            DEFAULT_IDLE_SLEEP_MAX,
            (Duration::from_micros(1), Duration::from_millis(100)),
        );
        let cores = cores.into_iter().collect::<Option<Vec<_>>>();
        Some(WorkersConfig {
            cores: cores.filter(|c| !c.is_empty())?,
            burst: burst?,
            idle_backoff: raw.idle_backoff.unwrap_or(false),
            idle_sleep_max: idle_sleep_max?,
        })
    }

    fn mempool(
        &mut self,
        raw: Option<&RawMempool>,
        ports: Option<&[PortConfig]>,
        workers: Option<&WorkersConfig>,
    ) -> Option<MempoolConfig> {
        let default = RawMempool::default();
        let raw = raw.unwrap_or(&default);
        let mbufs = raw.mbufs.unwrap_or(DEFAULT_MBUFS);
        // Every worker's RX and TX rings on every port may be full at once, and each
        // worker holds a few bursts in flight.
        let needed = match (ports, workers) {
            (Some(ports), Some(workers)) => {
                let n = workers.cores.len() as u64;
                let rings: u64 = ports
                    .iter()
                    .map(|p| n * (u64::from(p.rx_descriptors) + u64::from(p.tx_descriptors)))
                    .sum();
                (rings + 4 * u64::from(workers.burst) * n).max(1023)
            }
            _ => 1023,
        };
        let mbufs = if mbufs < needed {
            self.error(
                "mempool.mbufs",
                format!(
                    "{mbufs} is too few: need at least {needed} (RX and TX descriptors of \
                     every port for each worker, plus 4 bursts per worker, and at least 1023)"
                ),
            );
            None
        } else {
            self.int::<u32>("mempool.mbufs", mbufs, needed, u64::from(u32::MAX))
        };
        let cache_size = self.int(
            "mempool.cache_size",
            raw.cache_size.unwrap_or(DEFAULT_MEMPOOL_CACHE),
            0,
            MAX_MEMPOOL_CACHE,
        );
        Some(MempoolConfig {
            mbufs: mbufs?,
            cache_size: cache_size?,
        })
    }

    fn management(&mut self, raw: Option<&RawManagement>) -> Option<ManagementConfig> {
        let default = RawManagement::default();
        let raw = raw.unwrap_or(&default);
        let path = "management.metrics_listen";
        let listen_text = raw
            .metrics_listen
            .as_deref()
            .unwrap_or(DEFAULT_METRICS_LISTEN);
        let metrics_listen = match listen_text.parse::<SocketAddr>() {
            Ok(addr) if addr.port() == 0 => {
                self.error(
                    path,
                    "port 0 picks a random port; Prometheus needs a fixed one",
                );
                None
            }
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    path,
                    format!(
                        "`{listen_text}` is not ADDRESS:PORT such as \"127.0.0.1:9800\" \
                         or \"[::1]:9800\""
                    ),
                );
                None
            }
        };
        let path = "management.control_socket";
        let socket = raw
            .control_socket
            .as_deref()
            .unwrap_or(DEFAULT_CONTROL_SOCKET);
        let control_socket = if !socket.starts_with('/') {
            self.error(path, format!("`{socket}` is not an absolute path"));
            None
        } else if socket.ends_with('/') {
            self.error(
                path,
                format!("`{socket}` names a directory, not a socket file"),
            );
            None
        } else if socket.len() > MAX_SOCKET_PATH {
            self.error(
                path,
                format!(
                    "path is {} bytes; a Unix socket path holds at most {MAX_SOCKET_PATH}",
                    socket.len()
                ),
            );
            None
        } else {
            Some(PathBuf::from(socket))
        };
        Some(ManagementConfig {
            metrics_listen: metrics_listen?,
            control_socket: control_socket?,
            exception_path: raw.exception_path.unwrap_or(true),
        })
    }

    fn connections(&mut self, raw: Option<&RawConnections>) -> Option<ConnectionsConfig> {
        let default = RawConnections::default();
        let raw = raw.unwrap_or(&default);
        let max = self.int(
            "connections.max",
            raw.max.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            1,
            100_000_000,
        );
        let default_timeouts = RawTimeouts::default();
        let t = raw.timeouts.as_ref().unwrap_or(&default_timeouts);
        let d = Timeouts::default();
        let mut timeout = |key: &str, text: &Option<String>, default: Duration| {
            let path = format!("connections.timeouts.{key}");
            let duration = self.duration(&path, text.as_deref(), default)?;
            if duration.is_zero() {
                self.error(&path, "must be greater than zero");
                return None;
            }
            Some(duration)
        };
        let timeouts = [
            timeout("tcp_established", &t.tcp_established, d.tcp_established),
            timeout("tcp_syn", &t.tcp_syn, d.tcp_syn),
            timeout("tcp_fin", &t.tcp_fin, d.tcp_fin),
            timeout("tcp_time_wait", &t.tcp_time_wait, d.tcp_time_wait),
            timeout("tcp_close", &t.tcp_close, d.tcp_close),
            timeout("tcp_close_wait", &t.tcp_close_wait, d.tcp_close_wait),
            timeout("tcp_last_ack", &t.tcp_last_ack, d.tcp_last_ack),
            timeout("udp", &t.udp, d.udp),
        ];
        let [est, syn, fin, time_wait, close, close_wait, last_ack, udp] = timeouts;
        Some(ConnectionsConfig {
            max: max?,
            timeouts: Timeouts {
                tcp_established: est?,
                tcp_syn: syn?,
                tcp_fin: fin?,
                tcp_time_wait: time_wait?,
                tcp_close: close?,
                tcp_close_wait: close_wait?,
                tcp_last_ack: last_ack?,
                udp: udp?,
            },
        })
    }

    /// True when a connected subnet holds `ip`.
    fn is_connected(&self, ip: IpAddr) -> bool {
        self.connected.iter().any(|c| c.net.contains(&ip))
    }

    fn is_own_address(&self, ip: IpAddr) -> Option<&str> {
        self.connected
            .iter()
            .find(|c| c.net.addr() == ip)
            .map(|c| c.port.as_str())
    }

    /// Reports `ip` unless it lies in a connected subnet, listing the subnets.
    fn require_connected(&mut self, path: &str, ip: IpAddr, what: &str) -> bool {
        if self.is_connected(ip) {
            return true;
        }
        let mut subnets = String::new();
        for c in self
            .connected
            .iter()
            .filter(|c| c.net.addr().is_ipv4() == ip.is_ipv4())
        {
            let sep = if subnets.is_empty() { "" } else { ", " };
            let _ = write!(subnets, "{sep}{} on {}", c.net.trunc(), c.port);
        }
        if subnets.is_empty() {
            subnets = format!("no port has an {} address", family(ip));
        }
        self.error(
            path,
            format!("{what} {ip} is not inside any port's connected subnet ({subnets})"),
        );
        false
    }

    /// Reports `ip` if it is one of the ports' own addresses.
    fn reject_own_address(&mut self, path: &str, ip: IpAddr, what: &str) -> bool {
        if let Some(port) = self.is_own_address(ip) {
            let message = format!("{what} {ip} is the address of port {port}");
            self.error(path, message);
            return false;
        }
        true
    }

    /// The routes, and every prefix that parsed (a bad next hop does not make the
    /// prefix's destinations unroutable for the real-server checks).
    fn routes(&mut self, raw: &[RawRoute]) -> (Vec<Option<RouteConfig>>, Vec<IpNet>) {
        let mut prefixes = Vec::with_capacity(raw.len());
        let mut routes = Vec::with_capacity(raw.len());
        for (i, route) in raw.iter().enumerate() {
            let path = format!("routes[{i}]");
            let prefix_path = format!("{path}.prefix");
            let prefix = self.net(&prefix_path, &route.prefix).filter(|&net| {
                let exact = net.trunc() == net;
                if !exact {
                    let message = format!(
                        "prefix {net} has host bits set; did you mean {}?",
                        net.trunc()
                    );
                    self.error(&prefix_path, message);
                }
                exact
            });
            prefixes.push(prefix);
            let via_path = format!("{path}.via");
            let via = self
                .unicast_ip(&via_path, &route.via)
                .filter(|&via| match prefix {
                    Some(prefix) if prefix.addr().is_ipv4() != via.is_ipv4() => {
                        let message = format!(
                            "next hop {via} is {} but prefix {prefix} is {}",
                            family(via),
                            family(prefix.addr())
                        );
                        self.error(&via_path, message);
                        false
                    }
                    _ => true,
                });
            let via = via.filter(|&via| {
                self.reject_own_address(&via_path, via, "next hop")
                    && self.require_connected(&via_path, via, "next hop")
            });
            routes.push(
                prefix
                    .zip(via)
                    .map(|(prefix, via)| RouteConfig { prefix, via }),
            );
        }
        self.unique_items("routes", Some("prefix"), &prefixes, "prefix");
        (routes, prefixes.into_iter().flatten().collect())
    }

    fn neighbors(&mut self, raw: &[RawNeighbor]) -> Vec<Option<NeighborConfig>> {
        let mut ips = Vec::with_capacity(raw.len());
        let mut neighbors = Vec::with_capacity(raw.len());
        for (i, neighbor) in raw.iter().enumerate() {
            let path = format!("neighbors[{i}]");
            let ip_path = format!("{path}.ip");
            let ip = self.unicast_ip(&ip_path, &neighbor.ip);
            ips.push(ip);
            let ip = ip.filter(|&ip| {
                self.reject_own_address(&ip_path, ip, "neighbor")
                    && self.require_connected(&ip_path, ip, "neighbor")
            });
            let mac_path = format!("{path}.mac");
            let mac = match neighbor.mac.parse::<MacAddr>() {
                Ok(mac) if mac.is_unicast() => Some(mac),
                Ok(mac) => {
                    self.error(&mac_path, format!("{mac} is not a unicast MAC address"));
                    None
                }
                Err(err) => {
                    self.error(&mac_path, format!("`{}`: {err}", neighbor.mac));
                    None
                }
            };
            neighbors.push(ip.zip(mac).map(|(ip, mac)| NeighborConfig { ip, mac }));
        }
        self.unique_items("neighbors", Some("ip"), &ips, "neighbor");
        neighbors
    }

    fn services(&mut self, raw: &[RawService], routes: &[IpNet]) -> Vec<Option<ServiceConfig>> {
        if raw.len() > MAX_SERVICES {
            self.error(
                "services",
                format!("{} services exceed the limit of {MAX_SERVICES}", raw.len()),
            );
        }
        // Parsed quietly first so that a real server can be checked against every VIP;
        // bad VIPs are reported in the per-service pass.
        let vips: Vec<(IpAddr, &str)> = raw
            .iter()
            .filter_map(|s| s.vip.parse().ok().map(|vip| (vip, s.name.as_str())))
            .collect();
        let reach = Reach {
            routes,
            vips: &vips,
        };
        let mut names = HashSet::new();
        let mut identities: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        let mut services = Vec::with_capacity(raw.len());
        for (i, raw_service) in raw.iter().enumerate() {
            let path = format!("services[{i}]");
            let service = self.service(&path, raw_service, &reach);
            if let Some(name) = &service.name {
                if !names.insert(name.clone()) {
                    self.error(
                        &format!("{path}.name"),
                        format!("service name `{name}` is used twice"),
                    );
                }
            }
            if let (Some(vip), Some(port), Some(protocol)) =
                (service.vip, service.port, service.protocol)
            {
                let first = *identities.entry((vip, port, protocol)).or_insert(i);
                if first != i {
                    let endpoint = SocketAddr::new(vip, port);
                    let other = &raw[first].name;
                    let message = format!("{endpoint}/{protocol} is already service `{other}`");
                    self.error(&format!("{path}.vip"), message);
                }
            }
            services.push(service.assemble());
        }
        services
    }

    fn service(&mut self, path: &str, raw: &RawService, reach: &Reach) -> ServiceParts {
        let name = self.name(
            &format!("{path}.name"),
            &raw.name,
            32,
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-',
            "[A-Za-z0-9_.-]",
        );
        let vip_path = format!("{path}.vip");
        let vip = self
            .unicast_ip(&vip_path, &raw.vip)
            .filter(|&vip| self.reject_own_address(&vip_path, vip, "VIP"));
        let port: Option<u16> = self.int(&format!("{path}.port"), raw.port, 1, 65535);
        let protocol: Option<Protocol> = self.keyword(&format!("{path}.protocol"), &raw.protocol);
        let mode: Option<ForwardMode> = self.keyword(&format!("{path}.mode"), &raw.mode);
        let scheduler = match &raw.scheduler {
            Some(text) => self.keyword(&format!("{path}.scheduler"), text),
            None => Some(DEFAULT_SCHEDULER),
        };
        let persistence = self.duration(
            &format!("{path}.persistence"),
            raw.persistence.as_deref(),
            Duration::ZERO,
        );
        let persistence_netmask = vip.and_then(|vip| {
            let bits = max_prefix_len(vip);
            let value = raw.persistence_netmask.unwrap_or(u64::from(bits));
            self.int(
                &format!("{path}.persistence_netmask"),
                value,
                0,
                u64::from(bits),
            )
        });
        let local_addresses = self.local_addresses(path, raw, mode, vip);
        let real_servers = self.real_servers(path, raw, mode, vip, port, reach);
        let health_check =
            self.health_check(&format!("{path}.health_check"), raw.health_check.as_ref());
        ServiceParts {
            health_check,
            name,
            vip,
            port,
            protocol,
            mode,
            scheduler,
            persistence,
            persistence_netmask,
            local_addresses,
            real_servers,
        }
    }

    fn health_check(
        &mut self,
        path: &str,
        raw: Option<&RawHealthCheck>,
    ) -> Option<HealthCheckConfig> {
        let default = HealthCheckConfig::default();
        let Some(raw) = raw else {
            return Some(default);
        };
        let kind: Option<CheckKind> = self.keyword(&format!("{path}.type"), &raw.kind);
        let interval = self.bounded_duration(
            &format!("{path}.interval"),
            raw.interval.as_deref(),
            default.interval,
            (Duration::from_millis(100), Duration::from_secs(3600)),
        );
        let timeout = self.bounded_duration(
            &format!("{path}.timeout"),
            raw.timeout.as_deref(),
            default.timeout,
            (Duration::from_millis(10), Duration::from_secs(3600)),
        );
        if let (Some(i), Some(t)) = (interval, timeout) {
            if t > i {
                self.error(
                    &format!("{path}.timeout"),
                    format!("timeout {t:?} exceeds the interval {i:?}"),
                );
            }
        }
        let rise = self.int(
            &format!("{path}.rise"),
            raw.rise.unwrap_or(u64::from(default.rise)),
            1,
            100,
        );
        let fall = self.int(
            &format!("{path}.fall"),
            raw.fall.unwrap_or(u64::from(default.fall)),
            1,
            100,
        );
        let port = match raw.port {
            Some(p) => self
                .int::<u16>(&format!("{path}.port"), p, 1, 65535)
                .map(Some),
            None => Some(None),
        };
        // Only once the type is known: an unknown type is one error, not three.
        let not_http = kind.is_some_and(|k| k != CheckKind::Http);
        if raw.path.is_some() && not_http {
            self.error(
                &format!("{path}.path"),
                "only an http check requests a path",
            );
        }
        if raw.expect_status.is_some() && not_http {
            self.error(
                &format!("{path}.expect_status"),
                "only an http check expects a status",
            );
        }
        let check_path = raw.path.clone().unwrap_or(default.path);
        if !check_path.starts_with('/')
            || check_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            self.error(
                &format!("{path}.path"),
                format!("`{check_path}` is not an absolute URL path without spaces"),
            );
        }
        let expect_status = self.int(
            &format!("{path}.expect_status"),
            raw.expect_status
                .unwrap_or(u64::from(default.expect_status)),
            100,
            599,
        );
        let passive = raw.passive.unwrap_or(true);
        if raw.passive == Some(true) && kind == Some(CheckKind::None) {
            self.error(
                &format!("{path}.passive"),
                "passive checking takes servers out; it needs an active check (tcp or http) to bring them back",
            );
        }
        Some(HealthCheckConfig {
            kind: kind?,
            interval: interval?,
            timeout: timeout?,
            rise: rise?,
            fall: fall?,
            port: port?,
            path: check_path,
            expect_status: expect_status?,
            passive: passive && kind != Some(CheckKind::None),
        })
    }

    fn local_addresses(
        &mut self,
        service_path: &str,
        raw: &RawService,
        mode: Option<ForwardMode>,
        vip: Option<IpAddr>,
    ) -> Option<Vec<IpAddr>> {
        let path = format!("{service_path}.local_addresses");
        let texts = raw.local_addresses.as_deref().unwrap_or_default();
        match mode {
            Some(ForwardMode::FullNat) if texts.is_empty() => {
                self.error(
                    &path,
                    "mode fullnat needs at least one local address \
                     (the source address towards the real servers)",
                );
                return None;
            }
            Some(mode) if mode != ForwardMode::FullNat && !texts.is_empty() => {
                self.error(
                    &path,
                    format!("only mode fullnat uses local addresses, this service is {mode}"),
                );
                return None;
            }
            _ => {}
        }
        let mut addresses = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let item = format!("{path}[{i}]");
            let ip = self.unicast_ip(&item, text).filter(|&ip| match vip {
                // Real servers share the VIP's family, so local addresses must too.
                Some(vip) if vip.is_ipv4() != ip.is_ipv4() => {
                    let message = format!(
                        "local address {ip} is {} but the real servers are {} like the VIP",
                        family(ip),
                        family(vip)
                    );
                    self.error(&item, message);
                    false
                }
                _ => self.require_connected(&item, ip, "local address"),
            });
            addresses.push(ip);
        }
        self.unique_items(&path, None, &addresses, "local address");
        addresses.into_iter().collect()
    }

    fn real_servers(
        &mut self,
        service_path: &str,
        raw: &RawService,
        mode: Option<ForwardMode>,
        vip: Option<IpAddr>,
        service_port: Option<u16>,
        reach: &Reach,
    ) -> Option<Vec<RealServerConfig>> {
        let raw_servers = raw.real_servers.as_deref().unwrap_or_default();
        let mut servers = Vec::with_capacity(raw_servers.len());
        let mut endpoints = Vec::with_capacity(raw_servers.len());
        for (i, rs) in raw_servers.iter().enumerate() {
            let path = format!("{service_path}.real_servers[{i}]");
            let address_path = format!("{path}.address");
            let address = self
                .unicast_ip(&address_path, &rs.address)
                .filter(|&ip| self.real_server_address(&address_path, ip, mode, vip, reach));
            let port_path = format!("{path}.port");
            let port = match (rs.port, service_port) {
                (Some(port), _) => self.int::<u16>(&port_path, port, 1, 65535),
                (None, port) => port,
            };
            let port = port.filter(|&port| match (mode, service_port) {
                (Some(mode @ (ForwardMode::Dr | ForwardMode::Tunnel)), Some(service_port))
                    if port != service_port =>
                {
                    let message = format!(
                        "port {port} differs from the service port {service_port}; \
                         mode {mode} cannot rewrite ports"
                    );
                    self.error(&port_path, message);
                    false
                }
                _ => true,
            });
            let weight = self.int(
                &format!("{path}.weight"),
                rs.weight.unwrap_or(DEFAULT_WEIGHT),
                0,
                65535,
            );
            endpoints.push(
                address
                    .zip(port)
                    .map(|(address, port)| SocketAddr::new(address, port)),
            );
            servers.push(match (address, port, weight) {
                (Some(address), Some(port), Some(weight)) => Some(RealServerConfig {
                    address,
                    port,
                    weight,
                }),
                _ => None,
            });
        }
        self.unique_items(
            &format!("{service_path}.real_servers"),
            Some("address"),
            &endpoints,
            "real server",
        );
        servers.into_iter().collect()
    }

    /// Checks a real server address against the VIP and the routing; reports and
    /// returns false on a problem.
    fn real_server_address(
        &mut self,
        path: &str,
        ip: IpAddr,
        mode: Option<ForwardMode>,
        vip: Option<IpAddr>,
        reach: &Reach,
    ) -> bool {
        if let Some(vip) = vip.filter(|vip| vip.is_ipv4() != ip.is_ipv4()) {
            let message = format!(
                "real server {ip} is {} but the VIP {vip} is {}",
                family(ip),
                family(vip)
            );
            self.error(path, message);
            return false;
        }
        if !self.reject_own_address(path, ip, "real server") {
            return false;
        }
        if let Some((_, service)) = reach.vips.iter().find(|(v, _)| *v == ip) {
            self.error(
                path,
                format!("real server {ip} is the VIP of service `{service}`"),
            );
            return false;
        }
        match mode {
            Some(ForwardMode::Dr) => self.require_connected(path, ip, "real server (mode dr)"),
            Some(_) if !self.is_connected(ip) && !reach.routes.iter().any(|r| r.contains(&ip)) => {
                self.error(
                    path,
                    format!(
                        "real server {ip} is not routable: no connected subnet or route covers it"
                    ),
                );
                false
            }
            _ => true,
        }
    }
}

/// The checked parts of one service, assembled once all have been checked.
struct ServiceParts {
    health_check: Option<HealthCheckConfig>,
    name: Option<String>,
    vip: Option<IpAddr>,
    port: Option<u16>,
    protocol: Option<Protocol>,
    mode: Option<ForwardMode>,
    scheduler: Option<Scheduler>,
    persistence: Option<Duration>,
    persistence_netmask: Option<u8>,
    local_addresses: Option<Vec<IpAddr>>,
    real_servers: Option<Vec<RealServerConfig>>,
}

impl ServiceParts {
    fn assemble(self) -> Option<ServiceConfig> {
        Some(ServiceConfig {
            name: self.name?,
            vip: self.vip?,
            port: self.port?,
            protocol: self.protocol?,
            mode: self.mode?,
            scheduler: self.scheduler?,
            persistence: self.persistence?,
            persistence_netmask: self.persistence_netmask?,
            local_addresses: self.local_addresses?,
            real_servers: self.real_servers?,
            health_check: self.health_check?,
        })
    }
}

/// Not unspecified, multicast, loopback or the IPv4 limited broadcast.
fn is_unicast(ip: IpAddr) -> bool {
    let special = match ip {
        IpAddr::V4(v4) => v4.is_broadcast(),
        IpAddr::V6(_) => false,
    };
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || special)
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

/// Why `net` cannot be a port address, if it cannot.
fn port_address_problem(net: IpNet) -> Option<String> {
    let addr = net.addr();
    if !is_unicast(addr) {
        return Some(format!("{addr} is not a unicast address"));
    }
    if net.prefix_len() == 0 {
        return Some(format!(
            "{net}: a connected subnet cannot be the whole address space"
        ));
    }
    // /31 and /32 (RFC 3021) and IPv6 /127 and /128 have no reserved host numbers.
    let reserved_hosts = net.max_prefix_len() - net.prefix_len() >= 2;
    if reserved_hosts && addr == net.network() {
        let what = if addr.is_ipv4() {
            "network address"
        } else {
            "subnet-router anycast address"
        };
        return Some(format!("{addr} is the {what} of {}", net.trunc()));
    }
    if reserved_hosts && addr.is_ipv4() && addr == net.broadcast() {
        return Some(format!(
            "{addr} is the broadcast address of {}",
            net.trunc()
        ));
    }
    None
}

/// The option and the config key it conflicts with, if `arg` is an EAL option that
/// ferrovs derives from the config (`-l0-3`, `--file-prefix=x`, `-m`, ...).
fn derived_eal_arg(arg: &str) -> Option<(&'static str, &'static str)> {
    DERIVED_EAL_ARGS.iter().copied().find(|(option, _)| {
        if option.starts_with("--") {
            arg == *option
                || arg
                    .strip_prefix(option)
                    .is_some_and(|rest| rest.starts_with('='))
        } else {
            !arg.starts_with("--") && arg.starts_with(option)
        }
    })
}

/// `0-3,5` for [0, 1, 2, 3, 5] (sorted input).
fn format_cpu_list(cpus: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let first = cpus[i];
        let mut last = first;
        while i + 1 < cpus.len() && cpus[i + 1] == last + 1 {
            i += 1;
            last = cpus[i];
        }
        let sep = if out.is_empty() { "" } else { "," };
        let _ = if first == last {
            write!(out, "{sep}{first}")
        } else {
            write!(out, "{sep}{first}-{last}")
        };
        i += 1;
    }
    out
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
