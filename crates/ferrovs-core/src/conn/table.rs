//! The per-worker connection table.
//!
//! Layout, sized once from `connections.max` so nothing allocates afterwards:
//! - a slab of entries, each a live [`Conn`] or a free slot, with a bitmap of
//!   the free ones ([`FreeSlots`]). A new connection takes its inbound key's
//!   *home slot* (a slot picked by the key's hash) when that is free, else its
//!   outbound key's, else the first free slot after its inbound home. A packet
//!   whose connection sits in its home slot is found on that one cache line,
//!   without reading the index ([`ConnTable::candidate`]): in a lightly loaded
//!   table, most are. Either way where a connection lands follows from its hash,
//!   never from the order connections were opened in: otherwise traffic that
//!   revisits flows in the order they opened (a replayed capture, a load
//!   generator's fixed cycle) would read the slab front to back, which the
//!   hardware prefetcher makes look far cheaper than the random reads real
//!   traffic causes;
//! - a [`FlowIndex`] of cache-line buckets whose values are
//!   `slab_index << 1 | dir`; the keys live only in the slab entry, so each
//!   direction costs a 4-byte value and a 4-byte signature at a load of at most
//!   60 %, about 27 bytes per NAT connection. It never rehashes or grows;
//! - a [`TimerWheel`] for expiry, whose position for the connection is kept in
//!   the slab entry.
//!
//! A worker that handles a burst hashes every packet's key first and requests the
//! line its lookup starts from ([`ConnTable::request_first_line`]: the home slot
//! in a lightly loaded table, else the index bucket), then asks
//! [`ConnTable::candidate`] for each, which requests the entry the bucket points
//! at when the home slot does not answer, so that the lookups of a burst overlap
//! their cache misses instead of taking them one after the other.
//!
//! Each [`ConnId`] carries the slot's generation. The data path uses ids only
//! between a lookup and the end of that packet, but ids also travel further (a
//! control command naming a connection, deferred work), and a slot reused in the
//! meantime would otherwise silently act on another flow. The generation fits in
//! the entry's padding and the check reads a cache line the lookup just touched.

mod home;
#[cfg(test)]
mod tests;

pub use home::{Candidate, FirstLine};

use std::fmt;

use super::family::{Endpoint, Family};
use super::free::FreeSlots;
use super::index::FlowIndex;
use super::key::{Dir, FlowHasher, FlowKey, Proto};
use super::persist::TemplateId;
use super::state::{ConnState, TcpDir, TcpState, TimeoutTable, Timeouts};
use super::wheel::{Timed, TimerPos, TimerWheel, MAX_ENTRIES};
use super::xlate::{self, SeqAdj};
use ferrovs_mem::{prefetch, HugeSlice};

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
    /// Where the wheel has the connection filed.
    timer: TimerPos,
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

    /// Key comparison without building the other direction's key.
    #[inline]
    fn matches(&self, dir: Dir, key: &FlowKey<A>) -> bool {
        // Whole endpoints, then the protocol: the pair sits at an offset picked by
        // the direction, and this order compiles to the fewest instructions.
        let want = [
            Endpoint::new(key.src, key.sport),
            Endpoint::new(key.dst, key.dport),
        ];
        self.ends[dir.bit() as usize] == want && key.proto == self.proto
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

/// A slab slot, alone on its cache line(s): a lookup touches one line of the
/// slab (two for IPv6), and one prefetch brings a whole IPv4 entry.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
enum Entry<A: Family> {
    Live(Conn<A>),
    /// A free slot (its bit is set in the table's [`FreeSlots`]). `generation`
    /// is the last one the slot had, so ids to it stay stale.
    Free {
        generation: u32,
    },
}

/// The wheel files live connections; it reads their deadline and keeps its
/// position in the entry.
impl<A: Family> Timed for HugeSlice<Entry<A>> {
    #[inline]
    fn deadline(&mut self, index: u32) -> u64 {
        match self.get(index as usize) {
            Some(Entry::Live(c)) => c.expiry,
            _ => 0,
        }
    }
    #[inline]
    fn timer(&self, index: u32) -> TimerPos {
        match self.get(index as usize) {
            Some(Entry::Live(c)) => c.timer,
            _ => TimerPos::UNARMED,
        }
    }
    #[inline]
    fn set_timer(&mut self, index: u32, pos: TimerPos) {
        if let Some(Entry::Live(c)) = self.get_mut(index as usize) {
            c.timer = pos;
        }
    }
    #[inline]
    fn prefetch(&self, index: u32) {
        if let Some(entry) = self.get(index as usize) {
            prefetch(entry);
        }
    }
}

/// Expiring connections taken off the wheel together (see [`ConnTable::expire`]).
const EXPIRE_BATCH: usize = 16;

/// The connection table of one worker and one address family.
pub struct ConnTable<A: Family> {
    slab: HugeSlice<Entry<A>>,
    index: FlowIndex,
    wheel: TimerWheel,
    hasher: FlowHasher,
    timeouts: Timeouts,
    timeout_ms: TimeoutTable,
    free: FreeSlots,
    len: u32,
    /// Each slot's sequence-number translation (beside the slab, so that entries
    /// stay one line); empty until [`ConnTable::enable_translation`].
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
        if max > MAX_ENTRIES {
            return Err(ConnError::CapacityTooLarge);
        }
        // Read at random on every packet: huge pages spare the TLB.
        let slab = HugeSlice::filled(max, Entry::Free { generation: 0 })
            .map_err(|_| ConnError::OutOfMemory)?;
        // Two keys per connection (NAT and FULLNAT index both directions).
        let index = FlowIndex::with_capacity(2 * max).map_err(|_| ConnError::OutOfMemory)?;
        Ok(ConnTable {
            slab,
            index,
            wheel: TimerWheel::new(max).map_err(|_| ConnError::OutOfMemory)?,
            hasher,
            timeouts: *timeouts,
            timeout_ms: TimeoutTable::new(timeouts),
            free: FreeSlots::all_free(max).map_err(|_| ConnError::OutOfMemory)?,
            len: 0,
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

    /// Connection `id`'s translation, if it is live and translated.
    #[inline]
    pub fn translation(&self, id: ConnId) -> Option<&SeqAdj> {
        match self.get(id) {
            Some(c) if c.xlate & xlate::flag::ON != 0 => self.adj.get(id.index as usize),
            _ => None,
        }
    }

    /// Connection `id`'s translation, to change it.
    #[inline]
    pub fn translation_mut(&mut self, id: ConnId) -> Option<&mut SeqAdj> {
        match self.get(id) {
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
        let Some(slot) = self.adj.get_mut(id.index as usize) else {
            return Err(ConnError::UnknownConn);
        };
        match self.slab.get_mut(id.index as usize) {
            Some(Entry::Live(c)) if c.generation == id.generation => {
                *slot = adj;
                c.xlate = xlate::flag::ON | flags | (c.xlate & xlate::flag::NAT64);
                Ok(())
            }
            _ => Err(ConnError::UnknownConn),
        }
    }

    /// Sets or clears [`xlate::flag::SLOW`] of a translated connection.
    pub fn set_slow(&mut self, id: ConnId, slow: bool) {
        if let Some(Entry::Live(c)) = self.slab.get_mut(id.index as usize) {
            if c.generation == id.generation && c.xlate != 0 {
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

    /// Bytes allocated by the table: slab, free-slot bitmap, index and timer
    /// wheel. Fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        self.slab.len() * size_of::<Entry<A>>()
            + self.free.memory_bytes()
            + self.index.memory_bytes()
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

    /// Replaces the timeouts (config reload). Each connection takes the new value
    /// at its next packet; until then it keeps its deadline.
    pub fn set_timeouts(&mut self, timeouts: &Timeouts) {
        self.timeouts = *timeouts;
        self.timeout_ms = TimeoutTable::new(timeouts);
    }

    /// Finds the connection a packet belongs to, and which way it travels.
    #[inline]
    pub fn lookup(&self, key: &FlowKey<A>) -> Option<(ConnId, Dir)> {
        self.lookup_hashed(key, self.hasher.hash(key))
    }

    /// [`Self::lookup`] with the hash computed beforehand by
    /// `key.hash_with(table.hasher())`. A wrong hash gives a miss, never a wrong hit.
    #[inline]
    pub fn lookup_hashed(&self, key: &FlowKey<A>, hash: u64) -> Option<(ConnId, Dir)> {
        let slab = &self.slab;
        let value = self
            .index
            .find(hash, |v| match slab.get((v >> 1) as usize) {
                Some(Entry::Live(c)) => c.matches(Dir::from_bit(v), key),
                _ => false,
            })?;
        match slab.get((value >> 1) as usize) {
            Some(Entry::Live(c)) => Some((
                ConnId {
                    index: value >> 1,
                    generation: c.generation,
                },
                Dir::from_bit(value),
            )),
            _ => None,
        }
    }

    /// The connection `id` names, if it is still live.
    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&Conn<A>> {
        match self.slab.get(id.index as usize) {
            Some(Entry::Live(c)) if c.generation == id.generation => Some(c),
            _ => None,
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

    /// Hashes the keys of a connection about to be inserted and requests their
    /// home slots (with their free bits) and the index buckets they go in, for [`Self::insert_prepared`]
    /// a little later: a caller opening several connections prepares them all
    /// first, so that their lines (the outbound key's have never been looked at)
    /// arrive together.
    ///
    /// `first_tcp_flags`: the flags of the connection's first packet, when the
    /// caller hands that packet to [`Self::on_packet`] right after the insertion.
    /// The connection then starts with the deadline that packet sets, so its
    /// timer is filed once: not under NONE's 2 s, to be re-filed when they pass
    /// (SYN_RECV is longer) or at once (shorter).
    pub fn prepare_insert(&self, new: NewConn<A>, first_tcp_flags: Option<u8>) -> PreparedConn<A> {
        let hashes = self.hash_new(&new);
        for hash in [Some(hashes.inbound), hashes.outbound]
            .into_iter()
            .flatten()
        {
            self.request_first_line(hash, FirstLine::HomeSlot);
            self.request_first_line(hash, FirstLine::IndexBucket);
        }
        self.free.request(self.home_slot(hashes.inbound));
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
        if self.lookup_hashed(&in_key, in_hash).is_some() {
            return Err(ConnError::InboundKeyExists);
        }
        let out = match hashes.outbound {
            Some(out_hash) => {
                let out_key = new.outbound_key();
                if out_key == in_key || self.lookup_hashed(&out_key, out_hash).is_some() {
                    return Err(ConnError::OutboundKeyExists);
                }
                Some(out_hash)
            }
            None => None,
        };

        let index = self.claim_slot(in_hash, out)?;
        let Some(Entry::Free { generation }) = self.slab.get(index as usize).copied() else {
            // claim_slot only hands out free slots; refuse rather than corrupt.
            return Err(ConnError::TableFull);
        };
        let state = new.initial_state();
        // The deadline the first packet sets when the caller names it (it is
        // handled next, so NONE's own deadline would never be reached).
        let expiry = now.saturating_add(self.timeout_ms.ms(*deadline_state));
        let generation = generation.wrapping_add(1);
        self.slab[index as usize] = Entry::Live(Conn {
            ends: [[new.client, new.vip], [new.real, new.local]],
            expiry,
            generation,
            template: new.template.map_or(NO_TEMPLATE, |t| t.0),
            service: new.service,
            real_server: new.real_server,
            proto: new.proto,
            mode: new.mode,
            state,
            xlate: if new.is_nat64() {
                xlate::flag::NAT64
            } else {
                0
            },
            timer: TimerPos::UNARMED,
        });
        self.len += 1;

        // The index holds two keys per slot, so it has room for these.
        let _ = self.index.insert(in_hash, index << 1 | Dir::Inbound.bit());
        if let Some(out_hash) = out {
            let _ = self
                .index
                .insert(out_hash, index << 1 | Dir::Outbound.bit());
        }
        self.wheel.arm(&mut self.slab, index, expiry, now);
        Ok(ConnId { index, generation })
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
                let Some(Entry::Live(c)) = self.slab.get(id.index as usize) else {
                    return Err(ConnError::UnknownConn);
                };
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

    /// Sets a live connection's state and deadline.
    fn set_state(&mut self, id: ConnId, state: ConnState, expiry: u64, now: u64) {
        let Some(Entry::Live(c)) = self.slab.get_mut(id.index as usize) else {
            return;
        };
        c.state = state;
        let earlier = expiry < c.expiry;
        c.expiry = expiry;
        if earlier {
            self.wheel.rearm(&mut self.slab, id.index, expiry, now);
        }
    }

    /// Accounts one packet of the connection: advances the TCP state by its flags
    /// (IPVS's tables; DR and TUNNEL inbound packets use INPUT_ONLY) and restarts
    /// the idle timeout of the resulting state. O(1); the wheel is touched only
    /// when the deadline moves earlier.
    #[inline]
    pub fn on_packet(
        &mut self,
        id: ConnId,
        dir: Dir,
        tcp_flags: u8,
        now: u64,
    ) -> Result<StateChange, ConnError> {
        self.on_packet_in_place(id, dir, tcp_flags, now)
            .map(|(change, _)| change)
    }

    /// [`Self::on_packet`] that also lends the connection, updated, for a caller
    /// that reads a few of its fields next (the burst path).
    #[inline]
    pub fn on_packet_in_place(
        &mut self,
        id: ConnId,
        dir: Dir,
        tcp_flags: u8,
        now: u64,
    ) -> Result<(StateChange, &Conn<A>), ConnError> {
        let Some(Entry::Live(c)) = self.slab.get_mut(id.index as usize) else {
            return Err(ConnError::UnknownConn);
        };
        if c.generation != id.generation {
            return Err(ConnError::UnknownConn);
        }
        let from = c.state;
        let to = match from {
            ConnState::Tcp(s) => ConnState::Tcp(s.next(tcp_dir(c.mode, dir), tcp_flags)),
            ConnState::Udp => ConnState::Udp,
        };
        c.state = to;
        let expiry = now.saturating_add(self.timeout_ms.ms(to));
        let earlier = expiry < c.expiry;
        c.expiry = expiry;
        if earlier {
            self.wheel.rearm(&mut self.slab, id.index, expiry, now);
        }
        match self.slab.get(id.index as usize) {
            Some(Entry::Live(c)) => Ok((StateChange { from, to }, c)),
            _ => Err(ConnError::UnknownConn),
        }
    }

    /// Removes a connection and returns it (the caller adjusts its counters).
    pub fn remove(&mut self, id: ConnId) -> Result<Conn<A>, ConnError> {
        let conn = *self.get(id).ok_or(ConnError::UnknownConn)?;
        self.release_slot(id.index, &conn);
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
    /// Expiring connections are old, so their index buckets are rarely in cache:
    /// they are taken off the wheel in batches, and the buckets of a whole batch
    /// are prefetched before the first one is unindexed.
    pub fn expire(
        &mut self,
        now: u64,
        budget: usize,
        mut on_expire: impl FnMut(ConnId, &Conn<A>),
    ) -> usize {
        if self.wheel.nothing_due(now) {
            return 0;
        }
        let mut work = budget;
        let mut removed = 0;
        loop {
            // (slot, inbound key hash, outbound key hash)
            let mut due = [(0u32, 0u64, 0u64); EXPIRE_BATCH];
            let mut n = 0;
            while n < EXPIRE_BATCH {
                let Some(index) = self.wheel.poll(&mut self.slab, now, &mut work) else {
                    break;
                };
                let Some(Entry::Live(conn)) = self.slab.get(index as usize) else {
                    continue;
                };
                let in_hash = self.hasher.hash(&conn.inbound_key());
                prefetch(self.index.bucket(in_hash));
                self.free.request(index as usize);
                let out_hash = conn.outbound_key().map_or(0, |key| {
                    let hash = self.hasher.hash(&key);
                    prefetch(self.index.bucket(hash));
                    hash
                });
                due[n] = (index, in_hash, out_hash);
                n += 1;
            }
            for &(index, in_hash, out_hash) in &due[..n] {
                if let Some(Entry::Live(conn)) = self.slab.get(index as usize).copied() {
                    on_expire(
                        ConnId {
                            index,
                            generation: conn.generation,
                        },
                        &conn,
                    );
                    self.release_slot_hashed(index, &conn, in_hash, out_hash);
                    removed += 1;
                }
            }
            if n < EXPIRE_BATCH {
                return removed;
            }
        }
    }

    /// Every live connection, in slot order. Walks the whole slab: for the control
    /// path (`ferrovs ctl conns`), not the packet path.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn<A>)> + '_ {
        self.slab
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry {
                Entry::Live(c) => Some((
                    ConnId {
                        index: index as u32,
                        generation: c.generation,
                    },
                    c,
                )),
                Entry::Free { .. } => None,
            })
    }

    /// The live connections in slots `start..start + count`, for a listing done in
    /// bounded steps (each step a short pause of the worker). Returns where the next
    /// step starts, or None at the end of the slab.
    pub fn scan(&self, start: usize, count: usize, mut f: impl FnMut(&Conn<A>)) -> Option<usize> {
        let end = start.saturating_add(count).min(self.slab.len());
        for entry in self.slab.get(start..end).unwrap_or(&[]) {
            if let Entry::Live(c) = entry {
                f(c);
            }
        }
        (end < self.slab.len()).then_some(end)
    }

    /// Unindexes, disarms and frees the live slot `index` holding `conn`.
    fn release_slot(&mut self, index: u32, conn: &Conn<A>) {
        let in_hash = self.hasher.hash(&conn.inbound_key());
        let out_hash = conn.outbound_key().map_or(0, |key| self.hasher.hash(&key));
        self.release_slot_hashed(index, conn, in_hash, out_hash);
    }

    /// [`Self::release_slot`] with the hashes of the connection's keys (the
    /// outbound one ignored when replies bypass us).
    fn release_slot_hashed(&mut self, index: u32, conn: &Conn<A>, in_hash: u64, out_hash: u64) {
        self.index.remove(in_hash, index << 1 | Dir::Inbound.bit());
        if conn.mode.replies_via_us() {
            self.index
                .remove(out_hash, index << 1 | Dir::Outbound.bit());
        }
        self.wheel.unlink(&mut self.slab, index);
        self.slab[index as usize] = Entry::Free {
            generation: conn.generation,
        };
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
