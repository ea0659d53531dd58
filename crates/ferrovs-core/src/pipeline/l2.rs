//! Layer 2 and neighbours: ARP and IPv6 neighbour discovery (answered for our
//! addresses, learned from), routing a finished IP packet to its next hop's MAC
//! address, and holding packets while that address is being resolved.

use super::vlan::TxQueues;
use super::*;
use crate::net::{Learned, Lookup};
use crate::packet::arp::{self, ArpOperation, ArpPacket};
use crate::packet::icmpv6::{self, NeighborAdvert, NeighborSolicit, ND_FRAME_LEN};
use crate::packet::parse::{FrameInfo, IpInfo, L4Header};
use crate::packet::{ethernet, Icmpv6Type, Ipv6Packet, MacAddr, PacketBuf};
use crate::stats::{DropReason, WorkerStats};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Minimum Ethernet frame without FCS; shorter frames we build are zero-padded.
const MIN_FRAME: usize = 60;

impl<P: PacketPool> Pipeline<P> {
    /// ARP: learn the sender (RFC 826: update a known entry; add it when the request
    /// is for us), answer requests for our addresses on this port.
    pub(super) fn arp_input(&mut self, mut pkt: P::Buf, port: usize, info: &FrameInfo) {
        let l3 = usize::from(info.l3_offset);
        let Ok(arp) = ArpPacket::new_checked(&pkt.data()[l3..]) else {
            return self.discard(pkt, DropReason::TruncatedArp);
        };
        let (op, sha, spa, tpa) = (
            arp.operation(),
            arp.sender_hw_addr(),
            arp.sender_proto_addr(),
            arp.target_proto_addr(),
        );
        let target_is_ours = self
            .dp
            .local(IpAddr::V4(tpa))
            .is_some_and(|l| l.port == Some(port));
        let sender_on_link = self.dp.ifaces[port]
            .addrs
            .iter()
            .any(|a| a.contains(&IpAddr::V4(spa)));
        if !spa.is_unspecified() && sender_on_link && self.dp.local(IpAddr::V4(spa)).is_none() {
            self.learn_neighbor(IpAddr::V4(spa), sha, port, target_is_ours);
        }
        if op != ArpOperation::REQUEST {
            // The kernel interface resolves its own next hops (health checks).
            return if target_is_ours
                && self.dp.local(IpAddr::V4(tpa)).map(|l| l.kind) == Some(LocalKind::Interface)
            {
                self.pass_to_kernel(pkt, port, None)
            } else {
                self.consume(pkt)
            };
        }
        if !target_is_ours {
            return self.discard(pkt, DropReason::ArpNotForUs);
        }
        let mac = self.dp.ifaces[port].mac;
        if arp::reply_in_place(pkt.data_mut(), mac).is_err() {
            return self.discard(pkt, DropReason::TruncatedArp);
        }
        self.queue_tx(port, pkt);
    }

    /// Neighbour solicitation: learn the solicitor, answer for our own addresses.
    pub(super) fn nd_solicit_input(&mut self, mut pkt: P::Buf, port: usize, info: &FrameInfo) {
        let l3 = usize::from(info.l3_offset);
        let ns = match Ipv6Packet::new_checked(&pkt.data()[l3..])
            .map(|ip| NeighborSolicit::parse(&ip))
        {
            Ok(Ok(ns)) => ns,
            _ => return self.discard(pkt, DropReason::BadNeighborDiscovery),
        };
        let requester = MacAddr(
            pkt.data()[ethernet::field::SRC]
                .try_into()
                .unwrap_or([0; 6]),
        );
        let target_is_ours = self
            .dp
            .local(IpAddr::V6(ns.target))
            .is_some_and(|l| l.port == Some(port));
        if let (false, Some(mac)) = (ns.source.is_unspecified(), ns.source_link_addr) {
            self.learn_neighbor(IpAddr::V6(ns.source), mac, port, target_is_ours);
        }
        if !target_is_ours {
            return self.discard(pkt, DropReason::NdNotForUs);
        }
        let mac = self.dp.ifaces[port].mac;
        if pkt.len() < ND_FRAME_LEN && pkt.append(ND_FRAME_LEN - pkt.len()).is_err() {
            return self.discard(pkt, DropReason::NoMbuf);
        }
        match icmpv6::emit_neighbor_advert(pkt.data_mut(), mac, &ns, requester) {
            Ok(len) => {
                pkt.truncate(len);
                self.queue_tx(port, pkt);
            }
            Err(_) => self.discard(pkt, DropReason::BadNeighborDiscovery),
        }
    }

    /// Neighbour advertisement: completes or refreshes a resolution.
    pub(super) fn nd_advert_input(&mut self, pkt: P::Buf, port: usize, info: &FrameInfo) {
        let l3 = usize::from(info.l3_offset);
        let na =
            match Ipv6Packet::new_checked(&pkt.data()[l3..]).map(|ip| NeighborAdvert::parse(&ip)) {
                Ok(Ok(na)) => na,
                _ => return self.discard(pkt, DropReason::BadNeighborDiscovery),
            };
        let dst = Ipv6Packet::new_checked(&pkt.data()[l3..])
            .ok()
            .and_then(|ip| self.dp.local(IpAddr::V6(ip.dst_addr())));
        if let Some(mac) = na.target_link_addr {
            // A solicited answer to one of our addresses creates the entry: the
            // worker that asked may not be the one the answer reaches (with
            // several workers), and this one shares what it learns.
            let create = na.flags.solicited && dst.is_some();
            self.learn_neighbor(IpAddr::V6(na.target), mac, port, create);
        }
        // Solicited answers to a port address may be the kernel interface's.
        let to_us = dst.map(|l| l.kind) == Some(LocalKind::Interface);
        if to_us {
            self.pass_to_kernel(pkt, port, None)
        } else {
            self.consume(pkt)
        }
    }

    /// Records a neighbour, releases the packets that waited for it and tells the
    /// management core (which shares it with the other workers).
    pub(super) fn learn_neighbor(&mut self, ip: IpAddr, mac: MacAddr, port: usize, create: bool) {
        let Self {
            neigh,
            dp,
            tx,
            stats,
            garbage,
            now_ms,
            ..
        } = self;
        let learned = neigh.learn(ip, mac, port, *now_ms, create, |pkt, mac, port| {
            set_l2(dp, pkt, port, mac, tx, stats, garbage)
        });
        if matches!(learned, Learned::New | Learned::Changed) {
            // A full channel only delays the other workers' learning.
            let _ = self
                .events
                .try_send(WorkerEvent::NeighborLearned { ip, mac, port });
        }
    }

    /// Sends an IP packet whose L3 header is final: route, resolve the next hop,
    /// write the Ethernet header, queue. A miss holds the packet while ARP/ND runs.
    pub(super) fn route_out(&mut self, pkt: P::Buf, dst: IpAddr) {
        let Some(hop) = self.dp.routes.lookup(dst) else {
            return self.discard(pkt, DropReason::NoRoute);
        };
        let hop = self.choose_next_hop(hop, pkt.data(), dst);
        let next = hop.neighbor(dst);
        match self.neigh.lookup(next, hop.port, self.now_ms) {
            Lookup::Known { mac, probe } => {
                if probe {
                    self.probe(next, hop.port);
                }
                let Self {
                    dp,
                    tx,
                    stats,
                    garbage,
                    ..
                } = self;
                set_l2(dp, pkt, hop.port, mac, tx, stats, garbage);
            }
            Lookup::Resolving { probe } => {
                if probe {
                    self.probe(next, hop.port);
                }
                if let Err(pkt) = self.neigh.hold(next, pkt, self.now_ms) {
                    self.discard(pkt, DropReason::NeighborQueueFull);
                }
            }
            Lookup::Busy => self.discard(pkt, DropReason::NeighborBusy),
        }
    }

    pub(super) fn probe(&mut self, ip: IpAddr, port: usize) {
        let Self {
            dp,
            pool,
            stats,
            tx,
            ..
        } = self;
        send_probe(dp, pool, stats, tx, ip, port);
    }
}

/// Whether an IPv6 packet to a multicast group is neighbour discovery.
pub(super) fn is_nd(ip: &IpInfo) -> bool {
    matches!(
        ip.l4.map(|l4| l4.header),
        Some(L4Header::Icmpv6 {
            msg_type: Icmpv6Type::NEIGHBOR_SOLICIT | Icmpv6Type::NEIGHBOR_ADVERT,
            ..
        })
    )
}

/// Writes the Ethernet addresses for interface `port` and queues the packet there.
pub(super) fn set_l2<B: PacketBuf>(
    dp: &Dataplane,
    mut pkt: B,
    port: usize,
    dst_mac: MacAddr,
    tx: &mut TxQueues<B>,
    stats: &WorkerStats,
    garbage: &mut Vec<B>,
) {
    let data = pkt.data_mut();
    data[ethernet::field::DST].copy_from_slice(&dst_mac.0);
    data[ethernet::field::SRC].copy_from_slice(&dp.ifaces[port].mac.0);
    tx.push(port, pkt, |pkt, reason| {
        drop_into(stats, garbage, pkt, reason)
    });
}

/// Builds an ARP request (IPv4) or neighbour solicitation (IPv6) for `ip` out of
/// `port` and queues it.
pub(super) fn send_probe<P: PacketPool>(
    dp: &Dataplane,
    pool: &P,
    stats: &WorkerStats,
    tx: &mut TxQueues<P::Buf>,
    ip: IpAddr,
    port: usize,
) {
    let Some(src) = dp.source_for(port, ip) else {
        stats.count_drop(DropReason::NoSourceAddress, 1);
        return;
    };
    let Some(mut pkt) = pool.alloc() else {
        stats.count_drop(DropReason::NoMbuf, 1);
        return;
    };
    let mac = dp.ifaces[port].mac;
    let built = match (src, ip) {
        (IpAddr::V4(src), IpAddr::V4(target)) => build_arp_request(&mut pkt, mac, src, target),
        (IpAddr::V6(src), IpAddr::V6(target)) => build_nd_solicit(&mut pkt, mac, src, target),
        _ => false,
    };
    if !built {
        // Dropped here, freed individually: a built probe always fits.
        stats.count_drop(DropReason::TxFull, 1);
    } else {
        // Dropped here, freed individually: a probe is rare.
        tx.push(port, pkt, |_, reason| stats.count_drop(reason, 1));
    }
}

pub(super) fn build_arp_request<B: PacketBuf>(
    pkt: &mut B,
    mac: MacAddr,
    src: Ipv4Addr,
    target: Ipv4Addr,
) -> bool {
    if pkt.append(MIN_FRAME).is_err() {
        return false;
    }
    let data = pkt.data_mut();
    data.fill(0);
    arp::emit_request(data, mac, src, target).is_ok()
}

pub(super) fn build_unsolicited_na<B: PacketBuf>(
    pkt: &mut B,
    mac: MacAddr,
    target: Ipv6Addr,
) -> bool {
    if pkt.append(ND_FRAME_LEN).is_err() {
        return false;
    }
    match icmpv6::emit_unsolicited_neighbor_advert(pkt.data_mut(), mac, target) {
        Ok(len) => {
            pkt.truncate(len);
            true
        }
        Err(_) => false,
    }
}

pub(super) fn build_nd_solicit<B: PacketBuf>(
    pkt: &mut B,
    mac: MacAddr,
    src: Ipv6Addr,
    target: Ipv6Addr,
) -> bool {
    if pkt.append(ND_FRAME_LEN).is_err() {
        return false;
    }
    match icmpv6::emit_neighbor_solicit(pkt.data_mut(), mac, src, target) {
        Ok(len) => {
            pkt.truncate(len);
            true
        }
        Err(_) => false,
    }
}
