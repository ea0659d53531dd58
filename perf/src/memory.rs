//! Memory per live connection, measured: the growth of the process's resident set
//! while a connection table is built and filled, divided by the connections in it.
//!
//! The resident set counts the pages actually backed by RAM, so it includes what a
//! size computation misses (hash index control bytes, allocator rounding, the timer
//! wheel, pages the kernel backs with transparent hugepages) and excludes
//! reservations never touched. Filling the table with random keys touches every page
//! of the index, so nothing is undercounted.

use std::fmt;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use ferrovs_core::conn::{
    ConnError, ConnTable, Endpoint, Family, FlowHasher, Mode, NewConn, Proto, Timeouts,
};

use crate::traffic::{self, Addressing, MAX_FLOWS};

/// Why the measurement could not be made.
#[derive(Debug)]
pub enum MemError {
    /// `/proc/self/status` could not be read.
    Proc(std::io::Error),
    /// `/proc/self/status` has no parsable `VmRSS` line.
    NoVmRss,
    /// The table refused the size or an insert.
    Table(ConnError),
    /// More connections than distinct generated clients.
    TooMany(usize),
    /// No connections: there is nothing to divide the growth by.
    NoConnections,
    /// A mode the measurement does not build (only NAT and DR).
    UnsupportedMode(Mode),
}

impl MemError {
    /// The error as a snake_case label.
    pub const fn reason(&self) -> &'static str {
        match self {
            MemError::Proc(_) => "proc",
            MemError::NoVmRss => "no_vm_rss",
            MemError::Table(e) => e.reason(),
            MemError::TooMany(_) => "too_many",
            MemError::NoConnections => "no_connections",
            MemError::UnsupportedMode(_) => "unsupported_mode",
        }
    }
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::Proc(e) => write!(f, "reading /proc/self/status: {e}"),
            MemError::NoVmRss => f.write_str("no VmRSS line in /proc/self/status"),
            MemError::Table(e) => write!(f, "connection table: {e}"),
            MemError::TooMany(n) => write!(f, "{n} connections exceed {MAX_FLOWS}"),
            MemError::NoConnections => {
                f.write_str("0 connections: nothing to measure per connection")
            }
            MemError::UnsupportedMode(m) => write!(f, "mode {m} is not measured"),
        }
    }
}

impl std::error::Error for MemError {}

/// The `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let kb = fields.next()?.parse::<u64>().ok()?;
    match fields.next() {
        Some("kB") => kb.checked_mul(1024),
        _ => None,
    }
}

/// This process's resident set size in bytes.
pub fn rss_bytes() -> Result<u64, MemError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(MemError::Proc)?;
    parse_vm_rss(&status).ok_or(MemError::NoVmRss)
}

/// The result of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnMemory {
    /// Forwarding mode of every connection: NAT's carry two keys, DR's one.
    pub mode: Mode,
    /// "IPv4" or "IPv6": the connections' address family.
    pub family: &'static str,
    /// Live connections in the table (= its capacity).
    pub connections: usize,
    /// Resident set growth from before construction to after the last insert.
    pub rss_growth: u64,
    /// What the table says it allocated ([`ConnTable::memory_bytes`]).
    pub table_bytes: usize,
}

impl ConnMemory {
    /// Measured bytes per live connection.
    pub fn rss_per_connection(&self) -> f64 {
        self.rss_growth as f64 / self.connections.max(1) as f64
    }

    /// Computed bytes per live connection, for comparison.
    pub fn table_per_connection(&self) -> f64 {
        self.table_bytes as f64 / self.connections.max(1) as f64
    }
}

/// Connection `i` as the benchmark traffic would create it: client `i` to the
/// default VIP, spread over four real servers.
pub fn new_conn(i: u32, mode: Mode) -> NewConn<Ipv4Addr> {
    let addressing = Addressing::default();
    let client = traffic::client(i);
    let client = Endpoint::new(*client.ip(), client.port());
    let real = Endpoint::new(Ipv4Addr::new(198, 19, 0, 10 + (i % 4) as u8), 8080);
    NewConn {
        proto: Proto::Udp,
        mode,
        client,
        vip: Endpoint::new(addressing.vip, addressing.udp_port),
        // NAT and DR: the real server sees the client.
        local: client,
        real,
        service: 0,
        real_server: (i % 4) as u16,
        template: None,
    }
}

/// [`new_conn`] in IPv6: the same connection with every address mapped into
/// 2001:db8::/32 (client `i` at 2001:db8:c::<its IPv4 address>, the real servers
/// at 2001:db8:1::10-13, the VIP at 2001:db8::<the IPv4 VIP>).
pub fn new_conn_v6(i: u32, mode: Mode) -> NewConn<Ipv6Addr> {
    let v4 = new_conn(i, mode);
    let map = |prefix: u16, e: Endpoint<Ipv4Addr>| {
        let [a, b] = [(u32::from(e.addr) >> 16) as u16, u32::from(e.addr) as u16];
        Endpoint::new(Ipv6Addr::new(0x2001, 0xdb8, prefix, 0, 0, 0, a, b), e.port)
    };
    NewConn {
        proto: v4.proto,
        mode: v4.mode,
        client: map(0xc, v4.client),
        vip: map(0, v4.vip),
        local: map(0xc, v4.local),
        real: map(1, v4.real),
        service: v4.service,
        real_server: v4.real_server,
        template: v4.template,
    }
}

/// Builds an IPv4 table for `connections` and fills it, measuring the resident
/// set before and after. Run it in a process of its own: anything else
/// allocating meanwhile would be counted.
pub fn measure_conn_table(connections: usize, mode: Mode) -> Result<ConnMemory, MemError> {
    measure::<Ipv4Addr>(connections, mode, "IPv4", new_conn)
}

/// [`measure_conn_table`] with IPv6 connections ([`new_conn_v6`]).
pub fn measure_conn_table_v6(connections: usize, mode: Mode) -> Result<ConnMemory, MemError> {
    measure::<Ipv6Addr>(connections, mode, "IPv6", new_conn_v6)
}

fn measure<A: Family>(
    connections: usize,
    mode: Mode,
    family: &'static str,
    conn: impl Fn(u32, Mode) -> NewConn<A>,
) -> Result<ConnMemory, MemError> {
    if !matches!(mode, Mode::Nat | Mode::Dr) {
        return Err(MemError::UnsupportedMode(mode));
    }
    if connections > MAX_FLOWS as usize {
        return Err(MemError::TooMany(connections));
    }
    if connections == 0 {
        return Err(MemError::NoConnections);
    }
    let before = rss_bytes()?;
    let mut table: ConnTable<A> =
        ConnTable::with_hasher(connections, &Timeouts::default(), FlowHasher::with_seed(6))
            .map_err(MemError::Table)?;
    for i in 0..connections as u32 {
        table.insert(&conn(i, mode), 0).map_err(MemError::Table)?;
    }
    let after = rss_bytes()?;
    let table = black_box(table);
    Ok(ConnMemory {
        mode,
        family,
        connections: table.len(),
        rss_growth: after.saturating_sub(before),
        table_bytes: table.memory_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("VmRSS: 12 MB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: x kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\n"), None);
        assert_eq!(parse_vm_rss("Name: y\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: 99999999999999999999 kB\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn conns_are_distinct_per_index() {
        let a = new_conn(0, Mode::Nat);
        let b = new_conn(1, Mode::Nat);
        assert_ne!(a.client, b.client);
        assert_eq!(a.local, a.client);
        assert_ne!(a.real, b.real);
    }

    #[test]
    fn measures_a_small_table() {
        let m = measure_conn_table(20_000, Mode::Nat).unwrap();
        assert_eq!(m.connections, 20_000);
        assert!(m.table_bytes > 20_000 * 40);
        // The test harness runs other tests in parallel threads, so only sanity is
        // checked here: the growth is of the order of the table.
        assert!(m.table_per_connection() > 40.0);
        assert!(m.rss_per_connection() >= 0.0);
    }

    #[test]
    fn measures_a_small_ipv6_table() {
        let a = new_conn_v6(0, Mode::Nat);
        let b = new_conn_v6(1, Mode::Nat);
        assert_ne!(a.client, b.client);
        assert_ne!(a.real, b.real);
        assert_eq!(a.local, a.client);
        assert_eq!(
            a.vip.addr,
            "2001:db8::c612:64".parse::<Ipv6Addr>().unwrap(),
            "the bench's VIP 198.18.0.100, mapped"
        );
        let m = measure_conn_table_v6(20_000, Mode::Nat).unwrap();
        let v4 = measure_conn_table(20_000, Mode::Nat).unwrap();
        assert_eq!((m.connections, m.family), (20_000, "IPv6"));
        // Wider keys: an IPv6 record is larger than an IPv4 one.
        assert!(m.table_bytes > v4.table_bytes);
    }

    #[test]
    fn refuses_what_it_cannot_build() {
        assert_eq!(
            measure_conn_table(10, Mode::FullNat).unwrap_err().reason(),
            "unsupported_mode"
        );
        assert_eq!(
            measure_conn_table(MAX_FLOWS as usize + 1, Mode::Nat)
                .unwrap_err()
                .reason(),
            "too_many"
        );
        assert_eq!(
            measure_conn_table(0, Mode::Nat).unwrap_err().reason(),
            "no_connections"
        );
    }
}
