"""Sends N datagrams of SIZE bytes to ADDR:PORT from one socket and checks that each
comes back whole from an echo server (udp_echo.py: "<name>:" + the datagram); prints
"ok N <answer length>" or what went wrong, and exits 1 on a failure."""
import socket
import sys

addr, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
length = 0
for i in range(n):
    data = bytes((i + j * 7) % 251 for j in range(size))
    s.sendto(data, (addr, port))
    try:
        answer, _ = s.recvfrom(65535)
    except socket.timeout:
        print("timeout on datagram %d" % i)
        sys.exit(1)
    if not answer.endswith(b":" + data):
        print("datagram %d came back altered (%d bytes)" % (i, len(answer)))
        sys.exit(1)
    length = len(answer)
print("ok %d %d" % (n, length))
