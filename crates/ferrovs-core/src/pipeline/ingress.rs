//! Ingress validation, as a router and IPVS do it: what no received packet may
//! carry, and what a source must be before ferrovs acts for it.
//!
//! - [`Pipeline::screen`] runs on every IP packet of the ordinary path, before it
//!   is steered or looked up, and costs a few compares on what the parser read:
//!   unicast IP in a broadcast or multicast frame, martian sources.
//! - [`Pipeline::admit_source`] runs where ferrovs is about to act for a source:
//!   before a connection is opened (both paths), an echo request answered, or an
//!   ICMP error about a connection translated. It costs a hash lookup (the own
//!   addresses) and, with `rp_filter`, a route lookup: too much for every packet,
//!   and not needed for every packet.
//!
//! The burst path forwards only packets of established connections without
//! either check, and that is enough: a connection's inbound key holds the source
//! of the packet that opened it, which passed both checks when it did (a synced
//! connection's client passes them at installation); its outbound key's source is
//! the real server, a configured address. A packet whose source fails them
//! therefore never finds a connection, and every packet that misses the table
//! goes through [`Pipeline::open_v4`] or the ordinary path, which check.
//! Reverse-path filtering is not repeated for packets of established connections
//! (on either path): it would cost a route lookup per packet, and a packet posing
//! as one from the wrong side needs a live connection's whole 5-tuple (and, for
//! TCP, its sequence space) to be forwarded at all.

use super::*;
use crate::config::RpFilter;
use crate::packet::parse::{IpInfo, L4Header};
use crate::packet::IpPair;

impl<P: PacketPool> Pipeline<P> {
    /// What no IP packet may carry, whatever it is for: a unicast destination in a
    /// broadcast or multicast frame, a martian source (but the unspecified source
    /// of a host without an address yet: DHCP, duplicate address detection).
    #[inline]
    pub(super) fn screen(&self, ip: &IpInfo, l2_multicast: bool) -> Result<(), DropReason> {
        if l2_multicast && self.dp.is_unicast_destination(ip.addrs.dst()) {
            return Err(DropReason::L2BroadcastUnicastIp);
        }
        if self.is_martian(ip.addrs.src(), ip.addrs.dst()) && !is_dad(ip) {
            return Err(DropReason::MartianSource);
        }
        Ok(())
    }

    /// Whether `src` is a martian source for a packet to `dst`. The unspecified
    /// IPv4 source of a host without an address yet is let through to the
    /// limited broadcast (DHCP; Linux accepts it too): such a packet goes on like
    /// any other.
    #[inline]
    pub(super) fn is_martian(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.dp.is_martian_source(src)
            && !(src == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && dst == IpAddr::V4(Ipv4Addr::BROADCAST))
    }

    /// Whether ferrovs may act for `src`, received on `port`: open a connection
    /// for it, answer it, translate its ICMP error. Not one of our own addresses
    /// (a spoof, or a land attack), and through the port's reverse-path filter.
    #[inline(always)]
    pub(super) fn admit_source(&self, src: IpAddr, port: usize) -> Result<(), DropReason> {
        if self.dp.local(src).is_some() {
            return Err(DropReason::OwnSource);
        }
        let passes = match self.dp.ifaces[port].rp_filter {
            RpFilter::Off => true,
            RpFilter::Loose => self.dp.routes.lookup(src).is_some(),
            RpFilter::Strict => self
                .dp
                .routes
                .lookup(src)
                .is_some_and(|hop| hop.port == port),
        };
        if passes {
            Ok(())
        } else {
            Err(DropReason::RpFilter)
        }
    }
}

/// A neighbour solicitation of duplicate address detection: from the unspecified
/// IPv6 address (RFC 4862 section 5.4.2), which a host without an address yet
/// legitimately sends.
fn is_dad(ip: &IpInfo) -> bool {
    matches!(ip.addrs, IpPair::V6 { src, .. } if src.is_unspecified())
        && matches!(
            ip.l4.map(|l4| l4.header),
            Some(L4Header::Icmpv6 {
                msg_type: Icmpv6Type::NEIGHBOR_SOLICIT,
                ..
            })
        )
}
