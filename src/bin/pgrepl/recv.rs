//! `pgrepl recv`: a drop-in for pg_recvlogical.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgrepl::changes::Reconnect;
use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::proto::commands::{CreateSlot, SnapshotAction};
use pgrepl::stream::{ReplicationStream, StreamConfig};
use pgrepl::{Error, ErrorKind, Lsn};

use crate::args::{self, Opt};
use crate::output::{OutputFormat, Writer};

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
            if e.kind() == ErrorKind::Auth && cfg.password.is_none() && !a.never_prompt && crate::prompt::is_tty() =>
        {
            if !e.to_string().contains("password") {
                return Err(e);
            }
            cfg.password = Some(crate::prompt::password()?.into_bytes());
            Client::connect(cfg).await
        }
        r => r,
    }
}

async fn run_args(a: RecvArgs, mut signals: crate::signals::Signals) -> Result<(), Error> {
    let mut cfg = Config::from_str_with_std_env(&a.conninfo)?;
    let mut client = connect(&a, &mut cfg).await?;
    if a.drop {
        if a.verbose {
            eprintln!("pgrepl recv: dropping replication slot \"{}\"", a.slot);
        }
        client.drop_replication_slot(&a.slot, false).await?;
        client.close().await?;
        return Ok(());
    }
    if a.create {
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
            Err(e) if a.if_not_exists && e.code() == Some("42710") => {
                if a.verbose {
                    eprintln!("pgrepl recv: replication slot \"{}\" already exists", a.slot);
                }
            }
            Err(e) => return Err(e),
        }
    }
    if !a.start {
        client.close().await?;
        return Ok(());
    }
    let mut out = Output::open(a.file.as_deref().unwrap_or("-"), a.output)?;
    // Resume from what was acknowledged (written and, with -F, fsynced), never from what was received.
    let mut resume = a.startpos;
    let mut attempt: u32 = 0;
    let mut client = Some(client);
    let policy = Reconnect { initial: Duration::from_millis(500), ..Reconnect::default() };
    // After a failure: give up (-n, or not retryable) or return how long to wait before the next attempt.
    let retry = |what: &str, e: Error, attempt: &mut u32| -> Result<Duration, Error> {
        if a.no_loop || !e.is_retryable() {
            return Err(e);
        }
        *attempt += 1;
        let wait = policy.backoff(*attempt);
        eprintln!("pgrepl recv: {what}: {e}; retrying in {:.1} s (attempt {attempt})", wait.as_secs_f64());
        Ok(wait)
    };
    loop {
        let c = match client.take() {
            Some(c) => c,
            None => match connect(&a, &mut cfg).await {
                Ok(c) => c,
                Err(e) => {
                    let wait = retry("could not connect", e, &mut attempt)?;
                    if signals.sleep_or_stop(wait).await {
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        if a.verbose {
            eprintln!("pgrepl recv: starting log streaming at {resume} (slot {})", a.slot);
        }
        let sc = StreamConfig { status_interval: a.status_interval, end: a.endpos, ..Default::default() };
        let outcome = match c.start_replication(&a.slot, resume, &a.options, sc).await {
            Ok(stream) => consume(&a, stream, &mut out, &mut signals, &mut resume, &mut attempt).await?,
            Err(e) => Outcome::Lost("could not start streaming", e),
        };
        match outcome {
            Outcome::Done => return Ok(()),
            Outcome::Lost(what, e) => {
                let wait = retry(what, e, &mut attempt)?;
                if signals.sleep_or_stop(wait).await {
                    return Ok(());
                }
            }
        }
    }
}

enum Outcome {
    Done,
    /// The connection was lost (what was happening, why).
    Lost(&'static str, Error),
}

/// Where the output goes and how. `recv` runs on a current-thread runtime, and a write blocked on a stalled
/// reader must not stop the status updates (that would trip `wal_sender_timeout`): so only writes that cannot
/// block for long (a regular file, /dev/null) are made from the runtime thread; a pipe gets its own
/// non-blocking file description whose writes are awaited; anything else (a socket, a terminal) is written
/// from a thread.
struct Output {
    path: String,
    file: Option<Arc<File>>,
    writer: Writer,
    buf: Vec<u8>,
    sink: Sink,
}

enum Sink {
    /// `file` (or stdout when `None`), written in place.
    Direct,
    /// The same pipe, opened again with `O_NONBLOCK` (a new file description: the one we inherited, which
    /// other processes may share, stays blocking).
    Pipe(tokio::net::unix::pipe::Sender),
    /// `file` (or stdout), written from a thread.
    Thread(Background),
}

/// A thread that performs the writes that may block, one buffer at a time; the consumer awaits each.
struct Background {
    jobs: std::sync::mpsc::Sender<Job>,
}

struct Job {
    buf: Vec<u8>,
    file: Option<Arc<File>>,
    done: tokio::sync::oneshot::Sender<(Vec<u8>, io::Result<()>)>,
}

impl Background {
    fn start() -> Result<Background, Error> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pgrepl-output".into())
            .spawn(move || {
                for job in rx {
                    let r = write_all(job.file.as_deref(), &job.buf);
                    let _ = job.done.send((job.buf, r));
                }
            })
            .map_err(|e| Error::io("could not start the output thread", e))?;
        Ok(Background { jobs })
    }

    async fn write(&self, buf: Vec<u8>, file: Option<Arc<File>>) -> (Vec<u8>, io::Result<()>) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if let Err(std::sync::mpsc::SendError(job)) = self.jobs.send(Job { buf, file, done }) {
            return (job.buf, Err(io::Error::other("the output thread is gone")));
        }
        match wait.await {
            Ok(r) => r,
            Err(_) => (Vec::new(), Err(io::Error::other("the output thread is gone"))),
        }
    }
}

fn write_all(file: Option<&File>, buf: &[u8]) -> io::Result<()> {
    match file {
        Some(mut f) => f.write_all(buf),
        None => {
            let mut so = io::stdout().lock();
            so.write_all(buf).and_then(|_| so.flush())
        }
    }
}

/// How to write to a file of this kind.
fn sink_for(md: &std::fs::Metadata, path: &std::path::Path) -> Result<Sink, Error> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let t = md.file_type();
    let dev_null = || {
        std::fs::metadata("/dev/null").is_ok_and(|null| null.file_type().is_char_device() && null.rdev() == md.rdev())
    };
    if t.is_file() || (t.is_char_device() && dev_null()) {
        return Ok(Sink::Direct);
    }
    if t.is_fifo() {
        if let Ok(p) = tokio::net::unix::pipe::OpenOptions::new().open_sender(path) {
            return Ok(Sink::Pipe(p));
        }
    }
    Ok(Sink::Thread(Background::start()?))
}

impl Output {
    fn open(path: &str, format: OutputFormat) -> Result<Output, Error> {
        let mut o = Output {
            path: path.to_string(),
            file: None,
            writer: Writer::new(format),
            buf: Vec::with_capacity(1 << 20),
            sink: Sink::Direct,
        };
        o.reopen()?;
        Ok(o)
    }

    fn reopen(&mut self) -> Result<(), Error> {
        let (md, path) = if self.path != "-" {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| Error::io(format!("could not open log file \"{}\"", self.path), e))?;
            let md = f.metadata();
            self.file = Some(Arc::new(f));
            (md, std::path::PathBuf::from(&self.path))
        } else {
            use std::os::fd::AsFd;
            let md = io::stdout().as_fd().try_clone_to_owned().map(File::from).and_then(|f| f.metadata());
            (md, std::path::PathBuf::from("/proc/self/fd/1"))
        };
        self.sink = match md {
            Ok(md) => sink_for(&md, &path)?,
            Err(_) => Sink::Thread(Background::start()?),
        };
        Ok(())
    }

    async fn write_out(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = match &mut self.sink {
            Sink::Direct => write_all(self.file.as_deref(), &self.buf),
            Sink::Pipe(p) => {
                use tokio::io::AsyncWriteExt;
                p.write_all(&self.buf).await
            }
            Sink::Thread(bg) => {
                let (buf, r) = bg.write(std::mem::take(&mut self.buf), self.file.clone()).await;
                self.buf = buf;
                r
            }
        };
        r.map_err(|e| Error::io(format!("could not write to file \"{}\"", self.path), e))?;
        self.buf.clear();
        Ok(())
    }

    fn fsync(&mut self) -> Result<(), Error> {
        if let Some(f) = &self.file {
            match f.sync_all() {
                Ok(()) => {}
                // a pipe or similar cannot be fsynced, as pg_recvlogical accepts
                Err(e) if e.raw_os_error() == Some(22) => {}
                Err(e) => return Err(Error::io(format!("could not fsync file \"{}\"", self.path), e)),
            }
        }
        Ok(())
    }
}

async fn consume(
    a: &RecvArgs,
    mut stream: ReplicationStream,
    out: &mut Output,
    signals: &mut crate::signals::Signals,
    resume: &mut Lsn,
    attempt: &mut u32,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let (mut msgs, mut bytes) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    let mut last_fsync = Instant::now();
    // written but not yet fsynced
    let mut pending = Lsn::INVALID;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = tick.tick() => {
                // Idle: fsync and acknowledge what was written once the interval has passed.
                if pending > stream.acked() && (a.fsync_interval.is_zero() || last_fsync.elapsed() >= a.fsync_interval) {
                    out.fsync()?;
                    last_fsync = Instant::now();
                    stream.ack(pending);
                    *resume = (*resume).max(pending);
                }
                if a.verbose && last_progress.elapsed() >= Duration::from_secs(5) {
                    last_progress = Instant::now();
                    progress(started, msgs, bytes, pending, stream.server_wal_end());
                }
                continue;
            }
            s = signals.recv() => match s {
                crate::signals::Signal::Stop => {
                    out.write_out().await?;
                    out.fsync()?;
                    if !pending.is_invalid() {
                        stream.ack(pending);
                    }
                    let c = stream.stop().await?;
                    c.close().await?;
                    return Ok(Outcome::Done);
                }
                crate::signals::Signal::Reopen => {
                    out.write_out().await?;
                    out.fsync()?;
                    out.reopen()?;
                    continue;
                }
            },
        };
        let msg = match next {
            Ok(Some(m)) => m,
            Ok(None) => {
                // end position reached (or the server ended the stream): make the output durable, then the final
                // status update confirms it
                out.write_out().await?;
                out.fsync()?;
                if !pending.is_invalid() {
                    stream.ack(pending);
                }
                stream.stop().await?.close().await?;
                if a.verbose {
                    eprintln!("pgrepl recv: end position reached or stream ended; {msgs} messages, {bytes} bytes");
                }
                return Ok(Outcome::Done);
            }
            Err(e) => {
                out.write_out().await?;
                out.fsync()?;
                // everything written is now durable: resume after it
                *resume = (*resume).max(pending);
                if e.is_retryable() {
                    return Ok(Outcome::Lost("disconnected", e));
                }
                return Err(e);
            }
        };
        *attempt = 0;
        let mut last = msg.wal_start;
        msgs += 1;
        bytes += msg.data.len() as u64;
        out.writer.write(&msg.data, &mut out.buf)?;
        // Drain whatever else is already buffered before writing, to batch syscalls.
        while let Some(m) = stream.try_next() {
            let m = m?;
            msgs += 1;
            bytes += m.data.len() as u64;
            out.writer.write(&m.data, &mut out.buf)?;
            if !m.wal_start.is_invalid() {
                last = last.max(m.wal_start);
            }
            if out.buf.len() > (1 << 20) {
                break;
            }
        }
        out.write_out().await?;
        if !last.is_invalid() {
            pending = pending.max(last);
        }
        let fsync_due = a.fsync_interval.is_zero() || last_fsync.elapsed() >= a.fsync_interval;
        if fsync_due && !pending.is_invalid() {
            if !a.fsync_interval.is_zero() {
                out.fsync()?;
                last_fsync = Instant::now();
            }
            // Acknowledge only what is written (and fsynced when -F is not 0).
            stream.ack(pending);
            *resume = (*resume).max(pending);
        }
        if a.verbose && last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            progress(started, msgs, bytes, pending, stream.server_wal_end());
        }
    }
}

fn progress(started: Instant, msgs: u64, bytes: u64, at: Lsn, server_end: Lsn) {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let lag = server_end.0.saturating_sub(at.0);
    eprintln!(
        "pgrepl recv: {msgs} messages, {:.1} MB, {:.0} msg/s, {:.1} MB/s, written up to {at}, server at {server_end} (lag {lag} bytes)",
        bytes as f64 / 1e6,
        msgs as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}
