//! NUMA placement: on which memory node (DPDK's "socket") each packet pool, port
//! queue, worker table and ring is allocated. Pure: the runtime asks DPDK where
//! the lcores and devices are (`rte_lcore_to_socket_id`, `rte_eth_dev_socket_id`)
//! and allocates as [`place`] answers.
//!
//! The rules:
//! - A worker allocates on its lcore's socket: its connection tables, the pool its
//!   pipeline builds packets from (ARP, ICMP), and the rings it reads (the handoff
//!   rings towards it).
//! - A port's queues (descriptor rings, and the pool their received packets come
//!   from) are on the device's socket, where the NIC writes by DMA; a device with
//!   no socket (`SOCKET_ID_ANY`: virtual devices such as `net_af_packet`, `net_tap`,
//!   `net_bonding` over them) takes the socket of the worker polling each queue.
//! - Every socket with a queue, a worker or the management core gets one pool.
//!
//! A worker polling a queue on another socket still works, at the cost of remote
//! memory accesses: [`Placement::remote`] lists those pairs for the start-up log.

use std::fmt::Write as _;

/// A NUMA node as DPDK numbers it.
pub type Socket = u32;

/// Where everything goes (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Sockets that get a packet pool, ascending.
    pub pools: Vec<Socket>,
    /// The management core's socket: the kernel interfaces' queues use its pool.
    pub main: Socket,
    /// Per worker: its socket.
    pub workers: Vec<Socket>,
    /// Per port, per queue (queue `q` is polled by worker `q`): the queue's socket,
    /// whose pool fills it.
    pub queues: Vec<Vec<Socket>>,
    /// (port, worker) pairs where the worker polls a queue on another socket.
    pub remote: Vec<(usize, usize)>,
}

/// Places worker `w` on `workers[w]` and the queues of port `p` on `ports[p]`
/// (None: the device has no socket), the management core being on `main`.
pub fn place(main: Socket, workers: &[Socket], ports: &[Option<Socket>]) -> Placement {
    let queues: Vec<Vec<Socket>> = ports
        .iter()
        .map(|port| workers.iter().map(|&w| port.unwrap_or(w)).collect())
        .collect();
    let mut pools: Vec<Socket> = std::iter::once(main)
        .chain(workers.iter().copied())
        .chain(queues.iter().flatten().copied())
        .collect();
    pools.sort_unstable();
    pools.dedup();
    let remote = queues
        .iter()
        .enumerate()
        .flat_map(|(p, q)| {
            q.iter()
                .zip(workers)
                .enumerate()
                .filter(|(_, (queue, worker))| queue != worker)
                .map(move |(w, _)| (p, w))
        })
        .collect();
    Placement {
        pools,
        main,
        workers: workers.to_vec(),
        queues,
        remote,
    }
}

impl Placement {
    /// The index in [`Placement::pools`] of `socket`'s pool.
    pub fn pool_index(&self, socket: Socket) -> usize {
        self.pools
            .iter()
            .position(|&s| s == socket)
            .unwrap_or_default()
    }

    /// The start-up log lines: one for the pools, one per worker, one per port,
    /// and one per remote (port, worker) pair. `lcores[w]` is worker `w`'s lcore,
    /// `ports[p]` port `p`'s name and its device's socket as DPDK reported it.
    pub fn describe(&self, lcores: &[u32], ports: &[(&str, Option<Socket>)]) -> Vec<String> {
        let mut lines = vec![format!(
            "NUMA: packet pool(s) on socket(s) {:?}; management core on socket {}",
            self.pools, self.main
        )];
        for (w, socket) in self.workers.iter().enumerate() {
            lines.push(format!(
                "NUMA: worker {w} (lcore {}) on socket {socket}: connection tables, \
                 inbound rings and its packet pool there",
                lcores.get(w).copied().unwrap_or_default()
            ));
        }
        for (p, queues) in self.queues.iter().enumerate() {
            let (name, device) = ports.get(p).copied().unwrap_or(("?", None));
            let mut line = format!("NUMA: port {name} (device socket ");
            match device {
                Some(s) => {
                    let _ = write!(line, "{s}");
                }
                None => line.push_str("any: each queue on its worker's"),
            }
            let _ = write!(line, "): queue sockets {queues:?}");
            lines.push(line);
        }
        for &(p, w) in &self.remote {
            let name = ports.get(p).map_or("?", |p| p.0);
            lines.push(format!(
                "NUMA: worker {w} on socket {} polls port {name} queue {w} on socket {}: \
                 remote memory (pin the worker to a core of the NIC's socket)",
                self.workers[w], self.queues[p][w]
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_socket_places_everything_together() {
        let p = place(0, &[0, 0], &[None, Some(0)]);
        assert_eq!(p.pools, vec![0]);
        assert_eq!(p.queues, vec![vec![0, 0], vec![0, 0]]);
        assert!(p.remote.is_empty());
        assert_eq!(p.pool_index(0), 0);
    }

    #[test]
    fn two_sockets_with_nics_on_each() {
        // Workers on lcores of sockets 0 and 1; NIC wan on socket 0, lan on 1.
        let p = place(0, &[0, 1], &[Some(0), Some(1)]);
        assert_eq!(p.pools, vec![0, 1]);
        assert_eq!(p.workers, vec![0, 1]);
        assert_eq!(
            p.queues,
            vec![vec![0, 0], vec![1, 1]],
            "queues on the NIC's socket"
        );
        // Worker 1 polls wan's queue 1 on socket 0, worker 0 lan's queue 0 on 1.
        assert_eq!(p.remote, vec![(0, 1), (1, 0)]);
        assert_eq!(p.pool_index(1), 1);
        let lines = p.describe(&[2, 10], &[("wan", Some(0)), ("lan", Some(1))]);
        assert!(
            lines[2].contains("worker 1 (lcore 10) on socket 1"),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("worker 1 on socket 1 polls port wan queue 1 on socket 0")),
            "{lines:?}"
        );
    }

    #[test]
    fn virtual_devices_follow_their_workers() {
        // SOCKET_ID_ANY (a vdev): each queue on the socket of the worker polling it.
        let p = place(0, &[0, 1, 1], &[None]);
        assert_eq!(p.queues, vec![vec![0, 1, 1]]);
        assert!(p.remote.is_empty());
        assert_eq!(p.pools, vec![0, 1]);
        let lines = p.describe(&[1, 9, 11], &[("bond", None)]);
        assert!(
            lines.iter().any(|l| l.contains("device socket any")),
            "{lines:?}"
        );
    }

    #[test]
    fn the_management_socket_always_has_a_pool() {
        // Management core on socket 1, every worker and NIC on socket 0.
        let p = place(1, &[0], &[Some(0)]);
        assert_eq!(p.pools, vec![0, 1]);
        assert_eq!(p.pool_index(1), 1);
        assert_eq!(p.main, 1);
    }

    #[test]
    fn a_nic_on_a_socket_without_workers_gets_a_pool_there() {
        let p = place(0, &[0, 0], &[Some(1)]);
        assert_eq!(p.pools, vec![0, 1]);
        assert_eq!(p.queues, vec![vec![1, 1]]);
        assert_eq!(p.remote, vec![(0, 0), (0, 1)]);
    }
}
