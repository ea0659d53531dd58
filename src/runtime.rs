//! Brings ferrovs up and down: EAL, mempool, ports, workers on their lcores, and
//! the management loop on the main lcore. Teardown runs in reverse: workers return,
//! ports stop and close, the pool is freed, the EAL cleans up.

use crate::dpdk::eal_args::{eal_args, EalDevice, EalSpec};
use crate::dpdk::{
    self, handoff_ring, launch_on_lcore, Eal, LcoreJoin, Mempool, Port, PortConf, RingConsumer,
    RingProducer,
};
use crate::mgmt::{self, Management, Signals};
use crate::placement::{self, Placement};
use crate::worker::{IdlePolicy, WorkerLoop};
use crossbeam_channel::{bounded, Receiver, Sender};
use ferrovs_core::config::{Config, PortDevice};
use ferrovs_core::packet::MacAddr;
use ferrovs_core::pipeline::{
    has_kernel_interface, Balancer, BalancerLimits, Dataplane, Pipeline, WorkerCommand, WorkerEvent,
};
use ferrovs_core::stats::WorkerStats;
use ferrovs_core::steer::steering_rules;
use ferrovs_core::sync::{outbox, SyncConsumer};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Why ferrovs could not run.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<dpdk::DpdkError> for RunError {
    fn from(e: dpdk::DpdkError) -> Self {
        RunError(e.to_string())
    }
}

/// Capacity of each worker's command channel (config snapshots, neighbours).
const COMMAND_QUEUE: usize = 4096;
/// Capacity of the channel from workers to the management core.
const EVENT_QUEUE: usize = 8192;
/// Connection records a worker's ring to the management core holds (sync).
const SYNC_RING: usize = 16384;
/// Mbufs a handoff ring between two workers holds.
const HANDOFF_RING: u32 = 4096;

/// DPDK objects in the order they must be released: fields drop top to bottom.
struct Resources {
    ports: Vec<Port>,
    /// The kernel interface (TAP) of each port that has one.
    taps: Vec<Option<Port>>,
    /// One packet pool per socket of `placement.pools`, same order.
    pools: Vec<Arc<Mempool>>,
    placement: Placement,
    _eal: Eal,
}

impl Resources {
    /// The packet pool on `socket`.
    fn pool(&self, socket: placement::Socket) -> &Arc<Mempool> {
        &self.pools[self.placement.pool_index(socket)]
    }
}

/// Decides the NUMA placement from where the EAL found the lcores and devices,
/// and logs it.
fn place(cfg: &Config, eal: &Eal) -> Result<Placement, RunError> {
    let workers: Vec<u32> = cfg
        .workers
        .cores
        .iter()
        .map(|&l| dpdk::lcore_socket(l))
        .collect();
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for p in &cfg.ports {
        let socket = dpdk::device_socket(p.device.ethdev_name())
            .map_err(|e| RunError(format!("port {}: {e}", p.name)))?;
        ports.push(socket);
    }
    let placement = placement::place(dpdk::lcore_socket(eal.main_lcore()), &workers, &ports);
    let named: Vec<(&str, Option<u32>)> = cfg
        .ports
        .iter()
        .map(|p| p.name.as_str())
        .zip(ports.iter().copied())
        .collect();
    for line in placement.describe(&cfg.workers.cores, &named) {
        if line.contains("remote memory") {
            log::warn!("{line}");
        } else {
            log::info!("{line}");
        }
    }
    Ok(placement)
}

/// A packet pool per socket of the placement, each of `mempool.mbufs`. A socket
/// without memory of its own (no hugepages there, or `--no-huge`, whose memory
/// has no socket) gets its pool wherever the EAL has memory, with a warning.
fn create_pools(cfg: &Config, placement: &Placement) -> Result<Vec<Arc<Mempool>>, RunError> {
    let mut pools = Vec::with_capacity(placement.pools.len());
    for &socket in &placement.pools {
        let name = format!("ferrovs_pkts_{socket}");
        let (mbufs, cache) = (cfg.mempool.mbufs, cfg.mempool.cache_size);
        let pool = match Mempool::on_socket(&name, mbufs, cache, socket as i32) {
            Ok(pool) => pool,
            Err(e) => {
                log::warn!(
                    "NUMA: no packet pool on socket {socket} ({e}); taking any socket's memory"
                );
                Mempool::on_socket(&name, mbufs, cache, -1)?
            }
        };
        pools.push(Arc::new(pool));
    }
    Ok(pools)
}

/// Runs ferrovs with a validated config until SIGINT/SIGTERM: the steps below in
/// order, then the management loop on this (the main) lcore, then teardown.
pub fn run(cfg: Config, config_path: PathBuf, signals: Signals) -> Result<(), RunError> {
    let started = Instant::now();
    // Per interface: ports, then VLANs.
    let kernel: Vec<bool> = cfg
        .interfaces()
        .map(|i| has_kernel_interface(&cfg, &i))
        .collect();
    let eal = start_eal(&cfg, &kernel)?;
    let placement = place(&cfg, &eal)?;
    let pools = create_pools(&cfg, &placement)?;
    let mut res = Resources {
        ports: Vec::new(),
        taps: Vec::new(),
        pools,
        placement,
        _eal: eal,
    };
    start_ports(&cfg, &mut res)?;
    start_kernel_interfaces(&cfg, &kernel, &mut res)?;
    let macs: Vec<_> = res.ports.iter().map(Port::mac).collect();
    // Shared addresses are claimed once the sync syncer says this member carries them.
    let dataplane = Arc::new(Dataplane::from_config(&cfg, &macs).with_shared(&cfg, &[]));
    install_steering(&mut res.ports, &cfg, &dataplane, cfg.workers.cores.len());
    let (event_tx, event_rx) = bounded::<WorkerEvent>(EVENT_QUEUE);
    let mut limits = BalancerLimits::for_config(
        cfg.connections.max as usize,
        cfg.workers.cores.len(),
        &dataplane.services,
    );
    if let Some(sync) = &cfg.sync {
        limits.local_port_share = sync.local_port_share();
    }
    // The automatic SYN proxy may translate any TCP NAT/FULLNAT connection.
    limits.translation |= cfg.connections.syn_proxy_above > 0;
    // What the kernel interfaces send goes out through worker 0's TX queues: the
    // management core hands it over on a ring, as NICs have no spare TX queue for it.
    let (to_wire, from_kernel) = if res.taps.iter().any(Option::is_some) {
        // Worker 0 reads it.
        let (p, c) = handoff_ring("kernel_to_wire", HANDOFF_RING, res.placement.workers[0])?;
        (Some(p), Some(c))
    } else {
        (None, None)
    };
    let mut workers = launch_workers(&cfg, &mut res, &dataplane, limits, event_tx, from_kernel)?;

    let metrics_listen = cfg.management.metrics_listen;
    let management = start_management(
        cfg,
        config_path,
        &mut res,
        macs,
        limits,
        dataplane,
        &mut workers,
        event_rx,
        to_wire,
    );
    if management.is_ok() {
        log::info!(
            "ready in {} ms: {} port(s), {} worker(s) on lcores {:?}, metrics on http://{}/metrics",
            started.elapsed().as_millis(),
            res.ports.len(),
            workers.joins.len(),
            workers.lcores,
            metrics_listen
        );
        let (ports, n) = (res.ports.len(), workers.joins.len());
        crate::notify::ready(&format!("forwarding: {ports} port(s), {n} worker(s)"));
    }
    let result = management.and_then(|m| m.run(&signals));

    stop_workers(workers);
    release(res);
    result.map_err(RunError)
}

/// Starts the EAL with every port's device, and a TAP device for each port that
/// has a kernel interface.
fn start_eal(cfg: &Config, kernel: &[bool]) -> Result<Eal, RunError> {
    let eal_device = |d: &PortDevice| match d {
        PortDevice::Pci(addr) => EalDevice::Pci(addr.clone()),
        PortDevice::Vdev { spec, .. } => EalDevice::Vdev(spec.clone()),
    };
    let mut devices: Vec<EalDevice> = Vec::with_capacity(cfg.ports.len());
    for p in &cfg.ports {
        // A bond's members first, then the bond naming them (`slave=`).
        devices.extend(p.members.iter().map(eal_device));
        devices.push(match &p.device {
            PortDevice::Pci(addr) => EalDevice::Pci(addr.clone()),
            PortDevice::Vdev { .. } => EalDevice::Vdev(p.eal_device_spec()),
        });
    }
    for (i, iface) in cfg.interfaces().enumerate().filter(|(i, _)| kernel[*i]) {
        devices.push(EalDevice::Vdev(mgmt::kernel::tap_vdev(i, &iface)));
    }
    let args = eal_args(&EalSpec {
        cores: &cfg.eal.cores,
        cpus: &cfg.eal.cpus,
        memory_mb: cfg.eal.memory_mb,
        hugepages: cfg.eal.hugepages,
        file_prefix: &cfg.eal.file_prefix,
        devices: &devices,
        extra: &cfg.eal.args,
    });
    log::info!("starting EAL: {}", args.join(" "));
    let eal = Eal::init(&args)?;
    log::info!(
        "{} initialised, main lcore {}",
        dpdk::version(),
        eal.main_lcore()
    );
    Ok(eal)
}

/// Configures every port with one RX and one TX queue per worker, and starts it.
fn start_ports(cfg: &Config, res: &mut Resources) -> Result<(), RunError> {
    let workers = cfg.workers.cores.len() as u16;
    for (i, p) in cfg.ports.iter().enumerate() {
        let conf = PortConf {
            rx_queues: workers,
            tx_queues: workers,
            rx_descriptors: p.rx_descriptors,
            tx_descriptors: p.tx_descriptors,
            mtu: p.mtu,
            vlans: cfg
                .vlans
                .iter()
                .filter(|v| v.port == i)
                .map(|v| v.id)
                .collect(),
        };
        let queues: Vec<(&Mempool, u32)> = res.placement.queues[i]
            .iter()
            .map(|&socket| (res.pool(socket).as_ref(), socket))
            .collect();
        let port = Port::configure_placed(p.device.ethdev_name(), &conf, &queues)
            .map_err(|e| RunError(format!("port {}: {e}", p.name)))?;
        res.ports.push(port);
    }
    for (i, (port, p)) in res.ports.iter_mut().zip(&cfg.ports).enumerate() {
        port.start()
            .map_err(|e| RunError(format!("port {}: {e}", p.name)))?;
        let link = port.link();
        log::info!(
            "port {} ({}, driver {}): ethdev {}, MAC {}, link {} {} Mb/s, {} queue(s), \
             IPv4 checksum verified by {}",
            p.name,
            p.device,
            port.driver(),
            port.id(),
            port.mac(),
            if link.up { "up" } else { "down" },
            link.speed_mbps,
            port.queues(),
            if port.rx_ipv4_checksum_offload() {
                "the NIC"
            } else {
                "software"
            }
        );
        let vlans: Vec<String> = cfg
            .vlans
            .iter()
            .filter(|v| v.port == i)
            .map(|v| format!("{} ({})", v.id, v.name))
            .collect();
        if !vlans.is_empty() {
            log::info!(
                "port {}: VLANs {}; {}",
                p.name,
                vlans.join(", "),
                port.vlan_offloads().describe()
            );
        }
    }
    Ok(())
}

/// Starts the exception path: each interface (port or VLAN) that has one gets a
/// kernel interface (a TAP named like it, with its port's MAC and MTU and its own
/// addresses), started like a port.
fn start_kernel_interfaces(
    cfg: &Config,
    kernel: &[bool],
    res: &mut Resources,
) -> Result<(), RunError> {
    let workers = cfg.workers.cores.len() as u16;
    for (i, iface) in cfg.interfaces().enumerate() {
        if !kernel[i] {
            res.taps.push(None);
            continue;
        }
        let mac = res.ports[iface.port].mac();
        let mtu = cfg.ports[iface.port].mtu;
        let conf = PortConf {
            rx_queues: workers,
            tx_queues: workers,
            rx_descriptors: 512,
            tx_descriptors: 512,
            mtu,
            vlans: Vec::new(),
        };
        let what = if iface.vlan == 0 { "port" } else { "VLAN" };
        let tap_error =
            |e: String| RunError(format!("{what} {}: kernel interface: {e}", iface.name));
        let main_pool = res.pool(res.placement.main).clone();
        let mut tap = Port::configure(&mgmt::kernel::tap_device(i), &conf, &main_pool)
            .map_err(|e| tap_error(e.to_string()))?;
        tap.start().map_err(|e| tap_error(e.to_string()))?;
        if let Err(e) = tap.set_mac(mac) {
            log::debug!(
                "{what} {}: TAP MAC through DPDK: {e}; setting it with ip",
                iface.name
            );
        }
        mgmt::kernel::configure_interface(&iface, mtu, mac).map_err(tap_error)?;
        log::info!(
            "{what} {}: kernel interface {} with {}",
            iface.name,
            iface.name,
            iface
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        res.taps.push(Some(tap));
    }
    Ok(())
}

/// The running workers, as the management core and teardown need them.
struct Workers {
    joins: Vec<LcoreJoin>,
    lcores: Vec<u32>,
    stats: Vec<Arc<WorkerStats>>,
    commands: Vec<Sender<WorkerCommand>>,
    stop: Arc<AtomicBool>,
    /// With sync: each worker's ring of connection records, for the management core.
    sync_rings: Vec<SyncConsumer>,
}

/// The handoff rings between workers: `outboxes[from][to]` (None where `from ==
/// to`) and the matching consumers, `inboxes[to]`.
type HandoffRings = (Vec<Vec<Option<RingProducer>>>, Vec<Vec<RingConsumer>>);

/// Creates one ring per ordered pair of workers, for packets that reached a worker
/// other than their connection's owner, each on its reader's socket
/// (`sockets[w]`: worker `w`'s).
fn handoff_rings(sockets: &[u32]) -> Result<HandoffRings, RunError> {
    let workers = sockets.len();
    let mut outboxes = Vec::with_capacity(workers);
    let mut inboxes: Vec<Vec<RingConsumer>> = (0..workers).map(|_| Vec::new()).collect();
    for from in 0..workers {
        let mut row = Vec::with_capacity(workers);
        for (to, inbox) in inboxes.iter_mut().enumerate() {
            if to == from {
                row.push(None);
                continue;
            }
            let (p, c) = handoff_ring(&format!("handoff_{from}_{to}"), HANDOFF_RING, sockets[to])?;
            row.push(Some(p));
            inbox.push(c);
        }
        outboxes.push(row);
    }
    Ok((outboxes, inboxes))
}

/// Builds a pipeline per worker (its tables allocated here, before any packet),
/// gives it its queues of every port and launches its poll loop on its lcore.
/// Worker 0 also sends what the kernel interfaces transmit (`from_kernel`).
fn launch_workers(
    cfg: &Config,
    res: &mut Resources,
    dataplane: &Arc<Dataplane>,
    limits: BalancerLimits,
    events: Sender<WorkerEvent>,
    mut from_kernel: Option<RingConsumer>,
) -> Result<Workers, RunError> {
    let workers = cfg.workers.cores.len();
    let idle = if cfg.workers.idle_backoff {
        IdlePolicy::Backoff {
            max: cfg.workers.idle_sleep_max,
        }
    } else {
        IdlePolicy::BusyPoll
    };
    let (mut outboxes, mut inboxes) = handoff_rings(&res.placement.workers)?;
    let nic_checks_ipv4: Vec<bool> = res
        .ports
        .iter()
        .map(Port::rx_ipv4_checksum_offload)
        .collect();
    let nic_strips_vlan: Vec<bool> = res.ports.iter().map(|p| p.vlan_offloads().strip).collect();
    let nic_inserts_vlan: Vec<bool> = res.ports.iter().map(|p| p.vlan_offloads().insert).collect();
    let mut running = Workers {
        joins: Vec::with_capacity(workers),
        lcores: cfg.workers.cores.clone(),
        stats: Vec::with_capacity(workers),
        commands: Vec::with_capacity(workers),
        stop: Arc::new(AtomicBool::new(false)),
        sync_rings: Vec::new(),
    };
    for (w, &lcore) in cfg.workers.cores.iter().enumerate() {
        let stats = Arc::new(
            WorkerStats::new(dataplane.services.real_server_slots()).with_vlans(cfg.vlans.len()),
        );
        let (command_tx, command_rx) = bounded::<WorkerCommand>(COMMAND_QUEUE);
        let q = w as u16;
        let mut rx = Vec::with_capacity(res.ports.len());
        let mut tx = Vec::with_capacity(res.ports.len());
        for port in res.ports.iter_mut() {
            rx.push(
                port.take_rx_queue(q)
                    .expect("queue per worker was configured"),
            );
            tx.push(
                port.take_tx_queue(q)
                    .expect("queue per worker was configured"),
            );
        }
        let kernel_tx = res
            .taps
            .iter_mut()
            .map(|t| t.as_mut().and_then(|t| t.take_tx_queue(q)))
            .collect();
        // The connection tables on the worker's socket (ferrovs_mem::on_node binds
        // their pages there before the first touch, here on the main core).
        let socket = res.placement.workers[w];
        let mut lb = ferrovs_mem::on_node(Some(socket), || {
            Balancer::new(&dataplane.services, limits, &dataplane.timeouts, w, workers)
        })
        .map_err(|e| RunError(format!("worker {w}: connection tables: {e}")))?;
        if cfg.sync.is_some() {
            let (producer, consumer) = outbox(SYNC_RING);
            lb.set_sync(producer);
            running.sync_rings.push(consumer);
        }
        let pipeline = Pipeline::new(
            w,
            workers,
            dataplane.clone(),
            lb,
            res.pool(socket).clone(),
            stats.clone(),
            events.clone(),
            usize::from(cfg.workers.burst),
        )
        .with_rx_ipv4_checksum_offload(&nic_checks_ipv4)
        .with_vlan_offloads(&nic_strips_vlan, &nic_inserts_vlan);
        let job = WorkerLoop {
            pipeline,
            rx,
            tx,
            commands: command_rx,
            kernel: kernel_tx,
            from_kernel: if w == 0 { from_kernel.take() } else { None },
            outboxes: std::mem::take(&mut outboxes[w]),
            inboxes: std::mem::take(&mut inboxes[w]),
            stop: running.stop.clone(),
            burst: usize::from(cfg.workers.burst),
            idle,
        };
        let join = launch_on_lcore(lcore, move || job.run())
            .map_err(|e| RunError(format!("worker {w}: {e}")))?;
        running.joins.push(join);
        running.stats.push(stats);
        running.commands.push(command_tx);
    }
    Ok(running)
}

/// Sets up the management core (metrics, control socket, health checks, the
/// kernel interfaces' receive side) with everything it watches and drives.
#[allow(clippy::too_many_arguments)]
fn start_management(
    cfg: Config,
    config_path: PathBuf,
    res: &mut Resources,
    macs: Vec<MacAddr>,
    limits: BalancerLimits,
    dataplane: Arc<Dataplane>,
    workers: &mut Workers,
    events: Receiver<WorkerEvent>,
    to_wire: Option<RingProducer>,
) -> Result<Management, String> {
    let port_meta = cfg
        .ports
        .iter()
        .zip(&res.ports)
        .map(|(c, p)| mgmt::metrics::PortMeta {
            name: c.name.clone(),
            dpdk_id: p.id(),
        })
        .collect();
    let queues = workers.joins.len() as u16;
    let links = res
        .taps
        .iter_mut()
        .enumerate()
        .filter_map(|(i, tap)| {
            let tap = tap.as_mut()?;
            Some(mgmt::kernel::KernelLink {
                port: i,
                from_kernel: (0..queues).filter_map(|q| tap.take_rx_queue(q)).collect(),
            })
        })
        .collect();
    let pools = res.pools.clone();
    Management::new(mgmt::Setup {
        config: cfg,
        config_path,
        macs,
        limits,
        dataplane,
        ports: port_meta,
        workers: workers.stats.clone(),
        sync_rings: std::mem::take(&mut workers.sync_rings),
        mempool_available: Box::new(move || pools.iter().map(|p| u64::from(p.available())).sum()),
        commands: workers.commands.clone(),
        events,
        kernel: mgmt::kernel::KernelPath::new(links, to_wire),
    })
}

/// Teardown, first: every worker leaves its loop and its lcore returns.
fn stop_workers(workers: Workers) {
    log::info!("stopping workers");
    workers.stop.store(true, Ordering::SeqCst);
    for j in workers.joins {
        let lcore = j.lcore();
        let code = j.join();
        if code != 0 {
            log::error!("worker on lcore {lcore} exited with {code}");
        }
    }
}

/// Teardown, last: ports and kernel interfaces close (returning the mbufs in
/// their rings), the pool is freed, the EAL cleans up.
fn release(mut res: Resources) {
    res.taps.clear();
    res.ports.clear();
    let in_use: u32 = res.pools.iter().map(|p| p.in_use()).sum();
    if in_use != 0 {
        log::warn!("{in_use} mbufs still in use at shutdown");
    }
    drop(res);
    log::info!("stopped cleanly");
}

/// Installs the rte_flow rules that send each connection to its owner worker's
/// queue on every port. Only an optimisation: whatever a port refuses is logged and
/// left to the software handoff between workers.
fn install_steering(ports: &mut [Port], cfg: &Config, dataplane: &Dataplane, workers: usize) {
    if workers < 2 {
        log::info!("one worker owns every connection: no steering rules needed");
        return;
    }
    if !workers.is_power_of_two() {
        log::info!(
            "{workers} workers (not a power of two, which NIC port masks need): \
             steering by software handoff only"
        );
        return;
    }
    let rules = steering_rules(&dataplane.services, &dataplane.owners, workers);
    if rules.is_empty() {
        log::info!("no services: no steering rules, software handoff only");
        return;
    }
    for (port, p) in ports.iter_mut().zip(&cfg.ports) {
        let report = port.create_flows(&rules);
        if report.complete() {
            log::info!("port {}: {report}", p.name);
        } else {
            log::warn!("port {}: {report}", p.name);
        }
    }
}
