//! The appliance's own sections: `eal`, `ports`, `workers`, `mempool`,
//! `management` and `connections`: limits, defaults, and what the host allows.

use super::*;
use crate::conn::MAX_CONNECTIONS;
use std::os::unix::fs::FileTypeExt;

impl Checker<'_> {
    /// Core ids, checked for range and repeats; `None` entries did not parse.
    pub(super) fn cores(&mut self, path: &str, raw: &[u64]) -> Vec<Option<u32>> {
        let cores: Vec<Option<u32>> = raw
            .iter()
            .enumerate()
            .map(|(i, &core)| self.int(&format!("{path}[{i}]"), core, 0, u64::from(u32::MAX)))
            .collect();
        self.unique_items(path, None, &cores, "core");
        cores
    }

    pub(super) fn eal(&mut self, raw: &RawEal, host: &HostFacts) -> Option<EalConfig> {
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

    pub(super) fn ports(&mut self, raw: &[RawPort]) -> Option<Vec<PortConfig>> {
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

    pub(super) fn port(
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
        let label = format!("port {}", raw.name);
        let addresses =
            self.interface_addresses(&path, index, (&label, &raw.name), raw.addresses.as_deref());
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
        let rp_filter = self.rp_filter(&path, raw);
        let members = self.members(&path, raw, device.as_ref(), devices);
        Some(PortConfig {
            name: name?,
            device: device?,
            addresses: addresses.into_iter().collect::<Option<_>>()?,
            mtu: mtu?,
            rx_descriptors: rx?,
            tx_descriptors: tx?,
            rp_filter: rp_filter?,
            members: members?,
        })
    }

    /// `ports[i].members`: the member devices of a bond (`device` is
    /// `net_bonding<n>`), which needs at least one; refused on any other port.
    /// Members are devices like a port's, unique among every port and member.
    fn members(
        &mut self,
        path: &str,
        raw: &RawPort,
        device: Option<&PortDevice>,
        devices: &mut Vec<(String, String)>,
    ) -> Option<Vec<PortDevice>> {
        let list = raw.members.as_deref().unwrap_or_default();
        let members_path = format!("{path}.members");
        let bond = device.is_some_and(is_bonding);
        if let Some(PortDevice::Vdev { spec, .. }) = device.filter(|_| bond) {
            let named = spec
                .split(',')
                .skip(1)
                .any(|arg| arg.starts_with("slave=") || arg.starts_with("member="));
            if named {
                self.error(
                    &format!("{path}.device"),
                    "name the bond's members in ports[].members, not in the device spec",
                );
                return None;
            }
        }
        if bond && list.is_empty() {
            self.error(
                &members_path,
                "a net_bonding port needs its member devices (ports[].members)",
            );
            return None;
        }
        if !bond && !list.is_empty() {
            self.error(
                &members_path,
                "members are for a net_bonding device (a bond of them)",
            );
            return None;
        }
        let mut members = Vec::with_capacity(list.len());
        let mut ok = true;
        for (j, text) in list.iter().enumerate() {
            let member_path = format!("{members_path}[{j}]");
            match self.device(&member_path, text, devices) {
                Some(m) if is_bonding(&m) => {
                    self.error(&member_path, "a bond cannot be a member of a bond");
                    ok = false;
                }
                Some(m) => members.push(m),
                None => ok = false,
            }
        }
        ok.then_some(members)
    }

    /// `ports[i].rp_filter`, `off` when absent. `strict` on a port without
    /// addresses is refused: no route can leave by it, so it would drop every new
    /// connection.
    fn rp_filter(&mut self, path: &str, raw: &RawPort) -> Option<RpFilter> {
        let Some(text) = &raw.rp_filter else {
            return Some(RpFilter::Off);
        };
        let path = format!("{path}.rp_filter");
        let mode: RpFilter = self.keyword(&path, text)?;
        if mode == RpFilter::Strict && raw.addresses.as_ref().is_none_or(Vec::is_empty) {
            self.error(
                &path,
                "`strict` on a port without addresses: no route leaves by it, so every \
                 new connection would be refused",
            );
            return None;
        }
        Some(mode)
    }

    /// A port device at `ports[i].device`; `seen` holds (ethdev name, `ports[i]`) of
    /// the ports before it.
    pub(super) fn device(
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

    pub(super) fn descriptors(&mut self, path: &str, value: Option<u64>) -> Option<u16> {
        let value = value.unwrap_or(DEFAULT_DESCRIPTORS);
        let count = self.int(path, value, 64, 16384)?;
        if !value.is_power_of_two() {
            self.error(path, format!("{value} is not a power of two"));
            return None;
        }
        Some(count)
    }

    /// An interface's own addresses (a port's, at `ports[i]`, or a VLAN's, at
    /// `vlans[j]`); records each good one as a connected subnet of interface
    /// `port_index`, named (`port wan`, `wan`) in messages.
    pub(super) fn interface_addresses(
        &mut self,
        port_path: &str,
        port_index: usize,
        (label, name): (&str, &str),
        raw: Option<&[String]>,
    ) -> Vec<Option<IpNet>> {
        let mut out = Vec::new();
        for (j, text) in raw.unwrap_or_default().iter().enumerate() {
            let path = format!("{port_path}.addresses[{j}]");
            let net = self.net(&path, text).filter(|&net| {
                let problem = port_address_problem(net).or_else(|| {
                    if let Some(other) = self.connected.iter().find(|c| c.net.addr() == net.addr())
                    {
                        return Some(format!(
                            "address {} is already on {}",
                            net.addr(),
                            other.port
                        ));
                    }
                    let other = self.connected.iter().find(|c| {
                        c.port_index != port_index
                            && (c.net.contains(&net.network()) || net.contains(&c.net.network()))
                    })?;
                    Some(format!(
                        "subnet {} overlaps {} of {}",
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
                    port: label.to_string(),
                    name: name.to_string(),
                });
            }
            out.push(net);
        }
        out
    }

    pub(super) fn workers(&mut self, raw: &RawWorkers, eal_cores: &[u32]) -> Option<WorkersConfig> {
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

    /// A mode-4 (802.3ad) bond runs LACP in its RX and TX bursts, which DPDK needs
    /// at least every 100 ms: an idle worker's longest sleep, plus one iteration
    /// of bursts and timers, must fit in that with room to spare.
    pub(super) fn lacp_polling(&mut self, ports: &[PortConfig], workers: &WorkersConfig) {
        const MAX_LACP_IDLE_SLEEP: Duration = Duration::from_millis(50);
        if !workers.idle_backoff || workers.idle_sleep_max <= MAX_LACP_IDLE_SLEEP {
            return;
        }
        let lacp = ports.iter().position(|p| {
            matches!(&p.device, PortDevice::Vdev { spec, .. }
                if p.is_bond() && spec.split(',').any(|arg| arg == "mode=4"))
        });
        if let Some(i) = lacp {
            self.error(
                "workers.idle_sleep_max",
                format!(
                    "at most 50ms with a mode-4 (802.3ad) bond (ports[{i}]): LACP needs \
                     the bond's bursts at least every 100 ms"
                ),
            );
        }
    }

    pub(super) fn mempool(
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

    /// `announce`: the table must be one a routing daemon can own, and the routes
    /// need the exception path (the daemon talks BGP through it).
    pub(super) fn announce(
        &mut self,
        raw: &RawAnnounce,
        management: Option<&ManagementConfig>,
        ports: &[RawPort],
    ) -> Option<AnnounceConfig> {
        let path = "announce.kernel_table";
        let kernel_table = match raw.kernel_table {
            0 => {
                self.error(path, "table 0 is no table (RT_TABLE_UNSPEC)");
                None
            }
            t @ 253..=255 => {
                let name = ["default", "main", "local"][(t - 253) as usize];
                self.error(
                    path,
                    format!(
                        "table {t} is the kernel's `{name}` table; use a table of its own \
                         (1-252 or above 255) for the routing daemon to import"
                    ),
                );
                None
            }
            t => self.int(path, t, 1, u64::from(u32::MAX)),
        };
        let shutdown_grace = self.bounded_duration(
            "announce.shutdown_grace",
            raw.shutdown_grace.as_deref(),
            DEFAULT_SHUTDOWN_GRACE,
            (Duration::ZERO, MAX_SHUTDOWN_GRACE),
        );
        if management.is_some_and(|m| !m.exception_path) {
            self.error(
                "announce",
                "announce needs management.exception_path: the routing daemon reaches the \
                 routers through the ports' kernel interfaces",
            );
            return None;
        }
        if !ports
            .iter()
            .any(|p| p.addresses.as_ref().is_some_and(|a| !a.is_empty()))
        {
            self.error(
                "announce",
                "announce needs a port with addresses (its kernel interface carries the routes)",
            );
            return None;
        }
        Some(AnnounceConfig {
            kernel_table: kernel_table?,
            shutdown_grace: shutdown_grace?,
        })
    }

    pub(super) fn management(
        &mut self,
        raw: Option<&RawManagement>,
        host: &HostFacts,
    ) -> Option<ManagementConfig> {
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
        } else if let Some(kind) = host
            .inspect_paths
            .then(|| std::fs::symlink_metadata(socket).ok())
            .flatten()
            .map(|meta| meta.file_type())
            .filter(|kind| !kind.is_socket())
        {
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_symlink() {
                "a symbolic link"
            } else if kind.is_file() {
                "a regular file"
            } else {
                "a device or other special file"
            };
            self.error(
                path,
                format!(
                    "`{socket}` exists and is {what}, not a socket; ferrovs will not replace it"
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

    /// Each worker's table holds at most [`MAX_CONNECTIONS`] connections (what a
    /// connection record can name).
    pub(super) fn connections_per_worker(&mut self, max: u32, workers: usize) {
        let per_worker = (max as usize).div_ceil(workers.max(1));
        if per_worker > MAX_CONNECTIONS {
            self.error(
                "connections.max",
                format!(
                    "{max} over {workers} worker(s) is {per_worker} a worker; a worker holds at most {MAX_CONNECTIONS}"
                ),
            );
        }
    }

    pub(super) fn connections(
        &mut self,
        raw: Option<&RawConnections>,
    ) -> Option<ConnectionsConfig> {
        let default = RawConnections::default();
        let raw = raw.unwrap_or(&default);
        let max = self.int(
            "connections.max",
            raw.max.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            1,
            100_000_000,
        );
        let syn_proxy_above = self.int(
            "connections.syn_proxy_above",
            raw.syn_proxy_above.unwrap_or(0),
            0,
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
            syn_proxy_above: syn_proxy_above?,
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
}

/// Why `net` cannot be a port address, if it cannot.
pub(super) fn port_address_problem(net: IpNet) -> Option<String> {
    let addr = net.addr();
    if !is_unicast(addr) {
        return Some(not_unicast(addr));
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
pub(super) fn derived_eal_arg(arg: &str) -> Option<(&'static str, &'static str)> {
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
pub(super) fn format_cpu_list(cpus: &[u32]) -> String {
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
