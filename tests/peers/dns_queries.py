"""Sends N DNS queries (type A for NAME) to SERVER:53 from one socket bound to
BIND_ADDR:BIND_PORT, one after the other, and prints one line per query: the
answer's source address and port and the first A record in it, or "timeout".
Every datagram that arrives is printed, whatever its source, so an answer that
does not come from the server asked shows."""
import socket
import struct
import sys

bind_addr, bind_port, server, name, n = (
    sys.argv[1],
    int(sys.argv[2]),
    sys.argv[3],
    sys.argv[4],
    int(sys.argv[5]),
)


def query(qid):
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return header + labels + struct.pack("!HH", 1, 1)


def first_a(msg):
    qid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    i = 12
    for _ in range(qd):
        while msg[i] != 0:
            i += msg[i] + 1
        i += 5
    for _ in range(an):
        if msg[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while msg[i] != 0:
                i += msg[i] + 1
            i += 1
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[i : i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            return qid, socket.inet_ntoa(msg[i : i + 4])
        i += rdlen
    return qid, "none"


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((bind_addr, bind_port))
s.settimeout(2)
for k in range(n):
    qid = 0x1000 + k
    s.sendto(query(qid), (server, 53))
    try:
        data, src = s.recvfrom(65535)
        got, a = first_a(data)
        mark = "" if got == qid else " id-mismatch"
        print("%s:%d %s%s" % (src[0], src[1], a, mark), flush=True)
    except socket.timeout:
        print("timeout", flush=True)
