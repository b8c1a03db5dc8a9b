//! The `.w2j` corpus format written by scripts/record-corpus.sh and scripts/bench-decode.sh: an `!options …` line,
//! then `#<len> <lsn>` lines each followed by `<len>` payload bytes and a newline. Shared by the wal2json tests and
//! benches/decode.rs (included with `#[path]`).

use std::path::Path;

/// The options line and the payloads of a `.w2j` file. With `strict`, any other line and a payload not followed
/// by its newline panic; otherwise other lines are skipped. (Test and bench data: malformed files panic.)
pub fn read_w2j(path: &Path, strict: bool) -> (String, Vec<Vec<u8>>) {
    let data = std::fs::read(path).unwrap();
    let mut i = 0;
    let mut options = String::new();
    let mut payloads = Vec::new();
    while i < data.len() {
        let nl = i + data[i..].iter().position(|&b| b == b'\n').unwrap();
        let line = std::str::from_utf8(&data[i..nl]).unwrap();
        i = nl + 1;
        if let Some(o) = line.strip_prefix("!options ") {
            options = o.to_string();
        } else if let Some(h) = line.strip_prefix('#') {
            let len: usize = h.split(' ').next().unwrap().parse().unwrap();
            payloads.push(data[i..i + len].to_vec());
            if strict {
                assert_eq!(data[i + len], b'\n');
            }
            i += len + 1;
        } else if strict {
            panic!("bad corpus line {line:?}");
        }
    }
    (options, payloads)
}
