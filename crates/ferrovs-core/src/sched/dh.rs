//! dh: destination hashing as IPVS `ip_vs_dh.c`.
//!
//! A 256-bucket table filled round robin over the servers in canonical order, one
//! bucket each per round (IPVS ignores weights when filling it); a connection maps to
//! bucket `hash_32(fold(dst), 8)`. When that server cannot take the connection (weight
//! 0 or unavailable) there is no server: dh has no fallback in IPVS.
//!
//! dh is meant for cache clusters reached by transparent redirection, where the
//! destination varies; behind a single VIP every flow has the same destination and
//! goes to one server, exactly as with IPVS.

use super::hash::{fold_addr, hash_32};
use super::{canonical_order, usable, Candidate, FlowHint, SchedError, NO_SERVER};

/// `IP_VS_DH_TAB_BITS`.
const TAB_BITS: u32 = 8;
/// `IP_VS_DH_TAB_SIZE`.
const TAB_SIZE: usize = 1 << TAB_BITS;

/// The destination-hashing table.
#[derive(Debug, Clone)]
pub(super) struct DestinationHash {
    /// Bucket -> slice position, or `NO_SERVER` when there are no servers.
    buckets: Box<[u32; TAB_SIZE]>,
}

impl DestinationHash {
    pub(super) fn new(servers: &[Candidate]) -> Result<Self, SchedError> {
        let mut dh = DestinationHash {
            buckets: Box::new([NO_SERVER; TAB_SIZE]),
        };
        dh.rebuild(servers)?;
        Ok(dh)
    }

    /// `ip_vs_dh_reassign`, in canonical order.
    pub(super) fn rebuild(&mut self, servers: &[Candidate]) -> Result<(), SchedError> {
        let order = match canonical_order(servers) {
            Ok(order) => order,
            Err(e) => {
                self.buckets.fill(NO_SERVER);
                return Err(e);
            }
        };
        if order.is_empty() {
            self.buckets.fill(NO_SERVER);
        } else {
            for (b, &pos) in self.buckets.iter_mut().zip(order.iter().cycle()) {
                *b = pos;
            }
        }
        Ok(())
    }

    pub(super) fn pick(&self, servers: &[Candidate], flow: &FlowHint) -> Option<usize> {
        let b = hash_32(fold_addr(flow.dst), TAB_BITS) as usize;
        match self.buckets[b] {
            NO_SERVER => None,
            entry => usable(servers, entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn to(dst: std::net::IpAddr) -> FlowHint {
        let mut f = flow_from(client_v4(1), 1234);
        f.dst = dst;
        f
    }

    #[test]
    fn table_ignores_weights() {
        let list = servers(&[1, 10, 100]);
        let dh = DestinationHash::new(&list).unwrap();
        assert_eq!(&dh.buckets[..6], &[0, 1, 2, 0, 1, 2]);
        let count = |p| dh.buckets.iter().filter(|&&b| b == p).count();
        assert_eq!((count(0), count(1), count(2)), (86, 85, 85));
    }

    #[test]
    fn table_independent_of_slice_order() {
        let list = servers(&[1, 1, 1, 1, 1]);
        let shuffled = vec![list[3], list[0], list[4], list[2], list[1]];
        let a = DestinationHash::new(&list).unwrap();
        let b = DestinationHash::new(&shuffled).unwrap();
        for (x, y) in a.buckets.iter().zip(b.buckets.iter()) {
            assert_eq!(list[*x as usize].id, shuffled[*y as usize].id);
        }
    }

    #[test]
    fn same_destination_same_server_any_source() {
        let list = servers(&[1, 1, 1]);
        let dh = DestinationHash::new(&list).unwrap();
        let dst = client_v4(99);
        let want = dh.pick(&list, &to(dst)).unwrap();
        for n in 0..200 {
            let mut f = flow_from(client_v4(n), n as u16);
            f.dst = dst;
            assert_eq!(dh.pick(&list, &f), Some(want));
        }
        // The bucket is IPVS's hash_32(ntohl(daddr), 8).
        let b = hash_32(fold_addr(dst), 8) as usize;
        assert_eq!(want, dh.buckets[b] as usize);
    }

    #[test]
    fn shares_are_even_over_destinations() {
        let list = servers(&[1, 1, 1, 1]);
        let dh = DestinationHash::new(&list).unwrap();
        let mut count = [0u32; 4];
        for n in 0..40_000 {
            count[dh.pick(&list, &to(client_v4(n))).unwrap()] += 1;
        }
        for c in count {
            assert!((9_500..=10_500).contains(&c), "{count:?}");
        }
        let mut count = [0u32; 4];
        for n in 0..40_000 {
            count[dh.pick(&list, &to(client_v6(n))).unwrap()] += 1;
        }
        for c in count {
            assert!((9_000..=11_000).contains(&c), "{count:?}");
        }
    }

    #[test]
    fn no_fallback_when_hashed_server_cannot_take_it() {
        let mut list = servers(&[1, 1]);
        let dh = DestinationHash::new(&list).unwrap();
        let before: Vec<_> = (0..500)
            .map(|n| dh.pick(&list, &to(client_v4(n))))
            .collect();
        list[0].available = false;
        list[1].weight = 0;
        for n in 0..500 {
            assert_eq!(dh.pick(&list, &to(client_v4(n))), None);
        }
        list[0].available = true;
        for (n, b) in (0..500).zip(&before) {
            let now = dh.pick(&list, &to(client_v4(n)));
            assert_eq!(now, if *b == Some(0) { Some(0) } else { None });
        }
    }

    #[test]
    fn rebuild_to_empty() {
        let mut dh = DestinationHash::new(&servers(&[1])).unwrap();
        dh.rebuild(&[]).unwrap();
        assert_eq!(dh.pick(&[], &to(client_v4(3))), None);
        assert!(dh.buckets.iter().all(|&b| b == NO_SERVER));
    }
}
