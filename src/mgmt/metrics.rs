//! Prometheus metrics: a collector that reads the workers' counters and the ports'
//! ethdev statistics when scraped, and the read-only HTTP endpoint serving them.

use super::announce::AnnouncedVips;
use super::sync::{SyncStats, DROP_REASONS};
use crate::dpdk::PortStats;
use ferrovs_core::service::{endpoint, Services};
use ferrovs_core::stats::{DropReason, WorkerStats};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::{Arc, Mutex};

/// A port's link as the management core last read it, with a bond's members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortLink {
    /// The link is up (a bond's: it counts at least one member active).
    pub up: bool,
    /// A bond's members, in the order they were added; empty for other ports.
    pub members: Vec<MemberLink>,
}

/// One member of a bond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLink {
    /// The member's device name (PCI address or vdev instance name).
    pub name: String,
    /// Its link is up, as its PMD reports it.
    pub up: bool,
    /// It carries the bond's traffic: in active-backup (and TLB/ALB receive) the
    /// one member the bond uses; in the other modes, every member it counts active.
    pub active: bool,
}

/// The links of every port, indexed like the ports; written by the management
/// loop's link watch, read at scrape time.
pub type PortLinks = Arc<Mutex<Vec<PortLink>>>;

/// The name and ethdev id of one configured port.
#[derive(Debug, Clone)]
pub struct PortMeta {
    /// The port's name from the configuration: the `port` label.
    pub name: String,
    /// The ethdev port id its counters are read by.
    pub dpdk_id: u16,
}

/// One configured VLAN, as its metrics are labelled.
#[derive(Debug, Clone)]
pub struct VlanMeta {
    /// The port's name: the `port` label.
    pub port: String,
    /// The VLAN id: the `vlan` label.
    pub id: u16,
}

/// Reads a port's counters (ethdev stats in production, fixed values in tests).
pub type PortStatsFn = Box<dyn Fn(u16) -> PortStats + Send + Sync>;
/// Reads a number on demand (mempool availability, connection gauges, ...).
pub type ReadFn = Box<dyn Fn() -> u64 + Send + Sync>;

/// Everything the collector reads at scrape time.
pub struct Telemetry {
    /// The ports, in configuration order.
    pub ports: Vec<PortMeta>,
    /// Every worker's counters, indexed by worker.
    pub workers: Vec<Arc<WorkerStats>>,
    /// Reads a port's ethdev counters by its id.
    pub port_stats: PortStatsFn,
    /// Reads the free mbufs of the packet mempool.
    pub mempool_available: ReadFn,
    /// The services currently configured (replaced on reload).
    pub services: Arc<Mutex<Arc<Services>>>,
    /// `connections.max`.
    pub conn_capacity: u64,
    /// Every VIP and whether it is announced, when `announce` is configured.
    pub announced: AnnouncedVips,
    /// Connection sync's counters, with `sync`.
    pub sync: Option<Arc<SyncStats>>,
    /// The VLANs, in configuration order (the workers' VLAN counters' order).
    pub vlans: Vec<VlanMeta>,
    /// The ports' links and bond members, once the link watch runs.
    pub links: PortLinks,
    /// Previous (busy, total) cycles per worker, for the busy ratio between scrapes.
    busy_prev: Mutex<Vec<(u64, u64)>>,
}

impl Telemetry {
    /// A collector reading these sources; the first scrape's busy ratio covers the
    /// time since the workers started.
    pub fn new(
        ports: Vec<PortMeta>,
        workers: Vec<Arc<WorkerStats>>,
        port_stats: PortStatsFn,
        mempool_available: ReadFn,
        services: Arc<Mutex<Arc<Services>>>,
        conn_capacity: u64,
    ) -> Telemetry {
        let n = workers.len();
        Telemetry {
            ports,
            workers,
            port_stats,
            mempool_available,
            services,
            conn_capacity,
            announced: AnnouncedVips::default(),
            sync: None,
            vlans: Vec::new(),
            links: PortLinks::default(),
            busy_prev: Mutex::new(vec![(0, 0); n]),
        }
    }

    /// Also exports the `ferrovs_sync_*` families from `sync`.
    pub fn with_sync(mut self, sync: Option<Arc<SyncStats>>) -> Telemetry {
        self.sync = sync;
        self
    }

    /// Also exports the `ferrovs_vlan_*` families of `vlans`.
    pub fn with_vlans(mut self, vlans: Vec<VlanMeta>) -> Telemetry {
        self.vlans = vlans;
        self
    }

    /// Also exports `ferrovs_port_link_up` and the `ferrovs_bond_member_*`
    /// families from `links`.
    pub fn with_links(mut self, links: PortLinks) -> Telemetry {
        self.links = links;
        self
    }

    /// Also exports `ferrovs_vip_announced` from `announced`.
    pub fn with_announced(mut self, announced: AnnouncedVips) -> Telemetry {
        self.announced = announced;
        self
    }
}

/// Builds one metric family.
struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut mf = MetricFamily::default();
        mf.set_name(format!("ferrovs_{name}"));
        mf.set_help(help.to_string());
        mf.set_field_type(kind);
        Family(mf)
    }

    fn counter(name: &str, help: &str) -> Family {
        Self::new(name, help, MetricType::COUNTER)
    }

    fn gauge(name: &str, help: &str) -> Family {
        Self::new(name, help, MetricType::GAUGE)
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let mut m = Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name((*k).to_string());
                    l.set_value((*v).to_string());
                    l
                })
                .collect(),
        );
        if self.0.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.0.mut_metric().push(m);
        self
    }
}

impl Collector for Telemetry {
    fn desc(&self) -> Vec<&Desc> {
        // Families are built at scrape time; an unchecked collector.
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let mut build = Family::gauge("build_info", "ferrovs version and git commit");
        build.sample(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("FERROVS_GIT_COMMIT")),
            ],
            1.0,
        );
        out.push(build.0);

        self.port_families(&mut out);
        self.vlan_families(&mut out);
        self.worker_families(&mut out);
        let mut active = Family::gauge(
            "connections_active",
            "Live connections in the worker's tables",
        );
        for (i, w) in self.workers.iter().enumerate() {
            active.sample(&[("worker", &i.to_string())], w.conns_active.get() as f64);
        }
        out.push(active.0);
        let mut capacity = Family::gauge(
            "connections_capacity",
            "Connections the tables can hold (connections.max)",
        );
        capacity.sample(&[], self.conn_capacity as f64);
        out.push(capacity.0);
        out.extend(self.service_families());
        let mut announced = Family::gauge(
            "vip_announced",
            "1 while the VIP's route is in the routing daemon's table (announce), else 0",
        );
        for (vip, on) in self
            .announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            announced.sample(&[("vip", &vip.to_string())], if *on { 1.0 } else { 0.0 });
        }
        out.push(announced.0);
        if let Some(sync) = &self.sync {
            out.extend(self.sync_families(sync));
        }

        let mut pool = Family::gauge(
            "mempool_available_mbufs",
            "Free mbufs in the packet mempool",
        );
        pool.sample(&[], (self.mempool_available)() as f64);
        out.push(pool.0);
        out
    }
}

impl Telemetry {
    /// Connection sync: datagrams and records each way, drops by reason,
    /// connections installed and records lost on the workers' side, peers and
    /// shared addresses.
    fn sync_families(&self, sync: &SyncStats) -> Vec<MetricFamily> {
        let load =
            |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed) as f64;
        let mut out = Vec::new();
        for (name, help, value) in [
            (
                "sync_datagrams_sent_total",
                "Sync datagrams sent to peers",
                load(&sync.datagrams_sent),
            ),
            (
                "sync_datagrams_received_total",
                "Sync datagrams accepted from peers",
                load(&sync.datagrams_received),
            ),
            (
                "sync_records_sent_total",
                "Connection records sent (once for all peers)",
                load(&sync.records_sent),
            ),
            (
                "sync_records_received_total",
                "Connection records received in accepted datagrams",
                load(&sync.records_received),
            ),
        ] {
            let mut f = Family::counter(name, help);
            f.sample(&[], value);
            out.push(f.0);
        }
        let mut dropped = Family::counter(
            "sync_dropped_total",
            "Sync datagrams (or their records, worker_busy) dropped, by reason",
        );
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            dropped.sample(&[("reason", reason)], load(&sync.dropped[i]));
        }
        out.push(dropped.0);
        let sum =
            |get: fn(&WorkerStats) -> u64| self.workers.iter().map(|w| get(w)).sum::<u64>() as f64;
        for (name, help, value) in [
            ("sync_connections_installed_total", "Connections installed from peers' records", sum(|w| w.sync_installed.get())),
            ("sync_records_refused_total", "Peers' records not installed (no such service or server here, a conflict, a full table)", sum(|w| w.sync_refused.get())),
            ("sync_records_lost_total", "Records of this member's connections lost to a full ring on the workers' side", sum(|w| w.sync_records_dropped.get())),
        ] {
            let mut f = Family::counter(name, help);
            f.sample(&[], value);
            out.push(f.0);
        }
        let status = sync
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut peers = Family::gauge(
            "sync_peer_up",
            "1 while the peer is heard within sync.peer_timeout",
        );
        for p in &status.peers {
            peers.sample(
                &[("peer", &p.addr.to_string())],
                if p.up { 1.0 } else { 0.0 },
            );
        }
        out.push(peers.0);
        let mut shared = Family::gauge(
            "sync_shared_address_active",
            "1 while this member answers for the shared address",
        );
        for (addr, on) in &status.shared {
            shared.sample(
                &[("address", &addr.to_string())],
                if *on { 1.0 } else { 0.0 },
            );
        }
        out.push(shared.0);
        out
    }

    /// The ports' ethdev counters.
    fn port_families(&self, out: &mut Vec<MetricFamily>) {
        let port_stats: Vec<(&PortMeta, PortStats)> = self
            .ports
            .iter()
            .map(|p| (p, (self.port_stats)(p.dpdk_id)))
            .collect();
        let port_family = |name: &str, help: &str, get: fn(&PortStats) -> u64| {
            let mut f = Family::counter(name, help);
            for (p, s) in &port_stats {
                f.sample(&[("port", &p.name)], get(s) as f64);
            }
            f.0
        };
        out.push(port_family(
            "port_rx_packets_total",
            "Packets received by the NIC",
            |s| s.rx_packets,
        ));
        out.push(port_family(
            "port_tx_packets_total",
            "Packets sent by the NIC",
            |s| s.tx_packets,
        ));
        out.push(port_family(
            "port_rx_bytes_total",
            "Bytes received by the NIC",
            |s| s.rx_bytes,
        ));
        out.push(port_family(
            "port_tx_bytes_total",
            "Bytes sent by the NIC",
            |s| s.tx_bytes,
        ));
        out.push(port_family(
            "port_rx_missed_total",
            "Packets the NIC dropped because its RX queues were full",
            |s| s.rx_missed,
        ));
        out.push(port_family(
            "port_rx_errors_total",
            "Erroneous packets received",
            |s| s.rx_errors,
        ));
        out.push(port_family(
            "port_tx_errors_total",
            "Failed transmissions",
            |s| s.tx_errors,
        ));
        out.push(port_family(
            "port_rx_nombuf_total",
            "RX mbuf allocation failures",
            |s| s.rx_nombuf,
        ));
        self.link_families(out);
    }

    /// Port links and bond members, as the link watch last read them.
    fn link_families(&self, out: &mut Vec<MetricFamily>) {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if links.is_empty() {
            return;
        }
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut up = Family::gauge("port_link_up", "1 while the port's link is up");
        let mut member_up = Family::gauge(
            "bond_member_link_up",
            "1 while the bond member's link is up",
        );
        let mut member_active = Family::gauge(
            "bond_member_active",
            "1 while the bond member carries the bond's traffic (802.3ad: LACP has it \
             collecting and distributing)",
        );
        for (p, l) in self.ports.iter().zip(&links) {
            up.sample(&[("port", &p.name)], flag(l.up));
            for m in &l.members {
                let labels = [("port", p.name.as_str()), ("member", m.name.as_str())];
                member_up.sample(&labels, flag(m.up));
                member_active.sample(&labels, flag(m.active));
            }
        }
        out.push(up.0);
        if member_up.0.get_metric().is_empty() {
            return;
        }
        out.push(member_up.0);
        out.push(member_active.0);
    }

    /// Each VLAN's frames received and sent, summed over the workers.
    fn vlan_families(&self, out: &mut Vec<MetricFamily>) {
        if self.vlans.is_empty() {
            return;
        }
        let mut rx = Family::counter(
            "vlan_rx_packets_total",
            "Frames received with the VLAN's tag",
        );
        let mut tx = Family::counter("vlan_tx_packets_total", "Frames sent with the VLAN's tag");
        for (i, v) in self.vlans.iter().enumerate() {
            let id = v.id.to_string();
            let labels = [("port", v.port.as_str()), ("vlan", id.as_str())];
            let sum = |get: fn(&ferrovs_core::stats::VlanStats) -> u64| {
                self.workers.iter().map(|w| get(w.vlan(i))).sum::<u64>() as f64
            };
            rx.sample(&labels, sum(|s| s.rx_packets.get()));
            tx.sample(&labels, sum(|s| s.tx_packets.get()));
        }
        out.extend([rx.0, tx.0]);
    }

    /// Every worker's packet counters, drops by reason and busy ratio.
    fn worker_families(&self, out: &mut Vec<MetricFamily>) {
        let ids: Vec<String> = (0..self.workers.len()).map(|i| i.to_string()).collect();
        let mut rx = Family::counter("worker_rx_packets_total", "Packets received by the worker");
        let mut tx = Family::counter(
            "worker_tx_packets_total",
            "Packets transmitted by the worker",
        );
        let mut handoff = Family::counter(
            "worker_handoff_packets_total",
            "Packets handed to the worker that owns their connection",
        );
        let mut kernel = Family::counter(
            "worker_kernel_packets_total",
            "Packets passed to the kernel through the exception path (TAP)",
        );
        let mut dropped = Family::counter(
            "worker_dropped_packets_total",
            "Packets dropped by the worker, by reason",
        );
        let mut cookies_sent = Family::counter(
            "worker_syn_cookies_sent_total",
            "SYN-ACKs carrying a SYN cookie sent by the SYN proxy",
        );
        let mut cookies_validated = Family::counter(
            "worker_syn_cookies_validated_total",
            "ACKs whose SYN cookie validated: connections the SYN proxy opened",
        );
        let mut proxy_resets = Family::counter(
            "worker_syn_proxy_resets_total",
            "Resets sent to SYN-proxied clients whose real server refused or did not answer",
        );
        let mut proxy_auto = Family::gauge(
            "worker_syn_proxy_auto",
            "1 while connections.syn_proxy_above has the worker SYN-proxy every TCP NAT/FULLNAT service",
        );
        let mut busy = Family::gauge(
            "worker_busy_ratio",
            "Share of the worker's cycles spent on bursts that carried packets, since the previous scrape",
        );
        let mut prev = self.busy_prev.lock().unwrap_or_else(|e| e.into_inner());
        for (i, w) in self.workers.iter().enumerate() {
            let id = ids[i].as_str();
            rx.sample(&[("worker", id)], w.rx_packets.get() as f64);
            tx.sample(&[("worker", id)], w.tx_packets.get() as f64);
            handoff.sample(&[("worker", id)], w.handoff_packets.get() as f64);
            kernel.sample(&[("worker", id)], w.kernel_packets.get() as f64);
            cookies_sent.sample(&[("worker", id)], w.syn_cookies_sent.get() as f64);
            cookies_validated.sample(&[("worker", id)], w.syn_cookies_validated.get() as f64);
            proxy_resets.sample(&[("worker", id)], w.syn_proxy_resets.get() as f64);
            proxy_auto.sample(&[("worker", id)], w.syn_proxy_auto.get() as f64);
            for r in DropReason::ALL {
                dropped.sample(
                    &[("worker", id), ("reason", r.label())],
                    w.dropped(*r) as f64,
                );
            }
            let (b, t) = (w.busy_cycles.get(), w.total_cycles.get());
            let (pb, pt) = prev[i];
            let ratio = if t > pt {
                (b - pb.min(b)) as f64 / (t - pt) as f64
            } else {
                0.0
            };
            prev[i] = (b, t);
            busy.sample(&[("worker", id)], ratio.clamp(0.0, 1.0));
        }
        drop(prev);
        out.extend([
            rx.0,
            tx.0,
            handoff.0,
            kernel.0,
            cookies_sent.0,
            cookies_validated.0,
            proxy_resets.0,
            proxy_auto.0,
            dropped.0,
            busy.0,
        ]);
    }

    /// Per-service and per-real-server families: each real server's counters summed
    /// over the workers, each service's the sum over its real servers.
    fn service_families(&self) -> Vec<MetricFamily> {
        let services = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sum = |slot: u16, get: fn(&ferrovs_core::stats::RealServerStats) -> u64| -> u64 {
            self.workers.iter().map(|w| get(w.real_server(slot))).sum()
        };
        type Get = fn(&ferrovs_core::stats::RealServerStats) -> u64;
        let counters: [(&str, &str, Get); 5] = [
            ("connections_total", "Connections scheduled", |c| {
                c.conns.get()
            }),
            ("in_packets_total", "Client-to-server packets", |c| {
                c.in_packets.get()
            }),
            ("in_bytes_total", "Client-to-server bytes (IP)", |c| {
                c.in_bytes.get()
            }),
            (
                "out_packets_total",
                "Server-to-client packets through ferrovs",
                |c| c.out_packets.get(),
            ),
            (
                "out_bytes_total",
                "Server-to-client bytes (IP) through ferrovs",
                |c| c.out_bytes.get(),
            ),
        ];
        let mut out = Vec::new();
        for (name, help, get) in counters {
            let mut svc = Family::counter(&format!("service_{name}"), help);
            let mut rs = Family::counter(&format!("real_server_{name}"), help);
            for s in services.iter() {
                let mut total = 0;
                for r in &s.real_servers {
                    let v = sum(r.slot, get);
                    total += v;
                    rs.sample(
                        &[
                            ("service", &s.name),
                            ("real_server", &endpoint(r.addr, r.port)),
                        ],
                        v as f64,
                    );
                }
                svc.sample(&[("service", &s.name)], total as f64);
            }
            out.push(svc.0);
            out.push(rs.0);
        }
        let mut active = Family::gauge(
            "real_server_active_connections",
            "Active (IPVS sense) connections, all workers",
        );
        let mut inactive = Family::gauge(
            "real_server_inactive_connections",
            "Other live connections, all workers",
        );
        let mut weight = Family::gauge("real_server_weight", "Configured weight (0 = draining)");
        let mut up = Family::gauge(
            "real_server_up",
            "1 when the server takes new connections as far as health checks go, 0 when checks took it out",
        );
        for s in services.iter() {
            for r in &s.real_servers {
                let labels = [
                    ("service", s.name.as_str()),
                    ("real_server", &endpoint(r.addr, r.port)),
                ];
                active.sample(&labels, sum(r.slot, |c| c.active.get()) as f64);
                inactive.sample(&labels, sum(r.slot, |c| c.inactive.get()) as f64);
                weight.sample(&labels, f64::from(r.weight));
                up.sample(&labels, if r.up { 1.0 } else { 0.0 });
            }
        }
        let mut sorry = Family::gauge(
            "service_sorry_active",
            "1 while the service's sorry server takes the new connections (fewer available real servers than its quorum, or none), else 0; only services with a sorry server",
        );
        for s in services.iter().filter(|s| s.sorry_server().is_some()) {
            sorry.sample(
                &[("service", &s.name)],
                if s.sorry_active { 1.0 } else { 0.0 },
            );
        }
        out.extend([active.0, inactive.0, weight.0, up.0, sorry.0]);
        out
    }
}

/// Renders everything in `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = encoder.encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry() -> Telemetry {
        let w0 = Arc::new(WorkerStats::default().with_vlans(1));
        w0.vlan(0).rx_packets.add(5);
        w0.vlan(0).tx_packets.add(4);
        w0.rx_packets.add(10);
        w0.tx_packets.add(7);
        w0.count_drop(DropReason::Runt, 3);
        w0.busy_cycles.add(25);
        w0.total_cycles.add(100);
        Telemetry::new(
            vec![PortMeta {
                name: "wan".into(),
                dpdk_id: 0,
            }],
            vec![w0, Arc::new(WorkerStats::default())],
            Box::new(|_| PortStats {
                rx_packets: 11,
                rx_bytes: 1100,
                ..Default::default()
            }),
            Box::new(|| 4000),
            Arc::new(Mutex::new(Arc::new(Services::default()))),
            1000,
        )
        .with_vlans(vec![VlanMeta {
            port: "wan".into(),
            id: 100,
        }])
    }

    /// A bond's view: its link, and per member its link and whether it carries
    /// the traffic; a port without members has no member samples.
    #[test]
    fn renders_port_links_and_bond_members() {
        let links = PortLinks::default();
        let reg = Registry::new();
        reg.register(Box::new(telemetry().with_links(links.clone())))
            .unwrap();
        assert!(
            !render(&reg).contains("link_up"),
            "no samples before the watch ran"
        );
        *links.lock().unwrap() = vec![PortLink {
            up: true,
            members: vec![
                MemberLink {
                    name: "net_tap10".into(),
                    up: false,
                    active: false,
                },
                MemberLink {
                    name: "net_tap11".into(),
                    up: true,
                    active: true,
                },
            ],
        }];
        let text = render(&reg);
        for line in [
            "ferrovs_port_link_up{port=\"wan\"} 1",
            "ferrovs_bond_member_link_up{port=\"wan\",member=\"net_tap10\"} 0",
            "ferrovs_bond_member_link_up{port=\"wan\",member=\"net_tap11\"} 1",
            "ferrovs_bond_member_active{port=\"wan\",member=\"net_tap10\"} 0",
            "ferrovs_bond_member_active{port=\"wan\",member=\"net_tap11\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        *links.lock().unwrap() = vec![PortLink::default()];
        let text = render(&reg);
        assert!(
            text.contains("ferrovs_port_link_up{port=\"wan\"} 0"),
            "{text}"
        );
        assert!(!text.contains("bond_member"), "{text}");
    }

    #[test]
    fn renders_contract_metric_names() {
        let reg = Registry::new();
        reg.register(Box::new(telemetry())).unwrap();
        let text = render(&reg);
        for line in [
            "ferrovs_port_rx_packets_total{port=\"wan\"} 11",
            "ferrovs_vlan_rx_packets_total{port=\"wan\",vlan=\"100\"} 5",
            "ferrovs_vlan_tx_packets_total{port=\"wan\",vlan=\"100\"} 4",
            "ferrovs_port_rx_bytes_total{port=\"wan\"} 1100",
            "ferrovs_worker_rx_packets_total{worker=\"0\"} 10",
            "ferrovs_worker_tx_packets_total{worker=\"0\"} 7",
            "ferrovs_worker_dropped_packets_total{worker=\"0\",reason=\"runt\"} 3",
            "ferrovs_worker_busy_ratio{worker=\"0\"} 0.25",
            "ferrovs_worker_busy_ratio{worker=\"1\"} 0",
            "ferrovs_mempool_available_mbufs 4000",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        for name in [
            "ferrovs_port_tx_packets_total",
            "ferrovs_port_tx_bytes_total",
            "ferrovs_port_rx_missed_total",
            "ferrovs_port_rx_errors_total",
            "ferrovs_port_tx_errors_total",
            "ferrovs_port_rx_nombuf_total",
            "ferrovs_build_info",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "missing {name}");
        }
    }

    #[test]
    fn a_sorry_server_is_a_real_server_series_and_its_service_says_when_it_serves() {
        let services =
            "services:\n  - { name: web, vip: 198.18.0.100, port: 80, protocol: tcp, mode: nat, \
            sorry_server: { address: 198.19.0.99 }, real_servers: [{ address: 198.19.0.10 }] }\n";
        let cfg = ferrovs_core::fixture::parse(&ferrovs_core::fixture::appliance(services));
        let mut slots = ferrovs_core::service::Slots::default();
        slots.assign(&cfg, 0, |_, _| false).unwrap();
        let t = telemetry();
        let reg = Registry::new();
        let shared = t.services.clone();
        reg.register(Box::new(t)).unwrap();
        for (up, sorry, weight) in [(true, 0, 0), (false, 1, 1)] {
            *shared.lock().unwrap() = Arc::new(Services::build(&cfg, &slots, |_, _, _| up));
            let text = render(&reg);
            for line in [
                format!("ferrovs_service_sorry_active{{service=\"web\"}} {sorry}"),
                format!("ferrovs_real_server_weight{{service=\"web\",real_server=\"198.19.0.99:80\"}} {weight}"),
                "ferrovs_real_server_up{service=\"web\",real_server=\"198.19.0.99:80\"} 1".into(),
            ] {
                assert!(text.contains(&line), "missing {line} in\n{text}");
            }
        }
    }

    #[test]
    fn busy_ratio_is_measured_between_scrapes() {
        let t = telemetry();
        let w0 = t.workers[0].clone();
        let first = t.collect();
        let busy = |fams: &[MetricFamily]| {
            fams.iter()
                .find(|f| f.name() == "ferrovs_worker_busy_ratio")
                .unwrap()
                .get_metric()[0]
                .get_gauge()
                .get_value()
        };
        assert_eq!(busy(&first), 0.25);
        w0.busy_cycles.add(90);
        w0.total_cycles.add(100);
        assert_eq!(busy(&t.collect()), 0.9);
        assert_eq!(busy(&t.collect()), 0.0);
    }
}
