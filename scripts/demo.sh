#!/usr/bin/env bash
# `pgrepl demo`: starts a throwaway PostgreSQL 15 cluster (testkit/) and shows replication against it.
# Arguments are passed on to the demo subcommand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

bash scripts/install-deps.sh
exec cargo run --release -p pgrepl-cli -- demo "$@"
