#!/usr/bin/env bash
# Generate the decoder benchmark corpora into bench-data/ (gitignored) and run `cargo bench --bench decode`.
#
# Starts a throwaway PostgreSQL cluster, runs the fixed workload (/work/shared/bench/workload.sh or
# $WORKLOAD: 200 x 1000-row insert transactions, 20k updates, 10k deletes — about 230k changes), and dumps the
# slot with pg_logical_slot_peek_binary_changes as
#   bench-data/v2.w2j    format 2 (include-xids, include-timestamp, include-lsn)        ~230k payloads
#   bench-data/v1.w2j    format 1 (include-xids, include-timestamp), one document per transaction
# plus two extra corpora from their own slots:
#   bench-data/wide.w2j  format 2, 20k inserts into a 100-column table
#   bench-data/text.w2j  format 2, 20k inserts of 3 text columns of 0.3–3 kB with quotes, backslashes, newlines
# (same ".w2j" record format as tests/data/wal2json: `!options …`, then `#<len> <lsn>\n<payload>\n` records).
#
# Usage: scripts/bench-decode.sh [--no-run]   (set KEEP=1 to reuse existing bench-data files)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench-data
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
WORKLOAD=${WORKLOAD:-/work/shared/bench/workload.sh}
[ -f "$WORKLOAD" ] || WORKLOAD=../shared/bench/workload.sh
mkdir -p "$OUT"

if [ "${KEEP:-0}" != 1 ] || [ ! -s "$OUT/v2.w2j" ]; then
  TMP=$(mktemp -d /tmp/pgrepl-bench.XXXXXX)
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  if [ "$(id -u)" = 0 ]; then chown postgres "$TMP"; fi
  cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
  }
  trap cleanup EXIT
  PORT=""
  for p in $(seq 55500 55599); do
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

  echo "running the workload on port $PORT ..."
  END=$(EVAL_PGPORT=$PORT bash "$WORKLOAD" bench | tail -1)
  P -c "select pg_create_logical_replication_slot('bench_wide','wal2json')" >/dev/null
  cols=$(for i in $(seq 1 33); do printf ', i%d int, t%d text, n%d numeric' "$i" "$i" "$i"; done)
  vals=$(for i in $(seq 1 33); do printf ", g+%d, 'v%d-'||g, g*%d.25" "$i" "$i" "$i"; done)
  P -c "create table wide(id int primary key $cols)"
  for b in $(seq 0 19); do
    echo "insert into wide select g $vals from generate_series($b*1000+1, $b*1000+1000) g;"
  done | P
  WIDE_END=$(P -At -c "select pg_current_wal_lsn()")
  P -c "select pg_create_logical_replication_slot('bench_text','wal2json')" >/dev/null
  P -c "create table texty(id int primary key, a text, b text, c text)"
  for b in $(seq 0 19); do
    echo "insert into texty select g,
      repeat(E'line \"quoted\" and \\\\back\\\\slash\\n\\ttabbed ', 3 + g % 10),
      repeat('plain ascii text without escapes ', 10 + g % 50),
      repeat(E'unicode \u00e9\u00e8 \u65e5\u672c \"q\" ', 5 + g % 20)
      from generate_series($b*1000+1, $b*1000+1000) g;"
  done | P
  TEXT_END=$(P -At -c "select pg_current_wal_lsn()")

  dump() { # file slot upto options...
    local file=$1 slot=$2 upto=$3; shift 3
    local sqlopts="" o
    for o in "$@"; do sqlopts="$sqlopts, '${o%%=*}', '${o#*=}'"; done
    { echo "!options $*"
      P -At -F ' ' -c "select lsn, encode(data, 'hex') from pg_logical_slot_peek_binary_changes('$slot', '$upto', NULL $sqlopts)" |
        perl -ne 'chomp; my ($lsn, $hex) = split / /; $hex //= ""; my $b = pack("H*", $hex); print "#" . length($b) . " $lsn\n$b\n"'
    } >"$OUT/$file"
    echo "$OUT/$file: $(du -h "$OUT/$file" | cut -f1)"
  }
  dump v2.w2j bench "$END" format-version=2 include-xids=1 include-timestamp=1 include-lsn=1
  dump v1.w2j bench "$END" format-version=1 include-xids=1 include-timestamp=1
  dump wide.w2j bench_wide "$WIDE_END" format-version=2 include-xids=1 include-timestamp=1 include-lsn=1
  dump text.w2j bench_text "$TEXT_END" format-version=2 include-xids=1 include-timestamp=1 include-lsn=1
fi

if [ "${1:-}" != "--no-run" ]; then
  cargo bench --bench decode
fi
