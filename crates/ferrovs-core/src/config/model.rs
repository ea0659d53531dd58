//! The validated configuration: what the rest of ferrovs reads.
//!
//! Every value here has passed the checks in `check`; defaults are already filled in.
//! Nothing positional is kept: line and column exist only in error reports.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

pub use crate::conn::Timeouts;
use crate::packet::MacAddr;

use super::value::PortDevice;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// DPDK EAL settings.
    pub eal: EalConfig,
    /// Ports in configuration order; a port's index here is its index everywhere else.
    pub ports: Vec<PortConfig>,
    /// Worker lcores and their polling loop.
    pub workers: WorkersConfig,
    /// The packet buffer pool.
    pub mempool: MempoolConfig,
    /// Metrics endpoint and control socket.
    pub management: ManagementConfig,
    /// Connection table size and per-state timeouts.
    pub connections: ConnectionsConfig,
    /// Static routes (connected subnets come from `ports[].addresses`).
    pub routes: Vec<RouteConfig>,
    /// Static neighbour entries; ARP and NDP resolve the rest.
    pub neighbors: Vec<NeighborConfig>,
    /// 802.1Q VLANs: logical interfaces of the ports, numbered after them
    /// ([`Config::interfaces`]).
    pub vlans: Vec<VlanConfig>,
    /// Virtual services.
    pub services: Vec<ServiceConfig>,
    /// VIP routes for a routing daemon; None: nothing is announced.
    pub announce: Option<AnnounceConfig>,
    /// Connection sync with other members; None: this instance is alone.
    pub sync: Option<SyncConfig>,
}

/// Connection sync between cluster members (`sync:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// This member's sync address: one of its ports' addresses, and a UDP port.
    pub listen: SocketAddr,
    /// The other members' sync addresses.
    pub peers: Vec<SocketAddr>,
    /// The file holding the members' shared key (at least 16 bytes).
    pub key_file: PathBuf,
    /// How often a member tells the others it is alive.
    pub heartbeat: Duration,
    /// A member not heard for this long is lost: the others take over its shared
    /// addresses.
    pub peer_timeout: Duration,
    /// How often every live connection is sent again (so copies outlive lost
    /// datagrams, and idle connections stay alive at the other members).
    pub refresh: Duration,
    /// Addresses that move with the traffic, each answered by one member.
    pub shared_addresses: Vec<SharedAddress>,
}

impl SyncConfig {
    /// Every member's sync address, sorted: a member's place in it is its share
    /// of the FULLNAT local ports.
    pub fn members(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self.peers.clone();
        all.push(self.listen);
        all.sort();
        all
    }

    /// (this member's place, members): its share of the FULLNAT local ports.
    pub fn local_port_share(&self) -> (usize, usize) {
        let members = self.members();
        let me = members.iter().position(|m| *m == self.listen).unwrap_or(0);
        (me, members.len())
    }
}

/// An address that moves with the traffic between members (a VIP, a FULLNAT
/// local address, the gateway address real servers use in NAT mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedAddress {
    /// The address, on a connected subnet (ARP/ND is answered for it there).
    pub address: IpAddr,
    /// The member (its sync address) that answers for it while it is alive.
    pub owner: SocketAddr,
}

/// VIP routes for a routing daemon (`announce:`): one host route per VIP ready to
/// serve, in a kernel routing table that BIRD or FRR imports and announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// The kernel routing table holding the VIP routes.
    pub kernel_table: u32,
    /// How long ferrovs keeps forwarding after withdrawing its VIPs at a stop, while
    /// the routers move the traffic away.
    pub shutdown_grace: Duration,
}

impl Config {
    /// Every interface: the ports (untagged) in configuration order, then the
    /// VLANs in configuration order. An interface's place here is its index
    /// everywhere (routes, neighbours, kernel interfaces); a port's equals its
    /// index in `ports`.
    pub fn interfaces(&self) -> impl Iterator<Item = InterfaceConfig<'_>> + '_ {
        let ports = self.ports.iter().enumerate().map(|(i, p)| InterfaceConfig {
            name: &p.name,
            port: i,
            vlan: 0,
            addresses: &p.addresses,
        });
        let vlans = self.vlans.iter().map(|v| InterfaceConfig {
            name: &v.name,
            port: v.port,
            vlan: v.id,
            addresses: &v.addresses,
        });
        ports.chain(vlans)
    }

    /// Index of the interface (port or VLAN, see [`Config::interfaces`]) whose
    /// connected subnet holds `ip`; the longest prefix wins, and among equally
    /// long prefixes the first interface.
    pub fn interface_for_address(&self, ip: IpAddr) -> Option<usize> {
        let mut best: Option<(usize, u8)> = None;
        for (index, iface) in self.interfaces().enumerate() {
            for net in iface.addresses {
                let len = net.prefix_len();
                let longer = match best {
                    Some((_, best_len)) => len > best_len,
                    None => true,
                };
                if longer && net.contains(&ip) {
                    best = Some((index, len));
                }
            }
        }
        best.map(|(index, _)| index)
    }

    /// True when `ip` is one of the interfaces' (ports' and VLANs') own addresses.
    pub fn is_port_address(&self, ip: IpAddr) -> bool {
        self.interfaces()
            .any(|i| i.addresses.iter().any(|net| net.addr() == ip))
    }
}

/// An interface as the configuration defines it: a port (untagged) or a VLAN of
/// a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceConfig<'a> {
    /// The port's or the VLAN's name; the kernel interface's name.
    pub name: &'a str,
    /// The index of the port carrying it.
    pub port: usize,
    /// The 802.1Q VLAN id, 1 to 4094; 0 for the port itself (untagged).
    pub vlan: u16,
    /// Own addresses with their connected prefixes.
    pub addresses: &'a [IpNet],
}

/// An 802.1Q VLAN of a port (`vlans[]`): a logical interface with its own
/// addresses, connected subnets, neighbours and kernel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanConfig {
    /// The index of the port carrying the VLAN.
    pub port: usize,
    /// The VLAN id, 1 to 4094.
    pub id: u16,
    /// The interface's name (`wan.100`), at most 15 characters as a Linux
    /// interface name: metrics labels and the kernel interface.
    pub name: String,
    /// Own addresses, each with the prefix length of its connected subnet.
    pub addresses: Vec<IpNet>,
}

/// DPDK Environment Abstraction Layer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// Every lcore ferrovs uses; the first is the management core.
    pub cores: Vec<u32>,
    /// The CPU each lcore of `cores` runs on (same order): the lcore id itself
    /// unless `eal.cpu_map` says otherwise.
    pub cpus: Vec<u32>,
    /// Memory to reserve at start-up (EAL `-m`), in MiB.
    pub memory_mb: u32,
    /// False runs the EAL with `--no-huge` (tests, no hugepages mounted).
    pub hugepages: bool,
    /// EAL `--file-prefix`: unique per instance on one host.
    pub file_prefix: String,
    /// Extra EAL arguments, passed verbatim after the ones derived from this config.
    pub args: Vec<String>,
}

impl EalConfig {
    /// The EAL main lcore, which runs the management tasks.
    pub fn management_core(&self) -> u32 {
        // `cores` is checked non-empty; 0 is never reached for a validated config.
        self.cores.first().copied().unwrap_or(0)
    }
}

/// One Ethernet port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Short name used in metrics labels and the control API.
    pub name: String,
    /// The DPDK device behind the port.
    pub device: PortDevice,
    /// Own addresses, each with the prefix length of its connected subnet
    /// (`198.18.0.1/24`: address 198.18.0.1 on 198.18.0.0/24).
    pub addresses: Vec<IpNet>,
    /// Layer-3 MTU in bytes.
    pub mtu: u16,
    /// RX ring size per queue.
    pub rx_descriptors: u16,
    /// TX ring size per queue.
    pub tx_descriptors: u16,
    /// Reverse-path filtering of the sources of new connections received here.
    pub rp_filter: RpFilter,
    /// A bond's member devices (`device` is DPDK's `net_bonding`); empty otherwise.
    pub members: Vec<PortDevice>,
}

impl PortConfig {
    /// Whether the port is a bond: DPDK's bonding PMD over `members`.
    pub fn is_bond(&self) -> bool {
        is_bonding(&self.device)
    }

    /// The device as the EAL gets it: a bond's spec names its members
    /// (`slave=NAME`, the key of DPDK 22.11's bonding PMD).
    pub fn eal_device_spec(&self) -> String {
        let mut spec = self.device.to_string();
        for m in &self.members {
            spec.push_str(",slave=");
            spec.push_str(m.ethdev_name());
        }
        spec
    }
}

/// Whether `device` is an instance of DPDK's bonding PMD (`net_bonding<n>`).
pub fn is_bonding(device: &PortDevice) -> bool {
    matches!(device, PortDevice::Vdev { driver, .. } if driver.starts_with("net_bonding"))
}

/// Worker lcores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkersConfig {
    /// One worker per core; each polls one RX queue of every port.
    pub cores: Vec<u32>,
    /// Packets per `rx_burst`.
    pub burst: u16,
    /// When true an idle worker sleeps, backing off up to `idle_sleep_max`, instead of
    /// spinning, so it leaves the CPU to other processes.
    pub idle_backoff: bool,
    /// Longest sleep of an idle worker when `idle_backoff` is set.
    pub idle_sleep_max: Duration,
}

/// The mbuf pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Number of mbufs (best as 2^n - 1).
    pub mbufs: u32,
    /// Per-lcore cache size.
    pub cache_size: u32,
}

/// Management interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementConfig {
    /// Where `GET /metrics` is served.
    pub metrics_listen: SocketAddr,
    /// Unix socket of the mutating control API (absolute path).
    pub control_socket: PathBuf,
    /// A kernel interface (TAP) per port holding the port's addresses, through which
    /// the appliance's own sockets (health checks, BGP, ssh) use the DPDK ports.
    pub exception_path: bool,
}

/// Connection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsConfig {
    /// Capacity of the connection table, all workers together.
    pub max: u32,
    /// Idle timeouts per protocol state.
    pub timeouts: Timeouts,
    /// Unanswered SYNs a second (all workers together) above which every TCP
    /// NAT/FULLNAT service is SYN-proxied; 0 = never automatically.
    pub syn_proxy_above: u32,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Destination prefix, host bits zero.
    pub prefix: IpNet,
    /// Next hops, each inside a connected subnet, at least one, each once: with
    /// more than one (ECMP), connections are spread over them by flow hash.
    pub via: Vec<IpAddr>,
}

/// The most next hops a route may have (`routes[].via`).
pub const MAX_NEXT_HOPS: usize = 16;

/// A static neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Address inside a connected subnet.
    pub ip: IpAddr,
    /// Unicast MAC address.
    pub mac: MacAddr,
}

/// A virtual service: (VIP, port, protocol) and its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Unique name, used in metrics labels and the control API.
    pub name: String,
    /// Virtual IP.
    pub vip: IpAddr,
    /// Virtual port; 0 = every port of the VIP (IPVS's port-zero service, only
    /// with persistence), a service with the VIP's own port winning over it.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Forwarding mode.
    pub mode: ForwardMode,
    /// Real-server scheduler.
    pub scheduler: Scheduler,
    /// The scheduler's flags (`ipvsadm --sched-flags`), each once.
    pub sched_flags: Vec<SchedFlag>,
    /// Persistence timeout; zero means no persistence.
    pub persistence: Duration,
    /// Prefix length grouping clients for persistence (`ipvsadm -M`).
    pub persistence_netmask: u8,
    /// FULLNAT source addresses towards the real servers; empty for other modes.
    pub local_addresses: Vec<IpAddr>,
    /// Real servers in configuration order.
    pub real_servers: Vec<RealServerConfig>,
    /// How the real servers' health is checked.
    pub health_check: HealthCheckConfig,
    /// Fewest available real servers (up, weight above 0) with which the VIP is
    /// announced (`announce:`); below it the VIP is withdrawn.
    pub quorum: u32,
    /// IPVS `sloppy_tcp`: any TCP packet that matches no connection opens one, not
    /// only a SYN, so a flow that another instance carried until now continues.
    pub sloppy: bool,
    /// IPVS one-packet scheduling (`--ops`, UDP only): every datagram is
    /// scheduled on its own and no connection is kept.
    pub ops: bool,
    /// keepalived's `sorry_server`: takes the new connections while no real server
    /// is available or fewer than `quorum` are; never health-checked.
    pub sorry_server: Option<SorryServerConfig>,
    /// Who may open connections, and how many a source may open per second.
    pub access: AccessConfig,
    /// A Proxy Protocol header (the client's address and port, and the VIP)
    /// ahead of the client's data to the real server (TCP, NAT and FULLNAT).
    pub proxy_protocol: ProxyProtocol,
    /// SYN proxy: ferrovs answers the client's SYN with a SYN cookie and opens
    /// the connection to a real server only on a valid ACK (TCP, NAT and FULLNAT).
    pub syn_proxy: bool,
}

/// A service's access lists and per-source limit, checked for every new connection
/// (live connections are never re-checked, so a change applies to new ones only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessConfig {
    /// Sources that may connect; empty = every source not denied.
    pub allow: Vec<IpNet>,
    /// Sources that may not connect; wins over `allow`.
    pub deny: Vec<IpNet>,
    /// What a refused TCP client gets.
    pub deny_action: DenyAction,
    /// At most this many new connections per source address (`count` at once,
    /// `count` more each `per`); none = no limit.
    pub new_connections_per_source: Option<SourceRate>,
}

/// A rate of new connections: `count` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRate {
    /// Connections per period, and the most a source may open at once.
    pub count: u32,
    /// The period: a second, a minute or an hour.
    pub per: Duration,
}

impl fmt::Display for SourceRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// The server new connections go to while a service has no real server to offer
/// (keepalived's `sorry_server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SorryServerConfig {
    /// Address, same family as the VIP, not one of the service's real servers.
    pub address: IpAddr,
    /// Port; equals the service port in DR and TUNNEL modes.
    pub port: u16,
}

/// Health checking of a service's real servers (keepalived-style rise/fall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// What is checked; `None` keeps every server up.
    pub kind: CheckKind,
    /// Time from the start of one check of a server to the start of the next.
    pub interval: Duration,
    /// How long one check may take, connecting and (HTTP) the status line together; at
    /// most the interval.
    pub timeout: Duration,
    /// Consecutive successes that bring a server back.
    pub rise: u32,
    /// Consecutive failures that take a server out.
    pub fall: u32,
    /// Port to check instead of the real server's.
    pub port: Option<u16>,
    /// HTTP: the path requested and the status expected; TLS with `tls_get`: the
    /// path of an HTTP GET over the connection.
    pub path: String,
    /// TLS: an HTTP GET of `path` follows the handshake (keepalived's SSL_GET);
    /// true when `path` is written, else the handshake alone is checked.
    pub tls_get: bool,
    /// HTTP, and TLS with a path: the status code that counts as a pass; any other
    /// fails the check.
    pub expect_status: u16,
    /// Also count connections the server refused (RST to a SYN) or left unanswered
    /// as failed checks.
    pub passive: bool,
    /// UDP: the datagram sent.
    pub payload: Vec<u8>,
    /// UDP: an answer is needed; false passes a server that sent no ICMP port
    /// unreachable within the timeout (keepalived's UDP_CHECK without
    /// `require_reply`).
    pub require_reply: bool,
    /// UDP: bytes the answer must contain; empty = any answer.
    pub expect: Vec<u8>,
    /// DNS: the name asked for.
    pub query_name: String,
    /// DNS: the record type asked for.
    pub query_type: DnsType,
    /// DNS: the response code that counts as a pass.
    pub expect_rcode: DnsRcode,
    /// TLS: the server name sent (SNI) and, with `verify`, checked against the
    /// certificate; none = no SNI.
    pub sni: Option<String>,
    /// TLS: verify the server's certificate (off by default, as keepalived's
    /// SSL_GET).
    pub verify: bool,
    /// TLS with `verify`: the trusted CAs (PEM); none = the system's bundle.
    pub ca_file: Option<PathBuf>,
    /// Exec: the program (absolute path) and its arguments, run without a shell.
    pub command: Vec<String>,
    /// Exec: the user the command runs as; none only with `run_as_root`.
    pub user: Option<String>,
    /// Exec: the configuration says, in so many words, that the command runs as
    /// root.
    pub run_as_root: bool,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: CheckKind::None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            port: None,
            path: "/".into(),
            tls_get: false,
            expect_status: 200,
            // Passive checking only accompanies an active check (on by default then).
            passive: false,
            payload: Vec::new(),
            require_reply: true,
            expect: Vec::new(),
            query_name: ".".into(),
            query_type: DnsType::Soa,
            expect_rcode: DnsRcode::NoError,
            sni: None,
            verify: false,
            ca_file: None,
            command: Vec::new(),
            user: None,
            run_as_root: false,
        }
    }
}

/// A real server of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealServerConfig {
    /// Address, same family as the VIP.
    pub address: IpAddr,
    /// Port; equals the service port in DR and TUNNEL modes. 0 (only in a
    /// service with port 0): the port the client's packet was sent to.
    pub port: u16,
    /// Scheduler weight, 0..=65535; 0 takes no new connections (quiesced).
    pub weight: u32,
    /// IPVS's upper threshold: at this many connections the server takes no new
    /// ones (split over the workers); 0 = no limit.
    pub max_connections: u32,
    /// IPVS's lower threshold: an overloaded server takes new connections again
    /// below this many; 0 = below three quarters of `max_connections`.
    pub min_connections: u32,
}

/// The text did not name one of the allowed keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKeyword {
    /// What was being parsed ("protocol", "mode", "scheduler").
    pub kind: &'static str,
    /// The allowed spellings.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownKeyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {}, expected one of: {}",
            self.kind,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownKeyword {}

/// Defines a fieldless enum spelled in the config by fixed lowercase keywords.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];
            /// The config spellings, in declaration order.
            pub const NAMES: &'static [&'static str] = &[ $( $text, )+ ];

            /// The config spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownKeyword;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownKeyword { kind: $kind, expected: Self::NAMES }),
                }
            }
        }
    };
}

keyword_enum! {
    /// What a client whose new connection an access list refuses gets.
    #[derive(Default)]
    DenyAction, "deny action" {
        /// Nothing: the packet is dropped.
        #[default]
        Drop = "drop",
        /// A TCP reset (TCP services only).
        Rst = "rst",
    }
}

keyword_enum! {
    /// The Proxy Protocol header a service sends its real servers.
    ProxyProtocol, "proxy protocol" {
        /// No header.
        None = "none",
        /// Version 1, text (`PROXY TCP4 ...`).
        V1 = "v1",
        /// Version 2, binary.
        V2 = "v2",
    }
}

keyword_enum! {
    /// The kind of health check.
    CheckKind, "health check type" {
        /// No check: servers are always up.
        None = "none",
        /// A TCP connection must be accepted.
        Tcp = "tcp",
        /// An HTTP GET must answer the expected status.
        Http = "http",
        /// A UDP datagram must be answered (or, without `require_reply`, not refused
        /// with an ICMP port unreachable).
        Udp = "udp",
        /// A DNS query over UDP must be answered with the expected response code.
        Dns = "dns",
        /// A TLS handshake must complete (and, with a path, an HTTP GET over it answer
        /// the expected status): keepalived's SSL_GET.
        Tls = "tls",
        /// A command must exit 0 within the timeout: keepalived's MISC_CHECK.
        Exec = "exec",
    }
}

keyword_enum! {
    /// A DNS record type a `dns` check asks for.
    DnsType, "DNS query type" {
        /// IPv4 address (1).
        A = "A",
        /// Name server (2).
        Ns = "NS",
        /// Canonical name (5).
        Cname = "CNAME",
        /// Start of authority (6).
        Soa = "SOA",
        /// Pointer (12).
        Ptr = "PTR",
        /// Mail exchanger (15).
        Mx = "MX",
        /// Text (16).
        Txt = "TXT",
        /// IPv6 address (28).
        Aaaa = "AAAA",
        /// Service location (33).
        Srv = "SRV",
        /// Every type (255).
        Any = "ANY",
    }
}

impl DnsType {
    /// The type's number on the wire (RFC 1035, 3596, 2782).
    pub const fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Ptr => 12,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
            DnsType::Srv => 33,
            DnsType::Any => 255,
        }
    }
}

keyword_enum! {
    /// A DNS response code (RFC 1035 section 4.1.1).
    DnsRcode, "DNS response code" {
        /// 0: no error.
        NoError = "NOERROR",
        /// 1: format error.
        FormErr = "FORMERR",
        /// 2: server failure.
        ServFail = "SERVFAIL",
        /// 3: the name does not exist.
        NxDomain = "NXDOMAIN",
        /// 4: not implemented.
        NotImp = "NOTIMP",
        /// 5: refused.
        Refused = "REFUSED",
    }
}

impl DnsRcode {
    /// The code's number in the header.
    pub const fn code(self) -> u8 {
        match self {
            DnsRcode::NoError => 0,
            DnsRcode::FormErr => 1,
            DnsRcode::ServFail => 2,
            DnsRcode::NxDomain => 3,
            DnsRcode::NotImp => 4,
            DnsRcode::Refused => 5,
        }
    }
}

keyword_enum! {
    /// Transport protocol of a service.
    Protocol, "protocol" {
        /// TCP.
        Tcp = "tcp",
        /// UDP.
        Udp = "udp",
    }
}

keyword_enum! {
    /// How packets reach the real server (the LVS forwarding methods plus DPVS's FULLNAT).
    ForwardMode, "mode" {
        /// Destination NAT: the real server routes replies back through us.
        Nat = "nat",
        /// Source and destination NAT: the client address is replaced by a local address.
        FullNat = "fullnat",
        /// Direct routing: only the MAC changes; the real server holds the VIP.
        Dr = "dr",
        /// IP-in-IP tunnelling to the real server.
        Tunnel = "tunnel",
    }
}

keyword_enum! {
    /// Real-server scheduler, named as in ipvsadm.
    Scheduler, "scheduler" {
        /// Round robin.
        Rr = "rr",
        /// Weighted round robin.
        Wrr = "wrr",
        /// Least connections.
        Lc = "lc",
        /// Weighted least connections.
        Wlc = "wlc",
        /// Source hashing.
        Sh = "sh",
        /// Destination hashing.
        Dh = "dh",
        /// Shortest expected delay.
        Sed = "sed",
        /// Never queue.
        Nq = "nq",
        /// Maglev hashing.
        Mh = "mh",
        /// Locality-based least connections.
        Lblc = "lblc",
        /// Locality-based least connections with replication.
        Lblcr = "lblcr",
        /// Weighted failover.
        Fo = "fo",
        /// Weighted overflow.
        Ovf = "ovf",
        /// Weighted power of two choices.
        Twos = "twos",
    }
}

keyword_enum! {
    /// Reverse-path filtering of a port (Linux `rp_filter`): what a source that
    /// opens a connection, pings or sends an ICMP error must have in the routing
    /// table.
    RpFilter, "rp_filter" {
        /// The route back to the source leaves by the port the packet came in on.
        Strict = "strict",
        /// Some route back to the source exists, by any port.
        Loose = "loose",
        /// No check.
        Off = "off",
    }
}

keyword_enum! {
    /// A scheduler flag, named as in `ipvsadm --sched-flags`.
    SchedFlag, "scheduler flag" {
        /// sh: probe further buckets when the hashed server cannot take the connection.
        ShFallback = "sh-fallback",
        /// sh: hash the client port with the client address.
        ShPort = "sh-port",
        /// mh: probe further entries when the hashed server cannot take the connection.
        MhFallback = "mh-fallback",
        /// mh: hash the client port with the client address.
        MhPort = "mh-port",
    }
}

impl SchedFlag {
    /// The scheduler the flag belongs to.
    pub fn scheduler(self) -> Scheduler {
        match self {
            SchedFlag::ShFallback | SchedFlag::ShPort => Scheduler::Sh,
            SchedFlag::MhFallback | SchedFlag::MhPort => Scheduler::Mh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn port(name: &str, addresses: &[&str]) -> PortConfig {
        PortConfig {
            name: name.into(),
            device: PortDevice::Pci("0000:00:00.0".into()),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            mtu: 1500,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            rp_filter: RpFilter::Off,
            members: vec![],
        }
    }

    fn config_with_ports(ports: Vec<PortConfig>) -> Config {
        Config {
            eal: EalConfig {
                cores: vec![0, 1],
                cpus: vec![0, 1],
                memory_mb: 512,
                hugepages: true,
                file_prefix: "ferrovs".into(),
                args: vec![],
            },
            ports,
            workers: WorkersConfig {
                cores: vec![1],
                burst: 32,
                idle_backoff: false,
                idle_sleep_max: Duration::from_millis(1),
            },
            mempool: MempoolConfig {
                mbufs: 16383,
                cache_size: 256,
            },
            management: ManagementConfig {
                metrics_listen: "127.0.0.1:9800".parse().unwrap(),
                control_socket: "/run/ferrovs/ctl.sock".into(),
                exception_path: true,
            },
            connections: ConnectionsConfig {
                max: 1,
                timeouts: Timeouts::default(),
                syn_proxy_above: 0,
            },
            routes: vec![],
            neighbors: vec![],
            vlans: vec![],
            services: vec![],
            announce: None,
            sync: None,
        }
    }

    #[test]
    fn interface_for_address_prefers_longest_prefix() {
        let config = config_with_ports(vec![
            port("wan", &["198.18.0.1/16", "2001:2::1/64"]),
            port("lan", &["198.18.5.1/24"]),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(config.interface_for_address(ip("198.18.5.77")), Some(1));
        assert_eq!(config.interface_for_address(ip("198.18.6.77")), Some(0));
        assert_eq!(config.interface_for_address(ip("2001:2::99")), Some(0));
        assert_eq!(config.interface_for_address(ip("198.19.0.1")), None);
        assert_eq!(config.interface_for_address(ip("2001:3::1")), None);
        assert!(config.is_port_address(IpAddr::V4(Ipv4Addr::new(198, 18, 5, 1))));
        assert!(!config.is_port_address(ip("198.18.5.2")));
        assert_eq!(config.eal.management_core(), 0);
    }

    #[test]
    fn vlans_are_interfaces_after_the_ports() {
        let mut config = config_with_ports(vec![
            port("wan", &["198.18.0.1/24"]),
            port("lan", &["198.19.0.1/24"]),
        ]);
        config.vlans.push(VlanConfig {
            port: 0,
            id: 100,
            name: "wan.100".into(),
            addresses: vec![
                "198.20.0.1/24".parse().unwrap(),
                "2001:20::1/64".parse().unwrap(),
            ],
        });
        let ifaces: Vec<_> = config
            .interfaces()
            .map(|i| (i.name, i.port, i.vlan))
            .collect();
        assert_eq!(ifaces, [("wan", 0, 0), ("lan", 1, 0), ("wan.100", 0, 100)]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(config.interface_for_address(ip("198.20.0.77")), Some(2));
        assert_eq!(config.interface_for_address(ip("2001:20::7")), Some(2));
        assert_eq!(config.interface_for_address(ip("198.18.0.7")), Some(0));
        assert!(config.is_port_address(ip("198.20.0.1")));
    }

    #[test]
    fn keywords_round_trip_and_reject_unknown() {
        for (i, name) in Scheduler::NAMES.iter().enumerate() {
            let parsed: Scheduler = name.parse().unwrap();
            assert_eq!(parsed, Scheduler::ALL[i]);
            assert_eq!(parsed.to_string(), *name);
        }
        assert_eq!("fullnat".parse(), Ok(ForwardMode::FullNat));
        assert_eq!("strict".parse(), Ok(RpFilter::Strict));
        assert_eq!(RpFilter::NAMES, ["strict", "loose", "off"]);
        assert_eq!("udp".parse(), Ok(Protocol::Udp));
        let err = "TCP".parse::<Protocol>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown protocol, expected one of: tcp, udp"
        );
        assert!("".parse::<ForwardMode>().is_err());
        assert!("wrr ".parse::<Scheduler>().is_err());
    }
}
