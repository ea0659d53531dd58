//! Routes and neighbours, checked against the connected subnets and the
//! appliance's own addresses.

use super::*;

impl Checker<'_> {
    /// True when a connected subnet holds `ip`.
    pub(super) fn is_connected(&self, ip: IpAddr) -> bool {
        self.connected.iter().any(|c| c.net.contains(&ip))
    }

    pub(super) fn is_own_address(&self, ip: IpAddr) -> Option<&str> {
        self.connected
            .iter()
            .find(|c| c.net.addr() == ip)
            .map(|c| c.port.as_str())
    }

    /// Why `ip` cannot be a host: the network or broadcast address of a connected
    /// subnet (a VIP there would answer ARP for the whole subnet's broadcasts).
    pub(super) fn reserved_in_subnet(&self, ip: IpAddr) -> Option<String> {
        self.connected
            .iter()
            .filter(|c| c.net.contains(&ip) && c.net.addr() != ip)
            .find_map(|c| {
                let problem = super::appliance::port_address_problem(
                    IpNet::new(ip, c.net.prefix_len()).ok()?,
                )?;
                Some(format!("{problem}, {}'s subnet", c.port))
            })
    }

    /// Reports every route whose next hop is a service's VIP or FULLNAT local
    /// address: ferrovs owns those addresses, so the route would loop back to it.
    pub(super) fn routes_via_own_service_addresses(
        &mut self,
        routes: &[(Option<RouteConfig>, bool)],
        services: &[Option<ServiceConfig>],
    ) {
        for (i, (route, listed)) in routes.iter().enumerate() {
            let Some(route) = route else { continue };
            for (j, via) in route.via.iter().enumerate() {
                let owner = services.iter().flatten().find_map(|s| {
                    if s.vip == *via {
                        Some(format!("the VIP of service {}", s.name))
                    } else if s.local_addresses.contains(via) {
                        Some(format!("a local address of service {}", s.name))
                    } else {
                        None
                    }
                });
                if let Some(owner) = owner {
                    self.error(
                        &via_path(i, *listed, j),
                        format!("next hop {via} is {owner}: ferrovs answers for it itself"),
                    );
                }
            }
        }
    }

    /// Reports `ip` unless it lies in a connected subnet, listing the subnets.
    pub(super) fn require_connected(&mut self, path: &str, ip: IpAddr, what: &str) -> bool {
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
            let _ = write!(subnets, "{sep}{} on {}", c.net.trunc(), c.name);
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
    pub(super) fn reject_own_address(&mut self, path: &str, ip: IpAddr, what: &str) -> bool {
        if let Some(port) = self.is_own_address(ip) {
            let message = format!("{what} {ip} is the address of {port}");
            self.error(path, message);
            return false;
        }
        true
    }

    /// The routes (each with whether its next hops were written as a list), and
    /// every prefix that parsed (a bad next hop does not make the prefix's
    /// destinations unroutable for the real-server checks).
    #[allow(clippy::type_complexity)]
    pub(super) fn routes(
        &mut self,
        raw: &[RawRoute],
    ) -> (Vec<(Option<RouteConfig>, bool)>, Vec<IpNet>) {
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
            let (written, listed): (Vec<&String>, bool) = match &route.via {
                RawVia::One(via) => (vec![via], false),
                RawVia::Many(vias) => (vias.iter().collect(), true),
            };
            let mut ok = true;
            if written.is_empty() {
                self.error(
                    &format!("{path}.via"),
                    "a route needs at least one next hop",
                );
                ok = false;
            } else if written.len() > MAX_NEXT_HOPS {
                let message = format!(
                    "{} next hops; a route has at most {MAX_NEXT_HOPS}",
                    written.len()
                );
                self.error(&format!("{path}.via"), message);
                ok = false;
            }
            let mut vias = Vec::with_capacity(written.len());
            for (j, text) in written.into_iter().enumerate() {
                let via = self.next_hop(&via_path(i, listed, j), prefix, text);
                if let Some(via) = via.filter(|via| vias.contains(&Some(*via))) {
                    let message = format!("next hop {via} is listed twice");
                    self.error(&via_path(i, listed, j), message);
                    ok = false;
                }
                vias.push(via);
            }
            let via: Option<Vec<IpAddr>> = vias.into_iter().collect();
            routes.push((
                prefix
                    .zip(via.filter(|_| ok))
                    .map(|(prefix, via)| RouteConfig { prefix, via }),
                listed,
            ));
        }
        self.unique_items("routes", Some("prefix"), &prefixes, "prefix");
        (routes, prefixes.into_iter().flatten().collect())
    }

    /// One next hop of a route to `prefix` (when that parsed), at `path`.
    fn next_hop(&mut self, path: &str, prefix: Option<IpNet>, text: &str) -> Option<IpAddr> {
        let via = self.unicast_ip(path, text).filter(|&via| match prefix {
            Some(prefix) if prefix.addr().is_ipv4() != via.is_ipv4() => {
                let message = format!(
                    "next hop {via} is {} but prefix {prefix} is {}",
                    family(via),
                    family(prefix.addr())
                );
                self.error(path, message);
                false
            }
            _ => true,
        });
        via.filter(|&via| {
            self.reject_own_address(path, via, "next hop")
                && self.require_connected(path, via, "next hop")
        })
    }

    pub(super) fn neighbors(&mut self, raw: &[RawNeighbor]) -> Vec<Option<NeighborConfig>> {
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
}

/// Where next hop `j` of route `i` is written: `routes[i].via` for the single
/// form, `routes[i].via[j]` in a list.
fn via_path(i: usize, listed: bool, j: usize) -> String {
    if listed {
        format!("routes[{i}].via[{j}]")
    } else {
        format!("routes[{i}].via")
    }
}
