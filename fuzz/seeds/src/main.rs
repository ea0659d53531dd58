//! Writes the seed corpus of every fuzz target into `DIR/<target>/`
//! (`scripts/fuzz.sh seeds` writes `fuzz/corpus`): a few valid inputs per
//! target, in the input format its module documentation describes, so that a
//! short run starts past the parsers. Each file is named after what it holds.
//!
//! Usage: ferrovs-fuzz-seeds DIR REPO_ROOT

use ferrovs_core::packet::craft::{self, L2};
use ferrovs_core::packet::icmp::{emit_error, IcmpError};
use ferrovs_core::packet::icmpv6::{self, NeighborSolicit};
use ferrovs_core::packet::{ethernet, EtherType, Ipv4Packet, MacAddr, TcpFlags};
use ferrovs_core::sync::message::{self, Header, Kind};
use ferrovs_core::sync::{SyncConn, RECORD_LEN};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The sync target's key (`fuzz_targets/sync_datagram.rs`).
const SYNC_KEY: &[u8] = b"fuzzing key, at least 16 bytes";

const US: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const CLIENT: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, repo] = &args[..] else {
        eprintln!("usage: ferrovs-fuzz-seeds DIR REPO_ROOT");
        std::process::exit(2);
    };
    let out = PathBuf::from(out);
    let repo = PathBuf::from(repo);
    let mut n = 0;
    n += write(&out.join("frame_parser"), frame_parser());
    n += write(&out.join("pipeline"), pipeline());
    n += write(&out.join("config"), config(&repo));
    n += write(&out.join("control_protocol"), control_protocol());
    n += write(&out.join("sync_datagram"), sync_datagram());
    n += write(&out.join("proxy_protocol"), proxy_protocol());
    n += write(&out.join("syn_cookie"), syn_cookie());
    println!("wrote {n} seeds into {}", out.display());
}

fn write(dir: &Path, seeds: Vec<(&str, Vec<u8>)>) -> usize {
    std::fs::create_dir_all(dir).expect("corpus directory");
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed written");
    }
    seeds.len()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn to_us() -> L2 {
    L2 {
        src: CLIENT,
        dst: US,
    }
}

// ---------------------------------------------------------------------------
// frame_parser: a flag byte (bit 0: VLANs allowed), 26 bytes of rewrite values,
// the frame.

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let syn = craft::tcp(
        to_us(),
        sa("198.18.0.10:40000"),
        sa("198.18.0.100:80"),
        TcpFlags::SYN,
        1,
        0,
        b"",
    );
    let mut with_mss = syn.clone();
    {
        // A SYN with an MSS option (data offset 6).
        let mut seg = with_mss[34..54].to_vec();
        seg[12] = 0x60;
        seg.extend([2, 4, 0x05, 0xb4]);
        with_mss = craft::ip_frame(
            to_us(),
            ip("198.18.0.10"),
            ip("198.18.0.100"),
            ferrovs_core::packet::IpProtocol::TCP,
            64,
            &seg,
        );
        let mut t = ferrovs_core::packet::TcpPacket::new_checked(&mut with_mss[34..]).unwrap();
        t.fill_checksum(&ferrovs_core::packet::IpPair::V4 {
            src: "198.18.0.10".parse().unwrap(),
            dst: "198.18.0.100".parse().unwrap(),
        });
    }
    let udp = craft::udp(
        to_us(),
        sa("198.18.0.10:5353"),
        sa("198.18.0.100:53"),
        b"query",
    );
    let tcp6 = craft::tcp(
        to_us(),
        sa("[2001:2::10]:40000"),
        sa("[2001:2::100]:80"),
        TcpFlags::SYN | TcpFlags::ACK,
        7,
        9,
        b"data",
    );
    let udp6 = craft::udp(
        to_us(),
        sa("[2001:2::10]:5353"),
        sa("[2001:2::101]:53"),
        b"q6",
    );
    let echo = craft::echo_request(to_us(), ip("198.18.0.10"), ip("198.18.0.1"), 1, 2, b"ping");
    let echo6 = craft::echo_request(to_us(), ip("2001:2::10"), ip("2001:2::1"), 1, 2, b"ping");
    let arp = craft::arp_request(
        CLIENT,
        "198.18.0.10".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
    );
    let arp_reply = craft::arp_reply(
        CLIENT,
        "198.18.0.10".parse().unwrap(),
        US,
        "198.18.0.1".parse().unwrap(),
    );
    let ns = craft::neighbor_solicit(
        CLIENT,
        "2001:2::10".parse().unwrap(),
        "2001:2::1".parse().unwrap(),
    );
    let na = neighbor_advert(
        "2001:2::10".parse().unwrap(),
        CLIENT,
        "2001:2::1".parse().unwrap(),
    );
    let icmp_error = icmp_error_about(
        &syn,
        "198.19.0.254",
        IcmpError::FragmentationNeeded { next_hop_mtu: 1280 },
    );
    let mut too_big = vec![0u8; 14 + 600];
    let n = icmpv6::emit_packet_too_big(
        &mut too_big[14..],
        "2001:2::fe".parse().unwrap(),
        &tcp6[14..],
        1280,
    )
    .unwrap();
    too_big.truncate(14 + n);
    ethernet::emit_header(&mut too_big, US, CLIENT, EtherType::IPV6).unwrap();
    let mut vlan = syn.clone();
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let options = with_ipv4_options(&udp, &[0x94, 4, 0, 0]);
    // IPv6 with a hop-by-hop header and a (first) fragment header before UDP.
    let mut ext = udp6.clone();
    let mut payload = ext[54..].to_vec();
    let mut chain = vec![44, 0, 0, 0, 0, 0, 0, 0]; // hop-by-hop, next: fragment
    chain.extend([17, 0, 0, 1, 0, 0, 0x12, 0x34]); // fragment, next: UDP, M=1
    chain.append(&mut payload);
    ext.truncate(54);
    ext[20] = 0; // next header: hop-by-hop
    let len = chain.len() as u16;
    ext[18..20].copy_from_slice(&len.to_be_bytes());
    ext.extend(chain);
    vec![
        ("tcp-syn", syn),
        ("tcp-syn-mss", with_mss),
        ("udp", udp),
        ("tcp6", tcp6),
        ("udp6", udp6),
        ("echo", echo),
        ("echo6", echo6),
        ("arp-request", arp),
        ("arp-reply", arp_reply),
        ("neighbor-solicit", ns),
        ("neighbor-advert", na),
        ("icmp-frag-needed", icmp_error),
        ("icmp6-too-big", too_big),
        ("vlan", vlan),
        ("ipv4-options", options),
        ("ipv6-ext-headers", ext),
    ]
}

fn frame_parser() -> Vec<(&'static str, Vec<u8>)> {
    let params: [u8; 26] = [
        198, 19, 0, 2, 0x20, 0x01, 0, 2, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x04, 0x01, 63,
        0x05, 0x78, 0,
    ];
    frames()
        .into_iter()
        .map(|(name, f)| {
            let mut seed = vec![u8::from(name == "vlan")];
            seed.extend(params);
            seed.extend(f);
            (name, seed)
        })
        .collect()
}

fn neighbor_advert(target: Ipv6Addr, mac: MacAddr, to: Ipv6Addr) -> Vec<u8> {
    let mut buf = vec![0u8; icmpv6::ND_FRAME_LEN];
    let ns = NeighborSolicit {
        source: to,
        target,
        source_link_addr: Some(US),
    };
    let n = icmpv6::emit_neighbor_advert(&mut buf, mac, &ns, US).unwrap();
    buf.truncate(n);
    buf
}

fn icmp_error_about(frame: &[u8], from: &str, error: IcmpError) -> Vec<u8> {
    let mut err = vec![0u8; 14 + 600];
    let n = emit_error(&mut err[14..], error, from.parse().unwrap(), &frame[14..]).unwrap();
    err.truncate(14 + n);
    ethernet::emit_header(&mut err, US, CLIENT, EtherType::IPV4).unwrap();
    err
}

fn with_ipv4_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f.splice(34..34, options.iter().copied());
    f[14] = 0x45 + (options.len() / 4) as u8;
    let total = u16::from_be_bytes([f[16], f[17]]) + options.len() as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_checked(&mut f[14..])
        .unwrap()
        .fill_checksum();
    f
}

// ---------------------------------------------------------------------------
// pipeline: a setup byte, then operations (see fuzz_targets/pipeline.rs).

/// TCP flags.
const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;

/// Template kinds.
const TCP4: u8 = 0;
const UDP4: u8 = 1;
const TCP6: u8 = 2;
const UDP6: u8 = 3;
const ECHO4: u8 = 4;
const ECHO6: u8 = 5;
const ARP: u8 = 6;
const NS: u8 = 7;
const REPLY: u8 = 8;
const ICMP_ERROR: u8 = 9;
const NEIGHBOUR: u8 = 10;

/// Destination selectors: address index (DESTS_V4 / DESTS_V6) and port index
/// (80, 53, 443, 22) in the high two bits.
const fn dst(addr: u8, port: u8) -> u8 {
    addr | port << 6
}

/// A template frame: kind, source, destination, reply/error selector, TCP
/// flags, payload length; no damage.
fn t(kind: u8, a: u8, b: u8, c: u8, flags: u8, plen: u8) -> Vec<u8> {
    vec![kind, a, b, c, flags, plen, 0]
}

/// A template frame damaged at `at` with `xor`, the IPv4 checksum refreshed.
fn damaged(kind: u8, a: u8, b: u8, flags: u8, at: u16, xor: u8) -> Vec<u8> {
    let mut f = vec![kind, a, b, 0, flags, 8, 0x81];
    f.extend(at.to_be_bytes());
    f.push(xor);
    f
}

fn raw(bytes: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80];
    f.extend((bytes.len() as u16).to_be_bytes());
    f.extend_from_slice(bytes);
    f
}

fn burst(port: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    assert!((1..=32).contains(&frames.len()));
    let mut op = vec![port | ((frames.len() as u8 - 1) << 3)];
    for f in frames {
        op.extend(f);
    }
    op
}

/// Time passes: `t` times 1, 10, 100 or 1000 ms (`unit` 0..=3).
fn time(unit: u8, t: u8) -> Vec<u8> {
    vec![3 | unit << 3, t]
}

fn neighbour_cmd(b: u8) -> Vec<u8> {
    vec![4, b]
}

fn announce_cmd() -> Vec<u8> {
    vec![4 | 1 << 3]
}

fn sync_cmd(records: &[[u8; 4]]) -> Vec<u8> {
    let mut op = vec![4 | 2 << 3, records.len() as u8 - 1];
    for r in records {
        op.extend(r);
    }
    op
}

fn listing_cmd() -> Vec<u8> {
    vec![4 | 3 << 3]
}

fn from_kernel(port: u8, frame: Vec<u8>) -> Vec<u8> {
    let mut op = vec![5 | port << 3];
    op.extend(frame);
    op
}

fn handed(port: u8, frame: Vec<u8>) -> Vec<u8> {
    let mut op = vec![6 | port << 3];
    op.extend(frame);
    op
}

/// Bits: wan TX down, lan TX down, kernel interfaces down, handoff ring full.
fn links(bits: u8) -> Vec<u8> {
    vec![7 | bits << 3]
}

fn script(setup: u8, ops: &[Vec<u8>]) -> Vec<u8> {
    let mut s = vec![setup];
    for op in ops {
        s.extend(op);
    }
    s
}

fn pipeline() -> Vec<(&'static str, Vec<u8>)> {
    const WAN: u8 = 0;
    const LAN: u8 = 1;
    let nat = dst(0, 0);
    let fnat = dst(1, 0);
    let fnat_udp = dst(1, 1);
    let nat_udp = dst(0, 1);
    let dr = dst(2, 0);
    let tun = dst(3, 0);
    let sticky = dst(3, 2);
    let own_ssh = dst(4, 3);
    vec![
        (
            "nat-tcp",
            script(
                0,
                &[
                    burst(WAN, &[t(TCP4, 0, nat, 0, SYN, 0)]),
                    burst(LAN, &[t(REPLY, 0, 0, 0, SYN_ACK, 0)]),
                    burst(
                        WAN,
                        &[t(TCP4, 0, nat, 0, ACK, 0), t(TCP4, 0, nat, 0, PSH_ACK, 20)],
                    ),
                    burst(
                        LAN,
                        &[
                            t(REPLY, 0, 0, 1, PSH_ACK, 30),
                            t(REPLY, 0, 0, 1, FIN_ACK, 0),
                        ],
                    ),
                    time(3, 5),
                    listing_cmd(),
                ],
            ),
        ),
        (
            "fullnat",
            script(
                0,
                &[
                    burst(
                        WAN,
                        &[t(UDP4, 0, fnat_udp, 0, 0, 5), t(TCP4, 1, fnat, 0, SYN, 0)],
                    ),
                    burst(
                        LAN,
                        &[t(REPLY, 0, 0, 0, 0, 5), t(REPLY, 0, 0, 1, SYN_ACK, 0)],
                    ),
                    burst(
                        WAN,
                        &[t(UDP4, 0, fnat_udp, 0, 0, 7), t(TCP4, 1, fnat, 0, ACK, 0)],
                    ),
                    time(2, 50),
                ],
            ),
        ),
        (
            "dr-tunnel-sticky",
            script(
                0,
                &[
                    burst(
                        WAN,
                        &[
                            t(TCP4, 0, dr, 0, SYN, 0),
                            t(TCP4, 0, tun, 0, SYN, 0),
                            t(TCP4, 0, sticky, 0, SYN, 0),
                            t(TCP4, 0x20, sticky, 0, SYN, 0),
                        ],
                    ),
                    burst(
                        WAN,
                        &[t(TCP4, 0, dr, 0, ACK, 0), t(TCP4, 0, tun, 0, ACK, 10)],
                    ),
                    time(3, 40),
                    burst(WAN, &[t(TCP4, 0x40, sticky, 0, SYN, 0)]),
                ],
            ),
        ),
        (
            "ipv6",
            script(
                0,
                &[
                    burst(
                        WAN,
                        &[
                            t(TCP6, 0, dst(0, 0), 0, SYN, 0),
                            t(UDP6, 0, dst(1, 1), 0, 0, 3),
                        ],
                    ),
                    burst(
                        LAN,
                        &[t(REPLY, 0, 0, 0, SYN_ACK, 0), t(REPLY, 0, 0, 1, 0, 3)],
                    ),
                    burst(WAN, &[t(TCP6, 0, dst(0, 0), 0, ACK, 0)]),
                ],
            ),
        ),
        (
            "own-addresses",
            script(
                0,
                &[
                    burst(
                        WAN,
                        &[
                            t(ARP, 0, dst(4, 0), 0, 0, 0),
                            t(NS, 0, dst(2, 0), 0, 0, 0),
                            t(ECHO4, 0, dst(4, 0), 1, 0, 8),
                            t(ECHO6, 0, dst(2, 0), 1, 0, 8),
                            t(TCP4, 0, own_ssh, 0, SYN, 0),
                            t(UDP4, 0, dst(7, 1), 0, 0, 1),
                        ],
                    ),
                    burst(LAN, &[t(ARP, 5, dst(5, 0), 0, 0, 0)]),
                ],
            ),
        ),
        (
            "icmp-errors",
            script(
                0,
                &[
                    burst(
                        WAN,
                        &[t(TCP4, 0, nat, 0, SYN, 0), t(UDP4, 1, nat_udp, 0, 0, 2)],
                    ),
                    burst(
                        LAN,
                        &[
                            t(ICMP_ERROR, 0, 0, 0, 0, 0),
                            t(ICMP_ERROR, 0x81, 0, 1, 0, 0),
                        ],
                    ),
                    burst(
                        WAN,
                        &[
                            t(TCP4, 0, dr, 0, ACK, 0xf9),
                            t(UDP4, 0, fnat_udp, 0, 0, 0xff),
                        ],
                    ),
                ],
            ),
        ),
        (
            "neighbours",
            script(
                0,
                &[
                    burst(WAN, &[t(ECHO4, 4, dst(4, 0), 0, 0, 0)]),
                    burst(LAN, &[t(UDP4, 3, nat_udp, 0, 0, 4)]),
                    time(2, 12),
                    time(2, 12),
                    burst(LAN, &[t(NEIGHBOUR, 1, 0, 2, 0, 0)]),
                    neighbour_cmd(0),
                    neighbour_cmd(0x83),
                    announce_cmd(),
                    time(2, 40),
                    time(2, 40),
                ],
            ),
        ),
        // Stops while the real server's address (no static neighbour) is still
        // being probed: `release_all` must give the held datagram back (it once
        // kept it).
        (
            "held-at-shutdown",
            script(0, &[burst(WAN, &[t(UDP4, 0, fnat_udp, 0, 0, 4)])]),
        ),
        (
            "two-workers",
            script(
                2,
                &[
                    burst(
                        WAN,
                        &[
                            t(TCP4, 0, nat, 0, SYN, 0),
                            t(TCP4, 0x20, nat, 0, SYN, 0),
                            t(TCP4, 0x40, fnat, 0, SYN, 0),
                            t(TCP4, 0x60, fnat, 0, SYN, 0),
                        ],
                    ),
                    handed(WAN, t(TCP4, 0x20, nat, 0, SYN, 0)),
                    links(8),
                    burst(
                        WAN,
                        &[t(TCP4, 0x80, nat, 0, SYN, 0), t(TCP4, 0xa0, nat, 0, SYN, 0)],
                    ),
                    links(0),
                ],
            ),
        ),
        (
            "commands",
            script(
                0,
                &[
                    sync_cmd(&[[4, 0x41, 0, 0], [0, 0x0b, 1, 0], [1, 3, 2, 0]]),
                    listing_cmd(),
                    from_kernel(WAN, t(UDP4, 0, dst(7, 1), 0, 0, 1)),
                    links(1),
                    burst(WAN, &[t(ECHO4, 0, dst(4, 0), 0, 0, 0)]),
                    links(4),
                    burst(WAN, &[t(TCP4, 0, own_ssh, 0, SYN, 0)]),
                    links(0),
                    burst(WAN, &[t(TCP4, 0, nat, 0, SYN, 0)]),
                ],
            ),
        ),
        (
            "offload-and-pool",
            script(
                1 | 2 << 2,
                &[
                    burst(
                        WAN,
                        &[
                            t(UDP4 | 0x40, 0, nat_udp, 0, 0, 3),
                            t(TCP4 | 0x40, 3, nat, 0, SYN, 0),
                        ],
                    ),
                    burst(
                        LAN,
                        &[t(ICMP_ERROR, 0, 0, 0, 0, 0), t(UDP4, 4, nat_udp, 0, 0, 0)],
                    ),
                    time(3, 3),
                ],
            ),
        ),
        (
            "damaged-and-raw",
            script(
                0,
                &[
                    burst(
                        WAN,
                        &[
                            damaged(TCP4, 0, nat, SYN, 22, 0x01),
                            damaged(UDP4, 0, nat_udp, 0, 14, 0x02),
                            damaged(TCP4, 0, nat, SYN, 20, 0x20),
                            raw(&frames()[13].1),
                            raw(&frames()[14].1),
                            raw(&frames()[15].1),
                        ],
                    ),
                    burst(WAN, &[raw(&[0u8; 10]), raw(&frames()[0].1[..40])]),
                ],
            ),
        ),
        (
            "full-burst",
            script(
                0,
                &[burst(
                    WAN,
                    &(0..32u8)
                        .map(|i| match i % 4 {
                            0 => t(TCP4, i, nat, 0, SYN, 0),
                            1 => t(UDP4, i, fnat_udp, 0, 0, 3),
                            2 => t(TCP4, i, dr, 0, SYN, 0),
                            _ => t(TCP4, i, nat, 0, RST, 0),
                        })
                        .collect::<Vec<_>>(),
                )],
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------
// config: the repository's configurations and a few small ones.

fn config(repo: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, path) in [
        ("demo", "conf/demo.yaml"),
        ("example", "conf/example.yaml"),
        ("ferrovs", "conf/ferrovs.yaml"),
        ("cluster-a", "conf/cluster/ferrovs-a.yaml"),
        ("cluster-b", "conf/cluster/ferrovs-b.yaml"),
        ("sync-a", "conf/cluster/sync-a.yaml"),
        ("sync-b", "conf/cluster/sync-b.yaml"),
    ] {
        match std::fs::read(repo.join(path)) {
            Ok(text) => seeds.push((name, text)),
            Err(e) => eprintln!("skipping {path}: {e}"),
        }
    }
    seeds.push((
        "small",
        b"eal: { cores: [0, 1], hugepages: false }\nports:\n  - { name: wan, device: net_null0, addresses: [\"198.18.0.1/24\", \"2001:2::1/64\"] }\nworkers: { cores: [1] }\nconnections: { max: 100 }\nservices:\n  - { name: web, vip: 198.18.0.100, port: 80, protocol: tcp, mode: fullnat, scheduler: mh, sched_flags: [mh-port], local_addresses: [198.18.0.2], real_servers: [{ address: 198.18.0.10, port: 8080, weight: 2 }] }\n  - { name: dns6, vip: \"2001:2::100\", port: 53, protocol: udp, mode: dr, real_servers: [{ address: \"2001:2::10\" }], health_check: { type: tcp, interval: 2s, timeout: 1s } }\n".to_vec(),
    ));
    seeds.push((
        "errors",
        b"eal: { cores: [0, 1] }\nports:\n  - { name: WAN!, device: nope, addresses: [\"300.1.1.1/40\"], mtu: 10 }\nworkers: { cores: [7] }\nservices:\n  - { name: a, vip: 1.2.3.4, port: 0, protocol: sctp, mode: nat }\n  - { name: a, vip: 1.2.3.4, port: 80, protocol: tcp, mode: fullnat, scheduler: xx }\nunknown: 1\n".to_vec(),
    ));
    seeds.push(("nested", b"a: [[[[{b: [[1]]}]]]]\n".to_vec()));
    seeds
}

// ---------------------------------------------------------------------------
// control_protocol: 0 then a request line, or 1 then a response line.

fn control_protocol() -> Vec<(&'static str, Vec<u8>)> {
    let requests: [(&str, &str); 15] = [
        ("list", r#"{"cmd":"list"}"#),
        (
            "conns",
            r#"{"cmd":"conns","service":"web","real_server":"198.19.0.10:80","state":"ESTABLISHED","limit":10}"#,
        ),
        (
            "add-service",
            r#"{"cmd":"add_service","service":{"name":"api","vip":"198.18.0.101","port":443,"protocol":"tcp","mode":"dr","scheduler":"wlc","real_servers":[{"address":"198.18.0.20","weight":2}]}}"#,
        ),
        (
            "edit-service",
            r#"{"cmd":"edit_service","service":{"name":"web","vip":"198.18.0.100","port":80,"protocol":"tcp","mode":"nat","persistence":"30s","real_servers":[{"address":"198.19.0.10"}]}}"#,
        ),
        (
            "remove-service",
            r#"{"cmd":"remove_service","name":"dns6"}"#,
        ),
        (
            "add-real-server",
            r#"{"cmd":"add_real_server","service":"web","real_server":{"address":"198.19.0.12","port":8081}}"#,
        ),
        (
            "set-weight",
            r#"{"cmd":"set_weight","service":"web","real_server":"198.19.0.11:8080","weight":7}"#,
        ),
        (
            "drain",
            r#"{"cmd":"drain","service":"dns6","real_server":"[2001:2:0:19::10]:53"}"#,
        ),
        (
            "remove-real-server",
            r#"{"cmd":"remove_real_server","service":"web","real_server":"198.19.0.10:80"}"#,
        ),
        ("reload", r#"{"cmd":"reload"}"#),
        ("withdraw", r#"{"cmd":"withdraw","vip":"198.18.0.100"}"#),
        ("announce", r#"{"cmd":"announce","vip":"2001:2::100"}"#),
        ("sync", r#"{"cmd":"sync"}"#),
        ("save", r#"{"cmd":"save"}"#),
        (
            "envelope",
            r#"{"timeout_ms":2500,"request":{"cmd":"set_weight","service":"web","real_server":"198.19.0.10:80","weight":0}}"#,
        ),
    ];
    let stats =
        r#"{"conns":5,"in_packets":100,"out_packets":90,"in_bytes":12000,"out_bytes":90000}"#;
    let rates = r#"{"cps":1.5,"in_pps":10.25,"out_pps":9.0,"in_bps":1200.0,"out_bps":9000.5}"#;
    let services = format!(
        r#"{{"status":"services","services":[{{"name":"web","protocol":"tcp","address":"198.18.0.100:80","scheduler":"wrr","mode":"nat","persistence_s":30,"announced":true,"stats":{stats},"rates":{rates},"real_servers":[{{"address":"198.19.0.10:80","weight":1,"up":true,"active_conns":2,"inactive_conns":1,"stats":{stats},"rates":{rates}}}]}}]}}"#
    );
    let responses: [(&str, String); 5] = [
        ("services", services),
        ("conns-response", r#"{"status":"conns","conns":[{"protocol":"TCP","client":"198.18.0.10:40000","virtual_address":"198.18.0.100:80","local":"198.18.0.10:40000","real_server":"198.19.0.10:80","state":"ESTABLISHED","expires_ms":899000,"worker":0}],"truncated":false}"#.to_string()),
        ("sync-response", r#"{"status":"sync","sync":{"listen":"198.19.0.1:8850","ready":true,"peers":[{"address":"198.19.0.2:8850","up":true,"ready":false,"last_heard_ms":250,"datagrams":12}],"datagrams_sent":20,"datagrams_received":12,"records_sent":40,"records_received":30,"installed":29,"refused":1,"lost":0,"dropped":[["bad_tag",2]],"shared":[["198.18.0.100",true]]}}"#.to_string()),
        ("done", r#"{"status":"done","message":"web: weight of 198.19.0.10:80 1 -> 0"}"#.to_string()),
        ("error", r#"{"status":"error","errors":["services[0].port: 0 is not a port","no service named `x`"]}"#.to_string()),
    ];
    let mut seeds: Vec<(&str, Vec<u8>)> = requests
        .iter()
        .map(|(name, line)| (*name, [&[0u8][..], line.as_bytes()].concat()))
        .collect();
    seeds.extend(
        responses
            .iter()
            .map(|(name, line)| (*name, [&[1u8][..], line.as_bytes()].concat())),
    );
    seeds
}

// ---------------------------------------------------------------------------
// sync_datagram: a mode byte, then that mode's input.

fn record(v6: bool, port: u16) -> SyncConn {
    use ferrovs_core::conn::{ConnState, Mode, Proto, TcpState};
    if v6 {
        SyncConn {
            proto: Proto::Udp,
            mode: Mode::FullNat,
            state: ConnState::Udp,
            timeout_ms: 4_000,
            client: (ip("2001:2::10"), port),
            vip: (ip("2001:2::101"), 53),
            local: (ip("2001:2:0:19::2"), 1030),
            real: (ip("2001:2:0:19::10"), 53),
        }
    } else {
        SyncConn {
            proto: Proto::Tcp,
            mode: Mode::Nat,
            state: ConnState::Tcp(TcpState::Established),
            timeout_ms: 899_500,
            client: (ip("198.18.0.10"), port),
            vip: (ip("198.18.0.100"), 80),
            local: (ip("198.18.0.10"), port),
            real: (ip("198.19.0.10"), 8080),
        }
    }
}

fn sync_datagram() -> Vec<(&'static str, Vec<u8>)> {
    let header = Header {
        kind: Kind::Connections,
        flags: message::FLAG_READY,
        epoch: 1_700_000_000_000_000_000,
        seq: 42,
    };
    let records = [
        record(false, 40000),
        record(true, 5353),
        record(false, 40001),
    ];
    let mut datagram = Vec::new();
    message::seal(SYNC_KEY, &header, &records, &mut datagram);
    let mut heartbeat = Vec::new();
    message::seal(
        SYNC_KEY,
        &Header {
            kind: Kind::Heartbeat,
            flags: message::FLAG_NEED_BULK,
            seq: 1,
            ..header
        },
        &[],
        &mut heartbeat,
    );
    let body = datagram[..datagram.len() - message::TAG_LEN].to_vec();
    let mut encoded = Vec::new();
    for r in &records {
        let mut b = [0u8; RECORD_LEN];
        r.encode(&mut b);
        encoded.extend(b);
    }
    let mut round_trip = vec![1u8];
    round_trip.extend(message::FLAG_READY.to_be_bytes());
    round_trip.extend(7u64.to_be_bytes());
    round_trip.extend(9u64.to_be_bytes());
    round_trip.push(33);
    round_trip.extend(&encoded);
    // Replay: (control, sequence) pairs: same epoch, a newer one, an older one.
    let replay = vec![
        1, 1, 0, 2, 0, 1, 0, 70, 0, 3, 0, 2, 1, 1, 2, 5, 3, 0, 0, 0, 0, 0, 0, 0, 9, 1,
    ];
    vec![
        ("raw-sealed", [&[0u8][..], &datagram].concat()),
        ("raw-heartbeat", [&[0u8][..], &heartbeat].concat()),
        ("signed-body", [&[1u8][..], &body].concat()),
        ("round-trip", [&[2u8][..], &round_trip].concat()),
        ("records", [&[3u8][..], &encoded].concat()),
        ("replay", [&[4u8][..], &replay].concat()),
    ]
}

// ---------------------------------------------------------------------------
// proxy_protocol: a mode byte (even: header, bit 1 version 2, bits 2-3 IPv6
// client, IPv6 VIP; odd: translation, bit 1 outbound, bit 2 IPv6), then the
// endpoints, or 17 bytes of `SeqAdj` and a TCP segment.

fn endpoint_bytes(s: &str) -> Vec<u8> {
    let a = sa(s);
    let mut out = match a.ip() {
        IpAddr::V4(x) => x.octets().to_vec(),
        IpAddr::V6(x) => x.octets().to_vec(),
    };
    out.extend(a.port().to_be_bytes());
    out
}

/// A TCP segment (header and payload) with options, as `seq::adjust` sees it.
fn tcp_segment(flags: TcpFlags, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let header_len = 20 + options.len();
    let mut seg = Vec::new();
    seg.extend(40000u16.to_be_bytes());
    seg.extend(8080u16.to_be_bytes());
    seg.extend(1_000_000u32.to_be_bytes());
    seg.extend(2_000_000u32.to_be_bytes());
    seg.push(((header_len / 4) as u8) << 4);
    seg.push(flags.bits());
    seg.extend(512u16.to_be_bytes());
    seg.extend([0, 0, 0, 0]);
    seg.extend(options);
    seg.extend(payload);
    seg
}

fn proxy_protocol() -> Vec<(&'static str, Vec<u8>)> {
    let v4 = [
        endpoint_bytes("198.18.0.10:40000"),
        endpoint_bytes("198.18.0.100:80"),
    ]
    .concat();
    let v6 = [
        endpoint_bytes("[2001:2::10]:40000"),
        endpoint_bytes("[2001:2::100]:443"),
    ]
    .concat();
    // out_delta, ts_delta, first_seq (the segment's), in_delta (a v1 header's
    // length), wscale (server 7, client 2), flags (PROXY, TIMESTAMPS), MSS index,
    // then bit 0: fill the checksum.
    let mut adj = Vec::new();
    adj.extend(0x1000u32.to_be_bytes());
    adj.extend(77u32.to_be_bytes());
    adj.extend(1_000_000u32.to_be_bytes());
    adj.extend([46, 0x72, 1 | 8, 0, 1]);
    // NOP, NOP, timestamps; NOP, NOP, SACK with two edges.
    let ts = [1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6];
    let sack = [
        1, 1, 5, 18, 0, 15, 66, 64, 0, 15, 66, 100, 0, 15, 67, 0, 0, 15, 68, 0,
    ];
    let data = tcp_segment(
        TcpFlags::ACK | TcpFlags::PSH,
        &ts,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    let acks = tcp_segment(TcpFlags::ACK, &[ts.as_slice(), &sack].concat(), b"");
    // Odd offsets: one NOP ahead of the timestamps.
    let odd = tcp_segment(TcpFlags::ACK, &[1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6, 0], b"x");
    vec![
        ("v1-tcp4", [&[0u8][..], &v4].concat()),
        ("v2-tcp4", [&[2u8][..], &v4].concat()),
        ("v1-tcp6", [&[12u8][..], &v6].concat()),
        ("v2-tcp6", [&[14u8][..], &v6].concat()),
        ("mixed", [&[4u8][..], &v6[..18], &v4[6..]].concat()),
        ("in-data", [&[1u8][..], &adj, &data].concat()),
        ("out-acks", [&[3u8][..], &adj, &acks].concat()),
        ("in-acks6", [&[5u8][..], &adj, &acks].concat()),
        ("out-odd-options", [&[3u8][..], &adj, &odd].concat()),
    ]
}

// ---------------------------------------------------------------------------
// syn_cookie: a family byte, two keys, client and VIP endpoints, ISN, minute,
// offered MSS, age, timestamp clock, window scale (bit 7: none), SACK/ECN bits,
// then a TSecr and a cookie to check.

fn syn_cookie() -> Vec<(&'static str, Vec<u8>)> {
    let keys: Vec<u8> = (1..=32).collect();
    let one = |family: u8, client: &str, vip: &str, mss: u16, age: u8, ws: u8, bits: u8| {
        let mut b = vec![family];
        b.extend(&keys);
        b.extend(endpoint_bytes(client));
        b.extend(endpoint_bytes(vip));
        b.extend(0x1234_5678u32.to_be_bytes());
        b.extend(29_000_000u32.to_be_bytes());
        b.extend(mss.to_be_bytes());
        b.extend([age, ws, bits]);
        b.extend(0x0abc_def0u32.to_be_bytes());
        b.extend(0x0abc_de47u32.to_be_bytes());
        b.extend(0xdead_beefu32.to_be_bytes());
        b
    };
    vec![
        (
            "v4-linux",
            one(0, "198.18.0.10:40000", "198.18.0.100:80", 1460, 0, 7, 1),
        ),
        (
            "v4-no-options",
            one(0, "198.18.0.10:40001", "198.18.0.100:80", 0, 1, 0x80, 0),
        ),
        (
            "v4-expired",
            one(0, "198.18.0.10:40002", "198.18.0.100:80", 1300, 2, 14, 3),
        ),
        (
            "v6-linux",
            one(3, "[2001:2::10]:40000", "[2001:2::100]:443", 1440, 1, 10, 1),
        ),
        (
            "mixed",
            one(2, "198.18.0.10:40003", "[2001:2::100]:443", 536, 255, 15, 2),
        ),
    ]
}
