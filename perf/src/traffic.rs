//! The benchmark traffic: which 5-tuples, in which order, as 64-byte frames.
//!
//! Everything is a pure function of the flow (or connection) index, so a pcap file,
//! the ferrovs configuration that receives it and the micro-benchmarks agree on the
//! addresses without sharing state, and two runs produce identical files.
//!
//! Frames are 60 bytes, the Ethernet minimum without the FCS the NIC appends: 64 bytes
//! on the wire, the size packet rates are quoted at.

use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use ferrovs_core::packet::craft::{self, L2};
use ferrovs_core::packet::{MacAddr, TcpFlags};

use crate::pcap::{PcapError, PcapWriter};

/// The MAC address `net_pcap` gives the first pcap port of a process:
/// `02:70:63:61:70:<index>` ("pcap", locally administered; DPDK 22.11
/// `pcap_ethdev.c`). Frames must be addressed to it or ferrovs drops them as
/// `foreign_mac`.
pub const NET_PCAP_FIRST_MAC: MacAddr = MacAddr([0x02, 0x70, 0x63, 0x61, 0x70, 0x00]);

/// Client addresses are `CLIENT_BASE + (index % CLIENT_ADDRS)`.
pub const CLIENT_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 128, 0);
/// How many client addresses the flows spread over (198.18.128.0 - 198.18.143.255).
pub const CLIENT_ADDRS: u32 = 4096;
/// Client ports are `FIRST_CLIENT_PORT + index / CLIENT_ADDRS`.
pub const FIRST_CLIENT_PORT: u16 = 1024;
/// The most flows or connections one file may name (16 Mi): far beyond any mempool
/// that could hold the file, and small enough for the order permutation below.
pub const MAX_FLOWS: u32 = 1 << 24;
/// UDP payload that makes a 60-byte frame: 14 + 20 + 8 + 18.
pub const UDP_PAYLOAD_LEN: usize = 18;
/// The length of every generated frame.
pub const FRAME_LEN: usize = 60;

/// Packet `p` carries flow `(p * ORDER_STRIDE) % n`: a prime above [`MAX_FLOWS`], so
/// coprime with every `n` allowed and the map is a permutation. Consecutive packets
/// then belong to unrelated flows (different client address and port), as on a
/// real link, rather than walking the address space in order.
const ORDER_STRIDE: u64 = 2_654_435_761;

/// Where the generated traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    /// Source MAC: the client-side router.
    pub src_mac: MacAddr,
    /// Destination MAC: the receiving port.
    pub dst_mac: MacAddr,
    /// The virtual IP the clients address.
    pub vip: Ipv4Addr,
    /// The service port of the UDP flows.
    pub udp_port: u16,
    /// The service port of the TCP connections.
    pub tcp_port: u16,
}

impl Default for Addressing {
    /// The addressing of `perf/`'s standard setup (see `scenario`).
    fn default() -> Self {
        Addressing {
            src_mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0xfe]),
            dst_mac: NET_PCAP_FIRST_MAC,
            vip: Ipv4Addr::new(198, 18, 0, 100),
            udp_port: 9000,
            tcp_port: 80,
        }
    }
}

/// A kind of traffic and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// `flows` UDP flows client -> VIP, one packet per flow, cycled: replaying the
    /// file keeps exactly `flows` flows alive.
    UdpFlows {
        /// Distinct flows, and packets in the file.
        flows: u32,
    },
    /// `count` TCP SYNs, each from a different client address and port.
    TcpSyns {
        /// SYNs, and packets in the file.
        count: u32,
    },
}

impl Traffic {
    /// Packets in one pass over the file.
    pub const fn packets(self) -> u32 {
        match self {
            Traffic::UdpFlows { flows } => flows,
            Traffic::TcpSyns { count } => count,
        }
    }
}

/// Why traffic could not be generated.
#[derive(Debug)]
pub enum GenError {
    /// Zero flows or connections.
    Empty,
    /// More than [`MAX_FLOWS`].
    TooMany(u32),
    /// Writing the file failed.
    Pcap(PcapError),
}

impl GenError {
    /// The error as a snake_case label.
    pub const fn reason(&self) -> &'static str {
        match self {
            GenError::Empty => "empty",
            GenError::TooMany(_) => "too_many",
            GenError::Pcap(e) => e.reason(),
        }
    }
}

impl fmt::Display for GenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenError::Empty => f.write_str("at least one flow is needed"),
            GenError::TooMany(n) => write!(f, "{n} flows exceed the limit of {MAX_FLOWS}"),
            GenError::Pcap(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for GenError {}

impl From<PcapError> for GenError {
    fn from(e: PcapError) -> Self {
        GenError::Pcap(e)
    }
}

/// The client end of flow or connection `index` (below [`MAX_FLOWS`]).
pub fn client(index: u32) -> SocketAddrV4 {
    let addr = u32::from(CLIENT_BASE) + index % CLIENT_ADDRS;
    // index < 2^24 keeps the port below 1024 + 4096 = 5120.
    let port = FIRST_CLIENT_PORT + (index / CLIENT_ADDRS) as u16;
    SocketAddrV4::new(Ipv4Addr::from(addr), port)
}

/// The flow carried by packet `position` of a file of `n` flows (`0 < n <= MAX_FLOWS`).
pub fn flow_at(position: u32, n: u32) -> u32 {
    ((u64::from(position) * ORDER_STRIDE) % u64::from(n)) as u32
}

/// The UDP datagram of flow `index`; the payload carries the index.
pub fn udp_frame(addr: &Addressing, index: u32) -> Vec<u8> {
    let mut payload = [0u8; UDP_PAYLOAD_LEN];
    payload[..4].copy_from_slice(&index.to_be_bytes());
    craft::udp(
        l2(addr),
        SocketAddr::V4(client(index)),
        SocketAddr::V4(SocketAddrV4::new(addr.vip, addr.udp_port)),
        &payload,
    )
}

/// The SYN opening connection `index`, with an initial sequence number derived from
/// the index.
pub fn syn_frame(addr: &Addressing, index: u32) -> Vec<u8> {
    let isn = index.wrapping_mul(0x9e37_79b9) ^ 0x5eed_0000;
    craft::tcp(
        l2(addr),
        SocketAddr::V4(client(index)),
        SocketAddr::V4(SocketAddrV4::new(addr.vip, addr.tcp_port)),
        TcpFlags::SYN,
        isn,
        0,
        &[],
    )
}

fn l2(addr: &Addressing) -> L2 {
    L2 {
        src: addr.src_mac,
        dst: addr.dst_mac,
    }
}

/// Writes one pass of `traffic` as a pcap stream; returns the number of frames.
/// Timestamps are 1 µs apart from 0, so the file is byte-for-byte reproducible.
pub fn write_pcap<W: Write>(out: W, traffic: Traffic, addr: &Addressing) -> Result<u64, GenError> {
    let n = traffic.packets();
    if n == 0 {
        return Err(GenError::Empty);
    }
    if n > MAX_FLOWS {
        return Err(GenError::TooMany(n));
    }
    let mut pcap = PcapWriter::new(out)?;
    for position in 0..n {
        let frame = match traffic {
            Traffic::UdpFlows { flows } => udp_frame(addr, flow_at(position, flows)),
            // Every SYN is a new connection anyway; file order is index order.
            Traffic::TcpSyns { .. } => syn_frame(addr, position),
        };
        pcap.write_frame(u64::from(position), &frame)?;
    }
    let records = pcap.records();
    pcap.finish()?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::PcapReader;
    use ferrovs_core::packet::parse::{L3Info, L4Header};
    use ferrovs_core::packet::{parse_frame, IpPair, IpProtocol};
    use std::collections::HashSet;
    use std::net::IpAddr;

    fn frames(traffic: Traffic) -> Vec<Vec<u8>> {
        let bytes = {
            let mut v = Vec::new();
            write_pcap(&mut v, traffic, &Addressing::default()).unwrap();
            v
        };
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec.data);
        }
        out
    }

    /// (client, client port, destination, destination port, protocol, tcp flags)
    fn tuple(frame: &[u8]) -> (IpAddr, u16, IpAddr, u16, IpProtocol, u8) {
        let info = parse_frame(frame, false).expect("generated frames parse");
        let L3Info::Ip(ip) = info.l3 else {
            panic!("not IP")
        };
        let l4 = ip.l4.expect("has L4");
        let (sport, dport, flags) = match l4.header {
            L4Header::Udp { src_port, dst_port } => (src_port, dst_port, 0),
            L4Header::Tcp {
                src_port,
                dst_port,
                flags,
            } => (src_port, dst_port, flags.bits()),
            other => panic!("unexpected {other:?}"),
        };
        (
            ip.addrs.src(),
            sport,
            ip.addrs.dst(),
            dport,
            ip.protocol,
            flags,
        )
    }

    #[test]
    fn clients_are_distinct_for_every_index() {
        let indices: std::collections::BTreeSet<u32> = (0..MAX_FLOWS)
            .step_by(997)
            .chain(MAX_FLOWS - 5000..MAX_FLOWS)
            .collect();
        let mut seen = HashSet::new();
        for &i in &indices {
            assert!(seen.insert(client(i)), "index {i}");
        }
        assert_eq!(client(0), SocketAddrV4::new(CLIENT_BASE, FIRST_CLIENT_PORT));
        assert_eq!(client(MAX_FLOWS - 1).port(), 1024 + 4095);
        assert_eq!(
            *client(CLIENT_ADDRS - 1).ip(),
            Ipv4Addr::new(198, 18, 143, 255)
        );
    }

    #[test]
    fn order_is_a_permutation() {
        for n in [1u32, 2, 3, 1000, 1024, 4097, 65536] {
            let mut seen = vec![false; n as usize];
            for p in 0..n {
                let f = flow_at(p, n) as usize;
                assert!(!seen[f], "n={n} flow {f} twice");
                seen[f] = true;
            }
        }
        // Neighbours in the file are far apart in the flow space.
        assert_ne!(flow_at(1, 65536), 1);
    }

    #[test]
    fn udp_file_names_every_flow_once_with_valid_64_byte_frames() {
        let n = 3000;
        let all = frames(Traffic::UdpFlows { flows: n });
        assert_eq!(all.len(), n as usize);
        let addr = Addressing::default();
        let mut flows = HashSet::new();
        for f in &all {
            assert_eq!(f.len(), FRAME_LEN);
            assert_eq!(&f[0..6], &addr.dst_mac.octets());
            let (src, sport, dst, dport, proto, _) = tuple(f);
            assert_eq!(proto, IpProtocol::UDP);
            assert_eq!(dst, IpAddr::V4(addr.vip));
            assert_eq!(dport, addr.udp_port);
            let pair = IpPair::V4 {
                src: match src {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(_) => unreachable!(),
                },
                dst: addr.vip,
            };
            assert!(craft::l4_checksum_ok(&pair, IpProtocol::UDP, &f[34..60]));
            assert!(flows.insert((src, sport)));
        }
        let expected: HashSet<_> = (0..n)
            .map(client)
            .map(|c| (IpAddr::V4(*c.ip()), c.port()))
            .collect();
        assert_eq!(flows, expected);
    }

    #[test]
    fn syn_file_opens_a_fresh_connection_per_packet() {
        let all = frames(Traffic::TcpSyns { count: 5000 });
        let mut tuples = HashSet::new();
        for f in &all {
            assert_eq!(f.len(), FRAME_LEN);
            let (src, sport, dst, dport, proto, flags) = tuple(f);
            assert_eq!(proto, IpProtocol::TCP);
            assert_eq!(flags, TcpFlags::SYN.bits());
            assert_eq!(dport, 80);
            assert!(tuples.insert((src, sport, dst, dport)));
            let IpAddr::V4(src) = src else { unreachable!() };
            let pair = IpPair::V4 {
                src,
                dst: Addressing::default().vip,
            };
            // 20-byte TCP header; the frame's last 6 bytes are Ethernet padding.
            assert!(craft::l4_checksum_ok(&pair, IpProtocol::TCP, &f[34..54]));
        }
        assert_eq!(tuples.len(), 5000);
    }

    #[test]
    fn output_is_deterministic() {
        let a = frames(Traffic::UdpFlows { flows: 777 });
        let b = frames(Traffic::UdpFlows { flows: 777 });
        assert_eq!(a, b);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let addr = Addressing::default();
        let err = write_pcap(Vec::new(), Traffic::UdpFlows { flows: 0 }, &addr).unwrap_err();
        assert_eq!(err.reason(), "empty");
        let err = write_pcap(
            Vec::new(),
            Traffic::TcpSyns {
                count: MAX_FLOWS + 1,
            },
            &addr,
        )
        .unwrap_err();
        assert!(matches!(err, GenError::TooMany(n) if n == MAX_FLOWS + 1));
    }
}
