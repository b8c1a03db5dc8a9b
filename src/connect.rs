//! Connecting as libpq does: the hosts in order, each host's addresses in order, TCP socket options set before
//! `connect()`, `connect_timeout` per address, and `target_session_attrs` checked on each established session.
//!
//! [`crate::client::Client::connect`] runs `connect`; TLS negotiation and the startup exchange of one attempt
//! stay in [`crate::client`] and [`crate::tls`].
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

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use tokio::net::{TcpSocket, TcpStream, UnixStream};

use crate::client::{Client, NoticeHandler, Socket};
use crate::config::{Config, Host, TargetSessionAttrs};
use crate::error::{Error, ErrorKind, Result};

/// Where one attempt connects: an address of a TCP host, or a Unix-domain socket.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Endpoint {
    /// For messages: `127.0.0.1:5432`, `[::1]:5432`, or the socket path.
    pub(crate) fn describe(&self) -> String {
        match self {
            Endpoint::Tcp(a) => a.to_string(),
            Endpoint::Unix(p) => p.display().to_string(),
        }
    }
}

/// Connect to the first host of `cfg` that accepts us and fits `target_session_attrs`.
pub(crate) async fn connect(cfg: &Config, notice: NoticeHandler) -> Result<Client> {
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
                    Ok(client) => return Ok(client),
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
) -> Result<Client> {
    let work = async {
        let mut client = Client::connect_one(cfg, host_index, host, endpoint, notice).await?;
        match check_session(&mut client, want).await {
            Ok(()) => Ok(client),
            Err(e) => {
                // Leave politely (libpq's sendTerminateConn).
                let _ = client.close().await;
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
fn reported(client: &Client, name: &str) -> Option<bool> {
    match client.session().parameter(name)? {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Whether the server that `client` reached is of the kind `want` asks for: `Ok(())`, or an error of kind
/// [`ErrorKind::TargetSessionAttrs`].
async fn check_session(client: &mut Client, want: TargetSessionAttrs) -> Result<()> {
    let wrong = |why: &str| {
        Error::new(ErrorKind::TargetSessionAttrs, format!("{why} (target_session_attrs={})", want.as_str()))
    };
    match want {
        TargetSessionAttrs::ReadWrite | TargetSessionAttrs::ReadOnly => {
            let read_only =
                match (reported(client, "default_transaction_read_only"), reported(client, "in_hot_standby")) {
                    (Some(d), Some(h)) => d || h,
                    _ => {
                        let v = query_one(client, "SHOW transaction_read_only").await?;
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
            let in_standby = match reported(client, "in_hot_standby") {
                Some(h) => h,
                None if client.session().server_version_num().is_some_and(|v| v < 90000) => false,
                None => query_one(client, "SELECT pg_catalog.pg_is_in_recovery()").await?.starts_with('t'),
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
async fn query_one(client: &mut Client, sql: &str) -> Result<String> {
    let failed = |detail: String| Error::new(ErrorKind::TargetSessionAttrs, format!("\"{sql}\" failed: {detail}"));
    let results = match client.simple_query(sql).await {
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
// Sockets
// ---------------------------------------------------------------------------------------------------------------

/// Open the socket for `endpoint`, with `cfg`'s TCP options.
pub(crate) async fn connect_socket(cfg: &Config, endpoint: &Endpoint) -> Result<Socket> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let failed = |e| Error::io(format!("connection to {addr} failed"), e);
            let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(failed)?;
            set_tcp_options(socket.as_raw_fd(), cfg).map_err(|e| Error::io(format!("connection to {addr}: {e}"), e))?;
            let s: TcpStream = socket.connect(*addr).await.map_err(failed)?;
            let _ = s.set_nodelay(true);
            Ok(Socket::Tcp(s))
        }
        Endpoint::Unix(path) => {
            let s = UnixStream::connect(path)
                .await
                .map_err(|e| Error::io(format!("connection to socket {path:?} failed"), e))?;
            Ok(Socket::Unix(s))
        }
    }
}

/// The TCP options of a connection as the kernel reports them ([`crate::client::Client::tcp_options`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TcpOptions {
    /// `SO_KEEPALIVE`.
    pub keepalive: bool,
    /// `TCP_KEEPIDLE`, seconds.
    pub keepalive_idle: u32,
    /// `TCP_KEEPINTVL`, seconds.
    pub keepalive_interval: u32,
    /// `TCP_KEEPCNT`.
    pub keepalive_count: u32,
    /// `TCP_USER_TIMEOUT`, milliseconds (0: the system's default).
    pub user_timeout: u32,
}

/// `setsockopt` with an `int` value; the error names the option, as libpq's message does.
fn set_int(fd: RawFd, level: libc::c_int, option: libc::c_int, name: &str, value: u32) -> std::io::Result<()> {
    let v = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is a socket the caller owns for the whole call, and the value is a live c_int passed with its
    // exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (&v as *const libc::c_int).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("setsockopt({name}={value}) failed: {e}")))
    }
}

fn get_int(fd: RawFd, level: libc::c_int, option: libc::c_int) -> Option<u32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is a socket the caller owns for the whole call; `v` is a live c_int, writable for `len`
    // bytes, and the kernel writes at most `len` bytes.
    let rc =
        unsafe { libc::getsockopt(fd, level, option, (&mut v as *mut libc::c_int).cast::<libc::c_void>(), &mut len) };
    if rc == 0 {
        u32::try_from(v).ok()
    } else {
        None
    }
}

/// Set `keepalives*` and `tcp_user_timeout` on a TCP socket, before it connects (as libpq).
fn set_tcp_options(fd: RawFd, cfg: &Config) -> std::io::Result<()> {
    if cfg.keepalives {
        set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE", 1)?;
        if let Some(v) = cfg.keepalives_idle {
            set_int(fd, libc::IPPROTO_TCP, KEEPIDLE, KEEPIDLE_NAME, v)?;
        }
        if let Some(v) = cfg.keepalives_interval {
            set_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL", v)?;
        }
        if let Some(v) = cfg.keepalives_count {
            set_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, "TCP_KEEPCNT", v)?;
        }
    }
    if let Some(v) = cfg.tcp_user_timeout {
        set_user_timeout(fd, v)?;
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_user_timeout(fd: RawFd, ms: u32) -> std::io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", ms)
}

/// Without `TCP_USER_TIMEOUT` the option cannot be honoured: refused rather than ignored.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_user_timeout(_fd: RawFd, _ms: u32) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "tcp_user_timeout is not supported on this platform"))
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
const KEEPIDLE: libc::c_int = libc::TCP_KEEPALIVE;
#[cfg(any(target_os = "macos", target_os = "ios"))]
const KEEPIDLE_NAME: &str = "TCP_KEEPALIVE";
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
const KEEPIDLE: libc::c_int = libc::TCP_KEEPIDLE;
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
const KEEPIDLE_NAME: &str = "TCP_KEEPIDLE";

/// Read the TCP options back from a connected socket.
pub(crate) fn tcp_options(fd: RawFd) -> Option<TcpOptions> {
    Some(TcpOptions {
        keepalive: get_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? != 0,
        keepalive_idle: get_int(fd, libc::IPPROTO_TCP, KEEPIDLE)?,
        keepalive_interval: get_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)?,
        keepalive_count: get_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        user_timeout: get_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?,
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        user_timeout: 0,
    })
}
