//! The whole worker pipeline, burst path against packet-at-a-time path.
//!
//! One fixed configuration (NAT, FULLNAT, DR and TUNNEL services over IPv4 and
//! IPv6, persistence, strict reverse-path filtering on wan, a smaller MTU on lan,
//! default routes, static neighbours, kernel interfaces), two fresh pipelines per
//! input. The input is a sequence of operations, played to both: bursts of frames
//! (raw bytes, or built from a template and then damaged), time passing, commands
//! from the management core (neighbours, address announcements, synced
//! connections, connection listings), frames from the kernel interface and from
//! another worker, and NICs, TAPs or rings that refuse what they are given.
//! `Pipeline::process_burst` gets each burst whole in one pipeline,
//! `Pipeline::process` gets its packets one by one in the other; both are then
//! drained the way the DPDK worker loop does (`src/worker.rs`, `flush`).
//!
//! Checked, beyond "no panic":
//! - The two paths end the same, after every operation: the same frames on each
//!   port's TX queue in the same order within each flow (across flows the burst
//!   path sends a batch's new connections after its established packets, which
//!   `pipeline/burst.rs` documents, so frames are compared per flow as in
//!   `pipeline/tests/burst.rs`), the same kernel and handoff queues, as many
//!   packets freed, the same neighbour events, the same sync records (as a
//!   multiset: a new connection's record is sent when it is inserted, which the
//!   burst path does at the end of its batch), the same connection listings, and
//!   every counter equal.
//! - Buffers are conserved in each pipeline: every buffer, received or
//!   allocated from the pool, comes back exactly once through a TX, kernel or
//!   handoff queue or the garbage list, or is freed by the pipeline itself, and
//!   a received one never is: nothing is lost, nothing is stuck (after
//!   `release_all` the pipeline holds no buffer).
//! - Counters agree with what came out: `rx_packets` counts the packets
//!   received, `kernel_packets` and `handoff_packets` what entered those queues,
//!   and every operation's drops lie between what its garbage must have been
//!   counted for (everything but the packets the pipeline may consume silently:
//!   ARP, neighbour advertisements, its own allocations) and what could have been
//!   counted (its garbage, buffers it freed itself, failed allocations, and the
//!   two reasons counted without a buffer: no route or no source address for an
//!   ICMP error or a probe).
//! - Every sync record a worker emits decodes.

#![no_main]

use ferrovs_core::config::Config;
use ferrovs_core::conn::{FlowHasher, Timeouts};
use ferrovs_core::fixture;
use ferrovs_core::forward::quoted_flow;
use ferrovs_core::packet::craft::{self, L2};
use ferrovs_core::packet::icmp::{emit_error, IcmpError};
use ferrovs_core::packet::icmpv6::{self, NeighborSolicit};
use ferrovs_core::packet::parse::L3Info;
use ferrovs_core::packet::parse::L4Header;
use ferrovs_core::packet::{
    ethernet, parse_frame, EtherType, Icmpv6Type, IpProtocol, Ipv4Packet, MacAddr, NoRoom,
    PacketBuf, TcpFlags, VecBuf,
};
use ferrovs_core::pipeline::{
    Balancer, BalancerLimits, ConnQuery, Dataplane, PacketPool, Pipeline, WorkerCommand,
    WorkerEvent,
};
use ferrovs_core::stats::{DropReason, WorkerStats};
use ferrovs_core::sync::{self, SyncConn, SyncConsumer, RECORD_LEN};
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

const WAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
const PORT_MACS: [MacAddr; 2] = [WAN_MAC, LAN_MAC];
/// Frames received per input at most (both pipelines get each).
const MAX_FRAMES: usize = 512;
/// The burst size the pipelines are sized for, as `workers.burst`.
const BURST: usize = 32;

/// The fixed configuration, for `workers` workers.
fn config_text(workers: usize) -> String {
    fixture::appliance_with(
        workers,
        true,
        r#"connections: { max: 48, timeouts: { tcp_established: "20s", tcp_syn: "3s", tcp_fin: "5s", udp: "4s" } }
routes:
  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }
  - { prefix: "203.0.113.0/24", via: "198.19.0.254" }
  - { prefix: "::/0", via: "2001:2::fe" }
neighbors:
  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }
  - { ip: "198.19.0.11", mac: "02:00:00:00:01:11" }
  - { ip: "198.18.0.10", mac: "02:00:00:00:00:10" }
  - { ip: "2001:2:0:19::10", mac: "02:00:00:00:01:10" }
services:
  - { name: nat-tcp, vip: 198.18.0.100, port: 80, protocol: tcp, mode: nat, scheduler: wlc,
      real_servers: [{ address: 198.19.0.10, port: 8080 }, { address: 198.19.0.12, port: 8080 }] }
  - { name: nat-udp, vip: 198.18.0.100, port: 53, protocol: udp, mode: nat, scheduler: rr,
      real_servers: [{ address: 198.19.0.11, port: 5353 }] }
  - { name: fnat-tcp, vip: 198.18.0.101, port: 80, protocol: tcp, mode: fullnat, scheduler: lc,
      local_addresses: [198.19.0.2],
      real_servers: [{ address: 198.19.0.10, port: 8080 }, { address: 198.19.0.11, port: 8080 }] }
  - { name: fnat-udp, vip: 198.18.0.101, port: 53, protocol: udp, mode: fullnat, scheduler: rr,
      local_addresses: [198.19.0.2],
      real_servers: [{ address: 198.19.0.12, port: 53 }] }
  - { name: dr, vip: 198.18.0.102, port: 80, protocol: tcp, mode: dr, scheduler: sh,
      real_servers: [{ address: 198.19.0.10, port: 80 }, { address: 198.19.0.12, port: 80 }] }
  - { name: dr-udp, vip: 198.18.0.102, port: 53, protocol: udp, mode: dr, scheduler: rr,
      real_servers: [{ address: 198.19.0.11, port: 53 }] }
  - { name: tun, vip: 198.18.0.103, port: 80, protocol: tcp, mode: tunnel, scheduler: rr,
      real_servers: [{ address: 198.19.0.11, port: 80 }] }
  - { name: sticky, vip: 198.18.0.103, port: 443, protocol: tcp, mode: nat, scheduler: wrr,
      persistence: "30s",
      real_servers: [{ address: 198.19.0.10, port: 443, weight: 2 }, { address: 198.19.0.11, port: 443 }] }
  - { name: web6, vip: "2001:2::100", port: 80, protocol: tcp, mode: nat, scheduler: rr,
      real_servers: [{ address: "2001:2:0:19::10", port: 8080 }, { address: "2001:2:0:19::11", port: 8080 }] }
  - { name: fnat6, vip: "2001:2::101", port: 53, protocol: udp, mode: fullnat, scheduler: rr,
      local_addresses: ["2001:2:0:19::2"],
      real_servers: [{ address: "2001:2:0:19::10", port: 53 }] }
"#,
    )
    .replace("device: net_null0,", "device: net_null0, rp_filter: strict,")
    .replace("device: net_null1,", "device: net_null1, mtu: 1400,")
}

/// The configuration and its data-plane snapshot, built once per worker count.
fn setup(workers: usize) -> &'static (Config, Arc<Dataplane>) {
    static ONE: OnceLock<(Config, Arc<Dataplane>)> = OnceLock::new();
    static TWO: OnceLock<(Config, Arc<Dataplane>)> = OnceLock::new();
    let cell = if workers == 1 { &ONE } else { &TWO };
    cell.get_or_init(|| {
        let cfg = fixture::parse(&config_text(workers));
        let dp = Arc::new(Dataplane::from_config(&cfg, &PORT_MACS));
        (cfg, dp)
    })
}

// ---------------------------------------------------------------------------
// Buffers and the pool, counted.

/// Where every buffer of one pipeline went.
#[derive(Default)]
struct Tracker {
    /// Buffers alive (created and not yet dropped).
    live: Cell<i64>,
    /// Buffers the pool handed out, and allocations it refused.
    allocs: Cell<u64>,
    alloc_failures: Cell<u64>,
    /// Buffers the pipeline dropped itself rather than handing them back.
    freed_inside: Cell<u64>,
    /// Of those, buffers that had been received (never allowed).
    received_freed_inside: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// A packet buffer that knows whether the harness took it back.
struct FuzzBuf {
    buf: VecBuf,
    /// Received (from the NIC, the kernel interface, another worker) rather than
    /// allocated by the pipeline.
    received: bool,
    /// A received packet the pipeline may free without counting a drop: ARP, and
    /// neighbour advertisements (it learns from them), as `consume` does.
    consumable: bool,
    /// The harness took it out of a queue.
    taken: bool,
    tracker: Rc<Tracker>,
}

impl FuzzBuf {
    fn new(buf: VecBuf, received: bool, tracker: &Rc<Tracker>) -> FuzzBuf {
        tracker.live.set(tracker.live.get() + 1);
        let consumable = received && is_consumable(buf.data());
        FuzzBuf {
            buf,
            received,
            consumable,
            taken: false,
            tracker: tracker.clone(),
        }
    }
}

impl Drop for FuzzBuf {
    fn drop(&mut self) {
        let t = &self.tracker;
        t.live.set(t.live.get() - 1);
        if !self.taken {
            bump(&t.freed_inside);
            if self.received {
                bump(&t.received_freed_inside);
            }
        }
    }
}

impl PacketBuf for FuzzBuf {
    fn data(&self) -> &[u8] {
        self.buf.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.buf.data_mut()
    }
    fn headroom(&self) -> usize {
        self.buf.headroom()
    }
    fn tailroom(&self) -> usize {
        self.buf.tailroom()
    }
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        self.buf.prepend(n)
    }
    fn strip_front(&mut self, n: usize) {
        self.buf.strip_front(n)
    }
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        self.buf.append(n)
    }
    fn truncate(&mut self, len: usize) {
        self.buf.truncate(len)
    }
    fn rx_port(&self) -> u16 {
        self.buf.rx_port()
    }
    fn set_rx_port(&mut self, port: u16) {
        self.buf.set_rx_port(port)
    }
    fn ipv4_checksum_verified(&self) -> bool {
        self.buf.ipv4_checksum_verified()
    }
}

/// Frames the pipeline may use up without a drop reason (`consume` in
/// `pipeline/mod.rs`): ARP it learns from, and neighbour advertisements.
fn is_consumable(frame: &[u8]) -> bool {
    match parse_frame(frame, false) {
        Ok(info) => match info.l3 {
            L3Info::Arp => true,
            L3Info::Ip(ip) => matches!(
                ip.l4.map(|l4| l4.header),
                Some(L4Header::Icmpv6 {
                    msg_type: Icmpv6Type::NEIGHBOR_ADVERT,
                    ..
                })
            ),
        },
        Err(_) => false,
    }
}

/// Frames the pipeline may learn a neighbour from: ARP, neighbour solicitations
/// and advertisements.
fn teaches_neighbour(frame: &[u8]) -> bool {
    match parse_frame(frame, false) {
        Ok(info) => match info.l3 {
            L3Info::Arp => true,
            L3Info::Ip(ip) => matches!(
                ip.l4.map(|l4| l4.header),
                Some(L4Header::Icmpv6 {
                    msg_type: Icmpv6Type::NEIGHBOR_SOLICIT | Icmpv6Type::NEIGHBOR_ADVERT,
                    ..
                })
            ),
        },
        Err(_) => false,
    }
}

/// A pool with an optional budget of buffers, counting what it hands out.
struct FuzzPool {
    tracker: Rc<Tracker>,
    budget: Cell<Option<u32>>,
}

impl PacketPool for FuzzPool {
    type Buf = FuzzBuf;
    fn alloc(&self) -> Option<FuzzBuf> {
        if let Some(left) = self.budget.get() {
            if left == 0 {
                bump(&self.tracker.alloc_failures);
                return None;
            }
            self.budget.set(Some(left - 1));
        }
        bump(&self.tracker.allocs);
        Some(FuzzBuf::new(VecBuf::from_frame(&[]), false, &self.tracker))
    }
}

// ---------------------------------------------------------------------------
// One pipeline and what came out of it.

/// Whether each port's NIC, each kernel interface, the ring to the other worker
/// takes what it is given (the fuzzer turns them off and on).
#[derive(Clone, Copy, Default)]
struct Links {
    tx_down: [bool; 2],
    kernel_down: bool,
    handoff_down: bool,
}

struct Worker {
    /// "single", "burst" (worker 0 both) or "peer" (worker 1), for messages.
    name: &'static str,
    p: Pipeline<FuzzPool>,
    stats: Arc<WorkerStats>,
    events: crossbeam_channel::Receiver<WorkerEvent>,
    sync: SyncConsumer,
    tracker: Rc<Tracker>,
    workers: usize,
    /// Packets received from the NIC queues (what `rx_packets` counts).
    received: u64,
    /// Packets that entered the kernel and handoff queues.
    to_kernel: u64,
    to_handoff: u64,
    tx_sent: u64,
    /// Buffers freed through the garbage list so far, and of them the ones that
    /// may have been consumed without a drop reason.
    garbage: u64,
    consumable: u64,
}

/// What came out of a pipeline during one operation.
#[derive(Default, Debug, PartialEq)]
struct Output {
    tx: [Vec<Vec<u8>>; 2],
    kernel: [Vec<Vec<u8>>; 2],
    /// Per owner: the packets handed over, with the port each came in on.
    handoff: Vec<Vec<(u16, Vec<u8>)>>,
    /// Buffers freed through the garbage list; of them, the ones that may have
    /// been consumed without a drop reason.
    garbage: u64,
    consumable: u64,
    events: Vec<String>,
    sync: Vec<String>,
    listing: Vec<String>,
}

impl Worker {
    /// Worker `index` of `workers`.
    fn new(
        name: &'static str,
        index: usize,
        workers: usize,
        offload: bool,
        budget: Option<u32>,
    ) -> Worker {
        let (cfg, dp) = setup(workers);
        // Counters for the configured real servers' slots only (an unknown slot
        // reads a shared dummy): the full 16,384 would be most of a fresh pipeline.
        let slots = dp
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter().map(|r| r.slot));
        let stats = Arc::new(WorkerStats::new(
            slots.max().map_or(0, |m| usize::from(m) + 1),
        ));
        let mut limits =
            BalancerLimits::for_config(cfg.connections.max as usize, workers, &dp.services);
        // Member 1 of a 64-member sync cluster: a share of the FULLNAT local ports.
        // Filling and shuffling every address's 64,512 ports for each of the two
        // fresh pipelines of every input would otherwise take most of the time.
        limits.local_port_share = (1, 64);
        let mut lb = Balancer::with_hasher(
            &dp.services,
            limits,
            &Timeouts::default(),
            index,
            workers,
            FlowHasher::with_seed(7),
        )
        .expect("the fixed configuration makes a balancer");
        let (producer, consumer) = sync::outbox(4096);
        lb.set_sync(producer);
        let (tx, rx) = crossbeam_channel::bounded(4096);
        let tracker = Rc::new(Tracker::default());
        let pool = FuzzPool {
            tracker: tracker.clone(),
            budget: Cell::new(budget),
        };
        let mut p = Pipeline::new(
            index,
            workers,
            dp.clone(),
            lb,
            pool,
            stats.clone(),
            tx,
            BURST,
        )
        .with_rx_ipv4_checksum_offload(&[offload, false]);
        // The configuration's timeouts, the way a reload applies them.
        p.apply(WorkerCommand::Config(dp.clone()));
        Worker {
            name,
            p,
            stats,
            events: rx,
            sync: consumer,
            tracker,
            workers,
            received: 0,
            to_kernel: 0,
            to_handoff: 0,
            tx_sent: 0,
            garbage: 0,
            consumable: 0,
        }
    }

    /// A packet handed over by the other worker, on the port it came in on.
    fn handed(&mut self, port: u16, bytes: &[u8]) {
        if debug() {
            eprintln!("  {} handed, port {port}: {}", self.name, describe(bytes));
        }
        let mut b = VecBuf::from_frame(bytes);
        b.set_rx_port(port);
        let b = FuzzBuf::new(b, true, &self.tracker);
        self.p.process_handed(b);
    }

    fn buf(&self, frame: &Frame) -> FuzzBuf {
        let mut b = VecBuf::from_frame(&frame.bytes);
        b.set_ipv4_checksum_verified(frame.nic_verified);
        b.set_rx_port(frame.port as u16);
        FuzzBuf::new(b, true, &self.tracker)
    }

    /// Empties every queue the way the worker loop's `flush` does.
    fn flush(&mut self, links: Links, out: &mut Output) {
        let take = |q: &mut Vec<FuzzBuf>| -> Vec<Vec<u8>> {
            q.drain(..)
                .map(|mut b| {
                    b.taken = true;
                    b.data().to_vec()
                })
                .collect()
        };
        out.handoff.resize(self.workers, Vec::new());
        for owner in 0..self.workers {
            let q = self.p.handoff_queue(owner);
            self.to_handoff += q.len() as u64;
            if links.handoff_down {
                self.p.discard_handoff(owner);
            } else {
                let ports: Vec<u16> = q.iter().map(|b| b.rx_port()).collect();
                out.handoff[owner].extend(ports.into_iter().zip(take(q)));
            }
        }
        for port in 0..2 {
            let q = self.p.kernel_queue(port);
            self.to_kernel += q.len() as u64;
            if links.kernel_down {
                self.p.discard_kernel(port);
            } else {
                out.kernel[port].extend(take(q));
            }
        }
        for port in 0..2 {
            let q = self.p.tx_queue(port);
            if links.tx_down[port] {
                let refused = q.len() as u64;
                self.p.stats().count_drop(DropReason::TxFull, refused);
                self.p.discard_tx(port);
            } else {
                let sent = take(q);
                self.tx_sent += sent.len() as u64;
                self.p.stats().tx_packets.add(sent.len() as u64);
                out.tx[port].extend(sent);
            }
        }
        for mut b in self.p.garbage().drain(..) {
            b.taken = true;
            out.garbage += 1;
            if b.consumable || !b.received {
                out.consumable += 1;
            }
        }
        self.garbage += out.garbage;
        self.consumable += out.consumable;
        if debug() {
            let drops: Vec<String> = DropReason::ALL
                .iter()
                .filter(|r| self.stats.dropped(**r) > 0)
                .map(|r| format!("{} {}", r.label(), self.stats.dropped(*r)))
                .collect();
            eprintln!(
                "  {} flushed: {} freed ({} consumable), drops so far: {}",
                self.name,
                out.garbage,
                out.consumable,
                drops.join(", ")
            );
        }
        out.events
            .extend(self.events.try_iter().map(|e| format!("{e:?}")));
        let mut words = Vec::new();
        self.sync.drain(&mut words, usize::MAX);
        for w in words {
            let rec = SyncConn::from_words(&w).expect("a worker's sync record decodes");
            out.sync.push(format!("{rec:?}"));
        }
        out.sync.sort();
    }

    /// Every counter.
    fn counters(&self) -> Vec<(String, u64)> {
        let s = &self.stats;
        let mut out = vec![
            ("rx".to_string(), s.rx_packets.get()),
            ("tx".to_string(), s.tx_packets.get()),
            ("handoff".to_string(), s.handoff_packets.get()),
            ("kernel".to_string(), s.kernel_packets.get()),
            ("conns".to_string(), s.conns_active.get()),
            ("sync_records".to_string(), s.sync_records.get()),
            (
                "sync_records_dropped".to_string(),
                s.sync_records_dropped.get(),
            ),
            ("sync_installed".to_string(), s.sync_installed.get()),
            ("sync_refused".to_string(), s.sync_refused.get()),
            ("allocs".to_string(), self.tracker.allocs.get()),
            (
                "alloc_failures".to_string(),
                self.tracker.alloc_failures.get(),
            ),
        ];
        for r in DropReason::ALL {
            out.push((r.label().to_string(), s.dropped(*r)));
        }
        let (_, dp) = setup(self.workers);
        for svc in dp.services.iter() {
            for rs in &svc.real_servers {
                let c = s.real_server(rs.slot);
                out.push((
                    format!("rs{}", rs.slot),
                    [
                        c.conns.get(),
                        c.in_packets.get(),
                        c.in_bytes.get(),
                        c.out_packets.get(),
                        c.out_bytes.get(),
                        c.active.get(),
                        c.inactive.get(),
                        c.handshakes.get(),
                        c.syn_failures.get(),
                    ]
                    .iter()
                    .fold(0u64, |h, v| h.wrapping_mul(1_000_003).wrapping_add(*v)),
                ));
            }
        }
        out
    }

    /// The connection listing of both tables, sorted.
    fn listing(&mut self) -> Vec<String> {
        let mut all = Vec::new();
        for ipv6 in [false, true] {
            let mut from = 0;
            for _ in 0..64 {
                let (tx, rx) = crossbeam_channel::bounded(1);
                self.p.apply(WorkerCommand::DumpConns(ConnQuery {
                    ipv6,
                    from,
                    count: 256,
                    service: None,
                    real_server: None,
                    state: None,
                    reply: tx,
                }));
                let chunk = rx.try_recv().expect("a listing step answers");
                all.extend(chunk.conns.iter().map(|c| format!("{c:?}")));
                match chunk.next {
                    Some(next) => from = next,
                    None => break,
                }
            }
        }
        all.sort();
        all
    }

    /// The drop counters' total and the two reasons counted without a buffer.
    fn drops(&self) -> (u64, u64) {
        let s = &self.stats;
        (
            s.dropped_total(),
            s.dropped(DropReason::NoRoute) + s.dropped(DropReason::NoSourceAddress),
        )
    }
}

// ---------------------------------------------------------------------------
// The input.

/// Bytes of the input, read front to back; past the end everything reads 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A frame as received: bytes, port, and whether the NIC vouched for its IPv4
/// header checksum (only ever for one that does verify: a NIC does not lie).
struct Frame {
    bytes: Vec<u8>,
    port: usize,
    nic_verified: bool,
}

const CLIENTS_V4: [&str; 8] = [
    "198.18.0.10",
    "198.18.0.11",
    "198.18.0.12",
    "203.0.113.9",  // off-link, behind the lan gateway's route
    "198.51.100.7", // off-link, behind the default route
    "198.19.0.10",  // a real server's subnet: strict rp_filter on wan refuses it
    "127.0.0.1",    // martian
    "198.18.0.100", // a VIP: own source
];
const DESTS_V4: [&str; 8] = [
    "198.18.0.100",
    "198.18.0.101",
    "198.18.0.102",
    "198.18.0.103",
    "198.18.0.1",  // wan's own address
    "198.19.0.1",  // lan's own address
    "198.19.0.2",  // a FULLNAT local address
    "198.18.0.99", // nobody
];
const CLIENTS_V6: [&str; 4] = ["2001:2::10", "2001:2::11", "2001:db8::5", "2001:2:0:19::10"];
const DESTS_V6: [&str; 4] = ["2001:2::100", "2001:2::101", "2001:2::1", "2001:2:0:19::2"];
const PORTS: [u16; 4] = [80, 53, 443, 22];
/// Where ICMP errors about the traffic to real servers come from.
const ROUTERS: [&str; 4] = ["198.19.0.254", "198.19.0.10", "198.18.0.100", "198.19.0.1"];
/// Neighbours a command or an advertisement may announce.
const NEIGHBORS: [&str; 6] = [
    "198.18.0.254",
    "198.19.0.12",
    "198.19.0.254",
    "2001:2::fe",
    "2001:2:0:19::11",
    "198.18.0.11",
];

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A frame built from a template (`kind`), then damaged as the input says.
///
/// Template bytes: source selector, destination selector, reply/error
/// selector, TCP flags, payload length (0xf0 and up: around lan's MTU),
/// then up to 3 damages (offset, xor), and whether to refresh the IPv4 header
/// checksum after them.
fn template(kind: u8, port: usize, r: &mut Input, seen: &[Vec<u8>]) -> Vec<u8> {
    let (a, b, c, flags, plen) = (r.u8(), r.u8(), r.u8(), r.u8(), r.u8());
    let payload = if plen >= 0xf0 {
        vec![plen; 1300 + usize::from(plen & 0x0f) * 10]
    } else {
        vec![plen; usize::from(plen % 48)]
    };
    let l2 = L2 {
        src: CLIENT_MAC,
        dst: if flags & 0x80 != 0 && kind % 12 == 1 {
            MacAddr::BROADCAST
        } else {
            PORT_MACS[port]
        },
    };
    let sport = 40000 + u16::from(a >> 5);
    let dport = PORTS[usize::from(b >> 6)];
    let src4 = SocketAddr::new(ip(CLIENTS_V4[usize::from(a % 8)]), sport);
    let dst4 = SocketAddr::new(ip(DESTS_V4[usize::from(b % 8)]), dport);
    let src6 = SocketAddr::new(ip(CLIENTS_V6[usize::from(a % 4)]), sport);
    let dst6 = SocketAddr::new(ip(DESTS_V6[usize::from(b % 4)]), dport);
    let tcp_flags = TcpFlags::from_bits(flags);
    let mut frame = match kind % 12 {
        0 => craft::tcp(l2, src4, dst4, tcp_flags, 1, 2, &payload),
        1 => craft::udp(l2, src4, dst4, &payload),
        2 => craft::tcp(l2, src6, dst6, tcp_flags, 1, 2, &payload),
        3 => craft::udp(l2, src6, dst6, &payload),
        4 => craft::echo_request(l2, src4.ip(), dst4.ip(), 1, u16::from(c), &payload),
        5 => craft::echo_request(l2, src6.ip(), dst6.ip(), 1, u16::from(c), &payload),
        6 => {
            let (IpAddr::V4(s), IpAddr::V4(t)) = (src4.ip(), dst4.ip()) else {
                unreachable!()
            };
            let mac = MacAddr([2, 0, 0, 0, 1, c]);
            if flags & 1 == 0 {
                craft::arp_request(mac, s, t)
            } else {
                craft::arp_reply(mac, s, PORT_MACS[port], t)
            }
        }
        7 => {
            let (IpAddr::V6(s), IpAddr::V6(t)) = (src6.ip(), dst6.ip()) else {
                unreachable!()
            };
            craft::neighbor_solicit(CLIENT_MAC, s, t)
        }
        8 | 9 if !seen.is_empty() => reply_to(
            &seen[usize::from(c) % seen.len()],
            kind % 12 == 9,
            tcp_flags,
            a,
            &payload,
        ),
        10 => {
            // A neighbour answers our solicitation, or announces itself.
            let target = ip(NEIGHBORS[usize::from(c) % NEIGHBORS.len()]);
            match target {
                IpAddr::V6(t) => {
                    neighbor_advert(t, MacAddr([2, 0, 0, 0, 2, a]), port, flags & 1 != 0)
                }
                IpAddr::V4(t) => craft::arp_reply(
                    MacAddr([2, 0, 0, 0, 2, a]),
                    t,
                    PORT_MACS[port],
                    match port {
                        0 => v4("198.18.0.1"),
                        _ => v4("198.19.0.1"),
                    },
                ),
            }
        }
        _ => craft::udp(l2, src4, dst4, &payload),
    };
    let damages = r.u8();
    for _ in 0..damages % 4 {
        let at = usize::from(r.u16()) % frame.len();
        frame[at] ^= r.u8();
    }
    if damages & 0x80 != 0 && frame.len() >= 34 && frame[12..14] == [0x08, 0x00] {
        if let Ok(mut v) = Ipv4Packet::new_checked(&mut frame[14..]) {
            v.fill_checksum();
        }
    }
    frame
}

/// What a real server sends back for a frame the balancer sent it: an answer
/// (ports and addresses swapped), or with `error`, an ICMP error about it from a
/// router or the server.
fn reply_to(sent: &[u8], error: bool, flags: TcpFlags, sel: u8, payload: &[u8]) -> Vec<u8> {
    let l2 = L2 {
        src: MacAddr(sent[0..6].try_into().unwrap()),
        dst: MacAddr(sent[6..12].try_into().unwrap()),
    };
    if error {
        let from = v4(ROUTERS[usize::from(sel) % ROUTERS.len()]);
        let mut err = vec![0u8; 14 + 600];
        let e = if sel & 0x80 != 0 {
            IcmpError::TimeExceeded
        } else {
            IcmpError::FragmentationNeeded { next_hop_mtu: 1280 }
        };
        if let Ok(n) = emit_error(&mut err[14..], e, from, &sent[14..]) {
            err.truncate(14 + n);
            ethernet::emit_header(&mut err, l2.dst, l2.src, EtherType::IPV4).unwrap();
            return err;
        }
    }
    let Ok(info) = parse_frame(sent, false) else {
        return sent.to_vec();
    };
    let Some(ip) = info.ip() else {
        return sent.to_vec();
    };
    let Some((sport, dport)) = ip.ports() else {
        return sent.to_vec();
    };
    let from = SocketAddr::new(ip.addrs.dst(), dport);
    let to = SocketAddr::new(ip.addrs.src(), sport);
    if ip.protocol == IpProtocol::UDP {
        craft::udp(l2, from, to, payload)
    } else {
        craft::tcp(l2, from, to, flags, 3, 4, payload)
    }
}

/// A neighbour advertisement for `target` at `mac`: solicited (to our address on
/// `port`) or unsolicited (to all nodes).
fn neighbor_advert(target: Ipv6Addr, mac: MacAddr, port: usize, solicited: bool) -> Vec<u8> {
    let mut buf = vec![0u8; icmpv6::ND_FRAME_LEN];
    let n = if solicited {
        let ours: Ipv6Addr = if port == 0 {
            "2001:2::1"
        } else {
            "2001:2:0:19::1"
        }
        .parse()
        .unwrap();
        let ns = NeighborSolicit {
            source: ours,
            target,
            source_link_addr: Some(PORT_MACS[port]),
        };
        icmpv6::emit_neighbor_advert(&mut buf, mac, &ns, PORT_MACS[port])
    } else {
        icmpv6::emit_unsolicited_neighbor_advert(&mut buf, mac, target)
    };
    buf.truncate(n.unwrap_or(0));
    buf
}

/// One frame of a burst: a template (tag < 0x80, its kind the low 6 bits) or raw
/// bytes (a 16-bit length, then the bytes); tag bit 6: the NIC verified the IPv4
/// header checksum (if it does verify).
fn frame(port: usize, r: &mut Input, seen: &[Vec<u8>]) -> Frame {
    let tag = r.u8();
    let bytes = if tag & 0x80 == 0 {
        template(tag & 0x3f, port, r, seen)
    } else {
        let len = usize::from(r.u16() % 2048);
        r.bytes(len).to_vec()
    };
    // The NIC's checksum verdict, only for headers that do verify.
    let nic_verified = tag & 0x40 != 0
        && bytes.len() >= 34
        && bytes[12..14] == [0x08, 0x00]
        && Ipv4Packet::new_checked(&bytes[14..]).is_ok_and(|v| v.verify_checksum());
    Frame {
        bytes,
        port,
        nic_verified,
    }
}

/// A connection record from the input's selectors (decoded as sync would: a
/// record that does not decode is not installed).
fn sync_record(r: &mut Input) -> Option<SyncConn> {
    let (a, b, c, d) = (r.u8(), r.u8(), r.u8(), r.u8());
    let v6 = a & 1 != 0;
    let mut rec = [0u8; RECORD_LEN];
    rec[0] = u8::from(v6);
    rec[1] = if a & 2 != 0 { 17 } else { 6 };
    rec[2] = b % 12;
    rec[3] = b >> 6;
    rec[4..8].copy_from_slice(&(u32::from(c) * 1000).to_be_bytes());
    let put = |rec: &mut [u8; RECORD_LEN], at: usize, addr: IpAddr| match addr {
        IpAddr::V4(x) => rec[at..at + 4].copy_from_slice(&x.octets()),
        IpAddr::V6(x) => rec[at..at + 16].copy_from_slice(&x.octets()),
    };
    let (client, vip, real) = if v6 {
        (
            ip(CLIENTS_V6[usize::from(c % 4)]),
            ip(DESTS_V6[usize::from(d % 2)]),
            ip(["2001:2:0:19::10", "2001:2:0:19::11"][usize::from(d >> 7)]),
        )
    } else {
        (
            ip(CLIENTS_V4[usize::from(c % 8)]),
            ip(DESTS_V4[usize::from(d % 4)]),
            ip(["198.19.0.10", "198.19.0.11", "198.19.0.12"][usize::from(d >> 6) % 3]),
        )
    };
    put(&mut rec, 8, client);
    rec[24..26].copy_from_slice(&(40000 + u16::from(c >> 5)).to_be_bytes());
    rec[26..28].copy_from_slice(&PORTS[usize::from((d >> 2) % 4)].to_be_bytes());
    put(&mut rec, 28, vip);
    put(&mut rec, 44, if a & 4 != 0 { real } else { client });
    rec[60..62].copy_from_slice(&(1024 + u16::from(a)).to_be_bytes());
    rec[62..64].copy_from_slice(&[80u16, 8080, 53, 443][usize::from(a >> 6)].to_be_bytes());
    put(&mut rec, 64, real);
    SyncConn::decode(&rec).ok()
}

// ---------------------------------------------------------------------------
// Comparison.

/// `FUZZ_DEBUG=1`: every operation's frames and outputs on stderr (to read a
/// reproducer).
fn debug() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

/// A frame in a few words, for `FUZZ_DEBUG`.
fn describe(frame: &[u8]) -> String {
    match parse_frame(frame, false) {
        Ok(info) => match info.ip() {
            Some(ip) => format!(
                "{:?} {:?} {:?} {} bytes",
                ip.addrs,
                ip.protocol,
                ip.l4.map(|l4| l4.header),
                frame.len()
            ),
            None => format!("ARP {} bytes", frame.len()),
        },
        Err(e) => format!("{e} ({} bytes)", frame.len()),
    }
}

/// A TX queue split by flow (addresses, protocol, ports; an ICMP error goes with
/// the flow it quotes; anything else is a group of its own), each flow in order.
fn by_flow(queue: &[Vec<u8>]) -> BTreeMap<String, Vec<&[u8]>> {
    let mut flows: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for f in queue {
        let info = parse_frame(f, false).ok();
        let key = match info.as_ref().and_then(|i| i.ip().copied()) {
            Some(ip) => match ip.ports() {
                Some((sp, dp)) => format!("{:?} {:?} {sp} {dp}", ip.addrs, ip.protocol),
                None => match info.as_ref().and_then(|i| quoted_flow(f, i, &ip)) {
                    Some(q) => format!("{:?} {:?} about {q:?}", ip.addrs, ip.protocol),
                    None => format!("{:?} {:?}", ip.addrs, ip.protocol),
                },
            },
            None => format!("{f:?}"),
        };
        flows.entry(key).or_default().push(f);
    }
    flows
}

fn assert_same(step: usize, single: &Output, burst: &Output) {
    for port in 0..2 {
        let (a, b) = (by_flow(&single.tx[port]), by_flow(&burst.tx[port]));
        if a != b {
            panic!(
                "step {step}: TX on port {port}:\n single {}\n burst  {}",
                show(single.tx[port].iter()),
                show(burst.tx[port].iter())
            );
        }
        if single.kernel[port] != burst.kernel[port] {
            panic!(
                "step {step}: kernel interface {port}:\n single {}\n burst  {}",
                show(single.kernel[port].iter()),
                show(burst.kernel[port].iter())
            );
        }
    }
    if single.handoff != burst.handoff {
        let frames = |o: &Output| show(o.handoff.iter().flatten().map(|(_, f)| f));
        panic!(
            "step {step}: handoff:\n single {}\n burst  {}",
            frames(single),
            frames(burst)
        );
    }
    assert_eq!(single.garbage, burst.garbage, "step {step}: freed");
    assert_eq!(single.events, burst.events, "step {step}: neighbour events");
    assert_eq!(single.sync, burst.sync, "step {step}: sync records");
    assert_eq!(
        single.listing, burst.listing,
        "step {step}: connection listing"
    );
}

/// Frames in a few words each.
fn show<'a>(frames: impl Iterator<Item = &'a Vec<u8>>) -> String {
    let all: Vec<String> = frames.map(|f| describe(f)).collect();
    format!("[{}]", all.join(",\n   "))
}

/// The drops counted during one operation against what came out of it.
fn assert_drops_account(step: usize, w: &Worker, before: (u64, u64, u64, u64), out: &Output) {
    let (drops0, bufferless0, freed0, failures0) = before;
    let (drops, bufferless) = w.drops();
    let t = &w.tracker;
    let counted = drops - drops0;
    let must = out.garbage - out.consumable;
    let may = out.garbage
        + (t.freed_inside.get() - freed0)
        + (t.alloc_failures.get() - failures0)
        + (bufferless - bufferless0);
    assert!(
        must <= counted && counted <= may,
        "{} step {step}: {counted} drops counted for {} freed ({} of them maybe consumed), \
         {} freed by the pipeline, {} failed allocations, {} drops without a buffer",
        w.name,
        out.garbage,
        out.consumable,
        t.freed_inside.get() - freed0,
        t.alloc_failures.get() - failures0,
        bufferless - bufferless0
    );
}

fn snapshot(w: &Worker) -> (u64, u64, u64, u64) {
    let (d, b) = w.drops();
    (
        d,
        b,
        w.tracker.freed_inside.get(),
        w.tracker.alloc_failures.get(),
    )
}

// ---------------------------------------------------------------------------

fuzz_target!(|data: &[u8]| {
    let mut r = Input(data);
    // Setup: bit 0 the wan NIC verifies IPv4 header checksums, bit 1 two workers
    // (these pipelines are worker 0's), bits 2-3 the pool's budget.
    let setup_byte = r.u8();
    let offload = setup_byte & 1 != 0;
    let workers = if setup_byte & 2 != 0 { 2 } else { 1 };
    let budget = [None, Some(0), Some(2), Some(16)][usize::from((setup_byte >> 2) & 3)];
    let mut single = Worker::new("single", 0, workers, offload, budget);
    let mut burst = Worker::new("burst", 0, workers, offload, budget);
    // With two workers, worker 1 is played once, for both: it gets the frames of
    // op 6 and what worker 0 hands it, and what it hands worker 0 goes to both.
    // (A worker is only ever handed packets that steer to it, which only the
    // other worker can tell.)
    let mut peer = (workers == 2).then(|| Worker::new("peer", 1, workers, offload, None));
    let mut links = Links::default();
    let mut now = 1_000u64;
    let mut frames = 0usize;
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for w in [&mut single, &mut burst] {
        w.p.set_time(now);
    }
    let mut step = 0;
    while !r.is_empty() && frames < MAX_FRAMES {
        step += 1;
        let op = r.u8();
        let arg = op >> 3;
        let before = [snapshot(&single), snapshot(&burst)];
        let mut listing = false;
        match op & 7 {
            // A burst of 1..=32 frames on wan (0, 2) or lan (1).
            kind @ 0..=2 => {
                let port = usize::from(kind & 1);
                let n = 1 + usize::from(arg);
                let burst_frames: Vec<Frame> = (0..n).map(|_| frame(port, &mut r, &seen)).collect();
                if debug() {
                    for f in &burst_frames {
                        eprintln!("  rx port {port}: {}", describe(&f.bytes));
                    }
                }
                frames += n;
                for f in &burst_frames {
                    let b = single.buf(f);
                    single.p.process(b, port);
                }
                single.received += n as u64;
                // KNOWN DIFFERENCE (reported): the burst path forwards a batch's new
                // connections after the rest of the batch, so a neighbour learned
                // from a later frame of the batch is already known when their
                // packets are routed (no probe, nothing held), where packet by
                // packet they were held and probed for. Until that is settled, a
                // burst is cut before each frame a neighbour may be learned from,
                // as if the NIC had delivered it in two.
                let mut i = 0;
                while i < n {
                    let mut end = i + 1;
                    while end < n && !teaches_neighbour(&burst_frames[end].bytes) {
                        end += 1;
                    }
                    let mut bufs: Vec<FuzzBuf> =
                        burst_frames[i..end].iter().map(|f| burst.buf(f)).collect();
                    burst.p.process_burst(&mut bufs, port);
                    assert!(bufs.is_empty(), "process_burst leaves the burst empty");
                    i = end;
                }
                burst.received += n as u64;
            }
            // Time passes: expiry and neighbour housekeeping, as every loop iteration.
            3 => {
                let t = u64::from(r.u8());
                now += t * [1, 10, 100, 1000][usize::from(arg & 3)];
                for w in [&mut single, &mut burst] {
                    w.p.set_time(now);
                    w.p.expire_connections();
                    w.p.housekeeping();
                }
            }
            // A command from the management core.
            4 => {
                let cmd = match arg % 4 {
                    0 => {
                        let b = r.u8();
                        Some(WorkerCommand::Neighbor {
                            ip: ip(NEIGHBORS[usize::from(b) % NEIGHBORS.len()]),
                            mac: MacAddr([2, 0, 0, 0, 3, b]),
                            port: usize::from(b >> 7),
                        })
                    }
                    1 => Some(WorkerCommand::AnnounceAddresses),
                    2 => {
                        let n = 1 + usize::from(r.u8() % 4);
                        Some(WorkerCommand::SyncInstall(
                            (0..n).filter_map(|_| sync_record(&mut r)).collect(),
                        ))
                    }
                    _ => {
                        listing = true;
                        None
                    }
                };
                if let Some(cmd) = cmd {
                    single.p.apply(cmd.clone());
                    burst.p.apply(cmd);
                }
            }
            // A frame from a port's kernel interface (5), or one another worker
            // handed over (6).
            5 => {
                let port = usize::from(arg & 1);
                let f = frame(port, &mut r, &seen);
                frames += 1;
                for w in [&mut single, &mut burst] {
                    let b = w.buf(&f);
                    w.p.from_kernel(b);
                }
            }
            // A frame the other worker receives (it hands over what is ours).
            6 => {
                let port = usize::from(arg & 1);
                let f = frame(port, &mut r, &seen);
                frames += 1;
                if let Some(peer) = peer.as_mut() {
                    let b = peer.buf(&f);
                    peer.p.process(b, port);
                    peer.received += 1;
                }
            }
            // NICs, TAPs and the ring to the other worker go down or come back.
            _ => {
                links = Links {
                    tx_down: [arg & 1 != 0, arg & 2 != 0],
                    kernel_down: arg & 4 != 0,
                    handoff_down: arg & 8 != 0,
                };
            }
        }
        // Worker 1's packets for worker 0 arrive on worker 0's ring.
        if let Some(peer) = peer.as_mut() {
            let mut out = Output::default();
            peer.flush(Links::default(), &mut out);
            for (port, bytes) in &out.handoff[0] {
                single.handed(*port, bytes);
                burst.handed(*port, bytes);
            }
        }
        let mut a = Output::default();
        let mut b = Output::default();
        single.flush(links, &mut a);
        burst.flush(links, &mut b);
        if let Some(peer) = peer.as_mut() {
            for (port, bytes) in &a.handoff[1] {
                peer.handed(*port, bytes);
            }
        }
        if listing {
            a.listing = single.listing();
            b.listing = burst.listing();
        }
        if debug() {
            eprintln!("step {step} op {op:#04x}: single {a:?}\n  live {} allocs {}\n  burst {b:?}\n  live {} allocs {}", single.tracker.live.get(), single.tracker.allocs.get(), burst.tracker.live.get(), burst.tracker.allocs.get());
        }
        assert_same(step, &a, &b);
        assert_eq!(single.counters(), burst.counters(), "step {step}: counters");
        assert_drops_account(step, &single, before[0], &a);
        assert_drops_account(step, &burst, before[1], &b);
        assert_counts(step, &single);
        assert_counts(step, &burst);
        // What went to the real servers and back to clients feeds later replies.
        for f in a.tx.iter().flatten().filter(|f| f.len() >= 14) {
            if seen.len() < 64 {
                seen.push(f.clone());
            } else {
                seen[(step + f.len()) % 64] = f.clone();
            }
        }
    }
    // Shutdown: every held packet is given back, then nothing may be left.
    let a = finish(&mut single, links, now);
    let b = finish(&mut burst, links, now);
    if let Some(peer) = peer.as_mut() {
        finish(peer, Links::default(), now);
    }
    assert_same(usize::MAX, &a, &b);
    assert_eq!(single.counters(), burst.counters(), "after release_all");
});

/// `release_all` and a last flush, as the worker loop ends; then every buffer
/// must be accounted for.
fn finish(w: &mut Worker, links: Links, now: u64) -> Output {
    // Right away, with neighbours still being probed: `release_all` must give
    // back what they hold (it once left the packets of a neighbour probed fewer
    // than MAX_PROBES times in the table: `NeighTable::release_all`).
    let before = snapshot(w);
    w.p.set_time(now);
    w.p.release_all();
    let mut out = Output::default();
    w.flush(links, &mut out);
    // (Worker 1 handles what worker 0 handed it after its own flush: only its
    // whole run adds up.)
    if w.name != "peer" {
        assert_drops_account(usize::MAX, w, before, &out);
    }
    // The whole run's drops against everything that came out.
    let whole = Output {
        garbage: w.garbage,
        consumable: w.consumable,
        ..Output::default()
    };
    assert_drops_account(usize::MAX, w, (0, 0, 0, 0), &whole);
    assert_counts(usize::MAX, w);
    let t = &w.tracker;
    assert_eq!(
        t.live.get(),
        0,
        "buffers left in the pipeline after release_all"
    );
    assert_eq!(
        t.received_freed_inside.get(),
        0,
        "received packets freed by the pipeline, not handed back"
    );
    out
}

/// The counters of what entered the pipeline and its queues.
fn assert_counts(step: usize, w: &Worker) {
    let s = &w.stats;
    assert_eq!(
        s.rx_packets.get(),
        w.received,
        "{} step {step}: rx_packets",
        w.name
    );
    assert_eq!(
        s.kernel_packets.get(),
        w.to_kernel,
        "{} step {step}: kernel_packets",
        w.name
    );
    assert_eq!(
        s.handoff_packets.get(),
        w.to_handoff,
        "{} step {step}: handoff_packets",
        w.name
    );
    assert_eq!(
        s.tx_packets.get(),
        w.tx_sent,
        "{} step {step}: tx_packets",
        w.name
    );
    assert_eq!(
        w.tracker.received_freed_inside.get(),
        0,
        "{} step {step}: a received packet freed by the pipeline",
        w.name
    );
}
