//! twos: weighted power of two choices as IPVS `ip_vs_twos.c`.
//!
//! With `W` the sum of the weights of the servers that take new connections, two
//! numbers `r1`, `r2` are drawn uniformly from `0..=W` (IPVS adds 1 to `W` before
//! taking the remainder). Walking those servers in slice order and subtracting each
//! weight, the first server that brings `r1` to 0 or below is the first choice, and
//! likewise for `r2`. So a server is drawn with probability `weight / (W + 1)`, the
//! first one with `(weight + 1) / (W + 1)`. The second choice wins only when it is
//! strictly less loaded per weight: `overhead2 / weight2 < overhead1 / weight1`, with
//! IPVS's overhead `active * 256 + inactive`; otherwise the first.
//!
//! The random numbers come from a splitmix64 generator owned by the scheduler, seeded
//! once at construction from the operating system's random source (through std's
//! `RandomState`); a pick makes no system call. IPVS draws 32 bits and takes them
//! modulo `W + 1`; here 64 bits, which leaves a smaller modulo bias.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::least::{conn_overhead, heavier};
use super::Candidate;

/// The two-choices scheduler's random state.
#[derive(Debug, Clone)]
pub(super) struct TwoChoices {
    /// splitmix64 state.
    state: u64,
}

impl TwoChoices {
    /// A generator seeded from the operating system (control path).
    pub(super) fn new() -> Self {
        Self::with_seed(RandomState::new().hash_one(0x7477_6f73_u64))
    }

    /// A generator with a fixed seed: reproducible (tests).
    pub(super) fn with_seed(seed: u64) -> Self {
        TwoChoices { state: seed }
    }

    /// splitmix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number
    /// generators").
    #[inline]
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[inline]
    pub(super) fn pick(&mut self, servers: &[Candidate]) -> Option<usize> {
        let total: u64 = servers
            .iter()
            .filter(|s| s.takes_new())
            .map(|s| u64::from(s.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let span = total + 1;
        let mut r1 = self.next() % span;
        let mut r2 = self.next() % span;
        let mut first: Option<usize> = None;
        let mut second: Option<usize> = None;
        for (i, s) in servers.iter().enumerate() {
            if !s.takes_new() {
                continue;
            }
            let w = u64::from(s.weight);
            if first.is_none() {
                if r1 <= w {
                    first = Some(i);
                } else {
                    r1 -= w;
                }
            }
            if second.is_none() {
                if r2 <= w {
                    second = Some(i);
                } else {
                    r2 -= w;
                }
            }
            if first.is_some() && second.is_some() {
                break;
            }
        }
        // r <= W and the weights sum to W: both draws land on a server.
        let (a, b) = (first?, second?);
        let (sa, sb) = (&servers[a], &servers[b]);
        if heavier(conn_overhead(sa), sa.weight, conn_overhead(sb), sb.weight) {
            Some(b)
        } else {
            Some(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// How often each server is drawn over `n` picks with the loads left as they
    /// are.
    fn counts(t: &mut TwoChoices, list: &[Candidate], n: u32) -> Vec<u32> {
        let mut c = vec![0u32; list.len()];
        for _ in 0..n {
            c[t.pick(list).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn idle_servers_are_drawn_in_proportion_to_weight() {
        // No load anywhere: every comparison is a tie, so the first draw wins and
        // the shares are weight / (W + 1), plus 1 / (W + 1) for the first server.
        let list = servers(&[1, 2, 3, 4]);
        let mut t = TwoChoices::with_seed(7);
        let n = 110_000;
        let got = counts(&mut t, &list, n);
        // Expected: 2/11, 2/11, 3/11, 4/11 of n.
        for (i, want) in [20_000u32, 20_000, 30_000, 40_000].into_iter().enumerate() {
            let diff = got[i].abs_diff(want);
            assert!(diff < want / 30, "server {i}: {} vs {want}", got[i]);
        }
    }

    #[test]
    fn with_load_fed_back_shares_follow_weights() {
        // Every pick becomes an active connection: the less loaded choice per
        // weight wins, which keeps the shares close to the weights.
        let mut list = servers(&[1, 3, 6]);
        let mut t = TwoChoices::with_seed(0xfeed);
        for _ in 0..10_000 {
            let i = t.pick(&list).unwrap();
            list[i].active += 1;
        }
        for (s, want) in list.iter().zip([1_000u32, 3_000, 6_000]) {
            let diff = s.active.abs_diff(want);
            assert!(diff < want / 100, "{:?}: {} vs {want}", s.id, s.active);
        }
    }

    #[test]
    fn the_less_loaded_choice_per_weight_wins() {
        // Two servers of equal weight: whenever the draws differ, the idle one
        // wins; it loses only when both draws are the loaded one (about 1/4).
        let mut list = servers(&[10, 10]);
        list[0].active = 5;
        let mut t = TwoChoices::with_seed(3);
        let got = counts(&mut t, &list, 40_000);
        let loaded = f64::from(got[0]) / 40_000.0;
        // P(both draws on server 0) = (11/21)^2.
        let want = (11.0f64 / 21.0).powi(2);
        assert!((loaded - want).abs() < 0.01, "{loaded} vs {want}");
    }

    #[test]
    fn equal_load_per_weight_keeps_the_first_choice() {
        // 512/2 vs 256/1: equal per weight, so no switch; the shares stay those of
        // the draws.
        let mut list = servers(&[2, 1]);
        list[0].active = 2;
        list[1].active = 1;
        let mut t = TwoChoices::with_seed(11);
        let got = counts(&mut t, &list, 40_000);
        // Draw shares: (2 + 1) / 4 and 1 / 4.
        let share = f64::from(got[0]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{share}");
    }

    #[test]
    fn never_picks_a_drained_or_unavailable_server() {
        let mut list = servers(&[5, 0, 5, 5]);
        list[2].available = false;
        list[3].active = 100;
        let mut t = TwoChoices::with_seed(5);
        let got = counts(&mut t, &list, 20_000);
        assert_eq!(got[1], 0);
        assert_eq!(got[2], 0);
        assert!(got[0] > 0 && got[3] > 0);
        for c in list.iter_mut() {
            c.available = false;
        }
        assert_eq!(t.pick(&list), None);
        assert_eq!(t.pick(&[]), None);
    }

    #[test]
    fn single_server_is_always_picked() {
        let mut t = TwoChoices::with_seed(1);
        let list = servers(&[0, 3, 0]);
        assert_eq!(counts(&mut t, &list, 1_000), [0, 1_000, 0]);
    }

    #[test]
    fn seeds_differ_between_schedulers() {
        let mut a = TwoChoices::new();
        let mut b = TwoChoices::new();
        let xs: Vec<u64> = (0..4).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next()).collect();
        assert_ne!(xs, ys);
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let list = servers(&[u32::MAX, u32::MAX, u32::MAX]);
        let mut t = TwoChoices::with_seed(9);
        let got = counts(&mut t, &list, 3_000);
        assert!(got.iter().all(|&c| c > 800), "{got:?}");
    }
}
