//! Brings ferrovs up and down: EAL, mempool, ports, workers on their lcores, and
//! the management loop on the main lcore. Teardown runs in reverse: workers return,
//! ports stop and close, the pool is freed, the EAL cleans up.

use crate::dpdk::eal_args::{eal_args, EalDevice, EalSpec};
use crate::dpdk::{
    self, handoff_ring, launch_on_lcore, Eal, LcoreJoin, Mempool, Port, PortConf, RingConsumer,
    RingProducer,
};
use crate::mgmt::{self, Management, Signals};
use crate::worker::{IdlePolicy, WorkerLoop};
use crossbeam_channel::{bounded, Receiver, Sender};
use ferrovs_core::config::{Config, PortDevice};
use ferrovs_core::pipeline::{
    has_kernel_interface, Balancer, BalancerLimits, Dataplane, Pipeline, WorkerCommand, WorkerEvent,
};
use ferrovs_core::stats::WorkerStats;
use ferrovs_core::steer::steering_rules;
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
/// Mbufs a handoff ring between two workers holds.
const HANDOFF_RING: u32 = 4096;

/// DPDK objects in the order they must be released: fields drop top to bottom.
struct Resources {
    ports: Vec<Port>,
    /// The kernel interface (TAP) of each port that has one.
    taps: Vec<Option<Port>>,
    pool: Arc<Mempool>,
    _eal: Eal,
}

/// Runs ferrovs with a validated config until SIGINT/SIGTERM.
pub fn run(cfg: Config, config_path: PathBuf, signals: Signals) -> Result<(), RunError> {
    let started = Instant::now();
    let kernel: Vec<bool> = cfg
        .ports
        .iter()
        .map(|p| has_kernel_interface(&cfg, p))
        .collect();
    let mut devices: Vec<EalDevice> = cfg
        .ports
        .iter()
        .map(|p| match &p.device {
            PortDevice::Pci(addr) => EalDevice::Pci(addr.clone()),
            PortDevice::Vdev { spec, .. } => EalDevice::Vdev(spec.clone()),
        })
        .collect();
    for (i, p) in cfg.ports.iter().enumerate().filter(|(i, _)| kernel[*i]) {
        devices.push(EalDevice::Vdev(mgmt::kernel::tap_vdev(i, p)));
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

    let workers = cfg.workers.cores.len();
    let pool = Arc::new(Mempool::new(
        "ferrovs_pkts",
        cfg.mempool.mbufs,
        cfg.mempool.cache_size,
    )?);
    let mut res = Resources {
        ports: Vec::new(),
        taps: Vec::new(),
        pool,
        _eal: eal,
    };
    for p in &cfg.ports {
        let conf = PortConf {
            rx_queues: workers as u16,
            tx_queues: workers as u16,
            rx_descriptors: p.rx_descriptors,
            tx_descriptors: p.tx_descriptors,
            mtu: p.mtu,
        };
        let port = Port::configure(p.device.ethdev_name(), &conf, &res.pool)
            .map_err(|e| RunError(format!("port {}: {e}", p.name)))?;
        res.ports.push(port);
    }
    for (port, p) in res.ports.iter_mut().zip(&cfg.ports) {
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
    }

    let macs: Vec<_> = res.ports.iter().map(Port::mac).collect();
    for (i, p) in cfg.ports.iter().enumerate() {
        if !kernel[i] {
            res.taps.push(None);
            continue;
        }
        let conf = PortConf {
            rx_queues: workers as u16,
            tx_queues: workers as u16,
            rx_descriptors: 512,
            tx_descriptors: 512,
            mtu: p.mtu,
        };
        let tap_error = |e: String| RunError(format!("port {}: kernel interface: {e}", p.name));
        let mut tap = Port::configure(&mgmt::kernel::tap_device(i), &conf, &res.pool)
            .map_err(|e| tap_error(e.to_string()))?;
        tap.start().map_err(|e| tap_error(e.to_string()))?;
        if let Err(e) = tap.set_mac(macs[i]) {
            log::debug!(
                "port {}: TAP MAC through DPDK: {e}; setting it with ip",
                p.name
            );
        }
        mgmt::kernel::configure_interface(p, macs[i]).map_err(tap_error)?;
        log::info!(
            "port {}: kernel interface {} with {}",
            p.name,
            p.name,
            p.addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        res.taps.push(Some(tap));
    }
    let dataplane = Arc::new(Dataplane::from_config(&cfg, &macs));
    install_steering(&mut res.ports, &cfg, &dataplane, workers);
    let (event_tx, event_rx): (Sender<WorkerEvent>, Receiver<WorkerEvent>) = bounded(EVENT_QUEUE);
    let idle = if cfg.workers.idle_backoff {
        IdlePolicy::Backoff {
            max: cfg.workers.idle_sleep_max,
        }
    } else {
        IdlePolicy::BusyPoll
    };

    let limits =
        BalancerLimits::for_config(cfg.connections.max as usize, workers, &dataplane.services);
    let timeouts = dataplane.timeouts;
    // Handoff rings: one per ordered pair of workers, producer side at the sender.
    let mut outboxes: Vec<Vec<Option<RingProducer>>> = Vec::with_capacity(workers);
    let mut inboxes: Vec<Vec<RingConsumer>> = (0..workers).map(|_| Vec::new()).collect();
    for from in 0..workers {
        let mut row = Vec::with_capacity(workers);
        for (to, inbox) in inboxes.iter_mut().enumerate() {
            if to == from {
                row.push(None);
                continue;
            }
            let (p, c) = handoff_ring(&format!("handoff_{from}_{to}"), HANDOFF_RING)?;
            row.push(Some(p));
            inbox.push(c);
        }
        outboxes.push(row);
    }
    // What the kernel interfaces send goes out through worker 0's TX queues: the
    // management core hands it over on a ring, as NICs have no spare TX queue for it.
    let (to_wire, mut from_kernel) = if res.taps.iter().any(Option::is_some) {
        let (p, c) = handoff_ring("kernel_to_wire", HANDOFF_RING)?;
        (Some(p), Some(c))
    } else {
        (None, None)
    };
    let nic_checks_ipv4: Vec<bool> = res
        .ports
        .iter()
        .map(Port::rx_ipv4_checksum_offload)
        .collect();
    let mut stats = Vec::with_capacity(workers);
    let mut command_tx = Vec::with_capacity(workers);
    let mut joins: Vec<LcoreJoin> = Vec::with_capacity(workers);
    let worker_stop = Arc::new(AtomicBool::new(false));
    for (w, &lcore) in cfg.workers.cores.iter().enumerate() {
        let ws = Arc::new(WorkerStats::new(dataplane.services.real_server_slots()));
        let (ctx, crx) = bounded::<WorkerCommand>(COMMAND_QUEUE);
        let mut rx = Vec::with_capacity(res.ports.len());
        let mut tx = Vec::with_capacity(res.ports.len());
        for port in res.ports.iter_mut() {
            let q = w as u16;
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
            .map(|t| t.as_mut().and_then(|t| t.take_tx_queue(w as u16)))
            .collect();
        let lb = Balancer::new(&dataplane.services, limits, &timeouts, w, workers)
            .map_err(|e| RunError(format!("worker {w}: connection tables: {e}")))?;
        let pipeline = Pipeline::new(
            w,
            workers,
            dataplane.clone(),
            lb,
            res.pool.clone(),
            ws.clone(),
            event_tx.clone(),
            usize::from(cfg.workers.burst),
        )
        .with_rx_ipv4_checksum_offload(&nic_checks_ipv4);
        let job = WorkerLoop {
            pipeline,
            rx,
            tx,
            commands: crx,
            kernel: kernel_tx,
            from_kernel: if w == 0 { from_kernel.take() } else { None },
            outboxes: std::mem::take(&mut outboxes[w]),
            inboxes: std::mem::take(&mut inboxes[w]),
            stop: worker_stop.clone(),
            burst: usize::from(cfg.workers.burst),
            idle,
        };
        let join = launch_on_lcore(lcore, move || job.run())
            .map_err(|e| RunError(format!("worker {w}: {e}")))?;
        joins.push(join);
        stats.push(ws);
        command_tx.push(ctx);
    }
    drop(event_tx);

    let port_meta = cfg
        .ports
        .iter()
        .zip(&res.ports)
        .map(|(c, p)| mgmt::metrics::PortMeta {
            name: c.name.clone(),
            dpdk_id: p.id(),
        })
        .collect();
    let mut links = Vec::new();
    for (i, tap) in res.taps.iter_mut().enumerate() {
        let Some(tap) = tap else { continue };
        links.push(mgmt::kernel::KernelLink {
            port: i,
            from_kernel: (0..workers as u16)
                .filter_map(|q| tap.take_rx_queue(q))
                .collect(),
        });
    }
    let pool = res.pool.clone();
    let (metrics_listen, worker_cores) = (cfg.management.metrics_listen, cfg.workers.cores.clone());
    let management = Management::new(mgmt::Setup {
        config: cfg,
        config_path,
        macs,
        limits,
        dataplane,
        ports: port_meta,
        workers: stats,
        mempool_available: Box::new(move || u64::from(pool.available())),
        commands: command_tx,
        events: event_rx,
        kernel: mgmt::kernel::KernelPath::new(links, to_wire),
    });
    if management.is_ok() {
        log::info!(
            "ready in {} ms: {} port(s), {} worker(s) on lcores {:?}, metrics on http://{}/metrics",
            started.elapsed().as_millis(),
            res.ports.len(),
            workers,
            worker_cores,
            metrics_listen
        );
    }
    let result = management.and_then(|m| m.run(&signals));

    log::info!("stopping workers");
    worker_stop.store(true, Ordering::SeqCst);
    for j in joins {
        let lcore = j.lcore();
        let code = j.join();
        if code != 0 {
            log::error!("worker on lcore {lcore} exited with {code}");
        }
    }
    // Closing the ports returns the mbufs sitting in their RX rings to the pool.
    res.taps.clear();
    res.ports.clear();
    let in_use = res.pool.in_use();
    if in_use != 0 {
        log::warn!("{in_use} mbufs still in use at shutdown");
    }
    drop(res);
    log::info!("stopped cleanly");
    result.map_err(RunError)
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
    let rules = steering_rules(&dataplane.services, workers);
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
