//! Home slots: where a connection is placed in the slab and where a lookup
//! starts. A new connection takes its inbound key's *home slot* (picked by the
//! key's hash) when that is free, so that in a lightly loaded table most packets
//! find their connection on that one cache line without reading the index; the
//! burst path requests each packet's first line ahead of its lookup.

use super::*;

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

impl<A: Family> ConnTable<A> {
    /// The slot a connection whose key has this hash takes when it is free (see
    /// [`Self::insert_prepared`]). Multiply-shift on the hash's low half: the
    /// index bucket comes from the high half, so the two do not follow each other.
    #[inline(always)]
    pub(super) fn home_slot(&self, hash: u64) -> usize {
        ((u128::from(hash.rotate_left(32)) * self.slab.len() as u128) >> 64) as usize
    }

    /// Which line a burst's lookups start from: the home slot while the table is
    /// loaded lightly enough that nearly every connection sits in its own (a
    /// table at an eighth of its capacity or less: about 94% do), else the index
    /// bucket, which finds a connection wherever it is. Home first at a higher
    /// load sent too many packets on from a home miss to their bucket and then
    /// their entry, one read after the other.
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

    /// Takes a free slot for a connection with these key hashes: its inbound
    /// key's home slot if free, else its outbound key's, else the first free
    /// slot after its inbound home. A connection in its home slot is found by
    /// [`Self::candidate`] on one cache line, without the index. The slot's entry
    /// stays `Free` until the caller fills it.
    pub(super) fn claim_slot(
        &mut self,
        in_hash: u64,
        out_hash: Option<u64>,
    ) -> Result<u32, ConnError> {
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
}
