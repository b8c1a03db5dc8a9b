//! Typed change events on top of the replication stream, with resume, reconnect and replay filtering.
//!
//! [`ChangeStream`] is generic over the output plugin ([`Decoding`]): `ChangeStream<Wal2json>` (the default,
//! what [`ChangeStreamConfig::new`] gives) or `ChangeStream<TestDecoding>` ([`ChangeStreamConfig::with_plugin`]),
//! and pgoutput later without changes here. The plugin names the slot's plugin (created with it, checked against
//! it), gives the default options ([`Decoding::stream_options`]) and the decoder; everything else here reads
//! plugin-neutral [`Event`]s and the stream's [`Boundary`] classification.
//!
//! [`ChangeStream`] connects, checks the slot, starts streaming from the position the application last
//! acknowledged (or the slot's `confirmed_flush_lsn` when none is stored), and hands out one [`Payload`] at a
//! time; [`Payload::events`] decodes it into [`Event`]s that borrow the payload.
//! Acknowledge a transaction once it is stored ([`Payload::ack`] on the payload that ends it, or
//! [`ChangeStream::ack`] with its commit LSN): only acknowledged positions are ever confirmed to the server, and
//! a reconnect resumes from there.
//!
//! Delivery is at-least-once on the wire and once as far as the application can tell: after a reconnect,
//! transactions whose commit LSN is at or below the acknowledged position are dropped before the application
//! sees them. A transaction is recognised as a replay at its Begin when the plugin prints the commit's end there
//! (wal2json's `nextlsn`, with `include-lsn`, on by default here); test_decoding prints none, and its Begin is
//! delivered — the server itself does not send again a transaction that committed before the position streaming
//! restarts from (the acknowledged one) — while a payload that ends a transaction nothing was delivered of
//! (a whole format-1 transaction, a non-transactional message) is dropped by its own position (for test_decoding
//! a `COMMIT`'s XLogData position, the commit's end).
//!
//! React to each insert with its table and row:
//!
//! ```no_run
//! use pgrepl::changes::{ChangeStream, ChangeStreamConfig};
//! use pgrepl::wal2json::Event;
//!
//! # async fn run() -> pgrepl::Result<()> {
//! let cfg = ChangeStreamConfig::new("dbname=app replication=database", "my_slot")?.create_slot(true);
//! let mut changes = ChangeStream::connect(cfg).await?;
//! while let Some(mut payload) = changes.next().await? {
//!     for event in payload.events()? {
//!         if let Event::Insert(row) = event? {
//!             println!("{}: {:?}", row.table, row.columns);
//!         }
//!     }
//!     payload.ack(); // acknowledges when this payload ends a transaction
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::lsn::Lsn;
use crate::plugin::{Boundary, Decode, Decoding, Route, Router, Wal2json};
use crate::proto::commands::{quote_sql_literal, CreateSlot, SnapshotAction};
use crate::proto::replication::XLogData;
use crate::spill::{Held, Released, Spill};
use crate::stream::{ReplicationStream, StreamConfig};

/// Something the stream did that the application may want to know (reconnects, replays, slot state).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamEvent {
    /// Streaming started from `start` (0/0: the slot's confirmed_flush_lsn).
    Started {
        /// The position asked for.
        start: Lsn,
    },
    /// The connection was lost.
    Disconnected {
        /// Why.
        cause: String,
    },
    /// A reconnect attempt will be made after `wait`.
    Retrying {
        /// Attempt number (1-based).
        attempt: u32,
        /// Backoff before it.
        wait: Duration,
        /// What failed.
        cause: String,
    },
    /// The slot has confirmed more than the application's stored position ([`ChangeStreamConfig::start`], and
    /// [`ChangeStreamConfig::confirmed`] when given): acknowledged data was lost downstream, or the stored
    /// position is stale — for instance when the idle advance moved the slot on during a quiet period and the
    /// application stored no [`ChangeStream::confirmed`] position. Streaming continues from the slot's position.
    SlotAhead {
        /// The position the application asked to resume from.
        stored: Lsn,
        /// The slot's confirmed_flush_lsn.
        confirmed: Lsn,
    },
    /// A transaction the application had already acknowledged was sent again and dropped.
    ReplayDropped {
        /// Its commit (end) LSN.
        commit_lsn: Lsn,
    },
    /// The slot did not exist and was created.
    SlotCreated {
        /// Its consistent point.
        at: Lsn,
    },
    /// A heartbeat ([`ChangeStreamConfig::heartbeat`]) could not be written; it is tried again at the next tick.
    HeartbeatFailed {
        /// Why.
        cause: String,
    },
}

/// The prefix of the heartbeat messages ([`ChangeStreamConfig::heartbeat`]). Non-transactional messages with
/// this prefix are never delivered to the application, whoever wrote them.
pub const HEARTBEAT_PREFIX: &str = "pgrepl-heartbeat";

/// A callback for [`StreamEvent`]s.
pub type EventHandler = Arc<dyn Fn(&StreamEvent) + Send + Sync>;

/// Reconnect policy: exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    /// Reconnect at all.
    pub enabled: bool,
    /// First wait.
    pub initial: Duration,
    /// Largest wait.
    pub max: Duration,
    /// Give up after this many consecutive failed attempts (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// The wait before attempt `n` (1-based): `initial · 2^(n-1)`, capped at `max`, with ±25 % jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max);
        let mut r = [0u8; 2];
        let frac = if getrandom::getrandom(&mut r).is_ok() { f64::from(u16::from_le_bytes(r)) / 65535.0 } else { 0.5 };
        base.mul_f64(0.75 + 0.5 * frac)
    }
}

/// Settings of a [`ChangeStream`] over plugin `P` (wal2json unless said otherwise).
#[derive(Clone)]
pub struct ChangeStreamConfig<P = Wal2json> {
    /// The output plugin (the slot's).
    pub plugin: P,
    /// Connection settings (`replication=database` is added when missing).
    pub config: Config,
    /// Slot name.
    pub slot: String,
    /// Create the slot (with the plugin, permanent) when it does not exist.
    pub create_slot: bool,
    /// Plugin options. Defaults: the plugin's [`Decoding::stream_options`] (wal2json: format-version 2,
    /// include-xids, include-timestamp, include-lsn; test_decoding: include-xids, include-timestamp).
    pub options: Vec<(String, Option<String>)>,
    /// The acknowledged position stored by the application (0/0: use the slot's confirmed_flush_lsn).
    pub start: Lsn,
    /// The position [`ChangeStream::confirmed`] (or [`ChangeStream::stop`]) returned when the application last
    /// stored it, 0/0 when it keeps none. The idle advance confirms keepalive positions past the last
    /// acknowledged commit while nothing is pending; a slot confirmed up to this position is then not reported
    /// as [`StreamEvent::SlotAhead`] on the next start.
    pub confirmed: Lsn,
    /// Stream settings (status interval, idle advance, end position, buffer).
    pub stream: StreamConfig,
    /// Reconnect policy.
    pub reconnect: Reconnect,
    /// Called for every [`StreamEvent`].
    pub on_event: Option<EventHandler>,
    /// Write a heartbeat message every so often (`None`: never, the default). See
    /// [`ChangeStreamConfig::heartbeat`].
    pub heartbeat: Option<Duration>,
    /// Memory for the payloads of transactions the plugin sends before they commit (pgoutput's `streaming`),
    /// held until they commit: all such transactions together hold at most this many bytes in memory (default
    /// 64 MiB), the rest goes to temporary files in [`spill_dir`](Self::spill_dir) ([`crate::spill`]).
    pub hold_memory: usize,
    /// Where held transactions beyond [`hold_memory`](Self::hold_memory) go (`None`: the system's temporary
    /// directory). The files are unlinked as soon as they are made.
    pub spill_dir: Option<std::path::PathBuf>,
}

impl<P: fmt::Debug> fmt::Debug for ChangeStreamConfig<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeStreamConfig")
            .field("plugin", &self.plugin)
            .field("config", &self.config)
            .field("slot", &self.slot)
            .field("options", &self.options)
            .field("start", &self.start)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

impl ChangeStreamConfig {
    /// Settings for a wal2json slot from a connection string (environment and `.pgpass` applied, as libpq does)
    /// and a slot name.
    pub fn new(conninfo: &str, slot: &str) -> Result<Self> {
        Self::with_plugin(conninfo, slot, Wal2json)
    }
}

impl<P: Decoding> ChangeStreamConfig<P> {
    /// Settings for a slot of `plugin` (`TestDecoding`; [`ChangeStreamConfig::new`] for wal2json).
    pub fn with_plugin(conninfo: &str, slot: &str, plugin: P) -> Result<Self> {
        // a name the server can never accept fails here, not as a missing slot later
        crate::proto::commands::validate_slot_name(slot)?;
        let mut config = Config::from_str_with_std_env(conninfo)?;
        if config.replication.is_none() {
            config.replication = Some("database".into());
        }
        Ok(ChangeStreamConfig {
            options: plugin.stream_options(),
            plugin,
            config,
            slot: slot.to_string(),
            create_slot: false,
            start: Lsn::INVALID,
            confirmed: Lsn::INVALID,
            stream: StreamConfig::default(),
            reconnect: Reconnect::default(),
            on_event: None,
            heartbeat: None,
            hold_memory: 64 << 20,
            spill_dir: None,
        })
    }
    /// Create the slot when missing.
    pub fn create_slot(mut self, yes: bool) -> Self {
        self.create_slot = yes;
        self
    }
    /// Resume from this acknowledged position.
    pub fn start(mut self, lsn: Lsn) -> Self {
        self.start = lsn;
        self
    }
    /// The confirmed position stored with the acknowledged one ([`ChangeStreamConfig::confirmed`]).
    pub fn confirmed(mut self, lsn: Lsn) -> Self {
        self.confirmed = lsn;
        self
    }
    /// Add or replace a plugin option.
    pub fn option(mut self, name: &str, value: Option<&str>) -> Self {
        self.options.retain(|(k, _)| k != name);
        self.options.push((name.to_string(), value.map(str::to_string)));
        self
    }
    /// Observe reconnects, replays and slot state.
    pub fn on_event(mut self, f: impl Fn(&StreamEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(f));
        self
    }
    /// Every `interval`, write a non-transactional logical message (`pg_logical_emit_message(false,
    /// 'pgrepl-heartbeat', '')`) in the slot's database, through a separate normal (non-replication) connection.
    /// The slot then always has something to decode and confirm, for servers where acknowledging keepalives
    /// (the idle advance) is not enough or is turned off. Heartbeats are never delivered to the application;
    /// the stream acknowledges one once the application has acknowledged every transaction delivered before it.
    /// Failures are reported as [`StreamEvent::HeartbeatFailed`] and retried at the next tick.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }
}

/// Aborts the heartbeat task when the [`ChangeStream`] goes away.
struct HeartbeatTask(tokio::task::JoinHandle<()>);

impl Drop for HeartbeatTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn heartbeat_loop(mut config: Config, interval: Duration, on_event: Option<EventHandler>) {
    config.replication = None;
    let sql = format!("SELECT pg_logical_emit_message(false, {}, '')", quote_sql_literal(HEARTBEAT_PREFIX));
    let mut client: Option<Client> = None;
    loop {
        tokio::time::sleep(interval).await;
        let r = match client.as_mut() {
            Some(c) => c.simple_query(&sql).await.map(drop),
            None => match Client::connect(&config).await {
                Ok(c) => client.insert(c).simple_query(&sql).await.map(drop),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = r {
            client = None;
            if let Some(f) = &on_event {
                f(&StreamEvent::HeartbeatFailed { cause: e.to_string() });
            }
        }
    }
}

/// A resilient stream of one plugin's payloads (wal2json unless said otherwise), decoded on demand into typed
/// events.
pub struct ChangeStream<P: Decoding = Wal2json> {
    cfg: ChangeStreamConfig<P>,
    stream: Option<ReplicationStream>,
    decoder: P::Decoder,
    /// A second decoder for looking at a payload before delivering it (a Begin's commit LSN, a heartbeat).
    probe: P::Decoder,
    current: Option<XLogData>,
    /// What the application acknowledged (monotonic); where a reconnect resumes.
    acked: Lsn,
    /// The highest flush position reported to the server by this stream's connections (acknowledgements and the
    /// idle advance): a slot confirmed up to there is not ahead of the application.
    reported: Lsn,
    /// Dropping a replayed transaction until its end.
    skipping: bool,
    /// A transaction is open (between its Begin and Commit payloads).
    open: bool,
    ended: bool,
    /// The highest LSN of a delivered payload that ended a transaction (or stood alone).
    delivered: Lsn,
    /// A heartbeat received and not acknowledged yet (0/0: none); acknowledged once `acked >= delivered`.
    heartbeat_pending: Lsn,
    heartbeat: Option<HeartbeatTask>,
    /// Where each payload goes ([`Decoding::router`]), and the payloads held for transactions not yet committed.
    router: Box<dyn Router>,
    spill: Spill,
    /// A committed held transaction being delivered: its held payloads, then the payload that ended it.
    releasing: Option<Releasing>,
}

/// A held transaction on its way to the application ([`Route::Release`]).
struct Releasing {
    held: Released,
    /// The payload that ended it (delivered last).
    last: XLogData,
    /// No held payload has been delivered yet (the first one opens the transaction).
    first: bool,
}

impl<P: Decoding> fmt::Debug for ChangeStream<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeStream")
            .field("plugin", &self.cfg.plugin.name())
            .field("slot", &self.cfg.slot)
            .field("acked", &self.acked)
            .finish_non_exhaustive()
    }
}

impl<P: Decoding> ChangeStream<P> {
    /// Connect and start streaming. Connection failures on this first attempt are retried like later ones when
    /// they are transient (server starting up, connection refused); anything else is returned at once.
    pub async fn connect(cfg: ChangeStreamConfig<P>) -> Result<ChangeStream<P>> {
        let acked = cfg.start;
        let reported = acked.max(cfg.confirmed);
        let spill = Spill::new(cfg.hold_memory, cfg.spill_dir.clone().unwrap_or_else(std::env::temp_dir));
        let mut decoder = cfg.plugin.decoder();
        // streamed transactions reach it held and released whole (the router's Route::Release)
        decoder.assembled();
        let mut s = ChangeStream {
            router: cfg.plugin.router(),
            spill,
            releasing: None,
            decoder,
            probe: cfg.plugin.decoder(),
            cfg,
            stream: None,
            current: None,
            acked,
            reported,
            skipping: false,
            open: false,
            ended: false,
            delivered: Lsn::INVALID,
            heartbeat_pending: Lsn::INVALID,
            heartbeat: None,
        };
        s.reconnect().await?;
        if let Some(interval) = s.cfg.heartbeat {
            let task = heartbeat_loop(s.cfg.config.clone(), interval, s.cfg.on_event.clone());
            s.heartbeat = Some(HeartbeatTask(tokio::spawn(task)));
        }
        Ok(s)
    }

    fn emit(&self, ev: StreamEvent) {
        if let Some(f) = &self.cfg.on_event {
            f(&ev);
        }
    }

    async fn open(&mut self) -> Result<ReplicationStream> {
        let mut client = Client::connect(&self.cfg.config).await?;
        // wal_status came with PostgreSQL 13 (and slot invalidation with it: a 12 never invalidates a slot)
        let wal_status =
            if client.session().server_version_num().is_some_and(|v| v < 130000) { "NULL" } else { "wal_status" };
        let q = format!(
            "SELECT confirmed_flush_lsn, {wal_status}, plugin FROM pg_replication_slots WHERE slot_name = {}",
            quote_sql_literal(&self.cfg.slot)
        );
        let r = client.simple_query(&q).await?;
        let row = r.first().and_then(|r| r.rows.first()).cloned();
        let mut slot_confirmed = Lsn::INVALID;
        match row {
            None if self.cfg.create_slot => {
                let info = client
                    .create_replication_slot(&CreateSlot {
                        slot: self.cfg.slot.clone(),
                        plugin: self.cfg.plugin.name().into(),
                        temporary: false,
                        snapshot: SnapshotAction::NoExport,
                        two_phase: false,
                    })
                    .await?;
                self.emit(StreamEvent::SlotCreated { at: info.consistent_point });
            }
            None => {
                return Err(Error::new(
                    ErrorKind::SlotMissing,
                    format!("replication slot \"{}\" does not exist", self.cfg.slot),
                ))
            }
            Some(cols) => {
                let get = |i: usize| cols.get(i).cloned().flatten();
                if get(1).as_deref() == Some("lost") {
                    return Err(Error::new(
                        ErrorKind::SlotInvalid,
                        format!(
                            "replication slot \"{}\" is invalidated (wal_status lost): the WAL it needs is gone",
                            self.cfg.slot
                        ),
                    ));
                }
                if let Some(p) = get(2) {
                    let want = self.cfg.plugin.name();
                    if p != want {
                        return Err(Error::new(
                            ErrorKind::SlotInvalid,
                            format!("replication slot \"{}\" uses plugin {p}, not {want}", self.cfg.slot),
                        ));
                    }
                }
                if let Some(confirmed) = get(0).and_then(|s| Lsn::parse(&s).ok()) {
                    if !self.acked.is_invalid() && confirmed > self.acked.max(self.reported) {
                        self.emit(StreamEvent::SlotAhead { stored: self.acked, confirmed });
                    }
                    // reported once; streaming continues from there
                    self.reported = self.reported.max(confirmed);
                    slot_confirmed = confirmed;
                }
            }
        }
        let options = self.cfg.plugin.start_options(client.session().server_version_num(), &self.cfg.options)?;
        // The server streams from the slot's confirmed_flush_lsn when asked for an earlier position, and the
        // stream reports its start as flushed: asking for the earlier one would report a flush position behind
        // the slot's, and PostgreSQL 12 takes that as the slot's new confirmed_flush_lsn (13+ ignore a position
        // behind it): the slot would go back, and a restart replay what the server had already forwarded past.
        let start = self.acked.max(slot_confirmed);
        let stream = client
            .start_replication(&self.cfg.slot, &self.cfg.plugin, start, &options, self.cfg.stream.clone())
            .await?;
        self.emit(StreamEvent::Started { start });
        Ok(stream)
    }

    async fn reconnect(&mut self) -> Result<()> {
        let mut attempt = 0u32;
        loop {
            match self.open().await {
                Ok(s) => {
                    self.stream = Some(s);
                    self.decoder.reset();
                    // held transactions come again, whole, from the restart position
                    self.router.reset();
                    self.spill.clear();
                    self.releasing = None;
                    self.skipping = false;
                    self.open = false;
                    self.heartbeat_pending = Lsn::INVALID;
                    return Ok(());
                }
                Err(e) => {
                    attempt += 1;
                    let give_up = !self.cfg.reconnect.enabled
                        || !e.is_retryable()
                        || self.cfg.reconnect.max_attempts.is_some_and(|m| attempt > m);
                    if give_up {
                        return Err(e);
                    }
                    let wait = self.cfg.reconnect.backoff(attempt);
                    self.emit(StreamEvent::Retrying { attempt, wait, cause: e.to_string() });
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The next payload, after reconnecting if the connection was lost. `Ok(None)` when the end position was
    /// reached.
    pub async fn next(&mut self) -> Result<Option<Payload<'_, P>>> {
        self.current = None;
        let mut end = Lsn::INVALID;
        loop {
            if self.ended {
                return Ok(None);
            }
            self.ack_heartbeat();
            if self.stream.is_none() {
                self.reconnect().await?;
            }
            if let Some(x) = self.next_released()? {
                if x.boundary == Boundary::End {
                    self.open = false;
                    end = self.cfg.plugin.ack_lsn(&x);
                    self.delivered = self.delivered.max(end);
                } else {
                    self.open = true;
                }
                self.current = Some(x);
                break;
            }
            let Some(stream) = self.stream.as_mut() else { continue };
            let x = match stream.next().await {
                Ok(Some(x)) => x,
                Ok(None) if stream.end_reached() || !self.cfg.reconnect.enabled => {
                    self.ended = true;
                    return Ok(None);
                }
                // the server ended the copy before the end position (none set, or not reached): as a lost
                // connection, streaming again brings the rest
                Ok(None) => {
                    self.reported = self.reported.max(stream.reported_flush());
                    self.emit(StreamEvent::Disconnected { cause: "the server ended the stream".into() });
                    self.stream = None;
                    continue;
                }
                Err(e) if e.is_retryable() && self.cfg.reconnect.enabled => {
                    self.reported = self.reported.max(stream.reported_flush());
                    self.emit(StreamEvent::Disconnected { cause: e.to_string() });
                    self.stream = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // classified once, by the stream task, with the plugin's rules
            let b = x.boundary;
            match self.router.route(&x.data)? {
                Route::Deliver => {}
                Route::Hold { xid, sub } => {
                    let held = Held { wal_start: x.wal_start, wal_end: x.wal_end, data: x.data };
                    self.spill.hold(xid, sub, held)?;
                    continue;
                }
                Route::Discard { xid, sub } => {
                    self.spill.abort(xid, sub)?;
                    continue;
                }
                Route::Release { xid } => {
                    if self.is_replay(&x, b)? {
                        self.spill.abort(xid, xid)?;
                    } else {
                        let held = self.spill.release(xid)?;
                        self.releasing = Some(Releasing { held, last: x, first: true });
                    }
                    continue;
                }
            }
            if self.is_replay(&x, b)? {
                continue;
            }
            if b == Boundary::Whole && self.is_heartbeat(&x)? {
                self.heartbeat_pending = self.heartbeat_pending.max(x.wal_start);
                self.ack_heartbeat();
                continue;
            }
            match b {
                Boundary::Begin => self.open = true,
                Boundary::End => self.open = false,
                Boundary::Inside | Boundary::Whole => {}
            }
            if !self.open {
                end = self.cfg.plugin.ack_lsn(&x);
                self.delivered = self.delivered.max(end);
            }
            self.current = Some(x);
            break;
        }
        let ends = !self.open;
        match (&self.current, self.stream.as_ref()) {
            (Some(data), Some(stream)) => {
                Ok(Some(Payload { data, decoder: &mut self.decoder, stream, acked: &mut self.acked, ends, end }))
            }
            _ => Ok(None),
        }
    }

    /// The next payload of a held transaction being released ([`Route::Release`]): its held payloads (the first
    /// one opening the transaction), then the payload that ended it ([`Boundary::End`]).
    fn next_released(&mut self) -> Result<Option<XLogData>> {
        let Some(r) = self.releasing.as_mut() else { return Ok(None) };
        match r.held.next() {
            Some(h) => {
                let h = h?;
                let boundary = if std::mem::take(&mut r.first) { Boundary::Begin } else { Boundary::Inside };
                Ok(Some(XLogData {
                    wal_start: h.wal_start,
                    wal_end: h.wal_end,
                    server_time: r.last.server_time,
                    data: h.data,
                    boundary,
                }))
            }
            None => {
                let mut last = self.releasing.take().map(|r| r.last);
                if let Some(x) = last.as_mut() {
                    x.boundary = Boundary::End;
                }
                Ok(last)
            }
        }
    }

    /// Bytes of held transactions in memory now, the transactions held, and the spill files made and bytes
    /// written to them so far ([`ChangeStreamConfig::hold_memory`]).
    pub fn held(&self) -> (usize, usize, (u64, u64)) {
        (self.spill.memory(), self.spill.transactions(), self.spill.spilled())
    }

    /// Whether `x` (a standalone payload) is a heartbeat message.
    fn is_heartbeat(&mut self, x: &XLogData) -> Result<bool> {
        self.probe.reset();
        let beat = matches!(
            self.probe.events(&x.data)?.next(),
            Some(Ok(Event::Message(m))) if !m.transactional && m.prefix == HEARTBEAT_PREFIX
        );
        self.probe.reset();
        Ok(beat)
    }

    /// Acknowledge the pending heartbeat once nothing delivered before it is unacknowledged.
    fn ack_heartbeat(&mut self) {
        if self.heartbeat_pending.is_invalid() || self.open || self.acked < self.delivered {
            return;
        }
        if let Some(s) = &self.stream {
            s.ack(self.heartbeat_pending);
        }
        self.heartbeat_pending = Lsn::INVALID;
    }

    /// Whether `x` belongs to a transaction the application already acknowledged (dropped, with an event).
    fn is_replay(&mut self, x: &XLogData, b: Boundary) -> Result<bool> {
        if self.acked.is_invalid() {
            return Ok(false);
        }
        if self.skipping {
            if matches!(b, Boundary::End) {
                self.skipping = false;
            }
            return Ok(true);
        }
        match b {
            Boundary::Begin => {
                // the commit LSN is on the Begin (format 2 B / format 1 chunk header with include-lsn)
                self.probe.reset();
                let mut commit = None;
                if let Some(Ok(Event::Begin(t))) = self.probe.events(&x.data)?.next() {
                    commit = t.next_lsn;
                }
                self.probe.reset();
                if let Some(c) = commit {
                    if c <= self.acked {
                        self.skipping = true;
                        self.emit(StreamEvent::ReplayDropped { commit_lsn: c });
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            // the end of a transaction whose Begin was delivered (its commit LSN was past the acknowledged
            // position, or the plugin prints none there, as test_decoding): delivered, so that the application
            // never sees a Begin without its end
            Boundary::End if self.open => Ok(false),
            // a whole format 1 transaction or a non-transactional message: its own LSN
            Boundary::End | Boundary::Whole => {
                let at = self.cfg.plugin.ack_lsn(x);
                if at.is_invalid() || at > self.acked {
                    return Ok(false);
                }
                if matches!(b, Boundary::End) {
                    self.emit(StreamEvent::ReplayDropped { commit_lsn: at });
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Acknowledge everything up to `lsn` (a transaction's commit LSN once it is stored). Monotonic.
    pub fn ack(&mut self, lsn: Lsn) {
        self.acked = self.acked.max(lsn);
        if let Some(s) = &self.stream {
            s.ack(lsn);
        }
    }

    /// What the application acknowledged.
    pub fn acked(&self) -> Lsn {
        self.acked
    }

    /// The acknowledged position or, when higher, the highest flush position reported to the server so far (the
    /// idle advance confirms keepalive positions past the last acknowledged commit while nothing is pending).
    /// Nothing below it is delivered again. An
    /// application that stores it next to its acknowledged position (from time to time, or the value
    /// [`stop`](Self::stop) returns) and gives both back on the next start ([`ChangeStreamConfig::start`],
    /// [`ChangeStreamConfig::confirmed`]) is told [`StreamEvent::SlotAhead`] only when the slot is ahead of
    /// both: when something it acknowledged really was lost downstream, not merely because the slot moved on
    /// during a quiet period. (After a crash, the slot may be ahead of the stored value by what the last status
    /// updates confirmed after it was stored.)
    pub fn confirmed(&self) -> Lsn {
        let live = self.stream.as_ref().map_or(Lsn::INVALID, |s| s.reported_flush());
        self.reported.max(self.acked).max(live)
    }

    /// Stop cleanly (final status update with the acknowledged position) and close the connection. Returns
    /// [`confirmed`](Self::confirmed) after that final status update: the slot's confirmed position.
    /// A connection lost before the final status update went out is replaced (as [`next`](Self::next) would)
    /// to confirm the acknowledged position on it.
    pub async fn stop(mut self) -> Result<Lsn> {
        while let Some(s) = self.stream.take() {
            let reported = s.reported_flush();
            match s.stop_confirmed().await {
                Ok((client, flushed)) => {
                    self.reported = self.reported.max(flushed);
                    client.close().await?;
                }
                Err(e) if e.is_retryable() && self.cfg.reconnect.enabled => {
                    self.reported = self.reported.max(reported);
                    if self.acked <= self.reported {
                        break; // nothing left to confirm
                    }
                    self.emit(StreamEvent::Disconnected { cause: e.to_string() });
                    self.reconnect().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.confirmed())
    }
}

/// One payload from a [`ChangeStream`].
pub struct Payload<'s, P: Decoding = Wal2json> {
    data: &'s XLogData,
    decoder: &'s mut P::Decoder,
    stream: &'s ReplicationStream,
    acked: &'s mut Lsn,
    ends: bool,
    /// What acknowledging this payload confirms, when it ends a transaction ([`ChangeStream::end_lsn`]).
    end: Lsn,
}

impl<'s, P: Decoding> Payload<'s, P> {
    /// The payload's WAL position (`dataStart`; for the payload that ends a transaction, its commit LSN).
    pub fn lsn(&self) -> Lsn {
        self.data.wal_start
    }
    /// The raw bytes, as the plugin sent them.
    pub fn bytes(&self) -> &[u8] {
        &self.data.data
    }
    /// The raw XLogData.
    pub fn xlogdata(&self) -> &XLogData {
        self.data
    }
    /// Decode the payload into events (zero or more; one for wal2json format 2 and test_decoding, except a
    /// test_decoding TRUNCATE of several tables).
    pub fn events(&mut self) -> Result<<P::Decoder as Decode>::Events<'_, 's>> {
        self.decoder.events(&self.data.data)
    }
    /// Decode the payload and call `f` on each event, handing each one's storage back for reuse afterwards (what
    /// [`Payload::events`] with [`EventIter::recycle`](crate::plugin::EventIter::recycle) does, in a loop the
    /// compiler sees whole: no event is moved after it is decoded). Returns the number of events.
    pub fn decode_each(&mut self, f: impl FnMut(&Event<'s>)) -> Result<usize> {
        self.decoder.decode_each(&self.data.data, f)
    }
    /// Whether this payload ends a transaction (a `C`, the end of a format 1 transaction) or stands alone.
    pub fn ends_transaction(&self) -> bool {
        self.ends
    }
    /// The position acknowledging this payload confirms when it ends a transaction: its [`lsn`](Self::lsn), or
    /// for a whole format-1 transaction (sent at its first change's LSN) its commit's end (`nextlsn`, with
    /// wal2json's `include-lsn`). Store this one.
    pub fn commit_lsn(&self) -> Lsn {
        self.end
    }
    /// Acknowledge this payload's [`commit_lsn`](Self::commit_lsn) when it ends a transaction (otherwise
    /// nothing: a half transaction is never confirmed). Call after the transaction is stored.
    pub fn ack(&mut self) {
        if self.ends_transaction() && !self.end.is_invalid() {
            *self.acked = (*self.acked).max(self.end);
            self.stream.ack(self.end);
        }
    }
}
