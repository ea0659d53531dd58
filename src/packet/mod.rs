//! Packet logic without DPDK: header views, in-place rewriting, checksums.
//!
//! Every header has one checked view (`new_checked` validates lengths once, then
//! accessors index without further checks), field ranges live in a `field` module
//! next to the view, and parsing is kept apart from emitting.

pub mod buf;
pub mod ethernet;

pub use buf::{NoRoom, PacketBuf, VecBuf};
pub use ethernet::MacAddr;
