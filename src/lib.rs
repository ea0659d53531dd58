//! ferrovs: a kernel-bypass Layer-4 load balancer on DPDK.
//!
//! Module map (see DESIGN.md):
//! - [`config`]: YAML config loading and validation with `FILE:LINE:COL` errors.
//! - [`packet`]: DPDK-free header views, in-place rewriting, checksums, the buffer trait.
//! - [`net`]: routes (longest-prefix match) and neighbours (ARP/ND with a hold queue).
//! - [`conn`]: per-worker connection table, IPVS TCP states, timer wheel, persistence.
//! - [`sched`]: real-server schedulers with IPVS semantics (rr wrr lc wlc sh dh sed nq mh).
//! - [`stats`]: per-worker counters and drop reasons.
//! - [`dpdk`]: the safe DPDK layer, the only place with `unsafe`.
//! - [`worker`]: the per-packet pipeline and the DPDK poll loop around it.
//! - [`mgmt`]: the management core (metrics endpoint).
//! - [`runtime`]: start-up and shutdown of the whole process.

pub mod config;
pub mod conn;
pub mod ctl;
pub mod dpdk;
pub mod forward;
pub mod mgmt;
pub mod net;
pub mod packet;
pub mod runtime;
pub mod sched;
pub mod service;
pub mod stats;
#[cfg(test)]
#[path = "../tests/common/tempdir.rs"]
mod tempdir;
pub mod worker;
