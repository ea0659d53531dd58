//! sh: source hashing as IPVS `ip_vs_sh.c`.
//!
//! A 256-bucket table (`IP_VS_SH_TAB_SIZE`) is filled by walking the servers in
//! canonical order, giving each `weight` consecutive buckets (at least one, so a
//! drained server still owns a bucket, as in IPVS), wrapping around until all buckets
//! are filled. A client maps to bucket `hash_32(port + fold(src), 8)`, where `port` is
//! the client port with `sh_port` and 0 without.
//!
//! When that bucket's server cannot take the connection (weight 0 or unavailable):
//! - without `sh_fallback`, no server (IPVS drops the connection);
//! - with `sh_fallback`, IPVS probes bucket `(roffset + hash) & 255` for
//!   `roffset = ihash, ihash + 1, ...` (mod 256, 256 probes) and takes the first
//!   usable server. Note that the first probe is bucket `2 * ihash`, not `ihash + 1`:
//!   that is IPVS's arithmetic and is reproduced so both pick the same server.
//!
//! Availability does not touch the table, so a server that comes back serves the
//! same clients again; weights do, and IPVS reassigns on every weight change.

use super::hash::{fold_addr, hash_32};
use super::{canonical_order, usable, Candidate, FlowHint, SchedError, SchedOptions, NO_SERVER};

/// `IP_VS_SH_TAB_BITS`.
const TAB_BITS: u32 = 8;
/// `IP_VS_SH_TAB_SIZE`.
const TAB_SIZE: usize = 1 << TAB_BITS;
/// `IP_VS_SH_TAB_MASK`.
const TAB_MASK: u32 = (1 << TAB_BITS) - 1;

/// The source-hashing table and flags.
#[derive(Debug, Clone)]
pub(super) struct SourceHash {
    /// Bucket -> slice position, or `NO_SERVER` when there are no servers.
    buckets: Box<[u32; TAB_SIZE]>,
    /// Hash the client port too.
    port: bool,
    /// Probe further buckets when the hashed server cannot take the connection.
    fallback: bool,
}

/// `ip_vs_sh_hashkey`.
#[inline]
fn bucket(addr_fold: u32, port: u16, offset: u32) -> usize {
    let h = hash_32(u32::from(port).wrapping_add(addr_fold), TAB_BITS);
    (offset.wrapping_add(h) & TAB_MASK) as usize
}

impl SourceHash {
    pub(super) fn new(servers: &[Candidate], opts: &SchedOptions) -> Result<Self, SchedError> {
        let mut sh = SourceHash {
            buckets: Box::new([NO_SERVER; TAB_SIZE]),
            port: opts.sh_port,
            fallback: opts.sh_fallback,
        };
        sh.rebuild(servers)?;
        Ok(sh)
    }

    /// `ip_vs_sh_reassign`, in canonical order.
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
            return Ok(());
        }
        let mut p = 0;
        let mut filled = 0u32;
        for b in self.buckets.iter_mut() {
            let pos = order[p];
            *b = pos;
            // Move on after `weight` buckets; a weight-0 server still gets one.
            filled += 1;
            if filled >= servers[pos as usize].weight {
                p = (p + 1) % order.len();
                filled = 0;
            }
        }
        Ok(())
    }

    pub(super) fn pick(&self, servers: &[Candidate], flow: &FlowHint) -> Option<usize> {
        let fold = fold_addr(flow.src);
        let port = if self.port { flow.src_port } else { 0 };
        let ihash = bucket(fold, port, 0);
        let first = self.buckets[ihash];
        if first == NO_SERVER {
            return None;
        }
        if let Some(i) = usable(servers, first) {
            return Some(i);
        }
        if !self.fallback {
            return None;
        }
        // ip_vs_sh_get_fallback: 256 probes starting at roffset = ihash.
        let ihash = ihash as u32;
        for offset in 0..TAB_SIZE as u32 {
            let roffset = (offset + ihash) % TAB_SIZE as u32;
            let entry = self.buckets[bucket(fold, port, roffset)];
            if entry == NO_SERVER {
                break;
            }
            if let Some(i) = usable(servers, entry) {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::ServerId;
    use super::*;
    use std::net::IpAddr;

    fn opts(port: bool, fallback: bool) -> SchedOptions {
        SchedOptions {
            sh_port: port,
            sh_fallback: fallback,
            ..SchedOptions::default()
        }
    }

    fn owners(sh: &SourceHash, list: &[Candidate]) -> Vec<ServerId> {
        sh.buckets.iter().map(|&p| list[p as usize].id).collect()
    }

    #[test]
    fn table_is_filled_with_weight_replication() {
        let list = servers(&[1, 2, 3]);
        let sh = SourceHash::new(&list, &opts(false, false)).unwrap();
        // Pattern A B B C C C, 42 full rounds (252 buckets), then A B B C.
        assert_eq!(&sh.buckets[..8], &[0, 1, 1, 2, 2, 2, 0, 1]);
        assert_eq!(&sh.buckets[252..], &[0, 1, 1, 2]);
        let count = |p| sh.buckets.iter().filter(|&&b| b == p).count();
        assert_eq!((count(0), count(1), count(2)), (43, 86, 127));
    }

    #[test]
    fn heavy_weights_stop_at_256_buckets() {
        let list = servers(&[200, 100]);
        let sh = SourceHash::new(&list, &opts(false, false)).unwrap();
        let count = |p| sh.buckets.iter().filter(|&&b| b == p).count();
        assert_eq!((count(0), count(1)), (200, 56));
    }

    #[test]
    fn drained_server_keeps_one_bucket_like_ipvs() {
        let list = servers(&[0, 1]);
        let sh = SourceHash::new(&list, &opts(false, false)).unwrap();
        assert_eq!(&sh.buckets[..4], &[0, 1, 0, 1]);
    }

    #[test]
    fn table_independent_of_slice_order() {
        let list = servers(&[3, 1, 4, 1, 5]);
        let mut rev = list.clone();
        rev.reverse();
        let a = SourceHash::new(&list, &opts(false, false)).unwrap();
        let b = SourceHash::new(&rev, &opts(false, false)).unwrap();
        assert_eq!(owners(&a, &list), owners(&b, &rev));
    }

    #[test]
    fn bucket_is_ipvs_hash() {
        // hash_32(ntohl(addr) + port, 8) & 255.
        let a = 0xac10_0102u32;
        let want = (a.wrapping_add(443).wrapping_mul(0x61C8_8647) >> 24) as usize;
        assert_eq!(bucket(a, 443, 0), want);
        assert_eq!(bucket(a, 443, 10), (want + 10) & 255);
        assert_eq!(
            bucket(a, 0, 0),
            (a.wrapping_mul(0x61C8_8647) >> 24) as usize
        );
    }

    #[test]
    fn sticky_per_source_and_shares_follow_weights() {
        let list = servers(&[1, 2, 3]);
        let sh = SourceHash::new(&list, &opts(false, false)).unwrap();
        let mut count = [0u32; 3];
        let clients = 25_600u32;
        for n in 0..clients {
            let src = client_v4(n);
            let first = sh.pick(&list, &flow_from(src, 1000)).unwrap();
            // Same client, any port: same server (no sh_port).
            assert_eq!(sh.pick(&list, &flow_from(src, 2000)), Some(first));
            count[first] += 1;
        }
        // Bucket shares are 43/256, 86/256, 127/256; consecutive addresses spread
        // evenly over buckets with the golden-ratio hash.
        for (i, want) in [43.0, 86.0, 127.0].into_iter().enumerate() {
            let share = f64::from(count[i]) / f64::from(clients);
            assert!((share - want / 256.0).abs() < 0.01, "server {i}: {share}");
        }
    }

    #[test]
    fn sh_port_spreads_one_client() {
        let list = servers(&[1, 1, 1, 1]);
        let with = SourceHash::new(&list, &opts(true, false)).unwrap();
        let without = SourceHash::new(&list, &opts(false, false)).unwrap();
        let src = client_v4(7);
        let mut seen_with = [false; 4];
        let mut seen_without = [false; 4];
        for port in 1024..1100u16 {
            let f = flow_from(src, port);
            seen_with[with.pick(&list, &f).unwrap()] = true;
            seen_without[without.pick(&list, &f).unwrap()] = true;
            // Sticky per (address, port).
            assert_eq!(with.pick(&list, &f), with.pick(&list, &f));
        }
        assert_eq!(seen_with, [true; 4]);
        assert_eq!(seen_without.iter().filter(|&&s| s).count(), 1);
    }

    #[test]
    fn ipv6_clients_hash_by_folded_address() {
        let list = servers(&[1, 1, 1]);
        let sh = SourceHash::new(&list, &opts(false, false)).unwrap();
        let mut count = [0u32; 3];
        for n in 0..3000 {
            count[sh.pick(&list, &flow_from(client_v6(n), 1)).unwrap()] += 1;
        }
        assert!(count.iter().all(|&c| c > 800), "{count:?}");
        // Folding: only the XOR of the words matters.
        let a: IpAddr = "2001:2::1:0:0:5".parse().unwrap();
        let b: IpAddr = "2001:2::0:0:1:5".parse().unwrap();
        assert_eq!(
            sh.pick(&list, &flow_from(a, 1)),
            sh.pick(&list, &flow_from(b, 1))
        );
    }

    #[test]
    fn unavailable_without_fallback_gives_none_and_table_is_kept() {
        let mut list = servers(&[1, 1, 1]);
        let sh = SourceHash::new(&list, &opts(false, false)).unwrap();
        let before: Vec<_> = (0..1000)
            .map(|n| sh.pick(&list, &flow_from(client_v4(n), 0)))
            .collect();
        list[1].available = false;
        for (n, b) in (0..1000).zip(&before) {
            let now = sh.pick(&list, &flow_from(client_v4(n), 0));
            if *b == Some(1) {
                assert_eq!(now, None);
            } else {
                assert_eq!(now, *b);
            }
        }
        // Back up: exactly the old mapping.
        list[1].available = true;
        for (n, b) in (0..1000).zip(&before) {
            assert_eq!(sh.pick(&list, &flow_from(client_v4(n), 0)), *b);
        }
    }

    #[test]
    fn fallback_follows_ipvs_probe_sequence() {
        // An irregular layout, so that probe orders that differ from IPVS's pick
        // different servers.
        let mut list = servers(&[3, 1, 5, 2, 4]);
        let sh = SourceHash::new(&list, &opts(false, true)).unwrap();
        list[2].available = false;
        list[3].weight = 0; // drained, but not rebuilt: the table still names it
        let usable_pos = |p: usize| p != 2 && p != 3;
        let mut fallback_targets = [0u32; 5];
        for n in 0..3000 {
            let f = flow_from(client_v4(n), 0);
            let fold = fold_addr(f.src);
            let ihash = bucket(fold, 0, 0);
            let got = sh.pick(&list, &f).unwrap();
            let owner = sh.buckets[ihash] as usize;
            if usable_pos(owner) {
                assert_eq!(got, owner);
                continue;
            }
            // IPVS's probes: bucket (roffset + hash) & 255, roffset = ihash, ihash+1, ...
            // The first one is bucket 2 * ihash.
            let want = (0..256u32)
                .map(|o| sh.buckets[(2 * ihash + o as usize) & 255] as usize)
                .find(|&p| usable_pos(p))
                .unwrap();
            assert_eq!(got, want);
            fallback_targets[got] += 1;
            // Deterministic: the same client falls back to the same server.
            assert_eq!(sh.pick(&list, &f), Some(got));
        }
        // Displaced clients spread over all usable servers.
        assert!(
            [0, 1, 4].iter().all(|&p| fallback_targets[p] > 0),
            "{fallback_targets:?}"
        );
    }

    #[test]
    fn fallback_with_everything_down_is_none() {
        let mut list = servers(&[1, 1]);
        let sh = SourceHash::new(&list, &opts(true, true)).unwrap();
        list[0].available = false;
        list[1].available = false;
        assert_eq!(sh.pick(&list, &flow_from(client_v4(1), 5)), None);
    }

    #[test]
    fn rebuild_on_weight_change_and_empty() {
        let mut list = servers(&[1, 1]);
        let mut sh = SourceHash::new(&list, &opts(false, false)).unwrap();
        list[0].weight = 3;
        sh.rebuild(&list).unwrap();
        assert_eq!(&sh.buckets[..5], &[0, 0, 0, 1, 0]);
        sh.rebuild(&[]).unwrap();
        assert!(sh.buckets.iter().all(|&b| b == NO_SERVER));
        assert_eq!(sh.pick(&[], &flow_from(client_v4(1), 0)), None);
    }
}
