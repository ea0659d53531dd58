//! The safe DPDK layer: the only place in ferrovs with `unsafe` DPDK calls.
//!
//! It wraps the EAL, mempools, ethdev ports and queues, rte_flow steering rules, an
//! owned [`Mbuf`] that is freed on drop, and lcore launch. Packet logic never sees DPDK types: it works on
//! [`ferrovs_core::packet::PacketBuf`], which [`Mbuf`] implements.

mod eal;
pub mod eal_args;
mod flow;
mod lcore;
mod mbuf;
mod mempool;
mod port;
mod ring;

pub use eal::Eal;
pub use flow::{
    flow_error_type_name, FlowRefusal, FlowRefusalCause, FlowReport, FlowRuleError, FlowSpec,
    RuleDisplay,
};
pub use lcore::{current_lcore, launch_on_lcore, tsc_hz, wait_all_lcores, LcoreJoin, Tsc};
pub use mbuf::{Mbuf, MbufVec};
pub use mempool::Mempool;
pub use port::{link_status, port_stats, LinkStatus, Port, PortConf, PortStats, RxQueue, TxQueue};
pub use ring::{handoff_ring, RingConsumer, RingProducer};

use std::ffi::CStr;
use std::fmt;

/// A failed DPDK call: which call, and the errno-style code DPDK returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    /// The DPDK function that failed.
    pub call: &'static str,
    /// What it was called for (a device, a queue, ...); may be empty.
    pub context: String,
    /// The error code, made positive (an errno value).
    pub code: i32,
}

impl DpdkError {
    pub(crate) fn new(call: &'static str, context: impl Into<String>, code: i32) -> Self {
        DpdkError {
            call,
            context: context.into(),
            code: code.abs(),
        }
    }

    /// An error whose code is in `rte_errno`.
    pub(crate) fn from_errno(call: &'static str, context: impl Into<String>) -> Self {
        Self::new(call, context, rte_errno())
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local string
        // for any code, never NULL.
        let text = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(self.code)) };
        write!(f, "{}", self.call)?;
        if !self.context.is_empty() {
            write!(f, " ({})", self.context)?;
        }
        write!(f, ": {} (errno {})", text.to_string_lossy(), self.code)
    }
}

impl std::error::Error for DpdkError {}

/// The calling thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int; valid on any thread.
    unsafe { dpdk_sys::ferrovs_rte_errno() }
}

/// DPDK's version string, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(dpdk_sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}
