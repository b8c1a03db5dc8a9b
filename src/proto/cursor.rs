//! A bounds-checked reader over one message body.

use bytes::Bytes;

use crate::error::{Error, Result};

/// Reads big-endian integers and NUL-terminated strings from a message body without ever reading past it.
pub struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf`; `what` names the message in errors.
    pub fn new(buf: &'a Bytes, what: &'static str) -> Self {
        Cursor { buf, pos: 0, what }
    }

    fn short(&self) -> Error {
        Error::protocol(format!("{} message too short ({} bytes)", self.what, self.buf.len()))
    }

    /// Take the next `n` bytes as a slice.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.short())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.short())?;
        self.pos = end;
        Ok(s)
    }

    /// Take the next `n` bytes as a zero-copy `Bytes`.
    pub fn take_bytes(&mut self, n: usize) -> Result<Bytes> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        let s = self.take(1)?;
        s.first().copied().ok_or_else(|| self.short())
    }

    /// Big-endian i16.
    pub fn i16(&mut self) -> Result<i16> {
        let s = self.take(2)?;
        let a: [u8; 2] = s.try_into().map_err(|_| self.short())?;
        Ok(i16::from_be_bytes(a))
    }

    /// Big-endian i32.
    pub fn i32(&mut self) -> Result<i32> {
        let s = self.take(4)?;
        let a: [u8; 4] = s.try_into().map_err(|_| self.short())?;
        Ok(i32::from_be_bytes(a))
    }

    /// Big-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        let a: [u8; 8] = s.try_into().map_err(|_| self.short())?;
        Ok(u64::from_be_bytes(a))
    }

    /// Big-endian i64.
    pub fn i64(&mut self) -> Result<i64> {
        self.u64().map(|v| v as i64)
    }

    /// A NUL-terminated string that must end inside the message (the NUL is consumed, not returned).
    pub fn cstr(&mut self) -> Result<&'a [u8]> {
        let rest = self.buf.get(self.pos..).ok_or_else(|| self.short())?;
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::protocol(format!("unterminated string in {} message", self.what)))?;
        let s = rest.get(..nul).ok_or_else(|| self.short())?;
        self.pos += nul + 1;
        Ok(s)
    }

    /// A NUL-terminated string, decoded as UTF-8 (invalid sequences replaced: server texts may be in another
    /// encoding before `client_encoding` applies).
    pub fn string(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(self.cstr()?).into_owned())
    }

    /// Everything left, zero-copy.
    pub fn rest(&mut self) -> Bytes {
        let start = self.pos.min(self.buf.len());
        self.pos = self.buf.len();
        self.buf.slice(start..)
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Error unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(Error::protocol(format!(
                "{} message has {} unexpected trailing bytes",
                self.what,
                self.remaining()
            )));
        }
        Ok(())
    }
}
