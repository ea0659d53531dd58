//! ferrovs's packet logic, without DPDK: everything a worker does to a packet, and
//! the configuration it is built from. It builds, tests and benches without
//! `libdpdk-dev`; the `ferrovs` crate's DPDK layer only moves bursts of mbufs in and
//! out of [`pipeline::Pipeline`] through the [`packet::PacketBuf`] trait.
//!
//! Modules, lowest first (each uses only those above it in this list):
//! - [`packet`]: header views over byte slices, in-place rewriting, checksums, the
//!   buffer trait, frame classification.
//! - [`sched`]: real-server schedulers with IPVS semantics.
//! - [`net`]: routes (longest-prefix match) and neighbours (ARP/ND, hold queue).
//! - [`stats`]: per-worker counters and drop reasons.
//! - [`conn`]: the per-worker connection table, IPVS TCP states and timeouts,
//!   timer wheel, persistence templates.
//! - [`config`]: YAML loading and validation with `FILE:LINE:COL` errors.
//! - [`keepalived`]: keepalived's configuration syntax, and its virtual servers
//!   as ferrovs services (`ferrovs import-keepalived`).
//! - [`access`]: a service's access lists and per-source rate limit.
//! - [`service`]: virtual services and real servers as the data plane sees them.
//! - [`steer`]: which worker owns a connection, and the NIC steering rules that
//!   follow from it.
//! - [`forward`]: the forwarding modes (NAT, FULLNAT, DR, TUNNEL) and ICMP errors.
//! - [`sync`]: connection sync between cluster members: the wire format and the
//!   ring workers hand their connection events to the management core on.
//! - [`pipeline`]: one worker's per-packet pipeline, generic over its buffer.
//!
//! `fixture` (tests only, or the `fixture` feature) is the configuration tests
//! start from.
//!
//! `unsafe` is forbidden here; the few memory helpers that need it (huge-page
//! tables, prefetch, SIMD compare) live in `ferrovs-mem`.

#![forbid(unsafe_code)]

pub mod access;
pub mod config;
pub mod conn;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
pub mod forward;
pub mod keepalived;
pub mod net;
pub mod packet;
pub mod pipeline;
pub mod sched;
pub mod service;
pub mod stats;
pub mod steer;
pub mod sync;
