//! `--output json`: wal2json payloads of any format (1, 1-in-chunks, 2) to one format-2-shaped JSON object per
//! event, with the decoder's state carried across payloads (chunk reassembly).

use pgrepl::wal2json::{write_event, AnyDecoder};
use pgrepl::Error;

#[derive(Default)]
pub struct JsonOut {
    decoder: AnyDecoder,
}

impl JsonOut {
    pub fn new() -> JsonOut {
        JsonOut::default()
    }

    /// Decode `payload` and append one JSON object per event, each followed by a newline. With `write` false,
    /// decode only (for `--output none`).
    pub fn write(&mut self, payload: &[u8], buf: &mut Vec<u8>, write: bool) -> Result<usize, Error> {
        let mut events = self.decoder.events(payload)?;
        let mut n = 0;
        while let Some(ev) = events.next() {
            let ev = ev?;
            if write {
                write_event(buf, &ev);
                buf.push(b'\n');
            }
            events.recycle(ev);
            n += 1;
        }
        Ok(n)
    }
}
