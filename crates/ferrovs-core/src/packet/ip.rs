//! What IPv4 and IPv6 share: protocol numbers and an address pair of one family.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The transport protocols a load balancer tracks connections of, numbered as on
/// the wire (so an `Option<Proto>` costs no extra byte and converting from the
/// protocol field is a compare).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum Proto {
    /// TCP, IP protocol 6.
    Tcp = 6,
    /// UDP, IP protocol 17.
    Udp = 17,
}

impl Proto {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The protocol name as `ipvsadm -Lnc` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The IP protocol number is neither TCP nor UDP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UnsupportedProto(pub u8);

impl fmt::Display for UnsupportedProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IP protocol {} is not tracked (only TCP and UDP)",
            self.0
        )
    }
}

impl std::error::Error for UnsupportedProto {}

impl TryFrom<u8> for Proto {
    type Error = UnsupportedProto;

    fn try_from(number: u8) -> Result<Self, Self::Error> {
        match number {
            6 => Ok(Proto::Tcp),
            17 => Ok(Proto::Udp),
            other => Err(UnsupportedProto(other)),
        }
    }
}

/// An IP protocol number: the IPv4 protocol field or an IPv6 next-header value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options header.
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    /// ICMP for IPv4.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// IPv4-in-IP encapsulation (IPIP, the LVS tunnel mode).
    pub const IPIP: IpProtocol = IpProtocol(4);
    /// TCP.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 encapsulation.
    pub const IPV6: IpProtocol = IpProtocol(41);
    /// IPv6 routing header.
    pub const ROUTING: IpProtocol = IpProtocol(43);
    /// IPv6 fragment header.
    pub const FRAGMENT: IpProtocol = IpProtocol(44);
    /// Generic routing encapsulation.
    pub const GRE: IpProtocol = IpProtocol(47);
    /// IPsec encapsulating security payload.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// IPsec authentication header.
    pub const AH: IpProtocol = IpProtocol(51);
    /// ICMP for IPv6.
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 "no next header".
    pub const NO_NEXT_HEADER: IpProtocol = IpProtocol(59);
    /// IPv6 destination options header.
    pub const DEST_OPTIONS: IpProtocol = IpProtocol(60);

    /// A short lowercase name for well-known protocols.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "hopopt",
            1 => "icmp",
            4 => "ipip",
            6 => "tcp",
            17 => "udp",
            41 => "ipv6",
            43 => "ipv6-route",
            44 => "ipv6-frag",
            47 => "gre",
            50 => "esp",
            51 => "ah",
            58 => "ipv6-icmp",
            59 => "ipv6-nonxt",
            60 => "ipv6-opts",
            _ => return None,
        })
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpProtocol({self})")
    }
}

/// Source and destination of one packet, of one family by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpPair {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// The source address.
    pub fn src(&self) -> IpAddr {
        match *self {
            IpPair::V4 { src, .. } => IpAddr::V4(src),
            IpPair::V6 { src, .. } => IpAddr::V6(src),
        }
    }

    /// The destination address.
    pub fn dst(&self) -> IpAddr {
        match *self {
            IpPair::V4 { dst, .. } => IpAddr::V4(dst),
            IpPair::V6 { dst, .. } => IpAddr::V6(dst),
        }
    }

    /// True for an IPv4 pair.
    pub fn is_ipv4(&self) -> bool {
        matches!(self, IpPair::V4 { .. })
    }

    /// The pair of the other direction (source and destination swapped).
    pub fn reversed(&self) -> IpPair {
        match *self {
            IpPair::V4 { src, dst } => IpPair::V4 { src: dst, dst: src },
            IpPair::V6 { src, dst } => IpPair::V6 { src: dst, dst: src },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_numbers() {
        assert_eq!(Proto::try_from(6), Ok(Proto::Tcp));
        assert_eq!(Proto::try_from(17), Ok(Proto::Udp));
        assert_eq!(Proto::try_from(1), Err(UnsupportedProto(1)));
        assert_eq!(Proto::try_from(132), Err(UnsupportedProto(132)));
        assert_eq!(Proto::Tcp.number(), 6);
        assert_eq!(Proto::Udp.to_string(), "UDP");
    }

    #[test]
    fn protocol_names() {
        assert_eq!(IpProtocol::TCP.to_string(), "tcp");
        assert_eq!(IpProtocol::ICMPV6.to_string(), "ipv6-icmp");
        assert_eq!(IpProtocol(253).to_string(), "253");
        assert_eq!(format!("{:?}", IpProtocol::UDP), "IpProtocol(udp)");
    }

    #[test]
    fn pair_accessors_and_reverse() {
        let a = Ipv4Addr::new(198, 18, 0, 1);
        let b = Ipv4Addr::new(198, 18, 0, 100);
        let p = IpPair::V4 { src: a, dst: b };
        assert!(p.is_ipv4());
        assert_eq!(p.src(), IpAddr::V4(a));
        assert_eq!(p.reversed().src(), IpAddr::V4(b));
        assert_eq!(p.reversed().reversed(), p);
        let v6 = IpPair::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::UNSPECIFIED,
        };
        assert!(!v6.is_ipv4());
        assert_eq!(v6.dst(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }
}
