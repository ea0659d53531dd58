//! fo: weighted failover as IPVS `ip_vs_fo.c`. Stateless; one pass over the slice.
//!
//! Every new connection goes to the server with the highest weight among those that
//! take new connections; ties go to the first in the slice (IPVS replaces its choice
//! only on a strictly higher weight). Load is not looked at: the others are
//! standbys, used when the heavier ones are drained or out of service.

use super::Candidate;

/// The first server with the highest weight among those taking new connections.
pub(super) fn fo(servers: &[Candidate]) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (i, s) in servers.iter().enumerate() {
        if s.takes_new() && best.is_none_or(|(_, w)| s.weight > w) {
            best = Some((i, s.weight));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn highest_weight_wins_regardless_of_load() {
        let mut list = servers(&[1, 5, 3]);
        list[1].active = 10_000;
        list[1].inactive = 10_000;
        assert_eq!(fo(&list), Some(1));
    }

    #[test]
    fn ties_go_to_the_first() {
        assert_eq!(fo(&servers(&[2, 7, 7, 1])), Some(1));
        assert_eq!(fo(&servers(&[4, 4, 4])), Some(0));
    }

    #[test]
    fn fails_over_in_weight_order() {
        let mut list = servers(&[100, 50, 50, 10]);
        assert_eq!(fo(&list), Some(0));
        list[0].available = false;
        assert_eq!(fo(&list), Some(1));
        list[1].weight = 0;
        assert_eq!(fo(&list), Some(2));
        list[2].available = false;
        assert_eq!(fo(&list), Some(3));
        list[3].weight = 0;
        assert_eq!(fo(&list), None);
        // The primary back in service takes the new connections again.
        list[0].available = true;
        assert_eq!(fo(&list), Some(0));
    }

    #[test]
    fn nothing_to_pick() {
        assert_eq!(fo(&[]), None);
        assert_eq!(fo(&servers(&[0, 0])), None);
    }
}
