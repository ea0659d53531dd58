//! Whether a ferrovs run may be reported, and at what rate.
//!
//! A rate is only reported when nothing was lost for a reason other than the NIC
//! being full (`tx_full`): a misconfigured run (no neighbour, no service, wrong MAC)
//! drops everything cheaply and would otherwise look fast. The mempool must also end
//! where it started, so a leak cannot pass for speed either.
//!
//! Rates come from ferrovs's own counters, scraped at both ends of the measured
//! interval, the way testpmd derives its `Tx-pps` from port counters.

use std::fmt;

use crate::prom::Metrics;

/// Metric names read here (the metrics contract of the README).
pub mod metric {
    /// Packets each worker received.
    pub const WORKER_RX: &str = "ferrovs_worker_rx_packets_total";
    /// Packets each worker transmitted.
    pub const WORKER_TX: &str = "ferrovs_worker_tx_packets_total";
    /// Packets each worker dropped, by reason.
    pub const WORKER_DROPPED: &str = "ferrovs_worker_dropped_packets_total";
    /// Gauge: free mbufs in the packet mempool.
    pub const MEMPOOL_AVAILABLE: &str = "ferrovs_mempool_available_mbufs";
    /// Connections scheduled, per service.
    pub const SERVICE_CONNECTIONS: &str = "ferrovs_service_connections_total";
    /// Port counters that also mean a lost packet.
    pub const PORT_LOSSES: [&str; 4] = [
        "ferrovs_port_rx_missed_total",
        "ferrovs_port_rx_nombuf_total",
        "ferrovs_port_rx_errors_total",
        "ferrovs_port_tx_errors_total",
    ];
}

/// The only drop reason a reported rate may include.
pub const TX_FULL: &str = "tx_full";

/// A scrape and when it was taken (seconds on the runner's monotonic clock, the
/// midpoint of the HTTP exchange).
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Seconds on the runner's monotonic clock.
    pub at: f64,
    /// Every sample of the scrape.
    pub metrics: Metrics,
}

/// What the workload promises about connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every packet belongs to one of `flows` flows set up during warm-up: no new
    /// connection may appear in the measured interval.
    Established {
        /// How many flows the file cycles through.
        flows: u32,
    },
    /// Every packet opens a connection: the figure is connections per second.
    NewConnections,
}

/// What ferrovs said when it stopped (its log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    /// "stopped cleanly" was logged.
    pub clean: bool,
    /// The "N mbufs still in use at shutdown" line, if logged: after closing its
    /// ports ferrovs counts the mbufs not back in the pool, an exact leak check.
    pub leak: Option<String>,
}

impl Shutdown {
    /// Reads ferrovs's log output.
    pub fn from_log(log: &str) -> Shutdown {
        Shutdown {
            clean: log.lines().any(|l| l.contains("stopped cleanly")),
            leak: log
                .lines()
                .find(|l| l.contains("mbufs still in use at shutdown"))
                .map(|l| l.trim().to_string()),
        }
    }
}

/// Everything collected about one ferrovs run.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The first scrape after start-up (traffic already flowing).
    pub first: Scrape,
    /// Start of the measured interval (after warm-up).
    pub start: Scrape,
    /// End of the measured interval; also the last scrape of the run.
    pub end: Scrape,
    /// How many mbufs the workers may hold between RX and TX at any instant
    /// (burst x ports x workers): the gauge moves within this while traffic flows.
    pub in_flight_bound: u64,
    /// What the workload promises about connections.
    pub expect: Expect,
    /// What ferrovs logged when it stopped.
    pub shutdown: Shutdown,
}

/// A reportable result.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Packets transmitted per second over the interval.
    pub tx_pps: f64,
    /// Packets received per second over the interval.
    pub rx_pps: f64,
    /// New connections per second, when the metric exists.
    pub new_conns_per_sec: Option<f64>,
    /// `tx_full` drops per second over the interval.
    pub tx_full_per_sec: f64,
    /// The headline figure: `tx_pps`, or connections per second for
    /// [`Expect::NewConnections`].
    pub figure: f64,
    /// Caveats worth printing under the table.
    pub notes: Vec<String>,
}

/// Why a run is not reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Packets lost for these reasons (label, count over the whole run).
    Dropped(Vec<(String, f64)>),
    /// The mempool gauge moved by more than the in-flight bound.
    MempoolChanged {
        /// Free mbufs at the first scrape.
        before: f64,
        /// Free mbufs at the last scrape.
        after: f64,
        /// The in-flight bound the change exceeded.
        bound: u64,
    },
    /// ferrovs reported mbufs still in use after closing its ports (its log line).
    MbufsLeaked(String),
    /// ferrovs did not log a clean stop.
    UncleanStop,
    /// A metric the verdict needs is missing.
    MissingMetric(&'static str),
    /// New connections appeared while only established flows were expected.
    NewConnections {
        /// New connections per second over the measured interval.
        per_sec: f64,
    },
    /// Nothing was forwarded in the interval.
    NoTraffic,
    /// The interval has no length (clock or scrape problem).
    EmptyInterval,
}

impl Refusal {
    /// The refusal as a snake_case label.
    pub const fn reason(&self) -> &'static str {
        match self {
            Refusal::Dropped(_) => "dropped",
            Refusal::MempoolChanged { .. } => "mempool_changed",
            Refusal::MbufsLeaked(_) => "mbufs_leaked",
            Refusal::UncleanStop => "unclean_stop",
            Refusal::MissingMetric(_) => "missing_metric",
            Refusal::NewConnections { .. } => "new_connections",
            Refusal::NoTraffic => "no_traffic",
            Refusal::EmptyInterval => "empty_interval",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Dropped(reasons) => {
                f.write_str("packets dropped for reasons other than tx_full:")?;
                for (reason, n) in reasons {
                    write!(f, " {reason}={n}")?;
                }
                Ok(())
            }
            Refusal::MempoolChanged {
                before,
                after,
                bound,
            } => write!(
                f,
                "ferrovs_mempool_available_mbufs went from {before} to {after} \
                 (more than the {bound} mbufs a worker can hold in flight)"
            ),
            Refusal::MbufsLeaked(line) => write!(f, "ferrovs logged: {line}"),
            Refusal::UncleanStop => f.write_str("ferrovs did not log a clean stop"),
            Refusal::MissingMetric(name) => write!(f, "metric {name} is missing"),
            Refusal::NewConnections { per_sec } => write!(
                f,
                "{per_sec:.0} new connections/s during the interval: flows were not \
                 established"
            ),
            Refusal::NoTraffic => f.write_str("nothing was transmitted"),
            Refusal::EmptyInterval => f.write_str("the measured interval is empty"),
        }
    }
}

/// Decides whether the run is reported, and with which figures. Every reason to
/// refuse is collected, not just the first.
pub fn judge(e: &Evidence) -> Result<Measurement, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let last = &e.end.metrics;

    // Losses over the whole run, warm-up included.
    let mut dropped: Vec<(String, f64)> = last
        .sum_by(metric::WORKER_DROPPED, "reason")
        .into_iter()
        .filter(|(reason, n)| reason != TX_FULL && *n > 0.0)
        .collect();
    for name in metric::PORT_LOSSES {
        for (port, n) in last.sum_by(name, "port") {
            if n > 0.0 {
                let short = name
                    .trim_start_matches("ferrovs_")
                    .trim_end_matches("_total");
                dropped.push((format!("{short}{{port={port}}}"), n));
            }
        }
    }
    if !dropped.is_empty() {
        refusals.push(Refusal::Dropped(dropped));
    }

    match (
        e.first.metrics.sum(metric::MEMPOOL_AVAILABLE),
        last.sum(metric::MEMPOOL_AVAILABLE),
    ) {
        (Some(before), Some(after)) => {
            if (before - after).abs() > e.in_flight_bound as f64 {
                refusals.push(Refusal::MempoolChanged {
                    before,
                    after,
                    bound: e.in_flight_bound,
                });
            }
        }
        _ => refusals.push(Refusal::MissingMetric(metric::MEMPOOL_AVAILABLE)),
    }
    if let Some(line) = &e.shutdown.leak {
        refusals.push(Refusal::MbufsLeaked(line.clone()));
    }
    if !e.shutdown.clean {
        refusals.push(Refusal::UncleanStop);
    }

    let secs = e.end.at - e.start.at;
    if secs.is_nan() || secs <= 0.0 {
        refusals.push(Refusal::EmptyInterval);
        return Err(refusals);
    }
    let rate = |name: &'static str| -> Option<f64> {
        let a = e.start.metrics.sum(name)?;
        let b = e.end.metrics.sum(name)?;
        Some((b - a) / secs)
    };
    let tx_pps = rate(metric::WORKER_TX);
    let rx_pps = rate(metric::WORKER_RX);
    if tx_pps.is_none() {
        refusals.push(Refusal::MissingMetric(metric::WORKER_TX));
    }
    if rx_pps.is_none() {
        refusals.push(Refusal::MissingMetric(metric::WORKER_RX));
    }
    if tx_pps.is_some_and(|r| r <= 0.0) {
        refusals.push(Refusal::NoTraffic);
    }
    let tx_full = match (
        e.start
            .metrics
            .sum_where(metric::WORKER_DROPPED, "reason", TX_FULL),
        last.sum_where(metric::WORKER_DROPPED, "reason", TX_FULL),
    ) {
        (Some(a), Some(b)) => (b - a) / secs,
        _ => 0.0,
    };

    let mut notes = Vec::new();
    let conns = rate(metric::SERVICE_CONNECTIONS);
    match (e.expect, conns) {
        (Expect::Established { .. }, Some(c)) if c > 0.0 => {
            refusals.push(Refusal::NewConnections { per_sec: c });
        }
        (Expect::Established { flows }, None) => notes.push(format!(
            "{} is not exported: could not check that all {flows} flows were \
             established before measuring",
            metric::SERVICE_CONNECTIONS
        )),
        (Expect::NewConnections, None) => {
            refusals.push(Refusal::MissingMetric(metric::SERVICE_CONNECTIONS));
        }
        _ => {}
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let (tx_pps, rx_pps) = (tx_pps.unwrap_or(0.0), rx_pps.unwrap_or(0.0));
    let figure = match e.expect {
        Expect::Established { .. } => tx_pps,
        Expect::NewConnections => {
            let c = conns.unwrap_or(0.0);
            if c < 0.99 * rx_pps {
                notes.push(format!(
                    "only {:.1}% of SYNs opened a connection ({c:.0}/s of {rx_pps:.0}/s): \
                     the rest met a connection still alive from the previous pass",
                    100.0 * c / rx_pps
                ));
            }
            c
        }
    };
    if tx_full > 0.0 {
        notes.push(format!(
            "{tx_full:.0} packets/s refused by the TX queue (tx_full)"
        ));
    }
    Ok(Measurement {
        tx_pps,
        rx_pps,
        new_conns_per_sec: conns,
        tx_full_per_sec: tx_full,
        figure,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(at: f64, text: &str) -> Scrape {
        Scrape {
            at,
            metrics: Metrics::parse(text).unwrap(),
        }
    }

    fn counters(rx: u64, tx: u64, pool: u64, conns: Option<u64>, drops: &str) -> String {
        let mut s = format!(
            "ferrovs_worker_rx_packets_total{{worker=\"0\"}} {rx}\n\
             ferrovs_worker_tx_packets_total{{worker=\"0\"}} {tx}\n\
             ferrovs_mempool_available_mbufs {pool}\n\
             ferrovs_port_rx_missed_total{{port=\"wan\"}} 0\n\
             ferrovs_worker_dropped_packets_total{{worker=\"0\",reason=\"runt\"}} 0\n{drops}"
        );
        if let Some(c) = conns {
            s.push_str(&format!(
                "ferrovs_service_connections_total{{service=\"bench\"}} {c}\n"
            ));
        }
        s
    }

    fn evidence(expect: Expect, start: String, end: String) -> Evidence {
        Evidence {
            first: scrape(0.5, &counters(10, 10, 1000, Some(10), "")),
            start: scrape(2.0, &start),
            end: scrape(4.0, &end),
            in_flight_bound: 64,
            expect,
            shutdown: Shutdown {
                clean: true,
                leak: None,
            },
        }
    }

    const FLOWS: Expect = Expect::Established { flows: 1000 };

    #[test]
    fn clean_run_reports_the_tx_rate() {
        let e = evidence(
            FLOWS,
            counters(1_000, 900, 990, Some(1000), ""),
            counters(20_001_000, 20_000_900, 1000, Some(1000), ""),
        );
        let m = judge(&e).unwrap();
        assert_eq!(m.tx_pps, 10_000_000.0);
        assert_eq!(m.rx_pps, 10_000_000.0);
        assert_eq!(m.figure, m.tx_pps);
        assert_eq!(m.new_conns_per_sec, Some(0.0));
        assert!(m.notes.is_empty());
    }

    #[test]
    fn tx_full_is_allowed_and_noted() {
        let tx_full = |n: u64| {
            format!("ferrovs_worker_dropped_packets_total{{worker=\"0\",reason=\"tx_full\"}} {n}\n")
        };
        let e = evidence(
            FLOWS,
            counters(0, 0, 1000, Some(1000), &tx_full(5)),
            counters(2_000, 1_000, 1000, Some(1000), &tx_full(1_005)),
        );
        let m = judge(&e).unwrap();
        assert_eq!(m.tx_pps, 500.0);
        assert_eq!(m.tx_full_per_sec, 500.0);
        assert_eq!(m.notes.len(), 1);
    }

    #[test]
    fn any_other_drop_refuses_and_lists_the_reasons() {
        let drops = "ferrovs_worker_dropped_packets_total{worker=\"0\",reason=\"not_for_us\"} 7\n\
                     ferrovs_worker_dropped_packets_total{worker=\"1\",reason=\"not_for_us\"} 3\n\
                     ferrovs_worker_dropped_packets_total{worker=\"0\",reason=\"tx_full\"} 9\n\
                     ferrovs_port_rx_nombuf_total{port=\"wan\"} 2\n";
        let e = evidence(
            FLOWS,
            counters(0, 0, 1000, Some(1000), ""),
            counters(100, 90, 1000, Some(1000), drops),
        );
        let refusals = judge(&e).unwrap_err();
        assert_eq!(
            refusals,
            vec![Refusal::Dropped(vec![
                ("not_for_us".to_string(), 10.0),
                ("port_rx_nombuf{port=wan}".to_string(), 2.0),
            ])]
        );
        assert!(refusals[0].to_string().contains("not_for_us=10"));
    }

    #[test]
    fn mempool_must_end_where_it_started() {
        let e = evidence(
            FLOWS,
            counters(0, 0, 1000, Some(1000), ""),
            counters(100, 100, 1000 - 65, Some(1000), ""),
        );
        assert_eq!(
            judge(&e).unwrap_err(),
            vec![Refusal::MempoolChanged {
                before: 1000.0,
                after: 935.0,
                bound: 64
            }]
        );
        // Within what a worker holds in flight: accepted.
        let e = evidence(
            FLOWS,
            counters(0, 0, 1000, Some(1000), ""),
            counters(100, 100, 1000 - 64, Some(1000), ""),
        );
        assert!(judge(&e).is_ok());
    }

    #[test]
    fn shutdown_leaks_and_unclean_stops_refuse() {
        let mut e = evidence(
            FLOWS,
            counters(0, 0, 1000, Some(1000), ""),
            counters(100, 100, 1000, Some(1000), ""),
        );
        e.shutdown = Shutdown {
            clean: false,
            leak: Some("12 mbufs still in use at shutdown".into()),
        };
        assert_eq!(
            judge(&e).unwrap_err(),
            vec![
                Refusal::MbufsLeaked("12 mbufs still in use at shutdown".into()),
                Refusal::UncleanStop
            ]
        );
    }

    #[test]
    fn established_workloads_must_not_create_connections() {
        let e = evidence(
            FLOWS,
            counters(0, 0, 1000, Some(1000), ""),
            counters(100, 100, 1000, Some(1100), ""),
        );
        assert_eq!(
            judge(&e).unwrap_err(),
            vec![Refusal::NewConnections { per_sec: 50.0 }]
        );
        // Without the metric the rate is reported with a caveat.
        let e = evidence(
            FLOWS,
            counters(0, 0, 1000, None, ""),
            counters(100, 100, 1000, None, ""),
        );
        let m = judge(&e).unwrap();
        assert_eq!(m.tx_pps, 50.0);
        assert!(m.notes[0].contains("could not check"));
    }

    #[test]
    fn new_connection_workloads_report_connections_per_second() {
        let e = evidence(
            Expect::NewConnections,
            counters(0, 0, 1000, Some(0), ""),
            counters(4_000_000, 4_000_000, 1000, Some(4_000_000), ""),
        );
        let m = judge(&e).unwrap();
        assert_eq!(m.figure, 2_000_000.0);
        assert!(m.notes.is_empty());
        // SYNs that met a live connection are not counted as new ones.
        let e = evidence(
            Expect::NewConnections,
            counters(0, 0, 1000, Some(0), ""),
            counters(4_000_000, 4_000_000, 1000, Some(3_000_000), ""),
        );
        let m = judge(&e).unwrap();
        assert_eq!(m.figure, 1_500_000.0);
        assert!(m.notes[0].contains("75.0%"));
        // No connection counter: no figure at all.
        let e = evidence(
            Expect::NewConnections,
            counters(0, 0, 1000, None, ""),
            counters(4_000_000, 4_000_000, 1000, None, ""),
        );
        assert_eq!(
            judge(&e).unwrap_err(),
            vec![Refusal::MissingMetric(metric::SERVICE_CONNECTIONS)]
        );
    }

    #[test]
    fn no_traffic_missing_metrics_and_empty_interval() {
        let e = evidence(
            FLOWS,
            counters(5, 5, 1000, Some(1000), ""),
            counters(5, 5, 1000, Some(1000), ""),
        );
        assert_eq!(judge(&e).unwrap_err(), vec![Refusal::NoTraffic]);

        let mut e = evidence(FLOWS, "x 1\n".into(), "x 2\n".into());
        e.first = scrape(0.0, "x 0\n");
        let refusals = judge(&e).unwrap_err();
        assert_eq!(
            refusals,
            vec![
                Refusal::MissingMetric(metric::MEMPOOL_AVAILABLE),
                Refusal::MissingMetric(metric::WORKER_TX),
                Refusal::MissingMetric(metric::WORKER_RX),
            ]
        );

        let mut e = evidence(
            FLOWS,
            counters(0, 0, 1000, Some(1000), ""),
            counters(9, 9, 1000, Some(1000), ""),
        );
        e.end.at = e.start.at;
        assert_eq!(judge(&e).unwrap_err(), vec![Refusal::EmptyInterval]);
    }

    #[test]
    fn reads_the_shutdown_log() {
        let log = "[2026-01-01T00:00:00Z INFO  ferrovs::runtime] stopping workers\n\
                   [2026-01-01T00:00:00Z WARN  ferrovs::runtime] 37 mbufs still in use at shutdown\n\
                   [2026-01-01T00:00:00Z INFO  ferrovs::runtime] stopped cleanly\n";
        assert_eq!(
            Shutdown::from_log(log),
            Shutdown {
                clean: true,
                leak: Some(
                    "[2026-01-01T00:00:00Z WARN  ferrovs::runtime] 37 mbufs still in use at \
                     shutdown"
                        .into()
                ),
            }
        );
        assert_eq!(
            Shutdown::from_log("panicked at ...\n"),
            Shutdown {
                clean: false,
                leak: None
            }
        );
    }
}
