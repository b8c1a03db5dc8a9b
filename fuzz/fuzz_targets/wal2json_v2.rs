//! wal2json format 2 (`wal2json::Decoder`, one payload → one event).
//!
//! Input: one payload; a second payload after the first 0x00 byte (wal2json output never contains NUL).
//!
//! Invariants beyond "no panic":
//! - write → parse: a decoded event written back with the JSON writer is valid JSON (serde_json) and decodes to
//!   the same event (the writer and the decoder agree, escapes included);
//! - scratch reuse is invisible: decoding the second payload after recycling the first's event gives what a fresh
//!   decoder gives;
//! - `AnyDecoder` agrees with `Decoder`, and `boundary_after` succeeds, on every payload the decoder accepts that
//!   `Format::detect` reads as format 2 — with `action` anywhere at the top level (FUZZING.md, finding 3). Not
//!   checked: a payload with a top-level `kind` or `change` key before `action`, which detection reads as
//!   format 1 by design (the first of `action`/`kind`/`change` decides; wal2json never writes those keys in
//!   format 2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::wal2json::{boundary_after, AnyDecoder, Decoder, Format};
use pgrepl_fuzz::{any_events_of, writer_round_trip};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let first = parts.next().unwrap_or_default();
    let second = parts.next();

    let mut d = Decoder::new();
    let r1 = d.decode(first).map(|e| e.into_owned());
    if let Ok(ev) = &r1 {
        writer_round_trip(ev);
        if Format::detect(first).ok() == Some(Format::V2) {
            assert!(boundary_after(first).is_ok(), "boundary_after refuses a payload the decoder accepts");
            let any = any_events_of(&mut AnyDecoder::new(), first).unwrap_or_else(|e| panic!("AnyDecoder: {e}"));
            assert_eq!(any, vec![ev.clone()]);
        }
    }
    if let Ok(ev) = d.decode(first) {
        d.recycle(ev);
    }
    if let Some(second) = second {
        let reused = d.decode(second).map(|e| e.into_owned()).map_err(|e| e.to_string());
        let fresh = Decoder::new().decode(second).map(|e| e.into_owned()).map_err(|e| e.to_string());
        assert_eq!(reused, fresh, "a recycled decoder decodes differently");
    }
});
