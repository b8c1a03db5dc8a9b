//! Allocation behaviour of the wal2json decoders, measured with a counting global allocator (per thread, so
//! parallel tests do not disturb each other):
//! - format 2: zero allocations per event in steady state (after warm-up, with events recycled);
//! - format 1 write-in-chunks: a 1,000,000-row transaction streams through with peak memory bounded by the
//!   largest single change, not the transaction.
// Test code: a failed unwrap, expect, index or panic is a failed test; the library's no-panic policy
// (Cargo.toml [workspace.lints.clippy]) is lifted for the whole test crate, its helpers included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use pgrepl::wal2json::{AnyDecoder, ChunkedDecoder, Decoder, Event, Format};

#[path = "common/w2j.rs"]
mod w2j;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize, alloc: bool) {
    let _ = ALLOCS.try_with(|a| {
        if alloc {
            a.set(a.get() + 1)
        }
    });
    let _ = CURRENT.try_with(|c| {
        let v = c.get() + delta;
        c.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize, true);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note(-(l.size() as isize), false);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new as isize - l.size() as isize, true);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

fn reset_peak() -> isize {
    let c = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(c));
    c
}

fn peak() -> isize {
    PEAK.with(Cell::get)
}

fn v2_payloads() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wal2json");
    let mut all = Vec::new();
    for f in ["v2-default.w2j", "v2-all.w2j", "v2-lsn-pk.w2j", "v2-xids-ts.w2j", "v2-positions-notnull.w2j"] {
        all.extend(w2j::read_w2j(&dir.join(f), false).1);
    }
    all
}

fn decode_v2_all(d: &mut Decoder, payloads: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for p in payloads {
        let ev = d.decode(p).unwrap();
        n += 1 + ev.change().map_or(0, |c| c.columns.len());
        d.recycle(ev);
    }
    n
}

#[test]
fn format2_zero_allocations_without_escapes() {
    let payloads: Vec<Vec<u8>> = v2_payloads().into_iter().filter(|p| !p.contains(&b'\\')).collect();
    assert!(payloads.len() > 800, "{}", payloads.len());
    let mut d = Decoder::new();
    decode_v2_all(&mut d, &payloads); // warm-up: the column Vecs grow to their steady size
    let before = allocs();
    let mut events = 0;
    for _ in 0..3 {
        events += decode_v2_all(&mut d, &payloads);
    }
    let n = allocs() - before;
    assert_eq!(n, 0, "{n} allocations for {events} events/columns");
}

#[test]
fn format2_zero_allocations_with_escapes_after_warmup() {
    // strings with escapes are unescaped into Strings recycled from earlier events
    let payloads: Vec<Vec<u8>> = v2_payloads()
        .into_iter()
        .filter(|p| {
            let mut d = Decoder::new();
            !matches!(d.decode(p), Ok(Event::Message(_)) | Ok(Event::Truncate(_)) | Ok(Event::Begin(_)))
        })
        .collect();
    let mut d = Decoder::new();
    for _ in 0..3 {
        decode_v2_all(&mut d, &payloads);
    }
    let before = allocs();
    decode_v2_all(&mut d, &payloads);
    let n = allocs() - before;
    assert_eq!(n, 0, "{n} allocations over {} change payloads with escapes", payloads.len());
}

#[test]
fn any_decoder_format2_zero_allocations() {
    let payloads: Vec<Vec<u8>> = v2_payloads().into_iter().filter(|p| !p.contains(&b'\\')).collect();
    let mut d = AnyDecoder::new();
    let run = |d: &mut AnyDecoder| {
        for p in &payloads {
            let mut it = d.events(p).unwrap();
            while let Some(ev) = it.next() {
                let ev = ev.unwrap();
                it.recycle(ev);
            }
        }
    };
    run(&mut d);
    let before = allocs();
    run(&mut d);
    assert_eq!(allocs() - before, 0);
}

/// A synthetic 1,000,000-row write-in-chunks transaction, each change generated into the same buffer just before
/// it is fed: the decoder's peak memory stays at the size of one change.
#[test]
fn chunked_million_rows_bounded_memory() {
    const ROWS: usize = 1_000_000;
    let mut d = ChunkedDecoder::new();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut events = 0usize;
    let mut checksum = 0u64;
    let mut feed = |d: &mut ChunkedDecoder, chunk: &[u8]| {
        let mut it = d.events(chunk).unwrap();
        while let Some(ev) = it.next() {
            let ev = ev.unwrap();
            if let Event::Insert(c) = &ev {
                checksum += c.columns[0].value.as_u64().unwrap();
            }
            events += 1;
            it.recycle(ev);
        }
    };
    let header = br#"{"xid":724,"timestamp":"2024-01-02 03:04:05.678+00","change":["#;
    assert_eq!(Format::detect(header).unwrap(), Format::V1Chunk(pgrepl::wal2json::ChunkKind::Header));
    feed(&mut d, header);
    assert!(d.in_transaction());
    let base = reset_peak();
    for i in 0..ROWS {
        buf.clear();
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(br#"{"kind":"insert","schema":"public","table":"big","columnnames":["id","name","note"],"columntypes":["bigint","text","text"],"columnvalues":["#);
        buf.extend_from_slice(i.to_string().as_bytes());
        buf.extend_from_slice(br#","row \"quoted\" name","some text that is the same for every row"]}"#);
        feed(&mut d, &buf);
        if i == 1000 {
            // after warm-up, memory must not grow with the number of rows
            reset_peak();
        }
    }
    let grown = peak() - base;
    feed(&mut d, b"]}");
    assert!(!d.in_transaction());
    assert_eq!(events, ROWS + 2);
    assert_eq!(checksum, (ROWS as u64 - 1) * ROWS as u64 / 2);
    // one change's worth of scratch (the chunk buffer itself is the test's): a few KB, not ~150 MB
    assert!(grown < 16 * 1024, "peak grew by {grown} bytes over {ROWS} rows");
}
