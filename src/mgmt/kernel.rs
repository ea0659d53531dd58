//! The exception path (in the spirit of DPVS's KNI): for every interface (port or
//! VLAN) with addresses a kernel TAP interface, named like the interface and
//! holding its port's MAC and its addresses, lets the appliance's own sockets —
//! health checks, BGP, ssh — use the DPDK ports. A VLAN's TAP carries untagged
//! frames: the workers take the tag off and put it on.
//!
//! Workers pass the kernel what is addressed to a port's own addresses and that
//! ferrovs does not answer itself (TCP, UDP, ICMP other than echo, ARP/ND answers);
//! the management core takes what the kernel sends out of a TAP, tags it with the
//! interface, and hands it on a ring to worker 0, which transmits it with its own bursts
//! (a NIC has no spare TX queue for the management core, and a worker's may not be
//! shared).

use crate::dpdk::{Mbuf, RingProducer, RxQueue};
use ferrovs_core::config::InterfaceConfig;
use ferrovs_core::packet::MacAddr;
use ferrovs_core::packet::PacketBuf;
use std::process::Command;

/// Packets moved per queue and poll.
const BURST: usize = 32;

/// The ethdev name of interface `index`'s TAP (`net_tap0`, ...).
pub fn tap_device(index: usize) -> String {
    format!("net_tap{index}")
}

/// The EAL `--vdev` spec creating interface `index`'s TAP, named like it.
pub fn tap_vdev(index: usize, iface: &InterfaceConfig<'_>) -> String {
    format!("{},iface={}", tap_device(index), iface.name)
}

/// Gives the kernel interface of `iface` its MTU (its port's) and addresses and
/// brings it up. The MAC is the physical port's (set through DPDK before), so
/// the kernel's ARP requests and the answers to them need no rewriting.
pub fn configure_interface(
    iface: &InterfaceConfig<'_>,
    mtu: u16,
    mac: MacAddr,
) -> Result<(), String> {
    let name = iface.name;
    let has_v6 = iface.addresses.iter().any(|a| a.addr().is_ipv6());
    let mtu = mtu.to_string();
    let mac = mac.to_string();
    let mut commands: Vec<Vec<String>> = vec![
        vec![
            "link".into(),
            "set".into(),
            "dev".into(),
            name.into(),
            "address".into(),
            mac,
        ],
        vec![
            "link".into(),
            "set".into(),
            "dev".into(),
            name.into(),
            "mtu".into(),
            mtu,
        ],
    ];
    for a in iface.addresses {
        let mut c = vec![
            "addr".into(),
            "add".into(),
            a.to_string(),
            "dev".into(),
            name.into(),
        ];
        if a.addr().is_ipv6() {
            // ferrovs already answers for the address: no duplicate detection.
            c.push("nodad".into());
        }
        commands.push(c);
    }
    commands.push(vec![
        "link".into(),
        "set".into(),
        "dev".into(),
        name.into(),
        "up".into(),
    ]);
    if !has_v6 {
        // No IPv6 on this port: keep the kernel from sending router solicitations.
        // Written directly: sysctl's dotted keys cannot name `wan.100`.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    }
    for args in commands {
        let out = Command::new("ip")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run ip {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// One interface's kernel interface as the management core reads it.
pub struct KernelLink {
    /// The interface index (ports, then VLANs).
    pub port: usize,
    /// Every RX queue of the TAP (what the kernel sends).
    pub from_kernel: Vec<RxQueue>,
}

/// Moves what the kernel interfaces send towards the wire.
pub struct KernelPath {
    links: Vec<KernelLink>,
    to_wire: Option<RingProducer>,
    buf: Vec<Mbuf>,
}

impl KernelPath {
    /// Reads the TAPs of `links` and hands their frames to `to_wire`, worker 0's ring;
    /// without a ring, [`KernelPath::poll`] moves nothing.
    pub fn new(links: Vec<KernelLink>, to_wire: Option<RingProducer>) -> KernelPath {
        KernelPath {
            links,
            to_wire,
            buf: Vec::with_capacity(BURST),
        }
    }

    /// Moves everything waiting in the TAPs to worker 0's ring; what does not fit is
    /// dropped (the kernel retransmits). Returns the packets moved.
    pub fn poll(&mut self) -> usize {
        let Some(ring) = self.to_wire.as_mut() else {
            return 0;
        };
        let mut moved = 0;
        for link in &mut self.links {
            for q in &mut link.from_kernel {
                loop {
                    let n = q.rx_burst(&mut self.buf, BURST);
                    if n == 0 {
                        break;
                    }
                    for m in self.buf.iter_mut() {
                        m.set_rx_port(link.port as u16);
                    }
                    moved += ring.enqueue_burst(&mut self.buf);
                    Mbuf::free_bulk(&mut self.buf);
                }
            }
        }
        moved
    }
}
