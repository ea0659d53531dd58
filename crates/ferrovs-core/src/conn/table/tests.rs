//! The connection table: placement, lookups, states, expiry and memory.

use super::*;
use crate::conn::state::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use crate::conn::wheel::TICK_MS;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const SEC: u64 = 1000;
const VIP: Endpoint<Ipv4Addr> = Endpoint::new(Ipv4Addr::new(198, 18, 0, 100), 80);
const REAL: Endpoint<Ipv4Addr> = Endpoint::new(Ipv4Addr::new(198, 19, 0, 10), 8080);
const LIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

fn table(max: usize) -> ConnTable<Ipv4Addr> {
    ConnTable::with_hasher(max, &Timeouts::default(), FlowHasher::with_seed(42)).unwrap()
}

fn client(host: u8, port: u16) -> Endpoint<Ipv4Addr> {
    Endpoint::new(Ipv4Addr::new(198, 18, 1, host), port)
}

fn conn(mode: Mode, proto: Proto, client: Endpoint<Ipv4Addr>, lport: u16) -> NewConn<Ipv4Addr> {
    NewConn {
        proto,
        mode,
        client,
        vip: VIP,
        local: match mode {
            Mode::FullNat => Endpoint::new(LIP, lport),
            _ => client,
        },
        real: REAL,
        service: 1,
        real_server: 2,
        template: None,
    }
}

fn nat(host: u8, port: u16) -> NewConn<Ipv4Addr> {
    conn(Mode::Nat, Proto::Tcp, client(host, port), 0)
}

fn in_key(c: &NewConn<Ipv4Addr>) -> FlowKey<Ipv4Addr> {
    c.inbound_key()
}

fn out_key(c: &NewConn<Ipv4Addr>) -> FlowKey<Ipv4Addr> {
    c.outbound_key()
}

fn expire_all<A: Family>(t: &mut ConnTable<A>, now: u64) -> Vec<ConnId> {
    let mut gone = Vec::new();
    t.expire(now, usize::MAX, |id, _| gone.push(id));
    gone
}

#[test]
fn cold_entries_are_half_a_line() {
    assert_eq!(size_of::<Cold>(), 32);
    assert_eq!(align_of::<Cold>(), 32);
}

/// The wheel's view of a table, for its test helpers.
fn entries<A: Family>(t: &mut ConnTable<A>) -> (&mut TimerWheel, Entries<'_, A>) {
    t.wheel_and_entries()
}

/// The slot the wheel has connection `index` filed in.
fn filed<A: Family>(t: &mut ConnTable<A>, index: u32) -> Option<usize> {
    let (wheel, e) = entries(t);
    wheel.slot_of(&e, index)
}

#[test]
fn a_connection_prepared_with_its_first_packet_is_armed_at_that_packets_deadline() {
    // A SYN leads NONE (2 s) to SYN_RECV (60 s): armed at 60 s, it is not
    // re-filed when NONE's 2 s pass. Without the packet, NONE's deadline.
    let mut t = table(16);
    let now = 5 * SEC;
    let syn = t.prepare_insert(nat(1, 1000), Some(SYN));
    let id = t.insert_prepared(&syn, now).unwrap();
    let slot = filed(&mut t, id.index);
    assert_eq!(slot, Some(TimerWheel::slot_for(now + 60 * SEC)));
    t.on_packet(id, Dir::Inbound, SYN, now).unwrap();
    assert_eq!(t.get(id).unwrap().expiry(), now + 60 * SEC);
    assert!(expire_all(&mut t, now + 59 * SEC).is_empty());
    assert_eq!(expire_all(&mut t, now + 61 * SEC), vec![id]);

    let mut t = table(16);
    let plain = t.prepare_insert(nat(2, 1000), None);
    let id = t.insert_prepared(&plain, now).unwrap();
    let slot = filed(&mut t, id.index);
    assert_eq!(slot, Some(TimerWheel::slot_for(now + 2 * SEC)));
    let id3 = t.insert(&nat(3, 1000), now).unwrap();
    let slot = filed(&mut t, id3.index);
    assert_eq!(slot, Some(TimerWheel::slot_for(now + 2 * SEC)));

    // A first packet whose state times out sooner than NONE (SYN_RECV set to
    // 1 s): filed at 1 s, and the packet finds that deadline (no re-filing).
    let short = Timeouts {
        tcp_syn: Duration::from_secs(1),
        ..Timeouts::default()
    };
    let mut t = ConnTable::with_hasher(16, &short, FlowHasher::with_seed(42)).unwrap();
    let syn = t.prepare_insert(nat(1, 1000), Some(SYN));
    let id = t.insert_prepared(&syn, now).unwrap();
    let filed = filed(&mut t, id.index);
    assert_eq!(filed, Some(TimerWheel::slot_for(now + SEC)));
    let timer = t.slab[id.index as usize].timer;
    t.on_packet(id, Dir::Inbound, SYN, now).unwrap();
    assert_eq!(t.slab[id.index as usize].timer, timer, "not re-filed");
    assert_eq!(expire_all(&mut t, now + 1100), vec![id]);
}

/// The slot the table looks for a free slot from, for a connection with this key.
fn home_of(t: &ConnTable<Ipv4Addr>, key: &FlowKey<Ipv4Addr>) -> u32 {
    t.home_slot(t.hasher.hash(key)) as u32
}

/// What the burst path finds for `key`: the record, and the connection it names.
fn record_of_key(
    t: &ConnTable<Ipv4Addr>,
    key: &FlowKey<Ipv4Addr>,
) -> Option<(Record<Ipv4Addr>, ConnId)> {
    let pos = t.find_record(key, t.hasher.hash(key))?;
    Some((*t.record(pos)?, t.id_of(pos)?))
}

#[test]
fn each_direction_has_a_record_with_what_its_packets_need() {
    let mut t = table(1000);
    for (i, mode) in [Mode::Nat, Mode::FullNat, Mode::Dr, Mode::Tunnel]
        .into_iter()
        .enumerate()
    {
        let c = conn(mode, Proto::Tcp, client(1, 1000 + i as u16), 7000);
        let id = t.insert(&c, 0).unwrap();
        let (r, found) = record_of_key(&t, &in_key(&c)).unwrap();
        assert_eq!(found, id);
        assert_eq!(r.dir(), Dir::Inbound);
        assert_eq!(r.key(), [c.client, c.vip]);
        assert_eq!(
            r.to(),
            [c.local, c.real],
            "{mode}: from the local address, to the real server"
        );
        assert_eq!((r.real_server(), r.proto()), (2, Proto::Tcp));
        let lane = match mode {
            Mode::Nat => Lane::Nat,
            Mode::FullNat => Lane::FullNat,
            Mode::Dr => Lane::Dr,
            Mode::Tunnel => Lane::Tunnel,
        };
        assert_eq!(r.lane(), lane);
        match record_of_key(&t, &out_key(&c)) {
            Some((r, found)) => {
                assert!(mode.replies_via_us());
                assert_eq!(found, id);
                assert_eq!(r.dir(), Dir::Outbound);
                assert_eq!(r.key(), [c.real, c.local]);
                assert_eq!(
                    r.to(),
                    [c.vip, c.client],
                    "{mode}: from the VIP, to the client"
                );
                assert_eq!(r.lane(), lane);
            }
            // Replies bypass us: a packet shaped like a reply is not theirs.
            None => assert!(!mode.replies_via_us(), "{mode}"),
        }
        // The connection put together from its records and cold entry.
        let got = t.get(id).unwrap();
        assert_eq!(
            (got.client(), got.vip(), got.local(), got.real(), got.mode()),
            (c.client, c.vip, c.local, c.real, mode)
        );
    }
    // Removed: neither record answers.
    let c = nat(1, 1000);
    let id = t.lookup(&in_key(&c)).unwrap().0;
    t.remove(id).unwrap();
    assert_eq!(record_of_key(&t, &in_key(&c)), None);
    assert_eq!(record_of_key(&t, &out_key(&c)), None);
}

#[test]
fn an_ipv6_connection_is_put_together_from_its_two_half_kept_records() {
    // An IPv6 record keeps one rewritten endpoint; the other comes from the
    // packet's own key or the other direction's.
    let mut t: ConnTable<Ipv6Addr> =
        ConnTable::with_hasher(100, &Timeouts::default(), FlowHasher::with_seed(42)).unwrap();
    let ep = |a: &str, port| Endpoint::new(a.parse::<Ipv6Addr>().unwrap(), port);
    let vip = ep("2001:db8::100", 443);
    let real = ep("2001:db8:1::10", 8443);
    let nat64_real = ep("::ffff:198.19.0.10", 8080);
    for (i, (mode, local, real)) in [
        (Mode::Nat, None, real),
        (Mode::FullNat, Some(ep("2001:db8:2::2", 5000)), real),
        (Mode::Dr, None, real),
        (Mode::Tunnel, None, real),
        // NAT64: a FULLNAT connection with an IPv4-mapped local address and server.
        (
            Mode::FullNat,
            Some(ep("::ffff:198.19.0.2", 5001)),
            nat64_real,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let client = ep("2001:db8:c::1", 1000 + i as u16);
        let c = NewConn {
            proto: Proto::Tcp,
            mode,
            client,
            vip,
            local: local.unwrap_or(client),
            real,
            service: 1,
            real_server: 2,
            template: None,
        };
        let id = t.insert(&c, 0).unwrap();
        assert_eq!(t.lookup(&c.inbound_key()), Some((id, Dir::Inbound)));
        if mode.replies_via_us() {
            assert_eq!(t.lookup(&c.outbound_key()), Some((id, Dir::Outbound)));
        }
        let got = t.get(id).unwrap();
        assert_eq!(
            (got.client(), got.vip(), got.local(), got.real(), got.mode()),
            (c.client, c.vip, c.local, c.real, mode),
            "{mode} {i}"
        );
    }
}

#[test]
fn a_packet_that_keeps_the_state_writes_only_its_record() {
    let mut t = table(16);
    let c = conn(Mode::Nat, Proto::Udp, client(2, 2000), 0);
    let id = t.insert(&c, 0).unwrap();
    let pos = t.record_of(id, Dir::Outbound).unwrap();
    let cold = t.slab[id.index as usize];
    let clock = t.clock(150 * SEC + 30);
    assert_eq!(
        t.on_packet_record(pos, 0, clock),
        Ok(None),
        "UDP keeps its state"
    );
    assert_eq!(t.record(pos).unwrap().dir(), Dir::Outbound);
    let after = t.slab[id.index as usize];
    assert_eq!(
        (after.expiry, after.timer, after.records),
        (cold.expiry, cold.timer, cold.records),
        "the cold entry is untouched"
    );
    // The deadline follows the record's tick, rounded up to the wheel's.
    assert_eq!(t.get(id).unwrap().expiry(), 150 * SEC + TICK_MS + 300 * SEC);
    // A TCP packet that moves the state goes the slow way: both records change.
    let c = nat(3, 3000);
    let id = t.insert(&c, 0).unwrap();
    let pos = t.record_of(id, Dir::Inbound).unwrap();
    let clock = t.clock(SEC);
    let change = t
        .on_packet_record(pos, SYN, clock)
        .unwrap()
        .expect("a SYN moves NONE on");
    assert_eq!(change.to, ConnState::Tcp(TcpState::SynRecv));
    let r = t.record(pos).unwrap();
    assert_eq!(r.state_code(), change.to.code());
    let out = t.record_of(id, Dir::Outbound).unwrap();
    assert_eq!(t.record(out).unwrap().state_code(), change.to.code());
    assert_eq!(t.get(id).unwrap().expiry(), SEC + 60 * SEC);
}

#[test]
fn a_settled_tick_is_never_read_as_a_packet() {
    // A connection idle longer than the 16-bit tick wraps (109 minutes) keeps
    // the deadline it settled at, whatever the clock reads: the wheel settles
    // it at least once a lap.
    let long = Timeouts {
        tcp_established: Duration::from_secs(10 * 3600),
        ..Timeouts::default()
    };
    let mut t = ConnTable::with_hasher(16, &long, FlowHasher::with_seed(3)).unwrap();
    let id = t.insert(&nat(1, 1), 0).unwrap();
    for flags in [SYN, ACK] {
        t.on_packet(id, Dir::Inbound, flags, 0).unwrap();
    }
    let pos = t.record_of(id, Dir::Inbound).unwrap();
    let clock = t.clock(5 * SEC);
    t.on_packet_record(pos, ACK, clock).unwrap();
    let deadline = 5 * SEC + 10 * 3600 * SEC;
    assert_eq!(t.get(id).unwrap().expiry(), deadline);
    let mut now = 5 * SEC;
    while now < deadline - 60 * SEC {
        now += 60 * SEC;
        assert!(expire_all(&mut t, now).is_empty(), "alive at {now}");
        assert_eq!(t.get(id).unwrap().expiry(), deadline, "at {now}");
    }
    assert_eq!(expire_all(&mut t, deadline + TICK_MS), vec![id]);
}

#[test]
fn with_its_home_taken_a_connection_takes_the_next_free_slot() {
    // Fill a small table; each connection whose home slot is taken lands in the
    // first free slot after it, going round past the end.
    const MAX: usize = 16;
    let mut t = table(MAX);
    let mut elsewhere = 0;
    for port in 1..=MAX as u16 {
        let c = nat(7, port);
        let home = home_of(&t, &in_key(&c)) as usize;
        let free = |t: &ConnTable<Ipv4Addr>, s: usize| !t.slab[s].is_live();
        let want = (home..MAX)
            .chain(0..home)
            .find(|&s| free(&t, s))
            .expect("room");
        if want != home {
            elsewhere += 1;
        }
        let id = t.insert(&c, 0).unwrap();
        assert_eq!(id.index() as usize, want, "port {port}");
        assert_eq!(t.lookup(&in_key(&c)), Some((id, Dir::Inbound)));
    }
    assert!(elsewhere > 0, "a full table has connections away from home");
    assert_eq!(t.insert(&nat(8, 1), 0), Err(ConnError::TableFull));
}

#[test]
fn slots_are_handed_out_in_random_order_and_all_of_them() {
    // Connections opened one after another do not land in consecutive slots
    // (traffic revisiting flows in opening order must not read the slab front
    // to back), yet every slot is used before the table is full.
    const MAX: usize = 10_000;
    let mut t = table(MAX);
    let mut slots = Vec::with_capacity(MAX);
    for i in 0..MAX {
        let c = nat((i % 250) as u8, 1024 + (i / 250) as u16);
        slots.push(t.insert(&c, 0).expect("room").index());
    }
    assert_eq!(
        t.insert(&nat(251, 1), 0),
        Err(ConnError::TableFull),
        "full after exactly MAX"
    );
    let ascending = slots.windows(2).filter(|w| w[1] == w[0] + 1).count();
    assert!(
        ascending < MAX / 100,
        "{ascending} consecutive slots in a row"
    );
    let mut sorted = slots.clone();
    sorted.sort_unstable();
    assert!(
        sorted.iter().copied().eq(0..MAX as u32),
        "every slot exactly once"
    );
    // Emptied and filled again with other keys: again every slot exactly once.
    for (i, &slot) in slots.iter().enumerate() {
        let c = nat((i % 250) as u8, 1024 + (i / 250) as u16);
        let id = t.lookup(&in_key(&c)).expect("live").0;
        assert_eq!(id.index(), slot);
        t.remove(id).unwrap();
    }
    let mut refilled: Vec<u32> = (0..MAX)
        .map(|i| {
            let c = nat((i % 250) as u8, 30_000 + (i / 250) as u16);
            t.insert(&c, 0).expect("room").index()
        })
        .collect();
    assert_eq!(t.insert(&nat(251, 1), 0), Err(ConnError::TableFull));
    refilled.sort_unstable();
    assert!(refilled.iter().copied().eq(0..MAX as u32));
    // Where a connection lands follows from its hash: another seed, other
    // slots; the same seed, the same slots.
    let first_slots = |seed: u64| -> Vec<u32> {
        let mut t = ConnTable::<Ipv4Addr>::with_hasher(
            MAX,
            &Timeouts::default(),
            FlowHasher::with_seed(seed),
        )
        .unwrap();
        (0..100)
            .map(|i| t.insert(&nat(i as u8, 1024), 0).unwrap().index())
            .collect()
    };
    assert_eq!(first_slots(7), first_slots(7));
    assert_ne!(first_slots(7), first_slots(8));
}

#[test]
fn memory_bytes_per_connection() {
    // Cold slab, free bitmap, records and wheel, from their allocation sizes
    // (capacity times element size), at sizes that round well and badly to a
    // power of two.
    for max in [1_000, 65_536, 100_000, 1_000_000] {
        let t = table(max);
        let slab = t.slab.len() * size_of::<Cold>();
        let free = t.free.memory_bytes();
        assert!(free <= max / 8 + max / 512 + 16, "a bit a slot: {free}");
        let index = t.records.memory_bytes();
        let wheel = t.wheel.memory_bytes();
        assert_eq!(t.memory_bytes(), slab + free + index + wheel);
        let per_conn = t.memory_bytes() as f64 / max as f64;
        let per_conn_large = (slab + free + index) as f64 / max as f64;
        assert!(
            per_conn_large <= 128.0,
            "max {max}: {per_conn_large:.1} bytes/conn"
        );
        if max >= 1_000_000 {
            // The wheel's fixed 1.1 MB (slot heads, a top chunk per slot)
            // amortises away.
            assert!(per_conn <= 128.0, "max {max}: {per_conn:.1} bytes/conn");
        }
    }
}

#[test]
fn index_keeps_working_under_churn_at_full_table() {
    // A full table replaced connection by connection, 100 times over: every
    // insert finds room in the index, nothing grows, every key stays found.
    const MAX: usize = 2_000;
    let mut t = table(MAX);
    let bytes = t.memory_bytes();
    let mut rng = Rng(77);
    let mut ids = Vec::with_capacity(MAX);
    let mut port = 0u32;
    let mut next_conn = |rng: &mut Rng| {
        port += 1;
        let c = client((port >> 16) as u8, port as u16);
        conn(Mode::FullNat, Proto::Tcp, c, rng.next() as u16)
    };
    while ids.len() < MAX {
        if let Ok(id) = t.insert(&next_conn(&mut rng), 0) {
            ids.push(id);
        }
    }
    for _ in 0..200_000 {
        let slot = rng.below(MAX as u64) as usize;
        t.remove(ids[slot]).unwrap();
        loop {
            if let Ok(id) = t.insert(&next_conn(&mut rng), 0) {
                ids[slot] = id;
                break;
            }
        }
    }
    assert_eq!(t.len(), MAX);
    assert_eq!(t.records.len(), 2 * MAX);
    assert_eq!(t.memory_bytes(), bytes);
    for &id in &ids {
        let c = t.get(id).unwrap();
        assert_eq!(t.lookup(&c.inbound_key()), Some((id, Dir::Inbound)));
        assert_eq!(
            t.lookup(&c.outbound_key().unwrap()),
            Some((id, Dir::Outbound))
        );
    }
}

#[test]
fn nat_lookup_both_directions() {
    let mut t = table(16);
    let c = nat(7, 40000);
    let id = t.insert(&c, 0).unwrap();
    assert_eq!(t.lookup(&in_key(&c)), Some((id, Dir::Inbound)));
    assert_eq!(t.lookup(&out_key(&c)), Some((id, Dir::Outbound)));
    // The NAT reply goes from the real server to the client itself.
    assert_eq!(out_key(&c).dst, c.client.addr);
    // Near misses.
    let k = in_key(&c);
    for miss in [
        FlowKey { sport: 40001, ..k },
        FlowKey { dport: 81, ..k },
        FlowKey {
            proto: Proto::Udp,
            ..k
        },
        FlowKey {
            src: Ipv4Addr::new(198, 18, 1, 8),
            ..k
        },
        FlowKey {
            dst: Ipv4Addr::new(198, 18, 0, 101),
            ..k
        },
    ] {
        assert_eq!(t.lookup(&miss), None, "{miss:?}");
    }
    // Pre-hashed lookup, and a wrong hash only misses.
    let h = k.hash_with(t.hasher());
    assert_eq!(t.lookup_hashed(&k, h), Some((id, Dir::Inbound)));
    for wrong in [h ^ 1, h ^ (1 << 63)] {
        let got = t.lookup_hashed(&k, wrong);
        assert!(
            got.is_none_or(|hit| hit == (id, Dir::Inbound)),
            "never a wrong hit"
        );
    }
    let got = t.get(id).unwrap();
    assert_eq!((got.client(), got.vip(), got.real()), (c.client, VIP, REAL));
    assert_eq!(got.outbound_key(), Some(out_key(&c)));
}

#[test]
fn fullnat_lookup_by_local_address() {
    let mut t = table(16);
    let c = conn(Mode::FullNat, Proto::Tcp, client(7, 40000), 5000);
    let id = t.insert(&c, 0).unwrap();
    let reply = FlowKey::new(Proto::Tcp, REAL.addr, REAL.port, LIP, 5000);
    assert_eq!(t.lookup(&reply), Some((id, Dir::Outbound)));
    assert_eq!(t.get(id).unwrap().local(), Endpoint::new(LIP, 5000));
    // A reply addressed to the client (NAT-style) is not this connection's.
    assert_eq!(
        t.lookup(&FlowKey::new(
            Proto::Tcp,
            REAL.addr,
            REAL.port,
            c.client.addr,
            40000
        )),
        None
    );
}

#[test]
fn dr_and_tunnel_are_inbound_only() {
    for mode in [Mode::Dr, Mode::Tunnel] {
        let mut t = table(4);
        let c = conn(mode, Proto::Tcp, client(9, 1234), 0);
        let id = t.insert(&c, 0).unwrap();
        assert_eq!(t.lookup(&in_key(&c)), Some((id, Dir::Inbound)));
        assert_eq!(t.lookup(&out_key(&c)), None);
        assert_eq!(t.get(id).unwrap().outbound_key(), None);
        assert_eq!(t.records.len(), 1);
        t.remove(id).unwrap();
        assert_eq!(t.records.len(), 0);
    }
}

#[test]
fn duplicate_keys_are_refused_without_change() {
    let mut t = table(8);
    let a = conn(Mode::FullNat, Proto::Tcp, client(1, 1000), 5000);
    let id = t.insert(&a, 0).unwrap();
    assert_eq!(t.insert(&a, 1), Err(ConnError::InboundKeyExists));
    // Another client on the same local port: the reply would be ambiguous.
    let b = conn(Mode::FullNat, Proto::Tcp, client(2, 1000), 5000);
    assert_eq!(t.insert(&b, 1), Err(ConnError::OutboundKeyExists));
    // NAT: two VIPs sending one client's port to one real server collide too.
    let vip = |last| Endpoint::new(Ipv4Addr::new(198, 18, 0, last), 80);
    let c = NewConn {
        vip: vip(101),
        ..nat(1, 1000)
    };
    assert!(t.insert(&c, 1).is_ok());
    let d = NewConn {
        vip: vip(102),
        ..nat(1, 1000)
    };
    assert_eq!(t.insert(&d, 1), Err(ConnError::OutboundKeyExists));
    // The same 5-tuple in UDP is a different flow.
    assert!(t
        .insert(
            &NewConn {
                proto: Proto::Udp,
                ..a
            },
            1
        )
        .is_ok());
    assert_eq!(t.len(), 3);
    assert_eq!(t.records.len(), 6);
    assert_eq!(t.lookup(&in_key(&a)), Some((id, Dir::Inbound)));
}

#[test]
fn full_table_refuses_and_keeps_existing_flows() {
    let mut t = table(3);
    let conns: Vec<_> = (1..=3).map(|h| nat(h, 1000)).collect();
    let ids: Vec<_> = conns.iter().map(|c| t.insert(c, 0).unwrap()).collect();
    t.on_packet(ids[0], Dir::Inbound, SYN, 0).unwrap();
    let before: Vec<_> = ids.iter().map(|&id| t.get(id).unwrap()).collect();
    assert_eq!(t.insert(&nat(4, 1000), 5), Err(ConnError::TableFull));
    assert_eq!(t.len(), 3);
    for (i, c) in conns.iter().enumerate() {
        assert_eq!(t.lookup(&in_key(c)), Some((ids[i], Dir::Inbound)));
        assert_eq!(t.lookup(&out_key(c)), Some((ids[i], Dir::Outbound)));
        assert_eq!(t.get(ids[i]).unwrap(), before[i]);
    }
    assert_eq!(t.lookup(&in_key(&nat(4, 1000))), None);
    // Room again after a removal.
    t.remove(ids[1]).unwrap();
    assert!(t.insert(&nat(4, 1000), 5).is_ok());
}

#[test]
fn zero_capacity_table() {
    let mut t = table(0);
    assert_eq!(t.insert(&nat(1, 1), 0), Err(ConnError::TableFull));
    assert_eq!(t.expire(1_000_000, 10, |_, _| {}), 0);
    assert_eq!(t.iter().count(), 0);
}

#[test]
fn capacity_limit_is_an_error() {
    let r = ConnTable::<Ipv4Addr>::new(MAX_CONNECTIONS + 1, &Timeouts::default());
    assert_eq!(r.err(), Some(ConnError::CapacityTooLarge));
    assert_eq!(ConnError::TableFull.reason(), "conn_table_full");
}

#[test]
fn freed_slots_are_reused_and_stale_ids_caught() {
    let mut t = table(4);
    let a = t.insert(&nat(1, 1), 0).unwrap();
    let b = t.insert(&nat(2, 2), 0).unwrap();
    assert_ne!(a.index(), b.index());
    let removed = t.remove(a).unwrap();
    assert_eq!(removed.client(), client(1, 1));
    assert_eq!(t.lookup(&in_key(&nat(1, 1))), None);
    // The slot comes back (here as the home slot of the next connection),
    // under a new generation.
    let third = (3..1000u16)
        .map(|port| nat(3, port))
        .find(|c| home_of(&t, &in_key(c)) == a.index())
        .expect("a key homed at the freed slot");
    let c = t.insert(&third, 0).unwrap();
    assert_eq!(c.index(), a.index());
    assert_ne!(c, a);
    assert_eq!(t.get(a), None);
    assert_eq!(
        t.on_packet(a, Dir::Inbound, SYN, 1),
        Err(ConnError::UnknownConn)
    );
    assert_eq!(t.remove(a), Err(ConnError::UnknownConn));
    // The stale id left the new occupant alone.
    assert_eq!(t.get(c).unwrap().state(), ConnState::Tcp(TcpState::None));
    // Ids past the slab are unknown, not a panic.
    let bogus = ConnId {
        index: 999,
        generation: 1,
    };
    assert_eq!(t.get(bogus), None);
    assert_eq!(
        t.on_packet(bogus, Dir::Inbound, ACK, 1),
        Err(ConnError::UnknownConn)
    );
    assert_eq!(t.remove(bogus), Err(ConnError::UnknownConn));
    // Every slot can be filled and emptied again.
    let more: Vec<_> = (10..12).map(|h| t.insert(&nat(h, 1), 0).unwrap()).collect();
    assert_eq!(t.len(), 4);
    for id in more.into_iter().chain([b, c]) {
        t.remove(id).unwrap();
    }
    assert!(t.is_empty());
    assert_eq!(t.records.len(), 0);
}

/// Feeds `(dir, flags, expected state, expected activity change)` to a new
/// connection of `mode` and checks state, change and deadline at each step.
fn drive(mode: Mode, steps: &[(Dir, u8, TcpState, i8)]) {
    let timeouts = Timeouts::default();
    let mut t = table(2);
    let id = t
        .insert(&conn(mode, Proto::Tcp, client(1, 1000), 7000), 0)
        .unwrap();
    assert_eq!(t.get(id).unwrap().expiry(), 2 * SEC, "NONE lasts 2 s");
    assert!(!t.get(id).unwrap().is_active());
    for (i, &(dir, flags, want, activity)) in steps.iter().enumerate() {
        let now = (i as u64 + 1) * SEC;
        let change = t.on_packet(id, dir, flags, now).unwrap();
        let c = t.get(id).unwrap();
        assert_eq!(c.state(), ConnState::Tcp(want), "{mode} step {i}");
        assert_eq!(change.to, ConnState::Tcp(want));
        let got = i8::from(change.activated()) - i8::from(change.deactivated());
        assert_eq!(got, activity, "{mode} step {i}: {change:?}");
        let timeout = timeouts.for_state(c.state()).as_millis() as u64;
        assert_eq!(c.expiry(), now + timeout, "{mode} step {i} timeout");
        assert_eq!(c.expires_in(now), timeout);
    }
}

#[test]
fn nat_handshake_and_close_with_activity() {
    use Dir::{Inbound as I, Outbound as O};
    use TcpState::*;
    for mode in [Mode::Nat, Mode::FullNat] {
        drive(
            mode,
            &[
                (I, SYN, SynRecv, 1),
                (I, SYN, SynRecv, 0), // retransmitted SYN
                (O, SYN | ACK, SynRecv, 0),
                (I, ACK, Established, 0),
                (O, ACK | PSH, Established, 0),
                (I, FIN | ACK, CloseWait, -1),
                (O, FIN | ACK, TimeWait, 0),
                (I, ACK, TimeWait, 0),
                (I, SYN, SynRecv, 1), // port reuse
            ],
        );
    }
}

#[test]
fn dr_handshake_and_close_input_only() {
    use Dir::Inbound as I;
    use TcpState::*;
    for mode in [Mode::Dr, Mode::Tunnel] {
        drive(
            mode,
            &[
                (I, SYN, SynRecv, 1),
                (I, ACK, Established, 0),
                (I, FIN | ACK, FinWait, -1), // INPUT_ONLY: not CLOSE_WAIT
                (I, ACK, FinWait, 0),
                (I, RST, Close, 0),
            ],
        );
    }
}

#[test]
fn rst_from_either_side() {
    use Dir::{Inbound as I, Outbound as O};
    use TcpState::*;
    drive(
        Mode::Nat,
        &[
            (I, SYN, SynRecv, 1),
            (I, ACK, Established, 0),
            (I, RST, Close, -1),
        ],
    );
    drive(
        Mode::Nat,
        &[
            (I, SYN, SynRecv, 1),
            (I, ACK, Established, 0),
            (O, RST, Close, -1),
        ],
    );
    // The server refusing the connection.
    drive(
        Mode::Nat,
        &[(I, SYN, SynRecv, 1), (O, RST | ACK, Close, -1)],
    );
}

#[test]
fn udp_has_one_state_and_the_udp_timeout() {
    let mut t = table(2);
    let id = t
        .insert(&conn(Mode::Nat, Proto::Udp, client(1, 53), 0), 0)
        .unwrap();
    let c = t.get(id).unwrap();
    assert_eq!(
        (c.state(), c.state_name(), c.expiry()),
        (ConnState::Udp, "UDP", 300 * SEC)
    );
    let change = t.on_packet(id, Dir::Outbound, 0xff, 10 * SEC).unwrap();
    assert_eq!(
        change,
        StateChange {
            from: ConnState::Udp,
            to: ConnState::Udp
        }
    );
    assert!(!change.activated() && !change.deactivated());
    assert_eq!(t.get(id).unwrap().expiry(), 310 * SEC);
}

#[test]
fn configured_timeouts_apply_per_state() {
    let timeouts = Timeouts {
        tcp_established: Duration::from_secs(7),
        tcp_syn: Duration::from_secs(3),
        tcp_fin: Duration::from_secs(4),
        tcp_time_wait: Duration::from_secs(5),
        tcp_close: Duration::from_secs(1),
        tcp_close_wait: Duration::from_secs(6),
        tcp_last_ack: Duration::from_secs(2),
        udp: Duration::from_secs(9),
    };
    let mut t = ConnTable::<Ipv4Addr>::with_hasher(4, &timeouts, FlowHasher::with_seed(1)).unwrap();
    let id = t.insert(&nat(1, 1), 0).unwrap();
    let mut expect = |dir: Dir, flags: u8, secs: u64| {
        t.on_packet(id, dir, flags, 100 * SEC).unwrap();
        assert_eq!(t.get(id).unwrap().expiry(), (100 + secs) * SEC);
    };
    // (No IPVS transition enters LAST_ACK; its timeout is configurable anyway,
    // as in IPVS.)
    expect(Dir::Inbound, SYN, 3);
    expect(Dir::Inbound, ACK, 7);
    expect(Dir::Outbound, FIN, 4); // FIN_WAIT
    expect(Dir::Inbound, FIN, 5); // TIME_WAIT
    expect(Dir::Inbound, SYN, 3);
    expect(Dir::Inbound, ACK, 7);
    expect(Dir::Inbound, FIN, 6); // CLOSE_WAIT
    expect(Dir::Outbound, RST, 1); // CLOSE
    expect(Dir::Outbound, SYN, 120); // SYN_SENT: IPVS's fixed value
    let udp = t
        .insert(&conn(Mode::Nat, Proto::Udp, client(2, 2), 0), 0)
        .unwrap();
    assert_eq!(t.get(udp).unwrap().expiry(), 9 * SEC);
    assert_eq!(t.timeouts(), &timeouts);
}

#[test]
fn set_timeouts_applies_from_the_next_packet() {
    // The SYN settles the deadline (SYN_RECV's 60 s, filed there): a new
    // timeout applies from the next packet.
    let mut t = table(2);
    let syn = t.prepare_insert(nat(1, 1), Some(SYN));
    let id = t.insert_prepared(&syn, 0).unwrap();
    t.set_timeouts(&Timeouts {
        tcp_syn: Duration::from_secs(10),
        ..Timeouts::default()
    });
    assert_eq!(t.get(id).unwrap().expiry(), 60 * SEC);
    t.on_packet(id, Dir::Inbound, SYN, SEC).unwrap();
    assert_eq!(
        t.get(id).unwrap().state(),
        ConnState::Tcp(TcpState::SynRecv)
    );
    assert_eq!(t.get(id).unwrap().expiry(), 11 * SEC);
    // A packet that keeps the state does not touch the wheel: the connection
    // goes when the wheel reaches it, at the deadline filed before at the latest.
    assert_eq!(expire_all(&mut t, 59 * SEC), []);
    assert_eq!(expire_all(&mut t, 60 * SEC), [id]);
}

#[test]
fn a_first_packet_that_keeps_the_state_sets_one_deadline_whichever_way_it_is_handled() {
    // A UDP datagram at a time between ticks: handed to `on_packet` after the
    // insertion (the packet-at-a-time path) or named to `prepare_insert` (the
    // burst path), it leaves the same deadline, its tick's.
    let now = 5 * SEC + 58;
    let udp = conn(Mode::Nat, Proto::Udp, client(1, 53), 0);
    let want = now.div_ceil(TICK_MS) * TICK_MS + 300 * SEC;

    let mut after = table(4);
    let id = after.insert(&udp, now).unwrap();
    after.on_packet(id, Dir::Inbound, 0, now).unwrap();
    assert_eq!(after.get(id).unwrap().expiry(), want);

    let mut named = table(4);
    let prepared = named.prepare_insert(udp, Some(0));
    let id = named.insert_prepared(&prepared, now).unwrap();
    assert_eq!(named.get(id).unwrap().expiry(), want);
    assert!(expire_all(&mut named, want - 1).is_empty());
    assert_eq!(expire_all(&mut named, want), vec![id]);

    // A first packet that changes the state (a SYN) sets the exact deadline.
    let mut t = table(4);
    let prepared = t.prepare_insert(nat(1, 1000), Some(SYN));
    let id = t.insert_prepared(&prepared, now).unwrap();
    assert_eq!(t.get(id).unwrap().expiry(), now + 60 * SEC);
}

#[test]
fn expiry_in_deadline_order_with_budget() {
    let mut t = table(8);
    // Deadlines: UDP 300 s, TCP NONE 2 s, SYN_RECV 60 s, ESTABLISHED 900 s,
    // CLOSE 10 s.
    let udp = t
        .insert(&conn(Mode::Nat, Proto::Udp, client(1, 1), 0), 0)
        .unwrap();
    let none = t.insert(&nat(2, 2), 0).unwrap();
    let syn = t.insert(&nat(3, 3), 0).unwrap();
    t.on_packet(syn, Dir::Inbound, SYN, 0).unwrap();
    let est = t.insert(&nat(4, 4), 0).unwrap();
    t.on_packet(est, Dir::Inbound, SYN, 0).unwrap();
    t.on_packet(est, Dir::Inbound, ACK, 0).unwrap();
    let close = t.insert(&nat(5, 5), 0).unwrap();
    t.on_packet(close, Dir::Inbound, SYN, 0).unwrap();
    t.on_packet(close, Dir::Outbound, RST, 0).unwrap();

    // Called once a second, expiry follows the deadlines exactly. (Re-filing
    // the refreshed entries filed at 2 s also costs budget.)
    let mut order = Vec::new();
    for now in (0..=1000 * SEC).step_by(SEC as usize) {
        t.expire(now, 16, |id, c| {
            assert_eq!(c.expiry(), now);
            order.push(id);
        });
    }
    assert_eq!(order, [none, close, syn, udp, est]);
    assert!(t.is_empty());
}

#[test]
fn budget_bounds_each_expire_call() {
    let mut t = table(8);
    let ids: Vec<_> = (1..=5).map(|h| t.insert(&nat(h, 1), 0).unwrap()).collect();
    let mut calls = Vec::new();
    while !t.is_empty() {
        calls.push(t.expire(2 * SEC, 2, |_, _| {}));
    }
    assert_eq!(calls, [2, 2, 1]);
    assert_eq!(t.expire(2 * SEC, 2, |_, _| {}), 0);
    // A budget of zero does nothing.
    let id = t.insert(&nat(1, 1), 0).unwrap();
    assert_eq!(t.expire(10 * SEC, 0, |_, _| {}), 0);
    assert_eq!(t.get(id).map(|c| c.client()), Some(client(1, 1)));
    assert_ne!(id, ids[0]);
}

#[test]
fn expires_on_time_and_hands_over_before_removal() {
    let mut t = table(4);
    let c = nat(1, 1);
    let id = t.insert(&c, 0).unwrap();
    t.on_packet(id, Dir::Inbound, SYN, 0).unwrap(); // SYN_RECV: 60 s
    assert_eq!(expire_all(&mut t, 60 * SEC - 1), []);
    let mut seen = None;
    let n = t.expire(60 * SEC, 16, |gone, conn| {
        seen = Some((
            gone,
            conn.real_server(),
            conn.is_active(),
            conn.state_name(),
        ));
    });
    assert_eq!(n, 1);
    // Active when handed over: the caller decrements the active count.
    assert_eq!(seen, Some((id, 2, true, "SYN_RECV")));
    assert!(t.is_empty());
    assert_eq!(t.lookup(&in_key(&c)), None);
    assert_eq!(t.lookup(&out_key(&c)), None);
    assert_eq!(t.get(id), None);
}

#[test]
fn refreshed_flow_survives_its_original_deadline() {
    let mut t = table(4);
    let busy = t
        .insert(&conn(Mode::Nat, Proto::Udp, client(1, 1), 0), 0)
        .unwrap();
    let idle = t
        .insert(&conn(Mode::Nat, Proto::Udp, client(2, 2), 0), 0)
        .unwrap();
    t.on_packet(busy, Dir::Inbound, 0, 200 * SEC).unwrap();
    assert_eq!(expire_all(&mut t, 300 * SEC), [idle]);
    assert_eq!(t.get(busy).unwrap().expiry(), 500 * SEC);
    assert_eq!(expire_all(&mut t, 500 * SEC - 1), []);
    assert_eq!(expire_all(&mut t, 500 * SEC), [busy]);
}

#[test]
fn shorter_timeout_takes_effect_immediately() {
    let mut t = table(2);
    let id = t.insert(&nat(1, 1), 0).unwrap();
    t.on_packet(id, Dir::Inbound, SYN, 0).unwrap();
    t.on_packet(id, Dir::Inbound, ACK, 0).unwrap(); // 900 s
    t.on_packet(id, Dir::Outbound, RST, 5 * SEC).unwrap(); // CLOSE: 10 s
    assert_eq!(expire_all(&mut t, 15 * SEC - 1), []);
    assert_eq!(expire_all(&mut t, 15 * SEC), [id]);
}

#[test]
fn iter_lists_live_connections() {
    let mut t = table(8);
    let ids: Vec<_> = (1..=5).map(|h| t.insert(&nat(h, 9), 0).unwrap()).collect();
    t.remove(ids[2]).unwrap();
    let listed: Vec<_> = t.iter().map(|(id, c)| (id, c.client())).collect();
    // In slot order, which is not the order of opening (see home_slot).
    let mut want: Vec<_> = [0, 1, 3, 4]
        .iter()
        .map(|&i| (ids[i], client(i as u8 + 1, 9)))
        .collect();
    want.sort_by_key(|(id, _)| id.index());
    assert_eq!(listed, want);
    assert_eq!((t.len(), t.capacity()), (4, 8));
}

#[test]
fn template_id_is_carried() {
    let mut t = table(2);
    let id = t
        .insert(
            &NewConn {
                template: Some(TemplateId(17)),
                ..nat(1, 1)
            },
            0,
        )
        .unwrap();
    assert_eq!(t.get(id).unwrap().template(), Some(TemplateId(17)));
    let other = t.insert(&nat(2, 2), 0).unwrap();
    assert_eq!(t.get(other).unwrap().template(), None);
}

#[test]
fn ipv6_table_works_the_same() {
    let mut t: ConnTable<Ipv6Addr> =
        ConnTable::with_hasher(4, &Timeouts::default(), FlowHasher::with_seed(3)).unwrap();
    let ep = |s: &str, port| Endpoint::new(s.parse::<Ipv6Addr>().unwrap(), port);
    let c = NewConn {
        proto: Proto::Tcp,
        mode: Mode::FullNat,
        client: ep("2001:2::1", 40000),
        vip: ep("2001:2:0:1::100", 443),
        local: ep("2001:2:0:2::2", 6000),
        real: ep("2001:2:0:2::10", 8443),
        service: 0,
        real_server: 0,
        template: None,
    };
    let id = t.insert(&c, 0).unwrap();
    assert_eq!(t.lookup(&c.inbound_key()), Some((id, Dir::Inbound)));
    assert_eq!(t.lookup(&c.outbound_key()), Some((id, Dir::Outbound)));
    assert_eq!(t.get(id).unwrap().client().to_string(), "[2001:2::1]:40000");
    assert_eq!(expire_all(&mut t, 2 * SEC), [id]);
}

/// xorshift64*: a tiny deterministic PRNG for the model test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug)]
struct Model {
    new: NewConn<Ipv4Addr>,
    state: ConnState,
    expiry: u64,
    new_expiry_at_insert: u64,
}

/// Random inserts, packets, lookups, removals and expiries against a HashMap
/// model. Small address and port spaces force key collisions, a small table
/// forces TableFull, short timeouts force expiry and lazy refresh.
#[test]
fn randomised_against_a_model() {
    let timeouts = Timeouts {
        tcp_established: Duration::from_secs(30),
        tcp_syn: Duration::from_secs(4),
        tcp_fin: Duration::from_secs(6),
        tcp_time_wait: Duration::from_secs(5),
        tcp_close: Duration::from_secs(1),
        tcp_close_wait: Duration::from_secs(3),
        tcp_last_ack: Duration::from_secs(2),
        udp: Duration::from_secs(20),
    };
    let table_ms = TimeoutTable::new(&timeouts);
    const MAX: usize = 24;
    let mut t =
        ConnTable::<Ipv4Addr>::with_hasher(MAX, &timeouts, FlowHasher::with_seed(9)).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live: HashMap<ConnId, Model> = HashMap::new();
    let mut dead: Vec<ConnId> = Vec::new();
    let mut now = 1_000_000u64;
    let flag_choices = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, 0];
    // Outcomes seen, so the test proves it exercised every path.
    let mut seen: HashMap<&str, usize> = HashMap::new();

    for step in 0..20_000 {
        now += rng.below(700);
        match rng.below(100) {
            // Insert.
            0..=29 => {
                let mode =
                    [Mode::Nat, Mode::FullNat, Mode::Dr, Mode::Tunnel][rng.below(4) as usize];
                let proto = if rng.below(4) == 0 {
                    Proto::Udp
                } else {
                    Proto::Tcp
                };
                let cl = client(rng.below(12) as u8, 1000 + rng.below(8) as u16);
                let new = conn(mode, proto, cl, 5000 + rng.below(40) as u16);
                let in_clash = live
                    .values()
                    .any(|m| m.new.inbound_key() == new.inbound_key());
                let out_clash = mode.replies_via_us()
                    && live.values().any(|m| {
                        m.new.mode.replies_via_us() && m.new.outbound_key() == new.outbound_key()
                    });
                let want = if live.len() == MAX {
                    Err(ConnError::TableFull)
                } else if in_clash {
                    Err(ConnError::InboundKeyExists)
                } else if out_clash {
                    Err(ConnError::OutboundKeyExists)
                } else {
                    Ok(())
                };
                let got = t.insert(&new, now);
                assert_eq!(got.map(|_| ()), want, "step {step}: insert {new:?}");
                *seen
                    .entry(got.map_or_else(|e| e.reason(), |_| "inserted"))
                    .or_default() += 1;
                if let Ok(id) = got {
                    let state = match proto {
                        Proto::Tcp => ConnState::Tcp(TcpState::None),
                        Proto::Udp => ConnState::Udp,
                    };
                    // Inserted in its initial state, it carries the tick of
                    // its insertion, as its first packet would.
                    let expiry = now.div_ceil(TICK_MS) * TICK_MS + table_ms.ms(state);
                    let m = Model {
                        new,
                        state,
                        expiry,
                        new_expiry_at_insert: expiry,
                    };
                    assert!(live.insert(id, m).is_none());
                }
            }
            // A packet on a live connection.
            30..=64 => {
                let Some((&id, &m)) = live
                    .iter()
                    .nth(rng.below(live.len().max(1) as u64) as usize)
                else {
                    continue;
                };
                let dir = if m.new.mode.replies_via_us() && rng.below(2) == 0 {
                    Dir::Outbound
                } else {
                    Dir::Inbound
                };
                let flags = flag_choices[rng.below(flag_choices.len() as u64) as usize];
                let to = match m.state {
                    ConnState::Tcp(s) => ConnState::Tcp(s.next(tcp_dir(m.new.mode, dir), flags)),
                    ConnState::Udp => ConnState::Udp,
                };
                let change = t.on_packet(id, dir, flags, now).unwrap();
                assert_eq!(change, StateChange { from: m.state, to }, "step {step}");
                let e = live.get_mut(&id).unwrap();
                // A packet that keeps the state stamps its record with the tick
                // (rounded up); a state change sets the exact deadline.
                e.expiry = if to == e.state {
                    now.div_ceil(TICK_MS) * TICK_MS + table_ms.ms(to)
                } else {
                    now + table_ms.ms(to)
                };
                e.state = to;
            }
            // Lookups: both keys of a live connection, and random keys.
            65..=79 => {
                if let Some((&id, m)) = live
                    .iter()
                    .nth(rng.below(live.len().max(1) as u64) as usize)
                {
                    assert_eq!(t.lookup(&m.new.inbound_key()), Some((id, Dir::Inbound)));
                    let out = t.lookup(&m.new.outbound_key());
                    if m.new.mode.replies_via_us() {
                        assert_eq!(out, Some((id, Dir::Outbound)));
                    } else {
                        assert!(out.is_none_or(|(other, _)| other != id));
                    }
                }
                let probe = nat(rng.below(12) as u8, 1000 + rng.below(8) as u16);
                let want = live
                    .iter()
                    .find(|(_, m)| m.new.inbound_key() == probe.inbound_key())
                    .map(|(&id, _)| (id, Dir::Inbound));
                assert_eq!(t.lookup(&probe.inbound_key()), want, "step {step}");
            }
            // Removal of a live or a stale id.
            80..=87 => {
                if rng.below(4) == 0 && !dead.is_empty() {
                    let id = dead[rng.below(dead.len() as u64) as usize];
                    if !live.contains_key(&id) {
                        assert_eq!(t.remove(id), Err(ConnError::UnknownConn));
                        *seen.entry("stale_id").or_default() += 1;
                    }
                } else if let Some(&id) = live
                    .keys()
                    .nth(rng.below(live.len().max(1) as u64) as usize)
                {
                    let m = live.remove(&id).unwrap();
                    let got = t.remove(id).unwrap();
                    assert_eq!((got.state(), got.expiry()), (m.state, m.expiry));
                    dead.push(id);
                }
            }
            // Expiry, sometimes with a small budget.
            _ => {
                let budget = if rng.below(2) == 0 {
                    usize::MAX
                } else {
                    rng.below(4) as usize
                };
                let mut gone = Vec::new();
                let n = t.expire(now, budget, |id, c| gone.push((id, *c)));
                assert_eq!(n, gone.len());
                assert!(n <= budget);
                *seen.entry("expired").or_default() += n;
                for (id, c) in &gone {
                    let m = live
                        .remove(id)
                        .expect("expired a connection the model lacks");
                    if m.expiry > m.new_expiry_at_insert {
                        *seen.entry("expired_after_refresh").or_default() += 1;
                    }
                    assert_eq!((c.state(), c.expiry()), (m.state, m.expiry));
                    // Due, at most one tick late, never early.
                    assert!(m.expiry <= now, "step {step}: expired early");
                    dead.push(*id);
                }
                if budget == usize::MAX {
                    for (id, m) in &live {
                        assert!(
                            m.expiry.div_ceil(TICK_MS) * TICK_MS > now,
                            "step {step}: {id:?} due at {} still live at {now}",
                            m.expiry
                        );
                    }
                }
            }
        }
        assert_eq!(t.len(), live.len(), "step {step}");
        if step % 500 == 0 {
            let mut listed: Vec<_> = t
                .iter()
                .map(|(id, c)| (id, c.state(), c.expiry()))
                .collect();
            let mut want: Vec<_> = live
                .iter()
                .map(|(&id, m)| (id, m.state, m.expiry))
                .collect();
            listed.sort_by_key(|x| x.0.index());
            want.sort_by_key(|x| x.0.index());
            assert_eq!(listed, want, "step {step}");
            let keys: usize = live
                .values()
                .map(|m| 1 + usize::from(m.new.mode.replies_via_us()))
                .sum();
            assert_eq!(t.records.len(), keys);
        }
    }
    for outcome in [
        "inserted",
        "conn_table_full",
        "conn_inbound_key_exists",
        "conn_outbound_key_exists",
        "expired",
        "expired_after_refresh",
        "stale_id",
    ] {
        assert!(
            seen.get(outcome).copied().unwrap_or(0) > 10,
            "{outcome}: {seen:?}"
        );
    }
    // Drain: everything goes eventually.
    now += 3_600_000;
    expire_all(&mut t, now);
    assert!(t.is_empty());
    assert_eq!(t.records.len(), 0);
    assert_eq!(t.wheel.armed(), 0);
}
