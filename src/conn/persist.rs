//! Persistence templates (IPVS `-p timeout -M netmask`): for each (service, client
//! network) the real server that client's earlier connections went to.
//!
//! Semantics follow IPVS's templates: a hit refreshes the deadline to now plus the
//! service's persistence timeout; a template does not expire while connections
//! hold it (the caller calls [`PersistTable::hold`] when it creates a connection
//! with the template and [`PersistTable::release`] when that connection ends), and
//! after the last one ends it lives for at least one more timeout. (IPVS re-checks
//! a held template once per timeout, so it may drop it anywhere up to a timeout
//! after the last connection; we count the timeout from the last release.)
//!
//! Invalidation (a real server removed or quiesced) takes the template out of the
//! index at once, so the next connection from that client is scheduled afresh, but
//! keeps its slot until its last holder releases it: ids held by connections never
//! dangle. For the same reason a [`TemplateId`] needs no generation: a slot is
//! freed only when nothing holds it.
//!
//! Storage mirrors the connection table: a preallocated slab with a free list, a
//! `hashbrown::HashTable<u32>` of slab indices reserved at twice the capacity (so
//! it never grows), and a [`TimerWheel`] with lazy refresh.

use std::fmt;
use std::time::Duration;

use hashbrown::HashTable;

use super::family::Family;
use super::key::FlowHasher;
use super::state::duration_ms;
use super::wheel::{TimerWheel, MAX_ENTRIES, TICK_MS};

/// Names a persistence template (its slot index).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TemplateId(pub(crate) u32);

impl TemplateId {
    /// The slot index, dense in `0..capacity()`.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// Why a template operation failed. [`PersistError::reason`] is the metrics label.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PersistError {
    /// Every slot is in use; nothing was changed.
    TableFull,
    /// A valid template for this service and client network exists.
    TemplateExists,
    /// The id names no live template.
    UnknownTemplate,
    /// `release` without a matching `hold`.
    NotHeld,
    /// The requested capacity exceeds what a table can index.
    CapacityTooLarge,
    /// The memory for the table could not be allocated.
    OutOfMemory,
}

impl PersistError {
    /// The error as a snake_case label for metrics.
    pub const fn reason(self) -> &'static str {
        match self {
            PersistError::TableFull => "persist_table_full",
            PersistError::TemplateExists => "persist_template_exists",
            PersistError::UnknownTemplate => "persist_unknown_template",
            PersistError::NotHeld => "persist_not_held",
            PersistError::CapacityTooLarge => "persist_capacity_too_large",
            PersistError::OutOfMemory => "persist_out_of_memory",
        }
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PersistError::TableFull => "persistence table full",
            PersistError::TemplateExists => "a persistence template for this client exists",
            PersistError::UnknownTemplate => "no such persistence template",
            PersistError::NotHeld => "persistence template released more often than held",
            PersistError::CapacityTooLarge => "persistence table capacity too large",
            PersistError::OutOfMemory => "cannot allocate the persistence table",
        })
    }
}

impl std::error::Error for PersistError {}

/// A persistence template.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Template<A: Family> {
    /// The client address with the netmask applied.
    client: A,
    expiry: u64,
    /// Persistence timeout in ms (saturated at about 49 days).
    timeout_ms: u32,
    conns: u32,
    service: u16,
    real_server: u16,
    valid: bool,
}

impl<A: Family> Template<A> {
    /// The client network (address with the netmask applied).
    pub fn client(&self) -> A {
        self.client
    }
    pub fn service(&self) -> u16 {
        self.service
    }
    pub fn real_server(&self) -> u16 {
        self.real_server
    }
    /// Connections holding the template.
    pub fn conns(&self) -> u32 {
        self.conns
    }
    /// Absolute deadline in ms (extended while connections hold the template).
    pub fn expiry(&self) -> u64 {
        self.expiry
    }
    /// The persistence timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms))
    }
    /// False once invalidated: no longer found by lookups, waiting for its holders.
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// The deadline the wheel should use: held templates stay at least one
    /// timeout (and one tick) ahead; an invalidated, unheld one is due now.
    fn effective_expiry(&mut self, now: u64) -> u64 {
        if self.conns > 0 {
            let ahead = u64::from(self.timeout_ms).max(TICK_MS);
            self.expiry = self.expiry.max(now.saturating_add(ahead));
        } else if !self.valid {
            self.expiry = self.expiry.min(now);
        }
        self.expiry
    }
}

#[derive(Clone, Copy, Debug)]
enum Slot<A: Family> {
    Live(Template<A>),
    Free { next: u32 },
}

const NIL: u32 = u32::MAX;

/// The persistence templates of one worker and one address family.
pub struct PersistTable<A: Family> {
    slab: Box<[Slot<A>]>,
    index: HashTable<u32>,
    wheel: TimerWheel,
    hasher: FlowHasher,
    free_head: u32,
    len: u32,
}

impl<A: Family> PersistTable<A> {
    /// A table for at most `capacity` templates, hashed under a random seed.
    pub fn new(capacity: usize) -> Result<Self, PersistError> {
        Self::with_hasher(capacity, FlowHasher::random())
    }

    /// A table with a given hasher (a fixed seed makes tests reproducible).
    pub fn with_hasher(capacity: usize, hasher: FlowHasher) -> Result<Self, PersistError> {
        if capacity > MAX_ENTRIES {
            return Err(PersistError::CapacityTooLarge);
        }
        let mut slab = Vec::new();
        slab.try_reserve_exact(capacity)
            .map_err(|_| PersistError::OutOfMemory)?;
        slab.extend((0..capacity as u32).map(|i| Slot::Free {
            next: if i as usize + 1 < capacity {
                i + 1
            } else {
                NIL
            },
        }));
        let mut index = HashTable::new();
        // Twice the entries, so tombstones can only ever cause an in-place rehash.
        index
            .try_reserve(2 * capacity + 2, |_: &u32| 0)
            .map_err(|_| PersistError::OutOfMemory)?;
        Ok(PersistTable {
            slab: slab.into_boxed_slice(),
            index,
            wheel: TimerWheel::new(capacity).map_err(|_| PersistError::OutOfMemory)?,
            hasher,
            free_head: if capacity > 0 { 0 } else { NIL },
            len: 0,
        })
    }

    /// Live templates, valid or not.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no template is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most templates the table holds.
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }

    /// Bytes allocated by the table. Fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        self.slab.len() * size_of::<Slot<A>>()
            + self.index.allocation_size()
            + self.wheel.memory_bytes()
    }

    /// The template `id` names.
    pub fn get(&self, id: TemplateId) -> Option<&Template<A>> {
        match self.slab.get(id.0 as usize) {
            Some(Slot::Live(t)) => Some(t),
            _ => None,
        }
    }

    /// Finds the valid template of `client` (masked to `prefix_len` bits) for
    /// `service` and refreshes its deadline; returns it and its real server.
    pub fn lookup(
        &mut self,
        service: u16,
        client: A,
        prefix_len: u8,
        now: u64,
    ) -> Option<(TemplateId, u16)> {
        let client = client.mask(prefix_len);
        let index = self.find(service, client)?;
        let Some(Slot::Live(t)) = self.slab.get_mut(index as usize) else {
            return None;
        };
        // Later than before (monotonic clock), so the wheel catches up lazily.
        t.expiry = t.expiry.max(now.saturating_add(u64::from(t.timeout_ms)));
        Some((TemplateId(index), t.real_server))
    }

    /// Creates a template sending `client`'s network (masked to `prefix_len` bits)
    /// to `real_server` of `service` for `timeout` after its last use. It starts
    /// with no holder. On error nothing changes.
    pub fn insert(
        &mut self,
        service: u16,
        client: A,
        prefix_len: u8,
        real_server: u16,
        timeout: Duration,
        now: u64,
    ) -> Result<TemplateId, PersistError> {
        if self.free_head == NIL {
            return Err(PersistError::TableFull);
        }
        let client = client.mask(prefix_len);
        if self.find(service, client).is_some() {
            return Err(PersistError::TemplateExists);
        }
        let index = self.free_head;
        let Some(Slot::Free { next }) = self.slab.get(index as usize).copied() else {
            return Err(PersistError::TableFull);
        };
        let timeout_ms = u32::try_from(duration_ms(timeout)).unwrap_or(u32::MAX);
        let expiry = now.saturating_add(u64::from(timeout_ms));
        self.slab[index as usize] = Slot::Live(Template {
            client,
            expiry,
            timeout_ms,
            conns: 0,
            service,
            real_server,
            valid: true,
        });
        self.free_head = next;
        self.len += 1;
        let hash = self.hasher.hash_template(service, client);
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index
            .insert_unique(hash, index, |&v| slot_hash(slab, hasher, v));
        self.wheel.arm(index, expiry, now);
        Ok(TemplateId(index))
    }

    /// Counts one more connection holding the template.
    pub fn hold(&mut self, id: TemplateId) -> Result<(), PersistError> {
        let t = self.live_mut(id)?;
        t.conns = t.conns.saturating_add(1);
        Ok(())
    }

    /// Counts one connection fewer; the last release starts the final timeout
    /// (or, for an invalidated template, lets it go at once).
    pub fn release(&mut self, id: TemplateId, now: u64) -> Result<(), PersistError> {
        let t = self.live_mut(id)?;
        if t.conns == 0 {
            return Err(PersistError::NotHeld);
        }
        t.conns -= 1;
        if t.conns == 0 {
            if t.valid {
                t.expiry = t.expiry.max(now.saturating_add(u64::from(t.timeout_ms)));
            } else {
                t.expiry = now;
                self.wheel.rearm(id.0, now, now);
            }
        }
        Ok(())
    }

    /// Stops the template from matching (its real server is gone or quiesced, as
    /// IPVS's `ip_vs_check_template`); it is freed once no connection holds it.
    /// O(1): the data path can call it when a lookup returns an unusable server.
    pub fn invalidate(&mut self, id: TemplateId, now: u64) -> Result<(), PersistError> {
        let t = *self.get(id).ok_or(PersistError::UnknownTemplate)?;
        if !t.valid {
            return Ok(());
        }
        self.unindex(id.0, &t);
        if let Some(Slot::Live(live)) = self.slab.get_mut(id.0 as usize) {
            live.valid = false;
            if live.conns == 0 {
                live.expiry = now;
                self.wheel.rearm(id.0, now, now);
            }
        }
        Ok(())
    }

    /// Invalidates every template of `service` pointing at `real_server` (removed,
    /// or weight set to 0) and returns how many. Walks the whole slab: a control
    /// operation.
    pub fn invalidate_real_server(&mut self, service: u16, real_server: u16, now: u64) -> usize {
        let mut count = 0;
        for index in 0..self.slab.len() as u32 {
            let hit = matches!(
                self.slab[index as usize],
                Slot::Live(t) if t.valid && t.service == service && t.real_server == real_server
            );
            if hit && self.invalidate(TemplateId(index), now).is_ok() {
                count += 1;
            }
        }
        count
    }

    /// Removes templates that are past their deadline and unheld, handing each to
    /// `on_expire` first; at most `budget` wheel entries are examined. Returns how
    /// many were removed.
    pub fn expire(
        &mut self,
        now: u64,
        budget: usize,
        mut on_expire: impl FnMut(TemplateId, &Template<A>),
    ) -> usize {
        let mut work = budget;
        let mut removed = 0;
        loop {
            let slab = &mut self.slab;
            let due = self
                .wheel
                .poll(now, &mut work, |i| match slab.get_mut(i as usize) {
                    Some(Slot::Live(t)) => t.effective_expiry(now),
                    _ => 0,
                });
            let Some(index) = due else {
                return removed;
            };
            if let Some(Slot::Live(t)) = self.slab.get(index as usize).copied() {
                on_expire(TemplateId(index), &t);
                if t.valid {
                    self.unindex(index, &t);
                }
                self.slab[index as usize] = Slot::Free {
                    next: self.free_head,
                };
                self.free_head = index;
                self.len -= 1;
                removed += 1;
            }
        }
    }

    /// Every live template, in slot order. Walks the whole slab.
    pub fn iter(&self) -> impl Iterator<Item = (TemplateId, &Template<A>)> + '_ {
        self.slab
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Live(t) => Some((TemplateId(index as u32), t)),
                Slot::Free { .. } => None,
            })
    }

    fn live_mut(&mut self, id: TemplateId) -> Result<&mut Template<A>, PersistError> {
        match self.slab.get_mut(id.0 as usize) {
            Some(Slot::Live(t)) => Ok(t),
            _ => Err(PersistError::UnknownTemplate),
        }
    }

    fn find(&self, service: u16, client: A) -> Option<u32> {
        let hash = self.hasher.hash_template(service, client);
        let slab = &self.slab;
        self.index
            .find(hash, |&v| {
                matches!(
                    slab.get(v as usize),
                    Some(Slot::Live(t)) if t.service == service && t.client == client
                )
            })
            .copied()
    }

    fn unindex(&mut self, index: u32, t: &Template<A>) {
        let hash = self.hasher.hash_template(t.service, t.client);
        if let Ok(entry) = self.index.find_entry(hash, |&v| v == index) {
            entry.remove();
        }
    }
}

impl<A: Family> fmt::Debug for PersistTable<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

fn slot_hash<A: Family>(slab: &[Slot<A>], hasher: &FlowHasher, index: u32) -> u64 {
    match slab.get(index as usize) {
        Some(Slot::Live(t)) => hasher.hash_template(t.service, t.client),
        _ => 0,
    }
}
