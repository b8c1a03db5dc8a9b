//! `pgrepl recv` when the connection is lost in the middle of a transaction: the server sends the whole
//! transaction again after the reconnect, and `recv` writes only the part it had not written, so the output holds
//! it once — to a regular file (with its state file) and to standard output (no state file).
//!
//! Each round writes one large transaction and terminates the walsender once the output shows its first rows but
//! not its commit; a round whose transaction was out before the termination landed does not count, and rounds go
//! on until three interruptions landed (the log says so: "the interrupted transaction comes again"). The slot
//! is wal2json's (format 2) where the server has it, else test_decoding's (tests/common/plugins.rs).
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

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use pgrepl_testkit::{ClusterOptions, TempCluster};

#[path = "../../tests/common/plugins.rs"]
mod plugins;
use plugins::Plugin;

const PGREPL: &str = env!("CARGO_BIN_EXE_pgrepl");
const ROWS: i64 = 60_000;

/// Lines of `path` from byte `from` on (complete lines only), and the offset after them.
fn new_lines(path: &Path, from: u64) -> (Vec<String>, u64) {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(_) => return (vec![], from),
    };
    f.seek(SeekFrom::Start(from)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    let end = s.rfind('\n').map_or(0, |i| i + 1);
    (s[..end].lines().map(str::to_string).collect(), from + end as u64)
}

/// `B`, `I`, `C`… of an output line (a format 2 object or a test_decoding line).
fn action(p: Plugin, line: &str) -> &'static str {
    match p.action(line.as_bytes()) {
        b'B' => "B",
        b'C' => "C",
        b'I' => "I",
        _ => panic!("unexpected line: {line}"),
    }
}

/// The `id` of an insert line (`"columns":[{"name":"id","type":"integer","value":N}`…, or `id[bigint]:N`).
fn id(p: Plugin, line: &str) -> i64 {
    let (needle, ends): (&str, &[char]) = match p {
        Plugin::Wal2json => ("\"value\":", &[',', '}']),
        Plugin::TestDecoding => ("id[bigint]:", &[' ']),
    };
    let at = line.find(needle).expect("an insert with values") + needle.len();
    let rest = &line[at..];
    rest[..rest.find(ends).unwrap()].parse().unwrap()
}

fn terminate_walsender(c: &TempCluster, slot: &str) -> bool {
    let q = format!(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active_pid \
         IS NOT NULL"
    );
    c.psql("postgres", &q).unwrap().trim() == "t"
}

fn run_rounds(c: &TempCluster, slot: &str, file_arg: &str, out: &Path, log: &Path) {
    let p = Plugin::of(c);
    c.psql("postgres", &format!("SELECT pg_create_logical_replication_slot('{slot}', '{}')", p.name())).unwrap();
    let mut args = vec![
        "recv".to_string(),
        "-v".into(),
        "-d".into(),
        c.conninfo(c.superuser(), "postgres"),
        "-S".into(),
        slot.into(),
        "--start".into(),
        "-f".into(),
        file_arg.into(),
        "-s".into(),
        "1".into(),
        "-F".into(),
        "0".into(),
    ];
    // (test_decoding: no empty transactions, an autoanalyze's say, between the rounds' transactions)
    let skip_empty: &[&str] = if p == Plugin::TestDecoding { &["skip-empty-xacts=1"] } else { &[] };
    for o in p.cli_options().iter().chain(skip_empty) {
        args.extend(["-o".to_string(), o.to_string()]);
    }
    let stdout = if file_arg == "-" { Stdio::from(File::create(out).unwrap()) } else { Stdio::null() };
    let mut child: Child = Command::new(PGREPL)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let log_text = || fs::read_to_string(log).unwrap_or_default();
    let mut offset = 0;
    let mut lines: Vec<String> = vec![];
    let mut interrupted = 0;
    let mut round = 0i64;
    // until three interruptions landed (the log says so), or 30 rounds: then the output is checked first
    while interrupted < 3 && round < 30 {
        round += 1;
        let first = round * 1_000_000;
        c.psql(
            "postgres",
            &format!("INSERT INTO big SELECT g, repeat('x', 40) FROM generate_series({first}, {}) g", first + ROWS - 1),
        )
        .unwrap();
        // wait for the transaction's first rows, then cut the connection unless its commit is out already
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut cut = false;
        let mut seen_first = false;
        loop {
            assert!(child.try_wait().unwrap().is_none(), "recv exited; log:\n{}", log_text());
            let (more, next) = new_lines(out, offset);
            offset = next;
            let first_row = match p {
                Plugin::Wal2json => format!("\"value\":{first}}}"),
                Plugin::TestDecoding => format!("id[bigint]:{first} "),
            };
            seen_first = seen_first || more.iter().any(|l| l.contains(&first_row));
            let committed = seen_first && more.last().is_some_and(|l| action(p, l) == "C");
            lines.extend(more);
            if committed {
                break;
            }
            if !cut && seen_first {
                cut = terminate_walsender(c, slot);
            }
            assert!(Instant::now() < deadline, "round {round} never committed; log:\n{}", log_text());
            thread::sleep(Duration::from_millis(1));
        }
        let landed = log_text().matches("the interrupted transaction comes again").count();
        if cut && landed > interrupted {
            interrupted = landed;
        }
    }
    // stop cleanly
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "recv exit {status}; log:\n{}", log_text());
    let (more, _) = new_lines(out, offset);
    lines.extend(more);

    // every transaction whole and once: B, its ROWS inserts in order, C
    let mut txns = 0;
    let mut i = 0;
    while i < lines.len() {
        assert_eq!(action(p, &lines[i]), "B", "line {i}: {}", lines[i]);
        let first = id(p, &lines[i + 1]);
        for k in 0..ROWS {
            let l = &lines[i + 1 + k as usize];
            assert_eq!((action(p, l), id(p, l)), ("I", first + k), "line {}", i + 1 + k as usize);
        }
        assert_eq!(action(p, &lines[i + 1 + ROWS as usize]), "C");
        assert_eq!(first, (txns + 1) * 1_000_000, "transactions in commit order, none twice, none missing");
        txns += 1;
        i += ROWS as usize + 2;
    }
    assert_eq!(txns, round, "every round's transaction in the output");
    assert!(interrupted >= 3, "{round} rounds and only {interrupted} interruptions landed; log:\n{}", log_text());
    eprintln!(
        "{slot}: {txns} transactions of {ROWS} rows, {interrupted} interrupted and resumed, each once in the output"
    );
}

#[test]
fn a_transaction_cut_by_a_lost_connection_is_written_once_to_a_file_and_to_stdout() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    c.psql("postgres", "CREATE TABLE big(id bigint, pad text)").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.jsonl");
    run_rounds(&c, "resume_file", file.to_str().unwrap(), &file, &dir.path().join("file.log"));
    assert!(dir.path().join("out.jsonl.pgrepl-state").exists(), "a regular file has its state file");
    c.psql("postgres", "TRUNCATE big").unwrap();
    let piped = dir.path().join("stdout.jsonl");
    run_rounds(&c, "resume_stdout", "-", &piped, &dir.path().join("stdout.log"));
}
