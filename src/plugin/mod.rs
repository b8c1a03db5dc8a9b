//! Output plugins: what the stream needs to know about a plugin's messages, in one place.
//!
//! The driver ([`crate::stream`], [`crate::client`]) knows no plugin: a stream is started with an
//! [`OutputPlugin`], whose [`tracker`](OutputPlugin::tracker) classifies each payload once, in the stream task,
//! as it arrives ([`Boundary`]: begin / inside / end of a transaction, or a whole unit by itself). The end
//! position and the idle advance use that classification, and every consumer reads it from
//! [`XLogData::boundary`](crate::proto::replication::XLogData::boundary) instead of classifying again.
//!
//! Known plugins: [`Wal2json`] (every format), [`TestDecoding`], [`Pgoutput`]. Any other name ([`by_name`]) is
//! [`Unknown`]: its payloads pass through unchanged, each one counts as a whole unit (so an end position stops
//! after the first message past it, which may be inside a transaction of such a plugin), and nothing is decoded.
//! A new plugin is a module here implementing [`OutputPlugin`] and a line in [`by_name`].
//!
//! # Typed decoding
//! A plugin whose payloads pgrepl decodes also implements [`Decoding`]: it makes a [`Decode`]r, which turns
//! payloads into the plugin-neutral [`Event`]s of [`crate::event`]. [`crate::changes::ChangeStream`] is generic
//! over it (`ChangeStream<Wal2json>` by default, `ChangeStream<TestDecoding>`): it creates and checks the slot
//! with the plugin's [`name`](OutputPlugin::name), asks for [`Decoding::stream_options`], and decodes, filters
//! replays and recognises heartbeats through the decoder. [`OutputPlugin`] stays object-safe (the stream task
//! holds a `dyn OutputPlugin`); [`Decoding`] and [`Decode`] have associated types and generic methods.
//!
//! # Decoder entry points: one naming scheme
//! Every decoder (wal2json's [`Decoder`](crate::wal2json::Decoder), [`ChunkedDecoder`](crate::wal2json::ChunkedDecoder),
//! [`AnyDecoder`](crate::wal2json::AnyDecoder), [`TestDecodingDecoder`]) uses the same names:
//! - `events(payload)`: the payload's events, decoded lazily as they are pulled (an iterator; hand each event
//!   back with `recycle` to reuse its storage);
//! - `decode_each(payload, f)`: each event to `f`, recycled after it (the fastest loop; returns the count);
//! - `decode(payload)`: the one event of a payload, for a decoder whose payloads are one event each (wal2json
//!   format 2's [`Decoder`](crate::wal2json::Decoder));
//! - `classify(payload)`: the payload's [`Boundary`], updating the decoder's transaction state without
//!   decoding (as [`TxnClassifier::classify`] does);
//! - `recycle(event)`, `reset()`, `in_transaction()`.
//!
//! The former names `feed` (now `events`), `decode_with` (now `decode_each`) and `observe` (now `classify`)
//! remain as deprecated aliases.
//!
//! Sans IO: no tokio.

mod pgoutput;
mod streaming;
mod test_decoding;
mod wal2json;

use std::fmt;
use std::sync::Arc;

use crate::error::Result;
use crate::event::Event;
use crate::lsn::Lsn;
pub use crate::proto::feedback::Boundary;
use crate::proto::replication::XLogData;
pub use pgoutput::{Pgoutput, PgoutputTracker};
pub use streaming::StreamedTxns;
pub use test_decoding::{TestDecoding, TestDecodingDecoder, TestDecodingEvents, TestDecodingTracker};
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
    /// Where acknowledging `x`, a payload that ends a transaction or stands alone, points: [`commit_lsn`]
    /// (Self::commit_lsn) for the end of a transaction, the payload's own position otherwise. What the CLI and
    /// [`crate::changes::ChangeStream`] acknowledge and filter replays by.
    fn ack_lsn(&self, x: &XLogData) -> Lsn {
        if x.boundary == Boundary::End {
            self.commit_lsn(&x.data, x.wal_start)
        } else {
            x.wal_start
        }
    }
    /// Whether the plugin's messages show transaction boundaries at all (`false`: every message is a unit).
    fn knows_transactions(&self) -> bool {
        true
    }
    /// The options to start streaming with on a server of `server_version_num` (`None`: unknown), from those
    /// the application gave: what a plugin fills in by server version (pgoutput's `proto_version`) and checks
    /// before anything is sent. By default `options` unchanged.
    fn start_options(
        &self,
        server_version_num: Option<u32>,
        options: &[(String, Option<String>)],
    ) -> Result<Vec<(String, Option<String>)>> {
        let _ = server_version_num;
        Ok(options.to_vec())
    }
    /// A fresh [`Router`] for one stream: [`DeliverAll`] unless the plugin sends transactions before they
    /// commit (pgoutput's [`StreamedTxns`]).
    fn router(&self) -> Box<dyn Router> {
        Box::new(DeliverAll)
    }
}

/// The events of one payload, decoded lazily as they are pulled (see [`Decode::events`]).
pub trait EventIter<'a>: Iterator<Item = Result<Event<'a>>> {
    /// Give an event's storage back for reuse.
    fn recycle(&mut self, ev: Event<'_>);
}

/// Calls `f` on each of `events` and gives each one's storage back afterwards: the `decode_each` of every
/// decoder whose `events` iterator does the decoding. Returns the number of events; the first error ends it.
pub(crate) fn each_event<'a>(mut events: impl EventIter<'a>, mut f: impl FnMut(&Event<'a>)) -> Result<usize> {
    let mut n = 0;
    while let Some(ev) = events.next() {
        let ev = ev?;
        f(&ev);
        events.recycle(ev);
        n += 1;
    }
    Ok(n)
}

/// A decoder of one plugin's payloads into typed [`Event`]s, for one stream (it may keep state across payloads:
/// wal2json's write-in-chunks transactions, pgoutput's relation cache). Events borrow the payload (`'a`), not the
/// decoder. See the module docs for the names.
pub trait Decode: Send + 'static {
    /// The iterator [`events`](Decode::events) returns.
    type Events<'d, 'a>: EventIter<'a>
    where
        Self: 'd;
    /// The payload's events (zero or more), decoded as they are pulled.
    fn events<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<Self::Events<'d, 'a>>;
    /// Decode `payload` and call `f` on each event, recycling each afterwards. Returns the number of events.
    fn decode_each<'a>(&mut self, payload: &'a [u8], f: impl FnMut(&Event<'a>)) -> Result<usize>;
    /// Give an event's storage back for reuse (optional).
    fn recycle(&mut self, ev: Event<'_>);
    /// Forget any open transaction (after a reconnect, the server resends from a transaction boundary).
    fn reset(&mut self);
    /// Whether the payloads so far leave a transaction open.
    fn in_transaction(&self) -> bool;
    /// From now on, streamed transactions reach this decoder assembled: held by the plugin's [`Router`] until
    /// they commit and then decoded whole (what [`crate::changes::ChangeStream`] does). The decoder then makes
    /// a transaction's segments one transaction: a Begin at its first segment, nothing for the segment markers.
    /// (A no-op for plugins that stream nothing.)
    fn assembled(&mut self) {}
}

/// Where a payload goes before the application sees it. A plugin that sends a transaction before it commits
/// (pgoutput's `streaming`: segments interleaved with other transactions, possibly aborted) has its
/// [`Router`] hold those payloads and release them, in order, when the transaction commits; every other payload
/// is delivered as it comes. [`crate::changes::ChangeStream`] keeps the held payloads ([`crate::spill::Spill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Deliver it now.
    Deliver,
    /// Part of top-level transaction `xid` (from its subtransaction `sub`; `sub == xid` for the top level),
    /// which has not committed: hold it.
    Hold {
        /// Top-level transaction.
        xid: u32,
        /// Subtransaction (or `xid`).
        sub: u32,
    },
    /// Ends transaction `xid`: deliver its held payloads, in order, then this one.
    Release {
        /// Top-level transaction.
        xid: u32,
    },
    /// Transaction `xid` (`sub == xid`) or its subtransaction `sub` aborted: forget what is held of it (of a
    /// subtransaction: from its first payload on); this payload is not delivered either.
    Discard {
        /// Top-level transaction.
        xid: u32,
        /// The aborted subtransaction, or `xid`.
        sub: u32,
    },
}

/// Routes one stream's payloads ([`Route`]); it may keep state across payloads.
pub trait Router: Send + 'static {
    /// Where `payload` goes.
    fn route(&mut self, payload: &[u8]) -> Result<Route>;
    /// Forget any state (after a reconnect, the server resends from a transaction boundary).
    fn reset(&mut self) {}
}

/// Every payload is delivered as it comes (plugins that send transactions only once they commit).
#[derive(Debug, Default, Clone, Copy)]
pub struct DeliverAll;

impl Router for DeliverAll {
    fn route(&mut self, _: &[u8]) -> Result<Route> {
        Ok(Route::Deliver)
    }
}

/// A plugin pgrepl decodes into typed [`Event`]s (what [`crate::changes::ChangeStream`] is generic over).
pub trait Decoding: OutputPlugin + Clone {
    /// Its decoder.
    type Decoder: Decode;
    /// A fresh decoder for one stream.
    fn decoder(&self) -> Self::Decoder;
    /// The options a [`ChangeStream`](crate::changes::ChangeStream) asks for by default: what its replay
    /// filter and typed events need (wal2json: format 2 with xids, timestamps and LSNs; test_decoding: xids and
    /// timestamps).
    fn stream_options(&self) -> Vec<(String, Option<String>)> {
        self.default_options()
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
        // protocol 1 and no publication: the caller's options (`-o publication_names=…`) complete it
        "pgoutput" => Arc::new(Pgoutput::default()),
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
        let p = by_name("pgoutput");
        assert_eq!(p.name(), "pgoutput");
        assert!(p.knows_transactions());
        assert_eq!(p.default_options(), vec![], "proto_version: the server's highest, publication: the user's");
        assert_eq!(p.tracker().classify(b"B"), Boundary::Begin);
        let other = by_name("decoderbufs");
        assert_eq!(other.name(), "decoderbufs");
        assert!(!other.knows_transactions());
        assert_eq!(other.tracker().classify(b"BEGIN 1"), Boundary::Whole);
        assert!(by_name("wal2json").knows_transactions());
    }
}
