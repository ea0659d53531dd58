//! ipvsadm-style text for `ferrovs ctl list` and `ferrovs ctl conns`.
//!
//! The layout is ipvsadm's (`-Ln`, `-Ln --stats`, `-Ln --rate`, `-Lnc`), so an operator
//! reads it as they read ipvsadm, with what ferrovs adds: the service name, the
//! forwarding mode, real-server health and, for connections, the local address the
//! real server sees (FULLNAT). Two deliberate differences: where ipvsadm lets a long
//! (IPv6) address push the following columns out of line, the address columns widen to
//! the longest entry of the table; and no line ends in blanks.

use super::proto::{ConnView, Rates, ServiceView, Stats, SyncView};

/// Which numbers `list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListView {
    /// `ipvsadm -Ln`: scheduler and flags, forwarding, weight, connections, health.
    Plain,
    /// `ipvsadm -Ln --stats`: totals since start.
    Stats,
    /// `ipvsadm -Ln --rate`: per-second rates.
    Rate,
}

/// ipvsadm's minimum column widths, in characters.
mod width {
    /// `%-33s` of "PROT  VIP:PORT" in `--stats` and `--rate`.
    pub const SERVICE: usize = 33;
    /// `%-28s` of a real server's "IP:PORT".
    pub const REAL_SERVER: usize = 28;
    /// The "  -> " before a real server.
    pub const ARROW: usize = 5;
    /// One number of `--stats` / `--rate` (`%9llu`, or `%8lluK`): at most eight
    /// characters after the blank that separates it.
    pub const NUMBER: usize = 8;
    /// `-Lnc`: `%-3s %-6s %-11s %-18s %-18s %s`.
    pub const PROTOCOL: usize = 3;
    pub const EXPIRE: usize = 6;
    pub const STATE: usize = 11;
    pub const ENDPOINT: usize = 18;
}

/// The line ipvsadm starts `-L` with ("IP Virtual Server version 1.2.1 (size=4096)"),
/// naming ferrovs and this program's version instead.
fn banner() -> String {
    format!(
        "IP Virtual Server version {} (ferrovs)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Services and their real servers as `ipvsadm -Ln` (with `--stats` or `--rate`)
/// prints them, in the order given.
pub fn services(services: &[ServiceView], view: ListView) -> String {
    let mut out = Text::default();
    out.line(banner());
    let longest_real_server = services
        .iter()
        .flat_map(|s| &s.real_servers)
        .map(|r| chars(&r.address))
        .max()
        .unwrap_or(0);
    match view {
        ListView::Plain => {
            let rs = longest_real_server.max(width::REAL_SERVER);
            out.line("Prot LocalAddress:Port Scheduler Flags");
            out.line(format!(
                "  -> {:<rs$} Forward Weight ActiveConn InActConn  Health",
                "RemoteAddress:Port"
            ));
            for s in services {
                out.line(service_line(s));
                let forward = forward_name(&s.mode);
                for r in &s.real_servers {
                    let health = match (r.sorry, r.up) {
                        (true, _) => "sorry",
                        (false, true) => "up",
                        (false, false) => "down",
                    };
                    out.line(format!(
                        "  -> {:<rs$} {:<7} {:<6} {:<10} {:<10} {}",
                        r.address, forward, r.weight, r.active_conns, r.inactive_conns, health,
                    ));
                }
            }
        }
        ListView::Stats | ListView::Rate => {
            // Service and real-server names share the first column, so the numbers
            // of both line up.
            let first = services
                .iter()
                .map(|s| chars(&service_name(s)))
                .chain([width::ARROW + longest_real_server, width::SERVICE])
                .max()
                .unwrap_or(width::SERVICE);
            let rs = first - width::ARROW;
            let titles = match view {
                ListView::Stats => ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"],
                _ => ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"],
            };
            out.line(format!(
                "{:<first$}{}",
                "Prot LocalAddress:Port",
                number_columns(titles)
            ));
            out.line("  -> RemoteAddress:Port");
            let numbers = |stats: &Stats, rates: &Rates| match view {
                ListView::Stats => stats_columns(stats),
                _ => rate_columns(rates),
            };
            for s in services {
                out.line(format!(
                    "{:<first$}{}",
                    service_name(s),
                    numbers(&s.stats, &s.rates)
                ));
                for r in &s.real_servers {
                    out.line(format!(
                        "  -> {:<rs$}{}",
                        r.address,
                        numbers(&r.stats, &r.rates)
                    ));
                }
            }
        }
    }
    out.0
}

/// Connections as `ipvsadm -Lnc` prints them, with the `local` column (the source the
/// real server sees: the client, or the local address and port in FULLNAT) between
/// `virtual` and `destination`. `truncated`: more matched than were sent.
pub fn conns(conns: &[ConnView], truncated: bool) -> String {
    let expires: Vec<String> = conns.iter().map(|c| expire(c.expires_ms)).collect();
    let widest = |min: usize, get: fn(&ConnView) -> &str| {
        conns.iter().map(|c| chars(get(c))).fold(min, usize::max)
    };
    let proto = widest(width::PROTOCOL, |c| &c.protocol);
    let exp = expires
        .iter()
        .map(|e| chars(e))
        .fold(width::EXPIRE, usize::max);
    let state = widest(width::STATE, |c| &c.state);
    let source = widest(width::ENDPOINT, |c| &c.client);
    let virt = widest(width::ENDPOINT, |c| &c.virtual_address);
    let local = widest(width::ENDPOINT, |c| &c.local);

    let mut out = Text::default();
    out.line("IPVS connection entries");
    out.line(format!(
        "{:<proto$} {:<exp$} {:<state$} {:<source$} {:<virt$} {:<local$} destination",
        "pro", "expire", "state", "source", "virtual", "local"
    ));
    for (c, e) in conns.iter().zip(&expires) {
        out.line(format!(
            "{:<proto$} {:<exp$} {:<state$} {:<source$} {:<virt$} {:<local$} {}",
            c.protocol, e, c.state, c.client, c.virtual_address, c.local, c.real_server
        ));
    }
    if truncated {
        out.line(format!(
            "({} connections shown; more matched, raise --limit to see them)",
            conns.len()
        ));
    }
    out.0
}

/// A count as ipvsadm's `print_largenum` shows it: exact below 100 million, then in
/// thousands (K), millions (M), billions (G) or trillions (T), so that it fits in
/// eight digits and a unit.
pub fn scale(n: u64) -> String {
    const K: u64 = 1_000;
    const M: u64 = 1_000_000;
    const G: u64 = 1_000_000_000;
    const T: u64 = 1_000_000_000_000;
    if n < 100 * M {
        n.to_string()
    } else if n < G {
        format!("{}K", n / K)
    } else if n < 100 * G {
        format!("{}M", n / M)
    } else if n < 100 * T {
        format!("{}G", n / G)
    } else {
        format!("{}T", n / T)
    }
}

/// ipvsadm's `Forward` column for a ferrovs mode; an unknown mode is shown as sent.
pub fn forward_name(mode: &str) -> &str {
    match mode {
        "nat" => "Masq",
        "fullnat" => "FullNat",
        "dr" => "Route",
        "tunnel" => "Tunnel",
        other => other,
    }
}

/// `-Lnc`'s expire column: minutes and seconds left, rounded down as the kernel does.
fn expire(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// "TCP  198.18.0.100:80": ipvsadm puts two blanks between protocol and address.
fn service_name(s: &ServiceView) -> String {
    format!("{}  {}", s.protocol.to_ascii_uppercase(), s.address)
}

/// `-Ln`'s service line: name, scheduler and flags, then ferrovs's own
/// `name NAME`, the handle every `ferrovs ctl` command takes.
fn service_line(s: &ServiceView) -> String {
    let mut line = format!("{} {}", service_name(s), s.scheduler);
    if !s.mode.is_empty() {
        line.push_str(&format!(" ({})", s.mode));
    }
    if s.persistence_s > 0 {
        line.push_str(&format!(" persistent {}", s.persistence_s));
    }
    // ipvsadm -Ln's flag for one-packet scheduling.
    if s.ops {
        line.push_str(" ops");
    }
    match s.announced {
        Some(true) => line.push_str(" announced"),
        Some(false) => line.push_str(" withdrawn"),
        None => {}
    }
    if let Some(quorum) = s.quorum {
        line.push_str(&format!(" quorum {quorum}"));
        if s.available.is_some_and(|a| a < u64::from(quorum)) {
            line.push_str(" lost");
        }
    }
    if s.sorry_active == Some(true) {
        line.push_str(" sorry");
    }
    line.push_str(&format!(" name {}", s.name));
    line
}

fn stats_columns(s: &Stats) -> String {
    number_columns(
        [
            s.conns,
            s.in_packets,
            s.out_packets,
            s.in_bytes,
            s.out_bytes,
        ]
        .map(scale),
    )
}

/// Rates are averages; ipvsadm shows them as whole numbers.
fn rate_columns(r: &Rates) -> String {
    // `as` saturates: NaN and negative rates (a broken answer) show as 0.
    let whole = |x: f64| scale(x.round() as u64);
    number_columns([r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps].map(whole))
}

fn number_columns<S: AsRef<str>>(cells: [S; 5]) -> String {
    // ipvsadm's `%8lluT` runs into the previous column past 10^19; the blank here
    // is always printed.
    let n = width::NUMBER;
    cells
        .iter()
        .map(|c| format!(" {:>n$}", c.as_ref()))
        .collect()
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Lines joined with '\n', each without trailing blanks (the last column of a table
/// pads nothing, but a field can be empty).
#[derive(Default)]
struct Text(String);

impl Text {
    fn line(&mut self, line: impl AsRef<str>) {
        self.0.push_str(line.as_ref().trim_end());
        self.0.push('\n');
    }
}

/// `ctl sync`: the member, each peer, the counters, the shared addresses.
pub fn sync(s: &SyncView) -> String {
    let yes = |b: bool, y: &'static str, n: &'static str| if b { y } else { n };
    let mut out = format!(
        "sync {} {}\n",
        s.listen,
        yes(s.ready, "ready", "catching up")
    );
    for p in &s.peers {
        let heard = match p.last_heard_ms {
            Some(ms) => format!("last heard {ms} ms ago"),
            None => "never heard".into(),
        };
        out.push_str(&format!(
            "peer {} {} {}, {heard}, {} datagrams\n",
            p.address,
            yes(p.up, "up", "down"),
            yes(p.ready, "ready", "not ready"),
            p.datagrams
        ));
    }
    out.push_str(&format!(
        "datagrams sent {}, received {}; records sent {}, received {}\n",
        s.datagrams_sent, s.datagrams_received, s.records_sent, s.records_received
    ));
    out.push_str(&format!(
        "connections installed {}, records refused {}, records lost here {}\n",
        s.installed, s.refused, s.lost
    ));
    if !s.dropped.is_empty() {
        let drops: Vec<String> = s.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
        out.push_str(&format!("dropped: {}\n", drops.join(", ")));
    }
    for (addr, here) in &s.shared {
        out.push_str(&format!(
            "shared {addr} {}\n",
            yes(*here, "answered here", "answered by another member")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::RealServerView;

    /// Golden files hold `@VERSION@` where the banner names the crate version.
    fn golden(text: &str) -> String {
        text.replace("@VERSION@", env!("CARGO_PKG_VERSION"))
    }

    fn assert_golden(actual: &str, expected: &str) {
        let expected = golden(expected);
        assert!(
            actual == expected,
            "output differs from the golden file\n--- expected\n{expected}--- actual\n{actual}---"
        );
    }

    fn stats(
        conns: u64,
        in_packets: u64,
        out_packets: u64,
        in_bytes: u64,
        out_bytes: u64,
    ) -> Stats {
        Stats {
            conns,
            in_packets,
            out_packets,
            in_bytes,
            out_bytes,
        }
    }

    fn rates(cps: f64, in_pps: f64, out_pps: f64, in_bps: f64, out_bps: f64) -> Rates {
        Rates {
            cps,
            in_pps,
            out_pps,
            in_bps,
            out_bps,
        }
    }

    fn rs(address: &str, weight: u32, up: bool, active: u64, inactive: u64) -> RealServerView {
        RealServerView {
            address: address.into(),
            sorry: false,
            weight,
            up,
            active_conns: active,
            inactive_conns: inactive,
            stats: Stats::default(),
            rates: Rates::default(),
        }
    }

    /// IPv4: a FULLNAT service with a down and a draining server, below its quorum
    /// of 2 so that its sorry server serves, a persistent UDP service, and a service
    /// without real servers.
    fn ipv4() -> Vec<ServiceView> {
        let mut web = vec![
            rs("198.19.0.10:8080", 1, true, 3, 12),
            rs("198.19.0.11:8080", 2, false, 0, 0),
            rs("198.19.0.12:8080", 0, true, 1, 250),
            RealServerView {
                sorry: true,
                ..rs("198.19.0.99:8080", 1, true, 2, 0)
            },
        ];
        web[0].stats = stats(1_234, 56_789, 45_678, 99_999_999, 100_000_000);
        web[0].rates = rates(12.4, 870.5, 640.0, 1_048_576.0, 123_456_789.0);
        web[2].stats = stats(
            999_999_999,
            1_000_000_000,
            123_456_789_012,
            99_999_999_999_999,
            100_000_000_000_000,
        );
        web[2].rates = rates(0.49, 0.5, 0.0, 2e9, 4.2e14);
        let mut dns = vec![rs("198.19.0.20:53", 5, true, 0, 42)];
        dns[0].stats = stats(42, 84, 84, 5_376, 10_752);
        dns[0].rates = rates(1.0, 2.0, 2.0, 128.0, 256.0);
        vec![
            ServiceView {
                name: "web".into(),
                protocol: "tcp".into(),
                address: "198.18.0.100:80".into(),
                scheduler: "wrr".into(),
                mode: "fullnat".into(),
                persistence_s: 0,
                ops: false,
                announced: None,
                quorum: Some(2),
                available: Some(1),
                sorry_active: Some(true),
                stats: stats(
                    1_000_001_233,
                    1_000_056_789,
                    123_456_834_690,
                    100_000_099_999_998,
                    100_000_100_000_000,
                ),
                rates: rates(12.89, 871.0, 640.0, 2_001_048_576.0, 4.2e14 + 123_456_789.0),
                real_servers: web,
            },
            ServiceView {
                name: "dns".into(),
                protocol: "udp".into(),
                address: "198.18.0.53:53".into(),
                scheduler: "sh".into(),
                mode: "nat".into(),
                persistence_s: 60,
                ops: false,
                announced: None,
                quorum: Some(1),
                available: Some(1),
                sorry_active: None,
                stats: stats(42, 84, 84, 5_376, 10_752),
                rates: rates(1.0, 2.0, 2.0, 128.0, 256.0),
                real_servers: dns,
            },
            ServiceView {
                name: "spare".into(),
                protocol: "tcp".into(),
                address: "198.18.0.101:443".into(),
                scheduler: "mh".into(),
                mode: "dr".into(),
                persistence_s: 0,
                ops: false,
                announced: None,
                quorum: Some(0),
                available: Some(0),
                sorry_active: None,
                stats: Stats::default(),
                rates: Rates::default(),
                real_servers: vec![],
            },
        ]
    }

    /// IPv6 addresses longer than ipvsadm's columns.
    fn ipv6() -> Vec<ServiceView> {
        let mut servers = vec![
            rs("[2001:2:0:1:ffff:ffff:ffff:10]:8080", 100, true, 7, 3),
            rs("[2001:2:0:1::11]:8080", 100, false, 0, 1),
        ];
        servers[0].stats = stats(10, 200, 150, 14_000, 180_000);
        servers[0].rates = rates(0.2, 3.6, 2.8, 2_100.0, 30_000.0);
        vec![ServiceView {
            name: "web6".into(),
            protocol: "tcp".into(),
            address: "[2001:2:0:ffff:ffff:ffff:ffff:100]:443".into(),
            scheduler: "wlc".into(),
            mode: "tunnel".into(),
            persistence_s: 900,
            ops: false,
            announced: None,
            // As an older ferrovs answers: no quorum shown.
            quorum: None,
            available: None,
            sorry_active: None,
            stats: stats(11, 201, 150, 14_060, 180_000),
            rates: rates(0.2, 3.6, 2.8, 2_100.0, 30_000.0),
            real_servers: servers,
        }]
    }

    #[test]
    fn sync_status_reads_as_lines() {
        let view = SyncView {
            listen: "198.19.0.1:8848".into(),
            ready: true,
            peers: vec![super::super::proto::SyncPeerView {
                address: "198.19.0.2:8848".into(),
                up: false,
                ready: false,
                last_heard_ms: None,
                datagrams: 0,
            }],
            datagrams_sent: 10,
            datagrams_received: 8,
            records_sent: 100,
            records_received: 90,
            installed: 88,
            refused: 2,
            lost: 0,
            dropped: vec![("bad_tag".into(), 3)],
            shared: vec![
                ("198.18.0.100".into(), true),
                ("198.19.0.254".into(), false),
            ],
        };
        assert_eq!(
            sync(&view),
            "sync 198.19.0.1:8848 ready\n\
             peer 198.19.0.2:8848 down not ready, never heard, 0 datagrams\n\
             datagrams sent 10, received 8; records sent 100, received 90\n\
             connections installed 88, records refused 2, records lost here 0\n\
             dropped: bad_tag 3\n\
             shared 198.18.0.100 answered here\n\
             shared 198.19.0.254 answered by another member\n"
        );
    }

    #[test]
    fn announced_and_withdrawn_vips_are_flagged_on_the_service_line() {
        let mut list = ipv4();
        list[0].announced = Some(true);
        list[1].announced = Some(false);
        let text = services(&list, ListView::Plain);
        assert!(
            text.contains(
                "TCP  198.18.0.100:80 wrr (fullnat) announced quorum 2 lost sorry name web\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "UDP  198.18.0.53:53 sh (nat) persistent 60 withdrawn quorum 1 name dns\n"
            ),
            "{text}"
        );
        // Without `announce` nothing changes (the golden files).
        assert!(!services(&ipv4(), ListView::Plain).contains("announced"));
    }

    #[test]
    fn one_packet_scheduling_shows_as_ipvsadm_flags_it() {
        let mut list = ipv4();
        list[1].persistence_s = 0;
        list[1].ops = true;
        let text = services(&list, ListView::Plain);
        assert!(
            text.contains("UDP  198.18.0.53:53 sh (nat) ops quorum 1 name dns\n"),
            "{text}"
        );
        assert!(!text.contains("(fullnat) ops"), "{text}");
    }

    #[test]
    fn list_matches_golden() {
        assert_golden(
            &services(&ipv4(), ListView::Plain),
            include_str!("../../tests/golden/list.txt"),
        );
    }

    #[test]
    fn list_stats_matches_golden() {
        assert_golden(
            &services(&ipv4(), ListView::Stats),
            include_str!("../../tests/golden/list_stats.txt"),
        );
    }

    #[test]
    fn list_rate_matches_golden() {
        assert_golden(
            &services(&ipv4(), ListView::Rate),
            include_str!("../../tests/golden/list_rate.txt"),
        );
    }

    #[test]
    fn list_ipv6_matches_golden() {
        assert_golden(
            &services(&ipv6(), ListView::Plain),
            include_str!("../../tests/golden/list_ipv6.txt"),
        );
        assert_golden(
            &services(&ipv6(), ListView::Stats),
            include_str!("../../tests/golden/list_ipv6_stats.txt"),
        );
        assert_golden(
            &services(&ipv6(), ListView::Rate),
            include_str!("../../tests/golden/list_ipv6_rate.txt"),
        );
    }

    #[test]
    fn list_empty_matches_golden() {
        assert_golden(
            &services(&[], ListView::Plain),
            include_str!("../../tests/golden/list_empty.txt"),
        );
        assert_golden(
            &services(&[], ListView::Stats),
            include_str!("../../tests/golden/list_empty_stats.txt"),
        );
    }

    fn conn(
        protocol: &str,
        expires_ms: u64,
        state: &str,
        client: &str,
        virtual_address: &str,
        local: &str,
        real_server: &str,
    ) -> ConnView {
        ConnView {
            protocol: protocol.into(),
            client: client.into(),
            virtual_address: virtual_address.into(),
            local: local.into(),
            real_server: real_server.into(),
            state: state.into(),
            expires_ms,
            worker: 0,
        }
    }

    #[test]
    fn conns_match_golden() {
        let list = [
            conn(
                "TCP",
                898_999,
                "ESTABLISHED",
                "198.18.0.7:51234",
                "198.18.0.100:80",
                "198.19.0.2:1030",
                "198.19.0.10:8080",
            ),
            conn(
                "TCP",
                59_500,
                "SYN_RECV",
                "198.18.0.8:40000",
                "198.18.0.100:80",
                "198.19.0.2:1031",
                "198.19.0.12:8080",
            ),
            conn(
                "UDP",
                299_000,
                "UDP",
                "198.18.0.9:5353",
                "198.18.0.53:53",
                "198.18.0.9:5353",
                "198.19.0.20:53",
            ),
            conn(
                "TCP",
                999,
                "TIME_WAIT",
                "198.18.255.254:65535",
                "198.18.0.100:80",
                "198.19.255.254:65535",
                "198.19.0.11:8080",
            ),
        ];
        assert_golden(
            &conns(&list, false),
            include_str!("../../tests/golden/conns.txt"),
        );
    }

    #[test]
    fn conns_ipv6_truncated_matches_golden() {
        let list = [
            conn(
                "TCP",
                6_000_000,
                "ESTABLISHED",
                "[2001:2:0:ffff::7]:51234",
                "[2001:2:0:ffff:ffff:ffff:ffff:100]:443",
                "[2001:2:0:1::2]:1030",
                "[2001:2:0:1:ffff:ffff:ffff:10]:8080",
            ),
            conn(
                "TCP",
                0,
                "CLOSE",
                "[2001:2:0:ffff::8]:1",
                "[2001:2:0:ffff:ffff:ffff:ffff:100]:443",
                "[2001:2:0:1::2]:1031",
                "[2001:2:0:1::11]:8080",
            ),
        ];
        assert_golden(
            &conns(&list, true),
            include_str!("../../tests/golden/conns_ipv6.txt"),
        );
    }

    #[test]
    fn conns_empty_matches_golden() {
        assert_golden(
            &conns(&[], false),
            include_str!("../../tests/golden/conns_empty.txt"),
        );
    }

    #[test]
    fn ipv4_lines_are_ipvsadm_lines() {
        // The same bytes as ipvsadm's printf formats, plus the health column.
        let text = services(&ipv4(), ListView::Plain);
        let rs_line = format!(
            "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
            "198.19.0.10:8080", "FullNat", 1, 3, 12
        );
        assert!(text.contains(&format!("{rs_line} up\n")), "{text}");
        let text = services(&ipv4(), ListView::Stats);
        let svc = format!(
            "{:<33}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "UDP  198.18.0.53:53", 42, 84, 84, 5376, 10752
        );
        assert!(text.contains(&format!("\n{svc}\n")), "{text}");
        let header = format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
        assert!(text.contains(&format!("\n{header}\n")), "{text}");
        let text = conns(
            &[conn(
                "TCP",
                898_000,
                "ESTABLISHED",
                "1.2.3.4:5",
                "6.7.8.9:80",
                "1.2.3.4:5",
                "10.0.0.1:80",
            )],
            false,
        );
        let row = format!(
            "{:<3} {:<6} {:<11} {:<18} {:<18} {:<18} {}",
            "TCP", "14:58", "ESTABLISHED", "1.2.3.4:5", "6.7.8.9:80", "1.2.3.4:5", "10.0.0.1:80"
        );
        assert!(text.ends_with(&format!("\n{row}\n")), "{text}");
    }

    #[test]
    fn no_line_ends_in_blanks() {
        for text in [
            services(&ipv4(), ListView::Plain),
            services(&ipv6(), ListView::Rate),
            services(
                &[ServiceView {
                    scheduler: String::new(),
                    mode: String::new(),
                    ..ipv4().remove(2)
                }],
                ListView::Plain,
            ),
        ] {
            for line in text.lines() {
                assert_eq!(line, line.trim_end(), "{text}");
            }
        }
    }

    #[test]
    fn scale_follows_print_largenum() {
        for (n, text) in [
            (0, "0"),
            (99_999_999, "99999999"),
            (100_000_000, "100000K"),
            (999_999_999, "999999K"),
            (1_000_000_000, "1000M"),
            (99_999_999_999, "99999M"),
            (100_000_000_000, "100G"),
            (99_999_999_999_999, "99999G"),
            (100_000_000_000_000, "100T"),
            (u64::MAX, "18446744T"),
        ] {
            assert_eq!(scale(n), text, "{n}");
            assert!(scale(n).len() <= width::NUMBER + 1, "{n}");
        }
    }

    #[test]
    fn broken_rates_show_as_zero() {
        let mut list = ipv6();
        list[0].rates = rates(f64::NAN, -5.0, f64::NEG_INFINITY, 0.4, f64::INFINITY);
        let text = services(&list, ListView::Rate);
        let line = text.lines().find(|l| l.starts_with("TCP")).unwrap();
        let cells: Vec<&str> = line.split_whitespace().skip(2).collect();
        assert_eq!(cells, ["0", "0", "0", "0", "18446744T"]);
    }

    #[test]
    fn forward_names_are_ipvsadm_names() {
        assert_eq!(forward_name("nat"), "Masq");
        assert_eq!(forward_name("fullnat"), "FullNat");
        assert_eq!(forward_name("dr"), "Route");
        assert_eq!(forward_name("tunnel"), "Tunnel");
        assert_eq!(forward_name("quantum"), "quantum");
    }

    #[test]
    fn expire_is_minutes_and_seconds_rounded_down() {
        assert_eq!(expire(0), "00:00");
        assert_eq!(expire(999), "00:00");
        assert_eq!(expire(61_000), "01:01");
        assert_eq!(expire(900_000), "15:00");
        assert_eq!(expire(6_000_000), "100:00");
    }
}
