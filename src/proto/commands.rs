//! Replication commands, built with identifiers and literals quoted correctly.
//!
//! Slot names, plugin names and option names are double-quoted identifiers (`"` doubled), option values are
//! single-quoted literals (`'` doubled). The replication grammar has no backslash escapes, so nothing else
//! needs escaping; a NUL byte cannot be sent at all and is rejected when the query is encoded.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use std::fmt::Write;

use crate::lsn::Lsn;

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
    /// servers the legacy keywords).
    pub fn to_sql(&self, server_version_num: u32) -> String {
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
            if self.two_phase {
                s.push_str(" TWO_PHASE");
            }
            s.push_str(match self.snapshot {
                SnapshotAction::Export => " EXPORT_SNAPSHOT",
                SnapshotAction::NoExport => " NOEXPORT_SNAPSHOT",
                SnapshotAction::Use => " USE_SNAPSHOT",
            });
        }
        s
    }
}

/// `DROP_REPLICATION_SLOT "slot" [WAIT]`
pub fn drop_slot(slot: &str, wait: bool) -> String {
    let mut s = format!("DROP_REPLICATION_SLOT {}", quote_ident(slot));
    if wait {
        s.push_str(" WAIT");
    }
    s
}

/// `READ_REPLICATION_SLOT "slot"` (PostgreSQL 15+; the server refuses it for logical slots).
pub fn read_slot(slot: &str) -> String {
    format!("READ_REPLICATION_SLOT {}", quote_ident(slot))
}

/// `START_REPLICATION SLOT "slot" LOGICAL X/Y ("name" 'value', "flag")`
pub fn start_logical(slot: &str, start: Lsn, options: &[(String, Option<String>)]) -> String {
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
    s
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
            slot: "s\"x".into(),
            plugin: "wal2json".into(),
            temporary: true,
            snapshot: SnapshotAction::Export,
            two_phase: true,
        };
        assert_eq!(
            c.to_sql(150004),
            "CREATE_REPLICATION_SLOT \"s\"\"x\" TEMPORARY LOGICAL \"wal2json\" (SNAPSHOT 'export', TWO_PHASE)"
        );
        assert_eq!(
            c.to_sql(140000),
            "CREATE_REPLICATION_SLOT \"s\"\"x\" TEMPORARY LOGICAL \"wal2json\" TWO_PHASE EXPORT_SNAPSHOT"
        );
        assert_eq!(drop_slot("a b", true), "DROP_REPLICATION_SLOT \"a b\" WAIT");
        assert_eq!(read_slot("x"), "READ_REPLICATION_SLOT \"x\"");
        assert_eq!(
            start_logical(
                "s",
                Lsn(0x1_0000_00AB),
                &[("format-version".into(), Some("2".into())), ("x'".into(), Some("it's".into())), ("f".into(), None)]
            ),
            "START_REPLICATION SLOT \"s\" LOGICAL 1/AB (\"format-version\" '2', \"x'\" 'it''s', \"f\")"
        );
        assert_eq!(start_logical("s", Lsn(0), &[]), "START_REPLICATION SLOT \"s\" LOGICAL 0/0");
    }
}
