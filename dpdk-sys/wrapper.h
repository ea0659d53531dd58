/* The DPDK API surface ferrovs binds. rte_config.h comes first through the
 * pkg-config cflags (-include rte_config.h). */
#include <rte_common.h>
#include <rte_version.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_pause.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_dev.h>
#include <rte_bus.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_eth_bond.h>

/* rte_errno is a per-lcore (thread-local) variable behind a macro; Rust cannot
 * name C thread-locals, so it is read through this function (helpers.c). */
int ferrovs_rte_errno(void);

/* Raises RTE_ETH_EVENT_INTR_LSC on the ethdev named `name`, as its PMD does when
 * its link changes; the callbacks registered for it (a bond's) run on the calling
 * thread. For PMDs that claim link interrupts but never raise them (net_tap): see
 * helpers.c. Returns a negative errno when no such device exists. */
int ferrovs_eth_dev_raise_lsc(const char *name);

/* The LACP actor state (802.1AX bits: 0x10 collecting, 0x20 distributing, ...)
 * of member `member` of mode-4 bond `bond`, as rte_eth_bond_8023ad_slave_info
 * reports it; a negative errno when `bond` is no mode-4 bond or `member` not
 * its member (helpers.c). */
int ferrovs_bond_8023ad_actor_state(uint16_t bond, uint16_t member);
