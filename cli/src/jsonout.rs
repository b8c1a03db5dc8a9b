//! `--output json`: each payload of the slot's plugin to one format-2-shaped JSON object per event, with the
//! decoder's state carried across payloads (wal2json's chunk reassembly). wal2json payloads of any format (1,
//! 1-in-chunks, 2), test_decoding's text and pgoutput's binary messages decode into the same typed events, so the JSON has one shape
//! whatever the plugin; a plugin pgrepl cannot decode is refused before streaming starts.

use pgrepl::pgoutput::PgoutputDecoder;
use pgrepl::plugin::TestDecodingDecoder;
use pgrepl::wal2json::{write_event, AnyDecoder};
use pgrepl::{Error, ErrorKind};

/// The decoder of the slot's plugin.
enum Decoder {
    Wal2json(AnyDecoder),
    TestDecoding(TestDecodingDecoder),
    Pgoutput(Box<PgoutputDecoder>),
}

pub struct JsonOut {
    decoder: Decoder,
}

impl Default for JsonOut {
    fn default() -> Self {
        JsonOut { decoder: Decoder::Wal2json(AnyDecoder::default()) }
    }
}

impl JsonOut {
    pub fn new() -> JsonOut {
        JsonOut::default()
    }

    /// Decode the payloads of output plugin `name` from now on; an error for a plugin pgrepl cannot decode.
    pub fn set_plugin(&mut self, name: &str) -> Result<(), Error> {
        self.decoder = match name {
            "wal2json" => Decoder::Wal2json(AnyDecoder::default()),
            "test_decoding" => Decoder::TestDecoding(TestDecodingDecoder::default()),
            "pgoutput" => {
                // recv holds a streamed transaction and writes it whole at its commit (its Router)
                let mut d = PgoutputDecoder::new();
                d.assembled();
                Decoder::Pgoutput(Box::new(d))
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "--output json/none: pgrepl cannot decode output plugin \"{other}\" (it decodes wal2json, \
                         test_decoding and pgoutput); use --output raw"
                    ),
                ))
            }
        };
        Ok(())
    }

    /// Decode `payload` and append one JSON object per event, each followed by a newline. With `write` false,
    /// decode only (for `--output none`).
    pub fn write(&mut self, payload: &[u8], buf: &mut Vec<u8>, write: bool) -> Result<usize, Error> {
        let mut each = |ev: &pgrepl::event::Event<'_>| {
            if write {
                write_event(buf, ev);
                buf.push(b'\n');
            }
        };
        match &mut self.decoder {
            Decoder::Wal2json(d) => d.decode_each(payload, &mut each),
            Decoder::TestDecoding(d) => d.decode_each(payload, &mut each),
            Decoder::Pgoutput(d) => d.decode_each(payload, &mut each),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_it_cannot_decode_are_refused() {
        let mut j = JsonOut::new();
        let e = j.set_plugin("decoderbufs").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("decoderbufs"), "{e}");
        j.set_plugin("test_decoding").unwrap();
        let mut buf = Vec::new();
        assert_eq!(j.write(b"BEGIN 5", &mut buf, true).unwrap(), 1);
        assert_eq!(buf, b"{\"action\":\"B\",\"xid\":5}\n");
    }
}
