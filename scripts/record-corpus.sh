#!/usr/bin/env bash
# Record the committed wal2json test corpus (tests/data/wal2json/*.w2j) from a live server.
#
# Starts a throwaway PostgreSQL cluster (initdb into a temp dir, free port, wal_level=logical, fsync=off),
# creates one wal2json slot, runs a workload that covers every option, type and known quirk of wal2json 2.5,
# then peeks the slot with many option combinations (peeking never consumes, so every file sees the same
# changes) and writes one file per combination.
#
# File format (".w2j", read by tests/wal2json_corpus.rs and benches/decode.rs): a first line
# `!options <wal2json options>` and then, for each payload (one XLogData message), a header line
# `#<byte length> <lsn>` followed by exactly that many raw bytes and a '\n'. Payloads are kept byte for byte
# (pretty-printed ones contain newlines; message content may be invalid UTF-8), which is why the format is
# length-prefixed instead of one payload per line.
#
# Usage: scripts/record-corpus.sh [OUTDIR]   (default tests/data/wal2json)
# Needs PostgreSQL 15 binaries (PGBIN, default /usr/lib/postgresql/15/bin) and wal2json installed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-tests/data/wal2json}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
mkdir -p "$OUT"

TMP=$(mktemp -d /tmp/pgrepl-corpus.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres "$TMP"; fi
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

PORT=${PORT:-}
if [ -z "$PORT" ]; then
  for p in $(seq 55400 55499); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PORT=$p; break; fi
  done
fi
# Some hardened builds only let approved libraries be output plugins.
EXTRA=""
if "$PGBIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
  EXTRA="-c output_plugin_libraries=pgoutput,test_decoding,wal2json"
fi
as_pg "$PGBIN/initdb" -D "$TMP/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/log" -w -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1 \
  -c wal_level=logical -c fsync=off -c max_replication_slots=10 -c max_wal_senders=10 -c TimeZone=UTC $EXTRA" start >/dev/null
P() { "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

P -c "select pg_create_logical_replication_slot('corpus','wal2json')" >/dev/null

# --- schema (DDL is not decoded) ---
P -o /dev/null <<'SQL'
create schema "MySchema";
create type "MySchema".mood as enum ('sad','ok','happy');
create type "we""ird" as enum ('x','y');
create domain posint as integer check (value > 0);
create table nums(id serial primary key, i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8,
                  n numeric, n122 numeric(12,2), b boolean);
create table texts(id int primary key, t text, vc varchar(20), c char(3), j json, jb jsonb, by bytea,
                   arr int[], tarr text[], ts timestamptz, u uuid, m money, d posint);
create table "MySchema"."My Table"(id serial primary key, "Weird ""Col""" text, mood "MySchema".mood, w "we""ird");
create table defaults(id int primary key,
                      q text default 'a"b\c',
                      x text default 'x","y',
                      s text default E'tab\there',
                      ts timestamptz default now(),
                      n int not null default 42,
                      plain text);
create table toasty(id int primary key, big text, small int);
alter table toasty alter column big set storage external;
create table nopk(a int, b text);
create table full_ident(id int primary key, v text, n int);
alter table full_ident replica identity full;
create table nothing_ident(id int primary key, v text);
alter table nothing_ident replica identity nothing;
create table composite_pk(a int, b text, v text, primary key (a, b));
create table trunc1(id int primary key);
create table trunc2(id int primary key);
create unlogged table unlogged_t(id int);
SQL

# --- workload (decoded) ---
P -o /dev/null <<'SQL'
insert into nums(i2,i4,i8,o,f4,f8,n,n122,b) values
  (-32768, 2147483647, -9223372036854775808, 4000000000, 3.4028235e+38, -0, 0.0000000001, 1234567890.12, true),
  (32767, -2147483648, 9223372036854775807, 0, 'NaN', 'Infinity', 'NaN', -0.5, false),
  (0, 0, 0, 1, '-Infinity', 1e-300, 123456789012345678901234567890.123456789, null, null),
  (null, null, null, null, '-0', '-0', 'Infinity', '-0', null),
  (1, 1, 1, 1, 1.5, 2.2250738585072014e-308, '-Infinity', 99.99, true);
insert into texts values
  (1, E'quote " backslash \\ slash / nl \n cr \r tab \t bs \b ff \f bell \x07 esc \x1b us \x1f del \x7f',
   'héllo wörld', 'ab', '{"a": [1, 2.50, "x\"y"], "b": null}', '{"k": "v\\w", "n": 1.0}', '\x00ff10',
   '{1,2,NULL,3}', '{"a b","c\"d",NULL,"e\\f"}', '2024-01-02 03:04:05.123456+00',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 12.34, 7),
  (2, '日本語テキスト 🎉 emoji', '', '', 'null', '[]', '', '{}', '{}', 'infinity', null, -1, null),
  (3, null, null, null, null, null, null, null, null, null, null, null, null),
  (4, '', 'x', 'x', '"str"', '"str"', '\x', '{{1,2},{3,4}}', '{"{}"}', '-infinity', null, 0, 1);
insert into "MySchema"."My Table" values (1, 'we"ird value', 'happy', 'x'), (2, null, null, null);
insert into defaults(id, plain) values (1, 'p');
insert into defaults values (2, 'given', 'given2', 'given3', '2024-01-01', 7, null);
insert into toasty values (1, (select string_agg(md5(g::text), '') from generate_series(1, 400) g), 1);
update toasty set small = 2 where id = 1;
update toasty set big = 'short now' where id = 1;
insert into nopk values (1, 'a'), (2, null);
update nopk set b = 'z' where a = 1;
delete from nopk where a = 2;
insert into full_ident values (1, 'v1', 1), (2, null, 2);
update full_ident set v = 'v1b' where id = 1;
update full_ident set id = 3 where id = 2;
delete from full_ident where id = 1;
insert into nothing_ident values (1, 'x');
update nothing_ident set v = 'y';
delete from nothing_ident;
insert into composite_pk values (1, 'k"1', 'v');
update composite_pk set b = 'k2' where a = 1;
update composite_pk set v = 'v2';
delete from composite_pk;
update nums set i4 = i4 - 1 where id = 1;
delete from nums where id = 2;
update "MySchema"."My Table" set mood = 'sad' where id = 1;
delete from "MySchema"."My Table" where id = 2;
update texts set t = t || '!' where id = 1;
delete from texts where id = 3;
insert into trunc1 values (1);
insert into trunc2 values (1);
truncate trunc1, trunc2;
truncate trunc1 restart identity cascade;
select pg_logical_emit_message(true, 'tx-prefix', 'transactional "quoted" \ content');
select pg_logical_emit_message(false, 'nontx', 'plain content');
select pg_logical_emit_message(false, 'bin', '\xff00'::bytea);
select pg_logical_emit_message(false, 'bin2', '\xc328e282a8ff41'::bytea);
select pg_logical_emit_message(false, 'ctl', E'line1\nline2\ttab "q" \\ back \x01');
select pg_logical_emit_message(false, '', '');
SQL
# a transaction with several changes then a non-transactional message (wal2json 2.5 leading-comma bug in v1)
P -o /dev/null <<'SQL'
begin;
insert into trunc1 values (10);
insert into trunc1 values (11);
insert into trunc1 values (12);
select pg_logical_emit_message(true, 'in-tx', 'inside');
commit;
select pg_logical_emit_message(false, 'after-tx', 'after a multi-change transaction');
begin;
insert into trunc1 values (20), (21);
commit;
select pg_logical_emit_message(false, 'after-tx2', 'second');
SQL
# empty transactions: an xid without decoded changes; an unlogged-table-only transaction
P -o /dev/null <<'SQL'
begin; select txid_current(); commit;
begin; insert into unlogged_t values (1); select txid_current(); commit;
SQL
# a change with a replication origin set in the session
P -o /dev/null <<'SQL'
select pg_replication_origin_create('corpus_origin');
select pg_replication_origin_session_setup('corpus_origin');
begin;
select pg_replication_origin_xact_setup('0/AABBCCDD', '2024-05-06 07:08:09+00');
insert into trunc2 values (100);
commit;
select pg_replication_origin_session_reset();
SQL
# a larger transaction (chunks, pretty-print line structure)
P -c "insert into nums(i2,i4,i8,f8,n,b) select g % 100, g, g::int8 * 1000000007, g / 7.0, g / 3.0, g % 2 = 0 from generate_series(1, 40) g"
P -c "update nums set b = not b where id > 5 and id < 15"

record() {
  local name=$1 opts=$2
  local sqlopts
  sqlopts=$(echo "$opts" | awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); printf ", %s%s%s, %s%s%s", q, kv[1], q, q, kv[2], q } }' q="'")
  {
    echo "!options $opts"
    P -At -F ' ' -c "select lsn, encode(data, 'hex') from pg_logical_slot_peek_binary_changes('corpus', NULL, NULL $sqlopts)" 2>/dev/null |
      perl -ne 'chomp; my ($lsn, $hex) = split / /; $hex //= ""; my $b = pack("H*", $hex); print "#" . length($b) . " $lsn\n$b\n"'
  } >"$OUT/$name.w2j"
  echo "$OUT/$name.w2j: $(grep -ac '^#' "$OUT/$name.w2j" || true) payloads"
}

ALL2="include-xids=1 include-timestamp=1 include-origin=1 include-lsn=1 include-type-oids=1 include-domain-data-type=1 include-column-positions=1 include-not-null=1 include-default=1 include-pk=1"
record v2-default "format-version=2"
record v2-all "format-version=2 $ALL2"
record v2-minimal "format-version=2 include-schemas=0 include-types=0 include-transaction=0"
record v2-xids-ts "format-version=2 include-xids=1 include-timestamp=1"
record v2-lsn-pk "format-version=2 include-lsn=1 include-pk=1 include-type-oids=1"
record v2-positions-notnull "format-version=2 include-column-positions=1 include-not-null=1 include-default=1 include-schemas=0"
record v2-domain-notypes "format-version=2 include-domain-data-type=1 include-types=0 include-default=1 include-origin=1"

ALL1="include-xids=1 include-timestamp=1 include-origin=1 include-lsn=1 include-type-oids=1 include-domain-data-type=1 include-column-positions=1 include-not-null=1 include-default=1 include-pk=1"
record v1-default "format-version=1"
record v1-all "format-version=1 $ALL1"
record v1-notypmod "format-version=1 include-typmod=0 include-schemas=0 include-types=0"
record v1-pretty "format-version=1 pretty-print=1"
record v1-pretty-all "format-version=1 pretty-print=1 $ALL1"
record v1-chunks "format-version=1 write-in-chunks=1"
record v1-chunks-all "format-version=1 write-in-chunks=1 $ALL1"
record v1-chunks-pretty "format-version=1 write-in-chunks=1 pretty-print=1 include-xids=1 include-timestamp=1"
du -sh "$OUT"
