//! Password-file lookup (`lookup_pgpass`), differentially against a transcription of libpq's
//! `passwordFromFile` / `pwdfMatchesString` (PostgreSQL 16, fe-connect.c).
//!
//! Input: five fields separated by 0xFF bytes: file contents, host, port (decimal, else 5432), dbname, user.
//!
//! Invariants beyond "no panic":
//! - pgrepl finds exactly the password libpq would find (same line wins, same de-escaping), for any contents
//!   without NUL bytes (libpq's C strings end at NUL; those inputs only check for panics);
//! - a found password never contains an unescaped line break.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::config::lookup_pgpass;

/// libpq's `pwdfMatchesString`: if the line's first field matches `token`, the rest after its ':'.
fn matches<'a>(buf: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if buf.len() >= 2 && buf[0] == b'*' && buf[1] == b':' {
        return Some(&buf[2..]);
    }
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut t, mut k) = (0usize, 0usize);
    let mut bslash = false;
    while at(buf, t) != 0 {
        if at(buf, t) == b'\\' && !bslash {
            t += 1;
            bslash = true;
        }
        if at(buf, t) == b':' && at(token, k) == 0 && !bslash {
            return Some(&buf[t + 1..]);
        }
        bslash = false;
        if at(token, k) == 0 {
            return None;
        }
        if at(buf, t) == at(token, k) {
            t += 1;
            k += 1;
        } else {
            return None;
        }
    }
    None
}

fn libpq(contents: &[u8], host: &[u8], port: &[u8], db: &[u8], user: &[u8]) -> Option<Vec<u8>> {
    if db.is_empty() || user.is_empty() {
        return None;
    }
    let mut lines: Vec<&[u8]> = contents.split_inclusive(|&b| b == b'\n').collect();
    if lines.is_empty() {
        lines.push(b"");
    }
    for line in lines {
        if line.first() == Some(&b'#') {
            continue;
        }
        // pg_strip_crlf
        let mut l = line;
        while let Some((&last, rest)) = l.split_last() {
            if last == b'\n' || last == b'\r' {
                l = rest;
            } else {
                break;
            }
        }
        if l.is_empty() {
            continue;
        }
        let rest =
            matches(l, host).and_then(|t| matches(t, port)).and_then(|t| matches(t, db)).and_then(|t| matches(t, user));
        if let Some(t) = rest {
            let mut pw = Vec::new();
            let mut i = 0;
            while i < t.len() && t[i] != b':' {
                if t[i] == b'\\' && i + 1 < t.len() {
                    i += 1;
                }
                pw.push(t[i]);
                i += 1;
            }
            return Some(pw);
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let contents = parts.next().unwrap_or_default();
    let host = parts.next().unwrap_or_default();
    let port_s = parts.next().unwrap_or_default();
    let db = parts.next().unwrap_or_default();
    let user = parts.next().unwrap_or_default();
    let (Ok(contents), Ok(host), Ok(db), Ok(user)) =
        (std::str::from_utf8(contents), std::str::from_utf8(host), std::str::from_utf8(db), std::str::from_utf8(user))
    else {
        return;
    };
    let port: u16 = std::str::from_utf8(port_s).ok().and_then(|p| p.parse().ok()).unwrap_or(5432);
    let got = lookup_pgpass(contents, host, port, db, user);
    if [contents, host, db, user].iter().any(|s| s.contains('\0')) {
        return;
    }
    let want = libpq(contents.as_bytes(), host.as_bytes(), port.to_string().as_bytes(), db.as_bytes(), user.as_bytes());
    let want = want.and_then(|w| String::from_utf8(w).ok());
    assert_eq!(got, want, "pgpass lookup differs from libpq");
    if let Some(pw) = got {
        assert!(!pw.contains('\n'));
    }
});
