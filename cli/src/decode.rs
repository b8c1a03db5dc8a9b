//! `pgrepl decode [FILE|-] [--output json|raw|none]`: decode a file of wal2json payloads offline.
//!
//! Input is what `pg_recvlogical -f` or `psql -At -c "select data from pg_logical_slot_peek_changes(…)"` write:
//! one payload per line, of any wal2json format (2, 1, 1 with write-in-chunks), detected per payload. A
//! pretty-printed format 1 document spans several lines: its lines are gathered from a line that is just `{` to
//! the next line that is just `}` (this also reassembles pretty-printed write-in-chunks transactions, which come
//! out as one document per transaction). The `.w2j` recordings of the test corpus and the benchmarks
//! (`!options …` then `#<length> <lsn>` records) are read too.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Instant;

use pgrepl::wal2json::{write_event, AnyDecoder};

const HELP: &str = "\
Usage: pgrepl decode [FILE|-] [--output json|raw|none]

Decode a file of wal2json payloads (stdin when FILE is - or absent), as pg_recvlogical or
pg_logical_slot_peek_changes write them: one payload per line, wal2json format 2, format 1 or
format 1 with write-in-chunks (detected per payload; chunks are reassembled; pretty-printed
documents spanning several lines are gathered).

Options:
  -o, --output json   one JSON object per event and line, in wal2json format 2's shape (default):
                      action, xid, timestamp, origin, lsn, nextlsn, schema, table, columns, identity,
                      pk, transactional, prefix, content - each key only when the server sent it,
                      null when it sent null (a format 2 payload comes out as wal2json printed
                      it); numbers digit for digit; strings re-escaped as valid JSON. Message content
                      that is not valid UTF-8 is written as \"content_hex\" (lowercase hex of every
                      byte) instead of \"content\".
  -o, --output raw    the payloads as read (reassembled), one per line
  -o, --output none   decode only; print a summary (events, bytes, MB/s) to stderr
  -h, --help          this help

Exit status: 0 when every payload decoded, 1 when some did not (each error is reported on
stderr with its line and byte offset, and decoding goes on), 2 on a usage or I/O error.
";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Json,
    Raw,
    None,
}

struct Opts {
    file: Option<String>,
    output: Output,
}

fn parse_args(args: &[String]) -> Result<Option<Opts>, String> {
    let mut file = None;
    let mut output = Output::Json;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = |v: &str| match v {
            "json" => Ok(Output::Json),
            "raw" => Ok(Output::Raw),
            "none" => Ok(Output::None),
            other => Err(format!("unknown output \"{other}\" (json, raw or none)")),
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "-o" | "--output" => {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                output = value(v)?;
            }
            s if s.starts_with("--output=") => output = value(s.get(9..).unwrap_or(""))?,
            s if s.starts_with('-') && s != "-" => return Err(format!("unknown option \"{s}\"")),
            s => {
                if file.is_some() {
                    return Err("more than one input file".into());
                }
                file = Some(s.to_string());
            }
        }
    }
    Ok(Some(Opts { file, output }))
}

/// Decode `args` (the arguments after `decode`); returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let opts = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return 0;
        }
        Err(e) => {
            eprintln!("pgrepl decode: {e}\n{HELP}");
            return 2;
        }
    };
    let input: Box<dyn Read> = match opts.file.as_deref() {
        None | Some("-") => Box::new(std::io::stdin().lock()),
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("pgrepl decode: cannot open {path}: {e}");
                return 2;
            }
        },
    };
    let stdout = std::io::stdout();
    let mut sink = Sink {
        out: stdout.lock(),
        buf: Vec::with_capacity(1 << 20),
        mode: opts.output,
        decoder: AnyDecoder::new(),
        last_events: 0,
        broken: false,
    };
    let mut st = Stats::default();
    let started = Instant::now();
    let r = read_payloads(BufReader::with_capacity(1 << 20, input), |line, payload| {
        st.payloads += 1;
        st.bytes += payload.len() as u64;
        if let Err(e) = sink.payload(payload) {
            st.errors += 1;
            if st.errors <= 100 {
                eprintln!("pgrepl decode: line {line}: {e}");
            }
        } else {
            st.events += sink.last_events;
        }
        !sink.broken
    });
    let flushed = sink.flush();
    if let Err(e) = r {
        eprintln!("pgrepl decode: read error: {e}");
        return 2;
    }
    if sink.decoder.in_transaction() && !sink.broken {
        eprintln!("pgrepl decode: input ends inside a transaction (write-in-chunks or format 2 without its commit)");
    }
    if opts.output == Output::None {
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "pgrepl decode: {} events from {} payloads, {} bytes in {:.3} s: {:.1} MB/s, {:.0} events/s{}",
            st.events,
            st.payloads,
            st.bytes,
            secs,
            st.bytes as f64 / 1e6 / secs,
            st.events as f64 / secs,
            if st.errors > 0 { format!(", {} errors", st.errors) } else { String::new() }
        );
    }
    if let Err(e) = flushed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return 2;
        }
    }
    if st.errors > 0 {
        1
    } else {
        0
    }
}

#[derive(Default)]
struct Stats {
    payloads: u64,
    bytes: u64,
    events: u64,
    errors: u64,
}

struct Sink<W: Write> {
    out: W,
    buf: Vec<u8>,
    mode: Output,
    decoder: AnyDecoder,
    last_events: u64,
    /// stdout was closed (e.g. `| head`): stop quietly
    broken: bool,
}

impl<W: Write> Sink<W> {
    fn payload(&mut self, p: &[u8]) -> pgrepl::Result<()> {
        self.last_events = 0;
        match self.mode {
            Output::Raw => {
                self.buf.extend_from_slice(p);
                self.buf.push(b'\n');
            }
            Output::Json | Output::None => {
                let json = self.mode == Output::Json;
                let mut events = self.decoder.events(p)?;
                while let Some(ev) = events.next() {
                    let ev = ev?;
                    if json {
                        write_event(&mut self.buf, &ev);
                        self.buf.push(b'\n');
                    }
                    events.recycle(ev);
                    self.last_events += 1;
                }
            }
        }
        if self.buf.len() >= 1 << 20 {
            // an output error shows up again in the final flush
            let _ = self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.broken {
            self.buf.clear();
            return Ok(());
        }
        let r = self.out.write_all(&self.buf).and_then(|()| self.out.flush());
        self.buf.clear();
        if let Err(e) = &r {
            self.broken = true;
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("pgrepl decode: write error: {e}");
            }
        }
        r
    }
}

/// Split the input into payloads and call `f(first line number, payload)` for each; `f` returns false to stop.
/// Lines are payloads, except that a line that is just `{` starts a pretty-printed document that ends with a
/// line that is just `}`. A first line `!options …` selects the `.w2j` record format.
fn read_payloads<R: BufRead>(mut r: R, mut f: impl FnMut(u64, &[u8]) -> bool) -> std::io::Result<()> {
    let mut line: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_line = 0u64;
    let mut lineno = 0u64;
    let mut first = true;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        lineno += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if first {
            first = false;
            if line.starts_with(b"!options") {
                return read_w2j(r, lineno, f);
            }
        }
        if !pending.is_empty() {
            pending.push(b'\n');
            pending.extend_from_slice(&line);
            if line == b"}" {
                let go = f(pending_line, &pending);
                pending.clear();
                if !go {
                    return Ok(());
                }
            }
            continue;
        }
        if line == b"{" {
            pending.extend_from_slice(&line);
            pending_line = lineno;
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !f(lineno, &line) {
            return Ok(());
        }
    }
    if !pending.is_empty() {
        f(pending_line, &pending);
    }
    Ok(())
}

/// The `.w2j` record format: `#<length> <lsn>` lines, each followed by that many bytes and a newline.
fn read_w2j<R: BufRead>(mut r: R, mut lineno: u64, mut f: impl FnMut(u64, &[u8]) -> bool) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut payload = Vec::new();
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    loop {
        head.clear();
        if r.read_until(b'\n', &mut head)? == 0 {
            return Ok(());
        }
        lineno += 1;
        let h = std::str::from_utf8(&head).map_err(|_| bad("bad record header"))?;
        let Some(h) = h.trim_end().strip_prefix('#') else {
            continue;
        };
        let len: usize = h.split(' ').next().and_then(|n| n.parse().ok()).ok_or_else(|| bad("bad record length"))?;
        payload.clear();
        // read in steps so that a corrupt length cannot make us reserve memory up front
        let got = (&mut r).take(len as u64 + 1).read_to_end(&mut payload)?;
        if got < len {
            return Err(bad("truncated record"));
        }
        payload.truncate(len);
        if !f(lineno, &payload) {
            return Ok(());
        }
        lineno += payload.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(input: &[u8]) -> Vec<(u64, String)> {
        let mut v = Vec::new();
        read_payloads(input, |line, p| {
            v.push((line, String::from_utf8_lossy(p).into_owned()));
            true
        })
        .unwrap();
        v
    }

    #[test]
    fn lines_and_pretty_documents() {
        let input = b"{\"action\":\"B\"}\n\n{\n\t\"xid\": 1,\n\t\"change\": [\n\t]\n}\n{\"xid\":2,\"change\":[\n,{\"kind\":\"insert\"}\n]}\n";
        let p = payloads(input);
        assert_eq!(
            p,
            [
                (1, "{\"action\":\"B\"}".to_string()),
                (3, "{\n\t\"xid\": 1,\n\t\"change\": [\n\t]\n}".to_string()),
                (8, "{\"xid\":2,\"change\":[".to_string()),
                (9, ",{\"kind\":\"insert\"}".to_string()),
                (10, "]}".to_string()),
            ]
        );
    }

    #[test]
    fn w2j_records() {
        let input = b"!options format-version=2\n#14 0/1\n{\"action\":\"B\"}\n#5 0/2\n{\n}\n\n";
        let p = payloads(input);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1, "{\"action\":\"B\"}");
        assert_eq!(p[1].1, "{\n}\n\n".get(..5).unwrap());
        assert!(read_payloads(&b"!options x\n#100 0/1\nshort\n"[..], |_, _| true).is_err());
    }

    #[test]
    fn sink_writes_json_and_counts() {
        let mut sink = Sink {
            out: Vec::new(),
            buf: Vec::new(),
            mode: Output::Json,
            decoder: AnyDecoder::new(),
            last_events: 0,
            broken: false,
        };
        sink.payload(br#"{"xid":1,"change":[{"kind":"insert","table":"t","columnnames":["a"],"columnvalues":[1]}]}"#)
            .unwrap();
        assert_eq!(sink.last_events, 3);
        assert!(sink.payload(b"not json").is_err());
        sink.flush().unwrap();
        let out = String::from_utf8(sink.out.clone()).unwrap();
        assert_eq!(
            out,
            "{\"action\":\"B\",\"xid\":1}\n{\"action\":\"I\",\"table\":\"t\",\"columns\":[{\"name\":\"a\",\"value\":1}]}\n{\"action\":\"C\",\"xid\":1}\n"
        );
    }

    #[test]
    fn args() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(matches!(a(&[]), Ok(Some(Opts { file: None, output: Output::Json }))));
        assert!(matches!(a(&["f", "--output", "none"]), Ok(Some(Opts { output: Output::None, .. }))));
        assert!(matches!(a(&["--output=raw", "-"]), Ok(Some(Opts { output: Output::Raw, .. }))));
        assert!(matches!(a(&["-h"]), Ok(None)));
        assert!(a(&["--output", "xml"]).is_err());
        assert!(a(&["a", "b"]).is_err());
        assert!(a(&["--bogus"]).is_err());
    }
}
