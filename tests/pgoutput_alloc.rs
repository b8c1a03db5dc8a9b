//! Allocation behaviour of the pgoutput decoder, measured with a counting global allocator (per thread): once
//! the relation cache is filled and events are recycled, decoding Begin, Insert, Update (old key, unchanged
//! TOAST), Delete, Message and Commit payloads allocates nothing per event — text values are borrowed from the
//! payload, names and timestamps are copied into recycled buffers.
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

use pgrepl::pgoutput::PgoutputDecoder;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

fn msg(tag: u8) -> Vec<u8> {
    vec![tag]
}

fn tuple(b: &mut Vec<u8>, vals: &[Option<&str>]) {
    b.extend_from_slice(&(vals.len() as u16).to_be_bytes());
    for v in vals {
        match v {
            None => b.push(b'n'),
            Some("\u{0}toast") => b.push(b'u'),
            Some(s) => {
                b.push(b't');
                b.extend_from_slice(&(s.len() as i32).to_be_bytes());
                b.extend_from_slice(s.as_bytes());
            }
        }
    }
}

fn payloads() -> Vec<Vec<u8>> {
    // Relation 16384 public.accounts (id int4 key, name varchar(20), balance numeric(12,2), active bool,
    // notes text, created timestamptz)
    let mut rel = msg(b'R');
    rel.extend_from_slice(&16384u32.to_be_bytes());
    rel.extend_from_slice(b"public\0accounts\0d");
    let cols: [(&str, u32, i32, u8); 6] = [
        ("id", 23, -1, 1),
        ("name", 1043, 24, 0),
        ("balance", 1700, ((12 << 16) | 2) + 4, 0),
        ("active", 16, -1, 0),
        ("notes", 25, -1, 0),
        ("created", 1184, -1, 0),
    ];
    rel.extend_from_slice(&(cols.len() as u16).to_be_bytes());
    for (n, oid, typmod, flags) in cols {
        rel.push(flags);
        rel.extend_from_slice(n.as_bytes());
        rel.push(0);
        rel.extend_from_slice(&oid.to_be_bytes());
        rel.extend_from_slice(&typmod.to_be_bytes());
    }
    let mut begin = msg(b'B');
    begin.extend_from_slice(&0x1000u64.to_be_bytes());
    begin.extend_from_slice(&852_000_000_000_000i64.to_be_bytes());
    begin.extend_from_slice(&700u32.to_be_bytes());
    let mut ins = msg(b'I');
    ins.extend_from_slice(&16384u32.to_be_bytes());
    ins.push(b'N');
    tuple(
        &mut ins,
        &[Some("1"), Some("alice"), Some("12.50"), Some("t"), Some("a note"), Some("2026-01-02 03:04:05+00")],
    );
    let mut upd = msg(b'U');
    upd.extend_from_slice(&16384u32.to_be_bytes());
    upd.push(b'K');
    tuple(&mut upd, &[Some("1"), None, None, None, None, None]);
    upd.push(b'N');
    tuple(&mut upd, &[Some("2"), Some("bob"), Some("-0.01"), Some("f"), Some("\u{0}toast"), None]);
    let mut upd2 = msg(b'U');
    upd2.extend_from_slice(&16384u32.to_be_bytes());
    upd2.push(b'N');
    tuple(&mut upd2, &[Some("2"), Some("bob"), Some("NaN"), Some("f"), Some("x"), None]);
    let mut del = msg(b'D');
    del.extend_from_slice(&16384u32.to_be_bytes());
    del.push(b'K');
    tuple(&mut del, &[Some("2"), None, None, None, None, None]);
    let mut m = msg(b'M');
    m.push(1);
    m.extend_from_slice(&0x1001u64.to_be_bytes());
    m.extend_from_slice(b"prefix\0");
    m.extend_from_slice(&3i32.to_be_bytes());
    m.extend_from_slice(b"abc");
    let mut commit = msg(b'C');
    commit.push(0);
    commit.extend_from_slice(&0x1000u64.to_be_bytes());
    commit.extend_from_slice(&0x1030u64.to_be_bytes());
    commit.extend_from_slice(&852_000_000_000_001i64.to_be_bytes());
    vec![rel, begin, ins, upd, upd2, del, m, commit]
}

#[test]
fn steady_state_decoding_allocates_nothing_per_event() {
    let ps = payloads();
    let mut d = PgoutputDecoder::new();
    let mut n = 0;
    // warm-up: the relation cache and the recycled buffers
    for _ in 0..3 {
        for p in &ps {
            n += d.decode_each(p, |_| {}).unwrap();
        }
    }
    assert_eq!(n, 3 * 7);
    let before = allocs();
    let mut events = 0;
    for _ in 0..10_000 {
        for p in &ps[1..] {
            events += d.decode_each(p, |ev| assert!(ev.xid().is_some() || ev.change().is_none())).unwrap();
        }
    }
    assert_eq!(events, 70_000);
    assert_eq!(allocs() - before, 0, "allocations in steady state");
}
