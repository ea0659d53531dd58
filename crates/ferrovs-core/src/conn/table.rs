//! The per-worker connection table.
//!
//! Layout, sized once from `connections.max` so nothing allocates afterwards:
//! - a [`RecordIndex`] whose slots are the connections' per-direction records
//!   (`records.rs`): one direction's key, what its packets are rewritten to, the
//!   real server's counter slot, the state, the forwarding lane and the time of
//!   its last packet. An IPv4 record is 32 bytes, two to a cache-line bucket, so an
//!   established packet whose record is in its home bucket reads one line of the
//!   table and writes only its record ([`ConnTable::on_packet_record`]). Sized
//!   for two records a connection at a load of at most 75 %;
//! - a slab of 32-byte *cold* entries, one a connection, read on the slow paths
//!   only (a state change, insertion, removal, expiry, listings): the slot's
//!   generation, the persistence template, the service, the translation flags,
//!   where the timer wheel has it filed, the settled deadline and where its
//!   records are. A new connection takes the first free slot after one its
//!   inbound key's hash picks ([`FreeSlots`]), so where it lands follows from
//!   its hash and not from the order connections were opened in;
//! - a [`TimerWheel`] for expiry, whose position for the connection is kept in
//!   the cold entry.
//!
//! Deadlines. A packet that leaves the state as it was only writes the tick of
//! its arrival (`ceil(now / 100 ms)`, 16 bits, wrapping) into its record; the
//! connection's deadline is then the latest such tick plus the state's timeout.
//! Anything else (insertion, a state change, a deadline set from outside) writes
//! the exact deadline into the cold entry and marks both records *settled*; so
//! does the wheel when it reaches the connection, folding the records' ticks into
//! the cold deadline. An insertion in the initial state stamps the inbound
//! record with its tick instead, as the first packet would: the connection's
//! deadline does not depend on whether that packet is handled with the
//! insertion or after it. A record's tick is read against the table's clock (the
//! highest tick it has been shown): an age under 2^15 ticks is a packet since the
//! last settling, anything older is a settled mark. The wheel reaches every
//! connection at least once a lap (2^14 ticks), which keeps both readings apart.
//! A deadline so found is at most one tick later than the exact one, and the
//! connection expires on the same tick as with the exact one whenever the
//! timeout is a whole number of ticks.
//!
//! Each [`ConnId`] carries the slot's generation. The data path uses ids only
//! between a lookup and the end of that packet, but ids also travel further (a
//! control command naming a connection, deferred work), and a slot reused in the
//! meantime would otherwise silently act on another flow.

#[cfg(test)]
mod tests;

pub use super::records::{Lane, Record};

use std::fmt;

use super::family::{Endpoint, Family};
use super::free::FreeSlots;
use super::key::{Dir, FlowHasher, FlowKey, Proto};
use super::persist::TemplateId;
use super::records::{IndexFull, Pos, RecordIndex, RewriteTo, MAX_SLOT};
use super::state::{ConnState, TcpDir, TcpState, TimeoutTable, Timeouts};
use super::wheel::{Timed, TimerPos, TimerWheel, TICK_MS};
use super::xlate::{self, SeqAdj};
use ferrovs_mem::{prefetch, HugeSlice};

/// The most connections one table holds: what a record's 23-bit slot can name.
pub const MAX_CONNECTIONS: usize = MAX_SLOT as usize + 1;

/// Forwarding mode of a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    /// Destination NAT; replies come back through us (IPVS masquerading).
    Nat,
    /// Source and destination NAT (DPVS FULLNAT); replies come back through us.
    FullNat,
    /// Direct routing: MAC rewrite; replies go straight to the client.
    Dr,
    /// IP-in-IP tunnel; replies go straight to the client.
    Tunnel,
}

impl Mode {
    /// Whether the real server's replies pass through the balancer, i.e. whether the
    /// connection has an outbound key.
    pub const fn replies_via_us(self) -> bool {
        matches!(self, Mode::Nat | Mode::FullNat)
    }

    /// The mode as one byte, for the sync wire format.
    pub const fn code(self) -> u8 {
        match self {
            Mode::Nat => 0,
            Mode::FullNat => 1,
            Mode::Dr => 2,
            Mode::Tunnel => 3,
        }
    }

    /// The mode of a [`Mode::code`], if it is one.
    pub const fn from_code(code: u8) -> Option<Mode> {
        match code {
            0 => Some(Mode::Nat),
            1 => Some(Mode::FullNat),
            2 => Some(Mode::Dr),
            3 => Some(Mode::Tunnel),
            _ => None,
        }
    }

    /// The mode as spelled in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Nat => "nat",
            Mode::FullNat => "fullnat",
            Mode::Dr => "dr",
            Mode::Tunnel => "tunnel",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a table operation failed. [`ConnError::reason`] is the metrics label.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ConnError {
    /// Every slot is in use; nothing was changed.
    TableFull,
    /// A connection with the same inbound key exists.
    InboundKeyExists,
    /// A connection with the same outbound key exists (in FULLNAT: the local
    /// address and port are taken; pick another).
    OutboundKeyExists,
    /// The id names no live connection (removed, expired, or never issued).
    UnknownConn,
    /// The requested capacity exceeds what a table can index.
    CapacityTooLarge,
    /// The memory for the table could not be allocated.
    OutOfMemory,
}

impl ConnError {
    /// The error as a snake_case label for metrics.
    pub const fn reason(self) -> &'static str {
        match self {
            ConnError::TableFull => "conn_table_full",
            ConnError::InboundKeyExists => "conn_inbound_key_exists",
            ConnError::OutboundKeyExists => "conn_outbound_key_exists",
            ConnError::UnknownConn => "conn_unknown",
            ConnError::CapacityTooLarge => "conn_capacity_too_large",
            ConnError::OutOfMemory => "conn_out_of_memory",
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnError::TableFull => "connection table full",
            ConnError::InboundKeyExists => "a connection with this inbound 5-tuple exists",
            ConnError::OutboundKeyExists => "a connection with this outbound 5-tuple exists",
            ConnError::UnknownConn => "no such connection",
            ConnError::CapacityTooLarge => "connection table capacity too large",
            ConnError::OutOfMemory => "cannot allocate the connection table",
        })
    }
}

impl std::error::Error for ConnError {}

/// Names a live connection: its slot and the slot's generation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    /// The slot index, dense in `0..capacity()`.
    pub const fn index(self) -> u32 {
        self.index
    }
}

/// A connection about to be inserted, its keys hashed under the table's hasher,
/// from [`ConnTable::prepare_insert`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PreparedConn<A: Family> {
    new: NewConn<A>,
    hashes: NewConnHashes,
    /// The state whose deadline the connection starts with: the one its first
    /// packet leaves it in, when the caller handles that packet right after.
    deadline_state: ConnState,
}

impl<A: Family> PreparedConn<A> {
    /// The connection as given to [`ConnTable::prepare_insert`].
    pub fn new_conn(&self) -> &NewConn<A> {
        &self.new
    }

    /// The state change its first packet makes: from the initial state to the
    /// one it is inserted in (the same when no first packet was named).
    pub fn first_change(&self) -> StateChange {
        StateChange {
            from: self.new.initial_state(),
            to: self.deadline_state,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct NewConnHashes {
    inbound: u64,
    /// Present when the mode's replies pass through us.
    outbound: Option<u64>,
}

/// What the caller knows when it creates a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NewConn<A: Family> {
    /// TCP or UDP: picks the state machine and the timeouts.
    pub proto: Proto,
    /// How packets are forwarded; decides whether the connection gets an outbound key.
    pub mode: Mode,
    /// The client as it reaches us.
    pub client: Endpoint<A>,
    /// The virtual service the client addressed.
    pub vip: Endpoint<A>,
    /// The source the real server sees: `client` in NAT, DR and TUNNEL, a local
    /// address and port in FULLNAT.
    pub local: Endpoint<A>,
    /// The real server.
    pub real: Endpoint<A>,
    /// Service index, chosen by the caller.
    pub service: u16,
    /// Real server index within the service, chosen by the caller.
    pub real_server: u16,
    /// The persistence template this connection holds, if any.
    pub template: Option<TemplateId>,
}

impl<A: Family> NewConn<A> {
    /// The state the connection is created in: TCP NONE, or UDP.
    fn initial_state(&self) -> ConnState {
        match self.proto {
            Proto::Tcp => ConnState::Tcp(TcpState::None),
            Proto::Udp => ConnState::Udp,
        }
    }

    /// The state its first packet, inbound with `tcp_flags`, will move it to
    /// (what [`ConnTable::on_packet`] will find).
    pub fn first_state(&self, tcp_flags: u8) -> ConnState {
        match self.initial_state() {
            ConnState::Tcp(s) => {
                ConnState::Tcp(s.next(tcp_dir(self.mode, Dir::Inbound), tcp_flags))
            }
            ConnState::Udp => ConnState::Udp,
        }
    }

    fn inbound_key(&self) -> FlowKey<A> {
        inbound_key(self.proto, self.client, self.vip)
    }

    /// NAT64: an IPv6 client served by an IPv4 (mapped) real server.
    pub fn is_nat64(&self) -> bool {
        self.real.addr.is_mapped()
    }
    fn outbound_key(&self) -> FlowKey<A> {
        outbound_key(self.proto, self.real, self.local)
    }
}

fn inbound_key<A: Family>(proto: Proto, client: Endpoint<A>, vip: Endpoint<A>) -> FlowKey<A> {
    FlowKey::new(proto, client.addr, client.port, vip.addr, vip.port)
}

fn outbound_key<A: Family>(proto: Proto, real: Endpoint<A>, local: Endpoint<A>) -> FlowKey<A> {
    FlowKey::new(proto, real.addr, real.port, local.addr, local.port)
}

const NO_TEMPLATE: u32 = u32::MAX;

/// What [`ConnTable::install`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Installed {
    /// A new entry.
    New(ConnId),
    /// The entry of the same connection, which was in `previous`.
    Updated {
        /// The entry.
        id: ConnId,
        /// Its state before.
        previous: ConnState,
    },
}

/// A tracked connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Conn<A: Family> {
    /// The two keys' endpoints, indexed by [`Dir::bit`]: `[client, vip]` for
    /// packets from the client, `[real, local]` for packets from the real server,
    /// so that a key comparison picks its pair by offset instead of by branch.
    ends: [[Endpoint<A>; 2]; 2],
    /// Deadline in ms; the wheel may hold the entry filed at an earlier tick.
    expiry: u64,
    generation: u32,
    template: u32,
    service: u16,
    real_server: u16,
    proto: Proto,
    mode: Mode,
    state: ConnState,
    /// [`xlate::flag`] bits: whether the connection's segments are translated
    /// (SYN proxy, Proxy Protocol) and whether they need the ordinary path.
    xlate: u8,
}

impl<A: Family> Conn<A> {
    /// [`xlate::flag`] bits: 0 for a connection whose segments pass untranslated.
    #[inline(always)]
    pub fn xlate(&self) -> u8 {
        self.xlate
    }
    /// The client as it reaches us.
    pub fn client(&self) -> Endpoint<A> {
        self.ends[0][0]
    }
    /// NAT64: an IPv6 connection whose local address and real server are IPv4
    /// (held IPv4-mapped).
    #[inline]
    pub fn is_nat64(&self) -> bool {
        self.xlate & xlate::flag::NAT64 != 0
    }
    /// The virtual service the client addressed.
    pub fn vip(&self) -> Endpoint<A> {
        self.ends[0][1]
    }
    /// The source the real server sees (see [`NewConn::local`]).
    pub fn local(&self) -> Endpoint<A> {
        self.ends[1][1]
    }
    /// The real server the connection was scheduled to.
    pub fn real(&self) -> Endpoint<A> {
        self.ends[1][0]
    }
    /// TCP or UDP.
    pub fn proto(&self) -> Proto {
        self.proto
    }
    /// How the connection's packets are forwarded.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The state the last packet left it in; it picks the idle timeout.
    pub fn state(&self) -> ConnState {
        self.state
    }
    /// The state as `ipvsadm -Lnc` prints it.
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }
    /// Counted in the real server's active connections (IPVS `activeconns`).
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }
    /// Service index, as given at creation.
    pub fn service(&self) -> u16 {
        self.service
    }
    /// Real server index within the service, as given at creation.
    pub fn real_server(&self) -> u16 {
        self.real_server
    }
    /// The persistence template this connection holds.
    pub fn template(&self) -> Option<TemplateId> {
        (self.template != NO_TEMPLATE).then_some(TemplateId(self.template))
    }
    /// Absolute deadline in ms.
    pub fn expiry(&self) -> u64 {
        self.expiry
    }
    /// Milliseconds left until the deadline (0 when passed): `ipvsadm -Lnc`'s
    /// "expire" column.
    pub fn expires_in(&self, now: u64) -> u64 {
        self.expiry.saturating_sub(now)
    }
    /// The key of packets from the client.
    pub fn inbound_key(&self) -> FlowKey<A> {
        inbound_key(self.proto, self.client(), self.vip())
    }
    /// The key of packets from the real server; `None` when replies bypass us.
    pub fn outbound_key(&self) -> Option<FlowKey<A>> {
        self.mode
            .replies_via_us()
            .then(|| outbound_key(self.proto, self.real(), self.local()))
    }
}

/// The state change one packet caused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StateChange {
    /// The state before the packet.
    pub from: ConnState,
    /// The state the packet left the connection in (may equal `from`).
    pub to: ConnState,
}

impl StateChange {
    /// The connection became active: move it from the real server's inactive to its
    /// active count.
    pub fn activated(&self) -> bool {
        !self.from.is_active() && self.to.is_active()
    }
    /// The connection stopped being active: move it from active to inactive.
    pub fn deactivated(&self) -> bool {
        self.from.is_active() && !self.to.is_active()
    }
}

/// Marks a free slab slot in [`Cold::records`].
const FREE: Pos = u32::MAX;
/// Marks a direction without a record (DR and TUNNEL have no outbound one).
const NO_RECORD: Pos = u32::MAX - 1;
/// A record tick this many ticks old or older is a settled mark, not a packet.
const SETTLED_AGE: u16 = 1 << 15;

/// The part of a connection the packet path does not read: one a slab slot,
/// two to a cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct Cold {
    /// The settled deadline in ms (see the module documentation).
    expiry: u64,
    generation: u32,
    template: u32,
    /// Where the wheel has the connection filed.
    timer: TimerPos,
    /// Positions of the inbound and outbound records; `[FREE, _]` in a free slot.
    records: [Pos; 2],
    service: u16,
    xlate: u8,
    /// mode (bits 0-1) | UDP (bit 2).
    kind: u8,
}

impl Cold {
    const fn free(generation: u32) -> Self {
        Cold {
            expiry: 0,
            generation,
            template: NO_TEMPLATE,
            timer: TimerPos::UNARMED,
            records: [FREE, FREE],
            service: 0,
            xlate: 0,
            kind: 0,
        }
    }
    #[inline(always)]
    fn is_live(&self) -> bool {
        self.records[0] != FREE
    }
    fn mode(&self) -> Mode {
        Mode::from_code(self.kind & 3).unwrap_or(Mode::Nat)
    }
    fn proto(&self) -> Proto {
        if self.kind & 4 == 0 {
            Proto::Tcp
        } else {
            Proto::Udp
        }
    }
    /// The record positions the connection has (one or two).
    #[inline]
    fn record_positions(&self) -> impl Iterator<Item = Pos> {
        let [inbound, outbound] = self.records;
        [inbound, outbound]
            .into_iter()
            .filter(|&p| p != FREE && p != NO_RECORD)
    }
}

/// The lane a connection's records take in the burst path.
fn lane_of(mode: Mode, xlate: u8) -> Lane {
    match mode {
        _ if xlate != 0 => Lane::Ordinary,
        Mode::Nat => Lane::Nat,
        Mode::FullNat => Lane::FullNat,
        Mode::Dr => Lane::Dr,
        Mode::Tunnel => Lane::Tunnel,
    }
}

/// The tick a packet at `now` ms is stamped with.
#[inline(always)]
fn tick_of(now: u64) -> u64 {
    now.div_ceil(TICK_MS)
}

/// A moment of the table's clock, taken once ([`ConnTable::clock`]) for all the
/// packets of a burst, which share one `now`: the burst path's per-packet state
/// update then reads the wheel tick from here instead of comparing `now` with the
/// table's last one each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    now: u64,
    tick: u64,
}

impl Clock {
    /// The time it was taken at, in milliseconds.
    #[inline(always)]
    pub fn now(self) -> u64 {
        self.now
    }
}

/// The deadline a record's unsettled packet sets, if it has one (see the module
/// documentation).
#[inline]
fn record_deadline<A: Family>(r: &Record<A>, timeouts: &TimeoutTable, clock: u64) -> Option<u64> {
    let age = (clock as u16).wrapping_sub(r.seen);
    (age < SETTLED_AGE).then(|| {
        clock
            .saturating_sub(u64::from(age))
            .saturating_mul(TICK_MS)
            .saturating_add(timeouts.ms_of_code(r.state_code()))
    })
}

/// A connection's deadline: the latest unsettled packet's, else the settled one.
#[inline]
fn deadline_of<A: Family>(
    cold: &Cold,
    records: &RecordIndex<A>,
    timeouts: &TimeoutTable,
    clock: u64,
) -> u64 {
    let [inbound, outbound] = cold.records;
    let from = |p: Pos| {
        records
            .get(p)
            .and_then(|r| record_deadline(r, timeouts, clock))
    };
    match (from(inbound), from(outbound)) {
        (Some(a), Some(b)) => a.max(b),
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => cold.expiry,
    }
}

/// A tick that reads as settled against `clock`.
#[inline]
fn settled_mark(clock: u64) -> u16 {
    (clock as u16).wrapping_sub(SETTLED_AGE)
}

/// The slab and the records as the wheel sees them: it reads a connection's
/// deadline, settling it, and keeps its position in the cold entry.
struct Entries<'a, A: Family> {
    slab: &'a mut HugeSlice<Cold>,
    records: &'a mut RecordIndex<A>,
    timeouts: &'a TimeoutTable,
    clock: u64,
}

impl<A: Family> Timed for Entries<'_, A> {
    #[inline]
    fn deadline(&mut self, index: u32) -> u64 {
        let Some(cold) = self.slab.get_mut(index as usize) else {
            return 0;
        };
        if !cold.is_live() {
            return 0;
        }
        let deadline = deadline_of(cold, self.records, self.timeouts, self.clock);
        cold.expiry = deadline;
        let mark = settled_mark(self.clock);
        for p in cold.record_positions() {
            if let Some(r) = self.records.get_mut(p) {
                r.seen = mark;
            }
        }
        deadline
    }
    #[inline]
    fn timer(&self, index: u32) -> TimerPos {
        match self.slab.get(index as usize) {
            Some(c) if c.is_live() => c.timer,
            _ => TimerPos::UNARMED,
        }
    }
    #[inline]
    fn set_timer(&mut self, index: u32, pos: TimerPos) {
        if let Some(c) = self.slab.get_mut(index as usize) {
            if c.is_live() {
                c.timer = pos;
            }
        }
    }
    #[inline]
    fn prefetch(&self, index: u32) {
        if let Some(c) = self.slab.get(index as usize) {
            prefetch(c);
        }
    }
    /// The connection's records, which [`Timed::deadline`] reads.
    #[inline]
    fn prefetch_deep(&self, index: u32) {
        if let Some(c) = self.slab.get(index as usize).filter(|c| c.is_live()) {
            for p in c.record_positions() {
                if let Some(r) = self.records.get(p) {
                    prefetch(r);
                }
            }
        }
    }
}

/// Expiring connections taken off the wheel together (see [`ConnTable::expire`]).
const EXPIRE_BATCH: usize = 16;

/// An expiring connection: slot, inbound and outbound key hashes, the connection.
type Due<A> = (u32, u64, u64, Conn<A>);

/// A record's place in the table, from [`ConnTable::find_record`]: valid until
/// the table next changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecordPos(Pos);

/// The connection table of one worker and one address family.
pub struct ConnTable<A: Family> {
    slab: HugeSlice<Cold>,
    records: RecordIndex<A>,
    wheel: TimerWheel,
    hasher: FlowHasher,
    timeouts: Timeouts,
    timeout_ms: TimeoutTable,
    free: FreeSlots,
    len: u32,
    /// The highest tick any call has shown the table.
    clock: u64,
    /// The last time a call gave and its tick: a burst's packets share one time,
    /// so the division is done once.
    last_now: u64,
    last_tick: u64,
    /// Where [`Self::on_packet_record`] stores a record's tick that has not
    /// changed.
    unchanged_seen: u16,
    /// Each slot's sequence-number translation (beside the slab, so that entries
    /// stay small); empty until [`ConnTable::enable_translation`].
    adj: HugeSlice<SeqAdj>,
}

impl<A: Family> ConnTable<A> {
    /// A table for at most `max` connections, hashed under a random seed.
    pub fn new(max: usize, timeouts: &Timeouts) -> Result<Self, ConnError> {
        Self::with_hasher(max, timeouts, FlowHasher::random())
    }

    /// A table with a given hasher (a fixed seed makes tests reproducible).
    pub fn with_hasher(
        max: usize,
        timeouts: &Timeouts,
        hasher: FlowHasher,
    ) -> Result<Self, ConnError> {
        if max > MAX_CONNECTIONS {
            return Err(ConnError::CapacityTooLarge);
        }
        // Read on the slow paths only, but at random: huge pages spare the TLB.
        let slab = HugeSlice::filled(max, Cold::free(0)).map_err(|_| ConnError::OutOfMemory)?;
        // Two records per connection (NAT and FULLNAT have both directions).
        let records = RecordIndex::with_capacity(2 * max).map_err(|_| ConnError::OutOfMemory)?;
        Ok(ConnTable {
            slab,
            records,
            wheel: TimerWheel::new(max).map_err(|_| ConnError::OutOfMemory)?,
            hasher,
            timeouts: *timeouts,
            timeout_ms: TimeoutTable::new(timeouts),
            free: FreeSlots::all_free(max).map_err(|_| ConnError::OutOfMemory)?,
            len: 0,
            clock: 0,
            last_now: 0,
            last_tick: tick_of(0),
            unchanged_seen: 0,
            adj: HugeSlice::filled(0, SeqAdj::default()).map_err(|_| ConnError::OutOfMemory)?,
        })
    }

    /// Allocates a translation record for every slot, so that connections can
    /// have their sequence numbers translated (16 bytes a slot). Done once, at
    /// start-up, when a service may need it.
    pub fn enable_translation(&mut self) -> Result<(), ConnError> {
        if self.adj.len() != self.slab.len() {
            self.adj = HugeSlice::filled(self.slab.len(), SeqAdj::default())
                .map_err(|_| ConnError::OutOfMemory)?;
        }
        Ok(())
    }

    /// Whether connections can be translated ([`ConnTable::enable_translation`]).
    pub fn translates(&self) -> bool {
        !self.adj.is_empty()
    }

    /// The live cold entry `id` names.
    #[inline]
    fn cold(&self, id: ConnId) -> Option<&Cold> {
        self.slab
            .get(id.index as usize)
            .filter(|c| c.is_live() && c.generation == id.generation)
    }

    #[inline]
    fn cold_mut(&mut self, id: ConnId) -> Option<&mut Cold> {
        self.slab
            .get_mut(id.index as usize)
            .filter(|c| c.is_live() && c.generation == id.generation)
    }

    /// Connection `id`'s translation, if it is live and translated.
    #[inline]
    pub fn translation(&self, id: ConnId) -> Option<&SeqAdj> {
        match self.cold(id) {
            Some(c) if c.xlate & xlate::flag::ON != 0 => self.adj.get(id.index as usize),
            _ => None,
        }
    }

    /// Connection `id`'s translation, to change it.
    #[inline]
    pub fn translation_mut(&mut self, id: ConnId) -> Option<&mut SeqAdj> {
        match self.cold(id) {
            Some(c) if c.xlate & xlate::flag::ON != 0 => self.adj.get_mut(id.index as usize),
            _ => None,
        }
    }

    /// The translation record of `id`'s slot, whatever the slot holds now: for a
    /// connection just expired (the record stays until the slot is reused).
    pub fn released_translation(&self, id: ConnId) -> Option<&SeqAdj> {
        self.adj.get(id.index as usize)
    }

    /// Gives connection `id` a translation, with [`xlate::flag::ON`] and `flags`
    /// set in its entry. Fails when the table keeps no translations or the id is
    /// stale.
    pub fn set_translation(&mut self, id: ConnId, adj: SeqAdj, flags: u8) -> Result<(), ConnError> {
        if self.adj.get(id.index as usize).is_none() {
            return Err(ConnError::UnknownConn);
        }
        let c = self.cold_mut(id).ok_or(ConnError::UnknownConn)?;
        c.xlate = xlate::flag::ON | flags | (c.xlate & xlate::flag::NAT64);
        let (positions, lane) = (c.records, lane_of(c.mode(), c.xlate));
        self.adj[id.index as usize] = adj;
        self.set_lane(positions, lane);
        Ok(())
    }

    fn set_lane(&mut self, positions: [Pos; 2], lane: Lane) {
        for p in positions {
            if let Some(r) = self.records.get_mut(p) {
                r.set_lane(lane);
            }
        }
    }

    /// Sets or clears [`xlate::flag::SLOW`] of a translated connection.
    pub fn set_slow(&mut self, id: ConnId, slow: bool) {
        if let Some(c) = self.cold_mut(id) {
            if c.xlate != 0 {
                if slow {
                    c.xlate |= xlate::flag::SLOW;
                } else {
                    c.xlate &= !xlate::flag::SLOW;
                }
            }
        }
    }

    /// Moves connection `id` to `state` with that state's timeout from `now`
    /// (a SYN proxy takes a connection through states no packet of the client
    /// leads to). Returns the state change, or None for a stale id.
    pub fn set_tcp_state(&mut self, id: ConnId, state: ConnState, now: u64) -> Option<StateChange> {
        let from = self.get(id)?.state;
        let expiry = now.saturating_add(self.timeout_ms.ms(state));
        self.set_state(id, state, expiry, now);
        Some(StateChange { from, to: state })
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most connections the table holds (`connections.max`).
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }

    /// Bytes allocated by the table: records, cold slab, free-slot bitmap and
    /// timer wheel. Fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        self.slab.len() * size_of::<Cold>()
            + self.free.memory_bytes()
            + self.records.memory_bytes()
            + self.wheel.memory_bytes()
    }

    /// The hasher to compute [`FlowKey::hash_with`] for [`Self::lookup_hashed`].
    pub fn hasher(&self) -> &FlowHasher {
        &self.hasher
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Replaces the timeouts (config reload). A connection keeps its settled
    /// deadline until its next packet, which takes the new value; packets not
    /// yet settled (see the module documentation) count under the new values.
    pub fn set_timeouts(&mut self, timeouts: &Timeouts) {
        self.timeouts = *timeouts;
        self.timeout_ms = TimeoutTable::new(timeouts);
    }

    /// Moves the table's clock to `now` (never back) and returns that moment, for
    /// [`Self::on_packet_record`] calls at the same `now`.
    #[inline]
    pub fn clock(&mut self, now: u64) -> Clock {
        Clock {
            now,
            tick: self.advance(now),
        }
    }

    /// Moves the table's clock to `now` (never back).
    #[inline(always)]
    fn advance(&mut self, now: u64) -> u64 {
        if now != self.last_now {
            self.last_now = now;
            self.last_tick = tick_of(now);
            if self.last_tick > self.clock {
                self.clock = self.last_tick;
            }
        }
        self.last_tick
    }

    /// Finds the connection a packet belongs to, and which way it travels.
    #[inline]
    pub fn lookup(&self, key: &FlowKey<A>) -> Option<(ConnId, Dir)> {
        self.lookup_hashed(key, self.hasher.hash(key))
    }

    /// [`Self::lookup`] with the hash computed beforehand by
    /// `key.hash_with(table.hasher())`. A wrong hash may miss, never gives a wrong hit.
    #[inline]
    pub fn lookup_hashed(&self, key: &FlowKey<A>, hash: u64) -> Option<(ConnId, Dir)> {
        let pos = self.records.find(hash, key)?;
        let r = self.records.get(pos)?;
        let slot = r.slot();
        let cold = self.slab.get(slot as usize)?;
        Some((
            ConnId {
                index: slot,
                generation: cold.generation,
            },
            r.dir(),
        ))
    }

    /// Requests the line a lookup of a key with this hash reads first (its home
    /// bucket): a burst requests every packet's before it looks any up.
    #[inline(always)]
    pub fn request_record(&self, hash: u64) {
        prefetch(self.records.home_bucket(hash));
    }

    /// Where the record of `key` (with this hash) is, for the burst path: no line
    /// but the records' is read.
    #[inline(always)]
    pub fn find_record(&self, key: &FlowKey<A>, hash: u64) -> Option<RecordPos> {
        self.records.find(hash, key).map(RecordPos)
    }

    /// The burst path's second look, once [`Self::request_record`]'s line is in:
    /// the record if it is in its home bucket; else, when it may have spilled to
    /// the next bucket, that bucket is requested, so that a spilled record does
    /// not cost its packet a miss of its own.
    #[inline(always)]
    pub fn record_at_home(&self, key: &FlowKey<A>, hash: u64) -> Option<RecordPos> {
        self.records.find_at_home(hash, key).map(RecordPos)
    }

    /// A number that changes whenever a record is placed or removed: a
    /// [`RecordPos`] found while it read the same still names the same key.
    #[inline(always)]
    pub fn records_version(&self) -> u32 {
        self.records.version()
    }

    /// [`Self::find_record`] that takes the position [`Self::record_at_home`]
    /// gave when no record has been placed or removed since ([`Self::records_version`]
    /// still reads `version`), and looks again otherwise.
    #[inline(always)]
    pub fn find_record_from(
        &self,
        key: &FlowKey<A>,
        hash: u64,
        at_home: Option<RecordPos>,
        version: u32,
    ) -> Option<RecordPos> {
        match at_home {
            Some(pos) if self.records.version() == version => Some(pos),
            _ => self.find_record(key, hash),
        }
    }

    /// The record at `pos`.
    #[inline(always)]
    pub fn record(&self, pos: RecordPos) -> Option<&Record<A>> {
        self.records.get(pos.0)
    }

    /// Where connection `id`'s record for direction `dir` is.
    pub fn record_of(&self, id: ConnId, dir: Dir) -> Option<RecordPos> {
        let p = self.cold(id)?.records[dir.bit() as usize];
        (p != NO_RECORD).then_some(RecordPos(p))
    }

    /// The id of the connection a record belongs to (reads its cold entry).
    pub fn id_of(&self, pos: RecordPos) -> Option<ConnId> {
        let slot = self.records.get(pos.0)?.slot();
        let cold = self.slab.get(slot as usize).filter(|c| c.is_live())?;
        Some(ConnId {
            index: slot,
            generation: cold.generation,
        })
    }

    /// The connection `id` names, if it is still live, put together from its
    /// records and its cold entry.
    pub fn get(&self, id: ConnId) -> Option<Conn<A>> {
        let cold = self.cold(id)?;
        Some(self.assemble(cold, id.generation))
    }

    fn assemble(&self, cold: &Cold, generation: u32) -> Conn<A> {
        let inbound = self.records.get(cold.records[0]).copied();
        let (ends, real_server, state) = match inbound {
            Some(r) => {
                let [client, vip] = r.key();
                // Where the record does not keep the local endpoint: FULLNAT's
                // (NAT64's too) is the outbound key's destination; in every other
                // mode the real server sees the client.
                let implied_local = if A::RewriteTo::WHOLE || cold.mode() != Mode::FullNat {
                    client
                } else {
                    self.records
                        .get(cold.records[1])
                        .map_or(client, |out| out.key()[1])
                };
                let [local, real] = r.rewritten_to(implied_local);
                (
                    [[client, vip], [real, local]],
                    r.real_server(),
                    ConnState::from_code(r.state_code()).unwrap_or(ConnState::Udp),
                )
            }
            None => {
                let none = Endpoint::new(A::UNSPECIFIED, 0);
                ([[none; 2]; 2], 0, ConnState::Udp)
            }
        };
        Conn {
            ends,
            expiry: deadline_of(cold, &self.records, &self.timeout_ms, self.clock),
            generation,
            template: cold.template,
            service: cold.service,
            real_server,
            proto: cold.proto(),
            mode: cold.mode(),
            state,
            xlate: cold.xlate,
        }
    }

    /// Creates a connection in its initial state (TCP NONE, inactive, or UDP) with
    /// that state's timeout; then feed its first packet to [`Self::on_packet`].
    /// Indexes the inbound key, and the outbound key when the mode's replies pass
    /// through us. On any error nothing changes: a full table never evicts.
    pub fn insert(&mut self, new: &NewConn<A>, now: u64) -> Result<ConnId, ConnError> {
        let prepared = PreparedConn {
            new: *new,
            hashes: self.hash_new(new),
            deadline_state: new.initial_state(),
        };
        self.insert_prepared(&prepared, now)
    }

    /// Hashes the keys of a connection about to be inserted and requests the
    /// buckets its records go in, and its cold slot, for [`Self::insert_prepared`]
    /// a little later: a caller opening several connections prepares them all
    /// first, so that their lines (the outbound key's have never been looked at)
    /// arrive together.
    ///
    /// `first_tcp_flags`: the flags of the connection's first packet, when the
    /// caller forwards that packet right after the insertion. The connection is
    /// then inserted in the state that packet leaves it in, with the deadline it
    /// sets ([`PreparedConn::first_change`] is the change to count), and the
    /// caller does not hand the packet to [`Self::on_packet`]: its timer is filed
    /// once, not under NONE's 2 s to be re-filed when they pass (SYN_RECV is
    /// longer) or at once (shorter).
    pub fn prepare_insert(&self, new: NewConn<A>, first_tcp_flags: Option<u8>) -> PreparedConn<A> {
        let hashes = self.hash_new(&new);
        for hash in [Some(hashes.inbound), hashes.outbound]
            .into_iter()
            .flatten()
        {
            self.records.request_for_insert(hash);
        }
        let home = self.home_slot(hashes.inbound);
        if let Some(c) = self.slab.get(home) {
            prefetch(c);
        }
        self.free.request(home);
        let deadline_state = match first_tcp_flags {
            Some(flags) => new.first_state(flags),
            None => new.initial_state(),
        };
        PreparedConn {
            new,
            hashes,
            deadline_state,
        }
    }

    fn hash_new(&self, new: &NewConn<A>) -> NewConnHashes {
        NewConnHashes {
            inbound: self.hasher.hash(&new.inbound_key()),
            outbound: new
                .mode
                .replies_via_us()
                .then(|| self.hasher.hash(&new.outbound_key())),
        }
    }

    /// The slab slot a connection whose inbound key has this hash looks for a
    /// free slot from. Multiply-shift on the hash's low half: the record's bucket
    /// comes from the high half, so the two do not follow each other.
    #[inline(always)]
    fn home_slot(&self, hash: u64) -> usize {
        ((u128::from(hash.rotate_left(32)) * self.slab.len() as u128) >> 64) as usize
    }

    /// [`Self::insert`] of a connection from [`Self::prepare_insert`].
    pub fn insert_prepared(
        &mut self,
        prepared: &PreparedConn<A>,
        now: u64,
    ) -> Result<ConnId, ConnError> {
        let PreparedConn {
            new,
            hashes,
            deadline_state,
        } = prepared;
        if self.len() >= self.capacity() {
            return Err(ConnError::TableFull);
        }
        let in_key = new.inbound_key();
        let in_hash = hashes.inbound;
        if self.records.find(in_hash, &in_key).is_some() {
            return Err(ConnError::InboundKeyExists);
        }
        let out = match hashes.outbound {
            Some(out_hash) => {
                let out_key = new.outbound_key();
                if out_key == in_key || self.records.find(out_hash, &out_key).is_some() {
                    return Err(ConnError::OutboundKeyExists);
                }
                Some(out_hash)
            }
            None => None,
        };
        let home = self.home_slot(in_hash);
        let slot = self
            .free
            .first_free_from(home)
            .ok_or(ConnError::TableFull)?;
        let generation = match self.slab.get(slot) {
            Some(c) if !c.is_live() => c.generation.wrapping_add(1),
            // The bitmap only hands out free slots; refuse rather than corrupt.
            _ => return Err(ConnError::TableFull),
        };
        let tick = self.advance(now);
        let state = *deadline_state;
        let xlate = if new.is_nat64() {
            xlate::flag::NAT64
        } else {
            0
        };
        let lane = lane_of(new.mode, xlate);
        // What an IPv6 record leaves out must be implied (see `assemble`).
        debug_assert!(A::RewriteTo::WHOLE || new.mode == Mode::FullNat || new.local == new.client);
        let mark = settled_mark(self.clock);
        // In its initial state the connection is where its first packet leaves
        // it, or will be until the packet changes the state: the inbound record
        // carries the insertion's tick, as that packet's own would be, so that
        // the deadline is the same whether the packet is handed to `on_packet`
        // after the insertion or was named to `prepare_insert`. A first packet
        // that changes the state settles the deadline either way.
        let inbound_seen = if state == new.initial_state() {
            tick as u16
        } else {
            mark
        };
        let code = state.code();
        let inbound = Record::new(
            [new.client, new.vip],
            [new.local, new.real],
            new.real_server,
            slot as u32,
            code,
            Dir::Inbound,
            new.proto,
            lane,
            inbound_seen,
        );
        // The index holds two records per slab slot, so it has room for these.
        let in_pos = self
            .records
            .insert(in_hash, inbound)
            .map_err(|IndexFull| ConnError::TableFull)?;
        let out_pos = match out {
            Some(out_hash) => {
                let outbound = Record::new(
                    [new.real, new.local],
                    [new.vip, new.client],
                    new.real_server,
                    slot as u32,
                    code,
                    Dir::Outbound,
                    new.proto,
                    lane,
                    mark,
                );
                match self.records.insert(out_hash, outbound) {
                    Ok(p) => p,
                    Err(IndexFull) => {
                        self.records.remove(in_hash, in_pos);
                        return Err(ConnError::TableFull);
                    }
                }
            }
            None => NO_RECORD,
        };
        self.free.take(slot);
        // The deadline the first packet sets when the caller names it.
        let expiry = now.saturating_add(self.timeout_ms.ms(*deadline_state));
        self.slab[slot] = Cold {
            expiry,
            generation,
            template: new.template.map_or(NO_TEMPLATE, |t| t.0),
            timer: TimerPos::UNARMED,
            records: [in_pos, out_pos],
            service: new.service,
            xlate,
            kind: new.mode.code() | if new.proto == Proto::Udp { 4 } else { 0 },
        };
        self.len += 1;
        let slot = slot as u32;
        let (wheel, mut entries) = self.wheel_and_entries();
        wheel.arm(&mut entries, slot, expiry, now);
        Ok(ConnId {
            index: slot,
            generation,
        })
    }

    /// The wheel and what it files, borrowed apart.
    fn wheel_and_entries(&mut self) -> (&mut TimerWheel, Entries<'_, A>) {
        (
            &mut self.wheel,
            Entries {
                slab: &mut self.slab,
                records: &mut self.records,
                timeouts: &self.timeout_ms,
                clock: self.clock,
            },
        )
    }

    /// Installs a connection another member carries (connection sync) in `state`,
    /// expiring at `expiry`: a new entry, or the same connection's entry updated
    /// (same real server, local endpoint and mode). A different connection with
    /// the key is a conflict, as in [`ConnTable::insert`].
    pub fn install(
        &mut self,
        new: NewConn<A>,
        state: ConnState,
        expiry: u64,
        now: u64,
    ) -> Result<Installed, ConnError> {
        let id = match self.lookup(&new.inbound_key()) {
            Some((id, Dir::Inbound)) => {
                let c = self.get(id).ok_or(ConnError::UnknownConn)?;
                if c.ends[1] != [new.real, new.local] || c.mode != new.mode {
                    return Err(ConnError::InboundKeyExists);
                }
                let previous = c.state;
                self.set_state(id, state, expiry, now);
                return Ok(Installed::Updated { id, previous });
            }
            Some(_) => return Err(ConnError::InboundKeyExists),
            None => self.insert_prepared(&self.prepare_insert(new, None), now)?,
        };
        self.set_state(id, state, expiry, now);
        Ok(Installed::New(id))
    }

    /// Sets a live connection's state and deadline, settling its records.
    fn set_state(&mut self, id: ConnId, state: ConnState, expiry: u64, now: u64) {
        self.advance(now);
        let (clock, code) = (self.clock, state.code());
        let Some(cold) = self.slab.get(id.index as usize).copied() else {
            return;
        };
        if !cold.is_live() || cold.generation != id.generation {
            return;
        }
        let previous = deadline_of(&cold, &self.records, &self.timeout_ms, clock);
        for p in cold.record_positions() {
            if let Some(r) = self.records.get_mut(p) {
                r.set_state_code(code);
                r.seen = settled_mark(clock);
            }
        }
        self.slab[id.index as usize].expiry = expiry;
        if expiry < previous {
            let (wheel, mut entries) = self.wheel_and_entries();
            wheel.rearm(&mut entries, id.index, expiry, now);
        }
    }

    /// Accounts one packet of the connection: advances the TCP state by its flags
    /// (IPVS's tables; DR and TUNNEL inbound packets use INPUT_ONLY) and restarts
    /// the idle timeout of the resulting state. O(1); the wheel is touched only
    /// when the deadline moves earlier.
    pub fn on_packet(
        &mut self,
        id: ConnId,
        dir: Dir,
        tcp_flags: u8,
        now: u64,
    ) -> Result<StateChange, ConnError> {
        let cold = *self.cold(id).ok_or(ConnError::UnknownConn)?;
        // DR and TUNNEL have no outbound record; their state is in the inbound one.
        let pos = match cold.records[dir.bit() as usize] {
            NO_RECORD => cold.records[0],
            p => p,
        };
        let from = self
            .records
            .get(pos)
            .map(Record::state_code)
            .ok_or(ConnError::UnknownConn)?;
        let to = ConnState::next_code(from, tcp_dir(cold.mode(), dir), tcp_flags);
        let state = |code| ConnState::from_code(code).ok_or(ConnError::UnknownConn);
        if from == to {
            let tick = self.advance(now);
            if let Some(r) = self.records.get_mut(pos) {
                r.seen = tick as u16;
            }
            let s = state(from)?;
            return Ok(StateChange { from: s, to: s });
        }
        let change = StateChange {
            from: state(from)?,
            to: state(to)?,
        };
        let expiry = now.saturating_add(self.timeout_ms.ms(change.to));
        self.set_state(id, change.to, expiry, now);
        Ok(change)
    }

    /// [`Self::on_packet`] for the burst path, from the packet's record: a packet
    /// that leaves the connection's state as it was (every UDP packet, most TCP
    /// ones) reads and writes its record and nothing else; one that changes it
    /// takes the slow way through the cold entry. Returns the state change when
    /// there was one. It writes nothing of the record but its state and the time
    /// of its last packet, so what a caller read of the record before (the burst
    /// path's copy: key, rewrite, real server, direction, lane) still holds.
    #[inline(always)]
    pub fn on_packet_record(
        &mut self,
        pos: RecordPos,
        tcp_flags: u8,
        clock: Clock,
    ) -> Result<Option<StateChange>, ConnError> {
        let tick = clock.tick;
        let Some(r) = self.records.get_mut(pos.0) else {
            return Err(ConnError::UnknownConn);
        };
        let from = r.state_code();
        let to = if from == ConnState::Udp.code() {
            from
        } else {
            let dir = match (r.lane(), r.dir()) {
                (_, Dir::Outbound) => Some(TcpDir::Output),
                (Lane::Nat | Lane::FullNat, Dir::Inbound) => Some(TcpDir::Input),
                (Lane::Dr | Lane::Tunnel, Dir::Inbound) => Some(TcpDir::InputOnly),
                // The mode is in the cold entry: the slow way.
                (Lane::Ordinary, Dir::Inbound) => None,
            };
            // No state is `!from`: the slow way.
            dir.map_or(!from, |dir| ConnState::next_code(from, dir, tcp_flags))
        };
        if from == to {
            // The record is stored to only when the tick moved, so that its
            // line stays clean and leaves the cache without a write-back. An
            // unchanged tick is stored to a scratch field instead of skipped:
            // a branch here would be taken at random once flows come about once
            // a tick.
            let tick = tick as u16;
            let into = if r.seen != tick {
                &mut r.seen
            } else {
                &mut self.unchanged_seen
            };
            *into = tick;
            return Ok(None);
        }
        self.on_packet_record_slow(pos, tcp_flags, clock.now)
            .map(Some)
    }

    #[cold]
    #[inline(never)]
    fn on_packet_record_slow(
        &mut self,
        pos: RecordPos,
        tcp_flags: u8,
        now: u64,
    ) -> Result<StateChange, ConnError> {
        let dir = self.records.get(pos.0).ok_or(ConnError::UnknownConn)?.dir();
        let id = self.id_of(pos).ok_or(ConnError::UnknownConn)?;
        self.on_packet(id, dir, tcp_flags, now)
    }

    /// Removes a connection and returns it (the caller adjusts its counters).
    pub fn remove(&mut self, id: ConnId) -> Result<Conn<A>, ConnError> {
        let conn = self.get(id).ok_or(ConnError::UnknownConn)?;
        let in_hash = self.hasher.hash(&conn.inbound_key());
        let out_hash = conn.outbound_key().map_or(0, |key| self.hasher.hash(&key));
        self.release_slot(id.index, in_hash, out_hash);
        Ok(conn)
    }

    /// Removes connections whose deadline is at or before `now`, handing each to
    /// `on_expire` first. `budget` bounds the work of one call: each wheel entry
    /// examined counts one, whether it expires or (refreshed) is re-filed, so at
    /// most `budget` connections are removed. Returns how many were removed.
    ///
    /// Called every loop, connections go in deadline order, at most one wheel
    /// tick late. After a pause, overdue connections go in the order they were
    /// filed (a refreshed one is found at its first deadline).
    ///
    /// Expiring connections are old, so their records are rarely in cache: they
    /// are taken off the wheel in batches, and the home buckets of a whole batch
    /// are requested before the first one is unindexed.
    pub fn expire(
        &mut self,
        now: u64,
        budget: usize,
        mut on_expire: impl FnMut(ConnId, &Conn<A>),
    ) -> usize {
        if self.wheel.nothing_due(now) {
            return 0;
        }
        self.advance(now);
        let mut work = budget;
        let mut removed = 0;
        loop {
            let mut due: [Option<Due<A>>; EXPIRE_BATCH] = [None; EXPIRE_BATCH];
            let mut n = 0;
            while n < EXPIRE_BATCH {
                let (wheel, mut entries) = self.wheel_and_entries();
                let Some(index) = wheel.poll(&mut entries, now, &mut work) else {
                    break;
                };
                let Some(cold) = self.slab.get(index as usize).copied() else {
                    continue;
                };
                if !cold.is_live() {
                    continue;
                }
                let conn = self.assemble(&cold, cold.generation);
                let in_hash = self.hasher.hash(&conn.inbound_key());
                prefetch(self.records.home_bucket(in_hash));
                self.free.request(index as usize);
                let out_hash = conn.outbound_key().map_or(0, |key| {
                    let hash = self.hasher.hash(&key);
                    prefetch(self.records.home_bucket(hash));
                    hash
                });
                due[n] = Some((index, in_hash, out_hash, conn));
                n += 1;
            }
            for (index, in_hash, out_hash, conn) in due[..n].iter().flatten() {
                on_expire(
                    ConnId {
                        index: *index,
                        generation: conn.generation,
                    },
                    conn,
                );
                self.release_slot(*index, *in_hash, *out_hash);
                removed += 1;
            }
            if n < EXPIRE_BATCH {
                return removed;
            }
        }
    }

    /// Every live connection, in slot order. Walks the whole slab: for the control
    /// path (`ferrovs ctl conns`), not the packet path.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, Conn<A>)> + '_ {
        self.slab
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_live())
            .map(|(index, c)| {
                (
                    ConnId {
                        index: index as u32,
                        generation: c.generation,
                    },
                    self.assemble(c, c.generation),
                )
            })
    }

    /// The live connections in slots `start..start + count`, for a listing done in
    /// bounded steps (each step a short pause of the worker). Returns where the next
    /// step starts, or None at the end of the slab.
    pub fn scan(&self, start: usize, count: usize, mut f: impl FnMut(&Conn<A>)) -> Option<usize> {
        let end = start.saturating_add(count).min(self.slab.len());
        for c in self.slab.get(start..end).unwrap_or(&[]) {
            if c.is_live() {
                f(&self.assemble(c, c.generation));
            }
        }
        (end < self.slab.len()).then_some(end)
    }

    /// Unindexes, disarms and frees the live slot `index`, whose keys hash to
    /// `in_hash` and `out_hash` (ignored when it has no outbound record).
    fn release_slot(&mut self, index: u32, in_hash: u64, out_hash: u64) {
        let Some(cold) = self.slab.get(index as usize).copied() else {
            return;
        };
        if !cold.is_live() {
            return;
        }
        self.records.remove(in_hash, cold.records[0]);
        if cold.records[1] != NO_RECORD {
            self.records.remove(out_hash, cold.records[1]);
        }
        let (wheel, mut entries) = self.wheel_and_entries();
        wheel.unlink(&mut entries, index);
        self.slab[index as usize] = Cold::free(cold.generation);
        self.free.put(index as usize);
        self.len -= 1;
    }
}

impl<A: Family> fmt::Debug for ConnTable<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// IPVS's table for a packet: INPUT_ONLY for inbound packets of modes whose replies
/// bypass us (IPVS's `IP_VS_CONN_F_NOOUTPUT`).
#[inline]
fn tcp_dir(mode: Mode, dir: Dir) -> TcpDir {
    match dir {
        Dir::Inbound if mode.replies_via_us() => TcpDir::Input,
        Dir::Inbound => TcpDir::InputOnly,
        Dir::Outbound => TcpDir::Output,
    }
}
