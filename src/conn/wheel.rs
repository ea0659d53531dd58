//! A hashed timer wheel over slab indices, with lazy refresh.
//!
//! Time is in milliseconds from the caller's monotonic clock. The wheel has
//! [`SLOTS`] slots of [`TICK_MS`] each (16384 x 100 ms, about 27 minutes, longer
//! than every IPVS default timeout). An entry expiring at `e` ms is filed in the
//! slot of tick `ceil(e / TICK_MS)`, so when that tick is processed the deadline has
//! passed; entries are found at most one tick late. A deadline beyond the wheel's
//! span is filed in the last slot of the span and re-filed when it comes round.
//!
//! Refresh is lazy: the packet path only moves the deadline stored in the owner's
//! entry (later, never earlier); when the entry's slot comes round, [`TimerWheel::poll`]
//! reads the current deadline and re-files the entry if it moved. A busy flow thus
//! costs one re-file per timeout period, not one list operation per packet. When a
//! deadline moves earlier (a state with a shorter timeout), the owner re-files the
//! entry at once with [`TimerWheel::rearm`].
//!
//! Lists are intrusive and doubly linked through a `u32` pair per entry, kept here
//! in a parallel array sized at construction (nothing allocates afterwards). The
//! `prev` link of a list head holds its slot number tagged with [`HEAD`], so any
//! entry unlinks in O(1) without knowing its slot.

use crate::dpdk::{prefetch, HugeSlice, OutOfMemory};

/// Wheel granularity in milliseconds.
pub const TICK_MS: u64 = 100;
/// Number of slots; a power of two.
pub const SLOTS: usize = 1 << 14;
const SLOT_MASK: u64 = SLOTS as u64 - 1;

/// No entry (end of list, empty slot, or not armed).
const NIL: u32 = u32::MAX;
/// Tag in `prev` marking a list head; the low bits are the slot number. Entry
/// indices stay below it (the owners cap their capacity at `HEAD - 1`).
const HEAD: u32 = 1 << 31;

/// Largest capacity a wheel (and so a table) supports.
pub const MAX_ENTRIES: usize = (HEAD - 1) as usize;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

const UNARMED: Link = Link {
    prev: NIL,
    next: NIL,
};

/// The wheel. Entries are identified by their index in the owner's slab.
#[derive(Debug)]
pub(crate) struct TimerWheel {
    heads: HugeSlice<u32>,
    links: HugeSlice<Link>,
    /// First tick not yet processed.
    next_tick: u64,
    armed: usize,
}

impl TimerWheel {
    /// A wheel for entries `0..capacity` (at most [`MAX_ENTRIES`]).
    pub(crate) fn new(capacity: usize) -> Result<Self, OutOfMemory> {
        Ok(TimerWheel {
            heads: HugeSlice::filled(SLOTS, NIL)?,
            links: HugeSlice::filled(capacity.min(MAX_ENTRIES), UNARMED)?,
            next_tick: 0,
            armed: 0,
        })
    }

    /// Bytes allocated by the wheel.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.heads.len() * size_of::<u32>() + self.links.len() * size_of::<Link>()
    }

    /// Number of armed entries.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> usize {
        self.armed
    }

    #[cfg(test)]
    pub(crate) fn is_armed(&self, index: u32) -> bool {
        self.links[index as usize].prev != NIL
    }

    /// Requests the link of entry `index`, which is about to be armed.
    #[inline]
    pub(crate) fn prefetch(&self, index: u32) {
        if let Some(link) = self.links.get(index as usize) {
            prefetch(link);
        }
    }

    /// Files an unarmed entry to fire at `expiry`.
    pub(crate) fn arm(&mut self, index: u32, expiry: u64, now: u64) {
        if self.armed == 0 {
            // Nothing is pending, so every tick up to now is done.
            self.next_tick = self.next_tick.max(now / TICK_MS);
        }
        self.link(index, expiry);
    }

    /// Re-files an armed entry at an earlier (or any) `expiry`.
    pub(crate) fn rearm(&mut self, index: u32, expiry: u64, now: u64) {
        self.unlink(index);
        self.arm(index, expiry, now);
    }

    /// Removes an entry from its list; a no-op for an unarmed entry.
    pub(crate) fn unlink(&mut self, index: u32) {
        let Link { prev, next } = self.links[index as usize];
        if prev == NIL {
            return;
        }
        if prev & HEAD != 0 {
            self.heads[(prev & !HEAD) as usize] = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        }
        self.links[index as usize] = UNARMED;
        self.armed -= 1;
    }

    /// True when [`Self::poll`] at `now` would find nothing: a check for callers
    /// that set up work before polling, asked on every worker loop.
    #[inline]
    pub(crate) fn nothing_due(&self, now: u64) -> bool {
        // With nothing armed, `arm` brings `next_tick` forward itself.
        self.armed == 0 || now / TICK_MS < self.next_tick
    }

    /// Returns the next entry whose deadline has passed, unlinked, or `None` when no
    /// due entry is left or `work` ran out. Every entry examined costs one unit of
    /// `work`; `deadline` gives an entry's current deadline, and entries whose
    /// deadline moved past `now` are re-filed (lazy refresh). The caller frees or
    /// re-arms each entry returned.
    ///
    /// A list is a chain of dependent reads, one cache miss each when its entries
    /// lie scattered: the entry after the one taken gets its link prefetched here
    /// and is handed to `ahead` for the caller to prefetch its own data, so both
    /// arrive while the current entry is handled.
    pub(crate) fn poll(
        &mut self,
        now: u64,
        work: &mut usize,
        mut deadline: impl FnMut(u32) -> u64,
        mut ahead: impl FnMut(u32),
    ) -> Option<u32> {
        let now_tick = now / TICK_MS;
        if self.armed == 0 {
            self.next_tick = self.next_tick.max(now_tick);
            return None;
        }
        // After a long pause every pending entry is due: one lap covers them all.
        if now_tick >= self.next_tick + SLOTS as u64 {
            self.next_tick = now_tick + 1 - SLOTS as u64;
        }
        while self.next_tick <= now_tick {
            let slot = (self.next_tick & SLOT_MASK) as usize;
            loop {
                let head = self.heads[slot];
                if head == NIL {
                    break;
                }
                if *work == 0 {
                    return None;
                }
                *work -= 1;
                self.unlink(head);
                let next = self.heads[slot];
                if let Some(link) = self.links.get(next as usize) {
                    prefetch(link);
                    ahead(next);
                }
                let expiry = deadline(head);
                if expiry <= now {
                    return Some(head);
                }
                // Refreshed: its new tick is past now_tick, so never this slot.
                self.link(head, expiry);
            }
            self.next_tick += 1;
        }
        None
    }

    fn link(&mut self, index: u32, expiry: u64) {
        let tick = expiry
            .div_ceil(TICK_MS)
            .clamp(self.next_tick, self.next_tick + SLOTS as u64 - 1);
        let slot = (tick & SLOT_MASK) as u32;
        let head = self.heads[slot as usize];
        self.links[index as usize] = Link {
            prev: HEAD | slot,
            next: head,
        };
        if head != NIL {
            self.links[head as usize].prev = index;
        }
        self.heads[slot as usize] = index;
        self.armed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls everything due at `now` with deadlines from `deadlines`.
    fn drain(w: &mut TimerWheel, now: u64, deadlines: &[u64]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut work = usize::MAX;
        let nothing_due = w.nothing_due(now);
        while let Some(i) = w.poll(now, &mut work, |i| deadlines[i as usize], |_| {}) {
            out.push(i);
        }
        if nothing_due {
            assert!(out.is_empty(), "nothing_due at {now}, yet {out:?} fired");
        }
        out
    }

    #[test]
    fn poll_names_the_entry_it_will_look_at_next() {
        // Five entries in one slot, two in a later one: while the first slot drains,
        // `ahead` names the entry the next poll returns (for the caller's prefetch);
        // the last of a slot has none after it in that slot.
        let mut w = TimerWheel::new(8).unwrap();
        let deadlines = [1_000, 1_000, 1_000, 1_000, 1_000, 1_200, 1_200, 0];
        for i in 0..7u32 {
            w.arm(i, deadlines[i as usize], 0);
        }
        let mut work = usize::MAX;
        let mut returned = Vec::new();
        let mut hinted = Vec::new();
        loop {
            let mut hint = None;
            let Some(i) = w.poll(
                1_200,
                &mut work,
                |i| deadlines[i as usize],
                |n| hint = Some(n),
            ) else {
                break;
            };
            returned.push(i);
            hinted.push(hint);
        }
        assert_eq!(returned.len(), 7);
        for k in 0..7 {
            let same_slot_next = returned
                .get(k + 1)
                .filter(|&&n| deadlines[n as usize] == deadlines[returned[k] as usize]);
            assert_eq!(hinted[k], same_slot_next.copied(), "after {}", returned[k]);
        }
    }

    #[test]
    fn fires_in_deadline_order_and_not_before() {
        let mut w = TimerWheel::new(8).unwrap();
        let deadlines = [5_000, 1_000, 3_000, 1_050, 2_000_000, 0, 0, 0];
        for i in 0..5u32 {
            w.arm(i, deadlines[i as usize], 0);
        }
        assert_eq!(w.armed(), 5);
        assert_eq!(drain(&mut w, 999, &deadlines), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 1_000, &deadlines), [1]);
        // 1_050 is filed at tick 11: due from 1_100 on, never early.
        assert_eq!(drain(&mut w, 1_099, &deadlines), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 1_100, &deadlines), [3]);
        assert_eq!(drain(&mut w, 10_000, &deadlines), [2, 0]);
        assert_eq!(w.armed(), 1);
        // Past the wheel's span: re-filed on the way, fired on time.
        assert_eq!(drain(&mut w, 1_999_999, &deadlines), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 2_000_000, &deadlines), [4]);
        assert_eq!(w.armed(), 0);
    }

    #[test]
    fn lazy_refresh_refiles_instead_of_firing() {
        let mut w = TimerWheel::new(2).unwrap();
        let mut deadlines = [1_000, 1_000];
        w.arm(0, 1_000, 0);
        w.arm(1, 1_000, 0);
        deadlines[0] = 60_000; // refreshed without touching the wheel
        assert_eq!(drain(&mut w, 1_000, &deadlines), [1]);
        assert!(w.is_armed(0));
        assert_eq!(drain(&mut w, 59_999, &deadlines), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 60_000, &deadlines), [0]);
    }

    #[test]
    fn rearm_moves_a_deadline_earlier() {
        let mut w = TimerWheel::new(1).unwrap();
        let mut deadlines = [900_000];
        w.arm(0, deadlines[0], 0);
        deadlines[0] = 10_000;
        w.rearm(0, 10_000, 0);
        assert_eq!(w.armed(), 1);
        assert_eq!(drain(&mut w, 10_000, &deadlines), [0]);
    }

    #[test]
    fn work_budget_bounds_each_call() {
        let mut w = TimerWheel::new(10).unwrap();
        let deadlines = [500; 10];
        for i in 0..10 {
            w.arm(i, 500, 0);
        }
        let mut work = 3;
        let mut got = 0;
        while w
            .poll(500, &mut work, |i| deadlines[i as usize], |_| {})
            .is_some()
        {
            got += 1;
        }
        assert_eq!((got, work), (3, 0));
        assert_eq!(drain(&mut w, 500, &deadlines).len(), 7);
    }

    #[test]
    fn unlink_head_middle_tail_and_unarmed() {
        let mut w = TimerWheel::new(4).unwrap();
        let deadlines = [700; 4];
        for i in 0..4 {
            w.arm(i, 700, 0); // one slot: list 3, 2, 1, 0
        }
        w.unlink(3); // head
        w.unlink(1); // middle
        w.unlink(0); // tail
        w.unlink(0); // already unarmed: no-op
        assert_eq!(w.armed(), 1);
        assert!(!w.is_armed(0) && w.is_armed(2));
        assert_eq!(drain(&mut w, 700, &deadlines), [2]);
        // Re-arming after unlink works and the slot is consistent.
        w.arm(1, 800, 700);
        assert_eq!(drain(&mut w, 800, &deadlines), [1]);
    }

    #[test]
    fn catches_up_after_a_long_pause() {
        let mut w = TimerWheel::new(3).unwrap();
        let deadlines = [1_000, 2_000_000, 10_000_000];
        for i in 0..3 {
            w.arm(i, deadlines[i as usize], 0);
        }
        // Hours later: the two due entries come out, the third stays pending.
        let mut got = drain(&mut w, 5_000_000, &deadlines);
        got.sort();
        assert_eq!(got, [0, 1]);
        assert_eq!(w.armed(), 1);
        assert_eq!(drain(&mut w, 10_000_000, &deadlines), [2]);
    }

    #[test]
    fn idle_wheel_starts_at_the_current_time() {
        let mut w = TimerWheel::new(1).unwrap();
        let deadlines = [7_200_000_100];
        // A clock that is already large (uptime) does not make the wheel walk
        // from tick 0.
        w.arm(0, deadlines[0], 7_200_000_000);
        assert_eq!(w.next_tick, 72_000_000);
        assert_eq!(drain(&mut w, 7_200_000_099, &deadlines), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 7_200_000_100, &deadlines), [0]);
    }

    #[test]
    fn past_deadline_fires_at_next_poll() {
        let mut w = TimerWheel::new(1).unwrap();
        let deadlines = [3_000];
        let _ = drain(&mut w, 5_000, &deadlines);
        w.arm(0, 3_000, 5_000);
        assert_eq!(drain(&mut w, 5_000, &deadlines), [0]);
    }

    #[test]
    fn clock_going_backwards_does_nothing() {
        let mut w = TimerWheel::new(1).unwrap();
        let deadlines = [10_000];
        w.arm(0, 10_000, 9_000);
        assert_eq!(drain(&mut w, 1_000, &deadlines), Vec::<u32>::new());
        assert_eq!(drain(&mut w, u64::MAX, &deadlines), [0]);
    }

    #[test]
    fn memory_is_fixed_at_construction() {
        let w = TimerWheel::new(1000).unwrap();
        assert_eq!(w.memory_bytes(), SLOTS * 4 + 1000 * 8);
    }
}
