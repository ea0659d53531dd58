//! Connection sync with the other members (`sync:`), on the management core.
//!
//! Every poll of the management loop, the syncer
//! - drains the workers' rings of connection records and sends them to every
//!   peer, [`MAX_RECORDS`] to a datagram;
//! - receives the peers' datagrams (only from configured peers, tag and sequence
//!   checked, at most [`RECEIVE_BUDGET`] a poll so a flood cannot hold the
//!   management core) and hands their records to the workers that own those
//!   connections here (`WorkerCommand::SyncInstall`);
//! - sends a heartbeat every `sync.heartbeat`, telling whether this member is
//!   ready (carries its shared addresses) and whether it wants a bulk transfer;
//! - walks the workers' tables, a bounded step at a time, to send every live
//!   connection: every `sync.refresh`, and when a peer asks for a bulk transfer
//!   (which ends with a `BulkEnd` datagram to it);
//! - decides which shared addresses this member answers for: its own once it is
//!   ready, a lost member's when it is the first ready member after it.
//!
//! A member is ready when every peer it hears has sent it a bulk transfer, or
//! when it heard no peer for `sync.peer_timeout` after starting: so a restarted
//! member takes its addresses back only once it knows the connections the others
//! carried for it.

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use ferrovs_core::config::SyncConfig;
use ferrovs_core::conn::Mode;
use ferrovs_core::pipeline::{ConnChunk, ConnQuery, ConnSnapshot, Dataplane, WorkerCommand};
use ferrovs_core::steer::owner_of;
use ferrovs_core::sync::message::{
    self, Header, Kind, FLAG_NEED_BULK, FLAG_READY, MAX_DATAGRAM, MAX_RECORDS, MIN_KEY_LEN,
};
use ferrovs_core::sync::{RecordWords, ReplayWindow, SyncConn, SyncConsumer};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Datagrams read at most per poll of the management loop.
pub const RECEIVE_BUDGET: usize = 256;
/// Records drained at most per worker and poll.
const DRAIN_BUDGET: usize = 4096;
/// Table slots a worker scans per step of a refresh or bulk transfer.
const SCAN_STEP: usize = 8192;
/// How long a worker may take to answer a scan step before the walk is dropped.
const SCAN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a received datagram or record was dropped, as metrics labels.
pub const DROP_REASONS: &[&str] = &[
    "unknown_peer",
    "truncated",
    "too_large",
    "not_sync",
    "bad_tag",
    "replay",
    "bad_record",
    "worker_busy",
    "send_failed",
];

/// What the metrics and `ferrovs ctl sync` read; written by the management core.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Datagrams sent.
    pub datagrams_sent: AtomicU64,
    /// Datagrams received and accepted.
    pub datagrams_received: AtomicU64,
    /// Records sent (a record goes to every peer; counted once).
    pub records_sent: AtomicU64,
    /// Records received in accepted datagrams.
    pub records_received: AtomicU64,
    /// Drops by reason, indexed like [`DROP_REASONS`].
    pub dropped: [AtomicU64; 9],
    /// Every peer and shared address, for the gauges.
    pub status: Mutex<SyncStatus>,
}

impl SyncStats {
    fn count_drop(&self, reason: &str) {
        if let Some(i) = DROP_REASONS.iter().position(|r| *r == reason) {
            self.dropped[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The peers and shared addresses as the syncer last saw them.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// This member's sync address.
    pub listen: Option<SocketAddr>,
    /// Whether this member is ready (it carries the shared addresses it owns).
    pub ready: bool,
    /// Every peer.
    pub peers: Vec<PeerStatus>,
    /// Every shared address and whether this member answers for it now.
    pub shared: Vec<(IpAddr, bool)>,
}

/// One peer as the syncer last saw it.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// Its sync address.
    pub addr: SocketAddr,
    /// Heard within `sync.peer_timeout`.
    pub up: bool,
    /// It said it is ready.
    pub ready: bool,
    /// Milliseconds since its last accepted datagram; None: never heard.
    pub last_heard_ms: Option<u64>,
    /// Datagrams accepted from it.
    pub datagrams: u64,
}

struct Peer {
    addr: SocketAddr,
    window: ReplayWindow,
    last_heard: Option<Instant>,
    ready: bool,
    /// The epoch of the peer's that asked for a bulk transfer not served yet.
    wants_bulk: Option<u64>,
    /// The epoch of the peer's whose bulk transfer was sent.
    served: u64,
    /// The peer's bulk transfer to this member arrived.
    sent_us_bulk: bool,
    datagrams: u64,
}

/// One walk over every worker's tables.
struct Scan {
    worker: usize,
    ipv6: bool,
    from: usize,
    pending: Option<(Receiver<ConnChunk>, Instant)>,
    /// Peers (indices) to send `BulkEnd` to when the walk is done.
    bulk_for: Vec<usize>,
}

/// The management core's side of connection sync.
pub struct Syncer {
    cfg: SyncConfig,
    socket: UdpSocket,
    key: Vec<u8>,
    epoch: u64,
    seq: u64,
    started: Instant,
    peers: Vec<Peer>,
    consumers: Vec<SyncConsumer>,
    stats: Arc<SyncStats>,
    last_heartbeat: Option<Instant>,
    next_refresh: Instant,
    scan: Option<Scan>,
    ready: bool,
    active: Vec<IpAddr>,
    /// Buffers kept across polls.
    words: Vec<RecordWords>,
    outgoing: Vec<SyncConn>,
    datagram: Vec<u8>,
}

/// Reads the members' key: at least [`MIN_KEY_LEN`] bytes, trailing newline
/// included as written (both members read the same file the same way).
pub fn read_key(cfg: &SyncConfig) -> Result<Vec<u8>, String> {
    let key = std::fs::read(&cfg.key_file)
        .map_err(|e| format!("sync.key_file {}: {e}", cfg.key_file.display()))?;
    if key.len() < MIN_KEY_LEN {
        return Err(format!(
            "sync.key_file {}: {} bytes; the key needs at least {MIN_KEY_LEN}",
            cfg.key_file.display(),
            key.len()
        ));
    }
    Ok(key)
}

impl Syncer {
    /// Binds the sync address and takes the workers' rings (index = worker).
    pub fn new(cfg: SyncConfig, consumers: Vec<SyncConsumer>) -> Result<Syncer, String> {
        let key = read_key(&cfg)?;
        let socket =
            UdpSocket::bind(cfg.listen).map_err(|e| format!("sync.listen {}: {e}", cfg.listen))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("sync socket: {e}"))?;
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let now = Instant::now();
        let peers = cfg
            .peers
            .iter()
            .map(|&addr| Peer {
                addr,
                window: ReplayWindow::default(),
                last_heard: None,
                ready: false,
                wants_bulk: None,
                served: 0,
                sent_us_bulk: false,
                datagrams: 0,
            })
            .collect();
        let stats = Arc::new(SyncStats::default());
        Ok(Syncer {
            next_refresh: now + cfg.refresh,
            cfg,
            socket,
            key,
            epoch,
            seq: 0,
            started: now,
            peers,
            consumers,
            stats,
            last_heartbeat: None,
            scan: None,
            ready: false,
            active: Vec::new(),
            words: Vec::with_capacity(DRAIN_BUDGET),
            outgoing: Vec::with_capacity(MAX_RECORDS),
            datagram: Vec::with_capacity(MAX_DATAGRAM),
        })
    }

    /// The counters and status the metrics read.
    pub fn stats(&self) -> Arc<SyncStats> {
        self.stats.clone()
    }

    /// The shared addresses this member answers for now.
    pub fn active(&self) -> &[IpAddr] {
        &self.active
    }

    /// One poll; returns true when the set of shared addresses this member
    /// answers for changed (the caller publishes a snapshot and announces them).
    pub fn poll(
        &mut self,
        now: Instant,
        dp: &Dataplane,
        commands: &[Sender<WorkerCommand>],
    ) -> bool {
        self.send_worker_records();
        self.receive(now, dp, commands);
        if self
            .last_heartbeat
            .is_none_or(|t| now.duration_since(t) >= self.cfg.heartbeat)
        {
            self.last_heartbeat = Some(now);
            self.heartbeat();
        }
        self.walk(now, commands);
        self.update_ready(now);
        let changed = self.update_active(now);
        self.publish_status(now);
        changed
    }

    fn next_header(&mut self, kind: Kind) -> Header {
        self.seq += 1;
        let mut flags = 0;
        if self.ready {
            flags |= FLAG_READY;
        }
        if self.wants_bulk() {
            flags |= FLAG_NEED_BULK;
        }
        Header {
            kind,
            flags,
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Whether this member still waits for a bulk transfer from a live peer.
    fn wants_bulk(&self) -> bool {
        !self.ready
    }

    fn send_to(&mut self, to: SocketAddr) {
        match self.socket.send_to(&self.datagram, to) {
            Ok(_) => {
                self.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => self.stats.count_drop("send_failed"),
        }
    }

    /// Sends `outgoing` as one datagram to `to` (every peer when None).
    fn flush(&mut self, to: Option<SocketAddr>) {
        if self.outgoing.is_empty() {
            return;
        }
        let header = self.next_header(Kind::Connections);
        message::seal(&self.key, &header, &self.outgoing, &mut self.datagram);
        self.stats
            .records_sent
            .fetch_add(self.outgoing.len() as u64, Ordering::Relaxed);
        self.outgoing.clear();
        match to {
            Some(addr) => self.send_to(addr),
            None => {
                for i in 0..self.peers.len() {
                    let addr = self.peers[i].addr;
                    self.send_to(addr);
                }
            }
        }
    }

    fn queue(&mut self, record: SyncConn, to: Option<SocketAddr>) {
        self.outgoing.push(record);
        if self.outgoing.len() == MAX_RECORDS {
            self.flush(to);
        }
    }

    /// The workers' new records, to every peer.
    fn send_worker_records(&mut self) {
        for w in 0..self.consumers.len() {
            self.words.clear();
            self.consumers[w].drain(&mut self.words, DRAIN_BUDGET);
            let words = std::mem::take(&mut self.words);
            for r in &words {
                // A worker's own records always decode; anything else is a bug
                // not worth a panic.
                if let Ok(record) = SyncConn::from_words(r) {
                    self.queue(record, None);
                }
            }
            self.words = words;
        }
        self.flush(None);
    }

    fn heartbeat(&mut self) {
        let header = self.next_header(Kind::Heartbeat);
        message::seal(&self.key, &header, &[], &mut self.datagram);
        for i in 0..self.peers.len() {
            let addr = self.peers[i].addr;
            self.send_to(addr);
        }
    }

    fn receive(&mut self, now: Instant, dp: &Dataplane, commands: &[Sender<WorkerCommand>]) {
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        let mut per_worker: Vec<Vec<SyncConn>> = vec![Vec::new(); commands.len()];
        for _ in 0..RECEIVE_BUDGET {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(_) => break,
            };
            let Some(p) = self.peers.iter().position(|p| p.addr == from) else {
                self.stats.count_drop("unknown_peer");
                continue;
            };
            let (header, records) = match message::open(&self.key, &buf[..n]) {
                Ok(m) => m,
                Err(e) => {
                    self.stats.count_drop(e.reason());
                    continue;
                }
            };
            let peer = &mut self.peers[p];
            if let Err(e) = peer.window.accept(header.epoch, header.seq) {
                self.stats.count_drop(e.reason());
                continue;
            }
            peer.last_heard = Some(now);
            peer.datagrams += 1;
            peer.ready = header.flags & FLAG_READY != 0;
            if header.flags & FLAG_NEED_BULK != 0 && peer.served != header.epoch {
                peer.wants_bulk = Some(header.epoch);
            }
            self.stats
                .datagrams_received
                .fetch_add(1, Ordering::Relaxed);
            match header.kind {
                Kind::Heartbeat => {}
                Kind::BulkEnd => peer.sent_us_bulk = true,
                Kind::Connections => {
                    self.stats
                        .records_received
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    for r in records {
                        let w = owner_here(dp, &r, commands.len());
                        per_worker[w].push(r);
                    }
                }
            }
        }
        for (w, records) in per_worker.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let n = records.len() as u64;
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                commands[w].try_send(WorkerCommand::SyncInstall(records))
            {
                for _ in 0..n {
                    self.stats.count_drop("worker_busy");
                }
            }
        }
    }

    /// Steps the walk over the workers' tables, starting one when a refresh is due
    /// or a peer asked for a bulk transfer.
    fn walk(&mut self, now: Instant, commands: &[Sender<WorkerCommand>]) {
        if self.scan.is_none() {
            let bulk_for: Vec<usize> = (0..self.peers.len())
                .filter(|&i| self.peers[i].wants_bulk.is_some())
                .collect();
            if bulk_for.is_empty() && now < self.next_refresh {
                return;
            }
            for &i in &bulk_for {
                let peer = &mut self.peers[i];
                peer.served = peer.wants_bulk.take().unwrap_or(peer.served);
            }
            self.next_refresh = now + self.cfg.refresh;
            self.scan = Some(Scan {
                worker: 0,
                ipv6: false,
                from: 0,
                pending: None,
                bulk_for,
            });
        }
        let Some(scan) = self.scan.as_mut() else {
            return;
        };
        if scan.worker >= commands.len() {
            let done = self.scan.take().map(|s| s.bulk_for).unwrap_or_default();
            for i in done {
                let addr = self.peers[i].addr;
                let header = self.next_header(Kind::BulkEnd);
                message::seal(&self.key, &header, &[], &mut self.datagram);
                self.send_to(addr);
                log::info!("sync: bulk transfer to {addr} sent");
            }
            return;
        }
        match scan.pending.take() {
            None => {
                let (reply, rx) = bounded(1);
                let query = ConnQuery {
                    ipv6: scan.ipv6,
                    from: scan.from,
                    count: SCAN_STEP,
                    service: None,
                    real_server: None,
                    state: None,
                    reply,
                };
                if commands[scan.worker]
                    .try_send(WorkerCommand::DumpConns(query))
                    .is_ok()
                {
                    scan.pending = Some((rx, now));
                }
            }
            Some((rx, asked)) => match rx.try_recv() {
                Ok(chunk) => {
                    match chunk.next {
                        Some(next) => scan.from = next,
                        None if !scan.ipv6 => {
                            scan.ipv6 = true;
                            scan.from = 0;
                        }
                        None => {
                            scan.worker += 1;
                            scan.ipv6 = false;
                            scan.from = 0;
                        }
                    }
                    for c in &chunk.conns {
                        self.queue(record_of(c), None);
                    }
                    self.flush(None);
                }
                Err(TryRecvError::Empty) if now.duration_since(asked) < SCAN_TIMEOUT => {
                    scan.pending = Some((rx, asked));
                }
                Err(_) => {
                    log::warn!(
                        "sync: worker {} did not answer a table walk; walk dropped",
                        scan.worker
                    );
                    self.scan = None;
                }
            },
        }
    }

    fn peer_up(&self, p: &Peer, now: Instant) -> bool {
        p.last_heard
            .is_some_and(|t| now.duration_since(t) < self.cfg.peer_timeout)
    }

    fn update_ready(&mut self, now: Instant) {
        if self.ready {
            return;
        }
        let alone = now.duration_since(self.started) >= self.cfg.peer_timeout
            && !self.peers.iter().any(|p| self.peer_up(p, now));
        let caught_up = self.peers.iter().any(|p| self.peer_up(p, now))
            && self
                .peers
                .iter()
                .filter(|p| self.peer_up(p, now))
                .all(|p| p.sent_us_bulk);
        if alone || caught_up {
            self.ready = true;
            log::info!(
                "sync: ready ({})",
                if caught_up {
                    "bulk transfers received from every live peer"
                } else {
                    "no peer heard"
                }
            );
        }
    }

    /// Which shared addresses this member answers for: its own once ready; a
    /// peer's while that peer is down or not ready, when this member is the first
    /// ready member (in sync address order) after the owner.
    fn update_active(&mut self, now: Instant) -> bool {
        let members = self.cfg.members();
        let ready_member = |addr: &SocketAddr| -> bool {
            if *addr == self.cfg.listen {
                return self.ready;
            }
            self.peers
                .iter()
                .find(|p| p.addr == *addr)
                .is_some_and(|p| self.peer_up(p, now) && p.ready)
        };
        let mut active = Vec::new();
        for s in &self.cfg.shared_addresses {
            let carrier = if ready_member(&s.owner) {
                Some(s.owner)
            } else {
                let start = members.iter().position(|m| *m == s.owner).unwrap_or(0);
                (1..members.len())
                    .map(|k| members[(start + k) % members.len()])
                    .find(|m| ready_member(m))
            };
            if carrier == Some(self.cfg.listen) {
                active.push(s.address);
            }
        }
        if active == self.active {
            return false;
        }
        for a in active.iter().filter(|a| !self.active.contains(a)) {
            log::info!("sync: answering for shared address {a}");
        }
        for a in self.active.iter().filter(|a| !active.contains(a)) {
            log::info!("sync: shared address {a} left to its owner");
        }
        self.active = active;
        true
    }

    fn publish_status(&self, now: Instant) {
        let status = SyncStatus {
            listen: Some(self.cfg.listen),
            ready: self.ready,
            peers: self
                .peers
                .iter()
                .map(|p| PeerStatus {
                    addr: p.addr,
                    up: self.peer_up(p, now),
                    ready: p.ready,
                    last_heard_ms: p
                        .last_heard
                        .map(|t| now.duration_since(t).as_millis() as u64),
                    datagrams: p.datagrams,
                })
                .collect(),
            shared: self
                .cfg
                .shared_addresses
                .iter()
                .map(|s| (s.address, self.active.contains(&s.address)))
                .collect(),
        };
        *self.stats.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// The worker that owns `r`'s connection here, by the same rules the workers
/// steer its packets with: the local port for FULLNAT, else the service's owner
/// rule on the client.
fn owner_here(dp: &Dataplane, r: &SyncConn, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    if r.mode == Mode::FullNat {
        return owner_of(r.local.1, workers);
    }
    let rule = dp
        .services
        .find(r.vip.0, r.vip.1, r.proto)
        .map(|s| dp.owners.service(s.slot));
    match rule {
        Some(rule) => rule.owner(r.client.0, r.client.1, workers),
        None => owner_of(r.client.1, workers),
    }
}

/// The record of a listed connection. A listing shows a NAT64 connection's
/// local address and real server as the IPv4 addresses they are; its record
/// carries them IPv4-mapped, as the worker's own records do (a record's
/// addresses are of one family).
fn record_of(c: &ConnSnapshot) -> SyncConn {
    let family = |(addr, port): (IpAddr, u16)| match (c.client.0, addr) {
        (IpAddr::V6(_), IpAddr::V4(v4)) => (IpAddr::V6(v4.to_ipv6_mapped()), port),
        _ => (addr, port),
    };
    SyncConn {
        proto: c.proto,
        mode: c.mode,
        state: c.state,
        timeout_ms: u32::try_from(c.expires_ms).unwrap_or(u32::MAX),
        client: c.client,
        vip: c.vip,
        local: family(c.local),
        real: family(c.real),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovs_core::conn::{ConnState, Proto, TcpState};

    fn snapshot(client: &str, vip: &str, local: &str, real: &str) -> ConnSnapshot {
        let ep = |s: &str| {
            let a: SocketAddr = s.parse().unwrap();
            (a.ip(), a.port())
        };
        ConnSnapshot {
            proto: Proto::Tcp,
            client: ep(client),
            vip: ep(vip),
            local: ep(local),
            real: ep(real),
            mode: Mode::FullNat,
            state: ConnState::Tcp(TcpState::Established),
            expires_ms: 900_000,
            worker: 0,
        }
    }

    /// A bulk transfer's record of a NAT64 connection carries its IPv4 local
    /// address and real server IPv4-mapped, as the workers' records do, so that
    /// it decodes to the same connection; other records are the listing's.
    #[test]
    fn a_listed_nat64_connection_makes_a_record_of_one_family() {
        let c = snapshot(
            "[2001:2::10]:40000",
            "[2001:2::100]:80",
            "198.19.0.100:1026",
            "198.19.0.10:8080",
        );
        let r = record_of(&c);
        let mapped = |s: &str| {
            let a: SocketAddr = s.parse().unwrap();
            (a.ip().to_canonical(), a.port())
        };
        assert_eq!(r.local, ("::ffff:198.19.0.100".parse().unwrap(), 1026));
        assert_eq!(r.real, ("::ffff:198.19.0.10".parse().unwrap(), 8080));
        assert_eq!(
            (r.local.0.to_canonical(), r.local.1),
            mapped("198.19.0.100:1026")
        );
        assert_eq!(SyncConn::from_words(&r.to_words()), Ok(r));
        let plain = snapshot(
            "198.18.0.10:40000",
            "198.18.0.101:80",
            "198.19.0.100:1026",
            "198.19.0.10:8080",
        );
        let r = record_of(&plain);
        assert_eq!(
            (r.client, r.vip, r.local, r.real),
            (plain.client, plain.vip, plain.local, plain.real)
        );
    }
}
