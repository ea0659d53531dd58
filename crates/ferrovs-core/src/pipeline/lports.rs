//! FULLNAT local ports: each worker hands out only the ports of every local address
//! that it owns by `steer::owner_of`, so a real server's reply to `LIP:lport` tells
//! which worker owns the connection.

use crate::conn::shuffle;
use crate::net::AddrKey;
use crate::steer::owner_of;
use foldhash::fast::FixedState;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Lowest local port handed out; below are the well-known and registered ranges
/// a real server may treat specially.
pub const FIRST_LOCAL_PORT: u16 = 1024;

/// One local address's free ports on this worker.
struct Pool {
    addr: IpAddr,
    /// Free ports, a FIFO queue: a port given back is handed out again only after
    /// every other free port, as DPVS's address pool does. A real server keeps
    /// `LIP:lport` in TIME_WAIT for a minute after a connection it closed; handing
    /// the port straight out again (a client reusing its own port makes ferrovs
    /// replace its connection at once) gets the new SYN refused by the server's
    /// PAWS check and retransmitted a second later. Filled in a shuffled order so
    /// consecutive connections do not get predictable ports.
    free: VecDeque<u16>,
}

/// The local ports of one worker, for every FULLNAT local address.
#[derive(Default)]
pub struct LocalPorts {
    pools: Vec<Pool>,
    by_addr: HashMap<AddrKey, usize, FixedState>,
    worker: usize,
    workers: usize,
    /// This member's share among `members` of a sync cluster (0 of 1 without
    /// sync), so that members never hand out the same local address and port.
    member: usize,
    members: usize,
    rng: u64,
}

impl LocalPorts {
    /// Pools for `addrs` holding the ports `p >= FIRST_LOCAL_PORT` that `worker`
    /// owns among `workers`.
    #[cfg(test)]
    pub fn new(
        addrs: impl IntoIterator<Item = IpAddr>,
        worker: usize,
        workers: usize,
        seed: u64,
    ) -> Self {
        Self::with_share(addrs, worker, workers, (0, 1), seed)
    }

    /// [`LocalPorts::new`] for member `share.0` of `share.1` members of a sync
    /// cluster: of the worker's ports, those whose `(port >> 1) / workers` is the
    /// member's residue modulo the members. So a port's worker and its member
    /// follow from the port alone, and no two members hand it out.
    pub fn with_share(
        addrs: impl IntoIterator<Item = IpAddr>,
        worker: usize,
        workers: usize,
        share: (usize, usize),
        seed: u64,
    ) -> Self {
        let mut lp = LocalPorts {
            worker,
            workers: workers.max(1),
            member: share.0,
            members: share.1.max(1),
            rng: seed | 1,
            ..LocalPorts::default()
        };
        lp.add_addrs(addrs);
        lp
    }

    /// Whether `port` is this worker's (and this member's) to hand out.
    #[inline]
    fn owns(&self, port: u16) -> bool {
        owner_of(port, self.workers) == self.worker
            && (usize::from(port >> 1) / self.workers) % self.members == self.member
    }

    /// Adds pools for local addresses not seen before (a configuration change);
    /// pools of addresses no longer configured stay, so their connections can give
    /// their ports back.
    pub fn add_addrs(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        for addr in addrs {
            if self.by_addr.contains_key(&AddrKey(addr)) {
                continue;
            }
            let mut free: Vec<u16> = (FIRST_LOCAL_PORT..=u16::MAX)
                .filter(|p| self.owns(*p))
                .collect();
            shuffle(&mut free, &mut self.rng);
            self.by_addr.insert(AddrKey(addr), self.pools.len());
            self.pools.push(Pool {
                addr,
                free: VecDeque::from(free),
            });
        }
    }

    /// A free port on one of `addrs`, trying them in turn from `*next` (which is
    /// advanced so a service spreads its connections over its local addresses).
    #[inline]
    pub fn take(&mut self, addrs: &[IpAddr], next: &mut usize) -> Option<(IpAddr, u16)> {
        for _ in 0..addrs.len() {
            let addr = addrs[*next % addrs.len()];
            *next = next.wrapping_add(1);
            let Some(&i) = self.by_addr.get(&AddrKey(addr)) else {
                continue;
            };
            if let Some(port) = self.pools[i].free.pop_front() {
                return Some((self.pools[i].addr, port));
            }
        }
        None
    }

    /// Returns a port taken with [`LocalPorts::take`]. A port that is not this
    /// worker's and member's (a connection installed by sync) is not taken in.
    #[inline]
    pub fn give_back(&mut self, addr: IpAddr, port: u16) {
        if !self.owns(port) {
            return;
        }
        if let Some(&i) = self.by_addr.get(&AddrKey(addr)) {
            let pool = &mut self.pools[i];
            // Capacity was reserved at construction, so this never allocates.
            if pool.free.len() < pool.free.capacity() {
                pool.free.push_back(port);
            }
        }
    }

    /// Free ports on `addr`.
    #[cfg(test)]
    pub fn available(&self, addr: IpAddr) -> usize {
        self.by_addr
            .get(&AddrKey(addr))
            .map_or(0, |&i| self.pools[i].free.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_share_the_ports_without_overlap_and_foreign_ones_are_not_taken_in() {
        let lip = ip("198.19.0.2");
        for (workers, members) in [(1, 2), (2, 2), (3, 2), (2, 3)] {
            let mut seen = std::collections::HashSet::new();
            let mut total = 0;
            for member in 0..members {
                for worker in 0..workers {
                    let mut lp =
                        LocalPorts::with_share([lip], worker, workers, (member, members), 9);
                    let n = lp.available(lip);
                    total += n;
                    let mut next = 0;
                    for _ in 0..n {
                        let (_, p) = lp.take(&[lip], &mut next).unwrap();
                        assert_eq!(owner_of(p, workers), worker);
                        assert!(seen.insert(p), "{p} handed out twice");
                    }
                    // Another member's port given back is ignored.
                    let foreign = (FIRST_LOCAL_PORT..=u16::MAX)
                        .find(|p| !lp.owns(*p))
                        .unwrap();
                    lp.give_back(lip, foreign);
                    assert_eq!(lp.available(lip), 0);
                }
            }
            assert_eq!(total, usize::from(u16::MAX - FIRST_LOCAL_PORT) + 1);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_belong_to_the_worker_residue_class() {
        let lip = ip("198.19.0.2");
        for (worker, workers) in [(0, 1), (0, 2), (1, 2), (3, 4)] {
            let mut lp = LocalPorts::new([lip], worker, workers, 7);
            let total = lp.available(lip);
            let mut next = 0;
            let mut seen = std::collections::HashSet::new();
            while let Some((a, p)) = lp.take(&[lip], &mut next) {
                assert_eq!(a, lip);
                assert!(p >= FIRST_LOCAL_PORT);
                assert_eq!(owner_of(p, workers), worker);
                assert!(seen.insert(p), "port {p} handed out twice");
            }
            assert_eq!(seen.len(), total);
            assert!(total >= (65536 - 1024) / workers - 1);
        }
    }

    #[test]
    fn exhaustion_then_reuse() {
        let lip = ip("198.19.0.2");
        let mut lp = LocalPorts::new([lip], 0, 1, 1);
        let mut next = 0;
        let mut taken = vec![];
        while let Some(t) = lp.take(&[lip], &mut next) {
            taken.push(t);
        }
        assert_eq!(lp.take(&[lip], &mut next), None);
        lp.give_back(taken[10].0, taken[10].1);
        assert_eq!(lp.take(&[lip], &mut next), Some(taken[10]));
    }

    #[test]
    fn a_port_given_back_waits_behind_every_other_free_port() {
        let lip = ip("198.19.0.2");
        let mut lp = LocalPorts::new([lip], 0, 1, 5);
        let total = lp.available(lip);
        let mut next = 0;
        let first = lp.take(&[lip], &mut next).unwrap();
        lp.give_back(first.0, first.1);
        // Every other port comes first, then the one given back.
        for _ in 1..total {
            assert_ne!(lp.take(&[lip], &mut next), Some(first));
        }
        assert_eq!(lp.take(&[lip], &mut next), Some(first));
        assert_eq!(lp.take(&[lip], &mut next), None);
    }

    #[test]
    fn connections_rotate_over_local_addresses() {
        let (a, b) = (ip("198.19.0.2"), ip("198.19.0.3"));
        let mut lp = LocalPorts::new([a, b, a], 0, 1, 3);
        let mut next = 0;
        let got: Vec<IpAddr> = (0..4)
            .map(|_| lp.take(&[a, b], &mut next).unwrap().0)
            .collect();
        assert_eq!(got, vec![a, b, a, b]);
        // an address without a pool is skipped
        assert_eq!(lp.take(&[ip("198.19.0.9"), a], &mut next).unwrap().0, a);
        // first pick order is shuffled, not 1024, 1025, ...
        let mut lp = LocalPorts::new([a], 0, 1, 3);
        let mut n = 0;
        let first: Vec<u16> = (0..4).map(|_| lp.take(&[a], &mut n).unwrap().1).collect();
        assert_ne!(first, vec![65535, 65534, 65533, 65532]);
    }
}
