//! rr: round robin as IPVS `ip_vs_rr.c`.
//!
//! A cursor remembers the last server picked; the next pick scans from the one after
//! it, wrapping, and ends with the last one itself, taking the first server that takes
//! new connections.

use super::{Candidate, ServerId};

/// The round-robin cursor.
#[derive(Debug, Clone, Default)]
pub(super) struct RoundRobin {
    /// Position of the last pick; `None` is IPVS's list head (scan from position 0).
    last: Option<usize>,
    /// Identity of the last pick, to find the cursor again after a rebuild.
    last_id: Option<ServerId>,
}

impl RoundRobin {
    /// Re-anchors the cursor on the new slice.
    ///
    /// If the last server picked is still there, the cursor follows it to its new
    /// position. If it left, the cursor steps back one position, as
    /// `ip_vs_rr_del_dest` moves it to the previous entry: with the departed server
    /// removed in place, the one that followed it is picked next.
    pub(super) fn rebuild(&mut self, servers: &[Candidate]) {
        let found = self
            .last_id
            .and_then(|id| servers.iter().position(|s| s.id == id));
        self.last = match found {
            Some(i) => Some(i),
            None => self.last.and_then(|i| i.checked_sub(1)),
        };
        self.last_id = self.last.and_then(|i| servers.get(i)).map(|s| s.id);
    }

    pub(super) fn pick(&mut self, servers: &[Candidate]) -> Option<usize> {
        let n = servers.len();
        if n == 0 {
            return None;
        }
        let start = self.last.map_or(0, |i| (i % n + 1) % n);
        for k in 0..n {
            let i = (start + k) % n;
            if servers[i].takes_new() {
                self.last = Some(i);
                self.last_id = Some(servers[i].id);
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn picks(rr: &mut RoundRobin, list: &[Candidate], n: usize) -> Vec<Option<usize>> {
        (0..n).map(|_| rr.pick(list)).collect()
    }

    #[test]
    fn cycles_in_slice_order_from_the_first() {
        let list = servers(&[1, 5, 2]);
        let mut rr = RoundRobin::default();
        let got = picks(&mut rr, &list, 7);
        let want: Vec<_> = [0, 1, 2, 0, 1, 2, 0].into_iter().map(Some).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn equal_shares_regardless_of_weight() {
        let list = servers(&[1, 100, 3, 7]);
        let mut rr = RoundRobin::default();
        let mut count = [0u32; 4];
        for _ in 0..4000 {
            count[rr.pick(&list).unwrap()] += 1;
        }
        assert_eq!(count, [1000; 4]);
    }

    #[test]
    fn skips_drained_and_unavailable() {
        let mut list = servers(&[1, 0, 1, 1]);
        list[2].available = false;
        let mut rr = RoundRobin::default();
        let got = picks(&mut rr, &list, 6);
        let want: Vec<_> = [0, 3, 0, 3, 0, 3].into_iter().map(Some).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn last_picked_is_tried_last() {
        // Only the server picked last remains: it is found at the end of the scan.
        let mut list = servers(&[1, 1, 1]);
        let mut rr = RoundRobin::default();
        assert_eq!(rr.pick(&list), Some(0));
        assert_eq!(rr.pick(&list), Some(1));
        list[0].available = false;
        list[2].available = false;
        assert_eq!(rr.pick(&list), Some(1));
        assert_eq!(rr.pick(&list), Some(1));
        list[1].available = false;
        assert_eq!(rr.pick(&list), None);
        // Coming back continues after the last pick.
        list[0].available = true;
        list[2].available = true;
        assert_eq!(rr.pick(&list), Some(2));
        assert_eq!(rr.pick(&list), Some(0));
    }

    #[test]
    fn rebuild_follows_the_last_pick() {
        let list = servers(&[1, 1, 1, 1]);
        let mut rr = RoundRobin::default();
        assert_eq!(rr.pick(&list), Some(0));
        assert_eq!(rr.pick(&list), Some(1));
        // Reordered: server 1 is now at position 3, so position 0 comes next.
        let reordered = vec![list[2], list[3], list[0], list[1]];
        rr.rebuild(&reordered);
        assert_eq!(rr.pick(&reordered), Some(0));
        assert_eq!(reordered[0].id, list[2].id);
    }

    #[test]
    fn rebuild_after_removing_the_last_pick() {
        let list = servers(&[1, 1, 1, 1]);
        let mut rr = RoundRobin::default();
        assert_eq!(rr.pick(&list), Some(0));
        assert_eq!(rr.pick(&list), Some(1));
        // Server 1 removed in place: server 2 (now position 1) is next, like IPVS.
        let removed = vec![list[0], list[2], list[3]];
        rr.rebuild(&removed);
        assert_eq!(rr.pick(&removed), Some(1));
        assert_eq!(removed[1].id, list[2].id);

        // Removing the very first server after it was picked restarts at the head.
        let mut rr = RoundRobin::default();
        assert_eq!(rr.pick(&list), Some(0));
        let removed = vec![list[1], list[2], list[3]];
        rr.rebuild(&removed);
        assert_eq!(rr.pick(&removed), Some(0));
    }

    #[test]
    fn rebuild_to_empty_and_back() {
        let list = servers(&[1, 1]);
        let mut rr = RoundRobin::default();
        assert_eq!(rr.pick(&list), Some(0));
        rr.rebuild(&[]);
        assert_eq!(rr.pick(&[]), None);
        rr.rebuild(&list);
        assert!(rr.pick(&list).is_some());
    }
}
