//! The sans-IO protocol core: bytes in, messages out; messages in, bytes out.
//!
//! Nothing here touches a socket, a clock or a random-number generator: the driver ([`crate::client`]) feeds
//! received bytes to [`backend::Decoder`], encodes replies with [`frontend`], and passes the time in where a
//! state machine needs it. The replication stream's read policy (`pacing`, crate-internal) likewise: the driver
//! reports its reads and the time, the policy says when to read and which socket options to set, through a
//! trait the driver's socket implements. Every parser bounds-checks its input and caps lengths before
//! allocating (`shared/security.md` 1-6): malformed input is an [`Error`](crate::Error), never a panic.

pub mod backend;
pub mod commands;
pub mod cursor;
pub mod feedback;
pub mod frontend;
pub(crate) mod pacing;
pub mod replication;
pub mod startup;
