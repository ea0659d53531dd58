//! Ingress validation through the pipeline: martian and own sources, reverse-path
//! filtering, unicast IP in broadcast frames, source routes, ICMP errors checked
//! before translation, egress MTU. Every frame goes through two pipelines, one
//! packet at a time and as a burst, which must agree.

use super::*;
use crate::packet::icmp::{emit_error, IcmpError};
use crate::packet::{ethernet, icmpv6, EtherType, IpProtocol};
use std::net::SocketAddr;

const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);
const BROADCAST: MacAddr = MacAddr([0xff; 6]);

/// Dual stack: NAT (IPv4 and IPv6), FULLNAT and DR services, a default IPv4 route
/// by wan and none for IPv6, static neighbours for the client, the gateway and
/// the real server.
fn config() -> String {
    fixture::appliance_with(
        1,
        true,
        r#"connections: { max: 100 }
routes:
  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }
neighbors:
  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }
  - { ip: "198.18.0.10", mac: "02:00:00:00:00:10" }
  - { ip: "198.18.0.254", mac: "02:00:00:00:00:fe" }
  - { ip: "2001:2:0:19::10", mac: "02:00:00:00:01:10" }
  - { ip: "2001:2::10", mac: "02:00:00:00:00:10" }
services:
  - { name: web, vip: 198.18.0.100, port: 80, protocol: tcp, mode: nat, scheduler: rr,
      real_servers: [{ address: 198.19.0.10, port: 8080 }] }
  - { name: dns, vip: 198.18.0.100, port: 53, protocol: udp, mode: nat, scheduler: rr,
      real_servers: [{ address: 198.19.0.10, port: 5353 }] }
  - { name: fnat, vip: 198.18.0.101, port: 80, protocol: tcp, mode: fullnat, scheduler: rr,
      local_addresses: [198.19.0.2], real_servers: [{ address: 198.19.0.10, port: 8080 }] }
  - { name: dr, vip: 198.18.0.102, port: 80, protocol: tcp, mode: dr, scheduler: rr,
      real_servers: [{ address: 198.19.0.10, port: 80 }] }
  - { name: web6, vip: "2001:2::100", port: 80, protocol: tcp, mode: nat, scheduler: rr,
      real_servers: [{ address: "2001:2:0:19::10", port: 8080 }] }
"#,
    )
}

/// [`config`] with `setting` (`key: value`) on port `port` (`wan` or `lan`).
fn config_with_port(port: &str, setting: &str) -> String {
    let device = if port == "wan" {
        "net_null0"
    } else {
        "net_null1"
    };
    let text = config().replace(
        &format!("device: {device},"),
        &format!("device: {device}, {setting},"),
    );
    assert_ne!(text, config());
    text
}

/// The same pipeline twice: one fed a packet at a time, one fed bursts.
struct Pair([Harness; 2]);

impl Pair {
    fn new(text: &str) -> Pair {
        Pair([burst::seeded_with(text), burst::seeded_with(text)])
    }

    fn rx(&mut self, frame: &[u8], port: usize) {
        self.0[0].p.process(VecBuf::from_frame(frame), port);
        self.0[1].rx(frame.to_vec(), port);
    }

    /// What both sent on `port`, which must be the same.
    fn take_tx(&mut self, port: usize) -> Vec<Vec<u8>> {
        let [single, burst] = &mut self.0;
        let a: Vec<Vec<u8>> = single
            .take_tx(port)
            .iter()
            .map(|b| b.data().to_vec())
            .collect();
        let b: Vec<Vec<u8>> = burst
            .take_tx(port)
            .iter()
            .map(|b| b.data().to_vec())
            .collect();
        assert_eq!(a, b, "port {port}: the two paths sent different packets");
        a
    }

    /// Drops for `reason`, the same on both.
    fn dropped(&self, reason: DropReason) -> u64 {
        let [single, burst] = &self.0;
        let n = single.dropped(reason);
        assert_eq!(n, burst.dropped(reason), "{}", reason.label());
        n
    }

    /// Every reason that counted a drop, with its count; the same on both.
    fn drops(&self) -> Vec<(&'static str, u64)> {
        let of = |h: &Harness| -> Vec<(&'static str, u64)> {
            DropReason::ALL
                .iter()
                .map(|r| (r.label(), h.dropped(*r)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        let a = of(&self.0[0]);
        assert_eq!(a, of(&self.0[1]));
        a
    }

    /// Connections scheduled so far, over every real server.
    fn conns(&self) -> u64 {
        let of = |h: &Harness| -> u64 {
            h.p.dp
                .services
                .iter()
                .flat_map(|svc| svc.real_servers.iter())
                .map(|r| h.stats.real_server(r.slot).conns.get())
                .sum()
        };
        let n = of(&self.0[0]);
        assert_eq!(n, of(&self.0[1]));
        n
    }

    fn kernel(&mut self, port: usize) -> usize {
        let [single, burst] = &mut self.0;
        let n = single.p.kernel_queue(port).drain(..).count();
        assert_eq!(n, burst.p.kernel_queue(port).drain(..).count());
        n
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client_l2() -> L2 {
    l2_to_us(CLIENT_MAC)
}

fn syn(l2: L2, client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
    craft::tcp(l2, client, vip, TcpFlags::SYN, 1, 0, b"")
}

fn ip_of(frame: &[u8]) -> (crate::packet::FrameInfo, IpInfo) {
    let info = parse_frame(frame, false).unwrap();
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    (info, ip)
}

#[test]
fn martian_and_own_sources_open_nothing() {
    let mut p = Pair::new(&config());
    let vip = sa("198.18.0.100:80");
    let dns = sa("198.18.0.100:53");
    let martians = [
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "224.0.0.5",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        // The directed broadcasts of the ports' subnets.
        "198.18.0.255",
        "198.19.0.255",
    ];
    for (i, src) in martians.iter().enumerate() {
        let client = SocketAddr::new(src.parse().unwrap(), 40000);
        p.rx(&syn(client_l2(), client, vip), 0);
        p.rx(&craft::udp(client_l2(), client, dns, b"q"), 0);
        assert_eq!(
            p.dropped(DropReason::MartianSource),
            2 * (i as u64 + 1),
            "{src}"
        );
    }
    // Ours: the VIP itself (the land attack: source = destination), another VIP,
    // the ports' addresses, a FULLNAT local address.
    let own = [
        "198.18.0.100",
        "198.18.0.102",
        "198.18.0.1",
        "198.19.0.1",
        "198.19.0.2",
    ];
    for (i, src) in own.iter().enumerate() {
        let client = SocketAddr::new(src.parse().unwrap(), 80);
        p.rx(&syn(client_l2(), client, vip), 0);
        assert_eq!(p.dropped(DropReason::OwnSource), i as u64 + 1, "{src}");
    }
    // Pings: an answer to our own address would loop, one to a broadcast source
    // would reflect (smurf).
    let ping = |src: &str| {
        craft::echo_request(
            client_l2(),
            src.parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            1,
            1,
            b"",
        )
    };
    p.rx(&ping("198.18.0.100"), 0);
    p.rx(&ping("198.18.0.255"), 0);
    assert_eq!(p.dropped(DropReason::OwnSource), own.len() as u64 + 1);
    assert_eq!(
        p.dropped(DropReason::MartianSource),
        2 * martians.len() as u64 + 1
    );
    // IPv6: unspecified, loopback, multicast, IPv4-mapped; then ours.
    let vip6 = sa("[2001:2::100]:80");
    for (i, src) in ["::", "::1", "ff02::1", "::ffff:198.18.0.10"]
        .iter()
        .enumerate()
    {
        let client = SocketAddr::new(src.parse().unwrap(), 40000);
        p.rx(&syn(client_l2(), client, vip6), 0);
        assert_eq!(
            p.dropped(DropReason::MartianSource),
            2 * martians.len() as u64 + 2 + i as u64,
            "{src}"
        );
    }
    for src in ["2001:2::100", "2001:2::1"] {
        let client = SocketAddr::new(src.parse().unwrap(), 40000);
        p.rx(&syn(client_l2(), client, vip6), 0);
    }
    assert_eq!(p.dropped(DropReason::OwnSource), own.len() as u64 + 3);
    assert!(p.take_tx(0).is_empty() && p.take_tx(1).is_empty());
    assert_eq!(p.conns(), 0, "no connection slot taken");
    // Duplicate address detection (a solicitation from the unspecified address)
    // is not martian.
    let before = p.dropped(DropReason::MartianSource);
    p.rx(
        &craft::neighbor_solicit(
            CLIENT_MAC,
            Ipv6Addr::UNSPECIFIED,
            "2001:2::1".parse().unwrap(),
        ),
        0,
    );
    assert_eq!(p.dropped(DropReason::MartianSource), before);
    p.take_tx(0);
    // Nor is a host without an address yet broadcasting (DHCP), in a broadcast
    // frame or one to our MAC (which the burst path's parser takes): it is just
    // not for us.
    let discover = |dst| {
        let l2 = L2 {
            src: CLIENT_MAC,
            dst,
        };
        craft::udp(l2, sa("0.0.0.0:68"), sa("255.255.255.255:67"), b"discover")
    };
    p.rx(&discover(BROADCAST), 0);
    p.rx(&discover(OUR_MAC), 0);
    assert_eq!(p.dropped(DropReason::MartianSource), before);
    assert_eq!(p.dropped(DropReason::NoConnection), 2);
    // And a real client is served, by both families.
    p.rx(&syn(client_l2(), sa("198.18.0.10:40000"), vip), 0);
    p.rx(&syn(client_l2(), sa("[2001:2::10]:40000"), vip6), 0);
    assert_eq!(p.take_tx(1).len(), 2);
    assert_eq!(p.conns(), 2);
}

/// The issue's case: a SYN arriving on wan with a source on the real servers'
/// subnet. `strict` refuses it (the route back leaves by lan), `loose` only
/// sources with no route back at all, `off` nothing.
#[test]
fn reverse_path_filtering_per_port() {
    let vip = sa("198.18.0.100:80");
    let vip6 = sa("[2001:2::100]:80");
    let spoofed = sa("198.19.0.50:40000");
    let far = sa("203.0.113.9:40000");
    let far6 = sa("[2001:db8::9]:40000");
    let ping_from_lan_subnet = craft::echo_request(
        client_l2(),
        spoofed.ip(),
        "198.18.0.1".parse().unwrap(),
        1,
        1,
        b"",
    );

    let mut strict = Pair::new(&config_with_port("wan", "rp_filter: strict"));
    strict.rx(&syn(client_l2(), spoofed, vip), 0);
    strict.rx(&ping_from_lan_subnet, 0);
    // IPv6 has no default route here: no route back by wan either.
    strict.rx(&syn(client_l2(), far6, vip6), 0);
    assert_eq!(strict.dropped(DropReason::RpFilter), 3);
    assert!(strict.take_tx(0).is_empty() && strict.take_tx(1).is_empty());
    // Back by wan: a client behind the default gateway, one on wan's own subnet.
    strict.rx(&syn(client_l2(), far, vip), 0);
    strict.rx(&syn(client_l2(), sa("[2001:2::10]:40000"), vip6), 0);
    assert_eq!(strict.take_tx(1).len(), 2);
    // The same source is fine on lan, its own side (lan filters nothing).
    let from_lan = L2 {
        src: RS_MAC,
        dst: LAN_MAC,
    };
    strict.rx(&syn(from_lan, spoofed, vip), 1);
    assert_eq!(strict.take_tx(1).len(), 1);
    assert_eq!(strict.dropped(DropReason::RpFilter), 3);
    assert_eq!(strict.conns(), 3);

    let mut loose = Pair::new(&config_with_port("wan", "rp_filter: loose"));
    loose.rx(&syn(client_l2(), spoofed, vip), 0);
    loose.rx(&syn(client_l2(), far, vip), 0);
    assert_eq!(loose.take_tx(1).len(), 2, "a route back exists for both");
    loose.rx(&syn(client_l2(), far6, vip6), 0);
    assert_eq!(loose.dropped(DropReason::RpFilter), 1, "none for this one");

    let mut off = Pair::new(&config());
    off.rx(&syn(client_l2(), spoofed, vip), 0);
    off.rx(&syn(client_l2(), far6, vip6), 0);
    assert_eq!(off.take_tx(1).len(), 2);
    assert_eq!(off.dropped(DropReason::RpFilter), 0);
}

#[test]
fn unicast_ip_in_broadcast_or_multicast_frames_is_dropped() {
    let mut p = Pair::new(&config());
    let client = sa("198.18.0.10:40000");
    for mac in [BROADCAST, MacAddr([0x01, 0, 0x5e, 0, 0, 5])] {
        let l2 = L2 {
            src: CLIENT_MAC,
            dst: mac,
        };
        p.rx(&syn(l2, client, sa("198.18.0.100:80")), 0);
        p.rx(
            &craft::echo_request(l2, client.ip(), "198.18.0.1".parse().unwrap(), 1, 1, b""),
            0,
        );
    }
    let v6 = L2 {
        src: CLIENT_MAC,
        dst: MacAddr([0x33, 0x33, 0, 0, 0, 1]),
    };
    p.rx(
        &syn(v6, sa("[2001:2::10]:40000"), sa("[2001:2::100]:80")),
        0,
    );
    assert_eq!(p.dropped(DropReason::L2BroadcastUnicastIp), 5);
    assert!(p.take_tx(0).is_empty() && p.take_tx(1).is_empty());
    // What belongs in such frames still works: ARP, neighbour discovery, and a
    // broadcast ping is no unicast (it is not for us either).
    p.rx(
        &craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.18.0.1")),
        0,
    );
    p.rx(
        &craft::neighbor_solicit(
            CLIENT_MAC,
            "2001:2::10".parse().unwrap(),
            "2001:2::1".parse().unwrap(),
        ),
        0,
    );
    assert_eq!(p.take_tx(0).len(), 2, "ARP reply, neighbour advertisement");
    p.rx(
        &craft::echo_request(
            L2 {
                src: CLIENT_MAC,
                dst: BROADCAST,
            },
            client.ip(),
            "198.18.0.255".parse().unwrap(),
            1,
            1,
            b"",
        ),
        0,
    );
    assert_eq!(p.dropped(DropReason::NotForUs), 1);
    assert_eq!(p.dropped(DropReason::L2BroadcastUnicastIp), 5);
}

/// `frame` (untagged IPv6, no extension header) with an 8-byte routing header of
/// `routing_type` and `segments_left` before its upper layer.
fn with_routing_header(frame: &[u8], routing_type: u8, segments_left: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    let next = f[14 + 6];
    f.splice(54..54, [next, 0, routing_type, segments_left, 0, 0, 0, 0]);
    f[14 + 6] = IpProtocol::ROUTING.0;
    let payload = u16::from_be_bytes([f[18], f[19]]) + 8;
    f[18..20].copy_from_slice(&payload.to_be_bytes());
    f
}

#[test]
fn source_routes_and_bad_options_are_not_forwarded() {
    let mut p = Pair::new(&config());
    let client = sa("198.18.0.10:40000");
    let vip = sa("198.18.0.100:80");
    let plain = syn(client_l2(), client, vip);
    // LSRR, SSRR: refused.
    p.rx(
        &with_ipv4_options(&plain, &[0x83, 7, 4, 198, 19, 0, 10, 0]),
        0,
    );
    p.rx(
        &with_ipv4_options(&plain, &[1, 0x89, 7, 4, 198, 19, 0, 10]),
        0,
    );
    assert_eq!(p.dropped(DropReason::Ipv4SourceRoute), 2);
    // Options of length 0 or 1, or running past the header.
    p.rx(&with_ipv4_options(&plain, &[0x94, 0, 0, 0]), 0);
    p.rx(&with_ipv4_options(&plain, &[7, 1, 0, 0]), 0);
    p.rx(&with_ipv4_options(&plain, &[1, 1, 7, 8]), 0);
    assert_eq!(p.dropped(DropReason::BadIpv4Options), 3);
    assert!(p.take_tx(1).is_empty());
    assert_eq!(p.conns(), 0);
    // A harmless option (router alert) is forwarded, option and all.
    let alert = with_ipv4_options(&plain, &[0x94, 4, 0, 0]);
    p.rx(&alert, 0);
    let out = p.take_tx(1);
    assert_eq!(out.len(), 1);
    let (_, ip) = ip_of(&out[0]);
    assert_eq!(ip.header_len, 24);
    assert_eq!(ip.addrs.dst(), "198.19.0.10".parse::<IpAddr>().unwrap());

    // IPv6: type 0 is refused even with no segment left; others with segments
    // left are not forwarded to a VIP, but reach the kernel for a port address.
    let client6 = sa("[2001:2::10]:40000");
    let plain6 = syn(client_l2(), client6, sa("[2001:2::100]:80"));
    p.rx(&with_routing_header(&plain6, 0, 0), 0);
    p.rx(&with_routing_header(&plain6, 0, 1), 0);
    assert_eq!(p.dropped(DropReason::Ipv6RoutingHeaderType0), 2);
    p.rx(&with_routing_header(&plain6, 4, 1), 0);
    p.rx(&with_routing_header(&plain6, 2, 1), 0);
    assert_eq!(p.dropped(DropReason::Ipv6SourceRoute), 2);
    assert!(p.take_tx(1).is_empty());
    p.rx(&with_routing_header(&plain6, 4, 0), 0);
    assert_eq!(p.take_tx(1).len(), 1, "no segment left: the VIP is final");
    let to_port = syn(client_l2(), client6, sa("[2001:2::1]:22"));
    p.rx(&with_routing_header(&to_port, 4, 1), 0);
    assert_eq!(p.kernel(0), 1);
    assert_eq!(p.dropped(DropReason::Ipv6SourceRoute), 2);
}

/// An ICMP "fragmentation needed" from `from` about `offending` (a frame),
/// received from `mac`.
fn frag_needed(from: &str, offending: &[u8], mac: MacAddr, to: MacAddr) -> Vec<u8> {
    let mut err = vec![0u8; 14 + 600];
    let n = emit_error(
        &mut err[14..],
        IcmpError::FragmentationNeeded { next_hop_mtu: 1300 },
        from.parse().unwrap(),
        &offending[14..],
    )
    .unwrap();
    err.truncate(14 + n);
    ethernet::emit_header(&mut err, to, mac, EtherType::IPV4).unwrap();
    err
}

/// `frame` (untagged IPv4) with its outer destination replaced.
fn to_other(frame: &[u8], dst: &str) -> Vec<u8> {
    let mut f = frame.to_vec();
    let mut ip = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
    ip.set_dst_addr(dst.parse().unwrap());
    ip.fill_checksum();
    f
}

#[test]
fn icmp_errors_are_checked_before_they_are_translated() {
    let mut p = Pair::new(&config());
    let client = sa("198.18.0.10:40000");
    let vip = sa("198.18.0.100:80");
    let rs = sa("198.19.0.10:8080");
    p.rx(&syn(client_l2(), client, vip), 0);
    assert_eq!(p.take_tx(1).len(), 1);
    // A big segment of the connection as the server side saw it (NAT: from the
    // client to the real server), and a router there that cannot forward it.
    let seg = craft::tcp(client_l2(), client, rs, TcpFlags::ACK, 2, 1, &[7; 1400]);
    let good = frag_needed("198.19.0.254", &seg, RS_MAC, LAN_MAC);
    p.rx(&good, 1);
    let out = p.take_tx(0);
    assert_eq!(out.len(), 1, "{:?}", p.drops());
    let (_, ip) = ip_of(&out[0]);
    assert_eq!(ip.addrs.src(), vip.ip());

    // Corrupted: translating would have written a fresh checksum over it.
    let mut corrupt = good.clone();
    corrupt[14 + 20 + 5] ^= 0x40;
    p.rx(&corrupt, 1);
    assert_eq!(p.dropped(DropReason::BadIcmpChecksum), 1);
    // Not addressed to the quoted packet's source (the client): elsewhere, or to
    // one of our addresses.
    p.rx(&to_other(&good, "198.18.0.77"), 1);
    p.rx(&to_other(&good, "198.18.0.100"), 1);
    assert_eq!(p.dropped(DropReason::IcmpErrorBadDestination), 2);
    // From one of our own addresses (the VIP, a port).
    p.rx(&frag_needed("198.18.0.100", &seg, RS_MAC, LAN_MAC), 1);
    p.rx(&frag_needed("198.19.0.1", &seg, RS_MAC, LAN_MAC), 1);
    assert_eq!(p.dropped(DropReason::OwnSource), 2);
    // About no connection.
    let stray = craft::tcp(
        client_l2(),
        sa("198.18.0.10:40001"),
        rs,
        TcpFlags::ACK,
        2,
        1,
        b"",
    );
    p.rx(&frag_needed("198.19.0.254", &stray, RS_MAC, LAN_MAC), 1);
    assert_eq!(p.dropped(DropReason::NoConnection), 1);
    assert!(p.take_tx(0).is_empty() && p.take_tx(1).is_empty());

    // From the client side, about our reply (from the VIP): to the VIP, it goes
    // to the server; to another of our addresses it is refused.
    let reply = craft::tcp(client_l2(), vip, client, TcpFlags::ACK, 2, 1, &[7; 1400]);
    let gw = MacAddr([2, 0, 0, 0, 0, 0xfe]);
    let from_client_side = frag_needed("198.18.0.254", &reply, gw, OUR_MAC);
    p.rx(&from_client_side, 0);
    assert_eq!(p.take_tx(1).len(), 1, "{:?}", p.drops());
    p.rx(&to_other(&from_client_side, "198.18.0.1"), 0);
    assert_eq!(p.dropped(DropReason::IcmpErrorBadDestination), 3);
    assert!(p.take_tx(1).is_empty());

    // ICMPv6, whose checksum covers a pseudo-header.
    let client6 = sa("[2001:2::10]:40000");
    p.rx(&syn(client_l2(), client6, sa("[2001:2::100]:80")), 0);
    assert_eq!(p.take_tx(1).len(), 1);
    let seg6 = craft::tcp(
        client_l2(),
        client6,
        sa("[2001:2:0:19::10]:8080"),
        TcpFlags::ACK,
        2,
        1,
        &[7; 1400],
    );
    let mut err6 = vec![0u8; 14 + icmpv6::MAX_ERROR_LEN];
    let n = icmpv6::emit_packet_too_big(
        &mut err6[14..],
        "2001:2:0:19::fe".parse().unwrap(),
        &seg6[14..],
        1300,
    )
    .unwrap();
    err6.truncate(14 + n);
    ethernet::emit_header(&mut err6, LAN_MAC, RS_MAC, EtherType::IPV6).unwrap();
    let mut corrupt6 = err6.clone();
    corrupt6[14 + 40 + 7] ^= 1;
    p.rx(&corrupt6, 1);
    assert_eq!(p.dropped(DropReason::BadIcmpChecksum), 2);
    assert!(p.take_tx(0).is_empty());
    p.rx(&err6, 1);
    assert_eq!(p.take_tx(0).len(), 1, "{:?}", p.drops());
}

/// Asserts that `frame` is an ICMP "fragmentation needed" to `client` with `mtu`,
/// quoting a packet to `quoted_dst`.
fn assert_frag_needed(frame: &[u8], client: IpAddr, mtu: u16, quoted_dst: IpAddr) {
    let (info, ip) = ip_of(frame);
    assert_eq!(ip.protocol, IpProtocol::ICMP);
    assert_eq!(ip.addrs.dst(), client);
    let outer = Ipv4Packet::new_checked(&frame[14..info.l3_end()]).unwrap();
    assert!(outer.verify_checksum());
    let icmp = Icmpv4Packet::new_checked(outer.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.msg_type(), IcmpType::DEST_UNREACHABLE);
    assert_eq!(icmp.next_hop_mtu(), mtu);
    let quoted = icmp.quoted_packet().unwrap();
    assert_eq!(IpAddr::V4(quoted.dst_addr()), quoted_dst);
}

/// A TCP segment of `total` bytes of IP packet.
fn sized(l2: L2, src: SocketAddr, dst: SocketAddr, flags: TcpFlags, total: usize) -> Vec<u8> {
    let header = if src.is_ipv4() { 20 } else { 40 } + 20;
    craft::tcp(l2, src, dst, flags, 1, 1, &vec![0; total - header])
}

fn without_df(mut frame: Vec<u8>) -> Vec<u8> {
    let mut ip = Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
    ip.set_dont_fragment(false);
    ip.fill_checksum();
    frame
}

/// lan's MTU is 1400, wan's 1500: every mode refuses what does not fit lan, its
/// sender told when DF is set (IPv6: always), while replies that fit wan pass.
#[test]
fn egress_mtu_is_enforced_in_every_mode() {
    let mut p = Pair::new(&config_with_port("lan", "mtu: 1400"));
    let client = sa("198.18.0.10:40000");
    for (i, vip) in ["198.18.0.100:80", "198.18.0.101:80", "198.18.0.102:80"]
        .iter()
        .enumerate()
    {
        let vip = sa(vip);
        let client = SocketAddr::new(client.ip(), 40000 + i as u16);
        // Opening: one byte too many, then the most that fits.
        p.rx(&sized(client_l2(), client, vip, TcpFlags::SYN, 1401), 0);
        assert!(p.take_tx(1).is_empty(), "{vip}");
        let out = p.take_tx(0);
        assert_eq!(out.len(), 1, "{vip}: {:?}", p.drops());
        assert_frag_needed(&out[0], client.ip(), 1400, vip.ip());
        p.rx(&sized(client_l2(), client, vip, TcpFlags::SYN, 1400), 0);
        assert_eq!(p.take_tx(1).len(), 1, "{vip}");
        // Established (the burst path's fast lane), with and without DF.
        let big = sized(client_l2(), client, vip, TcpFlags::ACK, 1460);
        p.rx(&big, 0);
        assert_frag_needed(&p.take_tx(0)[0], client.ip(), 1400, vip.ip());
        p.rx(&without_df(big), 0);
        assert!(p.take_tx(0).is_empty(), "never fragmented, nobody told");
        assert!(p.take_tx(1).is_empty());
        assert_eq!(p.dropped(DropReason::MtuExceeded), 3 * (i as u64 + 1));
    }
    // A NAT reply bigger than lan's MTU but within wan's leaves by wan.
    let rs_l2 = L2 {
        src: RS_MAC,
        dst: LAN_MAC,
    };
    p.rx(
        &sized(rs_l2, sa("198.19.0.10:8080"), client, TcpFlags::ACK, 1460),
        1,
    );
    assert_eq!(p.take_tx(0).len(), 1, "{:?}", p.drops());
    // IPv6: "packet too big", always.
    let client6 = sa("[2001:2::10]:40000");
    let vip6 = sa("[2001:2::100]:80");
    p.rx(&sized(client_l2(), client6, vip6, TcpFlags::SYN, 1401), 0);
    let out = p.take_tx(0);
    assert_eq!(out.len(), 1);
    let (info, ip) = ip_of(&out[0]);
    assert_eq!(ip.addrs.dst(), client6.ip());
    let v6 = Ipv6Packet::new_checked(&out[0][14..info.l3_end()]).unwrap();
    let icmp = Icmpv6Packet::new_checked(v6.payload()).unwrap();
    assert_eq!(icmp.msg_type(), Icmpv6Type::PACKET_TOO_BIG);
    assert!(icmp.verify_checksum(v6.src_addr(), v6.dst_addr()));
    assert_eq!(p.dropped(DropReason::MtuExceeded), 10);
    assert!(p.take_tx(1).is_empty());

    // The issue's case at the default MTU: a 1587-byte SYN does not leave.
    let mut p = Pair::new(&config());
    p.rx(
        &sized(
            client_l2(),
            client,
            sa("198.18.0.100:80"),
            TcpFlags::SYN,
            1587,
        ),
        0,
    );
    assert!(p.take_tx(1).is_empty());
    assert_eq!(p.dropped(DropReason::MtuExceeded), 1);
    assert_frag_needed(
        &p.take_tx(0)[0],
        client.ip(),
        1500,
        "198.18.0.100".parse().unwrap(),
    );
}
