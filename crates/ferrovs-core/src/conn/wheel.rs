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
//! A slot holds its entries' indices in a stack of [`Chunk`]s, 14 to a cache line,
//! and every entry records where it is filed (a [`TimerPos`], kept in the owner's
//! entry through [`Timed`], so filing writes a line the owner writes anyway).
//! Expiry pops a slot's stack from the top: the indices of the next entries to
//! look at lie side by side, so their entries are requested several ahead instead
//! of being found one dependent cache miss at a time, as a linked list through
//! the entries would make them. An entry leaves a slot early (rearm, removal) by
//! taking the slot's top index into its place. Chunks come from a pool sized at
//! construction for the worst case, so nothing allocates afterwards and filing
//! never fails.

use ferrovs_mem::{prefetch, HugeSlice, OutOfMemory};

/// Wheel granularity in milliseconds.
pub const TICK_MS: u64 = 100;
/// Number of slots; a power of two.
pub const SLOTS: usize = 1 << 14;
const SLOT_MASK: u64 = SLOTS as u64 - 1;

/// Largest capacity a wheel (and so a table) supports.
pub const MAX_ENTRIES: usize = (1 << 31) - 1;

/// Indices a chunk holds; the other two words are its slot and the chunk below.
const PER_CHUNK: usize = 14;
const SLOT_WORD: usize = 14;
/// The chunk below in its slot's stack (NIL at the bottom); for a free chunk, the
/// next free one.
const BELOW_WORD: usize = 15;
/// How many entries ahead of the one it returns [`TimerWheel::poll`] names for
/// prefetching: enough handling time to cover a memory access.
const AHEAD: usize = 8;

/// No chunk (bottom of a stack, empty slot, end of the free list).
const NIL: u32 = u32::MAX;

/// One cache line of a slot's stack.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Chunk([u32; 16]);

/// Where an entry is filed: `chunk << 4 | offset`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TimerPos(u32);

impl TimerPos {
    /// Not filed. (Offset 15 never holds an index.)
    pub(crate) const UNARMED: TimerPos = TimerPos(u32::MAX);

    fn new(chunk: u32, offset: usize) -> Self {
        TimerPos(chunk << 4 | offset as u32)
    }
    fn chunk(self) -> usize {
        (self.0 >> 4) as usize
    }
    fn offset(self) -> usize {
        (self.0 & 15) as usize
    }
}

/// What the wheel needs of its owner's entries.
pub(crate) trait Timed {
    /// The entry's current deadline (the owner may settle it here); 0 for a free
    /// slot.
    fn deadline(&mut self, index: u32) -> u64;
    /// Where the entry is filed, [`TimerPos::UNARMED`] if nowhere.
    fn timer(&self, index: u32) -> TimerPos;
    /// Records where the entry is filed.
    fn set_timer(&mut self, index: u32, pos: TimerPos);
    /// Requests the entry's cache line: [`TimerWheel::poll`] names the entries it
    /// will look at next.
    fn prefetch(&self, _index: u32) {}
    /// Requests what the entry points at, once the entry's own line has had time
    /// to arrive ([`TimerWheel::poll`] names entries half as far ahead for this).
    fn prefetch_deep(&self, _index: u32) {}
}

/// The wheel. Entries are identified by their index in the owner's slab.
#[derive(Debug)]
pub(crate) struct TimerWheel {
    /// Per slot, the top of its stack: `chunk << 4 | indices in it (1..=14)`, or
    /// NIL when the slot is empty.
    tops: HugeSlice<u32>,
    chunks: HugeSlice<Chunk>,
    free_chunks: u32,
    /// First tick not yet processed.
    next_tick: u64,
    armed: usize,
}

impl TimerWheel {
    /// A wheel for entries `0..capacity` (at most [`MAX_ENTRIES`]).
    pub(crate) fn new(capacity: usize) -> Result<Self, OutOfMemory> {
        let capacity = capacity.min(MAX_ENTRIES);
        // Every chunk of a stack is full but its top one, so `armed` entries take at
        // most armed / 14 full chunks plus one top per slot in use.
        let chunks = capacity / PER_CHUNK + capacity.min(SLOTS) + 1;
        Ok(TimerWheel {
            tops: HugeSlice::filled(SLOTS, NIL)?,
            chunks: HugeSlice::from_fn(chunks, |i| {
                let mut words = [NIL; 16];
                if i + 1 < chunks {
                    words[BELOW_WORD] = i as u32 + 1;
                }
                Chunk(words)
            })?,
            free_chunks: 0,
            next_tick: 0,
            armed: 0,
        })
    }

    /// Bytes allocated by the wheel.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.tops.len() * size_of::<u32>() + self.chunks.len() * size_of::<Chunk>()
    }

    /// The slot `index` is filed in, if armed.
    #[cfg(test)]
    pub(crate) fn slot_of(&self, entries: &impl Timed, index: u32) -> Option<usize> {
        let pos = entries.timer(index);
        (pos != TimerPos::UNARMED).then(|| self.chunks[pos.chunk()].0[SLOT_WORD] as usize)
    }

    /// The slot a deadline is filed in (before the wheel has turned).
    #[cfg(test)]
    pub(crate) fn slot_for(expiry: u64) -> usize {
        (expiry.div_ceil(TICK_MS) & SLOT_MASK) as usize
    }

    /// Number of armed entries.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> usize {
        self.armed
    }

    /// Files an unarmed entry to fire at `expiry`.
    pub(crate) fn arm(&mut self, entries: &mut impl Timed, index: u32, expiry: u64, now: u64) {
        if self.armed == 0 {
            // Nothing is pending, so every tick up to now is done.
            self.next_tick = self.next_tick.max(now / TICK_MS);
        }
        self.file(entries, index, expiry);
    }

    /// Re-files an armed entry at an earlier (or any) `expiry`.
    pub(crate) fn rearm(&mut self, entries: &mut impl Timed, index: u32, expiry: u64, now: u64) {
        self.unlink(entries, index);
        self.arm(entries, index, expiry, now);
    }

    /// Takes an entry out of its slot; a no-op for an unarmed entry.
    pub(crate) fn unlink(&mut self, entries: &mut impl Timed, index: u32) {
        let pos = entries.timer(index);
        if pos == TimerPos::UNARMED {
            return;
        }
        let slot = self.chunks[pos.chunk()].0[SLOT_WORD] as usize;
        let top = self.pop(slot);
        if top != index {
            // The slot's top index fills the hole.
            self.chunks[pos.chunk()].0[pos.offset()] = top;
            entries.set_timer(top, pos);
        }
        entries.set_timer(index, TimerPos::UNARMED);
        self.armed -= 1;
    }

    /// True when [`Self::poll`] at `now` would find nothing: a check for callers
    /// that set up work before polling, asked on every worker loop.
    #[inline]
    pub(crate) fn nothing_due(&self, now: u64) -> bool {
        // With nothing armed, `arm` brings `next_tick` forward itself.
        self.armed == 0 || now / TICK_MS < self.next_tick
    }

    /// Returns the next entry whose deadline has passed, unarmed, or `None` when no
    /// due entry is left or `work` ran out. Every entry examined costs one unit of
    /// `work`; entries whose deadline moved past `now` are re-filed (lazy
    /// refresh). The caller frees or re-arms each entry returned. Within a tick,
    /// entries come in no particular order.
    pub(crate) fn poll(
        &mut self,
        entries: &mut impl Timed,
        now: u64,
        work: &mut usize,
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
            while self.tops[slot] != NIL {
                if *work == 0 {
                    return None;
                }
                *work -= 1;
                self.request_ahead(entries, slot);
                let index = self.pop(slot);
                entries.set_timer(index, TimerPos::UNARMED);
                self.armed -= 1;
                let expiry = entries.deadline(index);
                if expiry <= now {
                    return Some(index);
                }
                // Refreshed: its new tick is past now_tick, so never this slot.
                self.file(entries, index, expiry);
            }
            self.next_tick += 1;
        }
        None
    }

    /// Names for prefetching the entry [`AHEAD`] below the top of `slot`'s stack,
    /// and the chunk below the top one as the pops approach it.
    #[inline]
    fn request_ahead(&self, entries: &impl Timed, slot: usize) {
        let top = self.tops[slot];
        let chunk = &self.chunks[(top >> 4) as usize].0;
        let len = (top & 15) as usize;
        let below = chunk[BELOW_WORD];
        if len > AHEAD / 2 {
            entries.prefetch_deep(chunk[len - 1 - AHEAD / 2]);
        }
        if len > AHEAD {
            entries.prefetch(chunk[len - 1 - AHEAD]);
            if len == PER_CHUNK {
                if let Some(c) = self.chunks.get(below as usize) {
                    prefetch(c);
                }
            }
        } else if let Some(c) = self.chunks.get(below as usize) {
            entries.prefetch(c.0[PER_CHUNK + len - 1 - AHEAD]);
        }
    }

    /// Removes and returns the top index of a non-empty slot.
    fn pop(&mut self, slot: usize) -> u32 {
        let top = self.tops[slot];
        let len = (top & 15) as usize;
        let words = &mut self.chunks[(top >> 4) as usize].0;
        let index = words[len - 1];
        self.tops[slot] = if len > 1 {
            top - 1
        } else {
            // The chunk is empty: back to the pool, the one below becomes the top.
            let below = words[BELOW_WORD];
            words[BELOW_WORD] = self.free_chunks;
            self.free_chunks = top >> 4;
            match below {
                NIL => NIL,
                below => below << 4 | PER_CHUNK as u32,
            }
        };
        index
    }

    fn file(&mut self, entries: &mut impl Timed, index: u32, expiry: u64) {
        let tick = expiry
            .div_ceil(TICK_MS)
            .clamp(self.next_tick, self.next_tick + SLOTS as u64 - 1);
        let slot = (tick & SLOT_MASK) as usize;
        let top = self.tops[slot];
        let pos = if top != NIL && (top & 15) < PER_CHUNK as u32 {
            self.tops[slot] = top + 1;
            TimerPos::new(top >> 4, (top & 15) as usize)
        } else {
            // Room by construction: see `new`.
            let chunk = self.free_chunks;
            debug_assert_ne!(chunk, NIL, "an entry armed twice");
            let words = &mut self.chunks[chunk as usize].0;
            self.free_chunks = words[BELOW_WORD];
            words[SLOT_WORD] = slot as u32;
            words[BELOW_WORD] = if top == NIL { NIL } else { top >> 4 };
            self.tops[slot] = chunk << 4 | 1;
            TimerPos::new(chunk, 0)
        };
        self.chunks[pos.chunk()].0[pos.offset()] = index;
        entries.set_timer(index, pos);
        self.armed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The owner's side for tests: a deadline and a filing position per entry, and
    /// the entries named for prefetching.
    struct Entries {
        deadlines: Vec<u64>,
        timers: Vec<TimerPos>,
        named: std::cell::RefCell<Vec<u32>>,
    }

    impl Entries {
        fn new(deadlines: &[u64]) -> Self {
            Entries {
                deadlines: deadlines.to_vec(),
                timers: vec![TimerPos::UNARMED; deadlines.len()],
                named: Default::default(),
            }
        }
        fn is_armed(&self, index: u32) -> bool {
            self.timers[index as usize] != TimerPos::UNARMED
        }
    }

    impl Timed for Entries {
        fn deadline(&mut self, index: u32) -> u64 {
            self.deadlines[index as usize]
        }
        fn timer(&self, index: u32) -> TimerPos {
            self.timers[index as usize]
        }
        fn set_timer(&mut self, index: u32, pos: TimerPos) {
            self.timers[index as usize] = pos;
        }
        fn prefetch(&self, index: u32) {
            self.named.borrow_mut().push(index);
        }
    }

    /// Arms entry `i` at its deadline in `e`.
    fn arm(w: &mut TimerWheel, e: &mut Entries, i: u32, now: u64) {
        let d = e.deadlines[i as usize];
        w.arm(e, i, d, now);
    }

    /// Polls everything due at `now`.
    fn drain(w: &mut TimerWheel, e: &mut Entries, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let mut work = usize::MAX;
        let nothing_due = w.nothing_due(now);
        while let Some(i) = w.poll(e, now, &mut work) {
            out.push(i);
        }
        if nothing_due {
            assert!(out.is_empty(), "nothing_due at {now}, yet {out:?} fired");
        }
        check(w, e);
        out
    }

    /// Every armed entry's position holds its index, in a slot whose stack is
    /// well formed; the chunks in stacks and the free ones add up to the pool.
    fn check(w: &TimerWheel, e: &Entries) {
        let mut in_stacks = 0;
        let mut filed = 0;
        for slot in 0..SLOTS {
            let mut top = w.tops[slot];
            let mut len = (top & 15) as usize;
            while top != NIL {
                let words = &w.chunks[(top >> 4) as usize].0;
                assert!(
                    (1..=PER_CHUNK).contains(&len),
                    "slot {slot}: {len} in a chunk"
                );
                assert_eq!(words[SLOT_WORD] as usize, slot);
                for (offset, &i) in words[..len].iter().enumerate() {
                    assert_eq!(e.timers[i as usize], TimerPos::new(top >> 4, offset));
                }
                filed += len;
                in_stacks += 1;
                top = match words[BELOW_WORD] {
                    NIL => NIL,
                    below => below << 4 | PER_CHUNK as u32,
                };
                len = PER_CHUNK;
            }
        }
        let armed = e.timers.iter().filter(|&&t| t != TimerPos::UNARMED).count();
        assert_eq!((filed, armed), (w.armed, w.armed));
        let mut free = 0;
        let mut c = w.free_chunks;
        while c != NIL {
            free += 1;
            c = w.chunks[c as usize].0[BELOW_WORD];
        }
        assert_eq!(in_stacks + free, w.chunks.len());
    }

    #[test]
    fn poll_names_entries_ahead_of_the_ones_it_returns() {
        // 40 entries in one slot (three chunks): while they drain, each poll names
        // the entry returned AHEAD polls later, across chunk boundaries.
        let n = 40;
        let mut e = Entries::new(&vec![1_000; n]);
        let mut w = TimerWheel::new(n).unwrap();
        for i in 0..n as u32 {
            arm(&mut w, &mut e, i, 0);
        }
        let returned = drain(&mut w, &mut e, 1_000);
        let named = e.named.take();
        assert_eq!(returned.len(), n);
        assert_eq!(named, returned[AHEAD..], "named ahead");
        // A stack: the last filed comes out first.
        assert_eq!(returned, (0..n as u32).rev().collect::<Vec<_>>());
    }

    #[test]
    fn fires_in_deadline_order_and_not_before() {
        let mut e = Entries::new(&[5_000, 1_000, 3_000, 1_050, 2_000_000, 0, 0, 0]);
        let mut w = TimerWheel::new(8).unwrap();
        for i in 0..5u32 {
            arm(&mut w, &mut e, i, 0);
        }
        assert_eq!(w.armed(), 5);
        check(&w, &e);
        assert_eq!(drain(&mut w, &mut e, 999), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut e, 1_000), [1]);
        // 1_050 is filed at tick 11: due from 1_100 on, never early.
        assert_eq!(drain(&mut w, &mut e, 1_099), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut e, 1_100), [3]);
        assert_eq!(drain(&mut w, &mut e, 10_000), [2, 0]);
        assert_eq!(w.armed(), 1);
        // Past the wheel's span: re-filed on the way, fired on time.
        assert_eq!(drain(&mut w, &mut e, 1_999_999), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut e, 2_000_000), [4]);
        assert_eq!(w.armed(), 0);
        assert!(!e.is_armed(4));
    }

    #[test]
    fn lazy_refresh_refiles_instead_of_firing() {
        let mut e = Entries::new(&[1_000, 1_000]);
        let mut w = TimerWheel::new(2).unwrap();
        arm(&mut w, &mut e, 0, 0);
        arm(&mut w, &mut e, 1, 0);
        e.deadlines[0] = 60_000; // refreshed without touching the wheel
        assert_eq!(drain(&mut w, &mut e, 1_000), [1]);
        assert!(e.is_armed(0));
        assert_eq!(drain(&mut w, &mut e, 59_999), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut e, 60_000), [0]);
    }

    #[test]
    fn rearm_moves_a_deadline_earlier() {
        let mut e = Entries::new(&[900_000]);
        let mut w = TimerWheel::new(1).unwrap();
        arm(&mut w, &mut e, 0, 0);
        e.deadlines[0] = 10_000;
        w.rearm(&mut e, 0, 10_000, 0);
        assert_eq!(w.armed(), 1);
        check(&w, &e);
        assert_eq!(drain(&mut w, &mut e, 10_000), [0]);
    }

    #[test]
    fn work_budget_bounds_each_call() {
        let mut e = Entries::new(&[500; 10]);
        let mut w = TimerWheel::new(10).unwrap();
        for i in 0..10 {
            arm(&mut w, &mut e, i, 0);
        }
        let mut work = 3;
        let mut got = 0;
        while w.poll(&mut e, 500, &mut work).is_some() {
            got += 1;
        }
        assert_eq!((got, work), (3, 0));
        assert_eq!(drain(&mut w, &mut e, 500).len(), 7);
    }

    #[test]
    fn unlink_from_top_middle_bottom_and_unarmed() {
        // 30 entries in one slot: three chunks (14, 14, 2).
        let mut e = Entries::new(&[700; 30]);
        let mut w = TimerWheel::new(30).unwrap();
        for i in 0..30 {
            arm(&mut w, &mut e, i, 0);
        }
        for i in [29, 13, 0, 14, 27, 28] {
            // top, end of the bottom chunk, bottom, start of the middle one, and the
            // top chunk emptied
            w.unlink(&mut e, i);
            assert!(!e.is_armed(i));
            check(&w, &e);
        }
        w.unlink(&mut e, 0); // already unarmed: a no-op
        assert_eq!(w.armed(), 24);
        let mut got = drain(&mut w, &mut e, 700);
        got.sort_unstable();
        let want: Vec<u32> = (0..30)
            .filter(|i| ![29, 13, 0, 14, 27, 28].contains(i))
            .collect();
        assert_eq!(got, want);
        // Re-arming after unlink works and the slot is consistent.
        e.deadlines[1] = 800;
        arm(&mut w, &mut e, 1, 700);
        assert_eq!(drain(&mut w, &mut e, 800), [1]);
    }

    #[test]
    fn catches_up_after_a_long_pause() {
        let mut e = Entries::new(&[1_000, 2_000_000, 10_000_000]);
        let mut w = TimerWheel::new(3).unwrap();
        for i in 0..3 {
            arm(&mut w, &mut e, i, 0);
        }
        // Hours later: the two due entries come out, the third stays pending.
        let mut got = drain(&mut w, &mut e, 5_000_000);
        got.sort();
        assert_eq!(got, [0, 1]);
        assert_eq!(w.armed(), 1);
        assert_eq!(drain(&mut w, &mut e, 10_000_000), [2]);
    }

    #[test]
    fn idle_wheel_starts_at_the_current_time() {
        let mut e = Entries::new(&[7_200_000_100]);
        let mut w = TimerWheel::new(1).unwrap();
        // A clock that is already large (uptime) does not make the wheel walk
        // from tick 0.
        w.arm(&mut e, 0, 7_200_000_100, 7_200_000_000);
        assert_eq!(w.next_tick, 72_000_000);
        assert_eq!(drain(&mut w, &mut e, 7_200_000_099), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut e, 7_200_000_100), [0]);
    }

    #[test]
    fn past_deadline_fires_at_next_poll() {
        let mut e = Entries::new(&[3_000]);
        let mut w = TimerWheel::new(1).unwrap();
        let _ = drain(&mut w, &mut e, 5_000);
        w.arm(&mut e, 0, 3_000, 5_000);
        assert_eq!(drain(&mut w, &mut e, 5_000), [0]);
    }

    #[test]
    fn clock_going_backwards_does_nothing() {
        let mut e = Entries::new(&[10_000]);
        let mut w = TimerWheel::new(1).unwrap();
        w.arm(&mut e, 0, 10_000, 9_000);
        assert_eq!(drain(&mut w, &mut e, 1_000), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut e, u64::MAX), [0]);
    }

    #[test]
    fn a_full_wheel_in_one_slot_and_in_every_slot() {
        // The chunk pool's two worst cases: every entry in one slot (all chunks
        // full), and entries spread so that every slot holds a chunk of its own.
        for spread in [false, true] {
            let n = SLOTS + 100;
            let deadlines: Vec<u64> = (0..n as u64)
                .map(|i| {
                    if spread {
                        (i % SLOTS as u64 + 1) * TICK_MS
                    } else {
                        100
                    }
                })
                .collect();
            let mut e = Entries::new(&deadlines);
            let mut w = TimerWheel::new(n).unwrap();
            for i in 0..n as u32 {
                arm(&mut w, &mut e, i, 0);
            }
            check(&w, &e);
            let got = drain(&mut w, &mut e, SLOTS as u64 * TICK_MS);
            assert_eq!(got.len(), n);
            assert_eq!(w.armed(), 0);
        }
    }

    #[test]
    fn randomised_against_a_model() {
        // Arm, rearm, unlink, refresh lazily and poll at random; a poll with no
        // work limit returns every armed entry whose deadline's tick has come and
        // none whose deadline is ahead, and the stacks stay well formed throughout.
        const N: usize = 300;
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut e = Entries::new(&[0; N]);
        let mut w = TimerWheel::new(N).unwrap();
        let mut now = 1_000_000u64;
        for round in 0..20_000 {
            let i = next(N as u64) as u32;
            match next(10) {
                0..=3 if !e.is_armed(i) => {
                    e.deadlines[i as usize] = now + next(30_000);
                    arm(&mut w, &mut e, i, now);
                }
                4 if e.is_armed(i) => {
                    e.deadlines[i as usize] = now + next(5_000);
                    let d = e.deadlines[i as usize];
                    w.rearm(&mut e, i, d, now);
                }
                5 if e.is_armed(i) => w.unlink(&mut e, i),
                6 if e.is_armed(i) => {
                    let d = &mut e.deadlines[i as usize];
                    *d += next(20_000);
                }
                7 => {
                    now += next(3_000);
                    let now_tick = now / TICK_MS;
                    let armed: Vec<u32> = (0..N as u32).filter(|&j| e.is_armed(j)).collect();
                    let got = drain(&mut w, &mut e, now);
                    for j in armed {
                        let deadline = e.deadlines[j as usize];
                        let fired = got.contains(&j);
                        // Due by its tick: fired. Not yet due: kept. In between (a
                        // refreshed deadline that passed before its new tick came
                        // round, found at its old tick): either.
                        if deadline.div_ceil(TICK_MS) <= now_tick {
                            assert!(
                                fired,
                                "round {round}: {j} (deadline {deadline}) not fired at {now}"
                            );
                        } else if deadline > now {
                            assert!(
                                !fired,
                                "round {round}: {j} (deadline {deadline}) fired at {now}"
                            );
                        }
                        assert_eq!(e.is_armed(j), !fired);
                    }
                }
                _ => {}
            }
            if round % 97 == 0 {
                check(&w, &e);
            }
        }
    }

    #[test]
    fn memory_is_fixed_at_construction() {
        let w = TimerWheel::new(1000).unwrap();
        assert_eq!(w.memory_bytes(), SLOTS * 4 + (1000 / 14 + 1000 + 1) * 64);
        let w = TimerWheel::new(1_000_000).unwrap();
        assert_eq!(
            w.memory_bytes(),
            SLOTS * 4 + (1_000_000 / 14 + SLOTS + 1) * 64
        );
    }
}
