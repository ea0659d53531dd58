//! DPDK's bonding PMD (`net_bonding`) as the management core reads it: a bond's
//! members, the ones it counts active, the one an active-backup bond uses.

use super::DpdkError;
use ferrovs_core::packet::MacAddr;
use std::ffi::{CStr, CString};

/// DPDK's BONDING_MODE_ACTIVE_BACKUP.
pub const MODE_ACTIVE_BACKUP: u8 = 1;
/// DPDK's BONDING_MODE_8023AD: LACP.
pub const MODE_8023AD: u8 = 4;
/// DPDK's BONDING_MODE_TLB: sends through all, receives through the primary.
pub const MODE_TLB: u8 = 5;
/// DPDK's BONDING_MODE_ALB: as TLB, receiving spread by ARP.
pub const MODE_ALB: u8 = 6;

/// Member port ids: at most RTE_MAX_ETHPORTS.
fn id_list(
    bond: u16,
    call: &'static str,
    get: unsafe extern "C" fn(u16, *mut u16, u16) -> i32,
) -> Result<Vec<u16>, DpdkError> {
    let mut ids = vec![0u16; dpdk_sys::RTE_MAX_ETHPORTS as usize];
    let len = ids.len() as u16;
    // SAFETY: `ids` has room for `len` port ids, the most a bond can have; the
    // call writes at most that many and returns how many it wrote.
    let n = unsafe { get(bond, ids.as_mut_ptr(), len) };
    if n < 0 {
        return Err(DpdkError::new(call, format!("port {bond}"), -n));
    }
    ids.truncate(n as usize);
    Ok(ids)
}

/// Every member of bond `bond`, in the order they were added.
pub fn members(bond: u16) -> Result<Vec<u16>, DpdkError> {
    id_list(
        bond,
        "rte_eth_bond_slaves_get",
        dpdk_sys::rte_eth_bond_slaves_get,
    )
}

/// The members bond `bond` counts active: their link is up as it last learned.
pub fn active_members(bond: u16) -> Result<Vec<u16>, DpdkError> {
    id_list(
        bond,
        "rte_eth_bond_active_slaves_get",
        dpdk_sys::rte_eth_bond_active_slaves_get,
    )
}

/// The bond's current primary: in active-backup, the member it sends and
/// receives through.
pub fn primary(bond: u16) -> Option<u16> {
    // SAFETY: plain call on a port id; an invalid one returns a negative value.
    let p = unsafe { dpdk_sys::rte_eth_bond_primary_get(bond) };
    u16::try_from(p).ok()
}

/// The bonding mode (0 round robin ... 6 ALB).
pub fn mode(bond: u16) -> Option<u8> {
    // SAFETY: plain call on a port id; an invalid one returns a negative value.
    let m = unsafe { dpdk_sys::rte_eth_bond_mode_get(bond) };
    u8::try_from(m).ok()
}

/// LACP actor state bit (802.1AX; DPDK's `STATE_COLLECTING` in
/// rte_eth_bond_8023ad.h): the member takes in frames for the aggregate.
pub const LACP_COLLECTING: u8 = 0x10;
/// LACP actor state bit (DPDK's `STATE_DISTRIBUTING`): the member sends out
/// frames of the aggregate.
pub const LACP_DISTRIBUTING: u8 = 0x20;

/// Whether port `id` is a mode-4 (802.3ad) bond.
pub fn is_lacp_bond(id: u16) -> bool {
    driver_name(id) == "net_bonding" && mode(id) == Some(MODE_8023AD)
}

/// A mode-4 bond member's LACP actor state (`LACP_*` bits), as the bond's
/// state machines last set it; None when `bond` is no mode-4 bond or `member`
/// not its member.
pub fn lacp_actor_state(bond: u16, member: u16) -> Option<u8> {
    // SAFETY: plain call on two port ids (dpdk-sys/src/helpers.c); invalid ones
    // return a negative value.
    let state = unsafe { dpdk_sys::ferrovs_bond_8023ad_actor_state(bond, member) };
    u8::try_from(state).ok()
}

/// The ethdev name of port `id` (a PCI address or a vdev instance name).
pub fn port_name(id: u16) -> Result<String, DpdkError> {
    let mut buf = [0 as std::ffi::c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: the buffer holds RTE_ETH_NAME_MAX_LEN bytes, the most the call
    // writes, NUL included.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
    if ret < 0 {
        return Err(DpdkError::new(
            "rte_eth_dev_get_name_by_port",
            format!("port {id}"),
            -ret,
        ));
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

/// The PMD's driver name of port `id` ("unknown" when it gives none).
pub fn driver_name(id: u16) -> String {
    let mut info = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: valid out struct; an invalid id returns an error and leaves it zeroed.
    let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
    if ret != 0 || info.driver_name.is_null() {
        return "unknown".into();
    }
    // SAFETY: driver_name is a static NUL-terminated string owned by the PMD.
    unsafe { CStr::from_ptr(info.driver_name) }
        .to_string_lossy()
        .into_owned()
}

/// The MAC address of port `id` now.
pub fn mac(id: u16) -> MacAddr {
    let mut addr = dpdk_sys::rte_ether_addr::default();
    // SAFETY: valid out struct; an invalid id leaves it zeroed.
    unsafe {
        dpdk_sys::rte_eth_macaddr_get(id, &mut addr);
    }
    MacAddr(addr.addr_bytes)
}

/// Raises the link-change event on device `name` on behalf of its PMD, for a
/// PMD that claims link interrupts but does not raise them (net_tap; see
/// dpdk-sys/src/helpers.c). The callbacks registered for it run here: a bond's
/// reads the member's link and activates or deactivates it, as it would on the
/// interrupt thread.
pub fn raise_link_event(name: &str) -> Result<(), DpdkError> {
    let cname =
        CString::new(name).map_err(|_| DpdkError::new("ferrovs_eth_dev_raise_lsc", name, 22))?;
    // SAFETY: valid C string; the helper finds the device by name and refuses an
    // unknown one.
    let ret = unsafe { dpdk_sys::ferrovs_eth_dev_raise_lsc(cname.as_ptr()) };
    if ret < 0 {
        return Err(DpdkError::new("ferrovs_eth_dev_raise_lsc", name, -ret));
    }
    Ok(())
}
