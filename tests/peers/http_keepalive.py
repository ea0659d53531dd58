"""Holds ONE HTTP/1.1 keep-alive connection to ADDR:PORT for SECONDS, sending a
request every INTERVAL seconds on it. Prints "ok N <bodies>" when every request
succeeded on the same TCP connection, else the error, and exits non-zero."""
import http.client
import sys
import time

addr, port, seconds, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
conn = http.client.HTTPConnection(addr, port, timeout=5)
conn.connect()
local = conn.sock.getsockname()
deadline = time.time() + seconds
n = 0
bodies = set()
try:
    while time.time() < deadline:
        conn.request("GET", "/", headers={"Connection": "keep-alive"})
        r = conn.getresponse()
        bodies.add(r.read().decode().strip())
        if r.status != 200 or conn.sock is None or conn.sock.getsockname() != local:
            print("connection changed or failed: status", r.status)
            sys.exit(1)
        n += 1
        time.sleep(interval)
except Exception as e:  # noqa: BLE001
    print("failed after", n, "requests:", repr(e))
    sys.exit(1)
print("ok", n, ",".join(sorted(bodies)))
