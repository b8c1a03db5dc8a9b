//! test_decoding's lines into typed [`Event`]s (the formats of `contrib/test_decoding/test_decoding.c`).
//!
//! | line | event |
//! |---|---|
//! | `BEGIN [xid]` | [`Event::Begin`] (`xid` with `include-xids`, the plugin's default) |
//! | `COMMIT [xid] [(at TIME)]` | [`Event::Commit`] (`timestamp` with `include-timestamp`) |
//! | `table S.T: INSERT: COLUMNS` | [`Event::Insert`] |
//! | `table S.T: UPDATE: [old-key: COLUMNS new-tuple:] COLUMNS` | [`Event::Update`] (`identity` = old key) |
//! | `table S.T: DELETE: COLUMNS` or `(no-tuple-data)` | [`Event::Delete`] (`identity` = old key, or empty) |
//! | `table S.T[, S.T…]: TRUNCATE: [restart_seqs] [cascade]` or `(no-flags)` | one [`Event::Truncate`] per table |
//! | `message: transactional: 0\|1 prefix: P, sz: N content:BYTES` | [`Event::Message`] |
//! | `PREPARE TRANSACTION 'gid'[, txid X][ (at TIME)]`, `COMMIT PREPARED …`, `ROLLBACK PREPARED …` | [`Event::TwoPhase`] |
//!
//! Identifiers are unquoted as `quote_identifier` quoted them (`"My ""T"""` → `My "T"`); the type name between
//! `[` `]` is `format_type_be`'s text, kept as printed (`character varying`, `integer[]`, `"MySchema".mood`).
//! Values (`name[type]:value`): `null` → [`Value::Null`]; `unchanged-toast-datum` → the column is absent, as
//! wal2json leaves an unchanged TOASTed column out; `true`/`false` → [`Value::Bool`]; `B'0101'` (bit, varbit) →
//! the string `0101`; `'…'` (every other type, `''` for a quote) → [`Value::String`]; unquoted text (int2/4/8,
//! oid, float4/8, numeric) → [`Value::Number`] when it is a JSON number, else [`Value::String`] (`NaN`,
//! `Infinity`, `-Infinity`; wal2json prints those as `null`).
//!
//! Changes, truncates and transactional messages carry the xid of the `BEGIN` before them (as wal2json's format
//! 2 prints it on each change); test_decoding prints no LSNs, OIDs or time on them. A message's content is every
//! one of its `sz` bytes (need not be UTF-8); the prefix is found as the one that makes `sz` match the rest of
//! the line, so a prefix containing `, sz: ` is read right.
//!
//! With `stream-changes`, test_decoding prints only placeholders (`streaming change for TXN …`, no row data):
//! those lines are a decode error, except a non-transactional `streaming message: …` (a whole message).
//!
//! Every other line, and anything malformed, is an [`ErrorKind::Decode`](crate::ErrorKind::Decode) error with
//! its byte offset. The decoder never panics and allocates only the column vectors (kept for reuse when events
//! are recycled) and the unquoted text of names and values that had doubled quotes.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::event::{Change, Column, Event, Message, Nullable, Transaction, Truncate, TwoPhase, TwoPhaseKind, Value};
use crate::plugin::{Decode, EventIter};
use crate::wal2json::{is_json_number, Scratch};

/// Decoder of test_decoding's lines into [`Event`]s (see the module docs for the formats).
///
/// ```
/// use pgrepl::plugin::TestDecodingDecoder;
/// use pgrepl::event::{Event, Value};
/// let mut d = TestDecodingDecoder::new();
/// let n = d.decode_each(b"table public.t: INSERT: id[integer]:1 name[text]:'O''Brien'", |ev| {
///     let Event::Insert(c) = ev else { panic!() };
///     assert_eq!(c.table, "t");
///     assert_eq!(c.column("id").unwrap().value.as_i64(), Some(1));
///     assert_eq!(c.column("name").unwrap().value, Value::String("O'Brien".into()));
/// })?;
/// assert_eq!(n, 1);
/// # Ok::<(), pgrepl::Error>(())
/// ```
#[derive(Default)]
pub struct TestDecodingDecoder {
    scratch: Scratch,
    /// The open transaction (after `BEGIN`): its xid, when printed.
    open: Option<Option<u64>>,
}

impl std::fmt::Debug for TestDecodingDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDecodingDecoder").field("open", &self.open).finish_non_exhaustive()
    }
}

impl TestDecodingDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one line; iterate the returned events (one, or one per table for a TRUNCATE). Errors in the line are
    /// returned here, except a malformed table name after the first of a TRUNCATE (from the iterator).
    pub fn events<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<TestDecodingEvents<'d, 'a>> {
        let state = self.parse(payload)?;
        Ok(TestDecodingEvents { scratch: &mut self.scratch, state })
    }

    /// Decode `payload` and call `f` on each event (recycling each afterwards). Returns the number of events.
    pub fn decode_each<'a>(&mut self, payload: &'a [u8], f: impl FnMut(&Event<'a>)) -> Result<usize> {
        crate::plugin::each_event(self.events(payload)?, f)
    }

    /// Give an event's column storage back for reuse.
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.scratch.recycle(ev);
    }

    /// Forget an open transaction.
    pub fn reset(&mut self) {
        self.open = None;
    }

    /// Whether a `BEGIN` came without its `COMMIT` (or `PREPARE TRANSACTION`) yet.
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    fn xid(&self) -> Option<u64> {
        self.open.flatten()
    }

    fn parse<'a>(&mut self, p: &'a [u8]) -> Result<State<'a>> {
        if let Some(rest) = p.strip_prefix(b"message: ") {
            return self.message(p, p.len() - rest.len()).map(State::one);
        }
        if let Some(rest) = p.strip_prefix(b"streaming message: transactional: 0 ") {
            return self.message(p, p.len() - rest.len() - b"transactional: 0 ".len()).map(State::one);
        }
        for streamed in [
            &b"streaming "[..],
            b"opening a streamed block",
            b"closing a streamed block",
            b"aborting streamed",
            b"preparing streamed",
            b"committing streamed",
        ] {
            if p.starts_with(streamed) {
                return Err(Error::decode(
                    0,
                    "test_decoding's streamed output (stream-changes) carries no row data and is not decoded",
                ));
            }
        }
        let s = std::str::from_utf8(p).map_err(|e| Error::decode(e.valid_up_to(), "invalid UTF-8"))?;
        let mut c = Cur { s, pos: 0 };
        if c.eat("table ") {
            return self.table(c);
        }
        if c.eat("BEGIN") {
            let xid = c.opt_xid(" ")?;
            c.end()?;
            self.open = Some(xid);
            return Ok(State::one(Event::Begin(Transaction { xid, ..Transaction::default() })));
        }
        for (word, kind) in [
            ("PREPARE TRANSACTION ", TwoPhaseKind::Prepare),
            ("COMMIT PREPARED ", TwoPhaseKind::CommitPrepared),
            ("ROLLBACK PREPARED ", TwoPhaseKind::RollbackPrepared),
        ] {
            if c.eat(word) {
                let gid = c.literal()?;
                let xid = c.opt_xid(", txid ")?;
                let timestamp = c.opt_time()?;
                c.end()?;
                if kind == TwoPhaseKind::Prepare {
                    self.open = None;
                }
                return Ok(State::one(Event::TwoPhase(TwoPhase { kind, gid, xid, timestamp })));
            }
        }
        if c.eat("COMMIT") {
            let xid = c.opt_xid(" ")?;
            let timestamp = c.opt_time()?;
            c.end()?;
            self.open = None;
            return Ok(State::one(Event::Commit(Transaction { xid, timestamp, ..Transaction::default() })));
        }
        Err(Error::decode(0, "not a test_decoding line"))
    }

    /// `message: transactional: D prefix: P, sz: N content:C` from `at` (the `transactional` word).
    fn message<'a>(&mut self, p: &'a [u8], at: usize) -> Result<Event<'a>> {
        let rest = p.get(at..).unwrap_or_default();
        let (transactional, head) = if let Some(r) = rest.strip_prefix(b"transactional: 1 prefix: ") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix(b"transactional: 0 prefix: ") {
            (false, r)
        } else {
            return Err(Error::decode(at, "expected \"transactional: 0|1 prefix: \""));
        };
        let prefix_at = p.len() - head.len();
        // the prefix is the text before the `, sz: N content:` whose N is exactly the bytes after it
        const SZ: &[u8] = b", sz: ";
        const CONTENT: &[u8] = b" content:";
        let mut from = 0;
        while let Some(i) = find(head.get(from..).unwrap_or_default(), SZ).map(|i| i + from) {
            from = i + 1;
            let after = head.get(i + SZ.len()..).unwrap_or_default();
            let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || digits > 19 {
                continue;
            }
            let Some(content) = after.get(digits..).and_then(|r| r.strip_prefix(CONTENT)) else { continue };
            let n: Option<usize> =
                std::str::from_utf8(after.get(..digits).unwrap_or_default()).ok().and_then(|d| d.parse().ok());
            if n != Some(content.len()) {
                continue;
            }
            let prefix = head.get(..i).unwrap_or_default();
            let prefix =
                std::str::from_utf8(prefix).map_err(|e| Error::decode(prefix_at + e.valid_up_to(), "invalid UTF-8"))?;
            let xid = if transactional { self.xid().into() } else { Nullable::Absent };
            return Ok(Event::Message(Message {
                xid,
                transactional,
                prefix: Cow::Borrowed(prefix),
                content: Cow::Borrowed(content),
                ..Message::default()
            }));
        }
        Err(Error::decode(prefix_at, "message without \", sz: N content:\" matching its length"))
    }

    /// After `table `: a change of one table, or a TRUNCATE of one or more.
    fn table<'a>(&mut self, mut c: Cur<'a>) -> Result<State<'a>> {
        let first = c.pos;
        let (schema, table) = c.qualified()?;
        if c.peek() == Some(b',') {
            return self.truncate(c, first);
        }
        c.expect(": ")?;
        let xid = self.xid();
        let mut change = Change { xid, schema: Some(schema), table, ..Change::default() };
        let kind = if c.eat("INSERT:") {
            if !c.eat(" (no-tuple-data)") {
                change.columns = self.tuple(&mut c, false)?;
            }
            Kind::Insert
        } else if c.eat("UPDATE:") {
            if c.eat(" old-key:") {
                change.identity = self.tuple(&mut c, true)?;
                c.expect(" new-tuple:")?;
            }
            if !c.eat(" (no-tuple-data)") {
                change.columns = self.tuple(&mut c, false)?;
            }
            Kind::Update
        } else if c.eat("DELETE:") {
            if !c.eat(" (no-tuple-data)") {
                change.identity = self.tuple(&mut c, false)?;
            }
            Kind::Delete
        } else if c.eat("TRUNCATE:") {
            return self.truncate(Cur { s: c.s, pos: first }, first);
        } else {
            return Err(c.err("expected INSERT:, UPDATE:, DELETE: or TRUNCATE:"));
        };
        if let Err(e) = c.end() {
            self.scratch.recycle(kind.event(change));
            return Err(e);
        }
        Ok(State::one(kind.event(change)))
    }

    /// A TRUNCATE line: checked whole here (tables and flags); the tables are decoded again as they are pulled.
    fn truncate<'a>(&mut self, mut c: Cur<'a>, first: usize) -> Result<State<'a>> {
        c.pos = first;
        let mut tables = 0usize;
        loop {
            c.qualified()?;
            tables += 1;
            if !c.eat(", ") {
                break;
            }
        }
        c.expect(": TRUNCATE:")?;
        let (restart_seqs, cascade) = if c.eat(" (no-flags)") {
            (false, false)
        } else {
            let r = c.eat(" restart_seqs");
            let k = c.eat(" cascade");
            if !r && !k {
                return Err(c.err("expected TRUNCATE's flags"));
            }
            (r, k)
        };
        c.end()?;
        Ok(State::Truncate { cur: Cur { s: c.s, pos: first }, left: tables, xid: self.xid(), restart_seqs, cascade })
    }

    /// ` name[type]:value` repeated to the end of the line, or (old key) up to ` new-tuple:`.
    fn tuple<'a>(&mut self, c: &mut Cur<'a>, old_key: bool) -> Result<Vec<Column<'a>>> {
        let mut cols = self.scratch.take_columns();
        let r = (|| {
            while c.peek() == Some(b' ') {
                if old_key && c.rest().starts_with(" new-tuple:") {
                    break;
                }
                c.pos += 1;
                let name = c.ident()?;
                c.expect("[")?;
                let type_name = c.type_name()?;
                let Some(value) = c.value()? else { continue };
                cols.push(Column { type_name: Some(Cow::Borrowed(type_name)), ..Column::new(name, value) });
            }
            Ok(())
        })();
        match r {
            Ok(()) => Ok(cols),
            Err(e) => {
                self.scratch.recycle(Event::Insert(Change { columns: cols, ..Change::default() }));
                Err(e)
            }
        }
    }
}

impl Decode for TestDecodingDecoder {
    type Events<'d, 'a> = TestDecodingEvents<'d, 'a>;
    fn events<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<TestDecodingEvents<'d, 'a>> {
        TestDecodingDecoder::events(self, payload)
    }
    fn decode_each<'a>(&mut self, payload: &'a [u8], f: impl FnMut(&Event<'a>)) -> Result<usize> {
        TestDecodingDecoder::decode_each(self, payload, f)
    }
    fn recycle(&mut self, ev: Event<'_>) {
        TestDecodingDecoder::recycle(self, ev);
    }
    fn reset(&mut self) {
        TestDecodingDecoder::reset(self);
    }
    fn in_transaction(&self) -> bool {
        TestDecodingDecoder::in_transaction(self)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Insert,
    Update,
    Delete,
}

impl Kind {
    fn event(self, c: Change<'_>) -> Event<'_> {
        match self {
            Kind::Insert => Event::Insert(c),
            Kind::Update => Event::Update(c),
            Kind::Delete => Event::Delete(c),
        }
    }
}

enum State<'a> {
    Done,
    One(Event<'a>),
    Truncate { cur: Cur<'a>, left: usize, xid: Option<u64>, restart_seqs: bool, cascade: bool },
}

impl<'a> State<'a> {
    fn one(ev: Event<'a>) -> Self {
        State::One(ev)
    }
}

/// The events of one test_decoding line.
pub struct TestDecodingEvents<'d, 'a> {
    scratch: &'d mut Scratch,
    state: State<'a>,
}

impl<'a> TestDecodingEvents<'_, 'a> {
    /// Give an event's column storage back for reuse.
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.scratch.recycle(ev);
    }
}

impl<'a> Iterator for TestDecodingEvents<'_, 'a> {
    type Item = Result<Event<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => None,
            State::One(ev) => Some(Ok(ev)),
            State::Truncate { mut cur, left, xid, restart_seqs, cascade } => {
                let (schema, table) = match cur.qualified() {
                    Ok(t) => t,
                    Err(e) => return Some(Err(e)),
                };
                cur.eat(", ");
                if left > 1 {
                    self.state = State::Truncate { cur, left: left - 1, xid, restart_seqs, cascade };
                }
                Some(Ok(Event::Truncate(Truncate {
                    xid,
                    schema: Some(schema),
                    table,
                    restart_seqs: Some(restart_seqs),
                    cascade: Some(cascade),
                    ..Truncate::default()
                })))
            }
        }
    }
}

impl<'a> EventIter<'a> for TestDecodingEvents<'_, 'a> {
    fn recycle(&mut self, ev: Event<'_>) {
        TestDecodingEvents::recycle(self, ev);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A position in a line.
#[derive(Clone, Copy)]
struct Cur<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cur<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or_default()
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn err(&self, msg: &str) -> Error {
        Error::decode(self.pos, msg)
    }
    fn eat(&mut self, lit: &str) -> bool {
        if self.rest().starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, lit: &str) -> Result<()> {
        if self.eat(lit) {
            Ok(())
        } else {
            Err(self.err(&format!("expected {lit:?}")))
        }
    }
    fn end(&self) -> Result<()> {
        if self.pos == self.s.len() {
            Ok(())
        } else {
            Err(self.err("trailing characters"))
        }
    }
    /// `lit` and a decimal xid, if `lit` is there.
    fn opt_xid(&mut self, lit: &str) -> Result<Option<u64>> {
        let save = self.pos;
        if !self.eat(lit) {
            return Ok(None);
        }
        let digits = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            // ` (at …)` after COMMIT without an xid
            self.pos = save;
            return Ok(None);
        }
        let d = self.rest().get(..digits).unwrap_or_default();
        let x = d.parse::<u32>().map_err(|_| self.err("xid out of range"))?;
        self.pos += digits;
        Ok(Some(u64::from(x)))
    }
    /// ` (at TIME)` at the end of the line, if there.
    fn opt_time(&mut self) -> Result<Option<Cow<'a, str>>> {
        if !self.eat(" (at ") {
            return Ok(None);
        }
        let rest = self.rest();
        let Some(t) = rest.strip_suffix(')') else { return Err(self.err("expected ')' at the end")) };
        self.pos += rest.len();
        Ok(Some(Cow::Borrowed(t)))
    }
    /// A `quote_identifier` identifier: `"…"` with `""` for a quote, or a bare run of identifier characters.
    fn ident(&mut self) -> Result<Cow<'a, str>> {
        let rest = self.rest();
        if let Some(body) = rest.strip_prefix('"') {
            let (text, used) = unquote(body, '"').ok_or_else(|| self.err("unterminated quoted identifier"))?;
            if text.is_empty() {
                return Err(self.err("empty identifier"));
            }
            self.pos += 1 + used;
            return Ok(text);
        }
        let n = rest.bytes().take_while(|b| !matches!(b, b'.' | b'[' | b':' | b',' | b' ' | b'"')).count();
        if n == 0 {
            return Err(self.err("expected an identifier"));
        }
        let id = rest.get(..n).unwrap_or_default();
        self.pos += n;
        Ok(Cow::Borrowed(id))
    }
    /// `schema.name`.
    fn qualified(&mut self) -> Result<(Cow<'a, str>, Cow<'a, str>)> {
        let schema = self.ident()?;
        self.expect(".")?;
        Ok((schema, self.ident()?))
    }
    /// A type name up to the `]:` that closes it (quoted parts may hold `]`; arrays end in `[]`).
    fn type_name(&mut self) -> Result<&'a str> {
        let rest = self.rest();
        let b = rest.as_bytes();
        let mut quoted = false;
        for (i, &ch) in b.iter().enumerate() {
            match ch {
                b'"' => quoted = !quoted,
                b']' if !quoted && b.get(i + 1) == Some(&b':') => {
                    let t = rest.get(..i).unwrap_or_default();
                    if t.is_empty() {
                        return Err(self.err("empty type name"));
                    }
                    self.pos += i + 2;
                    return Ok(t);
                }
                _ => {}
            }
        }
        Err(self.err("expected \"]:\" after the type name"))
    }
    /// A value; `None` for `unchanged-toast-datum` (the column is left out).
    fn value(&mut self) -> Result<Option<Value<'a>>> {
        let rest = self.rest();
        if let Some(body) = rest.strip_prefix('\'') {
            let (text, used) = unquote(body, '\'').ok_or_else(|| self.err("unterminated quoted value"))?;
            self.pos += 1 + used;
            self.value_end()?;
            return Ok(Some(Value::String(text)));
        }
        if let Some(body) = rest.strip_prefix("B'") {
            let n = body.find('\'').ok_or_else(|| self.err("unterminated bit string"))?;
            self.pos += 2 + n + 1;
            self.value_end()?;
            return Ok(Some(Value::String(Cow::Borrowed(body.get(..n).unwrap_or_default()))));
        }
        let n = rest.bytes().take_while(|&b| b != b' ').count();
        let tok = rest.get(..n).unwrap_or_default();
        let v = match tok {
            "" => return Err(self.err("expected a value")),
            "null" => Some(Value::Null),
            "unchanged-toast-datum" => None,
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            t if is_json_number(t.as_bytes()) => Some(Value::Number(Cow::Borrowed(t))),
            t => Some(Value::String(Cow::Borrowed(t))),
        };
        self.pos += n;
        Ok(v)
    }
    /// After a quoted value: the next column (` `) or the end.
    fn value_end(&self) -> Result<()> {
        match self.peek() {
            None | Some(b' ') => Ok(()),
            Some(_) => Err(self.err("expected ' ' or the end after a value")),
        }
    }
}

/// The text up to the closing `q` of a quoted string (`qq` stands for `q`), and the bytes used (closing quote
/// included). Borrowed unless there was a doubled quote.
fn unquote(body: &str, q: char) -> Option<(Cow<'_, str>, usize)> {
    let mut owned: Option<String> = None;
    let mut start = 0;
    loop {
        let i = start + body.get(start..)?.find(q)?;
        let seg = body.get(start..i)?;
        if body.get(i + 1..)?.starts_with(q) {
            let o = owned.get_or_insert_with(String::new);
            o.push_str(seg);
            o.push(q);
            start = i + 2;
            continue;
        }
        return Some(match owned {
            None => (Cow::Borrowed(seg), i + 1),
            Some(mut o) => {
                o.push_str(seg);
                (Cow::Owned(o), i + 1)
            }
        });
    }
}

/// `'…'` or `E'…'` as `quote_literal` prints it (a GID).
impl<'a> Cur<'a> {
    fn literal(&mut self) -> Result<Cow<'a, str>> {
        let e = self.eat("E");
        if !self.eat("'") {
            return Err(self.err("expected a quoted literal"));
        }
        let (text, used) = unquote(self.rest(), '\'').ok_or_else(|| self.err("unterminated literal"))?;
        self.pos += used;
        // E'…': backslashes were doubled too
        Ok(if e && text.contains("\\\\") { Cow::Owned(text.replace("\\\\", "\\")) } else { text })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn all(d: &mut TestDecodingDecoder, p: &str) -> Vec<Event<'static>> {
        d.events(p.as_bytes()).unwrap().map(|e| e.unwrap().into_owned()).collect()
    }

    fn one(p: &str) -> Event<'static> {
        let mut d = TestDecodingDecoder::new();
        let mut v = all(&mut d, p);
        assert_eq!(v.len(), 1, "{p}");
        v.remove(0)
    }

    fn col(name: &str, ty: &str, v: Value<'static>) -> Column<'static> {
        Column { type_name: Some(ty.to_string().into()), ..Column::new(name.to_string(), v) }
    }

    #[test]
    fn transactions() {
        let mut d = TestDecodingDecoder::new();
        assert_eq!(all(&mut d, "BEGIN 735"), vec![Event::Begin(Transaction { xid: Some(735), ..Default::default() })]);
        assert!(d.in_transaction());
        let ev = all(&mut d, "table public.t: INSERT: id[integer]:1");
        assert_eq!(ev[0].xid(), Some(735));
        assert_eq!(
            all(&mut d, "COMMIT 735 (at 2026-12-07 21:00:00.123456+00)"),
            vec![Event::Commit(Transaction {
                xid: Some(735),
                timestamp: Some("2026-12-07 21:00:00.123456+00".into()),
                ..Default::default()
            })]
        );
        assert!(!d.in_transaction());
        assert_eq!(one("BEGIN"), Event::Begin(Transaction::default()));
        assert_eq!(one("COMMIT"), Event::Commit(Transaction::default()));
        assert_eq!(
            one("COMMIT (at 2026-01-01 00:00:00+00)"),
            Event::Commit(Transaction { timestamp: Some("2026-01-01 00:00:00+00".into()), ..Default::default() })
        );
        assert_eq!(one("COMMIT 7"), Event::Commit(Transaction { xid: Some(7), ..Default::default() }));
    }

    #[test]
    fn changes_and_values() {
        let Event::Insert(c) = one(concat!(
            "table public.t: INSERT: id[integer]:1 n[numeric]:-1.50 f[double precision]:NaN b[boolean]:true ",
            "s[text]:'it''s a ''q'' \\ x' v[character varying]:'a b' z[text]:null bits[bit varying]:B'0101' ",
            "a[integer[]]:'{1,2}' big[text]:unchanged-toast-datum e[text]:'' \"My \"\"Col\"\"\"[\"MySchema\".mood]:'ok'"
        )) else {
            panic!()
        };
        assert_eq!(c.schema.as_deref(), Some("public"));
        assert_eq!(c.table, "t");
        assert_eq!(
            c.columns,
            vec![
                col("id", "integer", Value::Number("1".into())),
                col("n", "numeric", Value::Number("-1.50".into())),
                col("f", "double precision", Value::String("NaN".into())),
                col("b", "boolean", Value::Bool(true)),
                col("s", "text", Value::String("it's a 'q' \\ x".into())),
                col("v", "character varying", Value::String("a b".into())),
                col("z", "text", Value::Null),
                col("bits", "bit varying", Value::String("0101".into())),
                col("a", "integer[]", Value::String("{1,2}".into())),
                col("e", "text", Value::String("".into())),
                col("My \"Col\"", "\"MySchema\".mood", Value::String("ok".into())),
            ]
        );
        assert!(c.column("big").is_none());
        let Event::Insert(c) = one("table \"My Schema\".\"Tab.le\": INSERT: (no-tuple-data)") else { panic!() };
        assert_eq!((c.schema.as_deref(), &*c.table, c.columns.len()), (Some("My Schema"), "Tab.le", 0));
        let Event::Insert(c) = one("table s.t: INSERT:") else { panic!() };
        assert!(c.columns.is_empty());
    }

    #[test]
    fn updates_deletes_truncates() {
        let Event::Update(c) =
            one("table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 v[text]:' new-tuple: x'")
        else {
            panic!()
        };
        assert_eq!(c.identity, vec![col("id", "integer", Value::Number("1".into()))]);
        assert_eq!(c.columns[1], col("v", "text", Value::String(" new-tuple: x".into())));
        let Event::Update(c) = one("table public.t: UPDATE: id[integer]:2") else { panic!() };
        assert!(c.identity.is_empty());
        assert_eq!(c.columns.len(), 1);
        let Event::Delete(c) = one("table public.t: DELETE: id[integer]:2") else { panic!() };
        assert_eq!(c.identity, vec![col("id", "integer", Value::Number("2".into()))]);
        let Event::Delete(c) = one("table public.t: DELETE: (no-tuple-data)") else { panic!() };
        assert!(c.identity.is_empty() && c.columns.is_empty());

        let mut d = TestDecodingDecoder::new();
        let ev = all(&mut d, "table public.a, \"S\".\"b, c\": TRUNCATE: restart_seqs cascade");
        assert_eq!(
            ev,
            vec![
                Event::Truncate(Truncate {
                    schema: Some("public".into()),
                    table: "a".into(),
                    restart_seqs: Some(true),
                    cascade: Some(true),
                    ..Default::default()
                }),
                Event::Truncate(Truncate {
                    schema: Some("S".into()),
                    table: "b, c".into(),
                    restart_seqs: Some(true),
                    cascade: Some(true),
                    ..Default::default()
                }),
            ]
        );
        let Event::Truncate(t) = one("table public.a: TRUNCATE: (no-flags)") else { panic!() };
        assert_eq!((t.restart_seqs, t.cascade), (Some(false), Some(false)));
        let Event::Truncate(t) = one("table public.a: TRUNCATE: cascade") else { panic!() };
        assert_eq!((t.restart_seqs, t.cascade), (Some(false), Some(true)));
    }

    #[test]
    fn messages_and_two_phase() {
        let mut d = TestDecodingDecoder::new();
        let m =
            d.events(b"message: transactional: 0 prefix: p, sz: 5 content:a\0b\xffc").unwrap().next().unwrap().unwrap();
        let Event::Message(m) = m else { panic!() };
        assert!(!m.transactional);
        assert_eq!((&*m.prefix, &*m.content), ("p", &b"a\0b\xffc"[..]));
        assert_eq!(m.xid, Nullable::Absent);
        // a prefix holding the separator
        let Event::Message(m) = one("message: transactional: 1 prefix: a, sz: 3 content:x, sz: 2 content:yz") else {
            panic!()
        };
        assert_eq!((&*m.prefix, m.content_str()), ("a, sz: 3 content:x", Some("yz")));
        let Event::Message(m) = one("streaming message: transactional: 0 prefix: pgrepl-heartbeat, sz: 0 content:")
        else {
            panic!()
        };
        assert_eq!((&*m.prefix, m.content.len(), m.transactional), ("pgrepl-heartbeat", 0, false));
        assert_eq!(
            one("PREPARE TRANSACTION 'g''1', txid 9 (at 2026-01-01 00:00:00+00)"),
            Event::TwoPhase(TwoPhase {
                kind: TwoPhaseKind::Prepare,
                gid: "g'1".into(),
                xid: Some(9),
                timestamp: Some("2026-01-01 00:00:00+00".into())
            })
        );
        let Event::TwoPhase(t) = one("COMMIT PREPARED E'a\\\\b'") else { panic!() };
        assert_eq!((t.kind, &*t.gid, t.xid), (TwoPhaseKind::CommitPrepared, "a\\b", None));
        let Event::TwoPhase(t) = one("ROLLBACK PREPARED 'g', txid 3") else { panic!() };
        assert_eq!((t.kind, t.xid), (TwoPhaseKind::RollbackPrepared, Some(3)));
    }

    #[test]
    fn malformed_lines_are_errors_with_offsets() {
        let mut d = TestDecodingDecoder::new();
        for bad in [
            &b""[..],
            b"BEGINS",
            b"BEGIN x",
            b"BEGIN 99999999999",
            b"COMMIT 1 (at x",
            b"table ",
            b"table public",
            b"table public.t",
            b"table public.t: MERGE:",
            b"table public.t: INSERT: id",
            b"table public.t: INSERT: id[integer",
            b"table public.t: INSERT: id[integer]:",
            b"table public.t: INSERT: id[integer]:'x",
            b"table public.t: INSERT: id[integer]:'x'y",
            b"table public.t: UPDATE: old-key: id[integer]:1",
            b"table public.t: INSERT: \"x[integer]:1",
            b"table public.a, : TRUNCATE: (no-flags)",
            b"table public.a: TRUNCATE:",
            b"table public.t: INSERT: v[text]:'\xff'",
            b"message: transactional: 2 prefix: p, sz: 0 content:",
            b"message: transactional: 0 prefix: p, sz: 3 content:ab",
            b"streaming change for TXN 5",
            b"PREPARE TRANSACTION g",
            b"hello",
        ] {
            let r = d.decode_each(bad, |_| {});
            let e = r.expect_err(&String::from_utf8_lossy(bad));
            assert!(e.to_string().contains(" at byte "), "{e}");
        }
    }

    #[test]
    fn recycled_columns_are_reused() {
        let mut d = TestDecodingDecoder::new();
        let p = b"table public.t: INSERT: a[integer]:1 b[integer]:2";
        let ev = d.events(p).unwrap().next().unwrap().unwrap();
        let cap = ev.change().unwrap().columns.capacity();
        let ptr = ev.change().unwrap().columns.as_ptr() as usize;
        d.recycle(ev);
        let ev = d.events(p).unwrap().next().unwrap().unwrap();
        assert_eq!(ev.change().unwrap().columns.capacity(), cap);
        assert_eq!(ev.change().unwrap().columns.as_ptr() as usize, ptr);
    }
}
