//! The buffer trait that lets packet logic run on DPDK mbufs and on plain memory.
//!
//! Everything in `packet`, `conn`, `sched`, `forward` and the worker pipeline is
//! written against [`PacketBuf`]; the DPDK layer implements it for its owned mbuf,
//! and [`VecBuf`] implements it for unit tests, fuzzing and benchmarks.

/// Not enough head- or tailroom to grow the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

/// A single contiguous packet buffer with room to grow at both ends.
pub trait PacketBuf {
    /// The packet bytes, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The packet bytes, mutable, for in-place rewriting.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free in front of the packet.
    fn headroom(&self) -> usize;
    /// Bytes free after the packet.
    fn tailroom(&self) -> usize;
    /// Grows the packet by `n` bytes at the front (for encapsulation); the new
    /// bytes are `data_mut()[..n]`, contents unspecified.
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom>;
    /// Removes `n` bytes from the front. `n` must not exceed `len()`.
    fn strip_front(&mut self, n: usize);
    /// Grows the packet by `n` bytes at the end, contents unspecified.
    fn append(&mut self, n: usize) -> Result<(), NoRoom>;
    /// Shortens the packet to `len` bytes (no-op when already shorter).
    fn truncate(&mut self, len: usize);
    /// The index of the port the packet arrived on, as recorded with
    /// [`PacketBuf::set_rx_port`] (a packet handed to another worker carries it).
    fn rx_port(&self) -> u16;
    /// Records the index of the port the packet arrived on (done when a packet is
    /// handed to another worker, and by the kernel exception path; the pipeline
    /// otherwise passes the port along itself).
    fn set_rx_port(&mut self, port: u16);
    /// Starts loading the first cache line of the packet data (a hint for batched
    /// processing; buffers in plain memory need not do anything).
    fn prefetch_data(&self) {}
    /// True when the NIC verified this received frame's IPv4 header checksum (RX
    /// checksum offload), so the burst parser may skip its own check.
    fn ipv4_checksum_verified(&self) -> bool {
        false
    }
    /// The tag control information of the 802.1Q tag the NIC took off this
    /// received frame (RX VLAN strip offload); None when the frame is as it
    /// came off the wire.
    fn rx_vlan_tci(&self) -> Option<u16> {
        None
    }
    /// Asks the NIC to insert an 802.1Q tag with `tci` when it sends the frame
    /// (TX VLAN insert offload). Only for ports whose NIC offers it; a buffer
    /// that cannot carry the request ignores it.
    fn set_tx_vlan_tci(&mut self, _tci: u16) {}

    /// Packet length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True for a zero-length packet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Headroom DPDK reserves in every mbuf (RTE_PKTMBUF_HEADROOM).
pub const DEFAULT_HEADROOM: usize = 128;
/// Data room of a default mbuf (RTE_MBUF_DEFAULT_DATAROOM).
pub const DEFAULT_DATAROOM: usize = 2048;

/// A heap-backed packet buffer with DPDK-like head- and tailroom, for tests,
/// fuzzing and benchmarks.
#[derive(Clone, PartialEq, Eq)]
pub struct VecBuf {
    mem: Box<[u8]>,
    start: usize,
    end: usize,
    port: u16,
    ipv4_checksum_verified: bool,
    /// `RX_VLAN` and `TX_VLAN`: which of the two tags below is set. Kept this
    /// compact so the buffer is no larger than before (the benchmarks move it).
    vlan_flags: u8,
    rx_vlan_tci: u16,
    tx_vlan_tci: u16,
}

const RX_VLAN: u8 = 1;
const TX_VLAN: u8 = 2;

impl VecBuf {
    /// A buffer holding `frame` with the default headroom and a 2 KiB data room.
    pub fn from_frame(frame: &[u8]) -> Self {
        let size = (DEFAULT_HEADROOM + DEFAULT_DATAROOM).max(DEFAULT_HEADROOM + frame.len());
        let mut mem = vec![0u8; size].into_boxed_slice();
        mem[DEFAULT_HEADROOM..DEFAULT_HEADROOM + frame.len()].copy_from_slice(frame);
        VecBuf {
            mem,
            start: DEFAULT_HEADROOM,
            end: DEFAULT_HEADROOM + frame.len(),
            port: 0,
            ipv4_checksum_verified: false,
            vlan_flags: 0,
            rx_vlan_tci: 0,
            tx_vlan_tci: 0,
        }
    }

    /// Marks the frame as one whose 802.1Q tag a NIC stripped into metadata
    /// (tests of the RX VLAN offload path).
    pub fn set_rx_vlan_tci(&mut self, tci: Option<u16>) {
        self.rx_vlan_tci = tci.unwrap_or(0);
        self.vlan_flags = (self.vlan_flags & !RX_VLAN) | if tci.is_some() { RX_VLAN } else { 0 };
    }

    /// The tag the NIC was asked to insert ([`PacketBuf::set_tx_vlan_tci`]).
    pub fn tx_vlan_tci(&self) -> Option<u16> {
        (self.vlan_flags & TX_VLAN != 0).then_some(self.tx_vlan_tci)
    }

    /// Empties the buffer as a pool hands an mbuf out again (`rte_pktmbuf_reset`):
    /// the default headroom back, no data, no port, no offload flags. A harness
    /// that recycles buffers needs it: an encapsulation took headroom it must not
    /// keep.
    pub fn reset(&mut self) {
        self.start = DEFAULT_HEADROOM.min(self.mem.len());
        self.end = self.start;
        self.port = 0;
        self.ipv4_checksum_verified = false;
        self.vlan_flags = 0;
        self.rx_vlan_tci = 0;
        self.tx_vlan_tci = 0;
    }

    /// Marks the frame as one whose IPv4 header checksum a NIC verified (tests of
    /// the RX checksum offload path).
    pub fn set_ipv4_checksum_verified(&mut self, verified: bool) {
        self.ipv4_checksum_verified = verified;
    }
}

impl std::fmt::Debug for VecBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VecBuf({} bytes:", self.len())?;
        for b in self.data() {
            write!(f, " {b:02x}")?;
        }
        write!(f, ")")
    }
}

impl PacketBuf for VecBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.mem[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.end]
    }
    #[inline]
    fn headroom(&self) -> usize {
        self.start
    }
    #[inline]
    fn tailroom(&self) -> usize {
        self.mem.len() - self.end
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.start {
            return Err(NoRoom);
        }
        self.start -= n;
        Ok(())
    }
    #[inline]
    fn strip_front(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start = (self.start + n).min(self.end);
    }
    #[inline]
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.tailroom() {
            return Err(NoRoom);
        }
        self.end += n;
        Ok(())
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        self.end = self.start + len.min(self.len());
    }
    #[inline]
    fn rx_port(&self) -> u16 {
        self.port
    }
    #[inline]
    fn set_rx_port(&mut self, port: u16) {
        self.port = port;
    }
    #[inline]
    fn ipv4_checksum_verified(&self) -> bool {
        self.ipv4_checksum_verified
    }
    #[inline]
    fn rx_vlan_tci(&self) -> Option<u16> {
        (self.vlan_flags & RX_VLAN != 0).then_some(self.rx_vlan_tci)
    }
    #[inline]
    fn set_tx_vlan_tci(&mut self, tci: u16) {
        self.tx_vlan_tci = tci;
        self.vlan_flags |= TX_VLAN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_and_shrink_at_both_ends() {
        let mut b = VecBuf::from_frame(&[1, 2, 3]);
        assert_eq!(b.data(), &[1, 2, 3]);
        b.prepend(2).unwrap();
        b.data_mut()[..2].copy_from_slice(&[9, 8]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3]);
        b.strip_front(3);
        assert_eq!(b.data(), &[2, 3]);
        b.append(1).unwrap();
        b.data_mut()[2] = 7;
        assert_eq!(b.data(), &[2, 3, 7]);
        b.truncate(1);
        assert_eq!(b.data(), &[2]);
        b.truncate(10);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn reset_gives_the_headroom_back() {
        let mut b = VecBuf::from_frame(&[1, 2, 3]);
        b.prepend(20).unwrap();
        b.set_rx_port(1);
        b.set_ipv4_checksum_verified(true);
        b.set_tx_vlan_tci(7);
        b.reset();
        assert_eq!((b.headroom(), b.len()), (DEFAULT_HEADROOM, 0));
        assert_eq!(b.rx_port(), 0);
        assert!(!b.ipv4_checksum_verified());
        assert_eq!((b.rx_vlan_tci(), b.tx_vlan_tci()), (None, None));
    }

    #[test]
    fn refuses_growth_beyond_room() {
        let mut b = VecBuf::from_frame(&[0; 10]);
        assert_eq!(b.prepend(DEFAULT_HEADROOM + 1), Err(NoRoom));
        assert_eq!(b.append(b.tailroom() + 1), Err(NoRoom));
        assert_eq!(b.len(), 10);
    }
}
