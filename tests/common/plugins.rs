//! The output plugin of the plugin-agnostic tests (slot commands, authentication, streaming mechanics, faults),
//! whatever server runs them (`PG_BIN_DIR`, `scripts/matrix.sh`): wal2json where the server has it — Debian's
//! PostgreSQL 15, so that the default runs test exactly what they always tested — else test_decoding, which
//! every server ships ([`TempCluster::test_plugin`]). What a test reads from a raw payload it asks of
//! [`Plugin`], so that one test body serves both; code generic over [`pgrepl::plugin::Decoding`]
//! (`ChangeStream<P>`) gets the plugin as a value of its own type from [`with_decoding!`].
//!
//! Included with `#[path]` by the library's tests and the CLI's (`cli/tests`).
#![allow(dead_code, unused_macros, unused_imports)]

use pgrepl::plugin::{OutputPlugin, TestDecoding, Wal2json};
use pgrepl_testkit::TempCluster;

/// One of the two plugins the tests stream with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Wal2json,
    TestDecoding,
}

impl Plugin {
    /// The plugin for plugin-agnostic tests on `c`.
    pub fn of(c: &TempCluster) -> Plugin {
        match c.test_plugin() {
            "wal2json" => Plugin::Wal2json,
            _ => Plugin::TestDecoding,
        }
    }

    /// Its name (`CREATE_REPLICATION_SLOT … LOGICAL name`, `pgrepl recv -P name`).
    pub fn name(self) -> &'static str {
        match self {
            Plugin::Wal2json => "wal2json",
            Plugin::TestDecoding => "test_decoding",
        }
    }

    /// Its rules, for `start_replication`.
    pub fn rules(self) -> &'static dyn OutputPlugin {
        match self {
            Plugin::Wal2json => &Wal2json,
            Plugin::TestDecoding => &TestDecoding,
        }
    }

    /// Stream options giving one payload per change with transaction ids: wal2json format 2 with
    /// `include-xids` (each payload starts `{"action":"X"`), test_decoding with `include-xids`.
    pub fn options(self) -> Vec<(String, Option<String>)> {
        self.cli_options()
            .iter()
            .map(|o| {
                let (k, v) = o.split_once('=').unwrap_or((o, ""));
                (k.to_string(), Some(v.to_string()))
            })
            .collect()
    }

    /// [`options`](Self::options) as `-o NAME=VALUE` values of `pgrepl recv` and `pg_recvlogical`.
    pub fn cli_options(self) -> &'static [&'static str] {
        match self {
            Plugin::Wal2json => &["format-version=2", "include-xids=1"],
            Plugin::TestDecoding => &["include-xids=1"],
        }
    }

    /// What one payload of a stream with [`options`](Self::options) is: `B` begin, `C` commit, `I`/`U`/`D`
    /// insert/update/delete, `T` truncate, `M` message, 0 anything else.
    pub fn action(self, payload: &[u8]) -> u8 {
        match self {
            // {"action":"X"
            Plugin::Wal2json if payload.starts_with(b"{\"action\":\"") => payload.get(11).copied().unwrap_or(0),
            Plugin::Wal2json => 0,
            Plugin::TestDecoding => test_decoding_action(payload),
        }
    }

    /// Whether `payload` is a change of table `table` (any schema) with an integer column `column` equal to
    /// `value` — `"id":5`-style in wal2json format 2, `id[integer]:5` in test_decoding.
    pub fn has_value(self, payload: &[u8], column: &str, value: i64) -> bool {
        let text = String::from_utf8_lossy(payload);
        match self {
            Plugin::Wal2json => {
                text.contains(&format!("{{\"name\":\"{column}\",")) && text.contains(&format!("\"value\":{value}}}"))
            }
            Plugin::TestDecoding => {
                let needle = format!(" {column}[");
                text.split(&needle).skip(1).any(|rest| {
                    rest.split_once("]:").is_some_and(|(_, v)| v.split(' ').next() == Some(&value.to_string()))
                })
            }
        }
    }
}

/// test_decoding's line kinds: `BEGIN …`, `COMMIT …`, `message: …`, `table S.T: INSERT: …`.
fn test_decoding_action(payload: &[u8]) -> u8 {
    if payload.starts_with(b"BEGIN") {
        return b'B';
    }
    if payload.starts_with(b"COMMIT") {
        return b'C';
    }
    if payload.starts_with(b"message:") {
        return b'M';
    }
    let Some(rest) = payload.strip_prefix(b"table ") else { return 0 };
    let text = String::from_utf8_lossy(rest);
    let Some((_, after)) = text.split_once(": ") else { return 0 };
    match after.split(':').next() {
        Some("INSERT") => b'I',
        Some("UPDATE") => b'U',
        Some("DELETE") => b'D',
        Some("TRUNCATE") => b'T',
        _ => 0,
    }
}

/// `with_decoding!(plugin, |p| body)`: `body` with `p` bound to [`pgrepl::plugin::Wal2json`] or
/// [`pgrepl::plugin::TestDecoding`] as `plugin` says, for code generic over [`pgrepl::plugin::Decoding`].
macro_rules! with_decoding {
    ($plugin:expr, |$p:ident| $body:expr) => {
        match $plugin {
            $crate::plugins::Plugin::Wal2json => {
                let $p = pgrepl::plugin::Wal2json;
                $body
            }
            $crate::plugins::Plugin::TestDecoding => {
                let $p = pgrepl::plugin::TestDecoding;
                $body
            }
        }
    };
}
pub(crate) use with_decoding;
