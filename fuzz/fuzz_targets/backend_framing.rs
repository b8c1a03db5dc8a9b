//! Backend framing and message parsing, with the input choosing how the bytes are split across reads.
//!
//! Input: byte 0 = flags (bit 7: leave startup mode first; bit 6: a small 40 000-byte cap for large types;
//! bits 0-3: how many chunk-size bytes follow), then those chunk sizes (cycled), then the server's bytes.
//!
//! Invariants beyond "no panic":
//! - split-read invariance: feeding the bytes in the chosen chunks yields exactly the messages that decoding
//!   the whole buffer at once yields, in order; if one run fails the other fails or waits at the same message
//!   (a header can only be judged earlier, never differently);
//! - `Ok(None)` consumes nothing; a message consumes exactly `1 + length` bytes, never more than were there;
//!   the total consumed never exceeds the input;
//! - a CopyData message is the frame's body byte for byte (zero-copy slicing cannot shift it);
//! - the decoder never retains more than it was given (no reservation of a claimed length).
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgrepl::proto::backend::{BackendMessage, Decoder};
use pgrepl_fuzz::Input;

#[derive(Debug, PartialEq)]
enum End {
    /// Every whole message decoded; the rest waits for more bytes.
    Waiting,
    Failed,
}

fn decoder(flags: u8) -> Decoder {
    let mut d = Decoder::new();
    if flags & 0x40 != 0 {
        d = d.with_max_message_len(40_000);
    }
    if flags & 0x80 != 0 {
        d.set_startup_done();
    }
    d
}

/// Decode everything available in `buf`, checking the consumption rules; returns whether decoding failed.
fn drain(d: &mut Decoder, buf: &mut BytesMut, out: &mut Vec<BackendMessage>, consumed: &mut usize) -> bool {
    loop {
        let before = buf.len();
        let snapshot = buf.clone();
        match d.decode(buf) {
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return false;
            }
            Ok(Some(m)) => {
                let used = before - buf.len();
                assert!(used >= 5 && used <= before, "consumed {used} of {before}");
                let len = u32::from_be_bytes([snapshot[1], snapshot[2], snapshot[3], snapshot[4]]) as usize;
                assert_eq!(used, len + 1, "consumed bytes differ from the frame length");
                if let BackendMessage::CopyData(p) = &m {
                    assert_eq!(&p[..], &snapshot[5..used]);
                }
                if matches!(m, BackendMessage::ReadyForQuery(_)) {
                    d.set_startup_done();
                }
                *consumed += used;
                out.push(m);
            }
            Err(_) => return true,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let sizes: Vec<usize> = inp.bytes((flags & 0x0f) as usize).iter().map(|&b| b as usize + 1).collect();
    let stream = inp.rest();

    // Reference: the whole buffer at once.
    let mut whole_msgs = Vec::new();
    let mut whole_consumed = 0;
    let mut d = decoder(flags);
    let mut buf = BytesMut::from(stream);
    let whole_end =
        if drain(&mut d, &mut buf, &mut whole_msgs, &mut whole_consumed) { End::Failed } else { End::Waiting };
    assert!(whole_consumed <= stream.len());
    if whole_end == End::Waiting {
        assert_eq!(whole_consumed + buf.len(), stream.len());
    }

    // The same bytes in the chosen chunks.
    let mut split_msgs = Vec::new();
    let mut split_consumed = 0;
    let mut d = decoder(flags);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut i = 0;
    let mut split_end = End::Waiting;
    while fed < stream.len() {
        let n = if sizes.is_empty() { stream.len() } else { sizes[i % sizes.len()] };
        i += 1;
        let chunk = &stream[fed..(fed + n).min(stream.len())];
        fed += chunk.len();
        buf.put_slice(chunk);
        if drain(&mut d, &mut buf, &mut split_msgs, &mut split_consumed) {
            split_end = End::Failed;
            break;
        }
        assert!(split_consumed <= fed);
        assert!(buf.len() <= fed - split_consumed);
    }

    match (&whole_end, &split_end) {
        (End::Waiting, End::Waiting) | (End::Failed, End::Failed) => {
            assert_eq!(whole_msgs, split_msgs, "split reads changed the messages");
            if whole_end == End::Waiting {
                assert_eq!(whole_consumed, split_consumed);
            }
        }
        // A partial header with an unknown tag fails at once; the whole buffer may instead be waiting for the
        // rest of a frame that starts with it. Either way the same messages came before.
        (End::Waiting, End::Failed) => {
            assert_eq!(whole_msgs, split_msgs, "split reads changed the messages");
        }
        // Once every byte is in, the split run holds what the whole run held: it cannot wait where that failed.
        (End::Failed, End::Waiting) => panic!("whole buffer failed, split reads did not: {whole_msgs:?}"),
    }
});
