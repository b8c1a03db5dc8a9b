//! The byte cursor under both format parsers: bounds-checked, never panics, never allocates except to unescape
//! a string that contains escapes.
//!
//! The payload is UTF-8-validated once, up front (std's validator has a fast ASCII path); substrings are then
//! taken from the validated `&str` at ASCII delimiter positions, which are always char boundaries. A payload
//! that is not valid UTF-8 (only message content may legitimately be) falls back to validating each string on
//! its own.
//!
//! String ends are found 16 bytes at a time with SSE2 on x86_64 and 8 bytes at a time (SWAR) elsewhere.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::lsn::Lsn;

use crate::event::{Nullable, Value};

/// Maximum nesting accepted when skipping an unknown value.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    pub(crate) b: &'a [u8],
    s: Option<&'a str>,
    pub(crate) pos: usize,
    /// What is left of the payload's budget for re-reading bytes when recovering wal2json's invalid-JSON quirks
    /// (see [`WORK_BASE`]): normal parsing reads each byte once; only the quirk paths charge this.
    work: usize,
}

/// Quirk recovery (re-reading a type name or default that is not valid JSON, splitting an unescaped
/// `columndefaults` array) may re-read bytes; a payload may re-read at most `WORK_BASE + WORK_PER_BYTE × its
/// length` bytes in all, so that decoding time stays linear in the payload whatever it contains.
pub(crate) const WORK_BASE: usize = 1 << 20;
/// See [`WORK_BASE`].
pub(crate) const WORK_PER_BYTE: usize = 8;

fn work_for(len: usize) -> usize {
    WORK_BASE.saturating_add(len.saturating_mul(WORK_PER_BYTE))
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Cursor { b, s: utf8(b), pos: 0, work: work_for(b.len()) }
    }

    /// A cursor that does not validate the whole payload up front (each string taken as `&str` is validated
    /// on its own): for the classifiers, which look at a few keys only.
    pub(crate) fn raw(b: &'a [u8]) -> Self {
        Cursor { b, s: None, pos: 0, work: work_for(b.len()) }
    }

    /// Charge `n` re-read bytes to the quirk budget.
    #[inline]
    fn charge(&mut self, n: usize) -> Result<()> {
        match self.work.checked_sub(n) {
            Some(w) => {
                self.work = w;
                Ok(())
            }
            None => {
                self.work = 0;
                Err(self.err("too much invalid JSON to recover (quirk budget exhausted)"))
            }
        }
    }

    #[cold]
    pub(crate) fn err(&self, msg: &str) -> Error {
        Error::decode(self.pos, msg)
    }

    #[cold]
    pub(crate) fn err_at(&self, pos: usize, msg: &str) -> Error {
        Error::decode(pos, msg)
    }

    #[inline(always)]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline(always)]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or(&[])
    }

    #[inline(always)]
    pub(crate) fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if !is_ws(c) {
                break;
            }
            self.pos += 1;
        }
    }

    /// Skip whitespace; whether the input is exhausted.
    pub(crate) fn at_end(&mut self) -> bool {
        self.ws();
        self.pos >= self.b.len()
    }

    /// Consume `c` when it is the very next byte (no whitespace skipped).
    #[inline(always)]
    pub(crate) fn eat_byte(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// Skip whitespace and consume `c` if it is next.
    #[inline(always)]
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            return true;
        }
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consume `c` or fail with a decode error saying `what` (a `Result`, not a panic).
    #[inline(always)]
    pub(crate) fn require(&mut self, c: u8, what: &str) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// `&str` for `b[start..end]`, which must lie between ASCII delimiters.
    #[inline(always)]
    pub(crate) fn str_range(&self, start: usize, end: usize) -> Result<&'a str> {
        match self.s {
            Some(s) => {
                str_get(s, start, end).ok_or_else(|| self.err_at(start, "string is not on a character boundary"))
            }
            None => {
                let b = self.b.get(start..end).unwrap_or(&[]);
                std::str::from_utf8(b).map_err(|e| self.err_at(start + e.valid_up_to(), "string is not valid UTF-8"))
            }
        }
    }

    /// `&str` for `b[start..end]`, a span the caller has just seen delimited by ASCII bytes: `b[start - 1]`
    /// (when `start > 0`) and `b[end]` are ASCII. A position next to an ASCII byte is a character boundary of a
    /// valid UTF-8 payload, so for a validated payload ([`Cursor::new`]) no byte is looked at again; otherwise
    /// the span is validated.
    ///
    /// # Safety
    /// `start <= end < b.len()`, and `b[start - 1]` (when `start > 0`) and `b[end]` are ASCII bytes.
    #[inline(always)]
    pub(crate) unsafe fn str_delimited(&self, start: usize, end: usize) -> Result<&'a str> {
        match self.s {
            Some(s) => {
                debug_assert!(start <= end && end < s.len());
                debug_assert!(start == 0 || s.as_bytes().get(start - 1).is_some_and(u8::is_ascii));
                debug_assert!(s.as_bytes().get(end).is_some_and(u8::is_ascii));
                // SAFETY: in bounds (the caller's contract); `start` follows an ASCII byte (or is 0) and `end` is
                // at one, so both are character boundaries of the valid UTF-8 `s`.
                Ok(unsafe { s.get_unchecked(start..end) })
            }
            None => self.str_range(start, end),
        }
    }

    #[inline(always)]
    pub(crate) fn bytes_range(&self, start: usize, end: usize) -> &'a [u8] {
        self.b.get(start..end).unwrap_or(&[])
    }

    /// At an opening `"`: scan to the closing quote. Returns (content start, content end, had escapes) and
    /// leaves the cursor after the closing quote.
    #[inline(always)]
    pub(crate) fn string_span(&mut self) -> Result<(usize, usize, bool)> {
        if self.peek() != Some(b'"') {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string"));
            }
        }
        let start = self.pos + 1;
        let mut i = start;
        let mut esc = false;
        loop {
            match find_quote_or_backslash(self.b, i) {
                None => return Err(self.err_at(start - 1, "unterminated string")),
                Some(j) => {
                    if self.b.get(j) == Some(&b'"') {
                        self.pos = j + 1;
                        return Ok((start, j, esc));
                    }
                    esc = true;
                    i = j + 2;
                }
            }
        }
    }

    /// The fast path of the string readers: a string without escapes right here, borrowed; `None` (the cursor
    /// unmoved) otherwise.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<Result<&'a str>> {
        let (start, j) = self.string_here()?;
        if self.b.get(j) != Some(&b'"') {
            return None;
        }
        self.pos = j + 1;
        // SAFETY: `b[start - 1]` is the opening quote (`string_here`), `b[j]` the closing one (just checked).
        Some(unsafe { self.str_delimited(start, j) })
    }

    /// A JSON string, borrowed when it has no escapes.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>> {
        if let Some(s) = self.plain_string() {
            return s.map(Cow::Borrowed);
        }
        let (s, e, esc) = self.string_span()?;
        if !esc {
            return Ok(Cow::Borrowed(self.str_range(s, e)?));
        }
        let mut out = Vec::with_capacity(e - s);
        unescape(self.bytes_range(s, e), s, &mut out)?;
        String::from_utf8(out).map(Cow::Owned).map_err(|_| self.err_at(s, "string is not valid UTF-8"))
    }

    /// [`Cursor::string`], unescaping in the same pass into a `String` taken from `pool` (see
    /// [`super::Scratch`]) instead of a new allocation.
    #[inline(always)]
    pub(crate) fn string_in(&mut self, pool: &mut Vec<String>) -> Result<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string"));
            }
        }
        let start = self.pos + 1;
        let j = find_quote_or_backslash(self.b, start).ok_or_else(|| self.err("unterminated string"))?;
        if self.b.get(j) == Some(&b'"') {
            self.pos = j + 1;
            // SAFETY: `b[start - 1]` is the opening quote (checked above), `b[j]` the closing one.
            return Ok(Cow::Borrowed(unsafe { self.str_delimited(start, j) }?));
        }
        self.string_escaped(start, j, pool)
    }

    /// [`Cursor::string_in`] stored straight into `dst`. Returning the `Result<Cow>` cost a store-forwarding
    /// stall per string on the hot path: the fast path stored the value as 8-byte words and the code after the
    /// `?` read it back as one 16-byte load (perf: a fifth of the column loop's samples on two such loads).
    #[inline(always)]
    pub(crate) fn string_into(&mut self, dst: &mut Cow<'a, str>, pool: &mut Vec<String>) -> Result<()> {
        if self.string_here_into(dst, pool, |s| s)? {
            return Ok(());
        }
        *dst = self.string_in_cold(pool)?;
        Ok(())
    }

    /// The fast path of the `*_into` readers: a string right here, wrapped by `wrap` and stored straight into
    /// `dst`; `Ok(false)` (nothing read) when the cursor is not at a terminated string.
    #[inline(always)]
    fn string_here_into<T>(
        &mut self,
        dst: &mut T,
        pool: &mut Vec<String>,
        wrap: impl FnOnce(Cow<'a, str>) -> T,
    ) -> Result<bool> {
        let Some((start, j)) = self.string_here() else { return Ok(false) };
        *dst = wrap(if self.b.get(j) == Some(&b'"') {
            self.pos = j + 1;
            // SAFETY: `b[start - 1]` is the opening quote (`string_here`), `b[j]` the closing one (just checked).
            Cow::Borrowed(unsafe { self.str_delimited(start, j) }?)
        } else {
            self.string_escaped(start, j, pool)?
        });
        Ok(true)
    }

    /// The fast paths' look at a string that starts right here: where its content starts and the first `"` or
    /// `\` in it (the end of a string without escapes, or where unescaping starts); `None` when the cursor is
    /// not at a `"` or the string is unterminated. The cursor does not move.
    #[inline(always)]
    fn string_here(&self) -> Option<(usize, usize)> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.pos + 1;
        Some((start, find_quote_or_backslash(self.b, start)?))
    }

    /// A type name's fast path: a string without escapes right here, followed at once by `,` `}` or `]` (see
    /// [`Cursor::type_name`]): its content's span.
    #[inline(always)]
    fn plain_type_name(&self) -> Option<(usize, usize)> {
        let (start, end) = self.string_here()?;
        if self.b.get(end) != Some(&b'"') || !matches!(self.b.get(end + 1), Some(b',' | b'}' | b']')) {
            return None;
        }
        Some((start, end))
    }

    #[inline(never)]
    fn string_in_cold(&mut self, pool: &mut Vec<String>) -> Result<Cow<'a, str>> {
        self.string_in(pool)
    }

    /// The rest of a string with escapes, from `i` (its first backslash), unescaped into a pooled buffer.
    #[inline(never)]
    fn string_escaped(&mut self, start: usize, mut i: usize, pool: &mut Vec<String>) -> Result<Cow<'a, str>> {
        let b = self.b;
        let mut out = pool.pop().unwrap_or_default().into_bytes();
        out.clear();
        out.extend_from_slice(self.bytes_range(start, i));
        loop {
            // at a backslash: the two-character escapes without a call, `\u` by `escape_at`
            let simple = match b.get(i + 1) {
                Some(&c @ (b'"' | b'\\' | b'/')) => c,
                Some(b'n') => b'\n',
                Some(b't') => b'\t',
                Some(b'r') => b'\r',
                Some(b'b') => 0x08,
                Some(b'f') => 0x0c,
                _ => 0,
            };
            if simple != 0 {
                out.push(simple);
                i += 2;
            } else {
                i = escape_at(b, i, 0, &mut out)?;
            }
            // the run up to the next quote or backslash, 16 bytes at a time: each block is copied whole (a
            // fixed-size copy, no call) and the buffer cut back to the run's end
            let end = loop {
                match block_mask(b, i) {
                    Some((block, 0)) => {
                        out.extend_from_slice(block);
                        i += 16;
                    }
                    Some((block, m)) => {
                        let n = m.trailing_zeros() as usize;
                        let len = out.len();
                        out.extend_from_slice(block);
                        out.truncate(len + n);
                        break i + n;
                    }
                    None => {
                        let k = find_quote_or_backslash(b, i)
                            .ok_or_else(|| self.err_at(start - 1, "unterminated string"))?;
                        out.extend_from_slice(self.bytes_range(i, k));
                        break k;
                    }
                }
            };
            if b.get(end) == Some(&b'"') {
                self.pos = end + 1;
                if self.s.is_some() {
                    debug_assert!(std::str::from_utf8(&out).is_ok());
                    // SAFETY: the payload is valid UTF-8 (`self.s`), every run copied into `out` is a slice of it
                    // between ASCII bytes (a quote, a backslash, the end of an escape sequence), which are
                    // character boundaries, and every escape was written as a whole `char`.
                    return Ok(Cow::Owned(unsafe { String::from_utf8_unchecked(out) }));
                }
                // a payload that is not UTF-8 as a whole (message content): this string must be
                return String::from_utf8(out)
                    .map(Cow::Owned)
                    .map_err(|_| self.err_at(start, "string is not valid UTF-8"));
            }
            i = end;
        }
    }

    /// [`Cursor::value`] with pooled unescaping.
    #[inline(always)]
    pub(crate) fn value_in(&mut self, pool: &mut Vec<String>) -> Result<Value<'a>> {
        if self.peek() == Some(b'"') {
            return self.string_in(pool).map(Value::String);
        }
        self.value()
    }

    /// [`Cursor::value_in`] stored straight into `dst` (see [`Cursor::string_into`]).
    #[inline(always)]
    pub(crate) fn value_into(&mut self, dst: &mut Value<'a>, pool: &mut Vec<String>) -> Result<()> {
        if self.string_here_into(dst, pool, Value::String)? {
            return Ok(());
        }
        *dst = self.value_in(pool)?;
        Ok(())
    }

    /// Consume `lit` if the input continues with exactly it (no whitespace skipping: the fast paths).
    #[inline(always)]
    pub(crate) fn lit(&mut self, lit: &[u8]) -> bool {
        if starts_with_short(self.rest(), lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    /// A JSON string as bytes (message content: need not be UTF-8).
    pub(crate) fn byte_string(&mut self) -> Result<Cow<'a, [u8]>> {
        let (s, e, esc) = self.string_span()?;
        if !esc {
            return Ok(Cow::Borrowed(self.bytes_range(s, e)));
        }
        let mut out = Vec::with_capacity(e - s);
        unescape(self.bytes_range(s, e), s, &mut out)?;
        Ok(Cow::Owned(out))
    }

    /// `null` (consumed) → true.
    #[inline(always)]
    pub(crate) fn eat_null(&mut self) -> bool {
        if self.rest().starts_with(b"null") {
            self.pos += 4;
            return true;
        }
        self.ws();
        if self.rest().starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// A JSON number's exact text.
    #[inline(always)]
    pub(crate) fn number(&mut self) -> Result<&'a str> {
        self.ws();
        let start = self.pos;
        let end = number_end(self.b, start).ok_or_else(|| self.err("invalid number"))?;
        self.pos = end;
        let digits = self.bytes_range(start, end);
        debug_assert!(digits.is_ascii());
        // SAFETY: `number_end` accepts ASCII bytes only (`-`, `+`, `.`, `e`, `E`, digits).
        Ok(unsafe { std::str::from_utf8_unchecked(digits) })
    }

    pub(crate) fn boolean(&mut self) -> Result<bool> {
        self.ws();
        if self.rest().starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if self.rest().starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(self.err("expected true or false"))
        }
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let at = self.pos;
        self.number()?.parse().map_err(|_| self.err_at(at, "expected an unsigned integer"))
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        let at = self.pos;
        self.number()?.parse().map_err(|_| self.err_at(at, "expected an integer"))
    }

    pub(crate) fn i32(&mut self) -> Result<i32> {
        let at = self.pos;
        self.number()?.parse().map_err(|_| self.err_at(at, "expected a 32-bit integer"))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let at = self.pos;
        self.number()?.parse().map_err(|_| self.err_at(at, "expected a 32-bit unsigned integer"))
    }

    pub(crate) fn opt_u64(&mut self) -> Result<Option<u64>> {
        if let Some(v) = self.plain_u64() {
            return Ok(Some(v));
        }
        if self.eat_null() {
            Ok(None)
        } else {
            self.u64().map(Some)
        }
    }

    /// The fast path of the unsigned readers: an integer of plain digits right here (how wal2json prints xids),
    /// when it fits; `None` (the cursor unmoved) for anything else, which the general path then reads or rejects.
    #[inline(always)]
    fn plain_u64(&mut self) -> Option<u64> {
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        let mut v: u64 = 0;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            i += 1;
        }
        // a JSON integer: some digits, no leading zero, no fraction or exponent after them
        let n = i - start;
        if n == 0 || (n > 1 && b.get(start) == Some(&b'0')) || matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.pos = i;
        Some(v)
    }

    /// An unsigned integer, `null` kept apart: [`Nullable::Null`] for `null`, never [`Nullable::Absent`].
    #[inline(always)]
    pub(crate) fn nullable_u64(&mut self) -> Result<Nullable<u64>> {
        if let Some(v) = self.plain_u64() {
            return Ok(Nullable::Value(v));
        }
        if self.eat_null() {
            Ok(Nullable::Null)
        } else {
            self.u64().map(Nullable::Value)
        }
    }

    /// As [`Cursor::nullable_u64`], for a `u32`.
    pub(crate) fn nullable_u32(&mut self) -> Result<Nullable<u32>> {
        if self.eat_null() {
            Ok(Nullable::Null)
        } else {
            self.u32().map(Nullable::Value)
        }
    }

    /// A string, `null` kept apart (as [`Cursor::nullable_u64`]).
    #[inline(always)]
    pub(crate) fn nullable_string(&mut self) -> Result<Nullable<Cow<'a, str>>> {
        if let Some(s) = self.plain_string() {
            return s.map(|s| Nullable::Value(Cow::Borrowed(s)));
        }
        if self.eat_null() {
            Ok(Nullable::Null)
        } else {
            self.string().map(Nullable::Value)
        }
    }

    pub(crate) fn opt_u32(&mut self) -> Result<Option<u32>> {
        if self.eat_null() {
            Ok(None)
        } else {
            self.u32().map(Some)
        }
    }

    pub(crate) fn opt_string(&mut self) -> Result<Option<Cow<'a, str>>> {
        if let Some(s) = self.plain_string() {
            return s.map(|s| Some(Cow::Borrowed(s)));
        }
        if self.eat_null() {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    /// An LSN string `"X/Y"` (or null).
    pub(crate) fn opt_lsn(&mut self) -> Result<Option<Lsn>> {
        if self.eat_null() {
            return Ok(None);
        }
        let (s, e, esc) = self.string_span()?;
        if esc {
            return Err(self.err_at(s, "invalid LSN"));
        }
        Lsn::parse_bytes(self.bytes_range(s, e)).map(Some).map_err(|_| self.err_at(s, "invalid LSN"))
    }

    /// An object key and its `:`. Keys never carry escapes in wal2json output; a key that does is returned raw
    /// (and so matches no known key).
    #[inline(always)]
    pub(crate) fn key(&mut self) -> Result<&'a [u8]> {
        let (s, e, _) = self.string_span()?;
        if self.peek() == Some(b':') {
            self.pos += 1;
        } else {
            self.require(b':', "expected ':' after a key")?;
        }
        Ok(self.bytes_range(s, e))
    }

    /// The next key: matched as a literal (`"key":`) against the keys wal2json can print next — `order` from
    /// `hint` on, which moves past each match — or else read in general.
    #[inline(always)]
    pub(crate) fn predicted_key(&mut self, order: &[&[u8]], hint: &mut usize) -> Result<&'a [u8]> {
        if let Some(k) = self.predicted_literal(order, |k| k, |k| k.len(), hint) {
            // the key without its quotes and colon, just passed
            let start = (self.pos + 1).saturating_sub(k);
            return Ok(self.bytes_range(start, start + k.saturating_sub(3)));
        }
        self.key()
    }

    /// [`Cursor::predicted_key`] for a table of `(literal, tag)`: the tag of the key read (matched as a literal
    /// from `hint` on, or else read in general and looked up without its quotes and colon), `other` for a key
    /// not in the table. The caller then matches on a small tag rather than on the key's bytes.
    #[inline(always)]
    pub(crate) fn predicted_key_tag<T: Copy>(&mut self, order: &[(&[u8], T)], hint: &mut usize, other: T) -> Result<T> {
        if let Some(tag) = self.predicted_literal(order, |(k, _)| k, |(_, tag)| *tag, hint) {
            return Ok(tag);
        }
        let key = self.key()?;
        Ok(order.iter().find(|(k, _)| k.get(1..k.len().saturating_sub(2)) == Some(key)).map_or(other, |(_, tag)| *tag))
    }

    /// The literal match of [`Cursor::predicted_key`] and [`Cursor::predicted_key_tag`]: after any whitespace, the
    /// first entry of `order` from `hint` on whose literal (`key`) is right here gives its `tag`; the cursor moves
    /// past the literal and `hint` to the next entry. `None` (only whitespace consumed) when none is. The tag is
    /// returned from inside the loop: over a constant table the compiler then goes from each literal straight to
    /// the caller's arm for it (returning the index and looking the tag up again cost 4 % of a format 2 decode).
    #[inline(always)]
    fn predicted_literal<E, T>(
        &mut self,
        order: &[E],
        key: impl Fn(&E) -> &[u8],
        tag: impl Fn(&E) -> T,
        hint: &mut usize,
    ) -> Option<T> {
        if self.peek() != Some(b'"') {
            self.ws();
        }
        let rest = self.rest();
        for (i, e) in order.iter().enumerate().skip(*hint) {
            let k = key(e);
            // cheap rejections before the comparison: the first letter and the closing quote's place
            if rest.get(1) == k.get(1) && rest.get(k.len().wrapping_sub(2)) == Some(&b'"') && starts_with_short(rest, k)
            {
                *hint = i + 1;
                self.pos += k.len();
                return Some(tag(e));
            }
        }
        None
    }

    /// Any scalar column value.
    #[inline(always)]
    pub(crate) fn value(&mut self) -> Result<Value<'a>> {
        match self.peek() {
            Some(b'"') => return self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => return self.number().map(|n| Value::Number(Cow::Borrowed(n))),
            _ => {}
        }
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(Value::String),
            Some(b'n') if self.eat_null() => Ok(Value::Null),
            Some(b't' | b'f') => self.boolean().map(Value::Bool),
            Some(b'-' | b'0'..=b'9') => self.number().map(|n| Value::Number(Cow::Borrowed(n))),
            _ => Err(self.err("expected a value")),
        }
    }

    /// Skip any JSON value (for keys this decoder does not know), with bounded nesting.
    pub(crate) fn skip_value(&mut self) -> Result<()> {
        // bit i of `stack` is 1 when the container at depth i+1 (from the innermost) is an object
        let mut stack: u64 = 0;
        let mut depth = 0usize;
        loop {
            self.ws();
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    if depth >= MAX_DEPTH {
                        return Err(self.err("nesting too deep"));
                    }
                    let obj = c == b'{';
                    stack = (stack << 1) | u64::from(obj);
                    depth += 1;
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(if obj { b'}' } else { b']' }) {
                        self.pos += 1;
                        depth -= 1;
                        stack >>= 1;
                    } else {
                        if obj {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string_span()?;
                }
                Some(b'n') if self.eat_null() => {}
                Some(b't' | b'f') => {
                    self.boolean()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                _ => return Err(self.err("expected a value")),
            }
            // after a value: close containers or go on to the next element
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.ws();
                let obj = stack & 1 == 1;
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if obj {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if obj => {
                        self.pos += 1;
                        depth -= 1;
                        stack >>= 1;
                    }
                    Some(b']') if !obj => {
                        self.pos += 1;
                        depth -= 1;
                        stack >>= 1;
                    }
                    _ => return Err(self.err("expected ',' or a closing bracket")),
                }
            }
        }
    }
}

/// Position of the first `"` at or after `i` (backslashes are not escapes here).
#[inline]
fn find_quote(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let j = find_quote_or_backslash(b, i)?;
        if b.get(j) == Some(&b'"') {
            return Some(j);
        }
        i = j + 1;
    }
}

fn skip_ws_at(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(c) if is_ws(*c)) {
        i += 1;
    }
    i
}

/// `std::str::from_utf8(b).ok()`, for the whole payload up front: 32 bytes at a time while they are ASCII
/// (most of wal2json's output), and std's own check for every character that is not. std validated the
/// format 2 workload at ~0.8 instructions per byte, 7 % of its decoding; its word-at-a-time fast path stops
/// at every non-ASCII character (one per row there).
#[inline]
pub(crate) fn utf8(b: &[u8]) -> Option<&str> {
    #[cfg(target_arch = "x86_64")]
    {
        // (std caches the CPU's features: one load and test per call)
        let valid = if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (just checked), all `utf8_valid_avx2` requires.
            unsafe { utf8_valid_avx2(b) }
        } else {
            utf8_valid_sse2(b)
        };
        if valid {
            // the fuzz targets run with debug assertions: any disagreement with std is a finding
            debug_assert!(std::str::from_utf8(b).is_ok());
            // SAFETY: utf8_valid_sse2 returns true only for valid UTF-8 (see there).
            return Some(unsafe { std::str::from_utf8_unchecked(b) });
        }
        None
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::str::from_utf8(b).ok()
    }
}

/// Whether `b` is valid UTF-8. The input is covered left to right by (1) runs of bytes below 0x80 (each a valid
/// one-byte character) found 32 at a time; (2) at the first byte of 0x80 or above that such a block shows, one
/// character: a two-byte one checked here (lead 0xC2-0xDF, then a continuation byte 0x80-0xBF: the whole rule
/// for two bytes), a longer one accepted only if `std::str::from_utf8` accepts the 3 or 4 bytes its lead
/// announces; (3) the last fewer-than-32 bytes: below 0x80 if the input's last 32 bytes are (the loop stops
/// within 32 bytes of the end), else checked by `std::str::from_utf8`. A concatenation of valid UTF-8 strings is
/// valid UTF-8, and a byte that cannot start a character (a continuation byte, 0xC0, 0xC1, 0xF5-0xFF) fails.
#[cfg(target_arch = "x86_64")]
fn utf8_valid_sse2(b: &[u8]) -> bool {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128};
    let n = b.len();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n, so both unaligned 16-byte loads read inside `b`; SSE2 is part of x86_64.
        let (lo, hi) = unsafe {
            let p = b.as_ptr().add(i);
            (
                _mm_movemask_epi8(_mm_loadu_si128(p.cast::<__m128i>())) as u32,
                _mm_movemask_epi8(_mm_loadu_si128(p.add(16).cast::<__m128i>())) as u32,
            )
        };
        let high = lo | hi << 16;
        if high == 0 {
            i += 32;
            continue;
        }
        match char_after(b, i + high.trailing_zeros() as usize) {
            Some(next) => i = next,
            None => return false,
        }
    }
    if i < n && n >= 32 {
        // The last 32 bytes, overlapping what was checked: all below 0x80 means the rest is too.
        // SAFETY: n >= 32, so both loads read inside `b`.
        let high = unsafe {
            let p = b.as_ptr().add(n - 32);
            _mm_movemask_epi8(_mm_or_si128(_mm_loadu_si128(p.cast::<__m128i>()), _mm_loadu_si128(p.add(16).cast())))
        };
        if high == 0 {
            return true;
        }
    }
    b.get(i..).is_some_and(|rest| std::str::from_utf8(rest).is_ok())
}

/// The index after the multi-byte character whose lead byte is `b[i]`, or `None` when no valid character
/// starts there: two-byte characters checked here, longer ones by `std::str::from_utf8` on the 3 or 4 bytes the
/// lead announces.
#[inline(always)]
fn char_after(b: &[u8], i: usize) -> Option<usize> {
    let w = match b.get(i) {
        Some(0xC2..=0xDF) => {
            return matches!(b.get(i + 1), Some(0x80..=0xBF)).then_some(i + 2);
        }
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF4) => 4,
        _ => return None,
    };
    match b.get(i..i + w) {
        Some(ch) if std::str::from_utf8(ch).is_ok() => Some(i + w),
        _ => None,
    }
}

/// [`utf8_valid_sse2`] 64 bytes at a time with AVX2 while they are ASCII: a quarter of the instructions per
/// ASCII byte. It stops at a character boundary (after an all-ASCII block or a whole character) within 64
/// bytes of the end, and the SSE2 check takes the rest from there (valid UTF-8 pieces make valid UTF-8).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn utf8_valid_avx2(b: &[u8]) -> bool {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_movemask_epi8};
    let n = b.len();
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n, so both unaligned 32-byte loads read inside `b`; AVX2 is the caller's contract.
        let (lo, hi) = unsafe {
            let p = b.as_ptr().add(i);
            (
                _mm256_movemask_epi8(_mm256_loadu_si256(p.cast::<__m256i>())) as u32 as u64,
                _mm256_movemask_epi8(_mm256_loadu_si256(p.add(32).cast::<__m256i>())) as u32 as u64,
            )
        };
        let high = lo | hi << 32;
        if high == 0 {
            i += 64;
            continue;
        }
        match char_after(b, i + high.trailing_zeros() as usize) {
            Some(next) => i = next,
            None => return false,
        }
    }
    b.get(i..).is_some_and(utf8_valid_sse2)
}

/// `a.starts_with(b)` for a `b` of a few bytes (the keys `predicted_key` tries, the literals of `lit`): two
/// overlapping word comparisons instead of a `memcmp` call or a byte-wise loop.
#[inline(always)]
fn starts_with_short(a: &[u8], b: &[u8]) -> bool {
    let n = b.len();
    let word = |s: &[u8], at: usize| s.get(at..at + 8).and_then(|w| w.try_into().ok()).map(u64::from_ne_bytes);
    let half = |s: &[u8], at: usize| s.get(at..at + 4).and_then(|w| w.try_into().ok()).map(u32::from_ne_bytes);
    if a.len() < n {
        false
    } else if (8..=16).contains(&n) {
        word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
    } else if (4..8).contains(&n) {
        half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
    } else {
        a.starts_with(b)
    }
}

/// `s.get(start..end)`, inlined: the standard one was an out-of-line call per string on the hot path.
#[inline(always)]
fn str_get(s: &str, start: usize, end: usize) -> Option<&str> {
    let b = s.as_bytes();
    // A char boundary: the end, or a byte that is not a UTF-8 continuation byte (0b10xx_xxxx).
    let boundary = |i: usize| i == b.len() || b.get(i).is_some_and(|&c| (c as i8) >= -0x40);
    if start <= end && end <= b.len() && boundary(start) && boundary(end) {
        // SAFETY: `start..end` is in bounds and both ends are on char boundaries (checked just above), which is
        // all `str::get_unchecked` requires.
        Some(unsafe { s.get_unchecked(start..end) })
    } else {
        None
    }
}

/// The quirk-aware readers for the parts of wal2json output that are not always valid JSON.
impl<'a> Cursor<'a> {
    /// A type name. wal2json prints `format_type()` output raw when it starts with a quote (and is not an
    /// array): `"MySchema".mood`, `"we""ird"`. Rule: read a JSON string; if what follows is not `,` `}` `]`,
    /// re-read from the opening quote as raw `format_type` text (quoted identifiers with `""` doubling, dots,
    /// a parenthesized typmod) up to the next `,` `}` `]` outside quotes and parentheses.
    #[inline(always)]
    pub(crate) fn type_name(&mut self) -> Result<Cow<'a, str>> {
        // Fast path, wal2json's usual output: a string without escapes right here, then `,` `}` or `]`.
        if let Some((start, end)) = self.plain_type_name() {
            self.pos = end + 1;
            return self.str_range(start, end).map(Cow::Borrowed);
        }
        self.type_name_slow()
    }

    /// [`Cursor::type_name`] stored straight into `dst` as `Some` (see [`Cursor::string_into`]).
    #[inline(always)]
    pub(crate) fn type_name_into(&mut self, dst: &mut Option<Cow<'a, str>>) -> Result<()> {
        if let Some((start, end)) = self.plain_type_name() {
            self.pos = end + 1;
            *dst = Some(Cow::Borrowed(self.str_range(start, end)?));
            return Ok(());
        }
        *dst = Some(self.type_name_slow()?);
        Ok(())
    }

    #[inline(never)]
    fn type_name_slow(&mut self) -> Result<Cow<'a, str>> {
        self.ws();
        let start = self.pos;
        let mut c = *self;
        if let Ok((s, e, false)) = c.string_span() {
            if matches!(c.peek(), Some(b',' | b'}' | b']')) {
                *self = c;
                return Ok(Cow::Borrowed(self.str_range(s, e)?));
            }
        }
        let mut c = *self;
        if let Ok(s) = c.string() {
            let t = skip_ws_at(c.b, c.pos);
            if matches!(c.b.get(t), Some(b',' | b'}' | b']')) {
                *self = c;
                return Ok(s);
            }
        }
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a type name"));
        }
        // the JSON reading above was wasted: charge it, and the raw reading below
        self.charge(c.pos.saturating_sub(start))?;
        let mut i = start;
        let mut quoted = false;
        let mut parens = 0usize;
        loop {
            let ch = *self.b.get(i).ok_or_else(|| self.err_at(start, "unterminated type name"))?;
            if quoted {
                if ch == b'"' {
                    if self.b.get(i + 1) == Some(&b'"') {
                        i += 1;
                    } else {
                        quoted = false;
                    }
                }
            } else {
                match ch {
                    b'"' => quoted = true,
                    b'(' => parens += 1,
                    b')' => parens = parens.saturating_sub(1),
                    b',' | b'}' | b']' if parens == 0 => break,
                    _ => {}
                }
            }
            i += 1;
        }
        self.charge(i - start)?;
        let mut end = i;
        while end > start && self.b.get(end - 1).is_some_and(|c| is_ws(*c)) {
            end -= 1;
        }
        self.pos = end;
        Ok(Cow::Borrowed(self.str_range(start, end)?))
    }

    /// Format 2 `"default"`, the last key of a column object; wal2json 2.5 prints the expression without
    /// escaping (`"'a"b\c'::text"`). Rule: if it reads as a JSON string followed by the column's closing `}`
    /// and then `,` or `]`, it is that string (unescaped). Otherwise it is the raw text up to the first `"`
    /// followed by `}` and then `,{` or `]`.
    /// `null` is [`Nullable::Null`] (a column without a default).
    pub(crate) fn default_v2(&mut self) -> Result<Nullable<Cow<'a, str>>> {
        if self.eat_null() {
            return Ok(Nullable::Null);
        }
        self.ws();
        let open = self.pos;
        let mut c = *self;
        let json = c.string();
        if let Ok(s) = &json {
            if v2_default_end_ok(c.b, c.pos) {
                *self = c;
                return Ok(Nullable::Value(s.clone()));
            }
        }
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a default expression"));
        }
        self.charge(c.pos.saturating_sub(open))?;
        for strict in [true, false] {
            let mut i = open + 1;
            let mut lex = Quotes::new(open + 1);
            while let Some(q) = find_quote(self.b, i) {
                self.charge(q + 1 - i)?;
                if v2_default_end_ok(self.b, q + 1) && {
                    lex.advance(self.b, q);
                    !strict || lex.balanced()
                } {
                    self.pos = q + 1;
                    return Ok(Nullable::Value(Cow::Borrowed(self.str_range(open + 1, q)?)));
                }
                i = q + 1;
            }
            self.charge(self.b.len().saturating_sub(i))?;
        }
        match json {
            Ok(s) => {
                *self = c;
                Ok(Nullable::Value(s))
            }
            Err(e) => Err(e),
        }
    }

    /// Format 1 `columndefaults`: fills `set(i, default)` for each of the `n` entries. Read as JSON when that
    /// gives exactly `n` entries; otherwise split the unescaped text into exactly `n` entries (`null` or
    /// `"…"`), choosing the earliest closing quotes that allow a complete split (bounded backtracking). A `null`
    /// entry (a column without a default) is [`Nullable::Null`].
    pub(crate) fn defaults_v1(
        &mut self,
        n: usize,
        mut set: impl FnMut(usize, Nullable<Cow<'a, str>>) -> Result<()>,
    ) -> Result<()> {
        self.require(b'[', "expected '['")?;
        let open = self.pos;
        // 1. as JSON
        let mut c = *self;
        let mut count = 0usize;
        let json_ok = (|| -> Result<bool> {
            if c.eat(b']') {
                return Ok(true);
            }
            loop {
                c.opt_string()?;
                count += 1;
                if c.eat(b']') {
                    return Ok(true);
                }
                if !c.eat(b',') {
                    return Ok(false);
                }
            }
        })()
        .unwrap_or(false);
        if json_ok && count == n {
            let mut i = 0;
            if self.eat(b']') {
                return Ok(());
            }
            loop {
                set(i, self.nullable_string()?)?;
                i += 1;
                if self.eat(b']') {
                    return Ok(());
                }
                self.require(b',', "expected ','")?;
            }
        }
        // 2. raw split into exactly n entries: first with every entry a plausible SQL expression (balanced
        //    quotes), then without that filter
        if n == 0 {
            return Err(self.err_at(open, "columndefaults does not match columnnames"));
        }
        self.charge(c.pos.saturating_sub(open))?;
        let mut work = self.work;
        let split = match split_defaults(self.b, open, n, true, &mut work) {
            Some(r) => Some(r),
            None => split_defaults(self.b, open, n, false, &mut work),
        };
        self.work = work;
        let (stack, end) = split.ok_or_else(|| self.err_at(open, "cannot split columndefaults"))?;
        self.pos = end;
        for (i, (s, e)) in stack.into_iter().enumerate() {
            if self.b.get(s) == Some(&b'"') {
                set(i, Nullable::Value(Cow::Borrowed(self.str_range(s + 1, e)?)))?;
            } else {
                set(i, Nullable::Null)?;
            }
        }
        Ok(())
    }
}

/// Split the unescaped `columndefaults` text starting after `[` at `open` into exactly `n` entries. Returns the
/// (start, end) of each entry (start at `"` or `n` of null; end at the closing quote or after `null`) and the
/// position after `]`.
fn split_defaults(
    b: &[u8],
    open: usize,
    n: usize,
    strict: bool,
    work: &mut usize,
) -> Option<(Vec<(usize, usize)>, usize)> {
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut resume: Option<usize> = None;
    let mut pos = open;
    // bytes scanned or lexed, over all the backtracking, come out of the payload's quirk budget
    loop {
        *work = work.checked_sub(1)?;
        let i = stack.len();
        let last = i + 1 == n;
        let es = skip_ws_at(b, pos);
        let found = if b.get(es..).is_some_and(|r| r.starts_with(b"null")) {
            if resume.is_none() && entry_end_ok(b, es + 4, last) {
                Some(es + 4)
            } else {
                None
            }
        } else if b.get(es) == Some(&b'"') {
            let mut k = resume.map_or(es + 1, |r| r.saturating_add(1));
            let mut lex = Quotes::new(es + 1);
            let mut hit = None;
            loop {
                let Some(q) = find_quote(b, k) else {
                    *work = work.checked_sub(b.len().saturating_sub(k))?;
                    break;
                };
                *work = work.checked_sub(q + 1 - k)?;
                if entry_end_ok(b, q + 1, last) {
                    if !strict {
                        hit = Some(q);
                        break;
                    }
                    *work = work.checked_sub(q.saturating_sub(lex.pos))?;
                    lex.advance(b, q);
                    if lex.balanced() {
                        hit = Some(q);
                        break;
                    }
                }
                k = q + 1;
            }
            hit
        } else {
            None
        };
        resume = None;
        match found {
            Some(end) => {
                stack.push((es, end));
                let quoted = b.get(es) == Some(&b'"');
                let p = skip_ws_at(b, if quoted { end + 1 } else { end });
                // entry_end_ok guarantees the `,` (or, for the last entry, the `]`) at `p`
                if last {
                    return Some((stack, p + 1));
                }
                pos = p + 1;
            }
            None => {
                // backtrack: the previous entry's next closing quote (a `null` has no other choice)
                let (ps, pe) = stack.pop()?;
                pos = ps;
                resume = Some(if b.get(ps) == Some(&b'"') { pe } else { usize::MAX - 1 });
            }
        }
    }
}

/// Whether SQL text could be `pg_get_expr` output: its `'…'` literals (with `''`) and `"…"` identifiers (with
/// `""`) are all closed. Advanced incrementally over increasing end positions, so that trying every candidate
/// end of one entry costs one pass.
struct Quotes {
    pos: usize,
    /// 0: outside quotes; 1: inside `quote`; 2: just after a `quote` that closes unless doubled
    state: u8,
    quote: u8,
}

impl Quotes {
    fn new(start: usize) -> Self {
        Quotes { pos: start, state: 0, quote: 0 }
    }

    fn advance(&mut self, b: &[u8], to: usize) {
        while self.pos < to {
            let Some(&ch) = b.get(self.pos) else { return };
            self.pos += 1;
            if self.state == 2 {
                if ch == self.quote {
                    self.state = 1;
                    continue;
                }
                self.state = 0;
            }
            match self.state {
                0 if ch == b'\'' || ch == b'"' => {
                    self.state = 1;
                    self.quote = ch;
                }
                1 if ch == self.quote => self.state = 2,
                _ => {}
            }
        }
    }

    /// Balanced up to the current position (a quote just closed counts as closed).
    fn balanced(&self) -> bool {
        self.state != 1
    }
}

/// After a v2 default's closing quote at `p`: `}` then `,` or `]`.
fn v2_default_end_ok(b: &[u8], p: usize) -> bool {
    let p = skip_ws_at(b, p);
    if b.get(p) != Some(&b'}') {
        return false;
    }
    let p = skip_ws_at(b, p + 1);
    match b.get(p) {
        Some(b']') => true,
        Some(b',') => b.get(skip_ws_at(b, p + 1)) == Some(&b'{'),
        _ => false,
    }
}

/// After a v1 defaults entry ending at `p`: `,` and the start of another entry, or (for the last entry) `]`
/// followed by `,"columnvalues"`.
fn entry_end_ok(b: &[u8], p: usize, last: bool) -> bool {
    let p = skip_ws_at(b, p);
    if last {
        if b.get(p) != Some(&b']') {
            return false;
        }
        // wal2json prints `columnvalues` right after `columndefaults`
        let p = skip_ws_at(b, p + 1);
        return match b.get(p) {
            Some(b',') => b.get(skip_ws_at(b, p + 1)..).is_some_and(|r| r.starts_with(b"\"columnvalues\"")),
            _ => false,
        };
    }
    if b.get(p) != Some(&b',') {
        return false;
    }
    let p = skip_ws_at(b, p + 1);
    b.get(p) == Some(&b'"') || b.get(p..).is_some_and(|r| r.starts_with(b"null"))
}

/// End of the JSON number starting at `i` (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
#[inline(always)]
pub(crate) fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digit = |i: usize| matches!(b.get(i), Some(b'0'..=b'9'));
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            i += 1;
            while digit(i) {
                i += 1;
            }
        }
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digit(i) {
            return None;
        }
        while digit(i) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digit(i) {
            return None;
        }
        while digit(i) {
            i += 1;
        }
    }
    Some(i)
}

/// Whether `s` is exactly one JSON number.
pub(crate) fn is_json_number(s: &[u8]) -> bool {
    number_end(s, 0) == Some(s.len())
}

/// The 16 bytes at `i` and the bit mask of their quotes and backslashes (bit k: byte k), or `None` when fewer
/// than 16 bytes are left.
#[inline(always)]
fn block_mask(b: &[u8], i: usize) -> Option<(&[u8; 16], u32)> {
    let block: &[u8; 16] = i.checked_add(16).and_then(|e| b.get(i..e)).and_then(|s| s.try_into().ok())?;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `block` is 16 readable bytes.
        Some((block, unsafe { sse2_quote_mask(block.as_ptr()) }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = 0u32;
        for (k, &c) in block.iter().enumerate() {
            if c == b'"' || c == b'\\' {
                m |= 1 << k;
            }
        }
        Some((block, m))
    }
}

/// Position of the first `"` or `\` at or after `i`.
#[inline(always)]
pub(crate) fn find_quote_or_backslash(b: &[u8], i: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        sse2_find(b, i)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        swar_find(b, i)
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn sse2_find(b: &[u8], mut i: usize) -> Option<usize> {
    let len = b.len();
    if len < 16 {
        return swar_find(b, i);
    }
    let last = len - 16;
    // SAFETY: every mask reads the 16 bytes at an offset `o <= len - 16` of `b`: `i` while `i <= last`, then
    // `last` itself.
    let mask = |o: usize| unsafe { sse2_quote_mask(b.as_ptr().add(o)) };
    while i <= last {
        let m = mask(i);
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    if i < len {
        // the tail: the payload's last 16 bytes, without the bits before `i`
        let m = mask(last) >> (i - last);
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
    }
    None
}

/// Bit k set when byte k of the 16 bytes at `p` is `"` or `\`.
///
/// # Safety
/// `p` must point to 16 readable bytes. (SSE2 itself is part of the x86_64 baseline.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sse2_quote_mask(p: *const u8) -> u32 {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
    let v = _mm_loadu_si128(p as *const __m128i);
    let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let bs = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    _mm_movemask_epi8(_mm_or_si128(q, bs)) as u32
}

#[inline(always)]
fn swar_find(b: &[u8], mut i: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = i.checked_add(8).and_then(|e| b.get(i..e)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let xq = w ^ (LO * u64::from(b'"'));
        let xb = w ^ (LO * u64::from(b'\\'));
        let m = (xq.wrapping_sub(LO) & !xq & HI) | (xb.wrapping_sub(LO) & !xb & HI);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let mut v = 0u32;
    for k in 0..4 {
        let c = *b.get(at + k)?;
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | d;
    }
    Some(v)
}

/// Unescape JSON string content `src` (which starts at payload offset `base`) onto `out`.
pub(crate) fn unescape(src: &[u8], base: usize, out: &mut Vec<u8>) -> Result<()> {
    let mut i = 0;
    loop {
        let Some(j) = find_backslash(src, i) else {
            out.extend_from_slice(src.get(i..).unwrap_or(&[]));
            return Ok(());
        };
        out.extend_from_slice(src.get(i..j).unwrap_or(&[]));
        i = escape_at(src, j, base, out)?;
    }
}

/// The first `\` at or after `i` (a `"` found on the way is content).
#[inline(always)]
fn find_backslash(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let j = find_quote_or_backslash(b, i)?;
        if b.get(j) == Some(&b'\\') {
            return Some(j);
        }
        i = j + 1;
    }
}

/// Decode the escape sequence at `b[j]` (a backslash) onto `out`; returns the index after it. `base` is added to
/// positions in errors.
#[inline]
pub(crate) fn escape_at(b: &[u8], j: usize, base: usize, out: &mut Vec<u8>) -> Result<usize> {
    let (ch, next) = escape_char(b, j, base)?;
    let mut buf = [0u8; 4];
    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    Ok(next)
}

/// The character of the escape sequence at `b[j]` (a backslash) and the index after it.
#[inline]
pub(crate) fn escape_char(b: &[u8], j: usize, base: usize) -> Result<(char, usize)> {
    let bad = || Error::decode(base + j, "invalid escape in string");
    let c = *b.get(j + 1).ok_or_else(bad)?;
    let simple = match c {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(b, j + 2).ok_or_else(bad)?;
            let mut i = j + 6;
            let cp = if (0xD800..0xDC00).contains(&hi) {
                if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                    return Err(bad());
                }
                let lo = hex4(b, i + 2).ok_or_else(bad)?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return Err(bad());
                }
                i += 6;
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            } else if (0xDC00..0xE000).contains(&hi) {
                return Err(bad());
            } else {
                hi
            };
            return Ok((char::from_u32(cp).ok_or_else(bad)?, i));
        }
        _ => return Err(bad()),
    };
    Ok((simple, j + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_quotes() {
        let s = b"abcdefghijklmnopqrstuvwxyz\"0123456789";
        assert_eq!(find_quote_or_backslash(s, 0), Some(26));
        assert_eq!(swar_find(s, 0), Some(26));
        for n in 0..40 {
            let mut v = vec![b'a'; n];
            v.push(b'\\');
            v.extend_from_slice(b"xx\"");
            assert_eq!(find_quote_or_backslash(&v, 0), Some(n));
            assert_eq!(swar_find(&v, 0), Some(n));
            assert_eq!(find_quote_or_backslash(&v, n + 1), Some(n + 3));
        }
        assert_eq!(find_quote_or_backslash(b"abc", 0), None);
        assert_eq!(find_quote_or_backslash(b"abc", 10), None);
    }

    /// `string_in` (pooled, block-wise unescaping) agrees with the reference `unescape` on every escape at every
    /// position around the 16-byte blocks, and rejects what it rejects.
    #[test]
    fn pooled_unescaping_matches_reference() {
        let escapes = [r#"\""#, r"\\", r"\/", r"\n", r"\t", r"\r", r"\b", r"\f", r"\u00e9", r"\ud83c\udf89", r"\u0041"];
        let mut pool = Vec::new();
        for len in [0usize, 1, 14, 15, 16, 17, 31, 32, 33, 47, 70] {
            for at in 0..=len {
                for e in escapes {
                    for tail in ["", "x", "é", "0123456789abcdef0"] {
                        let body = format!("{}{e}{}{tail}{e}", "a".repeat(at), "b".repeat(len - at));
                        let src = format!("\"{body}\",");
                        let mut c = Cursor::new(src.as_bytes());
                        let got = c.string_in(&mut pool).unwrap();
                        let mut want = Vec::new();
                        unescape(body.as_bytes(), 0, &mut want).unwrap();
                        assert_eq!(got.as_bytes(), &want[..], "{src}");
                        assert_eq!(c.rest(), b",", "{src}");
                        if let Cow::Owned(s) = got {
                            pool.push(s);
                        }
                    }
                }
            }
        }
        for bad in [r#""ab\x""#, r#""ab\"#, r#""a\u12""#, r#""\ud800x""#, r#""\n0123456789abcdef0123"#] {
            assert!(Cursor::new(bad.as_bytes()).string_in(&mut pool).is_err(), "{bad}");
        }
        // not UTF-8 around an escape: refused (the payload was not validated up front)
        let raw = b"\"\\n\xff\xfe0123456789abcdef\"";
        assert!(Cursor::new(raw).string_in(&mut pool).is_err());
    }

    /// The `*_into` readers against the value-returning ones they shortcut: same result, same position after,
    /// errors alike; on validated (`new`) and unvalidated (`raw`) cursors.
    fn check_into(src: &[u8]) {
        /// The value reader's result `want` (cursor `a`) against the `*_into` reader's `r`, `got` (cursor `b`).
        fn same<T: PartialEq + std::fmt::Debug>(
            src: &[u8],
            want: Result<T>,
            r: Result<()>,
            got: T,
            a: usize,
            b: usize,
        ) {
            match want {
                Ok(w) => {
                    assert!(r.is_ok(), "{src:?}");
                    assert_eq!(got, w, "{src:?}");
                    assert_eq!(a, b, "{src:?}");
                }
                Err(_) => assert!(r.is_err(), "{src:?}"),
            }
        }
        for validated in [true, false] {
            let make = |b| if validated { Cursor::new(b) } else { Cursor::raw(b) };
            let mut pool = Vec::new();
            let (mut a, mut b) = (make(src), make(src));
            let want = a.string_in(&mut pool);
            let mut got = Cow::Borrowed("before");
            let r = b.string_into(&mut got, &mut pool);
            same(src, want, r, got, a.pos, b.pos);
            let (mut a, mut b) = (make(src), make(src));
            let want = a.value_in(&mut pool);
            let mut got = Value::Bool(true);
            let r = b.value_into(&mut got, &mut pool);
            same(src, want, r, got, a.pos, b.pos);
            let (mut a, mut b) = (make(src), make(src));
            let want = a.type_name().map(Some);
            let mut got = None;
            let r = b.type_name_into(&mut got);
            same(src, want, r, got, a.pos, b.pos);
        }
    }

    #[test]
    fn starts_with_short_is_starts_with() {
        let a = b"\"timestamp\":\"2026\",0123456789abcdefghij";
        for end in 0..=a.len() {
            for n in 0..=20 {
                let hay = &a[..end];
                for k in [&a[..n.min(a.len())], b"\"timestamq\":\"2026\",01234", b"x\"timestamp\":\"2026\",01234"] {
                    let k = &k[..n.min(k.len())];
                    assert_eq!(starts_with_short(hay, k), hay.starts_with(k), "{hay:?} {k:?}");
                    let mut flipped = k.to_vec();
                    if let Some(last) = flipped.last_mut() {
                        *last ^= 1;
                    }
                    assert_eq!(starts_with_short(hay, &flipped), hay.starts_with(&flipped), "{hay:?} {flipped:?}");
                }
            }
        }
    }

    /// `utf8` against `std::str::from_utf8`: every 1-3 byte sequence and every 4-byte one with a plausible
    /// lead, placed where the 32-byte blocks, the overlapping last block and the short tail each see it.
    #[test]
    fn utf8_matches_std() {
        // compared as booleans: a wrongly accepted input must not be formatted as a &str
        let check = |v: &[u8]| {
            let got = utf8(v);
            let want = std::str::from_utf8(v).is_ok();
            assert_eq!(got.is_some(), want, "{v:?}");
            assert!(got.is_none_or(|s| s.as_bytes() == v));
            // both vector paths, whichever `utf8` picked on this CPU
            #[cfg(target_arch = "x86_64")]
            {
                assert_eq!(utf8_valid_sse2(v), want, "sse2 {v:?}");
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 checked just above
                    assert_eq!(unsafe { utf8_valid_avx2(v) }, want, "avx2 {v:?}");
                }
            }
        };
        let mut seqs: Vec<Vec<u8>> = vec![vec![]];
        for a in 0..=255u8 {
            seqs.push(vec![a]);
            for b in 0..=255u8 {
                seqs.push(vec![a, b]);
            }
        }
        for a in 0xE0..=0xEFu8 {
            for b in 0x70..=0xC8u8 {
                for c in [0x00, 0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF] {
                    seqs.push(vec![a, b, c]);
                }
            }
        }
        for a in 0xEE..=0xF8u8 {
            for b in [0x7F, 0x80, 0x8F, 0x90, 0xBF, 0xC0] {
                for c in [0x7F, 0x80, 0xBF, 0xC0] {
                    for d in [0x7F, 0x80, 0xBF, 0xC0] {
                        seqs.push(vec![a, b, c, d]);
                    }
                }
            }
        }
        let pad = [b'a'; 130];
        for s in &seqs {
            for before in [0usize, 1, 29, 31, 32, 33, 62, 63, 64, 65, 127] {
                for after in [0usize, 1, 30, 40, 70] {
                    let mut v = pad[..before].to_vec();
                    v.extend_from_slice(s);
                    v.extend_from_slice(&pad[..after]);
                    check(&v);
                }
            }
        }
    }

    #[test]
    fn str_get_is_str_get() {
        for s in ["", "a", "é", "aé€𝄞b\"", "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}"] {
            for start in 0..=s.len() + 2 {
                for end in 0..=s.len() + 2 {
                    assert_eq!(str_get(s, start, end), s.get(start..end), "{s:?} {start}..{end}");
                }
            }
        }
    }

    #[test]
    fn into_readers_match_the_value_readers() {
        for src in [
            r#""abc","#,
            r#""abc"}"#,
            r#""abc"]"#,
            r#""abc" ,"#,
            r#""""#,
            r#""","#,
            r#"  "ws","#,
            r#""é","#,
            r#""a\"b","#,
            r#""a\\","#,
            r#""\u00e9x"}"#,
            r#""unterminated"#,
            r#""bad\x","#,
            "1.5,",
            "-0}",
            "null,",
            "true,",
            "false]",
            r#""MySchema".mood,"#,
            r#""we""ird"}"#,
            r#""a"."b"(1,2),"#,
            r#"numeric(12,2)"#,
            "",
            "x",
            r#"""#,
            r#""0123456789abcdef0123","#,
            r#""0123456789abcdef\n0123","#,
        ] {
            check_into(src.as_bytes());
        }
        check_into(b"\"\xff\xfe\",");
        check_into(b"\"ab\xc3\",");
    }

    /// `opt_u64`'s plain-digits fast path gives what the general path (`u64` on the number's text) gives:
    /// the same value or an error, the cursor at the same place.
    #[test]
    fn opt_u64_fast_path_matches_the_general_path() {
        for src in [
            "0,",
            "7}",
            "725,",
            "4294967295,",
            "18446744073709551615,",
            "18446744073709551616,",
            "99999999999999999999999,",
            "01,",
            "00,",
            "1.5,",
            "1e3,",
            "1E3,",
            "2.",
            "-1,",
            "-0,",
            " 5,",
            "5",
            "null,",
            "nul",
            "x",
            "",
        ] {
            let mut fast = Cursor::new(src.as_bytes());
            let got = fast.opt_u64();
            let mut general = Cursor::new(src.as_bytes());
            let want = if general.eat_null() { Ok(None) } else { general.u64().map(Some) };
            assert_eq!(got.is_ok(), want.is_ok(), "{src:?}: {got:?} vs {want:?}");
            if let (Ok(g), Ok(w)) = (got, want) {
                assert_eq!(g, w, "{src:?}");
                assert_eq!(fast.pos, general.pos, "{src:?}");
            }
        }
    }

    /// `string` / `opt_string`'s fast path (a plain string borrowed) against the general path (`string_span`).
    #[test]
    fn plain_string_fast_path_matches_the_general_path() {
        let inputs: [&[u8]; 11] = [
            b"\"abc\",",
            b"\"\",",
            b"\"\xc3\xa9\"}",
            b"\"a\\\"b\",",
            b" \"ws\",",
            b"\"open",
            b"\"\xff\",",
            b"\"ab\xc3\",",
            b"null,",
            b"\"\xe6\x97\xa5\xe6\x9c\xac\"]",
            b"\"0123456789abcdef0123456789abcdef\",",
        ];
        for src in inputs {
            let mut fast = Cursor::new(src);
            let got = fast.string().map(|c| c.into_owned());
            let mut general = Cursor::new(src);
            let want = general.string_span().and_then(|(s, e, _)| {
                let mut out = Vec::new();
                unescape(general.bytes_range(s, e), s, &mut out)?;
                String::from_utf8(out).map_err(|_| Error::decode(s, "not UTF-8"))
            });
            assert_eq!(got.is_ok(), want.is_ok(), "{src:?}: {got:?} vs {want:?}");
            if let (Ok(g), Ok(w)) = (&got, &want) {
                assert_eq!(g, w, "{src:?}");
                assert_eq!(fast.pos, general.pos, "{src:?}");
            }
            let mut opt = Cursor::new(src);
            let got_opt = opt.opt_string().map(|o| o.map(|c| c.into_owned()));
            match src {
                b"null," => assert!(matches!(got_opt, Ok(None))),
                _ => assert_eq!(got_opt.ok().flatten(), got.ok(), "{src:?}"),
            }
        }
    }

    proptest::proptest! {
        /// `utf8` against `std::str::from_utf8` on mixed ASCII and multi-byte input, valid or not.
        #[test]
        fn utf8_matches_std_on_anything(v in proptest::collection::vec(proptest::sample::select(
            vec![b'a', b'"', 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x8e, 0x89, 0x80, 0xbf, 0xff]), 0..120)) {
            let got = utf8(&v);
            proptest::prop_assert_eq!(got.is_some(), std::str::from_utf8(&v).is_ok());
            proptest::prop_assert!(got.is_none_or(|s| s.as_bytes() == &v[..]));
        }

        /// The `*_into` readers agree with the value readers on arbitrary input, string-shaped or not.
        #[test]
        fn into_readers_match_on_anything(v in proptest::collection::vec(proptest::sample::select(
            vec![b'a', b'"', b'\\', b'n', b'u', b'0', b',', b'}', b'.', b'(', b' ', 0xc3, 0xa9, 0xff]), 0..40)) {
            let mut src = vec![b'"'];
            src.extend_from_slice(&v);
            check_into(&src);
            check_into(&v);
        }

        /// The SIMD/SWAR search (blocks, the overlapping last block, short inputs) agrees with a plain scan from
        /// every start position, including past the end.
        #[test]
        fn find_matches_naive(v in proptest::collection::vec(proptest::sample::select(vec![b'a', b'"', b'\\', 0xc3, b' ']), 0..80),
                              start in 0usize..90) {
            let naive = v.iter().skip(start).position(|&c| c == b'"' || c == b'\\').map(|k| k + start);
            proptest::prop_assert_eq!(find_quote_or_backslash(&v, start), naive);
            proptest::prop_assert_eq!(swar_find(&v, start), naive);
        }
    }

    #[test]
    fn numbers() {
        for ok in [
            "0",
            "-0",
            "1",
            "0.0000000001",
            "123456789012345678901234567890.123456789",
            "3.4028235e+38",
            "-9223372036854775808",
            "1e-300",
            "1E5",
        ] {
            assert!(is_json_number(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "-", "01", "1.", ".5", "1e", "1e+", "+1", "NaN", "1.e5", "--1"] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn unescapes() {
        let mut out = Vec::new();
        unescape(br#"a\"b\\c\/\b\f\n\r\t\u0001\u00e9\ud83c\udf89"#, 0, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\"b\\c/\u{8}\u{c}\n\r\t\u{1}é🎉");
        for bad in [r"\x", r"\u12", r"\ud800", r"\udc00", r"\ud800\u0041", "\\"] {
            let mut out = Vec::new();
            assert!(unescape(bad.as_bytes(), 0, &mut out).is_err(), "{bad}");
        }
    }

    #[test]
    fn skip_values() {
        let src = br#"{"a":[1,{"b":"x\"]"},null,true],"c":{}} ,"#;
        let mut c = Cursor::new(src);
        c.skip_value().unwrap();
        assert_eq!(c.rest(), b" ,");
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(Cursor::new(deep.as_bytes()).skip_value().is_err());
        assert!(Cursor::new(b"[1,2").skip_value().is_err());
    }
}
