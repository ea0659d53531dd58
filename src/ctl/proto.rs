//! The control protocol between `ferrovs ctl` and a running ferrovs: one JSON object
//! per line over the Unix socket at `management.control_socket`, a request from the
//! client, a response from the server, then the connection closes.
//!
//! Mutating requests carry services and real servers in exactly the shape of the
//! YAML config (`services:` items), and the server validates them with the same
//! rules as the config file.

use serde::{Deserialize, Serialize};

/// A request. The `cmd` field names the variant in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Services and real servers with counters and rates.
    List {},
    /// Connections, optionally filtered; at most `limit` (default 1000).
    Conns {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// "IP:PORT" (IPv6 as "[IP]:PORT").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        real_server: Option<String>,
        /// An ipvsadm state name: ESTABLISHED, SYN_RECV, TIME_WAIT, ..., UDP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Adds a service: a `services:` item of the config, as JSON.
    AddService { service: serde_json::Value },
    /// Replaces a service's settings (same name): a complete `services:` item.
    EditService { service: serde_json::Value },
    /// Removes a service: it takes no new connections, live ones finish or expire.
    RemoveService { name: String },
    /// Adds a real server (a `real_servers:` item) to a service.
    AddRealServer {
        service: String,
        real_server: serde_json::Value,
    },
    /// Changes a real server's weight.
    SetWeight {
        service: String,
        real_server: String,
        weight: u32,
    },
    /// Weight 0: no new connections, live ones continue.
    Drain {
        service: String,
        real_server: String,
    },
    /// Removes a real server from a service; its live connections continue.
    RemoveRealServer {
        service: String,
        real_server: String,
    },
    /// Reads the configuration file again and applies what changed.
    Reload {},
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// `list`.
    Services { services: Vec<ServiceView> },
    /// `conns`. `truncated` when more connections matched than `limit`.
    Conns {
        conns: Vec<ConnView>,
        truncated: bool,
    },
    /// A mutation or reload took effect; `message` says what changed.
    Done { message: String },
    /// Refused: nothing changed. One line per problem.
    Error { errors: Vec<String> },
}

/// Counters (totals since start) of a service or real server, ipvsadm `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// Per-second rates, ipvsadm `--rate`: averaged over the last few seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: f64,
    pub in_pps: f64,
    pub out_pps: f64,
    pub in_bps: f64,
    pub out_bps: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    /// "tcp" or "udp".
    pub protocol: String,
    /// "VIP:PORT".
    pub address: String,
    pub scheduler: String,
    /// "nat", "fullnat", "dr" or "tunnel".
    pub mode: String,
    /// Persistence timeout in seconds; 0 = off.
    pub persistence_s: u64,
    pub stats: Stats,
    pub rates: Rates,
    pub real_servers: Vec<RealServerView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealServerView {
    /// "IP:PORT".
    pub address: String,
    pub weight: u32,
    /// Health: false when checks (or passive detection) took it out.
    pub up: bool,
    /// Active (IPVS sense) and inactive connections, all workers.
    pub active_conns: u64,
    pub inactive_conns: u64,
    pub stats: Stats,
    pub rates: Rates,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnView {
    /// "TCP" or "UDP".
    pub protocol: String,
    /// "IP:PORT" each.
    pub client: String,
    pub virtual_address: String,
    /// The source the real server sees (the client, or LIP:lport in FULLNAT).
    pub local: String,
    pub real_server: String,
    /// ipvsadm state name.
    pub state: String,
    /// Milliseconds until expiry.
    pub expires_ms: u64,
    pub worker: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_lines() {
        let r = Request::SetWeight {
            service: "web".into(),
            real_server: "198.19.0.10:8080".into(),
            weight: 0,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"cmd":"set_weight","service":"web","real_server":"198.19.0.10:8080","weight":0}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"list"}"#).unwrap(),
            Request::List {}
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"list","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format_disk"}"#).is_err());
    }
}
