//! The running configuration and its changes.
//!
//! The management core keeps the configuration both typed ([`Config`]) and as a YAML
//! document. A control command edits a copy of the document; the copy goes through
//! the same parser and checks as the file (`config::parse`), so a change made with
//! `ferrovs ctl` obeys exactly the rules of `ferrovs check-config`. A reload reads
//! the file instead. Either way the new configuration is refused as a whole, with
//! every problem named, or applied as a whole: a new data-plane snapshot with stable
//! slots, so unchanged services keep their connections and counters.

use ferrovs_core::config::{self, Config, HostFacts};
use ferrovs_core::packet::MacAddr;
use ferrovs_core::pipeline::{BalancerLimits, Dataplane};
use ferrovs_core::service::{endpoint, Services, Slots};
use serde_yaml_ng::{Mapping, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Real servers' health as the management core knows it: (service, address,
/// port) -> up. Absent means up (no check configured, or not checked yet).
pub type HealthMap = HashMap<(String, IpAddr, u16), bool>;

/// The running configuration and what is needed to change it.
pub struct ConfigState {
    path: PathBuf,
    host: HostFacts,
    /// The configuration in force; a reload or control edit that is applied replaces it.
    pub config: Config,
    doc: Value,
    slots: Slots,
    version: u64,
    macs: Vec<MacAddr>,
    limits: BalancerLimits,
}

/// A parsed "IP:PORT" or "[IPv6]:PORT".
fn parse_endpoint(text: &str) -> Result<(IpAddr, u16), String> {
    text.parse::<SocketAddr>()
        .map(|a| (a.ip(), a.port()))
        .map_err(|_| format!("`{text}` is not IP:PORT (IPv6 as [IP]:PORT)"))
}

impl ConfigState {
    /// The state of a freshly started ferrovs: `config` read from `path`.
    pub fn new(
        path: PathBuf,
        config: Config,
        macs: Vec<MacAddr>,
        limits: BalancerLimits,
    ) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut slots = Slots::default();
        slots.assign(&config, 0, |_, _| false)?;
        Ok(ConfigState {
            path,
            host: HostFacts::detect(),
            config,
            doc,
            slots,
            version: 0,
            macs,
            limits,
        })
    }

    /// The configuration file (reload reads it again).
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Version of the configuration in force: 0 at start, one more for each change
    /// applied; the data-plane snapshot carries it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The running services as a `services:` YAML document (`ferrovs ctl save`):
    /// the items as the file wrote them, with the changes made by ctl since, so
    /// that a configuration holding it runs the same services.
    pub fn services_yaml(&self) -> Result<String, String> {
        let services = match self.doc.get("services") {
            Some(Value::Sequence(items)) => Value::Sequence(items.clone()),
            _ => Value::Sequence(Vec::new()),
        };
        let mut doc = Mapping::new();
        doc.insert(Value::from("services"), services);
        serde_yaml_ng::to_string(&Value::Mapping(doc)).map_err(|e| e.to_string())
    }

    /// The data-plane snapshot of the running configuration with `health`.
    pub fn snapshot(&self, health: &HealthMap) -> Dataplane {
        let services = Services::build(&self.config, &self.slots, |s, a, p| {
            health.get(&(s.to_string(), a, p)).copied().unwrap_or(true)
        });
        Dataplane::build(&self.config, &self.macs, services, self.version)
    }

    /// Reads the configuration file again. On success returns what changed.
    pub fn reload(
        &mut self,
        reusable: impl FnMut(u16, u64) -> bool,
    ) -> Result<Vec<String>, Vec<String>> {
        let file = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| vec![format!("{file}:1:1: cannot read: {e}")])?;
        let new = config::parse(&text, &file, &self.host)
            .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let doc: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| vec![format!("{file}: {e}")])?;
        self.commit(new, doc, reusable)
    }

    /// Applies a control command's edit of the configuration document.
    pub fn edit(
        &mut self,
        edit: impl FnOnce(&mut Value) -> Result<(), String>,
        reusable: impl FnMut(u16, u64) -> bool,
    ) -> Result<Vec<String>, Vec<String>> {
        let mut doc = self.doc.clone();
        edit(&mut doc).map_err(|e| vec![e])?;
        let text = serde_yaml_ng::to_string(&doc).map_err(|e| vec![e.to_string()])?;
        // Positions would point into this generated text: keep the messages, which
        // name the key (services[2].real_servers[0].address: ...).
        let new = config::parse(&text, "<ctl>", &self.host)
            .map_err(|errors| errors.0.into_iter().map(|e| e.message).collect::<Vec<_>>())?;
        self.commit(new, doc, reusable)
    }

    /// Replaces the running configuration with `new` if only reloadable parts
    /// changed and the tables allocated at start-up can hold it.
    fn commit(
        &mut self,
        new: Config,
        doc: Value,
        reusable: impl FnMut(u16, u64) -> bool,
    ) -> Result<Vec<String>, Vec<String>> {
        let old = &self.config;
        let mut refused = Vec::new();
        for (key, same) in [
            ("eal", old.eal == new.eal),
            ("ports", old.ports == new.ports),
            ("vlans", old.vlans == new.vlans),
            ("workers", old.workers == new.workers),
            ("mempool", old.mempool == new.mempool),
            ("management", old.management == new.management),
            ("announce", old.announce == new.announce),
            ("sync", old.sync == new.sync),
            (
                "connections.max",
                old.connections.max == new.connections.max,
            ),
        ] {
            if !same {
                refused.push(format!("{key} cannot change without a restart"));
            }
        }
        if self.limits.conns_v6 == 0 && new.services.iter().any(|s| s.vip.is_ipv6()) {
            refused.push(
                "IPv6 services need the IPv6 connection table, allocated only when an IPv6 service exists at start-up: restart ferrovs".into(),
            );
        }
        if self.limits.templates == 0 && new.services.iter().any(|s| !s.persistence.is_zero()) {
            refused.push(
                "persistence needs the template table, allocated only when a persistent service exists at start-up: restart ferrovs".into(),
            );
        }
        if !self.limits.translation && new_needs_translation(&new) {
            refused.push(
                "syn_proxy and proxy_protocol need the connections' translation records, allocated only when a service uses them (or connections.syn_proxy_above is set) at start-up: restart ferrovs".into(),
            );
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        let mut slots = self.slots.clone();
        slots
            .assign(&new, self.version + 1, reusable)
            .map_err(|e| vec![e])?;
        let changes = describe_changes(&self.config, &new);
        self.slots = slots;
        self.config = new;
        self.doc = doc;
        self.version += 1;
        Ok(changes)
    }
}

/// Whether a configuration has a service whose connections' sequence numbers
/// are translated.
fn new_needs_translation(cfg: &Config) -> bool {
    cfg.connections.syn_proxy_above > 0
        || cfg
            .services
            .iter()
            .any(|s| s.proxy_protocol != config::ProxyProtocol::None || s.syn_proxy)
}

/// Human-readable differences between two configurations' reloadable parts.
fn describe_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let by_name = |c: &Config| -> HashMap<String, config::ServiceConfig> {
        c.services
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect()
    };
    let (olds, news) = (by_name(old), by_name(new));
    for s in &new.services {
        match olds.get(&s.name) {
            None => out.push(format!("service {} added", s.name)),
            Some(o) => {
                let mut settings = o.clone();
                settings.real_servers = s.real_servers.clone();
                if &settings != s {
                    out.push(format!("service {} settings changed", s.name));
                }
                let old_rs: HashMap<(IpAddr, u16), u32> = o
                    .real_servers
                    .iter()
                    .map(|r| ((r.address, r.port), r.weight))
                    .collect();
                let new_rs: HashMap<(IpAddr, u16), u32> = s
                    .real_servers
                    .iter()
                    .map(|r| ((r.address, r.port), r.weight))
                    .collect();
                for r in &s.real_servers {
                    let ep = endpoint(r.address, r.port);
                    match old_rs.get(&(r.address, r.port)) {
                        None => out.push(format!("service {}: real server {ep} added", s.name)),
                        Some(w) if *w != r.weight => out.push(format!(
                            "service {}: real server {ep} weight {w} -> {}",
                            s.name, r.weight
                        )),
                        Some(_) => {}
                    }
                }
                for r in &s.real_servers {
                    let old = o
                        .real_servers
                        .iter()
                        .find(|x| (x.address, x.port) == (r.address, r.port));
                    if let Some(x) = old.filter(|x| {
                        (x.max_connections, x.min_connections)
                            != (r.max_connections, r.min_connections)
                    }) {
                        out.push(format!(
                            "service {}: real server {} max_connections {} -> {}, min_connections {} -> {} (new connections)",
                            s.name,
                            endpoint(r.address, r.port),
                            x.max_connections,
                            r.max_connections,
                            x.min_connections,
                            r.min_connections
                        ));
                    }
                }
                for r in &o.real_servers {
                    if !new_rs.contains_key(&(r.address, r.port)) {
                        out.push(format!(
                            "service {}: real server {} removed (live connections continue)",
                            s.name,
                            endpoint(r.address, r.port)
                        ));
                    }
                }
            }
        }
    }
    for s in &old.services {
        if !news.contains_key(&s.name) {
            out.push(format!(
                "service {} removed (live connections continue)",
                s.name
            ));
        }
    }
    if old.routes != new.routes {
        out.push("routes changed".into());
    }
    if old.neighbors != new.neighbors {
        out.push("static neighbours changed".into());
    }
    if old.connections.timeouts != new.connections.timeouts {
        out.push("connection timeouts changed".into());
    }
    if out.is_empty() {
        out.push("no change".into());
    }
    out
}

/// The `services` sequence of a configuration document (created when absent).
fn services_mut(doc: &mut Value) -> Result<&mut Vec<Value>, String> {
    let map = doc
        .as_mapping_mut()
        .ok_or("the configuration is not a mapping")?;
    let key = Value::from("services");
    if !matches!(map.get(&key), Some(Value::Sequence(_))) {
        map.insert(key.clone(), Value::Sequence(Vec::new()));
    }
    match map.get_mut(&key) {
        Some(Value::Sequence(seq)) => Ok(seq),
        _ => Err("services is not a list".into()),
    }
}

fn name_of(service: &Value) -> Option<&str> {
    service.get("name")?.as_str()
}

fn service_mut<'a>(doc: &'a mut Value, name: &str) -> Result<&'a mut Mapping, String> {
    services_mut(doc)?
        .iter_mut()
        .find(|s| name_of(s) == Some(name))
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| format!("no service named `{name}`"))
}

/// JSON from the control protocol as a YAML value of the document.
fn to_yaml(json: &serde_json::Value) -> Result<Value, String> {
    serde_yaml_ng::to_value(json).map_err(|e| e.to_string())
}

/// Edit: add a service (a `services:` item).
pub fn add_service(
    service: &serde_json::Value,
) -> impl FnOnce(&mut Value) -> Result<(), String> + '_ {
    move |doc| {
        let item = to_yaml(service)?;
        services_mut(doc)?.push(item);
        Ok(())
    }
}

/// Edit: replace the service with the same name.
pub fn edit_service(
    service: &serde_json::Value,
) -> impl FnOnce(&mut Value) -> Result<(), String> + '_ {
    move |doc| {
        let item = to_yaml(service)?;
        let name = name_of(&item).ok_or("the service has no name")?.to_string();
        let seq = services_mut(doc)?;
        let slot = seq
            .iter_mut()
            .find(|s| name_of(s) == Some(name.as_str()))
            .ok_or_else(|| format!("no service named `{name}`"))?;
        *slot = item;
        Ok(())
    }
}

/// Edit: remove a service.
pub fn remove_service(name: &str) -> impl FnOnce(&mut Value) -> Result<(), String> + '_ {
    move |doc| {
        let seq = services_mut(doc)?;
        let before = seq.len();
        seq.retain(|s| name_of(s) != Some(name));
        if seq.len() == before {
            return Err(format!("no service named `{name}`"));
        }
        Ok(())
    }
}

fn real_servers_mut(service: &mut Mapping) -> &mut Vec<Value> {
    let key = Value::from("real_servers");
    if !matches!(service.get(&key), Some(Value::Sequence(_))) {
        service.insert(key.clone(), Value::Sequence(Vec::new()));
    }
    match service.get_mut(&key) {
        Some(Value::Sequence(seq)) => seq,
        _ => unreachable!("just made a sequence"),
    }
}

/// The index of the real server at `addr:port` in a service mapping (a server
/// written without a port has the service's).
fn find_real_server(service: &mut Mapping, text: &str) -> Result<usize, String> {
    let (addr, port) = parse_endpoint(text)?;
    let service_port = service.get("port").and_then(Value::as_u64);
    real_servers_mut(service)
        .iter()
        .position(|r| {
            let a = r
                .get("address")
                .and_then(Value::as_str)
                .and_then(|a| a.parse::<IpAddr>().ok());
            let p = r.get("port").and_then(Value::as_u64).or(service_port);
            a == Some(addr) && p == Some(u64::from(port))
        })
        .ok_or_else(|| format!("service has no real server {text}"))
}

/// Edit: add a real server (a `real_servers:` item) to a service.
pub fn add_real_server<'a>(
    service: &'a str,
    rs: &'a serde_json::Value,
) -> impl FnOnce(&mut Value) -> Result<(), String> + 'a {
    move |doc| {
        let item = to_yaml(rs)?;
        real_servers_mut(service_mut(doc, service)?).push(item);
        Ok(())
    }
}

/// Edit: set a real server's weight.
pub fn set_weight<'a>(
    service: &'a str,
    rs: &'a str,
    weight: u32,
) -> impl FnOnce(&mut Value) -> Result<(), String> + 'a {
    move |doc| {
        let svc = service_mut(doc, service)?;
        let i = find_real_server(svc, rs)?;
        let entry = real_servers_mut(svc)[i]
            .as_mapping_mut()
            .ok_or("a real server is not a mapping")?;
        entry.insert(Value::from("weight"), Value::from(u64::from(weight)));
        Ok(())
    }
}

/// Edit: remove a real server from a service.
pub fn remove_real_server<'a>(
    service: &'a str,
    rs: &'a str,
) -> impl FnOnce(&mut Value) -> Result<(), String> + 'a {
    move |doc| {
        let svc = service_mut(doc, service)?;
        let i = find_real_server(svc, rs)?;
        real_servers_mut(svc).remove(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;
    use serde_json::json;

    const BASE: &str = "eal:\n  cores: [0, 1]\nports:\n  - name: lan\n    device: net_null0\n    addresses: [\"198.19.0.1/24\"]\nworkers:\n  cores: [1]\nservices:\n  - name: web\n    vip: 198.19.0.100\n    port: 80\n    protocol: tcp\n    mode: nat\n    real_servers:\n      - { address: 198.19.0.10 }\n      - { address: 198.19.0.11, port: 8080 }\n";

    fn state(dir: &std::path::Path, text: &str) -> ConfigState {
        let path = dir.join("ferrovs.yaml");
        std::fs::write(&path, text).unwrap();
        let cfg = config::parse(text, "ferrovs.yaml", &HostFacts::default()).unwrap();
        let limits = BalancerLimits::for_config(1000, 1, &Services::from_config(&cfg));
        let mut s = ConfigState::new(path, cfg, vec![MacAddr([2, 0, 0, 0, 0, 1])], limits).unwrap();
        s.host = HostFacts::default();
        s
    }

    #[test]
    fn control_edits_go_through_the_config_checks() {
        let dir = TempDir::new("state-edits");
        let mut s = state(&dir, BASE);
        let never = |_: u16, _: u64| false;
        let changes = s
            .edit(set_weight("web", "198.19.0.10:80", 0), never)
            .unwrap();
        assert_eq!(
            changes,
            vec!["service web: real server 198.19.0.10:80 weight 1 -> 0"]
        );
        let changes = s
            .edit(
                add_real_server(
                    "web",
                    &json!({"address": "198.19.0.12", "port": 8080, "weight": 3}),
                ),
                never,
            )
            .unwrap();
        assert_eq!(
            changes,
            vec!["service web: real server 198.19.0.12:8080 added"]
        );
        // refused edits change nothing
        let before = s.config.clone();
        let err = s
            .edit(
                add_real_server("web", &json!({"address": "300.1.1.1"})),
                never,
            )
            .unwrap_err();
        assert!(err[0].contains("real_servers[3].address"), "{err:?}");
        let err = s
            .edit(
                add_real_server("web", &json!({"address": "198.19.0.13", "wieght": 1})),
                never,
            )
            .unwrap_err();
        assert!(err[0].contains("wieght"), "{err:?}");
        let err = s
            .edit(set_weight("nope", "198.19.0.10:80", 1), never)
            .unwrap_err();
        assert_eq!(err, vec!["no service named `nope`"]);
        let err = s
            .edit(set_weight("web", "198.19.0.99:80", 1), never)
            .unwrap_err();
        assert_eq!(err, vec!["service has no real server 198.19.0.99:80"]);
        assert_eq!(s.config, before);
        assert_eq!(s.version(), 2);
        // add and remove a whole service
        let svc = json!({"name": "dns", "vip": "198.19.0.101", "port": 53, "protocol": "udp", "mode": "nat", "real_servers": [{"address": "198.19.0.10"}]});
        assert_eq!(
            s.edit(add_service(&svc), never).unwrap(),
            vec!["service dns added"]
        );
        let err = s.edit(add_service(&svc), never).unwrap_err();
        assert!(err.iter().any(|e| e.contains("dns")), "{err:?}");
        assert_eq!(
            s.edit(remove_service("dns"), never).unwrap(),
            vec!["service dns removed (live connections continue)"]
        );
        let changes = s
            .edit(remove_real_server("web", "198.19.0.11:8080"), never)
            .unwrap();
        assert_eq!(
            changes,
            vec!["service web: real server 198.19.0.11:8080 removed (live connections continue)"]
        );
        let snap = s.snapshot(&HealthMap::new());
        assert_eq!(snap.version, s.version());
        assert_eq!(snap.services.by_name("web").unwrap().real_servers.len(), 2);
    }

    #[test]
    fn save_gives_back_the_running_services() {
        let dir = TempDir::new("state-save");
        let mut s = state(&dir, BASE);
        let never = |_: u16, _: u64| false;
        s.edit(set_weight("web", "198.19.0.10:80", 0), never)
            .unwrap();
        let sorry = json!({"name": "dns", "vip": "198.19.0.101", "port": 53, "protocol": "udp",
            "mode": "nat", "quorum": 2, "sorry_server": {"address": "198.19.0.99"},
            "health_check": {"type": "dns", "query_name": "example.org", "query_type": "A"},
            "real_servers": [{"address": "198.19.0.10"}]});
        s.edit(add_service(&sorry), never).unwrap();
        let saved = s.services_yaml().unwrap();
        assert!(saved.starts_with("services:\n"), "{saved}");
        // A configuration holding the saved document runs the same services.
        let head = &BASE[..BASE.find("services:").unwrap()];
        let again = config::parse(
            &format!("{head}{saved}"),
            "saved.yaml",
            &HostFacts::default(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{saved}"));
        assert_eq!(again.services, s.config.services);
        assert_eq!(again.services[0].real_servers[0].weight, 0);
        // No services at all: still a document a configuration can hold.
        let empty = state(&dir, &BASE[..BASE.find("services:").unwrap()]);
        assert_eq!(empty.services_yaml().unwrap(), "services: []\n");
    }

    #[test]
    fn reload_refuses_invalid_files_and_restart_only_changes() {
        let dir = TempDir::new("state-reload");
        let mut s = state(&dir, BASE);
        let never = |_: u16, _: u64| false;
        std::fs::write(s.path(), BASE.replace("198.19.0.11", "198.19.0.311")).unwrap();
        let err = s.reload(never).unwrap_err();
        assert!(
            err[0].contains("ferrovs.yaml:17:20: services[0].real_servers[1].address"),
            "{err:?}"
        );
        std::fs::write(
            s.path(),
            BASE.replace("cores: [1]", "cores: [1]\n  burst: 64"),
        )
        .unwrap();
        assert_eq!(
            s.reload(never).unwrap_err(),
            vec!["workers cannot change without a restart"]
        );
        std::fs::write(
            s.path(),
            BASE.replace(
                "services:",
                "vlans:\n  - { port: lan, id: 100, name: lan.100, addresses: [\"198.20.0.1/24\"] }\nservices:",
            ),
        )
        .unwrap();
        assert_eq!(
            s.reload(never).unwrap_err(),
            vec!["vlans cannot change without a restart"]
        );
        assert_eq!(s.version(), 0);
        std::fs::write(
            s.path(),
            BASE.replace("      - { address: 198.19.0.10 }\n", ""),
        )
        .unwrap();
        assert_eq!(
            s.reload(never).unwrap(),
            vec!["service web: real server 198.19.0.10:80 removed (live connections continue)"]
        );
        assert_eq!(s.version(), 1);
    }
}
