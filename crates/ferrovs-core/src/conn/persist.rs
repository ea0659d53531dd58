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
use super::wheel::{Timed, TimerPos, TimerWheel, MAX_ENTRIES, TICK_MS};

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
    /// Where the wheel has the template filed.
    timer: TimerPos,
}

impl<A: Family> Template<A> {
    /// The client network (address with the netmask applied).
    pub fn client(&self) -> A {
        self.client
    }
    /// Index of the service the template belongs to.
    pub fn service(&self) -> u16 {
        self.service
    }
    /// Index, within the service, of the real server the client network sticks to.
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

/// The slab as the wheel sees it while expiring at `now`: a template's deadline
/// is settled (see [`Template::effective_expiry`]) as it is read.
struct Settling<'a, A: Family> {
    slots: &'a mut Box<[Slot<A>]>,
    now: u64,
}

impl<A: Family> Timed for Settling<'_, A> {
    fn deadline(&mut self, index: u32) -> u64 {
        match self.slots.get_mut(index as usize) {
            Some(Slot::Live(t)) => t.effective_expiry(self.now),
            _ => 0,
        }
    }
    fn timer(&self, index: u32) -> TimerPos {
        self.slots.timer(index)
    }
    fn set_timer(&mut self, index: u32, pos: TimerPos) {
        self.slots.set_timer(index, pos);
    }
}

/// Outside expiry, the wheel reads a template's deadline as stored.
impl<A: Family> Timed for Box<[Slot<A>]> {
    fn deadline(&mut self, index: u32) -> u64 {
        match self.get(index as usize) {
            Some(Slot::Live(t)) => t.expiry,
            _ => 0,
        }
    }
    fn timer(&self, index: u32) -> TimerPos {
        match self.get(index as usize) {
            Some(Slot::Live(t)) => t.timer,
            _ => TimerPos::UNARMED,
        }
    }
    fn set_timer(&mut self, index: u32, pos: TimerPos) {
        if let Some(Slot::Live(t)) = self.get_mut(index as usize) {
            t.timer = pos;
        }
    }
}

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
            timer: TimerPos::UNARMED,
        });
        self.free_head = next;
        self.len += 1;
        let hash = self.hasher.hash_template(service, client);
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index
            .insert_unique(hash, index, |&v| slot_hash(slab, hasher, v));
        self.wheel.arm(&mut self.slab, index, expiry, now);
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
                self.wheel.rearm(&mut self.slab, id.0, now, now);
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
                self.wheel.rearm(&mut self.slab, id.0, now, now);
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
            let mut slab = Settling {
                slots: &mut self.slab,
                now,
            };
            let Some(index) = self.wheel.poll(&mut slab, now, &mut work) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEC: u64 = 1000;
    const P300: Duration = Duration::from_secs(300);

    fn table(capacity: usize) -> PersistTable<Ipv4Addr> {
        PersistTable::with_hasher(capacity, FlowHasher::with_seed(5)).unwrap()
    }

    fn ip(c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, c, d)
    }

    fn expire_all<A: Family>(t: &mut PersistTable<A>, now: u64) -> Vec<TemplateId> {
        let mut gone = Vec::new();
        t.expire(now, usize::MAX, |id, _| gone.push(id));
        gone
    }

    #[test]
    fn hit_within_the_netmask_only() {
        let mut t = table(8);
        let id = t.insert(1, ip(1, 7), 24, 3, P300, 0).unwrap();
        assert_eq!(t.get(id).unwrap().client(), ip(1, 0));
        assert_eq!(t.lookup(1, ip(1, 200), 24, SEC), Some((id, 3)));
        assert_eq!(t.lookup(1, ip(2, 7), 24, SEC), None);
        assert_eq!(t.lookup(2, ip(1, 7), 24, SEC), None, "other service");
        // /32: the exact client only.
        let exact = t.insert(2, ip(1, 7), 32, 4, P300, 0).unwrap();
        assert_eq!(t.lookup(2, ip(1, 7), 32, SEC), Some((exact, 4)));
        assert_eq!(t.lookup(2, ip(1, 8), 32, SEC), None);
        // One template per service and client network.
        assert_eq!(
            t.insert(1, ip(1, 99), 24, 5, P300, 0),
            Err(PersistError::TemplateExists)
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn ipv6_prefix() {
        let mut t: PersistTable<Ipv6Addr> =
            PersistTable::with_hasher(4, FlowHasher::with_seed(6)).unwrap();
        let a: Ipv6Addr = "2001:2:0:1::7".parse().unwrap();
        let b: Ipv6Addr = "2001:2:0:1:ffff::1".parse().unwrap();
        let c: Ipv6Addr = "2001:2:0:2::7".parse().unwrap();
        let id = t.insert(0, a, 64, 1, P300, 0).unwrap();
        assert_eq!(t.lookup(0, b, 64, 0), Some((id, 1)));
        assert_eq!(t.lookup(0, c, 64, 0), None);
    }

    #[test]
    fn lookup_refreshes_the_deadline() {
        let mut t = table(4);
        let id = t.insert(1, ip(1, 1), 32, 0, P300, 0).unwrap();
        assert_eq!(t.get(id).unwrap().expiry(), 300 * SEC);
        assert!(t.lookup(1, ip(1, 1), 32, 200 * SEC).is_some());
        assert_eq!(t.get(id).unwrap().expiry(), 500 * SEC);
        assert_eq!(expire_all(&mut t, 300 * SEC), []);
        assert_eq!(expire_all(&mut t, 500 * SEC - 1), []);
        assert_eq!(expire_all(&mut t, 500 * SEC), [id]);
        assert_eq!(t.lookup(1, ip(1, 1), 32, 500 * SEC), None);
        assert!(t.is_empty());
    }

    #[test]
    fn expires_only_a_timeout_after_the_last_connection() {
        let mut t = table(4);
        let id = t.insert(1, ip(1, 1), 32, 7, P300, 0).unwrap();
        t.hold(id).unwrap();
        t.hold(id).unwrap();
        // Held long past its timeout: stays, and keeps matching.
        assert_eq!(expire_all(&mut t, 10_000 * SEC), []);
        assert_eq!(t.lookup(1, ip(1, 1), 32, 10_000 * SEC), Some((id, 7)));
        t.release(id, 10_000 * SEC).unwrap();
        assert_eq!(expire_all(&mut t, 20_000 * SEC), []);
        assert_eq!(t.get(id).unwrap().conns(), 1);
        // The last connection ends at 20 000 s: the template lasts 300 s more.
        t.release(id, 20_000 * SEC).unwrap();
        assert_eq!(t.get(id).unwrap().expiry(), 20_300 * SEC);
        assert_eq!(expire_all(&mut t, 20_300 * SEC - 1), []);
        let mut handed = None;
        t.expire(20_300 * SEC, 8, |gone, tpl| {
            handed = Some((gone, tpl.real_server()))
        });
        assert_eq!(handed, Some((id, 7)));
        assert!(t.is_empty());
    }

    #[test]
    fn hold_and_release_errors() {
        let mut t = table(2);
        let id = t.insert(1, ip(1, 1), 32, 0, P300, 0).unwrap();
        assert_eq!(t.release(id, 0), Err(PersistError::NotHeld));
        let unknown = TemplateId(1);
        assert_eq!(t.hold(unknown), Err(PersistError::UnknownTemplate));
        assert_eq!(t.release(unknown, 0), Err(PersistError::UnknownTemplate));
        assert_eq!(
            t.invalidate(TemplateId(99), 0),
            Err(PersistError::UnknownTemplate)
        );
        assert_eq!(t.get(TemplateId(99)), None);
        assert_eq!(PersistError::NotHeld.reason(), "persist_not_held");
    }

    #[test]
    fn invalidating_a_real_server() {
        let mut t = table(8);
        let held = t.insert(1, ip(1, 1), 32, 3, P300, 0).unwrap();
        let idle = t.insert(1, ip(1, 2), 32, 3, P300, 0).unwrap();
        let other_rs = t.insert(1, ip(1, 3), 32, 4, P300, 0).unwrap();
        let other_svc = t.insert(2, ip(1, 1), 32, 3, P300, 0).unwrap();
        t.hold(held).unwrap();

        assert_eq!(t.invalidate_real_server(1, 3, 10 * SEC), 2);
        assert_eq!(
            t.invalidate_real_server(1, 3, 10 * SEC),
            0,
            "already invalid"
        );
        // Invalid templates no longer match; the others still do.
        assert_eq!(t.lookup(1, ip(1, 1), 32, 10 * SEC), None);
        assert_eq!(t.lookup(1, ip(1, 2), 32, 10 * SEC), None);
        assert_eq!(t.lookup(1, ip(1, 3), 32, 10 * SEC), Some((other_rs, 4)));
        assert_eq!(t.lookup(2, ip(1, 1), 32, 10 * SEC), Some((other_svc, 3)));
        assert!(!t.get(held).unwrap().is_valid());
        // The client is scheduled afresh and gets a new template right away.
        let fresh = t.insert(1, ip(1, 1), 32, 5, P300, 10 * SEC).unwrap();
        assert_ne!(fresh, held);
        assert_eq!(t.lookup(1, ip(1, 1), 32, 10 * SEC), Some((fresh, 5)));
        // The unheld invalid template goes at the next expiry; the held one stays
        // for its connection, however long, and goes when released.
        assert_eq!(expire_all(&mut t, 10 * SEC), [idle]);
        let mut gone = expire_all(&mut t, 5_000 * SEC);
        gone.sort_by_key(|id| id.index());
        let mut want = vec![fresh, other_rs, other_svc];
        want.sort_by_key(|id| id.index());
        assert_eq!(gone, want);
        assert!(t.get(held).is_some());
        t.release(held, 6_000 * SEC).unwrap();
        assert_eq!(expire_all(&mut t, 6_000 * SEC), [held]);
        assert!(t.is_empty());
    }

    #[test]
    fn invalidate_one_template() {
        let mut t = table(4);
        let id = t.insert(1, ip(1, 1), 32, 3, P300, 0).unwrap();
        t.invalidate(id, 5 * SEC).unwrap();
        t.invalidate(id, 5 * SEC).unwrap(); // idempotent
        assert_eq!(t.lookup(1, ip(1, 1), 32, 5 * SEC), None);
        assert_eq!(t.len(), 1);
        assert_eq!(expire_all(&mut t, 5 * SEC), [id]);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_refuses_and_keeps_templates() {
        let mut t = table(2);
        let a = t.insert(1, ip(1, 1), 32, 1, P300, 0).unwrap();
        let b = t.insert(1, ip(1, 2), 32, 2, P300, 0).unwrap();
        assert_eq!(
            t.insert(1, ip(1, 3), 32, 3, P300, 0),
            Err(PersistError::TableFull)
        );
        assert_eq!(t.lookup(1, ip(1, 1), 32, 0), Some((a, 1)));
        assert_eq!(t.lookup(1, ip(1, 2), 32, 0), Some((b, 2)));
        assert_eq!(t.lookup(1, ip(1, 3), 32, 0), None);
        // Expiry frees a slot for reuse.
        t.hold(b).unwrap();
        assert_eq!(expire_all(&mut t, 300 * SEC), [a]);
        let c = t.insert(1, ip(1, 3), 32, 3, P300, 300 * SEC).unwrap();
        assert_eq!(c, a, "slot reused");
        let listed: Vec<_> = t.iter().map(|(id, tpl)| (id, tpl.real_server())).collect();
        assert_eq!(listed, [(c, 3), (b, 2)]);
    }

    #[test]
    fn zero_timeout_template_survives_while_held() {
        let mut t = table(2);
        let id = t.insert(1, ip(1, 1), 32, 1, Duration::ZERO, 0).unwrap();
        t.hold(id).unwrap();
        for now in (0..10 * SEC).step_by(50) {
            assert_eq!(expire_all(&mut t, now), []);
        }
        t.release(id, 10 * SEC).unwrap();
        assert_eq!(expire_all(&mut t, 10 * SEC), [id]);
    }

    #[test]
    fn long_timeouts_saturate() {
        let mut t = table(1);
        let id = t.insert(1, ip(1, 1), 32, 1, Duration::MAX, 0).unwrap();
        assert_eq!(
            t.get(id).unwrap().timeout(),
            Duration::from_millis(u64::from(u32::MAX))
        );
    }

    #[test]
    fn sizing() {
        assert_eq!(
            PersistTable::<Ipv4Addr>::new(MAX_ENTRIES + 1).err(),
            Some(PersistError::CapacityTooLarge)
        );
        let mut empty = table(0);
        assert_eq!(
            empty.insert(1, ip(1, 1), 32, 1, P300, 0),
            Err(PersistError::TableFull)
        );
        let t = table(100_000);
        assert_eq!(t.capacity(), 100_000);
        assert_eq!(size_of::<Slot<Ipv4Addr>>(), 32);
        assert!(t.memory_bytes() < 100_000 * 64, "{}", t.memory_bytes());
    }
}
