//! Never lose a change (issue 5), proven by fault injection against a real server.
//!
//! Two writers commit numbered transactions concurrently (each inserts rows `(seq, k)` into table `w`; some roll
//! back, some roll back a savepoint, a few insert 1500 rows, now and then the writers pause) while a consumer
//! process built on [`ChangeStream`] (`examples/fault_consumer.rs`) stores each committed transaction with its
//! xid and commit LSN (append + fsync, then acknowledge) and resumes from its store when restarted. A fault
//! injector, in a seeded random order and at random moments:
//! - terminates the walsender (`pg_terminate_backend`) 24 times, twice while the writers are quiet and the
//!   stream's idle advance has moved the slot past the last stored commit;
//! - crash-restarts the server (`pg_ctl restart -m immediate`) 3 times, and restarts it cleanly
//!   (`pg_ctl stop -m fast`, start) twice;
//! - SIGKILLs the consumer and starts it again 8 times: at random moments (started again at once, while the
//!   slot may still be active), while idle-advanced, right after a transaction was stored but before it was
//!   acknowledged (the slot must not have confirmed it; the restart must not deliver it again), and right
//!   after its acknowledgement reached the server;
//! - stalls the consumer for 5 s (`wal_sender_timeout` is 2 s): the connection must survive;
//! - freezes the consumer process (SIGSTOP) for 5 s: the walsender times out, the consumer must reconnect.
//!
//! The checker then compares the consumer's store with an independent decoding of the same WAL (a second slot,
//! never advanced, read with `test_decoding` at the end), with the writers' own record and with the table: every
//! committed transaction present, in commit order, with its commit LSN and xid, none twice, none invented,
//! rolled-back transactions and savepoints absent. It prints the counts and asserts them.
//!
//! The consumer runs as a separate process so that it can be SIGKILLed: the test binary runs itself again with
//! `PGREPL_FAULT_CONSUMER` set and only the ignored test `fault_consumer_process` selected, which runs the
//! example's code (included here as a module). This needs no nested `cargo build` (which would wait for the
//! build directory lock that the running `cargo test` holds) and no entry in Cargo.toml.
//!
//! The writers, the server-side helpers and the reference decoding are in `tests/common/faults.rs`, shared with
//! `tests/recv_faults.rs` (the same proof for the `pgrepl recv` CLI).
//!
//! Set `PGREPL_FAULT_SEED` to replay a run's fault order (the seed is printed).
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

#[path = "../examples/fault_consumer.rs"]
#[allow(dead_code)]
mod fault_consumer;
#[path = "common/faults.rs"]
mod faults;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use pgrepl::Lsn;
use pgrepl_testkit::{ClusterOptions, TempCluster};

use faults::{sql, Rng, Txn};

const CONSUMER_ENV: &str = "PGREPL_FAULT_CONSUMER";
const SLOT: &str = "fault";
const REFERENCE_SLOT: &str = "reference";
const WAL_SENDER_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------------------------
// The consumer process
// ---------------------------------------------------------------------------------------------------------------

/// The consumer, when this binary runs as the suite's child process; otherwise nothing.
#[test]
#[ignore = "the consumer process of `fault_injection` (run by it with PGREPL_FAULT_CONSUMER set)"]
fn fault_consumer_process() {
    let Ok(dir) = std::env::var(CONSUMER_ENV) else { return };
    let opts = fault_consumer::Opts {
        conninfo: std::env::var("PGREPL_FAULT_CONNINFO").expect("PGREPL_FAULT_CONNINFO"),
        slot: SLOT.into(),
        dir: dir.into(),
        plugin: std::env::var("PGREPL_FAULT_PLUGIN").expect("PGREPL_FAULT_PLUGIN"),
    };
    match fault_consumer::run(opts) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("fault_consumer: {e}");
            std::process::exit(2);
        }
    }
}

/// The consumer child process; Drop kills it.
struct Consumer {
    dir: PathBuf,
    conninfo: String,
    /// The slot's plugin (wal2json on Debian's 15, else test_decoding: tests/common/plugins.rs).
    plugin: &'static str,
    child: Option<Child>,
    starts: usize,
}

impl Consumer {
    fn spawn(&mut self) {
        let log = OpenOptions::new().append(true).create(true).open(self.dir.join("consumer.log")).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["fault_consumer_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CONSUMER_ENV, &self.dir)
            .env("PGREPL_FAULT_CONNINFO", &self.conninfo)
            .env("PGREPL_FAULT_PLUGIN", self.plugin)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the consumer");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("consumer running");
        child.kill().expect("SIGKILL the consumer");
        child.wait().unwrap();
    }

    /// SIGSTOP or SIGCONT.
    fn signal(&mut self, sig: &str) {
        let pid = self.child.as_ref().expect("consumer running").id();
        let st = Command::new("kill").args([sig, &pid.to_string()]).status().expect("run kill");
        assert!(st.success(), "kill {sig} {pid}: {st}");
    }

    /// Panics (with the consumer's log) if the consumer exited.
    fn check_alive(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("the consumer exited ({status}); its log:\n{}", self.log_tail());
        }
    }

    /// Asks for a clean stop and waits for exit 0.
    fn stop(&mut self) {
        touch(&self.dir, "stop");
        let mut child = self.child.take().expect("consumer running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "consumer exit {status}; log:\n{}", self.log_tail());
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the consumer did not stop; log:\n{}", self.log_tail());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the control file `name` to exist and returns its content.
    fn wait_file(&mut self, name: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(s) = fs::read_to_string(self.dir.join(name)) {
                return s;
            }
            self.check_alive();
            assert!(Instant::now() < deadline, "no {name} after {limit:?}; consumer log:\n{}", self.log_tail());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("consumer.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn touch(dir: &Path, name: &str) {
    fs::write(dir.join(name), "").unwrap();
}

impl faults::Watched for Consumer {
    fn check_alive(&mut self) {
        Consumer::check_alive(self)
    }
    fn log_tail(&self) -> String {
        Consumer::log_tail(self)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Server-side helpers (tests/common/faults.rs) for this suite's slot
// ---------------------------------------------------------------------------------------------------------------

/// (active_pid, confirmed_flush_lsn) of the consumer's slot.
fn slot_state(c: &TempCluster) -> (Option<u32>, Lsn) {
    faults::slot_state(c, SLOT)
}

/// Waits for the consumer's walsender and returns its pid.
fn walsender(c: &TempCluster, consumer: &mut Consumer) -> u32 {
    faults::walsender(c, SLOT, consumer)
}

/// After the consumer was killed: waits for the slot to be released and returns its confirmed_flush_lsn.
fn released(c: &TempCluster) -> Lsn {
    faults::released(c, SLOT)
}

// ---------------------------------------------------------------------------------------------------------------
// Transactions, from the store and from the reference decoding
// ---------------------------------------------------------------------------------------------------------------

fn parse_rows(s: &str) -> Vec<(i64, i64)> {
    if s == "-" {
        return vec![];
    }
    s.split(',')
        .map(|r| {
            let (a, b) = r.split_once(':').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

fn read_store(dir: &Path) -> Vec<Txn> {
    let text = fs::read_to_string(dir.join("store")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut f = l.split(' ');
            let commit = Lsn::parse(f.next().unwrap()).unwrap();
            let xid = f.next().unwrap().parse().unwrap_or_else(|_| panic!("store line without xid: {l}"));
            Txn { commit, xid, rows: parse_rows(f.next().unwrap()) }
        })
        .collect()
}

fn store_last(dir: &Path) -> Lsn {
    fault_consumer::recover_store(&dir.join("store")).map(|(l, _)| l).unwrap_or(Lsn::INVALID)
}

// ---------------------------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    TerminateWalsender,
    RestartImmediate,
    /// `pg_ctl stop -m fast` and start: the walsender ends the copy once the client confirmed everything sent.
    RestartFast,
    /// With the writer paused and the slot idle-advanced past the last stored commit: terminate the walsender.
    IdleTerminate,
    /// Same, SIGKILL the consumer (its stored position is behind the slot on restart: SlotAhead, nothing lost).
    IdleKill,
    /// SIGKILL at a random moment, started again at once (the slot may still be active: "in use" is retried).
    KillConsumer,
    /// SIGKILL right after a transaction is stored (fsynced), before it is acknowledged.
    KillStoredNotAcked,
    /// SIGKILL after an acknowledgement reached the server (the slot's confirmed_flush_lsn passed it).
    KillAfterAck,
    /// The consumer stalls for 5 s (wal_sender_timeout is 2 s).
    StallConsumer,
    /// The whole consumer process is frozen (SIGSTOP) for 5 s: it cannot answer, the walsender times out, and
    /// the consumer must reconnect when it thaws.
    FreezeConsumer,
}

#[test]
fn never_lose_a_change() {
    let t0 = Instant::now();
    let seed = faults::seed("PGREPL_FAULT_SEED");
    eprintln!("fault_injection: seed {seed} (PGREPL_FAULT_SEED={seed} replays this fault order)");
    let mut rng = Rng(seed);

    let c = TempCluster::start(ClusterOptions { wal_sender_timeout: WAL_SENDER_TIMEOUT, ..Default::default() })
        .expect("start cluster");
    let plugin = c.test_plugin();
    eprintln!("fault_injection: PostgreSQL {}, the consumer's slot on {plugin}", c.version());
    faults::create_table_and_slots(&c, &[(SLOT, plugin), (REFERENCE_SLOT, "test_decoding")]);
    let dir = tempfile::tempdir().unwrap();
    let conninfo = c.conninfo(c.superuser(), "postgres");
    let mut consumer =
        Consumer { dir: dir.path().to_path_buf(), conninfo: conninfo.clone(), plugin, child: None, starts: 0 };
    consumer.spawn();

    // the writer, on its own thread and runtime
    let writers = faults::Writers::start(&conninfo, seed);
    let (progress, quiet) = (writers.progress.clone(), writers.control.clone());
    // Silences the writer until the slot has been idle-advanced past the last write (nothing else for this
    // slot); returns that position.
    let quiet_and_idle_advanced = |consumer: &mut Consumer| -> Lsn {
        quiet.asked.store(true, Ordering::Relaxed);
        while quiet.paused.load(Ordering::Relaxed) < faults::WRITERS as usize {
            thread::sleep(Duration::from_millis(5));
        }
        // WAL that means nothing to this slot: a write in another database
        c.psql("other", "CREATE TABLE IF NOT EXISTS pad (x int); INSERT INTO pad VALUES (1)").unwrap();
        let target = Lsn::parse(&sql(&c, "SELECT pg_current_wal_lsn()")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while slot_state(&c).1 < target {
            consumer.check_alive();
            assert!(Instant::now() < deadline, "no idle advance to {target}: slot at {}", slot_state(&c).1);
            thread::sleep(Duration::from_millis(20));
        }
        assert!(store_last(&consumer.dir) < target);
        target
    };

    let mut faults = vec![];
    faults.extend([Fault::TerminateWalsender; 22]);
    faults.extend([Fault::RestartImmediate; 3]);
    faults.extend([Fault::RestartFast; 2]);
    faults.extend([Fault::KillConsumer; 3]);
    faults.extend([Fault::IdleTerminate; 2]);
    faults.push(Fault::IdleKill);
    faults.extend([Fault::KillStoredNotAcked; 2]);
    faults.extend([Fault::KillAfterAck; 2]);
    faults.push(Fault::StallConsumer);
    faults.push(Fault::FreezeConsumer);
    rng.shuffle(&mut faults);

    let mut done: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut stall_pids = (0, 0);
    // deterministic faults tried again because they caught the consumer on a dead connection's buffer
    let mut retried = 0;
    walsender(&c, &mut consumer);
    for (i, &fault) in faults.iter().enumerate() {
        thread::sleep(rng.millis(100, 1200));
        consumer.check_alive();
        let before = progress.load(Ordering::Relaxed);
        match fault {
            Fault::TerminateWalsender => {
                let pid = walsender(&c, &mut consumer);
                // the walsender may have gone by itself meanwhile (then this is not counted and is tried again)
                if sql(&c, &format!("SELECT pg_terminate_backend({pid})")) != "t" {
                    let pid = walsender(&c, &mut consumer);
                    assert_eq!(sql(&c, &format!("SELECT pg_terminate_backend({pid})")), "t");
                }
            }
            Fault::IdleTerminate => {
                let pid = walsender(&c, &mut consumer);
                quiet_and_idle_advanced(&mut consumer);
                assert_eq!(sql(&c, &format!("SELECT pg_terminate_backend({pid})")), "t");
                walsender(&c, &mut consumer);
                quiet.asked.store(false, Ordering::Relaxed);
            }
            Fault::IdleKill => {
                walsender(&c, &mut consumer);
                quiet_and_idle_advanced(&mut consumer);
                consumer.kill();
                released(&c);
                consumer.spawn();
                walsender(&c, &mut consumer);
                quiet.asked.store(false, Ordering::Relaxed);
            }
            Fault::RestartImmediate => c.restart_immediate().expect("restart"),
            Fault::RestartFast => {
                c.stop().expect("pg_ctl stop -m fast");
                thread::sleep(rng.millis(0, 500));
                c.start_again().expect("pg_ctl start");
            }
            Fault::KillConsumer => {
                consumer.kill();
                consumer.spawn();
            }
            Fault::KillStoredNotAcked => {
                touch(&consumer.dir, "hold_before_ack");
                let held = consumer.wait_file("held", Duration::from_secs(60));
                let lsn = Lsn::parse(held.strip_prefix("before ").unwrap()).unwrap();
                consumer.kill();
                fs::remove_file(consumer.dir.join("held")).unwrap();
                let confirmed = released(&c);
                assert_eq!(store_last(&consumer.dir), lsn, "the held transaction is the store's last");
                assert!(confirmed < lsn, "the slot confirmed {confirmed}, past the unacknowledged commit {lsn}");
                consumer.spawn();
            }
            Fault::KillAfterAck => loop {
                // The held transaction may come from the buffer of a connection that died meanwhile (after a
                // freeze, say): its acknowledgement then waits for the reconnect. Try again in that case.
                let pid = walsender(&c, &mut consumer);
                touch(&consumer.dir, "hold_after_ack");
                let held = consumer.wait_file("held", Duration::from_secs(60));
                let lsn = Lsn::parse(held.strip_prefix("after ").unwrap()).unwrap();
                let deadline = Instant::now() + Duration::from_secs(30);
                let reached = loop {
                    let (active, confirmed) = slot_state(&c);
                    if confirmed >= lsn {
                        break true;
                    }
                    if active != Some(pid) {
                        break false;
                    }
                    consumer.check_alive();
                    assert!(Instant::now() < deadline, "the acknowledgement of {lsn} never reached the server");
                    thread::sleep(Duration::from_millis(20));
                };
                consumer.kill();
                fs::remove_file(consumer.dir.join("held")).unwrap();
                released(&c);
                consumer.spawn();
                if reached {
                    break;
                }
                retried += 1;
            },
            Fault::StallConsumer => loop {
                let before = walsender(&c, &mut consumer);
                touch(&consumer.dir, "stall");
                consumer.wait_file("stalling", Duration::from_secs(60));
                // stalling on payloads of the live connection (not on what a dead one left in the buffer)?
                let live = slot_state(&c).0 == Some(before);
                let deadline = Instant::now() + Duration::from_secs(30);
                while consumer.dir.join("stalling").exists() {
                    consumer.check_alive();
                    assert!(Instant::now() < deadline, "the stall does not end");
                    thread::sleep(Duration::from_millis(20));
                }
                if live {
                    stall_pids = (before, walsender(&c, &mut consumer));
                    if stall_pids.0 != stall_pids.1 {
                        let log = fs::read_to_string(c.log_path()).unwrap_or_default();
                        let server: Vec<&str> = log.lines().filter(|l| l.contains(&format!("[{}]", before))).collect();
                        panic!(
                            "the connection did not survive a 5 s stall (walsender {} then {}); the server's log of \
                             walsender {before}:\n{}\nthe consumer's log:\n{}",
                            stall_pids.0,
                            stall_pids.1,
                            server.join("\n"),
                            consumer.log_tail()
                        );
                    }
                    break;
                }
                retried += 1;
            },
            Fault::FreezeConsumer => {
                walsender(&c, &mut consumer);
                consumer.signal("-STOP");
                thread::sleep(Duration::from_secs(5));
                consumer.signal("-CONT");
            }
        }
        *done.entry(fault).or_default() += 1;
        eprintln!(
            "fault {:2}/{} at {:5.1} s: {fault:?} (writer at seq {before})",
            i + 1,
            faults.len(),
            t0.elapsed().as_secs_f64()
        );
    }

    // let the writer go on a little after the last fault, then stop it
    thread::sleep(Duration::from_millis(500));
    let report = writers.finish();

    // the consumer catches up with everything committed, then stops cleanly
    let reference = faults::reference(&c, REFERENCE_SLOT, true);
    let last_commit = reference.last().map_or(Lsn::INVALID, |t| t.commit);
    let deadline = Instant::now() + Duration::from_secs(60);
    while store_last(&consumer.dir) < last_commit {
        consumer.check_alive();
        assert!(
            Instant::now() < deadline,
            "the consumer did not catch up with {last_commit} (store at {}); log:\n{}",
            store_last(&consumer.dir),
            consumer.log_tail()
        );
        thread::sleep(Duration::from_millis(50));
    }
    consumer.stop();
    let stored = read_store(&consumer.dir);
    let confirmed = slot_state(&c).1;
    assert!(confirmed >= store_last(&consumer.dir), "stop() must confirm what was acknowledged");

    // ---- the checker ----
    // the store against the reference decoding: same transactions, same order, same commit LSNs and xids
    let with_rows: Vec<&Txn> = stored.iter().filter(|t| !t.rows.is_empty()).collect();
    let by_commit: HashMap<Lsn, &Txn> = reference.iter().map(|t| (t.commit, t)).collect();
    let mut seen: HashMap<Lsn, usize> = HashMap::new();
    for t in &stored {
        *seen.entry(t.commit).or_default() += 1;
    }
    let duplicated: usize = seen.values().map(|n| n - 1).sum();
    let lost: Vec<&Txn> = reference.iter().filter(|t| !seen.contains_key(&t.commit)).collect();
    let invented: Vec<&Txn> = with_rows.iter().copied().filter(|t| by_commit.get(&t.commit) != Some(t)).collect();
    let out_of_order = stored.windows(2).filter(|w| w[0].commit >= w[1].commit).count();
    // the writer's record and the table
    let in_reference = faults::rows_by_seq(&reference);
    let table = faults::table(&c);
    let rolled_back_present: Vec<i64> =
        report.rolled_back.iter().copied().filter(|s| in_reference.contains_key(s) || table.contains_key(s)).collect();
    let negative_rows = with_rows.iter().flat_map(|t| &t.rows).filter(|(_, k)| *k < 0).count();
    let seqs_in_store: Vec<i64> = with_rows.iter().flat_map(|t| t.rows.iter().map(|r| r.0)).collect();

    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    let mut slot_in_use = 0;
    let mut slot_ahead_in_process = vec![];
    let mut previous = "";
    let events_log = fs::read_to_string(consumer.dir.join("events")).unwrap_or_default();
    for l in events_log.lines() {
        if l.starts_with("slot_ahead") && !previous.starts_with("process") {
            slot_ahead_in_process.push(format!("{l} (after: {previous})"));
        }
        previous = l;
        *events.entry(l.split(' ').next().unwrap_or("").to_string()).or_default() += 1;
        slot_in_use += usize::from(l.starts_with("retrying") && l.contains("is active for PID"));
    }
    let log = fs::read_to_string(c.log_path()).unwrap_or_default();
    let timeouts = log.matches("terminating walsender process due to replication timeout").count();

    eprintln!("---- fault_injection (seed {seed}) ----");
    eprintln!(
        "transactions: {} committed by the writer ({} with a rolled-back savepoint among them), {} rolled back, \
         {} of unknown outcome resolved by the table ({} committed, {} absent and retried/rolled back)",
        report.committed.len(),
        report.savepoint_commits,
        report.rolled_back.len(),
        report.unknown_committed + report.unknown_absent,
        report.unknown_committed,
        report.unknown_absent
    );
    eprintln!(
        "store: {} transactions ({} with rows of w), reference decoding: {} transactions",
        stored.len(),
        with_rows.len(),
        reference.len()
    );
    eprintln!(
        "faults: {} walsender terminations ({} of them while idle-advanced), {} immediate restarts, {} fast \
         restarts, {} consumer SIGKILLs ({} at random moments, {} while idle-advanced, {} stored but not yet \
         acknowledged, {} after the acknowledgement reached the server), {} stalls of 5 s (walsender pid {} before \
         and after), {} freezes of 5 s (SIGSTOP), consumer starts {}",
        done.get(&Fault::TerminateWalsender).unwrap_or(&0) + done.get(&Fault::IdleTerminate).unwrap_or(&0),
        done.get(&Fault::IdleTerminate).unwrap_or(&0),
        done.get(&Fault::RestartImmediate).unwrap_or(&0),
        done.get(&Fault::RestartFast).unwrap_or(&0),
        done.get(&Fault::KillConsumer).unwrap_or(&0)
            + done.get(&Fault::IdleKill).unwrap_or(&0)
            + done.get(&Fault::KillStoredNotAcked).unwrap_or(&0)
            + done.get(&Fault::KillAfterAck).unwrap_or(&0),
        done.get(&Fault::KillConsumer).unwrap_or(&0),
        done.get(&Fault::IdleKill).unwrap_or(&0),
        done.get(&Fault::KillStoredNotAcked).unwrap_or(&0),
        done.get(&Fault::KillAfterAck).unwrap_or(&0),
        done.get(&Fault::StallConsumer).unwrap_or(&0),
        stall_pids.0,
        done.get(&Fault::FreezeConsumer).unwrap_or(&0),
        consumer.starts,
    );
    eprintln!(
        "consumer events: {events:?} ({slot_in_use} retries of a slot still in use); walsender replication \
         timeouts in the server log: {timeouts} (expected after a freeze)"
    );
    eprintln!(
        "lost {}, duplicated {duplicated}, invented {}, out of order {out_of_order}, rolled back but present {}, \
         rows of rolled-back savepoints {negative_rows}",
        lost.len(),
        invented.len(),
        rolled_back_present.len()
    );
    eprintln!("runtime {:.1} s ({retried} faults tried again)", t0.elapsed().as_secs_f64());

    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(5)]);
    assert_eq!(duplicated, 0, "duplicated");
    assert!(invented.is_empty(), "invented or altered: {:?}", &invented[..invented.len().min(5)]);
    assert_eq!(out_of_order, 0, "the store is not in commit order");
    assert_eq!(with_rows.len(), reference.len());
    assert!(rolled_back_present.is_empty(), "rolled back but present: {rolled_back_present:?}");
    assert_eq!(negative_rows, 0, "rows of a rolled-back savepoint were delivered");
    assert_eq!(in_reference, report.committed, "the decoded WAL against the writer's record");
    assert_eq!(table, report.committed, "the table against the writer's record");
    let unique: BTreeSet<i64> = seqs_in_store.iter().copied().collect();
    assert_eq!(unique.len(), report.committed.len(), "every committed seq in the store");
    let freezes = done.get(&Fault::FreezeConsumer).copied().unwrap_or(0);
    assert!(timeouts <= freezes, "{timeouts} walsender timeouts, {freezes} of them expected (frozen consumer)");
    // Only a restarted process may find the slot ahead of its store (idle advance moved it past the last
    // stored commit); within a process the stream knows what it confirmed itself.
    assert!(slot_ahead_in_process.is_empty(), "SlotAhead on a reconnect: {slot_ahead_in_process:#?}");
    assert!(done[&Fault::TerminateWalsender] + done[&Fault::IdleTerminate] >= 20);
    assert!(done[&Fault::RestartImmediate] >= 3);
    assert!(consumer.starts > 5 && done[&Fault::StallConsumer] >= 1);
    assert!(report.committed.len() > 500, "too small a workload to prove much");
}
