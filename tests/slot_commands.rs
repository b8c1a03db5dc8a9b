//! Replication commands where server releases differ, asserted per release (any major 12-18 with `PG_BIN_DIR`;
//! `scripts/matrix.sh` runs them all; docs/server-matrix.md lists the differences):
//! - `CREATE_REPLICATION_SLOT`: the parenthesised options from 15 (`(SNAPSHOT 'export'|'nothing'|'use')`), the
//!   legacy keywords before (`EXPORT_SNAPSHOT`, `NOEXPORT_SNAPSHOT`, `USE_SNAPSHOT`), each with the snapshot
//!   it promises: the slot's changes begin exactly where the exported or used snapshot ends; `use` in a
//!   REPEATABLE READ transaction that must also be READ ONLY from 16 on;
//! - two-phase slots: `TWO_PHASE` from 15; before, pgrepl refuses with the server's version, sending nothing;
//! - `DROP_REPLICATION_SLOT … WAIT` waits for the slot's holder to let go;
//! - `IDENTIFY_SYSTEM` on logical and physical connections, and the command tags (`SELECT` for every
//!   replication command on 12, whose `DROP_REPLICATION_SLOT` also answers with two CommandCompletes).
//!
//! Each test has a cluster of its own with `log_replication_commands`, whose log shows the command text the
//! server received. Slots use the plugin of `tests/common/plugins.rs` (wal2json on Debian's 15, else
//! test_decoding).
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

#[path = "common/plugins.rs"]
mod plugins;

use std::time::{Duration, Instant};

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::proto::commands::{CreateSlot, SnapshotAction};
use pgrepl::{ErrorKind, Lsn};
use pgrepl_testkit::{ClusterOptions, TempCluster};
use plugins::Plugin;

fn start() -> TempCluster {
    let c = TempCluster::start(ClusterOptions {
        extra_conf: vec!["log_replication_commands = on".into()],
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("cluster: {e}"));
    eprintln!("PostgreSQL {}, plugin {}", c.version(), Plugin::of(&c).name());
    c
}

async fn connect(c: &TempCluster, extra: &str) -> Client {
    let cfg = Config::parse(&format!("{} connect_timeout=10 {extra}", c.conninfo(c.superuser(), "postgres"))).unwrap();
    Client::connect(&cfg).await.unwrap_or_else(|e| panic!("{extra}: {e}"))
}

/// The replication commands the server received, in order.
fn received(c: &TempCluster) -> Vec<String> {
    let log = std::fs::read_to_string(c.log_path()).unwrap();
    log.lines().filter_map(|l| l.split_once("received replication command: ")).map(|(_, cmd)| cmd.to_string()).collect()
}

fn slot(name: &str, plugin: Plugin, temporary: bool, snapshot: SnapshotAction) -> CreateSlot {
    CreateSlot { slot: name.into(), plugin: plugin.name().into(), temporary, snapshot, two_phase: false }
}

/// The values of `snap.v` a session sees (sorted, comma-separated).
async fn seen(client: &mut Client) -> String {
    let r = client.simple_query("SELECT coalesce(string_agg(v, ',' ORDER BY v), '') AS v FROM snap").await.unwrap();
    r.last().unwrap().get(0, "v").unwrap_or_default().to_string()
}

/// Every snapshot action in the server's own syntax, temporary and not: the server receives the form its
/// release reads (parenthesised from 15, keywords before), and the slot keeps its promise about the snapshot — the
/// exported one (imported by another session) or the used one (the creating transaction's) sees exactly the rows
/// committed before the slot, whose changes are those committed after it.
#[tokio::test]
async fn create_slot_in_the_servers_syntax_with_each_snapshot_action() {
    let c = start();
    let plugin = Plugin::of(&c);
    c.psql("postgres", "CREATE TABLE snap(id serial PRIMARY KEY, v text)").unwrap();
    let actions = [
        (SnapshotAction::Export, "export", "EXPORT_SNAPSHOT"),
        (SnapshotAction::NoExport, "nothing", "NOEXPORT_SNAPSHOT"),
        (SnapshotAction::Use, "use", "USE_SNAPSHOT"),
    ];
    for (action, word, keyword) in actions {
        for temporary in [false, true] {
            let name = format!("snap_{word}_{}", if temporary { "tmp" } else { "perm" });
            let before = format!("before_{name}");
            let after = format!("after_{name}");
            c.psql("postgres", &format!("INSERT INTO snap(v) VALUES ('{before}')")).unwrap();
            let mut r = connect(&c, "replication=database").await;
            let version_num = r.session().server_version_num().unwrap();
            assert_eq!(version_num / 10000, c.major());
            if action == SnapshotAction::Use {
                // USE_SNAPSHOT: the first statement of a REPEATABLE READ transaction on this connection, which
                // must be READ ONLY from 16 on
                if c.major() >= 16 {
                    r.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
                    let e = r.create_replication_slot(&slot(&name, plugin, temporary, action)).await.unwrap_err();
                    assert!(e.to_string().contains("must be called in a read-only transaction"), "{e}");
                    r.simple_query("ROLLBACK").await.unwrap();
                }
                r.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.unwrap();
            }
            let info = r.create_replication_slot(&slot(&name, plugin, temporary, action)).await.unwrap();
            assert_eq!(info.slot_name, name);
            assert_eq!(info.output_plugin.as_deref(), Some(plugin.name()));
            assert!(!info.consistent_point.is_invalid());

            let temp = if temporary { " TEMPORARY" } else { "" };
            let sent = if c.major() >= 15 {
                format!("CREATE_REPLICATION_SLOT \"{name}\"{temp} LOGICAL \"{}\" (SNAPSHOT '{word}')", plugin.name())
            } else {
                format!("CREATE_REPLICATION_SLOT \"{name}\"{temp} LOGICAL \"{}\" {keyword}", plugin.name())
            };
            let log = received(&c);
            assert!(log.contains(&sent), "PostgreSQL {}: {sent:?} not in {log:?}", c.version());

            // committed after the slot: in its changes, in no snapshot of it
            c.psql("postgres", &format!("INSERT INTO snap(v) VALUES ('{after}')")).unwrap();
            match action {
                SnapshotAction::Export => {
                    let snapshot = info.snapshot_name.clone().filter(|s| !s.is_empty()).expect("exported snapshot");
                    // imported while the replication connection stays idle
                    let mut other = connect(&c, "").await;
                    other.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
                    other.simple_query(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'")).await.unwrap();
                    let v = seen(&mut other).await;
                    assert!(v.contains(&before) && !v.contains(&after), "{name}: the exported snapshot sees {v}");
                    other.simple_query("COMMIT").await.unwrap();
                    other.close().await.unwrap();
                }
                SnapshotAction::NoExport => assert_eq!(info.snapshot_name, None, "{name}"),
                SnapshotAction::Use => {
                    assert_eq!(info.snapshot_name, None, "{name}");
                    let v = seen(&mut r).await;
                    assert!(v.contains(&before) && !v.contains(&after), "{name}: the used snapshot sees {v}");
                    r.simple_query("COMMIT").await.unwrap();
                }
            }
            // the slot's changes: the row committed after it, not the one before (peeked on the connection
            // that owns a temporary slot; wal2json's default format names the value too)
            let peek = format!("SELECT data FROM pg_logical_slot_peek_changes('{name}', NULL, NULL)");
            let rows = r.simple_query(&peek).await.unwrap();
            let data: Vec<String> = rows.last().unwrap().rows.iter().filter_map(|row| row[0].clone()).collect();
            let all = data.join("\n");
            assert!(all.contains(&after), "{name}: the slot misses {after}: {all}");
            assert!(!all.contains(&before), "{name}: the slot has {before}, committed before it: {all}");
            if !temporary {
                r.drop_replication_slot(&name, false).await.unwrap();
            }
            r.close().await.unwrap();
        }
    }
    // USE outside a transaction is the server's error, in either syntax
    let mut r = connect(&c, "replication=database").await;
    let e = r.create_replication_slot(&slot("snap_use_bare", plugin, false, SnapshotAction::Use)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Db, "{e}");
    assert!(e.to_string().contains("must be called inside a transaction"), "{e}");
    r.identify_system().await.unwrap();
    r.close().await.unwrap();
}

/// Two-phase slots: `TWO_PHASE` in the options from 15 (the slot's `two_phase` is then on); before 15 no
/// replication command takes it, and pgrepl refuses with the server's version, sending nothing.
#[tokio::test]
async fn two_phase_slots_from_15_a_clear_error_before() {
    let c = start();
    // test_decoding on every release: it has the prepare callbacks (wal2json 2.5 has none)
    let plugin = Plugin::TestDecoding;
    let mut r = connect(&c, "replication=database").await;
    for temporary in [false, true] {
        let name = if temporary { "tp_tmp" } else { "tp_perm" };
        let create = CreateSlot { two_phase: true, ..slot(name, plugin, temporary, SnapshotAction::NoExport) };
        let result = r.create_replication_slot(&create).await;
        if c.major() >= 15 {
            result.unwrap_or_else(|e| panic!("PostgreSQL {}: {e}", c.version()));
            let temp = if temporary { " TEMPORARY" } else { "" };
            let sent = format!(
                "CREATE_REPLICATION_SLOT \"{name}\"{temp} LOGICAL \"{}\" (SNAPSHOT 'nothing', TWO_PHASE)",
                plugin.name()
            );
            assert!(received(&c).contains(&sent), "{sent:?} not in {:?}", received(&c));
            let q = format!("SELECT two_phase FROM pg_replication_slots WHERE slot_name = '{name}'");
            let r2 = r.simple_query(&q).await.unwrap();
            assert_eq!(r2[0].get(0, "two_phase"), Some("t"), "{name}");
        } else {
            let e = result.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ServerVersionUnsupported, "{e}");
            assert_eq!(e.code(), None, "{e}");
            let msg = e.to_string();
            assert!(msg.contains("TWO_PHASE") && msg.contains("PostgreSQL 15"), "{msg}");
            assert!(msg.contains(c.version()), "the error names the server's version {}: {msg}", c.version());
            assert!(!received(&c).iter().any(|cmd| cmd.contains(name)), "sent: {:?}", received(&c));
        }
    }
    // the connection is fine either way
    r.identify_system().await.unwrap();
    if c.major() >= 15 {
        r.drop_replication_slot("tp_perm", false).await.unwrap();
    }
    r.close().await.unwrap();
}

/// `DROP_REPLICATION_SLOT … WAIT` on a slot another connection streams: it waits until that connection lets go,
/// then drops it. (Without WAIT the server refuses at once: tests/auth.rs.)
#[tokio::test]
async fn drop_wait_waits_for_the_slot_to_be_released() {
    let c = start();
    let plugin = Plugin::of(&c);
    let mut a = connect(&c, "replication=database").await;
    a.create_replication_slot(&slot("held", plugin, false, SnapshotAction::NoExport)).await.unwrap();
    let stream = a.start_replication("held", plugin.rules(), Lsn::INVALID, &[], Default::default()).await.unwrap();
    let active = || c.psql("postgres", "SELECT active FROM pg_replication_slots WHERE slot_name = 'held'").unwrap();
    assert_eq!(active(), "t");

    let mut b = connect(&c, "replication=database").await;
    let t = Instant::now();
    let dropping = tokio::spawn(async move {
        let r = b.drop_replication_slot("held", true).await;
        (r, b, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!dropping.is_finished(), "DROP … WAIT returned while the slot was held");
    assert_eq!(active(), "t");
    let released = Instant::now();
    stream.stop().await.unwrap().close().await.unwrap();
    let (r, mut b, done) = tokio::time::timeout(Duration::from_secs(60), dropping).await.expect("DROP … WAIT").unwrap();
    r.unwrap_or_else(|e| panic!("PostgreSQL {}: DROP … WAIT: {e}", c.version()));
    assert!(done >= released, "dropped {:?} after the start, before the holder let go", done - t);
    assert_eq!(c.psql("postgres", "SELECT count(*) FROM pg_replication_slots").unwrap(), "0");
    assert!(received(&c).contains(&"DROP_REPLICATION_SLOT \"held\" WAIT".to_string()), "{:?}", received(&c));
    // the connection is in step after the answer (two CommandCompletes on 12)
    b.identify_system().await.unwrap();
    b.close().await.unwrap();
}

/// IDENTIFY_SYSTEM on a logical and a physical replication connection, and the command tags each release gives
/// replication commands (12: `SELECT` for all of them, and a second CommandComplete after DROP_REPLICATION_SLOT;
/// 13+: the command's name). The client's typed answers are the same everywhere.
#[tokio::test]
async fn identify_system_and_command_tags_by_release() {
    let c = start();
    let plugin = Plugin::of(&c);
    let system_id = c.psql("postgres", "SELECT system_identifier FROM pg_control_system()").unwrap();
    let old = c.major() < 13;
    let tag = |name: &'static str| if old { "SELECT" } else { name };
    for (replication, dbname) in [("database", Some("postgres")), ("true", None)] {
        let mut r = connect(&c, &format!("replication={replication}")).await;
        let sys = r.identify_system().await.unwrap();
        assert_eq!(sys.system_id, system_id, "replication={replication}");
        assert_eq!(sys.timeline, 1);
        assert_eq!(sys.dbname.as_deref(), dbname, "replication={replication}");
        let now = Lsn::parse(&c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap()).unwrap();
        assert!(!sys.xlogpos.is_invalid() && sys.xlogpos <= now, "{} > {now}", sys.xlogpos);

        let raw = r.simple_query("IDENTIFY_SYSTEM").await.unwrap();
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0].columns, ["systemid", "timeline", "xlogpos", "dbname"]);
        assert_eq!(raw[0].tag, tag("IDENTIFY_SYSTEM"), "PostgreSQL {}", c.version());
        assert_eq!(raw[0].get(0, "dbname"), dbname);
        // SHOW is a replication command too (a walsender of either kind runs it)
        let show = r.simple_query("SHOW wal_level").await.unwrap();
        assert_eq!(show[0].get(0, "wal_level"), Some("logical"));
        assert_eq!(show[0].tag, tag("SHOW"), "PostgreSQL {}", c.version());
        r.close().await.unwrap();
    }
    // CREATE and DROP sent as text: their tags, and DROP's second CommandComplete on 12
    let mut r = connect(&c, "replication=database").await;
    let version_num = r.session().server_version_num().unwrap();
    let create = slot("tags", plugin, false, SnapshotAction::NoExport).to_sql(version_num).unwrap();
    let created = r.simple_query(&create).await.unwrap();
    assert_eq!(created.iter().map(|q| q.tag.as_str()).collect::<Vec<_>>(), [tag("CREATE_REPLICATION_SLOT")]);
    assert_eq!(created[0].columns, ["slot_name", "consistent_point", "snapshot_name", "output_plugin"]);
    let dropped = r.simple_query("DROP_REPLICATION_SLOT tags").await.unwrap();
    let tags: Vec<&str> = dropped.iter().map(|q| q.tag.as_str()).collect();
    if old {
        assert_eq!(tags, ["DROP_REPLICATION_SLOT", "SELECT"], "PostgreSQL {}", c.version());
    } else {
        assert_eq!(tags, ["DROP_REPLICATION_SLOT"], "PostgreSQL {}", c.version());
    }
    r.identify_system().await.unwrap();
    r.close().await.unwrap();
}

/// A status update whose flush position is behind the slot's `confirmed_flush_lsn`: PostgreSQL 12 takes it as
/// the slot's new position (the slot goes back), 13 and later keep the slot where it is. The raw stream reports
/// its start as flushed, so a stream started behind the slot reports such a position (ChangeStream starts at the
/// slot's position for that reason: tests/changes.rs).
#[tokio::test]
async fn a_flush_position_behind_the_slot_moves_it_back_on_12_only() {
    let c = start();
    let plugin = Plugin::of(&c);
    let mut r = connect(&c, "replication=database").await;
    let created = r.create_replication_slot(&slot("behind", plugin, false, SnapshotAction::NoExport)).await.unwrap();
    let created = created.consistent_point;
    c.psql("postgres", "CREATE TABLE pad(x int); INSERT INTO pad VALUES (1); SELECT pg_switch_wal()").unwrap();
    c.psql("postgres", "INSERT INTO pad VALUES (2)").unwrap();
    let now = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap();
    c.psql("postgres", &format!("SELECT pg_replication_slot_advance('behind', '{now}')")).unwrap();
    let q = "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'behind'";
    let advanced = Lsn::parse(&c.psql("postgres", q).unwrap()).unwrap();
    assert!(advanced > created);
    // asked to start where the slot was created; the server forwards to the slot's position, the stream stops
    // with a final status update reporting the start as flushed
    let cfg = pgrepl::stream::StreamConfig { idle_advance: false, ..Default::default() };
    let stream = r.start_replication("behind", plugin.rules(), created, &[], cfg).await.unwrap();
    stream.stop().await.unwrap().close().await.unwrap();
    let after = Lsn::parse(&c.psql("postgres", q).unwrap()).unwrap();
    if c.major() == 12 {
        assert_eq!(after, created, "PostgreSQL 12: the slot takes the reported flush position, even behind it");
    } else {
        assert_eq!(after, advanced, "PostgreSQL {}: the slot stays where it was", c.version());
    }
}

/// What the tests read from each plugin's payloads (tests/common/plugins.rs).
#[test]
fn plugin_payload_actions() {
    let td = Plugin::TestDecoding;
    assert_eq!(td.action(b"BEGIN 123"), b'B');
    assert_eq!(td.action(b"COMMIT 123 (at 2026-01-01)"), b'C');
    assert_eq!(td.action(b"table public.t: INSERT: id[integer]:1 v[text]:'a: b'"), b'I');
    assert_eq!(td.action(b"table public.t: UPDATE: id[integer]:1"), b'U');
    assert_eq!(td.action(b"table public.t: DELETE: id[integer]:1"), b'D');
    assert_eq!(td.action(b"table public.a, public.b: TRUNCATE: (no-flags)"), b'T');
    assert_eq!(td.action(b"message: transactional: 1 prefix: p, sz: 1 content:x"), b'M');
    assert_eq!(Plugin::Wal2json.action(br#"{"action":"I","schema":"public"}"#), b'I');
    assert!(td.has_value(b"table public.t: INSERT: id[integer]:42 v[text]:'x'", "id", 42));
    assert!(!td.has_value(b"table public.t: INSERT: id[integer]:420", "id", 42));
    let w = br#"{"action":"I","columns":[{"name":"id","type":"integer","value":42}]}"#;
    assert!(Plugin::Wal2json.has_value(w, "id", 42));
}
