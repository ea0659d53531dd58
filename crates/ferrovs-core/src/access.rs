//! Who may open a connection to a service, and how fast: access lists of prefixes
//! ([`Acl`], [`Access`]) and a per-source rate limit ([`SourceLimiter`]).
//!
//! Both are asked only when a packet would open a connection; a live connection
//! is never checked again, so a change of the lists or the rate applies to new
//! connections only. Neither allocates when asked: an [`Acl`] is built with the
//! configuration snapshot, a [`SourceLimiter`] when a worker takes the snapshot.

use crate::config::{AccessConfig, DenyAction, SourceRate};
use foldhash::fast::FixedState;
use ipnet::IpNet;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::IpAddr;

/// A set of prefixes, asked whether it holds an address: one hash probe per
/// distinct prefix length in the set, whatever its size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    /// (prefix length, network addresses with that length), longest first.
    v4: Vec<(u8, HashSet<u32, FixedState>)>,
    v6: Vec<(u8, HashSet<u128, FixedState>)>,
}

impl Acl {
    /// The set of `nets` (host bits ignored).
    pub fn new(nets: &[IpNet]) -> Acl {
        let mut acl = Acl::default();
        for net in nets {
            match net.trunc() {
                IpNet::V4(n) => insert(&mut acl.v4, n.prefix_len(), u32::from(n.network())),
                IpNet::V6(n) => insert(&mut acl.v6, n.prefix_len(), u128::from(n.network())),
            }
        }
        acl.v4.sort_by_key(|e| std::cmp::Reverse(e.0));
        acl.v6.sort_by_key(|e| std::cmp::Reverse(e.0));
        acl
    }

    /// True when the set holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether a prefix of the set covers `ip`.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .any(|(len, set)| set.contains(&(a & mask32(*len))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .any(|(len, set)| set.contains(&(a & mask128(*len))))
            }
        }
    }
}

fn insert<T: Eq + std::hash::Hash>(
    by_len: &mut Vec<(u8, HashSet<T, FixedState>)>,
    len: u8,
    network: T,
) {
    match by_len.iter_mut().find(|(l, _)| *l == len) {
        Some((_, set)) => {
            set.insert(network);
        }
        None => {
            let mut set = HashSet::with_hasher(FixedState::with_seed(0x6163_6c00));
            set.insert(network);
            by_len.push((len, set));
        }
    }
}

#[inline]
fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

#[inline]
fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// A service's access rules as the data plane asks them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    allow: Acl,
    deny: Acl,
    /// A refused TCP SYN is answered with a reset.
    pub reset: bool,
    /// The per-source rate of new connections, if limited.
    pub rate: Option<SourceRate>,
}

impl Access {
    /// The rules of a service's configuration.
    pub fn new(cfg: &AccessConfig) -> Access {
        Access {
            allow: Acl::new(&cfg.allow),
            deny: Acl::new(&cfg.deny),
            reset: cfg.deny_action == DenyAction::Rst,
            rate: cfg.new_connections_per_source,
        }
    }

    /// Whether `src` may open a connection: not denied, and allowed when there is
    /// an allow list.
    #[inline]
    pub fn admits(&self, src: IpAddr) -> bool {
        !self.deny.contains(src) && (self.allow.is_empty() || self.allow.contains(src))
    }

    /// True when every source is admitted without a look at a list.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Buckets of a [`SourceLimiter`]: two candidate buckets per source, so two
/// busy sources rarely share one.
const BUCKETS: usize = 16_384;

/// One source's state: GCRA's theoretical arrival time.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which source holds the bucket (part of its hash; 0 = none).
    tag: u32,
    /// When, in ns of the worker's clock, the source's allowance is whole again
    /// plus one interval: a new connection is admitted while this is at most
    /// `tolerance` ahead of now.
    tat_ns: u64,
}

/// A per-source limit of new connections on one worker: the generic cell rate
/// algorithm (a token bucket kept as one timestamp) over a fixed hashed table of
/// sources, allocated once, so asking never allocates.
///
/// Two sources whose hashes collide in both of their buckets share one; a new
/// source takes whichever of its buckets would hold the fewer connections, so
/// an idle source's bucket is taken first.
#[derive(Debug, Clone)]
pub struct SourceLimiter {
    buckets: Box<[Bucket]>,
    /// Time a connection uses up, in ns.
    interval_ns: u64,
    /// How far ahead of now the arrival time may run: `burst - 1` intervals.
    tolerance_ns: u64,
    hasher: foldhash::fast::RandomState,
    rate: SourceRate,
    share: u32,
}

impl SourceLimiter {
    /// A limiter admitting `rate` divided by `share` (the number of workers a
    /// source's connections are spread over; 1 when they all reach one).
    pub fn new(rate: SourceRate, share: u32) -> SourceLimiter {
        let share = share.max(1);
        let count = u64::from(rate.count.max(1));
        let per_ns = rate.per.as_nanos().min(u128::from(u64::MAX)) as u64;
        let interval_ns = per_ns.saturating_mul(u64::from(share)) / count;
        let burst = (count / u64::from(share)).max(1);
        SourceLimiter {
            buckets: vec![Bucket::default(); BUCKETS].into_boxed_slice(),
            interval_ns: interval_ns.max(1),
            tolerance_ns: interval_ns.saturating_mul(burst - 1),
            hasher: foldhash::fast::RandomState::default(),
            rate,
            share,
        }
    }

    /// Whether this limiter was built for `rate` and `share`.
    pub fn is_for(&self, rate: SourceRate, share: u32) -> bool {
        self.rate == rate && self.share == share.max(1)
    }

    /// Takes one new connection from `src` at `now_ms` if its allowance has one.
    #[inline]
    pub fn admit(&mut self, src: IpAddr, now_ms: u64) -> bool {
        let hash = match src {
            IpAddr::V4(a) => self.hasher.hash_one(u32::from(a)),
            IpAddr::V6(a) => self.hasher.hash_one(u128::from(a)),
        };
        let tag = (hash >> 40) as u32 | 1;
        let mask = self.buckets.len() - 1;
        let (i, j) = (hash as usize & mask, (hash >> 20) as usize & mask);
        let now = now_ms.saturating_mul(1_000_000);
        let at = if self.buckets[i].tag == tag {
            i
        } else if self.buckets[j].tag == tag {
            j
        } else {
            // The bucket whose source has the more allowance left gives way.
            let victim = if self.buckets[i].tat_ns <= self.buckets[j].tat_ns {
                i
            } else {
                j
            };
            self.buckets[victim] = Bucket { tag, tat_ns: now };
            victim
        };
        let b = &mut self.buckets[at];
        let tat = b.tat_ns.max(now);
        if tat - now > self.tolerance_ns {
            return false;
        }
        b.tat_ns = tat + self.interval_ns;
        true
    }
}

/// Worker `worker`'s share of a limit of `total` spread over `workers`: the
/// shares add up to `total`.
pub fn worker_share(total: u32, worker: usize, workers: usize) -> u32 {
    let workers = workers.max(1) as u64;
    let total = u64::from(total);
    let share = total / workers + u64::from((worker as u64) < total % workers);
    share as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn acl_matches_like_a_linear_scan() {
        let list = nets(&[
            "198.18.0.0/16",
            "198.19.5.0/24",
            "203.0.113.7/32",
            "0.0.0.0/0",
            "2001:2::/48",
            "2001:db8::1/128",
        ]);
        let v4_only = &list[..3];
        let acl = Acl::new(v4_only);
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Bias towards the listed networks.
            let a = match x % 4 {
                0 => 0xc612_0000 | (x >> 16),
                1 => 0xc613_0500 | (x >> 24),
                2 => 0xcb00_7107,
                _ => x,
            };
            let a = IpAddr::V4(a.into());
            assert_eq!(
                acl.contains(a),
                v4_only.iter().any(|n| n.contains(&a)),
                "{a}"
            );
        }
        let all = Acl::new(&list);
        assert!(all.contains(ip("8.8.8.8")), "the default prefix covers all");
        assert!(all.contains(ip("2001:2:0:ffff::1")));
        assert!(!all.contains(ip("2001:2:1::1")));
        assert!(all.contains(ip("2001:db8::1")));
        assert!(!all.contains(ip("2001:db8::2")));
        assert!(Acl::new(&[]).is_empty() && !Acl::new(&[]).contains(ip("1.2.3.4")));
    }

    #[test]
    fn deny_wins_over_allow() {
        let cfg = AccessConfig {
            allow: nets(&["198.18.0.0/15"]),
            deny: nets(&["198.18.7.0/24"]),
            deny_action: DenyAction::Rst,
            new_connections_per_source: None,
        };
        let a = Access::new(&cfg);
        assert!(a.admits(ip("198.18.6.1")) && a.admits(ip("198.19.0.1")));
        assert!(
            !a.admits(ip("198.18.7.1")),
            "denied inside the allowed range"
        );
        assert!(!a.admits(ip("203.0.113.1")), "not allowed");
        assert!(a.reset && !a.is_open());
        let open = Access::new(&AccessConfig::default());
        assert!(open.is_open() && open.admits(ip("203.0.113.1")) && !open.reset);
    }

    fn rate(count: u32, secs: u64) -> SourceRate {
        SourceRate {
            count,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut l = SourceLimiter::new(rate(10, 1), 1);
        let a = ip("198.18.0.10");
        let b = ip("198.18.0.11");
        let admitted = (0..20).filter(|_| l.admit(a, 1000)).count();
        assert_eq!(admitted, 10, "the burst");
        assert!(l.admit(b, 1000), "another source has its own allowance");
        assert!(!l.admit(a, 1050), "half an interval later: nothing");
        assert!(l.admit(a, 1100), "one interval (100 ms) later: one");
        assert!(!l.admit(a, 1100));
        // Over ten seconds at 50 attempts a second: 10 a second get through.
        let mut n = 0;
        for t in (2000..12_000).step_by(20) {
            n += usize::from(l.admit(a, t));
        }
        assert!((100..=111).contains(&n), "{n}");
    }

    #[test]
    fn a_slow_rate_keeps_its_fractions() {
        // One an hour: a millisecond clock must not round the allowance away.
        let mut l = SourceLimiter::new(rate(1, 3600), 1);
        let a = ip("2001:2::10");
        assert!(l.admit(a, 0));
        assert!(!l.admit(a, 3_599_999));
        assert!(l.admit(a, 3_600_000));
    }

    #[test]
    fn the_rate_is_shared_by_workers() {
        // 10/s over 2 workers: each admits 5 at once and one every 200 ms.
        let mut l = SourceLimiter::new(rate(10, 1), 2);
        let a = ip("198.18.0.10");
        assert_eq!((0..10).filter(|_| l.admit(a, 0)).count(), 5);
        assert!(!l.admit(a, 100));
        assert!(l.admit(a, 200));
        assert!(l.is_for(rate(10, 1), 2) && !l.is_for(rate(10, 1), 1));
    }

    #[test]
    fn many_sources_do_not_starve_a_quiet_one() {
        let mut l = SourceLimiter::new(rate(2, 1), 1);
        let quiet = ip("203.0.113.5");
        assert!(l.admit(quiet, 0));
        // 20,000 other sources each open one connection.
        for i in 0..20_000u32 {
            l.admit(IpAddr::V4((0x0a00_0000 + i).into()), 1);
        }
        // The quiet source kept or regained its allowance.
        assert!(l.admit(quiet, 2));
    }

    #[test]
    fn shares_add_up() {
        for total in [0, 1, 2, 3, 7, 100, u32::MAX] {
            for workers in 1..=5 {
                let sum: u64 = (0..workers)
                    .map(|w| u64::from(worker_share(total, w, workers)))
                    .sum();
                assert_eq!(sum, u64::from(total), "{total} over {workers}");
            }
        }
        assert_eq!(worker_share(5, 0, 2), 3);
        assert_eq!(worker_share(5, 1, 2), 2);
        assert_eq!(worker_share(1, 1, 2), 0);
    }
}
