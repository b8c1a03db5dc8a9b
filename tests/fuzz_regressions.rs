//! Every reproducer in `fuzz/regressions/` (inputs the fuzz campaigns found, FUZZING.md "Findings") replayed
//! against the invariant its target checks, so that a fixed finding stays fixed. A new file there must be
//! given a check here (the test fails on a file it does not know).
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

use std::path::Path;

use pgrepl::config::Config;
use pgrepl::wal2json::{boundary_after, AnyDecoder, ChunkKind, ChunkedDecoder, Decoder, Event, Format};

fn regressions() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

fn any_events(d: &mut AnyDecoder, p: &[u8]) -> Result<Vec<Event<'static>>, String> {
    let mut v = Vec::new();
    d.decode_each(p, |e| v.push(e.clone().into_owned())).map_err(|e| e.to_string())?;
    Ok(v)
}

fn chunked_events(d: &mut ChunkedDecoder, p: &[u8]) -> Result<Vec<Event<'static>>, String> {
    match d.events(p) {
        Ok(it) => it.map(|e| e.map(|e| e.into_owned())).collect::<Result<_, _>>().map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Finding 1: a URI with a raw NUL byte in a component is refused, as `%00` is; whatever parses renders back
/// to the same config.
fn conninfo(name: &str, data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    assert!(s.contains('\0'), "{name}: the reproducer holds a raw NUL");
    let e = Config::parse(&s).expect_err(name);
    assert!(e.to_string().contains("NUL"), "{name}: {e}");
}

/// Finding 2: the format 1 `columndefaults` recovery stays within its per-payload budget. The reproducer, as a
/// whole document and as the change chunk of a chunked transaction, decodes to events or to a typed error.
fn wal2json_v1(name: &str, data: &[u8]) {
    let mut d = AnyDecoder::new();
    let whole = any_events(&mut d, data);
    if let Err(e) = &whole {
        assert!(e.contains("at byte"), "{name}: untyped error {e}");
    }
    let mut c = ChunkedDecoder::new();
    let header = br#"{"xid":1,"change":["#;
    assert_eq!(c.events(header).unwrap().count(), 1);
    if let Ok(events) = c.events(data) {
        for e in events {
            let _ = e;
        }
    }
}

/// Finding 3: a format 2 payload the decoder accepts with `action` after other keys is read as format 2 by
/// the detection, the boundary classifier and `AnyDecoder`, which agree with `Decoder`. Found after it: two
/// different `action` keys (the boundary classifier read the first, the decoder the last), now refused.
fn wal2json_v2(name: &str, data: &[u8]) {
    let first = data.split(|&b| b == 0).next().unwrap_or_default();
    let decoded = Decoder::new().decode(first).map(|e| e.into_owned());
    if name.contains("conflicting-action") {
        let e = decoded.expect_err(name);
        assert!(e.to_string().contains("conflicting \"action\""), "{name}: {e}");
        return;
    }
    let ev = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!first.starts_with(br#"{"action""#), "{name}: the reproducer has another key first");
    assert_eq!(Format::detect(first).unwrap(), Format::V2, "{name}");
    boundary_after(first).unwrap_or_else(|e| panic!("{name}: boundary_after: {e}"));
    assert_eq!(any_events(&mut AnyDecoder::new(), first).unwrap(), vec![ev], "{name}");
}

/// Not a bug (FUZZING.md, "Not bugs"): a change chunk that is not JSON (wal2json's unescaped defaults, here
/// mutated so that a raw default seems to run on into the next change) makes the reassembled format-1
/// document ambiguous, while each chunk is bounded by its message. What holds: every chunk decodes to events
/// or a typed error, and every reassembled transaction decodes without panic — to the chunks' events when all
/// of its change chunks are JSON.
fn wal2json_chunks(name: &str, data: &[u8]) {
    let mut d = ChunkedDecoder::new();
    let mut txn: Option<(Vec<u8>, Vec<Event<'static>>, bool)> = None;
    let mut ambiguous = 0;
    for p in data.split(|&b| b == 0).take(64) {
        let fmt = Format::detect(p).ok();
        let events = chunked_events(&mut d, p);
        if let Err(e) = &events {
            assert!(e.contains("at byte"), "{name}: untyped error {e}");
        }
        match (fmt, events) {
            (Some(Format::V1Chunk(ChunkKind::Header)), Ok(ev)) => txn = Some((p.to_vec(), ev, true)),
            (Some(Format::V1Chunk(ChunkKind::Change)), Ok(ev)) => {
                if let Some((doc, evs, json)) = &mut txn {
                    let body = p.trim_ascii_start();
                    let body = body.strip_prefix(b",").unwrap_or(body);
                    *json &= serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
                    doc.extend_from_slice(p);
                    evs.extend(ev);
                }
            }
            (Some(Format::V1Chunk(ChunkKind::End)), Ok(ev)) => {
                if let Some((mut doc, mut evs, json)) = txn.take() {
                    doc.extend_from_slice(p);
                    evs.extend(ev);
                    let w = chunked_events(&mut ChunkedDecoder::new(), &doc);
                    if json {
                        assert_eq!(w.as_ref(), Ok(&evs), "{name}: chunks and the reassembled document differ");
                    } else if w.as_ref() != Ok(&evs) {
                        ambiguous += 1;
                    }
                }
            }
            _ => txn = None,
        }
    }
    assert!(ambiguous > 0, "{name}: the reproducer no longer shows the ambiguity it was kept for");
}

#[test]
fn every_fuzz_regression_input_keeps_its_invariant() {
    let all = regressions();
    assert!(all.len() >= 8, "fuzz/regressions/ holds {} files", all.len());
    for (name, data) in &all {
        match name.split('-').next().unwrap() {
            "conninfo" => conninfo(name, data),
            "wal2json_v1" => wal2json_v1(name, data),
            "wal2json_chunks" => wal2json_chunks(name, data),
            "wal2json_v2" => wal2json_v2(name, data),
            other => panic!("fuzz/regressions/{name}: no check for target {other:?}; add one here"),
        }
    }
}
