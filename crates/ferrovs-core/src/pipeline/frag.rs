//! IP fragments of forwarded TCP/UDP datagrams, IPv4 and IPv6, without
//! reassembly: the first fragment (offset 0, the only one with ports) takes the
//! ordinary path (connection lookup or scheduling, rewrite, next hop) and what it
//! was done with is remembered per datagram, keyed by (source, destination, IP
//! identification, protocol); the later fragments get the same IP-level rewrite
//! and the same next hop. ferrovs never fragments, so nothing needs reassembling:
//! the receiver does it, and the TCP/UDP checksum, which covers the whole
//! datagram, is updated incrementally in the first fragment for the datagram's
//! address and port changes (as for any packet; no checksum offload is asked).
//!
//! Later fragments that arrive before their first one are held (mbufs in a fixed
//! array: [`HOLD_PER_DATAGRAM`] a datagram, [`HOLD_PER_WORKER`] a worker) and sent
//! right after it, in arrival order; past [`TIMEOUT_MS`] without it they are
//! dropped. An entry is freed as soon as its datagram has passed whole (every byte
//! up to the last fragment's end, in order), else when it times out.
//!
//! With several workers, the worker that receives a later fragment cannot tell the
//! connection's owner (no ports). Every fragment therefore goes first to the
//! datagram's *home* worker, `hash(src, dst, id, protocol) mod workers` (the same
//! on every worker), which learns the owner from the first fragment and passes
//! the fragments on to it in order on the one ring between them; the owner keeps
//! what the first fragment was done with. With one worker everything is local.

use super::*;
use crate::conn::Dir;
use crate::forward::{translate_fragment, Action};
use crate::packet::ipv6::Ipv6Packet;
use crate::packet::Ipv4Packet;

/// Datagrams in flight a worker tracks (a power of two).
pub(super) const ENTRIES: usize = 4096;
/// Slots probed from a key's hash: a full window means the table is full there.
const PROBE: usize = 8;
/// How long a datagram's entry lives: its fragments leave the sender back to back,
/// so this only needs to outlast the path's reordering.
pub(super) const TIMEOUT_MS: u64 = 2000;
/// Later fragments held a datagram until its first fragment arrives.
pub(super) const HOLD_PER_DATAGRAM: u8 = 16;
/// Later fragments held by a worker in all.
pub(super) const HOLD_PER_WORKER: usize = 256;
/// Entries examined for expiry per housekeeping round.
const SWEEP_PER_ROUND: usize = 256;
/// No owner known yet, or the end of a chain of held fragments.
const NONE: u16 = u16::MAX;

/// What identifies the fragments of one datagram (RFC 791, RFC 8200 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

impl FragKey {
    /// A hash that every worker computes alike (the home worker depends on it).
    fn hash(&self) -> u64 {
        let fold = |a: IpAddr| -> u64 {
            match a {
                IpAddr::V4(v4) => u64::from(u32::from(v4)),
                IpAddr::V6(v6) => {
                    let x = u128::from(v6);
                    (x as u64) ^ ((x >> 64) as u64).rotate_left(23)
                }
            }
        };
        let mut h = fold(self.src) ^ u64::from(self.id) << 32 ^ u64::from(self.proto);
        h = (h ^ fold(self.dst).rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^ (h >> 32)
    }
}

/// The fragment fields of a packet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fragment {
    pub(super) key: FragKey,
    /// Offset of the fragment's data in the datagram, in bytes.
    pub(super) offset: u32,
    /// Bytes of data the fragment carries (after the IP header and, for IPv6, the
    /// extension headers up to the fragment header's).
    pub(super) len: u32,
    /// More fragments follow.
    pub(super) more: bool,
}

/// Reads and checks the fragment fields of a TCP/UDP fragment that `parse_frame`
/// classified. `Ok(None)` for an IPv6 atomic fragment (offset 0, no more to
/// follow: RFC 6946, a whole datagram).
pub(super) fn fragment_of(
    frame: &[u8],
    info: &FrameInfo,
    ip: &IpInfo,
) -> Result<Option<Fragment>, DropReason> {
    let l3 = frame
        .get(usize::from(info.l3_offset)..)
        .ok_or(DropReason::TruncatedIpv4)?;
    let (id, offset, more) = match ip.addrs {
        IpPair::V4 { .. } => {
            let h = Ipv4Packet::new_checked_quoted(l3).map_err(|_| DropReason::TruncatedIpv4)?;
            (
                u32::from(h.ident()),
                u32::from(h.frag_offset()),
                h.more_fragments(),
            )
        }
        IpPair::V6 { .. } => {
            let h = Ipv6Packet::new_checked(l3).map_err(|_| DropReason::TruncatedIpv6)?;
            let Some(f) = h
                .upper_layer()
                .map_err(|_| DropReason::BadIpv6ExtensionHeader)?
                .fragment
            else {
                return Ok(None);
            };
            (f.ident, u32::from(f.offset), f.more)
        }
    };
    if offset == 0 && !more {
        return Ok(None);
    }
    let len = ip.total_len.saturating_sub(u32::from(ip.header_len));
    // The smallest header a later fragment must not reach into: the ports, and
    // for TCP the flags, are checked on the first fragment only (RFC 1858).
    let l4_header = if ip.protocol == IpProtocol::TCP {
        24
    } else {
        8
    };
    if offset + len > 65535
        || (more && (len == 0 || len % 8 != 0))
        || (offset != 0 && offset < l4_header)
    {
        return Err(DropReason::FragmentMalformed);
    }
    Ok(Some(Fragment {
        key: FragKey {
            src: ip.addrs.src(),
            dst: ip.addrs.dst(),
            id,
            proto: ip.protocol.0,
        },
        offset,
        len,
        more,
    }))
}

/// What a datagram's later fragments get: the first fragment's rewrite at the IP
/// level, its next hop, and the counters it was counted on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Verdict {
    action: Action,
    real_server: u16,
    dir: Dir,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: FragKey,
    live: bool,
    expires_ms: u64,
    /// The worker the fragments go to (home role); NONE until the first arrives.
    owner: u16,
    /// What the first fragment was done with (owner role).
    verdict: Option<Verdict>,
    held_head: u16,
    held_tail: u16,
    held: u8,
    /// The byte ranges of the datagram that passed, merged (unordered).
    ranges: [(u32, u32); RANGES],
    ranges_n: u8,
    /// The datagram's length, once its last fragment passed (0 before).
    total: u32,
    /// More separate ranges than are kept: completion is left to the timeout.
    lost_track: bool,
}

/// Separate byte ranges an entry follows: enough for any order of a few
/// fragments, and for the usual reordering of more.
const RANGES: usize = 4;

const EMPTY: Entry = Entry {
    key: FragKey {
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        id: 0,
        proto: 0,
    },
    live: false,
    expires_ms: 0,
    owner: NONE,
    verdict: None,
    held_head: NONE,
    held_tail: NONE,
    held: 0,
    ranges: [(0, 0); RANGES],
    ranges_n: 0,
    total: 0,
    lost_track: false,
};

/// One worker's fragment table and held fragments, sized at start-up.
pub(super) struct FragTable<B> {
    entries: Vec<Entry>,
    held: Vec<Option<B>>,
    next: Vec<u16>,
    free: Vec<u16>,
    live: usize,
    sweep_at: usize,
}

impl<B> FragTable<B> {
    pub(super) fn new() -> Self {
        FragTable {
            entries: vec![EMPTY; ENTRIES],
            held: (0..HOLD_PER_WORKER).map(|_| None).collect(),
            next: vec![NONE; HOLD_PER_WORKER],
            free: (0..HOLD_PER_WORKER as u16).rev().collect(),
            live: 0,
            sweep_at: 0,
        }
    }

    fn slots(key: &FragKey) -> impl Iterator<Item = usize> {
        let start = (key.hash() >> 20) as usize;
        (0..PROBE).map(move |i| (start + i) & (ENTRIES - 1))
    }

    /// The live entry of `key`.
    pub(super) fn find(&self, key: &FragKey, now_ms: u64) -> Option<usize> {
        Self::slots(key).find(|&i| {
            let e = &self.entries[i];
            e.live && e.expires_ms > now_ms && e.key == *key
        })
    }

    /// The entry of `key`, created when there is none; None when the probe window
    /// holds only live entries of other datagrams. An expired entry taken over
    /// gives back what it held through `expired` (counted as timed out).
    pub(super) fn find_or_insert(
        &mut self,
        key: &FragKey,
        now_ms: u64,
        mut expired: impl FnMut(B),
    ) -> Option<usize> {
        if let Some(i) = self.find(key, now_ms) {
            return Some(i);
        }
        let i = Self::slots(key)
            .find(|&i| !self.entries[i].live || self.entries[i].expires_ms <= now_ms)?;
        if self.entries[i].live {
            self.remove(i, &mut expired);
        }
        self.entries[i] = Entry {
            key: *key,
            live: true,
            expires_ms: now_ms + TIMEOUT_MS,
            ..EMPTY
        };
        self.live += 1;
        Some(i)
    }

    pub(super) fn owner(&self, i: usize) -> Option<usize> {
        let o = self.entries[i].owner;
        (o != NONE).then_some(usize::from(o))
    }

    pub(super) fn set_owner(&mut self, i: usize, owner: usize) {
        self.entries[i].owner = owner as u16;
    }

    pub(super) fn verdict(&self, i: usize) -> Option<Verdict> {
        self.entries[i].verdict
    }

    pub(super) fn set_verdict(&mut self, i: usize, v: Verdict) {
        self.entries[i].verdict = Some(v);
    }

    /// Holds `pkt`, a later fragment of entry `i`'s datagram; gives it back when
    /// the datagram's or the worker's share is used up.
    pub(super) fn hold(&mut self, i: usize, pkt: B) -> Result<(), B> {
        let e = &mut self.entries[i];
        if e.held >= HOLD_PER_DATAGRAM {
            return Err(pkt);
        }
        let Some(slot) = self.free.pop() else {
            return Err(pkt);
        };
        self.held[usize::from(slot)] = Some(pkt);
        self.next[usize::from(slot)] = NONE;
        if e.held_tail == NONE {
            e.held_head = slot;
        } else {
            self.next[usize::from(e.held_tail)] = slot;
        }
        e.held_tail = slot;
        e.held += 1;
        Ok(())
    }

    /// Takes the fragments entry `i` holds, in arrival order.
    pub(super) fn take_held(&mut self, i: usize) -> [Option<B>; HOLD_PER_DATAGRAM as usize] {
        let mut out: [Option<B>; HOLD_PER_DATAGRAM as usize] = std::array::from_fn(|_| None);
        let e = &mut self.entries[i];
        let mut slot = e.held_head;
        let mut n = 0;
        while slot != NONE {
            let s = usize::from(slot);
            if n < out.len() {
                out[n] = self.held[s].take();
                n += 1;
            }
            self.free.push(slot);
            slot = self.next[s];
        }
        e.held_head = NONE;
        e.held_tail = NONE;
        e.held = 0;
        out
    }

    /// Notes that `f` passed entry `i`; true when every byte of the datagram has
    /// passed (a duplicate coming later finds no entry: it is held, and dropped
    /// when its time is up, which the receiver never misses).
    pub(super) fn account(&mut self, i: usize, f: &Fragment) -> bool {
        let e = &mut self.entries[i];
        let (mut start, mut end) = (f.offset, f.offset + f.len);
        if !f.more {
            e.total = end;
        }
        let mut kept = [(0, 0); RANGES];
        let mut n = 0;
        for &(a, b) in &e.ranges[..usize::from(e.ranges_n)] {
            if b < start || a > end {
                kept[n] = (a, b);
                n += 1;
            } else {
                start = start.min(a);
                end = end.max(b);
            }
        }
        if n == RANGES {
            e.lost_track = true;
        } else {
            kept[n] = (start, end);
            n += 1;
        }
        e.ranges = kept;
        e.ranges_n = n as u8;
        !e.lost_track && e.total != 0 && n == 1 && kept[0] == (0, e.total) && e.held == 0
    }

    /// Frees entry `i`, giving back what it holds through `drop_pkt`.
    pub(super) fn remove(&mut self, i: usize, mut drop_pkt: impl FnMut(B)) {
        for pkt in self.take_held(i).into_iter().flatten() {
            drop_pkt(pkt);
        }
        if self.entries[i].live {
            self.live -= 1;
        }
        self.entries[i] = EMPTY;
    }

    /// Frees up to [`SWEEP_PER_ROUND`] entries' worth of expired datagrams,
    /// resuming where the last round stopped; held fragments go to `drop_pkt`.
    pub(super) fn sweep(&mut self, now_ms: u64, mut drop_pkt: impl FnMut(B)) {
        if self.live == 0 {
            return;
        }
        for _ in 0..SWEEP_PER_ROUND {
            let i = self.sweep_at;
            self.sweep_at = (i + 1) & (ENTRIES - 1);
            if self.entries[i].live && self.entries[i].expires_ms <= now_ms {
                self.remove(i, &mut drop_pkt);
            }
        }
    }

    /// Frees every entry (shutdown).
    pub(super) fn release_all(&mut self, mut drop_pkt: impl FnMut(B)) {
        for i in 0..ENTRIES {
            if self.entries[i].live {
                self.remove(i, &mut drop_pkt);
            }
        }
    }

    /// Fragments held now.
    #[cfg(test)]
    pub(super) fn held_count(&self) -> usize {
        HOLD_PER_WORKER - self.free.len()
    }

    /// Datagrams tracked now.
    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        self.live
    }
}

impl<P: PacketPool> Pipeline<P> {
    /// A TCP/UDP fragment received on `port` (from a NIC when `steer`, else handed
    /// over by another worker). Gives the packet back when it is not one to track:
    /// to the ports' own addresses (the kernel reassembles), source-routed, an
    /// IPv6 atomic fragment, or not TCP/UDP.
    #[cold]
    #[inline(never)]
    pub(super) fn fragment_input(
        &mut self,
        pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        steer: bool,
    ) -> Option<P::Buf> {
        if !matches!(ip.protocol, IpProtocol::TCP | IpProtocol::UDP) || ip.source_routed {
            return Some(pkt);
        }
        if matches!(
            self.dp.local(ip.addrs.dst()).map(|l| l.kind),
            Some(LocalKind::Interface | LocalKind::Shared)
        ) {
            return Some(pkt);
        }
        let f = match fragment_of(pkt.data(), info, ip) {
            Ok(Some(f)) => f,
            Ok(None) => return Some(pkt),
            Err(reason) => {
                self.discard(pkt, reason);
                return None;
            }
        };
        let home = if self.workers > 1 {
            (f.key.hash() % self.workers as u64) as usize
        } else {
            self.worker
        };
        if home == self.worker {
            self.fragment_at_home(pkt, port, info, ip, &f);
        } else if steer {
            self.hand_over(pkt, port, home);
        } else {
            // Handed over by its home: this worker owns the connection.
            self.fragment_at_owner(pkt, port, info, ip, &f);
        }
        None
    }

    /// The home worker's part: learn the owner from the first fragment, hold later
    /// fragments until then, pass everything on in order.
    fn fragment_at_home(
        &mut self,
        pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        f: &Fragment,
    ) {
        let Some(i) = self.frag_entry(&f.key) else {
            return self.discard(pkt, DropReason::FragmentTableFull);
        };
        if f.offset != 0 {
            match self.frags.owner(i) {
                Some(owner) => self.pass_fragment(pkt, port, info, ip, f, owner),
                None => {
                    let mut pkt = pkt;
                    pkt.set_rx_port(port as u16);
                    if let Err(pkt) = self.frags.hold(i, pkt) {
                        self.discard(pkt, DropReason::FragmentHoldFull);
                    }
                }
            }
            return;
        }
        let owner = if self.workers > 1 {
            self.owner(&pkt, info, ip).unwrap_or(self.worker)
        } else {
            self.worker
        };
        self.frags.set_owner(i, owner);
        let held = self.frags.take_held(i);
        self.pass_fragment(pkt, port, info, ip, f, owner);
        for pkt in held.into_iter().flatten() {
            let port = usize::from(pkt.rx_port());
            // Checked when it arrived; parsed again rather than kept.
            let Ok(info) = parse_frame(pkt.data(), false) else {
                self.discard(pkt, DropReason::FragmentMalformed);
                continue;
            };
            let L3Info::Ip(ip) = info.l3 else {
                self.discard(pkt, DropReason::FragmentMalformed);
                continue;
            };
            let Ok(Some(f)) = fragment_of(pkt.data(), &info, &ip) else {
                self.discard(pkt, DropReason::FragmentMalformed);
                continue;
            };
            self.pass_fragment(pkt, port, &info, &ip, &f, owner);
        }
    }

    /// Sends a fragment on to its owner, this worker or another.
    fn pass_fragment(
        &mut self,
        pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        f: &Fragment,
        owner: usize,
    ) {
        if owner == self.worker {
            return self.fragment_at_owner(pkt, port, info, ip, f);
        }
        if let Some(i) = self.frags.find(&f.key, self.now_ms) {
            if self.frags.account(i, f) {
                self.drop_frag_entry(i);
            }
        }
        self.hand_over(pkt, port, owner);
    }

    /// The owner's part: the first fragment takes the ordinary path (which
    /// remembers its verdict, [`Pipeline::remember_fragment`]); later ones get
    /// that verdict.
    fn fragment_at_owner(
        &mut self,
        pkt: P::Buf,
        port: usize,
        info: &FrameInfo,
        ip: &IpInfo,
        f: &Fragment,
    ) {
        if f.offset == 0 {
            return self.flow_input(pkt, port, info, ip);
        }
        let Some(i) = self.frags.find(&f.key, self.now_ms) else {
            return self.discard(pkt, DropReason::FragmentUnmatched);
        };
        let Some(v) = self.frags.verdict(i) else {
            return self.discard(pkt, DropReason::FragmentUnmatched);
        };
        if self.frags.account(i, f) {
            self.drop_frag_entry(i);
        }
        self.forward_fragment(pkt, info, ip, v);
    }

    /// Remembers what the first fragment of a datagram is forwarded with (called
    /// on the way out of `flow_input`); the reason to drop it when that cannot be.
    /// `translated`: the connection rewrites more than addresses and ports.
    #[cold]
    #[inline(never)]
    pub(super) fn remember_fragment(
        &mut self,
        frame: &[u8],
        info: &FrameInfo,
        ip: &IpInfo,
        action: Action,
        (real_server, dir): (u16, Dir),
        translated: bool,
    ) -> Result<(), DropReason> {
        if translated {
            return Err(DropReason::FragmentUnsupported);
        }
        let Some(f) = fragment_of(frame, info, ip)? else {
            return Ok(());
        };
        let i = self
            .frag_entry(&f.key)
            .ok_or(DropReason::FragmentTableFull)?;
        self.frags.set_verdict(
            i,
            Verdict {
                action,
                real_server,
                dir,
            },
        );
        if self.frags.account(i, &f) {
            self.drop_frag_entry(i);
        }
        Ok(())
    }

    /// A later fragment, rewritten and sent like its first fragment.
    fn forward_fragment(&mut self, mut pkt: P::Buf, info: &FrameInfo, ip: &IpInfo, v: Verdict) {
        let len = info.l3_end() - usize::from(info.l3_offset);
        count_forwarded(&self.stats, v.real_server, v.dir, len as u64);
        match v.action {
            Action::Translate { t, next_hop } => {
                if let Some(mtu) = self.exceeded_mtu(len, next_hop) {
                    return self.refuse_too_big(pkt, info, mtu);
                }
                let (src, dst) = (t.src.map(|(a, _)| a), t.dst.map(|(a, _)| a));
                if let Err(reason) = translate_fragment(pkt.data_mut(), info, ip, src, dst) {
                    return self.discard(pkt, reason);
                }
                pkt.truncate(info.l3_end());
                self.route_out(pkt, next_hop);
            }
            Action::Direct { next_hop } => {
                if let Some(mtu) = self.exceeded_mtu(len, next_hop) {
                    return self.refuse_too_big(pkt, info, mtu);
                }
                pkt.truncate(info.l3_end());
                self.route_out(pkt, next_hop);
            }
            Action::Encapsulate { next_hop } => self.encapsulate(pkt, info, next_hop),
        }
    }

    /// The entry of `key`, made when new (an expired one taken over counts its
    /// held fragments as timed out).
    fn frag_entry(&mut self, key: &FragKey) -> Option<usize> {
        let Self {
            frags,
            stats,
            garbage,
            now_ms,
            ..
        } = self;
        frags.find_or_insert(key, *now_ms, |pkt| {
            stats.count_drop(DropReason::FragmentTimeout, 1);
            if garbage.len() < garbage.capacity() {
                garbage.push(pkt);
            }
        })
    }

    fn drop_frag_entry(&mut self, i: usize) {
        let Self {
            frags,
            stats,
            garbage,
            ..
        } = self;
        // Only duplicates can still be held once the datagram has passed whole.
        frags.remove(i, |pkt| {
            stats.count_drop(DropReason::FragmentTimeout, 1);
            if garbage.len() < garbage.capacity() {
                garbage.push(pkt);
            }
        });
    }

    /// Drops the fragments held past their timeout (housekeeping).
    pub(super) fn expire_fragments(&mut self) {
        let Self {
            frags,
            stats,
            garbage,
            now_ms,
            ..
        } = self;
        frags.sweep(*now_ms, |pkt| {
            stats.count_drop(DropReason::FragmentTimeout, 1);
            if garbage.len() < garbage.capacity() {
                garbage.push(pkt);
            }
        });
    }

    /// Gives every held fragment back (shutdown).
    pub(super) fn release_fragments(&mut self) {
        let Self {
            frags,
            stats,
            garbage,
            ..
        } = self;
        frags.release_all(|pkt| {
            stats.count_drop(DropReason::FragmentTimeout, 1);
            if garbage.len() < garbage.capacity() {
                garbage.push(pkt);
            }
        });
    }
}
