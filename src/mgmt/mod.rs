//! The management core: metrics, the control socket, reload, health checks, and
//! the neighbour view shared by all workers. Runs on the EAL main lcore, never on a
//! worker core, and never blocks a worker: it talks to them only through bounded
//! channels that they poll between bursts.

pub mod announce;
pub mod control;
pub mod health;
pub mod http;
pub mod kernel;
pub mod links;
pub mod metrics;
pub mod rates;
pub mod state;
pub mod sync;

use crate::ctl::proto::{self, Request, Response};
use announce::{AnnouncedVips, Announcer, KernelRoutes};
use control::{ControlServer, Pending};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use ferrovs_core::config::{Config, PortDevice};
use ferrovs_core::forward::syncookie::{CookieKeys, CookieSecret};
use ferrovs_core::packet::MacAddr;
use ferrovs_core::pipeline::{
    BalancerLimits, ConnChunk, ConnQuery, ConnSnapshot, Dataplane, WorkerCommand, WorkerEvent,
};
use ferrovs_core::service::{endpoint, Services};
use ferrovs_core::stats::{RealServerStats, WorkerStats};
use ferrovs_core::sync::SyncConsumer;
use health::HealthChecker;
use metrics::{PortMeta, ReadFn, Telemetry, VlanMeta};
use rates::RateEstimator;
use state::ConfigState;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync::Syncer;

/// Flags the signal handlers set and the management loop reads.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// SIGINT/SIGTERM: stop.
    pub stop: Arc<AtomicBool>,
    /// SIGHUP: reload the configuration.
    pub reload: Arc<AtomicBool>,
}

/// How often the management loop wakes to read worker events and requests, and to
/// move the kernel interfaces' packets.
const POLL: Duration = Duration::from_millis(2);
/// How often VIP routes the kernel refused are tried again.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(1);
/// Rate estimator sampling period.
const RATE_PERIOD: Duration = Duration::from_secs(1);
/// How often the SYN cookie key is replaced (cookies made with the one before
/// are accepted until the next rotation).
const COOKIE_ROTATION: Duration = Duration::from_secs(60);
/// Connections listed by default.
const DEFAULT_CONN_LIMIT: usize = 1000;
/// Slots a worker scans per listing step (a pause of well under a millisecond).
const SCAN_STEP: usize = 65536;

/// Pins the calling management thread (HTTP, control socket, health checks) to the
/// management core's CPU, so no management work ever lands on a worker's core.
pub fn pin_to_management_cpu(cpu: u32) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu as usize }) {
        log::warn!("cannot pin a management thread to CPU {cpu}");
    }
}

/// Raises the soft limit on open descriptors to the hard one. The listeners are
/// capped well below the default 1024 anyway; the headroom is for health checks,
/// the exception path and announcing, which must never go without.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
            }
        }
    }
}

/// What the management core needs from the runtime.
pub struct Setup {
    /// The validated configuration ferrovs started with.
    pub config: Config,
    /// The file it was read from, read again on reload.
    pub config_path: PathBuf,
    /// The ports' MAC addresses, in configuration order.
    pub macs: Vec<MacAddr>,
    /// The workers' table sizes, which a reload cannot change.
    pub limits: BalancerLimits,
    /// The snapshot the workers start with.
    pub dataplane: Arc<Dataplane>,
    /// Name and ethdev id of each port, for the metrics.
    pub ports: Vec<PortMeta>,
    /// Every worker's counters, indexed by worker.
    pub workers: Vec<Arc<WorkerStats>>,
    /// With sync: each worker's ring of connection records, indexed by worker.
    pub sync_rings: Vec<SyncConsumer>,
    /// Reads the free mbufs of the packet mempool.
    pub mempool_available: ReadFn,
    /// One command channel per worker, indexed by worker.
    pub commands: Vec<Sender<WorkerCommand>>,
    /// Events from all workers.
    pub events: Receiver<WorkerEvent>,
    /// Moves what the kernel interfaces send towards the wire; the loop polls it.
    pub kernel: kernel::KernelPath,
}

/// Management-core state.
pub struct Management {
    _http: http::MetricsServer,
    _control: ControlServer,
    requests: Receiver<Pending>,
    commands: Vec<Sender<WorkerCommand>>,
    events: Receiver<WorkerEvent>,
    workers: Vec<Arc<WorkerStats>>,
    /// Every neighbour any worker learned, so all workers share one view.
    neighbors: HashMap<IpAddr, (MacAddr, usize)>,
    state: ConfigState,
    health: HealthChecker,
    dataplane: Arc<Dataplane>,
    metrics_services: Arc<Mutex<Arc<Services>>>,
    rates: RateEstimator,
    last_rates: Instant,
    kernel: kernel::KernelPath,
    /// The ports' links and the bonds' members.
    links: links::LinkWatch,
    /// The VIP routes for the routing daemon, with `announce`.
    announcer: Option<Announcer<KernelRoutes>>,
    last_announce: Instant,
    /// Connection sync with the other members, with `sync`.
    sync: Option<Syncer>,
    /// When to advertise the own addresses again (after taking shared addresses
    /// over: one gratuitous ARP can be lost or ignored).
    readvertise: Vec<Instant>,
    /// The SYN cookie keys the workers hold, and when they were last rotated.
    cookie_keys: CookieKeys,
    last_cookie_rotation: Instant,
}

impl Management {
    /// Pins the calling thread to the management CPU and starts the metrics
    /// endpoint, the control socket and the health checks; [`Management::run`] then
    /// serves.
    pub fn new(setup: Setup) -> Result<Management, String> {
        let metrics_services = Arc::new(Mutex::new(Arc::new(setup.dataplane.services.clone())));
        let announced = AnnouncedVips::default();
        let sync = match setup.config.sync.clone() {
            Some(cfg) => Some(Syncer::new(cfg, setup.sync_rings)?),
            None => None,
        };
        let sync_stats = sync.as_ref().map(Syncer::stats);
        let link_view = metrics::PortLinks::default();
        let watched: Vec<_> = setup
            .ports
            .iter()
            .zip(&setup.macs)
            .zip(&setup.config.ports)
            .map(|((meta, mac), p)| links::WatchedPort {
                name: meta.name.clone(),
                id: meta.dpdk_id,
                mac: *mac,
                bond_period: match &p.device {
                    PortDevice::Vdev { spec, .. } if p.is_bond() => Some(links::bond_period(spec)),
                    _ => None,
                },
            })
            .collect();
        let links = links::LinkWatch::new(&watched, link_view.clone());
        let telemetry = Telemetry::new(
            setup.ports,
            setup.workers.clone(),
            Box::new(crate::dpdk::port_stats),
            setup.mempool_available,
            metrics_services.clone(),
            u64::from(setup.config.connections.max),
        )
        .with_announced(announced.clone())
        .with_links(link_view)
        .with_sync(sync_stats)
        .with_vlans(
            setup
                .config
                .vlans
                .iter()
                .map(|v| VlanMeta {
                    port: setup.config.ports[v.port].name.clone(),
                    id: v.id,
                })
                .collect(),
        );
        let announcer = match setup.config.announce {
            Some(a) => Some(Announcer::new(
                KernelRoutes {
                    table: a.kernel_table,
                },
                announced,
            )?),
            None => None,
        };
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(telemetry))
            .map_err(|e| format!("metrics registry: {e}"))?;
        let cpu = setup.config.eal.cpus[0];
        pin_to_management_cpu(cpu);
        raise_descriptor_limit();
        let http =
            http::MetricsServer::start(setup.config.management.metrics_listen, registry, cpu)?;
        let (req_tx, req_rx) = bounded(64);
        let control = ControlServer::start(&setup.config.management.control_socket, req_tx, cpu)?;
        let state = ConfigState::new(setup.config_path, setup.config, setup.macs, setup.limits)?;
        let mut health = HealthChecker::new(cpu);
        health.sync(&state.config, Instant::now());
        Ok(Management {
            _http: http,
            _control: control,
            requests: req_rx,
            commands: setup.commands,
            events: setup.events,
            workers: setup.workers,
            neighbors: HashMap::new(),
            state,
            health,
            cookie_keys: setup.dataplane.cookie_keys,
            last_cookie_rotation: Instant::now(),
            dataplane: setup.dataplane,
            metrics_services,
            rates: RateEstimator::default(),
            last_rates: Instant::now(),
            kernel: setup.kernel,
            links,
            announcer,
            last_announce: Instant::now(),
            sync,
            readvertise: Vec::new(),
        })
    }

    /// Serves until SIGINT/SIGTERM. ferrovs is ready when this starts: its VIPs
    /// are announced and its addresses advertised. A stop signal withdraws the
    /// VIPs; with any announced, forwarding goes on for `announce.shutdown_grace`
    /// (a second signal ends it at once).
    pub fn run(mut self, signals: &Signals) -> Result<(), String> {
        if let Some(a) = self.announcer.as_mut() {
            a.activate(&self.state.config, &self.dataplane.services);
        }
        self.advertise_addresses();
        let mut stop_at: Option<Instant> = None;
        let mut watchdog = crate::notify::Watchdog::from_env();
        loop {
            if signals.stop.swap(false, Ordering::Relaxed) {
                crate::notify::stopping();
                if stop_at.is_some() {
                    log::info!("stop signal again: stopping now");
                    break;
                }
                let grace = self.withdraw_for_stop();
                if grace.is_zero() {
                    break;
                }
                log::info!(
                    "stopping: VIPs withdrawn; forwarding {} ms more while the routers move \
                     the traffic away (signal again to stop now)",
                    grace.as_millis()
                );
                stop_at = Some(Instant::now() + grace);
            }
            if stop_at.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            while let Ok(ev) = self.events.try_recv() {
                self.handle_event(ev);
            }
            while let Ok(p) = self.requests.try_recv() {
                // A request whose client stopped waiting is not applied: it would
                // never learn the outcome.
                let response = if Instant::now() >= p.deadline {
                    log::warn!("control: a request waited past its deadline; not applied");
                    control::expired()
                } else {
                    self.handle_request(p.request)
                };
                let _ = p.reply.send(response);
            }
            if signals.reload.swap(false, Ordering::Relaxed) {
                match self.reload() {
                    Ok(changes) => {
                        log::info!("SIGHUP: configuration reloaded: {}", changes.join("; "))
                    }
                    Err(errors) => log::error!(
                        "SIGHUP: reload refused, running configuration unchanged:\n{}",
                        errors.join("\n")
                    ),
                }
            }
            if self.last_rates.elapsed() >= RATE_PERIOD {
                self.sample_rates();
            }
            if self.last_cookie_rotation.elapsed() >= COOKIE_ROTATION {
                self.rotate_cookie_keys();
            }
            self.check_health();
            if self.last_announce.elapsed() >= ANNOUNCE_RETRY {
                // Routes the kernel refused earlier are tried again.
                self.last_announce = Instant::now();
                if let Some(a) = self.announcer.as_mut() {
                    a.update(&self.state.config, &self.dataplane.services);
                }
            }
            self.poll_sync();
            self.kernel.poll();
            self.poll_links();
            watchdog.feed(&self.workers);
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Connection sync's poll; a change of the shared addresses this member
    /// carries is published to the workers and advertised (again a second and
    /// two seconds later, as gratuitous ARP is easily missed).
    fn poll_sync(&mut self) {
        let now = Instant::now();
        let changed = match self.sync.as_mut() {
            Some(s) => s.poll(now, &self.dataplane, &self.commands),
            None => return,
        };
        if changed {
            self.publish();
            self.advertise_addresses();
            self.readvertise = vec![now + Duration::from_secs(1), now + Duration::from_secs(2)];
        }
        if self.readvertise.first().is_some_and(|t| now >= *t) {
            self.readvertise.remove(0);
            self.advertise_addresses();
        }
    }

    /// `ferrovs ctl sync`.
    fn sync_view(&self) -> Response {
        let Some(s) = &self.sync else {
            return Response::Error {
                errors: vec!["sync is not configured: this instance is alone".into()],
            };
        };
        let stats = s.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let status = stats
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sum = |get: fn(&WorkerStats) -> u64| self.workers.iter().map(|w| get(w)).sum();
        Response::Sync {
            sync: proto::SyncView {
                listen: status.listen.map(|l| l.to_string()).unwrap_or_default(),
                ready: status.ready,
                peers: status
                    .peers
                    .iter()
                    .map(|p| proto::SyncPeerView {
                        address: p.addr.to_string(),
                        up: p.up,
                        ready: p.ready,
                        last_heard_ms: p.last_heard_ms,
                        datagrams: p.datagrams,
                    })
                    .collect(),
                datagrams_sent: load(&stats.datagrams_sent),
                datagrams_received: load(&stats.datagrams_received),
                records_sent: load(&stats.records_sent),
                records_received: load(&stats.records_received),
                installed: sum(|w| w.sync_installed.get()),
                refused: sum(|w| w.sync_refused.get()),
                lost: sum(|w| w.sync_records_dropped.get()),
                dropped: sync::DROP_REASONS
                    .iter()
                    .zip(&stats.dropped)
                    .map(|(r, n)| (r.to_string(), load(n)))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
                shared: status
                    .shared
                    .iter()
                    .map(|(a, on)| (a.to_string(), *on))
                    .collect(),
            },
        }
    }

    /// Withdraws every VIP for a stop; the time to keep forwarding: the grace
    /// when any VIP was announced, else none.
    fn withdraw_for_stop(&mut self) -> Duration {
        let (Some(a), Some(cfg)) = (self.announcer.as_mut(), self.state.config.announce) else {
            return Duration::ZERO;
        };
        if a.deactivate(&self.state.config, &self.dataplane.services) {
            cfg.shutdown_grace
        } else {
            Duration::ZERO
        }
    }

    /// Asks worker 0 to advertise every own address on its port (gratuitous ARP,
    /// unsolicited neighbour advertisements): at start and after a reload, so that
    /// neighbours which cached another MAC for an address take ours.
    /// The link watch's poll: a bond that now sends through another member has
    /// its port's addresses announced from there.
    fn poll_links(&mut self) {
        for port in self.links.poll(Instant::now()).announce {
            if let Some(tx) = self.commands.first() {
                if tx
                    .try_send(WorkerCommand::AnnounceAddressesOn(port))
                    .is_err()
                {
                    log::warn!("worker 0: command queue full, addresses not announced");
                }
            }
        }
    }

    fn advertise_addresses(&self) {
        if let Some(tx) = self.commands.first() {
            if tx.try_send(WorkerCommand::AnnounceAddresses).is_err() {
                log::warn!("worker 0: command queue full, addresses not advertised");
            }
        }
    }

    /// `ferrovs ctl withdraw` (`hold`) and `announce` (release).
    fn operator_announce(&mut self, vip: IpAddr, hold: bool) -> Response {
        let Some(a) = self.announcer.as_mut() else {
            return Response::Error {
                errors: vec!["announce is not configured: ferrovs keeps no VIP routes".into()],
            };
        };
        let (cfg, services) = (&self.state.config, &self.dataplane.services);
        let result = if hold {
            a.hold(vip, cfg, services)
        } else {
            a.release(vip, cfg, services)
        };
        match result {
            Ok(message) => {
                log::info!("control: {message}");
                Response::Done { message }
            }
            Err(e) => Response::Error { errors: vec![e] },
        }
    }

    fn handle_event(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::NeighborLearned { ip, mac, port } => {
                if self.neighbors.insert(ip, (mac, port)) == Some((mac, port)) {
                    return;
                }
                log::debug!("neighbour {ip} is at {mac} on interface {port}");
                self.broadcast(WorkerCommand::Neighbor { ip, mac, port });
            }
        }
    }

    /// Replaces the SYN cookie key with a fresh one from the OS; the workers keep
    /// accepting cookies of the one it replaces.
    fn rotate_cookie_keys(&mut self) {
        self.last_cookie_rotation = Instant::now();
        self.cookie_keys = self.cookie_keys.rotated(CookieSecret::from_os());
        self.broadcast(WorkerCommand::CookieKeys(self.cookie_keys));
    }

    /// Sends `cmd` to every worker without blocking; a full queue loses the message
    /// (logged: for neighbours, the worker learns them again from the next ARP).
    fn broadcast(&self, cmd: WorkerCommand) {
        for (w, tx) in self.commands.iter().enumerate() {
            if let Err(TrySendError::Full(_)) = tx.try_send(cmd.clone()) {
                log::warn!("worker {w}: command queue full, update dropped");
            }
        }
    }

    fn handle_request(&mut self, request: Request) -> Response {
        let done = |r: Result<Vec<String>, Vec<String>>| match r {
            Ok(changes) => Response::Done {
                message: changes.join("\n"),
            },
            Err(errors) => Response::Error { errors },
        };
        match request {
            Request::List {} => Response::Services {
                services: self.service_views(),
            },
            Request::Conns {
                service,
                real_server,
                state,
                limit,
            } => self.conns(
                service,
                real_server,
                state,
                limit.unwrap_or(DEFAULT_CONN_LIMIT),
            ),
            Request::AddService { service } => done(self.edit(state::add_service(&service))),
            Request::EditService { service } => done(self.edit(state::edit_service(&service))),
            Request::RemoveService { name } => done(self.edit(state::remove_service(&name))),
            Request::AddRealServer {
                service,
                real_server,
            } => done(self.edit(state::add_real_server(&service, &real_server))),
            Request::SetWeight {
                service,
                real_server,
                weight,
            } => done(self.edit(state::set_weight(&service, &real_server, weight))),
            Request::Drain {
                service,
                real_server,
            } => done(self.edit(state::set_weight(&service, &real_server, 0))),
            Request::RemoveRealServer {
                service,
                real_server,
            } => done(self.edit(state::remove_real_server(&service, &real_server))),
            Request::Reload {} => done(self.reload().inspect_err(|errors| {
                log::error!(
                    "control: reload refused, running configuration unchanged:\n{}",
                    errors.join("\n")
                )
            })),
            Request::Withdraw { vip } => self.operator_announce(vip, true),
            Request::Announce { vip } => self.operator_announce(vip, false),
            Request::Sync {} => self.sync_view(),
            Request::Save {} => match self.state.services_yaml() {
                Ok(yaml) => Response::Saved { yaml },
                Err(e) => Response::Error { errors: vec![e] },
            },
        }
    }

    /// Whether real-server slot `slot`, retired at configuration `version`, is free:
    /// every worker runs a later configuration and holds no connection to it.
    fn slot_reusable(workers: &[Arc<WorkerStats>], slot: u16, version: u64) -> bool {
        workers.iter().all(|w| {
            let c = w.real_server(slot);
            w.config_version.get() >= version && c.active.get() == 0 && c.inactive.get() == 0
        })
    }

    fn edit(
        &mut self,
        edit: impl FnOnce(&mut serde_yaml_ng::Value) -> Result<(), String>,
    ) -> Result<Vec<String>, Vec<String>> {
        let workers = self.workers.clone();
        let changes = self
            .state
            .edit(edit, |slot, v| Self::slot_reusable(&workers, slot, v))?;
        log::info!("control: {}", changes.join("; "));
        self.publish();
        Ok(changes)
    }

    fn reload(&mut self) -> Result<Vec<String>, Vec<String>> {
        let _reloading = crate::notify::reloading();
        let workers = self.workers.clone();
        let changes = self
            .state
            .reload(|slot, v| Self::slot_reusable(&workers, slot, v))?;
        self.publish();
        self.advertise_addresses();
        Ok(changes)
    }

    /// Runs due health checks; a server that went down or came back changes the
    /// data plane's snapshot.
    fn check_health(&mut self) {
        let workers = &self.workers;
        let services = &self.dataplane.services;
        let transitions = self.health.tick(Instant::now(), |(service, addr, port)| {
            let slot = services
                .by_name(service)
                .and_then(|s| {
                    s.real_servers
                        .iter()
                        .find(|r| r.addr == *addr && r.port == *port)
                })
                .map(|r| r.slot);
            slot.map_or((0, 0), |slot| {
                workers.iter().fold((0, 0), |(h, f), w| {
                    let c = w.real_server(slot);
                    (h + c.handshakes.get(), f + c.syn_failures.get())
                })
            })
        });
        if transitions.is_empty() {
            return;
        }
        for t in &transitions {
            if t.up {
                log::info!("{} is up again ({})", health::describe(&t.key), t.why);
            } else {
                log::warn!("{} is down ({})", health::describe(&t.key), t.why);
            }
        }
        self.publish();
    }

    /// Sends the workers a snapshot of the running configuration and health.
    fn publish(&mut self) {
        self.health.sync(&self.state.config, Instant::now());
        let shared = self.sync.as_ref().map_or(&[][..], Syncer::active);
        let dp = Arc::new(
            self.state
                .snapshot(&self.health.map())
                .with_shared(&self.state.config, shared),
        );
        *self
            .metrics_services
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(dp.services.clone());
        let live: std::collections::HashSet<u16> = dp
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter().map(|r| r.slot))
            .collect();
        self.rates.retain(|slot| live.contains(&slot));
        self.broadcast(WorkerCommand::Config(dp.clone()));
        self.dataplane = dp;
        if let Some(a) = self.announcer.as_mut() {
            a.update(&self.state.config, &self.dataplane.services);
        }
    }

    /// A real server's counters summed over the workers.
    fn rs_stats(&self, slot: u16) -> (proto::Stats, u64, u64) {
        let mut s = proto::Stats::default();
        let (mut active, mut inactive) = (0, 0);
        for w in &self.workers {
            let c: &RealServerStats = w.real_server(slot);
            s.conns += c.conns.get();
            s.in_packets += c.in_packets.get();
            s.out_packets += c.out_packets.get();
            s.in_bytes += c.in_bytes.get();
            s.out_bytes += c.out_bytes.get();
            active += c.active.get();
            inactive += c.inactive.get();
        }
        (s, active, inactive)
    }

    fn sample_rates(&mut self) {
        let now = Instant::now();
        self.last_rates = now;
        let slots: Vec<u16> = self
            .dataplane
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter().map(|r| r.slot))
            .collect();
        for slot in slots {
            let (stats, _, _) = self.rs_stats(slot);
            self.rates.sample(slot, now, stats);
        }
    }

    fn service_views(&self) -> Vec<proto::ServiceView> {
        self.dataplane
            .services
            .iter()
            .map(|s| {
                let mut stats = proto::Stats::default();
                let mut rates = proto::Rates::default();
                let real_servers = s
                    .real_servers
                    .iter()
                    .map(|r| {
                        let (st, active, inactive) = self.rs_stats(r.slot);
                        stats.conns += st.conns;
                        stats.in_packets += st.in_packets;
                        stats.out_packets += st.out_packets;
                        stats.in_bytes += st.in_bytes;
                        stats.out_bytes += st.out_bytes;
                        let rt = self.rates.get(r.slot);
                        rates = rates::add(rates, rt);
                        proto::RealServerView {
                            address: endpoint(r.addr, r.port),
                            sorry: r.sorry,
                            weight: r.weight,
                            up: r.up,
                            active_conns: active,
                            inactive_conns: inactive,
                            stats: st,
                            rates: rt,
                        }
                    })
                    .collect();
                proto::ServiceView {
                    name: s.name.clone(),
                    protocol: s.proto.name().to_ascii_lowercase(),
                    address: s.address(),
                    scheduler: s.scheduler.name().to_string(),
                    mode: s.mode.name().to_string(),
                    persistence_s: s.persistence_ms / 1000,
                    ops: s.ops,
                    announced: self.announcer.as_ref().map(|a| a.is_announced(s.vip)),
                    quorum: Some(s.quorum),
                    available: Some(s.available() as u64),
                    sorry_active: s.sorry_server().map(|_| s.sorry_active),
                    stats,
                    rates,
                    real_servers,
                }
            })
            .collect()
    }

    /// Lists connections: each worker scans its tables in bounded steps.
    fn conns(
        &self,
        service: Option<String>,
        real_server: Option<String>,
        state: Option<String>,
        limit: usize,
    ) -> Response {
        let service = match service {
            None => None,
            Some(name) => match self.dataplane.services.by_name(&name) {
                Some(s) => Some(s.slot),
                None => {
                    return Response::Error {
                        errors: vec![format!("no service named `{name}`")],
                    }
                }
            },
        };
        let real_server = match real_server.map(|t| t.parse::<std::net::SocketAddr>()) {
            None => None,
            Some(Ok(a)) => Some((a.ip(), a.port())),
            Some(Err(_)) => {
                return Response::Error {
                    errors: vec!["real server must be IP:PORT (IPv6 as [IP]:PORT)".into()],
                }
            }
        };
        let mut out = Vec::new();
        let mut truncated = false;
        'workers: for tx in &self.commands {
            for ipv6 in [false, true] {
                let mut from = Some(0);
                while let Some(start) = from {
                    let (reply, rx) = bounded::<ConnChunk>(1);
                    let query = ConnQuery {
                        ipv6,
                        from: start,
                        count: SCAN_STEP,
                        service,
                        real_server,
                        state: state.clone(),
                        reply,
                    };
                    if tx
                        .send_timeout(WorkerCommand::DumpConns(query), Duration::from_secs(2))
                        .is_err()
                    {
                        return Response::Error {
                            errors: vec!["a worker did not take the request".into()],
                        };
                    }
                    let Ok(chunk) = rx.recv_timeout(Duration::from_secs(2)) else {
                        return Response::Error {
                            errors: vec!["a worker did not answer in time".into()],
                        };
                    };
                    out.extend(chunk.conns.iter().map(conn_view));
                    if out.len() > limit {
                        out.truncate(limit);
                        truncated = true;
                        break 'workers;
                    }
                    from = chunk.next;
                }
            }
        }
        Response::Conns {
            conns: out,
            truncated,
        }
    }
}

/// A connection as `ferrovs ctl conns` shows it.
fn conn_view(c: &ConnSnapshot) -> proto::ConnView {
    let ep = |(addr, port): (IpAddr, u16)| endpoint(addr, port);
    proto::ConnView {
        protocol: c.proto.name().to_string(),
        client: ep(c.client),
        virtual_address: ep(c.vip),
        local: ep(c.local),
        real_server: ep(c.real),
        state: c.state.to_string(),
        expires_ms: c.expires_ms,
        worker: c.worker,
    }
}
