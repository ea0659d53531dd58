//! ferrovs: a kernel-bypass Layer-4 load balancer on DPDK.
//!
//! Module map (see DESIGN.md):
//! - [`packet`]: DPDK-free header views, in-place rewriting, checksums, the buffer trait.
//! - [`config`]: YAML config loading and validation with `FILE:LINE:COL` errors.

pub mod config;
pub mod packet;
