//! Per-worker counters and the reasons a packet is dropped.
//!
//! Each worker owns one [`WorkerStats`] and is its only writer; the management core
//! reads and sums them when Prometheus scrapes. Writers use a relaxed load and store
//! (a plain `mov` on x86), never a locked read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with exactly one writing thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds one. Only the owning worker may call this.
    #[inline(always)]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Sets the value (gauges). Only the owning worker may call this.
    #[inline(always)]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// Reads the value from any thread.
    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident => $label:literal ),+ $(,)?) => {
        /// Why a packet was dropped: the `reason` label of
        /// `ferrovs_worker_dropped_packets_total`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[$doc])* $variant ),+
        }

        impl DropReason {
            /// Every reason, in label order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),+];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// The metrics label.
            pub const fn label(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $label),+
                }
            }
        }
    };
}

drop_reasons! {
    // Malformed frames, one per `packet::ParseError` with the same label.
    /// Shorter than an Ethernet header.
    Runt => "runt",
    /// A VLAN tag on a port configured without VLANs.
    VlanNotConfigured => "vlan_not_configured",
    /// A VLAN TPID without the tag after it.
    TruncatedVlan => "truncated_vlan",
    /// A second VLAN tag.
    NestedVlan => "nested_vlan",
    /// An EtherType other than IPv4, IPv6 and ARP.
    UnknownEthertype => "unknown_ethertype",
    /// An ARP payload shorter than 28 bytes.
    TruncatedArp => "truncated_arp",
    /// ARP for other than Ethernet/IPv4.
    UnsupportedArp => "unsupported_arp",
    /// An IPv4 header cut short.
    TruncatedIpv4 => "truncated_ipv4",
    /// An IPv6 header cut short.
    TruncatedIpv6 => "truncated_ipv6",
    /// IP version nibble disagrees with the EtherType.
    IpVersionMismatch => "ip_version_mismatch",
    /// IPv4 header length below 20 bytes.
    BadIhl => "bad_ihl",
    /// IP length below the header or beyond the frame.
    BadTotalLength => "bad_total_length",
    /// IPv4 header checksum does not verify.
    BadIpv4Checksum => "bad_ipv4_checksum",
    /// An IPv4 option of length 0 or 1, or running past the header.
    BadIpv4Options => "bad_ipv4_options",
    /// An IPv4 loose or strict source route option (never honoured).
    Ipv4SourceRoute => "ipv4_source_route",
    /// Truncated, repeated or misplaced IPv6 extension header.
    BadIpv6ExtensionHeader => "bad_ipv6_extension_header",
    /// IPv6 extension header chain too long.
    TooManyIpv6ExtensionHeaders => "too_many_ipv6_extension_headers",
    /// An IPv6 routing header of type 0 (deprecated, RFC 5095).
    Ipv6RoutingHeaderType0 => "ipv6_routing_header_type0",
    /// TCP/UDP/ICMP header cut short.
    TruncatedL4 => "truncated_l4",
    /// TCP data offset below 5 or beyond the segment.
    BadTcpOffset => "bad_tcp_offset",
    /// UDP length below 8 or beyond the IP payload.
    BadUdpLength => "bad_udp_length",

    // Layer 2 and 3.
    /// A chained (multi-segment) mbuf; RX scatter is never enabled.
    MultiSegment => "multi_segment",
    /// Unicast to a MAC address that is not the port's.
    ForeignMac => "foreign_mac",
    /// Unicast IP in a broadcast or multicast Ethernet frame.
    L2BroadcastUnicastIp => "l2_broadcast_unicast_ip",
    /// A source no packet may come from: IPv4 0/8, 127/8, multicast, class E, the
    /// limited broadcast or a port subnet's broadcast; IPv6 unspecified (but in
    /// duplicate address detection), loopback, multicast, IPv4-mapped.
    MartianSource => "martian_source",
    /// A source address ferrovs owns (a port address, a VIP, a local address): a
    /// spoof, or a land attack (source = destination).
    OwnSource => "own_source",
    /// The receiving port's reverse-path filter: with `strict` the route back to
    /// the source leaves by another port, with `loose` there is none.
    RpFilter => "rp_filter",
    /// An IPv6 routing header with segments left, not for a port's kernel
    /// interface: ferrovs is not the packet's final destination.
    Ipv6SourceRoute => "ipv6_source_route",
    /// An ARP request for an address ferrovs does not own (ignored).
    ArpNotForUs => "arp_not_for_us",
    /// A neighbour solicitation for an address ferrovs does not own (ignored).
    NdNotForUs => "nd_not_for_us",
    /// IP to an address that is neither ours nor a known flow.
    NotForUs => "not_for_us",
    /// To one of our addresses, a protocol or message ferrovs does not serve.
    LocalUnsupported => "local_unsupported",
    /// An ICMP/ICMPv6 message to us, or an ICMP error about a connection, whose
    /// checksum does not verify.
    BadIcmpChecksum => "bad_icmp_checksum",
    /// A neighbour solicitation/advertisement failing RFC 4861 checks.
    BadNeighborDiscovery => "bad_neighbor_discovery",
    /// An IP fragment to one of our addresses that is not TCP or UDP to a
    /// service (a fragmented ping, say), without a kernel interface to take it.
    Fragment => "fragment",
    /// A TCP/UDP fragment that cannot be part of a valid datagram: it ends beyond
    /// 65535 bytes, a fragment with more to follow whose data is empty or not a
    /// multiple of 8 bytes, or a later fragment overlapping the TCP/UDP header
    /// (RFC 1858: it could rewrite the ports the first fragment was checked by).
    FragmentMalformed => "fragment_malformed",
    /// No room in the worker's fragment table for another datagram.
    FragmentTableFull => "fragment_table_full",
    /// A fragment that arrived before its first fragment, beyond what is held (per
    /// datagram and per worker).
    FragmentHoldFull => "fragment_hold_full",
    /// Fragments held for a first fragment that did not come within the
    /// fragment timeout.
    FragmentTimeout => "fragment_timeout",
    /// A later fragment of a datagram whose first fragment was not forwarded
    /// (dropped under its own reason, or too long ago).
    FragmentUnmatched => "fragment_unmatched",
    /// A fragment of a connection that rewrites more than addresses and ports
    /// (NAT64, SYN proxy, Proxy Protocol) or of an `ops` service.
    FragmentUnsupported => "fragment_unsupported",
    /// No route to the destination.
    NoRoute => "no_route",
    /// TTL or hop limit would reach zero.
    TtlExceeded => "ttl_exceeded",
    /// Too many neighbours being resolved at once.
    NeighborBusy => "neighbor_busy",
    /// The queue of packets waiting for ARP/ND is full.
    NeighborQueueFull => "neighbor_queue_full",
    /// ARP/ND got no answer; the packets waiting for it are dropped.
    NeighborUnresolved => "neighbor_unresolved",
    /// No own address on the egress port to send ARP/ND from.
    NoSourceAddress => "no_source_address",
    /// The mempool was empty when ferrovs had to build a packet.
    NoMbuf => "no_mbuf",
    /// The NIC's TX queue did not take the packet.
    TxFull => "tx_full",
    /// No headroom for the 802.1Q tag of a frame leaving by a VLAN.
    VlanNoHeadroom => "vlan_no_headroom",
    /// The ring to the worker that owns the packet's connection was full.
    HandoffFull => "handoff_full",
    /// The kernel interface (exception path) did not take the packet.
    KernelFull => "kernel_full",

    // Load balancing.
    /// TCP/UDP to a VIP on a port/protocol without a service.
    NoService => "no_service",
    /// A TCP segment other than a SYN for a connection that does not exist.
    TcpNoConnection => "tcp_no_connection",
    /// TCP flags that make no sense (SYN+FIN, SYN+RST, none).
    BadTcpFlags => "bad_tcp_flags",
    /// Traffic that is not to a VIP and matches no connection (e.g. a stray reply).
    NoConnection => "no_connection",
    /// No real server can take a new connection (all drained, down or none).
    NoRealServer => "no_real_server",
    /// The connection table is full; live connections are kept.
    ConnTableFull => "conn_table_full",
    /// The new connection's return key is taken by another connection.
    ConnConflict => "conn_conflict",
    /// FULLNAT: no free local port on the service's local addresses (this worker).
    LocalPortExhausted => "local_port_exhausted",
    /// A forwarded packet larger than the egress port's MTU (in TUNNEL, with the
    /// outer header): with DF set, and always for IPv6, the sender gets
    /// "fragmentation needed" / "packet too big"; ferrovs never fragments.
    MtuExceeded => "mtu_exceeded",
    /// An ICMP error quoting a packet of a connection but not addressed to that
    /// packet's source.
    IcmpErrorBadDestination => "icmp_error_bad_destination",

    // Edge defence.
    /// A new connection from a source the service's `allow`/`deny` lists refuse.
    AclDenied => "acl_denied",
    /// A new connection from a source over the service's
    /// `new_connections_per_source` rate.
    SourceRateLimited => "source_rate_limited",
    /// No real server can take a new connection because every one that could is at
    /// its `max_connections`.
    RealServerOverloaded => "real_server_overloaded",
    /// An ACK to a SYN-proxied service that matches no connection and carries no
    /// valid SYN cookie (forged, too old, or for a SYN ferrovs never answered).
    SynCookieInvalid => "syn_cookie_invalid",
    /// A client's data sent before its real server answered the SYN proxy,
    /// beyond what is held (per connection and per worker), or held for a
    /// connection that went away meanwhile; the client sends it again.
    SynProxyHoldFull => "syn_proxy_hold_full",
    /// A client's segment without data while its real server has not answered
    /// the SYN proxy yet (the server knows nothing to acknowledge).
    SynProxyPending => "syn_proxy_pending",
}

impl From<crate::packet::ParseError> for DropReason {
    fn from(e: crate::packet::ParseError) -> Self {
        use crate::packet::ParseError as P;
        match e {
            P::Runt => DropReason::Runt,
            P::VlanNotConfigured => DropReason::VlanNotConfigured,
            P::TruncatedVlan => DropReason::TruncatedVlan,
            P::NestedVlan => DropReason::NestedVlan,
            P::UnknownEthertype => DropReason::UnknownEthertype,
            P::TruncatedArp => DropReason::TruncatedArp,
            P::UnsupportedArp => DropReason::UnsupportedArp,
            P::TruncatedIpv4 => DropReason::TruncatedIpv4,
            P::TruncatedIpv6 => DropReason::TruncatedIpv6,
            P::IpVersionMismatch => DropReason::IpVersionMismatch,
            P::BadIhl => DropReason::BadIhl,
            P::BadTotalLength => DropReason::BadTotalLength,
            P::BadIpv4Checksum => DropReason::BadIpv4Checksum,
            P::BadIpv4Options => DropReason::BadIpv4Options,
            P::Ipv4SourceRoute => DropReason::Ipv4SourceRoute,
            P::BadIpv6ExtensionHeader => DropReason::BadIpv6ExtensionHeader,
            P::TooManyIpv6ExtensionHeaders => DropReason::TooManyIpv6ExtensionHeaders,
            P::Ipv6RoutingHeaderType0 => DropReason::Ipv6RoutingHeaderType0,
            P::TruncatedL4 => DropReason::TruncatedL4,
            P::BadTcpOffset => DropReason::BadTcpOffset,
            P::BadUdpLength => DropReason::BadUdpLength,
        }
    }
}

/// Counters of one real server on one worker.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct RealServerStats {
    /// Connections scheduled to the server.
    pub conns: Counter,
    /// Client-to-server packets and bytes.
    pub in_packets: Counter,
    /// Bytes of those packets, from the IP header on.
    pub in_bytes: Counter,
    /// Server-to-client packets and bytes (NAT and FULLNAT only).
    pub out_packets: Counter,
    /// Bytes of those packets, from the IP header on.
    pub out_bytes: Counter,
    /// Gauges: this worker's active (IPVS sense) and other connections.
    pub active: Counter,
    /// Gauge: this worker's connections to the server that are not active.
    pub inactive: Counter,
    /// TCP handshakes that completed (passive health: the server answers).
    pub handshakes: Counter,
    /// TCP connections the server refused (reset in SYN_RECV) or left unanswered
    /// until the SYN timeout (passive health: it does not).
    pub syn_failures: Counter,
}

/// Counters of one worker, on their own cache lines.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerStats {
    /// Packets received from the NIC queues (not those other workers handed over).
    pub rx_packets: Counter,
    /// Packets the NICs accepted for transmission; refused ones count as drops.
    pub tx_packets: Counter,
    /// TSC cycles of loop iterations that found packets.
    pub busy_cycles: Counter,
    /// TSC cycles of all loop iterations.
    pub total_cycles: Counter,
    /// Packets handed to another worker (steering).
    pub handoff_packets: Counter,
    /// Packets passed to the kernel through the exception path.
    pub kernel_packets: Counter,
    /// Gauge: live connections in this worker's tables.
    pub conns_active: Counter,
    /// Gauge: the configuration version this worker runs.
    pub config_version: Counter,
    /// Sync records of this worker's connections handed to the management core.
    pub sync_records: Counter,
    /// Sync records lost because the ring to the management core was full.
    pub sync_records_dropped: Counter,
    /// Connections installed from other members' sync records.
    pub sync_installed: Counter,
    /// Sync records not installed (no such service or real server here, a
    /// conflicting connection, a full table).
    pub sync_refused: Counter,
    /// SYN-ACKs carrying a SYN cookie sent to clients (SYN proxy).
    pub syn_cookies_sent: Counter,
    /// ACKs whose SYN cookie validated: connections the SYN proxy opened.
    pub syn_cookies_validated: Counter,
    /// Resets sent to SYN-proxied clients whose real server refused the
    /// connection or did not answer within `connections.timeouts.tcp_syn`.
    pub syn_proxy_resets: Counter,
    /// Gauge: 1 while `connections.syn_proxy_above` has every TCP NAT/FULLNAT
    /// service of this worker SYN-proxied.
    pub syn_proxy_auto: Counter,
    drops: [Counter; DropReason::COUNT],
    real_servers: Box<[RealServerStats]>,
    vlans: Box<[VlanStats]>,
}

/// Counters of one VLAN interface on one worker.
#[derive(Debug, Default)]
pub struct VlanStats {
    /// Frames received with the VLAN's tag (in software or by the NIC).
    pub rx_packets: Counter,
    /// Frames the NIC accepted for transmission on the VLAN.
    pub tx_packets: Counter,
}

impl Default for WorkerStats {
    fn default() -> Self {
        Self::new(0)
    }
}

impl WorkerStats {
    /// Counters for a worker serving `real_server_slots` real servers.
    pub fn new(real_server_slots: usize) -> Self {
        WorkerStats {
            rx_packets: Counter::default(),
            tx_packets: Counter::default(),
            busy_cycles: Counter::default(),
            total_cycles: Counter::default(),
            handoff_packets: Counter::default(),
            kernel_packets: Counter::default(),
            conns_active: Counter::default(),
            config_version: Counter::default(),
            sync_records: Counter::default(),
            sync_records_dropped: Counter::default(),
            sync_installed: Counter::default(),
            sync_refused: Counter::default(),
            syn_cookies_sent: Counter::default(),
            syn_cookies_validated: Counter::default(),
            syn_proxy_resets: Counter::default(),
            syn_proxy_auto: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            real_servers: (0..real_server_slots)
                .map(|_| RealServerStats::default())
                .collect(),
            vlans: Box::default(),
        }
    }

    /// The counters with room for `vlans` VLAN interfaces (`Config::vlans` order).
    pub fn with_vlans(mut self, vlans: usize) -> Self {
        self.vlans = (0..vlans).map(|_| VlanStats::default()).collect();
        self
    }

    /// The counters of VLAN `index` (in `Config::vlans` order); a shared dummy
    /// for an unknown one.
    #[inline(always)]
    pub fn vlan(&self, index: usize) -> &VlanStats {
        static NONE: VlanStats = VlanStats {
            rx_packets: Counter(AtomicU64::new(0)),
            tx_packets: Counter(AtomicU64::new(0)),
        };
        self.vlans.get(index).unwrap_or(&NONE)
    }

    /// The counters of real server `slot` (a shared dummy for an unknown slot, so the
    /// packet path never branches on it).
    #[inline(always)]
    pub fn real_server(&self, slot: u16) -> &RealServerStats {
        static NONE: RealServerStats = RealServerStats {
            conns: Counter(AtomicU64::new(0)),
            in_packets: Counter(AtomicU64::new(0)),
            in_bytes: Counter(AtomicU64::new(0)),
            out_packets: Counter(AtomicU64::new(0)),
            out_bytes: Counter(AtomicU64::new(0)),
            active: Counter(AtomicU64::new(0)),
            inactive: Counter(AtomicU64::new(0)),
            handshakes: Counter(AtomicU64::new(0)),
            syn_failures: Counter(AtomicU64::new(0)),
        };
        self.real_servers.get(usize::from(slot)).unwrap_or(&NONE)
    }

    /// Counts `n` packets dropped for `reason`.
    #[inline(always)]
    pub fn count_drop(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    /// Packets dropped for `reason` since the worker started.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    /// All drops, any reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            let l = r.label();
            assert!(seen.insert(l), "duplicate label {l}");
            assert!(
                l.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{l}"
            );
            assert_eq!(DropReason::ALL[*r as usize], *r);
        }
    }

    #[test]
    fn parse_errors_keep_their_labels() {
        for e in crate::packet::ParseError::ALL {
            assert_eq!(DropReason::from(e).label(), e.reason());
        }
    }

    #[test]
    fn counters_sum() {
        let s = WorkerStats::default();
        s.count_drop(DropReason::Runt, 2);
        s.count_drop(DropReason::Runt, 3);
        s.rx_packets.inc();
        assert_eq!(s.dropped(DropReason::Runt), 5);
        assert_eq!(s.dropped_total(), 5);
        assert_eq!(s.rx_packets.get(), 1);
        assert_eq!(std::mem::align_of::<WorkerStats>(), 64);
    }
}
