//! A library consumer: drain a wal2json slot up to an end position, decoding every payload into typed events
//! and acknowledging each transaction as it commits. It is the "library consumer" of `scripts/bench-e2e.sh`.
//!
//! ```text
//! cargo run --release --example drain -- [-o NAME=VALUE]... [--latency FILE] [--count N] [--no-coalesce] CONNINFO SLOT END_LSN|-
//! cargo run --release --example drain -- "host=127.0.0.1 user=postgres dbname=postgres" my_slot 0/9A0B1C8
//! ```
//!
//! - The wal2json options default to the ones the other contenders of the benchmark use (`format-version=2`,
//!   `include-xids=1`, `include-timestamp=1`), so that every contender receives the same bytes; `-o` replaces
//!   that list (e.g. `-o format-version=1 -o write-in-chunks=1 -o include-timestamp=1`).
//! - Every event is looked at (kind, table, every column value) in `Payload::decode_each`, which hands each
//!   one's storage back for reuse: the steady state allocates nothing per event.
//! - `--latency FILE` writes one line per transaction: microseconds from its commit (the `timestamp` wal2json
//!   prints on the `Begin`, which is the commit time; needs `include-timestamp=1` and a server running with
//!   `timezone = UTC` or any offset it prints) to the moment its `Begin` event was decoded here.
//! - `--count N` stops after N transactions (END_LSN may then be `-`: no end position).
//! - `--no-coalesce` turns off [`StreamConfig::coalesce_reads`](pgrepl::stream::StreamConfig::coalesce_reads)
//!   (one wake-up and read per message even at high rates), to measure what it saves.
//! - A summary goes to standard error: payloads, transactions, changes, columns, value bytes.
//!
//! It runs on a current-thread tokio runtime: the stream task and the consumer share one thread, which costs
//! the least CPU when the other core is busy with the server.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use pgrepl::changes::{ChangeStream, ChangeStreamConfig};
use pgrepl::wal2json::{Column, Event, Value};
use pgrepl::Lsn;

#[derive(Default, Debug)]
struct Totals {
    payloads: u64,
    commits: u64,
    inserts: u64,
    updates: u64,
    deletes: u64,
    other: u64,
    columns: u64,
    value_bytes: u64,
}

fn usage() -> ! {
    eprintln!("usage: drain [-o NAME=VALUE]... [--latency FILE] [--count N] [--no-coalesce] CONNINFO SLOT END_LSN|-");
    std::process::exit(2);
}

fn main() {
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    let mut latency_path: Option<String> = None;
    let mut count: Option<u64> = None;
    let mut coalesce = true;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-o" => {
                let Some(o) = args.next() else { usage() };
                match o.split_once('=') {
                    Some((k, v)) => options.push((k.to_string(), Some(v.to_string()))),
                    None => options.push((o, None)),
                }
            }
            "--latency" => latency_path = Some(args.next().unwrap_or_else(|| usage())),
            "--no-coalesce" => coalesce = false,
            "--count" => count = Some(args.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| usage())),
            _ => positional.push(a),
        }
    }
    let [conninfo, slot, end] = positional.as_slice() else { usage() };
    let end = match end.as_str() {
        "-" => None,
        e => Some(Lsn::parse(e).unwrap_or_else(|_| usage())),
    };
    if options.is_empty() {
        for (k, v) in [("format-version", "2"), ("include-xids", "1"), ("include-timestamp", "1")] {
            options.push((k.to_string(), Some(v.to_string())));
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drain: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let latencies = latency_path.as_ref().map(|_| Vec::with_capacity(1 << 16));
    // The consumer runs as a task, not as the `block_on` future itself: waking a task from the stream task on
    // the same thread is a queue push, while waking the `block_on` future writes to the runtime's eventfd (a
    // system call per wake-up).
    let (conninfo, slot) = (conninfo.clone(), slot.clone());
    let joined = rt.block_on(async move {
        tokio::spawn(async move {
            let mut latencies = latencies;
            let r = drain(&conninfo, &slot, end, count, coalesce, options, latencies.as_mut()).await;
            (r, latencies)
        })
        .await
    });
    let latencies = match joined {
        Ok((Ok(t), latencies)) => {
            eprintln!("drain: {t:?}");
            latencies
        }
        Ok((Err(e), _)) => {
            eprintln!("drain: error: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("drain: error: {e}");
            std::process::exit(1);
        }
    };
    if let (Some(path), Some(lat)) = (latency_path, latencies) {
        let mut text = String::with_capacity(lat.len() * 8);
        for us in lat {
            text.push_str(&format!("{us}\n"));
        }
        if let Err(e) = std::fs::File::create(&path).and_then(|mut f| f.write_all(text.as_bytes())) {
            eprintln!("drain: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
}

async fn drain(
    conninfo: &str,
    slot: &str,
    end: Option<Lsn>,
    count: Option<u64>,
    coalesce: bool,
    options: Vec<(String, Option<String>)>,
    mut latencies: Option<&mut Vec<i64>>,
) -> pgrepl::Result<Totals> {
    let mut cfg = ChangeStreamConfig::new(conninfo, slot)?;
    cfg.options = options;
    cfg.stream.end = end;
    cfg.stream.coalesce_reads = coalesce;
    let mut changes = ChangeStream::connect(cfg).await?;
    let mut t = Totals::default();
    while let Some(mut payload) = changes.next().await? {
        t.payloads += 1;
        // Each event is decoded, looked at in the closure, then its storage handed back for the next one.
        payload.decode_each(|ev| match ev {
            Event::Begin(tx) => {
                if let (Some(lat), Some(ts)) = (latencies.as_deref_mut(), tx.timestamp.as_deref()) {
                    if let Some(commit) = parse_pg_timestamp_us(ts) {
                        lat.push(now_us() - commit);
                    }
                }
            }
            Event::Commit(_) => t.commits += 1,
            Event::Insert(c) | Event::Update(c) | Event::Delete(c) => {
                match ev {
                    Event::Insert(_) => t.inserts += 1,
                    Event::Update(_) => t.updates += 1,
                    _ => t.deletes += 1,
                }
                t.columns += (c.columns.len() + c.identity.len()) as u64;
                t.value_bytes += c.table.len() as u64 + value_bytes(&c.columns) + value_bytes(&c.identity);
            }
            _ => t.other += 1,
        })?;
        // Acknowledges when this payload ends a transaction: the "store, then acknowledge" point.
        payload.ack();
        if count.is_some_and(|n| t.commits >= n) {
            break;
        }
    }
    changes.stop().await?;
    Ok(t)
}

/// The bytes of the columns' values (what a consumer would store), looked at one by one.
fn value_bytes(cols: &[Column<'_>]) -> u64 {
    let mut n = 0;
    for col in cols {
        n += match &col.value {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(s) | Value::String(s) => s.len() as u64,
        };
    }
    n
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// `2024-05-01 12:34:56.789012+00` (PostgreSQL's ISO output; fraction and offset minutes optional) to
/// microseconds since the Unix epoch.
fn parse_pg_timestamp_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> { s.get(from..to)?.parse().ok() };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut i = 19;
    let mut frac_us = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = s.get(start..i)?;
        let mut v: i64 = digits.parse().ok()?;
        for _ in digits.len()..6 {
            v *= 10;
        }
        frac_us = v;
    }
    let sign = match b.get(i) {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    let off_h = num(i + 1, i + 3)?;
    let off_m = if b.get(i + 3) == Some(&b':') { num(i + 4, i + 6)? } else { 0 };
    // days from civil (Howard Hinnant's algorithm)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - sign * (off_h * 3600 + off_m * 60);
    Some(secs * 1_000_000 + frac_us)
}
