//! Pipeline tests over plain buffers: what goes in, what comes out, what is counted.

use super::*;
use crate::fixture;
use crate::packet::arp::{ArpOperation, ArpPacket};
use crate::packet::craft::{self, L2};
use crate::packet::icmpv6::{NeighborAdvert, NeighborSolicit};
use crate::packet::parse::{IpInfo, L3Info};
use crate::packet::VecBuf;
use crate::packet::{
    parse_frame, IcmpType, Icmpv4Packet, Icmpv6Packet, Icmpv6Type, Ipv4Packet, Ipv6Packet, MacAddr,
    PacketBuf, TcpFlags,
};
use crate::pipeline::BalancerLimits;
use crate::stats::{DropReason, WorkerStats};
use crossbeam_channel::{bounded, Receiver};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const OUR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
const GW_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);

/// The appliance with a default route and one static neighbour, dual stack.
fn config() -> String {
    fixture::appliance_with(
        1,
        true,
        r#"routes:
  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }
neighbors:
  - { ip: "198.19.0.50", mac: "02:00:00:00:00:50" }
"#,
    )
}

struct TestPool;

impl PacketPool for TestPool {
    type Buf = VecBuf;
    fn alloc(&self) -> Option<VecBuf> {
        Some(VecBuf::from_frame(&[]))
    }
}

struct Harness {
    p: Pipeline<TestPool>,
    events: Receiver<WorkerEvent>,
    stats: Arc<WorkerStats>,
}

fn harness() -> Harness {
    harness_with(&config())
}

fn harness_with(text: &str) -> Harness {
    let cfg = fixture::parse(text);
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    let stats =
        Arc::new(WorkerStats::new(dp.services.real_server_slots()).with_vlans(cfg.vlans.len()));
    let limits = BalancerLimits::for_config(cfg.connections.max as usize, 1, &dp.services);
    let lb = Balancer::new(
        &dp.services,
        limits,
        &crate::conn::Timeouts::default(),
        0,
        1,
    )
    .unwrap();
    let (tx, rx) = bounded(64);
    Harness {
        p: Pipeline::new(0, 1, dp, lb, TestPool, stats.clone(), tx, 32),
        events: rx,
        stats,
    }
}

impl Harness {
    /// Receives one frame, as a burst of one: the path every worker runs.
    fn rx(&mut self, frame: Vec<u8>, port: usize) {
        let mut burst = vec![VecBuf::from_frame(&frame)];
        self.p.process_burst(&mut burst, port);
        assert!(burst.is_empty());
    }

    fn take_tx(&mut self, port: usize) -> Vec<VecBuf> {
        self.p.tx_queue(port).drain(..).collect()
    }

    fn dropped(&self, r: DropReason) -> u64 {
        self.stats.dropped(r)
    }
}

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn l2_to_us(src: MacAddr) -> L2 {
    L2 { src, dst: OUR_MAC }
}

/// `frame` (untagged IPv4) with `options` (a multiple of 4 bytes) after its fixed
/// IPv4 header, lengths and header checksum updated.
fn with_ipv4_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    let info = parse_frame(frame, false).unwrap();
    let mut f = frame[..info.l3_end()].to_vec();
    f.splice(34..34, options.iter().copied());
    f[14] = 0x45 + (options.len() / 4) as u8;
    let total = u16::from_be_bytes([f[16], f[17]]) + options.len() as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_checked(&mut f[14..])
        .unwrap()
        .fill_checksum();
    f
}

mod burst;
mod ecmp;
mod edge;
mod forms;
mod frag;
mod ingress;
mod modes;
mod nat;
mod nat64;
mod proxy;
mod sync;
mod synproxy;
mod vlan;

#[test]
fn answers_arp_for_own_address_and_learns_the_sender() {
    let mut h = harness();
    h.rx(
        craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.18.0.1")),
        0,
    );
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let arp = ArpPacket::new_checked(&out[0].data()[14..]).unwrap();
    assert_eq!(arp.operation(), ArpOperation::REPLY);
    assert_eq!(arp.sender_hw_addr(), OUR_MAC);
    assert_eq!(arp.sender_proto_addr(), ip4("198.18.0.1"));
    assert_eq!(arp.target_hw_addr(), CLIENT_MAC);
    assert_eq!(arp.target_proto_addr(), ip4("198.18.0.10"));
    assert_eq!(&out[0].data()[0..6], &CLIENT_MAC.0);
    assert_eq!(&out[0].data()[6..12], &OUR_MAC.0);
    match h.events.try_recv().unwrap() {
        WorkerEvent::NeighborLearned { ip, mac, port } => {
            assert_eq!(
                (ip, mac, port),
                (IpAddr::V4(ip4("198.18.0.10")), CLIENT_MAC, 0)
            );
        }
    }
    assert_eq!(h.stats.dropped_total(), 0);
}

/// With several workers the answer to one worker's solicitation may reach
/// another: a solicited advertisement to one of our addresses creates the entry
/// (and is shared through the management core) whoever asked; an unsolicited one
/// to all-nodes only refreshes what is known.
#[test]
fn a_solicited_advertisement_to_us_is_learned_by_a_worker_that_did_not_ask() {
    let mut h = harness_with(&fixture::appliance_with(1, true, "services: []\n"));
    let ours: Ipv6Addr = "2001:2:0:19::1".parse().unwrap();
    let server: Ipv6Addr = "2001:2:0:19::10".parse().unwrap();
    let server_mac = MacAddr([0x02, 0, 0, 0, 0x19, 0x10]);
    let answer = |solicited: bool| {
        let ns_frame = craft::neighbor_solicit(LAN_MAC, ours, server);
        let ns =
            NeighborSolicit::parse(&Ipv6Packet::new_checked(&ns_frame[14..]).unwrap()).unwrap();
        let mut frame = vec![0u8; crate::packet::icmpv6::ND_FRAME_LEN];
        let len = if solicited {
            crate::packet::icmpv6::emit_neighbor_advert(&mut frame, server_mac, &ns, LAN_MAC)
        } else {
            crate::packet::icmpv6::emit_unsolicited_neighbor_advert(&mut frame, server_mac, server)
        }
        .unwrap();
        frame.truncate(len);
        frame
    };
    h.rx(answer(false), 1);
    assert!(h.events.try_recv().is_err(), "unsolicited: nothing learned");
    h.rx(answer(true), 1);
    match h.events.try_recv().unwrap() {
        WorkerEvent::NeighborLearned { ip, mac, port } => {
            assert_eq!((ip, mac, port), (IpAddr::V6(server), server_mac, 1));
        }
    }
    assert_eq!(h.stats.dropped_total(), 0);
}

#[test]
fn ignores_arp_for_foreign_addresses_and_the_wrong_port() {
    let mut h = harness();
    h.rx(
        craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.18.0.77")),
        0,
    );
    // 198.19.0.1 is ours, but on the lan port: not answered on wan
    h.rx(
        craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.19.0.1")),
        0,
    );
    assert!(h.take_tx(0).is_empty());
    assert_eq!(h.dropped(DropReason::ArpNotForUs), 2);
    // not learned: the requests were not for us (RFC 826 adds only when targeted)
    assert!(h.events.try_recv().is_err());
}

#[test]
fn answers_ping_through_the_neighbour_table() {
    let mut h = harness();
    h.rx(
        craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.18.0.1")),
        0,
    );
    h.take_tx(0);
    let l2 = l2_to_us(CLIENT_MAC);
    h.rx(
        craft::echo_request(
            l2,
            "198.18.0.10".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            7,
            1,
            b"hello",
        ),
        0,
    );
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let frame = out[0].data();
    assert_eq!(&frame[0..6], &CLIENT_MAC.0);
    let info = parse_frame(frame, false).unwrap();
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    assert_eq!(ip.addrs.src(), "198.18.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(ip.addrs.dst(), "198.18.0.10".parse::<IpAddr>().unwrap());
    assert_eq!(ip.ttl, 64);
    let v4 = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(v4.verify_checksum());
    let icmp = Icmpv4Packet::new_checked(v4.payload()).unwrap();
    assert_eq!(icmp.msg_type(), IcmpType::ECHO_REPLY);
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (7, 1));
    assert_eq!(&icmp.data()[..5], b"hello");
}

#[test]
fn holds_replies_until_arp_resolves_them() {
    let mut h = harness();
    // ping from an off-link host: the reply goes to the default gateway, unknown yet
    let l2 = l2_to_us(GW_MAC);
    h.rx(
        craft::echo_request(
            l2,
            "203.0.113.9".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            1,
            1,
            b"",
        ),
        0,
    );
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1, "an ARP request for the gateway");
    let arp = ArpPacket::new_checked(&out[0].data()[14..]).unwrap();
    assert_eq!(arp.operation(), ArpOperation::REQUEST);
    assert_eq!(arp.target_proto_addr(), ip4("198.18.0.254"));
    assert_eq!(arp.sender_proto_addr(), ip4("198.18.0.1"));
    assert_eq!(out[0].len(), 60);

    h.rx(
        craft::arp_reply(GW_MAC, ip4("198.18.0.254"), OUR_MAC, ip4("198.18.0.1")),
        0,
    );
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1, "the held echo reply");
    assert_eq!(&out[0].data()[0..6], &GW_MAC.0);
    assert_eq!(h.stats.dropped_total(), 0);
}

#[test]
fn gives_up_on_silent_neighbours_and_counts_the_loss() {
    let mut h = harness();
    h.p.set_time(0);
    let l2 = l2_to_us(GW_MAC);
    for seq in 0..3 {
        h.rx(
            craft::echo_request(
                l2,
                "203.0.113.9".parse().unwrap(),
                "198.18.0.1".parse().unwrap(),
                1,
                seq,
                b"",
            ),
            0,
        );
    }
    let mut probes = h.take_tx(0).len();
    assert_eq!(probes, 1, "one probe however many packets wait");
    for t in (100..=3500).step_by(100) {
        h.p.set_time(t);
        h.p.housekeeping();
        probes += h.take_tx(0).len();
    }
    assert_eq!(probes, 3);
    assert_eq!(h.dropped(DropReason::NeighborUnresolved), 3);
    assert_eq!(h.p.garbage().len(), 3);
}

#[test]
fn static_neighbours_need_no_resolution() {
    let mut h = harness();
    let l2 = L2 {
        src: MacAddr([2, 0, 0, 0, 0, 0x50]),
        dst: LAN_MAC,
    };
    h.rx(
        craft::echo_request(
            l2,
            "198.19.0.50".parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            1,
            1,
            b"",
        ),
        1,
    );
    let out = h.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &[2, 0, 0, 0, 0, 0x50]);
}

#[test]
fn malformed_frames_are_counted_by_reason() {
    let mut h = harness();
    let good = craft::echo_request(
        l2_to_us(CLIENT_MAC),
        "198.18.0.10".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
        1,
        1,
        b"",
    );

    h.rx(vec![0u8; 10], 0);
    assert_eq!(h.dropped(DropReason::Runt), 1);

    let mut bad_sum = good.clone();
    bad_sum[14 + 10] ^= 0xff;
    h.rx(bad_sum, 0);
    assert_eq!(h.dropped(DropReason::BadIpv4Checksum), 1);

    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    h.rx(bad_ihl, 0);
    assert_eq!(h.dropped(DropReason::BadIhl), 1);

    let mut version = good.clone();
    version[14] = 0x65;
    h.rx(version, 0);
    assert_eq!(h.dropped(DropReason::IpVersionMismatch), 1);

    let mut long = good.clone();
    long[14 + 2..14 + 4].copy_from_slice(&1500u16.to_be_bytes());
    h.rx(long, 0);
    assert_eq!(h.dropped(DropReason::BadTotalLength), 1);

    let mut unknown = good.clone();
    unknown[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    h.rx(unknown, 0);
    assert_eq!(h.dropped(DropReason::UnknownEthertype), 1);

    let mut vlan = good.clone();
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    h.rx(vlan, 0);
    assert_eq!(h.dropped(DropReason::VlanNotConfigured), 1);

    h.rx(good[..14 + 12].to_vec(), 0);
    assert_eq!(h.dropped(DropReason::TruncatedIpv4), 1);

    let mut foreign = good.clone();
    foreign[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    h.rx(foreign, 0);
    assert_eq!(h.dropped(DropReason::ForeignMac), 1);

    let mut bad_icmp = good.clone();
    bad_icmp[14 + 20 + 2] ^= 0x55;
    h.rx(bad_icmp, 0);
    assert_eq!(h.dropped(DropReason::BadIcmpChecksum), 1);

    assert!(h.take_tx(0).is_empty());
    assert_eq!(h.stats.dropped_total(), 10);
    assert_eq!(h.p.garbage().len(), 10);
    // and the pipeline still answers
    h.rx(
        craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.18.0.1")),
        0,
    );
    h.rx(good, 0);
    assert_eq!(h.take_tx(0).len(), 2);
}

#[test]
fn traffic_not_for_us_is_dropped() {
    let mut h = harness();
    let l2 = l2_to_us(CLIENT_MAC);
    let to_other = craft::udp(
        l2,
        "198.18.0.10:5000".parse().unwrap(),
        "198.18.0.99:53".parse().unwrap(),
        b"q",
    );
    h.rx(to_other, 0);
    assert_eq!(h.dropped(DropReason::NoConnection), 1);
    let ping_other = craft::echo_request(
        l2,
        "198.18.0.10".parse().unwrap(),
        "198.18.0.99".parse().unwrap(),
        1,
        1,
        b"",
    );
    h.rx(ping_other, 0);
    assert_eq!(h.dropped(DropReason::NotForUs), 1);
    let tcp_to_us = craft::tcp(
        l2,
        "198.18.0.10:5000".parse().unwrap(),
        "198.18.0.1:22".parse().unwrap(),
        TcpFlags::SYN,
        1,
        0,
        b"",
    );
    h.rx(tcp_to_us.clone(), 0);
    // the port has a kernel interface: the appliance's own sockets get it
    assert_eq!(h.p.kernel_queue(0).len(), 1);
    assert_eq!(h.stats.kernel_packets.get(), 1);
    let mut no_kernel = harness_with(&config().replace(
        "workers: { cores: [1] }",
        "workers: { cores: [1] }\nmanagement: { exception_path: false }",
    ));
    no_kernel.rx(tcp_to_us, 0);
    assert_eq!(no_kernel.dropped(DropReason::LocalUnsupported), 1);
    let mut frag = craft::echo_request(
        l2,
        "198.18.0.10".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
        1,
        1,
        b"",
    );
    frag[14 + 6] = 0x20; // MF
    let mut ip = Ipv4Packet::new_checked(&mut frag[14..]).unwrap();
    ip.fill_checksum();
    h.rx(frag.clone(), 0);
    // the kernel reassembles fragments for its own addresses; without it: dropped
    assert_eq!(h.p.kernel_queue(0).len(), 2);
    no_kernel.rx(frag, 0);
    assert_eq!(no_kernel.dropped(DropReason::Fragment), 1);
}

#[test]
fn answers_neighbour_solicitation_and_ipv6_ping() {
    let mut h = harness();
    let client: Ipv6Addr = "2001:2::10".parse().unwrap();
    let ours: Ipv6Addr = "2001:2::1".parse().unwrap();
    h.rx(craft::neighbor_solicit(CLIENT_MAC, client, ours), 0);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let ip = Ipv6Packet::new_checked(&out[0].data()[14..]).unwrap();
    let na = NeighborAdvert::parse(&ip).unwrap();
    assert_eq!(na.target, ours);
    assert_eq!(na.target_link_addr, Some(OUR_MAC));
    assert_eq!(&out[0].data()[0..6], &CLIENT_MAC.0);

    h.rx(
        craft::echo_request(
            l2_to_us(CLIENT_MAC),
            IpAddr::V6(client),
            IpAddr::V6(ours),
            3,
            4,
            b"v6",
        ),
        0,
    );
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let ip = Ipv6Packet::new_checked(&out[0].data()[14..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (ours, client));
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), Icmpv6Type::ECHO_REPLY);
    assert!(icmp.verify_checksum(ours, client));

    // a solicitation for someone else is ignored and counted
    h.rx(
        craft::neighbor_solicit(CLIENT_MAC, client, "2001:2::99".parse().unwrap()),
        0,
    );
    assert!(h.take_tx(0).is_empty());
    assert_eq!(h.dropped(DropReason::NdNotForUs), 1);
}

#[test]
fn neighbours_from_other_workers_release_held_packets() {
    let mut h = harness();
    let l2 = l2_to_us(GW_MAC);
    h.rx(
        craft::echo_request(
            l2,
            "203.0.113.9".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            1,
            1,
            b"",
        ),
        0,
    );
    assert_eq!(h.take_tx(0).len(), 1); // the probe
    h.p.apply(WorkerCommand::Neighbor {
        ip: "198.18.0.254".parse().unwrap(),
        mac: GW_MAC,
        port: 0,
    });
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &GW_MAC.0);
}

#[test]
fn tx_queue_overflow_is_counted_not_grown() {
    let mut h = harness();
    h.rx(
        craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.18.0.1")),
        0,
    );
    h.take_tx(0);
    let cap = h.p.tx_queue(0).capacity();
    let l2 = l2_to_us(CLIENT_MAC);
    let ping = craft::echo_request(
        l2,
        "198.18.0.10".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
        1,
        1,
        b"",
    );
    for _ in 0..cap + 5 {
        h.rx(ping.clone(), 0);
    }
    assert_eq!(h.p.tx_queue(0).len(), cap);
    assert_eq!(h.p.tx_queue(0).capacity(), cap);
    assert_eq!(h.dropped(DropReason::TxFull), 5);
}

/// At start and reload ferrovs announces every address it answers for on each
/// port, VIPs and local addresses on its subnets included: gratuitous ARP for
/// IPv4, an unsolicited neighbour advertisement (override flag) for IPv6.
#[test]
fn own_addresses_are_announced_on_their_ports() {
    let mut h = harness_with(&fixture::appliance_with(
        1,
        true,
        r#"services:
  - { name: web, vip: 198.18.0.100, port: 80, protocol: tcp, mode: fullnat,
      local_addresses: [198.19.0.2], real_servers: [{ address: 198.19.0.10 }] }
  - { name: far, vip: 203.0.113.7, port: 80, protocol: tcp, mode: dr,
      real_servers: [{ address: 198.18.0.20 }] }
"#,
    ));
    h.p.apply(WorkerCommand::AnnounceAddresses);
    let mut wan_v4 = Vec::new();
    let mut wan_v6 = Vec::new();
    for f in h.take_tx(0) {
        let data = f.data();
        assert_eq!(&data[6..12], &OUR_MAC.0);
        match parse_frame(data, false).unwrap().l3 {
            L3Info::Arp => {
                let arp = ArpPacket::new_checked(&data[14..]).unwrap();
                assert_eq!(arp.operation(), ArpOperation::REQUEST);
                assert_eq!(arp.sender_hw_addr(), OUR_MAC);
                assert_eq!(arp.sender_proto_addr(), arp.target_proto_addr());
                assert_eq!(&data[0..6], &[0xff; 6]);
                wan_v4.push(arp.sender_proto_addr());
            }
            L3Info::Ip(ip) => {
                let ipv6 = Ipv6Packet::new_checked(&data[14..]).unwrap();
                assert_eq!(ipv6.dst_addr(), "ff02::1".parse::<Ipv6Addr>().unwrap());
                let na = NeighborAdvert::parse(&ipv6).unwrap();
                assert_eq!(na.target_link_addr, Some(OUR_MAC));
                assert_eq!(IpAddr::V6(na.target), ip.addrs.src());
                wan_v6.push(na.target);
            }
        }
    }
    // The VIP outside every subnet is routed to us, never ARPed: not announced.
    assert_eq!(wan_v4, [ip4("198.18.0.1"), ip4("198.18.0.100")]);
    assert_eq!(wan_v6, ["2001:2::1".parse::<Ipv6Addr>().unwrap()]);
    let lan = h.take_tx(1);
    assert_eq!(
        lan.len(),
        3,
        "198.19.0.1, the local address 198.19.0.2, 2001:2:0:19::1"
    );
    assert_eq!(h.stats.dropped_total(), 0);
}

/// A bond whose active member changed announces its port's addresses, and only
/// those: the other ports' neighbours have nothing to relearn.
#[test]
fn one_port_s_addresses_are_announced_alone() {
    let mut h = harness_with(&fixture::appliance_with(1, true, ""));
    h.p.apply(WorkerCommand::AnnounceAddressesOn(1));
    assert!(h.take_tx(0).is_empty());
    let lan = h.take_tx(1);
    assert_eq!(lan.len(), 2, "198.19.0.1 and 2001:2:0:19::1");
    assert!(lan.iter().all(|f| f.data()[6..12] == LAN_MAC.0));
    // A port that does not exist: nothing, no panic.
    h.p.apply(WorkerCommand::AnnounceAddressesOn(7));
    assert!(h.take_tx(0).is_empty() && h.take_tx(1).is_empty());
    assert_eq!(h.stats.dropped_total(), 0);
}
