//! wrr: interleaved weighted round robin as IPVS `ip_vs_wrr.c`.
//!
//! State: the last position picked (`cl`), the current weight level `cw`, the step
//! `di` (gcd of the positive weights) and the top level `mw = max - (di - 1)`. A pass
//! scans the servers after `cl` for one with `weight >= cw`; at the end of the slice
//! the level drops by `di` and the scan restarts at the head; below 1 the level
//! returns to `mw`. Weights 4, 3, 2 give `A A B A B C A B C`.
//!
//! One deviation in *cost*, not in result: IPVS walks every level between `cw` and
//! the largest weight that can still be picked, one full pass each, which takes
//! O(servers x max weight / gcd) when heavy servers are unavailable. Here the passes
//! that cannot find anyone (level above the largest eligible weight) are skipped
//! arithmetically, so a pick is O(servers); the sequence of picks and the end state
//! are the same as IPVS's (checked against a literal transcription in the tests).

use super::{gcd, Candidate};

/// The IPVS `ip_vs_wrr_mark`.
#[derive(Debug, Clone)]
pub(super) struct WeightedRoundRobin {
    /// Position of the last pick; `None` is the list head.
    cl: Option<usize>,
    /// Current weight level.
    cw: i64,
    /// Top level: max weight - (di - 1), so the lowest level is 1.
    mw: i64,
    /// Level step: gcd of the positive weights (1 if none).
    di: i64,
}

/// (gcd of the positive weights or 1, max weight), as `ip_vs_wrr_gcd_weight` and
/// `ip_vs_wrr_max_weight`.
fn gcd_and_max(servers: &[Candidate]) -> (i64, i64) {
    let g = servers.iter().fold(0, |g, s| gcd(g, s.weight));
    let max = servers.iter().map(|s| s.weight).max().unwrap_or(0);
    (i64::from(g.max(1)), i64::from(max))
}

impl WeightedRoundRobin {
    /// `ip_vs_wrr_init_svc`.
    pub(super) fn new(servers: &[Candidate]) -> Self {
        let (di, max) = gcd_and_max(servers);
        let mw = max - (di - 1);
        WeightedRoundRobin {
            cl: None,
            cw: mw,
            mw,
            di,
        }
    }

    /// `ip_vs_wrr_dest_changed`: restart from the head, keep the level when it is
    /// still valid (rounded onto the new step grid).
    pub(super) fn rebuild(&mut self, servers: &[Candidate]) {
        let (di, max) = gcd_and_max(servers);
        self.cl = None;
        self.di = di;
        self.mw = max - (di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    /// Lowers `cw` by `di`, plus as many further steps as are certain to find no one:
    /// levels above `target` (the largest eligible weight, at least 1). Never jumps
    /// to or below 0, so the wrap-around logic runs exactly where IPVS runs it.
    fn descend(&mut self, target: i64) {
        self.cw -= self.di;
        if self.cw > target {
            let steps = (self.cw - target + self.di - 1) / self.di;
            let lower = self.cw - steps * self.di;
            if lower > 0 {
                self.cw = lower;
            }
        }
    }

    /// `ip_vs_wrr_schedule`.
    pub(super) fn pick(&mut self, servers: &[Candidate]) -> Option<usize> {
        if self.mw == 0 {
            return None;
        }
        // Levels above the heaviest server that can be picked now are dead passes.
        let target = servers
            .iter()
            .filter(|s| s.takes_new())
            .map(|s| i64::from(s.weight))
            .max()
            .unwrap_or(0)
            .max(1);
        let last = self.cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        let mut from = match last {
            Some(i) => i.saturating_add(1),
            None => {
                // The first pass from the head is a full one: skip it too if dead.
                // (`last_pass` matters only when `last` is set, so it stays false.)
                if self.cw > target {
                    self.cw += self.di;
                    self.descend(target);
                }
                0
            }
        };
        loop {
            for (i, s) in servers.iter().enumerate().skip(from) {
                if s.takes_new() && i64::from(s.weight) >= self.cw {
                    self.cl = Some(i);
                    return Some(i);
                }
                if stop == Some(i) {
                    self.cl = Some(i);
                    return None;
                }
            }
            from = 0;
            self.descend(target);
            if self.cw <= 0 {
                self.cw = self.mw;
                // Every server was checked at level 1 (or the first traversal was a
                // full one at level 1): nobody can take it.
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                // The first traversal at level 1 covered only the servers after
                // `last`; now cover the ones up to it.
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// A literal transcription of `ip_vs_wrr_schedule`, level by level, to compare
    /// the skipping implementation against.
    struct Reference {
        cl: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl Reference {
        fn new(servers: &[Candidate]) -> Self {
            let w = WeightedRoundRobin::new(servers);
            Reference {
                cl: w.cl,
                cw: w.cw,
                mw: w.mw,
                di: w.di,
            }
        }

        fn pick(&mut self, servers: &[Candidate]) -> Option<usize> {
            if self.mw == 0 {
                return None;
            }
            let last = self.cl;
            let mut stop = None;
            let (mut last_pass, mut restarted) = (false, false);
            let mut from = last.map_or(0, |i| i + 1);
            loop {
                for (i, s) in servers.iter().enumerate().skip(from) {
                    if s.takes_new() && i64::from(s.weight) >= self.cw {
                        self.cl = Some(i);
                        return Some(i);
                    }
                    if stop == Some(i) {
                        self.cl = Some(i);
                        return None;
                    }
                }
                from = 0;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cl = None;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = last;
                }
            }
        }
    }

    fn sequence(weights: &[u32], n: usize) -> Vec<usize> {
        let list = servers(weights);
        let mut w = WeightedRoundRobin::new(&list);
        (0..n).map(|_| w.pick(&list).unwrap()).collect()
    }

    #[test]
    fn ipvs_interleaving_4_3_2() {
        // cw=4: A; cw=3: A B; cw=2: A B C; cw=1: A B C.
        assert_eq!(
            sequence(&[4, 3, 2], 18),
            [
                0, 0, 1, 0, 1, 2, 0, 1, 2, //
                0, 0, 1, 0, 1, 2, 0, 1, 2
            ]
        );
    }

    #[test]
    fn ipvs_interleaving_1_2_3() {
        assert_eq!(
            sequence(&[1, 2, 3], 12),
            [2, 1, 2, 0, 1, 2, 2, 1, 2, 0, 1, 2]
        );
    }

    #[test]
    fn gcd_reduces_levels() {
        // di = 2, mw = 4 - 1 = 3: levels 3 and 1 give A, then A B.
        assert_eq!(sequence(&[4, 2], 6), [0, 0, 1, 0, 0, 1]);
        // All equal: plain round robin with a single level.
        assert_eq!(sequence(&[5, 5, 5], 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn exact_weight_ratio_per_cycle() {
        let weights = [5, 1, 3, 7, 2];
        let total: u32 = weights.iter().sum();
        let seq = sequence(&weights, (total * 10) as usize);
        for (i, &w) in weights.iter().enumerate() {
            let got = seq.iter().filter(|&&p| p == i).count() as u32;
            assert_eq!(got, w * 10, "server {i}");
        }
    }

    #[test]
    fn zero_weight_and_unavailable_skipped() {
        let mut list = servers(&[2, 0, 2, 9]);
        list[3].available = false;
        let mut w = WeightedRoundRobin::new(&list);
        let got: Vec<_> = (0..6).map(|_| w.pick(&list).unwrap()).collect();
        assert_eq!(got, [0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn nothing_available_then_recovery() {
        let mut list = servers(&[3, 1]);
        let mut w = WeightedRoundRobin::new(&list);
        assert_eq!(w.pick(&list), Some(0));
        list[0].available = false;
        list[1].available = false;
        assert_eq!(w.pick(&list), None);
        assert_eq!(w.pick(&list), None);
        list[1].available = true;
        assert_eq!(w.pick(&list), Some(1));
        list[0].available = true;
        assert!(w.pick(&list).is_some());
    }

    #[test]
    fn all_weights_zero() {
        let list = servers(&[0, 0]);
        let mut w = WeightedRoundRobin::new(&list);
        assert_eq!(w.mw, 0);
        assert_eq!(w.pick(&list), None);
    }

    #[test]
    fn heavy_unavailable_server_costs_no_extra_passes() {
        // Weight 1_000_000 down, weight 1 up: IPVS would walk a million levels.
        let mut list = servers(&[1_000_000, 1]);
        list[0].available = false;
        let mut w = WeightedRoundRobin::new(&list);
        let mut r = Reference::new(&list);
        for _ in 0..5 {
            assert_eq!(w.pick(&list), Some(1));
            assert_eq!(r.pick(&list), Some(1));
            assert_eq!((w.cl, w.cw), (r.cl, r.cw));
        }
    }

    #[test]
    fn rebuild_keeps_level_on_new_grid() {
        let list = servers(&[4, 3, 2]);
        let mut w = WeightedRoundRobin::new(&list);
        assert_eq!(w.pick(&list), Some(0)); // cw 4
        assert_eq!(w.pick(&list), Some(0)); // cw 3
        assert_eq!(w.cw, 3);
        // New weights 6, 4, 2: di 2, mw 5; cw 3 -> (3/2)*2+1 = 3; restart from head.
        let list = servers(&[6, 4, 2]);
        w.rebuild(&list);
        assert_eq!((w.cl, w.cw, w.mw, w.di), (None, 3, 5, 2));
        assert_eq!(w.pick(&list), Some(0));
        assert_eq!(w.pick(&list), Some(1));
        assert_eq!(w.pick(&list), Some(0)); // cw 1
                                            // Level above the new top: reset to mw.
        let list = servers(&[1, 1]);
        w.cw = 5;
        w.rebuild(&list);
        assert_eq!((w.cw, w.mw, w.di), (1, 1, 1));
    }

    #[test]
    fn matches_ipvs_transcription_on_random_inputs() {
        let mut rng = Rng(0x5eed_0001);
        for round in 0..200 {
            let n = 1 + rng.below(7) as usize;
            let weights: Vec<u32> = (0..n)
                .map(|_| match rng.below(4) {
                    0 => 0,
                    1 => rng.below(5) as u32 * 4,
                    2 => rng.below(50) as u32,
                    _ => rng.below(300) as u32,
                })
                .collect();
            let mut list = servers(&weights);
            let mut w = WeightedRoundRobin::new(&list);
            let mut r = Reference::new(&list);
            for step in 0..200 {
                // Flap health now and then; sometimes change weights and rebuild.
                if rng.below(10) == 0 {
                    let i = rng.below(n as u64) as usize;
                    list[i].available = !list[i].available;
                }
                if rng.below(50) == 0 {
                    let i = rng.below(n as u64) as usize;
                    list[i].weight = rng.below(20) as u32;
                    // dest_changed itself is checked in rebuild_keeps_level_on_new_grid;
                    // here both continue from the rebuilt state.
                    w.rebuild(&list);
                    (r.cl, r.cw, r.mw, r.di) = (w.cl, w.cw, w.mw, w.di);
                }
                let (a, b) = (w.pick(&list), r.pick(&list));
                assert_eq!(a, b, "round {round} step {step} weights {weights:?}");
                assert_eq!((w.cl, w.cw), (r.cl, r.cw), "round {round} step {step}");
            }
        }
    }
}
