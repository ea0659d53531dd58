//! Traffic to the ports' own addresses: ping is answered here, everything else
//! (health-check replies, BGP, ssh) goes to the port's kernel interface, the
//! exception path.

use super::*;
use crate::packet::parse::FrameInfo;
use crate::packet::{Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, PacketBuf};
use crate::stats::DropReason;
use std::net::IpAddr;

/// TTL / hop limit of packets ferrovs originates or answers.
const REPLY_TTL: u8 = 64;

impl<P: PacketPool> Pipeline<P> {
    /// Passes a packet for one of the port's own addresses to the kernel interface
    /// standing for the port (the exception path). Without one the packet is dropped
    /// for `otherwise`, or just consumed when that is None (an answer ferrovs used).
    pub(super) fn pass_to_kernel(
        &mut self,
        pkt: P::Buf,
        port: usize,
        otherwise: Option<DropReason>,
    ) {
        if !self.dp.ifaces[port].kernel {
            return match otherwise {
                Some(reason) => self.discard(pkt, reason),
                None => self.consume(pkt),
            };
        }
        let q = &mut self.kernel[port];
        if q.len() < q.capacity() {
            q.push(pkt);
            self.stats.kernel_packets.inc();
        } else {
            self.discard(pkt, DropReason::KernelFull);
        }
    }

    /// ICMP echo request to one of our IPv4 addresses: answered in place and routed
    /// back like any packet we send.
    pub(super) fn echo_reply_v4(&mut self, mut pkt: P::Buf, info: &FrameInfo) {
        pkt.truncate(info.l3_end());
        let l3 = usize::from(info.l3_offset);
        let Ok(mut ip) = Ipv4Packet::new_checked(&mut pkt.data_mut()[l3..]) else {
            return self.discard(pkt, DropReason::TruncatedIpv4);
        };
        let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
            return self.discard(pkt, DropReason::TruncatedL4);
        };
        if !icmp.verify_checksum() || icmp.make_echo_reply().is_err() {
            return self.discard(pkt, DropReason::BadIcmpChecksum);
        }
        ip.swap_addrs();
        ip.rewrite_ttl(REPLY_TTL);
        let dst = ip.dst_addr();
        self.route_out(pkt, IpAddr::V4(dst));
    }

    /// ICMPv6 echo request to one of our IPv6 addresses.
    pub(super) fn echo_reply_v6(&mut self, mut pkt: P::Buf, info: &FrameInfo) {
        pkt.truncate(info.l3_end());
        let l3 = usize::from(info.l3_offset);
        let Ok(mut ip) = Ipv6Packet::new_checked(&mut pkt.data_mut()[l3..]) else {
            return self.discard(pkt, DropReason::TruncatedIpv6);
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(mut icmp) = Icmpv6Packet::new_checked(ip.payload_mut()) else {
            return self.discard(pkt, DropReason::TruncatedL4);
        };
        if !icmp.verify_checksum(src, dst) || icmp.make_echo_reply().is_err() {
            return self.discard(pkt, DropReason::BadIcmpChecksum);
        }
        // Swapping source and destination leaves the pseudo-header sum unchanged.
        ip.swap_addrs();
        ip.set_hop_limit(REPLY_TTL);
        self.route_out(pkt, IpAddr::V6(src));
    }
}
