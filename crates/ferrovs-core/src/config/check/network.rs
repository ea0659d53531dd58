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
                Some(format!("{problem}, port {}'s subnet", c.port))
            })
    }

    /// Reports every route whose next hop is a service's VIP or FULLNAT local
    /// address: ferrovs owns those addresses, so the route would loop back to it.
    pub(super) fn routes_via_own_service_addresses(
        &mut self,
        routes: &[Option<RouteConfig>],
        services: &[Option<ServiceConfig>],
    ) {
        for (i, route) in routes.iter().enumerate() {
            let Some(route) = route else { continue };
            let owner = services.iter().flatten().find_map(|s| {
                if s.vip == route.via {
                    Some(format!("the VIP of service {}", s.name))
                } else if s.local_addresses.contains(&route.via) {
                    Some(format!("a local address of service {}", s.name))
                } else {
                    None
                }
            });
            if let Some(owner) = owner {
                self.error(
                    &format!("routes[{i}].via"),
                    format!(
                        "next hop {} is {owner}: ferrovs answers for it itself",
                        route.via
                    ),
                );
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
    pub(super) fn reject_own_address(&mut self, path: &str, ip: IpAddr, what: &str) -> bool {
        if let Some(port) = self.is_own_address(ip) {
            let message = format!("{what} {ip} is the address of port {port}");
            self.error(path, message);
            return false;
        }
        true
    }

    /// The routes, and every prefix that parsed (a bad next hop does not make the
    /// prefix's destinations unroutable for the real-server checks).
    pub(super) fn routes(&mut self, raw: &[RawRoute]) -> (Vec<Option<RouteConfig>>, Vec<IpNet>) {
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
