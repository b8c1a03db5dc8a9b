//! Idle slots (issue 5, item 5): a [`ChangeStream`] with default settings on a database that sees no writes,
//! while another database writes many MB, keeps its slot's `confirmed_flush_lsn` moving and the WAL the slot
//! retains (`pg_current_wal_lsn() - restart_lsn`) bounded, through a reconnect, with no false `SlotAhead`. Two
//! control slots show what happens otherwise: one nobody reads, one read with the idle advance turned off; both
//! retain everything written.
#![cfg(feature = "cluster")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgrepl::changes::{ChangeStream, ChangeStreamConfig, StreamEvent};
use pgrepl::cluster::{ClusterOptions, TempCluster};
use pgrepl::wal2json::Event;
use pgrepl::Lsn;

const MB: f64 = 1024.0 * 1024.0;

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

fn current_lsn(c: &TempCluster) -> Lsn {
    Lsn::parse(&c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap()).unwrap()
}

/// Polls `next()` for `d`: nothing may arrive (the database of the slot is quiet).
async fn expect_nothing(s: &mut ChangeStream, d: Duration) {
    if let Ok(r) = tokio::time::timeout(d, s.next()).await {
        match r {
            Ok(Some(p)) => panic!("unexpected payload: {}", String::from_utf8_lossy(p.bytes())),
            other => panic!("the stream ended: {:?}", other.map(|_| ())),
        }
    }
}

/// Reads up to the next commit, acknowledges it and returns its LSN.
async fn read_and_ack_one_transaction(s: &mut ChangeStream) -> Lsn {
    loop {
        let mut p = tokio::time::timeout(Duration::from_secs(30), s.next()).await.unwrap().unwrap().unwrap();
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
async fn an_idle_slot_advances_and_retains_bounded_wal_while_another_database_writes() {
    let t0 = Instant::now();
    let c = Arc::new(TempCluster::start(ClusterOptions::default()).expect("start cluster"));
    c.psql("postgres", "CREATE TABLE t (id int PRIMARY KEY)").unwrap();
    c.psql("other", "CREATE TABLE busy (id bigserial PRIMARY KEY, v text)").unwrap();

    let events = Arc::new(Mutex::new(Vec::<StreamEvent>::new()));
    let ev = events.clone();
    let conninfo = c.conninfo(c.superuser(), "postgres");
    let cfg = ChangeStreamConfig::new(&conninfo, "idle")
        .unwrap()
        .create_slot(true)
        .on_event(move |e| ev.lock().unwrap().push(e.clone()));
    let mut s = ChangeStream::connect(cfg).await.unwrap();
    // the controls: a slot nobody reads, and one read with the idle advance off
    c.psql("postgres", "SELECT pg_create_logical_replication_slot('unread', 'wal2json')").unwrap();
    let mut off = ChangeStreamConfig::new(&conninfo, "no_idle_advance").unwrap().create_slot(true);
    off.stream.idle_advance = false;
    let mut off = ChangeStream::connect(off).await.unwrap();

    // One transaction of this database, stored and acknowledged by the application.
    c.psql("postgres", "INSERT INTO t VALUES (1)").unwrap();
    let acked = read_and_ack_one_transaction(&mut s).await;
    assert_eq!(read_and_ack_one_transaction(&mut off).await, acked);
    let (start, _) = slot(&c, "idle");

    // Many MB of writes in database `other` only. Now and then a checkpoint, as the server makes on its own
    // (checkpoint_timeout, max_wal_size): with it comes the running-transactions record that lets a slot's
    // restart_lsn move once the slot is confirmed past it (the bgwriter logs one every 15 s as well).
    let rounds = 24;
    let mut max_retained: f64 = 0.0;
    let mut advances = 0;
    let mut last_confirmed = start;
    let first = current_lsn(&c);
    for round in 1..=rounds {
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || {
            c2.psql("other", "INSERT INTO busy (v) SELECT repeat('x', 500) FROM generate_series(1, 2000)").unwrap();
            if round % 4 == 0 {
                c2.psql("other", "CHECKPOINT").unwrap();
            }
        })
        .await
        .unwrap();
        if round == rounds / 2 {
            // A reconnect in the middle, once the idle advance has moved the slot past the acknowledged commit: the
            // stream resumes, and the slot it advanced itself is not "ahead" of the application.
            let deadline = Instant::now() + Duration::from_secs(30);
            while slot(&c, "idle").0 <= acked {
                assert!(Instant::now() < deadline, "no idle advance past the acknowledged {acked}");
                expect_nothing(&mut s, Duration::from_millis(100)).await;
            }
            c.psql(
                "postgres",
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'idle'",
            )
            .unwrap();
        }
        expect_nothing(&mut s, Duration::from_millis(400)).await;
        let (confirmed, retained) = slot(&c, "idle");
        if confirmed > last_confirmed {
            advances += 1;
            last_confirmed = confirmed;
        }
        max_retained = max_retained.max(retained);
    }
    let written = (current_lsn(&c).0 - first.0) as f64;

    // The slot catches up with everything written, and after the next running-transactions record its
    // restart_lsn follows.
    let end = current_lsn(&c);
    let deadline = Instant::now() + Duration::from_secs(30);
    while slot(&c, "idle").0 < end {
        assert!(Instant::now() < deadline, "confirmed_flush_lsn stuck at {} (WAL at {end})", slot(&c, "idle").0);
        expect_nothing(&mut s, Duration::from_millis(100)).await;
    }
    c.psql("other", "CHECKPOINT").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let final_retained = loop {
        let (_, retained) = slot(&c, "idle");
        if retained < 2.0 * MB {
            break retained;
        }
        assert!(Instant::now() < deadline, "the idle slot still retains {:.1} MB", retained / MB);
        expect_nothing(&mut s, Duration::from_millis(100)).await;
    };
    let (unread_confirmed, unread) = slot(&c, "unread");
    let (off_confirmed, off_retained) = slot(&c, "no_idle_advance");
    eprintln!(
        "idle_slot: {:.1} MB written in database other; slot idle: confirmed_flush {start} -> {} ({advances} advances \
         seen in {rounds} samples), retained WAL at most {:.1} MB, finally {:.2} MB; unread slot retains {:.1} MB \
         (confirmed {unread_confirmed}); slot read with idle advance off retains {:.1} MB (confirmed \
         {off_confirmed}); {:.1} s",
        written / MB,
        slot(&c, "idle").0,
        max_retained / MB,
        final_retained / MB,
        unread / MB,
        off_retained / MB,
        t0.elapsed().as_secs_f64()
    );
    assert!(written > 20.0 * MB, "not many MB written: {:.1} MB", written / MB);
    // status updates go out every wal_sender_timeout / 2 (2.5 s here): the slot follows in steps
    assert!(advances >= 3, "confirmed_flush_lsn advanced only {advances} times in {rounds} samples");
    // bounded by how much is written between status updates and running-transactions records, not by the total
    assert!(
        max_retained < written / 2.0,
        "the idle slot retained up to {:.1} MB of {:.1} MB",
        max_retained / MB,
        written / MB
    );
    assert!(unread > written * 0.9 && off_retained > written * 0.9, "the controls must retain everything");
    assert_eq!(off_confirmed, acked, "without the idle advance only the acknowledgement is confirmed");
    let ev = events.lock().unwrap().clone();
    assert!(ev.iter().any(|e| matches!(e, StreamEvent::Disconnected { .. })), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, StreamEvent::SlotAhead { .. })), "{ev:?}");
    s.stop().await.unwrap();
    off.stop().await.unwrap();
}

/// What `next()` delivers within `d`, each payload acknowledged when `ack`: (inserted ids, whether a heartbeat
/// message was seen, the last commit LSN).
async fn drain(s: &mut ChangeStream, d: Duration, ack: bool) -> (Vec<i64>, bool, Lsn) {
    let deadline = tokio::time::Instant::now() + d;
    let (mut ids, mut beat, mut last) = (vec![], false, Lsn::INVALID);
    while let Ok(r) = tokio::time::timeout_at(deadline, s.next()).await {
        let mut p = r.unwrap().expect("stream open");
        let lsn = p.lsn();
        for e in p.events().unwrap() {
            match e.unwrap() {
                Event::Insert(row) => ids.push(row.column("id").and_then(|c| c.value.as_i64()).unwrap()),
                Event::Message(m) => beat |= m.prefix == pgrepl::changes::HEARTBEAT_PREFIX,
                Event::Commit(_) => last = lsn,
                _ => {}
            }
        }
        if ack {
            p.ack();
        }
    }
    (ids, beat, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_move_a_quiet_slot_without_reaching_the_application() {
    let c = TempCluster::start(ClusterOptions::default()).expect("start cluster");
    c.psql("postgres", "CREATE TABLE t (id int PRIMARY KEY)").unwrap();
    let failures = Arc::new(Mutex::new(Vec::<StreamEvent>::new()));
    let f2 = failures.clone();
    let mut cfg = ChangeStreamConfig::new(&c.conninfo(c.superuser(), "postgres"), "beat")
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
    let (start, _) = slot(&c, "beat");

    // a quiet database: heartbeats only, none delivered, and the slot moves
    let (ids, beat, _) = drain(&mut s, Duration::from_secs(2), true).await;
    assert!(ids.is_empty() && !beat, "nothing to deliver: {ids:?} {beat}");
    let (moved, _) = slot(&c, "beat");
    assert!(moved > start, "heartbeats did not move the slot from {start}");

    // a transaction delivered and not acknowledged: the heartbeats after it must not confirm past it
    c.psql("postgres", "INSERT INTO t VALUES (1)").unwrap();
    let (ids, beat, commit) = drain(&mut s, Duration::from_secs(2), false).await;
    assert_eq!((ids, beat), (vec![1], false));
    let (held, _) = slot(&c, "beat");
    assert!(held < commit, "the slot ({held}) passed the unacknowledged commit {commit}");

    // once it is acknowledged, the heartbeats move the slot on
    s.ack(commit);
    let (ids, beat, _) = drain(&mut s, Duration::from_secs(2), true).await;
    assert!(ids.is_empty() && !beat);
    let (after, _) = slot(&c, "beat");
    assert!(after > commit, "heartbeats after the acknowledged commit {commit} did not move the slot ({after})");
    assert!(failures.lock().unwrap().is_empty(), "{:?}", failures.lock().unwrap());
    s.stop().await.unwrap();
}
