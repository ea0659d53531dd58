//! One-packet scheduling (IPVS `--ops`, UDP): every datagram to an `ops` service
//! is scheduled on its own and forwarded without a connection.
//!
//! IPVS creates a connection flagged `IP_VS_CONN_F_ONE_PACKET` for each datagram,
//! never hashes it (`ip_vs_conn_hash`) and frees it once the packet is sent, so a
//! NAT reply finds no connection there; with conntrack the reply is not
//! translated either (`ip_vs_update_conntrack` skips one-packet connections).
//! A DNS client would then get its answer from the real server's address and
//! drop it. ferrovs translates a NAT reply back by its source alone instead: a
//! datagram from an ops NAT service's real-server endpoint leaves with the
//! service's VIP and port as its source, to whatever client it is addressed to.
//! The configuration check keeps such an endpoint out of every other NAT UDP
//! service, and refuses ops in FULLNAT, whose replies (to a local port) cannot
//! be matched to a client without a connection.

use super::*;
use crate::forward::{packet_action, Endpoints};
use crate::service::Service;

impl<P: PacketPool> Pipeline<P> {
    /// A UDP datagram that matches no connection: forwarded here when it goes to
    /// an `ops` service or is a NAT reply of one; else given back.
    pub(super) fn ops_input(
        &mut self,
        pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
    ) -> Option<P::Buf> {
        let bytes = (info.l3_end() - usize::from(info.l3_offset)) as u64;
        if let Some(svc) = self.dp.services.find(dst.0, dst.1, Proto::Udp) {
            if !svc.ops {
                return Some(pkt);
            }
            let slot = svc.slot;
            let verdict = self
                .admit_source(src.0, port)
                .and_then(|()| Self::acl_admits(svc, src.0));
            if let Err(reason) = verdict {
                self.refuse(pkt, info, ip, reason);
                return None;
            }
            let Self { dp, lb, now_ms, .. } = self;
            let Some(svc) = dp.services.get(slot) else {
                self.discard(pkt, DropReason::NoService);
                return None;
            };
            let (mode, rs_slot, e) = match lb.schedule_datagram(svc, src, dst, *now_ms) {
                Ok(i) => ops_endpoints(svc, i, src, dst),
                Err(reason) => {
                    self.refuse(pkt, info, ip, reason);
                    return None;
                }
            };
            self.stats.real_server(rs_slot).conns.inc();
            count_forwarded(&self.stats, rs_slot, Dir::Inbound, bytes);
            return self.ops_forward(pkt, info, ip, mode, Dir::Inbound, &e);
        }
        // A reply goes to the client, never to an address of ours.
        if self.dp.local(dst.0).is_some() {
            return Some(pkt);
        }
        let Some((svc, rs)) = self.dp.services.ops_reply(src.0, src.1, Proto::Udp) else {
            return Some(pkt);
        };
        let e = Endpoints {
            client: dst,
            vip: (svc.vip, svc.port),
            local: dst,
            real: src,
        };
        count_forwarded(&self.stats, rs.slot, Dir::Outbound, bytes);
        self.ops_forward(pkt, info, ip, svc.mode, Dir::Outbound, &e)
    }

    fn ops_forward(
        &mut self,
        pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        mode: crate::conn::Mode,
        dir: Dir,
        e: &Endpoints,
    ) -> Option<P::Buf> {
        if ip.fragment {
            // No connection to remember the first fragment's verdict by.
            self.discard(pkt, DropReason::FragmentUnsupported);
            return None;
        }
        match packet_action(mode, dir, e) {
            Some(action) => self.forward(pkt, info, ip, Proto::Udp, action),
            None => self.discard(pkt, DropReason::NoConnection),
        }
        None
    }
}

/// The mode, the server's slot and the endpoints of a datagram from `client` to
/// `vip` sent to the server in place `i` of `svc`.
fn ops_endpoints(
    svc: &Service,
    i: usize,
    client: (IpAddr, u16),
    vip: (IpAddr, u16),
) -> (crate::conn::Mode, u16, Endpoints) {
    let rs = &svc.real_servers[i];
    let e = Endpoints {
        client,
        vip,
        local: client,
        real: (rs.addr, rs.port_for(vip.1)),
    };
    (svc.mode, rs.slot, e)
}
