//! Typed change events, the same for every output plugin pgrepl decodes: wal2json ([`crate::wal2json`]),
//! test_decoding ([`crate::plugin::TestDecodingDecoder`]) and pgoutput ([`crate::pgoutput`], whose module docs
//! list how its messages map here and where it differs from wal2json). The field names follow wal2json
//! format 2's keys (its JSON is what [`crate::wal2json::writer`] writes back); a plugin that does not print a
//! field leaves it absent (`None`).
//!
//! Every event borrows from the payload it was decoded from (`'a`): strings without escapes are
//! [`Cow::Borrowed`] slices of the payload, numbers are kept as their exact text. Only strings that contained
//! escapes (JSON escapes, test_decoding's doubled quotes) are unescaped into owned buffers.
//!
//! Where the plugins differ (same rows, same values otherwise; `tests/test_decoding_events.rs` compares them on
//! a live server):
//! - test_decoding prints no LSNs, no type OIDs, no nullability, positions, defaults or primary keys, and the
//!   xid and commit time only on `BEGIN`/`COMMIT` (the time only on `COMMIT`): those fields are `None` from it.
//!   Its schema is always printed ([`Change::schema`] is `Some`).
//! - NaN and ±Infinity: wal2json prints `null`, test_decoding the text, given as [`Value::String`] (a
//!   [`Value::Number`] is always a valid JSON number).
//! - bit/varbit: test_decoding prints `B'0101'`, given as the string `0101` (wal2json's value).
//! - Type names: test_decoding prints `format_type_be` (no typmod: `character varying`, `numeric`), wal2json
//!   `format_type` with the typmod (`character varying(20)`, `numeric(10,2)`).
//! - A message's content: wal2json cuts it at the first NUL byte, test_decoding gives every byte.
//! - TRUNCATE: test_decoding prints one line for all the tables of one statement, with its flags
//!   ([`Truncate::restart_seqs`], [`Truncate::cascade`]); it is decoded into one [`Event::Truncate`] per table,
//!   as wal2json prints them (without flags).
//! - Two-phase transactions ([`Event::TwoPhase`]) come only from test_decoding (and pgoutput), not wal2json.
//! - Streamed (in-progress) transactions ([`Event::Stream`]) come only from pgoutput with `streaming`: its
//!   segments' changes arrive between [`StreamKind::Start`] and [`StreamKind::Stop`] before the transaction
//!   commits (see [`StreamControl`]).
//! - A DELETE (or UPDATE's old key) of a table without replica identity: test_decoding prints `(no-tuple-data)`,
//!   an empty [`Change::identity`]; wal2json prints nothing for such a DELETE (a warning in the server log).
//!
//! What is *absent* matters in wal2json: an option that was off leaves its key out, and an unchanged TOASTed
//! column is left out of `columns` entirely (no placeholder). So every optional key is an `Option`, and a TOASTed
//! column is simply not in [`Change::columns`]: use [`Change::column`] to tell "absent" (`None`) from "NULL"
//! (`Some` with [`Value::Null`]).
//!
//! A key can also be *present with the value `null`*, and wal2json tells that apart from absent in two places:
//! a non-transactional message with include-xids / include-timestamp / include-origin prints `"xid":null`,
//! `"timestamp":null`, `"origin":null` (a transactional one prints the values, and without the option the key is
//! left out), and include-default prints `"default":null` for a column without a default (or a generated
//! column). Those fields are a [`Nullable`]: [`Message::xid`], [`Message::timestamp`], [`Message::origin`],
//! [`Column::default`]. Everywhere else wal2json never prints `null` for a metadata key; a `null` there (not
//! wal2json's output) is read as absent.

use std::borrow::Cow;

use crate::lsn::Lsn;

/// A key that wal2json prints with a value, prints as `null`, or leaves out (see the module docs for where it
/// makes that difference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Nullable<T> {
    /// The key was not printed (the option that prints it was off).
    #[default]
    Absent,
    /// The key was printed with the value `null`.
    Null,
    /// The key was printed with this value.
    Value(T),
}

impl<T> Nullable<T> {
    /// The value, if there is one (`None` both when the key was absent and when it was `null`).
    pub fn value(self) -> Option<T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }
    /// A reference to the value, if there is one.
    pub fn as_ref(&self) -> Nullable<&T> {
        match self {
            Nullable::Absent => Nullable::Absent,
            Nullable::Null => Nullable::Null,
            Nullable::Value(v) => Nullable::Value(v),
        }
    }
    /// Whether the key was left out.
    pub fn is_absent(&self) -> bool {
        matches!(self, Nullable::Absent)
    }
    /// Whether the key was printed as `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Nullable::Null)
    }
    /// The value mapped by `f`; `Absent` and `Null` stay as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Nullable<U> {
        match self {
            Nullable::Absent => Nullable::Absent,
            Nullable::Null => Nullable::Null,
            Nullable::Value(v) => Nullable::Value(f(v)),
        }
    }
}

impl<T: std::ops::Deref> Nullable<T> {
    /// The value dereferenced (`Nullable<Cow<str>>` → `Nullable<&str>`).
    pub fn as_deref(&self) -> Nullable<&T::Target> {
        match self {
            Nullable::Absent => Nullable::Absent,
            Nullable::Null => Nullable::Null,
            Nullable::Value(v) => Nullable::Value(&**v),
        }
    }
}

impl<T> From<Option<T>> for Nullable<T> {
    /// `Some` is a value, `None` is absent.
    fn from(o: Option<T>) -> Self {
        match o {
            Some(v) => Nullable::Value(v),
            None => Nullable::Absent,
        }
    }
}

/// A column value, as the plugin printed it.
///
/// Numbers (int2/int4/int8/oid/float4/float8/numeric) keep their exact text: it can overflow `i64`/`f64` and its
/// digits carry the numeric's scale. NaN and ±Infinity are printed by wal2json as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value<'a> {
    /// SQL NULL (or a NaN/Infinity number).
    Null,
    /// A `boolean`.
    Bool(bool),
    /// A number, exactly as the server wrote it (always a valid JSON number).
    Number(Cow<'a, str>),
    /// Everything else: the type's output text (bytea as hex digits without `\x`).
    String(Cow<'a, str>),
}

impl<'a> Value<'a> {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    /// The text of a string or number value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::Number(s) => Some(s),
            _ => None,
        }
    }
    /// The boolean, for [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// The number as `i64`, when it is an integer that fits (no fraction, no exponent, no overflow).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(s) => s.parse().ok(),
            _ => None,
        }
    }
    /// The number as `u64`, when it is a non-negative integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(s) => s.parse().ok(),
            _ => None,
        }
    }
    /// The number as `f64` (possibly rounded; `None` only if it is not a number).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(s) => s.parse().ok(),
            _ => None,
        }
    }
    /// A copy that owns its text.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Number(s) => Value::Number(Cow::Owned(s.into_owned())),
            Value::String(s) => Value::String(Cow::Owned(s.into_owned())),
        }
    }
}

/// One column of a tuple: an entry of format 2's `columns`/`identity`, or the i-th element of format 1's
/// `columnnames`/`columntypes`/…/`columnvalues` (or `oldkeys.key*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Column<'a> {
    /// Column name.
    pub name: Cow<'a, str>,
    /// `type` / `columntypes` (include-types). A type name that wal2json printed raw because `format_type`
    /// quoted it (`"MySchema".mood`, `"we""ird"`) is given as that raw text; a lone quoted identifier cannot be
    /// told from a JSON string and comes back unquoted.
    pub type_name: Option<Cow<'a, str>>,
    /// `typeoid` / `columntypeoids` (include-type-oids). Format 2 prints it signed (`%d`), format 1 unsigned;
    /// both fit in `i64`. See [`Column::type_oid_u32`].
    pub type_oid: Option<i64>,
    /// The value.
    pub value: Value<'a>,
    /// `optional` / `columnoptionals` (include-not-null): `true` when the column is nullable.
    pub optional: Option<bool>,
    /// `position` / `columnpositions` (include-column-positions): the attribute number.
    pub position: Option<i32>,
    /// `default` / `columndefaults` (include-default): the default expression; [`Nullable::Null`] for a column
    /// without a default (or a generated column), [`Nullable::Absent`] when the option is off (and always for
    /// `identity`). wal2json 2.5 prints the expression without escaping; see the module docs for the rule.
    pub default: Nullable<Cow<'a, str>>,
}

impl<'a> Column<'a> {
    /// A column with just a name and a value.
    pub fn new(name: impl Into<Cow<'a, str>>, value: Value<'a>) -> Self {
        Column {
            name: name.into(),
            type_name: None,
            type_oid: None,
            value,
            optional: None,
            position: None,
            default: Nullable::Absent,
        }
    }
    /// The type OID as PostgreSQL's unsigned `oid` (format 2 prints OIDs above 2³¹ as negative numbers).
    pub fn type_oid_u32(&self) -> Option<u32> {
        self.type_oid.map(|v| v as u32)
    }
    /// A copy that owns its text.
    pub fn into_owned(self) -> Column<'static> {
        Column {
            name: own(self.name),
            type_name: self.type_name.map(own),
            type_oid: self.type_oid,
            value: self.value.into_owned(),
            optional: self.optional,
            position: self.position,
            default: self.default.map(own),
        }
    }
}

/// One primary-key column (`pk`, include-pk).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PkColumn<'a> {
    /// Column name.
    pub name: Cow<'a, str>,
    /// Type name (include-types).
    pub type_name: Option<Cow<'a, str>>,
    /// Type OID (include-type-oids; format 2 only).
    pub type_oid: Option<i64>,
}

impl PkColumn<'_> {
    /// A copy that owns its text.
    pub fn into_owned(self) -> PkColumn<'static> {
        PkColumn { name: own(self.name), type_name: self.type_name.map(own), type_oid: self.type_oid }
    }
}

/// A transaction boundary: format 2's `B`/`C` objects, or the header of a format 1 document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Transaction<'a> {
    /// `xid` (include-xids).
    pub xid: Option<u64>,
    /// `lsn` (format 2, include-lsn): the first LSN for `B`, the commit LSN for `C`.
    pub lsn: Option<Lsn>,
    /// `nextlsn` (include-lsn): the end of the commit record, i.e. where to resume after this transaction.
    pub next_lsn: Option<Lsn>,
    /// `timestamp` (include-timestamp): the commit time as the server printed it.
    pub timestamp: Option<Cow<'a, str>>,
    /// `origin` (include-origin): the replication origin id.
    pub origin: Option<u32>,
}

impl Transaction<'_> {
    /// A copy that owns its text.
    pub fn into_owned(self) -> Transaction<'static> {
        Transaction {
            xid: self.xid,
            lsn: self.lsn,
            next_lsn: self.next_lsn,
            timestamp: self.timestamp.map(own),
            origin: self.origin,
        }
    }
}

/// An INSERT, UPDATE or DELETE.
///
/// Format 1 changes carry no `xid`/`lsn`/`timestamp`/`origin` of their own: those are on the surrounding
/// [`Event::Begin`]/[`Event::Commit`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Change<'a> {
    /// `xid` (format 2, include-xids).
    pub xid: Option<u64>,
    /// `lsn` (format 2, include-lsn).
    pub lsn: Option<Lsn>,
    /// `timestamp` (format 2, include-timestamp).
    pub timestamp: Option<Cow<'a, str>>,
    /// `origin` (format 2, include-origin).
    pub origin: Option<u32>,
    /// `schema` (include-schemas).
    pub schema: Option<Cow<'a, str>>,
    /// `table`.
    pub table: Cow<'a, str>,
    /// The new tuple (INSERT, UPDATE; empty for DELETE). Unchanged TOASTed columns are absent.
    pub columns: Vec<Column<'a>>,
    /// The old key (UPDATE and DELETE with a replica identity: format 2 `identity`, format 1 `oldkeys`).
    pub identity: Vec<Column<'a>>,
    /// `pk` (include-pk): `Some(vec![])` for a table without a primary key.
    pub pk: Option<Vec<PkColumn<'a>>>,
}

impl<'a> Change<'a> {
    /// The new-tuple column named `name`: `None` when it is absent (an unchanged TOASTed value), `Some` with
    /// [`Value::Null`] when it is NULL.
    pub fn column(&self, name: &str) -> Option<&Column<'a>> {
        self.columns.iter().find(|c| c.name == name)
    }
    /// The old-key column named `name`.
    pub fn identity_column(&self, name: &str) -> Option<&Column<'a>> {
        self.identity.iter().find(|c| c.name == name)
    }
    /// A copy that owns its text.
    pub fn into_owned(self) -> Change<'static> {
        Change {
            xid: self.xid,
            lsn: self.lsn,
            timestamp: self.timestamp.map(own),
            origin: self.origin,
            schema: self.schema.map(own),
            table: own(self.table),
            columns: self.columns.into_iter().map(Column::into_owned).collect(),
            identity: self.identity.into_iter().map(Column::into_owned).collect(),
            pk: self.pk.map(|p| p.into_iter().map(PkColumn::into_owned).collect()),
        }
    }
}

/// A TRUNCATE of one relation (format 2 `T`; wal2json prints one object per truncated table).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Truncate<'a> {
    /// `xid`.
    pub xid: Option<u64>,
    /// `lsn`.
    pub lsn: Option<Lsn>,
    /// `timestamp`.
    pub timestamp: Option<Cow<'a, str>>,
    /// `origin`.
    pub origin: Option<u32>,
    /// `schema`.
    pub schema: Option<Cow<'a, str>>,
    /// `table`.
    pub table: Cow<'a, str>,
    /// `RESTART IDENTITY` (test_decoding's `restart_seqs`; wal2json does not print the flags: `None`).
    pub restart_seqs: Option<bool>,
    /// `CASCADE` (test_decoding; `None` from wal2json).
    pub cascade: Option<bool>,
}

impl Truncate<'_> {
    /// A copy that owns its text.
    pub fn into_owned(self) -> Truncate<'static> {
        Truncate {
            xid: self.xid,
            lsn: self.lsn,
            timestamp: self.timestamp.map(own),
            origin: self.origin,
            schema: self.schema.map(own),
            table: own(self.table),
            restart_seqs: self.restart_seqs,
            cascade: self.cascade,
        }
    }
}

/// Which step of a two-phase transaction an [`Event::TwoPhase`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TwoPhaseKind {
    /// `PREPARE TRANSACTION`: the end of the prepared transaction's changes (they are not committed yet).
    #[default]
    Prepare,
    /// `COMMIT PREPARED`.
    CommitPrepared,
    /// `ROLLBACK PREPARED`.
    RollbackPrepared,
}

/// A step of a two-phase transaction (test_decoding with `two_phase` slots; wal2json prints none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TwoPhase<'a> {
    /// Prepare, commit or rollback.
    pub kind: TwoPhaseKind,
    /// The global transaction identifier (`PREPARE TRANSACTION 'gid'`).
    pub gid: Cow<'a, str>,
    /// The xid (test_decoding's `include-xids`).
    pub xid: Option<u64>,
    /// The prepare or commit time as the server printed it (`include-timestamp`).
    pub timestamp: Option<Cow<'a, str>>,
}

impl TwoPhase<'_> {
    /// A copy that owns its text.
    pub fn into_owned(self) -> TwoPhase<'static> {
        TwoPhase { kind: self.kind, gid: own(self.gid), xid: self.xid, timestamp: self.timestamp.map(own) }
    }
}

/// Which step of a streamed transaction an [`Event::Stream`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StreamKind {
    /// A segment of the transaction starts: its changes follow, each with its (sub)transaction's xid.
    #[default]
    Start,
    /// The segment ends (other transactions, and further segments, may follow).
    Stop,
    /// The transaction ([`StreamControl::subxid`] = [`StreamControl::xid`]) or one of its subtransactions
    /// aborted: discard what its segments delivered (for a subtransaction, the changes with that xid and those
    /// of subtransactions that began after it).
    Abort,
}

/// A streamed transaction's segment boundary or abort (pgoutput with `streaming`, protocol 2 and later).
///
/// A transaction larger than `logical_decoding_work_mem` is sent before it commits, in segments that may
/// interleave with other transactions: [`StreamKind::Start`], its changes, [`StreamKind::Stop`], again and
/// again, then either [`Event::Commit`] (with the transaction's xid: Stream Commit), [`Event::TwoPhase`]
/// (Stream Prepare) or a [`StreamKind::Abort`] of the whole transaction. Nothing of it is committed before that
/// commit. After a reconnect the server streams an unfinished transaction again from its first segment
/// ([`StreamControl::first_segment`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StreamControl<'a> {
    /// Start, stop or abort.
    pub kind: StreamKind,
    /// The top-level transaction's xid (for Stop, the one its Start named).
    pub xid: Option<u64>,
    /// Abort: the aborted (sub)transaction.
    pub subxid: Option<u64>,
    /// Start: whether this is the transaction's first segment.
    pub first_segment: Option<bool>,
    /// Abort: the abort's LSN (protocol 4 parallel streaming only).
    pub lsn: Option<Lsn>,
    /// Abort: the abort time (protocol 4 parallel streaming only), as the server would print it.
    pub timestamp: Option<Cow<'a, str>>,
}

impl StreamControl<'_> {
    /// A copy that owns its text.
    pub fn into_owned(self) -> StreamControl<'static> {
        StreamControl {
            kind: self.kind,
            xid: self.xid,
            subxid: self.subxid,
            first_segment: self.first_segment,
            lsn: self.lsn,
            timestamp: self.timestamp.map(own),
        }
    }
}

/// A logical decoding message (`pg_logical_emit_message`).
///
/// Format 1 prints no `xid`/`timestamp`/`origin` on a message (a transactional one has them on the surrounding
/// [`Event::Begin`]/[`Event::Commit`], a non-transactional document has none): from format 1 all three are
/// [`Nullable::Absent`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Message<'a> {
    /// `xid` (format 2, include-xids): [`Nullable::Null`] on a non-transactional message.
    pub xid: Nullable<u64>,
    /// `lsn`.
    pub lsn: Option<Lsn>,
    /// `timestamp` (format 2, include-timestamp): [`Nullable::Null`] on a non-transactional message.
    pub timestamp: Nullable<Cow<'a, str>>,
    /// `origin` (format 2, include-origin): [`Nullable::Null`] on a non-transactional message.
    pub origin: Nullable<u32>,
    /// Whether the message is part of a transaction (between its Begin and Commit).
    pub transactional: bool,
    /// `prefix`.
    pub prefix: Cow<'a, str>,
    /// `content`: the message bytes, cut by wal2json at the first NUL. Need not be UTF-8.
    pub content: Cow<'a, [u8]>,
}

impl Message<'_> {
    /// The content as text, when it is valid UTF-8.
    pub fn content_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.content).ok()
    }
    /// A copy that owns its text.
    pub fn into_owned(self) -> Message<'static> {
        Message {
            xid: self.xid,
            lsn: self.lsn,
            timestamp: self.timestamp.map(own),
            origin: self.origin,
            transactional: self.transactional,
            prefix: own(self.prefix),
            content: Cow::Owned(self.content.into_owned()),
        }
    }
}

/// What kind of event an [`Event`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// [`Event::Begin`]
    Begin,
    /// [`Event::Commit`]
    Commit,
    /// [`Event::Insert`]
    Insert,
    /// [`Event::Update`]
    Update,
    /// [`Event::Delete`]
    Delete,
    /// [`Event::Truncate`]
    Truncate,
    /// [`Event::Message`]
    Message,
    /// [`Event::TwoPhase`]
    TwoPhase,
    /// [`Event::Stream`]
    Stream,
}

/// One decoded event.
///
/// wal2json format 2 and test_decoding give one event per payload (test_decoding's TRUNCATE of several tables:
/// one per table). A format 1 document gives `Begin`, its changes and `Commit` (an empty
/// transaction `{"change":[]}` gives just `Begin` and `Commit`; a non-transactional message document gives just
/// the `Message`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event<'a> {
    /// Transaction start (format 2 `B`, or a format 1 document/chunk header).
    Begin(Transaction<'a>),
    /// Transaction end (format 2 `C`, or the end of a format 1 document/chunked transaction).
    Commit(Transaction<'a>),
    /// INSERT (`I` / `insert`).
    Insert(Change<'a>),
    /// UPDATE (`U` / `update`).
    Update(Change<'a>),
    /// DELETE (`D` / `delete`).
    Delete(Change<'a>),
    /// TRUNCATE (`T`, format 2 only).
    Truncate(Truncate<'a>),
    /// A logical message (`M` / `message`).
    Message(Message<'a>),
    /// A step of a two-phase transaction (not from wal2json).
    TwoPhase(TwoPhase<'a>),
    /// A streamed transaction's segment boundary or abort (pgoutput only).
    Stream(StreamControl<'a>),
}

impl<'a> Event<'a> {
    /// The kind of event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Begin(_) => EventKind::Begin,
            Event::Commit(_) => EventKind::Commit,
            Event::Insert(_) => EventKind::Insert,
            Event::Update(_) => EventKind::Update,
            Event::Delete(_) => EventKind::Delete,
            Event::Truncate(_) => EventKind::Truncate,
            Event::Message(_) => EventKind::Message,
            Event::TwoPhase(_) => EventKind::TwoPhase,
            Event::Stream(_) => EventKind::Stream,
        }
    }
    /// The change, for INSERT/UPDATE/DELETE.
    pub fn change(&self) -> Option<&Change<'a>> {
        match self {
            Event::Insert(c) | Event::Update(c) | Event::Delete(c) => Some(c),
            _ => None,
        }
    }
    /// The `xid`, when the server sent one (`None` also for a message's `"xid":null`).
    pub fn xid(&self) -> Option<u64> {
        match self {
            Event::Begin(t) | Event::Commit(t) => t.xid,
            Event::Insert(c) | Event::Update(c) | Event::Delete(c) => c.xid,
            Event::Truncate(t) => t.xid,
            Event::Message(m) => m.xid.value(),
            Event::TwoPhase(t) => t.xid,
            Event::Stream(s) => s.xid,
        }
    }
    /// The `lsn`, when the server sent one (format 2 with include-lsn).
    pub fn lsn(&self) -> Option<Lsn> {
        match self {
            Event::Begin(t) | Event::Commit(t) => t.lsn,
            Event::Insert(c) | Event::Update(c) | Event::Delete(c) => c.lsn,
            Event::Truncate(t) => t.lsn,
            Event::Message(m) => m.lsn,
            Event::TwoPhase(_) => None,
            Event::Stream(s) => s.lsn,
        }
    }
    /// A copy that owns all its text (allocates).
    pub fn into_owned(self) -> Event<'static> {
        match self {
            Event::Begin(t) => Event::Begin(t.into_owned()),
            Event::Commit(t) => Event::Commit(t.into_owned()),
            Event::Insert(c) => Event::Insert(c.into_owned()),
            Event::Update(c) => Event::Update(c.into_owned()),
            Event::Delete(c) => Event::Delete(c.into_owned()),
            Event::Truncate(t) => Event::Truncate(t.into_owned()),
            Event::Message(m) => Event::Message(m.into_owned()),
            Event::TwoPhase(t) => Event::TwoPhase(t.into_owned()),
            Event::Stream(s) => Event::Stream(s.into_owned()),
        }
    }
}

fn own(c: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(c.into_owned())
}
