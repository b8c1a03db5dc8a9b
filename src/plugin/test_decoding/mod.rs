//! test_decoding's rules (the contrib plugin PostgreSQL ships, one line of text per message).

mod decoder;

use super::{Boundary, Decoding, OutputPlugin, TxnClassifier};
pub use decoder::{TestDecodingDecoder, TestDecodingEvents};

/// test_decoding. Its messages: `BEGIN [xid]`, one line per change (`table s.t: INSERT: …`), `COMMIT [xid]
/// [(at …)]`; with two-phase decoding `PREPARE TRANSACTION 'gid'` ends the prepared transaction's changes and
/// `COMMIT PREPARED` / `ROLLBACK PREPARED` stand alone; non-transactional messages (`message: transactional: 0
/// …`) stand alone. With `stream-changes` on, streamed blocks (`opening a streamed block …`) interleave with
/// other transactions: each streamed line counts as a whole unit (an end position may then stop between two
/// blocks of one transaction).
#[derive(Debug, Default, Clone, Copy)]
pub struct TestDecoding;

impl OutputPlugin for TestDecoding {
    fn name(&self) -> &str {
        "test_decoding"
    }
    fn tracker(&self) -> Box<dyn TxnClassifier> {
        Box::new(TestDecodingTracker::default())
    }
}

impl Decoding for TestDecoding {
    type Decoder = TestDecodingDecoder;
    fn decoder(&self) -> TestDecodingDecoder {
        TestDecodingDecoder::new()
    }
    /// `include-xids=1` (the plugin's default, said explicitly) and `include-timestamp=1` (the commit time on
    /// `COMMIT`).
    fn stream_options(&self) -> Vec<(String, Option<String>)> {
        vec![("include-xids".into(), Some("1".into())), ("include-timestamp".into(), Some("1".into()))]
    }
}

/// [`TestDecoding`]'s classification: by the first words of each line.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestDecodingTracker {
    open: bool,
}

impl TxnClassifier for TestDecodingTracker {
    fn classify(&mut self, p: &[u8]) -> Boundary {
        let word = |w: &[u8]| p.starts_with(w) && matches!(p.get(w.len()), None | Some(b' '));
        if word(b"BEGIN") {
            self.open = true;
            return Boundary::Begin;
        }
        if (word(b"COMMIT") && !p.starts_with(b"COMMIT PREPARED")) || p.starts_with(b"PREPARE TRANSACTION") {
            self.open = false;
            return Boundary::End;
        }
        if self.open {
            Boundary::Inside
        } else {
            Boundary::Whole
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_decoding_boundaries() {
        let mut t = TestDecodingTracker::default();
        for (p, b) in [
            (&b"BEGIN 735"[..], Boundary::Begin),
            (b"table public.t: INSERT: id[integer]:1 v[text]:'BEGIN'", Boundary::Inside),
            (b"message: transactional: 1 prefix: p, sz: 0 content:", Boundary::Inside),
            (b"COMMIT 735", Boundary::End),
            (b"message: transactional: 0 prefix: p, sz: 0 content:", Boundary::Whole),
            (b"BEGIN", Boundary::Begin),
            (b"table public.t: DELETE: id[integer]:1", Boundary::Inside),
            (b"COMMIT (at 2026-12-07 21:00:00+00)", Boundary::End),
            (b"BEGIN 736", Boundary::Begin),
            (b"table public.t: INSERT: id[integer]:2", Boundary::Inside),
            (b"PREPARE TRANSACTION 'g1'", Boundary::End),
            (b"COMMIT PREPARED 'g1'", Boundary::Whole),
            (b"ROLLBACK PREPARED 'g2'", Boundary::Whole),
            (b"BEGINNING", Boundary::Whole),
        ] {
            assert_eq!(t.classify(p), b, "{}", String::from_utf8_lossy(p));
        }
    }
}
