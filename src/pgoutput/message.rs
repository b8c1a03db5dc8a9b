//! pgoutput's messages, parsed in place: every string and tuple value is a slice of the payload.
//!
//! One XLogData payload of a pgoutput stream is exactly one message: its type byte, then the fields
//! `logicalrep_write_*` (PostgreSQL's `src/backend/replication/logical/proto.c`) writes, in network byte order.
//! [`parse`] checks the whole payload (every length, every string's NUL and UTF-8, no byte left over) before it
//! returns, so that what it returns can be read without further failures: [`TupleData`], [`RelationColumns`] and
//! [`RelationIds`] iterate over bytes already checked.
//!
//! Inside a streamed block (between Stream Start and Stream Stop, protocol 2 and later with `streaming`), the
//! Relation, Type, Insert, Update, Delete, Truncate and Message messages carry the xid of the (sub)transaction
//! they belong to right after their type byte: [`parse`] needs to know whether it is inside one (`in_stream`),
//! as the server's apply worker does.

use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// A bounds-checked reader over one payload; every failure is a decode error at its byte offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
    // The readers are inlined into the message and tuple loops; their errors are built out of line (cold), so
    // that the happy path is a bounds check and a load.
    #[inline]
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        match self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.truncated(n, what)),
        }
    }
    #[cold]
    #[inline(never)]
    fn truncated(&self, n: usize, what: &str) -> Error {
        Error::decode(self.pos, format_args!("truncated {what}: {n} bytes needed, {} left", self.left()))
    }
    #[inline]
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let at = self.pos;
        match self.buf.get(at..).and_then(|rest| rest.first_chunk::<N>()) {
            Some(a) => {
                self.pos = at + N;
                Ok(*a)
            }
            None => Err(self.truncated(N, what)),
        }
    }
    #[inline]
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub(crate) fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub(crate) fn lsn(&mut self, what: &str) -> Result<Lsn> {
        Ok(Lsn(u64::from_be_bytes(self.array(what)?)))
    }
    /// A length-prefixed (`int32`) byte string; a negative length is an error.
    #[inline]
    fn counted(&mut self, what: &str) -> Result<&'a [u8]> {
        let at = self.pos;
        let n = self.i32(what)?;
        match usize::try_from(n) {
            Ok(n) => self.take(n, what),
            Err(_) => Err(negative_length(at, n, what)),
        }
    }
    /// A NUL-terminated string (`pq_sendstring`), which must be UTF-8.
    pub(crate) fn cstr(&mut self, what: &str) -> Result<&'a str> {
        let at = self.pos;
        let rest = self.buf.get(at..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::decode(at, format_args!("unterminated {what} (no NUL before the end)")))?;
        let s = rest.get(..n).unwrap_or_default();
        let s = std::str::from_utf8(s)
            .map_err(|e| Error::decode(at + e.valid_up_to(), format_args!("{what} is not valid UTF-8")))?;
        self.pos = at + n + 1;
        Ok(s)
    }
    /// The optional xid of a message inside a streamed block.
    fn stream_xid(&mut self, in_stream: bool) -> Result<Option<u32>> {
        if in_stream {
            Ok(Some(self.u32("xid of a streamed change")?))
        } else {
            Ok(None)
        }
    }
    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(Error::decode(self.pos, format_args!("{} bytes after the end of the message", self.left())))
        }
    }
}

/// Begin (`B`): a transaction's changes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Begin {
    /// The transaction's final LSN: where its commit record starts.
    pub final_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 00:00:00 UTC.
    pub commit_time: i64,
    /// The transaction's xid.
    pub xid: u32,
}

/// Commit (`C`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Commit {
    /// Flags (none defined; the server sends 0).
    pub flags: u8,
    /// The commit record's LSN (its start).
    pub commit_lsn: Lsn,
    /// The end of the commit record: where a restart resumes after this transaction (what to acknowledge).
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 00:00:00 UTC.
    pub commit_time: i64,
}

/// Origin (`O`): the transaction was replicated from another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin<'a> {
    /// The commit LSN on the origin server.
    pub lsn: Lsn,
    /// The replication origin's name.
    pub name: &'a str,
}

/// Relation (`R`): the definition of a relation id, which the changes that follow refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Relation<'a> {
    /// Inside a streamed block: the (sub)transaction's xid.
    pub xid: Option<u32>,
    /// The relation's OID, its id in this stream.
    pub id: u32,
    /// Its schema (`pg_catalog` when the server sent an empty string, as it does for that schema).
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Its published columns, in order.
    pub columns: RelationColumns<'a>,
}

/// The columns of a [`Relation`] message (already checked by [`parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelationColumns<'a> {
    count: u16,
    bytes: &'a [u8],
}

/// One column of a [`Relation`] message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelationColumn<'a> {
    /// Flags: bit 0 = part of the replica identity (every column with REPLICA IDENTITY FULL).
    pub flags: u8,
    /// Column name.
    pub name: &'a str,
    /// Type OID.
    pub type_oid: u32,
    /// `atttypmod` (-1 when the type has none).
    pub typmod: i32,
}

impl RelationColumn<'_> {
    /// Whether the column is part of the replica identity (the old key of UPDATE and DELETE).
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

impl<'a> RelationColumns<'a> {
    /// How many columns.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The columns in order.
    pub fn iter(&self) -> impl Iterator<Item = RelationColumn<'a>> + 'a {
        let mut r = Reader::new(self.bytes);
        (0..self.count).map_while(move |_| relation_column(&mut r).ok())
    }
}

fn relation_column<'a>(r: &mut Reader<'a>) -> Result<RelationColumn<'a>> {
    Ok(RelationColumn {
        flags: r.u8("column flags")?,
        name: r.cstr("column name")?,
        type_oid: r.u32("column type OID")?,
        typmod: r.i32("column typmod")?,
    })
}

/// Type (`Y`): the name of a type that is not built in (OID ≥ 10000), sent before a Relation that uses it.
///
/// For a domain the server sends the *base* type's schema and name with the domain's OID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Type<'a> {
    /// Inside a streamed block: the (sub)transaction's xid.
    pub xid: Option<u32>,
    /// The type's OID (the domain's, for a domain).
    pub id: u32,
    /// The schema (`pg_catalog` when the server sent an empty string).
    pub namespace: &'a str,
    /// The type name (`pg_type.typname`: `_mood` for an array of `mood`).
    pub name: &'a str,
}

/// One column value of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TupleValue<'a> {
    /// `n`: NULL.
    Null,
    /// `u`: an unchanged TOASTed value the server did not send.
    Unchanged,
    /// `t`: the type's text output.
    Text(&'a [u8]),
    /// `b`: the type's binary send format (`binary true`).
    Binary(&'a [u8]),
}

/// The values of one tuple (already checked by [`parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TupleData<'a> {
    count: u16,
    bytes: &'a [u8],
    /// Offset of `bytes` in the payload (for error messages).
    offset: usize,
}

impl<'a> TupleData<'a> {
    /// How many columns.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The byte offset of the first column value in the payload.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// The values in column order.
    pub fn iter(&self) -> TupleIter<'a> {
        TupleIter { r: Reader::new(self.bytes), left: self.count }
    }
}

/// Iterator over a [`TupleData`]'s values.
#[derive(Debug, Clone)]
pub struct TupleIter<'a> {
    r: Reader<'a>,
    left: u16,
}

impl<'a> Iterator for TupleIter<'a> {
    type Item = TupleValue<'a>;
    fn next(&mut self) -> Option<TupleValue<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        tuple_value(&mut self.r).ok()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

#[cold]
#[inline(never)]
fn negative_length(at: usize, n: i32, what: &str) -> Error {
    Error::decode(at, format_args!("negative length {n} of {what}"))
}

#[inline]
fn tuple_value<'a>(r: &mut Reader<'a>) -> Result<TupleValue<'a>> {
    let at = r.pos();
    match r.u8("column kind")? {
        b'n' => Ok(TupleValue::Null),
        b'u' => Ok(TupleValue::Unchanged),
        b't' => Ok(TupleValue::Text(r.counted("text value")?)),
        b'b' => Ok(TupleValue::Binary(r.counted("binary value")?)),
        k => Err(Error::decode(at, format_args!("unknown column kind {:?} (expected n, u, t or b)", char::from(k)))),
    }
}

/// Reads a tuple (`int16` count, then each value), checking every value.
fn tuple<'a>(r: &mut Reader<'a>, payload: &'a [u8]) -> Result<TupleData<'a>> {
    let count = r.u16("column count")?;
    let start = r.pos();
    for _ in 0..count {
        tuple_value(r)?;
    }
    Ok(TupleData { count, bytes: payload.get(start..r.pos()).unwrap_or_default(), offset: start })
}

/// Which old tuple an UPDATE or DELETE carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OldKind {
    /// `K`: the old replica identity key (other columns are NULL).
    Key,
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full,
}

/// The old tuple of an UPDATE or DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OldTuple<'a> {
    /// Key or full row.
    pub kind: OldKind,
    /// The values.
    pub data: TupleData<'a>,
}

/// Insert (`I`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insert<'a> {
    /// Inside a streamed block: the (sub)transaction's xid.
    pub xid: Option<u32>,
    /// The relation (defined by an earlier Relation message).
    pub relation_id: u32,
    /// The new row.
    pub new: TupleData<'a>,
}

/// Update (`U`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Update<'a> {
    /// Inside a streamed block: the (sub)transaction's xid.
    pub xid: Option<u32>,
    /// The relation.
    pub relation_id: u32,
    /// The old key (`K`: the key changed) or old row (`O`: REPLICA IDENTITY FULL); `None` when the key did not
    /// change.
    pub old: Option<OldTuple<'a>>,
    /// The new row (unchanged TOASTed values as [`TupleValue::Unchanged`]).
    pub new: TupleData<'a>,
}

/// Delete (`D`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delete<'a> {
    /// Inside a streamed block: the (sub)transaction's xid.
    pub xid: Option<u32>,
    /// The relation.
    pub relation_id: u32,
    /// The old key or old row.
    pub old: OldTuple<'a>,
}

/// The relation ids of a [`Truncate`] (already checked by [`parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelationIds<'a> {
    bytes: &'a [u8],
    /// Offset of `bytes` in the payload.
    offset: usize,
}

impl<'a> RelationIds<'a> {
    /// How many relations.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// The ids in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.bytes.chunks_exact(4).filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
    }
    /// The `i`-th id.
    pub fn get(&self, i: usize) -> Option<u32> {
        let at = i.checked_mul(4)?;
        let b: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }
    /// The byte offset of the `i`-th id in the payload.
    pub fn offset(&self, i: usize) -> usize {
        self.offset.saturating_add(i.saturating_mul(4))
    }
}

/// Truncate (`T`): one statement's relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Truncate<'a> {
    /// Inside a streamed block: the (sub)transaction's xid.
    pub xid: Option<u32>,
    /// Flags: bit 0 CASCADE, bit 1 RESTART IDENTITY.
    pub flags: u8,
    /// The truncated relations.
    pub relation_ids: RelationIds<'a>,
}

impl Truncate<'_> {
    /// `TRUNCATE … CASCADE`.
    pub fn cascade(&self) -> bool {
        self.flags & 1 != 0
    }
    /// `TRUNCATE … RESTART IDENTITY`.
    pub fn restart_identity(&self) -> bool {
        self.flags & 2 != 0
    }
}

/// Message (`M`, with `messages true`): `pg_logical_emit_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogicalMessage<'a> {
    /// Inside a streamed block: the (sub)transaction's xid.
    pub xid: Option<u32>,
    /// Flags: bit 0 = transactional.
    pub flags: u8,
    /// The message's LSN.
    pub lsn: Lsn,
    /// Its prefix.
    pub prefix: &'a str,
    /// Its content, every byte.
    pub content: &'a [u8],
}

impl LogicalMessage<'_> {
    /// Whether the message is part of its transaction (else it was decoded at once, outside any).
    pub fn transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// Stream Start (`S`, protocol 2+): a segment of an in-progress transaction follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamStart {
    /// The top-level transaction's xid.
    pub xid: u32,
    /// Whether this is the transaction's first segment (after a reconnect the server streams it again from
    /// its first segment).
    pub first_segment: bool,
}

/// Stream Commit (`c`, protocol 2+): a streamed transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamCommit {
    /// The transaction's xid.
    pub xid: u32,
    /// Flags (none defined).
    pub flags: u8,
    /// The commit record's LSN.
    pub commit_lsn: Lsn,
    /// The end of the commit record (what to acknowledge).
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 00:00:00 UTC.
    pub commit_time: i64,
}

/// Stream Abort (`A`, protocol 2+): a streamed transaction, or one of its subtransactions, aborted.
///
/// The abort LSN and time are sent with parallel streaming (protocol 4, `streaming parallel`) only; other
/// streams (and PostgreSQL 18's stray aborts on protocol 1) have just the two xids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamAbort {
    /// The top-level transaction's xid.
    pub xid: u32,
    /// The aborted (sub)transaction's xid: equal to `xid` when the whole transaction aborted.
    pub subxid: u32,
    /// The abort record's LSN (protocol 4 parallel streaming).
    pub abort_lsn: Option<Lsn>,
    /// The abort time (protocol 4 parallel streaming), microseconds since 2000-01-01 UTC.
    pub abort_time: Option<i64>,
}

/// Begin Prepare (`b`, protocol 3+ with `two_phase`): a prepared transaction's changes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BeginPrepare<'a> {
    /// The prepare record's LSN.
    pub prepare_lsn: Lsn,
    /// The end of the prepare record.
    pub end_lsn: Lsn,
    /// Prepare time, microseconds since 2000-01-01 UTC.
    pub prepare_time: i64,
    /// The transaction's xid.
    pub xid: u32,
    /// Its global identifier.
    pub gid: &'a str,
}

/// Prepare (`P`) and Stream Prepare (`p`): the end of a prepared transaction's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prepare<'a> {
    /// Flags (none defined).
    pub flags: u8,
    /// The prepare record's LSN.
    pub prepare_lsn: Lsn,
    /// The end of the prepare record (what to acknowledge).
    pub end_lsn: Lsn,
    /// Prepare time, microseconds since 2000-01-01 UTC.
    pub prepare_time: i64,
    /// The transaction's xid.
    pub xid: u32,
    /// Its global identifier.
    pub gid: &'a str,
}

/// Commit Prepared (`K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitPrepared<'a> {
    /// Flags (none defined).
    pub flags: u8,
    /// The commit record's LSN.
    pub commit_lsn: Lsn,
    /// The end of the commit record (what to acknowledge).
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 UTC.
    pub commit_time: i64,
    /// The transaction's xid.
    pub xid: u32,
    /// Its global identifier.
    pub gid: &'a str,
}

/// Rollback Prepared (`r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RollbackPrepared<'a> {
    /// Flags (none defined).
    pub flags: u8,
    /// The end of the prepare record.
    pub prepare_end_lsn: Lsn,
    /// The end of the rollback record (what to acknowledge).
    pub rollback_end_lsn: Lsn,
    /// Prepare time, microseconds since 2000-01-01 UTC.
    pub prepare_time: i64,
    /// Rollback time, microseconds since 2000-01-01 UTC.
    pub rollback_time: i64,
    /// The transaction's xid.
    pub xid: u32,
    /// Its global identifier.
    pub gid: &'a str,
}

/// One pgoutput message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Message<'a> {
    /// `B`
    Begin(Begin),
    /// `C`
    Commit(Commit),
    /// `O`
    Origin(Origin<'a>),
    /// `R`
    Relation(Relation<'a>),
    /// `Y`
    Type(Type<'a>),
    /// `I`
    Insert(Insert<'a>),
    /// `U`
    Update(Update<'a>),
    /// `D`
    Delete(Delete<'a>),
    /// `T`
    Truncate(Truncate<'a>),
    /// `M`
    Message(LogicalMessage<'a>),
    /// `S`
    StreamStart(StreamStart),
    /// `E`
    StreamStop,
    /// `c`
    StreamCommit(StreamCommit),
    /// `A`
    StreamAbort(StreamAbort),
    /// `b`
    BeginPrepare(BeginPrepare<'a>),
    /// `P`
    Prepare(Prepare<'a>),
    /// `K`
    CommitPrepared(CommitPrepared<'a>),
    /// `r`
    RollbackPrepared(RollbackPrepared<'a>),
    /// `p`
    StreamPrepare(Prepare<'a>),
}

impl Message<'_> {
    /// The message's type byte.
    pub fn tag(&self) -> u8 {
        match self {
            Message::Begin(_) => b'B',
            Message::Commit(_) => b'C',
            Message::Origin(_) => b'O',
            Message::Relation(_) => b'R',
            Message::Type(_) => b'Y',
            Message::Insert(_) => b'I',
            Message::Update(_) => b'U',
            Message::Delete(_) => b'D',
            Message::Truncate(_) => b'T',
            Message::Message(_) => b'M',
            Message::StreamStart(_) => b'S',
            Message::StreamStop => b'E',
            Message::StreamCommit(_) => b'c',
            Message::StreamAbort(_) => b'A',
            Message::BeginPrepare(_) => b'b',
            Message::Prepare(_) => b'P',
            Message::CommitPrepared(_) => b'K',
            Message::RollbackPrepared(_) => b'r',
            Message::StreamPrepare(_) => b'p',
        }
    }
}

/// Parse one payload (one whole message). `in_stream`: whether it comes between a Stream Start and its Stream
/// Stop, where data messages carry an xid.
///
/// Every malformed payload (truncated at any byte, an unknown type or column kind, a negative length, a string
/// without its NUL or not UTF-8, bytes left over) is an [`ErrorKind::Decode`](crate::ErrorKind::Decode) error
/// whose message ends with the byte offset (`… at byte N`). Never panics, never allocates.
pub fn parse(payload: &[u8], in_stream: bool) -> Result<Message<'_>> {
    let mut r = Reader::new(payload);
    let tag = r.u8("message type")?;
    let m = match tag {
        b'B' => Message::Begin(Begin {
            final_lsn: r.lsn("final LSN")?,
            commit_time: r.i64("commit time")?,
            xid: r.u32("xid")?,
        }),
        b'C' => Message::Commit(Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.i64("commit time")?,
        }),
        b'O' => Message::Origin(Origin { lsn: r.lsn("origin LSN")?, name: r.cstr("origin name")? }),
        b'R' => {
            let xid = r.stream_xid(in_stream)?;
            let id = r.u32("relation id")?;
            let namespace = namespace(r.cstr("schema name")?);
            let name = r.cstr("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let count = r.u16("column count")?;
            let start = r.pos();
            for _ in 0..count {
                relation_column(&mut r)?;
            }
            let columns = RelationColumns { count, bytes: payload.get(start..r.pos()).unwrap_or_default() };
            Message::Relation(Relation { xid, id, namespace, name, replica_identity, columns })
        }
        b'Y' => Message::Type(Type {
            xid: r.stream_xid(in_stream)?,
            id: r.u32("type OID")?,
            namespace: namespace(r.cstr("type schema")?),
            name: r.cstr("type name")?,
        }),
        b'I' => {
            let xid = r.stream_xid(in_stream)?;
            let relation_id = r.u32("relation id")?;
            expect(&mut r, b'N', "'N' (new tuple)")?;
            Message::Insert(Insert { xid, relation_id, new: tuple(&mut r, payload)? })
        }
        b'U' => {
            let xid = r.stream_xid(in_stream)?;
            let relation_id = r.u32("relation id")?;
            let at = r.pos();
            let mut old = None;
            let mut marker = r.u8("tuple marker")?;
            if let Some(kind) = old_kind(marker) {
                old = Some(OldTuple { kind, data: tuple(&mut r, payload)? });
                marker = r.u8("tuple marker")?;
            }
            if marker != b'N' {
                let at = if old.is_some() { r.pos().saturating_sub(1) } else { at };
                return Err(Error::decode(at, format_args!("expected 'N' (new tuple), got {:?}", char::from(marker))));
            }
            Message::Update(Update { xid, relation_id, old, new: tuple(&mut r, payload)? })
        }
        b'D' => {
            let xid = r.stream_xid(in_stream)?;
            let relation_id = r.u32("relation id")?;
            let at = r.pos();
            let marker = r.u8("tuple marker")?;
            let kind = old_kind(marker).ok_or_else(|| {
                Error::decode(at, format_args!("expected 'K' or 'O' (old tuple), got {:?}", char::from(marker)))
            })?;
            Message::Delete(Delete { xid, relation_id, old: OldTuple { kind, data: tuple(&mut r, payload)? } })
        }
        b'T' => {
            let xid = r.stream_xid(in_stream)?;
            let at = r.pos();
            let n = r.i32("relation count")?;
            let n = usize::try_from(n).map_err(|_| Error::decode(at, format_args!("negative relation count {n}")))?;
            let flags = r.u8("truncate flags")?;
            let offset = r.pos();
            let bytes = n
                .checked_mul(4)
                .ok_or_else(|| Error::decode(at, format_args!("relation count {n} too large")))
                .and_then(|len| r.take(len, "relation ids"))?;
            Message::Truncate(Truncate { xid, flags, relation_ids: RelationIds { bytes, offset } })
        }
        b'M' => Message::Message(LogicalMessage {
            xid: r.stream_xid(in_stream)?,
            flags: r.u8("message flags")?,
            lsn: r.lsn("message LSN")?,
            prefix: r.cstr("message prefix")?,
            content: r.counted("message content")?,
        }),
        b'S' => {
            let xid = r.u32("xid")?;
            let at = r.pos();
            let first_segment = match r.u8("first-segment flag")? {
                0 => false,
                1 => true,
                b => return Err(Error::decode(at, format_args!("first-segment flag {b} (expected 0 or 1)"))),
            };
            Message::StreamStart(StreamStart { xid, first_segment })
        }
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit(StreamCommit {
            xid: r.u32("xid")?,
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.i64("commit time")?,
        }),
        b'A' => {
            let xid = r.u32("xid")?;
            let subxid = r.u32("subtransaction xid")?;
            // parallel streaming adds the abort LSN and time; anything else has just the two xids
            let (abort_lsn, abort_time) =
                if r.left() == 0 { (None, None) } else { (Some(r.lsn("abort LSN")?), Some(r.i64("abort time")?)) };
            Message::StreamAbort(StreamAbort { xid, subxid, abort_lsn, abort_time })
        }
        b'b' => Message::BeginPrepare(BeginPrepare {
            prepare_lsn: r.lsn("prepare LSN")?,
            end_lsn: r.lsn("end LSN")?,
            prepare_time: r.i64("prepare time")?,
            xid: r.u32("xid")?,
            gid: r.cstr("gid")?,
        }),
        b'P' | b'p' => {
            let p = Prepare {
                flags: r.u8("flags")?,
                prepare_lsn: r.lsn("prepare LSN")?,
                end_lsn: r.lsn("end LSN")?,
                prepare_time: r.i64("prepare time")?,
                xid: r.u32("xid")?,
                gid: r.cstr("gid")?,
            };
            if tag == b'P' {
                Message::Prepare(p)
            } else {
                Message::StreamPrepare(p)
            }
        }
        b'K' => Message::CommitPrepared(CommitPrepared {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.i64("commit time")?,
            xid: r.u32("xid")?,
            gid: r.cstr("gid")?,
        }),
        b'r' => Message::RollbackPrepared(RollbackPrepared {
            flags: r.u8("flags")?,
            prepare_end_lsn: r.lsn("prepare end LSN")?,
            rollback_end_lsn: r.lsn("rollback end LSN")?,
            prepare_time: r.i64("prepare time")?,
            rollback_time: r.i64("rollback time")?,
            xid: r.u32("xid")?,
            gid: r.cstr("gid")?,
        }),
        t => return Err(Error::decode(0, format_args!("unknown pgoutput message type {:?}", char::from(t)))),
    };
    r.finish()?;
    Ok(m)
}

fn namespace(s: &str) -> &str {
    if s.is_empty() {
        "pg_catalog"
    } else {
        s
    }
}

fn old_kind(marker: u8) -> Option<OldKind> {
    match marker {
        b'K' => Some(OldKind::Key),
        b'O' => Some(OldKind::Full),
        _ => None,
    }
}

fn expect(r: &mut Reader<'_>, want: u8, what: &str) -> Result<()> {
    let at = r.pos();
    let b = r.u8(what)?;
    if b == want {
        Ok(())
    } else {
        Err(Error::decode(at, format_args!("expected {what}, got {:?}", char::from(b))))
    }
}

/// The transaction boundary-relevant facts of a payload without parsing it all: its type byte and, for a
/// Message, whether it is transactional. `None` for an empty payload.
pub(crate) fn peek_message_flags(payload: &[u8], in_stream: bool) -> Option<(u8, Option<bool>)> {
    let (&tag, rest) = payload.split_first()?;
    if tag != b'M' {
        return Some((tag, None));
    }
    let flags = rest.get(if in_stream { 4 } else { 0 }).copied();
    Some((tag, flags.map(|f| f & 1 != 0)))
}

/// The end LSN a payload that ends a transaction carries (Commit, Stream Commit, Prepare, Stream Prepare, Commit
/// Prepared, Rollback Prepared), read at its fixed offset.
pub(crate) fn end_lsn(payload: &[u8]) -> Option<Lsn> {
    // type byte, then: C: flags, commit LSN, end LSN; c: xid, flags, commit LSN, end LSN; P/p/K: flags, LSN,
    // end LSN; r: flags, prepare end LSN, rollback end LSN
    let at = match payload.first()? {
        b'C' | b'P' | b'p' | b'K' | b'r' => 1 + 1 + 8,
        b'c' => 1 + 4 + 1 + 8,
        _ => return None,
    };
    let b: [u8; 8] = payload.get(at..at + 8)?.try_into().ok()?;
    Some(Lsn(u64::from_be_bytes(b)))
}
