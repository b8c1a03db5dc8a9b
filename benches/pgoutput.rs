//! pgoutput decoder throughput: pgrepl's pgoutput decoder vs pg_walstream's pgoutput parser, and pgrepl's wal2json
//! decoder on the same changes.
//!
//! `scripts/bench-pgoutput.sh` records the shared bench workload through a pgoutput slot
//! (bench-data/pgoutput.pgo, proto_version 1) and a wal2json slot (bench-data/pgo-v2.w2j, format 2) of the same
//! cluster, and runs this (`cargo bench --bench pgoutput`). Without those files it says how to make them and
//! returns; `cargo test --all-targets` runs it as a smoke test (the first 2000 messages, one run).
//!
//! Contenders, each over the whole recording in memory, round-robin, `BENCH_REPS` runs (default 7), median and
//! spread (min-max):
//! - **pgrepl events**: `PgoutputDecoder::decode_each`: typed events (Begin, Insert/Update/Delete with every
//!   column's name, type name and typed value, Commit), the relation cache, recycled storage.
//! - **pgrepl parse**: `pgoutput::parse` of each message into its typed `Message`, every tuple value visited.
//! - **pg_walstream parse (Bytes)**: `LogicalReplicationParser::parse_wal_message_bytes` on a zero-copy
//!   `Bytes` slice of the recording: each message into its `LogicalReplicationMessage` (columns as `Bytes`).
//! - **pg_walstream parse (&[u8])**: `parse_wal_message` (copies the message into a `Bytes` first).
//! - **pg_walstream decoder**: `PgOutputDecoder::decode_message`: the parser plus its relation cache, into
//!   `ChangeEvent`s (named columns, values as `Bytes` text).
//! - **pgrepl wal2json**: `wal2json::Decoder` (format 2) on the wal2json recording of the same changes.
//!
//! MB/s is over each contender's own input (the wal2json recording is larger for the same changes); events/s
//! counts pgrepl's events of that recording (Begin, one per change, Commit), so the column compares time for the
//! same changes across all rows.
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

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pg_walstream::{LogicalReplicationMessage, LogicalReplicationParser, Lsn, PgOutputDecoder};
use pgrepl::event::Event;
use pgrepl::pgoutput::{self, Message, PgoutputDecoder, TupleValue};
use pgrepl::wal2json::Decoder;

#[path = "../tests/common/w2j.rs"]
mod w2j;

/// A recording in memory: every payload, as slices of one buffer (`Bytes` for pg_walstream's zero-copy path).
struct Recording {
    all: Bytes,
    ranges: Vec<(usize, usize)>,
}

impl Recording {
    fn new(payloads: &[Vec<u8>]) -> Self {
        let mut all = Vec::with_capacity(payloads.iter().map(Vec::len).sum());
        let mut ranges = Vec::with_capacity(payloads.len());
        for p in payloads {
            ranges.push((all.len(), all.len() + p.len()));
            all.extend_from_slice(p);
        }
        Recording { all: Bytes::from(all), ranges }
    }
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges.iter().map(|&(a, b)| &self.all[a..b])
    }
    fn bytes(&self) -> usize {
        self.all.len()
    }
}

fn change_size(ev: &Event<'_>) -> usize {
    match ev {
        Event::Insert(c) | Event::Update(c) | Event::Delete(c) => c.columns.len() + c.identity.len(),
        _ => 1,
    }
}

fn run_pgrepl_events(rec: &Recording) -> usize {
    let mut d = PgoutputDecoder::new();
    let mut n = 0;
    for p in rec.iter() {
        d.decode_each(p, |ev| n += change_size(ev)).unwrap();
    }
    n
}

fn tuple_sum(t: pgoutput::message::TupleData<'_>) -> usize {
    t.iter()
        .map(|v| match v {
            TupleValue::Text(b) | TupleValue::Binary(b) => b.len() + 1,
            TupleValue::Null | TupleValue::Unchanged => 1,
        })
        .sum()
}

fn run_pgrepl_parse(rec: &Recording) -> usize {
    let mut n = 0;
    for p in rec.iter() {
        n += match pgoutput::parse(p, false).unwrap() {
            Message::Insert(i) => tuple_sum(i.new),
            Message::Update(u) => tuple_sum(u.new) + u.old.map_or(0, |o| tuple_sum(o.data)),
            Message::Delete(d) => tuple_sum(d.old.data),
            Message::Relation(r) => r.columns.len(),
            _ => 1,
        };
    }
    n
}

fn walstream_tuple_sum(t: &pg_walstream::TupleData) -> usize {
    (0..t.column_count()).map(|i| t.get_column(i).map_or(0, |c| c.as_bytes().len() + 1)).sum()
}

fn walstream_size(m: &LogicalReplicationMessage) -> usize {
    match m {
        LogicalReplicationMessage::Insert { tuple, .. } => walstream_tuple_sum(tuple),
        LogicalReplicationMessage::Update { old_tuple, new_tuple, .. } => {
            walstream_tuple_sum(new_tuple) + old_tuple.as_ref().map_or(0, walstream_tuple_sum)
        }
        LogicalReplicationMessage::Delete { old_tuple, .. } => walstream_tuple_sum(old_tuple),
        LogicalReplicationMessage::Relation { columns, .. } => columns.len(),
        _ => 1,
    }
}

fn run_walstream_bytes(rec: &Recording) -> usize {
    let mut parser = LogicalReplicationParser::with_protocol_version(1);
    let mut n = 0;
    for &(a, b) in &rec.ranges {
        let m = parser.parse_wal_message_bytes(rec.all.slice(a..b)).unwrap();
        n += walstream_size(&m.message);
    }
    n
}

fn run_walstream_slice(rec: &Recording) -> usize {
    let mut parser = LogicalReplicationParser::with_protocol_version(1);
    let mut n = 0;
    for p in rec.iter() {
        let m = parser.parse_wal_message(p).unwrap();
        n += walstream_size(&m.message);
    }
    n
}

fn run_walstream_decoder(rec: &Recording) -> usize {
    let mut d = PgOutputDecoder::with_protocol_version(1);
    let mut n = 0;
    for &(a, b) in &rec.ranges {
        if let Some(ev) = d.decode_message(rec.all.slice(a..b), Lsn::new(a as u64)).unwrap() {
            n += 1;
            black_box(&ev);
        }
    }
    n
}

fn run_wal2json(rec: &Recording) -> usize {
    let mut d = Decoder::new();
    let mut n = 0;
    for p in rec.iter() {
        let ev = d.decode(p).unwrap();
        n += change_size(&ev);
        d.recycle(ev);
    }
    n
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test: one run, if recorded
    let smoke = !std::env::args().any(|a| a == "--bench");
    let pgo = root.join("bench-data/pgoutput.pgo");
    let w2j = root.join("bench-data/pgo-v2.w2j");
    if !pgo.exists() || !w2j.exists() {
        eprintln!(
            "bench-data/pgoutput.pgo or bench-data/pgo-v2.w2j not found: run scripts/bench-pgoutput.sh to record \
             the shared bench workload through a pgoutput and a wal2json slot (~45 MB + ~170 MB)."
        );
        return;
    }
    let (pgo_options, pgo_payloads) = w2j::read_w2j(&pgo, true);
    let (w2j_options, w2j_payloads) = w2j::read_w2j(&w2j, true);
    let (pgo_payloads, w2j_payloads) = if smoke {
        (pgo_payloads[..pgo_payloads.len().min(2000)].to_vec(), w2j_payloads[..w2j_payloads.len().min(2000)].to_vec())
    } else {
        (pgo_payloads, w2j_payloads)
    };
    let pgo_rec = Recording::new(&pgo_payloads);
    let w2j_rec = Recording::new(&w2j_payloads);
    drop((pgo_payloads, w2j_payloads));

    // events of each recording as pgrepl counts them (Begin, one per change, Commit)
    let mut pgo_events = 0usize;
    let mut d = PgoutputDecoder::new();
    for p in pgo_rec.iter() {
        pgo_events += d.decode_each(p, |_| {}).unwrap();
    }
    let mut w2j_events = 0usize;
    let mut d = Decoder::new();
    for p in w2j_rec.iter() {
        let ev = d.decode(p).unwrap();
        w2j_events += 1;
        d.recycle(ev);
    }
    eprintln!(
        "pgoutput: {} messages, {:.1} MB, {pgo_events} events ({pgo_options})",
        pgo_rec.ranges.len(),
        pgo_rec.bytes() as f64 / 1e6
    );
    eprintln!(
        "wal2json: {} payloads, {:.1} MB, {w2j_events} events ({w2j_options})",
        w2j_rec.ranges.len(),
        w2j_rec.bytes() as f64 / 1e6
    );
    // the pgrepl parse row counts messages of the same stream, and pg_walstream's decoder's Option<ChangeEvent>
    // is checked only for being decoded; the stream is the same, so one event count serves every pgoutput row

    let reps: usize =
        if smoke { 1 } else { std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(7) };
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    type Runner = fn(&Recording) -> usize;
    let contenders: [(&str, Runner, bool); 6] = [
        ("pgrepl pgoutput events (decode_each)", run_pgrepl_events, true),
        ("pgrepl pgoutput parse (Message)", run_pgrepl_parse, true),
        ("pg_walstream parse_wal_message_bytes", run_walstream_bytes, true),
        ("pg_walstream parse_wal_message (&[u8])", run_walstream_slice, true),
        ("pg_walstream PgOutputDecoder (ChangeEvent)", run_walstream_decoder, true),
        ("pgrepl wal2json format 2 (same changes)", run_wal2json, false),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    let budget = Duration::from_secs(300);
    let start = Instant::now();
    // round-robin over the contenders: each run of each sees the same machine load as the others'
    for _ in 0..reps.max(1) {
        for (i, (name, run, on_pgo)) in contenders.iter().enumerate() {
            if !only.is_empty() && !name.contains(only.as_str()) {
                continue;
            }
            let rec = if *on_pgo { &pgo_rec } else { &w2j_rec };
            let t = Instant::now();
            black_box(run(rec));
            times[i].push(t.elapsed().as_secs_f64());
        }
        if start.elapsed() > budget {
            break;
        }
    }
    let base = median(&mut times[2].clone());
    println!("| decoder | input MB | MB/s median (min-max) | M events/s median | time vs pg_walstream parse |");
    println!("|---|---:|---:|---:|---:|");
    for ((name, _, on_pgo), t) in contenders.iter().zip(times.iter_mut()) {
        if t.is_empty() {
            continue;
        }
        let (mb, events) = if *on_pgo {
            (pgo_rec.bytes() as f64 / 1e6, pgo_events)
        } else {
            (w2j_rec.bytes() as f64 / 1e6, w2j_events)
        };
        let med = median(t);
        let (lo, hi) = (t[0], t[t.len() - 1]);
        let ratio = if base.is_nan() { String::from("-") } else { format!("{:.2}x", base / med) };
        println!(
            "| {name} | {mb:.1} | {:.0} ({:.0}-{:.0}) | {:.2} | {ratio} |",
            mb / med,
            mb / hi,
            mb / lo,
            events as f64 / med / 1e6,
        );
    }
    println!("({} runs each, round-robin)", times.iter().map(Vec::len).max().unwrap_or(0));
}
