//! Reads `dpdk-testpmd --stats-period N` output: the per-port "NIC statistics"
//! blocks it prints every period, with its own rate computation ("Throughput (since
//! last show)", packets per second from TSC deltas).
//!
//! ```text
//! Port statistics ====================================
//!   ######################## NIC statistics for port 1  ########################
//!   RX-packets: 0          RX-missed: 0          RX-bytes:  0
//!   RX-errors: 0
//!   RX-nombuf:  0
//!   TX-packets: 183840320  TX-errors: 0          TX-bytes:  0
//!
//!   Throughput (since last show)
//!   Rx-pps:            0          Rx-bps:            0
//!   Tx-pps:     46070545          Tx-bps:            0
//!   ############################################################################
//! ```
//!
//! The parser is fed line by line as testpmd prints (its screen-clearing escape
//! sequences included) and keeps every completed block. A block only counts once
//! its `Tx-pps` line arrived; anything it does not recognise is skipped.

/// One port's figures from one periodic show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortSample {
    /// The show it belongs to, counted from 0. testpmd's first show has no previous
    /// one, so its rates are 0.
    pub show: u32,
    /// The port number from the block's header (`NIC statistics for port N`).
    pub port: u16,
    /// `RX-packets`: received since testpmd started.
    pub rx_packets: u64,
    /// `TX-packets`: transmitted since testpmd started.
    pub tx_packets: u64,
    /// `RX-nombuf`: receive mbuf allocations that failed, since testpmd started.
    pub rx_nombuf: u64,
    /// `TX-errors`: packets the port failed to transmit, since testpmd started.
    pub tx_errors: u64,
    /// `Rx-pps`: packets received per second since the previous show.
    pub rx_pps: u64,
    /// `Tx-pps`: packets transmitted per second since the previous show.
    pub tx_pps: u64,
}

/// Accumulates samples from testpmd's output.
#[derive(Debug, Default)]
pub struct StatsParser {
    /// Shows started so far (`Port statistics ===` headers).
    shows: u32,
    current: Option<PortSample>,
    samples: Vec<PortSample>,
}

impl StatsParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line of output (without its newline).
    pub fn feed(&mut self, line: &str) {
        let line = strip_escapes(line);
        let line = line.trim();
        if line.starts_with("Port statistics") {
            self.shows += 1;
            self.current = None;
            return;
        }
        if let Some(rest) = line.strip_prefix("######################## NIC statistics for port") {
            let port = rest.trim().trim_end_matches('#').trim().parse::<u16>();
            // A block before any "Port statistics" header is not periodic output.
            self.current = match (port, self.shows) {
                (Ok(port), 1..) => Some(PortSample {
                    show: self.shows - 1,
                    port,
                    ..PortSample::default()
                }),
                _ => None,
            };
            return;
        }
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let mut tokens = line.split_whitespace();
        while let Some(key) = tokens.next() {
            let Some(value) = tokens.next().and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            match key {
                "RX-packets:" => cur.rx_packets = value,
                "TX-packets:" => cur.tx_packets = value,
                "RX-nombuf:" => cur.rx_nombuf = value,
                "TX-errors:" => cur.tx_errors = value,
                "Rx-pps:" => cur.rx_pps = value,
                "Tx-pps:" => {
                    cur.tx_pps = value;
                    self.samples.push(*cur);
                    self.current = None;
                    return;
                }
                _ => {}
            }
        }
    }

    /// Completed periodic shows.
    pub fn shows(&self) -> u32 {
        // The show in progress counts once one of its blocks completed.
        self.samples.last().map_or(0, |s| s.show + 1)
    }

    /// Whether `port`'s block of show `show` has completed.
    pub fn has_sample(&self, port: u16, show: u32) -> bool {
        self.samples
            .iter()
            .any(|s| s.port == port && s.show == show)
    }

    /// Every completed sample, in output order.
    pub fn samples(&self) -> &[PortSample] {
        &self.samples
    }

    /// The mean `Tx-pps` of `port` over shows `first..first + count`, or `None` when
    /// some of those shows are missing.
    pub fn mean_tx_pps(&self, port: u16, first: u32, count: u32) -> Option<f64> {
        if count == 0 {
            return None;
        }
        let picked: Vec<u64> = self
            .samples
            .iter()
            .filter(|s| s.port == port && (first..first + count).contains(&s.show))
            .map(|s| s.tx_pps)
            .collect();
        (picked.len() == count as usize)
            .then(|| picked.iter().map(|&v| v as f64).sum::<f64>() / f64::from(count))
    }
}

/// The line without ANSI escape sequences (testpmd clears the screen before each
/// show: `ESC [ 2 J ESC [ 1 ; 1 H`).
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // CSI: ESC '[' parameters, ended by a byte in '@'..='~'.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\u{1b}[2J\u{1b}[1;1H
Port statistics ====================================
  ######################## NIC statistics for port 0  ########################
  RX-packets: 92087872   RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  7         
  TX-packets: 0          TX-errors: 0          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:     45834954          Rx-bps:            0
  Tx-pps:            0          Tx-bps:            0
  ############################################################################

  ######################## NIC statistics for port 1  ########################
  RX-packets: 0          RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  0         
  TX-packets: 91685280   TX-errors: 3          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:     45834996          Tx-bps:            0
  ############################################################################";

    fn feed(p: &mut StatsParser, text: &str) {
        for line in text.lines() {
            p.feed(line);
        }
    }

    #[test]
    fn parses_a_show() {
        let mut p = StatsParser::new();
        feed(&mut p, SHOW);
        assert_eq!(p.shows(), 1);
        assert_eq!(
            p.samples(),
            [
                PortSample {
                    show: 0,
                    port: 0,
                    rx_packets: 92_087_872,
                    tx_packets: 0,
                    rx_nombuf: 7,
                    tx_errors: 0,
                    rx_pps: 45_834_954,
                    tx_pps: 0,
                },
                PortSample {
                    show: 0,
                    port: 1,
                    rx_packets: 0,
                    tx_packets: 91_685_280,
                    rx_nombuf: 0,
                    tx_errors: 3,
                    rx_pps: 0,
                    tx_pps: 45_834_996,
                },
            ]
        );
    }

    #[test]
    fn mean_over_a_window_of_shows() {
        let mut p = StatsParser::new();
        for pps in [0u64, 10, 20, 30, 40] {
            feed(&mut p, &SHOW.replace("45834996", &pps.to_string()));
        }
        assert_eq!(p.shows(), 5);
        assert!(p.has_sample(1, 4) && !p.has_sample(1, 5) && !p.has_sample(2, 0));
        assert_eq!(p.mean_tx_pps(1, 1, 2), Some(15.0));
        assert_eq!(p.mean_tx_pps(1, 2, 3), Some(30.0));
        // Port 0 transmits nothing.
        assert_eq!(p.mean_tx_pps(0, 1, 4), Some(0.0));
        // Not enough shows, unknown port, empty window.
        assert_eq!(p.mean_tx_pps(1, 3, 3), None);
        assert_eq!(p.mean_tx_pps(7, 1, 1), None);
        assert_eq!(p.mean_tx_pps(1, 1, 0), None);
    }

    #[test]
    fn ignores_the_final_forward_statistics_and_banners() {
        let mut p = StatsParser::new();
        feed(
            &mut p,
            "EAL: Detected CPU lcores: 2
Port 0: BA:1F:60:D3:E6:2D
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 229963904      RX-dropped: 0             RX-total: 229963904
  TX-packets: 0              TX-dropped: 0             TX-total: 0",
        );
        assert!(p.samples().is_empty());
        assert_eq!(p.shows(), 0);
    }

    #[test]
    fn a_block_cut_short_is_not_counted() {
        let mut p = StatsParser::new();
        let cut: String = SHOW
            .lines()
            .take_while(|l| !l.contains("Tx-pps:     45834996"))
            .collect::<Vec<_>>()
            .join("\n");
        feed(&mut p, &cut);
        assert_eq!(p.samples().len(), 1);
        assert_eq!(p.samples()[0].port, 0);
        // The show counts as started, but port 1 is not in yet.
        assert_eq!(p.shows(), 1);
        assert!(!p.has_sample(1, 0));
        // The next show discards the unfinished block.
        feed(&mut p, SHOW);
        assert_eq!(p.samples().len(), 3);
        assert_eq!(p.samples()[2].show, 1);
    }

    #[test]
    fn garbage_and_malformed_numbers_are_skipped() {
        let mut p = StatsParser::new();
        feed(
            &mut p,
            "Port statistics ====
  ######################## NIC statistics for port x  ########################
  Tx-pps: 5
  ######################## NIC statistics for port 2  ########################
  RX-packets: -1  TX-packets: 12abc
  Rx-pps: 99999999999999999999999
  \u{1b}[2JTx-pps: 42
  \u{1b}",
        );
        assert_eq!(
            p.samples(),
            [PortSample {
                show: 0,
                port: 2,
                tx_pps: 42,
                ..PortSample::default()
            }]
        );
    }

    #[test]
    fn strips_csi_sequences() {
        assert_eq!(strip_escapes("\u{1b}[2J\u{1b}[1;1Hab"), "ab");
        assert_eq!(strip_escapes("a\u{1b}"), "a");
        assert_eq!(strip_escapes("a\u{1b}xb"), "ab");
    }
}
