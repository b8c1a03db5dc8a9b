//! A connection to the server: [`Client`], its simple queries and replication commands.
//!
//! [`Client::connect`] runs [`crate::connect`] (hosts, TLS, authentication, startup) and wraps the framed
//! connection it gives back (`crate::conn`, which also holds [`Socket`] and [`NoticeHandler`], re-exported here).
//! All protocol logic lives in [`crate::proto`] and [`crate::auth`]; this module only moves bytes between the
//! connection and those state machines. It imports `conn` and `connect`, neither of which imports it (the chain
//! is in `conn`'s docs).
//!
//! ```no_run
//! # async fn demo() -> pgrepl::Result<()> {
//! use pgrepl::{client::Client, config::Config};
//! let cfg = Config::from_str_with_std_env("host=/var/run/postgresql dbname=postgres replication=database")?;
//! let mut client = Client::connect(&cfg).await?;
//! let sys = client.identify_system().await?;
//! println!("system {} at {}", sys.system_id, sys.xlogpos);
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::config::Config;
use crate::conn::{default_notice_handler, Conn};
use crate::connect::TcpOptions;
use crate::error::{Error, Result, SlotCommand};
use crate::lsn::Lsn;
use crate::proto::backend::BackendMessage;
use crate::proto::commands::{self, CreateSlot};
use crate::proto::frontend;
use crate::proto::startup::SessionInfo;

pub use crate::conn::{NoticeHandler, QueryResult, Socket};

/// IDENTIFY_SYSTEM's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The cluster's system identifier.
    pub system_id: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// Database connected to (replication=database), if any.
    pub dbname: Option<String>,
}

/// CREATE_REPLICATION_SLOT's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot name.
    pub slot_name: String,
    /// The position from which the slot streams.
    pub consistent_point: Lsn,
    /// Exported snapshot, if asked for.
    pub snapshot_name: Option<String>,
    /// Output plugin.
    pub output_plugin: Option<String>,
}

/// READ_REPLICATION_SLOT's answer for an existing slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSlot {
    /// `physical` (the server refuses the command for logical slots).
    pub slot_type: String,
    /// restart_lsn.
    pub restart_lsn: Option<Lsn>,
    /// Timeline of restart_lsn.
    pub restart_tli: Option<u32>,
}

/// A connection to a PostgreSQL server.
pub struct Client {
    pub(crate) conn: Conn,
    info: SessionInfo,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("process_id", &self.info.process_id).finish_non_exhaustive()
    }
}

impl Client {
    /// Connect and authenticate, trying each host of `cfg` in order.
    pub async fn connect(cfg: &Config) -> Result<Client> {
        Self::connect_with_notices(cfg, default_notice_handler()).await
    }

    /// [`Client::connect`] with a notice handler (called for every NoticeResponse, during startup too).
    ///
    /// Hosts, addresses, `connect_timeout`, the TCP options and `target_session_attrs`: see [`crate::connect`].
    pub async fn connect_with_notices(cfg: &Config, notice: NoticeHandler) -> Result<Client> {
        let (conn, info) = crate::connect::connect(cfg, notice).await?;
        Ok(Client { conn, info })
    }

    /// The TCP options of this connection as the kernel reports them (`keepalives*`, `tcp_user_timeout`); `None`
    /// over a Unix-domain socket.
    pub fn tcp_options(&self) -> Option<TcpOptions> {
        self.conn.sock.tcp_options()
    }

    /// Session parameters reported by the server.
    pub fn session(&self) -> &SessionInfo {
        &self.info
    }

    /// Replace the notice handler.
    pub fn set_notice_handler(&mut self, h: NoticeHandler) {
        self.conn.notice = h;
    }

    /// Run one or more statements with the simple query protocol; every value comes back as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryResult>> {
        self.conn.simple_query(sql, &mut self.info).await
    }

    async fn one_row(&mut self, sql: &str) -> Result<QueryResult> {
        let mut r = self.simple_query(sql).await?;
        r.pop().ok_or_else(|| Error::protocol(format!("no result for {sql}")))
    }

    /// IDENTIFY_SYSTEM.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem> {
        let r = self.one_row(&commands::identify_system()).await?;
        let bad = |what: &str| Error::protocol(format!("IDENTIFY_SYSTEM: bad {what}"));
        Ok(IdentifySystem {
            system_id: r.get(0, "systemid").ok_or_else(|| bad("systemid"))?.to_string(),
            timeline: r.get(0, "timeline").and_then(|t| t.parse().ok()).ok_or_else(|| bad("timeline"))?,
            xlogpos: r
                .get(0, "xlogpos")
                .ok_or_else(|| bad("xlogpos"))
                .and_then(|s| Lsn::parse(s).map_err(|_| bad("xlogpos")))?,
            dbname: r.get(0, "dbname").map(str::to_string),
        })
    }

    /// CREATE_REPLICATION_SLOT … LOGICAL. A slot name the server cannot accept is refused before anything is
    /// sent, with an error of kind [`ErrorKind::Config`](crate::ErrorKind::Config)
    /// ([`commands::validate_slot_name`]); so are the other slot commands here and `start_replication`.
    /// A slot that already exists: [`ErrorKind::SlotExists`](crate::ErrorKind::SlotExists); `two_phase` before
    /// PostgreSQL 15: [`ErrorKind::ServerVersionUnsupported`](crate::ErrorKind::ServerVersionUnsupported).
    pub async fn create_replication_slot(&mut self, opts: &CreateSlot) -> Result<SlotInfo> {
        let ver = self.info.server_version_num().unwrap_or(150000);
        let sql = opts.to_sql(ver)?;
        if opts.two_phase {
            self.info.require_version(150000, "a two-phase slot (TWO_PHASE)")?;
        }
        let r = self.one_row(&sql).await.map_err(|e| e.in_slot_command(SlotCommand::Create))?;
        let bad = |what: &str| Error::protocol(format!("CREATE_REPLICATION_SLOT: bad {what}"));
        Ok(SlotInfo {
            slot_name: r.get(0, "slot_name").ok_or_else(|| bad("slot_name"))?.to_string(),
            consistent_point: r
                .get(0, "consistent_point")
                .ok_or_else(|| bad("consistent_point"))
                .and_then(|s| Lsn::parse(s).map_err(|_| bad("consistent_point")))?,
            snapshot_name: r.get(0, "snapshot_name").map(str::to_string),
            output_plugin: r.get(0, "output_plugin").map(str::to_string),
        })
    }

    /// DROP_REPLICATION_SLOT \[WAIT\] (an invalid slot name: [`ErrorKind::Config`](crate::ErrorKind::Config),
    /// nothing sent; no such slot: [`ErrorKind::SlotMissing`](crate::ErrorKind::SlotMissing); in use without
    /// `wait`: [`ErrorKind::SlotActive`](crate::ErrorKind::SlotActive)).
    pub async fn drop_replication_slot(&mut self, slot: &str, wait: bool) -> Result<()> {
        let sql = commands::drop_slot(slot, wait)?;
        self.simple_query(&sql).await.map(|_| ()).map_err(|e| e.in_slot_command(SlotCommand::Drop))
    }

    /// READ_REPLICATION_SLOT (PostgreSQL 15+): `None` when the slot does not exist (an invalid slot name:
    /// [`ErrorKind::Config`](crate::ErrorKind::Config), nothing sent; an older server:
    /// [`ErrorKind::ServerVersionUnsupported`](crate::ErrorKind::ServerVersionUnsupported), nothing sent).
    pub async fn read_replication_slot(&mut self, slot: &str) -> Result<Option<ReadSlot>> {
        let sql = commands::read_slot(slot)?;
        self.info.require_version(150000, "READ_REPLICATION_SLOT")?;
        let r = self.one_row(&sql).await.map_err(|e| e.in_slot_command(SlotCommand::Read))?;
        let Some(slot_type) = r.get(0, "slot_type") else { return Ok(None) };
        Ok(Some(ReadSlot {
            slot_type: slot_type.to_string(),
            restart_lsn: r.get(0, "restart_lsn").and_then(|s| Lsn::parse(s).ok()),
            restart_tli: r.get(0, "restart_tli").and_then(|s| s.parse().ok()),
        }))
    }

    /// The server's `wal_sender_timeout` (`None` when disabled or unknown).
    pub async fn wal_sender_timeout(&mut self) -> Result<Option<Duration>> {
        let r = self.one_row("SHOW wal_sender_timeout").await?;
        Ok(r.rows.first().and_then(|row| row.first()).and_then(|v| v.as_deref()).and_then(parse_pg_duration))
    }

    /// Send Terminate and close the socket.
    pub async fn close(mut self) -> Result<()> {
        self.conn.terminate().await;
        Ok(())
    }

    /// Send a query that starts COPY BOTH and wait for CopyBothResponse.
    pub(crate) async fn start_copy_both(&mut self, sql: &str) -> Result<()> {
        frontend::query(sql, &mut self.conn.wbuf)?;
        self.conn.flush().await?;
        loop {
            match self.conn.read_message().await? {
                BackendMessage::CopyBothResponse(_) => return Ok(()),
                BackendMessage::NoticeResponse(n) => (self.conn.notice)(&n),
                BackendMessage::ErrorResponse(e) => return self.conn.drain_to_ready(Some(Error::db(e))).await,
                BackendMessage::ParameterStatus { name, value } => self.info.parameters.push((name, value)),
                other => return Err(Error::protocol(format!("unexpected {} after START_REPLICATION", other.name()))),
            }
        }
    }

    pub(crate) fn into_parts(self) -> (Conn, SessionInfo) {
        (self.conn, self.info)
    }

    pub(crate) fn from_parts(conn: Conn, info: SessionInfo) -> Client {
        Client { conn, info }
    }
}

/// Parse a GUC duration as SHOW prints it (`60s`, `1min`, `500ms`, `0`).
pub fn parse_pg_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        "us" => n / 1000,
        _ => return None,
    };
    if ms == 0 {
        None
    } else {
        Some(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_pg_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_pg_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_pg_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_pg_duration("0"), None);
        assert_eq!(parse_pg_duration("x"), None);
    }
}
