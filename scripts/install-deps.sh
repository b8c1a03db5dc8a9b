#!/usr/bin/env bash
# Installs what the tests and `pgrepl demo` need, and only what is missing:
#   - the PostgreSQL 15 server, its client and wal2json (Debian packages postgresql-15, postgresql-client-15,
#     postgresql-15-wal2json), used by testkit/src/lib.rs to run throwaway clusters; Debian's own cluster is neither
#     created nor started;
#   - the rustfmt and clippy components (scripts/test.sh runs both).
# Idempotent, and silent when everything is already there. Runs apt-get as root, or through sudo.
#
# Only the missing packages are named to apt-get, and an installed server is never upgraded: a machine that has
# 15.18 keeps 15.18 when only wal2json is missing (`apt-get install postgresql-15 …` would bring the newest 15.x
# and test another server than the one the machine has; issue 15). The installed version is named on the
# command line with the missing packages, so their dependency on postgresql-15 cannot move it either.
# INSTALL_DEPS_SIMULATE=1 prints what apt-get would do (apt-get -s) instead of installing.
set -euo pipefail

PG_BIN=${INSTALL_DEPS_PG_BIN:-/usr/lib/postgresql/15/bin}
WAL2JSON_SO=${INSTALL_DEPS_WAL2JSON_SO:-/usr/lib/postgresql/15/lib/wal2json.so}

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

# The version of an installed Debian package, or nothing.
installed_version() {
    dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '$3 == "installed" { print $4 }'
}

install_postgres() {
    local packages=() server
    server=$(installed_version postgresql-15)
    if [ -n "$server" ]; then
        # keep the server there is (the missing packages depend on postgresql-15: never let that upgrade it;
        # named with its version, it is reinstalled only if its files are gone)
        packages+=("postgresql-15=$server")
    elif [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/initdb" ]; then
        packages+=(postgresql-15)
    fi
    if [ ! -x "$PG_BIN/psql" ]; then packages+=(postgresql-client-15); fi
    if [ ! -f "$WAL2JSON_SO" ]; then packages+=(postgresql-15-wal2json); fi
    say "installing ${packages[*]}"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if [ -n "${INSTALL_DEPS_SIMULATE:-}" ]; then
        apt+=(-s)
    fi
    # No maintainer script may start a service while we install (the standard policy-rc.d "deny" answer).
    if [ -z "${INSTALL_DEPS_SIMULATE:-}" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        policy_created=1
    fi
    as_root apt-get update -q
    # And postgresql-15's postinst must not create Debian's main cluster: the tests make their own.
    if [ -z "${INSTALL_DEPS_SIMULATE:-}" ]; then
        if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
            as_root "${apt[@]}" install postgresql-common
        fi
        as_root sed -ri 's/^[#[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
            /etc/postgresql-common/createcluster.conf
    fi
    as_root "${apt[@]}" install "${packages[@]}"
    if [ -n "${INSTALL_DEPS_SIMULATE:-}" ]; then
        exit 0
    fi
    if [ -n "$server" ] && [ "$(installed_version postgresql-15)" != "$server" ]; then
        say "postgresql-15 changed from $server to $(installed_version postgresql-15)"
        return 1
    fi
    if [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/psql" ] || [ ! -f "$WAL2JSON_SO" ]; then
        say "still missing after install: $PG_BIN/postgres, $PG_BIN/psql or $WAL2JSON_SO"
        return 1
    fi
}

if [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/psql" ] || [ ! -f "$WAL2JSON_SO" ]; then
    install_postgres
fi

# As root, testkit/src/lib.rs runs PostgreSQL as the `postgres` user through runuser (both come with the above).
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
