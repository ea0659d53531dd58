//! Packet mempools.

use super::DpdkError;
use dpdk_sys::rte_mempool;
use std::ffi::CString;
use std::ptr::NonNull;

/// A pktmbuf pool, freed on drop (after every port using it is closed).
pub struct Mempool {
    raw: NonNull<rte_mempool>,
    name: String,
}

// SAFETY: mempool get/put are thread-safe (multi-producer/consumer ring ops, per-lcore
// caches); the pointer stays valid until Drop, which the runtime orders last.
unsafe impl Send for Mempool {}
// SAFETY: as above; shared references only call thread-safe DPDK functions.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `mbufs` packet buffers with the default 2 KiB data room,
    /// on the calling lcore's socket.
    pub fn new(name: &str, mbufs: u32, cache_size: u32) -> Result<Mempool, DpdkError> {
        // SAFETY: reads the calling thread's lcore socket; valid on any thread.
        let socket = unsafe { dpdk_sys::rte_socket_id() } as i32;
        Self::on_socket(name, mbufs, cache_size, socket)
    }

    /// [`Mempool::new`] on NUMA socket `socket` (-1, `SOCKET_ID_ANY`: wherever
    /// the EAL has memory).
    pub fn on_socket(
        name: &str,
        mbufs: u32,
        cache_size: u32,
        socket: i32,
    ) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::new("rte_pktmbuf_pool_create", "name has NUL", 22))?;
        // SAFETY: EAL is initialised (the caller holds an Eal); arguments are plain
        // values and a valid C string; NULL is returned on failure with rte_errno set.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache_size,
                0,
                dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        let raw = NonNull::new(raw).ok_or_else(|| {
            DpdkError::from_errno(
                "rte_pktmbuf_pool_create",
                format!("{name}: {mbufs} mbufs, cache {cache_size}, socket {socket}"),
            )
        })?;
        Ok(Mempool {
            raw,
            name: name.to_string(),
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut rte_mempool {
        self.raw.as_ptr()
    }

    /// The name the pool was created under, unique within the EAL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Free mbufs (in the ring and the per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool pointer; the call only reads counters.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently allocated.
    pub fn in_use(&self) -> u32 {
        // SAFETY: valid pool pointer; the call only reads counters.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: no port or mbuf refers to the pool any more (runtime drop order).
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
