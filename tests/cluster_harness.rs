//! The throwaway-cluster harness itself (`pgrepl_testkit`): it starts (any major 12-18 with `PG_BIN_DIR`),
//! every test role can log in with its method, wal2json is there on 15 (the test plugin decodes on every major),
//! restarts keep the port, Drop cleans up.
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

use pgrepl_testkit::{ClusterOptions, TempCluster, USERS};

fn start(opts: ClusterOptions) -> TempCluster {
    let t = Instant::now();
    let cluster = match TempCluster::start(opts) {
        Ok(cluster) => cluster,
        Err(e) => panic!("cluster start failed: {e}"),
    };
    eprintln!("cluster on port {} started in {:?}", cluster.port(), t.elapsed());
    cluster
}

#[test]
fn cluster_lifecycle_logins_and_wal2json() {
    let cluster = start(ClusterOptions::default());
    let dir = cluster.socket_dir().to_path_buf();
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    assert!(cluster.log_path().is_file());

    assert_eq!(cluster.psql("postgres", "SELECT 1").unwrap(), "1");
    assert_eq!(cluster.psql("postgres", "SHOW wal_level").unwrap(), "logical");
    assert_eq!(cluster.psql("postgres", "SHOW wal_sender_timeout").unwrap(), "5s");
    assert_eq!(cluster.psql("postgres", "SHOW max_replication_slots").unwrap(), "20");
    let version_num: u32 = cluster.psql("postgres", "SHOW server_version_num").unwrap().parse().unwrap();
    assert_eq!(version_num / 10000, cluster.major());
    assert!(pgrepl_testkit::SUPPORTED_MAJORS.contains(&cluster.major()), "{}", cluster.version());
    let (major, version) = pgrepl_testkit::server_version(cluster.bin_dir()).unwrap();
    assert_eq!((major, version.as_str()), (cluster.major(), cluster.version()));
    assert_eq!(cluster.psql("postgres", "SHOW server_version").unwrap().split(' ').next(), Some(cluster.version()));
    assert_eq!(cluster.psql("postgres", "SELECT current_user").unwrap(), cluster.superuser());
    assert_eq!(cluster.psql("other", "SELECT current_database()").unwrap(), "other");
    let err = cluster.psql("postgres", "SELECT * FROM no_such_table").unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");

    // A multi-statement script runs statement by statement; output carries only rows.
    let out = cluster
        .psql("postgres", "CREATE TABLE t (id int primary key, v text);\nINSERT INTO t VALUES (1, 'a'), (2, 'b');\nSELECT count(*) FROM t;")
        .unwrap();
    assert_eq!(out, "2");

    // wal2json is installed on 15 and decodes; elsewhere the test plugin is test_decoding, which decodes.
    if cluster.major() == pgrepl_testkit::WAL2JSON_MAJOR {
        assert!(cluster.has_wal2json() && cluster.test_plugin() == "wal2json");
        cluster.psql("postgres", "SELECT pg_create_logical_replication_slot('t', 'wal2json')").unwrap();
        cluster.psql("postgres", "INSERT INTO t VALUES (3, 'c')").unwrap();
        let changes = cluster
            .psql("postgres", "SELECT data FROM pg_logical_slot_get_changes('t', NULL, NULL, 'format-version', '2')")
            .unwrap();
        assert!(changes.contains(r#""action":"I""#) && changes.contains(r#""table":"t""#), "{changes}");
    } else {
        assert_eq!(cluster.test_plugin(), if cluster.has_wal2json() { "wal2json" } else { "test_decoding" });
        cluster.psql("postgres", "SELECT pg_create_logical_replication_slot('t', 'test_decoding')").unwrap();
        cluster.psql("postgres", "INSERT INTO t VALUES (3, 'c')").unwrap();
        let changes =
            cluster.psql("postgres", "SELECT data FROM pg_logical_slot_get_changes('t', NULL, NULL)").unwrap();
        assert!(changes.contains("table public.t: INSERT: id[integer]:3 v[text]:'c'"), "{changes}");
    }

    // Stored password hashes: md5 for u_md5, SCRAM for the others that have one.
    let hashes = cluster
        .psql("postgres", "SELECT rolname, substring(rolpassword from '^(md5|SCRAM-SHA-256\\$)') FROM pg_authid WHERE rolname LIKE 'u\\_%' ORDER BY 1")
        .unwrap();
    assert_eq!(hashes, "u_md5|md5\nu_password|SCRAM-SHA-256$\nu_scram|SCRAM-SHA-256$\nu_trust|");

    // Every role logs in over TCP (and over the socket, and ::1 when there is one) with its password.
    for &(user, password, method) in USERS {
        let mut conninfos = vec![cluster.conninfo(user, "postgres"), cluster.socket_conninfo(user, "postgres")];
        if cluster.has_ipv6() {
            conninfos.push(cluster.conninfo(user, "postgres").replace("host=127.0.0.1", "host=::1"));
        }
        for conninfo in conninfos {
            let who = cluster
                .psql_with(&conninfo, Some(password), "SELECT current_user")
                .unwrap_or_else(|e| panic!("{user} ({method}) cannot log in: {e}"));
            assert_eq!(who, user);
            let wrong = cluster.psql_with(&conninfo, Some("wrong password"), "SELECT 1");
            if method == "trust" {
                assert!(wrong.is_ok(), "{user}: trust ignores the password: {wrong:?}");
            } else {
                let err = wrong.expect_err(user).to_string();
                assert!(err.contains("authentication failed"), "{user}: {err}");
            }
        }
        // Replication connections are allowed too, and the role may create slots.
        let repl = format!("{} replication=database", cluster.conninfo(user, "postgres"));
        let slot = cluster.psql_with(&repl, Some(password), "IDENTIFY_SYSTEM").unwrap();
        assert!(slot.contains('|'), "{slot}");
        let slot_name = format!("slot_{user}");
        cluster
            .psql_with(
                &cluster.conninfo(user, "postgres"),
                Some(password),
                &format!("SELECT pg_create_logical_replication_slot('{slot_name}', '{}')", cluster.test_plugin()),
            )
            .unwrap();
        // A table of its own in postgres.public.
        cluster
            .psql_with(&cluster.conninfo(user, "postgres"), Some(password), &format!("CREATE TABLE own_{user} (x int)"))
            .unwrap();
    }
    // A user that does not exist has no pg_hba line.
    let err = cluster.psql_with(&cluster.conninfo("no_such_role", "postgres"), None, "SELECT 1").unwrap_err();
    assert!(err.to_string().contains("no pg_hba.conf entry"), "{err}");

    // Crash restart: same port, slots survive.
    let port = cluster.port();
    let t = Instant::now();
    cluster.restart_immediate().unwrap();
    eprintln!("restart_immediate took {:?}", t.elapsed());
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.psql_with(&cluster.conninfo("u_trust", "postgres"), None, "SELECT 1").unwrap(), "1");
    let slots = cluster.psql("postgres", "SELECT count(*) FROM pg_replication_slots").unwrap();
    assert_eq!(slots, (USERS.len() + 1).to_string());

    // Clean stop and start again.
    cluster.stop().unwrap();
    assert!(cluster.psql("postgres", "SELECT 1").is_err());
    cluster.start_again().unwrap();
    assert_eq!(cluster.psql("postgres", "SELECT 1").unwrap(), "1");

    drop(cluster);
    assert!(!dir.exists(), "Drop must remove {}", dir.display());
}

#[test]
fn socket_only_cluster_with_extra_conf() {
    let cluster = start(ClusterOptions {
        tcp: false,
        wal_sender_timeout: Duration::from_millis(1500),
        extra_conf: vec!["work_mem = '7MB'".into(), "application_name = 'harness'".into()],
        ..ClusterOptions::default()
    });
    assert_eq!(cluster.psql("postgres", "SHOW listen_addresses").unwrap(), "");
    assert_eq!(cluster.psql("postgres", "SHOW wal_sender_timeout").unwrap(), "1500ms");
    assert_eq!(cluster.psql("postgres", "SHOW work_mem").unwrap(), "7MB");
    let conninfo = cluster.socket_conninfo("u_scram", "other");
    assert_eq!(cluster.psql_with(&conninfo, Some("pw_scram"), "SELECT current_database()").unwrap(), "other");
    assert!(cluster.psql_with(&cluster.conninfo("u_trust", "postgres"), None, "SELECT 1").is_err());
}

#[test]
fn two_clusters_side_by_side() {
    let a = start(ClusterOptions::default());
    let b = start(ClusterOptions::default());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.psql("postgres", "CREATE TABLE only_in_a ()").unwrap();
    assert!(b.psql("postgres", "SELECT * FROM only_in_a").is_err());
    let (dir_a, dir_b) = (a.socket_dir().to_path_buf(), b.socket_dir().to_path_buf());
    drop(a);
    assert!(!dir_a.exists());
    assert_eq!(b.psql("postgres", "SELECT 1").unwrap(), "1");
    drop(b);
    assert!(!dir_b.exists());
}
