//! pgoutput, PostgreSQL's built-in output plugin: its binary messages (protocol versions 1 to 4) parsed in place,
//! and decoded into the plugin-neutral typed [`Event`](crate::event::Event)s.
//!
//! Two levels:
//! - [`parse`]: one payload into its [`Message`] (every field, zero-copy, tuple values as text or binary bytes):
//!   the whole protocol, for a caller that wants it as it is (see [`message`] for the formats);
//! - [`PgoutputDecoder`]: the [`Decode`](crate::plugin::Decode) of [`Pgoutput`](crate::plugin::Pgoutput): it
//!   keeps the relation cache and the transaction state and turns payloads into [`Event`](crate::event::Event)s, with values and
//!   type names as a wal2json format 2 slot gives them for the same rows.
//!
//! Sans IO (no tokio), no panics, no `unsafe`. Every malformed payload is an
//! [`ErrorKind::Decode`](crate::ErrorKind::Decode) error whose message ends with its byte offset (truncated at any
//! byte, unknown message type or column kind, negative length, string without NUL or not UTF-8, bytes left
//! over, a tuple whose column count is not its relation's, a change of a relation id no Relation message
//! defined).
//!
//! # Messages and events
//!
//! | message | event |
//! |---|---|
//! | Begin `B` | [`Event::Begin`](crate::event::Event::Begin): `xid`, `lsn` = the commit record's start (`final_lsn`), `timestamp` (no `next_lsn`: Begin does not carry it) |
//! | Commit `C` | [`Event::Commit`](crate::event::Event::Commit): `xid` (the Begin's), `lsn` = commit LSN, `next_lsn` = end LSN, `timestamp` |
//! | Relation `R`, Type `Y`, Origin `O` | none: the relation cache / type names are updated (the origin is not kept) |
//! | Insert `I`, Update `U`, Delete `D` | [`Event::Insert`](crate::event::Event::Insert) / [`Event::Update`](crate::event::Event::Update) / [`Event::Delete`](crate::event::Event::Delete) (below) |
//! | Truncate `T` | one [`Event::Truncate`](crate::event::Event::Truncate) per relation, with `cascade` and `restart_seqs` |
//! | Message `M` (`messages true`) | [`Event::Message`](crate::event::Event::Message): `lsn`, `transactional`, `prefix`, every content byte; `xid` (`null` if non-transactional) |
//! | Stream Start `S`, Stream Stop `E` | [`Event::Stream`](crate::event::Event::Stream) ([`StreamKind::Start`](crate::event::StreamKind::Start) with `first_segment`, [`StreamKind::Stop`](crate::event::StreamKind::Stop)) |
//! | Stream Commit `c` | [`Event::Commit`](crate::event::Event::Commit) with the streamed transaction's `xid`, `lsn`, `next_lsn`, `timestamp` |
//! | Stream Abort `A` | [`Event::Stream`](crate::event::Event::Stream) ([`StreamKind::Abort`](crate::event::StreamKind::Abort): `xid`, `subxid`; `lsn` and `timestamp` on protocol 4 parallel streaming) |
//! | Begin Prepare `b` | [`Event::Begin`](crate::event::Event::Begin): `xid`, `lsn` = prepare LSN, `next_lsn` = the prepare's end, `timestamp` = prepare time |
//! | Prepare `P`, Stream Prepare `p` | [`Event::TwoPhase`](crate::event::Event::TwoPhase) [`TwoPhaseKind::Prepare`](crate::event::TwoPhaseKind::Prepare) (`gid`, `xid`, prepare time) |
//! | Commit Prepared `K`, Rollback Prepared `r` | [`Event::TwoPhase`](crate::event::Event::TwoPhase) `CommitPrepared` / `RollbackPrepared` (commit / rollback time) |
//!
//! Changes: `schema` and `table` from the relation cache; `columns` = the new row (INSERT, UPDATE), each column
//! with `name`, `type_name` (below), `type_oid` (unsigned) and `value`; an unchanged TOASTed value (`u`) is left
//! out of `columns`, never invented, as wal2json leaves it out. `identity`, as wal2json format 2 gives it: the
//! replica identity's columns of the old key (`K`: the other columns the server sends are NULL placeholders and
//! are left out), every column of the old row (`O`, REPLICA IDENTITY FULL), and for an UPDATE without an old
//! tuple (its key did not change) the identity columns of the new row. `xid`: the Begin's, or inside a streamed
//! block the message's own (a subtransaction's xid for a change made in one). pgoutput sends no per-change LSN,
//! commit time or origin: those are `None` on changes.
//!
//! The decoder parses data messages with the xid field between a Stream Start and its Stream Stop, as the
//! server writes them, and gives a streamed transaction's changes as they come, between
//! [`Event::Stream`](crate::event::Event::Stream) markers (see [`StreamControl`](crate::event::StreamControl)).
//! Fed directly from the wire, those are uncommitted; [`Pgoutput`](crate::plugin::Pgoutput)'s router
//! ([`StreamedTxns`](crate::plugin::StreamedTxns)) holds the segments until the Stream Commit and drops aborted
//! ones, so that what reaches the decoder through it is each committed transaction whole (its segments, Start
//! and Stop included, then its Stream Commit), in commit order. A Stream Abort is accepted on any protocol version (PostgreSQL 18 has been seen sending
//! them to protocol 1 clients that never asked for streaming): its two forms (8 bytes, or 24 with the abort LSN
//! and time) are told apart by length.
//!
//! # Values: the same as wal2json's
//!
//! By the column's type OID, as wal2json decides (so a domain over a number, or an array, is a string in both):
//! - int2, int4, int8, oid, float4, float8, numeric: [`Value::Number`](crate::event::Value::Number) with the exact text the server sent
//!   (`12.50`, `9223372036854775807`, `1.5e+300`). **NaN, Infinity, -Infinity**: [`Value::String`](crate::event::Value::String) with that text.
//!   wal2json prints `null` for them (indistinguishable from SQL NULL); a [`Value::Number`](crate::event::Value::Number) is always a valid
//!   JSON number, so the honest representation of these is their text, as the test_decoding decoder gives it.
//! - boolean: [`Value::Bool`](crate::event::Value::Bool) (`t`/`f`).
//! - bytea: [`Value::String`](crate::event::Value::String) of the hex digits without `\x` (wal2json's value; with `bytea_output = escape` on
//!   the server, the escaped text whole, where wal2json drops its first two characters).
//! - everything else (text, varchar, char(n) with its padding, json, jsonb, uuid, dates and times, arrays,
//!   enums, domains, money, bit strings…): [`Value::String`](crate::event::Value::String) of the output text, borrowed from the payload.
//! - NULL: [`Value::Null`](crate::event::Value::Null).
//!
//! The output text is the walsender's: timestamps with time zone in its `TimeZone`, dates in its `DateStyle`,
//! money in its `lc_monetary`, as wal2json prints them in the same session.
//!
//! With `binary true` the server sends each value in its type's send format. The decoder gives the same values
//! as text would for bool, int2/4/8, oid, float4/float8 (PostgreSQL's shortest round-trip text, as printed with
//! the default `extra_float_digits` ≥ 1), numeric, bytea (hex digits), uuid, text, varchar, char(n), name, json
//! and jsonb. Every other type's text depends on session settings or on output functions the client does not
//! have (timestamps, dates, intervals, arrays, enums…): its value is [`Value::String`](crate::event::Value::String) of the **hex digits of the
//! send format**, with the column's `type_oid` to interpret it; [`parse`] gives the raw bytes
//! ([`TupleValue::Binary`]).
//!
//! # Type names: the same as wal2json's
//!
//! wal2json prints `format_type_with_typemod(atttypid, atttypmod)`; pgoutput sends each column's type OID and
//! typmod, and a Type message (schema, name) before a relation that uses a type with an OID of 10000 or more.
//! [`builtin_type_name`] reproduces `format_type` for every built-in type with its typmod (`integer`,
//! `character varying(20)`, `character(3)`, `numeric(10,2)`, `timestamp(3) with time zone`, `interval day to
//! second(3)`, `bit(5)`, `integer[]`, `"char"`); [`user_type_name`] prints a Type message's type as
//! `format_type` would under the default `search_path` (unqualified in `public`, quoted as `quote_identifier`
//! quotes: `mood`, `"MySchema".mood`, `mood[]` for an array). What pgoutput does not send cannot be printed:
//! - a **domain**: the server sends the domain's OID with its *base type's* name, so the type name is the base
//!   type's (`integer` where wal2json prints `posint`);
//! - a type in a schema on a non-default `search_path` of the walsender is qualified here and may not be there;
//! - a user type's typmod with its own `typmodout` is printed as `(n)`.
//!
//! # Other differences from wal2json (same rows otherwise)
//! - Timestamps (Begin/Commit/prepare times) are printed in UTC (`2026-01-02 03:04:05.123456+00`); wal2json
//!   prints them in the walsender's `TimeZone`: the same instant, the same text when that is UTC.
//! - Begin carries the commit record's start (`lsn`), not `nextlsn`; changes carry no `lsn`, `timestamp` or
//!   `origin` (wal2json repeats the transaction's on each change with its include options).
//! - Generated columns are not sent by pgoutput before PostgreSQL 18 (`publish_generated_columns`); wal2json
//!   prints them. Publications with column lists or row filters send what they publish.
//! - A message's content is every byte (wal2json cuts it at the first NUL).
//! - pgoutput publishes only the tables of its publications, and a table without replica identity in a
//!   publication of updates or deletes makes those statements fail on the primary; wal2json prints every table.
//!
//! # Acknowledgement
//! Where each payload sits in a transaction, and what acknowledging it means, is
//! [`Pgoutput`](crate::plugin::Pgoutput)'s (its docs state the rule, streamed transactions included).

pub mod decoder;
pub mod message;
mod text;
mod types;

pub use decoder::{ColumnInfo, PgoutputDecoder, PgoutputEvents, RelationInfo};
pub use message::{parse, Message, OldKind, TupleValue};
pub use types::{builtin_type_name, is_builtin, quote_identifier, user_type_name};

#[cfg(test)]
mod tests;
