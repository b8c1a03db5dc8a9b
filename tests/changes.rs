//! The typed-event ChangeStream against a real server: decoded inserts, acknowledgement of commits, reconnect
//! after the walsender is terminated with each transaction delivered once, slot-ahead reporting (and no false
//! report after an idle advance when the confirmed position is stored), and an invalidated slot as a fatal error
//! (PostgreSQL 13+; 12 cannot invalidate a slot). The same tests on either plugin of `tests/common/plugins.rs`
//! (wal2json on Debian's 15, test_decoding elsewhere; `ChangeStream<P>`), but the one about wal2json format 1,
//! which runs where wal2json is.
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
use std::time::Duration;

use pgrepl::changes::{ChangeStream, ChangeStreamConfig, StreamEvent};
use pgrepl::plugin::Decoding;
use pgrepl::wal2json::{Event, Value};
use pgrepl::{ErrorKind, Lsn};
use pgrepl_testkit::{ClusterOptions, TempCluster};

#[path = "common/plugins.rs"]
mod plugins;
use plugins::{with_decoding, Plugin};

fn cfg<P: Decoding>(c: &TempCluster, slot: &str, plugin: P) -> ChangeStreamConfig<P> {
    ChangeStreamConfig::with_plugin(&c.conninfo(c.superuser(), "postgres"), slot, plugin).unwrap()
}

fn confirmed(c: &TempCluster, slot: &str) -> Lsn {
    let s = c
        .psql("postgres", &format!("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name='{slot}'"))
        .unwrap();
    Lsn::parse(s.trim()).unwrap()
}

/// Reads transactions (id values of inserts into `t`) until `n` commits, acknowledging each commit.
async fn read_txns<P: Decoding>(s: &mut ChangeStream<P>, n: usize) -> Vec<Vec<i64>> {
    let mut txns = vec![];
    let mut cur = vec![];
    while txns.len() < n {
        let mut p =
            tokio::time::timeout(Duration::from_secs(60), s.next()).await.expect("timely").expect("ok").expect("open");
        let mut commit = false;
        for ev in p.events().unwrap() {
            match ev.unwrap() {
                Event::Insert(row) => {
                    assert_eq!(row.table, "t");
                    let id = row.columns.iter().find(|c| c.name == "id").unwrap();
                    assert!(matches!(id.value, Value::Number(_)), "{:?}", id.value);
                    cur.push(id.value.as_i64().unwrap());
                }
                Event::Commit(_) => commit = true,
                _ => {}
            }
        }
        if commit {
            txns.push(std::mem::take(&mut cur));
            p.ack();
        }
    }
    txns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_inserts_and_acknowledged_commits() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    with_decoding!(Plugin::of(&c), |p| typed_inserts(&c, p).await)
}

async fn typed_inserts<P: Decoding>(c: &TempCluster, p: P) {
    c.psql("postgres", "CREATE TABLE t(id bigint PRIMARY KEY, name text)").unwrap();
    // The idle advance off: with it, a keepalive whose walEnd is past the last commit (any WAL written after
    // it, a checkpoint's or autovacuum's, at whatever moment the machine gets to it) is confirmed too, and the
    // slot would be exactly the acknowledgement only when no such WAL came in time.
    let mut config = cfg(c, "typed", p).create_slot(true);
    config.stream.idle_advance = false;
    let mut s = ChangeStream::connect(config).await.unwrap();
    c.psql("postgres", "INSERT INTO t VALUES (1, 'a'), (2, 'b'); INSERT INTO t VALUES (3, E'c\\n\"q\"')").unwrap();
    let txns = read_txns(&mut s, 2).await;
    assert_eq!(txns, vec![vec![1, 2], vec![3]]);
    let acked = s.acked();
    s.stop().await.unwrap();
    assert_eq!(confirmed(c, "typed"), acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_walsender_is_terminated_and_delivers_each_transaction_once() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    with_decoding!(Plugin::of(&c), |p| reconnects(&c, p).await)
}

async fn reconnects<P: Decoding>(c: &TempCluster, p: P) {
    c.psql("postgres", "CREATE TABLE t(id bigint PRIMARY KEY)").unwrap();
    let events = Arc::new(Mutex::new(Vec::<StreamEvent>::new()));
    let ev2 = events.clone();
    let config = cfg(c, "recon", p).create_slot(true).on_event(move |e| ev2.lock().unwrap().push(e.clone()));
    let mut s = ChangeStream::connect(config).await.unwrap();
    let mut all = vec![];
    for round in 0..5i64 {
        for k in 0..10i64 {
            let id = round * 100 + k;
            c.psql("postgres", &format!("INSERT INTO t VALUES ({id}), ({})", id + 50)).unwrap();
        }
        all.extend(read_txns(&mut s, 10).await);
        c.psql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name <> 'x'")
            .unwrap();
    }
    // one more after the last termination
    c.psql("postgres", "INSERT INTO t VALUES (9999), (9998)").unwrap();
    all.extend(read_txns(&mut s, 1).await);
    let mut expected: Vec<Vec<i64>> =
        (0..5i64).flat_map(|r| (0..10i64).map(move |k| vec![r * 100 + k, r * 100 + k + 50])).collect();
    expected.push(vec![9999, 9998]);
    assert_eq!(all, expected, "every transaction once, in commit order");
    let ev = events.lock().unwrap().clone();
    let disconnects = ev.iter().filter(|e| matches!(e, StreamEvent::Disconnected { .. })).count();
    assert!(disconnects >= 4, "{ev:?}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_ahead_of_the_stored_position_is_reported() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    with_decoding!(Plugin::of(&c), |p| slot_ahead(&c, p).await)
}

async fn slot_ahead<P: Decoding>(c: &TempCluster, p: P) {
    c.psql("postgres", "CREATE TABLE t(id bigint PRIMARY KEY)").unwrap();
    let mut s = ChangeStream::connect(cfg(c, "ahead", p.clone()).create_slot(true)).await.unwrap();
    let stored = s.acked();
    c.psql("postgres", "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)").unwrap();
    let first = read_txns(&mut s, 1).await;
    assert_eq!(first, vec![vec![1]]);
    s.stop().await.unwrap();
    let slot = confirmed(c, "ahead");
    // An application whose store lost the acknowledgement resumes from an older position.
    let older = Lsn(slot.0 - 1);
    assert!(stored < slot);
    let events = Arc::new(Mutex::new(Vec::<StreamEvent>::new()));
    let ev2 = events.clone();
    let config = cfg(c, "ahead", p).start(older).on_event(move |e| ev2.lock().unwrap().push(e.clone()));
    let mut s = ChangeStream::connect(config).await.unwrap();
    assert!(
        events.lock().unwrap().iter().any(
            |e| matches!(e, StreamEvent::SlotAhead { stored, confirmed } if *stored == older && *confirmed == slot)
        ),
        "{:?}",
        events.lock().unwrap()
    );
    // streaming continues from the slot: transaction 2
    assert_eq!(read_txns(&mut s, 1).await, vec![vec![2]]);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_confirmed_position_tells_an_idle_advance_from_a_loss() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    with_decoding!(Plugin::of(&c), |p| idle_advance_or_loss(&c, p).await)
}

async fn idle_advance_or_loss<P: Decoding>(c: &TempCluster, p: P) {
    c.psql("postgres", "CREATE TABLE t(id bigint PRIMARY KEY)").unwrap();
    c.psql("other", "CREATE TABLE busy(v text)").unwrap();
    let quick = |cfg: ChangeStreamConfig<P>| {
        let mut cfg = cfg;
        cfg.stream.status_interval = Duration::from_millis(200);
        cfg
    };
    let mut s = ChangeStream::connect(quick(cfg(c, "quiet", p.clone()).create_slot(true))).await.unwrap();
    c.psql("postgres", "INSERT INTO t VALUES (1)").unwrap();
    assert_eq!(read_txns(&mut s, 1).await, vec![vec![1]]);
    let acked = s.acked();
    // Another database writes; this one stays quiet: the idle advance confirms the slot past the acknowledged
    // commit, with nothing delivered.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while confirmed(c, "quiet") <= acked {
        assert!(std::time::Instant::now() < deadline, "no idle advance past {acked}");
        c.psql("other", "INSERT INTO busy SELECT 'x' FROM generate_series(1, 100)").unwrap();
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), s.next()).await {
            panic!("nothing may be delivered: {:?}", r.map(|p| p.map(|p| p.lsn())));
        }
    }
    assert!(s.confirmed() > acked);
    assert_eq!(s.acked(), acked);
    let stored_confirmed = s.stop().await.unwrap();
    assert_eq!(stored_confirmed, confirmed(c, "quiet"), "stop() returns what the slot confirmed");

    let events = Arc::new(Mutex::new(Vec::<StreamEvent>::new()));
    let start_with = |confirmed: Lsn| {
        let ev2 = events.clone();
        let config = cfg(c, "quiet", p.clone()).start(acked).confirmed(confirmed);
        quick(config.on_event(move |e| ev2.lock().unwrap().push(e.clone())))
    };
    // Both positions given back: the slot is not ahead of the application.
    let s = ChangeStream::connect(start_with(stored_confirmed)).await.unwrap();
    s.stop().await.unwrap();
    // and the stream, started behind the slot, did not move it back (PostgreSQL 12 takes any flush position a
    // status update reports as the slot's; the stream starts at the slot's position: docs/server-matrix.md)
    assert!(confirmed(c, "quiet") >= stored_confirmed, "the slot went back from {stored_confirmed}");
    let ev = std::mem::take(&mut *events.lock().unwrap());
    assert!(ev.iter().any(|e| matches!(e, StreamEvent::Started { .. })), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, StreamEvent::SlotAhead { .. })), "{ev:?}");
    // Only the acknowledged commit given back: the slot is ahead of it, and that is reported.
    let slot_now = confirmed(c, "quiet");
    let s = ChangeStream::connect(start_with(Lsn::INVALID)).await.unwrap();
    s.stop().await.unwrap();
    assert!(confirmed(c, "quiet") >= slot_now, "the slot went back from {slot_now}");
    let ev = events.lock().unwrap().clone();
    assert!(
        ev.iter().any(
            |e| matches!(e, StreamEvent::SlotAhead { stored, confirmed } if *stored == acked && *confirmed == slot_now)
        ),
        "{ev:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_is_fatal() {
    if pgrepl_testkit::server_version(&pgrepl_testkit::default_bin_dir().unwrap()).unwrap().0 < 13 {
        // PostgreSQL 12 never invalidates a slot: no max_slot_wal_keep_size, no wal_status; a missing slot is
        // still fatal
        let c = TempCluster::start(ClusterOptions::default()).unwrap();
        let e = c.psql("postgres", "SHOW max_slot_wal_keep_size").unwrap_err();
        assert!(e.to_string().contains("unrecognized configuration parameter"), "{e}");
        with_decoding!(Plugin::of(&c), |p| {
            let err = ChangeStream::connect(cfg(&c, "missing", p)).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::SlotMissing, "{err}");
            assert!(!err.is_retryable());
        });
        return;
    }
    let c = TempCluster::start(ClusterOptions {
        extra_conf: vec![
            "max_slot_wal_keep_size = 2MB".into(),
            "max_wal_size = 32MB".into(),
            "min_wal_size = 2MB".into(),
        ],
        ..Default::default()
    })
    .unwrap();
    with_decoding!(Plugin::of(&c), |p| invalidated(&c, p).await)
}

async fn invalidated<P: Decoding>(c: &TempCluster, p: P) {
    c.psql(
        "postgres",
        &format!("SELECT pg_create_logical_replication_slot('lost', '{}'); CREATE TABLE pad(x text)", p.name()),
    )
    .unwrap();
    for _ in 0..8 {
        c.psql("postgres", "INSERT INTO pad SELECT repeat('x', 1000) FROM generate_series(1, 2000); SELECT pg_switch_wal(); CHECKPOINT;").unwrap();
    }
    let status = c.psql("postgres", "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost'").unwrap();
    assert_eq!(status, "lost", "the test setup must invalidate the slot");
    let err = ChangeStream::connect(cfg(c, "lost", p.clone())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SlotInvalid, "{err}");
    assert!(!err.is_retryable());
    // the server's own refusal, to a START_REPLICATION sent without looking (as `pgrepl recv` does): 55000
    let conninfo = format!("{} replication=database", c.conninfo(c.superuser(), "postgres"));
    let conf = pgrepl::config::Config::parse(&conninfo).unwrap();
    let client = pgrepl::client::Client::connect(&conf).await.unwrap();
    let Err(err) = client.start_replication("lost", &p, Lsn(0), &[], Default::default()).await else {
        panic!("an invalidated slot started streaming")
    };
    assert_eq!(err.kind(), ErrorKind::SlotInvalid, "{err}");
    assert_eq!(err.code(), Some("55000"), "{err}");
    assert!(!err.is_retryable());
    // a missing slot is not retried either
    let err = ChangeStream::connect(cfg(c, "missing", p)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SlotMissing, "{err}");
    assert!(!err.is_retryable());
}

/// wal2json format 1 sends a whole transaction at its first change's LSN. A transaction that began before another
/// but commits after it has the lower first-change LSN: acknowledging first-change LSNs took it for a replay on
/// the next start and dropped it. The acknowledged position is the commit's end (`nextlsn`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_1_a_transaction_that_began_earlier_and_committed_later_is_not_taken_for_a_replay() {
    if !pgrepl_testkit::wal2json_suite() {
        return;
    }
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    let cfg = |c: &TempCluster, slot: &str| cfg(c, slot, pgrepl::plugin::Wal2json);
    c.psql("postgres", "CREATE TABLE t(id bigint PRIMARY KEY)").unwrap();
    let v1 = |cfg: ChangeStreamConfig| cfg.option("format-version", Some("1"));
    let s = ChangeStream::connect(v1(cfg(&c, "v1order")).create_slot(true)).await.unwrap();
    s.stop().await.unwrap();
    // T_a's first change, then T_b whole, then T_a's commit
    let mut plain = pgrepl::config::Config::parse(&c.conninfo(c.superuser(), "postgres")).unwrap();
    plain.replication = None;
    let mut open = pgrepl::client::Client::connect(&plain).await.unwrap();
    open.simple_query("BEGIN; INSERT INTO t VALUES (1)").await.unwrap();
    c.psql("postgres", "INSERT INTO t VALUES (2)").unwrap();
    let mut s = ChangeStream::connect(v1(cfg(&c, "v1order"))).await.unwrap();
    assert_eq!(read_txns(&mut s, 1).await, vec![vec![2]]);
    let acked = s.stop().await.unwrap();
    assert_eq!(confirmed(&c, "v1order"), acked);
    open.simple_query("COMMIT").await.unwrap();
    c.psql("postgres", "INSERT INTO t VALUES (3)").unwrap();
    let mut s = ChangeStream::connect(v1(cfg(&c, "v1order")).start(acked)).await.unwrap();
    assert_eq!(read_txns(&mut s, 2).await, vec![vec![1], vec![3]], "T_a (1) delivered after a restart from T_b");
    s.stop().await.unwrap();
}

/// A slot name the server can never accept is refused by the settings, not reported later as a missing slot.
#[test]
fn an_impossible_slot_name_is_refused_by_the_settings() {
    let e = ChangeStreamConfig::new("host=/nonexistent dbname=x", "Bad\"Name").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("invalid replication slot name"), "{e}");
}
