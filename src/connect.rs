//! Connecting as libpq does: the hosts in order, each host's addresses in order, TCP socket options set before
//! `connect()`, `connect_timeout` per address, and `target_session_attrs` checked on each established session.
//!
//! Each attempt opens a socket (`conn::connect_socket`), negotiates TLS as `sslmode` says
//! (`crate::tls`), authenticates and runs the startup exchange ([`crate::auth::Authenticator`],
//! [`crate::proto::startup::Startup`]), and gives back the framed connection and its session parameters, which
//! [`crate::client::Client::connect`] wraps. This module imports `conn` and `tls`, never [`crate::client`] (see
//! `conn`'s docs for the chain).
//!
//! - **Addresses.** A host name is resolved and each of its addresses tried in turn; a `hostaddr` entry
//!   ([`Host::Addr`]) is connected to without a lookup. A connection failure (refused, unreachable, timed out,
//!   closed) moves on to the next address, then the next host. An authentication failure or another error the
//!   server reports ends the whole attempt, as in libpq.
//! - **`connect_timeout`** bounds each address's attempt — the TCP connection, TLS, authentication and the
//!   `target_session_attrs` check — as libpq (12+) does.
//! - **TCP options** (not for Unix-domain sockets): `keepalives` (default on) sets `SO_KEEPALIVE`, and
//!   `keepalives_idle`, `keepalives_interval`, `keepalives_count` set `TCP_KEEPIDLE`, `TCP_KEEPINTVL`,
//!   `TCP_KEEPCNT` when given; `tcp_user_timeout` sets `TCP_USER_TIMEOUT` (milliseconds). A value the kernel
//!   refuses (say `keepalives_idle=0`) fails that address with the `setsockopt` error, as in libpq. One
//!   difference: libpq skips `tcp_user_timeout` when `keepalives=0`; pgrepl sets it whatever `keepalives` says,
//!   so that no accepted option is ignored. [`crate::client::Client::tcp_options`] reads them back.
//! - **`target_session_attrs`**: `read-write` / `read-only` look at `default_transaction_read_only` and
//!   `in_hot_standby` as the server reports them at startup (PostgreSQL 14+), else ask `SHOW
//!   transaction_read_only`; `primary` / `standby` look at `in_hot_standby`, else ask `SELECT
//!   pg_catalog.pg_is_in_recovery()` (servers before 9.0 have no standby mode). A server of the wrong kind is
//!   left (Terminate) and the next *host* is tried, not the host's next address. `prefer-standby` tries every
//!   host for a standby first, then every host again accepting any server. When no host fits, the error has
//!   kind [`ErrorKind::TargetSessionAttrs`] and says why the last one did not.
//!   On a physical replication connection (`replication=true`) the walsender runs no SQL: against servers
//!   before 14, which do not report those parameters, the check fails for that host ("… failed"), as in libpq.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::BytesMut;

use crate::auth::Authenticator;
use crate::config::{Config, Host, TargetSessionAttrs};
use crate::conn::{connect_socket, Conn, Endpoint, NoticeHandler};
use crate::error::{Error, ErrorKind, Result};
use crate::proto::backend::{Authentication, BackendMessage};
use crate::proto::startup::{SessionInfo, Startup, StartupStatus};

pub use crate::conn::TcpOptions;

/// Connect to the first host of `cfg` that accepts us and fits `target_session_attrs`: the connection, after
/// its startup, and the session parameters the server reported.
pub(crate) async fn connect(cfg: &Config, notice: NoticeHandler) -> Result<(Conn, SessionInfo)> {
    if cfg.hosts.is_empty() {
        return Err(Error::config("host", "no host to connect to"));
    }
    let passes: &[TargetSessionAttrs] = match cfg.target_session_attrs {
        // First a standby, then anything (libpq's SERVER_TYPE_PREFER_STANDBY_PASS2).
        TargetSessionAttrs::PreferStandby => &[TargetSessionAttrs::Standby, TargetSessionAttrs::Any],
        ref t => std::slice::from_ref(t),
    };
    let mut last_err = None;
    for &want in passes {
        for (i, (host, port)) in cfg.hosts.iter().enumerate() {
            let endpoints = match endpoints(host, *port).await {
                Ok(e) => e,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            for endpoint in &endpoints {
                match attempt(cfg, i, host, endpoint, want, notice.clone()).await {
                    Ok(session) => return Ok(session),
                    // The wrong kind of server: the next host, not this host's next address (libpq).
                    Err(e) if e.kind() == ErrorKind::TargetSessionAttrs => {
                        last_err = Some(e);
                        break;
                    }
                    // Authentication and server-side errors are final; as in libpq only connection failures
                    // move on.
                    Err(e) if matches!(e.kind(), ErrorKind::Io | ErrorKind::Timeout | ErrorKind::Closed) => {
                        last_err = Some(e)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(last_err.unwrap_or_else(|| Error::config("host", "no host to connect to")))
}

/// The addresses to try for one host entry.
async fn endpoints(host: &Host, port: u16) -> Result<Vec<Endpoint>> {
    let name = match host {
        Host::Unix(dir) => return Ok(vec![Endpoint::Unix(dir.join(format!(".s.PGSQL.{port}")))]),
        Host::Tcp(name) => name.as_str(),
        Host::Addr { addr, .. } => addr.as_str(),
    };
    let what = || if name.contains(':') { format!("[{name}]:{port}") } else { format!("{name}:{port}") };
    let addrs: Vec<Endpoint> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| Error::io(format!("could not translate host name {} to an address", what()), e))?
        .map(Endpoint::Tcp)
        .collect();
    if addrs.is_empty() {
        return Err(Error::io(
            format!("could not translate host name {} to an address", what()),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        ));
    }
    Ok(addrs)
}

/// One address: connect, TLS, startup, then the session check; all within `connect_timeout`.
async fn attempt(
    cfg: &Config,
    host_index: usize,
    host: &Host,
    endpoint: &Endpoint,
    want: TargetSessionAttrs,
    notice: NoticeHandler,
) -> Result<(Conn, SessionInfo)> {
    let work = async {
        let (mut conn, mut info) = connect_one(cfg, host_index, host, endpoint, notice).await?;
        match check_session(&mut conn, &mut info, want).await {
            Ok(()) => Ok((conn, info)),
            Err(e) => {
                // Leave politely (libpq's sendTerminateConn).
                conn.terminate().await;
                Err(e)
            }
        }
    };
    match cfg.connect_timeout {
        Some(t) => match tokio::time::timeout(t, work).await {
            Ok(r) => r,
            Err(_) => {
                Err(Error::timeout(format!("connection to {} timed out after {} s", endpoint.describe(), t.as_secs())))
            }
        },
        None => work.await,
    }
}

/// The server's state as `target_session_attrs` sees it.
fn reported(info: &SessionInfo, name: &str) -> Option<bool> {
    match info.parameter(name)? {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Whether the server that `conn` reached is of the kind `want` asks for: `Ok(())`, or an error of kind
/// [`ErrorKind::TargetSessionAttrs`].
async fn check_session(conn: &mut Conn, info: &mut SessionInfo, want: TargetSessionAttrs) -> Result<()> {
    let wrong = |why: &str| {
        Error::new(ErrorKind::TargetSessionAttrs, format!("{why} (target_session_attrs={})", want.as_str()))
    };
    match want {
        TargetSessionAttrs::ReadWrite | TargetSessionAttrs::ReadOnly => {
            let read_only = match (reported(info, "default_transaction_read_only"), reported(info, "in_hot_standby")) {
                (Some(d), Some(h)) => d || h,
                _ => {
                    let v = query_one(conn, info, "SHOW transaction_read_only").await?;
                    v.starts_with("on")
                }
            };
            match (want, read_only) {
                (TargetSessionAttrs::ReadWrite, true) => Err(wrong("session is read-only")),
                (TargetSessionAttrs::ReadOnly, false) => Err(wrong("session is not read-only")),
                _ => Ok(()),
            }
        }
        TargetSessionAttrs::Primary | TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby => {
            let in_standby = match reported(info, "in_hot_standby") {
                Some(h) => h,
                None if info.server_version_num().is_some_and(|v| v < 90000) => false,
                None => query_one(conn, info, "SELECT pg_catalog.pg_is_in_recovery()").await?.starts_with('t'),
            };
            match (want, in_standby) {
                (TargetSessionAttrs::Primary, true) => Err(wrong("server is in hot standby mode")),
                (TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby, false) => {
                    Err(wrong("server is not in hot standby mode"))
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The one value `sql` returns. Any failure (on a physical walsender, SQL is refused) makes this host unfit,
/// as libpq's `"SHOW transaction_read_only" failed`.
async fn query_one(conn: &mut Conn, info: &mut SessionInfo, sql: &str) -> Result<String> {
    let failed = |detail: String| Error::new(ErrorKind::TargetSessionAttrs, format!("\"{sql}\" failed: {detail}"));
    let results = match conn.simple_query(sql, info).await {
        Ok(r) => r,
        Err(e) if e.as_db().is_some() => return Err(failed(e.to_string())),
        Err(e) => return Err(e),
    };
    match results.first().map(|r| r.rows.as_slice()) {
        Some([row]) => match row.first() {
            Some(Some(v)) => Ok(v.clone()),
            _ => Err(failed("no value".into())),
        },
        _ => Err(failed("not one row".into())),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// One attempt: socket, TLS, authentication and startup
// ---------------------------------------------------------------------------------------------------------------

/// One connection to `endpoint` (an address of `host`), with TLS as `sslmode` says and the startup exchange.
async fn connect_one(
    cfg: &Config,
    host_index: usize,
    host: &Host,
    endpoint: &Endpoint,
    notice: NoticeHandler,
) -> Result<(Conn, SessionInfo)> {
    #[cfg(not(feature = "__tls"))]
    return connect_attempt(cfg, host_index, host, endpoint, notice).await;
    // sslmode=allow and prefer may follow a failed attempt with one the other way, as libpq does.
    #[cfg(feature = "__tls")]
    {
        let mut plan = crate::tls::Plan::new(cfg, host);
        loop {
            match connect_attempt(cfg, host_index, host, endpoint, notice.clone(), &mut plan).await {
                Err(e) if plan.retry_after(&e) => {}
                r => return r,
            }
        }
    }
}

/// One attempt on a fresh socket: TLS as the plan says (or a refusal when TLS is required and not built in),
/// then authentication and the startup exchange, until ReadyForQuery.
async fn connect_attempt(
    cfg: &Config,
    host_index: usize,
    #[cfg_attr(not(feature = "__tls"), allow(unused_variables))] host: &Host,
    endpoint: &Endpoint,
    notice: NoticeHandler,
    #[cfg(feature = "__tls")] plan: &mut crate::tls::Plan,
) -> Result<(Conn, SessionInfo)> {
    let sock = connect_socket(cfg, endpoint).await?;
    // TLS (or not) before anything else is sent: SSLRequest and the handshake, per sslmode.
    #[cfg(feature = "__tls")]
    let (sock, tls) = plan.negotiate(cfg, host, endpoint, sock).await?;
    #[cfg(not(feature = "__tls"))]
    let tls = match endpoint {
        Endpoint::Tcp(_) if cfg.sslmode.requires_tls() => {
            return Err(Error::new(
                ErrorKind::Tls,
                format!(
                    "sslmode={} needs TLS, but pgrepl was built without it (feature `tls` or `tls-aws-lc`)",
                    cfg.sslmode
                ),
            ))
        }
        _ => None,
    };
    let mut conn = Conn::new(sock, notice);
    let nonce = crate::auth::scram::random_nonce()?;
    // When this attempt is dropped (connect_timeout), a SCRAM key derivation running on the blocking pool stops.
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let auth =
        Authenticator::new(cfg.user.as_bytes(), cfg.password_for(host_index), cfg.require_auth.clone(), tls, nonce)
            .with_channel_binding(cfg.channel_binding)
            .with_cancel(cancel.0.clone());
    let mut params: Vec<(&str, &str)> = vec![("user", &cfg.user), ("database", &cfg.dbname)];
    if let Some(r) = &cfg.replication {
        params.push(("replication", r));
    }
    if let Some(a) = &cfg.application_name {
        params.push(("application_name", a));
    }
    if let Some(o) = &cfg.options {
        params.push(("options", o));
    }
    params.push(("client_encoding", "UTF8"));
    let mut startup = Startup::new(auth, &params, &mut conn.wbuf)?;
    conn.flush().await?;
    loop {
        let msg = conn.read_message().await?;
        let status = if matches!(msg, BackendMessage::Authentication(Authentication::SaslContinue(_))) {
            // SCRAM's key derivation costs up to the iteration cap (10,000,000 rounds: seconds): run it off
            // the runtime thread so connect_timeout and every other task stay live meanwhile.
            let (s, r, out) = tokio::task::spawn_blocking(move || {
                let mut out = BytesMut::new();
                let r = startup.handle(msg, &mut out);
                (startup, r, out)
            })
            .await
            .map_err(|e| Error::auth(format!("SCRAM computation failed: {e}")))?;
            startup = s;
            conn.wbuf.extend_from_slice(&out);
            r?
        } else {
            startup.handle(msg, &mut conn.wbuf)?
        };
        match status {
            StartupStatus::Pending => {}
            StartupStatus::Notice(n) => (conn.notice)(&n),
            StartupStatus::Ready => break,
        }
        if !conn.wbuf.is_empty() {
            conn.flush().await?;
        }
    }
    conn.decoder.set_startup_done();
    Ok((conn, startup.into_info()))
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
