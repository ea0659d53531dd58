//! ferrovs: a kernel-bypass Layer-4 load balancer on DPDK.
//!
//! Module map (see DESIGN.md):
//! - [`config`]: YAML config loading and validation with `FILE:LINE:COL` errors.
//! - [`packet`]: DPDK-free header views, in-place rewriting, checksums, the buffer trait.

pub mod config;
pub mod packet;
