//! keepalived's virtual servers as ferrovs services.
//!
//! The mapping, and where keepalived and ferrovs differ:
//!
//! - `virtual_server IP PORT` is a service named `vs-IP-PORT` (`-udp` for UDP);
//!   `fwmark` and `group` virtual servers have no ferrovs equivalent.
//!   `virtual_server IP 0`, every port of the VIP, is a service with port 0: it
//!   needs persistence (keepalived, like ipvsadm, makes a port-zero service
//!   persistent), its real servers take no port (each connection keeps the port
//!   the client sent to), and a port check needs `connect_port`.
//! - `ops` (one-packet scheduling, UDP) is `ops: true`.
//! - `lb_algo`/`lvs_sched`, `lb_kind`/`lvs_method` (NAT, DR, TUN),
//!   `persistence_timeout` (360 s without a value, as keepalived),
//!   `persistence_granularity`, `protocol` (TCP, UDP), the scheduler flags,
//!   `quorum` and `sorry_server` map one to one.
//! - keepalived checks each real server with its own checkers; ferrovs checks
//!   every real server of a service alike: the first real server's first checker
//!   is the service's check, and a real server whose check differs is named.
//! - Timing: the check runs every `delay_loop` (60 s by default), within
//!   `connect_timeout` (5 s; `misc_timeout` for MISC_CHECK); keepalived takes a
//!   server out after `retry` + 1 failures (retry 1 by default, 3 for DNS_CHECK,
//!   0 for MISC_CHECK) and brings it back after one success: `fall` and `rise: 1`.
//!   keepalived retries a failed check after `delay_before_retry`; ferrovs checks
//!   at the interval only, which is named.
//! - keepalived has no passive checking: `passive: false`.
//! - `inhibit_on_failure` is what ferrovs always does (a failed server stays
//!   listed with no new connections; live ones continue).

use super::parse::{Parsed, Stmt};
use super::{Import, Note};
use crate::config::Scheduler;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

/// keepalived's defaults (`check_data.c`, `ipvswrapper.h`, `libipvs.h`).
const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_PERSISTENCE_S: u64 = 360;
/// ferrovs's bounds.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MIN_TIMEOUT: Duration = Duration::from_millis(10);
const MAX_PERSISTENCE_S: u64 = 49 * 24 * 3600;
const MAX_NAME: usize = 32;

/// A service as it will be written.
#[derive(Debug)]
struct Service {
    /// Where it was defined, for the comment above it.
    from: String,
    name: String,
    vip: IpAddr,
    port: u16,
    udp: bool,
    mode: &'static str,
    scheduler: String,
    sched_flags: Vec<&'static str>,
    persistence_s: u64,
    persistence_netmask: Option<u8>,
    ops: bool,
    quorum: Option<u64>,
    sorry_server: Option<(IpAddr, Option<u16>)>,
    check: Option<Check>,
    real_servers: Vec<RealServer>,
}

#[derive(Debug)]
struct RealServer {
    address: IpAddr,
    port: Option<u16>,
    weight: u64,
    /// `uthreshold`, `lthreshold`: IPVS's connection thresholds.
    max_connections: Option<u64>,
    min_connections: Option<u64>,
}

/// A health check as it will be written; equal checks are the same check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    kind: &'static str,
    interval: Duration,
    timeout: Duration,
    fall: u64,
    port: Option<u16>,
    /// The type's own keys, rendered, in order.
    extra: Vec<(&'static str, String)>,
}

/// `delay_loop`, `connect_timeout` and `retry` as written at one level
/// (virtual server, real server, checker); the inner level wins.
#[derive(Debug, Clone, Copy, Default)]
struct Timing {
    delay_loop: Option<Duration>,
    connect_timeout: Option<Duration>,
    retry: Option<u64>,
}

impl Timing {
    fn within(self, outer: Timing) -> Timing {
        Timing {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
        }
    }
}

struct Converter<'a> {
    files: &'a [String],
    /// Each note with its place in reading order.
    notes: Vec<(usize, Note)>,
    order: &'a HashMap<(usize, usize), usize>,
    /// `global_defs { script_user NAME }`: whom MISC_CHECK scripts run as.
    script_user: Option<String>,
}

pub(super) fn convert(parsed: &Parsed) -> Import {
    let mut c = Converter {
        files: &parsed.files,
        notes: Vec::new(),
        order: &parsed.order,
        script_user: None,
    };
    for skipped in &parsed.skipped {
        let at = c.place(skipped.file, skipped.line);
        c.notes.push((
            at,
            Note {
                file: parsed.files[skipped.file].clone(),
                line: skipped.line,
                what: skipped.what.clone(),
                why: skipped.why.clone(),
            },
        ));
    }
    for s in parsed.stmts.iter().filter(|s| s.keyword() == "global_defs") {
        for d in s.children() {
            if d.keyword() == "script_user" {
                c.script_user = d.arg(0).map(str::to_string);
            }
        }
    }
    let mut services: Vec<Service> = Vec::new();
    let mut identities: HashMap<(IpAddr, u16, bool), usize> = HashMap::new();
    for s in &parsed.stmts {
        match s.keyword() {
            "virtual_server" => {
                let Some(mut svc) = c.virtual_server(s) else {
                    continue;
                };
                if let Some(first) = identities.get(&(svc.vip, svc.port, svc.udp)) {
                    let why = format!(
                        "the same VIP, port and protocol as {} (a ferrovs service is unique by them)",
                        services[*first].from
                    );
                    c.note(s, describe(s), why);
                    continue;
                }
                identities.insert((svc.vip, svc.port, svc.udp), services.len());
                svc.name = unique_name(&svc, &services);
                services.push(svc);
            }
            "global_defs" => {
                let why = if c.script_user.is_some() {
                    "only script_user is used (whom MISC_CHECK commands run as); notification mail, router_id and the rest have no ferrovs equivalent: state changes are in ferrovs's log and metrics"
                } else {
                    "notification mail, router_id and the rest have no ferrovs equivalent: state changes are in ferrovs's log and metrics"
                };
                c.note(s, "global_defs", why);
            }
            "virtual_server_group" => c.note(
                s,
                describe(s),
                "virtual server groups are not supported: write one virtual_server per VIP and port",
            ),
            kw if kw.starts_with("vrrp_") || kw == "garp_group" => c.note(
                s,
                describe(s),
                "ferrovs does not run VRRP: several instances announce the VIPs by BGP (announce:) and share connections (sync:)",
            ),
            "static_ipaddress" | "static_routes" | "static_rules" => c.note(
                s,
                describe(s),
                "addresses and routes of the appliance are ferrovs's ports[].addresses and routes[]",
            ),
            "SSL" => c.note(
                s,
                "SSL",
                "a tls check presents no client certificate; verify: true with ca_file checks the server's",
            ),
            _ => c.note(s, describe(s), "not a virtual_server: only the LVS part of keepalived is imported"),
        }
    }
    let yaml = render(&services);
    // In the order of the configuration as read (includes in place); notes about
    // one line in the order they were made.
    c.notes.sort_by_key(|(at, _)| *at);
    Import {
        yaml,
        services: services.len(),
        notes: c.notes.into_iter().map(|(_, n)| n).collect(),
    }
}

/// "keyword arg arg" as written.
fn describe(s: &Stmt) -> String {
    s.words.join(" ")
}

impl Converter<'_> {
    fn place(&self, file: usize, line: usize) -> usize {
        self.order.get(&(file, line)).copied().unwrap_or(usize::MAX)
    }

    fn note(&mut self, s: &Stmt, what: impl Into<String>, why: impl Into<String>) {
        let at = self.place(s.file, s.line);
        self.notes.push((
            at,
            Note {
                file: self.files[s.file].clone(),
                line: s.line,
                what: what.into(),
                why: why.into(),
            },
        ));
    }

    /// Notes a statement with the keyword's standard reason.
    fn not_carried(&mut self, s: &Stmt, why: &str) {
        self.note(s, describe(s), why);
    }

    fn virtual_server(&mut self, s: &Stmt) -> Option<Service> {
        let from = format!("{}:{}", self.files[s.file], s.line);
        let vip = match s.arg(0) {
            Some("fwmark") => {
                self.not_carried(s, "ferrovs services are a VIP, a port and a protocol; it matches no firewall marks");
                return None;
            }
            Some("group") => {
                self.not_carried(s, "virtual server groups are not supported: write one virtual_server per VIP and port");
                return None;
            }
            Some(text) => match text.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => {
                    self.not_carried(
                        s,
                        "not an IP address (ranges belong to virtual_server_group)",
                    );
                    return None;
                }
            },
            None => {
                self.not_carried(s, "no address");
                return None;
            }
        };
        let port = match s.arg(1).map(str::parse::<u16>) {
            Some(Ok(port)) => port,
            None => {
                self.not_carried(s, "no port: write 0 for every port of the VIP");
                return None;
            }
            Some(Err(_)) => {
                self.not_carried(s, "the port is not a number from 0 to 65535");
                return None;
            }
        };
        let mut svc = Service {
            from,
            name: String::new(),
            vip,
            port,
            udp: false,
            mode: "nat",
            scheduler: "wlc".into(),
            sched_flags: Vec::new(),
            persistence_s: 0,
            persistence_netmask: None,
            ops: false,
            quorum: None,
            sorry_server: None,
            check: None,
            real_servers: Vec::new(),
        };
        let mut timing = Timing::default();
        let mut flags: Vec<&Stmt> = Vec::new();
        let mut quorum_stmt = None;
        let mut sorry_stmt = None;
        let mut ops_stmt = None;
        let mut servers: Vec<&Stmt> = Vec::new();
        let mut skip = false;
        let mut protocol_written = false;
        for d in s.children() {
            match d.keyword() {
                "lb_algo" | "lvs_sched" => match d.arg(0) {
                    Some(name) if Scheduler::NAMES.contains(&name) => svc.scheduler = name.into(),
                    _ => self.not_carried(d, "not one of ferrovs's schedulers (rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos): wlc, keepalived's default, is written"),
                },
                "lb_kind" | "lvs_method" => {
                    match d.arg(0).map(str::to_ascii_uppercase).as_deref() {
                        Some("NAT") => svc.mode = "nat",
                        Some("DR") => svc.mode = "dr",
                        Some("TUN") => {
                            svc.mode = "tunnel";
                            let kind = d.words.iter().skip_while(|w| *w != "type").nth(1);
                            if kind.is_some_and(|k| k != "ipip") {
                                self.not_carried(d, "ferrovs tunnels in IPIP (IPv6-in-IPv6) only, not GUE or GRE: the service is left out");
                                skip = true;
                            }
                        }
                        Some("FNAT" | "FULLNAT") => {
                            self.not_carried(d, "DPVS's FULLNAT needs local addresses keepalived's configuration does not give: write mode: fullnat and local_addresses by hand; the service is left out");
                            skip = true;
                        }
                        _ => {
                            self.not_carried(d, "not NAT, DR or TUN: the service is left out");
                            skip = true;
                        }
                    }
                }
                "persistence_timeout" => match d.arg(0).map(str::parse::<u64>) {
                    None => svc.persistence_s = DEFAULT_PERSISTENCE_S,
                    Some(Ok(t)) if t <= MAX_PERSISTENCE_S => svc.persistence_s = t,
                    Some(Ok(_)) => {
                        svc.persistence_s = MAX_PERSISTENCE_S;
                        self.not_carried(d, "longer than IPVS's (and ferrovs's) 49 days: 49 days written");
                    }
                    Some(Err(_)) => self.not_carried(d, "not a number of seconds"),
                },
                "persistence_granularity" => match d.arg(0).and_then(|m| netmask(m, vip)) {
                    Some(bits) => svc.persistence_netmask = Some(bits),
                    None => self.not_carried(d, "not a contiguous netmask (or prefix length) of the VIP's family"),
                },
                "protocol" => {
                    protocol_written = true;
                    match d.arg(0).map(str::to_ascii_uppercase).as_deref() {
                        Some("TCP") => svc.udp = false,
                        Some("UDP") => svc.udp = true,
                        _ => {
                            self.not_carried(d, "ferrovs balances TCP and UDP only: the service is left out");
                            skip = true;
                        }
                    }
                }
                "delay_loop" => timing.delay_loop = self.timer(d),
                "connect_timeout" => timing.connect_timeout = self.timer(d),
                "retry" => timing.retry = self.count(d),
                "delay_before_retry" => self.not_carried(d, "ferrovs checks at the interval (delay_loop) only: a failed check is repeated at the next interval, and fall counts those"),
                "warmup" => self.not_carried(d, "the first checks start at once"),
                "inhibit_on_failure" => {}
                "alpha" => self.not_carried(d, "ferrovs starts a server up until checks fail (keepalived's default without alpha)"),
                "omega" => self.not_carried(d, "ferrovs runs no notify scripts at a stop"),
                "quorum" => {
                    if let Some(q) = self.count(d) {
                        svc.quorum = Some(q);
                        quorum_stmt = Some(d);
                    }
                }
                "hysteresis" => {
                    if d.arg(0) != Some("0") {
                        self.not_carried(d, "ferrovs has no quorum hysteresis: quorum is lost below it and gained at it");
                    }
                }
                "quorum_up" | "quorum_down" => self.not_carried(d, "ferrovs runs no scripts on quorum changes: ferrovs_service_sorry_active and ferrovs_vip_announced show them"),
                "sorry_server" => sorry_stmt = Some(d),
                "sorry_server_inhibit" => self.not_carried(d, "ferrovs lists the sorry server with weight 0 while it stands by, as inhibit does, whichever is written"),
                "sorry_server_lvs_method" => {}
                "ha_suspend" => self.not_carried(d, "ferrovs checks servers whether or not the VIP is held"),
                "ops" => ops_stmt = Some(d),
                "virtualhost" => self.not_carried(d, "ferrovs's HTTP checks send the server's address as Host"),
                "smtp_alert" => self.not_carried(d, "ferrovs sends no mail: state changes are in its log and metrics"),
                "snmp_name" => self.not_carried(d, "ferrovs has no SNMP: its metrics are Prometheus"),
                "ip_family" => {}
                "persistence_engine" => self.not_carried(d, "no persistence engines (SIP): persistence is by client address"),
                "hashed" | "flag-3" => self.not_carried(d, "no such scheduler flag in ferrovs"),
                "flag-1" | "flag-2" | "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => flags.push(d),
                "real_server" => servers.push(d),
                _ => self.not_carried(d, "unknown in a virtual_server"),
            }
        }
        if skip {
            return None;
        }
        if !protocol_written {
            // keepalived: "no protocol set - defaulting to UDP" (the kernel's
            // default for protocol 0).
            svc.udp = true;
            self.note(
                s,
                format!("{} without protocol", describe(s)),
                "keepalived then balances UDP, and so does the service written: write protocol TCP if TCP was meant",
            );
        }
        if port == 0 && svc.persistence_s == 0 {
            // keepalived (check_parser.c): a port-zero service without
            // persistence_timeout gets the default timeout.
            svc.persistence_s = DEFAULT_PERSISTENCE_S;
            self.note(
                s,
                format!("{} without persistence_timeout", describe(s)),
                format!("a service of every port must be persistent: {DEFAULT_PERSISTENCE_S} s, keepalived's default, is written"),
            );
        }
        if let Some(d) = ops_stmt {
            if !svc.udp {
                self.not_carried(d, "one-packet scheduling is for UDP services only (keepalived ignores it for TCP)");
            } else if svc.persistence_s > 0 {
                self.not_carried(d, "ferrovs refuses ops with persistence, which sends every datagram of a client to one server anyway: persistence is kept");
            } else {
                svc.ops = true;
            }
        }
        for d in flags {
            let flag = match (d.keyword(), svc.scheduler.as_str()) {
                ("sh-port" | "flag-2", "sh") => Some("sh-port"),
                ("sh-fallback" | "flag-1", "sh") => Some("sh-fallback"),
                ("mh-port" | "flag-2", "mh") => Some("mh-port"),
                ("mh-fallback" | "flag-1", "mh") => Some("mh-fallback"),
                _ => None,
            };
            match flag {
                Some(f) if !svc.sched_flags.contains(&f) => svc.sched_flags.push(f),
                Some(_) => {}
                None => {
                    let why = format!("not a flag of the {} scheduler", svc.scheduler);
                    self.not_carried(d, &why);
                }
            }
        }
        if let Some(d) = sorry_stmt {
            svc.sorry_server = self.endpoint(d, &svc, "sorry server");
        }
        let mut checks: Vec<(Option<(Check, &Stmt)>, &Stmt)> = Vec::new();
        for d in servers {
            if let Some((rs, check)) = self.real_server(d, &svc, timing) {
                svc.real_servers.push(rs);
                checks.push((check, d));
            }
        }
        // One check per service: the first real server's.
        svc.check = checks
            .iter()
            .find_map(|(c, _)| c.as_ref().map(|(c, _)| c.clone()));
        if let Some(first) = &svc.check {
            for (check, rs) in &checks {
                match check {
                    Some((c, at)) if c != first => self.note(
                        at,
                        format!("{} of {}", at.keyword(), describe(rs)),
                        "it differs from the check of the service's first checked real server, which ferrovs runs for every real server of the service",
                    ),
                    Some(_) => {}
                    None => self.note(
                        rs,
                        describe(rs),
                        "it has no checker, but ferrovs checks every real server of a service alike: it is checked like the others",
                    ),
                }
            }
        }
        if let (Some(q), Some(d)) = (svc.quorum, quorum_stmt) {
            if svc.real_servers.iter().any(|r| r.weight > 1) {
                let why = format!(
                    "ferrovs's quorum counts available servers, whatever their weights: quorum: {q} is written, review it"
                );
                self.note(d, format!("quorum {q} as a sum of weights"), why);
            }
        }
        Some(svc)
    }

    /// `sorry_server IP [PORT]` or the address and port of a real server line,
    /// checked against the service (family; DR/TUN cannot change ports).
    fn endpoint(&mut self, d: &Stmt, svc: &Service, what: &str) -> Option<(IpAddr, Option<u16>)> {
        let Some(Ok(address)) = d.arg(0).map(str::parse::<IpAddr>) else {
            self.not_carried(d, &format!("the {what} is not an IP address"));
            return None;
        };
        if address.is_ipv4() != svc.vip.is_ipv4() {
            self.not_carried(
                d,
                &format!("the {what} is not of the VIP's address family, as ferrovs needs"),
            );
            return None;
        }
        let port = match d.arg(1).map(str::parse::<u16>) {
            None => None,
            Some(Ok(0)) if svc.port == 0 => None,
            Some(Ok(p)) if p > 0 => Some(p),
            Some(_) => {
                self.not_carried(d, "the port is not a number from 1 to 65535");
                return None;
            }
        };
        match port {
            Some(p) if svc.port == 0 => {
                let why = format!(
                    "in a service of every port the {what} gets each connection on the port the client sent to (IPVS ignores another)"
                );
                self.note(d, format!("port {p}"), why);
                Some((address, None))
            }
            Some(p) if p != svc.port && matches!(svc.mode, "dr" | "tunnel") => {
                let why = format!(
                    "in {} the {what} gets the service's port {} (IPVS ignores another)",
                    svc.mode, svc.port
                );
                self.note(d, format!("port {p}"), why);
                Some((address, None))
            }
            Some(p) if p == svc.port => Some((address, None)),
            other => Some((address, other)),
        }
    }

    #[allow(clippy::type_complexity)]
    fn real_server<'s>(
        &mut self,
        d: &'s Stmt,
        svc: &Service,
        outer: Timing,
    ) -> Option<(RealServer, Option<(Check, &'s Stmt)>)> {
        let (address, port) = self.endpoint(d, svc, "real server")?;
        let mut rs = RealServer {
            address,
            port,
            weight: 1,
            max_connections: None,
            min_connections: None,
        };
        let mut lthreshold = None;
        let rs_port = port.unwrap_or(svc.port);
        let mut timing = Timing::default();
        let mut checkers: Vec<&Stmt> = Vec::new();
        for k in d.children() {
            match k.keyword() {
                "weight" => match k.arg(0).map(str::parse::<u64>) {
                    Some(Ok(w)) if w <= 65535 => rs.weight = w,
                    Some(Ok(_)) => {
                        rs.weight = 65535;
                        self.not_carried(k, "ferrovs weights go up to 65535: 65535 written");
                    }
                    _ => self.not_carried(k, "not a number"),
                },
                "lvs_method" => {
                    let mode = match k.arg(0).map(str::to_ascii_uppercase).as_deref() {
                        Some("NAT") => "nat",
                        Some("DR") => "dr",
                        Some("TUN") => "tunnel",
                        _ => "",
                    };
                    if mode != svc.mode {
                        let why = format!("ferrovs forwards every real server of a service alike: {} here", svc.mode);
                        self.not_carried(k, &why);
                    }
                }
                "notify_up" | "notify_down" => self.not_carried(k, "ferrovs runs no scripts on state changes: its log and ferrovs_real_server_up show them"),
                "uthreshold" => rs.max_connections = self.count(k).filter(|&n| n > 0),
                "lthreshold" => lthreshold = Some(k),
                "smtp_alert" => self.not_carried(k, "ferrovs sends no mail: state changes are in its log and metrics"),
                "snmp_name" => self.not_carried(k, "ferrovs has no SNMP: its metrics are Prometheus"),
                "virtualhost" => self.not_carried(k, "ferrovs's HTTP checks send the server's address as Host"),
                "alpha" => self.not_carried(k, "ferrovs starts a server up until checks fail (keepalived's default without alpha)"),
                "connect_timeout" => timing.connect_timeout = self.timer(k),
                "delay_loop" => timing.delay_loop = self.timer(k),
                "retry" => timing.retry = self.count(k),
                "delay_before_retry" => self.not_carried(k, "ferrovs checks at the interval (delay_loop) only: a failed check is repeated at the next interval, and fall counts those"),
                "warmup" => self.not_carried(k, "the first checks start at once"),
                "inhibit_on_failure" => {}
                "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "DNS_CHECK" | "MISC_CHECK" | "UDP_CHECK" => {
                    checkers.push(k)
                }
                "SMTP_CHECK" | "PING_CHECK" | "BFD_CHECK" | "FILE_CHECK" => self.note(
                    k,
                    k.keyword(),
                    "ferrovs checks tcp, http, udp, dns, tls (SSL_GET) and exec (MISC_CHECK) only",
                ),
                _ => self.not_carried(k, "unknown in a real_server"),
            }
        }
        if let Some(k) = lthreshold {
            match (self.count(k), rs.max_connections) {
                (Some(0), _) => {}
                (Some(min), Some(max)) if min < max => rs.min_connections = Some(min),
                (Some(_), _) => self.not_carried(
                    k,
                    "a lower threshold needs an upper one (uthreshold) above it",
                ),
                (None, _) => {}
            }
        }
        let timing = timing.within(outer);
        let mut check = None;
        for k in checkers {
            if check.is_some() {
                self.note(
                    k,
                    format!("{} (a second checker)", k.keyword()),
                    "ferrovs runs one check per real server; keepalived needs all of its checkers to pass",
                );
                continue;
            }
            check = self.checker(k, rs_port, timing).map(|c| (c, k));
        }
        Some((rs, check))
    }

    fn checker(&mut self, k: &Stmt, rs_port: u16, outer: Timing) -> Option<Check> {
        let kind = k.keyword();
        let mut timing = Timing::default();
        let mut port = None;
        let mut extra: Vec<(&'static str, String)> = Vec::new();
        let mut misc_timeout = None;
        let mut urls: Vec<&Stmt> = Vec::new();
        let mut sni = None;
        let mut enable_sni = None;
        let (mut dns_type, mut dns_name) = (None, None);
        let (mut command, mut user, mut payload, mut require_reply) = (None, None, None, None);
        for o in k.children() {
            match (kind, o.keyword()) {
                (_, "connect_port") => match o.arg(0).map(str::parse::<u16>) {
                    Some(Ok(p)) if p > 0 => port = (p != rs_port).then_some(p),
                    _ => self.not_carried(o, "not a port number"),
                },
                (_, "connect_timeout") => timing.connect_timeout = self.timer(o),
                (_, "delay_loop") => timing.delay_loop = self.timer(o),
                (_, "retry" | "nb_get_retry") => timing.retry = self.count(o),
                (_, "connect_ip") => self.not_carried(o, "ferrovs checks the real server's own address"),
                (_, "bindto" | "bind_port" | "bind_if") => self.not_carried(o, "checks leave from the appliance's address on the servers' network (the exception path)"),
                (_, "fwmark") => self.not_carried(o, "checks are not marked"),
                (_, "delay_before_retry") => self.not_carried(o, "ferrovs checks at the interval (delay_loop) only: a failed check is repeated at the next interval, and fall counts those"),
                (_, "warmup") => self.not_carried(o, "the first checks start at once"),
                (_, "alpha") => self.not_carried(o, "ferrovs starts a server up until checks fail (keepalived's default without alpha)"),
                (_, "log_all_failures") => self.not_carried(o, "ferrovs logs state changes with the last failure's cause"),
                ("HTTP_GET" | "SSL_GET", "url") => urls.push(o),
                ("HTTP_GET" | "SSL_GET", "http_protocol") => self.not_carried(o, "ferrovs sends HTTP/1.0 with Connection: close"),
                ("HTTP_GET" | "SSL_GET", "fast_recovery") => self.not_carried(o, "there is one URL per check: rise counts the checks"),
                ("HTTP_GET" | "SSL_GET", "virtualhost") => self.not_carried(o, "ferrovs's HTTP checks send the server's address as Host (the sni name over TLS)"),
                ("SSL_GET", "enable_sni") => enable_sni = Some(o),
                ("SSL_GET", "sni_name") => sni = o.arg(0).map(str::to_string),
                ("SSL_GET" | "HTTP_GET", "tls_compliant") => {}
                ("DNS_CHECK", "type") => dns_type = o.arg(0).map(str::to_ascii_uppercase),
                ("DNS_CHECK", "name") => dns_name = o.arg(0).map(str::to_string),
                ("MISC_CHECK", "misc_path") => command = Some(o),
                ("MISC_CHECK", "misc_timeout") => misc_timeout = self.timer(o),
                ("MISC_CHECK", "misc_dynamic") => self.not_carried(o, "weights set by the command's exit status are not supported: exit 0 passes, any other fails"),
                ("MISC_CHECK", "user") => user = Some(o),
                ("UDP_CHECK", "payload") => payload = Some(o),
                ("UDP_CHECK", "require_reply") => require_reply = Some(o),
                ("UDP_CHECK", "min_reply_length" | "max_reply_length") => self.not_carried(o, "answers of any length pass"),
                _ => {
                    let why = format!("unknown in a {kind}");
                    self.not_carried(o, &why);
                }
            }
        }
        let timing = timing.within(outer);
        let interval = self.interval(k, timing.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP));
        let default_retry = match kind {
            "DNS_CHECK" => 3,
            "MISC_CHECK" => 0,
            _ => 1,
        };
        let fall = (timing.retry.unwrap_or(default_retry) + 1).min(100);
        let timeout = match kind {
            "MISC_CHECK" => misc_timeout.unwrap_or(interval),
            _ => timing.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        };
        let timeout = if timeout > interval {
            let why = format!(
                "a check must end within its interval of {}: timeout: {} is written",
                show(interval),
                show(interval)
            );
            self.note(k, format!("{kind} timeout {}", show(timeout)), why);
            interval
        } else {
            timeout.max(MIN_TIMEOUT)
        };
        let kind_out = match kind {
            "TCP_CHECK" => "tcp",
            "HTTP_GET" | "SSL_GET" => {
                let first = urls.first().copied();
                for extra_url in urls.iter().skip(1) {
                    self.note(
                        extra_url,
                        "a second url",
                        "one URL per check: the first one is checked",
                    );
                }
                let (path, status) = match first {
                    Some(u) => self.url(u),
                    None => {
                        self.note(k, format!("{kind} without url"), "the path / is checked");
                        ("/".to_string(), 200)
                    }
                };
                extra.push(("path", quote(&path)));
                extra.push(("expect_status", status.to_string()));
                if kind == "SSL_GET" {
                    if let Some(name) = sni {
                        extra.push(("sni", quote(&name)));
                    } else if let Some(e) = enable_sni {
                        self.not_carried(e, "without sni_name there is no name to send (ferrovs does not send virtualhost): write sni");
                    }
                    "tls"
                } else {
                    "http"
                }
            }
            "DNS_CHECK" => {
                let qtype = dns_type.unwrap_or_else(|| "SOA".into());
                if !crate::config::DnsType::NAMES.contains(&qtype.as_str()) {
                    self.note(
                        k,
                        format!("DNS_CHECK type {qtype}"),
                        "not a type ferrovs asks for: SOA is asked",
                    );
                    extra.push(("query_type", "SOA".into()));
                } else {
                    extra.push(("query_type", qtype));
                }
                extra.push(("query_name", quote(&dns_name.unwrap_or_else(|| ".".into()))));
                "dns"
            }
            "MISC_CHECK" => {
                let Some(path) = command.and_then(|c| c.arg(0)) else {
                    self.note(
                        k,
                        "MISC_CHECK without misc_path",
                        "there is no command to run: no check",
                    );
                    return None;
                };
                let mut words = split_command(path);
                if words.first().is_some_and(|w| !w.starts_with('/')) {
                    // keepalived looks the program up in PATH; env does that here.
                    words.insert(0, "/usr/bin/env".into());
                }
                let list: Vec<String> = words.iter().map(|w| quote(w)).collect();
                extra.push(("command", format!("[{}]", list.join(", "))));
                let named = user
                    .and_then(|u| u.arg(0).map(str::to_string))
                    .or_else(|| self.script_user.clone());
                if let Some(group) = user.and_then(|u| u.arg(1)) {
                    let why =
                        format!("the command runs with its user's primary group, not {group}");
                    self.note(user.unwrap_or(k), format!("group {group}"), why);
                }
                match named.as_deref() {
                    Some("root") | None => {
                        extra.push(("run_as_root", "true".into()));
                        if named.is_none() {
                            self.note(
                                k,
                                "MISC_CHECK run as keepalived_script",
                                "without user (or global_defs script_user), keepalived runs it as keepalived_script, or root without that user; ferrovs runs no command as root unless told: run_as_root: true is written, review it or write user",
                            );
                        }
                    }
                    Some(name) => extra.push(("user", quote(name))),
                }
                "exec"
            }
            "UDP_CHECK" => {
                if let Some(p) = payload.and_then(|p| p.words.get(1..)) {
                    match keepalived_hex(&p.join(" ")) {
                        Some(hex) => extra.push(("payload_hex", quote(&hex))),
                        None => self.note(
                            payload.unwrap_or(k),
                            "payload",
                            "not hex: an empty datagram is sent",
                        ),
                    }
                }
                match require_reply {
                    None => extra.push(("require_reply", "false".into())),
                    Some(r) => {
                        let expected = r.words.get(1..).unwrap_or_default().join(" ");
                        if !expected.is_empty() {
                            if expected.contains(['x', 'X']) {
                                self.note(
                                    r,
                                    format!("require_reply {expected}"),
                                    "no wildcards in an expected answer: any answer passes",
                                );
                            } else if let Some(hex) = keepalived_hex(&expected) {
                                extra.push(("expect_hex", quote(&hex)));
                                self.note(
                                    r,
                                    format!("require_reply {expected} at the start of the answer"),
                                    "ferrovs finds the expected bytes anywhere in the answer",
                                );
                            }
                        }
                    }
                }
                "udp"
            }
            _ => return None,
        };
        if rs_port == 0 && port.is_none() && kind_out != "exec" {
            self.not_carried(
                k,
                "a real server of every port (port 0) has no port of its own to check: write connect_port; the service is left without a check",
            );
            return None;
        }
        Some(Check {
            kind: kind_out,
            interval,
            timeout,
            fall,
            port,
            extra,
        })
    }

    /// The path and status of a `url` block.
    fn url(&mut self, u: &Stmt) -> (String, u16) {
        let mut path = "/".to_string();
        let mut status = None;
        let mut digest = None;
        for o in u.children() {
            match o.keyword() {
                "path" => {
                    if let Some(p) = o.arg(0) {
                        path = if p.starts_with('/') { p.to_string() } else { format!("/{p}") };
                    }
                }
                "status_code" => status = Some(o),
                "digest" => digest = Some(o),
                "virtualhost" => self.not_carried(o, "ferrovs's HTTP checks send the server's address as Host (the sni name over TLS)"),
                "regex" | "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset" | "regex_max_offset" => {
                    self.not_carried(o, "ferrovs reads the status line only")
                }
                "tls_compliant" => {}
                _ => self.not_carried(o, "unknown in a url"),
            }
        }
        if let Some(d) = digest {
            self.not_carried(d, "ferrovs reads the status line only, not the body");
        }
        let code = match status {
            Some(s) => {
                let codes: Vec<&str> = s.words[1..].iter().map(String::as_str).collect();
                match codes.as_slice() {
                    [one] if one.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c)) => {
                        one.parse().unwrap_or(200)
                    }
                    _ => {
                        let first = codes
                            .iter()
                            .filter_map(|c| c.split('-').next()?.parse::<u16>().ok())
                            .find(|c| (100..=599).contains(c))
                            .unwrap_or(200);
                        let why = format!("ferrovs expects one status: {first}");
                        self.not_carried(s, &why);
                        first
                    }
                }
            }
            None => {
                if digest.is_none() {
                    self.note(
                        u,
                        "url without status_code",
                        "keepalived accepts any 2xx status, ferrovs expects one: 200",
                    );
                }
                200
            }
        };
        (path, code)
    }

    /// A keepalived TIMER: seconds, with a fraction.
    fn timer(&mut self, d: &Stmt) -> Option<Duration> {
        match d.arg(0).and_then(|t| t.parse::<f64>().ok()) {
            Some(s) if (0.0..1e9).contains(&s) => {
                Some(Duration::from_micros((s * 1e6).round() as u64))
            }
            _ => {
                self.not_carried(d, "not a number of seconds");
                None
            }
        }
    }

    fn count(&mut self, d: &Stmt) -> Option<u64> {
        match d.arg(0).and_then(|t| t.parse::<u64>().ok()) {
            Some(n) if n <= u64::from(u32::MAX) => Some(n),
            _ => {
                self.not_carried(d, "not a whole number");
                None
            }
        }
    }

    /// `delay_loop` within ferrovs's bounds for an interval.
    fn interval(&mut self, k: &Stmt, d: Duration) -> Duration {
        let bounded = d.clamp(MIN_INTERVAL, MAX_INTERVAL);
        if bounded != d {
            let why = format!(
                "ferrovs checks every {} to {}: {} written",
                show(MIN_INTERVAL),
                show(MAX_INTERVAL),
                show(bounded)
            );
            self.note(k, format!("delay_loop {} of {}", show(d), k.keyword()), why);
        }
        bounded
    }
}

/// The prefix length of a netmask ("255.255.255.0") or a prefix length ("24"),
/// for the VIP's family.
fn netmask(text: &str, vip: IpAddr) -> Option<u8> {
    let max = if vip.is_ipv4() { 32 } else { 128 };
    if let Ok(bits) = text.trim_start_matches('/').parse::<u8>() {
        return (bits <= max).then_some(bits);
    }
    match (text.parse::<IpAddr>().ok()?, vip) {
        (IpAddr::V4(mask), IpAddr::V4(_)) => {
            let m = u32::from(mask);
            (m.leading_ones() + m.trailing_zeros() == 32).then(|| m.leading_ones() as u8)
        }
        (IpAddr::V6(mask), IpAddr::V6(_)) => {
            let m = u128::from(mask);
            (m.leading_ones() + m.trailing_zeros() == 128).then(|| m.leading_ones() as u8)
        }
        _ => None,
    }
}

/// keepalived's free-format hex ("Ab12f 3 456": AB 12 0F 03 45 06) as ferrovs's
/// ("ab 12 0f 03 45 06").
fn keepalived_hex(text: &str) -> Option<String> {
    let mut bytes = Vec::new();
    for group in text.split_whitespace() {
        if !group.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let digits: Vec<char> = group.chars().collect();
        for pair in digits.chunks(2) {
            let s: String = pair.iter().collect();
            bytes.push(u8::from_str_radix(&s, 16).ok()?);
        }
    }
    if bytes.is_empty() {
        return None;
    }
    Some(
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// A `misc_path` as keepalived splits it: at unquoted blanks, `'...'` keeping
/// blanks inside one word.
fn split_command(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = false;
    for c in text.chars() {
        match c {
            '\'' => {
                quote = !quote;
                in_word = true;
            }
            c if c.is_whitespace() && !quote => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// A name of at most 32 of `[A-Za-z0-9_.-]` from the VIP, port and protocol,
/// unlike every name in `taken`.
fn unique_name(svc: &Service, taken: &[Service]) -> String {
    let udp = if svc.udp { "-udp" } else { "" };
    let readable = format!(
        "vs-{}-{}{udp}",
        svc.vip.to_string().replace(['.', ':'], "-"),
        svc.port
    );
    let base = if readable.len() <= MAX_NAME {
        readable
    } else {
        // Long IPv6 addresses: a stable hash of the address stands in for it.
        let hash = svc
            .vip
            .to_string()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        format!("vs-{:08x}-{}{udp}", hash as u32, svc.port)
    };
    let mut name = base.clone();
    let mut n = 2;
    while taken.iter().any(|s| s.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// A duration in ferrovs's syntax, in the largest exact unit.
fn show(d: Duration) -> String {
    let us = d.as_micros();
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// A YAML double-quoted string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An address as a YAML scalar (IPv6 quoted: its colons).
fn address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => quote(&a.to_string()),
    }
}

/// The `services:` document.
fn render(services: &[Service]) -> String {
    if services.is_empty() {
        return "services: []\n".into();
    }
    let mut y = String::from("services:\n");
    for s in services {
        let _ = writeln!(y, "  # {}", s.from);
        let _ = writeln!(y, "  - name: {}", s.name);
        let _ = writeln!(y, "    vip: {}", address(s.vip));
        let _ = writeln!(y, "    port: {}", s.port);
        let _ = writeln!(y, "    protocol: {}", if s.udp { "udp" } else { "tcp" });
        let _ = writeln!(y, "    mode: {}", s.mode);
        let _ = writeln!(y, "    scheduler: {}", s.scheduler);
        if !s.sched_flags.is_empty() {
            let _ = writeln!(y, "    sched_flags: [{}]", s.sched_flags.join(", "));
        }
        if s.persistence_s > 0 {
            let _ = writeln!(y, "    persistence: {}s", s.persistence_s);
        }
        if let Some(bits) = s.persistence_netmask {
            let _ = writeln!(y, "    persistence_netmask: {bits}");
        }
        if s.ops {
            let _ = writeln!(y, "    ops: true");
        }
        if let Some(q) = s.quorum {
            let _ = writeln!(y, "    quorum: {q}");
        }
        if let Some((ip, port)) = s.sorry_server {
            match port {
                Some(p) => {
                    let _ = writeln!(
                        y,
                        "    sorry_server: {{ address: {}, port: {p} }}",
                        address(ip)
                    );
                }
                None => {
                    let _ = writeln!(y, "    sorry_server: {{ address: {} }}", address(ip));
                }
            }
        }
        if let Some(c) = &s.check {
            let _ = writeln!(y, "    health_check:");
            let _ = writeln!(y, "      type: {}", c.kind);
            for (key, value) in &c.extra {
                let _ = writeln!(y, "      {key}: {value}");
            }
            if let Some(p) = c.port {
                let _ = writeln!(y, "      port: {p}");
            }
            let _ = writeln!(y, "      interval: {}", show(c.interval));
            let _ = writeln!(y, "      timeout: {}", show(c.timeout));
            let _ = writeln!(y, "      rise: 1");
            let _ = writeln!(y, "      fall: {}", c.fall);
            let _ = writeln!(y, "      passive: false");
        }
        if s.real_servers.is_empty() {
            let _ = writeln!(y, "    real_servers: []");
        } else {
            let _ = writeln!(y, "    real_servers:");
            for r in &s.real_servers {
                let port = r.port.map(|p| format!(", port: {p}")).unwrap_or_default();
                let mut limits = String::new();
                if let Some(max) = r.max_connections {
                    let _ = write!(limits, ", max_connections: {max}");
                }
                if let Some(min) = r.min_connections {
                    let _ = write!(limits, ", min_connections: {min}");
                }
                let _ = writeln!(
                    y,
                    "      - {{ address: {}{port}, weight: {}{limits} }}",
                    address(r.address),
                    r.weight
                );
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_hex_is_free_format() {
        assert_eq!(
            keepalived_hex("Ab12f 3 456 546443123").unwrap(),
            "ab 12 0f 03 45 06 54 64 43 12 03"
        );
        assert_eq!(keepalived_hex("zz"), None);
    }

    #[test]
    fn netmasks_become_prefix_lengths() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(netmask("255.255.255.0", v4), Some(24));
        assert_eq!(netmask("255.255.0.255", v4), None);
        assert_eq!(netmask("24", v4), Some(24));
        assert_eq!(netmask("33", v4), None);
        assert_eq!(netmask("64", v6), Some(64));
        assert_eq!(netmask("ffff:ffff::", v6), Some(32));
        assert_eq!(netmask("255.255.255.0", v6), None);
    }

    #[test]
    fn misc_paths_split_like_keepalived() {
        assert_eq!(
            split_command("/usr/bin/check -h 'a b' x"),
            ["/usr/bin/check", "-h", "a b", "x"]
        );
        assert_eq!(split_command("  check  ''  "), ["check", ""]);
    }

    #[test]
    fn names_are_valid_and_unique() {
        let svc = |vip: &str, port: u16, udp: bool| Service {
            from: String::new(),
            name: String::new(),
            vip: vip.parse().unwrap(),
            port,
            udp,
            mode: "nat",
            scheduler: "wlc".into(),
            sched_flags: vec![],
            persistence_s: 0,
            persistence_netmask: None,
            ops: false,
            quorum: None,
            sorry_server: None,
            check: None,
            real_servers: vec![],
        };
        assert_eq!(
            unique_name(&svc("192.168.1.10", 80, false), &[]),
            "vs-192-168-1-10-80"
        );
        assert_eq!(
            unique_name(&svc("192.168.1.10", 53, true), &[]),
            "vs-192-168-1-10-53-udp"
        );
        assert_eq!(
            unique_name(&svc("2001:db8::10", 443, false), &[]),
            "vs-2001-db8--10-443"
        );
        let long = unique_name(
            &svc("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", 65535, true),
            &[],
        );
        assert!(
            long.len() <= MAX_NAME && long.starts_with("vs-") && long.ends_with("-65535-udp"),
            "{long}"
        );
        let mut first = svc("10.0.0.1", 80, false);
        first.name = "vs-10-0-0-1-80".into();
        assert_eq!(
            unique_name(&svc("10.0.0.1", 80, false), &[first]),
            "vs-10-0-0-1-80-2"
        );
    }
}
