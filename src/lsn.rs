//! Log sequence numbers.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};

/// A PostgreSQL WAL position, written `X/Y` (two hexadecimal halves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`: "no position" (for START_REPLICATION, "the slot's confirmed_flush").
    pub const INVALID: Lsn = Lsn(0);

    /// Whether this is `0/0`.
    pub fn is_invalid(self) -> bool {
        self.0 == 0
    }

    /// Parse `X/Y` without allocation. Each half is 1–8 hex digits, as the server writes them.
    pub fn parse(s: &str) -> Result<Lsn, Error> {
        Self::parse_bytes(s.as_bytes())
    }

    /// [`Lsn::parse`] on bytes (wal2json `lsn` values come as raw bytes).
    pub fn parse_bytes(s: &[u8]) -> Result<Lsn, Error> {
        let bad = || {
            Error::new(
                ErrorKind::Config,
                format!("invalid LSN {:?}: expected X/Y in hexadecimal", String::from_utf8_lossy(s)),
            )
        };
        let slash = s.iter().position(|&b| b == b'/').ok_or_else(bad)?;
        let (hi, lo) = s.split_at(slash);
        let lo = lo.get(1..).ok_or_else(bad)?;
        let hi = hex32(hi).ok_or_else(bad)?;
        let lo = hex32(lo).ok_or_else(bad)?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

fn hex32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u32::from(d);
    }
    Some(v)
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 as u32)
    }
}

impl FromStr for Lsn {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Lsn::parse(s)
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

impl From<Lsn> for u64 {
    fn from(v: Lsn) -> Self {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_format() {
        assert_eq!(Lsn::parse("0/0").unwrap(), Lsn(0));
        assert_eq!(Lsn::parse("16/B374D848").unwrap(), Lsn(0x16_B374_D848));
        assert_eq!(Lsn::parse("16/b374d848").unwrap(), Lsn(0x16_B374_D848));
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert_eq!(Lsn::parse("FFFFFFFF/FFFFFFFF").unwrap(), Lsn(u64::MAX));
    }

    #[test]
    fn rejects_malformed() {
        for s in
            ["", "/", "0/", "/0", "0", "0/0/0", "g/0", "123456789/0", "0/123456789", " 0/0", "0/0 ", "-1/0", "+1/0"]
        {
            let e = Lsn::parse(s).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn roundtrip(v: u64) {
            prop_assert_eq!(Lsn::parse(&Lsn(v).to_string()).unwrap(), Lsn(v));
        }
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = Lsn::parse(&s);
        }
    }
}
