//! Forwarding modes: how a packet of a connection is rewritten on its way to the
//! real server and back.
//!
//! | mode | client -> server | server -> client |
//! | --- | --- | --- |
//! | NAT | destination VIP:port -> RS:port | source RS:port -> VIP:port |
//! | FULLNAT | source -> LIP:lport, destination -> RS:port | source -> VIP:port, destination -> client |
//! | DR | nothing but the MAC addresses (RS on a connected subnet) | not through us |
//! | TUNNEL | IP-in-IP to the RS, outer source our address | not through us |
//!
//! ICMP errors about a connection are translated like the connection's packets in
//! the error's direction, quoted packet included, so path MTU discovery works
//! through the balancer ([`icmp_error_action`]).
//!
//! Everything works in place on a frame that `packet::parse_frame` validated, with
//! incremental checksum updates (RFC 1624).

mod icmp_error;
mod nat;
pub mod nat64;
pub mod proxy_protocol;
pub mod segment;
pub mod seq;
pub mod syncookie;
mod tunnel;

pub use icmp_error::{icmp_checksum_verifies, quoted_flow, translate_icmp_error, QuotedFlow};
pub use nat::{translate, translate_fragment, translate_v4, Translation, TranslationV4};
pub use tunnel::{encapsulate, encapsulate_ipip, ipip_outer, TunnelError};
pub use tunnel::{IP6IP6_OVERHEAD, IPIP_OVERHEAD};

use crate::conn::{Dir, Lane, Mode, Record};
use std::net::{IpAddr, Ipv4Addr};

/// A connection's four endpoints, address family erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// The client's address and port as it reaches us.
    pub client: (IpAddr, u16),
    /// The virtual service's address and port the client addressed.
    pub vip: (IpAddr, u16),
    /// The source the real server sees: the client, or LIP:lport in FULLNAT.
    pub local: (IpAddr, u16),
    /// The real server's address and port.
    pub real: (IpAddr, u16),
}

/// What to do with a packet of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Rewrite addresses and ports (TTL decremented), send towards `next_hop`.
    Translate {
        /// The new source and/or destination.
        t: Translation,
        /// The address the packet is routed towards: the real server, or the
        /// client for a reply.
        next_hop: IpAddr,
    },
    /// Send unchanged to the real server on its link (DR).
    Direct {
        /// The real server, whose MAC address the frame is sent to.
        next_hop: IpAddr,
    },
    /// Encapsulate towards the real server (TUNNEL).
    Encapsulate {
        /// The real server: the outer destination, and where it is routed towards.
        next_hop: IpAddr,
    },
}

/// The action for a packet of a `mode` connection travelling in direction `dir`;
/// None for a direction the mode never sees (DR/TUNNEL replies).
#[inline]
pub fn packet_action(mode: Mode, dir: Dir, e: &Endpoints) -> Option<Action> {
    let real = e.real.0;
    Some(match (mode, dir) {
        (Mode::Nat, Dir::Inbound) => Action::Translate {
            t: Translation {
                src: None,
                dst: Some(e.real),
            },
            next_hop: real,
        },
        (Mode::Nat, Dir::Outbound) => Action::Translate {
            t: Translation {
                src: Some(e.vip),
                dst: None,
            },
            next_hop: e.client.0,
        },
        (Mode::FullNat, Dir::Inbound) => Action::Translate {
            t: Translation {
                src: Some(e.local),
                dst: Some(e.real),
            },
            next_hop: real,
        },
        (Mode::FullNat, Dir::Outbound) => Action::Translate {
            t: Translation {
                src: Some(e.vip),
                dst: Some(e.client),
            },
            next_hop: e.client.0,
        },
        (Mode::Dr, Dir::Inbound) => Action::Direct { next_hop: real },
        (Mode::Tunnel, Dir::Inbound) => Action::Encapsulate { next_hop: real },
        (Mode::Dr | Mode::Tunnel, Dir::Outbound) => return None,
    })
}

/// What to do with a packet of an IPv4 connection (the burst path's [`Action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionV4 {
    /// Rewrite addresses and ports (TTL decremented), send towards `next_hop`.
    Translate {
        /// The new source and/or destination.
        t: TranslationV4,
        /// The address the packet is routed towards: the real server, or the
        /// client for a reply.
        next_hop: Ipv4Addr,
    },
    /// Send unchanged to the real server on its link (DR).
    Direct {
        /// The real server, whose MAC address the frame is sent to.
        next_hop: Ipv4Addr,
    },
}

/// [`packet_action`] for a packet of an IPv4 connection, read straight from the
/// record its lookup found: the burst path reads nothing else. None for a lane
/// the burst path does not forward (see [`Lane::Ordinary`]) and for TUNNEL, which
/// it forwards apart ([`tunnel_target_v4`]).
#[inline]
pub fn packet_action_v4(record: &Record<Ipv4Addr>) -> Option<ActionV4> {
    let ep = |e: crate::conn::Endpoint<Ipv4Addr>| (e.addr, e.port);
    let [src, dst] = record.to();
    let translate = |src, dst, next_hop| ActionV4::Translate {
        t: TranslationV4 { src, dst },
        next_hop,
    };
    Some(match (record.lane(), record.dir()) {
        // Inbound: to the real server (dst), from the client (NAT) or the local
        // address (FULLNAT); outbound: from the VIP (src), to the client (dst).
        (Lane::Nat, Dir::Inbound) => translate(None, Some(ep(dst)), dst.addr),
        (Lane::Nat, Dir::Outbound) => translate(Some(ep(src)), None, dst.addr),
        (Lane::FullNat, _) => translate(Some(ep(src)), Some(ep(dst)), dst.addr),
        (Lane::Dr, Dir::Inbound) => ActionV4::Direct { next_hop: dst.addr },
        (Lane::Dr, Dir::Outbound) | (Lane::Tunnel | Lane::Ordinary, _) => return None,
    })
}

/// The real server a packet of a TUNNEL connection's record is encapsulated to
/// ([`packet_action`]'s `Encapsulate`); None for any other record.
#[inline]
pub fn tunnel_target_v4(record: &Record<Ipv4Addr>) -> Option<Ipv4Addr> {
    let [_, real] = record.to();
    (record.lane() == Lane::Tunnel && record.dir() == Dir::Inbound).then_some(real.addr)
}

/// How to translate an ICMP error about a connection travelling in direction `dir`
/// (the reverse of the quoted packet's): (outer, inner, next hop), or None when the
/// mode forwards it unchanged (DR/TUNNEL inbound: use [`packet_action`]) or never
/// sees it.
pub fn icmp_error_action(
    mode: Mode,
    dir: Dir,
    e: &Endpoints,
) -> Option<(Translation, Translation, IpAddr)> {
    match (mode, dir) {
        // From the server side to the client: as if the VIP sent it, about the
        // packet the client sent to the VIP.
        (Mode::Nat | Mode::FullNat, Dir::Outbound) => Some((
            Translation {
                src: Some(e.vip),
                dst: Some(e.client),
            },
            Translation {
                src: Some(e.client),
                dst: Some(e.vip),
            },
            e.client.0,
        )),
        // From the client side to the server: about the packet the server sent. In
        // NAT the outer source (the client or a router near it) is routable from the
        // server and stays; in FULLNAT the server only knows the local address.
        (Mode::Nat | Mode::FullNat, Dir::Inbound) => Some((
            Translation {
                src: (mode == Mode::FullNat).then_some(e.local),
                dst: Some(e.real),
            },
            Translation {
                src: Some(e.real),
                dst: Some(e.local),
            },
            e.real.0,
        )),
        (Mode::Dr | Mode::Tunnel, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> (IpAddr, u16) {
        let a: std::net::SocketAddr = s.parse().unwrap();
        (a.ip(), a.port())
    }

    fn endpoints(mode: Mode) -> Endpoints {
        let client = ep("198.18.0.10:40000");
        Endpoints {
            client,
            vip: ep("198.18.0.100:80"),
            local: if mode == Mode::FullNat {
                ep("198.19.0.2:5000")
            } else {
                client
            },
            real: ep("198.19.0.11:8080"),
        }
    }

    #[test]
    fn each_mode_rewrites_what_it_should() {
        let e = endpoints(Mode::Nat);
        assert_eq!(
            packet_action(Mode::Nat, Dir::Inbound, &e),
            Some(Action::Translate {
                t: Translation {
                    src: None,
                    dst: Some(e.real)
                },
                next_hop: e.real.0
            })
        );
        let f = endpoints(Mode::FullNat);
        assert_eq!(
            packet_action(Mode::FullNat, Dir::Outbound, &f),
            Some(Action::Translate {
                t: Translation {
                    src: Some(f.vip),
                    dst: Some(f.client)
                },
                next_hop: f.client.0
            })
        );
        assert_eq!(
            packet_action(Mode::Dr, Dir::Inbound, &e),
            Some(Action::Direct { next_hop: e.real.0 })
        );
        assert_eq!(
            packet_action(Mode::Tunnel, Dir::Inbound, &e),
            Some(Action::Encapsulate { next_hop: e.real.0 })
        );
        assert_eq!(packet_action(Mode::Dr, Dir::Outbound, &e), None);
    }

    #[test]
    fn icmp_errors_mirror_the_connection() {
        let f = endpoints(Mode::FullNat);
        let (outer, inner, hop) = icmp_error_action(Mode::FullNat, Dir::Inbound, &f).unwrap();
        assert_eq!(
            (outer.src, outer.dst, hop),
            (Some(f.local), Some(f.real), f.real.0)
        );
        assert_eq!((inner.src, inner.dst), (Some(f.real), Some(f.local)));
        let n = endpoints(Mode::Nat);
        let (outer, _, _) = icmp_error_action(Mode::Nat, Dir::Inbound, &n).unwrap();
        assert_eq!(outer.src, None, "NAT keeps the outer source");
        assert!(icmp_error_action(Mode::Dr, Dir::Inbound, &n).is_none());
    }

    #[test]
    fn ipv4_actions_match_the_generic_ones() {
        use crate::conn::{ConnTable, Endpoint, NewConn, Proto, Timeouts};
        let e = |s: &str| {
            let a: std::net::SocketAddrV4 = s.parse().unwrap();
            Endpoint::new(*a.ip(), a.port())
        };
        let mut t = ConnTable::<Ipv4Addr>::new(8, &Timeouts::default()).unwrap();
        for (i, mode) in [Mode::Nat, Mode::FullNat, Mode::Dr, Mode::Tunnel]
            .into_iter()
            .enumerate()
        {
            let client = e(&format!("198.18.0.{}:40000", 10 + i));
            let new = NewConn {
                proto: Proto::Tcp,
                mode,
                client,
                vip: e("198.18.0.100:80"),
                local: if mode == Mode::FullNat {
                    e("198.19.0.2:5000")
                } else {
                    client
                },
                real: e("198.19.0.11:8080"),
                service: 0,
                real_server: 0,
                template: None,
            };
            let id = t.insert(&new, 0).unwrap();
            let conn = t.get(id).unwrap();
            let generic_endpoints = Endpoints {
                client: (IpAddr::V4(conn.client().addr), conn.client().port),
                vip: (IpAddr::V4(conn.vip().addr), conn.vip().port),
                local: (IpAddr::V4(conn.local().addr), conn.local().port),
                real: (IpAddr::V4(conn.real().addr), conn.real().port),
            };
            for dir in [Dir::Inbound, Dir::Outbound] {
                let generic = packet_action(mode, dir, &generic_endpoints);
                let widen = |x: Option<(Ipv4Addr, u16)>| x.map(|(a, p)| (IpAddr::V4(a), p));
                let Some(pos) = t.record_of(id, dir) else {
                    assert!(!mode.replies_via_us(), "{mode}: no outbound record");
                    continue;
                };
                let v4 = packet_action_v4(t.record(pos).unwrap()).map(|a| match a {
                    ActionV4::Translate { t, next_hop } => Action::Translate {
                        t: Translation {
                            src: widen(t.src),
                            dst: widen(t.dst),
                        },
                        next_hop: IpAddr::V4(next_hop),
                    },
                    ActionV4::Direct { next_hop } => Action::Direct {
                        next_hop: IpAddr::V4(next_hop),
                    },
                });
                let record = t.record(pos).unwrap();
                let tunnel = tunnel_target_v4(record).map(|rs| Action::Encapsulate {
                    next_hop: IpAddr::V4(rs),
                });
                assert_eq!(v4.or(tunnel), generic, "{mode} {dir:?}");
                assert!(v4.is_none() || tunnel.is_none());
            }
        }
    }
}
