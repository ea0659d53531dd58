//! A [`SteeringRule`] as the C structs rte_flow reads: the pure conversion, which
//! needs no EAL. The item spec/mask pointers aim into a boxed block the
//! [`FlowSpec`] owns, so they stay valid however the `FlowSpec` itself moves.

use dpdk_sys as sys;
use ferrovs_core::conn::Proto;
use ferrovs_core::steer::{AddrMatch, PortMatch, SteeringRule};
use std::ffi::c_void;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr;

/// Items in every pattern: ETH, IPV4 or IPV6, TCP or UDP, END.
const PATTERN_LEN: usize = 4;
/// Actions of every rule: QUEUE, END.
const ACTIONS_LEN: usize = 2;

/// Why a [`SteeringRule`] cannot be expressed as an rte_flow rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowRuleError {
    /// Neither address is given, so the IP version of the pattern is unknown.
    NoAddress,
    /// Source and destination addresses are of different IP versions: no packet
    /// could match.
    MixedAddressFamilies,
    /// A port value has bits outside its mask; rte_flow ignores them, so the NIC
    /// would match something other than the rule says.
    PortValueOutsideMask,
    /// An address value has bits outside its mask (as for ports).
    AddrValueOutsideMask,
}

impl FlowRuleError {
    /// The error as a metrics `reason` label.
    pub const fn reason(self) -> &'static str {
        match self {
            FlowRuleError::NoAddress => "no_address",
            FlowRuleError::MixedAddressFamilies => "mixed_address_families",
            FlowRuleError::PortValueOutsideMask => "port_value_outside_mask",
            FlowRuleError::AddrValueOutsideMask => "addr_value_outside_mask",
        }
    }
}

impl fmt::Display for FlowRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlowRuleError::NoAddress => "the rule names no address, so no IP version",
            FlowRuleError::MixedAddressFamilies => {
                "source and destination addresses are of different IP versions"
            }
            FlowRuleError::PortValueOutsideMask => "a port value has bits outside its mask",
            FlowRuleError::AddrValueOutsideMask => "an address value has bits outside its mask",
        })
    }
}

impl std::error::Error for FlowRuleError {}

/// Header specs and masks and the queue action's configuration, in one heap block
/// that the pattern and actions of a [`FlowSpec`] point into. Only the structs the
/// rule's IP version and protocol select are referenced; the others stay zero.
#[derive(Default)]
pub(super) struct Storage {
    pub(super) ipv4_spec: sys::rte_flow_item_ipv4,
    pub(super) ipv4_mask: sys::rte_flow_item_ipv4,
    pub(super) ipv6_spec: sys::rte_flow_item_ipv6,
    pub(super) ipv6_mask: sys::rte_flow_item_ipv6,
    pub(super) tcp_spec: sys::rte_flow_item_tcp,
    pub(super) tcp_mask: sys::rte_flow_item_tcp,
    pub(super) udp_spec: sys::rte_flow_item_udp,
    pub(super) udp_mask: sys::rte_flow_item_udp,
    pub(super) queue: sys::rte_flow_action_queue,
}

/// One steering rule in the C form `rte_flow_validate` and `rte_flow_create` take:
/// ingress attribute, pattern and actions.
pub struct FlowSpec {
    pub(super) attr: sys::rte_flow_attr,
    pub(super) pattern: [sys::rte_flow_item; PATTERN_LEN],
    pub(super) actions: [sys::rte_flow_action; ACTIONS_LEN],
    /// What `pattern` and `actions` point into. A Box, not an inline field: its heap
    /// block does not move when the `FlowSpec` does.
    pub(super) storage: Box<Storage>,
}

/// The IP version of a rule, from whichever addresses it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

fn family_of(rule: &SteeringRule) -> Result<Family, FlowRuleError> {
    let family = |a: IpAddr| match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    };
    // Value and mask of one match are of one version too.
    let of_match = |m: AddrMatch| {
        let f = family(m.value);
        if f == family(m.mask) {
            Ok(f)
        } else {
            Err(FlowRuleError::MixedAddressFamilies)
        }
    };
    let src = rule.src_addr.map(of_match).transpose()?;
    let dst = rule.dst_addr.map(of_match).transpose()?;
    match (src, dst) {
        (None, None) => Err(FlowRuleError::NoAddress),
        (Some(s), Some(d)) if s != d => Err(FlowRuleError::MixedAddressFamilies),
        (Some(f), _) | (_, Some(f)) => Ok(f),
    }
}

fn check_addr(m: Option<AddrMatch>) -> Result<(), FlowRuleError> {
    match m {
        Some(m) if !m.matches(m.value) => Err(FlowRuleError::AddrValueOutsideMask),
        _ => Ok(()),
    }
}

fn check_port(m: Option<PortMatch>) -> Result<(), FlowRuleError> {
    match m {
        Some(m) if m.value & !m.mask != 0 => Err(FlowRuleError::PortValueOutsideMask),
        _ => Ok(()),
    }
}

/// `rte_be16_t` as rte_flow wants it: the value's bytes in network order.
fn be16(v: u16) -> sys::rte_be16_t {
    u16::from_ne_bytes(v.to_be_bytes())
}

/// `rte_be32_t` holding an IPv4 address in network order.
fn be32_addr(a: Ipv4Addr) -> sys::rte_be32_t {
    u32::from_ne_bytes(a.octets())
}

/// (value, mask) of an IPv4 address match (None for IPv6, which `family_of` refused).
fn v4_match(m: AddrMatch) -> Option<(Ipv4Addr, Ipv4Addr)> {
    match (m.value, m.mask) {
        (IpAddr::V4(v), IpAddr::V4(k)) => Some((v, k)),
        _ => None,
    }
}

/// (value, mask) of an IPv6 address match.
fn v6_match(m: AddrMatch) -> Option<(Ipv6Addr, Ipv6Addr)> {
    match (m.value, m.mask) {
        (IpAddr::V6(v), IpAddr::V6(k)) => Some((v, k)),
        _ => None,
    }
}

/// (spec, mask) of one port field; absent means "any port" (both zero).
fn port_fields(m: Option<PortMatch>) -> (sys::rte_be16_t, sys::rte_be16_t) {
    m.map_or((0, 0), |m| (be16(m.value), be16(m.mask)))
}

fn item(
    type_: sys::rte_flow_item_type,
    spec: *const c_void,
    mask: *const c_void,
) -> sys::rte_flow_item {
    sys::rte_flow_item {
        type_,
        spec,
        last: ptr::null(),
        mask,
    }
}

fn item_any(type_: sys::rte_flow_item_type) -> sys::rte_flow_item {
    item(type_, ptr::null(), ptr::null())
}

impl FlowSpec {
    /// Builds the rte_flow form of `rule`: `ETH / IPV4|IPV6 / TCP|UDP / END` with
    /// `QUEUE rule.queue / END`, ingress, group 0, the rule's priority. Absent addresses and
    /// ports are zero in both spec and mask; the ETH item matches any frame (its
    /// EtherType follows from the IP item). Does not call DPDK.
    pub fn from_rule(rule: &SteeringRule) -> Result<FlowSpec, FlowRuleError> {
        let family = family_of(rule)?;
        check_port(rule.src_port)?;
        check_port(rule.dst_port)?;
        check_addr(rule.src_addr)?;
        check_addr(rule.dst_addr)?;

        let mut st = Box::<Storage>::default();
        match family {
            Family::V4 => {
                if let Some((value, mask)) = rule.src_addr.and_then(v4_match) {
                    st.ipv4_spec.hdr.src_addr = be32_addr(value);
                    st.ipv4_mask.hdr.src_addr = be32_addr(mask);
                }
                if let Some((value, mask)) = rule.dst_addr.and_then(v4_match) {
                    st.ipv4_spec.hdr.dst_addr = be32_addr(value);
                    st.ipv4_mask.hdr.dst_addr = be32_addr(mask);
                }
            }
            Family::V6 => {
                if let Some((value, mask)) = rule.src_addr.and_then(v6_match) {
                    st.ipv6_spec.hdr.src_addr = value.octets();
                    st.ipv6_mask.hdr.src_addr = mask.octets();
                }
                if let Some((value, mask)) = rule.dst_addr.and_then(v6_match) {
                    st.ipv6_spec.hdr.dst_addr = value.octets();
                    st.ipv6_mask.hdr.dst_addr = mask.octets();
                }
            }
        }
        let (sport, sport_mask) = port_fields(rule.src_port);
        let (dport, dport_mask) = port_fields(rule.dst_port);
        match rule.proto {
            Proto::Tcp => {
                st.tcp_spec.hdr.src_port = sport;
                st.tcp_spec.hdr.dst_port = dport;
                st.tcp_mask.hdr.src_port = sport_mask;
                st.tcp_mask.hdr.dst_port = dport_mask;
            }
            Proto::Udp => {
                st.udp_spec.hdr.src_port = sport;
                st.udp_spec.hdr.dst_port = dport;
                st.udp_mask.hdr.src_port = sport_mask;
                st.udp_mask.hdr.dst_port = dport_mask;
            }
        }
        st.queue.index = rule.queue;

        // Pointers are taken after the last write, from the heap block itself.
        let l3 = match family {
            Family::V4 => item(
                sys::RTE_FLOW_ITEM_TYPE_IPV4,
                ptr::addr_of!(st.ipv4_spec).cast(),
                ptr::addr_of!(st.ipv4_mask).cast(),
            ),
            Family::V6 => item(
                sys::RTE_FLOW_ITEM_TYPE_IPV6,
                ptr::addr_of!(st.ipv6_spec).cast(),
                ptr::addr_of!(st.ipv6_mask).cast(),
            ),
        };
        let any_port = rule.src_port.is_none() && rule.dst_port.is_none();
        let l4 = match (rule.proto, any_port) {
            (Proto::Tcp, true) => item_any(sys::RTE_FLOW_ITEM_TYPE_TCP),
            (Proto::Udp, true) => item_any(sys::RTE_FLOW_ITEM_TYPE_UDP),
            (Proto::Tcp, false) => item(
                sys::RTE_FLOW_ITEM_TYPE_TCP,
                ptr::addr_of!(st.tcp_spec).cast(),
                ptr::addr_of!(st.tcp_mask).cast(),
            ),
            (Proto::Udp, false) => item(
                sys::RTE_FLOW_ITEM_TYPE_UDP,
                ptr::addr_of!(st.udp_spec).cast(),
                ptr::addr_of!(st.udp_mask).cast(),
            ),
        };
        let pattern = [
            item_any(sys::RTE_FLOW_ITEM_TYPE_ETH),
            l3,
            l4,
            item_any(sys::RTE_FLOW_ITEM_TYPE_END),
        ];
        let actions = [
            sys::rte_flow_action {
                type_: sys::RTE_FLOW_ACTION_TYPE_QUEUE,
                conf: ptr::addr_of!(st.queue).cast(),
            },
            sys::rte_flow_action {
                type_: sys::RTE_FLOW_ACTION_TYPE_END,
                conf: ptr::null(),
            },
        ];
        let mut attr = sys::rte_flow_attr::default();
        attr.set_ingress(1);
        attr.priority = rule.priority;
        Ok(FlowSpec {
            attr,
            pattern,
            actions,
            storage: st,
        })
    }

    /// The attribute: ingress only, group 0, the rule's priority.
    pub fn attr(&self) -> &sys::rte_flow_attr {
        &self.attr
    }

    /// The pattern, END-terminated.
    pub fn pattern(&self) -> &[sys::rte_flow_item] {
        &self.pattern
    }

    /// The actions, END-terminated.
    pub fn actions(&self) -> &[sys::rte_flow_action] {
        &self.actions
    }

    /// The queue this rule sends packets to.
    pub fn queue(&self) -> u16 {
        self.storage.queue.index
    }

    /// Names the part of this rule that `cause` (an `rte_flow_error.cause`) points
    /// at, if it is one of ours: PMDs point it at the offending item, its spec or
    /// mask, the action or its conf. Compares addresses only.
    pub(super) fn locate(&self, cause: *const c_void) -> Option<String> {
        if cause.is_null() {
            return None;
        }
        for (i, it) in self.pattern.iter().enumerate() {
            let name = item_type_name(it.type_);
            let part = if ptr::eq(cause, ptr::from_ref(it).cast()) {
                ""
            } else if ptr::eq(cause, it.spec) && !it.spec.is_null() {
                " spec"
            } else if ptr::eq(cause, it.mask) && !it.mask.is_null() {
                " mask"
            } else {
                continue;
            };
            return Some(format!("pattern item {i} ({name}){part}"));
        }
        for (i, a) in self.actions.iter().enumerate() {
            let name = action_type_name(a.type_);
            let part = if ptr::eq(cause, ptr::from_ref(a).cast()) {
                ""
            } else if ptr::eq(cause, a.conf) && !a.conf.is_null() {
                " conf"
            } else {
                continue;
            };
            return Some(format!("action {i} ({name}){part}"));
        }
        if ptr::eq(cause, ptr::from_ref(&self.attr).cast()) {
            return Some(String::from("attribute"));
        }
        None
    }
}

fn item_type_name(t: sys::rte_flow_item_type) -> &'static str {
    match t {
        sys::RTE_FLOW_ITEM_TYPE_END => "end",
        sys::RTE_FLOW_ITEM_TYPE_ETH => "eth",
        sys::RTE_FLOW_ITEM_TYPE_IPV4 => "ipv4",
        sys::RTE_FLOW_ITEM_TYPE_IPV6 => "ipv6",
        sys::RTE_FLOW_ITEM_TYPE_TCP => "tcp",
        sys::RTE_FLOW_ITEM_TYPE_UDP => "udp",
        _ => "other",
    }
}

fn action_type_name(t: sys::rte_flow_action_type) -> &'static str {
    match t {
        sys::RTE_FLOW_ACTION_TYPE_END => "end",
        sys::RTE_FLOW_ACTION_TYPE_QUEUE => "queue",
        _ => "other",
    }
}
