//! Streaming against a real PostgreSQL: full delivery, exact confirmed_flush, a stalled consumer keeps its
//! connection, idle slots advance, the end position never cuts a transaction. On the plugin of
//! `tests/common/plugins.rs`: wal2json (format 2) on Debian's 15, test_decoding on the other majors.
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

use std::time::{Duration, Instant};

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::proto::commands::{CreateSlot, SnapshotAction};
use pgrepl::proto::replication::XLogData;
use pgrepl::stream::{ReplicationStream, StreamConfig};
use pgrepl::Lsn;
use pgrepl_testkit::{ClusterOptions, TempCluster};

#[path = "common/plugins.rs"]
mod plugins;
use plugins::Plugin;

fn cluster(wal_sender_timeout: Duration) -> TempCluster {
    TempCluster::start(ClusterOptions { wal_sender_timeout, ..Default::default() }).expect("start cluster")
}

async fn repl_client(c: &TempCluster, db: &str) -> Client {
    let cfg = Config::parse(&format!("{} replication=database", c.conninfo(c.superuser(), db))).unwrap();
    Client::connect(&cfg).await.expect("connect")
}

async fn create_slot(client: &mut Client, p: Plugin, slot: &str) -> Lsn {
    client
        .create_replication_slot(&CreateSlot {
            slot: slot.into(),
            plugin: p.name().into(),
            temporary: false,
            snapshot: SnapshotAction::NoExport,
            two_phase: false,
        })
        .await
        .expect("create slot")
        .consistent_point
}

fn slot_lsn(c: &TempCluster, slot: &str, column: &str) -> Lsn {
    let s =
        c.psql("postgres", &format!("SELECT {column} FROM pg_replication_slots WHERE slot_name = '{slot}'")).unwrap();
    Lsn::parse(s.trim()).unwrap_or_else(|_| panic!("{column} of {slot}: {s:?}"))
}

async fn next_message(s: &mut ReplicationStream) -> XLogData {
    tokio::time::timeout(Duration::from_secs(30), s.next()).await.expect("timed out").unwrap().expect("stream ended")
}

/// The actions of the messages read up to and including the next commit.
async fn actions_through_commit(s: &mut ReplicationStream, p: Plugin) -> Vec<u8> {
    let mut seen = vec![];
    loop {
        let a = p.action(&next_message(s).await.data);
        seen.push(a);
        if a == b'C' {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_streams_in_full_and_confirmed_flush_is_exactly_the_ack() {
    let c = cluster(Duration::from_secs(10));
    let p = Plugin::of(&c);
    c.psql("postgres", "CREATE TABLE t(id int PRIMARY KEY, v text)").unwrap();
    let mut client = repl_client(&c, "postgres").await;
    create_slot(&mut client, p, "full").await;
    c.psql(
        "postgres",
        "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g;
         UPDATE t SET v = 'u' WHERE id % 10 = 0;
         DELETE FROM t WHERE id % 25 = 0;
         INSERT INTO t VALUES (1000, 'last');",
    )
    .unwrap();
    let cfg = StreamConfig { idle_advance: false, ..Default::default() };
    let mut stream = client.start_replication("full", p.rules(), Lsn::INVALID, &p.options(), cfg).await.unwrap();
    let (mut ins, mut upd, mut del, mut commits) = (0, 0, 0, 0);
    let mut acked = Lsn::INVALID;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ins < 501 || commits < 4 {
        assert!(Instant::now() < deadline, "timed out: {ins} {upd} {del} {commits}");
        let m = next_message(&mut stream).await;
        match p.action(&m.data) {
            b'I' => ins += 1,
            b'U' => upd += 1,
            b'D' => del += 1,
            b'C' => {
                commits += 1;
                // acknowledge the first three transactions only
                if commits <= 3 {
                    stream.ack(m.wal_start);
                    acked = m.wal_start;
                }
            }
            _ => {}
        }
    }
    assert_eq!((ins, upd, del, commits), (501, 50, 20, 4));
    let client = stream.stop().await.unwrap();
    client.close().await.unwrap();
    // the slot confirms exactly what was acknowledged: not the fourth transaction, not a keepalive's walEnd
    assert_eq!(slot_lsn(&c, "full", "confirmed_flush_lsn"), acked);

    // Resuming from the slot replays only the unacknowledged fourth transaction.
    let client = repl_client(&c, "postgres").await;
    let mut stream =
        client.start_replication("full", p.rules(), Lsn::INVALID, &p.options(), StreamConfig::default()).await.unwrap();
    assert_eq!(actions_through_commit(&mut stream, p).await, b"BIC");
    stream.stop().await.unwrap().close().await.unwrap();
}

/// The next message after a stall: the connection must have survived it.
async fn next_after_stall(s: &mut ReplicationStream) -> XLogData {
    tokio::time::timeout(Duration::from_secs(30), s.next())
        .await
        .expect("no timeout")
        .expect("the connection survived the stall")
        .expect("stream open")
}

fn assert_no_replication_timeout(c: &TempCluster) {
    let log = std::fs::read_to_string(c.log_path()).unwrap_or_default();
    assert!(!log.contains("terminating walsender process due to replication timeout"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_keeps_its_connection() {
    // wal_sender_timeout 2 s; the consumer stalls for 5 s with a one-message buffer, so the socket is not read.
    let c = cluster(Duration::from_secs(2));
    let p = Plugin::of(&c);
    c.psql("postgres", "CREATE TABLE s(id int PRIMARY KEY, pad text)").unwrap();
    let mut client = repl_client(&c, "postgres").await;
    create_slot(&mut client, p, "stall").await;
    c.psql("postgres", "INSERT INTO s SELECT g, repeat('x', 2000) FROM generate_series(1, 3000) g").unwrap();
    let cfg = StreamConfig { buffer_messages: 1, ..Default::default() };
    let mut stream = client.start_replication("stall", p.rules(), Lsn::INVALID, &p.options(), cfg).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(p.action(&first.data), b'B');
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut n = 0;
    loop {
        let m = next_after_stall(&mut stream).await;
        if p.action(&m.data) == b'I' {
            n += 1;
        }
        if p.action(&m.data) == b'C' {
            stream.ack(m.wal_start);
            break;
        }
    }
    assert_eq!(n, 3000);
    stream.stop().await.unwrap();
    assert_no_replication_timeout(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stalled_after_a_fast_stretch_keeps_its_connection() {
    // A bulk transaction read at full speed puts the loopback reader into window mode (a fixed receive buffer);
    // then the consumer stalls for 5 s while small transactions stream in. The stall must let go of the fixed
    // buffer (`Coalescer::pause`): left fixed, Linux drops whole segments from the server, acknowledgements
    // included, once the queued small segments' overhead passes the buffer, and the status updates sent during
    // the stall never get through.
    let c = cluster(Duration::from_secs(2));
    let p = Plugin::of(&c);
    c.psql("postgres", "CREATE TABLE bulk(id int PRIMARY KEY, pad text); CREATE TABLE small(id int, pad text)")
        .unwrap();
    let mut client = repl_client(&c, "postgres").await;
    create_slot(&mut client, p, "stall").await;
    c.psql("postgres", "INSERT INTO bulk SELECT g, repeat('x', 100) FROM generate_series(1, 100000) g").unwrap();
    let cfg = StreamConfig { buffer_messages: 256, ..Default::default() };
    let mut stream = client.start_replication("stall", p.rules(), Lsn::INVALID, &p.options(), cfg).await.unwrap();
    let mut bulk = 0;
    while p.action(&next_message(&mut stream).await.data) != b'C' {
        bulk += 1;
    }
    assert_eq!(bulk, 100_001);
    const SMALL: usize = 3_000;
    let c = std::sync::Arc::new(c);
    let writer = {
        let c = c.clone();
        std::thread::spawn(move || {
            let sql = format!(
                "DO $$ BEGIN FOR i IN 1..{SMALL} LOOP INSERT INTO small VALUES (i, repeat('y', 200)); COMMIT; \
                 PERFORM pg_sleep(0.002); END LOOP; END $$"
            );
            c.psql("postgres", &sql)
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut small = 0;
    while small < SMALL {
        if p.action(&next_after_stall(&mut stream).await.data) == b'I' {
            small += 1;
        }
    }
    writer.join().unwrap().unwrap();
    stream.stop().await.unwrap();
    assert_no_replication_timeout(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_slot_advances_while_another_database_writes() {
    let c = cluster(Duration::from_secs(4));
    let p = Plugin::of(&c);
    c.psql("other", "CREATE TABLE busy(id serial PRIMARY KEY, v text)").unwrap();
    let mut client = repl_client(&c, "postgres").await;
    let start = create_slot(&mut client, p, "idle").await;
    let mut stream =
        client.start_replication("idle", p.rules(), Lsn::INVALID, &p.options(), StreamConfig::default()).await.unwrap();
    // writes only in database "other": nothing for this slot
    for _ in 0..10 {
        c.psql("other", "INSERT INTO busy(v) SELECT 'x' FROM generate_series(1, 200)").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(stream.try_next().is_none(), "no change of database postgres expected");
    }
    let written = Lsn::parse(c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap().trim()).unwrap();
    // (a deadline that only a stream that never advances reaches, whatever the machine's speed or load)
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let confirmed = slot_lsn(&c, "idle", "confirmed_flush_lsn");
        if confirmed >= written {
            assert!(confirmed > start);
            break;
        }
        assert!(Instant::now() < deadline, "confirmed_flush stuck at {confirmed} (start {start}, wal {written})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stream.stop().await.unwrap();

    // With idle advance turned off, the slot stays where it was.
    let client = repl_client(&c, "postgres").await;
    let before = slot_lsn(&c, "idle", "confirmed_flush_lsn");
    let cfg = StreamConfig { idle_advance: false, ..Default::default() };
    let stream = client.start_replication("idle", p.rules(), Lsn::INVALID, &p.options(), cfg).await.unwrap();
    for _ in 0..5 {
        c.psql("other", "INSERT INTO busy(v) SELECT 'x' FROM generate_series(1, 200)").unwrap();
    }
    // Not a fixed wait, which a slow machine may end before any keepalive came: until the stream has received
    // a keepalive past the writes (what the idle advance would have confirmed), then the final status update.
    let written = Lsn::parse(c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap().trim()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while stream.server_wal_end() < written {
        assert!(Instant::now() < deadline, "no keepalive past {written}: {}", stream.server_wal_end());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stream.reported_flush() <= before, "{} reported with the idle advance off", stream.reported_flush());
    stream.stop().await.unwrap();
    assert_eq!(slot_lsn(&c, "idle", "confirmed_flush_lsn"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_position_inside_a_transaction_delivers_all_of_it() {
    let c = cluster(Duration::from_secs(10));
    let p = Plugin::of(&c);
    c.psql("postgres", "CREATE TABLE big(id int PRIMARY KEY)").unwrap();
    let mut client = repl_client(&c, "postgres").await;
    create_slot(&mut client, p, "endpos").await;
    // a small transaction, then a 10k-row one with the end position taken in its middle, then one more
    c.psql("postgres", "INSERT INTO big VALUES (0)").unwrap();
    let mid = c
        .psql(
            "postgres",
            "BEGIN; INSERT INTO big SELECT generate_series(1, 5000); SELECT pg_current_wal_insert_lsn();
             INSERT INTO big SELECT generate_series(5001, 10000); COMMIT;",
        )
        .unwrap();
    let mid = Lsn::parse(mid.lines().find(|l| l.contains('/')).unwrap().trim()).unwrap();
    c.psql("postgres", "INSERT INTO big VALUES (10001)").unwrap();
    let cfg = StreamConfig { end: Some(mid), ..Default::default() };
    let mut stream = client.start_replication("endpos", p.rules(), Lsn::INVALID, &p.options(), cfg).await.unwrap();
    let mut inserts = 0;
    let mut commits = 0;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.unwrap().unwrap() {
        match p.action(&m.data) {
            b'I' => inserts += 1,
            b'C' => commits += 1,
            _ => {}
        }
    }
    assert_eq!(inserts, 10001, "both transactions up to and across the end position, whole");
    assert_eq!(commits, 2);
}

/// A bulk transaction turns read coalescing on (over TCP loopback, the window mode: a fixed receive buffer and
/// a low-water mark as high as it allows); a lone small transaction afterwards must still arrive, woken by the
/// linger timer rather than a low-water mark it never reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_transaction_after_a_bulk_one_still_arrives() {
    let c = cluster(Duration::from_secs(60));
    let p = Plugin::of(&c);
    c.psql("postgres", "CREATE TABLE bulk(id int PRIMARY KEY, v text)").unwrap();
    let mut client = repl_client(&c, "postgres").await;
    create_slot(&mut client, p, "bulk").await;
    c.psql("postgres", "INSERT INTO bulk SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g").unwrap();
    let cfg = StreamConfig { idle_advance: false, ..Default::default() };
    let mut stream = client.start_replication("bulk", p.rules(), Lsn::INVALID, &p.options(), cfg).await.unwrap();
    let mut inserts = 0;
    loop {
        let m = next_message(&mut stream).await;
        match p.action(&m.data) {
            b'I' => inserts += 1,
            b'C' => break,
            _ => {}
        }
    }
    assert_eq!(inserts, 200000);
    // the bulk transaction was read; now a single row, well under any low-water mark
    c.psql("postgres", "INSERT INTO bulk VALUES (0, 'last')").unwrap();
    assert_eq!(actions_through_commit(&mut stream, p).await, b"BIC");
    stream.stop().await.unwrap().close().await.unwrap();
}

/// The consumer gives the byte budget back in batches; whatever it holds goes back before it waits. With a
/// 2 KiB budget (batches of 256 bytes), a small message (~150 bytes, held back) followed by one larger than the
/// whole budget (which needs all of it) must still flow: a consumer that waited holding its batch would wait
/// forever for a message the stream task cannot deliver (fails with a timeout then).
#[tokio::test(flavor = "current_thread")]
async fn a_message_larger_than_the_budget_follows_small_ones() {
    let c = cluster(Duration::from_secs(60));
    let p = Plugin::of(&c);
    c.psql("postgres", "CREATE TABLE mixed(id int PRIMARY KEY, v text)").unwrap();
    let mut client = repl_client(&c, "postgres").await;
    create_slot(&mut client, p, "mixed").await;
    c.psql(
        "postgres",
        "INSERT INTO mixed SELECT g, CASE WHEN g % 2 = 0 THEN repeat('x', 3000) ELSE 'y' END
         FROM generate_series(1, 500) g",
    )
    .unwrap();
    let cfg = StreamConfig { idle_advance: false, buffer_bytes: 2048, ..Default::default() };
    let mut stream = client.start_replication("mixed", p.rules(), Lsn::INVALID, &p.options(), cfg).await.unwrap();
    let (mut inserts, mut large) = (0, 0);
    loop {
        let m = next_message(&mut stream).await;
        match p.action(&m.data) {
            b'I' => {
                inserts += 1;
                large += usize::from(m.data.len() > 2048);
            }
            b'C' => break,
            _ => {}
        }
    }
    assert_eq!((inserts, large), (500, 250));
    stream.stop().await.unwrap().close().await.unwrap();
}
