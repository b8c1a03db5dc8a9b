//! The whole replication stream, sans IO: arbitrary server bytes → framing decoder → CopyData payloads →
//! `ReplicationMessage` → `FeedbackState`, with a virtual clock and application acknowledgements chosen by the
//! input.
//!
//! Input: byte 0 = flags (bit 0: idle advance; bit 1: an end position; bit 2: status interval 0; bit 3: classify
//! payloads with `Wal2jsonTracker`, else their first byte picks the boundary), 8 bytes start LSN, 8 bytes end
//! LSN, a control length and that many control bytes (cycled: each picks a read size, an action — ack the last
//! delivered message, ack everything received, ack an LSN below it, advance the clock), then the server's bytes.
//!
//! Invariants beyond "no panic" (shared/security.md 16-20):
//! - the flush position reported never exceeds max(start, acknowledgements, the highest keepalive walEnd at a
//!   moment when idle advance was on, everything delivered was acknowledged and no transaction was open — once a
//!   message was discarded at the end position, that message's dataStart instead, with or without a keepalive);
//!   with idle advance off it is exactly max(start, acknowledgements);
//! - reported flush positions never move backwards, and flush ≥ what the application acknowledged;
//! - a keepalive asking for a reply gets a status update at the next poll, at the same instant;
//! - no periodic status update before the interval has passed (unless a reply was asked for);
//! - the end position never cuts a transaction: inside an open transaction every message is delivered; outside
//!   one, a message starting past the end is never delivered; after a `Stop`, nothing more is delivered;
//! - consumed bytes ≤ input.
#![no_main]

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgrepl::proto::backend::{BackendMessage, Decoder};
use pgrepl::proto::feedback::{Boundary, Delivery, FeedbackConfig, FeedbackState};
use pgrepl::proto::replication::ReplicationMessage;
use pgrepl::plugin::{TxnClassifier, Wal2jsonTracker};
use pgrepl::Lsn;
use pgrepl_fuzz::Input;

const READ_SIZES: [usize; 16] = [1, 2, 3, 5, 7, 16, 25, 31, 64, 100, 255, 512, 1024, 4096, 8192, 1 << 20];

/// What the application and the server did, as seen from outside the state machine.
struct Model {
    cfg: FeedbackConfig,
    /// max(start, every ack).
    max_ack: Lsn,
    /// The upper bound of a correct flush position.
    bound: Lsn,
    /// Highest non-zero dataStart delivered.
    max_delivered_start: Lsn,
    in_txn: bool,
    stopped: bool,
    last_flush: Lsn,
    last_status: Option<Duration>,
    reply_asked: bool,
    /// Last delivered message's dataStart and walEnd.
    last_delivered: Option<(Lsn, Lsn)>,
    /// Highest keepalive walEnd so far.
    max_keepalive_end: Option<Lsn>,
    /// dataStart of the first message not delivered (past the end position).
    first_discarded: Option<Lsn>,
}

impl Model {
    fn check(&mut self, s: &FeedbackState) {
        let flush = s.flush();
        assert!(flush >= self.last_flush, "flush moved backwards: {} -> {}", self.last_flush, flush);
        assert!(flush <= self.bound, "flush {} above what was acknowledged or safely idle ({})", flush, self.bound);
        assert!(flush >= s.acked(), "flush {} below the acknowledged {}", flush, s.acked());
        assert_eq!(s.acked(), self.max_ack);
        if !self.cfg.idle_advance {
            assert_eq!(flush, self.max_ack, "flush moved without an ack while idle advance is off");
        }
        self.last_flush = flush;
    }

    /// Idle advance is safe: on, a keepalive seen, everything delivered acknowledged and no transaction open (a
    /// keepalive's walEnd covers every message sent before it, so nothing below it is still on its way)...
    fn idle_ok(&self) -> bool {
        self.cfg.idle_advance && !self.in_txn && self.max_ack >= self.max_delivered_start
    }

    /// ...and, once a message was discarded at the end position, exactly up to that message's dataStart, keepalive
    /// or not (everything before it was sent before it; its transaction commits above it, so the server sends it
    /// again; no position at all gives no bound).
    fn maybe_idle_advance(&mut self) {
        if !self.idle_ok() {
            return;
        }
        let to = match (self.first_discarded, self.max_keepalive_end) {
            (Some(d), _) => d,
            (None, Some(k)) => k,
            (None, None) => return,
        };
        self.bound = self.bound.max(to);
    }

    fn ack(&mut self, s: &mut FeedbackState, lsn: Lsn) {
        s.ack(lsn);
        self.max_ack = self.max_ack.max(lsn);
        self.bound = self.bound.max(self.max_ack);
        self.maybe_idle_advance();
        self.check(s);
    }

    fn poll(&mut self, s: &mut FeedbackState, base: Instant, now: Duration) {
        let st = s.poll_status(base + now, 0);
        let interval = self.cfg.status_interval;
        match &st {
            Some(u) => {
                assert_eq!(u.flush, s.flush());
                assert!(u.write >= u.flush && u.apply == u.flush);
                if !self.reply_asked {
                    if let Some(t) = self.last_status {
                        assert!(!interval.is_zero() && now - t >= interval, "status update before the interval");
                    }
                }
                self.last_status = Some(now);
                self.reply_asked = false;
            }
            None => {
                assert!(!self.reply_asked, "a requested reply was not sent");
                assert!(self.last_status.is_some(), "no first status update");
            }
        }
        self.check(s);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let start = Lsn(inp.u64());
    let end = Lsn(inp.u64());
    let control = inp.short_bytes();
    let stream = inp.rest();

    let cfg = FeedbackConfig {
        status_interval: if flags & 4 != 0 { Duration::ZERO } else { Duration::from_secs(10) },
        idle_advance: flags & 1 != 0,
        end: (flags & 2 != 0).then_some(end),
    };
    let mut state = FeedbackState::new(cfg, start);
    let mut model = Model {
        cfg,
        max_ack: start,
        bound: start,
        max_delivered_start: Lsn::INVALID,
        in_txn: false,
        stopped: false,
        last_flush: start,
        last_status: None,
        reply_asked: false,
        last_delivered: None,
        max_keepalive_end: None,
        first_discarded: None,
    };
    let mut classifier = Wal2jsonTracker::default();
    let base = Instant::now();
    let mut now = Duration::ZERO;

    let mut decoder = Decoder::new();
    decoder.set_startup_done();
    let mut buf = BytesMut::new();
    let (mut fed, mut consumed, mut step) = (0usize, 0usize, 0usize);
    'read: while fed < stream.len() {
        let c = if control.is_empty() { 0x0d } else { control[step % control.len()] };
        step += 1;
        let n = READ_SIZES[(c & 0x0f) as usize];
        let chunk = &stream[fed..(fed + n).min(stream.len())];
        fed += chunk.len();
        buf.put_slice(chunk);
        loop {
            let before = buf.len();
            let msg = match decoder.decode(&mut buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => break 'read, // the driver drops the connection
            };
            consumed += before - buf.len();
            let BackendMessage::CopyData(payload) = msg else { continue };
            match ReplicationMessage::parse(payload) {
                Ok(ReplicationMessage::XLogData(x)) => {
                    let boundary = if flags & 8 != 0 {
                        classifier.classify(&x.data)
                    } else {
                        match x.data.first().map(|b| b % 4) {
                            Some(0) => Boundary::Begin,
                            Some(1) => Boundary::Inside,
                            Some(2) => Boundary::End,
                            _ => Boundary::Whole,
                        }
                    };
                    let d = state.on_xlogdata(&x, boundary);
                    if model.in_txn {
                        assert_eq!(d, Delivery::Deliver, "the end position cut a transaction");
                    }
                    if model.stopped {
                        assert_eq!(d, Delivery::Stop, "delivered after Stop");
                    }
                    if let Some(e) = cfg.end {
                        if !model.in_txn && !x.wal_start.is_invalid() && x.wal_start > e {
                            assert_eq!(d, Delivery::Stop, "delivered a transaction starting past the end");
                        }
                    }
                    match d {
                        Delivery::Stop => {
                            model.stopped = true;
                            model.first_discarded.get_or_insert(x.wal_start);
                            model.maybe_idle_advance();
                        }
                        Delivery::Deliver => {
                            match boundary {
                                Boundary::Begin => model.in_txn = true,
                                Boundary::End | Boundary::Whole => model.in_txn = false,
                                Boundary::Inside => {}
                            }
                            model.max_delivered_start = model.max_delivered_start.max(x.wal_start);
                            model.last_delivered = Some((x.wal_start, x.wal_end));
                        }
                    }
                    assert_eq!(state.in_transaction(), model.in_txn);
                }
                Ok(ReplicationMessage::Keepalive(k)) => {
                    state.on_keepalive(&k);
                    if k.reply_requested {
                        model.reply_asked = true;
                    }
                    model.max_keepalive_end = Some(model.max_keepalive_end.map_or(k.wal_end, |m| m.max(k.wal_end)));
                    model.maybe_idle_advance();
                }
                Err(_) => break 'read,
            }
            model.check(&state);
        }
        assert!(consumed <= fed);
        match c >> 4 {
            0..=5 => {}
            6..=8 => {
                // the application finished the last delivered message (a transaction's commit LSN)
                if let Some((s, _)) = model.last_delivered {
                    model.ack(&mut state, s);
                }
            }
            9 => {
                if let Some((_, e)) = model.last_delivered {
                    model.ack(&mut state, e);
                }
            }
            10 => {
                let r = state.received();
                model.ack(&mut state, r);
            }
            11 => {
                // an old acknowledgement arriving late: never moves anything backwards
                let r = Lsn(state.acked().0 / 2);
                model.ack(&mut state, r);
            }
            12..=13 => now += Duration::from_millis(u64::from(c & 0x0f) * 1000),
            _ => now += Duration::from_secs(11),
        }
        model.poll(&mut state, base, now);
    }
    assert!(consumed <= stream.len());
    // a final status at stop reports the same flush
    let st = state.status(0);
    assert_eq!(st.flush, state.flush());
    model.check(&state);
});
