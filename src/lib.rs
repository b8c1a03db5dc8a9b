//! # pgrepl
//!
//! A PostgreSQL logical-replication client written from the wire protocol up.
//!
//! Layers (imports point down only):
//! - [`client`], [`stream`]: the thin tokio driver (sockets, timers, feedback, reconnect);
//! - [`proto`], [`auth`], [`config`], [`lsn`], [`error`]: the sans-IO protocol core, which never touches tokio;
//! - [`plugin`]: output plugins' rules and decoders ([`wal2json`], test_decoding, [`pgoutput`]) into the
//!   plugin-neutral typed [`event`]s, independent of networking.

pub mod auth;
pub mod changes;
pub mod client;
pub mod config;
pub mod connect;
pub mod error;
pub mod event;
pub mod lsn;
pub mod pgoutput;
pub mod plugin;
pub mod proto;
pub mod spill;
pub mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wal2json;

pub use error::{DbError, Error, ErrorKind, Result};
pub use lsn::Lsn;
