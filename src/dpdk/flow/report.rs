//! What a port did with the steering rules: refusals named by their rte_flow error
//! type and located in the rule, and a report for the log.

use super::super::DpdkError;
use super::spec::{FlowRuleError, FlowSpec};
use dpdk_sys as sys;
use ferrovs_core::conn::Proto;
use ferrovs_core::steer::{AddrMatch, PortMatch, SteeringRule};
use std::ffi::CStr;
use std::fmt;

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
pub(super) fn flow_error_context(
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
pub(super) fn flow_error(
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
        let addr = |f: &mut fmt::Formatter<'_>, name: &str, m: Option<AddrMatch>| match m {
            None => Ok(()),
            Some(m) if m.is_exact() => write!(f, " {name} {}", m.value),
            Some(m) => write!(f, " {name} {}/{}", m.value, m.mask),
        };
        addr(f, "src", r.src_addr)?;
        addr(f, "dst", r.dst_addr)?;
        port(f, "sport", r.src_port)?;
        port(f, "dport", r.dst_port)?;
        write!(f, " queue {}", r.queue)
    }
}
