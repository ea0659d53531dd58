"""Sets a bond member's kernel interface down and up while ferrovs sends, and
measures how long the bond takes to send through the other member.

Runs in ferrovs's namespace, where the members' TAP interfaces are. What ferrovs
sends through a member is what the kernel receives on its TAP, which a packet
socket on it sees (before the tc redirect that carries it to the wire).

usage: link_flap.py DOWN_IF OTHER_IF BOND_MAC ADDRESS STEPS
  STEPS: comma-separated; "wait:SECONDS", "down" (DOWN_IF down, then watch
  OTHER_IF for 1 s), "up" (DOWN_IF up, then watch DOWN_IF for 1.5 s).
Prints one JSON object: {"events": [{"step", "first_ms", "garp_ms", "data_ms",
"foreign_src"}]}: the ms from the link change to the first frame ferrovs sent
through the watched member, to its gratuitous ARP for ADDRESS from BOND_MAC
there, and to its first IPv4 frame there (null: none), and the frames from
another MAC. After "up", frames the kernel held while the TAP was down come
through at once: the gratuitous ARP marks the bond's move back.
"""

import errno
import errno
import fcntl
import json
import socket
import struct
import sys
import time

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
WINDOW = 1.0
UP_WAIT = 1.5


def set_up(ctl, ifname, up):
    req = struct.pack("16sH", ifname.encode(), 0)
    flags = struct.unpack("16sH", fcntl.ioctl(ctl, SIOCGIFFLAGS, req + b"\0" * 22)[:18])[1]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    fcntl.ioctl(ctl, SIOCSIFFLAGS, struct.pack("16sH", ifname.encode(), flags) + b"\0" * 22)


def sniffer(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def drain(s):
    while True:
        try:
            s.recvfrom(65536)
        except (BlockingIOError, OSError):
            # OSError: ENETDOWN, reported once on a socket whose interface went down.
            return


def watch(s, mac, address, start, until):
    """Frames ferrovs sends through the member (incoming on its TAP) until
    `until`: ms from `start` to the first, to a gratuitous ARP, to the first
    IPv4 frame; frames from another MAC."""
    first = garp = data = None
    foreign = 0
    while time.monotonic() < until:
        try:
            frame, addr = s.recvfrom(65536)
        except BlockingIOError:
            time.sleep(0.0002)
            continue
        except OSError as e:
            # ENETDOWN, reported once on a socket whose interface went down.
            if e.errno != errno.ENETDOWN:
                raise
            continue
        if addr[2] == PACKET_OUTGOING or len(frame) < 14:
            continue
        ms = (time.monotonic() - start) * 1000.0
        if first is None:
            first = ms
        if frame[6:12] != mac:
            foreign += 1
        kind = frame[12:14]
        if kind == b"\x08\x00" and data is None:
            data = ms
        # ARP request, sender and target protocol address both ADDRESS.
        if kind == b"\x08\x06" and len(frame) >= 42 and garp is None:
            if frame[22:28] == mac and frame[28:32] == address and frame[38:42] == address:
                garp = ms
    return first, garp, data, foreign


def main():
    down_if, other_if, mac_text, address_text, steps = sys.argv[1:6]
    mac = bytes(int(b, 16) for b in mac_text.split(":"))
    address = socket.inet_aton(address_text)
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    socks = {down_if: sniffer(down_if), other_if: sniffer(other_if)}
    events = []
    for step in steps.split(","):
        if step.startswith("wait:"):
            time.sleep(float(step[5:]))
            continue
        target = other_if if step == "down" else down_if
        drain(socks[target])
        t0 = time.monotonic()
        set_up(ctl, down_if, step == "up")
        wait = WINDOW if step == "down" else UP_WAIT
        first, garp, data, foreign = watch(socks[target], mac, address, t0, t0 + wait)
        events.append(
            {"step": step, "first_ms": first, "garp_ms": garp, "data_ms": data, "foreign_src": foreign}
        )
    print(json.dumps({"events": events}))


if __name__ == "__main__":
    main()
