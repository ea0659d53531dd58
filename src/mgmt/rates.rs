//! Per-second rates of the real servers' counters, like IPVS's rate estimator: the
//! management core samples the summed counters every second and smooths the rates
//! exponentially.

use crate::ctl::proto::{Rates, Stats};
use std::collections::HashMap;
use std::time::Instant;

/// Weight of the newest one-second sample in the smoothed rate.
const NEW_SAMPLE_WEIGHT: f64 = 0.5;

/// Smoothed per-second rates of each real server, by slot, and the sample each was
/// last updated from.
#[derive(Default)]
pub struct RateEstimator {
    last: HashMap<u16, (Instant, Stats)>,
    rates: HashMap<u16, Rates>,
}

impl RateEstimator {
    /// Takes a sample of real server `slot`'s counters at `now`.
    pub fn sample(&mut self, slot: u16, now: Instant, stats: Stats) {
        if let Some((then, prev)) = self.last.insert(slot, (now, stats)) {
            let secs = now.duration_since(then).as_secs_f64();
            if secs <= 0.0 {
                return;
            }
            let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
            let instant = Rates {
                cps: per(stats.conns, prev.conns),
                in_pps: per(stats.in_packets, prev.in_packets),
                out_pps: per(stats.out_packets, prev.out_packets),
                in_bps: per(stats.in_bytes, prev.in_bytes),
                out_bps: per(stats.out_bytes, prev.out_bytes),
            };
            let r = self.rates.entry(slot).or_insert(instant);
            let mix = |old: f64, new: f64| old + NEW_SAMPLE_WEIGHT * (new - old);
            *r = Rates {
                cps: mix(r.cps, instant.cps),
                in_pps: mix(r.in_pps, instant.in_pps),
                out_pps: mix(r.out_pps, instant.out_pps),
                in_bps: mix(r.in_bps, instant.in_bps),
                out_bps: mix(r.out_bps, instant.out_bps),
            };
        }
    }

    /// The smoothed rates of `slot` (zero before two samples).
    pub fn get(&self, slot: u16) -> Rates {
        self.rates.get(&slot).copied().unwrap_or_default()
    }

    /// Forgets slots not in `keep` (removed real servers).
    pub fn retain(&mut self, keep: impl Fn(u16) -> bool) {
        self.last.retain(|s, _| keep(*s));
        self.rates.retain(|s, _| keep(*s));
    }
}

/// Sums rates (a service's from its real servers').
pub fn add(a: Rates, b: Rates) -> Rates {
    Rates {
        cps: a.cps + b.cps,
        in_pps: a.in_pps + b.in_pps,
        out_pps: a.out_pps + b.out_pps,
        in_bps: a.in_bps + b.in_bps,
        out_bps: a.out_bps + b.out_bps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_converge_to_the_steady_rate() {
        let mut r = RateEstimator::default();
        let t0 = Instant::now();
        for s in 0..10u64 {
            let stats = Stats {
                conns: 100 * s,
                in_packets: 1000 * s,
                ..Stats::default()
            };
            r.sample(3, t0 + Duration::from_secs(s), stats);
        }
        let rate = r.get(3);
        assert!((rate.cps - 100.0).abs() < 1e-9, "{rate:?}");
        assert!((rate.in_pps - 1000.0).abs() < 1e-9);
        assert_eq!(r.get(4), Rates::default());
        r.retain(|s| s != 3);
        assert_eq!(r.get(3), Rates::default());
    }
}
