//! The JSON writer behind `--output json` (`wal2json::write_event`), given arbitrary events.
//!
//! Input: bytes that build one event: kind, optional metadata, strings (any bytes, made UTF-8), numbers (any
//! text), columns, message content (any bytes).
//!
//! Invariants beyond "no panic":
//! - whatever the event, the output parses with serde_json as one JSON object;
//! - serde_json reads back exactly the strings that went in (escaping is lossless), message content either as
//!   `content` (UTF-8) or `content_hex` (the bytes' hex digits);
//! - pgrepl's own format 2 decoder reads the output back to the same event (a number whose text is not a JSON
//!   number is written, and so read back, as a string; identity entries keep only name, type, typeoid, value).
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use pgrepl::wal2json::{
    write_event, Change, Column, Decoder, Event, Message, Nullable, PkColumn, Transaction, Truncate, Value,
};
use pgrepl::Lsn;
use pgrepl_fuzz::Input;

fn text(inp: &mut Input<'_>) -> Cow<'static, str> {
    Cow::Owned(String::from_utf8_lossy(inp.short_bytes()).into_owned())
}
fn opt<T>(inp: &mut Input<'_>, f: impl FnOnce(&mut Input<'_>) -> T) -> Option<T> {
    (inp.u8() & 1 == 1).then(|| f(inp))
}
/// Absent, `null` or a value.
fn nullable<T>(inp: &mut Input<'_>, f: impl FnOnce(&mut Input<'_>) -> T) -> Nullable<T> {
    match inp.u8() % 3 {
        0 => Nullable::Absent,
        1 => Nullable::Null,
        _ => Nullable::Value(f(inp)),
    }
}
fn value(inp: &mut Input<'_>) -> Value<'static> {
    match inp.u8() % 4 {
        0 => Value::Null,
        1 => Value::Bool(inp.u8() & 1 == 1),
        2 => Value::Number(text(inp)),
        _ => Value::String(text(inp)),
    }
}
fn column(inp: &mut Input<'_>) -> Column<'static> {
    Column {
        name: text(inp),
        type_name: opt(inp, text),
        type_oid: opt(inp, |i| i.u64() as i64),
        value: value(inp),
        optional: opt(inp, |i| i.u8() & 1 == 1),
        position: opt(inp, |i| i.u64() as i32),
        default: nullable(inp, text),
    }
}

/// What the decoder must read back: numbers that are not JSON numbers become strings.
fn normalize(ev: &mut Event<'static>) {
    let fix = |cols: &mut Vec<Column<'static>>| {
        for c in cols {
            if let Value::Number(n) = &c.value {
                if serde_json::from_str::<serde_json::Number>(n).is_err() || n.trim() != n.as_ref() {
                    c.value = Value::String(n.clone());
                }
            }
        }
    };
    if let Event::Insert(c) | Event::Update(c) | Event::Delete(c) = ev {
        fix(&mut c.columns);
        fix(&mut c.identity);
        // wal2json's identity entries have only name, type, typeoid and value
        for k in &mut c.identity {
            (k.optional, k.position, k.default) = (None, None, Nullable::Absent);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let kind = inp.u8() % 7;
    let xid = opt(&mut inp, |i| i.u64());
    let lsn = opt(&mut inp, |i| Lsn(i.u64()));
    let timestamp = opt(&mut inp, text);
    let origin = opt(&mut inp, |i| i.u64() as u32);
    let mut ev: Event<'static> = match kind {
        0 | 1 => {
            let t = Transaction { xid, lsn, next_lsn: opt(&mut inp, |i| Lsn(i.u64())), timestamp, origin };
            if kind == 0 {
                Event::Begin(t)
            } else {
                Event::Commit(t)
            }
        }
        2..=4 => {
            let schema = opt(&mut inp, text);
            let table = text(&mut inp);
            let n = inp.u8() % 5;
            let columns = (0..n).map(|_| column(&mut inp)).collect();
            let n = inp.u8() % 3;
            let identity = (0..n).map(|_| column(&mut inp)).collect();
            let pk = opt(&mut inp, |i| {
                let n = i.u8() % 3;
                (0..n)
                    .map(|_| PkColumn { name: text(i), type_name: opt(i, text), type_oid: opt(i, |j| j.u64() as i64) })
                    .collect()
            });
            let c = Change { xid, lsn, timestamp, origin, schema, table, columns, identity, pk };
            match kind {
                2 => Event::Insert(c),
                3 => Event::Update(c),
                _ => Event::Delete(c),
            }
        }
        5 => Event::Truncate(Truncate {
            xid,
            lsn,
            timestamp,
            origin,
            schema: opt(&mut inp, text),
            table: text(&mut inp),
            restart_seqs: None,
            cascade: None,
        }),
        // a message's metadata can also be `null` (a non-transactional one's)
        _ => Event::Message(Message {
            xid: nullable(&mut inp, |_| xid.unwrap_or(0)),
            lsn,
            timestamp: nullable(&mut inp, |_| timestamp.clone().unwrap_or_default()),
            origin: nullable(&mut inp, |_| origin.unwrap_or(0)),
            transactional: inp.u8() & 1 == 1,
            prefix: text(&mut inp),
            content: Cow::Owned(inp.rest().to_vec()),
        }),
    };

    let mut out = Vec::new();
    write_event(&mut out, &ev);
    let parsed: serde_json::Value = match serde_json::from_slice(&out) {
        Ok(v) => v,
        Err(e) => panic!("writer output is not JSON ({e}): {}", String::from_utf8_lossy(&out)),
    };
    let Some(o) = parsed.as_object() else { panic!("not an object") };
    match &ev {
        Event::Insert(c) | Event::Update(c) | Event::Delete(c) => {
            assert_eq!(o.get("table").and_then(|v| v.as_str()), Some(c.table.as_ref()));
            let empty = Vec::new();
            let cols = o.get("columns").and_then(|v| v.as_array()).unwrap_or(&empty);
            for (c, sc) in c.columns.iter().zip(cols) {
                assert_eq!(sc.get("name").and_then(|v| v.as_str()), Some(c.name.as_ref()));
                if let (Value::String(s), Some(v)) = (&c.value, sc.get("value")) {
                    assert_eq!(v.as_str(), Some(s.as_ref()));
                }
            }
        }
        Event::Message(m) => {
            assert_eq!(o.get("prefix").and_then(|v| v.as_str()), Some(m.prefix.as_ref()));
            match (std::str::from_utf8(&m.content), o.get("content"), o.get("content_hex")) {
                (Ok(s), Some(v), None) => assert_eq!(v.as_str(), Some(s)),
                (Err(_), None, Some(h)) => {
                    let hex: String = m.content.iter().map(|b| format!("{b:02x}")).collect();
                    assert_eq!(h.as_str(), Some(hex.as_str()));
                }
                other => panic!("message content written as {other:?}"),
            }
        }
        _ => {}
    }
    normalize(&mut ev);
    match Decoder::new().decode(&out) {
        Ok(back) => assert_eq!(back, ev, "decode(write(event)) differs: {}", String::from_utf8_lossy(&out)),
        Err(e) => panic!("writer output does not decode: {e}: {}", String::from_utf8_lossy(&out)),
    }
});
