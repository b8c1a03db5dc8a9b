#!/usr/bin/env bash
# THE test command (README): dependencies, formatting, lints, then every test. CI runs it through .ci/run, as
# root, with CI=true and no standard input. Each step is its own section; add new ones (fuzz runs…) before
# the final line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

started=$SECONDS
section() { printf '\n==== %s (%d s) ====\n' "$*" "$((SECONDS - started))"; }

section "dependencies: PostgreSQL 15 + wal2json, rustfmt, clippy"
bash scripts/install-deps.sh

section "format: cargo fmt --check"
cargo fmt --all -- --check

section "lints: cargo clippy -D warnings (the workspace, every feature; the library's default build alone; each TLS provider alone)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo clippy -p pgrepl --lib -- -D warnings
# --all-features builds both TLS providers and uses aws-lc-rs (src/tls/provider.rs): each one alone too
cargo clippy -p pgrepl --all-targets --features tls -- -D warnings
cargo clippy -p pgrepl --all-targets --features tls-aws-lc -- -D warnings

section "tests: cargo test --workspace --all-targets (unit, integration against throwaway clusters, benches as tests)"
cargo test --workspace --all-targets --all-features

section "tests: TLS with the ring provider (the \`tls\` feature; --all-features above runs them with aws-lc-rs)"
cargo test -p pgrepl --features tls --lib --test tls

section "doctests: cargo test --doc"
cargo test --workspace --all-features --doc

# ---- server matrix subset (issue 18; owner of this block: scripts/matrix.sh, docs/server-matrix.md) ----
# The full suite above ran on Debian's PostgreSQL 15; the oldest and the newest supported majors get the suites
# where server releases differ most in what a stream sees (scripts/matrix.sh for all of them, all majors).
section "server matrix: streaming, faults, test_decoding, pgoutput on PostgreSQL 12 and 18 (scripts/matrix.sh)"
bash scripts/matrix.sh --jobs 2 --suites streaming,faults,test_decoding,pgoutput 12 18
# ---- end server matrix subset ----

# ---- fuzzing (issue 4; owner of this block: scripts/fuzz.sh, FUZZING.md) ----
section "fuzz: every target for ${FUZZ_SHORT_SECONDS:-20} s (scripts/fuzz.sh short; a crash fails and prints its reproducer)"
bash scripts/fuzz.sh short
# ---- end fuzzing ----

echo
echo "scripts/test.sh: all checks passed in $((SECONDS - started)) s"
