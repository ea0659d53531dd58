//! The management core: metrics, the neighbour view shared by all workers, and
//! (later) the control socket, reload and health checks. Runs on the EAL main lcore,
//! never on a worker core, and never blocks a worker: it talks to them only through
//! bounded channels that it polls.

pub mod http;
pub mod metrics;

use crate::config::Config;
use crate::packet::MacAddr;
use crate::runtime::Signals;
use crate::service::Services;
use crate::stats::WorkerStats;
use crate::worker::{WorkerCommand, WorkerEvent};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use metrics::{PortMeta, ReadFn, Telemetry};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the management loop wakes to read worker events.
const POLL: Duration = Duration::from_millis(5);

/// Management-core state.
pub struct Management {
    _http: http::MetricsServer,
    commands: Vec<Sender<WorkerCommand>>,
    events: Receiver<WorkerEvent>,
    /// Every neighbour any worker learned, so all workers share one view.
    neighbors: HashMap<IpAddr, (MacAddr, usize)>,
}

impl Management {
    pub fn new(
        cfg: &Config,
        ports: Vec<PortMeta>,
        workers: Vec<Arc<WorkerStats>>,
        mempool_available: ReadFn,
        services: Arc<Services>,
        commands: Vec<Sender<WorkerCommand>>,
        events: Receiver<WorkerEvent>,
    ) -> Result<Management, String> {
        let telemetry = Telemetry::new(
            ports,
            workers,
            Box::new(crate::dpdk::port_stats),
            mempool_available,
            Arc::new(Mutex::new(services)),
            u64::from(cfg.connections.max),
        );
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(telemetry))
            .map_err(|e| format!("metrics registry: {e}"))?;
        let http = http::MetricsServer::start(cfg.management.metrics_listen, registry)?;
        Ok(Management {
            _http: http,
            commands,
            events,
            neighbors: HashMap::new(),
        })
    }

    /// Serves until SIGINT/SIGTERM.
    pub fn run(mut self, signals: &Signals) -> Result<(), String> {
        while !signals.stop.load(Ordering::Relaxed) {
            while let Ok(ev) = self.events.try_recv() {
                self.handle(ev);
            }
            if signals.reload.swap(false, Ordering::Relaxed) {
                log::warn!("SIGHUP: configuration reload is not available in this build; running config unchanged");
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    fn handle(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::NeighborLearned { ip, mac, port } => {
                if self.neighbors.insert(ip, (mac, port)) == Some((mac, port)) {
                    return;
                }
                log::debug!("neighbour {ip} is at {mac} on port {port}");
                self.broadcast(WorkerCommand::Neighbor { ip, mac, port });
            }
        }
    }

    /// Sends `cmd` to every worker without blocking; a full queue loses the message
    /// (for neighbours, the worker learns them again from the next ARP exchange).
    fn broadcast(&self, cmd: WorkerCommand) {
        for (w, tx) in self.commands.iter().enumerate() {
            if let Err(TrySendError::Full(_)) = tx.try_send(cmd.clone()) {
                log::warn!("worker {w}: command queue full, update dropped");
            }
        }
    }
}
