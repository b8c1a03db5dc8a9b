//! pgoutput payloads (`pgrepl::pgoutput`): the message parser, the relation cache and the typed decoder, and
//! the plugin's transaction classification.
//!
//! Input: a sequence of payloads, each a 4-byte big-endian length and its bytes (a length past the end takes
//! the rest), decoded in order by one `PgoutputDecoder` (every event recycled) while `PgoutputTracker`
//! classifies them. Seeds are real servers' payloads (`tests/pgoutput_events.rs` with `PGREPL_PGOUTPUT_SEEDS`).
//!
//! Invariants beyond "no panic": a payload `parse` accepts is written back byte for byte by an independent
//! writer (fuzz/src/lib.rs); the decoder fails on every payload `parse` refuses, and every failure names its byte
//! offset; while every payload so far parsed, the tracker's boundary is the one the message type gives (begin, end,
//! whole, inside) and it tracks the streamed block as the decoder does; every event is written by the JSON writer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::pgoutput::{parse, Message, PgoutputDecoder};
use pgrepl::plugin::{Boundary, OutputPlugin, Pgoutput};

fuzz_target!(|data: &[u8]| {
    let mut d = PgoutputDecoder::new();
    let mut tracker = Pgoutput::default().tracker();
    let mut out = Vec::new();
    let mut all_parsed = true;
    let mut rest = data;
    while !rest.is_empty() {
        let (len, body) = match rest.split_first_chunk::<4>() {
            Some((l, b)) => (u32::from_be_bytes(*l) as usize, b),
            None => (rest.len(), rest),
        };
        let (p, next) = body.split_at(len.min(body.len()));
        rest = next;

        let in_stream = d.in_stream();
        let parsed = parse(p, in_stream);
        let boundary = tracker.classify(p);
        match &parsed {
            Ok(m) => {
                assert_eq!(pgrepl_fuzz::pgoutput::write(m), p, "parse → write is not the payload");
                let want = match m {
                    Message::Begin(_) | Message::BeginPrepare(_) => Boundary::Begin,
                    Message::Commit(_) | Message::Prepare(_) | Message::StreamCommit(_) | Message::StreamPrepare(_) => {
                        Boundary::End
                    }
                    Message::CommitPrepared(_) | Message::RollbackPrepared(_) => Boundary::Whole,
                    Message::Message(x) if !x.transactional() => Boundary::Whole,
                    _ => Boundary::Inside,
                };
                // (once a malformed payload went by, the tracker, which reads only type bytes, may disagree)
                if all_parsed {
                    assert_eq!(boundary, want, "{m:?}");
                }
            }
            Err(e) => assert!(e.to_string().contains(" at byte "), "{e}"),
        }
        match d.events(p) {
            Ok(events) => {
                assert!(parsed.is_ok(), "the decoder took what parse refused");
                let mut events = events;
                while let Some(ev) = events.next() {
                    match ev {
                        Ok(ev) => {
                            out.clear();
                            pgrepl::wal2json::write_event(&mut out, &ev);
                            events.recycle(ev);
                        }
                        Err(e) => {
                            assert!(e.to_string().contains(" at byte "), "{e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => assert!(e.to_string().contains(" at byte "), "{e}"),
        }
        all_parsed &= parsed.is_ok();
        if all_parsed {
            // the tracker and the decoder agree on the streamed block. A probe Message (classifying one changes no
            // state) is non-transactional read outside a block (flags 0 at byte 1) and transactional inside one
            // (flags 1 after a 4-byte xid).
            let probe = tracker.classify(&[b'M', 0, 0, 0, 0, 1]);
            assert_eq!(probe == Boundary::Inside, d.in_stream());
        }
    }
});
