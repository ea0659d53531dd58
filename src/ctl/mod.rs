//! `ferrovs ctl`: the operator's side of the control socket.
//!
//! - [`proto`]: the request and response types (one JSON line each way).
//! - [`client`]: one exchange over the Unix socket, with a deadline.
//! - [`format`]: ipvsadm-style text of the answers.
//! - [`cli`]: the `ferrovs ctl` subcommands, what they send and what they print.

pub mod cli;
pub mod client;
pub mod format;
pub mod proto;

/// Where ferrovs listens unless `management.control_socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/ferrovs/ctl.sock";
