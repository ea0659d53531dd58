//! The worker pipeline alone, without DPDK: the same configuration, traffic and
//! connection counts as a `perf/run.sh` workload, packets in plain memory
//! (`VecBuf`), bursts of 32 through `Pipeline::process_burst`. Prints ns per
//! packet. Made for quick A/B comparisons while optimising and for
//! `valgrind --tool=callgrind` (instructions per packet, per function), which the
//! real bench bed cannot give: DPDK I/O is left out, so only the packet logic is
//! measured.
//!
//! ```sh
//! target/release/ferrovs-pipebench --workload udp-64k --mode nat
//! valgrind --tool=callgrind target/release/ferrovs-pipebench --workload udp-1k --packets 200000
//! valgrind --tool=callgrind --cache-sim=yes target/release/ferrovs-pipebench \
//!     --workload tcp-syn --mode fullnat --clock-mpps 3 --packets 400000
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use ferrovs_core::config::{self, HostFacts};
use ferrovs_core::conn::FlowHasher;
use ferrovs_core::packet::{MacAddr, PacketBuf, VecBuf};
use ferrovs_core::pipeline::{Balancer, BalancerLimits, Dataplane, PacketPool, Pipeline};
use ferrovs_core::stats::WorkerStats;
use ferrovs_core::sync::outbox;
use ferrovs_perf::scenario::{self, Bed, BenchMode, FerrovsEndpoints, Memory};
use ferrovs_perf::traffic::{self, Addressing, Traffic, NET_PCAP_FIRST_MAC};

#[derive(Parser)]
#[command(about = "Run a perf workload through the worker pipeline in plain memory")]
struct Cli {
    /// udp-1k, udp-64k, udp-1m or tcp-syn.
    #[arg(long, default_value = "udp-64k")]
    workload: String,
    /// nat, fullnat or dr.
    #[arg(long, default_value = "nat")]
    mode: String,
    /// Packets to measure (after one warm-up pass over every flow).
    #[arg(long, default_value_t = 20_000_000)]
    packets: u64,
    /// Advance the pipeline's clock by packets instead of wall time, as if they
    /// arrived at this many Mpps. Under valgrind, which runs ~50 times slower,
    /// tcp-syn would otherwise hold a fiftieth of the live connections it holds
    /// at full speed; with a fixed rate every run sees the same table.
    #[arg(long)]
    clock_mpps: Option<f64>,
    /// Seed the flow hasher (which places connections and orders local ports)
    /// instead of drawing it at random, so that two runs, or two builds under
    /// callgrind, see the same table.
    #[arg(long)]
    seed: Option<u64>,
    /// Mark every received IPv4 header checksum as verified by the NIC, as a
    /// NIC with RX checksum offload does (the bed's `net_pcap` cannot), so the
    /// pipeline does not sum the header again.
    #[arg(long)]
    rx_checksum_offload: bool,
    /// Connection sync on: the balancer hands a record of every connection event to
    /// a ring, which another thread drains every 2 ms as the management core would.
    #[arg(long)]
    sync: bool,
}

const BURST: usize = 32;

/// Fresh empty buffers for packets the pipeline builds itself (ARP and the like).
struct HeapPool;

impl PacketPool for HeapPool {
    type Buf = VecBuf;
    fn alloc(&self) -> Option<VecBuf> {
        Some(VecBuf::from_frame(&[]))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(workload) = scenario::workload(&cli.workload) else {
        eprintln!("unknown workload {}", cli.workload);
        return ExitCode::from(1);
    };
    let Some(mode) = BenchMode::from_name(&cli.mode) else {
        eprintln!("unknown mode {}", cli.mode);
        return ExitCode::from(1);
    };
    let bed = Bed {
        workload,
        pcap: Path::new("/dev/null"),
        lcores: [0, 1],
        memory: Memory::NoHuge,
        file_prefix: "pipebench",
    };
    let endpoints = FerrovsEndpoints {
        metrics_listen: "127.0.0.1:9",
        control_socket: Path::new("/tmp/pipebench.sock"),
    };
    let addressing = Addressing::default();
    let text = scenario::ferrovs_config(&bed, mode, &endpoints, &addressing);
    let cfg = match config::parse(&text, "pipebench.yaml", &HostFacts::default()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("generated configuration refused: {e:?}");
            return ExitCode::from(2);
        }
    };
    let lan_mac = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    let dp = Arc::new(Dataplane::from_config(&cfg, &[NET_PCAP_FIRST_MAC, lan_mac]));
    let stats = Arc::new(WorkerStats::new(dp.services.real_server_slots()));
    let limits = BalancerLimits::for_config(cfg.connections.max as usize, 1, &dp.services);
    let timeouts = cfg.connections.timeouts;
    let hasher = cli
        .seed
        .map_or_else(FlowHasher::random, FlowHasher::with_seed);
    let mut lb =
        Balancer::with_hasher(&dp.services, limits, &timeouts, 0, 1, hasher).expect("tables");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drainer = cli.sync.then(|| {
        let (producer, mut consumer) = outbox(16384);
        lb.set_sync(producer);
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Every 2 ms, as the management loop polls.
            let (mut words, mut drained) = (Vec::with_capacity(16384), 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                words.clear();
                drained += consumer.drain(&mut words, 16384) as u64;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            drained
        })
    });
    let (events, _rx) = crossbeam_channel::bounded(1024);
    let offload = cli.rx_checksum_offload;
    let mut p = Pipeline::new(0, 1, dp, lb, HeapPool, stats.clone(), events, BURST)
        .with_rx_ipv4_checksum_offload(&[offload, offload]);

    let frames: Vec<Vec<u8>> = match workload.traffic {
        Traffic::UdpFlows { flows } => (0..flows)
            .map(|i| traffic::udp_frame(&addressing, traffic::flow_at(i, flows)))
            .collect(),
        Traffic::TcpSyns { count } => (0..count)
            .map(|i| traffic::syn_frame(&addressing, i))
            .collect(),
    };
    let mut bufs: Vec<VecBuf> = (0..2 * BURST)
        .map(|_| VecBuf::from_frame(&[0; 64]))
        .collect();
    let mut burst: Vec<VecBuf> = Vec::with_capacity(BURST);
    let start = Instant::now();
    let mut next = 0usize;
    let warmup = frames.len() as u64;
    let mut measured_from = None;
    for n in 0..warmup + cli.packets {
        if n == warmup {
            measured_from = Some((Instant::now(), stats.tx_packets.get()));
        }
        let frame = &frames[next];
        next = (next + 1) % frames.len();
        let mut buf = bufs.pop().expect("buffers recycle");
        buf.truncate(0);
        if buf.append(frame.len()).is_err() {
            eprintln!("buffer too small");
            return ExitCode::from(2);
        }
        buf.data_mut().copy_from_slice(frame);
        buf.set_ipv4_checksum_verified(offload);
        burst.push(buf);
        if burst.len() == BURST {
            let now_ms = match cli.clock_mpps {
                Some(mpps) => (n as f64 / (mpps * 1e3)) as u64,
                None => start.elapsed().as_millis() as u64,
            };
            p.set_time(now_ms);
            p.process_burst(&mut burst, 0);
            p.expire_connections();
            for port in 0..2 {
                let q = p.tx_queue(port);
                stats.tx_packets.add(q.len() as u64);
                bufs.extend(q.drain(..).filter(|b| b.headroom() > 0));
            }
            bufs.extend(p.garbage().drain(..).filter(|b| b.headroom() > 0));
            while bufs.len() < BURST {
                bufs.push(VecBuf::from_frame(&[0; 64]));
            }
        }
    }
    let (t0, tx0) = measured_from.expect("measured");
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(d) = drainer {
        let drained = d.join().unwrap_or(0);
        println!(
            "sync: {} records handed over, {} drained, {} lost to a full ring",
            stats.sync_records.get(),
            drained,
            stats.sync_records_dropped.get()
        );
    }
    let sent = stats.tx_packets.get() - tx0;
    let dropped = stats.dropped_total();
    println!(
        "{} {}: {:.1} ns/packet, {:.2} Mpps; {} sent of {} measured, {} dropped, {} connections",
        workload.name,
        mode.name(),
        secs * 1e9 / cli.packets as f64,
        cli.packets as f64 / secs / 1e6,
        sent,
        cli.packets,
        dropped,
        stats.conns_active.get(),
    );
    ExitCode::SUCCESS
}
