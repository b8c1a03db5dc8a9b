//! Replication commands, built with identifiers and literals quoted correctly.
//!
//! Slot names, plugin names and option names are double-quoted identifiers (`"` doubled), option values are
//! single-quoted literals (`'` doubled). The replication grammar has no backslash escapes, so nothing else
//! needs escaping; a NUL byte cannot be sent at all and is rejected when the query is encoded.
//!
//! Every builder that takes a slot name checks it first with [`validate_slot_name`] and returns an error instead
//! of a command for a name the server can never accept, so such a name fails the same way, with pgrepl's own
//! error and before anything is sent, whatever the server's release (see that function).

use std::fmt::Write;

use crate::error::{Error, ErrorKind, Result};
use crate::lsn::Lsn;

/// The longest replication slot name PostgreSQL accepts, in bytes (`NAMEDATALEN - 1`).
pub const MAX_SLOT_NAME_LEN: usize = 63;

/// Checks a replication slot name as the server does (`ReplicationSlotValidateName` in
/// `src/backend/replication/slot.c`): 1 to [`MAX_SLOT_NAME_LEN`] (63) bytes, each a lower-case ASCII letter, a
/// digit or an underscore (`[a-z0-9_]`).
///
/// Why on the client: servers disagree about how they refuse the other names. PostgreSQL 15.18's
/// replication-command lexer rejects a doubled `""` inside a quoted identifier with a syntax error (SQLSTATE
/// 42601), 15.20 reads it and refuses the name (42602); a name longer than 63 bytes is truncated by the server
/// (with only a NOTICE) and names another slot; and `DROP_REPLICATION_SLOT` / `READ_REPLICATION_SLOT` /
/// `START_REPLICATION` merely look such a name up. Refusing it here gives one clear error on every release.
///
/// The error is of kind [`ErrorKind::Config`] (the caller's input is malformed, as with a malformed connection
/// string: not retryable, and no server state is involved), not [`ErrorKind::SlotInvalid`] or
/// [`ErrorKind::SlotMissing`], which say that a slot is invalidated or missing on the server. Its message names the
/// slot, the first offending byte and the rule.
pub fn validate_slot_name(name: &str) -> Result<()> {
    const RULE: &str = "a slot name is 1 to 63 bytes of lower-case letters, digits and underscores ([a-z0-9_])";
    let bad =
        |why: String| Error::new(ErrorKind::Config, format!("invalid replication slot name {name:?}: {why}; {RULE}"));
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > MAX_SLOT_NAME_LEN {
        return Err(bad(format!("it is {} bytes long", name.len())));
    }
    if let Some((at, c)) = name.char_indices().find(|&(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '_')) {
        return Err(bad(format!("{c:?} at byte {at} is not allowed")));
    }
    Ok(())
}

/// `"name"` with embedded `"` doubled.
pub fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// `'value'` with embedded `'` doubled. In SQL (not the replication grammar) a literal containing a backslash
/// is written `E'…'` with backslashes doubled, which is what [`quote_sql_literal`] does.
pub fn quote_literal(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('\'');
    for c in value.chars() {
        if c == '\'' {
            s.push('\'');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

/// A literal for plain SQL that is correct whatever `standard_conforming_strings` is.
pub fn quote_sql_literal(value: &str) -> String {
    if !value.contains('\\') {
        return quote_literal(value);
    }
    let mut s = String::with_capacity(value.len() + 4);
    s.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// `IDENTIFY_SYSTEM`
pub fn identify_system() -> String {
    "IDENTIFY_SYSTEM".to_string()
}

/// What CREATE_REPLICATION_SLOT does with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotAction {
    /// Export a snapshot usable until the next command on this connection.
    Export,
    /// Do not export one (the default here: cheapest, and what pg_recvlogical does).
    #[default]
    NoExport,
    /// Use the snapshot in the current transaction (requires a transaction on a non-replication session).
    Use,
}

/// Options of a logical CREATE_REPLICATION_SLOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSlot {
    /// Slot name.
    pub slot: String,
    /// Output plugin (e.g. `wal2json`).
    pub plugin: String,
    /// A temporary slot is dropped when the connection ends.
    pub temporary: bool,
    /// Snapshot handling.
    pub snapshot: SnapshotAction,
    /// Enable decoding of prepared transactions.
    pub two_phase: bool,
}

impl CreateSlot {
    /// The command for a server of `server_version_num` (15+ uses the parenthesized option list; older
    /// servers the legacy keywords, `EXPORT_SNAPSHOT`, `NOEXPORT_SNAPSHOT`, `USE_SNAPSHOT`). An error of kind
    /// [`ErrorKind::Config`] for a slot name the server cannot accept ([`validate_slot_name`]); then, for
    /// `two_phase` before 15, one of kind [`ErrorKind::ServerVersionUnsupported`]: replication commands take
    /// `TWO_PHASE` from PostgreSQL 15 on (14's grammar has no such keyword, only the SQL function
    /// `pg_create_logical_replication_slot(…, twophase)`).
    pub fn to_sql(&self, server_version_num: u32) -> Result<String> {
        validate_slot_name(&self.slot)?;
        if self.two_phase && server_version_num < 150000 {
            return Err(Error::new(
                ErrorKind::ServerVersionUnsupported,
                format!(
                    "a two-phase slot (TWO_PHASE) needs PostgreSQL 15 or later; the server is {}.{}",
                    server_version_num / 10000,
                    server_version_num % 10000
                ),
            ));
        }
        let mut s = format!("CREATE_REPLICATION_SLOT {}", quote_ident(&self.slot));
        if self.temporary {
            s.push_str(" TEMPORARY");
        }
        let _ = write!(s, " LOGICAL {}", quote_ident(&self.plugin));
        let snap = match self.snapshot {
            SnapshotAction::Export => "export",
            SnapshotAction::NoExport => "nothing",
            SnapshotAction::Use => "use",
        };
        if server_version_num >= 150000 {
            let _ = write!(s, " (SNAPSHOT '{snap}'");
            if self.two_phase {
                s.push_str(", TWO_PHASE");
            }
            s.push(')');
        } else {
            s.push_str(match self.snapshot {
                SnapshotAction::Export => " EXPORT_SNAPSHOT",
                SnapshotAction::NoExport => " NOEXPORT_SNAPSHOT",
                SnapshotAction::Use => " USE_SNAPSHOT",
            });
        }
        Ok(s)
    }
}

/// `DROP_REPLICATION_SLOT "slot" [WAIT]`; an error for an invalid slot name ([`validate_slot_name`]).
pub fn drop_slot(slot: &str, wait: bool) -> Result<String> {
    validate_slot_name(slot)?;
    let mut s = format!("DROP_REPLICATION_SLOT {}", quote_ident(slot));
    if wait {
        s.push_str(" WAIT");
    }
    Ok(s)
}

/// `READ_REPLICATION_SLOT "slot"` (PostgreSQL 15+; the server refuses it for logical slots); an error for an
/// invalid slot name ([`validate_slot_name`]).
pub fn read_slot(slot: &str) -> Result<String> {
    validate_slot_name(slot)?;
    Ok(format!("READ_REPLICATION_SLOT {}", quote_ident(slot)))
}

/// `START_REPLICATION SLOT "slot" LOGICAL X/Y ("name" 'value', "flag")`; an error for an invalid slot name
/// ([`validate_slot_name`]).
pub fn start_logical(slot: &str, start: Lsn, options: &[(String, Option<String>)]) -> Result<String> {
    validate_slot_name(slot)?;
    let mut s = format!("START_REPLICATION SLOT {} LOGICAL {start}", quote_ident(slot));
    if !options.is_empty() {
        s.push_str(" (");
        for (i, (k, v)) in options.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&quote_ident(k));
            if let Some(v) = v {
                s.push(' ');
                s.push_str(&quote_literal(v));
            }
        }
        s.push(')');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("slot"), "\"slot\"");
        assert_eq!(quote_ident("My \"Slot\""), "\"My \"\"Slot\"\"\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "'a\\b'");
        assert_eq!(quote_sql_literal("a\\b'c"), "E'a\\\\b''c'");
        assert_eq!(quote_sql_literal("plain"), "'plain'");
    }

    #[test]
    fn commands() {
        let c = CreateSlot {
            slot: "s_x".into(),
            plugin: "wal2\"json".into(),
            temporary: true,
            snapshot: SnapshotAction::Export,
            two_phase: true,
        };
        assert_eq!(
            c.to_sql(150004).unwrap(),
            "CREATE_REPLICATION_SLOT \"s_x\" TEMPORARY LOGICAL \"wal2\"\"json\" (SNAPSHOT 'export', TWO_PHASE)"
        );
        // before 15: the legacy keywords, and no TWO_PHASE
        let e = c.to_sql(140023).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ServerVersionUnsupported);
        assert!(
            e.to_string().ends_with("a two-phase slot (TWO_PHASE) needs PostgreSQL 15 or later; the server is 14.23"),
            "{e}"
        );
        for (snapshot, keyword) in [
            (SnapshotAction::Export, "EXPORT_SNAPSHOT"),
            (SnapshotAction::NoExport, "NOEXPORT_SNAPSHOT"),
            (SnapshotAction::Use, "USE_SNAPSHOT"),
        ] {
            let c = CreateSlot { two_phase: false, snapshot, ..c.clone() };
            assert_eq!(
                c.to_sql(120022).unwrap(),
                format!("CREATE_REPLICATION_SLOT \"s_x\" TEMPORARY LOGICAL \"wal2\"\"json\" {keyword}")
            );
        }
        assert_eq!(drop_slot("a_b", true).unwrap(), "DROP_REPLICATION_SLOT \"a_b\" WAIT");
        assert_eq!(drop_slot("a_b", false).unwrap(), "DROP_REPLICATION_SLOT \"a_b\"");
        assert_eq!(read_slot("x").unwrap(), "READ_REPLICATION_SLOT \"x\"");
        assert_eq!(
            start_logical(
                "s",
                Lsn(0x1_0000_00AB),
                &[("format-version".into(), Some("2".into())), ("x'".into(), Some("it's".into())), ("f".into(), None)]
            )
            .unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 1/AB (\"format-version\" '2', \"x'\" 'it''s', \"f\")"
        );
        assert_eq!(start_logical("s", Lsn(0), &[]).unwrap(), "START_REPLICATION SLOT \"s\" LOGICAL 0/0");
        // valid names that are keywords or start with a digit are still quoted
        assert_eq!(drop_slot("logical", false).unwrap(), "DROP_REPLICATION_SLOT \"logical\"");
        assert_eq!(read_slot("0_wait").unwrap(), "READ_REPLICATION_SLOT \"0_wait\"");
    }

    #[test]
    fn slot_names() {
        let longest = "z".repeat(MAX_SLOT_NAME_LEN);
        for ok in ["a", "_", "0", "slot_1", "temporary", longest.as_str()] {
            validate_slot_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("UpperCase", "'U' at byte 0 is not allowed"),
            ("with space", "' ' at byte 4 is not allowed"),
            ("with\"quote", "'\"' at byte 4 is not allowed"),
            ("x\" LOGICAL \"wal2json", "'\"' at byte 1 is not allowed"),
            ("a-b", "'-' at byte 1 is not allowed"),
            ("\u{e9}t\u{e9}", "'\u{e9}' at byte 0 is not allowed"),
            ("ab\0", "'\\0' at byte 2 is not allowed"),
        ] {
            let e = validate_slot_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
            assert!(!e.is_retryable(), "{bad:?}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("invalid replication slot name {bad:?}: {why}; ")), "{bad:?}: {msg}");
            assert!(msg.contains("1 to 63 bytes of lower-case letters, digits and underscores ([a-z0-9_])"), "{msg}");
        }
        let long = "z".repeat(MAX_SLOT_NAME_LEN + 1);
        assert!(validate_slot_name(&long).unwrap_err().to_string().contains("it is 64 bytes long"));
        // every builder that takes a slot name refuses it
        let create = CreateSlot {
            slot: "Bad\"Name".into(),
            plugin: "wal2json".into(),
            temporary: false,
            snapshot: SnapshotAction::NoExport,
            two_phase: false,
        };
        for r in [
            create.to_sql(150000),
            create.to_sql(140000),
            drop_slot("Bad\"Name", true),
            read_slot("Bad\"Name"),
            start_logical("Bad\"Name", Lsn(0), &[]),
        ] {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Config);
        }
    }
}
