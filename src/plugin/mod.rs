//! Output plugins: what the stream needs to know about a plugin's messages, in one place.
//!
//! The driver ([`crate::stream`], [`crate::client`]) knows no plugin: a stream is started with an
//! [`OutputPlugin`], whose [`tracker`](OutputPlugin::tracker) classifies each payload once, in the stream task,
//! as it arrives ([`Boundary`]: begin / inside / end of a transaction, or a whole unit by itself). The end
//! position and the idle advance use that classification, and every consumer reads it from
//! [`XLogData::boundary`](crate::proto::replication::XLogData::boundary) instead of classifying again.
//!
//! Known plugins: [`Wal2json`] (every format), [`TestDecoding`]. Any other name ([`by_name`]) is
//! [`Unknown`]: its payloads pass through unchanged, each one counts as a whole unit (so an end position stops
//! after the first message past it, which may be inside a transaction of such a plugin), and nothing is decoded.
//! A new plugin (pgoutput) is a module here implementing [`OutputPlugin`] and a line in [`by_name`].
//!
//! Sans IO: no tokio.

mod test_decoding;
mod wal2json;

use std::fmt;
use std::sync::Arc;

use crate::lsn::Lsn;
pub use crate::proto::feedback::Boundary;
pub use test_decoding::{TestDecoding, TestDecodingTracker};
pub use wal2json::{Wal2json, Wal2jsonTracker};

/// Tracks where each payload of one stream sits in a transaction (a plugin may need state across payloads).
pub trait TxnClassifier: Send + 'static {
    /// Classify one payload.
    fn classify(&mut self, payload: &[u8]) -> Boundary;
}

impl TxnClassifier for Box<dyn TxnClassifier> {
    fn classify(&mut self, payload: &[u8]) -> Boundary {
        (**self).classify(payload)
    }
}

/// An output plugin's rules.
pub trait OutputPlugin: fmt::Debug + Send + Sync + 'static {
    /// Its name, as `CREATE_REPLICATION_SLOT … LOGICAL name` and `pg_replication_slots.plugin` spell it.
    fn name(&self) -> &str;
    /// The options a stream of this plugin gets when the application gives none.
    fn default_options(&self) -> Vec<(String, Option<String>)> {
        Vec::new()
    }
    /// A fresh tracker for one stream (one connection).
    fn tracker(&self) -> Box<dyn TxnClassifier>;
    /// Where acknowledging a payload that ends a transaction (or stands alone) should point: its XLogData
    /// position (`wal_start`) unless the plugin sends the payload elsewhere than at the commit's end.
    fn commit_lsn(&self, payload: &[u8], wal_start: Lsn) -> Lsn {
        let _ = payload;
        wal_start
    }
    /// Whether the plugin's messages show transaction boundaries at all (`false`: every message is a unit).
    fn knows_transactions(&self) -> bool {
        true
    }
}

/// Every message is a unit by itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct WholeMessages;

impl TxnClassifier for WholeMessages {
    fn classify(&mut self, _: &[u8]) -> Boundary {
        Boundary::Whole
    }
}

/// A plugin pgrepl does not know: payloads pass through, each counts as a whole unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown(pub String);

impl OutputPlugin for Unknown {
    fn name(&self) -> &str {
        &self.0
    }
    fn tracker(&self) -> Box<dyn TxnClassifier> {
        Box::new(WholeMessages)
    }
    fn knows_transactions(&self) -> bool {
        false
    }
}

/// The rules of the plugin called `name` (as `pg_replication_slots.plugin` shows it).
pub fn by_name(name: &str) -> Arc<dyn OutputPlugin> {
    match name {
        "wal2json" => Arc::new(Wal2json),
        "test_decoding" => Arc::new(TestDecoding),
        other => Arc::new(Unknown(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_by_name() {
        assert_eq!(by_name("wal2json").name(), "wal2json");
        assert_eq!(by_name("test_decoding").name(), "test_decoding");
        let other = by_name("decoderbufs");
        assert_eq!(other.name(), "decoderbufs");
        assert!(!other.knows_transactions());
        assert_eq!(other.tracker().classify(b"BEGIN 1"), Boundary::Whole);
        assert!(by_name("wal2json").knows_transactions());
    }
}
