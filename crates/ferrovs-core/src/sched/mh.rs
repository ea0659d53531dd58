//! mh: Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4) as IPVS
//! `ip_vs_mh.c`.
//!
//! # Table
//! The lookup table has a prime number `M` of entries (65537 by default). Each server
//! has a preference list, a permutation of the entries given by
//! `offset = h1(id) % M` and `skip = h2(id) % (M - 1) + 1`: its `j`-th choice is
//! `(offset + j * skip) % M`. Servers take turns, in canonical order, claiming their
//! next unclaimed preferred entry until the table is full.
//!
//! Weights, the IPVS way: per round a server claims `turns` entries, where
//! `turns = (weight / gcd) >> rshift` (at least 1 for a non-zero weight), `gcd` is the
//! gcd of the positive weights and `rshift` keeps `max_weight / gcd` within
//! `tab_bits` bits (`tab_bits` = half the bit length of `M`; IPVS uses 6 for its
//! default 4093 entries). Each server's share of the table is thus close to its
//! share of the turns.
//!
//! The weight used is IPVS's `last_weight`: the last non-zero weight. Draining a
//! server (weight 0) therefore keeps its entries, so undraining restores the same
//! mapping; a server added with weight 0 claims no entry.
//!
//! Hashes: `h(x) = hsiphash(offset + port + fold(addr))` with the two fixed keys of
//! `ip_vs_mh.c`; a server's id hashes its address and port, a client its address and,
//! with `mh_port`, its port. See `hash`.
//!
//! # Unusable server (weight 0 or unavailable)
//! - without `mh_fallback`: no server, as IPVS;
//! - with `mh_fallback`: IPVS probes entries `h1(client, offset = (ihash + k) % M)`
//!   for `k = 0..M` and takes the first usable server. The result here is identical;
//!   the only addition is a check that some server owning entries is usable, so the
//!   all-down case answers `None` at once instead of hashing `M` times per new
//!   connection. With few usable servers owning few entries a fallback pick can
//!   still take up to `M` hashes, as in IPVS.
//!
//! Availability never changes the table; `rebuild` does, when the set or weights
//! change, and moves only about `1/N` of the entries when one of `N` servers leaves.

use super::hash::{fold_addr, hsiphash_u32, MH_KEY1, MH_KEY2};
use super::{
    canonical_order, gcd, usable, Candidate, FlowHint, SchedError, SchedOptions, ServerId,
    NO_SERVER,
};

/// The Maglev lookup table and what rebuilding it needs.
#[derive(Clone)]
pub(super) struct Maglev {
    /// Entry -> slice position, or `NO_SERVER` when no server has a weight.
    table: Vec<u32>,
    /// By slice position: owns at least one entry (for the fallback shortcut).
    owns_entry: Vec<bool>,
    /// `last_weight` per server id from the previous rebuild, sorted by id.
    last_weights: Vec<(ServerId, u32)>,
    /// Bound on `max_weight / gcd`, in bits (IPVS `IP_VS_MH_TAB_BITS`).
    tab_bits: u32,
    /// Hash the client port too.
    port: bool,
    /// Probe further entries when the hashed server cannot take the connection.
    fallback: bool,
}

impl std::fmt::Debug for Maglev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maglev")
            .field("size", &self.table.len())
            .field("port", &self.port)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// `ip_vs_mh_hashkey`: hsiphash of `offset + port + fold(addr)`.
#[inline]
fn hashkey(addr_fold: u32, port: u16, offset: u32, key: super::hash::SipKey) -> u32 {
    hsiphash_u32(
        offset.wrapping_add(u32::from(port)).wrapping_add(addr_fold),
        key,
    )
}

/// One server's place in the population: IPVS `ip_vs_mh_dest_setup`.
struct Setup {
    /// Slice position.
    pos: u32,
    /// Current position in the preference list.
    perm: u32,
    skip: u32,
    /// Entries claimed per round.
    turns: u32,
}

impl Maglev {
    pub(super) fn new(servers: &[Candidate], opts: &SchedOptions) -> Result<Self, SchedError> {
        let size = opts.mh_table_size;
        let mut mh = Maglev {
            table: vec![NO_SERVER; size as usize],
            owns_entry: Vec::new(),
            last_weights: Vec::new(),
            // IPVS: CONFIG_IP_VS_MH_TAB_INDEX / 2, the index being the bit length of
            // the table size (12 for 4093 -> 6); 17 -> 8 for 65537.
            tab_bits: (u32::BITS - size.leading_zeros()) / 2,
            port: opts.mh_port,
            fallback: opts.mh_fallback,
        };
        mh.rebuild(servers)?;
        Ok(mh)
    }

    fn size(&self) -> u32 {
        // The table length is the validated table size, a u32.
        self.table.len() as u32
    }

    /// `ip_vs_mh_dest_changed`: recompute gcd, rshift, permutations and the table.
    pub(super) fn rebuild(&mut self, servers: &[Candidate]) -> Result<(), SchedError> {
        let size = self.size();
        let order = match canonical_order(servers) {
            Ok(order) if order.len() <= size as usize => order,
            // IPVS refuses more servers than entries (-EINVAL).
            _ => {
                self.table.fill(NO_SERVER);
                self.owns_entry.clear();
                return Err(SchedError::TooManyServers);
            }
        };

        // last_weight: the current weight, or the remembered one while drained.
        let last_weight = |c: &Candidate| -> u32 {
            if c.weight != 0 {
                return c.weight;
            }
            match self.last_weights.binary_search_by_key(&c.id, |&(id, _)| id) {
                Ok(k) => self.last_weights[k].1,
                Err(_) => 0,
            }
        };
        let weights: Vec<u32> = order
            .iter()
            .map(|&p| last_weight(&servers[p as usize]))
            .collect();
        self.last_weights = order
            .iter()
            .zip(&weights)
            .map(|(&p, &w)| (servers[p as usize].id, w))
            .collect();

        self.owns_entry.clear();
        self.owns_entry.resize(servers.len(), false);
        let g = weights.iter().fold(0, |g, &w| gcd(g, w));
        if g == 0 {
            // No server has ever had a weight: empty table.
            self.table.fill(NO_SERVER);
            return Ok(());
        }
        let max = weights.iter().copied().max().unwrap_or(0);
        let rshift = (u32::BITS - (max / g).leading_zeros()).saturating_sub(self.tab_bits);

        let mut setups: Vec<Setup> = order
            .iter()
            .zip(&weights)
            .map(|(&pos, &w)| {
                let id = servers[pos as usize].id;
                let fold = fold_addr(id.addr);
                let offset = hashkey(fold, id.port, 0, MH_KEY1) % size;
                // size is a validated prime, so size - 1 >= 1.
                let skip = hashkey(fold, id.port, 0, MH_KEY2) % (size - 1) + 1;
                let turns = match (w / g) >> rshift {
                    0 => u32::from(w != 0),
                    t => t,
                };
                Setup {
                    pos,
                    perm: offset,
                    skip,
                    turns,
                }
            })
            .collect();
        self.populate(&mut setups);
        for &pos in &self.table {
            self.owns_entry[pos as usize] = true;
        }
        Ok(())
    }

    /// `ip_vs_mh_populate`: servers take turns claiming their next free preferred
    /// entry, `turns` entries each per round, until all `M` entries are claimed.
    /// Requires at least one setup with `turns >= 1`.
    fn populate(&mut self, setups: &mut [Setup]) {
        let size = self.size();
        let mut claimed = vec![false; size as usize];
        let mut n = 0u32;
        let mut k = 0usize;
        let mut dt_count = 0u32;
        while n < size {
            let ds = &mut setups[k];
            if ds.turns >= 1 {
                // The preference list is a full permutation (M prime, 1 <= skip < M),
                // so a free entry is always found while n < M.
                while claimed[ds.perm as usize] {
                    ds.perm += ds.skip;
                    if ds.perm >= size {
                        ds.perm -= size;
                    }
                }
                claimed[ds.perm as usize] = true;
                self.table[ds.perm as usize] = ds.pos;
                n += 1;
                dt_count += 1;
                if dt_count < ds.turns {
                    continue;
                }
            }
            dt_count = 0;
            k = (k + 1) % setups.len();
        }
    }

    pub(super) fn pick(&self, servers: &[Candidate], flow: &FlowHint) -> Option<usize> {
        let size = self.size();
        let fold = fold_addr(flow.src);
        let port = if self.port { flow.src_port } else { 0 };
        let ihash = hashkey(fold, port, 0, MH_KEY1) % size;
        let first = self.table[ihash as usize];
        if first == NO_SERVER {
            return None;
        }
        if let Some(i) = usable(servers, first) {
            return Some(i);
        }
        if !self.fallback || !self.any_usable_owner(servers) {
            return None;
        }
        // ip_vs_mh_get_fallback.
        for offset in 0..size {
            // Both terms are below size <= MH_TABLE_SIZE_MAX: no overflow.
            let roffset = (offset + ihash) % size;
            let entry = self.table[(hashkey(fold, port, roffset, MH_KEY1) % size) as usize];
            if entry == NO_SERVER {
                break;
            }
            if let Some(i) = usable(servers, entry) {
                return Some(i);
            }
        }
        None
    }

    /// Whether any server owning table entries can take a new connection; if none
    /// can, IPVS's fallback probing cannot succeed.
    fn any_usable_owner(&self, servers: &[Candidate]) -> bool {
        servers
            .iter()
            .zip(&self.owns_entry)
            .any(|(s, &owns)| owns && s.takes_new())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    fn opts(size: u32, port: bool, fallback: bool) -> SchedOptions {
        SchedOptions {
            mh_table_size: size,
            mh_port: port,
            mh_fallback: fallback,
            ..SchedOptions::default()
        }
    }

    fn default_opts() -> SchedOptions {
        SchedOptions::default()
    }

    /// The table as server ids, independent of slice positions.
    fn ids(mh: &Maglev, list: &[Candidate]) -> Vec<ServerId> {
        mh.table.iter().map(|&p| list[p as usize].id).collect()
    }

    fn shares(mh: &Maglev, n: usize) -> Vec<f64> {
        let mut count = vec![0u32; n];
        for &p in &mh.table {
            count[p as usize] += 1;
        }
        let total = mh.table.len() as f64;
        count.iter().map(|&c| f64::from(c) / total).collect()
    }

    /// `n` servers on 10.1.x.y:8080, all weight `w`.
    fn farm(n: u32, w: u32) -> Vec<Candidate> {
        (0..n)
            .map(|i| {
                let addr = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i));
                Candidate::new(ServerId::new(addr, 8080), w)
            })
            .collect()
    }

    #[test]
    fn table_is_full_and_covers_every_server() {
        let list = farm(7, 1);
        let mh = Maglev::new(&list, &default_opts()).unwrap();
        assert_eq!(mh.table.len(), 65537);
        assert!(mh.table.iter().all(|&p| (p as usize) < list.len()));
        assert!(mh.owns_entry.iter().all(|&o| o));
    }

    #[test]
    fn equal_weights_equal_shares() {
        for n in [2, 3, 10, 50] {
            let mh = Maglev::new(&farm(n, 1), &default_opts()).unwrap();
            let want = 1.0 / f64::from(n);
            for (i, s) in shares(&mh, n as usize).into_iter().enumerate() {
                assert!((s - want).abs() / want < 0.03, "n={n} server {i}: {s}");
            }
        }
    }

    #[test]
    fn shares_follow_weights() {
        let weights = [1, 2, 3, 4, 10];
        let list = servers(&weights);
        let mh = Maglev::new(&list, &default_opts()).unwrap();
        let total: u32 = weights.iter().sum();
        for (i, s) in shares(&mh, list.len()).into_iter().enumerate() {
            let want = f64::from(weights[i]) / f64::from(total);
            assert!((s - want).abs() / want < 0.05, "server {i}: {s} vs {want}");
        }
    }

    #[test]
    fn weights_are_gcd_reduced_and_shifted_like_ipvs() {
        // gcd 100: turns 1 and 3.
        let list = servers(&[100, 300]);
        let mh = Maglev::new(&list, &default_opts()).unwrap();
        let s = shares(&mh, 2);
        assert!((s[0] - 0.25).abs() < 0.01, "{s:?}");
        // max/gcd = 1000 needs 10 bits > 8: rshift 2, turns 250 and max(1 >> 2, 1) = 1.
        let list = servers(&[1000, 1]);
        let mh = Maglev::new(&list, &default_opts()).unwrap();
        let s = shares(&mh, 2);
        assert!((s[1] - 1.0 / 251.0).abs() < 0.002, "{s:?}");
        // With IPVS's own 4093 entries, tab_bits is 6.
        let mh = Maglev::new(&list, &opts(4093, false, false)).unwrap();
        assert_eq!(mh.tab_bits, 6);
        let s = shares(&mh, 2);
        // rshift 4: turns 62 and 1.
        assert!((s[1] - 1.0 / 63.0).abs() < 0.004, "{s:?}");
    }

    #[test]
    fn deterministic_and_independent_of_slice_order() {
        let list = farm(12, 1);
        let a = Maglev::new(&list, &default_opts()).unwrap();
        let b = Maglev::new(&list, &default_opts()).unwrap();
        assert_eq!(a.table, b.table);
        let mut shuffled = list.clone();
        let mut rng = Rng(77);
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        assert_ne!(list, shuffled);
        let c = Maglev::new(&shuffled, &default_opts()).unwrap();
        assert_eq!(ids(&a, &list), ids(&c, &shuffled));
    }

    #[test]
    fn known_hashes_are_pinned() {
        // ECMP peers running different ferrovs builds (and IPVS) must agree. Values
        // from an independent Python transcription of the kernel's hsiphash.
        let id = ServerId::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10)), 8080);
        let fold = fold_addr(id.addr);
        assert_eq!(fold, 0xc613_000a);
        assert_eq!(hashkey(fold, id.port, 0, MH_KEY1), 0x4d83_94f7);
        assert_eq!(hashkey(fold, id.port, 0, MH_KEY2), 0xca8f_8eed);
        // Its permutation in a 65537-entry table: offset 18292, skip 36590.
        assert_eq!(0x4d83_94f7u32 % 65537, 18292);
        assert_eq!(0xca8f_8eedu32 % 65536 + 1, 36590);
        // Client 172.16.1.2 without port looks up entry 45396.
        let client = fold_addr(IpAddr::V4(Ipv4Addr::new(172, 16, 1, 2)));
        assert_eq!(hashkey(client, 0, 0, MH_KEY1), 0x9d44_4e97);
        assert_eq!(0x9d44_4e97u32 % 65537, 45396);
    }

    #[test]
    fn first_choice_of_a_lone_server_is_its_offset() {
        // One server claims its whole preference list, starting at its offset; with a
        // second server, entry `offset` of each is theirs (first claim of a round).
        let list = farm(2, 1);
        let mh = Maglev::new(&list, &default_opts()).unwrap();
        for (pos, c) in list.iter().enumerate() {
            let offset = hashkey(fold_addr(c.id.addr), c.id.port, 0, MH_KEY1) % 65537;
            let other = &list[1 - pos];
            let other_offset = hashkey(fold_addr(other.id.addr), other.id.port, 0, MH_KEY1) % 65537;
            if offset != other_offset {
                assert_eq!(mh.table[offset as usize] as usize, pos);
            }
        }
    }

    fn changed_entries(a: &[ServerId], b: &[ServerId]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn minimal_disruption_when_one_server_leaves() {
        for n in [5u32, 10, 30] {
            let list = farm(n, 1);
            let before = Maglev::new(&list, &default_opts()).unwrap();
            let before_ids = ids(&before, &list);
            let gone = list[3].id;
            let mut after_list = list.clone();
            after_list.remove(3);
            let mut after = before.clone();
            after.rebuild(&after_list).unwrap();
            let after_ids = ids(&after, &after_list);

            let m = before_ids.len();
            let moved = changed_entries(&before_ids, &after_ids);
            let owned_by_gone = before_ids.iter().filter(|&&id| id == gone).count();
            // Entries of remaining servers that moved anyway.
            let collateral = moved - owned_by_gone;
            let ideal = m / n as usize;
            assert!(
                moved <= ideal + ideal / 5 + m / 100,
                "n={n}: moved {moved} of {m} (ideal {ideal})"
            );
            assert!(collateral <= m / 100, "n={n}: collateral {collateral}");
            assert!(after_ids.iter().all(|&id| id != gone));
        }
    }

    #[test]
    fn minimal_disruption_when_one_server_joins() {
        let list = farm(10, 1);
        let before = Maglev::new(&list, &default_opts()).unwrap();
        let mut grown = list.clone();
        grown.extend(farm(11, 1).pop());
        let after = Maglev::new(&grown, &default_opts()).unwrap();
        let moved = changed_entries(&ids(&before, &list), &ids(&after, &grown));
        let m = before.table.len();
        assert!(moved <= m / 11 + m / 50, "moved {moved}");
    }

    #[test]
    fn drain_keeps_the_table_and_undrain_restores_it() {
        let mut list = farm(6, 2);
        let mut mh = Maglev::new(&list, &default_opts()).unwrap();
        let original = mh.table.clone();
        list[2].weight = 0;
        mh.rebuild(&list).unwrap();
        assert_eq!(
            mh.table, original,
            "last_weight keeps a drained server's entries"
        );
        // Its flows get no server (no fallback) ...
        let mut to_drained = 0;
        for n in 0..3000 {
            let f = flow_from(client_v4(n), 0);
            let entry = mh.table[(hashkey(fold_addr(f.src), 0, 0, MH_KEY1) % 65537) as usize];
            if entry == 2 {
                to_drained += 1;
                assert_eq!(mh.pick(&list, &f), None);
            } else {
                assert_eq!(mh.pick(&list, &f), Some(entry as usize));
            }
        }
        assert!(to_drained > 0);
        list[2].weight = 2;
        mh.rebuild(&list).unwrap();
        assert_eq!(mh.table, original);
    }

    #[test]
    fn server_added_with_weight_zero_claims_nothing() {
        let mut list = farm(4, 1);
        list[1].weight = 0;
        let mh = Maglev::new(&list, &default_opts()).unwrap();
        assert!(mh.table.iter().all(|&p| p != 1));
        assert!(!mh.owns_entry[1]);
    }

    #[test]
    fn unavailable_keeps_mapping_without_fallback() {
        let mut list = farm(5, 1);
        let mh = Maglev::new(&list, &default_opts()).unwrap();
        let flows: Vec<_> = (0..2000).map(|n| flow_from(client_v4(n), 0)).collect();
        let before: Vec<_> = flows.iter().map(|f| mh.pick(&list, f)).collect();
        list[0].available = false;
        for (f, b) in flows.iter().zip(&before) {
            let now = mh.pick(&list, f);
            assert_eq!(now, if *b == Some(0) { None } else { *b });
        }
        list[0].available = true;
        for (f, b) in flows.iter().zip(&before) {
            assert_eq!(mh.pick(&list, f), *b);
        }
    }

    #[test]
    fn fallback_follows_ipvs_probe_sequence() {
        let mut list = farm(5, 1);
        let mh = Maglev::new(&list, &opts(65537, false, true)).unwrap();
        list[1].available = false;
        list[4].available = false;
        for n in 0..1000 {
            let f = flow_from(client_v4(n), 0);
            let got = mh.pick(&list, &f).unwrap();
            let fold = fold_addr(f.src);
            let ihash = hashkey(fold, 0, 0, MH_KEY1) % 65537;
            let owner = mh.table[ihash as usize] as usize;
            if owner != 1 && owner != 4 {
                assert_eq!(got, owner);
                continue;
            }
            let want = (0..65537u32)
                .map(|o| {
                    let r = (o + ihash) % 65537;
                    mh.table[(hashkey(fold, 0, r, MH_KEY1) % 65537) as usize] as usize
                })
                .find(|&p| p != 1 && p != 4)
                .unwrap();
            assert_eq!(got, want);
            assert_eq!(mh.pick(&list, &f), Some(got));
        }
    }

    #[test]
    fn fallback_with_everything_down_is_none() {
        let mut list = farm(3, 1);
        let mh = Maglev::new(&list, &opts(65537, true, true)).unwrap();
        for c in &mut list {
            c.available = false;
        }
        for n in 0..100 {
            assert_eq!(mh.pick(&list, &flow_from(client_v4(n), n as u16)), None);
        }
    }

    #[test]
    fn mh_port_spreads_one_client() {
        let list = farm(4, 1);
        let with = Maglev::new(&list, &opts(65537, true, false)).unwrap();
        let without = Maglev::new(&list, &default_opts()).unwrap();
        let src = client_v4(5);
        let mut seen: HashMap<usize, u32> = HashMap::new();
        let mut seen_without: HashMap<usize, u32> = HashMap::new();
        for port in 1024..1424u16 {
            *seen
                .entry(with.pick(&list, &flow_from(src, port)).unwrap())
                .or_default() += 1;
            *seen_without
                .entry(without.pick(&list, &flow_from(src, port)).unwrap())
                .or_default() += 1;
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(seen_without.len(), 1);
    }

    #[test]
    fn client_share_matches_table_share() {
        let list = servers(&[1, 3]);
        let mh = Maglev::new(&list, &default_opts()).unwrap();
        let mut count = [0u32; 2];
        for n in 0..40_000 {
            count[mh.pick(&list, &flow_from(client_v6(n), 0)).unwrap()] += 1;
        }
        let share = f64::from(count[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn small_prime_tables() {
        for size in [2, 3, 5, 251] {
            let list = farm(2, 1);
            let mh = Maglev::new(&list, &opts(size, false, true)).unwrap();
            assert_eq!(mh.table.len(), size as usize);
            assert!(mh.table.iter().all(|&p| p < 2));
            for n in 0..50 {
                assert!(mh.pick(&list, &flow_from(client_v4(n), 0)).is_some());
            }
        }
    }

    #[test]
    fn more_servers_than_entries_is_refused() {
        let list = farm(4, 1);
        assert_eq!(
            Maglev::new(&list, &opts(3, false, false)).err(),
            Some(SchedError::TooManyServers)
        );
        // A rebuild that fails leaves a scheduler that picks nothing.
        let mut mh = Maglev::new(&farm(3, 1), &opts(3, false, true)).unwrap();
        assert_eq!(mh.rebuild(&list), Err(SchedError::TooManyServers));
        assert_eq!(mh.pick(&list, &flow_from(client_v4(1), 0)), None);
        // And recovers on the next good rebuild.
        mh.rebuild(&farm(2, 1)).unwrap();
        assert!(mh.pick(&farm(2, 1), &flow_from(client_v4(1), 0)).is_some());
    }

    #[test]
    fn empty_and_weightless_sets() {
        let mut mh = Maglev::new(&[], &default_opts()).unwrap();
        assert_eq!(mh.pick(&[], &flow_from(client_v4(1), 0)), None);
        let zero = farm(3, 0);
        mh.rebuild(&zero).unwrap();
        assert!(mh.table.iter().all(|&p| p == NO_SERVER));
        assert_eq!(mh.pick(&zero, &flow_from(client_v4(1), 0)), None);
    }
}
