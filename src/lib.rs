//! ferrovs: a kernel-bypass Layer-4 load balancer on DPDK.
//!
//! Module map (see DESIGN.md):
//! - [`packet`]: DPDK-free header views, in-place rewriting, checksums, the buffer trait.
//! - [`conn`]: per-worker connection table, IPVS TCP states, timer wheel, persistence.

pub mod conn;
pub mod packet;
