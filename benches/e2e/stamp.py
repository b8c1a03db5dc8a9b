#!/usr/bin/env python3
"""Commit-to-first-byte latency of a text stream of wal2json format-2 payloads (one per line) on stdin.

Usage: stamp.py COUNT OUT_FILE
Reads stdin in chunks as they arrive; every line starting with {"action":"B" (the first output of a transaction)
gets the time of the read that brought its first byte, minus the commit time printed in its "timestamp"
(include-timestamp=1): one latency in microseconds per line of OUT_FILE. Stops after COUNT transactions (and
exits; the caller then stops the producer). Used for pg_recvlogical and `pgrepl recv` by scripts/bench-e2e.sh.
"""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgts import commit_us

count, out = int(sys.argv[1]), sys.argv[2]
lat = []
n = 0
partial = b""          # an unfinished line
partial_at = 0         # when its first byte arrived
B = b'{"action":"B"'
while n < count:
    chunk = os.read(0, 1 << 16)
    now = time.time_ns() // 1000
    if not chunk:
        break
    lines = chunk.split(b"\n")
    for i, line in enumerate(lines[:-1]):
        at = now
        if i == 0 and partial:
            line, at = partial + line, partial_at
            partial = b""
        if line.startswith(B):
            ts = commit_us(line)
            if ts is not None:
                lat.append(at - ts)
            n += 1
    tail = lines[-1]
    if tail:
        if not partial:
            partial_at = now
        partial += tail
with open(out, "w") as f:
    f.write("".join(f"{v}\n" for v in lat))
print(f"stamp: {n} transactions", file=sys.stderr)
