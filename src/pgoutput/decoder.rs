//! pgoutput payloads into typed [`Event`]s: the relation cache, the transaction and stream state, and the value
//! mapping (the rules are in the module docs of [`crate::pgoutput`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use super::message::{self, Message, OldKind, RelationIds, TupleData, TupleValue};
use super::text;
use super::types::{self, ValueKind};
use crate::error::{Error, Result};
use crate::event::{
    Change, Column, Event, Message as MessageEvent, Nullable, StreamControl, StreamKind, Transaction, Truncate,
    TwoPhase, TwoPhaseKind, Value,
};
use crate::plugin::{Decode, EventIter};
use crate::wal2json::is_json_number;

/// What the decoder knows about one relation id (from its last Relation message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationInfo {
    /// The relation's OID (its id in the stream).
    pub id: u32,
    /// Its schema.
    pub schema: Box<str>,
    /// Its name.
    pub name: Box<str>,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Its published columns, in the order of the tuples.
    pub columns: Vec<ColumnInfo>,
}

/// One column of a [`RelationInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Column name.
    pub name: Box<str>,
    /// Type OID.
    pub type_oid: u32,
    /// `atttypmod`.
    pub typmod: i32,
    /// Part of the replica identity.
    pub key: bool,
    /// The type's name as wal2json prints it (built-in types, or a Type message's); `None` for a type that is
    /// neither.
    pub type_name: Option<Cow<'static, str>>,
    kind: ValueKind,
}

/// A type a Type message named.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserType {
    namespace: Box<str>,
    name: Box<str>,
}

/// Vecs and strings of recycled events, reused so that steady-state decoding allocates nothing.
#[derive(Default)]
struct Pool {
    cols: Vec<Vec<Column<'static>>>,
    strings: Vec<String>,
}

/// At most this many pooled column vectors, each of at most this capacity.
const POOL_VECS: usize = 16;
const POOL_MAX_COLUMNS: usize = 4096;
/// At most this many pooled strings, each of at most this capacity.
const POOL_STRINGS: usize = 8192;
const POOL_STRING_MAX: usize = 64 * 1024;

/// Empty `v` and give its allocation a new lifetime parameter (in-place collection reuses the allocation).
#[allow(clippy::unnecessary_filter_map)] // the map changes the lifetime parameter
fn relife<'c>(mut v: Vec<Column<'_>>) -> Vec<Column<'c>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl Pool {
    fn take_cols<'a>(&mut self) -> Vec<Column<'a>> {
        self.cols.pop().map(relife).unwrap_or_default()
    }
    fn string(&mut self) -> String {
        let mut s = self.strings.pop().unwrap_or_default();
        s.clear();
        s
    }
    fn copy<'a>(&mut self, s: &str) -> Cow<'a, str> {
        let mut o = self.string();
        o.push_str(s);
        Cow::Owned(o)
    }
    fn put(&mut self, c: Cow<'_, str>) {
        if let Cow::Owned(s) = c {
            if self.strings.len() < POOL_STRINGS && s.capacity() <= POOL_STRING_MAX {
                self.strings.push(s);
            }
        }
    }
    fn put_cols(&mut self, mut v: Vec<Column<'_>>) {
        for c in v.drain(..) {
            let Column { name, type_name, value, default, .. } = c;
            self.put(name);
            if let Some(t) = type_name {
                self.put(t);
            }
            if let Value::String(s) | Value::Number(s) = value {
                self.put(s);
            }
            if let Nullable::Value(d) = default {
                self.put(d);
            }
        }
        if v.capacity() > 0 && v.capacity() <= POOL_MAX_COLUMNS && self.cols.len() < POOL_VECS {
            self.cols.push(relife(v));
        }
    }
    fn recycle(&mut self, ev: Event<'_>) {
        match ev {
            Event::Insert(c) | Event::Update(c) | Event::Delete(c) => {
                let Change { timestamp, schema, table, columns, identity, .. } = c;
                self.put_cols(columns);
                self.put_cols(identity);
                self.put(table);
                if let Some(s) = schema {
                    self.put(s);
                }
                if let Some(t) = timestamp {
                    self.put(t);
                }
            }
            Event::Truncate(t) => {
                self.put(t.table);
                if let Some(s) = t.schema {
                    self.put(s);
                }
                if let Some(ts) = t.timestamp {
                    self.put(ts);
                }
            }
            Event::Begin(t) | Event::Commit(t) => {
                if let Some(ts) = t.timestamp {
                    self.put(ts);
                }
            }
            Event::TwoPhase(t) => {
                if let Some(ts) = t.timestamp {
                    self.put(ts);
                }
            }
            Event::Stream(s) => {
                if let Some(ts) = s.timestamp {
                    self.put(ts);
                }
            }
            Event::Message(_) => {}
        }
    }
    fn timestamp<'a>(&mut self, t: i64) -> Cow<'a, str> {
        let mut s = self.string();
        text::timestamptz(&mut s, t);
        Cow::Owned(s)
    }
}

/// Decoder of pgoutput payloads into [`Event`]s, for one stream: it keeps the relation cache (Relation and Type
/// messages), the open transaction's xid and whether a streamed block is open. See [`crate::pgoutput`] for the
/// mapping.
///
/// ```
/// use pgrepl::pgoutput::PgoutputDecoder;
/// use pgrepl::event::{Event, Value};
/// let mut d = PgoutputDecoder::new();
/// // Relation 16384 public.t (id integer key, name text), then an INSERT of (1, 'a')
/// let rel = b"R\0\0\x40\0public\0t\0d\0\x02\x01id\0\0\0\0\x17\xff\xff\xff\xff\x00name\0\0\0\0\x19\xff\xff\xff\xff";
/// assert_eq!(d.decode_each(rel, |_| {})?, 0);
/// let ins = b"I\0\0\x40\0N\0\x02t\0\0\0\x011t\0\0\0\x01a";
/// d.decode_each(ins, |ev| {
///     let Event::Insert(c) = ev else { panic!() };
///     assert_eq!((c.schema.as_deref(), &*c.table), (Some("public"), "t"));
///     assert_eq!(c.column("id").unwrap().value, Value::Number("1".into()));
///     assert_eq!(c.column("id").unwrap().type_name.as_deref(), Some("integer"));
///     assert_eq!(c.column("name").unwrap().value, Value::String("a".into()));
/// })?;
/// # Ok::<(), pgrepl::Error>(())
/// ```
#[derive(Default)]
pub struct PgoutputDecoder {
    relations: HashMap<u32, RelationInfo>,
    types: HashMap<u32, UserType>,
    pool: Pool,
    /// The open transaction's xid (after Begin or Begin Prepare).
    txn: Option<u32>,
    /// The open streamed block's top-level xid (after Stream Start).
    stream: Option<u32>,
    /// Streamed transactions come assembled ([`PgoutputDecoder::assembled`]): the xid of the one being read.
    assembled: Option<Option<u32>>,
}

impl std::fmt::Debug for PgoutputDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgoutputDecoder")
            .field("relations", &self.relations.len())
            .field("types", &self.types.len())
            .field("txn", &self.txn)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl PgoutputDecoder {
    /// A new decoder with an empty relation cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the last Relation message said about relation `id`.
    pub fn relation(&self, id: u32) -> Option<&RelationInfo> {
        self.relations.get(&id)
    }

    /// Whether a streamed block (Stream Start … Stream Stop) is open: data messages then carry an xid.
    pub fn in_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Parse one payload into its [`Message`] without changing any state (the decoder's stream state says whether
    /// data messages carry an xid).
    pub fn parse<'a>(&self, payload: &'a [u8]) -> Result<Message<'a>> {
        message::parse(payload, self.in_stream())
    }

    /// Take one payload; iterate the returned events: none for Relation, Type, Origin; one per relation for a
    /// Truncate; one otherwise. Every error of the payload is returned here, except an unknown relation id of a
    /// Truncate after its first (from the iterator).
    pub fn events<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<PgoutputEvents<'d, 'a>> {
        let state = self.take(payload)?;
        Ok(PgoutputEvents { dec: self, state })
    }

    /// Decode `payload` and call `f` on each event (recycling each afterwards). Returns the number of events.
    pub fn decode_each<'a>(&mut self, payload: &'a [u8], f: impl FnMut(&Event<'a>)) -> Result<usize> {
        crate::plugin::each_event(self.events(payload)?, f)
    }

    /// Give an event's storage (column vectors, copied names, formatted text) back for reuse.
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.pool.recycle(ev);
    }

    /// Streamed transactions reach this decoder assembled (held until they commit, then decoded whole, as
    /// [`crate::changes::ChangeStream`] does): a transaction's first Stream Start becomes its
    /// [`Event::Begin`] (xid only: the commit's LSN and time come with its Commit), the other segment markers
    /// give no event, and its Stream Commit the [`Event::Commit`] as before. Without this, every marker is an
    /// [`Event::Stream`].
    pub fn assembled(&mut self) {
        self.assembled = Some(None);
    }

    /// Forget the open transaction and streamed block (after a reconnect the server starts again at a
    /// transaction boundary). The relation cache is kept: the server sends every relation again before its first
    /// change on a new connection anyway.
    pub fn reset(&mut self) {
        self.txn = None;
        self.stream = None;
        if self.assembled.is_some() {
            self.assembled = Some(None);
        }
    }

    /// Forget the relation cache too.
    pub fn clear_relations(&mut self) {
        self.relations.clear();
        self.types.clear();
    }

    /// Whether a transaction (Begin … Commit, Begin Prepare … Prepare) or a streamed block is open.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some() || self.stream.is_some()
    }

    fn take<'a>(&mut self, payload: &'a [u8]) -> Result<State<'a>> {
        let m = message::parse(payload, self.in_stream())?;
        let pool = &mut self.pool;
        let ev = match m {
            Message::Begin(b) => {
                self.txn = Some(b.xid);
                Event::Begin(Transaction {
                    xid: Some(u64::from(b.xid)),
                    lsn: Some(b.final_lsn),
                    timestamp: Some(pool.timestamp(b.commit_time)),
                    ..Transaction::default()
                })
            }
            Message::Commit(c) => Event::Commit(Transaction {
                xid: self.txn.take().map(u64::from),
                lsn: Some(c.commit_lsn),
                next_lsn: Some(c.end_lsn),
                timestamp: Some(pool.timestamp(c.commit_time)),
                ..Transaction::default()
            }),
            Message::Origin(_) => return Ok(State::Done),
            Message::Relation(r) => {
                self.relation_message(&r);
                return Ok(State::Done);
            }
            Message::Type(t) => {
                self.type_message(&t);
                return Ok(State::Done);
            }
            Message::Insert(i) => {
                let xid = i.xid.or(self.txn).map(u64::from);
                let rel = lookup(&self.relations, i.relation_id, id_at(i.xid))?;
                let mut change = new_change(pool, rel, xid);
                if let Err(e) = tuple(pool, rel, payload, i.new, Filter::All, &mut change.columns, None) {
                    pool.recycle(Event::Insert(change));
                    return Err(e);
                }
                Event::Insert(change)
            }
            Message::Update(u) => {
                let xid = u.xid.or(self.txn).map(u64::from);
                let rel = lookup(&self.relations, u.relation_id, id_at(u.xid))?;
                let mut change = new_change(pool, rel, xid);
                let r = (|| {
                    // without an old tuple the key did not change: wal2json gives the identity from the new row
                    let identity_from_new = u.old.is_none();
                    if let Some(old) = u.old {
                        tuple(pool, rel, payload, old.data, Filter::old(old.kind), &mut change.identity, None)?;
                    }
                    let also = identity_from_new.then_some(&mut change.identity);
                    tuple(pool, rel, payload, u.new, Filter::All, &mut change.columns, also)
                })();
                if let Err(e) = r {
                    pool.recycle(Event::Update(change));
                    return Err(e);
                }
                Event::Update(change)
            }
            Message::Delete(d) => {
                let xid = d.xid.or(self.txn).map(u64::from);
                let rel = lookup(&self.relations, d.relation_id, id_at(d.xid))?;
                let mut change = new_change(pool, rel, xid);
                let filter = Filter::old(d.old.kind);
                if let Err(e) = tuple(pool, rel, payload, d.old.data, filter, &mut change.identity, None) {
                    pool.recycle(Event::Delete(change));
                    return Err(e);
                }
                Event::Delete(change)
            }
            Message::Truncate(t) => {
                let xid = t.xid.or(self.txn).map(u64::from);
                // the first relation is checked here, so that a Truncate of unknown relations fails at once
                if let Some(id) = t.relation_ids.get(0) {
                    lookup(&self.relations, id, t.relation_ids.offset(0))?;
                }
                return Ok(State::Truncate {
                    ids: t.relation_ids,
                    next: 0,
                    xid,
                    cascade: t.cascade(),
                    restart: t.restart_identity(),
                });
            }
            Message::Message(m) => {
                let transactional = m.transactional();
                let xid =
                    if transactional { Nullable::from(m.xid.or(self.txn).map(u64::from)) } else { Nullable::Null };
                Event::Message(MessageEvent {
                    xid,
                    lsn: Some(m.lsn),
                    timestamp: if transactional { Nullable::Absent } else { Nullable::Null },
                    origin: Nullable::Absent,
                    transactional,
                    prefix: Cow::Borrowed(m.prefix),
                    content: Cow::Borrowed(m.content),
                })
            }
            Message::StreamStart(s) if self.assembled.is_some() => {
                self.stream = Some(s.xid);
                if self.assembled == Some(Some(s.xid)) {
                    return Ok(State::Done);
                }
                self.assembled = Some(Some(s.xid));
                Event::Begin(Transaction { xid: Some(u64::from(s.xid)), ..Transaction::default() })
            }
            Message::StreamStop if self.assembled.is_some() => {
                self.stream = None;
                return Ok(State::Done);
            }
            Message::StreamStart(s) => {
                self.stream = Some(s.xid);
                Event::Stream(StreamControl {
                    kind: StreamKind::Start,
                    xid: Some(u64::from(s.xid)),
                    first_segment: Some(s.first_segment),
                    ..StreamControl::default()
                })
            }
            Message::StreamStop => Event::Stream(StreamControl {
                kind: StreamKind::Stop,
                xid: self.stream.take().map(u64::from),
                ..StreamControl::default()
            }),
            Message::StreamCommit(c) => {
                if self.assembled.is_some() {
                    self.assembled = Some(None);
                }
                Event::Commit(Transaction {
                    xid: Some(u64::from(c.xid)),
                    lsn: Some(c.commit_lsn),
                    next_lsn: Some(c.end_lsn),
                    timestamp: Some(pool.timestamp(c.commit_time)),
                    ..Transaction::default()
                })
            }
            Message::StreamAbort(a) => Event::Stream(StreamControl {
                kind: StreamKind::Abort,
                xid: Some(u64::from(a.xid)),
                subxid: Some(u64::from(a.subxid)),
                first_segment: None,
                lsn: a.abort_lsn,
                timestamp: a.abort_time.map(|t| pool.timestamp(t)),
            }),
            Message::BeginPrepare(b) => {
                self.txn = Some(b.xid);
                Event::Begin(Transaction {
                    xid: Some(u64::from(b.xid)),
                    lsn: Some(b.prepare_lsn),
                    next_lsn: Some(b.end_lsn),
                    timestamp: Some(pool.timestamp(b.prepare_time)),
                    ..Transaction::default()
                })
            }
            Message::Prepare(p) | Message::StreamPrepare(p) => {
                if self.assembled.is_some() {
                    self.assembled = Some(None);
                }
                if self.txn == Some(p.xid) {
                    self.txn = None;
                }
                Event::TwoPhase(TwoPhase {
                    kind: TwoPhaseKind::Prepare,
                    gid: Cow::Borrowed(p.gid),
                    xid: Some(u64::from(p.xid)),
                    timestamp: Some(pool.timestamp(p.prepare_time)),
                })
            }
            Message::CommitPrepared(c) => Event::TwoPhase(TwoPhase {
                kind: TwoPhaseKind::CommitPrepared,
                gid: Cow::Borrowed(c.gid),
                xid: Some(u64::from(c.xid)),
                timestamp: Some(pool.timestamp(c.commit_time)),
            }),
            Message::RollbackPrepared(r) => Event::TwoPhase(TwoPhase {
                kind: TwoPhaseKind::RollbackPrepared,
                gid: Cow::Borrowed(r.gid),
                xid: Some(u64::from(r.xid)),
                timestamp: Some(pool.timestamp(r.rollback_time)),
            }),
        };
        Ok(State::One(ev))
    }

    fn relation_message(&mut self, r: &message::Relation<'_>) {
        let columns = r
            .columns
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.into(),
                type_oid: c.type_oid,
                typmod: c.typmod,
                key: c.is_key(),
                type_name: type_name(&self.types, c.type_oid, c.typmod),
                kind: types::value_kind(c.type_oid),
            })
            .collect();
        self.relations.insert(
            r.id,
            RelationInfo {
                id: r.id,
                schema: r.namespace.into(),
                name: r.name.into(),
                replica_identity: r.replica_identity,
                columns,
            },
        );
    }

    fn type_message(&mut self, t: &message::Type<'_>) {
        let ut = UserType { namespace: t.namespace.into(), name: t.name.into() };
        if self.types.get(&t.id) == Some(&ut) {
            return;
        }
        self.types.insert(t.id, ut);
        // a relation described before this type (the server sends types first, but a Type may also change)
        for rel in self.relations.values_mut() {
            for c in rel.columns.iter_mut().filter(|c| c.type_oid == t.id) {
                c.type_name = type_name(&self.types, c.type_oid, c.typmod);
            }
        }
    }
}

fn type_name(types: &HashMap<u32, UserType>, oid: u32, typmod: i32) -> Option<Cow<'static, str>> {
    types::builtin_type_name(oid, typmod)
        .or_else(|| types.get(&oid).map(|t| Cow::Owned(types::user_type_name(&t.namespace, &t.name, typmod))))
}

/// The relation `id`, whose id sits at byte `at` of the payload.
fn lookup(rels: &HashMap<u32, RelationInfo>, id: u32, at: usize) -> Result<&RelationInfo> {
    rels.get(&id).ok_or_else(|| {
        Error::decode(at, format_args!("unknown relation id {id}: no Relation message for it on this stream"))
    })
}

/// Where a change's relation id sits: after the type byte and, inside a streamed block, the xid.
fn id_at(xid: Option<u32>) -> usize {
    if xid.is_some() {
        5
    } else {
        1
    }
}

fn new_change<'a>(pool: &mut Pool, rel: &RelationInfo, xid: Option<u64>) -> Change<'a> {
    Change {
        xid,
        schema: Some(pool.copy(&rel.schema)),
        table: pool.copy(&rel.name),
        columns: pool.take_cols(),
        identity: pool.take_cols(),
        ..Change::default()
    }
}

/// Which columns of a tuple become [`Column`]s.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// Every column the server sent (unchanged TOASTed values are left out).
    All,
    /// Only the replica identity's columns (an old key: the others are NULL placeholders).
    Key,
}

impl Filter {
    fn old(kind: OldKind) -> Filter {
        match kind {
            OldKind::Key => Filter::Key,
            OldKind::Full => Filter::All,
        }
    }
}

/// Append the columns of `data` (a tuple of `rel`) to `out`, and the replica identity's columns also to `also`.
fn tuple<'a>(
    pool: &mut Pool,
    rel: &RelationInfo,
    payload: &'a [u8],
    data: TupleData<'a>,
    filter: Filter,
    out: &mut Vec<Column<'a>>,
    mut also: Option<&mut Vec<Column<'a>>>,
) -> Result<()> {
    if data.len() != rel.columns.len() {
        return Err(Error::decode(
            data.offset().saturating_sub(2),
            format_args!(
                "a tuple of {} columns for relation {} ({}.{}), which has {}",
                data.len(),
                rel.id,
                rel.schema,
                rel.name,
                rel.columns.len()
            ),
        ));
    }
    for (info, raw) in rel.columns.iter().zip(data.iter()) {
        if filter == Filter::Key && !info.key {
            continue;
        }
        let Some(value) = value(pool, info, raw, payload)? else { continue };
        if let Some(id) = also.as_deref_mut().filter(|_| info.key) {
            let v = match &value {
                Value::String(Cow::Owned(s)) => Value::String(pool.copy(s)),
                Value::Number(Cow::Owned(s)) => Value::Number(pool.copy(s)),
                v => v.clone(),
            };
            id.push(column(pool, info, v));
        }
        out.push(column(pool, info, value));
    }
    Ok(())
}

/// A column of `info` with `value`: its name and type name copied into pooled strings (a built-in type's name
/// without typmod is borrowed: it is `'static`).
fn column<'a>(pool: &mut Pool, info: &ColumnInfo, value: Value<'a>) -> Column<'a> {
    Column {
        name: pool.copy(&info.name),
        type_name: info.type_name.as_ref().map(|t| match t {
            Cow::Borrowed(s) => Cow::Borrowed(*s),
            Cow::Owned(s) => pool.copy(s),
        }),
        type_oid: Some(i64::from(info.type_oid)),
        value,
        optional: None,
        position: None,
        default: Nullable::Absent,
    }
}

/// Where `part` (a slice of `payload`) starts in it.
fn offset_in(payload: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(payload.as_ptr() as usize).min(payload.len())
}

/// One value; `None` for an unchanged TOASTed value (left out, as wal2json leaves it out).
fn value<'a>(pool: &mut Pool, info: &ColumnInfo, raw: TupleValue<'a>, payload: &'a [u8]) -> Result<Option<Value<'a>>> {
    let bytes = match raw {
        TupleValue::Null => return Ok(Some(Value::Null)),
        TupleValue::Unchanged => return Ok(None),
        TupleValue::Text(b) => b,
        TupleValue::Binary(b) => return binary(pool, info, b, payload).map(Some),
    };
    let s = std::str::from_utf8(bytes).map_err(|e| {
        Error::decode(
            offset_in(payload, bytes) + e.valid_up_to(),
            format_args!("value of column {:?} is not valid UTF-8", info.name),
        )
    })?;
    Ok(Some(match info.kind {
        ValueKind::Number if is_json_number(s.as_bytes()) => Value::Number(Cow::Borrowed(s)),
        // NaN, Infinity, -Infinity (wal2json prints null): their text
        ValueKind::Number => Value::String(Cow::Borrowed(s)),
        ValueKind::Bool => match s {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => {
                return Err(Error::decode(
                    offset_in(payload, bytes),
                    format_args!("boolean column {:?} has the value {s:?} (expected t or f)", info.name),
                ))
            }
        },
        ValueKind::Bytea => Value::String(Cow::Borrowed(s.strip_prefix("\\x").unwrap_or(s))),
        ValueKind::Text => Value::String(Cow::Borrowed(s)),
    }))
}

/// A binary value (`binary true`) as the type's text output, for the types whose output does not depend on
/// session settings; the send format's hex digits for the others (see the module docs).
fn binary<'a>(pool: &mut Pool, info: &ColumnInfo, b: &'a [u8], payload: &'a [u8]) -> Result<Value<'a>> {
    let bad = || {
        Error::decode(
            offset_in(payload, b),
            format_args!(
                "binary value of column {:?} (type OID {}) is not in its type's send format",
                info.name, info.type_oid
            ),
        )
    };
    let utf8 = |b: &'a [u8]| {
        std::str::from_utf8(b).map_err(|e| {
            Error::decode(
                offset_in(payload, b) + e.valid_up_to(),
                format_args!("value of column {:?} is not valid UTF-8", info.name),
            )
        })
    };
    let mut s = pool.string();
    let number = match info.type_oid {
        types::BOOL => {
            return match b {
                [0] => Ok(Value::Bool(false)),
                [1] => Ok(Value::Bool(true)),
                _ => Err(bad()),
            }
        }
        types::INT2 => {
            let v = i16::from_be_bytes(b.try_into().map_err(|_| bad())?);
            let _ = write!(s, "{v}");
            true
        }
        types::INT4 => {
            let v = i32::from_be_bytes(b.try_into().map_err(|_| bad())?);
            let _ = write!(s, "{v}");
            true
        }
        types::INT8 => {
            let v = i64::from_be_bytes(b.try_into().map_err(|_| bad())?);
            let _ = write!(s, "{v}");
            true
        }
        types::OID => {
            let v = u32::from_be_bytes(b.try_into().map_err(|_| bad())?);
            let _ = write!(s, "{v}");
            true
        }
        types::FLOAT4 => {
            let v = f32::from_be_bytes(b.try_into().map_err(|_| bad())?);
            text::float(&mut s, f64::from(v), 6, |w| {
                let _ = write!(w, "{v:e}");
            });
            v.is_finite()
        }
        types::FLOAT8 => {
            let v = f64::from_be_bytes(b.try_into().map_err(|_| bad())?);
            text::float(&mut s, v, 15, |w| {
                let _ = write!(w, "{v:e}");
            });
            v.is_finite()
        }
        types::NUMERIC => {
            text::numeric(&mut s, b).ok_or_else(bad)?;
            is_json_number(s.as_bytes())
        }
        types::BYTEA => {
            text::hex(&mut s, b);
            false
        }
        types::UUID => {
            let u: &[u8; 16] = b.try_into().map_err(|_| bad())?;
            text::uuid(&mut s, u);
            false
        }
        // the send format of these is their text (jsonb's after a version byte 1)
        types::TEXT | types::VARCHAR | types::BPCHAR | types::NAME | types::JSON => {
            pool.put(Cow::Owned(s));
            return Ok(Value::String(Cow::Borrowed(utf8(b)?)));
        }
        types::JSONB => {
            pool.put(Cow::Owned(s));
            let body = b.strip_prefix(&[1]).ok_or_else(bad)?;
            return Ok(Value::String(Cow::Borrowed(utf8(body)?)));
        }
        _ => {
            text::hex(&mut s, b);
            false
        }
    };
    Ok(if number { Value::Number(Cow::Owned(s)) } else { Value::String(Cow::Owned(s)) })
}

enum State<'a> {
    Done,
    One(Event<'a>),
    Truncate { ids: RelationIds<'a>, next: usize, xid: Option<u64>, cascade: bool, restart: bool },
}

/// The events of one pgoutput payload (see [`PgoutputDecoder::events`]).
pub struct PgoutputEvents<'d, 'a> {
    dec: &'d mut PgoutputDecoder,
    state: State<'a>,
}

impl<'a> PgoutputEvents<'_, 'a> {
    /// Give an event's storage back for reuse.
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.dec.pool.recycle(ev);
    }
}

impl<'a> Iterator for PgoutputEvents<'_, 'a> {
    type Item = Result<Event<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => None,
            State::One(ev) => Some(Ok(ev)),
            State::Truncate { ids, next, xid, cascade, restart } => {
                let id = ids.get(next)?;
                let rel = match lookup(&self.dec.relations, id, ids.offset(next)) {
                    Ok(r) => r,
                    Err(e) => return Some(Err(e)),
                };
                let pool = &mut self.dec.pool;
                let ev = Event::Truncate(Truncate {
                    xid,
                    schema: Some(pool.copy(&rel.schema)),
                    table: pool.copy(&rel.name),
                    restart_seqs: Some(restart),
                    cascade: Some(cascade),
                    ..Truncate::default()
                });
                if next + 1 < ids.len() {
                    self.state = State::Truncate { ids, next: next + 1, xid, cascade, restart };
                }
                Some(Ok(ev))
            }
        }
    }
}

impl<'a> EventIter<'a> for PgoutputEvents<'_, 'a> {
    fn recycle(&mut self, ev: Event<'_>) {
        PgoutputEvents::recycle(self, ev);
    }
}

impl Decode for PgoutputDecoder {
    type Events<'d, 'a> = PgoutputEvents<'d, 'a>;
    fn events<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<PgoutputEvents<'d, 'a>> {
        PgoutputDecoder::events(self, payload)
    }
    fn decode_each<'a>(&mut self, payload: &'a [u8], f: impl FnMut(&Event<'a>)) -> Result<usize> {
        PgoutputDecoder::decode_each(self, payload, f)
    }
    fn recycle(&mut self, ev: Event<'_>) {
        PgoutputDecoder::recycle(self, ev);
    }
    fn reset(&mut self) {
        PgoutputDecoder::reset(self);
    }
    fn in_transaction(&self) -> bool {
        PgoutputDecoder::in_transaction(self)
    }
    fn assembled(&mut self) {
        PgoutputDecoder::assembled(self);
    }
}
