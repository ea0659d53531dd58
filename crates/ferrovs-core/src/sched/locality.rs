//! What lblc and lblcr share: the destination table, its expiry, and IPVS's
//! `is_overloaded` test.
//!
//! # The table
//! IPVS keeps a hash table of `kmalloc`ed entries per service (1024 buckets; the
//! periodic collector trims it towards 16384 entries, but it can grow past that).
//! Here the table is preallocated when the scheduler is built and never grows:
//! [`TABLE_ENTRIES`] entries in a slab, found through an open-addressing index of
//! twice as many slots (linear probing, at most half full, removal by backward shift,
//! so no tombstones). The slot of a destination is `hash_32(fold(dst))`, as IPVS
//! hashes it into its buckets.
//!
//! The entries form a list in order of last use (most recent first): a lookup that
//! finds an entry stamps it with the time (IPVS `lastuse`) and moves it to the front.
//!
//! # Expiry and eviction
//! - An entry unused for [`EXPIRATION_MS`] (IPVS `lblc_expiration` /
//!   `lblcr_expiration`, 24 hours) is gone: a lookup that finds one removes it and
//!   answers "none", and every pick removes up to two such entries from the end of the
//!   list. IPVS removes them in its full check every 30 minutes, so an entry lives
//!   there between 24 and 24.5 hours; here exactly 24 hours.
//! - A full table makes room by evicting the least recently used entry. IPVS's
//!   collector removes entries idle for more than 6 minutes once the table holds
//!   more than 16384, and lets the table grow while none is that old; a table that
//!   cannot grow gives up its oldest entry instead.
//!
//! All of this is O(1) per pick (a lookup probes a bounded run of the index) and
//! allocates nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use super::hash::{fold_addr, hash_32};
use super::{Candidate, SchedError, ServerId, NO_SERVER};

/// Entries of one service's lblc or lblcr table on one worker.
///
/// IPVS's bucket count. A ferrovs service has a single VIP, so the table of a
/// service holds one live entry per destination address its connections are sent
/// to, today that VIP alone.
pub(super) const TABLE_ENTRIES: usize = 1024;

/// How long an unused entry lives: IPVS's default `lblc_expiration` and
/// `lblcr_expiration` (24 hours); lblcr also drops its most loaded server from a
/// set that has not changed for that long.
pub(super) const EXPIRATION_MS: u64 = 24 * 60 * 60 * 1000;

/// Expired entries removed from the end of the list per pick.
const REAP_PER_PICK: usize = 2;

/// "No entry" in the index and the list links.
const NIL: u16 = u16::MAX;

/// Largest capacity: entry numbers are `u16`, `NIL` excluded.
const MAX_CAPACITY: usize = 1 << 15;

/// IPVS `is_overloaded`: the server has more active connections than its weight and
/// some server has fewer than half its weight.
///
/// IPVS looks at every destination of the service for the second condition; here
/// only at servers that take new connections. The difference is a server that
/// health checks took out (IPVS's keepalived removes it from the service, so IPVS
/// never sees it): its few connections must not make another server "overloaded"
/// for a connection it could not take anyway. A weight-0 server never meets the
/// condition in either.
#[inline]
pub(super) fn is_overloaded(dest: &Candidate, servers: &[Candidate]) -> bool {
    dest.active > dest.weight
        && servers
            .iter()
            .any(|d| d.takes_new() && u64::from(d.active) * 2 < u64::from(d.weight))
}

/// The servers' ids in slice order, checking that positions fit the tables' `u32`.
pub(super) fn ids_of(servers: &[Candidate]) -> Result<Vec<ServerId>, SchedError> {
    u32::try_from(servers.len())
        .ok()
        .filter(|&n| n < NO_SERVER)
        .ok_or(SchedError::TooManyServers)?;
    Ok(servers.iter().map(|s| s.id).collect())
}

/// For each position of the old slice (by its id), the position of the same server
/// in the new one, or `NO_SERVER` when it left. Control path.
pub(super) fn remap(old: &[ServerId], new: &[ServerId]) -> Vec<u32> {
    let mut pos: HashMap<ServerId, u32> = HashMap::with_capacity(new.len());
    for (i, id) in new.iter().enumerate() {
        // `ids_of` checked that every position fits.
        pos.entry(*id).or_insert(i as u32);
    }
    old.iter()
        .map(|id| pos.get(id).copied().unwrap_or(NO_SERVER))
        .collect()
}

/// One destination's entry.
#[derive(Debug, Clone, Copy)]
struct Entry<V> {
    /// The destination address (IPVS `daddr`).
    key: IpAddr,
    /// When a lookup last found it, in ms (IPVS `lastuse`).
    lastuse: u64,
    /// Previous (more recently used) entry, or `NIL`.
    prev: u16,
    /// Next (less recently used) entry, or `NIL`.
    next: u16,
    /// What the scheduler keeps for the destination.
    value: V,
}

/// A bounded destination -> `V` table with last-use order (see the module).
#[derive(Debug, Clone)]
pub(super) struct LocalityTable<V> {
    /// Open-addressing index: slot -> entry number, or `NIL`.
    index: Box<[u16]>,
    /// log2 of the index length.
    bits: u32,
    /// The slab; an entry is live when it is on the list.
    entries: Box<[Entry<V>]>,
    /// Entry numbers not in use (a stack with its capacity reserved).
    free: Vec<u16>,
    /// Most recently used entry, or `NIL`.
    head: u16,
    /// Least recently used entry, or `NIL`.
    tail: u16,
}

impl<V: Copy + Default> LocalityTable<V> {
    /// A table of `capacity` entries (a power of two, at most 32768). Allocates.
    pub(super) fn new(capacity: usize) -> Self {
        assert!(
            capacity.is_power_of_two() && capacity <= MAX_CAPACITY,
            "locality table capacity {capacity}"
        );
        let slots = capacity * 2;
        let blank = Entry {
            key: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            lastuse: 0,
            prev: NIL,
            next: NIL,
            value: V::default(),
        };
        LocalityTable {
            index: vec![NIL; slots].into_boxed_slice(),
            bits: slots.trailing_zeros(),
            entries: vec![blank; capacity].into_boxed_slice(),
            // Popped from the end: entry 0 is used first.
            free: (0..capacity as u16).rev().collect(),
            head: NIL,
            tail: NIL,
        }
    }

    /// Live entries (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// The index slot a destination's probe starts at.
    #[inline]
    fn home(&self, key: IpAddr) -> usize {
        hash_32(fold_addr(key), self.bits) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    /// The index slot and entry number of `key`. The index is at most half full, so
    /// the probe meets an empty slot.
    #[inline]
    fn find(&self, key: IpAddr) -> Option<(usize, u16)> {
        let mask = self.mask();
        let mut slot = self.home(key);
        loop {
            let id = self.index[slot];
            if id == NIL {
                return None;
            }
            if self.entries[usize::from(id)].key == key {
                return Some((slot, id));
            }
            slot = (slot + 1) & mask;
        }
    }

    #[inline]
    fn expired(&self, id: u16, now: u64) -> bool {
        now >= self.entries[usize::from(id)]
            .lastuse
            .saturating_add(EXPIRATION_MS)
    }

    /// The live entry of `key`, stamped with `now` and moved to the front; an
    /// expired one is removed and not returned.
    #[inline]
    pub(super) fn lookup(&mut self, key: IpAddr, now: u64) -> Option<u16> {
        let (slot, id) = self.find(key)?;
        if self.expired(id, now) {
            self.remove_at(slot, id);
            return None;
        }
        self.entries[usize::from(id)].lastuse = now;
        if self.head != id {
            self.unlink(id);
            self.push_front(id);
        }
        Some(id)
    }

    /// Inserts `key` (absent: the caller just looked it up) with `value`, used at
    /// `now`; a full table first evicts its least recently used entry.
    #[inline]
    pub(super) fn insert(&mut self, key: IpAddr, now: u64, value: V) -> u16 {
        if self.free.is_empty() {
            self.remove(self.tail);
        }
        let Some(id) = self.free.pop() else {
            unreachable!("an eviction frees an entry");
        };
        let e = &mut self.entries[usize::from(id)];
        e.key = key;
        e.lastuse = now;
        e.value = value;
        self.push_front(id);
        let mask = self.mask();
        let mut slot = self.home(key);
        while self.index[slot] != NIL {
            slot = (slot + 1) & mask;
        }
        self.index[slot] = id;
        id
    }

    /// The value of live entry `id`.
    #[inline]
    pub(super) fn value(&self, id: u16) -> &V {
        &self.entries[usize::from(id)].value
    }

    /// The value of live entry `id`, to change.
    #[inline]
    pub(super) fn value_mut(&mut self, id: u16) -> &mut V {
        &mut self.entries[usize::from(id)].value
    }

    /// Removes up to [`REAP_PER_PICK`] expired entries from the end of the list.
    #[inline]
    pub(super) fn reap(&mut self, now: u64) {
        for _ in 0..REAP_PER_PICK {
            if self.tail == NIL || !self.expired(self.tail, now) {
                return;
            }
            self.remove(self.tail);
        }
    }

    /// Calls `f` on every live value, most recently used first. Control path.
    pub(super) fn for_each_mut(&mut self, mut f: impl FnMut(&mut V)) {
        let mut id = self.head;
        while id != NIL {
            let e = &mut self.entries[usize::from(id)];
            f(&mut e.value);
            id = e.next;
        }
    }

    /// Empties the table. Control path.
    pub(super) fn clear(&mut self) {
        while self.tail != NIL {
            self.remove(self.tail);
        }
    }

    /// Removes live entry `id`.
    fn remove(&mut self, id: u16) {
        let mask = self.mask();
        let mut slot = self.home(self.entries[usize::from(id)].key);
        while self.index[slot] != id {
            slot = (slot + 1) & mask;
        }
        self.remove_at(slot, id);
    }

    /// Removes entry `id`, found at index slot `slot`: backward-shift deletion
    /// (each later entry of the run moves into the hole unless its home lies
    /// cyclically after the hole), then off the list and onto the free stack.
    fn remove_at(&mut self, mut hole: usize, id: u16) {
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let other = self.index[j];
            if other == NIL {
                break;
            }
            let home = self.home(self.entries[usize::from(other)].key);
            // Distance from home to j, and from the hole to j, along the probe.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.index[hole] = other;
                hole = j;
            }
        }
        self.index[hole] = NIL;
        self.unlink(id);
        self.free.push(id);
    }

    fn unlink(&mut self, id: u16) {
        let Entry { prev, next, .. } = self.entries[usize::from(id)];
        match prev {
            NIL => self.head = next,
            p => self.entries[usize::from(p)].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.entries[usize::from(n)].prev = prev,
        }
    }

    fn push_front(&mut self, id: u16) {
        let old = self.head;
        {
            let e = &mut self.entries[usize::from(id)];
            e.prev = NIL;
            e.next = old;
        }
        match old {
            NIL => self.tail = id,
            h => self.entries[usize::from(h)].prev = id,
        }
        self.head = id;
    }

    /// Keys from most to least recently used (tests).
    #[cfg(test)]
    fn keys(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        let mut id = self.head;
        while id != NIL {
            let e = &self.entries[usize::from(id)];
            out.push(e.key);
            id = e.next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const DAY: u64 = EXPIRATION_MS;

    #[test]
    fn insert_lookup_and_last_use_order() {
        let mut t: LocalityTable<u32> = LocalityTable::new(8);
        let (a, b, c) = (client_v4(1), client_v4(2), client_v6(3));
        t.insert(a, 10, 1);
        t.insert(b, 20, 2);
        t.insert(c, 30, 3);
        assert_eq!(t.len(), 3);
        assert_eq!(t.keys(), [c, b, a]);
        let id = t.lookup(a, 40).unwrap();
        assert_eq!(*t.value(id), 1);
        assert_eq!(t.keys(), [a, c, b]);
        *t.value_mut(id) = 7;
        let id = t.lookup(a, 41).unwrap();
        assert_eq!(*t.value(id), 7);
        assert_eq!(t.lookup(client_v4(4), 41), None);
    }

    #[test]
    fn entries_expire_after_a_day_unused() {
        let mut t: LocalityTable<u32> = LocalityTable::new(8);
        let (a, b) = (client_v4(1), client_v4(2));
        t.insert(a, 1_000, 1);
        t.insert(b, 5_000, 2);
        // Used just before its expiry: lives another day from then.
        assert!(t.lookup(a, 1_000 + DAY - 1).is_some());
        // b expires at 5000 + DAY exactly (IPVS: removed unless now is before it).
        assert!(t.lookup(b, 5_000 + DAY).is_none());
        assert_eq!(t.len(), 1);
        // Reaping takes expired entries off the end, never live ones.
        t.reap(1_000 + 2 * DAY - 2);
        assert_eq!(t.len(), 1);
        t.reap(1_000 + 2 * DAY - 1);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn reap_is_bounded_per_call() {
        let mut t: LocalityTable<u32> = LocalityTable::new(8);
        for n in 0..5 {
            t.insert(client_v4(n), 0, n);
        }
        t.reap(DAY);
        assert_eq!(t.len(), 5 - REAP_PER_PICK);
    }

    #[test]
    fn full_table_evicts_the_least_recently_used() {
        let mut t: LocalityTable<u32> = LocalityTable::new(4);
        for n in 0..4 {
            t.insert(client_v4(n), u64::from(n), n);
        }
        // Touch the oldest: the second oldest becomes the victim.
        assert!(t.lookup(client_v4(0), 10).is_some());
        t.insert(client_v4(9), 11, 9);
        assert_eq!(t.len(), 4);
        assert!(t.lookup(client_v4(1), 12).is_none());
        for n in [0, 2, 3, 9] {
            assert!(t.lookup(client_v4(n), 12).is_some(), "{n}");
        }
    }

    #[test]
    fn index_stays_consistent_under_churn() {
        // Random inserts, lookups and expiries against a model, in a small table
        // whose index runs wrap around and collide.
        let mut t: LocalityTable<u32> = LocalityTable::new(16);
        let mut model: Vec<(IpAddr, u64, u32)> = Vec::new(); // LRU first
        let mut rng = Rng(0x5eed);
        let mut now = 0u64;
        for step in 0..20_000u32 {
            now += rng.below(DAY / 8);
            let key = client_v4(rng.below(40) as u32 * 1024);
            model.retain(|&(_, used, _)| now < used + DAY);
            let found = t.lookup(key, now).map(|id| *t.value(id));
            let pos = model.iter().position(|&(k, _, _)| k == key);
            assert_eq!(found, pos.map(|p| model[p].2), "step {step}");
            match pos {
                Some(p) => {
                    let mut e = model.remove(p);
                    e.1 = now;
                    model.push(e);
                }
                None => {
                    t.insert(key, now, step);
                    if model.len() == 16 {
                        model.remove(0);
                    }
                    model.push((key, now, step));
                }
            }
            if step % 7 == 0 {
                t.reap(now);
            }
            assert!(model.len() <= t.len() && t.len() <= 16);
        }
        let want: Vec<IpAddr> = model.iter().rev().map(|e| e.0).collect();
        let mut got = t.keys();
        got.retain(|k| want.contains(k));
        assert_eq!(got, want);
    }

    #[test]
    fn clear_and_for_each() {
        let mut t: LocalityTable<u32> = LocalityTable::new(4);
        for n in 0..3 {
            t.insert(client_v4(n), 0, n);
        }
        let mut seen = Vec::new();
        t.for_each_mut(|v| {
            seen.push(*v);
            *v += 10;
        });
        assert_eq!(seen, [2, 1, 0]);
        let id = t.lookup(client_v4(1), 1).unwrap();
        assert_eq!(*t.value(id), 11);
        t.clear();
        assert_eq!(t.len(), 0);
        assert_eq!(t.lookup(client_v4(1), 1), None);
        t.insert(client_v4(1), 2, 5);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn overloaded_needs_both_conditions() {
        let mut list = servers(&[2, 4, 0]);
        // Server 0: 3 active > weight 2; server 1: 1 active, 2 < 4: overloaded.
        list[0].active = 3;
        list[1].active = 1;
        assert!(is_overloaded(&list[0], &list));
        // Exactly weight is not over it.
        list[0].active = 2;
        assert!(!is_overloaded(&list[0], &list));
        // Over weight, but nobody below half its weight (2 * 2 = 4, not < 4).
        list[0].active = 3;
        list[1].active = 2;
        assert!(!is_overloaded(&list[0], &list));
        // A weight-0 server never counts as having room.
        list[2].active = 0;
        assert!(!is_overloaded(&list[0], &list));
        // A server out of service does not count either.
        list[1].active = 0;
        list[1].available = false;
        assert!(!is_overloaded(&list[0], &list));
        list[1].available = true;
        assert!(is_overloaded(&list[0], &list));
    }

    #[test]
    fn remap_follows_ids() {
        let old = ids_of(&servers(&[1, 1, 1])).unwrap();
        let new: Vec<ServerId> = vec![old[2], server(7, 1).id, old[0]];
        assert_eq!(remap(&old, &new), [2, NO_SERVER, 0]);
        assert_eq!(remap(&[], &new), Vec::<u32>::new());
    }
}
