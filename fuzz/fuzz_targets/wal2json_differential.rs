//! Differential: pgrepl's format 2 decoder against serde_json, on input serde_json accepts as JSON of the
//! wal2json format 2 shape.
//!
//! Input: one payload.
//!
//! Invariants beyond "no panic":
//! Shape: a JSON object without duplicate keys whose column objects end with `default` when they have one
//! (wal2json's order, which pgrepl's reading of wal2json's unescaped defaults relies on); other keys in any order.
//!
//! - soundness: whenever pgrepl decodes a payload of that shape that serde_json also parses, every field pgrepl reports
//!   (action, xid, timestamp, origin, lsn, nextlsn, schema, table, each column's name/type/typeoid/value/
//!   optional/position/default, identity, pk, transactional, prefix, content) equals serde_json's reading
//!   (numbers compared by their exact text, strings after unescaping; duplicate keys: the last one wins);
//! - completeness: when serde_json reads an object without duplicate keys whose known keys all have wal2json's
//!   types (and the action's required keys are there), pgrepl decodes it (unknown keys skipped, any key order).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::wal2json::{Column, Decoder, Event, Nullable, PkColumn, Value as PValue};
use pgrepl::Lsn;
use serde_json::{Map, Value};

fn str_of<'v>(o: &'v Map<String, Value>, k: &str) -> Option<&'v str> {
    o.get(k).and_then(Value::as_str)
}
/// serde's reading of a key that pgrepl keeps as a [`Nullable`]: absent, `null` or `f` of the value.
fn nullable_of<'v, T>(o: &'v Map<String, Value>, k: &str, f: impl Fn(&'v Value) -> Option<T>) -> Nullable<T> {
    match o.get(k) {
        None => Nullable::Absent,
        Some(Value::Null) => Nullable::Null,
        Some(v) => Nullable::Value(f(v).unwrap_or_else(|| panic!("{k}: {v:?}"))),
    }
}
fn opt_str(o: &Map<String, Value>, k: &str) -> Option<String> {
    str_of(o, k).map(str::to_owned)
}
fn opt_lsn(o: &Map<String, Value>, k: &str) -> Option<Lsn> {
    str_of(o, k).map(|s| Lsn::parse(s).unwrap_or_else(|_| panic!("accepted LSN {s:?}")))
}
fn num_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `v` has the type wal2json gives key `k` (`null` allowed where wal2json prints it).
fn typed(k: &str, v: &Value) -> bool {
    match k {
        "action" => matches!(v.as_str(), Some("B" | "C" | "I" | "U" | "D" | "T" | "M")),
        "xid" => v.is_null() || v.as_u64().is_some() && is_plain_int(v),
        "origin" => v.is_null() || v.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) && is_plain_int(v),
        "timestamp" | "schema" => v.is_null() || v.is_string(),
        "lsn" | "nextlsn" => v.is_null() || v.as_str().is_some_and(|s| Lsn::parse(s).is_ok()),
        "table" | "prefix" | "content" => v.is_string(),
        "transactional" => v.is_boolean(),
        "columns" | "identity" => v.as_array().is_some_and(|a| a.iter().all(|c| column_typed(c, true))),
        "pk" => v.as_array().is_some_and(|a| a.iter().all(|c| column_typed(c, false))),
        _ => true,
    }
}
fn is_plain_int(v: &Value) -> bool {
    num_text(v).is_some_and(|t| t.bytes().all(|b| b.is_ascii_digit()) && !(t.len() > 1 && t.starts_with('0')))
}
fn column_typed(c: &Value, with_value: bool) -> bool {
    let Some(o) = c.as_object() else { return false };
    o.get("name").is_some_and(Value::is_string)
        && o.iter().all(|(k, v)| match k.as_str() {
            "name" | "type" => v.is_string(),
            "typeoid" => v.as_i64().is_some() && num_text(v).is_some_and(|t| !t.contains(['.', 'e', 'E'])),
            "value" if with_value => !v.is_array() && !v.is_object(),
            "optional" if with_value => v.is_boolean(),
            "position" if with_value => {
                v.as_i64().is_some_and(|p| i32::try_from(p).is_ok())
                    && num_text(v).is_some_and(|t| !t.contains(['.', 'e', 'E']))
            }
            "default" if with_value => v.is_null() || v.is_string(),
            _ => true,
        })
}

/// Deserializes any JSON, failing on an object with a duplicate key (at any depth).
struct NoDuplicates;

impl<'de> serde::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NoDuplicates;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<NoDuplicates, A::Error> {
                let mut keys = std::collections::HashSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    if !keys.insert(k) {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                    m.next_value::<NoDuplicates>()?;
                }
                Ok(NoDuplicates)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<NoDuplicates, A::Error> {
                while s.next_element::<NoDuplicates>()?.is_some() {}
                Ok(NoDuplicates)
            }
            fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
        }
        d.deserialize_any(V)
    }
}

fn check_value(p: &PValue<'_>, s: Option<&Value>) {
    match (p, s) {
        (PValue::Null, None | Some(Value::Null)) => {}
        (PValue::Bool(b), Some(Value::Bool(c))) => assert_eq!(b, c),
        (PValue::Number(n), Some(Value::Number(m))) => {
            // serde_json writes an exponent's sign ("1e+5" for "1e5"): compare the texts without it
            let norm = |s: &str| s.replace("e+", "e").replace("E+", "e").replace('E', "e");
            assert_eq!(norm(n), norm(&m.to_string()), "number text");
        }
        (PValue::String(a), Some(Value::String(b))) => assert_eq!(a, b),
        (p, s) => panic!("value {p:?} vs serde {s:?}"),
    }
}

fn check_columns(cols: &[Column<'_>], s: Option<&Value>) {
    let empty = Vec::new();
    let arr = s.and_then(Value::as_array).unwrap_or(&empty);
    assert_eq!(cols.len(), arr.len(), "column count");
    for (c, sc) in cols.iter().zip(arr) {
        let Some(o) = sc.as_object() else { panic!("column {sc:?}") };
        assert_eq!(Some(c.name.as_ref()), str_of(o, "name"));
        assert_eq!(c.type_name.as_deref(), str_of(o, "type"));
        assert_eq!(c.type_oid, o.get("typeoid").and_then(Value::as_i64));
        check_value(&c.value, o.get("value"));
        assert_eq!(c.optional, o.get("optional").and_then(Value::as_bool));
        assert_eq!(c.position.map(i64::from), o.get("position").and_then(Value::as_i64));
        assert_eq!(c.default.as_deref(), nullable_of(o, "default", Value::as_str));
    }
}

fn check_pk(pk: &[PkColumn<'_>], s: Option<&Value>) {
    let Some(arr) = s.and_then(Value::as_array) else { panic!("pk {s:?}") };
    assert_eq!(pk.len(), arr.len());
    for (c, sc) in pk.iter().zip(arr) {
        let Some(o) = sc.as_object() else { panic!("pk column {sc:?}") };
        assert_eq!(Some(c.name.as_ref()), str_of(o, "name"));
        assert_eq!(c.type_name.as_deref(), str_of(o, "type"));
        assert_eq!(c.type_oid, o.get("typeoid").and_then(Value::as_i64));
    }
}

/// wal2json prints a column's `default` last, and pgrepl relies on that to read wal2json's unescaped raw defaults
/// (shared/wal2json.md): a column object whose `default` is followed by other keys is not of wal2json's shape.
fn defaults_last(o: &Map<String, Value>) -> bool {
    ["columns", "identity"].iter().all(|k| match o.get(*k).and_then(Value::as_array) {
        Some(cols) => cols.iter().all(|c| match c.as_object() {
            Some(co) => co.keys().position(|k| k == "default").is_none_or(|i| i + 1 == co.len()),
            None => true,
        }),
        None => true,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(data) else { return };
    if o.contains_key("content_hex") {
        return; // pgrepl's own extension, not wal2json's
    }
    if !defaults_last(&o) || serde_json::from_slice::<NoDuplicates>(data).is_err() {
        return; // not of wal2json's shape (see above); duplicate keys: unchecked (pgrepl refuses two different actions)
    }
    let ev = match Decoder::new().decode(data) {
        Ok(ev) => ev,
        Err(e) => {
            let action = str_of(&o, "action").unwrap_or("");
            let required: &[&str] = match action {
                "I" | "U" | "D" | "T" => &["table"],
                "M" => &["transactional", "prefix", "content"],
                _ => &[],
            };
            let complete = o.iter().all(|(k, v)| typed(k, v))
                && o.contains_key("action")
                && required.iter().all(|k| o.contains_key(*k));
            assert!(!complete, "pgrepl refuses wal2json-shaped JSON that serde_json reads: {e}");
            return;
        }
    };
    let action = str_of(&o, "action").unwrap_or_else(|| panic!("decoded without an action: {o:?}"));
    let want_kind = match &ev {
        Event::Begin(_) => "B",
        Event::Commit(_) => "C",
        Event::Insert(_) => "I",
        Event::Update(_) => "U",
        Event::Delete(_) => "D",
        Event::Truncate(_) => "T",
        Event::Message(_) => "M",
        Event::TwoPhase(_) => unreachable!("wal2json has no two-phase events"),
        Event::Stream(_) => unreachable!("wal2json has no streamed-transaction events"),
    };
    assert_eq!(action, want_kind);
    let xid = o.get("xid").and_then(Value::as_u64);
    let ts = opt_str(&o, "timestamp");
    let origin = o.get("origin").and_then(Value::as_u64);
    let lsn = opt_lsn(&o, "lsn");
    match &ev {
        Event::Begin(t) | Event::Commit(t) => {
            assert_eq!(
                (t.xid, t.timestamp.as_deref(), t.origin.map(u64::from), t.lsn),
                (xid, ts.as_deref(), origin, lsn)
            );
            assert_eq!(t.next_lsn, opt_lsn(&o, "nextlsn"));
        }
        Event::Insert(c) | Event::Update(c) | Event::Delete(c) => {
            assert_eq!(
                (c.xid, c.timestamp.as_deref(), c.origin.map(u64::from), c.lsn),
                (xid, ts.as_deref(), origin, lsn)
            );
            assert_eq!(c.schema.as_deref(), str_of(&o, "schema"));
            assert_eq!(Some(c.table.as_ref()), str_of(&o, "table"));
            check_columns(&c.columns, o.get("columns"));
            check_columns(&c.identity, o.get("identity"));
            match &c.pk {
                Some(pk) => check_pk(pk, o.get("pk")),
                None => assert!(o.get("pk").is_none()),
            }
        }
        Event::Truncate(t) => {
            assert_eq!(
                (t.xid, t.timestamp.as_deref(), t.origin.map(u64::from), t.lsn),
                (xid, ts.as_deref(), origin, lsn)
            );
            assert_eq!(t.schema.as_deref(), str_of(&o, "schema"));
            assert_eq!(Some(t.table.as_ref()), str_of(&o, "table"));
        }
        Event::Message(m) => {
            // a message keeps `null` apart from absent
            assert_eq!(
                (m.xid, m.timestamp.as_deref(), m.origin.map(u64::from), m.lsn),
                (
                    nullable_of(&o, "xid", Value::as_u64),
                    nullable_of(&o, "timestamp", Value::as_str),
                    nullable_of(&o, "origin", Value::as_u64),
                    lsn
                )
            );
            assert_eq!(Some(m.transactional), o.get("transactional").and_then(Value::as_bool));
            assert_eq!(Some(m.prefix.as_ref()), str_of(&o, "prefix"));
            assert_eq!(Some(&m.content[..]), str_of(&o, "content").map(str::as_bytes));
        }
        Event::TwoPhase(_) => unreachable!("wal2json has no two-phase events"),
        Event::Stream(_) => unreachable!("wal2json has no streamed-transaction events"),
    }
});
