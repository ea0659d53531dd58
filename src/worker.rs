//! The poll loop of one worker lcore: receive a burst on every port, run it through
//! the pipeline, transmit what the pipeline queued, free what it dropped in bulk.

use crate::dpdk::{Mbuf, Mempool, RingConsumer, RingProducer, RxQueue, Tsc, TxQueue};
use crossbeam_channel::Receiver;
use ferrovs_core::pipeline::{PacketPool, Pipeline, WorkerCommand};
use ferrovs_core::stats::DropReason;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a worker does when its queues are empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Poll without pause: lowest latency, one full core per worker.
    BusyPoll,
    /// After a run of empty polls, sleep with exponential backoff up to `max`, so
    /// other processes get the core (tests, the demo, small machines).
    Backoff {
        /// The longest sleep.
        max: Duration,
    },
}

/// Empty polls before an idle worker starts sleeping.
const IDLE_POLLS_BEFORE_SLEEP: u32 = 256;
/// First sleep of an idle worker.
const FIRST_SLEEP: Duration = Duration::from_micros(10);
/// Housekeeping (neighbour retries, timers) runs at most this often.
const HOUSEKEEPING_MS: u64 = 10;

/// Everything one worker lcore owns.
pub struct WorkerLoop {
    /// This worker's packet pipeline, allocating from the shared mempool.
    pub pipeline: Pipeline<Arc<Mempool>>,
    /// One RX and one TX queue per port, indexed like the config's ports.
    pub rx: Vec<RxQueue>,
    /// This worker's TX queue of each port, indexed like `rx`.
    pub tx: Vec<TxQueue>,
    /// Commands from the management core, applied at the top of each loop iteration.
    pub commands: Receiver<WorkerCommand>,
    /// Per interface (ports, then VLANs), this worker's TX queue of its kernel
    /// interface, if any.
    pub kernel: Vec<Option<TxQueue>>,
    /// Frames the kernel interfaces send, tagged with their port (worker 0 only).
    pub from_kernel: Option<RingConsumer>,
    /// Rings to the other workers, indexed by worker (None at this worker's index).
    pub outboxes: Vec<Option<RingProducer>>,
    /// Rings from the other workers.
    pub inboxes: Vec<RingConsumer>,
    /// Set by the runtime to end the loop.
    pub stop: Arc<AtomicBool>,
    /// Most packets received from one queue or ring at a time.
    pub burst: usize,
    /// What to do when a loop iteration received nothing.
    pub idle: IdlePolicy,
}

impl WorkerLoop {
    /// Runs until `stop` is set. Returns 0 (the lcore job's exit code).
    pub fn run(mut self) -> i32 {
        let mut clock = Tsc::new();
        let mut rx_buf: Vec<Mbuf> = Vec::with_capacity(self.burst);
        let mut last = Tsc::cycles();
        let mut last_housekeeping = 0u64;
        let mut idle_polls = 0u32;
        let mut sleep = FIRST_SLEEP;
        // Test-only fault switch (`notify::TEST_STALL_ENV`): None in production.
        let stall_at_ms = crate::notify::test_stall_after_ms(self.pipeline.worker());

        while !self.stop.load(Ordering::Relaxed) {
            let now_cycles = Tsc::cycles();
            let now_ms = clock.millis(now_cycles);
            self.pipeline.set_time(now_ms);
            if stall_at_ms.is_some_and(|at| now_ms >= at) {
                crate::notify::stall_for_test(&self.stop);
                continue;
            }

            // is_empty is two loads; an empty try_recv also costs a full fence.
            if !self.commands.is_empty() {
                while let Ok(cmd) = self.commands.try_recv() {
                    self.pipeline.apply(cmd);
                }
            }

            let mut received = 0;
            for (port, q) in self.rx.iter_mut().enumerate() {
                let n = q.rx_burst(&mut rx_buf, self.burst);
                if n == 0 {
                    continue;
                }
                received += n;
                self.pipeline.process_burst(&mut rx_buf, port);
            }
            if let Some(ring) = self.from_kernel.as_mut() {
                if ring.dequeue_burst(&mut rx_buf, self.burst) > 0 {
                    for pkt in rx_buf.drain(..) {
                        self.pipeline.from_kernel(pkt);
                    }
                }
            }
            for inbox in self.inboxes.iter_mut() {
                let n = inbox.dequeue_burst(&mut rx_buf, self.burst);
                if n == 0 {
                    continue;
                }
                received += n;
                for pkt in rx_buf.drain(..) {
                    self.pipeline.process_handed(pkt);
                }
            }

            self.pipeline.expire_connections();
            if now_ms.wrapping_sub(last_housekeeping) >= HOUSEKEEPING_MS {
                last_housekeeping = now_ms;
                self.pipeline.housekeeping();
            }

            self.flush();

            let stats = self.pipeline.stats();
            let spent = now_cycles.wrapping_sub(last);
            last = now_cycles;
            stats.total_cycles.add(spent);
            if received > 0 {
                stats.busy_cycles.add(spent);
                idle_polls = 0;
                sleep = FIRST_SLEEP;
            } else if let IdlePolicy::Backoff { max } = self.idle {
                idle_polls = idle_polls.saturating_add(1);
                if idle_polls >= IDLE_POLLS_BEFORE_SLEEP {
                    std::thread::sleep(sleep);
                    sleep = (sleep * 2).min(max);
                }
            }
        }
        // Give every held mbuf back before the ports and the pool go away.
        self.pipeline.release_all();
        self.flush();
        0
    }

    /// Transmits the queued packets of every port; what a NIC refuses is counted and
    /// freed with everything the pipeline dropped, in one bulk call.
    fn flush(&mut self) {
        for (owner, ring) in self.outboxes.iter_mut().enumerate() {
            let Some(ring) = ring else { continue };
            let out = self.pipeline.handoff_queue(owner);
            if out.is_empty() {
                continue;
            }
            ring.enqueue_burst(out);
            if !out.is_empty() {
                self.pipeline.discard_handoff(owner);
            }
        }
        for (port, tap) in self.kernel.iter_mut().enumerate() {
            let Some(tap) = tap else { continue };
            let out = self.pipeline.kernel_queue(port);
            if out.is_empty() {
                continue;
            }
            tap.tx_burst(out);
            if !out.is_empty() {
                self.pipeline.discard_kernel(port);
            }
        }
        // Each interface's queue goes out of its port (a VLAN's frames tagged).
        for iface in 0..self.pipeline.interfaces() {
            let q = &mut self.tx[self.pipeline.egress_port(iface)];
            let out = self.pipeline.tx_queue(iface);
            if out.is_empty() {
                continue;
            }
            let queued = out.len();
            let sent = q.tx_burst(out);
            let refused = queued - sent;
            self.pipeline.count_sent(iface, sent as u64);
            if refused > 0 {
                let stats = self.pipeline.stats();
                stats.count_drop(DropReason::TxFull, refused as u64);
                self.pipeline.discard_tx(iface);
            }
        }
        // A mode-4 bond's LACPDUs leave only within a TX burst on it.
        for q in self.tx.iter_mut() {
            q.flush_control();
        }
        Mbuf::free_bulk(self.pipeline.garbage());
    }
}

impl PacketPool for Mempool {
    type Buf = Mbuf;

    fn alloc(&self) -> Option<Mbuf> {
        Mbuf::alloc(self)
    }
}
