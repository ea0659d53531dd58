//! Packet logic without DPDK: header views, in-place rewriting, checksums.
//!
//! Every header has one checked view (`new_checked` validates lengths once, then
//! accessors index without further checks), field ranges live in a `field` module
//! next to the view and are read and written through `be`, the one place that
//! handles byte order, and parsing is kept apart from emitting. [`parse::parse_frame`]
//! classifies a received frame in one pass.
//!
//! Views over `&mut [u8]` rewrite in place; the `rewrite_*` setters also fix the
//! checksums they cover incrementally (RFC 1624), and address rewrites return a
//! [`checksum::Delta`] for the TCP/UDP checksum, which covers the addresses through
//! its pseudo-header.

pub mod arp;
pub(crate) mod be;
pub mod buf;
pub mod checksum;
pub mod craft;
mod error;
pub mod ethernet;
pub mod flow_v4;
pub mod icmp;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod parse;
pub mod tcp;
pub mod udp;

#[cfg(test)]
pub(crate) mod testutil;

pub use arp::{ArpOperation, ArpPacket};
pub use buf::{NoRoom, PacketBuf, VecBuf};
pub use checksum::{Delta, Sum};
pub use error::WireError;
pub use ethernet::{EtherType, EthernetFrame, MacAddr, VlanTag};
pub use flow_v4::{parse_ipv4_flow, Ipv4Flow};
pub use icmp::{IcmpType, Icmpv4Packet};
pub use icmpv6::{Icmpv6Packet, Icmpv6Type};
pub use ip::{IpPair, IpProtocol, Proto};
pub use ipv4::{Ipv4HeaderTemplate, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use parse::{parse_frame, FrameInfo, ParseError};
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;
