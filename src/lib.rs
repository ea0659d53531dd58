//! ferrovs: a kernel-bypass Layer-4 load balancer on DPDK.
//!
//! Module map (see DESIGN.md):
//! - [`packet`]: DPDK-free header views, in-place rewriting, checksums, the buffer trait.
//! - [`sched`]: real-server schedulers with IPVS semantics (rr wrr lc wlc sh dh sed nq mh).

pub mod packet;
pub mod sched;
