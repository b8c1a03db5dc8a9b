//! Format 2: one JSON object per change.
//!
//! A single pass over the bytes: keys are matched by their bytes (known keys in any order, unknown keys
//! skipped), strings are found with [`super::scan`]'s SIMD/SWAR scanner and borrowed when they have no escapes.

use std::borrow::Cow;

use crate::error::Result;
use crate::lsn::Lsn;

use super::scan::Cursor;
use super::Scratch;
use crate::event::{Change, Column, Event, Message, Nullable, PkColumn, Transaction, Truncate};

/// Decode one format 2 payload (the whole input must be one object, optionally surrounded by whitespace).
pub(crate) fn parse<'a>(cur: &mut Cursor<'a>, scratch: &mut Scratch) -> Result<Event<'a>> {
    let obj_start = cur.pos;
    cur.require(b'{', "expected '{'")?;
    let mut action: Option<u8> = None;
    // `null` kept apart from absent: a message keeps the difference, the other events read `null` as absent
    let mut xid: Nullable<u64> = Nullable::Absent;
    let mut timestamp: Nullable<Cow<'a, str>> = Nullable::Absent;
    let mut origin: Nullable<u32> = Nullable::Absent;
    let mut lsn: Option<Lsn> = None;
    let mut nextlsn: Option<Lsn> = None;
    let mut schema: Option<Cow<'a, str>> = None;
    let mut table: Option<Cow<'a, str>> = None;
    let mut columns: Option<Vec<Column<'a>>> = None;
    let mut identity: Option<Vec<Column<'a>>> = None;
    let mut pk: Option<Vec<PkColumn<'a>>> = None;
    let mut transactional: Option<bool> = None;
    let mut prefix: Option<Cow<'a, str>> = None;
    let mut content: Option<Cow<'a, [u8]>> = None;

    if !cur.eat(b'}') {
        let mut hint = 0;
        loop {
            match cur.predicted_key_tag(&KEYS, &mut hint, Key::Other)? {
                Key::Action => {
                    let (s, e, _) = cur.string_span()?;
                    match cur.bytes_range(s, e) {
                        // a repeated "action" must agree: the boundary classifiers read the first one
                        [a @ (b'B' | b'C' | b'I' | b'U' | b'D' | b'T' | b'M')] if action.is_none_or(|x| x == *a) => {
                            action = Some(*a)
                        }
                        [b'B' | b'C' | b'I' | b'U' | b'D' | b'T' | b'M'] => {
                            return Err(cur.err_at(s, "conflicting \"action\" keys"))
                        }
                        _ => return Err(cur.err_at(s, "unknown action")),
                    }
                }
                Key::Xid => xid = cur.nullable_u64()?,
                Key::Timestamp => timestamp = cur.nullable_string()?,
                Key::Origin => origin = cur.nullable_u32()?,
                Key::Lsn => lsn = cur.opt_lsn()?,
                Key::NextLsn => nextlsn = cur.opt_lsn()?,
                Key::Schema => schema = cur.opt_string()?,
                Key::Table => table = Some(cur.string()?),
                Key::Columns => {
                    let mut v = scratch.take_columns();
                    let [prefixes, _] = &mut scratch.col_prefixes;
                    columns_into(cur, &mut v, &mut scratch.strings, prefixes)?;
                    if let Some(old) = columns.replace(v) {
                        scratch.put_columns(old);
                    }
                }
                Key::Identity => {
                    let mut v = scratch.take_columns();
                    let [_, prefixes] = &mut scratch.col_prefixes;
                    columns_into(cur, &mut v, &mut scratch.strings, prefixes)?;
                    if let Some(old) = identity.replace(v) {
                        scratch.put_columns(old);
                    }
                }
                Key::Pk => {
                    let mut v = scratch.take_pk();
                    pk_into(cur, &mut v)?;
                    if let Some(old) = pk.replace(v) {
                        scratch.put_pk(old);
                    }
                }
                Key::Transactional => transactional = Some(cur.boolean()?),
                Key::Prefix => prefix = Some(cur.string()?),
                Key::Content => content = Some(cur.byte_string()?),
                // pgrepl's own writer: message content that is not UTF-8
                Key::ContentHex => {
                    let (s, e, esc) = cur.string_span()?;
                    if esc {
                        return Err(cur.err_at(s, "invalid content_hex"));
                    }
                    content = Some(Cow::Owned(
                        hex_decode(cur.bytes_range(s, e)).ok_or_else(|| cur.err_at(s, "invalid content_hex"))?,
                    ));
                }
                Key::Other => cur.skip_value()?,
            }
            if cur.eat(b',') {
                continue;
            }
            cur.require(b'}', "expected ',' or '}'")?;
            break;
        }
    }
    if !cur.at_end() {
        return Err(cur.err("trailing characters after the object"));
    }
    let missing = |what: &str| cur.err_at(obj_start, what);
    let ev = match action {
        Some(a @ (b'B' | b'C')) => {
            let t = Transaction {
                xid: xid.value(),
                lsn,
                next_lsn: nextlsn,
                timestamp: timestamp.value(),
                origin: origin.value(),
            };
            if a == b'B' {
                Event::Begin(t)
            } else {
                Event::Commit(t)
            }
        }
        Some(a @ (b'I' | b'U' | b'D')) => {
            let c = Change {
                xid: xid.value(),
                lsn,
                timestamp: timestamp.value(),
                origin: origin.value(),
                schema,
                table: table.ok_or_else(|| missing("missing \"table\""))?,
                columns: columns.unwrap_or_else(|| scratch.take_columns()),
                identity: identity.unwrap_or_else(|| scratch.take_columns()),
                pk,
            };
            match a {
                b'I' => Event::Insert(c),
                b'U' => Event::Update(c),
                _ => Event::Delete(c),
            }
        }
        Some(b'T') => Event::Truncate(Truncate {
            xid: xid.value(),
            lsn,
            timestamp: timestamp.value(),
            origin: origin.value(),
            schema,
            table: table.ok_or_else(|| missing("missing \"table\""))?,
            restart_seqs: None,
            cascade: None,
        }),
        Some(_) => Event::Message(Message {
            xid,
            lsn,
            timestamp,
            origin,
            transactional: transactional.ok_or_else(|| missing("missing \"transactional\""))?,
            prefix: prefix.ok_or_else(|| missing("missing \"prefix\""))?,
            content: content.ok_or_else(|| missing("missing \"content\""))?,
        }),
        None => return Err(missing("missing \"action\"")),
    };
    Ok(ev)
}

/// A top-level key (see [`KEYS`]).
#[derive(Clone, Copy)]
enum Key {
    Action,
    Xid,
    Timestamp,
    Origin,
    Lsn,
    NextLsn,
    Schema,
    Table,
    Columns,
    Identity,
    Pk,
    Transactional,
    Prefix,
    Content,
    ContentHex,
    Other,
}

/// The top-level keys in wal2json's order, with their quotes and colon (`content_hex`, pgrepl's own writer's,
/// last).
const KEYS: [(&[u8], Key); 15] = [
    (b"\"action\":", Key::Action),
    (b"\"xid\":", Key::Xid),
    (b"\"timestamp\":", Key::Timestamp),
    (b"\"origin\":", Key::Origin),
    (b"\"lsn\":", Key::Lsn),
    (b"\"nextlsn\":", Key::NextLsn),
    (b"\"schema\":", Key::Schema),
    (b"\"table\":", Key::Table),
    (b"\"columns\":", Key::Columns),
    (b"\"identity\":", Key::Identity),
    (b"\"pk\":", Key::Pk),
    (b"\"transactional\":", Key::Transactional),
    (b"\"prefix\":", Key::Prefix),
    (b"\"content\":", Key::Content),
    (b"\"content_hex\":", Key::ContentHex),
];

/// What a column of the previous row began with: its bytes from `{` up to and including `,"value":`, and where
/// in them its name and type are. Rows of one table repeat these bytes column by column; a column that begins
/// with the same bytes has the same name, type and type OID (the parse of those bytes is the same), so they are
/// compared with one `memcmp` and the name and type borrowed at the same offsets instead of parsed again.
#[derive(Default)]
struct Prefix {
    bytes: Vec<u8>,
    name: (usize, usize),
    type_name: Option<(usize, usize)>,
    type_oid: Option<i64>,
}

/// Longest prefix kept (a column with a longer name and type is parsed each time).
const PREFIX_MAX: usize = 256;
/// Prefixes kept for at most this many columns (PostgreSQL's limit is 1,600).
const PREFIX_COLUMNS: usize = 1600;

/// The previous row's [`Prefix`] of each column position.
#[derive(Default)]
pub(crate) struct ColumnPrefixes(Vec<Prefix>);

/// `[{"name":…,"type":…,"typeoid":…,"value":…,"optional":…,"position":…,"default":…},…]`
#[inline]
pub(crate) fn columns_into<'a>(
    cur: &mut Cursor<'a>,
    out: &mut Vec<Column<'a>>,
    pool: &mut Vec<String>,
    prefixes: &mut ColumnPrefixes,
) -> Result<()> {
    cur.require(b'[', "expected '['")?;
    if cur.eat(b']') {
        return Ok(());
    }
    loop {
        // Filled in place (see push_in_place).
        let n = out.len();
        if n >= prefixes.0.len() && n < PREFIX_COLUMNS {
            prefixes.0.push(Prefix::default());
        }
        let col = super::push_in_place(out, || Column::new("", super::Value::Null));
        if let Err(e) = column(cur, col, pool, prefixes.0.get_mut(n)) {
            out.truncate(n);
            return Err(e);
        }
        if cur.eat(b',') {
            continue;
        }
        cur.require(b']', "expected ',' or ']'")?;
        return Ok(());
    }
}

#[inline(always)]
fn column<'a>(
    cur: &mut Cursor<'a>,
    col: &mut Column<'a>,
    pool: &mut Vec<String>,
    prefix: Option<&mut Prefix>,
) -> Result<()> {
    let start = cur.pos;
    if let Some(p) = prefix.as_deref() {
        if !p.bytes.is_empty() && cur.rest().starts_with(&p.bytes) {
            // SAFETY: the payload's bytes from `start` are the prefix's bytes (just compared), and `remember` kept
            // only spans that lie inside the prefix, before its last byte, between ASCII bytes.
            col.name = Cow::Borrowed(unsafe { cur.str_delimited(start + p.name.0, start + p.name.1) }?);
            col.type_name = match p.type_name {
                // SAFETY: as for the name
                Some((s, e)) => Some(Cow::Borrowed(unsafe { cur.str_delimited(start + s, start + e) }?)),
                None => None,
            };
            col.type_oid = p.type_oid;
            cur.pos = start + p.bytes.len();
            return value_onwards(cur, col, pool);
        }
    }
    // Fast path: wal2json's own key order, matched as literals.
    if cur.lit(b"{\"name\":") {
        cur.string_into(&mut col.name, pool)?;
        if cur.lit(b",\"type\":") {
            cur.type_name_into(&mut col.type_name)?;
        }
        if cur.lit(b",\"typeoid\":") {
            col.type_oid = Some(cur.i64()?);
        }
        if cur.lit(b",\"value\":") {
            if let Some(p) = prefix {
                remember(p, cur, start, col);
            }
            return value_onwards(cur, col, pool);
        }
        return rest_of_column(cur, col, pool);
    }
    cur.require(b'{', "expected '{'")?;
    if cur.eat(b'}') {
        return Err(cur.err_at(start, "column without \"name\""));
    }
    let named = column_keys(cur, col, pool)?;
    if !named {
        return Err(cur.err_at(start, "column without \"name\""));
    }
    Ok(())
}

/// Keep the bytes from `start` to the cursor (just after `,"value":`) as the column's [`Prefix`], when its name
/// and type were borrowed from them.
fn remember(p: &mut Prefix, cur: &Cursor<'_>, start: usize, col: &Column<'_>) {
    p.bytes.clear();
    let len = cur.pos.saturating_sub(start);
    if len > PREFIX_MAX {
        return;
    }
    // where a borrowed string lies within the prefix
    let origin = (cur.b.as_ptr() as usize).saturating_add(start);
    // (spans that `column` may take again with `str_delimited`: between ASCII bytes, ending before the last byte)
    let bytes = cur.bytes_range(start, cur.pos);
    let ascii = |i: usize| bytes.get(i).is_some_and(u8::is_ascii);
    let span = |s: &str| {
        let from = (s.as_ptr() as usize).checked_sub(origin)?;
        let to = from.checked_add(s.len())?;
        (to < len && from > 0 && ascii(from - 1) && ascii(to)).then_some((from, to))
    };
    let Cow::Borrowed(name) = &col.name else { return };
    let Some(name) = span(name) else { return };
    let type_name = match &col.type_name {
        None => None,
        Some(Cow::Borrowed(t)) => match span(t) {
            Some(t) => Some(t),
            None => return,
        },
        Some(Cow::Owned(_)) => return,
    };
    p.bytes.extend_from_slice(bytes);
    p.name = name;
    p.type_name = type_name;
    p.type_oid = col.type_oid;
}

/// The rest of a column from its value on (the cursor just after `,"value":`).
#[inline(always)]
fn value_onwards<'a>(cur: &mut Cursor<'a>, col: &mut Column<'a>, pool: &mut Vec<String>) -> Result<()> {
    cur.value_into(&mut col.value, pool)?;
    // wal2json's default: nothing after the value
    if cur.eat_byte(b'}') {
        return Ok(());
    }
    if cur.lit(b",\"optional\":") {
        col.optional = Some(cur.boolean()?);
    }
    if cur.lit(b",\"position\":") {
        col.position = Some(cur.i32()?);
    }
    if cur.lit(b",\"default\":") {
        col.default = cur.default_v2()?;
    }
    rest_of_column(cur, col, pool)
}

/// The end of a column after its fast-path keys: `}`, or more keys in any order.
#[inline(always)]
fn rest_of_column<'a>(cur: &mut Cursor<'a>, col: &mut Column<'a>, pool: &mut Vec<String>) -> Result<()> {
    if cur.lit(b"}") {
        return Ok(());
    }
    // anything else: the general loop below takes over after a ','
    if !cur.eat(b',') {
        cur.require(b'}', "expected ',' or '}'")?;
        return Ok(());
    }
    column_keys(cur, col, pool)?;
    Ok(())
}

/// Column keys in any order, up to and including the closing `}`; whether a name was among them.
fn column_keys<'a>(cur: &mut Cursor<'a>, col: &mut Column<'a>, pool: &mut Vec<String>) -> Result<bool> {
    let mut has_name = false;
    loop {
        match cur.key()? {
            b"name" => {
                cur.string_into(&mut col.name, pool)?;
                has_name = true;
            }
            b"type" => cur.type_name_into(&mut col.type_name)?,
            b"typeoid" => col.type_oid = Some(cur.i64()?),
            b"value" => cur.value_into(&mut col.value, pool)?,
            b"optional" => col.optional = Some(cur.boolean()?),
            b"position" => col.position = Some(cur.i32()?),
            b"default" => col.default = cur.default_v2()?,
            _ => cur.skip_value()?,
        }
        if cur.eat(b',') {
            continue;
        }
        cur.require(b'}', "expected ',' or '}'")?;
        return Ok(has_name);
    }
}

/// `[{"name":…,"type":…,"typeoid":…},…]`
fn pk_into<'a>(cur: &mut Cursor<'a>, out: &mut Vec<PkColumn<'a>>) -> Result<()> {
    cur.require(b'[', "expected '['")?;
    if cur.eat(b']') {
        return Ok(());
    }
    loop {
        let start = cur.pos;
        cur.require(b'{', "expected '{'")?;
        let mut pk = PkColumn { name: Cow::Borrowed(""), type_name: None, type_oid: None };
        let mut has_name = false;
        if !cur.eat(b'}') {
            loop {
                match cur.key()? {
                    b"name" => {
                        pk.name = cur.string()?;
                        has_name = true;
                    }
                    b"type" => pk.type_name = Some(cur.type_name()?),
                    b"typeoid" => pk.type_oid = Some(cur.i64()?),
                    _ => cur.skip_value()?,
                }
                if cur.eat(b',') {
                    continue;
                }
                cur.require(b'}', "expected ',' or '}'")?;
                break;
            }
        }
        if !has_name {
            return Err(cur.err_at(start, "pk column without \"name\""));
        }
        out.push(pk);
        if cur.eat(b',') {
            continue;
        }
        cur.require(b']', "expected ',' or ']'")?;
        return Ok(());
    }
}

fn hex_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 2);
    for pair in s.chunks_exact(2) {
        let mut v = 0u8;
        for &c in pair {
            v = (v << 4) | (c as char).to_digit(16)? as u8;
        }
        out.push(v);
    }
    Some(out)
}
