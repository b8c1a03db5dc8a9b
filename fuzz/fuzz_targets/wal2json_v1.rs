//! wal2json format 1 whole documents (`ChunkedDecoder` / `AnyDecoder`, one document → Begin, changes, Commit).
//!
//! Input: one payload.
//!
//! Invariants beyond "no panic":
//! - a document decodes to `Begin`, then changes, then `Commit` (or, for a non-transactional message
//!   document, that one message), Begin and Commit carrying the same xid;
//! - `AnyDecoder` gives the same events as `ChunkedDecoder`, and `boundary_after` agrees with the events
//!   (a transaction → Commit, a standalone message → Standalone);
//! - every event goes through the JSON writer into valid JSON that decodes (format 2) to the same event;
//! - a whole document never leaves a transaction open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::wal2json::{boundary_after, AnyDecoder, Boundary, ChunkedDecoder, Event, Format};
use pgrepl_fuzz::{any_events_of, events_of, writer_round_trip};

fuzz_target!(|data: &[u8]| {
    if Format::detect(data).ok() != Some(Format::V1Document) {
        let _ = events_of(&mut ChunkedDecoder::new(), data);
        return;
    }
    let mut d = ChunkedDecoder::new();
    let Ok(events) = events_of(&mut d, data) else { return };
    assert!(!d.in_transaction(), "a whole document left a transaction open");
    let mut any = AnyDecoder::new();
    assert_eq!(any_events_of(&mut any, data).ok().as_ref(), Some(&events), "AnyDecoder differs");
    assert!(!any.in_transaction());
    match events.as_slice() {
        [Event::Message(m)] if !m.transactional => {
            assert_eq!(boundary_after(data).ok(), Some(Boundary::Whole));
        }
        [Event::Begin(b), changes @ .., Event::Commit(c)] => {
            assert_eq!(b.xid, c.xid);
            for ch in changes {
                assert!(!matches!(ch, Event::Begin(_) | Event::Commit(_)), "nested transaction: {events:?}");
            }
            assert_eq!(boundary_after(data).ok(), Some(Boundary::End));
        }
        other => panic!("a document decoded to {other:?}"),
    }
    for ev in &events {
        writer_round_trip(ev);
    }
});
