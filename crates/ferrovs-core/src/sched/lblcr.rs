//! lblcr: locality-based least-connection with replication as IPVS
//! `ip_vs_lblcr.c`.
//!
//! A table maps a destination address to a *set* of servers (most recently added
//! first, as IPVS adds to the head of its list) and the time the set last changed
//! (IPVS `set->lastmod`). A new connection to a known destination:
//!
//! 1. takes the set's weighted least-connection member that can take it (smallest
//!    `(active * 256 + inactive) / weight`, ties to the most recently added);
//! 2. if the set has more than one member and has not changed for
//!    [`EXPIRATION_MS`](super::locality::EXPIRATION_MS) (IPVS `lblcr_expiration`, 24
//!    hours: `time_after(now, lastmod + expiration)`), its most loaded member with a
//!    weight is dropped, whether or not it is in service (the choice of step 1 stands,
//!    as in IPVS, even if it is the member just dropped);
//! 3. if step 1 found a member and it is not overloaded ([`is_overloaded`]), that
//!    is the server; otherwise the server is chosen by weighted least connection
//!    over the whole service and added to the set.
//!
//! A destination not in the table gets the weighted least-connection server and a
//! set of that one. Adding or dropping a member stamps the set's time; adding one
//! already there does not. Every lookup that finds the entry refreshes its last use.
//! Table size, entry expiry and eviction: see `locality`.
//!
//! Differences from IPVS:
//! - a set holds at most [`SET_MAX`] servers (IPVS allocates members without a
//!   bound, up to every server of the service). When a full set would grow, the
//!   connection goes to the server chosen over the whole service and the set stays
//!   as it is, as IPVS does when it cannot allocate a member;
//! - a server that leaves the service leaves every set at the rebuild (IPVS keeps it
//!   as an unusable member until the shrink rule drops it);
//! - as in lblc, `is_overloaded` looks for spare room only on servers that take new
//!   connections.

use super::least::{conn_overhead, heavier, wlc};
use super::locality::{ids_of, is_overloaded, remap, LocalityTable, EXPIRATION_MS, TABLE_ENTRIES};
use super::{Candidate, FlowHint, SchedError, ServerId, NO_SERVER};

/// Most servers in one destination's set.
pub(super) const SET_MAX: usize = 16;

/// One destination's servers (IPVS `ip_vs_dest_set`).
#[derive(Debug, Clone, Copy, Default)]
struct ServerSet {
    /// Slice positions, oldest first; `members[..len]` are live.
    members: [u32; SET_MAX],
    /// Number of members.
    len: u8,
    /// When a member was last added or dropped, in ms.
    lastmod: u64,
}

impl ServerSet {
    /// A set of one server.
    fn of(server: u32, now: u64) -> Self {
        let mut set = ServerSet {
            lastmod: now,
            ..ServerSet::default()
        };
        set.members[0] = server;
        set.len = 1;
        set
    }

    /// The members, most recently added first (IPVS's list order).
    #[inline]
    fn newest_first(&self) -> impl Iterator<Item = u32> + '_ {
        self.members[..usize::from(self.len)].iter().rev().copied()
    }

    /// `ip_vs_dest_set_insert` with its duplicate check: a new member is added
    /// and stamps the set's time; one already there changes nothing. A full set
    /// takes no new member.
    #[inline]
    fn insert(&mut self, server: u32, now: u64) {
        let len = usize::from(self.len);
        if self.members[..len].contains(&server) || len == SET_MAX {
            return;
        }
        self.members[len] = server;
        self.len += 1;
        self.lastmod = now;
    }

    /// `ip_vs_dest_set_erase`: drops the member and stamps the set's time.
    #[inline]
    fn erase(&mut self, server: u32, now: u64) {
        let len = usize::from(self.len);
        if let Some(p) = self.members[..len].iter().position(|&m| m == server) {
            self.members.copy_within(p + 1..len, p);
            self.len -= 1;
            self.lastmod = now;
        }
    }

    /// `ip_vs_dest_set_min`: the weighted least-connection member that takes new
    /// connections; ties to the most recently added.
    #[inline]
    fn least(&self, servers: &[Candidate]) -> Option<usize> {
        let mut least: Option<(usize, u64, u32)> = None;
        for m in self.newest_first() {
            let i = m as usize;
            let Some(s) = servers.get(i).filter(|s| s.takes_new()) else {
                continue;
            };
            let oh = conn_overhead(s);
            if least.is_none_or(|(_, loh, lw)| heavier(loh, lw, oh, s.weight)) {
                least = Some((i, oh, s.weight));
            }
        }
        least.map(|(i, _, _)| i)
    }

    /// `ip_vs_dest_set_max`: the weighted most-connection member with a weight,
    /// in service or not; ties to the most recently added.
    #[inline]
    fn most(&self, servers: &[Candidate]) -> Option<u32> {
        let mut most: Option<(u32, u64, u32)> = None;
        for m in self.newest_first() {
            let Some(s) = servers.get(m as usize).filter(|s| s.weight > 0) else {
                continue;
            };
            let oh = conn_overhead(s);
            if most.is_none_or(|(_, moh, mw)| heavier(oh, s.weight, moh, mw)) {
                most = Some((m, oh, s.weight));
            }
        }
        most.map(|(m, _, _)| m)
    }
}

/// The lblcr destination table.
#[derive(Debug, Clone)]
pub(super) struct Lblcr {
    /// Destination -> its server set.
    table: LocalityTable<ServerSet>,
    /// Server ids by slice position, as of the last build.
    ids: Vec<ServerId>,
    /// False after a failed rebuild: no picks until a good one.
    valid: bool,
}

impl Lblcr {
    pub(super) fn new(servers: &[Candidate]) -> Result<Self, SchedError> {
        Self::with_capacity(servers, TABLE_ENTRIES)
    }

    fn with_capacity(servers: &[Candidate], capacity: usize) -> Result<Self, SchedError> {
        Ok(Lblcr {
            table: LocalityTable::new(capacity),
            ids: ids_of(servers)?,
            valid: true,
        })
    }

    /// Points every set's members at their servers' new positions and drops the
    /// servers that left; weights do not touch the table.
    pub(super) fn rebuild(&mut self, servers: &[Candidate]) -> Result<(), SchedError> {
        let ids = match ids_of(servers) {
            Ok(ids) => ids,
            Err(e) => {
                self.table.clear();
                self.ids.clear();
                self.valid = false;
                return Err(e);
            }
        };
        let map = remap(&self.ids, &ids);
        self.table.for_each_mut(|set| {
            let mut kept = 0;
            for k in 0..usize::from(set.len) {
                let to = map
                    .get(set.members[k] as usize)
                    .copied()
                    .unwrap_or(NO_SERVER);
                if to != NO_SERVER {
                    set.members[kept] = to;
                    kept += 1;
                }
            }
            set.len = kept as u8;
        });
        self.ids = ids;
        self.valid = true;
        Ok(())
    }

    #[inline]
    pub(super) fn pick(&mut self, servers: &[Candidate], flow: &FlowHint) -> Option<usize> {
        if !self.valid {
            return None;
        }
        let now = flow.now_ms;
        self.table.reap(now);
        let Some(id) = self.table.lookup(flow.dst, now) else {
            let i = wlc(servers)?;
            self.table
                .insert(flow.dst, now, ServerSet::of(i as u32, now));
            return Some(i);
        };
        let set = self.table.value_mut(id);
        let least = set.least(servers);
        if set.len > 1 && now > set.lastmod.saturating_add(EXPIRATION_MS) {
            if let Some(m) = set.most(servers) {
                set.erase(m, now);
            }
        }
        if let Some(i) = least.filter(|&i| !is_overloaded(&servers[i], servers)) {
            return Some(i);
        }
        let i = wlc(servers)?;
        set.insert(i as u32, now);
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::locality::EXPIRATION_MS as DAY;
    use super::super::testutil::*;
    use super::*;
    use std::net::IpAddr;

    const HOUR: u64 = 60 * 60 * 1000;

    fn to(dst: IpAddr, now_ms: u64) -> FlowHint {
        let mut f = flow_from(client_v4(1), 1234);
        f.dst = dst;
        f.now_ms = now_ms;
        f
    }

    fn dst(n: u32) -> IpAddr {
        client_v4(0x20_0000 + n)
    }

    /// The set of `d`, newest first, and its time (looks it up at `now`).
    fn set_of(s: &mut Lblcr, d: IpAddr, now: u64) -> (Vec<u32>, u64) {
        let id = s.table.lookup(d, now).expect("destination in the table");
        let set = s.table.value(id);
        (set.newest_first().collect(), set.lastmod)
    }

    #[test]
    fn new_destination_gets_a_set_of_the_wlc_server() {
        let mut list = servers(&[1, 2, 1]);
        list[0].active = 1;
        list[1].active = 1; // 256 / 2: the lightest loaded one
        list[2].active = 1;
        let mut s = Lblcr::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 5)), Some(1));
        assert_eq!(set_of(&mut s, dst(1), 5), (vec![1], 5));
    }

    #[test]
    fn set_grows_when_its_choice_is_overloaded() {
        let mut list = servers(&[2, 2, 2]);
        let mut s = Lblcr::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
        // Server 0 over its weight while server 1 has fewer than half its weight.
        list[0].active = 3;
        list[2].active = 1;
        assert_eq!(s.pick(&list, &to(dst(1), 10)), Some(1));
        assert_eq!(set_of(&mut s, dst(1), 10), (vec![1, 0], 10));
        // Now the set's least loaded member is taken, not server 2, lighter but
        // not in the set.
        list[1].active = 2;
        assert_eq!(s.pick(&list, &to(dst(1), 20)), Some(1));
        // Server 1 over its weight too, server 2 with room: the set grows again.
        list[1].active = 3;
        list[2].active = 0;
        assert_eq!(s.pick(&list, &to(dst(1), 30)), Some(2));
        assert_eq!(set_of(&mut s, dst(1), 30), (vec![2, 1, 0], 30));
    }

    #[test]
    fn overloaded_without_room_elsewhere_stays_in_the_set() {
        let mut list = servers(&[1, 1]);
        let mut s = Lblcr::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
        list[0].active = 9;
        list[1].active = 1; // 2 is not below weight 1: no room
        assert_eq!(s.pick(&list, &to(dst(1), 1)), Some(0));
        assert_eq!(set_of(&mut s, dst(1), 1).0, [0]);
    }

    #[test]
    fn set_ties_go_to_the_most_recently_added() {
        let mut list = servers(&[2, 2]);
        let mut s = Lblcr::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
        list[0].active = 3;
        assert_eq!(s.pick(&list, &to(dst(1), 1)), Some(1));
        // Equal loads: IPVS's list has server 1 first.
        list[0].active = 1;
        list[1].active = 1;
        assert_eq!(s.pick(&list, &to(dst(1), 2)), Some(1));
    }

    #[test]
    fn unusable_members_are_skipped() {
        let mut list = servers(&[2, 2, 2]);
        let mut s = Lblcr::new(&list).unwrap();
        s.pick(&list, &to(dst(1), 0)).unwrap();
        list[0].active = 3;
        assert_eq!(s.pick(&list, &to(dst(1), 1)), Some(1));
        // The newest member out of service, the other drained: no member can
        // take it, so wlc picks over the service and the set grows.
        list[1].available = false;
        list[0].weight = 0;
        list[0].active = 0;
        assert_eq!(s.pick(&list, &to(dst(1), 2)), Some(2));
        assert_eq!(set_of(&mut s, dst(1), 2).0, [2, 1, 0]);
        // Nobody at all: no server, the set unchanged.
        list[2].available = false;
        assert_eq!(s.pick(&list, &to(dst(1), 3)), None);
        assert_eq!(set_of(&mut s, dst(1), 3), (vec![2, 1, 0], 2));
    }

    /// A set of servers 1 (newest) and 0, last changed at time 10.
    fn two_member_set(list: &mut [Candidate]) -> Lblcr {
        let mut s = Lblcr::new(list).unwrap();
        s.pick(list, &to(dst(1), 0)).unwrap();
        list[0].active = 3;
        assert_eq!(s.pick(list, &to(dst(1), 10)), Some(1));
        list[0].active = 0;
        s
    }

    /// Picks every hour from `from` to `until` (keeps the entry alive).
    fn keep_using(s: &mut Lblcr, list: &[Candidate], from: u64, until: u64) {
        let mut t = from;
        while t <= until {
            s.pick(list, &to(dst(1), t)).unwrap();
            t += HOUR;
        }
    }

    #[test]
    fn set_sheds_its_most_loaded_member_after_a_day_unchanged() {
        let mut list = servers(&[2, 2]);
        let mut s = two_member_set(&mut list);
        list[0].inactive = 10; // server 0 more loaded: 10 vs 0
        keep_using(&mut s, &list, 11, 10 + DAY);
        // At lastmod + DAY exactly nothing happens (time_after is strict).
        assert_eq!(s.pick(&list, &to(dst(1), 10 + DAY)), Some(1));
        assert_eq!(set_of(&mut s, dst(1), 10 + DAY), (vec![1, 0], 10));
        // One ms later the most loaded member goes, and the set's time moves.
        assert_eq!(s.pick(&list, &to(dst(1), 11 + DAY)), Some(1));
        assert_eq!(set_of(&mut s, dst(1), 11 + DAY), (vec![1], 11 + DAY));
        // A single member is never dropped.
        keep_using(&mut s, &list, 12 + DAY, 12 + 3 * DAY);
        assert_eq!(set_of(&mut s, dst(1), 12 + 3 * DAY).0, [1]);
    }

    #[test]
    fn shedding_may_drop_the_member_it_returns() {
        // Equal loads: the least and the most loaded member are both the newest;
        // IPVS chose before the cleanup and returns it anyway.
        let mut list = servers(&[2, 2]);
        let mut s = two_member_set(&mut list);
        keep_using(&mut s, &list, 11, 10 + DAY);
        assert_eq!(s.pick(&list, &to(dst(1), 11 + DAY)), Some(1));
        assert_eq!(set_of(&mut s, dst(1), 11 + DAY).0, [0]);
        assert_eq!(s.pick(&list, &to(dst(1), 12 + DAY)), Some(0));
    }

    #[test]
    fn shedding_skips_drained_members_but_not_unavailable_ones() {
        let mut list = servers(&[2, 2]);
        let mut s = two_member_set(&mut list);
        // Server 1 drained and heavily loaded, server 0 in service: the weight-0
        // member is never the one dropped.
        list[1].weight = 0;
        list[1].active = 50;
        keep_using(&mut s, &list, 11, 10 + DAY);
        assert_eq!(s.pick(&list, &to(dst(1), 11 + DAY)), Some(0));
        assert_eq!(set_of(&mut s, dst(1), 11 + DAY).0, [1]);

        // Server 1 out of service and heavily loaded: it is dropped.
        let mut list = servers(&[2, 2]);
        let mut s = two_member_set(&mut list);
        list[1].available = false;
        list[1].active = 50;
        keep_using(&mut s, &list, 11, 10 + DAY);
        assert_eq!(s.pick(&list, &to(dst(1), 11 + DAY)), Some(0));
        assert_eq!(set_of(&mut s, dst(1), 11 + DAY).0, [0]);
    }

    #[test]
    fn adding_a_member_already_there_keeps_the_time() {
        let mut list = servers(&[2, 2, 2]);
        let mut s = two_member_set(&mut list);
        list[0].active = 3;
        list[1].active = 3;
        list[2].inactive = 1000;
        // The set's choice is server 1 (ties go to the newest member), overloaded
        // since server 2 has room; wlc over the service picks server 0 (ties go to
        // the first; server 2 weighs 1000 / 2 against 768 / 2), already a member.
        assert_eq!(s.pick(&list, &to(dst(1), 20)), Some(0));
        assert_eq!(set_of(&mut s, dst(1), 20), (vec![1, 0], 10));
    }

    #[test]
    fn full_set_does_not_grow() {
        let n = SET_MAX + 1;
        let mut list = servers(&vec![2; n]);
        let mut s = Lblcr::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
        // Overload each new member in turn: the next idle server joins.
        for k in 1..n {
            list[k - 1].active = 3;
            let t = k as u64;
            assert_eq!(s.pick(&list, &to(dst(1), t)), Some(k));
            let (members, lastmod) = set_of(&mut s, dst(1), t);
            if k < SET_MAX {
                assert_eq!(members.len(), k + 1);
                assert_eq!(lastmod, t);
            } else {
                // Full: the connection goes to server k, the set stays.
                assert_eq!(members.len(), SET_MAX);
                assert!(!members.contains(&(k as u32)));
                assert_eq!(lastmod, t - 1);
            }
        }
    }

    #[test]
    fn entry_expires_after_a_day_unused() {
        let mut list = servers(&[1, 1]);
        let mut s = Lblcr::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
        list[0].inactive = 1;
        assert_eq!(s.pick(&list, &to(dst(1), DAY - 1)), Some(0));
        assert_eq!(s.pick(&list, &to(dst(1), 2 * DAY - 1)), Some(1));
        assert_eq!(s.table.len(), 1);
    }

    #[test]
    fn rebuild_remaps_members_and_drops_departed_ones() {
        let mut list = servers(&[2, 2, 2]);
        let mut s = Lblcr::new(&list).unwrap();
        s.pick(&list, &to(dst(1), 0)).unwrap();
        list[0].active = 3;
        assert_eq!(s.pick(&list, &to(dst(1), 10)), Some(1));
        // New order [2, 0]; server 1 left.
        list[0].active = 0;
        let new = vec![list[2], list[0]];
        s.rebuild(&new).unwrap();
        assert_eq!(set_of(&mut s, dst(1), 11), (vec![1], 10));
        // The remaining member (server 0, now at position 1) is still the choice.
        assert_eq!(s.pick(&new, &to(dst(1), 12)), Some(1));
    }

    #[test]
    fn full_table_forgets_the_least_recently_used_destination() {
        let list = servers(&[1, 1]);
        let mut s = Lblcr::with_capacity(&list, 2).unwrap();
        for n in 0..3 {
            s.pick(&list, &to(dst(n), u64::from(n))).unwrap();
        }
        assert_eq!(s.table.len(), 2);
        assert!(s.table.lookup(dst(0), 3).is_none());
        assert!(s.table.lookup(dst(2), 3).is_some());
    }
}
