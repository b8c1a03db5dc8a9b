//! Decoder throughput: pgrepl's wal2json decoder vs serde_json (typed, borrowed) vs simd-json's tape.
//!
//! `scripts/bench-decode.sh` records the corpora into bench-data/ and runs this (`cargo bench --bench decode`).
//! Without bench-data/ the small committed corpus (tests/data/wal2json) is used instead.
//!
//! For every corpus and decoder: MB/s over the payload bytes and events/s (the events pgrepl produces: one per
//! format 2 payload; Begin + changes + Commit per format 1 document), best of several timed runs.
// Bench harness: a failed unwrap, expect, index or panic aborts the measurement, which is what it should do;
// the library's no-panic policy (Cargo.toml [workspace.lints.clippy]) is lifted for this crate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use std::borrow::Cow;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgrepl::wal2json::{AnyDecoder, Decoder, Event, Format};
use serde::Deserialize;
use serde_json::value::RawValue;

// ---- serde_json, typed and borrowed ----

#[derive(Deserialize)]
#[allow(dead_code)]
struct SV2<'a> {
    #[serde(borrow)]
    action: &'a str,
    xid: Option<u64>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    origin: Option<u32>,
    #[serde(borrow)]
    lsn: Option<&'a str>,
    #[serde(borrow)]
    nextlsn: Option<&'a str>,
    #[serde(borrow)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow)]
    table: Option<Cow<'a, str>>,
    #[serde(borrow)]
    columns: Option<Vec<SCol<'a>>>,
    #[serde(borrow)]
    identity: Option<Vec<SCol<'a>>>,
    #[serde(borrow)]
    pk: Option<Vec<SPk<'a>>>,
    transactional: Option<bool>,
    #[serde(borrow)]
    prefix: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SCol<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    ty: Option<Cow<'a, str>>,
    typeoid: Option<i64>,
    #[serde(borrow)]
    value: &'a RawValue,
    optional: Option<bool>,
    position: Option<i32>,
    #[serde(borrow)]
    default: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SPk<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    ty: Option<Cow<'a, str>>,
    typeoid: Option<i64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SDoc<'a> {
    xid: Option<u64>,
    #[serde(borrow)]
    nextlsn: Option<&'a str>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    origin: Option<u32>,
    #[serde(borrow)]
    change: Vec<SCh<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SCh<'a> {
    #[serde(borrow)]
    kind: &'a str,
    #[serde(borrow)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow)]
    table: Option<Cow<'a, str>>,
    #[serde(borrow)]
    columnnames: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    columntypes: Option<Vec<Cow<'a, str>>>,
    columntypeoids: Option<Vec<i64>>,
    #[serde(borrow)]
    columnvalues: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    oldkeys: Option<SOld<'a>>,
    transactional: Option<bool>,
    #[serde(borrow)]
    prefix: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SOld<'a> {
    #[serde(borrow)]
    keynames: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    keytypes: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    keyvalues: Vec<&'a RawValue>,
}

// ---- runners: each returns a checksum so that nothing is optimized away ----

fn run_pgrepl(payloads: &[Vec<u8>], v2: bool) -> usize {
    let mut n = 0;
    if v2 {
        let mut d = Decoder::new();
        for p in payloads {
            let ev = d.decode(p).unwrap();
            n += match &ev {
                Event::Insert(c) | Event::Update(c) | Event::Delete(c) => c.columns.len() + c.identity.len(),
                _ => 1,
            };
            d.recycle(ev);
        }
    } else {
        let mut d = AnyDecoder::new();
        for p in payloads {
            let mut it = d.events(p).unwrap();
            while let Some(ev) = it.next() {
                let ev = ev.unwrap();
                n += match &ev {
                    Event::Insert(c) | Event::Update(c) | Event::Delete(c) => c.columns.len() + c.identity.len(),
                    _ => 1,
                };
                it.recycle(ev);
            }
        }
    }
    n
}

fn run_serde(payloads: &[Vec<u8>], v2: bool) -> usize {
    let mut n = 0;
    for p in payloads {
        if v2 {
            let s: SV2 = serde_json::from_slice(p).unwrap();
            n += s.columns.map_or(1, |c| c.len()) + s.identity.map_or(0, |c| c.len());
        } else {
            let d: SDoc = serde_json::from_slice(p).unwrap();
            n += d.change.len() + 2;
        }
    }
    n
}

fn run_to_tape(payloads: &[Vec<u8>], buf: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for p in payloads {
        buf.clear();
        buf.extend_from_slice(p);
        let tape = simd_json::to_tape(buf).unwrap();
        n += tape.0.len();
    }
    n
}

fn run_fill_tape(payloads: &[Vec<u8>], buf: &mut Vec<u8>) -> usize {
    let mut n = 0;
    let mut buffers = simd_json::Buffers::new(64 * 1024);
    let mut tape = simd_json::Tape::null();
    for p in payloads {
        buf.clear();
        buf.extend_from_slice(p);
        let mut t = tape.reset();
        simd_json::fill_tape(buf, &mut buffers, &mut t).unwrap();
        n += t.0.len();
        tape = t.reset();
    }
    n
}

#[path = "../tests/common/w2j.rs"]
mod w2j;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bench = root.join("bench-data");
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test: small corpus, one run
    let smoke = !std::env::args().any(|a| a == "--bench");
    let mut corpora: Vec<(String, PathBuf)> = Vec::new();
    for (name, file) in [
        ("workload, format 2", "v2.w2j"),
        ("workload, format 1", "v1.w2j"),
        ("wide rows (100 cols), format 2", "wide.w2j"),
        ("text-heavy, format 2", "text.w2j"),
    ] {
        let p = bench.join(file);
        let want = std::env::var("BENCH_CORPUS").unwrap_or_default();
        if !smoke && p.exists() && file.contains(want.as_str()) {
            corpora.push((name.to_string(), p));
        }
    }
    if corpora.is_empty() {
        eprintln!(
            "bench-data/ not found: run scripts/bench-decode.sh to record the workload corpora \
             (~230k messages, ~160 MB). Falling back to the small committed corpus."
        );
        corpora.push(("committed corpus v2-all (small)".into(), root.join("tests/data/wal2json/v2-all.w2j")));
        corpora.push(("committed corpus v1-all (small)".into(), root.join("tests/data/wal2json/v1-all.w2j")));
    }
    let reps: usize =
        if smoke { 1 } else { std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5) };
    let budget = Duration::from_secs(60);
    println!("| corpus | decoder | MB/s | events/s | vs serde_json |");
    println!("|---|---|---:|---:|---:|");
    for (name, path) in corpora {
        let (options, mut payloads) = w2j::read_w2j(&path, false);
        let v2 = options.contains("format-version=2");
        // the baselines cannot read wal2json's invalid-JSON quirks (none are in the workload corpora), nor
        // non-UTF-8 message content: keep exactly what the typed serde baseline reads
        let all = payloads.len();
        payloads.retain(|p| {
            if v2 {
                serde_json::from_slice::<SV2>(p).is_ok()
            } else {
                serde_json::from_slice::<SDoc>(p).is_ok()
            }
        });
        if payloads.len() != all {
            eprintln!("{name}: {} payloads that serde_json cannot read left out", all - payloads.len());
        }
        if !v2 {
            payloads.retain(|p| Format::detect(p).ok() == Some(Format::V1Document));
        }
        let bytes: usize = payloads.iter().map(Vec::len).sum();
        let mut events = 0usize;
        {
            let mut d = AnyDecoder::new();
            for p in &payloads {
                events += d.events(p).unwrap().count();
            }
        }
        let mb = bytes as f64 / 1e6;
        eprintln!("{name}: {} payloads, {:.1} MB, {} events ({options})", payloads.len(), mb, events);
        let mut buf = Vec::with_capacity(1 << 20);
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let on = |d: &str| only.is_empty() || d.contains(only.as_str());
        let skip = Duration::from_secs(1_000_000);
        // round-robin over the decoders, best time of each: fair under a fluctuating machine load
        let mut results = [
            ("pgrepl", skip),
            ("serde_json typed borrowed", skip),
            ("simd-json to_tape", skip),
            ("simd-json fill_tape (reused buffers)", skip),
        ];
        let start = Instant::now();
        for _ in 0..reps.max(1) {
            for (i, (dec, best)) in results.iter_mut().enumerate() {
                if !on(dec) {
                    continue;
                }
                let t = Instant::now();
                black_box(match i {
                    0 => run_pgrepl(&payloads, v2),
                    1 => run_serde(&payloads, v2),
                    2 => run_to_tape(&payloads, &mut buf),
                    _ => run_fill_tape(&payloads, &mut buf),
                });
                *best = (*best).min(t.elapsed());
            }
            if start.elapsed() > budget {
                break;
            }
        }
        let serde = results[1].1.as_secs_f64();
        for (dec, t) in results {
            if t == skip {
                continue;
            }
            let s = t.as_secs_f64();
            println!("| {name} | {dec} | {:.0} | {:.2} M | {:.2}x |", mb / s, events as f64 / s / 1e6, serde / s);
        }
    }
}
