//! Sockets and the framed connection: the bottom of the tokio driver.
//!
//! - [`Endpoint`]: where one connection attempt goes (an address of a TCP host, or a Unix-domain socket);
//!   [`connect_socket`] opens it, with the TCP options of the configuration (`keepalives*`, `tcp_user_timeout`)
//!   set before `connect()`.
//! - [`Socket`]: TCP, Unix-domain, or TLS over TCP, with the socket options the stream's read coalescing uses
//!   (`SO_RCVLOWAT`, `SO_RCVBUF`, `SO_BUF_LOCK`, `TCP_INFO`).
//! - [`Conn`]: a socket with its read and write buffers and the framing decoder: whole backend messages in,
//!   encoded frontend messages out, and the simple query that both [`crate::client::Client`] and the
//!   `target_session_attrs` check ([`crate::connect`]) run.
//!
//! # Imports point one way
//!
//! The driver's modules form a chain, each importing only those before it (and the sans-IO core:
//! [`crate::proto`], [`crate::auth`], [`crate::config`], [`crate::error`]):
//!
//! ```text
//! conn  ←  tls  ←  connect  ←  client  ←  stream  ←  changes
//! ```
//!
//! `conn` imports none of the others; `crate::tls` (feature `tls` or `tls-aws-lc`) negotiates TLS on a
//! [`Socket`]; [`crate::connect`] picks hosts and addresses and runs one attempt's TLS plan, authentication and
//! startup, giving back a [`Conn`] and its [`SessionInfo`]; [`crate::client::Client`] wraps those two. A unit
//! test below checks the chain in the sources.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream, UnixStream};

use crate::config::Config;
use crate::error::{DbError, Error, Result};
use crate::proto::backend::{BackendMessage, Decoder};
use crate::proto::frontend;
use crate::proto::startup::SessionInfo;

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

/// Where server notices go. The default prints them to stderr, as libpq's default notice processor does.
pub type NoticeHandler = Arc<dyn Fn(&DbError) + Send + Sync>;

/// libpq's default notice processor: `SEVERITY:  message` on stderr.
pub(crate) fn default_notice_handler() -> NoticeHandler {
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
    #[cfg(feature = "__tls")]
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
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Socket::Tcp(s) => Some(s),
            #[cfg(feature = "__tls")]
            Socket::Tls(s) => Some(s.get_ref().0),
            Socket::Unix(_) => None,
        }
    }

    fn set_sol_socket(&self, option: libc::c_int, value: i32) -> bool {
        match self.tcp() {
            Some(s) => {
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
            #[cfg(feature = "__tls")]
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
            #[cfg(feature = "__tls")]
            Socket::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "__tls")]
            Socket::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "__tls")]
            Socket::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "__tls")]
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
    /// A fresh connection on `sock`, before the startup exchange.
    pub(crate) fn new(sock: Socket, notice: NoticeHandler) -> Conn {
        Conn {
            sock,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::new(),
            decoder: Decoder::new(),
            notice,
            read_filled: false,
        }
    }

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

    /// Run one or more statements with the simple query protocol; every value comes back as text. Parameters
    /// the server reports meanwhile (ParameterStatus) are added to `info`.
    pub(crate) async fn simple_query(&mut self, sql: &str, info: &mut SessionInfo) -> Result<Vec<QueryResult>> {
        frontend::query(sql, &mut self.wbuf)?;
        self.flush().await?;
        let mut results = Vec::new();
        let mut cur = QueryResult::default();
        let mut err = None;
        loop {
            match self.read_message().await? {
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
                BackendMessage::NoticeResponse(n) => (self.notice)(&n),
                BackendMessage::ParameterStatus { name, value } => info.parameters.push((name, value)),
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

    /// Send Terminate and close the socket. Failures are not reported: the connection is being left.
    pub(crate) async fn terminate(&mut self) {
        frontend::terminate(&mut self.wbuf);
        let _ = self.flush().await;
        let _ = self.sock.shutdown().await;
    }

    /// Read until ReadyForQuery, delivering notices, and return the first error seen (if any).
    pub(crate) async fn drain_to_ready(&mut self, mut err: Option<Error>) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------------------------
// Opening a socket
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

/// The TCP options of a connection as the kernel reports them ([`crate::client::Client::tcp_options`]; also
/// `pgrepl::connect::TcpOptions`).
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

impl Socket {
    /// The TCP options of this socket as the kernel reports them; `None` over a Unix-domain socket.
    pub(crate) fn tcp_options(&self) -> Option<TcpOptions> {
        tcp_options(self.tcp()?.as_raw_fd())
    }
}

/// Read the TCP options back from a connected socket.
fn tcp_options(fd: RawFd) -> Option<TcpOptions> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn sockopt(s: &TcpStream, level: libc::c_int, option: libc::c_int) -> libc::c_int {
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
        let conn_of = |sock| Conn::new(sock, default_notice_handler());
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

    /// The first path segment after each `crate::` in `code` (`crate::conn::Socket` → `conn`; a group
    /// `crate::{conn::Conn, tls}` → `conn`, `tls`).
    fn crate_paths(code: &str) -> Vec<String> {
        let ident =
            |s: &str| s.trim_start().split(|c: char| !(c.is_alphanumeric() || c == '_')).next().map(str::to_owned);
        let mut out = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = code.get(i + "crate::".len()..).unwrap_or_default();
            match rest.strip_prefix('{') {
                Some(group) => {
                    // top-level items of the group
                    let (mut depth, mut start) = (0usize, 0usize);
                    for (j, c) in group.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => {
                                out.extend(group.get(start..j).and_then(ident));
                                break;
                            }
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                out.extend(group.get(start..j).and_then(ident));
                                start = j + 1;
                            }
                            _ => {}
                        }
                    }
                }
                None => out.extend(ident(rest)),
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }

    /// The driver's imports point one way (module docs): no module of the chain names a later one, in code or
    /// in its tests (comments aside; intra-doc links do not make a dependency).
    #[test]
    fn driver_imports_point_one_way() {
        let chain: &[(&str, &[&str])] = &[
            ("conn", &[include_str!("conn.rs")]),
            ("tls", &[include_str!("tls/mod.rs"), include_str!("tls/end_point.rs"), include_str!("tls/provider.rs")]),
            ("connect", &[include_str!("connect.rs")]),
            ("client", &[include_str!("client.rs")]),
            ("stream", &[include_str!("stream.rs")]),
            ("changes", &[include_str!("changes.rs")]),
        ];
        // the check itself sees what it looks for (the sample is built so that this file does not contain it)
        let sample = "use C::{conn::{Conn, Socket}, tls};\nx = C::client::Client;".replace('C', "crate");
        assert_eq!(crate_paths(&sample), ["conn", "tls", "client"]);
        for (i, (module, files)) in chain.iter().enumerate() {
            let later: Vec<&str> = chain[i + 1..].iter().map(|(m, _)| *m).collect();
            for text in *files {
                // comments out: whole comment lines, and the rest of a line after ` //`
                let code: String = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .map(|l| l.split(" //").next().unwrap_or(l))
                    .collect::<Vec<_>>()
                    .join("\n");
                for used in crate_paths(&code) {
                    assert!(
                        !later.contains(&used.as_str()),
                        "src/{module}: imports crate::{used}, which comes after it"
                    );
                }
            }
        }
    }
}
