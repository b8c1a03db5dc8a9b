#!/usr/bin/env python3
"""Commit-to-first-byte latency of a text stream of wal2json format-2 payloads (one per line) on stdin.

Usage: stamp.py COUNT OUT_FILE
For each line starting with {"action":"B" (the first output of a transaction), takes the time at which the line
was read and subtracts the commit time printed in its "timestamp" (include-timestamp=1): one latency in
microseconds per line of OUT_FILE. Stops after COUNT transactions (and exits; the producer then gets EPIPE or
is stopped by the caller). Used for pg_recvlogical and `pgrepl recv` by scripts/bench-e2e.sh.
"""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgts import commit_us

count, out = int(sys.argv[1]), sys.argv[2]
lat = []
src = sys.stdin.buffer
n = 0
while n < count:
    line = src.readline()
    if not line:
        break
    now = time.time_ns() // 1000
    if line.startswith(b'{"action":"B"'):
        ts = commit_us(line)
        if ts is not None:
            lat.append(now - ts)
        n += 1
with open(out, "w") as f:
    f.write("".join(f"{v}\n" for v in lat))
print(f"stamp: {n} transactions", file=sys.stderr)
