//! The per-worker connection table (docs/architecture.md, "Data plane"): LVS-style
//! connections indexed by the 5-tuple of each direction, IPVS TCP states with
//! per-state timeouts, a timer wheel for expiry, and persistence templates.
//!
//! One [`ConnTable`] (and one [`PersistTable`]) per worker and address family; a
//! table is owned by its worker thread, so there are no locks or atomics. All
//! memory is allocated at construction; the packet path (`lookup`, `on_packet`)
//! and `insert`/`remove`/`expire` allocate nothing. Time is the caller's monotonic
//! clock in milliseconds.
//!
//! Typical use on a worker:
//! 1. `lookup(&key)`: a hit gives the connection and the packet's direction
//!    (the burst path: `find_record` then `on_packet_record`);
//!    `on_packet(id, dir, tcp_flags, now)` advances the state and tells whether the
//!    connection became active or inactive (per-real-server counters);
//! 2. a miss on a service's VIP: schedule, `insert` (starts inactive), then
//!    `on_packet` with the first packet;
//! 3. once per loop: `expire(now, budget, |id, conn| ...)`.
//!
//! Design in brief (details in each file):
//! - `table`: per-direction records in a hash index plus a slab of cold entries,
//!   sized once and never rehashed; [`ConnId`] carries a slot generation that
//!   catches stale ids.
//! - `records`: the records (key, rewrite, state, last packet's tick) in
//!   cache-line buckets with overflow counts, so an established packet reads one
//!   line of the table, and a burst can request every packet's line first.
//! - `free`: the bitmap of free slab slots, from which a new connection takes
//!   the first free one after a slot its hash picks.
//! - `key`: foldhash under seeds from the OS random source, against hash flooding.
//! - `state`: IPVS's TCP transition tables and timeouts, as data.
//! - `wheel`: 16384 slots x 100 ms, lazy refresh, each slot a stack of 64-byte
//!   chunks of slab indices (expiry prefetches entries ahead).
//! - `persist`: IPVS persistence templates with hold/release and invalidation.

mod family;
mod free;
mod key;
mod persist;
mod records;
mod state;
mod table;
mod wheel;
pub mod xlate;

pub use family::{Endpoint, Family};
pub use key::{shuffle, Dir, FlowHasher, FlowKey, Proto, UnsupportedProto};
pub use persist::{PersistError, PersistTable, Template, TemplateId};
pub use records::RewriteTo;
pub use state::{tcp_flags, ConnState, TcpDir, TcpState, Timeouts};
pub use table::{
    Clock, Conn, ConnError, ConnId, ConnTable, Installed, Lane, Mode, NewConn, PreparedConn,
    Record, RecordPos, StateChange, MAX_CONNECTIONS,
};
pub use wheel::{SLOTS as WHEEL_SLOTS, TICK_MS as WHEEL_TICK_MS};
pub use xlate::SeqAdj;
