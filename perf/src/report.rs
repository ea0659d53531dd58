//! The results table. A cell holds a measured figure or says why there is none; no
//! code path turns a missing measurement into a number.

use std::fmt::Write as _;

use crate::scenario::{BenchMode, Workload};
use crate::traffic::Traffic;

/// One cell of a rate column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Packets (or connections) per second, printed in millions.
    Rate(f64),
    /// Bytes, printed as is.
    Bytes(f64),
    /// The mode's forwarding path does not exist yet.
    NotBuilt,
    /// Measured but not reportable; the note with this number says why.
    Refused(usize),
    /// The run failed; the note with this number says how.
    Failed(usize),
    /// Not measured in this invocation (filtered out or not applicable).
    Empty,
}

impl Cell {
    /// The figure, when there is one.
    pub fn value(&self) -> Option<f64> {
        match *self {
            Cell::Rate(v) | Cell::Bytes(v) => Some(v),
            _ => None,
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Rate(v) => format!("{:.2}", v / 1e6),
            Cell::Bytes(v) => format!("{v:.1} B"),
            Cell::NotBuilt => "not built".to_string(),
            Cell::Refused(n) => format!("refused [{n}]"),
            Cell::Failed(n) => format!("failed [{n}]"),
            Cell::Empty => "-".to_string(),
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// One contestant's cells from several rounds as one cell: the median when every
/// round gave a figure, else the first round's reason for having none (a failed or
/// refused round is never averaged away).
pub fn combine_rounds(cells: &[Cell]) -> Cell {
    if let Some(bad) = cells.iter().find(|c| !matches!(c, Cell::Rate(_))) {
        return bad.clone();
    }
    let figures: Vec<f64> = cells.iter().filter_map(Cell::value).collect();
    median(&figures).map_or(Cell::Empty, Cell::Rate)
}

/// A performance target (perf/README.md), per worker core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// ferrovs / testpmd 5tswap at least this.
    RatioAtLeast(f64),
    /// New connections per second at least this.
    ConnsAtLeast(f64),
    /// Bytes per live connection at most this.
    BytesAtMost(f64),
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::RatioAtLeast(r) => format!(">= {r:.2}"),
            Target::ConnsAtLeast(c) => format!(">= {:.1} Mconn/s", c / 1e6),
            Target::BytesAtMost(b) => format!("<= {b:.0} B"),
        }
    }
}

/// The issue's target for a workload in a mode, where it sets one.
pub fn issue_target(workload: &Workload, mode: BenchMode) -> Option<Target> {
    match (workload.traffic, mode) {
        (Traffic::TcpSyns { .. }, _) => Some(Target::ConnsAtLeast(2e6)),
        (Traffic::UdpFlows { .. }, BenchMode::Dr) => Some(Target::RatioAtLeast(0.60)),
        // The issue sets none for TUNNEL.
        (Traffic::UdpFlows { .. }, BenchMode::Tunnel) => None,
        (Traffic::UdpFlows { flows }, BenchMode::Nat | BenchMode::FullNat) => match flows {
            65_536 => Some(Target::RatioAtLeast(0.50)),
            1_048_576 => Some(Target::RatioAtLeast(0.35)),
            _ => None,
        },
    }
}

/// The memory target: bytes per live connection.
pub const MEMORY_TARGET: Target = Target::BytesAtMost(128.0);

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What was measured: the workload's label.
    pub workload: String,
    /// The forwarding mode as the configuration spells it.
    pub mode: String,
    /// ferrovs's figure, or why there is none.
    pub ferrovs: Cell,
    /// testpmd's `io` engine on the same traffic: the cost of the I/O alone.
    pub testpmd_io: Cell,
    /// testpmd's `5tswap` engine on the same traffic: the figure ferrovs is compared
    /// with.
    pub testpmd_5tswap: Cell,
    /// What the row has to reach, where a target is set.
    pub target: Option<Target>,
    /// ferrovs / 5tswap of each round, both measured minutes apart at most; empty
    /// for a single measurement.
    pub round_ratios: Vec<f64>,
}

impl Row {
    /// ferrovs / 5tswap, when both were measured: over several rounds, the median
    /// of the rounds' ratios, so that a slow spell of the machine during one
    /// contestant's run spoils one round, not the figure.
    pub fn ratio(&self) -> Option<f64> {
        match (&self.ferrovs, &self.testpmd_5tswap) {
            (Cell::Rate(_), Cell::Rate(_)) if !self.round_ratios.is_empty() => {
                median(&self.round_ratios)
            }
            (Cell::Rate(f), Cell::Rate(t)) if *t > 0.0 => Some(f / t),
            _ => None,
        }
    }

    /// The ratio as printed: with the lowest and highest round when there were
    /// several.
    fn ratio_text(&self) -> String {
        let Some(r) = self.ratio() else {
            return "-".to_string();
        };
        let lo = self.round_ratios.iter().copied().reduce(f64::min);
        let hi = self.round_ratios.iter().copied().reduce(f64::max);
        match (lo, hi) {
            (Some(lo), Some(hi)) if self.round_ratios.len() > 1 => {
                format!("{r:.2} ({lo:.2}-{hi:.2})")
            }
            _ => format!("{r:.2}"),
        }
    }

    /// Whether the target is met: `None` without a target or a figure.
    pub fn met(&self) -> Option<bool> {
        match self.target? {
            Target::RatioAtLeast(r) => self.ratio().map(|x| x >= r),
            Target::ConnsAtLeast(c) => match self.ferrovs {
                Cell::Rate(v) => Some(v >= c),
                _ => None,
            },
            Target::BytesAtMost(b) => match self.ferrovs {
                Cell::Bytes(v) => Some(v <= b),
                _ => None,
            },
        }
    }
}

/// The table and the numbered notes its cells refer to.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The table's lines, in the order they are printed.
    pub rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// An empty table without notes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a note; returns its number for a [`Cell::Refused`] or [`Cell::Failed`].
    pub fn note(&mut self, text: impl Into<String>) -> usize {
        self.notes.push(text.into());
        self.notes.len()
    }

    /// The notes, in order: note `n` is at index `n - 1`.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The table as text, notes below it.
    pub fn render(&self) -> String {
        const HEADER: [&str; 8] = [
            "workload",
            "mode",
            "ferrovs Mpps",
            "testpmd io Mpps",
            "testpmd 5tswap Mpps",
            "ratio to 5tswap",
            "target",
            "met",
        ];
        let lines: Vec<[String; 8]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.workload.clone(),
                    r.mode.clone(),
                    r.ferrovs.text(),
                    r.testpmd_io.text(),
                    r.testpmd_5tswap.text(),
                    r.ratio_text(),
                    r.target.map_or("-".to_string(), Target::text),
                    match r.met() {
                        Some(true) => "yes".to_string(),
                        Some(false) => "no".to_string(),
                        None => "-".to_string(),
                    },
                ]
            })
            .collect();
        let mut widths = HEADER.map(str::len);
        for l in &lines {
            for (w, cell) in widths.iter_mut().zip(l) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let sep = if i == 0 { "" } else { " | " };
                // Text columns left, figures right.
                if i < 2 {
                    let _ = write!(text, "{sep}{cell:<w$}");
                } else {
                    let _ = write!(text, "{sep}{cell:>w$}");
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&HEADER.map(String::from));
        line(&widths.map(|w| "-".repeat(w)));
        for l in &lines {
            line(l);
        }
        for (i, n) in self.notes.iter().enumerate() {
            let _ = writeln!(out, "[{}] {n}", i + 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::workload;

    fn row(ferrovs: Cell, tswap: Cell, target: Option<Target>) -> Row {
        Row {
            workload: "UDP 64K flows".into(),
            mode: "nat".into(),
            ferrovs,
            testpmd_io: Cell::Rate(20e6),
            testpmd_5tswap: tswap,
            target,
            round_ratios: Vec::new(),
        }
    }

    #[test]
    fn ratio_and_target() {
        let r = row(
            Cell::Rate(6e6),
            Cell::Rate(10e6),
            Some(Target::RatioAtLeast(0.5)),
        );
        assert_eq!(r.ratio(), Some(0.6));
        assert_eq!(r.met(), Some(true));
        let r = row(
            Cell::Rate(4e6),
            Cell::Rate(10e6),
            Some(Target::RatioAtLeast(0.5)),
        );
        assert_eq!(r.met(), Some(false));
        let r = row(Cell::Rate(4e6), Cell::Rate(10e6), None);
        assert_eq!(r.met(), None);
    }

    #[test]
    fn missing_figures_never_become_numbers() {
        for ferrovs in [
            Cell::NotBuilt,
            Cell::Refused(1),
            Cell::Failed(2),
            Cell::Empty,
        ] {
            let r = row(
                ferrovs.clone(),
                Cell::Rate(10e6),
                Some(Target::RatioAtLeast(0.5)),
            );
            assert_eq!(r.ratio(), None);
            assert_eq!(r.met(), None);
            assert_eq!(ferrovs.value(), None);
        }
        let r = row(Cell::Rate(1e6), Cell::Failed(1), None);
        assert_eq!(r.ratio(), None);
        let r = row(Cell::Rate(1e6), Cell::Rate(0.0), None);
        assert_eq!(r.ratio(), None);
    }

    #[test]
    fn connection_and_memory_targets() {
        let syn = row(
            Cell::Rate(2.1e6),
            Cell::Rate(10e6),
            Some(Target::ConnsAtLeast(2e6)),
        );
        assert_eq!(syn.met(), Some(true));
        let mem = Row {
            workload: "memory per live connection".into(),
            mode: "nat".into(),
            ferrovs: Cell::Bytes(130.0),
            testpmd_io: Cell::Empty,
            testpmd_5tswap: Cell::Empty,
            target: Some(MEMORY_TARGET),
            round_ratios: Vec::new(),
        };
        assert_eq!(mem.met(), Some(false));
        assert_eq!(mem.ratio(), None);
    }

    #[test]
    fn medians_and_rounds() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(
            combine_rounds(&[Cell::Rate(9e6), Cell::Rate(7e6), Cell::Rate(8e6)]),
            Cell::Rate(8e6)
        );
        // One bad round makes the cell bad, whatever the others measured.
        assert_eq!(
            combine_rounds(&[Cell::Rate(9e6), Cell::Refused(2), Cell::Failed(3)]),
            Cell::Refused(2)
        );
        assert_eq!(combine_rounds(&[]), Cell::Empty);
    }

    #[test]
    fn the_ratio_of_several_rounds_is_the_median_of_theirs() {
        // Rounds: 5tswap 10, 20, 10 Mpps; ferrovs 5, 10, 7: ratios 0.5, 0.5, 0.7.
        let mut r = row(
            combine_rounds(&[Cell::Rate(5e6), Cell::Rate(10e6), Cell::Rate(7e6)]),
            combine_rounds(&[Cell::Rate(10e6), Cell::Rate(20e6), Cell::Rate(10e6)]),
            Some(Target::RatioAtLeast(0.6)),
        );
        r.round_ratios = vec![0.5, 0.5, 0.7];
        assert_eq!(r.ratio(), Some(0.5));
        assert_eq!(r.met(), Some(false));
        assert_eq!(r.ratio_text(), "0.50 (0.50-0.70)");
        // No figure, no ratio, whatever the rounds said.
        r.ferrovs = Cell::Failed(1);
        assert_eq!(r.ratio(), None);
        assert_eq!(r.ratio_text(), "-");
    }

    #[test]
    fn issue_targets() {
        let w = |n| workload(n).unwrap();
        assert_eq!(
            issue_target(&w("udp-64k"), BenchMode::Nat),
            Some(Target::RatioAtLeast(0.50))
        );
        assert_eq!(
            issue_target(&w("udp-1m"), BenchMode::FullNat),
            Some(Target::RatioAtLeast(0.35))
        );
        assert_eq!(issue_target(&w("udp-1k"), BenchMode::Nat), None);
        assert_eq!(
            issue_target(&w("udp-1k"), BenchMode::Dr),
            Some(Target::RatioAtLeast(0.60))
        );
        assert_eq!(
            issue_target(&w("tcp-syn"), BenchMode::Nat),
            Some(Target::ConnsAtLeast(2e6))
        );
    }

    #[test]
    fn renders_aligned_with_notes() {
        let mut report = Report::new();
        let n = report.note("dropped: not_for_us=5");
        report.rows.push(row(
            Cell::Refused(n),
            Cell::Rate(12.345e6),
            Some(Target::RatioAtLeast(0.5)),
        ));
        report
            .rows
            .push(row(Cell::NotBuilt, Cell::Rate(12.345e6), None));
        report.rows.push(row(
            Cell::Rate(7e6),
            Cell::Rate(14e6),
            Some(Target::RatioAtLeast(0.5)),
        ));
        let text = report.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert!(lines[0].starts_with("workload      | mode | ferrovs Mpps |"));
        assert!(lines[1].starts_with("------------- | ---- | "));
        assert!(lines[2].contains("refused [1]") && lines[2].contains("12.35"));
        assert!(lines[3].contains("not built"));
        assert!(lines[4].contains("0.50") && lines[4].ends_with("yes"));
        assert_eq!(lines[5], "[1] dropped: not_for_us=5");
        // Every table line has the same column positions.
        let bars: Vec<Vec<usize>> = lines[..5]
            .iter()
            .map(|l| l.match_indices('|').map(|(i, _)| i).collect())
            .collect();
        assert!(bars.iter().all(|b| *b == bars[0]), "{text}");
    }
}
