//! rte_flow conversion and reporting, without an EAL; and the virtual PMDs' answers.

use super::report::flow_error_context;
use super::*;
use dpdk_sys as sys;
use ferrovs_core::conn::Proto;
use ferrovs_core::fixture;
use ferrovs_core::service::Services;
use ferrovs_core::steer::{steering_rules, Owners};
use ferrovs_core::steer::{AddrMatch, PortMatch, SteeringRule};
use std::ffi::c_void;
use std::net::IpAddr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ptr;

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
        dst_addr: Some(AddrMatch::exact(IpAddr::V4(VIP))),
        src_port: low_bits(1, 1),
        dst_port: full(80),
        queue: 1,
        priority: 0,
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
        src_addr: Some(AddrMatch::exact(IpAddr::V6(RS6))),
        dst_addr: None,
        src_port: full(8080),
        dst_port: low_bits(3, 3),
        queue: 3,
        priority: 0,
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
        src_addr: Some(AddrMatch::exact(IpAddr::V6(RS6))),
        dst_addr: Some(AddrMatch::exact(IpAddr::V6(other))),
        src_port: None,
        dst_port: full(443),
        queue: 0,
        priority: 0,
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
        dst_addr: Some(AddrMatch::exact(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)))),
        src_port: None,
        dst_port: low_bits(2, 3),
        queue: 2,
        priority: 0,
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
    r.src_addr = Some(AddrMatch::exact(IpAddr::V6(RS6)));
    assert_eq!(
        FlowSpec::from_rule(&r).err(),
        Some(FlowRuleError::MixedAddressFamilies)
    );
    r.src_addr = Some(AddrMatch::exact(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10))));
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
        src_addr: Some(AddrMatch::exact(IpAddr::V6(RS6))),
        dst_addr: None,
        src_port: full(8080),
        dst_port: None,
        queue: 0,
        priority: 0,
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
            vlans: vec![],
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
    let services = r#"
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
    let cfg = fixture::parse(&fixture::appliance_with(4, true, services));
    let services = Services::from_config(&cfg);
    let rules = steering_rules(&services, &Owners::new(&services), 4);
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

/// A persistent service's rules match the client network's bits of the address,
/// in network byte order, and a NAT reply rule that overlaps a FULLNAT one gives
/// way to it by priority.
#[test]
fn client_network_rules_mask_the_address_bits() {
    let services = r#"
services:
  - { name: sticky, vip: 198.18.0.100, port: 80, protocol: tcp, mode: nat, persistence: 60s,
      persistence_netmask: 24, real_servers: [{ address: 198.19.0.10, port: 8080 }] }
  - { name: full, vip: 198.18.0.101, port: 80, protocol: tcp, mode: fullnat,
      local_addresses: [198.19.0.2], real_servers: [{ address: 198.19.0.10, port: 8080 }] }
"#;
    let cfg = fixture::parse(&fixture::appliance_with(2, false, services));
    let services = Services::from_config(&cfg);
    let rules = steering_rules(&services, &Owners::new(&services), 2);
    let vip = AddrMatch::exact(IpAddr::V4(VIP));
    let inbound = rules
        .iter()
        .find(|r| r.dst_addr == Some(vip) && r.queue == 1)
        .unwrap();
    let s = FlowSpec::from_rule(inbound).unwrap();
    let (spec, mask) = (s.storage.ipv4_spec.hdr, s.storage.ipv4_mask.hdr);
    // Worker 1 of 2: bit 8 of the client address (the lowest of a /24 network).
    assert_eq!({ spec.src_addr }.to_ne_bytes(), [0, 0, 1, 0]);
    assert_eq!({ mask.src_addr }.to_ne_bytes(), [0, 0, 1, 0]);
    assert_eq!({ s.storage.tcp_mask.hdr.src_port }, 0);
    assert_eq!(
        RuleDisplay(inbound).to_string(),
        "tcp src 0.0.1.0/0.0.1.0 dst 198.18.0.100 dport 80 queue 1"
    );
    let reply = rules
        .iter()
        .find(|r| r.src_addr.is_some_and(|a| a.is_exact()) && r.queue == 1)
        .unwrap();
    assert_eq!(reply.priority, 1);
    assert_eq!(FlowSpec::from_rule(reply).unwrap().attr().priority, 1);
    let lip = AddrMatch::exact(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)));
    assert!(rules
        .iter()
        .filter(|r| r.dst_addr == Some(lip))
        .all(|r| r.priority == 0));
    // A value outside its mask is refused before the NIC sees it.
    let bad = SteeringRule {
        src_addr: Some(AddrMatch {
            value: IpAddr::V4(Ipv4Addr::new(0, 0, 3, 0)),
            mask: IpAddr::V4(Ipv4Addr::new(0, 0, 1, 0)),
        }),
        ..*inbound
    };
    assert_eq!(
        FlowSpec::from_rule(&bad).err(),
        Some(FlowRuleError::AddrValueOutsideMask)
    );
}
