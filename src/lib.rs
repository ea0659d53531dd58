//! ferrovs: a kernel-bypass Layer-4 load balancer on DPDK.
//!
//! The packet logic (config, header views, connection table, schedulers,
//! forwarding modes, the worker pipeline) is the `ferrovs-core` crate, which does
//! not link DPDK. This crate runs it on DPDK and operates it:
//! - [`dpdk`]: the safe DPDK layer (EAL, mempools, ports and queues, rte_flow
//!   steering, rings, lcores, an owned mbuf): the only place here with `unsafe`.
//! - [`worker`]: the poll loop on each worker lcore, feeding bursts of mbufs to a
//!   `ferrovs_core::pipeline::Pipeline` and transmitting what it queued.
//! - [`ctl`]: `ferrovs ctl`, the operator's side of the control socket, and the
//!   control protocol.
//! - [`mgmt`]: the management core: metrics, the control socket's server, reload,
//!   health checks, the kernel exception path.
//! - [`runtime`]: start-up and shutdown of the whole process, step by step;
//!   [`placement`]: which NUMA socket its pools, queues, tables and rings go on.
//! - [`notify`]: systemd's notification protocol and watchdog; [`logging`]: the
//!   log formats (text, journald, JSON); [`cli_docs`]: man pages and completions.
//!
//! Dependencies point one way: `runtime` uses `mgmt`, `worker` and `dpdk`; `mgmt`
//! uses `ctl`'s protocol and `dpdk`; `worker` uses `dpdk`. What passes between a
//! worker and the management core is `ferrovs_core::pipeline`'s messages, so
//! neither imports the other. Nothing here is used by `ferrovs-core`.

#![deny(unsafe_code)]

pub mod cli_docs;
pub mod ctl;
#[allow(unsafe_code)]
pub mod dpdk;
pub mod logging;
pub mod mgmt;
pub mod notify;
pub mod placement;
pub mod runtime;
#[cfg(test)]
#[path = "../tests/common/tempdir.rs"]
mod tempdir;
pub mod worker;
