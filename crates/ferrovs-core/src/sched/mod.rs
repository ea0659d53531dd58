//! Real-server schedulers with IPVS semantics: rr, wrr, lc, wlc, sh, dh, sed, nq, mh,
//! lblc, lblcr, fo, ovf, twos.
//!
//! Each worker owns one [`Scheduler`] per service; nothing is shared, nothing locks.
//! The real servers are a slice the caller owns ([`Candidate`], index = position) and
//! passes to every call, so live counters (`active`, `inactive`) and health
//! (`available`) are read where they are, without copies.
//!
//! # How the IPVS model maps here
//! - `weight == 0` is IPVS's quiescing: never picked for new connections, live ones
//!   untouched. It is a weight, so changing it is a weight change (call
//!   [`Scheduler::rebuild`]), exactly like `ipvsadm -e -w 0` triggers the scheduler's
//!   `upd_dest`.
//! - `available == false` behaves like IPVS's `IP_VS_DEST_F_OVERLOAD`: the server is
//!   skipped for new connections by every scheduler, but no state or table changes,
//!   so a server that comes back gets the same hashed flows as before. The caller
//!   does **not** rebuild for health flaps.
//! - Hashing schedulers (sh, dh, mh) fill their tables in *canonical order*: servers
//!   sorted by [`ServerId`]. IPVS fills in its destination list order (most recently
//!   added first), which depends on the history of `ipvsadm` commands; sorting makes the
//!   table a function of the server set only, so several ferrovs instances behind ECMP
//!   build identical tables. The hashes are IPVS's own, with fixed keys (see `hash`).
//! - Faithful IPVS behaviour when the hashed server cannot take the connection:
//!   sh without `sh_fallback`, dh, and mh without `mh_fallback` return `None` (the
//!   connection is dropped); with the fallback flag, sh and mh probe further buckets with
//!   IPVS's deterministic sequence.
//! - mh keeps IPVS's `last_weight`: setting a weight to 0 (drain) keeps the server's
//!   slots in the Maglev table, so undraining restores exactly the previous mapping.
//! - lblc and lblcr keep a destination table that picks fill; it is preallocated
//!   (bounded, least recently used entry evicted when full) and its entries expire
//!   after a day unused, by the time in [`FlowHint::now_ms`] (see `locality`).
//! - twos draws from a PRNG the scheduler owns, seeded once when it is built.
//!
//! `pick` never allocates; tables are (re)built by `new` and `rebuild` only.

mod dh;
mod fo;
mod hash;
mod lblc;
mod lblcr;
mod least;
mod locality;
mod mh;
mod ovf;
mod rr;
mod sh;
mod twos;
mod wrr;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use dh::DestinationHash;
use lblc::Lblc;
use lblcr::Lblcr;
use mh::Maglev;
use rr::RoundRobin;
use sh::SourceHash;
use twos::TwoChoices;
use wrr::WeightedRoundRobin;

/// Stable identity of a real server: its address and port.
///
/// Hashing schedulers derive table positions from it (mh) and order servers by it
/// (sh, dh, mh), so tables do not depend on the order of the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (host byte order).
    pub port: u16,
}

impl ServerId {
    /// A server identity from address and port.
    pub const fn new(addr: IpAddr, port: u16) -> Self {
        ServerId { addr, port }
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// One real server as the scheduler sees it; its index is its position in the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Stable identity, used by hashing schedulers.
    pub id: ServerId,
    /// Relative capacity; 0 = no new connections (drain), live ones unaffected.
    pub weight: u32,
    /// This worker's active (ESTABLISHED) connections to the server.
    pub active: u32,
    /// This worker's other connections to the server.
    pub inactive: u32,
    /// Health: `false` = never chosen for new connections.
    pub available: bool,
    /// IPVS's `u_threshold` (`max_connections`, this worker's share): at this many
    /// connections (active and inactive) the server is overloaded; 0 = no limit.
    pub u_threshold: u32,
    /// IPVS's `l_threshold` (`min_connections`, this worker's share): an overloaded
    /// server takes connections again below it; 0 = below three quarters of
    /// `u_threshold`.
    pub l_threshold: u32,
    /// IPVS's `IP_VS_DEST_F_OVERLOAD`: set when a new connection brings the server to
    /// `u_threshold`, cleared when one that ends brings it below the lower mark
    /// ([`Candidate::bind`], [`Candidate::unbind`]). Every scheduler skips it, as a
    /// server that is not `available`.
    pub overloaded: bool,
}

impl Candidate {
    /// An available server with the given weight and no connections.
    pub const fn new(id: ServerId, weight: u32) -> Self {
        Candidate {
            id,
            weight,
            active: 0,
            inactive: 0,
            available: true,
            u_threshold: 0,
            l_threshold: 0,
            overloaded: false,
        }
    }

    /// Whether the server may receive a new connection (IPVS: weight > 0 and not
    /// overloaded).
    #[inline]
    pub const fn takes_new(&self) -> bool {
        self.available && !self.overloaded && self.weight > 0
    }

    /// This worker's connections to the server, active or not (IPVS
    /// `ip_vs_dest_totalconns`).
    #[inline]
    pub const fn total(&self) -> u64 {
        self.active as u64 + self.inactive as u64
    }

    /// A connection was added to the server's count (IPVS `ip_vs_bind_dest`):
    /// reaching `u_threshold` overloads it.
    #[inline]
    pub fn bind(&mut self) {
        if self.u_threshold != 0 && self.total() >= u64::from(self.u_threshold) {
            self.overloaded = true;
        }
    }

    /// A connection left the server's count (IPVS `ip_vs_unbind_dest`): below
    /// `l_threshold`, or without one below three quarters of `u_threshold`, it takes
    /// connections again; without thresholds it never stays overloaded.
    #[inline]
    pub fn unbind(&mut self) {
        let total = self.total();
        if self.l_threshold != 0 {
            if total < u64::from(self.l_threshold) {
                self.overloaded = false;
            }
        } else if self.u_threshold != 0 {
            if total * 4 < u64::from(self.u_threshold) * 3 {
                self.overloaded = false;
            }
        } else {
            self.overloaded = false;
        }
    }

    /// New thresholds from a configuration change, the state carried over as IPVS's
    /// `__ip_vs_update_dest` does: removing or raising `u_threshold` clears the
    /// overload; a server already at a lowered one is overloaded at once.
    pub fn set_thresholds(&mut self, u_threshold: u32, l_threshold: u32) {
        if u_threshold == 0 || u_threshold > self.u_threshold {
            self.overloaded = false;
        }
        self.u_threshold = u_threshold;
        self.l_threshold = l_threshold;
        self.bind();
    }
}

/// What a hashing or locality scheduler looks at in the first packet of a new
/// connection, and the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowHint {
    /// Client address (sh, mh).
    pub src: IpAddr,
    /// Client port; 0 for protocols without ports (sh with `sh_port`, mh with `mh_port`).
    pub src_port: u16,
    /// Destination address as sent by the client (dh, lblc, lblcr).
    pub dst: IpAddr,
    /// Destination port.
    pub dst_port: u16,
    /// The worker's clock in milliseconds (lblc, lblcr: when an entry was last
    /// used, when it expires).
    pub now_ms: u64,
}

/// The scheduling algorithms, named as in `ipvsadm -s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// Round robin.
    Rr,
    /// Interleaved weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    Wlc,
    /// Source hashing.
    Sh,
    /// Destination hashing.
    Dh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Maglev hashing.
    Mh,
    /// Locality-based least connections.
    Lblc,
    /// Locality-based least connections with replication.
    Lblcr,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Weighted power of two choices.
    Twos,
}

impl SchedulerKind {
    /// Every kind, in the order the configuration reference lists them.
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Dh,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Mh,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Twos,
    ];

    /// The `ipvsadm` name: "rr", "wrr", ...
    pub const fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Twos => "twos",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerKind {
    type Err = SchedError;

    /// Parses an `ipvsadm` scheduler name (lower case, exact).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchedulerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or(SchedError::UnknownScheduler)
    }
}

/// Largest accepted Maglev table size (entries; 4 bytes each, per service per worker).
pub const MH_TABLE_SIZE_MAX: u32 = 1 << 22;

/// Per-service scheduler flags (IPVS `--sched-flags`) and the Maglev table size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedOptions {
    /// Maglev lookup table size: a prime, at most [`MH_TABLE_SIZE_MAX`]; default 65537.
    pub mh_table_size: u32,
    /// mh: hash the client port together with the client address (IPVS `mh-port`).
    pub mh_port: bool,
    /// mh: when the hashed server cannot take the connection, probe other entries
    /// (IPVS `mh-fallback`); without it the connection gets no server.
    pub mh_fallback: bool,
    /// sh: hash the client port together with the client address (IPVS `sh-port`).
    pub sh_port: bool,
    /// sh: when the hashed server cannot take the connection, probe other buckets
    /// (IPVS `sh-fallback`); without it the connection gets no server.
    pub sh_fallback: bool,
}

impl Default for SchedOptions {
    fn default() -> Self {
        SchedOptions {
            mh_table_size: 65537,
            mh_port: false,
            mh_fallback: false,
            sh_port: false,
            sh_fallback: false,
        }
    }
}

impl SchedOptions {
    /// Checks the options that `kind` uses (only mh has constraints).
    pub fn validate(&self, kind: SchedulerKind) -> Result<(), SchedError> {
        if kind == SchedulerKind::Mh {
            if self.mh_table_size > MH_TABLE_SIZE_MAX {
                return Err(SchedError::MhTableSizeTooLarge);
            }
            if !is_prime(self.mh_table_size) {
                return Err(SchedError::MhTableSizeNotPrime);
            }
        }
        Ok(())
    }
}

/// Why a scheduler could not be created or rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedError {
    /// The name is not one of rr wrr lc wlc sh dh sed nq mh lblc lblcr fo ovf twos.
    UnknownScheduler,
    /// `mh_table_size` is not a prime (Maglev needs every skip to generate a full
    /// permutation).
    MhTableSizeNotPrime,
    /// `mh_table_size` exceeds [`MH_TABLE_SIZE_MAX`].
    MhTableSizeTooLarge,
    /// More servers than the scheduler can index (mh: more than table entries, as
    /// IPVS refuses with `-EINVAL`).
    TooManyServers,
}

impl SchedError {
    /// The snake_case label for a metrics `reason`.
    pub const fn reason(self) -> &'static str {
        match self {
            SchedError::UnknownScheduler => "unknown_scheduler",
            SchedError::MhTableSizeNotPrime => "mh_table_size_not_prime",
            SchedError::MhTableSizeTooLarge => "mh_table_size_too_large",
            SchedError::TooManyServers => "too_many_servers",
        }
    }
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::UnknownScheduler => f.write_str(
                "unknown scheduler (expected rr, wrr, lc, wlc, sh, dh, sed, nq, mh, lblc, lblcr, \
                 fo, ovf or twos)",
            ),
            SchedError::MhTableSizeNotPrime => f.write_str("mh table size must be a prime"),
            SchedError::MhTableSizeTooLarge => {
                write!(f, "mh table size must be at most {MH_TABLE_SIZE_MAX}")
            }
            SchedError::TooManyServers => {
                f.write_str("more real servers than the scheduler can index")
            }
        }
    }
}

impl std::error::Error for SchedError {}

/// One service's scheduler on one worker: enum dispatch over the algorithms.
#[derive(Clone)]
pub struct Scheduler {
    algo: Algo,
}

#[derive(Clone)]
enum Algo {
    Rr(RoundRobin),
    Wrr(WeightedRoundRobin),
    Lc,
    Wlc,
    Sh(SourceHash),
    Dh(DestinationHash),
    Sed,
    Nq,
    Mh(Maglev),
    Lblc(Lblc),
    Lblcr(Lblcr),
    Fo,
    Ovf,
    Twos(TwoChoices),
}

impl Scheduler {
    /// Builds the scheduler for `servers`; fails on invalid options for `kind` or on
    /// a server set the algorithm cannot index.
    pub fn new(
        kind: SchedulerKind,
        servers: &[Candidate],
        opts: &SchedOptions,
    ) -> Result<Self, SchedError> {
        opts.validate(kind)?;
        let algo = match kind {
            SchedulerKind::Rr => Algo::Rr(RoundRobin::default()),
            SchedulerKind::Wrr => Algo::Wrr(WeightedRoundRobin::new(servers)),
            SchedulerKind::Lc => Algo::Lc,
            SchedulerKind::Wlc => Algo::Wlc,
            SchedulerKind::Sh => Algo::Sh(SourceHash::new(servers, opts)?),
            SchedulerKind::Dh => Algo::Dh(DestinationHash::new(servers)?),
            SchedulerKind::Sed => Algo::Sed,
            SchedulerKind::Nq => Algo::Nq,
            SchedulerKind::Mh => Algo::Mh(Maglev::new(servers, opts)?),
            SchedulerKind::Lblc => Algo::Lblc(Lblc::new(servers)?),
            SchedulerKind::Lblcr => Algo::Lblcr(Lblcr::new(servers)?),
            SchedulerKind::Fo => Algo::Fo,
            SchedulerKind::Ovf => Algo::Ovf,
            SchedulerKind::Twos => Algo::Twos(TwoChoices::new()),
        };
        Ok(Scheduler { algo })
    }

    /// The algorithm.
    pub fn kind(&self) -> SchedulerKind {
        match self.algo {
            Algo::Rr(_) => SchedulerKind::Rr,
            Algo::Wrr(_) => SchedulerKind::Wrr,
            Algo::Lc => SchedulerKind::Lc,
            Algo::Wlc => SchedulerKind::Wlc,
            Algo::Sh(_) => SchedulerKind::Sh,
            Algo::Dh(_) => SchedulerKind::Dh,
            Algo::Sed => SchedulerKind::Sed,
            Algo::Nq => SchedulerKind::Nq,
            Algo::Mh(_) => SchedulerKind::Mh,
            Algo::Lblc(_) => SchedulerKind::Lblc,
            Algo::Lblcr(_) => SchedulerKind::Lblcr,
            Algo::Fo => SchedulerKind::Fo,
            Algo::Ovf => SchedulerKind::Ovf,
            Algo::Twos(_) => SchedulerKind::Twos,
        }
    }

    /// The set of servers, their ids or weights changed: rebuild tables (sh/dh/mh
    /// lookup tables, wrr and rr cursors, the lblc/lblcr destination tables' server
    /// positions). Control path; allocates.
    ///
    /// Not needed when only `available`, `active` or `inactive` change. On error the
    /// scheduler picks nothing until a successful rebuild, rather than indexing a
    /// slice its tables no longer describe.
    pub fn rebuild(&mut self, servers: &[Candidate]) -> Result<(), SchedError> {
        match &mut self.algo {
            Algo::Rr(s) => s.rebuild(servers),
            Algo::Wrr(s) => s.rebuild(servers),
            Algo::Lc | Algo::Wlc | Algo::Sed | Algo::Nq => {}
            Algo::Fo | Algo::Ovf | Algo::Twos(_) => {}
            Algo::Sh(s) => s.rebuild(servers)?,
            Algo::Dh(s) => s.rebuild(servers)?,
            Algo::Mh(s) => s.rebuild(servers)?,
            Algo::Lblc(s) => s.rebuild(servers)?,
            Algo::Lblcr(s) => s.rebuild(servers)?,
        }
        Ok(())
    }

    /// Picks the server for a new connection: its index in `servers`, or `None` when
    /// no server can take it. Never allocates; bounded by O(servers) work (mh with
    /// fallback: see the `mh` module; lblc and lblcr add a lookup in their
    /// destination table).
    #[inline]
    pub fn pick(&mut self, servers: &[Candidate], flow: &FlowHint) -> Option<usize> {
        match &mut self.algo {
            Algo::Rr(s) => s.pick(servers),
            Algo::Wrr(s) => s.pick(servers),
            Algo::Lc => least::lc(servers),
            Algo::Wlc => least::wlc(servers),
            Algo::Sh(s) => s.pick(servers, flow),
            Algo::Dh(s) => s.pick(servers, flow),
            Algo::Sed => least::sed(servers),
            Algo::Nq => least::nq(servers),
            Algo::Mh(s) => s.pick(servers, flow),
            Algo::Lblc(s) => s.pick(servers, flow),
            Algo::Lblcr(s) => s.pick(servers, flow),
            Algo::Fo => fo::fo(servers),
            Algo::Ovf => ovf::ovf(servers),
            Algo::Twos(s) => s.pick(servers),
        }
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

/// Table entry meaning "no server" in sh, dh and mh tables.
const NO_SERVER: u32 = u32::MAX;

/// Slice positions sorted by server id (ties by position): the order in which the
/// hashing schedulers fill their tables, so tables depend on the set, not the order.
fn canonical_order(servers: &[Candidate]) -> Result<Vec<u32>, SchedError> {
    let n = u32::try_from(servers.len())
        .ok()
        .filter(|&n| n < NO_SERVER)
        .ok_or(SchedError::TooManyServers)?;
    let mut order: Vec<u32> = (0..n).collect();
    order.sort_unstable_by_key(|&i| (servers[i as usize].id, i));
    Ok(order)
}

/// The server a table entry names, if it is in the slice and takes new connections.
#[inline]
fn usable(servers: &[Candidate], entry: u32) -> Option<usize> {
    let i = entry as usize;
    servers.get(i).filter(|s| s.takes_new()).map(|_| i)
}

/// Greatest common divisor (Euclid); `gcd(0, b) == b`.
fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Trial division; the Maglev table size is checked once per configuration.
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod testutil {
    //! Helpers shared by the schedulers' tests.
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Server `10.0.0.<i+1>:80`, weight `w`.
    pub fn server(i: u8, w: u32) -> Candidate {
        Candidate::new(
            ServerId::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i + 1)), 80),
            w,
        )
    }

    /// Servers `10.0.0.1..` with the given weights.
    pub fn servers(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| server(u8::try_from(i).expect("test uses < 256 servers"), w))
            .collect()
    }

    /// A flow from client `src:sport` to the VIP 198.18.0.100:80, at time 0.
    pub fn flow_from(src: IpAddr, sport: u16) -> FlowHint {
        FlowHint {
            src,
            src_port: sport,
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
            dst_port: 80,
            now_ms: 0,
        }
    }

    /// The `n`-th of many distinct IPv4 clients, spread over 172.16.0.0/12.
    pub fn client_v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xac10_0000u32.wrapping_add(n)))
    }

    /// The `n`-th of many distinct IPv6 clients in 2001:2::/48.
    pub fn client_v6(n: u32) -> IpAddr {
        let mut o = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0).octets();
        o[8..12].copy_from_slice(&n.wrapping_mul(0x9e37_79b9).to_be_bytes());
        o[12..16].copy_from_slice(&n.to_be_bytes());
        IpAddr::V6(Ipv6Addr::from(o))
    }

    /// A tiny deterministic PRNG (xorshift64*) so tests need no crate and never flake.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use std::net::Ipv4Addr;

    fn any_flow() -> FlowHint {
        flow_from(IpAddr::V4(Ipv4Addr::new(172, 16, 1, 2)), 40000)
    }

    fn all_opts() -> [SchedOptions; 2] {
        [
            SchedOptions::default(),
            SchedOptions {
                mh_port: true,
                mh_fallback: true,
                sh_port: true,
                sh_fallback: true,
                ..SchedOptions::default()
            },
        ]
    }

    #[test]
    fn kind_names_round_trip() {
        for k in SchedulerKind::ALL {
            assert_eq!(k.to_string().parse::<SchedulerKind>(), Ok(k));
        }
        let names: Vec<_> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "rr", "wrr", "lc", "wlc", "sh", "dh", "sed", "nq", "mh", "lblc", "lblcr", "fo",
                "ovf", "twos"
            ]
        );
    }

    #[test]
    fn kind_rejects_unknown_names() {
        for bad in [
            "", "RR", "Wrr", "LBLC", "lblcr ", "rr ", " mh", "maglev", "wrr\0", "two",
        ] {
            assert_eq!(
                bad.parse::<SchedulerKind>(),
                Err(SchedError::UnknownScheduler),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_reasons_are_snake_case() {
        for e in [
            SchedError::UnknownScheduler,
            SchedError::MhTableSizeNotPrime,
            SchedError::MhTableSizeTooLarge,
            SchedError::TooManyServers,
        ] {
            let r = e.reason();
            assert!(!r.is_empty());
            assert!(
                r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r}"
            );
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..60).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            small,
            [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
        );
        for p in [
            251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 65537, 65539, 131071,
        ] {
            assert!(is_prime(p), "{p}");
        }
        for c in [65535, 65536, 65541, 1 << 20, 4_194_303, 4_194_304, u32::MAX] {
            assert!(!is_prime(c), "{c}");
        }
        assert!(is_prime(4_194_301));
    }

    #[test]
    fn gcd_basics() {
        assert_eq!(gcd(0, 0), 0);
        assert_eq!(gcd(0, 7), 7);
        assert_eq!(gcd(7, 0), 7);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(17, 5), 1);
        assert_eq!(gcd(u32::MAX, u32::MAX), u32::MAX);
    }

    #[test]
    fn options_are_validated_for_mh_only() {
        let bad = SchedOptions {
            mh_table_size: 65536,
            ..SchedOptions::default()
        };
        assert_eq!(
            Scheduler::new(SchedulerKind::Mh, &[], &bad).err(),
            Some(SchedError::MhTableSizeNotPrime)
        );
        for size in [0, 1, 4, 65535] {
            let o = SchedOptions {
                mh_table_size: size,
                ..SchedOptions::default()
            };
            assert_eq!(
                o.validate(SchedulerKind::Mh),
                Err(SchedError::MhTableSizeNotPrime)
            );
        }
        let huge = SchedOptions {
            mh_table_size: 4_194_319, // prime, above the limit
            ..SchedOptions::default()
        };
        assert_eq!(
            huge.validate(SchedulerKind::Mh),
            Err(SchedError::MhTableSizeTooLarge)
        );
        // Other kinds do not use the table size.
        for k in SchedulerKind::ALL
            .into_iter()
            .filter(|&k| k != SchedulerKind::Mh)
        {
            assert!(Scheduler::new(k, &servers(&[1]), &bad).is_ok(), "{k}");
        }
        assert_eq!(SchedOptions::default().validate(SchedulerKind::Mh), Ok(()));
    }

    #[test]
    fn empty_slice_picks_nothing() {
        for opts in all_opts() {
            for k in SchedulerKind::ALL {
                let mut s = Scheduler::new(k, &[], &opts).unwrap();
                assert_eq!(s.kind(), k);
                assert_eq!(s.pick(&[], &any_flow()), None, "{k}");
                s.rebuild(&[]).unwrap();
                assert_eq!(s.pick(&[], &any_flow()), None, "{k}");
            }
        }
    }

    #[test]
    fn all_unavailable_or_drained_picks_nothing() {
        for opts in all_opts() {
            for k in SchedulerKind::ALL {
                let mut list = servers(&[1, 2, 3, 4]);
                for c in &mut list {
                    c.available = false;
                }
                let mut s = Scheduler::new(k, &list, &opts).unwrap();
                for n in 0..300 {
                    let f = flow_from(client_v4(n), 1024 + n as u16);
                    assert_eq!(s.pick(&list, &f), None, "{k} unavailable");
                }
                let drained = servers(&[0, 0, 0, 0]);
                let mut s = Scheduler::new(k, &drained, &opts).unwrap();
                for n in 0..300 {
                    let f = flow_from(client_v4(n), 1024 + n as u16);
                    assert_eq!(s.pick(&drained, &f), None, "{k} drained");
                }
            }
        }
    }

    #[test]
    fn weight_zero_and_unavailable_never_picked() {
        for opts in all_opts() {
            for k in SchedulerKind::ALL {
                let mut list = servers(&[3, 0, 2, 5, 1]);
                list[3].available = false;
                list[0].active = 7;
                list[4].inactive = 100;
                // dh hashes the destination: vary it so many buckets are visited.
                let mut s = Scheduler::new(k, &list, &opts).unwrap();
                let mut seen = [0u32; 5];
                for n in 0..2000u32 {
                    let mut f = flow_from(client_v4(n * 7919), (n % 60000) as u16);
                    f.dst = client_v4(n * 104_729);
                    if let Some(i) = s.pick(&list, &f) {
                        seen[i] += 1;
                    }
                }
                assert_eq!(seen[1], 0, "{k} picked weight 0");
                assert_eq!(seen[3], 0, "{k} picked unavailable");
                assert!(seen.iter().sum::<u32>() > 0, "{k} picked nothing");
            }
        }
    }

    #[test]
    fn stale_slice_never_panics() {
        // The caller must rebuild after changing the set, but a forgotten rebuild must
        // not index out of bounds.
        for opts in all_opts() {
            for k in SchedulerKind::ALL {
                let big = servers(&[1, 2, 3, 4, 5, 6, 7, 8]);
                let small = servers(&[1, 1]);
                let mut s = Scheduler::new(k, &big, &opts).unwrap();
                for n in 0..500 {
                    let f = flow_from(client_v4(n), n as u16);
                    if let Some(i) = s.pick(&small, &f) {
                        assert!(i < small.len(), "{k}");
                    }
                    assert_eq!(s.pick(&[], &f), None, "{k}");
                }
            }
        }
    }

    #[test]
    fn rebuild_follows_set_changes() {
        for opts in all_opts() {
            for k in SchedulerKind::ALL {
                let mut list = servers(&[1, 1, 1]);
                let mut s = Scheduler::new(k, &list, &opts).unwrap();
                // Replace the set: only the new servers may be picked afterwards.
                list = (10..13).map(|i| server(i, 1)).collect();
                list.push(server(20, 0));
                s.rebuild(&list).unwrap();
                let mut picked = 0;
                for n in 0..1000u32 {
                    let mut f = flow_from(client_v4(n * 31), n as u16);
                    f.dst = client_v4(n * 17);
                    if let Some(i) = s.pick(&list, &f) {
                        assert!(i < 3, "{k} picked {i}");
                        picked += 1;
                    }
                }
                assert!(picked > 0, "{k}");
            }
        }
    }

    #[test]
    fn fallback_flags_reach_the_hashing_schedulers() {
        let mut list = servers(&[1, 1, 1, 1]);
        list[0].available = false;
        for (kind, fallback) in [(SchedulerKind::Sh, false), (SchedulerKind::Sh, true)]
            .into_iter()
            .chain([(SchedulerKind::Mh, false), (SchedulerKind::Mh, true)])
        {
            let opts = SchedOptions {
                sh_fallback: fallback,
                mh_fallback: fallback,
                ..SchedOptions::default()
            };
            let mut s = Scheduler::new(kind, &list, &opts).unwrap();
            let none = (0..2000u32)
                .filter(|&n| s.pick(&list, &flow_from(client_v4(n * 13), 0)).is_none())
                .count();
            if fallback {
                assert_eq!(none, 0, "{kind} with fallback");
            } else {
                // About a quarter of the clients hash to the unavailable server.
                assert!(
                    (350..650).contains(&none),
                    "{kind} without fallback: {none}"
                );
            }
        }
    }

    #[test]
    fn port_flags_reach_the_hashing_schedulers() {
        let list = servers(&[1, 1, 1, 1]);
        for kind in [SchedulerKind::Sh, SchedulerKind::Mh] {
            for port in [false, true] {
                let opts = SchedOptions {
                    sh_port: port,
                    mh_port: port,
                    ..SchedOptions::default()
                };
                let mut s = Scheduler::new(kind, &list, &opts).unwrap();
                let src = client_v4(42);
                let mut seen = [false; 4];
                for p in 2000..2100u16 {
                    seen[s.pick(&list, &flow_from(src, p)).unwrap()] = true;
                }
                let distinct = seen.iter().filter(|&&x| x).count();
                assert_eq!(distinct, if port { 4 } else { 1 }, "{kind} port={port}");
            }
        }
    }

    #[test]
    fn locality_schedulers_take_the_time_from_the_hint() {
        for k in [SchedulerKind::Lblc, SchedulerKind::Lblcr] {
            let mut list = servers(&[1, 1]);
            let mut s = Scheduler::new(k, &list, &SchedOptions::default()).unwrap();
            let mut f = any_flow();
            assert_eq!(s.pick(&list, &f), Some(0), "{k}");
            // Server 1 is now the lighter one, but the destination's entry holds.
            list[0].inactive = 1;
            f.now_ms = 1_000;
            assert_eq!(s.pick(&list, &f), Some(0), "{k}");
            // A day unused: the entry is gone and the destination rescheduled.
            f.now_ms = 1_000 + 24 * 60 * 60 * 1000;
            assert_eq!(s.pick(&list, &f), Some(1), "{k}");
        }
    }

    #[test]
    fn failover_and_overflow_through_the_scheduler() {
        let opts = SchedOptions::default();
        let mut list = servers(&[1, 3, 2]);
        let mut fo = Scheduler::new(SchedulerKind::Fo, &list, &opts).unwrap();
        let mut ovf = Scheduler::new(SchedulerKind::Ovf, &list, &opts).unwrap();
        assert_eq!(fo.pick(&list, &any_flow()), Some(1));
        assert_eq!(ovf.pick(&list, &any_flow()), Some(1));
        // Server 1 above its weight: ovf overflows to the next heaviest, fo stays.
        list[1].active = 4;
        assert_eq!(fo.pick(&list, &any_flow()), Some(1));
        assert_eq!(ovf.pick(&list, &any_flow()), Some(2));
        let mut twos = Scheduler::new(SchedulerKind::Twos, &list, &opts).unwrap();
        assert!(twos.pick(&list, &any_flow()).is_some());
    }

    #[test]
    fn server_id_display() {
        let v4 = ServerId::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10)), 8080);
        assert_eq!(v4.to_string(), "198.19.0.10:8080");
        let v6 = ServerId::new("2001:2::10".parse().unwrap(), 443);
        assert_eq!(v6.to_string(), "[2001:2::10]:443");
    }

    #[test]
    fn canonical_order_sorts_by_id() {
        let list = vec![server(3, 1), server(1, 1), server(2, 1), server(1, 5)];
        assert_eq!(canonical_order(&list).unwrap(), [1, 3, 2, 0]);
        assert_eq!(canonical_order(&[]).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn scheduler_debug_names_kind() {
        let s =
            Scheduler::new(SchedulerKind::Mh, &servers(&[1]), &SchedOptions::default()).unwrap();
        assert_eq!(format!("{s:?}"), "Scheduler { kind: Mh, .. }");
    }

    #[test]
    fn every_scheduler_skips_an_overloaded_server() {
        for opts in all_opts() {
            for k in SchedulerKind::ALL {
                let mut list = servers(&[3, 2, 5, 1]);
                list[2].u_threshold = 1;
                list[2].inactive = 1;
                list[2].bind();
                assert!(list[2].overloaded && !list[2].takes_new());
                let mut s = Scheduler::new(k, &list, &opts).unwrap();
                let mut seen = [0u32; 4];
                for n in 0..2000u32 {
                    let mut f = flow_from(client_v4(n * 7919), (n % 60000) as u16);
                    f.dst = client_v4(n * 104_729);
                    if let Some(i) = s.pick(&list, &f) {
                        seen[i] += 1;
                    }
                }
                assert_eq!(seen[2], 0, "{k} picked an overloaded server");
                assert!(seen.iter().sum::<u32>() > 0, "{k} picked nothing");
            }
        }
    }
    #[test]
    fn thresholds_follow_ipvs_bind_and_unbind() {
        let mut c = server(0, 1);
        // u_threshold 4, no l_threshold: overloaded at 4, back below 3 (3/4 of 4).
        c.set_thresholds(4, 0);
        for n in 1..=4 {
            c.inactive = n;
            c.bind();
            assert_eq!(c.overloaded, n == 4, "{n}");
        }
        c.inactive = 3;
        c.unbind();
        assert!(c.overloaded, "3 * 4 is not below 4 * 3");
        c.inactive = 2;
        c.unbind();
        assert!(!c.overloaded);
        // With l_threshold 2: back only below 2.
        c.set_thresholds(4, 2);
        c.inactive = 4;
        c.bind();
        assert!(c.overloaded);
        c.inactive = 2;
        c.unbind();
        assert!(c.overloaded);
        c.inactive = 1;
        c.unbind();
        assert!(!c.overloaded);
        // Active connections count too.
        c.active = 3;
        c.bind();
        assert!(c.overloaded);
        // Raising or removing the limit clears the overload; lowering it below the
        // count overloads at once.
        c.set_thresholds(10, 0);
        assert!(!c.overloaded);
        c.set_thresholds(2, 0);
        assert!(c.overloaded);
        c.set_thresholds(0, 0);
        assert!(!c.overloaded && c.takes_new());
        c.bind();
        assert!(!c.overloaded, "no limit, never overloaded");
    }
}
