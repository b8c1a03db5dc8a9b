//! # pgrepl
//!
//! A PostgreSQL logical-replication client written from the wire protocol up.
//!
//! Layers (imports point down only):
//! - [`client`], [`stream`], [`connect`], `tls` and the private `conn`: the thin tokio driver (sockets, timers,
//!   feedback, reconnect), whose imports point one way: `conn` (sockets, framed connection) ← `tls` ← `connect`
//!   (hosts, one attempt's TLS, authentication and startup) ← `client` ← `stream` ← [`changes`];
//! - [`proto`], [`auth`], [`config`], [`lsn`], [`error`]: the sans-IO protocol core, which never touches tokio;
//! - [`plugin`]: output plugins' rules and decoders ([`wal2json`], test_decoding, [`pgoutput`]) into the
//!   plugin-neutral typed [`event`]s, independent of networking.

pub mod auth;
pub mod changes;
pub mod client;
pub mod config;
mod conn;
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
