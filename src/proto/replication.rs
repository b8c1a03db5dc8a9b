//! CopyData payloads of the streaming replication protocol: XLogData (`w`), primary keepalive (`k`) and the
//! standby status update (`r`). Timestamps are microseconds since 2000-01-01 00:00:00 UTC (the PostgreSQL epoch).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::cursor::Cursor;
use super::feedback::Boundary;
use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// Seconds between the Unix epoch and the PostgreSQL epoch (2000-01-01).
pub const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;

/// Convert a wall-clock time to PostgreSQL-epoch microseconds.
pub fn to_pg_micros(t: SystemTime) -> i64 {
    let pg_epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
    match t.duration_since(pg_epoch) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map(|v| -v).unwrap_or(i64::MIN),
    }
}

/// Convert PostgreSQL-epoch microseconds to a wall-clock time (saturating).
pub fn from_pg_micros(us: i64) -> SystemTime {
    let pg_epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
    if us >= 0 {
        pg_epoch.checked_add(Duration::from_micros(us as u64)).unwrap_or(pg_epoch)
    } else {
        pg_epoch.checked_sub(Duration::from_micros(us.unsigned_abs())).unwrap_or(pg_epoch)
    }
}

/// A chunk of WAL data (for logical replication: one output-plugin write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// Start of the data in the WAL (`dataStart`); 0 on non-final writes of one plugin callback.
    pub wal_start: Lsn,
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// Server clock when sent (PostgreSQL-epoch microseconds).
    pub server_time: i64,
    /// The payload, zero-copy.
    pub data: Bytes,
    /// Where the payload sits in a transaction, by its output plugin's rules ([`crate::plugin`]): set by the
    /// stream, once, as the payload arrives; [`Boundary::Whole`] as parsed.
    pub boundary: Boundary,
}

/// Primary keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// The server's current end of WAL (what it has sent so far).
    pub wal_end: Lsn,
    /// Server clock (PostgreSQL-epoch microseconds).
    pub server_time: i64,
    /// The server asks for an immediate status update (it is about to time us out).
    pub reply_requested: bool,
}

/// A CopyData payload from the server during replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `w`
    XLogData(XLogData),
    /// `k`
    Keepalive(Keepalive),
}

impl ReplicationMessage {
    /// Parse one CopyData payload. The payload is sliced, not copied.
    pub fn parse(payload: Bytes) -> Result<ReplicationMessage> {
        let mut c = Cursor::new(&payload, "replication CopyData");
        let tag = c.u8()?;
        match tag {
            b'w' => {
                if payload.len() < 25 {
                    return Err(Error::protocol(format!("XLogData of {} bytes (minimum 25)", payload.len())));
                }
                let wal_start = Lsn(c.u64()?);
                let wal_end = Lsn(c.u64()?);
                let server_time = c.i64()?;
                let data = c.rest();
                Ok(ReplicationMessage::XLogData(XLogData {
                    wal_start,
                    wal_end,
                    server_time,
                    data,
                    boundary: Boundary::Whole,
                }))
            }
            b'k' => {
                if payload.len() != 18 {
                    return Err(Error::protocol(format!("keepalive of {} bytes (expected 18)", payload.len())));
                }
                let wal_end = Lsn(c.u64()?);
                let server_time = c.i64()?;
                let reply = c.u8()?;
                c.finish()?;
                Ok(ReplicationMessage::Keepalive(Keepalive { wal_end, server_time, reply_requested: reply != 0 }))
            }
            other => Err(Error::protocol(format!("unknown replication message type {:?}", other as char))),
        }
    }
}

/// Standby status update (`r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusUpdate {
    /// Last WAL position received and written.
    pub write: Lsn,
    /// Last position flushed (for logical replication: what the slot may confirm).
    pub flush: Lsn,
    /// Last position applied.
    pub apply: Lsn,
    /// Client clock (PostgreSQL-epoch microseconds).
    pub client_time: i64,
    /// Ask the server to reply with a keepalive at once.
    pub reply_requested: bool,
}

impl StatusUpdate {
    /// Length of the encoded payload.
    pub const LEN: usize = 34;

    /// The CopyData payload (without the CopyData framing).
    pub fn encode_payload(&self, buf: &mut BytesMut) {
        buf.put_u8(b'r');
        buf.put_u64(self.write.0);
        buf.put_u64(self.flush.0);
        buf.put_u64(self.apply.0);
        buf.put_i64(self.client_time);
        buf.put_u8(u8::from(self.reply_requested));
    }

    /// The whole CopyData message.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(b'd');
        buf.put_i32(4 + Self::LEN as i32);
        self.encode_payload(buf);
    }

    /// Parse a status-update payload (for tests and tools that sit on the server side).
    pub fn parse(payload: &Bytes) -> Result<StatusUpdate> {
        let mut c = Cursor::new(payload, "standby status update");
        if c.u8()? != b'r' {
            return Err(Error::protocol("not a standby status update"));
        }
        let s = StatusUpdate {
            write: Lsn(c.u64()?),
            flush: Lsn(c.u64()?),
            apply: Lsn(c.u64()?),
            client_time: c.i64()?,
            reply_requested: c.u8()? != 0,
        };
        c.finish()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn xlogdata_and_keepalive() {
        let mut p = vec![b'w'];
        p.extend_from_slice(&0x1_0000_0010u64.to_be_bytes());
        p.extend_from_slice(&0x1_0000_0020u64.to_be_bytes());
        p.extend_from_slice(&7i64.to_be_bytes());
        p.extend_from_slice(b"{}");
        let m = ReplicationMessage::parse(Bytes::from(p)).unwrap();
        assert_eq!(
            m,
            ReplicationMessage::XLogData(XLogData {
                wal_start: Lsn(0x1_0000_0010),
                wal_end: Lsn(0x1_0000_0020),
                server_time: 7,
                data: Bytes::from_static(b"{}"),
                boundary: Boundary::Whole,
            })
        );
        let mut k = vec![b'k'];
        k.extend_from_slice(&5u64.to_be_bytes());
        k.extend_from_slice(&9i64.to_be_bytes());
        k.push(1);
        assert_eq!(
            ReplicationMessage::parse(Bytes::from(k)).unwrap(),
            ReplicationMessage::Keepalive(Keepalive { wal_end: Lsn(5), server_time: 9, reply_requested: true })
        );
    }

    #[test]
    fn rejects_short_and_unknown() {
        assert!(ReplicationMessage::parse(Bytes::from_static(b"")).is_err());
        assert!(ReplicationMessage::parse(Bytes::from(vec![b'w'; 24])).is_err());
        assert!(ReplicationMessage::parse(Bytes::from(vec![b'k'; 17])).is_err());
        assert!(ReplicationMessage::parse(Bytes::from(vec![b'k'; 19])).is_err());
        assert!(ReplicationMessage::parse(Bytes::from_static(b"x0000000000000000000000000")).is_err());
        // an empty XLogData payload is legal
        assert!(ReplicationMessage::parse(Bytes::from(vec![b'w'; 25])).is_ok());
    }

    #[test]
    fn pg_epoch() {
        let t = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS + 1);
        assert_eq!(to_pg_micros(t), 1_000_000);
        assert_eq!(from_pg_micros(1_000_000), t);
        assert_eq!(to_pg_micros(UNIX_EPOCH), -(PG_EPOCH_OFFSET_SECS as i64) * 1_000_000);
        assert!(from_pg_micros(i64::MIN) < UNIX_EPOCH);
    }

    proptest! {
        #[test]
        fn status_update_roundtrip(w: u64, f: u64, a: u64, t: i64, r: bool) {
            let s = StatusUpdate { write: Lsn(w), flush: Lsn(f), apply: Lsn(a), client_time: t, reply_requested: r };
            let mut b = BytesMut::new();
            s.encode(&mut b);
            prop_assert_eq!(b.len(), 1 + 4 + StatusUpdate::LEN);
            let payload = b.split_off(5).freeze();
            prop_assert_eq!(StatusUpdate::parse(&payload).unwrap(), s);
        }

        #[test]
        fn xlogdata_roundtrip(s: u64, e: u64, t: i64, data: Vec<u8>) {
            let mut p = vec![b'w'];
            p.extend_from_slice(&s.to_be_bytes());
            p.extend_from_slice(&e.to_be_bytes());
            p.extend_from_slice(&t.to_be_bytes());
            p.extend_from_slice(&data);
            let m = ReplicationMessage::parse(Bytes::from(p)).unwrap();
            prop_assert_eq!(m, ReplicationMessage::XLogData(XLogData { wal_start: Lsn(s), wal_end: Lsn(e), server_time: t, data: Bytes::from(data), boundary: Boundary::Whole }));
        }

        #[test]
        fn parse_never_panics(data: Vec<u8>) {
            let _ = ReplicationMessage::parse(Bytes::from(data));
        }
    }
}
