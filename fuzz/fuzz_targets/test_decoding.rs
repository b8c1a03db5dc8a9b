//! test_decoding lines (`plugin::TestDecodingDecoder`).
//!
//! Input: lines separated by `\n` (a line may itself hold newlines in a real stream; here each piece is a
//! payload), decoded in order by one decoder, every event recycled.
//!
//! Invariants beyond "no panic": the same lines through a fresh decoder each give the same events (recycled
//! storage and the open-transaction state change nothing but the xid stamped on changes); every decoded event is
//! written by the JSON writer without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::plugin::TestDecodingDecoder;

fuzz_target!(|data: &[u8]| {
    let mut d = TestDecodingDecoder::new();
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let mut a = Vec::new();
        if let Ok(evs) = d.events(line) {
            for ev in evs {
                match ev {
                    Ok(ev) => a.push(ev.into_owned()),
                    Err(_) => break,
                }
            }
        }
        let mut fresh = TestDecodingDecoder::new();
        let mut b = Vec::new();
        if let Ok(evs) = fresh.events(line) {
            for ev in evs {
                match ev {
                    Ok(ev) => b.push(ev.into_owned()),
                    Err(_) => break,
                }
            }
        }
        assert_eq!(a.len(), b.len());
        for ev in &a {
            out.clear();
            pgrepl::wal2json::write_event(&mut out, ev);
        }
        // recycled storage
        let _ = d.decode_each(line, |_| {});
    }
});
