//! 802.1Q VLANs: a VLAN is an interface of its port, numbered after the ports
//! (`Config::interfaces`). A tagged frame is untagged on the way in (the NIC may
//! have done it) and handled as a frame of its VLAN's interface; a frame leaving
//! by a VLAN interface gets its tag (PCP 0) as it is queued, in the frame or as a
//! request to the NIC. Everything between sees untagged frames and interface
//! indexes, so routes, neighbours, own addresses and the exception path need no
//! notion of tags; untagged traffic pays nothing for this but one compare at the
//! TX queue.

use super::dataplane::Dataplane;
use crate::packet::ethernet::{self, EtherType, HEADER_LEN, VLAN_TAG_LEN};
use crate::packet::{NoRoom, PacketBuf};
use crate::stats::{DropReason, WorkerStats};

/// The 12-bit VLAN id of a tag control information (PCP and DEI dropped).
const VID_MASK: u16 = 0x0fff;

/// Every interface's TX queue (ports first, then VLANs); the worker sends each to
/// its interface's port. A frame queued on a VLAN interface is tagged here.
pub(super) struct TxQueues<B> {
    queues: Vec<Vec<B>>,
    /// Interfaces from this index on are VLANs.
    first_vlan: usize,
    /// Per VLAN interface (from `first_vlan`): its tag control information (PCP
    /// 0, DEI 0, the id), and whether its port's NIC inserts the tag.
    vlans: Vec<(u16, bool)>,
}

impl<B: PacketBuf> TxQueues<B> {
    /// A queue of `capacity` per interface of `dp`, allocated here; tags inserted
    /// in software until [`TxQueues::set_nic_inserts`] says otherwise.
    pub(super) fn new(dp: &Dataplane, capacity: usize) -> Self {
        let first_vlan = dp.ports();
        TxQueues {
            queues: (0..dp.ifaces.len())
                .map(|_| Vec::with_capacity(capacity))
                .collect(),
            first_vlan,
            vlans: dp.ifaces[first_vlan.min(dp.ifaces.len())..]
                .iter()
                .map(|i| (i.vlan & VID_MASK, false))
                .collect(),
        }
    }

    /// Which ports' NICs insert tags (TX VLAN offload), indexed by port.
    pub(super) fn set_nic_inserts(&mut self, dp: &Dataplane, ports: &[bool]) {
        for (v, iface) in self.vlans.iter_mut().zip(&dp.ifaces[self.first_vlan..]) {
            v.1 = ports.get(iface.port).copied().unwrap_or(false);
        }
    }

    /// Queues `pkt` to leave by interface `iface`, tagged when it is a VLAN;
    /// hands it to `refused` with the reason when it cannot be queued (a
    /// closure rather than a returned packet: nothing but the pointer-sized
    /// buffer moves on the way to the queue).
    #[inline(always)]
    pub(super) fn push(&mut self, iface: usize, mut pkt: B, refused: impl FnOnce(B, DropReason)) {
        if iface >= self.first_vlan {
            let (tci, nic) = self.vlans[iface - self.first_vlan];
            if nic {
                pkt.set_tx_vlan_tci(tci);
            } else if insert_tag(&mut pkt, tci).is_err() {
                return refused(pkt, DropReason::VlanNoHeadroom);
            }
        }
        let q = &mut self.queues[iface];
        if q.len() < q.capacity() {
            q.push(pkt);
        } else {
            refused(pkt, DropReason::TxFull);
        }
    }

    /// Interface `iface`'s queue.
    #[inline]
    pub(super) fn queue(&mut self, iface: usize) -> &mut Vec<B> {
        &mut self.queues[iface]
    }
}

/// Takes the 802.1Q tag off a frame received on `port`, a port with VLANs, and
/// names the interface the frame belongs to: the VLAN of its id, or the port
/// itself for an untagged or priority-tagged (VLAN id 0) frame. With
/// `nic_strips` a tag the NIC stripped is read from the buffer's metadata. A frame of no configured VLAN is
/// `vlan_not_configured`; a second tag, `nested_vlan`; a cut tag,
/// `truncated_vlan`. An 802.1ad (QinQ) outer tag is left for the parser, which
/// refuses it.
#[inline]
pub(super) fn untag<B: PacketBuf>(
    dp: &Dataplane,
    stats: &WorkerStats,
    pkt: &mut B,
    port: usize,
    nic_strips: bool,
) -> Result<usize, DropReason> {
    let data = pkt.data();
    let outer = data
        .get(ethernet::field::ETHERTYPE)
        .map(|t| EtherType(u16::from_be_bytes([t[0], t[1]])));
    let stripped = if nic_strips { pkt.rx_vlan_tci() } else { None };
    let tci = match stripped {
        Some(tci) => {
            // The NIC took the outer tag; another one is a stack we do not handle.
            if outer.is_some_and(EtherType::is_vlan_tag) {
                return Err(DropReason::NestedVlan);
            }
            tci
        }
        None if outer == Some(EtherType::VLAN) => {
            if data.len() < HEADER_LEN + VLAN_TAG_LEN {
                return Err(DropReason::TruncatedVlan);
            }
            let inner = EtherType(u16::from_be_bytes([data[16], data[17]]));
            if inner.is_vlan_tag() {
                return Err(DropReason::NestedVlan);
            }
            let tci = u16::from_be_bytes([data[14], data[15]]);
            strip_tag(pkt);
            tci
        }
        None => return Ok(port),
    };
    let vid = tci & VID_MASK;
    if vid == 0 {
        return Ok(port);
    }
    let iface = dp
        .vlan_interface(port, vid)
        .ok_or(DropReason::VlanNotConfigured)?;
    stats.vlan(iface - dp.ports()).rx_packets.inc();
    Ok(iface)
}

/// Inserts an 802.1Q tag with `tci` after the frame's MAC addresses.
pub(super) fn insert_tag<B: PacketBuf>(pkt: &mut B, tci: u16) -> Result<(), NoRoom> {
    if pkt.len() < 2 * 6 {
        return Err(NoRoom);
    }
    pkt.prepend(VLAN_TAG_LEN)?;
    let data = pkt.data_mut();
    data.copy_within(VLAN_TAG_LEN..VLAN_TAG_LEN + 12, 0);
    data[12..14].copy_from_slice(&EtherType::VLAN.0.to_be_bytes());
    data[14..16].copy_from_slice(&tci.to_be_bytes());
    Ok(())
}

/// Removes the 802.1Q tag after the frame's MAC addresses (the caller checked
/// it is there).
fn strip_tag<B: PacketBuf>(pkt: &mut B) {
    pkt.data_mut().copy_within(0..12, VLAN_TAG_LEN);
    pkt.strip_front(VLAN_TAG_LEN);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::VecBuf;

    #[test]
    fn a_tag_goes_in_after_the_addresses_and_comes_out_again() {
        let frame: Vec<u8> = (0u8..12).chain([0x08, 0x00, 0xaa, 0xbb]).collect();
        let mut pkt = VecBuf::from_frame(&frame);
        insert_tag(&mut pkt, 0x0064).unwrap();
        let tagged: Vec<u8> = (0u8..12)
            .chain([0x81, 0x00, 0x00, 0x64, 0x08, 0x00, 0xaa, 0xbb])
            .collect();
        assert_eq!(pkt.data(), &tagged[..]);
        strip_tag(&mut pkt);
        assert_eq!(pkt.data(), &frame[..]);
    }

    #[test]
    fn no_headroom_no_tag() {
        let mut pkt = VecBuf::from_frame(&[0; 60]);
        let room = pkt.headroom();
        pkt.prepend(room).unwrap();
        assert_eq!(insert_tag(&mut pkt, 5), Err(NoRoom));
        assert_eq!(
            insert_tag(&mut VecBuf::from_frame(&[0; 11]), 5),
            Err(NoRoom)
        );
    }
}
