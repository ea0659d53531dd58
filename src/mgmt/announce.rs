//! VIP routes for a routing daemon (`announce:`): one host route per VIP that is
//! ready to serve, in a kernel routing table of ferrovs's network namespace, which
//! BIRD or FRR (talking BGP to the routers through the exception path) imports and
//! announces. The routers then spread a VIP's traffic over every instance that
//! announces it (ECMP), and stop sending it to one that withdraws.
//!
//! A VIP is announced while ferrovs is running (after start-up, before a stop),
//! every service on it has at least its `quorum` of available real servers, and
//! the operator has not withdrawn it (`ferrovs ctl withdraw`). At a stop every VIP
//! is withdrawn first; the runtime then keeps forwarding for
//! `announce.shutdown_grace` while the routers move the traffic away.
//!
//! ferrovs's routes carry their own protocol number ([`ROUTE_PROTO`]), so a start
//! removes whatever a killed instance left in the table without touching routes
//! of anyone else.

use ferrovs_core::config::Config;
use ferrovs_core::service::Services;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The route protocol number of ferrovs's routes (`proto 241` in `ip route`):
/// outside the numbers iproute2 and the routing daemons name.
pub const ROUTE_PROTO: u8 = 241;

/// Where the VIP routes live: adds and removes host routes, and removes every
/// route of ferrovs's protocol number.
pub trait RouteTable {
    /// Adds (or replaces) the host route of `vip` through the interface `dev`.
    fn add(&mut self, vip: IpAddr, dev: &str) -> Result<(), String>;
    /// Removes the host route of `vip` through `dev`.
    fn remove(&mut self, vip: IpAddr, dev: &str) -> Result<(), String>;
    /// Removes every route of [`ROUTE_PROTO`] from the table.
    fn flush(&mut self) -> Result<(), String>;
}

/// A kernel routing table of this network namespace, changed with `ip route`.
pub struct KernelRoutes {
    /// The table number (`announce.kernel_table`).
    pub table: u32,
}

impl KernelRoutes {
    fn ip(&self, args: &[String]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run ip {}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn route(&self, verb: &str, vip: IpAddr, dev: &str) -> Vec<String> {
        let family = if vip.is_ipv4() { "-4" } else { "-6" };
        let host = if vip.is_ipv4() { 32 } else { 128 };
        [
            family,
            "route",
            verb,
            &format!("{vip}/{host}"),
            "dev",
            dev,
            "table",
            &self.table.to_string(),
            "proto",
            &ROUTE_PROTO.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }
}

impl RouteTable for KernelRoutes {
    fn add(&mut self, vip: IpAddr, dev: &str) -> Result<(), String> {
        self.ip(&self.route("replace", vip, dev))
    }

    fn remove(&mut self, vip: IpAddr, dev: &str) -> Result<(), String> {
        self.ip(&self.route("delete", vip, dev))
    }

    fn flush(&mut self) -> Result<(), String> {
        for family in ["-4", "-6"] {
            let args = [
                family,
                "route",
                "flush",
                "table",
                &self.table.to_string(),
                "proto",
                &ROUTE_PROTO.to_string(),
            ]
            .map(String::from);
            match self.ip(&args) {
                // A table that never held a route does not exist yet: nothing to remove.
                Err(e) if e.contains("FIB table does not exist") => {}
                other => other?,
            }
        }
        Ok(())
    }
}

/// Every configured VIP and whether it is announced, for the metrics.
pub type AnnouncedVips = Arc<Mutex<Vec<(IpAddr, bool)>>>;

/// Keeps the table's VIP routes in line with what ferrovs is ready to serve.
pub struct Announcer<R: RouteTable> {
    routes: R,
    /// VIPs the operator withdrew, until `ferrovs ctl announce`.
    held: BTreeSet<IpAddr>,
    /// The routes in the table: VIP -> interface.
    announced: BTreeMap<IpAddr, String>,
    /// Running: after start-up, before a stop.
    active: bool,
    /// What the metrics show.
    shared: AnnouncedVips,
}

impl<R: RouteTable> Drop for Announcer<R> {
    /// No route outlives ferrovs: a stop withdrew them already, an error exit
    /// withdraws them here.
    fn drop(&mut self) {
        if let Err(e) = self.routes.flush() {
            log::error!("announce: cannot clear the VIP routes: {e}");
        }
    }
}

/// Why `ferrovs ctl announce` or `withdraw` was refused.
fn unknown_vip(vip: IpAddr) -> String {
    format!("{vip} is the VIP of no service")
}

impl<R: RouteTable> Announcer<R> {
    /// Takes over `routes`, removing what an earlier instance left there; nothing
    /// is announced until [`Announcer::activate`].
    pub fn new(mut routes: R, shared: AnnouncedVips) -> Result<Self, String> {
        routes
            .flush()
            .map_err(|e| format!("announce: cannot clear the VIP routes: {e}"))?;
        Ok(Announcer {
            routes,
            held: BTreeSet::new(),
            announced: BTreeMap::new(),
            active: false,
            shared,
        })
    }

    /// ferrovs is ready: VIPs may be announced from now on.
    pub fn activate(&mut self, cfg: &Config, services: &Services) {
        self.active = true;
        self.update(cfg, services);
    }

    /// Withdraws every VIP (a stop): returns whether any was announced.
    pub fn deactivate(&mut self, cfg: &Config, services: &Services) -> bool {
        let any = !self.announced.is_empty();
        self.active = false;
        self.update(cfg, services);
        any
    }

    /// Whether `vip` is announced now.
    pub fn is_announced(&self, vip: IpAddr) -> bool {
        self.announced.contains_key(&vip)
    }

    /// The operator withdraws `vip` until [`Announcer::release`].
    pub fn hold(
        &mut self,
        vip: IpAddr,
        cfg: &Config,
        services: &Services,
    ) -> Result<String, String> {
        if !services.iter().any(|s| s.vip == vip) {
            return Err(unknown_vip(vip));
        }
        self.held.insert(vip);
        self.update(cfg, services);
        Ok(format!(
            "{vip} withdrawn until `ferrovs ctl announce {vip}`"
        ))
    }

    /// The operator lets `vip` be announced again when it is ready to serve.
    pub fn release(
        &mut self,
        vip: IpAddr,
        cfg: &Config,
        services: &Services,
    ) -> Result<String, String> {
        if !services.iter().any(|s| s.vip == vip) {
            return Err(unknown_vip(vip));
        }
        self.held.remove(&vip);
        self.update(cfg, services);
        Ok(if self.is_announced(vip) {
            format!("{vip} announced")
        } else {
            format!("{vip} released, but not announced: a service on it is below its quorum")
        })
    }

    /// Brings the routes in line with `services` (their health, weights and
    /// quorums) and the state above; a route the kernel refused is tried again at
    /// the next update.
    pub fn update(&mut self, cfg: &Config, services: &Services) {
        let mut ready: BTreeMap<IpAddr, bool> = BTreeMap::new();
        for s in services.iter() {
            *ready.entry(s.vip).or_insert(true) &= s.meets_quorum();
        }
        self.held.retain(|vip| ready.contains_key(vip));
        let want: BTreeMap<IpAddr, String> = ready
            .iter()
            .filter(|(vip, ok)| **ok && self.active && !self.held.contains(vip))
            .filter_map(|(vip, _)| Some((*vip, interface_for(cfg, *vip)?)))
            .collect();
        let stale: Vec<(IpAddr, String)> = self
            .announced
            .iter()
            .filter(|(vip, dev)| want.get(vip) != Some(dev))
            .map(|(vip, dev)| (*vip, dev.clone()))
            .collect();
        for (vip, dev) in stale {
            match self.routes.remove(vip, &dev) {
                Ok(()) => {
                    log::info!("announce: {vip} withdrawn");
                    self.announced.remove(&vip);
                }
                Err(e) => log::error!("announce: cannot withdraw {vip}: {e}"),
            }
        }
        for (vip, dev) in want {
            if self.announced.contains_key(&vip) {
                continue;
            }
            match self.routes.add(vip, &dev) {
                Ok(()) => {
                    log::info!("announce: {vip} announced through {dev}");
                    self.announced.insert(vip, dev);
                }
                Err(e) => log::error!("announce: cannot announce {vip}: {e}"),
            }
        }
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = ready
            .keys()
            .map(|vip| (*vip, self.announced.contains_key(vip)))
            .collect();
    }
}

/// The kernel interface a VIP's route goes through: the interface (port or VLAN)
/// whose subnet holds the VIP, else the first port with an address of its
/// family. Only interfaces with a kernel interface count (every one with
/// addresses has one when `announce` is configured, which needs the exception
/// path).
fn interface_for(cfg: &Config, vip: IpAddr) -> Option<String> {
    if let Some(i) = cfg.interface_for_address(vip) {
        return cfg.interfaces().nth(i).map(|i| i.name.to_string());
    }
    cfg.interfaces()
        .find(|i| {
            i.addresses
                .iter()
                .any(|a| a.addr().is_ipv4() == vip.is_ipv4())
        })
        .map(|i| i.name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovs_core::fixture;
    use ferrovs_core::service::Slots;

    /// A route table that records what it was asked to do.
    #[derive(Default)]
    struct Recorded {
        ops: Vec<String>,
        refuse: bool,
    }

    impl RouteTable for &mut Recorded {
        fn add(&mut self, vip: IpAddr, dev: &str) -> Result<(), String> {
            if self.refuse {
                return Err("refused".into());
            }
            self.ops.push(format!("add {vip} {dev}"));
            Ok(())
        }
        fn remove(&mut self, vip: IpAddr, dev: &str) -> Result<(), String> {
            self.ops.push(format!("remove {vip} {dev}"));
            Ok(())
        }
        fn flush(&mut self) -> Result<(), String> {
            self.ops.push("flush".into());
            Ok(())
        }
    }

    const SERVICES: &str = r#"announce: { kernel_table: 100 }
services:
  - { name: web, vip: 198.18.0.100, port: 80, protocol: tcp, mode: dr, quorum: 2,
      real_servers: [{ address: 198.18.0.20 }, { address: 198.18.0.21 }] }
  - { name: dns, vip: 198.18.0.100, port: 53, protocol: udp, mode: dr,
      real_servers: [{ address: 198.18.0.20 }] }
  - { name: far, vip: 203.0.113.7, port: 80, protocol: tcp, mode: dr,
      real_servers: [{ address: 198.18.0.20 }] }
"#;

    fn setup() -> (Config, Services) {
        let cfg = fixture::parse(&fixture::appliance(SERVICES));
        let services = Services::from_config(&cfg);
        (cfg, services)
    }

    fn vip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn vips_follow_readiness_quorum_the_operator_and_a_stop() {
        let (cfg, services) = setup();
        let mut table = Recorded::default();
        let shared = AnnouncedVips::default();
        let mut a = Announcer::new(&mut table, shared.clone()).unwrap();
        // Nothing before ferrovs is ready.
        a.update(&cfg, &services);
        assert!(!a.is_announced(vip("198.18.0.100")));
        a.activate(&cfg, &services);
        assert!(a.is_announced(vip("198.18.0.100")));
        assert_eq!(
            *shared.lock().unwrap(),
            vec![(vip("198.18.0.100"), true), (vip("203.0.113.7"), true)]
        );
        // web's quorum is 2: a drained server withdraws the VIP, dns and all.
        let drained = fixture::parse(&fixture::appliance(&SERVICES.replace(
            "{ address: 198.18.0.21 }",
            "{ address: 198.18.0.21, weight: 0 }",
        )));
        a.update(&drained, &Services::from_config(&drained));
        assert!(!a.is_announced(vip("198.18.0.100")));
        assert!(a.is_announced(vip("203.0.113.7")));
        a.update(&cfg, &services);
        assert!(a.is_announced(vip("198.18.0.100")));
        // So does a server the health checks took out.
        let mut slots = Slots::default();
        slots.assign(&cfg, 0, |_, _| false).unwrap();
        let one_down = Services::build(&cfg, &slots, |_, addr, _| addr != vip("198.18.0.21"));
        a.update(&cfg, &one_down);
        assert!(!a.is_announced(vip("198.18.0.100")));
        a.update(&cfg, &services);
        // The operator's word holds until taken back.
        a.hold(vip("203.0.113.7"), &cfg, &services).unwrap();
        a.update(&cfg, &services);
        assert!(!a.is_announced(vip("203.0.113.7")));
        assert!(a.hold(vip("192.0.2.1"), &cfg, &services).is_err());
        assert_eq!(
            a.release(vip("203.0.113.7"), &cfg, &services).unwrap(),
            "203.0.113.7 announced"
        );
        // A stop withdraws everything.
        assert!(a.deactivate(&cfg, &services));
        assert!(!a.is_announced(vip("198.18.0.100")) && !a.is_announced(vip("203.0.113.7")));
        assert!(!a.deactivate(&cfg, &services));
        drop(a);
        assert_eq!(
            table.ops,
            [
                "flush",
                "add 198.18.0.100 wan",
                "add 203.0.113.7 wan",
                "remove 198.18.0.100 wan",
                "add 198.18.0.100 wan",
                "remove 198.18.0.100 wan",
                "add 198.18.0.100 wan",
                "remove 203.0.113.7 wan",
                "add 203.0.113.7 wan",
                "remove 198.18.0.100 wan",
                "remove 203.0.113.7 wan",
                "flush",
            ]
        );
    }

    #[test]
    fn a_refused_route_is_tried_again_and_gone_vips_are_withdrawn() {
        let (cfg, services) = setup();
        let mut table = Recorded {
            refuse: true,
            ..Recorded::default()
        };
        let mut a = Announcer::new(&mut table, AnnouncedVips::default()).unwrap();
        a.activate(&cfg, &services);
        assert!(!a.is_announced(vip("198.18.0.100")));
        a.routes.refuse = false;
        a.update(&cfg, &services);
        assert!(a.is_announced(vip("198.18.0.100")));
        // A reload that drops a VIP's services withdraws it.
        let fewer = fixture::parse(&fixture::appliance(
            SERVICES.split("  - { name: far").next().unwrap(),
        ));
        a.update(&fewer, &Services::from_config(&fewer));
        assert!(!a.is_announced(vip("203.0.113.7")));
        assert!(a.is_announced(vip("198.18.0.100")));
    }
}
