#!/usr/bin/env bash
# Fuzz every parser (cargo-fuzz / libFuzzer; targets in fuzz/fuzz_targets/, see FUZZING.md).
#
#   scripts/fuzz.sh short            every target for FUZZ_SHORT_SECONDS (default 20 s) each: what CI runs
#   scripts/fuzz.sh long [SECONDS]   a campaign: every target for SECONDS (default 600) each, then a table of
#                                    executions, coverage (cov = edges, ft = features) and crashes per target
#   scripts/fuzz.sh build            build every target once
#   scripts/fuzz.sh list             the targets
#
# FUZZ_JOBS=N runs N targets at a time (default 1; the CI machine has 2 cores and runs other things).
# FUZZ_TARGETS="a b" restricts the run to those targets.
#
# Each target starts from its committed seeds (fuzz/corpus/<target>/, read only) plus whatever earlier runs on
# this machine found (fuzz/target/corpus-work/<target>/, not committed). Any crash, panic, leak, timeout
# (10 s per input; see run_one) or out-of-memory fails the run; the reproducer is left in fuzz/artifacts/<target>/ and its
# path printed with the command that replays it. A crash found this way becomes a regression test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

mode=${1:-short}
case "$mode" in
    short) seconds=${FUZZ_SHORT_SECONDS:-20} ;;
    long) seconds=${2:-600} ;;
    build | list) seconds=0 ;;
    *)
        echo "usage: scripts/fuzz.sh short | long [SECONDS] | build | list" >&2
        exit 2
        ;;
esac

# libFuzzer's instrumentation needs nightly flags: the nightly toolchain when installed, else the default one
# with RUSTC_BOOTSTRAP=1 (a toolchain cannot be downloaded on every machine; this works on stable too)
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    tc=(+nightly)
else
    tc=()
    export RUSTC_BOOTSTRAP=1
    echo "scripts/fuzz.sh: no nightly toolchain; using $(rustc -V) with RUSTC_BOOTSTRAP=1"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd fuzz
# every file in fuzz_targets/ (not `cargo fuzz list`, which also lists the capture tool)
all_targets=$(for f in fuzz_targets/*.rs; do basename "$f" .rs; done)
targets=${FUZZ_TARGETS:-$all_targets}
if [ "$mode" = list ]; then
    echo "$all_targets"
    exit 0
fi

echo "scripts/fuzz.sh: building every target (release, debug assertions, AddressSanitizer)"
mkdir -p target
if ! cargo "${tc[@]}" fuzz build -O >target/build.log 2>&1; then
    tail -40 target/build.log >&2
    echo "scripts/fuzz.sh: the fuzz targets did not build" >&2
    exit 1
fi
rm -f target/build.log
bin_dir=target/$(rustc "${tc[@]}" -vV | sed -n 's/^host: //p')/release
[ "$mode" = build ] && exit 0

logs=target/fuzz-logs
mkdir -p "$logs"

run_one() {
    local t=$1 work=target/corpus-work/$1 log=$logs/$1.log
    rm -rf "artifacts/$t"
    mkdir -p "$work" "artifacts/$t"
    # the first corpus directory receives new inputs; the committed seeds are only read
    local timeout=10
    if "$bin_dir/$t" "$work" "corpus/$t" -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
        echo "ok"
    else
        echo "FAILED"
    fi >"$logs/$t.status"
}

jobs_max=${FUZZ_JOBS:-1}
started=$SECONDS
for t in $targets; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
        sleep 1
    done
    echo "scripts/fuzz.sh: fuzzing $t for ${seconds}s"
    run_one "$t" &
done
wait

failed=0
summary=$logs/summary.txt
{
    printf '%-24s %12s %10s %8s %8s %8s  %s\n' target executions exec/s cov ft corpus result
    for t in $targets; do
        log=$logs/$t.log
        execs=$(grep -a 'stat::number_of_executed_units' "$log" 2>/dev/null | awk '{print $2}' | tail -1 || true)
        rate=$(grep -a 'stat::average_exec_per_sec' "$log" 2>/dev/null | awk '{print $2}' | tail -1 || true)
        last=$(grep -aE '^#[0-9]+.*cov: [0-9]+' "$log" 2>/dev/null | tail -1 || true)
        cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
        ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$last")
        corp=$(sed -nE 's/.*corp: ([0-9]+).*/\1/p' <<<"$last")
        result=$(cat "$logs/$t.status" 2>/dev/null || echo FAILED)
        printf '%-24s %12s %10s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
    done
} | tee "$summary"

for t in $targets; do
    if [ "$(cat "$logs/$t.status" 2>/dev/null)" != ok ]; then
        failed=1
        echo
        echo "==== $t FAILED; end of its log ($ROOT/fuzz/$logs/$t.log):"
        grep -aE 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written|==[0-9]+==' "$logs/$t.log" | head -20 || true
        for a in artifacts/"$t"/*; do
            [ -f "$a" ] || continue
            echo "reproducer: $ROOT/fuzz/$a"
            echo "  replay:   (cd fuzz && cargo +nightly fuzz run -O $t $a)"
            echo "  minimize: (cd fuzz && cargo +nightly fuzz tmin -O $t $a)"
        done
    fi
done
echo "scripts/fuzz.sh: $mode run of $(echo "$targets" | wc -w) targets took $((SECONDS - started)) s; summary in fuzz/$summary"
exit "$failed"
