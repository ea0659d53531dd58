"""A catalogue of hostile and malformed frames, sent from the client's side of the
WAN link one kind at a time.

Usage: hostile.py IFACE OUR_MAC FERROVS_MAC LIVE_SPORT COPIES

For each kind it sends COPIES frames, prints "SENT <kind> <reason> <copies>" and
waits for a line on stdin before the next kind, so that the test can read the drop
counters in between. Every frame carries the marker b"HOSTILE-FRAME" in its
payload (or in the quoted packet of an ICMP error), so a capture on the real
servers can prove that none of them got through. LIVE_SPORT is the client port of
a TCP connection to the IPv4 VIP that is open while the catalogue runs: the ICMP
errors quote it. Ends with "DONE".

Not here, and covered by the pipeline's unit tests instead: IP fragments (the
kernel holds them back from DPDK's af_packet PMD, which asks for defragmentation
in its fanout group: a lone fragment never reaches ferrovs) and frames shorter than
an Ethernet header (a packet socket cannot send them).
"""
import os
import struct
import sys

from scapy.all import (  # noqa: E402
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    Dot1Q,
    Ether,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    Raw,
    conf,
    sendp,
)

iface, our_mac, lb_mac, live_sport, copies = sys.argv[1:6]
live_sport, copies = int(live_sport), int(copies)
conf.verb = 0

CLIENT, LB, VIP, LAN_HOST = "198.18.0.10", "198.18.0.1", "198.18.0.100", "198.19.0.77"
CLIENT6, LB6, VIP6 = "2001:db8:18::10", "2001:db8:18::1", "2001:db8:18::100"
MARK = b"HOSTILE-FRAME"


def eth(dst=None, etype=None):
    e = Ether(src=our_mac, dst=dst or lb_mac)
    if etype is not None:
        e.type = etype
    return e


def syn4(src=CLIENT, dst=VIP, dport=80, sport=40000, tcp="S", **ip):
    return IP(src=src, dst=dst, id=0xBAD1, **ip) / TCP(sport=sport, dport=dport, flags=tcp, seq=1000) / MARK


def syn6(src=CLIENT6, dst=VIP6, dport=80, sport=40000):
    return IPv6(src=src, dst=dst, fl=0xBAD1) / TCP(sport=sport, dport=dport, flags="S", seq=1000) / MARK


def raw4(header_tweak):
    """An IPv4 SYN to the VIP whose header bytes `header_tweak` edits."""
    b = bytearray(bytes(syn4()))
    header_tweak(b)
    return eth(etype=0x0800) / Raw(bytes(b))


def with_checksum(b, ihl=20):
    b[10:12] = b"\x00\x00"
    s = sum(struct.unpack("!%dH" % (ihl // 2), bytes(b[:ihl])))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    b[10:12] = struct.pack("!H", ~s & 0xFFFF)


def syn4_options(options):
    """An IPv4 SYN to the VIP with `options` (raw bytes, padded) in its header."""
    p = bytes(syn4())
    options = options + b"\x00" * (-len(options) % 4)
    b = bytearray(p[:20] + options + p[20:])
    b[0] = 0x40 | ((20 + len(options)) // 4)
    b[2:4] = struct.pack("!H", len(b))
    with_checksum(b, 20 + len(options))
    return eth(etype=0x0800) / Raw(bytes(b))


def set_total_length(b, n):
    b[2:4] = struct.pack("!H", n)
    with_checksum(b)


def live_quote():
    """The reply direction of the live connection, as an ICMP error quotes it."""
    return bytes(IP(src=VIP, dst=CLIENT, id=0xBAD1) / TCP(sport=80, dport=live_sport, flags="A", seq=1) / MARK)


def icmp_error(outer_src=CLIENT, outer_dst=VIP, bad_checksum=False):
    p = IP(src=outer_src, dst=outer_dst) / ICMP(type=3, code=3) / Raw(live_quote())
    if bad_checksum:
        p[ICMP].chksum = 0x1234
    return eth() / p


def ext_chain(n):
    p = IPv6(src=CLIENT6, dst=VIP6)
    for _ in range(n):
        p = p / IPv6ExtHdrDestOpt()
    return eth() / p / TCP(sport=40000, dport=80, flags="S") / MARK


# (kind, drop reason, frame)
CATALOGUE = [
    # Ethernet and VLAN
    ("unknown_ethertype", "unknown_ethertype", eth(etype=0x88B5) / Raw(MARK)),
    ("vlan_tag_not_configured", "vlan_not_configured", eth() / Dot1Q(vlan=100) / syn4()),
    ("foreign_unicast_mac", "foreign_mac", eth(dst="02:de:ad:be:ef:01") / syn4()),
    ("unicast_ip_in_broadcast_frame", "l2_broadcast_unicast_ip", eth(dst="ff:ff:ff:ff:ff:ff") / syn4()),
    ("unicast_ip_in_multicast_frame", "l2_broadcast_unicast_ip", eth(dst="01:00:5e:00:00:05") / syn4()),
    # ARP
    ("truncated_arp", "truncated_arp", eth(etype=0x0806) / Raw(b"\x00\x01\x08\x00\x06")),
    ("arp_with_ieee802_hardware", "unsupported_arp", eth() / ARP(hwtype=6, psrc=CLIENT, pdst=LB) / Raw(MARK)),
    ("arp_for_a_foreign_address", "arp_not_for_us", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT, pdst="198.18.0.77") / Raw(MARK)),
    # IPv4 header
    ("truncated_ipv4", "truncated_ipv4", eth(etype=0x0800) / Raw(b"\x45\x00\x00")),
    ("ipv4_version_6_inside", "ip_version_mismatch", raw4(lambda b: b.__setitem__(0, 0x65))),
    ("ipv4_ihl_below_5", "bad_ihl", raw4(lambda b: b.__setitem__(0, 0x44))),
    ("ipv4_total_length_past_the_frame", "bad_total_length", raw4(lambda b: set_total_length(b, 1400))),
    ("ipv4_bad_header_checksum", "bad_ipv4_checksum", raw4(lambda b: b.__setitem__(10, b[10] ^ 0xFF))),
    ("ipv4_option_of_length_0", "bad_ipv4_options", syn4_options(b"\x07\x00\x00\x00")),
    ("ipv4_option_past_the_header", "bad_ipv4_options", syn4_options(b"\x07\x09\x04\x00")),
    ("ipv4_loose_source_route", "ipv4_source_route", syn4_options(b"\x83\x07\x04\xc6\x12\x00\x01")),
    ("ipv4_strict_source_route", "ipv4_source_route", syn4_options(b"\x89\x07\x04\xc6\x12\x00\x01")),
    # IPv6 header and extension headers
    ("truncated_ipv6", "truncated_ipv6", eth(etype=0x86DD) / Raw(b"\x60\x00\x00\x00\x00\x14\x06\x40")),
    ("ipv6_version_4_inside", "ip_version_mismatch", eth(etype=0x86DD) / Raw(bytes(syn4()) + b"\x00" * 20)),
    ("ipv6_routing_header_type_0", "ipv6_routing_header_type0", eth() / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrRouting(type=0, segleft=1, addresses=["2001:db8:18::99"]) / TCP(sport=40000, dport=80, flags="S") / MARK),
    ("ipv6_segment_routing_to_the_vip", "ipv6_source_route", eth() / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrSegmentRouting(addresses=["2001:db8:18::99"], segleft=1) / TCP(sport=40000, dport=80, flags="S") / MARK),
    ("ipv6_two_routing_headers", "bad_ipv6_extension_header", eth() / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrRouting(type=2, segleft=0, addresses=["2001:db8:18::99"]) / IPv6ExtHdrRouting(type=2, segleft=0, addresses=["2001:db8:18::98"]) / TCP(sport=40000, dport=80, flags="S") / MARK),
    ("ipv6_nine_extension_headers", "too_many_ipv6_extension_headers", ext_chain(9)),
    # L4 headers
    ("tcp_header_cut_short", "truncated_l4", raw4(lambda b: (set_total_length(b, 30), None))),
    ("tcp_data_offset_below_5", "bad_tcp_offset", eth() / IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=80, flags="S", dataofs=2) / MARK),
    ("udp_length_past_the_packet", "bad_udp_length", eth() / IP(src=CLIENT, dst=VIP) / UDP(sport=40000, dport=80, len=600) / MARK),
    # Martian and own sources
    ("source_loopback", "martian_source", eth() / syn4(src="127.0.0.1")),
    ("source_unspecified", "martian_source", eth() / syn4(src="0.0.0.0")),
    ("source_multicast", "martian_source", eth() / syn4(src="224.0.0.5")),
    ("source_limited_broadcast", "martian_source", eth() / syn4(src="255.255.255.255")),
    ("source_subnet_broadcast", "martian_source", eth() / syn4(src="198.18.0.255")),
    ("source_class_e", "martian_source", eth() / syn4(src="240.0.0.1")),
    ("source_ipv6_multicast", "martian_source", eth() / syn6(src="ff02::1")),
    ("source_ipv6_loopback", "martian_source", eth() / syn6(src="::1")),
    ("source_ipv4_mapped", "martian_source", eth() / syn6(src="::ffff:198.18.0.10")),
    ("land_source_is_the_vip", "own_source", eth() / syn4(src=VIP)),
    ("source_is_ferrovs", "own_source", eth() / syn4(src=LB)),
    ("land_source_is_the_ipv6_vip", "own_source", eth() / syn6(src=VIP6)),
    ("source_from_the_servers_subnet", "rp_filter", eth() / syn4(src=LAN_HOST)),
    # ICMP errors about the live connection
    ("icmp_error_bad_checksum", "bad_icmp_checksum", icmp_error(bad_checksum=True)),
    ("icmp_error_to_another_address", "icmp_error_bad_destination", icmp_error(outer_dst="198.18.0.101")),
    ("icmp_error_from_the_vip", "own_source", icmp_error(outer_src=VIP)),
    # Load balancing
    ("syn_fin", "bad_tcp_flags", eth() / syn4(tcp="SF")),
    ("ack_without_connection", "tcp_no_connection", eth() / syn4(tcp="A", sport=40001)),
    ("syn_to_a_port_without_service", "no_service", eth() / syn4(dport=81)),
    ("udp_to_a_tcp_service", "no_service", eth() / IP(src=CLIENT, dst=VIP, id=0xBAD1) / UDP(sport=40000, dport=80) / MARK),
    ("syn_larger_than_the_server_mtu", "mtu_exceeded", eth() / IP(src=CLIENT, dst=VIP, id=0xBAD1, flags="DF") / TCP(sport=40002, dport=80, flags="S") / Raw(MARK * 110)),
    ("tcp_to_a_foreign_address", "no_connection", eth() / syn4(dst="198.18.0.77")),
    ("ping_to_a_foreign_address", "not_for_us", eth() / IP(src=CLIENT, dst="198.18.0.77", id=0xBAD1) / ICMP() / MARK),
    ("neighbor_solicit_with_hop_limit_254", "bad_neighbor_discovery", eth() / IPv6(src=CLIENT6, dst=LB6, hlim=254) / ICMPv6ND_NS(tgt=LB6) / Raw(MARK)),
]

# HOSTILE_KINDS=a,b runs only those kinds (to look at one closely).
only = [k for k in os.environ.get("HOSTILE_KINDS", "").split(",") if k]
for kind, reason, frame in CATALOGUE:
    if only and kind not in only:
        continue
    sendp([frame] * copies, iface=iface)
    print("SENT", kind, reason, copies, flush=True)
    if not sys.stdin.readline():
        break
print("DONE", flush=True)
