//! Authentication: cleartext, MD5 and SCRAM-SHA-256 as sans-IO state machines.

pub mod require;

pub use require::{AuthMethod, RequireAuth};
