//! The tokio driver: a connection to the server, its startup, simple queries and replication commands.
//!
//! All protocol logic lives in [`crate::proto`] and [`crate::auth`]; this module only moves bytes between a
//! socket and those state machines.
//!
//! ```no_run
//! # async fn demo() -> pgrepl::Result<()> {
//! use pgrepl::{client::Client, config::Config};
//! let cfg = Config::from_str_with_std_env("host=/var/run/postgresql dbname=postgres replication=database")?;
//! let mut client = Client::connect(&cfg).await?;
//! let sys = client.identify_system().await?;
//! println!("system {} at {}", sys.system_id, sys.xlogpos);
//! # Ok(()) }
//! ```

use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::auth::Authenticator;
use crate::config::{Config, Host};
use crate::connect::Endpoint;
use crate::error::{DbError, Error, Result, SlotCommand};
use crate::lsn::Lsn;
use crate::proto::backend::{Authentication, BackendMessage, Decoder};
use crate::proto::commands::{self, CreateSlot};
use crate::proto::frontend;
use crate::proto::startup::{SessionInfo, Startup, StartupStatus};

/// Where server notices go. The default prints them to stderr, as libpq's default notice processor does.
pub type NoticeHandler = Arc<dyn Fn(&DbError) + Send + Sync>;

fn default_notice_handler() -> NoticeHandler {
    Arc::new(|n: &DbError| eprintln!("{}:  {}", n.severity, n.message))
}

/// `SO_BUF_LOCK` (Linux 5.14, `asm-generic/socket.h`; sparc numbers it differently), which the libc crate does
/// not export.
#[cfg(all(target_os = "linux", not(any(target_arch = "sparc", target_arch = "sparc64"))))]
pub(crate) const SO_BUF_LOCK: Option<libc::c_int> = Some(72);
#[cfg(all(target_os = "linux", any(target_arch = "sparc", target_arch = "sparc64")))]
pub(crate) const SO_BUF_LOCK: Option<libc::c_int> = Some(0x51);
#[cfg(not(target_os = "linux"))]
pub(crate) const SO_BUF_LOCK: Option<libc::c_int> = None;

/// A TCP or Unix-domain socket, or TLS over TCP.
#[derive(Debug)]
pub enum Socket {
    /// TCP.
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
    /// TLS over TCP (see [`crate::tls`]).
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Socket {
    /// `SO_RCVLOWAT` on a TCP connection (plain, or the one under TLS): readiness is signalled only once `bytes`
    /// are queued (a read still returns whatever is there). `false` when not applicable (Unix socket) or refused.
    pub(crate) fn set_recv_lowat(&self, bytes: i32) -> bool {
        self.set_sol_socket(libc::SO_RCVLOWAT, bytes)
    }

    /// `SO_RCVBUF` on a TCP connection (plain, or the one under TLS): the receive buffer fixed at `bytes` (the
    /// kernel doubles it for its bookkeeping, and stops tuning it). `false` when not applicable (Unix socket) or
    /// refused.
    pub(crate) fn set_recv_buf(&self, bytes: i32) -> bool {
        self.set_sol_socket(libc::SO_RCVBUF, bytes)
    }

    /// Lets the kernel tune the receive buffer again after [`set_recv_buf`](Self::set_recv_buf) (`SO_BUF_LOCK`,
    /// Linux 5.14): it keeps its size for now and may grow when data arrives that it cannot hold. `false` when
    /// not applicable or refused. pgrepl never fixes the send buffer, so both lock bits end up clear.
    pub(crate) fn unlock_recv_buf(&self) -> bool {
        match SO_BUF_LOCK {
            Some(opt) => self.set_sol_socket(opt, 0),
            None => false,
        }
    }

    /// Whether [`unlock_recv_buf`](Self::unlock_recv_buf) can work here: a TCP connection on a kernel that
    /// knows `SO_BUF_LOCK` (asked with a read, which changes nothing). Under TLS too.
    pub(crate) fn can_unlock_recv_buf(&self) -> bool {
        SO_BUF_LOCK.is_some_and(|opt| self.get_sol_socket(opt).is_some())
    }

    /// The receive buffer the kernel books (`SO_RCVBUF` read back: twice what was asked for, and no more than
    /// `net.core.rmem_max` allows). `None` when not applicable (Unix socket) or refused.
    pub(crate) fn recv_buf(&self) -> Option<i32> {
        self.get_sol_socket(libc::SO_RCVBUF)
    }

    fn get_sol_socket(&self, option: libc::c_int) -> Option<i32> {
        use std::os::fd::AsRawFd;
        let s = self.tcp()?;
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `s` owns a valid socket descriptor for the whole call; `v` is a live c_int, writable for `len`
        // bytes, and the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&mut v as *mut libc::c_int).cast::<libc::c_void>(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    }

    /// The TCP connection underneath: plain TCP, or the one TLS runs over.
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Socket::Tcp(s) => Some(s),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Some(s.get_ref().0),
            Socket::Unix(_) => None,
        }
    }

    fn set_sol_socket(&self, option: libc::c_int, value: i32) -> bool {
        match self.tcp() {
            Some(s) => {
                use std::os::fd::AsRawFd;
                let v: libc::c_int = value;
                // SAFETY: `s` owns a valid socket descriptor for the whole call, and the option value is a live
                // c_int passed with its exact size.
                unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        option,
                        (&v as *const libc::c_int).cast::<libc::c_void>(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    ) == 0
                }
            }
            _ => false,
        }
    }

    /// The smallest round-trip time the kernel has seen on the TCP connection (`TCP_INFO`, Linux; under TLS
    /// too), `None` when unknown: a Unix socket, another platform, or no sample yet.
    pub(crate) fn min_rtt(&self) -> Option<std::time::Duration> {
        match self.tcp() {
            #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
            Some(s) => {
                use std::os::fd::AsRawFd;
                // SAFETY: tcp_info is plain old data, valid when zeroed.
                let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
                // SAFETY: `s` owns a valid socket descriptor; `info` is writable for `len` bytes, and the kernel
                // writes at most `len` bytes and stores the length it wrote in `len`.
                let rc = unsafe {
                    libc::getsockopt(
                        s.as_raw_fd(),
                        libc::IPPROTO_TCP,
                        libc::TCP_INFO,
                        (&mut info as *mut libc::tcp_info).cast::<libc::c_void>(),
                        &mut len,
                    )
                };
                // Older kernels fill a shorter struct: take tcpi_min_rtt (Linux 4.6) only when it was written,
                // else the smoothed tcpi_rtt. Both are in microseconds; 0 means no sample.
                let end_of_min_rtt = std::mem::offset_of!(libc::tcp_info, tcpi_min_rtt) + 4;
                let us = if rc != 0 {
                    0
                } else if len as usize >= end_of_min_rtt {
                    info.tcpi_min_rtt
                } else {
                    info.tcpi_rtt
                };
                (us > 0).then(|| std::time::Duration::from_micros(u64::from(us)))
            }
            _ => None,
        }
    }
}

/// A read makes room for at least this many bytes in the read buffer first…
const READ_MIN_ROOM: usize = 8192;
/// …by reserving this much.
const READ_GROW: usize = 64 * 1024;

impl Socket {
    /// Whether the socket has something to read (always, under TLS: the session may hold decrypted bytes).
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(s) => s.poll_read_ready(cx),
            Socket::Unix(s) => s.poll_read_ready(cx),
            #[cfg(feature = "tls")]
            Socket::Tls(_) => Poll::Ready(Ok(())),
        }
    }

    /// Read what is queued into the spare room of `buf` (`Ready(Ok(0))`: end of stream).
    fn poll_read_spare(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::uninit(buf.spare_capacity_mut());
        let start = rb.filled().as_ptr();
        match Pin::new(&mut *self).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {}
            other => return other.map_ok(|()| 0),
        }
        let n = rb.filled().len();
        if n > 0 && rb.filled().as_ptr() != start {
            return Poll::Ready(Err(io::Error::other("the socket's reader replaced the read buffer")));
        }
        // SAFETY: `poll_read` initialized the first `n` bytes of the spare room (`ReadBuf::filled`, checked above
        // to be that memory), which starts right after `buf`'s initialized length.
        unsafe { buf.set_len(buf.len() + n) };
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The socket plus its buffers and framing decoder: reads whole backend messages, writes encoded ones.
pub(crate) struct Conn {
    pub(crate) sock: Socket,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) decoder: Decoder,
    pub(crate) notice: NoticeHandler,
    /// The last [`poll_fill`](Self::poll_fill) filled all the room there was: more may be waiting.
    pub(crate) read_filled: bool,
}

impl Conn {
    /// Read until one whole message is decoded.
    pub(crate) async fn read_message(&mut self) -> Result<BackendMessage> {
        loop {
            if let Some(m) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(m);
            }
            self.fill().await?;
        }
    }

    /// Read more bytes from the socket into the read buffer.
    pub(crate) async fn fill(&mut self) -> Result<()> {
        let n = std::future::poll_fn(|cx| self.poll_fill(cx)).await.map_err(|e| Error::io("reading from server", e))?;
        if n == 0 {
            return Err(self
                .decoder
                .eof_error(&self.rbuf)
                .unwrap_or_else(|| Error::closed("server closed the connection unexpectedly")));
        }
        Ok(())
    }

    /// Whether the read buffer lacks room for the next read and cannot take it back from its block yet, because
    /// payloads split off it still share the block. The stream task then lets the consumer run first
    /// ([`tokio::task::yield_now`]): a consumer that keeps up drops those payloads, and
    /// [`poll_fill`](Self::poll_fill) can reuse the block.
    pub(crate) fn read_room_shared(&mut self) -> bool {
        self.read_room() < READ_MIN_ROOM && !self.rbuf.try_reclaim(READ_GROW)
    }

    /// Spare room in the read buffer.
    fn read_room(&self) -> usize {
        self.rbuf.capacity() - self.rbuf.len()
    }

    /// Room for a read: the block taken back or a fresh one reserved when too little is left; the room there is.
    fn make_room(&mut self) -> usize {
        if self.read_room_shared() {
            self.rbuf.reserve(READ_GROW);
        }
        self.read_room()
    }

    /// Read what is queued into the read buffer (`Ready(Ok(0))`: end of stream).
    ///
    /// Room is made only once the socket is readable, when the consumer has usually dropped the previous read's
    /// payloads (see [`read_room_shared`](Self::read_room_shared)): [`BytesMut::try_reclaim`] then reuses the
    /// same block, the unread tail moved to its front, instead of [`BytesMut::reserve`] allocating a fresh one
    /// for each read. Fresh blocks meant new heap pages, a page fault per page, and the allocator giving them
    /// back to the kernel at its next trim: on a bulk drain, 6,000 page faults (now 300-400) and 5-10 % of the
    /// client's CPU.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match self.sock.poll_readable(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map_ok(|()| 0),
        }
        let room = self.make_room();
        let r = self.sock.poll_read_spare(cx, &mut self.rbuf);
        self.read_filled = matches!(r, Poll::Ready(Ok(n)) if n == room);
        r
    }

    /// Read what is queued into the read buffer now, without waiting for the socket's readiness: a
    /// non-blocking `recv` on plain TCP, which returns what is there even below the low-water mark (`SO_RCVLOWAT`
    /// only gates the readiness signal). `Ok(0)`: end of stream; `ErrorKind::WouldBlock`: nothing queued;
    /// `ErrorKind::Unsupported`: not plain TCP (the caller waits for readiness instead).
    pub(crate) fn read_now(&mut self) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = match &self.sock {
            Socket::Tcp(s) => s.as_raw_fd(),
            _ => return Err(io::ErrorKind::Unsupported.into()),
        };
        let room = self.make_room();
        let spare = self.rbuf.spare_capacity_mut();
        // SAFETY: `fd` is the socket `self.sock` owns, open for the whole call; the kernel writes at most
        // `spare.len()` bytes into `spare`, which is writable memory owned by `rbuf`.
        let rc = unsafe { libc::recv(fd, spare.as_mut_ptr().cast::<libc::c_void>(), spare.len(), libc::MSG_DONTWAIT) };
        let n = usize::try_from(rc).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: `recv` initialized the first `n` bytes of the spare room, which starts right after `rbuf`'s
        // initialized length.
        unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
        self.read_filled = n == room;
        Ok(n)
    }

    /// Write out and clear the write buffer.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.sock.write_all(&self.wbuf).await.map_err(|e| Error::io("writing to server", e))?;
            self.wbuf.clear();
        }
        self.sock.flush().await.map_err(|e| Error::io("writing to server", e))
    }

    /// Read until ReadyForQuery, delivering notices, and return the first error seen (if any).
    async fn drain_to_ready(&mut self, mut err: Option<Error>) -> Result<()> {
        loop {
            match self.read_message().await? {
                BackendMessage::ReadyForQuery(_) => break,
                BackendMessage::ErrorResponse(e) => {
                    err.get_or_insert(Error::db(e));
                }
                BackendMessage::NoticeResponse(n) => (self.notice)(&n),
                _ => {}
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// One result set of a simple query, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows; `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// The command tag (`SELECT 1`, `CREATE_REPLICATION_SLOT`, …).
    pub tag: String,
}

impl QueryResult {
    /// Value of `column` in row `row`, if present and not NULL.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(i)?.as_deref()
    }
}

/// IDENTIFY_SYSTEM's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The cluster's system identifier.
    pub system_id: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// Database connected to (replication=database), if any.
    pub dbname: Option<String>,
}

/// CREATE_REPLICATION_SLOT's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot name.
    pub slot_name: String,
    /// The position from which the slot streams.
    pub consistent_point: Lsn,
    /// Exported snapshot, if asked for.
    pub snapshot_name: Option<String>,
    /// Output plugin.
    pub output_plugin: Option<String>,
}

/// READ_REPLICATION_SLOT's answer for an existing slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSlot {
    /// `physical` (the server refuses the command for logical slots).
    pub slot_type: String,
    /// restart_lsn.
    pub restart_lsn: Option<Lsn>,
    /// Timeline of restart_lsn.
    pub restart_tli: Option<u32>,
}

/// A connection to a PostgreSQL server.
pub struct Client {
    pub(crate) conn: Conn,
    info: SessionInfo,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("process_id", &self.info.process_id).finish_non_exhaustive()
    }
}

impl Client {
    /// Connect and authenticate, trying each host of `cfg` in order.
    pub async fn connect(cfg: &Config) -> Result<Client> {
        Self::connect_with_notices(cfg, default_notice_handler()).await
    }

    /// [`Client::connect`] with a notice handler (called for every NoticeResponse, during startup too).
    ///
    /// Hosts, addresses, `connect_timeout`, the TCP options and `target_session_attrs`: see [`crate::connect`].
    pub async fn connect_with_notices(cfg: &Config, notice: NoticeHandler) -> Result<Client> {
        crate::connect::connect(cfg, notice).await
    }

    /// The TCP options of this connection as the kernel reports them (`keepalives*`, `tcp_user_timeout`); `None`
    /// over a Unix-domain socket.
    pub fn tcp_options(&self) -> Option<crate::connect::TcpOptions> {
        use std::os::fd::AsRawFd;
        crate::connect::tcp_options(self.conn.sock.tcp()?.as_raw_fd())
    }

    /// One connection to `endpoint` (an address of `host`), with TLS as `sslmode` says and the startup exchange.
    pub(crate) async fn connect_one(
        cfg: &Config,
        host_index: usize,
        host: &Host,
        endpoint: &Endpoint,
        notice: NoticeHandler,
    ) -> Result<Client> {
        #[cfg(not(feature = "tls"))]
        return Self::connect_attempt(cfg, host_index, host, endpoint, notice).await;
        // sslmode=allow and prefer may follow a failed attempt with one the other way, as libpq does.
        #[cfg(feature = "tls")]
        {
            let mut plan = crate::tls::Plan::new(cfg, host);
            loop {
                match Self::connect_attempt(cfg, host_index, host, endpoint, notice.clone(), &mut plan).await {
                    Err(e) if plan.retry_after(&e) => {}
                    r => return r,
                }
            }
        }
    }

    async fn connect_attempt(
        cfg: &Config,
        host_index: usize,
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))] host: &Host,
        endpoint: &Endpoint,
        notice: NoticeHandler,
        #[cfg(feature = "tls")] plan: &mut crate::tls::Plan,
    ) -> Result<Client> {
        let sock = crate::connect::connect_socket(cfg, endpoint).await?;
        // TLS (or not) before anything else is sent: SSLRequest and the handshake, per sslmode.
        #[cfg(feature = "tls")]
        let (sock, tls) = plan.negotiate(cfg, host, endpoint, sock).await?;
        #[cfg(not(feature = "tls"))]
        let tls = match endpoint {
            Endpoint::Tcp(_) if cfg.sslmode.requires_tls() => {
                return Err(Error::new(
                    crate::error::ErrorKind::Tls,
                    format!("sslmode={} needs TLS, but pgrepl was built without the `tls` feature", cfg.sslmode),
                ))
            }
            _ => None,
        };
        let mut conn = Conn {
            sock,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::new(),
            decoder: Decoder::new(),
            notice,
            read_filled: false,
        };
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
        Ok(Client { conn, info: startup.into_info() })
    }

    /// Session parameters reported by the server.
    pub fn session(&self) -> &SessionInfo {
        &self.info
    }

    /// Replace the notice handler.
    pub fn set_notice_handler(&mut self, h: NoticeHandler) {
        self.conn.notice = h;
    }

    /// Run one or more statements with the simple query protocol; every value comes back as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryResult>> {
        frontend::query(sql, &mut self.conn.wbuf)?;
        self.conn.flush().await?;
        let mut results = Vec::new();
        let mut cur = QueryResult::default();
        let mut err = None;
        loop {
            match self.conn.read_message().await? {
                BackendMessage::RowDescription(f) => cur.columns = f.into_iter().map(|f| f.name).collect(),
                BackendMessage::DataRow(cols) => cur
                    .rows
                    .push(cols.into_iter().map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned())).collect()),
                BackendMessage::CommandComplete(tag) => {
                    cur.tag = tag;
                    results.push(std::mem::take(&mut cur));
                }
                BackendMessage::EmptyQueryResponse => results.push(std::mem::take(&mut cur)),
                BackendMessage::ErrorResponse(e) => {
                    err.get_or_insert(Error::db(e));
                }
                BackendMessage::NoticeResponse(n) => (self.conn.notice)(&n),
                BackendMessage::ParameterStatus { name, value } => self.info.parameters.push((name, value)),
                BackendMessage::ReadyForQuery(_) => break,
                BackendMessage::CopyOutResponse(_) | BackendMessage::CopyBothResponse(_) => {
                    return Err(Error::protocol("simple_query: the statement started COPY; use the replication API"));
                }
                other => return Err(Error::protocol(format!("unexpected {} in query response", other.name()))),
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    async fn one_row(&mut self, sql: &str) -> Result<QueryResult> {
        let mut r = self.simple_query(sql).await?;
        r.pop().ok_or_else(|| Error::protocol(format!("no result for {sql}")))
    }

    /// IDENTIFY_SYSTEM.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem> {
        let r = self.one_row(&commands::identify_system()).await?;
        let bad = |what: &str| Error::protocol(format!("IDENTIFY_SYSTEM: bad {what}"));
        Ok(IdentifySystem {
            system_id: r.get(0, "systemid").ok_or_else(|| bad("systemid"))?.to_string(),
            timeline: r.get(0, "timeline").and_then(|t| t.parse().ok()).ok_or_else(|| bad("timeline"))?,
            xlogpos: r
                .get(0, "xlogpos")
                .ok_or_else(|| bad("xlogpos"))
                .and_then(|s| Lsn::parse(s).map_err(|_| bad("xlogpos")))?,
            dbname: r.get(0, "dbname").map(str::to_string),
        })
    }

    /// CREATE_REPLICATION_SLOT … LOGICAL. A slot name the server cannot accept is refused before anything is
    /// sent, with an error of kind [`ErrorKind::Config`](crate::ErrorKind::Config)
    /// ([`commands::validate_slot_name`]); so are the other slot commands here and `start_replication`.
    /// A slot that already exists: [`ErrorKind::SlotExists`](crate::ErrorKind::SlotExists); `two_phase` before
    /// PostgreSQL 14: [`ErrorKind::ServerVersionUnsupported`](crate::ErrorKind::ServerVersionUnsupported).
    pub async fn create_replication_slot(&mut self, opts: &CreateSlot) -> Result<SlotInfo> {
        let ver = self.info.server_version_num().unwrap_or(150000);
        let sql = opts.to_sql(ver)?;
        if opts.two_phase {
            self.info.require_version(140000, "a two-phase slot (TWO_PHASE)")?;
        }
        let r = self.one_row(&sql).await.map_err(|e| e.in_slot_command(SlotCommand::Create))?;
        let bad = |what: &str| Error::protocol(format!("CREATE_REPLICATION_SLOT: bad {what}"));
        Ok(SlotInfo {
            slot_name: r.get(0, "slot_name").ok_or_else(|| bad("slot_name"))?.to_string(),
            consistent_point: r
                .get(0, "consistent_point")
                .ok_or_else(|| bad("consistent_point"))
                .and_then(|s| Lsn::parse(s).map_err(|_| bad("consistent_point")))?,
            snapshot_name: r.get(0, "snapshot_name").map(str::to_string),
            output_plugin: r.get(0, "output_plugin").map(str::to_string),
        })
    }

    /// DROP_REPLICATION_SLOT \[WAIT\] (an invalid slot name: [`ErrorKind::Config`](crate::ErrorKind::Config),
    /// nothing sent; no such slot: [`ErrorKind::SlotMissing`](crate::ErrorKind::SlotMissing); in use without
    /// `wait`: [`ErrorKind::SlotActive`](crate::ErrorKind::SlotActive)).
    pub async fn drop_replication_slot(&mut self, slot: &str, wait: bool) -> Result<()> {
        let sql = commands::drop_slot(slot, wait)?;
        self.simple_query(&sql).await.map(|_| ()).map_err(|e| e.in_slot_command(SlotCommand::Drop))
    }

    /// READ_REPLICATION_SLOT (PostgreSQL 15+): `None` when the slot does not exist (an invalid slot name:
    /// [`ErrorKind::Config`](crate::ErrorKind::Config), nothing sent; an older server:
    /// [`ErrorKind::ServerVersionUnsupported`](crate::ErrorKind::ServerVersionUnsupported), nothing sent).
    pub async fn read_replication_slot(&mut self, slot: &str) -> Result<Option<ReadSlot>> {
        let sql = commands::read_slot(slot)?;
        self.info.require_version(150000, "READ_REPLICATION_SLOT")?;
        let r = self.one_row(&sql).await.map_err(|e| e.in_slot_command(SlotCommand::Read))?;
        let Some(slot_type) = r.get(0, "slot_type") else { return Ok(None) };
        Ok(Some(ReadSlot {
            slot_type: slot_type.to_string(),
            restart_lsn: r.get(0, "restart_lsn").and_then(|s| Lsn::parse(s).ok()),
            restart_tli: r.get(0, "restart_tli").and_then(|s| s.parse().ok()),
        }))
    }

    /// The server's `wal_sender_timeout` (`None` when disabled or unknown).
    pub async fn wal_sender_timeout(&mut self) -> Result<Option<Duration>> {
        let r = self.one_row("SHOW wal_sender_timeout").await?;
        Ok(r.rows.first().and_then(|row| row.first()).and_then(|v| v.as_deref()).and_then(parse_pg_duration))
    }

    /// Send Terminate and close the socket.
    pub async fn close(mut self) -> Result<()> {
        frontend::terminate(&mut self.conn.wbuf);
        let _ = self.conn.flush().await;
        let _ = self.conn.sock.shutdown().await;
        Ok(())
    }

    /// Send a query that starts COPY BOTH and wait for CopyBothResponse.
    pub(crate) async fn start_copy_both(&mut self, sql: &str) -> Result<()> {
        frontend::query(sql, &mut self.conn.wbuf)?;
        self.conn.flush().await?;
        loop {
            match self.conn.read_message().await? {
                BackendMessage::CopyBothResponse(_) => return Ok(()),
                BackendMessage::NoticeResponse(n) => (self.conn.notice)(&n),
                BackendMessage::ErrorResponse(e) => return self.conn.drain_to_ready(Some(Error::db(e))).await,
                BackendMessage::ParameterStatus { name, value } => self.info.parameters.push((name, value)),
                other => return Err(Error::protocol(format!("unexpected {} after START_REPLICATION", other.name()))),
            }
        }
    }

    pub(crate) fn into_parts(self) -> (Conn, SessionInfo) {
        (self.conn, self.info)
    }

    pub(crate) fn from_parts(conn: Conn, info: SessionInfo) -> Client {
        Client { conn, info }
    }
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Parse a GUC duration as SHOW prints it (`60s`, `1min`, `500ms`, `0`).
pub fn parse_pg_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        "us" => n / 1000,
        _ => return None,
    };
    if ms == 0 {
        None
    } else {
        Some(Duration::from_millis(ms))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_pg_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_pg_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_pg_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_pg_duration("0"), None);
        assert_eq!(parse_pg_duration("x"), None);
    }

    pub(crate) fn sockopt(s: &TcpStream, level: libc::c_int, option: libc::c_int) -> libc::c_int {
        use std::os::fd::AsRawFd;
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid descriptor, and `v` writable for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                level,
                option,
                (&mut v as *mut libc::c_int).cast::<libc::c_void>(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        v
    }

    /// A loopback TCP connection (our end, the peer's) after one exchange each way, so that the kernel has
    /// round-trip samples.
    pub(crate) async fn loopback_pair() -> (Socket, TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut sock = Socket::Tcp(client.unwrap());
        let (mut peer, _) = accepted.unwrap();
        peer.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        sock.read_exact(&mut b).await.unwrap();
        sock.write_all(b"y").await.unwrap();
        peer.read_exact(&mut b).await.unwrap();
        (sock, peer)
    }

    #[tokio::test]
    async fn tcp_socket_options_and_round_trip() {
        let (sock, _peer) = loopback_pair().await;
        let Socket::Tcp(s) = &sock else { panic!("a TCP socket") };

        assert!(sock.set_recv_lowat(4096));
        assert_eq!(sockopt(s, libc::SOL_SOCKET, libc::SO_RCVLOWAT), 4096);
        // SO_RCVBUF: the kernel books twice the value asked for, up to net.core.rmem_max
        let rmem_max: libc::c_int = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(sock.set_recv_buf(96 * 1024));
        if rmem_max >= 96 * 1024 {
            assert_eq!(sockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF), 2 * 96 * 1024);
        }
        // SO_BUF_LOCK (Linux 5.14): SO_RCVBUF set the receive-buffer lock bit (2); unlocking clears it and keeps
        // the size
        if let (true, Some(opt)) = (sock.can_unlock_recv_buf(), SO_BUF_LOCK) {
            assert_eq!(sockopt(s, libc::SOL_SOCKET, opt), 2);
            assert!(sock.unlock_recv_buf());
            assert_eq!(sockopt(s, libc::SOL_SOCKET, opt), 0);
            if rmem_max >= 96 * 1024 {
                assert_eq!(sockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF), 2 * 96 * 1024);
            }
        }
        #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
        {
            let rtt = sock.min_rtt().expect("a round trip was sampled");
            assert!(rtt > Duration::ZERO && rtt < Duration::from_secs(10), "{rtt:?}");
        }
    }

    /// `read_now` takes what is queued even below the low-water mark, which only gates readiness: the reader
    /// coalescing a fast stream picks up a slowing stream's last messages without lowering the mark.
    #[tokio::test]
    async fn read_now_takes_what_is_queued_below_the_low_water_mark() {
        use tokio::io::AsyncWriteExt;
        let (sock, mut peer) = loopback_pair().await;
        assert!(sock.set_recv_lowat(256 * 1024));
        let conn_of = |sock| Conn {
            sock,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::new(),
            decoder: Decoder::new(),
            notice: default_notice_handler(),
            read_filled: false,
        };
        let mut conn = conn_of(sock);
        assert_eq!(conn.read_now().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(conn.rbuf.is_empty());
        peer.write_all(&[7u8; 100]).await.unwrap();
        // loopback delivers at once; a few retries cover a scheduler's delay
        let mut got = 0;
        for _ in 0..1000 {
            match conn.read_now() {
                Ok(n) => {
                    got += n;
                    if got >= 100 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&conn.rbuf[..], &[7u8; 100][..]);
        assert!(!conn.read_filled);
        // a read that takes all the room says so
        let room = conn.read_room();
        peer.write_all(&vec![8u8; room + 10]).await.unwrap();
        let mut got = 0;
        for _ in 0..1000 {
            match conn.read_now() {
                Ok(n) => {
                    got += n;
                    if got >= room {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, room);
        assert!(conn.read_filled);
        assert_eq!(conn.rbuf.len(), 100 + room);
        // the end of the stream: what is left, then 0
        drop(peer);
        let mut tail = 0;
        loop {
            match conn.read_now() {
                Ok(0) => break,
                Ok(n) => tail += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(tail, 10);
        // not plain TCP: the caller waits for readiness instead
        let (a, _b) = UnixStream::pair().unwrap();
        let mut conn = conn_of(Socket::Unix(a));
        assert_eq!(conn.read_now().unwrap_err().kind(), io::ErrorKind::Unsupported);
    }
}
