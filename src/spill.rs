//! Held payloads of transactions that are not complete yet, in bounded memory.
//!
//! With pgoutput's `streaming on` (PostgreSQL 14+) the server sends a large transaction in segments before it
//! commits, interleaved with other transactions, and may then abort it, or abort some of its subtransactions.
//! A consumer that delivers only committed transactions, each contiguous and in commit order, must hold each
//! segment's payloads until the transaction's end: [`Spill`] holds them per transaction, in memory up to a
//! budget shared by all held transactions, and beyond it in an unlinked temporary file per transaction (so a
//! crash leaves nothing behind). A subtransaction's abort truncates its transaction back to the subtransaction's
//! first payload, as PostgreSQL's own apply worker does with its spool files (`worker.c`,
//! `subxact_info_add` / `apply_handle_stream_abort`): subtransactions that started after it in the stream are
//! its descendants, so they go too.
//!
//! What is held is the payload and its positions ([`Held`]); the plugin's decoder reads the payloads again when
//! the transaction is released, in the order they came. Memory: the held bytes in memory never pass the budget
//! (plus one payload); a spilled transaction keeps only its file handle, its size and its subtransaction marks.
//!
//! Blocking file I/O (std::fs, sequential, mostly in the page cache): the amounts are a budget's worth at a time.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::lsn::Lsn;

/// One held payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its XLogData `wal_start`.
    pub wal_start: Lsn,
    /// Its XLogData `wal_end`.
    pub wal_end: Lsn,
    /// The payload.
    pub data: Bytes,
}

/// Bytes of a record's header in a spill file: length (u32), wal_start, wal_end (u64 each), little-endian.
const RECORD_HEADER: usize = 20;

/// Largest payload a spill file record can hold (the server's messages are at most 1 GB).
const MAX_RECORD: usize = u32::MAX as usize;

/// Where the held payloads of one transaction are.
#[derive(Debug, Default)]
struct Txn {
    /// In memory, in order (empty once spilled).
    mem: Vec<Held>,
    /// Bytes of `mem`'s payloads (plus a record header each, the accounting unit).
    mem_bytes: usize,
    /// The spill file, once the transaction outgrew its share of the budget; every payload is in it then.
    file: Option<BufWriter<File>>,
    /// Bytes written to `file`.
    file_len: u64,
    /// Payloads held in all.
    count: u64,
    /// Subtransactions in the order of their first payload: (xid, count before it, file length before it).
    subs: Vec<(u32, u64, u64)>,
}

/// Held payloads of incomplete transactions, by top-level xid.
#[derive(Debug)]
pub struct Spill {
    budget: usize,
    mem_total: usize,
    dir: PathBuf,
    txns: HashMap<u32, Txn>,
    spilled_files: u64,
    spilled_bytes: u64,
}

static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn spill_error(what: &str, e: io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("spill file: {what}: {e}"))
}

impl Spill {
    /// Holds up to `budget` bytes in memory across all transactions; beyond it, files in `dir`.
    pub fn new(budget: usize, dir: PathBuf) -> Spill {
        Spill { budget, mem_total: 0, dir, txns: HashMap::new(), spilled_files: 0, spilled_bytes: 0 }
    }

    /// Bytes held in memory now.
    pub fn memory(&self) -> usize {
        self.mem_total
    }

    /// Transactions held now.
    pub fn transactions(&self) -> usize {
        self.txns.len()
    }

    /// Spill files created and bytes written to them so far.
    pub fn spilled(&self) -> (u64, u64) {
        (self.spilled_files, self.spilled_bytes)
    }

    /// Whether `xid` has held payloads (or was begun).
    pub fn holds(&self, xid: u32) -> bool {
        self.txns.contains_key(&xid)
    }

    /// Hold `p` for top-level transaction `xid`, from its subtransaction `sub` (`sub == xid` for the top level).
    pub fn hold(&mut self, xid: u32, sub: u32, p: Held) -> Result<()> {
        if p.data.len() > MAX_RECORD {
            return Err(Error::protocol(format!("a held payload of {} bytes is too large", p.data.len())));
        }
        let cost = p.data.len() + RECORD_HEADER;
        let over = self.mem_total + cost > self.budget;
        let dir = self.dir.clone();
        let txn = self.txns.entry(xid).or_default();
        if sub != xid && !txn.subs.iter().any(|&(s, _, _)| s == sub) {
            txn.subs.push((sub, txn.count, txn.file_len));
        }
        txn.count += 1;
        if txn.file.is_none() && over {
            // this transaction goes to a file, with what it has in memory
            let file = create_file(&dir)?;
            self.spilled_files += 1;
            let mut w = BufWriter::with_capacity(64 * 1024, file);
            // the marks were counted in memory; their file offsets follow from the records written
            let mut offsets = Vec::with_capacity(txn.mem.len() + 1);
            let mut len = 0u64;
            for h in &txn.mem {
                offsets.push(len);
                write_record(&mut w, h)?;
                len += (RECORD_HEADER + h.data.len()) as u64;
            }
            offsets.push(len);
            for m in &mut txn.subs {
                m.2 = usize::try_from(m.1).ok().and_then(|i| offsets.get(i).copied()).unwrap_or(len);
            }
            self.mem_total -= txn.mem_bytes;
            self.spilled_bytes += len;
            txn.mem = Vec::new();
            txn.mem_bytes = 0;
            txn.file_len = len;
            txn.file = Some(w);
        }
        match &mut txn.file {
            Some(w) => {
                write_record(w, &p)?;
                let n = (RECORD_HEADER + p.data.len()) as u64;
                txn.file_len += n;
                self.spilled_bytes += n;
            }
            None => {
                txn.mem_bytes += cost;
                self.mem_total += cost;
                txn.mem.push(p);
            }
        }
        Ok(())
    }

    /// Forget subtransaction `sub` of `xid` and everything held after its first payload (its descendants).
    /// `sub == xid`: the whole transaction. Unknown ids: nothing to do (a subtransaction that held nothing).
    pub fn abort(&mut self, xid: u32, sub: u32) -> Result<()> {
        if sub == xid {
            if let Some(t) = self.txns.remove(&xid) {
                self.mem_total -= t.mem_bytes;
            }
            return Ok(());
        }
        let Some(txn) = self.txns.get_mut(&xid) else { return Ok(()) };
        let Some(i) = txn.subs.iter().position(|&(s, _, _)| s == sub) else { return Ok(()) };
        let Some(&(_, count, file_len)) = txn.subs.get(i) else { return Ok(()) };
        txn.subs.truncate(i);
        txn.count = count;
        match &mut txn.file {
            Some(w) => {
                w.flush().map_err(|e| spill_error("flush", e))?;
                w.get_ref().set_len(file_len).map_err(|e| spill_error("truncate", e))?;
                w.get_mut().seek(SeekFrom::Start(file_len)).map_err(|e| spill_error("seek", e))?;
                txn.file_len = file_len;
            }
            None => {
                let keep = usize::try_from(count).unwrap_or(usize::MAX).min(txn.mem.len());
                let freed: usize = txn.mem.drain(keep..).map(|h| h.data.len() + RECORD_HEADER).sum();
                txn.mem_bytes -= freed;
                self.mem_total -= freed;
            }
        }
        Ok(())
    }

    /// Take transaction `xid`'s held payloads, in the order they were held (nothing held: empty).
    pub fn release(&mut self, xid: u32) -> Result<Released> {
        let Some(t) = self.txns.remove(&xid) else { return Ok(Released::empty()) };
        self.mem_total -= t.mem_bytes;
        let file = match t.file {
            Some(w) => {
                let mut f = w.into_inner().map_err(|e| spill_error("flush", e.into_error()))?;
                f.seek(SeekFrom::Start(0)).map_err(|e| spill_error("seek", e))?;
                Some(BufReader::with_capacity(64 * 1024, f).take(t.file_len))
            }
            None => None,
        };
        Ok(Released { mem: t.mem.into_iter(), file, left: t.count })
    }

    /// Forget everything held (after a reconnect: the server sends the open transactions again).
    pub fn clear(&mut self) {
        self.txns.clear();
        self.mem_total = 0;
    }
}

/// A released transaction's payloads, read back in order (from memory, or one record at a time from its file).
#[derive(Debug)]
pub struct Released {
    mem: std::vec::IntoIter<Held>,
    file: Option<io::Take<BufReader<File>>>,
    left: u64,
}

impl Released {
    fn empty() -> Released {
        Released { mem: Vec::new().into_iter(), file: None, left: 0 }
    }

    /// Payloads not yet read.
    pub fn remaining(&self) -> u64 {
        self.left
    }
}

impl Iterator for Released {
    type Item = Result<Held>;

    fn next(&mut self) -> Option<Result<Held>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if let Some(h) = self.mem.next() {
            return Some(Ok(h));
        }
        let f = self.file.as_mut()?;
        Some(read_record(f))
    }
}

fn create_file(dir: &std::path::Path) -> Result<File> {
    let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("pgrepl-spill-{}-{}", std::process::id(), n));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| spill_error(&format!("create {}", path.display()), e))?;
    // unlinked at once: the open handle keeps it, and nothing is left behind by a crash
    std::fs::remove_file(&path).map_err(|e| spill_error(&format!("unlink {}", path.display()), e))?;
    Ok(f)
}

fn write_record(w: &mut impl Write, h: &Held) -> Result<()> {
    let len = u32::try_from(h.data.len()).map_err(|_| Error::protocol("held payload too large"))?;
    let mut head = [0u8; RECORD_HEADER];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..12].copy_from_slice(&h.wal_start.0.to_le_bytes());
    head[12..].copy_from_slice(&h.wal_end.0.to_le_bytes());
    w.write_all(&head).and_then(|()| w.write_all(&h.data)).map_err(|e| spill_error("write", e))
}

fn read_record(r: &mut impl Read) -> Result<Held> {
    let mut head = [0u8; RECORD_HEADER];
    r.read_exact(&mut head).map_err(|e| spill_error("read", e))?;
    let [l0, l1, l2, l3, s0, s1, s2, s3, s4, s5, s6, s7, e0, e1, e2, e3, e4, e5, e6, e7] = head;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).map_err(|e| spill_error("read", e))?;
    Ok(Held {
        wal_start: Lsn(u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7])),
        wal_end: Lsn(u64::from_le_bytes([e0, e1, e2, e3, e4, e5, e6, e7])),
        data: Bytes::from(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn held(i: u64, len: usize) -> Held {
        Held { wal_start: Lsn(i), wal_end: Lsn(i + 1), data: Bytes::from(vec![(i % 251) as u8; len]) }
    }

    fn all(s: &mut Spill, xid: u32) -> Vec<Held> {
        s.release(xid).unwrap().map(|r| r.unwrap()).collect()
    }

    fn dir() -> PathBuf {
        std::env::temp_dir()
    }

    #[test]
    fn in_memory_round_trip_in_order() {
        let mut s = Spill::new(1 << 20, dir());
        for i in 0..10 {
            s.hold(7, 7, held(i, 10)).unwrap();
            s.hold(8, 8, held(100 + i, 5)).unwrap();
        }
        assert_eq!(s.transactions(), 2);
        assert_eq!(s.spilled(), (0, 0));
        let got = all(&mut s, 7);
        assert_eq!(got, (0..10).map(|i| held(i, 10)).collect::<Vec<_>>());
        assert_eq!(s.transactions(), 1);
        assert_eq!(s.memory(), 10 * (5 + RECORD_HEADER));
        s.abort(8, 8).unwrap();
        assert_eq!(s.memory(), 0);
        assert_eq!(s.transactions(), 0);
        assert_eq!(all(&mut s, 99), vec![]);
    }

    #[test]
    fn over_budget_spills_to_a_file_and_reads_back() {
        let mut s = Spill::new(1000, dir());
        let want: Vec<Held> = (0..500).map(|i| held(i, 100)).collect();
        for h in &want {
            s.hold(1, 1, h.clone()).unwrap();
            assert!(s.memory() <= 1000);
        }
        assert_eq!(s.spilled().0, 1);
        assert_eq!(s.memory(), 0);
        assert_eq!(all(&mut s, 1), want);
    }

    #[test]
    fn subtransaction_abort_truncates_from_its_first_payload() {
        for budget in [1 << 20, 300] {
            let mut s = Spill::new(budget, dir());
            s.hold(1, 1, held(0, 50)).unwrap();
            s.hold(1, 2, held(1, 50)).unwrap(); // sub 2 begins
            s.hold(1, 1, held(2, 50)).unwrap(); // (cannot follow a live child in practice; kept as held)
            s.hold(1, 3, held(3, 50)).unwrap(); // sub 3, a descendant of 2
            s.hold(1, 4, held(4, 50)).unwrap();
            s.abort(1, 3).unwrap();
            assert_eq!(all(&mut s, 1), vec![held(0, 50), held(1, 50), held(2, 50)], "budget {budget}");

            let mut s = Spill::new(budget, dir());
            s.hold(1, 1, held(0, 50)).unwrap();
            s.hold(1, 2, held(1, 50)).unwrap();
            s.hold(1, 3, held(2, 50)).unwrap();
            s.abort(1, 2).unwrap();
            s.abort(1, 9).unwrap(); // held nothing: nothing to do
            s.hold(1, 5, held(3, 50)).unwrap();
            assert_eq!(all(&mut s, 1), vec![held(0, 50), held(3, 50)], "budget {budget}");
        }
    }

    #[test]
    fn marks_made_in_memory_survive_the_spill() {
        let mut s = Spill::new(400, dir());
        s.hold(1, 1, held(0, 100)).unwrap();
        s.hold(1, 2, held(1, 100)).unwrap(); // mark in memory
        s.hold(1, 2, held(2, 100)).unwrap();
        s.hold(1, 3, held(3, 100)).unwrap(); // over budget: spilled
        assert_eq!(s.spilled().0, 1);
        s.abort(1, 2).unwrap();
        s.hold(1, 1, held(4, 100)).unwrap();
        assert_eq!(all(&mut s, 1), vec![held(0, 100), held(4, 100)]);
    }

    type Model = HashMap<u32, (Vec<Held>, Vec<(u32, usize)>)>;

    proptest! {
        /// Against a model: any sequence of holds and aborts over a few transactions and subtransactions, with
        /// any budget, releases exactly what the model keeps.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u8..10, 1u32..4, 0u32..4, 0usize..300), 1..120),
                           budget in 0usize..3000) {
            let mut s = Spill::new(budget, dir());
            let mut model: Model = HashMap::new();
            for (i, (op, xid, sub, len)) in ops.into_iter().enumerate() {
                let sub = if sub == 0 { xid } else { 100 * xid + sub };
                match op {
                    0 => {
                        s.abort(xid, sub).unwrap();
                        if sub == xid { model.remove(&xid); } else if let Some((v, subs)) = model.get_mut(&xid) {
                            if let Some(j) = subs.iter().position(|&(x, _)| x == sub) {
                                v.truncate(subs[j].1);
                                subs.truncate(j);
                            }
                        }
                    }
                    1 => {
                        let got = all(&mut s, xid);
                        let want = model.remove(&xid).map(|m| m.0).unwrap_or_default();
                        prop_assert_eq!(got, want);
                    }
                    _ => {
                        let h = held(i as u64, len);
                        s.hold(xid, sub, h.clone()).unwrap();
                        let (v, subs) = model.entry(xid).or_default();
                        if sub != xid && !subs.iter().any(|&(x, _)| x == sub) { subs.push((sub, v.len())); }
                        v.push(h);
                    }
                }
                prop_assert!(s.memory() <= budget.max(300 + RECORD_HEADER));
            }
            for (xid, (want, _)) in model {
                prop_assert_eq!(all(&mut s, xid), want);
            }
        }
    }
}
