//! Tests of `parse` and `load` as a whole: values, defaults, and every rule with the
//! exact position it is reported at.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::packet::MacAddr;

/// The configuration contract external tools rely on (every key of the README's
/// reference example), verbatim.
const CONTRACT_EXAMPLE: &str = r#"
eal:
  cores: [0, 1]              # all lcores used; first one is the management core
  memory_mb: 512
  hugepages: true            # false: run with --no-huge
  file_prefix: ferrovs       # unique per instance on one host
  args: []                   # extra EAL arguments, verbatim
ports:
  - name: wan
    device: "0000:3b:00.0"   # a PCI address, or a DPDK vdev spec such as
                             # "net_af_packet0,iface=veth-wan"
    addresses: ["198.18.0.1/24"]
    mtu: 1500
  - name: lan
    device: "net_af_packet1,iface=veth-lan"
    addresses: ["198.19.0.1/24"]
workers:
  cores: [1]                 # each worker polls one RX queue of every port
  burst: 32
mempool:
  mbufs: 16383
management:
  metrics_listen: "127.0.0.1:9800"         # GET /metrics
  control_socket: "/run/ferrovs/ctl.sock"  # mutating API, never on the network
connections:
  max: 1000000
  timeouts: { tcp_established: "900s", tcp_syn: "60s", tcp_fin: "120s", udp: "300s" }
routes:
  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }
neighbors:                   # optional static entries; ARP fills the rest
  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }
services:
  - name: web
    vip: "198.18.0.100"
    port: 80
    protocol: tcp            # tcp | udp
    mode: fullnat            # nat | fullnat | dr | tunnel
    scheduler: wrr           # rr wrr lc wlc sh dh sed nq mh
    persistence: "0s"
    local_addresses: ["198.19.0.2"]   # FULLNAT source pool
    real_servers:
      - { address: "198.19.0.10", port: 8080, weight: 1 }
      - { address: "198.19.0.11", port: 8080, weight: 2 }
"#;

const EXAMPLE_FILE: &str = include_str!("../../../../conf/example.yaml");

/// A valid config using every section, both families and all four modes. The rule
/// tests below edit one line of it; line numbers are in the comments.
const BASE: &str = r#"eal:
  cores: [0, 1, 2]
  memory_mb: 512
  file_prefix: test
  args: ["--log-level=5"]
ports:
  - name: wan
    device: "0000:3b:00.0"
    addresses: ["198.18.0.1/24", "2001:2::1/64"]
    mtu: 1500
    rx_descriptors: 1024
    tx_descriptors: 1024
  - name: lan
    device: "net_af_packet1,iface=veth-lan"
    addresses: ["198.19.0.1/24"]
  - name: spare
    device: "net_null0"
    addresses: ["198.20.0.1/24"]
workers:
  cores: [1, 2]
  burst: 32
  idle_sleep_max: "1ms"
mempool:
  mbufs: 16383
  cache_size: 256
management:
  metrics_listen: "127.0.0.1:9800"
  control_socket: "/run/ferrovs/ctl.sock"
connections:
  max: 1000
  timeouts: { tcp_established: "900s", udp: "300s" }
routes:
  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }
  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }
neighbors:
  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }
services:
  - name: web
    vip: "198.18.0.100"
    port: 80
    protocol: tcp
    mode: fullnat
    scheduler: wrr
    persistence: "0s"
    local_addresses: ["198.19.0.2"]
    real_servers:
      - { address: "198.19.0.10", port: 8080, weight: 1 }
      - { address: "198.19.0.11", port: 8080 }
  - name: dr6
    vip: "2001:2::100"
    port: 443
    protocol: tcp
    mode: dr
    persistence: "300s"
    persistence_netmask: 64
    real_servers:
      - { address: "2001:2::10", port: 443 }
  - name: dns
    vip: "198.18.0.53"
    port: 53
    protocol: udp
    mode: nat
    scheduler: sh
    real_servers:
      - { address: "198.19.0.20" }
      - { address: "203.0.113.5", port: 5353 }
  - name: tun
    vip: "198.18.0.54"
    port: 80
    protocol: tcp
    mode: tunnel
    real_servers:
      - { address: "198.51.100.7", port: 80, weight: 0 }
"#;

fn host() -> HostFacts {
    HostFacts {
        online_cpus: Some(vec![0, 1, 2, 3]),
        ..HostFacts::default()
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn parse_ok(text: &str) -> Config {
    match parse(text, "test.yaml", &host()) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

fn parse_err(text: &str) -> Vec<ConfigError> {
    match parse(text, "test.yaml", &host()) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors.0,
    }
}

/// BASE with the line equal to `line` replaced by `replacement`.
fn base_with(line: &str, replacement: &str) -> String {
    let matches = BASE.lines().filter(|l| *l == line).count();
    assert_eq!(matches, 1, "BASE must hold exactly one line {line:?}");
    BASE.lines()
        .map(|l| if l == line { replacement } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `errors` are exactly `expected` (line, col, message fragment), in order.
fn assert_errors(errors: &[ConfigError], expected: &[(usize, usize, &str)], case: &str) {
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), expected.len(), "{case}: got {shown:#?}");
    for (error, (line, col, fragment)) in errors.iter().zip(expected) {
        assert_eq!(error.file, "test.yaml", "{case}");
        assert_eq!((error.line, error.col), (*line, *col), "{case}: {error}");
        assert!(
            error.message.contains(fragment),
            "{case}: {error:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn design_example_parses_into_expected_values() {
    let config = parse_ok(CONTRACT_EXAMPLE);
    let expected = Config {
        eal: EalConfig {
            cores: vec![0, 1],
            cpus: vec![0, 1],
            memory_mb: 512,
            hugepages: true,
            file_prefix: "ferrovs".into(),
            args: vec![],
        },
        ports: vec![
            PortConfig {
                name: "wan".into(),
                device: PortDevice::Pci("0000:3b:00.0".into()),
                addresses: vec!["198.18.0.1/24".parse().unwrap()],
                mtu: 1500,
                rx_descriptors: 1024,
                tx_descriptors: 1024,
                rp_filter: RpFilter::Off,
                members: vec![],
            },
            PortConfig {
                name: "lan".into(),
                device: PortDevice::Vdev {
                    spec: "net_af_packet1,iface=veth-lan".into(),
                    driver: "net_af_packet1".into(),
                },
                addresses: vec!["198.19.0.1/24".parse().unwrap()],
                mtu: 1500,
                rx_descriptors: 1024,
                tx_descriptors: 1024,
                rp_filter: RpFilter::Off,
                members: vec![],
            },
        ],
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
            max: 1_000_000,
            timeouts: Timeouts {
                tcp_established: Duration::from_secs(900),
                tcp_syn: Duration::from_secs(60),
                tcp_fin: Duration::from_secs(120),
                tcp_time_wait: Duration::from_secs(120),
                tcp_close: Duration::from_secs(10),
                tcp_close_wait: Duration::from_secs(60),
                tcp_last_ack: Duration::from_secs(30),
                udp: Duration::from_secs(300),
            },
            syn_proxy_above: 0,
        },
        routes: vec![RouteConfig {
            prefix: "0.0.0.0/0".parse().unwrap(),
            via: vec![ip("198.18.0.254")],
        }],
        neighbors: vec![NeighborConfig {
            ip: ip("198.19.0.10"),
            mac: MacAddr([2, 0, 0, 0, 1, 0x10]),
        }],
        vlans: vec![],
        services: vec![ServiceConfig {
            name: "web".into(),
            vip: ip("198.18.0.100"),
            port: 80,
            protocol: Protocol::Tcp,
            mode: ForwardMode::FullNat,
            scheduler: Scheduler::Wrr,
            persistence: Duration::ZERO,
            persistence_netmask: 32,
            local_addresses: vec![ip("198.19.0.2")],
            real_servers: vec![
                RealServerConfig {
                    address: ip("198.19.0.10"),
                    port: 8080,
                    weight: 1,
                    max_connections: 0,
                    min_connections: 0,
                },
                RealServerConfig {
                    address: ip("198.19.0.11"),
                    port: 8080,
                    weight: 2,
                    max_connections: 0,
                    min_connections: 0,
                },
            ],
            health_check: HealthCheckConfig::default(),
            quorum: 1,
            sloppy: false,
            ops: false,
            sched_flags: vec![],
            sorry_server: None,
            access: AccessConfig::default(),
            proxy_protocol: ProxyProtocol::None,
            syn_proxy: false,
        }],
        announce: None,
        sync: None,
    };
    assert_eq!(config, expected);
    assert_eq!(config.interface_for_address(ip("198.19.0.10")), Some(1));
    assert_eq!(config.interface_for_address(ip("203.0.113.1")), None);
}

#[test]
fn example_file_is_the_design_example_with_defaults_spelled_out() {
    assert_eq!(parse_ok(EXAMPLE_FILE), parse_ok(CONTRACT_EXAMPLE));
}

#[test]
fn load_reads_a_file_and_reports_unreadable_ones() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf/example.yaml");
    let name = path.display().to_string();
    assert_eq!(
        load(&path),
        parse(EXAMPLE_FILE, &name, &HostFacts::detect())
    );

    let missing = Path::new("/nonexistent/ferrovs.yaml");
    let errors = load(missing).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    let text = errors.to_string();
    assert!(
        text.starts_with("/nonexistent/ferrovs.yaml:1:1: cannot read: "),
        "{text}"
    );
}

#[test]
fn defaults_fill_every_optional_key() {
    let config = parse_ok(
        "eal:\n  cores: [0, 1]\nports:\n  - name: p0\n    device: net_null0\nworkers:\n  cores: [1]\n",
    );
    assert_eq!(config.eal.memory_mb, 512);
    assert!(config.eal.hugepages);
    assert_eq!(config.eal.file_prefix, "ferrovs");
    assert!(config.eal.args.is_empty());
    assert_eq!(config.eal.management_core(), 0);
    let port = &config.ports[0];
    assert!(port.addresses.is_empty());
    assert_eq!(
        (port.mtu, port.rx_descriptors, port.tx_descriptors),
        (1500, 1024, 1024)
    );
    assert_eq!(config.workers.burst, 32);
    assert!(!config.workers.idle_backoff);
    assert_eq!(config.workers.idle_sleep_max, Duration::from_millis(1));
    assert_eq!(
        config.mempool,
        MempoolConfig {
            mbufs: 16383,
            cache_size: 256
        }
    );
    assert_eq!(
        config.management,
        ManagementConfig {
            metrics_listen: "127.0.0.1:9800".parse().unwrap(),
            control_socket: "/run/ferrovs/ctl.sock".into(),
            exception_path: true,
        }
    );
    assert_eq!(config.connections.max, 1_000_000);
    assert_eq!(config.connections.timeouts, Timeouts::default());
    assert_eq!(
        config.connections.timeouts.tcp_established,
        Duration::from_secs(900)
    );
    assert_eq!(config.connections.timeouts.udp, Duration::from_secs(300));
    assert!(config.routes.is_empty() && config.neighbors.is_empty());
    assert!(config.services.is_empty());

    // Empty sections are their defaults too.
    let config = parse_ok(
        "eal: {cores: [0, 1]}\nports: [{name: p0, device: net_null0}]\nworkers: {cores: [1]}\n\
         mempool:\nmanagement:\nconnections: {timeouts: {}}\nroutes:\nneighbors: []\nservices:\n",
    );
    assert_eq!(config.mempool.mbufs, 16383);
    assert_eq!(config.connections.timeouts, Timeouts::default());
}

#[test]
fn service_defaults_follow_ipvsadm() {
    let config = parse_ok(
        "eal: {cores: [0, 1]}
ports: [{name: p0, device: net_null0, addresses: [\"2001:2::1/64\", \"198.18.0.1/24\"]}]
workers: {cores: [1]}
services:
  - { name: v6, vip: \"2001:2::100\", port: 80, protocol: tcp, mode: dr,
      real_servers: [{ address: \"2001:2::10\" }] }
  - { name: v4, vip: \"198.18.0.100\", port: 80, protocol: udp, mode: nat }
",
    );
    let v6 = &config.services[0];
    assert_eq!(v6.scheduler, Scheduler::Wlc);
    assert_eq!(v6.persistence, Duration::ZERO);
    assert_eq!(v6.persistence_netmask, 128);
    assert!(v6.local_addresses.is_empty());
    assert_eq!(
        v6.real_servers,
        vec![RealServerConfig {
            address: ip("2001:2::10"),
            port: 80,
            weight: 1,
            max_connections: 0,
            min_connections: 0,
        }]
    );
    let v4 = &config.services[1];
    assert_eq!(v4.persistence_netmask, 32);
    assert!(v4.real_servers.is_empty());
}

#[test]
fn base_config_is_valid() {
    let config = parse_ok(BASE);
    assert_eq!(config.ports.len(), 3);
    assert_eq!(config.services.len(), 4);
    let dr6 = &config.services[1];
    assert_eq!((dr6.mode, dr6.persistence_netmask), (ForwardMode::Dr, 64));
    assert_eq!(dr6.persistence, Duration::from_secs(300));
    let dns = &config.services[2];
    assert_eq!(
        (dns.protocol, dns.scheduler),
        (Protocol::Udp, Scheduler::Sh)
    );
    assert_eq!(dns.real_servers[0].port, 53);
    assert_eq!(config.services[3].real_servers[0].weight, 0);
    assert_eq!(
        config.connections.timeouts.tcp_fin,
        Duration::from_secs(120)
    );
    assert_eq!(config.interface_for_address(ip("2001:2::10")), Some(0));
    assert!(config.is_port_address(ip("198.20.0.1")));
}

#[test]
fn accepted_variations_of_base() {
    let cases = [
        // Two addresses of one port may share a subnet.
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.1/24", "198.20.0.2/24"]"#,
        ),
        // RFC 3021 /31 and a host route have no network or broadcast address.
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.0/31"]"#,
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.255/32"]"#,
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: []"#,
        ),
        (
            r#"      - { address: "198.19.0.20" }"#,
            r#"      - { address: "198.19.0.20", port: 53 }"#,
        ),
        // DR real servers default to the service port.
        (
            r#"      - { address: "2001:2::10", port: 443 }"#,
            r#"      - { address: "2001:2::10" }"#,
        ),
        // Same real server address on another port.
        (
            r#"      - { address: "198.19.0.11", port: 8080 }"#,
            r#"      - { address: "198.19.0.10", port: 8081 }"#,
        ),
        (r#"  idle_sleep_max: "1ms""#, r#"  idle_sleep_max: "100ms""#),
        (r#"  idle_sleep_max: "1ms""#, r#"  idle_sleep_max: "1us""#),
        (
            r#"  args: ["--log-level=5"]"#,
            r#"  args: ["--in-memory", "--lcores-x", "-n", "4"]"#,
        ),
        (r#"  mbufs: 16383"#, r#"  mbufs: 12544"#),
        (r#"  cache_size: 256"#, r#"  cache_size: 0"#),
        (
            r#"    persistence_netmask: 64"#,
            r#"    persistence_netmask: 0"#,
        ),
        (
            r#"  metrics_listen: "127.0.0.1:9800""#,
            r#"  metrics_listen: "[::1]:9800""#,
        ),
        (r#"    mtu: 1500"#, r#"    mtu: 1280"#),
        (r#"    mtu: 1500"#, r#"    mtu: 9000"#),
        (r#"    rx_descriptors: 1024"#, r#"    rx_descriptors: 64"#),
        (r#"    tx_descriptors: 1024"#, r#"    tx_descriptors: 2048"#),
    ];
    for (line, replacement) in cases {
        let text = base_with(line, replacement);
        if let Err(errors) = parse(&text, "test.yaml", &host()) {
            panic!("{replacement}: unexpected errors:\n{errors}");
        }
    }
    // Same VIP and port with the other protocol is another service.
    let text = base_with(r#"    vip: "198.18.0.54""#, r#"    vip: "198.18.0.100""#).replace(
        "    protocol: tcp\n    mode: tunnel",
        "    protocol: udp\n    mode: tunnel",
    );
    assert_eq!(parse_ok(&text).services[3].protocol, Protocol::Udp);
}

/// Expected errors as (line, col, message fragment).
type Expected = &'static [(usize, usize, &'static str)];

/// (line of BASE, replacement, expected errors as (line, col, message fragment)).
type Case = (
    &'static str,
    &'static str,
    &'static [(usize, usize, &'static str)],
);

fn check_cases(cases: &[Case]) {
    for (line, replacement, expected) in cases {
        let errors = parse_err(&base_with(line, replacement));
        assert_errors(&errors, expected, replacement);
    }
}

#[test]
fn eal_rules() {
    check_cases(&[
        (
            "  cores: [0, 1, 2]",
            "  cores: []",
            &[(2, 10, "eal.cores: needs at least one core")],
        ),
        (
            "  cores: [0, 1, 2]",
            "  cores: [0, 1, 1, 2]",
            &[(2, 17, "eal.cores[2]: core 1 is listed twice")],
        ),
        (
            "  cores: [0, 1, 2]",
            "  cores: [0, 1, 2, 9]",
            &[(
                2,
                20,
                "eal.cores[3]: CPU 9 is not online on this host (online: 0-3)",
            )],
        ),
        (
            "  cores: [0, 1, 2]",
            "  cores: [0, 1, 2, 4294967296]",
            &[(
                2,
                20,
                "eal.cores[3]: 4294967296 is out of range 0..=4294967295",
            )],
        ),
        (
            "  memory_mb: 512",
            "  memory_mb: 63",
            &[(3, 14, "eal.memory_mb: 63 is out of range 64..=4294967295")],
        ),
        (
            "  file_prefix: test",
            "  file_prefix: te/st",
            &[(
                4,
                16,
                "eal.file_prefix: `te/st` is not a valid name: 1 to 64 of [A-Za-z0-9_-]",
            )],
        ),
        (
            "  file_prefix: test",
            "  file_prefix: \"\"",
            &[(4, 16, "eal.file_prefix: `` is not a valid name")],
        ),
        (
            r#"  args: ["--log-level=5"]"#,
            r#"  args: ["--log-level=5", "-l", "--file-prefix=x", "-m512", ""]"#,
            &[
                (
                    5,
                    27,
                    "eal.args[1]: EAL option `-l` is derived from `eal.cores`; set it there",
                ),
                (
                    5,
                    33,
                    "eal.args[2]: EAL option `--file-prefix` is derived from `eal.file_prefix`",
                ),
                (
                    5,
                    52,
                    "eal.args[3]: EAL option `-m` is derived from `eal.memory_mb`",
                ),
                (5, 61, "eal.args[4]: empty EAL argument"),
            ],
        ),
        (
            r#"  args: ["--log-level=5"]"#,
            r#"  args: ["--no-huge", "--lcores=0@0", "-c", "0x3"]"#,
            &[
                (
                    5,
                    10,
                    "eal.args[0]: EAL option `--no-huge` is derived from `eal.hugepages`",
                ),
                (
                    5,
                    23,
                    "eal.args[1]: EAL option `--lcores` is derived from `eal.cores`",
                ),
                (
                    5,
                    39,
                    "eal.args[2]: EAL option `-c` is derived from `eal.cores`",
                ),
            ],
        ),
    ]);
}

#[test]
fn eal_core_checks_are_skipped_without_host_facts() {
    let text = base_with("  cores: [0, 1, 2]", "  cores: [0, 1, 2, 99]");
    assert!(parse(&text, "test.yaml", &HostFacts::default()).is_ok());
}

#[test]
fn port_rules() {
    check_cases(&[
        (
            "  - name: wan",
            "  - name: WAN",
            &[(7, 11, "ports[0].name: `WAN` is not a valid name: 1 to 15 of [a-z0-9_-]")],
        ),
        (
            "  - name: wan",
            "  - name: abcdefghijklmnop",
            &[(7, 11, "ports[0].name: `abcdefghijklmnop` is not a valid name")],
        ),
        (
            "  - name: lan",
            "  - name: wan",
            &[(13, 11, "ports[1].name: port name `wan` is used twice")],
        ),
        (
            r#"    device: "0000:3b:00.0""#,
            r#"    device: "eth0""#,
            &[(8, 13, "ports[0].device: `eth0`: expected a PCI address (\"0000:3b:00.0\" or \"3b:00.0\") or a vdev spec")],
        ),
        (
            r#"    device: "0000:3b:00.0""#,
            r#"    device: "0000:3b:00.8""#,
            &[(8, 13, "ports[0].device: `0000:3b:00.8`: bad PCI address")],
        ),
        (
            r#"    device: "net_af_packet1,iface=veth-lan""#,
            r#"    device: "3B:00.0""#,
            &[(14, 13, "ports[1].device: device 0000:3b:00.0 is already used by ports[0]")],
        ),
        (
            r#"    device: "net_null0""#,
            r#"    device: "net_af_packet1,iface=other""#,
            &[(17, 13, "ports[2].device: device net_af_packet1 is already used by ports[1]")],
        ),
        (
            r#"    device: "net_null0""#,
            r#"    device: "net_null0,iface""#,
            &[(17, 13, "ports[2].device: `net_null0,iface`: bad vdev argument `iface`")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.1/33"]"#,
            &[(18, 17, "ports[2].addresses[0]: `198.20.0.1/33` is not an address/prefix-length")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.1"]"#,
            &[(18, 17, "ports[2].addresses[0]: `198.20.0.1` is not an address/prefix-length")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.0/24"]"#,
            &[(18, 17, "ports[2].addresses[0]: 198.20.0.0 is the network address of 198.20.0.0/24")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.255/24"]"#,
            &[(18, 17, "198.20.0.255 is the broadcast address of 198.20.0.0/24")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["2001:3::/64"]"#,
            &[(18, 17, "2001:3:: is the subnet-router anycast address of 2001:3::/64")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.1/0"]"#,
            &[(18, 17, "198.20.0.1/0: a connected subnet cannot be the whole address space")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["224.0.0.1/24"]"#,
            &[(18, 17, "224.0.0.1 is not a unicast address")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["127.0.0.2/8"]"#,
            &[(18, 17, "127.0.0.2 is not a unicast address")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.18.0.1/24"]"#,
            &[(18, 17, "ports[2].addresses[0]: address 198.18.0.1 is already on port wan")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.1/24", "198.20.0.1/25"]"#,
            &[(18, 34, "ports[2].addresses[1]: address 198.20.0.1 is already on port spare")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.18.7.1/16"]"#,
            &[(18, 17, "ports[2].addresses[0]: subnet 198.18.0.0/16 overlaps 198.18.0.0/24 of port wan")],
        ),
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["2001:2::9/126"]"#,
            &[(18, 17, "subnet 2001:2::8/126 overlaps 2001:2::/64 of port wan")],
        ),
        (
            "    mtu: 1500",
            "    mtu: 1279",
            &[(10, 10, "ports[0].mtu: 1279 is below 1280, the IPv6 minimum MTU")],
        ),
        ("    mtu: 1500", "    mtu: 67", &[(10, 10, "ports[0].mtu: 67 is out of range 68..=9000")]),
        ("    mtu: 1500", "    mtu: 9001", &[(10, 10, "ports[0].mtu: 9001 is out of range 68..=9000")]),
        (
            "    rx_descriptors: 1024",
            "    rx_descriptors: 1000",
            &[(11, 21, "ports[0].rx_descriptors: 1000 is not a power of two")],
        ),
        (
            "    tx_descriptors: 1024",
            "    tx_descriptors: 32768",
            &[(12, 21, "ports[0].tx_descriptors: 32768 is out of range 64..=16384")],
        ),
        (
            "    tx_descriptors: 1024",
            "    tx_descriptors: 32",
            &[(12, 21, "ports[0].tx_descriptors: 32 is out of range 64..=16384")],
        ),
    ]);
}

#[test]
fn port_count_limits() {
    let errors = parse_err("eal: {cores: [0, 1]}\nports: []\nworkers: {cores: [1]}\n");
    assert_errors(
        &errors,
        &[(2, 8, "ports: needs at least one port")],
        "no ports",
    );

    let mut text = String::from(
        "eal: {cores: [0, 1]}\nworkers: {cores: [1]}\nmempool: {mbufs: 200000}\nports:\n",
    );
    for i in 0..33 {
        text.push_str(&format!("  - {{name: p{i}, device: net_null{i}}}\n"));
    }
    let errors = parse_err(&text);
    assert_errors(
        &errors,
        &[(5, 3, "ports: 33 ports exceed RTE_MAX_ETHPORTS (32)")],
        "33 ports",
    );
}

#[test]
fn worker_rules() {
    check_cases(&[
        (
            "  cores: [1, 2]",
            "  cores: [1, 3]",
            &[(20, 14, "workers.cores[1]: core 3 is not in eal.cores [0, 1, 2]")],
        ),
        (
            "  cores: [1, 2]",
            "  cores: [0, 1]",
            &[(20, 11, "workers.cores[0]: core 0 is the management core (eal.cores[0])")],
        ),
        ("  cores: [1, 2]", "  cores: [1, 1]", &[(20, 14, "workers.cores[1]: core 1 is listed twice")]),
        ("  cores: [1, 2]", "  cores: []", &[(20, 10, "workers.cores: needs at least one worker core")]),
        ("  burst: 32", "  burst: 0", &[(21, 10, "workers.burst: 0 is out of range 1..=256")]),
        ("  burst: 32", "  burst: 257", &[(21, 10, "workers.burst: 257 is out of range 1..=256")]),
        (
            r#"  idle_sleep_max: "1ms""#,
            r#"  idle_sleep_max: "0us""#,
            &[(22, 19, "workers.idle_sleep_max: 0s is out of range 1us..=100ms")],
        ),
        (
            r#"  idle_sleep_max: "1ms""#,
            r#"  idle_sleep_max: "101ms""#,
            &[(22, 19, "workers.idle_sleep_max: 101ms is out of range 1us..=100ms")],
        ),
        (
            r#"  idle_sleep_max: "1ms""#,
            r#"  idle_sleep_max: fast"#,
            &[(22, 19, "workers.idle_sleep_max: invalid duration `fast`: expected an integer followed by a unit (us, ms, s, m, h)")],
        ),
    ]);
}

#[test]
fn workers_are_checked_against_eal_cores_even_if_eal_is_bad() {
    let text =
        base_with("  memory_mb: 512", "  memory_mb: 1").replace("cores: [1, 2]", "cores: [1, 5]");
    assert_errors(
        &parse_err(&text),
        &[
            (3, 14, "eal.memory_mb: 1 is out of range"),
            (
                20,
                14,
                "workers.cores[1]: core 5 is not in eal.cores [0, 1, 2]",
            ),
        ],
        "bad eal",
    );
}

#[test]
fn mempool_rules() {
    // 3 ports x 2 workers x (1024 + 1024) + 4 x 32 x 2 = 12544.
    check_cases(&[
        (
            "  mbufs: 16383",
            "  mbufs: 12543",
            &[(
                24,
                10,
                "mempool.mbufs: 12543 is too few: need at least 12544",
            )],
        ),
        (
            "  cache_size: 256",
            "  cache_size: 513",
            &[(25, 15, "mempool.cache_size: 513 is out of range 0..=512")],
        ),
        (
            "  mbufs: 16383",
            "  mbufs: 4294967296",
            &[(
                24,
                10,
                "mempool.mbufs: 4294967296 is out of range 12544..=4294967295",
            )],
        ),
    ]);
    // The floor of 1023 holds for the smallest setup.
    let text = "eal: {cores: [0, 1]}\nports: [{name: p, device: net_null0, rx_descriptors: 64, tx_descriptors: 64}]\n\
                workers: {cores: [1], burst: 1}\nmempool: {mbufs: 1022}\n";
    assert_errors(
        &parse_err(text),
        &[(4, 18, "mempool.mbufs: 1022 is too few: need at least 1023")],
        "floor",
    );
}

#[test]
fn defaulted_value_errors_are_reported_at_the_parent_mapping() {
    // The default 16383 mbufs are too few for 16384-entry rings; there is no `mbufs`
    // key, so the error points at the `mempool` mapping, or the root without one.
    let text =
        "eal: {cores: [0, 1]}\nports: [{name: p, device: net_null0, rx_descriptors: 16384}]\n\
                workers: {cores: [1]}\n";
    assert_errors(
        &parse_err(text),
        &[(1, 1, "mempool.mbufs: 16383 is too few: need at least 17536")],
        "no mempool",
    );
    let text = format!("{text}mempool:\n  cache_size: 8\n");
    assert_errors(
        &parse_err(&text),
        &[(5, 3, "mempool.mbufs: 16383 is too few: need at least 17536")],
        "mempool without mbufs",
    );
    // A FULLNAT service without `local_addresses` is reported at the service mapping.
    let text = base_with(r#"    local_addresses: ["198.19.0.2"]"#, "    # none");
    assert_errors(
        &parse_err(&text),
        &[(
            38,
            5,
            "services[0].local_addresses: mode fullnat needs at least one local address",
        )],
        "fullnat without local addresses",
    );
}

#[test]
fn management_rules() {
    check_cases(&[
        (
            r#"  metrics_listen: "127.0.0.1:9800""#,
            r#"  metrics_listen: "127.0.0.1""#,
            &[(
                27,
                19,
                "management.metrics_listen: `127.0.0.1` is not ADDRESS:PORT",
            )],
        ),
        (
            r#"  metrics_listen: "127.0.0.1:9800""#,
            r#"  metrics_listen: "127.0.0.1:0""#,
            &[(
                27,
                19,
                "management.metrics_listen: port 0 picks a random port",
            )],
        ),
        (
            r#"  control_socket: "/run/ferrovs/ctl.sock""#,
            r#"  control_socket: "ctl.sock""#,
            &[(
                28,
                19,
                "management.control_socket: `ctl.sock` is not an absolute path",
            )],
        ),
        (
            r#"  control_socket: "/run/ferrovs/ctl.sock""#,
            r#"  control_socket: "/run/ferrovs/""#,
            &[(
                28,
                19,
                "management.control_socket: `/run/ferrovs/` names a directory",
            )],
        ),
    ]);
    let socket = |len: usize| format!("  control_socket: /run/{}", "s".repeat(len - "/run/".len()));
    assert!(parse(
        &base_with(r#"  control_socket: "/run/ferrovs/ctl.sock""#, &socket(107)),
        "t",
        &host()
    )
    .is_ok());
    assert_errors(
        &parse_err(&base_with(
            r#"  control_socket: "/run/ferrovs/ctl.sock""#,
            &socket(108),
        )),
        &[(
            28,
            19,
            "management.control_socket: path is 108 bytes; a Unix socket path holds at most 107",
        )],
        "long socket path",
    );
    // On this host, an existing path that is not a socket is refused (ferrovs would
    // otherwise delete it to bind); a missing path is fine.
    let here = HostFacts {
        inspect_paths: true,
        ..host()
    };
    let file = std::env::temp_dir().join(format!("ferrovs-not-a-socket-{}", std::process::id()));
    std::fs::write(&file, "keep me").unwrap();
    for (path, what) in [
        (file.display().to_string(), "a regular file"),
        ("/dev/null".to_string(), "a device or other special file"),
        ("/tmp".to_string(), "a directory"),
    ] {
        let errors = parse(
            &base_with(
                r#"  control_socket: "/run/ferrovs/ctl.sock""#,
                &format!("  control_socket: {path}"),
            ),
            "t",
            &here,
        )
        .unwrap_err()
        .to_string();
        assert!(
            errors.contains(&format!("`{path}` exists and is {what}, not a socket")),
            "{errors}"
        );
    }
    std::fs::remove_file(&file).unwrap();
    let missing = format!("  control_socket: {}.sock", file.display());
    assert!(parse(
        &base_with(r#"  control_socket: "/run/ferrovs/ctl.sock""#, &missing),
        "t",
        &here
    )
    .is_ok());
}

#[test]
fn connection_rules() {
    check_cases(&[
        (
            "  max: 1000",
            "  max: 0",
            &[(30, 8, "connections.max: 0 is out of range 1..=100000000")],
        ),
        (
            "  max: 1000",
            "  max: 16777215",
            &[(
                30,
                8,
                "connections.max: 16777215 over 2 worker(s) is 8388608 a worker; a worker holds at most 8388607",
            )],
        ),
        (
            "  max: 1000",
            "  max: 100000001",
            &[(
                30,
                8,
                "connections.max: 100000001 is out of range 1..=100000000",
            )],
        ),
        (
            r#"  timeouts: { tcp_established: "900s", udp: "300s" }"#,
            r#"  timeouts: { tcp_established: "0s", udp: "300" }"#,
            &[
                (
                    31,
                    32,
                    "connections.timeouts.tcp_established: must be greater than zero",
                ),
                (
                    31,
                    43,
                    "connections.timeouts.udp: invalid duration `300`: missing unit",
                ),
            ],
        ),
    ]);
}

#[test]
fn route_rules() {
    check_cases(&[
        (
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            r#"  - { prefix: "2001:2:0:101::/56", via: "2001:2::fe" }"#,
            &[(34, 15, "routes[1].prefix: prefix 2001:2:0:101::/56 has host bits set; did you mean 2001:2:0:100::/56?")],
        ),
        (
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            r#"  - { prefix: "2001:2:0:100::/129", via: "2001:2::fe" }"#,
            &[(34, 15, "routes[1].prefix: `2001:2:0:100::/129` is not an address/prefix-length")],
        ),
        (
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }   # again"#,
            &[(34, 15, "routes[1].prefix: prefix 0.0.0.0/0 is listed twice")],
        ),
        (
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            r#"  - { prefix: "2001:2:0:100::/56", via: "198.18.0.9" }"#,
            &[(34, 41, "routes[1].via: next hop 198.18.0.9 is IPv4 but prefix 2001:2:0:100::/56 is IPv6")],
        ),
        (
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:5::fe" }"#,
            &[(34, 41, "routes[1].via: next hop 2001:5::fe is not inside any port's connected subnet (2001:2::/64 on wan)")],
        ),
        (
            r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }"#,
            r#"  - { prefix: "0.0.0.0/0", via: "198.21.0.254" }"#,
            &[(33, 33, "routes[0].via: next hop 198.21.0.254 is not inside any port's connected subnet (198.18.0.0/24 on wan, 198.19.0.0/24 on lan, 198.20.0.0/24 on spare)")],
        ),
        (
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::1" }"#,
            &[(34, 41, "routes[1].via: next hop 2001:2::1 is the address of port wan")],
        ),
        (
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::zz" }"#,
            &[(34, 41, "routes[1].via: `2001:2::zz` is not an IPv4 or IPv6 address")],
        ),
        (
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            r#"  - { prefix: "2001:2:0:100::/56", via: "ff02::1" }"#,
            &[(34, 41, "routes[1].via: ff02::1 is not a unicast address")],
        ),
    ]);
}

#[test]
fn a_route_may_have_several_next_hops() {
    let base = base_with(
        r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }"#,
        r#"  - { prefix: "0.0.0.0/0", via: ["198.18.0.254", "198.19.0.254", "198.18.0.253"] }"#,
    );
    let cfg = parse(&base, "test.yaml", &HostFacts::default()).unwrap();
    assert_eq!(
        cfg.routes[0].via,
        vec![ip("198.18.0.254"), ip("198.19.0.254"), ip("198.18.0.253")]
    );
    assert_eq!(cfg.routes[1].via, vec![ip("2001:2::fe")], "the single form");
    let one = base_with(
        r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }"#,
        r#"  - { prefix: "0.0.0.0/0", via: ["198.18.0.254"] }"#,
    );
    let cfg = parse(&one, "test.yaml", &HostFacts::default()).unwrap();
    assert_eq!(cfg.routes[0].via, vec![ip("198.18.0.254")]);
}

#[test]
fn a_bond_names_its_members_to_the_eal() {
    let text = base_with(
        r#"    device: "0000:3b:00.0""#,
        "    device: \"net_bonding0,mode=1\"\n    members: [\"net_af_packet10,iface=bm0\", \"0000:3b:00.1\"]",
    );
    let cfg = parse(&text, "test.yaml", &HostFacts::default()).unwrap();
    let wan = &cfg.ports[0];
    assert!(wan.is_bond());
    assert_eq!(wan.device.ethdev_name(), "net_bonding0");
    assert_eq!(wan.members.len(), 2);
    assert_eq!(
        wan.eal_device_spec(),
        "net_bonding0,mode=1,slave=net_af_packet10,slave=0000:3b:00.1"
    );
    assert!(!cfg.ports[1].is_bond());
    assert_eq!(
        cfg.ports[1].eal_device_spec(),
        "net_af_packet1,iface=veth-lan",
        "other devices as written"
    );
}

#[test]
fn bond_rules() {
    let line = r#"    device: "0000:3b:00.0""#;
    check_cases(&[
        (
            line,
            r#"    device: "net_bonding0,mode=1""#,
            &[(7, 5, "ports[0].members: a net_bonding port needs its member devices")],
        ),
        (
            line,
            "    device: \"0000:3b:00.0\"\n    members: [\"0000:3b:00.1\"]",
            &[(9, 14, "ports[0].members: members are for a net_bonding device")],
        ),
        (
            line,
            "    device: \"net_bonding0,mode=1,slave=net_null9\"\n    members: [\"net_null9\"]",
            &[(8, 13, "ports[0].device: name the bond's members in ports[].members")],
        ),
        (
            line,
            "    device: \"net_bonding0\"\n    members: [\"net_af_packet1,iface=x\", \"net_bonding1\"]",
            &[
                (9, 41, "ports[0].members[1]: a bond cannot be a member of a bond"),
                (15, 13, "ports[1].device: device net_af_packet1 is already used by ports[0].members[0]"),
            ],
        ),
    ]);
}

/// LACP runs in a mode-4 bond's bursts, due every 100 ms: an idle worker may
/// not sleep longer than 50 ms then; other modes and busy-polling are free.
#[test]
fn a_mode_4_bond_limits_the_idle_sleep() {
    let with = |mode: &str, backoff: &str, sleep: &str| {
        base_with(
            r#"    device: "0000:3b:00.0""#,
            &format!("    device: \"net_bonding0,mode={mode}\"\n    members: [\"0000:3b:00.1\"]"),
        )
        .replace(
            "  idle_sleep_max: \"1ms\"",
            &format!("  idle_backoff: {backoff}\n  idle_sleep_max: \"{sleep}\""),
        )
    };
    assert_errors(
        &parse_err(&with("4", "true", "80ms")),
        &[(
            24,
            19,
            "workers.idle_sleep_max: at most 50ms with a mode-4 (802.3ad) bond (ports[0]): \
             LACP needs the bond's bursts at least every 100 ms",
        )],
        "mode 4",
    );
    for ok in [
        with("4", "true", "50ms"),
        with("4", "false", "80ms"),
        with("1", "true", "100ms"),
    ] {
        if let Err(e) = parse(&ok, "test.yaml", &host()) {
            panic!("{e}");
        }
    }
}

#[test]
fn multipath_route_rules() {
    let line = r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }"#;
    let many: Vec<String> = (11..=27).map(|i| format!("\"198.18.0.{i}\"")).collect();
    let too_many = format!(
        r#"  - {{ prefix: "0.0.0.0/0", via: [{}] }}"#,
        many.join(", ")
    );
    check_cases(&[
        (
            line,
            r#"  - { prefix: "0.0.0.0/0", via: [] }"#,
            &[(33, 33, "routes[0].via: a route needs at least one next hop")],
        ),
        (
            line,
            too_many.leak(),
            &[(33, 33, "routes[0].via: 17 next hops; a route has at most 16")],
        ),
        (
            line,
            r#"  - { prefix: "0.0.0.0/0", via: ["198.18.0.254", "198.18.0.254"] }"#,
            &[(33, 50, "routes[0].via[1]: next hop 198.18.0.254 is listed twice")],
        ),
        (
            line,
            r#"  - { prefix: "0.0.0.0/0", via: ["198.18.0.254", "198.21.0.254"] }"#,
            &[(33, 50, "routes[0].via[1]: next hop 198.21.0.254 is not inside any port's connected subnet (198.18.0.0/24 on wan, 198.19.0.0/24 on lan, 198.20.0.0/24 on spare)")],
        ),
        (
            line,
            r#"  - { prefix: "0.0.0.0/0", via: ["198.18.0.254", "2001:2::fe"] }"#,
            &[(33, 50, "routes[0].via[1]: next hop 2001:2::fe is IPv6 but prefix 0.0.0.0/0 is IPv4")],
        ),
        (
            line,
            r#"  - { prefix: "0.0.0.0/0", via: ["198.18.0.100", "198.18.0.254"] }"#,
            &[(33, 34, "routes[0].via[0]: next hop 198.18.0.100 is the VIP of service web: ferrovs answers for it itself")],
        ),
    ]);
}

#[test]
fn next_hop_error_names_the_missing_family() {
    let text = "eal: {cores: [0, 1]}\nports: [{name: p, device: net_null0, addresses: [\"198.18.0.1/24\"]}]\n\
                workers: {cores: [1]}\nroutes: [{prefix: \"::/0\", via: \"2001:2::1\"}]\n";
    assert_errors(
        &parse_err(text),
        &[(4, 32, "routes[0].via: next hop 2001:2::1 is not inside any port's connected subnet (no port has an IPv6 address)")],
        "no v6",
    );
}

#[test]
fn neighbor_rules() {
    check_cases(&[
        (
            r#"  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }"#,
            r#"  - { ip: "198.21.0.10", mac: "02:00:00:00:01:10" }"#,
            &[(36, 11, "neighbors[0].ip: neighbor 198.21.0.10 is not inside any port's connected subnet")],
        ),
        (
            r#"  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }"#,
            r#"  - { ip: "198.19.0.1", mac: "02:00:00:00:01:10" }"#,
            &[(36, 11, "neighbors[0].ip: neighbor 198.19.0.1 is the address of port lan")],
        ),
        (
            r#"  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }"#,
            r#"  - { ip: "198.19.0.10", mac: "01:00:5e:00:00:01" }"#,
            &[(36, 31, "neighbors[0].mac: 01:00:5e:00:00:01 is not a unicast MAC address")],
        ),
        (
            r#"  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }"#,
            r#"  - { ip: "198.19.0.10", mac: "00:00:00:00:00:00" }"#,
            &[(36, 31, "neighbors[0].mac: 00:00:00:00:00:00 is not a unicast MAC address")],
        ),
        (
            r#"  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }"#,
            r#"  - { ip: "198.19.0.10", mac: "02:00:00:00:01" }"#,
            &[(36, 31, "neighbors[0].mac: `02:00:00:00:01`: expected a MAC address like 02:00:00:00:01:10")],
        ),
        (
            r#"  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }"#,
            "  - { ip: \"198.19.0.10\", mac: \"02:00:00:00:01:10\" }\n  - { ip: \"198.19.0.10\", mac: \"02:00:00:00:01:11\" }",
            &[(37, 11, "neighbors[1].ip: neighbor 198.19.0.10 is listed twice")],
        ),
    ]);
}

#[test]
fn service_rules() {
    check_cases(&[
        (
            "  - name: web",
            "  - name: \"we b\"",
            &[(38, 11, "services[0].name: `we b` is not a valid name: 1 to 32 of [A-Za-z0-9_.-]")],
        ),
        (
            "  - name: web",
            "  - name: abcdefghijklmnopqrstuvwxyz0123456",
            &[(38, 11, "services[0].name: `abcdefghijklmnopqrstuvwxyz0123456` is not a valid name")],
        ),
        ("  - name: dr6", "  - name: web", &[(49, 11, "services[1].name: service name `web` is used twice")]),
        (
            r#"    vip: "198.18.0.100""#,
            r#"    vip: "198.18.0""#,
            &[(39, 10, "services[0].vip: `198.18.0` is not an IPv4 or IPv6 address")],
        ),
        (
            r#"    vip: "198.18.0.100""#,
            r#"    vip: "198.18.0.1""#,
            &[(39, 10, "services[0].vip: VIP 198.18.0.1 is the address of port wan")],
        ),
        (
            r#"    vip: "198.18.0.100""#,
            r#"    vip: "239.1.1.1""#,
            &[(39, 10, "services[0].vip: 239.1.1.1 is not a unicast address")],
        ),
        (
            r#"    vip: "198.18.0.54""#,
            r#"    vip: "198.18.0.100""#,
            &[(68, 10, "services[3].vip: 198.18.0.100:80/tcp is already service `web`")],
        ),
        (
            "    port: 443",
            "    port: 0",
            // Every port (persistent, as dr6 is): its real server takes no port.
            &[(
                57,
                40,
                "services[1].real_servers[0].port: port 443 in a service with port 0",
            )],
        ),
        (
            "    port: 443",
            "    port: 65536",
            &[(51, 11, "services[1].port: 65536 is out of range 0..=65535")],
        ),
        (
            "    mode: fullnat",
            "    mode: masq",
            &[(42, 11, "services[0].mode: `masq`: unknown mode, expected one of: nat, fullnat, dr, tunnel")],
        ),
        (
            "    scheduler: wrr",
            "    scheduler: maglev",
            &[(43, 16, "services[0].scheduler: `maglev`: unknown scheduler, expected one of: rr, wrr, lc, wlc, sh, dh, sed, nq, mh, lblc, lblcr, fo, ovf, twos")],
        ),
        (
            r#"    persistence: "0s""#,
            r#"    persistence: "5""#,
            &[(44, 18, "services[0].persistence: invalid duration `5`: missing unit")],
        ),
        (
            "    persistence_netmask: 64",
            "    persistence_netmask: 129",
            &[(55, 26, "services[1].persistence_netmask: 129 is out of range 0..=128")],
        ),
    ]);
}

#[test]
fn service_protocol_and_netmask_rules() {
    check_cases(&[
        (
            "    protocol: udp",
            "    protocol: sctp",
            &[(
                61,
                15,
                "services[2].protocol: `sctp`: unknown protocol, expected one of: tcp, udp",
            )],
        ),
        (
            "    scheduler: sh",
            "    persistence_netmask: 33",
            &[(
                63,
                26,
                "services[2].persistence_netmask: 33 is out of range 0..=32",
            )],
        ),
    ]);
}

#[test]
fn local_address_rules() {
    check_cases(&[
        (
            r#"    local_addresses: ["198.19.0.2"]"#,
            "    local_addresses: []",
            &[(45, 22, "services[0].local_addresses: mode fullnat needs at least one local address")],
        ),
        (
            "    scheduler: sh",
            r#"    local_addresses: ["198.19.0.3"]"#,
            &[(63, 22, "services[2].local_addresses: only mode fullnat uses local addresses, this service is nat")],
        ),
        (
            r#"    local_addresses: ["198.19.0.2"]"#,
            r#"    local_addresses: ["198.21.0.2"]"#,
            &[(45, 23, "services[0].local_addresses[0]: local address 198.21.0.2 is not inside any port's connected subnet")],
        ),
        (
            r#"    local_addresses: ["198.19.0.2"]"#,
            r#"    local_addresses: ["2001:2::2"]"#,
            &[(45, 23, "services[0].local_addresses[0]: local address 2001:2::2 is IPv6 but the real servers are IPv4 like the VIP")],
        ),
        (
            r#"    local_addresses: ["198.19.0.2"]"#,
            r#"    local_addresses: ["198.19.0.2", "198.19.0.2"]"#,
            &[(45, 37, "services[0].local_addresses[1]: local address 198.19.0.2 is listed twice")],
        ),
        (
            r#"    local_addresses: ["198.19.0.2"]"#,
            r#"    local_addresses: ["0.0.0.0"]"#,
            &[(45, 23, "services[0].local_addresses[0]: 0.0.0.0 is not a unicast address")],
        ),
    ]);
}

#[test]
fn real_server_rules() {
    check_cases(&[
        (
            r#"      - { address: "198.19.0.10", port: 8080, weight: 1 }"#,
            r#"      - { address: "198.19.0.10", port: 8080, weight: 65536 }"#,
            &[(47, 55, "services[0].real_servers[0].weight: 65536 is out of range 0..=65535")],
        ),
        (
            r#"      - { address: "198.19.0.10", port: 8080, weight: 1 }"#,
            r#"      - { address: "198.19.0.10", port: 0, weight: 1 }"#,
            &[(47, 41, "services[0].real_servers[0].port: 0 is out of range 1..=65535")],
        ),
        (
            r#"      - { address: "198.19.0.10", port: 8080, weight: 1 }"#,
            r#"      - { address: "2001:2::10", port: 8080, weight: 1 }"#,
            &[(47, 20, "services[0].real_servers[0].address: real server 2001:2::10 is IPv6 but the VIP 198.18.0.100 is IPv4")],
        ),
        (
            r#"      - { address: "198.19.0.10", port: 8080, weight: 1 }"#,
            r#"      - { address: "198.19.0.1", port: 8080, weight: 1 }"#,
            &[(47, 20, "services[0].real_servers[0].address: real server 198.19.0.1 is the address of port lan")],
        ),
        (
            r#"      - { address: "198.19.0.10", port: 8080, weight: 1 }"#,
            r#"      - { address: "198.18.0.53", port: 8080, weight: 1 }"#,
            &[(47, 20, "services[0].real_servers[0].address: real server 198.18.0.53 is the VIP of service `dns`")],
        ),
        (
            r#"      - { address: "198.19.0.10", port: 8080, weight: 1 }"#,
            r#"      - { address: "255.255.255.255", port: 8080, weight: 1 }"#,
            &[(47, 20, "services[0].real_servers[0].address: 255.255.255.255 is not a unicast address")],
        ),
        (
            r#"      - { address: "198.19.0.11", port: 8080 }"#,
            r#"      - { address: "198.19.0.10", port: 8080 }"#,
            &[(48, 20, "services[0].real_servers[1].address: real server 198.19.0.10:8080 is listed twice")],
        ),
        (
            r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }"#,
            r#"  - { prefix: "198.51.100.0/24", via: "198.18.0.254" }"#,
            &[(66, 20, "services[2].real_servers[1].address: real server 203.0.113.5 is not routable: no connected subnet or route covers it")],
        ),
        (
            r#"      - { address: "198.51.100.7", port: 80, weight: 0 }"#,
            r#"      - { address: "198.51.100.7", port: 8080, weight: 0 }"#,
            &[(73, 42, "services[3].real_servers[0].port: port 8080 differs from the service port 80; mode tunnel cannot rewrite ports")],
        ),
        (
            r#"      - { address: "2001:2::10", port: 443 }"#,
            r#"      - { address: "2001:2::10", port: 8443 }"#,
            &[(57, 40, "services[1].real_servers[0].port: port 8443 differs from the service port 443; mode dr cannot rewrite ports")],
        ),
        (
            r#"      - { address: "2001:2::10", port: 443 }"#,
            r#"      - { address: "2001:2:0:100::10", port: 443 }"#,
            &[(57, 20, "services[1].real_servers[0].address: real server (mode dr) 2001:2:0:100::10 is not inside any port's connected subnet (2001:2::/64 on wan)")],
        ),
    ]);
}

#[test]
fn service_count_limit() {
    let mut text = String::from(
        "eal: {cores: [0, 1]}\nports: [{name: p, device: net_null0}]\nworkers: {cores: [1]}\nservices:\n",
    );
    for port in 1..=4097 {
        text.push_str(&format!(
            "  - {{name: s{port}, vip: 198.18.0.1, port: {port}, protocol: tcp, mode: nat}}\n"
        ));
    }
    assert_errors(
        &parse_err(&text),
        &[(5, 3, "services: 4097 services exceed the limit of 4096")],
        "4097 services",
    );
}

#[test]
fn several_errors_are_reported_together_in_file_order() {
    let text = base_with("  burst: 32", "  burst: 0")
        .replace(r#"vip: "198.18.0.100""#, r#"vip: "198.18.0.300""#)
        .replace("    mtu: 1500", "    mtu: 50")
        .replace(r#"mac: "02:00:00:00:01:10""#, r#"mac: "ff:ff:ff:ff:ff:ff""#)
        .replace(r#"via: "2001:2::fe""#, r#"via: "2001:9::fe""#);
    let errors = parse(&text, "test.yaml", &host()).unwrap_err();
    let expected = "\
test.yaml:10:10: ports[0].mtu: 50 is out of range 68..=9000
test.yaml:21:10: workers.burst: 0 is out of range 1..=256
test.yaml:34:41: routes[1].via: next hop 2001:9::fe is not inside any port's connected subnet (2001:2::/64 on wan)
test.yaml:36:31: neighbors[0].mac: ff:ff:ff:ff:ff:ff is not a unicast MAC address
test.yaml:39:10: services[0].vip: `198.18.0.300` is not an IPv4 or IPv6 address";
    assert_eq!(errors.to_string(), expected);
}

#[test]
fn cascading_errors_stay_meaningful() {
    // A bad address removes lan's subnet: what relied on it is reported too, each at
    // its own position, and nothing is reported twice.
    let text = base_with(
        r#"    addresses: ["198.19.0.1/24"]"#,
        r#"    addresses: ["198.19.0.1/24x"]"#,
    );
    assert_errors(
        &parse_err(&text),
        &[
            (15, 17, "ports[1].addresses[0]: `198.19.0.1/24x` is not an address/prefix-length"),
            (36, 11, "neighbors[0].ip: neighbor 198.19.0.10 is not inside any port's connected subnet"),
            (45, 23, "services[0].local_addresses[0]: local address 198.19.0.2 is not inside any port's connected subnet"),
        ],
        "lan subnet gone",
    );
}

#[test]
fn unknown_key_is_reported_with_its_position() {
    let text = base_with("  burst: 32", "  burts: 32");
    let errors = parse_err(&text);
    assert_errors(
        &errors,
        &[(21, 3, "workers: unknown field `burts`, expected one of `cores`, `burst`, `idle_backoff`, `idle_sleep_max`")],
        "burts",
    );
    let errors = parse_err(&base_with(
        "    mode: fullnat",
        "    mode: fullnat\n    weight: 3",
    ));
    assert_errors(
        &errors,
        &[(43, 5, "services[0]: unknown field `weight`")],
        "weight",
    );
    let errors = parse_err(&format!("{BASE}extra: 1\n"));
    assert_errors(&errors, &[(74, 1, "unknown field `extra`")], "top level");
}

#[test]
fn syntax_error_is_reported_with_its_position() {
    let errors = parse_err(&base_with("  cores: [1, 2]", "  cores: [1, 2]]"));
    assert_errors(
        &errors,
        &[(
            20,
            16,
            "did not find expected key, while parsing a block mapping at line 20 column 3",
        )],
        "extra bracket",
    );
    // The position is not repeated inside the message.
    assert!(
        !errors[0].message.contains("line 20 column 16"),
        "{}",
        errors[0]
    );
    assert_errors(
        &parse_err(&base_with("  burst: 32", "\tburst: 32")),
        &[(21, 1, "found character that cannot start any token")],
        "tab",
    );
    assert_errors(
        &parse_err("eal: {cores: [0, 1]\n"),
        &[(
            2,
            1,
            "did not find expected ',' or '}', while parsing a flow mapping at line 1 column 6",
        )],
        "unclosed",
    );
    assert_errors(
        &parse_err("eal:\n  cores: [0]\n bad indent: 1\n"),
        &[(3, 2, "did not find expected key")],
        "indent",
    );
}

#[test]
fn type_errors_and_missing_keys_come_from_serde_with_positions() {
    let errors = parse_err(&base_with("  memory_mb: 512", "  memory_mb: lots"));
    assert_errors(
        &errors,
        &[(
            3,
            14,
            "eal.memory_mb: invalid type: string \"lots\", expected u64",
        )],
        "type",
    );
    let errors = parse_err(&base_with("  memory_mb: 512", "  memory_mb: -5"));
    assert_errors(
        &errors,
        &[(
            3,
            14,
            "eal.memory_mb: invalid type: integer `-5`, expected u64",
        )],
        "negative",
    );
    let errors = parse_err(&base_with(
        r#"    device: "0000:3b:00.0""#,
        "    # no device",
    ));
    assert_errors(
        &errors,
        &[(7, 5, "ports[0]: missing field `device`")],
        "missing",
    );
    let errors = parse_err("ports: []\n");
    assert_errors(&errors, &[(1, 1, "missing field `eal`")], "missing section");
    let errors = parse_err(&base_with(
        "  cores: [0, 1, 2]",
        "  cores: [0, 1, 2]\n  cores: [0]",
    ));
    // serde reports a repeated key at the start of its mapping.
    assert_errors(
        &errors,
        &[(2, 3, "eal: duplicate field `cores`")],
        "duplicate key",
    );
}

#[test]
fn odd_documents_are_rejected() {
    assert_errors(&parse_err(""), &[(1, 1, "missing field `eal`")], "empty");
    assert_errors(
        &parse_err("# nothing\n"),
        &[(2, 1, "missing field `eal`")],
        "comment only",
    );
    // serde's messages name mappings, not Rust types.
    assert_errors(
        &parse_err("- 1\n- 2\n"),
        &[(
            1,
            1,
            "invalid type: sequence, expected the ferrovs config mapping",
        )],
        "sequence",
    );
    assert_errors(
        &parse_err("eal: 5\n"),
        &[(
            1,
            6,
            "eal: invalid type: integer `5`, expected the eal mapping",
        )],
        "scalar section",
    );
    let errors = parse_err(&format!("{BASE}---\n{BASE}"));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("more than one document"),
        "{}",
        errors[0]
    );
}

#[test]
fn aliases_are_expanded_and_positions_fall_back_to_the_alias() {
    let text = base_with("  cores: [1, 2]", "  cores: *workers")
        .replace("  cores: [0, 1, 2]", "  cores: &workers [0, 1, 2]");
    // Worker cores are the EAL cores, so core 0 (the management core) is refused at
    // the alias, its only position.
    assert_errors(
        &parse_err(&text),
        &[
            (20, 10, "workers.cores[0]: core 0 is the management core"),
            (
                24,
                10,
                "mempool.mbufs: 16383 is too few: need at least 18816",
            ),
        ],
        "alias",
    );
}

#[test]
fn a_repeated_service_is_reported_even_under_the_same_name() {
    let text = base_with(r#"    vip: "198.18.0.54""#, r#"    vip: "198.18.0.100""#)
        .replace("  - name: tun", "  - name: web");
    assert_errors(
        &parse_err(&text),
        &[
            (67, 11, "services[3].name: service name `web` is used twice"),
            (
                68,
                10,
                "services[3].vip: 198.18.0.100:80/tcp is already service `web`",
            ),
        ],
        "same name and endpoint",
    );
}

const CPU_MAP: &str = "eal:
  cores: [0, 1, 2]
  cpu_map: { 2: 1 }
ports:
  - { name: wan, device: net_null0 }
workers:
  cores: [1, 2]
";

#[test]
fn cpu_map_places_lcores_on_existing_cpus() {
    let two_cpus = HostFacts {
        online_cpus: Some(vec![0, 1]),
        ..HostFacts::default()
    };
    let config = parse(CPU_MAP, "test.yaml", &two_cpus).unwrap();
    assert_eq!(config.eal.cores, vec![0, 1, 2]);
    assert_eq!(config.eal.cpus, vec![0, 1, 1]);
    // without the map, lcore 2 is a CPU this host does not have
    let errors = parse(
        &CPU_MAP.replace("  cpu_map: { 2: 1 }\n", ""),
        "test.yaml",
        &two_cpus,
    )
    .unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!((errors.0[0].line, errors.0[0].col), (2, 17));
    assert!(
        errors.0[0].message.contains("eal.cpu_map can place lcores"),
        "{}",
        errors.0[0].message
    );
    // a mapped CPU must exist, and only lcores in eal.cores can be mapped
    let errors = parse(
        &CPU_MAP.replace("{ 2: 1 }", "{ 2: 7, 5: 0 }"),
        "test.yaml",
        &two_cpus,
    )
    .unwrap_err();
    let messages: Vec<String> = errors
        .0
        .iter()
        .map(|e| format!("{}:{} {}", e.line, e.col, e.message))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("3:") && m.contains("lcore 5 is not in eal.cores")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("3:") && m.contains("CPU 7 is not online")),
        "{messages:?}"
    );
}

const HEALTH: &str = "eal:
  cores: [0, 1]
ports:
  - { name: lan, device: net_null0, addresses: [\"198.19.0.1/24\"] }
workers:
  cores: [1]
services:
  - name: web
    vip: 198.19.0.100
    port: 80
    protocol: tcp
    mode: nat
    health_check:
      type: http
      interval: 500ms
      timeout: 200ms
      rise: 1
      fall: 2
      path: /healthz
      expect_status: 204
    real_servers: [{ address: 198.19.0.10 }]
";

#[test]
fn health_checks_parse_with_defaults_and_rules() {
    let c = parse_ok(HEALTH);
    let h = &c.services[0].health_check;
    assert_eq!(h.kind, CheckKind::Http);
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_millis(500), Duration::from_millis(200))
    );
    assert_eq!(
        (h.rise, h.fall, h.expect_status, h.path.as_str()),
        (1, 2, 204, "/healthz")
    );
    assert!(h.passive);
    let tcp = parse_ok(
        &HEALTH
            .replace("type: http", "type: tcp")
            .replace("      path: /healthz\n      expect_status: 204\n", ""),
    );
    assert_eq!(tcp.services[0].health_check.kind, CheckKind::Tcp);
    assert_eq!(tcp.services[0].health_check.path, "/");
    assert_eq!(parse_ok(&HEALTH.replace("    health_check:\n      type: http\n      interval: 500ms\n      timeout: 200ms\n      rise: 1\n      fall: 2\n      path: /healthz\n      expect_status: 204\n", "")).services[0].health_check, HealthCheckConfig::default());

    let messages = |text: &str| -> Vec<String> {
        parse_err(text)
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
            .collect()
    };
    let m = messages(&HEALTH.replace("timeout: 200ms", "timeout: 2s"));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("16:16: ") && m[0].contains("exceeds the interval"),
        "{m:?}"
    );
    let m = messages(&HEALTH.replace("type: http", "type: tcp"));
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m[0].contains("only an http check requests a path"), "{m:?}");
    let m = messages(
        &HEALTH
            .replace("type: http", "type: icmp")
            .replace("fall: 2", "fall: 0")
            .replace("path: /healthz", "path: healthz"),
    );
    assert_eq!(m.len(), 3, "{m:?}");
    let m = messages(
        &HEALTH
            .replace("type: http", "type: none\n      passive: true")
            .replace("      path: /healthz\n      expect_status: 204\n", ""),
    );
    assert!(
        m.iter().any(|e| e.contains("needs an active check")),
        "{m:?}"
    );
}

#[test]
fn cluster_rules() {
    check_cases(&[
        (
            "    scheduler: wrr",
            "    scheduler: wrr\n    sloppy: true",
            &[
                (
                    44,
                    13,
                    "services[0].sloppy: sloppy needs a consistent scheduler (mh or sh): with wrr",
                ),
                (
                    44,
                    13,
                    "services[0].sloppy: sloppy needs dr or tunnel: in fullnat the replies pass",
                ),
            ],
        ),
        (
            "    mode: dr",
            "    mode: dr\n    sloppy: true",
            &[(
                54,
                13,
                "services[1].sloppy: sloppy needs a consistent scheduler (mh or sh): with wlc",
            )],
        ),
        (
            "    scheduler: wrr",
            "    scheduler: wrr\n    sched_flags: [mh-port, sh-portt]",
            &[
                (44, 19, "services[0].sched_flags[0]: mh-port is a flag of the mh scheduler, not of wrr"),
                (44, 28, "services[0].sched_flags[1]: `sh-portt`: unknown scheduler flag, expected one of: sh-fallback, sh-port, mh-fallback, mh-port"),
            ],
        ),
        (
            "    scheduler: sh",
            "    scheduler: sh\n    sched_flags: [sh-port, sh-port]",
            &[(64, 28, "services[2].sched_flags[1]: sh-port is given twice")],
        ),
        (
            "    mode: dr",
            "    mode: dr\n    quorum: 5000000000",
            &[(
                54,
                13,
                "services[1].quorum: 5000000000 is out of range 0..=4294967295",
            )],
        ),
    ]);
    let announce = |section: &str| format!("{BASE}announce:\n{section}");
    let cases: &[(&str, Expected)] = &[
        (
            "  kernel_table: 254\n",
            &[(
                75,
                17,
                "announce.kernel_table: table 254 is the kernel's `main` table",
            )],
        ),
        (
            "  kernel_table: 0\n",
            &[(75, 17, "announce.kernel_table: table 0 is no table")],
        ),
        (
            "  kernel_table: 100\n  shutdown_grace: \"11m\"\n",
            &[(
                76,
                19,
                "announce.shutdown_grace: 660s is out of range 0s..=600s",
            )],
        ),
    ];
    for (section, expected) in cases {
        assert_errors(&parse_err(&announce(section)), expected, section);
    }
    let no_kernel = announce("  kernel_table: 100\n").replace(
        "  control_socket: \"/run/ferrovs/ctl.sock\"",
        "  control_socket: \"/run/ferrovs/ctl.sock\"\n  exception_path: false",
    );
    assert_errors(
        &parse_err(&no_kernel),
        &[(76, 3, "announce: announce needs management.exception_path")],
        "exception_path: false",
    );
    let ok = parse_ok(&announce("  kernel_table: 100\n").replace(
        "    mode: dr\n",
        "    mode: dr\n    scheduler: mh\n    sched_flags: [mh-fallback, mh-port]\n    sloppy: true\n    quorum: 0\n",
    ));
    assert_eq!(
        ok.announce,
        Some(AnnounceConfig {
            kernel_table: 100,
            shutdown_grace: Duration::from_secs(5),
        })
    );
    assert!(ok.services[1].sloppy);
    assert_eq!(
        ok.services[1].sched_flags,
        [SchedFlag::MhFallback, SchedFlag::MhPort]
    );
    assert_eq!((ok.services[0].quorum, ok.services[1].quorum), (1, 0));
    assert!(!ok.services[0].sloppy);
}

#[test]
fn sync_rules() {
    let sync = |section: &str| format!("{BASE}sync:\n{section}");
    const OK: &str = "  listen: \"198.19.0.1:8848\"\n  peers: [\"198.19.0.2:8848\"]\n  key_file: /etc/ferrovs/sync.key\n";
    let cases: &[(&str, Expected)] = &[
        (
            "  listen: \"198.19.0.9:8848\"\n  peers: [\"198.19.0.2:8848\"]\n  key_file: /k\n",
            &[(75, 11, "sync.listen: 198.19.0.9 is no port's address")],
        ),
        (
            "  listen: \"198.19.0.1:8848\"\n  peers: []\n  key_file: /k\n",
            &[(76, 10, "sync.peers: sync needs at least one peer")],
        ),
        (
            "  listen: \"198.19.0.1:8848\"\n  peers: [\"198.19.0.1:8848\", \"198.18.0.1:1\"]\n  key_file: k\n",
            &[
                (76, 11, "sync.peers[0]: 198.19.0.1:8848 is given twice"),
                (76, 30, "sync.peers[1]: 198.18.0.1 is the address of port wan"),
                (77, 13, "sync.key_file: `k` is not an absolute path"),
            ],
        ),
        (
            "  listen: \"198.19.0.1:8848\"\n  peers: [\"198.19.0.2:0\"]\n  key_file: /k\n  heartbeat: \"1s\"\n  peer_timeout: \"2s\"\n",
            &[
                (76, 11, "sync.peers[0]: port 0 is no port to send to"),
                (79, 17, "sync.peer_timeout: must be at least three heartbeats"),
            ],
        ),
        (
            "  listen: \"198.19.0.1:8848\"\n  peers: [\"198.19.0.2:8848\"]\n  key_file: /k\n  shared_addresses:\n    - { address: 203.0.113.1, owner: \"198.19.0.1:8848\" }\n    - { address: 198.19.0.254, owner: \"198.19.0.3:8848\" }\n",
            &[
                (79, 18, "sync.shared_addresses[0].address: a shared address 203.0.113.1 is not inside any port's connected subnet"),
                (80, 39, "sync.shared_addresses[1].owner: 198.19.0.3:8848 is not a member"),
            ],
        ),
    ];
    for (section, expected) in cases {
        assert_errors(&parse_err(&sync(section)), expected, section);
    }
    let no_kernel = sync(OK).replace(
        "  control_socket: \"/run/ferrovs/ctl.sock\"",
        "  control_socket: \"/run/ferrovs/ctl.sock\"\n  exception_path: false",
    );
    assert_errors(
        &parse_err(&no_kernel),
        &[(76, 3, "sync: sync needs management.exception_path")],
        "exception_path: false",
    );
    let ok = parse_ok(&sync(&format!(
        "{OK}  shared_addresses:\n    - {{ address: 198.18.0.100, owner: \"198.19.0.2:8848\" }}\n"
    )))
    .sync
    .unwrap();
    assert_eq!(ok.heartbeat, Duration::from_millis(300));
    assert_eq!(ok.peer_timeout, Duration::from_secs(1));
    assert_eq!(ok.refresh, Duration::from_secs(60));
    assert_eq!(ok.local_port_share(), (0, 2));
    assert_eq!(ok.shared_addresses[0].address, ip("198.18.0.100"));
}

/// A byte order mark is allowed (YAML permits one); size and flow nesting are
/// bounded before any parser runs, with the position of the excess.
#[test]
fn bom_size_and_nesting_bounds() {
    assert!(parse(&format!("\u{feff}{BASE}"), "t", &host()).is_ok());
    let deep = format!("{BASE}routes: {}\n", "[".repeat(100_000));
    let t0 = std::time::Instant::now();
    let errors = parse(&deep, "t", &host()).unwrap_err().to_string();
    assert!(t0.elapsed() < std::time::Duration::from_millis(200));
    let line = BASE.lines().count() + 1;
    assert!(
        errors.starts_with(&format!(
            "t:{line}:{}: flow collections",
            9 + super::MAX_FLOW_DEPTH
        )),
        "{errors}"
    );
    let huge = format!("{BASE}#{}\n", "x".repeat(super::MAX_CONFIG_BYTES));
    assert!(parse(&huge, "t", &host())
        .unwrap_err()
        .to_string()
        .starts_with("t:1:1: the file is"));
    // An endless file is read only up to the limit.
    let endless = super::load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(
        endless.starts_with("/dev/zero:1:1: the file is 16777217 bytes"),
        "{endless}"
    );
}

#[test]
fn rp_filter_is_a_keyword_per_port_and_off_by_default() {
    let config = parse_ok(BASE);
    assert!(config.ports.iter().all(|p| p.rp_filter == RpFilter::Off));
    for (text, mode) in [
        ("strict", RpFilter::Strict),
        ("loose", RpFilter::Loose),
        ("off", RpFilter::Off),
    ] {
        let config = parse_ok(&base_with(
            "    tx_descriptors: 1024",
            &format!("    tx_descriptors: 1024\n    rp_filter: {text}"),
        ));
        assert_eq!(config.ports[0].rp_filter, mode, "{text}");
        assert_eq!(config.ports[1].rp_filter, RpFilter::Off);
    }
    let errors = parse_err(&base_with(
        "    tx_descriptors: 1024",
        "    tx_descriptors: 1024\n    rp_filter: yes",
    ));
    assert_errors(
        &errors,
        &[(
            13,
            16,
            "ports[0].rp_filter: `yes`: unknown rp_filter, expected one of: strict, loose, off",
        )],
        "unknown mode",
    );
    // Strict on a port without addresses would refuse every new connection.
    let errors = parse_err(
        "eal: {cores: [0, 1]}\nworkers: {cores: [1]}\nports:\n  - {name: p, device: net_null0, rp_filter: strict}\n",
    );
    assert_errors(
        &errors,
        &[(
            4,
            45,
            "ports[0].rp_filter: `strict` on a port without addresses",
        )],
        "strict without addresses",
    );
    parse_ok("eal: {cores: [0, 1]}\nworkers: {cores: [1]}\nports:\n  - {name: p, device: net_null0, rp_filter: loose}\n");
}

/// Values that once parsed into something other than what was written, each now
/// refused at its position.
#[test]
fn values_once_accepted_but_wrong_are_refused() {
    check_cases(&[
        // 18446744073709552 s in milliseconds wraps a u64 (to 384 ms).
        (
            r#"    persistence: "300s""#,
            r#"    persistence: "18446744073709552s""#,
            &[(54, 18,
                "services[1].persistence: 18446744073709552s is out of range 0s..=4233600s",
            )],
        ),
        // A VIP on a connected subnet's broadcast or network address.
        (
            r#"    vip: "198.18.0.53""#,
            r#"    vip: "198.18.0.255""#,
            &[(59, 10,
                "services[2].vip: 198.18.0.255 is the broadcast address of 198.18.0.0/24, port wan's subnet",
            )],
        ),
        (
            r#"    vip: "198.18.0.53""#,
            r#"    vip: "198.18.0.0""#,
            &[(59, 10,
                "services[2].vip: 198.18.0.0 is the network address of 198.18.0.0/24",
            )],
        ),
        // A route through an address ferrovs owns.
        (
            r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }"#,
            r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.100" }"#,
            &[(33, 33,
                "routes[0].via: next hop 198.18.0.100 is the VIP of service web",
            )],
        ),
        (
            r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }"#,
            r#"  - { prefix: "0.0.0.0/0", via: "198.19.0.2" }"#,
            &[(33, 33,
                "routes[0].via: next hop 198.19.0.2 is a local address of service web",
            )],
        ),
        // An IPv4-mapped IPv6 address as a port address or a real server.
        (
            r#"    addresses: ["198.20.0.1/24"]"#,
            r#"    addresses: ["198.20.0.1/24", "::ffff:198.18.0.1/120"]"#,
            &[(18, 34,
                "ports[2].addresses[1]: ::ffff:198.18.0.1 is an IPv4-mapped IPv6 address; write the IPv4 address 198.18.0.1",
            )],
        ),
        // EAL options that ferrovs derives from the ports.
        (
            r#"  args: ["--log-level=5"]"#,
            r#"  args: ["--vdev", "net_tap9", "-a", "0000:00:01.0", "--no-pci"]"#,
            &[
                (5, 10, "eal.args[0]: EAL option `--vdev` is derived from `ports[].device`"),
                (5, 32, "eal.args[2]: EAL option `-a` is derived from `ports[].device`"),
                (5, 54, "eal.args[4]: EAL option `--no-pci` is derived from `ports[].device`"),
            ],
        ),
        // A repeated cpu_map key (serde would keep the last one).
        (
            "  cores: [0, 1, 2]",
            "  cores: [0, 1, 2]\n  cpu_map: { 1: 0, 1: 1 }",
            &[(3, 12, "duplicate key 1: each lcore is mapped once")],
        ),
    ]);
}

/// A service whose `health_check` (and sorry server) the check-type tests fill in:
/// line 12 holds CHECK, line 13 SORRY.
const CHECKS: &str = "eal:
  cores: [0, 1]
ports:
  - { name: lan, device: net_null0, addresses: [\"198.19.0.1/24\"] }
workers:
  cores: [1]
services:
  - name: web
    vip: 198.19.0.100
    port: 80
    protocol: tcp
    health_check: CHECK
    SORRY
    mode: nat
    real_servers: [{ address: 198.19.0.10 }, { address: 198.19.0.11, port: 8080 }]
";

fn with_check(check: &str) -> String {
    CHECKS.replace("CHECK", check).replace("    SORRY\n", "")
}

#[test]
fn udp_dns_tls_and_exec_checks_parse_with_defaults_and_rules() {
    let check = |text: &str| parse_ok(&with_check(text)).services[0].health_check.clone();
    let udp = check(r#"{ type: udp, payload: "ping", expect: "pong" }"#);
    assert_eq!(udp.kind, CheckKind::Udp);
    assert_eq!(
        (udp.payload.as_slice(), udp.expect.as_slice()),
        (&b"ping"[..], &b"pong"[..])
    );
    assert!(udp.require_reply && udp.passive);
    let udp = check(r#"{ type: udp, payload_hex: "de ad:BEEF", require_reply: false }"#);
    assert_eq!(udp.payload, [0xde, 0xad, 0xbe, 0xef]);
    assert!(!udp.require_reply && udp.expect.is_empty());
    assert_eq!(check("{ type: udp }").payload, b"");

    let dns = check("{ type: dns }");
    assert_eq!(
        (dns.query_name.as_str(), dns.query_type, dns.expect_rcode),
        (".", DnsType::Soa, DnsRcode::NoError),
        "keepalived's DNS_CHECK defaults"
    );
    let dns = check("{ type: dns, query_name: www.example.org, query_type: aaaa, expect_rcode: NXDOMAIN, port: 53 }");
    assert_eq!(
        (
            dns.query_name.as_str(),
            dns.query_type.code(),
            dns.expect_rcode.code(),
            dns.port
        ),
        ("www.example.org", 28, 3, Some(53))
    );

    let tls = check("{ type: tls }");
    assert!(!tls.tls_get && !tls.verify && tls.sni.is_none() && tls.ca_file.is_none());
    let tls = check("{ type: tls, path: /health, expect_status: 204, sni: www.example.org, verify: true, ca_file: /etc/ssl/ca.pem }");
    assert!(tls.tls_get && tls.verify);
    assert_eq!((tls.path.as_str(), tls.expect_status), ("/health", 204));
    assert_eq!(tls.sni.as_deref(), Some("www.example.org"));
    assert_eq!(tls.ca_file, Some("/etc/ssl/ca.pem".into()));

    let exec = check(
        r#"{ type: exec, command: ["/usr/bin/test", "-e", "/run/up"], user: nobody, timeout: 500ms }"#,
    );
    assert_eq!(exec.command, ["/usr/bin/test", "-e", "/run/up"]);
    assert_eq!(
        (exec.user.as_deref(), exec.run_as_root),
        (Some("nobody"), false)
    );
    let root = check(r#"{ type: exec, command: ["/bin/true"], run_as_root: true }"#);
    assert_eq!((root.user, root.run_as_root), (None, true));

    // Every rule, at the key it is about (line 12 is the health_check line).
    let cases: &[(&str, Expected)] = &[
        (
            r#"{ type: tcp, payload: "x", query_name: example.org, sni: a.b, command: ["/bin/true"] }"#,
            &[
                (
                    12,
                    41,
                    "health_check.payload: only a udp check uses payload",
                ),
                (
                    12,
                    58,
                    "health_check.query_name: only a dns check uses query_name",
                ),
                (12, 76, "health_check.sni: only a tls check uses sni"),
                (
                    12,
                    90,
                    "health_check.command: only an exec check uses command",
                ),
            ],
        ),
        (
            r#"{ type: udp, payload: "x", payload_hex: "78" }"#,
            &[(
                12,
                59,
                "health_check.payload_hex: give payload or payload_hex, not both",
            )],
        ),
        (
            r#"{ type: udp, payload_hex: "7" }"#,
            &[(12, 45, "health_check.payload_hex: `7` is not hex bytes")],
        ),
        (
            r#"{ type: udp, require_reply: false, expect: "pong" }"#,
            &[(
                12,
                62,
                "health_check.expect: an expected answer needs require_reply: true",
            )],
        ),
        (
            "{ type: dns, query_name: \"bad name\", query_type: BOGUS, expect_rcode: OK }",
            &[
                (
                    12,
                    44,
                    "health_check.query_name: `bad name` is not a DNS name",
                ),
                (
                    12,
                    68,
                    "health_check.query_type: `BOGUS`: unknown DNS query type",
                ),
                (
                    12,
                    89,
                    "health_check.expect_rcode: `OK`: unknown DNS response code",
                ),
            ],
        ),
        (
            "{ type: tls, expect_status: 200, ca_file: ca.pem }",
            &[
                (
                    12,
                    47,
                    "health_check.expect_status: a tls check expects a status only with a path",
                ),
                (
                    12,
                    61,
                    "health_check.ca_file: `ca.pem` is not an absolute path",
                ),
            ],
        ),
        (
            "{ type: tls, ca_file: /etc/ca.pem }",
            &[(
                12,
                41,
                "health_check.ca_file: trusted CAs matter only with verify: true",
            )],
        ),
        (
            "{ type: exec, command: [/bin/true] }",
            &[(
                12,
                19,
                "health_check.user: an exec check runs its command as the user named here",
            )],
        ),
        (
            "{ type: exec, command: [/bin/true], user: root }",
            &[(
                12,
                61,
                "health_check.user: the command would run as root: write run_as_root: true",
            )],
        ),
        (
            "{ type: exec, command: [/bin/true], user: nobody, run_as_root: true }",
            &[(
                12,
                61,
                "health_check.user: run_as_root: true runs the command as root",
            )],
        ),
        (
            "{ type: exec, command: [true, x], user: nobody }",
            &[(
                12,
                43,
                "health_check.command[0]: `true` is not an absolute path",
            )],
        ),
        (
            "{ type: exec, command: [], user: nobody }",
            &[(
                12,
                42,
                "health_check.command: an exec check needs a command",
            )],
        ),
        (
            "{ type: exec, user: nobody }",
            &[(
                12,
                19,
                "health_check.command: an exec check needs a command",
            )],
        ),
    ];
    for (check, expected) in cases {
        let errors = parse_err(&with_check(check));
        let expected: Vec<(usize, usize, String)> = expected
            .iter()
            .map(|(l, c, m)| (*l, *c, format!("services[0].{m}")))
            .collect();
        let expected: Vec<(usize, usize, &str)> = expected
            .iter()
            .map(|(l, c, m)| (*l, *c, m.as_str()))
            .collect();
        assert_errors(&errors, &expected, check);
    }
}

#[test]
fn a_sorry_server_is_a_server_like_the_real_ones_but_none_of_them() {
    let with_sorry = |sorry: &str| {
        CHECKS
            .replace("    health_check: CHECK\n", "")
            .replace("SORRY", sorry)
    };
    let c = parse_ok(&with_sorry("sorry_server: { address: 198.19.0.99 }"));
    assert_eq!(
        c.services[0].sorry_server,
        Some(SorryServerConfig {
            address: ip("198.19.0.99"),
            port: 80
        }),
        "the service port unless written"
    );
    let c = parse_ok(&with_sorry(
        "sorry_server: { address: 198.19.0.10, port: 8081 }",
    ));
    assert_eq!(c.services[0].sorry_server.unwrap().port, 8081);
    let cases: &[(&str, Expected)] = &[
        (
            "sorry_server: { address: 198.19.0.11, port: 8080 }",
            &[(12, 30, "services[0].sorry_server.address: 198.19.0.11:8080 is also a real server of this service")],
        ),
        (
            "sorry_server: { address: 2001:2::9 }",
            &[(12, 30, "services[0].sorry_server.address: real server 2001:2::9 is IPv6 but the VIP 198.19.0.100 is IPv4")],
        ),
        (
            "sorry_server: { address: 203.0.113.9 }",
            &[(12, 30, "services[0].sorry_server.address: real server 203.0.113.9 is not routable")],
        ),
        (
            "sorry_server: { address: 198.19.0.99, port: 0 }",
            &[(12, 49, "services[0].sorry_server.port: 0 is out of range 1..=65535")],
        ),
        (
            "sorry_server: { addr: 198.19.0.99 }",
            &[(12, 21, "unknown field `addr`")],
        ),
    ];
    for (sorry, expected) in cases {
        assert_errors(&parse_err(&with_sorry(sorry)), expected, sorry);
    }
    // DR cannot rewrite ports, for the sorry server either.
    let dr = with_sorry("sorry_server: { address: 198.19.0.99, port: 81 }")
        .replace("mode: nat", "mode: dr")
        .replace(", port: 8080", "");
    assert_errors(
        &parse_err(&dr),
        &[(
            12,
            49,
            "services[0].sorry_server.port: port 81 differs from the service port 80",
        )],
        "dr",
    );
}

/// A service whose access keys the edge tests fill in: line 12 holds KEYS, line
/// 13 the real servers' limits (LIMITS).
const EDGE: &str = "eal:
  cores: [0, 1]
ports:
  - { name: lan, device: net_null0, addresses: [\"198.19.0.1/24\"] }
workers:
  cores: [1]
services:
  - name: web
    vip: 198.19.0.100
    port: 80
    protocol: tcp
    KEYS
    real_servers: [{ address: 198.19.0.10LIMITS }, { address: 198.19.0.11 }]
    mode: nat
";

#[test]
fn access_lists_rates_and_connection_limits() {
    let edge = |keys: &str, limits: &str| EDGE.replace("KEYS", keys).replace("LIMITS", limits);
    let c = parse_ok(&edge(
        "allow: [198.18.0.0/15, 203.0.113.7]\n    deny: [198.18.7.0/24]\n    deny_action: rst\n    new_connections_per_source: 100/s",
        ", max_connections: 1000, min_connections: 800",
    ));
    let s = &c.services[0];
    let net = |t: &str| t.parse::<ipnet::IpNet>().unwrap();
    assert_eq!(
        s.access,
        AccessConfig {
            allow: vec![net("198.18.0.0/15"), net("203.0.113.7/32")],
            deny: vec![net("198.18.7.0/24")],
            deny_action: DenyAction::Rst,
            new_connections_per_source: Some(SourceRate {
                count: 100,
                per: Duration::from_secs(1)
            }),
        }
    );
    assert_eq!(
        (
            s.real_servers[0].max_connections,
            s.real_servers[0].min_connections
        ),
        (1000, 800)
    );
    assert_eq!(
        (
            s.real_servers[1].max_connections,
            s.real_servers[1].min_connections
        ),
        (0, 0),
        "no limit unless written"
    );
    let rate = |text: &str| {
        parse_ok(&edge(
            &format!("new_connections_per_source: \"{text}\""),
            "",
        ))
        .services[0]
            .access
            .new_connections_per_source
            .unwrap()
    };
    assert_eq!(rate("6/min").to_string(), "6/min");
    assert_eq!(rate("1/h").per, Duration::from_secs(3600));
    assert_eq!(rate("1000000/s").count, 1_000_000);
    assert_eq!(
        parse_ok(&edge("deny: []", "")).services[0].access,
        AccessConfig::default()
    );
    // (service keys, top-level keys, expected errors: line, column, text)
    type Case<'a> = (&'a str, &'a str, &'a [(usize, usize, &'a str)]);
    let cases: &[Case] = &[
        (
            "allow: [198.18.0.1/15]",
            "",
            &[(12, 13, "services[0].allow[0]: prefix 198.18.0.1/15 has host bits set; did you mean 198.18.0.0/15?")],
        ),
        (
            "deny: [2001:2::/48]",
            "",
            &[(12, 12, "services[0].deny[0]: 2001:2::/48 is IPv6 but the VIP 198.19.0.100 is IPv4")],
        ),
        (
            "deny: [10.0.0.0/8, nonsense, 10.0.0.0/8]",
            "",
            &[
                (12, 24, "services[0].deny[1]: `nonsense` is not an address/prefix-length"),
                (12, 34, "services[0].deny[2]: prefix 10.0.0.0/8 is listed twice"),
            ],
        ),
        (
            "deny_action: reject",
            "",
            &[(12, 18, "services[0].deny_action: `reject`: unknown deny action, expected one of: drop, rst")],
        ),
        (
            "new_connections_per_source: 100",
            "",
            &[(12, 33, "services[0].new_connections_per_source: `100` is not a rate: N/s, N/min or N/h")],
        ),
        (
            "new_connections_per_source: 0/s",
            "",
            &[(12, 33, "services[0].new_connections_per_source: 0 is out of range 1..=1000000")],
        ),
        (
            "allow: []",
            ", min_connections: 5",
            &[(13, 61, "services[0].real_servers[0].min_connections: min_connections says when an overloaded server takes connections again; it needs max_connections")],
        ),
        (
            "allow: []",
            ", max_connections: 5, min_connections: 5",
            &[(13, 81, "services[0].real_servers[0].min_connections: 5 is not below max_connections 5")],
        ),
        (
            "allow: []",
            ", max_connections: 4294967296",
            &[(13, 61, "services[0].real_servers[0].max_connections: 4294967296 is out of range 0..=4294967295")],
        ),
        (
            "alow: []",
            "",
            &[(12, 5, "unknown field `alow`")],
        ),
    ];
    for (keys, limits, expected) in cases {
        assert_errors(&parse_err(&edge(keys, limits)), expected, keys);
    }
    // A reset answers a TCP SYN: a UDP service cannot ask for one.
    let udp = edge("deny_action: rst", "").replace("protocol: tcp", "protocol: udp");
    assert_errors(
        &parse_err(&udp),
        &[(
            12,
            18,
            "services[0].deny_action: rst answers a TCP SYN; this service is udp",
        )],
        "udp",
    );
}

/// BASE with `services` (YAML items at the services' indentation) added last.
fn base_and(services: &str) -> String {
    format!("{BASE}{services}")
}

/// The errors of BASE with `services` added, as "path: message" with the
/// line each is reported at.
fn added_errors(services: &str) -> Vec<(usize, String)> {
    parse_err(&base_and(services))
        .into_iter()
        .map(|e| {
            assert_eq!(e.file, "test.yaml");
            (e.line, e.message)
        })
        .collect()
}

#[test]
fn all_port_services_need_persistence_and_servers_without_ports() {
    let ok = parse_ok(&base_and(
        r#"  - name: all
    vip: "198.18.0.60"
    port: 0
    protocol: tcp
    mode: nat
    persistence: "600s"
    health_check: { type: tcp, port: 443 }
    real_servers:
      - { address: "198.19.0.60" }
      - { address: "198.19.0.61", port: 0 }
    sorry_server: { address: "198.19.0.62" }
  - name: all-dr
    vip: "198.18.0.60"
    port: 0
    protocol: udp
    mode: dr
    persistence: "60s"
    real_servers:
      - { address: "198.19.0.63" }
"#,
    ));
    let all = &ok.services[4];
    assert_eq!(all.port, 0);
    assert_eq!(
        all.real_servers.iter().map(|r| r.port).collect::<Vec<_>>(),
        [0, 0]
    );
    assert_eq!(all.sorry_server.unwrap().port, 0);
    assert_eq!(all.health_check.port, Some(443));
    assert_eq!(ok.services[5].real_servers[0].port, 0);

    let base_lines = BASE.lines().count();
    let errors = added_errors(
        r#"  - name: all
    vip: "198.18.0.60"
    port: 0
    protocol: tcp
    mode: nat
    health_check: { type: http }
    real_servers:
      - { address: "198.19.0.60", port: 8080 }
"#,
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(errors[0].0, base_lines + 3);
    assert!(
        errors[0]
            .1
            .starts_with("services[4].port: port 0 (every port of the VIP) needs persistence"),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|(line, m)| *line == base_lines + 8
            && m.starts_with(
                "services[4].real_servers[0].port: port 8080 in a service with port 0"
            )),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|(_, m)| m.starts_with(
            "services[4].health_check.port: a http check of a service with port 0 needs a port"
        )),
        "{errors:#?}"
    );
    // Port 0 is every port only in a service of every port.
    let errors = added_errors(
        r#"  - name: one
    vip: "198.18.0.61"
    port: 80
    protocol: tcp
    mode: nat
    real_servers:
      - { address: "198.19.0.60", port: 0 }
"#,
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]
            .1
            .starts_with("services[4].real_servers[0].port: 0 is out of range 1..=65535"),
        "{errors:#?}"
    );
}

#[test]
fn ops_is_for_udp_without_persistence_or_fullnat() {
    let ok = parse_ok(&base_and(
        r#"  - name: dns-ops
    vip: "198.18.0.62"
    port: 53
    protocol: udp
    mode: nat
    scheduler: rr
    ops: true
    real_servers:
      - { address: "198.19.0.70" }
      - { address: "198.19.0.71" }
"#,
    ));
    assert!(ok.services[4].ops);
    assert!(!ok.services[0].ops, "off by default");
    let service = |extra: &str, protocol: &str, mode: &str| {
        format!(
            "  - name: o\n    vip: \"198.18.0.62\"\n    port: 53\n    protocol: {protocol}\n    mode: {mode}\n    ops: true\n{extra}    real_servers:\n      - {{ address: \"198.19.0.70\" }}\n"
        )
    };
    let ops_line = BASE.lines().count() + 6;
    for (text, expected) in [
        (
            service("", "tcp", "nat"),
            "services[4].ops: ops schedules every datagram on its own: only a udp service",
        ),
        (
            service("    persistence: 60s\n", "udp", "nat"),
            "services[4].ops: ops schedules every datagram on its own, persistence sends",
        ),
        (
            service("    local_addresses: [\"198.19.0.2\"]\n", "udp", "fullnat"),
            "services[4].ops: ops keeps no connection, and a FULLNAT reply",
        ),
    ] {
        let errors = added_errors(&text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].0, ops_line, "{errors:#?}");
        assert!(errors[0].1.starts_with(expected), "{errors:#?}");
    }
    // Its replies are known by their source alone: the endpoint serves no other
    // nat udp service (BASE's dns has 198.19.0.20:53).
    let errors = added_errors(&service("", "udp", "nat").replace("198.19.0.70", "198.19.0.20"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].1.starts_with(
            "services[4].real_servers[0].address: 198.19.0.20:53 also serves the nat service `dns`"
        ),
        "{errors:#?}"
    );
}

/// NAT64: an IPv6 VIP with IPv4 local addresses and real servers (fullnat).
const NAT64: &str = r#"eal:
  cores: [0, 1]
ports:
  - name: wan
    device: "net_null0"
    addresses: ["198.18.0.1/24", "2001:2::1/64"]
  - name: lan
    device: "net_null1"
    addresses: ["198.19.0.1/24"]
workers:
  cores: [1]
services:
  - name: web6
    vip: "2001:2::100"
    port: 80
    protocol: tcp
    mode: fullnat
    local_addresses: ["198.19.0.2", "198.19.0.3"]
    real_servers:
      - { address: "198.19.0.10", port: 8080 }
      - { address: "198.19.0.11", port: 8080 }
"#;

#[test]
fn nat64_services_mix_families_only_as_fullnat_with_ipv4_local_addresses() {
    let c = parse_ok(NAT64);
    let services = crate::service::Services::from_config(&c);
    let svc = services.iter().next().unwrap();
    assert!(svc.is_nat64());
    assert!(svc.real_servers.iter().all(|r| r.addr.is_ipv4()));
    let edit = |from: &str, to: &str| {
        assert_eq!(NAT64.matches(from).count(), 1, "{from}");
        NAT64.replace(from, to)
    };
    let cases: &[(String, Expected)] = &[
        (
            edit(r#"["198.19.0.2", "198.19.0.3"]"#, r#"["198.19.0.2", "2001:2::5"]"#),
            &[(18, 37, "services[0].local_addresses[1]: local address 2001:2::5 is IPv6 but services[0].local_addresses[0] is IPv4")],
        ),
        (
            edit(r#"address: "198.19.0.11""#, r#"address: "2001:2::11""#),
            &[(21, 20, "services[0].real_servers[1].address: real server 2001:2::11 is IPv6 but this IPv6 service has IPv4 local addresses (NAT64)")],
        ),
        (
            edit(
                "    mode: fullnat\n    local_addresses: [\"198.19.0.2\", \"198.19.0.3\"]\n",
                "    mode: nat\n",
            ),
            &[
                (19, 20, "services[0].real_servers[0].address: real server 198.19.0.10 is IPv4 but the VIP 2001:2::100 is IPv6; IPv4 real servers for an IPv6 VIP (NAT64) need mode fullnat"),
                (20, 20, "services[0].real_servers[1].address"),
            ],
        ),
        (
            edit("    protocol: tcp\n", "    protocol: tcp\n    proxy_protocol: v1\n"),
            &[(17, 21, "services[0].proxy_protocol: a NAT64 service (IPv6 VIP, IPv4 local addresses) cannot send a Proxy Protocol header")],
        ),
    ];
    for (text, expected) in cases {
        assert_errors(&parse_err(text), expected, text);
    }
    // NAT46 (an IPv4 VIP with IPv6 local addresses) is not a thing.
    let nat46 = edit(r#"vip: "2001:2::100""#, r#"vip: "198.18.0.100""#)
        .replace(r#"["198.19.0.2", "198.19.0.3"]"#, r#"["2001:2::5"]"#);
    let errors = parse_err(&nat46);
    assert!(
        errors.iter().any(|e| e.to_string().contains(
            "services[0].local_addresses[0]: local address 2001:2::5 is IPv6 but the real servers are IPv4 like the VIP (IPv6 real servers for an IPv4 VIP, NAT46, are not supported)"
        )),
        "{errors:#?}"
    );
}

#[test]
fn syn_proxy_is_for_tcp_through_nat_or_fullnat() {
    let on = CONTRACT_EXAMPLE.replace(
        "    persistence: \"0s\"\n",
        "    persistence: \"0s\"\n    syn_proxy: true\n",
    );
    let ok = parse_ok(&on.replace(
        "  max: 1000000\n",
        "  max: 1000000\n  syn_proxy_above: 5000\n",
    ));
    assert!(ok.services[0].syn_proxy);
    assert_eq!(ok.connections.syn_proxy_above, 5000);
    let defaults = parse_ok(CONTRACT_EXAMPLE);
    assert!(!defaults.services[0].syn_proxy);
    assert_eq!(defaults.connections.syn_proxy_above, 0);
    let to_string = |errors: Vec<ConfigError>| -> Vec<String> {
        errors.iter().map(|e| e.to_string()).collect()
    };
    let udp = to_string(parse_err(
        &on.replace("    protocol: tcp ", "    protocol: udp "),
    ));
    assert!(
        udp.iter().any(|e| e
            .contains("services[0].syn_proxy: a SYN proxy answers TCP SYNs; this service is udp")),
        "{udp:#?}"
    );
    let dr = to_string(parse_err(
        &on.replace("    mode: fullnat ", "    mode: dr ").replace(
            "    local_addresses: [\"198.19.0.2\"]   # FULLNAT source pool\n",
            "",
        ),
    ));
    assert!(
        dr.iter()
            .any(|e| e
                .contains("services[0].syn_proxy: a SYN proxy translates the sequence numbers")),
        "{dr:#?}"
    );
    let bad = to_string(parse_err(&CONTRACT_EXAMPLE.replace(
        "  max: 1000000\n",
        "  max: 1000000\n  syn_proxy_above: -1\n",
    )));
    assert!(
        bad.iter()
            .any(|e| e.contains("connections.syn_proxy_above")),
        "{bad:#?}"
    );
}

/// BASE with a `vlans:` section of `entries` (one flow mapping a line) appended,
/// and the line number of the first entry.
fn base_with_vlans(entries: &[&str]) -> (String, usize) {
    let mut text = BASE.to_string();
    text.push_str("vlans:\n");
    for e in entries {
        text.push_str("  - ");
        text.push_str(e);
        text.push('\n');
    }
    (text, BASE.lines().count() + 2)
}

/// (line, column) of `needle` in entry `i` of [`base_with_vlans`] (`nth` match).
fn vlan_at(entries: &[&str], first: usize, i: usize, needle: &str, nth: usize) -> (usize, usize) {
    let col = entries[i].match_indices(needle).nth(nth).unwrap().0;
    (first + i, col + 5)
}

#[test]
fn vlans_parse_as_interfaces_after_the_ports() {
    let entries = [
        r#"{ port: wan, id: 100, name: wan.100, addresses: ["198.21.0.1/24", "2001:21::1/64"] }"#,
        r#"{ port: lan, id: 100, name: lan.100, addresses: ["198.22.0.1/24"] }"#,
        r#"{ port: lan, id: 4094, name: lan.4094 }"#,
    ];
    let (text, _) = base_with_vlans(&entries);
    // Routes, neighbours and real servers may use a VLAN's subnet.
    let text = text
        .replace(
            r#"  - { prefix: "2001:2:0:100::/56", via: "2001:2::fe" }"#,
            "  - { prefix: \"2001:2:0:100::/56\", via: \"2001:2::fe\" }\n  - { prefix: \"203.0.114.0/24\", via: \"198.21.0.254\" }",
        )
        .replace(
            r#"  - { ip: "198.19.0.10", mac: "02:00:00:00:01:10" }"#,
            "  - { ip: \"198.19.0.10\", mac: \"02:00:00:00:01:10\" }\n  - { ip: \"198.22.0.10\", mac: \"02:00:00:00:01:11\" }",
        );
    let config = parse_ok(&text);
    assert_eq!(
        config.vlans[0],
        VlanConfig {
            port: 0,
            id: 100,
            name: "wan.100".into(),
            addresses: vec![
                "198.21.0.1/24".parse().unwrap(),
                "2001:21::1/64".parse().unwrap()
            ],
        }
    );
    assert_eq!((config.vlans[1].port, config.vlans[1].id), (1, 100));
    assert!(config.vlans[2].addresses.is_empty());
    let names: Vec<_> = config.interfaces().map(|i| (i.name, i.vlan)).collect();
    assert_eq!(
        names,
        [
            ("wan", 0),
            ("lan", 0),
            ("spare", 0),
            ("wan.100", 100),
            ("lan.100", 100),
            ("lan.4094", 4094)
        ]
    );
    assert_eq!(config.interface_for_address(ip("198.21.0.254")), Some(3));
    assert_eq!(config.interface_for_address(ip("198.22.0.10")), Some(4));
    assert!(parse_ok(BASE).vlans.is_empty());
}

#[test]
fn vlan_rules() {
    type Expect = &'static [(usize, &'static str, usize, &'static str)];
    // Each case: its entries, and per error (entry, needle, nth match, message).
    let cases: &[(&[&str], Expect)] = &[
        (
            &[r#"{ port: dmz, id: 100, name: dmz.100 }"#],
            &[(0, "dmz", 0, "vlans[0].port: no port is named `dmz` (ports: wan, lan, spare)")],
        ),
        (
            &[r#"{ port: wan, id: 0, name: wan.0 }"#],
            &[(0, "0", 0, "vlans[0].id: 0 is out of range 1..=4094")],
        ),
        (
            &[r#"{ port: wan, id: 4095, name: wan.4095 }"#],
            &[(0, "4095", 0, "vlans[0].id: 4095 is out of range 1..=4094")],
        ),
        (
            &[
                r#"{ port: wan, id: 7, name: wan.7 }"#,
                r#"{ port: wan, id: 7, name: wan.7b }"#,
            ],
            &[(1, "7", 0, "vlans[1].id: VLAN 7 of port wan is already vlans[0]")],
        ),
        (
            &[r#"{ port: wan, id: 7, name: wan.7890123456789 }"#],
            &[(0, "wan.789", 0, "vlans[0].name: `wan.7890123456789` is not a valid name: 1 to 15 of")],
        ),
        (
            &[r#"{ port: wan, id: 7, name: "wan/7" }"#],
            &[(0, "\"wan/7\"", 0, "is not a valid name")],
        ),
        (
            &[r#"{ port: wan, id: 7, name: lan }"#],
            &[(0, "lan", 0, "vlans[0].name: interface name `lan` is already a port's or a VLAN's")],
        ),
        (
            &[
                r#"{ port: wan, id: 7, name: v7 }"#,
                r#"{ port: lan, id: 7, name: v7 }"#,
            ],
            &[(1, "v7", 0, "vlans[1].name: interface name `v7` is already")],
        ),
        (
            &[r#"{ port: wan, id: 7, name: wan.7, addresses: ["198.18.0.77/24"] }"#],
            &[(0, "\"198", 0, "vlans[0].addresses[0]: subnet 198.18.0.0/24 overlaps 198.18.0.0/24 of port wan")],
        ),
        (
            &[
                r#"{ port: wan, id: 7, name: wan.7, addresses: ["198.21.0.1/24"] }"#,
                r#"{ port: lan, id: 8, name: lan.8, addresses: ["198.21.0.129/25"] }"#,
            ],
            &[(1, "\"198", 0, "vlans[1].addresses[0]: subnet 198.21.0.128/25 overlaps 198.21.0.0/24 of VLAN wan.7")],
        ),
        (
            &[r#"{ port: wan, id: 7, name: wan.7, addresses: ["198.19.0.1/24"] }"#],
            &[(0, "\"198", 0, "address 198.19.0.1 is already on port lan")],
        ),
        (
            &[r#"{ port: wan, id: 7, name: wan.7, addresses: ["198.21.0.0/24"] }"#],
            &[(0, "\"198", 0, "198.21.0.0 is the network address of 198.21.0.0/24")],
        ),
        (
            &[r#"{ port: wan, id: 7, name: wan.7, adresses: [] }"#],
            &[(0, "adresses", 0, "unknown field `adresses`")],
        ),
    ];
    for (entries, expected) in cases {
        let (text, first) = base_with_vlans(entries);
        let expected: Vec<(usize, usize, &str)> = expected
            .iter()
            .map(|&(i, needle, nth, message)| {
                let (line, col) = vlan_at(entries, first, i, needle, nth);
                (line, col, message)
            })
            .collect();
        assert_errors(&parse_err(&text), &expected, entries.join(" / ").as_str());
    }
}

#[test]
fn a_route_via_a_vlan_gateway_names_the_vlan_subnet_when_not_connected() {
    let (text, _) =
        base_with_vlans(&[r#"{ port: wan, id: 7, name: wan.7, addresses: ["198.21.0.1/24"] }"#]);
    let text = text.replace(
        r#"  - { prefix: "0.0.0.0/0", via: "198.18.0.254" }"#,
        r#"  - { prefix: "0.0.0.0/0", via: "198.23.0.254" }"#,
    );
    let errors = parse_err(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.contains("198.21.0.0/24 on wan.7"),
        "{}",
        errors[0]
    );
}
