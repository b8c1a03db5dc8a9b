//! `pgrepl recv -f FILE` writes every committed transaction exactly once, in commit order, whatever happens to
//! the server, the connection or the CLI itself (issue 15), proven with the CLI as a child process.
//!
//! Two writers commit numbered transactions into table `w` (tests/common/faults.rs: some roll back, some roll
//! back a savepoint, now and then 1500 rows, now and then a pause) while
//! `pgrepl recv -d … -S cli --start -f FILE -s 1 -o format-version=2 -o include-xids=1 [--output json] [-F 0]`
//! streams the slot (wal2json; on a server without wal2json — any major but Debian's 15 — a test_decoding slot,
//! `-o include-xids=1`) into FILE. A fault injector, in a seeded random order and at random moments:
//! - terminates the CLI's walsender (`pg_terminate_backend`); some of these are aimed at connection and startup:
//!   right after a kill, or right after the CLI was started again, a server-side loop (1 ms) terminates the
//!   next walsender as soon as it appears, either in `pg_stat_activity` (connecting, before START_REPLICATION)
//!   or as the slot's `active_pid` (streaming starting);
//! - crash-restarts the server (`pg_ctl restart -m immediate`);
//! - SIGKILLs the CLI and starts it again with the same arguments: at a random moment (started again at once,
//!   while the old walsender may still hold the slot), followed by a kill at startup, and while a large
//!   transaction (10,000 rows, asked of the writers) is being written to FILE, so that FILE has a torn tail;
//! - freezes the CLI (SIGSTOP) for longer than `wal_sender_timeout` (the walsender times out).
//!
//! At the end the writers stop, the test waits until FILE holds every committed transaction, stops the CLI with
//! SIGINT (exit status 0 required), and checks FILE line by line: every line a JSON object (raw: wal2json's
//! format 2 as the server printed it; json: pgrepl's format-2-shaped objects) or test_decoding's line, grouped
//! into B … C
//! transactions with no torn line, no partial transaction and no stray line; every committed transaction once
//! (by xid), in commit order, with exactly its rows, against an independent record: a `test_decoding` slot
//! never advanced, the writers' own record and the table's final contents. Rolled-back transactions and rows of
//! rolled-back savepoints absent. One summary line per configuration, then the assertions.
//!
//! Configurations: raw and `--output json`, each with `-F 0` and with the default fsync interval (10 s: the
//! state file and the acknowledgement lag behind what is written, so a SIGKILL leaves more to truncate). CI runs
//! `raw_fsync_0` and `json_default_fsync` (in parallel, each meeting issue 15's minimums: 20 walsender kills,
//! 3 immediate restarts, 4 CLI SIGKILLs); `PGREPL_RECV_FAULTS=full` (scripts/fault-cli.sh) runs all four with
//! more faults each. `PGREPL_RECV_FAULT_SEED` replays a run's fault order (each configuration prints its seed).
//! A failed run keeps FILE, the CLI's logs (one per start) and the server's log in
//! `target/tmp/recv_faults/<configuration>-<seed>/` (`PGREPL_RECV_FAULT_KEEP=1`: a passing run too).
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

#[path = "../../tests/common/faults.rs"]
mod faults;
#[path = "../../tests/common/plugins.rs"]
mod plugins;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use pgrepl_testkit::{ClusterOptions, TempCluster};

use faults::{sql, Rng, Txn, Watched};
use plugins::Plugin;

const PGREPL: &str = env!("CARGO_BIN_EXE_pgrepl");
const SLOT: &str = "cli";
const REFERENCE_SLOT: &str = "reference";
const WAL_SENDER_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------------------------
// The configurations
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Setup {
    name: &'static str,
    json: bool,
    fsync_0: bool,
}

/// How many faults of each kind.
#[derive(Debug, Clone, Copy)]
struct Counts {
    /// Walsender terminations at a random moment.
    terminate: usize,
    /// A termination followed by a kill of the next walsender as soon as it appears (2 kills each).
    terminate_then_startup: usize,
    restart_immediate: usize,
    /// SIGKILL at a random moment, started again at once.
    sigkill: usize,
    /// SIGKILL, started again, its first walsender killed as soon as it appears (1 kill each).
    sigkill_then_startup: usize,
    /// SIGKILL while a large transaction is being written to FILE.
    sigkill_in_big: usize,
    /// SIGSTOP for longer than wal_sender_timeout.
    freeze: usize,
}

impl Counts {
    fn kills(&self) -> usize {
        self.terminate + 2 * self.terminate_then_startup + self.sigkill_then_startup
    }
    fn sigkills(&self) -> usize {
        self.sigkill + self.sigkill_then_startup + self.sigkill_in_big
    }
}

/// CI: each configuration meets issue 15's minimums (≥ 20 kills, some at startup; ≥ 3 immediate restarts;
/// ≥ 3 CLI SIGKILLs).
const SMALL: Counts = Counts {
    terminate: 12,
    terminate_then_startup: 3,
    restart_immediate: 3,
    sigkill: 1,
    sigkill_then_startup: 2,
    sigkill_in_big: 1,
    freeze: 1,
};

/// `PGREPL_RECV_FAULTS=full` (scripts/fault-cli.sh).
const FULL: Counts = Counts {
    terminate: 16,
    terminate_then_startup: 4,
    restart_immediate: 4,
    sigkill: 2,
    sigkill_then_startup: 2,
    sigkill_in_big: 2,
    freeze: 2,
};

fn full() -> bool {
    std::env::var("PGREPL_RECV_FAULTS").is_ok_and(|v| v == "full")
}

#[test]
fn raw_fsync_0() {
    run(Setup { name: "raw -F 0", json: false, fsync_0: true }, if full() { FULL } else { SMALL });
}

#[test]
fn json_default_fsync() {
    run(Setup { name: "json -F 10", json: true, fsync_0: false }, if full() { FULL } else { SMALL });
}

#[test]
fn raw_default_fsync() {
    if !full() {
        eprintln!("recv_faults [raw -F 10]: only in the full run (PGREPL_RECV_FAULTS=full, scripts/fault-cli.sh)");
        return;
    }
    run(Setup { name: "raw -F 10", json: false, fsync_0: false }, FULL);
}

#[test]
fn json_fsync_0() {
    if !full() {
        eprintln!("recv_faults [json -F 0]: only in the full run (PGREPL_RECV_FAULTS=full, scripts/fault-cli.sh)");
        return;
    }
    run(Setup { name: "json -F 0", json: true, fsync_0: true }, FULL);
}

// ---------------------------------------------------------------------------------------------------------------
// The CLI process
// ---------------------------------------------------------------------------------------------------------------

struct Cli {
    name: &'static str,
    /// How to read FILE: the slot's plugin's lines (raw), wal2json format 2's objects (raw from a wal2json slot,
    /// and `--output json` from any slot).
    plugin: Plugin,
    dir: PathBuf,
    file: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    starts: usize,
}

impl Cli {
    fn log(&self, n: usize) -> PathBuf {
        self.dir.join(format!("cli-{n}.log"))
    }

    /// Starts the CLI (again) with the same arguments; its stdout and stderr go to `cli-<start>.log`.
    fn spawn(&mut self) {
        assert!(self.child.is_none());
        self.starts += 1;
        let log = File::create(self.log(self.starts)).unwrap();
        let child = Command::new(PGREPL)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pgrepl recv");
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the CLI is running").id()
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid();
        let st = Command::new("kill").args([sig, &pid.to_string()]).status().expect("run kill");
        assert!(st.success(), "kill {sig} {pid}: {st}");
    }

    /// SIGKILL.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("the CLI is running");
        child.kill().expect("SIGKILL the CLI");
        child.wait().unwrap();
    }

    /// SIGINT, then waits for the exit.
    fn interrupt(&mut self) -> ExitStatus {
        self.signal("-INT");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("[{}] the CLI did not stop on SIGINT; its log:\n{}", self.name, self.log_tail());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Retries in every start's log (each lost connection or failed attempt says "retrying in …").
    fn retries(&self) -> usize {
        (1..=self.starts).map(|n| fs::read_to_string(self.log(n)).unwrap_or_default().matches("retrying").count()).sum()
    }
}

impl Watched for Cli {
    fn check_alive(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            self.child = None;
            panic!("[{}] the CLI exited ({status}); its log:\n{}", self.name, self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log(self.starts)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "---- {} (start {}) ----\n{}",
            self.log(self.starts).display(),
            self.starts,
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Walsender kills
// ---------------------------------------------------------------------------------------------------------------

/// A server-side loop that terminates the next walsender (other than `old`) as soon as it appears: in
/// `pg_stat_activity` (any walsender: only the CLI connects for replication; it may still be running its
/// replication commands) or as the slot's `active_pid` (streaming has started). Returns `'<pid> <held>'`, held
/// telling whether the slot was acquired by then, or `'timeout'`.
const KILL_NEXT_WALSENDER: &str = "
CREATE FUNCTION kill_next_walsender(old int, slot_acquired bool) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    p int;
    held bool;
    deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        IF slot_acquired THEN
            SELECT active_pid INTO p FROM pg_replication_slots WHERE slot_name = 'cli' AND active_pid <> old;
        ELSE
            SELECT pid INTO p FROM pg_stat_activity WHERE backend_type = 'walsender' AND pid <> old LIMIT 1;
        END IF;
        IF p IS NOT NULL THEN
            held := EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'cli' AND active_pid = p);
            IF pg_terminate_backend(p) THEN
                RETURN p || ' ' || held;
            END IF;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN 'timeout';
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
END $$;";

#[derive(Default)]
struct Tally {
    kills: usize,
    /// Kills aimed at connection/startup …
    startup: usize,
    /// … of which the walsender had not acquired the slot yet.
    before_slot: usize,
    restarts: usize,
    sigkills: usize,
    sigkills_in_big: usize,
    /// SIGKILLs after which FILE ended inside a transaction or a line.
    torn: usize,
    freezes: usize,
    /// Kills at startup that found no new walsender within 60 s.
    startup_missed: usize,
}

/// Terminates the walsender holding the slot; returns its pid.
fn terminate(c: &TempCluster, cli: &mut Cli, t: &mut Tally) -> u32 {
    loop {
        let pid = faults::walsender(c, SLOT, cli);
        // the walsender may have gone by itself meanwhile (then this is not counted and is tried again)
        if sql(c, &format!("SELECT pg_terminate_backend({pid})")) == "t" {
            t.kills += 1;
            return pid;
        }
    }
}

/// Terminates the next walsender other than `old` as soon as it appears.
fn kill_at_startup(c: &TempCluster, cli: &mut Cli, old: u32, slot_acquired: bool, t: &mut Tally) {
    let r = sql(c, &format!("SELECT kill_next_walsender({old}, {slot_acquired})"));
    cli.check_alive();
    if r == "timeout" {
        t.startup_missed += 1;
        return;
    }
    let (_, held) = r.split_once(' ').unwrap_or_else(|| panic!("kill_next_walsender: {r:?}"));
    t.kills += 1;
    t.startup += 1;
    t.before_slot += usize::from(held == "false");
}

/// Waits until the CLI streams: its walsender holds the slot and FILE grew since (or 20 s passed: the writers
/// may be in a quiet period).
fn streaming(c: &TempCluster, cli: &mut Cli) {
    faults::walsender(c, SLOT, cli);
    let len = || fs::metadata(&cli.file).map_or(0, |m| m.len());
    let (before, since) = (len(), Instant::now());
    while len() == before && since.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(5));
    }
}

/// The pid of the walsender holding the slot, if any.
fn active_pid(c: &TempCluster) -> u32 {
    faults::slot_state(c, SLOT).0.unwrap_or(0)
}

/// Asks the writers for a large transaction and SIGKILLs the CLI as soon as FILE holds its first row. Returns
/// whether FILE then ended inside that transaction (or inside a line).
fn sigkill_in_big(cli: &mut Cli, writers: &faults::Writers) -> bool {
    let control = &writers.control;
    let before = control.big_seq.load(Ordering::Relaxed);
    control.big.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let seq = loop {
        let s = control.big_seq.load(Ordering::Relaxed);
        if s != before {
            break s;
        }
        assert!(Instant::now() < deadline, "the writers did not start the large transaction");
        thread::sleep(Duration::from_millis(1));
    };
    // Both outputs of a wal2json slot, and --output json of any, print the column as wal2json does.
    let needle = match cli.plugin {
        Plugin::Wal2json => format!("{{\"name\":\"seq\",\"type\":\"bigint\",\"value\":{seq}}}"),
        Plugin::TestDecoding => format!(" seq[bigint]:{seq} "),
    };
    let mut f = File::open(&cli.file).unwrap();
    let mut offset = f.metadata().unwrap().len().saturating_sub(needle.len() as u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.read_to_end(&mut buf).unwrap();
        if buf.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            break;
        }
        offset += (buf.len() as u64).saturating_sub(needle.len() as u64);
        cli.check_alive();
        assert!(
            Instant::now() < deadline,
            "[{}] the large transaction (seq {seq}) never reached FILE; the CLI's log:\n{}",
            cli.name,
            cli.log_tail()
        );
        thread::sleep(Duration::from_millis(1));
    }
    cli.kill();
    let data = fs::read(&cli.file).unwrap();
    let (_, problems) = parse_file(&data, true, cli.plugin);
    !problems.is_empty()
}

// ---------------------------------------------------------------------------------------------------------------
// FILE
// ---------------------------------------------------------------------------------------------------------------

/// A transaction as FILE holds it.
#[derive(Debug)]
struct FileTxn {
    xid: u64,
    /// (seq, k) of its inserts into w, in order.
    rows: Vec<(i64, i64)>,
    /// Its first line (1-based).
    line: usize,
}

/// One line of FILE.
enum Line {
    Begin(u64),
    Commit(u64),
    /// A row of `w`: the transaction's xid when the line says it (wal2json), `seq` and `k` when both are there.
    Row(Option<u64>, Option<(i64, i64)>),
}

/// A line of wal2json format 2 (`include-xids`) as the server or `--output json` prints it.
fn wal2json_line(line: &[u8]) -> Result<Line, String> {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| format!("not a JSON object ({e})"))?;
    let xid = v["xid"].as_u64();
    match (v["action"].as_str(), xid) {
        (Some("B"), Some(xid)) => Ok(Line::Begin(xid)),
        (Some("C"), Some(xid)) => Ok(Line::Commit(xid)),
        (Some("I"), Some(xid)) if v["schema"] == "public" && v["table"] == "w" => {
            let col = |name: &str| -> Option<i64> {
                v["columns"].as_array()?.iter().find(|c| c["name"] == name)?["value"].as_i64()
            };
            Ok(Line::Row(Some(xid), col("seq").zip(col("k"))))
        }
        _ => Err(format!("unexpected: {v}")),
    }
}

/// A line of test_decoding (`include-xids`): `BEGIN 123`, `COMMIT 123`,
/// `table public.w: INSERT: seq[bigint]:5 k[integer]:1`.
fn test_decoding_line(line: &[u8]) -> Result<Line, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8 ({e})"))?;
    let xid = |rest: &str| rest.trim().parse::<u64>().map_err(|_| format!("unexpected: {text}"));
    if let Some(rest) = text.strip_prefix("BEGIN ") {
        return Ok(Line::Begin(xid(rest)?));
    }
    if let Some(rest) = text.strip_prefix("COMMIT ") {
        return Ok(Line::Commit(xid(rest)?));
    }
    let Some(cols) = text.strip_prefix("table public.w: INSERT: ") else { return Err(format!("unexpected: {text}")) };
    let col = |name: &str| -> Option<i64> {
        cols.split(' ')
            .find_map(|c| c.split_once("]:").filter(|(n, _)| n.split('[').next() == Some(name)))?
            .1
            .parse()
            .ok()
    };
    Ok(Line::Row(None, col("seq").zip(col("k"))))
}

/// FILE's complete transactions, and every line that does not belong to one (`strict` also reports a torn
/// last line or an unfinished last transaction).
fn parse_file(data: &[u8], strict: bool, plugin: Plugin) -> (Vec<FileTxn>, Vec<String>) {
    let mut txns = vec![];
    let mut problems = vec![];
    let mut open: Option<FileTxn> = None;
    let complete = match data.iter().rposition(|&b| b == b'\n') {
        Some(i) => &data[..=i],
        None => &data[..0],
    };
    if strict && complete.len() < data.len() {
        problems.push(format!("a torn last line: {:?}", String::from_utf8_lossy(&data[complete.len()..])));
    }
    let lines = complete.strip_suffix(b"\n").map(|c| c.split(|&b| b == b'\n'));
    for (i, line) in lines.into_iter().flatten().enumerate() {
        let n = i + 1;
        let parsed = match plugin {
            Plugin::Wal2json => wal2json_line(line),
            Plugin::TestDecoding => test_decoding_line(line),
        };
        match parsed {
            Err(e) => problems.push(format!("line {n}: {e}: {:?}", String::from_utf8_lossy(line))),
            Ok(Line::Begin(xid)) => {
                if let Some(t) = open.take() {
                    problems.push(format!("line {n}: B of {xid} inside transaction {} (line {})", t.xid, t.line));
                }
                open = Some(FileTxn { xid, rows: vec![], line: n });
            }
            Ok(Line::Commit(xid)) => match open.take() {
                Some(t) if t.xid == xid => txns.push(t),
                Some(t) => problems.push(format!("line {n}: C of {xid} ends transaction {} (line {})", t.xid, t.line)),
                None => problems.push(format!("line {n}: C of {xid} outside a transaction")),
            },
            Ok(Line::Row(xid, row)) => match (open.as_mut(), row) {
                (Some(t), _) if xid.is_some_and(|x| x != t.xid) => {
                    problems.push(format!("line {n}: a row of {xid:?} inside transaction {}", t.xid))
                }
                (Some(t), Some(row)) => t.rows.push(row),
                (None, _) => problems.push(format!("line {n}: a row outside a transaction")),
                (Some(_), None) => problems.push(format!("line {n}: no seq or k: {:?}", String::from_utf8_lossy(line))),
            },
        }
    }
    if let Some(t) = open {
        if strict {
            problems.push(format!("FILE ends inside transaction {} (line {})", t.xid, t.line));
        }
    }
    (txns, problems)
}

/// Waits until FILE's complete transactions include every one of `expected`.
fn wait_complete(cli: &mut Cli, expected: &[Txn]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let data = fs::read(&cli.file).unwrap_or_default();
        let (txns, _) = parse_file(&data, false, cli.plugin);
        let have: std::collections::HashSet<u64> = txns.iter().map(|t| t.xid).collect();
        let missing = expected.iter().filter(|t| !have.contains(&t.xid)).count();
        if missing == 0 {
            return;
        }
        cli.check_alive();
        assert!(
            Instant::now() < deadline,
            "[{}] FILE still lacks {missing} of {} committed transactions after 180 s; the CLI's log:\n{}",
            cli.name,
            expected.len(),
            cli.log_tail()
        );
        thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Terminate,
    TerminateThenStartup,
    RestartImmediate,
    Sigkill,
    SigkillThenStartup,
    SigkillInBig,
    Freeze,
}

fn run(setup: Setup, counts: Counts) {
    let t0 = Instant::now();
    let name = setup.name;
    let seed = faults::seed("PGREPL_RECV_FAULT_SEED");
    eprintln!("recv_faults [{name}]: seed {seed} (PGREPL_RECV_FAULT_SEED={seed} replays this fault order)");
    let mut rng = Rng(seed);

    let c = TempCluster::start(ClusterOptions { wal_sender_timeout: WAL_SENDER_TIMEOUT, ..Default::default() })
        .expect("start cluster");
    let plugin = Plugin::of(&c);
    eprintln!("recv_faults [{name}]: PostgreSQL {}, slot on {}", c.version(), plugin.name());
    faults::create_table_and_slots(&c, &[(SLOT, plugin.name()), (REFERENCE_SLOT, "test_decoding")]);
    c.psql("postgres", KILL_NEXT_WALSENDER).unwrap();
    // kept (with the server's log) when the run fails
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("recv_faults")
        .join(format!("{}-{seed}", name.replace([' ', '-'], "")));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let keep = Keep { dir: dir.clone(), server_log: c.log_path() };
    let conninfo = c.conninfo(c.superuser(), "postgres");
    let file = dir.join("changes.out");
    let mut args: Vec<String> = ["recv", "-d", &conninfo, "-S", SLOT, "--start", "-f"]
        .iter()
        .map(|s| s.to_string())
        .chain([file.display().to_string()])
        .chain(["-s", "1", "-v"].map(String::from))
        .chain(plugin.cli_options().iter().flat_map(|o| ["-o".to_string(), o.to_string()]))
        .collect();
    if setup.json {
        args.extend(["--output".into(), "json".into()]);
    }
    if setup.fsync_0 {
        args.extend(["-F".into(), "0".into()]);
    }
    let reads = if setup.json { Plugin::Wal2json } else { plugin };
    let mut cli = Cli { name, plugin: reads, dir: dir.clone(), file, args, child: None, starts: 0 };
    cli.spawn();
    let writers = faults::Writers::start(&conninfo, seed);

    let mut plan = vec![];
    plan.extend(std::iter::repeat_n(Fault::Terminate, counts.terminate));
    plan.extend(std::iter::repeat_n(Fault::TerminateThenStartup, counts.terminate_then_startup));
    plan.extend(std::iter::repeat_n(Fault::RestartImmediate, counts.restart_immediate));
    plan.extend(std::iter::repeat_n(Fault::Sigkill, counts.sigkill));
    plan.extend(std::iter::repeat_n(Fault::SigkillThenStartup, counts.sigkill_then_startup));
    plan.extend(std::iter::repeat_n(Fault::SigkillInBig, counts.sigkill_in_big));
    plan.extend(std::iter::repeat_n(Fault::Freeze, counts.freeze));
    rng.shuffle(&mut plan);

    let mut t = Tally::default();
    for (i, &fault) in plan.iter().enumerate() {
        // Each fault comes at a random moment after the CLI streams again: otherwise a kill would often find the
        // CLI reconnecting, and each such kill lengthens its backoff (which only a received message resets).
        streaming(&c, &mut cli);
        thread::sleep(rng.millis(100, 1200));
        cli.check_alive();
        let before = writers.progress.load(Ordering::Relaxed);
        match fault {
            Fault::Terminate => {
                terminate(&c, &mut cli, &mut t);
            }
            Fault::TerminateThenStartup => {
                let old = terminate(&c, &mut cli, &mut t);
                kill_at_startup(&c, &mut cli, old, rng.below(2) == 0, &mut t);
            }
            Fault::RestartImmediate => {
                c.restart_immediate().expect("pg_ctl restart -m immediate");
                t.restarts += 1;
            }
            Fault::Sigkill => {
                cli.kill();
                cli.spawn();
                t.sigkills += 1;
            }
            Fault::SigkillThenStartup => {
                let old = faults::walsender(&c, SLOT, &mut cli);
                cli.kill();
                cli.spawn();
                t.sigkills += 1;
                kill_at_startup(&c, &mut cli, old, rng.below(2) == 0, &mut t);
            }
            Fault::SigkillInBig => {
                t.torn += usize::from(sigkill_in_big(&mut cli, &writers));
                cli.spawn();
                t.sigkills += 1;
                t.sigkills_in_big += 1;
            }
            Fault::Freeze => {
                faults::walsender(&c, SLOT, &mut cli);
                cli.signal("-STOP");
                thread::sleep(WAL_SENDER_TIMEOUT + Duration::from_secs(2));
                cli.signal("-CONT");
                t.freezes += 1;
            }
        }
        eprintln!(
            "recv_faults [{name}]: fault {:2}/{} at {:5.1} s: {fault:?} (writers at seq {before}, walsender {})",
            i + 1,
            plan.len(),
            t0.elapsed().as_secs_f64(),
            active_pid(&c)
        );
    }

    // let the writers go on a little after the last fault, then stop them
    thread::sleep(Duration::from_millis(500));
    let report = writers.finish();
    let reference = faults::reference(&c, REFERENCE_SLOT, false);
    wait_complete(&mut cli, &reference);
    let status = cli.interrupt();
    let data = fs::read(&cli.file).unwrap();
    let state = fs::read(format!("{}.pgrepl-state", cli.file.display())).ok();

    // ---- the checker ----
    let (txns, problems) = parse_file(&data, true, cli.plugin);
    let position: HashMap<u64, usize> = reference.iter().enumerate().map(|(i, t)| (t.xid, i)).collect();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for t in &txns {
        *seen.entry(t.xid).or_default() += 1;
    }
    let duplicated: usize = seen.values().map(|n| n - 1).sum();
    let lost: Vec<&Txn> = reference.iter().filter(|t| !seen.contains_key(&t.xid)).collect();
    // transactions that are not in the reference, or not with the same rows
    let invented: Vec<&FileTxn> =
        txns.iter().filter(|t| position.get(&t.xid).is_none_or(|&i| reference[i].rows != t.rows)).collect();
    let order: Vec<usize> = txns.iter().filter_map(|t| position.get(&t.xid).copied()).collect();
    let out_of_order = order.windows(2).filter(|w| w[0] >= w[1]).count();
    let file_rows = {
        let mut m: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for t in &txns {
            for &(seq, k) in &t.rows {
                m.entry(seq).or_default().push(k);
            }
        }
        m.values_mut().for_each(|ks| ks.sort_unstable());
        m
    };
    let rows_in_file: usize = txns.iter().map(|t| t.rows.len()).sum();
    let table = faults::table(&c);
    let in_reference = faults::rows_by_seq(&reference);
    let rolled_back_present: Vec<i64> =
        report.rolled_back.iter().copied().filter(|s| file_rows.contains_key(s) || table.contains_key(s)).collect();
    let negative_rows = txns.iter().flat_map(|t| &t.rows).filter(|(_, k)| *k < 0).count();
    let committed_rows: usize = report.committed.values().map(Vec::len).sum();

    eprintln!(
        "recv_faults [{name}] seed {seed}: kills {} ({} at startup, {} of them before the slot was acquired), \
         immediate restarts {}, CLI SIGKILLs {} ({} in a large transaction, {} leaving a torn tail), freezes {}, \
         CLI starts {}, CLI retries logged {}; transactions {} ({} rows; {} rolled back, {} with a rolled-back \
         savepoint; FILE has {} transactions, {} of them without rows: DDL, autoanalyze); lost {}, duplicated {duplicated}, invented {}, out of order {out_of_order}, FILE problems {}; \
         CLI exit status on SIGINT {}; runtime {:.1} s",
        t.kills,
        t.startup,
        t.before_slot,
        t.restarts,
        t.sigkills,
        t.sigkills_in_big,
        t.torn,
        t.freezes,
        cli.starts,
        cli.retries(),
        report.committed.len(),
        committed_rows,
        report.rolled_back.len(),
        report.savepoint_commits,
        txns.len(),
        txns.iter().filter(|t| t.rows.is_empty()).count(),
        lost.len(),
        invented.len(),
        problems.len(),
        status.code().map_or("none (killed by a signal)".into(), |c| c.to_string()),
        t0.elapsed().as_secs_f64()
    );
    if let Some(s) = &state {
        eprintln!("recv_faults [{name}]: FILE {} bytes, state file {:?}", data.len(), String::from_utf8_lossy(s));
    }

    let show = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join("\n");
    assert!(problems.is_empty(), "[{name}] FILE is not whole transactions:\n{}", show(&problems));
    assert!(status.success(), "[{name}] the CLI's exit status on SIGINT: {status}; log:\n{}", cli.log_tail());
    assert!(lost.is_empty(), "[{name}] lost {}: {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert_eq!(duplicated, 0, "[{name}] duplicated transactions");
    assert!(invented.is_empty(), "[{name}] invented or altered: {:?}", &invented[..invented.len().min(5)]);
    assert_eq!(out_of_order, 0, "[{name}] FILE is not in commit order");
    assert_eq!(txns.len(), reference.len(), "[{name}] transactions in FILE against the reference decoding");
    assert!(rolled_back_present.is_empty(), "[{name}] rolled back but present: {rolled_back_present:?}");
    assert_eq!(negative_rows, 0, "[{name}] rows of a rolled-back savepoint in FILE");
    assert_eq!(in_reference, report.committed, "[{name}] the decoded WAL against the writers' record");
    assert_eq!(table, report.committed, "[{name}] the table against the writers' record");
    assert_eq!(file_rows, table, "[{name}] FILE's rows against the table's final contents");
    assert_eq!(rows_in_file, committed_rows, "[{name}] rows in FILE");
    // the run proves something only if it did what it says
    assert!(report.committed.len() > 300, "[{name}] too small a workload to prove much");
    assert!(t.kills >= counts.kills() - t.startup_missed && t.kills >= 20, "[{name}] {} walsender kills", t.kills);
    assert!(t.startup >= 3, "[{name}] {} kills at startup", t.startup);
    assert_eq!(t.restarts, counts.restart_immediate);
    assert_eq!(t.sigkills, counts.sigkills());
    assert_eq!(cli.starts, 1 + counts.sigkills());
    drop(cli);
    drop(keep);
    if std::env::var_os("PGREPL_RECV_FAULT_KEEP").is_none() {
        let _ = fs::remove_dir_all(&dir);
    }
}

/// On a failure: the server's log is copied beside FILE and the CLI's logs, and the directory is kept.
struct Keep {
    dir: PathBuf,
    server_log: PathBuf,
}

impl Drop for Keep {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = fs::copy(&self.server_log, self.dir.join("server.log"));
            eprintln!("recv_faults: FILE, the CLI's logs and the server's log are kept in {}", self.dir.display());
        }
    }
}

#[test]
fn the_checker_finds_rows_and_rejects_broken_files() {
    let b = |x: u64| format!("{{\"action\":\"B\",\"xid\":{x}}}\n");
    let c = |x: u64| format!("{{\"action\":\"C\",\"xid\":{x}}}\n");
    let i = |x: u64, seq: i64, k: i64| {
        format!(
            "{{\"action\":\"I\",\"xid\":{x},\"schema\":\"public\",\"table\":\"w\",\"columns\":[{{\"name\":\"seq\",\
             \"type\":\"bigint\",\"value\":{seq}}},{{\"name\":\"k\",\"type\":\"integer\",\"value\":{k}}}]}}\n"
        )
    };
    let good = format!("{}{}{}{}{}{}{}", b(7), i(7, 1, 1), i(7, 1, 2), c(7), b(8), i(8, 2, 1), c(8));
    let (txns, problems) = parse_file(good.as_bytes(), true, Plugin::Wal2json);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[0].rows, [(1, 1), (1, 2)]);
    assert_eq!((txns[1].xid, &txns[1].rows[..]), (8, &[(2, 1)][..]));
    // a torn line, an unfinished transaction, a stray row, a C without B
    for bad in [
        format!("{good}{}", &b(9)[..10]),
        format!("{good}{}{}", b(9), i(9, 3, 1)),
        format!("{}{good}", i(6, 0, 1)),
        format!("{good}{}", c(8)),
        format!("{}{}{good}", b(5), i(5, 0, 1)),
    ] {
        let (_, problems) = parse_file(bad.as_bytes(), true, Plugin::Wal2json);
        assert!(!problems.is_empty(), "accepted {bad}");
    }
    // the same of test_decoding's lines
    let b = |x: u64| format!("BEGIN {x}\n");
    let c = |x: u64| format!("COMMIT {x}\n");
    let i = |seq: i64, k: i64| format!("table public.w: INSERT: seq[bigint]:{seq} k[integer]:{k}\n");
    let good = format!("{}{}{}{}{}{}{}", b(7), i(1, 1), i(1, 2), c(7), b(8), i(2, 1), c(8));
    let (txns, problems) = parse_file(good.as_bytes(), true, Plugin::TestDecoding);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[0].rows, [(1, 1), (1, 2)]);
    assert_eq!((txns[1].xid, &txns[1].rows[..]), (8, &[(2, 1)][..]));
    for bad in [
        format!("{good}{}", &b(9)[..4]),
        format!("{good}{}{}", b(9), i(3, 1)),
        format!("{}{good}", i(0, 1)),
        format!("{good}{}", c(8)),
        format!("{good}table public.w: INSERT: seq[bigint]:3\n"),
        format!("{good}table public.other: INSERT: x[integer]:1\n"),
    ] {
        let (_, problems) = parse_file(bad.as_bytes(), true, Plugin::TestDecoding);
        assert!(!problems.is_empty(), "accepted {bad}");
    }
    assert!(Path::new(PGREPL).exists());
}
