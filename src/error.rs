//! The one public error type.
//!
//! Every failure in pgrepl is an [`Error`] with a [`ErrorKind`]; server-reported errors keep every field of the
//! ErrorResponse in a [`DbError`]. Passwords never appear in any message built here.
//!
//! Branch on [`Error::kind`] (or, for a server error without a kind of its own, on [`Error::code`]), never on an
//! error's text: the text is for people and may change. A server error has kind [`ErrorKind::Db`] unless its
//! SQLSTATE has a kind of its own; [`Error::as_db`] and [`Error::code`] answer for every server error whatever its
//! kind. The SQLSTATEs that have one (mapped in one place, `kind_of_sqlstate` in this module):
//!
//! | SQLSTATE | kind | in answer to |
//! |---|---|---|
//! | `28P01` invalid_password, `28000` invalid_authorization_specification | [`ErrorKind::AuthFailed`] | anything |
//! | `42704` undefined_object | [`ErrorKind::SlotMissing`] | `DROP_`, `READ_REPLICATION_SLOT`, `START_REPLICATION` |
//! | `42710` duplicate_object | [`ErrorKind::SlotExists`] | `CREATE_REPLICATION_SLOT` |
//! | `55006` object_in_use | [`ErrorKind::SlotActive`] | any slot command |
//! | `55000` object_not_in_prerequisite_state | [`ErrorKind::SlotInvalid`] | `START_REPLICATION` |
//!
//! Only in answer to those commands can these codes be about the slot: elsewhere (`SHOW`, SQL on the replication
//! connection) `42704` is an unknown parameter or type, `55006` a database in use, and they stay
//! [`ErrorKind::Db`]; `55000` answers `CREATE_REPLICATION_SLOT` when `wal_level` is not `logical`, which is no
//! fault of a slot.

use std::fmt;

/// What class of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A socket or file operation failed.
    Io,
    /// The server sent bytes that break the protocol (bad length, unknown or out-of-order message, …).
    Protocol,
    /// pgrepl refused to authenticate, or the server failed to prove itself: `require_auth` or
    /// `channel_binding` not met, an unsupported method, a bad SCRAM server signature or message, the server
    /// ending the exchange early. For the server rejecting the credentials see [`ErrorKind::AuthFailed`]; for a
    /// missing password, [`ErrorKind::PasswordRequired`].
    Auth,
    /// The server asked for a password (cleartext, MD5 or SCRAM-SHA-256) and none is configured (connection
    /// string, `PGPASSWORD`, `.pgpass`). Raised by pgrepl before anything is sent; the caller may ask the user
    /// for one and connect again (`pgrepl recv` prompts on exactly this kind).
    PasswordRequired,
    /// The server rejected the connection's credentials or identity: SQLSTATE `28P01` (wrong password) or
    /// `28000` (no `pg_hba.conf` entry, unknown role, missing client certificate…). [`Error::as_db`] has the
    /// server's fields. Retrying with the same settings cannot help.
    AuthFailed,
    /// The server reported an error (ErrorResponse); see [`Error::db`].
    Db,
    /// A connection string, URI, environment variable or option is malformed, or so is a value given to a
    /// command: a replication slot name the server cannot accept (`proto::commands::validate_slot_name`), an
    /// LSN. Retrying cannot help.
    Config,
    /// A wal2json payload could not be decoded.
    Decode,
    /// The connection is closed.
    Closed,
    /// An operation did not finish in time.
    Timeout,
    /// TLS negotiation failed or TLS was required and not available.
    Tls,
    /// No host listed had the kind of server `target_session_attrs` asks for (read-write, standby, …).
    TargetSessionAttrs,
    /// The replication slot is invalidated or otherwise unusable: its WAL is gone (`wal_status` `lost`, or the
    /// server's `55000` on a slot command), or it uses another output plugin. Retrying will not help.
    SlotInvalid,
    /// The replication slot does not exist: the server's `42704` on a slot command, or no row in
    /// `pg_replication_slots` for it ([`crate::changes::ChangeStream`]). Not retryable.
    SlotMissing,
    /// `CREATE_REPLICATION_SLOT` of a slot that already exists (the server's `42710`). Not retryable.
    SlotExists,
    /// The replication slot is in use by another connection (the server's `55006`, "is active for PID …").
    /// Retryable: after a consumer is killed, its walsender may hold the slot for a moment.
    SlotActive,
    /// The server's release lacks a feature the request needs (e.g. `READ_REPLICATION_SLOT` before
    /// PostgreSQL 15, a two-phase slot before 14). Raised by pgrepl before anything is sent. Not retryable.
    ServerVersionUnsupported,
}

/// Server errors whose SQLSTATE says a reconnect may succeed ([`Error::is_retryable`]): admin shutdown, crash
/// shutdown, cannot connect now, object in use (a slot still held by the previous connection), connection
/// exceptions, too many connections.
const RETRYABLE_SQLSTATES: &[&str] = &["57P01", "57P02", "57P03", "55006", "08000", "08003", "08006", "53300"];

/// The replication command about one slot that a server error answers ([`Error::in_slot_command`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotCommand {
    Create,
    Drop,
    Read,
    Start,
}

/// The one place where a server's SQLSTATE becomes a kind (the table in the module docs): `slot` is the slot
/// command the error answers, `None` for anything else (startup, authentication, SQL, `SHOW`, `IDENTIFY_SYSTEM`).
fn kind_of_sqlstate(code: &str, slot: Option<SlotCommand>) -> ErrorKind {
    use SlotCommand::*;
    match (code, slot) {
        ("28P01" | "28000", _) => ErrorKind::AuthFailed,
        ("42704", Some(Drop | Read | Start)) => ErrorKind::SlotMissing,
        ("42710", Some(Create)) => ErrorKind::SlotExists,
        ("55006", Some(_)) => ErrorKind::SlotActive,
        ("55000", Some(Start)) => ErrorKind::SlotInvalid,
        _ => ErrorKind::Db,
    }
}

/// The fields of a server ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbError {
    /// `S`: ERROR, FATAL, PANIC (or WARNING, NOTICE… for notices), possibly localized.
    pub severity: String,
    /// `C`: the SQLSTATE code, e.g. `28P01`.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
    /// `D`
    pub detail: Option<String>,
    /// `H`
    pub hint: Option<String>,
    /// `P`
    pub position: Option<String>,
    /// `W`
    pub where_: Option<String>,
    /// `s`, `t`, `c`, `d`, `n`: schema, table, column, data type, constraint names.
    pub schema: Option<String>,
    /// `t`
    pub table: Option<String>,
    /// `c`
    pub column: Option<String>,
    /// `d`
    pub datatype: Option<String>,
    /// `n`
    pub constraint: Option<String>,
    /// `F`, `L`, `R`: server source location.
    pub file: Option<String>,
    /// `L`
    pub line: Option<String>,
    /// `R`
    pub routine: Option<String>,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (SQLSTATE {})", self.severity, self.message, self.code)?;
        if let Some(d) = &self.detail {
            write!(f, "; DETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; HINT: {h}")?;
        }
        Ok(())
    }
}

/// A pgrepl error.
pub struct Error {
    kind: ErrorKind,
    msg: String,
    db: Option<Box<DbError>>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error { kind, msg: msg.into(), db: None, source: None }
    }
    /// A protocol violation by the server.
    pub fn protocol(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, msg)
    }
    /// An authentication failure on the client side.
    pub fn auth(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, msg)
    }
    /// A configuration error naming the offending key.
    pub fn config(key: &str, msg: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Config, format!("invalid {key:?}: {msg}"))
    }
    /// A decode error at a byte offset of the payload.
    pub fn decode(offset: usize, msg: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Decode, format!("{msg} at byte {offset}"))
    }
    /// The connection was closed.
    pub fn closed(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Closed, msg)
    }
    /// A timeout.
    pub fn timeout(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, msg)
    }
    /// An error reported by the server; its kind comes from its SQLSTATE (the table in the module docs).
    pub fn db(e: impl Into<Box<DbError>>) -> Self {
        let db: Box<DbError> = e.into();
        Error { kind: kind_of_sqlstate(&db.code, None), msg: String::new(), db: Some(db), source: None }
    }
    /// This error as the answer to slot command `cmd`: a server error gets the kind its SQLSTATE has there (the
    /// table in the module docs); any other error is returned as it is.
    pub(crate) fn in_slot_command(mut self, cmd: SlotCommand) -> Self {
        if let Some(db) = &self.db {
            if self.kind == ErrorKind::Db {
                self.kind = kind_of_sqlstate(&db.code, Some(cmd));
            }
        }
        self
    }
    /// An I/O error with context.
    pub fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        Error { kind: ErrorKind::Io, msg: context.into(), db: None, source: Some(Box::new(e)) }
    }
    /// Attach an underlying cause.
    pub fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(e));
        self
    }
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The server's ErrorResponse fields, when the server reported this error.
    pub fn as_db(&self) -> Option<&DbError> {
        self.db.as_deref()
    }
    /// The SQLSTATE code, when the server reported this error.
    pub fn code(&self) -> Option<&str> {
        self.db.as_deref().map(|d| d.code.as_str())
    }
    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        match &self.db {
            Some(d) => &d.message,
            None => &self.msg,
        }
    }
    /// A copy of this error for a second observer (the stream task's error reaches both the consumer and
    /// `stop()`): the kind, message and every server field (so [`code`](Self::code) and
    /// [`is_retryable`](Self::is_retryable) answer alike), with the underlying cause kept as its text.
    pub fn duplicate(&self) -> Error {
        Error {
            kind: self.kind,
            msg: self.msg.clone(),
            db: self.db.clone(),
            source: self.source.as_ref().map(|s| Box::new(SourceText(s.to_string())) as _),
        }
    }
    /// Whether a reconnect may succeed: I/O, a closed connection, timeouts, a slot still active
    /// ([`ErrorKind::SlotActive`]), and server errors whose SQLSTATE is transient (shutdown, cannot connect now,
    /// connection exceptions, too many connections). The one retry rule of `pgrepl recv` and
    /// [`ChangeStream`](crate::changes::ChangeStream).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Io | ErrorKind::Closed | ErrorKind::Timeout | ErrorKind::SlotActive => true,
            ErrorKind::Db => RETRYABLE_SQLSTATES.contains(&self.code().unwrap_or("")),
            _ => false,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        if !self.msg.is_empty() {
            d.field("msg", &self.msg);
        }
        if let Some(db) = &self.db {
            d.field("db", db);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(db) = &self.db {
            return fmt::Display::fmt(db, f);
        }
        let what = match self.kind {
            ErrorKind::Io => "I/O error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Auth | ErrorKind::PasswordRequired | ErrorKind::AuthFailed => "authentication failed",
            ErrorKind::Db => "server error",
            ErrorKind::Config => "invalid settings",
            ErrorKind::Decode => "decode error",
            ErrorKind::Closed => "connection closed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "TLS error",
            ErrorKind::TargetSessionAttrs => "no suitable server",
            ErrorKind::SlotInvalid => "replication slot unusable",
            ErrorKind::SlotMissing => "replication slot missing",
            ErrorKind::SlotExists => "replication slot exists",
            ErrorKind::SlotActive => "replication slot active",
            ErrorKind::ServerVersionUnsupported => "server version unsupported",
        };
        f.write_str(what)?;
        if !self.msg.is_empty() {
            write!(f, ": {}", self.msg)?;
        }
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

/// An underlying cause kept as its text ([`Error::duplicate`]).
#[derive(Debug)]
struct SourceText(String);

impl fmt::Display for SourceText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceText {}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io("", e)
    }
}

/// `Result<T, pgrepl::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> Error {
        Error::db(DbError { severity: "ERROR".into(), code: code.into(), message: "m".into(), ..Default::default() })
    }

    /// Every SQLSTATE with a kind of its own, in answer to each command, and codes that keep kind `Db`.
    #[test]
    fn sqlstate_to_kind() {
        use ErrorKind::*;
        use SlotCommand::{Create, Drop, Read, Start};
        let cases: &[(&str, Option<SlotCommand>, ErrorKind)] = &[
            ("28P01", None, AuthFailed),
            ("28000", None, AuthFailed),
            ("28P01", Some(Start), AuthFailed),
            ("42704", None, Db),
            ("42704", Some(Create), Db),
            ("42704", Some(Drop), SlotMissing),
            ("42704", Some(Read), SlotMissing),
            ("42704", Some(Start), SlotMissing),
            ("42710", None, Db),
            ("42710", Some(Create), SlotExists),
            ("42710", Some(Drop), Db),
            ("55006", None, Db),
            ("55006", Some(Create), SlotActive),
            ("55006", Some(Drop), SlotActive),
            ("55006", Some(Read), SlotActive),
            ("55006", Some(Start), SlotActive),
            ("55000", None, Db),
            ("55000", Some(Create), Db),
            ("55000", Some(Drop), Db),
            ("55000", Some(Start), SlotInvalid),
            ("57P01", Some(Start), Db),
            ("0A000", Some(Read), Db),
            ("42601", None, Db),
            ("", None, Db),
        ];
        for &(code, cmd, want) in cases {
            let e = match cmd {
                None => server(code),
                Some(c) => server(code).in_slot_command(c),
            };
            assert_eq!(e.kind(), want, "{code} in answer to {cmd:?}");
            // the server's fields are there whatever the kind
            assert_eq!(e.code(), Some(code));
            assert_eq!(e.as_db().map(|d| d.message.as_str()), Some("m"));
        }
    }

    /// `in_slot_command` leaves pgrepl's own errors alone, and an error that already has a kind.
    #[test]
    fn in_slot_command_changes_only_server_errors_of_kind_db() {
        for kind in [ErrorKind::Config, ErrorKind::Io, ErrorKind::Closed, ErrorKind::Db] {
            let e = Error::new(kind, "x").in_slot_command(SlotCommand::Start);
            assert_eq!(e.kind(), kind);
        }
        let e = server("28000").in_slot_command(SlotCommand::Drop);
        assert_eq!(e.kind(), ErrorKind::AuthFailed);
    }

    /// The retry rule, pinned: each transient SQLSTATE and kind, and what is not retried. The answers are those of
    /// the rule before the slot and authentication kinds existed (55006 was `Db` and retryable; 28P01, 28000,
    /// 42704, 42710, 55000 were `Db` and not retryable).
    #[test]
    fn retryable() {
        for code in ["57P01", "57P02", "57P03", "55006", "08000", "08003", "08006", "53300"] {
            assert!(server(code).is_retryable(), "{code}");
            for cmd in [SlotCommand::Create, SlotCommand::Drop, SlotCommand::Read, SlotCommand::Start] {
                assert!(server(code).in_slot_command(cmd).is_retryable(), "{code} {cmd:?}");
            }
        }
        for code in ["28P01", "28000", "42704", "42710", "55000", "42601", "0A000", "3D000", "42501", "58P01", ""] {
            assert!(!server(code).is_retryable(), "{code}");
            for cmd in [SlotCommand::Create, SlotCommand::Drop, SlotCommand::Read, SlotCommand::Start] {
                assert!(!server(code).in_slot_command(cmd).is_retryable(), "{code} {cmd:?}");
            }
        }
        use ErrorKind::*;
        for (kind, want) in [
            (Io, true),
            (Closed, true),
            (Timeout, true),
            (SlotActive, true),
            (Protocol, false),
            (Auth, false),
            (PasswordRequired, false),
            (AuthFailed, false),
            (Db, false), // no SQLSTATE
            (Config, false),
            (Decode, false),
            (Tls, false),
            (TargetSessionAttrs, false),
            (SlotInvalid, false),
            (SlotMissing, false),
            (SlotExists, false),
            (ServerVersionUnsupported, false),
        ] {
            assert_eq!(Error::new(kind, "x").is_retryable(), want, "{kind:?}");
            assert_eq!(Error::new(kind, "x").duplicate().is_retryable(), want, "{kind:?} duplicated");
        }
        assert!(Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)).is_retryable());
    }

    /// A copy for a second observer keeps the kind a SQLSTATE gave.
    #[test]
    fn duplicate_keeps_the_kind() {
        let e = server("55006").in_slot_command(SlotCommand::Start);
        let d = e.duplicate();
        assert_eq!((d.kind(), d.code(), d.is_retryable()), (ErrorKind::SlotActive, Some("55006"), true));
    }

    /// The authentication kinds read as before: "authentication failed: …" for pgrepl's own, the server's
    /// message for a server error.
    #[test]
    fn display() {
        let e = Error::new(ErrorKind::PasswordRequired, "password required, none supplied");
        assert_eq!(e.to_string(), "authentication failed: password required, none supplied");
        assert_eq!(server("28P01").to_string(), "ERROR: m (SQLSTATE 28P01)");
        assert_eq!(Error::new(ErrorKind::ServerVersionUnsupported, "x").to_string(), "server version unsupported: x");
    }
}
