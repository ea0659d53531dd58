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
//! - [`mgmt`]: the management core (metrics endpoint).

pub mod config;
pub mod conn;
pub mod dpdk;
pub mod mgmt;
pub mod net;
pub mod packet;
pub mod sched;
pub mod stats;
