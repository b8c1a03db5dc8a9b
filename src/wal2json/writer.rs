//! Events back to JSON, one object per event, in wal2json format 2's shape and key names.
//!
//! - Keys appear in wal2json's order and only when the event has them (an option the server did not have on
//!   leaves its key out): `action`, `xid`, `timestamp`, `origin`, `lsn`, `nextlsn`, `schema`, `table`,
//!   `columns` `[{name,type,typeoid,value,optional,position,default}]`, `identity` `[{name,type,typeoid,value}]`,
//!   `pk` `[{name,type,typeoid}]`, `transactional`, `prefix`, `content`. A key that was `null`
//!   ([`super::Nullable::Null`]: a non-transactional message's `xid`/`timestamp`/`origin`, a column's `default`)
//!   is written as `null`, as wal2json does. `columns` is written for `I`/`U` (and whenever non-empty),
//!   `identity` for `U`/`D` (and whenever non-empty), even when empty: wal2json 2.5 prints `identity` on every
//!   UPDATE and DELETE it prints (format 1 likewise prints `oldkeys`).
//! - So for a format 2 payload that is valid JSON, the object written is the payload's own, key for key and
//!   value for value (tested against live slots in `tests/wal2json_json_output.rs`). A format 1 input gives
//!   what its events hold: changes and messages without `xid`/`timestamp`/`origin`/`lsn` (format 1 prints
//!   them on the transaction only), `"default":null` for a `null` in `columndefaults`.
//! - Numbers are written digit for digit as received. Strings are re-escaped as valid JSON (`\"`, `\\`,
//!   `\b \f \n \r \t`, other control characters as `\u00XX`, everything else as UTF-8), so raw defaults and raw
//!   type names come out as valid JSON strings.
//! - **Message content that is not valid UTF-8** is written as `"content_hex":"…"` instead of `"content"`: the
//!   lowercase hex digits of every content byte, so it is lossless and distinguishable. [`super::Decoder`]
//!   reads `content_hex` back into the same bytes. Valid UTF-8 content is written as `"content":"…"`.
//!
//! - A two-phase step ([`Event::TwoPhase`], which wal2json never prints; from test_decoding) is written as
//!   `{"action":"P"|"K"|"R","xid":…,"timestamp":…,"gid":"…"}` (prepare, commit prepared, rollback prepared). A
//!   TRUNCATE's flags (test_decoding's) are not written: wal2json has no key for them.
//! - A streamed transaction's segment boundary or abort ([`Event::Stream`], pgoutput's, which wal2json never
//!   prints) is written as `{"action":"S","xid":…,"first_segment":true|false}` (start),
//!   `{"action":"E","xid":…}` (stop) or `{"action":"A","xid":…,"timestamp":…,"lsn":…,"subxid":…}` (abort).
//!
//! The writer appends to a caller-owned `Vec<u8>` and allocates nothing else.

use super::scan::is_json_number;
use crate::event::{Change, Column, Event, Nullable, PkColumn, StreamKind, Transaction, TwoPhaseKind, Value};
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
            head(out, b'T', t.xid.into(), t.timestamp.as_deref().into(), t.origin.into(), t.lsn);
            if let Some(s) = &t.schema {
                key_str(out, "schema", s);
            }
            key_str(out, "table", &t.table);
            out.push(b'}');
        }
        Event::TwoPhase(t) => {
            let action = match t.kind {
                TwoPhaseKind::Prepare => b'P',
                TwoPhaseKind::CommitPrepared => b'K',
                TwoPhaseKind::RollbackPrepared => b'R',
            };
            head(out, action, t.xid.into(), t.timestamp.as_deref().into(), Nullable::Absent, None);
            key_str(out, "gid", &t.gid);
            out.push(b'}');
        }
        Event::Stream(st) => {
            let action = match st.kind {
                StreamKind::Start => b'S',
                StreamKind::Stop => b'E',
                StreamKind::Abort => b'A',
            };
            head(out, action, st.xid.into(), st.timestamp.as_deref().into(), Nullable::Absent, st.lsn);
            if let Some(f) = st.first_segment {
                out.extend_from_slice(if f { b",\"first_segment\":true" } else { b",\"first_segment\":false" });
            }
            if let Some(x) = st.subxid {
                out.extend_from_slice(b",\"subxid\":");
                uint(out, x);
            }
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

fn head(
    out: &mut Vec<u8>,
    action: u8,
    xid: Nullable<u64>,
    ts: Nullable<&str>,
    origin: Nullable<u32>,
    lsn: Option<Lsn>,
) {
    out.extend_from_slice(b"{\"action\":\"");
    out.push(action);
    out.push(b'"');
    match xid {
        Nullable::Absent => {}
        Nullable::Null => out.extend_from_slice(b",\"xid\":null"),
        Nullable::Value(x) => {
            out.extend_from_slice(b",\"xid\":");
            uint(out, x);
        }
    }
    match ts {
        Nullable::Absent => {}
        Nullable::Null => out.extend_from_slice(b",\"timestamp\":null"),
        Nullable::Value(t) => key_str(out, "timestamp", t),
    }
    match origin {
        Nullable::Absent => {}
        Nullable::Null => out.extend_from_slice(b",\"origin\":null"),
        Nullable::Value(o) => {
            out.extend_from_slice(b",\"origin\":");
            uint(out, u64::from(o));
        }
    }
    if let Some(l) = lsn {
        out.extend_from_slice(b",\"lsn\":");
        lsn_str(out, l);
    }
}

fn tx(out: &mut Vec<u8>, action: u8, t: &Transaction<'_>) {
    head(out, action, t.xid.into(), t.timestamp.as_deref().into(), t.origin.into(), t.lsn);
    if let Some(l) = t.next_lsn {
        out.extend_from_slice(b",\"nextlsn\":");
        lsn_str(out, l);
    }
    out.push(b'}');
}

fn change(out: &mut Vec<u8>, action: u8, c: &Change<'_>) {
    head(out, action, c.xid.into(), c.timestamp.as_deref().into(), c.origin.into(), c.lsn);
    if let Some(s) = &c.schema {
        key_str(out, "schema", s);
    }
    key_str(out, "table", &c.table);
    if action != b'D' || !c.columns.is_empty() {
        out.extend_from_slice(b",\"columns\":");
        columns(out, &c.columns, true);
    }
    if action != b'I' || !c.identity.is_empty() {
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
            out.extend_from_slice(b",\"typeoid\":");
            int(out, o);
        }
        out.extend_from_slice(b",\"value\":");
        value(out, &c.value);
        if full {
            if let Some(o) = c.optional {
                out.extend_from_slice(if o { b",\"optional\":true" } else { b",\"optional\":false" });
            }
            if let Some(p) = c.position {
                out.extend_from_slice(b",\"position\":");
                int(out, i64::from(p));
            }
            match &c.default {
                Nullable::Absent => {}
                Nullable::Null => out.extend_from_slice(b",\"default\":null"),
                Nullable::Value(d) => key_str(out, "default", d),
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
        out.extend_from_slice(b",\"typeoid\":");
        int(out, o);
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

/// Whether a byte needs escaping: control characters, `"` and `\\`.
#[inline(always)]
fn needs_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// The 16 bytes at `i` and the mask of those that need escaping (bit k: byte k), or `None` when fewer than 16
/// bytes are left.
#[inline(always)]
fn escape_mask(b: &[u8], i: usize) -> Option<(&[u8; 16], u32)> {
    let block: &[u8; 16] = i.checked_add(16).and_then(|e| b.get(i..e)).and_then(|s| s.try_into().ok())?;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline; the load reads exactly the 16 bytes of `block`.
        let m = unsafe {
            let v = _mm_loadu_si128(block.as_ptr() as *const __m128i);
            let ctl = _mm_set1_epi8(0x1f);
            // unsigned v <= 0x1f  <=>  max(v, 0x1f) == 0x1f
            let low = _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl);
            let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let bs = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(low, _mm_or_si128(q, bs))) as u32
        };
        Some((block, m))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = 0u32;
        for (k, &c) in block.iter().enumerate() {
            if needs_escape(c) {
                m |= 1 << k;
            }
        }
        Some((block, m))
    }
}

/// `s` as a JSON string, with quotes.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        // runs without escapes, 16 bytes at a time: each block copied whole (a fixed-size copy, no call) and the
        // buffer cut back to the first byte that needs escaping
        let at = match escape_mask(b, i) {
            Some((block, 0)) => {
                out.extend_from_slice(block);
                i += 16;
                continue;
            }
            Some((block, m)) => {
                let n = m.trailing_zeros() as usize;
                let len = out.len();
                out.extend_from_slice(block);
                out.truncate(len + n);
                i + n
            }
            None => {
                let rest = b.get(i..).unwrap_or(&[]);
                match rest.iter().position(|&c| needs_escape(c)) {
                    Some(n) => {
                        out.extend_from_slice(rest.get(..n).unwrap_or(&[]));
                        i + n
                    }
                    None => {
                        out.extend_from_slice(rest);
                        break;
                    }
                }
            }
        };
        let Some(&c) = b.get(at) else { break };
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
        i = at + 1;
    }
    out.push(b'"');
}

/// `v` in decimal (what `write!` would print, without the formatting machinery).
fn uint(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut k = buf.len();
    loop {
        k -= 1;
        if let Some(d) = buf.get_mut(k) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || k == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(k..).unwrap_or(&[]));
}

fn int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    uint(out, v.unsigned_abs());
}

/// An LSN as a JSON string, `"X/Y"` in uppercase hex without leading zeros (as wal2json and [`Lsn`]'s
/// `Display` print it).
fn lsn_str(out: &mut Vec<u8>, l: Lsn) {
    fn hex(out: &mut Vec<u8>, v: u32) {
        let digits = (8 - v.leading_zeros() / 4).max(1);
        for k in (0..digits).rev() {
            out.push(b"0123456789ABCDEF".get(((v >> (4 * k)) & 15) as usize).copied().unwrap_or(b'0'));
        }
    }
    out.push(b'"');
    hex(out, (l.0 >> 32) as u32);
    out.push(b'/');
    hex(out, l.0 as u32);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_serde_json_around_the_blocks() {
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 40] {
            for at in 0..=len {
                for c in ["\"", "\\", "\n", "\t", "\r", "\u{8}", "\u{c}", "\u{1}", "\u{1f}", "\u{7f}", "é", " ", "/"] {
                    let v = format!("{}{c}{}{c}", "a".repeat(at), "b".repeat(len - at));
                    assert_eq!(s(&v), serde_json::to_string(&v).unwrap(), "{v:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn strings_escape_like_serde_json(v in "\\PC*|[\\x00-\\x7f]{0,80}") {
            proptest::prop_assert_eq!(s(&v), serde_json::to_string(&v).unwrap());
        }

        #[test]
        fn numbers_and_lsns_print_like_display(u in proptest::prelude::any::<u64>(), i in proptest::prelude::any::<i64>()) {
            proptest::prop_assert_eq!(numbers(u, i), format!("{u} {i} \"{}\"", Lsn(u)));
        }
    }

    /// `u`, `i` and `Lsn(u)` as the writer prints them, separated by spaces.
    fn numbers(u: u64, i: i64) -> String {
        let mut out = Vec::new();
        uint(&mut out, u);
        out.push(b' ');
        int(&mut out, i);
        out.push(b' ');
        lsn_str(&mut out, Lsn(u));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn number_edges() {
        for (u, i) in [(0u64, 0i64), (9, -1), (10, i64::MIN), (u64::MAX, i64::MAX)] {
            assert_eq!(numbers(u, i), format!("{u} {i} \"{}\"", Lsn(u)));
        }
    }
}
