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
/// TLS: feature `tls` (rustls with *ring*) or `tls-aws-lc` (rustls with aws-lc-rs, post-quantum key exchange
/// preferred); `__tls` is their shared, provider-less part.
#[cfg(feature = "__tls")]
pub mod tls;
#[cfg(all(feature = "__tls", not(any(feature = "tls", feature = "tls-aws-lc"))))]
compile_error!("pgrepl: enable the `tls` or the `tls-aws-lc` feature; `__tls` alone has no crypto provider");
pub mod wal2json;

pub use error::{DbError, Error, ErrorKind, Result};
pub use lsn::Lsn;
