//! Decode every payload of a `.w2j` corpus once (for profilers: `valgrind --tool=callgrind`, `perf`).
//! Usage: cargo run --release --example decode_only -- bench-data/v2.w2j [limit]
// A profiling driver, not an example of library use: it aborts on a bad corpus; the library's no-panic policy
// (Cargo.toml [workspace.lints.clippy]) is lifted for this crate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::indexing_slicing,
    clippy::string_slice
)]
use pgrepl::wal2json::{AnyDecoder, Event};

#[path = "../tests/common/w2j.rs"]
#[allow(dead_code)]
mod w2j;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("a .w2j file");
    let limit: usize = args.next().map_or(usize::MAX, |s| s.parse().expect("a count"));
    let (_, mut payloads) = w2j::read_w2j(std::path::Path::new(&path), false);
    payloads.truncate(limit);
    let t = std::time::Instant::now();
    let mut d = AnyDecoder::new();
    let (mut events, mut columns) = (0usize, 0usize);
    for p in &payloads {
        events += d
            .decode_each(p, |ev| {
                if let Event::Insert(c) | Event::Update(c) | Event::Delete(c) = ev {
                    columns += c.columns.len() + c.identity.len();
                }
            })
            .unwrap();
    }
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let s = t.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "{} payloads, {mb:.1} MB, {events} events, {columns} columns, {s:.3} s, {:.0} MB/s",
        payloads.len(),
        mb / s
    );
}
