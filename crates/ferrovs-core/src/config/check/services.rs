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
        self.ops_endpoints_unshared(&services);
        services
    }

    /// The replies of an `ops` NAT service are translated back by their source,
    /// the real server, alone: that endpoint must belong to no other NAT service
    /// of the protocol, whose replies would be taken for the ops service's.
    fn ops_endpoints_unshared(&mut self, services: &[Option<ServiceConfig>]) {
        let nat = |s: &&ServiceConfig| s.mode == ForwardMode::Nat && s.protocol == Protocol::Udp;
        let endpoints = |s: &ServiceConfig| -> Vec<(IpAddr, u16)> {
            let port = |p: u16| if p == 0 { s.port } else { p };
            s.real_servers
                .iter()
                .map(|r| (r.address, port(r.port)))
                .chain(s.sorry_server.map(|o| (o.address, port(o.port))))
                .collect()
        };
        let all: Vec<(usize, &ServiceConfig)> = services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .filter(|(_, s)| nat(s))
            .collect();
        for &(i, s) in all.iter().filter(|(_, s)| s.ops) {
            for (j, endpoint) in endpoints(s).into_iter().enumerate() {
                let other = all.iter().find(|&&(k, o)| {
                    k != i
                        && (endpoints(o).contains(&endpoint)
                            || o.real_servers
                                .iter()
                                .any(|r| r.address == endpoint.0 && r.port == 0))
                });
                if let Some((_, o)) = other {
                    let key = if j < s.real_servers.len() {
                        format!("services[{i}].real_servers[{j}].address")
                    } else {
                        format!("services[{i}].sorry_server.address")
                    };
                    self.error(
                        &key,
                        format!(
                            "{} also serves the nat service `{}`: the replies of an ops \
                             service are translated back by the real server they come \
                             from, which must serve no other nat udp service",
                            SocketAddr::new(endpoint.0, endpoint.1),
                            o.name
                        ),
                    );
                }
            }
        }
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
        // 0: every port of the VIP (checked against persistence below).
        let port: Option<u16> = self.int(&format!("{path}.port"), raw.port, 0, 65535);
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
        if port == Some(0) && persistence == Some(Duration::ZERO) {
            self.error(
                &format!("{path}.port"),
                "port 0 (every port of the VIP) needs persistence: like ipvsadm, ferrovs \
                 refuses a port-zero service that is not persistent",
            );
        }
        let local_addresses = self.local_addresses(path, raw, mode, vip);
        let nat64 = is_nat64(raw, mode, vip);
        if nat64 {
            self.nat64_limits(path, raw);
        }
        let real_servers = self.real_servers(path, raw, mode, (vip, nat64), port, reach);
        let health_check =
            self.health_check(&format!("{path}.health_check"), raw.health_check.as_ref());
        if let (Some(0), Some(check)) = (port, &health_check) {
            self.check_port_given(path, check);
        }
        let ops = self.ops(path, raw.ops.unwrap_or(false), protocol, mode, persistence);
        let quorum = self.int(
            &format!("{path}.quorum"),
            raw.quorum.unwrap_or(DEFAULT_QUORUM),
            0,
            u64::from(u32::MAX),
        );
        let sloppy = self.sloppy(path, raw.sloppy.unwrap_or(false), mode, scheduler);
        let sorry_server = self.sorry_server(
            path,
            raw,
            mode,
            (vip, nat64),
            port,
            real_servers.as_deref(),
            reach,
        );
        let access = self.access(path, raw, protocol, vip);
        let proxy_protocol = self.proxy_protocol(path, raw, protocol, mode);
        let syn_proxy = self.syn_proxy(path, raw, protocol, mode);
        ServiceParts {
            access,
            proxy_protocol,
            syn_proxy,
            sorry_server,
            sched_flags,
            quorum,
            sloppy,
            ops,
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

    /// A service without a port (0) checks its real servers on the port its
    /// health check names: they have no port of their own (keepalived wants a
    /// `connect_port` there too).
    fn check_port_given(&mut self, path: &str, check: &HealthCheckConfig) {
        use CheckKind::{Dns, Http, Tcp, Tls, Udp};
        if check.port.is_none() && matches!(check.kind, Tcp | Http | Udp | Dns | Tls) {
            self.error(
                &format!("{path}.health_check.port"),
                format!(
                    "a {} check of a service with port 0 needs a port: its real servers \
                     serve every port, so the check cannot take theirs",
                    check.kind
                ),
            );
        }
    }

    /// `ops`, IPVS one-packet scheduling: UDP only (as ipvsadm and keepalived
    /// have it), without persistence, and not in FULLNAT, whose replies (to a
    /// local port) cannot be translated back without the connection.
    fn ops(
        &mut self,
        path: &str,
        ops: bool,
        protocol: Option<Protocol>,
        mode: Option<ForwardMode>,
        persistence: Option<Duration>,
    ) -> Option<bool> {
        if !ops {
            return Some(false);
        }
        let path = format!("{path}.ops");
        let mut ok = true;
        if protocol == Some(Protocol::Tcp) {
            self.error(
                &path,
                "ops schedules every datagram on its own: only a udp service can have it \
                 (a TCP connection needs its state)",
            );
            ok = false;
        }
        if persistence.is_some_and(|p| !p.is_zero()) {
            self.error(
                &path,
                "ops schedules every datagram on its own, persistence sends every datagram \
                 of a client to one server: give one or the other",
            );
            ok = false;
        }
        if mode == Some(ForwardMode::FullNat) {
            self.error(
                &path,
                "ops keeps no connection, and a FULLNAT reply (to a local port) cannot be \
                 translated back without one: use nat, dr or tunnel",
            );
            ok = false;
        }
        ok.then_some(true)
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
        if let Some(kind) = kind {
            self.check_keys_fit(path, raw, kind);
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
                "passive checking takes servers out; it needs an active check (tcp, http, udp, dns, tls or exec) to bring them back",
            );
        }
        let payload = self.bytes_once(
            path,
            ("payload", &raw.payload),
            ("payload_hex", &raw.payload_hex),
        );
        let expect = self.bytes_once(
            path,
            ("expect", &raw.expect),
            ("expect_hex", &raw.expect_hex),
        );
        let require_reply = raw.require_reply.unwrap_or(default.require_reply);
        if !require_reply && (raw.expect.is_some() || raw.expect_hex.is_some()) {
            let key = if raw.expect.is_some() {
                "expect"
            } else {
                "expect_hex"
            };
            self.error(
                &format!("{path}.{key}"),
                "an expected answer needs require_reply: true",
            );
        }
        let query_name = match &raw.query_name {
            Some(name) => self.dns_name(&format!("{path}.query_name"), name),
            None => Some(default.query_name),
        };
        let query_type = match &raw.query_type {
            Some(t) => self.keyword(&format!("{path}.query_type"), &t.to_ascii_uppercase()),
            None => Some(default.query_type),
        };
        let expect_rcode = match &raw.expect_rcode {
            Some(r) => self.keyword(&format!("{path}.expect_rcode"), &r.to_ascii_uppercase()),
            None => Some(default.expect_rcode),
        };
        let sni = match &raw.sni {
            Some(name) => self.dns_name(&format!("{path}.sni"), name).map(Some),
            None => Some(None),
        };
        let verify = raw.verify.unwrap_or(false);
        let ca_file = match &raw.ca_file {
            Some(file) if !file.starts_with('/') => {
                self.error(
                    &format!("{path}.ca_file"),
                    format!("`{file}` is not an absolute path"),
                );
                None
            }
            Some(_) if !verify => {
                self.error(
                    &format!("{path}.ca_file"),
                    "trusted CAs matter only with verify: true",
                );
                None
            }
            Some(file) => Some(Some(PathBuf::from(file))),
            None => Some(None),
        };
        let (command, user, run_as_root) = self.exec_parts(path, raw, kind);
        Some(HealthCheckConfig {
            kind: kind?,
            interval: interval?,
            timeout: timeout?,
            rise: rise?,
            fall: fall?,
            port: port?,
            tls_get: raw.path.is_some() && kind == Some(CheckKind::Tls),
            path: check_path,
            expect_status: expect_status?,
            passive: passive && kind != Some(CheckKind::None),
            payload: payload?,
            require_reply,
            expect: expect?,
            query_name: query_name?,
            query_type: query_type?,
            expect_rcode: expect_rcode?,
            sni: sni?,
            verify,
            ca_file: ca_file?,
            command: command?,
            user: user?,
            run_as_root,
        })
    }

    /// Reports the keys written for a check of another type.
    fn check_keys_fit(&mut self, path: &str, raw: &RawHealthCheck, kind: CheckKind) {
        use CheckKind::{Dns, Exec, Http, Tls, Udp};
        let written: [(&str, bool, &[CheckKind]); 16] = [
            ("path", raw.path.is_some(), &[Http, Tls]),
            ("expect_status", raw.expect_status.is_some(), &[Http, Tls]),
            ("payload", raw.payload.is_some(), &[Udp]),
            ("payload_hex", raw.payload_hex.is_some(), &[Udp]),
            ("require_reply", raw.require_reply.is_some(), &[Udp]),
            ("expect", raw.expect.is_some(), &[Udp]),
            ("expect_hex", raw.expect_hex.is_some(), &[Udp]),
            ("query_name", raw.query_name.is_some(), &[Dns]),
            ("query_type", raw.query_type.is_some(), &[Dns]),
            ("expect_rcode", raw.expect_rcode.is_some(), &[Dns]),
            ("sni", raw.sni.is_some(), &[Tls]),
            ("verify", raw.verify.is_some(), &[Tls]),
            ("ca_file", raw.ca_file.is_some(), &[Tls]),
            ("command", raw.command.is_some(), &[Exec]),
            ("user", raw.user.is_some(), &[Exec]),
            ("run_as_root", raw.run_as_root.is_some(), &[Exec]),
        ];
        for (key, present, kinds) in written {
            if !present || kinds.contains(&kind) {
                continue;
            }
            let message = match key {
                // The wording of the first two predates the other check types.
                "path" => "only an http check requests a path, or a tls check (SSL_GET)".into(),
                "expect_status" => {
                    "only an http check expects a status, or a tls check with a path".into()
                }
                _ => {
                    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                    let article = if names[0].starts_with(['a', 'e', 'i', 'o']) {
                        "an"
                    } else {
                        "a"
                    };
                    format!("only {article} {} check uses {key}", names.join(" or "))
                }
            };
            self.error(&format!("{path}.{key}"), message);
        }
        if kind == Tls && raw.expect_status.is_some() && raw.path.is_none() {
            self.error(
                &format!("{path}.expect_status"),
                "a tls check expects a status only with a path: the HTTP GET it sends over TLS",
            );
        }
    }

    /// Bytes written as text under `text.0` or as hex under `hex.0`, at most one of
    /// them; empty when neither is.
    fn bytes_once(
        &mut self,
        path: &str,
        text: (&str, &Option<String>),
        hex: (&str, &Option<String>),
    ) -> Option<Vec<u8>> {
        const MAX: usize = 1400;
        let bytes = match (text.1, hex.1) {
            (Some(_), Some(_)) => {
                self.error(
                    &format!("{path}.{}", hex.0),
                    format!("give {} or {}, not both", text.0, hex.0),
                );
                return None;
            }
            (Some(t), None) => t.as_bytes().to_vec(),
            (None, Some(h)) => match parse_hex(h) {
                Some(bytes) => bytes,
                None => {
                    self.error(
                        &format!("{path}.{}", hex.0),
                        format!(
                            "`{h}` is not hex bytes (pairs of 0-9 a-f, blanks or colons between bytes allowed)"
                        ),
                    );
                    return None;
                }
            },
            (None, None) => Vec::new(),
        };
        if bytes.len() > MAX {
            let key = if text.1.is_some() { text.0 } else { hex.0 };
            self.error(
                &format!("{path}.{key}"),
                format!("{} bytes exceed the limit of {MAX}", bytes.len()),
            );
            return None;
        }
        Some(bytes)
    }

    /// A DNS name: "." (the root) or labels of 1 to 63 visible characters, 253 in
    /// all, with or without the final dot.
    fn dns_name(&mut self, path: &str, name: &str) -> Option<String> {
        let bare = name.strip_suffix('.').unwrap_or(name);
        let ok = name == "."
            || (!bare.is_empty()
                && bare.len() <= 253
                && bare.split('.').all(|label| {
                    (1..=63).contains(&label.len())
                        && label.chars().all(|c| c.is_ascii_graphic() && c != '\\')
                }));
        if !ok {
            self.error(
                path,
                format!("`{name}` is not a DNS name: labels of 1 to 63 visible characters separated by dots, 253 in all"),
            );
            return None;
        }
        Some(name.to_string())
    }

    /// An exec check's command and whom it runs as: never root unless the
    /// configuration says so (`run_as_root: true`).
    #[allow(clippy::type_complexity)]
    fn exec_parts(
        &mut self,
        path: &str,
        raw: &RawHealthCheck,
        kind: Option<CheckKind>,
    ) -> (Option<Vec<String>>, Option<Option<String>>, bool) {
        let run_as_root = raw.run_as_root.unwrap_or(false);
        if kind != Some(CheckKind::Exec) {
            return (Some(Vec::new()), Some(None), run_as_root);
        }
        let command_path = format!("{path}.command");
        let command = match raw.command.as_deref() {
            None | Some([]) => {
                self.error(
                    &command_path,
                    "an exec check needs a command: [\"/absolute/program\", \"argument\", ...] (run without a shell)",
                );
                None
            }
            Some(words) if words.len() > 64 => {
                self.error(
                    &command_path,
                    format!("{} words exceed the limit of 64", words.len()),
                );
                None
            }
            Some(words) => {
                let mut ok = true;
                if !words[0].starts_with('/') {
                    self.error(
                        &format!("{command_path}[0]"),
                        format!("`{}` is not an absolute path: the command runs without a shell or PATH", words[0]),
                    );
                    ok = false;
                }
                for (i, word) in words.iter().enumerate() {
                    if word.contains('\0') {
                        self.error(&format!("{command_path}[{i}]"), "contains a NUL character");
                        ok = false;
                    }
                }
                ok.then(|| words.to_vec())
            }
        };
        let user_path = format!("{path}.user");
        let user = match (&raw.user, run_as_root) {
            (Some(_), true) => {
                self.error(
                    &user_path,
                    "run_as_root: true runs the command as root; give user or run_as_root, not both",
                );
                None
            }
            (Some(name), false) if name == "root" => {
                self.error(
                    &user_path,
                    "the command would run as root: write run_as_root: true (and no user) to say so",
                );
                None
            }
            (Some(name), false) => self
                .name(
                    &user_path,
                    name,
                    32,
                    |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '$'),
                    "[A-Za-z0-9_.$-]",
                )
                .map(Some),
            (None, true) => Some(None),
            (None, false) => {
                self.error(
                    &user_path,
                    "an exec check runs its command as the user named here (nobody, for example); it never runs as root unless the configuration says run_as_root: true",
                );
                None
            }
        };
        (command, user, run_as_root)
    }

    /// keepalived's `sorry_server`: an address like a real server's, not one of
    /// them, with the service port unless written.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sorry_server(
        &mut self,
        service_path: &str,
        raw: &RawService,
        mode: Option<ForwardMode>,
        (vip, nat64): (Option<IpAddr>, bool),
        service_port: Option<u16>,
        real_servers: Option<&[RealServerConfig]>,
        reach: &Reach,
    ) -> Option<Option<SorryServerConfig>> {
        let Some(sorry) = &raw.sorry_server else {
            return Some(None);
        };
        let path = format!("{service_path}.sorry_server");
        let address_path = format!("{path}.address");
        let address = self
            .unicast_ip(&address_path, &sorry.address)
            .filter(|&ip| self.real_server_address(&address_path, ip, mode, (vip, nat64), reach));
        let port_path = format!("{path}.port");
        let port = self.server_port(&port_path, sorry.port, service_port);
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
        let (address, port) = (address?, port?);
        if real_servers
            .unwrap_or_default()
            .iter()
            .any(|r| r.address == address && r.port == port)
        {
            self.error(
                &address_path,
                format!(
                    "{} is also a real server of this service; a sorry server stands in for them",
                    SocketAddr::new(address, port)
                ),
            );
            return None;
        }
        Some(Some(SorryServerConfig { address, port }))
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
        // An IPv6 service's local addresses may all be IPv4 (NAT64): the first
        // one's family is the real servers'.
        let first = texts.first().and_then(|t| t.parse::<IpAddr>().ok());
        for (i, text) in texts.iter().enumerate() {
            let item = format!("{path}[{i}]");
            let ip = self
                .unicast_ip(&item, text)
                .filter(|&ip| match (vip, first) {
                    // Real servers share the VIP's family, so local addresses must too.
                    (Some(vip), _) if vip.is_ipv4() && ip.is_ipv6() => {
                        let message = format!(
                            "local address {ip} is {} but the real servers are {} like the VIP \
                         (IPv6 real servers for an IPv4 VIP, NAT46, are not supported)",
                            family(ip),
                            family(vip)
                        );
                        self.error(&item, message);
                        false
                    }
                    (Some(vip), Some(first))
                        if vip.is_ipv6() && first.is_ipv4() != ip.is_ipv4() =>
                    {
                        let message = format!(
                            "local address {ip} is {} but {path}[0] is {}: a service's local \
                         addresses share one family (IPv4 ones for an IPv6 VIP make it NAT64)",
                            family(ip),
                            family(first)
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
        (vip, nat64): (Option<IpAddr>, bool),
        service_port: Option<u16>,
        reach: &Reach,
    ) -> Option<Vec<RealServerConfig>> {
        let raw_servers = raw.real_servers.as_deref().unwrap_or_default();
        let mut servers = Vec::with_capacity(raw_servers.len());
        let mut endpoints = Vec::with_capacity(raw_servers.len());
        for (i, rs) in raw_servers.iter().enumerate() {
            let path = format!("{service_path}.real_servers[{i}]");
            let address_path = format!("{path}.address");
            let address = self.unicast_ip(&address_path, &rs.address).filter(|&ip| {
                self.real_server_address(&address_path, ip, mode, (vip, nat64), reach)
            });
            let port_path = format!("{path}.port");
            let port = self.server_port(&port_path, rs.port, service_port);
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
            let limits = self.connection_limits(&path, rs);
            endpoints.push(
                address
                    .zip(port)
                    .map(|(address, port)| SocketAddr::new(address, port)),
            );
            servers.push(match (address, port, weight, limits) {
                (Some(address), Some(port), Some(weight), Some((max, min))) => {
                    Some(RealServerConfig {
                        address,
                        port,
                        weight,
                        max_connections: max,
                        min_connections: min,
                    })
                }
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

    /// A real or sorry server's port: as written, else the service's. A service
    /// with port 0 forwards every packet to the port it was sent to (IPVS
    /// `ip_vs_sched_persist`), so its servers take no port but 0.
    fn server_port(
        &mut self,
        path: &str,
        written: Option<u64>,
        service_port: Option<u16>,
    ) -> Option<u16> {
        match (written, service_port) {
            (Some(0) | None, Some(0)) => Some(0),
            (Some(port), Some(0)) => {
                self.error(
                    path,
                    format!(
                        "port {port} in a service with port 0: each packet goes to the port \
                         the client sent it to; leave the port out (or write 0)"
                    ),
                );
                None
            }
            (Some(port), _) => self.int::<u16>(path, port, 1, 65535),
            (None, port) => port,
        }
    }

    /// Checks a real server address against the VIP and the routing; reports and
    /// returns false on a problem.
    pub(super) fn real_server_address(
        &mut self,
        path: &str,
        ip: IpAddr,
        mode: Option<ForwardMode>,
        (vip, nat64): (Option<IpAddr>, bool),
        reach: &Reach,
    ) -> bool {
        // NAT64: the servers of an IPv6 service with IPv4 local addresses are IPv4.
        if let Some(vip) = vip.filter(|vip| (vip.is_ipv4() || nat64) != ip.is_ipv4()) {
            let message = if nat64 {
                format!(
                    "real server {ip} is {} but this IPv6 service has IPv4 local addresses \
                     (NAT64): its real servers must be IPv4",
                    family(ip)
                )
            } else if vip.is_ipv6() {
                format!(
                    "real server {ip} is {} but the VIP {vip} is {}; IPv4 real servers for \
                     an IPv6 VIP (NAT64) need mode fullnat with IPv4 local_addresses",
                    family(ip),
                    family(vip)
                )
            } else {
                format!(
                    "real server {ip} is {} but the VIP {vip} is {}",
                    family(ip),
                    family(vip)
                )
            };
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

/// NAT64: a fullnat service with an IPv6 VIP whose (first) local address is IPv4.
fn is_nat64(raw: &RawService, mode: Option<ForwardMode>, vip: Option<IpAddr>) -> bool {
    mode == Some(ForwardMode::FullNat)
        && vip.is_some_and(|v| v.is_ipv6())
        && raw
            .local_addresses
            .as_deref()
            .and_then(|l| l.first())
            .and_then(|t| t.parse::<IpAddr>().ok())
            .is_some_and(|a| a.is_ipv4())
}

impl Checker<'_> {
    /// What a NAT64 service cannot have: a Proxy Protocol header or a SYN proxy
    /// (both translate sequence numbers, which NAT64 connections do not carry).
    fn nat64_limits(&mut self, path: &str, raw: &RawService) {
        if raw.proxy_protocol.as_deref().is_some_and(|p| p != "none") {
            self.error(
                &format!("{path}.proxy_protocol"),
                "a NAT64 service (IPv6 VIP, IPv4 local addresses) cannot send a Proxy \
                 Protocol header",
            );
        }
        if raw.syn_proxy == Some(true) {
            self.error(
                &format!("{path}.syn_proxy"),
                "a NAT64 service (IPv6 VIP, IPv4 local addresses) cannot use a SYN proxy",
            );
        }
    }
}

/// The checked parts of one service, assembled once all have been checked.
pub(super) struct ServiceParts {
    access: Option<AccessConfig>,
    proxy_protocol: Option<ProxyProtocol>,
    syn_proxy: Option<bool>,
    sorry_server: Option<Option<SorryServerConfig>>,
    sched_flags: Option<Vec<SchedFlag>>,
    quorum: Option<u32>,
    sloppy: Option<bool>,
    ops: Option<bool>,
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
            ops: self.ops?,
            sorry_server: self.sorry_server?,
            access: self.access?,
            proxy_protocol: self.proxy_protocol?,
            syn_proxy: self.syn_proxy?,
        })
    }
}

/// Hex bytes: pairs of hex digits, optionally separated by blanks or colons
/// between bytes ("48656c6c6f", "48 65 6c", "48:65:6c"); None when malformed or
/// empty.
fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for group in text.split(|c: char| c.is_whitespace() || c == ':') {
        if group.is_empty() {
            continue;
        }
        if group.len() % 2 != 0 || !group.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        for pair in group.as_bytes().chunks(2) {
            let digits = std::str::from_utf8(pair).ok()?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
        }
    }
    (!out.is_empty()).then_some(out)
}
