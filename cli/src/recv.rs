//! `pgrepl recv`: a drop-in for pg_recvlogical.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgrepl::changes::Reconnect;
use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::plugin::{Boundary, DeliverAll, OutputPlugin, Route, Router};
use pgrepl::proto::commands::{quote_sql_literal, CreateSlot, SnapshotAction};
use pgrepl::proto::replication::XLogData;
use pgrepl::spill::{Held, Spill};
use pgrepl::stream::{ReplicationStream, StreamConfig};
use pgrepl::{Error, ErrorKind, Lsn};

use crate::args::{self, Opt};
use crate::output::OutputFormat;
use crate::sink::Output;
use crate::state::{Durable, StateFile};

pub const HELP: &str = "\
pgrepl recv controls PostgreSQL logical decoding streams (a drop-in for pg_recvlogical).

Usage:
  pgrepl recv [OPTION]...

Action to be performed:
      --create-slot      create a new replication slot
      --drop-slot        drop the replication slot
      --start            start streaming in a replication slot

Options:
  -E, --endpos=LSN       exit after receiving the specified LSN; never in the middle of a transaction
  -f, --file=FILE        receive log into this file, - for stdout
  -F  --fsync-interval=SECS
                         time between fsyncs to the output file (default: 10)
      --if-not-exists    do not error if slot already exists when creating a slot
  -I, --startpos=LSN     where in an existing slot should the streaming start
  -n, --no-loop          do not loop on connection lost
  -o, --option=NAME[=VALUE]
                         pass option NAME with optional value VALUE to the output plugin
  -P, --plugin=PLUGIN    use output plugin PLUGIN (default: wal2json)
  -s, --status-interval=SECS
                         time between status packets sent to server (default: 10)
  -S, --slot=SLOTNAME    name of the logical replication slot
  -t, --two-phase        enable decoding of prepared transactions when creating a slot
      --output=FORMAT    raw (default: each payload and a newline, byte-identical to pg_recvlogical),
                         json (one wal2json-format-2 object per change, whatever the slot's format),
                         none (decode, write nothing)
  -v, --verbose          output verbose messages (and a progress line on stderr)
  -V, --version          output version information, then exit
  -?, --help             show this help, then exit

Connection options:
  -d, --dbname=DBNAME    database to connect to (a connection string or URI is accepted)
  -h, --host=HOSTNAME    database server host or socket directory
  -p, --port=PORT        database server port number
  -U, --username=NAME    connect as specified database user
  -w, --no-password      never prompt for password
  -W, --password         force password prompt (should happen automatically)
";

const SPEC: &[Opt] = &[
    Opt { short: None, long: "create-slot", value: false },
    Opt { short: None, long: "drop-slot", value: false },
    Opt { short: None, long: "start", value: false },
    Opt { short: Some('E'), long: "endpos", value: true },
    Opt { short: Some('f'), long: "file", value: true },
    Opt { short: Some('F'), long: "fsync-interval", value: true },
    Opt { short: None, long: "if-not-exists", value: false },
    Opt { short: Some('I'), long: "startpos", value: true },
    Opt { short: Some('n'), long: "no-loop", value: false },
    Opt { short: Some('o'), long: "option", value: true },
    Opt { short: Some('P'), long: "plugin", value: true },
    Opt { short: Some('s'), long: "status-interval", value: true },
    Opt { short: Some('S'), long: "slot", value: true },
    Opt { short: Some('t'), long: "two-phase", value: false },
    Opt { short: None, long: "output", value: true },
    Opt { short: Some('v'), long: "verbose", value: false },
    Opt { short: Some('V'), long: "version", value: false },
    Opt { short: Some('?'), long: "help", value: false },
    Opt { short: Some('d'), long: "dbname", value: true },
    Opt { short: Some('h'), long: "host", value: true },
    Opt { short: Some('p'), long: "port", value: true },
    Opt { short: Some('U'), long: "username", value: true },
    Opt { short: Some('w'), long: "no-password", value: false },
    Opt { short: Some('W'), long: "password", value: false },
];

/// Everything `recv` was asked to do.
pub struct RecvArgs {
    pub conninfo: String,
    pub slot: String,
    pub plugin: String,
    pub options: Vec<(String, Option<String>)>,
    pub startpos: Lsn,
    pub endpos: Option<Lsn>,
    pub status_interval: Duration,
    pub fsync_interval: Duration,
    pub file: Option<String>,
    pub no_loop: bool,
    pub create: bool,
    pub drop: bool,
    pub start: bool,
    pub if_not_exists: bool,
    pub two_phase: bool,
    pub verbose: bool,
    pub output: OutputFormat,
    pub prompt_password: bool,
    pub never_prompt: bool,
}

fn seconds(name: &str, v: &str) -> Result<Duration, String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Duration::from_secs(n as u64)),
        _ => Err(format!("invalid {name} \"{v}\"")),
    }
}

/// Quote a conninfo value.
pub fn conn_value(v: &str) -> String {
    let mut s = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

pub fn parse_args(argv: &[String]) -> Result<Option<RecvArgs>, String> {
    let p = args::parse(argv, SPEC)?;
    if p.has("help") {
        print!("{HELP}");
        return Ok(None);
    }
    if p.has("version") {
        println!("pgrepl recv {}", env!("CARGO_PKG_VERSION"));
        return Ok(None);
    }
    if let Some(extra) = p.positional.first() {
        return Err(format!("too many command-line arguments (first is \"{extra}\")"));
    }
    let slot = p.value("slot").ok_or("no slot specified")?.to_string();
    // refused here, before connecting, as the library refuses it before sending anything
    pgrepl::proto::commands::validate_slot_name(&slot).map_err(|e| e.message().to_string())?;
    let (create, drop, start) = (p.has("create-slot"), p.has("drop-slot"), p.has("start"));
    if !create && !drop && !start {
        return Err("at least one action needs to be specified".into());
    }
    if drop && (create || start) {
        return Err("cannot use --create-slot or --start together with --drop-slot".into());
    }
    let file = p.value("file").map(str::to_string);
    if start && file.is_none() {
        return Err("no target file specified".into());
    }
    if p.has("startpos") && (create || drop) && !start {
        return Err("cannot use --create-slot or --drop-slot together with --startpos".into());
    }
    if p.has("endpos") && !start {
        return Err("--endpos may only be specified with --start".into());
    }
    if p.has("two-phase") && !create {
        return Err("--two-phase may only be specified with --create-slot".into());
    }
    let lsn = |name: &str| -> Result<Option<Lsn>, String> {
        p.value(name).map(|v| Lsn::parse(v).map_err(|_| format!("could not parse {name} location \"{v}\""))).transpose()
    };
    let mut options = Vec::new();
    for o in p.values("option") {
        match o.split_once('=') {
            Some((k, v)) => options.push((k.to_string(), Some(v.to_string()))),
            None => options.push((o.to_string(), None)),
        }
    }
    // Connection string: -d may itself be a conninfo string or URI; -h/-p/-U override it, as in pg_recvlogical.
    let mut conninfo = String::new();
    if let Some(d) = p.value("dbname") {
        conninfo.push_str(&format!("dbname={}", conn_value(d)));
    }
    for (opt, key) in [("host", "host"), ("port", "port"), ("username", "user")] {
        if let Some(v) = p.value(opt) {
            conninfo.push_str(&format!(" {key}={}", conn_value(v)));
        }
    }
    conninfo.push_str(" replication=database fallback_application_name=pgrepl");
    let output = match p.value("output").unwrap_or("raw") {
        "raw" => OutputFormat::Raw,
        "json" => OutputFormat::Json,
        "none" => OutputFormat::None,
        other => return Err(format!("invalid --output \"{other}\": expected raw, json or none")),
    };
    Ok(Some(RecvArgs {
        conninfo,
        slot,
        plugin: p.value("plugin").unwrap_or("wal2json").to_string(),
        options,
        startpos: lsn("startpos")?.unwrap_or(Lsn::INVALID),
        endpos: lsn("endpos")?,
        status_interval: seconds("status interval", p.value("status-interval").unwrap_or("10"))?,
        fsync_interval: seconds("fsync interval", p.value("fsync-interval").unwrap_or("10"))?,
        file,
        no_loop: p.has("no-loop"),
        create,
        drop,
        start,
        if_not_exists: p.has("if-not-exists"),
        two_phase: p.has("two-phase"),
        verbose: p.has("verbose"),
        output,
        prompt_password: p.has("password"),
        never_prompt: p.has("no-password"),
    }))
}

/// Entry point; returns the process exit code (0 success, 1 error, as pg_recvlogical).
pub async fn run(argv: &[String], signals: crate::signals::Signals) -> i32 {
    let a = match parse_args(argv) {
        Ok(Some(a)) => a,
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("pgrepl recv: error: {e}");
            eprintln!("Try \"pgrepl recv --help\" for more information.");
            return 1;
        }
    };
    match run_args(a, signals).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pgrepl recv: error: {e}");
            1
        }
    }
}

async fn connect(a: &RecvArgs, cfg: &mut Config) -> Result<Client, Error> {
    if a.prompt_password && cfg.password.is_none() {
        cfg.password = Some(crate::prompt::password()?.into_bytes());
    }
    match Client::connect(cfg).await {
        Err(e)
            if e.kind() == ErrorKind::PasswordRequired
                && cfg.password.is_none()
                && !a.never_prompt
                && crate::prompt::is_tty() =>
        {
            cfg.password = Some(crate::prompt::password()?.into_bytes());
            Client::connect(cfg).await
        }
        r => r,
    }
}

async fn run_args(a: RecvArgs, mut signals: crate::signals::Signals) -> Result<(), Error> {
    let mut cfg = Config::from_str_with_std_env(&a.conninfo)?;
    // --drop-slot and --create-slot run once and fail at once, as pg_recvlogical's do; streaming retries.
    let mut first = None;
    if a.drop || a.create {
        let mut client = connect(&a, &mut cfg).await?;
        if a.drop {
            if a.verbose {
                eprintln!("pgrepl recv: dropping replication slot \"{}\"", a.slot);
            }
            client.drop_replication_slot(&a.slot, false).await?;
            client.close().await?;
            return Ok(());
        }
        if a.verbose {
            eprintln!("pgrepl recv: creating replication slot \"{}\"", a.slot);
        }
        let cs = CreateSlot {
            slot: a.slot.clone(),
            plugin: a.plugin.clone(),
            temporary: false,
            snapshot: SnapshotAction::NoExport,
            two_phase: a.two_phase,
        };
        match client.create_replication_slot(&cs).await {
            Ok(_) => {}
            Err(e) if a.if_not_exists && e.kind() == ErrorKind::SlotExists => {
                if a.verbose {
                    eprintln!("pgrepl recv: replication slot \"{}\" already exists", a.slot);
                }
            }
            Err(e) => return Err(e),
        }
        if !a.start {
            client.close().await?;
            return Ok(());
        }
        first = Some(client);
    }
    let mut rx = Receiver::open(&a)?;
    let policy = Reconnect { initial: Duration::from_millis(500), ..Reconnect::default() };
    loop {
        let failure = match rx.stream_once(&mut cfg, first.take(), &mut signals).await {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        let wait = decide(failure, &a, &policy, &mut rx.attempt)?;
        if signals.sleep_or_stop(wait).await {
            // stopped while waiting to reconnect: what was written is made durable (no connection to confirm it
            // on: the next run resumes from the state file, or the slot's position)
            return rx.settle().map_err(Failure::into_error);
        }
    }
}

/// Why a stream ended before its time.
enum Failure {
    /// The connection or the server failed while `.0` was happening.
    Connection(&'static str, Error),
    /// The output (file, pipe, state file) or a payload that cannot be converted: no reconnect mends that.
    Local(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Connection(_, e) | Failure::Local(e) => e,
        }
    }
}

fn conn(what: &'static str) -> impl FnOnce(Error) -> Failure {
    move |e| Failure::Connection(what, e)
}

/// The one rule for every failure while streaming, wherever it surfaced (connecting, starting, reading, a batch
/// drained from the buffer, stopping at the end position): give up — a local failure, an error a reconnect
/// cannot mend ([`Error::is_retryable`]), or `-n` — or how long to wait before reconnecting.
fn decide(f: Failure, a: &RecvArgs, policy: &Reconnect, attempt: &mut u32) -> Result<Duration, Error> {
    let (what, e) = match f {
        Failure::Local(e) => return Err(e),
        Failure::Connection(what, e) => (what, e),
    };
    if a.no_loop || !e.is_retryable() {
        return Err(e);
    }
    *attempt += 1;
    let wait = policy.backoff(*attempt);
    eprintln!("pgrepl recv: {what}: {e}; retrying in {:.1} s (attempt {attempt})", wait.as_secs_f64());
    Ok(wait)
}

/// The open transaction's payloads written so far: how many, and the (LSN, length) of the first and the last,
/// to recognise them when the server sends the transaction again after a reconnect.
#[derive(Default, Clone, Copy)]
struct OpenTxn {
    written: u64,
    first: (Lsn, usize),
    last: (Lsn, usize),
}

/// `recv --start`: the output, and what has been written in transaction terms, across connections.
///
/// Exactly once: streaming (re)starts at the last transaction boundary written (`boundary`), so the server
/// sends the transaction a lost connection cut again, whole; the payloads of it already written are recognised
/// and skipped (`skip`). Only boundaries are acknowledged, after the output up to them is written (and fsynced,
/// unless `-F 0`) and, for a regular file, recorded in its state file ([`crate::state`]): a new run truncates a
/// torn tail back to the last recorded boundary and resumes there.
struct Receiver<'a> {
    a: &'a RecvArgs,
    out: Output,
    /// The state file, for a regular output file written with `--output raw|json`.
    state: Option<StateFile>,
    /// The last transaction boundary written out, and the output's length up to it: where streaming resumes.
    boundary: Durable,
    /// A boundary in the buffer (the length counts the buffer up to it), not written out yet.
    buffered: Option<Durable>,
    /// What was acknowledged last, and when.
    acked: Lsn,
    last_ack: Instant,
    open: OpenTxn,
    /// On the current connection: payloads of the cut transaction still to recognise and skip, and seen.
    skip: u64,
    replayed: u64,
    /// The slot's output plugin (its rules place each payload in its transaction), once known.
    plugin: Option<Arc<dyn OutputPlugin>>,
    /// The plugin's router, and the payloads of transactions it sent before they committed (pgoutput's
    /// streaming), held until they commit: a streamed transaction is written whole at its commit, in commit order,
    /// and an aborted one never (pg_recvlogical writes the segments as they come).
    router: Box<dyn Router>,
    spill: Spill,
    /// SIGHUP: reopen the output at the next transaction boundary.
    reopen: bool,
    /// Consecutive failed attempts to connect and start streaming.
    attempt: u32,
    started: Instant,
    msgs: u64,
    bytes: u64,
    last_progress: Instant,
}

/// Memory for held (streamed, not yet committed) transactions before they go to temporary files.
const HOLD_MEMORY: usize = 64 << 20;

/// How often the state file is written (and the position acknowledged) at most with `-F 0`: an acknowledgement
/// only matters at the next status update.
const STATE_INTERVAL: Duration = Duration::from_millis(100);

impl<'a> Receiver<'a> {
    fn open(a: &'a RecvArgs) -> Result<Receiver<'a>, Error> {
        let path = a.file.as_deref().unwrap_or("-");
        let output_name = match a.output {
            OutputFormat::Raw => Some("raw"),
            OutputFormat::Json => Some("json"),
            OutputFormat::None => None,
        };
        // A previous run's state: its torn tail truncated before the file is opened for appending.
        let mut state = None;
        let mut resume = Durable { len: 0, lsn: a.startpos };
        if let (Some(name), true) = (output_name, path != "-") {
            let is_regular = std::fs::metadata(path).map(|m| m.file_type().is_file());
            if !matches!(is_regular, Ok(false)) {
                let (st, recovered) = StateFile::recover(path, &a.slot, name, !a.fsync_interval.is_zero())?;
                if let Some(d) = recovered {
                    if a.verbose {
                        eprintln!("pgrepl recv: state file: \"{path}\" holds {} bytes up to {}", d.len, d.lsn);
                    }
                    resume.lsn = resume.lsn.max(d.lsn);
                }
                state = Some(st);
            }
        }
        let out = Output::open(path, a.output)?;
        resume.len = out.len_after_buffer();
        if let (Some(st), Some(md)) = (state.as_mut(), out.regular_file()) {
            st.set_file(md);
            // From the start: what this run writes before its first acknowledgement is cut off again should it
            // be killed (it resumes where this one did, 0/0 being the slot's confirmed position).
            st.save(resume)?;
        } else {
            state = None;
        }
        Ok(Receiver {
            a,
            out,
            state,
            boundary: resume,
            buffered: None,
            acked: resume.lsn,
            last_ack: Instant::now(),
            open: OpenTxn::default(),
            skip: 0,
            replayed: 0,
            plugin: None,
            router: Box::new(DeliverAll),
            spill: Spill::new(HOLD_MEMORY, std::env::temp_dir()),
            reopen: false,
            attempt: 0,
            started: Instant::now(),
            msgs: 0,
            bytes: 0,
            last_progress: Instant::now(),
        })
    }

    /// Connect (unless `client` is given), start streaming at the last boundary written, and consume until a
    /// clean stop (`Ok`) or a failure.
    async fn stream_once(
        &mut self,
        cfg: &mut Config,
        client: Option<Client>,
        signals: &mut crate::signals::Signals,
    ) -> Result<(), Failure> {
        let mut c = match client {
            Some(c) => c,
            None => connect(self.a, cfg).await.map_err(conn("could not connect"))?,
        };
        let plugin = match &self.plugin {
            Some(p) => p.clone(),
            None => {
                let p = pgrepl::plugin::by_name(&slot_plugin(&mut c, self.a).await.map_err(conn("reading the slot"))?);
                self.out.writer.set_plugin(p.name()).map_err(Failure::Local)?;
                if self.a.verbose {
                    let rule = if p.knows_transactions() { "" } else { " (unknown: each message is a unit)" };
                    eprintln!("pgrepl recv: slot \"{}\" uses output plugin {}{rule}", self.a.slot, p.name());
                }
                self.plugin.insert(p).clone()
            }
        };
        // a new connection resends whatever was held, whole, from the restart position
        self.router = plugin.router();
        self.spill.clear();
        // A stream reports its start position as flushed: what was written up to there is made durable and
        // recorded first, as before any acknowledgement.
        self.settle()?;
        let start = self.boundary.lsn;
        if self.a.verbose {
            eprintln!("pgrepl recv: starting log streaming at {start} (slot {})", self.a.slot);
        }
        // the plugin fills in what depends on the server (pgoutput's proto_version) and refuses what cannot work
        let options =
            plugin.start_options(c.session().server_version_num(), &self.a.options).map_err(Failure::Local)?;
        let sc = StreamConfig { status_interval: self.a.status_interval, end: self.a.endpos, ..Default::default() };
        let stream = c
            .start_replication(&self.a.slot, plugin.as_ref(), start, &options, sc)
            .await
            .map_err(conn("could not start streaming"))?;
        // a failure from now on is a new one: the backoff starts over (as ChangeStream's does)
        self.attempt = 0;
        // the server sends the cut transaction again from its first payload
        self.skip = self.open.written;
        self.replayed = 0;
        if self.a.verbose && self.skip > 0 {
            eprintln!(
                "pgrepl recv: the interrupted transaction comes again: its first {} payloads were written",
                self.skip
            );
        }
        self.consume(stream, signals).await
    }

    async fn consume(
        &mut self,
        mut stream: ReplicationStream,
        signals: &mut crate::signals::Signals,
    ) -> Result<(), Failure> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = tick.tick() => {
                    // Idle: make durable and acknowledge what was written once the interval has passed.
                    self.ack_if_due(&stream, true)?;
                    self.progress(&stream);
                    continue;
                }
                s = signals.recv() => match s {
                    crate::signals::Signal::Stop => {
                        self.out.write_out().await.map_err(Failure::Local)?;
                        self.ack(&stream)?;
                        // Output and state are durable: a final status update that fails only leaves the slot
                        // behind, and the next run resumes from the state file.
                        match stream.stop().await {
                            Ok(c) => drop(c.close().await),
                            Err(e) => eprintln!("pgrepl recv: warning: could not send the final status update: {e}"),
                        }
                        return Ok(());
                    }
                    crate::signals::Signal::Reopen => {
                        self.reopen = true;
                        if self.open.written == 0 {
                            self.out.write_out().await.map_err(Failure::Local)?;
                            self.reopen_at_boundary()?;
                        }
                        continue;
                    }
                },
            };
            let msg = match next {
                Ok(Some(m)) => m,
                Ok(None) if stream.end_reached() => {
                    // End position reached: make the output durable, then the final status update confirms it.
                    // Should the connection fail now, a reconnect confirms it (and ends at once).
                    self.out.write_out().await.map_err(Failure::Local)?;
                    self.ack(&stream)?;
                    stream.stop().await.map_err(conn("stopping at the end position"))?.close().await.ok();
                    if self.a.verbose {
                        eprintln!("pgrepl recv: end position reached; {} messages, {} bytes", self.msgs, self.bytes);
                    }
                    return Ok(());
                }
                Ok(None) => {
                    self.out.write_out().await.map_err(Failure::Local)?;
                    return Err(Failure::Connection(
                        "streaming",
                        Error::closed("the server ended the stream before the end position"),
                    ));
                }
                Err(e) => {
                    // what is in the buffer are whole payloads: written; the cut transaction comes again
                    self.out.write_out().await.map_err(Failure::Local)?;
                    return Err(Failure::Connection("disconnected", e));
                }
            };
            self.take(&msg)?;
            // Drain whatever else is already buffered before writing, to batch syscalls.
            let mut lost = None;
            while self.out.buf.len() <= (1 << 20) && !(self.reopen && self.open.written == 0) {
                match stream.try_next() {
                    Some(Ok(m)) => self.take(&m)?,
                    Some(Err(e)) => {
                        lost = Some(e);
                        break;
                    }
                    None => break,
                }
            }
            self.out.write_out().await.map_err(Failure::Local)?;
            if let Some(d) = self.buffered.take() {
                self.boundary = d;
            }
            if let Some(e) = lost {
                return Err(Failure::Connection("disconnected", e));
            }
            if self.reopen && self.open.written == 0 {
                self.reopen_at_boundary()?;
            }
            self.ack_if_due(&stream, false)?;
            self.progress(&stream);
        }
    }

    /// One payload, routed by the plugin's rules: held while its transaction has not committed, and the held
    /// payloads of a transaction written out at its commit ([`Route`]).
    fn take(&mut self, x: &XLogData) -> Result<(), Failure> {
        match self.router.route(&x.data).map_err(Failure::Local)? {
            Route::Deliver => self.take_one(x),
            Route::Hold { xid, sub } => {
                let held = Held { wal_start: x.wal_start, wal_end: x.wal_end, data: x.data.clone() };
                self.spill.hold(xid, sub, held).map_err(Failure::Local)
            }
            Route::Discard { xid, sub } => self.spill.abort(xid, sub).map_err(Failure::Local),
            Route::Release { xid } => {
                let mut first = true;
                for h in self.spill.release(xid).map_err(Failure::Local)? {
                    let h = h.map_err(Failure::Local)?;
                    let boundary = if std::mem::take(&mut first) { Boundary::Begin } else { Boundary::Inside };
                    let data = h.data;
                    let held = XLogData { wal_start: h.wal_start, wal_end: h.wal_end, data, boundary, ..x.clone() };
                    self.take_one(&held)?;
                }
                let mut last = x.clone();
                last.boundary = Boundary::End;
                self.take_one(&last)
            }
        }
    }

    /// One payload: skipped when it was written before the connection was lost, else converted into the buffer.
    fn take_one(&mut self, x: &XLogData) -> Result<(), Failure> {
        let b = x.boundary;
        let key = (x.wal_start, x.data.len());
        if self.replayed < self.skip {
            let i = self.replayed;
            self.replayed += 1;
            let expected = if i == 0 { Some(self.open.first) } else { (i + 1 == self.skip).then_some(self.open.last) };
            if expected.is_some_and(|k| k != key) {
                return Err(Failure::Local(Error::protocol(format!(
                    "after a reconnect the server sent payload {} of the interrupted transaction as {} ({} bytes), \
                     not as before ({} bytes at {}): not the same transaction",
                    i + 1,
                    key.0,
                    key.1,
                    expected.map_or(0, |k| k.1),
                    expected.map_or(Lsn::INVALID, |k| k.0),
                ))));
            }
            return Ok(());
        }
        self.msgs += 1;
        self.bytes += x.data.len() as u64;
        self.out.writer.write(&x.data, &mut self.out.buf).map_err(Failure::Local)?;
        let ends = match b {
            Boundary::Begin => {
                self.open = OpenTxn { written: 1, first: key, last: key };
                false
            }
            Boundary::Inside if self.open.written > 0 => {
                self.open.written += 1;
                self.open.last = key;
                false
            }
            // the end of the open transaction, or a payload outside any (a whole format-1 transaction, a
            // non-transactional message, another plugin's message)
            _ => true,
        };
        if ends {
            self.open = OpenTxn::default();
            let lsn = self.plugin.as_ref().map_or(x.wal_start, |p| p.ack_lsn(x));
            let prev = self.buffered.unwrap_or(self.boundary).lsn;
            self.buffered = Some(Durable { len: self.out.len_after_buffer(), lsn: prev.max(lsn) });
        }
        Ok(())
    }

    /// Acknowledge the last boundary written when the fsync interval has passed (`idle`: from the timer, else
    /// after a write).
    fn ack_if_due(&mut self, stream: &ReplicationStream, idle: bool) -> Result<(), Failure> {
        if self.boundary.lsn <= self.acked && self.state.as_ref().is_none_or(|s| s.last() == Some(self.boundary)) {
            return Ok(());
        }
        let since = self.last_ack.elapsed();
        let due = if self.a.fsync_interval.is_zero() {
            // no fsync: a state file at most every STATE_INTERVAL, else at once
            idle || self.state.is_none() || since >= STATE_INTERVAL
        } else {
            since >= self.a.fsync_interval
        };
        if due {
            self.ack(stream)?;
        }
        Ok(())
    }

    /// Make what was written durable up to the last boundary (fsync unless `-F 0`, the state file), then
    /// acknowledge that boundary.
    fn ack(&mut self, stream: &ReplicationStream) -> Result<(), Failure> {
        self.settle()?;
        if !self.boundary.lsn.is_invalid() {
            stream.ack(self.boundary.lsn);
            self.acked = self.acked.max(self.boundary.lsn);
        }
        Ok(())
    }

    /// Make what was written durable (the buffer must be written out): fsync unless `-F 0`, then the state file.
    fn settle(&mut self) -> Result<(), Failure> {
        if !self.a.fsync_interval.is_zero() {
            self.out.fsync().map_err(Failure::Local)?;
        }
        if let Some(st) = self.state.as_mut() {
            st.save(self.boundary).map_err(Failure::Local)?;
        }
        self.last_ack = Instant::now();
        Ok(())
    }

    /// SIGHUP at a transaction boundary (the buffer written out): the old file made durable, the new one opened,
    /// the state file pointed at it.
    fn reopen_at_boundary(&mut self) -> Result<(), Failure> {
        self.reopen = false;
        self.out.fsync().map_err(Failure::Local)?;
        self.out.reopen().map_err(Failure::Local)?;
        self.boundary.len = self.out.len_after_buffer();
        match (self.state.as_mut(), self.out.regular_file()) {
            (Some(st), Some(md)) => {
                st.set_file(md);
                st.save(self.boundary).map_err(Failure::Local)?;
            }
            _ => self.state = None,
        }
        Ok(())
    }

    fn progress(&mut self, stream: &ReplicationStream) {
        if !self.a.verbose || self.last_progress.elapsed() < Duration::from_secs(5) {
            return;
        }
        self.last_progress = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let at = self.boundary.lsn;
        let server_end = stream.server_wal_end();
        let lag = server_end.0.saturating_sub(at.0);
        eprintln!(
            "pgrepl recv: {} messages, {:.1} MB, {:.0} msg/s, {:.1} MB/s, written up to {at}, server at {server_end} \
             (lag {lag} bytes)",
            self.msgs,
            self.bytes as f64 / 1e6,
            self.msgs as f64 / secs,
            self.bytes as f64 / 1e6 / secs
        );
    }
}

/// The slot's output plugin, from `pg_replication_slots` (SQL on the replication connection); `-P` when the
/// slot is not there (START_REPLICATION then reports it).
async fn slot_plugin(c: &mut Client, a: &RecvArgs) -> Result<String, Error> {
    let q = format!("SELECT plugin FROM pg_replication_slots WHERE slot_name = {}", quote_sql_literal(&a.slot));
    let r = c.simple_query(&q).await?;
    Ok(r.first()
        .and_then(|r| r.rows.first())
        .and_then(|row| row.first().cloned().flatten())
        .unwrap_or_else(|| a.plugin.clone()))
}
