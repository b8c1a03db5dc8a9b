#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Events back to JSON, one object per event, in wal2json format 2's shape and key names.
//!
//! - Keys appear in wal2json's order and only when the event has them (an option the server did not have on
//!   leaves its key out; metadata that was `null` is left out too): `action`, `xid`, `timestamp`, `origin`,
//!   `lsn`, `nextlsn`, `schema`, `table`, `columns` `[{name,type,typeoid,value,optional,position,default}]`,
//!   `identity` `[{name,type,typeoid,value}]`, `pk` `[{name,type,typeoid}]`, `transactional`, `prefix`,
//!   `content`. `columns` is written for `I`/`U` (and whenever non-empty), `identity` for `D` (and whenever
//!   non-empty).
//! - Numbers are written digit for digit as received. Strings are re-escaped as valid JSON (`\"`, `\\`,
//!   `\b \f \n \r \t`, other control characters as `\u00XX`, everything else as UTF-8), so raw defaults and raw
//!   type names come out as valid JSON strings.
//! - **Message content that is not valid UTF-8** is written as `"content_hex":"…"` instead of `"content"`: the
//!   lowercase hex digits of every content byte, so it is lossless and distinguishable. [`super::Decoder`]
//!   reads `content_hex` back into the same bytes. Valid UTF-8 content is written as `"content":"…"`.
//!
//! The writer appends to a caller-owned `Vec<u8>` and allocates nothing else.

use std::io::Write as _;

use super::event::{Change, Column, Event, PkColumn, Transaction, Value};
use super::scan::is_json_number;
use crate::lsn::Lsn;

/// Append `ev` as one JSON object (no trailing newline).
pub fn write_event(out: &mut Vec<u8>, ev: &Event<'_>) {
    match ev {
        Event::Begin(t) => tx(out, b'B', t),
        Event::Commit(t) => tx(out, b'C', t),
        Event::Insert(c) => change(out, b'I', c),
        Event::Update(c) => change(out, b'U', c),
        Event::Delete(c) => change(out, b'D', c),
        Event::Truncate(t) => {
            head(out, b'T', t.xid, t.timestamp.as_deref(), t.origin, t.lsn);
            if let Some(s) = &t.schema {
                key_str(out, "schema", s);
            }
            key_str(out, "table", &t.table);
            out.push(b'}');
        }
        Event::Message(m) => {
            head(out, b'M', m.xid, m.timestamp.as_deref(), m.origin, m.lsn);
            out.extend_from_slice(if m.transactional {
                b",\"transactional\":true"
            } else {
                b",\"transactional\":false"
            });
            key_str(out, "prefix", &m.prefix);
            match std::str::from_utf8(&m.content) {
                Ok(s) => key_str(out, "content", s),
                Err(_) => {
                    out.extend_from_slice(b",\"content_hex\":\"");
                    for &b in m.content.iter() {
                        out.push(hex_digit(b >> 4));
                        out.push(hex_digit(b & 15));
                    }
                    out.push(b'"');
                }
            }
            out.push(b'}');
        }
    }
}

#[inline]
fn hex_digit(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'a' + (n & 15) - 10
    }
}

fn head(out: &mut Vec<u8>, action: u8, xid: Option<u64>, ts: Option<&str>, origin: Option<u32>, lsn: Option<Lsn>) {
    out.extend_from_slice(b"{\"action\":\"");
    out.push(action);
    out.push(b'"');
    if let Some(x) = xid {
        let _ = write!(out, ",\"xid\":{x}");
    }
    if let Some(t) = ts {
        key_str(out, "timestamp", t);
    }
    if let Some(o) = origin {
        let _ = write!(out, ",\"origin\":{o}");
    }
    if let Some(l) = lsn {
        let _ = write!(out, ",\"lsn\":\"{l}\"");
    }
}

fn tx(out: &mut Vec<u8>, action: u8, t: &Transaction<'_>) {
    head(out, action, t.xid, t.timestamp.as_deref(), t.origin, t.lsn);
    if let Some(l) = t.next_lsn {
        let _ = write!(out, ",\"nextlsn\":\"{l}\"");
    }
    out.push(b'}');
}

fn change(out: &mut Vec<u8>, action: u8, c: &Change<'_>) {
    head(out, action, c.xid, c.timestamp.as_deref(), c.origin, c.lsn);
    if let Some(s) = &c.schema {
        key_str(out, "schema", s);
    }
    key_str(out, "table", &c.table);
    if action != b'D' || !c.columns.is_empty() {
        out.extend_from_slice(b",\"columns\":");
        columns(out, &c.columns, true);
    }
    if action == b'D' || !c.identity.is_empty() {
        out.extend_from_slice(b",\"identity\":");
        columns(out, &c.identity, false);
    }
    if let Some(pk) = &c.pk {
        out.extend_from_slice(b",\"pk\":[");
        for (i, p) in pk.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            pk_column(out, p);
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn columns(out: &mut Vec<u8>, cols: &[Column<'_>], full: bool) {
    out.push(b'[');
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        string(out, &c.name);
        if let Some(t) = &c.type_name {
            key_str(out, "type", t);
        }
        if let Some(o) = c.type_oid {
            let _ = write!(out, ",\"typeoid\":{o}");
        }
        out.extend_from_slice(b",\"value\":");
        value(out, &c.value);
        if full {
            if let Some(o) = c.optional {
                out.extend_from_slice(if o { b",\"optional\":true" } else { b",\"optional\":false" });
            }
            if let Some(p) = c.position {
                let _ = write!(out, ",\"position\":{p}");
            }
            if let Some(d) = &c.default {
                key_str(out, "default", d);
            }
        }
        out.push(b'}');
    }
    out.push(b']');
}

fn pk_column(out: &mut Vec<u8>, p: &PkColumn<'_>) {
    out.extend_from_slice(b"{\"name\":");
    string(out, &p.name);
    if let Some(t) = &p.type_name {
        key_str(out, "type", t);
    }
    if let Some(o) = p.type_oid {
        let _ = write!(out, ",\"typeoid\":{o}");
    }
    out.push(b'}');
}

/// A value: numbers verbatim (a number whose text is not a JSON number — only possible for a hand-built
/// event — is written as a string).
pub fn value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) if is_json_number(n.as_bytes()) => out.extend_from_slice(n.as_bytes()),
        Value::Number(n) | Value::String(n) => string(out, n),
    }
}

fn key_str(out: &mut Vec<u8>, key: &str, s: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    string(out, s);
}

/// Whether a byte needs escaping: control characters, `"` and `\`.
#[inline(always)]
fn needs_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// `s` as a JSON string, with quotes.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        if !needs_escape(c) {
            continue;
        }
        out.extend_from_slice(b.get(run..i).unwrap_or(&[]));
        run = i + 1;
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(hex_digit(c >> 4));
                out.push(hex_digit(c & 15));
            }
        }
    }
    out.extend_from_slice(b.get(run..).unwrap_or(&[]));
    out.push(b'"');
}
