#!/usr/bin/env bash
# Installs what the tests and `pgrepl demo` need, and only what is missing:
#   - the PostgreSQL 15 server and wal2json (Debian packages postgresql-15, postgresql-15-wal2json), used by
#     src/cluster.rs to run throwaway clusters; Debian's own cluster is neither created nor started;
#   - the rustfmt and clippy components (scripts/test.sh runs both).
# Idempotent, and silent when everything is already there. Runs apt-get as root, or through sudo.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
WAL2JSON_SO=/usr/lib/postgresql/15/lib/wal2json.so

say() { echo "install-deps: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "not root and no sudo: cannot run: $*"
        return 1
    fi
}

policy_created=""
cleanup() {
    if [ -n "$policy_created" ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

install_postgres() {
    say "installing postgresql-15 and postgresql-15-wal2json"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    # No maintainer script may start a service while we install (the standard policy-rc.d "deny" answer).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        policy_created=1
    fi
    as_root apt-get update -q
    # And postgresql-15's postinst must not create Debian's main cluster: the tests make their own.
    if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
        as_root "${apt[@]}" install postgresql-common
    fi
    as_root sed -ri 's/^[#[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf
    as_root "${apt[@]}" install postgresql-15 postgresql-15-wal2json
    if [ ! -x "$PG_BIN/postgres" ] || [ ! -f "$WAL2JSON_SO" ]; then
        say "still missing after install: $PG_BIN/postgres or $WAL2JSON_SO"
        return 1
    fi
}

if [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/psql" ] || [ ! -f "$WAL2JSON_SO" ]; then
    install_postgres
fi

# As root, src/cluster.rs runs PostgreSQL as the `postgres` user through runuser (both come with the above).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    say "running as root needs the postgres OS user (normally created by postgresql-common)"
    exit 1
fi

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
for component in rustfmt clippy; do
    case $component in
        rustfmt) probe=(cargo fmt --version) ;;
        clippy) probe=(cargo clippy --version) ;;
    esac
    if ! "${probe[@]}" >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            say "installing the $component component"
            rustup component add "$component"
        else
            say "cargo $component is missing and there is no rustup to add it"
            exit 1
        fi
    fi
done
