//! lc, wlc, sed, nq: the connection-counting schedulers of IPVS (`ip_vs_lc.c`,
//! `ip_vs_wlc.c`, `ip_vs_sed.c`, `ip_vs_nq.c`). Stateless; one pass over the slice.
//!
//! Ratios `overhead / weight` are compared by cross-multiplication, as IPVS does, in
//! `u128` so that no counter or weight value can overflow. Ties go to the server
//! earliest in the slice (IPVS replaces the current best only on strictly better).

use super::Candidate;

/// `ip_vs_dest_conn_overhead`: an active connection costs 256 inactive ones.
#[inline]
pub(super) fn conn_overhead(s: &Candidate) -> u64 {
    (u64::from(s.active) << 8) + u64::from(s.inactive)
}

/// sed/nq expected delay numerator: the active connections plus the new one.
#[inline]
fn expected_delay(s: &Candidate) -> u64 {
    u64::from(s.active) + 1
}

/// True when `a_oh / a_w > b_oh / b_w`, i.e. `a_oh * b_w > b_oh * a_w`.
#[inline]
pub(super) fn heavier(a_oh: u64, a_w: u32, b_oh: u64, b_w: u32) -> bool {
    u128::from(a_oh) * u128::from(b_w) > u128::from(b_oh) * u128::from(a_w)
}

/// IPVS's update rule: the current best is replaced only by a strictly lighter one.
#[inline]
fn replaces(least: Option<(usize, u64, u32)>, oh: u64, w: u32) -> bool {
    match least {
        None => true,
        Some((_, loh, lw)) => heavier(loh, lw, oh, w),
    }
}

/// lc: smallest `active * 256 + inactive` among servers taking new connections.
pub(super) fn lc(servers: &[Candidate]) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (i, s) in servers.iter().enumerate() {
        if !s.takes_new() {
            continue;
        }
        let oh = conn_overhead(s);
        let better = match least {
            None => true,
            Some((_, loh)) => oh < loh,
        };
        if better {
            least = Some((i, oh));
        }
    }
    least.map(|(i, _)| i)
}

/// The shared loop of wlc and sed: smallest `overhead(s) / weight`.
#[inline]
fn least_weighted(servers: &[Candidate], overhead: fn(&Candidate) -> u64) -> Option<usize> {
    let mut least: Option<(usize, u64, u32)> = None;
    for (i, s) in servers.iter().enumerate() {
        if !s.takes_new() {
            continue;
        }
        let oh = overhead(s);
        if replaces(least, oh, s.weight) {
            least = Some((i, oh, s.weight));
        }
    }
    least.map(|(i, _, _)| i)
}

/// wlc: smallest `(active * 256 + inactive) / weight`.
pub(super) fn wlc(servers: &[Candidate]) -> Option<usize> {
    least_weighted(servers, conn_overhead)
}

/// sed: smallest `(active + 1) / weight`.
pub(super) fn sed(servers: &[Candidate]) -> Option<usize> {
    least_weighted(servers, expected_delay)
}

/// nq: the first idle server (no active connection), else as sed.
pub(super) fn nq(servers: &[Candidate]) -> Option<usize> {
    let mut least: Option<(usize, u64, u32)> = None;
    for (i, s) in servers.iter().enumerate() {
        if !s.takes_new() {
            continue;
        }
        if s.active == 0 {
            return Some(i);
        }
        let oh = expected_delay(s);
        if replaces(least, oh, s.weight) {
            least = Some((i, oh, s.weight));
        }
    }
    least.map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// Servers with (weight, active, inactive).
    fn loaded(spec: &[(u32, u32, u32)]) -> Vec<Candidate> {
        let weights: Vec<u32> = spec.iter().map(|s| s.0).collect();
        let mut list = servers(&weights);
        for (c, &(_, a, i)) in list.iter_mut().zip(spec) {
            c.active = a;
            c.inactive = i;
        }
        list
    }

    #[test]
    fn lc_counts_active_256_times_inactive() {
        // 1*256 + 0 = 256 vs 0*256 + 255 = 255: the inactive-heavy one is lighter.
        assert_eq!(lc(&loaded(&[(1, 1, 0), (1, 0, 255)])), Some(1));
        // 256 vs 257.
        assert_eq!(lc(&loaded(&[(1, 1, 0), (1, 0, 257)])), Some(0));
        // Weight does not matter to lc.
        assert_eq!(lc(&loaded(&[(100, 5, 0), (1, 4, 0)])), Some(1));
    }

    #[test]
    fn lc_tie_goes_to_first() {
        assert_eq!(lc(&loaded(&[(1, 2, 3), (1, 2, 3), (1, 2, 3)])), Some(0));
        assert_eq!(lc(&loaded(&[(1, 3, 0), (1, 2, 3), (1, 2, 3)])), Some(1));
    }

    #[test]
    fn lc_skips_drained_and_unavailable() {
        let mut list = loaded(&[(1, 0, 0), (0, 0, 0), (1, 9, 9), (1, 5, 5)]);
        list[0].available = false;
        assert_eq!(lc(&list), Some(3));
    }

    #[test]
    fn wlc_compares_overhead_per_weight() {
        // 256/1 vs 512/3: the weight-3 server is lighter.
        assert_eq!(wlc(&loaded(&[(1, 1, 0), (3, 2, 0)])), Some(1));
        // 256/1 vs 768/3: equal, first wins.
        assert_eq!(wlc(&loaded(&[(1, 1, 0), (3, 3, 0)])), Some(0));
        // 0 connections anywhere: first one.
        assert_eq!(wlc(&loaded(&[(1, 0, 0), (9, 0, 0)])), Some(0));
        // Inactive connections count, 1/256 of an active one.
        assert_eq!(wlc(&loaded(&[(2, 1, 10), (2, 1, 9)])), Some(1));
    }

    #[test]
    fn wlc_first_eligible_is_the_starting_point() {
        // IPVS starts from the first server with weight > 0 and not overloaded.
        let mut list = loaded(&[(0, 0, 0), (5, 0, 0), (5, 0, 0)]);
        assert_eq!(wlc(&list), Some(1));
        list[1].available = false;
        assert_eq!(wlc(&list), Some(2));
    }

    #[test]
    fn wlc_distribution_follows_weights() {
        // Feeding picks back as active connections converges to the weight ratio.
        let mut list = loaded(&[(1, 0, 0), (2, 0, 0), (5, 0, 0)]);
        for _ in 0..800 {
            let i = wlc(&list).unwrap();
            list[i].active += 1;
        }
        let got: Vec<u32> = list.iter().map(|s| s.active).collect();
        assert_eq!(got, [100, 200, 500]);
    }

    #[test]
    fn wlc_huge_counters_do_not_overflow() {
        let list = loaded(&[(u32::MAX, u32::MAX, u32::MAX), (1, u32::MAX, u32::MAX)]);
        assert_eq!(wlc(&list), Some(0));
        let list = loaded(&[(1, u32::MAX, u32::MAX), (u32::MAX, u32::MAX, 0)]);
        assert_eq!(wlc(&list), Some(1));
    }

    #[test]
    fn sed_uses_active_plus_one() {
        // (0+1)/1 = 1 vs (2+1)/4 = 0.75: sed picks the busy fast server, where wlc
        // would pick the idle slow one.
        let list = loaded(&[(1, 0, 0), (4, 2, 0)]);
        assert_eq!(sed(&list), Some(1));
        assert_eq!(wlc(&list), Some(0));
        // Inactive connections are ignored: (1+1)/2 = 1 vs (0+1)/1 = 1: tie, first.
        assert_eq!(sed(&loaded(&[(2, 1, 1000), (1, 0, 0)])), Some(0));
    }

    #[test]
    fn nq_prefers_an_idle_server() {
        // Same as above, but the idle server wins under nq.
        let list = loaded(&[(4, 2, 0), (1, 0, 0)]);
        assert_eq!(sed(&list), Some(0));
        assert_eq!(nq(&list), Some(1));
        // The first idle server, even with inactive connections.
        assert_eq!(nq(&loaded(&[(9, 3, 0), (1, 0, 50), (1, 0, 0)])), Some(1));
        // No idle server: sed ordering.
        assert_eq!(nq(&loaded(&[(1, 1, 0), (4, 2, 0)])), Some(1));
    }

    #[test]
    fn nq_idle_but_drained_or_unavailable_is_skipped() {
        let mut list = loaded(&[(0, 0, 0), (1, 0, 0), (3, 1, 0)]);
        list[1].available = false;
        assert_eq!(nq(&list), Some(2));
    }

    #[test]
    fn none_when_nobody_takes_new() {
        let mut list = loaded(&[(0, 0, 0), (1, 0, 0)]);
        list[1].available = false;
        for f in [lc, wlc, sed, nq] {
            assert_eq!(f(&list), None);
            assert_eq!(f(&[]), None);
        }
    }
}
