//! How `recv` writes each payload: raw (pg_recvlogical's bytes), JSON (format-2 objects), or nothing.

use pgrepl::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Raw,
    Json,
    None,
}

pub struct Writer {
    format: OutputFormat,
    json: crate::jsonout::JsonOut,
}

impl Writer {
    pub fn new(format: OutputFormat) -> Writer {
        Writer { format, json: crate::jsonout::JsonOut::new() }
    }

    /// The slot's output plugin, once known: JSON (and `none`) decode its payloads; raw output takes any plugin.
    pub fn set_plugin(&mut self, name: &str) -> Result<(), Error> {
        match self.format {
            OutputFormat::Raw => Ok(()),
            OutputFormat::Json | OutputFormat::None => self.json.set_plugin(name),
        }
    }

    /// Append the output for one payload to `buf`.
    pub fn write(&mut self, payload: &[u8], buf: &mut Vec<u8>) -> Result<(), Error> {
        match self.format {
            OutputFormat::Raw => {
                buf.extend_from_slice(payload);
                buf.push(b'\n');
                Ok(())
            }
            OutputFormat::Json => self.json.write(payload, buf, true).map(|_| ()),
            OutputFormat::None => self.json.write(payload, buf, false).map(|_| ()),
        }
    }
}
