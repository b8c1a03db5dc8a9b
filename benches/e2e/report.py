#!/usr/bin/env python3
"""Tables for scripts/bench-e2e.sh from its results.tsv (medians, ratios, latency percentiles, targets)."""
import statistics
import sys
from collections import defaultdict

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
info = {r[1]: r[2] for r in rows if r[0] == "info"}
foot = {r[1]: r[2] for r in rows if r[0] == "foot"}
med = statistics.median


def mb(kb):
    return kb / 1024


def runs(phase):
    d = defaultdict(list)
    for r in rows:
        if r[0] == phase:
            _, key, name, wall, user, sys_, rss, ws, msgs = r
            d[(key, name) if phase == "big" else name].append(
                dict(wall=float(wall), cpu=float(user) + float(sys_), rss=int(rss), ws=float(ws), msgs=msgs))
    return d


out = []
targets = []
drain = runs("drain")
order = ["pg_recvlogical", "psycopg2", "pgrepl-raw", "pgrepl-json", "pgrepl-lib", "pgrepl-lib-nc"]
if drain:
    m = {n: dict(wall=med(r["wall"] for r in v), cpu=med(r["cpu"] for r in v), rss=med(r["rss"] for r in v),
                 ws=med(r["ws"] for r in v), n=len(v), msgs=v[0]["msgs"]) for n, v in drain.items()}
    ref = {k: m.get(k) for k in ("pg_recvlogical", "psycopg2")}
    out.append(f"### Drain: workload.sh (~230k changes, ~162 MB of format-2 JSON) to end LSN {info.get('end_lsn', '?')}\n")
    out.append(f"Medians of {max(x['n'] for x in m.values())} rounds. Walsender CPU: the server process that decodes "
               "the WAL for that drain (the floor: the client cannot finish before the server has decoded).\n")
    out.append("| client | wall s | CPU s (user+sys) | peak RSS MB | walsender CPU s | wall / pg_recvlogical | "
               "wall / psycopg2 | CPU / pg_recvlogical | CPU / psycopg2 | messages |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in order + sorted(set(m) - set(order)):
        if n not in m:
            continue
        x = m[n]

        def ratio(k, refn):
            r = ref.get(refn)
            return f"{x[k] / r[k]:.2f}x" if r and r[k] > 0 else "-"
        out.append(f"| {n} | {x['wall']:.2f} | {x['cpu']:.2f} | {mb(x['rss']):.1f} | {x['ws']:.2f} | "
                   f"{ratio('wall', 'pg_recvlogical')} | {ratio('wall', 'psycopg2')} | "
                   f"{ratio('cpu', 'pg_recvlogical')} | {ratio('cpu', 'psycopg2')} | {x['msgs']} |")
    out.append("")
    pr, py = ref["pg_recvlogical"], ref["psycopg2"]
    for n in ("pgrepl-raw", "pgrepl-json", "pgrepl-lib"):
        if n in m and pr and py:
            x = m[n]
            targets.append((f"{n} wall <= 0.8x pg_recvlogical and <= 0.8x psycopg2",
                            f"{x['wall'] / pr['wall']:.2f}x, {x['wall'] / py['wall']:.2f}x",
                            x["wall"] <= 0.8 * pr["wall"] and x["wall"] <= 0.8 * py["wall"]))
    if "pgrepl-lib" in m and pr and py:
        x = m["pgrepl-lib"]
        targets.append(("pgrepl-lib CPU <= 0.25x pg_recvlogical and <= 0.1x psycopg2",
                        f"{x['cpu'] / pr['cpu']:.2f}x, {x['cpu'] / py['cpu']:.2f}x",
                        x["cpu"] <= 0.25 * pr["cpu"] and x["cpu"] <= 0.1 * py["cpu"]))
    if "pgrepl-raw" in m:
        targets.append(("pgrepl-raw peak RSS <= 8 MB", f"{mb(m['pgrepl-raw']['rss']):.1f} MB",
                        m["pgrepl-raw"]["rss"] <= 8 * 1024))
    if "pgrepl-lib" in m:
        targets.append(("pgrepl-lib peak RSS <= 16 MB", f"{mb(m['pgrepl-lib']['rss']):.1f} MB",
                        m["pgrepl-lib"]["rss"] <= 16 * 1024))

big = runs("big")
if big:
    out.append("### One big transaction (single INSERT ... SELECT of N rows into a 2-column table)\n")
    out.append("| format | client | wall s | CPU s | peak RSS MB | walsender CPU s | messages |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for (key, name), v in big.items():
        x = v[0]
        out.append(f"| {key} | {name} | {x['wall']:.2f} | {x['cpu']:.2f} | {mb(x['rss']):.1f} | {x['ws']:.2f} | {x['msgs']} |")
        bound = {"pgrepl-raw": 8, "pgrepl-lib": 16}.get(name)
        if bound:
            targets.append((f"big transaction, {key}, {name} peak RSS <= {bound} MB", f"{mb(x['rss']):.1f} MB",
                            x["rss"] <= bound * 1024))
    out.append("")

lat = [r for r in rows if r[0] == "lat"]
if lat:
    out.append("### Latency: commit (wal2json's commit timestamp) to event, loopback\n")
    out.append("After one second of warm-up (not reported); pg_recvlogical and pgrepl recv write to a pipe read by "
               "benches/e2e/stamp.py, which time-stamps the read that brings each transaction's first byte.\n")
    out.append("| rate (target) | achieved tx/s | client | measured at | p50 ms | p99 ms | max ms | samples |")
    out.append("|---|---:|---|---|---:|---:|---:|---:|")
    where = {"pgrepl-lib": "Begin event decoded (library)", "pgrepl-lib-nc": "same, coalesce_reads off",
             "psycopg2": "after json.loads",
             "pg_recvlogical": "first byte of output", "pgrepl-raw": "first byte of output (pgrepl recv)",
             "base-pgrepl-lib": "Begin event decoded (library, --base build)",
             "base-pgrepl-raw": "first byte of output (pgrepl recv, --base build)"}
    for _, rate, name, path, achieved, *warm in lat:
        skip = int(warm[0]) if warm else 0  # warm-up samples (the first second), not reported
        try:
            v = sorted([int(x) for x in open(path) if x.strip()][skip:])
        except OSError:
            v = []
        if not v:
            out.append(f"| {int(rate):,}/s | {achieved} | {name} | {where.get(name, '')} | - | - | - | 0 |")
            continue

        def pct(p):
            return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))] / 1000
        out.append(f"| {int(rate):,}/s | {achieved} | {name} | {where.get(name, '')} | {pct(50):.3f} | {pct(99):.3f} | "
                   f"{v[-1] / 1000:.3f} | {len(v)} |")
    out.append("")

if foot:
    out.append("### Footprint\n")
    out.append("| what | value |")
    out.append("|---|---:|")
    if "crates_lib" in foot:
        out.append(f"| `cargo tree -e normal --no-default-features` (crates besides pgrepl) | {foot['crates_lib']} |")
        targets.append(("library dependency tree <= 25 crates", foot["crates_lib"], int(foot["crates_lib"]) <= 25))
    if "crates_cli" in foot:
        out.append(f"| `cargo tree -e normal` with default features (CLI, TLS) | {foot['crates_cli']} |")
    if "cli_stripped_bytes" in foot:
        out.append(f"| stripped release `pgrepl` binary | {int(foot['cli_stripped_bytes']) / 1e6:.2f} MB |")
    if "cold_build_s" in foot:
        out.append(f"| cold `cargo build --release --bin pgrepl` (load before: {foot.get('cold_build_load', '?')}) | "
                   f"{foot['cold_build_s']} s |")
    out.append("")

if targets:
    out.append("### Targets (issue 7)\n")
    out.append("| target | measured | met |")
    out.append("|---|---|---|")
    for t, v, ok in targets:
        out.append(f"| {t} | {v} | {'yes' if ok else '**no**'} |")
    out.append("")
if "machine" in info:
    out.append(f"Machine: {info['machine']}.")
print("\n".join(out))
