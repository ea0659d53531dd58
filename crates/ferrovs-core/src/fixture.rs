//! The configuration tests start from: one appliance with a WAN and a LAN port on
//! null devices, which each test extends with the sections it is about (services,
//! neighbours, routes, limits). Built for tests only (this crate's, and through the
//! `fixture` feature the `ferrovs` crate's).

use crate::config::{self, Config, HostFacts};

/// The WAN port's IPv4 address (clients and VIPs are on 198.18.0.0/24).
pub const WAN_V4: &str = "198.18.0.1/24";
/// The LAN port's IPv4 address (real servers are on 198.19.0.0/24).
pub const LAN_V4: &str = "198.19.0.1/24";
/// The WAN port's IPv6 address, with `ipv6`.
pub const WAN_V6: &str = "2001:2::1/64";
/// The LAN port's IPv6 address, with `ipv6`.
pub const LAN_V6: &str = "2001:2:0:19::1/64";

/// The appliance with one worker and IPv4 addresses, then `sections` (YAML
/// top-level sections, verbatim).
pub fn appliance(sections: &str) -> String {
    appliance_with(1, false, sections)
}

/// The appliance with `workers` workers (lcores 1..=workers, 0 is the management
/// core), IPv6 addresses on both ports when `ipv6`, then `sections`.
pub fn appliance_with(workers: usize, ipv6: bool, sections: &str) -> String {
    let cores: Vec<String> = (0..=workers).map(|c| c.to_string()).collect();
    let (wan, lan) = if ipv6 {
        (
            format!("\"{WAN_V4}\", \"{WAN_V6}\""),
            format!("\"{LAN_V4}\", \"{LAN_V6}\""),
        )
    } else {
        (format!("\"{WAN_V4}\""), format!("\"{LAN_V4}\""))
    };
    format!(
        "eal: {{ cores: [{}], hugepages: false }}\n\
         ports:\n  \
         - {{ name: wan, device: net_null0, addresses: [{wan}] }}\n  \
         - {{ name: lan, device: net_null1, addresses: [{lan}] }}\n\
         workers: {{ cores: [{}] }}\n{sections}",
        cores.join(", "),
        cores[1..].join(", "),
    )
}

/// `text` parsed as `test.yaml` with default host facts; panics with every error
/// when it is not valid (a fixture that does not parse is the test's bug).
pub fn parse(text: &str) -> Config {
    config::parse(text, "test.yaml", &HostFacts::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_appliance_parses_with_its_workers_and_addresses() {
        let cfg = parse(&appliance_with(2, true, "connections: { max: 100 }\n"));
        assert_eq!(cfg.workers.cores, vec![1, 2]);
        assert_eq!(cfg.eal.cores, vec![0, 1, 2]);
        assert_eq!(cfg.ports.len(), 2);
        assert_eq!(cfg.ports[0].addresses.len(), 2);
        assert_eq!(cfg.ports[1].addresses[0].to_string(), LAN_V4);
        assert_eq!(cfg.connections.max, 100);
        let v4 = parse(&appliance(""));
        assert_eq!(v4.workers.cores, vec![1]);
        assert_eq!(v4.ports[0].addresses.len(), 1);
    }
}
