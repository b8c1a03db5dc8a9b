#!/usr/bin/env python3
"""psycopg2 commit-to-event latency: like ../shared/bench/psycopg2_drain.py (json.loads per message, feedback
per message), timing each transaction's first message after json.loads against its commit time.

Usage: EVAL_PGPORT=N psycopg2_latency.py SLOT COUNT OUT_FILE    (stops after COUNT transactions)
"""
import json, os, sys, time
import psycopg2, psycopg2.extras
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgts import commit_us

slot, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = psycopg2.connect("host=127.0.0.1 port=" + os.environ.get("EVAL_PGPORT", "5544") + " user=postgres dbname=postgres",
                        connection_factory=psycopg2.extras.LogicalReplicationConnection)
cur = conn.cursor()
cur.start_replication(slot_name=slot, decode=False,
                      options={'format-version': '2', 'include-xids': '1', 'include-timestamp': '1'})
lat = []
n = 0


class Stop(Exception):
    pass


def consume(msg):
    global n
    ev = json.loads(msg.payload)
    if ev.get("action") == "B":
        now = time.time_ns() // 1000
        ts = commit_us(msg.payload)
        if ts is not None:
            lat.append(now - ts)
        n += 1
    msg.cursor.send_feedback(flush_lsn=msg.data_start)
    if n >= count and ev.get("action") == "C":
        raise Stop()


try:
    cur.consume_stream(consume)
except Stop:
    pass
with open(out, "w") as f:
    f.write("".join(f"{v}\n" for v in lat))
print(f"psycopg2_latency: {n} transactions", file=sys.stderr)
