"""A userspace 802.1Q bridge for one VLAN, standing in for `ip link add ... type
vlan` on kernels without the 8021q module.

It opens a TAP interface (the client's IP stack, untagged) and an AF_PACKET socket
on the veth towards ferrovs (tagged):

  TAP -> veth: the 802.1Q tag (VLAN id, priority 0) is inserted after the MAC
               addresses;
  veth -> TAP: the kernel has moved the tag into packet metadata, which
               PACKET_AUXDATA hands over (tp_status & TP_STATUS_VLAN_VALID,
               tp_vlan_tci); only frames of this VLAN reach the TAP, untagged.
               A frame that still carries its tag in the data (no tag offload on
               the veth) is untagged here.

Usage: vlan_bridge.py TAP VETH VID   (prints "ready" once both are open)
Standard library only (Debian's /usr/bin/python3).
"""

import fcntl
import os
import select
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 1 << 4
PACKET_OUTGOING = 4
TPID = 0x8100
# struct tpacket_auxdata: tp_status, tp_len, tp_snaplen (u32), tp_mac, tp_net,
# tp_vlan_tci, tp_vlan_tpid (u16).
AUXDATA = struct.Struct("=IIIHHHH")


def main():
    tap_name, veth, vid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tap = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tap, TUNSETIFF, struct.pack("16sH", tap_name.encode(), IFF_TAP | IFF_NO_PI))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.bind((veth, 0))
    tag = struct.pack("!HH", TPID, vid & 0x0FFF)
    print("ready", flush=True)
    stats = {"to_vlan": 0, "from_vlan": 0, "other_vlan": 0}
    while True:
        readable, _, _ = select.select([tap, sock], [], [])
        if tap in readable:
            frame = os.read(tap, 65536)
            if len(frame) >= 14:
                sock.send(frame[:12] + tag + frame[12:])
                stats["to_vlan"] += 1
        if sock in readable:
            frame, ancdata, _, addr = sock.recvmsg(65536, socket.CMSG_SPACE(AUXDATA.size))
            if addr[2] == PACKET_OUTGOING or len(frame) < 14:
                continue
            tci = None
            for level, kind, data in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, _, _, _, _, vlan_tci, _ = AUXDATA.unpack(data[: AUXDATA.size])
                    if status & TP_STATUS_VLAN_VALID:
                        tci = vlan_tci
            if tci is None and struct.unpack("!H", frame[12:14])[0] == TPID and len(frame) >= 18:
                tci = struct.unpack("!H", frame[14:16])[0]
                frame = frame[:12] + frame[16:]
            if tci is not None and tci & 0x0FFF == vid:
                try:
                    os.write(tap, frame)
                    stats["from_vlan"] += 1
                except OSError:
                    # The TAP is not up yet (EIO): the frame is lost, as on a
                    # link that is down.
                    pass
            else:
                stats["other_vlan"] += 1


if __name__ == "__main__":
    main()
