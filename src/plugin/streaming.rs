//! pgoutput's streamed transactions (protocol 2+, `streaming on`): which payloads to hold, release, discard.
//!
//! With streaming, the walsender sends a large in-progress transaction in segments as its changes exceed
//! `logical_decoding_work_mem`: Stream Start (`S`, the top-level xid, whether it is the first segment), the
//! segment's messages — Relation, Type, Insert, Update, Delete, Truncate, transactional Message, each with the
//! xid of the (sub)transaction that made it right after the message type — and Stream Stop (`E`). Segments
//! of different transactions interleave with each other and with ordinary transactions (`B` … `C`). The
//! transaction ends with Stream Commit (`c`, xid), Stream Abort (`A`, xid and the aborted subtransaction's
//! xid, equal for the whole transaction; protocol 4 adds the abort LSN and time; PostgreSQL 18 sends it to older
//! protocols too in some cases), or with two-phase, Stream Prepare (`p`).
//!
//! [`StreamedTxns`] routes every payload of a segment, the Start and Stop included, to be held under its
//! top-level xid (and subtransaction), so that the decoder later reads the segments exactly as they came; the
//! commit releases them ([`Route::Release`]): the application gets the transaction contiguously, in commit
//! order, after every transaction that committed before it. An abort discards. A Stream Prepare releases the
//! transaction as prepared (the later Commit Prepared / Rollback Prepared is an ordinary message).
//!
//! Acknowledgement: nothing of a held transaction is ever acknowledged before its commit is delivered (segment
//! payloads are never a transaction boundary for the stream, [`crate::plugin::Boundary::Inside`]), so a
//! restart before then makes the server decode and send it again from its start (its first change is before
//! the slot's `restart_lsn`, which an in-progress transaction holds back) — the held copy is forgotten on
//! reconnect.

use super::{Route, Router};
use crate::error::{Error, Result};

/// pgoutput message types that matter here.
const STREAM_START: u8 = b'S';
const STREAM_STOP: u8 = b'E';
const STREAM_COMMIT: u8 = b'c';
const STREAM_ABORT: u8 = b'A';
const STREAM_PREPARE: u8 = b'p';

/// The [`Router`] of pgoutput's streamed transactions (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct StreamedTxns {
    /// The top-level xid of the segment being received.
    segment: Option<u32>,
}

fn be_u32(payload: &[u8], at: usize, what: &str) -> Result<u32> {
    match payload.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(Error::protocol(format!(
            "pgoutput {what}: message of {} bytes ends before its xid at offset {at}",
            payload.len()
        ))),
    }
}

impl Router for StreamedTxns {
    fn route(&mut self, payload: &[u8]) -> Result<Route> {
        let Some(&kind) = payload.first() else { return Ok(Route::Deliver) };
        if let Some(top) = self.segment {
            return match kind {
                STREAM_STOP => {
                    self.segment = None;
                    Ok(Route::Hold { xid: top, sub: top })
                }
                STREAM_START => Err(Error::protocol(format!(
                    "pgoutput: Stream Start inside the segment of transaction {top} (no Stream Stop)"
                ))),
                b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M' => {
                    let sub = be_u32(payload, 1, "streamed change")?;
                    Ok(Route::Hold { xid: top, sub })
                }
                other => Err(Error::protocol(format!(
                    "pgoutput: message type {:?} inside the streamed segment of transaction {top}",
                    char::from(other)
                ))),
            };
        }
        match kind {
            STREAM_START => {
                let xid = be_u32(payload, 1, "Stream Start")?;
                self.segment = Some(xid);
                Ok(Route::Hold { xid, sub: xid })
            }
            STREAM_STOP => Err(Error::protocol("pgoutput: Stream Stop outside a streamed segment")),
            STREAM_COMMIT => Ok(Route::Release { xid: be_u32(payload, 1, "Stream Commit")? }),
            STREAM_ABORT => {
                let xid = be_u32(payload, 1, "Stream Abort")?;
                let sub = be_u32(payload, 5, "Stream Abort")?;
                Ok(Route::Discard { xid, sub })
            }
            // flags (1), prepare LSN (8), end LSN (8), prepare time (8), then the xid
            STREAM_PREPARE => Ok(Route::Release { xid: be_u32(payload, 26, "Stream Prepare")? }),
            _ => Ok(Route::Deliver),
        }
    }

    fn reset(&mut self) {
        self.segment = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, xid: u32, rest: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&xid.to_be_bytes());
        m.extend_from_slice(rest);
        m
    }

    #[test]
    fn segments_are_held_commit_releases_abort_discards() {
        let mut r = StreamedTxns::default();
        assert_eq!(r.route(b"B........").unwrap(), Route::Deliver);
        assert_eq!(r.route(&msg(b'S', 700, &[1])).unwrap(), Route::Hold { xid: 700, sub: 700 });
        assert_eq!(r.route(&msg(b'R', 700, b"rel")).unwrap(), Route::Hold { xid: 700, sub: 700 });
        assert_eq!(r.route(&msg(b'I', 701, b"ins")).unwrap(), Route::Hold { xid: 700, sub: 701 });
        assert_eq!(r.route(&msg(b'M', 700, b"msg")).unwrap(), Route::Hold { xid: 700, sub: 700 });
        assert_eq!(r.route(b"E").unwrap(), Route::Hold { xid: 700, sub: 700 });
        // an ordinary transaction between segments
        assert_eq!(r.route(b"Bxxxx").unwrap(), Route::Deliver);
        assert_eq!(r.route(b"Ixxxx").unwrap(), Route::Deliver);
        assert_eq!(r.route(b"Cxxxx").unwrap(), Route::Deliver);
        assert_eq!(r.route(&msg(b'S', 800, &[1])).unwrap(), Route::Hold { xid: 800, sub: 800 });
        assert_eq!(r.route(b"E").unwrap(), Route::Hold { xid: 800, sub: 800 });
        let mut abort = msg(b'A', 700, &701u32.to_be_bytes());
        assert_eq!(r.route(&abort).unwrap(), Route::Discard { xid: 700, sub: 701 });
        abort.extend_from_slice(&[0; 16]); // protocol 4: abort LSN and time
        assert_eq!(r.route(&abort).unwrap(), Route::Discard { xid: 700, sub: 701 });
        assert_eq!(r.route(&msg(b'c', 700, &[0; 25])).unwrap(), Route::Release { xid: 700 });
        let mut prepare = vec![b'p', 0];
        prepare.extend_from_slice(&[0; 24]);
        prepare.extend_from_slice(&800u32.to_be_bytes());
        prepare.extend_from_slice(b"gid\0");
        assert_eq!(r.route(&prepare).unwrap(), Route::Release { xid: 800 });
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        let mut r = StreamedTxns::default();
        assert!(r.route(b"E").is_err());
        assert!(r.route(b"S\0\0").is_err());
        assert!(r.route(b"c\0").is_err());
        assert!(r.route(b"A\0\0\0\x01\0").is_err());
        assert!(r.route(b"p\0").is_err());
        r.route(&msg(b'S', 1, &[1])).unwrap();
        assert!(r.route(&msg(b'S', 2, &[1])).is_err());
        assert!(r.route(b"I\0").is_err());
        assert!(r.route(b"B").is_err());
        r.reset();
        assert_eq!(r.route(b"B").unwrap(), Route::Deliver);
        assert_eq!(r.route(b"").unwrap(), Route::Deliver);
        // every prefix of every message: a route or an error
        for m in [msg(b'S', 9, &[1]), msg(b'c', 9, &[0; 25]), msg(b'A', 9, &[0; 4])] {
            for n in 0..=m.len() {
                let _ = StreamedTxns::default().route(&m[..n]);
            }
        }
    }
}
