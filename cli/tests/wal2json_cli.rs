//! `pgrepl decode` end to end: the recorded corpus written the way pg_recvlogical writes it (each payload and a
//! newline; pretty-printed documents span lines) decodes to one valid JSON object per event, the same events the
//! library gives.
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

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use pgrepl::wal2json::{write_event, AnyDecoder};

#[path = "../../tests/common/w2j.rs"]
mod w2j;

fn pgrepl(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn decode_recvlogical_style_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/wal2json");
    for name in ["v2-all", "v2-minimal", "v1-default", "v1-pretty-all", "v1-chunks-all", "v1-chunks-pretty"] {
        let payloads = w2j::read_w2j(&dir.join(format!("{name}.w2j")), false).1;
        let mut file = Vec::new();
        let mut expected = Vec::new();
        let mut d = AnyDecoder::new();
        for p in &payloads {
            file.extend_from_slice(p);
            file.push(b'\n');
            for ev in d.events(p).unwrap() {
                write_event(&mut expected, &ev.unwrap());
                expected.push(b'\n');
            }
        }
        let (code, out, err) = pgrepl(&[], &file);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected), "{name}");
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<serde_json::Value>(line).unwrap();
        }
        let (code, out, err) = pgrepl(&["-", "--output", "none"], &file);
        assert_eq!(code, 0);
        assert!(out.is_empty());
        let events = expected.iter().filter(|&&b| b == b'\n').count();
        assert!(err.contains(&format!("{events} events")), "{name}: {err}");
        assert!(err.contains("MB/s"), "{err}");
    }
}

#[test]
fn decode_reports_errors_and_goes_on() {
    let (code, out, err) = pgrepl(&[], b"{\"action\":\"B\"}\nnot json\n{\"action\":\"C\"}\n");
    assert_eq!(code, 1);
    assert_eq!(String::from_utf8_lossy(&out), "{\"action\":\"B\"}\n{\"action\":\"C\"}\n");
    assert!(err.contains("line 2"), "{err}");
    let (code, _, err) = pgrepl(&["--output", "xml"], b"");
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = pgrepl(&["--help"], b"");
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&out).contains("content_hex"));
}
