//! Multipath routes: connections spread over the next hops by flow, each keeping
//! its next hop; a gateway that never resolves is skipped.

use super::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;

const GWS: [&str; 3] = ["198.18.0.252", "198.18.0.253", "198.18.0.254"];
const RS_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 0x11]);

fn gw_mac(i: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, 0xf0 + i as u8])
}

fn config() -> String {
    fixture::appliance(
        r#"routes:
  - { prefix: "203.0.113.0/24", via: ["198.18.0.252", "198.18.0.253", "198.18.0.254"] }
neighbors:
  - { ip: "198.19.0.11", mac: "02:00:00:00:01:11" }
services:
  - { name: dns, vip: 198.18.0.100, port: 53, protocol: udp, mode: nat, scheduler: rr,
      real_servers: [{ address: 198.19.0.11, port: 5353 }] }
"#,
    )
}

/// The real server's answer to `client` through the service.
fn answer(client: SocketAddr) -> Vec<u8> {
    let rs: SocketAddr = "198.19.0.11:5353".parse().unwrap();
    let l2 = L2 {
        src: RS_MAC,
        dst: LAN_MAC,
    };
    craft::udp(l2, rs, client, b"answer")
}

#[test]
fn connections_spread_over_resolved_next_hops_and_skip_the_dead_one() {
    let mut h = burst::seeded_with(&config());
    // Housekeeping resolves the gateways before any traffic needs them.
    h.p.set_time(0);
    h.p.housekeeping();
    let probes = h.take_tx(0);
    let mut asked: Vec<Ipv4Addr> = probes
        .iter()
        .map(|p| {
            ArpPacket::new_checked(&p.data()[14..])
                .unwrap()
                .target_proto_addr()
        })
        .collect();
    asked.sort();
    assert_eq!(asked, GWS.map(ip4).to_vec());
    // Two answer; the third never does.
    for (i, gw) in GWS.iter().enumerate().take(2) {
        h.rx(
            craft::arp_reply(gw_mac(i), ip4(gw), OUR_MAC, ip4("198.18.0.1")),
            0,
        );
    }
    for t in (100..=3500).step_by(100) {
        h.p.set_time(t);
        h.p.housekeeping();
        h.take_tx(0);
    }

    let mut per_gw: BTreeMap<[u8; 6], usize> = BTreeMap::new();
    for n in 0..200u16 {
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1 + (n % 50) as u8)),
            30000 + n,
        );
        let vip: SocketAddr = "198.18.0.100:53".parse().unwrap();
        h.rx(
            craft::udp(l2_to_us(gw_mac(n as usize % 2)), client, vip, b"q"),
            0,
        );
        assert_eq!(h.take_tx(1).len(), 1, "to the real server");
        let mut macs = vec![];
        for _ in 0..3 {
            h.rx(answer(client), 1);
            let out = h.take_tx(0);
            assert_eq!(out.len(), 1, "the answer leaves at once, nothing held");
            macs.push(<[u8; 6]>::try_from(&out[0].data()[..6]).unwrap());
        }
        assert!(
            macs.iter().all(|m| *m == macs[0]),
            "a connection keeps its hop"
        );
        *per_gw.entry(macs[0]).or_default() += 1;
    }
    assert_eq!(per_gw.len(), 2, "{per_gw:?}");
    assert!(!per_gw.contains_key(&gw_mac(2).0));
    for (_, &count) in per_gw.iter() {
        assert!((60..=140).contains(&count), "{per_gw:?}");
    }
    assert_eq!(h.stats.dropped_total(), 0);

    // The third gateway answers its re-probe: it takes its share of new flows.
    h.p.set_time(4100);
    h.p.housekeeping();
    h.take_tx(0);
    h.rx(
        craft::arp_reply(gw_mac(2), ip4(GWS[2]), OUR_MAC, ip4("198.18.0.1")),
        0,
    );
    let mut third = 0;
    for n in 0..90u16 {
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 200)), 50000 + n);
        let vip: SocketAddr = "198.18.0.100:53".parse().unwrap();
        h.rx(craft::udp(l2_to_us(gw_mac(0)), client, vip, b"q"), 0);
        h.take_tx(1);
        h.rx(answer(client), 1);
        let out = h.take_tx(0);
        assert_eq!(out.len(), 1);
        third += usize::from(out[0].data()[..6] == gw_mac(2).0);
    }
    assert!((15..=45).contains(&third), "{third}");
}
