//! `sync`: the members' addresses, the key file, the timers, and the shared
//! addresses, checked against the ports and the services.

use super::*;

impl Checker<'_> {
    pub(super) fn sync(
        &mut self,
        raw: &RawSync,
        management: Option<&ManagementConfig>,
    ) -> Option<SyncConfig> {
        let mut ok = true;
        if management.is_some_and(|m| !m.exception_path) {
            self.error(
                "sync",
                "sync needs management.exception_path: members talk through the ports' \
                 kernel interfaces",
            );
            ok = false;
        }
        let listen = self.endpoint("sync.listen", &raw.listen).filter(|l| {
            let own = self.is_own_address(l.ip()).is_some();
            if !own {
                self.error(
                    "sync.listen",
                    format!(
                        "{} is no port's address: members send from an own address",
                        l.ip()
                    ),
                );
            }
            own
        });
        if raw.peers.is_empty() {
            self.error("sync.peers", "sync needs at least one peer");
            ok = false;
        }
        let mut peers = Vec::new();
        for (i, text) in raw.peers.iter().enumerate() {
            let path = format!("sync.peers[{i}]");
            let Some(peer) = self.endpoint(&path, text) else {
                ok = false;
                continue;
            };
            if Some(peer) == listen || peers.contains(&peer) {
                self.error(&path, format!("{peer} is given twice (listen and peers)"));
                ok = false;
            } else if let Some(port) = self.is_own_address(peer.ip()) {
                self.error(&path, format!("{} is the address of {port}", peer.ip()));
                ok = false;
            }
            peers.push(peer);
        }
        let key_file = if raw.key_file.starts_with('/') {
            Some(PathBuf::from(&raw.key_file))
        } else {
            self.error(
                "sync.key_file",
                format!("`{}` is not an absolute path", raw.key_file),
            );
            None
        };
        let heartbeat = self.bounded_duration(
            "sync.heartbeat",
            raw.heartbeat.as_deref(),
            DEFAULT_SYNC_HEARTBEAT,
            (Duration::from_millis(10), Duration::from_secs(10)),
        );
        let peer_timeout = self.bounded_duration(
            "sync.peer_timeout",
            raw.peer_timeout.as_deref(),
            DEFAULT_SYNC_PEER_TIMEOUT,
            (Duration::from_millis(30), Duration::from_secs(60)),
        );
        if let (Some(h), Some(t)) = (heartbeat, peer_timeout) {
            if t < 3 * h {
                self.error(
                    "sync.peer_timeout",
                    "must be at least three heartbeats: one lost datagram must not look \
                     like a lost member",
                );
                ok = false;
            }
        }
        let refresh = self.bounded_duration(
            "sync.refresh",
            raw.refresh.as_deref(),
            DEFAULT_SYNC_REFRESH,
            (Duration::from_secs(1), Duration::from_secs(3600)),
        );
        let members: Vec<SocketAddr> = listen.iter().chain(&peers).copied().collect();
        let mut shared = Vec::new();
        for (i, a) in raw
            .shared_addresses
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("sync.shared_addresses[{i}]");
            let address = self
                .unicast_ip(&format!("{path}.address"), &a.address)
                .filter(|ip| {
                    self.require_connected(&format!("{path}.address"), *ip, "a shared address")
                })
                .filter(|ip| {
                    self.reject_own_address(&format!("{path}.address"), *ip, "a shared address")
                });
            let owner = self
                .endpoint(&format!("{path}.owner"), &a.owner)
                .filter(|o| {
                    let member = members.contains(o);
                    if !member {
                        self.error(
                            &format!("{path}.owner"),
                            format!("{o} is not a member (sync.listen or sync.peers)"),
                        );
                    }
                    member
                });
            match (address, owner) {
                (Some(address), Some(owner)) => {
                    if shared.iter().any(|s: &SharedAddress| s.address == address) {
                        self.error(
                            &format!("{path}.address"),
                            format!("{address} is shared twice"),
                        );
                        ok = false;
                    }
                    shared.push(SharedAddress { address, owner });
                }
                _ => ok = false,
            }
        }
        if !ok {
            return None;
        }
        Some(SyncConfig {
            listen: listen?,
            peers,
            key_file: key_file?,
            heartbeat: heartbeat?,
            peer_timeout: peer_timeout?,
            refresh: refresh?,
            shared_addresses: shared,
        })
    }

    /// An `ADDRESS:PORT` with a non-zero port.
    fn endpoint(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                self.error(path, "port 0 is no port to send to");
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    format!("`{text}` is not ADDRESS:PORT such as \"198.19.0.1:8848\""),
                );
                None
            }
        }
    }
}
