//! Property tests: events generated at random and serialized exactly as wal2json 2.5 would (format 2, format 1
//! compact and pretty, format 1 write-in-chunks; escapes, raw defaults, raw quoted type names, exact number
//! texts, every option combination) decode back to the same events; the writer's output is valid JSON that
//! decodes back to the same events; arbitrary bytes never make a decoder panic.
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

use std::borrow::Cow;

use pgrepl::wal2json::{
    boundary_after, write_event, AnyDecoder, Boundary, Change, ChunkedDecoder, Column, Decoder, Event, Format, Message,
    Nullable, PkColumn, Transaction, Truncate, Value,
};
use pgrepl::Lsn;
use proptest::prelude::*;

// ---------- options ----------

#[derive(Debug, Clone, Copy)]
struct Opts {
    xids: bool,
    timestamp: bool,
    origin: bool,
    lsn: bool,
    schemas: bool,
    types: bool,
    type_oids: bool,
    positions: bool,
    not_null: bool,
    default: bool,
    pk: bool,
    pretty: bool,
}

fn opts() -> impl Strategy<Value = Opts> {
    prop::array::uniform12(any::<bool>()).prop_map(|a| Opts {
        xids: a[0],
        timestamp: a[1],
        origin: a[2],
        lsn: a[3],
        schemas: a[4],
        types: a[5],
        type_oids: a[6],
        positions: a[7],
        not_null: a[8],
        default: a[9],
        pk: a[10],
        pretty: a[11],
    })
}

// ---------- generated data ----------

#[derive(Debug, Clone)]
struct GCol {
    name: String,
    ty: String,
    oid: u32,
    value: Value<'static>,
    optional: bool,
    position: i32,
    default: Option<String>,
}

#[derive(Debug, Clone)]
enum GChange {
    Insert { cols: Vec<GCol> },
    Update { cols: Vec<GCol>, ident: Vec<GCol> },
    Delete { ident: Vec<GCol> },
    Message { transactional: bool, prefix: String, content: Vec<u8> },
}

#[derive(Debug, Clone)]
struct GTable {
    schema: String,
    table: String,
    pk: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct GTx {
    xid: u32,
    lsn: u64,
    next_lsn: u64,
    ts: String,
    origin: u16,
    table: GTable,
    changes: Vec<GChange>,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,12}",
        "[a-zA-Z0-9 \"\\\\/\t\n\r\u{8}\u{c}\u{1}\u{1f}é日本🎉,:{}\\[\\]]{0,16}",
        any::<String>().prop_map(|s| s.replace('\0', "")),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-0".to_string()),
        Just("0.0000000001".to_string()),
        Just("123456789012345678901234567890.123456789".to_string()),
        Just("3.4028235e+38".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("4000000000".to_string()),
        Just("1e-300".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        (any::<i32>(), 0u32..1000000).prop_map(|(a, b)| format!("{a}.{b:06}")),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}").replace("inf", "0")),
    ]
    .prop_filter("json number", |s| serde_json::from_str::<serde_json::Number>(s).is_ok())
}

fn value() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(|n| Value::Number(Cow::Owned(n))),
        text().prop_map(|s| Value::String(Cow::Owned(s))),
    ]
}

/// A `format_type()` result: plain (printed as a JSON string) or starting with a quoted identifier (printed raw
/// by wal2json, unless it is an array).
fn type_name() -> impl Strategy<Value = String> {
    let ident = "[a-zA-Z ,\"}\\]é]{1,8}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\"")));
    prop_oneof![
        Just("integer".to_string()),
        Just("numeric(12,2)".to_string()),
        Just("timestamp with time zone".to_string()),
        Just("text[]".to_string()),
        ident.clone(),
        (ident.clone(), "[a-z_]{1,8}").prop_map(|(s, t)| format!("{s}.{t}")),
        (ident.clone(), ident.clone()).prop_map(|(s, t)| format!("{s}.{t}")),
        (ident, "[a-z]{1,5}").prop_map(|(s, t)| format!("{s}.{t}[]")),
    ]
}

/// A `pg_get_expr()` result (what wal2json prints without escaping): balanced quotes, no backslashes (a raw
/// backslash that forms a JSON escape cannot be told apart from one) and no braces.
fn default_expr() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("now()".to_string())),
        Just(Some("42".to_string())),
        "[a-z \",'\t:é]{0,10}".prop_map(|s| Some(format!("'{}'::text", s.replace('\'', "''")))),
        "[a-zA-Z \",.é]{1,10}"
            .prop_map(|s| Some(format!("nextval('\"{}\".seq'::regclass)", s.replace('"', "\"\"").replace('\'', "''")))),
    ]
}

fn gcol() -> impl Strategy<Value = GCol> {
    (text(), type_name(), any::<u32>(), value(), any::<bool>(), 1i32..1600, default_expr()).prop_map(
        |(name, ty, oid, value, optional, position, default)| GCol {
            name,
            ty,
            oid,
            value,
            optional,
            position,
            default,
        },
    )
}

fn gchange() -> impl Strategy<Value = GChange> {
    prop_oneof![
        prop::collection::vec(gcol(), 0..6).prop_map(|cols| GChange::Insert { cols }),
        (prop::collection::vec(gcol(), 0..6), prop::collection::vec(gcol(), 0..3))
            .prop_map(|(cols, ident)| GChange::Update { cols, ident }),
        prop::collection::vec(gcol(), 0..3).prop_map(|ident| GChange::Delete { ident }),
        (any::<bool>(), text(), prop::collection::vec(1u8..=255, 0..24))
            .prop_map(|(transactional, prefix, content)| GChange::Message { transactional, prefix, content }),
    ]
}

fn gtx() -> impl Strategy<Value = GTx> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        "20[0-9]{2}-0[1-9]-1[0-9] 0[0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?\\+0[0-9]",
        any::<u16>(),
        (text(), text(), prop::collection::vec((text(), type_name()), 0..3)),
        prop::collection::vec(gchange(), 0..6),
    )
        .prop_map(|(xid, lsn, next_lsn, ts, origin, (schema, table, pk), changes)| GTx {
            xid,
            lsn,
            next_lsn,
            ts,
            origin,
            table: GTable { schema, table, pk },
            changes,
        })
}

/// A transaction whose changes are rows of one column set (as a table's rows are), the values differing, and
/// now and then one column's name, type or OID differing too: the format 2 decoder's per-column prefix cache
/// (the previous row's `{"name":…,"type":…,"value":` bytes) must give what a parse gives.
fn gtx_rows() -> impl Strategy<Value = GTx> {
    let row = (prop::collection::vec(value(), 6), any::<u8>(), gcol(), 0usize..3);
    (gtx(), prop::collection::vec(gcol(), 1..6), prop::collection::vec(row, 1..10)).prop_map(|(mut tx, base, rows)| {
        tx.changes = rows
            .into_iter()
            .map(|(values, pick, other, kind)| {
                let mut cols = base.clone();
                for (c, v) in cols.iter_mut().zip(values) {
                    c.value = v;
                }
                let i = usize::from(pick) % cols.len();
                match pick % 4 {
                    0 => cols[i].name = other.name,
                    1 => cols[i].ty = other.ty,
                    2 => cols[i].oid = other.oid,
                    _ => {}
                }
                match kind {
                    0 => GChange::Insert { cols },
                    1 => GChange::Update { ident: cols[..1].to_vec(), cols },
                    _ => GChange::Delete { ident: cols },
                }
            })
            .collect();
        tx
    })
}

// ---------- wal2json's printing ----------

/// PostgreSQL's escape_json on bytes: `"` `\` and control characters escaped, everything else raw.
fn esc(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// wal2json prints a type raw when format_type's output starts with a quote and is not an array.
fn ty(out: &mut Vec<u8>, t: &str) {
    if t.starts_with('"') && !t.ends_with(']') {
        out.extend_from_slice(t.as_bytes());
    } else {
        esc(out, t.as_bytes());
    }
}

/// What the decoder reads for a type printed by `ty`: a raw type that is exactly one JSON string (a lone quoted
/// identifier such as `"My Type"`) cannot be told from a JSON string and comes back unquoted (documented).
fn ty_read(t: &str) -> Cow<'static, str> {
    if t.starts_with('"') && !t.ends_with(']') {
        if let Ok(s) = serde_json::from_str::<String>(t) {
            return Cow::Owned(s);
        }
    }
    Cow::Owned(t.to_string())
}

fn val(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.as_bytes()),
        Value::String(s) => esc(out, s.as_bytes()),
    }
}

fn v2_col(out: &mut Vec<u8>, c: &GCol, o: &Opts, full: bool) {
    out.extend_from_slice(b"{\"name\":");
    esc(out, c.name.as_bytes());
    if o.types {
        out.extend_from_slice(b",\"type\":");
        ty(out, &c.ty);
    }
    if o.type_oids {
        out.extend_from_slice(format!(",\"typeoid\":{}", c.oid as i32).as_bytes());
    }
    out.extend_from_slice(b",\"value\":");
    val(out, &c.value);
    if full {
        if o.not_null {
            out.extend_from_slice(format!(",\"optional\":{}", c.optional).as_bytes());
        }
        if o.positions {
            out.extend_from_slice(format!(",\"position\":{}", c.position).as_bytes());
        }
        if o.default {
            match &c.default {
                Some(d) => out.extend_from_slice(format!(",\"default\":\"{d}\"").as_bytes()),
                None => out.extend_from_slice(b",\"default\":null"),
            }
        }
    }
    out.push(b'}');
}

fn v2_cols(out: &mut Vec<u8>, key: &str, cols: &[GCol], o: &Opts, full: bool) {
    out.extend_from_slice(format!(",\"{key}\":[").as_bytes());
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        v2_col(out, c, o, full);
    }
    out.push(b']');
}

fn lsn_s(v: u64) -> String {
    Lsn(v).to_string()
}

/// Format 2 payloads for a transaction (with include-transaction).
fn v2_payloads(tx: &GTx, o: &Opts) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let head = |action: &str, nontx: bool, lsn: u64| {
        let mut p = format!("{{\"action\":\"{action}\"").into_bytes();
        if o.xids {
            let x = if nontx { "null".to_string() } else { tx.xid.to_string() };
            p.extend_from_slice(format!(",\"xid\":{x}").as_bytes());
        }
        if o.timestamp {
            if nontx {
                p.extend_from_slice(b",\"timestamp\":null");
            } else {
                p.extend_from_slice(b",\"timestamp\":");
                esc(&mut p, tx.ts.as_bytes());
            }
        }
        if o.origin {
            p.extend_from_slice(
                if nontx { ",\"origin\":null".to_string() } else { format!(",\"origin\":{}", tx.origin) }.as_bytes(),
            );
        }
        if o.lsn {
            p.extend_from_slice(format!(",\"lsn\":\"{}\"", lsn_s(lsn)).as_bytes());
        }
        p
    };
    let bc = |action: &str| {
        let mut p = head(action, false, tx.lsn);
        if o.lsn {
            p.extend_from_slice(format!(",\"nextlsn\":\"{}\"", lsn_s(tx.next_lsn)).as_bytes());
        }
        p.push(b'}');
        p
    };
    out.push(bc("B"));
    for (i, ch) in tx.changes.iter().enumerate() {
        let lsn = tx.lsn.wrapping_add(i as u64);
        let rel = |action: &str| {
            let mut p = head(action, false, lsn);
            if o.schemas {
                p.extend_from_slice(b",\"schema\":");
                esc(&mut p, tx.table.schema.as_bytes());
            }
            p.extend_from_slice(b",\"table\":");
            esc(&mut p, tx.table.table.as_bytes());
            p
        };
        let pk = |p: &mut Vec<u8>| {
            if o.pk {
                p.extend_from_slice(b",\"pk\":[");
                for (i, (n, t)) in tx.table.pk.iter().enumerate() {
                    if i > 0 {
                        p.push(b',');
                    }
                    p.extend_from_slice(b"{\"name\":");
                    esc(p, n.as_bytes());
                    if o.types {
                        p.extend_from_slice(b",\"type\":");
                        ty(p, t);
                    }
                    if o.type_oids {
                        p.extend_from_slice(b",\"typeoid\":25");
                    }
                    p.push(b'}');
                }
                p.push(b']');
            }
        };
        let p = match ch {
            GChange::Insert { cols } => {
                let mut p = rel("I");
                v2_cols(&mut p, "columns", cols, o, true);
                pk(&mut p);
                p
            }
            GChange::Update { cols, ident } => {
                let mut p = rel("U");
                v2_cols(&mut p, "columns", cols, o, true);
                if !ident.is_empty() {
                    v2_cols(&mut p, "identity", ident, o, false);
                }
                pk(&mut p);
                p
            }
            GChange::Delete { ident } => {
                let mut p = rel("D");
                v2_cols(&mut p, "identity", ident, o, false);
                pk(&mut p);
                p
            }
            GChange::Message { transactional, prefix, content } => {
                let mut p = head("M", !transactional, lsn);
                p.extend_from_slice(format!(",\"transactional\":{transactional},\"prefix\":").as_bytes());
                esc(&mut p, prefix.as_bytes());
                p.extend_from_slice(b",\"content\":");
                esc(&mut p, content);
                p
            }
        };
        let mut p = p;
        p.push(b'}');
        out.push(p);
    }
    out.push(bc("C"));
    out
}

fn v2_expected(tx: &GTx, o: &Opts) -> Vec<Event<'static>> {
    let t = || Transaction {
        xid: o.xids.then_some(u64::from(tx.xid)),
        lsn: o.lsn.then_some(Lsn(tx.lsn)),
        next_lsn: o.lsn.then_some(Lsn(tx.next_lsn)),
        timestamp: o.timestamp.then(|| Cow::Owned(tx.ts.clone())),
        origin: o.origin.then_some(u32::from(tx.origin)),
    };
    let col = |c: &GCol, full: bool| Column {
        name: Cow::Owned(c.name.clone()),
        type_name: o.types.then(|| ty_read(&c.ty)),
        type_oid: o.type_oids.then_some(i64::from(c.oid as i32)),
        value: c.value.clone(),
        optional: (full && o.not_null).then_some(c.optional),
        position: (full && o.positions).then_some(c.position),
        // include-default prints `null` for a column without a default
        default: match (full && o.default, &c.default) {
            (false, _) => Nullable::Absent,
            (true, None) => Nullable::Null,
            (true, Some(d)) => Nullable::Value(Cow::Owned(d.clone())),
        },
    };
    let mut out = vec![Event::Begin(t())];
    for (i, ch) in tx.changes.iter().enumerate() {
        let lsn = o.lsn.then_some(Lsn(tx.lsn.wrapping_add(i as u64)));
        let change = |cols: &[GCol], ident: &[GCol]| Change {
            xid: o.xids.then_some(u64::from(tx.xid)),
            lsn,
            timestamp: o.timestamp.then(|| Cow::Owned(tx.ts.clone())),
            origin: o.origin.then_some(u32::from(tx.origin)),
            schema: o.schemas.then(|| Cow::Owned(tx.table.schema.clone())),
            table: Cow::Owned(tx.table.table.clone()),
            columns: cols.iter().map(|c| col(c, true)).collect(),
            identity: ident.iter().map(|c| col(c, false)).collect(),
            pk: o.pk.then(|| {
                tx.table
                    .pk
                    .iter()
                    .map(|(n, t)| PkColumn {
                        name: Cow::Owned(n.clone()),
                        type_name: o.types.then(|| ty_read(t)),
                        type_oid: o.type_oids.then_some(25),
                    })
                    .collect()
            }),
        };
        out.push(match ch {
            GChange::Insert { cols } => Event::Insert(change(cols, &[])),
            GChange::Update { cols, ident } => Event::Update(change(cols, ident)),
            GChange::Delete { ident } => Event::Delete(change(&[], ident)),
            // a non-transactional message prints `null` for the options that are on
            GChange::Message { transactional, prefix, content } => Event::Message(Message {
                xid: message_key(o.xids, *transactional, u64::from(tx.xid)),
                lsn,
                timestamp: message_key(o.timestamp, *transactional, Cow::Owned(tx.ts.clone())),
                origin: message_key(o.origin, *transactional, u32::from(tx.origin)),
                transactional: *transactional,
                prefix: Cow::Owned(prefix.clone()),
                content: Cow::Owned(content.clone()),
            }),
        });
    }
    out.push(Event::Commit(t()));
    out
}

/// A format 2 message's `xid`/`timestamp`/`origin`: absent without the option, `null` on a non-transactional
/// message, else the value.
fn message_key<T>(option: bool, transactional: bool, v: T) -> Nullable<T> {
    match (option, transactional) {
        (false, _) => Nullable::Absent,
        (true, false) => Nullable::Null,
        (true, true) => Nullable::Value(v),
    }
}

// ---- format 1 ----

struct V1<'o> {
    o: &'o Opts,
}

impl V1<'_> {
    fn nl(&self) -> &'static str {
        if self.o.pretty {
            "\n"
        } else {
            ""
        }
    }
    fn sp(&self) -> &'static str {
        if self.o.pretty {
            " "
        } else {
            ""
        }
    }
    fn ht(&self, n: usize) -> String {
        if self.o.pretty {
            "\t".repeat(n)
        } else {
            String::new()
        }
    }
    fn key(&self, out: &mut Vec<u8>, depth: usize, first: bool, k: &str) {
        if !first {
            out.push(b',');
            out.extend_from_slice(self.nl().as_bytes());
        }
        out.extend_from_slice(format!("{}\"{k}\":{}", self.ht(depth), self.sp()).as_bytes());
    }
    fn arr<T>(&self, out: &mut Vec<u8>, items: &[T], mut f: impl FnMut(&mut Vec<u8>, &T)) {
        out.push(b'[');
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
                out.extend_from_slice(self.sp().as_bytes());
            }
            f(out, it);
        }
        out.push(b']');
    }
    fn header(&self, tx: &GTx) -> Vec<u8> {
        let o = self.o;
        let mut p = format!("{{{}", self.nl()).into_bytes();
        let mut first = true;
        if o.xids {
            self.key(&mut p, 1, first, "xid");
            p.extend_from_slice(tx.xid.to_string().as_bytes());
            first = false;
        }
        if o.lsn {
            self.key(&mut p, 1, first, "nextlsn");
            p.extend_from_slice(format!("\"{}\"", lsn_s(tx.next_lsn)).as_bytes());
            first = false;
        }
        if o.timestamp {
            self.key(&mut p, 1, first, "timestamp");
            esc(&mut p, tx.ts.as_bytes());
            first = false;
        }
        if o.origin {
            self.key(&mut p, 1, first, "origin");
            p.extend_from_slice(tx.origin.to_string().as_bytes());
            first = false;
        }
        self.key(&mut p, 1, first, "change");
        p.push(b'[');
        p
    }
    fn change(&self, tx: &GTx, ch: &GChange) -> Vec<u8> {
        let o = self.o;
        let mut p = format!("{}{{{}", self.ht(2), self.nl()).into_bytes();
        let d = 3;
        let cols = |p: &mut Vec<u8>, cols: &[GCol]| {
            self.key(p, d, false, "columnnames");
            self.arr(p, cols, |p, c| esc(p, c.name.as_bytes()));
            if o.types {
                self.key(p, d, false, "columntypes");
                self.arr(p, cols, |p, c| ty(p, &c.ty));
            }
            if o.type_oids {
                self.key(p, d, false, "columntypeoids");
                self.arr(p, cols, |p, c| p.extend_from_slice(c.oid.to_string().as_bytes()));
            }
            if o.positions {
                self.key(p, d, false, "columnpositions");
                self.arr(p, cols, |p, c| p.extend_from_slice(c.position.to_string().as_bytes()));
            }
            if o.not_null {
                self.key(p, d, false, "columnoptionals");
                self.arr(p, cols, |p, c| p.extend_from_slice(c.optional.to_string().as_bytes()));
            }
            if o.default {
                self.key(p, d, false, "columndefaults");
                self.arr(p, cols, |p, c| match &c.default {
                    Some(x) => p.extend_from_slice(format!("\"{x}\"").as_bytes()),
                    None => p.extend_from_slice(b"null"),
                });
            }
            self.key(p, d, false, "columnvalues");
            self.arr(p, cols, |p, c| val(p, &c.value));
        };
        let pk = |p: &mut Vec<u8>| {
            if o.pk {
                self.key(p, d, false, "pk");
                p.extend_from_slice(format!("{{{}", self.nl()).as_bytes());
                self.key(p, d + 1, true, "pknames");
                self.arr(p, &tx.table.pk, |p, (n, _)| esc(p, n.as_bytes()));
                if o.types {
                    self.key(p, d + 1, false, "pktypes");
                    self.arr(p, &tx.table.pk, |p, (_, t)| ty(p, t));
                }
                p.extend_from_slice(format!("{}{}}}", self.nl(), self.ht(d)).as_bytes());
            }
        };
        let oldkeys = |p: &mut Vec<u8>, ident: &[GCol]| {
            self.key(p, d, false, "oldkeys");
            p.extend_from_slice(format!("{{{}", self.nl()).as_bytes());
            self.key(p, d + 1, true, "keynames");
            self.arr(p, ident, |p, c| esc(p, c.name.as_bytes()));
            if o.types {
                self.key(p, d + 1, false, "keytypes");
                self.arr(p, ident, |p, c| ty(p, &c.ty));
            }
            if o.type_oids {
                self.key(p, d + 1, false, "keytypeoids");
                self.arr(p, ident, |p, c| p.extend_from_slice(c.oid.to_string().as_bytes()));
            }
            self.key(p, d + 1, false, "keyvalues");
            self.arr(p, ident, |p, c| val(p, &c.value));
            p.extend_from_slice(format!("{}{}}}", self.nl(), self.ht(d)).as_bytes());
        };
        let rel = |p: &mut Vec<u8>, kind: &str| {
            self.key(p, d, true, "kind");
            p.extend_from_slice(format!("\"{kind}\"").as_bytes());
            if o.schemas {
                self.key(p, d, false, "schema");
                esc(p, tx.table.schema.as_bytes());
            }
            self.key(p, d, false, "table");
            esc(p, tx.table.table.as_bytes());
        };
        match ch {
            GChange::Insert { cols: c } => {
                rel(&mut p, "insert");
                cols(&mut p, c);
                pk(&mut p);
            }
            GChange::Update { cols: c, ident } => {
                rel(&mut p, "update");
                cols(&mut p, c);
                pk(&mut p);
                if !ident.is_empty() {
                    oldkeys(&mut p, ident);
                }
            }
            GChange::Delete { ident } => {
                rel(&mut p, "delete");
                pk(&mut p);
                oldkeys(&mut p, ident);
            }
            GChange::Message { transactional, prefix, content } => {
                self.key(&mut p, d, true, "kind");
                p.extend_from_slice(b"\"message\"");
                self.key(&mut p, d, false, "transactional");
                p.extend_from_slice(transactional.to_string().as_bytes());
                self.key(&mut p, d, false, "prefix");
                esc(&mut p, prefix.as_bytes());
                self.key(&mut p, d, false, "content");
                esc(&mut p, content);
            }
        }
        p.extend_from_slice(format!("{}{}}}", self.nl(), self.ht(2)).as_bytes());
        p
    }
    fn end(&self) -> Vec<u8> {
        format!("{}]{}}}", self.ht(1), self.nl()).into_bytes()
    }
    /// One whole document (`leading_comma`: wal2json 2.5's `[,{` bug).
    fn document(&self, tx: &GTx, leading_comma: bool) -> Vec<u8> {
        let mut p = self.header(tx);
        p.extend_from_slice(self.nl().as_bytes());
        for (i, ch) in tx.changes.iter().enumerate() {
            if i > 0 || leading_comma {
                p.push(b',');
            }
            p.extend_from_slice(&self.change(tx, ch));
            p.extend_from_slice(self.nl().as_bytes());
        }
        p.extend_from_slice(&self.end());
        p
    }
    /// write-in-chunks messages
    fn chunks(&self, tx: &GTx) -> Vec<Vec<u8>> {
        let mut v = vec![self.header(tx)];
        for (i, ch) in tx.changes.iter().enumerate() {
            let mut p = Vec::new();
            if i > 0 {
                p.push(b',');
            }
            p.extend_from_slice(&self.change(tx, ch));
            v.push(p);
        }
        v.push(self.end());
        v
    }
}

fn v1_expected(tx: &GTx, o: &Opts) -> Vec<Event<'static>> {
    let t = Transaction {
        xid: o.xids.then_some(u64::from(tx.xid)),
        lsn: None,
        next_lsn: o.lsn.then_some(Lsn(tx.next_lsn)),
        timestamp: o.timestamp.then(|| Cow::Owned(tx.ts.clone())),
        origin: o.origin.then_some(u32::from(tx.origin)),
    };
    let col = |c: &GCol, full: bool| Column {
        name: Cow::Owned(c.name.clone()),
        type_name: o.types.then(|| ty_read(&c.ty)),
        type_oid: o.type_oids.then_some(i64::from(c.oid)),
        value: c.value.clone(),
        optional: (full && o.not_null).then_some(c.optional),
        position: (full && o.positions).then_some(c.position),
        // include-default prints `null` for a column without a default
        default: match (full && o.default, &c.default) {
            (false, _) => Nullable::Absent,
            (true, None) => Nullable::Null,
            (true, Some(d)) => Nullable::Value(Cow::Owned(d.clone())),
        },
    };
    let standalone = matches!(tx.changes.first(), Some(GChange::Message { transactional: false, .. }));
    let mut out = if standalone { vec![] } else { vec![Event::Begin(t.clone())] };
    for ch in &tx.changes {
        let change = |cols: &[GCol], ident: &[GCol]| Change {
            xid: None,
            lsn: None,
            timestamp: None,
            origin: None,
            schema: o.schemas.then(|| Cow::Owned(tx.table.schema.clone())),
            table: Cow::Owned(tx.table.table.clone()),
            columns: cols.iter().map(|c| col(c, true)).collect(),
            identity: ident.iter().map(|c| col(c, false)).collect(),
            pk: o.pk.then(|| {
                tx.table
                    .pk
                    .iter()
                    .map(|(n, t)| PkColumn {
                        name: Cow::Owned(n.clone()),
                        type_name: o.types.then(|| ty_read(t)),
                        type_oid: None,
                    })
                    .collect()
            }),
        };
        out.push(match ch {
            GChange::Insert { cols } => Event::Insert(change(cols, &[])),
            GChange::Update { cols, ident } => Event::Update(change(cols, ident)),
            GChange::Delete { ident } => Event::Delete(change(&[], ident)),
            GChange::Message { transactional, prefix, content } => Event::Message(Message {
                xid: Nullable::Absent,
                lsn: None,
                timestamp: Nullable::Absent,
                origin: Nullable::Absent,
                transactional: *transactional,
                prefix: Cow::Owned(prefix.clone()),
                content: Cow::Owned(content.clone()),
            }),
        });
    }
    if !standalone {
        out.push(Event::Commit(t));
    }
    out
}

/// Within a chunked transaction every message is transactional (wal2json writes non-transactional ones as
/// documents of their own).
fn all_transactional(mut tx: GTx) -> GTx {
    for ch in &mut tx.changes {
        if let GChange::Message { transactional, .. } = ch {
            *transactional = true;
        }
    }
    tx
}

fn feed_all(d: &mut AnyDecoder, payloads: &[Vec<u8>]) -> Result<Vec<Event<'static>>, pgrepl::Error> {
    let mut v = Vec::new();
    for p in payloads {
        for ev in d.events(p)? {
            v.push(ev?.into_owned());
        }
    }
    Ok(v)
}

fn show(ps: &[Vec<u8>]) -> String {
    ps.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>().join("\n")
}

/// `tx` printed in format 2 decodes to the expected events, with one decoder for the whole transaction; the plain
/// format 2 decoder agrees, and recycling changes nothing.
fn format2_decodes_as_expected(tx: &GTx, o: &Opts) -> Result<(), TestCaseError> {
    let payloads = v2_payloads(tx, o);
    let mut d = AnyDecoder::new();
    let got = feed_all(&mut d, &payloads).map_err(|e| TestCaseError::fail(format!("{e}\n{}", show(&payloads))))?;
    prop_assert_eq!(&got, &v2_expected(tx, o), "{}", show(&payloads));
    prop_assert!(!d.in_transaction());
    let mut d2 = Decoder::new();
    for (p, e) in payloads.iter().zip(&got) {
        let ev = d2.decode(p).unwrap();
        prop_assert_eq!(&ev, e);
        d2.recycle(ev);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(400), ..ProptestConfig::default() })]

    #[test]
    fn format2_roundtrip(tx in gtx(), o in opts()) {
        format2_decodes_as_expected(&tx, &o)?;
    }

    #[test]
    fn format2_rows_of_one_table_roundtrip(tx in gtx_rows(), o in opts()) {
        format2_decodes_as_expected(&tx, &o)?;
    }

    #[test]
    fn format1_document_roundtrip(tx in gtx(), o in opts(), leading_comma in any::<bool>()) {
        let v1 = V1 { o: &o };
        let doc = v1.document(&tx, leading_comma && !tx.changes.is_empty());
        prop_assert_eq!(Format::detect(&doc).unwrap(), Format::V1Document);
        let mut d = AnyDecoder::new();
        let got = feed_all(&mut d, std::slice::from_ref(&doc))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&doc))))?;
        prop_assert_eq!(&got, &v1_expected(&tx, &o), "{}", String::from_utf8_lossy(&doc));
    }

    /// The chunks of a transaction give the same events as the whole document, whatever mix of options.
    #[test]
    fn format1_chunks_equal_document(tx in gtx(), o in opts()) {
        let tx = all_transactional(tx);
        let v1 = V1 { o: &o };
        let chunks = v1.chunks(&tx);
        let mut d = ChunkedDecoder::new();
        let mut got = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let fmt = Format::detect(c).unwrap();
            prop_assert!(matches!(fmt, Format::V1Chunk(_)), "{:?} {}", fmt, String::from_utf8_lossy(c));
            let b = boundary_after(c).unwrap();
            prop_assert_eq!(b, if i == 0 { Boundary::Begin } else if i + 1 == chunks.len() { Boundary::End } else { Boundary::Inside });
            for ev in d.events(c).map_err(|e| TestCaseError::fail(format!("{e}\n{}", show(&chunks))))? {
                got.push(ev.map_err(|e| TestCaseError::fail(format!("{e}\n{}", show(&chunks))))?.into_owned());
            }
            prop_assert_eq!(d.in_transaction(), i + 1 < chunks.len());
        }
        prop_assert_eq!(&got, &v1_expected(&tx, &o));
        // and the chunks joined are a whole document with the same events
        let joined = chunks.join(&b"\n"[..]);
        let mut d = AnyDecoder::new();
        prop_assert_eq!(feed_all(&mut d, &[joined]).unwrap(), got);
    }

    /// The writer's output is valid JSON (serde_json reads it) and the format 2 decoder reads back the same event.
    #[test]
    fn writer_roundtrip(tx in gtx(), o in opts(), binary in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut events = v2_expected(&tx, &o);
        events.extend(v1_expected(&tx, &o));
        events.push(Event::Message(Message { prefix: Cow::Borrowed("bin"), content: Cow::Owned(binary), ..Message::default() }));
        events.push(Event::Truncate(Truncate { table: Cow::Owned(tx.table.table.clone()), schema: Some(Cow::Borrowed("s")), ..Truncate::default() }));
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for ev in &events {
            out.clear();
            write_event(&mut out, ev);
            let json: serde_json::Value = serde_json::from_slice(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
            prop_assert!(json.is_object());
            let back = d.decode(&out).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
            prop_assert_eq!(&back, ev, "{}", String::from_utf8_lossy(&out));
            d.recycle(back);
        }
    }

    /// Arbitrary bytes and mutations of real payloads: errors, never panics or hangs.
    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut d = AnyDecoder::new();
        if let Ok(evs) = d.events(&bytes) {
            for ev in evs.take(1000) {
                let _ = ev;
            }
        }
        let _ = Decoder::new().decode(&bytes);
        let _ = boundary_after(&bytes);
    }

    #[test]
    fn mutated_payloads_never_panic(tx in gtx(), o in opts(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut payloads = v2_payloads(&tx, &o);
        payloads.push(V1 { o: &o }.document(&tx, false));
        for p in &mut payloads {
            if p.is_empty() { continue; }
            let i = flip.index(p.len());
            p[i] = byte;
            let c = cut.index(p.len() + 1);
            for q in [&p[..], &p[..c]] {
                let mut d = AnyDecoder::new();
                if let Ok(evs) = d.events(q) {
                    for ev in evs.take(1000) {
                        let _ = ev;
                    }
                }
            }
        }
    }
}

/// Deterministic mutation fuzzing over the recorded corpus: flipped bytes, inserted JSON punctuation, truncation,
/// duplicated spans. Every outcome is an event or an error; nothing panics or loops.
#[test]
fn corpus_mutations_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wal2json");
    let mut payloads = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let mut i = 0;
        while i < data.len() {
            let nl = i + data[i..].iter().position(|&b| b == b'\n').unwrap();
            let line = String::from_utf8_lossy(&data[i..nl]).into_owned();
            i = nl + 1;
            if let Some(h) = line.strip_prefix('#') {
                let len: usize = h.split(' ').next().unwrap().parse().unwrap();
                if len < 4000 {
                    payloads.push(data[i..i + len].to_vec());
                }
                i += len + 1;
            }
        }
    }
    let rounds: usize = std::env::var("MUTATION_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    const PUNCT: &[u8] = b"\"\\{}[],:0-.en\xff \t\n";
    let mut d = AnyDecoder::new();
    let mut decoded = 0usize;
    for _ in 0..rounds {
        for p in &payloads {
            let mut q = p.clone();
            for _ in 0..1 + rnd(3) {
                match rnd(4) {
                    0 => {
                        let i = rnd(q.len());
                        if let Some(b) = q.get_mut(i) {
                            *b = PUNCT[rnd(PUNCT.len())];
                        }
                    }
                    1 => {
                        let i = rnd(q.len() + 1);
                        q.insert(i, PUNCT[rnd(PUNCT.len())]);
                    }
                    2 => q.truncate(rnd(q.len() + 1)),
                    _ => {
                        let a = rnd(q.len());
                        let b = (a + rnd(40)).min(q.len());
                        let span = q[a..b].to_vec();
                        let at = rnd(q.len() + 1);
                        q.splice(at..at, span);
                    }
                }
            }
            if let Ok(evs) = d.events(&q) {
                for ev in evs.take(100_000) {
                    if ev.is_ok() {
                        decoded += 1;
                    }
                }
            }
            let _ = Decoder::new().decode(&q);
            let _ = boundary_after(&q);
        }
    }
    assert!(decoded > 0);
}
