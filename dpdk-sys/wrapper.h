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

/* rte_errno is a per-lcore (thread-local) variable behind a macro; Rust cannot
 * name C thread-locals, so it is read through this function (helpers.c). */
int ferrovs_rte_errno(void);
