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

/// Read coalescing ([`StreamConfig::coalesce_reads`]): the low-water mark asked for while the stream runs fast.
/// Without it, a reader that keeps up is woken and reads once per message (a few hundred bytes), and those
/// wake-ups and reads are most of the client's CPU on a bulk drain.
const COALESCE_LOWAT: i32 = 32 * 1024;
/// How long after the last read a coalescing reader waits for the low-water mark before taking what is there
/// (tokio's timers have a 1 ms granularity: 1-2 ms).
const COALESCE_LINGER: Duration = Duration::from_millis(1);
/// Coalescing starts after a window of at least COALESCE_WINDOW that saw at least COALESCE_RATE bytes/s.
const COALESCE_RATE: f64 = 16e6;
const COALESCE_WINDOW: Duration = Duration::from_millis(2);
/// Coalescing stops once the stream has not run fast for this long. Until then a linger that finds less than
/// the low-water mark reads what is there and leaves the mark as it is ([`Conn::read_now`]). A bulk stream
/// comes in bursts (the walsender sends each transaction at its commit, then decodes the next one for a few
/// milliseconds): stopping at the first quiet linger meant a dozen reads of one message each at the start of
/// every burst, and the walsender sending each of those messages in a segment of its own, before the rate was
/// measured again (a bulk drain: 2,750 of its 4,360 reads under 4 KiB; keeping the mark took the client's CPU
/// down by a sixth, docs/bench-e2e.md). A message still waits at most a linger.
const COALESCE_COOL: Duration = Duration::from_millis(50);
/// Coalescing stops after this many lingers in a row that found a slowed stream ([`Coalescer::keep_after_linger`]).
const SLOW_LINGERS: u8 = 2;
/// A connection whose smallest round trip is at most this (loopback, a LAN) coalesces in
/// [`CoalesceMode::Window`].
const COALESCE_NEAR_RTT: Duration = Duration::from_millis(1);
/// [`CoalesceMode::Window`]'s receive buffer (`SO_RCVBUF`; the kernel books twice this). It fits under Linux's
/// default `net.core.rmem_max` (208 KiB).
const COALESCE_WINDOW_BUF: i32 = 192 * 1024;
/// [`CoalesceMode::Window`]'s linger: its wake-ups come from the window, the timer only bounds a slowing stream.
const COALESCE_WINDOW_LINGER: Duration = Duration::from_millis(3);
/// [`CoalesceMode::Paced`]'s receive buffer. Needs `net.core.rmem_max` at least this much.
const COALESCE_PACED_BUF: i32 = 384 * 1024;
/// [`CoalesceMode::Paced`]'s wait between the window's closing and the read (tokio's timers: 3-4 ms).
const COALESCE_PACE: Duration = Duration::from_millis(3);
/// [`CoalesceMode::Paced`]: after this many reads in a row that took all the room there was, the reader reads
/// without waiting until the socket is empty (see [`drain_backlog`]).
const PACE_FILLED_STREAK: u32 = 8;
/// [`CoalesceMode::Paced`]'s linger (what bounds a message's wait when the stream slows down).
const COALESCE_PACED_LINGER: Duration = Duration::from_millis(5);

/// How a coalescing reader asks the kernel to wake it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CoalesceMode {
    /// `SO_RCVLOWAT` at [`COALESCE_LOWAT`], the receive buffer left to the kernel's tuning, [`COALESCE_LINGER`].
    LowWater,
    /// The receive buffer fixed at [`COALESCE_WINDOW_BUF`] and the low-water mark as high as the kernel allows
    /// (half its booked buffer): Linux then signals readiness when the receive window is about to close or the
    /// buffer is under memory pressure (`tcp_data_ready`), or after [`COALESCE_WINDOW_LINGER`]. The reader wakes
    /// about half as often as in `LowWater`, and the sender, finding the window closed now and then, sends its
    /// queued messages in fewer, larger segments, which saves loopback TCP work on both sides (docs/bench-e2e.md:
    /// client CPU -25 %, walsender CPU and drain time -5-10 %). Only where the round trip is short: a fixed
    /// buffer caps a connection at about buffer / round trip. Only while the reader keeps up: see
    /// [`Coalescer::pause`].
    Window,
    /// [`Window`](Self::Window) with a larger buffer ([`COALESCE_PACED_BUF`]) and a pace: woken when the window
    /// is about to close, the reader waits [`COALESCE_PACE`] before reading, and takes at most one read buffer's
    /// room per wait. Meanwhile the walsender's per-message sends queue up in its socket (it does not block: its
    /// send buffer holds megabytes) and leave as a few large segments when the window opens: 5-10x fewer TCP
    /// segments, half the client's system time, and a walsender that spends a fifth less CPU and so finishes
    /// sooner (docs/bench-e2e.md: drain wall time -20 %, client CPU -10-15 %). That backlog is the point, and it
    /// is bounded: after [`PACE_FILLED_STREAK`] reads in a row that took all the room, the reader drains the
    /// socket without waiting ([`drain_backlog`]), so it never holds a sender back for long. Chosen instead of
    /// `Window` on plain TCP (under TLS, readiness does not say whether the window closed) where the kernel lets
    /// the buffer be fixed that large.
    Paced,
}

impl CoalesceMode {
    /// The mode for a connection whose smallest round trip is `min_rtt` (`None`: unknown), `can_pace` when it is
    /// plain TCP; `fix_buffer(bytes)` fixes the receive buffer and says whether the kernel booked all of it.
    fn choose(min_rtt: Option<Duration>, can_pace: bool, mut fix_buffer: impl FnMut(i32) -> bool) -> Self {
        match min_rtt {
            Some(rtt) if rtt <= COALESCE_NEAR_RTT => {
                if can_pace && fix_buffer(COALESCE_PACED_BUF) {
                    CoalesceMode::Paced
                } else if fix_buffer(COALESCE_WINDOW_BUF) {
                    CoalesceMode::Window
                } else {
                    CoalesceMode::LowWater
                }
            }
            _ => CoalesceMode::LowWater,
        }
    }

    /// The fixed receive buffer, if any.
    fn buffer(self) -> Option<i32> {
        match self {
            CoalesceMode::LowWater => None,
            CoalesceMode::Window => Some(COALESCE_WINDOW_BUF),
            CoalesceMode::Paced => Some(COALESCE_PACED_BUF),
        }
    }

    fn lowat(self) -> i32 {
        // the kernel caps SO_RCVLOWAT at half the booked buffer, which is the buffer asked for
        self.buffer().unwrap_or(COALESCE_LOWAT)
    }

    fn linger(self) -> Duration {
        match self {
            CoalesceMode::LowWater => COALESCE_LINGER,
            CoalesceMode::Window => COALESCE_WINDOW_LINGER,
            CoalesceMode::Paced => COALESCE_PACED_LINGER,
        }
    }
}

/// [`CoalesceMode::Paced`]: whether to read at once rather than wait, given whether the last read took all the
/// room there was and how many reads in a row did. A paced reader takes at most one buffer's room per wait, so a
/// sender faster than that builds a backlog (in its socket, up to its send buffer); after
/// [`PACE_FILLED_STREAK`] full reads in a row the reader takes the backlog at full speed, until a read no longer
/// fills the room. So pacing never holds the stream back for more than a few waits: without this, a 3 ms wait
/// capped a bulk drain at ~20 MB/s (5.7 s instead of 2.4 s, docs/bench-e2e.md).
fn drain_backlog(read_filled: bool, filled_streak: u32) -> bool {
    read_filled && filled_streak >= PACE_FILLED_STREAK
}

/// After a read of `n` bytes (`filled`: it took all the room there was): the count of full reads in a row for
/// [`drain_backlog`], and the end of the stream as an error.
fn count_read(n: usize, filled: bool, filled_streak: &mut u32) -> Result<()> {
    *filled_streak = if filled { filled_streak.saturating_add(1) } else { 0 };
    if n == 0 {
        return Err(Error::closed("server closed the replication connection"));
    }
    Ok(())
}

/// When to coalesce reads: the byte rate measured over windows of at least [`COALESCE_WINDOW`].
struct Coalescer {
    enabled: bool,
    /// SO_RCVLOWAT is at the mode's low-water mark.
    on: bool,
    /// Chosen the first time coalescing starts.
    mode: Option<CoalesceMode>,
    /// The receive buffer is fixed at the mode's size ([`CoalesceMode::Window`] and [`CoalesceMode::Paced`] while
    /// reading).
    buf_fixed: bool,
    window_start: Instant,
    window_bytes: usize,
    /// The end of the last window that ran fast.
    last_hot: Option<Instant>,
    /// Lingers in a row whose read found bytes that came slower than [`COALESCE_RATE`].
    slow_lingers: u8,
}

impl Coalescer {
    fn new(enabled: bool) -> Self {
        Coalescer {
            enabled,
            on: false,
            mode: None,
            buf_fixed: false,
            window_start: Instant::now(),
            window_bytes: 0,
            last_hot: None,
            slow_lingers: 0,
        }
    }

    /// Account a read of `n` bytes; `true` when coalescing should start.
    fn hot_after_read(&mut self, n: usize, now: Instant) -> bool {
        if !self.enabled {
            return false;
        }
        self.window_bytes += n;
        let dt = now.saturating_duration_since(self.window_start);
        if dt < COALESCE_WINDOW {
            return false;
        }
        let hot = self.window_bytes as f64 >= COALESCE_RATE * dt.as_secs_f64();
        self.window_start = now;
        self.window_bytes = 0;
        if hot {
            self.last_hot = Some(now);
        }
        hot && !self.on
    }

    /// Whether the stream has not run fast for [`COALESCE_COOL`].
    fn cooled(&self, now: Instant) -> bool {
        self.last_hot.is_none_or(|t| now.saturating_duration_since(t) >= COALESCE_COOL)
    }

    /// A linger fired and its read took `read` bytes (0: nothing was queued); whether to go on coalescing.
    /// Nothing queued is a gap between a bulk stream's bursts: go on, until [`cooled`](Self::cooled). Bytes
    /// that came slower than [`COALESCE_RATE`] are a stream that slowed down but still flows (a moderate rate
    /// of small transactions that looked fast for a moment, or a burst's tail): a second such linger in a row
    /// stops coalescing, so that its messages stop waiting for lingers. (Keeping a fixed buffer and a high mark
    /// over 10,000 single-row transactions a second took their p99 latency from 2 ms to 7-25 ms: small segments
    /// fill the buffer's memory long before its bytes reach the mark.)
    fn keep_after_linger(&mut self, read: usize, now: Instant) -> bool {
        if read == 0 {
            self.slow_lingers = 0;
        } else {
            self.hot_after_read(read, now);
            if read as f64 >= COALESCE_RATE * self.linger().as_secs_f64() {
                self.slow_lingers = 0;
            } else {
                self.slow_lingers = self.slow_lingers.saturating_add(1);
            }
        }
        self.slow_lingers < SLOW_LINGERS && !self.cooled(now)
    }

    /// Start coalescing on `sock`, choosing the mode the first time (`on` stays false if the socket refuses).
    /// A fixed buffer needs to be one that [`pause`](Self::pause) can let go of again.
    fn start(&mut self, sock: &Socket) {
        let first = self.mode.is_none();
        let mode = *self.mode.get_or_insert_with(|| {
            let unlockable = sock.can_unlock_recv_buf();
            CoalesceMode::choose(sock.min_rtt(), matches!(sock, Socket::Tcp(_)), |bytes| {
                unlockable && sock.set_recv_buf(bytes) && sock.recv_buf().is_some_and(|b| b >= 2 * bytes)
            })
        });
        if let Some(bytes) = mode.buffer() {
            // fixed by `choose` the first time, here again after a pause
            self.buf_fixed = self.buf_fixed || first || sock.set_recv_buf(bytes);
        }
        self.on = sock.set_recv_lowat(mode.lowat());
    }

    /// The wait between the socket's readiness and the read, while coalescing in [`CoalesceMode::Paced`].
    fn pace(&self) -> Option<Duration> {
        (self.on && self.mode == Some(CoalesceMode::Paced)).then_some(COALESCE_PACE)
    }

    /// The reader stops reading (backpressure): back to waking up for every byte, and the receive buffer back
    /// to the kernel's tuning. A fixed buffer that fills up while nobody reads makes Linux drop whole incoming
    /// segments, the server's acknowledgements with them, once the queued data's overhead passes the buffer:
    /// our status updates then never get acknowledged, the server backs off its retransmissions, and a stall
    /// longer than `wal_sender_timeout` ends in "terminating walsender process due to replication timeout".
    /// An unlocked buffer grows to hold what the window let in, and the window closes cleanly. The next fast
    /// stretch after the pause fixes the buffer again ([`start`](Self::start)).
    fn pause(&mut self, sock: &Socket) {
        if self.buf_fixed {
            sock.unlock_recv_buf();
            self.buf_fixed = false;
        }
        self.off(sock);
    }

    /// Back to waking up for every byte (the kernel signals readiness at once when bytes are already waiting).
    fn off(&mut self, sock: &Socket) {
        self.slow_lingers = 0;
        if self.on {
            self.on = false;
            sock.set_recv_lowat(1);
        }
    }

    /// How long after a read to wait for the low-water mark.
    fn linger(&self) -> Duration {
        self.mode.map_or(COALESCE_LINGER, CoalesceMode::linger)
    }
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

    fn deadline(&self) -> tokio::time::Instant {
        let d = self.state.next_deadline().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::time::Instant::from_std(d)
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
        // One timer and one wake-up registration for the whole loop, moved rather than re-created per read:
        // registering a new timer while the runtime's timer wheel is empty makes tokio unpark its driver (a
        // write to its eventfd), which per read was a system call per handful of messages.
        let shared = self.shared.clone();
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(timer);
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        let mut coalesce = Coalescer::new(self.coalesce_reads && self.conn.sock.set_recv_lowat(1));
        let linger = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(linger);
        // CoalesceMode::Paced: the pace timer, and whether it runs.
        let pace_timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(pace_timer);
        let mut pacing = false;
        // CoalesceMode::Paced: reads in a row that took all the room there was.
        let mut filled_streak: u32 = 0;
        loop {
            // Handle every whole message already buffered.
            while let Some(msg) = self.conn.decoder.decode(&mut self.conn.rbuf)? {
                let stop = match self.handle_now(msg)? {
                    Pending::Nothing => false,
                    pending => {
                        if let Pending::Deliver(_) = pending {
                            coalesce.pause(&self.conn.sock);
                        }
                        self.handle_pending(pending, stop_rx).await?
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
                    if self.flush_when_room(stop_rx).await? {
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
            let deadline = self.deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            // What woke us, polled in this order (stop first, the socket last, so that a busy socket never
            // starves the rest). A hand-written select: tokio's `select!` needs its "macros" feature, and with it
            // five proc-macro crates in the library's dependency tree.
            let wake = {
                let conn = &mut self.conn;
                let coalescing = coalesce.on;
                let pace = coalesce.pace();
                pacing &= pace.is_some();
                std::future::poll_fn(|cx| {
                    if Pin::new(&mut *stop_rx).poll(cx).is_ready() {
                        return Poll::Ready(Wake::Stop);
                    }
                    if woken.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Woken);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                    if coalescing && linger.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Linger);
                    }
                    // After the server's CopyDone nothing more comes: wait for stop() only.
                    if !server_done {
                        let read_now = match pace {
                            None => true,
                            Some(_) if pacing => pace_timer.as_mut().poll(cx).is_ready(),
                            Some(_) if drain_backlog(conn.read_filled, filled_streak) => true,
                            Some(d) => match conn.sock.poll_readable(cx) {
                                Poll::Ready(Err(e)) => return Poll::Ready(Wake::Read(Err(e))),
                                Poll::Ready(Ok(())) => {
                                    pacing = true;
                                    pace_timer.as_mut().reset(tokio::time::Instant::now() + d);
                                    pace_timer.as_mut().poll(cx).is_ready()
                                }
                                Poll::Pending => false,
                            },
                        };
                        if read_now {
                            if let Poll::Ready(r) = conn.poll_fill(cx) {
                                pacing = false;
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
                    count_read(n, self.conn.read_filled, &mut filled_streak)?;
                    let now = tokio::time::Instant::now();
                    if coalesce.hot_after_read(n, now.into_std()) {
                        coalesce.start(&self.conn.sock);
                    }
                    if coalesce.on {
                        coalesce.slow_lingers = 0;
                        linger.as_mut().reset(now + coalesce.linger());
                    }
                }
                Wake::Linger => {
                    // Less than the low-water mark came within the linger time. On plain TCP, take what is there
                    // without lowering the mark; whether to go on coalescing: `keep_after_linger`. Elsewhere
                    // (TLS) stop coalescing now.
                    let now = tokio::time::Instant::now();
                    let read = match self.conn.read_now() {
                        Ok(n) => {
                            count_read(n, self.conn.read_filled, &mut filled_streak)?;
                            pacing = false;
                            Some(n)
                        }
                        Err(e)
                            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) =>
                        {
                            Some(0)
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => None,
                        Err(e) => return Err(Error::io("reading replication stream", e)),
                    };
                    if read.is_some_and(|n| coalesce.keep_after_linger(n, now.into_std())) {
                        linger.as_mut().reset(now + coalesce.linger());
                    } else {
                        coalesce.off(&self.conn.sock);
                    }
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
    async fn handle_pending(&mut self, pending: Pending, stop_rx: &mut oneshot::Receiver<()>) -> Result<bool> {
        match pending {
            Pending::Nothing => return Ok(false),
            Pending::Stop => return Ok(true),
            Pending::Deliver(x) => {
                if self.flush_when_room(stop_rx).await? {
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
    async fn flush_when_room(&mut self, stop_rx: &mut oneshot::Receiver<()>) -> Result<bool> {
        if self.batch.is_empty() {
            return Ok(false);
        }
        loop {
            let deadline = self.deadline();
            let shared = self.shared.clone();
            let (bytes, msgs) = (self.batch_bytes, self.batch.len());
            let wake = {
                let room = room(&shared, bytes, msgs);
                tokio::pin!(room);
                let timer = tokio::time::sleep_until(deadline);
                tokio::pin!(timer);
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
                    if timer.as_mut().poll(cx).is_ready() {
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

    #[test]
    fn window_coalescing_only_on_a_short_round_trip_with_a_fixed_buffer() {
        let near = Some(Duration::from_micros(40));
        let far = Some(Duration::from_millis(20));
        // plain TCP: paced when the large buffer can be booked, else the window mode's smaller one
        let fix = |ok_up_to: i32| move |bytes: i32| bytes <= ok_up_to;
        assert_eq!(CoalesceMode::choose(near, true, fix(COALESCE_PACED_BUF)), CoalesceMode::Paced);
        assert_eq!(CoalesceMode::choose(Some(COALESCE_NEAR_RTT), true, |_| true), CoalesceMode::Paced);
        assert_eq!(CoalesceMode::choose(near, true, fix(COALESCE_WINDOW_BUF)), CoalesceMode::Window);
        // under TLS: never paced
        assert_eq!(CoalesceMode::choose(near, false, |_| true), CoalesceMode::Window);
        // the buffer could not be fixed: the low-water mark alone
        assert_eq!(CoalesceMode::choose(near, true, |_| false), CoalesceMode::LowWater);
        assert_eq!(CoalesceMode::choose(near, false, |_| false), CoalesceMode::LowWater);
        // a long or unknown round trip: the buffer is not even touched (it would cap the connection)
        let mut touched = false;
        for rtt in [far, None, Some(COALESCE_NEAR_RTT + Duration::from_micros(1))] {
            let mode = CoalesceMode::choose(rtt, true, |_| {
                touched = true;
                true
            });
            assert_eq!(mode, CoalesceMode::LowWater);
        }
        assert!(!touched);
        // the low-water marks are the most the kernel accepts with those buffers
        assert_eq!(CoalesceMode::Window.lowat(), COALESCE_WINDOW_BUF);
        assert_eq!(CoalesceMode::Paced.lowat(), COALESCE_PACED_BUF);
        assert_eq!(CoalesceMode::LowWater.lowat(), COALESCE_LOWAT);
        assert!(CoalesceMode::Window.linger() > CoalesceMode::LowWater.linger());
    }

    #[test]
    fn a_paced_reader_drains_a_growing_backlog() {
        // a read that left room: the socket is empty, wait again
        assert!(!drain_backlog(false, 0));
        assert!(!drain_backlog(false, PACE_FILLED_STREAK + 5));
        // full reads: wait between them until the streak says the sender's backlog grows
        for streak in 1..PACE_FILLED_STREAK {
            assert!(!drain_backlog(true, streak));
        }
        assert!(drain_backlog(true, PACE_FILLED_STREAK));
        assert!(drain_backlog(true, u32::MAX));
        // the streak: full reads in a row; a read that left room ends it; 0 bytes is the end of the stream
        let mut streak = 0;
        count_read(100, true, &mut streak).unwrap();
        count_read(100, true, &mut streak).unwrap();
        assert_eq!(streak, 2);
        count_read(50, false, &mut streak).unwrap();
        assert_eq!(streak, 0);
        assert_eq!(count_read(0, false, &mut streak).unwrap_err().kind(), crate::error::ErrorKind::Closed);
        // the wait is what lets the sender batch; the linger bounds a message's wait after a slowdown
        assert!(COALESCE_PACE >= Duration::from_millis(1));
        assert!(CoalesceMode::Paced.linger() > COALESCE_PACE);
    }

    #[test]
    fn coalescing_cools_down_once_the_stream_stops_running_fast() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = Coalescer { window_start: t0, ..Coalescer::new(true) };
        // never ran fast
        assert!(c.cooled(t0));
        // 1 MB in 3 ms: fast, coalescing starts
        assert!(c.hot_after_read(1_000_000, ms(3)));
        c.on = true;
        assert!(!c.cooled(ms(3)));
        // slow windows (a few hundred bytes each) do not move the last fast one: cooled once COALESCE_COOL has
        // passed since it (what a slowed stream's lingers do: `keep_after_linger`, below)
        for t in (6..50).step_by(3) {
            assert!(!c.hot_after_read(300, ms(t)));
            assert!(!c.cooled(ms(t)), "{t} ms");
        }
        assert!(c.cooled(ms(3) + COALESCE_COOL));
        // a fast window while on pushes the cool-down back, without asking to start again
        assert!(!c.hot_after_read(1_000_000, ms(60)));
        assert!(!c.cooled(ms(60) + COALESCE_COOL - Duration::from_millis(1)));
        assert!(c.cooled(ms(60) + COALESCE_COOL));
        // the cool-down outlasts several lingers: the gaps between a bulk stream's transactions
        for mode in [CoalesceMode::LowWater, CoalesceMode::Window, CoalesceMode::Paced] {
            assert!(mode.linger() < COALESCE_COOL);
        }
    }

    #[test]
    fn a_linger_keeps_coalescing_over_gaps_but_not_over_a_slowed_stream() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let hot_at = |t| {
            let mut c = Coalescer { window_start: t0, mode: Some(CoalesceMode::Paced), ..Coalescer::new(true) };
            assert!(c.hot_after_read(10_000_000, t));
            c.on = true;
            c
        };
        let linger = u64::try_from(CoalesceMode::Paced.linger().as_millis()).unwrap();
        let fast = (COALESCE_RATE * CoalesceMode::Paced.linger().as_secs_f64()) as usize + 1;
        let slow = 2_000;
        // gaps (nothing queued at a linger): kept, linger after linger, until COALESCE_COOL after the last fast
        // window
        let mut c = hot_at(ms(3));
        let mut t = 3;
        while ms(t + linger) < ms(3) + COALESCE_COOL {
            t += linger;
            assert!(c.keep_after_linger(0, ms(t)), "{t} ms");
        }
        assert!(!c.keep_after_linger(0, ms(3) + COALESCE_COOL));
        // a burst's tail, a gap, the next burst: never two slow lingers in a row
        let mut c = hot_at(ms(100));
        assert!(c.keep_after_linger(slow, ms(105)));
        assert!(c.keep_after_linger(0, ms(110)));
        assert!(c.keep_after_linger(slow, ms(115)));
        assert!(c.keep_after_linger(fast, ms(120)));
        assert!(c.keep_after_linger(slow, ms(125)));
        // a stream that slowed down but flows: the second slow linger in a row stops coalescing
        assert!(!c.keep_after_linger(slow, ms(130)));
        // and `off` starts the count again
        let (sock, _) = std::os::unix::net::UnixStream::pair().unwrap();
        sock.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _g = rt.enter();
        let sock = Socket::Unix(tokio::net::UnixStream::from_std(sock).unwrap());
        c.off(&sock);
        assert!(!c.on);
        assert_eq!(c.slow_lingers, 0);
    }

    /// Window mode on a loopback socket: `start` fixes the receive buffer, `pause` (the reader stops reading)
    /// hands it back to the kernel and wakes the reader for every byte again, the next `start` fixes it again.
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
        let mut c = Coalescer::new(true);
        // a short round trip (min_rtt, asserted in client.rs) and an unlockable buffer: paced where
        // net.core.rmem_max lets the buffer be fixed at COALESCE_PACED_BUF, else window mode
        assert!(sock.min_rtt().is_some_and(|rtt| rtt <= COALESCE_NEAR_RTT));
        let rmem_max: i32 = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        let mode = if rmem_max >= COALESCE_PACED_BUF { CoalesceMode::Paced } else { CoalesceMode::Window };
        let booked = |s| sockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF);
        assert!(!locked(s));
        c.start(&sock);
        assert_eq!((c.mode, c.on, c.buf_fixed), (Some(mode), true, true));
        assert!(locked(s));
        assert_eq!(booked(s), 2 * mode.buffer().unwrap());
        assert_eq!(lowat(s), mode.lowat());
        assert_eq!(c.pace().is_some(), mode == CoalesceMode::Paced);
        c.pause(&sock);
        assert!(!c.on && !c.buf_fixed);
        assert!(!locked(s));
        assert_eq!(lowat(s), 1);
        // pausing twice changes nothing
        c.pause(&sock);
        assert!(!locked(s));
        assert!(c.pace().is_none());
        c.start(&sock);
        assert_eq!((c.mode, c.on, c.buf_fixed), (Some(mode), true, true));
        assert!(locked(s));
        assert_eq!(lowat(s), mode.lowat());
        // a coalescer of the low-water mode never touches the buffer
        let (sock, _peer) = loopback_pair().await;
        let Socket::Tcp(s) = &sock else { panic!("a TCP socket") };
        let mut c = Coalescer { mode: Some(CoalesceMode::LowWater), ..Coalescer::new(true) };
        c.start(&sock);
        assert!(c.on && !c.buf_fixed && !locked(s));
        assert_eq!(lowat(s), COALESCE_LOWAT);
        c.pause(&sock);
        assert!(!c.on && !locked(s));
        assert_eq!(lowat(s), 1);
    }
}
