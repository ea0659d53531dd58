//! Forwarding modes: how a packet of a connection is rewritten on its way to the
//! real server and back.
//!
//! - NAT ([`translate`] of the destination inbound, of the source outbound): IPVS
//!   masquerading; real servers route their replies through ferrovs.
//! - ICMP errors about a connection ([`quoted_flow`], [`translate_icmp_error`]) are
//!   translated in both directions, quoted packet included, so path MTU discovery
//!   works through the balancer.
//!
//! Everything works in place on a frame that `packet::parse_frame` validated, with
//! incremental checksum updates (RFC 1624).

mod icmp_error;
mod nat;

pub use icmp_error::{quoted_flow, translate_icmp_error, QuotedFlow};
pub use nat::{translate, Translation};
