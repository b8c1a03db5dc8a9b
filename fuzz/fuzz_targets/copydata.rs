//! CopyData payloads of the replication protocol: XLogData (`w`), keepalive (`k`), standby status update (`r`).
//!
//! Input: one CopyData payload.
//!
//! Invariants beyond "no panic":
//! - a parsed XLogData is at least 25 bytes and its fields re-encode to exactly the payload; its data is a
//!   zero-copy slice of the payload (same memory);
//! - a parsed keepalive is exactly 18 bytes and re-encodes to the payload (reply flag: any non-zero byte);
//! - any other first byte is an error;
//! - a parsed status update re-encodes to the payload (reply flag normalized), and the framed encoding goes
//!   through the backend framing decoder as one CopyData carrying the same payload (the two codecs agree);
//! - the wal2json transaction classifier accepts any payload.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgrepl::proto::backend::{BackendMessage, Decoder};
use pgrepl::proto::replication::{ReplicationMessage, StatusUpdate};
use pgrepl::plugin::{TxnClassifier, Wal2jsonTracker};

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    match ReplicationMessage::parse(payload.clone()) {
        Ok(ReplicationMessage::XLogData(x)) => {
            assert!(data.len() >= 25 && data[0] == b'w');
            let mut re = vec![b'w'];
            re.extend_from_slice(&x.wal_start.0.to_be_bytes());
            re.extend_from_slice(&x.wal_end.0.to_be_bytes());
            re.extend_from_slice(&x.server_time.to_be_bytes());
            re.extend_from_slice(&x.data);
            assert_eq!(re, data);
            assert_eq!(x.data.as_ptr(), payload[25..].as_ptr(), "XLogData data is not a slice of the payload");
        }
        Ok(ReplicationMessage::Keepalive(k)) => {
            assert!(data.len() == 18 && data[0] == b'k');
            let mut re = vec![b'k'];
            re.extend_from_slice(&k.wal_end.0.to_be_bytes());
            re.extend_from_slice(&k.server_time.to_be_bytes());
            assert_eq!(re, data[..17]);
            assert_eq!(k.reply_requested, data[17] != 0);
        }
        Err(_) => {
            let ok_shape = match data.first() {
                Some(b'w') => data.len() >= 25,
                Some(b'k') => data.len() == 18,
                _ => false,
            };
            assert!(!ok_shape, "a well-formed payload was refused");
        }
    }

    match StatusUpdate::parse(&payload) {
        Ok(s) => {
            // LEN counts the tag: 'r', three LSNs, the clock, the reply flag
            assert!(data.len() == StatusUpdate::LEN && data[0] == b'r');
            let mut re = BytesMut::new();
            s.encode_payload(&mut re);
            assert_eq!(re.len(), StatusUpdate::LEN);
            assert_eq!(re[..StatusUpdate::LEN - 1], data[..StatusUpdate::LEN - 1]);
            assert_eq!(s.reply_requested, data[StatusUpdate::LEN - 1] != 0);
            let mut framed = BytesMut::new();
            s.encode(&mut framed);
            let mut d = Decoder::new();
            d.set_startup_done();
            match d.decode(&mut framed) {
                Ok(Some(BackendMessage::CopyData(p))) => assert_eq!(&p[..], &re[..]),
                other => panic!("status update framing not understood by the decoder: {other:?}"),
            }
            assert!(framed.is_empty());
        }
        Err(_) => assert!(data.len() != StatusUpdate::LEN || data[0] != b'r'),
    }

    let mut c = Wal2jsonTracker::default();
    for part in data.split(|&b| b == 0) {
        let _ = c.classify(part);
    }
});
