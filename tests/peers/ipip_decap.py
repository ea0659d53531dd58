"""A userspace IP-in-IP decapsulator for a TUNNEL-mode real server on a kernel
without the ipip module: receives protocol-4 packets on a raw socket and writes the
inner packet to a TUN device, where the kernel takes it as if it had arrived there.
Prints "ready" once the TUN device is up."""
import fcntl
import os
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

name = sys.argv[1] if len(sys.argv) > 1 else "tun0"
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
subprocess.run(["ip", "link", "set", name, "up"], check=True)
for conf in ("all", name):
    subprocess.run(["sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=0"], check=True)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
print("ready", flush=True)
while True:
    packet = raw.recv(65535)
    ihl = (packet[0] & 0x0F) * 4
    os.write(tun, packet[ihl:])
