//! Idle slots (issue 5, item 5): a [`ChangeStream`] with default settings on a database that sees no writes,
//! while another database writes many MB, keeps its slot's `confirmed_flush_lsn` moving and the WAL the slot
//! retains (`pg_current_wal_lsn() - restart_lsn`) falling back, through a reconnect, with no false `SlotAhead`.
//! Two control slots show what happens otherwise: one nobody reads, one read with the idle advance turned off;
//! both retain everything written.
//!
//! Nothing here depends on how fast the machine or the server runs (issue 15): instead of bounding how much WAL
//! the slot retains at some moment (which is whatever the machine writes between two status updates), each
//! round waits, with a generous deadline that only a broken pgrepl reaches, for what pgrepl controls: the
//! slot's confirmed_flush_lsn reaches the WAL end the walsender had sent when nothing was unacknowledged (a
//! keepalive's walEnd, reported by a status update), and the slot then lets go of the WAL written before the
//! round.
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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgrepl::changes::{ChangeStream, ChangeStreamConfig, StreamEvent};
use pgrepl::plugin::Decoding;
use pgrepl::wal2json::Event;
use pgrepl::Lsn;
use pgrepl_testkit::{ClusterOptions, TempCluster};

#[path = "common/plugins.rs"]
mod plugins;
use plugins::{with_decoding, Plugin};

const MB: f64 = 1024.0 * 1024.0;

/// How long a wait for something pgrepl does every status interval (2.5 s here) may take before the test
/// fails: long enough for any machine under any load, reached only when it never happens.
const PATIENCE: Duration = Duration::from_secs(90);

/// (confirmed_flush_lsn, retained WAL in bytes) of `slot`.
fn slot(c: &TempCluster, slot: &str) -> (Lsn, f64) {
    let s = c
        .psql(
            "postgres",
            &format!(
                "SELECT confirmed_flush_lsn, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) \
                 FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ),
        )
        .unwrap();
    let (lsn, retained) = s.split_once('|').unwrap_or_else(|| panic!("slot {slot}: {s:?}"));
    (Lsn::parse(lsn).unwrap(), retained.parse().unwrap())
}

/// restart_lsn of `slot`.
fn restart_lsn(c: &TempCluster, slot: &str) -> Lsn {
    let q = format!("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'");
    Lsn::parse(&c.psql("postgres", &q).unwrap()).unwrap()
}

/// What the walsender streaming `slot` has sent (its sentPtr: the walEnd of its keepalives), if one runs.
fn sent_lsn(c: &TempCluster, slot: &str) -> Option<Lsn> {
    let q = format!(
        "SELECT r.sent_lsn FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid \
         WHERE s.slot_name = '{slot}'"
    );
    Lsn::parse(&c.psql("postgres", &q).unwrap()).ok()
}

fn current_lsn(c: &TempCluster) -> Lsn {
    Lsn::parse(&c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap()).unwrap()
}

/// Polls `next()` for `d`: nothing may arrive (the database of the slot is quiet).
async fn expect_nothing<P: Decoding>(s: &mut ChangeStream<P>, d: Duration) {
    if let Ok(r) = tokio::time::timeout(d, s.next()).await {
        match r {
            Ok(Some(p)) => panic!("unexpected payload: {}", String::from_utf8_lossy(p.bytes())),
            other => panic!("the stream ended: {:?}", other.map(|_| ())),
        }
    }
}

/// Keeps polling `s` (nothing may arrive) until `done()`; fails after [`PATIENCE`] with `what()`.
async fn wait_quiet<P: Decoding>(s: &mut ChangeStream<P>, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "after {PATIENCE:?}: {}", what());
        expect_nothing(s, Duration::from_millis(100)).await;
    }
}

/// Reads up to the next commit, acknowledges it and returns its LSN.
async fn read_and_ack_one_transaction<P: Decoding>(s: &mut ChangeStream<P>) -> Lsn {
    loop {
        let mut p = tokio::time::timeout(PATIENCE, s.next()).await.unwrap().unwrap().unwrap();
        let mut commit = false;
        for e in p.events().unwrap() {
            commit |= matches!(e.unwrap(), Event::Commit(_));
        }
        if commit {
            p.ack();
            return p.lsn();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_slot_advances_and_lets_go_of_wal_while_another_database_writes() {
    let c = Arc::new(TempCluster::start(ClusterOptions::default()).expect("start cluster"));
    with_decoding!(Plugin::of(&c), |p| idle_slot_lets_go(c, p).await)
}

async fn idle_slot_lets_go<P: Decoding>(c: Arc<TempCluster>, p: P) {
    let t0 = Instant::now();
    c.psql("postgres", "CREATE TABLE t (id int PRIMARY KEY)").unwrap();
    c.psql("other", "CREATE TABLE busy (id bigserial PRIMARY KEY, v text)").unwrap();

    let events = Arc::new(Mutex::new(Vec::<StreamEvent>::new()));
    let ev = events.clone();
    let conninfo = c.conninfo(c.superuser(), "postgres");
    let cfg = ChangeStreamConfig::with_plugin(&conninfo, "idle", p.clone())
        .unwrap()
        .create_slot(true)
        .on_event(move |e| ev.lock().unwrap().push(e.clone()));
    let mut s = ChangeStream::connect(cfg).await.unwrap();
    // the controls: a slot nobody reads, and one read with the idle advance off
    c.psql("postgres", &format!("SELECT pg_create_logical_replication_slot('unread', '{}')", p.name())).unwrap();
    let mut off = ChangeStreamConfig::with_plugin(&conninfo, "no_idle_advance", p).unwrap().create_slot(true);
    off.stream.idle_advance = false;
    let mut off = ChangeStream::connect(off).await.unwrap();

    // One transaction of this database, stored and acknowledged by the application.
    c.psql("postgres", "INSERT INTO t VALUES (1)").unwrap();
    let acked = read_and_ack_one_transaction(&mut s).await;
    assert_eq!(read_and_ack_one_transaction(&mut off).await, acked);
    let (start, _) = slot(&c, "idle");

    // Rounds of MB of writes in database `other` only, each ended by a checkpoint (as the server makes on its
    // own): with it comes the running-transactions record that lets a slot's restart_lsn move once the slot is
    // confirmed past it.
    let rounds = 8;
    let mut retained_after = Vec::new();
    let first = current_lsn(&c);
    for round in 1..=rounds {
        let before = current_lsn(&c);
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || {
            c2.psql("other", "INSERT INTO busy (v) SELECT repeat('x', 500) FROM generate_series(1, 5000)").unwrap();
            c2.psql("other", "CHECKPOINT").unwrap();
        })
        .await
        .unwrap();
        let written = current_lsn(&c);

        // The walsender decodes past the round's writes (nothing of them is for this database) and says so in
        // keepalives, while everything delivered is acknowledged: a status update confirms that walEnd.
        wait_quiet(
            &mut s,
            || sent_lsn(&c, "idle").is_some_and(|l| l >= written),
            || format!("round {round}: the walsender never sent past {written} ({:?})", sent_lsn(&c, "idle")),
        )
        .await;
        wait_quiet(
            &mut s,
            || slot(&c, "idle").0 >= written,
            || {
                format!(
                    "round {round}: confirmed_flush_lsn {} never reached {written}, the walEnd the walsender sent \
                     while nothing was unacknowledged (acknowledged: {acked}); the idle advance is broken",
                    slot(&c, "idle").0
                )
            },
        )
        .await;
        // ... and the slot lets go of the WAL written before this round (its restart_lsn moves at the next
        // running-transactions record it is confirmed past: a checkpoint makes one).
        let mut last_checkpoint = Instant::now();
        wait_quiet(
            &mut s,
            || {
                if restart_lsn(&c, "idle") > before {
                    return true;
                }
                if last_checkpoint.elapsed() > Duration::from_secs(1) {
                    c.psql("other", "CHECKPOINT").unwrap();
                    last_checkpoint = Instant::now();
                }
                false
            },
            || format!("round {round}: restart_lsn {} still at or before {before}", restart_lsn(&c, "idle")),
        )
        .await;
        retained_after.push(slot(&c, "idle").1);

        if round == rounds / 2 {
            // A reconnect in the middle, once the idle advance has moved the slot past the acknowledged commit:
            // the stream resumes, and the slot it advanced itself is not "ahead" of the application.
            c.psql(
                "postgres",
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'idle'",
            )
            .unwrap();
        }
    }
    let written = (current_lsn(&c).0 - first.0) as f64;
    let (confirmed, _) = slot(&c, "idle");
    let (unread_confirmed, unread) = slot(&c, "unread");
    let (off_confirmed, off_retained) = slot(&c, "no_idle_advance");
    eprintln!(
        "idle_slot: {:.1} MB written in database other in {rounds} rounds; slot idle: confirmed_flush {start} -> \
         {confirmed}, retained WAL after each round {:?} MB; unread slot retains {:.1} MB (confirmed \
         {unread_confirmed}); slot read with idle advance off retains {:.1} MB (confirmed {off_confirmed}); {:.1} s",
        written / MB,
        retained_after.iter().map(|r| (r / MB * 10.0).round() / 10.0).collect::<Vec<_>>(),
        unread / MB,
        off_retained / MB,
        t0.elapsed().as_secs_f64()
    );
    // the controls retain everything written since before the first round, and the one read without the idle
    // advance confirms only what the application acknowledged
    assert!(unread >= written && off_retained >= written, "the controls must retain everything");
    assert_eq!(off_confirmed, acked, "without the idle advance only the acknowledgement is confirmed");
    let ev = events.lock().unwrap().clone();
    assert!(ev.iter().any(|e| matches!(e, StreamEvent::Disconnected { .. })), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, StreamEvent::SlotAhead { .. })), "{ev:?}");
    s.stop().await.unwrap();
    off.stop().await.unwrap();
}

/// What `next()` delivered so far, each payload acknowledged when `ack`: inserted ids, whether a heartbeat message
/// reached the application, the last commit LSN.
#[derive(Debug, Default)]
struct Drained {
    ids: Vec<i64>,
    beat: bool,
    last: Option<Lsn>,
}

/// Reads `s` (acknowledging each payload when `ack`) into `d` until `done(d)`; fails after [`PATIENCE`].
async fn drain_until<P: Decoding>(
    s: &mut ChangeStream<P>,
    ack: bool,
    d: &mut Drained,
    mut done: impl FnMut(&Drained) -> bool,
    what: impl Fn() -> String,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done(d) {
        assert!(Instant::now() < deadline, "after {PATIENCE:?}: {} ({d:?})", what());
        let Ok(r) = tokio::time::timeout(Duration::from_millis(100), s.next()).await else { continue };
        let mut p = r.unwrap().expect("stream open");
        let lsn = p.lsn();
        for e in p.events().unwrap() {
            match e.unwrap() {
                Event::Insert(row) => d.ids.push(row.column("id").and_then(|c| c.value.as_i64()).unwrap()),
                Event::Message(m) => d.beat |= m.prefix == pgrepl::changes::HEARTBEAT_PREFIX,
                Event::Commit(_) => d.last = Some(lsn),
                _ => {}
            }
        }
        if ack {
            p.ack();
        }
    }
}

/// (write_lsn, flush_lsn, whether it was sent after `since`) of the latest status update from the client
/// streaming `slot`.
fn reported(c: &TempCluster, slot: &str, since: &str) -> Option<(Lsn, Lsn, bool)> {
    let q = format!(
        "SELECT r.write_lsn, r.flush_lsn, r.reply_time > '{since}' FROM pg_stat_replication r \
         JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = '{slot}'"
    );
    let row = c.psql("postgres", &q).unwrap();
    let mut f = row.split('|');
    Some((Lsn::parse(f.next()?).ok()?, Lsn::parse(f.next()?).ok()?, f.next()? == "t"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_move_a_quiet_slot_without_reaching_the_application() {
    let c = TempCluster::start(ClusterOptions::default()).expect("start cluster");
    with_decoding!(Plugin::of(&c), |p| heartbeats(&c, p).await)
}

async fn heartbeats<P: Decoding>(c: &TempCluster, p: P) {
    c.psql("postgres", "CREATE TABLE t (id int PRIMARY KEY)").unwrap();
    let failures = Arc::new(Mutex::new(Vec::<StreamEvent>::new()));
    let f2 = failures.clone();
    let mut cfg = ChangeStreamConfig::with_plugin(&c.conninfo(c.superuser(), "postgres"), "beat", p)
        .unwrap()
        .create_slot(true)
        .heartbeat(Duration::from_millis(200))
        .on_event(move |e| {
            if matches!(e, StreamEvent::HeartbeatFailed { .. }) {
                f2.lock().unwrap().push(e.clone())
            }
        });
    // only the heartbeats can move the slot
    cfg.stream.idle_advance = false;
    cfg.stream.status_interval = Duration::from_millis(200);
    let mut s = ChangeStream::connect(cfg).await.unwrap();
    let (start, _) = slot(c, "beat");

    // a quiet database: heartbeats only, none delivered, and the slot moves
    let mut d = Drained::default();
    drain_until(&mut s, true, &mut d, |_| slot(c, "beat").0 > start, || format!("the slot stayed at {start}")).await;
    assert!(d.ids.is_empty() && !d.beat, "nothing to deliver: {d:?}");

    // a transaction delivered and not acknowledged: the heartbeats after it must not confirm past it
    c.psql("postgres", "INSERT INTO t VALUES (1)").unwrap();
    let mut d = Drained::default();
    drain_until(&mut s, false, &mut d, |d| d.last.is_some(), || "the transaction never arrived".into()).await;
    assert_eq!((&d.ids, d.beat), (&vec![1], false));
    let commit = d.last.unwrap();
    // A heartbeat after it (one written here is the same as the heartbeat task's). Wait until the client reports
    // having received it (its status updates' write position), give the stream one more read (the heartbeat is
    // handled inside next(), never delivered), then for a status update sent after that: the flush position it
    // reports is what the client made of the heartbeat.
    let beat = c
        .psql(
            "postgres",
            &format!("SELECT pg_logical_emit_message(false, '{}', '')", pgrepl::changes::HEARTBEAT_PREFIX),
        )
        .unwrap();
    let beat = Lsn::parse(&beat).unwrap();
    assert!(beat > commit);
    let epoch = "-infinity";
    drain_until(
        &mut s,
        false,
        &mut d,
        |_| reported(c, "beat", epoch).is_some_and(|(write, _, _)| write >= beat),
        || format!("no status update reported receiving the heartbeat at {beat}: {:?}", reported(c, "beat", epoch)),
    )
    .await;
    expect_nothing(&mut s, Duration::from_millis(100)).await;
    let since = c.psql("postgres", "SELECT clock_timestamp()").unwrap();
    drain_until(
        &mut s,
        false,
        &mut d,
        |_| reported(c, "beat", &since).is_some_and(|(_, _, after)| after),
        || format!("no status update after {since}"),
    )
    .await;
    assert_eq!((&d.ids, d.beat), (&vec![1], false), "the heartbeat reached the application");
    let (_, flush, _) = reported(c, "beat", &since).unwrap();
    let (held, _) = slot(c, "beat");
    assert!(flush < commit && held < commit, "the slot ({held}, reported {flush}) passed the unacknowledged {commit}");

    // once it is acknowledged, the heartbeats move the slot on
    s.ack(commit);
    let mut d = Drained::default();
    drain_until(
        &mut s,
        true,
        &mut d,
        |_| slot(c, "beat").0 > commit,
        || format!("heartbeats after the acknowledged commit {commit} did not move the slot"),
    )
    .await;
    assert!(d.ids.is_empty() && !d.beat, "{d:?}");
    assert!(failures.lock().unwrap().is_empty(), "{:?}", failures.lock().unwrap());
    s.stop().await.unwrap();
}
