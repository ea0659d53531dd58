//! ferrovs: a kernel-bypass Layer-4 load balancer on DPDK.
//!
//! Module map (see DESIGN.md):
//! - [`packet`]: DPDK-free header views, in-place rewriting, checksums, the buffer trait.

pub mod dpdk;
pub mod mgmt;
pub mod net;
pub mod packet;
pub mod stats;
