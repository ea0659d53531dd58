//! The SYN proxy (as DPVS's `synproxy`): a client's SYN to a proxied service is
//! answered here with a SYN cookie ([`crate::forward::syncookie`]) and leaves
//! nothing behind; only an ACK whose cookie validates opens the connection,
//! whose SYN to the real server carries the client's options. Until the server
//! answers, the client's data is held (bounded per connection and per worker;
//! beyond that it is dropped and the client sends it again); the server's
//! SYN-ACK is answered here, fixes the sequence-number translation
//! ([`SeqAdj`]) and releases what was held. A server that refuses (a reset) or
//! never answers (the connection's SYN timeout) gets the client a reset.
//!
//! With `connections.syn_proxy_above`, every TCP NAT/FULLNAT service is proxied
//! while the rate of SYNs that completed no handshake, measured each second on
//! this worker, passes this worker's share of it.

use super::balance::endpoints;
use super::*;
use crate::conn::xlate::{self, adj_flag, SAME_WSCALE};
use crate::conn::{ConnId, Endpoint, SeqAdj};
use crate::forward::packet_action;
use crate::forward::segment::{self, Segment, SynOptions, MAX_OPTIONS};
use crate::forward::syncookie::{self, CookieFlow, CookieKeys, MSS_TABLE};
use crate::packet::{TcpFlags, TcpPacket};
use crate::service::Service;

/// Client segments held per worker while their servers have not answered.
pub(super) const HOLD_TOTAL: usize = 256;
/// Client segments held per connection while its server has not answered.
pub(super) const HOLD_PER_CONN: usize = 8;
/// The window scale ferrovs announces to clients that offer one.
pub(super) const WSCALE: u8 = 7;
/// Resets owed to clients of expired connections, at most per expiry round.
const OWED_RESETS: usize = 128;
/// The window (as written) of the ACK that completes the server's handshake,
/// until the client's own segments announce its window.
const ACK_WINDOW: u16 = 1024;
/// Cookie option bits meaning "no window scale, no SACK" (see `adj_flag::SYN_PENDING`).
const NO_OPTIONS: u8 = 0x0f;

/// A client segment held until its connection's server answers.
struct Held<B> {
    id: ConnId,
    v6: bool,
    seq: u32,
    pkt: B,
}

/// A reset owed to a client whose connection expired before its server answered.
#[derive(Clone, Copy, Debug)]
pub(super) struct OwedReset {
    pub(super) id: ConnId,
    pub(super) client: (IpAddr, u16),
    pub(super) vip: (IpAddr, u16),
    pub(super) seq: u32,
    pub(super) ack: u32,
}

/// The automatic switch: counts of the current one-second window.
#[derive(Debug, Default)]
struct Auto {
    active: bool,
    since_ms: u64,
    /// SYNs that opened a connection, and SYNs answered with a cookie.
    syns: u64,
    /// Cookies validated.
    acked: u64,
    /// The real servers' handshake counters at the window's start.
    handshakes: u64,
}

/// One worker's SYN proxy state; every buffer sized at start.
pub(super) struct SynProxy<B> {
    keys: CookieKeys,
    held: Vec<Held<B>>,
    pub(super) owed: Vec<OwedReset>,
    auto: Auto,
    /// When held segments were last checked for connections gone meanwhile.
    swept_ms: u64,
}

impl<B> SynProxy<B> {
    pub(super) fn new(keys: CookieKeys) -> Self {
        SynProxy {
            keys,
            held: Vec::with_capacity(HOLD_TOTAL),
            owed: Vec::with_capacity(OWED_RESETS),
            auto: Auto::default(),
            swept_ms: 0,
        }
    }

    /// Takes the keys after a rotation.
    pub(super) fn set_keys(&mut self, keys: CookieKeys) {
        self.keys = keys;
    }

    /// Counts a SYN that opened a connection without the proxy.
    #[inline]
    pub(super) fn count_syn(&mut self) {
        self.auto.syns += 1;
    }
}

/// The TCP header of `pkt`'s segment.
fn tcp_of<'a, B: PacketBuf>(
    pkt: &'a B,
    info: &FrameInfo,
    ip: &IpInfo,
) -> Option<TcpPacket<&'a [u8]>> {
    let l4 = usize::from(ip.l4?.offset);
    TcpPacket::new_checked(pkt.data().get(l4..info.l3_end())?).ok()
}

impl<P: PacketPool> Pipeline<P> {
    /// The SYN cookie keys this worker holds.
    #[cfg(test)]
    pub(super) fn syn_keys(&self) -> CookieKeys {
        self.syn.keys
    }

    /// Whether new connections to `svc` are SYN-proxied now.
    #[inline]
    pub(super) fn syn_proxied(&self, svc: &Service) -> bool {
        (svc.syn_proxy || self.syn.auto.active) && svc.syn_proxy_capable()
    }

    /// A TCP segment matching no connection: a SYN to a proxied service is
    /// answered with a cookie, an ACK to one opens the connection when its cookie
    /// validates. Returns the segment when the proxy has nothing to do with it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn syn_proxy_input<A: Tables>(
        &mut self,
        pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        client: (A, u16),
        vip: (A, u16),
        flags: TcpFlags,
    ) -> Option<P::Buf> {
        let opening = is_opening_syn(Proto::Tcp, flags);
        let ack = flags.contains(TcpFlags::ACK)
            && !flags.intersects(TcpFlags::SYN | TcpFlags::RST | TcpFlags::FIN);
        if !opening && !ack {
            return Some(pkt);
        }
        let (src, dst) = (client.0.into_ip(), vip.0.into_ip());
        let admitted = match self.dp.services.find(dst, vip.1, Proto::Tcp) {
            Some(svc) if self.syn_proxied(svc) => Self::acl_admits(svc, src),
            _ => return Some(pkt),
        };
        if let Err(reason) = self.admit_source(src, port).and(admitted) {
            self.refuse(pkt, info, ip, reason);
            return None;
        }
        if ip.fragment {
            self.discard(pkt, DropReason::FragmentUnsupported);
            return None;
        }
        if opening {
            self.answer_syn(pkt, info, ip, (src, client.1), (dst, vip.1));
        } else {
            self.open_proxied::<A>(pkt, info, ip, client, vip);
        }
        None
    }

    /// Answers a client's SYN with a SYN-ACK whose sequence number is a cookie
    /// and whose TSval keeps the client's window scale and SACK, as Linux does.
    fn answer_syn(
        &mut self,
        pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        client: (IpAddr, u16),
        vip: (IpAddr, u16),
    ) {
        let Some((isn, offered)) =
            tcp_of(&pkt, info, ip).map(|t| (t.seq_number(), SynOptions::parse(t.options())))
        else {
            return self.discard(pkt, DropReason::TruncatedL4);
        };
        let index = syncookie::mss_index(offered.mss);
        let flow = CookieFlow::new(client, vip);
        let cookie = syncookie::make(
            &self.syn.keys.current,
            &flow,
            isn,
            syncookie::minute(self.now_ms),
            index,
        );
        // Without timestamps nothing but the MSS survives the cookie: the
        // SYN-ACK then offers neither window scaling nor SACK (as Linux's).
        let ts = offered.ts.map(|(val, _)| {
            let ours = syncookie::encode_timestamp(
                self.now_ms as u32,
                offered.wscale,
                offered.sack,
                false,
            );
            (ours, val)
        });
        let answer = SynOptions {
            mss: Some(self.proxy_mss(client.0)),
            wscale: offered.wscale.filter(|_| ts.is_some()).map(|_| WSCALE),
            sack: offered.sack && ts.is_some(),
            ts,
        };
        let mut options = [0u8; MAX_OPTIONS];
        let n = answer.write(&mut options);
        let seg = Segment {
            src: vip,
            dst: client,
            seq: cookie,
            ack: isn.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: u16::MAX,
            options: &options[..n],
            payload: &[],
        };
        self.stats.syn_cookies_sent.inc();
        self.syn.auto.syns += 1;
        self.send_segment(pkt, usize::from(info.l3_offset), &seg);
    }

    /// The MSS announced to clients: what the smallest port MTU carries.
    fn proxy_mss(&self, client: IpAddr) -> u16 {
        let mtu = self.min_mtu.min(1500);
        let headers = if client.is_ipv4() { 40 } else { 60 };
        mtu.saturating_sub(headers).max(536)
    }

    /// An ACK that matches no connection: when its cookie validates, the
    /// connection is opened, the real server gets a SYN with the client's
    /// options, and data the ACK carries is held until the server answers.
    fn open_proxied<A: Tables>(
        &mut self,
        pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        client: (A, u16),
        vip: (A, u16),
    ) {
        let Some((seq, ack, window, ts, data)) = tcp_of(&pkt, info, ip).map(|t| {
            (
                t.seq_number(),
                t.ack_number(),
                t.window(),
                segment::timestamps(t.options()),
                !t.payload().is_empty(),
            )
        }) else {
            return self.discard(pkt, DropReason::TruncatedL4);
        };
        let (isn, cookie) = (seq.wrapping_sub(1), ack.wrapping_sub(1));
        let flow = CookieFlow::new((client.0.into_ip(), client.1), (vip.0.into_ip(), vip.1));
        let options = syncookie::check(
            &self.syn.keys,
            &flow,
            isn,
            cookie,
            syncookie::minute(self.now_ms),
        )
        .and_then(|index| syncookie::decode_timestamp(index, ts.map(|t| t.1)));
        let Some(options) = options else {
            return self.discard(pkt, DropReason::SynCookieInvalid);
        };
        self.stats.syn_cookies_validated.inc();
        self.syn.auto.acked += 1;
        let Self {
            dp,
            lb,
            stats,
            now_ms,
            ..
        } = self;
        let Some(svc) = dp.services.find(vip.0.into_ip(), vip.1, Proto::Tcp) else {
            return self.discard(pkt, DropReason::NoService);
        };
        let opened = lb.connect(
            svc,
            Proto::Tcp,
            Endpoint::new(client.0, client.1),
            Endpoint::new(vip.0, vip.1),
            *now_ms,
            stats,
        );
        let id = match opened {
            Ok(id) => id,
            Err(reason) => {
                // The client thinks itself connected: tell it otherwise.
                self.stats.count_drop(reason, 1);
                let seg = Segment {
                    src: (vip.0.into_ip(), vip.1),
                    dst: (client.0.into_ip(), client.1),
                    seq: ack,
                    ack: seq,
                    flags: TcpFlags::RST | TcpFlags::ACK,
                    window: 0,
                    options: &[],
                    payload: &[],
                };
                self.stats.syn_proxy_resets.inc();
                return self.send_segment(pkt, usize::from(info.l3_offset), &seg);
            }
        };
        // The connection is where the client's SYN would have left it.
        self.lb.on_packet::<A>(
            id,
            Dir::Inbound,
            TcpFlags::SYN.bits(),
            self.now_ms,
            &self.stats,
        );
        let base = self.proxy_translation::<A>(id, isn).unwrap_or(SeqAdj {
            first_seq: seq,
            ..SeqAdj::default()
        });
        let bits = options.wscale.unwrap_or(NO_OPTIONS) | if options.sack { 0x10 } else { 0 };
        let adj = SeqAdj {
            out_delta: cookie,
            ts_delta: ts.map_or(0, |t| t.1),
            wscale: bits,
            mss_index: options.mss_index,
            flags: base.flags
                | adj_flag::SYN_PROXY
                | adj_flag::SYN_PENDING
                | if ts.is_some() {
                    adj_flag::TIMESTAMPS
                } else {
                    0
                },
            ..base
        };
        if self
            .lb
            .conns_mut::<A>()
            .set_translation(id, adj, xlate::flag::SLOW)
            .is_err()
        {
            return self.discard(pkt, DropReason::NoConnection);
        }
        let window = scaled_window(window, options.wscale);
        let l3 = usize::from(info.l3_offset);
        let tsval = ts.map(|t| t.0);
        if !data {
            return self.server_syn::<A>(pkt, l3, id, &adj, tsval, window);
        }
        // The ACK carries data: held, and the SYN goes in a buffer of its own.
        let Some(mut syn) = self.pool.alloc() else {
            return self.discard(pkt, DropReason::NoMbuf);
        };
        if syn.append(l3).is_err() {
            self.consume(syn);
            return self.discard(pkt, DropReason::NoMbuf);
        }
        syn.data_mut()[..l3].copy_from_slice(&pkt.data()[..l3]);
        self.hold::<A>(pkt, id, seq);
        self.server_syn::<A>(syn, l3, id, &adj, tsval, window);
    }

    /// Sends connection `id`'s SYN to its real server, written into `out` (whose
    /// first `l3` bytes are kept) as the client's SYN to the VIP, then forwarded
    /// like one: with the client's initial sequence number and the options its
    /// cookie kept.
    fn server_syn<A: Tables>(
        &mut self,
        mut out: P::Buf,
        l3: usize,
        id: ConnId,
        adj: &SeqAdj,
        client_tsval: Option<u32>,
        window: u16,
    ) {
        let Some(conn) = self.lb.get::<A>(id) else {
            return self.discard(out, DropReason::NoConnection);
        };
        let ws = adj.wscale & 0x0f;
        let offer = SynOptions {
            mss: Some(MSS_TABLE[usize::from(adj.mss_index) % MSS_TABLE.len()]),
            wscale: (ws != NO_OPTIONS).then_some(ws),
            sack: adj.wscale & 0x10 != 0,
            ts: client_tsval
                .filter(|_| adj.has(adj_flag::TIMESTAMPS))
                .map(|v| (v, 0)),
        };
        let mut options = [0u8; MAX_OPTIONS];
        let n = offer.write(&mut options);
        let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
        let seg = Segment {
            src: ep(conn.client()),
            dst: ep(conn.vip()),
            seq: adj.first_seq.wrapping_sub(1),
            ack: 0,
            flags: TcpFlags::SYN,
            window,
            options: &options[..n],
            payload: &[],
        };
        let want = l3 + seg.ip_len();
        let len = out.len();
        let sized = if want > len {
            out.append(want - len).is_ok()
        } else {
            out.truncate(want);
            true
        };
        if !sized || segment::emit(out.data_mut(), l3, &seg).is_err() {
            return self.discard(out, DropReason::NoMbuf);
        }
        let Ok(info) = parse_frame(out.data(), false) else {
            return self.discard(out, DropReason::NoMbuf);
        };
        let L3Info::Ip(ip) = info.l3 else {
            return self.discard(out, DropReason::NoMbuf);
        };
        match packet_action(conn.mode(), Dir::Inbound, &endpoints(&conn)) {
            Some(action) => self.forward(out, &info, &ip, Proto::Tcp, action),
            None => self.discard(out, DropReason::NoConnection),
        }
    }

    /// Holds a client segment of `id` until its server answers; beyond the
    /// bounds, it is dropped (the client sends it again).
    fn hold<A: Tables>(&mut self, pkt: P::Buf, id: ConnId, seq: u32) {
        let v6 = A::MAX_PREFIX_LEN == 128;
        let mine = self
            .syn
            .held
            .iter()
            .filter(|h| h.id == id && h.v6 == v6)
            .count();
        if mine >= HOLD_PER_CONN || self.syn.held.len() >= self.syn.held.capacity() {
            return self.discard(pkt, DropReason::SynProxyHoldFull);
        }
        self.syn.held.push(Held { id, v6, seq, pkt });
    }

    /// Frees what is held for `id`.
    fn drop_held<A: Tables>(&mut self, id: ConnId) {
        let v6 = A::MAX_PREFIX_LEN == 128;
        let mut i = 0;
        while i < self.syn.held.len() {
            if self.syn.held[i].id == id && self.syn.held[i].v6 == v6 {
                let h = self.syn.held.remove(i);
                self.consume(h.pkt);
            } else {
                i += 1;
            }
        }
    }

    /// A packet of connection `id`, whose server has not answered the SYN proxy
    /// yet: the server's SYN-ACK completes the connection, its reset refuses it;
    /// the client's data is held.
    pub(super) fn syn_proxy_pending<A: Tables>(
        &mut self,
        pkt: P::Buf,
        info: &FrameInfo,
        ip: &IpInfo,
        id: ConnId,
        dir: Dir,
        adj: SeqAdj,
    ) {
        let Some((seq, ack, flags, occupies, window, options)) = tcp_of(&pkt, info, ip).map(|t| {
            let flags = t.flags();
            let occupies = !t.payload().is_empty() || flags.contains(TcpFlags::FIN);
            let ws = adj.wscale & 0x0f;
            (
                t.seq_number(),
                t.ack_number(),
                flags,
                occupies,
                scaled_window(t.window(), (ws != NO_OPTIONS).then_some(ws)),
                SynOptions::parse(t.options()),
            )
        }) else {
            return self.discard(pkt, DropReason::TruncatedL4);
        };
        let l3 = usize::from(info.l3_offset);
        if dir == Dir::Inbound {
            if flags.intersects(TcpFlags::SYN | TcpFlags::RST) || !occupies {
                return self.discard(pkt, DropReason::SynProxyPending);
            }
            let v6 = A::MAX_PREFIX_LEN == 128;
            let again = self
                .syn
                .held
                .iter()
                .any(|h| h.id == id && h.v6 == v6 && h.seq == seq);
            if again {
                // The client sends again what it sent: perhaps our SYN was lost.
                let tsval = options.ts.map(|t| t.0);
                return self.server_syn::<A>(pkt, l3, id, &adj, tsval, window);
            }
            return self.hold::<A>(pkt, id, seq);
        }
        let answers = flags.contains(TcpFlags::ACK) && ack == adj.first_seq;
        if flags.contains(TcpFlags::RST) && answers {
            // The server refuses: so does ferrovs, to the client.
            let Some(conn) = self.lb.get::<A>(id) else {
                return self.consume(pkt);
            };
            if let Some(a) = self.lb.conns_mut::<A>().translation_mut(id) {
                a.flags &= !adj_flag::SYN_PENDING;
            }
            self.drop_held::<A>(id);
            let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
            let seg = Segment {
                src: ep(conn.vip()),
                dst: ep(conn.client()),
                seq: adj.out_delta.wrapping_add(1),
                ack: adj.first_seq,
                flags: TcpFlags::RST | TcpFlags::ACK,
                window: 0,
                options: &[],
                payload: &[],
            };
            self.stats.syn_proxy_resets.inc();
            return self.send_segment(pkt, l3, &seg);
        }
        if !answers || !flags.contains(TcpFlags::SYN) {
            return self.discard(pkt, DropReason::SynProxyPending);
        }
        // The server's SYN-ACK: its numbers become the translation's.
        let server_isn = seq;
        let mut done = adj;
        done.out_delta = adj.out_delta.wrapping_sub(server_isn);
        done.flags &= !adj_flag::SYN_PENDING;
        match (adj.has(adj_flag::TIMESTAMPS), options.ts) {
            (true, Some((server_tsval, _))) => {
                done.ts_delta = adj.ts_delta.wrapping_sub(server_tsval)
            }
            _ => {
                done.flags &= !adj_flag::TIMESTAMPS;
                done.ts_delta = 0;
            }
        }
        done.wscale = if adj.wscale & 0x0f == NO_OPTIONS {
            SAME_WSCALE
        } else {
            // Unscaled when the server did not take up scaling.
            let server = options.wscale.unwrap_or(0);
            if server == WSCALE {
                SAME_WSCALE
            } else {
                (server << 4) | WSCALE
            }
        };
        let slow = if done.has(adj_flag::PROXY_PENDING) {
            xlate::flag::SLOW
        } else {
            0
        };
        if self
            .lb
            .conns_mut::<A>()
            .set_translation(id, done, slow)
            .is_err()
        {
            return self.discard(pkt, DropReason::NoConnection);
        }
        // The handshake's last ACK, from the client's side of the server.
        let mut opts = [0u8; MAX_OPTIONS];
        let n = match options.ts {
            Some((server_tsval, echoed)) if done.has(adj_flag::TIMESTAMPS) => SynOptions {
                ts: Some((echoed, server_tsval)),
                ..SynOptions::default()
            }
            .write(&mut opts),
            _ => 0,
        };
        let (sport, dport) = ip.ports().unwrap_or_default();
        let seg = Segment {
            src: (ip.addrs.dst(), dport),
            dst: (ip.addrs.src(), sport),
            seq: adj.first_seq,
            ack: server_isn.wrapping_add(1),
            flags: TcpFlags::ACK,
            window: ACK_WINDOW,
            options: &opts[..n],
            payload: &[],
        };
        self.send_segment(pkt, l3, &seg);
        self.release_held::<A>(id);
    }

    /// Sends on, in order, what was held for `id`, now that its server answered.
    fn release_held<A: Tables>(&mut self, id: ConnId) {
        let v6 = A::MAX_PREFIX_LEN == 128;
        let mut i = 0;
        while i < self.syn.held.len() {
            if !(self.syn.held[i].id == id && self.syn.held[i].v6 == v6) {
                i += 1;
                continue;
            }
            let Held { pkt, .. } = self.syn.held.remove(i);
            self.resend_held::<A>(pkt, id);
        }
    }

    /// A held client segment of `id`, through what the ordinary path does with it.
    fn resend_held<A: Tables>(&mut self, pkt: P::Buf, id: ConnId) {
        let Ok(info) = parse_frame(pkt.data(), false) else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        let L3Info::Ip(ip) = info.l3 else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        let Some(L4Header::Tcp { flags, .. }) = ip.l4.map(|l| l.header) else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        let Some(conn) =
            self.lb
                .on_packet::<A>(id, Dir::Inbound, flags.bits(), self.now_ms, &self.stats)
        else {
            return self.discard(pkt, DropReason::NoConnection);
        };
        let bytes = (info.l3_end() - usize::from(info.l3_offset)) as u64;
        count_forwarded(&self.stats, conn.real_server(), Dir::Inbound, bytes);
        match packet_action(conn.mode(), Dir::Inbound, &endpoints(&conn)) {
            Some(action) => self.forward_translated::<A>(pkt, &info, &ip, action, id, Dir::Inbound),
            None => self.discard(pkt, DropReason::NoConnection),
        }
    }

    /// Sends the resets owed to clients of connections that expired before their
    /// servers answered (collected by the expiry), and frees what they held.
    pub(super) fn send_owed_resets(&mut self) {
        let mut owed = std::mem::take(&mut self.syn.owed);
        for r in owed.drain(..) {
            if r.client.0.is_ipv4() {
                self.drop_held::<std::net::Ipv4Addr>(r.id);
            } else {
                self.drop_held::<std::net::Ipv6Addr>(r.id);
            }
            let seg = Segment {
                src: r.vip,
                dst: r.client,
                seq: r.seq,
                ack: r.ack,
                flags: TcpFlags::RST | TcpFlags::ACK,
                window: 0,
                options: &[],
                payload: &[],
            };
            let Some(mut pkt) = self.pool.alloc() else {
                self.stats.count_drop(DropReason::NoMbuf, 1);
                continue;
            };
            pkt.truncate(0);
            if pkt.append(ethernet::HEADER_LEN).is_err() {
                self.discard(pkt, DropReason::NoMbuf);
                continue;
            }
            self.stats.syn_proxy_resets.inc();
            self.send_segment(pkt, ethernet::HEADER_LEN, &seg);
        }
        self.syn.owed = owed;
    }

    /// Frees held segments whose connection is gone or no longer waits (removed
    /// by other means than its expiry, or expired while the resets owed were
    /// more than one round takes).
    fn sweep_held(&mut self) {
        let mut i = 0;
        while i < self.syn.held.len() {
            let h = &self.syn.held[i];
            let adj = if h.v6 {
                self.lb.translation::<std::net::Ipv6Addr>(h.id)
            } else {
                self.lb.translation::<std::net::Ipv4Addr>(h.id)
            };
            if adj.is_some_and(|a| a.has(adj_flag::SYN_PENDING)) {
                i += 1;
            } else {
                let h = self.syn.held.remove(i);
                self.discard(h.pkt, DropReason::SynProxyHoldFull);
            }
        }
    }

    /// The automatic switch, once a second: on while the SYNs that completed no
    /// handshake in the last second pass this worker's share of
    /// `connections.syn_proxy_above`.
    pub(super) fn syn_proxy_tick(&mut self) {
        if !self.syn.held.is_empty() && self.now_ms.saturating_sub(self.syn.swept_ms) >= 1000 {
            self.syn.swept_ms = self.now_ms;
            self.sweep_held();
        }
        let above = u64::from(self.dp.syn_proxy_above);
        if above == 0 {
            if self.syn.auto.active {
                self.syn.auto.active = false;
                self.stats.syn_proxy_auto.set(0);
            }
            return;
        }
        let elapsed = self.now_ms.saturating_sub(self.syn.auto.since_ms);
        if elapsed < 1000 {
            return;
        }
        let handshakes: u64 = self
            .dp
            .services
            .iter()
            .filter(|s| s.syn_proxy_capable())
            .flat_map(|s| s.real_servers.iter())
            .map(|r| self.stats.real_server(r.slot).handshakes.get())
            .sum();
        let a = &mut self.syn.auto;
        let completed = handshakes.wrapping_sub(a.handshakes) + a.acked;
        let unanswered = a.syns.saturating_sub(completed);
        let share = above.div_ceil(self.workers as u64).max(1);
        a.active = unanswered.saturating_mul(1000) / elapsed > share;
        a.handshakes = handshakes;
        a.syns = 0;
        a.acked = 0;
        a.since_ms = self.now_ms;
        self.stats.syn_proxy_auto.set(u64::from(a.active));
    }
}

/// A window as written with scale `wscale`, in bytes as far as a SYN (never
/// scaled) can say.
fn scaled_window(window: u16, wscale: Option<u8>) -> u16 {
    let bytes = u32::from(window) << wscale.unwrap_or(0).min(14);
    bytes.min(u32::from(u16::MAX)) as u16
}
