//! Low-level memory helpers for ferrovs's packet logic: the few `unsafe` blocks
//! that are not DPDK calls, each with its `// SAFETY:` argument, behind safe APIs.
//!
//! - [`HugeSlice`]: a fixed-length table on transparent huge pages, on the NUMA
//!   node [`on_node`] names.
//! - [`prefetch`]: a software prefetch hint.
//! - [`eq_mask_u32x4`]: four 32-bit compares in one SSE2 instruction.
//!
//! `ferrovs-core` forbids `unsafe` and takes these from here.

#![allow(unsafe_code)]

mod hugepages;
mod numa;
mod prefetch;
mod simd;

pub use hugepages::{HugeSlice, OutOfMemory};
pub use numa::{node_of, on_node};
pub use prefetch::{prefetch, prefetch_ptr};
pub use simd::eq_mask_u32x4;
