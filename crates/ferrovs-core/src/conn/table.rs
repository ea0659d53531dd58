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

use std::fmt;

use super::family::{Endpoint, Family};
use super::free::FreeSlots;
use super::index::FlowIndex;
use super::key::{Dir, FlowHasher, FlowKey, Proto};
use super::persist::TemplateId;
use super::state::{ConnState, TcpDir, TcpState, TimeoutTable, Timeouts};
use super::wheel::{Timed, TimerPos, TimerWheel, MAX_ENTRIES};
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

/// Live connections times this, at most the capacity: lookups start from the
/// home slot ([`ConnTable::first_line`]).
const HOME_FIRST_LOAD: usize = 8;

/// The cache line a lookup starts from, from [`ConnTable::first_line`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FirstLine {
    /// The key's home slot in the slab; the index only when that misses.
    HomeSlot,
    /// The key's index bucket, then the entry it points at.
    IndexBucket,
}

/// A slot a lookup may find its key in, from [`ConnTable::candidate`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Candidate {
    /// `slab_index << 1 | dir`, as in the index.
    value: u32,
    at_home: bool,
}

impl Candidate {
    fn home(value: u32) -> Self {
        Candidate {
            value,
            at_home: true,
        }
    }

    /// Whether the key's home slot holds its connection (the index was not read).
    pub fn at_home(&self) -> bool {
        self.at_home
    }
}

/// What the caller knows when it creates a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NewConn<A: Family> {
    pub proto: Proto,
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
    /// Where the wheel has the connection filed.
    timer: TimerPos,
}

impl<A: Family> Conn<A> {
    pub fn client(&self) -> Endpoint<A> {
        self.ends[0][0]
    }
    pub fn vip(&self) -> Endpoint<A> {
        self.ends[0][1]
    }
    /// The source the real server sees (see [`NewConn::local`]).
    pub fn local(&self) -> Endpoint<A> {
        self.ends[1][1]
    }
    pub fn real(&self) -> Endpoint<A> {
        self.ends[1][0]
    }
    pub fn proto(&self) -> Proto {
        self.proto
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
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
    pub fn service(&self) -> u16 {
        self.service
    }
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
    pub from: ConnState,
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
        })
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

    /// The slot a connection whose key has this hash takes when it is free (see
    /// [`Self::insert_prepared`]). Multiply-shift on the hash's low half: the
    /// index bucket comes from the high half, so the two do not follow each other.
    #[inline(always)]
    fn home_slot(&self, hash: u64) -> usize {
        ((u128::from(hash.rotate_left(32)) * self.slab.len() as u128) >> 64) as usize
    }

    /// Which line a burst's lookups start from: the home slot while the table is
    /// loaded lightly enough that nearly every connection sits in its own (a
    /// table at an eighth of its capacity or less: about 94% do), else the index
    /// bucket, which finds a connection wherever it is. Home first at a higher
    /// load sent too many packets on from a home miss to their bucket and then
    /// their entry, one read after the other (README, "Where the time goes").
    #[inline]
    pub fn first_line(&self) -> FirstLine {
        if (self.len as usize).saturating_mul(HOME_FIRST_LOAD) <= self.slab.len() {
            FirstLine::HomeSlot
        } else {
            FirstLine::IndexBucket
        }
    }

    /// Requests the cache line a lookup of a key with this hash reads first.
    #[inline]
    pub fn request_first_line(&self, hash: u64, first: FirstLine) {
        match first {
            FirstLine::HomeSlot => {
                if let Some(entry) = self.slab.get(self.home_slot(hash)) {
                    prefetch(entry);
                }
            }
            FirstLine::IndexBucket => prefetch(self.index.bucket(hash)),
        }
    }

    /// The slot that most likely holds `key` (with this hash), for
    /// [`Self::lookup_candidate`], once [`Self::request_first_line`]'s line is
    /// in cache: with [`FirstLine::HomeSlot`], the home slot when its connection
    /// has this key (then the index is not read at all; [`Candidate::at_home`]);
    /// else the first slot the index bucket points at with a matching signature,
    /// whose entry is requested here. None when there is no candidate (a miss,
    /// most likely).
    #[inline]
    pub fn candidate(&self, key: &FlowKey<A>, hash: u64, first: FirstLine) -> Option<Candidate> {
        if first == FirstLine::HomeSlot {
            let home = self.home_slot(hash);
            if let Some(Entry::Live(c)) = self.slab.get(home) {
                let home = home as u32;
                if c.matches(Dir::Inbound, key) {
                    return Some(Candidate::home(home << 1 | Dir::Inbound.bit()));
                }
                // A connection whose replies bypass us has no outbound key.
                if c.mode.replies_via_us() && c.matches(Dir::Outbound, key) {
                    return Some(Candidate::home(home << 1 | Dir::Outbound.bit()));
                }
            }
        }
        let value = self.index.first_candidate(hash)?;
        if let Some(entry) = self.slab.get((value >> 1) as usize) {
            prefetch(entry);
        }
        Some(Candidate {
            value,
            at_home: false,
        })
    }

    /// [`Self::lookup_hashed`] that first tries the slot [`Self::candidate`]
    /// suggested, without reading the index again. The answer is the same: the
    /// candidate is taken only if its entry holds this very key, and the index is
    /// searched when it does not (however the table changed in between). The
    /// connection found comes along, so that the caller need not look it up again.
    #[inline]
    pub fn lookup_candidate(
        &self,
        key: &FlowKey<A>,
        hash: u64,
        candidate: Option<Candidate>,
    ) -> Option<(ConnId, Dir, &Conn<A>)> {
        if let Some(Candidate { value, .. }) = candidate {
            if let Some(Entry::Live(c)) = self.slab.get((value >> 1) as usize) {
                let dir = Dir::from_bit(value);
                if c.matches(dir, key) {
                    let id = ConnId {
                        index: value >> 1,
                        generation: c.generation,
                    };
                    return Some((id, dir, c));
                }
            }
        }
        let (id, dir) = self.lookup_hashed(key, hash)?;
        Some((id, dir, self.get(id)?))
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

    /// Takes a free slot for a connection with these key hashes: its inbound
    /// key's home slot if free, else its outbound key's, else the first free
    /// slot after its inbound home. A connection in its home slot is found by
    /// [`Self::candidate`] on one cache line, without the index. The slot's entry
    /// stays `Free` until the caller fills it.
    fn claim_slot(&mut self, in_hash: u64, out_hash: Option<u64>) -> Result<u32, ConnError> {
        // The home entries were requested with the connection (prepare_insert);
        // their bits say the same.
        let free = |slot: usize| matches!(self.slab.get(slot), Some(Entry::Free { .. }));
        let in_home = self.home_slot(in_hash);
        let slot = if free(in_home) {
            in_home
        } else {
            match out_hash.map(|h| self.home_slot(h)) {
                Some(out_home) if free(out_home) => out_home,
                _ => self
                    .free
                    .first_free_from(in_home)
                    .ok_or(ConnError::TableFull)?,
            }
        };
        self.free.take(slot);
        Ok(slot as u32)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::state::tcp_flags::{ACK, FIN, PSH, RST, SYN};
    use crate::conn::wheel::TICK_MS;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    const SEC: u64 = 1000;
    const VIP: Endpoint<Ipv4Addr> = Endpoint::new(Ipv4Addr::new(198, 18, 0, 100), 80);
    const REAL: Endpoint<Ipv4Addr> = Endpoint::new(Ipv4Addr::new(198, 19, 0, 10), 8080);
    const LIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

    fn table(max: usize) -> ConnTable<Ipv4Addr> {
        ConnTable::with_hasher(max, &Timeouts::default(), FlowHasher::with_seed(42)).unwrap()
    }

    fn client(host: u8, port: u16) -> Endpoint<Ipv4Addr> {
        Endpoint::new(Ipv4Addr::new(198, 18, 1, host), port)
    }

    fn conn(mode: Mode, proto: Proto, client: Endpoint<Ipv4Addr>, lport: u16) -> NewConn<Ipv4Addr> {
        NewConn {
            proto,
            mode,
            client,
            vip: VIP,
            local: match mode {
                Mode::FullNat => Endpoint::new(LIP, lport),
                _ => client,
            },
            real: REAL,
            service: 1,
            real_server: 2,
            template: None,
        }
    }

    fn nat(host: u8, port: u16) -> NewConn<Ipv4Addr> {
        conn(Mode::Nat, Proto::Tcp, client(host, port), 0)
    }

    fn in_key(c: &NewConn<Ipv4Addr>) -> FlowKey<Ipv4Addr> {
        c.inbound_key()
    }

    fn out_key(c: &NewConn<Ipv4Addr>) -> FlowKey<Ipv4Addr> {
        c.outbound_key()
    }

    fn expire_all<A: Family>(t: &mut ConnTable<A>, now: u64) -> Vec<ConnId> {
        let mut gone = Vec::new();
        t.expire(now, usize::MAX, |id, _| gone.push(id));
        gone
    }

    #[test]
    fn entry_layout_is_compact() {
        // The free variant hides in the connection's padding; an entry is one
        // cache line (IPv4) or two (IPv6), aligned.
        assert_eq!(size_of::<Conn<Ipv4Addr>>(), 56);
        assert_eq!(size_of::<Entry<Ipv4Addr>>(), 64);
        assert_eq!(align_of::<Entry<Ipv4Addr>>(), 64);
        assert!(size_of::<Entry<Ipv6Addr>>() <= 128);
    }

    #[test]
    fn a_connection_prepared_with_its_first_packet_is_armed_at_that_packets_deadline() {
        // A SYN leads NONE (2 s) to SYN_RECV (60 s): armed at 60 s, it is not
        // re-filed when NONE's 2 s pass. Without the packet, NONE's deadline.
        let mut t = table(16);
        let now = 5 * SEC;
        let syn = t.prepare_insert(nat(1, 1000), Some(SYN));
        let id = t.insert_prepared(&syn, now).unwrap();
        let slot = t.wheel.slot_of(&t.slab, id.index);
        assert_eq!(slot, Some(TimerWheel::slot_for(now + 60 * SEC)));
        t.on_packet(id, Dir::Inbound, SYN, now).unwrap();
        assert_eq!(t.get(id).unwrap().expiry(), now + 60 * SEC);
        assert!(expire_all(&mut t, now + 59 * SEC).is_empty());
        assert_eq!(expire_all(&mut t, now + 61 * SEC), vec![id]);

        let mut t = table(16);
        let plain = t.prepare_insert(nat(2, 1000), None);
        let id = t.insert_prepared(&plain, now).unwrap();
        let slot = t.wheel.slot_of(&t.slab, id.index);
        assert_eq!(slot, Some(TimerWheel::slot_for(now + 2 * SEC)));
        let id3 = t.insert(&nat(3, 1000), now).unwrap();
        let slot = t.wheel.slot_of(&t.slab, id3.index);
        assert_eq!(slot, Some(TimerWheel::slot_for(now + 2 * SEC)));

        // A first packet whose state times out sooner than NONE (SYN_RECV set to
        // 1 s): filed at 1 s, and the packet finds that deadline (no re-filing).
        let short = Timeouts {
            tcp_syn: Duration::from_secs(1),
            ..Timeouts::default()
        };
        let mut t = ConnTable::with_hasher(16, &short, FlowHasher::with_seed(42)).unwrap();
        let syn = t.prepare_insert(nat(1, 1000), Some(SYN));
        let id = t.insert_prepared(&syn, now).unwrap();
        let filed = t.wheel.slot_of(&t.slab, id.index);
        assert_eq!(filed, Some(TimerWheel::slot_for(now + SEC)));
        let timer = t.slab.timer(id.index);
        t.on_packet(id, Dir::Inbound, SYN, now).unwrap();
        assert_eq!(t.slab.timer(id.index), timer, "not re-filed");
        assert_eq!(expire_all(&mut t, now + 1100), vec![id]);
    }

    /// The slot the table puts a connection with this key in when it is free.
    fn home_of(t: &ConnTable<Ipv4Addr>, key: &FlowKey<Ipv4Addr>) -> u32 {
        t.home_slot(t.hasher.hash(key)) as u32
    }

    /// What stage 2 of the burst path learns of `key`, and what it then finds.
    fn candidate_of(
        t: &ConnTable<Ipv4Addr>,
        key: &FlowKey<Ipv4Addr>,
    ) -> (Option<Candidate>, Option<(ConnId, Dir)>) {
        let hash = t.hasher.hash(key);
        let candidate = t.candidate(key, hash, FirstLine::HomeSlot);
        let found = t
            .lookup_candidate(key, hash, candidate)
            .map(|(id, dir, _)| (id, dir));
        (candidate, found)
    }

    #[test]
    fn a_connection_takes_its_home_slot_and_is_found_there_without_the_index() {
        let mut t = table(1000);
        let c = nat(1, 1000);
        let id = t.insert(&c, 0).unwrap();
        assert_eq!(id.index(), home_of(&t, &in_key(&c)));
        let (candidate, found) = candidate_of(&t, &in_key(&c));
        assert!(candidate.unwrap().at_home());
        assert_eq!(found, Some((id, Dir::Inbound)));
        // The reply's key has another home: found through the index.
        let (candidate, found) = candidate_of(&t, &out_key(&c));
        assert!(!candidate.unwrap().at_home());
        assert_eq!(found, Some((id, Dir::Outbound)));
        // A key nobody has: no candidate at all.
        assert_eq!(candidate_of(&t, &in_key(&nat(2, 1000))), (None, None));
        // Removed: the home slot no longer answers.
        t.remove(id).unwrap();
        assert_eq!(candidate_of(&t, &in_key(&c)), (None, None));
    }

    #[test]
    fn lookups_start_at_home_only_in_a_lightly_loaded_table() {
        let mut t = table(80);
        assert_eq!(t.first_line(), FirstLine::HomeSlot, "empty");
        let conns: Vec<_> = (0..11).map(|i| nat(4, 100 + i)).collect();
        let ids: Vec<_> = conns.iter().map(|c| t.insert(c, 0).unwrap()).collect();
        assert_eq!(t.first_line(), FirstLine::IndexBucket, "11 of 80");
        t.remove(ids[10]).unwrap();
        assert_eq!(t.first_line(), FirstLine::HomeSlot, "10 of 80");
        // Starting from the index finds the same connections, never "at home".
        for (c, &id) in conns.iter().zip(&ids).take(10) {
            let hash = t.hasher.hash(&in_key(c));
            let candidate = t.candidate(&in_key(c), hash, FirstLine::IndexBucket);
            assert!(!candidate.unwrap().at_home());
            let found = t.lookup_candidate(&in_key(c), hash, candidate);
            assert_eq!(
                found.map(|(id, dir, _)| (id, dir)),
                Some((id, Dir::Inbound))
            );
        }
    }

    #[test]
    fn with_both_homes_taken_a_connection_takes_the_next_free_slot() {
        // Fill a small table; each connection whose two homes are taken lands in
        // the first free slot after its inbound home, going round past the end.
        const MAX: usize = 16;
        let mut t = table(MAX);
        let mut elsewhere = 0;
        for port in 1..=MAX as u16 {
            let c = nat(7, port);
            let in_home = home_of(&t, &in_key(&c)) as usize;
            let out_home = home_of(&t, &out_key(&c)) as usize;
            let free = |t: &ConnTable<Ipv4Addr>, s: usize| matches!(t.slab[s], Entry::Free { .. });
            let want = if free(&t, in_home) {
                in_home
            } else if free(&t, out_home) {
                out_home
            } else {
                elsewhere += 1;
                (in_home..MAX)
                    .chain(0..in_home)
                    .find(|&s| free(&t, s))
                    .expect("room")
            };
            let id = t.insert(&c, 0).unwrap();
            assert_eq!(id.index() as usize, want, "port {port}");
            assert_eq!(t.lookup(&in_key(&c)), Some((id, Dir::Inbound)));
        }
        assert!(elsewhere > 0, "a full table has connections away from home");
        assert_eq!(t.insert(&nat(8, 1), 0), Err(ConnError::TableFull));
    }

    #[test]
    fn a_taken_home_slot_sends_the_connection_elsewhere_and_the_index_finds_it() {
        // 16 slots: two connections whose inbound keys share a home are easy to find.
        let mut t = table(16);
        let mut by_home: HashMap<u32, NewConn<Ipv4Addr>> = HashMap::new();
        let (first, second) = (1..2000u16)
            .find_map(|port| {
                let c = nat(9, port);
                let home = home_of(&t, &in_key(&c));
                by_home.insert(home, c).map(|earlier| (earlier, c))
            })
            .expect("two keys with one home among 2000");
        let a = t.insert(&first, 0).unwrap();
        let b = t.insert(&second, 0).unwrap();
        assert_eq!(a.index(), home_of(&t, &in_key(&first)));
        assert_ne!(b.index(), a.index());
        // Its outbound key's home if that was free, else any free slot.
        let out_home = home_of(&t, &out_key(&second));
        if out_home != a.index() {
            assert_eq!(b.index(), out_home);
            let (candidate, found) = candidate_of(&t, &out_key(&second));
            assert!(candidate.unwrap().at_home(), "found at its outbound home");
            assert_eq!(found, Some((b, Dir::Outbound)));
        }
        let (candidate, found) = candidate_of(&t, &in_key(&second));
        assert!(!candidate.unwrap().at_home());
        assert_eq!(found, Some((b, Dir::Inbound)));
        // The first one still answers from home.
        let (candidate, found) = candidate_of(&t, &in_key(&first));
        assert!(candidate.unwrap().at_home());
        assert_eq!(found, Some((a, Dir::Inbound)));
    }

    #[test]
    fn a_home_slot_answers_only_for_keys_its_connection_has() {
        // DR connections have no outbound key (replies bypass us): a packet shaped
        // like a reply is not theirs even when its key's home is their slot.
        let mut t = table(8);
        let (c, reply) = (1..5000u16)
            .map(|port| conn(Mode::Dr, Proto::Tcp, client(3, port), 0))
            .map(|c| (c, outbound_key(c.proto, c.real, c.local)))
            .find(|(c, reply)| home_of(&t, &in_key(c)) == home_of(&t, reply))
            .expect("a reply key sharing its connection's home among 5000");
        let id = t.insert(&c, 0).unwrap();
        assert_eq!(id.index(), home_of(&t, &reply));
        let (candidate, found) = candidate_of(&t, &reply);
        assert!(!candidate.is_some_and(|c| c.at_home()));
        assert_eq!(found, None);
        assert_eq!(t.lookup(&reply), None);
    }

    #[test]
    fn slots_are_handed_out_in_random_order_and_all_of_them() {
        // Connections opened one after another do not land in consecutive slots
        // (traffic revisiting flows in opening order must not read the slab front
        // to back), yet every slot is used before the table is full.
        const MAX: usize = 10_000;
        let mut t = table(MAX);
        let mut slots = Vec::with_capacity(MAX);
        for i in 0..MAX {
            let c = nat((i % 250) as u8, 1024 + (i / 250) as u16);
            slots.push(t.insert(&c, 0).expect("room").index());
        }
        assert_eq!(
            t.insert(&nat(251, 1), 0),
            Err(ConnError::TableFull),
            "full after exactly MAX"
        );
        let ascending = slots.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(
            ascending < MAX / 100,
            "{ascending} consecutive slots in a row"
        );
        let mut sorted = slots.clone();
        sorted.sort_unstable();
        assert!(
            sorted.iter().copied().eq(0..MAX as u32),
            "every slot exactly once"
        );
        // Emptied and filled again with other keys: again every slot exactly once.
        for (i, &slot) in slots.iter().enumerate() {
            let c = nat((i % 250) as u8, 1024 + (i / 250) as u16);
            let id = t.lookup(&in_key(&c)).expect("live").0;
            assert_eq!(id.index(), slot);
            t.remove(id).unwrap();
        }
        let mut refilled: Vec<u32> = (0..MAX)
            .map(|i| {
                let c = nat((i % 250) as u8, 30_000 + (i / 250) as u16);
                t.insert(&c, 0).expect("room").index()
            })
            .collect();
        assert_eq!(t.insert(&nat(251, 1), 0), Err(ConnError::TableFull));
        refilled.sort_unstable();
        assert!(refilled.iter().copied().eq(0..MAX as u32));
        // Where a connection lands follows from its hash: another seed, other
        // slots; the same seed, the same slots.
        let first_slots = |seed: u64| -> Vec<u32> {
            let mut t = ConnTable::<Ipv4Addr>::with_hasher(
                MAX,
                &Timeouts::default(),
                FlowHasher::with_seed(seed),
            )
            .unwrap();
            (0..100)
                .map(|i| t.insert(&nat(i as u8, 1024), 0).unwrap().index())
                .collect()
        };
        assert_eq!(first_slots(7), first_slots(7));
        assert_ne!(first_slots(7), first_slots(8));
    }

    #[test]
    fn memory_bytes_per_connection() {
        // Slab, free bitmap, index and wheel, from their allocation sizes
        // (capacity times element size), at sizes that round well and badly to a
        // power of two.
        for max in [1_000, 65_536, 100_000, 1_000_000] {
            let t = table(max);
            let slab = t.slab.len() * size_of::<Entry<Ipv4Addr>>();
            let free = t.free.memory_bytes();
            assert!(free <= max / 8 + max / 512 + 16, "a bit a slot: {free}");
            let index = t.index.memory_bytes();
            let wheel = t.wheel.memory_bytes();
            assert_eq!(t.memory_bytes(), slab + free + index + wheel);
            let per_conn = t.memory_bytes() as f64 / max as f64;
            let per_conn_large = (slab + free + index) as f64 / max as f64;
            assert!(
                per_conn_large <= 128.0,
                "max {max}: {per_conn_large:.1} bytes/conn"
            );
            if max >= 65_536 {
                // The fixed 64 KiB of wheel slots amortises away.
                assert!(per_conn <= 128.0, "max {max}: {per_conn:.1} bytes/conn");
            }
        }
    }

    #[test]
    fn index_keeps_working_under_churn_at_full_table() {
        // A full table replaced connection by connection, 100 times over: every
        // insert finds room in the index, nothing grows, every key stays found.
        const MAX: usize = 2_000;
        let mut t = table(MAX);
        let bytes = t.memory_bytes();
        let mut rng = Rng(77);
        let mut ids = Vec::with_capacity(MAX);
        let mut port = 0u32;
        let mut next_conn = |rng: &mut Rng| {
            port += 1;
            let c = client((port >> 16) as u8, port as u16);
            conn(Mode::FullNat, Proto::Tcp, c, rng.next() as u16)
        };
        while ids.len() < MAX {
            if let Ok(id) = t.insert(&next_conn(&mut rng), 0) {
                ids.push(id);
            }
        }
        for _ in 0..200_000 {
            let slot = rng.below(MAX as u64) as usize;
            t.remove(ids[slot]).unwrap();
            loop {
                if let Ok(id) = t.insert(&next_conn(&mut rng), 0) {
                    ids[slot] = id;
                    break;
                }
            }
        }
        assert_eq!(t.len(), MAX);
        assert_eq!(t.index.len(), 2 * MAX);
        assert_eq!(t.memory_bytes(), bytes);
        for &id in &ids {
            let c = *t.get(id).unwrap();
            assert_eq!(t.lookup(&c.inbound_key()), Some((id, Dir::Inbound)));
            assert_eq!(
                t.lookup(&c.outbound_key().unwrap()),
                Some((id, Dir::Outbound))
            );
        }
    }

    #[test]
    fn nat_lookup_both_directions() {
        let mut t = table(16);
        let c = nat(7, 40000);
        let id = t.insert(&c, 0).unwrap();
        assert_eq!(t.lookup(&in_key(&c)), Some((id, Dir::Inbound)));
        assert_eq!(t.lookup(&out_key(&c)), Some((id, Dir::Outbound)));
        // The NAT reply goes from the real server to the client itself.
        assert_eq!(out_key(&c).dst, c.client.addr);
        // Near misses.
        let k = in_key(&c);
        for miss in [
            FlowKey { sport: 40001, ..k },
            FlowKey { dport: 81, ..k },
            FlowKey {
                proto: Proto::Udp,
                ..k
            },
            FlowKey {
                src: Ipv4Addr::new(198, 18, 1, 8),
                ..k
            },
            FlowKey {
                dst: Ipv4Addr::new(198, 18, 0, 101),
                ..k
            },
        ] {
            assert_eq!(t.lookup(&miss), None, "{miss:?}");
        }
        // Pre-hashed lookup, and a wrong hash only misses.
        let h = k.hash_with(t.hasher());
        assert_eq!(t.lookup_hashed(&k, h), Some((id, Dir::Inbound)));
        assert_eq!(t.lookup_hashed(&k, h ^ 1), None);
        assert_eq!(t.lookup_hashed(&k, h ^ (1 << 63)), None);
        let got = t.get(id).unwrap();
        assert_eq!((got.client(), got.vip(), got.real()), (c.client, VIP, REAL));
        assert_eq!(got.outbound_key(), Some(out_key(&c)));
    }

    #[test]
    fn fullnat_lookup_by_local_address() {
        let mut t = table(16);
        let c = conn(Mode::FullNat, Proto::Tcp, client(7, 40000), 5000);
        let id = t.insert(&c, 0).unwrap();
        let reply = FlowKey::new(Proto::Tcp, REAL.addr, REAL.port, LIP, 5000);
        assert_eq!(t.lookup(&reply), Some((id, Dir::Outbound)));
        assert_eq!(t.get(id).unwrap().local(), Endpoint::new(LIP, 5000));
        // A reply addressed to the client (NAT-style) is not this connection's.
        assert_eq!(
            t.lookup(&FlowKey::new(
                Proto::Tcp,
                REAL.addr,
                REAL.port,
                c.client.addr,
                40000
            )),
            None
        );
    }

    #[test]
    fn dr_and_tunnel_are_inbound_only() {
        for mode in [Mode::Dr, Mode::Tunnel] {
            let mut t = table(4);
            let c = conn(mode, Proto::Tcp, client(9, 1234), 0);
            let id = t.insert(&c, 0).unwrap();
            assert_eq!(t.lookup(&in_key(&c)), Some((id, Dir::Inbound)));
            assert_eq!(t.lookup(&out_key(&c)), None);
            assert_eq!(t.get(id).unwrap().outbound_key(), None);
            assert_eq!(t.index.len(), 1);
            t.remove(id).unwrap();
            assert_eq!(t.index.len(), 0);
        }
    }

    #[test]
    fn duplicate_keys_are_refused_without_change() {
        let mut t = table(8);
        let a = conn(Mode::FullNat, Proto::Tcp, client(1, 1000), 5000);
        let id = t.insert(&a, 0).unwrap();
        assert_eq!(t.insert(&a, 1), Err(ConnError::InboundKeyExists));
        // Another client on the same local port: the reply would be ambiguous.
        let b = conn(Mode::FullNat, Proto::Tcp, client(2, 1000), 5000);
        assert_eq!(t.insert(&b, 1), Err(ConnError::OutboundKeyExists));
        // NAT: two VIPs sending one client's port to one real server collide too.
        let vip = |last| Endpoint::new(Ipv4Addr::new(198, 18, 0, last), 80);
        let c = NewConn {
            vip: vip(101),
            ..nat(1, 1000)
        };
        assert!(t.insert(&c, 1).is_ok());
        let d = NewConn {
            vip: vip(102),
            ..nat(1, 1000)
        };
        assert_eq!(t.insert(&d, 1), Err(ConnError::OutboundKeyExists));
        // The same 5-tuple in UDP is a different flow.
        assert!(t
            .insert(
                &NewConn {
                    proto: Proto::Udp,
                    ..a
                },
                1
            )
            .is_ok());
        assert_eq!(t.len(), 3);
        assert_eq!(t.index.len(), 6);
        assert_eq!(t.lookup(&in_key(&a)), Some((id, Dir::Inbound)));
    }

    #[test]
    fn full_table_refuses_and_keeps_existing_flows() {
        let mut t = table(3);
        let conns: Vec<_> = (1..=3).map(|h| nat(h, 1000)).collect();
        let ids: Vec<_> = conns.iter().map(|c| t.insert(c, 0).unwrap()).collect();
        t.on_packet(ids[0], Dir::Inbound, SYN, 0).unwrap();
        let before: Vec<_> = ids.iter().map(|&id| *t.get(id).unwrap()).collect();
        assert_eq!(t.insert(&nat(4, 1000), 5), Err(ConnError::TableFull));
        assert_eq!(t.len(), 3);
        for (i, c) in conns.iter().enumerate() {
            assert_eq!(t.lookup(&in_key(c)), Some((ids[i], Dir::Inbound)));
            assert_eq!(t.lookup(&out_key(c)), Some((ids[i], Dir::Outbound)));
            assert_eq!(*t.get(ids[i]).unwrap(), before[i]);
        }
        assert_eq!(t.lookup(&in_key(&nat(4, 1000))), None);
        // Room again after a removal.
        t.remove(ids[1]).unwrap();
        assert!(t.insert(&nat(4, 1000), 5).is_ok());
    }

    #[test]
    fn zero_capacity_table() {
        let mut t = table(0);
        assert_eq!(t.insert(&nat(1, 1), 0), Err(ConnError::TableFull));
        assert_eq!(t.expire(1_000_000, 10, |_, _| {}), 0);
        assert_eq!(t.iter().count(), 0);
    }

    #[test]
    fn capacity_limit_is_an_error() {
        let r = ConnTable::<Ipv4Addr>::new(MAX_ENTRIES + 1, &Timeouts::default());
        assert_eq!(r.err(), Some(ConnError::CapacityTooLarge));
        assert_eq!(ConnError::TableFull.reason(), "conn_table_full");
    }

    #[test]
    fn freed_slots_are_reused_and_stale_ids_caught() {
        let mut t = table(4);
        let a = t.insert(&nat(1, 1), 0).unwrap();
        let b = t.insert(&nat(2, 2), 0).unwrap();
        assert_ne!(a.index(), b.index());
        let removed = t.remove(a).unwrap();
        assert_eq!(removed.client(), client(1, 1));
        assert_eq!(t.lookup(&in_key(&nat(1, 1))), None);
        // The slot comes back (here as the home slot of the next connection),
        // under a new generation.
        let third = (3..1000u16)
            .map(|port| nat(3, port))
            .find(|c| home_of(&t, &in_key(c)) == a.index())
            .expect("a key homed at the freed slot");
        let c = t.insert(&third, 0).unwrap();
        assert_eq!(c.index(), a.index());
        assert_ne!(c, a);
        assert_eq!(t.get(a), None);
        assert_eq!(
            t.on_packet(a, Dir::Inbound, SYN, 1),
            Err(ConnError::UnknownConn)
        );
        assert_eq!(t.remove(a), Err(ConnError::UnknownConn));
        // The stale id left the new occupant alone.
        assert_eq!(t.get(c).unwrap().state(), ConnState::Tcp(TcpState::None));
        // Ids past the slab are unknown, not a panic.
        let bogus = ConnId {
            index: 999,
            generation: 1,
        };
        assert_eq!(t.get(bogus), None);
        assert_eq!(
            t.on_packet(bogus, Dir::Inbound, ACK, 1),
            Err(ConnError::UnknownConn)
        );
        assert_eq!(t.remove(bogus), Err(ConnError::UnknownConn));
        // Every slot can be filled and emptied again.
        let more: Vec<_> = (10..12).map(|h| t.insert(&nat(h, 1), 0).unwrap()).collect();
        assert_eq!(t.len(), 4);
        for id in more.into_iter().chain([b, c]) {
            t.remove(id).unwrap();
        }
        assert!(t.is_empty());
        assert_eq!(t.index.len(), 0);
    }

    /// Feeds `(dir, flags, expected state, expected activity change)` to a new
    /// connection of `mode` and checks state, change and deadline at each step.
    fn drive(mode: Mode, steps: &[(Dir, u8, TcpState, i8)]) {
        let timeouts = Timeouts::default();
        let mut t = table(2);
        let id = t
            .insert(&conn(mode, Proto::Tcp, client(1, 1000), 7000), 0)
            .unwrap();
        assert_eq!(t.get(id).unwrap().expiry(), 2 * SEC, "NONE lasts 2 s");
        assert!(!t.get(id).unwrap().is_active());
        for (i, &(dir, flags, want, activity)) in steps.iter().enumerate() {
            let now = (i as u64 + 1) * SEC;
            let change = t.on_packet(id, dir, flags, now).unwrap();
            let c = t.get(id).unwrap();
            assert_eq!(c.state(), ConnState::Tcp(want), "{mode} step {i}");
            assert_eq!(change.to, ConnState::Tcp(want));
            let got = i8::from(change.activated()) - i8::from(change.deactivated());
            assert_eq!(got, activity, "{mode} step {i}: {change:?}");
            let timeout = timeouts.for_state(c.state()).as_millis() as u64;
            assert_eq!(c.expiry(), now + timeout, "{mode} step {i} timeout");
            assert_eq!(c.expires_in(now), timeout);
        }
    }

    #[test]
    fn nat_handshake_and_close_with_activity() {
        use Dir::{Inbound as I, Outbound as O};
        use TcpState::*;
        for mode in [Mode::Nat, Mode::FullNat] {
            drive(
                mode,
                &[
                    (I, SYN, SynRecv, 1),
                    (I, SYN, SynRecv, 0), // retransmitted SYN
                    (O, SYN | ACK, SynRecv, 0),
                    (I, ACK, Established, 0),
                    (O, ACK | PSH, Established, 0),
                    (I, FIN | ACK, CloseWait, -1),
                    (O, FIN | ACK, TimeWait, 0),
                    (I, ACK, TimeWait, 0),
                    (I, SYN, SynRecv, 1), // port reuse
                ],
            );
        }
    }

    #[test]
    fn dr_handshake_and_close_input_only() {
        use Dir::Inbound as I;
        use TcpState::*;
        for mode in [Mode::Dr, Mode::Tunnel] {
            drive(
                mode,
                &[
                    (I, SYN, SynRecv, 1),
                    (I, ACK, Established, 0),
                    (I, FIN | ACK, FinWait, -1), // INPUT_ONLY: not CLOSE_WAIT
                    (I, ACK, FinWait, 0),
                    (I, RST, Close, 0),
                ],
            );
        }
    }

    #[test]
    fn rst_from_either_side() {
        use Dir::{Inbound as I, Outbound as O};
        use TcpState::*;
        drive(
            Mode::Nat,
            &[
                (I, SYN, SynRecv, 1),
                (I, ACK, Established, 0),
                (I, RST, Close, -1),
            ],
        );
        drive(
            Mode::Nat,
            &[
                (I, SYN, SynRecv, 1),
                (I, ACK, Established, 0),
                (O, RST, Close, -1),
            ],
        );
        // The server refusing the connection.
        drive(
            Mode::Nat,
            &[(I, SYN, SynRecv, 1), (O, RST | ACK, Close, -1)],
        );
    }

    #[test]
    fn udp_has_one_state_and_the_udp_timeout() {
        let mut t = table(2);
        let id = t
            .insert(&conn(Mode::Nat, Proto::Udp, client(1, 53), 0), 0)
            .unwrap();
        let c = t.get(id).unwrap();
        assert_eq!(
            (c.state(), c.state_name(), c.expiry()),
            (ConnState::Udp, "UDP", 300 * SEC)
        );
        let change = t.on_packet(id, Dir::Outbound, 0xff, 10 * SEC).unwrap();
        assert_eq!(
            change,
            StateChange {
                from: ConnState::Udp,
                to: ConnState::Udp
            }
        );
        assert!(!change.activated() && !change.deactivated());
        assert_eq!(t.get(id).unwrap().expiry(), 310 * SEC);
    }

    #[test]
    fn configured_timeouts_apply_per_state() {
        let timeouts = Timeouts {
            tcp_established: Duration::from_secs(7),
            tcp_syn: Duration::from_secs(3),
            tcp_fin: Duration::from_secs(4),
            tcp_time_wait: Duration::from_secs(5),
            tcp_close: Duration::from_secs(1),
            tcp_close_wait: Duration::from_secs(6),
            tcp_last_ack: Duration::from_secs(2),
            udp: Duration::from_secs(9),
        };
        let mut t =
            ConnTable::<Ipv4Addr>::with_hasher(4, &timeouts, FlowHasher::with_seed(1)).unwrap();
        let id = t.insert(&nat(1, 1), 0).unwrap();
        let mut expect = |dir: Dir, flags: u8, secs: u64| {
            t.on_packet(id, dir, flags, 100 * SEC).unwrap();
            assert_eq!(t.get(id).unwrap().expiry(), (100 + secs) * SEC);
        };
        // (No IPVS transition enters LAST_ACK; its timeout is configurable anyway,
        // as in IPVS.)
        expect(Dir::Inbound, SYN, 3);
        expect(Dir::Inbound, ACK, 7);
        expect(Dir::Outbound, FIN, 4); // FIN_WAIT
        expect(Dir::Inbound, FIN, 5); // TIME_WAIT
        expect(Dir::Inbound, SYN, 3);
        expect(Dir::Inbound, ACK, 7);
        expect(Dir::Inbound, FIN, 6); // CLOSE_WAIT
        expect(Dir::Outbound, RST, 1); // CLOSE
        expect(Dir::Outbound, SYN, 120); // SYN_SENT: IPVS's fixed value
        let udp = t
            .insert(&conn(Mode::Nat, Proto::Udp, client(2, 2), 0), 0)
            .unwrap();
        assert_eq!(t.get(udp).unwrap().expiry(), 9 * SEC);
        assert_eq!(t.timeouts(), &timeouts);
    }

    #[test]
    fn set_timeouts_applies_from_the_next_packet() {
        let mut t = table(2);
        let id = t
            .insert(&conn(Mode::Nat, Proto::Udp, client(1, 1), 0), 0)
            .unwrap();
        t.set_timeouts(&Timeouts {
            udp: Duration::from_secs(10),
            ..Timeouts::default()
        });
        assert_eq!(t.get(id).unwrap().expiry(), 300 * SEC);
        t.on_packet(id, Dir::Inbound, 0, SEC).unwrap();
        assert_eq!(t.get(id).unwrap().expiry(), 11 * SEC);
        // The shorter deadline was re-filed at once: it expires on time.
        assert_eq!(expire_all(&mut t, 11 * SEC), [id]);
    }

    #[test]
    fn expiry_in_deadline_order_with_budget() {
        let mut t = table(8);
        // Deadlines: UDP 300 s, TCP NONE 2 s, SYN_RECV 60 s, ESTABLISHED 900 s,
        // CLOSE 10 s.
        let udp = t
            .insert(&conn(Mode::Nat, Proto::Udp, client(1, 1), 0), 0)
            .unwrap();
        let none = t.insert(&nat(2, 2), 0).unwrap();
        let syn = t.insert(&nat(3, 3), 0).unwrap();
        t.on_packet(syn, Dir::Inbound, SYN, 0).unwrap();
        let est = t.insert(&nat(4, 4), 0).unwrap();
        t.on_packet(est, Dir::Inbound, SYN, 0).unwrap();
        t.on_packet(est, Dir::Inbound, ACK, 0).unwrap();
        let close = t.insert(&nat(5, 5), 0).unwrap();
        t.on_packet(close, Dir::Inbound, SYN, 0).unwrap();
        t.on_packet(close, Dir::Outbound, RST, 0).unwrap();

        // Called once a second, expiry follows the deadlines exactly. (Re-filing
        // the refreshed entries filed at 2 s also costs budget.)
        let mut order = Vec::new();
        for now in (0..=1000 * SEC).step_by(SEC as usize) {
            t.expire(now, 16, |id, c| {
                assert_eq!(c.expiry(), now);
                order.push(id);
            });
        }
        assert_eq!(order, [none, close, syn, udp, est]);
        assert!(t.is_empty());
    }

    #[test]
    fn budget_bounds_each_expire_call() {
        let mut t = table(8);
        let ids: Vec<_> = (1..=5).map(|h| t.insert(&nat(h, 1), 0).unwrap()).collect();
        let mut calls = Vec::new();
        while !t.is_empty() {
            calls.push(t.expire(2 * SEC, 2, |_, _| {}));
        }
        assert_eq!(calls, [2, 2, 1]);
        assert_eq!(t.expire(2 * SEC, 2, |_, _| {}), 0);
        // A budget of zero does nothing.
        let id = t.insert(&nat(1, 1), 0).unwrap();
        assert_eq!(t.expire(10 * SEC, 0, |_, _| {}), 0);
        assert_eq!(t.get(id).map(|c| c.client()), Some(client(1, 1)));
        assert_ne!(id, ids[0]);
    }

    #[test]
    fn expires_on_time_and_hands_over_before_removal() {
        let mut t = table(4);
        let c = nat(1, 1);
        let id = t.insert(&c, 0).unwrap();
        t.on_packet(id, Dir::Inbound, SYN, 0).unwrap(); // SYN_RECV: 60 s
        assert_eq!(expire_all(&mut t, 60 * SEC - 1), []);
        let mut seen = None;
        let n = t.expire(60 * SEC, 16, |gone, conn| {
            seen = Some((
                gone,
                conn.real_server(),
                conn.is_active(),
                conn.state_name(),
            ));
        });
        assert_eq!(n, 1);
        // Active when handed over: the caller decrements the active count.
        assert_eq!(seen, Some((id, 2, true, "SYN_RECV")));
        assert!(t.is_empty());
        assert_eq!(t.lookup(&in_key(&c)), None);
        assert_eq!(t.lookup(&out_key(&c)), None);
        assert_eq!(t.get(id), None);
    }

    #[test]
    fn refreshed_flow_survives_its_original_deadline() {
        let mut t = table(4);
        let busy = t
            .insert(&conn(Mode::Nat, Proto::Udp, client(1, 1), 0), 0)
            .unwrap();
        let idle = t
            .insert(&conn(Mode::Nat, Proto::Udp, client(2, 2), 0), 0)
            .unwrap();
        t.on_packet(busy, Dir::Inbound, 0, 200 * SEC).unwrap();
        assert_eq!(expire_all(&mut t, 300 * SEC), [idle]);
        assert_eq!(t.get(busy).unwrap().expiry(), 500 * SEC);
        assert_eq!(expire_all(&mut t, 500 * SEC - 1), []);
        assert_eq!(expire_all(&mut t, 500 * SEC), [busy]);
    }

    #[test]
    fn shorter_timeout_takes_effect_immediately() {
        let mut t = table(2);
        let id = t.insert(&nat(1, 1), 0).unwrap();
        t.on_packet(id, Dir::Inbound, SYN, 0).unwrap();
        t.on_packet(id, Dir::Inbound, ACK, 0).unwrap(); // 900 s
        t.on_packet(id, Dir::Outbound, RST, 5 * SEC).unwrap(); // CLOSE: 10 s
        assert_eq!(expire_all(&mut t, 15 * SEC - 1), []);
        assert_eq!(expire_all(&mut t, 15 * SEC), [id]);
    }

    #[test]
    fn iter_lists_live_connections() {
        let mut t = table(8);
        let ids: Vec<_> = (1..=5).map(|h| t.insert(&nat(h, 9), 0).unwrap()).collect();
        t.remove(ids[2]).unwrap();
        let listed: Vec<_> = t.iter().map(|(id, c)| (id, c.client())).collect();
        // In slot order, which is not the order of opening (see home_slot).
        let mut want: Vec<_> = [0, 1, 3, 4]
            .iter()
            .map(|&i| (ids[i], client(i as u8 + 1, 9)))
            .collect();
        want.sort_by_key(|(id, _)| id.index());
        assert_eq!(listed, want);
        assert_eq!((t.len(), t.capacity()), (4, 8));
    }

    #[test]
    fn template_id_is_carried() {
        let mut t = table(2);
        let id = t
            .insert(
                &NewConn {
                    template: Some(TemplateId(17)),
                    ..nat(1, 1)
                },
                0,
            )
            .unwrap();
        assert_eq!(t.get(id).unwrap().template(), Some(TemplateId(17)));
        let other = t.insert(&nat(2, 2), 0).unwrap();
        assert_eq!(t.get(other).unwrap().template(), None);
    }

    #[test]
    fn ipv6_table_works_the_same() {
        let mut t: ConnTable<Ipv6Addr> =
            ConnTable::with_hasher(4, &Timeouts::default(), FlowHasher::with_seed(3)).unwrap();
        let ep = |s: &str, port| Endpoint::new(s.parse::<Ipv6Addr>().unwrap(), port);
        let c = NewConn {
            proto: Proto::Tcp,
            mode: Mode::FullNat,
            client: ep("2001:2::1", 40000),
            vip: ep("2001:2:0:1::100", 443),
            local: ep("2001:2:0:2::2", 6000),
            real: ep("2001:2:0:2::10", 8443),
            service: 0,
            real_server: 0,
            template: None,
        };
        let id = t.insert(&c, 0).unwrap();
        assert_eq!(t.lookup(&c.inbound_key()), Some((id, Dir::Inbound)));
        assert_eq!(t.lookup(&c.outbound_key()), Some((id, Dir::Outbound)));
        assert_eq!(t.get(id).unwrap().client().to_string(), "[2001:2::1]:40000");
        assert_eq!(expire_all(&mut t, 2 * SEC), [id]);
    }

    /// xorshift64*: a tiny deterministic PRNG for the model test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[derive(Clone, Copy, Debug)]
    struct Model {
        new: NewConn<Ipv4Addr>,
        state: ConnState,
        expiry: u64,
        new_expiry_at_insert: u64,
    }

    /// Random inserts, packets, lookups, removals and expiries against a HashMap
    /// model. Small address and port spaces force key collisions, a small table
    /// forces TableFull, short timeouts force expiry and lazy refresh.
    #[test]
    fn randomised_against_a_model() {
        let timeouts = Timeouts {
            tcp_established: Duration::from_secs(30),
            tcp_syn: Duration::from_secs(4),
            tcp_fin: Duration::from_secs(6),
            tcp_time_wait: Duration::from_secs(5),
            tcp_close: Duration::from_secs(1),
            tcp_close_wait: Duration::from_secs(3),
            tcp_last_ack: Duration::from_secs(2),
            udp: Duration::from_secs(20),
        };
        let table_ms = TimeoutTable::new(&timeouts);
        const MAX: usize = 24;
        let mut t =
            ConnTable::<Ipv4Addr>::with_hasher(MAX, &timeouts, FlowHasher::with_seed(9)).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut live: HashMap<ConnId, Model> = HashMap::new();
        let mut dead: Vec<ConnId> = Vec::new();
        let mut now = 1_000_000u64;
        let flag_choices = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, 0];
        // Outcomes seen, so the test proves it exercised every path.
        let mut seen: HashMap<&str, usize> = HashMap::new();

        for step in 0..20_000 {
            now += rng.below(700);
            match rng.below(100) {
                // Insert.
                0..=29 => {
                    let mode =
                        [Mode::Nat, Mode::FullNat, Mode::Dr, Mode::Tunnel][rng.below(4) as usize];
                    let proto = if rng.below(4) == 0 {
                        Proto::Udp
                    } else {
                        Proto::Tcp
                    };
                    let cl = client(rng.below(12) as u8, 1000 + rng.below(8) as u16);
                    let new = conn(mode, proto, cl, 5000 + rng.below(40) as u16);
                    let in_clash = live
                        .values()
                        .any(|m| m.new.inbound_key() == new.inbound_key());
                    let out_clash = mode.replies_via_us()
                        && live.values().any(|m| {
                            m.new.mode.replies_via_us()
                                && m.new.outbound_key() == new.outbound_key()
                        });
                    let want = if live.len() == MAX {
                        Err(ConnError::TableFull)
                    } else if in_clash {
                        Err(ConnError::InboundKeyExists)
                    } else if out_clash {
                        Err(ConnError::OutboundKeyExists)
                    } else {
                        Ok(())
                    };
                    let got = t.insert(&new, now);
                    assert_eq!(got.map(|_| ()), want, "step {step}: insert {new:?}");
                    *seen
                        .entry(got.map_or_else(|e| e.reason(), |_| "inserted"))
                        .or_default() += 1;
                    if let Ok(id) = got {
                        let state = match proto {
                            Proto::Tcp => ConnState::Tcp(TcpState::None),
                            Proto::Udp => ConnState::Udp,
                        };
                        let expiry = now + table_ms.ms(state);
                        let m = Model {
                            new,
                            state,
                            expiry,
                            new_expiry_at_insert: expiry,
                        };
                        assert!(live.insert(id, m).is_none());
                    }
                }
                // A packet on a live connection.
                30..=64 => {
                    let Some((&id, &m)) = live
                        .iter()
                        .nth(rng.below(live.len().max(1) as u64) as usize)
                    else {
                        continue;
                    };
                    let dir = if m.new.mode.replies_via_us() && rng.below(2) == 0 {
                        Dir::Outbound
                    } else {
                        Dir::Inbound
                    };
                    let flags = flag_choices[rng.below(flag_choices.len() as u64) as usize];
                    let to = match m.state {
                        ConnState::Tcp(s) => {
                            ConnState::Tcp(s.next(tcp_dir(m.new.mode, dir), flags))
                        }
                        ConnState::Udp => ConnState::Udp,
                    };
                    let change = t.on_packet(id, dir, flags, now).unwrap();
                    assert_eq!(change, StateChange { from: m.state, to }, "step {step}");
                    let e = live.get_mut(&id).unwrap();
                    e.state = to;
                    e.expiry = now + table_ms.ms(to);
                }
                // Lookups: both keys of a live connection, and random keys.
                65..=79 => {
                    if let Some((&id, m)) = live
                        .iter()
                        .nth(rng.below(live.len().max(1) as u64) as usize)
                    {
                        assert_eq!(t.lookup(&m.new.inbound_key()), Some((id, Dir::Inbound)));
                        let out = t.lookup(&m.new.outbound_key());
                        if m.new.mode.replies_via_us() {
                            assert_eq!(out, Some((id, Dir::Outbound)));
                        } else {
                            assert!(out.is_none_or(|(other, _)| other != id));
                        }
                    }
                    let probe = nat(rng.below(12) as u8, 1000 + rng.below(8) as u16);
                    let want = live
                        .iter()
                        .find(|(_, m)| m.new.inbound_key() == probe.inbound_key())
                        .map(|(&id, _)| (id, Dir::Inbound));
                    assert_eq!(t.lookup(&probe.inbound_key()), want, "step {step}");
                }
                // Removal of a live or a stale id.
                80..=87 => {
                    if rng.below(4) == 0 && !dead.is_empty() {
                        let id = dead[rng.below(dead.len() as u64) as usize];
                        if !live.contains_key(&id) {
                            assert_eq!(t.remove(id), Err(ConnError::UnknownConn));
                            *seen.entry("stale_id").or_default() += 1;
                        }
                    } else if let Some(&id) = live
                        .keys()
                        .nth(rng.below(live.len().max(1) as u64) as usize)
                    {
                        let m = live.remove(&id).unwrap();
                        let got = t.remove(id).unwrap();
                        assert_eq!((got.state(), got.expiry()), (m.state, m.expiry));
                        dead.push(id);
                    }
                }
                // Expiry, sometimes with a small budget.
                _ => {
                    let budget = if rng.below(2) == 0 {
                        usize::MAX
                    } else {
                        rng.below(4) as usize
                    };
                    let mut gone = Vec::new();
                    let n = t.expire(now, budget, |id, c| gone.push((id, *c)));
                    assert_eq!(n, gone.len());
                    assert!(n <= budget);
                    *seen.entry("expired").or_default() += n;
                    for (id, c) in &gone {
                        let m = live
                            .remove(id)
                            .expect("expired a connection the model lacks");
                        if m.expiry > m.new_expiry_at_insert {
                            *seen.entry("expired_after_refresh").or_default() += 1;
                        }
                        assert_eq!((c.state(), c.expiry()), (m.state, m.expiry));
                        // Due, at most one tick late, never early.
                        assert!(m.expiry <= now, "step {step}: expired early");
                        dead.push(*id);
                    }
                    if budget == usize::MAX {
                        for (id, m) in &live {
                            assert!(
                                m.expiry.div_ceil(TICK_MS) * TICK_MS > now,
                                "step {step}: {id:?} due at {} still live at {now}",
                                m.expiry
                            );
                        }
                    }
                }
            }
            assert_eq!(t.len(), live.len(), "step {step}");
            if step % 500 == 0 {
                let mut listed: Vec<_> = t
                    .iter()
                    .map(|(id, c)| (id, c.state(), c.expiry()))
                    .collect();
                let mut want: Vec<_> = live
                    .iter()
                    .map(|(&id, m)| (id, m.state, m.expiry))
                    .collect();
                listed.sort_by_key(|x| x.0.index());
                want.sort_by_key(|x| x.0.index());
                assert_eq!(listed, want, "step {step}");
                let keys: usize = live
                    .values()
                    .map(|m| 1 + usize::from(m.new.mode.replies_via_us()))
                    .sum();
                assert_eq!(t.index.len(), keys);
            }
        }
        for outcome in [
            "inserted",
            "conn_table_full",
            "conn_inbound_key_exists",
            "conn_outbound_key_exists",
            "expired",
            "expired_after_refresh",
            "stale_id",
        ] {
            assert!(
                seen.get(outcome).copied().unwrap_or(0) > 10,
                "{outcome}: {seen:?}"
            );
        }
        // Drain: everything goes eventually.
        now += 3_600_000;
        expire_all(&mut t, now);
        assert!(t.is_empty());
        assert_eq!(t.index.len(), 0);
        assert_eq!(t.wheel.armed(), 0);
    }
}
