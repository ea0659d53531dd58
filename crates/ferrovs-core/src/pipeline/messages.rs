//! What passes between a worker's pipeline and the management core: commands in,
//! events and connection listings out, and where the pipeline gets new buffers.

use super::Dataplane;
use crate::conn::{ConnState, Mode, Proto};
use crate::packet::{MacAddr, PacketBuf};
use crate::sync::SyncConn;
use std::net::IpAddr;
use std::sync::Arc;

/// A message from the management core to a worker, read between bursts.
#[derive(Debug, Clone)]
pub enum WorkerCommand {
    /// A new configuration snapshot (services, health, routes, timeouts).
    Config(Arc<Dataplane>),
    /// A neighbour learned by any worker (all workers share one view).
    Neighbor {
        /// The neighbour's address.
        ip: IpAddr,
        /// Its MAC address.
        mac: MacAddr,
        /// Index of the port it was learned on.
        port: usize,
    },
    /// List connections (one bounded step of the scan).
    DumpConns(ConnQuery),
    /// Connections other members carry, to install in this worker's tables (each
    /// one's owner here, as the management core computed it).
    SyncInstall(Vec<SyncConn>),
    /// Announce every own address on its port: gratuitous ARP for IPv4,
    /// unsolicited neighbour advertisements for IPv6, so that neighbours which
    /// cached another MAC for an address (another appliance's) take ours.
    AnnounceAddresses,
    /// Announce the own addresses of one port only (by index): its bond now
    /// sends through another member, and switches must learn where its MAC went.
    AnnounceAddressesOn(usize),
    /// The SYN cookie keys after a rotation (current and previous).
    CookieKeys(crate::forward::syncookie::CookieKeys),
}

/// One step of a connection listing: the worker scans `count` slots of one family's
/// table from `from` and answers with what matched.
#[derive(Debug, Clone)]
pub struct ConnQuery {
    /// Scan the IPv6 table rather than the IPv4 one.
    pub ipv6: bool,
    /// The first slot to scan.
    pub from: usize,
    /// How many slots to scan, live or not.
    pub count: usize,
    /// Only connections of the service with this slot index.
    pub service: Option<u16>,
    /// Only connections to this real server (address and port).
    pub real_server: Option<(IpAddr, u16)>,
    /// ipvsadm state name.
    pub state: Option<String>,
    /// Where the worker sends its answer, without blocking: an answer no one waits
    /// for is dropped.
    pub reply: crossbeam_channel::Sender<ConnChunk>,
}

/// One connection as a listing shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// TCP or UDP.
    pub proto: Proto,
    /// The client as it reaches us.
    pub client: (IpAddr, u16),
    /// The virtual service the client addressed.
    pub vip: (IpAddr, u16),
    /// The source the real server sees (the client, or LIP:lport in FULLNAT).
    pub local: (IpAddr, u16),
    /// The real server the connection was scheduled to.
    pub real: (IpAddr, u16),
    /// How its packets are forwarded.
    pub mode: Mode,
    /// The state its last packet left it in.
    pub state: ConnState,
    /// Milliseconds until expiry.
    pub expires_ms: u64,
    /// Index of the worker whose table holds the connection.
    pub worker: usize,
}

/// A worker's answer to a [`ConnQuery`].
#[derive(Debug, Clone, Default)]
pub struct ConnChunk {
    /// The connections of the scanned slots that matched the query.
    pub conns: Vec<ConnSnapshot>,
    /// Where the next step starts; None when the table is done.
    pub next: Option<usize>,
}

/// A message from a worker to the management core.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// This worker learned or saw a change of a neighbour's MAC.
    NeighborLearned {
        /// The neighbour's address.
        ip: IpAddr,
        /// Its MAC address.
        mac: MacAddr,
        /// Index of the port it was learned on.
        port: usize,
    },
}

/// Where the pipeline gets fresh buffers for packets it originates (ARP requests,
/// neighbour solicitations, ICMP errors).
pub trait PacketPool {
    /// The buffer the pool hands out: the pipeline's packet type.
    type Buf: PacketBuf;
    /// An empty buffer (length 0), or None when the pool is exhausted.
    fn alloc(&self) -> Option<Self::Buf>;
}

/// A shared pool is a pool: workers hold their mempool through an `Arc`.
impl<T: PacketPool> PacketPool for Arc<T> {
    type Buf = T::Buf;

    fn alloc(&self) -> Option<Self::Buf> {
        (**self).alloc()
    }
}
