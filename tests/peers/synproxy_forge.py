"""Crafted ACKs at a SYN-proxied VIP (scapy): COUNT ACKs with random sequence and
acknowledgement numbers (cookies) from random ports, then a real SYN whose
SYN-ACK (a cookie) is answered once with a wrong cookie and, last, with the right
one. Prints "random N", "cookie C" and "answered"."""
import random
import sys

from scapy.all import IP, TCP, conf, send, sr1

conf.verb = 0
vip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

for _ in range(count):
    send(
        IP(dst=vip)
        / TCP(
            sport=random.randint(20000, 40000),
            dport=port,
            flags="A",
            seq=random.getrandbits(32),
            ack=random.getrandbits(32),
        )
    )
print("random", count, flush=True)

sport, isn = 45678, 1000
options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("WScale", 7)]
synack = sr1(
    IP(dst=vip) / TCP(sport=sport, dport=port, flags="S", seq=isn, options=options),
    timeout=3,
)
if synack is None or TCP not in synack or synack[TCP].flags != "SA":
    print("no SYN-ACK", flush=True)
    sys.exit(1)
cookie = synack[TCP].seq
tsval = dict(synack[TCP].options).get("Timestamp", (0, 0))[0]
print("cookie", cookie, flush=True)
for ack in [(cookie + 1 + 4096) & 0xFFFFFFFF, (cookie + 1) & 0xFFFFFFFF]:
    send(
        IP(dst=vip)
        / TCP(
            sport=sport,
            dport=port,
            flags="A",
            seq=isn + 1,
            ack=ack,
            options=[("NOP", None), ("NOP", None), ("Timestamp", (2, tsval))],
        )
    )
print("answered", flush=True)
