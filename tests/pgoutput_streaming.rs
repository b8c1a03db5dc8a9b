//! pgoutput's streamed transactions through `ChangeStream<Pgoutput>` against a real server (14+):
//! `logical_decoding_work_mem` at its minimum makes the server send large transactions in segments before they
//! commit, interleaved with small ones; savepoints roll back part of one, another aborts whole, and the walsender
//! is terminated while a streamed transaction is held. The application must see only committed transactions,
//! each contiguous (Begin, its changes, Commit), in commit order, with exactly the rows the table has — with the
//! held transactions spilled to files beyond a small memory budget. Before 14 pgoutput cannot stream (protocol 1
//! only): the server refuses `streaming`, and the same workload through protocol 1 arrives the same way, each
//! transaction sent whole at its commit (PostgreSQL 12 has no `logical_decoding_work_mem` either).
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

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pgrepl::changes::{ChangeStream, ChangeStreamConfig};
use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::event::Event;
use pgrepl::plugin::Pgoutput;
use pgrepl_testkit::{ClusterOptions, TempCluster};

/// One delivered transaction: its xid (from Begin), the ids it inserted, and whether it was contiguous.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Txn {
    xid: Option<u64>,
    ids: Vec<i64>,
}

async fn sql(c: &mut Client, q: &str) {
    c.simple_query(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
}

async fn plain(cluster: &TempCluster) -> Client {
    let cfg = Config::parse(&cluster.conninfo(cluster.superuser(), "postgres")).unwrap();
    Client::connect(&cfg).await.unwrap()
}

/// Reads transactions from `cs` until one contains `marker`; checks each is contiguous.
async fn read_until(cs: &mut ChangeStream<Pgoutput>, marker: i64, out: &mut Vec<Txn>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut open: Option<Txn> = None;
    loop {
        assert!(Instant::now() < deadline, "marker {marker} not seen; so far {out:?}");
        let mut p = tokio::time::timeout(Duration::from_secs(30), cs.next())
            .await
            .expect("no payload for 30 s")
            .unwrap()
            .expect("stream ended");
        let mut done = false;
        for ev in p.events().unwrap() {
            match ev.unwrap() {
                Event::Begin(t) => {
                    assert!(open.is_none(), "Begin inside an open transaction: {open:?}");
                    open = Some(Txn { xid: t.xid, ids: vec![] });
                }
                Event::Insert(ch) => {
                    let t = open.as_mut().expect("a change outside any transaction");
                    t.ids.push(ch.column("id").and_then(|c| c.value.as_i64()).unwrap());
                }
                Event::Commit(t) => {
                    let txn = open.take().expect("Commit without Begin");
                    if let (Some(a), Some(b)) = (txn.xid, t.xid) {
                        assert_eq!(a, b, "Commit of another transaction");
                    }
                    done |= txn.ids.contains(&marker);
                    out.push(txn);
                }
                Event::Stream(s) => panic!("a streamed segment reached the application: {s:?}"),
                _ => {}
            }
        }
        p.ack();
        if done {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_transactions_arrive_whole_in_commit_order() {
    let major = pgrepl_testkit::default_major().unwrap();
    // logical_decoding_work_mem came with 13
    let extra_conf = if major >= 13 { vec!["logical_decoding_work_mem = '64kB'".into()] } else { vec![] };
    let cluster = TempCluster::start(ClusterOptions { extra_conf, ..ClusterOptions::default() }).unwrap();
    cluster.psql("postgres", "CREATE TABLE t(id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t;").unwrap();
    let conninfo = format!("{} replication=database", cluster.conninfo(cluster.superuser(), "postgres"));
    let streams = cluster.major() >= 14;
    let streaming = Pgoutput::new(["p"]).proto_version(2).streaming("on");
    let plugin = if streams {
        streaming
    } else {
        // protocol 2 (streaming) is 14's: before, the server refuses the option when streaming starts
        let cfg = ChangeStreamConfig::with_plugin(&conninfo, "s", streaming).unwrap().create_slot(true);
        let e = ChangeStream::connect(cfg).await.unwrap_err();
        assert!(
            e.to_string().contains("unrecognized pgoutput option: streaming"),
            "PostgreSQL {}: {e}",
            cluster.version()
        );
        assert!(!e.is_retryable(), "{e}");
        Pgoutput::new(["p"])
    };
    let mut cfg = ChangeStreamConfig::with_plugin(&conninfo, "s", plugin).unwrap().create_slot(true);
    cfg.hold_memory = 64 * 1024; // so that the large transactions spill to files
    let mut cs = ChangeStream::connect(cfg).await.unwrap();

    let (mut a, mut b, mut d) = (plain(&cluster).await, plain(&cluster).await, plain(&cluster).await);
    let mut got = vec![];
    // a: a large transaction, streamed before it commits
    sql(&mut a, "BEGIN").await;
    sql(&mut a, "INSERT INTO t SELECT g, repeat('a', 100) FROM generate_series(1, 3000) g").await;
    // b: a small one commits first
    sql(&mut b, "INSERT INTO t VALUES (100001, 'b')").await;
    read_until(&mut cs, 100001, &mut got).await;
    // a: a savepoint rolled back (its rows streamed, then discarded), another released
    sql(&mut a, "SAVEPOINT s1").await;
    sql(&mut a, "INSERT INTO t SELECT g, repeat('r', 100) FROM generate_series(3001, 5000) g").await;
    sql(&mut a, "ROLLBACK TO SAVEPOINT s1").await;
    sql(&mut a, "SAVEPOINT s2").await;
    sql(&mut a, "INSERT INTO t SELECT g, 'k' FROM generate_series(5001, 5010) g").await;
    sql(&mut a, "RELEASE SAVEPOINT s2").await;
    // d: a large transaction that aborts whole
    sql(&mut d, "BEGIN").await;
    sql(&mut d, "INSERT INTO t SELECT g, repeat('d', 100) FROM generate_series(200001, 203000) g").await;
    sql(&mut d, "ROLLBACK").await;
    sql(&mut b, "INSERT INTO t VALUES (100002, 'b')").await;
    read_until(&mut cs, 100002, &mut got).await;
    let (_, held_txns, (files, bytes)) = cs.held();
    if streams {
        assert!(held_txns >= 1, "transaction a is held while open");
        assert!(files >= 1 && bytes > 64 * 1024, "beyond the budget, held payloads go to files: {files} {bytes}");
    } else {
        assert_eq!((held_txns, files), (0, 0), "nothing is streamed before its commit, so nothing is held");
    }
    // the walsender goes away while a is held: the held copy is dropped and a comes again whole
    cluster
        .psql("postgres", "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 's'")
        .unwrap();
    sql(&mut a, "INSERT INTO t SELECT g, 'z' FROM generate_series(5011, 5020) g").await;
    sql(&mut a, "COMMIT").await;
    sql(&mut b, "INSERT INTO t VALUES (100003, 'b')").await;
    read_until(&mut cs, 100003, &mut got).await;
    cs.stop().await.unwrap();

    let small = |id| Txn { xid: None, ids: vec![id] };
    let norm: Vec<Txn> = got.iter().map(|t| Txn { xid: None, ids: t.ids.clone() }).collect();
    let a_ids: Vec<i64> = (1..=3000).chain(5001..=5020).collect();
    assert_eq!(norm.len(), 4, "{norm:?}");
    assert_eq!(norm[0], small(100001));
    assert_eq!(norm[1], small(100002));
    assert_eq!(norm[2].ids, a_ids, "a, whole, without the rolled-back savepoint, after the walsender restart");
    assert_eq!(norm[3], small(100003));
    // and exactly what the table holds
    let table: BTreeSet<i64> = cluster
        .psql("postgres", "SELECT id FROM t")
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let seen: BTreeSet<i64> = norm.iter().flat_map(|t| t.ids.iter().copied()).collect();
    assert_eq!(seen, table);
}
