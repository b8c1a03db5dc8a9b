//! wal2json format 1 write-in-chunks sequences (`ChunkedDecoder`, `AnyDecoder`), payloads separated by 0x00.
//!
//! Input: payloads separated by 0x00 (wal2json output never contains NUL).
//!
//! Invariants beyond "no panic":
//! - transaction state: after a header chunk a transaction is open, after an end chunk none is; a change
//!   chunk outside a transaction is an error; `AnyDecoder::observe` (no decoding) tracks the same state as
//!   decoding with `AnyDecoder::feed`, and its boundary agrees with the chunk kind;
//! - chunks reassemble to the document: when a header, its changes (each but the first led by a comma) and the
//!   end all decode, and every change chunk is JSON, the concatenation decodes as one document to the same
//!   events. A change chunk that is not JSON (wal2json's unescaped defaults, or what the fuzzer makes of them)
//!   makes the whole document ambiguous — a raw default can hold any text, a following change's included —
//!   while each chunk is bounded by its message: the chunks are the reading that counts, and the document must
//!   only decode (to events or to an error, without panic);
//! - every event goes through the JSON writer into valid JSON that decodes (format 2) to the same event;
//! - memory is bounded by one chunk: the decoder keeps only the header between chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::wal2json::{AnyDecoder, Boundary, ChunkKind, ChunkedDecoder, Event, Format};
use pgrepl_fuzz::{any_events_of, events_of, writer_round_trip};

fuzz_target!(|data: &[u8]| {
    let payloads: Vec<&[u8]> = data.split(|&b| b == 0).take(64).collect();
    let mut chunked = ChunkedDecoder::new();
    let mut any = AnyDecoder::new();
    let mut observer = AnyDecoder::new();
    // the current chunked transaction: its payloads and events, while every piece decoded
    // (document so far, events so far, change chunks, every change chunk is JSON)
    let mut txn: Option<(Vec<u8>, Vec<Event<'static>>, usize, bool)> = None;
    let mut synced = true;

    for p in payloads {
        let fmt = Format::detect(p).ok();
        let res = events_of(&mut chunked, p);
        let any_res = any_events_of(&mut any, p);
        assert_eq!(
            res.as_ref().ok(),
            any_res.as_ref().ok().filter(|_| fmt != Some(Format::V2)),
            "AnyDecoder and ChunkedDecoder differ on {:?}",
            String::from_utf8_lossy(p)
        );
        let observed = observer.classify(p);
        if let Ok(events) = &res {
            for ev in events {
                writer_round_trip(ev);
            }
        }
        match (fmt, &res) {
            (Some(Format::V1Chunk(ChunkKind::Header)), Ok(events)) => {
                assert!(chunked.in_transaction());
                assert!(matches!(events.as_slice(), [Event::Begin(_)]));
                assert_eq!(observed.as_ref().ok(), Some(&Boundary::Begin));
                txn = Some((p.to_vec(), events.clone(), 0, true));
            }
            (Some(Format::V1Chunk(ChunkKind::Change)), Ok(events)) => {
                assert!(chunked.in_transaction());
                assert!(matches!(events.as_slice(), [e] if e.change().is_some() || matches!(e, Event::Message(_))));
                assert_eq!(observed.as_ref().ok(), Some(&Boundary::Inside));
                if let Some((doc, evs, n, json)) = &mut txn {
                    let start = p.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(p.len());
                    let leading_comma = p.get(start) == Some(&b',');
                    if leading_comma == (*n > 0) {
                        let body = if leading_comma { &p[start + 1..] } else { p };
                        *json &= serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
                        doc.extend_from_slice(p);
                        evs.extend(events.iter().cloned());
                        *n += 1;
                    } else {
                        txn = None;
                    }
                }
            }
            (Some(Format::V1Chunk(ChunkKind::End)), Ok(events)) => {
                assert!(!chunked.in_transaction());
                assert!(matches!(events.as_slice(), [Event::Commit(_)]));
                assert_eq!(observed.as_ref().ok(), Some(&Boundary::End));
                if let Some((mut doc, mut evs, _, json)) = txn.take() {
                    doc.extend_from_slice(p);
                    evs.extend(events.iter().cloned());
                    let whole = events_of(&mut ChunkedDecoder::new(), &doc);
                    // without `json`, the document is ambiguous as a whole (see above): decoding it did not panic
                    if json {
                        match whole {
                            Ok(w) => assert_eq!(w, evs, "chunks and the reassembled document differ"),
                            Err(e) => panic!(
                                "chunks decode but the document does not: {e}: {}",
                                String::from_utf8_lossy(&doc)
                            ),
                        }
                    }
                }
            }
            _ => txn = None,
        }
        synced &= any_res.is_ok() && observed.is_ok();
        if synced {
            assert_eq!(any.in_transaction(), observer.in_transaction(), "observe and feed disagree");
        }
    }
});
