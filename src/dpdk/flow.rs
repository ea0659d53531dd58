//! NIC steering with rte_flow: one [`SteeringRule`] becomes one ingress rule
//! `ETH / IPV4|IPV6 / TCP|UDP / END` with the action `QUEUE / END`.
//!
//! The rules only make the software handoff between workers rare (DESIGN.md, data
//! plane step 3): a PMD that refuses them, or has no rte_flow at all, costs the
//! handoff and nothing else, so [`Port::create_flows`] reports instead of failing.
//! This runs once at start-up; nothing here is on the packet path.
//!
//! The conversion ([`FlowSpec::from_rule`]) is pure and needs no EAL: it builds the C
//! structs DPDK reads, with the item spec/mask pointers aimed into a boxed block the
//! `FlowSpec` owns, so they stay valid however the `FlowSpec` itself moves.

use super::{DpdkError, Port};
use dpdk_sys as sys;
use ferrovs_core::conn::Proto;
use ferrovs_core::steer::{PortMatch, SteeringRule};
use std::ffi::{c_void, CStr};
use std::fmt;
use std::net::IpAddr;
use std::ptr::{self, NonNull};

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
}

impl FlowRuleError {
    /// The error as a metrics `reason` label.
    pub const fn reason(self) -> &'static str {
        match self {
            FlowRuleError::NoAddress => "no_address",
            FlowRuleError::MixedAddressFamilies => "mixed_address_families",
            FlowRuleError::PortValueOutsideMask => "port_value_outside_mask",
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
        })
    }
}

impl std::error::Error for FlowRuleError {}

/// Header specs and masks and the queue action's configuration, in one heap block
/// that the pattern and actions of a [`FlowSpec`] point into. Only the structs the
/// rule's IP version and protocol select are referenced; the others stay zero.
#[derive(Default)]
struct Storage {
    ipv4_spec: sys::rte_flow_item_ipv4,
    ipv4_mask: sys::rte_flow_item_ipv4,
    ipv6_spec: sys::rte_flow_item_ipv6,
    ipv6_mask: sys::rte_flow_item_ipv6,
    tcp_spec: sys::rte_flow_item_tcp,
    tcp_mask: sys::rte_flow_item_tcp,
    udp_spec: sys::rte_flow_item_udp,
    udp_mask: sys::rte_flow_item_udp,
    queue: sys::rte_flow_action_queue,
}

/// One steering rule in the C form `rte_flow_validate` and `rte_flow_create` take:
/// ingress attribute, pattern and actions.
pub struct FlowSpec {
    attr: sys::rte_flow_attr,
    pattern: [sys::rte_flow_item; PATTERN_LEN],
    actions: [sys::rte_flow_action; ACTIONS_LEN],
    /// What `pattern` and `actions` point into. A Box, not an inline field: its heap
    /// block does not move when the `FlowSpec` does.
    storage: Box<Storage>,
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
    match (rule.src_addr.map(family), rule.dst_addr.map(family)) {
        (None, None) => Err(FlowRuleError::NoAddress),
        (Some(s), Some(d)) if s != d => Err(FlowRuleError::MixedAddressFamilies),
        (Some(f), _) | (_, Some(f)) => Ok(f),
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
fn be32_addr(a: std::net::Ipv4Addr) -> sys::rte_be32_t {
    u32::from_ne_bytes(a.octets())
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
    /// `QUEUE rule.queue / END`, ingress, group 0, priority 0. Absent addresses and
    /// ports are zero in both spec and mask; the ETH item matches any frame (its
    /// EtherType follows from the IP item). Does not call DPDK.
    pub fn from_rule(rule: &SteeringRule) -> Result<FlowSpec, FlowRuleError> {
        let family = family_of(rule)?;
        check_port(rule.src_port)?;
        check_port(rule.dst_port)?;

        let mut st = Box::<Storage>::default();
        match family {
            Family::V4 => {
                if let Some(IpAddr::V4(a)) = rule.src_addr {
                    st.ipv4_spec.hdr.src_addr = be32_addr(a);
                    st.ipv4_mask.hdr.src_addr = u32::MAX;
                }
                if let Some(IpAddr::V4(a)) = rule.dst_addr {
                    st.ipv4_spec.hdr.dst_addr = be32_addr(a);
                    st.ipv4_mask.hdr.dst_addr = u32::MAX;
                }
            }
            Family::V6 => {
                if let Some(IpAddr::V6(a)) = rule.src_addr {
                    st.ipv6_spec.hdr.src_addr = a.octets();
                    st.ipv6_mask.hdr.src_addr = [0xff; 16];
                }
                if let Some(IpAddr::V6(a)) = rule.dst_addr {
                    st.ipv6_spec.hdr.dst_addr = a.octets();
                    st.ipv6_mask.hdr.dst_addr = [0xff; 16];
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
        Ok(FlowSpec {
            attr,
            pattern,
            actions,
            storage: st,
        })
    }

    /// The attribute: ingress only, group 0, priority 0.
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
    fn locate(&self, cause: *const c_void) -> Option<String> {
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

/// `enum rte_flow_error_type` in snake_case, as in the C names.
pub fn flow_error_type_name(t: sys::rte_flow_error_type) -> &'static str {
    match t {
        sys::RTE_FLOW_ERROR_TYPE_NONE => "none",
        sys::RTE_FLOW_ERROR_TYPE_UNSPECIFIED => "unspecified",
        sys::RTE_FLOW_ERROR_TYPE_HANDLE => "handle",
        sys::RTE_FLOW_ERROR_TYPE_ATTR_GROUP => "attr_group",
        sys::RTE_FLOW_ERROR_TYPE_ATTR_PRIORITY => "attr_priority",
        sys::RTE_FLOW_ERROR_TYPE_ATTR_INGRESS => "attr_ingress",
        sys::RTE_FLOW_ERROR_TYPE_ATTR_EGRESS => "attr_egress",
        sys::RTE_FLOW_ERROR_TYPE_ATTR_TRANSFER => "attr_transfer",
        sys::RTE_FLOW_ERROR_TYPE_ATTR => "attr",
        sys::RTE_FLOW_ERROR_TYPE_ITEM_NUM => "item_num",
        sys::RTE_FLOW_ERROR_TYPE_ITEM_SPEC => "item_spec",
        sys::RTE_FLOW_ERROR_TYPE_ITEM_LAST => "item_last",
        sys::RTE_FLOW_ERROR_TYPE_ITEM_MASK => "item_mask",
        sys::RTE_FLOW_ERROR_TYPE_ITEM => "item",
        sys::RTE_FLOW_ERROR_TYPE_ACTION_NUM => "action_num",
        sys::RTE_FLOW_ERROR_TYPE_ACTION_CONF => "action_conf",
        sys::RTE_FLOW_ERROR_TYPE_ACTION => "action",
        sys::RTE_FLOW_ERROR_TYPE_STATE => "state",
        _ => "unknown",
    }
}

/// "TYPE[ at PART][: MESSAGE]", the context of a [`DpdkError`] from rte_flow. The
/// message is left out when it only repeats `errno_text`, which the error's Display
/// prints anyway (ethdev's own refusals set it to `rte_strerror(code)`).
fn flow_error_context(
    kind: &str,
    located: Option<&str>,
    message: Option<&str>,
    errno_text: &str,
) -> String {
    let mut context = String::from(kind);
    if let Some(part) = located {
        context.push_str(" at ");
        context.push_str(part);
    }
    match message {
        Some(m) if !m.is_empty() && m != errno_text => {
            context.push_str(": ");
            context.push_str(m);
        }
        _ => {}
    }
    context
}

/// The [`DpdkError`] for a failed rte_flow call on `spec`, from its `rte_flow_error`.
fn flow_error(
    call: &'static str,
    code: i32,
    err: &sys::rte_flow_error,
    spec: &FlowSpec,
) -> DpdkError {
    let message = if err.message.is_null() {
        None
    } else {
        // SAFETY: a non-NULL message is a NUL-terminated string set by ethdev or the
        // PMD (rte_flow_error_set); it is copied out before anything else runs.
        Some(
            unsafe { CStr::from_ptr(err.message) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    let located = spec.locate(err.cause);
    // SAFETY: rte_strerror returns a NUL-terminated string for any code, never NULL.
    let errno_text = unsafe { CStr::from_ptr(sys::rte_strerror(code.abs())) }.to_string_lossy();
    let context = flow_error_context(
        flow_error_type_name(err.type_),
        located.as_deref(),
        message.as_deref(),
        &errno_text,
    );
    DpdkError::new(call, context, code)
}

/// An installed rte_flow rule; [`Port`] destroys it before the port stops.
pub(super) struct FlowHandle(NonNull<sys::rte_flow>);

/// Destroys `flows` of port `port_id`, newest first. If the PMD refuses one, the
/// port's whole flow table is flushed so no rule outlives its queues.
pub(super) fn destroy_flows(port_id: u16, device: &str, flows: &mut Vec<FlowHandle>) {
    let mut failed = false;
    while let Some(FlowHandle(flow)) = flows.pop() {
        let mut err = sys::rte_flow_error::default();
        // SAFETY: `flow` was returned by rte_flow_create on this port and has not
        // been destroyed (handles are popped once); err is a valid out struct.
        let ret = unsafe { sys::rte_flow_destroy(port_id, flow.as_ptr(), &mut err) };
        if ret != 0 {
            failed = true;
        }
    }
    if failed {
        let mut err = sys::rte_flow_error::default();
        // SAFETY: valid port id and out struct; flushing removes every rule of the
        // port, all of which are ferrovs's own.
        let ret = unsafe { sys::rte_flow_flush(port_id, &mut err) };
        log::warn!(
            "{device}: rte_flow_destroy refused a steering rule; flush of all rules {}",
            if ret == 0 { "succeeded" } else { "failed too" }
        );
    }
}

/// Why one steering rule was not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowRefusalCause {
    /// The rule cannot be expressed in rte_flow; it never reached the PMD.
    Rule(FlowRuleError),
    /// The rule names a queue the port was not configured with.
    NoSuchQueue {
        /// The queue the rule names.
        queue: u16,
        /// The port's queue count.
        queues: u16,
    },
    /// `rte_flow_validate` refused it.
    Validate(DpdkError),
    /// `rte_flow_validate` accepted it but `rte_flow_create` failed.
    Create(DpdkError),
}

impl FlowRefusalCause {
    /// The cause as a metrics `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            FlowRefusalCause::Rule(e) => e.reason(),
            FlowRefusalCause::NoSuchQueue { .. } => "no_such_queue",
            FlowRefusalCause::Validate(_) => "validate_refused",
            FlowRefusalCause::Create(_) => "create_failed",
        }
    }
}

impl fmt::Display for FlowRefusalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowRefusalCause::Rule(e) => e.fmt(f),
            FlowRefusalCause::NoSuchQueue { queue, queues } => {
                write!(f, "queue {queue}, but the port has {queues} queue(s)")
            }
            FlowRefusalCause::Validate(e) | FlowRefusalCause::Create(e) => e.fmt(f),
        }
    }
}

/// The first rule a port did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRefusal {
    /// Position of the rule in the slice given to [`Port::create_flows`] (from 0).
    pub index: usize,
    /// The rule itself.
    pub rule: SteeringRule,
    /// Why it was not installed.
    pub cause: FlowRefusalCause,
}

/// What [`Port::create_flows`] did: how many rules were asked for and installed, and
/// the first refusal, after which it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowReport {
    /// Rules asked for.
    pub requested: usize,
    /// Rules installed (the first `installed` of them).
    pub installed: usize,
    /// The first rule not installed; none after it was tried.
    pub refused: Option<FlowRefusal>,
}

impl FlowReport {
    /// Every requested rule is installed.
    pub fn complete(&self) -> bool {
        self.refused.is_none() && self.installed == self.requested
    }
}

impl fmt::Display for FlowReport {
    /// One log line, e.g. "8 steering rules installed" or "rte_flow refused rule 1
    /// of 8 (...): ...: software handoff only".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.refused {
            None if self.requested == 0 => f.write_str("no steering rules to install"),
            None => write!(f, "{} steering rules installed", self.installed),
            Some(r) => {
                write!(
                    f,
                    "rte_flow refused rule {} of {} ({}): {}: ",
                    r.index + 1,
                    self.requested,
                    RuleDisplay(&r.rule),
                    r.cause
                )?;
                if self.installed == 0 {
                    f.write_str("software handoff only")
                } else {
                    write!(
                        f,
                        "{} rule(s) before it stay installed, the rest by software handoff",
                        self.installed
                    )
                }
            }
        }
    }
}

/// A [`SteeringRule`] in one line, testpmd style:
/// `tcp dst 198.18.0.100 dport 80 sport 0x1/0x1 queue 1`.
pub struct RuleDisplay<'a>(pub &'a SteeringRule);

impl fmt::Display for RuleDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let port = |f: &mut fmt::Formatter<'_>, name: &str, m: Option<PortMatch>| match m {
            None => Ok(()),
            Some(m) if m.mask == u16::MAX => write!(f, " {name} {}", m.value),
            Some(m) => write!(f, " {name} {:#x}/{:#x}", m.value, m.mask),
        };
        f.write_str(match r.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })?;
        if let Some(a) = r.src_addr {
            write!(f, " src {a}")?;
        }
        if let Some(a) = r.dst_addr {
            write!(f, " dst {a}")?;
        }
        port(f, "sport", r.src_port)?;
        port(f, "dport", r.dst_port)?;
        write!(f, " queue {}", r.queue)
    }
}

impl Port {
    /// Asks the PMD whether it would accept `spec` (`rte_flow_validate`). The error
    /// context carries the `rte_flow_error` type, the part of the rule it blames and
    /// the PMD's message.
    pub fn validate_flow(&self, spec: &FlowSpec) -> Result<(), DpdkError> {
        let mut err = sys::rte_flow_error::default();
        // SAFETY: attr, pattern and actions are END-terminated arrays whose spec,
        // mask and conf pointers aim into spec.storage, alive for the call; err is
        // a valid out struct.
        let ret = unsafe {
            sys::rte_flow_validate(
                self.id(),
                &spec.attr,
                spec.pattern.as_ptr(),
                spec.actions.as_ptr(),
                &mut err,
            )
        };
        if ret < 0 {
            return Err(flow_error("rte_flow_validate", ret, &err, spec));
        }
        Ok(())
    }

    /// Validates and creates `rules` in order, stopping at the first refusal. Rules
    /// created before it stay installed (they only make the handoff rarer) and are
    /// destroyed by [`Port::stop`]. Never fails: a refusal is in the report.
    pub fn create_flows(&mut self, rules: &[SteeringRule]) -> FlowReport {
        let mut report = FlowReport {
            requested: rules.len(),
            installed: 0,
            refused: None,
        };
        for (index, rule) in rules.iter().enumerate() {
            match self.create_flow(rule) {
                Ok(handle) => {
                    self.flows.push(handle);
                    report.installed += 1;
                }
                Err(cause) => {
                    report.refused = Some(FlowRefusal {
                        index,
                        rule: *rule,
                        cause,
                    });
                    break;
                }
            }
        }
        report
    }

    /// Number of steering rules this port holds.
    pub fn installed_flows(&self) -> usize {
        self.flows.len()
    }

    fn create_flow(&self, rule: &SteeringRule) -> Result<FlowHandle, FlowRefusalCause> {
        if rule.queue >= self.queues() {
            return Err(FlowRefusalCause::NoSuchQueue {
                queue: rule.queue,
                queues: self.queues(),
            });
        }
        let spec = FlowSpec::from_rule(rule).map_err(FlowRefusalCause::Rule)?;
        self.validate_flow(&spec)
            .map_err(FlowRefusalCause::Validate)?;
        let mut err = sys::rte_flow_error::default();
        // SAFETY: as in validate_flow; the PMD copies what it keeps of the pattern,
        // so spec may be dropped once the call returns.
        let flow = unsafe {
            sys::rte_flow_create(
                self.id(),
                &spec.attr,
                spec.pattern.as_ptr(),
                spec.actions.as_ptr(),
                &mut err,
            )
        };
        NonNull::new(flow).map(FlowHandle).ok_or_else(|| {
            FlowRefusalCause::Create(flow_error(
                "rte_flow_create",
                super::rte_errno(),
                &err,
                &spec,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovs_core::config::{self, HostFacts};
    use ferrovs_core::service::Services;
    use ferrovs_core::steer::steering_rules;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const RS6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x19, 0, 0, 0, 0x10);

    fn full(value: u16) -> Option<PortMatch> {
        Some(PortMatch {
            value,
            mask: u16::MAX,
        })
    }

    fn low_bits(value: u16, mask: u16) -> Option<PortMatch> {
        Some(PortMatch { value, mask })
    }

    /// Client to a v4 VIP: dst address, dst port 80, src port low bit 1.
    fn vip_rule() -> SteeringRule {
        SteeringRule {
            proto: Proto::Tcp,
            src_addr: None,
            dst_addr: Some(IpAddr::V4(VIP)),
            src_port: low_bits(1, 1),
            dst_port: full(80),
            queue: 1,
        }
    }

    fn item_types(s: &FlowSpec) -> Vec<sys::rte_flow_item_type> {
        s.pattern().iter().map(|i| i.type_).collect()
    }

    fn addr_of<T>(r: &T) -> *const c_void {
        ptr::from_ref(r).cast()
    }

    #[test]
    fn v4_tcp_rule_items_in_order_with_end() {
        let s = FlowSpec::from_rule(&vip_rule()).unwrap();
        assert_eq!(
            item_types(&s),
            [
                sys::RTE_FLOW_ITEM_TYPE_ETH,
                sys::RTE_FLOW_ITEM_TYPE_IPV4,
                sys::RTE_FLOW_ITEM_TYPE_TCP,
                sys::RTE_FLOW_ITEM_TYPE_END
            ]
        );
        let [eth, ip, tcp, end] = s.pattern;
        // ETH and END match anything: no spec, mask or range.
        for it in [eth, end] {
            assert!(it.spec.is_null() && it.mask.is_null() && it.last.is_null());
        }
        assert!(ip.last.is_null() && tcp.last.is_null());
        assert_eq!(ip.spec, addr_of(&s.storage.ipv4_spec));
        assert_eq!(ip.mask, addr_of(&s.storage.ipv4_mask));
        assert_eq!(tcp.spec, addr_of(&s.storage.tcp_spec));
        assert_eq!(tcp.mask, addr_of(&s.storage.tcp_mask));
    }

    #[test]
    fn v4_address_and_ports_in_network_byte_order() {
        let s = FlowSpec::from_rule(&vip_rule()).unwrap();
        let spec = s.storage.ipv4_spec.hdr;
        let mask = s.storage.ipv4_mask.hdr;
        assert_eq!({ spec.dst_addr }.to_ne_bytes(), [198, 18, 0, 100]);
        assert_eq!({ mask.dst_addr }.to_ne_bytes(), [0xff; 4]);
        // No source address: wildcard in both spec and mask.
        assert_eq!({ spec.src_addr }, 0);
        assert_eq!({ mask.src_addr }, 0);
        // The protocol is the TCP item's job; the IPv4 header fields stay unmatched.
        assert_eq!({ mask.next_proto_id }, 0);
        assert_eq!({ mask.total_length }, 0);

        let spec = s.storage.tcp_spec.hdr;
        let mask = s.storage.tcp_mask.hdr;
        assert_eq!({ spec.dst_port }.to_ne_bytes(), [0, 80]);
        assert_eq!({ mask.dst_port }.to_ne_bytes(), [0xff, 0xff]);
        assert_eq!({ spec.src_port }.to_ne_bytes(), [0, 1]);
        assert_eq!({ mask.src_port }.to_ne_bytes(), [0, 1]);
        assert_eq!({ mask.tcp_flags }, 0);
        // The UDP structs are not referenced and stay zero.
        assert_eq!({ s.storage.udp_mask.hdr.dst_port }, 0);
    }

    #[test]
    fn v6_udp_reply_rule_from_a_real_server() {
        let rule = SteeringRule {
            proto: Proto::Udp,
            src_addr: Some(IpAddr::V6(RS6)),
            dst_addr: None,
            src_port: full(8080),
            dst_port: low_bits(3, 3),
            queue: 3,
        };
        let s = FlowSpec::from_rule(&rule).unwrap();
        assert_eq!(
            item_types(&s),
            [
                sys::RTE_FLOW_ITEM_TYPE_ETH,
                sys::RTE_FLOW_ITEM_TYPE_IPV6,
                sys::RTE_FLOW_ITEM_TYPE_UDP,
                sys::RTE_FLOW_ITEM_TYPE_END
            ]
        );
        assert_eq!(s.pattern[1].spec, addr_of(&s.storage.ipv6_spec));
        assert_eq!(s.pattern[1].mask, addr_of(&s.storage.ipv6_mask));
        assert_eq!(s.pattern[2].spec, addr_of(&s.storage.udp_spec));
        assert_eq!(s.pattern[2].mask, addr_of(&s.storage.udp_mask));

        let spec = s.storage.ipv6_spec.hdr;
        let mask = s.storage.ipv6_mask.hdr;
        assert_eq!(
            { spec.src_addr },
            [0x20, 0x01, 0, 2, 0, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0x10]
        );
        assert_eq!({ mask.src_addr }, [0xff; 16]);
        assert_eq!({ spec.dst_addr }, [0; 16]);
        assert_eq!({ mask.dst_addr }, [0; 16]);
        assert_eq!({ mask.vtc_flow }, 0);
        assert_eq!({ mask.proto }, 0);
        assert_eq!(s.storage.ipv6_mask.has_frag_ext(), 0);

        let spec = s.storage.udp_spec.hdr;
        let mask = s.storage.udp_mask.hdr;
        assert_eq!({ spec.src_port }.to_ne_bytes(), [0x1f, 0x90]);
        assert_eq!({ mask.src_port }.to_ne_bytes(), [0xff, 0xff]);
        assert_eq!({ spec.dst_port }.to_ne_bytes(), [0, 3]);
        assert_eq!({ mask.dst_port }.to_ne_bytes(), [0, 3]);
        assert_eq!({ mask.dgram_len }, 0);
        assert_eq!({ mask.dgram_cksum }, 0);
        assert_eq!(s.queue(), 3);
    }

    #[test]
    fn both_addresses_v6() {
        let other = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
        let rule = SteeringRule {
            proto: Proto::Tcp,
            src_addr: Some(IpAddr::V6(RS6)),
            dst_addr: Some(IpAddr::V6(other)),
            src_port: None,
            dst_port: full(443),
            queue: 0,
        };
        let s = FlowSpec::from_rule(&rule).unwrap();
        assert_eq!({ s.storage.ipv6_spec.hdr.src_addr }, RS6.octets());
        assert_eq!({ s.storage.ipv6_spec.hdr.dst_addr }, other.octets());
        assert_eq!({ s.storage.ipv6_mask.hdr.dst_addr }, [0xff; 16]);
        // The IPv4 structs are not referenced and stay zero.
        assert_eq!({ s.storage.ipv4_mask.hdr.dst_addr }, 0);
    }

    #[test]
    fn fullnat_reply_rule_matches_the_local_port_only() {
        let rule = SteeringRule {
            proto: Proto::Tcp,
            src_addr: None,
            dst_addr: Some(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2))),
            src_port: None,
            dst_port: low_bits(2, 3),
            queue: 2,
        };
        let s = FlowSpec::from_rule(&rule).unwrap();
        let spec = s.storage.tcp_spec.hdr;
        let mask = s.storage.tcp_mask.hdr;
        assert_eq!(({ spec.src_port }, { mask.src_port }), (0, 0));
        assert_eq!({ spec.dst_port }.to_ne_bytes(), [0, 2]);
        assert_eq!({ mask.dst_port }.to_ne_bytes(), [0, 3]);
        assert_eq!(
            { s.storage.ipv4_spec.hdr.dst_addr }.to_ne_bytes(),
            [198, 19, 0, 2]
        );
    }

    #[test]
    fn no_ports_means_any_l4_item() {
        let mut rule = vip_rule();
        rule.src_port = None;
        rule.dst_port = None;
        let s = FlowSpec::from_rule(&rule).unwrap();
        assert_eq!(s.pattern[2].type_, sys::RTE_FLOW_ITEM_TYPE_TCP);
        assert!(s.pattern[2].spec.is_null() && s.pattern[2].mask.is_null());
        rule.proto = Proto::Udp;
        let s = FlowSpec::from_rule(&rule).unwrap();
        assert_eq!(s.pattern[2].type_, sys::RTE_FLOW_ITEM_TYPE_UDP);
        assert!(s.pattern[2].spec.is_null() && s.pattern[2].mask.is_null());
    }

    #[test]
    fn queue_action_ingress_attribute_and_end() {
        let s = FlowSpec::from_rule(&vip_rule()).unwrap();
        let [queue, end] = s.actions;
        assert_eq!(queue.type_, sys::RTE_FLOW_ACTION_TYPE_QUEUE);
        assert_eq!(queue.conf, addr_of(&s.storage.queue));
        assert_eq!(s.storage.queue.index, 1);
        assert_eq!(end.type_, sys::RTE_FLOW_ACTION_TYPE_END);
        assert!(end.conf.is_null());
        let a = s.attr();
        assert_eq!(
            (a.ingress(), a.egress(), a.transfer(), a.group, a.priority),
            (1, 0, 0, 0, 0)
        );
    }

    #[test]
    fn pointers_survive_moving_the_spec() {
        let s = FlowSpec::from_rule(&vip_rule()).unwrap();
        let before = (s.pattern[1].spec, s.pattern[2].mask, s.actions[0].conf);
        let mut moved = vec![s];
        moved.reserve(64); // reallocates: the FlowSpec itself moves
        let s = moved.pop().unwrap();
        assert_eq!(
            before,
            (s.pattern[1].spec, s.pattern[2].mask, s.actions[0].conf)
        );
        assert_eq!(s.pattern[1].spec, addr_of(&s.storage.ipv4_spec));
        assert_eq!(s.pattern[2].mask, addr_of(&s.storage.tcp_mask));
        assert_eq!(s.actions[0].conf, addr_of(&s.storage.queue));
    }

    #[test]
    fn malformed_rules_are_errors() {
        let mut r = vip_rule();
        r.dst_addr = None;
        assert_eq!(
            FlowSpec::from_rule(&r).err(),
            Some(FlowRuleError::NoAddress)
        );

        let mut r = vip_rule();
        r.src_addr = Some(IpAddr::V6(RS6));
        assert_eq!(
            FlowSpec::from_rule(&r).err(),
            Some(FlowRuleError::MixedAddressFamilies)
        );
        r.src_addr = Some(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10)));
        assert!(FlowSpec::from_rule(&r).is_ok());

        let mut r = vip_rule();
        r.src_port = low_bits(2, 1);
        assert_eq!(
            FlowSpec::from_rule(&r).err(),
            Some(FlowRuleError::PortValueOutsideMask)
        );
        let mut r = vip_rule();
        r.dst_port = low_bits(80, 0);
        assert_eq!(
            FlowSpec::from_rule(&r).err(),
            Some(FlowRuleError::PortValueOutsideMask)
        );
        // A zero mask with a zero value is a wildcard, not an error.
        r.dst_port = low_bits(0, 0);
        let s = FlowSpec::from_rule(&r).unwrap();
        assert_eq!({ s.storage.tcp_mask.hdr.dst_port }, 0);
    }

    #[test]
    fn reasons_are_snake_case_and_distinct() {
        let dpdk = DpdkError::new("rte_flow_validate", "x", 38);
        let reasons = [
            FlowRuleError::NoAddress.reason(),
            FlowRuleError::MixedAddressFamilies.reason(),
            FlowRuleError::PortValueOutsideMask.reason(),
            FlowRefusalCause::NoSuchQueue {
                queue: 2,
                queues: 2,
            }
            .reason(),
            FlowRefusalCause::Validate(dpdk.clone()).reason(),
            FlowRefusalCause::Create(dpdk).reason(),
        ];
        for (i, r) in reasons.iter().enumerate() {
            assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{r}");
            assert!(!reasons[..i].contains(r), "{r} twice");
        }
        assert_eq!(
            FlowRefusalCause::Rule(FlowRuleError::NoAddress).reason(),
            "no_address"
        );
    }

    #[test]
    fn every_rte_flow_error_type_has_its_name() {
        let names: Vec<_> = (sys::RTE_FLOW_ERROR_TYPE_NONE..=sys::RTE_FLOW_ERROR_TYPE_STATE)
            .map(flow_error_type_name)
            .collect();
        assert_eq!(names.len(), 18);
        assert!(!names.contains(&"unknown"));
        assert_eq!(
            flow_error_type_name(sys::RTE_FLOW_ERROR_TYPE_ITEM_SPEC),
            "item_spec"
        );
        assert_eq!(
            flow_error_type_name(sys::RTE_FLOW_ERROR_TYPE_STATE + 1),
            "unknown"
        );
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "{n} twice");
        }
    }

    #[test]
    fn error_cause_is_located_in_the_rule() {
        let s = FlowSpec::from_rule(&vip_rule()).unwrap();
        assert_eq!(
            s.locate(addr_of(&s.pattern[2])).as_deref(),
            Some("pattern item 2 (tcp)")
        );
        assert_eq!(
            s.locate(s.pattern[1].spec).as_deref(),
            Some("pattern item 1 (ipv4) spec")
        );
        assert_eq!(
            s.locate(s.pattern[2].mask).as_deref(),
            Some("pattern item 2 (tcp) mask")
        );
        assert_eq!(
            s.locate(s.actions[0].conf).as_deref(),
            Some("action 0 (queue) conf")
        );
        assert_eq!(
            s.locate(addr_of(&s.actions[1])).as_deref(),
            Some("action 1 (end)")
        );
        assert_eq!(s.locate(addr_of(s.attr())).as_deref(), Some("attribute"));
        assert_eq!(s.locate(ptr::null()), None);
        let elsewhere = 7u32;
        assert_eq!(s.locate(addr_of(&elsewhere)), None);
        // The unreferenced UDP mask is not part of this rule.
        assert_eq!(s.locate(addr_of(&s.storage.udp_mask)), None);
    }

    #[test]
    fn error_context_reads_well() {
        let enosys = "Function not implemented";
        assert_eq!(
            flow_error_context("unspecified", None, Some(enosys), enosys),
            "unspecified"
        );
        assert_eq!(
            flow_error_context(
                "item_mask",
                Some("pattern item 2 (tcp) mask"),
                Some("partial port masks are not supported"),
                "Invalid argument"
            ),
            "item_mask at pattern item 2 (tcp) mask: partial port masks are not supported"
        );
        assert_eq!(
            flow_error_context("item", Some("pattern item 1 (ipv4)"), None, enosys),
            "item at pattern item 1 (ipv4)"
        );
        assert_eq!(
            flow_error_context("action", None, Some(""), enosys),
            "action"
        );
    }

    #[test]
    fn rule_display() {
        assert_eq!(
            RuleDisplay(&vip_rule()).to_string(),
            "tcp dst 198.18.0.100 sport 0x1/0x1 dport 80 queue 1"
        );
        let r = SteeringRule {
            proto: Proto::Udp,
            src_addr: Some(IpAddr::V6(RS6)),
            dst_addr: None,
            src_port: full(8080),
            dst_port: None,
            queue: 0,
        };
        assert_eq!(
            RuleDisplay(&r).to_string(),
            "udp src 2001:2:0:19::10 sport 8080 queue 0"
        );
    }

    #[test]
    fn report_lines() {
        let ok = FlowReport {
            requested: 8,
            installed: 8,
            refused: None,
        };
        assert!(ok.complete());
        assert_eq!(ok.to_string(), "8 steering rules installed");

        let none = FlowReport {
            requested: 0,
            installed: 0,
            refused: None,
        };
        assert!(none.complete());
        assert_eq!(none.to_string(), "no steering rules to install");

        let mut refused = FlowReport {
            requested: 8,
            installed: 0,
            refused: Some(FlowRefusal {
                index: 0,
                rule: vip_rule(),
                cause: FlowRefusalCause::NoSuchQueue {
                    queue: 1,
                    queues: 1,
                },
            }),
        };
        assert!(!refused.complete());
        assert_eq!(
            refused.to_string(),
            "rte_flow refused rule 1 of 8 (tcp dst 198.18.0.100 sport 0x1/0x1 dport 80 \
             queue 1): queue 1, but the port has 1 queue(s): software handoff only"
        );
        refused.installed = 3;
        if let Some(r) = refused.refused.as_mut() {
            r.index = 3;
            r.cause = FlowRefusalCause::Rule(FlowRuleError::NoAddress);
        }
        assert_eq!(
            refused.to_string(),
            "rte_flow refused rule 4 of 8 (tcp dst 198.18.0.100 sport 0x1/0x1 dport 80 \
             queue 1): the rule names no address, so no IP version: 3 rule(s) before it \
             stay installed, the rest by software handoff"
        );
    }

    /// What the virtual PMDs used in tests and benchmarks answer to rte_flow. Needs
    /// the EAL (no hugepages, no root beyond an AF_PACKET socket on `lo`), so it runs
    /// only on request, alone in its process:
    /// `cargo test --lib dpdk::flow::tests::virtual_pmds -- --ignored --nocapture`.
    #[test]
    #[ignore = "initialises the EAL and opens an AF_PACKET socket on lo"]
    fn virtual_pmds_answer_rte_flow() {
        use crate::dpdk::{Eal, Mempool, PortConf};
        let args: Vec<String> = [
            "ferrovs-flow-check",
            "-l",
            "0",
            "--no-huge",
            "-m",
            "256",
            "--file-prefix",
            "ferrovs-flow-check",
            "--no-pci",
            "--no-telemetry",
            "--log-level",
            "notice",
            "--vdev",
            "net_null0",
            "--vdev",
            "net_af_packet0,iface=lo,qpairs=2",
        ]
        .map(String::from)
        .to_vec();
        let _eal = Eal::init(&args).expect("EAL");
        let pool = Mempool::new("flow_check", 8191, 256).expect("mempool");
        let rules = [
            vip_rule(),
            SteeringRule {
                queue: 0,
                src_port: low_bits(0, 1),
                ..vip_rule()
            },
        ];
        for device in ["net_null0", "net_af_packet0"] {
            let conf = PortConf {
                rx_queues: 2,
                tx_queues: 2,
                rx_descriptors: 512,
                tx_descriptors: 512,
                mtu: 1500,
            };
            let mut port = Port::configure(device, &conf, &pool).expect("configure");
            port.start().expect("start");
            let spec = FlowSpec::from_rule(&rules[0]).unwrap();
            let validated = port.validate_flow(&spec);
            println!(
                "{device} ({}): rte_flow_validate: {validated:?}",
                port.driver()
            );
            let report = port.create_flows(&rules);
            println!("{device}: {report}");
            // Neither PMD has rte_flow ops: ethdev answers ENOSYS with an
            // unspecified error, nothing is installed, and the port works on.
            let err = validated.expect_err("a virtual PMD accepted an rte_flow rule");
            assert_eq!((err.call, err.code), ("rte_flow_validate", 38));
            assert_eq!(report.installed, 0);
            assert_eq!(port.installed_flows(), 0);
            let refusal = report.refused.expect("refusal");
            assert_eq!(refusal.index, 0);
            assert_eq!(refusal.cause, FlowRefusalCause::Validate(err));
            port.stop();
        }
    }

    #[test]
    fn every_rule_of_a_dual_stack_config_converts() {
        let text = r#"
eal: { cores: [0, 1, 2, 3, 4] }
ports:
  - { name: wan, device: net_null0, addresses: ["198.18.0.1/24", "2001:2::1/64"] }
  - { name: lan, device: net_null1, addresses: ["198.19.0.1/24", "2001:2:0:19::1/64"] }
workers: { cores: [1, 2, 3, 4] }
mempool: { mbufs: 65535 }
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    real_servers: [{ address: 198.19.0.10, port: 8080 }, { address: 198.19.0.11, port: 8080 }]
  - name: dns6
    vip: "2001:2::100"
    port: 53
    protocol: udp
    mode: nat
    real_servers: [{ address: "2001:2:0:19::10", port: 53 }]
"#;
        let cfg = config::parse(text, "t.yaml", &HostFacts::default()).unwrap();
        let rules = steering_rules(&Services::from_config(&cfg), 4);
        assert!(!rules.is_empty());
        let mut v6 = 0;
        for r in &rules {
            let s = FlowSpec::from_rule(r).unwrap_or_else(|e| panic!("{r:?}: {e}"));
            assert_eq!(s.queue(), r.queue);
            assert_eq!(
                s.pattern().last().unwrap().type_,
                sys::RTE_FLOW_ITEM_TYPE_END
            );
            assert_eq!(
                s.actions().last().unwrap().type_,
                sys::RTE_FLOW_ACTION_TYPE_END
            );
            if s.pattern[1].type_ == sys::RTE_FLOW_ITEM_TYPE_IPV6 {
                v6 += 1;
                assert_eq!(s.pattern[2].type_, sys::RTE_FLOW_ITEM_TYPE_UDP);
            }
        }
        // Per worker: the v6 VIP rule and the v6 reply rule.
        assert_eq!(v6, 2 * 4);
    }
}
