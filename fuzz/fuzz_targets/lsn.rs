//! LSN text (`Lsn::parse`, `Lsn::parse_bytes`, `Display`).
//!
//! Input: the text.
//!
//! Invariants beyond "no panic":
//! - accepted exactly when the text is `X/Y` with 1-8 hex digits on each side (nothing else: no sign, space,
//!   second slash), and then the value is `X << 32 | Y`;
//! - `Display` of any parsed value parses back to it and is the server's canonical form (upper-case, no
//!   leading zeros); the `&str` and byte entry points agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::Lsn;

fn reference(s: &[u8]) -> Option<u64> {
    let slash = s.iter().position(|&b| b == b'/')?;
    let (hi, lo) = (&s[..slash], &s[slash + 1..]);
    let half = |h: &[u8]| -> Option<u64> {
        if h.is_empty() || h.len() > 8 || !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u64::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    Some((half(hi)? << 32) | half(lo)?)
}

fuzz_target!(|data: &[u8]| {
    let got = Lsn::parse_bytes(data).ok();
    assert_eq!(got.map(|l| l.0), reference(data), "{:?}", String::from_utf8_lossy(data));
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(Lsn::parse(s).ok(), got);
    }
    if let Some(l) = got {
        let text = l.to_string();
        assert_eq!(Lsn::parse(&text).ok(), Some(l));
        assert_eq!(text, format!("{:X}/{:X}", l.0 >> 32, l.0 & 0xffff_ffff));
    }
    // any 8 bytes as a value round-trip through text
    if data.len() >= 8 {
        let v = u64::from_be_bytes(data[..8].try_into().unwrap_or_default());
        assert_eq!(Lsn::parse(&Lsn(v).to_string()).ok(), Some(Lsn(v)));
    }
});
