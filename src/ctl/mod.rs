//! `ferrovs ctl`: the operator's side of the control socket.

pub mod proto;
