//! Connecting as libpq does, against real servers: `target_session_attrs` across a primary and a hot standby
//! (made from a copy of the stopped primary's data directory), on plain and replication connections; the TCP
//! keepalive options and `tcp_user_timeout` read back from the connected socket; `connect_timeout` per host.

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

use std::sync::Arc;

use pgrepl::client::{Client, NoticeHandler};
use pgrepl::config::Config;
use pgrepl::ErrorKind;
use pgrepl_testkit::{ClusterOptions, TempCluster};

async fn connect(conninfo: &str) -> pgrepl::Result<Client> {
    let cfg = Config::parse(conninfo)?;
    let quiet: NoticeHandler = Arc::new(|_| {});
    Client::connect_with_notices(&cfg, quiet).await
}

/// The port of the server `conninfo` lands on, and whether it is in recovery. Plain SQL, so not for
/// `replication=true`.
async fn landed_on(conninfo: &str) -> pgrepl::Result<(u16, bool)> {
    let mut c = connect(conninfo).await?;
    let r = c.simple_query("SELECT inet_server_port(), pg_catalog.pg_is_in_recovery()").await?;
    let row = &r[0].rows[0];
    let port = row[0].as_deref().unwrap().parse().unwrap();
    let standby = row[1].as_deref() == Some("t");
    c.close().await?;
    Ok((port, standby))
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(r: pgrepl::Result<T>, kind: ErrorKind, needle: &str, what: &str) {
    match r {
        Ok(v) => panic!("{what}: connected ({v:?}), expected a {kind:?} error containing {needle:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            assert!(e.to_string().contains(needle), "{what}: {e} should mention {needle:?}");
        }
    }
}

/// `host=127.0.0.1,… port=a,… user=<superuser> dbname=postgres <extra>`.
fn hosts(ports: &[u16], user: &str, extra: &str) -> String {
    let h = vec!["127.0.0.1"; ports.len()].join(",");
    let p: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!("host={h} port={} user={user} dbname=postgres {extra}", p.join(","))
}

#[tokio::test(flavor = "current_thread")]
async fn target_session_attrs_against_a_primary_and_a_standby() {
    let primary = TempCluster::start(ClusterOptions::default()).unwrap_or_else(|e| panic!("cluster: {e}"));
    let standby = primary.start_standby().unwrap_or_else(|e| panic!("standby: {e}"));
    let (p, s) = (primary.port(), standby.port());
    let su = primary.superuser().to_owned();
    let ci = |ports: &[u16], extra: &str| hosts(ports, &su, extra);
    assert_eq!(landed_on(&ci(&[p], "")).await.unwrap(), (p, false));
    assert_eq!(landed_on(&ci(&[s], "")).await.unwrap(), (s, true));

    // (hosts in order, target_session_attrs, the server expected)
    let cases: &[(&[u16], &str, (u16, bool))] = &[
        (&[s, p], "any", (s, true)),
        (&[s, p], "read-write", (p, false)),
        (&[s, p], "primary", (p, false)),
        (&[p, s], "read-only", (s, true)),
        (&[p, s], "standby", (s, true)),
        (&[p, s], "prefer-standby", (s, true)),
        (&[s, p], "prefer-standby", (s, true)),
        // No standby listed: prefer-standby's second pass takes any server.
        (&[p], "prefer-standby", (p, false)),
    ];
    for &(ports, attrs, want) in cases {
        let conninfo = ci(ports, &format!("target_session_attrs={attrs}"));
        assert_eq!(landed_on(&conninfo).await.unwrap(), want, "{conninfo}");
        // The same through PGTARGETSESSIONATTRS.
        let env = |k: &str| (k == "PGTARGETSESSIONATTRS").then(|| attrs.to_owned());
        let cfg = Config::from_env_and_str(&ci(ports, "sslmode=disable"), &env).unwrap();
        let mut c = Client::connect(&cfg).await.unwrap();
        let r = c.simple_query("SELECT inet_server_port()").await.unwrap();
        assert_eq!(r[0].rows[0][0].as_deref(), Some(want.0.to_string().as_str()), "PGTARGETSESSIONATTRS={attrs}");
        c.close().await.unwrap();
    }

    // No server of the kind asked for: a typed error saying why the last host did not fit.
    for (ports, attrs, why) in [
        (&[p][..], "standby", "server is not in hot standby mode"),
        (&[p][..], "read-only", "session is not read-only"),
        (&[s][..], "read-write", "session is read-only"),
        (&[s][..], "primary", "server is in hot standby mode"),
    ] {
        let conninfo = ci(ports, &format!("target_session_attrs={attrs}"));
        assert_refused(landed_on(&conninfo).await, ErrorKind::TargetSessionAttrs, why, &conninfo);
    }
    // read-write is about the session, primary about recovery: a primary whose sessions default to read-only.
    let ro = "options='-c default_transaction_read_only=on'";
    assert_refused(
        landed_on(&ci(&[p], &format!("{ro} target_session_attrs=read-write"))).await,
        ErrorKind::TargetSessionAttrs,
        "session is read-only",
        "read-write, default_transaction_read_only=on",
    );
    assert_eq!(landed_on(&ci(&[p], &format!("{ro} target_session_attrs=primary"))).await.unwrap(), (p, false));
    assert_eq!(landed_on(&ci(&[p], &format!("{ro} target_session_attrs=read-only"))).await.unwrap(), (p, false));

    // A host that refuses connections is skipped, as is one of the wrong kind.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert_eq!(landed_on(&ci(&[dead, s, p], "target_session_attrs=read-write")).await.unwrap(), (p, false));

    // An unknown value is refused before connecting.
    assert_refused(
        landed_on(&ci(&[s, p], "target_session_attrs=writable")).await,
        ErrorKind::Config,
        "target_session_attrs",
        "unknown value",
    );

    // Replication connections: logical (SQL works there) and physical (the walsender runs no SQL; from 14 the
    // server reports in_hot_standby and default_transaction_read_only at startup, which is what is used; before
    // 14 SHOW, a replication command, asks).
    for replication in ["database", "true"] {
        for (attrs, want) in [("read-write", p), ("standby", s), ("prefer-standby", s), ("primary", p)] {
            let conninfo = ci(&[s, p], &format!("replication={replication} target_session_attrs={attrs}"));
            if replication == "true" && primary.major() < 14 && matches!(attrs, "standby" | "primary") {
                // Before 14 nothing a physical walsender answers tells a standby from a primary (no
                // in_hot_standby; SQL such as pg_is_in_recovery() refused): every host is unfit, as with libpq.
                assert_refused(
                    connect(&conninfo).await,
                    ErrorKind::TargetSessionAttrs,
                    "cannot execute SQL commands in WAL sender for physical replication",
                    &conninfo,
                );
                continue;
            }
            let mut c = connect(&conninfo).await.unwrap_or_else(|e| panic!("{conninfo}: {e}"));
            let sys = c.identify_system().await.unwrap();
            assert!(sys.timeline >= 1, "{conninfo}");
            // Which server: its port (SHOW works on a walsender of either kind), and from 14 in_hot_standby as
            // it reported at startup.
            let port = c.simple_query("SHOW port").await.unwrap();
            assert_eq!(port[0].get(0, "port"), Some(want.to_string().as_str()), "{conninfo}");
            let in_standby = c.session().parameter("in_hot_standby");
            if primary.major() >= 14 {
                assert_eq!(in_standby, Some(if want == s { "on" } else { "off" }), "{conninfo}");
            } else {
                assert_eq!(in_standby, None, "PostgreSQL {} reports no in_hot_standby", primary.version());
            }
            c.close().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn keepalive_options_reach_the_socket() {
    let cluster = TempCluster::start(ClusterOptions::default()).unwrap_or_else(|e| panic!("cluster: {e}"));
    let base = cluster.conninfo(cluster.superuser(), "postgres");
    let options = |extra: &str| {
        let conninfo = format!("{base} {extra}");
        async move {
            let c = connect(&conninfo).await.unwrap_or_else(|e| panic!("{conninfo}: {e}"));
            let o = c.tcp_options().expect("a TCP connection");
            c.close().await.unwrap();
            o
        }
    };
    // libpq's default: keepalives on.
    assert!(options("").await.keepalive);
    let o = options("keepalives_idle=7 keepalives_interval=3 keepalives_count=4 tcp_user_timeout=9000").await;
    assert!(o.keepalive);
    assert_eq!((o.keepalive_idle, o.keepalive_interval, o.keepalive_count, o.user_timeout), (7, 3, 4, 9000));
    // Another set of values, so that none of the above is a kernel default.
    let o = options("keepalives=1 keepalives_idle=61 keepalives_interval=11 keepalives_count=2 tcp_user_timeout=1234")
        .await;
    assert_eq!((o.keepalive_idle, o.keepalive_interval, o.keepalive_count, o.user_timeout), (61, 11, 2, 1234));
    // keepalives=0: no SO_KEEPALIVE; tcp_user_timeout still applies (libpq would skip it).
    let o = options("keepalives=0 keepalives_idle=7 tcp_user_timeout=4321").await;
    assert!(!o.keepalive);
    assert_eq!(o.user_timeout, 4321);
    // Over TLS-capable negotiation (the server has no TLS: prefer falls back) the options are the same.
    let o = options("sslmode=prefer keepalives_idle=9").await;
    assert_eq!(o.keepalive_idle, 9);
    // A value the kernel refuses fails the connection with the setsockopt error, as in libpq.
    match connect(&format!("{base} keepalives_idle=0")).await {
        Ok(_) => panic!("keepalives_idle=0 connected"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Io, "{e}");
            assert!(e.to_string().contains("TCP_KEEPIDLE"), "{e}");
        }
    }
    // Unix-domain sockets have no TCP options.
    let c = connect(&format!("{} keepalives_idle=7", cluster.socket_conninfo(cluster.superuser(), "postgres")))
        .await
        .unwrap();
    assert_eq!(c.tcp_options(), None);
    c.close().await.unwrap();
}

/// `connect_timeout` bounds each host's attempt: a server that accepts the TCP connection and never answers is
/// given up on, and the next host is tried.
#[tokio::test(flavor = "current_thread")]
async fn connect_timeout_moves_on_to_the_next_host() {
    let cluster = TempCluster::start(ClusterOptions::default()).unwrap_or_else(|e| panic!("cluster: {e}"));
    // The kernel completes the handshake into the backlog; nothing ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sp = silent.local_addr().unwrap().port();
    let su = cluster.superuser().to_owned();
    let conninfo = hosts(&[sp, cluster.port()], &su, "connect_timeout=2 sslmode=disable");
    assert_eq!(landed_on(&conninfo).await.unwrap(), (cluster.port(), false));
    let alone = hosts(&[sp], &su, "connect_timeout=2 sslmode=disable");
    assert_refused(landed_on(&alone).await, ErrorKind::Timeout, &format!("127.0.0.1:{sp} timed out"), "silent");
    drop(silent);
}
