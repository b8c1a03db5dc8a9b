#!/usr/bin/env bash
# The full CLI fault run of issue 15 (tests/recv_faults.rs with PGREPL_RECV_FAULTS=full): `pgrepl recv -f FILE`
# as a child process, raw and --output json, each with -F 0 and with the default fsync interval; in each, 26
# walsender kills (6 of them at connection/startup), 4 immediate restarts, 6 SIGKILLs of the CLI (2 in a large
# transaction) and 2 freezes past wal_sender_timeout, then FILE checked against the table and a test_decoding
# slot. Prints one summary line per configuration (docs/fault-injection.md records them).
#
#   scripts/fault-cli.sh            # a fresh seed per configuration (printed)
#   scripts/fault-cli.sh SEED       # replay: the same fault order (PGREPL_RECV_FAULT_SEED) in every configuration
#   THREADS=1 scripts/fault-cli.sh  # one configuration at a time (default: 2 at once)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
bash scripts/install-deps.sh

if [ $# -gt 0 ]; then
    export PGREPL_RECV_FAULT_SEED="$1"
fi
log=$(mktemp -t fault-cli.XXXXXX.log)
started=$SECONDS
status=0
PGREPL_RECV_FAULTS=full cargo test -p pgrepl-cli --test recv_faults -- --nocapture --test-threads="${THREADS:-2}" 2>&1 \
    | tee "$log" || status=$?
echo
echo "==== scripts/fault-cli.sh: summary ($((SECONDS - started)) s, full log in $log) ===="
grep -E '^recv_faults \[.*\] seed [0-9]+:' "$log" || echo "(no summary line: see the log)"
grep -E '^test result:' "$log" || true
exit "$status"
