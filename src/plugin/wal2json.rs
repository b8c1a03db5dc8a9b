//! wal2json's rules: formats 1 (whole documents and write-in-chunks) and 2.

use super::{Boundary, Decode, Decoding, EventIter, OutputPlugin, TxnClassifier};
use crate::error::Result;
use crate::event::Event;
use crate::lsn::Lsn;
use crate::wal2json::{AnyDecoder, Events};

/// wal2json. Default options: none (the server's defaults: format 1); [`crate::changes`] asks for format 2.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wal2json;

impl OutputPlugin for Wal2json {
    fn name(&self) -> &str {
        "wal2json"
    }
    fn tracker(&self) -> Box<dyn TxnClassifier> {
        Box::new(Wal2jsonTracker::default())
    }
    /// A whole format-1 transaction is sent at its first change's LSN: its commit's end is `nextlsn` (with
    /// `include-lsn`; without it, the first change's LSN is all there is).
    fn commit_lsn(&self, payload: &[u8], wal_start: Lsn) -> Lsn {
        crate::wal2json::document_next_lsn(payload).unwrap_or(wal_start)
    }
}

impl Decoding for Wal2json {
    type Decoder = AnyDecoder;
    fn decoder(&self) -> AnyDecoder {
        AnyDecoder::new()
    }
    /// `format-version=2`, `include-xids`, `include-timestamp`, `include-lsn` (the replay filter reads the commit's
    /// end from a `B`'s `nextlsn`).
    fn stream_options(&self) -> Vec<(String, Option<String>)> {
        ["format-version=2", "include-xids=1", "include-timestamp=1", "include-lsn=1"]
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }
}

impl<'a> EventIter<'a> for Events<'_, 'a> {
    #[inline]
    fn recycle(&mut self, ev: Event<'_>) {
        Events::recycle(self, ev);
    }
}

impl Decode for AnyDecoder {
    type Events<'d, 'a> = Events<'d, 'a>;
    #[inline]
    fn events<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<Events<'d, 'a>> {
        AnyDecoder::events(self, payload)
    }
    #[inline]
    fn decode_each<'a>(&mut self, payload: &'a [u8], f: impl FnMut(&Event<'a>)) -> Result<usize> {
        AnyDecoder::decode_each(self, payload, f)
    }
    #[inline]
    fn recycle(&mut self, ev: Event<'_>) {
        AnyDecoder::recycle(self, ev);
    }
    fn reset(&mut self) {
        AnyDecoder::reset(self);
    }
    fn in_transaction(&self) -> bool {
        AnyDecoder::in_transaction(self)
    }
}

/// wal2json in any format: format 2 `B`/`C` actions (a non-transactional `M` is whole), format-1 whole
/// documents, format-1 write-in-chunks sequences (`{"xid":…,"change":[` … `]}`). Looks at the first and last
/// bytes of each payload, and for a payload that is neither format 2 with `action` first nor a chunk, at its
/// top-level keys ([`boundary_after`](crate::wal2json::boundary_after)).
#[derive(Debug, Default, Clone, Copy)]
pub struct Wal2jsonTracker {
    in_chunked_txn: bool,
}

impl TxnClassifier for Wal2jsonTracker {
    fn classify(&mut self, p: &[u8]) -> Boundary {
        let t = p.trim_ascii();
        if let Some([a, b'"', ..]) = t.strip_prefix(b"{\"action\":\"") {
            match a {
                b'B' => return Boundary::Begin,
                b'C' => return Boundary::End,
                // a message: transactional or not, by its key
                b'M' => return crate::wal2json::boundary_after(t).unwrap_or(Boundary::Whole),
                _ => return Boundary::Inside,
            }
        }
        if self.in_chunked_txn {
            // "]}" (or "\n]\n}" pretty-printed) closes a chunked transaction
            let mut compact = t.iter().copied().filter(|b| !b.is_ascii_whitespace());
            if compact.next() == Some(b']') && compact.next() == Some(b'}') && compact.next().is_none() {
                self.in_chunked_txn = false;
                return Boundary::End;
            }
            return Boundary::Inside;
        }
        if t.first() == Some(&b'{') && t.last() == Some(&b'[') {
            self.in_chunked_txn = true;
            return Boundary::Begin;
        }
        // A format 1 document: a whole transaction (End) or a non-transactional message (Whole); format 2 with
        // its keys in another order than wal2json's (another producer of the same JSON) by its action.
        crate::wal2json::boundary_after(t).unwrap_or(Boundary::Whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal2json_boundaries() {
        let mut t = Wal2jsonTracker::default();
        for (p, b) in [
            (&br#"{"action":"B","xid":1}"#[..], Boundary::Begin),
            (br#"{"action":"I","xid":1,"schema":"public","table":"t","columns":[]}"#, Boundary::Inside),
            (br#"{"action":"M","xid":1,"transactional":true,"prefix":"p","content":""}"#, Boundary::Inside),
            (br#"{"action":"C","xid":1}"#, Boundary::End),
            (br#"{"action":"M","xid":null,"transactional":false,"prefix":"p","content":""}"#, Boundary::Whole),
            (br#"{"xid":7,"change":[{"kind":"insert","schema":"s","table":"t"}]}"#, Boundary::End),
            (br#"{"change":[{"kind":"message","transactional":false,"prefix":"p","content":""}]}"#, Boundary::Whole),
            (b"{\"xid\":8,\"change\":[", Boundary::Begin),
            (br#"{"kind":"insert"}"#, Boundary::Inside),
            (b"\n]\n}", Boundary::End),
            (br#"{"xid":1,"lsn":"0/1","action":"C"}"#, Boundary::End),
            (b"not json", Boundary::Whole),
        ] {
            assert_eq!(t.classify(p), b, "{}", String::from_utf8_lossy(p));
        }
    }

    #[test]
    fn classifies_every_format() {
        let mut c = Wal2jsonTracker::default();
        assert_eq!(c.classify(br#"{"action":"B","xid":1}"#), Boundary::Begin);
        assert_eq!(c.classify(br#"{"action":"I","table":"t"}"#), Boundary::Inside);
        assert_eq!(c.classify(br#"{"action":"C","xid":1}"#), Boundary::End);
        assert_eq!(c.classify(br#"{"xid":1,"change":[]}"#), Boundary::End);
        assert_eq!(c.classify(b"{\n\t\"xid\": 1,\n\t\"change\": [\n\t]\n}"), Boundary::End);
        assert_eq!(c.classify(br#"{"xid":1,"change":["#), Boundary::Begin);
        assert_eq!(c.classify(br#"{"kind":"insert"}"#), Boundary::Inside);
        assert_eq!(c.classify(br#",{"kind":"insert"}"#), Boundary::Inside);
        assert_eq!(c.classify(b"]}"), Boundary::End);
        assert_eq!(c.classify(br#"{"change":[{"kind":"message","transactional":false}]}"#), Boundary::Whole);
        assert_eq!(c.classify(br#"{"xid":7,"change":[{"kind":"message","transactional":true}]}"#), Boundary::End);
        assert_eq!(c.classify(br#"{"xid":7,"change":[{"kind":"insert"}]}"#), Boundary::End);
        // keys in another order than wal2json's
        assert_eq!(c.classify(br#"{"xid":1,"action":"B"}"#), Boundary::Begin);
        assert_eq!(c.classify(br#"{"xid":1, "table":"t", "action":"I"}"#), Boundary::Inside);
        assert_eq!(c.classify(br#"{"lsn":"0/1","action":"C"}"#), Boundary::End);
        assert_eq!(c.classify(br#"{"transactional":false,"action":"M","xid":null}"#), Boundary::Whole);
        assert_eq!(c.classify(b"not json"), Boundary::Whole);
    }
}
