//! The SYN proxy through the pipeline: the cookie's SYN-ACK, nothing kept for a
//! SYN, forged ACKs refused, the server's handshake with the client's options,
//! data held until the server answers, translation afterwards, and the resets
//! of a server that refuses or never answers.

use super::*;
use crate::forward::segment::{self, Segment, SynOptions, MAX_OPTIONS};
use crate::packet::{ethernet, EtherType, TcpPacket};
use crate::pipeline::{Balancer, Dataplane};
use std::net::SocketAddr;

fn sp_config(mode: &str, proxy_protocol: &str) -> String {
    let pp = if proxy_protocol.is_empty() {
        String::new()
    } else {
        format!("    proxy_protocol: {proxy_protocol}\n")
    };
    let locals = |a: &str| {
        if mode == "fullnat" {
            format!("    local_addresses: [\"{a}\"]\n")
        } else {
            String::new()
        }
    };
    fixture::appliance_with(
        1,
        true,
        &format!(
            r#"neighbors:
  - {{ ip: "198.19.0.10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "198.18.0.10", mac: "02:00:00:00:00:10" }}
  - {{ ip: "2001:2:0:19::10", mac: "02:00:00:00:01:10" }}
  - {{ ip: "2001:2::10", mac: "02:00:00:00:00:10" }}
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: {mode}
    scheduler: rr
    syn_proxy: true
{pp}{l4}    real_servers:
      - {{ address: 198.19.0.10, port: 8080 }}
  - name: web6
    vip: "2001:2::100"
    port: 80
    protocol: tcp
    mode: {mode}
    scheduler: rr
    syn_proxy: true
{pp}{l6}    real_servers:
      - {{ address: "2001:2:0:19::10", port: 8080 }}
"#,
            l4 = locals("198.19.0.2"),
            l6 = locals("2001:2:0:19::2"),
        ),
    )
}

const RS_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 0x10]);
const CLIENT_ISN: u32 = 7000;
const SERVER_ISN: u32 = 900_000;

/// A TCP frame with options, from `l2.src` to us.
#[allow(clippy::too_many_arguments)]
fn frame(
    from: MacAddr,
    to: MacAddr,
    src: SocketAddr,
    dst: SocketAddr,
    flags: TcpFlags,
    (seq, ack): (u32, u32),
    options: SynOptions,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut o = [0u8; MAX_OPTIONS];
    let n = options.write(&mut o);
    let seg = Segment {
        src: (src.ip(), src.port()),
        dst: (dst.ip(), dst.port()),
        seq,
        ack,
        flags,
        window,
        options: &o[..n],
        payload,
    };
    let mut f = vec![0u8; segment::frame_len(&seg)];
    segment::emit(&mut f, 14, &seg).unwrap();
    let t = if src.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    ethernet::emit_header(&mut f, to, from, t).unwrap();
    f
}

/// What a test reads of a segment ferrovs sent (checksums checked).
#[derive(Debug)]
struct Out {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    options: SynOptions,
    payload: Vec<u8>,
}

fn out_of(frame: &VecBuf) -> Out {
    let data = frame.data();
    let info = parse_frame(data, false).expect("valid frame");
    let L3Info::Ip(ip) = info.l3 else {
        panic!("not IP")
    };
    let l4 = usize::from(ip.l4.unwrap().offset);
    assert!(
        craft::l4_checksum_ok(&ip.addrs, ip.protocol, &data[l4..info.l3_end()]),
        "TCP checksum"
    );
    let t = TcpPacket::new_checked(&data[l4..info.l3_end()]).unwrap();
    let (sp, dp) = ip.ports().unwrap();
    Out {
        src: SocketAddr::new(ip.addrs.src(), sp),
        dst: SocketAddr::new(ip.addrs.dst(), dp),
        seq: t.seq_number(),
        ack: t.ack_number(),
        flags: t.flags(),
        window: t.window(),
        options: SynOptions::parse(t.options()),
        payload: t.payload().to_vec(),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const LINUX_SYN: SynOptions = SynOptions {
    mss: Some(1460),
    wscale: Some(9),
    sack: true,
    ts: Some((111, 0)),
};

/// The client's SYN and ferrovs's answer: returns the cookie and the TSval.
fn handshake_with_client(h: &mut Harness, client: SocketAddr, vip: SocketAddr) -> (u32, u32) {
    let before = h.p.lb.len();
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::SYN,
            (CLIENT_ISN, 0),
            LINUX_SYN,
            64240,
            b"",
        ),
        0,
    );
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1, "a SYN-ACK");
    let sa = out_of(&out[0]);
    assert_eq!((sa.src, sa.dst), (vip, client));
    assert_eq!(sa.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(sa.ack, CLIENT_ISN + 1);
    assert_eq!(sa.options.wscale, Some(7), "ferrovs scales by 7");
    assert!(sa.options.sack);
    let (tsval, ecr) = sa.options.ts.expect("timestamps");
    assert_eq!(ecr, 111);
    assert_eq!(
        tsval & 0x3f,
        9 | 0x10,
        "wscale 9 and SACK in the TSval's low bits"
    );
    assert!(sa.options.mss.is_some());
    assert_eq!(h.p.lb.len(), before, "nothing kept for a SYN");
    (sa.seq, tsval)
}

/// A whole proxied connection from `client` to `vip`; returns the Proxy
/// Protocol header the server got, if any.
fn run(mode: &str, pp: &str, client: &str, vip: &str) -> Vec<u8> {
    let mut h = harness_with(&sp_config(mode, pp));
    let (client, vip) = (sa(client), sa(vip));
    let (cookie, tsval) = handshake_with_client(&mut h, client, vip);
    assert_eq!(h.stats.syn_cookies_sent.get(), 1);
    // Forged: a wrong cookie, a wrong sequence number.
    for (seq, ack) in [
        (CLIENT_ISN + 1, cookie.wrapping_add(2)),
        (CLIENT_ISN + 5, cookie + 1),
    ] {
        let f = frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::ACK,
            (seq, ack),
            SynOptions::default(),
            502,
            b"",
        );
        h.rx(f, 0);
    }
    assert!(h.take_tx(0).is_empty() && h.take_tx(1).is_empty());
    assert_eq!(h.dropped(DropReason::SynCookieInvalid), 2);
    assert_eq!(h.p.lb.len(), 0);
    // The client's ACK, with its first data: the server gets a SYN with the
    // client's options; the data waits.
    let ts = |val: u32, ecr: u32| SynOptions {
        ts: Some((val, ecr)),
        ..SynOptions::default()
    };
    let request = b"GET / HTTP/1.0\r\n\r\n";
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::ACK | TcpFlags::PSH,
            (CLIENT_ISN + 1, cookie + 1),
            ts(112, tsval),
            502,
            request,
        ),
        0,
    );
    assert_eq!(h.stats.syn_cookies_validated.get(), 1);
    assert_eq!(h.p.lb.len(), 1);
    let out = h.take_tx(1);
    assert_eq!(out.len(), 1, "only the SYN");
    let syn = out_of(&out[0]);
    assert_eq!(syn.flags, TcpFlags::SYN);
    assert_eq!(syn.seq, CLIENT_ISN);
    assert_eq!(
        syn.options,
        SynOptions {
            mss: Some(1460),
            wscale: Some(9),
            sack: true,
            ts: Some((112, 0))
        },
        "the client's options"
    );
    let (server, seen_client) = (syn.dst, syn.src);
    assert_eq!(server.port(), 8080);
    // The client sends its data again before the server answered: the SYN
    // goes again, the data is not held twice.
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::ACK | TcpFlags::PSH,
            (CLIENT_ISN + 1, cookie + 1),
            ts(113, tsval),
            502,
            request,
        ),
        0,
    );
    let again = h.take_tx(1);
    assert_eq!(again.len(), 1);
    assert_eq!(out_of(&again[0]).flags, TcpFlags::SYN);
    // The server's SYN-ACK: ferrovs completes its handshake and sends the
    // held data; the client hears nothing of it.
    h.rx(
        frame(
            RS_MAC,
            LAN_MAC,
            server,
            seen_client,
            TcpFlags::SYN | TcpFlags::ACK,
            (SERVER_ISN, CLIENT_ISN + 1),
            SynOptions {
                mss: Some(1400),
                wscale: Some(6),
                sack: true,
                ts: Some((5000, 112)),
            },
            65160,
            b"",
        ),
        1,
    );
    assert!(h.take_tx(0).is_empty());
    let out = h.take_tx(1);
    let with_header = !pp.is_empty();
    assert_eq!(out.len(), if with_header { 3 } else { 2 });
    let ack = out_of(&out[0]);
    assert_eq!((ack.src, ack.dst), (seen_client, server));
    assert_eq!(ack.flags, TcpFlags::ACK);
    assert_eq!((ack.seq, ack.ack), (CLIENT_ISN + 1, SERVER_ISN + 1));
    assert_eq!(ack.options.ts, Some((112, 5000)));
    let (header, data) = if with_header {
        (out_of(&out[1]).payload, out_of(&out[2]))
    } else {
        (Vec::new(), out_of(&out[1]))
    };
    let shift = header.len() as u32;
    assert_eq!(data.payload, request);
    assert_eq!(
        (data.seq, data.ack),
        (CLIENT_ISN + 1 + shift, SERVER_ISN + 1)
    );
    assert_eq!(
        data.options.ts,
        Some((112, 5000)),
        "TSecr in the server's clock"
    );
    // The server's answer reaches the client in ferrovs's numbers.
    let req = request.len() as u32;
    h.rx(
        frame(
            RS_MAC,
            LAN_MAC,
            server,
            seen_client,
            TcpFlags::ACK | TcpFlags::PSH,
            (SERVER_ISN + 1, CLIENT_ISN + 1 + shift + req),
            ts(5007, 112),
            100,
            b"HTTP/1.0 200 OK\r\n",
        ),
        1,
    );
    let out = h.take_tx(0);
    assert_eq!(out.len(), 1);
    let answer = out_of(&out[0]);
    assert_eq!((answer.src, answer.dst), (vip, client));
    assert_eq!((answer.seq, answer.ack), (cookie + 1, CLIENT_ISN + 1 + req));
    // A router on the client's side refuses that segment: the server learns of
    // it quoting the segment in its own numbers.
    let quoted = out[0].data().to_vec();
    let router = match client.ip() {
        IpAddr::V4(_) => "198.18.0.254".parse().unwrap(),
        IpAddr::V6(_) => "2001:2::fe".parse().unwrap(),
    };
    let mut err = vec![0u8; 14 + 600];
    let n = match router {
        IpAddr::V4(r) => crate::packet::icmp::emit_error(
            &mut err[14..],
            crate::packet::icmp::IcmpError::FragmentationNeeded { next_hop_mtu: 1280 },
            r,
            &quoted[14..],
        )
        .unwrap(),
        IpAddr::V6(r) => {
            crate::packet::icmpv6::emit_packet_too_big(&mut err[14..], r, &quoted[14..], 1280)
                .unwrap()
        }
    };
    err.truncate(14 + n);
    let ethertype = if router.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    ethernet::emit_header(&mut err, OUR_MAC, CLIENT_MAC, ethertype).unwrap();
    h.rx(err, 0);
    let out_err = h.take_tx(1);
    assert_eq!(out_err.len(), 1, "the error reaches the server");
    let (seq_at, ack_at) = {
        let (outer, inner) = if router.is_ipv4() { (20, 20) } else { (40, 40) };
        let at = 14 + outer + 8 + inner;
        (at + 4, at + 8)
    };
    let f = out_err[0].data();
    let word = |at: usize| u32::from_be_bytes(f[at..at + 4].try_into().unwrap());
    assert_eq!(
        (word(seq_at), word(ack_at)),
        (SERVER_ISN + 1, CLIENT_ISN + 1 + shift + req),
        "the server's own numbers"
    );
    assert_eq!(answer.options.ts, Some((tsval + 7, 112)));
    assert_eq!(
        answer.window,
        100 << 6 >> 7,
        "from the server's scale to ours"
    );
    // And the client's acknowledgement of it goes back in the server's.
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::ACK,
            (CLIENT_ISN + 1 + req, cookie + 1 + 17),
            ts(120, tsval + 7),
            502,
            b"",
        ),
        0,
    );
    let out = h.take_tx(1);
    assert_eq!(out.len(), 1);
    let a = out_of(&out[0]);
    assert_eq!(
        (a.seq, a.ack),
        (CLIENT_ISN + 1 + req + shift, SERVER_ISN + 1 + 17)
    );
    assert_eq!(a.options.ts, Some((120, 5007)));
    assert_eq!(h.dropped(DropReason::SynProxyHoldFull), 0);
    header
}

#[test]
fn nat_ipv4_proxies_the_handshake_and_holds_the_first_data() {
    run("nat", "", "198.18.0.10:40000", "198.18.0.100:80");
}

#[test]
fn fullnat_ipv6_proxies_the_handshake_and_holds_the_first_data() {
    run("fullnat", "", "[2001:2::10]:40000", "[2001:2::100]:80");
}

#[test]
fn syn_proxy_and_proxy_protocol_work_together() {
    let header = run("fullnat", "v1", "198.18.0.10:40000", "198.18.0.100:80");
    assert_eq!(header, b"PROXY TCP4 198.18.0.10 198.18.0.100 40000 80\r\n");
    let header = run("nat", "v2", "[2001:2::10]:40000", "[2001:2::100]:80");
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
}

/// Opens a proxied connection up to ferrovs's SYN to the server; returns the
/// cookie and the server's view (server, client as seen).
fn open(h: &mut Harness, client: SocketAddr, vip: SocketAddr) -> (u32, SocketAddr, SocketAddr) {
    let (cookie, tsval) = handshake_with_client(h, client, vip);
    let opts = SynOptions {
        ts: Some((112, tsval)),
        ..SynOptions::default()
    };
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::ACK,
            (CLIENT_ISN + 1, cookie + 1),
            opts,
            502,
            b"",
        ),
        0,
    );
    let syn = out_of(&h.take_tx(1)[0]);
    assert_eq!(syn.flags, TcpFlags::SYN);
    (cookie, syn.dst, syn.src)
}

#[test]
fn a_server_that_refuses_or_never_answers_gets_the_client_a_reset() {
    for (client, vip) in [
        ("198.18.0.10:40001", "198.18.0.100:80"),
        ("[2001:2::10]:40001", "[2001:2::100]:80"),
    ] {
        let (client, vip) = (sa(client), sa(vip));
        let mut h = harness_with(&sp_config("nat", ""));
        let (cookie, server, seen) = open(&mut h, client, vip);
        h.rx(
            frame(
                RS_MAC,
                LAN_MAC,
                server,
                seen,
                TcpFlags::RST | TcpFlags::ACK,
                (0, CLIENT_ISN + 1),
                SynOptions::default(),
                0,
                b"",
            ),
            1,
        );
        let out = h.take_tx(0);
        assert_eq!(out.len(), 1);
        let rst = out_of(&out[0]);
        assert_eq!((rst.src, rst.dst), (vip, client));
        assert!(rst.flags.contains(TcpFlags::RST));
        assert_eq!((rst.seq, rst.ack), (cookie + 1, CLIENT_ISN + 1));
        assert_eq!(h.stats.syn_proxy_resets.get(), 1);
        // Never answered: at the SYN timeout.
        let mut h = harness_with(&sp_config("fullnat", ""));
        let (cookie, _, _) = open(&mut h, client, vip);
        h.p.set_time(59_000);
        h.p.expire_connections();
        assert!(h.take_tx(0).is_empty());
        h.p.set_time(61_000);
        h.p.expire_connections();
        assert_eq!(h.p.lb.len(), 0);
        let out = h.take_tx(0);
        assert_eq!(out.len(), 1);
        let rst = out_of(&out[0]);
        assert_eq!((rst.src, rst.dst), (vip, client));
        assert_eq!((rst.seq, rst.ack), (cookie + 1, CLIENT_ISN + 1));
        assert!(rst.flags.contains(TcpFlags::RST));
    }
}

#[test]
fn a_flood_of_spoofed_syns_leaves_the_table_empty_and_cookies_expire() {
    let mut h = harness_with(&sp_config("nat", ""));
    let vip = sa("198.18.0.100:80");
    for i in 0..500u32 {
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0xc612_0000 + 10 + (i % 80))),
            1024 + i as u16,
        );
        h.rx(
            frame(
                CLIENT_MAC,
                OUR_MAC,
                client,
                vip,
                TcpFlags::SYN,
                (i * 7919, 0),
                SynOptions::default(),
                1024,
                b"",
            ),
            0,
        );
    }
    h.take_tx(0);
    assert_eq!(h.p.lb.len(), 0);
    assert_eq!(h.stats.syn_cookies_sent.get(), 500);
    // A cookie answered too late (two minutes) is refused.
    let client = sa("198.18.0.10:40002");
    let (cookie, _) = handshake_with_client(&mut h, client, vip);
    h.p.set_time(2 * 60_000 + 1);
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::ACK,
            (CLIENT_ISN + 1, cookie + 1),
            SynOptions::default(),
            502,
            b"",
        ),
        0,
    );
    assert_eq!(h.dropped(DropReason::SynCookieInvalid), 1);
    assert_eq!(h.p.lb.len(), 0);
    // Without timestamps the client keeps only its MSS.
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::SYN,
            (CLIENT_ISN, 0),
            SynOptions {
                mss: Some(1300),
                wscale: Some(9),
                sack: true,
                ts: None,
            },
            1024,
            b"",
        ),
        0,
    );
    let sa2 = out_of(&h.take_tx(0)[0]);
    assert_eq!(
        (sa2.options.wscale, sa2.options.sack, sa2.options.ts),
        (None, false, None)
    );
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::ACK,
            (CLIENT_ISN + 1, sa2.seq + 1),
            SynOptions::default(),
            1024,
            b"",
        ),
        0,
    );
    let syn = out_of(&h.take_tx(1)[0]);
    assert_eq!(
        syn.options,
        SynOptions {
            mss: Some(1300),
            ..SynOptions::default()
        }
    );
}

#[test]
fn rotated_keys_accept_the_previous_cookie_only() {
    use crate::forward::syncookie::{CookieKeys, CookieSecret};
    let mut h = harness_with(&sp_config("nat", ""));
    let vip = sa("198.18.0.100:80");
    let client = sa("198.18.0.10:40003");
    let (cookie, _) = handshake_with_client(&mut h, client, vip);
    let keys = h.p.syn_keys();
    let once = keys.rotated(CookieSecret::from_words(1, 2));
    h.p.apply(WorkerCommand::CookieKeys(
        once.rotated(CookieSecret::from_words(3, 4)),
    ));
    let ack = frame(
        CLIENT_MAC,
        OUR_MAC,
        client,
        vip,
        TcpFlags::ACK,
        (CLIENT_ISN + 1, cookie + 1),
        SynOptions::default(),
        502,
        b"",
    );
    h.rx(ack.clone(), 0);
    assert_eq!(
        h.dropped(DropReason::SynCookieInvalid),
        1,
        "two rotations ago"
    );
    h.p.apply(WorkerCommand::CookieKeys(once));
    h.rx(ack, 0);
    assert_eq!(h.p.lb.len(), 1, "the previous key");
    let _: CookieKeys = keys;
}

#[test]
fn unanswered_syns_above_the_threshold_switch_the_proxy_on_and_off() {
    let text = sp_config("nat", "").replace("    syn_proxy: true\n", "")
        + "connections: { syn_proxy_above: 100 }\n";
    let cfg = fixture::parse(&text);
    assert_eq!(cfg.connections.syn_proxy_above, 100);
    let dp = Arc::new(Dataplane::from_config(&cfg, &[OUR_MAC, LAN_MAC]));
    let stats = Arc::new(WorkerStats::new(dp.services.real_server_slots()));
    let mut limits = BalancerLimits::for_config(cfg.connections.max as usize, 1, &dp.services);
    // As `runtime` allocates them with `syn_proxy_above`.
    limits.translation = true;
    let lb = Balancer::new(
        &dp.services,
        limits,
        &crate::conn::Timeouts::default(),
        0,
        1,
    )
    .unwrap();
    let (tx, rx) = bounded(64);
    let mut h = Harness {
        p: Pipeline::new(0, 1, dp, lb, TestPool, stats.clone(), tx, 32),
        events: rx,
        stats,
    };
    let vip = sa("198.18.0.100:80");
    let syn = |i: u32| {
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc612_000a)), 2000 + i as u16);
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::SYN,
            (i, 0),
            LINUX_SYN,
            1024,
            b"",
        )
    };
    // 150 SYNs in the first second, none answered: connections, then the switch.
    for i in 0..150 {
        h.rx(syn(i), 0);
    }
    assert_eq!(h.p.lb.len(), 150);
    h.p.set_time(1000);
    h.p.expire_connections();
    assert_eq!(h.stats.syn_proxy_auto.get(), 1);
    h.take_tx(0);
    h.take_tx(1);
    for i in 150..300 {
        h.rx(syn(i), 0);
    }
    assert_eq!(h.p.lb.len(), 150, "answered with cookies");
    assert_eq!(h.stats.syn_cookies_sent.get(), 150);
    assert_eq!(h.take_tx(0).len(), 150, "SYN-ACKs");
    assert!(h.take_tx(1).is_empty(), "nothing for the server");
    // A client that completes the handshake is served through the proxy.
    let client = sa("198.18.0.10:5000");
    let (cookie, tsval) = handshake_with_client(&mut h, client, vip);
    let ack = SynOptions {
        ts: Some((112, tsval)),
        ..SynOptions::default()
    };
    h.rx(
        frame(
            CLIENT_MAC,
            OUR_MAC,
            client,
            vip,
            TcpFlags::ACK,
            (CLIENT_ISN + 1, cookie + 1),
            ack,
            502,
            b"",
        ),
        0,
    );
    assert_eq!(h.p.lb.len(), 151);
    assert_eq!(out_of(&h.take_tx(1)[0]).flags, TcpFlags::SYN);
    // The next second still floods; the one after is quiet: off again.
    h.p.set_time(2000);
    h.p.expire_connections();
    assert_eq!(h.stats.syn_proxy_auto.get(), 1);
    h.p.set_time(3000);
    h.p.expire_connections();
    assert_eq!(h.stats.syn_proxy_auto.get(), 0);
    h.rx(syn(1000), 0);
    assert_eq!(h.p.lb.len(), 152, "a connection for a SYN again");
}
