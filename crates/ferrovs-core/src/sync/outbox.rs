//! The records a worker hands to the management core: a single-producer,
//! single-consumer ring of fixed-size records in atomic words.
//!
//! The producer (a worker) writes a record's words with relaxed stores and then
//! publishes it by storing its new head with release ordering; the consumer reads
//! the head with acquire ordering before the words, and gives the slots back by
//! storing its tail with release ordering. No read-modify-write and no lock: a
//! push is a few plain stores, and a full ring refuses the record (the caller
//! counts it) rather than wait.

use super::record::{RecordWords, RECORD_WORDS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An atomic counter on a cache line of its own, so the producer's and the
/// consumer's positions do not share one.
#[repr(align(64))]
#[derive(Default)]
struct Position(AtomicU64);

struct Ring {
    words: Box<[AtomicU64]>,
    /// Records published (the producer's count).
    head: Position,
    /// Records consumed (the consumer's count).
    tail: Position,
    /// Capacity in records, a power of two.
    capacity: u64,
}

/// The worker's end.
pub struct SyncProducer {
    ring: Arc<Ring>,
    head: u64,
    /// The consumer's tail as last read: re-read only when the ring looks full.
    tail: u64,
}

/// The management core's end.
pub struct SyncConsumer {
    ring: Arc<Ring>,
    tail: u64,
}

/// A ring holding `capacity` records (rounded up to a power of two, at least 2).
pub fn outbox(capacity: usize) -> (SyncProducer, SyncConsumer) {
    let capacity = capacity.max(2).next_power_of_two();
    let ring = Arc::new(Ring {
        words: (0..capacity * RECORD_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect(),
        head: Position::default(),
        tail: Position::default(),
        capacity: capacity as u64,
    });
    (
        SyncProducer {
            ring: ring.clone(),
            head: 0,
            tail: 0,
        },
        SyncConsumer { ring, tail: 0 },
    )
}

impl SyncProducer {
    /// Publishes `record`, or returns false when the ring is full.
    #[inline]
    pub fn push(&mut self, record: &RecordWords) -> bool {
        let ring = &*self.ring;
        if self.head - self.tail == ring.capacity {
            self.tail = ring.tail.0.load(Ordering::Acquire);
            if self.head - self.tail == ring.capacity {
                return false;
            }
        }
        let slot = (self.head & (ring.capacity - 1)) as usize * RECORD_WORDS;
        for (w, v) in ring.words[slot..slot + RECORD_WORDS].iter().zip(record) {
            w.store(*v, Ordering::Relaxed);
        }
        self.head += 1;
        ring.head.0.store(self.head, Ordering::Release);
        true
    }
}

impl SyncConsumer {
    /// Moves up to `max` published records into `out`; returns how many.
    pub fn drain(&mut self, out: &mut Vec<RecordWords>, max: usize) -> usize {
        let ring = &*self.ring;
        let head = ring.head.0.load(Ordering::Acquire);
        let n = ((head - self.tail) as usize).min(max);
        for _ in 0..n {
            let slot = (self.tail & (ring.capacity - 1)) as usize * RECORD_WORDS;
            let mut record = [0u64; RECORD_WORDS];
            for (v, w) in record
                .iter_mut()
                .zip(&ring.words[slot..slot + RECORD_WORDS])
            {
                *v = w.load(Ordering::Relaxed);
            }
            out.push(record);
            self.tail += 1;
        }
        ring.tail.0.store(self.tail, Ordering::Release);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> RecordWords {
        std::array::from_fn(|i| n * 100 + i as u64)
    }

    #[test]
    fn records_come_out_in_order_and_a_full_ring_refuses() {
        let (mut p, mut c) = outbox(3);
        for n in 0..4 {
            assert!(p.push(&rec(n)));
        }
        assert!(!p.push(&rec(4)), "4 slots");
        let mut out = Vec::new();
        assert_eq!(c.drain(&mut out, 2), 2);
        assert!(p.push(&rec(4)) && p.push(&rec(5)));
        assert_eq!(c.drain(&mut out, 100), 4);
        assert_eq!(out, (0..6).map(rec).collect::<Vec<_>>());
        assert_eq!(c.drain(&mut out, 100), 0);
    }

    #[test]
    fn a_producer_thread_and_a_consumer_thread_lose_and_reorder_nothing() {
        let (mut p, mut c) = outbox(64);
        const N: u64 = 50_000;
        let producer = std::thread::spawn(move || {
            let mut refused = 0u64;
            let mut n = 0;
            while n < N {
                if p.push(&rec(n)) {
                    n += 1;
                } else {
                    refused += 1;
                    std::hint::spin_loop();
                }
            }
            refused
        });
        let mut out = Vec::new();
        let mut next = 0;
        while next < N {
            out.clear();
            c.drain(&mut out, 16);
            for r in &out {
                assert_eq!(*r, rec(next), "record {next} arrived whole and in order");
                next += 1;
            }
        }
        producer.join().unwrap();
    }
}
