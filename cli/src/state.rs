//! `recv`'s state file: exactly-once output across the CLI's own crashes.
//!
//! Beside an output file `FILE`, `FILE.pgrepl-state` records the durable pair (the file's length, the LSN) at a
//! transaction boundary: everything in the first `length` bytes of FILE is every transaction up to and including
//! the one that ends at `lsn`, and nothing else (`0/0`: the slot's confirmed position, as a run that has
//! acknowledged nothing yet found it: a run saves its starting point before it writes anything). It is written (atomically: a temporary file renamed over it)
//! before each acknowledgement, so the slot never confirms more than it records. A new run with the same file
//! truncates a torn tail back to `length` and resumes from `lsn`: the server sends again exactly what follows.
//!
//! Format (text, one `key value` per line): `pgrepl-recv-state 1`, `slot`, `output`, `device`, `inode`,
//! `length`, `lsn`. The slot and output format must match the run's; device and inode must be FILE's, so that a
//! file replaced by something else is never truncated.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pgrepl::{Error, ErrorKind, Lsn};

const MAGIC: &str = "pgrepl-recv-state 1";

/// The durable pair: FILE's first `len` bytes hold every transaction up to the one ending at `lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub len: u64,
    pub lsn: Lsn,
}

pub struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    slot: String,
    output: &'static str,
    /// fsync the state file and its directory (when the output is fsynced too, `-F` not 0)
    sync: bool,
    /// FILE's identity (device, inode)
    id: (u64, u64),
    last: Option<Durable>,
}

fn state_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Config,
        format!(
            "state file \"{}\": {msg} (remove it to start over from the slot's confirmed position)",
            path.display()
        ),
    )
}

/// `path` + `suffix`, beside it.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl StateFile {
    /// The state file of the output file `file` (a regular file, or one about to be created), for this slot and
    /// output format. Recovers a previous run's state: truncates `file` to its recorded length and returns the
    /// durable pair; `None` when there is no state yet.
    pub fn recover(
        file: &str,
        slot: &str,
        output: &'static str,
        sync: bool,
    ) -> Result<(StateFile, Option<Durable>), Error> {
        let file = Path::new(file);
        let path = with_suffix(file, ".pgrepl-state");
        let tmp = with_suffix(file, ".pgrepl-state.tmp");
        let mut st = StateFile { path, tmp, slot: slot.to_string(), output, sync, id: (0, 0), last: None };
        let text = match fs::read_to_string(&st.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((st, None)),
            Err(e) => return Err(Error::io(format!("could not read state file \"{}\"", st.path.display()), e)),
        };
        let d = st.parse(&text, file)?;
        st.last = Some(d);
        Ok((st, Some(d)))
    }

    fn parse(&mut self, text: &str, file: &Path) -> Result<Durable, Error> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(state_error(&self.path, format!("not a state file (first line is not \"{MAGIC}\")")));
        }
        let mut get = |key: &str| -> Result<String, Error> {
            match lines.next().and_then(|l| l.split_once(' ')) {
                Some((k, v)) if k == key => Ok(v.to_string()),
                _ => Err(state_error(&self.path, format!("malformed (expected the \"{key}\" line)"))),
            }
        };
        let (slot, output, dev, ino, len, lsn) =
            (get("slot")?, get("output")?, get("device")?, get("inode")?, get("length")?, get("lsn")?);
        let num =
            |what: &str, v: &str| v.parse::<u64>().map_err(|_| state_error(&self.path, format!("bad {what} {v:?}")));
        let (dev, ino, len) = (num("device", &dev)?, num("inode", &ino)?, num("length", &len)?);
        let lsn = Lsn::parse(&lsn).map_err(|_| state_error(&self.path, format!("bad lsn {lsn:?}")))?;
        if slot != self.slot {
            return Err(state_error(&self.path, format!("it belongs to slot \"{slot}\", not \"{}\"", self.slot)));
        }
        if output != self.output {
            return Err(state_error(&self.path, format!("it was written with --output {output}, not {}", self.output)));
        }
        let md = match fs::metadata(file) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && len == 0 => return Ok(Durable { len, lsn }),
            Err(e) => {
                return Err(state_error(&self.path, format!("its output file \"{}\" is gone ({e})", file.display())))
            }
        };
        if (md.dev(), md.ino()) != (dev, ino) {
            return Err(state_error(
                &self.path,
                format!("\"{}\" is not the file it describes (another device or inode)", file.display()),
            ));
        }
        if md.len() < len {
            return Err(state_error(
                &self.path,
                format!(
                    "\"{}\" is shorter ({} bytes) than the {len} bytes recorded: it was truncated or lost writes",
                    file.display(),
                    md.len()
                ),
            ));
        }
        if md.len() > len {
            // a torn tail: what a killed run wrote after its last acknowledgement (sent again by the server)
            let f = OpenOptions::new()
                .write(true)
                .open(file)
                .map_err(|e| Error::io(format!("could not open \"{}\" to truncate it", file.display()), e))?;
            f.set_len(len)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(format!("could not truncate \"{}\" to {len} bytes", file.display()), e))?;
        }
        Ok(Durable { len, lsn })
    }

    /// The output file (re)opened: its identity for the next saves.
    pub fn set_file(&mut self, md: &fs::Metadata) {
        self.id = (md.dev(), md.ino());
    }

    /// The last saved pair.
    pub fn last(&self) -> Option<Durable> {
        self.last
    }

    /// Record `d` (atomically; durably when the output is fsynced). Call only after FILE's first `d.len` bytes
    /// are written (and fsynced), and before acknowledging `d.lsn`.
    pub fn save(&mut self, d: Durable) -> Result<(), Error> {
        if self.last == Some(d) {
            return Ok(());
        }
        let text = format!(
            "{MAGIC}\nslot {}\noutput {}\ndevice {}\ninode {}\nlength {}\nlsn {}\n",
            self.slot, self.output, self.id.0, self.id.1, d.len, d.lsn
        );
        let io = |e| Error::io(format!("could not write state file \"{}\"", self.path.display()), e);
        let mut f = File::create(&self.tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        if self.sync {
            f.sync_all().map_err(io)?;
        }
        drop(f);
        fs::rename(&self.tmp, &self.path).map_err(io)?;
        if self.sync {
            let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.last = Some(d);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(content: &[u8]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.jsonl");
        fs::write(&file, content).unwrap();
        (dir, file.to_str().unwrap().to_string())
    }

    fn save(file: &str, slot: &str, output: &'static str, d: Durable) {
        let _ = fs::remove_file(with_suffix(Path::new(file), ".pgrepl-state"));
        let (mut st, _) = StateFile::recover(file, slot, output, true).unwrap();
        st.set_file(&fs::metadata(file).unwrap());
        st.save(d).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_recorded_boundary() {
        let (_dir, file) = setup(b"{\"action\":\"B\"}\n{\"action\":\"C\"}\n");
        assert!(StateFile::recover(&file, "s", "raw", false).unwrap().1.is_none(), "no state yet");
        let d = Durable { len: 30, lsn: Lsn(0x1234) };
        save(&file, "s", "raw", d);
        // a killed run wrote half a transaction after it
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"{\"action\":\"B\"}\n{\"action\":\"I\"").unwrap();
        let (st, got) = StateFile::recover(&file, "s", "raw", false).unwrap();
        assert_eq!(got, Some(d));
        assert_eq!(st.last(), Some(d));
        assert_eq!(fs::read(&file).unwrap(), b"{\"action\":\"B\"}\n{\"action\":\"C\"}\n");
        // the state file itself: atomic replacement left no temporary behind
        assert!(!with_suffix(Path::new(&file), ".pgrepl-state.tmp").exists());
    }

    #[test]
    fn a_state_that_does_not_describe_the_file_is_refused_and_nothing_is_truncated() {
        let (dir, file) = setup(b"0123456789");
        save(&file, "s", "json", Durable { len: 5, lsn: Lsn(1) });
        for (slot, output, want) in [("t", "json", "belongs to slot"), ("s", "raw", "--output json")] {
            let e = StateFile::recover(&file, slot, output, false).err().unwrap();
            assert!(e.to_string().contains(want), "{e}");
        }
        // replaced by another file (another inode)
        let other = dir.path().join("other");
        fs::write(&other, b"abcdefghij").unwrap();
        fs::rename(&other, &file).unwrap();
        let e = StateFile::recover(&file, "s", "json", false).err().unwrap();
        assert!(e.to_string().contains("not the file it describes"), "{e}");
        assert_eq!(fs::read(&file).unwrap(), b"abcdefghij");
        // shorter than recorded (lost writes)
        save(&file, "s", "json", Durable { len: 10, lsn: Lsn(2) });
        OpenOptions::new().write(true).open(&file).unwrap().set_len(4).unwrap();
        let e = StateFile::recover(&file, "s", "json", false).err().unwrap();
        assert!(e.to_string().contains("shorter"), "{e}");
        // gone
        fs::remove_file(&file).unwrap();
        let e = StateFile::recover(&file, "s", "json", false).err().unwrap();
        assert!(e.to_string().contains("is gone"), "{e}");
        // not a state file
        fs::write(dir.path().join("out.jsonl.pgrepl-state"), "hello\n").unwrap();
        let e = StateFile::recover(&file, "s", "json", false).err().unwrap();
        assert!(e.to_string().contains("not a state file"), "{e}");
    }
}
