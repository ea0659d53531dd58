//! Layer-3 plumbing: routes and neighbours.

pub mod neigh;
pub mod route;

pub use neigh::{Learned, Lookup, NeighLimits, NeighState, NeighTable};
pub use route::{NextHop, Route, RouteTable};

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// Feeds `addr` and `tail` (up to 32 bits: a port and a protocol, say) to a
/// hasher as one word for IPv4: what a new connection's lookups of its service
/// and its local address hash. The derived `Hash` of `IpAddr` writes a
/// discriminant and a length-prefixed byte slice, several times the work.
#[inline]
pub fn hash_addr<H: Hasher>(addr: &IpAddr, tail: u64, state: &mut H) {
    match addr {
        IpAddr::V4(a) => state.write_u64(u64::from(u32::from(*a)) << 32 ^ tail),
        IpAddr::V6(a) => {
            state.write_u128(u128::from(*a));
            state.write_u64(tail);
        }
    }
}

/// An address as a hash-map key, hashed by [`hash_addr`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddrKey(pub IpAddr);

impl Hash for AddrKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_addr(&self.0, 0, state);
    }
}
