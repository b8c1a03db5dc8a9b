//! wal2json decoder: format 2 and format 1 (whole documents and write-in-chunks) into typed [`Event`]s.
//!
//! # Entry points
//! The names follow the scheme every decoder uses (see [`crate::plugin`]): `events` (a lazy iterator),
//! `decode_each` (a callback per event, recycled), `decode` (one event), `classify` (the boundary, no decoding).
//! - [`Decoder`]: format 2, one payload → one [`Event`] ([`Decoder::decode`]).
//! - [`ChunkedDecoder`]: format 1, whole documents and write-in-chunks messages → [`Events`].
//! - [`AnyDecoder`]: any format, detected per payload ([`Format::detect`]); tracks whether a transaction is
//!   open ([`AnyDecoder::in_transaction`]). This is what `pgrepl decode`, `--output json` and
//!   [`ChangeStream`](crate::changes::ChangeStream) use (the [`Decode`](crate::plugin::Decode) of
//!   [`Wal2json`](crate::plugin::Wal2json)).
//! - [`boundary_after`]: what a payload does to the transaction state, without decoding it.
//! - [`writer::write_event`]: an event back to JSON, in format 2's shape (a format 2 payload that is valid JSON
//!   comes back byte for byte, its `null`s included: see [`Nullable`]).
//!
//! # How it is fast
//! A single pass over the payload specialised for wal2json's machine-generated output, in the spirit of
//! simd-json's hot path but without building a tape: keys are matched as literals in the order wal2json prints
//! them (any order is still accepted), string ends are found 16 bytes at a time with SSE2 (8 at a time with SWAR
//! elsewhere), strings without escapes and numbers are borrowed as they are, the payload is UTF-8-validated once,
//! and a format 1 document's repeated `columnnames`/`columntypes` arrays are recognised by their bytes. On the
//! format 2 benchmark corpus this is over 3× serde_json's typed borrowed deserialization and faster than
//! simd-json's `to_tape` on the same bytes (see `docs/bench-decode.md`).
//!
//! # Allocation
//! Events borrow from the payload: strings without escapes, numbers (kept as exact text), LSN and integer
//! fields cost nothing. A string with escapes is unescaped into an owned `String`. The only other allocation
//! is the `Vec`s of columns, and decoders keep those for reuse: hand each event back (`recycle`) and decoding
//! format 2 payloads without escapes allocates nothing per event (tested with a counting allocator).
//!
//! # Input that is not valid JSON
//! wal2json 2.5 emits some; these rules take it (see `shared/wal2json.md`):
//! - `{"change":[,{…` (leading comma after a multi-change transaction): the comma is skipped.
//! - unescaped column defaults (`"'a"b\c'::text"`): format 2 — if the value reads as a JSON string followed by
//!   the column's closing `}` and then `,` or `]`, it is that string; otherwise it is the raw text up to the first
//!   `"` followed by `}` and `,{` or `]`. Format 1 — the `columndefaults` array must have one entry per column:
//!   it is read as JSON when that gives the right count, otherwise split into exactly that many `null`/`"…"`
//!   entries, taking the earliest closing quotes that allow it. A raw default that happens to be valid JSON with
//!   escapes (`'a\nb'` with a literal backslash) is read as JSON: the two cannot be told apart.
//! - raw quoted type names (`"type":"MySchema".mood`, `"we""ird"`): a string not followed by `,` `}` `]` is
//!   re-read as raw `format_type` text; see [`Column::type_name`].
//! - message content is taken byte for byte (escapes decoded), need not be UTF-8: [`Message::content`] is
//!   bytes. Every other string must be UTF-8 (a database in another encoding is not supported).
//!
//! Raw control characters inside strings are accepted. Anything else malformed is an
//! [`ErrorKind::Decode`](crate::ErrorKind::Decode) error with the byte offset. The decoders never panic, never
//! loop without consuming input, and allocate only in proportion to the payload.

mod decoder;
mod scan;
mod v1;
mod v2;
pub mod writer;

/// The typed events, plugin-neutral since test_decoding decodes into them too: [`crate::event`], re-exported here
/// so that `pgrepl::wal2json::Event` and the other paths keep working.
pub use crate::event::{
    Change, Column, Event, EventKind, Message, Nullable, PkColumn, Transaction, Truncate, TwoPhase, TwoPhaseKind, Value,
};
pub use decoder::{AnyDecoder, ChunkedDecoder, Decoder, Events};
pub use writer::write_event;

pub(crate) use decoder::Scratch;
pub(crate) use scan::is_json_number;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use scan::Cursor;

/// Which kind of write-in-chunks message a format 1 payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// `{"xid":…,"change":[` — opens a transaction.
    Header,
    /// `{"kind":…}` or `,{"kind":…}` — one change.
    Change,
    /// `]}` — closes the transaction.
    End,
}

/// The wal2json format of one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Format 2: `{"action":…}`.
    V2,
    /// Format 1, a complete document (`{"xid"…`/`{"change"…` … `}`).
    V1Document,
    /// Format 1 write-in-chunks, one piece of a transaction.
    V1Chunk(ChunkKind),
}

impl Format {
    /// Tell the format from the top-level keys and the last non-blank byte, without decoding. Leading and
    /// trailing whitespace (pretty-print, a line end) is allowed.
    ///
    /// wal2json writes `action` (format 2), `kind` (a format 1 change chunk) or a format 1 header key first, so
    /// the first key usually decides. Keys in another order are accepted as the decoders accept them: the
    /// top-level keys are walked (their values skipped) up to the first that tells the format apart —
    /// `action`, `kind` or `change`.
    pub fn detect(payload: &[u8]) -> Result<Format> {
        // wal2json's format 2 (checked once per payload by the stream and the decoder): `action` first
        if payload.starts_with(b"{\"action\":") {
            return Ok(Format::V2);
        }
        let mut cur = Cursor::raw(payload);
        cur.ws();
        match cur.peek() {
            Some(b',') => return Ok(Format::V1Chunk(ChunkKind::Change)),
            Some(b']') => return Ok(Format::V1Chunk(ChunkKind::End)),
            Some(b'{') => cur.pos += 1,
            _ => return Err(cur.err("not a wal2json payload (expected '{')")),
        }
        loop {
            let at = cur.pos;
            let key = cur.key().map_err(|_| Error::decode(at, "not a wal2json payload (expected a key)"))?;
            match key {
                b"action" => return Ok(Format::V2),
                b"kind" => return Ok(Format::V1Chunk(ChunkKind::Change)),
                b"change" => {
                    return match payload.iter().rev().find(|c| !c.is_ascii_whitespace()) {
                        Some(b'[') => Ok(Format::V1Chunk(ChunkKind::Header)),
                        _ => Ok(Format::V1Document),
                    }
                }
                _ => {}
            }
            // a format 1 header key (xid, nextlsn, timestamp, origin) or a format 2 key written before `action`
            if cur.skip_value().is_err() || !cur.eat(b',') {
                return Err(Error::decode(
                    cur.pos,
                    "not a wal2json payload (no \"action\", \"kind\" or \"change\" key at the top level)",
                ));
            }
        }
    }
}

/// What a payload does to the transaction state (see [`boundary_after`]): for wal2json, `Begin` is format 2
/// `B` or a format 1 chunk header; `Inside` a format 2 change or transactional message, a format 1 change chunk;
/// `End` format 2 `C`, a format 1 chunk end, a whole format 1 transaction document; `Whole` a non-transactional
/// message (format 2 `M` with `"transactional":false`, a format 1 message document).
pub use crate::proto::feedback::Boundary;

/// Classify a payload by its effect on the transaction state, without decoding it (the stream's end-position
/// logic stops only after `End` or `Whole`, or on `Inside` when no transaction is open — format 2
/// without include-transaction has no `B`/`C`; [`AnyDecoder::in_transaction`] tracks that).
pub fn boundary_after(payload: &[u8]) -> Result<Boundary> {
    // wal2json's format 2 as it prints it, `{"action":"X"` first: no general key scan
    if let Some([a, b'"', ..]) = payload.strip_prefix(b"{\"action\":\"") {
        match a {
            b'B' => return Ok(Boundary::Begin),
            b'C' => return Ok(Boundary::End),
            b'I' | b'U' | b'D' | b'T' => return Ok(Boundary::Inside),
            _ => {}
        }
    }
    Ok(match Format::detect(payload)? {
        Format::V2 => match v2_action(payload) {
            Some(b'B') => Boundary::Begin,
            Some(b'C') => Boundary::End,
            Some(b'M') => {
                if v2_message_transactional(payload)? {
                    Boundary::Inside
                } else {
                    Boundary::Whole
                }
            }
            Some(_) => Boundary::Inside,
            None => return Err(Error::decode(0, "format 2 payload without an action")),
        },
        Format::V1Document => {
            let mut cur = Cursor::raw(payload);
            v1::header(&mut cur)?;
            if v1::starts_nontx_message(&cur) {
                Boundary::Whole
            } else {
                Boundary::End
            }
        }
        Format::V1Chunk(ChunkKind::Header) => Boundary::Begin,
        Format::V1Chunk(ChunkKind::Change) => Boundary::Inside,
        Format::V1Chunk(ChunkKind::End) => Boundary::End,
    })
}

/// The commit's end of a whole format-1 transaction document (`nextlsn`, with wal2json's `include-lsn`). The
/// server sends such a document at its first change's LSN (the begin callback prepares the write), so that is
/// not where acknowledging it should point. `None` for anything else (format 2, chunks, messages) or without
/// `nextlsn`.
pub fn document_next_lsn(payload: &[u8]) -> Option<Lsn> {
    if Format::detect(payload).ok()? != Format::V1Document {
        return None;
    }
    let mut cur = Cursor::raw(payload);
    v1::header(&mut cur).ok()?.next_lsn
}

/// `v.push(make())`, returning the new element, with the element built straight in the vector's spare room:
/// `push` built a column (~130 bytes) on the stack and copied it with a `memcpy` call, once per column (4 % of
/// the format 2 decode's instructions). `make` runs after the room is reserved, so that nothing needs the value
/// before it can be written in place.
#[inline(always)]
pub(crate) fn push_in_place<T>(v: &mut Vec<T>, make: impl FnOnce() -> T) -> &mut T {
    v.reserve(1);
    let n = v.len();
    // SAFETY: after `reserve(1)` the capacity exceeds `n`, so `p` points into the allocation's spare room, which
    // `write` initialises without reading or dropping it; `set_len(n + 1)` then covers exactly the initialised
    // elements (what `push` does). The buffer does not move before the returned reference, which borrows `v`
    // mutably, ends.
    unsafe {
        let p = v.as_mut_ptr().add(n);
        p.write(make());
        v.set_len(n + 1);
        &mut *p
    }
}

/// The action letter of a format 2 payload (`action` is usually its first key; any top-level position is
/// accepted, as the decoder accepts it).
pub(crate) fn v2_action(payload: &[u8]) -> Option<u8> {
    if let Some([a, b'"', ..]) = payload.strip_prefix(b"{\"action\":\"") {
        return Some(*a).filter(|a| *a != b'\\' && *a != b'"');
    }
    let mut cur = Cursor::raw(payload);
    cur.ws();
    cur.require(b'{', "").ok()?;
    loop {
        if cur.key().ok()? == b"action" {
            break;
        }
        cur.skip_value().ok()?;
        if !cur.eat(b',') {
            return None;
        }
    }
    let (s, e, _) = cur.string_span().ok()?;
    match cur.bytes_range(s, e) {
        [a] => Some(*a),
        _ => None,
    }
}

fn v2_message_transactional(payload: &[u8]) -> Result<bool> {
    let mut cur = Cursor::raw(payload);
    cur.require(b'{', "expected '{'")?;
    loop {
        let key = cur.key()?;
        if key == b"transactional" {
            return cur.boolean();
        }
        cur.skip_value()?;
        if !cur.eat(b',') {
            return Err(cur.err("message without \"transactional\""));
        }
    }
}

#[cfg(test)]
mod tests;
