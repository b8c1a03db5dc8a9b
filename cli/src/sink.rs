//! Where `recv`'s output goes: a regular file, stdout, a pipe, or anything else, written without blocking the
//! status updates.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Arc;

use pgrepl::Error;

use crate::output::{OutputFormat, Writer};

/// Where the output goes and how. `recv` runs on a current-thread runtime, and a write blocked on a stalled
/// reader must not stop the status updates (that would trip `wal_sender_timeout`): so only writes that cannot
/// block for long (a regular file, /dev/null) are made from the runtime thread; a pipe gets its own
/// non-blocking file description whose writes are awaited; anything else (a socket, a terminal) is written
/// from a thread.
pub struct Output {
    path: String,
    file: Option<Arc<File>>,
    pub writer: Writer,
    pub buf: Vec<u8>,
    sink: Sink,
    /// The output file's length as far as this process knows it (what it found at open, plus what it wrote);
    /// its metadata at the last open. Both `None` for stdout.
    len: u64,
    md: Option<std::fs::Metadata>,
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
    pub fn open(path: &str, format: OutputFormat) -> Result<Output, Error> {
        let mut o = Output {
            path: path.to_string(),
            file: None,
            writer: Writer::new(format),
            buf: Vec::with_capacity(1 << 20),
            sink: Sink::Direct,
            len: 0,
            md: None,
        };
        o.reopen()?;
        Ok(o)
    }

    /// (Re)open the output (SIGHUP: a rotated log file is created anew).
    pub fn reopen(&mut self) -> Result<(), Error> {
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
        self.sink = match &md {
            Ok(md) => sink_for(md, &path)?,
            Err(_) => Sink::Thread(Background::start()?),
        };
        self.md = md.ok().filter(|_| self.path != "-");
        self.len = self.md.as_ref().map_or(0, |m| m.len());
        Ok(())
    }

    /// The output file's metadata at its last open, when it is a regular file (not stdout, a pipe or a device):
    /// the kind of output a state file can describe ([`crate::state`]).
    pub fn regular_file(&self) -> Option<&std::fs::Metadata> {
        self.md.as_ref().filter(|m| m.file_type().is_file())
    }

    /// The output's length once the buffer is written out.
    pub fn len_after_buffer(&self) -> u64 {
        self.len + self.buf.len() as u64
    }

    /// Write the buffer out.
    pub async fn write_out(&mut self) -> Result<(), Error> {
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
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    pub fn fsync(&mut self) -> Result<(), Error> {
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
