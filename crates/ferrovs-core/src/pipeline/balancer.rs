//! One worker's load-balancing state: its connection tables, persistence
//! templates, and a scheduler per service with this worker's view of every real
//! server (weight, active and inactive connections).
//!
//! Nothing here is shared: each worker balances its own share of the flows, as
//! DPVS does per lcore, so least-connection schedulers count per worker.

use super::lports::LocalPorts;
use super::synproxy::OwedReset;
use crate::access::{worker_share, SourceLimiter};
use crate::conn::xlate;
use crate::conn::{
    Clock, Conn, ConnError, ConnId, ConnState, ConnTable, Dir, Endpoint, Family, FlowHasher,
    FlowKey, Installed, Mode, NewConn, PersistTable, PreparedConn, Proto, RecordPos, SeqAdj,
    StateChange, TcpState, TemplateId, Timeouts,
};
use crate::sched::{Candidate, FlowHint, SchedOptions, Scheduler};
use crate::service::{Service, Services, MAX_SERVICES};
use crate::stats::{DropReason, WorkerStats};
use crate::sync::{SyncConn, SyncProducer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Connection and template tables of one address family.
pub struct FamilyTables<A: Family> {
    pub conns: ConnTable<A>,
    pub persist: PersistTable<A>,
}

/// Selects the tables of one address family.
pub trait Tables: Family {
    fn select<'a>(
        v4: &'a mut FamilyTables<Ipv4Addr>,
        v6: &'a mut FamilyTables<Ipv6Addr>,
    ) -> &'a mut FamilyTables<Self>;
    fn select_ref<'a>(
        v4: &'a FamilyTables<Ipv4Addr>,
        v6: &'a FamilyTables<Ipv6Addr>,
    ) -> &'a FamilyTables<Self>;
}

impl Tables for Ipv4Addr {
    #[inline(always)]
    fn select<'a>(
        v4: &'a mut FamilyTables<Ipv4Addr>,
        _: &'a mut FamilyTables<Ipv6Addr>,
    ) -> &'a mut FamilyTables<Self> {
        v4
    }
    #[inline(always)]
    fn select_ref<'a>(
        v4: &'a FamilyTables<Ipv4Addr>,
        _: &'a FamilyTables<Ipv6Addr>,
    ) -> &'a FamilyTables<Self> {
        v4
    }
}

impl Tables for Ipv6Addr {
    #[inline(always)]
    fn select<'a>(
        _: &'a mut FamilyTables<Ipv4Addr>,
        v6: &'a mut FamilyTables<Ipv6Addr>,
    ) -> &'a mut FamilyTables<Self> {
        v6
    }
    #[inline(always)]
    fn select_ref<'a>(
        _: &'a FamilyTables<Ipv4Addr>,
        v6: &'a FamilyTables<Ipv6Addr>,
    ) -> &'a FamilyTables<Self> {
        v6
    }
}

/// A service's scheduler and this worker's view of its real servers.
struct ServiceState {
    sched: Option<Scheduler>,
    /// The options `sched` was built with.
    options: SchedOptions,
    /// The service's real servers, then its sorry server if it has one.
    candidates: Vec<Candidate>,
    /// How many of `candidates` the scheduler chooses from: all but the sorry
    /// server.
    pool: usize,
    /// FULLNAT: the local address to try first for the next connection.
    next_local: usize,
    /// This worker's part of the service's `new_connections_per_source` limit.
    limiter: Option<SourceLimiter>,
}

/// Where a real-server slot lives: service slot and index in its candidates.
#[derive(Debug, Clone, Copy)]
struct RsPos {
    service: u16,
    index: u16,
}

/// Sizes of one worker's tables.
#[derive(Debug, Clone, Copy)]
pub struct BalancerLimits {
    /// Connections per address family on this worker.
    pub conns_v4: usize,
    /// IPv6 connections on this worker; [`BalancerLimits::for_config`] gives none
    /// when no service is IPv6.
    pub conns_v6: usize,
    /// Persistence templates per family.
    pub templates: usize,
    /// This member's share of the FULLNAT local ports in a sync cluster: (member,
    /// members); (0, 1) alone.
    pub local_port_share: (usize, usize),
    /// Keep a sequence-number translation record per connection slot (SYN proxy,
    /// Proxy Protocol): 16 bytes a connection.
    pub translation: bool,
}

impl BalancerLimits {
    /// Splits `connections.max` over `workers`; IPv6 tables only when an IPv6
    /// service exists, templates only when a service uses persistence.
    pub fn for_config(max: usize, workers: usize, services: &Services) -> BalancerLimits {
        let per_worker = max.div_ceil(workers.max(1));
        BalancerLimits {
            conns_v4: per_worker,
            conns_v6: if services.any_ipv6() { per_worker } else { 0 },
            templates: if services.any_persistence() {
                per_worker
            } else {
                0
            },
            local_port_share: (0, 1),
            translation: services.any_translation(),
        }
    }
}

/// This worker's view of every service's real servers, indexed by slot.
struct Views {
    services: Vec<Option<ServiceState>>,
    rs_pos: Vec<Option<RsPos>>,
}

impl Views {
    fn candidate(&mut self, rs_slot: u16) -> Option<&mut Candidate> {
        let pos = (*self.rs_pos.get(usize::from(rs_slot))?)?;
        self.services
            .get_mut(usize::from(pos.service))?
            .as_mut()?
            .candidates
            .get_mut(usize::from(pos.index))
    }

    fn service(&mut self, slot: u16) -> Result<&mut ServiceState, DropReason> {
        self.services
            .get_mut(usize::from(slot))
            .and_then(Option::as_mut)
            .ok_or(DropReason::NoService)
    }

    /// A connection to `rs_slot` moved between active and inactive.
    fn count_state_change(&mut self, rs_slot: u16, change: StateChange, stats: &WorkerStats) {
        let Some(c) = self.candidate(rs_slot) else {
            return;
        };
        if change.activated() {
            c.active += 1;
            c.inactive = c.inactive.saturating_sub(1);
        } else {
            c.active = c.active.saturating_sub(1);
            c.inactive += 1;
        }
        let rs = stats.real_server(rs_slot);
        rs.active.set(u64::from(c.active));
        rs.inactive.set(u64::from(c.inactive));
    }

    /// A connection to `rs_slot` is gone.
    fn count_removal(&mut self, rs_slot: u16, was_active: bool, stats: &WorkerStats) {
        let Some(c) = self.candidate(rs_slot) else {
            return;
        };
        let rs = stats.real_server(rs_slot);
        if was_active {
            c.active = c.active.saturating_sub(1);
            rs.active.set(u64::from(c.active));
        } else {
            c.inactive = c.inactive.saturating_sub(1);
            rs.inactive.set(u64::from(c.inactive));
        }
        c.unbind();
    }
}

/// One worker's load-balancing state.
pub struct Balancer {
    v4: FamilyTables<Ipv4Addr>,
    v6: FamilyTables<Ipv6Addr>,
    views: Views,
    lports: LocalPorts,
    /// Where the records of connection events go, with connection sync.
    sync: Option<SyncProducer>,
    /// This worker's index and the number of workers: per-worker shares of the
    /// real servers' connection limits and of per-source rates.
    worker: usize,
    workers: usize,
    /// A service is (or was, since start) NAT64 (IPv6 VIP, IPv4 local
    /// addresses): an IPv4 packet that matches no IPv4 connection may be a reply
    /// of an IPv6 one.
    nat64: bool,
}

/// Why a sync record was not installed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncRefusal {
    /// No service here at the record's VIP, port and protocol, or one of another
    /// mode.
    NoService,
    /// The service has no such real server here.
    NoRealServer,
    /// An address of the record's family is not the table's.
    Family,
    /// A local endpoint other than the client's in a mode where the real server
    /// sees the client (NAT, DR, TUNNEL).
    Local,
    /// The table holds another connection with the key, or is full.
    Table(ConnError),
}

impl Balancer {
    /// Allocates every table up front for worker `worker` of `workers`.
    pub fn new(
        services: &Services,
        limits: BalancerLimits,
        timeouts: &Timeouts,
        worker: usize,
        workers: usize,
    ) -> Result<Balancer, ConnError> {
        Self::with_hasher(
            services,
            limits,
            timeouts,
            worker,
            workers,
            FlowHasher::random(),
        )
    }

    /// [`Balancer::new`] with a given hasher, whose seed also orders the local
    /// ports: a fixed seed makes two balancers behave alike (tests).
    pub fn with_hasher(
        services: &Services,
        limits: BalancerLimits,
        timeouts: &Timeouts,
        worker: usize,
        workers: usize,
        hasher: FlowHasher,
    ) -> Result<Balancer, ConnError> {
        let v6_templates = if limits.conns_v6 > 0 {
            limits.templates
        } else {
            0
        };
        let mut b = Balancer {
            v4: FamilyTables {
                conns: ConnTable::with_hasher(limits.conns_v4, timeouts, hasher.clone())?,
                persist: PersistTable::with_hasher(limits.templates, hasher.clone())
                    .map_err(|_| ConnError::OutOfMemory)?,
            },
            v6: FamilyTables {
                conns: ConnTable::with_hasher(limits.conns_v6, timeouts, hasher.clone())?,
                persist: PersistTable::with_hasher(v6_templates, hasher.clone())
                    .map_err(|_| ConnError::OutOfMemory)?,
            },
            views: Views {
                services: Vec::new(),
                rs_pos: Vec::new(),
            },
            sync: None,
            worker,
            workers,
            nat64: false,
            lports: LocalPorts::with_share(
                services.iter().flat_map(|s| s.local_addrs.iter().copied()),
                worker,
                workers,
                limits.local_port_share,
                hasher.seed(),
            ),
        };
        if limits.translation {
            b.v4.conns.enable_translation()?;
            b.v6.conns.enable_translation()?;
        }
        b.update_services(services, &WorkerStats::default());
        Ok(b)
    }

    /// Takes a new set of services, keeping what stays: a service keeps its
    /// scheduler state (rebuilt only when its servers or weights changed), a real
    /// server its active/inactive counts; health comes from the new set. Runs
    /// between bursts; may allocate (it is not the packet path).
    pub fn update_services(&mut self, services: &Services, stats: &WorkerStats) {
        let views = &mut self.views;
        let mut old_services = std::mem::take(&mut views.services);
        let old_pos = std::mem::take(&mut views.rs_pos);
        // The server as this worker saw it: its counts and overload carry over.
        let previous = |slot: u16, old: &[Option<ServiceState>]| -> Option<Candidate> {
            old_pos
                .get(usize::from(slot))
                .copied()
                .flatten()
                .and_then(|p| {
                    let st = old.get(usize::from(p.service))?.as_ref()?;
                    st.candidates.get(usize::from(p.index)).copied()
                })
        };
        let (worker, workers) = (self.worker, self.workers);
        views.rs_pos = vec![None; services.real_server_slots()];
        views.services = (0..MAX_SERVICES).map(|_| None).collect();
        for s in services.iter() {
            let candidates: Vec<Candidate> = s
                .real_servers
                .iter()
                .map(|r| {
                    let old = previous(r.slot, &old_services);
                    let (active, inactive) = old.map_or((0, 0), |c| (c.active, c.inactive));
                    if active == 0 && inactive == 0 {
                        // A slot new to this worker (or reused): start its gauges at 0.
                        let c = stats.real_server(r.slot);
                        c.active.set(0);
                        c.inactive.set(0);
                    }
                    // Each worker counts its own connections: it holds its share of
                    // the limits. A share of none keeps the server from this worker.
                    let max = worker_share(r.max_connections, worker, workers);
                    let min = match worker_share(r.min_connections, worker, workers) {
                        0 if r.min_connections > 0 => 1,
                        min => min,
                    };
                    let mut c = Candidate {
                        active,
                        inactive,
                        available: r.up && !(r.max_connections > 0 && max == 0),
                        ..old.unwrap_or(Candidate::new(r.id(), r.weight))
                    };
                    c.id = r.id();
                    c.weight = r.weight;
                    c.set_thresholds(max, min);
                    c
                })
                .collect();
            for (i, r) in s.real_servers.iter().enumerate() {
                views.rs_pos[usize::from(r.slot)] = Some(RsPos {
                    service: s.slot,
                    index: i as u16,
                });
            }
            let old = old_services
                .get_mut(usize::from(s.slot))
                .and_then(Option::take);
            // The sorry server (last, if any) is never the scheduler's to choose.
            let pool = s.pool().len();
            let state = match old {
                Some(mut st)
                    if st.sched.as_ref().map(Scheduler::kind) == Some(s.scheduler)
                        && st.options == s.sched_options =>
                {
                    let same_set = st.pool == pool
                        && st.candidates[..st.pool]
                            .iter()
                            .zip(&candidates[..pool])
                            .all(|(a, b)| a.id == b.id && a.weight == b.weight);
                    if !same_set {
                        if let Some(sched) = st.sched.as_mut() {
                            if sched.rebuild(&candidates[..pool]).is_err() {
                                st.sched = None;
                            }
                        }
                    }
                    st.candidates = candidates;
                    st.pool = pool;
                    st
                }
                Some(st) => ServiceState {
                    sched: Scheduler::new(s.scheduler, &candidates[..pool], &s.sched_options).ok(),
                    options: s.sched_options,
                    candidates,
                    pool,
                    next_local: st.next_local,
                    limiter: st.limiter,
                },
                None => ServiceState {
                    sched: Scheduler::new(s.scheduler, &candidates[..pool], &s.sched_options).ok(),
                    options: s.sched_options,
                    candidates,
                    pool,
                    next_local: 0,
                    limiter: None,
                },
            };
            let mut state = state;
            state.limiter = match s.access.rate {
                Some(rate) => {
                    // A persistent service's clients each reach one worker (their
                    // network's); others spread over all by client port.
                    let share = if s.persistence_ms > 0 {
                        1
                    } else {
                        workers as u32
                    };
                    match state.limiter.take() {
                        Some(l) if l.is_for(rate, share) => Some(l),
                        _ => Some(SourceLimiter::new(rate, share)),
                    }
                }
                None => None,
            };
            views.services[usize::from(s.slot)] = Some(state);
        }
        self.lports
            .add_addrs(services.iter().flat_map(|s| s.local_addrs.iter().copied()));
        // Sticky: connections of a NAT64 service removed by a reload live on, and
        // their replies must still be found.
        self.nat64 = self.nat64 || services.iter().any(Service::is_nat64);
    }

    /// Whether a service is NAT64, so that IPv6 connections may have IPv4 replies.
    #[inline]
    pub fn nat64(&self) -> bool {
        self.nat64
    }

    /// New connection timeouts (existing connections take them at their next packet).
    pub fn set_timeouts(&mut self, timeouts: &Timeouts) {
        self.v4.conns.set_timeouts(timeouts);
        self.v6.conns.set_timeouts(timeouts);
    }

    /// Appends the connections of one family in slots `from..from + count` that
    /// `keep` accepts to `out` (control path: `ferrovs ctl conns`). Returns where the
    /// next step starts, or None when the table is done.
    pub fn scan<A: Tables>(
        &self,
        from: usize,
        count: usize,
        mut keep: impl FnMut(&Conn<A>) -> bool,
        mut out: impl FnMut(&Conn<A>),
    ) -> Option<usize> {
        A::select_ref(&self.v4, &self.v6)
            .conns
            .scan(from, count, |c| {
                if keep(c) {
                    out(c);
                }
            })
    }

    /// Hands a record of every connection that opens or changes state to
    /// `producer` (connection sync).
    pub fn set_sync(&mut self, producer: SyncProducer) {
        self.sync = Some(producer);
    }

    /// Installs a connection another member carries, for service `svc` (the one
    /// at the record's VIP, port and protocol). It counts in the real server's
    /// active or inactive connections like any other, and is never sent back.
    pub fn install<A: Tables>(
        &mut self,
        svc: &Service,
        rec: &SyncConn,
        now: u64,
        stats: &WorkerStats,
    ) -> Result<(), SyncRefusal> {
        if svc.mode != rec.mode || svc.proto != rec.proto {
            return Err(SyncRefusal::NoService);
        }
        // NAT64 (an IPv6 record of an IPv6 VIP served over IPv4): the local
        // address and the real server are IPv4, carried IPv4-mapped as the IPv6
        // table holds them. No other endpoint, and no other service's, may be.
        let nat64 = svc.is_nat64();
        let mapped = |ip: std::net::IpAddr| ip.to_canonical() != ip;
        if mapped(rec.client.0)
            || mapped(rec.vip.0)
            || mapped(rec.local.0) != nat64
            || mapped(rec.real.0) != nat64
        {
            return Err(SyncRefusal::Family);
        }
        if rec.mode != Mode::FullNat && !nat64 && rec.local != rec.client {
            return Err(SyncRefusal::Local);
        }
        let index = svc
            .real_servers
            .iter()
            .position(|r| r.serves(rec.real.0.to_canonical(), rec.real.1, rec.vip.1))
            .ok_or(SyncRefusal::NoRealServer)?;
        let rs_slot = svc.real_servers[index].slot;
        let ep = |(addr, port): (std::net::IpAddr, u16)| {
            A::from_ip(addr)
                .map(|a| Endpoint::new(a, port))
                .ok_or(SyncRefusal::Family)
        };
        let new = NewConn {
            proto: rec.proto,
            mode: rec.mode,
            client: ep(rec.client)?,
            vip: ep(rec.vip)?,
            local: ep(rec.local)?,
            real: ep(rec.real)?,
            service: svc.slot,
            real_server: rs_slot,
            template: None,
        };
        let Balancer { v4, v6, views, .. } = self;
        let conns = &mut A::select(v4, v6).conns;
        // Never longer than this member's own timeout for the state.
        let own = conns.timeouts().for_state(rec.state).as_millis() as u64;
        let timeout = u64::from(rec.timeout_ms).min(own);
        let installed = conns
            .install(new, rec.state, now.saturating_add(timeout), now)
            .map_err(SyncRefusal::Table)?;
        let active = rec.state.is_active();
        match installed {
            Installed::New(_) => {
                if let Ok(st) = views.service(svc.slot) {
                    let c = &mut st.candidates[index];
                    let gauges = stats.real_server(rs_slot);
                    if active {
                        c.active += 1;
                        gauges.active.set(u64::from(c.active));
                    } else {
                        c.inactive += 1;
                        gauges.inactive.set(u64::from(c.inactive));
                    }
                    c.bind();
                }
            }
            Installed::Updated { previous, .. } if previous.is_active() != active => {
                let change = StateChange {
                    from: previous,
                    to: rec.state,
                };
                views.count_state_change(rs_slot, change, stats);
            }
            Installed::Updated { .. } => {}
        }
        Ok(())
    }

    /// Live connections of both families.
    pub fn len(&self) -> usize {
        self.v4.conns.len() + self.v6.conns.len()
    }

    /// True when neither family's table holds a connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connection table of one family, for lookups with a precomputed hash and
    /// their prefetch hints.
    #[inline]
    pub fn conns<A: Tables>(&self) -> &ConnTable<A> {
        &A::select_ref(&self.v4, &self.v6).conns
    }

    /// The connection a packet belongs to, and its direction.
    #[inline]
    pub fn lookup<A: Tables>(&self, key: &FlowKey<A>) -> Option<(ConnId, Dir)> {
        A::select_ref(&self.v4, &self.v6).conns.lookup(key)
    }

    /// A copy of connection `id`.
    #[inline]
    pub fn get<A: Tables>(&self, id: ConnId) -> Option<Conn<A>> {
        A::select_ref(&self.v4, &self.v6).conns.get(id)
    }

    /// A copy of connection `id`'s sequence-number translation, if it has one.
    #[inline]
    pub fn translation<A: Tables>(&self, id: ConnId) -> Option<SeqAdj> {
        A::select_ref(&self.v4, &self.v6)
            .conns
            .translation(id)
            .copied()
    }

    /// The connection table of one family, to change a connection's translation
    /// or state.
    #[inline]
    pub fn conns_mut<A: Tables>(&mut self) -> &mut ConnTable<A> {
        &mut A::select(&mut self.v4, &mut self.v6).conns
    }

    /// IPVS `conn_reuse_mode`: a client SYN that finds its 5-tuple in TIME_WAIT or
    /// CLOSE (the client reused its port) starts a new connection: the old one is
    /// removed here so the caller schedules afresh. Returns true when it removed it.
    pub fn reuse_closed<A: Tables>(&mut self, id: ConnId, now: u64, stats: &WorkerStats) -> bool {
        let Balancer {
            v4,
            v6,
            views,
            lports,
            ..
        } = self;
        let FamilyTables { conns, persist } = A::select(v4, v6);
        let closed = conns.get(id).is_some_and(|c| {
            matches!(
                c.state(),
                ConnState::Tcp(TcpState::TimeWait | TcpState::Close)
            )
        });
        if !closed {
            return false;
        }
        let Ok(conn) = conns.remove(id) else {
            return false;
        };
        release(&conn, persist, lports, views, now, stats);
        true
    }

    /// Advances the connection's state for a packet and keeps the per-server
    /// active/inactive counts in step. Returns the connection (a copy).
    #[inline]
    pub fn on_packet<A: Tables>(
        &mut self,
        id: ConnId,
        dir: Dir,
        tcp_flags: u8,
        now: u64,
        stats: &WorkerStats,
    ) -> Option<Conn<A>> {
        let t = A::select(&mut self.v4, &mut self.v6);
        let change = t.conns.on_packet(id, dir, tcp_flags, now).ok()?;
        let conn = t.conns.get(id)?;
        if change.from != change.to {
            self.state_changed(&conn, change, now, stats);
        }
        Some(conn)
    }

    /// The connection table's clock at `now`, for a burst's
    /// [`Balancer::on_packet_record`] calls.
    #[inline]
    pub fn clock<A: Tables>(&mut self, now: u64) -> Clock {
        A::select(&mut self.v4, &mut self.v6).conns.clock(now)
    }

    /// [`Balancer::on_packet`] for the burst path, from the packet's record: a
    /// packet that leaves the state as it was reads and writes nothing but its
    /// record. False when the record names no live connection.
    #[inline(always)]
    pub fn on_packet_record<A: Tables>(
        &mut self,
        pos: RecordPos,
        tcp_flags: u8,
        clock: Clock,
        stats: &WorkerStats,
    ) -> bool {
        let t = A::select(&mut self.v4, &mut self.v6);
        match t.conns.on_packet_record(pos, tcp_flags, clock) {
            // Most packets leave the state as it was (always for UDP): nothing to count.
            Ok(None) => true,
            Ok(Some(change)) => {
                self.record_state_changed::<A>(pos, change, clock.now(), stats);
                true
            }
            Err(_) => false,
        }
    }

    #[cold]
    #[inline(never)]
    fn record_state_changed<A: Tables>(
        &mut self,
        pos: RecordPos,
        change: StateChange,
        now: u64,
        stats: &WorkerStats,
    ) {
        let conns = &A::select_ref(&self.v4, &self.v6).conns;
        let Some(real_server) = conns.record(pos).map(|r| r.real_server()) else {
            return;
        };
        self.count_state_change(real_server, change, stats);
        // The whole connection only when the sync peers want it.
        if self.sync.is_some() && synced(change.to) {
            let conns = &A::select_ref(&self.v4, &self.v6).conns;
            if let Some(conn) = conns.id_of(pos).and_then(|id| conns.get(id)) {
                self.sync_state(&conn, change, now, stats);
            }
        }
    }

    /// Counts a connection's state change and sends it to the sync peers when
    /// they want it.
    fn state_changed<A: Tables>(
        &mut self,
        conn: &Conn<A>,
        change: StateChange,
        now: u64,
        stats: &WorkerStats,
    ) {
        self.count_state_change(conn.real_server(), change, stats);
        self.sync_state(conn, change, now, stats);
    }

    /// The per-server counts a state change moves.
    fn count_state_change(&mut self, real_server: u16, change: StateChange, stats: &WorkerStats) {
        if change.activated() || change.deactivated() {
            self.views.count_state_change(real_server, change, stats);
        }
        count_handshake(real_server, change, stats);
    }

    /// Sends a connection's new state to the sync peers when they want it.
    fn sync_state<A: Tables>(
        &mut self,
        conn: &Conn<A>,
        change: StateChange,
        now: u64,
        stats: &WorkerStats,
    ) {
        // A translated connection cannot continue on another member: its
        // translation is not in the record. NAT64's is in its addresses.
        let untranslated = conn.xlate() & !xlate::flag::NAT64 == 0;
        if let (Some(out), true) = (&mut self.sync, synced(change.to) && untranslated) {
            send_record(out, conn, now, stats);
        }
    }

    /// Schedules a new connection from `client` to `svc` (reached at `vip`) and
    /// inserts it, inbound state NONE/UDP. The source the real server will see is
    /// the client itself, except in FULLNAT where a local address and port of this
    /// worker is taken. The caller then runs [`Balancer::on_packet`] for the first
    /// packet.
    pub fn connect<A: Tables>(
        &mut self,
        svc: &Service,
        proto: Proto,
        client: Endpoint<A>,
        vip: Endpoint<A>,
        now: u64,
        stats: &WorkerStats,
    ) -> Result<ConnId, DropReason> {
        let opening = self.connect_begin(svc, proto, client, vip, None, now)?;
        self.connect_finish(&opening, now, stats)
    }

    /// One-packet scheduling (IPVS `--ops`): the place in `svc`'s list of the
    /// real server a datagram from `client` to `vip` goes to. Nothing is kept:
    /// like IPVS's one-packet connections, freed as soon as their packet is
    /// sent, the datagram counts as a connection of the server (and of the
    /// source's rate), never in its active or inactive connections.
    pub fn schedule_datagram(
        &mut self,
        svc: &Service,
        client: (IpAddr, u16),
        vip: (IpAddr, u16),
        now: u64,
    ) -> Result<usize, DropReason> {
        let st = self.views.service(svc.slot)?;
        if let Some(limiter) = st.limiter.as_mut() {
            if !limiter.admit(client.0, now) {
                return Err(DropReason::SourceRateLimited);
            }
        }
        if svc.sorry_active {
            return Ok(svc.real_servers.len() - 1);
        }
        let hint = FlowHint {
            src: client.0,
            src_port: client.1,
            dst: vip.0,
            dst_port: vip.1,
            now_ms: now,
        };
        let pool = &st.candidates[..st.pool];
        let sched = st.sched.as_mut().ok_or(DropReason::NoRealServer)?;
        sched
            .pick(pool, &hint)
            .ok_or_else(|| no_server_reason(pool))
    }

    /// The first half of [`Balancer::connect`]: schedules the connection, takes
    /// what it holds (local port, persistence template, its place in the real
    /// server's count, which the next scheduling decision sees) and requests the
    /// table lines its insertion touches. [`Balancer::connect_finish`] inserts
    /// it; a caller opening several connections begins them all first, so that
    /// those lines arrive together.
    ///
    /// `first_tcp_flags`, the flags of the packet that opens it, for a caller that
    /// begins other connections before finishing this one: the server's count
    /// then takes the connection as its first packet will leave it (a SYN makes
    /// it active), so that least-connection schedulers decide in between as they
    /// would had it been finished and its packet handled. The caller hands that
    /// packet to [`Balancer::on_packet`] right after finishing: the
    /// connection's timer is armed at the deadline the packet will set.
    pub fn connect_begin<A: Tables>(
        &mut self,
        svc: &Service,
        proto: Proto,
        client: Endpoint<A>,
        vip: Endpoint<A>,
        first_tcp_flags: Option<u8>,
        now: u64,
    ) -> Result<Opening<A>, DropReason> {
        let Balancer {
            v4,
            v6,
            views,
            lports,
            ..
        } = self;
        let tables = A::select(v4, v6);
        if let Some(limiter) = views.service(svc.slot)?.limiter.as_mut() {
            if !limiter.admit(client.addr.into_ip(), now) {
                return Err(DropReason::SourceRateLimited);
            }
        }
        // While the sorry server stands in for the pool, clients are neither held to
        // a real server nor made to stick to it: when servers come back, new
        // connections go to them.
        let persist = svc.persistence_ms > 0 && !svc.sorry_active;
        let mut template: Option<TemplateId> = None;
        let mut chosen = None;

        if persist {
            let hit = tables
                .persist
                .lookup(svc.slot, client.addr, svc.persistence_netmask, now);
            if let Some((tid, rs_slot)) = hit {
                let usable = svc
                    .real_servers
                    .iter()
                    .position(|r| r.slot == rs_slot)
                    .filter(|&i| {
                        views
                            .service(svc.slot)
                            .is_ok_and(|st| st.candidates.get(i).is_some_and(Candidate::takes_new))
                    });
                match usable {
                    Some(i) => {
                        chosen = Some(i);
                        template = Some(tid);
                    }
                    // The server went away or stopped taking connections: like
                    // ip_vs_check_template, forget the template and schedule anew.
                    None => {
                        let _ = tables.persist.invalidate(tid, now);
                    }
                }
            }
        }

        let index = match chosen {
            Some(i) => i,
            // keepalived: quorum lost, the sorry server (last) replaces the pool.
            None if svc.sorry_active => svc.real_servers.len() - 1,
            None => {
                let st = views.service(svc.slot)?;
                let hint = FlowHint {
                    src: client.addr.into_ip(),
                    src_port: client.port,
                    dst: vip.addr.into_ip(),
                    dst_port: vip.port,
                    now_ms: now,
                };
                let pool = &st.candidates[..st.pool];
                let sched = st.sched.as_mut().ok_or(DropReason::NoRealServer)?;
                sched
                    .pick(pool, &hint)
                    .ok_or_else(|| no_server_reason(pool))?
            }
        };
        let rs = &svc.real_servers[index];
        // NAT64: an IPv4 server of an IPv6 service, held IPv4-mapped.
        let real = Endpoint::new(
            A::from_ip_or_mapped(rs.addr).ok_or(DropReason::NoRealServer)?,
            rs.port_for(vip.port),
        );
        let local = if svc.mode == Mode::FullNat {
            let next = &mut views.service(svc.slot)?.next_local;
            let (addr, port) = lports
                .take(&svc.local_addrs, next)
                .ok_or(DropReason::LocalPortExhausted)?;
            Endpoint::new(
                A::from_ip_or_mapped(addr).ok_or(DropReason::LocalPortExhausted)?,
                port,
            )
        } else {
            client
        };

        if persist && template.is_none() {
            // A full template table only costs stickiness, never the connection.
            template = tables
                .persist
                .insert(
                    svc.slot,
                    client.addr,
                    svc.persistence_netmask,
                    rs.slot,
                    Duration::from_millis(svc.persistence_ms),
                    now,
                )
                .ok();
        }
        let new = NewConn {
            proto,
            mode: svc.mode,
            client,
            vip,
            local,
            real,
            service: svc.slot,
            real_server: rs.slot,
            template,
        };
        let opening = Opening {
            conn: tables.conns.prepare_insert(new, first_tcp_flags),
            candidate: index,
            counted_active: first_tcp_flags.is_some_and(|f| new.first_state(f).is_active()),
        };
        match views.service(svc.slot) {
            Ok(st) => {
                let c = &mut st.candidates[index];
                if opening.counted_active {
                    c.active += 1;
                } else {
                    c.inactive += 1;
                }
                c.bind();
            }
            Err(reason) => {
                give_back(&opening, tables, lports, None, now);
                return Err(reason);
            }
        }
        Ok(opening)
    }

    /// Inserts a connection from [`Balancer::connect_begin`] (of this burst:
    /// nothing may have changed the services in between). On failure everything
    /// it held is given back.
    pub fn connect_finish<A: Tables>(
        &mut self,
        opening: &Opening<A>,
        now: u64,
        stats: &WorkerStats,
    ) -> Result<ConnId, DropReason> {
        let Balancer {
            v4,
            v6,
            views,
            lports,
            ..
        } = self;
        let tables = A::select(v4, v6);
        let new = opening.conn.new_conn();
        let st = views.service(new.service)?;
        let id = match tables.conns.insert_prepared(&opening.conn, now) {
            Ok(id) => id,
            Err(e) => {
                give_back(opening, tables, lports, Some((st, stats)), now);
                return Err(match e {
                    ConnError::InboundKeyExists | ConnError::OutboundKeyExists => {
                        DropReason::ConnConflict
                    }
                    _ => DropReason::ConnTableFull,
                });
            }
        };
        if let Some(t) = new.template {
            let _ = tables.persist.hold(t);
        }
        let c = &mut st.candidates[opening.candidate];
        if opening.counted_active {
            // Inactive as inserted; its first packet, handled next, activates it.
            c.active = c.active.saturating_sub(1);
            c.inactive += 1;
        }
        let inactive = c.inactive;
        let counters = stats.real_server(new.real_server);
        counters.conns.inc();
        counters.inactive.set(u64::from(inactive));
        // A TCP connection is sent when its first packet moves it out of NONE; a
        // UDP flow's state never moves, so it is sent as it opens.
        if let (Some(out), Proto::Udp) = (&mut self.sync, new.proto) {
            if let Some(conn) = tables.conns.get(id) {
                send_record(out, &conn, now, stats);
            }
        }
        // Prepared with its first packet's flags, the connection was inserted in
        // the state that packet leaves it in: the change is counted here, and the
        // caller forwards the packet without accounting it again.
        let change = opening.conn.first_change();
        if change.from != change.to {
            self.count_state_change(new.real_server, change, stats);
            if self.sync.is_some() && synced(change.to) {
                let conns = &A::select_ref(&self.v4, &self.v6).conns;
                if let Some(conn) = conns.get(id) {
                    self.sync_state(&conn, change, now, stats);
                }
            }
        }
        Ok(id)
    }

    /// Removes connections and templates whose time is up (at most `budget` of each)
    /// and updates the per-server counts. Returns how many connections went.
    pub fn expire(&mut self, now: u64, budget: usize, stats: &WorkerStats) -> usize {
        self.expire_reporting(now, budget, stats, &mut Vec::new())
    }

    /// [`Balancer::expire`], adding to `owed` (up to its capacity) the resets
    /// owed to the clients of SYN-proxied connections whose real server never
    /// answered.
    pub(super) fn expire_reporting(
        &mut self,
        now: u64,
        budget: usize,
        stats: &WorkerStats,
        owed: &mut Vec<OwedReset>,
    ) -> usize {
        self.expire_family::<Ipv4Addr>(now, budget, stats, owed)
            + self.expire_family::<Ipv6Addr>(now, budget, stats, owed)
    }

    fn expire_family<A: Tables>(
        &mut self,
        now: u64,
        budget: usize,
        stats: &WorkerStats,
        owed: &mut Vec<OwedReset>,
    ) -> usize {
        let Balancer {
            v4,
            v6,
            views,
            lports,
            ..
        } = self;
        let FamilyTables { conns, persist } = A::select(v4, v6);
        let first = owed.len();
        let removed = conns.expire(now, budget, |id, conn| {
            if conn.xlate() & xlate::flag::SLOW != 0 && owed.len() < owed.capacity() {
                let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
                owed.push(OwedReset {
                    id,
                    client: ep(conn.client()),
                    vip: ep(conn.vip()),
                    seq: 0,
                    ack: 0,
                });
            }
            release(conn, persist, lports, views, now, stats);
        });
        persist.expire(now, budget, |_, _| {});
        // Only those still waiting for their server are owed a reset; the
        // records stay in the slots until they are reused.
        let mut i = first;
        while i < owed.len() {
            match conns.released_translation(owed[i].id) {
                Some(a) if a.has(xlate::adj_flag::SYN_PENDING) => {
                    owed[i].seq = a.out_delta.wrapping_add(1);
                    owed[i].ack = a.first_seq;
                    i += 1;
                }
                _ => {
                    owed.swap_remove(i);
                }
            }
        }
        removed
    }
}

/// A connection scheduled by [`Balancer::connect_begin`], not yet in the table.
#[derive(Clone, Copy, Debug)]
pub struct Opening<A: Family> {
    conn: PreparedConn<A>,
    /// The chosen real server's place in the service's list.
    candidate: usize,
    /// The server's count has the connection as active (see
    /// [`Balancer::connect_begin`]).
    counted_active: bool,
}

impl<A: Family> Opening<A> {
    /// The connection as it will be inserted.
    pub fn new_conn(&self) -> &NewConn<A> {
        self.conn.new_conn()
    }
}

/// Undoes [`Balancer::connect_begin`] for a connection that will not be
/// inserted: its local port, a template made for it alone and (when `counted`
/// names its service) its place in the real server's count, gauges included
/// (others' changes in between may have shown it).
fn give_back<A: Tables>(
    opening: &Opening<A>,
    tables: &mut FamilyTables<A>,
    lports: &mut LocalPorts,
    counted: Option<(&mut ServiceState, &WorkerStats)>,
    now: u64,
) {
    let new = opening.conn.new_conn();
    if new.mode == Mode::FullNat {
        // NAT64 holds an IPv4 local address IPv4-mapped: give back the IPv4 one.
        lports.give_back(new.local.addr.into_ip().to_canonical(), new.local.port);
    }
    if let Some(t) = new.template {
        // Held by no connection yet: one made for this connection goes with it.
        let _ = tables.persist.release(t, now);
    }
    if let Some((st, stats)) = counted {
        let c = &mut st.candidates[opening.candidate];
        if opening.counted_active {
            c.active = c.active.saturating_sub(1);
        } else {
            c.inactive = c.inactive.saturating_sub(1);
        }
        c.unbind();
        let gauges = stats.real_server(new.real_server);
        gauges.active.set(u64::from(c.active));
        gauges.inactive.set(u64::from(c.inactive));
    }
}

/// Whether a TCP connection entering `state` is sent to the other members: from
/// ESTABLISHED on, as IPVS syncs. A half-open connection is not worth a record
/// (its client retransmits the SYN to whichever member then carries the
/// address), and a SYN flood thus costs sync nothing.
#[inline]
fn synced(state: ConnState) -> bool {
    matches!(
        state,
        ConnState::Tcp(
            TcpState::Established
                | TcpState::FinWait
                | TcpState::Close
                | TcpState::CloseWait
                | TcpState::TimeWait
        )
    )
}

/// Hands a record of `conn` to the management core; a full ring loses it (counted).
#[inline(never)]
fn send_record<A: Family>(out: &mut SyncProducer, conn: &Conn<A>, now: u64, stats: &WorkerStats) {
    let ep = |e: Endpoint<A>| (e.addr.into_ip(), e.port);
    let record = SyncConn {
        proto: conn.proto(),
        mode: conn.mode(),
        state: conn.state(),
        timeout_ms: conn.expiry().saturating_sub(now).min(u64::from(u32::MAX)) as u32,
        client: ep(conn.client()),
        vip: ep(conn.vip()),
        local: ep(conn.local()),
        real: ep(conn.real()),
    };
    if out.push(&record.to_words()) {
        stats.sync_records.inc();
    } else {
        stats.sync_records_dropped.inc();
    }
}

/// Gives back what a connection held: its template, its local port, its place in
/// the per-server counts.
fn release<A: Family>(
    conn: &Conn<A>,
    persist: &mut PersistTable<A>,
    lports: &mut LocalPorts,
    views: &mut Views,
    now: u64,
    stats: &WorkerStats,
) {
    if let Some(t) = conn.template() {
        let _ = persist.release(t, now);
    }
    if conn.mode() == Mode::FullNat {
        let local = conn.local();
        lports.give_back(local.addr.into_ip().to_canonical(), local.port);
    }
    if conn.state() == ConnState::Tcp(TcpState::SynRecv) {
        // Removed while still waiting for the server: the SYN went unanswered.
        stats.real_server(conn.real_server()).syn_failures.inc();
    }
    views.count_removal(conn.real_server(), conn.is_active(), stats);
}

/// Why no server of `pool` was picked: every one that could take the connection
/// is at its `max_connections`, or there is none at all.
#[cold]
fn no_server_reason(pool: &[Candidate]) -> DropReason {
    if pool
        .iter()
        .any(|c| c.overloaded && c.available && c.weight > 0)
    {
        DropReason::RealServerOverloaded
    } else {
        DropReason::NoRealServer
    }
}

/// Passive health evidence: a handshake that completed, or one the server refused.
fn count_handshake(rs_slot: u16, change: StateChange, stats: &WorkerStats) {
    let syn = ConnState::Tcp(TcpState::SynRecv);
    match change.to {
        ConnState::Tcp(TcpState::Established) if change.from == syn => {
            stats.real_server(rs_slot).handshakes.inc()
        }
        ConnState::Tcp(TcpState::Close) if change.from == syn => {
            stats.real_server(rs_slot).syn_failures.inc()
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Timeouts;
    use crate::fixture;
    use crate::service::Slots;

    const SORRY: &str = r#"services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    scheduler: rr
    persistence: 60s
    quorum: 2
    sorry_server: { address: 198.19.0.99, port: 8080 }
    real_servers:
      - { address: 198.19.0.10, port: 8080 }
      - { address: 198.19.0.11, port: 8080 }
"#;

    /// The services with the real servers in `down` taken out by health checks.
    fn services(down: &[&str]) -> Services {
        let cfg = fixture::parse(&fixture::appliance(SORRY));
        let mut slots = Slots::default();
        slots.assign(&cfg, 0, |_, _| false).unwrap();
        Services::build(&cfg, &slots, |_, a, _| {
            !down.contains(&a.to_string().as_str())
        })
    }

    /// The real servers `count` new connections from client 198.18.0.`host` go to.
    fn schedule(
        b: &mut Balancer,
        services: &Services,
        host: u8,
        first_port: u16,
        count: u16,
    ) -> Vec<String> {
        let svc = services.by_name("web").unwrap();
        let stats = WorkerStats::new(services.real_server_slots());
        let vip = Endpoint::new(Ipv4Addr::new(198, 18, 0, 100), 80);
        (first_port..first_port + count)
            .map(|port| {
                let client = Endpoint::new(Ipv4Addr::new(198, 18, 0, host), port);
                let id = b.connect(svc, Proto::Tcp, client, vip, 0, &stats).unwrap();
                let real = b.get::<Ipv4Addr>(id).unwrap().real();
                format!("{}:{}", real.addr, real.port)
            })
            .collect()
    }

    #[test]
    fn the_sorry_server_stands_in_while_quorum_is_lost() {
        let all_up = services(&[]);
        let web = all_up.by_name("web").unwrap();
        assert_eq!((web.available(), web.sorry_active), (2, false));
        assert_eq!(web.pool().len(), 2);
        let sorry = web.sorry_server().unwrap();
        assert_eq!((sorry.weight, sorry.up, sorry.slot), (0, true, 2));
        let limits = BalancerLimits::for_config(1000, 1, &all_up);
        let mut b = Balancer::new(&all_up, limits, &Timeouts::default(), 0, 1).unwrap();
        let stats = WorkerStats::new(all_up.real_server_slots());
        let picked = schedule(&mut b, &all_up, 1, 1000, 4);
        assert!(
            !picked.iter().any(|r| r == "198.19.0.99:8080"),
            "{picked:?}"
        );

        // One server down: 1 available < quorum 2, the sorry server takes every new
        // client, and no persistence template holds anyone to it.
        let one_down = services(&["198.19.0.10"]);
        assert!(one_down.by_name("web").unwrap().sorry_active);
        assert_eq!(
            one_down
                .by_name("web")
                .unwrap()
                .sorry_server()
                .unwrap()
                .weight,
            1
        );
        b.update_services(&one_down, &stats);
        let picked = schedule(&mut b, &one_down, 2, 2000, 3);
        assert_eq!(picked, ["198.19.0.99:8080"; 3]);

        // Back: the pool again, and a client seen during the outage is scheduled
        // anew rather than sent to the sorry server.
        b.update_services(&all_up, &stats);
        let picked = schedule(&mut b, &all_up, 2, 3000, 3);
        assert!(
            !picked.iter().any(|r| r == "198.19.0.99:8080"),
            "{picked:?}"
        );
    }

    #[test]
    fn without_a_sorry_server_nothing_changes_below_quorum() {
        let text = SORRY.replace(
            "    sorry_server: { address: 198.19.0.99, port: 8080 }\n",
            "",
        );
        let cfg = fixture::parse(&fixture::appliance(&text));
        let s = Services::from_config(&cfg);
        let web = s.by_name("web").unwrap();
        assert!(web.sorry_server().is_none() && !web.sorry_active);
        assert_eq!(web.pool().len(), 2);
    }
}
