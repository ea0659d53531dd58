//! Ethernet ports: configuration, queues, start/stop, statistics.

use super::flow::{self, FlowHandle};
use super::{DpdkError, Mbuf, Mempool};
use ferrovs_core::packet::MacAddr;
use std::ffi::{CStr, CString};

/// How to set up one port.
#[derive(Debug, Clone)]
pub struct PortConf {
    /// RX queues: one per worker.
    pub rx_queues: u16,
    /// TX queues: one per worker, plus one for the management core's exception path.
    pub tx_queues: u16,
    /// Descriptors per RX queue; the PMD may adjust the number to its limits.
    pub rx_descriptors: u16,
    /// Descriptors per TX queue; the PMD may adjust the number to its limits.
    pub tx_descriptors: u16,
    /// Layer-3 MTU in bytes.
    pub mtu: u16,
    /// The 802.1Q VLAN ids the port carries (empty: untagged only).
    pub vlans: Vec<u16>,
}

/// Test-only switch: set, every port tags and untags in software whatever its NIC
/// offers, so end-to-end tests over `net_af_packet` (which offers stripping and
/// insertion) run the software path too.
pub const TEST_VLAN_SOFTWARE_ENV: &str = "FERROVS_TEST_VLAN_SOFTWARE";

/// Which VLAN work a port's NIC does; software does the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VlanOffloads {
    /// The NIC takes the tag off received frames into `vlan_tci`
    /// (`RTE_ETH_RX_OFFLOAD_VLAN_STRIP`).
    pub strip: bool,
    /// The NIC inserts the tag the mbuf asks for (`RTE_ETH_TX_OFFLOAD_VLAN_INSERT`).
    pub insert: bool,
    /// The NIC drops frames of VLANs not configured
    /// (`RTE_ETH_RX_OFFLOAD_VLAN_FILTER`, each id added with `rte_eth_dev_vlan_filter`).
    pub filter: bool,
}

impl VlanOffloads {
    /// What a port uses, from the NIC's offload capabilities: every VLAN offload
    /// it offers when the port carries VLANs; none otherwise, so that a port
    /// without VLANs receives exactly what it did before (a filter would drop
    /// tagged frames before they are counted as `vlan_not_configured`).
    pub fn choose(has_vlans: bool, rx_capa: u64, tx_capa: u64) -> VlanOffloads {
        let has = |capa: u64, bit: u32| has_vlans && capa & u64::from(bit) != 0;
        VlanOffloads {
            strip: has(rx_capa, dpdk_sys::RTE_ETH_RX_OFFLOAD_VLAN_STRIP),
            insert: has(tx_capa, dpdk_sys::RTE_ETH_TX_OFFLOAD_VLAN_INSERT),
            filter: has(rx_capa, dpdk_sys::RTE_ETH_RX_OFFLOAD_VLAN_FILTER),
        }
    }

    /// For the start-up log: who strips, inserts and filters tags.
    pub fn describe(&self) -> String {
        let by = |nic: bool| if nic { "the NIC" } else { "software" };
        format!(
            "VLAN tags stripped by {}, inserted by {}, filtered by {}",
            by(self.strip),
            by(self.insert),
            by(self.filter)
        )
    }
}

/// Link state as `rte_eth_link_get_nowait` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Carrier present: the link can pass traffic.
    pub up: bool,
    /// Link speed in Mbit/s, as the PMD reports it.
    pub speed_mbps: u32,
}

/// Basic ethdev counters (`rte_eth_stats_get`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets the NIC received successfully (missed and erroneous ones not included).
    pub rx_packets: u64,
    /// Packets the NIC transmitted successfully.
    pub tx_packets: u64,
    /// Bytes of the packets received successfully.
    pub rx_bytes: u64,
    /// Bytes of the packets transmitted successfully.
    pub tx_bytes: u64,
    /// Packets the NIC dropped because no RX descriptor was free: the workers fell behind.
    pub rx_missed: u64,
    /// Received packets the NIC found erroneous.
    pub rx_errors: u64,
    /// Packets the NIC failed to transmit.
    pub tx_errors: u64,
    /// Receive mbuf allocations that failed: the mempool was empty.
    pub rx_nombuf: u64,
}

/// One configured ethdev port. Its steering rules are destroyed, then it is stopped
/// and closed, on drop.
pub struct Port {
    id: u16,
    device: String,
    driver: String,
    queues: u16,
    started: bool,
    /// RX offloads enabled at configuration (RTE_ETH_RX_OFFLOAD_*).
    rx_offloads: u64,
    /// The VLAN offloads enabled at configuration.
    vlan: VlanOffloads,
    rx_taken: Vec<bool>,
    tx_taken: Vec<bool>,
    /// rte_flow rules installed by [`Port::create_flows`] (src/dpdk/flow.rs).
    pub(super) flows: Vec<FlowHandle>,
}

/// The receive side of one queue of one port. Owned by exactly one worker.
pub struct RxQueue {
    port: u16,
    queue: u16,
}

/// The transmit side of one queue of one port. Owned by exactly one worker.
pub struct TxQueue {
    port: u16,
    queue: u16,
    /// The PMD sends frames of its own only from within a TX burst, so the queue
    /// must be burst even with nothing to send: a mode-4 (802.3ad) bond's LACPDUs
    /// wait in the bond until the next `rte_eth_tx_burst` on it.
    control_frames: bool,
}

fn check(call: &'static str, context: &str, ret: i32) -> Result<(), DpdkError> {
    if ret < 0 {
        Err(DpdkError::new(call, context, ret))
    } else {
        Ok(())
    }
}

/// The ethdev port id of the probed device named `name`.
fn port_by_name(name: &str) -> Result<u16, DpdkError> {
    let cname =
        CString::new(name).map_err(|_| DpdkError::new("rte_eth_dev_get_port_by_name", name, 22))?;
    let mut id = 0u16;
    // SAFETY: valid C string and out pointer.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    check("rte_eth_dev_get_port_by_name", name, ret)?;
    Ok(id)
}

/// The NUMA socket of the probed device named `name`; None for a device that has
/// none (`SOCKET_ID_ANY`: virtual devices, or a machine of one node where the
/// kernel does not tell).
pub fn device_socket(name: &str) -> Result<Option<u32>, DpdkError> {
    let id = port_by_name(name)?;
    // SAFETY: valid port id.
    let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
    Ok(u32::try_from(socket).ok())
}

impl Port {
    /// Finds the probed device named `name` (a normalised PCI address, or a vdev
    /// instance name such as `net_af_packet0`), configures it with `conf` and sets up
    /// its queues on `pool`. The port is not started.
    pub fn configure(name: &str, conf: &PortConf, pool: &Mempool) -> Result<Port, DpdkError> {
        let socket = device_socket(name)?.unwrap_or(0);
        let queues = usize::from(conf.rx_queues.max(conf.tx_queues));
        Self::configure_placed(name, conf, &vec![(pool, socket); queues])
    }

    /// [`Port::configure`] with queue `q`'s descriptors on socket `queues[q].1`
    /// and its received packets from pool `queues[q].0` (one entry per queue;
    /// queue `q` of RX and of TX share it).
    pub fn configure_placed(
        name: &str,
        conf: &PortConf,
        queues: &[(&Mempool, u32)],
    ) -> Result<Port, DpdkError> {
        let id = port_by_name(name)?;
        if queues.len() < usize::from(conf.rx_queues.max(conf.tx_queues)) {
            return Err(DpdkError::new(
                "rte_eth_rx_queue_setup",
                format!(
                    "{name}: {} queue placements for {} queues",
                    queues.len(),
                    conf.rx_queues
                ),
                22,
            ));
        }

        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; info is a valid out struct.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        check("rte_eth_dev_info_get", name, ret)?;
        let driver = if info.driver_name.is_null() {
            String::from("unknown")
        } else {
            // SAFETY: driver_name is a static NUL-terminated string owned by the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        if conf.rx_queues > info.max_rx_queues || conf.tx_queues > info.max_tx_queues {
            let hint = if driver.contains("af_packet") {
                format!(
                    " (add qpairs={} to the net_af_packet device spec)",
                    conf.rx_queues.max(conf.tx_queues)
                )
            } else {
                String::new()
            };
            return Err(DpdkError::new(
                "rte_eth_dev_configure",
                format!(
                    "{name}: needs {} RX and {} TX queues, the device has {} RX / {} TX{hint}",
                    conf.rx_queues, conf.tx_queues, info.max_rx_queues, info.max_tx_queues
                ),
                22,
            ));
        }

        let vlan = if std::env::var_os(TEST_VLAN_SOFTWARE_ENV).is_some() {
            VlanOffloads::default()
        } else {
            VlanOffloads::choose(
                !conf.vlans.is_empty(),
                info.rx_offload_capa,
                info.tx_offload_capa,
            )
        };
        let eth_conf = build_eth_conf(conf, &info, vlan);
        // SAFETY: valid port id and fully initialised config struct.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_configure(id, conf.rx_queues, conf.tx_queues, &eth_conf)
        };
        check("rte_eth_dev_configure", name, ret)?;
        if vlan.filter {
            for &vid in &conf.vlans {
                // SAFETY: valid configured port with the VLAN filter offload on.
                let ret = unsafe { dpdk_sys::rte_eth_dev_vlan_filter(id, vid, 1) };
                check(
                    "rte_eth_dev_vlan_filter",
                    &format!("{name} VLAN {vid}"),
                    ret,
                )?;
            }
        }

        let mut rxd = conf.rx_descriptors;
        let mut txd = conf.tx_descriptors;
        // SAFETY: valid port id and out pointers.
        let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rxd, &mut txd) };
        check("rte_eth_dev_adjust_nb_rx_tx_desc", name, ret)?;

        let mut txconf = info.default_txconf;
        txconf.offloads = eth_conf.txmode.offloads;
        for q in 0..conf.rx_queues {
            let (pool, socket) = queues[usize::from(q)];
            // SAFETY: valid port, queue index < configured count, pool outlives the
            // port (runtime drop order); NULL rxconf selects the PMD defaults.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    rxd,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            check("rte_eth_rx_queue_setup", &format!("{name} queue {q}"), ret)?;
        }
        for q in 0..conf.tx_queues {
            let socket = queues[usize::from(q)].1;
            // SAFETY: valid port, queue index < configured count; txconf is a valid
            // struct copied from the defaults.
            let ret = unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, txd, socket, &txconf) };
            check("rte_eth_tx_queue_setup", &format!("{name} queue {q}"), ret)?;
        }
        Ok(Port {
            id,
            device: name.to_string(),
            driver,
            queues: conf.rx_queues,
            started: false,
            rx_offloads: eth_conf.rxmode.offloads,
            vlan,
            rx_taken: vec![false; usize::from(conf.rx_queues)],
            tx_taken: vec![false; usize::from(conf.tx_queues)],
            flows: Vec::new(),
        })
    }

    /// The ethdev port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name the port was found by: a PCI address or a vdev instance name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The PMD's driver name ("unknown" when it gives none).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// True when the NIC verifies received IPv4 header checksums.
    pub fn rx_ipv4_checksum_offload(&self) -> bool {
        self.rx_offloads & u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) != 0
    }

    /// The VLAN offloads the port uses.
    pub fn vlan_offloads(&self) -> VlanOffloads {
        self.vlan
    }

    /// RX queues (one per worker).
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Makes `mac` the port's address (for a TAP: the kernel interface's too).
    pub fn set_mac(&mut self, mac: MacAddr) -> Result<(), DpdkError> {
        let mut addr = dpdk_sys::rte_ether_addr { addr_bytes: mac.0 };
        // SAFETY: valid port and address struct.
        let ret = unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(self.id, &mut addr) };
        check("rte_eth_dev_default_mac_addr_set", &self.device, ret)
    }

    /// Starts the port and enables all-multicast (IPv6 neighbour discovery needs the
    /// solicited-node groups; PMDs that cannot do it still work for IPv4).
    ///
    /// A mode-4 (802.3ad) bond is the exception: its RX burst drops every
    /// multicast and broadcast frame, ARP requests included, unless the bond is
    /// all-multicast or promiscuous (DPDK 22.11's `rx_burst_8023ad`), and a bond is
    /// all-multicast only if one of its members can be (`net_af_packet`,
    /// `net_tap` cannot). Such a bond is made promiscuous instead.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        // SAFETY: configured port with all queues set up.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        check("rte_eth_dev_start", &self.device, ret)?;
        self.started = true;
        // SAFETY: started port; failure is harmless and ignored.
        let ret = unsafe { dpdk_sys::rte_eth_allmulticast_enable(self.id) };
        if ret < 0 && super::bond::is_lacp_bond(self.id) {
            // SAFETY: started port.
            let promisc = unsafe { dpdk_sys::rte_eth_promiscuous_enable(self.id) };
            if promisc < 0 {
                log::error!(
                    "port {}: a mode-4 bond neither all-multicast nor promiscuous \
                     (errors {ret}, {promisc}): it drops ARP requests and multicast",
                    self.device
                );
            } else {
                log::info!(
                    "port {}: mode-4 bond made promiscuous (its members cannot be \
                     all-multicast, and it drops broadcast and multicast otherwise)",
                    self.device
                );
            }
        }
        Ok(())
    }

    /// Destroys the port's steering rules, then stops it (idempotent). The rules
    /// go first: they name queues that stopping and closing release.
    pub fn stop(&mut self) {
        if !self.flows.is_empty() {
            flow::destroy_flows(self.id, &self.device, &mut self.flows);
        }
        if self.started {
            // SAFETY: valid started port; no worker polls it any more (the runtime
            // stops ports only after all lcores returned).
            unsafe {
                dpdk_sys::rte_eth_dev_stop(self.id);
            }
            self.started = false;
        }
    }

    /// The port's current MAC address, read from the device.
    pub fn mac(&self) -> MacAddr {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port and out struct.
        unsafe {
            dpdk_sys::rte_eth_macaddr_get(self.id, &mut addr);
        }
        MacAddr(addr.addr_bytes)
    }

    /// The link state now, without waiting for autonegotiation.
    pub fn link(&self) -> LinkStatus {
        link_status(self.id)
    }

    /// The port's ethdev counters (see [`port_stats`]).
    pub fn stats(&self) -> PortStats {
        port_stats(self.id)
    }

    /// Hands out RX queue `q`; each queue can be taken once.
    pub fn take_rx_queue(&mut self, q: u16) -> Option<RxQueue> {
        let slot = self.rx_taken.get_mut(usize::from(q))?;
        if std::mem::replace(slot, true) {
            return None;
        }
        Some(RxQueue {
            port: self.id,
            queue: q,
        })
    }

    /// Hands out TX queue `q`; each queue can be taken once.
    pub fn take_tx_queue(&mut self, q: u16) -> Option<TxQueue> {
        let slot = self.tx_taken.get_mut(usize::from(q))?;
        if std::mem::replace(slot, true) {
            return None;
        }
        Some(TxQueue {
            port: self.id,
            queue: q,
            control_frames: super::bond::is_lacp_bond(self.id),
        })
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.stop();
        // SAFETY: stopped port owned by us; closing releases its queues.
        unsafe {
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

/// Link state of port `id` without waiting.
pub fn link_status(id: u16) -> LinkStatus {
    let mut link = dpdk_sys::rte_eth_link::default();
    // SAFETY: out struct is valid; an invalid id leaves it zeroed (link down).
    unsafe {
        dpdk_sys::rte_eth_link_get_nowait(id, &mut link);
    }
    LinkStatus {
        up: u32::from(link.link_status()) == dpdk_sys::RTE_ETH_LINK_UP,
        speed_mbps: link.link_speed,
    }
}

/// Counters of port `id` (zero for an invalid id). Safe to call from the
/// management thread while workers poll.
pub fn port_stats(id: u16) -> PortStats {
    let mut s = dpdk_sys::rte_eth_stats::default();
    // SAFETY: out struct is valid; ethdev stats reads are allowed concurrently with
    // the data path.
    let ret = unsafe { dpdk_sys::rte_eth_stats_get(id, &mut s) };
    if ret != 0 {
        return PortStats::default();
    }
    PortStats {
        rx_packets: s.ipackets,
        tx_packets: s.opackets,
        rx_bytes: s.ibytes,
        tx_bytes: s.obytes,
        rx_missed: s.imissed,
        rx_errors: s.ierrors,
        tx_errors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    }
}

/// RSS spreads flows over the workers' queues (hash of IPs and L4 ports, limited to
/// what the NIC can hash); a single queue needs no RSS. TX mbufs always come from one
/// pool with refcount 1, which is what MBUF_FAST_FREE requires.
fn build_eth_conf(
    conf: &PortConf,
    info: &dpdk_sys::rte_eth_dev_info,
    vlan: VlanOffloads,
) -> dpdk_sys::rte_eth_conf {
    let mut c = dpdk_sys::rte_eth_conf::default();
    c.rxmode.mtu = u32::from(conf.mtu);
    let wanted = u64::from(dpdk_sys::RTE_ETH_RSS_IP)
        | u64::from(dpdk_sys::RTE_ETH_RSS_TCP)
        | u64::from(dpdk_sys::RTE_ETH_RSS_UDP);
    let rss_hf = wanted & info.flow_type_rss_offloads;
    if conf.rx_queues > 1 && rss_hf != 0 {
        c.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
        c.rx_adv_conf.rss_conf.rss_key = std::ptr::null_mut();
        c.rx_adv_conf.rss_conf.rss_hf = rss_hf;
    } else {
        c.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_NONE;
    }
    let fast_free = u64::from(dpdk_sys::RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE);
    if info.tx_offload_capa & fast_free != 0 {
        c.txmode.offloads |= fast_free;
    }
    // The NIC verifies IPv4 header checksums on receive, so the burst path skips
    // its own check for packets it marks good (see Mbuf::ipv4_checksum_verified).
    let ipv4_cksum = u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM);
    if info.rx_offload_capa & ipv4_cksum != 0 {
        c.rxmode.offloads |= ipv4_cksum;
    }
    if vlan.strip {
        c.rxmode.offloads |= u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_VLAN_STRIP);
    }
    if vlan.filter {
        c.rxmode.offloads |= u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_VLAN_FILTER);
    }
    if vlan.insert {
        c.txmode.offloads |= u64::from(dpdk_sys::RTE_ETH_TX_OFFLOAD_VLAN_INSERT);
    }
    c
}

impl RxQueue {
    /// The ethdev port id of the queue.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Receives up to the spare capacity of `out` (at most `max`) packets, appended
    /// to `out`. Never allocates: `out` must have been created with enough capacity.
    pub fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let room = (out.capacity() - out.len())
            .min(max)
            .min(usize::from(u16::MAX));
        if room == 0 {
            return 0;
        }
        let len = out.len();
        // SAFETY: the spare capacity holds `room` slots of Mbuf, which is
        // repr(transparent) over *mut rte_mbuf; rx_burst writes n <= room owned mbuf
        // pointers there, and set_len makes exactly those n part of the vector.
        unsafe {
            let dst = out.as_mut_ptr().add(len).cast::<*mut dpdk_sys::rte_mbuf>();
            let n = dpdk_sys::rte_eth_rx_burst(self.port, self.queue, dst, room as u16);
            out.set_len(len + usize::from(n));
            usize::from(n)
        }
    }
}

impl TxQueue {
    /// The ethdev port id of the queue.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends as many of `pkts` as the NIC takes, from the front; what it refused
    /// stays in `pkts` for the caller to count and free in bulk.
    pub fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        let count = pkts.len().min(usize::from(u16::MAX)) as u16;
        // SAFETY: pkts is an array of owned mbuf pointers (Mbuf is repr(transparent));
        // the PMD takes ownership of the first n, which forget_front then drops from
        // the vector without freeing.
        let n = unsafe {
            dpdk_sys::rte_eth_tx_burst(self.port, self.queue, pkts.as_mut_ptr().cast(), count)
        };
        Mbuf::forget_front(pkts, usize::from(n));
        usize::from(n)
    }

    /// An empty TX burst on a port whose PMD sends its own frames from within
    /// bursts (`control_frames`): a mode-4 bond's pending LACPDUs go out here when
    /// the worker has no traffic for the port. Nothing for any other port.
    pub fn flush_control(&mut self) {
        if !self.control_frames {
            return;
        }
        let mut none: [*mut dpdk_sys::rte_mbuf; 0] = [];
        // SAFETY: a burst of zero packets reads nothing from the (empty) array; the
        // bond sends the LACPDUs it queued itself and returns 0.
        unsafe {
            dpdk_sys::rte_eth_tx_burst(self.port, self.queue, none.as_mut_ptr(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(queues: u16) -> PortConf {
        PortConf {
            rx_queues: queues,
            tx_queues: queues + 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mtu: 1500,
            vlans: vec![],
        }
    }

    /// What a multi-queue NIC with checksum offload and RSS reports (the values
    /// of the documented RTE_ETH_* bits).
    fn capable() -> dpdk_sys::rte_eth_dev_info {
        dpdk_sys::rte_eth_dev_info {
            rx_offload_capa: u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM)
                | u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_UDP_CKSUM)
                | u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_TCP_LRO),
            tx_offload_capa: u64::from(dpdk_sys::RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
                | u64::from(dpdk_sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM),
            flow_type_rss_offloads: u64::from(dpdk_sys::RTE_ETH_RSS_IP)
                | u64::from(dpdk_sys::RTE_ETH_RSS_UDP)
                | u64::from(dpdk_sys::RTE_ETH_RSS_SCTP),
            ..Default::default()
        }
    }

    #[test]
    fn a_capable_nic_gets_ipv4_checksum_offload_rss_and_fast_free_only() {
        let c = build_eth_conf(&conf(4), &capable(), VlanOffloads::default());
        // Of the RX offloads only the IPv4 header check: LRO would merge segments
        // a load balancer must forward one by one.
        assert_eq!(
            c.rxmode.offloads,
            u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM)
        );
        assert_eq!(
            c.txmode.offloads,
            u64::from(dpdk_sys::RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
        );
        assert_eq!(c.rxmode.mq_mode, dpdk_sys::RTE_ETH_MQ_RX_RSS);
        // Only the hash types asked for that the NIC has.
        assert_eq!(
            c.rx_adv_conf.rss_conf.rss_hf,
            u64::from(dpdk_sys::RTE_ETH_RSS_IP) | u64::from(dpdk_sys::RTE_ETH_RSS_UDP)
        );
        assert!(c.rx_adv_conf.rss_conf.rss_key.is_null());
        assert_eq!(c.rxmode.mtu, 1500);
    }

    #[test]
    fn a_bare_device_gets_no_offloads_and_one_queue_no_rss() {
        let bare = dpdk_sys::rte_eth_dev_info::default();
        let c = build_eth_conf(&conf(4), &bare, VlanOffloads::default());
        assert_eq!((c.rxmode.offloads, c.txmode.offloads), (0, 0));
        assert_eq!(c.rxmode.mq_mode, dpdk_sys::RTE_ETH_MQ_RX_NONE);
        // One queue needs no RSS even where the NIC has it.
        let c = build_eth_conf(&conf(1), &capable(), VlanOffloads::default());
        assert_eq!(c.rxmode.mq_mode, dpdk_sys::RTE_ETH_MQ_RX_NONE);
        assert_eq!(
            c.rxmode.offloads,
            u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM)
        );
    }

    #[test]
    fn vlan_offloads_follow_the_capabilities_on_ports_with_vlans_only() {
        let strip = u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_VLAN_STRIP);
        let filter = u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_VLAN_FILTER);
        let insert = u64::from(dpdk_sys::RTE_ETH_TX_OFFLOAD_VLAN_INSERT);
        let all = VlanOffloads {
            strip: true,
            insert: true,
            filter: true,
        };
        assert_eq!(VlanOffloads::choose(true, strip | filter, insert), all);
        // No VLANs: nothing, whatever the NIC offers.
        assert_eq!(
            VlanOffloads::choose(false, strip | filter, insert),
            VlanOffloads::default()
        );
        // What af_packet offers: strip and insert, no filter.
        let af_packet = VlanOffloads::choose(true, strip, insert);
        assert_eq!(
            af_packet,
            VlanOffloads {
                strip: true,
                insert: true,
                filter: false
            }
        );
        assert_eq!(
            af_packet.describe(),
            "VLAN tags stripped by the NIC, inserted by the NIC, filtered by software"
        );
        // A NIC with none: software for all three.
        assert_eq!(VlanOffloads::choose(true, 0, 0), VlanOffloads::default());

        let c = build_eth_conf(&conf(1), &capable(), all);
        assert_eq!(
            c.rxmode.offloads,
            u64::from(dpdk_sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) | strip | filter
        );
        assert_eq!(
            c.txmode.offloads,
            u64::from(dpdk_sys::RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE) | insert
        );
    }
}
