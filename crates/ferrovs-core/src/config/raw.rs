//! The config as written: the serde layer.
//!
//! serde checks only structure here (known keys, required keys, YAML types), because
//! its first error stops deserialisation. Values with a syntax of their own
//! (addresses, prefixes, durations, MACs, devices, keywords) stay strings, integers
//! stay `u64`, and defaulted keys stay `Option`, so that `check` can report every bad
//! value together and knows which keys were written.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the ferrovs config mapping (eal, ports, workers, ...)"
)]
pub(super) struct RawConfig {
    pub eal: RawEal,
    pub ports: Vec<RawPort>,
    pub workers: RawWorkers,
    pub mempool: Option<RawMempool>,
    pub management: Option<RawManagement>,
    pub connections: Option<RawConnections>,
    pub routes: Option<Vec<RawRoute>>,
    pub neighbors: Option<Vec<RawNeighbor>>,
    pub vlans: Option<Vec<RawVlan>>,
    pub services: Option<Vec<RawService>>,
    pub announce: Option<RawAnnounce>,
    pub sync: Option<RawSync>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the sync mapping (listen, peers, key_file, ...)"
)]
pub(super) struct RawSync {
    pub listen: String,
    pub peers: Vec<String>,
    pub key_file: String,
    pub heartbeat: Option<String>,
    pub peer_timeout: Option<String>,
    pub refresh: Option<String>,
    pub shared_addresses: Option<Vec<RawSharedAddress>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a shared address mapping (address, owner)"
)]
pub(super) struct RawSharedAddress {
    pub address: String,
    pub owner: String,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the announce mapping (kernel_table, shutdown_grace)"
)]
pub(super) struct RawAnnounce {
    pub kernel_table: u64,
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the eal mapping")]
pub(super) struct RawEal {
    pub cores: Vec<u64>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub cpu_map: Option<std::collections::BTreeMap<u64, u64>>,
    pub memory_mb: Option<u64>,
    pub hugepages: Option<bool>,
    pub file_prefix: Option<String>,
    pub args: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a port mapping (name, device, ...)")]
pub(super) struct RawPort {
    pub name: String,
    pub device: String,
    pub addresses: Option<Vec<String>>,
    pub mtu: Option<u64>,
    pub rx_descriptors: Option<u64>,
    pub tx_descriptors: Option<u64>,
    pub rp_filter: Option<String>,
    pub members: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a VLAN mapping (port, id, name, addresses)"
)]
pub(super) struct RawVlan {
    pub port: String,
    pub id: u64,
    pub name: String,
    pub addresses: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the workers mapping")]
pub(super) struct RawWorkers {
    pub cores: Vec<u64>,
    pub burst: Option<u64>,
    pub idle_backoff: Option<bool>,
    pub idle_sleep_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the mempool mapping")]
pub(super) struct RawMempool {
    pub mbufs: Option<u64>,
    pub cache_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the management mapping")]
pub(super) struct RawManagement {
    pub metrics_listen: Option<String>,
    pub control_socket: Option<String>,
    pub exception_path: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the connections mapping")]
pub(super) struct RawConnections {
    pub max: Option<u64>,
    pub timeouts: Option<RawTimeouts>,
    pub syn_proxy_above: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of timeouts")]
pub(super) struct RawTimeouts {
    pub tcp_established: Option<String>,
    pub tcp_syn: Option<String>,
    pub tcp_fin: Option<String>,
    pub tcp_time_wait: Option<String>,
    pub tcp_close: Option<String>,
    pub tcp_close_wait: Option<String>,
    pub tcp_last_ack: Option<String>,
    pub udp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route mapping (prefix, via)")]
pub(super) struct RawRoute {
    pub prefix: String,
    pub via: RawVia,
}

/// A route's next hop (`via: ADDR`), or its equal-cost next hops (`via: [A, B]`).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a next-hop address, or a list of next-hop addresses"
)]
pub(super) enum RawVia {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a neighbor mapping (ip, mac)")]
pub(super) struct RawNeighbor {
    pub ip: String,
    pub mac: String,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a service mapping (name, vip, port, ...)"
)]
pub(super) struct RawService {
    pub name: String,
    pub vip: String,
    pub port: u64,
    pub protocol: String,
    pub mode: String,
    pub scheduler: Option<String>,
    pub sched_flags: Option<Vec<String>>,
    pub persistence: Option<String>,
    pub persistence_netmask: Option<u64>,
    pub local_addresses: Option<Vec<String>>,
    pub real_servers: Option<Vec<RawRealServer>>,
    pub health_check: Option<RawHealthCheck>,
    pub quorum: Option<u64>,
    pub sloppy: Option<bool>,
    pub ops: Option<bool>,
    pub sorry_server: Option<RawSorryServer>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub deny_action: Option<String>,
    pub new_connections_per_source: Option<String>,
    pub proxy_protocol: Option<String>,
    pub syn_proxy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a sorry_server mapping (address, port)"
)]
pub(super) struct RawSorryServer {
    pub address: String,
    pub port: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a health_check mapping (type, interval, timeout, rise, fall, ...)"
)]
pub(super) struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u64>,
    pub fall: Option<u64>,
    pub port: Option<u64>,
    pub path: Option<String>,
    pub expect_status: Option<u64>,
    pub passive: Option<bool>,
    pub payload: Option<String>,
    pub payload_hex: Option<String>,
    pub require_reply: Option<bool>,
    pub expect: Option<String>,
    pub expect_hex: Option<String>,
    pub query_name: Option<String>,
    pub query_type: Option<String>,
    pub expect_rcode: Option<String>,
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub ca_file: Option<String>,
    pub command: Option<Vec<String>>,
    pub user: Option<String>,
    pub run_as_root: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a real server mapping (address, port, weight)"
)]
pub(super) struct RawRealServer {
    pub address: String,
    pub port: Option<u64>,
    pub weight: Option<u64>,
    pub max_connections: Option<u64>,
    pub min_connections: Option<u64>,
}

/// A map whose keys must not repeat: serde keeps the last of two equal keys
/// silently, which would hide a typo in `eal.cpu_map`.
fn unique_keys<'de, D>(de: D) -> Result<Option<std::collections::BTreeMap<u64, u64>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = std::collections::BTreeMap<u64, u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of lcore to CPU")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = std::collections::BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<u64, u64>()? {
                if out.insert(key, value).is_some() {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate key {key}: each lcore is mapped once"
                    )));
                }
            }
            Ok(out)
        }
    }
    de.deserialize_map(Visitor).map(Some)
}
