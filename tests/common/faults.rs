//! What the fault-injection suites share (`tests/fault_injection.rs` drives the library consumer,
//! `tests/recv_faults.rs` the `pgrepl recv` CLI; each includes this file with `#[path]`): a seeded random number
//! generator, concurrent writers of numbered transactions with the record of what they committed, server-side
//! helpers (psql retried across restarts, slot state, the walsender of a slot) and the independent reference: a
//! `test_decoding` slot, never advanced, decoded at the end, and the table's final contents.
//!
//! The writers commit transactions numbered `seq` into table `w (seq bigint, k int)`: each inserts rows
//! `(seq, k)`; some roll back, some roll back a savepoint (its rows have a negative `k` and must never be
//! seen), now and then one inserts 1500 rows, and now and then the writers pause.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::Lsn;
use pgrepl_testkit::TempCluster;

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------------------------------------------

/// splitmix64
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The seed in environment variable `var`, or a fresh one.
pub fn seed(var: &str) -> u64 {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64
            ^ u64::from(std::process::id())
    })
}

// ---------------------------------------------------------------------------------------------------------------
// The writers
// ---------------------------------------------------------------------------------------------------------------

/// What the writers know happened.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// seq → the `k` of the rows its committed transaction inserted.
    pub committed: BTreeMap<i64, Vec<i64>>,
    /// seqs whose transaction rolled back.
    pub rolled_back: BTreeSet<i64>,
    /// Committed transactions that rolled back a savepoint.
    pub savepoint_commits: usize,
    /// Transactions whose outcome was unknown (connection lost during them), resolved by querying the table.
    pub unknown_committed: usize,
    pub unknown_absent: usize,
    /// Connection errors seen.
    pub errors: usize,
}

impl WriterReport {
    fn merge(&mut self, r: WriterReport) {
        self.committed.extend(r.committed);
        self.rolled_back.extend(r.rolled_back);
        self.savepoint_commits += r.savepoint_commits;
        self.unknown_committed += r.unknown_committed;
        self.unknown_absent += r.unknown_absent;
        self.errors += r.errors;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    Commit,
    Rollback,
    /// Commits, with rows inserted after a savepoint rolled back to it (negative `k`, must be absent).
    SavepointRollback,
}

fn plan_sql(seq: i64, plan: Plan, n: i64) -> (String, Vec<i64>) {
    let values = |ks: &[i64]| ks.iter().map(|k| format!("({seq},{k})")).collect::<Vec<_>>().join(",");
    let ks: Vec<i64> = (1..=n).collect();
    match plan {
        Plan::Commit => (format!("BEGIN; INSERT INTO w VALUES {}; COMMIT;", values(&ks)), ks),
        Plan::Rollback => (format!("BEGIN; INSERT INTO w VALUES {}; ROLLBACK;", values(&ks)), vec![]),
        Plan::SavepointRollback => (
            format!(
                "BEGIN; INSERT INTO w VALUES ({seq},1); SAVEPOINT s; INSERT INTO w VALUES ({seq},-1),({seq},-2); \
                 ROLLBACK TO SAVEPOINT s; INSERT INTO w VALUES ({seq},2); COMMIT;"
            ),
            vec![1, 2],
        ),
    }
}

async fn connect(cfg: &Config) -> Client {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match Client::connect(cfg).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "writer cannot connect: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn count_rows(client: &mut Client, seq: i64) -> pgrepl::Result<usize> {
    let r = client.simple_query(&format!("SELECT count(*) FROM w WHERE seq = {seq}")).await?;
    Ok(r.first().and_then(|r| r.get(0, "count")).and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// Lets the injector steer the writers.
#[derive(Default)]
pub struct Control {
    /// Asked to pause.
    pub asked: AtomicBool,
    /// Writers paused (between transactions).
    pub paused: AtomicUsize,
    /// Asked for one large transaction ([`BIG_ROWS`] rows, committed): the first writer to see it takes it.
    pub big: AtomicBool,
    /// The seq of the last large transaction asked for, set before it is sent (0: none yet).
    pub big_seq: AtomicI64,
}

/// Rows of a large transaction asked for with [`Control::big`].
pub const BIG_ROWS: i64 = 10_000;

/// Concurrent writers: their transactions interleave in the WAL (a transaction's first change can come before
/// the previous commit), so message LSNs are not monotonic across transactions.
pub const WRITERS: i64 = 2;

/// Writer `id` commits transactions numbered `id`, `id + WRITERS`, … until `stop`.
async fn write(
    id: i64,
    conninfo: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    control: Arc<Control>,
) -> WriterReport {
    let cfg = Config::parse(&conninfo).unwrap();
    let mut rng = Rng(seed ^ 0x5752_4954_4552 ^ (id as u64) << 56);
    let mut report = WriterReport::default();
    let mut client: Option<Client> = None;
    let mut seq = id;
    while !stop.load(Ordering::Relaxed) {
        if control.asked.load(Ordering::Relaxed) {
            control.paused.fetch_add(1, Ordering::Relaxed);
            while control.asked.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            control.paused.fetch_sub(1, Ordering::Relaxed);
        }
        seq += WRITERS;
        let mut plan = match rng.below(100) {
            0..=79 => Plan::Commit,
            80..=91 => Plan::Rollback,
            _ => Plan::SavepointRollback,
        };
        // now and then a large transaction (many payloads: faults land inside it)
        let mut rows = if rng.below(150) == 0 { 1500 } else { 1 + rng.below(4) as i64 };
        if control.big.swap(false, Ordering::Relaxed) {
            (plan, rows) = (Plan::Commit, BIG_ROWS);
            control.big_seq.store(seq, Ordering::Relaxed);
        }
        let (sql, ks) = plan_sql(seq, plan, rows);
        loop {
            let c = match client.as_mut() {
                Some(c) => c,
                None => client.insert(connect(&cfg).await),
            };
            match c.simple_query(&sql).await {
                Ok(_) => {
                    if ks.is_empty() {
                        report.rolled_back.insert(seq);
                    } else {
                        report.committed.insert(seq, ks.clone());
                        report.savepoint_commits += usize::from(plan == Plan::SavepointRollback);
                    }
                    break;
                }
                Err(_) => {
                    // Lost during the transaction (the server restarted): did it commit? Ask the table.
                    report.errors += 1;
                    client = None;
                    let n = loop {
                        let c = client.insert(connect(&cfg).await);
                        match count_rows(c, seq).await {
                            Ok(n) => break n,
                            Err(_) => client = None,
                        }
                    };
                    if n > 0 {
                        assert_eq!(n, ks.len(), "seq {seq}: a partial transaction is visible");
                        report.committed.insert(seq, ks.clone());
                        report.savepoint_commits += usize::from(plan == Plan::SavepointRollback);
                        report.unknown_committed += 1;
                        break;
                    }
                    report.unknown_absent += 1;
                    if ks.is_empty() {
                        report.rolled_back.insert(seq);
                        break;
                    }
                    // not committed: try the same transaction again
                }
            }
        }
        progress.fetch_max(seq as u64, Ordering::Relaxed);
        // now and then a quiet period (the slot is idle: keepalives, idle advance)
        let pause = if rng.below(400) == 0 { rng.millis(1000, 2500) } else { rng.millis(0, 8) };
        tokio::time::sleep(pause).await;
    }
    report
}

/// [`WRITERS`] writers, each on its own thread and runtime.
pub struct Writers {
    stop: Arc<AtomicBool>,
    /// The highest seq done (committed or rolled back).
    pub progress: Arc<AtomicU64>,
    pub control: Arc<Control>,
    threads: Vec<JoinHandle<WriterReport>>,
}

impl Writers {
    pub fn start(conninfo: &str, seed: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let control = Arc::new(Control::default());
        let threads = (0..WRITERS)
            .map(|id| {
                let (stop, progress, conninfo, control) =
                    (stop.clone(), progress.clone(), conninfo.to_string(), control.clone());
                thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(write(id, conninfo, seed, stop, progress, control))
                })
            })
            .collect();
        Writers { stop, progress, control, threads }
    }

    /// Pauses the writers (between transactions) and waits until they all are.
    pub fn pause(&self) {
        self.control.asked.store(true, Ordering::Relaxed);
        while self.control.paused.load(Ordering::Relaxed) < WRITERS as usize {
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn resume(&self) {
        self.control.asked.store(false, Ordering::Relaxed);
    }

    /// Stops the writers and returns their record.
    pub fn finish(self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = WriterReport::default();
        for w in self.threads {
            report.merge(w.join().expect("writer"));
        }
        report
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Server-side helpers
// ---------------------------------------------------------------------------------------------------------------

/// The consumer process under test, as the server-side helpers need it.
pub trait Watched {
    /// Panics (with the process's log) if it exited.
    fn check_alive(&mut self);
    /// The end of its log.
    fn log_tail(&self) -> String;
}

/// Creates table `w` and the slots: `(name, plugin)`.
pub fn create_table_and_slots(c: &TempCluster, slots: &[(&str, &str)]) {
    let mut q = String::from("CREATE TABLE w (seq bigint, k int, PRIMARY KEY (seq, k));");
    for (name, plugin) in slots {
        q.push_str(&format!("SELECT pg_create_logical_replication_slot('{name}', '{plugin}');"));
    }
    c.psql("postgres", &q).unwrap();
}

/// psql, retried while the server is (re)starting.
pub fn sql(c: &TempCluster, q: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.psql("postgres", q) {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "{q}: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// (active_pid, confirmed_flush_lsn) of a slot.
pub fn slot_state(c: &TempCluster, slot: &str) -> (Option<u32>, Lsn) {
    let s =
        sql(c, &format!("SELECT active_pid, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"));
    let (pid, lsn) = s.split_once('|').unwrap_or_else(|| panic!("slot {slot}: {s:?}"));
    (pid.parse().ok(), Lsn::parse(lsn).unwrap())
}

/// Waits for the walsender of `consumer` on `slot` and returns its pid.
pub fn walsender(c: &TempCluster, slot: &str, consumer: &mut impl Watched) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let (Some(pid), _) = slot_state(c, slot) {
            return pid;
        }
        consumer.check_alive();
        assert!(Instant::now() < deadline, "the consumer did not reconnect; log:\n{}", consumer.log_tail());
        thread::sleep(Duration::from_millis(20));
    }
}

/// After the consumer was killed: waits for the slot to be released and returns its confirmed_flush_lsn.
pub fn released(c: &TempCluster, slot: &str) -> Lsn {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match slot_state(c, slot) {
            (None, lsn) => return lsn,
            _ => assert!(Instant::now() < deadline, "the slot stays active after the consumer was killed"),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The independent record
// ---------------------------------------------------------------------------------------------------------------

/// A transaction with its rows of `w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub commit: Lsn,
    pub xid: u64,
    /// (seq, k), in WAL order
    pub rows: Vec<(i64, i64)>,
}

/// Every transaction decoded by test_decoding from `slot` (never advanced), in commit order: only those with
/// changes if `skip_empty_xacts`, otherwise also those without (DDL, autoanalyze…), as wal2json prints them.
pub fn reference(c: &TempCluster, slot: &str, skip_empty_xacts: bool) -> Vec<Txn> {
    let skip = u8::from(skip_empty_xacts);
    let out = sql(
        c,
        &format!(
            "SELECT lsn, xid, data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL, \
             'skip-empty-xacts', '{skip}', 'include-xids', '1')"
        ),
    );
    let field = |data: &str, name: &str| -> i64 {
        let at = data.find(name).unwrap_or_else(|| panic!("{name} in {data}")) + name.len();
        let rest = &data[at..];
        let end = rest.find(' ').unwrap_or(rest.len());
        rest[..end].parse().unwrap()
    };
    let mut txns = vec![];
    let mut cur: Option<Txn> = None;
    for line in out.lines() {
        let mut f = line.splitn(3, '|');
        let (lsn, xid, data) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if data.starts_with("BEGIN") {
            cur = Some(Txn { commit: Lsn::INVALID, xid: xid.parse().unwrap(), rows: vec![] });
        } else if data.starts_with("COMMIT") {
            let mut t = cur.take().expect("COMMIT after BEGIN");
            t.commit = Lsn::parse(lsn).unwrap();
            txns.push(t);
        } else if data.starts_with("message: transactional: 0 prefix: pgrepl-heartbeat,") {
            // the consumer's heartbeats: not for the application
        } else if data.starts_with("table public.w: INSERT:") {
            let t = cur.as_mut().expect("change inside a transaction");
            t.rows.push((field(data, "seq[bigint]:"), field(data, "k[integer]:")));
        } else {
            panic!("unexpected change in the reference decoding: {line}");
        }
    }
    assert!(cur.is_none(), "the reference decoding ends inside a transaction");
    txns
}

/// seq → its `k`s, in the order of the transactions and their rows.
pub fn rows_by_seq<'a>(txns: impl IntoIterator<Item = &'a Txn>) -> BTreeMap<i64, Vec<i64>> {
    let mut m: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for t in txns {
        for &(seq, k) in &t.rows {
            m.entry(seq).or_default().push(k);
        }
    }
    m
}

/// The final contents of table `w`: seq → its `k`s in ascending order.
pub fn table(c: &TempCluster) -> BTreeMap<i64, Vec<i64>> {
    let mut m: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for l in sql(c, "SELECT seq, k FROM w ORDER BY seq, k").lines() {
        let (s, k) = l.split_once('|').unwrap();
        m.entry(s.parse().unwrap()).or_default().push(k.parse().unwrap());
    }
    m
}
