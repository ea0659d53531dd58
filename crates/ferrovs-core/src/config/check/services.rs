//! Services and their real servers: each checked alone, then against the
//! routes (a real server must be reachable) and each other (unique names, VIPs).

use super::*;

impl Checker<'_> {
    pub(super) fn services(
        &mut self,
        raw: &[RawService],
        routes: &[IpNet],
    ) -> Vec<Option<ServiceConfig>> {
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

    pub(super) fn service(&mut self, path: &str, raw: &RawService, reach: &Reach) -> ServiceParts {
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
        let sched_flags = self.sched_flags(path, raw.sched_flags.as_deref(), scheduler);
        let persistence = self.bounded_duration(
            &format!("{path}.persistence"),
            raw.persistence.as_deref(),
            Duration::ZERO,
            (Duration::ZERO, MAX_PERSISTENCE),
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
        let quorum = self.int(
            &format!("{path}.quorum"),
            raw.quorum.unwrap_or(DEFAULT_QUORUM),
            0,
            u64::from(u32::MAX),
        );
        let sloppy = self.sloppy(path, raw.sloppy.unwrap_or(false), mode, scheduler);
        ServiceParts {
            sched_flags,
            quorum,
            sloppy,
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

    /// `sched_flags`: known flags, each once, of the service's scheduler.
    fn sched_flags(
        &mut self,
        path: &str,
        raw: Option<&[String]>,
        scheduler: Option<Scheduler>,
    ) -> Option<Vec<SchedFlag>> {
        let mut flags = Vec::new();
        let mut ok = true;
        for (i, text) in raw.unwrap_or_default().iter().enumerate() {
            let path = format!("{path}.sched_flags[{i}]");
            let Some(flag) = self.keyword::<SchedFlag>(&path, text) else {
                ok = false;
                continue;
            };
            if flags.contains(&flag) {
                self.error(&path, format!("{flag} is given twice"));
                ok = false;
            } else if scheduler.is_some_and(|s| s != flag.scheduler()) {
                let s = scheduler.map(|s| s.as_str()).unwrap_or_default();
                self.error(
                    &path,
                    format!(
                        "{flag} is a flag of the {} scheduler, not of {s}",
                        flag.scheduler()
                    ),
                );
                ok = false;
            }
            flags.push(flag);
        }
        ok.then_some(flags)
    }

    /// `sloppy` is only correct where any instance would carry a flow the same
    /// way: a scheduler that picks the server from the flow alone, and a mode whose
    /// replies do not pass through the instance.
    fn sloppy(
        &mut self,
        path: &str,
        sloppy: bool,
        mode: Option<ForwardMode>,
        scheduler: Option<Scheduler>,
    ) -> Option<bool> {
        if !sloppy {
            return Some(false);
        }
        let path = format!("{path}.sloppy");
        let mut ok = true;
        if let Some(s) = scheduler.filter(|s| !matches!(s, Scheduler::Mh | Scheduler::Sh)) {
            self.error(
                &path,
                format!(
                    "sloppy needs a consistent scheduler (mh or sh): with {s}, another \
                     instance would send a flow it takes over to another server"
                ),
            );
            ok = false;
        }
        if let Some(m @ (ForwardMode::Nat | ForwardMode::FullNat)) = mode {
            self.error(
                &path,
                format!(
                    "sloppy needs dr or tunnel: in {m} the replies pass through the instance \
                     that opened the connection, and no other instance can translate them"
                ),
            );
            ok = false;
        }
        ok.then_some(true)
    }

    pub(super) fn health_check(
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

    pub(super) fn local_addresses(
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

    pub(super) fn real_servers(
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
    pub(super) fn real_server_address(
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
pub(super) struct ServiceParts {
    sched_flags: Option<Vec<SchedFlag>>,
    quorum: Option<u32>,
    sloppy: Option<bool>,
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
    pub(super) fn assemble(self) -> Option<ServiceConfig> {
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
            quorum: self.quorum?,
            sched_flags: self.sched_flags?,
            sloppy: self.sloppy?,
        })
    }
}
