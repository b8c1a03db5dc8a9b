//! wal2json decoder.
