//! Read coalescing and pacing for the replication stream, sans IO ([`crate::stream::StreamConfig::coalesce_reads`]).
//!
//! A reader that keeps up with a bulk stream is woken and reads once per message (a few hundred bytes), and those
//! wake-ups and reads are most of the client's CPU on a drain. [`Coalescer`] decides, from the reads the driver
//! reports and the time it passes in, when the kernel should wake the reader less often and how:
//! - when coalescing starts (the byte rate over a short window) and stops (a cool-down, or lingers that find a
//!   slowed stream), and in which [`CoalesceMode`] (the round trip, plain TCP or TLS, what the kernel books);
//! - which socket options that takes, applied through [`RecvSocket`], which the driver's socket implements (a
//!   fake in the tests below): the low-water mark, a fixed receive buffer, its release while the reader pauses;
//! - when the next linger is due ([`Coalescer::linger_deadline`]: the timer that bounds a message's wait when
//!   fewer bytes than the mark come) and, in [`CoalesceMode::Paced`], when a read waits for its pace
//!   ([`Coalescer::read_gate`]) or takes the sender's backlog at once.
//!
//! Like quinn-proto's `connection/pacing.rs`, it owns no socket, no timer and no clock: the driver
//! ([`crate::stream`]) reads, keeps the timers at the deadlines given here, and reports what happened with the
//! time of it. Every number below was tuned on a loopback drain; docs/bench-e2e.md has the measurements.

use std::time::{Duration, Instant};

/// The socket options the policy sets and reads. The driver's socket implements it over `setsockopt` /
/// `getsockopt`; the tests use a fake kernel. Each setter says whether the option took (`false` when not
/// applicable, e.g. a Unix-domain socket, or refused).
pub(crate) trait RecvSocket {
    /// `SO_RCVLOWAT`: readiness is signalled only once `bytes` are queued (a read still returns what is there).
    fn set_recv_lowat(&self, bytes: i32) -> bool;
    /// `SO_RCVBUF`: the receive buffer fixed at `bytes` (the kernel books twice that, at most what
    /// `net.core.rmem_max` allows, and stops tuning it).
    fn set_recv_buf(&self, bytes: i32) -> bool;
    /// The receive buffer the kernel books (`SO_RCVBUF` read back).
    fn recv_buf(&self) -> Option<i32>;
    /// Lets the kernel tune the receive buffer again (`SO_BUF_LOCK` cleared, Linux 5.14).
    fn unlock_recv_buf(&self) -> bool;
    /// Whether [`unlock_recv_buf`](Self::unlock_recv_buf) can work here.
    fn can_unlock_recv_buf(&self) -> bool;
    /// The smallest round trip seen on the connection (`TCP_INFO`), `None` when unknown.
    fn min_rtt(&self) -> Option<Duration>;
    /// Plain TCP (not TLS, not a Unix-domain socket): readiness then says that the receive window is about to
    /// close, and a read can take what is queued below the low-water mark.
    fn is_plain_tcp(&self) -> bool;
}

/// Read coalescing ([`StreamConfig::coalesce_reads`](crate::stream::StreamConfig::coalesce_reads)): the low-water
/// mark asked for while the stream runs fast.
/// Without it, a reader that keeps up is woken and reads once per message (a few hundred bytes), and those
/// wake-ups and reads are most of the client's CPU on a bulk drain.
pub(crate) const COALESCE_LOWAT: i32 = 32 * 1024;
/// How long after the last read a coalescing reader waits for the low-water mark before taking what is there
/// (tokio's timers have a 1 ms granularity: 1-2 ms).
const COALESCE_LINGER: Duration = Duration::from_millis(1);
/// Coalescing starts after a window of at least COALESCE_WINDOW that saw at least COALESCE_RATE bytes/s.
const COALESCE_RATE: f64 = 16e6;
const COALESCE_WINDOW: Duration = Duration::from_millis(2);
/// Coalescing stops once the stream has not run fast for this long. Until then a linger that finds less than
/// the low-water mark reads what is there and leaves the mark as it is (the driver's `Conn::read_now`). A bulk
/// stream comes in bursts (the walsender sends each transaction at its commit, then decodes the next one for a few
/// milliseconds): stopping at the first quiet linger meant a dozen reads of one message each at the start of
/// every burst, and the walsender sending each of those messages in a segment of its own, before the rate was
/// measured again (a bulk drain: 2,750 of its 4,360 reads under 4 KiB; keeping the mark took the client's CPU
/// down by a sixth, docs/bench-e2e.md). A message still waits at most a linger.
const COALESCE_COOL: Duration = Duration::from_millis(50);
/// Coalescing stops after this many lingers in a row that found a slowed stream ([`Coalescer::keep_after_linger`]).
const SLOW_LINGERS: u8 = 2;
/// A connection whose smallest round trip is at most this (loopback, a LAN) coalesces in
/// [`CoalesceMode::Window`].
pub(crate) const COALESCE_NEAR_RTT: Duration = Duration::from_millis(1);
/// [`CoalesceMode::Window`]'s receive buffer (`SO_RCVBUF`; the kernel books twice this). It fits under Linux's
/// default `net.core.rmem_max` (208 KiB).
const COALESCE_WINDOW_BUF: i32 = 192 * 1024;
/// [`CoalesceMode::Window`]'s linger: its wake-ups come from the window, the timer only bounds a slowing stream.
const COALESCE_WINDOW_LINGER: Duration = Duration::from_millis(3);
/// [`CoalesceMode::Paced`]'s receive buffer. Needs `net.core.rmem_max` at least this much.
pub(crate) const COALESCE_PACED_BUF: i32 = 384 * 1024;
/// [`CoalesceMode::Paced`]'s wait between the window's closing and the read (tokio's timers: 3-4 ms).
const COALESCE_PACE: Duration = Duration::from_millis(3);
/// [`CoalesceMode::Paced`]: after this many reads in a row that took all the room there was, the reader reads
/// without waiting until the socket is empty (see [`drain_backlog`]).
const PACE_FILLED_STREAK: u32 = 8;
/// [`CoalesceMode::Paced`]'s linger (what bounds a message's wait when the stream slows down).
const COALESCE_PACED_LINGER: Duration = Duration::from_millis(5);

/// How a coalescing reader asks the kernel to wake it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CoalesceMode {
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
    pub(crate) fn buffer(self) -> Option<i32> {
        match self {
            CoalesceMode::LowWater => None,
            CoalesceMode::Window => Some(COALESCE_WINDOW_BUF),
            CoalesceMode::Paced => Some(COALESCE_PACED_BUF),
        }
    }

    pub(crate) fn lowat(self) -> i32 {
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

/// When the reader may read, as [`Coalescer::read_gate`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadGate {
    /// As soon as the socket is readable (not paced, or paced and draining the sender's backlog).
    Now,
    /// Paced: once the socket is readable, report it ([`Coalescer::on_readable`]) and wait for the pace.
    WhenReadable,
    /// Paced: the socket was readable; read once this time has come.
    At(Instant),
}

/// What the read at a linger found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LingerRead {
    /// It took `bytes` (more than zero); `filled`: all the room there was.
    Read { bytes: usize, filled: bool },
    /// Nothing was queued.
    Nothing,
    /// The socket cannot read below the low-water mark (not plain TCP).
    Unsupported,
}

/// The read policy of one stream: when to coalesce reads (the byte rate measured over windows of at least
/// [`COALESCE_WINDOW`]), how, and when to read. Fed the reads and the time by the driver.
#[derive(Debug)]
pub(crate) struct Coalescer {
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
    /// [`CoalesceMode::Paced`]: reads in a row that took all the room there was ([`drain_backlog`]).
    filled_streak: u32,
    /// When the linger fires (while `on`): set after each read.
    linger_at: Option<Instant>,
    /// [`CoalesceMode::Paced`]: the socket was readable, and the read waits until then.
    pace_until: Option<Instant>,
}

impl Coalescer {
    /// The policy of a new stream on `sock` at `now`: the socket wakes the reader for every byte; coalescing is
    /// possible only if `enabled` and the socket takes a low-water mark (TCP, plain or under TLS).
    pub(crate) fn new(enabled: bool, sock: &impl RecvSocket, now: Instant) -> Self {
        Coalescer {
            enabled: enabled && sock.set_recv_lowat(1),
            on: false,
            mode: None,
            buf_fixed: false,
            window_start: now,
            window_bytes: 0,
            last_hot: None,
            slow_lingers: 0,
            filled_streak: 0,
            linger_at: None,
            pace_until: None,
        }
    }

    /// A read woken by the socket took `n` bytes (more than zero) at `now`; `filled`: all the room there was.
    /// Starts coalescing when the stream runs fast, and sets the linger while coalescing.
    pub(crate) fn on_read(&mut self, n: usize, filled: bool, now: Instant, sock: &impl RecvSocket) {
        self.count_read(filled);
        if self.hot_after_read(n, now) {
            self.start(sock);
        }
        if self.on {
            self.slow_lingers = 0;
            self.linger_at = Some(now + self.linger());
        }
    }

    /// The linger fired at `now` (less than the low-water mark came within the linger time), and the driver read
    /// what was queued without waiting for readiness: `read`. On plain TCP that takes what is there without
    /// lowering the mark, and [`keep_after_linger`](Self::keep_after_linger) says whether to go on coalescing
    /// (then the next linger is set); elsewhere (TLS) coalescing stops now.
    pub(crate) fn on_linger(&mut self, read: LingerRead, now: Instant, sock: &impl RecvSocket) {
        let read = match read {
            LingerRead::Read { bytes, filled } => {
                self.count_read(filled);
                Some(bytes)
            }
            LingerRead::Nothing => Some(0),
            LingerRead::Unsupported => None,
        };
        if read.is_some_and(|n| self.keep_after_linger(n, now)) {
            self.linger_at = Some(now + self.linger());
        } else {
            self.off(sock);
        }
    }

    /// After a read (`filled`: it took all the room there was): the count of full reads in a row for
    /// [`drain_backlog`]. A read ends the pace's wait.
    fn count_read(&mut self, filled: bool) {
        self.filled_streak = if filled { self.filled_streak.saturating_add(1) } else { 0 };
        self.pace_until = None;
    }

    /// When the reader may read next; `last_read_filled`: the last read took all the room there was.
    pub(crate) fn read_gate(&mut self, last_read_filled: bool) -> ReadGate {
        if !self.paced() {
            self.pace_until = None;
            return ReadGate::Now;
        }
        match self.pace_until {
            Some(t) => ReadGate::At(t),
            None if drain_backlog(last_read_filled, self.filled_streak) => ReadGate::Now,
            None => ReadGate::WhenReadable,
        }
    }

    /// [`ReadGate::WhenReadable`]: the socket became readable at `now`; the read waits until the returned time.
    pub(crate) fn on_readable(&mut self, now: Instant) -> Instant {
        let t = now + COALESCE_PACE;
        self.pace_until = Some(t);
        t
    }

    /// When the linger fires, while coalescing.
    pub(crate) fn linger_deadline(&self) -> Option<Instant> {
        self.linger_at.filter(|_| self.on)
    }

    /// Whether coalescing is on (the socket's low-water mark is the mode's).
    #[cfg(test)]
    pub(crate) fn coalescing(&self) -> bool {
        self.on
    }

    /// The mode, once coalescing has started.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> Option<CoalesceMode> {
        self.mode
    }

    /// Whether the receive buffer is fixed.
    #[cfg(test)]
    pub(crate) fn buffer_fixed(&self) -> bool {
        self.buf_fixed
    }

    /// A policy whose mode is already chosen (tests of a mode the test machine would not choose).
    #[cfg(test)]
    pub(crate) fn with_mode(mut self, mode: CoalesceMode) -> Self {
        self.mode = Some(mode);
        self
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
    fn start(&mut self, sock: &impl RecvSocket) {
        let first = self.mode.is_none();
        let mode = *self.mode.get_or_insert_with(|| {
            let unlockable = sock.can_unlock_recv_buf();
            CoalesceMode::choose(sock.min_rtt(), sock.is_plain_tcp(), |bytes| {
                unlockable && sock.set_recv_buf(bytes) && sock.recv_buf().is_some_and(|b| b >= 2 * bytes)
            })
        });
        if let Some(bytes) = mode.buffer() {
            // fixed by `choose` the first time, here again after a pause
            self.buf_fixed = self.buf_fixed || first || sock.set_recv_buf(bytes);
        }
        self.on = sock.set_recv_lowat(mode.lowat());
    }

    /// Whether reads wait for the pace: coalescing in [`CoalesceMode::Paced`].
    fn paced(&self) -> bool {
        self.on && self.mode == Some(CoalesceMode::Paced)
    }

    /// The reader stops reading (backpressure): back to waking up for every byte, and the receive buffer back
    /// to the kernel's tuning. A fixed buffer that fills up while nobody reads makes Linux drop whole incoming
    /// segments, the server's acknowledgements with them, once the queued data's overhead passes the buffer:
    /// our status updates then never get acknowledged, the server backs off its retransmissions, and a stall
    /// longer than `wal_sender_timeout` ends in "terminating walsender process due to replication timeout".
    /// An unlocked buffer grows to hold what the window let in, and the window closes cleanly. The next fast
    /// stretch after the pause fixes the buffer again ([`start`](Self::start)).
    pub(crate) fn pause(&mut self, sock: &impl RecvSocket) {
        if self.buf_fixed {
            sock.unlock_recv_buf();
            self.buf_fixed = false;
        }
        self.off(sock);
    }

    /// Back to waking up for every byte (the kernel signals readiness at once when bytes are already waiting).
    fn off(&mut self, sock: &impl RecvSocket) {
        self.slow_lingers = 0;
        self.pace_until = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// What the policy asked of the socket.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Lowat(i32),
        RecvBuf(i32),
        Unlock,
    }

    /// A fake socket with Linux's rules for the options the policy uses: `SO_RCVBUF` books twice what is asked,
    /// at most twice `net.core.rmem_max`, and locks the buffer; `SO_BUF_LOCK` 0 unlocks it.
    struct Kernel {
        /// TCP (plain or under TLS); `false`: a Unix-domain socket, which takes none of the options.
        tcp: bool,
        /// Plain TCP rather than TLS.
        plain: bool,
        rtt: Option<Duration>,
        rmem_max: i32,
        /// The kernel knows `SO_BUF_LOCK` (Linux 5.14).
        buf_lock: bool,
        lowat: Cell<i32>,
        booked: Cell<i32>,
        locked: Cell<bool>,
        ops: RefCell<Vec<Op>>,
    }

    impl Kernel {
        /// Plain TCP over loopback on a kernel that lets the buffer be fixed at 4 MiB (this machine's rmem_max).
        fn loopback() -> Self {
            Kernel {
                tcp: true,
                plain: true,
                rtt: Some(Duration::from_micros(40)),
                rmem_max: 4 << 20,
                buf_lock: true,
                lowat: Cell::new(1),
                booked: Cell::new(131_072),
                locked: Cell::new(false),
                ops: RefCell::new(Vec::new()),
            }
        }
        /// The options set since the last call.
        fn ops(&self) -> Vec<Op> {
            self.ops.take()
        }
    }

    impl RecvSocket for Kernel {
        fn set_recv_lowat(&self, bytes: i32) -> bool {
            if !self.tcp {
                return false;
            }
            self.ops.borrow_mut().push(Op::Lowat(bytes));
            self.lowat.set(bytes);
            true
        }
        fn set_recv_buf(&self, bytes: i32) -> bool {
            if !self.tcp {
                return false;
            }
            self.ops.borrow_mut().push(Op::RecvBuf(bytes));
            self.booked.set(2 * bytes.min(self.rmem_max));
            self.locked.set(true);
            true
        }
        fn recv_buf(&self) -> Option<i32> {
            self.tcp.then(|| self.booked.get())
        }
        fn unlock_recv_buf(&self) -> bool {
            if !self.can_unlock_recv_buf() {
                return false;
            }
            self.ops.borrow_mut().push(Op::Unlock);
            self.locked.set(false);
            true
        }
        fn can_unlock_recv_buf(&self) -> bool {
            self.tcp && self.buf_lock
        }
        fn min_rtt(&self) -> Option<Duration> {
            self.rtt.filter(|_| self.tcp)
        }
        fn is_plain_tcp(&self) -> bool {
            self.tcp && self.plain
        }
    }

    /// 10 MB in a read: fast over any window these tests make (up to 600 ms).
    const BURST: usize = 10_000_000;

    fn clock() -> impl Fn(u64) -> Instant {
        let t0 = Instant::now();
        move |n| t0 + Duration::from_millis(n)
    }

    /// A policy on `k` that has started coalescing at `ms(3)` (the options it set taken).
    fn hot(k: &Kernel, ms: &impl Fn(u64) -> Instant) -> Coalescer {
        let mut c = Coalescer::new(true, k, ms(0));
        c.on_read(BURST, false, ms(3), k);
        assert!(c.coalescing());
        k.ops();
        c
    }

    /// Sans IO: this file's code (comments aside) names neither tokio nor libc nor a module of the driver.
    #[test]
    fn sans_io_no_runtime_no_driver() {
        let code: String = include_str!("pacing.rs")
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        // spelled so that this test's own code does not contain them
        let mut banned = vec![["to", "kio"].concat(), ["li", "bc::"].concat()];
        banned.extend(["conn", "client", "stream", "tls", "connect", "changes"].map(|m| format!("crate::{m}")));
        for b in banned {
            assert!(!code.contains(&b), "src/proto/pacing.rs uses {b}");
        }
    }

    #[test]
    fn coalescing_starts_at_the_rate_threshold() {
        let ms = clock();
        // the bytes of a window of COALESCE_WINDOW at COALESCE_RATE
        let at = (COALESCE_RATE * COALESCE_WINDOW.as_secs_f64()).ceil() as usize;
        assert_eq!(at, 32_000);
        let k = Kernel::loopback();
        let mut c = Coalescer::new(true, &k, ms(0));
        // the socket starts waking the reader for every byte
        assert_eq!(k.ops(), [Op::Lowat(1)]);
        c.on_read(at, false, ms(2), &k);
        assert!(c.coalescing());
        assert_eq!(c.mode(), Some(CoalesceMode::Paced));
        assert_eq!(k.ops(), [Op::RecvBuf(COALESCE_PACED_BUF), Op::Lowat(COALESCE_PACED_BUF)]);
        assert_eq!(c.linger_deadline(), Some(ms(2) + COALESCE_PACED_LINGER));
        // one byte short: nothing happens
        let k = Kernel::loopback();
        let mut c = Coalescer::new(true, &k, ms(0));
        k.ops();
        c.on_read(at - 1, false, ms(2), &k);
        assert!(!c.coalescing());
        assert_eq!(c.linger_deadline(), None);
        assert_eq!(k.ops(), []);
        // a window is at least COALESCE_WINDOW long: 10 MB within 1 ms decides nothing yet, the next read does,
        // and what a window saw counts only once (the next window starts empty)
        let k = Kernel::loopback();
        let mut c = Coalescer::new(true, &k, ms(0));
        c.on_read(10 * BURST, false, ms(1), &k);
        assert!(!c.coalescing());
        c.on_read(1, false, ms(2), &k);
        assert!(c.coalescing());
        // a longer window needs as many more bytes
        let mut c = Coalescer::new(true, &k, ms(0));
        c.on_read(2 * at - 1, false, ms(4), &k);
        assert!(!c.coalescing());
        c.on_read(2 * at, false, ms(8), &k);
        assert!(c.coalescing());
    }

    #[test]
    fn coalescing_does_not_start_below_the_rate() {
        let ms = clock();
        // 15 MB/s for half a second, a read per millisecond: never coalesced, the socket left alone
        let k = Kernel::loopback();
        let mut c = Coalescer::new(true, &k, ms(0));
        k.ops();
        for t in 1..=500 {
            c.on_read(15_000, false, ms(t), &k);
            assert!(!c.coalescing(), "{t} ms");
            assert_eq!(c.read_gate(false), ReadGate::Now);
        }
        assert_eq!(k.ops(), []);
        // turned off (StreamConfig::coalesce_reads): the socket is not even touched
        let mut c = Coalescer::new(false, &k, ms(0));
        c.on_read(BURST, false, ms(3), &k);
        assert!(!c.coalescing());
        assert_eq!(k.ops(), []);
        // a Unix-domain socket refuses the low-water mark: never
        let k = Kernel { tcp: false, ..Kernel::loopback() };
        let mut c = Coalescer::new(true, &k, ms(0));
        c.on_read(BURST, false, ms(3), &k);
        assert!(!c.coalescing());
        assert_eq!(c.mode(), None);
    }

    #[test]
    fn coalescing_cools_down_once_the_stream_stops_running_fast() {
        let ms = clock();
        let k = Kernel::loopback();
        let mut c = Coalescer::new(true, &k, ms(0));
        // never ran fast
        assert!(c.cooled(ms(0)));
        // 1 MB in 3 ms: fast, coalescing starts
        assert!(c.hot_after_read(BURST, ms(3)));
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
        assert!(!c.hot_after_read(BURST, ms(60)));
        assert!(!c.cooled(ms(60) + COALESCE_COOL - Duration::from_millis(1)));
        assert!(c.cooled(ms(60) + COALESCE_COOL));
        // the cool-down outlasts several lingers: the gaps between a bulk stream's transactions
        for mode in [CoalesceMode::LowWater, CoalesceMode::Window, CoalesceMode::Paced] {
            assert!(mode.linger() < COALESCE_COOL);
        }
    }

    #[test]
    fn a_linger_with_nothing_queued_keeps_coalescing_until_cooled() {
        let ms = clock();
        let k = Kernel::loopback();
        let mut c = hot(&k, &ms);
        let linger = COALESCE_PACED_LINGER;
        assert_eq!(c.linger_deadline(), Some(ms(3) + linger));
        // gaps between a bulk stream's bursts: linger after linger finds nothing, the mark stays, each linger
        // sets the next
        let mut t = ms(3) + linger;
        while t < ms(3) + COALESCE_COOL {
            c.on_linger(LingerRead::Nothing, t, &k);
            assert!(c.coalescing(), "{:?}", t - ms(3));
            assert_eq!(c.linger_deadline(), Some(t + linger));
            t += linger;
        }
        assert_eq!(k.ops(), []);
        // COALESCE_COOL after the last fast window: back to waking for every byte, no linger
        c.on_linger(LingerRead::Nothing, ms(3) + COALESCE_COOL, &k);
        assert!(!c.coalescing());
        assert_eq!(c.linger_deadline(), None);
        assert_eq!(k.ops(), [Op::Lowat(1)]);
        // the buffer stays fixed (only a pause lets go of it): the next fast stretch sets only the mark
        assert!(c.buffer_fixed() && k.locked.get());
        c.on_read(BURST, false, ms(100), &k);
        assert!(c.coalescing());
        assert_eq!(k.ops(), [Op::Lowat(COALESCE_PACED_BUF)]);
        // a read woken by the socket sets the next linger from its own time
        c.on_read(100, false, ms(101), &k);
        assert_eq!(c.linger_deadline(), Some(ms(101) + linger));
    }

    #[test]
    fn two_slow_lingers_in_a_row_stop_coalescing() {
        let ms = clock();
        let k = Kernel::loopback();
        let read = |bytes| LingerRead::Read { bytes, filled: false };
        // more than COALESCE_RATE over a linger is fast; a few KB is a slowed stream
        let fast = read((COALESCE_RATE * COALESCE_PACED_LINGER.as_secs_f64()) as usize + 1);
        let slow = read(2_000);
        // a burst's tail, a gap, the next burst: never two slow lingers in a row
        let mut c = hot(&k, &ms);
        for (t, r) in [(8, slow), (13, LingerRead::Nothing), (18, slow), (23, fast), (28, slow)] {
            c.on_linger(r, ms(t), &k);
            assert!(c.coalescing(), "{t} ms");
        }
        assert_eq!(k.ops(), []);
        // a stream that slowed down but flows: the second slow linger in a row stops coalescing
        c.on_linger(slow, ms(33), &k);
        assert!(!c.coalescing());
        assert_eq!(k.ops(), [Op::Lowat(1)]);
        // a read woken by the socket in between starts the count again
        let mut c = hot(&k, &ms);
        c.on_linger(slow, ms(8), &k);
        c.on_read(100, false, ms(9), &k);
        c.on_linger(slow, ms(14), &k);
        assert!(c.coalescing());
        // and so does the end of coalescing
        c.on_linger(LingerRead::Nothing, ms(3) + COALESCE_COOL, &k);
        assert!(!c.coalescing());
        c.on_read(BURST, false, ms(100), &k);
        c.on_linger(slow, ms(105), &k);
        assert!(c.coalescing());
        // under TLS a linger cannot read below the mark: it stops coalescing at once
        let k = Kernel { plain: false, ..Kernel::loopback() };
        let mut c = hot(&k, &ms);
        c.on_linger(LingerRead::Unsupported, ms(4), &k);
        assert!(!c.coalescing());
        assert_eq!(k.ops(), [Op::Lowat(1)]);
    }

    #[test]
    fn the_mode_follows_the_round_trip_plain_tcp_and_what_the_kernel_books() {
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

        // The same through the socket, on the first fast stretch.
        let ms = clock();
        let start = |k: &Kernel| {
            let mut c = Coalescer::new(true, k, ms(0));
            k.ops();
            c.on_read(BURST, false, ms(3), k);
            assert!(c.coalescing());
            (c.mode(), c.buffer_fixed(), c.linger_deadline().map(|t| t - ms(3)), k.ops())
        };
        let (paced, window) = (COALESCE_PACED_BUF, COALESCE_WINDOW_BUF);
        // loopback, rmem_max 4 MiB: paced
        assert_eq!(
            start(&Kernel::loopback()),
            (Some(CoalesceMode::Paced), true, Some(COALESCE_PACED_LINGER), vec![Op::RecvBuf(paced), Op::Lowat(paced)])
        );
        // Linux's default rmem_max (208 KiB) books 416 KiB of the 768 asked: the window mode's buffer then
        assert_eq!(
            start(&Kernel { rmem_max: 212_992, ..Kernel::loopback() }),
            (
                Some(CoalesceMode::Window),
                true,
                Some(COALESCE_WINDOW_LINGER),
                vec![Op::RecvBuf(paced), Op::RecvBuf(window), Op::Lowat(window)]
            )
        );
        // TLS: the window mode, the paced buffer not tried
        assert_eq!(
            start(&Kernel { plain: false, ..Kernel::loopback() }),
            (
                Some(CoalesceMode::Window),
                true,
                Some(COALESCE_WINDOW_LINGER),
                vec![Op::RecvBuf(window), Op::Lowat(window)]
            )
        );
        // no SO_BUF_LOCK (a buffer that a pause could not let go of), a long round trip, no round trip known:
        // the low-water mark alone, the buffer untouched
        let low = (Some(CoalesceMode::LowWater), false, Some(COALESCE_LINGER), vec![Op::Lowat(COALESCE_LOWAT)]);
        assert_eq!(start(&Kernel { buf_lock: false, ..Kernel::loopback() }), low);
        assert_eq!(start(&Kernel { rtt: far, ..Kernel::loopback() }), low);
        assert_eq!(start(&Kernel { rtt: None, ..Kernel::loopback() }), low);
        // the mode is chosen once: a later start keeps it
        let k = Kernel::loopback();
        let mut c = hot(&k, &ms);
        c.on_linger(LingerRead::Nothing, ms(3) + COALESCE_COOL, &k);
        let k2 = Kernel { rtt: far, ..Kernel::loopback() };
        c.on_read(BURST, false, ms(100), &k2);
        assert_eq!(c.mode(), Some(CoalesceMode::Paced));
    }

    #[test]
    fn a_pause_lets_go_of_the_buffer_and_a_later_start_fixes_it_again() {
        let ms = clock();
        let k = Kernel::loopback();
        let mut c = hot(&k, &ms);
        assert!(k.locked.get() && c.buffer_fixed());
        assert_eq!(k.lowat.get(), COALESCE_PACED_BUF);
        // the consumer falls behind, the reader stops reading: the buffer back to the kernel, every byte wakes
        c.pause(&k);
        assert_eq!(k.ops(), [Op::Unlock, Op::Lowat(1)]);
        assert!(!c.coalescing() && !c.buffer_fixed() && !k.locked.get());
        assert_eq!(c.linger_deadline(), None);
        assert_eq!(c.read_gate(false), ReadGate::Now);
        // pausing twice changes nothing
        c.pause(&k);
        assert_eq!(k.ops(), []);
        // the next fast stretch fixes the buffer again, in the mode chosen the first time
        c.on_read(BURST, false, ms(10), &k);
        assert!(c.coalescing() && c.buffer_fixed() && k.locked.get());
        assert_eq!(k.ops(), [Op::RecvBuf(COALESCE_PACED_BUF), Op::Lowat(COALESCE_PACED_BUF)]);
        // a pause before anything ran fast, or in the low-water mode, has no buffer to let go of
        let mut c = Coalescer::new(true, &k, ms(0));
        k.ops();
        c.pause(&k);
        assert_eq!(k.ops(), []);
        let k = Kernel { buf_lock: false, ..Kernel::loopback() };
        let mut c = hot(&k, &ms);
        c.pause(&k);
        assert_eq!(k.ops(), [Op::Lowat(1)]);
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
        // the same through the policy: reads that took all the room, woken or at a linger, count
        let ms = clock();
        let k = Kernel::loopback();
        let mut c = hot(&k, &ms);
        let mut t = 3;
        for streak in 1..PACE_FILLED_STREAK {
            t += 1;
            if streak % 2 == 0 {
                c.on_linger(LingerRead::Read { bytes: 400_000, filled: true }, ms(t), &k);
            } else {
                c.on_read(400_000, true, ms(t), &k);
            }
            assert_eq!(c.read_gate(true), ReadGate::WhenReadable, "{streak}");
        }
        c.on_read(400_000, true, ms(t + 1), &k);
        assert_eq!(c.read_gate(true), ReadGate::Now);
        // (a later read that did not fill, as the socket tells it, waits again)
        assert_eq!(c.read_gate(false), ReadGate::WhenReadable);
        // a read that left room ends the streak
        c.on_read(1_000, false, ms(t + 2), &k);
        assert_eq!(c.read_gate(true), ReadGate::WhenReadable);
        // not paced (window mode): no streak matters, every readiness is read at once
        let k = Kernel { plain: false, ..Kernel::loopback() };
        let mut c = hot(&k, &ms);
        assert_eq!(c.read_gate(false), ReadGate::Now);
    }

    #[test]
    fn the_pace_deadline() {
        let ms = clock();
        let k = Kernel::loopback();
        let mut c = hot(&k, &ms);
        // woken when the window is about to close: the read waits COALESCE_PACE
        assert_eq!(c.read_gate(false), ReadGate::WhenReadable);
        let until = c.on_readable(ms(4));
        assert_eq!(until, ms(4) + COALESCE_PACE);
        // until a read, whatever else happens
        assert_eq!(c.read_gate(false), ReadGate::At(until));
        assert_eq!(c.read_gate(true), ReadGate::At(until));
        c.on_read(300_000, false, until, &k);
        assert_eq!(c.read_gate(false), ReadGate::WhenReadable);
        // a linger that reads ends the wait too; one that finds nothing queued does not
        c.on_readable(ms(10));
        c.on_linger(LingerRead::Nothing, ms(11), &k);
        assert_eq!(c.read_gate(false), ReadGate::At(ms(10) + COALESCE_PACE));
        c.on_linger(LingerRead::Read { bytes: 100_000, filled: false }, ms(12), &k);
        assert_eq!(c.read_gate(false), ReadGate::WhenReadable);
        // once coalescing ends (a pause, or a linger), no wait
        c.on_readable(ms(20));
        c.pause(&k);
        assert_eq!(c.read_gate(false), ReadGate::Now);
        c.on_read(BURST, false, ms(30), &k);
        c.on_readable(ms(31));
        c.on_linger(LingerRead::Nothing, ms(30) + COALESCE_COOL, &k);
        assert!(!c.coalescing());
        assert_eq!(c.read_gate(false), ReadGate::Now);
        // the wait is what lets the sender batch; the linger bounds a message's wait after a slowdown
        assert!(COALESCE_PACE >= Duration::from_millis(1));
        assert!(CoalesceMode::Paced.linger() > COALESCE_PACE);
    }
}
