//! The worker: the per-packet pipeline (pure Rust, generic over the buffer type) and
//! the DPDK poll loop that feeds it.
//!
//! [`Pipeline::process`] is the one function to read for the flow of a packet.

mod balancer;
mod dataplane;
mod hops;
mod lcore;
mod lports;
mod pipeline;
mod steer;

pub use balancer::{Balancer, BalancerLimits};
pub use dataplane::{
    conn_timeouts, has_kernel_interface, Dataplane, Interface, LocalAddr, LocalKind,
};
pub use lcore::{IdlePolicy, WorkerLoop};
pub use pipeline::Pipeline;
pub use steer::{owner_of, steering_rules, PortMatch, SteeringRule};

use crate::packet::{MacAddr, PacketBuf};
use std::net::IpAddr;
use std::sync::Arc;

/// A message from the management core to a worker, read between bursts.
#[derive(Debug, Clone)]
pub enum WorkerCommand {
    /// A new configuration snapshot (services, health, routes, timeouts).
    Config(Arc<Dataplane>),
    /// A neighbour learned by any worker (all workers share one view).
    Neighbor {
        ip: IpAddr,
        mac: MacAddr,
        port: usize,
    },
    /// List connections (one bounded step of the scan).
    DumpConns(ConnQuery),
}

/// One step of a connection listing: the worker scans `count` slots of one family's
/// table from `from` and answers with what matched.
#[derive(Debug, Clone)]
pub struct ConnQuery {
    pub ipv6: bool,
    pub from: usize,
    pub count: usize,
    pub service: Option<u16>,
    pub real_server: Option<(IpAddr, u16)>,
    /// ipvsadm state name.
    pub state: Option<String>,
    pub reply: crossbeam_channel::Sender<ConnChunk>,
}

/// A worker's answer to a [`ConnQuery`].
#[derive(Debug, Clone, Default)]
pub struct ConnChunk {
    pub conns: Vec<crate::ctl::proto::ConnView>,
    /// Where the next step starts; None when the table is done.
    pub next: Option<usize>,
}

/// A message from a worker to the management core.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// This worker learned or saw a change of a neighbour's MAC.
    NeighborLearned {
        ip: IpAddr,
        mac: MacAddr,
        port: usize,
    },
}

/// Where the pipeline gets fresh buffers for packets it originates (ARP requests,
/// neighbour solicitations, ICMP errors).
pub trait PacketPool {
    type Buf: PacketBuf;
    /// An empty buffer (length 0), or None when the pool is exhausted.
    fn alloc(&self) -> Option<Self::Buf>;
}
