//! The hash index of the connection table, whose slots are the connections'
//! per-direction *records*: everything an established packet needs, found on the
//! cache line its lookup probes.
//!
//! A record holds the key of one direction (the packet's source and destination
//! endpoints and protocol), what that direction's packets are rewritten to, the
//! real server's counter slot, the connection's state, the direction, the
//! forwarding lane, the time of the direction's last packet and the slot of the
//! connection's cold entry (in the table's slab: generation, persistence template,
//! timer, settled deadline). An IPv4 record is 32 bytes, two to a 64-byte bucket,
//! so a packet whose record sits in its home bucket reads that one line and, unless
//! its packet changes the connection's state, writes only its own record.
//!
//! An IPv6 record keeps one of the two endpoints its packets are rewritten to
//! ([`RewriteTo`]): the one NAT, DR and TUNNEL change (the real server inbound, the
//! VIP outbound). The other is the packet's own (the client), or for FULLNAT and
//! NAT64 the other direction's key holds it. So an IPv6 record is 64 bytes, two to
//! a 128-byte bucket, instead of 80 in a three-line bucket.
//!
//! Layout: a fixed array of buckets of [`PER_BUCKET`] records, and beside it one
//! byte per bucket counting the keys that probed past it (`overflow`, as in
//! folly's F14), and a bit per bucket set while that count is not zero
//! (`spilled`). A key's home bucket comes from the hash by multiply-shift, so the
//! bucket count need not be a power of two. A full home bucket spills to the next
//! (linear probing by bucket: the next line); a lookup that does not find its key
//! in a bucket reads that bucket's bit and stops at zero, so removals need no
//! tombstones. A count that reaches 255 stays there (a lookup then reads one
//! bucket more than it must, never one less). Records never move once placed, so
//! the cold entry keeps their positions. The index is sized once for the most
//! keys it will hold at a load of at most [`MAX_LOAD_PERCENT`].
//!
//! Lookups read the bits, not the counts: a new connection's keys are looked up
//! and not found, and the bits are an eighth of the counts' lines, mostly in
//! cache, where every count read was a line from memory. The counts are read and
//! written only when a key spills or a spilled key is removed.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ferrovs_mem::{HugeSlice, OutOfMemory};

use super::family::{Endpoint, Family};
use super::key::{Dir, FlowKey, Proto};

/// Records per bucket: two IPv4 records fill a cache line.
pub(crate) const PER_BUCKET: usize = 2;
/// Highest share of record slots in use, in percent, the index is sized for.
pub(crate) const MAX_LOAD_PERCENT: usize = 75;
/// Largest slab slot a record can name (23 bits, all ones meaning empty).
pub(crate) const MAX_SLOT: u32 = (1 << 23) - 2;
/// An overflow count that no longer counts (see the module documentation).
const STUCK: u8 = u8::MAX;
/// Share of record slots in use, in percent, above which a lookup that misses its
/// home bucket requests the next one before it knows whether it needs it: below
/// it, a key is rarely beyond its home, and the request would be a line from
/// memory for nothing on most new connections.
const SPILLS_LIKELY_PERCENT: usize = 25;

/// How the burst path forwards a direction's packets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lane {
    /// Destination NAT inbound, source NAT outbound.
    Nat = 0,
    /// Both addresses rewritten.
    FullNat = 1,
    /// Sent unchanged to the real server's MAC address.
    Dr = 2,
    /// Everything else goes the ordinary path: NAT64 (translated between
    /// families), and connections whose sequence numbers are translated (SYN
    /// proxy, Proxy Protocol).
    Ordinary = 3,
    /// Encapsulated in IPv4 towards the real server (inbound only). Stored as
    /// `Ordinary` and a bit of its own, so that telling the other lanes apart
    /// costs what it did before TUNNEL had one.
    Tunnel = 4,
}

impl Lane {
    const fn from_meta(meta: u32) -> Lane {
        match meta >> meta::LANE_SHIFT {
            0 => Lane::Nat,
            1 => Lane::FullNat,
            2 => Lane::Dr,
            _ if meta & meta::TUNNEL_BIT != 0 => Lane::Tunnel,
            _ => Lane::Ordinary,
        }
    }
}

/// What a record keeps of `[source, destination]` its direction's packets are
/// rewritten to (`[local, real]` inbound, `[vip, client]` outbound): both for IPv4,
/// where they fit in a 32-byte record anyway; for IPv6 only the one a NAT, DR or
/// TUNNEL connection changes (see the module documentation).
pub trait RewriteTo<A: Family>: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// What an empty record holds.
    const UNSPECIFIED: Self;
    /// Whether both endpoints are kept.
    const WHOLE: bool;
    /// What a record of direction `dir` keeps of `to`.
    fn keep(to: [Endpoint<A>; 2], dir: Dir) -> Self;
    /// `[source, destination]` again; `implied` is the endpoint not kept (inbound
    /// the local endpoint, outbound the client), ignored when both are.
    fn whole(self, dir: Dir, implied: Endpoint<A>) -> [Endpoint<A>; 2];
}

impl RewriteTo<Ipv4Addr> for [Endpoint<Ipv4Addr>; 2] {
    const UNSPECIFIED: Self = [Endpoint::new(Ipv4Addr::UNSPECIFIED, 0); 2];
    const WHOLE: bool = true;
    #[inline(always)]
    fn keep(to: [Endpoint<Ipv4Addr>; 2], _: Dir) -> Self {
        to
    }
    #[inline(always)]
    fn whole(self, _: Dir, _: Endpoint<Ipv4Addr>) -> [Endpoint<Ipv4Addr>; 2] {
        self
    }
}

impl RewriteTo<Ipv6Addr> for Endpoint<Ipv6Addr> {
    const UNSPECIFIED: Self = Endpoint::new(Ipv6Addr::UNSPECIFIED, 0);
    const WHOLE: bool = false;
    #[inline]
    fn keep([src, dst]: [Endpoint<Ipv6Addr>; 2], dir: Dir) -> Self {
        match dir {
            Dir::Inbound => dst,
            Dir::Outbound => src,
        }
    }
    #[inline]
    fn whole(self, dir: Dir, implied: Endpoint<Ipv6Addr>) -> [Endpoint<Ipv6Addr>; 2] {
        match dir {
            Dir::Inbound => [implied, self],
            Dir::Outbound => [self, implied],
        }
    }
}

/// Bit layout of [`Record::meta`].
mod meta {
    pub const SLOT_BITS: u32 = 23;
    pub const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
    /// With lane bits 3 (`Ordinary`): the lane is `Tunnel`.
    pub const TUNNEL_BIT: u32 = 1 << 23;
    pub const STATE_SHIFT: u32 = 24;
    pub const STATE_MASK: u32 = 0xf << STATE_SHIFT;
    pub const DIR_BIT: u32 = 1 << 28;
    pub const UDP_BIT: u32 = 1 << 29;
    pub const LANE_SHIFT: u32 = 30;
    /// The lane bits and the tunnel bit.
    pub const LANE_MASK: u32 = 3 << LANE_SHIFT | TUNNEL_BIT;
    /// An empty record: slot bits all ones (no slot has that number).
    pub const EMPTY: u32 = u32::MAX;
}

/// What `lane` sets of a record's meta.
const fn lane_bits(lane: Lane) -> u32 {
    match lane {
        Lane::Tunnel => (Lane::Ordinary as u32) << meta::LANE_SHIFT | meta::TUNNEL_BIT,
        lane => (lane as u32) << meta::LANE_SHIFT,
    }
}

/// One direction of a connection, as the packet path reads it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
pub struct Record<A: Family> {
    /// `[source, destination]` as this direction's packets carry them.
    key: [Endpoint<A>; 2],
    /// What it keeps of `[source, destination]` this direction's packets are
    /// rewritten to: `[local, real]` inbound, `[vip, client]` outbound (a field the
    /// mode leaves alone holds the packet's own value). See [`RewriteTo`].
    to: A::RewriteTo,
    /// The real server's slot in the worker's counters.
    real_server: u16,
    /// Wheel tick of this direction's last packet not yet settled into the cold
    /// entry's deadline, modulo 2^16 (see `ConnTable`'s deadline rules).
    pub(crate) seen: u16,
    /// slab slot (23 bits) | tunnel (1) | state code (4) | direction (1) | UDP (1) |
    /// lane (2).
    meta: u32,
}

impl<A: Family> Record<A> {
    /// A record of a live connection.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        key: [Endpoint<A>; 2],
        to: [Endpoint<A>; 2],
        real_server: u16,
        slot: u32,
        state_code: u8,
        dir: Dir,
        proto: Proto,
        lane: Lane,
        seen: u16,
    ) -> Self {
        debug_assert!(slot <= MAX_SLOT && state_code < 16);
        let mut meta = slot | u32::from(state_code) << meta::STATE_SHIFT;
        if dir == Dir::Outbound {
            meta |= meta::DIR_BIT;
        }
        if proto == Proto::Udp {
            meta |= meta::UDP_BIT;
        }
        meta |= lane_bits(lane);
        Record {
            key,
            to: A::RewriteTo::keep(to, dir),
            real_server,
            seen,
            meta,
        }
    }

    const EMPTY: Self = Record {
        key: [Endpoint::new(A::UNSPECIFIED, 0); 2],
        to: A::RewriteTo::UNSPECIFIED,
        real_server: 0,
        seen: 0,
        meta: meta::EMPTY,
    };

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.meta == meta::EMPTY
    }

    /// Whether this record is `key`'s: endpoints, then protocol.
    #[inline(always)]
    pub(crate) fn matches(&self, key: &FlowKey<A>) -> bool {
        let want = [
            Endpoint::new(key.src, key.sport),
            Endpoint::new(key.dst, key.dport),
        ];
        self.key == want
            && (self.meta & meta::UDP_BIT != 0) == (key.proto == Proto::Udp)
            && !self.is_empty()
    }

    /// `[source, destination]` of this direction's packets.
    #[inline(always)]
    pub fn key(&self) -> [Endpoint<A>; 2] {
        self.key
    }
    /// `[source, destination]` this direction's packets leave with, given the
    /// endpoint the record may not keep ([`RewriteTo::whole`]).
    #[inline(always)]
    pub(crate) fn rewritten_to(&self, implied: Endpoint<A>) -> [Endpoint<A>; 2] {
        self.to.whole(self.dir(), implied)
    }
    /// The real server's counter slot.
    #[inline(always)]
    pub fn real_server(&self) -> u16 {
        self.real_server
    }
    /// The slab slot of the connection's cold entry.
    #[inline(always)]
    pub(crate) fn slot(&self) -> u32 {
        self.meta & meta::SLOT_MASK
    }
    /// The connection's state, as [`ConnState::code`](super::ConnState::code).
    #[inline(always)]
    pub(crate) fn state_code(&self) -> u8 {
        ((self.meta & meta::STATE_MASK) >> meta::STATE_SHIFT) as u8
    }
    #[inline(always)]
    pub(crate) fn set_state_code(&mut self, code: u8) {
        self.meta = self.meta & !meta::STATE_MASK | u32::from(code & 0xf) << meta::STATE_SHIFT;
    }
    /// Which way this record's packets travel.
    #[inline(always)]
    pub fn dir(&self) -> Dir {
        if self.meta & meta::DIR_BIT == 0 {
            Dir::Inbound
        } else {
            Dir::Outbound
        }
    }
    /// TCP or UDP.
    #[inline(always)]
    pub fn proto(&self) -> Proto {
        if self.meta & meta::UDP_BIT == 0 {
            Proto::Tcp
        } else {
            Proto::Udp
        }
    }
    /// How the burst path forwards this direction.
    #[inline(always)]
    pub fn lane(&self) -> Lane {
        Lane::from_meta(self.meta)
    }
    pub(crate) fn set_lane(&mut self, lane: Lane) {
        self.meta = self.meta & !meta::LANE_MASK | lane_bits(lane);
    }
}

impl Record<Ipv4Addr> {
    /// `[source, destination]` this direction's packets leave with.
    #[inline(always)]
    pub fn to(&self) -> [Endpoint<Ipv4Addr>; 2] {
        self.to
    }
}

/// One cache line of IPv4 records (two lines of IPv6 records).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Bucket<A: Family> {
    records: [Record<A>; PER_BUCKET],
}

/// The index has no free record slot left (never reached when the caller stays
/// within the capacity it asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexFull;

/// A record's position: `bucket * PER_BUCKET + offset`.
pub(crate) type Pos = u32;

/// The record index (see the module documentation).
pub(crate) struct RecordIndex<A: Family> {
    buckets: HugeSlice<Bucket<A>>,
    overflow: HugeSlice<u8>,
    /// Bit `b % 64` of word `b / 64`: bucket `b`'s overflow count is not zero.
    spilled: HugeSlice<u64>,
    free: usize,
    /// `free` under this: more than [`SPILLS_LIKELY_PERCENT`] of the slots in use.
    spills_likely_below: usize,
    /// Changes whenever a record is placed or removed (see [`Self::version`]).
    version: u32,
}

impl<A: Family> RecordIndex<A> {
    /// An index for at most `keys` records.
    pub(crate) fn with_capacity(keys: usize) -> Result<Self, OutOfMemory> {
        let slots = keys.saturating_mul(100).div_ceil(MAX_LOAD_PERCENT);
        let n = slots.div_ceil(PER_BUCKET).max(1);
        let empty = Bucket {
            records: [Record::EMPTY; PER_BUCKET],
        };
        let slots = n * PER_BUCKET;
        Ok(RecordIndex {
            // Probed at random: huge pages spare the TLB.
            buckets: HugeSlice::filled(n, empty)?,
            overflow: HugeSlice::filled(n, 0)?,
            spilled: HugeSlice::filled(n.div_ceil(64), 0)?,
            free: slots,
            spills_likely_below: slots - slots * SPILLS_LIKELY_PERCENT / 100,
            version: 0,
        })
    }

    /// Bytes allocated.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.buckets.len() * (size_of::<Bucket<A>>() + size_of::<u8>())
            + self.spilled.len() * size_of::<u64>()
    }

    /// A number that changes whenever a record is placed or removed: a position
    /// found while it read the same still holds the same key.
    #[inline(always)]
    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// Number of buckets.
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Records stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len() * PER_BUCKET - self.free
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        // Multiply-shift: the high 64 bits of hash * n lie in 0..n.
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    /// Whether a key whose home is bucket `b` may be beyond it.
    #[inline(always)]
    fn spills_past(&self, b: usize) -> bool {
        self.spilled[b / 64] & 1 << (b % 64) != 0
    }

    /// Whether a key is likely enough to be beyond its home bucket that a lookup
    /// missing there should request the next bucket before it knows.
    #[inline(always)]
    fn spills_likely(&self) -> bool {
        self.free < self.spills_likely_below
    }

    /// Counts one more key probing past bucket `b`.
    fn count_spill(&mut self, b: usize) {
        let c = &mut self.overflow[b];
        if *c != STUCK {
            *c += 1;
        }
        self.spilled[b / 64] |= 1 << (b % 64);
    }

    /// Counts one key fewer probing past bucket `b`.
    fn uncount_spill(&mut self, b: usize) {
        let c = &mut self.overflow[b];
        if *c != STUCK {
            *c -= 1;
            if *c == 0 {
                self.spilled[b / 64] &= !(1 << (b % 64));
            }
        }
    }

    #[inline(always)]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// The bucket `hash` starts in: the cache line to request before [`Self::find`].
    #[inline(always)]
    pub(crate) fn home_bucket(&self, hash: u64) -> &Bucket<A> {
        &self.buckets[self.home(hash)]
    }

    /// The record at `pos` (empty or not).
    #[inline(always)]
    pub(crate) fn get(&self, pos: Pos) -> Option<&Record<A>> {
        let b = self.buckets.get(pos as usize / PER_BUCKET)?;
        b.records.get(pos as usize % PER_BUCKET)
    }

    /// The record at `pos`, to change it (never its key or slot: see `insert`).
    #[inline(always)]
    pub(crate) fn get_mut(&mut self, pos: Pos) -> Option<&mut Record<A>> {
        let b = self.buckets.get_mut(pos as usize / PER_BUCKET)?;
        b.records.get_mut(pos as usize % PER_BUCKET)
    }

    /// The position of `key`'s record if it is in its home bucket; else the
    /// lines a full lookup reads next are requested: the bucket's spill bit and,
    /// where spills are likely, the next bucket (requested, not read: a branch on
    /// a bit that missed would stall the whole batch). The burst path asks this
    /// for a whole batch before it forwards any packet.
    #[inline(always)]
    pub(crate) fn find_at_home(&self, hash: u64, key: &FlowKey<A>) -> Option<Pos> {
        let b = self.home(hash);
        for (i, r) in self.buckets[b].records.iter().enumerate() {
            if r.matches(key) {
                return Some((b * PER_BUCKET + i) as Pos);
            }
        }
        self.request_beyond(b);
        None
    }

    /// Requests what a lookup that did not find its key in bucket `b` reads next.
    #[inline(always)]
    fn request_beyond(&self, b: usize) {
        ferrovs_mem::prefetch(&self.spilled[b / 64]);
        if self.spills_likely() {
            ferrovs_mem::prefetch(&self.buckets[self.next(b)]);
        }
    }

    /// Requests the lines an insertion under `hash` reads: the home bucket, its
    /// spill bit and, where spills are likely, the next bucket and the overflow
    /// count the insertion would then write.
    #[inline]
    pub(crate) fn request_for_insert(&self, hash: u64) {
        let b = self.home(hash);
        ferrovs_mem::prefetch(&self.buckets[b]);
        self.request_beyond(b);
        if self.spills_likely() {
            ferrovs_mem::prefetch(&self.overflow[b]);
        }
    }

    /// The position of `key`'s record (its hash is `hash`).
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &FlowKey<A>) -> Option<Pos> {
        let mut b = self.home(hash);
        // The overflow counts end every probe; the bound only guards a corrupted index.
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            for (i, r) in bucket.records.iter().enumerate() {
                if r.matches(key) {
                    return Some((b * PER_BUCKET + i) as Pos);
                }
            }
            if !self.spills_past(b) {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// Stores `record` under `hash` (the caller has checked its key is not there
    /// yet) and returns where.
    pub(crate) fn insert(&mut self, hash: u64, record: Record<A>) -> Result<Pos, IndexFull> {
        if self.free == 0 {
            return Err(IndexFull);
        }
        let home = self.home(hash);
        let mut b = home;
        // There is an empty slot somewhere (checked above), so this ends.
        let (b, i) = loop {
            if let Some(i) = self.buckets[b].records.iter().position(Record::is_empty) {
                break (b, i);
            }
            b = self.next(b);
        };
        self.buckets[b].records[i] = record;
        self.free -= 1;
        self.version = self.version.wrapping_add(1);
        // Lookups starting at `home` must not stop before `b`.
        let mut p = home;
        while p != b {
            self.count_spill(p);
            p = self.next(p);
        }
        Ok((b * PER_BUCKET + i) as Pos)
    }

    /// Empties the record at `pos`, whose key hashes to `hash`.
    pub(crate) fn remove(&mut self, hash: u64, pos: Pos) {
        let b = pos as usize / PER_BUCKET;
        let Some(r) = self
            .buckets
            .get_mut(b)
            .and_then(|x| x.records.get_mut(pos as usize % PER_BUCKET))
        else {
            return;
        };
        if r.is_empty() {
            return;
        }
        *r = Record::EMPTY;
        self.free += 1;
        self.version = self.version.wrapping_add(1);
        // Every bucket the key probed past no longer overflows because of it.
        let mut p = self.home(hash);
        while p != b {
            self.uncount_spill(p);
            p = self.next(p);
        }
    }

    /// The home bucket's overflow count, for tests.
    #[cfg(test)]
    pub(crate) fn overflow_at(&self, hash: u64) -> u8 {
        self.overflow[self.home(hash)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FlowKey<Ipv4Addr> {
        FlowKey::new(
            Proto::Udp,
            Ipv4Addr::from(0x0a00_0000 + i),
            1000,
            Ipv4Addr::new(198, 18, 0, 1),
            53,
        )
    }

    fn record(k: &FlowKey<Ipv4Addr>, slot: u32) -> Record<Ipv4Addr> {
        Record::new(
            [Endpoint::new(k.src, k.sport), Endpoint::new(k.dst, k.dport)],
            [Endpoint::new(k.src, k.sport), Endpoint::new(k.dst, k.dport)],
            7,
            slot,
            11,
            Dir::Inbound,
            k.proto,
            Lane::Nat,
            0,
        )
    }

    #[test]
    fn an_ipv4_bucket_is_one_cache_line_of_two_records() {
        assert_eq!(size_of::<Record<Ipv4Addr>>(), 32);
        assert_eq!(size_of::<Bucket<Ipv4Addr>>(), 64);
        assert_eq!(align_of::<Bucket<Ipv4Addr>>(), 64);
        assert_eq!(size_of::<Record<Ipv6Addr>>(), 64);
        assert_eq!(size_of::<Bucket<Ipv6Addr>>(), 128);
    }

    #[test]
    fn meta_fields_round_trip() {
        let k = key(1);
        let mut r = Record::new(
            [Endpoint::new(k.src, 1), Endpoint::new(k.dst, 2)],
            [Endpoint::new(k.dst, 3), Endpoint::new(k.src, 4)],
            65535,
            MAX_SLOT,
            15,
            Dir::Outbound,
            Proto::Tcp,
            Lane::Ordinary,
            9,
        );
        assert!(!r.is_empty());
        assert_eq!(
            (
                r.slot(),
                r.state_code(),
                r.dir(),
                r.proto(),
                r.lane(),
                r.real_server()
            ),
            (
                MAX_SLOT,
                15,
                Dir::Outbound,
                Proto::Tcp,
                Lane::Ordinary,
                65535
            )
        );
        r.set_state_code(3);
        r.set_lane(Lane::FullNat);
        assert_eq!(
            (r.slot(), r.state_code(), r.dir(), r.proto(), r.lane()),
            (MAX_SLOT, 3, Dir::Outbound, Proto::Tcp, Lane::FullNat)
        );
        for lane in [
            Lane::Nat,
            Lane::FullNat,
            Lane::Dr,
            Lane::Tunnel,
            Lane::Ordinary,
        ] {
            r.set_lane(lane);
            assert_eq!((r.slot(), r.state_code(), r.lane()), (MAX_SLOT, 3, lane));
        }
        // The protocol is part of the key.
        let mut tcp = k;
        tcp.proto = Proto::Tcp;
        let rec = record(&k, 0);
        assert!(rec.matches(&k));
        assert!(!rec.matches(&tcp));
        assert!(!Record::<Ipv4Addr>::EMPTY.matches(&FlowKey::new(
            Proto::Udp,
            Ipv4Addr::UNSPECIFIED,
            0,
            Ipv4Addr::UNSPECIFIED,
            0
        )));
    }

    #[test]
    fn sized_for_the_load_limit() {
        for keys in [0, 1, 7, 1000, 2_000_000] {
            let idx = RecordIndex::<Ipv4Addr>::with_capacity(keys).unwrap();
            let slots = idx.buckets() * PER_BUCKET;
            assert!(slots * MAX_LOAD_PERCENT >= keys * 100, "{keys}");
            assert!(
                slots * MAX_LOAD_PERCENT < (keys + 2 * PER_BUCKET) * 100,
                "{keys}"
            );
            assert_eq!(
                idx.memory_bytes(),
                idx.buckets() * 65 + idx.buckets().div_ceil(64) * 8
            );
        }
    }

    #[test]
    fn spills_are_found_and_counts_return_to_zero() {
        // Every key hashed to one home: the probe walks the spilled buckets.
        let mut idx = RecordIndex::<Ipv4Addr>::with_capacity(40).unwrap();
        let hash = 0x8000_0000_0000_0000;
        let mut pos = Vec::new();
        for i in 0..9 {
            pos.push(idx.insert(hash, record(&key(i), i)).unwrap());
        }
        assert_eq!(idx.overflow_at(hash), 7);
        for i in 0..9 {
            let p = idx.find(hash, &key(i)).unwrap();
            assert_eq!(p, pos[i as usize]);
            assert_eq!(idx.get(p).unwrap().slot(), i);
        }
        assert_eq!(idx.find(hash, &key(99)), None);
        // A freed early slot is reused and later keys stay found.
        idx.remove(hash, pos[0]);
        assert_eq!(idx.find(hash, &key(0)), None);
        assert_eq!(idx.insert(hash, record(&key(20), 20)).unwrap(), pos[0]);
        for i in 1..9 {
            assert_eq!(idx.find(hash, &key(i)), Some(pos[i as usize]));
        }
        idx.remove(hash, pos[0]);
        for i in 1..9 {
            idx.remove(hash, pos[i as usize]);
        }
        assert_eq!(idx.len(), 0);
        assert!(idx.overflow.iter().all(|&c| c == 0));
        assert!(idx.spilled.iter().all(|&w| w == 0));
    }

    #[test]
    fn spill_bits_follow_the_counts_and_lookups_agree_with_a_model() {
        use crate::packet::testutil::XorShift;
        use std::collections::HashMap;
        // Few homes for many keys, so that spills and removals of spilled keys
        // are common; then a table at the load limit with spread hashes.
        for (capacity, homes) in [(300, 7u64), (3000, u64::MAX)] {
            let mut idx = RecordIndex::<Ipv4Addr>::with_capacity(capacity).unwrap();
            let mut rng = XorShift::new(capacity as u64);
            let hash_of = |i: u32| {
                let h = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if homes == u64::MAX {
                    h
                } else {
                    (h % homes) << 56
                }
            };
            let mut live: HashMap<u32, Pos> = HashMap::new();
            for step in 0..20_000u32 {
                let i = rng.below(capacity * 2) as u32;
                match live.remove(&i) {
                    Some(pos) => idx.remove(hash_of(i), pos),
                    None if live.len() < capacity => {
                        assert_eq!(idx.find(hash_of(i), &key(i)), None, "step {step}");
                        let pos = idx.insert(hash_of(i), record(&key(i), i)).unwrap();
                        live.insert(i, pos);
                    }
                    None => {}
                }
                if step % 997 == 0 {
                    for b in 0..idx.buckets() {
                        assert_eq!(idx.spills_past(b), idx.overflow[b] != 0, "bucket {b}");
                    }
                    for (&i, &pos) in &live {
                        assert_eq!(idx.find(hash_of(i), &key(i)), Some(pos));
                    }
                }
            }
        }
    }

    #[test]
    fn a_stuck_count_only_lengthens_probes() {
        let mut idx = RecordIndex::<Ipv4Addr>::with_capacity(600).unwrap();
        let hash = 0;
        let n = 2 + 255 * PER_BUCKET as u32 + 10;
        let pos: Vec<Pos> = (0..n)
            .map(|i| idx.insert(hash, record(&key(i), i)).unwrap())
            .collect();
        assert_eq!(idx.overflow_at(hash), STUCK);
        for (i, &p) in pos.iter().enumerate() {
            idx.remove(hash, p);
            for (j, &later) in pos.iter().enumerate().skip(i + 1).step_by(97) {
                assert_eq!(idx.find(hash, &key(j as u32)), Some(later));
            }
        }
        assert_eq!(idx.overflow_at(hash), STUCK, "stays");
        assert_eq!(idx.find(hash, &key(1)), None);
    }

    #[test]
    fn refuses_beyond_its_slots() {
        let mut idx = RecordIndex::<Ipv4Addr>::with_capacity(3).unwrap();
        let slots = idx.buckets() * PER_BUCKET;
        for i in 0..slots as u32 {
            idx.insert(u64::from(i) << 40, record(&key(i), i)).unwrap();
        }
        assert_eq!(idx.insert(1, record(&key(999), 0)), Err(IndexFull));
        for i in 0..slots as u32 {
            assert!(idx.find(u64::from(i) << 40, &key(i)).is_some());
        }
    }
}
