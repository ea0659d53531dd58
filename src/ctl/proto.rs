//! The control protocol between `ferrovs ctl` and a running ferrovs: one JSON object
//! per line over the Unix socket at `management.control_socket`, a request from the
//! client, a response from the server, then the connection closes. A client may
//! wrap its request as `{"timeout_ms": N, "request": {...}}` to say how long it
//! waits; the server then applies it only while the answer can still arrive, and
//! otherwise answers that nothing was applied (a bare request gets 8 s).
//!
//! Mutating requests carry services and real servers in exactly the shape of the
//! YAML config (`services:` items), and the server validates them with the same
//! rules as the config file.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A request. The `cmd` field names the variant in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Services and real servers with counters and rates.
    List {},
    /// Connections, optionally filtered; at most `limit` (default 1000).
    Conns {
        /// Only connections of the service with this name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// "IP:PORT" (IPv6 as "[IP]:PORT").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        real_server: Option<String>,
        /// An ipvsadm state name: ESTABLISHED, SYN_RECV, TIME_WAIT, ..., UDP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        /// Most connections returned; 1000 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Adds a service: a `services:` item of the config, as JSON.
    AddService {
        /// The new service, shaped as a `services:` item.
        service: serde_json::Value,
    },
    /// Replaces a service's settings (same name): a complete `services:` item.
    EditService {
        /// The service's new settings, shaped as a `services:` item; its `name`
        /// says which service.
        service: serde_json::Value,
    },
    /// Removes a service: it takes no new connections, live ones finish or expire.
    RemoveService {
        /// Name of the service.
        name: String,
    },
    /// Adds a real server (a `real_servers:` item) to a service.
    AddRealServer {
        /// Name of the service.
        service: String,
        /// The new real server, shaped as a `real_servers:` item.
        real_server: serde_json::Value,
    },
    /// Changes a real server's weight.
    SetWeight {
        /// Name of the service.
        service: String,
        /// The real server as `IP:PORT` (IPv6 as `[IP]:PORT`).
        real_server: String,
        /// The new weight; 0 drains the server.
        weight: u32,
    },
    /// Weight 0: no new connections, live ones continue.
    Drain {
        /// Name of the service.
        service: String,
        /// The real server as `IP:PORT` (IPv6 as `[IP]:PORT`).
        real_server: String,
    },
    /// Removes a real server from a service; its live connections continue.
    RemoveRealServer {
        /// Name of the service.
        service: String,
        /// The real server as `IP:PORT` (IPv6 as `[IP]:PORT`).
        real_server: String,
    },
    /// Reads the configuration file again and applies what changed.
    Reload {},
    /// Withdraws a VIP's route (`announce`) until `announce`.
    Withdraw {
        /// The VIP.
        vip: IpAddr,
    },
    /// Lets a withdrawn VIP be announced again when it is ready to serve.
    Announce {
        /// The VIP.
        vip: IpAddr,
    },
    /// Connection sync's status.
    Sync {},
    /// The running services as a `services:` YAML document (`ipvsadm -S`).
    Save {},
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// `list`.
    Services {
        /// Every service, in configuration order.
        services: Vec<ServiceView>,
    },
    /// `conns`. `truncated` when more connections matched than `limit`.
    Conns {
        /// The matching connections, at most `limit`.
        conns: Vec<ConnView>,
        /// More connections matched than were listed.
        truncated: bool,
    },
    /// `sync`.
    Sync {
        /// The status; absent when `sync` is not configured.
        sync: SyncView,
    },
    /// `save`: the running services, a `services:` YAML document that a
    /// configuration file can hold as it is.
    Saved {
        /// The YAML text.
        yaml: String,
    },
    /// A mutation or reload took effect; `message` says what changed.
    Done {
        /// The changes, for the operator to read.
        message: String,
    },
    /// Refused: nothing changed. One line per problem.
    Error {
        /// What was wrong, one line per problem.
        errors: Vec<String>,
    },
}

/// Counters (totals since start) of a service or real server, ipvsadm `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Client-to-server packets.
    pub in_packets: u64,
    /// Server-to-client packets; none in DR and TUNNEL, whose replies bypass us.
    pub out_packets: u64,
    /// Client-to-server bytes, from the IP header on.
    pub in_bytes: u64,
    /// Server-to-client bytes, from the IP header on.
    pub out_bytes: u64,
}

/// Per-second rates, ipvsadm `--rate`: averaged over the last few seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// New connections per second.
    pub cps: f64,
    /// Client-to-server packets per second.
    pub in_pps: f64,
    /// Server-to-client packets per second.
    pub out_pps: f64,
    /// Client-to-server bytes (not bits) per second, as in ipvsadm.
    pub in_bps: f64,
    /// Server-to-client bytes (not bits) per second, as in ipvsadm.
    pub out_bps: f64,
}

/// A service as `list` shows it: its settings, and its real servers' counters and
/// rates summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    /// The service's unique name.
    pub name: String,
    /// "tcp" or "udp".
    pub protocol: String,
    /// "VIP:PORT".
    pub address: String,
    /// The scheduler's ipvsadm name: "rr", "wrr", ...
    pub scheduler: String,
    /// "nat", "fullnat", "dr" or "tunnel".
    pub mode: String,
    /// Persistence timeout in seconds; 0 = off.
    pub persistence_s: u64,
    /// One-packet scheduling (`ops`); absent when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ops: bool,
    /// Whether the VIP's route is announced; absent when `announce` is not
    /// configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<bool>,
    /// The fewest available real servers (up, weight above 0) the service wants:
    /// below it the VIP is withdrawn (`announce`) and a sorry server takes over.
    /// Absent from older ferrovs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Real servers available now (up, weight above 0), the sorry server not
    /// counted. Absent from older ferrovs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    /// The sorry server takes the new connections (quorum lost); absent when the
    /// service has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_active: Option<bool>,
    /// Its real servers' counters summed, all workers.
    pub stats: Stats,
    /// Its real servers' rates summed.
    pub rates: Rates,
    /// In configuration order.
    pub real_servers: Vec<RealServerView>,
}

/// A real server as `list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealServerView {
    /// "IP:PORT".
    pub address: String,
    /// The service's sorry server (keepalived's `sorry_server`), listed last: its
    /// weight is 1 while it takes the new connections, else 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sorry: bool,
    /// Current weight; 0 = drained.
    pub weight: u32,
    /// Health: false when checks (or passive detection) took it out.
    pub up: bool,
    /// Active (IPVS sense) and inactive connections, all workers.
    pub active_conns: u64,
    /// Connections in every other state, all workers.
    pub inactive_conns: u64,
    /// Counters, all workers.
    pub stats: Stats,
    /// Rates, smoothed over the last few seconds.
    pub rates: Rates,
}

/// A connection as `conns` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnView {
    /// "TCP" or "UDP".
    pub protocol: String,
    /// "IP:PORT" each.
    pub client: String,
    /// The virtual service the client addressed.
    pub virtual_address: String,
    /// The source the real server sees (the client, or LIP:lport in FULLNAT).
    pub local: String,
    /// The real server the connection was scheduled to.
    pub real_server: String,
    /// ipvsadm state name.
    pub state: String,
    /// Milliseconds until expiry.
    pub expires_ms: u64,
    /// Index of the worker whose table holds the connection.
    pub worker: usize,
}

/// Connection sync as `ctl sync` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncView {
    /// This member's sync address.
    pub listen: String,
    /// It carries the shared addresses it owns (it caught up with its peers).
    pub ready: bool,
    /// Every peer.
    pub peers: Vec<SyncPeerView>,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams accepted.
    pub datagrams_received: u64,
    /// Records sent (once for all peers).
    pub records_sent: u64,
    /// Records received in accepted datagrams.
    pub records_received: u64,
    /// Peers' records installed as connections here.
    pub installed: u64,
    /// Peers' records not installed.
    pub refused: u64,
    /// This member's records lost to a full ring on the workers' side.
    pub lost: u64,
    /// Drops by reason (reasons with drops only).
    pub dropped: Vec<(String, u64)>,
    /// Every shared address and whether this member answers for it now.
    pub shared: Vec<(String, bool)>,
}

/// A peer as `ctl sync` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPeerView {
    /// Its sync address.
    pub address: String,
    /// Heard within `sync.peer_timeout`.
    pub up: bool,
    /// It said it is ready.
    pub ready: bool,
    /// Milliseconds since it was last heard; absent: never.
    pub last_heard_ms: Option<u64>,
    /// Datagrams accepted from it.
    pub datagrams: u64,
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
