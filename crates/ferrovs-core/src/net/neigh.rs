//! The neighbour table (ARP for IPv4, ND for IPv6) with a bounded queue of packets
//! waiting for resolution.
//!
//! One table per worker. A miss creates an INCOMPLETE entry, holds the packet and asks
//! the caller to send a probe; probes repeat every [`PROBE_INTERVAL_MS`] up to
//! [`MAX_PROBES`] times, after which the held packets are dropped and the entry is
//! forgotten (the next packet starts over, so a dead host costs at most one probe per
//! second). Learned entries never expire while in use; entries older than
//! [`REFRESH_AFTER_MS`] are re-probed when used and keep forwarding meanwhile, so a
//! real server that changes its MAC is followed without a forwarding gap.
//!
//! The gateways of multipath routes are *watched*: one that does not answer its
//! probes is remembered as unreachable ([`NeighTable::unreachable`]), so that flows
//! choose another next hop, and is probed again every [`PROBE_INTERVAL_MS`] until
//! it answers.

use crate::packet::MacAddr;
use foldhash::fast::FixedState;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Interval between probes for an unresolved neighbour.
pub const PROBE_INTERVAL_MS: u64 = 1000;
/// Probes sent before giving up on a neighbour.
pub const MAX_PROBES: u8 = 3;
/// Age after which a learned entry is refreshed when used.
pub const REFRESH_AFTER_MS: u64 = 60_000;

/// Sizes of the table and its queues.
#[derive(Debug, Clone, Copy)]
pub struct NeighLimits {
    /// Entries in the table (static + learned + incomplete).
    pub entries: usize,
    /// Neighbours being resolved at the same time.
    pub incomplete: usize,
    /// Packets held in total while waiting for resolution.
    pub held: usize,
    /// Packets held for one neighbour.
    pub held_per_neighbor: u16,
}

impl Default for NeighLimits {
    fn default() -> Self {
        NeighLimits {
            entries: 4096,
            incomplete: 256,
            held: 512,
            held_per_neighbor: 32,
        }
    }
}

/// Where a neighbour entry's MAC address came from, or that it has none yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighState {
    /// Configured; never replaced by learning.
    Static,
    /// Learned from ARP/ND.
    Reachable,
    /// Being resolved.
    Incomplete,
}

/// A neighbour: its MAC address, the port it is reached through, its state.
#[derive(Debug, Clone, Copy)]
pub struct NeighEntry {
    /// The neighbour's MAC address; zero while incomplete.
    pub mac: MacAddr,
    /// Index of the port the neighbour is reached through.
    pub port: usize,
    /// Static, learned, or still being resolved.
    pub state: NeighState,
    /// When the MAC was last confirmed (ms).
    pub updated_ms: u64,
    last_probe_ms: u64,
    probes: u8,
    held: u16,
}

/// Result of looking a neighbour up for transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Send to this MAC. `probe`: also send a refresh probe now.
    Known {
        /// The neighbour's MAC address.
        mac: MacAddr,
        /// The entry is due for a refresh: send a probe as well.
        probe: bool,
    },
    /// Unknown: hold the packet. `probe`: send the first probe now.
    Resolving {
        /// Resolution starts with this packet: send the first probe; false while
        /// earlier probes are under way.
        probe: bool,
    },
    /// No room to resolve another neighbour; drop the packet.
    Busy,
}

/// What `learn` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A neighbour resolved for the first time, or added; packets held for it
    /// were released.
    New,
    /// A learned neighbour moved to another MAC address or port.
    Changed,
    /// The same MAC address and port: the entry's age starts again.
    Confirmed,
    /// Static entries are not overridden; unknown senders are not added unless asked.
    Ignored,
}

struct Held<B> {
    ip: IpAddr,
    since_ms: u64,
    pkt: Option<B>,
}

/// Per-worker neighbour table holding packets of type `B` while resolving.
pub struct NeighTable<B> {
    entries: HashMap<IpAddr, NeighEntry, FixedState>,
    incomplete: Vec<IpAddr>,
    held: VecDeque<Held<B>>,
    limits: NeighLimits,
    /// Bumped whenever an entry is added, removed or changes its MAC, port or
    /// state, so that caches of lookup results know when to look again.
    generation: u64,
    /// The gateways of multipath routes (see the module documentation).
    watched: Vec<IpAddr>,
    /// Watched neighbours that did not answer: (port, time of the last probe).
    unreachable: HashMap<IpAddr, (usize, u64), FixedState>,
}

impl<B> NeighTable<B> {
    /// An empty table, with room for `limits` allocated up front.
    pub fn new(limits: NeighLimits) -> Self {
        NeighTable {
            entries: HashMap::with_capacity_and_hasher(limits.entries, FixedState::default()),
            incomplete: Vec::with_capacity(limits.incomplete),
            held: VecDeque::with_capacity(limits.held),
            limits,
            generation: 0,
            watched: Vec::new(),
            unreachable: HashMap::with_capacity_and_hasher(
                limits.incomplete,
                FixedState::default(),
            ),
        }
    }

    /// Watches `ips` (the gateways of multipath routes) instead of the earlier
    /// ones; marks of neighbours no longer watched are dropped.
    pub fn watch(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        self.watched.clear();
        self.watched.extend(ips);
        let before = self.unreachable.len();
        let watched = &self.watched;
        self.unreachable.retain(|ip, _| watched.contains(ip));
        if self.unreachable.len() != before {
            self.generation += 1;
        }
    }

    /// True when `ip` is watched and did not answer its last resolution; false
    /// again once it answers.
    #[inline]
    pub fn unreachable(&self, ip: IpAddr) -> bool {
        !self.unreachable.is_empty() && self.unreachable.contains_key(&ip)
    }

    /// Changes with every added, removed or changed entry (not with a refresh that
    /// confirms the same MAC). A cached [`NeighTable::lookup`] result stays right
    /// while the generation is the same and, for a learned entry, until
    /// [`NeighTable::fresh_until`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The MAC of a resolved `ip` and the time until which [`NeighTable::lookup`]
    /// answers it without asking for a probe (`u64::MAX` for a static entry); None
    /// when `ip` is not resolved or already due for a refresh at `now_ms`.
    pub fn fresh_until(&self, ip: IpAddr, now_ms: u64) -> Option<(MacAddr, u64)> {
        let e = self.entries.get(&ip)?;
        match e.state {
            NeighState::Static => Some((e.mac, u64::MAX)),
            NeighState::Reachable => {
                let until = e.updated_ms.saturating_add(REFRESH_AFTER_MS);
                (now_ms < until).then_some((e.mac, until))
            }
            NeighState::Incomplete => None,
        }
    }

    /// Adds a configured entry.
    pub fn add_static(&mut self, ip: IpAddr, mac: MacAddr, port: usize) {
        self.generation += 1;
        self.entries.insert(
            ip,
            NeighEntry {
                mac,
                port,
                state: NeighState::Static,
                updated_ms: 0,
                last_probe_ms: 0,
                probes: 0,
                held: 0,
            },
        );
    }

    /// The entry of `ip` in any state, without starting resolution or a probe.
    pub fn get(&self, ip: IpAddr) -> Option<&NeighEntry> {
        self.entries.get(&ip)
    }

    /// All entries, for display.
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &NeighEntry)> {
        self.entries.iter()
    }

    /// Packets currently held.
    pub fn held_len(&self) -> usize {
        self.held.iter().filter(|h| h.pkt.is_some()).count()
    }

    /// Looks `ip` up for transmission on `port`, starting resolution on a miss.
    #[inline]
    pub fn lookup(&mut self, ip: IpAddr, port: usize, now_ms: u64) -> Lookup {
        if let Some(e) = self.entries.get_mut(&ip) {
            return match e.state {
                NeighState::Static => Lookup::Known {
                    mac: e.mac,
                    probe: false,
                },
                NeighState::Reachable => {
                    let stale = now_ms.saturating_sub(e.updated_ms) >= REFRESH_AFTER_MS;
                    let due = now_ms.saturating_sub(e.last_probe_ms) >= PROBE_INTERVAL_MS;
                    let probe = stale && due;
                    if probe {
                        e.last_probe_ms = now_ms;
                    }
                    Lookup::Known { mac: e.mac, probe }
                }
                NeighState::Incomplete => Lookup::Resolving { probe: false },
            };
        }
        if self.entries.len() >= self.limits.entries
            || self.incomplete.len() >= self.limits.incomplete
        {
            return Lookup::Busy;
        }
        self.generation += 1;
        self.entries.insert(
            ip,
            NeighEntry {
                mac: MacAddr::ZERO,
                port,
                state: NeighState::Incomplete,
                updated_ms: now_ms,
                last_probe_ms: now_ms,
                probes: 1,
                held: 0,
            },
        );
        self.incomplete.push(ip);
        Lookup::Resolving { probe: true }
    }

    /// Holds `pkt` until `ip` resolves; gives it back when the queue is full.
    pub fn hold(&mut self, ip: IpAddr, pkt: B, now_ms: u64) -> Result<(), B> {
        let Some(e) = self.entries.get_mut(&ip) else {
            return Err(pkt);
        };
        if e.state != NeighState::Incomplete
            || e.held >= self.limits.held_per_neighbor
            || self.held.len() >= self.limits.held
        {
            return Err(pkt);
        }
        e.held += 1;
        self.held.push_back(Held {
            ip,
            since_ms: now_ms,
            pkt: Some(pkt),
        });
        Ok(())
    }

    /// Records that `ip` is at `mac` on `port`. With `create` false only an existing
    /// entry is updated (RFC 826: merge, but add only when the packet was for us).
    /// Packets held for `ip` are handed to `release` with the MAC.
    pub fn learn(
        &mut self,
        ip: IpAddr,
        mac: MacAddr,
        port: usize,
        now_ms: u64,
        create: bool,
        mut release: impl FnMut(B, MacAddr, usize),
    ) -> Learned {
        if !mac.is_unicast() {
            return Learned::Ignored;
        }
        // An unreachable neighbour answering its re-probe is taken whatever the
        // packet (an IPv6 advertisement does not create entries otherwise).
        let answered = self.unreachable(ip) && self.unreachable.remove(&ip).is_some();
        let create = create || answered;
        let room = self.entries.len() < self.limits.entries;
        let outcome = match self.entries.get_mut(&ip) {
            Some(e) if e.state == NeighState::Static => return Learned::Ignored,
            Some(e) => {
                let was_incomplete = e.state == NeighState::Incomplete;
                let outcome = if was_incomplete {
                    Learned::New
                } else if e.mac != mac || e.port != port {
                    Learned::Changed
                } else {
                    Learned::Confirmed
                };
                if outcome != Learned::Confirmed {
                    self.generation += 1;
                }
                e.mac = mac;
                e.port = port;
                e.state = NeighState::Reachable;
                e.updated_ms = now_ms;
                e.probes = 0;
                e.held = 0;
                if was_incomplete {
                    self.incomplete.retain(|i| *i != ip);
                }
                outcome
            }
            None if create && room => {
                self.generation += 1;
                self.entries.insert(
                    ip,
                    NeighEntry {
                        mac,
                        port,
                        state: NeighState::Reachable,
                        updated_ms: now_ms,
                        last_probe_ms: now_ms,
                        probes: 0,
                        held: 0,
                    },
                );
                return Learned::New;
            }
            None => return Learned::Ignored,
        };
        if outcome == Learned::New {
            for h in self.held.iter_mut().filter(|h| h.ip == ip) {
                if let Some(pkt) = h.pkt.take() {
                    release(pkt, mac, port);
                }
            }
            self.compact_held();
        }
        outcome
    }

    /// Housekeeping, called a few times per second: asks for probe retries through
    /// `probe(ip, port)` and gives up on neighbours that never answered, handing
    /// their held packets to `drop_pkt`. Returns how many packets were given up.
    pub fn tick(
        &mut self,
        now_ms: u64,
        mut probe: impl FnMut(IpAddr, usize),
        mut drop_pkt: impl FnMut(B),
    ) -> usize {
        let mut dropped = 0;
        let mut i = 0;
        while i < self.incomplete.len() {
            let ip = self.incomplete[i];
            let Some(e) = self.entries.get_mut(&ip) else {
                self.incomplete.swap_remove(i);
                continue;
            };
            if now_ms.saturating_sub(e.last_probe_ms) < PROBE_INTERVAL_MS {
                i += 1;
                continue;
            }
            if e.probes < MAX_PROBES {
                e.probes += 1;
                e.last_probe_ms = now_ms;
                probe(ip, e.port);
                i += 1;
                continue;
            }
            // Unanswered: forget the neighbour and drop what waited for it.
            self.generation += 1;
            let port = e.port;
            self.entries.remove(&ip);
            self.incomplete.swap_remove(i);
            if self.watched.contains(&ip) && self.unreachable.len() < self.limits.incomplete {
                self.unreachable.insert(ip, (port, now_ms));
            }
            for h in self.held.iter_mut().filter(|h| h.ip == ip) {
                if let Some(pkt) = h.pkt.take() {
                    dropped += 1;
                    drop_pkt(pkt);
                }
            }
        }
        self.compact_held();
        for (ip, (port, last_probe_ms)) in self.unreachable.iter_mut() {
            if now_ms.saturating_sub(*last_probe_ms) >= PROBE_INTERVAL_MS {
                *last_probe_ms = now_ms;
                probe(*ip, *port);
            }
        }
        dropped
    }

    /// Gives up on every neighbour still being resolved, whatever its probe count
    /// (a worker shutting down): their held packets go to `drop_pkt`, and the
    /// entries are forgotten as [`NeighTable::tick`] forgets an unanswered one.
    /// Returns how many packets were given up.
    pub fn release_all(&mut self, mut drop_pkt: impl FnMut(B)) -> usize {
        for ip in self.incomplete.drain(..) {
            if self.entries.remove(&ip).is_some() {
                self.generation += 1;
            }
        }
        let mut dropped = 0;
        for h in self.held.drain(..) {
            if let Some(pkt) = h.pkt {
                dropped += 1;
                drop_pkt(pkt);
            }
        }
        dropped
    }

    /// Removes released slots from the front of the FIFO (and the whole queue once it
    /// only holds released slots), so the queue never grows past its capacity.
    fn compact_held(&mut self) {
        while self.held.front().is_some_and(|h| h.pkt.is_none()) {
            self.held.pop_front();
        }
        if self.held.iter().all(|h| h.pkt.is_none()) {
            self.held.clear();
        } else if self.held.len() == self.held.capacity() {
            self.held.retain(|h| h.pkt.is_some());
        }
    }

    /// Age of the oldest held packet (for diagnostics).
    pub fn oldest_held_ms(&self, now_ms: u64) -> Option<u64> {
        self.held
            .iter()
            .find(|h| h.pkt.is_some())
            .map(|h| now_ms.saturating_sub(h.since_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    #[test]
    fn miss_holds_packets_until_learned() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighLimits::default());
        let rs = ip("198.19.0.10");
        assert_eq!(t.lookup(rs, 1, 0), Lookup::Resolving { probe: true });
        t.hold(rs, 1, 0).unwrap();
        assert_eq!(t.lookup(rs, 1, 10), Lookup::Resolving { probe: false });
        t.hold(rs, 2, 10).unwrap();
        let mut out = vec![];
        let got = t.learn(rs, MAC_A, 1, 20, false, |p, m, port| out.push((p, m, port)));
        assert_eq!(got, Learned::New);
        assert_eq!(out, vec![(1, MAC_A, 1), (2, MAC_A, 1)]);
        assert_eq!(t.held_len(), 0);
        assert_eq!(
            t.lookup(rs, 1, 30),
            Lookup::Known {
                mac: MAC_A,
                probe: false
            }
        );
    }

    #[test]
    fn a_watched_neighbour_that_never_answers_is_unreachable_until_it_does() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighLimits::default());
        let (gw, other) = (ip("198.18.0.253"), ip("198.18.0.9"));
        t.watch([gw]);
        t.lookup(gw, 0, 0);
        t.lookup(other, 0, 0);
        let mut probes = vec![];
        for now in (100..=3000).step_by(100) {
            t.tick(now, |i, _| probes.push(i), |_| {});
        }
        assert!(t.unreachable(gw), "given up at 3000");
        assert!(!t.unreachable(other), "not watched");
        assert!(t.get(gw).is_none());
        assert!(probes.contains(&other));
        // Probed again every interval, without traffic.
        let mut probes = vec![];
        for now in (3100..=6000).step_by(100) {
            t.tick(now, |i, p| probes.push((now, i, p)), |_| {});
        }
        assert_eq!(
            probes,
            vec![(4000, gw, 0), (5000, gw, 0), (6000, gw, 0)],
            "only the watched one"
        );
        // An answer, even one that would not create an entry, ends it.
        let generation = t.generation();
        assert_eq!(
            t.learn(gw, MAC_A, 0, 6100, false, |_, _, _| {}),
            Learned::New
        );
        assert!(!t.unreachable(gw));
        assert!(t.generation() > generation);
        assert_eq!(t.fresh_until(gw, 6200).map(|f| f.0), Some(MAC_A));
        // No longer watched: forgotten.
        t.lookup(other, 0, 7000);
        for now in (7100..=10_000).step_by(100) {
            t.tick(now, |_, _| {}, |_| {});
        }
        t.watch([other]);
        assert!(
            !t.unreachable(other),
            "marks come from give-ups while watched"
        );
    }

    #[test]
    fn unanswered_probes_drop_held_packets() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighLimits::default());
        let rs = ip("198.19.0.10");
        t.lookup(rs, 0, 0);
        t.hold(rs, 7, 0).unwrap();
        let mut probes = vec![];
        let mut dropped = vec![];
        for now in (100..=4000).step_by(100) {
            t.tick(now, |i, p| probes.push((now, i, p)), |p| dropped.push(p));
        }
        // first probe at lookup, retries at 1000 and 2000, give up at 3000
        assert_eq!(
            probes.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![1000, 2000]
        );
        assert_eq!(dropped, vec![7]);
        assert!(t.get(rs).is_none());
        // a later packet starts over
        assert_eq!(t.lookup(rs, 0, 5000), Lookup::Resolving { probe: true });
    }

    #[test]
    fn release_all_gives_back_packets_of_neighbours_still_probed() {
        // Found by the pipeline fuzz target: shutdown used `tick(u64::MAX)`, which
        // only gives up on neighbours whose probes ran out; one probed fewer
        // times kept its packets.
        let mut t: NeighTable<u32> = NeighTable::new(NeighLimits::default());
        let (a, b) = (ip("198.19.0.10"), ip("2001:2:0:19::10"));
        t.lookup(a, 0, 0);
        t.hold(a, 1, 0).unwrap();
        t.hold(a, 2, 0).unwrap();
        t.lookup(b, 1, 0);
        t.hold(b, 3, 0).unwrap();
        t.tick(
            1000,
            |_, _| {},
            |_| panic!("dropped before its probes ran out"),
        );
        let mut dropped = vec![];
        assert_eq!(t.release_all(|p| dropped.push(p)), 3);
        dropped.sort();
        assert_eq!(dropped, vec![1, 2, 3]);
        assert_eq!(t.held_len(), 0);
        assert!(t.get(a).is_none() && t.get(b).is_none());
        // A later packet starts resolution afresh.
        assert_eq!(t.lookup(a, 0, 5000), Lookup::Resolving { probe: true });
        t.hold(a, 4, 5000).unwrap();
        assert_eq!(t.held_len(), 1);
    }

    #[test]
    fn queues_are_bounded() {
        let limits = NeighLimits {
            entries: 4,
            incomplete: 2,
            held: 3,
            held_per_neighbor: 2,
        };
        let mut t: NeighTable<u32> = NeighTable::new(limits);
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        t.lookup(a, 0, 0);
        t.lookup(b, 0, 0);
        assert_eq!(t.lookup(c, 0, 0), Lookup::Busy);
        t.hold(a, 1, 0).unwrap();
        t.hold(a, 2, 0).unwrap();
        assert_eq!(t.hold(a, 3, 0), Err(3)); // per neighbour
        t.hold(b, 4, 0).unwrap();
        assert_eq!(t.hold(b, 5, 0), Err(5)); // total
        assert_eq!(t.hold(c, 6, 0), Err(6)); // not being resolved
        assert_eq!(t.held_len(), 3);
    }

    #[test]
    fn static_entries_are_not_overridden() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighLimits::default());
        let gw = ip("198.18.0.254");
        t.add_static(gw, MAC_A, 0);
        assert_eq!(
            t.learn(gw, MAC_B, 0, 5, true, |_, _, _| {}),
            Learned::Ignored
        );
        assert_eq!(
            t.lookup(gw, 0, 10),
            Lookup::Known {
                mac: MAC_A,
                probe: false
            }
        );
    }

    #[test]
    fn learning_without_create_only_updates() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighLimits::default());
        let h = ip("198.18.0.5");
        assert_eq!(
            t.learn(h, MAC_A, 0, 0, false, |_, _, _| {}),
            Learned::Ignored
        );
        assert!(t.get(h).is_none());
        assert_eq!(t.learn(h, MAC_A, 0, 0, true, |_, _, _| {}), Learned::New);
        assert_eq!(
            t.learn(h, MAC_A, 0, 1, false, |_, _, _| {}),
            Learned::Confirmed
        );
        assert_eq!(
            t.learn(h, MAC_B, 0, 2, false, |_, _, _| {}),
            Learned::Changed
        );
        assert_eq!(t.get(h).unwrap().mac, MAC_B);
        assert_eq!(
            t.learn(h, MacAddr::BROADCAST, 0, 3, false, |_, _, _| {}),
            Learned::Ignored
        );
    }

    #[test]
    fn generation_and_freshness_tell_caches_when_to_look_again() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighLimits::default());
        let (h, gw) = (ip("198.18.0.5"), ip("198.18.0.254"));
        let g0 = t.generation();
        assert_eq!(t.fresh_until(h, 0), None);
        // A miss creates an incomplete entry: changed, but nothing to cache yet.
        assert_eq!(t.lookup(h, 0, 10), Lookup::Resolving { probe: true });
        let g1 = t.generation();
        assert_ne!(g1, g0);
        assert_eq!(t.fresh_until(h, 10), None);
        // Resolved: cacheable until the refresh is due, exactly when lookup
        // starts asking for a probe.
        t.learn(h, MAC_A, 0, 100, false, |_, _, _| {});
        let g2 = t.generation();
        assert_ne!(g2, g1);
        let until = 100 + REFRESH_AFTER_MS;
        assert_eq!(t.fresh_until(h, 100), Some((MAC_A, until)));
        assert_eq!(t.fresh_until(h, until - 1), Some((MAC_A, until)));
        assert_eq!(t.fresh_until(h, until), None);
        assert!(matches!(
            t.lookup(h, 0, until),
            Lookup::Known { probe: true, .. }
        ));
        // The same MAC confirmed: same generation, fresh for longer.
        t.learn(h, MAC_A, 0, 5000, false, |_, _, _| {});
        assert_eq!(t.generation(), g2);
        assert_eq!(
            t.fresh_until(h, 5000),
            Some((MAC_A, 5000 + REFRESH_AFTER_MS))
        );
        // Another MAC, another port: a new generation.
        t.learn(h, MAC_B, 0, 6000, false, |_, _, _| {});
        assert_ne!(t.generation(), g2);
        let g3 = t.generation();
        t.learn(h, MAC_B, 1, 6000, false, |_, _, _| {});
        assert_ne!(t.generation(), g3);
        // Static entries never need a refresh.
        let g4 = t.generation();
        t.add_static(gw, MAC_A, 0);
        assert_ne!(t.generation(), g4);
        assert_eq!(t.fresh_until(gw, u64::MAX - 1), Some((MAC_A, u64::MAX)));
        // An entry given up after its probes: a new generation.
        let lost = ip("198.18.0.6");
        assert_eq!(t.lookup(lost, 0, 0), Lookup::Resolving { probe: true });
        let g5 = t.generation();
        for k in 1..=u64::from(MAX_PROBES) + 1 {
            t.tick(k * PROBE_INTERVAL_MS, |_, _| {}, |_| {});
        }
        assert!(t.get(lost).is_none());
        assert_ne!(t.generation(), g5);
    }

    #[test]
    fn old_entries_are_refreshed_while_still_used() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighLimits::default());
        let h = ip("198.18.0.5");
        t.learn(h, MAC_A, 0, 0, true, |_, _, _| {});
        assert_eq!(
            t.lookup(h, 0, REFRESH_AFTER_MS - 1),
            Lookup::Known {
                mac: MAC_A,
                probe: false
            }
        );
        assert_eq!(
            t.lookup(h, 0, REFRESH_AFTER_MS),
            Lookup::Known {
                mac: MAC_A,
                probe: true
            }
        );
        // rate-limited
        assert_eq!(
            t.lookup(h, 0, REFRESH_AFTER_MS + 10),
            Lookup::Known {
                mac: MAC_A,
                probe: false
            }
        );
        assert_eq!(
            t.lookup(h, 0, REFRESH_AFTER_MS + PROBE_INTERVAL_MS),
            Lookup::Known {
                mac: MAC_A,
                probe: true
            }
        );
        t.learn(h, MAC_A, 0, REFRESH_AFTER_MS + 2000, false, |_, _, _| {});
        assert_eq!(
            t.lookup(h, 0, REFRESH_AFTER_MS + 3000),
            Lookup::Known {
                mac: MAC_A,
                probe: false
            }
        );
    }

    #[test]
    fn held_queue_does_not_leak_slots_over_many_resolutions() {
        let limits = NeighLimits {
            entries: 1024,
            incomplete: 4,
            held: 8,
            held_per_neighbor: 8,
        };
        let mut t: NeighTable<u32> = NeighTable::new(limits);
        for n in 0..1000u32 {
            let a = IpAddr::from([10, 0, (n >> 8) as u8, n as u8]);
            t.lookup(a, 0, u64::from(n));
            t.hold(a, n, u64::from(n)).unwrap();
            let mut got = 0;
            t.learn(a, MAC_A, 0, u64::from(n), false, |p, _, _| {
                assert_eq!(p, n);
                got += 1
            });
            assert_eq!(got, 1);
        }
        assert_eq!(t.held_len(), 0);
    }
}
