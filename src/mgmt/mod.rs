//! The management core: metrics, and (later) the control socket, reload and health
//! checks. Runs on the EAL main lcore, never on a worker core.

pub mod http;
pub mod metrics;
