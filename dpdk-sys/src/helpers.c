#include "../wrapper.h"

int ferrovs_rte_errno(void) { return rte_errno; }

/* ethdev's driver interface (ethdev_driver.h), which Debian does not install.
 * Both are exported from librte_ethdev under the INTERNAL version; the device is
 * only ever handled through this opaque pointer. */
struct rte_eth_dev;
struct rte_eth_dev *rte_eth_dev_allocated(const char *name);
int rte_eth_dev_callback_process(struct rte_eth_dev *dev,
                                 enum rte_eth_event_type event, void *ret_param);

/* net_tap (22.11) sets RTE_ETH_DEV_INTR_LSC and, with intr_conf.lsc, follows its
 * netdev's RTM_NEWLINK messages, but its handler (tap_nl_msg_handler) only
 * updates dev_link: it never calls rte_eth_dev_callback_process. A bond trusts
 * the flag, does not poll such a member, and so never sees its link change.
 * ferrovs raises the event the PMD leaves out; the bond's own handler
 * (bond_ethdev_lsc_event_callback) then reads the link and fails over. */
int ferrovs_eth_dev_raise_lsc(const char *name)
{
	struct rte_eth_dev *dev = rte_eth_dev_allocated(name);

	if (dev == NULL)
		return -ENODEV;
	return rte_eth_dev_callback_process(dev, RTE_ETH_EVENT_INTR_LSC, NULL);
}

/* rte_eth_bond_8023ad.h is not bound: its packed struct port_params holds an
 * aligned rte_ether_addr, which Rust refuses (E0588). The one field ferrovs reads
 * comes through here. */
#include <rte_eth_bond_8023ad.h>

int ferrovs_bond_8023ad_actor_state(uint16_t bond, uint16_t member)
{
	struct rte_eth_bond_8023ad_slave_info info;
	int ret = rte_eth_bond_8023ad_slave_info(bond, member, &info);

	if (ret < 0)
		return ret;
	return info.actor_state;
}
