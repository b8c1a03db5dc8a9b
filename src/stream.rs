//! Streaming replication on a tokio task.
//!
//! [`ReplicationStream`] hands XLogData messages to the application through a bounded buffer. A background
//! task owns the socket and the [`FeedbackState`]: it answers keepalives that ask for a reply at once and sends
//! status updates on its own timer, so a slow consumer never trips `wal_sender_timeout`. When the buffer is
//! full the task stops reading the socket (backpressure reaches the server through TCP) but keeps sending
//! status updates. Only [`ReplicationStream::ack`] moves the flush position reported to the server (plus the
//! guarded idle advance, see [`crate::proto::feedback`]).
//!
//! ```no_run
//! # async fn demo() -> pgrepl::Result<()> {
//! use pgrepl::{client::Client, config::Config, stream::StreamConfig, Lsn};
//! let cfg = Config::from_str_with_std_env("dbname=postgres replication=database")?;
//! let client = Client::connect(&cfg).await?;
//! let opts = vec![("format-version".to_string(), Some("2".to_string()))];
//! let mut stream =
//!     client.start_replication("my_slot", &pgrepl::plugin::Wal2json, Lsn::INVALID, &opts, StreamConfig::default()).await?;
//! while let Some(msg) = stream.next().await? {
//!     println!("{}: {}", msg.wal_start, String::from_utf8_lossy(&msg.data));
//!     stream.ack(msg.wal_start); // after the change is stored durably
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::conn::{Conn, Socket};
use crate::error::{Error, Result, SlotCommand};
use crate::lsn::Lsn;
use crate::plugin::{OutputPlugin, TxnClassifier};
use crate::proto::backend::BackendMessage;
use crate::proto::commands;
use crate::proto::feedback::{Delivery, FeedbackConfig, FeedbackState};
use crate::proto::frontend;
use crate::proto::pacing::{Coalescer, LingerRead, ReadGate, RecvSocket};
use crate::proto::replication::{to_pg_micros, ReplicationMessage, StatusUpdate, XLogData};
use crate::proto::startup::SessionInfo;

/// Settings of a replication stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Status update period (default 10 s). Clamped to half the server's `wal_sender_timeout` when known.
    pub status_interval: Duration,
    /// Report keepalive walEnd as flushed when everything received is acknowledged and no transaction is open.
    pub idle_advance: bool,
    /// Stop at the first transaction boundary at or after this position.
    pub end: Option<Lsn>,
    /// Messages buffered between the socket and the consumer before reading stops.
    pub buffer_messages: usize,
    /// Payload bytes buffered between the socket and the consumer before reading stops (a single larger
    /// message still passes, alone).
    pub buffer_bytes: usize,
    /// Query `wal_sender_timeout` first and keep the status interval below half of it.
    pub adapt_to_sender_timeout: bool,
    /// Over TCP (plain or TLS), while the stream runs faster than 16 MB/s, let the kernel wake the reader only
    /// once 32 KiB are queued (`SO_RCVLOWAT`) or about 1-2 ms after the previous read, instead of once per
    /// message: the client then spends about half the CPU on a bulk drain, and a message waits at most ~2 ms
    /// more. Below that rate (e.g. 10,000 single-row transactions per second) every message is read at once, as
    /// without it. Not over Unix-domain sockets, where Linux ignores the low-water mark.
    ///
    /// On Linux (5.14 or later), when the connection's smallest round trip is at most 1 ms (loopback, a LAN),
    /// a fast stretch also fixes the socket's receive buffer at 192 KiB (`SO_RCVBUF`) and the reader is woken
    /// when the receive window is about to close, or about 3-4 ms after the previous read: fewer wake-ups, and
    /// the server sends in larger segments (a quarter less client CPU on a loopback drain, and a cheaper
    /// walsender). The fixed buffer caps the connection at about 190 KB per round trip, 190 MB/s at 1 ms. Over
    /// plain TCP where `net.core.rmem_max` allows 384 KiB, the buffer is fixed at that and the reader, woken when
    /// the window is about to close, waits 3-4 ms before reading: the server's messages queue up in its socket
    /// meanwhile and leave in a few large segments (5-10x fewer segments; on a loopback drain ~20 % less wall
    /// time, 10-15 % less client CPU and a fifth less walsender CPU); after eight full reads in a row the reader
    /// takes the server's backlog without waiting. A message may then wait up to ~6 ms while the stream runs
    /// fast.
    ///
    /// A bulk stream comes in bursts (the server sends each transaction at its commit): when the wait's timer
    /// fires in a gap, the reader takes what is queued without lowering the low-water mark (plain TCP; under TLS
    /// coalescing ends there), so that the next burst is not read one message at a time again (half the reads on
    /// a loopback drain, a sixth less client CPU). Coalescing ends after two such timers in a row that find the
    /// stream slower than 16 MB/s, or 50 ms without a fast stretch. When the consumer falls behind and the stream stops reading, the buffer goes back to the kernel's
    /// tuning (`SO_BUF_LOCK`) until the next fast stretch: a full fixed buffer would make the kernel drop the
    /// server's acknowledgements of our status updates.
    pub coalesce_reads: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            status_interval: Duration::from_secs(10),
            idle_advance: true,
            end: None,
            buffer_messages: 4096,
            buffer_bytes: 4 << 20,
            adapt_to_sender_timeout: true,
            coalesce_reads: true,
        }
    }
}

struct Shared {
    /// Byte budget of the buffer: the task takes permits for each batch's messages, the consumer gives them back.
    budget: Semaphore,
    budget_max: usize,
    /// Message budget of the buffer ([`StreamConfig::buffer_messages`]), taken and given back likewise.
    slots: Semaphore,
    slots_max: usize,
    acked: AtomicU64,
    flushed: AtomicU64,
    received: AtomicU64,
    /// Delivery ended at the end position ([`StreamConfig::end`]).
    end_reached: std::sync::atomic::AtomicBool,
    wake: Notify,
}

/// What the stream task hands over at a time: the messages of one pass over the read buffer (an error last).
/// One channel operation per batch rather than per message: a bounded channel's send and receive cost about
/// a dozen atomic operations and a lock per message, 4 % of a drain's instructions.
type Batch = Vec<Result<XLogData>>;

/// A running logical replication stream.
pub struct ReplicationStream {
    /// Batches from the task. Unbounded as a channel; what is in it is bounded by the byte and message budgets
    /// the task takes before sending.
    rx: mpsc::UnboundedReceiver<Batch>,
    /// The batch being handed out.
    cur: std::vec::IntoIter<Result<XLogData>>,
    shared: Arc<Shared>,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<Client>>>,
    finished: bool,
    /// Budget of messages taken but not yet given back ([`release`](Self::release)): bytes, and messages.
    held: usize,
    held_slots: usize,
}

impl Client {
    /// START_REPLICATION SLOT `slot` LOGICAL `start` with plugin options. `plugin` is the slot's output plugin
    /// ([`crate::plugin::by_name`] of `pg_replication_slots.plugin`): its rules place each payload in its
    /// transaction ([`XLogData::boundary`]), for the end position and the idle advance.
    pub async fn start_replication(
        self,
        slot: &str,
        plugin: &dyn OutputPlugin,
        start: Lsn,
        options: &[(String, Option<String>)],
        cfg: StreamConfig,
    ) -> Result<ReplicationStream> {
        self.start_replication_with(slot, start, options, cfg, plugin.tracker()).await
    }

    /// [`Client::start_replication`] with a transaction classifier of the caller's.
    pub async fn start_replication_with<C: TxnClassifier>(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(String, Option<String>)],
        mut cfg: StreamConfig,
        classifier: C,
    ) -> Result<ReplicationStream> {
        // Built first: an invalid slot name fails here, before anything is sent.
        let command = commands::start_logical(slot, start, options)?;
        if cfg.adapt_to_sender_timeout {
            if let Ok(Some(t)) = self.wal_sender_timeout().await {
                cfg.status_interval = cfg.status_interval.min(t / 2).max(Duration::from_millis(100));
            }
        }
        self.start_copy_both(&command).await.map_err(|e| e.in_slot_command(SlotCommand::Start))?;
        let (conn, info) = self.into_parts();
        let budget_max = cfg.buffer_bytes.clamp(1, u32::MAX as usize);
        let slots_max = cfg.buffer_messages.clamp(1, u32::MAX as usize);
        let shared = Arc::new(Shared {
            budget: Semaphore::new(budget_max),
            budget_max,
            slots: Semaphore::new(slots_max),
            slots_max,
            acked: AtomicU64::new(start.0),
            flushed: AtomicU64::new(start.0),
            received: AtomicU64::new(start.0),
            end_reached: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let fb = FeedbackConfig { status_interval: cfg.status_interval, idle_advance: cfg.idle_advance, end: cfg.end };
        let task = StreamTask {
            conn,
            info,
            state: FeedbackState::new(fb, start),
            shared: shared.clone(),
            classifier,
            tx: Some(tx),
            batch: Vec::new(),
            batch_bytes: 0,
            closing: false,
            coalesce_reads: cfg.coalesce_reads,
        };
        let handle = tokio::spawn(task.run(stop_rx));
        Ok(ReplicationStream {
            rx,
            cur: Vec::new().into_iter(),
            shared,
            stop_tx: Some(stop_tx),
            task: Some(handle),
            finished: false,
            held: 0,
            held_slots: 0,
        })
    }
}

impl ReplicationStream {
    /// The next XLogData message; `Ok(None)` when the stream has ended (end position reached at a transaction
    /// boundary, or the server ended the copy). Then acknowledge what you stored and call
    /// [`stop`](Self::stop): until then the connection stays open and keeps reporting acknowledgements.
    /// An error ends the stream.
    pub async fn next(&mut self) -> Result<Option<XLogData>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            if let Some(m) = self.cur.next() {
                return self.hand_out(m).map(Some);
            }
            match self.rx.try_recv() {
                Ok(batch) => self.cur = batch.into_iter(),
                Err(mpsc::error::TryRecvError::Empty) => {
                    // about to wait: the stream task must see all the room there is
                    self.give_back();
                    match self.rx.recv().await {
                        Some(batch) => self.cur = batch.into_iter(),
                        None => self.finished = true,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => self.finished = true,
            }
        }
    }

    /// The next message if one is already buffered, without waiting.
    pub fn try_next(&mut self) -> Option<Result<XLogData>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(m) = self.cur.next() {
                return Some(self.hand_out(m));
            }
            match self.rx.try_recv() {
                Ok(batch) => self.cur = batch.into_iter(),
                Err(_) => {
                    self.give_back();
                    return None;
                }
            }
        }
    }

    /// One message of a batch to the application: its budget noted for giving back; an error ends the stream.
    fn hand_out(&mut self, m: Result<XLogData>) -> Result<XLogData> {
        match m {
            Ok(x) => {
                self.release(&x);
                Ok(x)
            }
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    /// Give a taken message's share of the byte and message budgets back to the stream task, in batches of up to
    /// an eighth of the budget (at most 64 KiB, or 256 messages): one `add_permits` (a lock) per batch instead
    /// of per message. Whatever is held goes back before the consumer waits for the next message, so the task
    /// never waits for room that only the waiting consumer could give.
    fn release(&mut self, x: &XLogData) {
        self.held += x.data.len().clamp(1, self.shared.budget_max);
        self.held_slots += 1;
        if self.held >= (self.shared.budget_max / 8).min(64 * 1024)
            || self.held_slots >= (self.shared.slots_max / 8).clamp(1, 256)
        {
            self.give_back();
        }
    }

    fn give_back(&mut self) {
        if self.held > 0 {
            self.shared.budget.add_permits(std::mem::take(&mut self.held));
        }
        if self.held_slots > 0 {
            self.shared.slots.add_permits(std::mem::take(&mut self.held_slots));
        }
    }

    /// Acknowledge that everything up to `lsn` is durably processed. Monotonic; a lower value is ignored.
    /// The position is reported with the next status update.
    pub fn ack(&self, lsn: Lsn) {
        self.shared.acked.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// Acknowledge and send a status update now rather than at the next timer tick.
    pub fn ack_now(&self, lsn: Lsn) {
        self.ack(lsn);
        self.shared.wake.notify_one();
    }

    /// What has been acknowledged.
    pub fn acked(&self) -> Lsn {
        Lsn(self.shared.acked.load(Ordering::Acquire))
    }

    /// The flush position last reported to the server.
    pub fn reported_flush(&self) -> Lsn {
        Lsn(self.shared.flushed.load(Ordering::Acquire))
    }

    /// The highest WAL position the server said it has (keepalive or XLogData walEnd).
    pub fn server_wal_end(&self) -> Lsn {
        Lsn(self.shared.received.load(Ordering::Acquire))
    }

    /// Whether delivery ended at the end position ([`StreamConfig::end`]): after [`next`](Self::next) returned
    /// `Ok(None)`, `false` means the server ended the copy before the end position (or none was set), and
    /// streaming again may bring more.
    pub fn end_reached(&self) -> bool {
        self.shared.end_reached.load(Ordering::Acquire)
    }

    /// Stop cleanly: a final status update with the acknowledged position, CopyDone, then wait for the server's
    /// CommandComplete and ReadyForQuery. Messages not yet consumed are discarded (they were not acknowledged, so
    /// the server sends them again next time). Returns the connection, usable for further commands.
    pub async fn stop(mut self) -> Result<Client> {
        if let Some(s) = self.stop_tx.take() {
            let _ = s.send(());
        }
        self.rx.close();
        while self.rx.recv().await.is_some() {}
        let task = self.task.take().ok_or_else(|| Error::closed("stream already stopped"))?;
        match task.await {
            Ok(r) => r,
            Err(e) => Err(Error::closed(format!("replication task failed: {e}"))),
        }
    }

    /// [`stop`](Self::stop), also returning the flush position of the final status update (what the slot has
    /// confirmed).
    pub async fn stop_confirmed(self) -> Result<(Client, Lsn)> {
        let shared = self.shared.clone();
        let client = self.stop().await?;
        Ok((client, Lsn(shared.flushed.load(Ordering::Acquire))))
    }
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Room for a batch of `msgs` messages and `bytes` bytes in the budgets (taken for good once the batch is
/// sent; the consumer gives them back as it takes the messages). Cancel-safe: if this future is dropped while
/// waiting, what it took goes back.
async fn room(shared: &Shared, bytes: usize, msgs: usize) -> Option<()> {
    let b = shared.budget.acquire_many(u32::try_from(bytes.max(1)).unwrap_or(u32::MAX)).await.ok()?;
    let m = shared.slots.acquire_many(u32::try_from(msgs.max(1)).unwrap_or(u32::MAX)).await.ok()?;
    b.forget();
    m.forget();
    Some(())
}

/// The read policy's socket options ([`crate::proto::pacing`]) on the driver's socket.
impl RecvSocket for Socket {
    fn set_recv_lowat(&self, bytes: i32) -> bool {
        Socket::set_recv_lowat(self, bytes)
    }
    fn set_recv_buf(&self, bytes: i32) -> bool {
        Socket::set_recv_buf(self, bytes)
    }
    fn recv_buf(&self) -> Option<i32> {
        Socket::recv_buf(self)
    }
    fn unlock_recv_buf(&self) -> bool {
        Socket::unlock_recv_buf(self)
    }
    fn can_unlock_recv_buf(&self) -> bool {
        Socket::can_unlock_recv_buf(self)
    }
    fn min_rtt(&self) -> Option<Duration> {
        Socket::min_rtt(self)
    }
    fn is_plain_tcp(&self) -> bool {
        matches!(self, Socket::Tcp(_))
    }
}

/// The stream task's timers, all in one place: the status update at [`FeedbackState::next_deadline`] (also
/// while waiting for room in the buffer), and the read policy's linger ([`Coalescer::linger_deadline`]) and pace
/// ([`ReadGate::At`]). The status timer is set before each wait, the linger as soon as the policy has handled a
/// read, the pace when the socket becomes readable; each only when the deadline its owner gives changed. The
/// decisions are the owners'; this only keeps tokio's sleeps at their deadlines.
///
/// Made once per stream and moved rather than re-created per read: registering a new timer while the runtime's
/// timer wheel is empty makes tokio unpark its driver (a write to its eventfd), which per read was a system call
/// per handful of messages. Three timers rather than one at the earliest deadline: tokio moves a registered timer
/// later without a lock (a compare-and-swap), while an earlier deadline re-registers it under the timer driver's
/// lock and unparks the driver when it becomes the next wake-up. The linger moves later at every read; a single
/// timer would, in the paced mode, also move earlier at every readiness (from the linger to the pace).
struct Timers {
    status: Pin<Box<tokio::time::Sleep>>,
    linger: Pin<Box<tokio::time::Sleep>>,
    pace: Pin<Box<tokio::time::Sleep>>,
}

impl Timers {
    fn new() -> Self {
        let later = tokio::time::Instant::now() + Duration::from_secs(3600);
        Timers {
            status: Box::pin(tokio::time::sleep_until(later)),
            linger: Box::pin(tokio::time::sleep_until(later)),
            pace: Box::pin(tokio::time::sleep_until(later)),
        }
    }

    /// The status timer at the feedback state's deadline (an hour away when there is none).
    fn arm_status(&mut self, deadline: Option<Instant>) {
        set_timer(&mut self.status, deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
    }

    /// After a read: the linger at the policy's deadline, if it has one (else it is not polled).
    fn arm_linger(&mut self, deadline: Option<Instant>) {
        if let Some(t) = deadline {
            set_timer(&mut self.linger, t);
        }
    }

    fn status_elapsed(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.status.as_mut().poll(cx).is_ready()
    }

    fn linger_elapsed(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.linger.as_mut().poll(cx).is_ready()
    }

    /// Whether the pace's wait, until `until`, is over.
    fn pace_elapsed(&mut self, cx: &mut std::task::Context<'_>, until: Instant) -> bool {
        set_timer(&mut self.pace, until);
        self.pace.as_mut().poll(cx).is_ready()
    }
}

fn set_timer(timer: &mut Pin<Box<tokio::time::Sleep>>, at: Instant) {
    let at = tokio::time::Instant::from_std(at);
    if timer.deadline() != at {
        timer.as_mut().reset(at);
    }
}

/// The end of the stream, read as zero bytes.
fn server_closed() -> Error {
    Error::closed("server closed the replication connection")
}

/// What ended a wait in the read loop.
enum Wake {
    Read(std::io::Result<usize>),
    Linger,
    Timer,
    Woken,
    Stop,
}

/// What ended a wait for room in the buffer.
enum Room {
    /// The budgets had room for the batch (taken).
    Ready,
    Timer,
    Woken,
    Stop,
}

/// What [`StreamTask::try_flush`] did with the batch.
enum Flush {
    /// Sent (or there was nothing to send).
    Done,
    /// Not enough room in the budgets: nothing taken, the batch kept.
    NoRoom,
    /// The consumer is gone.
    Gone,
}

/// What [`StreamTask::handle_now`] left to do.
enum Pending {
    Nothing,
    /// The consumer is gone.
    Stop,
    /// The batch is full and the buffer has no room for it: wait for room, send it, then start the next batch
    /// with this message.
    Deliver(XLogData),
    /// A keepalive asked for a status update.
    Reply,
}

struct StreamTask<C> {
    conn: Conn,
    info: SessionInfo,
    state: FeedbackState,
    shared: Arc<Shared>,
    classifier: C,
    /// `None` once nothing more will be delivered (end position, server CopyDone, consumer gone) and the last
    /// batch is sent.
    tx: Option<mpsc::UnboundedSender<Batch>>,
    /// Messages handled since the last send, and their share of the byte budget (each clamped as the consumer
    /// gives it back): at most a whole budget, so that room for it always comes.
    batch: Batch,
    batch_bytes: usize,
    /// Nothing more is added to the batch; `tx` goes once the batch is sent.
    closing: bool,
    /// [`StreamConfig::coalesce_reads`]
    coalesce_reads: bool,
}

impl<C: TxnClassifier> StreamTask<C> {
    async fn run(mut self, mut stop_rx: oneshot::Receiver<()>) -> Result<Client> {
        match self.run_inner(&mut stop_rx).await {
            Ok(()) => Ok(Client::from_parts(self.conn, self.info)),
            Err(e) => {
                // the consumer sees the error from next(); stop() sees a copy (the same kind and SQLSTATE: a
                // walsender terminated while stopping is as retryable there as anywhere)
                let copy = e.duplicate();
                if let Some(tx) = self.tx.take() {
                    // what was read before the error, then the error (a batch's worth past the budget at most)
                    let mut batch = std::mem::take(&mut self.batch);
                    batch.push(Err(e));
                    let _ = tx.send(batch);
                }
                Err(copy)
            }
        }
    }

    fn sync_acks(&mut self) {
        self.state.ack(Lsn(self.shared.acked.load(Ordering::Acquire)));
    }

    async fn send_status(&mut self, force: bool) -> Result<()> {
        self.sync_acks();
        if force {
            self.state.request_status();
        }
        if let Some(su) = self.state.poll_status(Instant::now(), to_pg_micros(SystemTime::now())) {
            self.write_status(su).await?;
        }
        Ok(())
    }

    async fn write_status(&mut self, su: StatusUpdate) -> Result<()> {
        su.encode(&mut self.conn.wbuf);
        self.conn.flush().await?;
        self.shared.flushed.fetch_max(su.flush.0, Ordering::AcqRel);
        Ok(())
    }

    /// Nothing more is delivered; the consumer's `next()` returns `None` once it has drained the buffer. The
    /// batch still goes out: the channel closes after the next send ([`close_if_ending`](Self::close_if_ending)).
    fn end_delivery(&mut self) {
        self.closing = true;
        if self.state.end_reached() {
            self.shared.end_reached.store(true, Ordering::Release);
        }
    }

    /// Close the channel once delivery ended and the last batch is sent.
    fn close_if_ending(&mut self) {
        if self.closing && self.batch.is_empty() {
            self.tx = None;
        }
    }

    /// Send the batch if the budgets have room for it now, without waiting.
    fn try_flush(&mut self) -> Flush {
        if self.batch.is_empty() {
            return Flush::Done;
        }
        let bytes = u32::try_from(self.batch_bytes.max(1)).unwrap_or(u32::MAX);
        let msgs = u32::try_from(self.batch.len()).unwrap_or(u32::MAX);
        let Ok(b) = self.shared.budget.try_acquire_many(bytes) else { return Flush::NoRoom };
        // (on failure `b` is dropped: its permits go back)
        let Ok(m) = self.shared.slots.try_acquire_many(msgs) else { return Flush::NoRoom };
        b.forget();
        m.forget();
        self.send_batch()
    }

    /// Send the batch, whose room in the budgets is taken.
    fn send_batch(&mut self) -> Flush {
        self.batch_bytes = 0;
        let cap = self.batch.capacity();
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(cap));
        match &self.tx {
            Some(tx) if tx.send(batch).is_ok() => Flush::Done,
            _ => Flush::Gone,
        }
    }

    /// Add a delivered message to the batch.
    fn push_batch(&mut self, x: XLogData) {
        self.batch_bytes += x.data.len().clamp(1, self.shared.budget_max);
        self.batch.push(Ok(x));
    }

    async fn run_inner(&mut self, stop_rx: &mut oneshot::Receiver<()>) -> Result<()> {
        self.send_status(true).await?;
        let mut server_done = false;
        // The timers (`Timers`) and one wake-up registration for the whole loop, moved rather than re-created
        // per read.
        let mut timers = Timers::new();
        let shared = self.shared.clone();
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        // The read policy (src/proto/pacing.rs): told of every read, it says when to read and sets the socket's
        // options.
        let mut coalesce = Coalescer::new(self.coalesce_reads, &self.conn.sock, Instant::now());
        loop {
            // Handle every whole message already buffered.
            while let Some(msg) = self.conn.decoder.decode(&mut self.conn.rbuf)? {
                let stop = match self.handle_now(msg)? {
                    Pending::Nothing => false,
                    pending => {
                        if let Pending::Deliver(_) = pending {
                            coalesce.pause(&self.conn.sock);
                        }
                        self.handle_pending(pending, stop_rx, &mut timers).await?
                    }
                };
                if stop {
                    return self.finish().await;
                }
                if self.closing && !self.state.end_reached() {
                    server_done = true;
                }
            }
            // The batch goes to the consumer before anything is waited for.
            match self.try_flush() {
                Flush::Done => {}
                Flush::Gone => return self.finish().await,
                Flush::NoRoom => {
                    coalesce.pause(&self.conn.sock);
                    if self.flush_when_room(stop_rx, &mut timers).await? {
                        return self.finish().await;
                    }
                }
            }
            self.send_status(false).await?;
            if self.state.end_reached() {
                self.end_delivery();
            }
            self.close_if_ending();
            if self.conn.read_room_shared() {
                tokio::task::yield_now().await;
            }
            timers.arm_status(self.state.next_deadline());
            let linger = coalesce.linger_deadline();
            // What woke us, polled in this order (stop first, the socket last, so that a busy socket never
            // starves the rest). A hand-written select: tokio's `select!` needs its "macros" feature, and with it
            // five proc-macro crates in the library's dependency tree.
            let wake = {
                let conn = &mut self.conn;
                let coalesce = &mut coalesce;
                let timers = &mut timers;
                std::future::poll_fn(|cx| {
                    if Pin::new(&mut *stop_rx).poll(cx).is_ready() {
                        return Poll::Ready(Wake::Stop);
                    }
                    if woken.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Woken);
                    }
                    if timers.status_elapsed(cx) {
                        return Poll::Ready(Wake::Timer);
                    }
                    if linger.is_some() && timers.linger_elapsed(cx) {
                        return Poll::Ready(Wake::Linger);
                    }
                    // After the server's CopyDone nothing more comes: wait for stop() only.
                    if !server_done {
                        let read_now = match coalesce.read_gate(conn.read_filled) {
                            ReadGate::Now => true,
                            ReadGate::At(until) => timers.pace_elapsed(cx, until),
                            ReadGate::WhenReadable => match conn.sock.poll_readable(cx) {
                                Poll::Ready(Err(e)) => return Poll::Ready(Wake::Read(Err(e))),
                                Poll::Ready(Ok(())) => timers.pace_elapsed(cx, coalesce.on_readable(Instant::now())),
                                Poll::Pending => false,
                            },
                        };
                        if read_now {
                            if let Poll::Ready(r) = conn.poll_fill(cx) {
                                return Poll::Ready(Wake::Read(r));
                            }
                        }
                    }
                    Poll::Pending
                })
                .await
            };
            match wake {
                Wake::Read(r) => {
                    let n = r.map_err(|e| Error::io("reading replication stream", e))?;
                    if n == 0 {
                        return Err(server_closed());
                    }
                    coalesce.on_read(n, self.conn.read_filled, Instant::now(), &self.conn.sock);
                    timers.arm_linger(coalesce.linger_deadline());
                }
                Wake::Linger => {
                    // Less than the low-water mark came within the linger time. On plain TCP, take what is there
                    // without lowering the mark; whether to go on coalescing is the policy's call. Elsewhere
                    // (TLS) coalescing stops now.
                    let now = Instant::now();
                    let read = match self.conn.read_now() {
                        Ok(0) => return Err(server_closed()),
                        Ok(bytes) => LingerRead::Read { bytes, filled: self.conn.read_filled },
                        Err(e)
                            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) =>
                        {
                            LingerRead::Nothing
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => LingerRead::Unsupported,
                        Err(e) => return Err(Error::io("reading replication stream", e)),
                    };
                    coalesce.on_linger(read, now, &self.conn.sock);
                    timers.arm_linger(coalesce.linger_deadline());
                }
                Wake::Timer => {}
                Wake::Woken => {
                    woken.set(shared.wake.notified());
                    self.send_status(true).await?;
                }
                Wake::Stop => return self.finish().await,
            }
        }
    }

    /// Handle one message without waiting when that is possible (the usual case: an XLogData with room in
    /// the buffer, a keepalive without reply request): no future is built per message. Returns what still needs
    /// an `.await`, for [`handle_pending`](Self::handle_pending).
    fn handle_now(&mut self, msg: BackendMessage) -> Result<Pending> {
        match msg {
            BackendMessage::CopyData(p) => match ReplicationMessage::parse(p)? {
                ReplicationMessage::XLogData(mut x) => {
                    self.shared.received.fetch_max(x.wal_end.0, Ordering::AcqRel);
                    x.boundary = self.classifier.classify(&x.data);
                    self.sync_acks();
                    if self.state.on_xlogdata(&x, x.boundary) == Delivery::Stop {
                        // past the end position: not delivered, not acknowledged, sent again next time
                        self.end_delivery();
                        return Ok(Pending::Nothing);
                    }
                    if self.closing || self.tx.is_none() {
                        return Ok(Pending::Nothing);
                    }
                    let n = x.data.len().clamp(1, self.shared.budget_max);
                    let full =
                        self.batch_bytes + n > self.shared.budget_max || self.batch.len() >= self.shared.slots_max;
                    if full {
                        match self.try_flush() {
                            Flush::Done => {}
                            Flush::NoRoom => return Ok(Pending::Deliver(x)),
                            Flush::Gone => return Ok(Pending::Stop), // consumer gone
                        }
                    }
                    self.push_batch(x);
                    if self.state.end_reached() {
                        self.end_delivery();
                    }
                    Ok(Pending::Nothing)
                }
                ReplicationMessage::Keepalive(k) => {
                    self.shared.received.fetch_max(k.wal_end.0, Ordering::AcqRel);
                    self.sync_acks();
                    self.state.on_keepalive(&k);
                    if k.reply_requested {
                        return Ok(Pending::Reply);
                    }
                    if self.state.end_reached() {
                        self.end_delivery();
                    }
                    Ok(Pending::Nothing)
                }
            },
            BackendMessage::CopyDone => {
                // The server ended the stream (e.g. shutdown, or its end of timeline): deliver nothing more and
                // wait for stop(), which sends the final status update and our CopyDone.
                self.end_delivery();
                Ok(Pending::Nothing)
            }
            BackendMessage::NoticeResponse(n) => {
                (self.conn.notice)(&n);
                Ok(Pending::Nothing)
            }
            BackendMessage::ErrorResponse(e) => Err(Error::db(e)),
            // A walsender told to stop (fast or smart server shutdown) waits until the client has confirmed
            // everything it sent, then ends the COPY with CommandComplete and exits (walsender.c WalSndDone): the
            // connection is going away and a reconnect may succeed, as for a dropped connection.
            BackendMessage::CommandComplete(tag) => {
                Err(Error::closed(format!("the server ended replication ({tag}): it is shutting down")))
            }
            BackendMessage::ParameterStatus { name, value } => {
                self.info.parameters.push((name, value));
                Ok(Pending::Nothing)
            }
            other => Err(Error::protocol(format!("unexpected {} during replication", other.name()))),
        }
    }

    /// The waiting part of [`handle_now`](Self::handle_now); `Ok(true)` means stop was requested (or the consumer
    /// is gone) while waiting for buffer room.
    async fn handle_pending(
        &mut self,
        pending: Pending,
        stop_rx: &mut oneshot::Receiver<()>,
        timers: &mut Timers,
    ) -> Result<bool> {
        match pending {
            Pending::Nothing => return Ok(false),
            Pending::Stop => return Ok(true),
            Pending::Deliver(x) => {
                if self.flush_when_room(stop_rx, timers).await? {
                    return Ok(true);
                }
                self.push_batch(x);
            }
            Pending::Reply => self.send_status(false).await?,
        }
        if self.state.end_reached() {
            self.end_delivery();
        }
        Ok(false)
    }

    /// Backpressure: wait for room for the batch without reading the socket, but keep the status timer running;
    /// then send it. `Ok(true)`: stop was requested or the consumer is gone.
    async fn flush_when_room(&mut self, stop_rx: &mut oneshot::Receiver<()>, timers: &mut Timers) -> Result<bool> {
        if self.batch.is_empty() {
            return Ok(false);
        }
        loop {
            timers.arm_status(self.state.next_deadline());
            let shared = self.shared.clone();
            let (bytes, msgs) = (self.batch_bytes, self.batch.len());
            let wake = {
                let room = room(&shared, bytes, msgs);
                tokio::pin!(room);
                let timers = &mut *timers;
                let woken = shared.wake.notified();
                tokio::pin!(woken);
                std::future::poll_fn(|cx| {
                    if Pin::new(&mut *stop_rx).poll(cx).is_ready() {
                        return Poll::Ready(Room::Stop);
                    }
                    if let Poll::Ready(r) = room.as_mut().poll(cx) {
                        // (`None`: the budgets closed, which they never are while the task runs)
                        return Poll::Ready(if r.is_some() { Room::Ready } else { Room::Stop });
                    }
                    if timers.status_elapsed(cx) {
                        return Poll::Ready(Room::Timer);
                    }
                    if woken.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Room::Woken);
                    }
                    Poll::Pending
                })
                .await
            };
            match wake {
                Room::Ready => return Ok(matches!(self.send_batch(), Flush::Gone)),
                Room::Timer => self.send_status(false).await?,
                Room::Woken => self.send_status(true).await?,
                Room::Stop => return Ok(true),
            }
        }
    }

    /// Final status update, CopyDone, then read until CommandComplete and ReadyForQuery.
    async fn finish(&mut self) -> Result<()> {
        // the connection goes back to request/response use: every byte must wake the reader again
        self.conn.sock.set_recv_lowat(1);
        // not consumed, so not acknowledged: the server sends these again next time
        self.batch.clear();
        self.end_delivery();
        self.close_if_ending();
        self.sync_acks();
        let su = self.state.status(to_pg_micros(SystemTime::now()));
        self.write_status(su).await?;
        frontend::copy_done(&mut self.conn.wbuf);
        self.conn.flush().await?;
        let mut err = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.conn.read_message()).await {
                Ok(m) => m?,
                Err(_) => return Err(Error::timeout("server did not end the COPY within 30 s of CopyDone")),
            };
            match msg {
                BackendMessage::CopyData(_) => {} // not delivered, not acknowledged: sent again next time
                BackendMessage::CopyDone => {}    // the server's half of the copy ends too
                BackendMessage::CommandComplete(_) | BackendMessage::RowDescription(_) | BackendMessage::DataRow(_) => {
                }
                BackendMessage::NoticeResponse(n) => (self.conn.notice)(&n),
                BackendMessage::ErrorResponse(e) => {
                    err.get_or_insert(Error::db(e));
                }
                BackendMessage::ReadyForQuery(_) => break,
                other => return Err(Error::protocol(format!("unexpected {} while ending replication", other.name()))),
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pacing::{CoalesceMode, COALESCE_LOWAT, COALESCE_NEAR_RTT, COALESCE_PACED_BUF};

    /// The read policy on a real loopback socket (the policy alone, against a fake kernel: src/proto/pacing.rs):
    /// a fast stretch fixes the receive buffer, `pause` (the reader stops reading) hands it back to the kernel
    /// and wakes the reader for every byte again, the next fast stretch fixes it again.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn window_mode_lets_go_of_the_buffer_while_paused() {
        use crate::conn::tests::{loopback_pair, sockopt};
        let (sock, _peer) = loopback_pair().await;
        let Socket::Tcp(s) = &sock else { panic!("a TCP socket") };
        if !sock.can_unlock_recv_buf() {
            eprintln!("skipped: this kernel has no SO_BUF_LOCK (Linux 5.14)");
            return;
        }
        let opt = crate::conn::SO_BUF_LOCK.unwrap();
        let locked = |s| sockopt(s, libc::SOL_SOCKET, opt) & 2 != 0;
        let lowat = |s| sockopt(s, libc::SOL_SOCKET, libc::SO_RCVLOWAT);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // 10 MB in a read: a fast stretch
        let burst = 10_000_000;
        let mut c = Coalescer::new(true, &sock, t0);
        assert_eq!(lowat(s), 1);
        // a short round trip (min_rtt, asserted in client.rs) and an unlockable buffer: paced where
        // net.core.rmem_max lets the buffer be fixed at COALESCE_PACED_BUF, else window mode
        assert!(sock.min_rtt().is_some_and(|rtt| rtt <= COALESCE_NEAR_RTT));
        let rmem_max: i32 = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        let mode = if rmem_max >= COALESCE_PACED_BUF { CoalesceMode::Paced } else { CoalesceMode::Window };
        let booked = |s| sockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF);
        assert!(!locked(s));
        c.on_read(burst, false, ms(3), &sock);
        assert_eq!((c.mode(), c.coalescing(), c.buffer_fixed()), (Some(mode), true, true));
        assert!(locked(s));
        assert_eq!(booked(s), 2 * mode.buffer().unwrap());
        assert_eq!(lowat(s), mode.lowat());
        let paced = mode == CoalesceMode::Paced;
        assert_eq!(c.read_gate(false) == ReadGate::WhenReadable, paced);
        c.pause(&sock);
        assert!(!c.coalescing() && !c.buffer_fixed());
        assert!(!locked(s));
        assert_eq!(lowat(s), 1);
        // pausing twice changes nothing
        c.pause(&sock);
        assert!(!locked(s));
        assert_eq!(c.read_gate(false), ReadGate::Now);
        c.on_read(burst, false, ms(10), &sock);
        assert_eq!((c.mode(), c.coalescing(), c.buffer_fixed()), (Some(mode), true, true));
        assert!(locked(s));
        assert_eq!(lowat(s), mode.lowat());
        // a policy of the low-water mode never touches the buffer
        let (sock, _peer) = loopback_pair().await;
        let Socket::Tcp(s) = &sock else { panic!("a TCP socket") };
        let mut c = Coalescer::new(true, &sock, t0).with_mode(CoalesceMode::LowWater);
        c.on_read(burst, false, ms(3), &sock);
        assert!(c.coalescing() && !c.buffer_fixed() && !locked(s));
        assert_eq!(lowat(s), COALESCE_LOWAT);
        c.pause(&sock);
        assert!(!c.coalescing() && !locked(s));
        assert_eq!(lowat(s), 1);
        // over TLS or a Unix-domain socket only the plain-TCP check differs: a Unix socket takes no options
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let unix = Socket::Unix(tokio::net::UnixStream::from_std(a).unwrap());
        assert!(!unix.is_plain_tcp() && sock.is_plain_tcp());
        let mut c = Coalescer::new(true, &unix, t0);
        c.on_read(burst, false, ms(3), &unix);
        assert!(!c.coalescing() && c.mode().is_none());
    }
}
