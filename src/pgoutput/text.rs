//! Text the server would have printed, made from the binary values pgoutput sends: timestamps (`TimestampTz`,
//! microseconds since 2000-01-01 UTC) as `timestamptz_to_str` prints them in UTC, and, for `binary true`
//! streams, the output functions of the types whose text does not depend on session settings (integers,
//! floats, numeric, uuid, bytea).
//!
//! Everything appends to a caller's `String` (the decoder's pooled buffers) and allocates nothing else.

use std::fmt::Write as _;

const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const UNIX_TO_PG_DAYS: i64 = 10_957;

/// `timestamptz_to_str` with `TimeZone = UTC` and `DateStyle = ISO`: `2026-01-02 03:04:05.123456+00`
/// (fractional digits without trailing zeros, none when zero), ` BC` after the zone for years before 1,
/// `infinity` / `-infinity`.
pub(crate) fn timestamptz(out: &mut String, t: i64) {
    if t == i64::MIN {
        out.push_str("-infinity");
        return;
    }
    if t == i64::MAX {
        out.push_str("infinity");
        return;
    }
    let days = t.div_euclid(USECS_PER_DAY);
    let rem = t.rem_euclid(USECS_PER_DAY);
    let (year, month, day) = civil_from_days(days + UNIX_TO_PG_DAYS);
    let secs = rem / 1_000_000;
    let usec = rem % 1_000_000;
    let (year, bc) = if year <= 0 { (1 - year, true) } else { (year, false) };
    let _ = write!(out, "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    fraction(out, usec);
    out.push_str("+00");
    if bc {
        out.push_str(" BC");
    }
}

/// `.ffffff` without trailing zeros; nothing for 0.
fn fraction(out: &mut String, mut usec: i64) {
    if usec == 0 {
        return;
    }
    let mut digits = 6;
    while usec % 10 == 0 {
        usec /= 10;
        digits -= 1;
    }
    let _ = write!(out, ".{usec:0digits$}");
}

/// Howard Hinnant's `civil_from_days`: (year, month, day) of the proleptic Gregorian calendar for days since
/// 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Lower-case hex digits of every byte (bytea as wal2json prints it, without `\x`).
pub(crate) fn hex(out: &mut String, b: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(b.len() * 2);
    for &x in b {
        for d in [x >> 4, x & 15] {
            out.push(char::from(DIGITS.get(usize::from(d)).copied().unwrap_or(b'0')));
        }
    }
}

/// `uuid_out`: `8-4-4-4-12` lower-case hex digits.
pub(crate) fn uuid(out: &mut String, b: &[u8; 16]) {
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        hex(out, std::slice::from_ref(x));
    }
}

/// A fixed buffer for formatting a float without allocating.
struct Small {
    b: [u8; 48],
    n: usize,
}

impl std::fmt::Write for Small {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.n.checked_add(s.len()).ok_or(std::fmt::Error)?;
        self.b.get_mut(self.n..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.n = end;
        Ok(())
    }
}

/// `float8out` (`plain_below` 15) / `float4out` (6) with `extra_float_digits` ≥ 1 (the default): the
/// shortest text that reads back to the same value, plain for decimal exponents in [-4, `plain_below`) and
/// `d.ddde±XX` otherwise; `NaN`, `Infinity`, `-Infinity`, `-0`. `sci` writes the value with `{:e}` (Rust's
/// shortest round-trip digits, the same digits as PostgreSQL's Ryu-based output).
pub(crate) fn float(out: &mut String, v: f64, plain_below: i32, sci: impl FnOnce(&mut dyn std::fmt::Write)) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let mut buf = Small { b: [0; 48], n: 0 };
    sci(&mut buf);
    let text = buf.b.get(..buf.n).unwrap_or_default();
    // `-1.2345e-7`, `0e0`
    let (neg, s) = match text.strip_prefix(b"-") {
        Some(s) => (true, s),
        None => (false, text),
    };
    let Some(e) = s.iter().position(|&c| c == b'e') else { return };
    let (mantissa, exp) = s.split_at(e);
    let exp: i32 = std::str::from_utf8(exp.get(1..).unwrap_or_default()).ok().and_then(|x| x.parse().ok()).unwrap_or(0);
    let mut digits = [0u8; 48];
    let mut nd = 0;
    for &c in mantissa.iter().filter(|c| c.is_ascii_digit()) {
        if let Some(slot) = digits.get_mut(nd) {
            *slot = c;
            nd += 1;
        }
    }
    let digits = std::str::from_utf8(digits.get(..nd).unwrap_or_default()).unwrap_or("0");
    if neg {
        out.push('-');
    }
    if digits == "0" {
        out.push('0');
        return;
    }
    if (-4..plain_below).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(digits);
        } else {
            let int_len = usize::try_from(exp).unwrap_or(0) + 1;
            match (digits.get(..int_len), digits.get(int_len..)) {
                (Some(i), Some(f)) if !f.is_empty() => {
                    out.push_str(i);
                    out.push('.');
                    out.push_str(f);
                }
                _ => {
                    out.push_str(digits);
                    for _ in digits.len()..int_len {
                        out.push('0');
                    }
                }
            }
        }
    } else {
        let (first, rest) = (digits.get(..1).unwrap_or("0"), digits.get(1..).unwrap_or_default());
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    }
}

/// `numeric_send`'s format (`ndigits`, `weight`, `sign`, `dscale`, then base-10000 digits) as `numeric_out`
/// prints it. `None` when malformed.
pub(crate) fn numeric(out: &mut String, b: &[u8]) -> Option<()> {
    let word = |i: usize| -> Option<u16> { b.get(i..i + 2).and_then(|s| s.try_into().ok()).map(u16::from_be_bytes) };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = i32::from(word(6)?);
    if b.len() != 8 + 2 * ndigits {
        return None;
    }
    match sign {
        0xC000 => {
            out.push_str("NaN");
            return Some(());
        }
        0xD000 => {
            out.push_str("Infinity");
            return Some(());
        }
        0xF000 => {
            out.push_str("-Infinity");
            return Some(());
        }
        0x0000 => {}
        0x4000 => out.push('-'),
        _ => return None,
    }
    let digit = |i: i32| -> Option<u16> {
        match usize::try_from(i) {
            Ok(i) if i < ndigits => {
                let d = word(8 + 2 * i)?;
                (d < 10_000).then_some(d)
            }
            _ => Some(0),
        }
    };
    // the integer part: digit groups 0..=weight
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i)?;
            if i == 0 {
                let _ = write!(out, "{d}");
            } else {
                let _ = write!(out, "{d:04}");
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut written = 0;
        let mut i = weight + 1;
        while written < dscale {
            let d = digit(i)?;
            let group = [d / 1000, d / 100 % 10, d / 10 % 10, d % 10];
            for g in group {
                if written < dscale {
                    out.push(char::from(b'0' + g as u8));
                    written += 1;
                }
            }
            i += 1;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(t: i64) -> String {
        let mut s = String::new();
        timestamptz(&mut s, t);
        s
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(0), "2000-01-01 00:00:00+00");
        assert_eq!(ts(1), "2000-01-01 00:00:00.000001+00");
        assert_eq!(ts(500_000), "2000-01-01 00:00:00.5+00");
        assert_eq!(ts(-1), "1999-12-31 23:59:59.999999+00");
        // 2026-01-02 03:04:05.123456 UTC
        let t = (1_767_323_045_i64 - 946_684_800) * 1_000_000 + 123_456;
        assert_eq!(ts(t), "2026-01-02 03:04:05.123456+00");
        // 2024-02-29
        let t = (1_709_164_800_i64 - 946_684_800) * 1_000_000;
        assert_eq!(ts(t), "2024-02-29 00:00:00+00");
        assert_eq!(ts(i64::MAX), "infinity");
        assert_eq!(ts(i64::MIN), "-infinity");
        // 0001-01-01 BC = year 0 (proleptic), 730485 days before 2000-01-01
        let t = -730_485_i64 * USECS_PER_DAY;
        assert_eq!(ts(t), "0001-01-01 00:00:00+00 BC");
        assert!(!ts(i64::MIN + 1).is_empty());
    }

    fn f8(v: f64) -> String {
        let mut s = String::new();
        float(&mut s, v, 15, |w| {
            let _ = write!(w, "{v:e}");
        });
        s
    }

    fn f4(v: f32) -> String {
        let mut s = String::new();
        float(&mut s, f64::from(v), 6, |w| {
            let _ = write!(w, "{v:e}");
        });
        s
    }

    #[test]
    fn floats_as_postgres_prints_them() {
        for (v, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (100_000_000_000_000.0, "100000000000000"),
            (1e15, "1e+15"),
            (1.5e300, "1.5e+300"),
            (123_456_789_012_345_680_000.0, "1.2345678901234568e+20"),
            (-2.5e-10, "-2.5e-10"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (123.456, "123.456"),
        ] {
            assert_eq!(f8(v), want, "{v}");
        }
        assert_eq!(f4(1e6), "1e+06");
        assert_eq!(f4(123_456.0), "123456");
        assert_eq!(f4(3.4028235e38), "3.4028235e+38");
        assert_eq!(f4(0.1), "0.1");
        assert_eq!(f4(1.5), "1.5");
    }

    fn num(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Option<String> {
        let mut b = vec![];
        for w in [ndigits, weight as u16, sign, dscale].into_iter().chain(digits.iter().copied()) {
            b.extend_from_slice(&w.to_be_bytes());
        }
        let mut s = String::new();
        numeric(&mut s, &b).map(|()| s)
    }

    #[test]
    fn numerics() {
        assert_eq!(num(0, 0, 0, 0, &[]).unwrap(), "0");
        assert_eq!(num(0, 0, 0, 2, &[]).unwrap(), "0.00");
        assert_eq!(num(2, 0, 0, 2, &[12, 5000]).unwrap(), "12.50");
        assert_eq!(num(2, 1, 0x4000, 0, &[1, 2345]).unwrap(), "-12345");
        assert_eq!(num(1, -1, 0, 4, &[1]).unwrap(), "0.0001");
        assert_eq!(num(1, -2, 0, 8, &[1]).unwrap(), "0.00000001");
        assert_eq!(num(1, 2, 0, 0, &[7]).unwrap(), "700000000");
        assert_eq!(num(3, 0, 0, 5, &[3, 1415, 9265]).unwrap(), "3.14159");
        assert_eq!(num(0, 0, 0xC000, 0, &[]).unwrap(), "NaN");
        assert_eq!(num(0, 0, 0xD000, 0, &[]).unwrap(), "Infinity");
        assert_eq!(num(0, 0, 0xF000, 0, &[]).unwrap(), "-Infinity");
        assert_eq!(num(1, 0, 0x1234, 0, &[1]), None);
        assert_eq!(num(1, 0, 0, 0, &[10_000]), None);
        assert_eq!(num(2, 0, 0, 0, &[1]), None);
        let mut s = String::new();
        assert_eq!(numeric(&mut s, &[0, 1]), None);
    }

    #[test]
    fn uuids_and_hex() {
        let mut s = String::new();
        uuid(&mut s, &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 0xff]);
        assert_eq!(s, "12345678-9abc-def0-0001-0203040506ff");
        s.clear();
        hex(&mut s, b"\x00\x7f\xff");
        assert_eq!(s, "007fff");
    }
}
