//! pgoutput into typed events against real servers. The proof that the mapping is right: the same workload
//! through a pgoutput slot (with a publication) and a wal2json format 2 slot gives the same events — rows, values,
//! type names, type OIDs, xids, commit times and LSNs — except the documented differences (src/pgoutput/mod.rs),
//! each asserted where the workload makes it. Then protocol 2 (streamed transactions, interleaved, with a
//! subtransaction and a whole transaction aborted), protocol 3 (two-phase, streamed prepare), `binary true`,
//! the type-name table against the server's `format_type`, and protocol 4 (parallel streaming's Stream Abort)
//! on a PostgreSQL 16+ build when one is available (skipped with a note otherwise).
//!
//! On every major 12-18 (`PG_BIN_DIR`, scripts/matrix.sh): where the server has no wal2json (all but Debian's
//! 15) the streams are compared with a test_decoding slot on what it prints the same way (`shape`), and
//! pgoutput's own facts are asserted as on 15; what a release lacks is asserted as the server's refusal —
//! `messages`, `binary` and protocol 2 (`streaming`) before 14, protocol 3 (`two_phase`) before 15 —; 18 no
//! longer streams a transaction it knows aborted.
//!
//! `PGREPL_PGOUTPUT_SEEDS=DIR` writes each workload's payloads there as fuzz seeds (`fuzz/corpus/pgoutput/`'s
//! format: each payload as a 4-byte big-endian length and its bytes).
// Test code: a failed unwrap, expect, index or panic is a failed test; the library's no-panic policy
// (Cargo.toml [workspace.lints.clippy]) is lifted for the whole test crate, its helpers included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::proto::replication::XLogData;
use pgrepl::stream::{ReplicationStream, StreamConfig};

use pgrepl::event::{Column, Event, StreamKind, TwoPhaseKind, Value};
use pgrepl::pgoutput::{builtin_type_name, parse, quote_identifier, Message, PgoutputDecoder};
use pgrepl::plugin::Decoding;
use pgrepl::plugin::{Boundary, OutputPlugin, Pgoutput, Route, TestDecoding, TxnClassifier, Wal2json};
use pgrepl::spill::{Held, Spill};
use pgrepl::Lsn;
use pgrepl_testkit::{ClusterOptions, TempCluster};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn cluster(bin_dir: Option<PathBuf>) -> TempCluster {
    let dir = bin_dir.clone().unwrap_or_else(|| pgrepl_testkit::default_bin_dir().unwrap());
    let mut extra_conf = vec!["timezone = 'UTC'".to_string(), "max_prepared_transactions = 8".into()];
    // logical_decoding_work_mem came with 13 (a 12 decodes every transaction whole at its commit)
    if pgrepl_testkit::server_version(&dir).unwrap().0 >= 13 {
        extra_conf.push("logical_decoding_work_mem = '64kB'".into());
    }
    TempCluster::start(ClusterOptions { extra_conf, bin_dir, ..ClusterOptions::default() }).unwrap()
}

/// `(lsn, data)` of each message of `pg_logical_slot_peek_binary_changes` (the `lsn` is where the walsender would
/// send it: its XLogData `dataStart`).
fn peek_binary(c: &TempCluster, slot: &str, options: &str) -> Vec<(Lsn, Vec<u8>)> {
    let out = c
        .psql(
            "postgres",
            &format!(
                "SELECT lsn, encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('{slot}', NULL, NULL{options})"
            ),
        )
        .unwrap();
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (lsn, hex) = l.split_once('|').unwrap();
            (Lsn::parse(lsn).unwrap(), unhex(hex))
        })
        .collect()
}

fn peek_text(c: &TempCluster, slot: &str, options: &str) -> Vec<Vec<u8>> {
    let out = c
        .psql(
            "postgres",
            &format!(
                "SELECT encode(convert_to(data, 'UTF8'), 'hex') FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL{options})"
            ),
        )
        .unwrap();
    out.lines().filter(|l| !l.is_empty()).map(unhex).collect()
}

const WAL2JSON: &str = ", 'format-version', '2', 'include-xids', '1', 'include-timestamp', '1', 'include-lsn', '1', \
                        'include-type-oids', '1'";

fn decode_wal2json(payloads: &[Vec<u8>]) -> Vec<Event<'static>> {
    let mut d = Wal2json.decoder();
    let mut out = vec![];
    for p in payloads {
        for ev in d.events(p).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(p))) {
            out.push(ev.unwrap().into_owned());
        }
    }
    out
}

fn decode_test_decoding(payloads: &[Vec<u8>]) -> Vec<Event<'static>> {
    let mut d = TestDecoding.decoder();
    let mut out = vec![];
    for p in payloads {
        for ev in d.events(p).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(p))) {
            out.push(ev.unwrap().into_owned());
        }
    }
    out
}

/// The plugin of the reference slot the pgoutput streams are compared with: wal2json (format 2) where the
/// server has it (Debian's 15), compared on everything [`common`] keeps; elsewhere test_decoding, compared on
/// what it prints the same way ([`shape`]). (pgoutput's own facts are asserted on every release.)
fn reference_plugin(c: &TempCluster) -> &'static str {
    if c.has_wal2json() {
        "wal2json"
    } else {
        "test_decoding"
    }
}

/// An event's comparison line ([`common`] or [`shape`]).
type Line = fn(&Event<'_>) -> String;

/// The reference slot's transactions, and the comparison line its plugin allows.
fn reference_transactions(c: &TempCluster, slot: &str) -> (Vec<Vec<String>>, Line) {
    if c.has_wal2json() {
        (transactions_with(&decode_wal2json(&peek_text(c, slot, WAL2JSON)), common), common)
    } else {
        (transactions_with(&decode_test_decoding(&peek_text(c, slot, "")), shape), shape)
    }
}

/// What test_decoding and pgoutput print the same way: a change's kind, table, and its columns' names and values
/// (the old key's for a DELETE); test_decoding has no type OIDs, typmods or per-change xids.
fn shape(ev: &Event<'_>) -> String {
    let cols = |cs: &[Column<'_>]| cs.iter().map(|c| format!("{}={:?}", c.name, c.value)).collect::<Vec<_>>().join(" ");
    match ev {
        Event::Insert(c) | Event::Update(c) => {
            format!("{:?} {:?}.{} [{}]", ev.kind(), c.schema, c.table, cols(&c.columns))
        }
        Event::Delete(c) => format!("{:?} {:?}.{} [{}]", ev.kind(), c.schema, c.table, cols(&c.identity)),
        Event::Truncate(t) => format!("T {:?}.{}", t.schema, t.table),
        Event::Message(m) => format!("M {} {} {:?}", m.transactional, m.prefix, m.content),
        other => format!("{:?}", other.kind()),
    }
}

/// Decode with a fresh decoder, checking the tracker's boundaries and `commit_lsn` against the payloads as it
/// goes: every Begin/Begin Prepare opens, every commit/prepare closes with its end LSN = where it was sent.
fn decode_pgoutput(payloads: &[(Lsn, Vec<u8>)]) -> Vec<Event<'static>> {
    let plugin = Pgoutput::new(["p"]);
    let mut tracker = plugin.tracker();
    let mut d = PgoutputDecoder::new();
    let mut out = vec![];
    for (lsn, p) in payloads {
        let b = tracker.classify(p);
        let in_stream = d.in_stream();
        let m = parse(p, in_stream).unwrap_or_else(|e| panic!("{e}: {p:?}"));
        let want = match m {
            Message::Begin(_) | Message::BeginPrepare(_) => Boundary::Begin,
            Message::Commit(_) | Message::Prepare(_) | Message::StreamCommit(_) | Message::StreamPrepare(_) => {
                Boundary::End
            }
            Message::CommitPrepared(_) | Message::RollbackPrepared(_) => Boundary::Whole,
            Message::Message(m) if !m.transactional() => Boundary::Whole,
            _ => Boundary::Inside,
        };
        assert_eq!(b, want, "{m:?}");
        if matches!(b, Boundary::End | Boundary::Whole) {
            // the server sends a commit at its end LSN: acknowledging there is acknowledging the end LSN
            assert_eq!(plugin.commit_lsn(p, *lsn), *lsn, "{m:?} sent at {lsn}");
        }
        for ev in d.events(p).unwrap_or_else(|e| panic!("{e}: {m:?}")) {
            out.push(ev.unwrap().into_owned());
        }
    }
    assert!(!d.in_transaction(), "a transaction left open");
    out
}

/// Writes a fuzz seed of at most the first 60 and the last 40 payloads (the relations, and the ends of
/// streamed transactions).
fn dump_seeds(name: &str, payloads: &[(Lsn, Vec<u8>)]) {
    let Some(dir) = std::env::var_os("PGREPL_PGOUTPUT_SEEDS") else { return };
    let mut seed = vec![];
    let keep = |i: usize| i < 60 || i + 40 >= payloads.len();
    for (_, p) in payloads.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, p)| p) {
        seed.extend_from_slice(&(p.len() as u32).to_be_bytes());
        seed.extend_from_slice(p);
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(PathBuf::from(dir).join(name), seed).unwrap();
}

fn is_special_number(v: &Value<'_>) -> bool {
    matches!(v, Value::String(s) if matches!(&**s, "NaN" | "Infinity" | "-Infinity"))
}

/// The fields both plugins give, in one line per event; pgoutput's documented differences folded into
/// wal2json's form (NaN/Infinity as null, a domain's base type as the domain's name `posint`, no flags on
/// TRUNCATE), and what only one of them prints left out (change LSNs and times, Begin's next LSN, message times).
fn common(ev: &Event<'_>) -> String {
    let cols = |cs: &[Column<'_>]| {
        cs.iter()
            .map(|c| {
                let v = if is_special_number(&c.value) { Value::Null } else { c.value.clone() };
                let ty = match c.type_name.as_deref() {
                    Some("integer") if c.type_oid > Some(16383) => "posint",
                    t => t.unwrap_or("?"),
                };
                format!("{}:{}:{:?}={:?}", c.name, ty, c.type_oid, v)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    match ev {
        Event::Begin(t) => format!("B {:?} {:?} {:?}", t.xid, t.lsn, t.timestamp),
        Event::Commit(t) => format!("C {:?} {:?} {:?} {:?}", t.xid, t.lsn, t.next_lsn, t.timestamp),
        Event::Insert(c) | Event::Update(c) | Event::Delete(c) => format!(
            "{:?} {:?}.{} xid={:?} [{}] id=[{}]",
            ev.kind(),
            c.schema,
            c.table,
            c.xid,
            cols(&c.columns),
            cols(&c.identity)
        ),
        Event::Truncate(t) => format!("T {:?}.{} {:?}", t.schema, t.table, t.xid),
        Event::Message(m) => format!("M {:?} {:?} {} {} {:?}", m.xid, m.lsn, m.transactional, m.prefix, m.content),
        other => format!("{other:?}"),
    }
}

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE SCHEMA "My Schema";
CREATE TYPE "My Schema"."Odd" AS ENUM ('x', 'y');
CREATE TABLE t(id int PRIMARY KEY, s2 smallint, big bigint, n numeric(10,2), f float8, r real, b boolean, s text,
               v varchar(20), c char(3), bin bytea, ts timestamptz, ts3 timestamp(3) with time zone, d date,
               tm time(2), iv interval day to second(3), u uuid, j jsonb, a int[], ta text[], m mood, ma mood[],
               odd "My Schema"."Odd", dom posint, bits bit(5), vb varbit(8), o oid, toasted text);
ALTER TABLE t ALTER COLUMN toasted SET STORAGE EXTERNAL;
CREATE TABLE "My Schema"."Odd ""Tab""" ("Col 1" int PRIMARY KEY, "select" text);
CREATE TABLE full_t(id int, v text);
ALTER TABLE full_t REPLICA IDENTITY FULL;
CREATE TABLE parent(id int PRIMARY KEY);
CREATE TABLE child(id int PRIMARY KEY, p int REFERENCES parent(id));
CREATE TABLE seq_t(id serial PRIMARY KEY, v text);
CREATE PUBLICATION p FOR ALL TABLES;
"#;

const WORKLOAD: &str = r#"
BEGIN;
INSERT INTO t VALUES (1, 7, 9223372036854775807, 12.50, 1.5e300, 1.5, true, 'it''s "q" \ x', 'v', 'ab',
                      '\x00ff', '2026-01-02 03:04:05.123456+00', '2026-01-02 03:04:05.123+00', '2026-01-02',
                      '12:34:56.78', '1 day 2 hours 3.5 seconds', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                      '{"k": [1, "x"]}', '{1,2}', '{"a b",c}', 'happy', '{sad,happy}', 'y', 5, B'10101', B'101',
                      4000000000, repeat('x', 10000));
INSERT INTO t(id, f, n, r) VALUES (2, 'NaN', 'NaN', '-Infinity'), (3, 'Infinity', -0.5, 0), (4, '-Infinity', 0, 1e-5);
COMMIT;
INSERT INTO "My Schema"."Odd ""Tab""" VALUES (7, 'sel''ect');
UPDATE t SET s = 'new' WHERE id = 1;
UPDATE t SET id = 10 WHERE id = 2;
DELETE FROM t WHERE id = 10;
INSERT INTO full_t VALUES (1, 'a');
UPDATE full_t SET v = 'b';
DELETE FROM full_t;
INSERT INTO parent VALUES (1);
INSERT INTO child VALUES (1, 1);
INSERT INTO seq_t(v) VALUES ('x');
TRUNCATE parent CASCADE;
TRUNCATE seq_t RESTART IDENTITY;
SELECT pg_logical_emit_message(true, 'pre', 'payload');
SELECT pg_logical_emit_message(false, 'nt', 'x');
INSERT INTO seq_t(v) VALUES ('after the message, so that it is flushed');
"#;

#[test]
fn pgoutput_and_wal2json_give_the_same_events() {
    let c = cluster(None);
    c.psql("postgres", SCHEMA).unwrap();
    c.psql("postgres", "SELECT pg_create_logical_replication_slot('po', 'pgoutput')").unwrap();
    let wal2json = c.has_wal2json();
    if wal2json {
        c.psql("postgres", "SELECT pg_create_logical_replication_slot('wj', 'wal2json')").unwrap();
    }
    c.psql("postgres", WORKLOAD).unwrap();
    // `messages` came with 14: an older pgoutput refuses the option, and sends no messages
    let messages = c.major() >= 14;
    let options = ", 'proto_version', '1', 'publication_names', 'p'";
    if !messages {
        let q = format!(
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('po', NULL, NULL{options}, 'messages', 'true')"
        );
        let e = c.psql("postgres", &q).unwrap_err();
        assert!(e.to_string().contains("unrecognized pgoutput option: messages"), "PostgreSQL {}: {e}", c.version());
    }
    let po_raw = peek_binary(&c, "po", &format!("{options}{}", if messages { ", 'messages', 'true'" } else { "" }));
    dump_seeds("workload-proto1", &po_raw);
    let po = decode_pgoutput(&po_raw);
    let wj = if wal2json { decode_wal2json(&peek_text(&c, "wj", WAL2JSON)) } else { vec![] };

    if wal2json {
        let po_common: Vec<String> = po.iter().map(common).collect();
        let wj_common: Vec<String> = wj.iter().map(common).collect();
        assert_eq!(po_common, wj_common, "\npgoutput:\n{po_common:#?}\nwal2json:\n{wj_common:#?}");
    } else {
        pgrepl_testkit::skip(&format!(
            "pgoutput's own facts checked; its comparison with wal2json not run: wal2json is packaged for \
             PostgreSQL 15 only (server {})",
            c.version()
        ));
    }

    // the differences, where the workload makes them
    let row = |evs: &[Event<'static>], id: i64| {
        evs.iter()
            .filter_map(Event::change)
            .find(|c| c.column("id").and_then(|v| v.value.as_i64()) == Some(id))
            .cloned()
            .unwrap()
    };
    for (col, text) in [("f", "NaN"), ("n", "NaN"), ("r", "-Infinity")] {
        assert_eq!(row(&po, 2).column(col).unwrap().value, Value::String(text.into()));
        if wal2json {
            assert_eq!(row(&wj, 2).column(col).unwrap().value, Value::Null);
        }
    }
    assert_eq!(row(&po, 1).column("dom").unwrap().type_name.as_deref(), Some("integer"));
    if wal2json {
        assert_eq!(row(&wj, 1).column("dom").unwrap().type_name.as_deref(), Some("posint"));
    }
    // every other type name is wal2json's, typmods included
    let r1 = row(&po, 1);
    for (col, ty) in [
        ("n", "numeric(10,2)"),
        ("v", "character varying(20)"),
        ("c", "character(3)"),
        ("ts3", "timestamp(3) with time zone"),
        ("tm", "time(2) without time zone"),
        ("iv", "interval day to second(3)"),
        ("bits", "bit(5)"),
        ("vb", "bit varying(8)"),
        ("a", "integer[]"),
        ("ma", "mood[]"),
        ("odd", "\"My Schema\".\"Odd\""),
    ] {
        assert_eq!(r1.column(col).unwrap().type_name.as_deref(), Some(ty), "{col}");
    }
    assert_eq!(r1.column("bin").unwrap().value, Value::String("00ff".into()));
    assert_eq!(r1.column("b").unwrap().value, Value::Bool(true));
    assert_eq!(r1.column("big").unwrap().value, Value::Number("9223372036854775807".into()));
    // the unchanged TOASTed value is absent from the UPDATE, in both
    let upd = po.iter().find_map(|e| if let Event::Update(c) = e { Some(c) } else { None }).unwrap();
    assert_eq!(upd.column("s").unwrap().value, Value::String("new".into()));
    assert!(upd.column("toasted").is_none());
    assert!(row(&po, 1).column("toasted").is_some());
    // TRUNCATE flags from pgoutput only
    let truncs: Vec<_> = po
        .iter()
        .filter_map(|e| {
            if let Event::Truncate(t) = e {
                Some((t.table.to_string(), t.cascade, t.restart_seqs))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        truncs,
        [
            ("parent".into(), Some(true), Some(false)),
            ("child".into(), Some(true), Some(false)),
            ("seq_t".into(), Some(false), Some(true))
        ]
    );
    // the non-transactional message, alone (14+: `messages`)
    assert_eq!(
        po.iter().any(|e| matches!(e, Event::Message(m) if !m.transactional && m.prefix == "nt")),
        messages,
        "PostgreSQL {}",
        c.version()
    );
    // commit times are there, in UTC
    assert!(po.iter().all(|e| match e {
        Event::Begin(t) | Event::Commit(t) => t.timestamp.as_deref().is_some_and(|s| s.ends_with("+00")),
        _ => true,
    }));
}

#[test]
fn type_names_and_quoting_match_the_server() {
    let c = cluster(None);
    let out = c
        .psql("postgres", "SELECT oid, format_type(oid, -1) FROM pg_type WHERE oid < 10000 AND typtype <> 'p'")
        .unwrap();
    let mut n = 0;
    for l in out.lines() {
        let (oid, name) = l.split_once('|').unwrap();
        assert_eq!(builtin_type_name(oid.parse().unwrap(), -1).as_deref(), Some(name), "oid {oid}");
        n += 1;
    }
    // (12 and 13 have no multirange types)
    assert!(n > if c.major() >= 14 { 150 } else { 140 }, "{n} types");
    // a negative numeric scale is 15's
    let c_type = if c.major() >= 15 { "numeric(3,-1)" } else { "numeric(3,1)" };
    c.psql(
        "postgres",
        &"CREATE TABLE typmods(a numeric(10,2), b numeric(5), c NUMERIC_C, d varchar(1), e char(10), f bit(1),
                              g varbit(64), h time(0), i timetz(3), j timestamp(6), k timestamptz(0), l interval year,
                              m interval month, n interval day, o interval hour, p interval minute, q interval second(2),
                              r interval year to month, s interval day to hour, t interval day to minute,
                              u interval day to second, v interval hour to minute, w interval hour to second(1),
                              x interval minute to second(4), y interval(3), z numeric(10,2)[], aa varchar(3)[],
                              ab bit(2)[], ac timestamptz(2)[], ad interval day to second(1)[], ae char)"
            .replace("NUMERIC_C", c_type),
    )
    .unwrap();
    let out = c
        .psql(
            "postgres",
            "SELECT atttypid, atttypmod, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'typmods'::regclass AND attnum > 0 ORDER BY attnum",
        )
        .unwrap();
    for l in out.lines() {
        let f: Vec<&str> = l.split('|').collect();
        assert_eq!(builtin_type_name(f[0].parse().unwrap(), f[1].parse().unwrap()).as_deref(), Some(f[2]), "{l}");
    }
    // quote_identifier against the server's quote_ident: every keyword, and awkward names. pgrepl quotes as 18
    // does; an older release has fewer keywords outside the unreserved ones (16: json… unreserved or new, 15: no
    // system_user…), so there pgrepl may quote a word the server leaves bare — never the other way round
    let out = c.psql("postgres", "SELECT word, catcode, quote_ident(word) FROM pg_get_keywords()").unwrap();
    for l in out.lines() {
        let f: Vec<&str> = l.split('|').collect();
        let ours = quote_identifier(f[0]);
        if c.major() >= 18 || f[2].starts_with('"') {
            assert_eq!(ours, f[2], "{l}");
        } else if ours != f[2] {
            assert_eq!(ours, format!("\"{}\"", f[0]), "PostgreSQL {}: {l}: only more quoting", c.version());
        }
    }
    for name in ["a", "A", "a b", "_x1", "1x", "we\"ird", "é", "select", "mood", "int4"] {
        let q = c.psql("postgres", &format!("SELECT quote_ident('{}')", name.replace('\'', "''"))).unwrap();
        assert_eq!(quote_identifier(name), q, "{name}");
    }
}

/// A psql session kept open, to interleave transactions.
struct Session {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    n: u32,
}

impl Session {
    fn open(c: &TempCluster) -> Session {
        let psql = c.bin_dir().join("psql");
        let mut child = Command::new(if psql.is_file() { psql } else { PathBuf::from("psql") })
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(c.socket_conninfo(c.superuser(), "postgres"))
            .env_remove("PGPASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Session { child, stdin, out, n: 0 }
    }
    /// Run `sql` and wait until it is done.
    fn run(&mut self, sql: &str) {
        self.n += 1;
        writeln!(self.stdin, "{sql}\nSELECT 'sync-{}';", self.n).unwrap();
        self.stdin.flush().unwrap();
        let want = format!("sync-{}", self.n);
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "psql ended");
            if line.trim_end() == want {
                return;
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "\\q");
        let _ = self.child.wait();
    }
}

/// The committed changes of a pgoutput stream, each transaction whole in commit order, assembled from the
/// streamed segments as the apply worker assembles them: changes kept per top-level transaction, a
/// subtransaction's dropped at its Stream Abort, the whole transaction's at a Stream Abort of it, delivered at its
/// Stream Commit (or prepare). Returns the transactions (`common` lines of their changes) and what was streamed.
fn assemble(evs: &[Event<'static>]) -> (Vec<Vec<String>>, usize, usize) {
    assemble_with(evs, common)
}

/// [`assemble`] with another comparison line than [`common`]'s.
fn assemble_with(evs: &[Event<'static>], line: Line) -> (Vec<Vec<String>>, usize, usize) {
    let mut out = vec![];
    let mut open: BTreeMap<u64, Vec<(Option<u64>, String)>> = BTreeMap::new();
    let mut prepared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut plain: Option<Vec<String>> = None;
    let mut segment: Option<u64> = None;
    let (mut segments, mut aborts) = (0, 0);
    for ev in evs {
        match ev {
            Event::Stream(s) => match s.kind {
                StreamKind::Start => {
                    segments += 1;
                    segment = s.xid;
                    let entry = open.entry(s.xid.unwrap()).or_default();
                    if s.first_segment == Some(true) {
                        entry.clear();
                    }
                }
                StreamKind::Stop => segment = None,
                StreamKind::Abort => {
                    aborts += 1;
                    let top = s.xid.unwrap();
                    if s.subxid == s.xid {
                        open.remove(&top);
                    } else if let Some(v) = open.get_mut(&top) {
                        v.retain(|(x, _)| *x != s.subxid);
                    }
                }
            },
            Event::Begin(_) => plain = Some(vec![]),
            Event::Commit(t) => match plain.take() {
                Some(v) => out.push(v),
                None => out.push(open.remove(&t.xid.unwrap()).unwrap().into_iter().map(|(_, l)| l).collect()),
            },
            // a prepared transaction is delivered at its COMMIT PREPARED, dropped at its ROLLBACK PREPARED
            Event::TwoPhase(p) => match p.kind {
                TwoPhaseKind::Prepare => {
                    let v = match plain.take() {
                        Some(v) => v,
                        None => open.remove(&p.xid.unwrap()).unwrap().into_iter().map(|(_, l)| l).collect(),
                    };
                    prepared.insert(p.gid.to_string(), v);
                }
                TwoPhaseKind::CommitPrepared => out.push(prepared.remove(&*p.gid).unwrap()),
                TwoPhaseKind::RollbackPrepared => {
                    prepared.remove(&*p.gid).unwrap();
                }
            },
            ev => {
                // changes carry their (sub)transaction's xid; fold it out of the comparison line
                let line = line(ev).replace(&format!("xid={:?}", ev.xid()), "xid=_");
                match (segment, plain.as_mut()) {
                    (Some(top), _) => open.get_mut(&top).unwrap().push((ev.xid(), line)),
                    (None, Some(v)) => v.push(line),
                    (None, None) => out.push(vec![line]),
                }
            }
        }
    }
    assert!(open.is_empty(), "streamed transactions left open: {:?}", open.keys());
    assert!(prepared.is_empty(), "prepared transactions left open: {:?}", prepared.keys());
    (out, segments, aborts)
}

/// The reference plugin's transactions, as `assemble_with` gives pgoutput's.
fn transactions_with(evs: &[Event<'static>], line: Line) -> Vec<Vec<String>> {
    let mut out = vec![];
    let mut cur: Option<Vec<String>> = None;
    for ev in evs {
        match ev {
            Event::Begin(_) => cur = Some(vec![]),
            Event::Commit(_) => out.push(cur.take().unwrap()),
            ev => {
                let line = line(ev).replace(&format!("xid={:?}", ev.xid()), "xid=_");
                match cur.as_mut() {
                    Some(v) => v.push(line),
                    None => out.push(vec![line]),
                }
            }
        }
    }
    out
}

const BIG: &str = "CREATE TABLE big(id int PRIMARY KEY, pad text); CREATE TABLE small(id int PRIMARY KEY);
                   CREATE PUBLICATION p FOR ALL TABLES;";

fn rows(from: i32, to: i32) -> String {
    format!("INSERT INTO big SELECT i, repeat(md5(i::text), 3) FROM generate_series({from}, {to}) i;")
}

#[test]
fn protocol_2_streams_interleaved_transactions_and_aborts() {
    let c = cluster(None);
    c.psql("postgres", BIG).unwrap();
    c.psql("postgres", "SELECT pg_create_logical_replication_slot('po', 'pgoutput')").unwrap();
    if c.major() < 14 {
        // protocol 2 and `streaming` came with 14
        let e = c
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('po', NULL, NULL, 'proto_version', '2', \
                 'publication_names', 'p', 'streaming', 'on')",
            )
            .unwrap_err();
        assert!(e.to_string().contains("unrecognized pgoutput option: streaming"), "PostgreSQL {}: {e}", c.version());
        return;
    }
    let reference = reference_plugin(&c);
    c.psql("postgres", &format!("SELECT pg_create_logical_replication_slot('wj', '{reference}')")).unwrap();
    let mut a = Session::open(&c);
    let mut b = Session::open(&c);
    a.run(&format!("BEGIN; {}", rows(1, 1000)));
    b.run("INSERT INTO small VALUES (1);");
    a.run(&format!("SAVEPOINT s; {} ROLLBACK TO s; {}", rows(1001, 2000), rows(2001, 3000)));
    b.run("INSERT INTO small VALUES (2);");
    a.run(&format!("{} COMMIT;", rows(3001, 3500)));
    // a large transaction that aborts whole, after its segments were sent
    a.run(&format!("BEGIN; {} ROLLBACK;", rows(5001, 7000)));
    b.run("INSERT INTO small VALUES (3);");
    drop((a, b));

    let po_raw = peek_binary(&c, "po", ", 'proto_version', '2', 'publication_names', 'p', 'streaming', 'on'");
    dump_seeds("streaming-proto2", &po_raw);
    let po = decode_pgoutput(&po_raw);
    let (wj_txns, line) = reference_transactions(&c, "wj");
    let (po_txns, segments, aborts) = assemble_with(&po, line);
    assert!(segments >= 3, "{segments} segments: the large transactions were not streamed");
    let (whole, sub) = po.iter().fold((0, 0), |(w, s), e| match e {
        Event::Stream(a) if a.kind == StreamKind::Abort && a.subxid == a.xid => (w + 1, s),
        Event::Stream(a) if a.kind == StreamKind::Abort => (w, s + 1),
        _ => (w, s),
    });
    // the subtransaction's and the whole transaction's; PostgreSQL 18 no longer streams a transaction whose
    // abort it already knows when it decodes it (here: all of them, decoded after the fact), so only the
    // subtransaction's abort comes (17 still streams the aborted one and aborts it)
    let want = if c.major() >= 18 { (0, 1) } else { (1, 1) };
    assert_eq!((whole, sub), want, "PostgreSQL {}: Stream Aborts (whole transaction, subtransaction)", c.version());
    assert_eq!(aborts, whole + sub);
    // interleaved: a regular transaction's Begin between two segments of the streamed one
    let first_start = po.iter().position(|e| matches!(e, Event::Stream(_))).unwrap();
    let stream_commit =
        po.iter().position(|e| matches!(e, Event::Commit(t) if t.xid == po[first_start].xid())).unwrap();
    assert!(po[first_start..stream_commit].iter().any(|e| matches!(e, Event::Begin(_))), "not interleaved");
    // a streamed change carries its subtransaction's xid: those of the rolled-back savepoint differ from the top's
    let top = po[first_start].xid();
    assert!(po.iter().filter_map(Event::change).any(|c| c.xid != top && c.table == "big"));

    assert_eq!(po_txns.len(), wj_txns.len(), "{reference}");
    assert_eq!(po_txns, wj_txns, "the committed rows differ from {reference}'s");
    assert_eq!(po_txns.iter().map(Vec::len).max(), Some(2500), "rows 1-1000 and 2001-3500");

    // The same stream through the plugin's router (StreamedTxns) and a Spill with a small budget, so that the
    // held segments go to files: the decoder reads each released transaction whole, at its commit.
    let plugin = Pgoutput::new(["p"]);
    let mut router = plugin.router();
    let dir = tempfile::tempdir().unwrap();
    let mut spill = Spill::new(16 * 1024, dir.path().to_path_buf());
    let mut d = PgoutputDecoder::new();
    let mut routed: Vec<Event<'static>> = vec![];
    let mut decode = |p: &[u8], routed: &mut Vec<Event<'static>>| {
        for ev in d.events(p).unwrap() {
            routed.push(ev.unwrap().into_owned());
        }
    };
    for (lsn, p) in &po_raw {
        match router.route(p).unwrap() {
            Route::Deliver => decode(p, &mut routed),
            Route::Hold { xid, sub } => {
                let held = Held { wal_start: *lsn, wal_end: *lsn, data: bytes::Bytes::copy_from_slice(p) };
                spill.hold(xid, sub, held).unwrap();
            }
            Route::Release { xid } => {
                for h in spill.release(xid).unwrap() {
                    decode(&h.unwrap().data, &mut routed);
                }
                decode(p, &mut routed);
            }
            Route::Discard { xid, sub } => spill.abort(xid, sub).unwrap(),
        }
    }
    assert!(spill.spilled().0 > 0, "nothing spilled: {:?}", spill.spilled());
    assert_eq!(spill.transactions(), 0);
    // a released transaction is contiguous: nothing between its first Stream Start and its Stream Commit
    let start = routed.iter().position(|e| matches!(e, Event::Stream(_))).unwrap();
    let end = routed.iter().position(|e| matches!(e, Event::Commit(t) if t.xid == routed[start].xid())).unwrap();
    assert!(!routed[start..end].iter().any(|e| matches!(e, Event::Begin(_) | Event::Commit(_))));
    assert!(!routed.iter().any(|e| matches!(e, Event::Stream(s) if s.kind == StreamKind::Abort)));
    let (routed_txns, _, aborts) = assemble_with(&routed, line);
    assert_eq!(aborts, 0, "aborts are not delivered");
    assert_eq!(routed_txns, wj_txns);
}

#[test]
fn protocol_3_two_phase_and_streamed_prepare() {
    let c = cluster(None);
    c.psql("postgres", BIG).unwrap();
    if c.major() < 15 {
        // protocol 3 and pgoutput's `two_phase` came with 15 (two-phase slots of the SQL function with 14)
        c.psql("postgres", "SELECT pg_create_logical_replication_slot('po', 'pgoutput')").unwrap();
        let e = c
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('po', NULL, NULL, 'proto_version', '3', \
                 'publication_names', 'p', 'two_phase', 'on')",
            )
            .unwrap_err();
        assert!(e.to_string().contains("unrecognized pgoutput option: two_phase"), "PostgreSQL {}: {e}", c.version());
        return;
    }
    c.psql("postgres", "SELECT pg_create_logical_replication_slot('po', 'pgoutput', false, true)").unwrap();
    let reference = reference_plugin(&c);
    c.psql("postgres", &format!("SELECT pg_create_logical_replication_slot('wj', '{reference}')")).unwrap();
    c.psql(
        "postgres",
        &format!(
            "BEGIN; INSERT INTO small VALUES (1); PREPARE TRANSACTION 'g''1'; COMMIT PREPARED 'g''1';
             BEGIN; INSERT INTO small VALUES (2); PREPARE TRANSACTION 'g2'; ROLLBACK PREPARED 'g2';
             BEGIN; {} PREPARE TRANSACTION 'big'; COMMIT PREPARED 'big';",
            rows(1, 2000)
        ),
    )
    .unwrap();
    let po_raw =
        peek_binary(&c, "po", ", 'proto_version', '3', 'publication_names', 'p', 'two_phase', 'on', 'streaming', 'on'");
    dump_seeds("two-phase-proto3", &po_raw);
    let po = decode_pgoutput(&po_raw);
    let steps: Vec<(TwoPhaseKind, String)> = po
        .iter()
        .filter_map(|e| if let Event::TwoPhase(t) = e { Some((t.kind, t.gid.to_string())) } else { None })
        .collect();
    assert_eq!(
        steps,
        [
            (TwoPhaseKind::Prepare, "g'1".into()),
            (TwoPhaseKind::CommitPrepared, "g'1".into()),
            (TwoPhaseKind::Prepare, "g2".into()),
            (TwoPhaseKind::RollbackPrepared, "g2".into()),
            (TwoPhaseKind::Prepare, "big".into()),
            (TwoPhaseKind::CommitPrepared, "big".into()),
        ]
    );
    // the large one was streamed and ended by a Stream Prepare
    assert!(po_raw.iter().any(|(_, p)| p[0] == b'p'), "no Stream Prepare");
    assert!(po_raw.iter().any(|(_, p)| p[0] == b'b'), "no Begin Prepare");
    // the reference plugin sees the committed ones at COMMIT PREPARED, not the rolled back one
    let (wj_txns, line) = reference_transactions(&c, "wj");
    let (po_txns, segments, _) = assemble_with(&po, line);
    assert!(segments > 0);
    assert_eq!(po_txns.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2000]);
    assert_eq!(po_txns, wj_txns);
}

#[test]
fn binary_values_equal_text_values() {
    let c = cluster(None);
    c.psql("postgres", SCHEMA).unwrap();
    c.psql("postgres", "SELECT pg_create_logical_replication_slot('po', 'pgoutput')").unwrap();
    c.psql(
        "postgres",
        "INSERT INTO t(id, s2, big, n, f, r, b, s, v, c, bin, u, j, o) VALUES
           (1, -7, -9223372036854775808, 12345678.90, 0.1, 3.4028235e38, false, 'é', 'x', 'ab', '\\xdeadbeef',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2.5]}', 0),
           (2, 0, 0, -0.01, 1e-5, 1e6, true, '', '', '', '', NULL, '[]', 4294967295),
           (3, NULL, 1, 'NaN', 'Infinity', 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (4, 1, 2, 99999999.99, 1.5e300, -0.0, true, 'a', 'b', 'c', '\\x00', NULL, 'null', 1),
           (5, 2, 3, 0, 123456789012345680000, 123456, true, 'a', 'b', 'c', '\\x00', NULL, '{}', 1)",
    )
    .unwrap();
    let text = decode_pgoutput(&peek_binary(&c, "po", ", 'proto_version', '1', 'publication_names', 'p'"));
    if c.major() < 14 {
        // `binary` came with 14
        let q = "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('po', NULL, NULL, 'proto_version', '1', \
                 'publication_names', 'p', 'binary', 'true')";
        let e = c.psql("postgres", q).unwrap_err();
        assert!(e.to_string().contains("unrecognized pgoutput option: binary"), "PostgreSQL {}: {e}", c.version());
        assert_eq!(text.iter().filter(|e| e.change().is_some()).count(), 5);
        return;
    }
    let bin_raw = peek_binary(&c, "po", ", 'proto_version', '1', 'publication_names', 'p', 'binary', 'true'");
    dump_seeds("binary-proto1", &bin_raw);
    let bin = decode_pgoutput(&bin_raw);
    let rendered = ["id", "s2", "big", "n", "f", "r", "b", "s", "v", "c", "bin", "u", "j", "o"];
    let mut compared = 0;
    for (t, b) in text.iter().zip(&bin) {
        let (Some(t), Some(b)) = (t.change(), b.change()) else { continue };
        for name in rendered {
            assert_eq!(t.column(name).map(|c| &c.value), b.column(name).map(|c| &c.value), "{name}");
            compared += 1;
        }
        // the others (timestamps, arrays, enums…) are their send format's hex digits in binary
        let ts = b.column("ts").unwrap();
        assert!(ts.value.is_null() || matches!(&ts.value, Value::String(s) if s.len() == 16));
    }
    assert_eq!(compared, 5 * rendered.len());
}

async fn repl_client(c: &TempCluster) -> Client {
    let cfg = Config::parse(&format!("{} replication=database", c.conninfo(c.superuser(), "postgres"))).unwrap();
    Client::connect(&cfg).await.unwrap()
}

async fn next(s: &mut ReplicationStream) -> XLogData {
    tokio::time::timeout(Duration::from_secs(60), s.next()).await.expect("timed out").unwrap().expect("stream ended")
}

/// Messages up to and including the first whose type byte is `until`.
async fn read_until(s: &mut ReplicationStream, until: u8) -> Vec<XLogData> {
    let mut v = vec![];
    loop {
        let x = next(s).await;
        let done = x.data.first() == Some(&until);
        v.push(x);
        if done {
            return v;
        }
    }
}

/// The acknowledgement rule for streamed transactions, on a live walsender: segments of a large transaction
/// arrive while it is open; a small transaction commits between two segments and its end LSN (where it was sent)
/// is acknowledged and confirmed; the connection ends; the large one commits; a new connection from the
/// confirmed position gets the large transaction again from its first segment, whole, and not the small one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_past_a_streamed_transaction_does_not_lose_it() {
    let c = cluster(None);
    c.psql("postgres", BIG).unwrap();
    c.psql("postgres", "SELECT pg_create_logical_replication_slot('po', 'pgoutput')").unwrap();
    let plugin = Pgoutput::new(["p"]).proto_version(2).streaming("on");
    let opts = plugin.options(&[]).unwrap();
    let cfg = StreamConfig { idle_advance: false, ..StreamConfig::default() };
    let client = repl_client(&c).await;
    if c.major() < 14 {
        // protocol 2 and `streaming` came with 14: the server refuses to start
        let Err(e) = client.start_replication("po", &plugin, Lsn::INVALID, &opts, cfg).await else {
            panic!("PostgreSQL {}: streaming started", c.version())
        };
        assert!(e.to_string().contains("unrecognized pgoutput option: streaming"), "PostgreSQL {}: {e}", c.version());
        return;
    }
    let mut stream = client.start_replication("po", &plugin, Lsn::INVALID, &opts, cfg.clone()).await.unwrap();
    let mut a = Session::open(&c);
    let mut b = Session::open(&c);
    a.run(&format!("BEGIN; {}", rows(1, 2000)));
    let first = read_until(&mut stream, b'E').await;
    let start = first.iter().find(|x| x.data[0] == b'S').expect("a streamed segment while the transaction is open");
    let Message::StreamStart(s) = parse(&start.data, false).unwrap() else { panic!() };
    assert!(s.first_segment);
    let big_xid = s.xid;
    for x in &first {
        assert_eq!(x.boundary, Boundary::Inside, "a streamed segment is never a boundary");
    }
    b.run("INSERT INTO small VALUES (1);");
    let small = read_until(&mut stream, b'C').await;
    let commit = small.last().unwrap();
    assert_eq!(commit.boundary, Boundary::End);
    let Message::Commit(cm) = parse(&commit.data, false).unwrap() else { panic!() };
    assert_eq!(commit.wal_start, cm.end_lsn, "a Commit is sent at its end LSN");
    assert_eq!(plugin.ack_lsn(commit), cm.end_lsn);
    stream.ack_now(plugin.ack_lsn(commit));
    let (client, confirmed) = stream.stop_confirmed().await.unwrap();
    assert_eq!(confirmed, cm.end_lsn);
    let slot =
        c.psql("postgres", "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'po'").unwrap();
    assert_eq!(Lsn::parse(&slot).unwrap(), cm.end_lsn);
    drop(client);

    a.run(&format!("{} COMMIT;", rows(2001, 2500)));
    drop((a, b));
    let client = repl_client(&c).await;
    let mut stream = client.start_replication("po", &plugin, Lsn::INVALID, &opts, cfg).await.unwrap();
    let again = read_until(&mut stream, b'c').await;
    let mut d = PgoutputDecoder::new();
    let mut evs = vec![];
    for x in &again {
        for ev in d.events(&x.data).unwrap() {
            evs.push(ev.unwrap().into_owned());
        }
    }
    let Event::Stream(st) = &evs[0] else { panic!("{:?}", evs[0]) };
    assert_eq!((st.kind, st.xid, st.first_segment), (StreamKind::Start, Some(u64::from(big_xid)), Some(true)));
    assert!(!evs.iter().any(|e| matches!(e, Event::Begin(_))), "the acknowledged transaction came again");
    let (txns, _, _) = assemble(&evs);
    assert_eq!(txns.len(), 1);
    assert_eq!(txns[0].len(), 2500, "the streamed transaction whole");
    let stream_commit = again.last().unwrap();
    assert_eq!(stream_commit.boundary, Boundary::End);
    let Message::StreamCommit(sc) = parse(&stream_commit.data, false).unwrap() else { panic!() };
    assert_eq!(stream_commit.wal_start, sc.end_lsn, "a Stream Commit is sent at its end LSN");
    assert_eq!(plugin.ack_lsn(stream_commit), sc.end_lsn);
}

/// A PostgreSQL 16+ build for protocol 4: `PGREPL_PG16_BIN_DIR`, else the newest `scripts/pg-build.sh` cached.
fn pg16_bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PGREPL_PG16_BIN_DIR") {
        return Some(PathBuf::from(d));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/var/cache/pgrepl/pg-builds")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let major: u32 =
                p.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('.').next()?.parse().ok()).unwrap_or(0);
            major >= 16 && p.join("complete").is_file() && p.join("native/bin/postgres").is_file()
        })
        .collect();
    found.sort();
    found.pop().map(|p| p.join("native/bin"))
}

/// Protocol 4 with `streaming parallel`: a Stream Abort carries the abort's LSN (where it is sent) and time. On a
/// live walsender, since PostgreSQL 17 no longer streams a transaction it already knows aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_4_parallel_streaming_abort_carries_its_lsn_and_time() {
    let bin = std::env::var_os("PG_BIN_DIR").map(PathBuf::from);
    let c = cluster(bin);
    let version: u32 = c.psql("postgres", "SHOW server_version_num").unwrap().parse().unwrap();
    let c = if version >= 160_000 {
        c
    } else if let Some(dir) = pg16_bin_dir() {
        drop(c);
        cluster(Some(dir))
    } else {
        eprintln!("protocol 4 needs PostgreSQL 16+: this server is {version} and no 16+ build is cached; skipped");
        return;
    };
    let version: u32 = c.psql("postgres", "SHOW server_version_num").unwrap().parse().unwrap();
    assert_eq!(Pgoutput::proto_version_for(version), 4);
    c.psql("postgres", BIG).unwrap();
    c.psql("postgres", "SELECT pg_create_logical_replication_slot('po', 'pgoutput')").unwrap();
    let plugin = Pgoutput::new(["p"]).proto_version(4).streaming("parallel");
    let opts = plugin.options(&[]).unwrap();
    let client = repl_client(&c).await;
    let mut stream =
        client.start_replication("po", &plugin, Lsn::INVALID, &opts, StreamConfig::default()).await.unwrap();
    let mut a = Session::open(&c);
    a.run(&format!("BEGIN; {}", rows(1, 2000)));
    let mut got = read_until(&mut stream, b'E').await;
    a.run("ROLLBACK;");
    a.run(&rows(3000, 3001));
    drop(a);
    got.extend(read_until(&mut stream, b'C').await);
    let raw: Vec<(Lsn, Vec<u8>)> = got.iter().map(|x| (x.wal_start, x.data.to_vec())).collect();
    dump_seeds("parallel-proto4", &raw);
    let evs = decode_pgoutput(&raw);
    let abort = evs
        .iter()
        .find_map(|e| match e {
            Event::Stream(s) if s.kind == StreamKind::Abort => Some(s.clone()),
            _ => None,
        })
        .expect("a Stream Abort");
    assert_eq!(abort.xid, abort.subxid);
    assert!(abort.lsn.is_some_and(|l| !l.is_invalid()), "{abort:?}");
    assert!(abort.timestamp.as_deref().is_some_and(|t| t.ends_with("+00")), "{abort:?}");
    let sent_at = got.iter().find(|x| x.data[0] == b'A').unwrap();
    assert_eq!(sent_at.data.len(), 25, "xid, subxid, abort LSN, abort time");
    assert_eq!(abort.lsn, Some(sent_at.wal_start), "sent at the abort's LSN");
    assert_eq!(sent_at.boundary, Boundary::Inside);
    // the committed rows after it arrive whole
    assert_eq!(evs.iter().filter(|e| matches!(e, Event::Insert(c) if c.xid != abort.xid)).count(), 2);
}
