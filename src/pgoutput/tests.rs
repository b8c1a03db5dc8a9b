//! Unit tests of the pgoutput parser and decoder: every message kind built by hand as proto.c writes it, every
//! error path, every truncation of every message, arbitrary bytes, and round trips.

use std::borrow::Cow;

use proptest::prelude::*;

use super::message::{parse, Message, OldKind, TupleValue};
use super::*;
use crate::event::{Column, Event, Nullable, StreamKind, TwoPhaseKind, Value};
use crate::lsn::Lsn;

/// A message as `logicalrep_write_*` writes it.
#[derive(Clone, Default)]
pub(crate) struct B(pub(crate) Vec<u8>);

impl B {
    pub(crate) fn new(tag: u8) -> Self {
        B(vec![tag])
    }
    pub(crate) fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn lsn(self, v: u64) -> Self {
        self.i64(v as i64)
    }
    pub(crate) fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    pub(crate) fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A tuple: `n` null, `u` unchanged, `t:…` text, `b:…` binary.
    pub(crate) fn tuple(self, vals: &[&[u8]]) -> Self {
        let mut b = self.u16(vals.len() as u16);
        for v in vals {
            b = match v.split_first() {
                Some((b'n', [])) => b.u8(b'n'),
                Some((b'u', [])) => b.u8(b'u'),
                Some((k @ (b't' | b'b'), rest)) => {
                    let body = rest.strip_prefix(b":").unwrap_or(rest);
                    b.u8(*k).i32(body.len() as i32).bytes(body)
                }
                _ => panic!("bad tuple value spec"),
            };
        }
        b
    }
}

/// Relation `id` in schema `s`, named `n`, replica identity `ri`, columns `(name, type oid, typmod, key)`.
pub(crate) fn relation(
    xid: Option<u32>,
    id: u32,
    s: &str,
    n: &str,
    ri: u8,
    cols: &[(&str, u32, i32, bool)],
) -> Vec<u8> {
    let mut b = B::new(b'R');
    if let Some(x) = xid {
        b = b.u32(x);
    }
    b = b.u32(id).str(if s == "pg_catalog" { "" } else { s }).str(n).u8(ri).u16(cols.len() as u16);
    for (name, oid, typmod, key) in cols {
        b = b.u8(u8::from(*key)).str(name).u32(*oid).i32(*typmod);
    }
    b.0
}

fn begin(xid: u32, final_lsn: u64, t: i64) -> Vec<u8> {
    B::new(b'B').lsn(final_lsn).i64(t).u32(xid).0
}

fn commit(commit_lsn: u64, end_lsn: u64, t: i64) -> Vec<u8> {
    B::new(b'C').u8(0).lsn(commit_lsn).lsn(end_lsn).i64(t).0
}

fn insert(xid: Option<u32>, rel: u32, vals: &[&[u8]]) -> Vec<u8> {
    let mut b = B::new(b'I');
    if let Some(x) = xid {
        b = b.u32(x);
    }
    b.u32(rel).u8(b'N').tuple(vals).0
}

/// 2026-01-02 03:04:05.123456 UTC in microseconds since 2000-01-01.
const T: i64 = (1_767_323_045 - 946_684_800) * 1_000_000 + 123_456;
const TS: &str = "2026-01-02 03:04:05.123456+00";

/// Every message kind, well formed, with whether it is inside a streamed block.
fn samples() -> Vec<(&'static str, bool, Vec<u8>)> {
    let cols: &[(&str, u32, i32, bool)] = &[("id", 23, -1, true), ("v", 1043, 24, false)];
    vec![
        ("begin", false, begin(700, 0x1_0000_0010, T)),
        ("commit", false, commit(0x1_0000_0010, 0x1_0000_0040, T)),
        ("origin", false, B::new(b'O').lsn(0x55).str("node_a").0),
        ("relation", false, relation(None, 16384, "public", "t", b'd', cols)),
        ("relation in stream", true, relation(Some(701), 16384, "public", "t", b'd', cols)),
        ("type", false, B::new(b'Y').u32(16400).str("public").str("mood").0),
        ("type in stream", true, B::new(b'Y').u32(701).u32(16400).str("").str("int4").0),
        ("insert", false, insert(None, 16384, &[b"t:1", b"t:a"])),
        ("insert in stream", true, insert(Some(702), 16384, &[b"t:1", b"n"])),
        ("update", false, B::new(b'U').u32(16384).u8(b'N').tuple(&[b"t:1", b"u"]).0),
        (
            "update K",
            false,
            B::new(b'U').u32(16384).u8(b'K').tuple(&[b"t:1", b"n"]).u8(b'N').tuple(&[b"t:2", b"t:x"]).0,
        ),
        (
            "update O",
            true,
            B::new(b'U').u32(9).u32(16384).u8(b'O').tuple(&[b"t:1", b"t:x"]).u8(b'N').tuple(&[b"t:1", b"t:y"]).0,
        ),
        ("delete K", false, B::new(b'D').u32(16384).u8(b'K').tuple(&[b"t:1", b"n"]).0),
        ("delete O", true, B::new(b'D').u32(9).u32(16384).u8(b'O').tuple(&[b"t:1", b"b:\x00\x01"]).0),
        ("truncate", false, B::new(b'T').i32(2).u8(3).u32(16384).u32(16385).0),
        ("truncate in stream", true, B::new(b'T').u32(9).i32(1).u8(0).u32(16384).0),
        ("message", false, B::new(b'M').u8(1).lsn(0x99).str("pre").i32(3).bytes(b"a\0b").0),
        ("message in stream", true, B::new(b'M').u32(9).u8(1).lsn(0x99).str("pre").i32(0).0),
        ("stream start", false, B::new(b'S').u32(701).u8(1).0),
        ("stream stop", true, B::new(b'E').0),
        ("stream commit", false, B::new(b'c').u32(701).u8(0).lsn(0x200).lsn(0x228).i64(T).0),
        ("stream abort", false, B::new(b'A').u32(701).u32(703).0),
        ("stream abort v4", false, B::new(b'A').u32(701).u32(701).lsn(0x300).i64(T).0),
        ("begin prepare", false, B::new(b'b').lsn(0x400).lsn(0x428).i64(T).u32(800).str("g1").0),
        ("prepare", false, B::new(b'P').u8(0).lsn(0x400).lsn(0x428).i64(T).u32(800).str("g1").0),
        ("stream prepare", false, B::new(b'p').u8(0).lsn(0x500).lsn(0x528).i64(T).u32(801).str("g2").0),
        ("commit prepared", false, B::new(b'K').u8(0).lsn(0x600).lsn(0x628).i64(T).u32(800).str("g1").0),
        ("rollback prepared", false, B::new(b'r').u8(0).lsn(0x428).lsn(0x700).i64(T).i64(T + 1).u32(801).str("g2").0),
    ]
}

#[test]
fn every_message_parses() {
    for (name, in_stream, p) in samples() {
        let m = parse(&p, in_stream).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.tag(), p[0], "{name}");
    }
    let all = samples();
    let m = parse(&all[0].2, false).unwrap();
    assert_eq!(m, Message::Begin(message::Begin { final_lsn: Lsn(0x1_0000_0010), commit_time: T, xid: 700 }));
    let rel = relation(None, 5, "pg_catalog", "x", b'f', &[("a", 25, -1, true)]);
    let Message::Relation(r) = parse(&rel, false).unwrap() else { panic!() };
    assert_eq!((r.id, r.namespace, r.name, r.replica_identity, r.columns.len()), (5, "pg_catalog", "x", b'f', 1));
    let c = r.columns.iter().next().unwrap();
    assert_eq!((c.name, c.type_oid, c.typmod, c.is_key()), ("a", 25, -1, true));
    let Message::Update(u) = parse(&all[10].2, false).unwrap() else { panic!() };
    let old = u.old.unwrap();
    assert_eq!(old.kind, OldKind::Key);
    assert_eq!(old.data.iter().collect::<Vec<_>>(), vec![TupleValue::Text(b"1"), TupleValue::Null]);
    assert_eq!(u.new.iter().collect::<Vec<_>>(), vec![TupleValue::Text(b"2"), TupleValue::Text(b"x")]);
    let Message::Truncate(t) = parse(&all[14].2, false).unwrap() else { panic!() };
    assert!(t.cascade() && t.restart_identity());
    assert_eq!(t.relation_ids.iter().collect::<Vec<_>>(), vec![16384, 16385]);
    assert_eq!((t.relation_ids.get(1), t.relation_ids.get(2)), (Some(16385), None));
    let Message::StreamAbort(a) = parse(&all[21].2, false).unwrap() else { panic!() };
    assert_eq!((a.xid, a.subxid, a.abort_lsn, a.abort_time), (701, 703, None, None));
    let Message::StreamAbort(a) = parse(&all[22].2, false).unwrap() else { panic!() };
    assert_eq!((a.abort_lsn, a.abort_time), (Some(Lsn(0x300)), Some(T)));
    let Message::RollbackPrepared(r) = parse(&all[27].2, false).unwrap() else { panic!() };
    assert_eq!((r.prepare_end_lsn, r.rollback_end_lsn, r.rollback_time, r.gid), (Lsn(0x428), Lsn(0x700), T + 1, "g2"));
    let Message::Message(m) = parse(&all[16].2, false).unwrap() else { panic!() };
    assert!(m.transactional());
    assert_eq!((m.lsn, m.prefix, m.content), (Lsn(0x99), "pre", &b"a\0b"[..]));
}

#[test]
fn every_truncation_and_every_extra_byte_is_an_error_with_an_offset() {
    for (name, in_stream, p) in samples() {
        for n in 0..p.len() {
            if p[0] == b'A' && n == 9 {
                continue; // a Stream Abort without the abort LSN and time is the other, shorter form
            }
            let e = parse(&p[..n], in_stream).expect_err(&format!("{name} cut at {n}"));
            assert_eq!(e.kind(), crate::ErrorKind::Decode);
            assert!(e.to_string().contains(" at byte "), "{name} cut at {n}: {e}");
            // the decoder too (with a relation cache that knows the relation)
            let mut d = decoder_with_relation(in_stream);
            assert!(d.decode_each(&p[..n], |_| {}).is_err(), "{name} cut at {n}");
        }
        let mut longer = p.clone();
        longer.push(0);
        // a Stream Abort with one byte more than 8 is a truncated abort LSN; the rest is left over
        let e = parse(&longer, in_stream).expect_err(name);
        assert!(e.to_string().contains(" at byte "), "{name}: {e}");
    }
}

fn decoder_with_relation(in_stream: bool) -> PgoutputDecoder {
    let mut d = PgoutputDecoder::new();
    let cols: &[(&str, u32, i32, bool)] = &[("id", 23, -1, true), ("v", 1043, 24, false)];
    d.decode_each(&relation(None, 16384, "public", "t", b'd', cols), |_| {}).unwrap();
    if in_stream {
        d.decode_each(&B::new(b'S').u32(701).u8(1).0, |_| {}).unwrap();
    }
    d
}

#[test]
fn malformed_messages() {
    let rel = relation(None, 1, "s", "t", b'd', &[("a", 23, -1, false)]);
    for (name, p, in_stream, at) in [
        ("empty", vec![], false, 0),
        ("unknown type", vec![b'Z'], false, 0),
        ("unknown column kind", B::new(b'I').u32(1).u8(b'N').u16(1).u8(b'x').0, false, 8),
        ("negative text length", B::new(b'I').u32(1).u8(b'N').u16(1).u8(b't').i32(-1).0, false, 9),
        ("insert without N", B::new(b'I').u32(1).u8(b'X').u16(0).0, false, 5),
        ("update with a bad marker", B::new(b'U').u32(1).u8(b'X').u16(0).0, false, 5),
        ("update K without N", B::new(b'U').u32(1).u8(b'K').u16(0).u8(b'X').u16(0).0, false, 8),
        ("delete without K/O", B::new(b'D').u32(1).u8(b'N').u16(0).0, false, 5),
        ("negative truncate count", B::new(b'T').i32(-1).u8(0).0, false, 1),
        ("huge truncate count", B::new(b'T').i32(i32::MAX).u8(0).u32(1).0, false, 6),
        ("unterminated string", B::new(b'O').lsn(1).bytes(b"abc").0, false, 9),
        ("string not UTF-8", B::new(b'O').lsn(1).bytes(b"a\xffb\0").0, false, 10),
        ("first-segment flag 2", B::new(b'S').u32(1).u8(2).0, false, 5),
        ("stream abort of 12 bytes", B::new(b'A').u32(1).u32(1).u32(0).0, false, 9),
        ("negative message length", B::new(b'M').u8(0).lsn(1).str("p").i32(-5).0, false, 12),
        ("xid missing in a stream", B::new(b'I').u32(1).0, true, 5),
        ("trailing bytes", [rel.clone(), vec![1, 2]].concat(), false, rel.len()),
    ] {
        let e = parse(&p, in_stream).expect_err(name);
        assert_eq!(e.kind(), crate::ErrorKind::Decode, "{name}");
        assert!(e.to_string().ends_with(&format!(" at byte {at}")), "{name}: {e}");
    }
}

fn decode_all(d: &mut PgoutputDecoder, payloads: &[Vec<u8>]) -> Vec<Event<'static>> {
    let mut out = vec![];
    for p in payloads {
        for ev in d.events(p).unwrap_or_else(|e| panic!("{e}: {p:?}")) {
            out.push(ev.unwrap().into_owned());
        }
    }
    out
}

fn col(name: &str, ty: Option<&str>, oid: i64, v: Value<'static>) -> Column<'static> {
    Column { type_name: ty.map(|t| Cow::Owned(t.to_string())), type_oid: Some(oid), ..Column::new(name.to_string(), v) }
}

fn s(v: &str) -> Value<'static> {
    Value::String(Cow::Owned(v.to_string()))
}

fn num(v: &str) -> Value<'static> {
    Value::Number(Cow::Owned(v.to_string()))
}

#[test]
fn a_transaction_with_every_value_kind() {
    let mut d = PgoutputDecoder::new();
    let cols: &[(&str, u32, i32, bool)] = &[
        ("id", 23, -1, true),
        ("n", 1700, ((10 << 16) | 2) + 4, false),
        ("f", 701, -1, false),
        ("b", 16, -1, false),
        ("bin", 17, -1, false),
        ("v", 1043, 24, false),
        ("c", 1042, 7, false),
        ("big", 25, -1, false),
        ("z", 20, -1, false),
        ("a", 1007, -1, false),
        ("m", 16400, -1, false),
        ("dom", 16500, -1, false),
        ("ts", 1184, 3, false),
    ];
    let evs = decode_all(
        &mut d,
        &[
            begin(700, 0x10, T),
            B::new(b'Y').u32(16400).str("public").str("mood").0,
            B::new(b'Y').u32(16500).str("").str("int4").0,
            relation(None, 16384, "public", "t", b'd', cols),
            insert(
                None,
                16384,
                &[
                    b"t:1",
                    b"t:12.50",
                    b"t:NaN",
                    b"t:t",
                    b"t:\\x00ff",
                    b"t:a \"q\"",
                    b"t:ab ",
                    b"u",
                    b"n",
                    b"t:{1,2}",
                    b"t:happy",
                    b"t:7",
                    b"t:2026-01-02 03:04:05.123+00",
                ],
            ),
            commit(0x10, 0x40, T),
        ],
    );
    assert_eq!(evs.len(), 3);
    let Event::Begin(b) = &evs[0] else { panic!() };
    assert_eq!((b.xid, b.lsn, b.next_lsn, b.timestamp.as_deref()), (Some(700), Some(Lsn(0x10)), None, Some(TS)));
    let Event::Insert(c) = &evs[1] else { panic!() };
    assert_eq!((c.xid, c.schema.as_deref(), &*c.table, c.lsn), (Some(700), Some("public"), "t", None));
    assert_eq!(
        c.columns,
        vec![
            col("id", Some("integer"), 23, num("1")),
            col("n", Some("numeric(10,2)"), 1700, num("12.50")),
            col("f", Some("double precision"), 701, s("NaN")),
            col("b", Some("boolean"), 16, Value::Bool(true)),
            col("bin", Some("bytea"), 17, s("00ff")),
            col("v", Some("character varying(20)"), 1043, s("a \"q\"")),
            col("c", Some("character(3)"), 1042, s("ab ")),
            col("z", Some("bigint"), 20, Value::Null),
            col("a", Some("integer[]"), 1007, s("{1,2}")),
            col("m", Some("mood"), 16400, s("happy")),
            // a domain over int4: the base type's name, and a string (wal2json decides by the domain's OID too)
            col("dom", Some("integer"), 16500, s("7")),
            col("ts", Some("timestamp(3) with time zone"), 1184, s("2026-01-02 03:04:05.123+00")),
        ]
    );
    assert!(c.column("big").is_none(), "unchanged TOAST is absent");
    assert!(c.identity.is_empty());
    let Event::Commit(t) = &evs[2] else { panic!() };
    assert_eq!(
        (t.xid, t.lsn, t.next_lsn, t.timestamp.as_deref()),
        (Some(700), Some(Lsn(0x10)), Some(Lsn(0x40)), Some(TS))
    );
    assert!(!d.in_transaction());
    let info = d.relation(16384).unwrap();
    assert_eq!((&*info.schema, &*info.name, info.columns.len()), ("public", "t", 13));
    assert!(info.columns[0].key && !info.columns[1].key);
}

#[test]
fn updates_and_deletes_give_wal2json_identities() {
    let mut d = PgoutputDecoder::new();
    let cols: &[(&str, u32, i32, bool)] = &[("id", 23, -1, true), ("v", 25, -1, false), ("big", 25, -1, false)];
    let full: &[(&str, u32, i32, bool)] = &[("id", 23, -1, true), ("v", 25, -1, true)];
    let evs = decode_all(
        &mut d,
        &[
            relation(None, 1, "public", "k", b'd', cols),
            relation(None, 2, "public", "f", b'f', full),
            // key unchanged: no old tuple, identity from the new row
            B::new(b'U').u32(1).u8(b'N').tuple(&[b"t:1", b"t:x", b"u"]).0,
            // key changed: the old key, its non-key columns NULL placeholders
            B::new(b'U').u32(1).u8(b'K').tuple(&[b"t:1", b"n", b"n"]).u8(b'N').tuple(&[b"t:2", b"t:x", b"u"]).0,
            // REPLICA IDENTITY FULL: the whole old row
            B::new(b'U').u32(2).u8(b'O').tuple(&[b"t:1", b"t:x"]).u8(b'N').tuple(&[b"t:1", b"t:y"]).0,
            B::new(b'D').u32(1).u8(b'K').tuple(&[b"t:2", b"n", b"n"]).0,
            B::new(b'D').u32(2).u8(b'O').tuple(&[b"t:1", b"n"]).0,
        ],
    );
    let id = |v: &str| col("id", Some("integer"), 23, num(v));
    let Event::Update(u) = &evs[0] else { panic!() };
    assert_eq!(u.identity, vec![id("1")]);
    assert_eq!(u.columns, vec![id("1"), col("v", Some("text"), 25, s("x"))]);
    let Event::Update(u) = &evs[1] else { panic!() };
    assert_eq!(u.identity, vec![id("1")]);
    assert_eq!(u.columns[0], id("2"));
    let Event::Update(u) = &evs[2] else { panic!() };
    assert_eq!(u.identity, vec![id("1"), col("v", Some("text"), 25, s("x"))]);
    let Event::Delete(x) = &evs[3] else { panic!() };
    assert_eq!((x.identity.clone(), x.columns.len()), (vec![id("2")], 0));
    let Event::Delete(x) = &evs[4] else { panic!() };
    assert_eq!(x.identity, vec![id("1"), col("v", Some("text"), 25, Value::Null)]);
}

#[test]
fn truncates_messages_two_phase() {
    let mut d = PgoutputDecoder::new();
    let evs = decode_all(
        &mut d,
        &[
            relation(None, 1, "public", "a", b'd', &[]),
            relation(None, 2, "My Schema", "B c", b'd', &[]),
            begin(5, 0x10, T),
            B::new(b'T').i32(2).u8(1).u32(1).u32(2).0,
            B::new(b'M').u8(1).lsn(0x11).str("p").i32(2).bytes(b"\xff\0").0,
            commit(0x10, 0x20, T),
            B::new(b'M').u8(0).lsn(0x30).str("hb").i32(0).0,
            B::new(b'b').lsn(0x400).lsn(0x428).i64(T).u32(800).str("g'1").0,
            B::new(b'T').i32(1).u8(2).u32(2).0,
            B::new(b'P').u8(0).lsn(0x400).lsn(0x428).i64(T).u32(800).str("g'1").0,
            B::new(b'K').u8(0).lsn(0x600).lsn(0x628).i64(T).u32(800).str("g'1").0,
            B::new(b'r').u8(0).lsn(0x428).lsn(0x700).i64(T).i64(0).u32(801).str("g2").0,
        ],
    );
    let kinds: Vec<_> = evs.iter().map(Event::kind).collect();
    use crate::event::EventKind as K;
    assert_eq!(
        kinds,
        [
            K::Begin,
            K::Truncate,
            K::Truncate,
            K::Message,
            K::Commit,
            K::Message,
            K::Begin,
            K::Truncate,
            K::TwoPhase,
            K::TwoPhase,
            K::TwoPhase
        ]
    );
    let Event::Truncate(t) = &evs[2] else { panic!() };
    assert_eq!(
        (t.xid, t.schema.as_deref(), &*t.table, t.cascade, t.restart_seqs),
        (Some(5), Some("My Schema"), "B c", Some(true), Some(false))
    );
    let Event::Message(m) = &evs[3] else { panic!() };
    assert_eq!(
        (m.xid, m.transactional, m.lsn, &*m.content),
        (Nullable::Value(5), true, Some(Lsn(0x11)), &b"\xff\0"[..])
    );
    let Event::Message(m) = &evs[5] else { panic!() };
    assert_eq!(
        (m.xid, m.timestamp.clone(), m.transactional, &*m.prefix),
        (Nullable::Null, Nullable::Null, false, "hb")
    );
    let Event::Begin(b) = &evs[6] else { panic!() };
    assert_eq!((b.xid, b.lsn, b.next_lsn), (Some(800), Some(Lsn(0x400)), Some(Lsn(0x428))));
    let Event::Truncate(t) = &evs[7] else { panic!() };
    assert_eq!((t.xid, t.restart_seqs, t.cascade), (Some(800), Some(true), Some(false)));
    let Event::TwoPhase(p) = &evs[8] else { panic!() };
    assert_eq!((p.kind, &*p.gid, p.xid, p.timestamp.as_deref()), (TwoPhaseKind::Prepare, "g'1", Some(800), Some(TS)));
    assert!(!d.in_transaction());
    let Event::TwoPhase(p) = &evs[10] else { panic!() };
    assert_eq!(
        (p.kind, p.xid, p.timestamp.as_deref()),
        (TwoPhaseKind::RollbackPrepared, Some(801), Some("2000-01-01 00:00:00+00"))
    );
}

#[test]
fn streamed_transactions() {
    let mut d = PgoutputDecoder::new();
    let cols: &[(&str, u32, i32, bool)] = &[("id", 23, -1, true)];
    let evs = decode_all(
        &mut d,
        &[
            B::new(b'S').u32(900).u8(1).0,
            relation(Some(900), 1, "public", "t", b'd', cols),
            insert(Some(900), 1, &[b"t:1"]),
            insert(Some(901), 1, &[b"t:2"]),
            B::new(b'M').u32(900).u8(1).lsn(0x50).str("p").i32(0).0,
            B::new(b'E').0,
            // an ordinary transaction between two segments: no xid in its messages
            begin(7, 0x60, T),
            insert(None, 1, &[b"t:3"]),
            commit(0x60, 0x70, T),
            B::new(b'S').u32(900).u8(0).0,
            B::new(b'D').u32(900).u32(1).u8(b'K').tuple(&[b"t:1"]).0,
            B::new(b'E').0,
            B::new(b'A').u32(900).u32(901).0,
            B::new(b'c').u32(900).u8(0).lsn(0x80).lsn(0x98).i64(T).0,
            B::new(b'A').u32(902).u32(902).lsn(0x99).i64(T).0,
        ],
    );
    let Event::Stream(st) = &evs[0] else { panic!() };
    assert_eq!((st.kind, st.xid, st.first_segment), (StreamKind::Start, Some(900), Some(true)));
    assert_eq!(evs[1].xid(), Some(900));
    assert_eq!(evs[2].xid(), Some(901), "a subtransaction's change carries its own xid");
    let Event::Message(m) = &evs[3] else { panic!() };
    assert_eq!(m.xid, Nullable::Value(900));
    let Event::Stream(st) = &evs[4] else { panic!() };
    assert_eq!((st.kind, st.xid), (StreamKind::Stop, Some(900)));
    assert_eq!(evs[6].xid(), Some(7));
    let Event::Stream(st) = &evs[8] else { panic!() };
    assert_eq!(st.first_segment, Some(false));
    let Event::Delete(x) = &evs[9] else { panic!() };
    assert_eq!(x.xid, Some(900));
    let Event::Stream(st) = &evs[11] else { panic!() };
    assert_eq!((st.kind, st.xid, st.subxid, st.lsn), (StreamKind::Abort, Some(900), Some(901), None));
    let Event::Commit(c) = &evs[12] else { panic!() };
    assert_eq!((c.xid, c.lsn, c.next_lsn), (Some(900), Some(Lsn(0x80)), Some(Lsn(0x98))));
    let Event::Stream(st) = &evs[13] else { panic!() };
    assert_eq!((st.subxid, st.lsn, st.timestamp.as_deref()), (Some(902), Some(Lsn(0x99)), Some(TS)));
    assert!(!d.in_stream() && !d.in_transaction());
    // a stray Stream Abort of protocol 1 (PostgreSQL 18), outside any stream
    let evs = decode_all(&mut d, &[B::new(b'A').u32(5).u32(6).0]);
    assert_eq!(evs.len(), 1);
}

#[test]
fn relations_are_replaced_and_unknown_ones_are_errors() {
    let mut d = PgoutputDecoder::new();
    let e = d.decode_each(&insert(None, 42, &[b"t:1"]), |_| {}).unwrap_err();
    assert!(e.to_string().contains("unknown relation id 42") && e.to_string().ends_with(" at byte 1"), "{e}");
    d.decode_each(&B::new(b'S').u32(1).u8(1).0, |_| {}).unwrap();
    let e = d.decode_each(&insert(Some(1), 42, &[b"t:1"]), |_| {}).unwrap_err();
    assert!(e.to_string().ends_with(" at byte 5"), "{e}");
    d.reset();
    let e = d.decode_each(&B::new(b'T').i32(1).u8(0).u32(42).0, |_| {}).unwrap_err();
    assert!(e.to_string().ends_with(" at byte 6"), "{e}");
    d.decode_each(&relation(None, 42, "public", "t", b'd', &[("a", 23, -1, true)]), |_| {}).unwrap();
    // a Truncate of a known and an unknown relation: the second fails from the iterator
    let p = B::new(b'T').i32(2).u8(0).u32(42).u32(43).0;
    let mut it = d.events(&p).unwrap();
    assert!(it.next().unwrap().is_ok());
    let e = it.next().unwrap().unwrap_err();
    assert!(e.to_string().ends_with(" at byte 10"), "{e}");
    drop(it);
    let e = d.decode_each(&insert(None, 42, &[b"t:1", b"t:2"]), |_| {}).unwrap_err();
    assert!(e.to_string().contains("a tuple of 2 columns"), "{e}");
    // mid-stream redefinition (ALTER TABLE … ADD COLUMN)
    d.decode_each(&relation(None, 42, "public", "t2", b'd', &[("a", 23, -1, true), ("b", 25, -1, false)]), |_| {})
        .unwrap();
    let evs = decode_all(&mut d, &[insert(None, 42, &[b"t:1", b"t:2"])]);
    let Event::Insert(c) = &evs[0] else { panic!() };
    assert_eq!((&*c.table, c.columns.len()), ("t2", 2));
    // bad values
    d.decode_each(&relation(None, 7, "public", "b", b'd', &[("x", 16, -1, false)]), |_| {}).unwrap();
    let p = insert(None, 7, &[b"t:yes"]);
    let e = d.decode_each(&p, |_| {}).unwrap_err();
    assert!(e.to_string().ends_with(&format!(" at byte {}", p.len() - 3)), "{e}");
    d.decode_each(&relation(None, 8, "public", "s", b'd', &[("x", 25, -1, false)]), |_| {}).unwrap();
    let p = insert(None, 8, &[b"t:a\xffb"]);
    let e = d.decode_each(&p, |_| {}).unwrap_err();
    assert!(e.to_string().ends_with(&format!(" at byte {}", p.len() - 2)), "{e}");
    // a type named after the relation was described
    d.decode_each(&relation(None, 9, "public", "e", b'd', &[("x", 16600, -1, false)]), |_| {}).unwrap();
    assert_eq!(d.relation(9).unwrap().columns[0].type_name, None);
    d.decode_each(&B::new(b'Y').u32(16600).str("Sch").str("_e").0, |_| {}).unwrap();
    assert_eq!(d.relation(9).unwrap().columns[0].type_name.as_deref(), Some("\"Sch\".e[]"));
    d.clear_relations();
    assert!(d.relation(9).is_none());
}

#[test]
fn binary_values_as_their_text() {
    let mut d = PgoutputDecoder::new();
    let cols: &[(&str, u32, i32, bool)] = &[
        ("b", 16, -1, false),
        ("i2", 21, -1, false),
        ("i4", 23, -1, false),
        ("i8", 20, -1, false),
        ("o", 26, -1, false),
        ("f4", 700, -1, false),
        ("f8", 701, -1, false),
        ("nan", 701, -1, false),
        ("n", 1700, -1, false),
        ("ba", 17, -1, false),
        ("u", 2950, -1, false),
        ("t", 25, -1, false),
        ("j", 3802, -1, false),
        ("d", 1082, -1, false),
    ];
    d.decode_each(&relation(None, 1, "public", "t", b'd', cols), |_| {}).unwrap();
    let numeric: Vec<u8> = [2u16, 0, 0x4000, 2, 12, 5000].iter().flat_map(|w| w.to_be_bytes()).collect();
    let f4 = 1.5f32.to_be_bytes();
    let f8 = 1.5e300f64.to_be_bytes();
    let nan = f64::NAN.to_be_bytes();
    let i8v = i64::MIN.to_be_bytes();
    let vals: Vec<Vec<u8>> = vec![
        [b"b:".as_slice(), &[1]].concat(),
        [b"b:".as_slice(), &(-7i16).to_be_bytes()].concat(),
        [b"b:".as_slice(), &123_456i32.to_be_bytes()].concat(),
        [b"b:".as_slice(), &i8v].concat(),
        [b"b:".as_slice(), &4_000_000_000u32.to_be_bytes()].concat(),
        [b"b:".as_slice(), &f4].concat(),
        [b"b:".as_slice(), &f8].concat(),
        [b"b:".as_slice(), &nan].concat(),
        [b"b:".as_slice(), &numeric].concat(),
        b"b:\x00\xff".to_vec(),
        [b"b:".as_slice(), &[0x12; 16]].concat(),
        b"b:h\xc3\xa9".to_vec(),
        b"b:\x01{\"k\": 1}".to_vec(),
        b"b:\x00\x00\x01\x00".to_vec(),
    ];
    let refs: Vec<&[u8]> = vals.iter().map(Vec::as_slice).collect();
    let evs = decode_all(&mut d, &[insert(None, 1, &refs)]);
    let Event::Insert(c) = &evs[0] else { panic!() };
    let got: Vec<Value<'_>> = c.columns.iter().map(|c| c.value.clone()).collect();
    assert_eq!(
        got,
        vec![
            Value::Bool(true),
            num("-7"),
            num("123456"),
            num("-9223372036854775808"),
            num("4000000000"),
            num("1.5"),
            num("1.5e+300"),
            s("NaN"),
            num("-12.50"),
            s("00ff"),
            s("12121212-1212-1212-1212-121212121212"),
            s("hé"),
            s("{\"k\": 1}"),
            // a date's send format: its hex digits
            s("00000100"),
        ]
    );
    for bad in [&b"b:\x02"[..], b"b:"] {
        d.decode_each(&relation(None, 2, "public", "x", b'd', &[("b", 16, -1, false)]), |_| {}).unwrap();
        assert!(d.decode_each(&insert(None, 2, &[bad]), |_| {}).is_err());
    }
    d.decode_each(&relation(None, 3, "public", "x", b'd', &[("j", 3802, -1, false)]), |_| {}).unwrap();
    assert!(d.decode_each(&insert(None, 3, &[b"b:\x02{}"]), |_| {}).is_err());
}

#[test]
fn recycled_storage_is_reused() {
    let mut d = PgoutputDecoder::new();
    let cols: &[(&str, u32, i32, bool)] = &[("id", 23, -1, true), ("v", 1043, 24, false)];
    d.decode_each(&relation(None, 1, "public", "t", b'd', cols), |_| {}).unwrap();
    let p = insert(None, 1, &[b"t:1", b"t:x"]);
    fn owned(c: &crate::event::Change<'_>) -> Vec<usize> {
        let mut v = vec![c.table.as_ptr() as usize, c.schema.as_ref().unwrap().as_ptr() as usize];
        for col in &c.columns {
            v.push(col.name.as_ptr() as usize);
            if let Some(Cow::Owned(t)) = &col.type_name {
                v.push(t.as_ptr() as usize);
            }
        }
        v
    }
    let ev = d.events(&p).unwrap().next().unwrap().unwrap();
    let first = owned(ev.change().unwrap());
    let vecs = [ev.change().unwrap().columns.as_ptr() as usize, ev.change().unwrap().identity.as_ptr() as usize];
    d.recycle(ev);
    let ev = d.events(&p).unwrap().next().unwrap().unwrap();
    let c = ev.change().unwrap();
    assert!(vecs.contains(&(c.columns.as_ptr() as usize)));
    // every copied name is a recycled string
    for ptr in owned(c) {
        assert!(first.contains(&ptr));
    }
    // values are borrowed from the payload
    let Value::Number(v) = &c.columns[0].value else { panic!() };
    assert!(matches!(v, Cow::Borrowed(_)));
    assert!(matches!(c.columns[1].type_name, Some(Cow::Owned(_))));
    assert!(matches!(c.columns[0].type_name, Some(Cow::Borrowed("integer"))));
}

/// Re-encode a parsed message as proto.c writes it (for the round trip).
fn encode(m: &Message<'_>) -> Vec<u8> {
    fn tuple(b: B, t: &message::TupleData<'_>) -> B {
        let mut b = b.u16(t.len() as u16);
        for v in t.iter() {
            b = match v {
                TupleValue::Null => b.u8(b'n'),
                TupleValue::Unchanged => b.u8(b'u'),
                TupleValue::Text(x) => b.u8(b't').i32(x.len() as i32).bytes(x),
                TupleValue::Binary(x) => b.u8(b'b').i32(x.len() as i32).bytes(x),
            };
        }
        b
    }
    fn xid(b: B, x: Option<u32>) -> B {
        match x {
            Some(x) => b.u32(x),
            None => b,
        }
    }
    fn ns(s: &str) -> &str {
        if s == "pg_catalog" {
            ""
        } else {
            s
        }
    }
    let b = B::new(m.tag());
    match m {
        Message::Begin(x) => b.lsn(x.final_lsn.0).i64(x.commit_time).u32(x.xid),
        Message::Commit(x) => b.u8(x.flags).lsn(x.commit_lsn.0).lsn(x.end_lsn.0).i64(x.commit_time),
        Message::Origin(x) => b.lsn(x.lsn.0).str(x.name),
        Message::Relation(r) => {
            let mut b = xid(b, r.xid).u32(r.id).str(ns(r.namespace)).str(r.name).u8(r.replica_identity);
            b = b.u16(r.columns.len() as u16);
            for c in r.columns.iter() {
                b = b.u8(c.flags).str(c.name).u32(c.type_oid).i32(c.typmod);
            }
            b
        }
        Message::Type(t) => xid(b, t.xid).u32(t.id).str(ns(t.namespace)).str(t.name),
        Message::Insert(i) => tuple(xid(b, i.xid).u32(i.relation_id).u8(b'N'), &i.new),
        Message::Update(u) => {
            let mut b = xid(b, u.xid).u32(u.relation_id);
            if let Some(o) = &u.old {
                b = tuple(b.u8(if o.kind == OldKind::Key { b'K' } else { b'O' }), &o.data);
            }
            tuple(b.u8(b'N'), &u.new)
        }
        Message::Delete(x) => tuple(
            xid(b, x.xid).u32(x.relation_id).u8(if x.old.kind == OldKind::Key { b'K' } else { b'O' }),
            &x.old.data,
        ),
        Message::Truncate(t) => {
            let mut b = xid(b, t.xid).i32(t.relation_ids.len() as i32).u8(t.flags);
            for id in t.relation_ids.iter() {
                b = b.u32(id);
            }
            b
        }
        Message::Message(x) => {
            xid(b, x.xid).u8(x.flags).lsn(x.lsn.0).str(x.prefix).i32(x.content.len() as i32).bytes(x.content)
        }
        Message::StreamStart(x) => b.u32(x.xid).u8(u8::from(x.first_segment)),
        Message::StreamStop => b,
        Message::StreamCommit(x) => b.u32(x.xid).u8(x.flags).lsn(x.commit_lsn.0).lsn(x.end_lsn.0).i64(x.commit_time),
        Message::StreamAbort(x) => {
            let b = b.u32(x.xid).u32(x.subxid);
            match (x.abort_lsn, x.abort_time) {
                (Some(l), Some(t)) => b.lsn(l.0).i64(t),
                _ => b,
            }
        }
        Message::BeginPrepare(x) => b.lsn(x.prepare_lsn.0).lsn(x.end_lsn.0).i64(x.prepare_time).u32(x.xid).str(x.gid),
        Message::Prepare(x) | Message::StreamPrepare(x) => {
            b.u8(x.flags).lsn(x.prepare_lsn.0).lsn(x.end_lsn.0).i64(x.prepare_time).u32(x.xid).str(x.gid)
        }
        Message::CommitPrepared(x) => {
            b.u8(x.flags).lsn(x.commit_lsn.0).lsn(x.end_lsn.0).i64(x.commit_time).u32(x.xid).str(x.gid)
        }
        Message::RollbackPrepared(x) => b
            .u8(x.flags)
            .lsn(x.prepare_end_lsn.0)
            .lsn(x.rollback_end_lsn.0)
            .i64(x.prepare_time)
            .i64(x.rollback_time)
            .u32(x.xid)
            .str(x.gid),
    }
    .0
}

#[test]
fn samples_round_trip() {
    for (name, in_stream, p) in samples() {
        assert_eq!(encode(&parse(&p, in_stream).unwrap()), p, "{name}");
    }
}

fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z_ \"é]{0,12}"
}

fn tuple_vals() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"n".to_vec()),
            Just(b"u".to_vec()),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(|v| [b"t:".to_vec(), v].concat()),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(|v| [b"b:".to_vec(), v].concat()),
        ],
        0..6,
    )
}

/// Arbitrary well-formed messages, as bytes, with whether they are inside a streamed block.
fn any_message() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let xid = prop::option::of(any::<u32>());
    prop_oneof![
        (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(l, t, x)| (B::new(b'B').lsn(l).i64(t).u32(x).0, false)),
        (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>())
            .prop_map(|(f, a, b, t)| (B::new(b'C').u8(f).lsn(a).lsn(b).i64(t).0, false)),
        (any::<u64>(), ident()).prop_map(|(l, n)| (B::new(b'O').lsn(l).str(&n).0, false)),
        (
            xid.clone(),
            any::<u32>(),
            ident(),
            ident(),
            any::<u8>(),
            prop::collection::vec((any::<u8>(), ident(), any::<u32>(), any::<i32>()), 0..5)
        )
            .prop_map(|(x, id, s, n, ri, cols)| {
                let mut b = B::new(b'R');
                if let Some(x) = x {
                    b = b.u32(x);
                }
                b = b.u32(id).str(&s).str(&n).u8(ri).u16(cols.len() as u16);
                for (f, c, o, m) in &cols {
                    b = b.u8(*f).str(c).u32(*o).i32(*m);
                }
                (b.0, x.is_some())
            }),
        (xid.clone(), any::<u32>(), ident(), ident()).prop_map(|(x, id, s, n)| {
            let mut b = B::new(b'Y');
            if let Some(x) = x {
                b = b.u32(x);
            }
            (b.u32(id).str(&s).str(&n).0, x.is_some())
        }),
        (xid.clone(), any::<u32>(), prop::option::of((any::<bool>(), tuple_vals())), tuple_vals(), 0..3u8).prop_map(
            |(x, rel, old, new, kind)| {
                let mut b = B::new([b'I', b'U', b'D'][usize::from(kind)]);
                if let Some(x) = x {
                    b = b.u32(x);
                }
                b = b.u32(rel);
                fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
                    v.iter().map(Vec::as_slice).collect()
                }
                match kind {
                    0 => b = b.u8(b'N').tuple(&refs(&new)),
                    1 => {
                        if let Some((k, o)) = &old {
                            b = b.u8(if *k { b'K' } else { b'O' }).tuple(&refs(o));
                        }
                        b = b.u8(b'N').tuple(&refs(&new));
                    }
                    _ => b = b.u8(if old.as_ref().is_some_and(|o| o.0) { b'K' } else { b'O' }).tuple(&refs(&new)),
                }
                (b.0, x.is_some())
            }
        ),
        (xid.clone(), any::<u8>(), prop::collection::vec(any::<u32>(), 0..5)).prop_map(|(x, f, ids)| {
            let mut b = B::new(b'T');
            if let Some(x) = x {
                b = b.u32(x);
            }
            b = b.i32(ids.len() as i32).u8(f);
            for id in ids {
                b = b.u32(id);
            }
            (b.0, x.is_some())
        }),
        (xid, any::<u8>(), any::<u64>(), ident(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(
            |(x, f, l, p, c)| {
                let mut b = B::new(b'M');
                if let Some(x) = x {
                    b = b.u32(x);
                }
                (b.u8(f).lsn(l).str(&p).i32(c.len() as i32).bytes(&c).0, x.is_some())
            }
        ),
        (any::<u32>(), any::<bool>()).prop_map(|(x, f)| (B::new(b'S').u32(x).u8(u8::from(f)).0, false)),
        Just((B::new(b'E').0, true)),
        (any::<u32>(), any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>())
            .prop_map(|(x, f, a, b, t)| (B::new(b'c').u32(x).u8(f).lsn(a).lsn(b).i64(t).0, false)),
        (any::<u32>(), any::<u32>(), prop::option::of((any::<u64>(), any::<i64>()))).prop_map(|(x, s, a)| {
            let b = B::new(b'A').u32(x).u32(s);
            (
                match a {
                    Some((l, t)) => b.lsn(l).i64(t).0,
                    None => b.0,
                },
                false,
            )
        }),
        (
            prop::sample::select(&b"bPpKr"[..]),
            any::<u8>(),
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
            any::<u32>(),
            ident()
        )
            .prop_map(|(tag, f, a, l, t, x, g)| {
                let b = B::new(tag);
                let b = match tag {
                    b'b' => b.lsn(a).lsn(l).i64(t).u32(x).str(&g),
                    b'r' => b.u8(f).lsn(a).lsn(l).i64(t).i64(t).u32(x).str(&g),
                    _ => b.u8(f).lsn(a).lsn(l).i64(t).u32(x).str(&g),
                };
                (b.0, false)
            }),
    ]
}

proptest! {
    #[test]
    fn well_formed_messages_round_trip((p, in_stream) in any_message()) {
        let m = parse(&p, in_stream).unwrap();
        prop_assert_eq!(encode(&m), p.clone());
        // and every prefix fails cleanly
        for n in 0..p.len() {
            prop_assert!(parse(&p[..n], in_stream).is_err() || (p[0] == b'A' && n == 9));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(p in prop::collection::vec(any::<u8>(), 0..64), in_stream in any::<bool>()) {
        if let Err(e) = parse(&p, in_stream) {
            prop_assert!(e.to_string().contains(" at byte "));
        }
        let mut d = decoder_with_relation(in_stream);
        if let Ok(evs) = d.events(&p) {
            for ev in evs {
                if let Err(e) = ev {
                    prop_assert!(e.to_string().contains(" at byte "));
                }
            }
        }
    }

    #[test]
    fn arbitrary_tags_with_arbitrary_bodies(tag in prop::sample::select(&b"BCORYIUDTMSEcAbPKrp"[..]), body in prop::collection::vec(any::<u8>(), 0..80), in_stream in any::<bool>()) {
        let p = [vec![tag], body].concat();
        let _ = parse(&p, in_stream);
        let mut d = decoder_with_relation(in_stream);
        let _ = d.decode_each(&p, |_| {});
    }
}
