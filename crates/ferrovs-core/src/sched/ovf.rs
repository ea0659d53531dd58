//! ovf: weighted overflow as IPVS `ip_vs_ovf.c`. Stateless; one pass over the slice.
//!
//! A server is full when its active connections exceed its weight (IPVS skips it when
//! `activeconns > weight`, so a server holding exactly its weight still takes one
//! more). Each new connection goes to the server with the highest weight among those
//! that take new connections and are not full; ties go to the first in the slice
//! (IPVS replaces its choice only on a strictly higher weight). Traffic thus fills
//! the heaviest server up to its weight, then overflows to the next heaviest.
//! Inactive connections do not count, so the weight caps TCP connections only (IPVS
//! notes ovf does not suit UDP, whose flows are never active).

use super::Candidate;

/// The first server with the highest weight among those taking new connections
/// whose active connections do not exceed their weight.
pub(super) fn ovf(servers: &[Candidate]) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (i, s) in servers.iter().enumerate() {
        if s.takes_new() && s.active <= s.weight && best.is_none_or(|(_, w)| s.weight > w) {
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
    fn fills_the_heaviest_then_overflows_in_weight_order() {
        // Feed every pick back as an active connection.
        let mut list = servers(&[2, 5, 3]);
        let mut order = Vec::new();
        for _ in 0..13 {
            let i = ovf(&list).unwrap();
            list[i].active += 1;
            order.push(i);
        }
        // Weight 5 takes 6 (it is full only above its weight), then weight 3
        // takes 4, then weight 2 takes 3.
        assert_eq!(order, [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0]);
        // Everybody above its weight: nothing.
        assert_eq!(ovf(&list), None);
        // A connection ends on the heaviest: it takes the next one again.
        list[1].active -= 1;
        assert_eq!(ovf(&list), Some(1));
    }

    #[test]
    fn active_equal_to_weight_still_takes_one() {
        let mut list = servers(&[4, 1]);
        list[0].active = 4;
        assert_eq!(ovf(&list), Some(0));
        list[0].active = 5;
        assert_eq!(ovf(&list), Some(1));
    }

    #[test]
    fn ties_go_to_the_first() {
        let mut list = servers(&[3, 3, 3]);
        assert_eq!(ovf(&list), Some(0));
        list[0].active = 4;
        assert_eq!(ovf(&list), Some(1));
    }

    #[test]
    fn inactive_connections_do_not_count() {
        let mut list = servers(&[2, 1]);
        list[0].inactive = 1_000;
        assert_eq!(ovf(&list), Some(0));
    }

    #[test]
    fn skips_drained_and_unavailable() {
        let mut list = servers(&[9, 0, 5, 1]);
        list[0].available = false;
        assert_eq!(ovf(&list), Some(2));
        list[2].active = 6;
        assert_eq!(ovf(&list), Some(3));
        assert_eq!(ovf(&[]), None);
    }
}
