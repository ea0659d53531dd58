//! The safe DPDK layer: the only place in ferrovs with `unsafe` DPDK calls.
//!
//! It wraps the EAL, mempools, ethdev ports and queues, rte_flow steering rules, an
//! owned [`Mbuf`] that is freed on drop, and lcore launch. Packet logic never sees DPDK types: it works on
//! [`ferrovs_core::packet::PacketBuf`], which [`Mbuf`] implements.

pub mod bond;
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
pub use lcore::{
    current_lcore, launch_on_lcore, lcore_socket, tsc_hz, wait_all_lcores, LcoreJoin, Tsc,
};
pub use mbuf::{Mbuf, MbufVec};
pub use mempool::Mempool;
pub use port::{
    device_socket, link_status, port_stats, LinkStatus, Port, PortConf, PortStats, RxQueue,
    TxQueue, VlanOffloads,
};
pub use ring::{handoff_ring, RingConsumer, RingProducer};

use std::ffi::CStr;
use std::fmt;

/// Marks every descriptor the process has open close-on-exec, so that a program
/// ferrovs starts (an `exec` health check, run as another user) inherits none of
/// them: DPDK opens some without `O_CLOEXEC` (hugepage files, VFIO, TAP devices),
/// and a check command must not reach packet memory or a NIC. Called before each
/// spawn, from the management core; a descriptor opened between this and the spawn
/// by another thread would still be inherited, which none of ferrovs's own threads
/// does (Rust opens everything close-on-exec).
pub fn close_descriptors_on_exec() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::BorrowedFd;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: `fd` was open when listed, and is borrowed for two fcntl calls
        // only. Had another thread closed it since, fcntl fails with EBADF; had the
        // number been reused, that descriptor becomes close-on-exec, which is what
        // every descriptor here should be anyway.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(bits) = fcntl(borrowed, FcntlArg::F_GETFD) {
            let flags = FdFlag::from_bits_truncate(bits) | FdFlag::FD_CLOEXEC;
            let _ = fcntl(borrowed, FcntlArg::F_SETFD(flags));
        }
    }
}

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
