//! `pgrepl recv` against `pg_recvlogical` on the same slot contents: byte-identical raw output for wal2json
//! format 1, format 1 with write-in-chunks, and format 2 (where the server has wal2json: Debian's 15), and for
//! test_decoding (every major); slot actions; option errors; exit codes. Slots whose plugin does not matter use
//! the test plugin (tests/common/plugins.rs: wal2json on 15, test_decoding elsewhere).
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

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use pgrepl_testkit::{ClusterOptions, TempCluster};

#[path = "../../tests/common/plugins.rs"]
mod plugins;
use plugins::Plugin;

const PGREPL: &str = env!("CARGO_BIN_EXE_pgrepl");

fn pg_recvlogical(c: &TempCluster) -> std::path::PathBuf {
    let p = c.bin_dir().join("pg_recvlogical");
    if p.exists() {
        p
    } else {
        "pg_recvlogical".into()
    }
}

fn conn_args(c: &TempCluster) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        c.port().to_string(),
        "-U".into(),
        c.superuser().into(),
        "-d".into(),
        "postgres".into(),
    ]
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.env_remove("PGPASSWORD").output().expect("run");
    out
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A workload exercising escapes, unicode, numerics, NULLs, arrays, TOAST, updates and deletes, messages.
const WORKLOAD: &str = r#"
CREATE TABLE w(id int PRIMARY KEY, t text, n numeric, f float8, b bool, a text[], j jsonb, big text);
ALTER TABLE w REPLICA IDENTITY DEFAULT;
INSERT INTO w VALUES (1, E'quote " backslash \\ tab \t newline \n', 0.0000000001, -0, true, ARRAY['x','y z'], '{"k": [1, 2]}', repeat('toast', 5000));
INSERT INTO w VALUES (2, 'héllo wörld ✓', 123456789012345678901234567890.123456789, 3.4028235e+38, NULL, NULL, NULL, NULL);
BEGIN; INSERT INTO w SELECT g, 'row ' || g, g / 7.0, g * 1.5, g % 2 = 0, ARRAY[g::text], jsonb_build_object('g', g), NULL FROM generate_series(3, 300) g; COMMIT;
UPDATE w SET t = 'changed' WHERE id = 1;
UPDATE w SET n = 'NaN' WHERE id = 2;
DELETE FROM w WHERE id % 7 = 0;
SELECT pg_logical_emit_message(true, 'tx', 'transactional message');
SELECT pg_logical_emit_message(false, 'ntx', 'non-transactional message');
BEGIN; COMMIT;
"#;

/// `-P PLUGIN` for `--create-slot` on this server: none (recv's default, wal2json) where the server has
/// wal2json, else the test plugin.
fn plugin_args(c: &TempCluster) -> Vec<&'static str> {
    match Plugin::of(c) {
        Plugin::Wal2json => vec![],
        p => vec!["-P", p.name()],
    }
}

fn compare_format(c: &TempCluster, plugin: &str, name: &str, opts: &[&str]) {
    let slot_a = format!("cmp_{name}_pg");
    let slot_b = format!("cmp_{name}_rs");
    for s in [&slot_a, &slot_b] {
        c.psql("postgres", &format!("SELECT pg_create_logical_replication_slot('{s}', '{plugin}')")).unwrap();
    }
    c.psql(
        "postgres",
        &WORKLOAD
            .replace("CREATE TABLE w(", &format!("CREATE TABLE w_{name}("))
            .replace(" w ", &format!(" w_{name} "))
            .replace("INTO w ", &format!("INTO w_{name} "))
            .replace("TABLE w ", &format!("TABLE w_{name} ")),
    )
    .unwrap();
    let end = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (fa, fb) = (dir.path().join("pg.out"), dir.path().join("rs.out"));
    let mut o: Vec<String> = vec![];
    for x in opts {
        o.push("-o".into());
        o.push(x.to_string());
    }
    let common = |slot: &str, file: &Path| -> Vec<String> {
        let mut v = conn_args(c);
        v.extend(["-S".into(), slot.into(), "--start".into(), "-E".into(), end.clone(), "-f".into()]);
        v.push(file.display().to_string());
        v.extend(o.iter().cloned());
        v.extend(["-n".into()]);
        v
    };
    ok(&run(Command::new(pg_recvlogical(c)).args(common(&slot_a, &fa))));
    ok(&run(Command::new(PGREPL).arg("recv").args(common(&slot_b, &fb))));
    let a = std::fs::read(&fa).unwrap();
    let b = std::fs::read(&fb).unwrap();
    assert!(a.len() > 1000, "{name}: pg_recvlogical wrote only {} bytes", a.len());
    if a != b {
        let la: Vec<&[u8]> = a.split(|&x| x == b'\n').collect();
        let lb: Vec<&[u8]> = b.split(|&x| x == b'\n').collect();
        let first = la.iter().zip(&lb).position(|(x, y)| x != y);
        panic!(
            "{name}: outputs differ ({} vs {} bytes, {} vs {} lines; first differing line {:?}):\npg: {:?}\nrs: {:?}",
            a.len(),
            b.len(),
            la.len(),
            lb.len(),
            first,
            first.map(|i| String::from_utf8_lossy(la[i])),
            first.map(|i| String::from_utf8_lossy(lb[i]))
        );
    }
    // pgrepl acknowledged everything it wrote up to the end position: a second run replays nothing.
    // (pg_recvlogical's slot is not checked: it sometimes exits at the end position without confirming the last
    // transaction it wrote, which a second run then replays.)
    let mut again = conn_args(c);
    again.extend(["-S".into(), slot_b.clone(), "--start".into(), "-n".into(), "-E".into(), end.clone()]);
    again.extend(["-f".into(), "-".into()]);
    again.extend(o.iter().cloned());
    let out = run(Command::new(PGREPL).arg("recv").args(&again));
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{name}: {slot_b} replayed after a clean end");
}

#[test]
fn raw_output_is_byte_identical_to_pg_recvlogical() {
    if !pgrepl_testkit::wal2json_suite() {
        return;
    }
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    compare_format(
        &c,
        "wal2json",
        "v2",
        &["format-version=2", "include-xids=1", "include-timestamp=1", "include-lsn=1", "include-type-oids"],
    );
    compare_format(&c, "wal2json", "v1", &["include-xids=1", "include-timestamp=1", "include-lsn=1", "include-pk=1"]);
    compare_format(&c, "wal2json", "v1chunks", &["write-in-chunks=1", "include-xids=1"]);
    compare_format(&c, "wal2json", "v1pretty", &["pretty-print=1", "write-in-chunks=1"]);
}

/// The same for test_decoding, which every server has.
#[test]
fn raw_test_decoding_output_is_byte_identical_to_pg_recvlogical() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    compare_format(&c, "test_decoding", "td", &["include-xids=1", "include-timestamp=1"]);
    compare_format(&c, "test_decoding", "tdskip", &["skip-empty-xacts=1", "include-xids=0"]);
}

#[test]
fn slot_actions_and_errors() {
    let c = TempCluster::start(ClusterOptions {
        extra_conf: vec!["log_replication_commands = on".into()],
        ..ClusterOptions::default()
    })
    .unwrap();
    let mut conn = conn_args(&c);
    conn.extend(plugin_args(&c).into_iter().map(String::from));
    // create, create again with --if-not-exists, create again without it (error, exit 1), drop
    ok(&run(Command::new(PGREPL).arg("recv").args(&conn).args(["-S", "act", "--create-slot"])));
    let slot = c.psql("postgres", "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'act'").unwrap();
    assert_eq!(slot, c.test_plugin());
    ok(&run(Command::new(PGREPL).arg("recv").args(&conn).args(["-S", "act", "--create-slot", "--if-not-exists"])));
    let dup = run(Command::new(PGREPL).arg("recv").args(&conn).args(["-S", "act", "--create-slot"]));
    assert_eq!(dup.status.code(), Some(1));
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(err.contains("42710") && err.contains("already exists"), "{err}");
    ok(&run(Command::new(PGREPL).arg("recv").args(&conn).args(["-S", "act", "--drop-slot"])));
    assert_eq!(c.psql("postgres", "SELECT count(*) FROM pg_replication_slots").unwrap(), "0");
    // a slot name the server can never accept is pgrepl's own error, for every action, given with the other
    // argument errors before connecting, and no replication command naming it reaches the server (whose releases
    // disagree on how they refuse it: 15.18 answers a doubled `"` with a syntax error, 15.20 with an invalid name)
    for action in [&["--create-slot"][..], &["--drop-slot"], &["--start", "-f", "-"]] {
        let bad = run(Command::new(PGREPL).arg("recv").args(&conn).args(["-S", "Bad \"Name\""]).args(action));
        assert_eq!(bad.status.code(), Some(1), "{action:?}");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(
            err.trim_end(),
            "pgrepl recv: error: invalid replication slot name \"Bad \\\"Name\\\"\": 'B' at byte 0 is not allowed; a \
             slot name is 1 to 63 bytes of lower-case letters, digits and underscores ([a-z0-9_])\nTry \"pgrepl recv \
             --help\" for more information.",
            "{action:?}"
        );
        assert!(bad.stdout.is_empty(), "{action:?}");
    }
    let log = std::fs::read_to_string(c.log_path()).unwrap();
    let commands: Vec<&str> =
        log.lines().filter_map(|l| l.split_once("received replication command: ")).map(|x| x.1).collect();
    assert!(commands.iter().any(|cmd| cmd.contains("\"act\"")), "the log has the commands: {commands:?}");
    assert!(!commands.iter().any(|cmd| cmd.contains("Name")), "{commands:?}");
    assert_eq!(c.psql("postgres", "SELECT count(*) FROM pg_replication_slots").unwrap(), "0");
    // option errors as pg_recvlogical reports them
    for (args, msg) in [
        (vec!["-S", "x"], "at least one action needs to be specified"),
        (vec!["--start"], "no slot specified"),
        (vec!["-S", "x", "--start"], "no target file specified"),
        (vec!["-S", "x", "--drop-slot", "--start"], "cannot use --create-slot or --start together with --drop-slot"),
        (vec!["-S", "x", "--create-slot", "-E", "0/1"], "--endpos may only be specified with --start"),
        (vec!["-S", "x", "--start", "-f", "-", "-E", "zz"], "could not parse"),
        (vec!["--bogus"], "unrecognized option"),
    ] {
        let out = run(Command::new(PGREPL).arg("recv").args(&args));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `pgrepl recv` on a terminal (util-linux `script` gives it one): it prompts for a password when the server asks
/// for one and none is configured (`ErrorKind::PasswordRequired`), and only then — not for a `require_auth`
/// refusal whose text happens to say "password".
#[test]
fn password_prompt_only_when_the_server_asks_for_a_password() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    let plugin = plugin_args(&c).join(" ");
    let on_a_terminal = |user: &str, conninfo: &str, slot: &str, typed: &str| {
        let cmd = format!(
            "{PGREPL} recv -h 127.0.0.1 -p {} -U {user} -d '{conninfo}' -S {slot} --create-slot {plugin}",
            c.port()
        );
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", "/nonexistent")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(typed.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // SCRAM, no password configured: a prompt, the typed password, the slot
    let (code, tty) = on_a_terminal("u_scram", "dbname=postgres", "prompted", "pw_scram\n");
    assert_eq!(code, Some(0), "{tty}");
    assert!(tty.contains("Password: "), "{tty}");
    assert_eq!(
        c.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'prompted'").unwrap(),
        "1"
    );
    // cleartext refused by require_auth: the error ("server requested password authentication, which
    // require_auth does not allow") and no prompt
    let (code, tty) =
        on_a_terminal("u_password", "dbname=postgres require_auth=scram-sha-256", "refused", "pw_cleartext\n");
    assert_eq!(code, Some(1), "{tty}");
    assert!(!tty.contains("Password: "), "{tty}");
    assert!(tty.contains("require_auth does not allow"), "{tty}");
    assert_eq!(
        c.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'refused'").unwrap(),
        "0"
    );
}

#[test]
fn sigint_stops_cleanly_with_a_final_status_update() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    let p = Plugin::of(&c);
    let options: Vec<String> = p.cli_options().iter().flat_map(|o| ["-o".to_string(), o.to_string()]).collect();
    c.psql(
        "postgres",
        &format!(
            "CREATE TABLE s(id int PRIMARY KEY); SELECT pg_create_logical_replication_slot('sig', '{}')",
            p.name()
        ),
    )
    .unwrap();
    let before = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap();
    c.psql("postgres", "INSERT INTO s SELECT generate_series(1, 100)").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out");
    let mut child = Command::new(PGREPL)
        .arg("recv")
        .args(conn_args(&c))
        .args(["-S", "sig", "--start", "-F", "0"])
        .args(&options)
        .arg("-f")
        .arg(&file)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::fs::read(&file).map(|b| b.iter().filter(|&&x| x == b'\n').count()).unwrap_or(0) < 102 {
        assert!(std::time::Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The final status update confirmed the commit that was written.
    let out = std::fs::read_to_string(&file).unwrap();
    assert_eq!(p.action(out.lines().last().unwrap().as_bytes()), b'C', "{out}");
    // (Past the WAL end before the transaction: nothing else of this database could be confirmed. Not "within
    // 1 MB of the current WAL end", which is what the machine wrote meanwhile.)
    let confirmed = c
        .psql(
            "postgres",
            &format!("SELECT confirmed_flush_lsn > '{before}' FROM pg_replication_slots WHERE slot_name = 'sig'"),
        )
        .unwrap();
    assert_eq!(confirmed, "t");
    // nothing is replayed: restarting with an end position at the current WAL writes nothing new
    let end = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap();
    let again = run(Command::new(PGREPL)
        .arg("recv")
        .args(conn_args(&c))
        .args(&options)
        .args(["-S", "sig", "--start", "-n", "-E", &end, "-f", "-"]));
    ok(&again);
    assert_eq!(String::from_utf8_lossy(&again.stdout), "");
}

/// The changes of a `--output json` stream, projected to what every format carries.
fn changes(json: &[u8]) -> Vec<serde_json::Value> {
    let mut v = vec![];
    for line in json.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let o: serde_json::Value =
            serde_json::from_slice(line).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
        let action = o["action"].as_str().unwrap().to_string();
        let cols = |k: &str| -> serde_json::Value {
            o.get(k)
                .and_then(|c| c.as_array())
                .map(|a| a.iter().map(|c| serde_json::json!([c["name"], c["value"]])).collect::<Vec<_>>())
                .into()
        };
        let p = match action.as_str() {
            "B" | "C" => serde_json::json!([action]),
            "M" => serde_json::json!([action, o["transactional"], o["prefix"], o["content"]]),
            _ => serde_json::json!([action, o["schema"], o["table"], cols("columns"), cols("identity")]),
        };
        v.push(p);
    }
    v
}

#[test]
fn json_output_is_the_same_changes_from_formats_1_chunks_and_2() {
    if !pgrepl_testkit::wal2json_suite() {
        return;
    }
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    for s in ["j_v1", "j_chunks", "j_v2"] {
        c.psql("postgres", &format!("SELECT pg_create_logical_replication_slot('{s}', 'wal2json')")).unwrap();
    }
    c.psql(
        "postgres",
        r#"CREATE TABLE j(id int PRIMARY KEY, t text, n numeric, f float8, b bool, a int[], js jsonb);
        INSERT INTO j VALUES (1, E'esc " \\ \t \n é ✓', 0.0000000001, -0, true, '{1,2}', '{"k": "v"}');
        INSERT INTO j VALUES (2, NULL, 123456789012345678901234567890.123456789, 3.4028235e+38, NULL, NULL, NULL);
        BEGIN; INSERT INTO j SELECT g, 'r' || g, g / 3.0, g, g % 2 = 0, ARRAY[g], jsonb_build_object('g', g) FROM generate_series(3, 200) g; COMMIT;
        UPDATE j SET t = 'changed', n = 'NaN' WHERE id % 3 = 0;
        DELETE FROM j WHERE id % 5 = 0;
        SELECT pg_logical_emit_message(true, 'p', 'in a transaction');
        BEGIN; COMMIT;"#,
    )
    .unwrap();
    let end = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap();
    let recv = |slot: &str, opts: &[&str]| -> Vec<u8> {
        let mut args = conn_args(&c);
        args.extend(["-S", slot, "--start", "-n", "-E", &end, "-f", "-", "--output", "json"].map(String::from));
        for o in opts {
            args.extend(["-o".to_string(), o.to_string()]);
        }
        let out = run(Command::new(PGREPL).arg("recv").args(&args));
        ok(&out);
        out.stdout
    };
    let v1 = changes(&recv("j_v1", &["include-xids=1"]));
    let chunks = changes(&recv("j_chunks", &["write-in-chunks=1", "pretty-print=1"]));
    let v2 = changes(&recv("j_v2", &["format-version=2"]));
    assert_eq!(v2.len(), 321, "B+I+C ×2, 198 inserts, 66 updates, 40 deletes, a message, an empty transaction");
    assert_eq!(v1, v2, "format 1 and format 2 give different changes");
    assert_eq!(chunks, v2, "format 1 in chunks and format 2 give different changes");
}

/// `-E` inside a large transaction of a test_decoding slot: the transaction is delivered whole and nothing after
/// it. The slot's plugin comes from the server (no `-P` with `--start`), and its rules (`BEGIN` … `COMMIT`) say
/// where transactions end; wal2json's rules made every test_decoding line a unit of its own, and the stream
/// stopped inside the transaction.
#[test]
fn an_end_position_inside_a_test_decoding_transaction_delivers_it_whole() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    c.psql("postgres", "CREATE TABLE big(id int)").unwrap();
    let mut create = Command::new(PGREPL);
    create.arg("recv").args(conn_args(&c)).args(["-S", "td", "--create-slot", "-P", "test_decoding"]);
    ok(&run(&mut create));
    c.psql("postgres", "INSERT INTO big SELECT generate_series(1, 5000)").unwrap();
    c.psql("postgres", "INSERT INTO big VALUES (-1)").unwrap();
    // the LSN of the 2500th row, from the slot itself (peeking does not consume)
    let peek = c
        .psql(
            "postgres",
            "SELECT lsn FROM pg_logical_slot_peek_changes('td', NULL, NULL) WHERE data LIKE '%id[integer]:2500'",
        )
        .unwrap();
    let mid = peek.trim().to_string();
    assert!(pgrepl::Lsn::parse(&mid).is_ok(), "{peek:?}");
    let mut recv = Command::new(PGREPL);
    recv.arg("recv").args(conn_args(&c)).args(["-S", "td", "--start", "-E", &mid, "-f", "-", "-n"]);
    let out = run(&mut recv);
    ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("BEGIN")), "{:?}", &lines[..lines.len().min(3)]);
    assert!(lines.last().is_some_and(|l| l.starts_with("COMMIT")), "{:?}", &lines[lines.len().saturating_sub(3)..]);
    assert_eq!(lines.len(), 5002, "BEGIN, the 5000 rows, COMMIT; not the transaction after it");
    for (i, l) in lines[1..5001].iter().enumerate() {
        assert!(l.ends_with(&format!("id[integer]:{}", i + 1)), "line {}: {l}", i + 1);
    }
}

/// `--output json` on a test_decoding slot: the slot's plugin decodes (not wal2json's), each event one
/// format-2-shaped object with typed values, the same as a wal2json slot gives for the same rows (where the server
/// has wal2json: Debian's 15).
#[test]
fn json_output_of_a_test_decoding_slot_matches_a_wal2json_slot() {
    let c = TempCluster::start(ClusterOptions::default()).unwrap();
    let wal2json = c.has_wal2json();
    c.psql("postgres", "CREATE TABLE t(id int PRIMARY KEY, name text, ok boolean, n numeric)").unwrap();
    let slots: &[(&str, &str)] =
        if wal2json { &[("jt", "test_decoding"), ("jw", "wal2json")] } else { &[("jt", "test_decoding")] };
    for &(slot, plugin) in slots {
        let mut create = Command::new(PGREPL);
        create.arg("recv").args(conn_args(&c)).args(["-S", slot, "--create-slot", "-P", plugin]);
        ok(&run(&mut create));
    }
    c.psql(
        "postgres",
        "INSERT INTO t VALUES (1, 'a''b \"c\"', true, 1.50), (2, NULL, false, -7);
         UPDATE t SET name = 'x' WHERE id = 2; DELETE FROM t WHERE id = 1;",
    )
    .unwrap();
    let end = c.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap().trim().to_string();
    let json = |slot: &str, opts: &[&str]| -> (Vec<serde_json::Value>, String) {
        let mut recv = Command::new(PGREPL);
        recv.arg("recv").args(conn_args(&c)).args(["-S", slot, "--start", "-E", &end, "-f", "-", "-n"]);
        recv.args(["--output", "json"]);
        for o in opts {
            recv.args(["-o", o]);
        }
        let out = run(&mut recv);
        ok(&out);
        let text = String::from_utf8(out.stdout).unwrap();
        (text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect(), text)
    };
    let (td, td_text) = json("jt", &["include-xids=1"]);
    let actions: Vec<&str> = td.iter().map(|v| v["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["B", "I", "I", "C", "B", "U", "C", "B", "D", "C"], "{td:?}");
    assert_eq!(td[1]["columns"][1]["value"], "a'b \"c\"");
    assert_eq!(td[1]["columns"][2]["value"], true);
    assert!(td_text.contains(r#""name":"n","type":"numeric","value":1.50}"#), "numbers as exact text: {td_text}");
    assert_eq!(td[2]["columns"][1]["value"], serde_json::Value::Null);
    if !wal2json {
        pgrepl_testkit::skip(&format!(
            "test_decoding's JSON checked; its comparison with wal2json not run: wal2json is packaged for \
             PostgreSQL 15 only (server {})",
            c.version()
        ));
        return;
    }
    // the same rows as wal2json prints them (identity aside: test_decoding shows the key only for deletes)
    let (w, _) = json("jw", &["format-version=2"]);
    let rows = |v: &[serde_json::Value]| -> Vec<(String, String, String)> {
        v.iter()
            .filter(|e| matches!(e["action"].as_str(), Some("I" | "U" | "D")))
            .map(|e| (e["action"].to_string(), e["table"].to_string(), e["columns"].to_string()))
            .collect()
    };
    assert_eq!(rows(&td), rows(&w));
}
