//! NUMA placement of the large tables: a worker's connection tables belong on the
//! memory node of the CPU that polls them, whichever thread builds them.
//!
//! [`on_node`] names the node for the [`HugeSlice`](crate::HugeSlice)s built inside
//! it; each of 2 MiB or more is then bound to that node with `mbind(2)`
//! (`MPOL_PREFERRED`) before its first touch, so its pages come from that node
//! even though the main thread fills them, and from another node only when that
//! one has no memory left (a preference, not a failure). Smaller arrays share
//! pages with other allocations and are left where the allocator puts them.
//!
//! Why `mbind` and not `rte_malloc_socket`: the tables stay ordinary process memory
//! on transparent huge pages, sized by `connections.max` rather than by the EAL's
//! `memory_mb`, usable under `--no-huge` and in unit tests without an EAL, and
//! `ferrovs-core` keeps building without DPDK. The hot path is the same either way:
//! the tables are plain slices.

use std::cell::Cell;
use std::mem::MaybeUninit;

thread_local! {
    static NODE: Cell<Option<u32>> = const { Cell::new(None) };
}

/// `MPOL_PREFERRED` of `<linux/mempolicy.h>`.
const MPOL_PREFERRED: i32 = 1;
/// `get_mempolicy` flags: the node of the page at `addr`.
const MPOL_F_NODE: u64 = 1;
const MPOL_F_ADDR: u64 = 2;
/// Nodes a mask can name (Linux's default `CONFIG_NODES_SHIFT` is at most 10).
const MAX_NODES: usize = 1024;

/// Runs `f` with the tables it builds placed on NUMA node `node` (None: wherever
/// the kernel puts them, as outside `on_node`); the earlier choice is restored
/// after, also when `f` panics.
pub fn on_node<R>(node: Option<u32>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            NODE.with(|n| n.set(self.0));
        }
    }
    let _restore = Restore(NODE.with(|n| n.replace(node)));
    f()
}

/// The node [`on_node`] names on this thread.
pub(crate) fn current_node() -> Option<u32> {
    NODE.with(Cell::get)
}

/// Binds the pages of `mem` (page-aligned, not yet touched, ours alone) to `node`,
/// preferred. Returns whether the kernel took it: a kernel without NUMA support
/// (ENOSYS) or a node it does not know (EINVAL) leaves the memory where it was.
pub(crate) fn prefer_node(mem: &mut [MaybeUninit<u8>], node: u32) -> bool {
    let node = node as usize;
    if node >= MAX_NODES || mem.is_empty() {
        return false;
    }
    let mut mask = [0u64; MAX_NODES / 64];
    mask[node / 64] |= 1 << (node % 64);
    // SAFETY: mbind reads `mask` (MAX_NODES bits; the kernel's `maxnode` counts one
    // more, a documented quirk) and changes the policy of [mem, mem + len), pages of
    // this process that `mem` borrows exclusively and that are not yet touched:
    // their contents (none yet) and mappings stay as they are, only the node future
    // page faults allocate from changes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            mem.as_mut_ptr(),
            mem.len(),
            MPOL_PREFERRED,
            mask.as_ptr(),
            MAX_NODES + 1,
            0u32,
        )
    };
    ret == 0
}

/// The NUMA node of the memory holding `value`, as the kernel reports it
/// (`get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)`); None without NUMA support.
pub fn node_of<T>(value: &T) -> Option<u32> {
    let mut node: i32 = -1;
    // SAFETY: get_mempolicy writes one int to `node` and, with no nodemask
    // (NULL, 0), nothing else; `value` is a live reference, so its page is mapped
    // and reading its node changes nothing.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut node as *mut i32,
            std::ptr::null_mut::<u64>(),
            0usize,
            value as *const T,
            MPOL_F_NODE | MPOL_F_ADDR,
        )
    };
    (ret == 0 && node >= 0).then_some(node as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HugeSlice;

    #[test]
    fn the_node_is_scoped_and_restored() {
        assert_eq!(current_node(), None);
        on_node(Some(3), || {
            assert_eq!(current_node(), Some(3));
            on_node(None, || assert_eq!(current_node(), None));
            assert_eq!(current_node(), Some(3));
        });
        assert_eq!(current_node(), None);
        let caught = std::panic::catch_unwind(|| on_node(Some(1), || panic!("table")));
        assert!(caught.is_err());
        assert_eq!(current_node(), None, "restored after a panic");
    }

    #[test]
    fn a_large_table_lands_on_the_node_asked_for() {
        // Every Linux machine has node 0; on a machine without NUMA support
        // (no mbind), there is nothing to place and nothing to check.
        if node_of(&0u8).is_none() {
            return;
        }
        let t = on_node(Some(0), || HugeSlice::filled(3 << 20, 1u8).unwrap());
        assert!(t.huge_aligned());
        assert_eq!(t.node(), Some(0));
        assert_eq!(node_of(&t[t.len() - 1]), Some(0));
        // A node the machine does not have: the table is still made, where the
        // kernel puts it.
        let t = on_node(Some(MAX_NODES as u32 - 1), || {
            HugeSlice::filled(3 << 20, 2u8).unwrap()
        });
        assert_eq!(t[0], 2);
        assert!(t.node().is_some());
    }
}
