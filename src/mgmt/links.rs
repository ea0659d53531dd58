//! The ports' links and the bonds' members, watched from the management loop.
//!
//! A bond (DPDK's `net_bonding`) fails over by itself: it learns a member's link
//! from the member PMD's link interrupt, or, for a member without one, by polling
//! it every `lsc_poll_period_ms`. This watch does not take that over. It reads the
//! same state to log and export it (`ferrovs_port_link_up`,
//! `ferrovs_bond_member_*`), has the port's addresses announced when an
//! active-backup bond moves to another member (so that switches learn at once
//! where its MAC went, as Linux bonding's `num_grat_arp`), and raises the link
//! event for `net_tap` members, whose PMD claims link interrupts but never raises
//! them (see `dpdk-sys/src/helpers.c`), so that without it the bond never sees
//! such a member fail.

use super::metrics::{MemberLink, PortLink, PortLinks};
use crate::dpdk::{self, bond};
use ferrovs_core::packet::MacAddr;
use std::time::{Duration, Instant};

/// How often a port that is not a bond has its link read (for the log and the
/// metric only: nothing acts on it).
const PORT_PERIOD: Duration = Duration::from_secs(1);

/// Drivers whose link state is fixed while they run: their link update reads
/// nothing, so a bond can never see such a member fail.
const FIXED_LINK_DRIVERS: [&str; 3] = ["net_af_packet", "net_pcap", "net_af_xdp"];

/// Drivers that claim link interrupts but never raise them.
const SILENT_LSC_DRIVERS: [&str; 1] = ["net_tap"];

/// A port to watch.
pub struct WatchedPort {
    /// The port's name from the configuration.
    pub name: String,
    /// Its ethdev id.
    pub id: u16,
    /// The MAC the data plane uses for it.
    pub mac: MacAddr,
    /// For a bond: how often its members are read.
    pub bond_period: Option<Duration>,
}

/// How often a bond's members are read: the bond's own polling period
/// (`lsc_poll_period_ms=` in its device spec, DPDK's default 10 ms), so that a
/// net_tap member fails over as fast as a polled one would.
pub fn bond_period(spec: &str) -> Duration {
    let ms = spec
        .split(',')
        .find_map(|arg| arg.strip_prefix("lsc_poll_period_ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(10);
    Duration::from_millis(ms)
}

/// One port as the watch sees it.
struct Watched {
    name: String,
    id: u16,
    up: bool,
    bond: Option<Bond>,
}

struct Bond {
    mode: u8,
    /// The MAC the data plane uses for the port; a bond keeps its own over a
    /// failover (the new active member takes it).
    mac: MacAddr,
    period: Duration,
    last: Instant,
    members: Vec<Member>,
    /// The member the bond sends through (active-backup, TLB, ALB).
    primary: Option<u16>,
    active: Vec<u16>,
}

struct Member {
    id: u16,
    name: String,
    up: bool,
    raise: bool,
    /// Mode 4: the member's LACP actor state (`bond::LACP_*` bits), 0 before
    /// the bond's state machines set it.
    lacp: u8,
}

/// Whether an 802.3ad member's LACP actor state has it in the aggregate, both
/// ways: what the bond's RX and TX bursts use it for.
fn lacp_in_aggregate(state: u8) -> bool {
    let both = bond::LACP_COLLECTING | bond::LACP_DISTRIBUTING;
    state & both == both
}

/// What the management loop does after a poll.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkChanges {
    /// Ports whose bond now sends through another member: their addresses are
    /// to be announced.
    pub announce: Vec<usize>,
}

/// Watches every port's link and every bond's members.
pub struct LinkWatch {
    ports: Vec<Watched>,
    view: PortLinks,
    last_ports: Instant,
}

fn mode_name(mode: u8) -> &'static str {
    match mode {
        0 => "round-robin",
        1 => "active-backup",
        2 => "balance-xor",
        3 => "broadcast",
        4 => "802.3ad",
        5 => "tlb",
        6 => "alb",
        _ => "unknown",
    }
}

/// Whether the bond sends through one member (its primary) rather than all it
/// counts active.
fn uses_primary(mode: u8) -> bool {
    matches!(
        mode,
        bond::MODE_ACTIVE_BACKUP | bond::MODE_TLB | bond::MODE_ALB
    )
}

impl Bond {
    fn name_of(&self, id: Option<u16>) -> String {
        id.and_then(|id| self.members.iter().find(|m| m.id == id))
            .map_or_else(|| "none".to_string(), |m| m.name.clone())
    }

    /// Whether member `m` carries the bond's traffic. The bond counts a member
    /// active from its link alone (`rte_eth_bond_active_slaves_get`); in mode 4
    /// it carries traffic only once LACP has it collecting and distributing.
    fn carries(&self, m: &Member) -> bool {
        self.active.contains(&m.id)
            && (!uses_primary(self.mode) || self.primary == Some(m.id))
            && (self.mode != bond::MODE_8023AD || lacp_in_aggregate(m.lacp))
    }
}

impl LinkWatch {
    /// Reads every port's link and each bond's members, and logs what a bond is
    /// made of and what it cannot see.
    pub fn new(ports: &[WatchedPort], view: PortLinks) -> LinkWatch {
        let now = Instant::now();
        let ports = ports
            .iter()
            .map(|p| Watched {
                name: p.name.clone(),
                id: p.id,
                up: dpdk::link_status(p.id).up,
                bond: p
                    .bond_period
                    .and_then(|period| Self::bond(&p.name, p.id, p.mac, period, now)),
            })
            .collect();
        let watch = LinkWatch {
            ports,
            view,
            last_ports: now,
        };
        watch.publish();
        watch
    }

    fn bond(port: &str, id: u16, mac: MacAddr, period: Duration, now: Instant) -> Option<Bond> {
        let ids = match bond::members(id) {
            Ok(ids) => ids,
            Err(e) => {
                log::error!("port {port}: bond members unknown ({e}); not watched");
                return None;
            }
        };
        let mode = bond::mode(id).unwrap_or(u8::MAX);
        let members: Vec<Member> = ids
            .iter()
            .map(|&m| {
                let name = bond::port_name(m).unwrap_or_else(|_| format!("port {m}"));
                let driver = bond::driver_name(m);
                if FIXED_LINK_DRIVERS.contains(&driver.as_str()) {
                    log::warn!(
                        "port {port}: bond member {name} ({driver}) reports its link up \
                         whatever the kernel interface's state: the bond cannot fail over \
                         from it"
                    );
                }
                Member {
                    id: m,
                    up: dpdk::link_status(m).up,
                    raise: SILENT_LSC_DRIVERS.contains(&driver.as_str()),
                    name,
                    lacp: 0,
                }
            })
            .collect();
        let mut b = Bond {
            mode,
            mac,
            period,
            last: now,
            members,
            primary: bond::primary(id),
            active: bond::active_members(id).unwrap_or_default(),
        };
        if b.members.iter().any(|m| m.raise) {
            log::info!(
                "port {port}: ferrovs raises the link events of the bond's net_tap \
                 members (net_tap does not)"
            );
        }
        let list = b
            .members
            .iter()
            .map(|m| format!("{} (link {})", m.name, if m.up { "up" } else { "down" }))
            .collect::<Vec<_>>()
            .join(", ");
        log::info!(
            "port {port}: bond mode {mode} ({}), members {list}, link checked every {} ms{}",
            mode_name(mode),
            period.as_millis(),
            if uses_primary(mode) {
                format!(", sending through {}", b.name_of(b.primary))
            } else {
                String::new()
            }
        );
        // The bond learned the members' links when it started; a net_tap member's
        // later changes reach it only through this watch.
        b.last = now;
        Some(b)
    }

    /// One poll, from the management loop: reads what is due and reports what
    /// the loop is to do.
    pub fn poll(&mut self, now: Instant) -> LinkChanges {
        let mut changes = LinkChanges::default();
        let ports_due = now.duration_since(self.last_ports) >= PORT_PERIOD;
        if ports_due {
            self.last_ports = now;
        }
        let mut changed = false;
        for (index, p) in self.ports.iter_mut().enumerate() {
            let mut read_link = ports_due;
            if let Some(b) = p.bond.as_mut() {
                if now.duration_since(b.last) >= b.period {
                    b.last = now;
                    read_link = true;
                    let (seen, moved) = Self::poll_bond(&p.name, p.id, b);
                    changed |= seen;
                    if moved {
                        changes.announce.push(index);
                    }
                }
            }
            if read_link {
                let up = dpdk::link_status(p.id).up;
                if up != p.up {
                    p.up = up;
                    changed = true;
                    if up {
                        log::info!("port {}: link up", p.name);
                    } else {
                        log::warn!("port {}: link down", p.name);
                    }
                }
            }
        }
        if changed {
            self.publish();
        }
        changes
    }

    /// Reads a bond's members; raises the link event of a member whose PMD does
    /// not. Returns (anything changed, the bond now sends through another member).
    fn poll_bond(port: &str, id: u16, b: &mut Bond) -> (bool, bool) {
        let mut changed = false;
        for m in &mut b.members {
            let up = dpdk::link_status(m.id).up;
            if up == m.up {
                continue;
            }
            m.up = up;
            changed = true;
            if up {
                log::info!("port {port}: bond member {} link up", m.name);
            } else {
                log::warn!("port {port}: bond member {} link down", m.name);
            }
            if m.raise {
                if let Err(e) = bond::raise_link_event(&m.name) {
                    log::error!("port {port}: bond member {}: {e}", m.name);
                }
            }
        }
        if b.mode == bond::MODE_8023AD {
            for m in &mut b.members {
                let state = bond::lacp_actor_state(id, m.id).unwrap_or(0);
                if state == m.lacp {
                    continue;
                }
                if lacp_in_aggregate(state) != lacp_in_aggregate(m.lacp) {
                    changed = true;
                    if lacp_in_aggregate(state) {
                        log::info!(
                            "port {port}: bond member {} LACP collecting and distributing \
                             (actor state {state:#04x})",
                            m.name
                        );
                    } else {
                        log::warn!(
                            "port {port}: bond member {} out of the LACP aggregate \
                             (actor state {state:#04x})",
                            m.name
                        );
                    }
                }
                m.lacp = state;
            }
        }
        let active = bond::active_members(id).unwrap_or_default();
        if active != b.active {
            let names: Vec<String> = active.iter().map(|&a| b.name_of(Some(a))).collect();
            log::info!("port {port}: bond members active: [{}]", names.join(", "));
            b.active = active;
            changed = true;
        }
        let primary = bond::primary(id);
        if !uses_primary(b.mode) || primary == b.primary {
            return (changed, false);
        }
        log::warn!(
            "port {port}: bond now sends through {} (was {})",
            b.name_of(primary),
            b.name_of(b.primary)
        );
        b.primary = primary;
        let mac = bond::mac(id);
        if mac != b.mac {
            log::error!(
                "port {port}: the bond's MAC is now {mac}, ferrovs sends from {}",
                b.mac
            );
        }
        (true, true)
    }

    /// Hands the current view to the metrics.
    fn publish(&self) {
        let view = self
            .ports
            .iter()
            .map(|p| PortLink {
                up: p.up,
                members: p.bond.as_ref().map_or_else(Vec::new, |b| {
                    b.members
                        .iter()
                        .map(|m| MemberLink {
                            name: m.name.clone(),
                            up: m.up,
                            active: b.carries(m),
                        })
                        .collect()
                }),
            })
            .collect();
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = view;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bond_s_members_are_read_at_its_own_polling_period() {
        let ms = |spec| bond_period(spec).as_millis();
        assert_eq!(ms("net_bonding0,mode=1"), 10);
        assert_eq!(ms("net_bonding0,mode=1,lsc_poll_period_ms=100"), 100);
        assert_eq!(ms("net_bonding0,lsc_poll_period_ms=5,mode=4"), 5);
        assert_eq!(ms("net_bonding0,lsc_poll_period_ms=0"), 10);
        assert_eq!(ms("net_bonding0,lsc_poll_period_ms=x"), 10);
    }

    /// An 802.3ad member carries traffic when LACP has it collecting and
    /// distributing, whatever its link: 0x3d is what DPDK's bond shows in the
    /// aggregate (active, aggregatable, in sync, collecting, distributing), 0x45
    /// before a partner answered (defaulted).
    #[test]
    fn an_802_3ad_member_carries_traffic_only_in_the_lacp_aggregate() {
        let member = |id, lacp| Member {
            id,
            name: format!("m{id}"),
            up: true,
            raise: false,
            lacp,
        };
        let b = Bond {
            mode: bond::MODE_8023AD,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            period: Duration::from_millis(10),
            last: Instant::now(),
            members: vec![],
            primary: Some(3),
            active: vec![3, 4],
        };
        assert!(b.carries(&member(3, 0x3d)));
        assert!(b.carries(&member(4, 0x3d)));
        assert!(!b.carries(&member(4, 0x45)));
        assert!(!b.carries(&member(4, 0x1d)));
        assert!(!b.carries(&member(5, 0x3d)));
        let b = Bond {
            mode: bond::MODE_ACTIVE_BACKUP,
            ..b
        };
        assert!(b.carries(&member(3, 0)));
        assert!(!b.carries(&member(4, 0)));
    }
}
