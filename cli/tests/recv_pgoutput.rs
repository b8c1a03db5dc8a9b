//! `pgrepl recv` on pgoutput slots against a real server: raw output byte-identical to pg_recvlogical's, and
//! `--output json` with `streaming on` — a large transaction streamed in segments before it commits, interleaved
//! with small ones, part of it rolled back to a savepoint, another aborted whole — printing only committed
//! transactions, each whole and in commit order, with the same rows a wal2json slot prints (on PostgreSQL 15,
//! where wal2json is installed; elsewhere against the table).
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
use std::process::{Command, Output};

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl_testkit::{ClusterOptions, TempCluster};

const PGREPL: &str = env!("CARGO_BIN_EXE_pgrepl");

fn pg_recvlogical(c: &TempCluster) -> std::path::PathBuf {
    let p = c.bin_dir().join("pg_recvlogical");
    if p.is_file() {
        p
    } else {
        "pg_recvlogical".into()
    }
}

fn conn_args(c: &TempCluster) -> Vec<String> {
    vec!["-h".into(), "127.0.0.1".into(), "-p".into(), c.port().to_string(), "-U".into(), c.superuser().into()]
        .into_iter()
        .chain(["-d".into(), "postgres".into()])
        .collect()
}

fn run(cmd: &mut Command) -> Output {
    cmd.env_remove("PGPASSWORD").env_remove("PGSERVICE").output().unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn create_slot(c: &TempCluster, slot: &str, plugin: &str) {
    ok(&run(Command::new(PGREPL).arg("recv").args(conn_args(c)).args(["-S", slot, "--create-slot", "-P", plugin])));
}

#[test]
fn raw_pgoutput_output_is_byte_identical_to_pg_recvlogical() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    c.psql(
        "postgres",
        "CREATE TABLE t(id int PRIMARY KEY, v text, n numeric(10,2)); CREATE PUBLICATION p FOR TABLE t;",
    )
    .unwrap();
    create_slot(&c, "po_pg", "pgoutput");
    create_slot(&c, "po_rs", "pgoutput");
    c.psql(
        "postgres",
        "INSERT INTO t SELECT g, 'row ' || g, g / 7.0 FROM generate_series(1, 500) g;
         UPDATE t SET v = 'u' WHERE id % 3 = 0; DELETE FROM t WHERE id % 5 = 0; TRUNCATE t;",
    )
    .unwrap();
    let end = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let args = |slot: &str, file: &std::path::Path| -> Vec<String> {
        let mut v = conn_args(&c);
        v.extend(
            ["-S", slot, "--start", "-E", &end, "-n", "-o", "proto_version=1", "-o", "publication_names=p"]
                .map(String::from),
        );
        v.extend(["-f".to_string(), file.display().to_string()]);
        v
    };
    let (fa, fb) = (dir.path().join("pg.out"), dir.path().join("rs.out"));
    ok(&run(Command::new(pg_recvlogical(&c)).args(args("po_pg", &fa))));
    ok(&run(Command::new(PGREPL).arg("recv").args(args("po_rs", &fb))));
    let (a, b) = (std::fs::read(&fa).unwrap(), std::fs::read(&fb).unwrap());
    assert!(a.len() > 10_000, "pg_recvlogical wrote only {} bytes", a.len());
    assert!(a == b, "outputs differ: {} vs {} bytes", a.len(), b.len());
}

/// One transaction of the JSON output: its xid and (action, table, columns) of each change.
#[derive(Debug, PartialEq)]
struct Txn {
    xid: Option<u64>,
    rows: Vec<(String, String, String)>,
}

fn transactions(json: &[u8]) -> Vec<Txn> {
    let mut out = vec![];
    let mut open: Option<Txn> = None;
    for line in String::from_utf8(json.to_vec()).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        match v["action"].as_str().unwrap() {
            "B" => {
                assert!(open.is_none(), "B inside an open transaction: {line}");
                open = Some(Txn { xid: v["xid"].as_u64(), rows: vec![] });
            }
            "C" => {
                let t = open.take().expect("C without B");
                if let (Some(a), Some(b)) = (t.xid, v["xid"].as_u64()) {
                    assert_eq!(a, b, "C of another transaction");
                }
                out.push(t);
            }
            "I" | "U" | "D" => open.as_mut().expect("a change outside a transaction").rows.push((
                v["action"].to_string(),
                v["table"].to_string(),
                v["columns"].to_string(),
            )),
            other => panic!("unexpected action {other}: {line}"),
        }
    }
    assert!(open.is_none(), "output ends inside a transaction");
    out
}

#[test]
fn json_of_a_streamed_pgoutput_slot_is_committed_transactions_whole_in_commit_order() {
    let major = pgrepl_testkit::default_major().unwrap();
    // logical_decoding_work_mem came with 13, pgoutput's streaming (protocol 2) with 14: before, the same
    // transactions come whole at their commits through protocol 1, and the output must be the same
    let extra_conf = if major >= 13 { vec!["logical_decoding_work_mem = '64kB'".into()] } else { vec![] };
    let c = TempCluster::start(ClusterOptions { extra_conf, ..ClusterOptions::default() }).unwrap();
    let streams = c.major() >= 14;
    let wal2json = c.has_wal2json();
    c.psql(
        "postgres",
        "CREATE TABLE t(id int PRIMARY KEY, v text, n numeric(10,2), ok boolean); CREATE PUBLICATION p FOR TABLE t;",
    )
    .unwrap();
    create_slot(&c, "po", "pgoutput");
    if wal2json {
        create_slot(&c, "wj", "wal2json");
    }
    // WAL with a large transaction interleaved with small ones; decoding with 64 kB of memory streams it
    // (clients: 0 = a, the large transaction; 1 = b, small ones; 2 = d, a large one that aborts)
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cfg = Config::parse(&c.conninfo(c.superuser(), "postgres")).unwrap();
        let mut clients = [
            Client::connect(&cfg).await.unwrap(),
            Client::connect(&cfg).await.unwrap(),
            Client::connect(&cfg).await.unwrap(),
        ];
        for (i, q) in [
            (0, "BEGIN"),
            (0, "INSERT INTO t SELECT g, repeat('a', 100), g / 3.0, g % 2 = 0 FROM generate_series(1, 3000) g"),
            (1, "INSERT INTO t VALUES (100001, 'b', 1.5, true)"),
            (0, "SAVEPOINT s1"),
            (0, "INSERT INTO t SELECT g, repeat('r', 100), 0, false FROM generate_series(3001, 5000) g"),
            (0, "ROLLBACK TO SAVEPOINT s1"),
            (0, "UPDATE t SET v = 'upd' WHERE id <= 10"),
            (2, "BEGIN"),
            (2, "INSERT INTO t SELECT g, repeat('d', 100), 0, NULL FROM generate_series(200001, 203000) g"),
            (1, "DELETE FROM t WHERE id = 100001"),
            (2, "ROLLBACK"),
            (0, "COMMIT"),
            (1, "INSERT INTO t VALUES (100002, 'it''s \"q\"', -7, NULL)"),
        ] {
            clients[i].simple_query(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    });
    let end = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap().trim().to_string();
    let json = |slot: &str, opts: &[&str]| -> Vec<Txn> {
        let mut cmd = Command::new(PGREPL);
        cmd.arg("recv").args(conn_args(&c)).args(["-S", slot, "--start", "-E", &end, "-n", "-f", "-"]);
        cmd.args(["--output", "json"]);
        for o in opts {
            cmd.args(["-o", o]);
        }
        let out = run(&mut cmd);
        ok(&out);
        transactions(&out.stdout)
    };
    let po = if streams {
        json("po", &["proto_version=2", "publication_names=p", "streaming=on"])
    } else {
        let mut cmd = Command::new(PGREPL);
        cmd.arg("recv").args(conn_args(&c)).args(["-S", "po", "--start", "-E", &end, "-n", "-f", "-"]);
        cmd.args(["--output", "json", "-o", "proto_version=2", "-o", "publication_names=p", "-o", "streaming=on"]);
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "PostgreSQL {}: streaming refused", c.version());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unrecognized pgoutput option: streaming"), "{err}");
        json("po", &["proto_version=1", "publication_names=p"])
    };
    let ids = |t: &Txn| -> Vec<i64> {
        t.rows
            .iter()
            .map(|r| {
                let cols: serde_json::Value = serde_json::from_str(&r.2).unwrap();
                cols.as_array()
                    .and_then(|cs| cs.iter().find(|c| c["name"] == "id"))
                    .and_then(|c| c["value"].as_i64())
                    .unwrap_or(-1)
            })
            .collect()
    };
    // commit order: b's insert, b's delete, a (3000 rows and 10 updates), b's last insert; d never
    assert_eq!(po.len(), 4, "{:?}", po.iter().map(|t| t.rows.len()).collect::<Vec<_>>());
    assert_eq!(ids(&po[0]), [100001]);
    assert_eq!(po[1].rows.len(), 1);
    assert_eq!(po[1].rows[0].0, "\"D\"");
    let a_ids: Vec<i64> = (1..=3000).chain(1..=10).collect();
    assert_eq!(ids(&po[2]), a_ids, "a whole, without the rolled-back savepoint");
    assert_eq!(ids(&po[3]), [100002]);
    let table: BTreeSet<String> = c
        .psql("postgres", "SELECT id FROM t")
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(table.len(), 3001);
    if wal2json {
        // wal2json prints the same transactions, rows and values (its DELETE prints the key as identity only)
        let wj = json("wj", &["format-version=2", "include-xids=1", "include-type-oids=1"]);
        let inserts_updates = |ts: &[Txn]| -> Vec<Vec<(String, String, String)>> {
            ts.iter().map(|t| t.rows.iter().filter(|r| r.0 != "\"D\"").cloned().collect()).collect()
        };
        let (a, b) = (inserts_updates(&po), inserts_updates(&wj));
        assert_eq!(a.len(), b.len(), "transactions");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.len(), y.len(), "transaction {i}: rows");
            if let Some(j) = x.iter().zip(y).position(|(r, s)| r != s) {
                panic!("transaction {i}, row {j}:\npgoutput: {:?}\nwal2json: {:?}", x[j], y[j]);
            }
        }
        assert_eq!(po.iter().map(|t| t.xid).collect::<Vec<_>>(), wj.iter().map(|t| t.xid).collect::<Vec<_>>());
    } else {
        pgrepl_testkit::skip(&format!(
            "the rest checked; its comparison with wal2json not run: wal2json is packaged for PostgreSQL 15 only \
             (server {})",
            c.version()
        ));
    }
}

/// Without `-o proto_version` recv asks for the highest protocol the server speaks; without
/// `publication_names` it refuses before streaming, with a message that says what to give.
#[test]
fn pgoutput_options_default_to_the_servers_protocol_and_a_publication_is_required() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    c.psql("postgres", "CREATE TABLE t(id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;").unwrap();
    create_slot(&c, "po", "pgoutput");
    c.psql("postgres", "INSERT INTO t VALUES (1)").unwrap();
    let end = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap().trim().to_string();
    let base = |extra: &[&str]| -> Output {
        let mut cmd = Command::new(PGREPL);
        cmd.arg("recv").args(conn_args(&c)).args(["-S", "po", "--start", "-E", &end, "-n", "-f", "-", "-v"]);
        cmd.args(extra);
        run(&mut cmd)
    };
    let out = base(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("publication_names=NAME"), "{err}");
    let out = base(&["-o", "publication_names=p", "--output", "json"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#""action":"I""#) && text.contains(r#""value":1}"#), "{text}");
    // (without a proto_version the server refuses to start: "proto_version option missing")
}

/// `-E` inside a large transaction of a pgoutput slot: the transaction is delivered whole and nothing after it
/// (pgoutput's rules: Begin … Commit; the Relation message inside it is no boundary).
#[test]
fn an_end_position_inside_a_pgoutput_transaction_delivers_it_whole() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    c.psql("postgres", "CREATE TABLE big(id int); CREATE PUBLICATION p FOR TABLE big;").unwrap();
    create_slot(&c, "po", "pgoutput");
    c.psql("postgres", "INSERT INTO big SELECT generate_series(1, 5000)").unwrap();
    c.psql("postgres", "INSERT INTO big VALUES (-1)").unwrap();
    let lsns = c
        .psql(
            "postgres",
            "SELECT lsn FROM pg_logical_slot_peek_binary_changes('po', NULL, NULL, 'proto_version', '1', \
             'publication_names', 'p') WHERE substr(data, 1, 1) = 'I'",
        )
        .unwrap();
    let lsns: Vec<&str> = lsns.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lsns.len(), 5001);
    let mid = lsns[2500].trim();
    let mut cmd = Command::new(PGREPL);
    cmd.arg("recv").args(conn_args(&c)).args(["-S", "po", "--start", "-E", mid, "-n", "-f", "-"]);
    cmd.args(["-o", "publication_names=p", "--output", "json"]);
    let out = run(&mut cmd);
    ok(&out);
    let txns = transactions(&out.stdout);
    assert_eq!(txns.len(), 1, "the transaction holding the end position, and nothing after it");
    assert_eq!(txns[0].rows.len(), 5000);
}
