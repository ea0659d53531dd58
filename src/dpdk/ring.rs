//! Single-producer single-consumer rings of mbufs between two workers (the handoff
//! of packets that landed on a worker that does not own their connection).

use super::{DpdkError, Mbuf};
use dpdk_sys::rte_ring;
use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

/// The shared ring; freed (with any mbufs still in it) when both ends are gone.
struct Ring {
    raw: NonNull<rte_ring>,
}

// SAFETY: rte_ring is designed for use across lcores; this one is created SP/SC and
// the two handles below guarantee one producer and one consumer.
unsafe impl Send for Ring {}
// SAFETY: as above; the shared reference is only used through the single producer
// and the single consumer handle.
unsafe impl Sync for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut left: [*mut c_void; 64] = [std::ptr::null_mut(); 64];
        loop {
            // SAFETY: nobody else uses the ring any more (both handles are dropped);
            // dequeued pointers are mbufs a producer owned, freed here.
            let n = unsafe {
                dpdk_sys::rte_ring_dequeue_burst(
                    self.raw.as_ptr(),
                    left.as_mut_ptr(),
                    left.len() as u32,
                    std::ptr::null_mut(),
                )
            };
            if n == 0 {
                break;
            }
            for p in &left[..n as usize] {
                // SAFETY: every object in the ring is an owned mbuf pointer.
                unsafe { dpdk_sys::rte_pktmbuf_free(p.cast()) }
            }
        }
        // SAFETY: the ring was created by rte_ring_create and is empty and unused.
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) }
    }
}

/// The sending end of a handoff ring. Owned by exactly one worker.
pub struct RingProducer(Arc<Ring>);

/// The receiving end of a handoff ring. Owned by exactly one worker.
pub struct RingConsumer(Arc<Ring>);

/// Creates a single-producer single-consumer ring holding `size` mbufs, on NUMA
/// socket `socket` (the consumer's).
pub fn handoff_ring(
    name: &str,
    size: u32,
    socket: u32,
) -> Result<(RingProducer, RingConsumer), DpdkError> {
    let cname = CString::new(name).map_err(|_| DpdkError::new("rte_ring_create", name, 22))?;
    let flags = dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ | dpdk_sys::RING_F_EXACT_SZ;
    // SAFETY: valid C string; EAL is initialised (the caller holds an Eal).
    let raw = unsafe { dpdk_sys::rte_ring_create(cname.as_ptr(), size, socket as i32, flags) };
    let raw = NonNull::new(raw).ok_or_else(|| DpdkError::from_errno("rte_ring_create", name))?;
    let ring = Arc::new(Ring { raw });
    Ok((RingProducer(ring.clone()), RingConsumer(ring)))
}

impl RingProducer {
    /// Moves as many mbufs from the front of `pkts` into the ring as fit; what
    /// did not fit stays in `pkts`.
    pub fn enqueue_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        // SAFETY: Mbuf is repr(transparent) over an owned mbuf pointer; the ring
        // takes ownership of the first n, which forget_front removes without freeing.
        let n = unsafe {
            dpdk_sys::rte_ring_enqueue_burst(
                self.0.raw.as_ptr(),
                pkts.as_ptr().cast(),
                pkts.len() as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        Mbuf::forget_front(pkts, n);
        n
    }
}

impl RingConsumer {
    /// Appends up to `max` mbufs from the ring to `out` (within its spare capacity).
    pub fn dequeue_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let room = (out.capacity() - out.len()).min(max);
        if room == 0 {
            return 0;
        }
        let len = out.len();
        // SAFETY: the spare capacity holds `room` Mbuf slots (one pointer each); the
        // ring writes n <= room owned mbuf pointers there, which set_len adopts.
        unsafe {
            let dst = out.as_mut_ptr().add(len).cast::<*mut c_void>();
            let n = dpdk_sys::rte_ring_dequeue_burst(
                self.0.raw.as_ptr(),
                dst,
                room as u32,
                std::ptr::null_mut(),
            ) as usize;
            out.set_len(len + n);
            n
        }
    }
}
