//! `--output json` and `pgrepl decode`: wal2json payloads of any format to format-2 JSON objects.

use pgrepl::{Error, ErrorKind};

pub struct JsonOut {}

impl JsonOut {
    pub fn new() -> JsonOut {
        JsonOut {}
    }

    pub fn write(&mut self, _payload: &[u8], _buf: &mut Vec<u8>) -> Result<(), Error> {
        Err(Error::new(ErrorKind::Decode, "--output json is not available in this build yet"))
    }
}

pub fn decode_main(_args: &[String]) -> i32 {
    eprintln!("pgrepl decode: not available in this build yet");
    1
}
