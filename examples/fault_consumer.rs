//! A consumer built on [`ChangeStream`] that never loses a change: each committed transaction is appended to a
//! store file and fsynced *before* it is acknowledged, and a restarted consumer resumes from the last commit LSN
//! in its store.
//!
//! ```text
//! cargo run --example fault_consumer -- 'host=127.0.0.1 port=5432 user=postgres dbname=postgres' my_slot DIR [PLUGIN]
//! ```
//!
//! PLUGIN is the slot's output plugin: `wal2json` (the default) or `test_decoding`; the consumer is the same
//! code for both (`ChangeStream<P>`).
//!
//! `DIR/store` gets one line per committed transaction: `<commit LSN> <xid> <rows>`, where `<rows>` lists the
//! `seq:k` values of the rows inserted into table `w` (`-` when there are none). A line that a kill cut short
//! (no final newline) is removed on start. `DIR/events` gets one line per [`StreamEvent`] (reconnects, replays
//! dropped, slot ahead) and per start.
//!
//! The fault-injection suite (`tests/fault_injection.rs`) runs this program as a child process and steers it
//! with files in `DIR` (each is removed when acted on):
//! - `stall`: sleep 5 s before handling the next payload (often mid-transaction), writing `stalling` meanwhile;
//! - `hold_before_ack` / `hold_after_ack`: after storing the next transaction, write `held` (`before|after
//!   <LSN>`) and wait to be killed, before or after acknowledging it;
//! - `stop`: stop cleanly (final status update with the acknowledged position) and exit 0.
//!
//! The program also exits when its parent process goes away.

use std::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgrepl::changes::{ChangeStream, ChangeStreamConfig, StreamEvent};
use pgrepl::plugin::{Decoding, TestDecoding, Wal2json};
use pgrepl::wal2json::Event;
use pgrepl::Lsn;

/// Where to connect and where the store and control files are.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Connection string (`replication=database` is added).
    pub conninfo: String,
    /// Slot name (must exist).
    pub slot: String,
    /// Store, events log and control files.
    pub dir: PathBuf,
    /// The slot's output plugin: `wal2json` or `test_decoding`.
    pub plugin: String,
}

#[allow(dead_code)] // the test binary includes this file as a module and calls `run`
fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (conninfo, slot, dir, plugin) = match args.as_slice() {
        [c, s, d] => (c, s, d, "wal2json"),
        [c, s, d, p] => (c, s, d, p.as_str()),
        _ => return Err("usage: fault_consumer CONNINFO SLOT DIR [wal2json|test_decoding]".into()),
    };
    run(Opts { conninfo: conninfo.clone(), slot: slot.clone(), dir: dir.into(), plugin: plugin.into() })
}

/// Run the consumer until `DIR/stop` appears or the parent process exits.
pub fn run(opts: Opts) -> Result<(), Box<dyn Error>> {
    // One thread: the stream's background task runs whenever the consumer awaits, and the consumer's stall is an
    // await (slow downstream I/O), so status updates keep going out while it stalls.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match opts.plugin.as_str() {
        "wal2json" => rt.block_on(consume(opts, Wal2json)),
        "test_decoding" => rt.block_on(consume(opts, TestDecoding)),
        other => Err(format!("unknown plugin {other:?} (wal2json or test_decoding)").into()),
    }
}

/// The store's last commit LSN (0/0 when empty) and its number of transactions; a torn last line is removed.
pub fn recover_store(path: &Path) -> Result<(Lsn, usize), Box<dyn Error>> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_string(&mut text)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Lsn::INVALID, 0)),
        Err(e) => return Err(e.into()),
    }
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(whole as u64)?;
        f.sync_all()?;
    }
    let mut last = Lsn::INVALID;
    let mut n = 0;
    for line in text.get(..whole).unwrap_or_default().lines() {
        let lsn = line.split(' ').next().ok_or("empty store line")?;
        last = Lsn::parse(lsn)?;
        n += 1;
    }
    Ok((last, n))
}

fn describe(e: &StreamEvent) -> String {
    let kind = match e {
        StreamEvent::Started { .. } => "started",
        StreamEvent::Disconnected { .. } => "disconnected",
        StreamEvent::Retrying { .. } => "retrying",
        StreamEvent::SlotAhead { .. } => "slot_ahead",
        StreamEvent::ReplayDropped { .. } => "replay_dropped",
        StreamEvent::SlotCreated { .. } => "slot_created",
        StreamEvent::HeartbeatFailed { .. } => "heartbeat_failed",
        _ => "other",
    };
    format!("{kind} {e:?}").replace('\n', " ")
}

/// Takes a control file: true if it existed (it is removed).
fn take(dir: &Path, name: &str) -> bool {
    fs::remove_file(dir.join(name)).is_ok()
}

/// Resolves when `DIR/stop` appears (`true`) or the parent process is gone (`false`).
async fn stop_requested(dir: &Path, parent: u32) -> bool {
    loop {
        if take(dir, "stop") {
            return true;
        }
        if std::os::unix::process::parent_id() != parent {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Write `DIR/held` and wait to be killed (or for the parent to go away).
async fn hold(dir: &Path, parent: u32, what: &str, lsn: Lsn) -> Result<(), Box<dyn Error>> {
    fs::write(dir.join("held.tmp"), format!("{what} {lsn}"))?;
    fs::rename(dir.join("held.tmp"), dir.join("held"))?;
    for _ in 0..1200 {
        if std::os::unix::process::parent_id() != parent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("held {what} {lsn} and was not killed").into())
}

async fn consume<P: Decoding>(o: Opts, plugin: P) -> Result<(), Box<dyn Error>> {
    let parent = std::os::unix::process::parent_id();
    let store_path = o.dir.join("store");
    let (stored, n) = recover_store(&store_path)?;
    let mut store = OpenOptions::new().append(true).create(true).open(&store_path)?;
    let events = Arc::new(Mutex::new(OpenOptions::new().append(true).create(true).open(o.dir.join("events"))?));
    writeln!(events.lock().map_err(|_| "poisoned")?, "process {} stored {stored} count {n}", std::process::id())?;

    let ev = events.clone();
    let mut cfg = ChangeStreamConfig::with_plugin(&o.conninfo, &o.slot, plugin)?.start(stored).on_event(move |e| {
        if let Ok(mut f) = ev.lock() {
            let _ = writeln!(f, "{}", describe(e));
        }
    });
    // a small buffer, so that a stall fills it and the stream has to stop reading the socket
    cfg.stream.buffer_messages = 256;
    // heartbeats interleave with the faults: never stored, and never confirmed past an unacknowledged commit
    cfg = cfg.heartbeat(Duration::from_millis(700));
    cfg.reconnect.initial = Duration::from_millis(100);
    cfg.reconnect.max = Duration::from_secs(2);
    let mut s = ChangeStream::connect(cfg).await?;

    let mut rows: Vec<String> = Vec::new();
    let mut xid: Option<u64> = None;
    let mut last = stored;
    loop {
        let next = tokio::select! {
            r = s.next() => r?,
            clean = stop_requested(&o.dir, parent) => {
                if !clean {
                    return Err("parent process gone".into());
                }
                break;
            }
        };
        let Some(mut p) = next else { break };
        if take(&o.dir, "stall") {
            fs::write(o.dir.join("stalling"), "")?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            fs::remove_file(o.dir.join("stalling"))?;
        }
        for ev in p.events()? {
            match ev? {
                Event::Begin(t) => {
                    // a transaction starts (again, after a reconnect cut the previous attempt short)
                    rows.clear();
                    xid = t.xid;
                }
                Event::Insert(r) if r.table == "w" => {
                    let v = |name: &str| r.column(name).and_then(|c| c.value.as_i64());
                    match (v("seq"), v("k")) {
                        (Some(seq), Some(k)) => rows.push(format!("{seq}:{k}")),
                        _ => return Err(format!("row without seq/k: {:?}", r.columns).into()),
                    }
                }
                _ => {}
            }
        }
        if p.ends_transaction() {
            let lsn = p.lsn();
            if lsn <= last {
                return Err(format!("transaction at {lsn} delivered after {last}").into());
            }
            let list = if rows.is_empty() { "-".to_string() } else { rows.join(",") };
            let x = xid.map_or_else(|| "-".to_string(), |x| x.to_string());
            // store durably, then acknowledge
            store.write_all(format!("{lsn} {x} {list}\n").as_bytes())?;
            store.sync_data()?;
            last = lsn;
            rows.clear();
            xid = None;
            if take(&o.dir, "hold_before_ack") {
                hold(&o.dir, parent, "before", lsn).await?;
            }
            p.ack();
            if take(&o.dir, "hold_after_ack") {
                hold(&o.dir, parent, "after", lsn).await?;
            }
        }
    }
    s.stop().await?;
    writeln!(events.lock().map_err(|_| "poisoned")?, "stopped acked {last}")?;
    Ok(())
}
