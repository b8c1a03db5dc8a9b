#!/usr/bin/env bash
# End-to-end benchmark (issue 7): pgrepl against pg_recvlogical and psycopg2 on one throwaway cluster.
#
#   scripts/bench-e2e.sh [--rounds N] [--quick] [--cold-build] [--only drain,big,latency,footprint]
#                        [--out FILE] [--keep] [--base TARGET_DIR] [--contenders NAME,...]
#
# 1. drain: runs ../shared/bench/workload.sh once (200 x 1000-row insert transactions, 20k updates, 10k deletes:
#    ~230k changes, ~162 MB of format-2 JSON) with one slot per contender and round, then drains every slot to
#    the workload's end LSN, rounds alternating the contenders' order:
#      pg_recvlogical   -o format-version=2 -o include-xids=1 -o include-timestamp=1 -f - -E END -n > /dev/null
#      psycopg2         ../shared/bench/psycopg2_drain.py (json.loads per message)
#      pgrepl-raw       pgrepl recv (same options) -f - -E END -n > /dev/null
#      pgrepl-json      pgrepl recv --output json (one format-2 object per change, re-encoded) > /dev/null
#      pgrepl-lib       examples/drain.rs: ChangeStream, every payload decoded into typed events, every commit
#                       acknowledged
#      pgrepl-lib-nc    the same with StreamConfig::coalesce_reads off (--no-coalesce): what read coalescing saves
#    --base TARGET_DIR (an A/B against another build of pgrepl: a CARGO_TARGET_DIR where `cargo build --release
#    -p pgrepl-cli --bin pgrepl` and `cargo build --release -p pgrepl --example drain` ran, in a checkout of the
#    "before" commit) adds base-pgrepl-raw and base-pgrepl-lib, the same drains with those binaries, to every
#    round: before and after interleaved on one workload (and base-pgrepl-lib and base-pgrepl-raw to the latency
#    runs). --contenders picks the drain's contenders.
#    For each drain: wall time, user+sys CPU and peak RSS (/usr/bin/time), and the CPU of the server's
#    walsender that fed it (the postmaster's cutime+cstime grow by exactly that when the walsender exits:
#    autovacuum is off and nothing else connects during a drain). Medians over the rounds.
# 2. big: one 1,000,000-row transaction (narrow table), drained in format 2 and in format 1 with
#    write-in-chunks by pgrepl recv raw and the library consumer (pg_recvlogical for reference): peak RSS.
# 3. latency: commit-to-event at 1,000 and 10,000 single-row transactions per second (paced by a PL/pgSQL loop
#    that commits each row; 5 s and 3 s after 1 s of warm-up that is not reported), for the library consumer (time its Begin event is decoded), psycopg2 (after
#    json.loads), pg_recvlogical and pgrepl recv (first byte of each transaction's output, read from a pipe
#    by benches/e2e/stamp.py). The commit time is the timestamp wal2json prints on the transaction's B.
# 4. footprint: `cargo tree -e normal` crates of the library (default features, and `tls`) and of the CLI, stripped release CLI size, and with
#    --cold-build the time of `cargo build --release` in an empty target dir (/tmp/coldbuild).
#
# --quick: one round, 200k-row big transaction, 1 s latency runs, no cold build (a smoke test, ~2 minutes).
# The tables go to stdout (and to --out FILE); raw numbers stay in the work directory with --keep.
# Needs: PostgreSQL 15 + wal2json (scripts/install-deps.sh), /usr/bin/time (installed with apt when missing),
# python3 with psycopg2 (pip-installed when missing). Not part of scripts/test.sh: too slow for CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=3
QUICK=0
COLD=0
KEEP=0
ONLY="drain,big,latency,footprint"
OUT=""
BASE=""
PICK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --cold-build) COLD=1; shift ;;
        --only) ONLY=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --base) BASE=$2; shift 2 ;;
        --contenders) PICK=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-e2e: unknown argument $1" >&2; exit 2 ;;
    esac
done
BIG_ROWS=1000000
LAT_SECS_1K=5
LAT_SECS_10K=3
if [ "$QUICK" = 1 ]; then
    ROUNDS=1; BIG_ROWS=200000; LAT_SECS_1K=1; LAT_SECS_10K=1
fi
has() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
say() { echo "bench-e2e: $*" >&2; }

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# ---- dependencies -------------------------------------------------------------------------------------------
SHARED=${PGREPL_BENCH_DIR:-$ROOT/../shared/bench}
[ -f "$SHARED/workload.sh" ] || SHARED=/work/shared/bench
[ -f "$SHARED/workload.sh" ] || { say "workload.sh not found (set PGREPL_BENCH_DIR)"; exit 1; }
PGBIN=${PG_BIN_DIR:-/usr/lib/postgresql/15/bin}
RECVLOGICAL=$PGBIN/pg_recvlogical
[ -x "$RECVLOGICAL" ] || RECVLOGICAL=$(command -v pg_recvlogical)
if [ ! -x /usr/bin/time ]; then
    say "installing GNU time"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q time >/dev/null; else sudo apt-get install -y -q time >/dev/null; fi
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import psycopg2' 2>/dev/null; then
    say "installing psycopg2-binary"
    "$PYTHON" -m pip install -q psycopg2-binary
fi
TCK=$(getconf CLK_TCK)

# ---- build --------------------------------------------------------------------------------------------------
say "building (release): pgrepl, examples drain and cluster"
cargo build --release -q -p pgrepl-cli --bin pgrepl
cargo build --release -q -p pgrepl --example drain --example cluster
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PGREPL=$TARGET/release/pgrepl
DRAIN=$TARGET/release/examples/drain
CLUSTER=$TARGET/release/examples/cluster
if [ -n "$BASE" ]; then
    BASE_PGREPL=$BASE/release/pgrepl
    BASE_DRAIN=$BASE/release/examples/drain
    for b in "$BASE_PGREPL" "$BASE_DRAIN"; do [ -x "$b" ] || { say "--base: $b not found"; exit 2; }; done
fi

WORK=$(mktemp -d /tmp/pgrepl-e2e.XXXXXX)
chmod 755 "$WORK"
RES=$WORK/results.tsv
: > "$RES"
CL_PID=""
cleanup() {
    exec 9>&- 2>/dev/null || true
    if [ -n "$CL_PID" ]; then wait "$CL_PID" 2>/dev/null || true; fi
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- cluster ------------------------------------------------------------------------------------------------
# examples/cluster.rs: a TempCluster that lives until its standard input closes (fd 9 here).
mkfifo "$WORK/cluster.in"
"$CLUSTER" -c "max_replication_slots = 64" -c "max_wal_senders = 16" -c "autovacuum = off" \
    -c "timezone = 'UTC'" -c "wal_sender_timeout = '60s'" <"$WORK/cluster.in" >"$WORK/cluster.out" 2>&1 &
CL_PID=$!
exec 9>"$WORK/cluster.in"
for _ in $(seq 1 600); do
    grep -q '^port=' "$WORK/cluster.out" 2>/dev/null && break
    kill -0 "$CL_PID" 2>/dev/null || { cat "$WORK/cluster.out" >&2; exit 1; }
    sleep 0.1
done
PORT=$(sed -n 's/^port=\([0-9]*\) .*/\1/p' "$WORK/cluster.out")
DATA=$(sed -n 's/.* data_dir=\([^ ]*\) .*/\1/p' "$WORK/cluster.out")
PM=$(head -1 "$DATA/postmaster.pid")
CONN="host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
say "cluster on port $PORT (postmaster $PM)"
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
sql() { "${PSQL[@]}" -c "$1"; }
export EVAL_PGPORT=$PORT

# CPU ticks of the postmaster's reaped children (each walsender adds its own when it exits).
children_cpu() { sed 's/.*) //' "/proc/$PM/stat" | awk '{print $14 + $15}'; }
children() { ps --ppid "$PM" -o pid= | sort | tr -d ' \n'; }
# the postmaster's own children (checkpointer, background writer, walwriter, launcher): no backend runs yet
sleep 0.5
BASE=$(children)
wait_children() { # wait until the postmaster's children are back to the set $1 (walsender exited and reaped)
    for _ in $(seq 1 500); do [ "$(children)" = "$1" ] && return 0; sleep 0.02; done
    say "warning: a backend is still running after the drain"
}

# measure PHASE KEY CONTENDER cmd... : /usr/bin/time + walsender CPU; one line in results.tsv
measure() {
    local phase=$1 key=$2 name=$3; shift 3
    local t0 t1 rc=0 msgs
    # no backend of an earlier psql call or drain may still be exiting: its CPU would count for this drain
    wait_children "$BASE"
    t0=$(children_cpu)
    /usr/bin/time -f "TIME %e %U %S %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || rc=$?
    wait_children "$BASE"
    t1=$(children_cpu)
    if [ "$rc" != 0 ]; then
        say "$name failed ($rc):"; tail -5 "$WORK/stderr" >&2
        return 1
    fi
    # messages delivered, as each client reports it (pg_recvlogical reports nothing)
    msgs=$(grep -oE '(payloads: [0-9]+|[0-9]+ messages|^[0-9]+ [0-9]+$)' "$WORK/stderr" | tail -1 \
        | grep -oE '[0-9]+' | head -1 || true)
    read -r _ wall user sys rss < <(grep '^TIME' "$WORK/time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$key" "$name" "$wall" "$user" "$sys" "$rss" \
        "$(awk -v a="$t0" -v b="$t1" -v t="$TCK" 'BEGIN{printf "%.2f", (b-a)/t}')" "${msgs:--}" >>"$RES"
    say "  $phase $key $name: wall ${wall}s cpu $(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')s rss ${rss}kB"
}

W2J2=(-o format-version=2 -o include-xids=1 -o include-timestamp=1)
W2J1=(-o format-version=1 -o write-in-chunks=1 -o include-xids=1 -o include-timestamp=1)

JSON_OK=1
if ! printf '{"action":"B","xid":1}\n' | "$PGREPL" decode - --output json >/dev/null 2>&1; then
    JSON_OK=0
    say "pgrepl --output json is not available in this build: skipping pgrepl-json"
fi

run_contender() { # NAME SLOT END
    local name=$1 slot=$2 end=$3
    case "$name" in
        pg_recvlogical) measure drain "$ROUND" "$name" "$RECVLOGICAL" -h 127.0.0.1 -p "$PORT" -U postgres \
            -d postgres -S "$slot" --start "${W2J2[@]}" -f - -E "$end" -n ;;
        psycopg2) measure drain "$ROUND" "$name" "$PYTHON" "$SHARED/psycopg2_drain.py" "$slot" "$end" ;;
        pgrepl-raw) measure drain "$ROUND" "$name" "$PGREPL" recv -v -h 127.0.0.1 -p "$PORT" -U postgres \
            -d postgres -S "$slot" --start "${W2J2[@]}" -f - -E "$end" -n ;;
        pgrepl-json) measure drain "$ROUND" "$name" "$PGREPL" recv -v --output json -h 127.0.0.1 -p "$PORT" \
            -U postgres -d postgres -S "$slot" --start "${W2J2[@]}" -f - -E "$end" -n ;;
        pgrepl-lib) measure drain "$ROUND" "$name" "$DRAIN" "$CONN" "$slot" "$end" ;;
        pgrepl-lib-nc) measure drain "$ROUND" "$name" "$DRAIN" --no-coalesce "$CONN" "$slot" "$end" ;;
        base-pgrepl-raw) measure drain "$ROUND" "$name" "$BASE_PGREPL" recv -v -h 127.0.0.1 -p "$PORT" \
            -U postgres -d postgres -S "$slot" --start "${W2J2[@]}" -f - -E "$end" -n ;;
        base-pgrepl-lib) measure drain "$ROUND" "$name" "$BASE_DRAIN" "$CONN" "$slot" "$end" ;;
        *) say "unknown contender $name"; exit 2 ;;
    esac
}

# ---- 1. drain -----------------------------------------------------------------------------------------------
if has drain; then
    CONTENDERS=(pg_recvlogical psycopg2 pgrepl-raw pgrepl-lib pgrepl-lib-nc)
    [ "$JSON_OK" = 1 ] && CONTENDERS+=(pgrepl-json)
    [ -n "$BASE" ] && CONTENDERS+=(base-pgrepl-raw base-pgrepl-lib)
    [ -n "$PICK" ] && IFS=, read -r -a CONTENDERS <<<"$PICK"
    SLOTS=()
    for r in $(seq 1 "$ROUNDS"); do for c in "${CONTENDERS[@]}"; do SLOTS+=("b_${c//-/_}_$r"); done; done
    say "workload with ${#SLOTS[@]} slots (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    t=$SECONDS
    END=$(bash "$SHARED/workload.sh" "${SLOTS[@]}" 2>"$WORK/workload.err" | tail -1)
    say "workload done in $((SECONDS - t)) s, end LSN $END"
    printf 'info\tend_lsn\t%s\n' "$END" >>"$RES"
    n=${#CONTENDERS[@]}
    for r in $(seq 1 "$ROUNDS"); do
        ROUND=$r
        say "round $r (load: $(cut -d' ' -f1-3 /proc/loadavg))"
        for i in $(seq 0 $((n - 1))); do
            c=${CONTENDERS[$(((i + r - 1) % n))]}
            run_contender "$c" "b_${c//-/_}_$r" "$END"
            sql "select pg_drop_replication_slot('b_${c//-/_}_$r')" >/dev/null
        done
    done
    sql "checkpoint" >/dev/null
fi

# ---- 2. one big transaction ---------------------------------------------------------------------------------
if has big; then
    say "big: one $BIG_ROWS-row transaction"
    sql "create table big(id bigint primary key, v text)" >/dev/null
    for s in big2_raw big2_lib big2_pgrecv big1_raw big1_lib big1_pgrecv; do
        sql "select pg_create_logical_replication_slot('$s', 'wal2json')" >/dev/null
    done
    sql "insert into big select g, 'row-' || g from generate_series(1, $BIG_ROWS) g" >/dev/null
    BEND=$(sql "select pg_current_wal_lsn()")
    measure big format2 pgrepl-raw "$PGREPL" recv -v -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
        -S big2_raw --start "${W2J2[@]}" -f - -E "$BEND" -n
    measure big format2 pgrepl-lib "$DRAIN" "$CONN" big2_lib "$BEND"
    measure big format2 pg_recvlogical "$RECVLOGICAL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
        -S big2_pgrecv --start "${W2J2[@]}" -f - -E "$BEND" -n
    measure big format1-chunks pgrepl-raw "$PGREPL" recv -v -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
        -S big1_raw --start "${W2J1[@]}" -f - -E "$BEND" -n
    measure big format1-chunks pgrepl-lib "$DRAIN" "${W2J1[@]}" "$CONN" big1_lib "$BEND"
    measure big format1-chunks pg_recvlogical "$RECVLOGICAL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
        -S big1_pgrecv --start "${W2J1[@]}" -f - -E "$BEND" -n
    for s in big2_raw big2_lib big2_pgrecv big1_raw big1_lib big1_pgrecv; do
        sql "select pg_drop_replication_slot('$s')" >/dev/null
    done
    sql "drop table big" -c "checkpoint" >/dev/null
fi

# ---- 3. latency ---------------------------------------------------------------------------------------------
# generate RATE COUNT: COUNT single-row transactions paced at RATE per second (pg_sleep sleeps whole ms, so at
# 10,000/s the commits come in bursts of about ten per millisecond). Prints the rate achieved.
generate() {
    local rate=$1 count=$2 t0 t1
    t0=$(date +%s.%N)
    "${PSQL[@]}" -c "do \$\$
declare t0 timestamptz := clock_timestamp(); d float8;
begin
  for i in 1..$count loop
    insert into lat(v) values (i);
    commit;
    d := extract(epoch from t0 + i * interval '1 second' / $rate - clock_timestamp());
    if d > 0 then perform pg_sleep(d); end if;
  end loop;
end \$\$"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v n="$count" 'BEGIN{printf "%.0f", n/(b-a)}'
}

wait_active() { # SLOT: until a walsender streams from it
    for _ in $(seq 1 200); do
        [ "$(sql "select active from pg_replication_slots where slot_name='$1'")" = t ] && { sleep 0.3; return 0; }
        sleep 0.05
    done
    say "warning: slot $1 never became active"
}

wait_pid() { # PID TIMEOUT_S
    for _ in $(seq 1 $(($2 * 20))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    say "warning: $1 still running after $2 s"; kill -TERM "$1" 2>/dev/null || true
}

NICE=""
nice -n -10 true 2>/dev/null && NICE="nice -n -10"
if has latency; then
    sql "create table lat(id bigserial primary key, v int)" >/dev/null
    for rate in 1000 10000; do
        secs=$LAT_SECS_1K; [ "$rate" = 10000 ] && secs=$LAT_SECS_10K
        # one second of warm-up first (a fresh walsender, caches, the consumer's start): counted, not reported
        count=$((rate * (secs + 1)))
        LAT_CONTENDERS=(pgrepl-lib pgrepl-lib-nc pgrepl-raw pg_recvlogical psycopg2)
        # each --base contender right after its counterpart: the machine changes least between the two
        [ -n "$BASE" ] && LAT_CONTENDERS=(pgrepl-lib base-pgrepl-lib pgrepl-raw base-pgrepl-raw pgrepl-lib-nc \
            pg_recvlogical psycopg2)
        for c in "${LAT_CONTENDERS[@]}"; do
            slot="l_${c//-/_}_$rate"
            out="$WORK/lat_${c}_$rate.txt"
            sql "select pg_create_logical_replication_slot('$slot', 'wal2json')" >/dev/null
            prod=""
            case "$c" in
                pgrepl-lib | pgrepl-lib-nc | base-pgrepl-lib)
                    nc=(); [ "$c" = pgrepl-lib-nc ] && nc=(--no-coalesce)
                    drain=$DRAIN; [ "$c" = base-pgrepl-lib ] && drain=$BASE_DRAIN
                    "$drain" "${nc[@]}" --latency "$out" --count "$count" "$CONN" "$slot" - 2>"$WORK/lat.err" &
                    cons=$! ;;
                psycopg2)
                    "$PYTHON" "$ROOT/benches/e2e/psycopg2_latency.py" "$slot" "$count" "$out" 2>"$WORK/lat.err" &
                    cons=$! ;;
                pg_recvlogical | pgrepl-raw | base-pgrepl-raw)
                    rm -f "$WORK/lat.fifo"; mkfifo "$WORK/lat.fifo"
                    # at a higher priority where allowed: measure the producer, not the stamper waiting for a CPU
                    $NICE "$PYTHON" "$ROOT/benches/e2e/stamp.py" "$count" "$out" <"$WORK/lat.fifo" 2>"$WORK/lat.err" &
                    cons=$!
                    if [ "$c" = pg_recvlogical ]; then
                        "$RECVLOGICAL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -S "$slot" --start \
                            "${W2J2[@]}" -f - -n >"$WORK/lat.fifo" 2>/dev/null &
                    else
                        pgrepl=$PGREPL; [ "$c" = base-pgrepl-raw ] && pgrepl=$BASE_PGREPL
                        "$pgrepl" recv -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -S "$slot" --start \
                            "${W2J2[@]}" -f - -n >"$WORK/lat.fifo" 2>/dev/null &
                    fi
                    prod=$! ;;
            esac
            wait_active "$slot"
            achieved=$(generate "$rate" "$count")
            wait_pid "$cons" 60
            wait "$cons" || say "warning: $c latency consumer failed: $(tail -2 "$WORK/lat.err")"
            if [ -n "$prod" ]; then kill -TERM "$prod" 2>/dev/null || true; wait "$prod" 2>/dev/null || true; fi
            for _ in $(seq 1 100); do
                [ "$(sql "select active from pg_replication_slots where slot_name='$slot'")" = f ] && break
                sleep 0.05
            done
            sql "select pg_drop_replication_slot('$slot')" >/dev/null
            printf 'lat\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$c" "$out" "$achieved" "$rate" >>"$RES"
            say "  latency $rate/s $c: achieved $achieved tx/s, $(wc -l <"$out") samples"
        done
    done
fi

# ---- 4. footprint -------------------------------------------------------------------------------------------
if has footprint; then
    count() { cargo tree -q -e normal --prefix none "$@" | sed 's/ (\*)$//; s/ (proc-macro)$//' \
        | grep -v '^pgrepl' | sort -u | wc -l; }
    crates=$(count -p pgrepl)
    crates_tls=$(count -p pgrepl --features tls)
    crates_cli=$(count -p pgrepl-cli)
    strip -o "$WORK/pgrepl.stripped" "$PGREPL"
    printf 'foot\tcrates_lib\t%s\n' "$crates" >>"$RES"
    printf 'foot\tcrates_lib_tls\t%s\n' "$crates_tls" >>"$RES"
    printf 'foot\tcrates_cli\t%s\n' "$crates_cli" >>"$RES"
    printf 'foot\tcli_stripped_bytes\t%s\n' "$(stat -c %s "$WORK/pgrepl.stripped")" >>"$RES"
    if [ "$COLD" = 1 ]; then
        say "cold build in /tmp/coldbuild (load: $(cut -d' ' -f1-3 /proc/loadavg))"
        rm -rf /tmp/coldbuild
        t0=$(date +%s.%N)
        CARGO_TARGET_DIR=/tmp/coldbuild cargo build -q --release -p pgrepl-cli --bin pgrepl
        t1=$(date +%s.%N)
        printf 'foot\tcold_build_s\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}')" >>"$RES"
        printf 'foot\tcold_build_load\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES"
        rm -rf /tmp/coldbuild
    fi
fi

printf 'info\tmachine\t%s cores, %s, PostgreSQL %s\n' "$(nproc)" "$(uname -r)" "$(sql 'show server_version')" >>"$RES"
[ "$KEEP" = 1 ] && cp "$RES" "$WORK/results.kept.tsv"
"$PYTHON" "$ROOT/benches/e2e/report.py" "$RES" | tee ${OUT:+"$OUT"}
