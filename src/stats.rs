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
    /// Frame shorter than an Ethernet header.
    Runt => "runt",
}

/// Counters of one worker, on their own cache lines.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerStats {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// TSC cycles of loop iterations that found packets.
    pub busy_cycles: Counter,
    /// TSC cycles of all loop iterations.
    pub total_cycles: Counter,
    /// Packets handed to another worker (steering).
    pub handoff_packets: Counter,
    drops: [Counter; DropReason::COUNT],
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            busy_cycles: Counter::default(),
            total_cycles: Counter::default(),
            handoff_packets: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
        }
    }
}

impl WorkerStats {
    /// Counts `n` packets dropped for `reason`.
    #[inline(always)]
    pub fn count_drop(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

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
