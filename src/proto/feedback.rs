//! The replication-stream state machine, sans IO: what to report in standby status updates and when, and
//! where an end position stops the stream.
//!
//! Rules (`shared/security.md` 16-20, `shared/DESIGN.md` delivery semantics):
//! - The flush position reported is only ever what the application acknowledged with [`FeedbackState::ack`]
//!   (monotonic), except for the guarded idle advance below.
//! - A keepalive asking for a reply is answered at once; otherwise status updates go out every
//!   `status_interval`, driven by the caller's clock ([`FeedbackState::poll_status`] / [`FeedbackState::next_deadline`]).
//! - Idle advance: when every XLogData received has been acknowledged and no transaction is open, a keepalive's
//!   walEnd is reported as flushed, so a quiet slot does not pin WAL. Never before the first keepalive, except
//!   up to the dataStart of a message discarded at the end position (see `idle_advance`).
//! - End position: the stream stops only at a transaction boundary. A transaction whose first message starts at
//!   or before the end position is delivered to its end, however far past the end position it runs; the first
//!   transaction (or standalone message) that starts after it is not delivered. A keepalive whose walEnd reaches
//!   the end position stops the stream only when no transaction is open.

use std::time::{Duration, Instant};

use super::replication::{Keepalive, StatusUpdate, XLogData};
use crate::lsn::Lsn;

/// Where an XLogData message sits in a transaction, as its output plugin's rules say ([`crate::plugin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Boundary {
    /// Opens a transaction (wal2json format 2 `B`, the first chunk of a format-1 write-in-chunks transaction,
    /// test_decoding's `BEGIN`).
    Begin,
    /// Inside an open transaction.
    Inside,
    /// Closes a transaction (wal2json format 2 `C`, the last chunk, a whole format-1 document; `COMMIT`).
    End,
    /// A whole unit by itself, outside any transaction (a non-transactional message, an unknown plugin's
    /// message).
    Whole,
}

/// What to do with an XLogData message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Hand it to the application.
    Deliver,
    /// The end position was reached before this message: do not deliver it; stop.
    Stop,
}

/// Settings of [`FeedbackState`].
#[derive(Debug, Clone, Copy)]
pub struct FeedbackConfig {
    /// Period of status updates (default 10 s). Zero disables periodic updates (replies are still sent).
    pub status_interval: Duration,
    /// Report keepalive walEnd as flushed when idle (default on).
    pub idle_advance: bool,
    /// Stop at the first transaction boundary at or past this position.
    pub end: Option<Lsn>,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig { status_interval: Duration::from_secs(10), idle_advance: true, end: None }
    }
}

/// The replication stream's feedback state.
#[derive(Debug, Clone)]
pub struct FeedbackState {
    cfg: FeedbackConfig,
    /// Highest non-zero dataStart received.
    last_data_start: Lsn,
    /// Highest position received (data or keepalive walEnd): the write position reported.
    received: Lsn,
    /// What the application acknowledged (monotonic).
    acked: Lsn,
    /// What we report as flushed: `acked`, or an idle-advanced keepalive walEnd (monotonic).
    flush: Lsn,
    /// Anything received on this connection not yet acknowledged.
    unacked: bool,
    in_txn: bool,
    keepalive_seen: bool,
    /// walEnd of the latest keepalive.
    last_keepalive_end: Lsn,
    /// A message was received and not delivered (past the end position): never idle-advance past it.
    discarded: bool,
    /// dataStart of the first message not delivered (0 if it had none): the idle advance stops there.
    first_discarded: Lsn,
    last_status: Option<Instant>,
    reply_pending: bool,
    end_reached: bool,
}

impl FeedbackState {
    /// A fresh state for a stream started at `start` (the acknowledged position the stream resumes from).
    pub fn new(cfg: FeedbackConfig, start: Lsn) -> Self {
        FeedbackState {
            cfg,
            last_data_start: Lsn::INVALID,
            received: start,
            acked: start,
            flush: start,
            unacked: false,
            in_txn: false,
            keepalive_seen: false,
            last_keepalive_end: Lsn::INVALID,
            discarded: false,
            first_discarded: Lsn::INVALID,
            last_status: None,
            reply_pending: false,
            end_reached: false,
        }
    }

    /// An XLogData message arrived; `boundary` says where it sits in a transaction.
    pub fn on_xlogdata(&mut self, x: &XLogData, boundary: Boundary) -> Delivery {
        if self.end_reached {
            self.discard(x.wal_start);
            return Delivery::Stop;
        }
        if let Some(end) = self.cfg.end {
            // Outside a transaction, this message starts a new unit: past the end position, it is not delivered.
            if !self.in_txn && !x.wal_start.is_invalid() && x.wal_start > end {
                self.end_reached = true;
                self.discard(x.wal_start);
                return Delivery::Stop;
            }
        }
        match boundary {
            Boundary::Begin => self.in_txn = true,
            Boundary::End | Boundary::Whole => self.in_txn = false,
            Boundary::Inside => {}
        }
        if !x.wal_start.is_invalid() {
            self.last_data_start = self.last_data_start.max(x.wal_start);
            self.received = self.received.max(x.wal_start);
        }
        self.unacked = true;
        if self.acked >= self.last_data_start && !self.last_data_start.is_invalid() && !self.in_txn {
            // already covered by an acknowledgement made ahead of time
            self.unacked = false;
        }
        if let Some(end) = self.cfg.end {
            if !self.in_txn && !x.wal_start.is_invalid() && x.wal_start >= end {
                self.end_reached = true;
            }
        }
        Delivery::Deliver
    }

    /// A keepalive arrived.
    pub fn on_keepalive(&mut self, k: &Keepalive) {
        self.keepalive_seen = true;
        if k.reply_requested {
            self.reply_pending = true;
        }
        self.received = self.received.max(k.wal_end);
        self.last_keepalive_end = self.last_keepalive_end.max(k.wal_end);
        self.idle_advance();
        if let Some(end) = self.cfg.end {
            if !self.in_txn && k.wal_end >= end {
                self.end_reached = true;
            }
        }
    }

    /// The application has durably processed everything up to `lsn` (typically a transaction's commit LSN, the
    /// dataStart of the message that ended it). Acknowledgements never move backwards.
    pub fn ack(&mut self, lsn: Lsn) {
        if lsn > self.acked {
            self.acked = lsn;
        }
        if self.acked > self.flush {
            self.flush = self.acked;
        }
        if self.acked >= self.last_data_start && !self.in_txn {
            self.unacked = false;
        }
        self.idle_advance();
    }

    fn discard(&mut self, at: Lsn) {
        if !self.discarded {
            self.discarded = true;
            self.first_discarded = at;
        }
    }

    /// Report the latest keepalive's walEnd as flushed when that is safe: a keepalive has arrived, everything
    /// received on this connection is acknowledged and no transaction is open. A keepalive comes after every
    /// message sent before it, so no change below its walEnd can still be on its way. After a message was
    /// discarded (past the end position), the advance goes exactly to that message's dataStart, with or without a
    /// keepalive: every transaction committed before it was sent, and delivered, before it (wal2json's format-1
    /// documents and format-2 `B` carry the transaction's first LSN, below its commit, so the discarded
    /// transaction is sent again). Without this, a format-1 stream ended by a discarded message before any
    /// keepalive would confirm only the last delivered document's first LSN, and replay its transaction.
    fn idle_advance(&mut self) {
        if !self.cfg.idle_advance || self.unacked || self.in_txn {
            return;
        }
        let to = if self.discarded {
            // The discarded message is itself the proof that everything before it was sent (no keepalive is
            // needed, and the one that ended the stream may never come). One without a position (a non-final
            // write) gives no safe bound: 0.
            self.first_discarded
        } else if self.keepalive_seen {
            self.last_keepalive_end
        } else {
            return;
        };
        if to > self.flush {
            self.flush = to;
        }
    }

    /// Ask for a status update at the next [`poll_status`](Self::poll_status), whatever the timer says.
    pub fn request_status(&mut self) {
        self.reply_pending = true;
    }

    /// The status update to send now, if one is due (a reply was requested, or the interval has passed).
    pub fn poll_status(&mut self, now: Instant, client_time: i64) -> Option<StatusUpdate> {
        let due = self.reply_pending
            || match self.last_status {
                None => true,
                Some(t) => {
                    !self.cfg.status_interval.is_zero() && now.saturating_duration_since(t) >= self.cfg.status_interval
                }
            };
        if !due {
            return None;
        }
        self.reply_pending = false;
        self.last_status = Some(now);
        Some(self.status(client_time))
    }

    /// The status update describing the current state (for a final update at stop).
    pub fn status(&self, client_time: i64) -> StatusUpdate {
        StatusUpdate {
            write: self.received.max(self.flush),
            flush: self.flush,
            apply: self.flush,
            client_time,
            reply_requested: false,
        }
    }

    /// When the next periodic status update is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.reply_pending {
            return self.last_status.or(Some(Instant::now()));
        }
        if self.cfg.status_interval.is_zero() {
            return None;
        }
        self.last_status.map(|t| t + self.cfg.status_interval)
    }

    /// Whether the end position has been reached at a transaction boundary.
    pub fn end_reached(&self) -> bool {
        self.end_reached
    }
    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.in_txn
    }
    /// What the application acknowledged.
    pub fn acked(&self) -> Lsn {
        self.acked
    }
    /// What is reported as flushed.
    pub fn flush(&self) -> Lsn {
        self.flush
    }
    /// Highest position received.
    pub fn received(&self) -> Lsn {
        self.received
    }
    /// Whether any keepalive has arrived on this connection.
    pub fn keepalive_seen(&self) -> bool {
        self.keepalive_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn x(start: u64) -> XLogData {
        XLogData {
            wal_start: Lsn(start),
            wal_end: Lsn(start),
            server_time: 0,
            data: Bytes::new(),
            boundary: Boundary::Whole,
        }
    }
    fn k(end: u64, reply: bool) -> Keepalive {
        Keepalive { wal_end: Lsn(end), server_time: 0, reply_requested: reply }
    }

    #[test]
    fn flush_moves_only_on_ack() {
        let mut s = FeedbackState::new(FeedbackConfig { idle_advance: false, ..Default::default() }, Lsn(100));
        assert_eq!(s.on_xlogdata(&x(110), Boundary::Begin), Delivery::Deliver);
        assert_eq!(s.on_xlogdata(&x(120), Boundary::Inside), Delivery::Deliver);
        assert_eq!(s.on_xlogdata(&x(130), Boundary::End), Delivery::Deliver);
        s.on_keepalive(&k(500, false));
        let now = Instant::now();
        let st = s.poll_status(now, 1).unwrap();
        assert_eq!(st.flush, Lsn(100));
        assert_eq!(st.write, Lsn(500));
        s.ack(Lsn(130));
        s.ack(Lsn(120)); // backwards: ignored
        assert_eq!(s.flush(), Lsn(130));
        assert!(s.poll_status(now + Duration::from_secs(1), 1).is_none(), "not due yet");
        assert_eq!(s.poll_status(now + Duration::from_secs(10), 1).unwrap().flush, Lsn(130));
    }

    #[test]
    fn reply_requested_is_answered_at_once() {
        let mut s = FeedbackState::new(FeedbackConfig::default(), Lsn(0));
        let now = Instant::now();
        assert!(s.poll_status(now, 0).is_some());
        assert!(s.poll_status(now, 0).is_none());
        s.on_keepalive(&k(10, true));
        assert!(s.poll_status(now, 0).is_some());
    }

    #[test]
    fn idle_advance_is_guarded() {
        let mut s = FeedbackState::new(FeedbackConfig::default(), Lsn(100));
        // nothing received: the first keepalive may advance
        s.on_keepalive(&k(200, false));
        assert_eq!(s.flush(), Lsn(200));
        // received but unacknowledged: no advance
        s.on_xlogdata(&x(210), Boundary::Begin);
        s.on_xlogdata(&x(220), Boundary::End);
        s.on_keepalive(&k(300, false));
        assert_eq!(s.flush(), Lsn(200));
        // the acknowledgement catches up; the keepalive that came after the data lets its walEnd through
        s.ack(Lsn(220));
        assert_eq!(s.flush(), Lsn(300));
        // open transaction, even if acked past it: no advance
        s.on_xlogdata(&x(310), Boundary::Begin);
        s.ack(Lsn(310));
        s.on_keepalive(&k(400, false));
        assert_eq!(s.flush(), Lsn(310));
        // an acknowledgement that catches up lets the last keepalive's walEnd through
        let mut s = FeedbackState::new(FeedbackConfig::default(), Lsn(100));
        s.on_xlogdata(&x(110), Boundary::Whole);
        s.on_keepalive(&k(500, false));
        assert_eq!(s.flush(), Lsn(100));
        s.ack(Lsn(110));
        assert_eq!(s.flush(), Lsn(500));
        // turned off
        let mut s = FeedbackState::new(FeedbackConfig { idle_advance: false, ..Default::default() }, Lsn(100));
        s.on_keepalive(&k(200, false));
        assert_eq!(s.flush(), Lsn(100));
    }

    #[test]
    fn end_position_never_cuts_a_transaction() {
        let cfg = FeedbackConfig { end: Some(Lsn(150)), ..Default::default() };
        let mut s = FeedbackState::new(cfg, Lsn(0));
        assert_eq!(s.on_xlogdata(&x(100), Boundary::Begin), Delivery::Deliver);
        assert_eq!(s.on_xlogdata(&x(160), Boundary::Inside), Delivery::Deliver);
        s.on_keepalive(&k(1000, false));
        assert!(!s.end_reached(), "keepalive past the end must not stop an open transaction");
        assert_eq!(s.on_xlogdata(&x(0), Boundary::Inside), Delivery::Deliver);
        assert_eq!(s.on_xlogdata(&x(170), Boundary::Inside), Delivery::Deliver);
        assert_eq!(s.on_xlogdata(&x(200), Boundary::End), Delivery::Deliver);
        assert!(s.end_reached());
        assert_eq!(s.on_xlogdata(&x(210), Boundary::Begin), Delivery::Stop);
        // a message was discarded: no idle advance past its position, whatever is acknowledged
        s.ack(Lsn(200));
        s.on_keepalive(&k(2000, false));
        assert_eq!(s.flush(), Lsn(210));
        // one without a position: none at all
        let mut s = FeedbackState::new(cfg, Lsn(0));
        assert_eq!(s.on_xlogdata(&x(100), Boundary::Whole), Delivery::Deliver);
        s.on_keepalive(&k(150, false));
        assert!(s.end_reached());
        assert_eq!(s.on_xlogdata(&x(0), Boundary::Inside), Delivery::Stop);
        s.ack(Lsn(100));
        s.on_keepalive(&k(400, false));
        assert_eq!(s.flush(), Lsn(100));
    }

    #[test]
    fn end_by_keepalive_then_a_discarded_message_confirms_the_last_delivered_transaction() {
        // format 1: a document's dataStart is its transaction's first LSN (120), its commit ends at 140 = end
        let cfg = FeedbackConfig { end: Some(Lsn(140)), ..Default::default() };
        let mut s = FeedbackState::new(cfg, Lsn(0));
        assert_eq!(s.on_xlogdata(&x(120), Boundary::Whole), Delivery::Deliver);
        s.on_keepalive(&k(160, false));
        assert!(s.end_reached());
        // a later non-transactional message is not delivered
        assert_eq!(s.on_xlogdata(&x(150), Boundary::Whole), Delivery::Stop);
        s.ack(Lsn(120));
        assert_eq!(s.flush(), Lsn(150), "past the delivered transaction's commit, not past the discarded message");
    }

    #[test]
    fn end_by_a_discarded_message_without_any_keepalive_confirms_the_last_delivered_transaction() {
        // format 1 at an end position taken with pg_current_wal_lsn(): a document (first LSN 120, commit 140),
        // then a non-transactional message at 170, past the end (160), and no keepalive on this connection at
        // all. Acknowledging the document's dataStart alone would leave its commit unconfirmed (replayed).
        let cfg = FeedbackConfig { end: Some(Lsn(160)), ..Default::default() };
        let mut s = FeedbackState::new(cfg, Lsn(0));
        assert_eq!(s.on_xlogdata(&x(120), Boundary::Whole), Delivery::Deliver);
        assert_eq!(s.on_xlogdata(&x(170), Boundary::Whole), Delivery::Stop);
        assert!(s.end_reached());
        assert_eq!(s.flush(), Lsn(0), "nothing acknowledged yet");
        s.ack(Lsn(120));
        assert_eq!(s.flush(), Lsn(170));
        // while a delivered message is unacknowledged, the discarded one moves nothing
        let mut s = FeedbackState::new(cfg, Lsn(0));
        assert_eq!(s.on_xlogdata(&x(120), Boundary::Whole), Delivery::Deliver);
        assert_eq!(s.on_xlogdata(&x(170), Boundary::Whole), Delivery::Stop);
        s.on_keepalive(&k(500, false));
        assert_eq!(s.flush(), Lsn(0));
        // turned off: only acknowledgements count
        let cfg = FeedbackConfig { end: Some(Lsn(160)), idle_advance: false, ..Default::default() };
        let mut s = FeedbackState::new(cfg, Lsn(0));
        assert_eq!(s.on_xlogdata(&x(120), Boundary::Whole), Delivery::Deliver);
        assert_eq!(s.on_xlogdata(&x(170), Boundary::Whole), Delivery::Stop);
        s.ack(Lsn(120));
        assert_eq!(s.flush(), Lsn(120));
    }

    #[test]
    fn end_position_before_a_new_transaction() {
        let cfg = FeedbackConfig { end: Some(Lsn(150)), ..Default::default() };
        let mut s = FeedbackState::new(cfg, Lsn(0));
        assert_eq!(s.on_xlogdata(&x(120), Boundary::Whole), Delivery::Deliver);
        assert!(!s.end_reached());
        assert_eq!(s.on_xlogdata(&x(160), Boundary::Whole), Delivery::Stop);
        assert!(s.end_reached());
        // exactly at the end: delivered, then stop
        let mut s = FeedbackState::new(cfg, Lsn(0));
        assert_eq!(s.on_xlogdata(&x(150), Boundary::Whole), Delivery::Deliver);
        assert!(s.end_reached());
        // keepalive at the end with nothing open
        let mut s = FeedbackState::new(cfg, Lsn(0));
        s.on_keepalive(&k(150, false));
        assert!(s.end_reached());
    }
}
