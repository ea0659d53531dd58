//! An owned mbuf, freed on drop, and the burst helpers that move mbufs to and
//! from the NIC without per-packet FFI calls.

use super::Mempool;
use dpdk_sys::rte_mbuf;
use ferrovs_core::packet::{NoRoom, PacketBuf};
use std::ptr::NonNull;

/// One single-segment packet buffer owned by ferrovs. Dropping it returns it to its
/// mempool. Layout is exactly one pointer, so `&mut [Mbuf]` can be handed to
/// `rte_eth_tx_burst` as an array of `rte_mbuf *`.
#[repr(transparent)]
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf value; moving it to another lcore is
// how DPDK pipelines hand packets over (mempool free/alloc are thread-safe).
unsafe impl Send for Mbuf {}

/// A vector of mbufs used as a burst buffer. Allocated once with a fixed capacity;
/// the burst functions never grow it.
pub type MbufVec = Vec<Mbuf>;

impl Mbuf {
    /// Allocates an empty mbuf from `pool` (control-rate packets: ARP requests,
    /// ICMP errors). None when the pool is empty.
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid while the Mempool lives; rte_pktmbuf_alloc
        // returns NULL or a fresh mbuf with refcnt 1 that we now own.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(raw).map(Mbuf)
    }

    #[inline]
    fn raw(&self) -> &rte_mbuf {
        // SAFETY: self owns a valid mbuf for its whole life.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut rte_mbuf {
        // SAFETY: self owns a valid mbuf exclusively.
        unsafe { self.0.as_mut() }
    }

    /// True when the whole packet is in this one segment (the data path only
    /// handles such packets; RX scatter is never enabled).
    pub fn is_contiguous(&self) -> bool {
        let m = self.raw();
        m.nb_segs == 1 && m.pkt_len == u32::from(m.data_len)
    }

    /// Frees every mbuf in `pkts` with one `rte_pktmbuf_free_bulk` call and empties it.
    pub fn free_bulk(pkts: &mut Vec<Mbuf>) {
        if pkts.is_empty() {
            return;
        }
        // SAFETY: Mbuf is repr(transparent) over a valid owned rte_mbuf pointer, so
        // the vector's buffer is an array of pkts.len() owned mbuf pointers. After the
        // call DPDK owns (and has freed) them, so set_len(0) forgets them without Drop.
        unsafe {
            dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr().cast(), pkts.len() as u32);
            pkts.set_len(0);
        }
    }

    /// Removes the first `n` entries of `pkts` without freeing them (DPDK took them)
    /// and moves the rest to the front.
    pub(crate) fn forget_front(pkts: &mut Vec<Mbuf>, n: usize) {
        let n = n.min(pkts.len());
        let rest = pkts.len() - n;
        // SAFETY: entries 0..n now belong to DPDK and are overwritten without being
        // dropped; entries n..len are moved (bitwise) to 0..rest and the length set to
        // rest, so every remaining Mbuf is owned exactly once.
        unsafe {
            let base = pkts.as_mut_ptr();
            std::ptr::copy(base.add(n), base, rest);
            pkts.set_len(rest);
        }
    }

    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        let m = self.raw();
        // SAFETY: buf_addr + data_off is inside the mbuf's data buffer by the mbuf
        // invariants (data_off <= buf_len).
        unsafe { (m.buf_addr as *mut u8).add(usize::from(m.data_off)) }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; after this call it is back in its pool.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// The NIC's IPv4 header checksum verdict in an RX mbuf's `ol_flags`: only GOOD
/// counts; BAD, NONE and UNKNOWN (every PMD without the offload) leave the check to
/// software.
#[inline(always)]
fn ip_checksum_good(ol_flags: u64) -> bool {
    ol_flags & u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_MASK)
        == u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD)
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: data_len bytes from the data pointer lie inside the owned segment,
        // and the borrow of self keeps the mbuf alive and unaliased for mutation.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), usize::from(self.raw().data_len)) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.raw().data_len);
        // SAFETY: as in data(), and &mut self makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), len) }
    }

    #[inline]
    fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    #[inline]
    fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.headroom() {
            return Err(NoRoom);
        }
        let m = self.raw_mut();
        m.data_off -= n as u16;
        m.data_len += n as u16;
        m.pkt_len += n as u32;
        Ok(())
    }

    #[inline]
    fn strip_front(&mut self, n: usize) {
        let m = self.raw_mut();
        let n = n.min(usize::from(m.data_len)) as u16;
        m.data_off += n;
        m.data_len -= n;
        m.pkt_len -= u32::from(n);
    }

    #[inline]
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.tailroom() {
            return Err(NoRoom);
        }
        let m = self.raw_mut();
        m.data_len += n as u16;
        m.pkt_len += n as u32;
        Ok(())
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        let m = self.raw_mut();
        if len < usize::from(m.data_len) {
            m.data_len = len as u16;
            m.pkt_len = len as u32;
        }
    }

    /// Kept in the mbuf's `port` field: after RX ferrovs no longer needs the
    /// ethdev id there, and the field travels with the mbuf through a ring.
    #[inline]
    fn rx_port(&self) -> u16 {
        self.raw().port
    }

    #[inline]
    fn set_rx_port(&mut self, port: u16) {
        self.raw_mut().port = port;
    }

    #[inline]
    fn ipv4_checksum_verified(&self) -> bool {
        ip_checksum_good(self.raw().ol_flags)
    }

    #[inline]
    fn rx_vlan_tci(&self) -> Option<u16> {
        let m = self.raw();
        (m.ol_flags & u64::from(dpdk_sys::RTE_MBUF_F_RX_VLAN_STRIPPED) != 0).then_some(m.vlan_tci)
    }

    #[inline]
    fn set_tx_vlan_tci(&mut self, tci: u16) {
        let m = self.raw_mut();
        m.vlan_tci = tci;
        m.ol_flags |= dpdk_sys::RTE_MBUF_F_TX_VLAN;
    }

    #[inline]
    fn prefetch_data(&self) {
        ferrovs_mem::prefetch_ptr(self.data_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::ip_checksum_good;
    use dpdk_sys as sys;

    #[test]
    fn only_a_good_ip_checksum_verdict_skips_the_software_check() {
        let others = [
            0,
            u64::from(sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD),
            u64::from(sys::RTE_MBUF_F_RX_L4_CKSUM_BAD),
            u64::from(sys::RTE_MBUF_F_RX_RSS_HASH),
            u64::from(sys::RTE_MBUF_F_RX_VLAN),
        ];
        for other in others {
            let verdict = |v: u32| ip_checksum_good(other | u64::from(v));
            assert!(verdict(sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD), "{other:#x}");
            assert!(!verdict(sys::RTE_MBUF_F_RX_IP_CKSUM_BAD), "{other:#x}");
            // NONE: the header is intact but its checksum field is wrong; sent on
            // as it is the next hop would drop it, so software checks (and drops).
            assert!(!verdict(sys::RTE_MBUF_F_RX_IP_CKSUM_NONE), "{other:#x}");
            assert!(!verdict(sys::RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN), "{other:#x}");
        }
    }
}
