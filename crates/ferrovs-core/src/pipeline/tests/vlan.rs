//! 802.1Q VLANs: tagged frames handled as their VLAN interface's, replies and
//! forwarded packets tagged for the interface they leave by, in software or by
//! the NIC.

use super::*;
use crate::packet::ethernet::VLAN_TAG_LEN;

/// Interfaces: 0 wan, 1 lan, 2 wan.100, 3 wan.200, 4 lan.300.
const WAN_100: usize = 2;
const WAN_200: usize = 3;
const LAN_300: usize = 4;

const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 3, 0x10]);
const V100_CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);

fn config(mode: &str, real: &str, extra: &str) -> String {
    fixture::appliance_with(
        1,
        true,
        &format!(
            r#"vlans:
  - {{ port: wan, id: 100, name: wan.100, addresses: ["198.20.0.1/24", "2001:20::1/64"] }}
  - {{ port: wan, id: 200, name: wan.200, addresses: ["198.21.0.1/24"] }}
  - {{ port: lan, id: 300, name: lan.300, addresses: ["198.22.0.1/24"] }}
connections: {{ max: 100 }}
neighbors:
  - {{ ip: "198.20.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.22.0.10", mac: "02:00:00:00:03:10" }}
  - {{ ip: "198.21.0.10", mac: "02:00:00:00:03:10" }}
  - {{ ip: "198.18.0.10", mac: "02:00:00:00:00:10" }}
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: {mode}
    scheduler: rr
{extra}    real_servers:
      - {{ address: {real}, port: 80 }}
"#
        ),
    )
}

fn nat() -> Harness {
    harness_with(&config("nat", "198.22.0.10", ""))
}

/// `frame` with an 802.1Q tag of `tci` after its MAC addresses.
fn tagged(mut frame: Vec<u8>, tci: u16) -> Vec<u8> {
    let [hi, lo] = tci.to_be_bytes();
    frame.splice(12..12, [0x81, 0x00, hi, lo]);
    frame
}

/// The frame without its tag, after checking it carries VLAN `vid` with PCP 0.
fn untagged(frame: &[u8], vid: u16) -> Vec<u8> {
    assert_eq!(&frame[12..14], &[0x81, 0x00], "not tagged: {frame:02x?}");
    assert_eq!(u16::from_be_bytes([frame[14], frame[15]]), vid);
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&frame[12 + VLAN_TAG_LEN..]);
    out
}

fn client_l2() -> L2 {
    L2 {
        src: CLIENT_MAC,
        dst: OUR_MAC,
    }
}

fn sa(s: &str) -> std::net::SocketAddr {
    s.parse().unwrap()
}

fn dst_of(frame: &[u8]) -> IpAddr {
    let L3Info::Ip(ip) = parse_frame(frame, false).unwrap().l3 else {
        panic!("not IP")
    };
    ip.addrs.dst()
}

fn drops(h: &Harness) -> Vec<DropReason> {
    DropReason::ALL
        .iter()
        .copied()
        .filter(|r| h.dropped(*r) > 0)
        .collect()
}

#[test]
fn arp_is_answered_on_the_vlan_of_the_address_and_tagged() {
    let mut h = nat();
    let request = craft::arp_request(V100_CLIENT_MAC, ip4("198.20.0.11"), ip4("198.20.0.1"));
    // PCP 5 on the request: priority bits are ignored, replies carry 0.
    h.rx(tagged(request.clone(), 0xa064), 0);
    let out = h.take_tx(WAN_100);
    assert_eq!(out.len(), 1, "{:?}", drops(&h));
    let reply = untagged(out[0].data(), 100);
    let arp = ArpPacket::new_checked(&reply[14..]).unwrap();
    assert_eq!(arp.operation(), ArpOperation::REPLY);
    assert_eq!(arp.sender_hw_addr(), OUR_MAC);
    assert_eq!(arp.sender_proto_addr(), ip4("198.20.0.1"));
    assert_eq!(&reply[0..6], &V100_CLIENT_MAC.0);
    match h.events.try_recv().unwrap() {
        WorkerEvent::NeighborLearned { ip, port, .. } => {
            assert_eq!((ip, port), (IpAddr::V4(ip4("198.20.0.11")), WAN_100));
        }
    }
    assert!(h.take_tx(0).is_empty());
    assert_eq!(h.stats.vlan(0).rx_packets.get(), 1);

    // The same request on another VLAN, or untagged, is not for that interface.
    h.rx(tagged(request.clone(), 200), 0);
    h.rx(request, 0);
    assert_eq!(h.dropped(DropReason::ArpNotForUs), 2);
    assert!(h.take_tx(WAN_200).is_empty() && h.take_tx(0).is_empty());
}

#[test]
fn unknown_nested_and_cut_tags_are_dropped_and_priority_tags_are_untagged() {
    let mut h = nat();
    let request = craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.18.0.1"));
    h.rx(tagged(request.clone(), 999), 0);
    assert_eq!(h.dropped(DropReason::VlanNotConfigured), 1);
    // VLAN 300 is the lan port's, not the wan port's.
    h.rx(tagged(request.clone(), 300), 0);
    assert_eq!(h.dropped(DropReason::VlanNotConfigured), 2);
    h.rx(tagged(tagged(request.clone(), 100), 100), 0);
    assert_eq!(h.dropped(DropReason::NestedVlan), 1);
    h.rx(request[..15].to_vec(), 0);
    let mut cut = request[..12].to_vec();
    cut.extend_from_slice(&[0x81, 0x00, 0x00]);
    h.rx(cut, 0);
    assert_eq!(h.dropped(DropReason::TruncatedVlan), 1);
    // 802.1ad outer tags are not VLANs of ours.
    let mut qinq = tagged(request.clone(), 100);
    qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
    h.rx(qinq, 0);
    assert_eq!(h.dropped(DropReason::VlanNotConfigured), 3);
    // A priority tag (VLAN id 0) is the untagged interface's.
    h.rx(tagged(request, 0x6000), 0);
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[12..14], &[0x08, 0x06], "answered untagged");
    assert!(h.take_tx(WAN_100).is_empty());
}

#[test]
fn a_port_without_vlans_drops_tags_as_before() {
    let mut h = nat();
    let request = craft::arp_request(RS_MAC, ip4("198.19.0.10"), ip4("198.19.0.1"));
    // The lan port has VLAN 300 only; the wan port's VLAN 100 is not on it.
    h.rx(tagged(request, 100), 1);
    assert_eq!(h.dropped(DropReason::VlanNotConfigured), 1);
    let mut plain = harness();
    let request = craft::arp_request(CLIENT_MAC, ip4("198.18.0.10"), ip4("198.18.0.1"));
    plain.rx(tagged(request, 100), 0);
    assert_eq!(plain.dropped(DropReason::VlanNotConfigured), 1);
}

#[test]
fn nat_between_a_vlan_client_an_untagged_client_and_a_vlan_real_server() {
    let mut h = nat();
    let vip = sa("198.18.0.100:80");
    for (client, tci, back) in [
        ("198.20.0.10:40000", Some(100), WAN_100),
        ("198.18.0.10:40002", None, 0),
    ] {
        let client = sa(client);
        let syn = craft::tcp(client_l2(), client, vip, TcpFlags::SYN, 1, 0, b"");
        h.rx(tci.map_or(syn.clone(), |t| tagged(syn, t)), 0);
        let out = h.take_tx(LAN_300);
        assert_eq!(out.len(), 1, "{:?}", drops(&h));
        let to_rs = untagged(out[0].data(), 300);
        assert_eq!(&to_rs[0..6], &RS_MAC.0);
        assert_eq!(&to_rs[6..12], &LAN_MAC.0);
        assert_eq!(dst_of(&to_rs), "198.22.0.10".parse::<IpAddr>().unwrap());

        // The real server's reply comes tagged 300 on the lan port and leaves
        // by the client's interface.
        let reply = craft::tcp(
            L2 {
                src: RS_MAC,
                dst: LAN_MAC,
            },
            sa("198.22.0.10:80"),
            client,
            TcpFlags::SYN | TcpFlags::ACK,
            9,
            2,
            b"",
        );
        h.rx(tagged(reply, 300), 1);
        let out = h.take_tx(back);
        assert_eq!(out.len(), 1, "{:?}", drops(&h));
        let to_client = match tci {
            Some(vid) => untagged(out[0].data(), vid),
            None => out[0].data().to_vec(),
        };
        assert_eq!(&to_client[12..14], &[0x08, 0x00]);
        assert_eq!(dst_of(&to_client), client.ip());
        let L3Info::Ip(ip) = parse_frame(&to_client, false).unwrap().l3 else {
            panic!()
        };
        assert_eq!(ip.addrs.src(), vip.ip());
    }
    assert_eq!(h.stats.dropped_total(), 0, "{:?}", drops(&h));
    assert_eq!(h.stats.vlan(0).rx_packets.get(), 1);
    assert_eq!(h.stats.vlan(2).rx_packets.get(), 2);
}

#[test]
fn fullnat_local_addresses_on_a_vlan_are_answered_there() {
    let mut h = harness_with(&config(
        "fullnat",
        "198.22.0.10",
        "    local_addresses: [198.22.0.2]\n",
    ));
    let client = sa("198.20.0.10:40000");
    let syn = craft::tcp(
        client_l2(),
        client,
        sa("198.18.0.100:80"),
        TcpFlags::SYN,
        1,
        0,
        b"",
    );
    h.rx(tagged(syn, 100), 0);
    let out = h.take_tx(LAN_300);
    assert_eq!(out.len(), 1, "{:?}", drops(&h));
    let to_rs = untagged(out[0].data(), 300);
    let L3Info::Ip(ip) = parse_frame(&to_rs, false).unwrap().l3 else {
        panic!()
    };
    assert_eq!(ip.addrs.src(), "198.22.0.2".parse::<IpAddr>().unwrap());
    let (lport, _) = ip.ports().unwrap();
    let reply = craft::tcp(
        L2 {
            src: RS_MAC,
            dst: LAN_MAC,
        },
        sa("198.22.0.10:80"),
        std::net::SocketAddr::new(ip.addrs.src(), lport),
        TcpFlags::SYN | TcpFlags::ACK,
        9,
        2,
        b"",
    );
    h.rx(tagged(reply, 300), 1);
    let out = h.take_tx(WAN_100);
    assert_eq!(out.len(), 1, "{:?}", drops(&h));
    assert_eq!(dst_of(&untagged(out[0].data(), 100)), client.ip());
    // ARP for the local address: answered on VLAN 300, not untagged on lan.
    let request = craft::arp_request(RS_MAC, ip4("198.22.0.10"), ip4("198.22.0.2"));
    h.rx(tagged(request.clone(), 300), 1);
    assert_eq!(h.take_tx(LAN_300).len(), 1);
    h.rx(request, 1);
    assert_eq!(h.dropped(DropReason::ArpNotForUs), 1);
}

#[test]
fn dr_sends_to_the_real_server_on_its_vlan_with_the_packet_unchanged() {
    let mut h = harness_with(&config("dr", "198.21.0.10", ""));
    let client = sa("198.18.0.10:40000");
    let syn = craft::tcp(
        client_l2(),
        client,
        sa("198.18.0.100:80"),
        TcpFlags::SYN,
        1,
        0,
        b"",
    );
    h.rx(syn.clone(), 0);
    let out = h.take_tx(WAN_200);
    assert_eq!(out.len(), 1, "{:?}", drops(&h));
    let to_rs = untagged(out[0].data(), 200);
    assert_eq!(&to_rs[0..6], &RS_MAC.0);
    assert_eq!(
        &to_rs[14..54],
        &syn[14..54],
        "DR leaves the IP packet alone"
    );
}

#[test]
fn ping_nd_and_the_exception_path_on_a_vlan() {
    let mut h = nat();
    let l2 = L2 {
        src: V100_CLIENT_MAC,
        dst: OUR_MAC,
    };
    let ping = craft::echo_request(
        l2,
        "198.20.0.10".parse().unwrap(),
        "198.20.0.1".parse().unwrap(),
        7,
        1,
        b"ping",
    );
    h.rx(tagged(ping, 100), 0);
    let out = h.take_tx(WAN_100);
    assert_eq!(out.len(), 1, "{:?}", drops(&h));
    assert_eq!(
        dst_of(&untagged(out[0].data(), 100)),
        "198.20.0.10".parse::<IpAddr>().unwrap()
    );

    let ns = craft::neighbor_solicit(
        V100_CLIENT_MAC,
        "2001:20::10".parse().unwrap(),
        "2001:20::1".parse().unwrap(),
    );
    h.rx(tagged(ns, 100), 0);
    let out = h.take_tx(WAN_100);
    assert_eq!(out.len(), 1, "{:?}", drops(&h));
    let na = untagged(out[0].data(), 100);
    assert_eq!(&na[0..6], &V100_CLIENT_MAC.0);

    // TCP to the VLAN's address goes to the VLAN's kernel interface, untagged;
    // what that interface sends goes out tagged.
    let ssh = craft::tcp(
        l2,
        sa("198.20.0.10:40000"),
        sa("198.20.0.1:22"),
        TcpFlags::SYN,
        1,
        0,
        b"",
    );
    h.rx(tagged(ssh.clone(), 100), 0);
    let to_kernel: Vec<VecBuf> = h.p.kernel_queue(WAN_100).drain(..).collect();
    assert_eq!(to_kernel.len(), 1);
    assert_eq!(to_kernel[0].data(), &ssh[..]);
    assert!(h.p.kernel_queue(0).is_empty());
    let mut from_kernel = VecBuf::from_frame(&ssh);
    from_kernel.set_rx_port(WAN_100 as u16);
    h.p.from_kernel(from_kernel);
    let out = h.take_tx(WAN_100);
    assert_eq!(untagged(out[0].data(), 100), ssh);
    assert_eq!(h.p.egress_port(WAN_100), 0);
    assert_eq!(h.p.egress_port(LAN_300), 1);
}

#[test]
fn with_nic_offloads_tags_stay_in_metadata() {
    let mut h = nat();
    h.p = std::mem::replace(&mut h.p, nat().p).with_vlan_offloads(&[true, true], &[true, true]);
    let client = sa("198.20.0.10:40000");
    let syn = craft::tcp(
        client_l2(),
        client,
        sa("198.18.0.100:80"),
        TcpFlags::SYN,
        1,
        0,
        b"",
    );
    // The NIC took the tag (PCP 3) off: the frame is untagged, the tag in metadata.
    let mut pkt = VecBuf::from_frame(&syn);
    pkt.set_rx_vlan_tci(Some(0x6064));
    let mut burst = vec![pkt];
    h.p.process_burst(&mut burst, 0);
    let out = h.take_tx(LAN_300);
    assert_eq!(out.len(), 1, "{:?}", drops(&h));
    assert_eq!(out[0].tx_vlan_tci(), Some(300));
    assert_eq!(
        &out[0].data()[12..14],
        &[0x08, 0x00],
        "the NIC inserts the tag"
    );
    // A frame the NIC untagged but that holds a second tag is a stack.
    let mut stacked = VecBuf::from_frame(&tagged(syn, 100));
    stacked.set_rx_vlan_tci(Some(100));
    h.p.process(stacked, 0);
    assert_eq!(h.dropped(DropReason::NestedVlan), 1);
}
