"""Sends ferrovs sync datagrams written from the wire format's description (an
independent implementation of it), good and forged, to TARGET (ADDR:PORT) from
SOURCE (ADDR:PORT, which must be bindable here), with the key in KEYFILE.

Kinds, in order, each once unless said:
  valid      one connection (NAT, ESTABLISHED, client CLIENT:40000 -> VIP:80 ->
             RS:8080), epoch E, sequence 1
  replay     the same datagram again
  wrongkey   a valid datagram under another key (sequence 2)
  truncated  a valid datagram cut short by 10 bytes
  toolarge   a header claiming 1000 records
  notsync    64 bytes of garbage
Prints "sent N".

Usage: sync_forger.py SOURCE TARGET KEYFILE CLIENT VIP RS
"""
import hashlib
import hmac
import ipaddress
import socket
import struct
import sys
import time

src, dst, keyfile, client, vip, rs = sys.argv[1:7]
key = open(keyfile, "rb").read()


def addr16(a):
    ip = ipaddress.ip_address(a)
    b = ip.packed
    return b + bytes(16 - len(b))


def record():
    # flags, protocol, state (ESTABLISHED = 1), mode (NAT = 0), timeout ms
    r = struct.pack(">BBBBI", 0, 6, 1, 0, 600_000)
    r += addr16(client) + struct.pack(">HH", 40000, 80) + addr16(vip)
    r += addr16(client) + struct.pack(">HH", 40000, 8080) + addr16(rs)
    assert len(r) == 80
    return r


def datagram(seq, records, k=key, count=None):
    epoch = time.time_ns()
    body = b"FVSY" + struct.pack(">BBHQQH6x", 1, 2, 1, epoch, seq,
                                 len(records) if count is None else count)
    body += b"".join(records)
    return body + hmac.new(k, body, hashlib.sha256).digest()[:16]


def endpoint(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(endpoint(src))
target = endpoint(dst)
valid = datagram(1, [record()])
sent = [
    valid,
    valid,
    datagram(2, [record()], k=b"not the key, but long enough"),
    valid[:-10],
    datagram(3, [], count=1000),
    bytes(64),
]
for d in sent:
    s.sendto(d, target)
    time.sleep(0.05)
print("sent", len(sent), flush=True)
