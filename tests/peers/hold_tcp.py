"""Opens N TCP connections to ADDR:PORT and holds them; prints "open N" once all
are established, sleeps HOLD seconds, then checks each connection still works (one
HTTP request on each) and prints "alive K"."""
import socket
import sys
import time

addr, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = [socket.create_connection((addr, port), timeout=5) for _ in range(n)]
print("open", len(socks), flush=True)
time.sleep(hold)
alive = 0
for s in socks:
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        if s.recv(4096).startswith(b"HTTP/1.1 200"):
            alive += 1
    except OSError:
        pass
print("alive", alive, flush=True)
