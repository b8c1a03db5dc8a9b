//! Authentication, server errors, notices and slot commands against a real PostgreSQL (the throwaway cluster of
//! `pgrepl_testkit`, one per test binary, stopped at exit; any major 12-18 with `PG_BIN_DIR`). Slots use the
//! plugin of `tests/common/plugins.rs`: wal2json where the server has it (Debian's 15), else test_decoding.
//! What differs by server release is asserted per release: READ_REPLICATION_SLOT (15+), the server version
//! in every test that states one, password_encryption's default (SCRAM from 14, MD5 before).
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

mod common;
#[path = "common/plugins.rs"]
mod plugins;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::proto::commands::{CreateSlot, SnapshotAction};
use pgrepl::{Error, ErrorKind};
use pgrepl_testkit::USERS;

use common::{cluster, notice_collector};
use plugins::Plugin;

/// Conninfo for `user` over TCP or the socket, with `password` (when not empty) and `extra`.
fn conninfo(tcp: bool, user: &str, password: &str, db: &str, extra: &str) -> String {
    let c = cluster();
    let mut s = if tcp { c.conninfo(user, db) } else { c.socket_conninfo(user, db) };
    if !password.is_empty() {
        s.push_str(&format!(" password={password}"));
    }
    s.push_str(" connect_timeout=10 ");
    s.push_str(extra);
    s
}

fn config(tcp: bool, user: &str, password: &str, db: &str, extra: &str) -> Config {
    let s = conninfo(tcp, user, password, db, extra);
    Config::parse(&s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

async fn connect(tcp: bool, user: &str, password: &str, db: &str, extra: &str) -> pgrepl::Result<Client> {
    Client::connect(&config(tcp, user, password, db, extra)).await
}

async fn connect_err(tcp: bool, user: &str, password: &str, db: &str, extra: &str) -> Error {
    let e = connect(tcp, user, password, db, extra).await.expect_err("connection should fail");
    if password.len() > 3 {
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(password), "password in error: {shown}");
    }
    e
}

fn password_of(user: &str) -> &'static str {
    USERS.iter().find(|u| u.0 == user).map(|u| u.1).unwrap()
}

/// A replication connection as u_scram over TCP.
async fn replication_client() -> Client {
    connect(true, "u_scram", "pw_scram", "postgres", "replication=database").await.unwrap()
}

async fn query_one(c: &mut Client, sql: &str) -> Option<String> {
    let r = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    r.last().and_then(|r| r.rows.first()).and_then(|row| row.first().cloned()).flatten()
}

// ---- logins ----

#[tokio::test]
async fn every_method_over_tcp_and_socket_plain_and_replication() {
    for &(user, password, method) in USERS {
        for tcp in [true, false] {
            let how = format!("{user} ({method}) over {}", if tcp { "TCP" } else { "the socket" });
            let mut c = connect(tcp, user, password, "postgres", "").await.unwrap_or_else(|e| panic!("{how}: {e}"));
            assert_eq!(query_one(&mut c, "SELECT current_user").await.as_deref(), Some(user), "{how}");
            let version = c.session().server_version_num().unwrap();
            let major = cluster().major();
            assert!((major * 10000..(major + 1) * 10000).contains(&version), "{how}: {version}, major {major}");
            assert!(c.session().process_id.is_some(), "{how}: no BackendKeyData");
            c.close().await.unwrap();

            let mut r = connect(tcp, user, password, "postgres", "replication=database")
                .await
                .unwrap_or_else(|e| panic!("{how}, replication: {e}"));
            let sys = r.identify_system().await.unwrap_or_else(|e| panic!("{how}: IDENTIFY_SYSTEM: {e}"));
            assert_eq!(sys.dbname.as_deref(), Some("postgres"), "{how}");
            assert!(sys.timeline >= 1, "{how}");
            assert!(sys.system_id.chars().all(|c| c.is_ascii_digit()) && sys.system_id.len() > 10, "{sys:?}");
            assert!(!sys.xlogpos.is_invalid(), "{sys:?}");
            r.close().await.unwrap();
        }
    }
}

#[tokio::test]
async fn physical_replication_connection_identifies_without_database() {
    let mut r = connect(false, "u_md5", "pw_md5", "postgres", "replication=true").await.unwrap();
    let sys = r.identify_system().await.unwrap();
    assert_eq!(sys.dbname, None);
    r.close().await.unwrap();
}

/// The harness sets `password_encryption = 'scram-sha-256'` for every role it makes; a server left alone hashes
/// new passwords with its own default: SCRAM-SHA-256 from PostgreSQL 14, MD5 before. On a cluster whose
/// postgresql.conf no longer sets it, a role created without saying how is stored that way, and pgrepl logs in
/// as it through an `md5` pg_hba line — with MD5 on 12-13, with SCRAM on 14+ (an `md5` line lets a SCRAM
/// verifier authenticate with SCRAM), which `require_auth` proves.
#[tokio::test]
async fn password_encryption_default_by_server_version() {
    let c = pgrepl_testkit::TempCluster::start(Default::default()).unwrap();
    let conf_path = c.data_dir().join("postgresql.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let harness_line = "password_encryption = 'scram-sha-256'\n";
    assert!(conf.contains(harness_line), "the harness's setting moved: update this test");
    std::fs::write(&conf_path, conf.replace(harness_line, "")).unwrap();
    let hba_path = c.data_dir().join("pg_hba.conf");
    let hba = std::fs::read_to_string(&hba_path).unwrap();
    std::fs::write(&hba_path, format!("host all u_default 127.0.0.1/32 md5\n{hba}")).unwrap();
    c.stop().unwrap();
    c.start_again().unwrap();

    let (default, hash, method) =
        if c.major() >= 14 { ("scram-sha-256", "SCRAM-SHA-256$", "scram-sha-256") } else { ("md5", "md5", "md5") };
    assert_eq!(c.psql("postgres", "SHOW password_encryption").unwrap(), default, "PostgreSQL {}", c.version());
    let boot = c.psql("postgres", "SELECT boot_val FROM pg_settings WHERE name = 'password_encryption'").unwrap();
    assert_eq!(boot, default, "the compiled-in default of PostgreSQL {}", c.version());
    c.psql("postgres", "CREATE ROLE u_default LOGIN REPLICATION PASSWORD 'pw_default'").unwrap();
    let stored = c.psql("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = 'u_default'").unwrap();
    assert!(stored.starts_with(hash), "PostgreSQL {}: stored {stored:?}", c.version());

    let conninfo =
        |extra: &str| format!("{} password=pw_default connect_timeout=10 {extra}", c.conninfo("u_default", "postgres"));
    for extra in [format!("require_auth={method}"), format!("require_auth={method} replication=database")] {
        let cfg = Config::parse(&conninfo(&extra)).unwrap();
        let mut client =
            Client::connect(&cfg).await.unwrap_or_else(|e| panic!("PostgreSQL {}, {extra}: {e}", c.version()));
        if extra.contains("replication") {
            client.identify_system().await.unwrap();
        } else {
            assert_eq!(query_one(&mut client, "SELECT current_user").await.as_deref(), Some("u_default"));
        }
        client.close().await.unwrap();
    }
    // the other method is not what the server asked for
    let other = if method == "md5" { "scram-sha-256" } else { "md5" };
    let e = Client::connect(&Config::parse(&conninfo(&format!("require_auth={other}"))).unwrap()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "PostgreSQL {}: {e}", c.version());
    // and a wrong password is the server's refusal
    let wrong = format!("{} password=wrong connect_timeout=10", c.conninfo("u_default", "postgres"));
    let e = Client::connect(&Config::parse(&wrong).unwrap()).await.unwrap_err();
    assert_eq!(e.code(), Some("28P01"), "{e}");
}

// ---- server-reported errors ----

#[tokio::test]
async fn wrong_password_is_28p01_with_fields() {
    for user in ["u_password", "u_md5", "u_scram"] {
        for tcp in [true, false] {
            for extra in ["", "replication=database"] {
                let e = connect_err(tcp, user, "not-the-password", "postgres", extra).await;
                assert_eq!(e.kind(), ErrorKind::AuthFailed, "{user}: {e}");
                assert!(!e.is_retryable(), "{user}: {e}");
                assert_eq!(e.code(), Some("28P01"), "{user}: {e}");
                let db = e.as_db().unwrap();
                assert_eq!(db.severity, "FATAL");
                assert_eq!(db.message, format!("password authentication failed for user \"{user}\""));
                assert!(e.to_string().contains("28P01"), "{e}");
            }
        }
    }
}

#[tokio::test]
async fn missing_password_is_refused_by_the_client() {
    for user in ["u_password", "u_md5", "u_scram"] {
        for tcp in [true, false] {
            let e = connect_err(tcp, user, "", "postgres", "").await;
            assert_eq!(e.kind(), ErrorKind::PasswordRequired, "{user}: {e}");
            assert_eq!(e.code(), None, "pgrepl's own error: {e}");
            assert!(!e.is_retryable(), "{user}: {e}");
            assert!(e.to_string().contains("password required"), "{e}");
        }
    }
}

#[tokio::test]
async fn missing_database_is_3d000() {
    for (user, password) in [("u_trust", ""), ("u_scram", "pw_scram")] {
        for tcp in [true, false] {
            let e = connect_err(tcp, user, password, "no_such_db", "").await;
            assert_eq!(e.kind(), ErrorKind::Db, "{e}");
            assert_eq!(e.code(), Some("3D000"), "{e}");
            let db = e.as_db().unwrap();
            assert_eq!(db.severity, "FATAL");
            assert!(db.message.contains("no_such_db"), "{e}");
        }
    }
    // a logical replication connection needs its database too
    let e = connect_err(true, "u_trust", "", "no_such_db", "replication=database").await;
    assert_eq!(e.code(), Some("3D000"), "{e}");
}

#[tokio::test]
async fn no_pg_hba_entry_is_28000() {
    // The role does not exist and pg_hba.conf has no line for it: the server answers 28000 before asking for
    // any password.
    for tcp in [true, false] {
        for extra in ["", "replication=database"] {
            let e = connect_err(tcp, "no_such_role", "whatever-pw", "postgres", extra).await;
            assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
            assert_eq!(e.code(), Some("28000"), "{e}");
            let db = e.as_db().unwrap();
            assert_eq!(db.severity, "FATAL");
            assert!(db.message.contains("no pg_hba.conf entry"), "{e}");
            assert!(db.message.contains("no_such_role"), "{e}");
        }
    }
}

// ---- require_auth ----

#[tokio::test]
async fn require_scram_refuses_md5_and_password_users() {
    for user in ["u_md5", "u_password"] {
        for tcp in [true, false] {
            let e = connect_err(tcp, user, password_of(user), "postgres", "require_auth=scram-sha-256").await;
            assert_eq!(e.kind(), ErrorKind::Auth, "{user}: {e}");
            assert!(e.to_string().contains("require_auth"), "{e}");
            assert!(e.as_db().is_none());
        }
    }
    let c = connect(true, "u_scram", "pw_scram", "postgres", "require_auth=scram-sha-256").await.unwrap();
    c.close().await.unwrap();
    let c = connect(false, "u_scram", "pw_scram", "postgres", "require_auth=scram-sha-256 replication=database")
        .await
        .unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn require_not_password_refuses_the_password_user() {
    let e = connect_err(true, "u_password", "pw_cleartext", "postgres", "require_auth=!password").await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    for (user, password) in [("u_md5", "pw_md5"), ("u_scram", "pw_scram"), ("u_trust", "")] {
        let c = connect(true, user, password, "postgres", "require_auth=!password")
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        c.close().await.unwrap();
    }
    let c = connect(true, "u_password", "pw_cleartext", "postgres", "require_auth=password").await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn require_none() {
    let c = connect(true, "u_trust", "", "postgres", "require_auth=none").await.unwrap();
    c.close().await.unwrap();
    for (user, password) in [("u_scram", "pw_scram"), ("u_md5", "pw_md5"), ("u_password", "pw_cleartext")] {
        let e = connect_err(true, user, password, "postgres", "require_auth=none").await;
        assert_eq!(e.kind(), ErrorKind::Auth, "{user}: {e}");
    }
}

#[tokio::test]
async fn require_md5_fails_against_trust() {
    for require in ["require_auth=md5", "require_auth=scram-sha-256", "require_auth=!none"] {
        let e = connect_err(true, "u_trust", "", "postgres", require).await;
        assert_eq!(e.kind(), ErrorKind::Auth, "{require}: {e}");
    }
    let c = connect(true, "u_md5", "pw_md5", "postgres", "require_auth=md5").await.unwrap();
    c.close().await.unwrap();
}

// ---- .pgpass ----

fn write_pgpass(dir: &std::path::Path, mode: u32, lines: &[String]) -> std::path::PathBuf {
    let path = dir.join(format!("pgpass-{mode:o}"));
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[tokio::test]
async fn password_from_pgpass_file() {
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let socket_dir = c.socket_dir().to_string_lossy().into_owned();
    let lines = vec![
        "# comment".to_string(),
        format!("127.0.0.1:{}:postgres:u_scram:pw_scram", c.port()),
        format!("127.0.0.1:*:*:u_md5:pw_md5"),
        format!("{}:{}:postgres:u_password:pw_cleartext", socket_dir.replace(':', "\\:"), c.port()),
        "*:*:*:u_other:nope".to_string(),
    ];
    let good = write_pgpass(dir.path(), 0o600, &lines);
    let open = write_pgpass(dir.path(), 0o644, &lines);

    let env_for =
        |path: std::path::PathBuf| move |k: &str| (k == "PGPASSFILE").then(|| path.to_string_lossy().into_owned());

    for (conninfo, who) in [
        (c.conninfo("u_scram", "postgres"), "u_scram"),
        (c.conninfo("u_md5", "postgres"), "u_md5"),
        (c.socket_conninfo("u_password", "postgres"), "u_password"),
    ] {
        let conninfo = format!("{conninfo} connect_timeout=10");
        let env = env_for(good.clone());
        let cfg = Config::from_env_and_str(&conninfo, &env).unwrap();
        assert!(cfg.password_for(0).is_some(), "{who}: no password found in the file");
        let mut client = Client::connect(&cfg).await.unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(query_one(&mut client, "SELECT current_user").await.as_deref(), Some(who));
        client.close().await.unwrap();

        // The same file readable by others is ignored (with a warning), so the server's request goes unanswered.
        let env = env_for(open.clone());
        let (cfg, warnings) = Config::from_env_and_str_with_warnings(&conninfo, &env).unwrap();
        assert_eq!(cfg.password_for(0), None, "{who}: a 0644 password file must be ignored");
        assert!(!warnings.is_empty(), "{who}: no warning for a 0644 password file");
        let e = Client::connect(&cfg).await.expect_err("no password");
        assert_eq!(e.kind(), ErrorKind::PasswordRequired, "{who}: {e}");
    }

    // A password in the string wins over the file.
    let env = env_for(good.clone());
    let cfg = Config::from_env_and_str(
        &format!("{} password=wrong-one connect_timeout=10", c.conninfo("u_scram", "postgres")),
        &env,
    )
    .unwrap();
    let e = Client::connect(&cfg).await.expect_err("wrong password");
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert_eq!(e.code(), Some("28P01"), "{e}");
}

// ---- notices ----

#[tokio::test]
async fn notice_reaches_the_handler() {
    let (handler, seen) = notice_collector();
    let cfg = config(true, "u_trust", "", "postgres", "");
    let mut c = Client::connect_with_notices(&cfg, handler).await.unwrap();
    c.simple_query("DROP TABLE IF EXISTS nonexistent_x").await.unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].severity, "NOTICE");
        assert_eq!(seen[0].code, "00000");
        assert!(seen[0].message.contains("nonexistent_x"), "{:?}", seen[0]);
    }
    // RAISE WARNING with detail and hint, in a DO block
    c.simple_query("DO $$BEGIN RAISE WARNING 'careful' USING DETAIL = 'd1', HINT = 'h1'; END$$").await.unwrap();
    {
        let seen = seen.lock().unwrap();
        let w = seen.last().unwrap();
        assert_eq!((w.severity.as_str(), w.message.as_str()), ("WARNING", "careful"));
        assert_eq!((w.detail.as_deref(), w.hint.as_deref()), (Some("d1"), Some("h1")));
    }
    // an error in a multi-statement query: the first error, typed, and the connection stays usable
    let e = c.simple_query("SELECT 1; SELECT * FROM no_such_table_y; SELECT 3").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Db);
    assert_eq!(e.code(), Some("42P01"), "{e}");
    assert_eq!(e.as_db().unwrap().severity, "ERROR");
    assert_eq!(query_one(&mut c, "SELECT 41 + 1").await.as_deref(), Some("42"));
    c.close().await.unwrap();
}

// ---- slot commands ----

/// The plugin the slots of this suite use.
fn plugin() -> Plugin {
    Plugin::of(&cluster())
}

fn logical(slot: &str, temporary: bool, snapshot: SnapshotAction) -> CreateSlot {
    CreateSlot { slot: slot.into(), plugin: plugin().name().into(), temporary, snapshot, two_phase: false }
}

/// Servers before 15 have no READ_REPLICATION_SLOT: pgrepl refuses it with the server's version and sends nothing.
fn assert_read_slot_unsupported(e: &Error, version: &str) {
    assert_eq!(e.kind(), ErrorKind::ServerVersionUnsupported, "{e}");
    assert_eq!(e.code(), None, "pgrepl's own error, nothing sent: {e}");
    assert!(!e.is_retryable(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("READ_REPLICATION_SLOT") && msg.contains("PostgreSQL 15"), "{msg}");
    assert!(msg.contains(version), "the error names the server's version {version}: {msg}");
}

/// Names the server can never accept as a slot name (`[a-z0-9_]`, 1 to 63 bytes; ReplicationSlotValidateName).
const INVALID_SLOT_NAMES: &[&str] = &[
    "UpperCase",
    "with space",
    "with\"quote",
    "Bad \"Name\"",
    "it's",
    "semi;colon",
    "x\" LOGICAL \"wal2json",
    "back\\slash",
    "\u{e9}t\u{e9}",
    "a-b",
    "",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // 64 bytes
];

/// pgrepl's own error for an invalid slot name: kind Config, naming the slot and the rule.
fn assert_invalid_slot_name(name: &str, what: &str, e: &Error) {
    assert_eq!(e.kind(), ErrorKind::Config, "{what} {name:?}: {e}");
    assert_eq!(e.code(), None, "{what} {name:?}: the server's error, not pgrepl's: {e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("invalid replication slot name {name:?}: ")), "{what} {name:?}: {msg}");
    assert!(msg.contains("[a-z0-9_]"), "{what} {name:?}: {msg}");
}

/// The replication commands the server received, in order (`log_replication_commands`).
fn received_replication_commands(c: &pgrepl_testkit::TempCluster) -> Vec<String> {
    let log = std::fs::read_to_string(c.log_path()).unwrap();
    log.lines().filter_map(|l| l.split_once("received replication command: ")).map(|(_, cmd)| cmd.to_string()).collect()
}

/// A name the server cannot accept is refused by pgrepl before anything is sent, the same way on every release.
/// (The servers disagree: 15.18's lexer answers a doubled `"` with a syntax error, 42601; 15.20 with an invalid
/// name, 42602; a 64-byte name is truncated and creates another slot.) The cluster logs every replication
/// command it receives: none of these reach it.
#[tokio::test]
async fn invalid_slot_names_are_refused_before_anything_is_sent() {
    let cluster = pgrepl_testkit::TempCluster::start(pgrepl_testkit::ClusterOptions {
        extra_conf: vec!["log_replication_commands = on".into()],
        ..Default::default()
    })
    .unwrap();
    let cfg = Config::parse(&format!(
        "{} replication=database connect_timeout=10",
        cluster.conninfo(cluster.superuser(), "postgres")
    ))
    .unwrap();
    let mut c = Client::connect(&cfg).await.unwrap();
    for &name in INVALID_SLOT_NAMES {
        for temporary in [true, false] {
            for snapshot in [SnapshotAction::NoExport, SnapshotAction::Export] {
                let e = c.create_replication_slot(&logical(name, temporary, snapshot)).await.unwrap_err();
                assert_invalid_slot_name(name, "CREATE_REPLICATION_SLOT", &e);
            }
        }
        for wait in [true, false] {
            let e = c.drop_replication_slot(name, wait).await.unwrap_err();
            assert_invalid_slot_name(name, "DROP_REPLICATION_SLOT", &e);
        }
        let e = c.read_replication_slot(name).await.unwrap_err();
        assert_invalid_slot_name(name, "READ_REPLICATION_SLOT", &e);
        // START_REPLICATION takes the connection: one of its own, left unused
        let other = Client::connect(&cfg).await.unwrap();
        let Err(e) = other
            .start_replication(
                name,
                &pgrepl::plugin::Wal2json,
                pgrepl::Lsn(0),
                &[],
                pgrepl::stream::StreamConfig::default(),
            )
            .await
        else {
            panic!("START_REPLICATION {name:?} started")
        };
        assert_invalid_slot_name(name, "START_REPLICATION", &e);
    }
    // the connection is still fine, and the log shows that it is the first replication command received
    // (READ_REPLICATION_SLOT on 15+; before, pgrepl refuses it without sending it, and DROP is the marker)
    if cluster.major() >= 15 {
        assert_eq!(c.read_replication_slot("marker_after_invalid_names").await.unwrap(), None);
        assert_eq!(received_replication_commands(&cluster), ["READ_REPLICATION_SLOT \"marker_after_invalid_names\""]);
    } else {
        let e = c.read_replication_slot("marker_after_invalid_names").await.unwrap_err();
        assert_read_slot_unsupported(&e, cluster.version());
        let e = c.drop_replication_slot("marker_after_invalid_names", false).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SlotMissing, "{e}");
        assert_eq!(received_replication_commands(&cluster), ["DROP_REPLICATION_SLOT \"marker_after_invalid_names\""]);
    }
    assert_eq!(cluster.psql("postgres", "SELECT count(*) FROM pg_replication_slots").unwrap(), "0");
    c.close().await.unwrap();
}

/// Valid names that still need their quotes (keywords of the replication grammar, a leading digit, 63 bytes)
/// work against the server, and a plugin name that needs quoting is sent quoted.
#[tokio::test]
async fn valid_slot_names_are_quoted_and_work() {
    let mut c = replication_client().await;
    let (major, version) = (cluster().major(), cluster().version().to_string());
    let longest = "q".repeat(pgrepl::proto::commands::MAX_SLOT_NAME_LEN);
    for name in ["logical", "temporary", "wait", "slot", "export_snapshot", "0digit_first", "_", longest.as_str()] {
        for temporary in [true, false] {
            let s = c
                .create_replication_slot(&logical(name, temporary, SnapshotAction::NoExport))
                .await
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(s.slot_name, name);
            assert_eq!(
                query_one(&mut c, &format!("SELECT slot_type FROM pg_replication_slots WHERE slot_name = '{name}'"))
                    .await
                    .as_deref(),
                Some("logical"),
                "{name:?}"
            );
            if !temporary && major >= 15 {
                // READ_REPLICATION_SLOT finds it, and refuses it: it is logical, the command is for physical
                // slots (any error in a walsender drops its temporary slots, hence only here)
                let e = c.read_replication_slot(name).await.unwrap_err();
                assert_eq!(e.code(), Some("0A000"), "{name:?}: {e}");
            }
            if major < 15 {
                // nothing is sent, so even the temporary slot survives the refusal
                assert_read_slot_unsupported(&c.read_replication_slot(name).await.unwrap_err(), &version);
            }
            c.drop_replication_slot(name, false).await.unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        // a name that does not exist: DROP says so, READ answers nothing
        let e = c.drop_replication_slot(name, true).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SlotMissing, "{name:?}: {e}");
        assert_eq!(e.code(), Some("42704"), "{name:?}: {e}");
        if major >= 15 {
            assert_eq!(c.read_replication_slot(name).await.unwrap(), None, "{name:?}");
        } else {
            assert_read_slot_unsupported(&c.read_replication_slot(name).await.unwrap_err(), &version);
        }
    }
    // a plugin name that needs quoting is sent quoted: the server takes the whole of it as the library's name.
    // Which error it gives depends on the release (15.18: no such file, 58P01; 15.19+: not in
    // output_plugin_libraries, 42501), so only that name is checked. No `"` in it: 15.18's lexer cannot read a
    // doubled `"` in any identifier (42601), 15.20's can.
    let mut odd = logical("odd_plugin", true, SnapshotAction::NoExport);
    odd.plugin = "wal2json (SNAPSHOT 'export'), x".into();
    let e = c.create_replication_slot(&odd).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Db, "{e}");
    assert_ne!(e.code(), Some("42601"), "{e}");
    assert!(e.to_string().contains("\"wal2json (SNAPSHOT 'export'), x\""), "{e}");
    // the connection is still fine
    c.identify_system().await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn slot_lifecycle() {
    let mut c = replication_client().await;

    // temporary, exporting a snapshot that another session can import while this one stays idle
    let t = c.create_replication_slot(&logical("auth_tmp_export", true, SnapshotAction::Export)).await.unwrap();
    assert_eq!(t.slot_name, "auth_tmp_export");
    assert!(!t.consistent_point.is_invalid());
    assert_eq!(t.output_plugin.as_deref(), Some(plugin().name()));
    let snapshot = t.snapshot_name.clone().filter(|s| !s.is_empty()).expect("an exported snapshot");
    let mut plain = connect(true, "u_scram", "pw_scram", "postgres", "").await.unwrap();
    let r = plain
        .simple_query(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snapshot}'; SELECT 7; COMMIT"
        ))
        .await
        .unwrap();
    assert_eq!(r.iter().map(|r| r.tag.as_str()).collect::<Vec<_>>(), ["BEGIN", "SET", "SELECT 1", "COMMIT"]);
    plain.close().await.unwrap();

    // permanent, no snapshot
    let p = c.create_replication_slot(&logical("auth_perm", false, SnapshotAction::NoExport)).await.unwrap();
    assert_eq!(p.slot_name, "auth_perm");
    assert_eq!(p.snapshot_name, None, "{p:?}");

    // both are listed, via SQL on the replication connection
    let r = c.simple_query("select slot_name, temporary from pg_replication_slots order by 1").await.unwrap();
    assert_eq!(r[0].columns, ["slot_name", "temporary"]);
    let rows = &r[0].rows;
    let temporary = |name: &str| rows.iter().find(|row| row[0].as_deref() == Some(name)).map(|row| row[1].clone());
    assert_eq!(temporary("auth_tmp_export"), Some(Some("t".into())), "{rows:?}");
    assert_eq!(temporary("auth_perm"), Some(Some("f".into())), "{rows:?}");

    // CREATE of an existing slot: 42710, from another session for the temporary one
    let mut other = replication_client().await;
    for (name, temporary) in [("auth_tmp_export", true), ("auth_perm", false), ("auth_perm", true)] {
        let e = other.create_replication_slot(&logical(name, temporary, SnapshotAction::NoExport)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SlotExists, "{name}: {e}");
        assert_eq!(e.code(), Some("42710"), "{name}: {e}");
        assert!(e.to_string().contains("already exists"), "{e}");
    }
    other.close().await.unwrap();

    // READ_REPLICATION_SLOT (15+): a logical slot is refused by the server; a missing one is None
    if cluster().major() >= 15 {
        let e = c.read_replication_slot("auth_perm").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Db, "{e}");
        assert_eq!(e.code(), Some("0A000"), "{e}");
        assert_eq!(c.read_replication_slot("auth_no_such_slot").await.unwrap(), None);
    } else {
        let e = c.read_replication_slot("auth_perm").await.unwrap_err();
        assert_read_slot_unsupported(&e, cluster().version());
        // an error the server reports, to see what it does to the temporary slot below
        let e = c.simple_query("SELECT * FROM auth_no_such_table").await.unwrap_err();
        assert_eq!(e.code(), Some("42P01"), "{e}");
    }

    // Server behaviour worth knowing: an ERROR on a walsender connection drops that session's temporary slots.
    let left = c.simple_query("select count(*) from pg_replication_slots where slot_name = 'auth_tmp_export'").await;
    assert_eq!(left.unwrap()[0].get(0, "count"), Some("0"));

    // DROP ... WAIT, then again: 42704
    c.drop_replication_slot("auth_perm", true).await.unwrap();
    let e = c.drop_replication_slot("auth_perm", true).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SlotMissing, "{e}");
    assert_eq!(e.code(), Some("42704"), "{e}");
    c.close().await.unwrap();

    // A temporary slot disappears with its connection.
    let mut c = replication_client().await;
    c.create_replication_slot(&logical("auth_tmp_gone", true, SnapshotAction::NoExport)).await.unwrap();
    c.close().await.unwrap();
    let cl = cluster();
    // (the backend ends after the client has gone: polled, with a deadline only a slot that stays reaches)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left =
            cl.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'auth_tmp_gone'").unwrap();
        if left == "0" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the temporary slot outlived its connection: {left}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A slot streamed by one connection: another's START_REPLICATION and DROP (without WAIT) are refused with 55006,
/// kind SlotActive, which a reconnect may mend; once the first lets go, both work.
#[tokio::test]
async fn an_active_slot_is_slot_active_and_retryable() {
    let mut c = replication_client().await;
    c.create_replication_slot(&logical("auth_active", false, SnapshotAction::NoExport)).await.unwrap();
    let held =
        c.start_replication("auth_active", plugin().rules(), pgrepl::Lsn(0), &[], Default::default()).await.unwrap();
    let other = replication_client().await;
    let Err(e) =
        other.start_replication("auth_active", plugin().rules(), pgrepl::Lsn(0), &[], Default::default()).await
    else {
        panic!("START_REPLICATION of a slot in use started")
    };
    assert_eq!(e.kind(), ErrorKind::SlotActive, "{e}");
    assert_eq!(e.code(), Some("55006"), "{e}");
    assert!(e.is_retryable(), "{e}");
    let mut other = replication_client().await;
    let e = other.drop_replication_slot("auth_active", false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SlotActive, "{e}");
    assert!(e.is_retryable(), "{e}");
    held.stop().await.unwrap().close().await.unwrap();
    // the walsender lets go of the slot as its connection ends: DROP ... WAIT waits for that
    other.drop_replication_slot("auth_active", true).await.unwrap();
    // and a missing one is SlotMissing, not retried
    let Err(e) =
        other.start_replication("auth_active", plugin().rules(), pgrepl::Lsn(0), &[], Default::default()).await
    else {
        panic!("START_REPLICATION of a dropped slot started")
    };
    assert_eq!(e.kind(), ErrorKind::SlotMissing, "{e}");
    assert_eq!(e.code(), Some("42704"), "{e}");
    assert!(!e.is_retryable(), "{e}");
}

/// READ_REPLICATION_SLOT (PostgreSQL 15+) reads a physical slot; before 15 pgrepl refuses it with the server's
/// version (ServerVersionUnsupported), sends nothing, and the connection stays usable.
#[tokio::test]
async fn read_replication_slot_on_a_physical_slot() {
    let mut c = replication_client().await;
    query_one(&mut c, "SELECT pg_create_physical_replication_slot('auth_phys', true)").await;
    if cluster().major() < 15 {
        let e = c.read_replication_slot("auth_phys").await.unwrap_err();
        assert_read_slot_unsupported(&e, cluster().version());
        c.identify_system().await.unwrap();
        c.drop_replication_slot("auth_phys", false).await.unwrap();
        c.close().await.unwrap();
        return;
    }
    let s = c.read_replication_slot("auth_phys").await.unwrap().expect("the slot exists");
    assert_eq!(s.slot_type, "physical");
    assert!(s.restart_lsn.is_some_and(|l| !l.is_invalid()), "{s:?}");
    assert_eq!(s.restart_tli, Some(1));
    c.drop_replication_slot("auth_phys", false).await.unwrap();
    assert_eq!(c.read_replication_slot("auth_phys").await.unwrap(), None);
    c.close().await.unwrap();
}

#[tokio::test]
async fn slot_commands_on_a_plain_connection_are_refused_by_the_server() {
    let mut c = connect(true, "u_scram", "pw_scram", "postgres", "").await.unwrap();
    let e = c.identify_system().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Db, "{e}");
    assert_eq!(e.code(), Some("42601"), "{e}"); // plain SQL grammar: a syntax error
    c.close().await.unwrap();
}
