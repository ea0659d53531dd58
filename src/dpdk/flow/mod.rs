//! NIC steering with rte_flow: one [`SteeringRule`] becomes one ingress rule
//! `ETH / IPV4|IPV6 / TCP|UDP / END` with the action `QUEUE / END`.
//!
//! The rules only make the software handoff between workers rare (see
//! `ferrovs_core::steer`): a PMD that refuses them, or has no rte_flow at all, costs the
//! handoff and nothing else, so [`Port::create_flows`] reports instead of failing.
//! This runs once at start-up; nothing here is on the packet path.
//!
//! The conversion ([`FlowSpec::from_rule`]) is pure and needs no EAL: it builds the C
//! structs DPDK reads, with the item spec/mask pointers aimed into a boxed block the
//! `FlowSpec` owns, so they stay valid however the `FlowSpec` itself moves.

mod report;
mod spec;
#[cfg(test)]
mod tests;

pub use report::{flow_error_type_name, FlowRefusal, FlowRefusalCause, FlowReport, RuleDisplay};
pub use spec::{FlowRuleError, FlowSpec};

use super::{DpdkError, Port};
use dpdk_sys as sys;
use ferrovs_core::steer::SteeringRule;
use report::flow_error;
use std::ptr::NonNull;

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
                spec.attr(),
                spec.pattern().as_ptr(),
                spec.actions().as_ptr(),
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
                spec.attr(),
                spec.pattern().as_ptr(),
                spec.actions().as_ptr(),
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
