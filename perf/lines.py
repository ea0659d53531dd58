#!/usr/bin/python3
"""Charges samples or instructions to ferrovs's own source lines, through inlining.

The established path is inlined into one function (`WorkerLoop::run` in the real
binary, `process_burst` in `ferrovs-pipebench`), so `perf annotate` shows addresses
and callgrind_annotate shows library files (`core::slice`, `core::option`) where
the cost belongs to a line of ferrovs. This walks each address's inline chain
(`addr2line -i`) out to the innermost frame in this repository and sums there.

  # where the worker's time goes (cpu-clock samples of a running `ferrovs run`)
  perf record -e cpu-clock -F 2000 -p PID -o perf.data -- sleep 5
  perf/lines.py perf perf.data target/release/ferrovs [TOP]   # the binary perf saw (or a copy of it with the same file name)

  # where the instructions go (deterministic; PACKETS: what the run measured)
  valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=cg.out \\
      target/release/ferrovs-pipebench --workload udp-1k --mode dr --packets 400000 --seed 7 --clock-mpps 3
  perf/lines.py callgrind cg.out target/release/ferrovs-pipebench 400000 [TOP] [EVENTS]

  # where the last-level misses go: the same with perf/deterministic.sh's cache model
  valgrind --tool=callgrind --dump-instr=yes --cache-sim=yes --simulate-wb=yes \\
      --D1=49152,12,64 --LL=2097152,16,64 --callgrind-out-file=cg.out \\
      target/release/ferrovs-pipebench --workload udp-64k --mode dr --packets 400000 --seed 7 --clock-mpps 3
  perf/lines.py callgrind cg.out target/release/ferrovs-pipebench 464000 20 DLmr,DLmw

perf mode prints shares of all samples (other objects, such as the PMDs, listed
first); callgrind mode prints an event per packet, by default the first the file
records (Ir, instructions), else the sum of the comma-separated EVENTS named in its
`events:` line. Set-up and warm-up are included (pipebench warms up with one packet
of every flow: add them to PACKETS when counting misses, and use many packets).
Needs binutils' addr2line and, for perf mode, perf.
"""
import collections
import os
import re
import subprocess
import sys

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..")) + "/"


def symbols(binary):
    """Symbol name -> file address (first definition)."""
    out = subprocess.run(["nm", "-C", binary], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0]:
            syms.setdefault(parts[2], int(parts[0], 16))
    return syms


def perf_addresses(data, binary):
    """(file address -> samples, other object -> samples, total samples)."""
    syms = symbols(binary)
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,symoff,dso"],
                         capture_output=True, text=True, check=True).stdout
    name = os.path.basename(binary)
    addrs, other, total = collections.Counter(), collections.Counter(), 0
    for line in out.splitlines():
        total += 1
        m = re.match(r"\s*[0-9a-f]+ (.*)\+0x([0-9a-f]+) \((.*)\)$", line)
        if not m or os.path.basename(m.group(3)) != name or m.group(1) not in syms:
            other[line.rsplit("(", 1)[-1].rstrip(")")] += 1
            continue
        addrs[syms[m.group(1)] + int(m.group(2), 16)] += 1
    return addrs, other, total


def callgrind_addresses(path, binary, events=None):
    """File address -> the sum of `events` (default: the first the file records),
    for `binary`'s code in a callgrind output written with --dump-instr=yes
    (positions "instr line", then one count per event; trailing zeros omitted)."""
    names, cost = {}, collections.Counter()
    current, addr, line, skip, columns = None, 0, 0, False, [0]

    def value(tok, prev):
        if tok.startswith("0x"):
            return int(tok, 16)
        if tok[0] in "+-":
            return prev + int(tok)
        return prev if tok == "*" else int(tok)

    for raw in open(path):
        text = raw.rstrip("\n")
        if text.startswith("events:"):
            recorded = text.split()[1:]
            unknown = [e for e in events or [] if e not in recorded]
            if unknown:
                sys.exit("lines.py: %s records %s, not %s" % (path, " ".join(recorded), ",".join(unknown)))
            columns = [recorded.index(e) for e in events] if events else [0]
            continue
        m = re.match(r"c?ob=\((\d+)\)(?: (.*))?$", text)
        if m:
            if m.group(2):
                names[m.group(1)] = m.group(2)
            if text.startswith("ob="):
                current = names.get(m.group(1))
            continue
        if text.startswith("calls="):
            skip = True  # the next cost line is the call's, not this function's
            continue
        if not text or not (text[0] in "+-*" or text[0].isdigit()):
            continue
        parts = text.split()
        addr = value(parts[0], addr)
        if len(parts) > 2:
            line = value(parts[1], line)
        if skip:
            skip = False
            continue
        if current and os.path.realpath(current) == os.path.realpath(binary):
            counts = parts[2:]
            cost[addr] += sum(int(counts[c]) for c in columns if c < len(counts))
    return cost


def by_line(binary, addrs):
    """Sums `addrs` by the innermost frame of each address's inline chain that is
    in this repository (else the innermost function's name)."""
    text = "\n".join("%x" % a for a in addrs) + "\n"
    out = subprocess.run(["addr2line", "-e", binary, "-a", "-i", "-f", "-C"], input=text,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    chains, current, i = {}, None, 0
    while i < len(out):
        if out[i].startswith("0x"):
            current = int(out[i], 16)
            chains[current] = []
            i += 1
        else:
            chains[current].append((out[i], out[i + 1] if i + 1 < len(out) else "?"))
            i += 2
    lines = collections.Counter()
    for a, c in addrs.items():
        chain = chains.get(a, [])
        own = next((loc for _, loc in chain if is_own(loc)), None)
        key = relative(own).split(" ")[0] if own else (chain[0][0] if chain else "?")
        lines[key] += c
    return lines


def is_own(loc):
    """Whether a source location is this repository's (of whatever checkout the
    binary was built in), not the standard library's or a dependency's."""
    return not (loc.startswith("/rustc/") or "/.cargo/" in loc or loc.startswith("??"))


def relative(loc):
    """A location of this repository, from its top directory on."""
    if loc.startswith(REPO):
        return loc[len(REPO):]
    at = [loc.find(d) for d in ("/crates/", "/perf/", "/dpdk-sys/", "/src/", "/target/")]
    at = [i for i in at if i >= 0]
    return loc[min(at) + 1:] if at else loc


def main(argv):
    if len(argv) >= 3 and argv[0] == "perf":
        top = int(argv[3]) if len(argv) > 3 else 40
        addrs, other, total = perf_addresses(argv[1], argv[2])
        if not total:
            sys.exit("lines.py: no samples in " + argv[1])
        print("%d samples, %d in %s" % (total, sum(addrs.values()), argv[2]))
        for obj, n in other.most_common(5):
            print("%6.1f %%  (other) %s" % (100 * n / total, obj))
        for key, n in by_line(argv[2], addrs).most_common(top):
            print("%6.1f %%  %s" % (100 * n / total, key))
    elif len(argv) >= 4 and argv[0] == "callgrind":
        top = int(argv[4]) if len(argv) > 4 else 40
        events = argv[5].split(",") if len(argv) > 5 else None
        packets = float(argv[3])
        cost = callgrind_addresses(argv[1], argv[2], events)
        if not cost:
            sys.exit("lines.py: nothing of %s in %s (written with --dump-instr=yes?)" % (argv[2], argv[1]))
        what = "+".join(events) if events else "instructions"
        print("%.3f %s a packet in %s" % (sum(cost.values()) / packets, what, argv[2]))
        for key, n in by_line(argv[2], {a: c for a, c in cost.items() if c}).most_common(top):
            print("%7.3f  %s" % (n / packets, key))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
