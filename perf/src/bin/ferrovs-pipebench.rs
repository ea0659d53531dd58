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
//! # SYNs answered with SYN cookies (SYN proxy):
//! target/release/ferrovs-pipebench --workload tcp-syn --syn-proxy
//! # Established TCP flows, opened through the SYN proxy (sequence numbers,
//! # timestamps and window translated) or not:
//! target/release/ferrovs-pipebench --workload tcp-syn --established 1024 --syn-proxy
//! target/release/ferrovs-pipebench --workload tcp-syn --established 1024
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
    /// nat, fullnat, dr or tunnel.
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
    /// The service is SYN-proxied (tcp-syn, NAT or FULLNAT): SYNs are answered
    /// with SYN cookies; with `--established`, the connections are opened
    /// through the proxy and their segments translated.
    #[arg(long)]
    syn_proxy: bool,
    /// With tcp-syn: open this many connections first (whole handshakes, with a
    /// real server answering), then measure their data segments (64 bytes of
    /// data, timestamps) from the clients instead of SYNs.
    #[arg(long)]
    established: Option<u32>,
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
    let mut text = scenario::ferrovs_config(&bed, mode, &endpoints, &addressing);
    if cli.syn_proxy {
        text = text.replace(
            "  - name: bench\n",
            "  - name: bench\n    syn_proxy: true\n",
        );
    }
    if cli.established.is_some() {
        // Established connections live as long as the run.
        text = text.replace("  timeouts: { tcp_syn: \"10ms\" }\n", "");
    }
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

    let frames: Vec<Vec<u8>> = match (workload.traffic, cli.established) {
        (Traffic::TcpSyns { .. }, Some(flows)) => {
            match established::open(&mut p, &addressing, lan_mac, flows, cli.syn_proxy) {
                Ok(frames) => frames,
                Err(e) => {
                    eprintln!("opening the connections: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        (Traffic::UdpFlows { flows }, _) => (0..flows)
            .map(|i| traffic::udp_frame(&addressing, traffic::flow_at(i, flows)))
            .collect(),
        (Traffic::TcpSyns { count }, None) => (0..count)
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
        // As a pool hands a buffer out: an encapsulation took headroom from it.
        buf.reset();
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

/// Established TCP connections for `--established`: each opened by a whole
/// handshake through the pipeline (the client's, and with a SYN proxy the real
/// server's with ferrovs), then one data segment a flow for the run.
mod established {
    use super::HeapPool;
    use ferrovs_core::forward::segment::{self, Segment, SynOptions, MAX_OPTIONS};
    use ferrovs_core::packet::parse::{L3Info, L4Header};
    use ferrovs_core::packet::{
        ethernet, parse_frame, EtherType, MacAddr, PacketBuf, TcpFlags, TcpPacket, VecBuf,
    };
    use ferrovs_core::pipeline::Pipeline;
    use ferrovs_perf::traffic::{self, Addressing};
    use std::net::{SocketAddr, SocketAddrV4};

    const SERVER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0]);

    /// A segment as the pipeline sent it.
    struct Seen {
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        flags: TcpFlags,
        tsval: u32,
    }

    #[allow(clippy::too_many_arguments)]
    fn frame(
        from: MacAddr,
        to: MacAddr,
        src: SocketAddr,
        dst: SocketAddr,
        flags: TcpFlags,
        (seq, ack): (u32, u32),
        options: SynOptions,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut o = [0u8; MAX_OPTIONS];
        let n = options.write(&mut o);
        let seg = Segment {
            src: (src.ip(), src.port()),
            dst: (dst.ip(), dst.port()),
            seq,
            ack,
            flags,
            window: 502,
            options: &o[..n],
            payload,
        };
        let mut f = vec![0u8; segment::frame_len(&seg)];
        segment::emit(&mut f, ethernet::HEADER_LEN, &seg).expect("room");
        ethernet::emit_header(&mut f, to, from, EtherType::IPV4).expect("room");
        f
    }

    /// Runs one frame through the pipeline; what went out of `port`.
    fn step(
        p: &mut Pipeline<HeapPool>,
        f: Vec<u8>,
        rx: usize,
        port: usize,
    ) -> Result<Seen, String> {
        let mut burst = vec![VecBuf::from_frame(&f)];
        p.process_burst(&mut burst, rx);
        let out: Vec<VecBuf> = p.tx_queue(port).drain(..).collect();
        for q in 0..2 {
            p.tx_queue(q).clear();
        }
        p.garbage().clear();
        let frame = out
            .first()
            .ok_or_else(|| format!("nothing sent on port {port}"))?;
        let info = parse_frame(frame.data(), false).map_err(|e| format!("{e:?}"))?;
        let L3Info::Ip(ip) = info.l3 else {
            return Err("not IP".into());
        };
        let Some(l4) = ip.l4.filter(|l| matches!(l.header, L4Header::Tcp { .. })) else {
            return Err("not TCP".into());
        };
        let t = TcpPacket::new_checked(&frame.data()[usize::from(l4.offset)..info.l3_end()])
            .map_err(|e| format!("{e:?}"))?;
        let (sp, dp) = ip.ports().unwrap_or_default();
        Ok(Seen {
            src: SocketAddr::new(ip.addrs.src(), sp),
            dst: SocketAddr::new(ip.addrs.dst(), dp),
            seq: t.seq_number(),
            flags: t.flags(),
            tsval: SynOptions::parse(t.options()).ts.map_or(0, |t| t.0),
        })
    }

    /// Opens `flows` connections; returns one data segment of each.
    pub fn open(
        p: &mut Pipeline<HeapPool>,
        addr: &Addressing,
        lan_mac: MacAddr,
        flows: u32,
        syn_proxy: bool,
    ) -> Result<Vec<Vec<u8>>, String> {
        let vip = SocketAddr::V4(SocketAddrV4::new(addr.vip, addr.tcp_port));
        let linux = |ts: (u32, u32)| SynOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack: true,
            ts: Some(ts),
        };
        let ts = |ts: (u32, u32)| SynOptions {
            ts: Some(ts),
            ..SynOptions::default()
        };
        let (client_mac, us) = (addr.src_mac, addr.dst_mac);
        let mut frames = Vec::with_capacity(flows as usize);
        for i in 0..flows {
            let client = SocketAddr::V4(traffic::client(i));
            let isn = i.wrapping_mul(0x9e37_79b9);
            let server_isn = 0x4000_0000 ^ i;
            let syn = frame(
                client_mac,
                us,
                client,
                vip,
                TcpFlags::SYN,
                (isn, 0),
                linux((100, 0)),
                b"",
            );
            let (ack_to_client, ecr) = if syn_proxy {
                let synack = step(p, syn, 0, 0)?;
                let (cookie, ours) = (synack.seq, synack.tsval);
                let ack = frame(
                    client_mac,
                    us,
                    client,
                    vip,
                    TcpFlags::ACK,
                    (isn.wrapping_add(1), cookie.wrapping_add(1)),
                    ts((101, ours)),
                    b"",
                );
                let to_server = step(p, ack, 0, 1)?;
                if to_server.flags != TcpFlags::SYN {
                    return Err("no SYN to the server".into());
                }
                let answer = frame(
                    SERVER_MAC,
                    lan_mac,
                    to_server.dst,
                    to_server.src,
                    TcpFlags::SYN | TcpFlags::ACK,
                    (server_isn, isn.wrapping_add(1)),
                    SynOptions {
                        wscale: Some(9),
                        ..linux((7000, 101))
                    },
                    b"",
                );
                step(p, answer, 1, 1)?;
                (cookie.wrapping_add(1), ours)
            } else {
                let to_server = step(p, syn, 0, 1)?;
                let answer = frame(
                    SERVER_MAC,
                    lan_mac,
                    to_server.dst,
                    to_server.src,
                    TcpFlags::SYN | TcpFlags::ACK,
                    (server_isn, isn.wrapping_add(1)),
                    SynOptions {
                        wscale: Some(9),
                        ..linux((7000, 100))
                    },
                    b"",
                );
                step(p, answer, 1, 0)?;
                (server_isn.wrapping_add(1), 7000)
            };
            let data = frame(
                client_mac,
                us,
                client,
                vip,
                TcpFlags::ACK | TcpFlags::PSH,
                (isn.wrapping_add(1), ack_to_client),
                ts((102, ecr)),
                &[0x5a; 64],
            );
            // Once now: the connection is established before the run.
            step(p, data.clone(), 0, 1)?;
            frames.push(data);
        }
        Ok(frames)
    }
}
