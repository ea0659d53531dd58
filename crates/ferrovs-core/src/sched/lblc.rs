//! lblc: locality-based least-connection as IPVS `ip_vs_lblc.c`.
//!
//! A table maps a destination address (the one the client sent to) to a server. A
//! new connection to a known destination goes to its server, unless that server
//! cannot take it (weight 0, out of service, removed) or is overloaded
//! ([`is_overloaded`]: more active connections than its weight while some server has
//! fewer than half its weight); then, and for a destination not in the table, the
//! server is chosen by weighted least connection (IPVS's lblc loop is wlc's:
//! smallest `(active * 256 + inactive) / weight`, ties to the first) and stored.
//! Every lookup that finds the entry refreshes its last use, also when the entry is
//! then replaced. Table size, expiry and eviction: see `locality`.
//!
//! Differences from IPVS: a server out of service (`available == false`, IPVS's
//! `IP_VS_DEST_F_OVERLOAD`) is never reused from the table, where IPVS checks only
//! that the server is still in the service with a weight; and `is_overloaded` looks
//! for spare room only on servers that take new connections.
//!
//! lblc is meant for cache clusters reached by transparent redirection, where the
//! destination varies. A ferrovs service has one VIP, so all its connections share
//! one entry: they go to one server until it is overloaded, as with IPVS behind a
//! single VIP.

use super::least::wlc;
use super::locality::{ids_of, is_overloaded, remap, LocalityTable, TABLE_ENTRIES};
use super::{usable, Candidate, FlowHint, SchedError, ServerId, NO_SERVER};

/// The lblc destination table.
#[derive(Debug, Clone)]
pub(super) struct Lblc {
    /// Destination -> slice position (`NO_SERVER` once its server left).
    table: LocalityTable<u32>,
    /// Server ids by slice position, as of the last build.
    ids: Vec<ServerId>,
    /// False after a failed rebuild: no picks until a good one.
    valid: bool,
}

impl Lblc {
    pub(super) fn new(servers: &[Candidate]) -> Result<Self, SchedError> {
        Self::with_capacity(servers, TABLE_ENTRIES)
    }

    fn with_capacity(servers: &[Candidate], capacity: usize) -> Result<Self, SchedError> {
        Ok(Lblc {
            table: LocalityTable::new(capacity),
            ids: ids_of(servers)?,
            valid: true,
        })
    }

    /// Keeps every entry, pointed at its server's new position; an entry whose
    /// server left keeps its place and is rescheduled at its next use, as IPVS
    /// reschedules an entry whose server went to the trash. Weights do not touch
    /// the table (IPVS has no `upd_dest` for lblc).
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
        self.table.for_each_mut(|s| {
            *s = map.get(*s as usize).copied().unwrap_or(NO_SERVER);
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
        match self.table.lookup(flow.dst, now) {
            Some(id) => {
                let cached = usable(servers, *self.table.value(id));
                if let Some(i) = cached.filter(|&i| !is_overloaded(&servers[i], servers)) {
                    return Some(i);
                }
                let i = wlc(servers)?;
                *self.table.value_mut(id) = i as u32;
                Some(i)
            }
            None => {
                let i = wlc(servers)?;
                self.table.insert(flow.dst, now, i as u32);
                Some(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::locality::EXPIRATION_MS as DAY;
    use super::super::testutil::*;
    use super::*;
    use std::net::IpAddr;

    fn to(dst: IpAddr, now_ms: u64) -> FlowHint {
        let mut f = flow_from(client_v4(1), 1234);
        f.dst = dst;
        f.now_ms = now_ms;
        f
    }

    fn dst(n: u32) -> IpAddr {
        client_v4(0x10_0000 + n)
    }

    #[test]
    fn new_destination_goes_to_the_weighted_least_connection_server() {
        let mut list = servers(&[1, 3, 2]);
        list[0].active = 1; // 256 / 1
        list[1].active = 2; // 512 / 3 (lightest)
        list[2].active = 2; // 512 / 2
        let mut s = Lblc::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(1));
        assert_eq!(s.table.len(), 1);
    }

    #[test]
    fn destination_sticks_to_its_server() {
        let mut list = servers(&[1, 1, 1]);
        let mut s = Lblc::new(&list).unwrap();
        let first = s.pick(&list, &to(dst(1), 0)).unwrap();
        // Load the chosen server beyond its weight while no server has fewer
        // active connections than half its weight: the destination stays.
        for t in 1..50 {
            list[first].active += 1;
            for c in list.iter_mut() {
                c.active = c.active.max(1);
            }
            assert_eq!(s.pick(&list, &to(dst(1), t)), Some(first));
        }
        // Another destination is scheduled on its own: the least loaded.
        assert_ne!(s.pick(&list, &to(dst(2), 50)), Some(first));
    }

    #[test]
    fn overloaded_server_is_replaced_and_the_entry_updated() {
        // ip_vs_lblc.c is_overloaded: active > weight, and some server has
        // active * 2 < weight.
        let mut list = servers(&[2, 4]);
        list[1].active = 2; // 2 * 2 = 4, not < 4: no room yet
        let mut s = Lblc::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
        list[0].active = 3; // over its weight 2
        assert_eq!(s.pick(&list, &to(dst(1), 1)), Some(0), "nobody has room");
        list[1].active = 1; // 1 * 2 < 4: room
                            // Rescheduled by wlc: 3*256/2 vs 1*256/4.
        assert_eq!(s.pick(&list, &to(dst(1), 2)), Some(1));
        // The entry now names server 1, even once server 0 is light again.
        list[0].active = 0;
        assert_eq!(s.pick(&list, &to(dst(1), 3)), Some(1));
    }

    #[test]
    fn active_equal_to_weight_is_not_overloaded() {
        let mut list = servers(&[2, 100]);
        let mut s = Lblc::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
        list[0].active = 2;
        assert_eq!(s.pick(&list, &to(dst(1), 1)), Some(0));
        list[0].active = 3;
        assert_eq!(s.pick(&list, &to(dst(1), 2)), Some(1));
    }

    #[test]
    fn unusable_server_is_replaced() {
        for make_unusable in [
            (|c: &mut Candidate| c.weight = 0) as fn(&mut Candidate),
            |c: &mut Candidate| c.available = false,
        ] {
            let mut list = servers(&[1, 1]);
            let mut s = Lblc::new(&list).unwrap();
            assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
            make_unusable(&mut list[0]);
            assert_eq!(s.pick(&list, &to(dst(1), 1)), Some(1));
            // Back in service: the entry was moved to server 1 and stays there.
            list[0] = server(0, 1);
            assert_eq!(s.pick(&list, &to(dst(1), 2)), Some(1));
        }
    }

    #[test]
    fn no_server_keeps_the_entry() {
        let mut list = servers(&[1, 1]);
        let mut s = Lblc::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 0)), Some(0));
        for c in list.iter_mut() {
            c.available = false;
        }
        assert_eq!(s.pick(&list, &to(dst(1), 1)), None);
        assert_eq!(s.table.len(), 1);
        for c in list.iter_mut() {
            c.available = true;
        }
        list[0].active = 5; // over its weight...
        list[1].active = 1; // ...but 1 * 2 is not below server 1's weight
        assert_eq!(s.pick(&list, &to(dst(1), 2)), Some(0));
    }

    #[test]
    fn entry_expires_after_a_day_unused() {
        let mut list = servers(&[1, 1]);
        let mut s = Lblc::new(&list).unwrap();
        assert_eq!(s.pick(&list, &to(dst(1), 1_000)), Some(0));
        // Server 1 becomes the lighter one; the entry holds server 0 while used.
        list[0].inactive = 5;
        assert_eq!(s.pick(&list, &to(dst(1), 1_000 + DAY - 1)), Some(0));
        assert_eq!(s.pick(&list, &to(dst(1), 1_000 + 2 * DAY - 2)), Some(0));
        // A day unused: gone, the destination is scheduled afresh.
        assert_eq!(s.pick(&list, &to(dst(1), 1_000 + 3 * DAY - 2)), Some(1));
    }

    #[test]
    fn unused_entries_are_reaped_by_later_picks() {
        let list = servers(&[1]);
        let mut s = Lblc::new(&list).unwrap();
        for n in 0..4 {
            s.pick(&list, &to(dst(n), 0)).unwrap();
        }
        assert_eq!(s.table.len(), 4);
        s.pick(&list, &to(dst(100), DAY)).unwrap();
        // Two expired entries per pick, plus the new one.
        assert_eq!(s.table.len(), 3);
        s.pick(&list, &to(dst(100), DAY)).unwrap();
        assert_eq!(s.table.len(), 1);
    }

    #[test]
    fn full_table_forgets_the_least_recently_used_destination() {
        let mut list = servers(&[1, 1]);
        let mut s = Lblc::with_capacity(&list, 4).unwrap();
        // Four destinations, alternating servers as the load grows.
        let mut owner = Vec::new();
        for n in 0..4 {
            let i = s.pick(&list, &to(dst(n), u64::from(n))).unwrap();
            list[i].active += 1;
            owner.push(i);
        }
        assert_eq!(owner, [0, 1, 0, 1]);
        // Use dst 0 again, then a fifth destination evicts dst 1.
        assert_eq!(s.pick(&list, &to(dst(0), 10)), Some(0));
        list[0].active += 1;
        s.pick(&list, &to(dst(4), 11)).unwrap();
        assert_eq!(s.table.len(), 4);
        // Had dst 1 kept its entry, it would go to server 1 (busy, but nobody has
        // room, so not overloaded); scheduled afresh, it goes to the lighter one.
        list[1].active += 5;
        assert_eq!(s.pick(&list, &to(dst(1), 12)), Some(0));
        assert_eq!(s.table.len(), 4);
    }

    #[test]
    fn rebuild_follows_servers_by_id() {
        let list = servers(&[1, 1, 1]);
        let mut s = Lblc::new(&list).unwrap();
        let mut loaded = list.clone();
        loaded[0].active = 1;
        loaded[1].active = 1;
        assert_eq!(s.pick(&loaded, &to(dst(1), 0)), Some(2));
        // Reorder: server 2 moves to position 0; its destination follows it.
        let mut moved = vec![list[2], list[0], list[1]];
        s.rebuild(&moved).unwrap();
        assert_eq!(s.pick(&moved, &to(dst(1), 1)), Some(0));
        // Remove it: the destination is rescheduled at its next use (by wlc; the
        // server now at position 0 would have been kept, not being overloaded).
        moved.remove(0);
        s.rebuild(&moved).unwrap();
        moved[0].active = 1;
        assert_eq!(s.pick(&moved, &to(dst(1), 2)), Some(1));
        assert_eq!(s.table.len(), 1);
    }

    #[test]
    fn ipv6_destinations_are_keys_too() {
        let mut list = servers(&[1, 1]);
        let mut s = Lblc::new(&list).unwrap();
        let a = client_v6(1);
        let b = client_v6(2);
        assert_eq!(s.pick(&list, &to(a, 0)), Some(0));
        list[0].active = 1;
        assert_eq!(s.pick(&list, &to(b, 0)), Some(1));
        assert_eq!(s.pick(&list, &to(a, 1)), Some(0));
    }
}
