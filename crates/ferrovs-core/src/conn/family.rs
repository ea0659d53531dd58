//! Address families: the connection table is generic over them so that IPv4 entries
//! carry 4-byte addresses and stay compact, while IPv6 entries carry 16-byte ones.

use std::fmt;
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::records::RewriteTo;

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// An IP address family: [`Ipv4Addr`] or [`Ipv6Addr`]. Sealed.
pub trait Family:
    sealed::Sealed + Copy + Eq + Ord + fmt::Debug + fmt::Display + Send + Sync + 'static
{
    /// Address length in bits: the longest prefix.
    const MAX_PREFIX_LEN: u8;
    /// The all-zeroes address.
    const UNSPECIFIED: Self;

    /// The address with all bits past the first `prefix_len` cleared (IPVS's
    /// persistence netmask). A `prefix_len` beyond [`Family::MAX_PREFIX_LEN`] keeps every bit.
    fn mask(self, prefix_len: u8) -> Self;

    /// Feeds the address to a hasher as one integer (cheaper than hashing the
    /// octets as a slice, which also hashes a length prefix).
    fn write_hash<H: Hasher>(self, state: &mut H);

    /// The address as an `IpAddr`.
    fn into_ip(self) -> IpAddr;

    /// The address of this family inside `ip`, if it is one.
    fn from_ip(ip: IpAddr) -> Option<Self>;

    /// [`Family::from_ip`], and for IPv6 also an IPv4 address as IPv4-mapped
    /// (`::ffff:a.b.c.d`): how a NAT64 connection, kept in the IPv6 table, holds
    /// its IPv4 local address and real server.
    fn from_ip_or_mapped(ip: IpAddr) -> Option<Self>;

    /// Whether this is an IPv4-mapped IPv6 address (never for IPv4).
    fn is_mapped(self) -> bool;

    /// What a connection record keeps of the endpoints its packets are rewritten
    /// to (see `conn::records`).
    type RewriteTo: RewriteTo<Self>;
}

impl Family for Ipv4Addr {
    type RewriteTo = [Endpoint<Ipv4Addr>; 2];
    const MAX_PREFIX_LEN: u8 = 32;
    const UNSPECIFIED: Self = Ipv4Addr::UNSPECIFIED;

    fn mask(self, prefix_len: u8) -> Self {
        let keep = u32::MAX
            .checked_shl(u32::from(Self::MAX_PREFIX_LEN.saturating_sub(prefix_len)))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self) & keep)
    }

    #[inline]
    fn write_hash<H: Hasher>(self, state: &mut H) {
        state.write_u32(u32::from(self));
    }

    #[inline]
    fn into_ip(self) -> IpAddr {
        IpAddr::V4(self)
    }

    #[inline]
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    #[inline]
    fn from_ip_or_mapped(ip: IpAddr) -> Option<Self> {
        Self::from_ip(ip)
    }

    #[inline]
    fn is_mapped(self) -> bool {
        false
    }
}

impl Family for Ipv6Addr {
    type RewriteTo = Endpoint<Ipv6Addr>;
    const MAX_PREFIX_LEN: u8 = 128;
    const UNSPECIFIED: Self = Ipv6Addr::UNSPECIFIED;

    fn mask(self, prefix_len: u8) -> Self {
        let keep = u128::MAX
            .checked_shl(u32::from(Self::MAX_PREFIX_LEN.saturating_sub(prefix_len)))
            .unwrap_or(0);
        Ipv6Addr::from(u128::from(self) & keep)
    }

    #[inline]
    fn write_hash<H: Hasher>(self, state: &mut H) {
        state.write_u128(u128::from(self));
    }

    #[inline]
    fn into_ip(self) -> IpAddr {
        IpAddr::V6(self)
    }

    #[inline]
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }

    #[inline]
    fn from_ip_or_mapped(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(a) => Some(a.to_ipv6_mapped()),
        }
    }

    #[inline]
    fn is_mapped(self) -> bool {
        self.to_ipv4_mapped().is_some()
    }
}

/// One end of a flow: an address and a TCP/UDP port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint<A: Family> {
    /// IPv4 or IPv6 address, by the table's family.
    pub addr: A,
    /// TCP or UDP port.
    pub port: u16,
}

impl<A: Family> Endpoint<A> {
    /// An endpoint from its parts.
    pub const fn new(addr: A, port: u16) -> Self {
        Endpoint { addr, port }
    }
}

impl<A: Family> fmt::Display for Endpoint<A> {
    /// `addr:port`, with the IPv6 address in brackets (`[2001:2::1]:443`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if A::MAX_PREFIX_LEN == 128 {
            write!(f, "[{}]:{}", self.addr, self.port)
        } else {
            write!(f, "{}:{}", self.addr, self.port)
        }
    }
}

impl<A: Family> fmt::Debug for Endpoint<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_ipv4() {
        let a = Ipv4Addr::new(198, 18, 7, 201);
        assert_eq!(a.mask(32), a);
        assert_eq!(a.mask(24), Ipv4Addr::new(198, 18, 7, 0));
        assert_eq!(a.mask(17), Ipv4Addr::new(198, 18, 0, 0));
        assert_eq!(a.mask(1), Ipv4Addr::new(128, 0, 0, 0));
        assert_eq!(a.mask(0), Ipv4Addr::UNSPECIFIED);
        // Out-of-range prefixes keep the whole address instead of panicking.
        assert_eq!(a.mask(33), a);
        assert_eq!(a.mask(255), a);
    }

    #[test]
    fn mask_ipv6() {
        let a: Ipv6Addr = "2001:2:0:1:aaaa:bbbb:cccc:dddd".parse().unwrap();
        assert_eq!(a.mask(128), a);
        assert_eq!(a.mask(64), "2001:2:0:1::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(a.mask(48), "2001:2::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(a.mask(0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(a.mask(200), a);
    }

    #[test]
    fn mapped_addresses_only_in_ipv6() {
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2));
        assert_eq!(
            Ipv4Addr::from_ip_or_mapped(v4),
            Some(Ipv4Addr::new(198, 19, 0, 2))
        );
        let m = Ipv6Addr::from_ip_or_mapped(v4).unwrap();
        assert_eq!(m, "::ffff:198.19.0.2".parse::<Ipv6Addr>().unwrap());
        assert!(m.is_mapped());
        assert!(!"2001:2::1".parse::<Ipv6Addr>().unwrap().is_mapped());
        assert!(!Ipv4Addr::new(198, 19, 0, 2).is_mapped());
        let v6 = IpAddr::V6("2001:2::1".parse().unwrap());
        assert_eq!(Ipv4Addr::from_ip_or_mapped(v6), None);
    }

    #[test]
    fn endpoint_display() {
        let v4 = Endpoint::new(Ipv4Addr::new(198, 18, 0, 1), 80);
        assert_eq!(v4.to_string(), "198.18.0.1:80");
        let v6 = Endpoint::new("2001:2::1".parse::<Ipv6Addr>().unwrap(), 443);
        assert_eq!(v6.to_string(), "[2001:2::1]:443");
        assert_eq!(format!("{v6:?}"), "[2001:2::1]:443");
    }
}
