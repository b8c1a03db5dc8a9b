//! pgoutput's streamed-transaction reassembly: the [`StreamedTxns`] router, the [`Spill`] store and the
//! assembled `PgoutputDecoder`, as `ChangeStream` and `pgrepl recv` chain them, against a model.
//!
//! Input: a sequence of payloads, each a 4-byte big-endian length and its bytes (a length past the end takes the
//! rest); the first byte of the input picks the memory budget (0 … 255 × 64 bytes, so that spilling to files is
//! exercised). Each payload is routed: held payloads go to the spill (and to a model: per transaction a list of
//! (subtransaction, payload)), aborts truncate both (the model drops from the subtransaction's first payload on),
//! a release reads the spill back and must give exactly the model's payloads in order, which the assembled
//! decoder then decodes (errors allowed, never a panic), followed by the releasing payload.
//!
//! Invariants beyond "no panic": released = model; the spill's memory never passes its budget.
#![no_main]

use std::collections::HashMap;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pgrepl::lsn::Lsn;
use pgrepl::pgoutput::PgoutputDecoder;
use pgrepl::plugin::{Route, Router, StreamedTxns};
use pgrepl::spill::{Held, Spill};

/// Per top-level xid: held payloads with their subtransaction, and the subtransactions' first indexes.
type Model = HashMap<u32, (Vec<Bytes>, Vec<(u32, usize)>)>;

fuzz_target!(|data: &[u8]| {
    let Some((&b, mut rest)) = data.split_first() else { return };
    let budget = usize::from(b) * 64;
    let mut spill = Spill::new(budget, std::env::temp_dir());
    let mut model: Model = HashMap::new();
    let mut router = StreamedTxns::default();
    let mut decoder = PgoutputDecoder::new();
    decoder.assembled();
    let mut n = 0u64;
    while !rest.is_empty() {
        let (len, body) = match rest.split_first_chunk::<4>() {
            Some((l, b)) => (u32::from_be_bytes(*l) as usize, b),
            None => (rest.len(), rest),
        };
        let (p, next) = body.split_at(len.min(body.len()));
        rest = next;
        n += 1;
        let payload = Bytes::copy_from_slice(p);
        let Ok(route) = router.route(p) else { continue };
        match route {
            Route::Deliver => {
                let _ = decoder.decode_each(p, |_| {});
            }
            Route::Hold { xid, sub } => {
                spill.hold(xid, sub, Held { wal_start: Lsn(n), wal_end: Lsn(n), data: payload.clone() }).unwrap();
                let (v, subs) = model.entry(xid).or_default();
                if sub != xid && !subs.iter().any(|&(s, _)| s == sub) {
                    subs.push((sub, v.len()));
                }
                v.push(payload);
            }
            Route::Discard { xid, sub } => {
                spill.abort(xid, sub).unwrap();
                if sub == xid {
                    model.remove(&xid);
                } else if let Some((v, subs)) = model.get_mut(&xid) {
                    if let Some(j) = subs.iter().position(|&(s, _)| s == sub) {
                        v.truncate(subs[j].1);
                        subs.truncate(j);
                    }
                }
            }
            Route::Release { xid } => {
                let want = model.remove(&xid).map(|m| m.0).unwrap_or_default();
                let got: Vec<Bytes> = spill.release(xid).unwrap().map(|h| h.unwrap().data).collect();
                assert_eq!(got, want, "released payloads differ from the model");
                decoder.reset();
                for h in &got {
                    let _ = decoder.decode_each(h, |_| {});
                }
                let _ = decoder.decode_each(p, |_| {});
            }
        }
        assert!(spill.memory() <= budget, "memory {} over budget {budget}", spill.memory());
    }
});
