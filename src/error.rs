//! The one public error type.
//!
//! Every failure in pgrepl is an [`Error`] with a [`ErrorKind`]; server-reported errors keep every field of the
//! ErrorResponse in a [`DbError`]. Passwords never appear in any message built here.

use std::fmt;

/// What class of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A socket or file operation failed.
    Io,
    /// The server sent bytes that break the protocol (bad length, unknown or out-of-order message, …).
    Protocol,
    /// Authentication failed or was refused on the client side (bad SCRAM proof, `require_auth`, …).
    Auth,
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
    /// The replication slot is invalidated or otherwise unusable; retrying will not help.
    SlotInvalid,
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
    /// An error reported by the server.
    pub fn db(e: impl Into<Box<DbError>>) -> Self {
        Error { kind: ErrorKind::Db, msg: String::new(), db: Some(e.into()), source: None }
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
    /// Whether a reconnect may succeed (I/O, closed connection, timeouts, and server errors that are transient).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Io | ErrorKind::Closed | ErrorKind::Timeout => true,
            ErrorKind::Db => matches!(
                self.code().unwrap_or(""),
                // admin shutdown / crash shutdown / cannot connect now / object in use (slot active)
                "57P01" | "57P02" | "57P03" | "55006" | "08000" | "08003" | "08006" | "53300"
            ),
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
            ErrorKind::Auth => "authentication failed",
            ErrorKind::Db => "server error",
            ErrorKind::Config => "invalid settings",
            ErrorKind::Decode => "decode error",
            ErrorKind::Closed => "connection closed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "TLS error",
            ErrorKind::TargetSessionAttrs => "no suitable server",
            ErrorKind::SlotInvalid => "replication slot unusable",
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
