//! Format 1: one document per transaction (`{"xid":…,"change":[…]}`), compact or pretty-printed, whole or
//! written in chunks. This module reads the pieces; [`super::decoder`] strings them together.

use std::borrow::Cow;

use crate::error::Result;

use super::scan::Cursor;
use super::Scratch;
use crate::event::{Change, Column, Event, Message, Nullable, PkColumn, Transaction, Truncate, Value};

/// The document header, from `{` up to and including `"change":[`. Keys other than xid/nextlsn/timestamp/origin
/// are skipped.
pub(crate) fn header<'a>(cur: &mut Cursor<'a>) -> Result<Transaction<'a>> {
    cur.require(b'{', "expected '{'")?;
    let mut t = Transaction::default();
    loop {
        let key = cur.key()?;
        if key == b"change" {
            cur.require(b'[', "expected '[' after \"change\"")?;
            return Ok(t);
        }
        header_key(cur, key, &mut t)?;
        cur.require(b',', "expected ',' (a document needs a \"change\" array)")?;
    }
}

fn header_key<'a>(cur: &mut Cursor<'a>, key: &[u8], t: &mut Transaction<'a>) -> Result<()> {
    match key {
        b"xid" => t.xid = cur.opt_u64()?,
        b"nextlsn" => t.next_lsn = cur.opt_lsn()?,
        b"timestamp" => t.timestamp = cur.opt_string()?,
        b"origin" => t.origin = cur.opt_u32()?,
        _ => cur.skip_value()?,
    }
    Ok(())
}

/// After the change array's `]`: any further header keys, then `}` and the end of the payload.
pub(crate) fn trailer<'a>(cur: &mut Cursor<'a>, t: &mut Transaction<'a>) -> Result<()> {
    while cur.eat(b',') {
        let key = cur.key()?;
        header_key(cur, key, t)?;
    }
    cur.require(b'}', "expected '}' after the change array")?;
    if !cur.at_end() {
        return Err(cur.err("trailing characters after the document"));
    }
    Ok(())
}

/// Whether the first element of the change array at the cursor is a non-transactional message (a
/// `{"change":[{"kind":"message","transactional":false,…}]}` document, which is not a transaction).
pub(crate) fn starts_nontx_message(cur: &Cursor<'_>) -> bool {
    let mut c = *cur;
    c.eat(b',');
    if !c.eat(b'{') {
        return false;
    }
    let mut kind_message = false;
    let mut nontx = false;
    for _ in 0..2 {
        let Ok(key) = c.key() else { return false };
        match key {
            b"kind" => {
                let Ok((s, e, _)) = c.string_span() else {
                    return false;
                };
                kind_message = c.bytes_range(s, e) == b"message";
            }
            b"transactional" => nontx = matches!(c.boolean(), Ok(false)),
            _ => return false,
        }
        if !c.eat(b',') {
            break;
        }
    }
    kind_message && nontx
}

/// The i-th column, appending a placeholder when the array is longer than the ones before it.
#[inline]
fn slot<'a, 'v>(cur: &Cursor<'_>, cols: &'v mut Vec<Column<'a>>, i: usize) -> Result<&'v mut Column<'a>> {
    if i == cols.len() {
        return Ok(super::push_in_place(cols, || Column::new("", Value::Null)));
    }
    cols.get_mut(i).ok_or_else(|| cur.err("column arrays of different lengths"))
}

/// `[e0, e1, …]`, calling `f(cursor, index)` for each element; returns the count.
#[inline]
fn array<'a>(cur: &mut Cursor<'a>, mut f: impl FnMut(&mut Cursor<'a>, usize) -> Result<()>) -> Result<usize> {
    cur.require(b'[', "expected '['")?;
    if cur.eat(b']') {
        return Ok(0);
    }
    let mut i = 0;
    loop {
        f(cur, i)?;
        i += 1;
        if cur.eat(b',') {
            continue;
        }
        cur.require(b']', "expected ',' or ']'")?;
        return Ok(i);
    }
}

/// An array that sets one attribute of each column; its length must match the other arrays.
fn column_array<'a>(
    cur: &mut Cursor<'a>,
    cols: &mut Vec<Column<'a>>,
    mut set: impl FnMut(&mut Cursor<'a>, &mut Column<'a>) -> Result<()>,
) -> Result<()> {
    let at = cur.pos;
    let before = cols.len();
    let n = array(cur, |c, i| {
        let col = slot(c, cols, i)?;
        set(c, col)
    })?;
    if (before != 0 || n < cols.len()) && n != before {
        return Err(cur.err_at(at, "column arrays of different lengths"));
    }
    Ok(())
}

/// Where the array at the cursor starts (after whitespace).
fn array_start(cur: &mut Cursor<'_>) -> usize {
    cur.ws();
    cur.pos
}

/// The spans of the strings of the last `columnnames` (or `columntypes`) array of this payload, relative to its
/// `[`. The changes of one transaction repeat the same arrays: when the bytes are the same, the strings are taken
/// from the recorded spans instead of being scanned again. Reset for every payload.
#[derive(Default)]
pub(crate) struct ArrayCache {
    valid: bool,
    start: usize,
    len: usize,
    spans: Vec<(usize, usize)>,
}

impl ArrayCache {
    pub(crate) fn reset(&mut self) {
        self.valid = false;
    }

    /// Record the array that spans `at..cur.pos` if every string in it is borrowed from the payload.
    fn record<'s, 'a: 's>(&mut self, cur: &Cursor<'a>, at: usize, strings: impl Iterator<Item = &'s Cow<'a, str>>) {
        self.valid = false;
        self.spans.clear();
        let base = cur.b.as_ptr() as usize;
        for s in strings {
            let Cow::Borrowed(s) = s else { return };
            let Some(off) = (s.as_ptr() as usize).checked_sub(base + at) else { return };
            self.spans.push((off, off + s.len()));
        }
        if self.spans.len() > 4096 {
            return;
        }
        self.start = at;
        self.len = cur.pos - at;
        self.valid = true;
    }

    /// If the array at the cursor has the same bytes as the recorded one: the start of the array, with the cursor
    /// moved past it.
    fn matches(&self, cur: &mut Cursor<'_>) -> Option<usize> {
        if !self.valid {
            return None;
        }
        let at = array_start(cur);
        let prev = cur.b.get(self.start..self.start + self.len)?;
        let now = cur.b.get(at..at + self.len)?;
        if prev != now {
            return None;
        }
        cur.pos = at + self.len;
        Some(at)
    }
}

fn names_from_cache<'a>(cur: &mut Cursor<'a>, cache: &ArrayCache, cols: &mut Vec<Column<'a>>) -> Result<bool> {
    let Some(at) = cache.matches(cur) else { return Ok(false) };
    for &(s, e) in &cache.spans {
        let name = cur.str_range(at + s, at + e)?;
        super::push_in_place(cols, || Column::new(Cow::Borrowed(name), Value::Null));
    }
    Ok(true)
}

fn types_from_cache<'a>(cur: &mut Cursor<'a>, cache: &ArrayCache, cols: &mut [Column<'a>]) -> Result<bool> {
    if !cache.valid || cache.spans.len() != cols.len() {
        return Ok(false);
    }
    let Some(at) = cache.matches(cur) else { return Ok(false) };
    for (c, &(s, e)) in cols.iter_mut().zip(&cache.spans) {
        c.type_name = Some(Cow::Borrowed(cur.str_range(at + s, at + e)?));
    }
    Ok(true)
}

/// The keys of a change in wal2json's order, with their quotes and colon.
const CHANGE_KEYS: [&[u8]; 15] = [
    b"\"kind\":",
    b"\"schema\":",
    b"\"table\":",
    b"\"columnnames\":",
    b"\"columntypes\":",
    b"\"columntypeoids\":",
    b"\"columnpositions\":",
    b"\"columnoptionals\":",
    b"\"columndefaults\":",
    b"\"columnvalues\":",
    b"\"pk\":",
    b"\"oldkeys\":",
    b"\"transactional\":",
    b"\"prefix\":",
    b"\"content\":",
];

const OLDKEYS_KEYS: [&[u8]; 4] = [b"\"keynames\":", b"\"keytypes\":", b"\"keytypeoids\":", b"\"keyvalues\":"];

/// One change object `{"kind":…}`.
pub(crate) fn change<'a>(cur: &mut Cursor<'a>, scratch: &mut Scratch) -> Result<Event<'a>> {
    let start = cur.pos;
    cur.require(b'{', "expected '{'")?;
    let mut kind: Option<&'a [u8]> = None;
    let mut kind_at = start;
    let mut schema: Option<Cow<'a, str>> = None;
    let mut table: Option<Cow<'a, str>> = None;
    let mut cols = scratch.take_columns();
    let mut ident = scratch.take_columns();
    let mut pk: Option<Vec<PkColumn<'a>>> = None;
    let mut transactional: Option<bool> = None;
    let mut prefix: Option<Cow<'a, str>> = None;
    let mut content: Option<Cow<'a, [u8]>> = None;
    let r = (|| -> Result<()> {
        if cur.eat(b'}') {
            return Ok(());
        }
        let mut hint = 0;
        loop {
            match cur.predicted_key(&CHANGE_KEYS, &mut hint)? {
                b"kind" => {
                    let (s, e, _) = cur.string_span()?;
                    kind_at = s;
                    kind = Some(cur.bytes_range(s, e));
                }
                b"schema" => schema = cur.opt_string()?,
                b"table" => table = Some(cur.string()?),
                b"columnnames" => {
                    if !(cols.is_empty() && names_from_cache(cur, &scratch.names_cache, &mut cols)?) {
                        let at = array_start(cur);
                        let fresh = cols.is_empty();
                        column_array(cur, &mut cols, |c, col| {
                            c.string_into(&mut col.name, &mut scratch.strings)?;
                            Ok(())
                        })?;
                        if fresh {
                            scratch.names_cache.record(cur, at, cols.iter().map(|c| &c.name));
                        }
                    }
                }
                b"columntypes" => {
                    if !types_from_cache(cur, &scratch.types_cache, &mut cols)? {
                        let at = array_start(cur);
                        column_array(cur, &mut cols, |c, col| {
                            c.type_name_into(&mut col.type_name)?;
                            Ok(())
                        })?;
                        scratch.types_cache.record(cur, at, cols.iter().filter_map(|c| c.type_name.as_ref()));
                    }
                }
                b"columntypeoids" => column_array(cur, &mut cols, |c, col| {
                    col.type_oid = Some(c.i64()?);
                    Ok(())
                })?,
                b"columnpositions" => column_array(cur, &mut cols, |c, col| {
                    col.position = Some(c.i32()?);
                    Ok(())
                })?,
                b"columnoptionals" => column_array(cur, &mut cols, |c, col| {
                    col.optional = Some(c.boolean()?);
                    Ok(())
                })?,
                b"columndefaults" => {
                    let n = cols.len();
                    let at = *cur;
                    let cols = &mut cols;
                    cur.defaults_v1(n, |i, d| {
                        slot(&at, cols, i)?.default = d;
                        Ok(())
                    })?;
                }
                b"columnvalues" => column_array(cur, &mut cols, |c, col| {
                    c.value_into(&mut col.value, &mut scratch.strings)?;
                    Ok(())
                })?,
                b"pk" => {
                    let mut v = scratch.take_pk();
                    pk_object(cur, &mut v)?;
                    if let Some(old) = pk.replace(v) {
                        scratch.put_pk(old);
                    }
                }
                b"oldkeys" => oldkeys(cur, &mut ident, &mut scratch.strings)?,
                b"transactional" => transactional = Some(cur.boolean()?),
                b"prefix" => prefix = Some(cur.string()?),
                b"content" => content = Some(cur.byte_string()?),
                _ => cur.skip_value()?,
            }
            if cur.eat(b',') {
                continue;
            }
            cur.require(b'}', "expected ',' or '}'")?;
            return Ok(());
        }
    })();
    if let Err(e) = r {
        scratch.put_columns(cols);
        scratch.put_columns(ident);
        if let Some(p) = pk {
            scratch.put_pk(p);
        }
        return Err(e);
    }
    let missing = |what: &str| cur.err_at(start, what);
    if let Some(k @ (b"insert" | b"update" | b"delete")) = kind {
        let c = Change {
            xid: None,
            lsn: None,
            timestamp: None,
            origin: None,
            schema,
            table: table.ok_or_else(|| missing("missing \"table\""))?,
            columns: cols,
            identity: ident,
            pk,
        };
        return Ok(match k {
            b"insert" => Event::Insert(c),
            b"update" => Event::Update(c),
            _ => Event::Delete(c),
        });
    }
    match kind {
        Some(b"truncate") => {
            let ev = Event::Truncate(Truncate {
                xid: None,
                lsn: None,
                timestamp: None,
                origin: None,
                schema,
                table: table.ok_or_else(|| missing("missing \"table\""))?,
                restart_seqs: None,
                cascade: None,
            });
            scratch.put_columns(cols);
            scratch.put_columns(ident);
            Ok(ev)
        }
        Some(b"message") => {
            scratch.put_columns(cols);
            scratch.put_columns(ident);
            if let Some(p) = pk {
                scratch.put_pk(p);
            }
            Ok(Event::Message(Message {
                xid: Nullable::Absent,
                lsn: None,
                timestamp: Nullable::Absent,
                origin: Nullable::Absent,
                transactional: transactional.ok_or_else(|| missing("missing \"transactional\""))?,
                prefix: prefix.ok_or_else(|| missing("missing \"prefix\""))?,
                content: content.ok_or_else(|| missing("missing \"content\""))?,
            }))
        }
        Some(_) => Err(cur.err_at(kind_at, "unknown kind")),
        None => Err(missing("missing \"kind\"")),
    }
}

/// `{"pknames":[…],"pktypes":[…]}`
fn pk_object<'a>(cur: &mut Cursor<'a>, out: &mut Vec<PkColumn<'a>>) -> Result<()> {
    let at = cur.pos;
    cur.require(b'{', "expected '{'")?;
    if cur.eat(b'}') {
        return Ok(());
    }
    let mut lens = [None::<usize>; 2];
    loop {
        let key = cur.key()?;
        match key {
            b"pknames" | b"pktypes" => {
                let names = key == b"pknames";
                let n = array(cur, |c, i| {
                    if i >= out.len() {
                        out.push(PkColumn { name: Cow::Borrowed(""), type_name: None, type_oid: None });
                    }
                    let Some(p) = out.get_mut(i) else {
                        return Err(c.err("pk arrays of different lengths"));
                    };
                    if names {
                        p.name = c.string()?;
                    } else {
                        p.type_name = Some(c.type_name()?);
                    }
                    Ok(())
                })?;
                if let Some(l) = lens.get_mut(usize::from(!names)) {
                    *l = Some(n);
                }
            }
            _ => cur.skip_value()?,
        }
        if cur.eat(b',') {
            continue;
        }
        cur.require(b'}', "expected ',' or '}'")?;
        break;
    }
    if lens.iter().flatten().any(|&n| n != out.len()) {
        return Err(cur.err_at(at, "pk arrays of different lengths"));
    }
    Ok(())
}

/// `{"keynames":[…],"keytypes":[…],"keytypeoids":[…],"keyvalues":[…]}`
fn oldkeys<'a>(cur: &mut Cursor<'a>, ident: &mut Vec<Column<'a>>, pool: &mut Vec<String>) -> Result<()> {
    cur.require(b'{', "expected '{'")?;
    if cur.eat(b'}') {
        return Ok(());
    }
    let mut hint = 0;
    loop {
        match cur.predicted_key(&OLDKEYS_KEYS, &mut hint)? {
            b"keynames" => column_array(cur, ident, |c, col| {
                c.string_into(&mut col.name, pool)?;
                Ok(())
            })?,
            b"keytypes" => column_array(cur, ident, |c, col| {
                c.type_name_into(&mut col.type_name)?;
                Ok(())
            })?,
            b"keytypeoids" => column_array(cur, ident, |c, col| {
                col.type_oid = Some(c.i64()?);
                Ok(())
            })?,
            b"keyvalues" => column_array(cur, ident, |c, col| {
                c.value_into(&mut col.value, pool)?;
                Ok(())
            })?,
            _ => cur.skip_value()?,
        }
        if cur.eat(b',') {
            continue;
        }
        cur.require(b'}', "expected ',' or '}'")?;
        return Ok(());
    }
}
