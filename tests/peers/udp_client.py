"""Sends N UDP requests to ADDR:PORT, one socket each (a new flow per request), and
prints one answer per line; "timeout" for a request without an answer."""
import socket
import sys

addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"req%d" % i, (addr, port))
    try:
        data, _ = s.recvfrom(65535)
        print(data.decode())
    except socket.timeout:
        print("timeout")
    s.close()
