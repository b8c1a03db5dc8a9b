#!/usr/bin/env bash
# pgoutput decoder benchmark: record the shared bench workload through a pgoutput slot and a wal2json slot of
# the same throwaway cluster (the same changes), then run `cargo bench --bench pgoutput` (pgrepl's pgoutput
# decoder, pg_walstream's pgoutput parser, pgrepl's wal2json decoder). Results: docs/bench-decode.md, "pgoutput".
#
# Starts a throwaway PostgreSQL cluster (as scripts/bench-decode.sh does), creates a publication FOR ALL TABLES
# `p`, a pgoutput slot and a wal2json slot, runs /work/shared/bench/workload.sh (or $WORKLOAD: 200 x 1000-row
# insert transactions, 20k updates, 10k deletes — about 230k changes), and dumps both slots up to the same end
# LSN with pg_logical_slot_peek_binary_changes into bench-data/ (gitignored):
#   bench-data/pgoutput.pgo   pgoutput, proto_version 1, publication_names p      ~230k messages
#   bench-data/pgo-v2.w2j     wal2json format 2 (include-xids, include-timestamp, include-lsn) of the same changes
# Both files use the length-prefixed record format of tests/data/wal2json (".w2j", read by tests/common/w2j.rs
# and `pgrepl decode`): a first line `!options <plugin options>`, then for each message a header line
# `#<byte length> <lsn>` followed by exactly that many raw bytes (binary for pgoutput) and a '\n'.
#
# Usage: scripts/bench-pgoutput.sh [--no-run]   (KEEP=1 reuses existing recordings; BENCH_REPS=N runs, default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench-data
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
WORKLOAD=${WORKLOAD:-/work/shared/bench/workload.sh}
[ -f "$WORKLOAD" ] || WORKLOAD=../shared/bench/workload.sh
mkdir -p "$OUT"

if [ "${KEEP:-0}" != 1 ] || [ ! -s "$OUT/pgoutput.pgo" ] || [ ! -s "$OUT/pgo-v2.w2j" ]; then
  TMP=$(mktemp -d /tmp/pgrepl-bench-pgo.XXXXXX)
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  if [ "$(id -u)" = 0 ]; then chown postgres "$TMP"; fi
  cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
  }
  trap cleanup EXIT
  PORT=""
  for p in $(seq 55600 55699); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PORT=$p; break; fi
  done
  EXTRA=""
  if "$PGBIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
    EXTRA="-c output_plugin_libraries=pgoutput,test_decoding,wal2json"
  fi
  as_pg "$PGBIN/initdb" -D "$TMP/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/log" -w -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1 \
    -c wal_level=logical -c fsync=off -c max_wal_size=4GB -c max_replication_slots=10 \
    -c TimeZone=UTC $EXTRA" start >/dev/null
  P() { "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

  # both slots exist before the workload's first change (its DDL is not decoded by either plugin)
  P -c "create publication p for all tables"
  P -c "select pg_create_logical_replication_slot('bench_pgo','pgoutput')" >/dev/null
  P -c "select pg_create_logical_replication_slot('bench_w2j','wal2json')" >/dev/null
  echo "running the workload on port $PORT ..."
  END=$(EVAL_PGPORT=$PORT bash "$WORKLOAD" | tail -1)

  dump() { # file slot upto options...
    local file=$1 slot=$2 upto=$3; shift 3
    local sqlopts="" o
    for o in "$@"; do sqlopts="$sqlopts, '${o%%=*}', '${o#*=}'"; done
    { echo "!options $*"
      P -At -F ' ' -c "select lsn, encode(data, 'hex') from pg_logical_slot_peek_binary_changes('$slot', '$upto', NULL $sqlopts)" |
        perl -ne 'chomp; my ($lsn, $hex) = split / /; $hex //= ""; my $b = pack("H*", $hex); print "#" . length($b) . " $lsn\n$b\n"'
    } >"$OUT/$file.tmp"
    mv "$OUT/$file.tmp" "$OUT/$file"
    echo "$OUT/$file: $(du -h "$OUT/$file" | cut -f1)"
  }
  dump pgoutput.pgo bench_pgo "$END" proto_version=1 publication_names=p
  dump pgo-v2.w2j bench_w2j "$END" format-version=2 include-xids=1 include-timestamp=1 include-lsn=1
fi

if [ "${1:-}" != "--no-run" ]; then
  cargo bench --bench pgoutput
fi
