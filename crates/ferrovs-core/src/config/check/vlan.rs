//! `vlans`: 802.1Q VLANs of the ports, each a logical interface with its own
//! addresses (checked like a port's, as connected subnets of their own).

use super::*;

/// Longest interface name Linux accepts (`IFNAMSIZ` less the NUL): a VLAN's
/// kernel interface is named by it.
const MAX_IFNAME: usize = 15;

impl Checker<'_> {
    /// The VLANs, checked against the ports as written (`raw_ports`) and as
    /// validated (`ports`, for their MTUs). Interfaces are numbered ports first,
    /// so VLAN `j` is interface `raw_ports.len() + j`.
    pub(super) fn vlans(
        &mut self,
        raw: &[RawVlan],
        raw_ports: &[RawPort],
        ports: Option<&[PortConfig]>,
    ) -> Option<Vec<VlanConfig>> {
        let mut names: HashSet<String> = raw_ports.iter().map(|p| p.name.clone()).collect();
        let mut tags: HashMap<(usize, u16), usize> = HashMap::new();
        let mut vlans = Vec::with_capacity(raw.len());
        for (j, v) in raw.iter().enumerate() {
            let path = format!("vlans[{j}]");
            let port = raw_ports.iter().position(|p| p.name == v.port);
            if port.is_none() {
                let known: Vec<&str> = raw_ports.iter().map(|p| p.name.as_str()).collect();
                self.error(
                    &format!("{path}.port"),
                    format!(
                        "no port is named `{}` (ports: {})",
                        v.port,
                        known.join(", ")
                    ),
                );
            }
            let id_path = format!("{path}.id");
            // 0 means "no VLAN" (priority tags) and 4095 is reserved (802.1Q).
            let id: Option<u16> = self.int(&id_path, v.id, 1, 4094);
            if let (Some(port), Some(id)) = (port, id) {
                if let Some(other) = tags.insert((port, id), j) {
                    self.error(
                        &id_path,
                        format!(
                            "VLAN {id} of port {} is already vlans[{other}]",
                            raw_ports[port].name
                        ),
                    );
                }
            }
            let name_path = format!("{path}.name");
            let name = self.name(
                &name_path,
                &v.name,
                MAX_IFNAME,
                |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'),
                "[A-Za-z0-9_.-]",
            );
            let name = name.filter(|name| {
                let taken = !names.insert(name.clone());
                if taken {
                    self.error(
                        &name_path,
                        format!("interface name `{name}` is already a port's or a VLAN's"),
                    );
                }
                !taken && name != "." && name != ".."
            });
            let label = format!("VLAN {}", v.name);
            let addresses = self.interface_addresses(
                &path,
                raw_ports.len() + j,
                (&label, &v.name),
                v.addresses.as_deref(),
            );
            let addresses: Option<Vec<IpNet>> = addresses.into_iter().collect();
            let mtu = port.and_then(|p| ports.and_then(|ports| ports.get(p)).map(|p| p.mtu));
            if let (Some(addresses), Some(mtu)) = (&addresses, mtu) {
                if mtu < 1280 && addresses.iter().any(|a| a.addr().is_ipv6()) {
                    self.error(
                        &format!("{path}.addresses"),
                        format!(
                            "IPv6 on a VLAN of port {}, whose MTU {mtu} is below 1280, \
                             the IPv6 minimum",
                            v.port
                        ),
                    );
                }
            }
            vlans.push(port.zip(id).zip(name).zip(addresses).map(
                |(((port, id), name), addresses)| VlanConfig {
                    port,
                    id,
                    name,
                    addresses,
                },
            ));
        }
        vlans.into_iter().collect()
    }
}
